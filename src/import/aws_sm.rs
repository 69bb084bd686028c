//! `import --to aws-sm://PREFIX/`: one secret per instance (`PREFIX` + `confluence-HOST`),
//! created with `CreateSecret`, or given a new version with `PutSecretValue` when it holds
//! something else; left alone when it already holds exactly this document. Credentials, region
//! and endpoint come from the AWS SDK's default chain (`AWS_PROFILE`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, ...).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata as _};
use aws_sdk_secretsmanager::Client;
use zeroize::Zeroizing;

use crate::error::Error;

pub struct Writer {
    client: Client,
}

impl Writer {
    pub async fn new(timeout: Duration) -> Writer {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .operation_timeout(timeout)
                    .build(),
            )
            .load()
            .await;
        Writer {
            client: Client::new(&config),
        }
    }

    /// `at` is the secret's name.
    pub async fn write(&self, at: &str, doc: &Zeroizing<Vec<u8>>) -> Result<bool, Error> {
        let text = Zeroizing::new(
            String::from_utf8(doc.to_vec()).expect("the document is JSON, so UTF-8"),
        );
        match self.client.get_secret_value().secret_id(at).send().await {
            Ok(current) => {
                let current = Zeroizing::new(current.secret_string.clone().unwrap_or_default());
                if current.as_str() == text.as_str() {
                    return Ok(false);
                }
                self.client
                    .put_secret_value()
                    .secret_id(at)
                    .secret_string(text.as_str())
                    .send()
                    .await
                    .map_err(|e| error("PutSecretValue", at, e.code(), &DisplayErrorContext(&e)))?;
                Ok(true)
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                self.client
                    .create_secret()
                    .name(at)
                    .description("Confluence/Jira credentials for cme, written by cme-exec import")
                    .secret_string(text.as_str())
                    .send()
                    .await
                    .map_err(|e| error("CreateSecret", at, e.code(), &DisplayErrorContext(&e)))?;
                Ok(true)
            }
            Err(e) => Err(error(
                "GetSecretValue",
                at,
                e.code(),
                &DisplayErrorContext(&e),
            )),
        }
    }
}

/// The SDK's error text names the operation and the service's message; never a value (the
/// request bodies are not part of it).
fn error(op: &str, at: &str, code: Option<&str>, e: &dyn std::fmt::Display) -> Error {
    let mut err = Error::new(format!("AWS Secrets Manager: {op} {at} failed"))
        .cause(crate::error::strip_controls(&e.to_string()));
    if matches!(code, Some("AccessDeniedException")) {
        err = err.hint(
            "the identity needs secretsmanager:GetSecretValue, CreateSecret and PutSecretValue on the prefix",
        );
    }
    err
}
