//! `Queue` on SQLite, in the same file as the runs: SQS semantics (delay, visibility timeout,
//! receive count, dead-letter after too many receives). Receives take the write lock first
//! (`BEGIN IMMEDIATE`), so across processes a message is handed to one receiver at a time.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{OptionalExtension, params};
use spaceport_core::Error;
use spaceport_core::RunId;
use spaceport_core::ports::{Delivery, Queue, QueueName, QueueStats, StepMessage};

use crate::db::{LocalDb, sql_err};

/// Receives after which a message is dead-lettered, unless configured per queue.
pub const DEFAULT_MAX_RECEIVES: u32 = 5;
/// How often `wait_receive` looks at the file for messages sent by other processes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The most messages one receive hands out.
pub const MAX_BATCH: usize = 100;

/// A message that was received too many times, kept for inspection and redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The id `send` returned.
    pub message_id: String,
    pub body: String,
    /// How many times it was received before it was moved aside.
    pub receive_count: u32,
    pub sent_at: chrono::DateTime<Utc>,
    /// When the receive that found it over its limit moved it here.
    pub dead_at: chrono::DateTime<Utc>,
}

/// The step queues in the SQLite file. Cheap to clone; clones share the in-process wake-ups.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: LocalDb,
    max_receives: [u32; QueueName::ALL.len()],
    poll_interval: Duration,
    wait: Duration,
}

pub(crate) fn slot(queue: QueueName) -> usize {
    QueueName::ALL
        .iter()
        .position(|q| *q == queue)
        .expect("every queue is in ALL")
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn time_of(ms: i64) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A fresh receipt: the message id plus 128 random bits, so every receive gets a new one.
fn new_receipt(message_id: &str) -> String {
    format!("{message_id}.{:032x}", rand::random::<u128>())
}

impl SqliteQueue {
    /// The queues on an open database.
    pub fn new(db: LocalDb) -> Self {
        SqliteQueue {
            db,
            max_receives: [DEFAULT_MAX_RECEIVES; QueueName::ALL.len()],
            poll_interval: DEFAULT_POLL_INTERVAL,
            wait: Duration::ZERO,
        }
    }

    /// Dead-letters `queue`'s messages once they were received `n` times (at least 1).
    pub fn with_max_receives(mut self, queue: QueueName, n: u32) -> Self {
        self.max_receives[slot(queue)] = n.max(1);
        self
    }

    /// How often [`SqliteQueue::wait_receive`] re-checks the file for other processes' sends.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Makes `Queue::receive` wait up to `wait` for a message, as `wait_receive` does (a
    /// worker's long poll: an in-process send wakes it at once). Zero (the default) looks once.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The receive limit of `queue`.
    pub fn max_receives(&self, queue: QueueName) -> u32 {
        self.max_receives[slot(queue)]
    }

    /// Like `receive`, but waits up to `wait` for a message (SQS long polling): it sleeps until the
    /// next delayed or hidden message is due, a `send` in this process wakes it, and it re-checks
    /// the file every poll interval for sends from other processes. Returns empty after `wait`.
    pub async fn wait_receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        let notify = &self.db.inner.notify[slot(queue)];
        loop {
            // Registered before looking, so a send between the look and the sleep still wakes us.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let got = self.receive_now(queue, max, visibility).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let mut until = deadline.min(now + self.poll_interval);
            if let Some(due_in) = self.next_due_in(queue).await? {
                until = until.min(now + due_in);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Receives what is visible now (one look).
    pub async fn receive_now(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let limit = self.max_receives(queue);
        // A zero timeout hides the message for 1 ms, so this receive cannot pick it twice.
        let hide = ms(visibility).max(1);
        // Unsynced (`commit::write_unsynced`): a receive a power loss undoes only makes its
        // messages visible again, and the fsync it would wait for is on every step's path.
        self.db
            .write_unsynced("receiving messages", move |tx| {
                let now = now_ms();
                let mut out = Vec::with_capacity(max);
                // Dead-lettered candidates leave the table, so re-selecting finds new ones.
                loop {
                    let candidates: Vec<(String, String, u32)> = {
                        let mut stmt = tx
                            .prepare_cached(
                                "SELECT id, body, receive_count FROM queue_messages
                                 WHERE queue = ?1 AND visible_at <= ?2
                                 ORDER BY visible_at, rowid LIMIT ?3",
                            )
                            .map_err(|e| sql_err("receiving messages", e))?;
                        stmt.query_map(
                            params![queue.as_str(), now, (max - out.len()) as i64],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .map_err(|e| sql_err("receiving messages", e))?
                        .collect::<rusqlite::Result<_>>()
                        .map_err(|e| sql_err("receiving messages", e))?
                    };
                    if candidates.is_empty() {
                        break;
                    }
                    for (id, body, count) in candidates {
                        if count >= limit {
                            dead_letter(tx, &id, now)?;
                            continue;
                        }
                        let receipt = new_receipt(&id);
                        tx.prepare_cached(
                            "UPDATE queue_messages
                             SET receive_count = receive_count + 1, receipt = ?2, visible_at = ?3
                             WHERE id = ?1",
                        )
                        .and_then(|mut s| s.execute(params![id, receipt, now.saturating_add(hide)]))
                        .map_err(|e| sql_err("receiving messages", e))?;
                        out.push(Delivery {
                            message_id: id,
                            receipt,
                            body,
                            receive_count: count + 1,
                        });
                    }
                    if out.len() >= max {
                        break;
                    }
                }
                Ok(out)
            })
            .await
    }

    /// How long until the earliest hidden or delayed message of `queue` becomes visible.
    async fn next_due_in(&self, queue: QueueName) -> Result<Option<Duration>, Error> {
        let due: Option<i64> = self
            .db
            .call(move |conn| {
                conn.query_row(
                    "SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1",
                    [queue.as_str()],
                    |r| r.get(0),
                )
                .map_err(|e| sql_err("reading the next due message", e))
            })
            .await?;
        Ok(due.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)))
    }

    /// The dead letters of `queue`, oldest first.
    pub async fn dead_letters(
        &self,
        queue: QueueName,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, body, receive_count, sent_at, dead_at FROM queue_dead_letters
                         WHERE queue = ?1 ORDER BY dead_at, id LIMIT ?2",
                    )
                    .map_err(|e| sql_err("listing dead letters", e))?;
                stmt.query_map(params![queue.as_str(), limit as i64], |r| {
                    Ok(DeadLetter {
                        message_id: r.get(0)?,
                        body: r.get(1)?,
                        receive_count: r.get(2)?,
                        sent_at: time_of(r.get(3)?),
                        dead_at: time_of(r.get(4)?),
                    })
                })
                .map_err(|e| sql_err("listing dead letters", e))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| sql_err("listing dead letters", e))
            })
            .await
    }

    /// Moves a dead letter back onto its queue, visible now, with its receive count reset.
    /// Returns whether there was such a dead letter.
    pub async fn redrive(&self, queue: QueueName, message_id: &str) -> Result<bool, Error> {
        let id = message_id.to_owned();
        let moved = self
            .db
            .write("redriving a dead letter", move |tx| {
                let n = tx
                    .execute(
                        "INSERT INTO queue_messages (id, queue, body, sent_at, visible_at)
                         SELECT id, queue, body, sent_at, ?3 FROM queue_dead_letters
                         WHERE queue = ?1 AND id = ?2",
                        params![queue.as_str(), id, now_ms()],
                    )
                    .map_err(|e| sql_err("redriving a dead letter", e))?;
                tx.execute(
                    "DELETE FROM queue_dead_letters WHERE queue = ?1 AND id = ?2",
                    params![queue.as_str(), id],
                )
                .map_err(|e| sql_err("redriving a dead letter", e))?;
                Ok(n == 1)
            })
            .await?;
        if moved {
            self.db.wake(queue);
        }
        Ok(moved)
    }
}

/// Adds a message to `queue` in the caller's transaction (a send, or a run store's outbox: the
/// message lands with the change that sent it); its id. Wake receivers once it committed.
pub(crate) fn insert_message(
    conn: &rusqlite::Connection,
    queue: QueueName,
    body: &str,
    delay: Duration,
) -> Result<String, Error> {
    let id = format!("msg_{}", ulid::Ulid::new());
    let run_id = serde_json::from_str::<StepMessage>(body)
        .ok()
        .map(|m| m.run_id.to_string());
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO queue_messages (id, queue, body, sent_at, visible_at, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            queue.as_str(),
            body,
            now,
            now.saturating_add(ms(delay)),
            run_id
        ])
    })
    .map_err(|e| sql_err("sending a message", e))?;
    Ok(id)
}

fn dead_letter(tx: &rusqlite::Connection, id: &str, now: i64) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO queue_dead_letters (id, queue, body, sent_at, receive_count, dead_at)
         SELECT id, queue, body, sent_at, receive_count, ?2 FROM queue_messages WHERE id = ?1",
        params![id, now],
    )
    .map_err(|e| sql_err("dead-lettering a message", e))?;
    tx.execute("DELETE FROM queue_messages WHERE id = ?1", [id])
        .map_err(|e| sql_err("dead-lettering a message", e))?;
    Ok(())
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: QueueName, body: &str, delay: Duration) -> Result<String, Error> {
        let body = body.to_owned();
        let id = self
            .db
            .write("sending a message", move |conn| {
                insert_message(conn, queue, &body, delay)
            })
            .await?;
        self.db.wake(queue);
        Ok(id)
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        if self.wait.is_zero() {
            self.receive_now(queue, max, visibility).await
        } else {
            self.wait_receive(queue, max, visibility, self.wait).await
        }
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), Error> {
        // A stale receipt (the message was received again since) deletes nothing, as in SQS:
        // the newer receiver still owns the message.
        let receipt = receipt.to_owned();
        // Unsynced, as a receive: a delete lost to a power loss only lets its message come
        // back, to a step that finds its work done.
        self.db
            .write_unsynced("deleting a message", move |conn| {
                conn.prepare_cached("DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2")
                    .and_then(|mut s| s.execute(params![queue.as_str(), receipt]))
                    .map_err(|e| sql_err("deleting a message", e))?;
                Ok(())
            })
            .await
    }

    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), Error> {
        let receipt = receipt.to_owned();
        self.db
            .write("changing a message's visibility", move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE queue_messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            queue.as_str(),
                            receipt,
                            now_ms().saturating_add(ms(visibility))
                        ])
                    })
                    .map_err(|e| sql_err("changing a message's visibility", e))?;
                if changed == 0 {
                    return Err(Error::NotFound {
                        what: "queue receipt (deleted, or received again since)",
                        id: receipt,
                    });
                }
                Ok(())
            })
            .await?;
        if visibility.is_zero() {
            self.db.wake(queue);
        }
        Ok(())
    }

    async fn waiting(&self, queue: QueueName, run: &RunId) -> Result<Option<bool>, Error> {
        let run = run.to_string();
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM queue_messages
                     WHERE queue = ?1 AND run_id = ?2 AND receive_count = 0)",
                    params![queue.as_str(), run],
                    |r| r.get::<_, bool>(0),
                )
                .map(Some)
                .map_err(|e| sql_err("looking for a run's waiting message", e))
            })
            .await
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats, Error> {
        self.db
            .call(move |conn| {
                let now = now_ms();
                let q = queue.as_str();
                // Waiting: never received (visible or delayed), or received and visible again.
                let (depth, oldest): (u64, Option<i64>) = conn
                    .query_row(
                        "SELECT COUNT(*), MIN(sent_at) FROM queue_messages
                         WHERE queue = ?1 AND (receipt IS NULL OR visible_at <= ?2)",
                        params![q, now],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(|e| sql_err("reading queue stats", e))?;
                let in_flight: u64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM queue_messages
                         WHERE queue = ?1 AND receipt IS NOT NULL AND visible_at > ?2",
                        params![q, now],
                        |r| r.get(0),
                    )
                    .map_err(|e| sql_err("reading queue stats", e))?;
                let dead: u64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM queue_dead_letters WHERE queue = ?1",
                        [q],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| sql_err("reading queue stats", e))?
                    .unwrap_or(0);
                Ok(QueueStats {
                    depth,
                    in_flight,
                    dead,
                    oldest_age_s: oldest.map(|t| (now - t).max(0) as f64 / 1000.0),
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests;
