//! Data-subject requests over HTTP, with a moved clock, under the operators' own policies: each
//! one's rights promises (DeepPiano's export as a zip, rectification and restriction in the gate
//! at once, an erasure that waits on the SDK processor it was shared with, account data kept 90
//! days after a cancellation; Audio Extract Kit's 5-working-day cancellation; Portrait Effects'
//! and Qidian Pixel's access and erasure), deadlines on the official CN calendar, the queue's
//! urgency flags, refusals that change nothing, and no verification code or details anywhere
//! they were not asked for.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodia_core::{Clock, RequestId, SubjectId, Timestamp};
use custodia_objects::{FsObjectStore, ObjectStore};
use custodia_server::ServerOptions;
use custodia_vault::DeliveryOutcome;
use serde_json::{Value, json};

use crate::app::{Backend, Setup, TestApp, backends, reasons, spawn_app_logged};
use crate::http::Response;

const DAY_MS: i64 = 86_400_000;
const BUGLY: &str = "Tencent Bugly SDK";
const DEVICE: &str = "user.device.device_id";
const USERNAME: &str = "user.account.username";
const GENDER: &str = "user.demographic.gender";
const PRACTICE: &str = "user.content.audio_recording.practice";

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file)
}

/// A server under an example policy, with a file-system media store.
struct Dsr {
    app: TestApp,
    _objects: tempfile::TempDir,
}

impl std::ops::Deref for Dsr {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

fn spawn(backend: &Backend, policy: &str, logs: Option<tracing::Dispatch>) -> Dsr {
    let objects = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(FsObjectStore::open(objects.path().join("objects")).unwrap());
    let setup = Setup {
        options: ServerOptions::default(),
        policy: example(policy),
        objects: Some(store),
    };
    Dsr {
        app: spawn_app_logged(backend, setup, logs),
        _objects: objects,
    }
}

/// Runs `case` on a fresh server under `policy` on each backend.
fn each(policy: &str, case: impl Fn(&Dsr)) {
    for backend in backends() {
        case(&spawn(&backend, policy, None));
    }
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

impl Dsr {
    /// Opens a request; 201.
    fn open(&self, subject: &str, kind: &str, details: Value) -> Value {
        self.json(
            "POST",
            "/v1/requests",
            &self.admin,
            &json!({ "subject": subject, "kind": kind, "details": details }),
        )
        .expect(201)
        .json()
    }

    fn post(&self, path: &str, body: &Value) -> Response {
        self.json("POST", path, &self.admin, body)
    }

    fn request(&self, id: &str) -> Value {
        self.get(&format!("/v1/requests/{id}"), &self.admin)
            .expect(200)
            .json()
    }

    fn act(&self, id: &str, body: &Value) -> Response {
        self.post(&format!("/v1/requests/{id}/actions"), body)
    }

    fn send_code(&self, id: &str) -> Value {
        self.raw(
            "POST",
            &format!("/v1/requests/{id}/verification"),
            Some(&self.admin),
            &[],
            None,
        )
        .expect(202)
        .json()
    }

    fn verify(&self, id: &str, code: &str) -> Response {
        self.post(
            &format!("/v1/requests/{id}/verify"),
            &json!({ "code": code }),
        )
    }

    /// The code the outbox holds for request `id` (what the webhook would carry to the
    /// subject), reported delivered.
    fn code(&self, id: &str) -> String {
        let id: RequestId = id.parse().unwrap();
        let mut code = None;
        for outgoing in self
            .vault
            .claim_due_notifications(100, Duration::from_secs(60))
            .unwrap()
        {
            if outgoing.kind == "verification_code" && outgoing.request == Some(id) {
                let payload: Value = serde_json::from_slice(&outgoing.payload).unwrap();
                code = Some(payload["code"].as_str().unwrap().to_owned());
            }
            self.vault
                .record_delivery(outgoing.id, &DeliveryOutcome::Delivered, "webhook")
                .unwrap();
        }
        code.expect("a verification code in the outbox")
    }

    /// Opens a request, sends a code, verifies it with the code from the outbox; returns the id.
    fn verified(&self, subject: &str, kind: &str, details: Value) -> String {
        let opened = self.open(subject, kind, details);
        let id = opened["id"].as_str().unwrap().to_owned();
        assert_eq!(opened["state"], "received");
        let sent = self.send_code(&id);
        assert_eq!(sent["state"], "awaiting_verification");
        let code = self.code(&id);
        let verified = self.verify(&id, &code).expect(200).json();
        assert_eq!(verified["state"], "verified");
        assert_eq!(verified["verification"], Value::Null);
        id
    }

    fn fulfil(&self, id: &str) -> Response {
        self.raw(
            "POST",
            &format!("/v1/requests/{id}/fulfil"),
            Some(&self.admin),
            &[],
            None,
        )
    }

    fn notifications(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/v1/requests/{id}/notifications"), &self.admin)
            .expect(200)
            .json()["notifications"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn allowed(&self, subject: &str, purpose: &str, category: &str) -> (bool, Vec<String>) {
        let decision = self.decide(&self.admin, subject, purpose, &[category]);
        (decision["allowed"].as_bool().unwrap(), reasons(&decision))
    }

    fn sweep(&self) -> Value {
        self.post("/v1/sweeps", &json!({})).expect(200).json()
    }

    fn records(&self, subject: &str, category: &str) -> usize {
        let subject: SubjectId = subject.parse().unwrap();
        self.data.records_of(subject, Some(category)).unwrap().len()
    }

    fn upload(&self, subject: &str, category: &str, purpose: &str, body: &[u8]) -> String {
        self.raw(
            "POST",
            &format!("/v1/subjects/{subject}/media?category={category}&purpose={purpose}"),
            Some(&self.admin),
            &[("Content-Type", "audio/mpeg")],
            Some(body),
        )
        .expect(201)
        .json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The archive's files by name.
fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut files = BTreeMap::new();
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).unwrap();
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        files.insert(file.name().to_owned(), content);
    }
    files
}

/// The manifest, after checking it lists every other file with its size and SHA-256.
fn manifest_of(files: &BTreeMap<String, Vec<u8>>) -> Value {
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(
        listed.len() + 1,
        files.len(),
        "every file is in the manifest"
    );
    for file in listed {
        let name = file["name"].as_str().unwrap();
        let content = files.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            file["bytes"].as_u64().unwrap(),
            content.len() as u64,
            "{name}"
        );
        assert_eq!(
            file["sha256"].as_str().unwrap(),
            sha256_hex(content),
            "{name}"
        );
    }
    manifest
}

/// The zip a fulfilled export answers with, after checking its headers.
fn export_of(response: Response, id: &str) -> BTreeMap<String, Vec<u8>> {
    let response = response.expect(200);
    assert_eq!(response.header("content-type"), Some("application/zip"));
    assert_eq!(
        response.header("content-disposition"),
        Some(format!("attachment; filename=\"custodia-export-{id}.zip\"").as_str())
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
    // Streamed as it is written: its length is not known up front.
    assert_eq!(response.header("content-length"), None);
    unzip(&response.body)
}

// --- DeepPiano ---------------------------------------------------------------------------------

#[test]
fn an_export_names_announced_digests_and_one_that_fails_midway_is_broken_off_and_stays_open() {
    each("deeppiano.toml", |t| {
        let s = t.subject_with(json!({ "external_id": "dp-broken" }));
        t.write(&t.admin, &s, USERNAME, "account", "pianist43")
            .expect(201);
        // Announced: the manifest names the checked digest instead of hashing again (and
        // `manifest_of` proves it is the content's).
        let first = vec![3u8; 700_000];
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &first);
        let announced = format!(
            "sha-256=:{}:",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest.as_ref())
        );
        let first_id = t
            .raw(
                "POST",
                &format!("/v1/subjects/{s}/media?category={PRACTICE}&purpose=cloud_storage"),
                Some(&t.admin),
                &[
                    ("Content-Type", "audio/mpeg"),
                    ("Content-Digest", announced.as_str()),
                ],
                Some(&first),
            )
            .expect(201)
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let second = vec![4u8; 700_000];
        let second_id = t.upload(&s, PRACTICE, "cloud_storage", &second);
        let id = t.verified(&s, "access", json!({}));
        let files = export_of(t.fulfil(&id), &id);
        let manifest = manifest_of(&files);
        assert_eq!(
            manifest["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == format!("media/{first_id}.mp3"))
                .unwrap()["sha256"],
            sha256_hex(&first)
        );
        assert_eq!(files[&format!("media/{second_id}.mp3")], second);

        // The second object altered in storage: the answer has begun (the first object fills
        // frames) when the export fails, so it is broken off, never completed, and the request
        // stays in progress, to be fulfilled again.
        let stored = t
            ._objects
            .path()
            .join("objects")
            .join(format!("media/{s}/{second_id}"));
        let mut bytes = std::fs::read(&stored).unwrap();
        bytes[400_000] ^= 0x01;
        std::fs::write(&stored, &bytes).unwrap();
        let again = t.verified(&s, "access", json!({}));
        let broken = t.fulfil(&again);
        if broken.status == 200 {
            assert!(
                zip::ZipArchive::new(Cursor::new(&broken.body)).is_err(),
                "a broken-off export must not read as a whole archive"
            );
        }
        assert_eq!(t.request(&again)["state"], "in_progress");
        bytes[400_000] ^= 0x01;
        std::fs::write(&stored, &bytes).unwrap();
        let files = export_of(t.fulfil(&again), &again);
        assert_eq!(files[&format!("media/{second_id}.mp3")], second);
        assert_eq!(t.request(&again)["state"], "fulfilled");
    });
}

#[test]
fn deeppiano_access_is_answered_with_a_zip_of_everything_held_by_its_due_date() {
    each("deeppiano.toml", |t| {
        let s = t.subject_with(json!({ "external_id": "dp-access" }));
        for purpose in ["profile", "personalized_recommendations"] {
            t.consent(&s, "given", &[purpose]).expect(201);
        }
        t.write(&t.admin, &s, USERNAME, "account", "pianist42")
            .expect(201);
        t.write(&t.admin, &s, GENDER, "profile", "female")
            .expect(201);
        let audio = vec![7u8; 150_000];
        let media = t.upload(&s, PRACTICE, "cloud_storage", &audio);

        // Received Tue 2026-02-10: 15 working days on the CN calendar, over the Spring Festival
        // and its make-up Saturdays, end with Mon 2026-03-09 (end of day, Beijing time).
        let opened = t.open(&s, "access", json!({}));
        assert_eq!(opened["law"], "PIPL");
        assert_eq!(opened["received_at"], "2026-02-10T09:00:00Z");
        assert_eq!(opened["due_at"], "2026-03-09T15:59:59.999Z");
        assert_eq!(opened["acknowledge_by"], Value::Null);
        assert_eq!(opened["urgency"], "on_track");
        assert_eq!(opened["flags"], json!([]));
        assert!(opened.get("details").is_none(), "{opened}");
        let id = opened["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("req_"));

        // Not verified: not fulfilled.
        t.fulfil(&id)
            .expect_error(409, "request.invalid_transition");
        let sent = t.send_code(&id);
        assert_eq!(sent["verification"]["attempts"], 0);
        assert_eq!(sent["verification"]["locked"], false);
        let code = t.code(&id);
        let wrong = if code == "000000" { "000001" } else { "000000" };
        let error = t
            .verify(&id, wrong)
            .expect_error(422, "request.code_invalid");
        assert_eq!(error["details"]["attempts_left"], 4);
        assert_eq!(t.request(&id)["verification"]["attempts"], 1);
        assert_eq!(t.verify(&id, &code).expect(200).json()["state"], "verified");
        // The code went out through the outbox; its payload is never shown.
        let notices = t.notifications(&id);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0]["kind"], "verification_code");
        assert_eq!(notices[0]["recipient"], "subject");
        assert_eq!(notices[0]["state"], "delivered");
        assert!(notices[0].get("payload").is_none());

        t.clock.advance_days(1);
        let files = export_of(t.fulfil(&id), &id);
        let manifest = manifest_of(&files);
        assert_eq!(manifest["subject"], s.as_str());
        assert_eq!(manifest["counts"]["records"], 2);
        assert_eq!(manifest["counts"]["consents"], 2);
        assert_eq!(manifest["counts"]["media"], 1);
        assert_eq!(manifest["counts"]["media_bytes"], 150_000);
        assert_eq!(files[&format!("media/{media}.mp3")], audio);
        let records = String::from_utf8(files["records.csv"].clone()).unwrap();
        assert!(records.contains("pianist42") && records.contains("female"));
        for name in [
            "consents.json",
            "purposes.json",
            "requests.json",
            "profile.json",
        ] {
            assert!(files.contains_key(name), "{name}");
        }
        let done = t.request(&id);
        assert_eq!(done["state"], "fulfilled");
        assert_eq!(done["urgency"], Value::Null);
        assert_eq!(done["closed_at"], "2026-02-11T09:00:00Z");
        // Once: a second fulfilment is refused and writes nothing.
        let error = t.fulfil(&id).expect_error(409, "request.already_closed");
        assert_eq!(error["details"]["state"], "fulfilled");
        // Copy and portability are answered the same way.
        for kind in ["copy", "portability"] {
            let id = t.verified(&s, kind, json!({}));
            let files = export_of(t.fulfil(&id), &id);
            assert_eq!(manifest_of(&files)["counts"]["media"], 1);
        }
    });
}

#[test]
fn rectification_and_restriction_take_effect_in_the_gate_at_once() {
    each("deeppiano.toml", |t| {
        let s = t.subject();
        t.consent(&s, "given", &["profile"]).expect(201);
        let gender = t
            .write(&t.admin, &s, GENDER, "profile", "female")
            .expect(201)
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(t.allowed(&s, "profile", GENDER).0);

        // The corrected birth date makes the subject 10, under DeepPiano's guardian age (14).
        let id = t.verified(
            &s,
            "rectification",
            json!({
                "profile": { "birth_date": "2016-01-01" },
                "records": [{ "id": gender, "value": "male" }],
            }),
        );
        assert!(t.allowed(&s, "profile", GENDER).0, "nothing changes before");
        let report = t.fulfil(&id).expect(200).json();
        assert_eq!(report["request"]["state"], "fulfilled");
        assert_eq!(
            report["rectified"],
            json!(["profile.birth_date", gender.as_str()])
        );
        let (allowed, codes) = t.allowed(&s, "profile", GENDER);
        assert!(!allowed);
        assert!(
            codes.contains(&"minor.guardian_consent_required".to_owned()),
            "{codes:?}"
        );
        let profile = t
            .get(&format!("/v1/subjects/{s}"), &t.admin)
            .expect(200)
            .json();
        assert_eq!(profile["profile"]["birth_date"], "2016-01-01");

        // Restriction: even a contract purpose is refused at once.
        let adult = t.subject();
        assert!(t.allowed(&adult, "account", USERNAME).0);
        let id = t.verified(
            &adult,
            "restriction",
            json!({ "reason": "accuracy disputed" }),
        );
        assert!(t.allowed(&adult, "account", USERNAME).0);
        let report = t.fulfil(&id).expect(200).json();
        assert_eq!(report["consent_events"].as_array().unwrap().len(), 1);
        let (allowed, codes) = t.allowed(&adult, "account", USERNAME);
        assert!(!allowed);
        assert!(
            codes.contains(&"subject.restricted".to_owned()),
            "{codes:?}"
        );
        // A restricted subject still gets its export: access is a right, not a purpose.
        let id = t.verified(&adult, "access", json!({}));
        export_of(t.fulfil(&id), &id);
    });
}

#[test]
fn an_erasure_waits_on_the_sdk_processor_until_it_acknowledges() {
    each("deeppiano.toml", |t| {
        let s = t.subject_with(json!({ "external_id": "dp-shared" }));
        t.write(&t.admin, &s, DEVICE, "crash_reporting", "android-1234")
            .expect(201);
        t.post(
            "/v1/disclosures",
            &json!({
                "subject": s, "recipient": BUGLY, "categories": [DEVICE],
                "purpose": "crash_reporting",
            }),
        )
        .expect(201);
        let id = t.verified(&s, "erasure", json!({}));
        t.clock.advance_days(1);
        let report = t.fulfil(&id).expect(200).json();
        assert_eq!(report["request"]["state"], "waiting_on_recipients");
        assert_eq!(report["request"]["closed_at"], Value::Null);
        assert_eq!(report["keys_destroyed"], 1);
        let notice = report["notices"][0].as_str().unwrap().to_owned();
        assert_eq!(report["notices"].as_array().unwrap().len(), 1);
        let subject = t
            .get(&format!("/v1/subjects/{s}"), &t.admin)
            .expect(200)
            .json();
        assert!(subject["erased_at"].is_string(), "{subject}");

        // The queue shows the notice outstanding; the request stays open.
        let notices = t.notifications(&id);
        let erasure = notices
            .iter()
            .find(|n| n["kind"] == "erasure_notice")
            .unwrap();
        assert_eq!(erasure["id"], notice.as_str());
        assert_eq!(erasure["recipient"], BUGLY);
        assert_eq!(erasure["state"], "pending");
        let open = t.get("/v1/requests?open=true", &t.admin).expect(200).json();
        assert_eq!(open["requests"][0]["id"], id.as_str());
        t.fulfil(&id)
            .expect_error(409, "request.invalid_transition");

        // The processor acknowledges (through the operator): the erasure is complete.
        t.clock.advance_days(2);
        t.raw(
            "POST",
            &format!("/v1/notifications/{notice}/ack"),
            Some(&t.admin),
            &[],
            None,
        )
        .expect(200);
        let done = t.request(&id);
        assert_eq!(done["state"], "fulfilled");
        assert_eq!(done["closed_at"], "2026-02-13T09:00:00Z");
        let notices = t.notifications(&id);
        assert!(notices.iter().any(|n| n["state"] == "acknowledged"));
        // Its details went with the subject's key.
        let shown = t
            .get(&format!("/v1/requests/{id}?details=true"), &t.admin)
            .expect(200)
            .json();
        assert_eq!(shown["details"], Value::Null);
    });
}

#[test]
fn deeppiano_keeps_account_data_90_days_after_a_cancellation_then_sweeps_it() {
    each("deeppiano.toml", |t| {
        let s = t.subject();
        t.consent(&s, "given", &["profile"]).expect(201);
        t.write(&t.admin, &s, USERNAME, "account", "leaving")
            .expect(201);
        t.write(&t.admin, &s, GENDER, "profile", "female")
            .expect(201);
        let id = t.verified(&s, "account_cancellation", json!({}));
        let report = t.fulfil(&id).expect(200).json();
        assert_eq!(report["request"]["state"], "fulfilled");
        assert_eq!(report["notices"], json!([]));
        let subject = t
            .get(&format!("/v1/subjects/{s}"), &t.admin)
            .expect(200)
            .json();
        let closed_at = at(subject["closed_at"].as_str().unwrap());

        t.clock.set(closed_at.plus_millis(89 * DAY_MS));
        t.sweep();
        assert_eq!(t.records(&s, USERNAME), 1);
        t.clock.set(closed_at.plus_millis(91 * DAY_MS));
        t.sweep();
        assert_eq!(t.records(&s, USERNAME), 0);
        assert_eq!(t.records(&s, GENDER), 0);
    });
}

#[test]
fn a_gdpr_request_is_extended_with_a_notice_and_pipl_allows_none() {
    each("deeppiano.toml", |t| {
        let eu = t.subject_with(json!({ "jurisdiction": "DE" }));
        let opened = t.open(&eu, "access", json!({}));
        assert_eq!(opened["law"], "GDPR");
        let id = opened["id"].as_str().unwrap().to_owned();
        // Identity verified another way (a signed-in session).
        let verified = t
            .act(&id, &json!({ "action": "verify" }))
            .expect(200)
            .json();
        assert_eq!(verified["state"], "verified");
        t.act(&id, &json!({ "action": "extend" }))
            .expect_error(422, "request.notice_required");
        let extended = t
            .act(
                &id,
                &json!({ "action": "extend", "notice": "complex request, answer by May" }),
            )
            .expect(200)
            .json();
        assert_eq!(extended["state"], "extended");
        assert_eq!(extended["original_due_at"], "2026-03-09T15:59:59.999Z");
        assert!(
            at(extended["due_at"].as_str().unwrap()) > at("2026-05-01T00:00:00Z"),
            "{extended}"
        );
        let notices = t.notifications(&id);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0]["kind"], "extension_notice");
        // Only once.
        t.act(&id, &json!({ "action": "extend", "notice": "again" }))
            .expect_error(409, "request.invalid_transition");
        // The notice is sealed with the request: shown only when asked.
        let plain = t.request(&id);
        assert!(plain.get("details").is_none());
        let shown = t
            .get(&format!("/v1/requests/{id}?details=true"), &t.admin)
            .expect(200)
            .json();
        assert_eq!(
            shown["details"]["extension_notice"],
            "complex request, answer by May"
        );

        let cn = t.subject();
        let id = t.open(&cn, "access", json!({}))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        t.act(&id, &json!({ "action": "verify" })).expect(200);
        t.act(&id, &json!({ "action": "extend", "notice": "busy" }))
            .expect_error(422, "deadline.not_extendable");
        assert_eq!(t.request(&id)["state"], "verified");
    });
}

// --- the other operators -----------------------------------------------------------------------

#[test]
fn audio_extract_kit_completes_a_cancellation_within_5_working_days() {
    each("audio-extract-kit.toml", |t| {
        let s = t.subject();
        t.write(&t.admin, &s, "user.name", "account", "Li Wei")
            .expect(201);
        t.write(
            &t.admin,
            &s,
            "system.operations.network_log",
            "server_communication",
            "GET /extract 200",
        )
        .expect(201);
        // Wed 11, Thu 12, Fri 13, the make-up Sat 14, then the holiday until Tue 24.
        let opened = t.open(&s, "account_cancellation", json!({}));
        assert_eq!(opened["due_at"], "2026-02-24T15:59:59.999Z");
        let id = opened["id"].as_str().unwrap().to_owned();
        t.send_code(&id);
        let code = t.code(&id);
        t.verify(&id, &code).expect(200);
        t.clock.advance_days(1);
        let report = t.fulfil(&id).expect(200).json();
        assert_eq!(report["request"]["state"], "fulfilled");
        assert!(
            at(report["request"]["closed_at"].as_str().unwrap()) < at("2026-02-24T15:59:59.999Z")
        );
        // The next sweep removes all but the statutory network log, kept storage-only.
        t.sweep();
        assert_eq!(t.records(&s, "user.name"), 0);
        assert_eq!(t.records(&s, "system.operations.network_log"), 1);
        // Audio Extract Kit offers no restriction.
        t.post(
            "/v1/requests",
            &json!({ "subject": s, "kind": "restriction" }),
        )
        .expect_error(422, "request.not_offered");
    });
}

#[test]
fn portrait_effects_and_qidian_pixel_answer_access_and_erasure() {
    for (policy, category, purpose, value) in [
        (
            "portrait-effects.toml",
            DEVICE,
            "account_security",
            "ios-77",
        ),
        (
            "qidian-pixel.toml",
            USERNAME,
            "account_management",
            "pixel-artist",
        ),
    ] {
        each(policy, |t| {
            let s = t.subject();
            t.write(&t.admin, &s, category, purpose, value).expect(201);
            let id = t.verified(&s, "access", json!({}));
            let request = t.request(&id);
            assert_eq!(request["due_at"], "2026-03-09T15:59:59.999Z", "{policy}");
            let files = export_of(t.fulfil(&id), &id);
            assert_eq!(manifest_of(&files)["counts"]["records"], 1, "{policy}");
            let records: Value = serde_json::from_slice(&files["records.json"]).unwrap();
            assert_eq!(records[0]["value"], value, "{policy}");

            let id = t.verified(&s, "erasure", json!({}));
            let report = t.fulfil(&id).expect(200).json();
            assert_eq!(report["request"]["state"], "fulfilled", "{policy}");
            assert_eq!(report["keys_destroyed"], 1, "{policy}");
            let subject = t
                .get(&format!("/v1/subjects/{s}"), &t.admin)
                .expect(200)
                .json();
            assert!(subject["erased_at"].is_string(), "{policy}: {subject}");
            assert_eq!(subject["profile"], Value::Null, "{policy}");
            // Nothing left to export.
            t.post("/v1/requests", &json!({ "subject": s, "kind": "access" }))
                .expect_error(410, "vault.subject_erased");
        });
    }
}

// --- the queue ---------------------------------------------------------------------------------

fn ids(list: &Value) -> Vec<String> {
    list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_queue_shows_due_dates_and_flags_what_is_overdue_or_due_soon() {
    each("deeppiano.toml", |t| {
        let (s1, s2) = (t.subject(), t.subject());
        let first = t.open(&s1, "access", json!({}))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        t.clock.set(at("2026-02-20T02:00:00Z"));
        let second = t.open(&s2, "erasure", json!({}));
        assert!(at(second["due_at"].as_str().unwrap()) > at("2026-03-10T00:00:00Z"));
        let second = second["id"].as_str().unwrap().to_owned();

        let list = |query: &str| {
            t.get(&format!("/v1/requests{query}"), &t.admin)
                .expect(200)
                .json()
        };
        let all = list("");
        assert_eq!(
            ids(&all),
            [first.as_str(), second.as_str()],
            "earliest due first"
        );
        assert_eq!(all["requests"][0]["urgency"], "on_track");

        // Two days left on the first: due soon; the second is not due within 3 days.
        t.clock.set(at("2026-03-07T00:00:00Z"));
        let soon = list("?due_within_days=3");
        assert_eq!(ids(&soon), [first.as_str()]);
        assert_eq!(soon["requests"][0]["urgency"], "due_soon");
        assert_eq!(soon["requests"][0]["days_left"], 2);
        assert_eq!(
            ids(&list("?due_before=2026-03-10T00:00:00Z")),
            [first.as_str()]
        );
        assert_eq!(ids(&list(&format!("?subject={s2}"))), [second.as_str()]);
        assert_eq!(ids(&list("?limit=1")), [first.as_str()]);

        // Past its due instant: overdue.
        t.clock.set(at("2026-03-10T00:00:00Z"));
        let overdue = list("?open=true");
        assert_eq!(overdue["requests"][0]["urgency"], "overdue");
        assert_eq!(overdue["requests"][0]["days_left"], Value::Null);
        assert_eq!(ids(&list("?due_within_days=0")), [first.as_str()]);

        let rejected = t
            .act(
                &second,
                &json!({ "action": "reject", "reason": "identity not verified" }),
            )
            .expect(200)
            .json();
        assert_eq!(rejected["state"], "rejected");
        assert_eq!(rejected["urgency"], Value::Null);
        assert_eq!(ids(&list("?open=true")), [first.as_str()]);
        assert_eq!(ids(&list("?status=rejected")), [second.as_str()]);
        assert_eq!(ids(&list("?status=received&open=true")), [first.as_str()]);

        // Bad queries.
        for query in [
            "?status=lost",
            "?due_before=2026-03-10",
            "?limit=0",
            "?subject=nobody",
            "?open=maybe",
            "?page=2",
        ] {
            t.get(&format!("/v1/requests{query}"), &t.admin)
                .expect_error(400, "request.invalid_query");
        }
    });
}

// --- refusals ----------------------------------------------------------------------------------

#[test]
fn bad_input_is_refused_with_stable_codes_and_changes_nothing() {
    each("deeppiano.toml", |t| {
        let s = t.subject();
        let service = t.service_key(&["account"]);
        let head = t.audit_len();
        let open = |body: Value| t.post("/v1/requests", &body);
        let error = open(json!({ "subject": s, "kind": "telepathy" }))
            .expect_error(422, "request.invalid_body");
        assert_eq!(error["details"]["field"], "kind");
        let error = open(json!({ "subject": s, "kind": "access", "priority": "high" }))
            .expect_error(422, "request.invalid_body");
        assert_eq!(error["details"]["field"], "priority");
        // DeepPiano offers no explanation of automated decisions.
        let error = open(json!({ "subject": s, "kind": "explanation" }))
            .expect_error(422, "request.not_offered");
        assert_eq!(error["details"]["kind"], "explanation");
        open(json!({ "subject": s, "kind": "rectification", "details": {} }))
            .expect_error(422, "request.invalid_details");
        open(json!({ "subject": s, "kind": "access", "details": [1] }))
            .expect_error(422, "request.invalid_details");
        open(json!({ "subject": s, "kind": "consent_withdrawal", "details": { "purposes": ["nope"] } }))
            .expect_error(422, "vault.unknown_purpose");
        open(json!({ "subject": SubjectId::random().unwrap().to_string(), "kind": "access" }))
            .expect_error(404, "vault.subject_not_found");
        t.raw(
            "POST",
            "/v1/requests",
            Some(&t.admin),
            &[("Content-Type", "application/json")],
            Some(b"{\"subject\":"),
        )
        .expect_error(400, "request.malformed_json");
        t.json(
            "POST",
            "/v1/requests",
            &service,
            &json!({ "subject": s, "kind": "access" }),
        )
        .expect_error(403, "auth.admin_required");
        t.get("/v1/requests", &service)
            .expect_error(403, "auth.admin_required");
        // A due date in a year whose calendar is not published is an error, not a guess.
        let now = t.clock.now();
        t.clock.set(at("2026-12-20T02:00:00Z"));
        open(json!({ "subject": s, "kind": "access" }))
            .expect_error(422, "calendar.year_not_published");
        t.clock.set(now);
        assert_eq!(t.audit_len(), head, "refusals wrote nothing");
        assert!(ids(&t.get("/v1/requests", &t.admin).expect(200).json()).is_empty());

        // Ids and transitions.
        let missing = RequestId::random().unwrap();
        let error = t
            .get(&format!("/v1/requests/{missing}"), &t.admin)
            .expect_error(404, "request.not_found");
        assert_eq!(error["details"]["request"], missing.to_string());
        t.get("/v1/requests/sub_0", &t.admin)
            .expect_error(400, "request.invalid_id");
        t.fulfil(&missing.to_string())
            .expect_error(404, "request.not_found");
        let id = t.open(&s, "erasure", json!({}))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let head = t.audit_len();
        let error = t
            .act(&id, &json!({ "action": "start" }))
            .expect_error(409, "request.invalid_transition");
        assert_eq!(
            (
                error["details"]["from"].as_str(),
                error["details"]["to"].as_str()
            ),
            (Some("received"), Some("in_progress"))
        );
        t.act(&id, &json!({ "action": "reject" }))
            .expect_error(422, "request.reason_required");
        t.act(
            &id,
            &json!({ "action": "reject", "notice": "x", "reason": "y" }),
        )
        .expect_error(422, "request.invalid_body");
        t.act(&id, &json!({ "action": "fulfil" }))
            .expect_error(422, "request.invalid_body");
        t.verify(&id, "123456")
            .expect_error(409, "request.no_code_pending");
        t.fulfil(&id)
            .expect_error(409, "request.invalid_transition");
        assert_eq!(t.audit_len(), head, "refusals wrote nothing");
        assert_eq!(t.request(&id)["state"], "received");
        assert_eq!(t.request(&id)["version"], 0);

        // Codes: a wrong shape counts like a wrong code; five wrong tries lock it; a locked or
        // expired code is replaced by sending a new one.
        t.send_code(&id);
        let code = t.code(&id);
        t.post(
            &format!("/v1/requests/{id}/verify"),
            &json!({ "code": 123_456 }),
        )
        .expect_error(422, "request.invalid_body");
        for left in (1..=4).rev() {
            let error = t
                .verify(&id, "12x")
                .expect_error(422, "request.code_invalid");
            assert_eq!(error["details"]["attempts_left"], left);
        }
        t.verify(&id, "12x")
            .expect_error(423, "request.verification_locked");
        t.verify(&id, &code)
            .expect_error(423, "request.verification_locked");
        assert_eq!(t.request(&id)["verification"]["locked"], true);
        t.send_code(&id);
        let code = t.code(&id);
        t.clock.advance_millis(16 * 60 * 1000);
        t.verify(&id, &code)
            .expect_error(410, "request.code_expired");
        t.send_code(&id);
        let code = t.code(&id);
        t.verify(&id, &code).expect(200);
        let error = t
            .act(
                &id,
                &json!({ "action": "reject", "reason": "manifestly excessive" }),
            )
            .expect(200)
            .json();
        assert_eq!(error["state"], "rejected");
        t.act(&id, &json!({ "action": "start" }))
            .expect_error(409, "request.already_closed");
        t.raw(
            "POST",
            &format!("/v1/requests/{id}/verification"),
            Some(&t.admin),
            &[],
            None,
        )
        .expect_error(409, "request.already_closed");
    });
}

// --- canary ------------------------------------------------------------------------------------

/// A log sink the test reads back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Whether `code` appears as a whole run of digits (not inside a longer number).
fn contains_code(haystack: &[u8], code: &str) -> bool {
    let digit = |at: Option<&u8>| at.is_some_and(u8::is_ascii_digit);
    haystack
        .windows(code.len())
        .enumerate()
        .any(|(start, window)| {
            window == code.as_bytes()
                && !digit(start.checked_sub(1).and_then(|i| haystack.get(i)))
                && !digit(haystack.get(start + code.len()))
        })
}

/// Every file's bytes under `dir`.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[test]
fn no_code_or_details_appear_in_logs_responses_audit_or_files_unless_asked() {
    // With a single live dispatcher, tracing-core computes a callsite's interest from the
    // registering thread's default: another test's server thread, logging nowhere, would then
    // turn the request log's callsite off for good. A second live dispatcher makes it ask all.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let sink = Sink::default();
    let writer = sink.clone();
    let logs = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let t = spawn(&Backend::Sqlite, "deeppiano.toml", Some(logs));
    let reason = "CANARY-DETAILS-REASON-5a1c";
    let rejection = "CANARY-REJECTION-77e0";
    let s = t.subject();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut keep = |response: Response| {
        answers.push(response.body.clone());
        response
    };
    let opened = keep(t.post(
        "/v1/requests",
        &json!({ "subject": s, "kind": "restriction", "details": { "reason": reason } }),
    ))
    .expect(201)
    .json();
    let id = opened["id"].as_str().unwrap().to_owned();
    keep(t.raw(
        "POST",
        &format!("/v1/requests/{id}/verification"),
        Some(&t.admin),
        &[],
        None,
    ))
    .expect(202);
    let code = t.code(&id);
    keep(t.verify(&id, "999999x")).expect_error(422, "request.code_invalid");
    keep(t.verify(&id, &code)).expect(200);
    keep(t.get(&format!("/v1/requests/{id}"), &t.admin)).expect(200);
    keep(t.get("/v1/requests", &t.admin)).expect(200);
    keep(t.get(&format!("/v1/requests/{id}/notifications"), &t.admin)).expect(200);
    keep(t.act(&id, &json!({ "action": "reject", "reason": rejection }))).expect(200);
    // Asked for: the details, and nothing else, carry the texts.
    let shown = t
        .get(&format!("/v1/requests/{id}?details=true"), &t.admin)
        .expect(200)
        .json();
    assert_eq!(shown["details"]["asked"]["reason"], reason);
    assert_eq!(shown["details"]["rejection"], rejection);
    assert!(!contains_code(shown.to_string().as_bytes(), &code));

    let entries = t.data.audit_entries(1, 1_000_000).unwrap();
    let audit = serde_json::to_vec(&entries.iter().map(|e| &e.event).collect::<Vec<_>>()).unwrap();
    let files = files_under(&t.data_dir().unwrap());
    drop(t);
    let logged = sink.0.lock().unwrap().clone();
    assert!(
        contains(&logged, "/v1/requests/{id}/verify"),
        "the log works: {}",
        String::from_utf8_lossy(&logged)
    );
    for (i, answer) in answers.iter().enumerate() {
        assert!(!contains_code(answer, &code), "answer {i} carries the code");
    }
    assert!(!contains_code(&logged, &code), "the log carries the code");
    assert!(!contains_code(&audit, &code), "the audit carries the code");
    for canary in [reason, rejection] {
        for (i, answer) in answers.iter().enumerate() {
            assert!(!contains(answer, canary), "answer {i} carries {canary}");
        }
        assert!(!contains(&logged, canary), "the log carries {canary}");
        assert!(!contains(&audit, canary), "the audit carries {canary}");
    }
    for canary in [reason, rejection] {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, canary),
                "{} carries {canary}",
                path.display()
            );
        }
    }
}
