//! The DynamoDB run store's sweeper queries: live runs past their deadline (`by_deadline`),
//! stalled runs (`by_stall`) and finished runs retention may empty (`by_retain`), the last two
//! page by page off a sparse index, a run that does not decode passed over.

use chrono::{DateTime, Utc};
use spaceport_core::ports::{StallCursor, StalledPage};
use spaceport_core::{Error, RunId};
use std::collections::HashMap;

use crate::dynamo::{
    BY_DEADLINE, BY_RETAIN, BY_STALL, DynamoRunStore, n, run_from_item, run_pk, s,
};
use crate::error::sdk;

pub(crate) async fn overdue(
    store: &DynamoRunStore,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<RunId>, Error> {
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let out = store
            .client()
            .query()
            .table_name(store.table())
            .index_name(BY_DEADLINE)
            .key_condition_expression("#l = :l AND #d <= :now")
            .expression_attribute_names("#l", "live")
            .expression_attribute_names("#d", "deadline_ms")
            .expression_attribute_values(":l", s("1"))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .limit((limit - ids.len()).max(1) as i32)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| sdk("finding overdue runs", e))?;
        for item in out.items() {
            let pk = item.get("pk").and_then(|v| v.as_s().ok());
            let id = pk
                .and_then(|pk| pk.strip_prefix("run#"))
                .and_then(|id| RunId::parse(id).ok())
                .ok_or_else(|| Error::Internal(format!("a stored run key {pk:?} is malformed")))?;
            if ids.len() < limit {
                ids.push(id);
            }
        }
        match out.last_evaluated_key {
            Some(key) if ids.len() < limit && !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    Ok(ids)
}

/// Live runs nothing moved, by when they count as stalled (`Run::stall_from`).
pub(crate) const STALLED: Sparse = Sparse {
    name: BY_STALL,
    flag: "stalls",
    time: "stall_ms",
    what: "finding stalled runs",
};

/// Finished runs that still hold their data, by when they finished.
pub(crate) const RETAINED: Sparse = Sparse {
    name: BY_RETAIN,
    flag: "retains",
    time: "retain_ms",
    what: "finding runs past their retention",
};

/// A sparse index: only items carrying `flag` ("1") are in it, ordered by the time `time`.
pub(crate) struct Sparse {
    name: &'static str,
    flag: &'static str,
    time: &'static str,
    what: &'static str,
}

/// The runs of `index` whose time is before `before`, after the cursor `after`, at most `limit`.
pub(crate) async fn page(
    store: &DynamoRunStore,
    index: &Sparse,
    before: DateTime<Utc>,
    after: Option<&StallCursor>,
    limit: usize,
) -> Result<StalledPage, Error> {
    let limit = limit.max(1);
    let mut runs = Vec::new();
    let mut read = 0;
    let mut last = None;
    // A cursor is the index key of the last run read: its table key and index attributes.
    let mut start = after.map(|c| {
        HashMap::from([
            ("pk".to_owned(), s(run_pk(&c.id))),
            (index.flag.to_owned(), s("1")),
            (index.time.to_owned(), n(c.at_ms)),
        ])
    });
    loop {
        let out = store
            .client()
            .query()
            .table_name(store.table())
            .index_name(index.name)
            .key_condition_expression("#s = :s AND #t < :before")
            .expression_attribute_names("#s", index.flag)
            .expression_attribute_names("#t", index.time)
            .expression_attribute_values(":s", s("1"))
            .expression_attribute_values(":before", n(before.timestamp_millis()))
            .limit((limit - read) as i32)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| sdk(index.what, e))?;
        for item in out.items() {
            read += 1;
            let id = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix("run#"))
                .and_then(|id| RunId::parse(id).ok());
            let at = item
                .get(index.time)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok());
            if let (Some(id), Some(at_ms)) = (id.clone(), at) {
                last = Some(StallCursor { at_ms, id });
            }
            // A run that does not decode is passed over without ending the page early.
            match run_from_item(item) {
                Ok(run) => runs.push(run),
                Err(e) => {
                    tracing::warn!(run = ?id, error = %e, index = index.name, "a stored run does not decode; the sweeper passes it over")
                }
            }
        }
        match out.last_evaluated_key {
            Some(key) if read < limit && !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    Ok(StalledPage::of_rows(runs, read, last, limit))
}
