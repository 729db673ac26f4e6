//! Subjects and records: round trips, refusals that change nothing, expiry at write time,
//! tamper detection, and the audit chain that records it all.

use custodia_core::Timestamp;
use custodia_vault::{NewRecord, VaultError};

use crate::backends::{fresh, new_subject};

const PHONE: &str = "user.contact.phone_number";
const DEVICE: &str = "user.device.device_id";
const AUDIO: &str = "user.content.audio_recording";

#[test]
fn subjects_and_records_round_trip() {
    let t = fresh();
    let alice = t
        .vault
        .create_subject(&new_subject("app-user-1"), "test")
        .unwrap();
    assert_eq!(t.vault.find_subject("app-user-1").unwrap(), Some(alice.id));
    assert_eq!(t.vault.find_subject("app-user-2").unwrap(), None);
    assert_eq!(
        t.vault.subject(alice.id).unwrap().profile,
        Some(new_subject("app-user-1"))
    );
    let written = t
        .vault
        .write_records(
            alice.id,
            &[
                NewRecord {
                    category: PHONE,
                    purpose: "account",
                    value: b"+86 138 0000 0000",
                },
                NewRecord {
                    category: DEVICE,
                    purpose: "crash_reporting",
                    value: b"device-1",
                },
            ],
            "test",
        )
        .unwrap();
    assert_eq!(written.len(), 2);
    let phones = t
        .vault
        .read_records(alice.id, PHONE, "account", "test")
        .unwrap();
    assert_eq!(phones.len(), 1);
    assert_eq!(phones[0].value.as_slice(), b"+86 138 0000 0000");
    assert_eq!(phones[0].purpose, "account");
    let duplicate = t
        .vault
        .create_subject(&new_subject("app-user-1"), "test")
        .unwrap_err();
    assert_eq!(duplicate.code(), "vault.subject_exists");
}

#[test]
fn bad_input_is_refused_with_a_code_and_writes_nothing() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("u1"), "test").unwrap();
    let head = t.data.audit_head().unwrap();
    let cases: [(&str, &str, &str); 3] = [
        ("user.location.precise", "account", "vault.unknown_category"),
        (PHONE, "marketing", "vault.unknown_purpose"),
        (DEVICE, "account", "vault.purpose_does_not_cover"),
    ];
    for (category, purpose, code) in cases {
        // A valid record before the bad one: the batch must not be half written.
        let err = t
            .vault
            .write_records(
                alice.id,
                &[
                    NewRecord {
                        category: PHONE,
                        purpose: "account",
                        value: b"ok",
                    },
                    NewRecord {
                        category,
                        purpose,
                        value: b"bad",
                    },
                ],
                "test",
            )
            .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert_eq!(t.data.count_records().unwrap(), 0);
        assert_eq!(t.data.audit_head().unwrap(), head);
    }
    let mut bad = new_subject("u2");
    bad.jurisdiction = "china".into();
    assert_eq!(
        t.vault.create_subject(&bad, "test").unwrap_err().code(),
        "vault.invalid"
    );
    let mut bad = new_subject("u3");
    bad.birth_date = Some("1990-13-45".into());
    assert_eq!(
        t.vault.create_subject(&bad, "test").unwrap_err().code(),
        "vault.invalid"
    );
    let unknown = custodia_core::SubjectId::random().unwrap();
    let err = t
        .vault
        .write_records(
            unknown,
            &[NewRecord {
                category: PHONE,
                purpose: "account",
                value: b"x",
            }],
            "t",
        )
        .unwrap_err();
    assert_eq!(err.code(), "vault.subject_not_found");
}

#[test]
fn expiry_is_known_at_write_and_starts_at_the_trigger() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("u1"), "test").unwrap();
    let written = t
        .vault
        .write_records(
            alice.id,
            &[
                NewRecord {
                    category: DEVICE,
                    purpose: "crash_reporting",
                    value: b"d",
                },
                NewRecord {
                    category: PHONE,
                    purpose: "account",
                    value: b"p",
                },
                NewRecord {
                    category: AUDIO,
                    purpose: "ai_transcription",
                    value: b"a",
                },
            ],
            "test",
        )
        .unwrap();
    // device ids: 1y after collection; phone: 90d after the account closes; audio: at processing.
    assert_eq!(
        written[0].expires_at,
        Some(Timestamp::parse("2027-02-10T09:00:00Z").unwrap())
    );
    assert_eq!(written[1].expires_at, None);
    assert_eq!(written[2].expires_at, None);
    t.clock.advance_days(30);
    t.vault.close_account(alice.id, "test").unwrap();
    let phone = t.data.record(written[1].id).unwrap().unwrap();
    assert_eq!(
        phone.expires_at,
        Some(Timestamp::parse("2026-06-10T09:00:00Z").unwrap())
    );
    assert_eq!(
        t.data.record(written[2].id).unwrap().unwrap().expires_at,
        None
    );
    // Past its retention a record is no longer served, even before the sweeper deletes it.
    t.clock.advance_days(89);
    assert_eq!(
        t.vault
            .read_records(alice.id, PHONE, "account", "test")
            .unwrap()
            .len(),
        1
    );
    t.clock.advance_days(1);
    assert!(
        t.vault
            .read_records(alice.id, PHONE, "account", "test")
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.data.expired_records(t.vault.now(), 10).unwrap().len(), 1);
}

#[test]
fn tampered_or_moved_ciphertext_fails_to_open() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("u1"), "test").unwrap();
    let bob = t.vault.create_subject(&new_subject("u2"), "test").unwrap();
    let a = t
        .vault
        .write_records(
            alice.id,
            &[NewRecord {
                category: PHONE,
                purpose: "account",
                value: b"alice",
            }],
            "t",
        )
        .unwrap();
    t.vault
        .write_records(
            bob.id,
            &[NewRecord {
                category: PHONE,
                purpose: "account",
                value: b"bob",
            }],
            "t",
        )
        .unwrap();
    let db = rusqlite::Connection::open(t.dir.join("data.db")).unwrap();
    // Flip one byte of Alice's ciphertext.
    db.execute(
        "UPDATE records SET ciphertext = CAST(substr(ciphertext, 1, 20) || X'00' || substr(ciphertext, 22) AS BLOB) WHERE id = ?1",
        [a[0].id.as_bytes().as_slice()],
    )
    .unwrap();
    let err = t
        .vault
        .read_records(alice.id, PHONE, "account", "t")
        .unwrap_err();
    assert_eq!(err.code(), "crypto.authentication_failed", "{err}");
    // Move Bob's ciphertext into Alice's row: bound to Bob's subject and record, it fails.
    db.execute(
        "UPDATE records SET ciphertext = (SELECT ciphertext FROM records WHERE subject = ?2) WHERE id = ?1",
        rusqlite::params![a[0].id.as_bytes().as_slice(), bob.id.as_bytes().as_slice()],
    )
    .unwrap();
    let err = t
        .vault
        .read_records(alice.id, PHONE, "account", "t")
        .unwrap_err();
    assert!(matches!(err, VaultError::Crypto(_)), "{err}");
}

#[test]
fn every_operation_lands_in_a_verifiable_audit_chain() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("u1"), "svc-1").unwrap();
    t.vault
        .write_records(
            alice.id,
            &[NewRecord {
                category: PHONE,
                purpose: "account",
                value: b"p",
            }],
            "svc-1",
        )
        .unwrap();
    t.vault
        .read_records(alice.id, PHONE, "account", "svc-1")
        .unwrap();
    t.vault.erase_subject(alice.id, "dpo").unwrap();
    let mut seen = Vec::new();
    let report = t
        .vault
        .keeper()
        .verify_audit(&mut |done, total| seen.push((done, total)))
        .unwrap();
    assert!(report.entries >= 6, "{report:?}");
    assert!(!seen.is_empty());
    let kinds: Vec<String> = t
        .data
        .audit_entries(1, 100)
        .unwrap()
        .iter()
        .map(|e| e.event.kind.as_str().to_owned())
        .collect();
    for kind in [
        "subject_created",
        "record_written",
        "record_read",
        "key_destroyed",
        "subject_erased",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    // Audit entries carry pseudonymous ids only.
    for entry in t.data.audit_entries(1, 100).unwrap() {
        let text = serde_json::to_string(&entry.event).unwrap();
        assert!(
            !text.contains("u1"),
            "external id leaked into the audit log: {text}"
        );
    }
    // Editing one stored entry is caught, naming it.
    let db = rusqlite::Connection::open(t.dir.join("data.db")).unwrap();
    // The backend guards the log with append-only triggers; someone with the file can drop them.
    let triggers: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for trigger in triggers {
        db.execute_batch(&format!("DROP TRIGGER \"{trigger}\""))
            .unwrap();
    }
    db.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 3", [])
        .unwrap();
    let err = t.vault.keeper().verify_audit(&mut |_, _| {}).unwrap_err();
    assert_eq!(err.code(), "audit.chain_broken");
    assert!(err.to_string().contains('3'), "{err}");
}
