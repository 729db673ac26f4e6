//! Media through the real binary, killed at the worst moments: `custodia serve` SIGKILLed in the
//! middle of a large upload stores no object and lists nothing after a restart, and the sweep
//! removes the abandoned upload's row once it is old enough; `custodia sweep` SIGKILLed in the
//! middle of deleting expired records and media is finished by the next sweep, and the audit
//! chain verifies. Plus the `--objects` and `--max-media-size` settings' checks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodia_core::{Clock, ManualClock, SubjectId, SystemClock, Timestamp};
use custodia_objects::FsObjectStore;
use custodia_store::MediaState;
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{Caller, NewMedia, NewRecord, NewSubject, RootKeySource, Vault};

const DAY_MS: i64 = 86_400_000;

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file)
}

/// `custodia ARGS --data DATA`, with none of the settings the environment could add.
fn custodia_cmd(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custodia"));
    command
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("CUSTODIA_ROOT_KEY")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env_remove("CUSTODIA_DATABASE_URL")
        .env_remove("CUSTODIA_POLICY")
        .env_remove("CUSTODIA_OBJECTS_URL")
        .env_remove("CUSTODIA_MAX_MEDIA_SIZE")
        .env_remove("CUSTODIA_CONFIG")
        .env_remove("CUSTODIA_LISTEN");
    command
}

fn custodia(data: &Path, args: &[&str]) -> Output {
    custodia_cmd(data, args).output().unwrap()
}

/// A running `custodia serve`.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// The first start's admin token, if this was one.
    token: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `custodia serve` on a free loopback port and waits for its banner.
fn serve(data: &Path) -> Server {
    let mut child = custodia_cmd(
        data,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sweep-interval",
            "off",
        ],
    )
    .env("CUSTODIA_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut token = None;
    let addr = loop {
        let line = lines
            .next()
            .expect("custodia serve ended before serving")
            .unwrap();
        if line.contains("shown only now") {
            token = Some(lines.next().unwrap().unwrap().trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("Custodia serving http://") {
            let addr = rest.split_whitespace().next().unwrap();
            break addr.parse().unwrap();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr, token }
}

/// One request over a fresh connection; the status and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.map(|body| serde_json::to_vec(body).unwrap());
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
    );
    if let Some(body) = &body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = &body {
        stream.write_all(body).unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_slice(&raw[split + 4..]).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// The object files of the store at `objects` (staging files aside).
fn media_files(objects: &Path) -> Vec<PathBuf> {
    files(&objects.join("media"))
}

/// The vault on `data` at `now`, with its file-system media store.
fn open_vault(data: &Path, policy: &Path, now: Timestamp) -> Vault {
    let (d, k) = SqliteStores::open(data).unwrap();
    Vault::open(
        Arc::new(d),
        Arc::new(k),
        custodia_policy::load(policy).unwrap(),
        Arc::new(ManualClock::new(now)),
        &RootKeySource::KeyFile(data.join("root.key")),
    )
    .unwrap()
    .with_media_store(Arc::new(FsObjectStore::open(data.join("objects")).unwrap()))
}

fn now() -> Timestamp {
    SystemClock.now()
}

#[test]
fn sigkill_during_a_large_upload_stores_no_object_and_the_sweep_removes_its_row() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let server = serve(&data);
    let token = server.token.clone().expect("a first start prints a token");
    // The sample policy is DeepPiano's: tuning audio needs a separate consent.
    let (status, subject) = request(
        server.addr,
        "POST",
        "/v1/subjects",
        &token,
        Some(
            &serde_json::json!({ "external_id": "pianist", "jurisdiction": "CN", "birth_date": "1990-04-01" }),
        ),
    );
    assert_eq!(status, 201, "{subject}");
    let subject = subject["id"].as_str().unwrap().to_owned();
    let (status, body) = request(
        server.addr,
        "POST",
        &format!("/v1/subjects/{subject}/consents"),
        &token,
        Some(
            &serde_json::json!({ "kind": "given", "purposes": ["audio_tuning"], "method": "app_dialog" }),
        ),
    );
    assert_eq!(status, 201, "{body}");

    // 64 MiB announced, streamed slowly; a canary in every piece.
    let canary = b"UPLOAD-CANARY-5c1d0e";
    let mut piece = Vec::with_capacity(64 * 1024);
    while piece.len() + canary.len() <= 64 * 1024 {
        piece.extend_from_slice(canary);
    }
    piece.resize(64 * 1024, b'.');
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST /v1/subjects/{subject}/media?category=user.content.audio_recording.tuning_original&purpose=audio_tuning HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        64 * 1024 * 1024
    )
    .unwrap();
    let objects = data.join("objects");
    let staging = objects.join(".staging");
    let staged = || {
        files(&staging)
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0usize;
    // Until several MiB are sealed into the staging file: the upload is well under way.
    while staged() < 4 * 1024 * 1024 {
        assert!(
            Instant::now() < deadline,
            "the upload never reached storage"
        );
        stream.write_all(&piece).unwrap();
        sent += piece.len();
        assert!(
            sent < 48 * 1024 * 1024,
            "the server stored nothing after {sent} bytes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SIGKILL: no destructors, no cleanup, mid-body.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(stream);

    // No object at any media key; what is staged is ciphertext.
    assert!(
        media_files(&objects).is_empty(),
        "{:?}",
        media_files(&objects)
    );
    for path in files(&data) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary),
            "plaintext in {}",
            path.display()
        );
    }

    // Restarted, the server lists nothing.
    drop(server);
    let server = serve(&data);
    assert!(server.token.is_none());
    let (status, listed) = request(
        server.addr,
        "GET",
        &format!("/v1/subjects/{subject}/media"),
        &token,
        None,
    );
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["media"], serde_json::json!([]));
    drop(server);
    assert!(media_files(&objects).is_empty());

    // The pending row stays until it is older than any upload; the sweep then removes it.
    let policy = data.join("policy.toml");
    let subject_id: SubjectId = subject.parse().unwrap();
    let young = open_vault(&data, &policy, now());
    let rows = young.data_store().media_of(subject_id, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, MediaState::Pending);
    let report = young
        .sweep(false, 100, "test", &mut |_: u64, _: u64| {})
        .unwrap();
    assert_eq!(report.abandoned_uploads, 0);
    drop(young);
    let later = Timestamp::from_millis(now().as_millis() + DAY_MS + 3_600_000);
    let old = open_vault(&data, &policy, later);
    let report = old
        .sweep(false, 100, "test", &mut |_: u64, _: u64| {})
        .unwrap();
    assert_eq!(report.abandoned_uploads, 1);
    assert!(
        old.data_store()
            .media_of(subject_id, None)
            .unwrap()
            .is_empty()
    );
    // The crashed put's staging file goes once stale (the store removes those as it opens).
    let store = FsObjectStore::open(&objects).unwrap();
    store.remove_stale_temp_files(Duration::ZERO).unwrap();
    assert!(files(&objects).is_empty(), "{:?}", files(&objects));
    drop(old);

    let verify = custodia(&data, &["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// Seeds `data` with expired records and media objects under the portrait-effects policy:
/// `media` effect images collected 30 days ago (kept 10 days) and `records` network logs
/// collected 400 days ago (kept six months).
fn seed_expired(data: &Path, policy: &Path, media: usize, records: usize) {
    let then = Timestamp::from_millis(now().as_millis() - 400 * DAY_MS);
    let vault = open_vault(data, policy, then);
    let subjects: Vec<SubjectId> = (0..10)
        .map(|i| {
            vault
                .create_subject(
                    &NewSubject {
                        external_id: format!("user-{i}"),
                        jurisdiction: "CN".to_owned(),
                        birth_date: Some("1990-04-01".to_owned()),
                        age_band: None,
                        guardian: None,
                    },
                    "test",
                )
                .unwrap()
                .id
        })
        .collect();
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| format!("203.0.113.{} GET /x", i % 250).into_bytes())
        .collect();
    for (n, chunk) in values.chunks(500).enumerate() {
        let batch: Vec<NewRecord<'_>> = chunk
            .iter()
            .map(|value| NewRecord {
                category: "system.operations.network_log",
                purpose: "network_log_keeping",
                value,
            })
            .collect();
        vault
            .write_records(subjects[n % subjects.len()], &batch, "test")
            .unwrap();
    }
    drop(vault);
    let then = Timestamp::from_millis(now().as_millis() - 30 * DAY_MS);
    let vault = open_vault(data, policy, then);
    let image = vec![0x5a_u8; 3000];
    for i in 0..media {
        vault
            .upload_media(
                subjects[i % subjects.len()],
                &NewMedia {
                    category: "user.content.generated_image",
                    purpose: "portrait_effects",
                    content_type: "image/png",
                    expected_len: Some(image.len() as u64),
                    expected_sha256: None,
                },
                &mut &image[..],
                &Caller::operator(),
            )
            .unwrap();
    }
}

#[test]
fn sigkill_during_a_sweep_is_finished_by_the_next_one() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let policy = example("portrait-effects.toml");
    let media = 400;
    seed_expired(&data, &policy, media, 3000);
    let objects = data.join("objects");
    assert_eq!(media_files(&objects).len(), media);

    let policy_arg = policy.to_str().unwrap();
    let mut child = custodia_cmd(&data, &["sweep", "--batch", "1", "--policy", policy_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it is deleting media objects, well before the last.
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_at = loop {
        let left = media_files(&objects).len();
        if left < media {
            child.kill().unwrap();
            break left;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the sweep ended ({status}) before it was killed");
        }
        assert!(
            Instant::now() < deadline,
            "the sweep never reached the media"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let status = child.wait().unwrap();
    assert!(!status.success());
    let left = media_files(&objects).len();
    assert!(
        left > 0,
        "the sweep finished before it was killed (at {killed_at})"
    );

    let again = custodia(&data, &["sweep", "--json", "--policy", policy_arg]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let finished =
        report["media_deleted"].as_u64().unwrap() + report["media_finished"].as_u64().unwrap();
    assert!(finished >= left as u64, "{report}");
    assert!(media_files(&objects).is_empty());
    let vault = open_vault(&data, &policy, now());
    assert_eq!(vault.data_store().count_records().unwrap(), 0);
    let rest = vault
        .sweep(true, 100, "test", &mut |_: u64, _: u64| {})
        .unwrap();
    assert_eq!(rest.deleted, 0);
    drop(vault);

    let verify = custodia(&data, &["audit", "verify", "--json"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn serve_refuses_bad_media_settings() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    for args in [
        &["--max-media-size", "12"][..],
        &["--max-media-size", "2000000000000000"][..],
        &["--objects", "ftp://example.invalid/x"][..],
        &["--objects", ""][..],
    ] {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = custodia(&data, &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("config.invalid") || stderr.contains("objects.invalid_config"),
            "{args:?}: {stderr}"
        );
    }
    // The same settings from the config file.
    let config = temp.path().join("serve.toml");
    for text in ["max_media_size = 12\n", "objects = \"gopher://x\"\n"] {
        std::fs::write(&config, text).unwrap();
        let out = custodia(
            &data,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                config.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("config.invalid") || stderr.contains("objects.invalid_config"),
            "{text}: {stderr}"
        );
    }
}
