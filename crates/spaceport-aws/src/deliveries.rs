//! `DeliveryStore` on the DynamoDB table: one item per webhook delivery (its JSON plus the
//! attributes of three sparse indexes: a run's log, the pending ones by due time, the dead-letter
//! list), put conditionally on its version; the dispatcher's cursors as items of their own.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use spaceport_core::ports::DeliveryStore;
use spaceport_core::webhook::{DeliveryState, WebhookDelivery};
use spaceport_core::{Error, RunId};

use crate::DynamoRunStore;
use crate::error::{code_of, sdk};

/// A run's deliveries by creation time.
pub(crate) const BY_RUN_DELIVERIES: &str = "by_run_deliveries";
/// Pending deliveries by when they are due (only pending ones carry `dlv_pending`).
pub(crate) const BY_DUE: &str = "by_due";
/// Dead deliveries by id (only dead ones carry `dlv_dead`).
pub(crate) const BY_DEAD: &str = "by_dead";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn pk(id: &str) -> String {
    format!("dlv#{id}")
}

fn item(d: &WebhookDelivery) -> Result<HashMap<String, AttributeValue>, Error> {
    let body = serde_json::to_string(d)
        .map_err(|e| Error::Internal(format!("encoding delivery {}: {e}", d.id)))?;
    let mut item = HashMap::from([
        ("pk".to_owned(), s(pk(&d.id))),
        ("dlv_run".to_owned(), s(d.run_id.as_str())),
        ("dlv_created".to_owned(), n(d.created_at.timestamp_millis())),
        ("version".to_owned(), n(d.version)),
        ("body".to_owned(), s(body)),
    ]);
    match d.state {
        DeliveryState::Pending => {
            item.insert("dlv_pending".into(), s("1"));
            let due = d.next_at.map_or(0, |t| t.timestamp_millis());
            item.insert("dlv_due".into(), n(due));
        }
        DeliveryState::Dead => {
            item.insert("dlv_dead".into(), s("1"));
            item.insert("dlv_id".into(), s(d.id.clone()));
        }
        DeliveryState::Delivered | DeliveryState::Disabled => {}
    }
    Ok(item)
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<WebhookDelivery, Error> {
    let body = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::Internal("a stored delivery item has no body".into()))?;
    serde_json::from_str(body).map_err(|e| Error::Storage {
        context: "decoding a stored webhook delivery".into(),
        retryable: false,
        source: Box::new(e),
    })
}

impl DynamoRunStore {
    /// Every item an index query returns (across pages, at most `limit`).
    async fn query_all(
        &self,
        index: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        limit: usize,
        forward: bool,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        let limit = limit.max(1);
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(index)
                .key_condition_expression(condition)
                .scan_index_forward(forward)
                .limit((limit - out.len()).min(1000) as i32)
                .set_exclusive_start_key(start.take());
            for (k, v) in &values {
                q = q.expression_attribute_values(*k, v.clone());
            }
            let page = q
                .send()
                .await
                .map_err(|e| sdk("reading webhook deliveries", e))?;
            for it in page.items() {
                out.push(decode(it)?);
            }
            match page.last_evaluated_key {
                Some(key) if out.len() < limit && !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl DeliveryStore for DynamoRunStore {
    async fn create_delivery(&self, d: &WebhookDelivery) -> Result<bool, Error> {
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item(d)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if code_of(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk("recording a webhook delivery", e)),
        }
    }

    async fn delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, Error> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(pk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk("reading a webhook delivery", e))?;
        out.item.as_ref().map(decode).transpose()
    }

    async fn update_delivery(
        &self,
        d: &WebhookDelivery,
        expected_version: u64,
    ) -> Result<(), Error> {
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item(d)?))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e) == Some("ConditionalCheckFailedException") => {
                Err(Error::VersionConflict {
                    id: d.id.clone(),
                    expected: expected_version,
                })
            }
            Err(e) => Err(sdk("updating a webhook delivery", e)),
        }
    }

    async fn deliveries_of_run(&self, run: &RunId) -> Result<Vec<WebhookDelivery>, Error> {
        self.query_all(
            BY_RUN_DELIVERIES,
            "dlv_run = :r",
            vec![(":r", s(run.as_str()))],
            10_000,
            true,
        )
        .await
    }

    async fn due_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        self.query_all(
            BY_DUE,
            "dlv_pending = :p AND dlv_due <= :b",
            vec![(":p", s("1")), (":b", n(before.timestamp_millis()))],
            limit,
            true,
        )
        .await
    }

    async fn dead_deliveries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        self.query_all(
            BY_DEAD,
            "dlv_dead = :d AND dlv_id > :a",
            // Key values may not be empty; every id sorts after "0" (`msg_…`).
            vec![(":d", s("1")), (":a", s(after.unwrap_or("0")))],
            limit,
            true,
        )
        .await
    }

    async fn cursor(&self, name: &str) -> Result<Option<String>, Error> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(format!("cur#{name}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk("reading a dispatch cursor", e))?;
        Ok(out
            .item
            .and_then(|i| i.get("value").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn set_cursor(&self, name: &str, value: &str) -> Result<(), Error> {
        self.client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(format!("cur#{name}")))
            .item("value", s(value))
            .send()
            .await
            .map(drop)
            .map_err(|e| sdk("writing a dispatch cursor", e))
    }
}
