//! At most N jobs at a backend at once (a Space, a local model), across every process sharing
//! the store: each backend has a slot book (holders and waiters, first come first served)
//! written with compare-and-swap. A run takes a slot before its job goes to the backend and
//! gives it back when it stops occupying it (`Runs::mutate` sees every such change: done at the
//! Space, failed over, waiting for a quota, ended). Runs whose holder or waiter entry outlived
//! them (a process died between the two writes) are evicted by whoever finds them in the way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use spaceport_core::ports::SlotBook;
use spaceport_core::{Error, Progress, Run, RunId, Status};

use crate::runs::Runs;

/// How far ahead a run waiting for a slot is marked as looked after (renewed at half of it),
/// so the sweeper leaves its circulating message alone yet re-sends a lost one soon after.
const WATCH: chrono::Duration = chrono::Duration::seconds(60);

/// Whether a run may send its job to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Admit {
    /// It holds a slot (or the backend has no limit).
    Go,
    /// `ahead` runs wait before it, `waiting` in all; `holders` hold the backend's `limit` slots.
    Wait {
        ahead: usize,
        waiting: usize,
        limit: u32,
    },
}

impl Runs {
    /// The slot key and limit of the backend a run is on, when that backend has a limit.
    pub(crate) fn slot_limit(&self, run: &Run) -> Option<(String, u32)> {
        let p = self.pipelines.get(run.backend_pipeline()).ok()?;
        Some((p.slot_key(), p.in_flight_limit()?))
    }

    /// The slot a run occupies at `now`: live and not waiting out a delay, on a limited backend.
    pub(crate) fn occupied_slot(&self, run: &Run, now: DateTime<Utc>) -> Option<String> {
        let live = matches!(
            run.status,
            Status::Queued | Status::Submitting | Status::Running
        );
        let waiting = run.job().not_before.is_some_and(|t| t > now);
        if !live || waiting {
            return None;
        }
        self.slot_limit(run).map(|(key, _)| key)
    }

    /// Whether run `id` still wants backend `key` (a holder must not be waiting out a delay).
    async fn still_wants(&self, id: &str, key: &str, holder: bool) -> Result<bool, Error> {
        let Ok(id) = RunId::parse(id) else {
            return Ok(false);
        };
        let Some(run) = self.store.get(&id).await? else {
            return Ok(false);
        };
        let now = self.clock.now();
        Ok(if holder {
            self.occupied_slot(&run, now).as_deref() == Some(key)
        } else {
            matches!(
                run.status,
                Status::Queued | Status::Submitting | Status::Running
            ) && self.slot_limit(&run).is_some_and(|(k, _)| k == key)
        })
    }

    /// Takes one of the slots of `run`'s backend, or joins (or keeps) its place in the line.
    async fn admit(&self, run: &Run) -> Result<Admit, Error> {
        let Some((key, limit)) = self.slot_limit(run) else {
            return Ok(Admit::Go);
        };
        let me = run.id.to_string();
        for _ in 0..32 {
            let (mut book, version) = self.store.slots(&key).await?;
            if book.holders.contains(&me) {
                return Ok(Admit::Go);
            }
            let before = book.clone();
            // Entries whose runs are gone stand in the way: holders when the slots are full,
            // and the waiters that free slots would go to first.
            if book.holders.len() >= limit as usize {
                let mut kept = vec![];
                for h in std::mem::take(&mut book.holders) {
                    if self.still_wants(&h, &key, true).await? {
                        kept.push(h);
                    }
                }
                book.holders = kept;
            }
            let free = (limit as usize).saturating_sub(book.holders.len());
            let ahead: Vec<String> = book
                .waiters
                .iter()
                .take_while(|w| **w != me)
                .take(free)
                .cloned()
                .collect();
            for w in ahead {
                if !self.still_wants(&w, &key, false).await? {
                    book.waiters.retain(|x| *x != w);
                }
            }
            if !book.waiters.contains(&me) {
                book.waiters.push(me.clone());
            }
            let ahead = book.waiters.iter().position(|w| *w == me).unwrap_or(0);
            let free = (limit as usize).saturating_sub(book.holders.len());
            let admit = if ahead < free {
                book.waiters.retain(|w| *w != me);
                book.holders.push(me.clone());
                Admit::Go
            } else {
                Admit::Wait {
                    ahead,
                    waiting: book.waiters.len(),
                    limit,
                }
            };
            if book == before {
                return Ok(admit);
            }
            match self.store.put_slots(&key, &book, version).await {
                Ok(()) => return Ok(admit),
                Err(Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal(format!(
            "the slot book of {key} kept changing"
        )))
    }

    /// Gives back run `id`'s slot of `key` (or its place in the line).
    pub(crate) async fn leave(&self, key: &str, id: &RunId) -> Result<(), Error> {
        let me = id.to_string();
        for _ in 0..32 {
            let (mut book, version) = self.store.slots(key).await?;
            let before = book.clone();
            book.holders.retain(|h| *h != me);
            book.waiters.retain(|w| *w != me);
            if book == before {
                return Ok(());
            }
            match self.store.put_slots(key, &book, version).await {
                Ok(()) => return Ok(()),
                Err(Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal(format!(
            "the slot book of {key} kept changing"
        )))
    }

    /// `None` when the run may send its job to its backend now; else how long its step waits
    /// before asking again (its place in the line shown on the run meanwhile).
    pub(crate) async fn hold_back(&self, run: &Run) -> Result<Option<Duration>, Error> {
        Ok(match self.admit(run).await? {
            Admit::Go => None,
            Admit::Wait {
                ahead,
                waiting,
                limit,
            } => Some(self.wait_for_slot(&run.id, ahead, waiting, limit).await?),
        })
    }

    /// A run that must wait for a slot shows its place in the line; the step tries again after
    /// `slot_poll`.
    async fn wait_for_slot(
        &self,
        id: &RunId,
        ahead: usize,
        waiting: usize,
        limit: u32,
    ) -> Result<Duration, Error> {
        let now = self.clock.now();
        self.mutate(id, |run| {
            let progress = Progress {
                stage: Some("waiting_for_backend".into()),
                queue_rank: Some(ahead as u64),
                queue_size: Some(waiting as u64),
                message: Some(format!(
                    "{ahead} run(s) ahead for {} (at most {limit} at once)",
                    run.backend.target
                )),
                ..Progress::default()
            };
            let watched = run.job().watched_until.is_some_and(|t| t > now + WATCH / 2);
            // A step elsewhere may have taken it meanwhile (its slot came free): leave it be.
            let waiting =
                matches!(run.status, Status::Queued | Status::Submitting) && !run.job().leased(now);
            if !waiting || (run.progress == progress && watched) {
                return Ok(false);
            }
            run.job.get_or_insert_default().watched_until = Some(now + WATCH);
            if run.progress != progress {
                run.set_progress(progress, now);
            }
            Ok(true)
        })
        .await?;
        Ok(self.config.slot_poll)
    }

    /// Every limited backend's holders and waiters, for `/readyz`.
    pub async fn slot_books(&self) -> Result<Vec<(String, SlotBook)>, Error> {
        self.store.all_slots().await
    }
}
