//! The retention sweeper with a moved clock: expired records go with an audit entry naming their
//! rule, legal holds keep what they cover until released or ended, statutory records outlive an
//! erasure until their own expiry, and a dry run changes nothing.

use custodia_audit::EventKind;
use custodia_core::{HoldId, Timestamp};
use custodia_vault::{NewRecord, SweepReport};

use crate::backends::{TestVault, fresh, new_subject};

const PHONE: &str = "user.contact.phone_number";
const DEVICE: &str = "user.device.device_id";
const LOG: &str = "system.operations.network_log";

fn entries_of(t: &TestVault, kind: EventKind) -> Vec<custodia_audit::AuditEntry> {
    let entries = t.data.audit_entries(1, 10_000).unwrap();
    custodia_audit::verify(&entries).unwrap();
    entries
        .into_iter()
        .filter(|e| e.event.kind == kind)
        .collect()
}

fn sweep(t: &TestVault) -> SweepReport {
    let mut calls = 0u64;
    let report = t
        .vault
        .sweep(false, 2, "sweeper", &mut |_done: u64, _total: u64| {
            calls += 1
        })
        .unwrap();
    assert!(calls >= 1, "progress is reported");
    report
}

/// A subject with one device-id record (kept a year after collection); returns the subject and
/// the record's id.
fn with_device(
    t: &TestVault,
    external: &str,
) -> (custodia_core::SubjectId, custodia_core::RecordId) {
    let subject = t
        .vault
        .create_subject(&new_subject(external), "test")
        .unwrap();
    let written = t
        .vault
        .write_records(
            subject.id,
            &[NewRecord {
                category: DEVICE,
                purpose: "crash_reporting",
                value: b"device-1234",
            }],
            "test",
        )
        .unwrap();
    (subject.id, written[0].id)
}

#[test]
fn expired_records_are_swept_with_their_rule_in_the_audit() {
    let t = fresh();
    let (alice, first) = with_device(&t, "alice");
    let (_, second) = with_device(&t, "bob");
    let (_, third) = with_device(&t, "carol");
    let rule = t.data.record(first).unwrap().unwrap().rule;
    t.clock.advance_days(364);
    assert_eq!(sweep(&t), SweepReport::default(), "nothing due yet");
    t.clock.advance_days(2);
    let report = sweep(&t);
    assert_eq!(report.deleted, 3, "three batches of at most two");
    assert_eq!(report.held, 0);
    assert_eq!(
        report.by_rule.into_iter().collect::<Vec<_>>(),
        vec![((DEVICE.to_owned(), rule.clone()), 3)]
    );
    for id in [first, second, third] {
        assert_eq!(t.data.record(id).unwrap(), None);
    }
    let swept = entries_of(&t, EventKind::RetentionDeleted);
    assert_eq!(swept.len(), 3);
    assert_eq!(swept[0].event.record, Some(first.to_string()));
    assert_eq!(swept[0].event.subject, Some(alice.to_string()));
    assert!(swept.iter().all(|e| e.event.rule.as_deref() == Some(&rule)));
    assert!(
        swept
            .iter()
            .all(|e| e.event.actor.as_deref() == Some("sweeper"))
    );
    // Idempotent: nothing more to do, nothing more audited.
    assert_eq!(sweep(&t).deleted, 0);
    assert_eq!(entries_of(&t, EventKind::RetentionDeleted).len(), 3);
}

#[test]
fn a_hold_keeps_records_until_released_or_ended() {
    let t = fresh();
    let (alice, alices) = with_device(&t, "alice");
    let (_, bobs) = with_device(&t, "bob");
    let by_subject = t
        .vault
        .place_hold(Some(alice), None, "litigation 2026-17", None, "dpo")
        .unwrap();
    let ends = t
        .vault
        .now()
        .checked_add(400, custodia_core::CalendarUnit::Days)
        .unwrap();
    let by_category = t
        .vault
        .place_hold(None, Some(DEVICE), "regulator inquiry", Some(ends), "dpo")
        .unwrap();
    assert_eq!(
        t.vault.holds().unwrap(),
        vec![by_subject.clone(), by_category.clone()]
    );
    assert_eq!(entries_of(&t, EventKind::HoldPlaced).len(), 2);

    t.clock.advance_days(366);
    let report = sweep(&t);
    assert_eq!((report.deleted, report.held), (0, 2));
    let dry = t
        .vault
        .sweep(true, 10, "sweeper", &mut |_: u64, _: u64| {})
        .unwrap();
    assert_eq!((dry.deleted, dry.held), (0, 2));

    // The category hold ends; the subject hold still keeps alice's record.
    t.clock.set(ends);
    let report = sweep(&t);
    assert_eq!((report.deleted, report.held), (1, 1));
    assert_eq!(t.data.record(bobs).unwrap(), None);
    assert!(t.data.record(alices).unwrap().is_some());

    let released = t.vault.release_hold(by_subject.id, "dpo").unwrap();
    assert_eq!(released.released_at, Some(ends));
    t.clock.advance_days(1);
    let again = t.vault.release_hold(by_subject.id, "dpo").unwrap();
    assert_eq!(
        again.released_at,
        Some(ends),
        "the first release time stays"
    );
    assert_eq!(entries_of(&t, EventKind::HoldReleased).len(), 1);
    let report = sweep(&t);
    assert_eq!((report.deleted, report.held), (1, 0));
    assert_eq!(t.data.record(alices).unwrap(), None);
    assert_eq!(entries_of(&t, EventKind::RetentionDeleted).len(), 2);

    let err = t
        .vault
        .release_hold(HoldId::random().unwrap(), "dpo")
        .unwrap_err();
    assert_eq!(err.code(), "store.not_found");
}

#[test]
fn holds_are_refused_when_invalid_and_change_nothing() {
    let t = fresh();
    let (alice, _) = with_device(&t, "alice");
    let past = Timestamp::from_millis(t.vault.now().as_millis() - 1);
    let long = "x".repeat(501);
    let cases: [(Option<&str>, &str, Option<Timestamp>, &str); 5] = [
        (Some("user.unknown"), "case", None, "vault.unknown_category"),
        (None, "", None, "vault.invalid"),
        (None, "   ", None, "vault.invalid"),
        (None, &long, None, "vault.invalid"),
        (None, "case", Some(past), "vault.invalid"),
    ];
    for (category, reason, ends_at, code) in cases {
        let err = t
            .vault
            .place_hold(Some(alice), category, reason, ends_at, "dpo")
            .unwrap_err();
        assert_eq!(err.code(), code);
    }
    let err = t
        .vault
        .place_hold(
            Some(custodia_core::SubjectId::random().unwrap()),
            None,
            "case",
            None,
            "dpo",
        )
        .unwrap_err();
    assert_eq!(err.code(), "vault.subject_not_found");
    assert!(t.vault.holds().unwrap().is_empty());
    assert!(entries_of(&t, EventKind::HoldPlaced).is_empty());
    let ok = t
        .vault
        .place_hold(None, None, &"x".repeat(500), None, "dpo");
    assert!(ok.is_ok(), "500 characters are fine");
}

#[test]
fn statutory_records_outlive_an_erasure_and_are_swept_at_their_own_expiry() {
    let t = fresh();
    let alice = t
        .vault
        .create_subject(&new_subject("alice"), "test")
        .unwrap();
    let written = t
        .vault
        .write_records(
            alice.id,
            &[
                NewRecord {
                    category: PHONE,
                    purpose: "account",
                    value: b"phone",
                },
                NewRecord {
                    category: LOG,
                    purpose: "security",
                    value: b"10.0.0.1 GET /",
                },
            ],
            "t",
        )
        .unwrap();
    let log = written.iter().find(|r| r.category == LOG).unwrap().id;
    let rule = t.data.record(log).unwrap().unwrap().rule;
    t.vault.erase_subject(alice.id, "dpo").unwrap();
    assert_eq!(sweep(&t).deleted, 0, "kept storage-only after the erasure");
    assert!(t.data.record(log).unwrap().is_some());
    t.clock.advance_days(184);
    let report = sweep(&t);
    assert_eq!(report.deleted, 1);
    assert_eq!(
        report.by_rule.into_iter().collect::<Vec<_>>(),
        vec![((LOG.to_owned(), rule.clone()), 1)]
    );
    assert_eq!(t.data.record(log).unwrap(), None);
    let swept = entries_of(&t, EventKind::RetentionDeleted);
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].event.rule, Some(rule));
    assert_eq!(swept[0].event.subject, Some(alice.id.to_string()));
}

#[test]
fn a_dry_run_deletes_nothing() {
    let t = fresh();
    let (_, record) = with_device(&t, "alice");
    let rule = t.data.record(record).unwrap().unwrap().rule;
    t.clock.advance_days(400);
    let head = t.data.audit_head().unwrap();
    let report = t
        .vault
        .sweep(true, 10, "sweeper", &mut |_: u64, _: u64| {})
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.deleted, 1);
    assert_eq!(
        report.by_rule.into_iter().collect::<Vec<_>>(),
        vec![((DEVICE.to_owned(), rule), 1)]
    );
    assert!(t.data.record(record).unwrap().is_some());
    assert_eq!(t.data.audit_head().unwrap(), head, "nothing audited");
    assert_eq!(sweep(&t).deleted, 1);
    let err = t
        .vault
        .sweep(false, 0, "sweeper", &mut |_: u64, _: u64| {})
        .unwrap_err();
    assert_eq!(err.code(), "vault.invalid");
}
