//! The run store port: runs with conditional writes, idempotency keys, lists, the sweeper's
//! queries (overdue, stalled) and the run events written with each change.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::event::{EventType, RunEvent};
use crate::ids::RunId;
use crate::run::Run;
use crate::status::Status;

/// An Idempotency-Key and the hash of the request body it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// What inserting a run under an idempotency key did.
#[derive(Debug)]
pub enum InsertOutcome {
    /// The run was stored.
    Inserted,
    /// The key was used before with the same body: here is that run; nothing was stored.
    Existing(Box<Run>),
}

/// A page of runs, newest first.
#[derive(Debug, Default)]
pub struct RunPage {
    pub runs: Vec<Run>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/runs`.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// Only this tenant's runs; `None` for every tenant's (the operator's view).
    pub tenant: Option<String>,
    pub status: Option<Status>,
    pub pipeline: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// Runs per page when a list names no limit.
pub const DEFAULT_PAGE: usize = 20;
/// The most runs one page holds.
pub const MAX_PAGE: usize = 100;

impl ListQuery {
    /// The page size: the asked limit, `DEFAULT_PAGE` for none, at most `MAX_PAGE`.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        }
    }

    /// The run id the cursor points after; a malformed cursor is a validation error on `cursor`.
    pub fn after(&self) -> Result<Option<RunId>, Error> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

/// An opaque list cursor for the page ending at `id` (base64url, so clients do not parse it).
pub fn encode_cursor(id: &RunId) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_str())
}

fn decode_cursor(cursor: &str) -> Result<RunId, Error> {
    use base64::Engine;
    let bad = || Error::validation("cursor", "the cursor is malformed; pass back a next_cursor");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    RunId::parse(&text).map_err(|_| bad())
}

/// Who holds a backend's slots and who waits for one, first come first served: one record per
/// backend (`space:facebook/vggt`, `onnx:models/vggt.onnx`), written with compare-and-swap so
/// every process sharing the store keeps the same limit. The rules live in the steps; stores
/// only keep the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotBook {
    /// Runs that hold a slot (their job is at the backend, or about to be).
    pub holders: Vec<String>,
    /// Runs waiting for a slot, in arrival order.
    pub waiters: Vec<String>,
}

/// Where a page of stalled runs ended: the last run's stall time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StallCursor {
    /// `Run::stall_from` of the last run of the page, in Unix milliseconds.
    pub at_ms: i64,
    pub id: RunId,
}

/// A page of stalled runs, oldest stall first.
#[derive(Debug, Default)]
pub struct StalledPage {
    pub runs: Vec<Run>,
    /// Pass back as `after` for the next page; `None` on the last page.
    pub next: Option<StallCursor>,
}

impl StalledPage {
    /// A page of the `runs` that decoded out of `read` rows read with `limit`, `last` being the
    /// last row's key: the cursor after it when the page is full. Taken from the rows, not the
    /// runs, so a row that does not decode is passed over without ending the paging early.
    pub fn of_rows(
        runs: Vec<Run>,
        read: usize,
        last: Option<StallCursor>,
        limit: usize,
    ) -> StalledPage {
        let next = if read >= limit.max(1) { last } else { None };
        StalledPage { runs, next }
    }
}

/// Filters of the event feed (`GET /v1/events`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedQuery {
    /// Only the events of this tenant's runs; `None` for every run's (the dispatcher's view).
    pub tenant: Option<String>,
    /// Where the last page ended (`FeedPage::next_cursor`); `None` from the beginning.
    pub after: Option<String>,
    /// Only these types; empty for every type.
    pub types: Vec<EventType>,
    /// Events per page (`ListQuery`'s limits apply).
    pub limit: usize,
}

/// A page of the event feed, in commit order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedPage {
    pub events: Vec<RunEvent>,
    /// The cursor after the last event of this page; `None` when the page is empty (keep the
    /// cursor you have and ask again later).
    pub next_cursor: Option<String>,
    /// Whether more events were waiting when the page was read.
    pub has_more: bool,
}

/// How long an Idempotency-Key is remembered (Stripe keeps keys for 24 h; clients retry within
/// hours, not days).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Durable storage of runs. Every write of an existing run is conditional on its version.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a new run. With `idempotency`, a key already used with the same request hash returns
    /// `Existing` and a different hash fails with `Error::Conflict`; nothing is written then.
    async fn insert(
        &self,
        run: &Run,
        idempotency: Option<&Idempotency>,
    ) -> Result<InsertOutcome, Error>;

    /// Reads a run.
    async fn get(&self, id: &RunId) -> Result<Option<Run>, Error>;

    /// Writes `run` only if the stored version is still `expected_version` (and so its status is
    /// still the one the change was decided on); otherwise `Error::VersionConflict`. The events
    /// the change recorded (`Run::events_to_write`) are written in the same transaction: a
    /// change that loses the race leaves no event. `insert` writes a new run's events likewise.
    async fn update(&self, run: &Run, expected_version: u64) -> Result<(), Error>;

    /// `update`, and the step message `body` sent to `queue` in the same transaction where this
    /// store holds the queue too (the embedded stack's one SQLite file: a transactional outbox,
    /// so the change and the message that moves the run on land together or not at all); `true`
    /// when it sent it. Elsewhere it only updates and says `false`: the caller sends the message
    /// itself after the update (one lost between the two is re-sent by the sweeper).
    async fn update_and_send(
        &self,
        run: &Run,
        expected_version: u64,
        queue: super::QueueName,
        body: &str,
    ) -> Result<bool, Error> {
        let _ = (queue, body);
        self.update(run, expected_version).await?;
        Ok(false)
    }

    /// Runs newest first, filtered, one page at a time.
    async fn list(&self, query: &ListQuery) -> Result<RunPage, Error>;

    /// Non-terminal runs whose deadline is at or before `now` (for the sweeper).
    async fn overdue(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<RunId>, Error>;

    /// Live runs past `created` whose `Run::stall_from` is before `before` (their lease lapsed
    /// then, or they have had none since they were queued), ordered by that time and then id,
    /// at most `limit`, after `after`. Backed by an index, so the sweeper pages through every
    /// stalled run however many there are.
    async fn stalled(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<StalledPage, Error>;

    /// Finished runs that still hold their inputs and artifacts (not deleted), finished before
    /// `before`, ordered by when they finished and then id, at most `limit`, after `after`: what
    /// retention may delete. `None` when the store keeps no such index (DynamoDB: there the
    /// bucket's lifecycle rules expire the objects instead).
    async fn retained(
        &self,
        _before: DateTime<Utc>,
        _after: Option<&StallCursor>,
        _limit: usize,
    ) -> Result<Option<StalledPage>, Error> {
        Ok(None)
    }

    /// The run's events after sequence number `after`, in order, at most `limit`.
    async fn events(&self, id: &RunId, after: u64, limit: usize) -> Result<Vec<RunEvent>, Error>;

    /// Every run's events in the order their changes committed, one page at a time.
    async fn feed(&self, query: &FeedQuery) -> Result<FeedPage, Error>;

    /// What `tenant` holds now: its runs in flight and `Run::stored_bytes` summed over its runs.
    async fn usage(&self, tenant: &str) -> Result<crate::limits::Usage, Error>;

    /// Forgets idempotency keys first used before `before` (the runs stay); returns how many.
    /// Stores whose keys expire by themselves (DynamoDB's TTL) keep this default, which does
    /// nothing.
    async fn purge_idempotency_keys(&self, _before: DateTime<Utc>) -> Result<u64, Error> {
        Ok(0)
    }

    /// The slot book of backend `key` and its version (an empty book at 0 when none was written).
    async fn slots(&self, key: &str) -> Result<(SlotBook, u64), Error>;

    /// Writes the slot book of `key` if its version is still `expected` (the new version is
    /// `expected + 1`); `VersionConflict` when another write came first.
    async fn put_slots(&self, key: &str, book: &SlotBook, expected: u64) -> Result<(), Error>;

    /// Every backend's slot book that has holders or waiters, by key (for `/readyz`).
    async fn all_slots(&self) -> Result<Vec<(String, SlotBook)>, Error>;
}
