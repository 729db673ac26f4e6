//! Media over HTTP, against real object storage: a file-system store in a temporary directory
//! on every database backend, and an S3 store too when `CUSTODIA_TEST_S3_URL` names one
//! (`scripts/start-test-s3`; each test works under a random prefix of its bucket and deletes
//! what it wrote).
//!
//! The operators' flows run with a moved clock: the portrait-effects app (a face image gone the
//! moment its effect exists, the effect downloadable for ten days, then swept) and DeepPiano's
//! tuning (the original deleted once the tuned audio is attached). Then what must store nothing
//! (a body cut short by a client that goes away, a digest or size that does not match), what
//! must read nothing (gate denials, a key bound to another purpose, an altered object), bad
//! input with stable codes, and a canary that never appears in any file or object at rest.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use custodia_core::{SubjectId, Timestamp};
use custodia_objects::{FsObjectStore, ObjectKey, ObjectStore};
use serde_json::{Value, json};

use crate::app::{Backend, Setup, TestApp, backends, reasons, spawn_app_setup};
use crate::http::{Response, exchange, send};

const S3_URL_VAR: &str = "CUSTODIA_TEST_S3_URL";

const PORTRAIT: &str = "portrait_effects";
const CUTOUT: &str = "cutout_artwork";
const FACE: &str = "user.content.self_image";
const EFFECT: &str = "user.content.generated_image";

const TUNING: &str = "audio_tuning";
const ORIGINAL: &str = "user.content.audio_recording.tuning_original";
const TUNED: &str = "user.content.audio_recording.tuned";

const DAY_MS: i64 = 86_400_000;

/// Where a test's objects live.
enum Objects {
    /// A file-system store rooted at `<temp>/objects`.
    Fs(tempfile::TempDir),
    /// An S3 store under a random `prefix` of the test bucket at `base`.
    S3 { base: String, prefix: String },
}

/// A server with a media store, and the store itself to look into.
struct MediaApp {
    app: TestApp,
    store: Arc<dyn ObjectStore>,
    objects: Objects,
}

impl Drop for MediaApp {
    fn drop(&mut self) {
        if matches!(self.objects, Objects::S3 { .. }) {
            for key in self.store.list(&key("media")).unwrap_or_default() {
                let _ = self.store.delete(&key);
            }
        }
    }
}

fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).unwrap()
}

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file)
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn s3_url() -> Option<String> {
    std::env::var(S3_URL_VAR).ok().filter(|url| !url.is_empty())
}

/// `url` with `segment` appended to its path (the store's key prefix).
fn under(url: &str, segment: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = base.trim_end_matches('/');
    match query {
        Some(query) => format!("{base}/{segment}?{query}"),
        None => format!("{base}/{segment}"),
    }
}

/// Which stores a case runs on: the file system on every database backend, and S3 (on SQLite)
/// when configured.
#[derive(Clone)]
enum StoreKind {
    Fs,
    S3(String),
}

fn setups(with_s3: bool) -> Vec<(Backend, StoreKind)> {
    let mut all: Vec<_> = backends()
        .into_iter()
        .map(|backend| (backend, StoreKind::Fs))
        .collect();
    if with_s3 && let Some(url) = s3_url() {
        all.push((Backend::Sqlite, StoreKind::S3(url)));
    }
    all
}

fn spawn_media(
    backend: &Backend,
    kind: &StoreKind,
    policy: &str,
    options: custodia_server::ServerOptions,
) -> MediaApp {
    let (store, objects): (Arc<dyn ObjectStore>, Objects) = match kind {
        StoreKind::Fs => {
            let temp = tempfile::tempdir().unwrap();
            let store = FsObjectStore::open(temp.path().join("objects")).unwrap();
            (Arc::new(store), Objects::Fs(temp))
        }
        StoreKind::S3(url) => {
            let prefix = format!("t-{}", random_hex());
            let store = custodia_objects::open_url(&under(url, &prefix)).unwrap();
            let objects = Objects::S3 {
                base: url.clone(),
                prefix,
            };
            (store, objects)
        }
    };
    let app = spawn_app_setup(
        backend,
        Setup {
            options,
            policy: example(policy),
            objects: Some(store.clone()),
        },
    );
    MediaApp {
        app,
        store,
        objects,
    }
}

/// Runs `case` on a fresh server under the example policy `policy`, on every store.
fn each_store(policy: &str, with_s3: bool, case: impl Fn(&MediaApp)) {
    for (backend, kind) in setups(with_s3) {
        let t = spawn_media(
            &backend,
            &kind,
            policy,
            custodia_server::ServerOptions::default(),
        );
        case(&t);
    }
}

/// `len` bytes that do not repeat, from `seed`.
fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use aws_lc_rs::digest;
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn content_digest(bytes: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha256(bytes))
    )
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
}

fn instant(value: &Value, field: &str) -> Timestamp {
    Timestamp::parse(str_of(value, field)).unwrap()
}

impl MediaApp {
    /// Uploads `bytes` with the given extra headers.
    fn upload_with(
        &self,
        token: &str,
        subject: &str,
        category: &str,
        purpose: &str,
        headers: &[(&str, &str)],
        bytes: &[u8],
    ) -> Response {
        self.app.raw(
            "POST",
            &format!("/v1/subjects/{subject}/media?category={category}&purpose={purpose}"),
            Some(token),
            headers,
            Some(bytes),
        )
    }

    /// Uploads `bytes` as `content_type` with its digest; expects 201.
    fn upload(
        &self,
        token: &str,
        subject: &str,
        category: &str,
        purpose: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Value {
        let digest = content_digest(bytes);
        self.upload_with(
            token,
            subject,
            category,
            purpose,
            &[("Content-Type", content_type), ("Content-Digest", &digest)],
            bytes,
        )
        .expect(201)
        .json()
    }

    /// A subject who consented to `purposes`.
    fn subject(&self, purposes: &[&str]) -> String {
        let subject = self.app.subject();
        for purpose in purposes {
            self.app.consent(&subject, "given", &[purpose]).expect(201);
        }
        subject
    }

    fn download(&self, token: &str, id: &str, purpose: &str, range: Option<&str>) -> Response {
        let headers: Vec<(&str, &str)> = range.map(|r| vec![("Range", r)]).unwrap_or_default();
        self.app.raw(
            "GET",
            &format!("/v1/media/{id}/content?purpose={purpose}"),
            Some(token),
            &headers,
            None,
        )
    }

    fn lease(&self, token: &str, id: &str, purpose: &str) -> Response {
        self.app.json(
            "POST",
            &format!("/v1/media/{id}/leases"),
            token,
            &json!({ "purpose": purpose, "ttl_seconds": 600 }),
        )
    }

    /// The keys of every object under `media/`.
    fn object_keys(&self) -> Vec<String> {
        self.store
            .list(&key("media"))
            .unwrap()
            .into_iter()
            .map(|key| key.as_str().to_owned())
            .collect()
    }

    /// The object key of a media object.
    fn object_key(subject: &str, id: &str) -> String {
        format!("media/{subject}/{id}")
    }

    /// The file-system store's root, if this is one.
    fn objects_dir(&self) -> Option<PathBuf> {
        match &self.objects {
            Objects::Fs(temp) => Some(temp.path().join("objects")),
            Objects::S3 { .. } => None,
        }
    }

    /// Every media row the store holds for `subject`, whatever its state.
    fn rows(&self, subject: &str) -> usize {
        let subject: SubjectId = subject.parse().unwrap();
        self.app.data.media_of(subject, None).unwrap().len()
    }

    fn listed(&self, token: &str, subject: &str) -> Vec<Value> {
        self.app
            .get(&format!("/v1/subjects/{subject}/media"), token)
            .expect(200)
            .json()["media"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Every byte at rest this test can reach: the files of the SQLite directory and of the
    /// file-system store, and every object of the S3 bucket.
    fn everything_at_rest(&self) -> Vec<(String, Vec<u8>)> {
        let mut found = Vec::new();
        for dir in [self.app.data_dir(), self.objects_dir()]
            .into_iter()
            .flatten()
        {
            for path in files(&dir) {
                // A file may vanish between listing and reading (SQLite's journal).
                if let Ok(bytes) = std::fs::read(&path) {
                    found.push((path.display().to_string(), bytes));
                }
            }
        }
        if let Objects::S3 { base, prefix } = &self.objects {
            let raw = s3_bucket_objects(base);
            // moto answers unsigned requests: the whole bucket is read, this test's objects too.
            if s3_endpoint(base).is_some() {
                let prefix = format!("{prefix}/media/");
                assert!(
                    raw.iter().any(|(name, _)| name.contains(&prefix)),
                    "the bucket listing misses this test's objects"
                );
            }
            found.extend(raw);
            // And through the store, in case the bucket could not be listed raw.
            for key in self.store.list(&key("media")).unwrap() {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut self.store.get(&key).unwrap(), &mut bytes).unwrap();
                found.push((key.as_str().to_owned(), bytes));
            }
        }
        found
    }
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The S3 endpoint and bucket of a test URL, when the endpoint is plain HTTP on loopback (moto).
fn s3_endpoint(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("s3://")?;
    let bucket_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let bucket = rest.get(..bucket_end)?.to_owned();
    let query = url.split_once('?')?.1;
    let endpoint = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("endpoint="))?;
    let authority = endpoint.strip_prefix("http://")?.trim_end_matches('/');
    let addr: SocketAddr = authority.replace("localhost", "127.0.0.1").parse().ok()?;
    addr.ip().is_loopback().then_some((addr, bucket))
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.split(open)
        .skip(1)
        .filter_map(|part| part.split_once(close).map(|(inside, _)| inside))
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every object of the whole test bucket: listed with unsigned requests (moto answers those),
/// read through a store on the bucket's root (moto refuses unsigned reads of objects). Keys the
/// store's rules refuse are skipped: the media layer writes none such.
fn s3_bucket_objects(url: &str) -> Vec<(String, Vec<u8>)> {
    let Some((addr, bucket)) = s3_endpoint(url) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/{bucket}?list-type=2");
        if let Some(token) = &token {
            path.push_str(&format!("&continuation-token={}", percent_encode(token)));
        }
        let listing = send(addr, "GET", &path, &[], None);
        assert_eq!(listing.status, 200, "{}", listing.text());
        let text = listing.text();
        keys.extend(
            between(&text, "<Key>", "</Key>")
                .into_iter()
                .map(str::to_owned),
        );
        token = between(&text, "<NextContinuationToken>", "</NextContinuationToken>")
            .first()
            .map(|t| (*t).to_owned());
        if !text.contains("<IsTruncated>true</IsTruncated>") || token.is_none() {
            break;
        }
    }
    let root = custodia_objects::open_url(url).unwrap();
    keys.into_iter()
        .filter_map(|name| {
            let key = ObjectKey::new(name.as_str()).ok()?;
            // Another test may delete its objects meanwhile.
            let mut reader = root.get(&key).ok()?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut bytes).ok()?;
            Some((format!("s3:{name}"), bytes))
        })
        .collect()
}

/// Waits, within a bound, until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn portrait_faces_go_when_the_effect_is_made_and_effects_after_ten_days() {
    each_store("portrait-effects.toml", true, |t| {
        let subject = t.subject(&[PORTRAIT]);
        let app_key = t.app.service_key(&[PORTRAIT]);
        let effects_worker = t.app.service_key(&[PORTRAIT]);
        let mut face = b"\xff\xd8\xff\xe0JFIF".to_vec();
        face.extend(body(300_000, 1));

        let uploaded = t.upload(&app_key, &subject, FACE, PORTRAIT, "image/jpeg", &face);
        let face_id = str_of(&uploaded, "id").to_owned();
        assert!(face_id.starts_with("med_"), "{uploaded}");
        assert_eq!(uploaded["subject"], subject.as_str());
        assert_eq!(uploaded["category"], FACE);
        assert_eq!(uploaded["purpose"], PORTRAIT);
        assert_eq!(uploaded["content_type"], "image/jpeg");
        assert_eq!(uploaded["size"], face.len());
        assert_eq!(uploaded["state"], "stored");
        assert_eq!(uploaded["parent"], Value::Null);
        assert_eq!(uploaded["expires_at"], Value::Null);
        assert_eq!(uploaded["statutory"], false);
        assert_eq!(instant(&uploaded, "created_at"), crate::app::start());
        assert_eq!(
            t.app
                .get(&format!("/v1/media/{face_id}"), &app_key)
                .expect(200)
                .json(),
            uploaded
        );
        assert_eq!(t.object_keys(), [MediaApp::object_key(&subject, &face_id)]);

        // The effects worker leases the face, reads it, attaches the effect and completes.
        let lease = t
            .lease(&effects_worker, &face_id, PORTRAIT)
            .expect(201)
            .json();
        let lease_id = str_of(&lease, "id").to_owned();
        assert!(lease_id.starts_with("lease_"), "{lease}");
        assert_eq!(lease["media"], face_id.as_str());
        assert_eq!(lease["purpose"], PORTRAIT);
        assert_eq!(
            instant(&lease, "expires_at"),
            crate::app::start().plus_millis(600_000)
        );
        assert!(
            reasons(&lease).contains(&"basis.consent".to_owned()),
            "{lease}"
        );
        let read = t
            .app
            .get(
                &format!("/v1/media/{face_id}/leases/{lease_id}/content"),
                &effects_worker,
            )
            .expect(200);
        assert_eq!(read.header("content-type"), Some("image/jpeg"));
        assert_eq!(
            read.header("content-length"),
            Some(face.len().to_string().as_str())
        );
        assert_eq!(read.header("accept-ranges"), Some("bytes"));
        assert_eq!(read.header("cache-control"), Some("no-store"));
        assert!(
            read.body == face,
            "the leased content differs from the upload"
        );

        let effect = body(120_000, 2);
        let digest = content_digest(&effect);
        let output = t
            .app
            .raw(
                "POST",
                &format!("/v1/media/{face_id}/leases/{lease_id}/outputs?category={EFFECT}"),
                Some(&effects_worker),
                &[("Content-Type", "image/png"), ("Content-Digest", &digest)],
                Some(&effect),
            )
            .expect(201)
            .json();
        let effect_id = str_of(&output, "id").to_owned();
        assert_eq!(output["parent"], face_id.as_str());
        assert_eq!(output["category"], EFFECT);
        assert_eq!(output["purpose"], PORTRAIT);
        assert_eq!(output["size"], effect.len());
        let collected = instant(&output, "created_at");
        assert_eq!(
            instant(&output, "expires_at"),
            collected.plus_millis(10 * DAY_MS)
        );

        t.app.clock.advance_millis(5_000);
        let report = t
            .app
            .raw(
                "POST",
                &format!("/v1/media/{face_id}/leases/{lease_id}/complete"),
                Some(&effects_worker),
                &[],
                None,
            )
            .expect(200)
            .json();
        assert_eq!(report["id"], face_id.as_str());
        assert_eq!(report["deleted"], true);
        assert_eq!(report["held"], false);
        assert_eq!(
            instant(&report, "processed_at"),
            crate::app::start().plus_millis(5_000)
        );
        // The face image is gone: no row, no object, no lease.
        t.app
            .get(&format!("/v1/media/{face_id}"), &t.app.admin)
            .expect_error(404, "media.not_found");
        t.download(&app_key, &face_id, PORTRAIT, None)
            .expect_error(404, "media.not_found");
        assert_eq!(
            t.object_keys(),
            [MediaApp::object_key(&subject, &effect_id)]
        );
        let listed = t.listed(&app_key, &subject);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], effect_id.as_str());

        // Day 10, an hour before the effect expires: still downloadable, ranges exact.
        t.app.clock.advance_millis(10 * DAY_MS - 3_600_000 - 5_000);
        let part = t
            .download(&app_key, &effect_id, PORTRAIT, Some("bytes=1000-1999"))
            .expect(206);
        assert_eq!(part.body, effect[1000..2000]);
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes 1000-1999/{}", effect.len()).as_str())
        );
        assert_eq!(part.header("content-length"), Some("1000"));
        assert_eq!(part.header("content-type"), Some("image/png"));
        let tail = t
            .download(&app_key, &effect_id, PORTRAIT, Some("bytes=-10"))
            .expect(206);
        assert_eq!(tail.body, effect[effect.len() - 10..]);
        let from = t
            .download(&app_key, &effect_id, PORTRAIT, Some("bytes=119990-"))
            .expect(206);
        assert_eq!(from.body, effect[119_990..]);
        let whole = t.download(&app_key, &effect_id, PORTRAIT, None).expect(200);
        assert!(
            whole.body == effect,
            "the effect differs from what was attached"
        );

        // Day 11: expired, then swept.
        t.app.clock.advance_millis(DAY_MS);
        t.download(&app_key, &effect_id, PORTRAIT, None)
            .expect_error(410, "media.gone");
        assert!(t.listed(&app_key, &subject).is_empty());
        let swept = t
            .app
            .json("POST", "/v1/sweeps", &t.app.admin, &json!({}))
            .expect(200)
            .json();
        assert_eq!(swept["media_deleted"], 1, "{swept}");
        t.app
            .get(&format!("/v1/media/{effect_id}"), &t.app.admin)
            .expect_error(404, "media.not_found");
        assert!(t.object_keys().is_empty());
        assert_eq!(t.rows(&subject), 0);
    });
}

/// Sends `bytes` as a chunked request body, in chunks of `chunk` bytes.
fn send_chunked(
    addr: SocketAddr,
    path: &str,
    token: &str,
    content_type: &str,
    bytes: &[u8],
    chunk: usize,
) -> Response {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for part in bytes.chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        request.extend_from_slice(part);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    exchange(addr, &request)
}

#[test]
fn deeppiano_tuning_deletes_the_original_once_the_tuned_audio_is_attached() {
    each_store("deeppiano.toml", true, |t| {
        let pianist = t.subject(&[TUNING]);
        let app_key = t.app.service_key(&[TUNING]);
        let tuner = t.app.service_key(&[TUNING]);
        // Several MiB, sent chunked (no Content-Length): many frames through the channel.
        let original = body(3 * 1024 * 1024 + 4321, 3);
        let uploaded = send_chunked(
            t.app.addr,
            &format!("/v1/subjects/{pianist}/media?category={ORIGINAL}&purpose={TUNING}"),
            &app_key,
            "audio/wav",
            &original,
            100_000,
        )
        .expect(201)
        .json();
        let original_id = str_of(&uploaded, "id").to_owned();
        assert_eq!(uploaded["size"], original.len());
        assert_eq!(uploaded["rule"], "tuning-original");

        let lease = t.lease(&tuner, &original_id, TUNING).expect(201).json();
        let lease_id = str_of(&lease, "id");
        let leased = format!("/v1/media/{original_id}/leases/{lease_id}/content");
        let whole = t.app.get(&leased, &tuner).expect(200);
        assert!(
            whole.body == original,
            "the leased audio differs from the upload"
        );
        let part = t
            .app
            .raw(
                "GET",
                &leased,
                Some(&tuner),
                &[("Range", "bytes=65530-65545")],
                None,
            )
            .expect(206);
        assert_eq!(part.body, original[65_530..65_546]);
        // Only the holder reads under a lease.
        t.app
            .get(&leased, &app_key)
            .expect_error(409, "lease.not_held");

        let tuned = body(1024 * 1024 + 7, 4);
        let output = send_chunked(
            t.app.addr,
            &format!("/v1/media/{original_id}/leases/{lease_id}/outputs?category={TUNED}"),
            &tuner,
            "audio/flac",
            &tuned,
            65_536,
        )
        .expect(201)
        .json();
        let tuned_id = str_of(&output, "id").to_owned();
        assert_eq!(output["rule"], "practice-media");
        assert_eq!(output["parent"], original_id.as_str());
        let report = t
            .app
            .raw(
                "POST",
                &format!("/v1/media/{original_id}/leases/{lease_id}/complete"),
                Some(&tuner),
                &[],
                None,
            )
            .expect(200)
            .json();
        assert_eq!(report["deleted"], true);
        assert_eq!(report["rule"], "tuning-original");

        t.app
            .get(&format!("/v1/media/{original_id}"), &app_key)
            .expect_error(404, "media.not_found");
        assert_eq!(t.object_keys(), [MediaApp::object_key(&pianist, &tuned_id)]);
        let of_original = t
            .app
            .get(
                &format!("/v1/subjects/{pianist}/media?category={ORIGINAL}"),
                &app_key,
            )
            .expect(200)
            .json();
        assert_eq!(of_original["media"], json!([]));
        let listed = t.listed(&app_key, &pianist);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["content_type"], "audio/flac");
        // Kept a year: still there after eleven months.
        t.app.clock.advance_days(330);
        let download = t.download(&app_key, &tuned_id, TUNING, None).expect(200);
        assert!(download.body == tuned, "the tuned audio differs");
        assert_eq!(t.rows(&pianist), 1);
    });
}

/// Opens a connection and sends the head of an upload announcing `announced` bytes.
fn begin_upload(t: &MediaApp, subject: &str, announced: u64) -> TcpStream {
    let mut stream = TcpStream::connect(t.app.addr).unwrap();
    write!(
        stream,
        "POST /v1/subjects/{subject}/media?category={FACE}&purpose={PORTRAIT} HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: Bearer {}\r\nContent-Type: image/jpeg\r\n\
         Content-Length: {announced}\r\n\r\n",
        t.app.addr, t.app.admin
    )
    .unwrap();
    stream
}

#[test]
fn a_client_that_goes_away_mid_body_stores_nothing() {
    each_store("portrait-effects.toml", true, |t| {
        let subject = t.subject(&[PORTRAIT]);
        let mut stream = begin_upload(t, &subject, 4_000_000);
        stream.write_all(&body(1_500_000, 5)).unwrap();
        stream.flush().unwrap();
        // The upload is under way: its row is registered (pending) before a byte is stored.
        eventually("the pending row", || t.rows(&subject) == 1);
        assert!(t.listed(&t.app.admin, &subject).is_empty());
        drop(stream);
        eventually("the failed upload's cleanup", || t.rows(&subject) == 0);
        assert!(t.object_keys().is_empty());
        if let Some(dir) = t.objects_dir() {
            assert!(
                files(&dir).is_empty(),
                "{:?}",
                files(&dir) // no staging file, no object
            );
        }
        assert!(t.listed(&t.app.admin, &subject).is_empty());

        // A body that ends (the client half-closes) before its Content-Length: 400, nothing.
        let mut stream = begin_upload(t, &subject, 1_000);
        stream.write_all(&[7u8; 400]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
        let answer = String::from_utf8_lossy(&answer);
        // hyper may close the connection without an answer, or answer media.truncated.
        assert!(
            answer.is_empty() || answer.contains("media.truncated"),
            "{answer}"
        );
        eventually("no row", || t.rows(&subject) == 0);
        assert!(t.object_keys().is_empty());
    });
}

#[test]
fn a_body_that_does_not_match_its_digest_or_length_or_size_limit_stores_nothing() {
    each_store("portrait-effects.toml", false, |t| {
        let subject = t.subject(&[PORTRAIT]);
        let face = body(200_000, 6);
        let wrong = content_digest(b"something else");
        t.upload_with(
            &t.app.admin,
            &subject,
            FACE,
            PORTRAIT,
            &[("Content-Type", "image/jpeg"), ("Content-Digest", &wrong)],
            &face,
        )
        .expect_error(422, "media.digest_mismatch");
        for malformed in [
            "sha-256=abc",
            "sha-256=:!!:",
            "sha-256=:AAAA:",
            "sha-256",
            "",
        ] {
            let body = t
                .upload_with(
                    &t.app.admin,
                    &subject,
                    FACE,
                    PORTRAIT,
                    &[
                        ("Content-Type", "image/jpeg"),
                        ("Content-Digest", malformed),
                    ],
                    &face,
                )
                .expect_error(400, "request.invalid_header");
            assert_eq!(body["details"]["header"], "Content-Digest");
        }
        assert_eq!(t.rows(&subject), 0);
        assert!(t.object_keys().is_empty());
    });
    // A small media limit: an announced length over it is refused at once, a chunked body as
    // soon as it passes it.
    for (backend, kind) in setups(false) {
        let t = spawn_media(
            &backend,
            &kind,
            "portrait-effects.toml",
            custodia_server::ServerOptions {
                max_media_bytes: 64 * 1024,
                ..custodia_server::ServerOptions::default()
            },
        );
        let subject = t.subject(&[PORTRAIT]);
        let big = body(200_000, 7);
        t.upload_with(
            &t.app.admin,
            &subject,
            FACE,
            PORTRAIT,
            &[("Content-Type", "image/jpeg")],
            &big,
        )
        .expect_error(413, "request.too_large");
        send_chunked(
            t.app.addr,
            &format!("/v1/subjects/{subject}/media?category={FACE}&purpose={PORTRAIT}"),
            &t.app.admin,
            "image/jpeg",
            &big,
            16 * 1024,
        )
        .expect_error(413, "request.too_large");
        eventually("no row", || t.rows(&subject) == 0);
        assert!(t.object_keys().is_empty());
        // At the limit, it is stored (the limit is larger than the JSON body limit's default).
        t.upload(
            &t.app.admin,
            &subject,
            FACE,
            PORTRAIT,
            "image/jpeg",
            &big[..64 * 1024],
        );
    }
}

#[test]
fn an_altered_object_never_downloads_as_a_success() {
    each_store("portrait-effects.toml", false, |t| {
        let subject = t.subject(&[PORTRAIT]);
        let face = body(1_000_000, 8);
        let uploaded = t.upload(&t.app.admin, &subject, FACE, PORTRAIT, "image/jpeg", &face);
        let id = str_of(&uploaded, "id");
        // The digest the upload announced comes back as the representation's (RFC 9530), for
        // the whole object and for a range of it; an upload that announced none has none.
        let whole = t.download(&t.app.admin, id, PORTRAIT, None).expect(200);
        assert_eq!(whole.body, face);
        assert_eq!(
            whole.header("repr-digest"),
            Some(content_digest(&face).as_str())
        );
        let part = t
            .download(&t.app.admin, id, PORTRAIT, Some("bytes=10-19"))
            .expect(206);
        assert_eq!(
            part.header("repr-digest"),
            Some(content_digest(&face).as_str())
        );
        let plain = t
            .upload_with(
                &t.app.admin,
                &subject,
                FACE,
                PORTRAIT,
                &[("Content-Type", "image/jpeg")],
                &face[..1000],
            )
            .expect(201)
            .json();
        let plain = t
            .download(&t.app.admin, str_of(&plain, "id"), PORTRAIT, None)
            .expect(200);
        assert_eq!(plain.header("repr-digest"), None);
        let file = t
            .objects_dir()
            .unwrap()
            .join(MediaApp::object_key(&subject, id));
        let flip = |offset: usize| {
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[offset] ^= 0x01;
            std::fs::write(&file, &bytes).unwrap();
        };

        // Altered in the middle: the answer starts, then the connection is dropped short of its
        // Content-Length.
        flip(700_000);
        let response = t.download(&t.app.admin, id, PORTRAIT, None);
        assert!(
            !(response.status == 200 && response.body.len() == face.len()),
            "an altered object was served whole"
        );
        if response.status == 200 {
            assert_eq!(
                response.header("content-length"),
                Some(face.len().to_string().as_str())
            );
            assert!(response.body.len() < face.len());
            assert!(face.starts_with(&response.body));
        }
        // A range before the altered chunk still reads.
        let start = t
            .download(&t.app.admin, id, PORTRAIT, Some("bytes=0-9999"))
            .expect(206);
        assert_eq!(start.body, face[..10_000]);
        flip(700_000);

        // Altered in its first chunk: an error answer before any byte.
        flip(100);
        t.download(&t.app.admin, id, PORTRAIT, None)
            .expect_error(500, "crypto.authentication_failed");
        // Gone from storage: 410.
        std::fs::remove_file(&file).unwrap();
        t.download(&t.app.admin, id, PORTRAIT, None)
            .expect_error(410, "media.gone");
    });
}

#[test]
fn the_gate_and_the_key_decide_before_anything_is_read() {
    each_store("portrait-effects.toml", false, |t| {
        // No consent: the upload is refused before its body is read.
        let stranger = t.app.subject();
        let face = body(50_000, 9);
        let denied = t
            .upload_with(
                &t.app.admin,
                &stranger,
                FACE,
                PORTRAIT,
                &[("Content-Type", "image/jpeg")],
                &face,
            )
            .expect_error(403, "gate.denied");
        assert!(reasons(&denied["details"]).contains(&"consent.missing".to_owned()));
        assert_eq!(t.rows(&stranger), 0);

        let subject = t.subject(&[PORTRAIT]);
        let app_key = t.app.service_key(&[PORTRAIT]);
        let uploaded = t.upload(&app_key, &subject, FACE, PORTRAIT, "image/jpeg", &face);
        let id = str_of(&uploaded, "id").to_owned();
        let audit_before = t.app.audit_len();

        // A purpose the subject never consented to: 403 with the reasons, nothing read.
        let cutout_key = t.app.service_key(&[CUTOUT]);
        let denied = t
            .download(&cutout_key, &id, CUTOUT, None)
            .expect_error(403, "gate.denied");
        assert!(reasons(&denied["details"]).contains(&"consent.missing".to_owned()));
        // A key bound to another purpose can neither download nor lease for this one.
        let denied = t
            .download(&cutout_key, &id, PORTRAIT, None)
            .expect_error(403, "gate.denied");
        assert!(reasons(&denied["details"]).contains(&"key.purpose_not_bound".to_owned()));
        let denied = t
            .lease(&cutout_key, &id, PORTRAIT)
            .expect_error(403, "gate.denied");
        assert!(reasons(&denied["details"]).contains(&"key.purpose_not_bound".to_owned()));
        // Nor upload for it.
        t.upload_with(
            &cutout_key,
            &subject,
            FACE,
            PORTRAIT,
            &[("Content-Type", "image/jpeg")],
            &face,
        )
        .expect_error(403, "gate.denied");
        // Withdrawn consent: the next lease is refused.
        t.app
            .consent(&subject, "withdrawn", &[PORTRAIT])
            .expect(201);
        let denied = t
            .lease(&app_key, &id, PORTRAIT)
            .expect_error(403, "gate.denied");
        assert!(reasons(&denied["details"]).contains(&"consent.withdrawn".to_owned()));
        // Every denial was audited as a decision; no read was.
        t.app.vault.flush_audit().unwrap();
        let reads = t
            .app
            .data
            .audit_entries(audit_before + 1, 1000)
            .unwrap()
            .into_iter()
            .filter(|entry| serde_json::to_value(&entry.event).unwrap()["kind"] == "record_read")
            .count();
        assert_eq!(reads, 0);
        assert_eq!(t.object_keys().len(), 1);
    });
}

#[test]
fn leases_conflict_and_are_released_by_their_holder_only() {
    each_store("portrait-effects.toml", false, |t| {
        let subject = t.subject(&[PORTRAIT]);
        let first = t.app.service_key(&[PORTRAIT]);
        let second = t.app.service_key(&[PORTRAIT]);
        let uploaded = t.upload(&first, &subject, FACE, PORTRAIT, "image/jpeg", b"face");
        let id = str_of(&uploaded, "id").to_owned();
        let lease = t.lease(&first, &id, PORTRAIT).expect(201).json();
        let lease_id = str_of(&lease, "id").to_owned();
        t.lease(&second, &id, PORTRAIT)
            .expect_error(409, "media.leased");
        // The holder asking again renews the same lease.
        let again = t.lease(&first, &id, PORTRAIT).expect(201).json();
        assert_eq!(again["id"], lease_id.as_str());
        let release = format!("/v1/media/{id}/leases/{lease_id}");
        t.app
            .raw("DELETE", &release, Some(&second), &[], None)
            .expect_error(409, "lease.not_held");
        t.app
            .raw("DELETE", &release, Some(&first), &[], None)
            .expect(204);
        t.lease(&second, &id, PORTRAIT).expect(201);
        // A lease that lapsed.
        t.app.clock.advance_millis(601_000);
        let lease = t.lease(&first, &id, PORTRAIT).expect(201).json();
        let lease_id = str_of(&lease, "id");
        t.app.clock.advance_millis(601_000);
        t.app
            .get(&format!("/v1/media/{id}/leases/{lease_id}/content"), &first)
            .expect_error(409, "lease.expired");
        // The operator's admin key can lease (it is an API key); TTLs are bounded.
        t.app
            .json(
                "POST",
                &format!("/v1/media/{id}/leases"),
                &t.app.admin,
                &json!({ "purpose": PORTRAIT, "ttl_seconds": 0 }),
            )
            .expect_error(422, "vault.invalid");
        // Deleting is for admin keys; afterwards nothing is left.
        t.app
            .raw(
                "DELETE",
                &format!("/v1/media/{id}"),
                Some(&first),
                &[],
                None,
            )
            .expect_error(403, "auth.admin_required");
        t.app
            .raw(
                "DELETE",
                &format!("/v1/media/{id}"),
                Some(&t.app.admin),
                &[],
                None,
            )
            .expect(204);
        t.app
            .get(&format!("/v1/media/{id}"), &t.app.admin)
            .expect_error(404, "media.not_found");
        assert!(t.object_keys().is_empty());
    });
}

#[test]
fn bad_input_gets_stable_codes_and_changes_nothing() {
    each_store("portrait-effects.toml", false, |t| {
        let subject = t.subject(&[PORTRAIT]);
        let face = body(10_000, 10);
        let upload = |category: &str, purpose: &str, content_type: Option<&str>| {
            let headers: Vec<(&str, &str)> = content_type
                .map(|ct| vec![("Content-Type", ct)])
                .unwrap_or_default();
            t.upload_with(&t.app.admin, &subject, category, purpose, &headers, &face)
        };
        upload("user.content.unheard_of", PORTRAIT, Some("image/jpeg"))
            .expect_error(422, "vault.unknown_category");
        upload(FACE, "no_such_purpose", Some("image/jpeg"))
            .expect_error(422, "vault.unknown_purpose");
        upload("user.content.audio_recording", PORTRAIT, Some("audio/wav"))
            .expect_error(422, "vault.purpose_does_not_cover");
        upload(FACE, PORTRAIT, None).expect_error(415, "request.unsupported_media_type");
        let body = upload(FACE, PORTRAIT, Some("image/jpeg; name=\"me.jpg\""))
            .expect_error(422, "vault.invalid");
        assert_eq!(body["details"]["field"], "content_type");
        assert!(!body["message"].as_str().unwrap().contains("me.jpg"));
        t.app
            .raw(
                "POST",
                &format!("/v1/subjects/{subject}/media?category={FACE}"),
                Some(&t.app.admin),
                &[("Content-Type", "image/jpeg")],
                Some(&face),
            )
            .expect_error(400, "request.invalid_query");
        t.app
            .raw(
                "POST",
                &format!("/v1/subjects/sub_nope/media?category={FACE}&purpose={PORTRAIT}"),
                Some(&t.app.admin),
                &[("Content-Type", "image/jpeg")],
                Some(&face),
            )
            .expect_error(400, "request.invalid_id");
        let unknown_subject = "sub_00000000000000000000000000000000";
        t.app
            .raw(
                "POST",
                &format!("/v1/subjects/{unknown_subject}/media?category={FACE}&purpose={PORTRAIT}"),
                Some(&t.app.admin),
                &[("Content-Type", "image/jpeg")],
                Some(&face),
            )
            .expect_error(404, "vault.subject_not_found");
        t.app
            .get(
                &format!("/v1/subjects/{unknown_subject}/media"),
                &t.app.admin,
            )
            .expect_error(404, "vault.subject_not_found");
        assert_eq!(t.rows(&subject), 0);
        assert!(t.object_keys().is_empty());

        let uploaded = t.upload(&t.app.admin, &subject, FACE, PORTRAIT, "image/jpeg", &face);
        let id = str_of(&uploaded, "id").to_owned();
        // Ranges: one byte range is served; anything else is 416 with the size.
        for range in [
            "bytes=10000-",
            "bytes=20000-30000",
            "bytes=-0",
            "bytes=5-4",
            "bytes=0-1,5-6",
            "bytes=x-y",
            "bytes",
        ] {
            let response = t.download(&t.app.admin, &id, PORTRAIT, Some(range));
            let body = response.expect_error(416, "media.range_not_satisfiable");
            assert_eq!(body["details"]["size"], 10_000, "{range}");
            assert_eq!(
                response.header("content-range"),
                Some("bytes */10000"),
                "{range}"
            );
        }
        // Another unit is ignored.
        let whole = t
            .download(&t.app.admin, &id, PORTRAIT, Some("items=0-1"))
            .expect(200);
        assert_eq!(whole.body, face);
        // A range past the end is clamped.
        let clamped = t
            .download(&t.app.admin, &id, PORTRAIT, Some("bytes=9990-20000"))
            .expect(206);
        assert_eq!(clamped.body, face[9990..]);

        // Ids, purposes, unknown objects.
        t.app
            .get("/v1/media/med_xyz", &t.app.admin)
            .expect_error(400, "request.invalid_id");
        t.app
            .get(&format!("/v1/media/{subject}"), &t.app.admin)
            .expect_error(400, "request.invalid_id");
        let unknown = "med_00000000000000000000000000000000";
        t.app
            .get(&format!("/v1/media/{unknown}"), &t.app.admin)
            .expect_error(404, "media.not_found");
        t.download(&t.app.admin, unknown, PORTRAIT, None)
            .expect_error(404, "media.not_found");
        t.app
            .get(&format!("/v1/media/{id}/content"), &t.app.admin)
            .expect_error(400, "request.invalid_query");
        let wrong = t
            .download(&t.app.admin, &id, "no_such_purpose", None)
            .expect_error(403, "gate.denied");
        assert!(reasons(&wrong["details"]).contains(&"purpose.unknown".to_owned()));
        t.app
            .get(
                &format!("/v1/media/{id}/leases/lease_nope/content"),
                &t.app.admin,
            )
            .expect_error(400, "request.invalid_id");
        t.app
            .get(
                &format!("/v1/media/{id}/leases/lease_00000000000000000000000000000000/content"),
                &t.app.admin,
            )
            .expect_error(409, "lease.not_held");
        t.app
            .json(
                "POST",
                &format!("/v1/media/{id}/leases"),
                &t.app.admin,
                &json!({ "purpose": PORTRAIT, "extra": 1 }),
            )
            .expect_error(422, "request.invalid_body");
        // A service key sees only the categories its purposes cover.
        let unrelated = t.app.service_key(&["account"]);
        t.app
            .get(&format!("/v1/media/{id}"), &unrelated)
            .expect_error(404, "media.not_found");
        assert!(t.listed(&unrelated, &subject).is_empty());
        assert_eq!(t.listed(&t.app.service_key(&[CUTOUT]), &subject).len(), 1);
        assert_eq!(t.rows(&subject), 1);
    });
}

#[test]
fn no_media_canary_is_at_rest_anywhere() {
    each_store("portrait-effects.toml", true, |t| {
        let canary = format!("MEDIA-CANARY-{}", random_hex());
        let subject = t.subject(&[PORTRAIT]);
        let worker = t.app.service_key(&[PORTRAIT]);
        let mut face = Vec::new();
        while face.len() < 400_000 {
            face.extend_from_slice(canary.as_bytes());
            face.extend_from_slice(&body(1000, face.len() as u64));
        }
        let uploaded = t.upload(&t.app.admin, &subject, FACE, PORTRAIT, "image/jpeg", &face);
        let id = str_of(&uploaded, "id").to_owned();
        // An output with the canary too, and a failed upload of it.
        let lease = t.lease(&worker, &id, PORTRAIT).expect(201).json();
        let lease_id = str_of(&lease, "id");
        t.app
            .raw(
                "POST",
                &format!("/v1/media/{id}/leases/{lease_id}/outputs?category={EFFECT}"),
                Some(&worker),
                &[("Content-Type", "image/png")],
                Some(&face),
            )
            .expect(201);
        let mut stream = begin_upload(t, &subject, 10_000_000);
        stream.write_all(&face).unwrap();
        eventually("the pending row", || t.rows(&subject) == 3);
        drop(stream);
        eventually("the failed upload's cleanup", || t.rows(&subject) == 2);
        // The canary does go through: it reads back.
        let read = t.download(&worker, &id, PORTRAIT, None).expect(200);
        assert!(contains(&read.body, canary.as_bytes()));
        t.app.vault.flush_audit().unwrap();

        let at_rest = t.everything_at_rest();
        assert!(at_rest.len() >= 2, "nothing was scanned");
        for (name, bytes) in &at_rest {
            assert!(
                !contains(bytes, canary.as_bytes()),
                "the canary is in {name} in plaintext"
            );
        }
    });
}
