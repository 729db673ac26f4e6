//! `custodia requests` through the binary: the queue shows due dates and flags what is overdue
//! or due soon (`--due-within 3d`) by the system clock, the requests having been received at
//! chosen times before it; `show`, `reject` and `extend` act with their codes; `export` writes
//! a valid zip, fulfils the access request it is given, and refuses what it must.

use std::io::{Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use custodia_core::{Clock, ManualClock, SystemClock, Timestamp};
use custodia_requests::{Action, RequestKind};
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{NewRecord, RootKeySource, Vault};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;
const DEVICE: &str = "user.device.device_id";

/// The clean test policy, answering within 15 calendar days: the due dates then depend on no
/// published calendar year, whatever today's date.
fn policy(dir: &Path) -> PathBuf {
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../custodia-policy/tests/fixtures/clean.toml");
    let text = std::fs::read_to_string(source).unwrap();
    let promise = "respond_within = { working_days = 15, calendar = \"CN\" }";
    let cancellation = "complete_within = { working_days = 15 }";
    assert!(text.contains(promise) && text.contains(cancellation));
    let text = text
        .replace(promise, "respond_within = { days = 15 }")
        .replace(cancellation, "complete_within = { days = 15 }");
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn custodia(data: &Path, policy: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .arg("--policy")
        .arg(policy)
        .arg("--data")
        .arg(data)
        .env_remove("CUSTODIA_ROOT_KEY")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env_remove("CUSTODIA_DATABASE_URL")
        .env_remove("CUSTODIA_POLICY")
        .env_remove("CUSTODIA_OBJECTS_URL")
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
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
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    value["error"]["code"].as_str().unwrap().to_owned()
}

/// The vault on the CLI's stores and root key, with a clock the test moves.
struct Seed {
    vault: Vault,
    clock: ManualClock,
    now: Timestamp,
}

impl Seed {
    fn open(data: &Path, policy: &Path) -> Self {
        let (d, k) = SqliteStores::open(data).unwrap();
        let now = SystemClock.now();
        let clock = ManualClock::new(now);
        let vault = Vault::open(
            Arc::new(d),
            Arc::new(k),
            custodia_policy::load(policy).unwrap(),
            Arc::new(clock.clone()),
            &RootKeySource::KeyFile(data.join("root.key")),
        )
        .unwrap();
        Self { vault, clock, now }
    }

    /// A subject with a device id.
    fn subject(&self, external: &str) -> String {
        let subject = self
            .vault
            .create_subject(
                &custodia_vault::NewSubject {
                    external_id: external.to_owned(),
                    jurisdiction: "CN".to_owned(),
                    birth_date: Some("1990-04-01".to_owned()),
                    age_band: None,
                    guardian: None,
                },
                "test",
            )
            .unwrap();
        self.vault
            .write_records(
                subject.id,
                &[NewRecord {
                    category: DEVICE,
                    purpose: "crash_reporting",
                    value: format!("device-of-{external}").as_bytes(),
                }],
                "test",
            )
            .unwrap();
        subject.id.to_string()
    }

    /// A request received `days_ago` days before now.
    fn request(&self, subject: &str, kind: RequestKind, days_ago: i64, details: Value) -> String {
        self.clock.set(Timestamp::from_millis(
            self.now.as_millis() - days_ago * DAY_MS,
        ));
        let request = self
            .vault
            .open_request(subject.parse().unwrap(), kind, details, "test")
            .unwrap();
        self.clock.set(self.now);
        request.id.to_string()
    }

    /// The requester's identity verified another way.
    fn verify(&self, id: &str) {
        self.vault
            .act_on_request(id.parse().unwrap(), &Action::Verify, "test")
            .unwrap();
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_queue_flags_overdue_and_due_soon_requests_by_the_system_clock() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let policy = policy(temp.path());
    let seed = Seed::open(&data, &policy);
    let late = seed.subject("late");
    let soon = seed.subject("soon");
    let fresh = seed.subject("fresh");
    // 15 days from 16 days ago: due yesterday. From 13 days ago: due in two days.
    let overdue = seed.request(&late, RequestKind::Access, 16, json!({}));
    let due_soon = seed.request(
        &soon,
        RequestKind::Erasure,
        13,
        json!({ "note": "CANARY-CLI-DETAILS" }),
    );
    seed.verify(&due_soon);
    let on_track = seed.request(&fresh, RequestKind::Access, 1, json!({}));
    drop(seed);

    let run = |args: &[&str]| custodia(&data, &policy, args);
    let list = json_of(&run(&["requests", "list", "--due-within", "3d", "--json"]));
    assert_eq!(ids(&list), [overdue.clone(), due_soon.clone()], "{list:#}");
    assert_eq!(
        (list["overdue"].as_u64(), list["due_soon"].as_u64()),
        (Some(1), Some(1))
    );
    let first = &list["requests"][0];
    assert_eq!(first["urgency"], "overdue");
    assert_eq!(first["law"], "PIPL");
    assert!(first["due_at"].is_string());
    let second = &list["requests"][1];
    assert_eq!(second["urgency"], "due_soon");
    let left = second["days_left"].as_u64().unwrap();
    assert!((1..=2).contains(&left), "{second}");
    // The queue never decrypts what was asked.
    assert_eq!(second["details"], Value::Null);
    assert!(!list.to_string().contains("CANARY-CLI-DETAILS"));

    let all = json_of(&run(&["requests", "list", "--json"]));
    assert_eq!(
        ids(&all),
        [overdue.clone(), due_soon.clone(), on_track.clone()]
    );
    assert_eq!(all["requests"][2]["urgency"], "on_track");
    let hours = json_of(&run(&["requests", "list", "--due-within", "12h", "--json"]));
    assert_eq!(ids(&hours), std::slice::from_ref(&overdue));
    let text = run(&["requests", "list"]);
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("OVERDUE") && stdout.contains("due soon ("),
        "{stdout}"
    );
    assert!(
        stdout.contains("on track") && stdout.contains(&overdue),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 request(s): 1 overdue, 1 due soon"),
        "{stdout}"
    );

    // One request: its dates; its details only when asked.
    let shown = json_of(&run(&["requests", "show", &due_soon, "--json"]));
    assert_eq!(shown["state"], "verified");
    assert!(shown.get("details").is_none(), "{shown}");
    let shown = json_of(&run(&[
        "requests",
        "show",
        &due_soon,
        "--details",
        "--json",
    ]));
    assert_eq!(shown["details"]["asked"]["note"], "CANARY-CLI-DETAILS");
    let text = run(&["requests", "show", &overdue]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("OVERDUE"));

    // Reject and extend.
    let rejected = json_of(&run(&[
        "requests",
        "reject",
        &on_track,
        "--reason",
        "identity could not be verified",
        "--json",
    ]));
    assert_eq!(rejected["state"], "rejected");
    assert_eq!(rejected["urgency"], Value::Null);
    let open = json_of(&run(&["requests", "list", "--json"]));
    assert_eq!(ids(&open), [overdue.clone(), due_soon.clone()]);
    let closed = json_of(&run(&[
        "requests", "list", "--status", "rejected", "--json",
    ]));
    assert_eq!(ids(&closed), std::slice::from_ref(&on_track));
    assert_eq!(
        ids(&json_of(&run(&["requests", "list", "--all", "--json"]))).len(),
        3
    );
    assert_eq!(
        error_code(&run(&[
            "requests", "extend", &due_soon, "--notice", "busy", "--json"
        ])),
        "deadline.not_extendable"
    );
    assert_eq!(
        error_code(&run(&[
            "requests", "reject", &on_track, "--reason", "again", "--json"
        ])),
        "request.already_closed"
    );

    // Bad arguments.
    for (args, code) in [
        (
            &["requests", "list", "--due-within", "3x", "--json"][..],
            "cli.invalid_duration",
        ),
        (
            &["requests", "list", "--status", "lost", "--json"][..],
            "request.unknown_state",
        ),
        (
            &["requests", "list", "--subject", "bob", "--json"][..],
            "request.invalid_id",
        ),
        (
            &["requests", "show", "req_1", "--json"][..],
            "request.invalid_id",
        ),
        (
            &[
                "requests",
                "show",
                "req_00000000000000000000000000000001",
                "--json",
            ][..],
            "request.not_found",
        ),
    ] {
        assert_eq!(error_code(&run(args)), code, "{args:?}");
    }
}

fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|index| {
            let mut file = archive.by_index(index).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            (file.name().to_owned(), content)
        })
        .collect()
}

#[test]
fn export_writes_a_valid_zip_and_fulfils_the_access_request_it_is_given() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let policy = policy(temp.path());
    let seed = Seed::open(&data, &policy);
    let subject = seed.subject("exported");
    let access = seed.request(&subject, RequestKind::Access, 2, json!({}));
    seed.verify(&access);
    let erasure = seed.request(&subject, RequestKind::Erasure, 1, json!({}));
    seed.verify(&erasure);
    drop(seed);
    let run = |args: &[&str]| custodia(&data, &policy, args);

    let out = temp.path().join("access.zip");
    let out_text = out.to_str().unwrap();
    let done = json_of(&run(&[
        "requests", "export", &access, "--out", out_text, "--json",
    ]));
    assert_eq!(done["request"]["state"], "fulfilled");
    assert_eq!(done["manifest"]["subject"], subject.as_str());
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(done["bytes"].as_u64(), Some(bytes.len() as u64));
    let files = unzip(&bytes);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest, done["manifest"]);
    assert_eq!(manifest["counts"]["records"], 1);
    assert_eq!(manifest["files"].as_array().unwrap().len() + 1, files.len());
    let records: Value = serde_json::from_slice(&files["records.json"]).unwrap();
    assert_eq!(records[0]["value"], "device-of-exported");
    let requests: Value = serde_json::from_slice(&files["requests.json"]).unwrap();
    assert_eq!(requests.as_array().unwrap().len(), 2);
    let shown = json_of(&run(&["requests", "show", &access, "--json"]));
    assert_eq!(shown["state"], "fulfilled");

    // Never over an existing file; never an erasure; never a request twice.
    assert_eq!(
        error_code(&run(&[
            "requests", "export", &subject, "--out", out_text, "--json"
        ])),
        "export.out_exists"
    );
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let other = temp.path().join("other.zip");
    let other_text = other.to_str().unwrap();
    assert_eq!(
        error_code(&run(&[
            "requests", "export", &erasure, "--out", other_text, "--json"
        ])),
        "request.not_an_export"
    );
    assert_eq!(
        error_code(&run(&[
            "requests", "export", &access, "--out", other_text, "--json"
        ])),
        "request.already_closed"
    );
    assert!(!other.exists(), "a failed export leaves no file");
    assert_eq!(
        error_code(&run(&[
            "requests", "export", "bob", "--out", other_text, "--json"
        ])),
        "request.invalid_id"
    );
    let shown = json_of(&run(&["requests", "show", &erasure, "--json"]));
    assert_eq!(shown["state"], "verified");

    // A subject's export without a request, in text mode.
    let text = run(&["requests", "export", &subject, "--out", other_text]);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("wrote") && stdout.contains("1 record(s)"),
        "{stdout}"
    );
    let files = unzip(&std::fs::read(&other).unwrap());
    assert!(files.contains_key("manifest.json") && files.contains_key("consents.json"));
}
