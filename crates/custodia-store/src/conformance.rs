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
use custodia_core::{
    ApiKeyId, ConsentId, DisclosureId, HoldId, KeyId, LeaseId, MediaId, NotificationId, RecordId,
    RequestId, SubjectId, Timestamp,
};

use crate::{
    ApiKeyRow, ConsentEventKind, ConsentRow, DataKeyKind, DataKeyRow, DataStore, DisclosureRow,
    EpochRow, ExpiredCount, HoldRow, KeyStore, KeyStoreMeta, LeaseRow, MediaRow, MediaState,
    MediaUpdate, Mutation, NotificationRow, NotificationUpdate, PolicyVersionRow, RecordRow,
    RequestFilter, RequestRow, RequestUpdate, StoreError, SubjectRow, SubjectUpdate,
    VerificationRow, WriteBatch,
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
            media_rows_round_trip_every_field,
            media_updates_change_only_what_they_name,
            media_leases_are_granted_by_compare_and_set,
            media_of_lists_oldest_first_by_category,
            media_in_state_filters_by_state_and_age,
            media_deletions_are_idempotent_and_duplicates_conflict,
            set_expiry_reaches_media_of_that_rule_without_expiry,
            count_expired_counts_media_with_records,
            claim_expired_media_claims_due_unheld_objects_and_audits_each,
            claim_expired_media_honours_subject_category_ended_and_released_holds,
            concurrent_media_claims_from_two_handles_claim_each_object_once,
            requests_round_trip_every_field,
            request_updates_apply_at_their_version_only,
            concurrent_request_transitions_from_two_handles_apply_once,
            requests_filter_by_state_due_subject_and_openness_in_due_order,
            requests_disclosures_and_notifications_need_their_subject_or_request,
            requests_disclosures_and_notifications_outlive_their_subject,
            disclosures_round_trip_in_order,
            notifications_round_trip_in_queue_order,
            notification_updates_change_only_what_they_name,
            claim_due_notifications_claims_pending_due_ones_until_the_claim_lapses,
            concurrent_notification_claims_from_two_handles_claim_each_once,
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
    let seqs = |from, through, kinds: &[EventKind], limit| {
        let found = h
            .data
            .audit_entries_of(from, through, kinds, limit)
            .unwrap();
        let paged =
            crate::audit_entries_by_paging(h.data.as_ref(), from, through, kinds, limit).unwrap();
        assert_eq!(
            found, paged,
            "the backend's filter agrees with the reference"
        );
        found.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(seqs(1, 252, &[EventKind::Decision], 10), vec![1, 2]);
    assert_eq!(seqs(2, 5, &[EventKind::RecordRead], 10), vec![3, 4, 5]);
    assert_eq!(
        seqs(
            1,
            u64::MAX,
            &[EventKind::RecordRead, EventKind::Decision],
            3
        ),
        vec![1, 2, 3]
    );
    assert_eq!(
        seqs(250, 400, &[EventKind::RecordRead], 10),
        vec![250, 251, 252]
    );
    assert!(seqs(1, 252, &[EventKind::ConsentRecorded], 10).is_empty());
    assert!(seqs(1, 252, &[], 10).is_empty());
    assert!(seqs(9, 3, &[EventKind::RecordRead], 10).is_empty());
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

/// A stored media object of `category` for `subject`, registered at `created`, with no expiry.
fn media_row(subject: SubjectId, key: KeyId, category: &str, created: i64) -> MediaRow {
    let id = MediaId::random().unwrap();
    MediaRow {
        id,
        subject,
        category: category.to_owned(),
        purpose: "account".to_owned(),
        key,
        wrapped_key: vec![0x5A; 60],
        location: format!("media/{id}"),
        content_type: "image/jpeg".to_owned(),
        size: 1_000,
        stored_size: 1_044,
        state: MediaState::Stored,
        parent: None,
        created_at: at(created),
        processed_at: None,
        rule: format!("rule-{category}"),
        expires_at: None,
        statutory: false,
        lease: None,
        digest: Vec::new(),
    }
}

/// A stored media object of `category` for `subject` expiring at `expires`.
fn expiring_media(subject: SubjectId, key: KeyId, category: &str, expires: i64) -> MediaRow {
    let mut row = media_row(subject, key, category, 1);
    row.expires_at = Some(at(expires));
    row
}

fn lease_row(purpose: &str, granted: i64, expires: i64) -> LeaseRow {
    LeaseRow {
        id: LeaseId::random().unwrap(),
        holder: ApiKeyId::random().unwrap(),
        purpose: purpose.to_owned(),
        granted_at: at(granted),
        expires_at: at(expires),
    }
}

fn update_media(id: MediaId, update: MediaUpdate) -> Mutation {
    Mutation::UpdateMedia { id, update }
}

/// A lease update that names the lease it expects applies only while the row still has it: a
/// second grant from "no lease" conflicts and changes nothing (the batch rolls back whole); a
/// grant that names the current lease replaces it; a missing object is not found. Eight
/// threads on two handles racing for one free object: exactly one wins.
pub fn media_leases_are_granted_by_compare_and_set(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let object = media_row(owner.id, key, "user.content.photo", 10);
    let id = object.id;
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertMedia(object.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let grant = |lease: &LeaseRow, expected: Option<LeaseId>| {
        h.data.commit(batch(
            vec![update_media(
                id,
                MediaUpdate {
                    lease: Some(Some(lease.clone())),
                    expected_lease: Some(expected),
                    ..MediaUpdate::default()
                },
            )],
            vec![event(EventKind::Decision, 5)],
        ))
    };
    let first = lease_row("transcription", 20, 80);
    grant(&first, None).unwrap();
    let audited = all_audit(h.data.as_ref()).len();
    let second = lease_row("thumbnailing", 21, 81);
    let err = grant(&second, None).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let held = h.data.media(id).unwrap().unwrap();
    assert_eq!(held.lease, Some(first.clone()));
    assert_eq!(
        all_audit(h.data.as_ref()).len(),
        audited,
        "a lost compare-and-set commits nothing"
    );
    grant(&second, Some(first.id)).unwrap();
    assert_eq!(
        h.data.media(id).unwrap().unwrap().lease,
        Some(second.clone())
    );
    let err = h
        .data
        .commit(batch(
            vec![update_media(
                MediaId::random().unwrap(),
                MediaUpdate {
                    lease: Some(Some(first.clone())),
                    expected_lease: Some(None),
                    ..MediaUpdate::default()
                },
            )],
            vec![],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // A race for a free object.
    let free = media_row(owner.id, key, "user.content.photo", 11);
    h.data
        .commit(batch(vec![Mutation::InsertMedia(free.clone())], vec![]))
        .unwrap();
    let (other, _) = (h.reopen)();
    let handles: Vec<Arc<dyn DataStore>> = vec![h.data.clone(), other];
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = handles[t % 2].clone();
            let barrier = barrier.clone();
            let lease = lease_row("transcription", 30, 90);
            std::thread::spawn(move || {
                barrier.wait();
                let won = store.commit(batch(
                    vec![update_media(
                        free.id,
                        MediaUpdate {
                            lease: Some(Some(lease.clone())),
                            expected_lease: Some(None),
                            ..MediaUpdate::default()
                        },
                    )],
                    vec![],
                ));
                match won {
                    Ok(_) => Some(lease),
                    Err(StoreError::Conflict(_)) => None,
                    Err(other) => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let winners: Vec<LeaseRow> = threads
        .into_iter()
        .filter_map(|thread| thread.join().unwrap())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one grant wins");
    assert_eq!(
        h.data.media(free.id).unwrap().unwrap().lease,
        Some(winners[0].clone())
    );
}

/// Media rows come back exactly, every field (a lease or none, a parent or none, sizes past
/// 32 bits, an empty wrapped key); unknown ids read as `None`; an object of an unknown subject
/// is refused and leaves nothing behind.
pub fn media_rows_round_trip_every_field(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let mut input = media_row(owner.id, key, "user.content.audio_recording", 10);
    input.state = MediaState::Pending;
    input.size = 0;
    input.stored_size = 0;
    input.content_type = "audio/ogg".to_owned();
    let mut output = media_row(owner.id, key, "user.content.transcript", 20);
    output.parent = Some(input.id);
    output.state = MediaState::Processed;
    output.processed_at = Some(at(30));
    output.expires_at = Some(at(40));
    output.statutory = true;
    output.size = 5_000_000_000;
    output.stored_size = u64::try_from(i64::MAX).unwrap();
    output.wrapped_key = (0..=255).collect();
    output.location = "bucket/2025/ünïcödé path".to_owned();
    output.lease = Some(lease_row("transcription", 25, 35));
    output.digest = (0..60).rev().collect();
    let mut shredded = media_row(owner.id, key, "user.content.photo", 30);
    shredded.state = MediaState::Deleting;
    shredded.wrapped_key = Vec::new();
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertMedia(input.clone()),
                Mutation::InsertMedia(output.clone()),
                Mutation::InsertMedia(shredded.clone()),
            ],
            vec![event(EventKind::SubjectCreated, 1)],
        ))
        .unwrap();
    assert_eq!(h.data.media(input.id).unwrap(), Some(input.clone()));
    assert_eq!(h.data.media(output.id).unwrap(), Some(output.clone()));
    assert_eq!(h.data.media(shredded.id).unwrap(), Some(shredded.clone()));
    assert_eq!(h.data.media(MediaId::random().unwrap()).unwrap(), None);
    assert!(
        h.data
            .media_of(SubjectId::random().unwrap(), None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.data.count_records().unwrap(), 0, "media are not records");

    let stranger = media_row(SubjectId::random().unwrap(), key, "user.content.photo", 1);
    let err = h
        .data
        .commit(batch(
            vec![Mutation::InsertMedia(stranger.clone())],
            vec![event(EventKind::SubjectCreated, 2)],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(h.data.media(stranger.id).unwrap(), None);
    assert_eq!(all_audit(h.data.as_ref()).len(), 1);
}

/// An update changes exactly the fields it names: an empty one nothing; a lease is granted,
/// kept through other updates, replaced and cleared; shredding empties the wrapped key and the
/// digest and nothing else. Updating a missing object is not found and rolls the whole batch back.
pub fn media_updates_change_only_what_they_name(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let mut expected = media_row(owner.id, key, "user.content.photo", 10);
    expected.state = MediaState::Pending;
    expected.size = 0;
    expected.stored_size = 0;
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertMedia(expected.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let id = expected.id;
    let apply = |update: MediaUpdate| {
        h.data
            .commit(batch(vec![update_media(id, update)], vec![]))
            .unwrap();
        h.data.media(id).unwrap().unwrap()
    };

    assert_eq!(apply(MediaUpdate::default()), expected);

    expected.state = MediaState::Stored;
    expected.size = 1_234;
    expected.stored_size = 1_278;
    expected.digest = vec![0xD1; 60];
    let got = apply(MediaUpdate {
        state: Some(MediaState::Stored),
        sizes: Some((1_234, 1_278)),
        digest: Some(vec![0xD1; 60]),
        ..MediaUpdate::default()
    });
    assert_eq!(got, expected);

    let lease = lease_row("transcription", 50, 80);
    expected.lease = Some(lease.clone());
    let got = apply(MediaUpdate {
        lease: Some(Some(lease)),
        ..MediaUpdate::default()
    });
    assert_eq!(got, expected);

    expected.state = MediaState::Processed;
    expected.processed_at = Some(at(60));
    expected.expires_at = Some(at(90));
    let got = apply(MediaUpdate {
        state: Some(MediaState::Processed),
        processed_at: Some(at(60)),
        expires_at: Some(at(90)),
        ..MediaUpdate::default()
    });
    assert_eq!(got, expected, "the lease stays through other updates");

    let other = lease_row("thumbnailing", 70, 75);
    expected.lease = Some(other.clone());
    let got = apply(MediaUpdate {
        lease: Some(Some(other)),
        ..MediaUpdate::default()
    });
    assert_eq!(got, expected, "a new lease replaces the old one");

    expected.lease = None;
    let got = apply(MediaUpdate {
        lease: Some(None),
        ..MediaUpdate::default()
    });
    assert_eq!(got, expected, "the lease is cleared");

    expected.wrapped_key = Vec::new();
    expected.digest = Vec::new();
    expected.state = MediaState::Deleting;
    let got = apply(MediaUpdate {
        state: Some(MediaState::Deleting),
        shred: true,
        ..MediaUpdate::default()
    });
    assert_eq!(
        got, expected,
        "shredding empties the key and the digest and nothing else"
    );

    let err = h
        .data
        .commit(batch(
            vec![
                update_media(
                    id,
                    MediaUpdate {
                        sizes: Some((1, 2)),
                        ..MediaUpdate::default()
                    },
                ),
                update_media(
                    MediaId::random().unwrap(),
                    MediaUpdate {
                        state: Some(MediaState::Stored),
                        ..MediaUpdate::default()
                    },
                ),
            ],
            vec![event(EventKind::SubjectCreated, 1)],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(h.data.media(id).unwrap(), Some(expected));
    assert_eq!(h.data.audit_head().unwrap(), None);
}

/// A subject's media come oldest first (ties in registration order), optionally of one
/// category, and never another subject's.
pub fn media_of_lists_oldest_first_by_category(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let late = media_row(alice.id, key, "user.content.photo", 30);
    let first = media_row(alice.id, key, "user.content.audio_recording", 10);
    let tie = media_row(alice.id, key, "user.content.photo", 30);
    let middle = media_row(alice.id, key, "user.content.photo", 20);
    let bobs = media_row(bob.id, key, "user.content.photo", 5);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(alice.clone()),
                Mutation::InsertSubject(bob.clone()),
                Mutation::InsertMedia(late.clone()),
                Mutation::InsertMedia(first.clone()),
                Mutation::InsertMedia(tie.clone()),
                Mutation::InsertMedia(middle.clone()),
                Mutation::InsertMedia(bobs.clone()),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(
        h.data.media_of(alice.id, None).unwrap(),
        vec![first, middle.clone(), late.clone(), tie.clone()]
    );
    assert_eq!(
        h.data
            .media_of(alice.id, Some("user.content.photo"))
            .unwrap(),
        vec![middle, late, tie]
    );
    assert!(
        h.data
            .media_of(alice.id, Some("user.contact.email"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.data.media_of(bob.id, None).unwrap(), vec![bobs]);
}

/// `media_in_state` returns objects of one state registered at or before `before`, oldest
/// first, at most `limit`.
pub fn media_in_state_filters_by_state_and_age(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let in_state = |subject: SubjectId, state: MediaState, created: i64| {
        let mut row = media_row(subject, key, "user.content.photo", created);
        row.state = state;
        row
    };
    let pending_late = in_state(bob.id, MediaState::Pending, 30);
    let pending_early = in_state(alice.id, MediaState::Pending, 10);
    let pending_middle = in_state(alice.id, MediaState::Pending, 20);
    let stored = in_state(alice.id, MediaState::Stored, 5);
    let deleting_one = in_state(alice.id, MediaState::Deleting, 15);
    let deleting_two = in_state(bob.id, MediaState::Deleting, 25);
    let rows = [
        &pending_late,
        &pending_early,
        &pending_middle,
        &stored,
        &deleting_one,
        &deleting_two,
    ];
    let mut mutations = vec![
        Mutation::InsertSubject(alice.clone()),
        Mutation::InsertSubject(bob.clone()),
    ];
    mutations.extend(rows.iter().map(|&row| Mutation::InsertMedia(row.clone())));
    h.data.commit(batch(mutations, vec![])).unwrap();
    let ids = |state, before, limit| {
        h.data
            .media_in_state(state, at(before), limit)
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        h.data
            .media_in_state(MediaState::Pending, at(100), 10)
            .unwrap(),
        vec![
            pending_early.clone(),
            pending_middle.clone(),
            pending_late.clone()
        ]
    );
    assert_eq!(
        ids(MediaState::Pending, 20, 10),
        vec![pending_early.id, pending_middle.id],
        "`before` is inclusive"
    );
    assert_eq!(ids(MediaState::Pending, 19, 10), vec![pending_early.id]);
    assert_eq!(ids(MediaState::Pending, 9, 10), vec![]);
    assert_eq!(
        ids(MediaState::Pending, 100, 2),
        vec![pending_early.id, pending_middle.id]
    );
    assert_eq!(ids(MediaState::Pending, 100, 0), vec![]);
    assert_eq!(
        ids(MediaState::Deleting, 100, 10),
        vec![deleting_one.id, deleting_two.id]
    );
    assert_eq!(ids(MediaState::Stored, 4, 10), vec![]);
    assert_eq!(ids(MediaState::Stored, 5, 10), vec![stored.id]);
    assert_eq!(ids(MediaState::Processed, 100, 10), vec![]);
}

/// Deleting a media row twice, or one that never existed, is fine and deletes no record; a
/// duplicate id conflicts and rolls its batch back; a subject with media cannot be deleted.
pub fn media_deletions_are_idempotent_and_duplicates_conflict(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let gone = media_row(alice.id, key, "user.content.photo", 1);
    let kept = media_row(alice.id, key, "user.content.photo", 2);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(alice.clone()),
                Mutation::InsertMedia(gone.clone()),
                Mutation::InsertMedia(kept.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let receipt = h
        .data
        .commit(batch(
            vec![
                Mutation::DeleteMedia(gone.id),
                Mutation::DeleteMedia(gone.id),
                Mutation::DeleteMedia(MediaId::random().unwrap()),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(receipt.deleted_records, 0, "media rows are not records");
    assert_eq!(h.data.media(gone.id).unwrap(), None);
    assert_eq!(h.data.media_of(alice.id, None).unwrap(), vec![kept.clone()]);
    h.data
        .commit(batch(vec![Mutation::DeleteMedia(gone.id)], vec![]))
        .unwrap();

    let fresh = media_row(alice.id, key, "user.content.photo", 3);
    let mut duplicate = media_row(alice.id, key, "user.content.audio_recording", 4);
    duplicate.id = kept.id;
    let err = h
        .data
        .commit(batch(
            vec![
                Mutation::InsertMedia(fresh.clone()),
                Mutation::InsertMedia(duplicate),
            ],
            vec![event(EventKind::SubjectCreated, 1)],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.data.media(fresh.id).unwrap(), None, "rolled back");
    assert_eq!(h.data.media(kept.id).unwrap(), Some(kept.clone()));
    assert_eq!(h.data.audit_head().unwrap(), None);

    let err = h
        .data
        .commit(batch(vec![Mutation::DeleteSubject(alice.id)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    h.data
        .commit(batch(
            vec![
                Mutation::DeleteMedia(kept.id),
                Mutation::DeleteSubject(alice.id),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(h.data.subject(alice.id).unwrap(), None);
}

/// `SetExpiry` sets the expiry of a subject's media of that rule that have none, like its
/// records; other rules, other subjects and objects with an expiry keep theirs.
pub fn set_expiry_reaches_media_of_that_rule_without_expiry(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let with_rule = |subject: SubjectId, rule: &str, expires: Option<i64>| {
        let mut row = media_row(subject, key, "user.content.audio_recording", 1);
        rule.clone_into(&mut row.rule);
        row.expires_at = expires.map(at);
        row
    };
    let waiting = with_rule(alice.id, "after-processing", None);
    let mut pending = with_rule(alice.id, "after-processing", None);
    pending.state = MediaState::Pending;
    let already = with_rule(alice.id, "after-processing", Some(5));
    let other_rule = with_rule(alice.id, "other", None);
    let other_subject = with_rule(bob.id, "after-processing", None);
    let mut record = record_row(alice.id, key, "user.content.transcript", 1);
    "after-processing".clone_into(&mut record.rule);
    let mut mutations = vec![
        Mutation::InsertSubject(alice.clone()),
        Mutation::InsertSubject(bob.clone()),
        Mutation::InsertRecord(record.clone()),
    ];
    mutations.extend(
        [&waiting, &pending, &already, &other_rule, &other_subject]
            .into_iter()
            .map(|m| Mutation::InsertMedia(m.clone())),
    );
    h.data.commit(batch(mutations, vec![])).unwrap();
    h.data
        .commit(batch(
            vec![Mutation::SetExpiry {
                subject: alice.id,
                rule: "after-processing".to_owned(),
                expires_at: at(100),
            }],
            vec![],
        ))
        .unwrap();
    let expiry = |id| h.data.media(id).unwrap().unwrap().expires_at;
    assert_eq!(expiry(waiting.id), Some(at(100)));
    assert_eq!(expiry(pending.id), Some(at(100)));
    assert_eq!(expiry(already.id), Some(at(5)));
    assert_eq!(expiry(other_rule.id), None);
    assert_eq!(expiry(other_subject.id), None);
    assert_eq!(
        h.data.record(record.id).unwrap().unwrap().expires_at,
        Some(at(100))
    );
    let mut expected = waiting.clone();
    expected.expires_at = Some(at(100));
    assert_eq!(h.data.media(waiting.id).unwrap(), Some(expected));
}

/// `count_expired` counts expired stored and processed media with the records of the same
/// category and rule, due or held by the same holds; pending and deleting objects, and objects
/// not yet expired, are not counted.
pub fn count_expired_counts_media_with_records(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let photo = "user.content.photo";
    let voice = "user.content.audio_recording";
    let record = expiring(alice.id, key, photo, 100);
    let stored = expiring_media(alice.id, key, photo, 100);
    let mut processed = expiring_media(alice.id, key, photo, 200);
    processed.state = MediaState::Processed;
    let mut pending = expiring_media(alice.id, key, photo, 100);
    pending.state = MediaState::Pending;
    let mut deleting = expiring_media(alice.id, key, photo, 100);
    deleting.state = MediaState::Deleting;
    let future = expiring_media(alice.id, key, photo, 10_000);
    let held = expiring_media(alice.id, key, voice, 100);
    let mut other_rule = expiring_media(alice.id, key, photo, 100);
    "rule-a".clone_into(&mut other_rule.rule);
    let mut mutations = vec![
        Mutation::InsertSubject(alice.clone()),
        Mutation::InsertRecord(record),
        Mutation::InsertHold(hold(None, Some(voice), None)),
    ];
    mutations.extend(
        [
            &stored,
            &processed,
            &pending,
            &deleting,
            &future,
            &held,
            &other_rule,
        ]
        .into_iter()
        .map(|m| Mutation::InsertMedia(m.clone())),
    );
    h.data.commit(batch(mutations, vec![])).unwrap();
    let count = |category: &str, rule: &str, due: u64, held: u64| ExpiredCount {
        category: category.to_owned(),
        rule: rule.to_owned(),
        due,
        held,
    };
    assert_eq!(
        h.data.count_expired(at(500)).unwrap(),
        vec![
            count(voice, &format!("rule-{voice}"), 0, 1),
            count(photo, "rule-a", 1, 0),
            count(photo, &format!("rule-{photo}"), 3, 0),
        ]
    );
    assert_eq!(
        h.data.count_expired(at(150)).unwrap(),
        vec![
            count(voice, &format!("rule-{voice}"), 0, 1),
            count(photo, "rule-a", 1, 0),
            count(photo, &format!("rule-{photo}"), 2, 0),
        ]
    );
    assert!(h.data.count_expired(at(99)).unwrap().is_empty());
}

/// The claim takes exactly the due stored and processed objects, oldest expiry first, at most
/// `limit` per call: each becomes deleting with its key emptied and its lease cleared, and gets
/// one retention audit entry naming its rule; a second claim takes nothing.
pub fn claim_expired_media_claims_due_unheld_objects_and_audits_each(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let mut late = expiring_media(alice.id, key, "user.content.photo", 30_000);
    late.digest = vec![0xD1; 60];
    let mut early = expiring_media(bob.id, key, "user.content.audio_recording", 10_000);
    early.lease = Some(lease_row("transcription", 1, 60_000));
    let mut middle = expiring_media(alice.id, key, "user.content.transcript", 20_000);
    middle.state = MediaState::Processed;
    middle.processed_at = Some(at(5));
    middle.statutory = true;
    let future = expiring_media(alice.id, key, "user.content.photo", 90_000);
    let mut pending = expiring_media(bob.id, key, "user.content.photo", 5_000);
    pending.state = MediaState::Pending;
    let mut deleting = expiring_media(bob.id, key, "user.content.photo", 5_000);
    deleting.state = MediaState::Deleting;
    deleting.wrapped_key = Vec::new();
    let waiting = media_row(alice.id, key, "user.content.photo", 1);
    let record = expiring(alice.id, key, "user.contact.email", 90_000);
    let mut mutations = vec![
        Mutation::InsertSubject(alice.clone()),
        Mutation::InsertSubject(bob.clone()),
        Mutation::InsertRecord(record.clone()),
    ];
    mutations.extend(
        [
            &late, &early, &middle, &future, &pending, &deleting, &waiting,
        ]
        .into_iter()
        .map(|m| Mutation::InsertMedia(m.clone())),
    );
    h.data
        .commit(batch(mutations, vec![event(EventKind::SubjectCreated, 1)]))
        .unwrap();
    let now = at(50_000);
    assert!(
        h.data
            .claim_expired_media(now, 0, "sweeper")
            .unwrap()
            .is_empty()
    );
    assert!(
        h.data
            .claim_expired_media(at(9_999), 10, "sweeper")
            .unwrap()
            .is_empty()
    );
    let counts = h.data.count_expired(now).unwrap();
    assert_eq!(counts.iter().map(|c| c.due).sum::<u64>(), 3);

    let first = h.data.claim_expired_media(now, 2, "sweeper").unwrap();
    assert_eq!(
        first.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![early.id, middle.id],
        "oldest expiry first, at most the limit"
    );
    assert_eq!(first[0].subject, bob.id);
    assert_eq!(first[0].category, early.category);
    assert_eq!(first[0].rule, early.rule);
    assert_eq!(first[0].location, early.location);
    assert_eq!(first[1].subject, alice.id);
    let second = h.data.claim_expired_media(now, 2, "sweeper").unwrap();
    assert_eq!(
        second.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![late.id]
    );
    assert!(
        h.data
            .claim_expired_media(now, 2, "sweeper")
            .unwrap()
            .is_empty()
    );
    assert!(h.data.count_expired(now).unwrap().is_empty());

    for claimed in [&early, &middle, &late] {
        let mut expected = claimed.clone();
        expected.state = MediaState::Deleting;
        expected.wrapped_key = Vec::new();
        expected.digest = Vec::new();
        expected.lease = None;
        assert_eq!(h.data.media(claimed.id).unwrap(), Some(expected));
    }
    for kept in [&future, &pending, &deleting, &waiting] {
        assert_eq!(h.data.media(kept.id).unwrap().as_ref(), Some(kept));
    }
    assert_eq!(h.data.record(record.id).unwrap(), Some(record));
    let claimed: Vec<MediaId> = h
        .data
        .media_in_state(MediaState::Deleting, now, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        claimed.len(),
        4,
        "the three claimed and the one already deleting"
    );

    let entries = all_audit(h.data.as_ref());
    custodia_audit::verify(&entries).unwrap();
    let deleted = retention_entries(h.data.as_ref());
    assert_eq!(deleted.len(), 3, "one entry per claimed object");
    for (entry, media) in deleted.iter().zip([&early, &middle, &late]) {
        assert_eq!(entry.event.record, Some(media.id.to_string()));
        assert_eq!(entry.event.subject, Some(media.subject.to_string()));
        assert_eq!(entry.event.category, Some(media.category.clone()));
        assert_eq!(entry.event.rule, Some(media.rule.clone()));
        assert_eq!(entry.event.actor.as_deref(), Some("sweeper"));
        assert_eq!(entry.event.at, now.as_millis());
    }
}

/// Holds keep media objects exactly as they keep records: scoped to a subject, a category,
/// both, or everything; ended and released holds keep nothing.
pub fn claim_expired_media_honours_subject_category_ended_and_released_holds(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let carol = subject_row(key, 3);
    let photo = "user.content.photo";
    let voice = "user.content.audio_recording";
    let video = "user.content.video";
    let alice_photo = expiring_media(alice.id, key, photo, 100);
    let alice_voice = expiring_media(alice.id, key, voice, 100);
    let bob_photo = expiring_media(bob.id, key, photo, 100);
    let bob_voice = expiring_media(bob.id, key, voice, 100);
    let carol_video = expiring_media(carol.id, key, video, 100);
    let carol_voice = expiring_media(carol.id, key, voice, 100);
    let by_subject = hold(Some(alice.id), None, None);
    let by_category = hold(None, Some(photo), None);
    let by_both = hold(Some(carol.id), Some(video), None);
    let ended = hold(Some(bob.id), None, Some(500));
    let released = hold(None, Some(voice), None);
    let mut mutations: Vec<Mutation> = [&alice, &bob, &carol]
        .into_iter()
        .map(|s| Mutation::InsertSubject(s.clone()))
        .collect();
    mutations.extend(
        [
            &alice_photo,
            &alice_voice,
            &bob_photo,
            &bob_voice,
            &carol_video,
            &carol_voice,
        ]
        .into_iter()
        .map(|m| Mutation::InsertMedia(m.clone())),
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
    let ids =
        |claimed: Vec<crate::SweptMedia>| claimed.into_iter().map(|m| m.id).collect::<Vec<_>>();

    // Before the ended hold's end, it keeps bob's objects too.
    let before_end = at(400);
    let counts = h.data.count_expired(before_end).unwrap();
    assert_eq!(counts.iter().map(|c| c.held).sum::<u64>(), 5);
    assert_eq!(counts.iter().map(|c| c.due).sum::<u64>(), 1);
    let claimed = h
        .data
        .claim_expired_media(before_end, 100, "sweeper")
        .unwrap();
    assert_eq!(
        ids(claimed),
        vec![carol_voice.id],
        "the released hold keeps nothing"
    );

    // At its end (`ends_at` is exclusive) the ended hold lets bob's voice go; the category hold
    // still keeps bob's photo.
    let after_end = at(500);
    let claimed = h
        .data
        .claim_expired_media(after_end, 100, "sweeper")
        .unwrap();
    assert_eq!(ids(claimed), vec![bob_voice.id]);
    assert!(
        h.data
            .claim_expired_media(after_end, 100, "sweeper")
            .unwrap()
            .is_empty()
    );
    let holds = h.data.holds().unwrap();
    for kept in [&alice_photo, &alice_voice, &bob_photo, &carol_video] {
        assert_eq!(h.data.media(kept.id).unwrap().as_ref(), Some(kept));
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

    // A hold on everything keeps everything, until it is released too.
    let everything = hold(None, None, None);
    h.data
        .commit(batch(
            [&by_subject, &by_category, &by_both]
                .into_iter()
                .map(|hold| Mutation::ReleaseHold {
                    id: hold.id,
                    at: at(600),
                })
                .chain([Mutation::InsertHold(everything.clone())])
                .collect(),
            vec![],
        ))
        .unwrap();
    assert!(
        h.data
            .claim_expired_media(at(700), 100, "sweeper")
            .unwrap()
            .is_empty()
    );
    h.data
        .commit(batch(
            vec![Mutation::ReleaseHold {
                id: everything.id,
                at: at(800),
            }],
            vec![],
        ))
        .unwrap();
    let claimed = h.data.claim_expired_media(at(900), 100, "sweeper").unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(
        h.data
            .media_in_state(MediaState::Stored, at(1_000), 100)
            .unwrap()
            .is_empty()
    );
    assert_eq!(retention_entries(h.data.as_ref()).len(), 6);
    custodia_audit::verify(all_audit(h.data.as_ref())).unwrap();
}

/// Two handles (two server instances) claiming from several threads at once claim and audit
/// every due object exactly once, and the chain stays whole.
pub fn concurrent_media_claims_from_two_handles_claim_each_object_once(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let mut mutations = vec![Mutation::InsertSubject(owner.clone())];
    let due: Vec<MediaRow> = (0..120)
        .map(|i| expiring_media(owner.id, key, "user.content.photo", 1_000 + i))
        .collect();
    mutations.extend(due.iter().cloned().map(Mutation::InsertMedia));
    let kept = expiring_media(owner.id, key, "user.content.photo", 1_000_000);
    mutations.push(Mutation::InsertMedia(kept.clone()));
    h.data.commit(batch(mutations, vec![])).unwrap();
    let (second, _) = (h.reopen)();
    let handles: Vec<Arc<dyn DataStore>> = vec![h.data.clone(), second];
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = handles[t % 2].clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_expired_media(at(500_000), 7, &format!("sweeper-{t}"))
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|m| m.id));
                }
            })
        })
        .collect();
    let mut claimed: Vec<MediaId> = Vec::new();
    for thread in threads {
        claimed.extend(thread.join().unwrap());
    }
    assert_eq!(claimed.len(), due.len(), "each due object claimed once");
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), due.len(), "no object claimed twice");
    let deleting = h
        .data
        .media_in_state(MediaState::Deleting, at(500_000), 1_000)
        .unwrap();
    assert_eq!(deleting.len(), due.len());
    assert!(deleting.iter().all(|m| m.wrapped_key.is_empty()));
    assert_eq!(h.data.media(kept.id).unwrap(), Some(kept));
    let entries = all_audit(h.data.as_ref());
    custodia_audit::verify(&entries).unwrap();
    let mut audited: Vec<String> = retention_entries(h.data.as_ref())
        .into_iter()
        .filter_map(|e| e.event.record)
        .collect();
    assert_eq!(audited.len(), due.len(), "one audit entry per claim");
    audited.sort();
    audited.dedup();
    assert_eq!(audited.len(), due.len());
}

fn request_row(subject: SubjectId, state: &str, due: i64) -> RequestRow {
    RequestRow {
        id: RequestId::random().unwrap(),
        subject,
        kind: "access".to_owned(),
        state: state.to_owned(),
        law: "GDPR".to_owned(),
        received_at: at(100),
        acknowledge_by: None,
        due_at: at(due),
        original_due_at: None,
        details: vec![0x5E; 40],
        flags: Vec::new(),
        verification: None,
        updated_at: at(100),
        closed_at: None,
        version: 0,
    }
}

fn verification_row(byte: u8, issued: i64) -> VerificationRow {
    VerificationRow {
        code_hash: [byte; 32],
        issued_at: at(issued),
        expires_at: at(issued + 900_000),
        attempts: 0,
    }
}

/// An update that changes nothing but `updated_at`.
fn request_update(updated: i64) -> RequestUpdate {
    RequestUpdate {
        state: None,
        due_at: None,
        original_due_at: None,
        details: None,
        flags: None,
        verification: None,
        closed_at: None,
        updated_at: at(updated),
    }
}

fn update_request(id: RequestId, expected_version: u64, update: RequestUpdate) -> Mutation {
    Mutation::UpdateRequest {
        id,
        expected_version,
        update,
    }
}

fn disclosure_row(subject: SubjectId, recipient: &str, when: i64) -> DisclosureRow {
    DisclosureRow {
        id: DisclosureId::random().unwrap(),
        subject,
        recipient: recipient.to_owned(),
        recipient_kind: "processor".to_owned(),
        categories: vec!["user.contact.email".to_owned()],
        purpose: "account".to_owned(),
        at: at(when),
        reference: None,
        country: None,
        mechanism: None,
    }
}

fn notification_row(
    request: Option<RequestId>,
    subject: SubjectId,
    next_attempt: Option<i64>,
) -> NotificationRow {
    NotificationRow {
        id: NotificationId::random().unwrap(),
        kind: "erasure_notice".to_owned(),
        request,
        subject,
        recipient: "mailer-processor".to_owned(),
        payload: vec![0x9A; 56],
        state: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: next_attempt.map(at),
        last_error: None,
        created_at: at(100),
        delivered_at: None,
        settled_at: None,
        reason: None,
    }
}

fn update_notification(id: NotificationId, update: NotificationUpdate) -> Mutation {
    Mutation::UpdateNotification { id, update }
}

/// Requests come back exactly, every optional field set and unset (a verification with its
/// attempts, flags in order, an extension's original due date, the closing time, the version);
/// a missing one is `None`, and a second insert of an id conflicts and changes nothing.
pub fn requests_round_trip_every_field(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let bare = request_row(owner.id, "received", 2_000);
    let full = RequestRow {
        kind: "erasure".to_owned(),
        state: "fulfilled".to_owned(),
        law: "CCPA".to_owned(),
        received_at: at(1_000),
        acknowledge_by: Some(at(1_500)),
        due_at: at(9_000),
        original_due_at: Some(at(4_000)),
        details: vec![0xD7; 300],
        flags: vec![
            "ccpa.more_than_two_in_12_months".to_owned(),
            "a.second.flag".to_owned(),
        ],
        verification: Some(VerificationRow {
            attempts: u32::MAX,
            ..verification_row(0xC1, 1_100)
        }),
        updated_at: at(8_000),
        closed_at: Some(at(8_000)),
        version: 7,
        ..request_row(owner.id, "received", 1)
    };
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertRequest(bare.clone()),
                Mutation::InsertRequest(full.clone()),
            ],
            vec![event(EventKind::SubjectCreated, 1)],
        ))
        .unwrap();
    assert_eq!(h.data.request(bare.id).unwrap(), Some(bare.clone()));
    assert_eq!(h.data.request(full.id).unwrap(), Some(full.clone()));
    assert_eq!(h.data.request(RequestId::random().unwrap()).unwrap(), None);

    let head = h.data.audit_head().unwrap();
    let fresh = request_row(owner.id, "received", 3_000);
    let duplicate = RequestRow {
        id: full.id,
        ..request_row(owner.id, "verified", 5_000)
    };
    let err = h
        .data
        .commit(batch(
            vec![
                Mutation::InsertRequest(fresh.clone()),
                Mutation::InsertRequest(duplicate),
            ],
            vec![event(EventKind::SubjectCreated, 2)],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.data.request(fresh.id).unwrap(), None, "rolled back");
    assert_eq!(h.data.request(full.id).unwrap(), Some(full));
    assert_eq!(h.data.audit_head().unwrap(), head);
}

/// An update applies only at the version it names: it changes exactly the fields it names (and
/// `updated_at`) and bumps the version by one; a stale version is a conflict that changes
/// nothing, nor anything else in its batch; a missing request is not found.
pub fn request_updates_apply_at_their_version_only(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let mut expected = request_row(owner.id, "received", 2_000);
    expected.flags = vec!["first".to_owned()];
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertRequest(expected.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let id = expected.id;
    let apply = |version: u64, update: RequestUpdate| {
        h.data
            .commit(batch(vec![update_request(id, version, update)], vec![]))
            .unwrap();
        h.data.request(id).unwrap().unwrap()
    };

    expected.updated_at = at(200);
    expected.version = 1;
    assert_eq!(
        apply(0, request_update(200)),
        expected,
        "only the time moves"
    );

    let code = verification_row(0xAA, 300);
    expected.verification = Some(code.clone());
    expected.updated_at = at(300);
    expected.version = 2;
    let got = apply(
        1,
        RequestUpdate {
            verification: Some(Some(code.clone())),
            ..request_update(300)
        },
    );
    assert_eq!(got, expected, "a verification is set");

    let tried = VerificationRow {
        attempts: 2,
        ..code.clone()
    };
    expected.verification = Some(tried.clone());
    expected.state = "verified".to_owned();
    expected.details = vec![0x11; 12];
    expected.updated_at = at(400);
    expected.version = 3;
    let got = apply(
        2,
        RequestUpdate {
            state: Some("verified".to_owned()),
            details: Some(vec![0x11; 12]),
            verification: Some(Some(tried)),
            ..request_update(400)
        },
    );
    assert_eq!(got, expected);

    expected.verification = None;
    expected.due_at = at(5_000);
    expected.original_due_at = Some(at(2_000));
    expected.flags = vec!["second".to_owned(), "third".to_owned()];
    expected.updated_at = at(500);
    expected.version = 4;
    let got = apply(
        3,
        RequestUpdate {
            due_at: Some(at(5_000)),
            original_due_at: Some(at(2_000)),
            flags: Some(vec!["second".to_owned(), "third".to_owned()]),
            verification: Some(None),
            ..request_update(500)
        },
    );
    assert_eq!(
        got, expected,
        "extended, flags replaced, verification cleared"
    );

    expected.flags = Vec::new();
    expected.updated_at = at(550);
    expected.version = 5;
    let got = apply(
        4,
        RequestUpdate {
            flags: Some(Vec::new()),
            ..request_update(550)
        },
    );
    assert_eq!(got, expected, "flags can be emptied");

    // A stale version: a conflict, and the batch (another change, an audit event) rolls back.
    let head = h.data.audit_head().unwrap();
    let other = request_row(owner.id, "received", 7_000);
    for stale in [0, 4, 6, u64::MAX] {
        let err = h
            .data
            .commit(batch(
                vec![
                    Mutation::InsertRequest(other.clone()),
                    update_request(
                        id,
                        stale,
                        RequestUpdate {
                            state: Some("rejected".to_owned()),
                            closed_at: Some(at(600)),
                            ..request_update(600)
                        },
                    ),
                ],
                vec![event(EventKind::Decision, 600)],
            ))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{stale}: {err:?}");
        assert_eq!(h.data.request(id).unwrap().as_ref(), Some(&expected));
        assert_eq!(h.data.request(other.id).unwrap(), None, "rolled back");
        assert_eq!(h.data.audit_head().unwrap(), head);
    }

    expected.state = "fulfilled".to_owned();
    expected.closed_at = Some(at(700));
    expected.updated_at = at(700);
    expected.version = 6;
    let got = apply(
        5,
        RequestUpdate {
            state: Some("fulfilled".to_owned()),
            closed_at: Some(at(700)),
            ..request_update(700)
        },
    );
    assert_eq!(got, expected, "closed");

    let err = h
        .data
        .commit(batch(
            vec![update_request(
                RequestId::random().unwrap(),
                0,
                request_update(800),
            )],
            vec![],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(h.data.request(id).unwrap(), Some(expected));
}

/// Threads on two handles (two server instances) that read the same version of a request and
/// race the same transition: exactly one applies, every other gets a conflict, each round.
pub fn concurrent_request_transitions_from_two_handles_apply_once(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let request = request_row(owner.id, "received", 2_000);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertRequest(request.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let (second, _) = (h.reopen)();
    let handles: Vec<Arc<dyn DataStore>> = vec![h.data.clone(), second];
    const THREADS: usize = 4;
    const ROUNDS: u64 = 8;
    for round in 0..ROUNDS {
        let barrier = Arc::new(std::sync::Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = handles[t % 2].clone();
                let barrier = barrier.clone();
                let id = request.id;
                std::thread::spawn(move || {
                    let read = store.request(id).unwrap().unwrap();
                    // Everyone has read before anyone writes.
                    barrier.wait();
                    let update = RequestUpdate {
                        state: Some(format!("state-{round}-{t}")),
                        ..request_update(1_000 + i64::try_from(t).unwrap())
                    };
                    match store.commit(batch(
                        vec![update_request(id, read.version, update)],
                        vec![event(EventKind::Decision, 1)],
                    )) {
                        Ok(_) => Some(t),
                        Err(StoreError::Conflict(_)) => None,
                        Err(other) => panic!("thread {t}: {other:?}"),
                    }
                })
            })
            .collect();
        let winners: Vec<usize> = threads
            .into_iter()
            .filter_map(|thread| thread.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let now = h.data.request(request.id).unwrap().unwrap();
        assert_eq!(now.version, round + 1);
        assert_eq!(now.state, format!("state-{round}-{}", winners[0]));
    }
    let entries = all_audit(h.data.as_ref());
    assert_eq!(
        entries.len(),
        usize::try_from(ROUNDS).unwrap(),
        "one per win"
    );
    custodia_audit::verify(&entries).unwrap();
}

/// `requests` filters by state, due date (inclusive), subject and openness (not fulfilled or
/// rejected), in any combination, lists by due date then id, and stops at the limit (0: none).
pub fn requests_filter_by_state_due_subject_and_openness_in_due_order(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let rows = [
        request_row(alice.id, "received", 1_000),
        request_row(alice.id, "verified", 3_000),
        request_row(bob.id, "fulfilled", 2_000),
        request_row(bob.id, "rejected", 500),
        request_row(alice.id, "in_progress", 2_000),
        request_row(bob.id, "received", 2_000),
        request_row(bob.id, "extended", 5_000),
    ];
    let mut mutations = vec![
        Mutation::InsertSubject(alice.clone()),
        Mutation::InsertSubject(bob.clone()),
    ];
    mutations.extend(rows.iter().cloned().map(Mutation::InsertRequest));
    h.data.commit(batch(mutations, vec![])).unwrap();
    let expect = |keep: &dyn Fn(&RequestRow) -> bool, limit: usize| {
        let mut found: Vec<RequestRow> = rows.iter().filter(|r| keep(r)).cloned().collect();
        found.sort_by_key(|r| (r.due_at, r.id));
        if limit > 0 {
            found.truncate(limit);
        }
        found
    };
    let open = |r: &RequestRow| r.state != "fulfilled" && r.state != "rejected";
    let list = |filter: RequestFilter| h.data.requests(&filter).unwrap();

    assert_eq!(list(RequestFilter::default()), expect(&|_| true, 0));
    assert_eq!(
        list(RequestFilter {
            state: Some("received".to_owned()),
            ..RequestFilter::default()
        }),
        expect(&|r| r.state == "received", 0)
    );
    assert_eq!(
        list(RequestFilter {
            due_before: Some(at(2_000)),
            ..RequestFilter::default()
        }),
        expect(&|r| r.due_at <= at(2_000), 0),
        "due at or before, ties by id"
    );
    assert_eq!(
        list(RequestFilter {
            subject: Some(alice.id),
            ..RequestFilter::default()
        }),
        expect(&|r| r.subject == alice.id, 0)
    );
    assert_eq!(
        list(RequestFilter {
            open_only: true,
            ..RequestFilter::default()
        }),
        expect(&open, 0)
    );
    assert_eq!(
        list(RequestFilter {
            subject: Some(bob.id),
            due_before: Some(at(2_000)),
            open_only: true,
            ..RequestFilter::default()
        }),
        expect(
            &|r| r.subject == bob.id && r.due_at <= at(2_000) && open(r),
            0
        )
    );
    assert_eq!(
        list(RequestFilter {
            state: Some("received".to_owned()),
            subject: Some(alice.id),
            due_before: Some(at(999)),
            ..RequestFilter::default()
        }),
        Vec::new()
    );
    assert!(
        list(RequestFilter {
            state: Some("fulfilled".to_owned()),
            open_only: true,
            ..RequestFilter::default()
        })
        .is_empty()
    );
    assert_eq!(
        list(RequestFilter {
            limit: 2,
            ..RequestFilter::default()
        }),
        expect(&|_| true, 2)
    );
    assert_eq!(
        list(RequestFilter {
            open_only: true,
            limit: 3,
            ..RequestFilter::default()
        }),
        expect(&open, 3)
    );
    assert_eq!(
        list(RequestFilter {
            limit: 100,
            ..RequestFilter::default()
        })
        .len(),
        rows.len()
    );
    assert!(
        list(RequestFilter {
            subject: Some(SubjectId::random().unwrap()),
            ..RequestFilter::default()
        })
        .is_empty()
    );
}

/// A request or a disclosure for a subject that does not exist, and a notification for a
/// request that does not exist, are not found, and their batch changes nothing.
pub fn requests_disclosures_and_notifications_need_their_subject_or_request(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let known = request_row(owner.id, "received", 1_000);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertRequest(known.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let stranger = SubjectId::random().unwrap();
    let fresh = request_row(owner.id, "received", 2_000);
    let cases = [
        Mutation::InsertRequest(request_row(stranger, "received", 1_000)),
        Mutation::InsertDisclosure(disclosure_row(stranger, "crm", 1)),
        Mutation::InsertNotification(notification_row(
            Some(RequestId::random().unwrap()),
            owner.id,
            Some(1),
        )),
    ];
    for mutation in cases {
        let err = h
            .data
            .commit(batch(
                vec![Mutation::InsertRequest(fresh.clone()), mutation.clone()],
                vec![event(EventKind::Decision, 1)],
            ))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(_)),
            "{mutation:?}: {err:?}"
        );
        assert_eq!(h.data.request(fresh.id).unwrap(), None, "rolled back");
        assert_eq!(h.data.audit_head().unwrap(), None);
    }
    assert!(
        h.data
            .requests(&RequestFilter {
                subject: Some(stranger),
                ..RequestFilter::default()
            })
            .unwrap()
            .is_empty()
    );
    assert!(h.data.disclosures_of(stranger).unwrap().is_empty());
    assert_eq!(
        h.data.requests(&RequestFilter::default()).unwrap(),
        vec![known]
    );
}

/// Requests, disclosures and notifications are evidence: deleting the subject row (once its
/// records are gone) keeps them under its pseudonymous id, and they can still be worked on,
/// but nothing new can be recorded for the gone subject.
pub fn requests_disclosures_and_notifications_outlive_their_subject(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let record = record_row(owner.id, key, "user.contact.email", 10);
    let request = RequestRow {
        kind: "erasure".to_owned(),
        ..request_row(owner.id, "in_progress", 5_000)
    };
    let disclosure = disclosure_row(owner.id, "crm", 50);
    let notice = notification_row(Some(request.id), owner.id, Some(1_000));
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertRecord(record),
                Mutation::InsertRequest(request.clone()),
                Mutation::InsertDisclosure(disclosure.clone()),
                Mutation::InsertNotification(notice.clone()),
            ],
            vec![],
        ))
        .unwrap();
    h.data
        .commit(batch(
            vec![
                Mutation::DeleteRecordsOf {
                    subject: owner.id,
                    keep_statutory: false,
                },
                Mutation::DeleteSubject(owner.id),
            ],
            vec![event(EventKind::SubjectErased, 2)],
        ))
        .unwrap();
    assert_eq!(h.data.subject(owner.id).unwrap(), None);
    assert_eq!(h.data.request(request.id).unwrap(), Some(request.clone()));
    assert_eq!(
        h.data
            .requests(&RequestFilter {
                subject: Some(owner.id),
                ..RequestFilter::default()
            })
            .unwrap(),
        vec![request.clone()]
    );
    assert_eq!(
        h.data.disclosures_of(owner.id).unwrap(),
        vec![disclosure.clone()]
    );
    assert_eq!(
        h.data.notification(notice.id).unwrap(),
        Some(notice.clone())
    );
    assert_eq!(
        h.data.notifications_of(request.id).unwrap(),
        vec![notice.clone()]
    );

    // The request is still worked on: its notices are delivered, more are queued, it closes.
    let later = notification_row(Some(request.id), owner.id, Some(1_500));
    h.data
        .commit(batch(
            vec![
                update_notification(
                    notice.id,
                    NotificationUpdate {
                        state: Some("acknowledged".to_owned()),
                        settled_at: Some(at(3_000)),
                        next_attempt_at: Some(None),
                        ..NotificationUpdate::default()
                    },
                ),
                Mutation::InsertNotification(later.clone()),
                update_request(
                    request.id,
                    0,
                    RequestUpdate {
                        state: Some("fulfilled".to_owned()),
                        closed_at: Some(at(3_000)),
                        ..request_update(3_000)
                    },
                ),
            ],
            vec![],
        ))
        .unwrap();
    let closed = h.data.request(request.id).unwrap().unwrap();
    assert_eq!((closed.state.as_str(), closed.version), ("fulfilled", 1));
    assert_eq!(h.data.notifications_of(request.id).unwrap().len(), 2);

    // Nothing new is recorded for the gone subject.
    for mutation in [
        Mutation::InsertRequest(request_row(owner.id, "received", 9_000)),
        Mutation::InsertDisclosure(disclosure_row(owner.id, "crm", 60)),
    ] {
        let err = h
            .data
            .commit(batch(vec![mutation.clone()], vec![]))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(_)),
            "{mutation:?}: {err:?}"
        );
    }
    assert_eq!(h.data.disclosures_of(owner.id).unwrap(), vec![disclosure]);
}

/// Disclosures come back exactly, every optional field set and unset, per subject in the
/// order they were recorded (not by time); a second insert of an id conflicts.
pub fn disclosures_round_trip_in_order(h: Harness) {
    let key = KeyId::random().unwrap();
    let alice = subject_row(key, 1);
    let bob = subject_row(key, 2);
    let abroad = DisclosureRow {
        categories: vec![
            "user.contact.email".to_owned(),
            "user.profile.name".to_owned(),
        ],
        purpose: "support".to_owned(),
        country: Some("SG".to_owned()),
        mechanism: Some("standard_contract".to_owned()),
        ..disclosure_row(alice.id, "helpdesk-processor", 300)
    };
    let authority = DisclosureRow {
        recipient_kind: "authority".to_owned(),
        categories: Vec::new(),
        reference: Some("ORDER-2024-17".to_owned()),
        ..disclosure_row(alice.id, "regulator", 100)
    };
    let other = disclosure_row(bob.id, "crm", 200);
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(alice.clone()),
                Mutation::InsertSubject(bob.clone()),
                Mutation::InsertDisclosure(abroad.clone()),
                Mutation::InsertDisclosure(authority.clone()),
                Mutation::InsertDisclosure(other.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let late = disclosure_row(alice.id, "crm", 1);
    h.data
        .commit(batch(
            vec![Mutation::InsertDisclosure(late.clone())],
            vec![],
        ))
        .unwrap();
    assert_eq!(
        h.data.disclosures_of(alice.id).unwrap(),
        vec![abroad.clone(), authority, late],
        "recorded order, not time order"
    );
    assert_eq!(h.data.disclosures_of(bob.id).unwrap(), vec![other]);
    assert!(
        h.data
            .disclosures_of(SubjectId::random().unwrap())
            .unwrap()
            .is_empty()
    );
    let duplicate = DisclosureRow {
        id: abroad.id,
        ..disclosure_row(bob.id, "crm", 5)
    };
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertDisclosure(duplicate)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.data.disclosures_of(bob.id).unwrap().len(), 1);
}

/// Notifications come back exactly, every optional field set and unset, with or without a
/// request; a request's are listed in the order they were queued; a second insert of an id
/// conflicts.
pub fn notifications_round_trip_in_queue_order(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let request = request_row(owner.id, "in_progress", 5_000);
    let other_request = request_row(owner.id, "in_progress", 6_000);
    let pending = notification_row(Some(request.id), owner.id, Some(500));
    let settled = NotificationRow {
        state: "impossible".to_owned(),
        attempts: u32::MAX,
        next_attempt_at: None,
        last_error: Some("delivery.unreachable".to_owned()),
        created_at: at(50),
        delivered_at: Some(at(60)),
        settled_at: Some(at(70)),
        reason: Some(vec![0x4E; 33]),
        payload: Vec::new(),
        ..notification_row(Some(request.id), owner.id, None)
    };
    let code = NotificationRow {
        kind: "verification_code".to_owned(),
        recipient: "subject".to_owned(),
        ..notification_row(None, owner.id, Some(10))
    };
    let elsewhere = notification_row(Some(other_request.id), owner.id, Some(1));
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertRequest(request.clone()),
                Mutation::InsertRequest(other_request.clone()),
                Mutation::InsertNotification(pending.clone()),
                Mutation::InsertNotification(settled.clone()),
                Mutation::InsertNotification(code.clone()),
                Mutation::InsertNotification(elsewhere.clone()),
            ],
            vec![],
        ))
        .unwrap();
    for row in [&pending, &settled, &code, &elsewhere] {
        assert_eq!(h.data.notification(row.id).unwrap().as_ref(), Some(row));
    }
    assert_eq!(
        h.data
            .notification(NotificationId::random().unwrap())
            .unwrap(),
        None
    );
    let later = notification_row(Some(request.id), owner.id, Some(1));
    h.data
        .commit(batch(
            vec![Mutation::InsertNotification(later.clone())],
            vec![],
        ))
        .unwrap();
    assert_eq!(
        h.data.notifications_of(request.id).unwrap(),
        vec![pending.clone(), settled, later],
        "queue order"
    );
    assert_eq!(
        h.data.notifications_of(other_request.id).unwrap(),
        vec![elsewhere]
    );
    assert!(
        h.data
            .notifications_of(RequestId::random().unwrap())
            .unwrap()
            .is_empty()
    );
    let duplicate = NotificationRow {
        id: pending.id,
        ..notification_row(None, owner.id, None)
    };
    let err = h
        .data
        .commit(batch(vec![Mutation::InsertNotification(duplicate)], vec![]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.data.notification(pending.id).unwrap(), Some(pending));
}

/// A notification update changes exactly the fields it names: an empty one nothing; the next
/// attempt and the last error can be set and cleared; the payload can be wiped. Updating a
/// missing notification is not found and rolls the whole batch back.
pub fn notification_updates_change_only_what_they_name(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let request = request_row(owner.id, "in_progress", 5_000);
    let mut expected = notification_row(Some(request.id), owner.id, Some(100));
    h.data
        .commit(batch(
            vec![
                Mutation::InsertSubject(owner.clone()),
                Mutation::InsertRequest(request.clone()),
                Mutation::InsertNotification(expected.clone()),
            ],
            vec![],
        ))
        .unwrap();
    let id = expected.id;
    let apply = |update: NotificationUpdate| {
        h.data
            .commit(batch(vec![update_notification(id, update)], vec![]))
            .unwrap();
        h.data.notification(id).unwrap().unwrap()
    };

    assert_eq!(apply(NotificationUpdate::default()), expected);

    expected.attempts = 1;
    expected.next_attempt_at = Some(at(200));
    expected.last_error = Some("smtp.timeout".to_owned());
    let got = apply(NotificationUpdate {
        attempts: Some(1),
        next_attempt_at: Some(Some(at(200))),
        last_error: Some(Some("smtp.timeout".to_owned())),
        ..NotificationUpdate::default()
    });
    assert_eq!(got, expected, "a failed attempt");

    expected.state = "delivered".to_owned();
    expected.attempts = 2;
    expected.delivered_at = Some(at(250));
    expected.next_attempt_at = None;
    let got = apply(NotificationUpdate {
        state: Some("delivered".to_owned()),
        attempts: Some(2),
        delivered_at: Some(at(250)),
        next_attempt_at: Some(None),
        ..NotificationUpdate::default()
    });
    assert_eq!(
        got, expected,
        "delivered: no further attempt, the error stays"
    );

    expected.last_error = None;
    let got = apply(NotificationUpdate {
        last_error: Some(None),
        ..NotificationUpdate::default()
    });
    assert_eq!(got, expected, "the error is cleared");

    expected.state = "impossible".to_owned();
    expected.settled_at = Some(at(300));
    expected.reason = Some(vec![0x33; 20]);
    expected.payload = Vec::new();
    let got = apply(NotificationUpdate {
        state: Some("impossible".to_owned()),
        settled_at: Some(at(300)),
        reason: Some(vec![0x33; 20]),
        payload: Some(Vec::new()),
        ..NotificationUpdate::default()
    });
    assert_eq!(got, expected, "settled, payload wiped");

    let err = h
        .data
        .commit(batch(
            vec![
                update_notification(
                    id,
                    NotificationUpdate {
                        attempts: Some(9),
                        ..NotificationUpdate::default()
                    },
                ),
                update_notification(
                    NotificationId::random().unwrap(),
                    NotificationUpdate::default(),
                ),
            ],
            vec![event(EventKind::Decision, 1)],
        ))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        h.data.notification(id).unwrap(),
        Some(expected),
        "rolled back"
    );
    assert_eq!(h.data.audit_head().unwrap(), None);
}

/// `claim_due_notifications` claims pending notifications due at `now`, oldest due first, at
/// most `limit`, returning them as they were and moving their next attempt to `until`: claiming
/// again at the same `now` takes nothing, and the claims lapse at `until`. Notifications not
/// pending, not yet due or with no next attempt are never claimed.
pub fn claim_due_notifications_claims_pending_due_ones_until_the_claim_lapses(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let request = request_row(owner.id, "in_progress", 5_000);
    let first = notification_row(Some(request.id), owner.id, Some(100));
    let third = notification_row(Some(request.id), owner.id, Some(300));
    let second = notification_row(None, owner.id, Some(200));
    let not_yet = notification_row(Some(request.id), owner.id, Some(1_000));
    let never = notification_row(Some(request.id), owner.id, None);
    let delivered = NotificationRow {
        state: "delivered".to_owned(),
        ..notification_row(Some(request.id), owner.id, Some(50))
    };
    let failed = NotificationRow {
        state: "failed".to_owned(),
        ..notification_row(Some(request.id), owner.id, Some(50))
    };
    let mut mutations = vec![
        Mutation::InsertSubject(owner.clone()),
        Mutation::InsertRequest(request.clone()),
    ];
    mutations.extend(
        [
            &first, &third, &second, &not_yet, &never, &delivered, &failed,
        ]
        .into_iter()
        .cloned()
        .map(Mutation::InsertNotification),
    );
    h.data.commit(batch(mutations, vec![])).unwrap();
    let claimed_until = |row: &NotificationRow, until: i64| NotificationRow {
        next_attempt_at: Some(at(until)),
        ..row.clone()
    };

    assert!(
        h.data
            .claim_due_notifications(at(500), at(2_000), 0)
            .unwrap()
            .is_empty()
    );
    assert!(
        h.data
            .claim_due_notifications(at(99), at(2_000), 10)
            .unwrap()
            .is_empty(),
        "nothing is due yet"
    );
    assert_eq!(
        h.data
            .claim_due_notifications(at(500), at(2_000), 2)
            .unwrap(),
        vec![first.clone(), second.clone()],
        "oldest due first, as they were"
    );
    assert_eq!(
        h.data.notification(first.id).unwrap(),
        Some(claimed_until(&first, 2_000))
    );
    assert_eq!(
        h.data.notification(second.id).unwrap(),
        Some(claimed_until(&second, 2_000))
    );
    assert_eq!(
        h.data
            .claim_due_notifications(at(500), at(2_000), 10)
            .unwrap(),
        vec![third.clone()]
    );
    assert!(
        h.data
            .claim_due_notifications(at(500), at(2_000), 10)
            .unwrap()
            .is_empty(),
        "a second claim at the same time takes nothing"
    );
    assert_eq!(
        h.data
            .claim_due_notifications(at(1_999), at(3_000), 10)
            .unwrap(),
        vec![not_yet.clone()],
        "the others' claims have not lapsed"
    );

    // Delivered meanwhile: no longer pending, never claimed again.
    h.data
        .commit(batch(
            vec![update_notification(
                third.id,
                NotificationUpdate {
                    state: Some("delivered".to_owned()),
                    attempts: Some(1),
                    delivered_at: Some(at(600)),
                    ..NotificationUpdate::default()
                },
            )],
            vec![],
        ))
        .unwrap();
    assert_eq!(
        h.data
            .claim_due_notifications(at(2_000), at(4_000), 10)
            .unwrap(),
        vec![claimed_until(&first, 2_000), claimed_until(&second, 2_000)],
        "lapsed claims are taken again, in queue order on a tie"
    );
    assert_eq!(
        h.data
            .claim_due_notifications(at(10_000), at(20_000), 10)
            .unwrap(),
        vec![
            claimed_until(&not_yet, 3_000),
            claimed_until(&first, 4_000),
            claimed_until(&second, 4_000),
        ]
    );
    for untouched in [&never, &delivered, &failed] {
        assert_eq!(
            h.data.notification(untouched.id).unwrap().as_ref(),
            Some(untouched)
        );
    }
    assert_eq!(h.data.audit_head().unwrap(), None, "claims are not audited");
}

/// Threads on two handles (two deliverers) claiming at once claim every due notification
/// exactly once, and each ends up claimed until the time they asked for.
pub fn concurrent_notification_claims_from_two_handles_claim_each_once(h: Harness) {
    let key = KeyId::random().unwrap();
    let owner = subject_row(key, 1);
    let request = request_row(owner.id, "in_progress", 5_000);
    let due: Vec<NotificationRow> = (0..120)
        .map(|i| notification_row(Some(request.id), owner.id, Some(1_000 + i)))
        .collect();
    let later = notification_row(Some(request.id), owner.id, Some(1_000_000));
    let mut mutations = vec![
        Mutation::InsertSubject(owner.clone()),
        Mutation::InsertRequest(request.clone()),
    ];
    mutations.extend(due.iter().cloned().map(Mutation::InsertNotification));
    mutations.push(Mutation::InsertNotification(later.clone()));
    h.data.commit(batch(mutations, vec![])).unwrap();
    let (second, _) = (h.reopen)();
    let handles: Vec<Arc<dyn DataStore>> = vec![h.data.clone(), second];
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = handles[t % 2].clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_due_notifications(at(500_000), at(900_000), 7)
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|n| n.id));
                }
            })
        })
        .collect();
    let mut claimed: Vec<NotificationId> = Vec::new();
    for thread in threads {
        claimed.extend(thread.join().unwrap());
    }
    assert_eq!(
        claimed.len(),
        due.len(),
        "each due notification claimed once"
    );
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), due.len(), "none claimed twice");
    for row in &due {
        let now = h.data.notification(row.id).unwrap().unwrap();
        assert_eq!(now.next_attempt_at, Some(at(900_000)));
    }
    assert_eq!(h.data.notification(later.id).unwrap(), Some(later));
}
