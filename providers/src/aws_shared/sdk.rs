//! The AWS SDK's configuration for the AWS backends (with `aws-sm` or `aws-ssm`).
//!
//! - [`check_environment`]: the rules checked when a provider is built: the credential variables
//!   never reach the child, `LOG_SENSITIVE_BODIES=true` is refused, endpoint variables are held
//!   to the `endpoint_url` rule, and ambient credentials go only to the environment's endpoint
//!   (docs/security.md).
//! - [`load`]: the configuration with its credentials resolved, once per run for every AWS
//!   provider with the same settings (an `aws-sm` and an `aws-ssm` provider of one run share one
//!   credential chain, one AssumeRole and one answer to a failure).
//! - [`identity`]: STS `GetCallerIdentity`, for `check`.
//! - [`transport_failure`]: a request that got no answer from AWS, in words.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::result::SdkError;
use tokio::sync::OnceCell;

use super::diagnose::{self, Place};
use super::{
    check_endpoint, AwsSettings, CREDENTIAL_VARS, DEFAULT_SESSION_NAME, LOG_SENSITIVE_BODIES,
};
use crate::{progress, Context, ErrorKind, FetchError, Identity};

/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// Connecting to an endpoint (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of one request, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(8);
/// One request with all its retries: below the resolver's default deadline (30 s), so that
/// the SDK's own error, which names the cause, usually arrives before the deadline's.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The first retry's backoff (before jitter); each further retry doubles it.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest backoff between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The SDK's adaptive retry mode: the standard mode's retries of connection errors,
/// 5xx and throttling (`ThrottlingException`, `TooManyRequestsException`, HTTP 429, ...), at
/// most [`MAX_ATTEMPTS`] attempts with full-jitter exponential backoff ([`INITIAL_BACKOFF`]
/// doubling, up to [`MAX_BACKOFF`]), plus a client-side rate limiter that slows this process's
/// later requests to the same service and region once one was throttled. The per-attempt and
/// per-operation timeouts still bound every request, and the run's deadline bounds everything.
pub fn retry_config() -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// Whether an AWS error code says the caller exceeded a request rate (the SDK retries these as
/// throttling; `LimitExceededException`, a quota on resources, is not one here).
pub fn is_throttling(code: Option<&str>, status: Option<u16>) -> bool {
    status == Some(429)
        || matches!(
            code,
            Some(
                "ThrottlingException"
                    | "Throttling"
                    | "ThrottledException"
                    | "RequestThrottledException"
                    | "TooManyRequestsException"
                    | "RequestLimitExceeded"
                    | "RequestThrottled"
                    | "SlowDown"
            )
        )
}

/// An answer that is still throttling after the retries: `text` (operation, target, code and
/// AWS's message) and what was tried, with what to do about it.
pub fn throttled(text: String, service: &Service) -> FetchError {
    FetchError::new(
        ErrorKind::Unavailable,
        format!(
            "{text}; AWS is throttling the requests, and still was after {MAX_ATTEMPTS} attempts \
             with jittered backoff"
        ),
    )
    .with_hint(format!(
        "{} limits the request rate of an account and region, shared by everything that uses \
         it: run fewer cme-exec at a time, or keep several fields in one secret; see {}",
        service.store,
        crate::docs_url(&format!("providers/{}.md#rate-limits", service.kind))
    ))
}

/// One AWS service, as its backend names it.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    /// The backend's kind (`aws-sm`), for messages.
    pub kind: &'static str,
    /// For progress and messages: `AWS Secrets Manager`.
    pub store: &'static str,
    /// The service's own endpoint variable, read by the SDK: `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub endpoint_var: &'static str,
}

impl Service {
    /// The endpoint variables the SDK reads for this service (and STS), checked like `endpoint_url`.
    pub fn endpoint_vars(&self) -> [&'static str; 3] {
        [
            self.endpoint_var,
            "AWS_ENDPOINT_URL_STS",
            "AWS_ENDPOINT_URL",
        ]
    }
}

/// The checks made when a provider is built; returns the service's endpoint when one is
/// configured (the setting, else the SDK's variables).
pub fn check_environment(
    service: &Service,
    name: &str,
    settings: &AwsSettings,
    ctx: &Context,
) -> Result<Option<String>, FetchError> {
    let kind = service.kind;
    // The chain may read any of these; the child must not inherit them.
    for var in CREDENTIAL_VARS {
        ctx.env.mark_consumed(var);
    }
    // The SDK's own switch to log response bodies, secret values included, at trace level.
    if ctx
        .env
        .var(LOG_SENSITIVE_BODIES)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(FetchError::invalid(format!(
            "the {kind} provider `{name}` refuses to run with {LOG_SENSITIVE_BODIES}=true, which \
             makes the AWS SDK log secret values"
        ))
        .with_hint(format!("unset {LOG_SENSITIVE_BODIES}")));
    }
    // The SDK reads the endpoint variables itself; hold them to the same rule as endpoint_url.
    for var in service.endpoint_vars() {
        if let Some(url) = ctx.env.var(var) {
            check_endpoint(&url, settings.allow_http).map_err(|e| {
                let e = crate::net::place_allow_http(&e, name, kind, false);
                FetchError::invalid(format!("the {kind} provider `{name}`: {var} {e}"))
            })?;
        }
    }
    // Like the SDK: the variables count unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true.
    let ignore_env = ctx
        .env
        .var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let from_env = if ignore_env {
        None
    } else {
        ctx.env
            .var(service.endpoint_var)
            .or_else(|| ctx.env.var("AWS_ENDPOINT_URL"))
    };
    // Ambient credentials (keys, profile, the default chain) go only where the environment
    // sends them: a config's endpoint_url that is not the environment's needs the explicit tie.
    if let Some(configured) = &settings.endpoint_url {
        let same = from_env
            .as_deref()
            .is_some_and(|e| crate::net::same_endpoint(e, configured));
        if !same && !settings.use_ambient_credentials {
            return Err(FetchError::invalid(format!(
                "the {kind} provider `{name}`: its endpoint_url {} is not the environment's \
                 endpoint ({}), so the environment's AWS credentials are not sent to it",
                crate::net::show_origin(configured),
                from_env.as_deref().map_or_else(
                    || format!("{} and AWS_ENDPOINT_URL are not set", service.endpoint_var),
                    crate::net::show_origin
                ),
            ))
            .with_hint(format!(
                "if your AWS credentials are meant for this endpoint, set use_ambient_credentials \
                 = true in [providers.{name}] (or set {} to it)",
                service.endpoint_var
            )));
        }
    }
    Ok(settings.endpoint_url.clone().or(from_env))
}

/// What the run's AWS providers share for one set of settings.
type Shared = OnceCell<Result<SdkConfig, FetchError>>;

/// The key of a configuration: everything in the settings that shapes it. The endpoint is not
/// part of it (each service sets its own on its client), so it only needs to be the same rule.
fn key(settings: &AwsSettings) -> String {
    format!(
        "aws-sdk-config\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}",
        settings.region,
        settings.profile,
        settings.role_arn,
        settings.external_id,
        settings.session_name,
        settings.allow_http
    )
}

/// The SDK's configuration with its credentials resolved, loaded on first use and shared with
/// every AWS provider of the run that has the same settings.
pub async fn load(settings: &AwsSettings, ctx: &Context) -> Result<SdkConfig, FetchError> {
    let shared: Arc<Shared> = ctx.shared(&key(settings), Shared::new);
    shared
        .get_or_init(|| load_uncached(settings, ctx))
        .await
        .clone()
}

async fn load_uncached(s: &AwsSettings, ctx: &Context) -> Result<SdkConfig, FetchError> {
    let started = std::time::Instant::now();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    // TLS only for https:// requests, its roots loaded at the first one (src/tls.rs).
    loader = loader.http_client(crate::tls::aws_http_client());
    if let Some(region) = &s.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &s.profile {
        loader = loader.profile_name(profile);
    }
    let mut sdk = loader.load().await;
    // The profile's `endpoint_url` reaches the SDK without passing `check_environment`: same rule.
    if let Some(url) = sdk.endpoint_url() {
        check_endpoint(url, s.allow_http)
            .map_err(|e| FetchError::invalid(format!("the endpoint from the AWS profile {e}")))?;
    }
    if let Some(role) = &s.role_arn {
        let mut builder = AssumeRoleProvider::builder(role)
            .configure(&sdk)
            .session_name(
                s.session_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned()),
            );
        if let Some(id) = &s.external_id {
            builder = builder.external_id(id);
        }
        let provider = builder.build().await;
        sdk = sdk
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
    }
    // Credentials once, before any request: a missing credential is then never mistaken for an
    // unreachable endpoint, and is described once for every request of the run.
    let place = Place {
        profile: s.profile.as_deref(),
        env: &ctx.env,
    };
    let waiting = progress::begin("the AWS credential chain", "", 0);
    let sdk = diagnose::resolve_credentials(sdk, &place).await?;
    drop(waiting);
    tracing::debug!(
        region = ?sdk.region().map(|r| r.as_ref().to_owned()),
        elapsed_us = started.elapsed().as_micros() as u64,
        "aws: SDK configuration loaded"
    );
    Ok(sdk)
}

/// A failure that is not an answer from AWS: no credentials, no connection, no answer in time, a
/// request that could not be built. In words, never the error tree's `Debug` (nor a credential
/// provider's own text); `(kind, cause, hint)`.
pub fn transport_failure<E, R>(
    err: &SdkError<E, R>,
    endpoint: &str,
    settings: &AwsSettings,
    ctx: &Context,
    service: &Service,
) -> (ErrorKind, String, Option<String>)
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let place = Place {
        profile: settings.profile.as_deref(),
        env: &ctx.env,
    };
    if let Some(c) = diagnose::credentials_error_in(err) {
        let e = diagnose::credentials_error(c, &place);
        return (e.kind, e.message().to_owned(), e.hint().map(str::to_owned));
    }
    let reach_hint = if endpoint.contains("://") {
        format!(
            "check that {endpoint} is the right endpoint (endpoint_url, AWS_ENDPOINT_URL, {}, \
             AWS_ENDPOINT_URL_STS) and that it is up",
            service.endpoint_var
        )
    } else {
        "check the region and the network (and HTTPS_PROXY, if one is needed)".to_owned()
    };
    match err {
        SdkError::DispatchFailure(f) => {
            tracing::debug!(
                "{}: dispatch failure: {}",
                service.kind,
                aws_smithy_types::error::display::DisplayErrorContext(err)
            );
            match f.as_connector_error() {
                Some(c) => {
                    let (kind, cause) = diagnose::dispatch_cause(c);
                    let hint = (kind != ErrorKind::Invalid).then_some(reach_hint);
                    (kind, format!("{endpoint}: {cause}"), hint)
                }
                None => (
                    ErrorKind::Unavailable,
                    format!("{endpoint}: the request could not be sent"),
                    Some(reach_hint),
                ),
            }
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Timeout,
            format!(
                "no answer from {endpoint} within {} s",
                OPERATION_TIMEOUT.as_secs()
            ),
            Some(reach_hint),
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            format!("{endpoint} sent a response that could not be read"),
            None,
        ),
        _ => (
            ErrorKind::Invalid,
            "the request could not be built (a setting is wrong, such as the region)".to_owned(),
            None,
        ),
    }
}

/// STS `GetCallerIdentity` with the run's configuration: the account, the ARN and the region.
pub async fn identity(
    sdk: &SdkConfig,
    settings: &AwsSettings,
    ctx: &Context,
    service: &Service,
) -> Result<Option<Identity>, FetchError> {
    let mut config = aws_sdk_sts::config::Builder::from(sdk);
    if sdk.region().is_none() {
        // STS answers in every region; only a reference by ARN may have brought us here.
        config = config.region(aws_sdk_sts::config::Region::from_static("us-east-1"));
    }
    let sts_endpoint = ctx
        .env
        .var("AWS_ENDPOINT_URL_STS")
        .or_else(|| ctx.env.var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| "AWS STS".to_owned());
    let config = config.interceptor(diagnose::Attempts {
        store: "AWS STS",
        address: sts_endpoint.clone(),
        max_attempts: MAX_ATTEMPTS,
    });
    let sts = aws_sdk_sts::Client::from_conf(config.build());
    let waiting = progress::begin("AWS STS", &sts_endpoint, MAX_ATTEMPTS);
    let answer = sts.get_caller_identity().send().await;
    drop(waiting);
    match answer {
        Ok(out) => {
            let mut facts = Vec::new();
            if let Some(account) = out.account {
                facts.push(("account".to_owned(), account));
            }
            if let Some(arn) = out.arn {
                facts.push(("arn".to_owned(), arn));
            }
            if let Some(region) = sdk.region() {
                facts.push(("region".to_owned(), region.as_ref().to_owned()));
            }
            Ok(Some(Identity { facts }))
        }
        Err(err) => {
            use aws_sdk_sts::error::ProvideErrorMetadata as _;
            let (kind, detail, hint) = match &err {
                aws_sdk_sts::error::SdkError::ServiceError(c) => (
                    ErrorKind::Unavailable,
                    format!(
                        "{} (HTTP {})",
                        diagnose::code_word(c.err().code()),
                        c.raw().status().as_u16()
                    ),
                    None,
                ),
                aws_sdk_sts::error::SdkError::ResponseError(c) => (
                    ErrorKind::Unavailable,
                    format!(
                        "an unreadable response (HTTP {})",
                        c.raw().status().as_u16()
                    ),
                    None,
                ),
                _ => transport_failure(&err, &sts_endpoint, settings, ctx, service),
            };
            let e = FetchError::new(kind, format!("STS GetCallerIdentity: {detail}"));
            Err(match hint {
                Some(h) => e.with_hint(h),
                None => e,
            })
        }
    }
}
