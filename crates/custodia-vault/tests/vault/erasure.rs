//! Crypto-shredding, tested the hard way: back the data up, erase, restore the backup, and show
//! the restored data cannot be decrypted; statutory records survive storage-only.

use custodia_vault::NewRecord;

use crate::backends::{copy_dir, fresh, new_subject, open_at, root};

const PHONE: &str = "user.contact.phone_number";
const LOG: &str = "system.operations.network_log";

#[test]
fn a_restored_backup_of_an_erased_subject_cannot_be_decrypted() {
    let t = fresh();
    let alice = t
        .vault
        .create_subject(&new_subject("alice"), "test")
        .unwrap();
    let bob = t.vault.create_subject(&new_subject("bob"), "test").unwrap();
    for subject in [alice.id, bob.id] {
        t.vault
            .write_records(
                subject,
                &[NewRecord {
                    category: PHONE,
                    purpose: "account",
                    value: b"phone",
                }],
                "t",
            )
            .unwrap();
    }
    let backup = t.dir.with_file_name("backup");
    copy_dir(&t.dir, &backup);

    let report = t.vault.erase_subject(alice.id, "dpo").unwrap();
    assert_eq!(report.keys_destroyed, 1);
    assert_eq!(report.records_deleted, 1);
    assert_eq!(
        t.vault.subject(alice.id).unwrap_err().code(),
        "vault.subject_not_found"
    );

    // Restore the data store from before the erasure beside the live key store.
    let restored = t.dir.with_file_name("restored");
    std::fs::create_dir_all(&restored).unwrap();
    for file in std::fs::read_dir(&backup).unwrap() {
        let file = file.unwrap();
        if file.file_name().to_string_lossy().starts_with("data.db") {
            std::fs::copy(file.path(), restored.join(file.file_name())).unwrap();
        }
    }
    for file in std::fs::read_dir(&t.dir).unwrap() {
        let file = file.unwrap();
        // The live key store and key custody (keyring.db holds the epoch keys).
        if file.file_name().to_string_lossy().starts_with("key") {
            std::fs::copy(file.path(), restored.join(file.file_name())).unwrap();
        }
    }
    let r = open_at(&restored, t.clock.clone(), &root()).unwrap();
    // The ciphertext is back, but its key is gone: nothing can be read.
    assert_eq!(r.data.records_of(alice.id, None).unwrap().len(), 1);
    let err = r
        .vault
        .read_records(alice.id, PHONE, "account", "t")
        .unwrap_err();
    assert_eq!(err.code(), "vault.key_destroyed", "{err}");
    assert_eq!(
        r.vault.subject(alice.id).unwrap_err().code(),
        "vault.key_destroyed"
    );
    // Bob, not erased, is intact in the same restored backup.
    let values = r.vault.read_records(bob.id, PHONE, "account", "t").unwrap();
    assert_eq!(values[0].value.as_slice(), b"phone");
}

#[test]
fn statutory_records_stay_storage_only_after_erasure_until_their_expiry() {
    let t = fresh();
    let alice = t
        .vault
        .create_subject(&new_subject("alice"), "test")
        .unwrap();
    t.vault
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
    let report = t.vault.erase_subject(alice.id, "dpo").unwrap();
    assert_eq!(report.statutory_kept, 1);
    assert_eq!(report.records_deleted, 1);
    let subject = t.vault.subject(alice.id).unwrap();
    assert!(subject.erased_at.is_some());
    assert_eq!(subject.profile, None);
    // Storage-only: readable for the legal obligation that keeps it, for nothing else.
    let kept = t
        .vault
        .read_records(alice.id, LOG, "security", "t")
        .unwrap();
    assert_eq!(kept[0].value.as_slice(), b"10.0.0.1 GET /");
    let err = t
        .vault
        .read_records(alice.id, PHONE, "account", "t")
        .unwrap_err();
    assert_eq!(err.code(), "vault.subject_erased");
    // It still expires: 6 months after collection.
    t.clock.advance_days(184);
    assert!(
        t.vault
            .read_records(alice.id, LOG, "security", "t")
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.data.expired_records(t.vault.now(), 10).unwrap().len(), 1);
}

#[test]
fn erasure_is_idempotent_after_an_interruption() {
    let t = fresh();
    let alice = t
        .vault
        .create_subject(&new_subject("alice"), "test")
        .unwrap();
    t.vault
        .write_records(
            alice.id,
            &[NewRecord {
                category: LOG,
                purpose: "security",
                value: b"x",
            }],
            "t",
        )
        .unwrap();
    // Simulate a crash after the keys were destroyed but before the rows were deleted.
    let ordinary: Vec<_> = t
        .keys
        .data_keys_of(alice.id)
        .unwrap()
        .into_iter()
        .filter(|k| k.kind == custodia_store::DataKeyKind::Subject)
        .map(|k| k.id)
        .collect();
    t.keys.destroy_data_keys(&ordinary).unwrap();
    let report = t.vault.erase_subject(alice.id, "dpo").unwrap();
    assert_eq!(report.keys_destroyed, 0);
    assert_eq!(report.statutory_kept, 1);
    let again = t.vault.erase_subject(alice.id, "dpo").unwrap();
    assert_eq!(again.records_deleted, 0);
}
