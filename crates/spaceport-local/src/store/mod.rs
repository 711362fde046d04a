//! `RunStore` on SQLite: the whole run as JSON plus the columns lists and the sweeper filter on.
//! Every write of an existing run is one conditional `UPDATE … WHERE id = ? AND version = ?`,
//! in one transaction with the events the change recorded.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use spaceport_core::limits::Usage;
pub use spaceport_core::ports::{DEFAULT_PAGE, MAX_PAGE};
use spaceport_core::ports::{
    FeedPage, FeedQuery, Idempotency, InsertOutcome, ListQuery, QueueName, RunPage, RunStore,
    SlotBook, StallCursor, StalledPage, encode_cursor,
};
use spaceport_core::{Error, Run, RunEvent, RunId};

use crate::db::{LocalDb, millis, sql_err};

/// Runs and idempotency keys in the SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) db: LocalDb,
    /// Whether `update_and_send` writes its message to this file's queue (`with_outbox`).
    outbox: bool,
}

impl SqliteStore {
    /// A page of runs by a time column and id (`sql` takes before, after-time, after-id,
    /// limit and selects time, id, body). The cursor comes from the rows, so a run that does
    /// not decode is passed over (logged) without ending the page early.
    async fn page_by_time(
        &self,
        sql: &'static str,
        doing: &'static str,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<StalledPage, Error> {
        // Before every run: stall times are Unix ms, ids sort after "".
        let (after_ms, after_id) = after
            .map(|c| (c.at_ms, c.id.as_str().to_owned()))
            .unwrap_or((i64::MIN, String::new()));
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(sql)
                    .map_err(|e| sql_err(doing, e))?;
                let rows = stmt
                    .query_map(
                        params![millis(before), after_ms, after_id, limit as i64],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
                    )
                    .map_err(|e| sql_err(doing, e))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(|e| sql_err(doing, e))?;
                let last = rows.last().and_then(|(at, id, _)| {
                    Some(StallCursor {
                        at_ms: *at,
                        id: RunId::parse(id).ok()?,
                    })
                });
                let runs = rows
                    .iter()
                    .filter_map(|(_, id, body)| match from_json(body) {
                        Ok(run) => Some(run),
                        Err(e) => {
                            tracing::warn!(run = %id, error = %e, "a stored run does not decode; passed over");
                            None
                        }
                    })
                    .collect();
                Ok(StalledPage::of_rows(runs, rows.len(), last, limit))
            })
            .await
    }

    /// The conditional write of a run, with the step message `then` in its transaction.
    async fn write_update(
        &self,
        run: &Run,
        expected_version: u64,
        then: Option<(QueueName, String)>,
    ) -> Result<(), Error> {
        let run = run.clone();
        // Encoded here, not on the writer thread every write waits for.
        let (body, events) = (to_json(&run)?, crate::events::encode(&run)?);
        self.db
            .write("updating a run", move |conn| {
                update_in(conn, &run, expected_version, &body, &events)?;
                match &then {
                    Some((queue, message)) => {
                        crate::queue::insert_message(conn, *queue, message, Duration::ZERO)
                            .map(drop)
                    }
                    None => Ok(()),
                }
            })
            .await
    }

    /// The store on an open database.
    pub fn new(db: LocalDb) -> Self {
        SqliteStore { db, outbox: false }
    }

    /// The store, with `update_and_send` writing its message to this same file's queue tables
    /// in the update's transaction: for a stack whose queue is `SqliteQueue` on this file.
    pub fn with_outbox(mut self) -> Self {
        self.outbox = true;
        self
    }

    /// The database handle (shared with the queue).
    pub fn db(&self) -> &LocalDb {
        &self.db
    }
}

const PURGE_KEYS_SQL: &str = "DELETE FROM idempotency_keys WHERE created_at < ?1";

const OVERDUE_SQL: &str = "SELECT id FROM runs WHERE terminal = 0 AND deadline_at <= ?1
                           ORDER BY deadline_at LIMIT ?2";

const STALLED_SQL: &str = "SELECT stall_at, id, body FROM runs
    WHERE stall_at IS NOT NULL AND stall_at < ?1 AND (stall_at, id) > (?2, ?3)
    ORDER BY stall_at, id LIMIT ?4";

const RETAINED_SQL: &str = "SELECT retain_from, id, body FROM runs
    WHERE retain_from IS NOT NULL AND retain_from < ?1 AND (retain_from, id) > (?2, ?3)
    ORDER BY retain_from, id LIMIT ?4";

/// When a finished run that still holds its data finished, as the `retain_from` column stores it.
fn retain_from(run: &Run) -> Option<i64> {
    if !run.status.is_terminal() || run.deleted_at.is_some() {
        return None;
    }
    run.finished_at.map(millis)
}

/// `Run::stall_from` as the `stall_at` column stores it.
fn stall_at(run: &Run) -> Option<i64> {
    run.stall_from().map(millis)
}

/// The list query for the filters present; parameters are numbered in the order tenant, status,
/// pipeline, cursor id, limit. Built from fixed fragments only: every value is bound.
fn list_sql(tenant: bool, status: bool, pipeline: bool, after: bool) -> String {
    let mut sql = String::from("SELECT body FROM runs WHERE 1 = 1");
    let mut n = 0;
    for (present, clause) in [
        (tenant, "tenant ="),
        (status, "status ="),
        (pipeline, "pipeline ="),
        (after, "id <"),
    ] {
        if present {
            n += 1;
            sql.push_str(&format!(" AND {clause} ?{n}"));
        }
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", n + 1));
    sql
}

fn to_json(run: &Run) -> Result<String, Error> {
    serde_json::to_string(run).map_err(|e| Error::Internal(format!("encoding run {}: {e}", run.id)))
}

/// Decodes a stored run. One that does not decode (a job record of the wrong shape, say) is an
/// error naming the run, never a default: a default would silently drop a live lease.
fn from_json(body: &str) -> Result<Run, Error> {
    serde_json::from_str(body).map_err(|e| {
        let id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "(no id)".into());
        Error::Storage {
            context: format!("decoding stored run {id}"),
            retryable: false,
            source: Box::new(e),
        }
    })
}

fn get_in(tx: &rusqlite::Connection, id: &str) -> Result<Option<Run>, Error> {
    let body: Option<String> = tx
        .query_row("SELECT body FROM runs WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(|e| sql_err("reading a run", e))?;
    body.as_deref().map(from_json).transpose()
}

/// The columns an update may set besides `version` and `body`: each read by an index or a
/// trigger. Not `pipeline` (or `tenant`, `created_at`): a run keeps them from its insert.
const INDEXED: [&str; 6] = [
    "status",
    "deadline_at",
    "terminal",
    "stall_at",
    "bytes",
    "retain_from",
];

/// `INDEXED`'s values for `run`, in that order.
fn indexed_values(run: &Run) -> [rusqlite::types::Value; 6] {
    use rusqlite::types::Value;
    let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    [
        Value::Text(run.status.as_str().to_string()),
        Value::Integer(millis(run.deadline_at)),
        Value::Integer(run.status.is_terminal().into()),
        opt(stall_at(run)),
        Value::Integer(run.stored_bytes() as i64),
        opt(retain_from(run)),
    ]
}

/// The conditional write of `update` (with its encoded body and events) in the caller's
/// transaction. Of `INDEXED`, only the columns whose value changed are named in the `UPDATE`:
/// SQLite rewrites every index of a column named in SET, even to the same value, and those
/// rewrites were three quarters of the log pages a batch of claims and heartbeats committed
/// (measured: 13 updates, 48 pages naming them all, 12 naming none). The row is read first in
/// the same transaction (its page is about to be written anyway); the SQL is built from fixed
/// fragments, every value bound.
fn update_in(
    conn: &rusqlite::Connection,
    run: &Run,
    expected_version: u64,
    body: &str,
    events: &crate::events::Encoded,
) -> Result<(), Error> {
    use rusqlite::types::Value;
    let stored = conn
        .prepare_cached(
            "SELECT version, status, deadline_at, terminal, stall_at, bytes, retain_from
             FROM runs WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([run.id.as_str()], |r| {
                let version: i64 = r.get(0)?;
                let old = (1..=INDEXED.len())
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<Value>>>()?;
                Ok((version, old))
            })
            .optional()
        })
        .map_err(|e| sql_err("reading a run to update", e))?;
    let Some((version, old)) = stored else {
        return Err(Error::NotFound {
            what: "run",
            id: run.id.to_string(),
        });
    };
    if version != expected_version as i64 {
        return Err(Error::VersionConflict {
            id: run.id.to_string(),
            expected: expected_version,
        });
    }
    let mut sql = String::from("UPDATE runs SET version = ?1, body = ?2");
    let mut values = vec![
        Value::Integer(run.version as i64),
        Value::Text(body.to_string()),
    ];
    for ((column, new), old) in INDEXED.iter().zip(indexed_values(run)).zip(old) {
        if new != old {
            values.push(new);
            sql.push_str(&format!(", {column} = ?{}", values.len()));
        }
    }
    values.push(Value::Text(run.id.to_string()));
    sql.push_str(&format!(" WHERE id = ?{}", values.len()));
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
        .map_err(|e| sql_err("updating a run", e))?;
    crate::events::write(conn, events)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn insert(
        &self,
        run: &Run,
        idempotency: Option<&Idempotency>,
    ) -> Result<InsertOutcome, Error> {
        let run = run.clone();
        let idem = idempotency.cloned();
        // Encoded here, not on the writer thread every write waits for.
        let (body, events) = (to_json(&run)?, crate::events::encode(&run)?);
        self.db
            .write("inserting a run", move |tx| {
                if let Some(idem) = &idem {
                    let seen: Option<(String, String)> = tx
                        .query_row(
                            "SELECT run_id, request_hash FROM idempotency_keys WHERE key = ?1",
                            [&idem.key],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(|e| sql_err("reading an idempotency key", e))?;
                    if let Some((run_id, hash)) = seen {
                        if hash != idem.request_hash {
                            return Err(Error::Conflict(format!(
                                "Idempotency-Key {:?} was already used with a different request body",
                                idem.key
                            )));
                        }
                        let existing = get_in(tx, &run_id)?.ok_or_else(|| {
                            Error::Internal(format!(
                                "idempotency key {:?} names run {run_id}, which is gone",
                                idem.key
                            ))
                        })?;
                        return Ok(InsertOutcome::Existing(Box::new(existing)));
                    }
                }
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO runs (id, status, version, pipeline, created_at, deadline_at, terminal, body, stall_at, tenant, bytes, retain_from)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (id) DO NOTHING",
                    )
                    .and_then(|mut stmt| stmt.execute(params![
                            run.id.as_str(),
                            run.status.as_str(),
                            run.version as i64,
                            run.pipeline,
                            millis(run.created_at),
                            millis(run.deadline_at),
                            run.status.is_terminal(),
                            body,
                            stall_at(&run),
                            run.tenant,
                            run.stored_bytes() as i64,
                            retain_from(&run),
                        ]))
                    .map_err(|e| sql_err("inserting a run", e))?;
                if inserted == 0 {
                    return Err(Error::Conflict(format!("run {} already exists", run.id)));
                }
                crate::events::write(tx, &events)?;
                if let Some(idem) = &idem {
                    tx.execute(
                        "INSERT INTO idempotency_keys (key, run_id, request_hash, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![idem.key, run.id.as_str(), idem.request_hash, millis(Utc::now())],
                    )
                    .map_err(|e| sql_err("recording an idempotency key", e))?;
                }
                Ok(InsertOutcome::Inserted)
            })
            .await
    }

    async fn get(&self, id: &RunId) -> Result<Option<Run>, Error> {
        let id = id.clone();
        self.db
            .call(move |conn| {
                let body: Option<String> = conn
                    .prepare_cached("SELECT body FROM runs WHERE id = ?1")
                    .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
                    .map_err(|e| sql_err("reading a run", e))?;
                body.as_deref().map(from_json).transpose()
            })
            .await
    }

    async fn update(&self, run: &Run, expected_version: u64) -> Result<(), Error> {
        self.write_update(run, expected_version, None).await
    }

    async fn update_and_send(
        &self,
        run: &Run,
        expected_version: u64,
        queue: QueueName,
        message: &str,
    ) -> Result<bool, Error> {
        if !self.outbox {
            self.update(run, expected_version).await?;
            return Ok(false);
        }
        self.write_update(run, expected_version, Some((queue, message.to_owned())))
            .await?;
        self.db.wake(queue);
        Ok(true)
    }

    async fn list(&self, query: &ListQuery) -> Result<RunPage, Error> {
        let limit = query.page_size();
        let after = query.after()?;
        let status = query.status.map(|s| s.as_str());
        let pipeline = query.pipeline.clone();
        let tenant = query.tenant.clone();
        self.db
            .call(move |conn| {
                let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
                let sql = list_sql(
                    tenant.is_some(),
                    status.is_some(),
                    pipeline.is_some(),
                    after.is_some(),
                );
                if let Some(tenant) = tenant {
                    args.push(Box::new(tenant));
                }
                if let Some(status) = status {
                    args.push(Box::new(status));
                }
                if let Some(pipeline) = pipeline {
                    args.push(Box::new(pipeline));
                }
                if let Some(after) = after {
                    args.push(Box::new(after.as_str().to_owned()));
                }
                args.push(Box::new((limit + 1) as i64));
                let mut stmt = conn
                    .prepare_cached(&sql)
                    .map_err(|e| sql_err("listing runs", e))?;
                let bodies = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        r.get::<_, String>(0)
                    })
                    .map_err(|e| sql_err("listing runs", e))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(|e| sql_err("listing runs", e))?;
                let mut runs = bodies
                    .iter()
                    .map(|b| from_json(b))
                    .collect::<Result<Vec<_>, _>>()?;
                let next_cursor = if runs.len() > limit {
                    runs.truncate(limit);
                    runs.last().map(|r| encode_cursor(&r.id))
                } else {
                    None
                };
                Ok(RunPage { runs, next_cursor })
            })
            .await
    }

    async fn overdue(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<RunId>, Error> {
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(OVERDUE_SQL)
                    .map_err(|e| sql_err("finding overdue runs", e))?;
                let ids = stmt
                    .query_map(params![millis(now), limit as i64], |r| {
                        r.get::<_, String>(0)
                    })
                    .map_err(|e| sql_err("finding overdue runs", e))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(|e| sql_err("finding overdue runs", e))?;
                ids.iter()
                    .map(|id| {
                        RunId::parse(id).map_err(|_| {
                            Error::Internal(format!("a stored run id {id:?} is malformed"))
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn stalled(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<StalledPage, Error> {
        self.page_by_time(STALLED_SQL, "finding stalled runs", before, after, limit)
            .await
    }

    async fn retained(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<Option<StalledPage>, Error> {
        self.page_by_time(RETAINED_SQL, "finding retained runs", before, after, limit)
            .await
            .map(Some)
    }

    async fn events(&self, id: &RunId, after: u64, limit: usize) -> Result<Vec<RunEvent>, Error> {
        let id = id.clone();
        self.db
            .call(move |conn| crate::events::of_run(conn, &id, after, limit))
            .await
    }

    async fn usage(&self, tenant: &str) -> Result<Usage, Error> {
        let tenant = tenant.to_owned();
        self.db
            .call(move |conn| {
                let row: Option<(i64, i64)> = conn
                    .query_row(
                        "SELECT runs_in_flight, stored_bytes FROM tenant_usage WHERE tenant = ?1",
                        [&tenant],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| sql_err("reading a tenant's usage", e))?;
                let (runs, bytes) = row.unwrap_or_default();
                Ok(Usage {
                    runs_in_flight: runs.max(0) as u64,
                    stored_bytes: bytes.max(0) as u64,
                })
            })
            .await
    }

    async fn feed(&self, query: &FeedQuery) -> Result<FeedPage, Error> {
        let query = query.clone();
        self.db
            .call(move |conn| crate::events::feed(conn, &query))
            .await
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        self.db
            .write("purging idempotency keys", move |conn| {
                conn.execute(PURGE_KEYS_SQL, [millis(before)])
                    .map(|n| n as u64)
                    .map_err(|e| sql_err("purging idempotency keys", e))
            })
            .await
    }

    async fn slots(&self, key: &str) -> Result<(SlotBook, u64), Error> {
        self.read_slot_book(key).await
    }

    async fn put_slots(&self, key: &str, book: &SlotBook, expected: u64) -> Result<(), Error> {
        self.write_slot_book(key, book, expected).await
    }

    async fn all_slots(&self) -> Result<Vec<(String, SlotBook)>, Error> {
        self.all_slot_books().await
    }
}

#[cfg(test)]
mod tests;
