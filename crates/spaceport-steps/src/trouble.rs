//! What a failing backend means for its run, decided in one place for submit-space and
//! poll-status: a visible wait (a sleeping Space waking, a full queue, a quota that frees at a
//! time the Space named, a backoff after a 5xx), a failover to the next backend the pipeline
//! names, or a clear error. Every wait ends before the run's deadline or is not taken.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use spaceport_core::pipeline::{BackendSpec, Failover};
use spaceport_core::ports::{ModelRunner, QueueName, SpaceBackend, SpaceReadiness};
use spaceport_core::{
    BackendKind, Error, ErrorCode, EventType, JobState, Progress, Run, RunId, Status,
};

use crate::runs::{Mutated, Runs};
use crate::{Outcome, StepsConfig};

/// A backend failure as the steps weigh it.
#[derive(Debug, Clone)]
pub(crate) struct Trouble {
    pub code: ErrorCode,
    pub retryable: bool,
    pub message: String,
    /// When the peer said to come back.
    pub retry_after: Option<Duration>,
}

/// What becomes of the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Submit to the same backend again after `delay`, showing `stage`; `counts` when the try
    /// is one of the `submit_tries` (a wait the Space announced or a Space waking is not).
    Wait {
        delay: Duration,
        stage: &'static str,
        message: String,
        counts: bool,
    },
    /// Move the run to the next backend its pipeline names.
    FailOver { reason: String },
    /// End the run `failed`.
    Fail {
        code: ErrorCode,
        message: String,
        retryable: bool,
    },
}

/// What `decide` needs besides the failure.
pub(crate) struct Situation<'a> {
    pub run: &'a Run,
    pub policy: &'a Failover,
    /// Whether a fallback is left that this deployment can run.
    pub can_fail_over: bool,
    /// The Hub's word on the Space, when it was asked.
    pub readiness: Option<SpaceReadiness>,
    pub now: DateTime<Utc>,
}

/// The least time a try at the Space needs after a wait; a wait leaving less fails the run now.
const TRY_MARGIN: Duration = Duration::from_secs(1);

fn secs(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Decides what a failure means. Pure: the caller acts on the answer.
pub(crate) fn decide(t: &Trouble, s: &Situation, w: &StepsConfig, backoff: Duration) -> Decision {
    let job = s.run.job();
    let left = (s.run.deadline_at - s.now)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let waited = job
        .waiting_since
        .and_then(|since| (s.now - since).to_std().ok())
        .unwrap_or(Duration::ZERO);
    let tries_left = t.retryable && job.submit_tries + 1 < w.submit_tries;
    let fail = |code, message: String, retryable| Decision::Fail {
        code,
        message,
        retryable,
    };
    let down = |message: String, retryable: bool| {
        if s.policy.when_down && s.can_fail_over {
            Decision::FailOver { reason: message }
        } else {
            fail(ErrorCode::SpaceUnavailable, message, retryable)
        }
    };
    let retry = |stage| Decision::Wait {
        delay: t.retry_after.unwrap_or_default().max(backoff),
        stage,
        message: format!(
            "{} (try {} of {}, retrying)",
            t.message,
            job.submit_tries + 1,
            w.submit_tries
        ),
        counts: true,
    };
    let decision = match t.code {
        ErrorCode::SpaceQuotaExceeded => {
            let over = |d: Duration| {
                s.policy
                    .when_quota_wait_over_s
                    .is_some_and(|n| d > Duration::from_secs(n))
            };
            match t.retry_after {
                Some(d) if over(d) && s.can_fail_over => Decision::FailOver {
                    reason: format!("the Space's quota frees in {}: {}", secs(d), t.message),
                },
                Some(d) if d >= left => fail(
                    ErrorCode::SpaceQuotaExceeded,
                    format!(
                        "the Space's quota frees in {}, after the run's deadline: {}",
                        secs(d),
                        t.message
                    ),
                    true,
                ),
                Some(d) => Decision::Wait {
                    delay: d,
                    stage: "space_quota_wait",
                    message: t.message.clone(),
                    counts: false,
                },
                None if tries_left => retry("space_quota_wait"),
                None if s.policy.when_quota_wait_over_s.is_some() && s.can_fail_over => {
                    Decision::FailOver {
                        reason: t.message.clone(),
                    }
                }
                None => fail(ErrorCode::SpaceQuotaExceeded, t.message.clone(), true),
            }
        }
        ErrorCode::SpaceQueueFull => {
            if s.policy.when_queue_rank_over.is_some() && s.can_fail_over {
                Decision::FailOver {
                    reason: t.message.clone(),
                }
            } else {
                Decision::Wait {
                    delay: t.retry_after.unwrap_or(backoff).min(w.queue_full_max_delay),
                    stage: "space_queue_full",
                    message: format!("{}; waiting for room", t.message),
                    counts: false,
                }
            }
        }
        ErrorCode::SpaceUnavailable => match s.readiness {
            Some(SpaceReadiness::Waking) if waited >= w.wake_timeout => down(
                format!(
                    "the Space did not wake within {} ({})",
                    secs(w.wake_timeout),
                    t.message
                ),
                true,
            ),
            Some(SpaceReadiness::Waking) => Decision::Wait {
                delay: w.wake_poll,
                stage: "space_waking",
                message: format!("the Space is starting ({})", t.message),
                counts: false,
            },
            Some(SpaceReadiness::Down) => down(t.message.clone(), false),
            _ if tries_left => retry("retrying"),
            _ if t.retryable => down(
                format!("{} (gave up after {} tries)", t.message, w.submit_tries),
                true,
            ),
            _ => down(t.message.clone(), false),
        },
        _ if tries_left => retry("retrying"),
        code if t.retryable => fail(
            code,
            format!("{} (gave up after {} tries)", t.message, w.submit_tries),
            true,
        ),
        code => fail(code, t.message.clone(), false),
    };
    // A wait that would end after the deadline (or too near it for one more try) is not taken:
    // the run ends now, saying why, rather than expiring mid-wait.
    match decision {
        Decision::Wait { delay, .. } if delay + TRY_MARGIN >= left => {
            let how_long = if waited > Duration::ZERO {
                format!(" after waiting {}", secs(waited))
            } else {
                String::new()
            };
            fail(
                t.code,
                format!(
                    "{}{how_long}; the next try would pass the run's deadline",
                    t.message
                ),
                true,
            )
        }
        d => d,
    }
}

/// Acts on backend failures for the steps that hold a run's job.
#[derive(Clone)]
pub(crate) struct Troubles {
    pub runs: Runs,
    pub space: Arc<dyn SpaceBackend>,
    /// The local model runner, when this process has one (an ONNX fallback needs it).
    pub runner: Option<Arc<dyn ModelRunner>>,
}

/// The backend a run moves to.
struct Next {
    pipeline: String,
    kind: BackendKind,
    target: String,
}

impl Troubles {
    /// The next fallback of the run's pipeline that has not served it yet and that this
    /// deployment can run.
    fn next_backend(&self, run: &Run) -> Result<Option<Next>, Error> {
        let own = self.runs.pipelines.get(&run.pipeline)?;
        for name in own.fallbacks() {
            let used = name == run.backend_pipeline()
                || run.backend.attempts.iter().any(|a| a.pipeline == name);
            if used {
                continue;
            }
            let p = self.runs.pipelines.get(name)?;
            let next = match &p.backend {
                BackendSpec::Onnx { model, .. } => {
                    if !self.runner.as_ref().is_some_and(|r| r.available(model)) {
                        continue;
                    }
                    Next {
                        pipeline: name.to_string(),
                        kind: BackendKind::Onnx,
                        target: model.clone(),
                    }
                }
                BackendSpec::Space { space, .. } => Next {
                    pipeline: name.to_string(),
                    kind: BackendKind::Space,
                    target: space.clone(),
                },
                BackendSpec::HttpModel { model, .. } => Next {
                    pipeline: name.to_string(),
                    kind: BackendKind::HttpModel,
                    target: model.clone(),
                },
                // A local function takes other runs' artifacts, not a Space's inputs; a chain
                // is no fallback of a backend.
                BackendSpec::Local { .. } | BackendSpec::Chain { .. } => continue,
            };
            return Ok(Some(next));
        }
        Ok(None)
    }

    /// Whether a backend found down (unreachable on every try) hands `run` to a fallback: its
    /// pipeline fails over when down and names one this deployment can run that has not
    /// served it yet.
    pub(crate) fn fails_over_when_down(&self, run: &Run) -> Result<bool, Error> {
        let own = self.runs.pipelines.get(&run.pipeline)?;
        Ok(own.failover.when_down && self.next_backend(run)?.is_some())
    }

    /// The queue rank above which `run`'s job leaves its Space for a fallback: the pipeline's
    /// `when_queue_rank_over`, when a fallback is left. Decided once per watch, not per event.
    pub(crate) fn rank_limit(&self, run: &Run) -> Result<Option<u64>, Error> {
        let own = self.runs.pipelines.get(&run.pipeline)?;
        Ok(match own.failover.when_queue_rank_over {
            Some(n) if self.next_backend(run)?.is_some() => Some(n),
            _ => None,
        })
    }

    /// Weighs a failure of the run's backend while the run is in `from` (`Submitting` in
    /// submit-space, `Running` in poll-status) and acts on it: the run waits, fails over or fails.
    pub(crate) async fn handle(
        &self,
        id: &RunId,
        from: Status,
        t: Trouble,
    ) -> Result<Outcome, Error> {
        let runs = &self.runs;
        let run = runs.load(id).await?;
        let own = runs.pipelines.get(&run.pipeline)?;
        let backend = runs.pipelines.get(run.backend_pipeline())?;
        let mut readiness = None;
        let mut t = t;
        if t.code == ErrorCode::SpaceUnavailable
            && let BackendSpec::Space { space, .. } = &backend.backend
            && let Some(rt) = self.space.runtime(space).await
        {
            if rt.asleep()
                && let Some(url) = backend.backend.space_url()
            {
                self.space.wake(&url).await;
            }
            readiness = Some(rt.readiness());
            if readiness != Some(SpaceReadiness::Running) {
                t.message = format!("the Hub says {space} is {}; {}", rt.stage, t.message);
            }
        }
        let next_exists = self.next_backend(&run)?.is_some();
        let now = runs.clock.now();
        let situation = Situation {
            run: &run,
            policy: &own.failover,
            can_fail_over: next_exists,
            readiness,
            now,
        };
        let backoff = runs.backoff(run.job().submit_tries);
        match decide(&t, &situation, &runs.config, backoff) {
            Decision::Wait {
                delay,
                stage,
                message,
                counts,
            } => self.wait(id, from, delay, stage, message, counts).await,
            Decision::FailOver { reason } => {
                self.fail_over(id, from, &reason).await?;
                Ok(Outcome::Done)
            }
            Decision::Fail {
                code,
                message,
                retryable,
            } => {
                let message = match from {
                    Status::Running => format!("the Space failed: {message}"),
                    _ => message,
                };
                runs.fail_run(id, code, &message, retryable).await?;
                Ok(Outcome::Done)
            }
        }
    }

    async fn wait(
        &self,
        id: &RunId,
        from: Status,
        delay: Duration,
        stage: &'static str,
        message: String,
        counts: bool,
    ) -> Result<Outcome, Error> {
        let runs = &self.runs;
        let now = runs.clock.now();
        let until = now + chrono::Duration::from_std(delay).unwrap_or_default();
        let mutated = runs
            .mutate(id, |run| {
                if run.status != from {
                    return Ok(false);
                }
                let old = run.job();
                let waiting_since = match counts {
                    true => old.waiting_since,
                    false => Some(old.waiting_since.unwrap_or(now)),
                };
                if from == Status::Running {
                    // The job ended at the Space (a quota refusal, a full live queue): a new
                    // submission of the same attempt, with nothing to cancel.
                    run.transition(Status::Submitting, now)?;
                }
                run.job = Some(JobState {
                    handle: if from == Status::Running {
                        None
                    } else {
                        old.handle.clone()
                    },
                    submit_tries: old.submit_tries + u32::from(counts),
                    not_before: Some(until),
                    waiting_since,
                    ..JobState::default()
                });
                let progress = Progress {
                    stage: Some(stage.into()),
                    message: Some(message.clone()),
                    retry_at: Some(until),
                    waited_s: waiting_since
                        .map(|s| (now - s).num_milliseconds().max(0) as f64 / 1000.0),
                    ..Progress::default()
                };
                run.set_progress(progress, now);
                Ok(true)
            })
            .await?;
        match mutated {
            // Submit-space takes it up again then (from poll-status, a message of its own).
            Mutated::Changed(run) => runs.later(QueueName::SubmitSpace, &run, delay).await,
            Mutated::Unchanged(_) => Ok(Outcome::Done),
        }
    }

    /// Moves the run (in `from`) to the next backend its pipeline names, as a new attempt.
    pub(crate) async fn fail_over(
        &self,
        id: &RunId,
        from: Status,
        reason: &str,
    ) -> Result<(), Error> {
        let runs = &self.runs;
        let now = runs.clock.now();
        let run = runs.load(id).await?;
        let Some(next) = self.next_backend(&run)? else {
            runs.fail_run(id, ErrorCode::SpaceUnavailable, reason, true)
                .await?;
            return Ok(());
        };
        let mutated = runs
            .mutate_handing_on(id, |run| {
                if run.status != from {
                    return Ok(false);
                }
                run.end_attempt("failed_over", Some(reason.to_string()), now);
                if from == Status::Running {
                    run.transition(Status::Submitting, now)?;
                }
                run.backend.kind = next.kind;
                run.backend.target = next.target.clone();
                run.backend.pipeline = Some(next.pipeline.clone()).filter(|p| *p != run.pipeline);
                run.job = Some(JobState::default());
                run.progress = Progress {
                    stage: Some("fallback".into()),
                    message: Some(format!("{reason}; running on {} instead", next.pipeline)),
                    ..Progress::default()
                };
                run.begin_attempt(now);
                // Another backend takes the job: an update, not mere progress.
                run.record(EventType::Updated, now);
                Ok(true)
            })
            .await?;
        if let Mutated::Changed(run) = mutated {
            tracing::info!(run = %run.id, to = %next.pipeline, reason, "failing over");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spaceport_core::BackendInfo;

    fn run(now: DateTime<Utc>, deadline_s: i64) -> Run {
        Run::new(
            RunId::new(1, 1),
            "vggt",
            BackendInfo::new(BackendKind::Space, "facebook/vggt"),
            now,
            now + chrono::Duration::seconds(deadline_s),
        )
    }

    fn waits() -> StepsConfig {
        StepsConfig {
            submit_tries: 3,
            wake_timeout: Duration::from_secs(60),
            wake_poll: Duration::from_secs(5),
            queue_full_max_delay: Duration::from_secs(30),
            ..StepsConfig::default()
        }
    }

    fn trouble(code: ErrorCode, after: Option<u64>) -> Trouble {
        Trouble {
            code,
            retryable: true,
            message: "m".into(),
            retry_after: after.map(Duration::from_secs),
        }
    }

    fn decide_with(
        t: &Trouble,
        run: &Run,
        policy: &Failover,
        can: bool,
        r: Option<SpaceReadiness>,
    ) -> Decision {
        let s = Situation {
            run,
            policy,
            can_fail_over: can,
            readiness: r,
            now: run.created_at,
        };
        decide(t, &s, &waits(), Duration::from_secs(1))
    }

    #[test]
    fn a_quota_waits_until_it_frees_unless_that_is_past_the_deadline_or_the_policy() {
        let now = Utc::now();
        let r = run(now, 900);
        let p = Failover::default();
        let q = trouble(ErrorCode::SpaceQuotaExceeded, Some(588));
        assert!(matches!(
            decide_with(&q, &r, &p, true, None),
            Decision::Wait { delay, stage: "space_quota_wait", counts: false, .. } if delay.as_secs() == 588
        ));
        let late = trouble(ErrorCode::SpaceQuotaExceeded, Some(1000));
        assert!(matches!(
            decide_with(&late, &r, &p, true, None),
            Decision::Fail { code: ErrorCode::SpaceQuotaExceeded, ref message, .. } if message.contains("0:16:40, after the run's deadline")
        ));
        let strict = Failover {
            when_quota_wait_over_s: Some(60),
            ..Failover::default()
        };
        assert!(matches!(
            decide_with(&q, &r, &strict, true, None),
            Decision::FailOver { .. }
        ));
        // No fallback left: wait after all.
        assert!(matches!(
            decide_with(&q, &r, &strict, false, None),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn a_sleeping_space_is_waited_for_until_the_wake_timeout_then_it_is_down() {
        let now = Utc::now();
        let mut r = run(now, 900);
        let p = Failover::default();
        let t = trouble(ErrorCode::SpaceUnavailable, None);
        assert!(matches!(
            decide_with(&t, &r, &p, true, Some(SpaceReadiness::Waking)),
            Decision::Wait {
                stage: "space_waking",
                counts: false,
                ..
            }
        ));
        r.job = Some(JobState {
            waiting_since: Some(now - chrono::Duration::seconds(61)),
            ..JobState::default()
        });
        assert!(matches!(
            decide_with(&t, &r, &p, true, Some(SpaceReadiness::Waking)),
            Decision::FailOver { .. }
        ));
        assert!(matches!(
            decide_with(&t, &r, &p, false, Some(SpaceReadiness::Waking)),
            Decision::Fail {
                code: ErrorCode::SpaceUnavailable,
                ..
            }
        ));
        // The Hub says it is broken: down at once, whatever the tries left.
        let fresh = run(now, 900);
        assert!(matches!(
            decide_with(&t, &fresh, &p, false, Some(SpaceReadiness::Down)),
            Decision::Fail {
                retryable: false,
                ..
            }
        ));
        let no_down = Failover {
            when_down: false,
            ..Failover::default()
        };
        assert!(matches!(
            decide_with(&t, &fresh, &no_down, true, Some(SpaceReadiness::Down)),
            Decision::Fail { .. }
        ));
    }

    #[test]
    fn a_full_queue_waits_with_a_capped_backoff_or_fails_over_by_policy() {
        let now = Utc::now();
        let r = run(now, 900);
        let t = trouble(ErrorCode::SpaceQueueFull, Some(3600));
        assert!(matches!(
            decide_with(&t, &r, &Failover::default(), true, None),
            Decision::Wait { delay, stage: "space_queue_full", .. } if delay.as_secs() == 30
        ));
        let busy = Failover {
            when_queue_rank_over: Some(5),
            ..Failover::default()
        };
        assert!(matches!(
            decide_with(&t, &r, &busy, true, None),
            Decision::FailOver { .. }
        ));
        // A wait past the deadline is not taken.
        let short = run(now, 10);
        assert!(matches!(
            decide_with(&t, &short, &Failover::default(), true, None),
            Decision::Fail { code: ErrorCode::SpaceQueueFull, ref message, .. } if message.contains("deadline")
        ));
    }

    #[test]
    fn transient_failures_retry_a_bounded_number_of_times() {
        let now = Utc::now();
        let mut r = run(now, 900);
        let t = trouble(ErrorCode::SpaceUnavailable, Some(4));
        assert!(matches!(
            decide_with(&t, &r, &Failover::default(), false, Some(SpaceReadiness::Running)),
            Decision::Wait { delay, counts: true, .. } if delay.as_secs() == 4
        ));
        r.job = Some(JobState {
            submit_tries: 2,
            ..JobState::default()
        });
        assert!(matches!(
            decide_with(&t, &r, &Failover::default(), false, None),
            Decision::Fail { code: ErrorCode::SpaceUnavailable, ref message, .. } if message.contains("gave up after 3 tries")
        ));
        assert!(matches!(
            decide_with(&t, &r, &Failover::default(), true, None),
            Decision::FailOver { .. }
        ));
        let protocol = Trouble {
            retryable: false,
            ..trouble(ErrorCode::SpaceProtocol, None)
        };
        assert_eq!(
            decide_with(&protocol, &run(now, 900), &Failover::default(), true, None),
            Decision::Fail {
                code: ErrorCode::SpaceProtocol,
                message: "m".into(),
                retryable: false
            }
        );
    }
}
