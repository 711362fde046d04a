//! notify-webhook: turns a run's events into signed deliveries and attempts them. A message
//! without a delivery dispatches the run's events not yet dispatched: one delivery per event and
//! target that wants it (the run's own webhook, configured endpoints), created under a message id
//! derived from endpoint, run and event, so a re-dispatch after a crash makes no second one, and
//! tried at once, together. A message naming a delivery attempts it (a retry): claimed first (no two workers send it at once), then
//! recorded, then delivered, retried on the schedule (honouring `Retry-After`), disabled by a 410,
//! or dead-lettered when the schedule is spent. Delivery never touches the run itself, so it
//! never slows or blocks the run's own steps. Where there is an event sink, the bus is one more
//! target: its deliveries' attempts publish to the sink, claimed, retried and logged the same way.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use spaceport_core::ports::{
    DeliveryStore, EventSink, QueueName, SendOutcome, StepMessage, WebhookSender,
};
use spaceport_core::webhook::{
    Attempt, BusEvents, DeliveryState, WebhookDelivery, event_detail, message_body, message_id,
};
use spaceport_core::{Error, EventType, Run, RunId};

use crate::runs::Runs;
use crate::{Outcome, Step};

/// Events read per dispatch.
const DISPATCH_PAGE: usize = 1000;
/// The fewest seconds between two `run.progress` messages of one run to one endpoint.
const PROGRESS_EVERY_MS: i64 = 2000;
/// The longest delay of one attempt message. Waits between tries are sent as fresh delayed
/// messages rather than as a later visibility of the same one, so no message is received more
/// than about twice and a queue's dead-letter policy never takes a delivery still on schedule;
/// SQS delays a message 15 minutes at most.
const MAX_HOP: Duration = Duration::from_secs(900);
/// The endpoint name of a run's own webhook in delivery logs.
pub const RUN_ENDPOINT: &str = "run";
/// The endpoint name of the event bus in delivery logs: each event it wants is a delivery whose
/// attempt publishes to the event sink.
pub const BUS_ENDPOINT: &str = "bus";

/// An endpoint that receives every run's events.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub events: Vec<EventType>,
}

/// What notify-webhook delivers, and how persistently.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The delay before each try (the first usually zero): one try per entry.
    pub schedule: Vec<Duration>,
    /// Endpoints that receive every run's events.
    pub endpoints: Vec<Endpoint>,
    /// Whether a signing secret is configured (a run's webhook is refused otherwise).
    pub can_sign: bool,
    /// How long one attempt may take (a claimed delivery is left to its worker that long).
    pub timeout: Duration,
    /// Which events go to the event bus (off where this process has no event sink).
    pub bus: BusEvents,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            schedule: [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000]
                .map(Duration::from_secs)
                .to_vec(),
            endpoints: vec![],
            can_sign: false,
            timeout: Duration::from_secs(15),
            bus: BusEvents::Terminal,
        }
    }
}

impl WebhookSettings {
    /// Whether a change of `run` may have something to deliver.
    pub fn wants(&self, run: &Run) -> bool {
        !self.endpoints.is_empty() || run.webhook.is_some() || self.bus != BusEvents::Off
    }
}

/// The notify-webhook step.
#[derive(Clone)]
pub struct Notify {
    runs: Runs,
    deliveries: Arc<dyn DeliveryStore>,
    sender: Arc<dyn WebhookSender>,
    sink: Option<Arc<dyn EventSink>>,
}

#[async_trait]
impl Step for Notify {
    fn queue(&self) -> QueueName {
        QueueName::NotifyWebhook
    }

    async fn run(&self, msg: &StepMessage) -> Result<Outcome, Error> {
        match &msg.delivery {
            Some(id) => self.attempt(id, msg.version).await,
            None => self.dispatch(&msg.run_id).await.map(|_| Outcome::Done),
        }
    }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

impl Notify {
    /// The step over its ports.
    pub fn new(
        runs: Runs,
        deliveries: Arc<dyn DeliveryStore>,
        sender: Arc<dyn WebhookSender>,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Notify {
        Notify {
            runs,
            deliveries,
            sender,
            sink,
        }
    }

    fn settings(&self) -> &WebhookSettings {
        &self.runs.config.webhook
    }

    /// Sends the message that attempts delivery `d` when it is due (`d.next_at`), after at most
    /// `MAX_HOP`: a longer wait is crossed by a message that, received early, sends the next.
    pub(crate) async fn enqueue_attempt(&self, d: &WebhookDelivery) -> Result<(), Error> {
        let Some(due) = d.next_at else {
            return Ok(());
        };
        let body = serde_json::to_string(&StepMessage {
            run_id: d.run_id.clone(),
            version: due.timestamp_millis().max(0) as u64,
            delivery: Some(d.id.clone()),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        let wait = (due - self.runs.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        self.runs
            .queue
            .send(QueueName::NotifyWebhook, &body, wait.min(MAX_HOP))
            .await
            .map(drop)
    }

    /// Sets a pending delivery due `at` (conditionally on its version) and sends its message.
    async fn schedule(&self, d: &mut WebhookDelivery, at: DateTime<Utc>) -> Result<(), Error> {
        let prev = d.version;
        d.state = DeliveryState::Pending;
        d.next_at = Some(at);
        d.version += 1;
        self.deliveries.update_delivery(d, prev).await?;
        self.enqueue_attempt(d).await
    }

    /// The targets of `run`'s events: its own webhook (unless a 410 disabled it) and every
    /// configured endpoint (unless a 410 disabled it).
    async fn targets(&self, run: &Run) -> Result<Vec<Endpoint>, Error> {
        let mut out = vec![];
        if let Some(t) = run.webhook_target()
            && self
                .deliveries
                .cursor(&format!("disabled:{RUN_ENDPOINT}:{}", run.id))
                .await?
                .is_none()
        {
            out.push(Endpoint {
                name: RUN_ENDPOINT.into(),
                url: t.url,
                events: t.events,
            });
        }
        let bus = self.settings().bus;
        if self.sink.is_some() && bus != BusEvents::Off {
            out.push(Endpoint {
                name: BUS_ENDPOINT.into(),
                url: "event-bus".into(),
                events: EventType::ALL
                    .into_iter()
                    .filter(|t| bus.wants(*t))
                    .collect(),
            });
        }
        for e in &self.settings().endpoints {
            if self
                .deliveries
                .cursor(&format!("disabled:{}", e.name))
                .await?
                .is_none()
            {
                out.push(e.clone());
            }
        }
        Ok(out)
    }

    /// Makes the deliveries of `run`'s events not dispatched yet and makes their first tries.
    /// Returns how many deliveries it made.
    pub async fn dispatch(&self, id: &RunId) -> Result<usize, Error> {
        // Reads that do not depend on each other go together: each is a round trip to the
        // store (on AWS, DynamoDB), and they are most of a dispatch's time.
        let cursor = format!("dispatched:{id}");
        let (run, after) =
            futures::future::try_join(self.runs.store.get(id), self.deliveries.cursor(&cursor))
                .await?;
        let Some(run) = run else {
            return Ok(0);
        };
        let after: u64 = after.and_then(|v| v.parse().ok()).unwrap_or(0);
        if after >= run.event_seq {
            return Ok(0);
        }
        let (targets, events) = futures::future::try_join(
            self.targets(&run),
            self.runs.store.events(id, after, DISPATCH_PAGE),
        )
        .await?;
        let now = self.runs.clock.now();
        let mut made = vec![];
        for target in &targets {
            let progress_cursor = format!("progress:{}:{id}", target.name);
            // Read at the first progress event only (most pages have none).
            let mut last_progress: Option<Option<i64>> = None;
            for e in events.iter().filter(|e| target.events.contains(&e.kind)) {
                if e.kind == EventType::Progress {
                    let last = match last_progress {
                        Some(l) => l,
                        None => self
                            .deliveries
                            .cursor(&progress_cursor)
                            .await?
                            .and_then(|v| v.parse().ok()),
                    };
                    let at = e.at.timestamp_millis();
                    if last.is_some_and(|l| at - l < PROGRESS_EVERY_MS) {
                        last_progress = Some(last);
                        continue;
                    }
                    last_progress = Some(Some(at));
                    self.deliveries
                        .set_cursor(&progress_cursor, &at.to_string())
                        .await?;
                }
                let d = WebhookDelivery {
                    id: message_id(&target.name, id, e.seq),
                    run_id: id.clone(),
                    event_seq: e.seq,
                    kind: e.kind,
                    endpoint: target.name.clone(),
                    url: target.url.clone(),
                    body: match target.name.as_str() {
                        BUS_ENDPOINT => event_detail(&run, e),
                        _ => message_body(&run, e),
                    },
                    state: DeliveryState::Pending,
                    attempts: vec![],
                    // One tried from here is made claimed: its first try needs no claim write.
                    next_at: Some(if self.tries_here(&target.name) {
                        self.claimed_until(now)
                    } else {
                        now
                    }),
                    created_at: now,
                    version: 1,
                };
                if self.deliveries.create_delivery(&d).await? {
                    made.push(d);
                }
            }
        }
        // The cursor is written beside the first tries: the deliveries exist already, so a crash
        // before it lands re-dispatches nothing twice (their creation is conditional).
        let record = async {
            match events.last() {
                Some(last) => {
                    self.deliveries
                        .set_cursor(&cursor, &last.seq.to_string())
                        .await
                }
                None => Ok(()),
            }
        };
        // The first tries go out from here, together: no queue hop between an event and its
        // webhook. One that cannot be tried here (no client or secrets in this binary: the
        // sweeper in accept-upload) or whose try failed to run is handed to the queue; a crash
        // now leaves pending deliveries the sweeper reschedules.
        let tries = made.iter().map(|d| async move {
            if !self.tries_here(&d.endpoint) {
                return self.enqueue_attempt(d).await;
            }
            if let Err(e) = self.send_claimed(d.clone()).await {
                tracing::warn!(delivery = %d.id, error = %e, "a first try failed; queueing it");
                self.enqueue_attempt(d).await?;
            }
            Ok::<_, Error>(())
        });
        let (recorded, tried) =
            futures::future::join(record, futures::future::join_all(tries)).await;
        recorded?;
        for r in tried {
            r?;
        }
        Ok(made.len())
    }

    /// Attempts delivery `id` if it is pending and due (if not yet due, sends the message that
    /// comes back when it is). A failed try that has tries left sends the next one's message.
    /// `due` is the due time (Unix ms) the message was sent for: a message for another one is
    /// stale (a claim, retry or redelivery sent a newer one) and dropped.
    pub async fn attempt(&self, id: &str, due: u64) -> Result<Outcome, Error> {
        let Some(mut d) = self.deliveries.delivery(id).await? else {
            return Ok(Outcome::Done);
        };
        let Some(next) = d.next_at.filter(|_| d.state == DeliveryState::Pending) else {
            return Ok(Outcome::Done);
        };
        if next.timestamp_millis().max(0) as u64 != due {
            return Ok(Outcome::Done);
        }
        let now = self.runs.clock.now();
        if next > now {
            self.enqueue_attempt(&d).await?;
            return Ok(Outcome::Done);
        }
        // Claim it: another worker sees it due only after this attempt could have ended.
        let prev = d.version;
        d.next_at = Some(self.claimed_until(now));
        d.version += 1;
        match self.deliveries.update_delivery(&d, prev).await {
            Ok(()) => {}
            Err(Error::VersionConflict { .. }) => return Ok(Outcome::Done),
            Err(e) => return Err(e),
        }
        self.send_claimed(d).await
    }

    /// Until when a try claimed at `now` keeps a delivery from other workers: past the end the
    /// try could have.
    fn claimed_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono(self.settings().timeout * 2 + Duration::from_secs(5))
    }

    /// Whether this process makes the tries of `endpoint`'s deliveries: the bus when it has one,
    /// an endpoint when its sender can sign for it.
    fn tries_here(&self, endpoint: &str) -> bool {
        (self.sink.is_some() && endpoint == BUS_ENDPOINT) || self.sender.can_send(endpoint)
    }

    /// Sends claimed delivery `d` once and records the try: delivered, disabled, dead, or due
    /// again with its next message sent.
    async fn send_claimed(&self, mut d: WebhookDelivery) -> Result<Outcome, Error> {
        let out = match (&self.sink, d.endpoint.as_str()) {
            (Some(sink), BUS_ENDPOINT) => publish(sink.as_ref(), &d).await,
            _ => self.sender.send(&d.endpoint, &d.url, &d.id, &d.body).await,
        };
        let at = self.runs.clock.now();
        d.attempts.push(Attempt {
            at,
            status: out.status,
            latency_ms: out.latency.as_millis() as u64,
            error: out.error.clone(),
        });
        let tries = d.attempts.len();
        // The endpoint's name, never its URL (a query string may carry the receiver's token).
        tracing::info!(delivery = %d.id, run = %d.run_id, endpoint = %d.endpoint, try_no = tries,
            status = ?out.status, latency_ms = out.latency.as_millis() as u64, error = ?out.error, "webhook attempt");
        let mut retry_at = None;
        match out.status {
            // The bus answers no status: accepted is no error.
            None if out.error.is_none() => {
                d.state = DeliveryState::Delivered;
                d.next_at = None;
            }
            Some(200..=299) => {
                d.state = DeliveryState::Delivered;
                d.next_at = None;
            }
            Some(410) => {
                // The receiver says the URL is gone: nothing more goes there.
                d.state = DeliveryState::Disabled;
                d.next_at = None;
                let name = match d.endpoint.as_str() {
                    RUN_ENDPOINT => format!("disabled:{RUN_ENDPOINT}:{}", d.run_id),
                    other => format!("disabled:{other}"),
                };
                self.deliveries.set_cursor(&name, &at.to_rfc3339()).await?;
            }
            _ if tries >= self.settings().schedule.len() => {
                d.state = DeliveryState::Dead;
                d.next_at = None;
                tracing::warn!(delivery = %d.id, run = %d.run_id, endpoint = %d.endpoint, tries, "webhook delivery dead-lettered");
            }
            _ => {
                let wait = jittered(self.settings().schedule[tries])
                    .max(out.retry_after.unwrap_or(Duration::ZERO));
                retry_at = Some(at + chrono(wait));
            }
        }
        match retry_at {
            // The write comes before the message: a crash between the two leaves an overdue
            // delivery the sweeper re-schedules, never a message for an unrecorded try.
            Some(at) => self.schedule(&mut d, at).await?,
            None => {
                let prev = d.version;
                d.version += 1;
                self.deliveries.update_delivery(&d, prev).await?;
            }
        }
        Ok(Outcome::Done)
    }

    /// Makes a delivery pending again now (its id, body and attempts kept) and sends its
    /// attempt: redelivery from the delivery log or the dead-letter list.
    pub async fn redeliver(&self, run: &RunId, id: &str) -> Result<WebhookDelivery, Error> {
        let not_found = || Error::NotFound {
            what: "delivery",
            id: format!("{run}/{id}"),
        };
        for _ in 0..8 {
            let mut d = self.deliveries.delivery(id).await?.ok_or_else(not_found)?;
            if &d.run_id != run {
                return Err(not_found());
            }
            match self.schedule(&mut d, self.runs.clock.now()).await {
                Ok(()) => return Ok(d),
                Err(Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "delivery {id} kept changing; try again"
        )))
    }

    /// A run's delivery log.
    pub async fn log(&self, run: &RunId) -> Result<Vec<WebhookDelivery>, Error> {
        self.runs.load(run).await?;
        self.deliveries.deliveries_of_run(run).await
    }

    /// The dead-letter list, after delivery `after`: every run's (`tenant` `None`) or only the
    /// deliveries of `tenant`'s runs. Dead letters are few (a receiver down for days), so a
    /// tenant's page is read from the shared list, skipping other tenants' runs.
    pub async fn dead(
        &self,
        tenant: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        let Some(tenant) = tenant else {
            return self.deliveries.dead_deliveries(after, limit).await;
        };
        let mut owner: std::collections::HashMap<RunId, bool> = Default::default();
        let mut out = vec![];
        let mut after = after.map(str::to_owned);
        loop {
            let page = self
                .deliveries
                .dead_deliveries(after.as_deref(), limit.max(1))
                .await?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            after = Some(last.id.clone());
            let full = page.len() >= limit.max(1);
            for d in page {
                let mine = match owner.get(&d.run_id) {
                    Some(m) => *m,
                    None => {
                        let m = self
                            .runs
                            .store
                            .get(&d.run_id)
                            .await?
                            .is_some_and(|r| r.tenant == tenant);
                        owner.insert(d.run_id.clone(), m);
                        m
                    }
                };
                if mine {
                    out.push(d);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// The sweeper's share: dispatches the runs of events the feed holds past the dispatcher's
    /// cursor (a crash between a change and its notify message loses nothing), and re-sends the
    /// attempts of deliveries overdue by `grace` (a crash lost their message). Returns how many
    /// runs and deliveries it touched.
    pub async fn sweep(&self, now: DateTime<Utc>, grace: Duration) -> Result<usize, Error> {
        let mut touched = 0;
        let mut after = self.deliveries.cursor("feed").await?;
        for _ in 0..20 {
            let page = self
                .runs
                .store
                .feed(&spaceport_core::ports::FeedQuery {
                    tenant: None,
                    after: after.clone(),
                    types: vec![],
                    limit: 100,
                })
                .await?;
            let mut runs: Vec<RunId> = page.events.iter().map(|e| e.run_id.clone()).collect();
            runs.dedup();
            for id in runs {
                // One run that cannot be read or dispatched is passed over, not the feed.
                let dispatched = async {
                    match self.runs.store.get(&id).await? {
                        Some(run) if self.settings().wants(&run) => self.dispatch(&id).await,
                        _ => Ok(0),
                    }
                };
                match dispatched.await {
                    Ok(n) => touched += n,
                    Err(e) => {
                        tracing::warn!(run = %id, error = %e, "could not dispatch a run's events; passed over")
                    }
                }
            }
            match page.next_cursor {
                Some(next) => {
                    self.deliveries.set_cursor("feed", &next).await?;
                    after = Some(next);
                }
                None => break,
            }
            if !page.has_more {
                break;
            }
        }
        // Due now, with a new message: the lost one (or a stale one) is dropped when it comes.
        let overdue = self.deliveries.due_deliveries(now - chrono(grace), 100);
        for mut d in overdue.await? {
            match self.schedule(&mut d, now).await {
                Ok(()) => touched += 1,
                Err(Error::VersionConflict { .. }) => {}
                Err(e) => {
                    tracing::warn!(delivery = %d.id, error = %e, "could not re-send an overdue delivery; passed over")
                }
            }
        }
        Ok(touched)
    }
}

/// One attempt of a delivery to the event bus, as an attempt's outcome.
async fn publish(sink: &dyn EventSink, d: &WebhookDelivery) -> SendOutcome {
    let started = std::time::Instant::now();
    let result = sink.publish(d.kind, &d.body, d.created_at).await;
    SendOutcome {
        status: None,
        retry_after: None,
        latency: started.elapsed(),
        // Only the error's text: a bus error names the bus and the event type, never a secret.
        error: result.err().map(|e| e.to_string()),
    }
}

/// `base` spread by up to ±10%, so retries of many deliveries do not arrive together.
fn jittered(base: Duration) -> Duration {
    if base.is_zero() {
        return base;
    }
    let f = 0.9 + rand::random::<f64>() * 0.2;
    base.mul_f64(f)
}
