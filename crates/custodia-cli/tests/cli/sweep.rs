//! `custodia sweep` through the binary: a dry run counts and deletes nothing, a sweep deletes
//! what expired and is not held, a second sweep finds nothing, and the summary names category
//! and rule.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use custodia_core::{Clock, ManualClock, SystemClock, Timestamp};
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{NewRecord, RootKeySource, Vault};

const DEVICE: &str = "user.device.device_id";

fn policy_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../custodia-policy/tests/fixtures/clean.toml")
}

fn sweep(data: &Path, extra: &[&str]) -> Output {
    let policy = policy_path();
    Command::new(env!("CARGO_BIN_EXE_custodia"))
        .arg("sweep")
        .args(extra)
        .arg("--policy")
        .arg(&policy)
        .arg("--data")
        .arg(data)
        .env_remove("CUSTODIA_ROOT_KEY")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env_remove("CUSTODIA_DATABASE_URL")
        .env_remove("CUSTODIA_POLICY")
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Writes device ids for three subjects 400 days ago (kept a year), and holds the third.
fn seed(data: &Path) -> String {
    let (d, k) = SqliteStores::open(data).unwrap();
    let then = Timestamp::from_millis(SystemClock.now().as_millis() - 400 * 86_400_000);
    let vault = Vault::open(
        Arc::new(d),
        Arc::new(k),
        custodia_policy::load(&policy_path()).unwrap(),
        Arc::new(ManualClock::new(then)),
        &RootKeySource::KeyFile(data.join("root.key")),
    )
    .unwrap();
    let mut rule = String::new();
    for name in ["alice", "bob", "carol"] {
        let subject = vault
            .create_subject(
                &custodia_vault::NewSubject {
                    external_id: name.to_owned(),
                    jurisdiction: "CN".to_owned(),
                    birth_date: Some("1990-04-01".to_owned()),
                    age_band: None,
                    guardian: None,
                },
                "test",
            )
            .unwrap();
        let written = vault
            .write_records(
                subject.id,
                &[NewRecord {
                    category: DEVICE,
                    purpose: "crash_reporting",
                    value: b"device",
                }],
                "test",
            )
            .unwrap();
        rule = vault
            .data_store()
            .record(written[0].id)
            .unwrap()
            .unwrap()
            .rule;
        if name == "carol" {
            vault
                .place_hold(Some(subject.id), None, "litigation", None, "test")
                .unwrap();
        }
    }
    rule
}

#[test]
fn sweep_counts_deletes_and_summarises_by_category_and_rule() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let rule = seed(&data);

    let dry = json_of(&sweep(&data, &["--dry-run", "--json"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["deleted"], 2);
    assert_eq!(dry["held"], 1);
    assert_eq!(dry["by_rule"][0]["category"], DEVICE);
    assert_eq!(dry["by_rule"][0]["rule"], rule.as_str());
    assert_eq!(dry["by_rule"][0]["records"], 2);

    let text = sweep(&data, &["--dry-run"]);
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(DEVICE) && stdout.contains(&rule),
        "{stdout}"
    );
    assert!(stdout.contains("would delete 2"), "{stdout}");

    let done = json_of(&sweep(&data, &["--json", "--batch", "1"]));
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["deleted"], 2);
    assert_eq!(done["held"], 1);

    let again = sweep(&data, &[]);
    assert!(again.status.success());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("deleted 0 expired record(s); 1 kept by legal holds"),
        "{stdout}"
    );
}

#[test]
fn a_zero_batch_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let out = sweep(&temp.path().join("data"), &["--batch", "0"]);
    assert!(!out.status.success());
}
