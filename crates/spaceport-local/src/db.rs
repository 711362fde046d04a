//! The SQLite file shared by the run store and the queue: one handle per process, opened in WAL
//! mode with a busy timeout so the CLI and the server can use the same file at once. Blocking
//! SQLite calls run on tokio's blocking pool, never on the async worker threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use spaceport_core::Error;
use spaceport_core::ports::QueueName;
use tokio::sync::Notify;

/// How long a connection waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Read-only connections kept open between reads (more are opened while more reads run at once).
const MAX_IDLE_READERS: usize = 8;

/// The schema, one step per `user_version`. Steps are append-only: never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    // 1: runs, idempotency keys, queue messages and dead letters.
    r#"
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        status      TEXT NOT NULL,
        version     INTEGER NOT NULL,
        pipeline    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,   -- Unix ms
        deadline_at INTEGER NOT NULL,   -- Unix ms
        terminal    INTEGER NOT NULL,   -- 1 once the status is terminal
        body        TEXT NOT NULL       -- the whole Run as JSON
    );
    -- Lists are newest first by id (ULIDs sort by creation time): the primary key serves the
    -- unfiltered list, these the filtered ones.
    CREATE INDEX runs_by_status ON runs (status, id DESC);
    CREATE INDEX runs_by_pipeline ON runs (pipeline, id DESC);
    CREATE INDEX runs_overdue ON runs (deadline_at) WHERE terminal = 0;

    CREATE TABLE idempotency_keys (
        key          TEXT PRIMARY KEY,
        run_id       TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE queue_messages (
        id            TEXT PRIMARY KEY,
        queue         TEXT NOT NULL,
        body          TEXT NOT NULL,
        sent_at       INTEGER NOT NULL,  -- Unix ms
        visible_at    INTEGER NOT NULL,  -- Unix ms; hidden until then (delay or visibility timeout)
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt       TEXT               -- set by the latest receive, NULL before the first
    );
    CREATE INDEX queue_messages_due ON queue_messages (queue, visible_at);
    CREATE UNIQUE INDEX queue_messages_receipt ON queue_messages (receipt);

    CREATE TABLE queue_dead_letters (
        id            TEXT PRIMARY KEY,
        queue         TEXT NOT NULL,
        body          TEXT NOT NULL,
        sent_at       INTEGER NOT NULL,
        receive_count INTEGER NOT NULL,
        dead_at       INTEGER NOT NULL
    );
    CREATE INDEX queue_dead_letters_by_queue ON queue_dead_letters (queue, dead_at);
    "#,
    // 2: the sweeper purges idempotency keys by age.
    r#"
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
    "#,
    // 3: the sweeper asks for stalled runs by `Run::stall_from` (Unix ms; NULL for created and
    // terminal runs, so the partial index holds only runs a step is due to move). Existing live
    // runs get it from their JSON: the lease's end, else when they were queued, else created.
    r#"
    ALTER TABLE runs ADD COLUMN stall_at INTEGER;
    UPDATE runs SET stall_at = CAST(ROUND((julianday(COALESCE(
            json_extract(body, '$.job.lease.until'),
            json_extract(body, '$.queued_at'),
            json_extract(body, '$.created_at'))) - 2440587.5) * 86400000.0) AS INTEGER)
        WHERE terminal = 0 AND status <> 'created';
    CREATE INDEX runs_stalled ON runs (stall_at, id) WHERE stall_at IS NOT NULL;
    "#,
    // 4: run events, written in the same transaction as the change they record. `feed` is the
    // commit order (one writer at a time, AUTOINCREMENT never reuses a number): the event feed's
    // cursor. A run's own events are read by (run_id, seq).
    r#"
    CREATE TABLE run_events (
        feed    INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        type    TEXT NOT NULL,
        at      INTEGER NOT NULL,   -- Unix ms
        body    TEXT NOT NULL       -- the RunEvent as JSON
    );
    CREATE UNIQUE INDEX run_events_by_run ON run_events (run_id, seq);
    CREATE INDEX run_events_by_type ON run_events (type, feed);
    "#,
    // 5: webhook deliveries (every attempt kept in the JSON body), with the indexes the delivery
    // log, the sweeper (pending ones due) and the dead-letter list read; and the dispatcher's
    // named cursors.
    r#"
    CREATE TABLE webhook_deliveries (
        id          TEXT PRIMARY KEY,
        run_id      TEXT NOT NULL,
        state       TEXT NOT NULL,
        next_at     INTEGER,            -- Unix ms; pending deliveries only
        created_at  INTEGER NOT NULL,   -- Unix ms
        version     INTEGER NOT NULL,
        body        TEXT NOT NULL       -- the WebhookDelivery as JSON
    ) WITHOUT ROWID;
    CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries (run_id, created_at);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (id) WHERE state = 'dead';
    CREATE TABLE dispatch_cursors (
        name   TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 6: runs and their events belong to a tenant; a tenant's lists and feed read their own
    // indexes. Rows from before tenants are the local tenant's (as `Run::tenant`'s default).
    r#"
    ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'local';
    UPDATE runs SET tenant = COALESCE(json_extract(body, '$.tenant'), 'local');
    CREATE INDEX runs_by_tenant ON runs (tenant, id DESC);
    CREATE INDEX runs_by_tenant_status ON runs (tenant, status, id DESC);
    CREATE INDEX runs_by_tenant_pipeline ON runs (tenant, pipeline, id DESC);
    ALTER TABLE run_events ADD COLUMN tenant TEXT NOT NULL DEFAULT 'local';
    CREATE INDEX run_events_by_tenant ON run_events (tenant, feed);
    "#,
    // 7: what each tenant holds (runs in flight, `Run::stored_bytes`), kept by triggers in the
    // transaction of every run write, so a create's cap check reads one row. Existing runs'
    // bytes come from their JSON: inputs not deleted, and artifacts.
    r#"
    ALTER TABLE runs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET bytes =
        COALESCE((SELECT SUM(json_extract(f.value, '$.size'))
                  FROM json_each(runs.body, '$.inputs') AS slot, json_each(slot.value) AS f
                  WHERE json_extract(f.value, '$.state') <> 'deleted'), 0)
      + COALESCE((SELECT SUM(json_extract(a.value, '$.size'))
                  FROM json_each(runs.body, '$.artifacts') AS a), 0);
    CREATE TABLE tenant_usage (
        tenant          TEXT PRIMARY KEY,
        runs_in_flight  INTEGER NOT NULL,
        stored_bytes    INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO tenant_usage (tenant, runs_in_flight, stored_bytes)
        SELECT tenant, SUM(terminal = 0), SUM(bytes) FROM runs GROUP BY tenant;
    CREATE TRIGGER runs_usage_insert AFTER INSERT ON runs BEGIN
        INSERT INTO tenant_usage (tenant, runs_in_flight, stored_bytes)
            VALUES (NEW.tenant, NEW.terminal = 0, NEW.bytes)
            ON CONFLICT (tenant) DO UPDATE SET
                runs_in_flight = runs_in_flight + excluded.runs_in_flight,
                stored_bytes = stored_bytes + excluded.stored_bytes;
    END;
    CREATE TRIGGER runs_usage_update AFTER UPDATE OF terminal, bytes ON runs BEGIN
        UPDATE tenant_usage SET
            runs_in_flight = runs_in_flight + (NEW.terminal = 0) - (OLD.terminal = 0),
            stored_bytes = stored_bytes + NEW.bytes - OLD.bytes
            WHERE tenant = NEW.tenant;
    END;
    "#,
    // 8: each backend's slot book (holders and waiters, JSON), written with compare-and-swap.
    r#"
    CREATE TABLE backend_slots (
        key      TEXT PRIMARY KEY,
        book     TEXT NOT NULL,
        version  INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 9: a message names its run, so the sweeper can tell a run whose message merely waits in a
    // backlog from one whose message was lost (`Queue::waiting`).
    r#"
    ALTER TABLE queue_messages ADD COLUMN run_id TEXT;
    UPDATE queue_messages SET run_id = json_extract(body, '$.run_id');
    CREATE INDEX queue_messages_by_run ON queue_messages (queue, run_id);
    "#,
    // 10: retention asks for finished runs that still hold their data by when they finished
    // (Unix ms; NULL for live and deleted runs, so the partial index holds only candidates).
    r#"
    ALTER TABLE runs ADD COLUMN retain_from INTEGER;
    UPDATE runs SET retain_from = CAST(ROUND((julianday(json_extract(body, '$.finished_at'))
            - 2440587.5) * 86400000.0) AS INTEGER)
        WHERE terminal = 1 AND json_extract(body, '$.deleted_at') IS NULL
          AND json_extract(body, '$.finished_at') IS NOT NULL;
    CREATE INDEX runs_retained ON runs (retain_from, id) WHERE retain_from IS NOT NULL;
    "#,
    // 11: small objects of the blob store, inline (`blob/inline.rs`); the body column last, so
    // reading the metadata never touches its pages.
    r#"
    CREATE TABLE blobs (
        key           TEXT PRIMARY KEY,
        content_type  TEXT NOT NULL,
        size          INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        body          BLOB NOT NULL
    );
    "#,
    // 12: a run's usage changes only when it ends or its stored bytes change, not on each of the
    // several writes every run takes (which all name both columns).
    r#"
    DROP TRIGGER runs_usage_update;
    CREATE TRIGGER runs_usage_update AFTER UPDATE OF terminal, bytes ON runs
        WHEN NEW.terminal IS NOT OLD.terminal OR NEW.bytes IS NOT OLD.bytes BEGIN
        UPDATE tenant_usage SET
            runs_in_flight = runs_in_flight + (NEW.terminal = 0) - (OLD.terminal = 0),
            stored_bytes = stored_bytes + NEW.bytes - OLD.bytes
            WHERE tenant = NEW.tenant;
    END;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// A handle on the SQLite file; cheap to clone. [`LocalDb::store`] and [`LocalDb::queue`] share it.
#[derive(Clone)]
pub struct LocalDb {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Hands writes to the writer thread, which owns the one writing connection and runs them
    /// in batches (`commit.rs`); the thread ends when the last handle is dropped.
    pub(crate) writes: crate::commit::Writer,
    /// Read-only connections for `call`, so a read never waits behind a batch's fsync: WAL lets
    /// readers run beside the writer, each seeing the last commit when it starts.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// Poked by `send` (and visibility changes) in this process, one per queue.
    pub(crate) notify: [Notify; QueueName::ALL.len()],
}

impl std::fmt::Debug for LocalDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDb")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl LocalDb {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// Blocking; call it at start-up or inside `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<LocalDb, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::files::private_dir_all(parent)?;
        }
        if !path.exists() {
            // SQLite gives its WAL and shared-memory files the database file's mode.
            crate::files::create_private_file(&path)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| sql_err(format!("opening {}", path.display()), e))?;
        configure(&conn).map_err(|e| sql_err("configuring the database", e))?;
        migrate(&mut conn)?;
        let writes = crate::commit::Writer::start(conn)?;
        Ok(LocalDb {
            inner: Arc::new(Inner {
                writes,
                readers: Mutex::default(),
                path,
                notify: Default::default(),
            }),
        })
    }

    /// A new read-only connection on the file.
    pub(crate) fn open_reader(&self) -> Result<Connection, Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.inner.path, flags)
            .map_err(|e| sql_err(format!("opening {}", self.inner.path.display()), e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sql_err("configuring a reading connection", e))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// What this handle's writer thread has done since it opened the file: transactions
    /// committed (each a group of writes sharing one fsync), writes, time busy; for benchmarks.
    pub fn writer_stats(&self) -> crate::WriterStats {
        self.inner.writes.stats()
    }

    /// Wakes this process's receivers waiting on `queue` (a message was just committed to it).
    pub(crate) fn wake(&self, queue: QueueName) {
        self.inner.notify[crate::queue::slot(queue)].notify_waiters();
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The run store on this file.
    pub fn store(&self) -> crate::SqliteStore {
        crate::SqliteStore::new(self.clone())
    }

    /// The step queues on this file, each dead-lettering after the default number of receives.
    pub fn queue(&self) -> crate::SqliteQueue {
        crate::SqliteQueue::new(self.clone())
    }

    /// Whether the file answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), Error> {
        self.call(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| sql_err("pinging the database", e))
        })
        .await
    }

    /// Runs the read `f` on a read-only connection on the blocking pool (writes go through
    /// `write`: a write here fails, the connection being read-only).
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = db
                .inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => db.open_reader()?,
            };
            let out = f(&mut conn);
            // A read that panicked drops its connection; one left inside a transaction is not
            // pooled either (it would pin an old snapshot).
            if conn.is_autocommit() {
                let mut pool = db.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < MAX_IDLE_READERS {
                    pool.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| Error::Internal(format!("a database task failed: {e}")))?
    }

    /// Runs `f` in a transaction that takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// read-then-write sequences are atomic across processes; concurrent writes of this process
    /// share one transaction and one fsync (`commit.rs`), each in its own savepoint.
    pub(crate) async fn write<T, F>(&self, what: &'static str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        crate::commit::write(&self.inner.writes, what, f).await
    }

    /// `write`, committed without an fsync when its batch holds nothing else
    /// (`commit::write_unsynced`: only for a write a power loss may undo without harm).
    pub(crate) async fn write_unsynced<T, F>(&self, what: &'static str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        crate::commit::write_unsynced(&self.inner.writes, what, f).await
    }
}

/// Prepared statements each connection keeps (rusqlite's default of 16 is fewer than the store,
/// queue and blob statements one connection runs: a statement pushed out is parsed again).
const STATEMENT_CACHE: usize = 64;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL: readers never block the writer, and several processes can share the file.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode");
    }
    // FULL: every commit is fsynced to the WAL before it returns. NORMAL would already survive a
    // killed process (the WAL is in the OS page cache), but not a power cut or kernel crash; a run
    // or message we acknowledged must survive both; group commit (`commit.rs`) shares each fsync.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each write of a group commit runs in a savepoint, whose journal (the pages it changed, as
    // they were) SQLite otherwise spills to temp files past 64 KiB: more bytes written than
    // the WAL itself. In memory it is a copy; it never outlives the batch.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_err("starting the schema migration", e))?;
    let current: usize = tx
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| sql_err("reading the schema version", e))? as usize;
    if current > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "the database has schema version {current}, newer than this build's {SCHEMA_VERSION}"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(step)
            .map_err(|e| sql_err(format!("applying schema migration {}", i + 1), e))?;
    }
    if current < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION as i64)
            .map_err(|e| sql_err("writing the schema version", e))?;
    }
    tx.commit()
        .map_err(|e| sql_err("committing the schema migration", e))
}

/// A SQLite error as a storage error; lock contention is retryable, the rest is not.
pub(crate) fn sql_err(context: impl Into<String>, e: rusqlite::Error) -> Error {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    Error::Storage {
        context: context.into(),
        retryable,
        source: Box::new(e),
    }
}

/// Milliseconds since the Unix epoch of `t`.
pub(crate) fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/spaceport.db");
        drop(LocalDb::open(&path).unwrap());
        let db = LocalDb::open(&path).unwrap();
        let conn = db.open_reader().unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(LocalDb::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = LocalDb::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn migration_3_gives_live_runs_of_an_older_file_their_stall_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // A file at schema 2, with runs as that build wrote them.
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..2] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        let insert = |id: &str, status: &str, terminal: bool, body: serde_json::Value| {
            conn.execute(
                "INSERT INTO runs (id, status, version, pipeline, created_at, deadline_at, terminal, body)
                 VALUES (?1, ?2, 1, 'vggt', 0, 0, ?3, ?4)",
                rusqlite::params![id, status, terminal, body.to_string()],
            )
            .unwrap();
        };
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        insert(
            "leased",
            "running",
            false,
            serde_json::json!({"created_at": "2026-01-01T00:00:00Z", "queued_at": "2026-01-01T00:00:01Z",
                "job": {"lease": {"holder": "w", "until": "2026-01-01T00:05:00.123456789Z"}}}),
        );
        insert(
            "queued",
            "queued",
            false,
            serde_json::json!({"created_at": "2026-01-01T00:00:00Z", "queued_at": "2026-01-01T00:00:02.5Z", "job": null}),
        );
        insert(
            "created",
            "created",
            false,
            serde_json::json!({"created_at": "2026-01-01T00:00:00Z"}),
        );
        insert(
            "done",
            "succeeded",
            true,
            serde_json::json!({"created_at": "2026-01-01T00:00:00Z"}),
        );
        drop(conn);

        let db = LocalDb::open(&path).unwrap();
        let conn = db.open_reader().unwrap();
        let stall = |id: &str| -> Option<i64> {
            conn.query_row("SELECT stall_at FROM runs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
        };
        assert_eq!(
            stall("leased"),
            Some(t("2026-01-01T00:05:00.123Z")),
            "the lease's end"
        );
        assert_eq!(
            stall("queued"),
            Some(t("2026-01-01T00:00:02.5Z")),
            "when it was queued"
        );
        assert_eq!(
            stall("created"),
            None,
            "no step is due to move a created run"
        );
        assert_eq!(stall("done"), None, "nor a finished one");
    }

    #[test]
    fn migrations_6_and_7_give_older_runs_the_local_tenant_and_count_their_usage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..5] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        let insert = |id: &str, terminal: bool, body: serde_json::Value| {
            conn.execute(
                "INSERT INTO runs (id, status, version, pipeline, created_at, deadline_at, terminal, body)
                 VALUES (?1, 'queued', 1, 'vggt', 0, 0, ?2, ?3)",
                rusqlite::params![id, terminal, body.to_string()],
            )
            .unwrap();
        };
        let file = |size: u64, state: &str| serde_json::json!({"size": size, "state": state});
        insert(
            "live",
            false,
            serde_json::json!({"inputs": {"images": [file(100, "landed"), file(20, "pending")]},
                "artifacts": [{"size": 7}]}),
        );
        insert(
            "gone",
            true,
            serde_json::json!({"inputs": {"images": [file(500, "deleted")]}, "artifacts": []}),
        );
        drop(conn);

        let db = LocalDb::open(&path).unwrap();
        let conn = db.open_reader().unwrap();
        let row: (i64, i64) = conn
            .query_row(
                "SELECT runs_in_flight, stored_bytes FROM tenant_usage WHERE tenant = 'local'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(row, (1, 127));
        let tenants: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM runs WHERE tenant = 'local'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tenants, 2);
    }
}
