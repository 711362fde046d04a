//! `DeliveryStore` on SQLite: webhook deliveries as JSON rows beside the columns the delivery
//! log, the sweeper and the dead-letter list read, written conditionally on their version; and
//! the dispatcher's named cursors. Creating a delivery again is a no-op (its id is derived from
//! the endpoint, run and event).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use spaceport_core::ports::DeliveryStore;
use spaceport_core::webhook::{DeliveryState, WebhookDelivery};
use spaceport_core::{Error, RunId};

use crate::SqliteStore;
use crate::db::{millis, sql_err};

fn state_str(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Pending => "pending",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Dead => "dead",
        DeliveryState::Disabled => "disabled",
    }
}

fn encode(d: &WebhookDelivery) -> Result<String, Error> {
    serde_json::to_string(d)
        .map_err(|e| Error::Internal(format!("encoding delivery {}: {e}", d.id)))
}

fn decode(body: &str) -> Result<WebhookDelivery, Error> {
    serde_json::from_str(body).map_err(|e| Error::Storage {
        context: "decoding a stored webhook delivery".into(),
        retryable: false,
        source: Box::new(e),
    })
}

fn decode_all(bodies: Vec<String>) -> Result<Vec<WebhookDelivery>, Error> {
    bodies.iter().map(|b| decode(b)).collect()
}

fn next_at(d: &WebhookDelivery) -> Option<i64> {
    (d.state == DeliveryState::Pending).then(|| d.next_at.map(millis).unwrap_or(0))
}

/// Reads the `body` column of the rows `sql` selects with `args`.
fn bodies(
    conn: &rusqlite::Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<String>, Error> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(|e| sql_err("reading webhook deliveries", e))?;
    stmt.query_map(args, |r| r.get::<_, String>(0))
        .map_err(|e| sql_err("reading webhook deliveries", e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| sql_err("reading webhook deliveries", e))
}

pub(crate) const DUE_SQL: &str = "SELECT body FROM webhook_deliveries
    WHERE state = 'pending' AND next_at <= ?1 ORDER BY next_at LIMIT ?2";
pub(crate) const DEAD_SQL: &str = "SELECT body FROM webhook_deliveries
    WHERE state = 'dead' AND id > ?1 ORDER BY id LIMIT ?2";
pub(crate) const OF_RUN_SQL: &str =
    "SELECT body FROM webhook_deliveries WHERE run_id = ?1 ORDER BY created_at, id";

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn create_delivery(&self, d: &WebhookDelivery) -> Result<bool, Error> {
        let d = d.clone();
        self.db()
            .write("recording a webhook delivery", move |conn| {
                let n = conn
                    .execute(
                        "INSERT INTO webhook_deliveries (id, run_id, state, next_at, created_at, version, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                        params![
                            d.id,
                            d.run_id.as_str(),
                            state_str(d.state),
                            next_at(&d),
                            millis(d.created_at),
                            d.version as i64,
                            encode(&d)?,
                        ],
                    )
                    .map_err(|e| sql_err("recording a webhook delivery", e))?;
                Ok(n == 1)
            })
            .await
    }

    async fn delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, Error> {
        let id = id.to_owned();
        self.db()
            .call(move |conn| {
                conn.query_row(
                    "SELECT body FROM webhook_deliveries WHERE id = ?1",
                    [&id],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(|e| sql_err("reading a webhook delivery", e))?
                .as_deref()
                .map(decode)
                .transpose()
            })
            .await
    }

    async fn update_delivery(
        &self,
        d: &WebhookDelivery,
        expected_version: u64,
    ) -> Result<(), Error> {
        let d = d.clone();
        self.db()
            .write("updating a webhook delivery", move |conn| {
                let n = conn
                    .execute(
                        "UPDATE webhook_deliveries SET state = ?1, next_at = ?2, version = ?3, body = ?4
                         WHERE id = ?5 AND version = ?6",
                        params![
                            state_str(d.state),
                            next_at(&d),
                            d.version as i64,
                            encode(&d)?,
                            d.id,
                            expected_version as i64,
                        ],
                    )
                    .map_err(|e| sql_err("updating a webhook delivery", e))?;
                if n == 1 {
                    return Ok(());
                }
                Err(Error::VersionConflict {
                    id: d.id.clone(),
                    expected: expected_version,
                })
            })
            .await
    }

    async fn deliveries_of_run(&self, run: &RunId) -> Result<Vec<WebhookDelivery>, Error> {
        let run = run.clone();
        self.db()
            .call(move |conn| decode_all(bodies(conn, OF_RUN_SQL, [run.as_str()])?))
            .await
    }

    async fn due_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        self.db()
            .call(move |conn| {
                decode_all(bodies(
                    conn,
                    DUE_SQL,
                    params![millis(before), limit as i64],
                )?)
            })
            .await
    }

    async fn dead_deliveries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        let after = after.unwrap_or("").to_owned();
        self.db()
            .call(move |conn| decode_all(bodies(conn, DEAD_SQL, params![after, limit as i64])?))
            .await
    }

    async fn cursor(&self, name: &str) -> Result<Option<String>, Error> {
        let name = name.to_owned();
        self.db()
            .call(move |conn| {
                conn.query_row(
                    "SELECT value FROM dispatch_cursors WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| sql_err("reading a dispatch cursor", e))
            })
            .await
    }

    async fn set_cursor(&self, name: &str, value: &str) -> Result<(), Error> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.db()
            .write("writing a dispatch cursor", move |conn| {
                conn.execute(
                    "INSERT INTO dispatch_cursors (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    [&name, &value],
                )
                .map(drop)
                .map_err(|e| sql_err("writing a dispatch cursor", e))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweeper_and_the_lists_read_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(crate::LocalDb::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (sql, index) in [
            (DUE_SQL, "webhook_deliveries_due"),
            (DEAD_SQL, "webhook_deliveries_dead"),
            (OF_RUN_SQL, "webhook_deliveries_by_run"),
        ] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(
                plan.contains(index) && !plan.contains("TEMP B-TREE"),
                "{sql}: {plan}"
            );
        }
    }
}
