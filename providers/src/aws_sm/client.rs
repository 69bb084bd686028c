//! The Secrets Manager client (only with the `aws-sm` feature).
//!
//! - The SDK's configuration is loaded on first use, once per run (it is async, and a provider
//!   that is declared but never used costs nothing).
//! - Distinct (region, secret, version) targets are fetched once. Secrets read at their current
//!   version are fetched together with `BatchGetSecretValue` (up to 20 per call), which answered
//!   10 secrets in one call as fast as one `GetSecretValue` against moto (see
//!   docs/providers/aws-sm.md, "Performance"); versioned references, single secrets and secrets
//!   a batch did not answer use `GetSecretValue`, concurrently. When the batch call itself is
//!   refused (a policy that grants `GetSecretValue` but not `BatchGetSecretValue`, or a store
//!   that does not implement it) the same secrets are read one by one.
//! - Retries: the SDK's standard mode (connection errors, throttling, 5xx), at most
//!   [`MAX_ATTEMPTS`] attempts with jittered exponential backoff; timeouts per attempt and per
//!   operation well inside the resolver's default 30 s deadline, which bounds everything.
//! - Errors carry the AWS error code and AWS's message (which never holds a secret value); a
//!   response the SDK could not read is described by its status only, since its body may.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::Client;
use secrecy::SecretString;
use tokio::sync::OnceCell;
use zeroize::Zeroize as _;

use super::{parse_target, Settings, Target, Version};
use crate::aws_shared::diagnose;
use crate::aws_shared::fetch::fetch_deduplicated;
use crate::aws_shared::sdk::{self, Service, MAX_ATTEMPTS, OPERATION_TIMEOUT};
use crate::payload::{Format, Payload, MAX_DOCUMENT_BYTES};
use crate::{progress, Context, Document, ErrorKind, FetchError, Identity, Kind, Provider};

/// `BatchGetSecretValue` takes at most this many ids.
const BATCH_MAX: usize = 20;

/// Secrets Manager, as the shared AWS code names it.
pub(super) const SERVICE: Service = Service {
    kind: "aws-sm",
    store: "AWS Secrets Manager",
    endpoint_var: "AWS_ENDPOINT_URL_SECRETS_MANAGER",
};

pub(super) fn build(
    name: &str,
    settings: &Settings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    let endpoint = sdk::check_environment(&SERVICE, name, settings, ctx)?;
    Ok(Arc::new(AwsSmProvider {
        name: name.to_owned(),
        settings: settings.clone(),
        endpoint,
        ctx: Arc::clone(ctx),
        state: OnceCell::new(),
    }))
}

pub(super) struct AwsSmProvider {
    name: String,
    settings: Settings,
    /// The Secrets Manager endpoint when one is configured (setting, then the SDK's variables).
    endpoint: Option<String>,
    /// For describing credential failures (which profile, which files).
    ctx: Arc<Context>,
    state: OnceCell<Result<Loaded, FetchError>>,
}

/// The SDK's configuration, loaded once, and a client per region.
struct Loaded {
    sdk: SdkConfig,
    clients: Mutex<HashMap<Option<String>, Client>>,
}

/// What one request returns for one target: the secret text, or why not.
type Fetched = Result<SecretString, FetchError>;

impl AwsSmProvider {
    async fn loaded(&self) -> Result<&Loaded, FetchError> {
        let state = self.state.get_or_init(|| self.load()).await;
        state.as_ref().map_err(Clone::clone)
    }

    async fn load(&self) -> Result<Loaded, FetchError> {
        let sdk = sdk::load(&self.settings, &self.ctx).await?;
        Ok(Loaded {
            sdk,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The client for `region` (or the provider's), the configuration loaded on first use.
    pub(super) async fn client_for(&self, region: Option<&str>) -> Result<Client, FetchError> {
        let loaded = self.loaded().await?;
        self.client(loaded, region)
    }

    /// The client for an ARN's region, or the provider's region.
    fn client(&self, loaded: &Loaded, region: Option<&str>) -> Result<Client, FetchError> {
        let key = region.map(str::to_owned);
        let mut clients = loaded.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        if region.is_none() && loaded.sdk.region().is_none() {
            return Err(FetchError::invalid(format!(
                "the aws-sm provider `{}` has no AWS region",
                self.name
            ))
            .with_hint(format!(
                "set region in [providers.{}], or AWS_REGION, or a region in the AWS profile \
                 (a reference by ARN uses the ARN's region)",
                self.name
            )));
        }
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(&loaded.sdk);
        if let Some(r) = region {
            builder = builder.region(Region::new(r.to_owned()));
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder = builder.interceptor(diagnose::Attempts {
            store: "AWS Secrets Manager",
            address: self.endpoint_name(),
            max_attempts: MAX_ATTEMPTS,
        });
        let client = Client::from_conf(builder.build());
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// `GetSecretValue` for one target.
    pub(super) async fn get(&self, client: &Client, target: &Target) -> Fetched {
        let _waiting = progress::begin("AWS Secrets Manager", &self.endpoint_name(), MAX_ATTEMPTS);
        let mut request = client.get_secret_value().secret_id(&target.secret_id);
        match &target.version {
            Version::Current => {}
            Version::Stage(stage) => request = request.version_stage(stage),
            Version::Id(id) => request = request.version_id(id),
        }
        match request.send().await {
            Ok(out) => into_text(out.secret_string, out.secret_binary, target),
            Err(err) => Err(self.sdk_error("GetSecretValue", target, err)),
        }
    }

    /// `GetSecretValue` for several targets, concurrently ([`crate::fetch_concurrently`]).
    async fn get_each(
        &self,
        client: &Client,
        targets: Vec<Target>,
        concurrency: usize,
    ) -> Vec<(Target, Fetched)> {
        let results =
            crate::fetch_concurrently(&targets, concurrency, |t| self.get(client, t)).await;
        targets.into_iter().zip(results).collect()
    }

    /// `BatchGetSecretValue` for up to [`BATCH_MAX`] targets at their current version; targets
    /// it does not answer, and all of them when the call is refused, go through `GetSecretValue`.
    async fn batch(
        &self,
        client: &Client,
        targets: Vec<Target>,
        concurrency: usize,
    ) -> Vec<(Target, Fetched)> {
        let ids: Vec<String> = targets.iter().map(|t| t.secret_id.clone()).collect();
        let waiting = progress::begin("AWS Secrets Manager", &self.endpoint_name(), MAX_ATTEMPTS);
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let mut next_token: Option<String> = None;
        // With an id list every answer fits one page; follow a token a few times at most.
        for _ in 0..4 {
            let result = client
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.clone()))
                .set_next_token(next_token.take())
                .send()
                .await;
            match result {
                Ok(out) => {
                    entries.extend(out.secret_values.unwrap_or_default());
                    errors.extend(out.errors.unwrap_or_default());
                    match out.next_token {
                        Some(t) if !t.is_empty() => next_token = Some(t),
                        _ => break,
                    }
                }
                Err(err) => {
                    drop(waiting);
                    let first = targets[0].clone();
                    let bad_credentials = matches!(
                        &err,
                        SdkError::ServiceError(ctx) if is_credential_error(ctx.err().code())
                    );
                    let e = self.sdk_error("BatchGetSecretValue", &first, err);
                    if bad_credentials
                        || e.kind == ErrorKind::Unavailable
                        || e.kind == ErrorKind::Timeout
                    {
                        // The store is unreachable or failing, or refuses the credentials
                        // themselves: asking once per secret would only multiply the wait.
                        // Every target gets the same reason.
                        return targets
                            .into_iter()
                            .map(|t| {
                                let mut one =
                                    FetchError::new(e.kind, retarget(e.message(), &first, &t));
                                if let Some(h) = e.hint() {
                                    one = one.with_hint(h);
                                }
                                (t, Err(one))
                            })
                            .collect();
                    }
                    tracing::debug!(
                        provider = %self.name,
                        "aws-sm: BatchGetSecretValue refused; reading the secrets one by one"
                    );
                    return self.get_each(client, targets, concurrency).await;
                }
            }
        }

        drop(waiting);
        let mut out = Vec::with_capacity(targets.len());
        let mut rest = Vec::new();
        for target in targets {
            let id = target.secret_id.as_str();
            if let Some(pos) = entries.iter().position(|e| entry_matches(e, id)) {
                // Several ids may name one secret (a name and its ARN): copy, do not take.
                let entry = &entries[pos];
                let fetched = into_text(
                    entry.secret_string.clone(),
                    entry.secret_binary.clone(),
                    &target,
                );
                out.push((target, fetched));
            } else if let Some(err) = errors.iter().find(|e| e.secret_id() == Some(id)) {
                let e = aws_error(
                    "BatchGetSecretValue",
                    &target,
                    err.error_code(),
                    None,
                    err.message(),
                );
                out.push((target, Err(e)));
            } else {
                rest.push(target);
            }
        }
        for entry in &mut entries {
            if let Some(s) = entry.secret_string.as_mut() {
                s.zeroize();
            }
            if let Some(b) = entry.secret_binary.take() {
                b.into_inner().zeroize();
            }
        }
        if !rest.is_empty() {
            out.extend(self.get_each(client, rest, concurrency).await);
        }
        out
    }

    pub(super) fn sdk_error<E>(
        &self,
        op: &str,
        target: &Target,
        err: SdkError<E, HttpResponse>,
    ) -> FetchError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::ServiceError(ctx) => aws_error(
                op,
                target,
                ctx.err().code(),
                Some(ctx.raw().status().as_u16()),
                ctx.err().message(),
            ),
            SdkError::TimeoutError(_) => FetchError::new(
                ErrorKind::Timeout,
                format!(
                    "{op} for secret {target}: no answer from {} within {} s",
                    self.endpoint_name(),
                    OPERATION_TIMEOUT.as_secs()
                ),
            ),
            SdkError::ResponseError(ctx) => FetchError::unavailable(format!(
                "{op} for secret {target}: {} sent a response that could not be read (HTTP {})",
                self.endpoint_name(),
                ctx.raw().status().as_u16()
            )),
            _ => {
                let (kind, cause, hint) = self.transport_failure(&err, &self.endpoint_name());
                let e = FetchError::new(kind, format!("{op} for secret {target}: {cause}"));
                match hint {
                    Some(h) => e.with_hint(h),
                    None => e,
                }
            }
        }
    }

    /// A failure that is not an answer from AWS, in words ([`sdk::transport_failure`]).
    fn transport_failure<E, R>(
        &self,
        err: &SdkError<E, R>,
        endpoint: &str,
    ) -> (ErrorKind, String, Option<String>)
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        sdk::transport_failure(err, endpoint, &self.settings, &self.ctx, &SERVICE)
    }

    pub(super) fn endpoint_name(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => "AWS Secrets Manager".to_owned(),
        }
    }
}

/// Rewrites a message about `from` to be about `to` (the same failure for every target of a batch).
fn retarget(message: &str, from: &Target, to: &Target) -> String {
    message.replacen(&format!("secret {from}"), &format!("secret {to}"), 1)
}

/// Whether a batch entry answers the requested id: its name, its full ARN, or a partial ARN
/// (the full ARN without Secrets Manager's `-XXXXXX` suffix).
fn entry_matches(entry: &aws_sdk_secretsmanager::types::SecretValueEntry, id: &str) -> bool {
    if entry.name.as_deref() == Some(id) || entry.arn.as_deref() == Some(id) {
        return true;
    }
    match entry.arn.as_deref().and_then(|arn| arn.strip_prefix(id)) {
        Some(suffix) => {
            id.starts_with("arn:")
                && suffix.len() == 7
                && suffix.starts_with('-')
                && suffix[1..].chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// One error from Secrets Manager, by its code (moto answers some with other statuses than AWS,
/// and its IAM refusals have no code the SDK can read: a 403 is access denied whatever the body).
fn aws_error(
    op: &str,
    target: &Target,
    code: Option<&str>,
    status: Option<u16>,
    message: Option<&str>,
) -> FetchError {
    let denied_status = status == Some(403);
    let mut code_text = code
        .map(str::to_owned)
        .or_else(|| denied_status.then(|| "AccessDeniedException".to_owned()))
        .unwrap_or_else(|| "an error without a code".to_owned());
    if let Some(s) = status {
        code_text.push_str(&format!(" (HTTP {s})"));
    }
    let mut text = format!("{op} for secret {target}: {code_text}");
    if let Some(m) = message
        .map(|m| crate::aws_shared::one_line(m, 300))
        .filter(|m| !m.is_empty())
    {
        text.push_str(": ");
        text.push_str(&m);
    }
    let lower = message.unwrap_or_default().to_ascii_lowercase();
    if sdk::is_throttling(code, status) {
        return sdk::throttled(text, &SERVICE);
    }
    match code.unwrap_or_default() {
        "ResourceNotFoundException" => FetchError::new(ErrorKind::NotFound, text).with_hint(
            "check the name or ARN, the region, and (with version_stage or version_id) the version",
        ),
        "AccessDeniedException" | "AccessDenied" => FetchError::new(ErrorKind::Denied, text)
            .with_hint(
                "the identity `cme-exec check` shows needs secretsmanager:GetSecretValue \
                 on the secret (and kms:Decrypt on its key)",
            ),
        "" if denied_status => FetchError::new(ErrorKind::Denied, text).with_hint(
            "the identity `cme-exec check` shows needs secretsmanager:GetSecretValue on the secret",
        ),
        "DecryptionFailure" => FetchError::new(ErrorKind::Denied, text)
            .with_hint("the identity needs kms:Decrypt on the secret's KMS key"),
        "InvalidRequestException" if lower.contains("deleted") || lower.contains("deletion") => {
            FetchError::new(ErrorKind::NotFound, text).with_hint(
                "the secret is scheduled for deletion; restore it with \
                 `aws secretsmanager restore-secret --secret-id ...` or use another secret",
            )
        }
        "InvalidRequestException" | "InvalidParameterException" | "ValidationException" => {
            FetchError::new(ErrorKind::Invalid, text)
        }
        c if is_credential_error(Some(c)) => FetchError::new(ErrorKind::Denied, text).with_hint(
            "AWS refused the credentials themselves: check they are current (`cme-exec check` \
                 shows which identity was used)",
        ),
        _ if status.is_some_and(|s| s >= 500) => FetchError::new(ErrorKind::Unavailable, text),
        "InternalServiceError" => FetchError::new(ErrorKind::Unavailable, text),
        _ => FetchError::new(ErrorKind::Invalid, text),
    }
}

/// Errors that say the credentials themselves are wrong, whatever the request.
fn is_credential_error(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "IncompleteSignature"
                | "MissingAuthenticationToken"
        )
    )
}

/// A secret version's value as text: `SecretString` as it is, `SecretBinary` when it is UTF-8.
fn into_text(string: Option<String>, binary: Option<Blob>, target: &Target) -> Fetched {
    if let Some(s) = string {
        if s.len() > MAX_DOCUMENT_BYTES {
            let mut s = s;
            s.zeroize();
            return Err(too_large(target));
        }
        return Ok(SecretString::from(s));
    }
    if let Some(blob) = binary {
        let bytes = blob.into_inner();
        if bytes.len() > MAX_DOCUMENT_BYTES {
            let mut bytes = bytes;
            bytes.zeroize();
            return Err(too_large(target));
        }
        return match String::from_utf8(bytes) {
            Ok(s) => Ok(SecretString::from(s)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(FetchError::invalid(format!(
                    "secret {target}: its SecretBinary is not UTF-8 text, which a credential field \
                     needs"
                ))
                .with_hint("store the credential as SecretString, or as UTF-8 bytes"))
            }
        };
    }
    Err(FetchError::invalid(format!(
        "secret {target}: the version has neither SecretString nor SecretBinary"
    )))
}

fn too_large(target: &Target) -> FetchError {
    FetchError::invalid(format!(
        "secret {target} is larger than {} KiB, the limit for one secret document",
        MAX_DOCUMENT_BYTES / 1024
    ))
}

#[async_trait]
impl Provider for AwsSmProvider {
    fn kind(&self) -> Kind {
        super::KIND
    }

    async fn write(
        &self,
        location: &str,
        fields: &crate::provider::Fields,
    ) -> Result<bool, FetchError> {
        super::write::write(self, location, fields).await
    }

    async fn fetch(&self, doc: &Document) -> Result<Payload, FetchError> {
        self.fetch_many(std::slice::from_ref(doc), 1)
            .await
            .pop()
            .unwrap_or_else(|| Err(FetchError::invalid("nothing was fetched")))
    }

    async fn fetch_many(
        &self,
        docs: &[Document],
        concurrency: usize,
    ) -> Vec<Result<Payload, FetchError>> {
        fetch_deduplicated(
            docs,
            parse_target,
            |targets| async move {
                let loaded = self.loaded().await?;
                Ok(self.fetch_targets(loaded, targets, concurrency).await)
            },
            |text: &SecretString| Payload::Text {
                value: text.clone(),
                format: Format::Unknown,
            },
            |t| format!("secret {t} was not fetched"),
        )
        .await
    }

    /// The `expires_at` tag, from `DescribeSecret`: a request of its own, so only for `check`.
    async fn expiry(
        &self,
        doc: &Document,
        extra_requests: bool,
    ) -> Result<Option<String>, FetchError> {
        if !extra_requests {
            return Ok(None);
        }
        let target = parse_target(doc).map_err(FetchError::invalid)?;
        let loaded = self.loaded().await?;
        let client = self.client(loaded, target.arn_region.as_deref())?;
        let out = client
            .describe_secret()
            .secret_id(&target.secret_id)
            .send()
            .await
            .map_err(|e| self.sdk_error("DescribeSecret", &target, e))?;
        Ok(out
            .tags()
            .iter()
            .find(|t| t.key() == Some("expires_at"))
            .and_then(|t| t.value())
            .map(|v| v.chars().filter(|c| !c.is_control()).take(64).collect()))
    }

    async fn identity(&self) -> Result<Option<Identity>, FetchError> {
        let loaded = self.loaded().await?;
        sdk::identity(&loaded.sdk, &self.settings, &self.ctx, &SERVICE).await
    }
}

impl AwsSmProvider {
    /// Fetches distinct targets: batches per region for current versions, single requests for
    /// the rest, all at once (at most `concurrency` requests in flight per kind of work).
    async fn fetch_targets(
        &self,
        loaded: &Loaded,
        targets: Vec<Target>,
        concurrency: usize,
    ) -> Vec<(Target, Fetched)> {
        let own_region = loaded.sdk.region().map(|r| r.as_ref().to_owned());
        let mut by_region: BTreeMap<Option<String>, (Vec<Target>, Vec<Target>)> = BTreeMap::new();
        for t in targets {
            // An ARN in the provider's own region shares its client (and its batches).
            let region = t
                .arn_region
                .clone()
                .filter(|r| Some(r) != own_region.as_ref());
            let entry = by_region.entry(region).or_default();
            if t.version == Version::Current {
                entry.0.push(t);
            } else {
                entry.1.push(t);
            }
        }
        let mut out = Vec::new();
        let mut jobs: Vec<futures::future::BoxFuture<'_, Vec<(Target, Fetched)>>> = Vec::new();
        for (region, (current, versioned)) in by_region {
            let client = match self.client(loaded, region.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    for t in current.into_iter().chain(versioned) {
                        out.push((t, Err(e.clone())));
                    }
                    continue;
                }
            };
            let mut singles = versioned;
            if current.len() >= 2 {
                for chunk in current.chunks(BATCH_MAX) {
                    let client = client.clone();
                    let chunk = chunk.to_vec();
                    jobs.push(Box::pin(async move {
                        self.batch(&client, chunk, concurrency).await
                    }));
                }
            } else {
                singles.extend(current);
            }
            if !singles.is_empty() {
                jobs.push(Box::pin(async move {
                    self.get_each(&client, singles, concurrency).await
                }));
            }
        }
        for results in futures::future::join_all(jobs).await {
            out.extend(results);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::types::SecretValueEntry;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/jira-AbCdEf";

    fn target(id: &str) -> Target {
        Target {
            secret_id: id.to_owned(),
            arn_region: None,
            version: Version::Current,
        }
    }

    #[test]
    fn batch_entries_match_names_full_and_partial_arns() {
        let entry = SecretValueEntry::builder()
            .name("prod/jira")
            .arn(ARN)
            .build();
        assert!(entry_matches(&entry, "prod/jira"));
        assert!(entry_matches(&entry, ARN));
        assert!(entry_matches(
            &entry,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/jira"
        ));
        assert!(!entry_matches(&entry, "prod/jir"));
        assert!(!entry_matches(
            &entry,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/ji"
        ));
    }

    #[test]
    fn error_codes_map_to_kinds_and_hints() {
        let t = target("prod/jira");
        let e = aws_error(
            "GetSecretValue",
            &t,
            Some("ResourceNotFoundException"),
            Some(404),
            None,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message().contains("ResourceNotFoundException (HTTP 404)"),
            "{e}"
        );
        // moto's IAM refusal: a 403 whose body the SDK cannot read, so no code.
        let e = aws_error("GetSecretValue", &t, None, Some(403), None);
        assert_eq!(e.kind, ErrorKind::Denied);
        assert!(e.message().contains("AccessDeniedException"), "{e}");
        let e = aws_error(
            "GetSecretValue",
            &t,
            Some("InvalidRequestException"),
            Some(400),
            Some(
                "You tried to   perform the operation on a secret that's currently marked deleted.",
            ),
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.hint().unwrap().contains("restore-secret"));
        assert!(
            e.message().contains("tried to perform"),
            "spaces collapsed: {e}"
        );
        let e = aws_error(
            "GetSecretValue",
            &t,
            Some("DecryptionFailure"),
            Some(400),
            None,
        );
        assert!(e.hint().unwrap().contains("kms:Decrypt"));
        let e = aws_error(
            "GetSecretValue",
            &t,
            Some("ExpiredTokenException"),
            Some(400),
            None,
        );
        assert_eq!(e.kind, ErrorKind::Denied);
        let e = aws_error(
            "BatchGetSecretValue",
            &t,
            Some("ThrottlingException"),
            Some(400),
            Some("Rate exceeded"),
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            e.message()
                .contains("ThrottlingException (HTTP 400): Rate exceeded")
                && e.message().contains("throttling")
                && e.message().contains(&format!("{MAX_ATTEMPTS} attempts")),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("rate-limits"), "{e:?}");
        // HTTP 429 without a code the SDK could read is throttling too.
        let e = aws_error("GetSecretValue", &t, None, Some(429), None);
        assert!(e.message().contains("throttling"), "{e}");
        let e = aws_error(
            "GetSecretValue",
            &t,
            Some("ServiceUnavailable"),
            Some(503),
            None,
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
    }

    #[test]
    fn values_are_text_or_clear_errors() {
        let t = target("x");
        let ok = into_text(None, Some(Blob::new(b"{\"pat\":\"p\"}".to_vec())), &t).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&ok), "{\"pat\":\"p\"}");
        let e = into_text(None, Some(Blob::new(vec![0xff, 0xfe])), &t).unwrap_err();
        assert!(e.message().contains("not UTF-8"), "{e}");
        let e = into_text(None, None, &t).unwrap_err();
        assert!(e.message().contains("neither"), "{e}");
        let big = "a".repeat(MAX_DOCUMENT_BYTES + 1);
        assert!(into_text(Some(big), None, &t)
            .unwrap_err()
            .message()
            .contains("larger"));
    }

    #[test]
    fn clean_makes_one_bounded_line() {
        assert_eq!(
            crate::aws_shared::one_line("a\n\tb   c\u{7}d", 100),
            "a b c d"
        );
        assert_eq!(crate::aws_shared::one_line(&"é".repeat(10), 5), "éé...");
    }
}
