//! `GradioBackend`: core's `SpaceBackend` over the Gradio client. Submit reads `/config`, picks
//! the pipeline's first layout the Space has, sends every input slot in the shape the protocol
//! wants (`files`), runs the calls in order (each but the last held to completion, its outputs
//! feeding later calls) and joins the last; the returned handle is all `watch`/`download`/
//! `cancel` need.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use rand::Rng;
use serde_json::Value;
use spaceport_core::pipeline::LayoutSpec;
use spaceport_core::ports::{
    ByteStream, SpaceBackend, SpaceEvent, SpaceJob, SpaceRuntime, Submitted,
};
use spaceport_core::{Error, ErrorCode, Progress};

use crate::client::{ClientOptions, Cookies, GradioClient, Token};
use crate::config::{Endpoint, SpaceConfig};
use crate::config_cache::ConfigCache;
use crate::error::classify_message;
use crate::files::{self, build_args};
use crate::handle::JobHandle;
use crate::hub::Hub;
use crate::protocol::protocol_error;
use crate::stream::{JobUpdate, Outcome};

/// A Gradio Space backend (any Space; the calls come from the pipeline).
#[derive(Debug, Clone)]
pub struct GradioBackend {
    options: ClientOptions,
    /// Each Space's `/config`, shared by the clones of this backend.
    configs: Arc<ConfigCache>,
    /// Where to ask about a Space that does not answer.
    hub: Option<Hub>,
    /// Each Space's commit as the Hub last said, for the result cache.
    commits: Arc<crate::hub::Commits>,
    /// One client per Space base URL, shared by every call: its connections are kept and
    /// reused (a new client per call cost a TCP and TLS handshake each, and building one).
    clients: Arc<std::sync::Mutex<HashMap<String, GradioClient>>>,
}

/// Clients kept at most (one per Space a pipeline names; past this the map starts afresh).
const MAX_CLIENTS: usize = 256;

impl Default for GradioBackend {
    fn default() -> Self {
        GradioBackend::new(ClientOptions::default())
    }
}

/// The longest a Hub question may take: it only decides how a failed submit waits.
const HUB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A random session hash, in the alphabet and length gradio_client uses.
pub fn new_session_hash() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..11)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl GradioBackend {
    /// A backend with these timeouts and credentials.
    pub fn new(options: ClientOptions) -> GradioBackend {
        // A run keeps a job's final outputs only: intermediate ones are not tracked.
        let options = ClientOptions {
            generator_updates: false,
            ..options
        };
        let hub = options.hub_url.as_deref().and_then(|url| {
            Hub::new(
                url,
                options.token.clone(),
                options.request_timeout.min(HUB_TIMEOUT),
            )
            .map_err(|e| tracing::warn!("no Hub: {e}"))
            .ok()
        });
        GradioBackend {
            options,
            configs: Arc::default(),
            hub,
            commits: Arc::default(),
            clients: Arc::default(),
        }
    }

    /// A backend with default timeouts that sends `token` to every Space.
    pub fn with_token(token: impl Into<String>) -> GradioBackend {
        GradioBackend::new(ClientOptions {
            token: Some(Token::new(token)),
            ..ClientOptions::default()
        })
    }

    /// The client options (the token shows redacted in Debug).
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    fn client(&self, base: &str) -> Result<GradioClient, Error> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(base) {
            return Ok(c.clone());
        }
        let c = GradioClient::new(base, self.options.clone())?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(base.to_owned(), c.clone());
        Ok(c)
    }
}

fn progress(stage: &str) -> Progress {
    Progress {
        stage: Some(stage.to_string()),
        ..Progress::default()
    }
}

/// An output a function returned as `gr.update(value=…)` reaches the client as
/// `{"__type__": "update", "value": …}` (Hunyuan3D-2.1 returns its files so): its value.
fn unwrap_update(v: Value) -> Value {
    match v {
        Value::Object(mut o) if o.get("__type__").and_then(Value::as_str) == Some("update") => {
            o.remove("value").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// What a stream update means to the run.
fn to_event(u: JobUpdate) -> Option<SpaceEvent> {
    Some(match u {
        JobUpdate::Queued {
            rank,
            queue_size,
            eta_s,
        } => SpaceEvent::Progress(Progress {
            queue_rank: rank,
            queue_size,
            eta_s,
            ..progress("queued_at_space")
        }),
        JobUpdate::Started { eta_s } => SpaceEvent::Progress(Progress {
            eta_s,
            ..progress("running")
        }),
        JobUpdate::Progress { fraction, message } => SpaceEvent::Progress(Progress {
            fraction,
            message,
            ..progress("running")
        }),
        JobUpdate::Log { message } => SpaceEvent::Log { line: message },
        JobUpdate::Generating { .. } => return None,
        JobUpdate::Finished(Outcome::Completed(outputs)) => SpaceEvent::Completed {
            outputs: outputs.into_iter().map(unwrap_update).collect(),
        },
        JobUpdate::Finished(Outcome::Cancelled) => SpaceEvent::Cancelled,
        JobUpdate::Finished(Outcome::Failed(message)) => {
            let code = crate::error::classify_message(&message);
            SpaceEvent::Failed {
                retry_after: (code == ErrorCode::SpaceQuotaExceeded)
                    .then(|| crate::error::quota_retry_in(&message))
                    .flatten(),
                code,
                message,
            }
        }
        JobUpdate::Lost { reason } => SpaceEvent::Lost { reason },
    })
}

/// The first layout whose every call the Space has (by name or fn_index, with as many inputs),
/// and its endpoints; when none fits, the first layout's mismatch.
fn choose_layout<'a>(
    config: &SpaceConfig,
    layouts: &'a [LayoutSpec],
) -> Result<(&'a LayoutSpec, Vec<Endpoint>), Error> {
    let mut first_err = None;
    for layout in layouts {
        match layout
            .calls
            .iter()
            .map(|c| config.resolve(c).cloned())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(endpoints) if !endpoints.is_empty() => return Ok((layout, endpoints)),
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert(if layouts.len() > 1 {
                    protocol_error(format!(
                        "the Space fits none of the pipeline's layouts ({}); layout {:?}: {e}",
                        layouts
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        layout.name
                    ))
                } else {
                    e
                });
            }
        }
    }
    Err(first_err.unwrap_or_else(|| Error::Internal("a Space job makes at least one call".into())))
}

impl GradioBackend {
    /// Submit's work once the Space's config is in hand.
    async fn submit_with(
        &self,
        client: &GradioClient,
        cookies: &Cookies,
        config: &SpaceConfig,
        job: SpaceJob,
    ) -> Result<Submitted, Error> {
        config.protocol.ensure_supported()?;
        let (layout, endpoints) = choose_layout(config, &job.layouts)?;
        let sent = files::send_inputs(client, config, &layout.calls, job.inputs, cookies).await?;

        // One session for the whole job, as a browser tab would use: State lives in it.
        let session_hash = new_session_hash();
        let mut outputs: Vec<Vec<Value>> = vec![];
        let last = layout.calls.len() - 1;
        for (i, (call, endpoint)) in layout.calls.iter().zip(&endpoints).enumerate() {
            let data = build_args(
                &call.args(),
                &job.settings,
                &sent,
                &outputs,
                config.protocol,
            )?;
            let handle = client
                .join(config, endpoint, &data, &session_hash, cookies)
                .await?;
            if i == last {
                let event_id = handle.event_id().unwrap_or_default();
                tracing::debug!(run_id = %job.run_id, event_id, layout = %layout.name, "joined the Space's queue");
                return Ok(Submitted {
                    handle: handle.to_json(),
                    layout: layout.name.clone(),
                });
            }
            let name = call.label();
            match client.open(&handle).await?.finish().await? {
                Ok(Outcome::Completed(out)) => outputs.push(out),
                Ok(Outcome::Failed(message)) => {
                    return Err(Error::upstream(
                        classify_message(&message),
                        classify_message(&message) == ErrorCode::SpaceQuotaExceeded,
                        format!("call {name} failed at the Space: {message}"),
                    ));
                }
                Ok(Outcome::Cancelled) => {
                    return Err(Error::upstream(
                        ErrorCode::SpaceError,
                        true,
                        format!("call {name} was cancelled at the Space"),
                    ));
                }
                Err(reason) => {
                    return Err(Error::upstream(
                        ErrorCode::SpaceUnavailable,
                        true,
                        format!("call {name} was lost: {reason}"),
                    ));
                }
            }
        }
        unreachable!("the loop returns at the last call")
    }
}

#[async_trait]
impl SpaceBackend for GradioBackend {
    async fn submit(&self, job: SpaceJob) -> Result<Submitted, Error> {
        let client = self.client(&job.url)?;
        let cookies = Cookies::default();
        let mut reading = self.configs.get(&client, &cookies).await?;
        // A layout that does not fit a kept reading is tried once more against a fresh one.
        if !reading.fresh && choose_layout(&reading.config, &job.layouts).is_err() {
            reading = self.configs.read(&client, &cookies).await?;
        }
        let fresh = reading.fresh;
        let result = self
            .submit_with(&client, &cookies, &reading.config, job)
            .await;
        if result.is_err() && !fresh {
            // The Space may have changed since it was read: the next submit reads it again.
            self.configs.forget(client.base());
        }
        result
    }

    async fn watch(
        &self,
        handle: &Value,
    ) -> Result<BoxStream<'static, Result<SpaceEvent, Error>>, Error> {
        let handle = JobHandle::from_json(handle)?;
        let stream = self.client(handle.root())?.open(&handle).await?;
        Ok(stream
            .into_stream()
            .filter_map(|u| async move {
                match u {
                    Ok(u) => to_event(u).map(Ok),
                    Err(e) => Some(Err(e)),
                }
            })
            .boxed())
    }

    async fn download(
        &self,
        handle: &Value,
        file: &Value,
    ) -> Result<(ByteStream, Option<String>), Error> {
        let handle = JobHandle::from_json(handle)?;
        match files::output_file(file)? {
            files::OutputFile::Inline { bytes, mime } => {
                let stream = futures::stream::once(async move { Ok(bytes) }).boxed();
                Ok((stream, mime))
            }
            files::OutputFile::Served { path, mime } => {
                let (stream, content_type) = self
                    .client(handle.root())?
                    .download(
                        handle.api_prefix(),
                        &path,
                        &Cookies::parse(handle.cookies()),
                    )
                    .await?;
                Ok((stream, mime.or(content_type)))
            }
        }
    }

    async fn cancel(&self, handle: &Value) -> Result<(), Error> {
        let handle = JobHandle::from_json(handle)?;
        self.client(handle.root())?.cancel(&handle).await
    }

    async fn runtime(&self, space: &str) -> Option<SpaceRuntime> {
        let hub = self.hub.as_ref()?;
        match hub.runtime(space).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::info!(space, "the Hub could not say how the Space is: {e}");
                None
            }
        }
    }

    async fn wake(&self, url: &str) {
        if let Ok(client) = self.client(url) {
            client.wake().await;
        }
    }

    async fn revision(&self, space: &str, url: &str) -> Option<String> {
        if let Some(sha) = self.commits.get(space, || self.runtime(space)).await {
            return Some(format!("commit:{sha}"));
        }
        let client = self.client(url).ok()?;
        match self.configs.get(&client, &Cookies::default()).await {
            Ok(reading) => Some(format!("config:{}", reading.config.digest)),
            Err(e) => {
                tracing::info!(space, "no revision for the result cache: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_wrapper_gives_its_value() {
        let fd = serde_json::json!({"path": "/tmp/m.glb"});
        assert_eq!(
            unwrap_update(serde_json::json!({"__type__": "update", "value": fd.clone()})),
            fd
        );
        assert_eq!(unwrap_update(fd.clone()), fd);
    }

    #[test]
    fn session_hashes_are_fresh() {
        let a = new_session_hash();
        assert_eq!(a.len(), 11);
        assert_ne!(a, new_session_hash());
    }
}
