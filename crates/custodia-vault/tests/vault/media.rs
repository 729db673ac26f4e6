//! Media custody with a moved clock, on SQLite and a file-system object store: the portrait
//! effects and DeepPiano promises (inputs gone when processing completes, outputs kept for their
//! own period), uploads that store nothing when they fail, tamper detection, ranged reads,
//! leases, the gate, erasure, the sweeper's crash recovery, and no plaintext at rest.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custodia_audit::EventKind;
use custodia_core::{ManualClock, MediaId, SubjectId};
use custodia_objects::{FsObjectStore, ObjectStore};
use custodia_store::{
    ConsentEventKind, DataStore, KeyStore, MediaRow, MediaState, MediaUpdate, Mutation, WriteBatch,
};
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{
    Caller, Gated, MediaDownload, MediaRange, NewConsent, NewMedia, SweepReport, Vault, VaultError,
};

use crate::backends::{new_subject, root, start};

const FACE: &str = "user.content.self_image";
const EFFECT: &str = "user.content.generated_image";
const PORTRAIT: &str = "portrait_effects";
const TUNING_ORIGINAL: &str = "user.content.audio_recording.tuning_original";
const TUNED: &str = "user.content.audio_recording.tuned";
const TUNING: &str = "audio_tuning";
const CHUNK: usize = 64 * 1024;

/// A vault under one of the example policies, with its media store.
struct MediaVault {
    vault: Vault,
    clock: ManualClock,
    data_dir: PathBuf,
    objects_dir: PathBuf,
    data: Arc<dyn DataStore>,
    keys: Arc<dyn KeyStore>,
    objects: Arc<dyn ObjectStore>,
    _temp: tempfile::TempDir,
}

fn open_example(file: &str) -> MediaVault {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let objects_dir = temp.path().join("objects");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file);
    let policy = custodia_policy::load(&path).unwrap();
    assert!(policy.is_clean(), "{:#?}", policy.findings);
    let (data, keys) = SqliteStores::open(&data_dir).unwrap();
    let data: Arc<dyn DataStore> = Arc::new(data);
    let keys: Arc<dyn KeyStore> = Arc::new(keys);
    let clock = ManualClock::new(start());
    let objects: Arc<dyn ObjectStore> = Arc::new(FsObjectStore::open(&objects_dir).unwrap());
    let vault = Vault::open(
        data.clone(),
        keys.clone(),
        policy,
        Arc::new(clock.clone()),
        &root(),
    )
    .unwrap()
    .with_media_store(objects.clone());
    MediaVault {
        vault,
        clock,
        data_dir,
        objects_dir,
        data,
        keys,
        objects,
        _temp: temp,
    }
}

fn portrait() -> MediaVault {
    open_example("portrait-effects.toml")
}

impl MediaVault {
    /// A subject who consented to `purposes`.
    fn subject(&self, external: &str, purposes: &[&str]) -> SubjectId {
        let subject = self
            .vault
            .create_subject(&new_subject(external), "test")
            .unwrap();
        for purpose in purposes {
            self.vault
                .record_consent(
                    subject.id,
                    &NewConsent {
                        purposes: vec![(*purpose).to_owned()],
                        kind: ConsentEventKind::Given,
                        guardian: None,
                        guardian_verified: false,
                        policy_version: None,
                        method: "app_dialog".to_owned(),
                        expires_at: None,
                    },
                    "test",
                )
                .unwrap();
        }
        subject.id
    }

    /// A service key bound to `purposes`, authenticated.
    fn service(&self, name: &str, purposes: &[&str]) -> Caller {
        let purposes: Vec<String> = purposes.iter().map(|p| (*p).to_owned()).collect();
        let issued = self
            .vault
            .create_api_key(name, false, &purposes, "test")
            .unwrap();
        self.vault.authenticate(&issued.token).unwrap()
    }

    fn upload(
        &self,
        subject: SubjectId,
        category: &str,
        purpose: &str,
        body: &[u8],
        caller: &Caller,
    ) -> custodia_vault::MediaInfo {
        self.vault
            .upload_media(
                subject,
                &NewMedia {
                    category,
                    purpose,
                    content_type: "application/octet-stream",
                    expected_len: Some(body.len() as u64),
                    expected_sha256: Some(sha256(body)),
                },
                &mut &body[..],
                caller,
            )
            .unwrap()
    }

    fn download(
        &self,
        id: MediaId,
        purpose: &str,
        range: Option<MediaRange>,
        caller: &Caller,
    ) -> MediaDownload {
        match self
            .vault
            .download_media(id, purpose, range, caller)
            .unwrap()
        {
            Gated::Allowed { value, .. } => value,
            Gated::Denied(decision) => panic!("denied: {decision:?}"),
        }
    }

    /// Every object file in the store (not the staging directory, which must be empty).
    fn object_files(&self) -> Vec<PathBuf> {
        let staging = self.objects_dir.join(".staging");
        if staging.exists() {
            assert!(
                files(&staging).is_empty(),
                "a failed put left a temporary file"
            );
        }
        files(&self.objects_dir)
            .into_iter()
            .filter(|path| !path.starts_with(&staging))
            .collect()
    }

    fn object_file(&self, id: MediaId) -> PathBuf {
        let row = self.data.media(id).unwrap().unwrap();
        self.objects_dir.join(row.location)
    }

    fn entries(&self, kind: EventKind) -> Vec<custodia_audit::AuditEntry> {
        let entries = self.data.audit_entries(1, 100_000).unwrap();
        custodia_audit::verify(&entries).unwrap();
        entries
            .into_iter()
            .filter(|entry| entry.event.kind == kind)
            .collect()
    }

    fn sweep(&self) -> SweepReport {
        self.vault
            .sweep(false, 2, "sweeper", &mut |_: u64, _: u64| {})
            .unwrap()
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().try_into().unwrap()
}

/// `len` pseudo-random bytes.
fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn read_all(mut reader: impl Read, buffer: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; buffer];
    loop {
        let read = reader.read(&mut buf)?;
        if read == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..read]);
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, VaultError>) -> &'static str {
    result.unwrap_err().code()
}

fn lease(
    t: &MediaVault,
    id: MediaId,
    purpose: &str,
    ttl: Duration,
    caller: &Caller,
) -> custodia_store::LeaseRow {
    match t.vault.lease_media(id, purpose, ttl, caller).unwrap() {
        Gated::Allowed { value, .. } => value,
        Gated::Denied(decision) => panic!("denied: {decision:?}"),
    }
}

#[test]
fn portrait_faces_go_when_the_effect_is_made_and_effects_after_ten_days() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let worker = t.service("effect-worker", &[PORTRAIT]);
    let face_bytes = body(300_000, 1);
    let face = t.upload(alice, FACE, PORTRAIT, &face_bytes, &app);
    assert_eq!(face.state, MediaState::Stored);
    assert_eq!(face.size, 300_000);
    assert_eq!(face.rule, "uploaded-face-images");
    assert_eq!(face.expires_at, None, "kept until processed");
    assert_eq!(face.parent, None);
    let face_file = t.object_file(face.id);
    assert!(face_file.exists());
    let stored = std::fs::read(&face_file).unwrap();
    assert!(
        !stored
            .windows(64)
            .any(|window| window == &face_bytes[1000..1064]),
        "the stored object is ciphertext"
    );
    assert_eq!(t.entries(EventKind::MediaStored).len(), 1);

    let held = lease(&t, face.id, PORTRAIT, Duration::from_secs(600), &worker);
    assert_eq!(held.holder, worker.key.unwrap());
    let input = t
        .vault
        .read_leased(face.id, held.id, None, &worker)
        .unwrap();
    assert_eq!((input.range.clone(), input.total), (0..300_000, 300_000));
    assert_eq!(read_all(input.reader, 8192).unwrap(), face_bytes);

    let effect_bytes = body(120_000, 2);
    let effect = t
        .vault
        .attach_output(
            face.id,
            held.id,
            &NewMedia {
                category: EFFECT,
                purpose: PORTRAIT,
                content_type: "image/png",
                expected_len: Some(120_000),
                expected_sha256: None,
            },
            &mut &effect_bytes[..],
            &worker,
        )
        .unwrap();
    assert_eq!(effect.parent, Some(face.id));
    assert_eq!(effect.subject, alice);
    assert_eq!(effect.rule, "effect-images");
    assert_eq!(
        effect.expires_at,
        Some(
            effect
                .created_at
                .checked_add(10, custodia_core::CalendarUnit::Days)
                .unwrap()
        )
    );

    let report = t
        .vault
        .complete_processing(face.id, held.id, &worker)
        .unwrap();
    assert!(report.deleted && !report.held);
    assert_eq!(report.rule, "uploaded-face-images");
    // No row (so no wrapped key), no bytes.
    assert_eq!(t.data.media(face.id).unwrap(), None);
    assert!(!face_file.exists());
    assert_eq!(t.object_files(), vec![t.object_file(effect.id)]);
    assert_eq!(code(t.vault.media_info(face.id)), "media.not_found");
    assert_eq!(
        code(t.vault.download_media(face.id, PORTRAIT, None, &app)),
        "media.not_found"
    );
    let deleted = t.entries(EventKind::MediaDeleted);
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].event.record, Some(face.id.to_string()));
    assert_eq!(
        deleted[0].event.rule.as_deref(),
        Some("uploaded-face-images")
    );
    assert_eq!(deleted[0].event.outcome.as_deref(), Some("processed"));
    assert_eq!(
        t.vault
            .list_media(alice, None)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        vec![effect.id]
    );

    // Day 10, an hour before the effect's expiry: still downloadable.
    t.clock.advance_millis(10 * 86_400_000 - 3_600_000);
    let download = t.download(effect.id, PORTRAIT, None, &app);
    assert_eq!(read_all(download.reader, CHUNK).unwrap(), effect_bytes);
    t.clock.advance_millis(2 * 3_600_000);
    assert_eq!(
        code(t.vault.download_media(effect.id, PORTRAIT, None, &app)),
        "media.gone"
    );
    let dry = t
        .vault
        .sweep(true, 10, "sweeper", &mut |_: u64, _: u64| {})
        .unwrap();
    assert_eq!(dry.deleted, 1);
    assert!(
        t.data.media(effect.id).unwrap().is_some(),
        "a dry run changes nothing"
    );

    // Day 11: the sweeper deletes it.
    t.clock.advance_days(1);
    let swept = t.sweep();
    assert_eq!((swept.deleted, swept.media_deleted), (1, 1));
    assert_eq!(
        swept.by_rule.into_iter().collect::<Vec<_>>(),
        vec![((EFFECT.to_owned(), "effect-images".to_owned()), 1)]
    );
    assert_eq!(t.data.media(effect.id).unwrap(), None);
    assert!(t.object_files().is_empty());
    let retention = t.entries(EventKind::RetentionDeleted);
    assert_eq!(retention.len(), 1);
    assert_eq!(retention[0].event.record, Some(effect.id.to_string()));
    assert_eq!(retention[0].event.rule.as_deref(), Some("effect-images"));
    assert_eq!(t.sweep(), SweepReport::default(), "idempotent");
}

#[test]
fn deeppiano_tuning_deletes_the_original_and_keeps_the_tuned_audio_a_year() {
    let t = open_example("deeppiano.toml");
    let pianist = t.subject("pianist", &[TUNING]);
    let app = t.service("piano-app", &[TUNING]);
    let tuner = t.service("tuner", &[TUNING]);
    // Several MiB: many chunks, several download segments, an unaligned tail.
    let original = body(5 * 1024 * 1024 + 12_345, 3);
    let info = t.upload(pianist, TUNING_ORIGINAL, TUNING, &original, &app);
    assert_eq!(info.rule, "tuning-original");
    assert_eq!(info.expires_at, None);
    let stored_len = std::fs::metadata(t.object_file(info.id)).unwrap().len();
    assert_eq!(
        Some(stored_len),
        custodia_crypto::ChunkSize::DEFAULT.sealed_len(original.len() as u64)
    );

    let held = lease(&t, info.id, TUNING, Duration::from_secs(3600), &tuner);
    // Large reads take the direct path, small ones the buffered one.
    let whole = t.vault.read_leased(info.id, held.id, None, &tuner).unwrap();
    assert_eq!(read_all(whole.reader, 4 * 1024 * 1024).unwrap(), original);
    let whole = t.vault.read_leased(info.id, held.id, None, &tuner).unwrap();
    assert_eq!(read_all(whole.reader, 1000).unwrap(), original);

    let tuned_bytes = body(2 * 1024 * 1024, 4);
    let tuned = t
        .vault
        .attach_output(
            info.id,
            held.id,
            &NewMedia {
                category: TUNED,
                purpose: TUNING,
                content_type: "audio/flac",
                expected_len: None,
                expected_sha256: Some(sha256(&tuned_bytes)),
            },
            &mut &tuned_bytes[..],
            &tuner,
        )
        .unwrap();
    assert_eq!(tuned.rule, "practice-media");
    assert_eq!(
        tuned.expires_at,
        Some(
            tuned
                .created_at
                .checked_add(1, custodia_core::CalendarUnit::Years)
                .unwrap()
        )
    );
    let report = t
        .vault
        .complete_processing(info.id, held.id, &tuner)
        .unwrap();
    assert!(report.deleted);
    assert_eq!(report.rule, "tuning-original");
    assert_eq!(t.data.media(info.id).unwrap(), None);
    assert_eq!(t.object_files(), vec![t.object_file(tuned.id)]);
    // The lease ended with the input.
    assert_eq!(
        code(t.vault.read_leased(info.id, held.id, None, &tuner)),
        "media.not_found"
    );

    let listed = t.vault.list_media(pianist, Some(TUNED)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].content_type, "audio/flac");
    assert!(
        t.vault
            .list_media(pianist, Some(TUNING_ORIGINAL))
            .unwrap()
            .is_empty()
    );
    let download = t.download(tuned.id, TUNING, None, &app);
    assert_eq!(read_all(download.reader, CHUNK).unwrap(), tuned_bytes);

    // An output can be processed in turn; its own rule counts from collection, and processing
    // completes once.
    for _ in 0..2 {
        let again = lease(&t, tuned.id, TUNING, Duration::from_secs(60), &tuner);
        t.clock.advance_millis(1000);
        let report = t
            .vault
            .complete_processing(tuned.id, again.id, &tuner)
            .unwrap();
        assert!(!report.deleted);
        assert_eq!(report.expires_at, tuned.expires_at);
        let row = t.data.media(tuned.id).unwrap().unwrap();
        assert_eq!(row.state, MediaState::Processed);
        assert_eq!(row.processed_at, Some(report.processed_at));
        assert_eq!(row.lease, None);
    }
    let processed: Vec<_> = t
        .entries(EventKind::MediaStored)
        .into_iter()
        .filter(|e| e.event.outcome.as_deref() == Some("processed"))
        .collect();
    assert_eq!(processed.len(), 2);
    let first_completion = t.data.media(tuned.id).unwrap().unwrap().processed_at;
    assert!(first_completion < Some(t.vault.now()));

    t.clock.advance_days(366);
    assert_eq!(t.sweep().media_deleted, 1);
    assert!(t.object_files().is_empty());
}

/// A body that yields `good` bytes and then fails.
struct Failing {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "client went away",
            ));
        }
        let n = buf.len().min(self.fail_at - self.pos).min(10_000);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn failed_uploads_store_nothing() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let unbound = t.service("logs", &["troubleshooting"]);
    let bytes = body(700_000, 5);
    let head = t.data.audit_head().unwrap();
    let new = |expected_len, expected_sha256| NewMedia {
        category: FACE,
        purpose: PORTRAIT,
        content_type: "image/jpeg",
        expected_len,
        expected_sha256,
    };
    let mut failing = Failing {
        data: bytes.clone(),
        pos: 0,
        fail_at: 300_000,
    };
    let err = t
        .vault
        .upload_media(alice, &new(None, None), &mut failing, &app)
        .unwrap_err();
    assert_eq!(err.code(), "media.truncated");
    let cases = [
        (Some(700_001), None, "media.truncated"),
        (Some(699_999), None, "media.length_mismatch"),
        (
            None,
            Some(sha256(b"something else")),
            "media.digest_mismatch",
        ),
        (Some(0), None, "media.length_mismatch"),
    ];
    for (len, digest, expected) in cases {
        let err = t
            .vault
            .upload_media(alice, &new(len, digest), &mut &bytes[..], &app)
            .unwrap_err();
        assert_eq!(err.code(), expected, "{len:?}");
    }
    // Refused before anything is registered.
    let invalid = [
        ("image", "vault.invalid"),
        ("image/jpeg; name=x", "vault.invalid"),
    ];
    for (content_type, expected) in invalid {
        let err = t
            .vault
            .upload_media(
                alice,
                &NewMedia {
                    content_type,
                    ..new(None, None)
                },
                &mut &bytes[..],
                &app,
            )
            .unwrap_err();
        assert_eq!(err.code(), expected);
    }
    assert_eq!(
        code(
            t.vault
                .upload_media(alice, &new(None, None), &mut &bytes[..], &unbound)
        ),
        "key.purpose_not_bound"
    );
    assert_eq!(
        code(t.vault.upload_media(
            alice,
            &NewMedia {
                category: "user.unknown.category",
                ..new(None, None)
            },
            &mut &bytes[..],
            &app
        )),
        "vault.unknown_category"
    );
    assert_eq!(
        code(t.vault.upload_media(
            alice,
            &NewMedia {
                category: "user.content.private",
                ..new(None, None)
            },
            &mut &bytes[..],
            &app
        )),
        "vault.purpose_does_not_cover"
    );
    assert_eq!(
        code(t.vault.upload_media(
            SubjectId::random().unwrap(),
            &new(None, None),
            &mut &bytes[..],
            &app
        )),
        "vault.subject_not_found"
    );
    assert!(t.object_files().is_empty());
    assert!(t.data.media_of(alice, None).unwrap().is_empty());
    assert_eq!(t.data.audit_head().unwrap(), head, "nothing audited");

    // The same body, right, stores fine.
    let info = t.upload(alice, FACE, PORTRAIT, &bytes, &app);
    assert_eq!(info.size, 700_000);

    // Without a media store.
    let bare = Vault::open(
        t.data.clone(),
        t.keys.clone(),
        custodia_policy::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/portrait-effects.toml"),
        )
        .unwrap(),
        Arc::new(t.clock.clone()),
        &root(),
    )
    .unwrap();
    assert_eq!(
        code(bare.upload_media(alice, &new(None, None), &mut &bytes[..], &app)),
        "media.store_missing"
    );
    assert_eq!(
        code(bare.download_media(info.id, PORTRAIT, None, &app)),
        "media.store_missing"
    );
}

#[test]
fn a_tampered_or_cut_object_fails_to_download() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let small = t.upload(alice, EFFECT, PORTRAIT, &body(200_000, 6), &app);
    let large_bytes = body(3 * 1024 * 1024, 7);
    let large = t.upload(alice, EFFECT, PORTRAIT, &large_bytes, &app);

    // One byte flipped in the first segment: the download itself fails.
    let path = t.object_file(small.id);
    let mut stored = std::fs::read(&path).unwrap();
    stored[100_000] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    let err = t
        .vault
        .download_media(small.id, PORTRAIT, None, &app)
        .unwrap_err();
    assert_eq!(err.code(), "crypto.authentication_failed");

    // Flipped 2.5 MiB in: the stream fails there, and keeps failing.
    let path = t.object_file(large.id);
    let mut stored = std::fs::read(&path).unwrap();
    stored[2_600_000] ^= 0x80;
    std::fs::write(&path, &stored).unwrap();
    let download = t.download(large.id, PORTRAIT, None, &app);
    let mut reader = download.reader;
    let mut got = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let err = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("a tampered object read to its end"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => break err,
        }
    };
    assert_eq!(
        VaultError::from_io(err).code(),
        "crypto.authentication_failed"
    );
    assert!(got.len() < 2_600_000);
    assert_eq!(
        got,
        large_bytes[..got.len()],
        "only verified bytes came out"
    );
    let again = reader.read(&mut buf).unwrap_err();
    assert_eq!(
        VaultError::from_io(again).code(),
        "crypto.authentication_failed"
    );
    // A range before the damage still reads.
    let early = t.download(
        large.id,
        PORTRAIT,
        Some(MediaRange::From {
            start: 10,
            end: Some(100_000),
        }),
        &app,
    );
    assert_eq!(
        read_all(early.reader, CHUNK).unwrap(),
        large_bytes[10..=100_000]
    );

    // Cut short: the final chunk is missing.
    stored[2_600_000] ^= 0x80;
    stored.truncate(stored.len() - 10);
    std::fs::write(&path, &stored).unwrap();
    let result = t
        .vault
        .download_media(large.id, PORTRAIT, None, &app)
        .and_then(|gated| match gated {
            Gated::Allowed { value, .. } => {
                read_all(value.reader, CHUNK).map_err(VaultError::from_io)
            }
            Gated::Denied(_) => panic!("denied"),
        });
    assert_eq!(code(result), "crypto.truncated");

    // Gone from storage.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        code(t.vault.download_media(large.id, PORTRAIT, None, &app)),
        "media.gone"
    );
}

#[test]
fn the_last_bytes_of_a_download_wait_for_its_final_chunk() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    // A whole number of chunks, larger than what is read ahead at once: the final chunk is empty.
    let bytes = body(48 * CHUNK, 8);
    let info = t.upload(alice, EFFECT, PORTRAIT, &bytes, &app);
    // Its empty final chunk cut off: every byte of the object is still there and genuine.
    let path = t.object_file(info.id);
    let mut stored = std::fs::read(&path).unwrap();
    stored.truncate(stored.len() - 16);
    std::fs::write(&path, &stored).unwrap();
    // A reader that stops after exactly as many bytes as it expects (as an HTTP response with a
    // length does) still learns of the cut: the last read fails rather than hand out the end.
    let download = t.download(info.id, PORTRAIT, None, &app);
    let mut reader = download.reader;
    let mut got = vec![0u8; bytes.len()];
    let err = reader.read_exact(&mut got).unwrap_err();
    assert_eq!(VaultError::from_io(err).code(), "crypto.truncated");
    // A range that ends at the object's end opens the final chunk before the call returns.
    let tail = t
        .vault
        .download_media(info.id, PORTRAIT, Some(MediaRange::Last(10)), &app)
        .unwrap_err();
    assert_eq!(tail.code(), "crypto.truncated");
    // One that ends before it reads genuine bytes and says nothing of the end.
    let early = t.download(
        info.id,
        PORTRAIT,
        Some(MediaRange::From {
            start: 0,
            end: Some(40 * CHUNK as u64),
        }),
        &app,
    );
    assert_eq!(read_all(early.reader, CHUNK).unwrap(), bytes[..=40 * CHUNK]);
}

#[test]
fn ranged_downloads_return_exactly_the_bytes_asked_for() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    for len in [5 * 1024 * 1024 + 123, 2 * CHUNK, 1, 0] {
        let bytes = body(len, len as u64);
        let info = t.upload(alice, EFFECT, PORTRAIT, &bytes, &app);
        let size = len as u64;
        let whole = t.download(info.id, PORTRAIT, None, &app);
        assert_eq!((whole.range.clone(), whole.total), (0..size, size));
        assert_eq!(read_all(whole.reader, 8192).unwrap(), bytes);
        if len == 0 {
            let err = t
                .vault
                .download_media(info.id, PORTRAIT, Some(MediaRange::Last(1)), &app)
                .unwrap_err();
            assert_eq!(err.code(), "media.range_not_satisfiable");
            continue;
        }
        let from = |start: u64, end: Option<u64>| MediaRange::From { start, end };
        let mut ranges = vec![
            (from(0, Some(0)), 0..1),
            (from(size - 1, None), size - 1..size),
            (MediaRange::Last(100), size.saturating_sub(100)..size),
            (from(0, Some(size + 50)), 0..size),
        ];
        if size > 3_000_000 {
            ranges.extend([
                (from(65_535, Some(65_536)), 65_535..65_537),
                (from(65_536, Some(131_071)), 65_536..131_072),
                (from(1_000_000, Some(3_000_000)), 1_000_000..3_000_001),
                (from(3_000_000, None), 3_000_000..size),
            ]);
        }
        for (range, expected) in ranges {
            for buffer in [7, CHUNK, 4 * 1024 * 1024] {
                let download = t.download(info.id, PORTRAIT, Some(range), &app);
                assert_eq!(download.range, expected, "{range:?}");
                assert_eq!(download.total, size);
                let got = read_all(download.reader, buffer).unwrap();
                let want = &bytes[expected.start as usize..expected.end as usize];
                assert!(got == want, "{range:?} with {buffer}-byte reads");
            }
        }
        for bad in [
            from(size, None),
            from(size + 10, Some(size + 20)),
            from(5, Some(4)),
        ] {
            let err = t
                .vault
                .download_media(info.id, PORTRAIT, Some(bad), &app)
                .unwrap_err();
            assert_eq!(err.code(), "media.range_not_satisfiable", "{bad:?}");
        }
    }
    let reads = t.entries(EventKind::RecordRead);
    assert!(
        reads
            .iter()
            .any(|e| e.event.outcome.as_deref() == Some("bytes=0-0")),
        "ranged reads are audited with their range"
    );
}

#[test]
fn leases_conflict_expire_and_pass_on() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let first = t.service("worker-1", &[PORTRAIT]);
    let second = t.service("worker-2", &[PORTRAIT]);
    let face = t.upload(alice, FACE, PORTRAIT, &body(1000, 8), &app);

    let minute = Duration::from_secs(60);
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(999),
        Duration::from_secs(86_401),
    ] {
        assert_eq!(
            code(t.vault.lease_media(face.id, PORTRAIT, ttl, &first)),
            "vault.invalid"
        );
    }
    assert_eq!(
        code(
            t.vault
                .lease_media(face.id, PORTRAIT, minute, &Caller::operator())
        ),
        "lease.key_required"
    );
    let held = lease(&t, face.id, PORTRAIT, minute, &first);
    assert_eq!(
        code(t.vault.lease_media(face.id, PORTRAIT, minute, &second)),
        "media.leased"
    );
    assert_eq!(
        code(t.vault.read_leased(face.id, held.id, None, &second)),
        "lease.not_held"
    );
    // The holder renews, keeping the id.
    t.clock.advance_millis(30_000);
    let renewed = lease(&t, face.id, PORTRAIT, minute, &first);
    assert_eq!(renewed.id, held.id);
    assert_eq!(renewed.expires_at, t.vault.now().plus_millis(60_000));

    // Past its term: the old holder is told, then another key takes over.
    t.clock.advance_millis(61_000);
    assert_eq!(
        code(t.vault.read_leased(face.id, held.id, None, &first)),
        "lease.expired"
    );
    assert_eq!(
        code(t.vault.complete_processing(face.id, held.id, &first)),
        "lease.expired"
    );
    let taken = lease(&t, face.id, PORTRAIT, minute, &second);
    assert_ne!(taken.id, held.id);
    assert_eq!(
        code(t.vault.read_leased(face.id, held.id, None, &first)),
        "lease.not_held"
    );
    assert_eq!(
        code(t.vault.attach_output(
            face.id,
            held.id,
            &NewMedia {
                category: EFFECT,
                purpose: PORTRAIT,
                content_type: "image/png",
                expected_len: None,
                expected_sha256: None,
            },
            &mut &b"x"[..],
            &first
        )),
        "lease.not_held"
    );
    // Released, the object is free again.
    assert_eq!(
        code(t.vault.release_lease(face.id, taken.id, &first)),
        "lease.not_held"
    );
    t.vault.release_lease(face.id, taken.id, &second).unwrap();
    let again = lease(&t, face.id, PORTRAIT, minute, &first);
    assert_ne!(again.id, taken.id);

    // A deleted object cannot be leased; one being deleted neither.
    t.vault.delete_media(face.id, "test").unwrap();
    assert_eq!(
        code(t.vault.lease_media(face.id, PORTRAIT, minute, &first)),
        "media.not_found"
    );
    assert_eq!(
        code(t.vault.read_leased(face.id, again.id, None, &first)),
        "media.not_found"
    );
    let other = t.upload(alice, FACE, PORTRAIT, &body(1000, 9), &app);
    t.data
        .commit(WriteBatch {
            mutations: vec![Mutation::UpdateMedia {
                id: other.id,
                update: MediaUpdate {
                    state: Some(MediaState::Deleting),
                    shred: true,
                    ..MediaUpdate::default()
                },
            }],
            audit: Vec::new(),
        })
        .unwrap();
    assert_eq!(
        code(t.vault.lease_media(other.id, PORTRAIT, minute, &first)),
        "media.gone"
    );
    assert_eq!(
        code(t.vault.download_media(other.id, PORTRAIT, None, &app)),
        "media.gone"
    );
}

#[test]
fn the_gate_decides_before_anything_is_read() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let bob = t.subject("bob", &[]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let face = t.upload(alice, FACE, PORTRAIT, &body(5000, 10), &app);
    let bobs = t.upload(bob, FACE, PORTRAIT, &body(5000, 11), &app);
    let reads_before = t.entries(EventKind::RecordRead).len();

    // A key bound to another purpose, asking for that purpose or for this one.
    let logs = t.service("logs", &["troubleshooting"]);
    for purpose in [PORTRAIT, "troubleshooting"] {
        match t
            .vault
            .download_media(face.id, purpose, None, &logs)
            .unwrap()
        {
            Gated::Denied(decision) => assert!(!decision.allowed),
            Gated::Allowed { .. } => panic!("allowed for {purpose}"),
        }
    }
    match t
        .vault
        .lease_media(face.id, PORTRAIT, Duration::from_secs(60), &logs)
        .unwrap()
    {
        Gated::Denied(decision) => {
            assert!(decision.codes().contains(&"key.purpose_not_bound"));
        }
        Gated::Allowed { .. } => panic!("leased"),
    }
    assert_eq!(t.data.media(face.id).unwrap().unwrap().lease, None);
    // No consent.
    match t
        .vault
        .download_media(bobs.id, PORTRAIT, None, &app)
        .unwrap()
    {
        Gated::Denied(decision) => {
            assert!(
                decision.codes().contains(&"consent.missing"),
                "{decision:?}"
            );
        }
        Gated::Allowed { .. } => panic!("allowed without consent"),
    }
    assert_eq!(t.entries(EventKind::RecordRead).len(), reads_before);
    let decisions = t.entries(EventKind::Decision);
    assert!(
        decisions
            .iter()
            .filter(|e| e.event.outcome.as_deref() == Some("deny"))
            .count()
            >= 4,
        "denials are audited"
    );
    // Allowed reads are audited one by one.
    t.download(face.id, PORTRAIT, None, &app);
    let reads = t.entries(EventKind::RecordRead);
    assert_eq!(reads.len(), reads_before + 1);
    let last = reads.last().unwrap();
    assert_eq!(last.event.record, Some(face.id.to_string()));
    assert_eq!(last.event.purpose.as_deref(), Some(PORTRAIT));
    assert_eq!(last.event.subject, Some(alice.to_string()));
}

#[test]
fn erasure_makes_media_unreadable_and_the_purge_removes_the_files() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let admin = Caller::operator();
    let face = t.upload(alice, FACE, PORTRAIT, &body(100_000, 12), &app);
    let effect = t.upload(alice, EFFECT, PORTRAIT, &body(100_000, 13), &app);
    // Network logs are statutory: kept through an erasure, storage-only.
    let log = t.upload(
        alice,
        "system.operations.network_log",
        "network_log_keeping",
        &body(10_000, 14),
        &admin,
    );
    assert!(log.statutory);
    let held = lease(&t, face.id, PORTRAIT, Duration::from_secs(600), &app);
    assert_eq!(t.object_files().len(), 3);

    assert_eq!(t.vault.shred_subject(alice, "dpo").unwrap(), 1);
    for id in [face.id, effect.id] {
        assert_eq!(
            code(t.vault.download_media(id, PORTRAIT, None, &admin)),
            "media.gone"
        );
        let row = t.data.media(id).unwrap().unwrap();
        assert_eq!(row.state, MediaState::Deleting);
        assert!(row.wrapped_key.is_empty(), "the object key is shredded");
        assert_eq!(row.lease, None);
    }
    assert_eq!(
        code(t.vault.read_leased(face.id, held.id, None, &app)),
        "media.gone"
    );
    assert_eq!(t.object_files().len(), 3, "bytes wait for the purge");

    let report = t.vault.purge_subject(alice, "dpo").unwrap();
    assert_eq!(report.media_deleted, 2);
    assert_eq!(report.statutory_kept, 1);
    assert_eq!(t.object_files(), vec![t.object_file(log.id)]);
    assert_eq!(t.data.media(face.id).unwrap(), None);
    assert_eq!(t.data.media(effect.id).unwrap(), None);
    assert_eq!(
        t.data.media(log.id).unwrap().unwrap().state,
        MediaState::Stored
    );
    // Repeating is harmless.
    let again = t.vault.erase_subject(alice, "dpo").unwrap();
    assert_eq!(again.media_deleted, 0);

    // Shredded but never purged: the sweeper finishes the files.
    let bob = t.subject("bob", &[PORTRAIT]);
    let bobs = t.upload(bob, EFFECT, PORTRAIT, &body(50_000, 15), &app);
    t.vault.shred_subject(bob, "dpo").unwrap();
    let swept = t.sweep();
    assert_eq!(swept.media_finished, 1);
    assert_eq!(t.data.media(bobs.id).unwrap(), None);
    assert_eq!(t.object_files(), vec![t.object_file(log.id)]);
}

#[test]
fn the_sweeper_finishes_what_a_crash_left_behind() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);

    // A deletion that died after its shred commit.
    let left = t.upload(alice, EFFECT, PORTRAIT, &body(80_000, 16), &app);
    t.data
        .commit(WriteBatch {
            mutations: vec![Mutation::UpdateMedia {
                id: left.id,
                update: MediaUpdate {
                    state: Some(MediaState::Deleting),
                    shred: true,
                    ..MediaUpdate::default()
                },
            }],
            audit: Vec::new(),
        })
        .unwrap();

    // A sweep that died after claiming (shred and audit) but before deleting bytes.
    let expired = t.upload(alice, EFFECT, PORTRAIT, &body(80_000, 17), &app);
    t.clock.advance_days(11);
    let claimed = t
        .data
        .claim_expired_media(t.vault.now(), 10, "sweeper")
        .unwrap();
    assert_eq!(claimed.len(), 1, "the deleting object is not claimed again");
    assert_eq!(claimed[0].id, expired.id);
    let live = t.upload(alice, EFFECT, PORTRAIT, &body(80_000, 18), &app);

    // An upload whose process died: a pending row, and the bytes of a put that finished.
    let now = t.vault.now();
    let id = MediaId::ordered(now).unwrap();
    let location = format!("media/{alice}/{id}");
    t.data
        .commit(WriteBatch {
            mutations: vec![Mutation::InsertMedia(MediaRow {
                id,
                subject: alice,
                category: FACE.to_owned(),
                purpose: PORTRAIT.to_owned(),
                key: t.keys.data_keys_of(alice).unwrap()[0].id,
                wrapped_key: vec![1; 61],
                location: location.clone(),
                content_type: "image/jpeg".to_owned(),
                size: 0,
                stored_size: 0,
                state: MediaState::Pending,
                parent: None,
                created_at: now,
                processed_at: None,
                rule: "uploaded-face-images".to_owned(),
                expires_at: None,
                statutory: false,
                lease: None,
                digest: Vec::new(),
            })],
            audit: Vec::new(),
        })
        .unwrap();
    t.objects
        .put(
            &custodia_objects::ObjectKey::new(location.clone()).unwrap(),
            &mut &b"sealed bytes"[..],
        )
        .unwrap();
    assert_eq!(t.object_files().len(), 4);
    assert!(
        t.vault
            .list_media(alice, None)
            .unwrap()
            .iter()
            .all(|m| m.id == live.id),
        "pending and deleting objects are not listed"
    );

    let first = t.sweep();
    assert_eq!(first.media_finished, 2, "the left-over and the claimed");
    assert_eq!(
        first.abandoned_uploads, 0,
        "the upload may still be running"
    );
    assert!(t.data.media(id).unwrap().is_some());
    assert_eq!(t.data.media(left.id).unwrap(), None);
    assert_eq!(t.data.media(expired.id).unwrap(), None);
    assert_eq!(t.object_files().len(), 2);

    t.clock.advance_millis(25 * 3_600_000);
    let second = t.sweep();
    assert_eq!(second.abandoned_uploads, 1);
    assert_eq!(t.data.media(id).unwrap(), None);
    assert_eq!(t.object_files(), vec![t.object_file(live.id)]);
    let abandoned: Vec<_> = t
        .entries(EventKind::MediaDeleted)
        .into_iter()
        .filter(|e| e.event.outcome.as_deref() == Some("abandoned_upload"))
        .collect();
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].event.record, Some(id.to_string()));
    assert_eq!(t.sweep(), SweepReport::default());
}

#[test]
fn a_hold_keeps_a_processed_input_until_released() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let face = t.upload(alice, FACE, PORTRAIT, &body(10_000, 19), &app);
    let hold = t
        .vault
        .place_hold(Some(alice), None, "case 2026-3", None, "dpo")
        .unwrap();
    let held = lease(&t, face.id, PORTRAIT, Duration::from_secs(60), &app);
    let report = t.vault.complete_processing(face.id, held.id, &app).unwrap();
    assert!(report.held && !report.deleted);
    let row = t.data.media(face.id).unwrap().unwrap();
    assert_eq!(row.state, MediaState::Processed);
    assert_eq!(row.processed_at, Some(report.processed_at));
    assert_eq!(row.lease, None);
    let swept = t.sweep();
    assert_eq!((swept.media_deleted, swept.held), (0, 1));
    t.vault.release_hold(hold.id, "dpo").unwrap();
    assert_eq!(t.sweep().media_deleted, 1);
    assert!(t.object_files().is_empty());
}

#[test]
fn no_media_canary_appears_in_any_file() {
    let t = portrait();
    let alice = t.subject("alice", &[PORTRAIT]);
    let app = t.service("portrait-app", &[PORTRAIT]);
    let canary = b"CANARY-MEDIA-BYTES-93c1d7";
    let mut face = Vec::new();
    while face.len() < 3 * CHUNK + 500 {
        face.extend_from_slice(canary);
        face.extend_from_slice(&body(997, face.len() as u64));
    }
    let info = t.upload(alice, FACE, PORTRAIT, &face, &app);
    let effect = t.upload(alice, EFFECT, PORTRAIT, canary, &app);
    let read = t.download(info.id, PORTRAIT, None, &app);
    assert_eq!(read_all(read.reader, CHUNK).unwrap(), face);
    let read = t.download(effect.id, PORTRAIT, None, &app);
    assert_eq!(read_all(read.reader, CHUNK).unwrap(), canary);
    let mut scanned = 0;
    for path in files(&t.data_dir).into_iter().chain(files(&t.objects_dir)) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary),
            "canary found in {}",
            path.display()
        );
        scanned += 1;
    }
    assert!(scanned >= 4, "databases and both objects were scanned");
}
