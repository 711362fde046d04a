//! Prefixed, sortable identifiers (`run_01J…`). They validate on parse so a malformed id is
//! rejected at the edge instead of reaching a store.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A run's id: `run_` followed by a ULID (time-sortable, 26 Crockford base32 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// A new id for a run created at `now_ms` (Unix milliseconds) with the given randomness.
    pub fn new(now_ms: u64, random: u128) -> Self {
        let ulid = ulid::Ulid::from_parts(now_ms, random);
        RunId(format!("run_{ulid}"))
    }

    /// Parses `run_<ULID>`; anything else is a validation error naming the id.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let rest = s.strip_prefix("run_").ok_or_else(|| Error::NotFound {
            what: "run",
            id: s.to_string(),
        })?;
        ulid::Ulid::from_string(rest).map_err(|_| Error::NotFound {
            what: "run",
            id: s.to_string(),
        })?;
        Ok(RunId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RunId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        RunId::parse(&s)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = RunId::new(1_700_000_000_000, 7);
        let b = RunId::new(1_700_000_000_001, 1);
        assert!(a < b);
        assert_eq!(RunId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "run_",
            "run_xyz",
            "evt_01JD0000000000000000000000",
            "run_01JD0000000000000000000000/../x",
        ] {
            assert!(RunId::parse(bad).is_err(), "{bad}");
        }
    }
}
