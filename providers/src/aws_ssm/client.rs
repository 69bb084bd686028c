//! The Parameter Store client (only with the `aws-ssm` feature).
//!
//! The SDK's configuration comes from [`crate::aws_shared::sdk::load`] (shared with `aws-sm`);
//! distinct names are read with `GetParameters`, [`BATCH_MAX`] per call, paths with
//! `GetParametersByPath`, all of it concurrently (at most `concurrency` calls at a time).
//! Errors carry the AWS error code and AWS's message (which never holds a parameter's value).

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::Parameter;
use aws_sdk_ssm::Client;
use secrecy::SecretString;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use zeroize::Zeroize as _;

use super::{parse_target, Target, BATCH_MAX};
use crate::aws_shared::fetch::fetch_deduplicated;
use crate::aws_shared::sdk::{self, Service, MAX_ATTEMPTS, OPERATION_TIMEOUT};
use crate::aws_shared::{diagnose, AwsSettings};
use crate::payload::{Format, Payload, SecretMap, MAX_DOCUMENT_BYTES};
use crate::{progress, Context, Document, ErrorKind, FetchError, Identity, Kind, Provider};

/// Parameter Store, as the shared AWS code names it.
const SERVICE: Service = Service {
    kind: "aws-ssm",
    store: "AWS SSM Parameter Store",
    endpoint_var: "AWS_ENDPOINT_URL_SSM",
};

/// Pages of one path read at most (10 parameters each: Parameter Store's page size).
const MAX_PAGES: usize = 100;

pub(super) fn build(
    name: &str,
    settings: &AwsSettings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    let endpoint = sdk::check_environment(&SERVICE, name, settings, ctx)?;
    Ok(Arc::new(SsmProvider {
        name: name.to_owned(),
        settings: settings.clone(),
        endpoint,
        ctx: Arc::clone(ctx),
        state: OnceCell::new(),
    }))
}

struct SsmProvider {
    name: String,
    settings: AwsSettings,
    endpoint: Option<String>,
    ctx: Arc<Context>,
    state: OnceCell<Result<(SdkConfig, Client), FetchError>>,
}

/// What a target gave.
enum Got {
    Text(SecretString),
    Object(SecretMap),
}

type Fetched = Result<Got, FetchError>;

impl SsmProvider {
    /// Plain names in batches of [`BATCH_MAX`]; names with a selector and paths one by one;
    /// all concurrently.
    async fn fetch_targets(
        &self,
        client: &Client,
        targets: Vec<Target>,
        concurrency: usize,
    ) -> Vec<(Target, Fetched)> {
        let (plain, singles): (Vec<Target>, Vec<Target>) = targets
            .into_iter()
            .partition(|t| matches!(t, Target::Name(n) if !super::has_selector(n)));
        let names: Vec<String> = plain
            .into_iter()
            .filter_map(|t| match t {
                Target::Name(n) => Some(n),
                Target::Path { .. } => None,
            })
            .collect();
        let batches: Vec<Vec<String>> = names.chunks(BATCH_MAX).map(<[String]>::to_vec).collect();
        let (batch_results, single_results) = futures::join!(
            crate::fetch_concurrently(&batches, concurrency, |b| self.get_names(client, b)),
            crate::fetch_concurrently(&singles, concurrency, |t| async move {
                match t {
                    Target::Path { path, recursive } => {
                        self.get_path(client, path, *recursive).await
                    }
                    Target::Name(n) => self.get_selected(client, n).await,
                }
            }),
        );
        let mut out = Vec::new();
        for (batch, results) in batches.iter().zip(batch_results) {
            for (name, r) in batch.iter().zip(results) {
                out.push((Target::Name(name.clone()), r));
            }
        }
        out.extend(singles.into_iter().zip(single_results));
        out
    }

    async fn client(&self) -> Result<&(SdkConfig, Client), FetchError> {
        let state = self
            .state
            .get_or_init(|| async {
                let sdk = sdk::load(&self.settings, &self.ctx).await?;
                if sdk.region().is_none() {
                    return Err(FetchError::invalid(format!(
                        "the aws-ssm provider `{}` has no AWS region",
                        self.name
                    ))
                    .with_hint(format!(
                        "set region in [providers.{}], or AWS_REGION, or a region in the AWS \
                         profile",
                        self.name
                    )));
                }
                let mut builder = aws_sdk_ssm::config::Builder::from(&sdk);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.endpoint_url(endpoint);
                }
                builder = builder.interceptor(diagnose::Attempts {
                    store: SERVICE.store,
                    address: self.endpoint_name(),
                    max_attempts: MAX_ATTEMPTS,
                });
                let client = Client::from_conf(builder.build());
                Ok((sdk, client))
            })
            .await;
        state.as_ref().map_err(Clone::clone)
    }

    fn endpoint_name(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| SERVICE.store.to_owned())
    }

    /// `GetParameters` for up to [`BATCH_MAX`] names.
    async fn get_names(&self, client: &Client, names: &[String]) -> Vec<Fetched> {
        let _waiting = progress::begin(SERVICE.store, &self.endpoint_name(), MAX_ATTEMPTS);
        let answer = client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await;
        let mut out = match answer {
            Err(err) => {
                let e = self.sdk_error("GetParameters", &names.join(", "), err);
                return names.iter().map(|_| Err(e.clone())).collect();
            }
            Ok(out) => out,
        };
        let mut parameters = out.parameters.take().unwrap_or_default();
        let invalid = out.invalid_parameters.take().unwrap_or_default();
        let results = names
            .iter()
            .map(|asked| {
                // Only names without a selector come here, so the name alone matches.
                let found = parameters
                    .iter_mut()
                    .find(|p| p.name.as_deref() == Some(asked.as_str()));
                match found {
                    Some(p) => text_of(p, asked).map(Got::Text),
                    None if invalid.contains(asked) => Err(FetchError::not_found(format!(
                        "GetParameters: parameter {asked} does not exist (ParameterNotFound)"
                    ))
                    .with_hint(
                        "check the name (a hierarchical name starts with /), the version or \
                         label, and the region",
                    )),
                    None => Err(FetchError::not_found(format!(
                        "GetParameters: parameter {asked} was not in the answer"
                    ))),
                }
            })
            .collect();
        for p in &mut parameters {
            if let Some(v) = p.value.as_mut() {
                v.zeroize();
            }
        }
        results
    }

    /// `GetParameter` for one name with a `:VERSION` or `:LABEL` selector: Parameter Store's
    /// batch answer tells such names apart by its `Selector` field, which not every
    /// implementation of the API fills in (moto does not), so they are read one by one.
    async fn get_selected(&self, client: &Client, name: &str) -> Fetched {
        let _waiting = progress::begin(SERVICE.store, &self.endpoint_name(), MAX_ATTEMPTS);
        match client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(mut out) => match out.parameter.as_mut() {
                Some(p) => text_of(p, name).map(Got::Text),
                None => Err(FetchError::not_found(format!(
                    "GetParameter: parameter {name} was not in the answer"
                ))),
            },
            Err(err) => Err(self.sdk_error("GetParameter", &format!("parameter {name}"), err)),
        }
    }

    /// `GetParametersByPath`, every page: one object of relative names.
    async fn get_path(&self, client: &Client, path: &str, recursive: bool) -> Fetched {
        let shown = if recursive {
            format!("path {path} (recursive)")
        } else {
            format!("path {path}")
        };
        let _waiting = progress::begin(SERVICE.store, &self.endpoint_name(), MAX_ATTEMPTS);
        let mut map = Map::new();
        let mut total = 0usize;
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let answer = client
                .get_parameters_by_path()
                .path(path)
                .recursive(recursive)
                .with_decryption(true)
                .set_next_token(next.take())
                .send()
                .await;
            let mut out = match answer {
                Ok(out) => out,
                Err(err) => return Err(self.sdk_error("GetParametersByPath", &shown, err)),
            };
            for mut p in out.parameters.take().unwrap_or_default() {
                let name = p.name.clone().unwrap_or_default();
                let key = name.strip_prefix(path).unwrap_or(&name).to_owned();
                let text = text_of(&mut p, &name)?;
                use secrecy::ExposeSecret as _;
                total += key.len() + text.expose_secret().len();
                if total > MAX_DOCUMENT_BYTES {
                    return Err(too_large(&shown));
                }
                map.insert(key, Value::String(text.expose_secret().to_owned()));
            }
            match out.next_token.take() {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => {
                    if map.is_empty() {
                        return Err(FetchError::not_found(format!(
                            "GetParametersByPath: no parameter under {shown}"
                        ))
                        .with_hint(
                            "check the path (it starts and ends with /) and the region; \
                             ?recursive=true reads deeper levels",
                        ));
                    }
                    return Ok(Got::Object(SecretMap::new(map)));
                }
            }
        }
        Err(too_large(&shown))
    }

    fn sdk_error<E>(&self, op: &str, what: &str, err: SdkError<E, HttpResponse>) -> FetchError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::ServiceError(ctx) => aws_error(
                op,
                what,
                ctx.err().code(),
                ctx.raw().status().as_u16(),
                ctx.err().message(),
            ),
            SdkError::TimeoutError(_) => FetchError::new(
                ErrorKind::Timeout,
                format!(
                    "{op} for {what}: no answer from {} within {} s",
                    self.endpoint_name(),
                    OPERATION_TIMEOUT.as_secs()
                ),
            ),
            _ => {
                let (kind, cause, hint) = sdk::transport_failure(
                    &err,
                    &self.endpoint_name(),
                    &self.settings,
                    &self.ctx,
                    &SERVICE,
                );
                let e = FetchError::new(kind, format!("{op} for {what}: {cause}"));
                match hint {
                    Some(h) => e.with_hint(h),
                    None => e,
                }
            }
        }
    }
}

/// A parameter's value as text; the parameter keeps nothing.
fn text_of(p: &mut Parameter, name: &str) -> Result<SecretString, FetchError> {
    match p.value.take() {
        Some(v) if v.len() > MAX_DOCUMENT_BYTES => {
            let mut v = v;
            v.zeroize();
            Err(too_large(&format!("parameter {name}")))
        }
        Some(v) => Ok(SecretString::from(v)),
        None => Err(FetchError::invalid(format!(
            "parameter {name} has no value"
        ))),
    }
}

fn too_large(what: &str) -> FetchError {
    FetchError::invalid(format!(
        "{what} is larger than {} KiB, the limit for one secret document",
        MAX_DOCUMENT_BYTES / 1024
    ))
}

/// One error from Parameter Store, by its code (a 403 is access denied whatever the body: moto's
/// IAM refusals have no code the SDK can read).
fn aws_error(
    op: &str,
    what: &str,
    code: Option<&str>,
    status: u16,
    message: Option<&str>,
) -> FetchError {
    let code_text = match code {
        Some(c) => diagnose::code_word(Some(c)),
        None if status == 403 => "AccessDeniedException".to_owned(),
        None => diagnose::code_word(None),
    };
    let mut text = format!("{op} for {what}: {code_text} (HTTP {status})");
    if let Some(m) = message
        .map(|m| crate::aws_shared::one_line(m, 300))
        .filter(|m| !m.is_empty())
    {
        text.push_str(": ");
        text.push_str(&m);
    }
    if sdk::is_throttling(code, Some(status)) {
        return sdk::throttled(text, &SERVICE);
    }
    match code.unwrap_or_default() {
        "ParameterNotFound" | "ParameterVersionNotFound" => FetchError::not_found(text).with_hint(
            "check the name (a hierarchical name starts with /), the version or label, and the \
             region",
        ),
        "AccessDeniedException" => FetchError::denied(text).with_hint(
            "the identity needs ssm:GetParameters (and ssm:GetParametersByPath for a path), and \
             kms:Decrypt for a SecureString; `cme-exec check` shows which identity was used",
        ),
        "" if status == 403 => FetchError::denied(text).with_hint(
            "the identity needs ssm:GetParameters (and ssm:GetParametersByPath for a path); \
             `cme-exec check` shows which identity was used",
        ),
        "ValidationException" | "InvalidKeyId" | "InvalidFilterKey" => FetchError::invalid(text),
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => {
            FetchError::denied(text).with_hint(
                "AWS refused the credentials themselves: check they are current (`cme-exec \
                 check` shows which identity was used)",
            )
        }
        _ if status >= 500 => FetchError::unavailable(text),
        "InternalServerError" => FetchError::unavailable(text),
        _ => FetchError::invalid(text),
    }
}

#[async_trait]
impl Provider for SsmProvider {
    fn kind(&self) -> Kind {
        super::KIND
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
                let (_, client) = self.client().await?;
                Ok(self.fetch_targets(client, targets, concurrency).await)
            },
            |got: &Got| match got {
                Got::Text(text) => Payload::Text {
                    value: text.clone(),
                    format: Format::Unknown,
                },
                Got::Object(map) => Payload::Object(map.clone()),
            },
            |t| format!("{t} was not fetched"),
        )
        .await
    }

    async fn identity(&self) -> Result<Option<Identity>, FetchError> {
        let (sdk, _) = self.client().await?;
        sdk::identity(sdk, &self.settings, &self.ctx, &SERVICE).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_kinds() {
        let e = aws_error(
            "GetParameters",
            "parameter /x",
            Some("ParameterNotFound"),
            400,
            None,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = aws_error("GetParameters", "parameter /x", None, 403, None);
        assert_eq!(e.kind, ErrorKind::Denied);
        assert!(
            e.message().contains("AccessDeniedException (HTTP 403)"),
            "{e}"
        );
        let e = aws_error(
            "GetParameters",
            "parameter /x",
            Some("InternalServerError"),
            500,
            None,
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(crate::aws_shared::one_line("a\n  b\tc", 300), "a b c");
    }
}
