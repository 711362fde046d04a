//! Run events in the DynamoDB table: one item per event, put in the same `TransactWriteItems` as
//! the run's conditional put (a change that loses its race writes no event), read per run from
//! the `by_run_events` index and as the feed of every run's events from `by_feed`.
//!
//! DynamoDB has no commit order across items, so the feed orders by the event's time (then run
//! and sequence number) and shows only events older than `FEED_LAG`: a change is committed well
//! within that of the time it recorded, so a poller never sees an event appear behind its cursor.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use spaceport_core::ports::{FeedPage, FeedQuery};
use spaceport_core::{Error, Run, RunEvent, RunId};

use crate::error::sdk;

/// Index of a run's events by sequence number.
pub(crate) const BY_RUN_EVENTS: &str = "by_run_events";
/// Index of every event by `feed_key` (time, run, sequence number): the feed.
pub(crate) const BY_FEED: &str = "by_feed";
/// Index of a tenant's events by `feed_key` (`ev_tenant`): a tenant's feed.
pub(crate) const BY_TENANT_FEED: &str = "by_tenant_feed";
/// The one partition of the feed index.
const FEED: &str = "events";
/// How old an event must be before the feed shows it by default (see the module doc).
pub const FEED_LAG: Duration = Duration::from_secs(5);
/// The most index pages one feed read scans when a type filter skips most events.
const MAX_FEED_PAGES: usize = 20;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn event_pk(run: &RunId, seq: u64) -> String {
    format!("evt#{run}#{seq:010}")
}

fn feed_key(e: &RunEvent) -> String {
    format!(
        "{:013}#{}#{:010}",
        e.at.timestamp_millis().max(0),
        e.run_id,
        e.seq
    )
}

fn item(e: &RunEvent, tenant: &str) -> Result<HashMap<String, AttributeValue>, Error> {
    let body = serde_json::to_string(e)
        .map_err(|err| Error::Internal(format!("encoding an event of run {}: {err}", e.run_id)))?;
    Ok(HashMap::from([
        ("pk".to_owned(), s(event_pk(&e.run_id, e.seq))),
        ("ev_run".to_owned(), s(e.run_id.as_str())),
        ("ev_seq".to_owned(), n(e.seq)),
        ("ev_type".to_owned(), s(e.kind.as_str())),
        ("feed".to_owned(), s(FEED)),
        ("ev_tenant".to_owned(), s(tenant)),
        ("feed_key".to_owned(), s(feed_key(e))),
        ("body".to_owned(), s(body)),
    ]))
}

/// The puts of the events `run`'s change recorded, for the transaction that writes the run.
/// Unconditional: an event already written (a caller that wrote the same object twice) is
/// rewritten as it was, so it never appears twice.
pub(crate) fn puts(table: &str, run: &Run) -> Result<Vec<TransactWriteItem>, Error> {
    run.events_to_write()
        .iter()
        .map(|e| {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item(e, &run.tenant)?))
                .build()
                .map_err(|err| Error::Internal(format!("building a transaction: {err}")))?;
            Ok(TransactWriteItem::builder().put(put).build())
        })
        .collect()
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<RunEvent, Error> {
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::Internal("a stored event item has no body".into()))?;
    serde_json::from_str(body).map_err(|e| Error::Storage {
        context: "decoding a stored run event".into(),
        retryable: false,
        source: Box::new(e),
    })
}

/// Run `id`'s events after sequence number `after`, in order.
pub(crate) async fn of_run(
    client: &Client,
    table: &str,
    id: &RunId,
    after: u64,
    limit: usize,
) -> Result<Vec<RunEvent>, Error> {
    let limit = limit.max(1);
    let mut events = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .index_name(BY_RUN_EVENTS)
            .key_condition_expression("ev_run = :r AND ev_seq > :after")
            .expression_attribute_values(":r", s(id.as_str()))
            .expression_attribute_values(":after", n(after))
            .limit((limit - events.len()) as i32)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| sdk("reading run events", e))?;
        for it in out.items() {
            events.push(decode(it)?);
        }
        match out.last_evaluated_key {
            Some(key) if events.len() < limit && !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    Ok(events)
}

/// The feed cursor of position `feed_key` (opaque to clients).
fn encode_cursor(feed_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("feed:{feed_key}"))
}

/// The index key a cursor stands at (a feed key names its event item).
fn cursor_key(
    cursor: &str,
    tenant: Option<&str>,
) -> Result<HashMap<String, AttributeValue>, Error> {
    let bad = || Error::validation("after", "the cursor is malformed; pass back a next_cursor");
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let key = text.strip_prefix("feed:").ok_or_else(bad)?;
    let mut parts = key.split('#');
    let (_, run, seq) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(at), Some(run), Some(seq), None) => (at, run, seq),
        _ => return Err(bad()),
    };
    let run = RunId::parse(run).map_err(|_| bad())?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    // The start key names the index's partition too: the one feed, or the tenant's.
    let partition = match tenant {
        Some(t) => ("ev_tenant".to_owned(), s(t)),
        None => ("feed".to_owned(), s(FEED)),
    };
    Ok(HashMap::from([
        ("pk".to_owned(), s(event_pk(&run, seq))),
        partition,
        ("feed_key".to_owned(), s(key)),
    ]))
}

/// A page of every run's events, oldest first, up to `lag` ago.
pub(crate) async fn feed(
    client: &Client,
    table: &str,
    query: &FeedQuery,
    lag: Duration,
) -> Result<FeedPage, Error> {
    let limit = query.limit.max(1);
    let horizon = format!(
        "{:013}",
        (Utc::now() - chrono::Duration::from_std(lag).unwrap_or_default())
            .timestamp_millis()
            .max(0)
    );
    let tenant = query.tenant.as_deref();
    let mut start = query
        .after
        .as_deref()
        .map(|c| cursor_key(c, tenant))
        .transpose()?;
    let (index, partition_attr, partition) = match tenant {
        Some(t) => (BY_TENANT_FEED, "ev_tenant", t),
        None => (BY_FEED, "feed", FEED),
    };
    let mut events = Vec::new();
    let mut scanned_to = None;
    let mut exhausted = false;
    for _ in 0..MAX_FEED_PAGES {
        let mut q = client
            .query()
            .table_name(table)
            .index_name(index)
            .key_condition_expression("#p = :f AND feed_key < :h")
            .expression_attribute_names("#p", partition_attr)
            .expression_attribute_values(":f", s(partition))
            .expression_attribute_values(":h", s(horizon.clone()))
            .limit((limit + 1 - events.len()) as i32)
            .set_exclusive_start_key(start.take());
        if !query.types.is_empty() {
            let names: Vec<String> = (0..query.types.len()).map(|i| format!(":t{i}")).collect();
            q = q.filter_expression(format!("ev_type IN ({})", names.join(", ")));
            for (name, t) in names.iter().zip(&query.types) {
                q = q.expression_attribute_values(name, s(t.as_str()));
            }
        }
        let out = q
            .send()
            .await
            .map_err(|e| sdk("reading the event feed", e))?;
        for it in out.items() {
            events.push(decode(it)?);
        }
        match out.last_evaluated_key {
            Some(key) if events.len() <= limit && !key.is_empty() => {
                scanned_to = key.get("feed_key").and_then(|v| v.as_s().ok()).cloned();
                start = Some(key);
            }
            Some(_) => break,
            None => {
                exhausted = true;
                break;
            }
        }
    }
    let has_more = events.len() > limit || (!exhausted && start.is_some());
    events.truncate(limit);
    // After the last event returned; when a filter skipped everything read, after what was read.
    let next_cursor = events
        .last()
        .map(feed_key)
        .or(if events.is_empty() { scanned_to } else { None })
        .map(|k| encode_cursor(&k));
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
    fn a_cursor_names_its_event_item() {
        let run = RunId::new(1_700_000_000_000, 7);
        let key = format!("0001700000000123#{run}#0000000003");
        let k = cursor_key(&encode_cursor(&key), None).unwrap();
        assert_eq!(k["pk"], s(event_pk(&run, 3)));
        assert_eq!(k["feed_key"], s(key));
        for bad in ["junk", &encode_cursor("1#2"), &encode_cursor("1#run_x#3")] {
            assert_eq!(
                cursor_key(bad, None).unwrap_err().field(),
                Some("after"),
                "{bad}"
            );
        }
    }
}
