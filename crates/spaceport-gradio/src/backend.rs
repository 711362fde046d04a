//! `GradioBackend`: core's `SpaceBackend` over the Gradio client. Submit uploads every input slot,
//! runs the pipeline's calls in order (each but the last held to completion, its outputs feeding
//! later calls) and joins the last; the returned handle is all `watch`/`download`/`cancel` need.

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use spaceport_core::pipeline::{Arg, FileForm};
use spaceport_core::ports::{ByteStream, SpaceBackend, SpaceEvent, SpaceJob};
use spaceport_core::{Error, ErrorCode, Progress};

use crate::client::{ClientOptions, Cookies, GradioClient, Token};
use crate::error::classify_message;
use crate::handle::JobHandle;
use crate::protocol::protocol_error;
use crate::stream::{JobUpdate, Outcome};

/// A Gradio Space backend (any Space; the calls come from the pipeline).
#[derive(Debug, Clone, Default)]
pub struct GradioBackend {
    options: ClientOptions,
}

/// A file as Gradio's `FileData`.
fn file_data(path: &str, name: &str, mime: &str, size: u64) -> Value {
    json!({
        "path": path,
        "url": null,
        "orig_name": name,
        "mime_type": mime,
        "size": size,
        "is_stream": false,
        "meta": {"_type": "gradio.FileData"},
    })
}

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
        GradioBackend { options }
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
        GradioClient::new(base, self.options.clone())
    }
}

fn shape(form: FileForm, files: &[Value], slot: &str) -> Result<Value, Error> {
    Ok(match form {
        FileForm::Files => Value::Array(files.to_vec()),
        FileForm::File => files
            .first()
            .cloned()
            .ok_or_else(|| Error::validation(slot, format!("input slot {slot:?} has no file")))?,
        FileForm::Gallery => Value::Array(
            files
                .iter()
                .map(|f| json!({"image": f, "caption": null}))
                .collect(),
        ),
    })
}

/// Resolves one call's positional arguments.
fn build_args(
    args: &[Arg],
    job_settings: &serde_json::Map<String, Value>,
    uploaded: &std::collections::BTreeMap<String, Vec<Value>>,
    outputs: &[Vec<Value>],
) -> Result<Vec<Value>, Error> {
    args.iter()
        .map(|arg| match arg {
            Arg::Input { slot, form } => {
                let files = uploaded.get(slot).ok_or_else(|| {
                    Error::validation(slot.as_str(), format!("no input slot {slot:?} in the job"))
                })?;
                shape(*form, files, slot)
            }
            Arg::Setting(name) => job_settings.get(name).cloned().ok_or_else(|| {
                Error::validation(name.as_str(), format!("setting {name:?} has no value"))
            }),
            Arg::Value(v) => Ok(v.clone()),
            Arg::Output(r) => outputs
                .get(r.call)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "call {} has not run before its output is used",
                        r.call
                    ))
                })?
                .get(r.index)
                .cloned()
                .ok_or_else(|| {
                    protocol_error(format!(
                        "call {} returned no output {} (the Space's API changed?)",
                        r.call, r.index
                    ))
                }),
        })
        .collect()
}

fn progress(stage: &str) -> Progress {
    Progress {
        stage: Some(stage.to_string()),
        ..Progress::default()
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
        JobUpdate::Log { message } => SpaceEvent::Progress(Progress {
            message: Some(message),
            ..progress("running")
        }),
        JobUpdate::Generating { .. } => return None,
        JobUpdate::Finished(Outcome::Completed(outputs)) => SpaceEvent::Completed { outputs },
        JobUpdate::Finished(Outcome::Cancelled) => SpaceEvent::Cancelled,
        JobUpdate::Finished(Outcome::Failed(message)) => SpaceEvent::Failed {
            code: crate::error::classify_message(&message),
            message,
        },
        JobUpdate::Lost { reason } => SpaceEvent::Lost { reason },
    })
}

#[async_trait]
impl SpaceBackend for GradioBackend {
    async fn submit(&self, job: SpaceJob) -> Result<Value, Error> {
        let client = self.client(&job.url)?;
        let cookies = Cookies::default();
        let config = client.config(&cookies).await?;
        config.protocol.ensure_supported()?;
        let endpoints = job
            .calls
            .iter()
            .map(|c| config.resolve(c).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(Error::Internal(
                "a Space job makes at least one call".into(),
            ));
        }

        let mut uploaded = std::collections::BTreeMap::new();
        for (slot, files) in job.inputs {
            let described: Vec<(String, String, u64)> = files
                .iter()
                .map(|f| (f.filename.clone(), f.content_type.clone(), f.size))
                .collect();
            let paths = if files.is_empty() {
                vec![]
            } else {
                client.upload(&config.api_prefix, files, &cookies).await?
            };
            let values = paths
                .iter()
                .zip(&described)
                .map(|(p, (name, mime, size))| file_data(p, name, mime, *size))
                .collect();
            uploaded.insert(slot, values);
        }

        // One session for the whole job, as a browser tab would use.
        let session_hash = new_session_hash();
        let mut outputs: Vec<Vec<Value>> = vec![];
        let last = job.calls.len() - 1;
        for (i, (call, endpoint)) in job.calls.iter().zip(&endpoints).enumerate() {
            let data = build_args(&call.args(), &job.settings, &uploaded, &outputs)?;
            let handle = client
                .join(&config, endpoint, &data, &session_hash, &cookies)
                .await?;
            if i == last {
                let event_id = handle.event_id().unwrap_or_default();
                tracing::debug!(run_id = %job.run_id, event_id, "joined the Space's queue");
                return Ok(handle.to_json());
            }
            let name = call.api_name.as_deref().unwrap_or("(unnamed)");
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
        let path = file
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol_error(format!("an output file without a path: {file:.200}")))?;
        let (stream, content_type) = self
            .client(handle.root())?
            .download(handle.api_prefix(), path, &Cookies::parse(handle.cookies()))
            .await?;
        let declared = file
            .get("mime_type")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((stream, declared.or(content_type)))
    }

    async fn cancel(&self, handle: &Value) -> Result<(), Error> {
        let handle = JobHandle::from_json(handle)?;
        self.client(handle.root())?.cancel(&handle).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spaceport_core::pipeline::OutputRef;

    #[test]
    fn arguments_are_built_from_every_source() {
        let f = file_data("/tmp/a.png", "a.png", "image/png", 3);
        let uploaded = [("images".to_string(), vec![f.clone()])].into();
        let settings = json!({"conf_thres": 42}).as_object().unwrap().clone();
        let outputs = vec![vec![Value::Null, json!("input_images_1")]];
        let args = [
            Arg::Output(OutputRef { call: 0, index: 1 }),
            Arg::Setting("conf_thres".into()),
            Arg::Value(json!("All")),
            Arg::Value(Value::Null),
            Arg::Input {
                slot: "images".into(),
                form: FileForm::Files,
            },
            Arg::Input {
                slot: "images".into(),
                form: FileForm::File,
            },
            Arg::Input {
                slot: "images".into(),
                form: FileForm::Gallery,
            },
        ];
        let got = build_args(&args, &settings, &uploaded, &outputs).unwrap();
        assert_eq!(
            got,
            vec![
                json!("input_images_1"),
                json!(42),
                json!("All"),
                Value::Null,
                json!([f.clone()]),
                f.clone(),
                json!([{"image": f, "caption": null}]),
            ]
        );
        assert_eq!(f["meta"]["_type"], "gradio.FileData");
    }

    #[test]
    fn missing_sources_are_errors() {
        let none = std::collections::BTreeMap::new();
        let empty = serde_json::Map::new();
        assert!(build_args(&[Arg::Setting("x".into())], &empty, &none, &[]).is_err());
        assert!(
            build_args(
                &[Arg::Output(OutputRef { call: 0, index: 0 })],
                &empty,
                &none,
                &[]
            )
            .is_err()
        );
        assert!(
            build_args(
                &[Arg::Output(OutputRef { call: 0, index: 5 })],
                &empty,
                &none,
                &[vec![json!(1)]]
            )
            .is_err()
        );
    }

    #[test]
    fn session_hashes_are_fresh() {
        let a = new_session_hash();
        assert_eq!(a.len(), 11);
        assert_ne!(a, new_session_hash());
    }
}
