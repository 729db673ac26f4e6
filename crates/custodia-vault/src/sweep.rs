//! The retention sweeper and legal holds (invariant 3). A sweep deletes every record whose
//! expiry has passed and that no hold keeps, in batches the store deletes and audits
//! atomically ([`DataStore::sweep_expired`](custodia_store::DataStore::sweep_expired)): a crash
//! between batches loses nothing and repeats nothing, the next sweep carries on where it
//! stopped, and two instances sweeping the same database share the work without doing any of
//! it twice. Statutory records need nothing special here: an erasure kept them, storage-only,
//! with their own expiry, and the sweep deletes them when that expiry comes.
//!
//! Media objects follow the records (see [`crate::media`]): objects left deleting by a crash or
//! an erasure are finished; expired objects no hold keeps are claimed in batches
//! ([`DataStore::claim_expired_media`](custodia_store::DataStore::claim_expired_media): shredded
//! and audited with their rule in one transaction), then their bytes and rows are deleted; and
//! uploads pending for longer than [`ABANDONED_UPLOAD_AGE`](crate::media::ABANDONED_UPLOAD_AGE)
//! by the vault's clock are removed, audited as `media_deleted` with outcome
//! `abandoned_upload`. Each step is idempotent, so a sweep killed at any point leaves what the
//! next one completes.

use std::collections::BTreeMap;

use custodia_audit::EventKind;
use custodia_core::{HoldId, SubjectId, Timestamp};
use custodia_store::{HoldRow, Mutation, StoreError, WriteBatch};

use crate::error::VaultError;
use crate::vault::{Progress, Vault};

/// The longest hold reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What a sweep did, or in a dry run would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Whether this was a dry run (nothing deleted; `deleted` counts what would go).
    pub dry_run: bool,
    /// Expired records and media objects deleted (or due, in a dry run).
    pub deleted: u64,
    /// Of `deleted`, the media objects (a dry run's counts do not tell them apart: 0 there).
    pub media_deleted: u64,
    /// Expired records and media objects a legal hold keeps.
    pub held: u64,
    /// Deleted (or due) records and media objects per (category, retention rule).
    pub by_rule: BTreeMap<(String, String), u64>,
    /// Media objects an earlier operation left deleting (a crash, an erasure's shred) whose
    /// bytes and rows this sweep removed; their deletion was audited then.
    pub media_finished: u64,
    /// Abandoned uploads removed.
    pub abandoned_uploads: u64,
}

impl Vault {
    /// Deletes every record and media object expired now that no hold keeps, `batch` per
    /// transaction, each with a `retention_deleted` audit entry naming its rule, and cleans up
    /// media left by interrupted operations (see the module documentation); reports progress
    /// after each batch. A dry run counts instead and changes nothing. The time is taken once at the start,
    /// so a sweep ends even while records keep expiring; what expires meanwhile waits for the
    /// next one.
    pub fn sweep(
        &self,
        dry_run: bool,
        batch: usize,
        actor: &str,
        progress: &mut dyn Progress,
    ) -> Result<SweepReport, VaultError> {
        if batch == 0 {
            return Err(VaultError::Invalid {
                field: "batch",
                reason: "must be at least 1".into(),
            });
        }
        let now = self.core.clock.now();
        let counts = self.core.data.count_expired(now)?;
        let due: u64 = counts.iter().map(|count| count.due).sum();
        let mut report = SweepReport {
            dry_run,
            ..SweepReport::default()
        };
        if dry_run {
            for count in counts {
                report.held += count.held;
                if count.due > 0 {
                    report.deleted += count.due;
                    report
                        .by_rule
                        .insert((count.category, count.rule), count.due);
                }
            }
            return Ok(report);
        }
        progress.advance(0, due);
        loop {
            let swept = self.core.data.sweep_expired(now, batch, actor)?;
            if swept.is_empty() {
                break;
            }
            for record in swept {
                report.deleted += 1;
                *report
                    .by_rule
                    .entry((record.category, record.rule))
                    .or_insert(0) += 1;
            }
            // Another instance may sweep alongside, so the estimate can be off either way.
            progress.advance(report.deleted, due.max(report.deleted));
        }
        self.sweep_media(now, batch, actor, &mut report, due, progress)?;
        // Counted after the loop: a hold released meanwhile let its records go with this sweep.
        report.held = self
            .core
            .data
            .count_expired(now)?
            .iter()
            .map(|count| count.held)
            .sum();
        Ok(report)
    }

    /// Places a legal hold on a subject's records, on a category's, on one category of one
    /// subject, or (neither given) on everything: the sweeper keeps what it covers until it is
    /// released or `ends_at` passes. The category must be declared in the policy, the subject
    /// must exist, `reason` must be 1 to 500 characters and `ends_at` in the future. Audited
    /// without the reason, which is the operator's free text.
    pub fn place_hold(
        &self,
        subject: Option<SubjectId>,
        category: Option<&str>,
        reason: &str,
        ends_at: Option<Timestamp>,
        actor: &str,
    ) -> Result<HoldRow, VaultError> {
        if let Some(category) = category
            && self.policy().category(category).is_none()
        {
            return Err(VaultError::UnknownCategory(category.to_owned()));
        }
        let length = reason.trim().chars().count();
        if length == 0 || reason.chars().count() > MAX_REASON_CHARS {
            return Err(VaultError::Invalid {
                field: "reason",
                reason: format!("must be 1 to {MAX_REASON_CHARS} characters"),
            });
        }
        let now = self.core.clock.now();
        if ends_at.is_some_and(|end| end <= now) {
            return Err(VaultError::Invalid {
                field: "ends_at",
                reason: "must be in the future".into(),
            });
        }
        if let Some(subject) = subject
            && self.core.data.subject(subject)?.is_none()
        {
            return Err(VaultError::SubjectNotFound(subject));
        }
        let hold = HoldRow {
            id: HoldId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?,
            subject,
            category: category.map(str::to_owned),
            reason: reason.to_owned(),
            created_at: now,
            ends_at,
            released_at: None,
        };
        let mut event = self
            .core
            .event(EventKind::HoldPlaced, actor)
            .with_outcome(hold.id.to_string());
        if let Some(subject) = subject {
            event = event.with_subject(subject.to_string());
        }
        if let Some(category) = category {
            event = event.with_category(category);
        }
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::InsertHold(hold.clone())],
            audit: vec![event],
        })?;
        Ok(hold)
    }

    /// Releases a legal hold: what it kept goes with the next sweep. Releasing a released hold
    /// changes nothing and audits nothing; an unknown id is
    /// [`StoreError::NotFound`].
    pub fn release_hold(&self, id: HoldId, actor: &str) -> Result<HoldRow, VaultError> {
        let hold = self
            .holds()?
            .into_iter()
            .find(|hold| hold.id == id)
            .ok_or_else(|| StoreError::NotFound(format!("hold {id}")))?;
        if hold.released_at.is_some() {
            return Ok(hold);
        }
        let now = self.core.clock.now();
        let mut event = self
            .core
            .event(EventKind::HoldReleased, actor)
            .with_outcome(id.to_string());
        if let Some(subject) = hold.subject {
            event = event.with_subject(subject.to_string());
        }
        if let Some(category) = &hold.category {
            event = event.with_category(category.clone());
        }
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::ReleaseHold { id, at: now }],
            audit: vec![event],
        })?;
        // Another instance may have released it first; the store kept the first time.
        Ok(self
            .holds()?
            .into_iter()
            .find(|hold| hold.id == id)
            .unwrap_or(HoldRow {
                released_at: Some(now),
                ..hold
            }))
    }

    /// Every legal hold, released and ended ones too, oldest first.
    pub fn holds(&self) -> Result<Vec<HoldRow>, VaultError> {
        Ok(self.core.data.holds()?)
    }
}
