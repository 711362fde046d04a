//! Backends' slot books (`spaceport_steps`' per-backend limits) in the `backend_slots` table: one
//! row per backend, the book as JSON and its version, written only if the version is still the
//! one the writer read.

use rusqlite::OptionalExtension;
use spaceport_core::Error;
use spaceport_core::ports::SlotBook;

use crate::db::sql_err;
use crate::store::SqliteStore;

fn book_from_json(body: &str) -> Result<SlotBook, Error> {
    serde_json::from_str(body)
        .map_err(|e| Error::Internal(format!("a stored slot book does not decode: {e}")))
}

impl SqliteStore {
    pub(crate) async fn read_slot_book(&self, key: &str) -> Result<(SlotBook, u64), Error> {
        let key = key.to_string();
        self.db
            .call(move |conn| {
                let row: Option<(String, i64)> = conn
                    .query_row(
                        "SELECT book, version FROM backend_slots WHERE key = ?1",
                        [&key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| sql_err("reading a slot book", e))?;
                match row {
                    None => Ok((SlotBook::default(), 0)),
                    Some((book, v)) => Ok((book_from_json(&book)?, v as u64)),
                }
            })
            .await
    }

    pub(crate) async fn write_slot_book(
        &self,
        key: &str,
        book: &SlotBook,
        expected: u64,
    ) -> Result<(), Error> {
        let key = key.to_string();
        let body = serde_json::to_string(book).map_err(|e| Error::Internal(e.to_string()))?;
        self.db
            .write("writing a slot book", move |tx| {
                let changed = if expected == 0 {
                    tx.execute(
                        "INSERT INTO backend_slots (key, book, version) VALUES (?1, ?2, 1)
                         ON CONFLICT (key) DO NOTHING",
                        rusqlite::params![key, body],
                    )
                } else {
                    tx.execute(
                        "UPDATE backend_slots SET book = ?2, version = version + 1
                         WHERE key = ?1 AND version = ?3",
                        rusqlite::params![key, body, expected as i64],
                    )
                }
                .map_err(|e| sql_err("writing a slot book", e))?;
                if changed == 0 {
                    return Err(Error::VersionConflict {
                        id: key.clone(),
                        expected,
                    });
                }
                Ok(())
            })
            .await
    }

    pub(crate) async fn all_slot_books(&self) -> Result<Vec<(String, SlotBook)>, Error> {
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare("SELECT key, book FROM backend_slots ORDER BY key")
                    .map_err(|e| sql_err("listing slot books", e))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(|e| sql_err("listing slot books", e))?;
                let mut out = vec![];
                for row in rows {
                    let (key, book) = row.map_err(|e| sql_err("listing slot books", e))?;
                    let book = book_from_json(&book)?;
                    if !book.holders.is_empty() || !book.waiters.is_empty() {
                        out.push((key, book));
                    }
                }
                Ok(out)
            })
            .await
    }
}
