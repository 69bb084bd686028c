//! The `vault` provider: HashiCorp Vault and OpenBao, KV v1 and v2.
//!
//! ```toml
//! api_token = "vault://secret/atlassian#api_token"     # KV mount `secret`, path `atlassian`
//! pat       = "vault://secret/jira?version=3#pat"       # a pinned KV v2 version
//! from      = "vault://secret/cme/wiki"                 # the whole secret (an object)
//!
//! [providers.vault]                                     # optional: every key has a default
//! kind = "vault"
//! address = "https://vault.example.com:8200"            # $VAULT_AGENT_ADDR, $VAULT_ADDR, $BAO_ADDR
//! # address = "unix:///run/openbao/proxy.sock"         # a Vault Agent's / OpenBao Proxy's socket
//! namespace = "team-a"                                  # $VAULT_NAMESPACE
//! ca_cert = "/etc/ssl/vault-ca.pem"                     # $VAULT_CACERT (also ca_path, client_cert, client_key)
//! tls_skip_verify = false                               # $VAULT_SKIP_VERIFY; warns on every run
//! allow_http = false                                    # plain http:// beyond loopback
//! kv_version = 2                                        # default: detected once per mount
//! kv_mounts = { legacy = 1, "team/kv" = 2 }             # per mount (and nested mounts)
//! timeout = 10                                          # seconds per request ($VAULT_CLIENT_TIMEOUT)
//! connect_timeout = 5
//! max_retries = 2                                       # $VAULT_MAX_RETRIES
//! auth = { method = "approle", role_id_file = "/etc/cme/role-id", secret_id_env = "VAULT_SECRET_ID" }
//! ```
//!
//! References are `SCHEME://MOUNT/PATH[?version=N][#KEY]`: the first segment is the KV mount
//! (or the longest `kv_mounts` entry the location starts with), the rest the secret's path,
//! without the `data/` that KV v2's API inserts. `#KEY` picks a field of the secret's data;
//! without it the whole data object is used (for `from`).
//!
//! Auth methods (`auth.method`), each with a configurable `mount`: `token` (the default:
//! `token_file`, `token_env`, `$VAULT_TOKEN`, `$BAO_TOKEN`, `~/.vault-token`), `approle`,
//! `kubernetes`, `jwt` (from a file, a variable or the GitHub Actions OIDC endpoint) and
//! `userpass`; and `agent`, through a Vault Agent or OpenBao Proxy that adds its own auto-auth
//! token (the default at `$VAULT_AGENT_ADDR`): no token is sent, nothing is revoked. A token
//! obtained by logging in is revoked when the run ends; a token the user supplied never is. The built-in `vault` scheme (no table) takes its auth from
//! `CME_EXEC_VAULT_AUTH=METHOD` and `CME_EXEC_VAULT_AUTH_<KEY>` variables.
//!
//! Settings are parsed, and references checked, in every build; the client (`client`, `auth`,
//! `http`) exists only with the `vault` feature. User documentation: `docs/providers/vault.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::provider::Destination;
use crate::table::{Problem, TableReader};
use crate::{Backend, BackendSettings, Context, Document, FetchError, Kind, Provider};

#[cfg(feature = "vault")]
mod auth;
#[cfg(feature = "vault")]
mod client;
#[cfg(feature = "vault")]
mod http;
#[cfg(feature = "vault")]
mod write;

/// Every environment variable the provider reads, in one place.
pub mod names {
    pub const VAULT_ADDR: &str = "VAULT_ADDR";
    pub const BAO_ADDR: &str = "BAO_ADDR";
    /// A Vault Agent or OpenBao Proxy (as the vault CLI reads it): before VAULT_ADDR, and with
    /// the `agent` auth method unless the table names another.
    pub const VAULT_AGENT_ADDR: &str = "VAULT_AGENT_ADDR";
    pub const BAO_AGENT_ADDR: &str = "BAO_AGENT_ADDR";
    pub const VAULT_NAMESPACE: &str = "VAULT_NAMESPACE";
    pub const BAO_NAMESPACE: &str = "BAO_NAMESPACE";
    pub const VAULT_CACERT: &str = "VAULT_CACERT";
    pub const BAO_CACERT: &str = "BAO_CACERT";
    pub const VAULT_CAPATH: &str = "VAULT_CAPATH";
    pub const BAO_CAPATH: &str = "BAO_CAPATH";
    pub const VAULT_CLIENT_CERT: &str = "VAULT_CLIENT_CERT";
    pub const BAO_CLIENT_CERT: &str = "BAO_CLIENT_CERT";
    pub const VAULT_CLIENT_KEY: &str = "VAULT_CLIENT_KEY";
    pub const BAO_CLIENT_KEY: &str = "BAO_CLIENT_KEY";
    pub const VAULT_SKIP_VERIFY: &str = "VAULT_SKIP_VERIFY";
    pub const BAO_SKIP_VERIFY: &str = "BAO_SKIP_VERIFY";
    pub const VAULT_CLIENT_TIMEOUT: &str = "VAULT_CLIENT_TIMEOUT";
    pub const BAO_CLIENT_TIMEOUT: &str = "BAO_CLIENT_TIMEOUT";
    pub const VAULT_MAX_RETRIES: &str = "VAULT_MAX_RETRIES";
    pub const BAO_MAX_RETRIES: &str = "BAO_MAX_RETRIES";
    /// Credentials: always removed from the child's environment when a Vault provider is used.
    pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
    pub const BAO_TOKEN: &str = "BAO_TOKEN";
    /// `~/.vault-token` is found through this.
    pub const HOME: &str = "HOME";
    /// The GitHub Actions OIDC endpoint (a URL, not secret) and its bearer token (secret).
    pub const ACTIONS_ID_TOKEN_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
    pub const ACTIONS_ID_TOKEN_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
    /// The built-in `vault` provider's auth without a config file: the method, and one
    /// `CME_EXEC_VAULT_AUTH_<KEY>` variable per key of the `auth` table.
    pub const CME_EXEC_VAULT_AUTH: &str = "CME_EXEC_VAULT_AUTH";
    pub const CME_EXEC_VAULT_AUTH_PREFIX: &str = "CME_EXEC_VAULT_AUTH_";
    /// The built-in `vault` provider's `kv_version` without a config file.
    pub const CME_EXEC_VAULT_KV_VERSION: &str = "CME_EXEC_VAULT_KV_VERSION";
}

/// The Kubernetes service-account token, where the kubelet mounts it.
pub const KUBERNETES_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A KV secrets engine version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvVersion {
    V1,
    V2,
}

impl KvVersion {
    fn from_number(n: i64) -> Option<KvVersion> {
        match n {
            1 => Some(KvVersion::V1),
            2 => Some(KvVersion::V2),
            _ => None,
        }
    }
}

impl fmt::Display for KvVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvVersion::V1 => "KV v1",
            KvVersion::V2 => "KV v2",
        })
    }
}

/// Where a credential is read from: a file (trimmed) or an environment variable (removed
/// from the child's environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(n) => write!(f, "variable {n}"),
        }
    }
}

/// An AppRole `role_id`: not a secret on its own, but not shown by `Debug` either.
#[derive(Clone, PartialEq, Eq)]
pub enum RoleId {
    Literal(String),
    From(Source),
}

impl fmt::Debug for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleId::Literal(_) => f.write_str("RoleId::Literal(..)"),
            RoleId::From(s) => write!(f, "RoleId::From({s:?})"),
        }
    }
}

/// Where the `jwt` method's token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtSource {
    From(Source),
    /// Requested from `$ACTIONS_ID_TOKEN_REQUEST_URL` with `$ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    GithubActions {
        audience: Option<String>,
    },
}

/// The `auth` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// A token the user supplies; never revoked. Without a source: `$VAULT_TOKEN`,
    /// `$BAO_TOKEN`, then `~/.vault-token`.
    Token { source: Option<Source> },
    AppRole {
        mount: String,
        role_id: RoleId,
        secret_id: Option<Source>,
    },
    Kubernetes {
        mount: String,
        role: String,
        token_file: PathBuf,
    },
    Jwt {
        mount: String,
        role: Option<String>,
        jwt: JwtSource,
    },
    Userpass {
        mount: String,
        username: String,
        password: Source,
    },
    /// A Vault Agent or OpenBao Proxy with auto-auth (`api_proxy { use_auto_auth_token =
    /// true }`) adds its own token: cme-exec sends none, never logs in and never revokes.
    Agent,
}

impl Default for Auth {
    fn default() -> Self {
        Auth::Token { source: None }
    }
}

impl Auth {
    pub fn method(&self) -> &'static str {
        match self {
            Auth::Token { .. } => "token",
            Auth::AppRole { .. } => "approle",
            Auth::Kubernetes { .. } => "kubernetes",
            Auth::Jwt { .. } => "jwt",
            Auth::Userpass { .. } => "userpass",
            Auth::Agent => "agent",
        }
    }

    /// The auth mount, for methods that log in.
    pub fn mount(&self) -> Option<&str> {
        match self {
            Auth::Token { .. } | Auth::Agent => None,
            Auth::AppRole { mount, .. }
            | Auth::Kubernetes { mount, .. }
            | Auth::Jwt { mount, .. }
            | Auth::Userpass { mount, .. } => Some(mount),
        }
    }

    /// `approle at auth/approle`, for messages and `check`.
    pub fn describe(&self) -> String {
        match (self, self.mount()) {
            (Auth::Agent, _) => "agent (no token sent: the agent or proxy adds its own)".to_owned(),
            (_, Some(m)) => format!("{} at auth/{m}", self.method()),
            (_, None) => "token".to_owned(),
        }
    }

    /// Where each credential of the method is read from, for `trust`.
    pub fn sources(&self) -> Vec<String> {
        let from = |what: &str, s: &Source| format!("{what} from the {s}");
        match self {
            Auth::Token { source: Some(s) } => vec![from("token", s)],
            Auth::Token { source: None } => Vec::new(),
            Auth::AppRole {
                role_id, secret_id, ..
            } => {
                let mut out = vec![match role_id {
                    RoleId::Literal(_) => "role_id written in the config".to_owned(),
                    RoleId::From(s) => from("role_id", s),
                }];
                if let Some(s) = secret_id {
                    out.push(from("secret_id", s));
                }
                out
            }
            Auth::Kubernetes {
                role, token_file, ..
            } => vec![format!(
                "role {role}, service-account token from the file {}",
                token_file.display()
            )],
            Auth::Jwt { role, jwt, .. } => {
                let role = role
                    .as_deref()
                    .map_or_else(String::new, |r| format!("role {r}, "));
                vec![match jwt {
                    JwtSource::From(s) => format!("{role}{}", from("JWT", s)),
                    JwtSource::GithubActions { audience } => format!(
                        "{role}JWT requested from GitHub Actions (ACTIONS_ID_TOKEN_REQUEST_URL){}",
                        audience
                            .as_deref()
                            .map_or_else(String::new, |a| format!(", audience {a}"))
                    ),
                }]
            }
            Auth::Userpass {
                username, password, ..
            } => vec![format!("user {username}, {}", from("password", password))],
            Auth::Agent => Vec::new(),
        }
    }
}

const METHODS: [&str; 6] = ["token", "approle", "kubernetes", "jwt", "userpass", "agent"];

/// The keys each method takes (besides `method`).
fn method_keys(method: &str) -> &'static [&'static str] {
    match method {
        "token" => &["token_file", "token_env"],
        "approle" => &[
            "mount",
            "role_id",
            "role_id_file",
            "role_id_env",
            "secret_id_file",
            "secret_id_env",
        ],
        "kubernetes" => &["mount", "role", "token_file"],
        "jwt" => &[
            "mount",
            "role",
            "jwt_file",
            "jwt_env",
            "github_actions",
            "audience",
        ],
        "userpass" => &["mount", "username", "password_file", "password_env"],
        _ => &[],
    }
}

/// Every `CME_EXEC_VAULT_AUTH_<KEY>` variable the built-in provider reads.
fn auth_variable_names() -> Vec<String> {
    let mut out: Vec<String> = METHODS
        .iter()
        .flat_map(|m| method_keys(m).iter())
        .map(|k| {
            format!(
                "{}{}",
                names::CME_EXEC_VAULT_AUTH_PREFIX,
                k.to_ascii_uppercase()
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Keys that hold booleans (for the `CME_EXEC_VAULT_AUTH_*` variables).
const BOOLEAN_AUTH_KEYS: [&str; 1] = ["github_actions"];

/// `[providers.NAME]` with `kind = "vault"`. Holds no secret: paths, variable names, roles.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `false` for the built-in `vault` scheme (no table), whose auth comes from the
    /// `CME_EXEC_VAULT_AUTH*` variables.
    pub declared: bool,
    pub address: Option<String>,
    pub allow_http: bool,
    pub namespace: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub tls_skip_verify: Option<bool>,
    /// `None`: detected once per mount per run.
    pub kv_version: Option<KvVersion>,
    /// Per mount; a key may name a nested mount (`team/kv`).
    pub kv_mounts: BTreeMap<String, KvVersion>,
    /// Seconds.
    pub timeout: Option<u64>,
    pub connect_timeout: Option<u64>,
    pub max_retries: Option<u32>,
    /// `None`: the token method (or, for the built-in provider, `CME_EXEC_VAULT_AUTH*`).
    pub auth: Option<Auth>,
}

impl Settings {
    pub fn parse(r: &mut TableReader<'_, '_>) -> Settings {
        let allow_http = r.bool("allow_http").unwrap_or(false);
        let address = r.non_empty_string("address");
        let parsed = address
            .as_deref()
            .and_then(|a| match parse_address(a, allow_http) {
                Ok(a) => Some(a),
                Err(e) => {
                    let e = match r.path().strip_prefix("providers.") {
                        Some(name) => crate::net::place_allow_http(&e, name, "vault", true),
                        None => e,
                    };
                    r.problem(Some("address"), e);
                    None
                }
            });
        let namespace = r.non_empty_string("namespace");
        if let Some(ns) = &namespace {
            if let Err(e) = check_mount_like(ns) {
                r.problem(Some("namespace"), e);
            }
        }
        let ca_cert = r.path_buf("ca_cert");
        let ca_path = r.path_buf("ca_path");
        let client_cert = r.path_buf("client_cert");
        let client_key = r.path_buf("client_key");
        if client_cert.is_some() != client_key.is_some() {
            let missing = if client_cert.is_some() {
                "client_key"
            } else {
                "client_cert"
            };
            r.problem(
                Some(missing),
                "missing: client_cert and client_key go together",
            );
        }
        let tls_skip_verify = r.bool("tls_skip_verify");
        if matches!(parsed, Some(Address::Unix(_))) {
            let tls_keys = [
                ("ca_cert", ca_cert.is_some()),
                ("ca_path", ca_path.is_some()),
                ("client_cert", client_cert.is_some()),
                ("client_key", client_key.is_some()),
                ("tls_skip_verify", tls_skip_verify.is_some()),
            ];
            for (key, _) in tls_keys.iter().filter(|(_, set)| *set) {
                r.problem(Some(key), UNIX_NO_TLS);
            }
        }
        let kv_version = r
            .integer("kv_version", 1, 2)
            .and_then(KvVersion::from_number);
        let mut kv_mounts = BTreeMap::new();
        if let Some(t) = r.table("kv_mounts") {
            for (mount, v) in t {
                let key = format!("kv_mounts.{}", crate::table::toml_key(mount));
                if let Err(e) = check_mount_like(mount) {
                    r.problem(Some(&key), e);
                    continue;
                }
                match v {
                    toml::Value::Integer(n) => match KvVersion::from_number(*n) {
                        Some(v) => {
                            kv_mounts.insert(mount.clone(), v);
                        }
                        None => r.problem(Some(&key), "must be 1 or 2"),
                    },
                    other => r.problem(
                        Some(&key),
                        format!(
                            "expected 1 or 2, found {}",
                            crate::table::describe_toml(other)
                        ),
                    ),
                }
            }
        }
        let timeout = r.integer("timeout", 1, 3600).map(|n| n as u64);
        let connect_timeout = r.integer("connect_timeout", 1, 600).map(|n| n as u64);
        let max_retries = r.integer("max_retries", 0, 10).map(|n| n as u32);
        let auth = r.with_sub("auth", parse_auth).flatten();
        Settings {
            declared: true,
            address,
            allow_http,
            namespace,
            ca_cert,
            ca_path,
            client_cert,
            client_key,
            tls_skip_verify,
            kv_version,
            kv_mounts,
            timeout,
            connect_timeout,
            max_retries,
            auth,
        }
    }

    /// The built-in provider's settings from `CME_EXEC_VAULT_AUTH*` and
    /// `CME_EXEC_VAULT_KV_VERSION`, or every problem with them.
    pub fn from_environment(env: &crate::EnvReader) -> Result<Settings, Vec<Problem>> {
        let mut settings = Settings::default();
        let mut problems = Vec::new();
        if let Some(v) = env.var(names::CME_EXEC_VAULT_KV_VERSION) {
            match v.trim() {
                "1" => settings.kv_version = Some(KvVersion::V1),
                "2" => settings.kv_version = Some(KvVersion::V2),
                _ => problems.push(Problem {
                    table: "environment".into(),
                    key: Some(names::CME_EXEC_VAULT_KV_VERSION.into()),
                    message: "must be 1 or 2".into(),
                }),
            }
        }
        let mut table = toml::Table::new();
        for (name, value) in env.all() {
            let Some(name) = name.to_str() else { continue };
            let key = if name == names::CME_EXEC_VAULT_AUTH {
                "method".to_owned()
            } else if let Some(k) = name.strip_prefix(names::CME_EXEC_VAULT_AUTH_PREFIX) {
                k.to_ascii_lowercase()
            } else {
                continue;
            };
            let Some(value) = value.to_str().filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = if BOOLEAN_AUTH_KEYS.contains(&key.as_str()) {
                match value.trim() {
                    "true" | "1" => toml::Value::Boolean(true),
                    "false" | "0" => toml::Value::Boolean(false),
                    _ => toml::Value::String(value.to_owned()),
                }
            } else {
                toml::Value::String(value.to_owned())
            };
            table.insert(key, value);
        }
        if !table.is_empty() {
            let mut r = TableReader::new(
                &table,
                format!(
                    "environment ({} and {}*)",
                    names::CME_EXEC_VAULT_AUTH,
                    names::CME_EXEC_VAULT_AUTH_PREFIX
                ),
                &mut problems,
            );
            settings.auth = parse_auth(&mut r);
            r.finish();
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }
}

/// Parses the `auth` table; `None` when it is unusable (the problems say why).
fn parse_auth(r: &mut TableReader<'_, '_>) -> Option<Auth> {
    let method = auth_method(r)?;
    let mut ok = true;
    let auth = match method.as_str() {
        "token" => one_source(r, "token_file", "token_env").map(|source| Auth::Token { source }),
        "approle" => {
            let mount = auth_mount(r, "approle", &mut ok);
            approle_auth(r, mount)
        }
        "kubernetes" => {
            let mount = auth_mount(r, "kubernetes", &mut ok);
            kubernetes_auth(r, mount)
        }
        "jwt" => {
            let mount = auth_mount(r, "jwt", &mut ok);
            jwt_auth(r, mount)
        }
        "userpass" => {
            let mount = auth_mount(r, "userpass", &mut ok);
            userpass_auth(r, mount)
        }
        "agent" => Some(Auth::Agent),
        _ => unreachable!("checked against METHODS"),
    };
    report_keys_of_other_methods(r, &method);
    if ok {
        auth
    } else {
        None
    }
}

/// The `method` key, one of [`METHODS`]; `None` (with a problem) when it is missing or unknown.
fn auth_method(r: &mut TableReader<'_, '_>) -> Option<String> {
    let problem = match r.string("method") {
        Some(method) if METHODS.contains(&method.as_str()) => return Some(method),
        Some(_) => "unknown method (expected \"token\", \"approle\", \"kubernetes\", \"jwt\", \"userpass\" or \"agent\")",
        None => "missing: give method = \"token\", \"approle\", \"kubernetes\", \"jwt\", \"userpass\" or \"agent\"",
    };
    r.problem(Some("method"), problem);
    // The other keys are not reported as unknown when the method is what's unusable.
    for m in METHODS {
        for key in method_keys(m) {
            r.allow(key);
        }
    }
    None
}

/// The `mount` key without its slashes, else the method's default mount; clears `ok` (with a
/// problem) when it is not a usable mount.
fn auth_mount(r: &mut TableReader<'_, '_>, default: &str, ok: &mut bool) -> String {
    match r.non_empty_string("mount") {
        Some(m) => {
            let m = m.trim_matches('/').to_owned();
            if let Err(e) = check_mount_like(&m) {
                r.problem(Some("mount"), e);
                *ok = false;
            }
            m
        }
        None => default.to_owned(),
    }
}

/// `method = "approle"`: a role ID (literal, file or variable) and a secret ID (file or variable).
fn approle_auth(r: &mut TableReader<'_, '_>, mount: String) -> Option<Auth> {
    let literal = r.non_empty_string("role_id");
    let from = one_source(r, "role_id_file", "role_id_env");
    let role_id = match (literal, from) {
        (Some(l), Some(None)) => Some(RoleId::Literal(l)),
        (None, Some(Some(s))) => Some(RoleId::From(s)),
        (None, Some(None)) => {
            r.problem(
                Some("role_id"),
                "missing: give role_id, role_id_file or role_id_env",
            );
            None
        }
        (Some(_), Some(Some(_))) => {
            r.problem(
                Some("role_id"),
                "give one of role_id, role_id_file and role_id_env",
            );
            None
        }
        (_, None) => None,
    };
    let secret_id = one_source(r, "secret_id_file", "secret_id_env");
    match (role_id, secret_id) {
        (Some(role_id), Some(secret_id)) => Some(Auth::AppRole {
            mount,
            role_id,
            secret_id,
        }),
        _ => None,
    }
}

/// `method = "kubernetes"`: a role, and the service account token file (the pod's by default).
fn kubernetes_auth(r: &mut TableReader<'_, '_>, mount: String) -> Option<Auth> {
    let role = r.non_empty_string("role");
    if role.is_none() {
        r.problem(Some("role"), "missing: the Vault role to log in with");
    }
    let token_file = r
        .path_buf("token_file")
        .unwrap_or_else(|| PathBuf::from(KUBERNETES_TOKEN_FILE));
    role.map(|role| Auth::Kubernetes {
        mount,
        role,
        token_file,
    })
}

/// `method = "jwt"`: a JWT from a file or variable, or GitHub Actions' OIDC token.
fn jwt_auth(r: &mut TableReader<'_, '_>, mount: String) -> Option<Auth> {
    let role = r.non_empty_string("role");
    let from = one_source(r, "jwt_file", "jwt_env");
    let github = r.bool("github_actions").unwrap_or(false);
    let audience = r.non_empty_string("audience");
    if audience.is_some() && !github {
        r.problem(
            Some("audience"),
            "only used with github_actions = true (GitLab sets the audience in `id_tokens`)",
        );
    }
    let jwt = match (from, github) {
        (Some(Some(s)), false) => Some(JwtSource::From(s)),
        (Some(None), true) => Some(JwtSource::GithubActions { audience }),
        (Some(None), false) => {
            r.problem(
                None,
                "auth method \"jwt\" needs jwt_file, jwt_env or github_actions = true",
            );
            None
        }
        (Some(Some(_)), true) => {
            r.problem(
                Some("github_actions"),
                "give one of jwt_file, jwt_env and github_actions",
            );
            None
        }
        (None, _) => None,
    };
    jwt.map(|jwt| Auth::Jwt { mount, role, jwt })
}

/// `method = "userpass"`: a username, and the password from a file or variable.
fn userpass_auth(r: &mut TableReader<'_, '_>, mount: String) -> Option<Auth> {
    let username = r.non_empty_string("username");
    if username.is_none() {
        r.problem(Some("username"), "missing");
    }
    let password = match one_source(r, "password_file", "password_env") {
        Some(Some(s)) => Some(s),
        Some(None) => {
            r.problem(
                Some("password_file"),
                "missing: give password_file or password_env (never the password itself)",
            );
            None
        }
        None => None,
    };
    match (username, password) {
        (Some(username), Some(password)) => Some(Auth::Userpass {
            mount,
            username,
            password,
        }),
        _ => None,
    }
}

/// Keys of another method than `method`: say so instead of "unknown key".
fn report_keys_of_other_methods(r: &mut TableReader<'_, '_>, method: &str) {
    let own = method_keys(method);
    // Once per key: `token_file` is a key of two methods (token, kubernetes).
    let mut reported: Vec<&str> = Vec::new();
    for other in METHODS {
        for key in method_keys(other) {
            if own.contains(key) || reported.contains(key) {
                continue;
            }
            reported.push(key);
            let present = if BOOLEAN_AUTH_KEYS.contains(key) {
                r.bool(key).is_some()
            } else {
                r.string(key).is_some()
            };
            if present && method == "agent" && key.starts_with("token_") {
                r.problem(
                    Some(key),
                    "the agent method sends no token (the Vault Agent or OpenBao Proxy adds its \
                     own auto-auth token): remove it, or write method = \"token\" to send this \
                     token through the proxy instead",
                );
            } else if present {
                r.problem(
                    Some(key),
                    format!(
                        "not a setting of auth method \"{method}\" (it takes {})",
                        if own.is_empty() {
                            "no other keys".to_owned()
                        } else {
                            own.join(", ")
                        }
                    ),
                );
            }
        }
    }
}

/// Reads an optional `*_file` / `*_env` pair: `Some(None)` when neither is given, `None` when
/// the pair is unusable (a problem was recorded). Secrets themselves are never a setting.
fn one_source(
    r: &mut TableReader<'_, '_>,
    file_key: &'static str,
    env_key: &'static str,
) -> Option<Option<Source>> {
    let file = r.path_buf(file_key);
    let env = r.non_empty_string(env_key);
    match (file, env) {
        (Some(_), Some(_)) => {
            r.problem(
                Some(env_key),
                format!("give {file_key} or {env_key}, not both"),
            );
            None
        }
        (Some(f), None) => Some(Some(Source::File(f))),
        (None, Some(e)) => {
            if is_variable_name(&e) {
                Some(Some(Source::Env(e)))
            } else {
                r.problem(
                    Some(env_key),
                    "not a variable name (letters, digits and `_`, not starting with a digit)",
                );
                None
            }
        }
        (None, None) => Some(None),
    }
}

fn is_variable_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A mount or namespace path: `/`-separated non-empty segments, no `.` or `..`, no controls.
fn check_mount_like(path: &str) -> Result<(), String> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err("empty path segment (`//`)".into());
        }
        if segment == "." || segment == ".." {
            return Err("`.` and `..` segments are not allowed".into());
        }
        if segment.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("control characters and spaces are not allowed".into());
        }
    }
    Ok(())
}

pub use crate::net::is_loopback;

/// Why TLS settings are refused with a `unix://` address.
pub const UNIX_NO_TLS: &str = "a unix:// address is a local socket, which cme-exec reaches \
     without TLS: TLS settings have no meaning there; remove this key (or use the agent's \
     https:// listener)";

/// Where a Vault provider connects: a URL, or the socket of a local Vault Agent or OpenBao
/// Proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Url(url::Url),
    /// `unix:///absolute/path`.
    Unix(PathBuf),
}

impl Address {
    /// As shown in messages: `https://host:port/prefix` (never user info) or `unix:///path`.
    pub fn show(&self) -> String {
        match self {
            Address::Url(u) => crate::net::show_origin(u.as_str()),
            Address::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    /// Whether `raw` (an environment variable's value) names this address.
    pub fn is(&self, raw: &str) -> bool {
        match (self, parse_address(raw, true)) {
            (Address::Url(u), Ok(Address::Url(_))) => crate::net::same_endpoint(raw, u.as_str()),
            (Address::Unix(a), Ok(Address::Unix(b))) => *a == b,
            _ => false,
        }
    }
}

/// Parses a Vault address: `https://HOST[:PORT][/PREFIX]` (see [`check_address`]), or
/// `unix:///ABSOLUTE/PATH`, the form the vault CLI accepts for `VAULT_AGENT_ADDR` (it strips
/// `unix://` and takes the rest as the path; a relative path is refused here, since it would
/// depend on the working directory).
pub fn parse_address(raw: &str, allow_http: bool) -> Result<Address, String> {
    let trimmed = raw.trim();
    let is_unix = trimmed
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("unix:"));
    if !is_unix {
        return check_address(raw, allow_http).map(Address::Url);
    }
    let Some(path) = trimmed[5..].strip_prefix("//") else {
        return Err(
            "a socket address is unix:// and the socket's absolute path \
             (unix:///run/openbao/proxy.sock)"
                .into(),
        );
    };
    if path.is_empty() {
        return Err("unix:// without a path: give the socket's absolute path \
             (unix:///run/openbao/proxy.sock)"
            .into());
    }
    if path.chars().any(char::is_control) {
        return Err("control characters are not allowed in a socket path".into());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "the socket path `{path}` is relative: write it absolute, with three slashes \
             (unix:///run/openbao/proxy.sock)"
        ));
    }
    Ok(Address::Unix(PathBuf::from(path)))
}

/// Validates a Vault address (never echoing it: it could carry user info).
pub fn check_address(raw: &str, allow_http: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| format!("not a URL ({e}); expected https://HOST[:PORT]"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let local = url.host().is_some_and(|h| is_loopback(&h));
            if !local && !allow_http {
                return Err(crate::net::plain_http_refused());
            }
        }
        _ => return Err("the scheme must be https:// (or http:// to loopback)".into()),
    }
    if url.host().is_none() {
        return Err("no host: expected https://HOST[:PORT]".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an address must not hold user info (USER:PASSWORD@)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an address must not have a query or a fragment".into());
    }
    Ok(url)
}

/// Checks `vault://MOUNT/PATH?version=N` at configuration time, in every build.
pub fn check_document(doc: &Document) -> Result<(), String> {
    doc.only_params(&["version"])?;
    if !doc.has_authority {
        return Err("a Vault reference is SCHEME://MOUNT/PATH (with `//`)".into());
    }
    let segments: Vec<&str> = doc.location.split('/').collect();
    if segments.len() < 2 {
        return Err(
            "a Vault reference is SCHEME://MOUNT/PATH: name the KV mount and the secret's path \
             (e.g. vault://secret/atlassian)"
                .into(),
        );
    }
    if segments.iter().any(|s| s.is_empty()) {
        return Err("empty path segment (a leading, trailing or doubled `/`)".into());
    }
    if doc.location.chars().any(|c| c.is_control()) {
        return Err("control characters are not allowed in a Vault path".into());
    }
    if let Some(v) = doc.param("version") {
        let ok = !v.starts_with('+') && v.parse::<u64>().is_ok_and(|n| n > 0);
        if !ok {
            return Err("`version` must be a positive integer".into());
        }
    }
    Ok(())
}

/// `kind = "vault"`, with the `vault` cargo feature.
pub const KIND: Kind = Kind::new("vault");

/// The `vault` backend, listed in `registry::BACKENDS`.
pub struct VaultBackend;

impl Backend for VaultBackend {
    fn kind(&self) -> Kind {
        KIND
    }

    fn feature(&self) -> Option<&'static str> {
        Some("vault")
    }

    fn available(&self) -> bool {
        cfg!(feature = "vault")
    }

    fn parse(&self, r: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings> {
        Arc::new(Settings::parse(r))
    }

    fn builtin(&self) -> Option<Arc<dyn BackendSettings>> {
        Some(Arc::new(Settings::default()))
    }

    fn check_document(&self, doc: &Document) -> Result<(), String> {
        check_document(doc)
    }

    fn expiry_source(&self) -> &'static str {
        "Vault custom_metadata"
    }

    /// The built-in provider's `CME_EXEC_VAULT_*` settings, every `CME_EXEC_VAULT_AUTH_<KEY>`
    /// included.
    fn env_names(&self) -> Vec<String> {
        let mut out = vec![
            names::CME_EXEC_VAULT_AUTH.to_owned(),
            names::CME_EXEC_VAULT_KV_VERSION.to_owned(),
        ];
        out.extend(auth_variable_names());
        out
    }

    fn destination(&self, scheme: &str, location: &str) -> Option<Result<Destination, FetchError>> {
        Some(destination(scheme, location))
    }
}

/// `import --to SCHEME://MOUNT/PREFIX`: one document per name at `MOUNT/PREFIX/NAME`, in KV v2
/// or v1 (the mount's version is configured or detected as for reads). `data/`, which KV v2's
/// API inserts, is not part of it.
pub fn destination(scheme: &str, location: &str) -> Result<Destination, FetchError> {
    let rest = location.trim_matches('/');
    let (mount, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if mount.is_empty() || rest.contains(['?', '#']) || check_mount_like(rest).is_err() {
        return Err(FetchError::invalid(format!(
            "expected {scheme}://MOUNT/PREFIX (a KV mount and a path in it)"
        )));
    }
    if let Some(after) = prefix
        .strip_prefix("data")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    {
        return Err(FetchError::invalid(format!(
            "`data/` is part of KV v2's API path, not of a {scheme}:// address"
        ))
        .with_hint(format!(
            "leave `data/` out of --to: cme-exec adds it for KV v2 ({scheme}://{mount}{after})"
        )));
    }
    Ok(Destination::new("Vault KV", format!("{rest}/"), ""))
}

impl BackendSettings for Settings {
    fn describe(&self) -> String {
        let mut s = format!(
            "kind vault, address {}",
            match self.address.as_deref().map(|a| parse_address(a, true)) {
                Some(Ok(a)) => a.show(),
                Some(Err(_)) => "(invalid)".to_owned(),
                None => "from VAULT_AGENT_ADDR, else VAULT_ADDR (or BAO_ADDR)".to_owned(),
            }
        );
        if let Some(ns) = &self.namespace {
            s.push_str(&format!(", namespace {ns}"));
        }
        match &self.auth {
            Some(a) => s.push_str(&format!(", auth {}", a.describe())),
            None if self.address.is_some() => s.push_str(
                ", auth agent if VAULT_AGENT_ADDR names this address, else token (the \
                 environment's token only if VAULT_ADDR names this address)",
            ),
            None => s.push_str(
                ", auth agent with VAULT_AGENT_ADDR (no token sent), else token from \
                 VAULT_TOKEN, BAO_TOKEN or ~/.vault-token",
            ),
        }
        if self.allow_http {
            s.push_str(", allow_http");
        }
        if self.tls_skip_verify == Some(true) {
            s.push_str(", TLS verification OFF");
        }
        s
    }

    fn details(&self) -> Vec<String> {
        let mut out = self.auth.as_ref().map(Auth::sources).unwrap_or_default();
        let files = [
            ("CA certificate", &self.ca_cert),
            ("CA directory", &self.ca_path),
            ("client certificate", &self.client_cert),
            ("client key", &self.client_key),
        ];
        for (what, path) in files {
            if let Some(p) = path {
                out.push(format!("{what} {}", p.display()));
            }
        }
        if self.ca_cert.is_some() || self.ca_path.is_some() {
            out.push(
                "these CA certificates replace the system's trusted roots for this address"
                    .to_owned(),
            );
        }
        out
    }

    fn build(&self, name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
        build(name, self, ctx)
    }
}

/// Builds the provider.
#[cfg(feature = "vault")]
pub fn build(
    name: &str,
    settings: &Settings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    client::VaultProvider::build(name, settings, ctx).map(|p| Arc::new(p) as Arc<dyn Provider>)
}

/// This build has no Vault client: the one answer for a vault provider, whatever its settings.
#[cfg(not(feature = "vault"))]
pub fn build(
    name: &str,
    _settings: &Settings,
    _ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    Err(FetchError::left_out(KIND.name(), name, "vault"))
}

#[cfg(test)]
mod tests;
