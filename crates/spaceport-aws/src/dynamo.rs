//! The run store on DynamoDB: one table, a run per item (its JSON body plus the attributes the
//! indexes need), idempotency keys as items of their own written in the same transaction as the
//! run, and every update conditional on the stored version. Listing and the sweeper read
//! global secondary indexes keyed by the run id (a ULID, so newest first is a reverse range read).
//! A change's events go in the same transaction as the run (`events.rs`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem,
};
use chrono::{DateTime, Utc};
use spaceport_core::limits::Usage;
use spaceport_core::ports::{
    FeedPage, FeedQuery, IDEMPOTENCY_TTL, Idempotency, InsertOutcome, ListQuery, MAX_PAGE, RunPage,
    RunStore, SlotBook, StallCursor, StalledPage, encode_cursor,
};
use spaceport_core::{Error, Run, RunEvent, RunId, Status};

use crate::deliveries::{BY_DEAD, BY_DUE, BY_RUN_DELIVERIES};
use crate::error::{code_of, sdk};
use crate::events::{self, BY_FEED, BY_RUN_EVENTS, BY_TENANT_FEED};

/// Index of every run by id (`list_pk` is the same for all runs): the operator's view, where
/// status and pipeline are filters.
const BY_CREATED: &str = "by_created";
/// A tenant's runs by id, and by status or pipeline (`tenant_status`, `tenant_pipeline` are
/// `<tenant>#<value>`): what the API lists, each a key read.
const BY_TENANT: &str = "by_tenant";
const BY_TENANT_STATUS: &str = "by_tenant_status";
const BY_TENANT_PIPELINE: &str = "by_tenant_pipeline";
/// Sparse index of live runs by deadline: terminal runs carry no `live` attribute.
pub(crate) const BY_DEADLINE: &str = "by_deadline";
/// Sparse index of the runs a step is due to move, by `Run::stall_from` (`stall_ms`): only they
/// carry the `stalls` attribute, so the sweeper reads stalled runs and nothing else.
pub(crate) const BY_STALL: &str = "by_stall";
/// Sparse index of finished runs that still hold their data, by when they finished
/// (`retain_ms`): only they carry `retains`, so retention reads its candidates and nothing else.
pub(crate) const BY_RETAIN: &str = "by_retain";

/// Runs in a DynamoDB table (`runs_table`).
#[derive(Debug, Clone)]
pub struct DynamoRunStore {
    client: Client,
    table: String,
    feed_lag: std::time::Duration,
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn run_pk(id: &RunId) -> String {
    format!("run#{id}")
}

fn idem_pk(key: &str) -> String {
    format!("idem#{key}")
}

fn run_item(run: &Run) -> Result<HashMap<String, AttributeValue>, Error> {
    let body = serde_json::to_string(run)
        .map_err(|e| Error::Internal(format!("encoding run {}: {e}", run.id)))?;
    let mut item = HashMap::from([
        ("pk".to_owned(), s(run_pk(&run.id))),
        ("id".to_owned(), s(run.id.as_str())),
        ("list_pk".to_owned(), s("run")),
        ("status".to_owned(), s(run.status.as_str())),
        ("version".to_owned(), n(run.version)),
        ("pipeline".to_owned(), s(run.pipeline.clone())),
        ("tenant".to_owned(), s(run.tenant.clone())),
        ("bytes".to_owned(), n(run.stored_bytes())),
        (
            "tenant_status".to_owned(),
            s(format!("{}#{}", run.tenant, run.status.as_str())),
        ),
        (
            "tenant_pipeline".to_owned(),
            s(format!("{}#{}", run.tenant, run.pipeline)),
        ),
        ("body".to_owned(), s(body)),
    ]);
    if !run.status.is_terminal() {
        item.insert("live".into(), s("1"));
        item.insert("deadline_ms".into(), n(run.deadline_at.timestamp_millis()));
    }
    if let Some(t) = run.stall_from() {
        item.insert("stalls".into(), s("1"));
        item.insert("stall_ms".into(), n(t.timestamp_millis()));
    }
    if run.status.is_terminal()
        && run.deleted_at.is_none()
        && let Some(t) = run.finished_at
    {
        item.insert("retains".into(), s("1"));
        item.insert("retain_ms".into(), n(t.timestamp_millis()));
    }
    Ok(item)
}

/// Decodes a stored run. One that does not decode (a job record of the wrong shape, say) is an
/// error naming the run, never a default: a default would silently drop a live lease.
pub(crate) fn run_from_item(item: &HashMap<String, AttributeValue>) -> Result<Run, Error> {
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::Internal("a stored run item has no body".into()))?;
    serde_json::from_str(body).map_err(|e| {
        let id = item
            .get("id")
            .and_then(|v| v.as_s().ok())
            .map_or("(no id)", |s| s);
        Error::Storage {
            context: format!("decoding stored run {id}"),
            retryable: false,
            source: Box::new(e),
        }
    })
}

impl DynamoRunStore {
    /// The store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoRunStore {
            client,
            table: table.into(),
            feed_lag: events::FEED_LAG,
        }
    }

    /// The same store with another feed lag (how old an event must be before the feed shows
    /// it; tests that check the feed's logic use zero).
    pub fn with_feed_lag(mut self, lag: std::time::Duration) -> Self {
        self.feed_lag = lag;
        self
    }

    /// The DynamoDB client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table with its indexes and TTL, as `infra/template.yaml` declares it (for
    /// tests and `spaceport` on an emulator; the deployment creates it from the template).
    pub async fn create_table(&self) -> Result<(), Error> {
        let attr = |name: &str, ty: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ty)
                .build()
                .map_err(|e| Error::Internal(format!("table definition: {e}")))
        };
        let key = |name: &str, ty: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(ty)
                .build()
                .map_err(|e| Error::Internal(format!("table definition: {e}")))
        };
        let index = |name: &str, hash: &str, range: &str, projection: ProjectionType| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(range, KeyType::Range)?)
                .projection(Projection::builder().projection_type(projection).build())
                .build()
                .map_err(|e| Error::Internal(format!("table definition: {e}")))
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("id", ScalarAttributeType::S)?)
            .attribute_definitions(attr("list_pk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("tenant", ScalarAttributeType::S)?)
            .attribute_definitions(attr("tenant_status", ScalarAttributeType::S)?)
            .attribute_definitions(attr("tenant_pipeline", ScalarAttributeType::S)?)
            .attribute_definitions(attr("ev_tenant", ScalarAttributeType::S)?)
            .attribute_definitions(attr("live", ScalarAttributeType::S)?)
            .attribute_definitions(attr("deadline_ms", ScalarAttributeType::N)?)
            .attribute_definitions(attr("stalls", ScalarAttributeType::S)?)
            .attribute_definitions(attr("stall_ms", ScalarAttributeType::N)?)
            .attribute_definitions(attr("retains", ScalarAttributeType::S)?)
            .attribute_definitions(attr("retain_ms", ScalarAttributeType::N)?)
            .attribute_definitions(attr("ev_run", ScalarAttributeType::S)?)
            .attribute_definitions(attr("ev_seq", ScalarAttributeType::N)?)
            .attribute_definitions(attr("feed", ScalarAttributeType::S)?)
            .attribute_definitions(attr("feed_key", ScalarAttributeType::S)?)
            .attribute_definitions(attr("dlv_run", ScalarAttributeType::S)?)
            .attribute_definitions(attr("dlv_created", ScalarAttributeType::N)?)
            .attribute_definitions(attr("dlv_pending", ScalarAttributeType::S)?)
            .attribute_definitions(attr("dlv_due", ScalarAttributeType::N)?)
            .attribute_definitions(attr("dlv_dead", ScalarAttributeType::S)?)
            .attribute_definitions(attr("dlv_id", ScalarAttributeType::S)?)
            .global_secondary_indexes(index(BY_CREATED, "list_pk", "id", ProjectionType::All)?)
            .global_secondary_indexes(index(BY_TENANT, "tenant", "id", ProjectionType::All)?)
            .global_secondary_indexes(index(
                BY_TENANT_STATUS,
                "tenant_status",
                "id",
                ProjectionType::All,
            )?)
            .global_secondary_indexes(index(
                BY_TENANT_PIPELINE,
                "tenant_pipeline",
                "id",
                ProjectionType::All,
            )?)
            .global_secondary_indexes(index(
                BY_DEADLINE,
                "live",
                "deadline_ms",
                ProjectionType::KeysOnly,
            )?)
            .global_secondary_indexes(index(BY_STALL, "stalls", "stall_ms", ProjectionType::All)?)
            .global_secondary_indexes(index(
                BY_RETAIN,
                "retains",
                "retain_ms",
                ProjectionType::All,
            )?)
            .global_secondary_indexes(index(
                BY_RUN_EVENTS,
                "ev_run",
                "ev_seq",
                ProjectionType::All,
            )?)
            .global_secondary_indexes(index(BY_FEED, "feed", "feed_key", ProjectionType::All)?)
            .global_secondary_indexes(index(
                BY_TENANT_FEED,
                "ev_tenant",
                "feed_key",
                ProjectionType::All,
            )?)
            .global_secondary_indexes(index(
                BY_RUN_DELIVERIES,
                "dlv_run",
                "dlv_created",
                ProjectionType::All,
            )?)
            .global_secondary_indexes(index(
                BY_DUE,
                "dlv_pending",
                "dlv_due",
                ProjectionType::All,
            )?)
            .global_secondary_indexes(index(BY_DEAD, "dlv_dead", "dlv_id", ProjectionType::All)?)
            .send()
            .await
            .map_err(|e| sdk(format!("creating table {}", self.table), e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .map_err(|e| Error::Internal(format!("table definition: {e}")))?,
            )
            .send()
            .await
            .map_err(|e| sdk(format!("enabling TTL on {}", self.table), e))?;
        Ok(())
    }

    pub(crate) async fn get_item(
        &self,
        pk: String,
    ) -> Result<Option<HashMap<String, AttributeValue>>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk("reading from the run table", e))?;
        Ok(out.item)
    }

    /// What an Idempotency-Key already names: the first run, or a conflict.
    async fn resolve_key(&self, idem: &Idempotency) -> Result<Option<InsertOutcome>, Error> {
        let Some(item) = self.get_item(idem_pk(&idem.key)).await? else {
            return Ok(None);
        };
        // DynamoDB's TTL deletes an expired key within days, not at once: past its time it is
        // forgotten already.
        let expires = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok());
        if expires.is_some_and(|t| t < Utc::now().timestamp()) {
            return Ok(None);
        }
        let hash = item.get("request_hash").and_then(|v| v.as_s().ok());
        if hash.map(String::as_str) != Some(idem.request_hash.as_str()) {
            return Err(Error::Conflict(format!(
                "Idempotency-Key {:?} was already used with a different request body",
                idem.key
            )));
        }
        let run_id = item
            .get("run_id")
            .and_then(|v| v.as_s().ok())
            .and_then(|id| RunId::parse(id).ok())
            .ok_or_else(|| {
                Error::Internal(format!("idempotency key {:?} names no run", idem.key))
            })?;
        let run = self.get(&run_id).await?.ok_or_else(|| {
            Error::Internal(format!(
                "idempotency key {:?} names run {run_id}, which is gone",
                idem.key
            ))
        })?;
        Ok(Some(InsertOutcome::Existing(Box::new(run))))
    }

    async fn insert_with_key(&self, run: &Run, idem: &Idempotency) -> Result<InsertOutcome, Error> {
        let context = |e| Error::Internal(format!("building a transaction: {e}"));
        let put_run = Put::builder()
            .table_name(&self.table)
            .set_item(Some(run_item(run)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(context)?;
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(IDEMPOTENCY_TTL).unwrap_or_default();
        let put_key = Put::builder()
            .table_name(&self.table)
            .item("pk", s(idem_pk(&idem.key)))
            .item("run_id", s(run.id.as_str()))
            .item("request_hash", s(idem.request_hash.clone()))
            .item("expires_at", n(expires.timestamp()))
            // An expired key TTL has not deleted yet may be taken again.
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now.timestamp()))
            .build()
            .map_err(context)?;
        let mut items = vec![
            TransactWriteItem::builder().put(put_run).build(),
            TransactWriteItem::builder().put(put_key).build(),
        ];
        items.extend(events::puts(&self.table, run)?);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(e) if code_of(&e) == Some("TransactionCanceledException") => {
                // Either the key was used before (answer from it) or the run id exists.
                if let Some(outcome) = self.resolve_key(idem).await? {
                    return Ok(outcome);
                }
                if self.get_item(run_pk(&run.id)).await?.is_some() {
                    return Err(Error::Conflict(format!("run {} already exists", run.id)));
                }
                Err(sdk("inserting a run with its idempotency key", e))
            }
            Err(e) => Err(sdk("inserting a run with its idempotency key", e)),
        }
    }
}

#[async_trait]
impl RunStore for DynamoRunStore {
    async fn insert(
        &self,
        run: &Run,
        idempotency: Option<&Idempotency>,
    ) -> Result<InsertOutcome, Error> {
        if let Some(idem) = idempotency {
            // Answer a reused key without attempting a write.
            if let Some(outcome) = self.resolve_key(idem).await? {
                return Ok(outcome);
            }
            return self.insert_with_key(run, idem).await;
        }
        let context = |e| Error::Internal(format!("building a transaction: {e}"));
        let put_run = Put::builder()
            .table_name(&self.table)
            .set_item(Some(run_item(run)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(context)?;
        let mut items = vec![TransactWriteItem::builder().put(put_run).build()];
        items.extend(events::puts(&self.table, run)?);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(e) if code_of(&e) == Some("TransactionCanceledException") => {
                if self.get_item(run_pk(&run.id)).await?.is_some() {
                    return Err(Error::Conflict(format!("run {} already exists", run.id)));
                }
                Err(sdk("inserting a run", e))
            }
            Err(e) => Err(sdk("inserting a run", e)),
        }
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

    async fn get(&self, id: &RunId) -> Result<Option<Run>, Error> {
        self.get_item(run_pk(id))
            .await?
            .as_ref()
            .map(run_from_item)
            .transpose()
    }

    async fn update(&self, run: &Run, expected_version: u64) -> Result<(), Error> {
        let events = events::puts(&self.table, run)?;
        if events.is_empty() {
            // Most writes (lease renewals) record no event: one conditional put.
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(run_item(run)?))
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", n(expected_version))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if code_of(&e) == Some("ConditionalCheckFailedException") => {}
                Err(e) => return Err(sdk("updating a run", e)),
            }
        } else {
            let put_run = Put::builder()
                .table_name(&self.table)
                .set_item(Some(run_item(run)?))
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", n(expected_version))
                .build()
                .map_err(|e| Error::Internal(format!("building a transaction: {e}")))?;
            let mut items = vec![TransactWriteItem::builder().put(put_run).build()];
            items.extend(events);
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                // Only the run's put has a condition: a cancelled transaction lost the race.
                Err(e) if code_of(&e) == Some("TransactionCanceledException") => {}
                Err(e) => return Err(sdk("updating a run with its events", e)),
            }
        }
        // The condition failed: the run changed since it was read, or is gone.
        Err(if self.get_item(run_pk(&run.id)).await?.is_some() {
            Error::VersionConflict {
                id: run.id.to_string(),
                expected: expected_version,
            }
        } else {
            Error::NotFound {
                what: "run",
                id: run.id.to_string(),
            }
        })
    }

    async fn list(&self, query: &ListQuery) -> Result<RunPage, Error> {
        let limit = query.page_size();
        let after = query.after()?;
        let status: Option<&str> = query.status.map(Status::as_str);
        let pipeline = query.pipeline.as_deref();
        // The index that answers the most selective key; what it cannot are filters.
        let (index, hash_attr, hash_value, filters) = match (&query.tenant, status, pipeline) {
            (Some(t), None, None) => (BY_TENANT, "tenant", t.clone(), vec![]),
            (Some(t), Some(st), None) => (
                BY_TENANT_STATUS,
                "tenant_status",
                format!("{t}#{st}"),
                vec![],
            ),
            (Some(t), st, Some(p)) => (
                BY_TENANT_PIPELINE,
                "tenant_pipeline",
                format!("{t}#{p}"),
                st.map(|st| ("status", st)).into_iter().collect(),
            ),
            (None, st, p) => (
                BY_CREATED,
                "list_pk",
                "run".to_owned(),
                [st.map(|st| ("status", st)), p.map(|p| ("pipeline", p))]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>(),
            ),
        };
        let mut condition = "#h = :h".to_owned();
        if after.is_some() {
            condition.push_str(" AND #id < :after");
        }
        let mut runs = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(&condition)
                .expression_attribute_names("#h", hash_attr)
                .expression_attribute_values(":h", s(hash_value.clone()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take());
            if let Some(after) = &after {
                q = q
                    .expression_attribute_names("#id", "id")
                    .expression_attribute_values(":after", s(after.as_str()));
            }
            q = if filters.is_empty() {
                q.limit((limit + 1 - runs.len()) as i32)
            } else {
                // A filter applies after the limit: read whole pages and stop when full.
                let mut terms = vec![];
                for (i, (attr, value)) in filters.iter().enumerate() {
                    terms.push(format!("#f{i} = :f{i}"));
                    q = q
                        .expression_attribute_names(format!("#f{i}"), *attr)
                        .expression_attribute_values(format!(":f{i}"), s(*value));
                }
                q.filter_expression(terms.join(" AND "))
                    .limit(MAX_PAGE as i32 + 1)
            };
            let out = q.send().await.map_err(|e| sdk("listing runs", e))?;
            for item in out.items() {
                if runs.len() <= limit {
                    runs.push(run_from_item(item)?);
                }
            }
            match out.last_evaluated_key {
                Some(key) if runs.len() <= limit && !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        let next_cursor = if runs.len() > limit {
            runs.truncate(limit);
            runs.last().map(|r| encode_cursor(&r.id))
        } else {
            None
        };
        Ok(RunPage { runs, next_cursor })
    }

    /// Reads the tenant's runs from `by_tenant`, projecting two small attributes: a cost that
    /// grows with the tenant's runs, paid only when caps are configured. (A counter item kept
    /// in each run's transaction would make it one read; it needs the write to know the old
    /// item's values.)
    async fn usage(&self, tenant: &str) -> Result<Usage, Error> {
        let mut usage = Usage::default();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_TENANT)
                .key_condition_expression("tenant = :t")
                .expression_attribute_values(":t", s(tenant))
                .projection_expression("#b, live")
                .expression_attribute_names("#b", "bytes")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk("reading a tenant's usage", e))?;
            for item in out.items() {
                if item.contains_key("live") {
                    usage.runs_in_flight += 1;
                }
                let bytes = item.get("bytes").and_then(|v| v.as_n().ok());
                usage.stored_bytes += bytes.and_then(|b| b.parse::<u64>().ok()).unwrap_or(0);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(usage),
            }
        }
    }

    async fn overdue(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<RunId>, Error> {
        crate::sweeps::overdue(self, now, limit).await
    }

    async fn events(&self, id: &RunId, after: u64, limit: usize) -> Result<Vec<RunEvent>, Error> {
        events::of_run(&self.client, &self.table, id, after, limit).await
    }

    async fn feed(&self, query: &FeedQuery) -> Result<FeedPage, Error> {
        events::feed(&self.client, &self.table, query, self.feed_lag).await
    }

    async fn stalled(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<StalledPage, Error> {
        crate::sweeps::page(self, &crate::sweeps::STALLED, before, after, limit).await
    }

    async fn retained(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<Option<StalledPage>, Error> {
        crate::sweeps::page(self, &crate::sweeps::RETAINED, before, after, limit)
            .await
            .map(Some)
    }
}
