//! `custodia holds` through the binary: a placed hold is listed and keeps an expired record
//! through `custodia sweep`; released (twice, the same answer), the next sweep deletes it; bad
//! ids, categories and dates are refused with their codes.

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

fn custodia(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .arg("--policy")
        .arg(policy_path())
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

/// A refusal in JSON mode: exit 2 and `{"error": {"code": …}}` on stdout.
fn error_code(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["error"]["code"].as_str().unwrap().to_owned()
}

/// A subject with a device id written 400 days ago (kept a year): expired now.
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
    let subject = vault
        .create_subject(
            &custodia_vault::NewSubject {
                external_id: "dora".to_owned(),
                jurisdiction: "CN".to_owned(),
                birth_date: Some("1990-04-01".to_owned()),
                age_band: None,
                guardian: None,
            },
            "test",
        )
        .unwrap();
    vault
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
    subject.id.to_string()
}

#[test]
fn holds_are_placed_listed_and_released_around_sweeps() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let subject = seed(&data);

    let hold = json_of(&custodia(
        &data,
        &[
            "holds",
            "place",
            "--subject",
            &subject,
            "--reason",
            "case 17",
            "--json",
        ],
    ));
    let id = hold["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("hold_"), "{hold}");
    assert_eq!(hold["subject"], subject.as_str());
    assert_eq!(hold["category"], serde_json::Value::Null);
    assert_eq!(hold["reason"], "case 17");
    assert_eq!(hold["active"], true);

    let listed = json_of(&custodia(&data, &["holds", "list", "--json"]));
    assert_eq!(listed["holds"], serde_json::json!([hold]));
    let text = custodia(&data, &["holds", "list"]);
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&id) && stdout.contains("active"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&subject) && stdout.contains("case 17"),
        "{stdout}"
    );

    let kept = json_of(&custodia(&data, &["sweep", "--json"]));
    assert_eq!(
        (kept["deleted"].as_u64(), kept["held"].as_u64()),
        (Some(0), Some(1))
    );

    let released = json_of(&custodia(&data, &["holds", "release", &id, "--json"]));
    assert_eq!(released["id"], id.as_str());
    assert!(released["released_at"].is_string(), "{released}");
    assert_eq!(released["active"], false);
    let again = json_of(&custodia(&data, &["holds", "release", &id, "--json"]));
    assert_eq!(again["released_at"], released["released_at"]);
    let text = custodia(&data, &["holds", "release", &id]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("released"));

    let swept = json_of(&custodia(&data, &["sweep", "--json"]));
    assert_eq!(
        (swept["deleted"].as_u64(), swept["held"].as_u64()),
        (Some(1), Some(0))
    );
}

#[test]
fn a_category_hold_with_an_end_is_listed_with_it() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let hold = json_of(&custodia(
        &data,
        &[
            "holds",
            "place",
            "--category",
            DEVICE,
            "--reason",
            "inquiry",
            "--ends-at",
            "2999-01-01T00:00:00Z",
            "--json",
        ],
    ));
    assert_eq!(hold["category"], DEVICE);
    assert_eq!(hold["subject"], serde_json::Value::Null);
    assert_eq!(hold["ends_at"], "2999-01-01T00:00:00Z");
    let text = custodia(&data, &["holds", "list"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("active until 2999-01-01"), "{stdout}");
}

#[test]
fn bad_hold_arguments_are_refused_with_their_codes() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let place = |extra: &[&str]| {
        let mut args = vec!["holds", "place", "--json"];
        args.extend_from_slice(extra);
        error_code(&custodia(&data, &args))
    };
    assert_eq!(
        place(&["--reason", "x", "--subject", "alice"]),
        "request.invalid_id"
    );
    assert_eq!(
        place(&["--reason", "x", "--category", "user.secret"]),
        "vault.unknown_category"
    );
    assert_eq!(
        place(&["--reason", "x", "--ends-at", "2020-01-01T00:00:00Z"]),
        "vault.invalid"
    );
    assert_eq!(
        place(&["--reason", "x", "--ends-at", "2999-01-01"]),
        "vault.invalid"
    );
    assert_eq!(place(&["--reason", " "]), "vault.invalid");
    assert_eq!(
        place(&[
            "--reason",
            "x",
            "--subject",
            "sub_00000000000000000000000000000000"
        ]),
        "vault.subject_not_found"
    );
    let release = |id: &str| error_code(&custodia(&data, &["holds", "release", id, "--json"]));
    assert_eq!(release("hold_42"), "request.invalid_id");
    assert_eq!(
        release("hold_00000000000000000000000000000000"),
        "hold.not_found"
    );
    let listed = json_of(&custodia(&data, &["holds", "list", "--json"]));
    assert_eq!(listed["holds"], serde_json::json!([]));
    // Text mode: the code on stderr.
    let out = custodia(&data, &["holds", "release", "hold_42"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[request.invalid_id]"));
}

/// The sweeper's schedule is configured on `custodia serve`; a bad interval stops it before
/// anything starts.
#[test]
fn serve_refuses_a_bad_sweep_interval() {
    let temp = tempfile::tempdir().unwrap();
    for (flag, env) in [(Some("every hour"), None), (None, Some("8d"))] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_custodia"));
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(temp.path().join("data"))
            .env_remove("CUSTODIA_SWEEP_INTERVAL")
            .env_remove("CUSTODIA_CONFIG");
        if let Some(flag) = flag {
            command.arg("--sweep-interval").arg(flag);
        }
        if let Some(env) = env {
            command.env("CUSTODIA_SWEEP_INTERVAL", env);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error[config.invalid]: sweep_interval"),
            "{stderr}"
        );
    }
    let config = temp.path().join("serve.toml");
    std::fs::write(&config, "sweep_interval = \"15 minutes\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("CUSTODIA_SWEEP_INTERVAL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sweep_interval"));
}
