//! The worker lease, as pure functions over a run's job record: every step claims, renews and
//! releases through these, inside the conditional write that stores the run, so two workers can
//! never both believe they hold a run.

use chrono::{DateTime, Utc};

use crate::job::Lease;
use crate::run::Run;

/// Takes the lease for `me` until `until`, unless any live lease is held at `now` — `me`'s own
/// included: a duplicate message handled at the same time in the same process must not do the
/// work twice. Returns whether the lease was taken.
pub fn claim(run: &mut Run, me: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> bool {
    let job = run.job.get_or_insert_default();
    if job.leased(now) {
        return false;
    }
    job.lease = Some(Lease {
        holder: me.to_string(),
        until,
    });
    true
}

/// Extends `me`'s lease to `until`; false (and nothing changed) when the run is terminal or the
/// lease is not `me`'s any more.
pub fn renew(run: &mut Run, me: &str, until: DateTime<Utc>) -> bool {
    if run.status.is_terminal() {
        return false;
    }
    let job = run.job.get_or_insert_default();
    if !job.held_by(me) {
        return false;
    }
    job.lease = Some(Lease {
        holder: me.to_string(),
        until,
    });
    true
}

/// Drops `me`'s lease so another worker can take the run at once; false when it was not `me`'s.
pub fn release(run: &mut Run, me: &str) -> bool {
    match run.job.as_mut() {
        Some(job) if job.held_by(me) => {
            job.lease = None;
            true
        }
        _ => false,
    }
}

/// Drops whatever lease the run has (the run is ending or moving to another step).
pub fn clear(run: &mut Run) {
    if let Some(job) = run.job.as_mut() {
        job.lease = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::tests::sample;
    use crate::status::Status;

    #[test]
    fn a_live_lease_keeps_everyone_out_until_it_lapses() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(30);
        let mut run = sample(now);
        assert!(claim(&mut run, "a", now, later));
        assert!(!claim(&mut run, "b", now, later), "another worker");
        assert!(
            !claim(&mut run, "a", now, later),
            "a duplicate in the same worker"
        );
        let lapsed = later + chrono::Duration::seconds(1);
        assert!(claim(
            &mut run,
            "b",
            lapsed,
            lapsed + chrono::Duration::seconds(30)
        ));
        assert_eq!(
            run.job.as_ref().unwrap().lease.as_ref().unwrap().holder,
            "b"
        );
    }

    #[test]
    fn only_the_holder_renews_or_releases() {
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(30);
        let mut run = sample(now);
        assert!(!renew(&mut run, "a", until), "no lease to renew");
        assert!(claim(&mut run, "a", now, until));
        assert!(!renew(&mut run, "b", until));
        assert!(!release(&mut run, "b"));
        let further = until + chrono::Duration::seconds(30);
        assert!(renew(&mut run, "a", further));
        assert_eq!(
            run.job.as_ref().unwrap().lease.as_ref().unwrap().until,
            further
        );
        assert!(release(&mut run, "a"));
        assert!(run.job.as_ref().unwrap().lease.is_none());
        assert!(!release(&mut run, "a"), "released once");
    }

    #[test]
    fn a_terminal_run_is_never_renewed() {
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(30);
        let mut run = sample(now);
        assert!(claim(&mut run, "a", now, until));
        run.transition(Status::Cancelled, now).unwrap();
        assert!(!renew(&mut run, "a", until));
    }
}
