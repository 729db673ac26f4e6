//! [`Vault`]: subjects and their encrypted records under the policy, erasure by crypto-shredding,
//! epoch rotation and audit verification. Every operation either commits its data change and its
//! audit entries together or changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use custodia_audit::EventKind;
use custodia_core::{Clock, KeyId, RecordId, SubjectId, Timestamp};
use custodia_crypto::{DataKey, FieldContext};
use custodia_objects::ObjectStore;
use custodia_policy::CheckedPolicy;
use custodia_policy::model::{LegalBasis, Policy, Trigger};
use custodia_store::{
    DataKeyKind, DataKeyRow, DataStore, KeyStore, MediaState, MediaUpdate, Mutation, RecordRow,
    SubjectRow, SubjectUpdate, WriteBatch,
};
use zeroize::Zeroizing;

use crate::cache::Caches;
use crate::error::VaultError;
use crate::keeper::Keeper;
use crate::keyring::RootKeySource;
use crate::profile::{NewSubject, SubjectProfile};
use crate::published::{self, PolicyState, Published};
use crate::retention::{self, Lifecycle};

/// The category under which a subject's own profile is sealed.
pub(crate) const PROFILE_CATEGORY: &str = "custodia.profile";

/// Reports progress of a long operation: `done` of `total` (total may be an estimate).
pub trait Progress {
    /// Called after each step.
    fn advance(&mut self, done: u64, total: u64);
}

impl<F: FnMut(u64, u64)> Progress for F {
    fn advance(&mut self, done: u64, total: u64) {
        self(done, total);
    }
}

/// A subject as the vault shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The pseudonymous id.
    pub id: SubjectId,
    /// The decrypted profile; `None` once erased.
    pub profile: Option<SubjectProfile>,
    /// When created.
    pub created_at: Timestamp,
    /// Last activity.
    pub last_active_at: Timestamp,
    /// When the account was closed.
    pub closed_at: Option<Timestamp>,
    /// When the subject was erased.
    pub erased_at: Option<Timestamp>,
}

/// A value to store.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// The policy category.
    pub category: &'a str,
    /// The purpose it is collected for.
    pub purpose: &'a str,
    /// The value.
    pub value: &'a [u8],
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenRecord {
    /// The new record's id.
    pub id: RecordId,
    /// Whose.
    pub subject: SubjectId,
    /// Its category.
    pub category: String,
    /// The rule that governs it.
    pub rule: String,
    /// When it expires, if its trigger has happened.
    pub expires_at: Option<Timestamp>,
    /// Kept through an erasure, storage-only.
    pub statutory: bool,
}

/// A decrypted record.
#[derive(Debug, Clone)]
pub struct RecordValue {
    /// The record's id.
    pub id: RecordId,
    /// Its category.
    pub category: String,
    /// The purpose it was collected for.
    pub purpose: String,
    /// When collected.
    pub collected_at: Timestamp,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// The value, wiped from memory when dropped.
    pub value: Zeroizing<Vec<u8>>,
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    /// The new current epoch.
    pub epoch: u32,
    /// How many data keys were re-wrapped.
    pub rewrapped: u64,
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureReport {
    /// Data keys destroyed.
    pub keys_destroyed: usize,
    /// Records deleted.
    pub records_deleted: u64,
    /// Media objects deleted (bytes and rows).
    pub media_deleted: u64,
    /// Statutory records and media objects kept storage-only.
    pub statutory_kept: usize,
}

/// The encrypted personal-data vault: a [`Keeper`] (stores, keys, clock, audit) under the
/// published policy in force.
#[derive(Debug)]
pub struct Vault {
    pub(crate) core: Keeper,
    policy: RwLock<Arc<PolicyState>>,
    pub(crate) caches: Arc<Caches>,
    /// Where media objects' sealed bytes live ([`Vault::with_media_store`]).
    pub(crate) objects: Option<Arc<dyn ObjectStore>>,
}

/// The subject's data keys, unwrapped for one operation.
pub(crate) struct SubjectKeys {
    pub(crate) ordinary: (KeyId, DataKey),
    pub(crate) statutory: Option<(KeyId, DataKey)>,
}

pub(crate) fn poisoned() -> VaultError {
    VaultError::Store(custodia_store::StoreError::Backend(
        "key ring lock poisoned".into(),
    ))
}

impl Vault {
    /// Opens the vault: initialises an empty key store or checks the root key against it, and
    /// brings the published policy history in line with `policy` (first start publishes it, a
    /// new version is published with its diff, a file older than the version in force yields to
    /// it). The policy must check clean.
    pub fn open(
        data: Arc<dyn DataStore>,
        keys: Arc<dyn KeyStore>,
        policy: CheckedPolicy,
        clock: Arc<dyn Clock>,
        root: &RootKeySource,
    ) -> Result<Self, VaultError> {
        let core = Keeper::open(data, keys, clock, root)?;
        let state = published::sync(&core, policy, "system")?;
        let caches = Arc::new(Caches::default());
        let head = core.data.audit_head()?.map_or(0, |anchor| anchor.seq);
        crate::cache::start_tail(&caches, core.data.clone(), head);
        Ok(Self {
            core,
            policy: RwLock::new(Arc::new(state)),
            caches,
            objects: None,
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.state().policy.clone()
    }

    /// The policy in force with its source and gate index.
    pub fn state(&self) -> Arc<PolicyState> {
        // A poisoned lock still holds a complete state: the swap is a single assignment.
        match self.policy.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_state(&self, state: PolicyState) {
        match self.policy.write() {
            Ok(mut guard) => *guard = Arc::new(state),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(state),
        }
    }

    /// Every published version, oldest first.
    pub fn policy_history(&self) -> Result<Vec<custodia_store::PolicyVersionRow>, VaultError> {
        Ok(self.core.data.policy_versions()?)
    }

    /// Publishes a new version from its TOML source: it must check clean and carry a new
    /// version label. Consents for the purposes its material changes touch stop counting until
    /// renewed. Takes effect at once.
    pub fn publish_policy(&self, source: &str, actor: &str) -> Result<Published, VaultError> {
        let checked = published::checked("submitted policy", source)?;
        let history = self.core.data.policy_versions()?;
        let (report, history) =
            published::publish_into(&self.core, checked.clone(), &history, actor)?;
        self.set_state(published::compile(checked, &history));
        Ok(report)
    }

    /// Switches to the newest published version if another instance published one; returns
    /// whether it changed.
    pub fn reload_policy(&self) -> Result<bool, VaultError> {
        let history = self.core.data.policy_versions()?;
        let current = self.state();
        let latest_changed = history
            .last()
            .is_some_and(|row| row.version != *current.policy.version.get_ref());
        if latest_changed {
            self.set_state(published::load_latest(&history)?);
        }
        Ok(latest_changed)
    }

    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.core.clock.now()
    }

    /// The data store (for read-only tools such as exports and benchmarks).
    pub fn data_store(&self) -> &Arc<dyn DataStore> {
        self.core.data_store()
    }

    /// The stores, keys and clock: key rotation and audit verification live there.
    pub fn keeper(&self) -> &Keeper {
        &self.core
    }

    /// Registers a subject. Its profile is sealed under a fresh data key.
    pub fn create_subject(&self, new: &NewSubject, actor: &str) -> Result<Subject, VaultError> {
        new.validate()?;
        let lookup = self.core.lookup(&new.external_id)?;
        if self.core.data.subject_by_lookup(&lookup)?.is_some() {
            return Err(VaultError::SubjectExists);
        }
        if let Some(guardian) = new.guardian {
            self.live_subject(guardian)?;
        }
        let id = SubjectId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?;
        let (key_row, key) = self.core.new_data_key(id, DataKeyKind::Subject)?;
        let profile_json =
            Zeroizing::new(serde_json::to_vec(new).map_err(|_| VaultError::Invalid {
                field: "profile",
                reason: "cannot be encoded".into(),
            })?);
        let id_text = id.to_string();
        let profile = key.seal(
            &FieldContext::new(&id_text, PROFILE_CATEGORY, &id_text),
            &profile_json,
        )?;
        // The key is stored first: a crash before the subject commits leaves an orphan key,
        // which is harmless, never a subject whose key is missing.
        self.core
            .keys
            .insert_data_keys(std::slice::from_ref(&key_row))?;
        let now = self.core.clock.now();
        let row = SubjectRow {
            id,
            lookup,
            profile,
            key: key_row.id,
            created_at: now,
            last_active_at: now,
            closed_at: None,
            erased_at: None,
        };
        let batch = WriteBatch {
            mutations: vec![Mutation::InsertSubject(row)],
            audit: vec![
                self.core
                    .event(EventKind::KeyCreated, actor)
                    .with_subject(&id_text),
                self.core
                    .event(EventKind::SubjectCreated, actor)
                    .with_subject(&id_text),
            ],
        };
        match self.core.data.commit(batch) {
            Ok(_) => {}
            // Lost a race with another writer for the same external id.
            Err(custodia_store::StoreError::Conflict(_)) => {
                let _ = self.core.keys.destroy_data_keys(&[key_row.id]);
                return Err(VaultError::SubjectExists);
            }
            Err(err) => return Err(err.into()),
        }
        Ok(Subject {
            id,
            profile: Some(new.clone()),
            created_at: now,
            last_active_at: now,
            closed_at: None,
            erased_at: None,
        })
    }

    pub(crate) fn live_subject(&self, id: SubjectId) -> Result<SubjectRow, VaultError> {
        let row = self
            .core
            .data
            .subject(id)?
            .ok_or(VaultError::SubjectNotFound(id))?;
        if row.erased_at.is_some() {
            return Err(VaultError::SubjectErased(id));
        }
        Ok(row)
    }

    /// A subject with its decrypted profile (no profile once erased).
    pub fn subject(&self, id: SubjectId) -> Result<Subject, VaultError> {
        let row = self
            .core
            .data
            .subject(id)?
            .ok_or(VaultError::SubjectNotFound(id))?;
        let profile = if row.erased_at.is_some() {
            None
        } else {
            let key = self.core.load_key(row.key, id)?;
            let id_text = id.to_string();
            let plain = key.open(
                &FieldContext::new(&id_text, PROFILE_CATEGORY, &id_text),
                &row.profile,
            )?;
            Some(
                serde_json::from_slice(&plain)
                    .map_err(|_| custodia_store::StoreError::Corrupt(format!("profile of {id}")))?,
            )
        };
        Ok(Subject {
            id,
            profile,
            created_at: row.created_at,
            last_active_at: row.last_active_at,
            closed_at: row.closed_at,
            erased_at: row.erased_at,
        })
    }

    /// A subject with its decrypted profile, for a person or an operator to see: the read of
    /// personal data is audited, like any other.
    pub fn read_subject(&self, id: SubjectId, actor: &str) -> Result<Subject, VaultError> {
        let subject = self.subject(id)?;
        if subject.profile.is_some() {
            self.core.data.commit(WriteBatch {
                mutations: Vec::new(),
                audit: vec![
                    self.core
                        .event(EventKind::RecordRead, actor)
                        .with_subject(id.to_string())
                        .with_category(PROFILE_CATEGORY),
                ],
            })?;
        }
        Ok(subject)
    }

    /// The subject with this external id, if any.
    pub fn find_subject(&self, external_id: &str) -> Result<Option<SubjectId>, VaultError> {
        let lookup = self.core.lookup(external_id)?;
        Ok(self.core.data.subject_by_lookup(&lookup)?.map(|row| row.id))
    }

    /// Checks, under `policy`, that `purpose` exists and covers `category`, and that `category`
    /// is declared. Callers pass one snapshot for a whole batch.
    pub(crate) fn check_use(
        policy: &Policy,
        category: &str,
        purpose: &str,
    ) -> Result<(), VaultError> {
        if policy.category(category).is_none() {
            return Err(VaultError::UnknownCategory(category.to_owned()));
        }
        let declared = policy
            .purpose(purpose)
            .ok_or_else(|| VaultError::UnknownPurpose(purpose.to_owned()))?;
        if !declared.categories.iter().any(|c| c.get_ref() == category) {
            return Err(VaultError::PurposeDoesNotCover {
                purpose: purpose.to_owned(),
                category: category.to_owned(),
            });
        }
        Ok(())
    }

    pub(crate) fn subject_keys(
        &self,
        subject: &SubjectRow,
        need_statutory: bool,
        created: &mut Vec<DataKeyRow>,
    ) -> Result<SubjectKeys, VaultError> {
        let rows = self.core.keys.data_keys_of(subject.id)?;
        let ordinary_row = rows
            .iter()
            .find(|row| row.id == subject.key)
            .ok_or_else(|| VaultError::KeyDestroyed(subject.key.to_string()))?;
        let ordinary = (ordinary_row.id, self.core.unwrap_row(ordinary_row)?);
        let statutory = match rows.iter().find(|row| row.kind == DataKeyKind::Statutory) {
            Some(row) => Some((row.id, self.core.unwrap_row(row)?)),
            None if need_statutory => {
                let (row, key) = self.core.new_data_key(subject.id, DataKeyKind::Statutory)?;
                let id = row.id;
                created.push(row);
                Some((id, key))
            }
            None => None,
        };
        Ok(SubjectKeys {
            ordinary,
            statutory,
        })
    }

    /// Stores values for one subject in one commit.
    pub fn write_records(
        &self,
        subject: SubjectId,
        records: &[NewRecord<'_>],
        actor: &str,
    ) -> Result<Vec<WrittenRecord>, VaultError> {
        let items: Vec<(SubjectId, NewRecord<'_>)> =
            records.iter().map(|record| (subject, *record)).collect();
        self.ingest(&items, actor)
    }

    /// Stores many values, for any subjects, in one commit (group commit): either all are
    /// acknowledged or none is written.
    pub fn ingest(
        &self,
        items: &[(SubjectId, NewRecord<'_>)],
        actor: &str,
    ) -> Result<Vec<WrittenRecord>, VaultError> {
        let now = self.core.clock.now();
        let policy = self.policy();
        let mut subjects: HashMap<SubjectId, (SubjectRow, SubjectKeys)> = HashMap::new();
        let mut created_keys = Vec::new();
        let mut batch = WriteBatch::default();
        let mut written = Vec::with_capacity(items.len());
        let mut written_groups: std::collections::BTreeMap<
            (SubjectId, &str, &str, String),
            (String, u64),
        > = std::collections::BTreeMap::new();
        for (subject_id, record) in items {
            Self::check_use(&policy, record.category, record.purpose)?;
            let governing = retention::rule_for(&policy, record.category)
                .ok_or_else(|| VaultError::UnknownCategory(record.category.to_owned()))?;
            let statutory = governing.rule.statutory;
            if !subjects.contains_key(subject_id) {
                let row = self.live_subject(*subject_id)?;
                let keys = self.subject_keys(&row, false, &mut created_keys)?;
                subjects.insert(*subject_id, (row, keys));
            }
            let Some((row, keys)) = subjects.get_mut(subject_id) else {
                return Err(VaultError::SubjectNotFound(*subject_id));
            };
            if statutory && keys.statutory.is_none() {
                let (key_row, key) = self
                    .core
                    .new_data_key(*subject_id, DataKeyKind::Statutory)?;
                keys.statutory = Some((key_row.id, key));
                created_keys.push(key_row);
            }
            let (key_id, key) = match (statutory, &keys.statutory) {
                (true, Some((id, key))) => (*id, key),
                _ => (keys.ordinary.0, &keys.ordinary.1),
            };
            let expires_at = retention::expiry_at_write(
                &governing,
                &Lifecycle {
                    now,
                    closed_at: row.closed_at,
                    last_active_at: row.last_active_at,
                },
            )?;
            // Time-ordered ids keep the records index append-mostly (collected_at is stored beside
            // the id in clear, so the order reveals nothing new).
            let id = RecordId::ordered(now).map_err(|_| custodia_crypto::CryptoError::Rng)?;
            let (id_text, subject_text) = (id.to_string(), subject_id.to_string());
            let ciphertext = key.seal(
                &FieldContext::new(&subject_text, record.category, &id_text),
                record.value,
            )?;
            let rule = governing.id();
            batch.mutations.push(Mutation::InsertRecord(RecordRow {
                id,
                subject: *subject_id,
                category: record.category.to_owned(),
                purpose: record.purpose.to_owned(),
                key: key_id,
                ciphertext,
                collected_at: now,
                rule: rule.clone(),
                expires_at,
                statutory,
            }));
            // One audit entry per (subject, category, purpose, rule) per commit; the records
            // table keeps each id and its collection time beside it.
            let group = written_groups
                .entry((*subject_id, record.category, record.purpose, rule.clone()))
                .or_insert((id_text, 0u64));
            group.1 += 1;
            written.push(WrittenRecord {
                id,
                subject: *subject_id,
                category: record.category.to_owned(),
                rule,
                expires_at,
                statutory,
            });
        }
        for ((subject_id, category, purpose, rule), (first_record, count)) in written_groups {
            let event = self
                .core
                .event(EventKind::RecordWritten, actor)
                .with_subject(subject_id.to_string())
                .with_category(category)
                .with_purpose(purpose)
                .with_rule(rule);
            batch.audit.push(if count == 1 {
                event.with_record(first_record)
            } else {
                event.with_outcome(format!("records={count}"))
            });
        }
        for subject_id in subjects.keys() {
            batch.mutations.push(Mutation::UpdateSubject {
                id: *subject_id,
                update: SubjectUpdate {
                    last_active_at: Some(now),
                    ..SubjectUpdate::default()
                },
            });
        }
        if !created_keys.is_empty() {
            self.core.keys.insert_data_keys(&created_keys)?;
        }
        self.core.data.commit(batch)?;
        Ok(written)
    }

    /// Reads a subject's live records of `category` for `purpose`. The purpose must cover the
    /// category; records past their retention are not returned. After an erasure only statutory
    /// records remain, readable only for a legal obligation. Every record read is audited.
    pub fn read_records(
        &self,
        subject: SubjectId,
        category: &str,
        purpose: &str,
        actor: &str,
    ) -> Result<Vec<RecordValue>, VaultError> {
        let policy = self.policy();
        Self::check_use(&policy, category, purpose)?;
        let row = self
            .core
            .data
            .subject(subject)?
            .ok_or(VaultError::SubjectNotFound(subject))?;
        let legal_obligation = self
            .policy()
            .purpose(purpose)
            .is_some_and(|p| *p.basis.get_ref() == LegalBasis::LegalObligation);
        if row.erased_at.is_some() && !legal_obligation {
            return Err(VaultError::SubjectErased(subject));
        }
        let now = self.core.clock.now();
        let subject_text = subject.to_string();
        let mut keys: HashMap<KeyId, DataKey> = HashMap::new();
        let mut values = Vec::new();
        let mut audit = Vec::new();
        for record in self.core.data.records_of(subject, Some(category))? {
            if record.expires_at.is_some_and(|expiry| expiry <= now) {
                continue;
            }
            if row.erased_at.is_some() && !record.statutory {
                continue;
            }
            let key = match keys.entry(record.key) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(self.core.load_key(record.key, subject)?)
                }
            };
            let id_text = record.id.to_string();
            let value = key.open(
                &FieldContext::new(&subject_text, &record.category, &id_text),
                &record.ciphertext,
            )?;
            audit.push(
                self.core
                    .event(EventKind::RecordRead, actor)
                    .with_subject(&subject_text)
                    .with_category(category)
                    .with_purpose(purpose)
                    .with_record(id_text),
            );
            values.push(RecordValue {
                id: record.id,
                category: record.category,
                purpose: record.purpose,
                collected_at: record.collected_at,
                expires_at: record.expires_at,
                value,
            });
        }
        if !audit.is_empty() {
            self.core.data.commit(WriteBatch {
                mutations: Vec::new(),
                audit,
            })?;
        }
        Ok(values)
    }

    /// Deletes one record of a subject.
    pub fn delete_record(
        &self,
        subject: SubjectId,
        record: RecordId,
        actor: &str,
    ) -> Result<(), VaultError> {
        let row = self
            .core
            .data
            .record(record)?
            .filter(|row| row.subject == subject)
            .ok_or(VaultError::RecordNotFound(record))?;
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::DeleteRecord(record)],
            audit: vec![
                self.core
                    .event(EventKind::RecordDeleted, actor)
                    .with_subject(subject.to_string())
                    .with_category(row.category)
                    .with_record(record.to_string()),
            ],
        })?;
        Ok(())
    }

    /// Mutations that start the clock of every `account_closed` rule for a subject (only the
    /// statutory ones when `statutory_only`: after a shred nothing else is readable anyway, and
    /// touching every record would make the erasure as slow as the data is large).
    fn account_closed_expiries(
        &self,
        subject: SubjectId,
        closed_at: Timestamp,
        statutory_only: bool,
    ) -> Result<Vec<Mutation>, VaultError> {
        let mut mutations = Vec::new();
        let policy = self.policy();
        for (index, rule) in policy.retention.iter().enumerate() {
            if rule.after != Trigger::AccountClosed || (statutory_only && !rule.statutory) {
                continue;
            }
            let id = rule.id_or(index);
            let expires_at = retention::add(closed_at, rule.keep.get_ref())
                .ok_or_else(|| VaultError::Expiry { rule: id.clone() })?;
            mutations.push(Mutation::SetExpiry {
                subject,
                rule: id,
                expires_at,
            });
        }
        Ok(mutations)
    }

    /// Closes a subject's account: every `account_closed` retention starts counting now.
    pub fn close_account(&self, subject: SubjectId, actor: &str) -> Result<(), VaultError> {
        let row = self.live_subject(subject)?;
        if row.closed_at.is_some() {
            return Ok(());
        }
        let now = self.core.clock.now();
        let mut mutations = vec![Mutation::UpdateSubject {
            id: subject,
            update: SubjectUpdate {
                closed_at: Some(now),
                ..SubjectUpdate::default()
            },
        }];
        mutations.extend(self.account_closed_expiries(subject, now, false)?);
        self.core.data.commit(WriteBatch {
            mutations,
            audit: vec![
                self.core
                    .event(EventKind::RequestTransition, actor)
                    .with_subject(subject.to_string())
                    .with_outcome("account_closed"),
            ],
        })?;
        Ok(())
    }

    /// Erases a subject by crypto-shredding, then purges its rows: see
    /// [`Vault::shred_subject`] and [`Vault::purge_subject`]. Safe to repeat after a crash.
    pub fn erase_subject(
        &self,
        subject: SubjectId,
        actor: &str,
    ) -> Result<ErasureReport, VaultError> {
        let keys_destroyed = self.shred_subject(subject, actor)?;
        let purge = self.purge_subject(subject, actor)?;
        Ok(ErasureReport {
            keys_destroyed,
            ..purge
        })
    }

    /// The erasure itself, in constant time whatever the subject's records hold: the subject's
    /// data key is destroyed, so every copy of its data (backups included) is unreadable from
    /// this moment, and the subject is marked erased. In the same commit the subject's media
    /// objects (unreadable already: their keys were wrapped by the destroyed key) are marked
    /// deleting with their wrapped keys emptied, for the purge or the sweeper to delete their
    /// bytes. Statutory records and media objects keep their own key. Returns how many keys were
    /// destroyed; repeating it destroys nothing more.
    pub fn shred_subject(&self, subject: SubjectId, actor: &str) -> Result<usize, VaultError> {
        let row = self
            .core
            .data
            .subject(subject)?
            .ok_or(VaultError::SubjectNotFound(subject))?;
        let ordinary: Vec<KeyId> = self
            .core
            .keys
            .data_keys_of(subject)?
            .into_iter()
            .filter(|key| key.kind == DataKeyKind::Subject)
            .map(|key| key.id)
            .collect();
        // Keys first: once they are gone the erasure holds even if the rest is interrupted.
        let keys_destroyed = self.core.keys.destroy_data_keys(&ordinary)?;
        self.caches.forget_subject(subject);
        if row.erased_at.is_some() {
            return Ok(keys_destroyed);
        }
        let now = self.core.clock.now();
        // Only the subject row changes (and its media rows, one each: objects are few and
        // large): the erasure must take the same time whatever the subject holds. The purge sets
        // the statutory records' expiries.
        let mut mutations = vec![Mutation::UpdateSubject {
            id: subject,
            update: SubjectUpdate {
                closed_at: Some(row.closed_at.unwrap_or(now)),
                erased_at: Some(now),
                // The profile was sealed under the destroyed key; drop the ciphertext too.
                profile: Some(Vec::new()),
                ..SubjectUpdate::default()
            },
        }];
        let subject_text = subject.to_string();
        let mut shredded_media = 0usize;
        for media in self.core.data.media_of(subject, None)? {
            if media.statutory || media.state == MediaState::Deleting {
                continue;
            }
            shredded_media += 1;
            mutations.push(Mutation::UpdateMedia {
                id: media.id,
                update: MediaUpdate {
                    state: Some(MediaState::Deleting),
                    lease: Some(None),
                    shred: true,
                    ..MediaUpdate::default()
                },
            });
        }
        let mut audit = vec![
            self.core
                .event(EventKind::KeyDestroyed, actor)
                .with_subject(&subject_text)
                .with_outcome(keys_destroyed.to_string()),
            self.core
                .event(EventKind::SubjectErased, actor)
                .with_subject(&subject_text),
        ];
        if shredded_media > 0 {
            audit.push(
                self.core
                    .event(EventKind::MediaDeleted, actor)
                    .with_subject(&subject_text)
                    .with_outcome(format!("erasure objects={shredded_media}")),
            );
        }
        let committed = self.core.data.commit(WriteBatch { mutations, audit });
        self.caches.forget_subject(subject);
        committed?;
        Ok(keys_destroyed)
    }

    /// Deletes the rows of a shredded subject (unreadable already), keeping statutory records,
    /// and its media objects' bytes and rows, keeping statutory ones; the subject row goes too
    /// once nothing statutory remains. Needs the media store when the subject has media.
    pub fn purge_subject(
        &self,
        subject: SubjectId,
        actor: &str,
    ) -> Result<ErasureReport, VaultError> {
        let row = self
            .core
            .data
            .subject(subject)?
            .ok_or(VaultError::SubjectNotFound(subject))?;
        if row.erased_at.is_none() {
            return Err(VaultError::Invalid {
                field: "subject",
                reason: "only a shredded subject can be purged".into(),
            });
        }
        // Media bytes first: a crash after them leaves rows the next purge (or sweep) finishes.
        let (media_mutations, statutory_media) = self.purge_media(subject)?;
        let media_deleted = media_mutations.len() as u64;
        let statutory_records = self.core.data.count_statutory_records(subject)?;
        let statutory_kept = statutory_records + statutory_media;
        let mut mutations = vec![Mutation::DeleteRecordsOf {
            subject,
            keep_statutory: true,
        }];
        mutations.extend(media_mutations);
        if statutory_kept > 0 {
            // Statutory records count their own retention from the closure the erasure implied.
            let closed_at = row
                .closed_at
                .or(row.erased_at)
                .unwrap_or_else(|| self.core.clock.now());
            mutations.extend(self.account_closed_expiries(subject, closed_at, true)?);
        }
        if statutory_kept == 0 {
            mutations.push(Mutation::DeleteSubject(subject));
        }
        let receipt = self.core.data.commit(WriteBatch {
            mutations,
            audit: vec![
                self.core
                    .event(EventKind::RecordDeleted, actor)
                    .with_subject(subject.to_string())
                    .with_outcome(format!("statutory_kept={statutory_kept}")),
            ],
        })?;
        Ok(ErasureReport {
            keys_destroyed: 0,
            records_deleted: receipt.deleted_records,
            media_deleted,
            statutory_kept: usize::try_from(statutory_kept).unwrap_or(usize::MAX),
        })
    }
}
