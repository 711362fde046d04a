//! Group commit: the writes of concurrent callers in this process share one transaction, so one
//! fsync makes a whole batch durable instead of one per write. A write is handed to the writer
//! thread, which owns the one writing connection; each time it wakes it takes every write
//! waiting, runs each in a savepoint of one `BEGIN IMMEDIATE` transaction (a write that fails
//! rolls back its own savepoint only), commits once, and only then answers each caller: nothing
//! is acknowledged before it is on disk (`synchronous=FULL` semantics kept), and a failed commit
//! fails every write of its batch. Only a batch of writes that asked for it
//! (`write_unsynced`: the queue's receives and deletes, which a power loss may undo without
//! harm) commits without an fsync. SQLite has no group commit of its own; this is the few lines
//! it takes. One long-lived thread, rather than a blocking-pool task per write, because the
//! hand-offs between threads cost more than the writes themselves.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use rusqlite::Connection;
use spaceport_core::Error;
use tokio::sync::oneshot;

use crate::db::sql_err;

/// Delivers a write's result once its batch ended: `Ok` when it committed, else why not.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write waiting for the next batch: it runs against the batch's transaction and says whether
/// it succeeded (its savepoint kept or rolled back).
type Run = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;

/// A write, and whether it needs its batch fsynced (`write_unsynced`).
struct Job {
    run: Run,
    durable: bool,
}

/// The most writes one batch takes: a bound on how long the first of them waits.
const MAX_BATCH: usize = 512;

/// The way to the writer thread.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Counters>,
}

/// What the writer thread has done since it started (for benchmarks: where a write's time goes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes run in them (each in its savepoint), failed ones included.
    pub writes: u64,
    /// Microseconds the thread spent on batches (running writes and committing).
    pub busy_us: u64,
    /// Of those, microseconds in `COMMIT` (writing the WAL and its fsync).
    pub commit_us: u64,
    /// Of the commits, those of nothing but unsynced writes (no fsync of their own).
    pub unsynced: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    busy_us: AtomicU64,
    commit_us: AtomicU64,
    unsynced: AtomicU64,
}

impl Writer {
    /// Starts the writer thread on `conn`; it ends when the `Writer` is dropped.
    pub(crate) fn start(conn: Connection) -> Result<Writer, Error> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(Counters::default());
        let counted = stats.clone();
        std::thread::Builder::new()
            .name("spaceport-db-writer".into())
            .spawn(move || {
                // What the connection's `synchronous` is now (`configure` opens it FULL).
                let mut full = true;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let began = Instant::now();
                    counted
                        .writes
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    flush(&conn, batch, &counted, &mut full);
                    counted
                        .busy_us
                        .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            })
            .map_err(|e| Error::storage("starting the database writer", e))?;
        Ok(Writer { jobs, stats })
    }

    /// What the thread has done so far.
    pub(crate) fn stats(&self) -> WriterStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WriterStats {
            commits: get(&self.stats.commits),
            writes: get(&self.stats.writes),
            busy_us: get(&self.stats.busy_us),
            commit_us: get(&self.stats.commit_us),
            unsynced: get(&self.stats.unsynced),
        }
    }
}

/// Runs `f` in the next batch; its result once the batch committed.
pub(crate) async fn write<T, F>(writer: &Writer, what: &'static str, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
{
    submit(writer, what, f, true).await
}

/// Runs `f` in the next batch, as `write`, except that a batch of nothing but such writes
/// commits without an fsync (`synchronous=NORMAL` for that transaction: in WAL mode still
/// consistent after a power loss, SQLite's documented guarantee, only possibly rolled back; and
/// the next durable commit's fsync of the same log makes it durable too). For the queue's
/// bookkeeping, on every step's path: receiving and deleting a message. Losing one to a power
/// loss (a process crash loses nothing: the log is in the OS's hands) only makes a message
/// visible again, to a step that finds its work done (at-least-once delivery, as SQS); and
/// anything written after it commits later in the same log, so cannot be durable without it.
pub(crate) async fn write_unsynced<T, F>(
    writer: &Writer,
    what: &'static str,
    f: F,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
{
    submit(writer, what, f, false).await
}

async fn submit<T, F>(writer: &Writer, what: &'static str, f: F, durable: bool) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
{
    let (tx, rx) = oneshot::channel::<Result<T, Error>>();
    let run: Run = Box::new(move |conn| {
        let out = f(conn);
        let ok = out.is_ok();
        let deliver: Deliver = Box::new(move |committed| {
            let result = match committed {
                Ok(()) => out,
                Err(why) => Err(not_committed(what, why)),
            };
            let _ = tx.send(result);
        });
        (ok, deliver)
    });
    if writer.jobs.send(Job { run, durable }).is_err() {
        return Err(not_committed(
            what,
            "the database writer has stopped".into(),
        ));
    }
    rx.await
        .unwrap_or_else(|_| Err(not_committed(what, "its batch could not finish".into())))
}

fn not_committed(what: &'static str, why: String) -> Error {
    Error::Storage {
        context: what.to_string(),
        retryable: true,
        source: Box::new(std::io::Error::other(format!("not committed: {why}"))),
    }
}

/// Runs one statement of the batch's frame, prepared once per connection (each write takes a
/// savepoint and releases it: parsing those again every time shows in the writer's profile).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `batch` in one transaction (see the module's note).
/// `full` is what the connection's `synchronous` is now (FULL, or NORMAL).
fn flush(conn: &Connection, batch: Vec<Job>, stats: &Counters, full: &mut bool) {
    // A write that panicked mid-batch left its transaction open: nothing of it was answered.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    // A batch of nothing but unsynced writes commits without an fsync (`write_unsynced`); any
    // other batch, with one as always.
    let want_full = batch.iter().any(|j| j.durable);
    if want_full != *full {
        let level = if want_full { "FULL" } else { "NORMAL" };
        match conn.pragma_update(None, "synchronous", level) {
            Ok(()) => *full = want_full,
            // Staying FULL is only slower; a durable batch that cannot have it does not run.
            Err(e) if want_full => {
                tracing::warn!(error = %sql_err("setting synchronous=FULL", e), writes = batch.len(), "a write batch could not start");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not set synchronous=NORMAL"),
        }
    }
    let synced = *full;
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::warn!(error = %sql_err("starting a write batch", e), writes = batch.len(), "a write batch could not start");
        // Dropping the jobs answers each caller "not committed" (retryable).
        return;
    }
    let mut delivers = Vec::with_capacity(batch.len());
    let mut broken = None;
    for job in batch {
        if broken.is_some() {
            // Answered "not committed" by being dropped.
            continue;
        }
        if let Err(e) = run_cached(conn, "SAVEPOINT w") {
            broken = Some(e.to_string());
            continue;
        }
        // A write that panics fails its batch (its caller's answer is dropped with it), not the
        // thread every later write needs.
        match std::panic::catch_unwind(AssertUnwindSafe(|| (job.run)(conn))) {
            Ok((ok, deliver)) => {
                delivers.push(deliver);
                let ended = if ok {
                    run_cached(conn, "RELEASE w")
                } else {
                    run_cached(conn, "ROLLBACK TO w").and_then(|()| run_cached(conn, "RELEASE w"))
                };
                if let Err(e) = ended {
                    broken = Some(e.to_string());
                }
            }
            Err(_) => broken = Some("a write in the batch panicked".into()),
        }
    }
    let committed = match broken {
        Some(why) => Err(why),
        None => {
            let began = Instant::now();
            let r = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
            let took = began.elapsed().as_micros() as u64;
            stats.commit_us.fetch_add(took, Ordering::Relaxed);
            if r.is_ok() {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                if !synced {
                    stats.unsynced.fetch_add(1, Ordering::Relaxed);
                }
            }
            r
        }
    };
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for deliver in delivers {
        deliver(committed.clone());
    }
}

#[cfg(test)]
mod tests {
    use crate::LocalDb;
    use spaceport_core::Error;

    #[tokio::test]
    async fn a_write_that_panics_fails_its_batch_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalDb::open(dir.path().join("t.db")).unwrap();
        let create = |c: &rusqlite::Connection| {
            c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)")
                .map_err(|e| crate::db::sql_err("creating", e))
        };
        db.write("creating", create).await.unwrap();
        let err = db
            .write(
                "panicking",
                |c: &rusqlite::Connection| -> Result<(), Error> {
                    c.execute("INSERT INTO t (n) VALUES (1)", []).unwrap();
                    panic!("a bug in one write")
                },
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not committed")
                || err.to_string().contains("could not finish"),
            "{err}"
        );
        db.write("inserting", |c| {
            c.execute("INSERT INTO t (n) VALUES (2)", [])
                .map(drop)
                .map_err(|e| crate::db::sql_err("inserting", e))
        })
        .await
        .unwrap();
        let rows: Vec<i64> = db
            .call(|c| {
                let mut s = c.prepare("SELECT n FROM t").unwrap();
                Ok(s.query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect())
            })
            .await
            .unwrap();
        assert_eq!(rows, vec![2], "the panicking write's row was rolled back");
        // Reads run on read-only connections: a write slipped into one fails.
        let sneaky = db
            .call(|c| {
                c.execute("INSERT INTO t (n) VALUES (3)", [])
                    .map_err(|e| crate::db::sql_err("inserting", e))
            })
            .await;
        assert!(sneaky.is_err());
        assert!(db.writer_stats().commits >= 2);
    }

    #[tokio::test]
    async fn only_a_batch_of_nothing_but_queue_bookkeeping_commits_without_an_fsync() {
        use spaceport_core::ports::{Queue, QueueName};
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let db = LocalDb::open(dir.path().join("t.db")).unwrap();
        let queue = db.queue();
        let before = db.writer_stats();
        queue
            .send(QueueName::PollStatus, "{}", Duration::ZERO)
            .await
            .unwrap();
        let sent = db.writer_stats();
        assert_eq!(sent.commits, before.commits + 1);
        assert_eq!(sent.unsynced, before.unsynced, "a send is durable");
        let got = queue
            .receive(QueueName::PollStatus, 1, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        queue
            .delete(QueueName::PollStatus, &got[0].receipt)
            .await
            .unwrap();
        let settled = db.writer_stats();
        assert_eq!(settled.commits, sent.commits + 2);
        assert_eq!(
            settled.unsynced,
            sent.unsynced + 2,
            "the receive and the delete committed without an fsync"
        );
        // The next durable write is durable again (FULL restored for it), and the bookkeeping is
        // seen by every later reader, another connection included.
        queue
            .send(QueueName::PollStatus, "{}", Duration::ZERO)
            .await
            .unwrap();
        let after = db.writer_stats();
        assert_eq!(after.unsynced, settled.unsynced);
        let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        let left: i64 = other
            .query_row("SELECT COUNT(*) FROM queue_messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            left, 1,
            "the first message was deleted, the second is there"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_commit_together_and_a_failing_one_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalDb::open(dir.path().join("t.db")).unwrap();
        db.write("creating", |c| {
            c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)")
                .map_err(|e| crate::db::sql_err("creating", e))
        })
        .await
        .unwrap();
        let writes: Vec<_> = (0..64i64)
            .map(|n| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.write("inserting", move |c| {
                        c.execute("INSERT INTO t (n) VALUES (?1)", [n])
                            .map_err(|e| crate::db::sql_err("inserting", e))?;
                        // Every eighth write fails after writing: its row must not stay.
                        if n % 8 == 0 {
                            return Err(Error::validation("n", format!("{n} is refused")));
                        }
                        Ok(n)
                    })
                    .await
                })
            })
            .collect();
        let mut ok = vec![];
        for w in writes {
            match w.await.unwrap() {
                Ok(n) => ok.push(n),
                Err(Error::Validation { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(ok.len(), 56);
        let stored: Vec<i64> = db
            .call(|c| {
                let mut s = c.prepare("SELECT n FROM t ORDER BY n").unwrap();
                Ok(s.query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<Vec<i64>, _>>()
                    .unwrap())
            })
            .await
            .unwrap();
        ok.sort();
        assert_eq!(
            stored, ok,
            "each committed write is there, each failed one is not"
        );
        // A later reader (another connection, as another process) sees the same.
        let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        let count: i64 = other
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 56);
    }
}
