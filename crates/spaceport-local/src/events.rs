//! Run events in the SQLite file: written by the store in the same transaction as the change
//! that recorded them, read back per run by sequence number, and as the feed of every run's
//! events in commit order (the table's AUTOINCREMENT key, since one writer commits at a time).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, params, params_from_iter};
use spaceport_core::ports::{FeedPage, FeedQuery};
use spaceport_core::{Error, Run, RunEvent, RunId};

use crate::db::{millis, sql_err};

/// Writes the events `run`'s change recorded. An event already written (the same run and
/// sequence number, from a caller that wrote the same object twice) is left as it is, so the
/// feed never lists it twice.
pub(crate) fn write(conn: &Connection, events: &Encoded) -> Result<(), Error> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO run_events (run_id, seq, type, at, body, tenant)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(|err| sql_err("recording a run event", err))?;
    for e in &events.rows {
        stmt.execute(params![
            events.run_id,
            e.seq,
            e.kind,
            e.at,
            e.body,
            events.tenant
        ])
        .map_err(|err| sql_err("recording a run event", err))?;
    }
    Ok(())
}

/// A run's new events, encoded by the caller before its write joins a batch (the writer thread
/// only binds them).
pub(crate) struct Encoded {
    run_id: String,
    tenant: String,
    rows: Vec<EncodedEvent>,
}

struct EncodedEvent {
    seq: i64,
    kind: &'static str,
    at: i64,
    body: String,
}

/// Encodes `run`'s events to write.
pub(crate) fn encode(run: &Run) -> Result<Encoded, Error> {
    let rows = run
        .events_to_write()
        .into_iter()
        .map(|e| {
            let body = serde_json::to_string(&e).map_err(|err| {
                Error::Internal(format!("encoding an event of run {}: {err}", run.id))
            })?;
            Ok(EncodedEvent {
                seq: e.seq as i64,
                kind: e.kind.as_str(),
                at: millis(e.at),
                body,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Encoded {
        run_id: run.id.to_string(),
        tenant: run.tenant.clone(),
        rows,
    })
}

fn decode(body: &str) -> Result<RunEvent, Error> {
    serde_json::from_str(body).map_err(|e| Error::Storage {
        context: "decoding a stored run event".into(),
        retryable: false,
        source: Box::new(e),
    })
}

/// Run `id`'s events after sequence number `after`, in order.
pub(crate) fn of_run(
    conn: &Connection,
    id: &RunId,
    after: u64,
    limit: usize,
) -> Result<Vec<RunEvent>, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT body FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(|e| sql_err("reading run events", e))?;
    let bodies = stmt
        .query_map(params![id.as_str(), after as i64, limit as i64], |r| {
            r.get::<_, String>(0)
        })
        .map_err(|e| sql_err("reading run events", e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| sql_err("reading run events", e))?;
    bodies.iter().map(|b| decode(b)).collect()
}

/// The feed cursor of position `feed` (opaque to clients).
fn encode_cursor(feed: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("feed:{feed}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, Error> {
    let bad = || Error::validation("after", "the cursor is malformed; pass back a next_cursor");
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    text.strip_prefix("feed:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)
}

/// The feed query for `types` filters, of one tenant or all; parameters are the cursor, the
/// tenant, the types, then the limit. Built from fixed fragments only: every value is bound.
fn feed_sql(tenant: bool, types: usize) -> String {
    let mut sql = String::from("SELECT feed, body FROM run_events WHERE feed > ?1");
    let mut n = 1;
    if tenant {
        n += 1;
        sql.push_str(&format!(" AND tenant = ?{n}"));
    }
    if types > 0 {
        let marks: Vec<String> = (0..types).map(|i| format!("?{}", n + i + 1)).collect();
        sql.push_str(&format!(" AND type IN ({})", marks.join(", ")));
        n += types;
    }
    sql.push_str(&format!(" ORDER BY feed LIMIT ?{}", n + 1));
    sql
}

/// A page of every run's events in commit order.
pub(crate) fn feed(conn: &Connection, query: &FeedQuery) -> Result<FeedPage, Error> {
    let after = query
        .after
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(0);
    let limit = query.limit.max(1);
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(after)];
    if let Some(tenant) = &query.tenant {
        args.push(Box::new(tenant.clone()));
    }
    for t in &query.types {
        args.push(Box::new(t.as_str()));
    }
    args.push(Box::new((limit + 1) as i64));
    let mut stmt = conn
        .prepare_cached(&feed_sql(query.tenant.is_some(), query.types.len()))
        .map_err(|e| sql_err("reading the event feed", e))?;
    let mut rows = stmt
        .query_map(params_from_iter(args.iter()), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(|e| sql_err("reading the event feed", e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| sql_err("reading the event feed", e))?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = rows.last().map(|(feed, _)| encode_cursor(*feed));
    let events = rows
        .iter()
        .map(|(_, b)| decode(b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FeedPage {
        events,
        next_cursor,
        has_more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_a_validation_error() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        let e = decode_cursor("not a cursor").unwrap_err();
        assert_eq!(e.field(), Some("after"));
    }

    #[test]
    fn the_feed_reads_by_index_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(crate::LocalDb::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        for (sql, index) in [
            (feed_sql(false, 0), "PRIMARY KEY"),
            (feed_sql(false, 2), "run_events_by_type"),
            (feed_sql(true, 0), "run_events_by_tenant"),
            (feed_sql(true, 2), "run_events_by_tenant"),
            (
                "SELECT body FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                    .to_owned(),
                "run_events_by_run",
            ),
        ] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains(index), "{sql}: {plan}");
            assert!(
                !plan.contains("TEMP B-TREE") || index == "run_events_by_type",
                "{sql} sorts: {plan}"
            );
        }
    }
}
