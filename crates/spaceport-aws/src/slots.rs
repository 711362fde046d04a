//! Backends' slot books (`spaceport_steps`' per-backend limits) in the runs table: one item per
//! backend (`slot#{key}`: the book as JSON and its version), written with a conditional put, and
//! a `slots` item listing every key so `/readyz` reads the books without a scan.

use aws_sdk_dynamodb::types::AttributeValue;
use spaceport_core::Error;
use spaceport_core::ports::SlotBook;

use crate::dynamo::{DynamoRunStore, n, s};
use crate::error::{code_of, sdk};

/// A backend's slot book: an item of its own beside the runs.
fn slot_pk(key: &str) -> String {
    format!("slot#{key}")
}

/// The item listing every slot book's key.
const SLOT_KEYS_PK: &str = "slots";

impl DynamoRunStore {
    pub(crate) async fn read_slot_book(&self, key: &str) -> Result<(SlotBook, u64), Error> {
        let Some(item) = self.get_item(slot_pk(key)).await? else {
            return Ok((SlotBook::default(), 0));
        };
        let book = item
            .get("book")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| Error::Internal(format!("slot book {key:?} has no body")))?;
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let book = serde_json::from_str(book)
            .map_err(|e| Error::Internal(format!("slot book {key:?} does not decode: {e}")))?;
        Ok((book, version))
    }

    pub(crate) async fn write_slot_book(
        &self,
        key: &str,
        book: &SlotBook,
        expected: u64,
    ) -> Result<(), Error> {
        let body = serde_json::to_string(book).map_err(|e| Error::Internal(e.to_string()))?;
        let mut put = self
            .client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(slot_pk(key)))
            .item("book", s(body))
            .item("version", n(expected + 1));
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", n(expected))
        };
        match put.send().await {
            Ok(_) => {}
            Err(e) if code_of(&e) == Some("ConditionalCheckFailedException") => {
                return Err(Error::VersionConflict {
                    id: key.to_string(),
                    expected,
                });
            }
            Err(e) => return Err(sdk("writing a slot book", e)),
        }
        if expected == 0 {
            // The registry `all_slots` reads, so /readyz needs no table scan.
            self.client()
                .update_item()
                .table_name(self.table())
                .key("pk", s(SLOT_KEYS_PK))
                .update_expression("ADD #k :k")
                .expression_attribute_names("#k", "keys")
                .expression_attribute_values(":k", AttributeValue::Ss(vec![key.to_string()]))
                .send()
                .await
                .map_err(|e| sdk("registering a slot book", e))?;
        }
        Ok(())
    }

    pub(crate) async fn all_slot_books(&self) -> Result<Vec<(String, SlotBook)>, Error> {
        let keys = match self.get_item(SLOT_KEYS_PK.to_string()).await? {
            Some(item) => item
                .get("keys")
                .and_then(|v| v.as_ss().ok())
                .cloned()
                .unwrap_or_default(),
            None => vec![],
        };
        let mut out = vec![];
        for key in keys {
            let (book, _) = self.read_slot_book(&key).await?;
            if !book.holders.is_empty() || !book.waiters.is_empty() {
                out.push((key, book));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
