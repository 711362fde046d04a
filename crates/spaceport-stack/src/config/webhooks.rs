//! The webhook and outbound settings: where requests may go, the signing secrets, the endpoints
//! and the delivery schedule, each checked when the configuration loads.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use spaceport_core::EventType;
use spaceport_core::outbound::{Allow, OutboundGuard};
use spaceport_steps::{BUS_ENDPOINT, Endpoint, RUN_ENDPOINT, WebhookSettings};
use spaceport_webhooks::SigningSecret;

use super::{Config, ConfigError, Secret, env_var, err};

/// An endpoint that receives every run's events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Names it in delivery logs (`run` is the runs' own webhooks).
    pub name: String,
    pub url: String,
    /// Event types it receives (default: every type but `run.progress`).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Its own signing secrets (default: `webhook_secrets`).
    #[serde(default)]
    pub secrets: Option<Vec<Secret>>,
}

impl Config {
    /// The outbound guard `outbound_allow` describes.
    pub fn outbound_guard(&self) -> Result<OutboundGuard, ConfigError> {
        let allow = self
            .outbound_allow
            .iter()
            .map(|a| {
                Allow::parse(a)
                    .map_err(|why| err(format!("{} ({a:?}): {why}", env_var("outbound_allow"))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundGuard::new(allow))
    }

    /// The webhook signing secrets (`webhook_secrets`), the current first.
    pub fn signing_secrets(&self) -> Result<Vec<SigningSecret>, ConfigError> {
        parse_secrets(&self.webhook_secrets, &env_var("webhook_secrets"))
    }

    /// What notify-webhook delivers: `base` with the schedule and timeout set here, the
    /// configured endpoints (each URL checked by the outbound guard, each event type known) and
    /// whether messages can be signed.
    pub fn webhook_settings(
        &self,
        mut settings: WebhookSettings,
    ) -> Result<WebhookSettings, ConfigError> {
        settings.endpoints.clear();
        if let Some(s) = &self.webhook_schedule_s {
            if s.is_empty() {
                return Err(err(format!(
                    "{} lists no try",
                    env_var("webhook_schedule_s")
                )));
            }
            settings.schedule = s.iter().map(|n| Duration::from_secs(*n)).collect();
        }
        if let Some(t) = self.webhook_timeout_s {
            settings.timeout = Duration::from_secs(t);
        }
        if let Some(b) = self.event_bus_events {
            settings.bus = b;
        }
        let signing_elsewhere = self.webhook_signing_elsewhere == Some(true);
        settings.can_sign = !self.webhook_secrets.is_empty() || signing_elsewhere;
        let guard = self.outbound_guard()?;
        let var = env_var("webhooks");
        for e in &self.webhooks {
            if e.name.is_empty()
                || [RUN_ENDPOINT, BUS_ENDPOINT].contains(&e.name.as_str())
                || e.name.contains(':')
            {
                return Err(err(format!(
                    "{var}: endpoint name {:?} must be non-empty, have no ':' and not be {RUN_ENDPOINT:?} or {BUS_ENDPOINT:?}",
                    e.name
                )));
            }
            guard
                .check_url(&format!("webhooks.{}.url", e.name), &e.url)
                .map_err(|x| err(format!("{var}: {x}")))?;
            let events = match &e.events {
                None => EventType::ALL
                    .into_iter()
                    .filter(|t| *t != EventType::Progress)
                    .collect(),
                Some(list) => list
                    .iter()
                    .map(|t| {
                        EventType::parse(t).ok_or_else(|| {
                            err(format!(
                                "{var}: endpoint {}: unknown event type {t:?}",
                                e.name
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let own = e.secrets.as_deref().unwrap_or_default();
            if own.is_empty() && self.webhook_secrets.is_empty() && !signing_elsewhere {
                return Err(err(format!(
                    "{var}: endpoint {} has no signing secret and {} is empty",
                    e.name,
                    env_var("webhook_secrets")
                )));
            }
            parse_secrets(own, &var)?;
            settings.endpoints.push(Endpoint {
                name: e.name.clone(),
                url: e.url.clone(),
                events,
            });
        }
        Ok(settings)
    }
}

/// Parses `whsec_…` secrets; errors name `var` and never the value.
fn parse_secrets(secrets: &[Secret], var: &str) -> Result<Vec<SigningSecret>, ConfigError> {
    secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            SigningSecret::parse(s.expose())
                .map_err(|e| err(format!("{var}: secret {}: {e}", i + 1)))
        })
        .collect()
}
