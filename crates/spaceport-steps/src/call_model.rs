//! call-model: asks an `http_model` pipeline's model server its requests in order — a request
//! over images once per batch — streaming each answer's text into the run's events as it
//! arrives, keeping each answer on the run as soon as it is complete (so a worker that takes
//! the run over after a crash goes on from the first request not yet answered), then storing
//! the answers as the pipeline's values and artifacts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream;
use serde_json::{Map, Value, json};
use spaceport_core::pipeline::{AnswerForm, Pipeline, PromptContext, RequestSpec};
use spaceport_core::ports::{
    BlobStore, ChatFormat, ChatImage, ChatRequest, ChatServer, ModelRunner, QueueName,
    SpaceBackend, StepMessage,
};
use spaceport_core::{Error, ErrorCode, Progress, Run, RunId, Status, TextDelta, lease, pipeline};

use crate::runs::{Mutated, Runs};
use crate::trouble::Troubles;
use crate::{Outcome, Step, artifacts, inputs};

/// How often streamed text is written to the run as an event: at most four a second per run,
/// each carrying what arrived since the last.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// The call-model step.
pub struct CallModel {
    runs: Runs,
    blobs: Arc<dyn BlobStore>,
    chat: Arc<dyn ChatServer>,
    /// Fails a run over to the pipeline's fallback when its server is down.
    troubles: Troubles,
}

#[async_trait]
impl Step for CallModel {
    fn queue(&self) -> QueueName {
        QueueName::CallModel
    }

    async fn run(&self, msg: &StepMessage) -> Result<Outcome, Error> {
        self.call(&msg.run_id).await
    }
}

/// Where the answers so far are kept on the run: `job.handle = {"answers": {request: [...]}}`.
fn kept_answers(run: &Run) -> BTreeMap<String, Vec<Value>> {
    run.job_handle()
        .and_then(|h| h.get("answers"))
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default()
}

/// One request's batch, for messages and events.
struct Place<'a> {
    request: &'a RequestSpec,
    batch: usize,
    batches: usize,
    /// Requests answered before this one, of `total`.
    done: usize,
    total: usize,
}

impl Place<'_> {
    fn progress(&self, stage: &str) -> Progress {
        Progress {
            stage: Some(stage.into()),
            fraction: Some(self.done as f64 / self.total.max(1) as f64),
            message: Some(format!(
                "request {} batch {} of {}",
                self.request.name,
                self.batch + 1,
                self.batches
            )),
            ..Progress::default()
        }
    }

    fn label(&self) -> String {
        format!(
            "request {} (batch {} of {})",
            self.request.name,
            self.batch + 1,
            self.batches
        )
    }
}

impl CallModel {
    /// The step over its ports (the Space backend and model runner only to weigh fallbacks).
    pub fn new(
        runs: Runs,
        blobs: Arc<dyn BlobStore>,
        chat: Arc<dyn ChatServer>,
        space: Arc<dyn SpaceBackend>,
        runner: Option<Arc<dyn ModelRunner>>,
    ) -> CallModel {
        let troubles = Troubles {
            runs: runs.clone(),
            space,
            runner,
        };
        CallModel {
            runs,
            blobs,
            chat,
            troubles,
        }
    }

    /// Handles a call-model message.
    pub async fn call(&self, id: &RunId) -> Result<Outcome, Error> {
        let runs = &self.runs;
        // At most N jobs at one model server at once, across every worker (`max_in_flight`).
        let run = match runs.claim_whole_job(QueueName::CallModel, id, None).await? {
            Ok(Some(run)) => run,
            Ok(None) => return Ok(Outcome::Done),
            Err(held) => return Ok(held),
        };
        let me = runs.worker_id().to_string();
        let e = match self.answer_all(&run).await {
            Ok(true) => return Ok(Outcome::Done),
            // This invocation's window is over: the next goes on from the first request not
            // answered (a Lambda stops at its timeout; answers kept so far stay).
            Ok(false) => {
                runs.hand_back(QueueName::CallModel, id, Duration::ZERO)
                    .await?;
                return Ok(Outcome::Done);
            }
            Err(e) => e,
        };
        // Cancelled or expired meanwhile, or taken over: nothing of ours to fail.
        let now_run = runs.load(id).await?;
        if now_run.status.is_terminal() || !now_run.job().held_by(&me) {
            return Ok(Outcome::Done);
        }
        let (code, retryable, message) = runs.classify(id, e, ErrorCode::ModelError).await?;
        // Down on every try: the next backend the pipeline names, as for a Space.
        if code == ErrorCode::ModelUnavailable && self.troubles.fails_over_when_down(&now_run)? {
            self.troubles
                .fail_over(id, now_run.status, &message)
                .await?;
            return Ok(Outcome::Done);
        }
        runs.fail_run(id, code, &message, retryable).await?;
        Ok(Outcome::Done)
    }

    /// Asks every request not answered yet, then stores the results and ends the run: true.
    /// False when `poll_window` ran out between two requests, with the answers so far kept.
    async fn answer_all(&self, run: &Run) -> Result<bool, Error> {
        let runs = &self.runs;
        let started = Instant::now();
        let pipeline = runs.pipelines.get(run.backend_pipeline())?;
        let server = pipeline.model_server().ok_or_else(|| {
            Error::Internal(format!("pipeline {} asks no model server", pipeline.name))
        })?;
        let files: BTreeMap<&str, Vec<&spaceport_core::InputFile>> =
            inputs::ordered(pipeline, run).into_iter().collect();
        let count = |req: &RequestSpec| {
            req.images
                .as_deref()
                .and_then(|s| files.get(s))
                .map_or(0, Vec::len)
        };
        let total: usize = server
            .requests
            .iter()
            .map(|r| r.batches(count(r)).len())
            .sum();
        let settings = pipeline.backend_settings(&run.settings);
        let mut kept = kept_answers(run);
        let mut outputs: BTreeMap<String, Value> = BTreeMap::new();
        let mut done = 0;
        for req in server.requests {
            let slot_files: &[&spaceport_core::InputFile] = req
                .images
                .as_deref()
                .and_then(|s| files.get(s))
                .map_or(&[], Vec::as_slice);
            let batches = req.batches(slot_files.len());
            let mut answers = kept.remove(&req.name).unwrap_or_default();
            answers.truncate(batches.len());
            done += answers.len();
            for (b, range) in batches.iter().enumerate().skip(answers.len()) {
                if started.elapsed() >= runs.config.poll_window {
                    return Ok(false);
                }
                let place = Place {
                    request: req,
                    batch: b,
                    batches: batches.len(),
                    done,
                    total,
                };
                let batch_files = &slot_files[range.clone()];
                let filenames: Vec<String> =
                    batch_files.iter().map(|f| f.filename.clone()).collect();
                let ctx = PromptContext {
                    settings: &settings,
                    batch: b,
                    batches: batches.len(),
                    images: range.clone(),
                    filenames: &filenames,
                    answers: &outputs,
                };
                let render = |t: &str| {
                    pipeline::render(t, &ctx).map_err(|m| {
                        Error::upstream(
                            ErrorCode::ModelError,
                            false,
                            format!("{}: {m}", place.label()),
                        )
                    })
                };
                let prompt = render(&req.prompt)?;
                let system = req.system.as_deref().map(render).transpose()?;
                let mut images = vec![];
                for f in batch_files {
                    let slot = req.images.as_deref().unwrap_or_default();
                    let body = inputs::open(self.blobs.as_ref(), slot, f).await?;
                    images.push(ChatImage {
                        filename: f.filename.clone(),
                        content_type: f.content_type.clone(),
                        bytes: inputs::read_all(body).await?.into(),
                    });
                }
                let options: Map<String, Value> = req
                    .options
                    .iter()
                    .filter_map(|(k, o)| {
                        let v = match (&o.setting, &o.value) {
                            (Some(s), _) => settings.get(s)?.clone(),
                            (None, Some(v)) => pipeline::toml_to_json(v),
                            (None, None) => return None,
                        };
                        Some((k.clone(), v))
                    })
                    .collect();
                let request = ChatRequest {
                    protocol: server.protocol,
                    url: server.url.to_string(),
                    model: req
                        .model
                        .clone()
                        .unwrap_or_else(|| server.model.to_string()),
                    system,
                    prompt,
                    images,
                    options,
                    format: match req.answer {
                        AnswerForm::Text => ChatFormat::Text,
                        AnswerForm::Json => ChatFormat::Json(req.schema_json()),
                    },
                    timeout: Duration::from_secs(server.timeout_s),
                    max_answer_bytes: req.max_answer_bytes(),
                };
                let text = self.ask(run, &place, request).await?;
                let answer = read_answer(req, &text).map_err(|m| {
                    Error::upstream(
                        ErrorCode::ModelError,
                        false,
                        format!("{}: {m}", place.label()),
                    )
                })?;
                answers.push(answer.clone());
                done += 1;
                self.keep(run, req, b, answer, &place).await?;
            }
            outputs.insert(req.name.clone(), req.output(answers));
        }
        self.finish(run, pipeline, server.requests, outputs).await?;
        Ok(true)
    }

    /// Sends one request, retrying a server that is down or busy with backoff (its
    /// `Retry-After` honoured) up to `submit_tries`, and streams its text into the run's events.
    async fn ask(
        &self,
        run: &Run,
        place: &Place<'_>,
        request: ChatRequest,
    ) -> Result<String, Error> {
        let runs = &self.runs;
        let mut tries = 0;
        loop {
            match self
                .stream_once(run, place, tries + 1, request.clone())
                .await
            {
                Err(Error::Upstream {
                    retryable: true,
                    message,
                    retry_after,
                    ..
                }) if tries + 1 < runs.config.submit_tries => {
                    let delay = retry_after
                        .unwrap_or_else(|| runs.backoff(tries))
                        .min(Duration::from_secs(60));
                    tracing::info!(run = %run.id, tries, error = %message, "model server unavailable; trying again");
                    tries += 1;
                    let mut p = place.progress("waiting_for_backend");
                    p.message = Some(format!(
                        "{} (try {} of {})",
                        message,
                        tries + 1,
                        runs.config.submit_tries
                    ));
                    if !runs.renew(&run.id, Some(p)).await? {
                        return Err(ended());
                    }
                    self.wait(&run.id, delay).await?;
                }
                other => return other,
            }
        }
    }

    /// Sleeps `delay`, renewing the lease meanwhile.
    async fn wait(&self, id: &RunId, delay: Duration) -> Result<(), Error> {
        let end = Instant::now() + delay;
        while Instant::now() < end {
            let step = (end - Instant::now()).min(self.runs.config.heartbeat);
            tokio::time::sleep(step).await;
            if !self.runs.renew(id, None).await? {
                return Err(ended());
            }
        }
        Ok(())
    }

    /// One try of a request: the server's answer text, its pieces written to the run as they
    /// come (`FLUSH_EVERY`), the lease renewed while the server thinks.
    async fn stream_once(
        &self,
        run: &Run,
        place: &Place<'_>,
        attempt: u32,
        request: ChatRequest,
    ) -> Result<String, Error> {
        let runs = &self.runs;
        if !runs.renew(&run.id, Some(place.progress("calling"))).await? {
            return Err(ended());
        }
        let pending = Arc::new(Mutex::new(String::new()));
        let mut sink = {
            let pending = pending.clone();
            move |t: &str| {
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(t)
            }
        };
        let call = self.chat.chat(request, &mut sink);
        tokio::pin!(call);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = Instant::now();
        let result = loop {
            tokio::select! {
                r = &mut call => break r,
                _ = tick.tick() => {
                    let text = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
                    if !text.is_empty() {
                        if !self.flush(&run.id, place, attempt, text).await? {
                            return Err(ended());
                        }
                        renewed = Instant::now();
                    } else if renewed.elapsed() >= runs.config.heartbeat {
                        if !runs.renew(&run.id, None).await? {
                            return Err(ended());
                        }
                        renewed = Instant::now();
                    }
                }
            }
        };
        // What arrived since the last flush goes out before the answer is kept.
        let text = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
        if result.is_ok() && !text.is_empty() && !self.flush(&run.id, place, attempt, text).await? {
            return Err(ended());
        }
        result
    }

    /// Writes streamed text to the run as a `run.progress` event (renewing the lease); false
    /// when the run is no longer ours.
    async fn flush(
        &self,
        id: &RunId,
        place: &Place<'_>,
        attempt: u32,
        text: String,
    ) -> Result<bool, Error> {
        let delta = TextDelta {
            request: place.request.name.clone(),
            batch: place.batch as u32 + 1,
            attempt,
            text,
        };
        self.runs
            .stream_text(id, delta, place.progress("streaming"))
            .await
    }

    /// Keeps a batch's answer on the run, so a worker that takes it over does not ask again.
    async fn keep(
        &self,
        run: &Run,
        req: &RequestSpec,
        batch: usize,
        answer: Value,
        place: &Place<'_>,
    ) -> Result<(), Error> {
        let runs = &self.runs;
        let now = runs.clock.now();
        let me = runs.worker_id().to_string();
        let until = runs.lease_until(now);
        let mut progress = place.progress("answered");
        progress.fraction = Some((place.done + 1) as f64 / place.total.max(1) as f64);
        let m = runs
            .mutate(&run.id, |r| {
                if r.status.is_terminal() || !lease::renew(r, &me, until) {
                    return Ok(false);
                }
                let mut kept = kept_answers(r);
                let list = kept.entry(req.name.clone()).or_default();
                list.truncate(batch);
                list.push(answer.clone());
                let job = r.job.get_or_insert_with(Default::default);
                job.handle = Some(json!({ "answers": kept }));
                r.set_progress(progress.clone(), now);
                Ok(true)
            })
            .await?;
        match m {
            Mutated::Changed(_) => Ok(()),
            _ => Err(ended()),
        }
    }

    /// Stores the answers as the pipeline's artifacts and values and ends the run `succeeded`.
    async fn finish(
        &self,
        run: &Run,
        pipeline: &Pipeline,
        requests: &[RequestSpec],
        mut by_name: BTreeMap<String, Value>,
    ) -> Result<(), Error> {
        let runs = &self.runs;
        // The backend's outputs: request N's at index N.
        let outputs: Vec<Value> = requests
            .iter()
            .map(|r| by_name.remove(&r.name).unwrap_or(Value::Null))
            .collect();
        let values = pipeline
            .extract_values(None, &outputs)
            .map_err(|m| Error::upstream(ErrorCode::ModelError, false, m))?;
        let mut stored = vec![];
        for (name, spec) in &pipeline.outputs {
            let Some(value) = spec.from.and_then(|f| f.pick(&outputs)) else {
                continue;
            };
            let bytes = pipeline::answer_file(&spec.content_type, value);
            let body = Box::pin(stream::once(async move { Ok(bytes.into()) }));
            stored.push(
                artifacts::store(self.blobs.as_ref(), &run.id, name, spec, body, Map::new())
                    .await?,
            );
        }
        let now = runs.clock.now();
        let me = runs.worker_id().to_string();
        runs.mutate(&run.id, |run| {
            if run.status.is_terminal() || !run.job().held_by(&me) {
                return Ok(false);
            }
            if run.status == Status::Running {
                run.transition(Status::Fetching, now)?;
            }
            run.outputs = values.clone();
            artifacts::record_success(run, &stored, now)?;
            Ok(true)
        })
        .await?;
        Ok(())
    }
}

/// The run ended (cancelled, expired) or another worker holds it: stop asking.
fn ended() -> Error {
    Error::InvalidState("the run ended while the model server answered".into())
}

/// An answer as the request wants it: the text, or the JSON in it, checked against the
/// request's schema.
fn read_answer(req: &RequestSpec, text: &str) -> Result<Value, String> {
    match req.answer {
        AnswerForm::Text => Ok(Value::String(text.trim().to_string())),
        AnswerForm::Json => {
            let v = pipeline::json_in_answer(text)
                .ok_or_else(|| format!("the answer holds no JSON: {:.200}", text.trim()))?;
            if let Some(schema) = req.schema_json() {
                let validator = jsonschema::validator_for(&schema)
                    .map_err(|e| format!("the pipeline's schema is not a JSON Schema: {e}"))?;
                if let Some(e) = validator.iter_errors(&v).next() {
                    return Err(format!(
                        "the answer does not follow the schema: {e} (at {})",
                        e.instance_path()
                    ));
                }
            }
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_request(schema: toml::Value) -> RequestSpec {
        toml::from_str::<RequestSpec>(&format!(
            "name = \"events\"\nprompt = \"p\"\nanswer = \"json\"\nschema = {schema}"
        ))
        .unwrap()
    }

    #[test]
    fn json_answers_are_checked_against_the_schema() {
        let schema: toml::Value = toml::from_str::<toml::Table>(
            "s = { type = \"object\", required = [\"events\"], properties = { events = { type = \"array\" } } }",
        )
        .unwrap()["s"]
            .clone();
        let req = json_request(schema);
        assert_eq!(
            read_answer(&req, "```json\n{\"events\": []}\n```").unwrap(),
            json!({"events": []})
        );
        let e = read_answer(&req, "{\"events\": 3}").unwrap_err();
        assert!(
            e.contains("does not follow the schema") && e.contains("/events"),
            "{e}"
        );
        assert!(read_answer(&req, "none").unwrap_err().contains("no JSON"));
    }
}
