//! Writing a secret into AWS Secrets Manager (what `import` does), with the provider's own SDK
//! configuration (`aws_shared`: region, profile, endpoint, assumed role, trust roots, retries):
//! `GetSecretValue` first, and nothing more when the secret already holds exactly these fields
//! (no new version); else `PutSecretValue` (a new current version) or, for a secret that does
//! not exist, `CreateSecret`. The value is sent as `SecretString`, the fields' one line of JSON.

use aws_sdk_secretsmanager::Client;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use zeroize::Zeroizing;

use super::client::AwsSmProvider;
use super::{Target, Version};
use crate::payload::zeroize_value;
use crate::provider::Fields;
use crate::{progress, ErrorKind, FetchError};

/// What the identity must be allowed, named in every refusal of a write.
const WRITE_HINT: &str = "the identity `cme-exec check` shows needs \
     secretsmanager:GetSecretValue, CreateSecret and PutSecretValue on the prefix (and \
     kms:Encrypt/kms:Decrypt on its key)";

/// Writes `fields` as the secret named `location` unless it holds exactly them; `Ok(true)`
/// when written.
pub(super) async fn write(
    provider: &AwsSmProvider,
    location: &str,
    fields: &Fields,
) -> Result<bool, FetchError> {
    let target = Target {
        secret_id: location.to_owned(),
        arn_region: None,
        version: Version::Current,
    };
    let client = provider.client_for(None).await?;
    let _waiting = progress::begin(
        "AWS Secrets Manager",
        &provider.endpoint_name(),
        crate::aws_shared::sdk::MAX_ATTEMPTS,
    );
    let exists = match provider.get(&client, &target).await {
        Ok(current) => {
            if holds(current.expose_secret(), fields) {
                return Ok(false);
            }
            true
        }
        Err(e) if e.kind == ErrorKind::NotFound => false,
        Err(e) => return Err(refused(e)),
    };
    let text = Zeroizing::new(
        String::from_utf8(fields.to_json().to_vec()).expect("the document is JSON, so UTF-8"),
    );
    if exists {
        put(provider, &client, &target, &text).await
    } else {
        create(provider, &client, &target, &text).await
    }
    .map(|()| true)
}

async fn put(
    provider: &AwsSmProvider,
    client: &Client,
    target: &Target,
    text: &str,
) -> Result<(), FetchError> {
    client
        .put_secret_value()
        .secret_id(&target.secret_id)
        .secret_string(text)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| refused(provider.sdk_error("PutSecretValue", target, e)))
}

async fn create(
    provider: &AwsSmProvider,
    client: &Client,
    target: &Target,
    text: &str,
) -> Result<(), FetchError> {
    client
        .create_secret()
        .name(&target.secret_id)
        .description("Confluence/Jira credentials for cme, written by cme-exec import")
        .secret_string(text)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| refused(provider.sdk_error("CreateSecret", target, e)))
}

/// Whether a secret's text is a JSON object holding exactly `fields`.
fn holds(text: &str, fields: &Fields) -> bool {
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let same = value.as_object().is_some_and(|m| fields.same_as(m));
    zeroize_value(&mut value);
    same
}

/// A refusal names what a write needs, not only what a read does.
fn refused(e: FetchError) -> FetchError {
    if e.kind == ErrorKind::Denied {
        e.with_hint(WRITE_HINT)
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn a_secret_holds_the_fields_or_not() {
        let mut fields = Fields::new();
        fields.push("pat", SecretString::from("p-1"));
        assert!(holds(r#"{"pat":"p-1"}"#, &fields));
        assert!(holds("{ \"pat\": \"p-1\" }\n", &fields));
        assert!(!holds(r#"{"pat":"p-2"}"#, &fields));
        assert!(!holds(r#"{"pat":"p-1","username":"u"}"#, &fields));
        assert!(!holds("p-1", &fields));
    }
}
