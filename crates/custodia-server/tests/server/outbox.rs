//! Disclosures over HTTP and the outbox's signed webhooks: a real local receiver gets the erasure
//! notice and the verification code, the signature verifies, a 500 is retried once the (moved)
//! clock says so, acknowledgement settles the notice and lets the request finish; refusals are
//! 403 with their reasons; no payload plaintext reaches the data files or the logs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};

use custodia_core::{Clock, RequestId, SubjectId};
use custodia_server::outbox_worker::{
    ATTEMPT_HEADER, Deliverer, NOTIFICATION_HEADER, SIGNATURE_HEADER, WebhookConfig,
    parse_endpoint, verify,
};
use custodia_server::{ServerOptions, ServerState};
use custodia_store::{Mutation, RequestRow, WriteBatch};
use custodia_vault::outbox::{SUBJECT_CHANNEL, VERIFICATION_CODE};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::app::{Setup, TestApp, backends, each_backend, reasons, spawn_app_setup};

const BUGLY: &str = "Tencent Bugly SDK";
const DEVICE: &str = "user.device.device_id";
const SECRET: &[u8] = b"test-webhook-signing-secret-0001";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny webhook receiver on port 0: records every request and answers each path with the next
/// scripted status (200 once the script runs out).
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<HashMap<String, VecDeque<u16>>>> = Arc::default();
        let (log, answers) = (received.clone(), script.clone());
        // Lives until the test binary ends; each connection is served in turn.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut headers = HashMap::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                    }
                }
                let length: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = answers
                    .lock()
                    .unwrap()
                    .get_mut(&path)
                    .and_then(VecDeque::pop_front)
                    .unwrap_or(200);
                log.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                });
                let mut stream = reader.into_inner();
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        Self {
            addr,
            received,
            script,
        }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        parse_endpoint("test", &format!("http://{}{path}", self.addr)).unwrap()
    }

    fn answer(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

fn webhooks(receiver: &Receiver) -> WebhookConfig {
    WebhookConfig::new(
        BTreeMap::from([(BUGLY.to_owned(), receiver.url("/bugly"))]),
        Some(receiver.url("/sms")),
        Zeroizing::new(SECRET.to_vec()),
    )
    .unwrap()
}

/// Runs one delivery pass, as the schedule would, on a runtime of its own.
fn deliver(
    app: &TestApp,
    config: &WebhookConfig,
) -> custodia_server::outbox_worker::DeliveryReport {
    let state =
        ServerState::new(app.vault.clone(), ServerOptions::default()).with_webhooks(config.clone());
    let deliverer = Deliverer::for_state(&state).unwrap().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(deliverer.run_once())
        .unwrap()
}

/// A request in `waiting_on_recipients`, straight into the store.
fn waiting_request(app: &TestApp, subject: SubjectId) -> RequestRow {
    let now = app.clock.now();
    let row = RequestRow {
        id: RequestId::random().unwrap(),
        subject,
        kind: "erasure".to_owned(),
        state: "waiting_on_recipients".to_owned(),
        law: "PIPL".to_owned(),
        received_at: now,
        acknowledge_by: None,
        due_at: now.plus_millis(15 * 86_400_000),
        original_due_at: None,
        details: Vec::new(),
        flags: Vec::new(),
        verification: None,
        updated_at: now,
        closed_at: None,
        version: 1,
    };
    app.data
        .commit(WriteBatch {
            mutations: vec![Mutation::InsertRequest(row.clone())],
            audit: Vec::new(),
        })
        .unwrap();
    app.data.request(row.id).unwrap().unwrap()
}

fn disclose(app: &TestApp, token: &str, body: Value) -> crate::http::Response {
    app.json("POST", "/v1/disclosures", token, &body)
}

#[test]
fn disclosures_are_recorded_through_the_sharing_gate() {
    each_backend(|app| {
        let s = app.subject();
        let bugly = json!({
            "subject": s, "recipient": BUGLY, "categories": [DEVICE], "purpose": "crash_reporting",
        });
        let recorded = disclose(app, &app.admin, bugly.clone()).expect(201).json();
        assert!(recorded["id"].as_str().unwrap().starts_with("dis_"));
        assert_eq!(recorded["recipient_kind"], "processor");
        assert_eq!(recorded["reasons"], json!(["basis.contract"]));

        let refused = |token: &str, body: Value| {
            let error = disclose(app, token, body).expect_error(403, "gate.denied");
            reasons(&error["details"])
        };
        let mut unknown = bugly.clone();
        unknown["recipient"] = json!("Umeng SDK");
        assert_eq!(
            refused(&app.admin, unknown),
            ["disclosure.unknown_recipient"]
        );
        let phone = json!({
            "subject": s, "recipient": BUGLY, "categories": ["user.contact.phone_number"],
            "purpose": "account",
        });
        assert_eq!(
            refused(&app.admin, phone),
            ["disclosure.not_entitled", "disclosure.purpose_not_served"]
        );
        let mut police = bugly.clone();
        police["recipient_kind"] = json!("authority");
        assert_eq!(
            refused(&app.admin, police),
            [
                "disclosure.recipient_kind_mismatch",
                "disclosure.reference_required"
            ]
        );
        // A service key acts only for the purposes it is bound to.
        let accounts = app.service_key(&["account"]);
        assert_eq!(refused(&accounts, bugly.clone()), ["key.purpose_not_bound"]);
        let crashes = app.service_key(&["crash_reporting"]);
        disclose(app, &crashes, bugly.clone()).expect(201);

        // Strict bodies and clear errors.
        let mut extra = bugly.clone();
        extra["note"] = json!("x");
        disclose(app, &app.admin, extra).expect_error(422, "request.invalid_body");
        let mut country = bugly.clone();
        country["country"] = json!("usa");
        let error = disclose(app, &app.admin, country).expect_error(422, "vault.invalid");
        assert_eq!(error["details"]["field"], "country");
        let mut nobody = bugly.clone();
        nobody["subject"] = json!(SubjectId::random().unwrap().to_string());
        disclose(app, &app.admin, nobody).expect_error(404, "vault.subject_not_found");

        // The log: admin keys only; refusals stored nothing.
        let path = format!("/v1/subjects/{s}/disclosures");
        let log = app.get(&path, &app.admin).expect(200).json();
        assert_eq!(log["disclosures"].as_array().unwrap().len(), 2);
        assert_eq!(log["disclosures"][0]["recipient"], BUGLY);
        app.get(&path, &crashes)
            .expect_error(403, "auth.admin_required");
        let missing = format!("/v1/subjects/{}/disclosures", SubjectId::random().unwrap());
        app.get(&missing, &app.admin)
            .expect_error(404, "vault.subject_not_found");
    });
}

#[test]
fn portrait_faces_are_never_shared_and_authorities_need_their_document() {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/portrait-effects.toml");
    for backend in backends() {
        let mut setup = Setup::new(ServerOptions::default());
        setup.policy = policy.clone();
        let app = spawn_app_setup(&backend, setup);
        let s = app.subject();
        app.consent(&s, "given", &["portrait_effects"]).expect(201);
        let face = json!({
            "subject": s, "recipient": "Affiliates (not named in source)",
            "categories": ["user.content.self_image"], "purpose": "portrait_effects",
        });
        let error = disclose(&app, &app.admin, face).expect_error(403, "gate.denied");
        assert_eq!(
            reasons(&error["details"]),
            [
                "disclosure.never_shared",
                "disclosure.not_entitled",
                "disclosure.purpose_not_served"
            ]
        );
        let mut police = json!({
            "subject": s, "recipient": "Law-enforcement, administrative and judicial authorities",
            "recipient_kind": "authority", "categories": [DEVICE], "purpose": "legal_disclosure",
        });
        let error = disclose(&app, &app.admin, police.clone()).expect_error(403, "gate.denied");
        assert_eq!(
            reasons(&error["details"]),
            ["disclosure.reference_required"]
        );
        police["reference"] = json!("Investigation letter 2026-117");
        let recorded = disclose(&app, &app.admin, police).expect(201).json();
        assert_eq!(recorded["reference"], "Investigation letter 2026-117");
        assert_eq!(recorded["reasons"], json!(["basis.legal_obligation"]));
    }
}

/// A log sink the test can read back.
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

#[test]
fn notices_go_out_signed_are_retried_and_settle_the_request() {
    for backend in backends() {
        let app = spawn_app_setup(&backend, Setup::new(ServerOptions::default()));
        let external_id = "CANARY-WEBHOOK-EXTERNAL-7d3f";
        let code = "CANARY-CODE-318274";
        let s = app.subject_with(json!({ "external_id": external_id }));
        let subject: SubjectId = s.parse().unwrap();
        app.write(&app.admin, &s, DEVICE, "crash_reporting", "android-1")
            .expect(201);
        disclose(
            &app,
            &app.admin,
            json!({
                "subject": s, "recipient": BUGLY, "categories": [DEVICE],
                "purpose": "crash_reporting",
            }),
        )
        .expect(201);
        let request = waiting_request(&app, subject);
        let notices = app.vault.notify_recipients(&request, "test").unwrap();
        assert_eq!(notices.len(), 1);
        let notice = notices[0].id;
        app.vault
            .queue_notification(
                VERIFICATION_CODE,
                Some(request.id),
                subject,
                SUBJECT_CHANNEL,
                &json!({ "code": code }),
                "test",
            )
            .unwrap();
        // The subject is erased before anything is delivered: the notice still goes out.
        app.vault.erase_subject(subject, "test").unwrap();

        let receiver = Receiver::start();
        receiver.answer("/bugly", &[500]);
        let config = webhooks(&receiver);
        let sink = Sink::default();
        let writer = sink.clone();
        let logger = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let report = tracing::subscriber::with_default(logger, || deliver(&app, &config));
        assert_eq!(
            (report.attempted, report.delivered, report.failed),
            (2, 1, 1)
        );
        let now = app.clock.now().as_millis() / 1000;
        let mut got = receiver.take();
        got.sort_by(|a, b| a.path.cmp(&b.path));
        let (bugly, sms) = (&got[0], &got[1]);
        assert_eq!((bugly.path.as_str(), sms.path.as_str()), ("/bugly", "/sms"));
        for one in [bugly, sms] {
            let signature = &one.headers[&SIGNATURE_HEADER.to_ascii_lowercase()];
            assert!(
                verify(SECRET, signature, &one.body, now, 300),
                "{signature}"
            );
            assert!(!verify(
                b"another-secret-of-32-bytes-000000",
                signature,
                &one.body,
                now,
                300
            ));
            assert_eq!(one.headers["content-type"], "application/json");
        }
        let body = bugly.json();
        assert_eq!(body["kind"], "erasure_notice");
        assert_eq!(body["id"], notice.to_string());
        assert_eq!(
            bugly.headers[&NOTIFICATION_HEADER.to_ascii_lowercase()],
            notice.to_string()
        );
        assert_eq!(bugly.headers[&ATTEMPT_HEADER.to_ascii_lowercase()], "1");
        assert_eq!(body["payload"]["external_id"], external_id);
        assert_eq!(body["payload"]["categories"], json!([DEVICE]));
        assert_eq!(sms.json()["payload"]["code"], code);

        // Not due again until the backoff passes; then the receiver takes it.
        assert_eq!(deliver(&app, &config).attempted, 0);
        app.clock.advance_millis(59_000);
        assert_eq!(deliver(&app, &config).attempted, 0);
        app.clock.advance_millis(1_000);
        let report = deliver(&app, &config);
        assert_eq!((report.attempted, report.delivered), (1, 1));
        let retried = receiver.take();
        assert_eq!(retried.len(), 1);
        assert_eq!(
            retried[0].headers[&ATTEMPT_HEADER.to_ascii_lowercase()],
            "2"
        );
        let verified = verify(
            SECRET,
            &retried[0].headers[&SIGNATURE_HEADER.to_ascii_lowercase()],
            &retried[0].body,
            app.clock.now().as_millis() / 1000,
            0,
        );
        assert!(verified, "signed at the moved clock's time");

        // The recipient acknowledges through the operator: the request is fulfilled.
        let service = app.service_key(&["crash_reporting"]);
        let ack = format!("/v1/notifications/{notice}/ack");
        app.raw("POST", &ack, Some(&service), &[], None)
            .expect_error(403, "auth.admin_required");
        assert_eq!(
            app.data.request(request.id).unwrap().unwrap().state,
            "waiting_on_recipients"
        );
        let settled = app
            .raw("POST", &ack, Some(&app.admin), &[], None)
            .expect(200)
            .json();
        assert_eq!(settled["state"], "acknowledged");
        assert_eq!(settled["recipient"], BUGLY);
        assert_eq!(
            app.data.request(request.id).unwrap().unwrap().state,
            "fulfilled"
        );
        app.raw("POST", &ack, Some(&app.admin), &[], None)
            .expect(200);
        let impossible = format!("/v1/notifications/{notice}/impossible");
        app.json(
            "POST",
            &impossible,
            &app.admin,
            &json!({ "reason": "gone" }),
        )
        .expect_error(409, "notification.settled");
        app.json("POST", &impossible, &app.admin, &json!({ "why": "x" }))
            .expect_error(422, "request.invalid_body");
        let unknown = format!(
            "/v1/notifications/{}/ack",
            custodia_core::NotificationId::random().unwrap()
        );
        app.raw("POST", &unknown, Some(&app.admin), &[], None)
            .expect_error(404, "notification.not_found");
        app.raw(
            "POST",
            "/v1/notifications/sub_00/ack",
            Some(&app.admin),
            &[],
            None,
        )
        .expect_error(400, "request.invalid_id");

        // No payload in plaintext: not in the data files, not in the logs.
        let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("webhook.status_500"), "{logs}");
        for canary in [external_id, code] {
            assert!(!logs.contains(canary), "{canary} in the logs");
            assert!(
                !logs.contains(&receiver.addr.to_string()),
                "a URL in the logs"
            );
        }
        if let Some(dir) = app.data_dir() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                for canary in [external_id, code] {
                    assert!(
                        !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                        "{canary} in {}",
                        path.display()
                    );
                }
            }
        }
    }
}
