//! When a run leaves its pipeline's backend for a fallback (`fallback` and `[failover]`).

use serde::{Deserialize, Serialize};

/// When a run leaves this pipeline's backend for the next one that can do the same job. Each
/// fallback runs at most once for a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// Pipelines to try in order after `fallback` (they take the same inputs and make at least
    /// the same outputs).
    #[serde(default)]
    pub to: Vec<String>,
    /// When the backend is down: unreachable after its tries, or the Hub says it is paused or
    /// broken, or it did not wake in time. On unless set to false.
    #[serde(default = "yes")]
    pub when_down: bool,
    /// When a quota (ZeroGPU minutes, a rate limit) would make the run wait longer than this many
    /// seconds. Unset: wait while the deadline allows.
    #[serde(default)]
    pub when_quota_wait_over_s: Option<u64>,
    /// When the Space puts the job behind more than this many others; a full queue counts as
    /// above it. Unset: wait in the queue.
    #[serde(default)]
    pub when_queue_rank_over: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            to: vec![],
            when_down: true,
            when_quota_wait_over_s: None,
            when_queue_rank_over: None,
        }
    }
}
