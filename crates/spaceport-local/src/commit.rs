//! Group commit: the writes of concurrent callers in this process share one transaction, so one
//! fsync makes a whole batch durable instead of one per write. A write joins the pending list
//! and asks for a flush; whoever holds the connection next runs every pending write, each in a
//! savepoint of one `BEGIN IMMEDIATE` transaction (a write that fails rolls back its own
//! savepoint only), commits once, and only then answers each caller: nothing is acknowledged
//! before it is on disk (`synchronous=FULL` semantics kept), and a failed commit fails every
//! write of its batch. SQLite has no group commit of its own; this is the few lines it takes.

use std::sync::Arc;

use rusqlite::Connection;
use spaceport_core::Error;
use tokio::sync::oneshot;

use crate::db::{Inner, sql_err};

/// Delivers a write's result once its batch ended: `Ok` when it committed, else why not.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write waiting for the next batch: it runs against the batch's transaction and says whether
/// it succeeded (its savepoint kept or rolled back).
pub(crate) type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;

/// Runs `f` in the next batch; its result once the batch committed.
pub(crate) async fn write<T, F>(inner: &Arc<Inner>, what: &'static str, f: F) -> Result<T, Error>
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
    inner
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(job);
    let flusher = inner.clone();
    tokio::task::spawn_blocking(move || flush(&flusher))
        .await
        .map_err(|e| Error::Internal(format!("a database task failed: {e}")))?;
    rx.await
        .unwrap_or_else(|_| Err(not_committed(what, "its batch could not start".into())))
}

fn not_committed(what: &'static str, why: String) -> Error {
    Error::Storage {
        context: what.to_string(),
        retryable: true,
        source: Box::new(std::io::Error::other(format!("not committed: {why}"))),
    }
}

/// Runs every pending write in one transaction (see the module's note). A flush that finds the
/// list empty does nothing: an earlier one took its writes.
fn flush(inner: &Inner) {
    let conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
    let batch: Vec<Job> =
        std::mem::take(&mut *inner.pending.lock().unwrap_or_else(|p| p.into_inner()));
    if batch.is_empty() {
        return;
    }
    // A writer that panicked mid-batch left its transaction open: nothing of it was answered.
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
        let (ok, deliver) = job(&conn);
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
    let committed = match broken {
        Some(why) => Err(why),
        None => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
    };
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    drop(conn);
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
