//! Why the AWS SDK could not do something, in words, one message per cause (only with the
//! `aws-sm` or `aws-ssm` feature). The messages do not name a provider: one credential answer
//! serves every AWS provider of the run with the same settings, and the resolver puts each
//! failure beside the reference it stopped.
//!
//! - **Credentials** are resolved once per run, before the first request
//!   ([`resolve_credentials`]), so that a missing credential is told apart from an unreachable
//!   endpoint, and every request of the run (reads and `check`'s STS call) shares the one answer.
//! - **Never the providers' free text.** The SDK's credential errors carry what a provider said:
//!   a credential helper's stderr (`credential_process`), STS's message about a web identity
//!   token, a profile file's contents around a syntax error. None of it is shown. A message says
//!   what failed from the error's kind, AWS's error *code* (a word such as
//!   `InvalidIdentityToken`), an I/O error, and what cme-exec itself reads from the profile
//!   files: whether the profile exists, and whether it signs in with SSO or runs a
//!   `credential_process` helper (each gets its own message and fix). Keys are looked at by name;
//!   values never leave this module, except `source_profile` (a profile name) to follow a chain.
//! - **Transport failures** are told by the SDK's connector error kinds (io, timeout, user,
//!   other) and the I/O error underneath, never by the `Debug` of the error tree.

use std::error::Error as StdError;
use std::path::PathBuf;

use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::{docs_url, EnvReader, ErrorKind, FetchError};

/// Where a run's AWS settings come from, for messages.
pub struct Place<'a> {
    /// `profile` in the provider's table.
    pub profile: Option<&'a str>,
    pub env: &'a EnvReader,
}

impl Place<'_> {
    /// The profile the SDK uses and what named it; `None` when nothing named one.
    fn chosen_profile(&self) -> Option<(String, String)> {
        if let Some(p) = self.profile {
            return Some((p.to_owned(), "the provider's `profile` setting".to_owned()));
        }
        self.env
            .var("AWS_PROFILE")
            .map(|p| (p, "AWS_PROFILE".to_owned()))
    }

    fn home_file(&self, var: &str, rel: &str) -> Option<PathBuf> {
        match self.env.var(var) {
            Some(p) => Some(PathBuf::from(p)),
            None => self.env.var("HOME").map(|h| PathBuf::from(h).join(rel)),
        }
    }
}

/// Asks the SDK's credential chain (or the role to assume) for credentials once, and gives back
/// a configuration that uses exactly those, or why there are none.
pub async fn resolve_credentials(
    sdk: SdkConfig,
    place: &Place<'_>,
) -> Result<SdkConfig, FetchError> {
    let Some(provider) = sdk.credentials_provider() else {
        return Err(no_credentials(place, "the SDK has no credential provider"));
    };
    match provider.provide_credentials().await {
        Ok(credentials) => Ok(sdk
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()),
        Err(err) => Err(credentials_error(&err, place)),
    }
}

/// A credential provider's failure, in words.
pub fn credentials_error(err: &CredentialsError, place: &Place<'_>) -> FetchError {
    let profiles = Profiles::read(place);
    if let Some(e) = profile_problem(&profiles, place) {
        return e;
    }
    if let Some(e) = source_problem(&profiles, place, chain_cause(err)) {
        return e;
    }
    let profile = place
        .chosen_profile()
        .map(|(p, from)| format!(" (AWS profile `{p}`, from {from})"))
        .unwrap_or_default();
    match err {
        CredentialsError::CredentialsNotLoaded(_) => {
            no_credentials(place, "the SDK's credential chain found none")
        }
        CredentialsError::ProviderTimedOut(t) => FetchError::new(
            ErrorKind::Timeout,
            format!(
                "got no AWS credentials within {} s{profile}",
                t.timeout_duration().as_secs_f32()
            ),
        ),
        CredentialsError::InvalidConfiguration(_) => FetchError::invalid(format!(
            "cannot get AWS credentials: the AWS configuration for them is invalid{profile}"
        ))
        .with_hint(details_hint(place)),
        _ => {
            let cause = chain_cause(err).unwrap_or_else(|| "the provider failed".to_owned());
            FetchError::new(
                ErrorKind::Denied,
                format!("cannot get AWS credentials{profile}: {cause}"),
            )
            .with_hint(details_hint(place))
        }
    }
}

/// How to see what the SDK said, which cme-exec does not show.
fn details_hint(place: &Place<'_>) -> String {
    let profile = place
        .chosen_profile()
        .map(|(p, _)| format!(" --profile {p}"))
        .unwrap_or_default();
    format!(
        "the credential provider's own words are not shown (they may hold a credential \
         helper's output); `aws sts get-caller-identity{profile}` in the same environment shows \
         them; see {}",
        docs_url("providers/aws-sm.md#credentials")
    )
}

/// No credentials anywhere in the chain.
fn no_credentials(place: &Place<'_>, why: &str) -> FetchError {
    let hint = match place.chosen_profile() {
        Some((p, from)) => format!(
            "the AWS profile `{p}` ({from}) holds no credentials: give it aws_access_key_id and \
             aws_secret_access_key, role_arn with source_profile, or web_identity_token_file; \
             or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; see {}",
            docs_url("providers/aws-sm.md#credentials")
        ),
        None => format!(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE (or `profile` in the \
             provider's table), or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN; see {}",
            docs_url("providers/aws-sm.md#credentials")
        ),
    };
    FetchError::new(
        ErrorKind::Denied,
        format!("found no AWS credentials ({why})"),
    )
    .with_hint(hint)
}

/// A profile that is missing (the chosen one, or one of its `source_profile` chain).
fn profile_problem(profiles: &Profiles, place: &Place<'_>) -> Option<FetchError> {
    let (chosen, from) = match place.chosen_profile() {
        Some(c) => c,
        // Without a choice the SDK reads `default`, which may be absent.
        None if profiles.get("default").is_some() => ("default".to_owned(), "the default".into()),
        None => return None,
    };
    let mut name = chosen.clone();
    for _ in 0..8 {
        let Some(profile) = profiles.get(&name) else {
            let known = profiles.names();
            let listed = if known.is_empty() {
                format!("no profile is defined in {}", profiles.describe_files())
            } else {
                format!("the profiles defined are: {}", known.join(", "))
            };
            let referenced = if name == chosen {
                format!("the AWS profile `{name}` ({from})")
            } else {
                format!("the AWS profile `{name}` (source_profile of `{chosen}`)")
            };
            return Some(
                FetchError::invalid(format!(
                    "{referenced} could not be found in {}",
                    profiles.describe_files()
                ))
                .with_hint(format!("check its spelling; {listed}")),
            );
        };
        match &profile.source_profile {
            Some(next) if *next != name => name = next.clone(),
            _ => return None,
        }
    }
    None
}

/// The profile, or one it takes its credentials from, that signs in with SSO or runs a
/// `credential_process` helper: the credentials failed there, and the fix is its own. The
/// helper's output and the SDK's words are not shown (they may hold a credential).
fn source_problem(
    profiles: &Profiles,
    place: &Place<'_>,
    cause: Option<String>,
) -> Option<FetchError> {
    let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
    let chosen = match place.chosen_profile() {
        Some((p, _)) => p,
        None if profiles.get("default").is_some() => "default".to_owned(),
        None => return None,
    };
    let mut name = chosen.clone();
    for _ in 0..8 {
        let profile = profiles.get(&name)?;
        if profile.has("sso_session") || profile.has("sso_start_url") {
            return Some(
                FetchError::denied(format!(
                    "the AWS profile `{name}` signs in with IAM Identity Center (SSO), and no \
                     usable SSO session was found for it (not signed in, expired, or refused){cause}"
                ))
                .with_hint(format!(
                    "sign in with `aws sso login --profile {chosen}` and run cme-exec again; \
                     `aws sts get-caller-identity --profile {chosen}` shows what AWS says; see {}",
                    docs_url("providers/aws-sm.md#credentials")
                )),
            );
        }
        if profile.has("credential_process") {
            return Some(
                FetchError::denied(format!(
                    "the credential_process helper of the AWS profile `{name}` gave no \
                     credentials; what it printed is not shown (it may hold a credential){cause}"
                ))
                .with_hint(format!(
                    "run `aws sts get-caller-identity --profile {chosen}` in the same environment \
                     to see what the helper says; see {}",
                    docs_url("providers/aws-sm.md#credentials")
                )),
            );
        }
        match &profile.source_profile {
            Some(next) if *next != name => name = next.clone(),
            _ => return None,
        }
    }
    None
}

/// The words for what went wrong under a provider error: AWS's error code, a transport failure.
fn chain_cause(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(code) = sts_code(e) {
            return Some(format!("STS answered {code}"));
        }
        if let Some(n) = e.downcast_ref::<crate::tls::NoRoots>() {
            return Some(n.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(format!("cannot reach the credential source: {io}"));
        }
        next = e.source();
    }
    None
}

/// The error code of an STS answer found in a credential provider's error.
fn sts_code(e: &(dyn StdError + 'static)) -> Option<String> {
    use aws_sdk_sts::error::SdkError;
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
    fn of<E: aws_sdk_sts::error::ProvideErrorMetadata>(
        err: &SdkError<E, HttpResponse>,
    ) -> Option<String> {
        match err {
            SdkError::ServiceError(ctx) => Some(format!(
                "{} (HTTP {})",
                code_word(ctx.err().code()),
                ctx.raw().status().as_u16()
            )),
            SdkError::TimeoutError(_) => Some("nothing: the request timed out".to_owned()),
            _ => None,
        }
    }
    if let Some(err) = e.downcast_ref::<SdkError<AssumeRoleWithWebIdentityError, HttpResponse>>() {
        return of(err);
    }
    if let Some(err) = e.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
        return of(err);
    }
    None
}

/// An AWS error code as shown: a word of letters and digits, or a placeholder.
pub fn code_word(code: Option<&str>) -> String {
    match code {
        Some(c)
            if !c.is_empty() && c.len() <= 64 && c.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            c.to_owned()
        }
        Some(_) => "an unreadable error code".to_owned(),
        None => "an error without a code".to_owned(),
    }
}

/// What a request's dispatch failure was, from the connector's error kinds and the I/O error
/// underneath. `(kind, words, is it the endpoint's fault)`.
pub fn dispatch_cause(
    failure: &aws_smithy_runtime_api::client::result::ConnectorError,
) -> (ErrorKind, String) {
    let io = io_error_in(failure);
    if let Some(e) = no_roots_in(failure) {
        // SSL_CERT_FILE/SSL_CERT_DIR named nothing usable: a setting, named in the message.
        return (ErrorKind::Invalid, e.to_string());
    }
    if failure.is_timeout() {
        (ErrorKind::Timeout, "no answer in time".to_owned())
    } else if failure.is_io() {
        let what = io
            .map(|e| format!("cannot connect: {e}"))
            .unwrap_or_else(|| "cannot connect".to_owned());
        (ErrorKind::Unavailable, what)
    } else if failure.is_user() {
        (
            ErrorKind::Invalid,
            "the request could not be sent (a setting is wrong)".to_owned(),
        )
    } else {
        let what = io
            .map(|e| format!("the connection failed: {e}"))
            .unwrap_or_else(|| "the connection failed".to_owned());
        (ErrorKind::Unavailable, what)
    }
}

/// A credentials error anywhere under `err`.
pub fn credentials_error_in<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        next = e.source();
    }
    None
}

/// The trust roots' failure (src/tls.rs) anywhere under `err`.
pub fn no_roots_in<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a crate::tls::NoRoots> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(n) = e.downcast_ref::<crate::tls::NoRoots>() {
            return Some(n);
        }
        next = e.source();
    }
    None
}

fn io_error_in<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        next = e.source();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The shared config and credentials files, by key name only
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Profile {
    keys: Vec<String>,
    /// `source_profile`: the name of another profile.
    source_profile: Option<String>,
}

impl Profile {
    fn has(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

/// Profiles of `~/.aws/config` (`[profile NAME]`, `[default]`) and `~/.aws/credentials`
/// (`[NAME]`), the way the AWS CLI names their files (`AWS_CONFIG_FILE`,
/// `AWS_SHARED_CREDENTIALS_FILE`).
struct Profiles {
    files: Vec<String>,
    profiles: Vec<(String, Profile)>,
}

impl Profiles {
    fn read(place: &Place<'_>) -> Profiles {
        let mut out = Profiles {
            files: Vec::new(),
            profiles: Vec::new(),
        };
        let config = place.home_file("AWS_CONFIG_FILE", ".aws/config");
        let credentials = place.home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        for (path, is_config) in [(config, true), (credentials, false)] {
            let Some(path) = path else { continue };
            out.files.push(path.display().to_string());
            // Small files; a profile file larger than 1 MiB is not read for a diagnosis.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.len() > 1 << 20 {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let text = zeroize::Zeroizing::new(text);
            out.parse(&text, is_config);
        }
        out
    }

    fn parse(&mut self, text: &str, is_config: bool) {
        let mut current: Option<usize> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let header = header.trim();
                let name = if is_config {
                    match header.strip_prefix("profile") {
                        Some(rest) if rest.starts_with(char::is_whitespace) => Some(rest.trim()),
                        _ if header == "default" => Some("default"),
                        _ => None, // sso-session, services, ...
                    }
                } else {
                    Some(header)
                };
                current = name.map(|n| self.entry(n));
                continue;
            }
            let (Some(i), Some((key, value))) = (current, line.split_once('=')) else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            if key == "source_profile" {
                self.profiles[i].1.source_profile = Some(value.trim().to_owned());
            }
            self.profiles[i].1.keys.push(key);
        }
    }

    fn entry(&mut self, name: &str) -> usize {
        if let Some(i) = self.profiles.iter().position(|(n, _)| n == name) {
            return i;
        }
        self.profiles.push((name.to_owned(), Profile::default()));
        self.profiles.len() - 1
    }

    fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .profiles
            .iter()
            .map(|(n, _)| n.chars().filter(|c| !c.is_control()).take(64).collect())
            .collect();
        names.truncate(20);
        names
    }

    fn describe_files(&self) -> String {
        self.files.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_by_key_name() {
        let mut p = Profiles {
            files: Vec::new(),
            profiles: Vec::new(),
        };
        p.parse(
            "[default]\nregion = us-east-1\n[profile sso]\nsso_session = corp\n\
             [sso-session corp]\nsso_start_url = https://x\n[profile child]\n\
             source_profile = proc\n[profile proc]\ncredential_process = helper --x\n",
            true,
        );
        p.parse("[keys]\naws_access_key_id = A\n", false);
        assert!(p.get("sso").unwrap().has("sso_session"));
        assert!(p.get("corp").is_none(), "an sso-session is no profile");
        assert_eq!(
            p.get("child").unwrap().source_profile.as_deref(),
            Some("proc")
        );
        assert!(p.get("keys").unwrap().has("aws_access_key_id"));
        assert_eq!(p.names(), ["default", "sso", "child", "proc", "keys"]);
    }

    #[test]
    fn codes_are_words() {
        assert_eq!(
            code_word(Some("InvalidIdentityToken")),
            "InvalidIdentityToken"
        );
        assert_eq!(code_word(Some("a b")), "an unreadable error code");
        assert_eq!(code_word(None), "an error without a code");
    }
}

// ---------------------------------------------------------------------------------------------
// Attempts: progress and retry logs
// ---------------------------------------------------------------------------------------------

/// Tells [`crate::progress`] each attempt of a request to `address`, and logs each retry at
/// `-v` (info): the operation and the attempt, never a request's contents.
#[derive(Debug)]
pub struct Attempts {
    pub store: &'static str,
    pub address: String,
    pub max_attempts: u32,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Attempts {
    fn name(&self) -> &'static str {
        "cme-exec-attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::Metadata;
        use aws_smithy_runtime_api::client::retries::RequestAttempts;
        let n = cfg
            .load::<RequestAttempts>()
            .map_or(1, RequestAttempts::attempts);
        crate::progress::attempt_at(&self.address, n);
        if n > 1 {
            let op = cfg.load::<Metadata>().map_or("a request", Metadata::name);
            tracing::info!(
                "{} at {}: {op}: attempt {} of {} failed; retrying",
                self.store,
                self.address,
                n - 1,
                self.max_attempts
            );
        }
        Ok(())
    }
}
