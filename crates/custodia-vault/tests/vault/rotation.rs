//! Epoch rotation re-wraps every data key, old epochs can then be destroyed, and a wrong root key
//! is refused before anything is written.

use custodia_vault::{NewRecord, RootKeySource};
use zeroize::Zeroizing;

use crate::backends::{fresh, new_subject, open_at, root};

#[test]
fn rotation_rewraps_every_key_and_frees_the_old_epoch() {
    let t = fresh();
    let mut subjects = Vec::new();
    for i in 0..1200 {
        let subject = t
            .vault
            .create_subject(&new_subject(&format!("user-{i}")), "t")
            .unwrap();
        subjects.push(subject.id);
    }
    t.vault
        .write_records(
            subjects[7],
            &[NewRecord {
                category: "system.operations.network_log",
                purpose: "security",
                value: b"log",
            }],
            "t",
        )
        .unwrap();
    // The old epoch is in use: it cannot be destroyed yet.
    assert_eq!(
        t.vault.keeper().destroy_epoch(1, "t").unwrap_err().code(),
        "store.conflict"
    );
    let mut steps = Vec::new();
    let report = t
        .vault
        .keeper()
        .rotate_epoch("ops", &mut |done, _| steps.push(done))
        .unwrap();
    assert_eq!(report.epoch, 2);
    assert_eq!(
        report.rewrapped, 1201,
        "1200 subject keys and one statutory key"
    );
    assert!(steps.len() >= 2, "progress is reported per page: {steps:?}");
    assert!(t.keys.data_keys_in_epoch(1, None, 10).unwrap().is_empty());
    t.vault.keeper().destroy_epoch(1, "ops").unwrap();
    // Everything still opens, also after reopening the stores.
    let closed = t.close();
    let t = closed.open(&root()).unwrap();
    assert_eq!(
        t.vault
            .subject(subjects[1199])
            .unwrap()
            .profile
            .unwrap()
            .external_id,
        "user-1199"
    );
    let logs = t
        .vault
        .read_records(
            subjects[7],
            "system.operations.network_log",
            "security",
            "t",
        )
        .unwrap();
    assert_eq!(logs[0].value.as_slice(), b"log");
    assert_eq!(
        t.keys
            .epochs()
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn a_wrong_root_key_is_refused_and_writes_nothing() {
    let t = fresh();
    t.vault.create_subject(&new_subject("u1"), "t").unwrap();
    let head = t.data.audit_head().unwrap();
    let closed = t.close();
    let wrong = RootKeySource::Hex(Zeroizing::new("ff".repeat(32)));
    let err = closed.open(&wrong).unwrap_err();
    assert_eq!(err.code(), "crypto.wrong_root_key");
    let malformed = RootKeySource::Hex(Zeroizing::new("not hex".into()));
    assert_eq!(
        closed.open(&malformed).unwrap_err().code(),
        "crypto.key_encoding"
    );
    let t = closed.open(&root()).unwrap();
    assert_eq!(t.data.audit_head().unwrap(), head);
    assert_eq!(t.keys.epochs().unwrap().len(), 1);
}

#[test]
fn a_passphrase_root_key_reopens_with_the_same_passphrase_only() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let clock = custodia_core::ManualClock::new(crate::backends::start());
    let pass = |p: &str| RootKeySource::TestPassphrase(Zeroizing::new(p.to_owned()));
    let t = open_at(&dir, clock.clone(), &pass("correct horse")).unwrap();
    let id = t.vault.create_subject(&new_subject("u1"), "t").unwrap().id;
    drop(t);
    assert_eq!(
        open_at(&dir, clock.clone(), &pass("wrong horse"))
            .unwrap_err()
            .code(),
        "crypto.wrong_root_key"
    );
    let t = open_at(&dir, clock, &pass("correct horse")).unwrap();
    assert!(t.vault.subject(id).unwrap().profile.is_some());
}

#[test]
fn a_key_file_root_is_created_private_and_reused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let key_file = temp.path().join("root.key");
    let clock = custodia_core::ManualClock::new(crate::backends::start());
    let source = RootKeySource::KeyFile(key_file.clone());
    let t = open_at(&dir, clock.clone(), &source).unwrap();
    let id = t.vault.create_subject(&new_subject("u1"), "t").unwrap().id;
    drop(t);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let t = open_at(&dir, clock, &source).unwrap();
    assert!(t.vault.subject(id).unwrap().profile.is_some());
}

#[test]
fn an_old_key_store_backup_is_useless_once_its_epoch_is_destroyed() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("alice"), "t").unwrap();
    t.vault
        .write_records(
            alice.id,
            &[NewRecord {
                category: "user.contact.phone_number",
                purpose: "account",
                value: b"phone",
            }],
            "t",
        )
        .unwrap();
    // A backup of the key store (data keys wrapped under epoch 1) and of the data.
    let backup = t.dir.with_file_name("keys-backup");
    crate::backends::copy_dir(&t.dir, &backup);
    t.vault
        .keeper()
        .rotate_epoch("ops", &mut |_, _| {})
        .unwrap();
    t.vault.keeper().destroy_epoch(1, "ops").unwrap();
    assert_eq!(
        t.vault
            .read_records(alice.id, "user.contact.phone_number", "account", "t")
            .unwrap()[0]
            .value
            .as_slice(),
        b"phone",
        "the live stores still read after the rotation"
    );
    let closed = t.close();
    // Restore the old key store beside the live key custody (keyring.db) and data.
    for file in std::fs::read_dir(&backup).unwrap() {
        let file = file.unwrap();
        if file.file_name().to_string_lossy().starts_with("keys.db") {
            std::fs::copy(file.path(), closed.dir.join(file.file_name())).unwrap();
        }
    }
    let wal = closed.dir.join("keys.db-wal");
    if !backup.join("keys.db-wal").exists() && wal.exists() {
        std::fs::remove_file(wal).unwrap();
    }
    let restored = closed.open(&root()).unwrap();
    let err = restored
        .vault
        .read_records(alice.id, "user.contact.phone_number", "account", "t")
        .unwrap_err();
    assert_eq!(err.code(), "vault.key_destroyed", "{err}");
}
