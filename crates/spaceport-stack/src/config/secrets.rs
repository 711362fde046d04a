//! Settings read from AWS Secrets Manager before the configuration is (`SECRET_SETTINGS`): each
//! `SPACEPORT_<SETTING>_ARN` becomes `SPACEPORT_<SETTING>` with the secret's string, so the value
//! goes through the same parsing as a variable (a comma list, JSON) and its errors name the
//! variable, never the value.

use std::path::Path;

use aws_config::SdkConfig;

use super::env::secret_ref;
use super::{Config, ConfigError, err};

/// `vars` with every secret `_ARN` variable replaced by its setting's variable holding the
/// secret's value, read through `sdk`. A setting given both ways is an error.
pub async fn resolve_secret_vars(
    vars: Vec<(String, String)>,
    sdk: &SdkConfig,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::with_capacity(vars.len());
    let mut resolved = Vec::new();
    for (var, value) in vars {
        match secret_ref(&var, &value) {
            Some(r) => resolved.push((var, r)),
            None => out.push((var, value)),
        }
    }
    for (arn_var, (setting_var, arn)) in resolved {
        if out.iter().any(|(k, _)| *k == setting_var) {
            return Err(err(format!(
                "{setting_var} and {arn_var} are both set: give the setting one way"
            )));
        }
        let value = spaceport_aws::secrets::secret_value(sdk, &arn)
            .await
            .map_err(|e| err(format!("{arn_var}: {e}")))?;
        out.push((setting_var, value));
    }
    Ok(out)
}

impl Config {
    /// `load`, with the settings whose variables name secrets in AWS Secrets Manager read from
    /// it first (the AWS functions' configuration: the SDK's standard chain finds the service).
    pub async fn load_with_secrets(file: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let vars = if vars.iter().any(|(k, v)| secret_ref(k, v).is_some()) {
            let sdk = spaceport_aws::load_sdk_config().await;
            resolve_secret_vars(vars, &sdk).await?
        } else {
            vars
        };
        Config::load_from(file, vars)
    }
}
