//! Limits at the front door: per-key request rates (a token bucket per key and scope) and
//! per-tenant caps on runs in flight and stored bytes, checked when a run is created. Pure
//! functions of the state and the time, so the server, the Lambda and the edge (whose bucket
//! state lives in a key-value store) decide the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Scope;
use crate::error::Error;

/// A request rate: `per_second` tokens refill a bucket holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// Whether it limits anything (a zero rate turns the limit off).
    pub fn is_on(&self) -> bool {
        self.per_second > 0.0 && self.burst > 0
    }
}

/// The rates each scope's requests are held to, per key, when none is configured: Replicate's
/// published limits (600 creates and 3,000 other requests a minute), with a minute's burst.
pub fn default_rates() -> BTreeMap<Scope, Rate> {
    BTreeMap::from([
        (
            Scope::RunsWrite,
            Rate {
                per_second: 10.0,
                burst: 600,
            },
        ),
        (
            Scope::RunsRead,
            Rate {
                per_second: 50.0,
                burst: 3000,
            },
        ),
        (
            Scope::Admin,
            Rate {
                per_second: 50.0,
                burst: 3000,
            },
        ),
    ])
}

/// A token bucket's state: the tokens left when it was last counted, and when (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub at_ms: i64,
}

impl Bucket {
    /// Takes one token from `state` (a full bucket when `None`) at `now_ms`: the new state and
    /// `Ok`, or the state unchanged and how long until a token is there.
    pub fn take(state: Option<Bucket>, rate: &Rate, now_ms: i64) -> (Bucket, Result<(), Duration>) {
        let burst = f64::from(rate.burst);
        let mut b = state.unwrap_or(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        // A clock that steps back refills nothing (and never drains).
        let elapsed = (now_ms - b.at_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate.per_second).min(burst);
        b.at_ms = b.at_ms.max(now_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            (b, Ok(()))
        } else {
            let wait = (1.0 - b.tokens) / rate.per_second;
            (b, Err(Duration::from_secs_f64(wait)))
        }
    }
}

/// What a tenant holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Runs not yet in a terminal state.
    pub runs_in_flight: u64,
    /// Bytes of inputs and artifacts stored for its runs (not deleted).
    pub stored_bytes: u64,
}

/// The most a tenant may hold; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantCaps {
    pub runs_in_flight: Option<u64>,
    pub stored_bytes: Option<u64>,
}

impl TenantCaps {
    /// Whether any cap is set (else usage need not be read).
    pub fn any(&self) -> bool {
        self.runs_in_flight.is_some() || self.stored_bytes.is_some()
    }

    /// Whether `tenant`, holding `usage`, may create a run declaring `new_bytes` of inputs:
    /// `Error::LimitExceeded` naming the cap otherwise.
    pub fn admit(&self, tenant: &str, usage: Usage, new_bytes: u64) -> Result<(), Error> {
        if let Some(max) = self.runs_in_flight
            && usage.runs_in_flight >= max
        {
            return Err(Error::LimitExceeded(format!(
                "tenant {tenant:?} has {} runs in flight, its cap is {max}; wait for one to finish or cancel one",
                usage.runs_in_flight
            )));
        }
        if let Some(max) = self.stored_bytes
            && usage.stored_bytes.saturating_add(new_bytes) > max
        {
            return Err(Error::LimitExceeded(format!(
                "tenant {tenant:?} stores {} bytes and this run declares {new_bytes} more, over its cap of {max}; delete finished runs to make room",
                usage.stored_bytes
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spends_its_burst_then_refills_at_its_rate() {
        let rate = Rate {
            per_second: 2.0,
            burst: 3,
        };
        let mut state = None;
        for _ in 0..3 {
            let (b, ok) = Bucket::take(state, &rate, 1_000);
            assert!(ok.is_ok());
            state = Some(b);
        }
        let (b, wait) = Bucket::take(state, &rate, 1_000);
        assert_eq!(wait.unwrap_err(), Duration::from_millis(500));
        // Half a second later one token is back, and only one.
        let (b, ok) = Bucket::take(Some(b), &rate, 1_500);
        assert!(ok.is_ok());
        assert!(Bucket::take(Some(b), &rate, 1_500).1.is_err());
        // A long pause fills the bucket to its burst, not beyond.
        let (b, _) = Bucket::take(Some(b), &rate, 100_000);
        assert_eq!(b.tokens, 2.0);
        // A clock stepping back neither refills nor panics.
        let (b2, _) = Bucket::take(Some(b), &rate, 50_000);
        assert_eq!((b2.tokens, b2.at_ms), (1.0, 100_000));
    }

    #[test]
    fn caps_admit_up_to_their_limit_and_name_it() {
        let caps = TenantCaps {
            runs_in_flight: Some(2),
            stored_bytes: Some(1000),
        };
        let u = |runs, bytes| Usage {
            runs_in_flight: runs,
            stored_bytes: bytes,
        };
        assert!(caps.admit("acme", u(1, 900), 100).is_ok());
        let e = caps.admit("acme", u(2, 0), 0).unwrap_err();
        assert!(e.to_string().contains("2 runs in flight"), "{e}");
        assert_eq!(e.http_status(), 429);
        let e = caps.admit("acme", u(0, 901), 100).unwrap_err();
        assert!(e.to_string().contains("1000"), "{e}");
        assert!(TenantCaps::default().admit("acme", u(99, 99), 99).is_ok());
        assert!(!TenantCaps::default().any());
    }
}
