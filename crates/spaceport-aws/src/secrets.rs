//! Settings kept in AWS Secrets Manager (the HF token, webhook signing secrets, API key hashes,
//! the run-token secret): each function is given the ARNs of the secrets it uses, and the IAM
//! right to read only those, instead of their values in its environment, where anyone who may
//! read the function's configuration would see them.

use aws_config::SdkConfig;
use spaceport_core::Error;

/// The value of secret `arn` (its `SecretString`), read once at start. Errors name the secret,
/// never a value.
pub async fn secret_value(sdk: &SdkConfig, arn: &str) -> Result<String, Error> {
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| crate::error::sdk(format!("reading secret {arn}"), e))?;
    out.secret_string
        .ok_or_else(|| Error::Internal(format!("secret {arn} holds binary data, not a string")))
}
