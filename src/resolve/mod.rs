//! The resolver: every reference of the configuration, fetched all or nothing.
//!
//! 1. Collect the references and reduce them to distinct documents (provider, path, version):
//!    two fields of one document cost one fetch and always agree.
//! 2. Build each provider that is used, once.
//! 3. Fetch every provider's documents concurrently (at most [`CONCURRENCY`] at a time per
//!    provider) under one overall deadline.
//! 4. Pick keys, merge `[auth] from`, `from` and explicit fields (explicit wins), and check
//!    every value. Every failure is kept, so the user sees all of them at once.
//!
//! While the fetches run, [`progress_line`] names on a terminal each store being waited for.

pub mod progress_line;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cme_exec_providers::payload::{select_object, select_string, SecretMap};
use cme_exec_providers::{
    Context, Document, ErrorKind, FetchError, Identity, Kind, Payload, Provider, Reference,
};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::{normalise_url, Config, Field, FieldSpec, Product};
use crate::error::Error;

/// How many documents one provider fetches at the same time.
pub const CONCURRENCY: usize = 16;

/// Where a resolved value came from (shown by `check` and `explain`; never the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Reference(String),
    Literal,
    /// A key of a `from` document.
    From(String),
    /// A key of the `[auth] from` document.
    Bulk(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Reference(r) => f.write_str(r),
            Origin::Literal => f.write_str("(literal in the config)"),
            Origin::From(r) => write!(f, "{r} (from)"),
            Origin::Bulk(r) => write!(f, "{r} ([auth] from)"),
        }
    }
}

/// One resolved field value.
pub struct Value {
    pub secret: SecretString,
    pub origin: Origin,
}

/// The resolved fields of one instance.
#[derive(Default)]
pub struct InstanceAuth {
    pub fields: BTreeMap<Field, Value>,
}

/// Everything resolved, by product and normalised URL.
#[derive(Default)]
pub struct Auth {
    pub instances: BTreeMap<(Product, String), InstanceAuth>,
}

/// Why something failed; never holds a value.
#[derive(Clone, Debug)]
pub struct Failure {
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
        }
    }
}

impl From<&FetchError> for Failure {
    fn from(e: &FetchError) -> Self {
        Failure {
            message: e.message().to_owned(),
            hint: e.hint().map(str::to_owned),
        }
    }
}

/// One line of `check`: a field (or a `from`), its source, and whether it resolved.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub product: Option<Product>,
    pub url: Option<String>,
    /// A field name, `from`, `[auth] from`, or [`INSTANCE`] for a problem of the instance's
    /// fields together (not a field of its own).
    pub subject: String,
    pub source: String,
    pub outcome: Result<(), Failure>,
    /// When the credential expires, when its store says ([`crate::expiry`]).
    pub expires: Option<crate::expiry::Expiry>,
}

/// The subject of an instance-level verdict: its fields resolved, but together they would not
/// authenticate (an api_token without a username). Counted as a problem, not as a field.
pub const INSTANCE: &str = "instance";

impl Verdict {
    pub fn is_instance_level(&self) -> bool {
        self.subject == INSTANCE
    }

    /// `[confluence."https://x"] api_token (vault://...)`
    pub fn place(&self) -> String {
        match (self.product, &self.url) {
            (Some(p), Some(u)) => format!("[{p}.\"{u}\"] {}", self.subject),
            _ => self.subject.clone(),
        }
    }
}

/// The identity a provider used, for `check`.
pub struct ProviderIdentity {
    pub name: String,
    pub kind: Kind,
    pub identity: Result<Option<Identity>, FetchError>,
}

/// The outcome of resolving a configuration.
pub struct Resolution {
    pub auth: Auth,
    pub verdicts: Vec<Verdict>,
    pub identities: Vec<ProviderIdentity>,
    /// Environment variables read as credentials, to remove from the child's environment.
    pub consumed_env: BTreeSet<String>,
}

impl Resolution {
    pub fn failures(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.outcome.is_err())
    }

    pub fn is_ok(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The error `run` and `render` print: every failure, with its reference and reason.
    pub fn error(&self) -> Error {
        let failures: Vec<_> = self.failures().collect();
        let instance_level = failures.iter().filter(|v| v.is_instance_level()).count();
        let n = failures.len() - instance_level;
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let mut err = Error::new(match (n, instance_level) {
            (n, 0) => format!(
                "{n} credential{} could not be resolved; nothing was started",
                plural(n)
            ),
            (0, m) => format!(
                "{m} instance{} would send no credentials; nothing was started",
                plural(m)
            ),
            (n, m) => format!(
                "{n} credential{} could not be resolved and {m} instance{} would send no credentials; nothing was started",
                plural(n),
                plural(m)
            ),
        });
        // A failure shared by several fields (a failed login, an unreachable store) is told
        // once, with the fields it stopped listed under it.
        let mut groups: Vec<(&Failure, Vec<String>)> = Vec::new();
        let mut hints = Vec::new();
        for v in failures {
            if let Err(f) = &v.outcome {
                let source = if v.source.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", v.source)
                };
                let place = format!("{}{source}", v.place());
                match groups.iter_mut().find(|(g, _)| g.message == f.message) {
                    Some((_, places)) => places.push(place),
                    None => groups.push((f, vec![place])),
                }
                if let Some(h) = &f.hint {
                    if !hints.contains(h) {
                        hints.push(h.clone());
                    }
                }
            }
        }
        for (f, places) in groups {
            if let [place] = places.as_slice() {
                err = err.detail(format!("{place}: {}", f.message));
            } else {
                err = err.detail(format!("{} (for {} fields):", f.message, places.len()));
                for place in places {
                    err = err.detail(format!("  {place}"));
                }
            }
        }
        if !hints.is_empty() {
            err = err.hint(hints.join("; "));
        }
        err
    }
}

pub struct Options {
    /// The overall deadline for every fetch together.
    pub deadline: Duration,
    /// Ask each provider who it authenticated as (for `check`).
    pub identities: bool,
}

type Fetched = HashMap<Document, Result<Payload, FetchError>>;

/// The providers of one run, built once. [`Resolver::finish`] must be awaited whatever
/// happened (a signal may have dropped [`Resolver::resolve`] half-way): it revokes what the
/// providers obtained, such as a Vault login token.
pub struct Resolver<'c> {
    config: &'c Config,
    ctx: Arc<Context>,
    providers: Vec<(String, Arc<dyn Provider>, Vec<Document>)>,
    /// Documents whose provider could not even be built.
    unbuildable: Vec<(Document, FetchError)>,
}

impl<'c> Resolver<'c> {
    pub fn new(config: &'c Config, ctx: &Arc<Context>) -> Self {
        // Distinct documents, grouped by provider (scheme).
        let mut by_provider: BTreeMap<String, BTreeSet<Document>> = BTreeMap::new();
        for (reference, _) in config.references() {
            by_provider
                .entry(reference.document.scheme.clone())
                .or_default()
                .insert(reference.document.clone());
        }
        let mut providers = Vec::new();
        let mut unbuildable = Vec::new();
        for (name, docs) in by_provider {
            let built = match config.provider_for(&name) {
                Some(settings) => cme_exec_providers::build(&name, &settings, ctx),
                None => Err(FetchError::invalid(format!("unknown provider `{name}`"))),
            };
            match built {
                Ok(p) => providers.push((name, p, docs.into_iter().collect())),
                Err(e) => unbuildable.extend(docs.into_iter().map(|d| (d, e.clone()))),
            }
        }
        Resolver {
            config,
            ctx: ctx.clone(),
            providers,
            unbuildable,
        }
    }

    /// Fetches every document concurrently under one deadline, then assembles the result.
    /// On a terminal, what is being waited for is shown while it lasts ([`crate::progress`]).
    pub async fn resolve(&self, options: &Options) -> Resolution {
        tokio::select! {
            r = self.resolve_quietly(options) => r,
            never = progress_line::show_waits() => match never {},
        }
    }

    async fn resolve_quietly(&self, options: &Options) -> Resolution {
        let mut fetched: Fetched = HashMap::new();
        for (d, e) in &self.unbuildable {
            fetched.insert(d.clone(), Err(e.clone()));
        }
        let deadline = tokio::time::Instant::now() + options.deadline;
        let fetches = self.providers.iter().map(|(_, p, docs)| async move {
            match tokio::time::timeout_at(deadline, p.fetch_many(docs, CONCURRENCY)).await {
                Ok(results) => results,
                Err(_) => docs
                    .iter()
                    .map(|_| {
                        Err(FetchError::new(
                            ErrorKind::Timeout,
                            format!(
                                "no answer within {} s (the resolution deadline; see --timeout)",
                                options.deadline.as_secs_f32()
                            ),
                        ))
                    })
                    .collect(),
            }
        });
        let results = futures::future::join_all(fetches).await;
        for ((_, _, docs), results) in self.providers.iter().zip(results) {
            for (d, r) in docs.iter().zip(results) {
                fetched.insert(d.clone(), r);
            }
        }

        // `check`'s identity lookups run under the same deadline as the fetches (one deadline
        // covers the whole resolution), all at once.
        let mut identities = Vec::new();
        if options.identities {
            let lookups = self.providers.iter().map(|(name, p, _)| async move {
                let identity = match tokio::time::timeout_at(deadline, p.identity()).await {
                    Ok(r) => r,
                    Err(_) => Err(FetchError::new(
                        ErrorKind::Timeout,
                        format!(
                            "no answer within {} s (the resolution deadline; see --timeout)",
                            options.deadline.as_secs_f32()
                        ),
                    )),
                };
                ProviderIdentity {
                    name: name.clone(),
                    kind: p.kind(),
                    identity,
                }
            });
            identities = futures::future::join_all(lookups).await;
        }
        // Expiries from the stores' metadata, for the documents that were fetched: free where
        // they came with the value; a request of their own (AWS tags) only for `check`.
        let mut expiries: Expiries = HashMap::new();
        let lookups = self.providers.iter().flat_map(|(_, p, docs)| {
            let fetched = &fetched;
            docs.iter()
                .filter(move |d| matches!(fetched.get(*d), Some(Ok(_))))
                .map(move |d| async move {
                    let label = p.kind().expiry_source();
                    match tokio::time::timeout_at(deadline, p.expiry(d, options.identities)).await {
                        Ok(Ok(Some(at))) => Some((d.clone(), (at, label))),
                        Ok(Err(e)) => {
                            tracing::info!(document = %d, "expiry unknown: {e}");
                            None
                        }
                        _ => None,
                    }
                })
        });
        let found: Vec<_> = futures::future::join_all(lookups.collect::<Vec<_>>()).await;
        expiries.extend(found.into_iter().flatten());
        let mut resolution = assemble(self.config, &fetched, &expiries);
        resolution.identities = identities;
        resolution.consumed_env = self.ctx.env.consumed();
        resolution
    }

    /// Lets every provider release what it obtained (at most 5 s in all).
    pub async fn finish(&self) {
        self.finisher().await;
    }

    /// [`Resolver::finish`] as a task of its own, so it can run while the child starts.
    pub fn finisher(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let providers: Vec<Arc<dyn Provider>> =
            self.providers.iter().map(|(_, p, _)| p.clone()).collect();
        async move {
            let finishes = providers.iter().map(|p| p.finish());
            let all = futures::future::join_all(finishes);
            let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
        }
    }
}

/// The sibling key that holds a credential's expiry in a document.
const EXPIRES_AT: &str = "expires_at";

/// A reference's expiry: a sibling `expires_at` key in its document (for `from`, a key of the
/// object), else its store's metadata.
fn expiry_of(
    fetched: &Fetched,
    expiries: &Expiries,
    reference: &Reference,
    object: bool,
) -> Option<crate::expiry::Expiry> {
    use cme_exec_providers::Key;
    let sibling = payload_of(fetched, reference).ok().and_then(|payload| {
        let whole = select_object(payload, None).ok()?;
        let parent: Option<&serde_json::Map<String, serde_json::Value>> =
            match (&reference.key, object) {
                (None, true) | (Some(Key::Plain(_)), false) => Some(whole.expose()),
                (Some(Key::Plain(k)), true) => whole.expose().get(k)?.as_object(),
                (Some(Key::Pointer(p)), _) => {
                    let segments: Vec<String> = p
                        .split('/')
                        .skip(1)
                        .map(|s| s.replace("~1", "/").replace("~0", "~"))
                        .collect();
                    let keep = if object {
                        segments.len()
                    } else {
                        segments.len().saturating_sub(1)
                    };
                    let mut at = whole.expose();
                    for seg in &segments[..keep] {
                        at = at.get(seg)?.as_object()?;
                    }
                    Some(at)
                }
                (None, false) => None,
            };
        parent?
            .get(EXPIRES_AT)?
            .as_str()
            .map(|at| crate::expiry::Expiry::new(at, "expires_at key"))
    });
    sibling.or_else(|| {
        expiries
            .get(&reference.document)
            .map(|(at, label)| crate::expiry::Expiry::new(at, label))
    })
}

fn payload_of<'a>(fetched: &'a Fetched, reference: &Reference) -> Result<&'a Payload, Failure> {
    match fetched.get(&reference.document) {
        Some(Ok(p)) => Ok(p),
        Some(Err(e)) => Err(e.into()),
        None => Err(Failure::new("was not fetched")),
    }
}

fn select_field(fetched: &Fetched, reference: &Reference) -> Result<SecretString, Failure> {
    let payload = payload_of(fetched, reference)?;
    select_string(payload, reference.key.as_ref()).map_err(|e| Failure::new(e.message))
}

fn select_map(fetched: &Fetched, reference: &Reference) -> Result<SecretMap, Failure> {
    let payload = payload_of(fetched, reference)?;
    select_object(payload, reference.key.as_ref()).map_err(|e| Failure::new(e.message))
}

/// Reads the fields of one `{"username": ..., ...}` object. Unknown keys and non-strings are
/// failures (keys are named; values never shown).
fn fields_of(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(Field, SecretString)>, Failure> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (k, v) in map {
        if k == EXPIRES_AT {
            continue; // the object's expiry (crate::expiry), not a field
        }
        let Some(field) = Field::from_name(k) else {
            problems.push(format!(
                "unknown key `{}` (expected username, api_token, pat, session_cookies, cloud_id)",
                crate::error::strip_controls(k)
            ));
            continue;
        };
        match v {
            serde_json::Value::String(s) => out.push((field, SecretString::from(s.clone()))),
            other => problems.push(format!(
                "`{k}` is {}, expected a string",
                cme_exec_providers::payload::describe(other)
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Failure::new(problems.join("; ")))
    }
}

/// Each document's expiry from its store's metadata, with the store's label.
type Expiries = HashMap<Document, (String, &'static str)>;

/// Puts the fetched values together, in named steps. Precedence is the order of the layers:
/// `[auth] from` < an instance's `from` < its explicit fields ([`InstanceAuth::layer`]).
fn assemble(config: &Config, fetched: &Fetched, expiries: &Expiries) -> Resolution {
    let mut verdicts = Vec::new();
    let mut bulk = bulk_layer(config, fetched, &mut verdicts);
    let bulk_origin = Origin::Bulk(
        config
            .auth_from
            .as_ref()
            .map(|r| r.raw.clone())
            .unwrap_or_default(),
    );
    let mut auth = Auth::default();
    for instance in &config.instances {
        let key = (instance.product, instance.url.clone());
        let mut fields = InstanceAuth::default();
        if let Some(entries) = bulk.remove(&key) {
            fields.layer(entries, &bulk_origin);
        }
        let layers = Layers {
            instance,
            fetched,
            expiries,
        };
        layers.document_layer(&mut fields, &mut verdicts);
        layers.explicit_layer(&mut fields, &mut verdicts);
        auth.instances.insert(key, fields);
    }
    // Instances that only `[auth] from` names.
    for (key, entries) in bulk {
        let mut fields = InstanceAuth::default();
        fields.layer(entries, &bulk_origin);
        auth.instances.insert(key, fields);
    }
    // An instance with a failed reference is not checked as a combination: its missing field
    // is already reported.
    let failed: BTreeSet<(Product, String)> = verdicts
        .iter()
        .filter(|v| v.outcome.is_err())
        .filter_map(|v| Some((v.product?, v.url.clone()?)))
        .collect();
    for (key, instance) in &auth.instances {
        check_values(key, instance, &mut verdicts);
        if !failed.contains(key) {
            check_combination(key, instance, &mut verdicts);
        }
    }
    Resolution {
        auth,
        verdicts,
        identities: Vec::new(),
        consumed_env: BTreeSet::new(),
    }
}

impl InstanceAuth {
    /// Lays `entries` over what is there: a later layer wins.
    fn layer(&mut self, entries: Vec<(Field, SecretString)>, origin: &Origin) {
        for (f, secret) in entries {
            self.fields.insert(
                f,
                Value {
                    secret,
                    origin: origin.clone(),
                },
            );
        }
    }
}

/// Step 1: `[auth] from`, read into fields per instance.
fn bulk_layer(
    config: &Config,
    fetched: &Fetched,
    verdicts: &mut Vec<Verdict>,
) -> BTreeMap<(Product, String), Vec<(Field, SecretString)>> {
    let mut bulk = BTreeMap::new();
    if let Some(r) = &config.auth_from {
        let outcome = select_map(fetched, r).and_then(|map| read_bulk(&map, &mut bulk));
        verdicts.push(Verdict {
            product: None,
            url: None,
            subject: "[auth] from".into(),
            source: r.raw.clone(),
            outcome,
            expires: None,
        });
    }
    bulk
}

/// What an instance's own layers read from.
struct Layers<'a> {
    instance: &'a crate::config::Instance,
    fetched: &'a Fetched,
    expiries: &'a Expiries,
}

impl Layers<'_> {
    /// The verdict of one subject of the instance; a resolved reference carries its expiry.
    fn verdict(
        &self,
        subject: &str,
        reference: Option<(&Reference, bool)>,
        source: &str,
        outcome: Result<(), Failure>,
    ) -> Verdict {
        let expires = match reference {
            Some((r, whole)) if outcome.is_ok() => expiry_of(self.fetched, self.expiries, r, whole),
            _ => None,
        };
        Verdict {
            product: Some(self.instance.product),
            url: Some(self.instance.url.clone()),
            subject: subject.to_owned(),
            source: source.to_owned(),
            outcome,
            expires,
        }
    }

    /// Step 2: the instance's `from` document.
    fn document_layer(&self, fields: &mut InstanceAuth, verdicts: &mut Vec<Verdict>) {
        let Some(r) = &self.instance.from else { return };
        let outcome = select_map(self.fetched, r)
            .and_then(|m| fields_of(m.expose()))
            .map(|entries| fields.layer(entries, &Origin::From(r.raw.clone())));
        verdicts.push(self.verdict("from", Some((r, true)), &r.raw, outcome));
    }

    /// Step 3: the instance's explicit fields (literals and references).
    fn explicit_layer(&self, fields: &mut InstanceAuth, verdicts: &mut Vec<Verdict>) {
        for (field, spec) in &self.instance.fields {
            match spec {
                FieldSpec::Literal(s) => {
                    fields.layer(
                        vec![(*field, SecretString::from(s.clone()))],
                        &Origin::Literal,
                    );
                    verdicts.push(self.verdict(field.name(), None, "(literal)", Ok(())));
                }
                FieldSpec::Reference(r) => {
                    let outcome = select_field(self.fetched, r).map(|s| {
                        fields.layer(vec![(*field, s)], &Origin::Reference(r.raw.clone()));
                    });
                    verdicts.push(self.verdict(field.name(), Some((r, false)), &r.raw, outcome));
                }
            }
        }
    }
}

/// Step 4: every value is usable (not empty, no control character). A field whose reference
/// resolved has its verdict turned into the failure, so that it is reported once; a field that
/// came from `from` or `[auth] from` gets its own.
fn check_values(
    (product, url): &(Product, String),
    instance: &InstanceAuth,
    verdicts: &mut Vec<Verdict>,
) {
    for (field, value) in &instance.fields {
        let v = value.secret.expose_secret();
        let problem = if v.trim().is_empty() {
            Some("the value is empty")
        } else {
            control_character_problem(v)
        };
        let Some(problem) = problem else { continue };
        let own = verdicts.iter_mut().find(|x| {
            x.product == Some(*product)
                && x.url.as_ref() == Some(url)
                && x.subject == field.name()
                && x.outcome.is_ok()
        });
        match own {
            Some(x) => x.outcome = Err(Failure::new(problem)),
            None => verdicts.push(Verdict {
                product: Some(*product),
                url: Some(url.clone()),
                subject: field.name().into(),
                source: value.origin.to_string(),
                outcome: Err(Failure::new(problem)),
                expires: None,
            }),
        }
    }
}

/// Step 5: what cme would do with an instance's combination of fields.
fn check_combination(
    (product, url): &(Product, String),
    instance: &InstanceAuth,
    verdicts: &mut Vec<Verdict>,
) {
    let verdict = |subject: &str, failure: Failure| Verdict {
        product: Some(*product),
        url: Some(url.clone()),
        subject: subject.into(),
        source: String::new(),
        outcome: Err(failure),
        expires: None,
    };
    let has = |f| instance.fields.contains_key(&f);
    if has(Field::ApiToken) && !has(Field::Username) {
        verdicts.push(verdict(
            INSTANCE,
            Failure {
                message:
                    "api_token is set but username is not: cme would send no credentials at all"
                        .into(),
                hint: Some("add username (the Atlassian account's e-mail address)".into()),
            },
        ));
    }
    if has(Field::Username)
        && !has(Field::ApiToken)
        && !has(Field::Pat)
        && !has(Field::SessionCookies)
    {
        verdicts.push(verdict(
            INSTANCE,
            Failure::new("username is set but api_token is not: cme would send no credentials"),
        ));
    }
}

/// A value cme would put into an HTTP header must not hold NUL or another control character.
/// Tab is allowed, and so are CR and LF: cme strips `\r` and `\n` from every credential (issue
/// 9, item 16). The value itself is never described beyond that.
fn control_character_problem(value: &str) -> Option<&'static str> {
    value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        .then_some(
            "the value holds a NUL or another control character (only tab, CR and LF are allowed); \
             cme would send it in an HTTP header",
        )
}

fn read_bulk(
    map: &SecretMap,
    bulk: &mut BTreeMap<(Product, String), Vec<(Field, SecretString)>>,
) -> Result<(), Failure> {
    let mut problems = Vec::new();
    for (product_name, entries) in map.expose() {
        let Some(product) = Product::from_name(product_name) else {
            problems.push(format!(
                "unknown key `{}` (expected confluence, jira)",
                crate::error::strip_controls(product_name)
            ));
            continue;
        };
        let Some(entries) = entries.as_object() else {
            problems.push(format!("`{product_name}` is not an object of URL → fields"));
            continue;
        };
        for (raw_url, entry) in entries {
            let url = match normalise_url(product, raw_url) {
                Ok(u) => u,
                Err(e) => {
                    problems.push(format!(
                        "{product_name}.{:?}: {e}",
                        crate::config::redact_user_info(raw_url)
                    ));
                    continue;
                }
            };
            let Some(entry) = entry.as_object() else {
                problems.push(format!("{product_name}.{url:?} is not an object of fields"));
                continue;
            };
            match fields_of(entry) {
                Ok(fields) => {
                    if bulk.insert((product, url.clone()), fields).is_some() {
                        problems.push(format!(
                            "{product_name}.{url:?} is given twice (after normalisation)"
                        ));
                    }
                }
                Err(f) => problems.push(format!("{product_name}.{url:?}: {}", f.message)),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(problems.join("; ")))
    }
}
