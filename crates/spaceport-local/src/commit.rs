//! Group commit: the writes of concurrent callers in this process share one transaction, so one
//! fsync makes a whole batch durable instead of one per write. A write is handed to the writer
//! thread, which owns the one writing connection; each time it wakes it takes every write
//! waiting, runs each in a savepoint of one `BEGIN IMMEDIATE` transaction (a write that fails
//! rolls back its own savepoint only), commits once, and only then answers each caller: nothing
//! is acknowledged before it is on disk (`synchronous=FULL` semantics kept), and a failed commit
//! fails every write of its batch. SQLite has no group commit of its own; this is the few lines
//! it takes. One long-lived thread, rather than a blocking-pool task per write, because the
//! hand-offs between threads cost more than the writes themselves.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use rusqlite::Connection;
use spaceport_core::Error;
use tokio::sync::oneshot;

use crate::db::sql_err;

/// Delivers a write's result once its batch ended: `Ok` when it committed, else why not.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write waiting for the next batch: it runs against the batch's transaction and says whether
/// it succeeded (its savepoint kept or rolled back).
type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;

/// The most writes one batch takes: a bound on how long the first of them waits.
const MAX_BATCH: usize = 512;

/// The way to the writer thread.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`; it ends when the `Writer` is dropped.
    pub(crate) fn start(conn: Connection) -> Result<Writer, Error> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("spaceport-db-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    flush(&conn, batch);
                }
            })
            .map_err(|e| Error::storage("starting the database writer", e))?;
        Ok(Writer { jobs })
    }
}

/// Runs `f` in the next batch; its result once the batch committed.
pub(crate) async fn write<T, F>(writer: &Writer, what: &'static str, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
{
    let (tx, rx) = oneshot::channel::<Result<T, Error>>();
    let job: Job = Box::new(move |conn| {
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
    if writer.jobs.send(job).is_err() {
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

/// Runs `batch` in one transaction (see the module's note).
fn flush(conn: &Connection, batch: Vec<Job>) {
    // A write that panicked mid-batch left its transaction open: nothing of it was answered.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
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
        if let Err(e) = conn.execute_batch("SAVEPOINT w") {
            broken = Some(e.to_string());
            continue;
        }
        // A write that panics fails its batch (its caller's answer is dropped with it), not the
        // thread every later write needs.
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))) {
            Ok((ok, deliver)) => {
                delivers.push(deliver);
                let end = if ok {
                    "RELEASE w"
                } else {
                    "ROLLBACK TO w; RELEASE w"
                };
                if let Err(e) = conn.execute_batch(end) {
                    broken = Some(e.to_string());
                }
            }
            Err(_) => broken = Some("a write in the batch panicked".into()),
        }
    }
    let committed = match broken {
        Some(why) => Err(why),
        None => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
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
