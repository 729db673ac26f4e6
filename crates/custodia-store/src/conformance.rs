//! The conformance suite every storage backend passes. A backend's integration tests call
//! [`conformance_tests!`](crate::conformance_tests) with a function that opens fresh, empty
//! stores; the macro expands to one `#[test]` per case, so a failure names the case.
//!
//! This module is test code shipped in the library (behind the `conformance` feature) so that
//! SQLite and PostgreSQL run the very same assertions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use custodia_audit::{AuditEvent, EventKind};
use custodia_core::{ApiKeyId, ConsentId, HoldId, KeyId, RecordId, SubjectId, Timestamp};

use crate::{
    ApiKeyRow, ConsentEventKind, ConsentRow, DataKeyKind, DataKeyRow, DataStore, EpochRow,
    ExpiredCount, HoldRow, KeyStore, KeyStoreMeta, Mutation, PolicyVersionRow, RecordRow,
    StoreError, SubjectRow, SubjectUpdate, WriteBatch,
};

/// Opens another handle on the same databases.
pub type Reopen = Box<dyn Fn() -> (Arc<dyn DataStore>, Arc<dyn KeyStore>) + Send + Sync>;

/// Fresh stores for one test case.
#[allow(missing_debug_implementations)]
pub struct Harness {
    /// The data store.
    pub data: Arc<dyn DataStore>,
    /// The key store.
    pub keys: Arc<dyn KeyStore>,
    /// Opens another handle on the same databases, as a second server instance would.
    pub reopen: Reopen,
}

/// What a backend's `fresh()` returns: stores, or `None` when the backend is not available here
/// (PostgreSQL without `CUSTODIA_TEST_DATABASE_URL`), in which case the case prints a skip
/// notice and passes.
pub trait IntoHarness {
    /// The harness, if the backend is available.
    fn into_harness(self) -> Option<Harness>;
}

impl IntoHarness for Harness {
    fn into_harness(self) -> Option<Harness> {
        Some(self)
    }
}

impl IntoHarness for Option<Harness> {
    fn into_harness(self) -> Option<Harness> {
        self
    }
}

/// Runs one case, or prints why it is skipped.
pub fn run_case(name: &str, harness: impl IntoHarness, case: fn(Harness)) {
    match harness.into_harness() {
        Some(harness) => case(harness),
        None => {
            let mut err = std::io::stderr().lock();
            let _ = std::io::Write::write_fmt(
                &mut err,
                format_args!("skipped {name}: backend not available (see the backend's tests)\n"),
            );
        }
    }
}

/// Expands to one `#[test]` per conformance case, each calling `$fresh()` for its stores.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@cases $fresh;
            subjects_round_trip,
            duplicate_subjects_conflict_and_change_nothing,
            updating_a_missing_subject_fails_and_changes_nothing,
            records_round_trip_in_order,
            expiry_is_set_by_trigger_and_found_when_due,
            deletions_are_idempotent_and_keep_statutory_on_request,
            audit_events_chain_across_commits,
            a_failed_batch_appends_no_audit_entries,
            concurrent_commits_from_two_handles_keep_one_chain,
            key_store_initialises_once,
            data_keys_round_trip_and_rewrap,
            epochs_are_destroyed_only_when_unused,
            destroyed_data_keys_are_gone,
            consent_ledger_keeps_every_event_in_order,
            api_keys_round_trip_and_revoke_once,
            policy_versions_are_kept_in_order,
            holds_round_trip_and_release_once,
            sweep_deletes_due_unheld_records_in_expiry_order_and_audits_each,
            sweep_honours_subject_category_ended_and_released_holds,
            concurrent_sweeps_from_two_handles_delete_each_record_once,
        );
    };
    (@cases $fresh:path; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(
                    stringify!($case),
                    $fresh(),
                    $crate::conformance::$case,
                );
            }
        )+
    };
}

fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn subject_row(key: KeyId, lookup_byte: u8) -> SubjectRow {
    SubjectRow {
        id: SubjectId::random().unwrap(),
        lookup: [lookup_byte; 32],
        profile: vec![0xAB; 48],
        key,
        created_at: at(1_000),
        last_active_at: at(1_000),
        closed_at: None,
        erased_at: None,
    }
}

fn record_row(subject: SubjectId, key: KeyId, category: &str, collected: i64) -> RecordRow {
    RecordRow {
        id: RecordId::random().unwrap(),
        subject,
        category: category.to_owned(),
        purpose: "account".to_owned(),
        key,
        ciphertext: vec![7; 64],
        collected_at: at(collected),
        rule: format!("rule-{category}"),
        expires_at: None,
        statutory: false,
    }
}

fn event(kind: EventKind, millis: i64) -> AuditEvent {
    AuditEvent::new(kind, millis)
}

fn batch(mutations: Vec<Mutation>, audit: Vec<AuditEvent>) -> WriteBatch {
    WriteBatch { mutations, audit }
}

fn all_audit(data: &dyn DataStore) -> Vec<custodia_audit::AuditEntry> {
    let mut entries = Vec::new();
    let mut from = 1;
    loop {
        let page = data.audit_entries(from, 100).unwrap();
        if page.is_empty() {
            return entries;
        }
        from = page.last().unwrap().seq + 1;
        entries.extend(page);
    }
}

/// Subjects can be written, found by id and by lookup hash, and updated.
pub fn subjects_round_trip(h: Harness) {
    let key = KeyId::random().unwrap();
    let subject = subject_row(key, 1);
    h.data
        .commit(batch(
            vec![Mutation::InsertSubject(subject.clone())],
            vec![],
        ))
        .unwrap();
    assert_eq!(h.data.subject(subject.id).unwrap(), Some(subject.clone()));
    assert_eq!(
        h.data.subject_by_lookup(&[1; 32]).unwrap(),
        Some(subject.clone())
    );
    assert_eq!(h.data.subject_by_lookup(&[2; 32]).unwrap(), None);
    assert_eq!(h.data.subject(SubjectId::random().unwrap()).unwrap(), None);
    let update = SubjectUpdate {
        last_active_at: Some(at(5_000)),
        closed_at: Some(at(6_000)),
        erased_at: None,
        profile: Some(vec![1, 2, 3]),
    };
    h.data
        .commit(batch(
            vec![Mutation::UpdateSubject {
                id: subject.id,
                update,
            }],
            vec![],
        ))
        .unwrap();
    let updated = h.data.subject(subject.id).unwrap().unwrap();
    assert_eq!(updated.last_active_at, at(5_000));
    assert_eq!(updated.closed_at, Some(at(6_000)));
    assert_eq!(updated.erased_at, None);
    assert_eq!(updated.profile, vec![1, 2, 3]);
    h.data
        .commit(batch(
            vec![Mutation::UpdateSubject {
                id: subject.id,
                update: SubjectUpdate {
                    erased_at: Some(at(7_000)),
                    ..SubjectUpdate::default()
                },
            }],
            vec![],
        ))
        .unwrap();
    let erased = h.data.subject(subject.id).unwrap().unwrap();
    assert_eq!(erased.erased_at, Some(at(7_000)));
    assert_eq!(
        erased.closed_at,
        Some(at(6_000)),
        "unset fields are left alone"
    );
    h.data
        .commit(batch(vec![Mutation::DeleteSubject(subject.id)], vec![]))
        .unwrap();
    assert_eq!(h.data.subject(subject.id).unwrap(), None);
}

/// A duplicate id or lookup is a conflict, and the whole batch is rolled back.
pub fn duplicate_subjects_conflict_and_change_nothing(h: Harness) {
    let key = KeyId::random().unwrap();
    let first = subject_row(key, 1);
    h.data
        .commit(batch(vec![Mutation::InsertSubject(first.clone())], vec![]))
        .unwrap();
    let bystander = subject_row(key, 9);
    let same_lookup = subject_row(key, 1);
    let err = h
        .data
        .commit(batch(
            vec![
                Mutation::InsertSubject(bystander.clone()),
                Mutation::InsertSubject(same_lookup),
            ],
            vec![event(EventKind::SubjectCreated, 2_000)],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        h.data.subject(bystander.id).unwrap(),
        None,
        "batch must roll back"
    );
    let mut same_id = subject_row(key, 3);
    same_id.id = first.id;
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertSubject(same_id)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.data.audit_head().unwrap(), None);
}

/// Updating a subject that does not exist fails and writes nothing.
pub fn updating_a_missing_subject_fails_and_changes_nothing(h: Harness) {
    let key = KeyId::random().unwrap();
    let subject = subject_row(key, 4);
    let err = h
        .data
        .commit(batch(
            vec![
                Mutation::InsertSubject(subject.clone()),
                Mutation::UpdateSubject {
                    id: SubjectId::random().unwrap(),
                    update: SubjectUpdate {
                        closed_at: Some(at(1)),
                        ..SubjectUpdate::default()
                    },
                },
            ],
            vec![event(EventKind::SubjectCreated, 1)],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(h.data.subject(subject.id).unwrap(), None);
    assert_eq!(h.data.audit_head().unwrap(), None);
}

/// Records come back byte for byte, per subject, in collection order, filtered by category.
pub fn records_round_trip_in_order(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let mut mutations = vec![
        Mutation::InsertSubject(alice.clone()),
        Mutation::InsertSubject(bob.clone()),
    ];
    let phone = record_row(alice.id, key, "user.contact.phone_number", 3_000);
    let mut audio = record_row(alice.id, key, "user.content.audio_recording", 2_000);
    audio.ciphertext = (0..=255).collect();
    audio.statutory = true;
    audio.expires_at = Some(at(99_000));
    let bobs = record_row(bob.id, key, "user.contact.phone_number", 1_000);
    mutations.extend([
        Mutation::InsertRecord(phone.clone()),
        Mutation::InsertRecord(audio.clone()),
        Mutation::InsertRecord(bobs.clone()),
    ]);
    h.data.commit(batch(mutations, vec![])).unwrap();
    assert_eq!(h.data.record(audio.id).unwrap(), Some(audio.clone()));
    assert_eq!(
        h.data.records_of(alice.id, None).unwrap(),
        vec![audio.clone(), phone.clone()]
    );
    assert_eq!(
        h.data
            .records_of(alice.id, Some("user.contact.phone_number"))
            .unwrap(),
        vec![phone.clone()]
    );
    assert_eq!(h.data.records_of(bob.id, None).unwrap(), vec![bobs]);
    assert_eq!(h.data.count_records().unwrap(), 3);
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertRecord(phone)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

/// Records without an expiry are never due; `SetExpiry` sets it for one rule of one subject;
/// due records come oldest expiry first, limited.
pub fn expiry_is_set_by_trigger_and_found_when_due(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let mut early = record_row(alice.id, key, "user.device.device_id", 1_000);
    early.expires_at = Some(at(10_000));
    let mut late = record_row(alice.id, key, "user.device.device_id", 1_000);
    late.expires_at = Some(at(20_000));
    let pending = record_row(alice.id, key, "user.account", 1_000);
    let bobs_pending = record_row(bob.id, key, "user.account", 1_000);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(alice.clone()),
                Mutation::InsertSubject(bob.clone()),
                Mutation::InsertRecord(late.clone()),
                Mutation::InsertRecord(early.clone()),
                Mutation::InsertRecord(pending.clone()),
                Mutation::InsertRecord(bobs_pending.clone()),
            ],
            vec![],
        ))
        .unwrap();
    assert!(h.data.expired_records(at(9_999), 10).unwrap().is_empty());
    let due: Vec<_> = h.data.expired_records(at(30_000), 10).unwrap();
    assert_eq!(
        due.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![early.id, late.id]
    );
    assert_eq!(h.data.expired_records(at(30_000), 1).unwrap().len(), 1);
    h.data
        .commit(batch(
            vec![Mutation::SetExpiry {
                subject: alice.id,
                rule: pending.rule.clone(),
                expires_at: at(15_000),
            }],
            vec![],
        ))
        .unwrap();
    let due: Vec<_> = h.data.expired_records(at(30_000), 10).unwrap();
    assert_eq!(
        due.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![early.id, pending.id, late.id],
        "bob's record of the same rule must keep no expiry"
    );
    // An expiry already set is not moved by a later trigger.
    h.data
        .commit(batch(
            vec![Mutation::SetExpiry {
                subject: alice.id,
                rule: pending.rule.clone(),
                expires_at: at(90_000),
            }],
            vec![],
        ))
        .unwrap();
    assert_eq!(
        h.data.record(pending.id).unwrap().unwrap().expires_at,
        Some(at(15_000))
    );
}

/// Deleting twice is fine; an erasure can keep statutory records.
pub fn deletions_are_idempotent_and_keep_statutory_on_request(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let one = record_row(alice.id, key, "user.contact.email", 1);
    let two = record_row(alice.id, key, "user.contact.email", 2);
    let mut kept = record_row(alice.id, key, "user.financial", 3);
    kept.statutory = true;
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(alice.clone()),
                Mutation::InsertRecord(one.clone()),
                Mutation::InsertRecord(two.clone()),
                Mutation::InsertRecord(kept.clone()),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(h.data.count_statutory_records(alice.id).unwrap(), 1);
    assert_eq!(
        h.data
            .count_statutory_records(SubjectId::random().unwrap())
            .unwrap(),
        0
    );
    let receipt = h
        .data
        .commit(batch(
            vec![
                Mutation::DeleteRecord(one.id),
                Mutation::DeleteRecord(one.id),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(receipt.deleted_records, 1);
    let receipt = h
        .data
        .commit(batch(
            vec![Mutation::DeleteRecordsOf {
                subject: alice.id,
                keep_statutory: true,
            }],
            vec![],
        ))
        .unwrap();
    assert_eq!(receipt.deleted_records, 1);
    assert_eq!(h.data.records_of(alice.id, None).unwrap(), vec![kept]);
    let receipt = h
        .data
        .commit(batch(
            vec![
                Mutation::DeleteRecordsOf {
                    subject: alice.id,
                    keep_statutory: false,
                },
                Mutation::DeleteSubject(alice.id),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(receipt.deleted_records, 1);
    assert_eq!(h.data.count_records().unwrap(), 0);
    assert_eq!(h.data.subject(alice.id).unwrap(), None);
}

/// Audit events chain across commits with no gaps, and the chain verifies.
pub fn audit_events_chain_across_commits(h: Harness) {
    assert_eq!(h.data.audit_head().unwrap(), None);
    let receipt = h
        .data
        .commit(batch(
            vec![],
            vec![event(EventKind::Decision, 1), event(EventKind::Decision, 2)],
        ))
        .unwrap();
    assert_eq!(receipt.head.unwrap().seq, 2);
    let mut many = Vec::new();
    for i in 0..250 {
        many.push(
            event(EventKind::RecordRead, 10 + i)
                .with_subject(format!("sub_{i:032x}"))
                .with_reason("consent.given"),
        );
    }
    let receipt = h.data.commit(batch(vec![], many)).unwrap();
    let head = receipt.head.unwrap();
    assert_eq!(head.seq, 252);
    assert_eq!(h.data.audit_head().unwrap(), Some(head));
    let entries = all_audit(h.data.as_ref());
    assert_eq!(entries.len(), 252);
    let report = custodia_audit::verify(&entries).unwrap();
    assert_eq!(report.last_seq, 252);
    assert_eq!(report.head_hash, head.hash);
    assert_eq!(entries[10].event.reasons, vec!["consent.given".to_owned()]);
    let page = h.data.audit_entries(100, 5).unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![100, 101, 102, 103, 104]
    );
    let empty = h.data.commit(WriteBatch::default()).unwrap();
    assert_eq!(
        empty.head,
        Some(head),
        "an empty batch leaves the chain alone"
    );
}

/// A batch that fails appends none of its audit events.
pub fn a_failed_batch_appends_no_audit_entries(h: Harness) {
    h.data
        .commit(batch(vec![], vec![event(EventKind::Decision, 1)]))
        .unwrap();
    let head = h.data.audit_head().unwrap();
    let key = KeyId::random().unwrap();
    let orphan = record_row(SubjectId::random().unwrap(), key, "user.contact.email", 1);
    let mut duplicate = record_row(SubjectId::random().unwrap(), key, "user.contact.email", 1);
    duplicate.id = orphan.id;
    let result = h.data.commit(batch(
        vec![
            Mutation::InsertRecord(orphan),
            Mutation::InsertRecord(duplicate),
        ],
        vec![event(EventKind::RecordWritten, 2)],
    ));
    assert!(result.is_err());
    assert_eq!(h.data.audit_head().unwrap(), head);
    assert_eq!(h.data.count_records().unwrap(), 0);
}

/// Two handles on one database (two server instances) committing at once keep a single,
/// gap-free chain with every event.
pub fn concurrent_commits_from_two_handles_keep_one_chain(h: Harness) {
    let (second, _) = (h.reopen)();
    let handles: Vec<Arc<dyn DataStore>> = vec![h.data.clone(), second];
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = handles[t % 2].clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let events = (0..3)
                        .map(|j| event(EventKind::Decision, i).with_actor(format!("t{t}-{i}-{j}")))
                        .collect();
                    store.commit(batch(vec![], events)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let entries = all_audit(h.data.as_ref());
    assert_eq!(entries.len(), 4 * 25 * 3);
    custodia_audit::verify(&entries).unwrap();
    let mut actors: Vec<_> = entries
        .iter()
        .filter_map(|e| e.event.actor.clone())
        .collect();
    actors.sort();
    actors.dedup();
    assert_eq!(actors.len(), 300, "no event lost or duplicated");
}

fn meta() -> KeyStoreMeta {
    KeyStoreMeta {
        verifier: vec![9; 40],
        kdf: Some("{\"m\":65536}".to_owned()),
        created_at: at(1),
    }
}

fn epoch(id: u32) -> EpochRow {
    EpochRow {
        id,
        wrapped: vec![u8::try_from(id).unwrap_or(0); 60],
        created_at: at(i64::from(id)),
    }
}

fn data_key(owner: SubjectId, kind: DataKeyKind, epoch: u32) -> DataKeyRow {
    DataKeyRow {
        id: KeyId::random().unwrap(),
        owner,
        kind,
        epoch,
        wrapped: vec![5; 60],
        created_at: at(2),
    }
}

/// The key store starts empty, initialises once, and keeps its metadata.
pub fn key_store_initialises_once(h: Harness) {
    assert_eq!(h.keys.meta().unwrap(), None);
    h.keys.initialise(&meta(), &epoch(1)).unwrap();
    assert_eq!(h.keys.meta().unwrap(), Some(meta()));
    assert_eq!(h.keys.epochs().unwrap(), vec![epoch(1)]);
    let err = h.keys.initialise(&meta(), &epoch(1)).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let (_, keys_again) = (h.reopen)();
    assert_eq!(keys_again.meta().unwrap(), Some(meta()));
}

/// Data keys come back by id and owner, page by epoch, and rewrap atomically.
pub fn data_keys_round_trip_and_rewrap(h: Harness) {
    h.keys.initialise(&meta(), &epoch(1)).unwrap();
    let alice = SubjectId::random().unwrap();
    let bob = SubjectId::random().unwrap();
    let mut rows = vec![
        data_key(alice, DataKeyKind::Subject, 1),
        data_key(alice, DataKeyKind::Statutory, 1),
        data_key(bob, DataKeyKind::Subject, 1),
    ];
    h.keys.insert_data_keys(&rows).unwrap();
    assert_eq!(h.keys.data_key(rows[0].id).unwrap(), Some(rows[0].clone()));
    let mut of_alice = h.keys.data_keys_of(alice).unwrap();
    of_alice.sort_by_key(|r| r.id);
    let mut expected = vec![rows[0].clone(), rows[1].clone()];
    expected.sort_by_key(|r| r.id);
    assert_eq!(of_alice, expected);
    let err = h.keys.insert_data_keys(&rows[..1]).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = h.keys.data_keys_in_epoch(1, after, 2).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.id);
        paged.extend(page);
    }
    rows.sort_by_key(|r| r.id);
    assert_eq!(paged, rows);
    h.keys.add_epoch(&epoch(2)).unwrap();
    let rewrapped: Vec<_> = rows
        .iter()
        .map(|r| DataKeyRow {
            epoch: 2,
            wrapped: vec![6; 60],
            ..r.clone()
        })
        .collect();
    h.keys.rewrap_data_keys(&rewrapped).unwrap();
    assert!(h.keys.data_keys_in_epoch(1, None, 10).unwrap().is_empty());
    assert_eq!(h.keys.data_keys_in_epoch(2, None, 10).unwrap(), rewrapped);
    let missing = data_key(bob, DataKeyKind::Subject, 2);
    let err = h
        .keys
        .rewrap_data_keys(&[rewrapped[0].clone(), missing])
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        h.keys.data_key(rewrapped[0].id).unwrap(),
        Some(rewrapped[0].clone())
    );
}

/// An epoch still wrapping data keys, or the current one, cannot be destroyed.
pub fn epochs_are_destroyed_only_when_unused(h: Harness) {
    h.keys.initialise(&meta(), &epoch(1)).unwrap();
    let row = data_key(SubjectId::random().unwrap(), DataKeyKind::Subject, 1);
    h.keys.insert_data_keys(std::slice::from_ref(&row)).unwrap();
    h.keys.add_epoch(&epoch(2)).unwrap();
    assert!(matches!(
        h.keys.destroy_epoch(1).unwrap_err(),
        StoreError::Conflict(_)
    ));
    assert!(matches!(
        h.keys.destroy_epoch(2).unwrap_err(),
        StoreError::Conflict(_)
    ));
    h.keys
        .rewrap_data_keys(&[DataKeyRow { epoch: 2, ..row }])
        .unwrap();
    h.keys.destroy_epoch(1).unwrap();
    assert_eq!(h.keys.epochs().unwrap(), vec![epoch(2)]);
    assert!(matches!(
        h.keys.destroy_epoch(1).unwrap_err(),
        StoreError::NotFound(_)
    ));
}

/// Destroyed data keys cannot be found again, and destroying is idempotent.
pub fn destroyed_data_keys_are_gone(h: Harness) {
    h.keys.initialise(&meta(), &epoch(1)).unwrap();
    let owner = SubjectId::random().unwrap();
    let rows = vec![
        data_key(owner, DataKeyKind::Subject, 1),
        data_key(owner, DataKeyKind::Statutory, 1),
    ];
    h.keys.insert_data_keys(&rows).unwrap();
    assert_eq!(h.keys.destroy_data_keys(&[rows[0].id]).unwrap(), 1);
    assert_eq!(h.keys.destroy_data_keys(&[rows[0].id]).unwrap(), 0);
    assert_eq!(h.keys.data_key(rows[0].id).unwrap(), None);
    assert_eq!(h.keys.data_keys_of(owner).unwrap(), vec![rows[1].clone()]);
}

fn consent(
    subject: SubjectId,
    kind: ConsentEventKind,
    purposes: &[&str],
    at_ms: i64,
) -> ConsentRow {
    ConsentRow {
        id: ConsentId::random().unwrap(),
        subject,
        purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
        kind,
        guardian: None,
        guardian_verified: false,
        policy_version: "2025-06-01".to_owned(),
        method: "app_dialog".to_owned(),
        at: at(at_ms),
        expires_at: None,
    }
}

/// The ledger returns every event of a subject exactly, in append order, and nothing of others.
pub fn consent_ledger_keeps_every_event_in_order(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let guardian = subject_row(key, 2);
    let mut events = vec![
        consent(
            alice.id,
            ConsentEventKind::Given,
            &["ai_transcription", "marketing"],
            10,
        ),
        consent(alice.id, ConsentEventKind::Withdrawn, &["marketing"], 10),
        consent(alice.id, ConsentEventKind::Restricted, &[], 5),
        consent(alice.id, ConsentEventKind::Objected, &["analytics"], 30),
    ];
    events[0].guardian = Some(guardian.id);
    events[0].guardian_verified = true;
    events[0].expires_at = Some(at(99));
    let mut mutations = vec![
        Mutation::InsertSubject(alice.clone()),
        Mutation::InsertSubject(guardian.clone()),
    ];
    mutations.extend(events.iter().cloned().map(Mutation::InsertConsent));
    h.data
        .commit(batch(
            mutations,
            vec![event(EventKind::ConsentRecorded, 10)],
        ))
        .unwrap();
    let later = consent(alice.id, ConsentEventKind::Unrestricted, &[], 1);
    h.data
        .commit(batch(vec![Mutation::InsertConsent(later.clone())], vec![]))
        .unwrap();
    events.push(later);
    assert_eq!(
        h.data.consents_of(alice.id).unwrap(),
        events,
        "append order, not time order"
    );
    assert!(h.data.consents_of(guardian.id).unwrap().is_empty());
    let err = h
        .data
        .commit(batch(
            vec![Mutation::InsertConsent(events[0].clone())],
            vec![],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The ledger is evidence: it outlives the subject row (an erased subject's consents stay,
    // under its pseudonymous id).
    h.data
        .commit(batch(vec![Mutation::DeleteSubject(guardian.id)], vec![]))
        .unwrap();
    h.data
        .commit(batch(vec![Mutation::DeleteSubject(alice.id)], vec![]))
        .unwrap();
    assert_eq!(h.data.consents_of(alice.id).unwrap().len(), events.len());
    let orphan = consent(
        SubjectId::random().unwrap(),
        ConsentEventKind::Given,
        &["x"],
        1,
    );
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertConsent(orphan)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    for kind in [
        "given",
        "withdrawn",
        "refused",
        "expired",
        "renewed",
        "objected",
        "restricted",
        "unrestricted",
    ] {
        assert_eq!(ConsentEventKind::parse(kind).unwrap().as_str(), kind);
    }
}

/// API keys come back exactly; revoking is idempotent and keeps the first time.
pub fn api_keys_round_trip_and_revoke_once(h: Harness) {
    let service = ApiKeyRow {
        id: ApiKeyId::random().unwrap(),
        name: "transcription-worker".to_owned(),
        secret_hash: [3; 32],
        admin: false,
        purposes: vec!["ai_transcription".to_owned(), "crash_reporting".to_owned()],
        created_at: at(1),
        revoked_at: None,
    };
    let admin = ApiKeyRow {
        id: ApiKeyId::random().unwrap(),
        name: "admin".to_owned(),
        secret_hash: [4; 32],
        admin: true,
        purposes: Vec::new(),
        created_at: at(2),
        revoked_at: None,
    };
    h.data
        .commit(batch(
            vec![
                Mutation::InsertApiKey(service.clone()),
                Mutation::InsertApiKey(admin.clone()),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(h.data.api_key(service.id).unwrap(), Some(service.clone()));
    assert_eq!(
        h.data.api_keys().unwrap(),
        vec![service.clone(), admin.clone()]
    );
    assert_eq!(h.data.api_key(ApiKeyId::random().unwrap()).unwrap(), None);
    for when in [10, 20] {
        h.data
            .commit(batch(
                vec![Mutation::RevokeApiKey {
                    id: service.id,
                    at: at(when),
                }],
                vec![],
            ))
            .unwrap();
    }
    assert_eq!(
        h.data.api_key(service.id).unwrap().unwrap().revoked_at,
        Some(at(10))
    );
    let err = h
        .data
        .commit(batch(
            vec![Mutation::RevokeApiKey {
                id: ApiKeyId::random().unwrap(),
                at: at(1),
            }],
            vec![],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertApiKey(admin)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

/// Published policy versions come back exactly, oldest first; a label is published once.
pub fn policy_versions_are_kept_in_order(h: Harness) {
    let first = PolicyVersionRow {
        version: "2025-06-01".to_owned(),
        source: "version = \"2025-06-01\"\n# ünïcödé\n".to_owned(),
        published_at: at(1),
        fresh_consent_purposes: Vec::new(),
    };
    let second = PolicyVersionRow {
        version: "2025-09-01".to_owned(),
        source: "version = \"2025-09-01\"\n".to_owned(),
        published_at: at(2),
        fresh_consent_purposes: vec!["ai_transcription".to_owned(), "train_models".to_owned()],
    };
    h.data
        .commit(batch(
            vec![Mutation::InsertPolicyVersion(first.clone())],
            vec![],
        ))
        .unwrap();
    h.data
        .commit(batch(
            vec![Mutation::InsertPolicyVersion(second.clone())],
            vec![],
        ))
        .unwrap();
    assert_eq!(
        h.data.policy_versions().unwrap(),
        vec![first.clone(), second]
    );
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertPolicyVersion(first)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

fn hold(subject: Option<SubjectId>, category: Option<&str>, ends_at: Option<i64>) -> HoldRow {
    HoldRow {
        id: HoldId::random().unwrap(),
        subject,
        category: category.map(str::to_owned),
        reason: "case 2025-17: ünïcödé".to_owned(),
        created_at: at(5),
        ends_at: ends_at.map(at),
        released_at: None,
    }
}

/// A record of `category` for `subject` expiring at `expires`.
fn expiring(subject: SubjectId, key: KeyId, category: &str, expires: i64) -> RecordRow {
    let mut row = record_row(subject, key, category, 1);
    row.expires_at = Some(at(expires));
    row
}

fn retention_entries(data: &dyn DataStore) -> Vec<custodia_audit::AuditEntry> {
    all_audit(data)
        .into_iter()
        .filter(|e| e.event.kind == EventKind::RetentionDeleted)
        .collect()
}

/// Holds come back exactly, in placement order; releasing is idempotent and keeps the first
/// time; releasing an unknown hold is not found; a duplicate id conflicts.
pub fn holds_round_trip_and_release_once(h: Harness) {
    assert!(h.data.holds().unwrap().is_empty());
    let subject = SubjectId::random().unwrap();
    let first = hold(Some(subject), Some("user.financial"), Some(50));
    let second = hold(None, None, None);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertHold(first.clone()),
                Mutation::InsertHold(second.clone()),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(h.data.holds().unwrap(), vec![first.clone(), second.clone()]);
    for when in [10, 20] {
        h.data
            .commit(batch(
                vec![Mutation::ReleaseHold {
                    id: second.id,
                    at: at(when),
                }],
                vec![],
            ))
            .unwrap();
    }
    assert_eq!(h.data.holds().unwrap()[1].released_at, Some(at(10)));
    assert_eq!(h.data.holds().unwrap()[0], first);
    let err = h
        .data
        .commit(batch(
            vec![Mutation::ReleaseHold {
                id: HoldId::random().unwrap(),
                at: at(1),
            }],
            vec![],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertHold(first)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.data.holds().unwrap().len(), 2);
}

/// The sweep deletes exactly the due records, oldest expiry first, at most `limit` per call,
/// with one retention audit entry each naming the rule; a second sweep finds nothing.
pub fn sweep_deletes_due_unheld_records_in_expiry_order_and_audits_each(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let late = expiring(alice.id, key, "user.device.device_id", 30_000);
    let early = expiring(bob.id, key, "user.contact.email", 10_000);
    let mut middle = expiring(alice.id, key, "user.financial", 20_000);
    middle.statutory = true;
    let future = expiring(alice.id, key, "user.contact.email", 90_000);
    let pending = record_row(bob.id, key, "user.account", 1);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(alice.clone()),
                Mutation::InsertSubject(bob.clone()),
                Mutation::InsertRecord(late.clone()),
                Mutation::InsertRecord(early.clone()),
                Mutation::InsertRecord(middle.clone()),
                Mutation::InsertRecord(future.clone()),
                Mutation::InsertRecord(pending.clone()),
            ],
            vec![event(EventKind::SubjectCreated, 1)],
        ))
        .unwrap();
    let now = at(50_000);
    assert!(h.data.sweep_expired(now, 0, "sweeper").unwrap().is_empty());
    assert!(
        h.data
            .sweep_expired(at(9_999), 10, "sweeper")
            .unwrap()
            .is_empty()
    );
    let counts = h.data.count_expired(now).unwrap();
    assert_eq!(counts.iter().map(|c| c.due).sum::<u64>(), 3);
    assert!(counts.iter().all(|c| c.held == 0));
    assert_eq!(
        counts[0],
        ExpiredCount {
            category: "user.contact.email".to_owned(),
            rule: "rule-user.contact.email".to_owned(),
            due: 1,
            held: 0,
        }
    );

    let first = h.data.sweep_expired(now, 2, "sweeper").unwrap();
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![early.id, middle.id],
        "oldest expiry first, at most the limit"
    );
    assert_eq!(first[0].subject, bob.id);
    assert_eq!(first[0].category, early.category);
    assert_eq!(first[0].rule, early.rule);
    assert!(!first[0].statutory);
    assert!(first[1].statutory);
    let second = h.data.sweep_expired(now, 2, "sweeper").unwrap();
    assert_eq!(
        second.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![late.id]
    );
    assert!(h.data.sweep_expired(now, 2, "sweeper").unwrap().is_empty());
    assert!(h.data.count_expired(now).unwrap().is_empty());
    for gone in [&early, &middle, &late] {
        assert_eq!(h.data.record(gone.id).unwrap(), None);
    }
    for kept in [&future, &pending] {
        assert!(h.data.record(kept.id).unwrap().is_some());
    }

    let entries = all_audit(h.data.as_ref());
    custodia_audit::verify(&entries).unwrap();
    let swept = retention_entries(h.data.as_ref());
    assert_eq!(swept.len(), 3, "one entry per deleted record");
    for (entry, record) in swept.iter().zip([&early, &middle, &late]) {
        assert_eq!(entry.event.record, Some(record.id.to_string()));
        assert_eq!(entry.event.subject, Some(record.subject.to_string()));
        assert_eq!(entry.event.category, Some(record.category.clone()));
        assert_eq!(entry.event.rule, Some(record.rule.clone()));
        assert_eq!(entry.event.actor.as_deref(), Some("sweeper"));
        assert_eq!(entry.event.at, now.as_millis());
    }
}

/// Holds scoped to a subject, to a category, or to both keep exactly what they name; ended and
/// released holds keep nothing.
pub fn sweep_honours_subject_category_ended_and_released_holds(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let carol = subject_row(key, 3);
    let alice_email = expiring(alice.id, key, "user.contact.email", 100);
    let alice_phone = expiring(alice.id, key, "user.contact.phone_number", 100);
    let bob_email = expiring(bob.id, key, "user.contact.email", 100);
    let bob_phone = expiring(bob.id, key, "user.contact.phone_number", 100);
    let carol_device = expiring(carol.id, key, "user.device.device_id", 100);
    let carol_phone = expiring(carol.id, key, "user.contact.phone_number", 100);
    let by_subject = hold(Some(alice.id), None, None);
    let by_category = hold(None, Some("user.contact.email"), None);
    let by_both = hold(Some(carol.id), Some("user.device.device_id"), None);
    let ended = hold(Some(bob.id), None, Some(500));
    let released = hold(None, Some("user.contact.phone_number"), None);
    let mut mutations: Vec<Mutation> = [&alice, &bob, &carol]
        .into_iter()
        .map(|s| Mutation::InsertSubject(s.clone()))
        .collect();
    mutations.extend(
        [
            &alice_email,
            &alice_phone,
            &bob_email,
            &bob_phone,
            &carol_device,
            &carol_phone,
        ]
        .into_iter()
        .map(|r| Mutation::InsertRecord(r.clone())),
    );
    mutations.extend(
        [&by_subject, &by_category, &by_both, &ended, &released]
            .into_iter()
            .map(|hold| Mutation::InsertHold(hold.clone())),
    );
    mutations.push(Mutation::ReleaseHold {
        id: released.id,
        at: at(10),
    });
    h.data.commit(batch(mutations, vec![])).unwrap();

    // Before the ended hold's end, it keeps bob's records too.
    let before_end = at(400);
    let counts = h.data.count_expired(before_end).unwrap();
    assert_eq!(counts.iter().map(|c| c.held).sum::<u64>(), 5);
    assert_eq!(counts.iter().map(|c| c.due).sum::<u64>(), 1);
    let swept = h.data.sweep_expired(before_end, 100, "sweeper").unwrap();
    assert_eq!(
        swept.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![carol_phone.id],
        "the released hold keeps nothing"
    );

    // At its end (`ends_at` is exclusive) the ended hold lets bob's phone go; the category hold
    // still keeps bob's email.
    let after_end = at(500);
    let swept = h.data.sweep_expired(after_end, 100, "sweeper").unwrap();
    assert_eq!(
        swept.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![bob_phone.id]
    );
    assert!(
        h.data
            .sweep_expired(after_end, 100, "sweeper")
            .unwrap()
            .is_empty()
    );
    for kept in [&alice_email, &alice_phone, &bob_email, &carol_device] {
        assert!(h.data.record(kept.id).unwrap().is_some());
        let holds = h.data.holds().unwrap();
        assert!(
            holds
                .iter()
                .any(|hold| hold.applies(kept.subject, &kept.category, after_end)),
            "HoldRow::applies agrees with the store"
        );
    }
    let counts = h.data.count_expired(after_end).unwrap();
    assert_eq!(counts.iter().map(|c| c.held).sum::<u64>(), 4);
    assert_eq!(counts.iter().map(|c| c.due).sum::<u64>(), 0);

    // Releasing everything lets the rest go.
    h.data
        .commit(batch(
            [&by_subject, &by_category, &by_both]
                .into_iter()
                .map(|hold| Mutation::ReleaseHold {
                    id: hold.id,
                    at: at(600),
                })
                .collect(),
            vec![],
        ))
        .unwrap();
    let swept = h.data.sweep_expired(at(700), 100, "sweeper").unwrap();
    assert_eq!(swept.len(), 4);
    assert_eq!(h.data.count_records().unwrap(), 0);
    assert_eq!(retention_entries(h.data.as_ref()).len(), 6);
    custodia_audit::verify(all_audit(h.data.as_ref())).unwrap();
}

/// Two handles (two server instances) sweeping from several threads at once delete and audit
/// every due record exactly once, and the chain stays whole.
pub fn concurrent_sweeps_from_two_handles_delete_each_record_once(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let mut mutations = vec![Mutation::InsertSubject(owner.clone())];
    let due: Vec<RecordRow> = (0..120)
        .map(|i| expiring(owner.id, key, "user.contact.email", 1_000 + i))
        .collect();
    mutations.extend(due.iter().cloned().map(Mutation::InsertRecord));
    let kept = expiring(owner.id, key, "user.contact.email", 1_000_000);
    mutations.push(Mutation::InsertRecord(kept.clone()));
    h.data.commit(batch(mutations, vec![])).unwrap();
    let (second, _) = (h.reopen)();
    let handles: Vec<Arc<dyn DataStore>> = vec![h.data.clone(), second];
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = handles[t % 2].clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let swept = store
                        .sweep_expired(at(500_000), 7, &format!("sweeper-{t}"))
                        .unwrap();
                    if swept.is_empty() {
                        return mine;
                    }
                    mine.extend(swept.into_iter().map(|r| r.id));
                }
            })
        })
        .collect();
    let mut swept: Vec<RecordId> = Vec::new();
    for thread in threads {
        swept.extend(thread.join().unwrap());
    }
    assert_eq!(swept.len(), due.len(), "each due record deleted once");
    swept.sort();
    swept.dedup();
    assert_eq!(swept.len(), due.len(), "no record deleted twice");
    assert_eq!(h.data.count_records().unwrap(), 1);
    assert!(h.data.record(kept.id).unwrap().is_some());
    let entries = all_audit(h.data.as_ref());
    custodia_audit::verify(&entries).unwrap();
    let mut audited: Vec<String> = retention_entries(h.data.as_ref())
        .into_iter()
        .filter_map(|e| e.event.record)
        .collect();
    assert_eq!(audited.len(), due.len(), "one audit entry per deletion");
    audited.sort();
    audited.dedup();
    assert_eq!(audited.len(), due.len());
}
