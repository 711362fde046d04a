//! The run status machine. Moves are checked here; the store applies them with a condition on
//! the previous status and version, so a duplicate or late message cannot move a run twice.

use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Queued,
    Submitting,
    Running,
    Fetching,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 9] = [
        Status::Created,
        Status::Queued,
        Status::Submitting,
        Status::Running,
        Status::Fetching,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
        Status::Expired,
    ];

    /// The snake_case spelling used on the wire and in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Queued => "queued",
            Status::Submitting => "submitting",
            Status::Running => "running",
            Status::Fetching => "fetching",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Cancelled | Status::Expired
        )
    }

    /// Whether the machine allows `self → to`.
    ///
    /// `running → submitting` is a new attempt after the Space lost the job.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        if self.is_terminal() {
            return false;
        }
        match to {
            Failed | Cancelled | Expired => true,
            Queued => self == Created,
            Submitting => matches!(self, Queued | Running),
            Running => self == Submitting,
            Fetching => self == Running,
            Succeeded => self == Fetching,
            Created => false,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_moves_are_allowed() {
        use Status::*;
        let path = [Created, Queued, Submitting, Running, Fetching, Succeeded];
        for w in path.windows(2) {
            assert!(w[0].can_move_to(w[1]), "{} -> {}", w[0], w[1]);
        }
    }

    #[test]
    fn terminal_states_never_move() {
        for from in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in Status::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn skipping_a_step_is_refused() {
        use Status::*;
        assert!(!Created.can_move_to(Running));
        assert!(!Queued.can_move_to(Fetching));
        assert!(!Running.can_move_to(Succeeded));
        assert!(!Fetching.can_move_to(Queued));
        assert!(Running.can_move_to(Submitting));
    }

    #[test]
    fn every_live_state_can_fail_cancel_or_expire() {
        for from in Status::ALL.into_iter().filter(|s| !s.is_terminal()) {
            for to in [Status::Failed, Status::Cancelled, Status::Expired] {
                assert!(from.can_move_to(to));
            }
        }
    }

    #[test]
    fn parse_round_trips() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("done"), None);
    }
}
