//! The vault through the binary: import with acknowledgements, key rotation, audit verification
//! that names the first bad entry, refusals that leak no values, and a SIGKILL in the middle of a
//! bulk import that loses no acknowledged write.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use custodia_core::SystemClock;
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{RootKeySource, Vault};

fn policy_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../custodia-policy/tests/fixtures/clean.toml")
}

fn custodia(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("CUSTODIA_ROOT_KEY")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env_remove("CUSTODIA_DATABASE_URL")
        .output()
        .unwrap()
}

/// JSON lines of `count` phone numbers over `subjects` subjects.
fn records_file(dir: &Path, count: usize, subjects: usize) -> PathBuf {
    let path = dir.join("records.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..count {
        let subject = i % subjects;
        writeln!(
            file,
            r#"{{"external_id":"user-{subject}","jurisdiction":"CN","category":"user.contact.phone_number","purpose":"account","value":"PHONE-{i:08}"}}"#
        )
        .unwrap();
    }
    path
}

fn open_vault(data: &Path) -> Vault {
    let (d, k) = SqliteStores::open(data).unwrap();
    let policy = custodia_policy::load(&policy_path()).unwrap();
    Vault::open(
        Arc::new(d),
        Arc::new(k),
        policy,
        Arc::new(SystemClock),
        &RootKeySource::KeyFile(data.join("root.key")),
    )
    .unwrap()
}

fn stdout_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim().lines().last().unwrap_or("")).unwrap_or_else(|_| {
        // The summary is pretty-printed over several lines: parse from its opening brace.
        let start = text.rfind("\n{").map_or(0, |i| i + 1);
        serde_json::from_str(&text[start..]).unwrap()
    })
}

#[test]
fn import_rotate_and_verify_through_the_binary() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let file = records_file(temp.path(), 2500, 50);
    let policy = policy_path();
    let out = custodia(
        &data,
        &[
            "import",
            file.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--batch",
            "1000",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acks: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("acknowledged_through_line") && !l.contains("status"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(acks.len(), 3, "one acknowledgement per committed batch");
    assert_eq!(acks[2]["acknowledged_through_line"], 2500);
    let mode = std::fs::metadata(data.join("root.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);

    let rotate = custodia(&data, &["keys", "rotate", "--json"]);
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let report = stdout_json(&rotate);
    assert_eq!(report["epoch"], 2);
    assert_eq!(report["rewrapped"], 50);
    let destroy = custodia(&data, &["keys", "destroy-epoch", "1"]);
    assert!(
        destroy.status.success(),
        "{}",
        String::from_utf8_lossy(&destroy.stderr)
    );
    let current = custodia(&data, &["keys", "destroy-epoch", "2", "--json"]);
    assert_eq!(current.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&current.stdout).contains("store.conflict"));

    let verify = custodia(&data, &["audit", "verify", "--json"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let report = stdout_json(&verify);
    assert_eq!(report["status"], "intact");
    let head = custodia(&data, &["audit", "head"]);
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert_eq!(report["head"], head.as_str());
    let anchored = custodia(&data, &["audit", "verify", "--anchor", &head]);
    assert!(anchored.status.success());

    // Everything imported is readable after rotation, through the library too.
    let vault = open_vault(&data);
    let subject = vault.find_subject("user-7").unwrap().unwrap();
    let values = vault
        .read_records(subject, "user.contact.phone_number", "account", "test")
        .unwrap();
    assert_eq!(values.len(), 50);
    drop(vault);

    // Tampering with one entry is caught and named.
    let db = rusqlite::Connection::open(data.join("data.db")).unwrap();
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
    db.execute("UPDATE audit SET purpose = 'marketing' WHERE seq = 42", [])
        .unwrap();
    drop(db);
    let broken = custodia(&data, &["audit", "verify", "--json"]);
    assert_eq!(broken.status.code(), Some(1));
    let report = stdout_json(&broken);
    assert_eq!(report["status"], "broken");
    assert_eq!(report["first_bad_seq"], 42);
    let text = custodia(&data, &["audit", "verify"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("BROKEN at entry 42"));
}

#[test]
fn bad_lines_are_refused_without_their_values_and_the_import_resumes() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let path = temp.path().join("bad.jsonl");
    let good = |i: usize| {
        format!(
            r#"{{"external_id":"u1","jurisdiction":"CN","category":"user.contact.phone_number","purpose":"account","value":"CANARY-{i}"}}"#
        )
    };
    let lines = [
        good(1),
        good(2),
        r#"{"external_id":"u1","category":"user.contact.phone_number","purpose":"account","value":12345}"#.to_owned(),
        good(4),
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let policy = policy_path();
    let args = [
        "import",
        path.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--batch",
        "2",
    ];
    let out = custodia(&data, &args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[import.bad_line]: line 3"),
        "{stderr}"
    );
    assert!(stderr.contains("--skip 2"), "{stderr}");
    assert!(
        !stderr.contains("12345") && !stderr.contains("CANARY"),
        "a value leaked: {stderr}"
    );

    // An undeclared category is refused with the vault's code, and its batch is not written.
    let wrong = temp.path().join("wrong.jsonl");
    std::fs::write(
        &wrong,
        r#"{"external_id":"u1","category":"user.location.precise","purpose":"account","value":"CANARY-LOC"}"#,
    )
    .unwrap();
    let out = custodia(
        &data,
        &[
            "import",
            wrong.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vault.unknown_category"), "{stderr}");
    assert!(!stderr.contains("CANARY"), "{stderr}");

    // Fix the line and resume after what was acknowledged.
    let fixed = [good(1), good(2), good(3), good(4)];
    std::fs::write(&path, fixed.join("\n")).unwrap();
    let mut resume: Vec<&str> = args.to_vec();
    resume.extend(["--skip", "2"]);
    let out = custodia(&data, &resume);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vault = open_vault(&data);
    let subject = vault.find_subject("u1").unwrap().unwrap();
    let values: Vec<String> = vault
        .read_records(subject, "user.contact.phone_number", "account", "test")
        .unwrap()
        .iter()
        .map(|v| String::from_utf8(v.value.to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["CANARY-1", "CANARY-2", "CANARY-3", "CANARY-4"]);
}

#[test]
fn sigkill_during_a_bulk_import_loses_no_acknowledged_write() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let total = 100_000;
    let file = records_file(temp.path(), total, 1000);
    let policy = policy_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args([
            "import",
            file.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])
        .args(["--batch", "500", "--json", "--data"])
        .arg(&data)
        .env_remove("CUSTODIA_ROOT_KEY")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env_remove("CUSTODIA_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = 0u64;
    let mut acks = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(through) = value["acknowledged_through_line"].as_u64() {
            acknowledged = through;
            acks += 1;
        }
        if acks == 6 {
            break;
        }
    }
    // SIGKILL: no destructors, no flush, mid-way through the next batch.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        acknowledged > 0 && acknowledged < total as u64,
        "{acknowledged}"
    );

    let vault = open_vault(&data);
    let stored = vault.data_store().count_records().unwrap();
    assert!(
        stored >= acknowledged,
        "acknowledged {acknowledged}, found {stored}"
    );
    assert_eq!(
        stored % 500,
        0,
        "a batch is committed whole or not at all: {stored}"
    );
    // Every acknowledged value is there and decrypts.
    let mut found = std::collections::HashSet::new();
    for subject in 0..1000 {
        let Some(id) = vault.find_subject(&format!("user-{subject}")).unwrap() else {
            continue;
        };
        for value in vault
            .read_records(id, "user.contact.phone_number", "account", "test")
            .unwrap()
        {
            found.insert(String::from_utf8(value.value.to_vec()).unwrap());
        }
    }
    for i in 0..acknowledged {
        assert!(
            found.contains(&format!("PHONE-{i:08}")),
            "acknowledged line {} lost",
            i + 1
        );
    }
    drop(vault);
    let verify = custodia(&data, &["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
