//! Proof of no plaintext at rest: canary values written into every kind of record (and the
//! subject's profile) never appear in any file under the data directory: databases, WAL files,
//! the key store.

use custodia_vault::{NewRecord, NewSubject};

use crate::backends::fresh;

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_canary_appears_in_any_file_under_the_data_directory() {
    let t = fresh();
    let policy = t.vault.policy().clone();
    let mut canaries = Vec::new();
    let external_id = "CANARY-EXTERNAL-ID-7f3a9c";
    let subject = t
        .vault
        .create_subject(
            &NewSubject {
                external_id: external_id.to_owned(),
                jurisdiction: "CN".to_owned(),
                birth_date: Some("1987-11-05".to_owned()),
                age_band: Some("CANARY-AGE-BAND".to_owned()),
                guardian: None,
            },
            "test",
        )
        .unwrap();
    canaries.extend([
        external_id.to_owned(),
        "1987-11-05".to_owned(),
        "CANARY-AGE-BAND".to_owned(),
    ]);
    // One canary per (purpose, category) the policy allows: every kind of record.
    let mut values = Vec::new();
    for purpose in &policy.purposes {
        for category in &purpose.categories {
            values.push((
                category.get_ref().clone(),
                purpose.key.get_ref().clone(),
                format!(
                    "CANARY-{}-{}-4b1d",
                    purpose.key.get_ref(),
                    category.get_ref()
                ),
            ));
        }
    }
    let records: Vec<NewRecord<'_>> = values
        .iter()
        .map(|(category, purpose, value)| NewRecord {
            category,
            purpose,
            value: value.as_bytes(),
        })
        .collect();
    t.vault.write_records(subject.id, &records, "test").unwrap();
    canaries.extend(values.iter().map(|(_, _, v)| v.clone()));
    // Read everything back so read paths (and their audit entries) run too.
    for (category, purpose, value) in &values {
        let read = t
            .vault
            .read_records(subject.id, category, purpose, "test")
            .unwrap();
        assert!(read.iter().any(|r| r.value.as_slice() == value.as_bytes()));
    }
    t.vault.close_account(subject.id, "test").unwrap();

    let scanned = files(&t.dir);
    assert!(
        scanned.iter().any(|p| p.ends_with("data.db")),
        "{scanned:?}"
    );
    assert!(
        scanned.iter().any(|p| p.ends_with("keys.db")),
        "{scanned:?}"
    );
    let mut bytes_scanned = 0;
    for path in &scanned {
        let contents = std::fs::read(path).unwrap();
        bytes_scanned += contents.len();
        for canary in &canaries {
            assert!(
                !contents
                    .windows(canary.len())
                    .any(|w| w == canary.as_bytes()),
                "canary {canary:?} found in plaintext in {}",
                path.display()
            );
        }
    }
    assert!(bytes_scanned > 10_000, "scanned only {bytes_scanned} bytes");
    // The scan itself can fail: the same canary written in clear is found.
    let control = t.dir.join("control.txt");
    std::fs::write(&control, format!("x{}x", canaries[0])).unwrap();
    let contents = std::fs::read(&control).unwrap();
    assert!(
        contents
            .windows(canaries[0].len())
            .any(|w| w == canaries[0].as_bytes())
    );
}
