//! Data-subject requests end to end, with a moved clock, on SQLite and a file-system object
//! store: every right of DeepPiano and Audio Extract Kit (open → verify with the code taken from
//! the outbox → fulfil), deadlines on the official CN calendar, codes that expire and lock, a
//! fulfilment race, rectification and restriction in the gate at once, random holdings that all
//! appear in the export, and an erasure that waits on the SDK processor it was shared with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custodia_audit::EventKind;
use custodia_core::{ManualClock, RequestId, SubjectId, Timestamp};
use custodia_objects::{FsObjectStore, ObjectStore};
use custodia_policy::CheckedPolicy;
use custodia_requests::{Action, RequestKind, RequestState, Urgency};
use custodia_store::{ConsentEventKind, DataStore, KeyStore};
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{
    Ask, Caller, DeliveryOutcome, FulfilmentReport, Gated, NewConsent, NewDisclosure, NewMedia,
    NewRecord, RecipientKind, RequestQuery, RequestView, Vault, VaultError,
};
use serde_json::{Value, json};

use crate::backends::{root, start};

const DAY_MS: i64 = 86_400_000;

/// A vault under an example policy, with its media store.
struct Dsr {
    vault: Arc<Vault>,
    clock: ManualClock,
    data: Arc<dyn DataStore>,
    dir: PathBuf,
    _temp: tempfile::TempDir,
}

fn example_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file)
}

fn open_checked(policy: CheckedPolicy) -> Dsr {
    assert!(policy.is_clean(), "{:#?}", policy.findings);
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    let (data, keys) = SqliteStores::open(&dir.join("data")).unwrap();
    let data: Arc<dyn DataStore> = Arc::new(data);
    let keys: Arc<dyn KeyStore> = Arc::new(keys);
    let clock = ManualClock::new(start());
    let objects: Arc<dyn ObjectStore> = Arc::new(FsObjectStore::open(dir.join("objects")).unwrap());
    let vault = Vault::open(
        data.clone(),
        keys.clone(),
        policy,
        Arc::new(clock.clone()),
        &root(),
    )
    .unwrap()
    .with_media_store(objects);
    Dsr {
        vault: Arc::new(vault),
        clock,
        data,
        dir,
        _temp: temp,
    }
}

fn open(file: &str) -> Dsr {
    open_checked(custodia_policy::load(&example_path(file)).unwrap())
}

fn deeppiano() -> Dsr {
    open("deeppiano.toml")
}

fn audio_extract_kit() -> Dsr {
    open("audio-extract-kit.toml")
}

/// DeepPiano, also offering explanations, with personalised recommendations as an automated
/// decision.
fn deeppiano_with_explanations() -> Dsr {
    let text = std::fs::read_to_string(example_path("deeppiano.toml")).unwrap();
    let offered = "  \"complaint\",\n]";
    assert!(text.contains(offered));
    let text = text.replacen(offered, "  \"complaint\",\n  \"explanation\",\n]", 1);
    let key = "key = \"personalized_recommendations\"\n";
    assert!(text.contains(key));
    let text = text.replacen(key, &format!("{key}automated_decision = true\n"), 1);
    let source = custodia_policy::Source::new("deeppiano-explanations.toml", text);
    open_checked(CheckedPolicy::from_source(source).unwrap())
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn operator() -> Caller {
    Caller::operator()
}

impl Dsr {
    /// A subject in `jurisdiction` who consented to `purposes`.
    fn person(&self, external: &str, jurisdiction: &str, purposes: &[&str]) -> SubjectId {
        let subject = self
            .vault
            .create_subject(
                &custodia_vault::NewSubject {
                    external_id: external.to_owned(),
                    jurisdiction: jurisdiction.to_owned(),
                    birth_date: Some("1990-04-01".to_owned()),
                    age_band: None,
                    guardian: None,
                },
                "test",
            )
            .unwrap()
            .id;
        for purpose in purposes {
            self.consent(subject, purpose, ConsentEventKind::Given);
        }
        subject
    }

    fn consent(&self, subject: SubjectId, purpose: &str, kind: ConsentEventKind) {
        self.vault
            .record_consent(
                subject,
                &NewConsent {
                    purposes: vec![purpose.to_owned()],
                    kind,
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

    fn write(&self, subject: SubjectId, category: &str, purpose: &str, value: &[u8]) -> String {
        self.vault
            .write_records(
                subject,
                &[NewRecord {
                    category,
                    purpose,
                    value,
                }],
                "test",
            )
            .unwrap()
            .remove(0)
            .id
            .to_string()
    }

    fn upload(&self, subject: SubjectId, category: &str, purpose: &str, body: &[u8]) -> String {
        self.vault
            .upload_media(
                subject,
                &NewMedia {
                    category,
                    purpose,
                    content_type: "audio/mpeg",
                    expected_len: Some(body.len() as u64),
                    expected_sha256: None,
                },
                &mut &body[..],
                &operator(),
            )
            .unwrap()
            .id
            .to_string()
    }

    fn disclose(&self, subject: SubjectId, recipient: &str, categories: &[&str], purpose: &str) {
        let gated = self
            .vault
            .record_disclosure(
                subject,
                &NewDisclosure {
                    recipient: recipient.to_owned(),
                    recipient_kind: RecipientKind::Processor,
                    categories: categories.iter().map(|c| (*c).to_owned()).collect(),
                    purpose: purpose.to_owned(),
                    reference: None,
                    country: None,
                    mechanism: None,
                },
                &operator(),
            )
            .unwrap();
        assert!(matches!(gated, Gated::Allowed { .. }), "{gated:?}");
    }

    fn allowed(&self, subject: SubjectId, purpose: &str, category: &str) -> (bool, Vec<String>) {
        let decision = self
            .vault
            .decide(
                &Ask {
                    subject,
                    purpose: purpose.to_owned(),
                    categories: vec![category.to_owned()],
                },
                &operator(),
            )
            .unwrap();
        let codes = decision.codes().iter().map(|c| (*c).to_owned()).collect();
        (decision.allowed, codes)
    }

    fn open_request(&self, subject: SubjectId, kind: RequestKind, details: Value) -> RequestView {
        self.vault
            .open_request(subject, kind, details, "privacy-centre")
            .unwrap()
    }

    /// The verification code the outbox holds for `request` (what the delivery worker sends),
    /// reported delivered so it is not claimed again.
    fn code(&self, request: RequestId) -> String {
        let claimed = self
            .vault
            .claim_due_notifications(100, Duration::from_secs(60))
            .unwrap();
        let mut code = None;
        for outgoing in claimed {
            if outgoing.kind == "verification_code" && outgoing.request == Some(request) {
                let payload: Value = serde_json::from_slice(&outgoing.payload).unwrap();
                assert_eq!(payload["request"], request.to_string());
                code = Some(payload["code"].as_str().unwrap().to_owned());
            }
            self.vault
                .record_delivery(outgoing.id, &DeliveryOutcome::Delivered, "deliverer")
                .unwrap();
        }
        code.expect("a verification code in the outbox")
    }

    /// Opens a request, sends a code, verifies it with the code from the outbox.
    fn verified(&self, subject: SubjectId, kind: RequestKind, details: Value) -> RequestView {
        let opened = self.open_request(subject, kind, details);
        assert_eq!(opened.state, RequestState::Received);
        let sent = self.vault.send_verification(opened.id, "operator").unwrap();
        assert_eq!(sent.state, RequestState::AwaitingVerification);
        let code = self.code(opened.id);
        self.clock.advance_millis(60_000);
        let verified = self
            .vault
            .verify_request(opened.id, &code, "privacy-centre")
            .unwrap();
        assert_eq!(verified.state, RequestState::Verified);
        assert!(verified.verification.is_none());
        verified
    }

    fn fulfil(&self, request: RequestId) -> FulfilmentReport {
        self.vault.fulfil_request(request, "operator").unwrap()
    }

    fn export(&self, request: RequestId) -> (FulfilmentReport, Vec<u8>) {
        let mut out = Cursor::new(Vec::new());
        let report = self
            .vault
            .fulfil_export_request(request, &mut out, "operator")
            .unwrap();
        (report, out.into_inner())
    }

    fn entries(&self) -> Vec<custodia_audit::AuditEntry> {
        let entries = self.data.audit_entries(1, 1_000_000).unwrap();
        custodia_audit::verify(&entries).unwrap();
        entries
    }

    fn sweep(&self) {
        self.vault
            .sweep(false, 100, "sweeper", &mut |_: u64, _: u64| {})
            .unwrap();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
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

/// Checks the manifest against the files: every file listed with its size and SHA-256, and
/// nothing else in the archive. Returns the manifest.
fn check_manifest(files: &BTreeMap<String, Vec<u8>>) -> Value {
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

fn json_of(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Value {
    serde_json::from_slice(&files[name]).unwrap()
}

/// Every token of every audit entry (split on anything not alphanumeric).
fn audit_tokens(entries: &[custodia_audit::AuditEntry]) -> BTreeSet<String> {
    let mut tokens = BTreeSet::new();
    for entry in entries {
        let text = serde_json::to_string(&entry.event).unwrap();
        for token in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            tokens.insert(token.to_owned());
        }
    }
    tokens
}

// --- deadlines ---------------------------------------------------------------------------------

#[test]
fn deadlines_count_working_days_on_the_official_cn_calendar() {
    let dp = deeppiano();
    // Received Tue 2026-02-10 09:00 UTC (17:00 in Beijing): 15 working days on the CN calendar,
    // over the Spring Festival with its make-up Saturdays, end on Mon 2026-03-09, end of day
    // UTC+8.
    let subject = dp.person("cn-user", "CN", &[]);
    let request = dp.open_request(subject, RequestKind::Access, json!({}));
    assert_eq!(request.law, custodia_policy::model::Law::Pipl);
    assert_eq!(request.received_at, start());
    assert_eq!(request.due_at, at("2026-03-09T15:59:59.999Z"));
    assert_eq!(request.acknowledge_by, None);
    assert!(request.flags.is_empty());

    // An EU user of the same operator: GDPR's one month (2026-03-10, UTC) is later than the
    // policy's promise, so the promise stands.
    let eu = dp.person("eu-user", "DE", &[]);
    let request = dp.open_request(eu, RequestKind::Erasure, json!({}));
    assert_eq!(request.law, custodia_policy::model::Law::Gdpr);
    assert_eq!(request.due_at, at("2026-03-09T15:59:59.999Z"));

    // Audio Extract Kit completes a cancellation within 5 working days: Wed 11, Thu 12,
    // Fri 13, the make-up Sat 14, then the holiday until Tue 24.
    let aek = audio_extract_kit();
    let subject = aek.person("aek-user", "CN", &[]);
    let cancellation = aek.open_request(subject, RequestKind::AccountCancellation, json!({}));
    assert_eq!(cancellation.due_at, at("2026-02-24T15:59:59.999Z"));
    let access = aek.open_request(subject, RequestKind::Access, json!({}));
    assert_eq!(access.due_at, at("2026-03-09T15:59:59.999Z"));
}

#[test]
fn a_deadline_reaching_an_unpublished_year_is_refused_and_nothing_is_stored() {
    let dp = deeppiano();
    let subject = dp.person("late", "CN", &[]);
    let head = dp.data.audit_head().unwrap();
    // 15 working days from 2026-12-20 reach into 2027, whose calendar is not published.
    dp.clock.set(at("2026-12-20T02:00:00Z"));
    let err = dp
        .vault
        .open_request(subject, RequestKind::Access, json!({}), "test")
        .unwrap_err();
    assert_eq!(err.code(), "calendar.year_not_published");
    assert!(
        dp.vault
            .requests(&RequestQuery::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(dp.data.audit_head().unwrap(), head);
}

#[test]
fn bad_requests_are_refused_with_stable_codes_and_change_nothing() {
    let aek = audio_extract_kit();
    let subject = aek.person("aek", "CN", &[]);
    let head = aek.data.audit_head().unwrap();
    let refuse = |kind, details: Value| {
        aek.vault
            .open_request(subject, kind, details, "test")
            .unwrap_err()
            .code()
    };
    // Audio Extract Kit offers no restriction, objection, portability or explanation.
    assert_eq!(
        refuse(RequestKind::Restriction, json!({})),
        "request.not_offered"
    );
    assert_eq!(
        refuse(RequestKind::Portability, json!({})),
        "request.not_offered"
    );
    assert_eq!(
        refuse(RequestKind::Explanation, json!({})),
        "request.not_offered"
    );
    assert_eq!(
        refuse(RequestKind::Access, json!([1])),
        "request.invalid_details"
    );
    assert_eq!(
        refuse(RequestKind::Rectification, json!({})),
        "request.invalid_details"
    );
    assert_eq!(
        refuse(
            RequestKind::Rectification,
            json!({"profile": {"birth_date": "yesterday"}})
        ),
        "vault.invalid"
    );
    assert_eq!(
        refuse(
            RequestKind::Rectification,
            json!({"records": [{"id": "rec_00000000000000000000000000000001", "value": "x"}]})
        ),
        "vault.record_not_found"
    );
    assert_eq!(
        refuse(
            RequestKind::ConsentWithdrawal,
            json!({"purposes": ["account"]})
        ),
        "request.invalid_details"
    );
    assert_eq!(
        refuse(
            RequestKind::ConsentWithdrawal,
            json!({"purposes": ["nope"]})
        ),
        "vault.unknown_purpose"
    );
    assert_eq!(aek.data.audit_head().unwrap(), head);
    let missing = RequestId::random().unwrap();
    assert_eq!(
        aek.vault.request(missing).unwrap_err().code(),
        "request.not_found"
    );
    // Access needs an output to write its export to.
    let request = aek.verified(subject, RequestKind::Access, json!({}));
    assert_eq!(
        aek.vault
            .fulfil_request(request.id, "test")
            .unwrap_err()
            .code(),
        "request.export_output_required"
    );
    assert_eq!(
        aek.vault.request(request.id).unwrap().state,
        RequestState::Verified
    );
}

// --- verification ------------------------------------------------------------------------------

#[test]
fn wrong_codes_lock_expired_codes_are_refused_and_a_new_code_works() {
    let dp = deeppiano();
    let subject = dp.person("guess", "CN", &[]);
    let request = dp.open_request(subject, RequestKind::Copy, json!({}));
    // No code sent yet.
    assert_eq!(
        dp.vault
            .verify_request(request.id, "123456", "x")
            .unwrap_err()
            .code(),
        "request.no_code_pending"
    );
    dp.vault.send_verification(request.id, "operator").unwrap();
    let code = dp.code(request.id);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (1..=4).rev() {
        let err = dp.vault.verify_request(request.id, wrong, "x").unwrap_err();
        assert_eq!(err.code(), "request.code_invalid");
        assert!(matches!(err, VaultError::CodeInvalid { attempts_left } if attempts_left == left));
        assert!(!err.to_string().contains(&code));
    }
    // Malformed codes count as wrong: the fifth wrong try locks the code.
    let err = dp
        .vault
        .verify_request(request.id, "12ab", "x")
        .unwrap_err();
    assert_eq!(err.code(), "request.verification_locked");
    let view = dp.vault.request(request.id).unwrap();
    assert_eq!(view.state, RequestState::AwaitingVerification);
    assert!(view.verification.unwrap().locked);
    // Even the right code is refused now.
    let err = dp.vault.verify_request(request.id, &code, "x").unwrap_err();
    assert_eq!(err.code(), "request.verification_locked");

    // A new code: the old one no longer works, the new one expires after 15 minutes.
    dp.vault.send_verification(request.id, "operator").unwrap();
    let fresh = dp.code(request.id);
    if fresh != code {
        assert_eq!(
            dp.vault
                .verify_request(request.id, &code, "x")
                .unwrap_err()
                .code(),
            "request.code_invalid"
        );
    }
    dp.clock.advance_millis(15 * 60_000 + 1);
    let err = dp
        .vault
        .verify_request(request.id, &fresh, "x")
        .unwrap_err();
    assert_eq!(err.code(), "request.code_expired");
    assert!(!err.to_string().contains(&fresh));

    // A third code, used within its 15 minutes.
    dp.vault.send_verification(request.id, "operator").unwrap();
    let third = dp.code(request.id);
    dp.clock.advance_millis(15 * 60_000);
    let verified = dp.vault.verify_request(request.id, &third, "x").unwrap();
    assert_eq!(verified.state, RequestState::Verified);
    // Verified: no code can be tried again.
    assert_eq!(
        dp.vault
            .verify_request(request.id, &third, "x")
            .unwrap_err()
            .code(),
        "request.invalid_transition"
    );

    // No code appears in the audit chain, and only keyed hashes are stored.
    let tokens = audit_tokens(&dp.entries());
    for code in [&code, &fresh, &third] {
        assert!(
            !tokens.contains(code.as_str()),
            "code {code} in the audit chain"
        );
    }
    let transitions: Vec<_> = dp
        .entries()
        .into_iter()
        .filter(|entry| entry.event.kind == EventKind::RequestTransition)
        .collect();
    assert!(transitions.iter().any(|entry| {
        entry
            .event
            .reasons
            .contains(&"verification.locked".to_owned())
            && entry.event.subject.as_deref() == Some(subject.to_string().as_str())
    }));
}

// --- transitions -------------------------------------------------------------------------------

#[test]
fn two_threads_fulfilling_the_same_request_exactly_one_wins() {
    let dp = deeppiano();
    for round in 0..4 {
        let subject = dp.person(&format!("racer-{round}"), "CN", &["profile"]);
        let request = dp.verified(subject, RequestKind::Restriction, json!({}));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let vault = dp.vault.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    vault.fulfil_request(request.id, "racer")
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{results:?}");
        for result in &results {
            if let Err(err) = result {
                assert!(
                    matches!(err.code(), "request.conflict" | "request.already_closed"),
                    "{err}"
                );
            }
        }
        // The restriction is in the ledger once.
        let restricted = dp
            .vault
            .consents(subject)
            .unwrap()
            .iter()
            .filter(|event| event.kind == ConsentEventKind::Restricted)
            .count();
        assert_eq!(restricted, 1);
        let view = dp.vault.request(request.id).unwrap();
        assert_eq!(view.state, RequestState::Fulfilled);
        assert!(view.urgency.is_none());
        // A fulfilled request stays fulfilled.
        assert_eq!(
            dp.vault
                .fulfil_request(request.id, "late")
                .unwrap_err()
                .code(),
            "request.already_closed"
        );
    }
}

#[test]
fn rejections_and_extensions_follow_the_law_and_seal_their_text() {
    let dp = deeppiano();
    // GDPR: extended by two months with a notice before the original due date.
    let eu = dp.person("eu", "FR", &[]);
    let request = dp.verified(eu, RequestKind::Access, json!({"scope": "everything"}));
    dp.clock.advance_days(10);
    let notice = "Your request is complex: we need until May. Reference XJ-77.";
    let extended = dp
        .vault
        .act_on_request(
            request.id,
            &Action::Extend {
                notice: notice.to_owned(),
            },
            "dpo",
        )
        .unwrap();
    assert_eq!(extended.state, RequestState::Extended);
    assert_eq!(
        extended.original_due_at,
        Some(at("2026-03-09T15:59:59.999Z"))
    );
    assert_eq!(extended.due_at, at("2026-05-10T23:59:59.999Z"));
    // The notice went to the subject through the outbox.
    let outgoing = dp
        .vault
        .claim_due_notifications(10, Duration::from_secs(60))
        .unwrap();
    let sent = outgoing
        .iter()
        .find(|n| n.kind == "extension_notice" && n.request == Some(request.id))
        .expect("an extension notice");
    let payload: Value = serde_json::from_slice(&sent.payload).unwrap();
    assert_eq!(payload["notice"], notice);
    assert_eq!(payload["external_id"], "eu");
    // Once only.
    let again = dp.vault.act_on_request(
        request.id,
        &Action::Extend {
            notice: "more".into(),
        },
        "dpo",
    );
    assert_eq!(again.unwrap_err().code(), "request.invalid_transition");
    let details = dp
        .vault
        .read_request(request.id, "dpo")
        .unwrap()
        .details
        .unwrap();
    assert_eq!(details.extension_notice.as_deref(), Some(notice));
    assert_eq!(details.asked, json!({"scope": "everything"}));

    // PIPL has no statutory extension; after the due date none is possible either.
    let cn = dp.person("cn", "CN", &[]);
    let pipl = dp.verified(cn, RequestKind::Copy, json!({}));
    let err = dp
        .vault
        .act_on_request(
            pipl.id,
            &Action::Extend {
                notice: "later".into(),
            },
            "dpo",
        )
        .unwrap_err();
    assert_eq!(err.code(), "deadline.not_extendable");
    let late = dp.verified(eu, RequestKind::Copy, json!({}));
    dp.clock.set(at("2026-04-01T00:00:00Z"));
    let err = dp
        .vault
        .act_on_request(
            late.id,
            &Action::Extend {
                notice: "sorry".into(),
            },
            "dpo",
        )
        .unwrap_err();
    assert_eq!(err.code(), "deadline.extension_too_late");

    // A rejection needs a reason, which is sealed and closes the request.
    let err = dp
        .vault
        .act_on_request(pipl.id, &Action::Reject { reason: " ".into() }, "dpo")
        .unwrap_err();
    assert_eq!(err.code(), "request.reason_required");
    let reason = "Identity documents did not match the account holder QZ-13.";
    let rejected = dp
        .vault
        .act_on_request(
            pipl.id,
            &Action::Reject {
                reason: reason.into(),
            },
            "dpo",
        )
        .unwrap();
    assert_eq!(rejected.state, RequestState::Rejected);
    assert!(rejected.closed_at.is_some());
    let details = dp
        .vault
        .read_request(pipl.id, "dpo")
        .unwrap()
        .details
        .unwrap();
    assert_eq!(details.rejection.as_deref(), Some(reason));
    assert_eq!(
        dp.vault
            .act_on_request(pipl.id, &Action::Start, "dpo")
            .unwrap_err()
            .code(),
        "request.already_closed"
    );

    // Texts stay sealed: the audit chain holds ids, states and kinds only.
    let tokens = audit_tokens(&dp.entries());
    for secret in ["XJ", "QZ", "everything"] {
        assert!(!tokens.contains(secret), "{secret} in the audit chain");
    }
}

#[test]
fn repeated_gdpr_requests_are_flagged_and_the_queue_shows_urgency() {
    let dp = deeppiano();
    let eu = dp.person("repeat", "DE", &[]);
    let first = dp.open_request(eu, RequestKind::Access, json!({}));
    assert!(first.flags.is_empty());
    dp.clock.advance_days(3);
    let second = dp.open_request(eu, RequestKind::Access, json!({}));
    assert_eq!(second.flags, ["gdpr.repeated_request"]);
    let cn = dp.person("queue", "CN", &[]);
    let third = dp.open_request(cn, RequestKind::Erasure, json!({}));
    // Clock: 2026-03-07 09:00 UTC. `first` is due 2026-03-09 15:59:59.999 UTC: 2 whole days.
    dp.clock.set(at("2026-03-07T09:00:00Z"));
    let soon = dp
        .vault
        .requests(&RequestQuery {
            open_only: true,
            due_within_days: Some(2),
            ..RequestQuery::default()
        })
        .unwrap();
    let ids: Vec<RequestId> = soon.iter().map(|r| r.id).collect();
    assert!(ids.contains(&first.id));
    assert_eq!(soon[0].urgency, Some(Urgency::DueWithin(2)));
    assert!(
        !ids.contains(&third.id),
        "due 2026-03-12: not within 2 days"
    );
    // Past the due date: overdue, and listed first.
    dp.clock.set(at("2026-03-10T00:00:00Z"));
    let all = dp.vault.requests(&RequestQuery::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].urgency, Some(Urgency::Overdue));
    let later = all.iter().find(|r| r.id == third.id).unwrap();
    assert_eq!(later.due_at, at("2026-03-12T15:59:59.999Z"));
    assert_eq!(later.urgency, Some(Urgency::DueWithin(2)));
    let mine = dp
        .vault
        .requests(&RequestQuery {
            subject: Some(cn),
            ..RequestQuery::default()
        })
        .unwrap();
    assert_eq!(mine.len(), 1);
}

// --- the gate ----------------------------------------------------------------------------------

/// The notices a request owes the recipients, with their opened payloads, by recipient.
fn recipient_notices(dsr: &Dsr, request: RequestId) -> BTreeMap<String, (String, Value)> {
    dsr.vault
        .claim_due_notifications(100, Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .filter(|n| n.request == Some(request))
        .map(|n| {
            let payload: Value = serde_json::from_slice(&n.payload).unwrap();
            (n.recipient.clone(), (n.kind.clone(), payload))
        })
        .collect()
}

#[test]
fn recipients_are_told_of_a_rectification_and_a_restriction_and_the_request_waits_on_them() {
    // GDPR Art. 19: a rectification reaches each recipient of a corrected category, with the
    // corrected value; a restriction reaches every recipient; each request waits until they
    // acknowledge.
    let dp = deeppiano();
    let subject = dp.person("shared-user", "DE", &["profile"]);
    let device = dp.write(
        subject,
        "user.device.device_id",
        "crash_reporting",
        b"android-1111",
    );
    let gender = dp.write(subject, "user.demographic.gender", "profile", b"female");
    dp.disclose(
        subject,
        "Tencent Bugly SDK",
        &["user.device.device_id"],
        "crash_reporting",
    );
    dp.disclose(
        subject,
        "Alibaba Cloud Storage SDK",
        &["user.device.system_info"],
        "cloud_storage",
    );

    let request = dp.verified(
        subject,
        RequestKind::Rectification,
        json!({ "records": [
            {"id": device, "value": "android-2222"},
            {"id": gender, "value": "male"},
        ] }),
    );
    let report = dp.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::WaitingOnRecipients);
    assert_eq!(
        report.notices.len(),
        1,
        "only the recipient of a corrected category"
    );
    let notices = recipient_notices(&dp, request.id);
    let (kind, payload) = &notices["Tencent Bugly SDK"];
    assert_eq!(kind, "rectification_notice");
    assert_eq!(payload["external_id"], "shared-user");
    assert_eq!(
        payload["items"],
        json!([{
            "record": device,
            "category": "user.device.device_id",
            "encoding": "utf8",
            "value": "android-2222",
        }]),
        "the corrected value of what Bugly received, and nothing else"
    );
    assert!(!notices.contains_key("Alibaba Cloud Storage SDK"));
    // The correction is in force at once; the request closes once Bugly acknowledges.
    let values = dp
        .vault
        .read_records(subject, "user.device.device_id", "crash_reporting", "test")
        .unwrap();
    assert_eq!(values[0].value.as_slice(), b"android-2222");
    let notice = report.notices[0];
    dp.vault
        .record_delivery(notice, &DeliveryOutcome::Delivered, "deliverer")
        .unwrap();
    assert!(
        dp.data
            .notification(notice)
            .unwrap()
            .unwrap()
            .payload
            .is_empty(),
        "a delivered correction keeps no value"
    );
    dp.vault
        .acknowledge_notification(notice, "bugly-hook")
        .unwrap();
    assert_eq!(
        dp.vault.request(request.id).unwrap().state,
        RequestState::Fulfilled
    );

    let restriction = dp.verified(subject, RequestKind::Restriction, json!({}));
    let report = dp.fulfil(restriction.id);
    assert_eq!(report.request.state, RequestState::WaitingOnRecipients);
    let notices = recipient_notices(&dp, restriction.id);
    let told: Vec<(&str, &str)> = notices
        .iter()
        .map(|(name, (kind, _))| (name.as_str(), kind.as_str()))
        .collect();
    assert_eq!(
        told,
        [
            ("Alibaba Cloud Storage SDK", "restriction_notice"),
            ("Tencent Bugly SDK", "restriction_notice"),
        ]
    );
    // Restricted in the gate at once, before any recipient answers.
    assert!(!dp.allowed(subject, "profile", "user.demographic.gender").0);
    for notice in &report.notices {
        dp.vault
            .mark_notification_impossible(*notice, "the SDK has no restriction channel", "dpo")
            .unwrap();
    }
    assert_eq!(
        dp.vault.request(restriction.id).unwrap().state,
        RequestState::Fulfilled
    );
}

#[test]
fn rectification_and_restriction_take_effect_in_the_gate_at_once() {
    let dp = deeppiano();
    let subject = dp.person("pianist", "CN", &["profile"]);
    let gender = dp.write(subject, "user.demographic.gender", "profile", b"female");
    // A second instance on the same stores, its cache warmed.
    let (data, keys) = SqliteStores::open(&dp.dir.join("data")).unwrap();
    let other = Vault::open(
        Arc::new(data),
        Arc::new(keys),
        custodia_policy::load(&example_path("deeppiano.toml")).unwrap(),
        Arc::new(dp.clock.clone()),
        &root(),
    )
    .unwrap();
    let ask = |vault: &Vault, subject: SubjectId, purpose: &str, category: &str| {
        vault
            .decide(
                &Ask {
                    subject,
                    purpose: purpose.to_owned(),
                    categories: vec![category.to_owned()],
                },
                &operator(),
            )
            .unwrap()
    };
    assert!(ask(&other, subject, "profile", "user.demographic.gender").allowed);
    assert!(dp.allowed(subject, "profile", "user.demographic.gender").0);

    // Rectification: the birth date makes the subject 10, under DeepPiano's guardian age (14).
    let request = dp.verified(
        subject,
        RequestKind::Rectification,
        json!({
            "profile": {"birth_date": "2016-01-01"},
            "records": [{"id": gender, "value": "male"}],
        }),
    );
    // Before fulfilment nothing has changed.
    assert!(dp.allowed(subject, "profile", "user.demographic.gender").0);
    let report = dp.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::Fulfilled);
    assert_eq!(
        report.rectified,
        ["profile.birth_date".to_owned(), gender.clone()]
    );
    let (allowed, codes) = dp.allowed(subject, "profile", "user.demographic.gender");
    assert!(!allowed);
    assert!(
        codes.contains(&"minor.guardian_consent_required".to_owned()),
        "{codes:?}"
    );
    let profile = dp.vault.subject(subject).unwrap().profile.unwrap();
    assert_eq!(profile.birth_date.as_deref(), Some("2016-01-01"));
    assert_eq!(profile.external_id, "pianist");
    let values = dp
        .vault
        .read_records(subject, "user.demographic.gender", "profile", "test")
        .unwrap();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].id.to_string(), gender);
    assert_eq!(values[0].value.as_slice(), b"male");
    // The other instance sees it through its audit tail.
    wait_until(|| !ask(&other, subject, "profile", "user.demographic.gender").allowed);

    // Restriction: even a contract purpose is refused at once.
    let adult = dp.person("adult", "CN", &[]);
    assert!(dp.allowed(adult, "account", "user.account.username").0);
    assert!(ask(&other, adult, "account", "user.account.username").allowed);
    let request = dp.verified(
        adult,
        RequestKind::Restriction,
        json!({"reason": "disputed"}),
    );
    assert!(dp.allowed(adult, "account", "user.account.username").0);
    dp.fulfil(request.id);
    let (allowed, codes) = dp.allowed(adult, "account", "user.account.username");
    assert!(!allowed);
    assert!(
        codes.contains(&"subject.restricted".to_owned()),
        "{codes:?}"
    );
    wait_until(|| !ask(&other, adult, "account", "user.account.username").allowed);
    // The export of a restricted subject still works: access is a right, not a purpose.
    let access = dp.verified(adult, RequestKind::Access, json!({}));
    let (report, _) = dp.export(access.id);
    assert_eq!(report.request.state, RequestState::Fulfilled);
}

/// Waits (real time, for another instance's audit tail) until `done`, at most 10 s.
fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the other instance never saw the change");
}

// --- every right, end to end ---------------------------------------------------------------------

#[test]
fn deeppiano_rights_run_end_to_end() {
    let dp = deeppiano();
    let subject = dp.person(
        "dp-user",
        "CN",
        &[
            "profile",
            "personalized_recommendations",
            "ai_transcription",
        ],
    );
    dp.write(subject, "user.account.username", "account", b"pianist42");
    dp.write(subject, "user.demographic.gender", "profile", b"female");
    let audio = dp.upload(
        subject,
        "user.content.audio_recording.practice",
        "cloud_storage",
        &[7u8; 200_000],
    );

    // Access, copy and portability: the export.
    for kind in [
        RequestKind::Access,
        RequestKind::Copy,
        RequestKind::Portability,
    ] {
        let request = dp.verified(subject, kind, json!({}));
        dp.clock.advance_days(2);
        let (report, zip) = dp.export(request.id);
        assert_eq!(report.request.state, RequestState::Fulfilled);
        let files = unzip(&zip);
        let manifest = check_manifest(&files);
        assert_eq!(manifest["counts"]["records"], 2);
        assert_eq!(manifest["counts"]["media"], 1);
        assert_eq!(files[&format!("media/{audio}.mp3")], vec![7u8; 200_000]);
        assert_eq!(report.export.unwrap().counts.media_bytes, 200_000);
    }

    // Objection to a named purpose.
    assert!(
        dp.allowed(subject, "personalized_recommendations", "user.location")
            .0
    );
    let request = dp.verified(
        subject,
        RequestKind::Objection,
        json!({"purposes": ["personalized_recommendations"]}),
    );
    let report = dp.fulfil(request.id);
    assert_eq!(report.consent_events.len(), 1);
    let (allowed, codes) = dp.allowed(subject, "personalized_recommendations", "user.location");
    assert!(!allowed);
    assert!(codes.contains(&"subject.objected".to_owned()), "{codes:?}");

    // Consent withdrawal, by default of every consent given.
    let request = dp.verified(subject, RequestKind::ConsentWithdrawal, json!({}));
    let report = dp.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::Fulfilled);
    let withdrawn = dp.vault.consents(subject).unwrap().last().unwrap().clone();
    assert_eq!(withdrawn.kind, ConsentEventKind::Withdrawn);
    // Not the purpose objected to: its latest event is the objection.
    assert_eq!(withdrawn.purposes, ["profile", "ai_transcription"]);
    assert_eq!(withdrawn.method, "data_subject_request");
    let (allowed, codes) = dp.allowed(
        subject,
        "ai_transcription",
        "user.content.audio_recording.transcription_input",
    );
    assert!(!allowed);
    assert!(codes.contains(&"consent.withdrawn".to_owned()), "{codes:?}");
    let details = dp
        .vault
        .read_request(request.id, "dpo")
        .unwrap()
        .details
        .unwrap();
    assert_eq!(
        details.answer.unwrap()["withdrawn"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Restriction and rectification are covered in the gate test; run them here too.
    let request = dp.verified(
        subject,
        RequestKind::Rectification,
        json!({"profile": {"jurisdiction": "DE"}}),
    );
    dp.fulfil(request.id);
    assert_eq!(
        dp.vault
            .subject(subject)
            .unwrap()
            .profile
            .unwrap()
            .jurisdiction,
        "DE"
    );
    let request = dp.verified(subject, RequestKind::Restriction, json!({}));
    dp.fulfil(request.id);

    // Account cancellation: closed now, account data kept 90 days, then swept.
    let request = dp.verified(subject, RequestKind::AccountCancellation, json!({}));
    assert_eq!(request.due_at, dp.vault.request(request.id).unwrap().due_at);
    let report = dp.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::Fulfilled);
    assert!(report.notices.is_empty());
    assert!(dp.vault.subject(subject).unwrap().closed_at.is_some());
    let closed_at = dp.vault.now();
    let count = |category| dp.data.records_of(subject, Some(category)).unwrap().len();
    dp.clock.set(closed_at.plus_millis(89 * DAY_MS));
    dp.sweep();
    assert_eq!(count("user.account.username"), 1);
    dp.clock.set(closed_at.plus_millis(91 * DAY_MS));
    dp.sweep();
    assert_eq!(count("user.account.username"), 0);
    assert_eq!(count("user.demographic.gender"), 0);

    // Erasure of what is left.
    let other = dp.person("dp-erase", "CN", &[]);
    dp.write(other, "user.account.username", "account", b"gone");
    let request = dp.verified(other, RequestKind::Erasure, json!({}));
    let report = dp.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::Fulfilled);
    assert_eq!(report.keys_destroyed, Some(1));
    assert!(dp.vault.subject(other).unwrap().erased_at.is_some());
    // The request outlives the subject's key: its details are gone with it.
    let view = dp.vault.read_request(request.id, "dpo").unwrap();
    assert!(view.details.is_none());

    // Every transition is audited with pseudonymous ids, kinds and states only.
    let entries = dp.entries();
    let transitions: Vec<_> = entries
        .iter()
        .filter(|e| e.event.kind == EventKind::RequestTransition)
        .collect();
    assert!(transitions.iter().any(|e| {
        e.event.record.as_deref() == Some(request.id.to_string().as_str())
            && e.event.outcome.as_deref() == Some("in_progress -> fulfilled")
            && e.event.reasons == ["erasure"]
    }));
    let tokens = audit_tokens(&entries);
    assert!(!tokens.contains("pianist42"));
    assert!(!tokens.contains("female"));
}

#[test]
fn explanations_cover_the_automated_decisions_that_apply() {
    let dp = deeppiano_with_explanations();
    let subject = dp.person("explain", "CN", &["personalized_recommendations"]);
    let bystander = dp.person("no-data", "CN", &["personalized_recommendations"]);
    dp.write(
        subject,
        "user.behavior.search_history",
        "personalized_recommendations",
        b"nocturnes",
    );
    let request = dp.verified(subject, RequestKind::Explanation, json!({}));
    let report = dp.fulfil(request.id);
    let explanation = report.explanation.unwrap();
    let decisions = explanation["automated_decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["purpose"], "personalized_recommendations");
    assert_eq!(
        decisions[0]["categories_held"],
        json!(["user.behavior.search_history"])
    );
    assert_eq!(decisions[0]["latest_consent_event"], "given");
    // No data of its categories held: nothing applies.
    let request = dp.verified(bystander, RequestKind::Explanation, json!({}));
    let report = dp.fulfil(request.id);
    assert!(
        report.explanation.unwrap()["automated_decisions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn audio_extract_kit_rights_run_end_to_end() {
    let aek = audio_extract_kit();
    let subject = aek.person("aek-user", "CN", &["microphone_audio_processing"]);
    let name = aek.write(subject, "user.name", "account", b"Li Wei");
    aek.write(subject, "user.contact.email", "account", b"li@example.com");
    aek.write(
        subject,
        "system.operations.network_log",
        "server_communication",
        b"GET /extract 200",
    );
    aek.upload(
        subject,
        "user.content.media_file",
        "storage_read_write",
        &[3u8; 70_000],
    );

    for kind in [RequestKind::Access, RequestKind::Copy] {
        let request = aek.verified(subject, kind, json!({}));
        let (report, zip) = aek.export(request.id);
        assert_eq!(report.request.state, RequestState::Fulfilled);
        let files = unzip(&zip);
        check_manifest(&files);
        let records = json_of(&files, "records.json");
        assert_eq!(records.as_array().unwrap().len(), 3);
    }

    let request = aek.verified(
        subject,
        RequestKind::Rectification,
        json!({"records": [{"id": name, "value": "Li Wei-Ming"}]}),
    );
    let report = aek.fulfil(request.id);
    assert_eq!(report.rectified, std::slice::from_ref(&name));
    let values = aek
        .vault
        .read_records(subject, "user.name", "account", "test")
        .unwrap();
    assert_eq!(values[0].value.as_slice(), b"Li Wei-Ming");

    let request = aek.verified(
        subject,
        RequestKind::ConsentWithdrawal,
        json!({"purposes": ["microphone_audio_processing"]}),
    );
    aek.fulfil(request.id);
    assert!(
        !aek.allowed(
            subject,
            "microphone_audio_processing",
            "user.content.audio_recording"
        )
        .0
    );

    // Account cancellation: due within 5 working days; everything but the statutory network
    // logs goes at the next sweep, well before then.
    let request = aek.verified(subject, RequestKind::AccountCancellation, json!({}));
    assert_eq!(request.due_at, at("2026-02-24T15:59:59.999Z"));
    aek.clock.advance_days(1);
    let report = aek.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::Fulfilled);
    assert!(report.request.closed_at.unwrap() < request.due_at);
    aek.sweep();
    let left: Vec<String> = aek
        .data
        .records_of(subject, None)
        .unwrap()
        .into_iter()
        .map(|record| record.category)
        .collect();
    assert_eq!(left, ["system.operations.network_log"]);
    assert!(aek.data.media_of(subject, None).unwrap().is_empty());

    // Erasure: shredded, the statutory log kept storage-only.
    let other = aek.person("aek-erase", "CN", &[]);
    aek.write(other, "user.name", "account", b"Zhang");
    aek.write(
        other,
        "system.operations.network_log",
        "server_communication",
        b"GET / 200",
    );
    let request = aek.verified(other, RequestKind::Erasure, json!({}));
    let report = aek.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::Fulfilled);
    assert!(aek.vault.subject(other).unwrap().erased_at.is_some());
    let kept = aek.data.records_of(other, None).unwrap();
    assert_eq!(
        kept.len(),
        2,
        "the shred leaves rows to the purge, keys gone"
    );
    assert_eq!(
        aek.vault
            .read_records(other, "user.name", "account", "test")
            .unwrap_err()
            .code(),
        "vault.subject_erased"
    );
}

#[test]
fn erasure_of_a_deeppiano_user_waits_on_the_sdk_processor_it_was_shared_with() {
    let dp = deeppiano();
    let subject = dp.person("shared", "CN", &[]);
    dp.write(
        subject,
        "user.device.device_id",
        "crash_reporting",
        b"android-1234",
    );
    dp.disclose(
        subject,
        "Tencent Bugly SDK",
        &["user.device.device_id"],
        "crash_reporting",
    );
    let request = dp.verified(subject, RequestKind::Erasure, json!({}));
    dp.clock.advance_days(1);
    let report = dp.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::WaitingOnRecipients);
    assert!(report.request.closed_at.is_none());
    assert_eq!(report.notices.len(), 1);
    assert_eq!(report.keys_destroyed, Some(1));
    assert!(dp.vault.subject(subject).unwrap().erased_at.is_some());

    // The notice is delivered (it outlives the subject's key) and names the app's user id.
    let outgoing = dp
        .vault
        .claim_due_notifications(10, Duration::from_secs(60))
        .unwrap();
    let notice = outgoing
        .iter()
        .find(|n| n.kind == "erasure_notice")
        .expect("an erasure notice");
    assert_eq!(notice.recipient, "Tencent Bugly SDK");
    let payload: Value = serde_json::from_slice(&notice.payload).unwrap();
    assert_eq!(payload["external_id"], "shared");
    dp.vault
        .record_delivery(notice.id, &DeliveryOutcome::Delivered, "deliverer")
        .unwrap();
    assert_eq!(
        dp.vault.request(request.id).unwrap().state,
        RequestState::WaitingOnRecipients
    );
    // Fulfilling again does nothing: the request is the outbox's now.
    assert_eq!(
        dp.vault
            .fulfil_request(request.id, "operator")
            .unwrap_err()
            .code(),
        "request.invalid_transition"
    );
    // The processor acknowledges: the erasure is complete.
    dp.clock.advance_days(2);
    dp.vault
        .acknowledge_notification(report.notices[0], "Tencent Bugly SDK")
        .unwrap();
    let done = dp.vault.request(request.id).unwrap();
    assert_eq!(done.state, RequestState::Fulfilled);
    assert_eq!(done.closed_at, Some(dp.vault.now()));

    // Account cancellation with a disclosure waits the same way.
    let closing = dp.person("closing", "CN", &[]);
    dp.write(
        closing,
        "user.device.device_id",
        "crash_reporting",
        b"android-5678",
    );
    dp.disclose(
        closing,
        "Tencent Bugly SDK",
        &["user.device.device_id"],
        "crash_reporting",
    );
    let request = dp.verified(closing, RequestKind::AccountCancellation, json!({}));
    let report = dp.fulfil(request.id);
    assert_eq!(report.request.state, RequestState::WaitingOnRecipients);
    dp.vault
        .mark_notification_impossible(report.notices[0], "SDK vendor unreachable", "dpo")
        .unwrap();
    assert_eq!(
        dp.vault.request(request.id).unwrap().state,
        RequestState::Fulfilled
    );
}

// --- the export --------------------------------------------------------------------------------

/// SplitMix64: a small seeded generator for reproducible random holdings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn text(&mut self, len: usize) -> Vec<u8> {
        const CHARS: &[u8] = b"abc xyz,\"\n\r;=+-0123456789";
        let mut out: Vec<u8> = (0..len)
            .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
            .collect();
        if self.below(3) == 0 {
            out.extend_from_slice("音符 ünïcode".as_bytes());
        }
        out
    }
}

/// (category, purpose, consent needed) pairs DeepPiano allows records of.
const RECORD_KINDS: &[(&str, &str)] = &[
    ("user.account.username", "account"),
    ("user.contact.phone_number", "account"),
    ("user.demographic.gender", "profile"),
    ("user.demographic.profile", "profile"),
    (
        "user.behavior.search_history",
        "personalized_recommendations",
    ),
    (
        "user.behavior.purchase_history",
        "transaction_record_keeping",
    ),
    ("user.device.device_id", "crash_reporting"),
    ("system.operations.crash_log", "crash_reporting"),
    ("user.content.practice_report", "practice_feedback"),
];

const MEDIA_KINDS: &[(&str, &str)] = &[
    ("user.content.audio_recording.practice", "cloud_storage"),
    ("user.content.audio_recording.tuned", "cloud_storage"),
    ("user.content.sheet_music_upload", "cloud_storage"),
];

const CONSENTS: &[&str] = &[
    "profile",
    "personalized_recommendations",
    "practice_feedback",
    "ai_transcription",
    "notifications",
];

#[test]
fn random_holdings_all_appear_in_the_export_with_matching_hashes() {
    for seed in [1u64, 2, 3] {
        let mut rng = Rng(seed);
        let dp = deeppiano();
        let subject = dp.person(&format!("random-{seed}"), "CN", &[]);
        let mut consents = BTreeSet::new();
        for _ in 0..rng.below(6) + 1 {
            let purpose = CONSENTS[rng.below(CONSENTS.len() as u64) as usize];
            let kind = if rng.below(4) == 0 {
                ConsentEventKind::Withdrawn
            } else {
                ConsentEventKind::Given
            };
            dp.consent(subject, purpose, kind);
        }
        for event in dp.vault.consents(subject).unwrap() {
            consents.insert(event.id.to_string());
        }
        // Records: random categories and sizes, text and binary.
        let mut records: HashMap<String, Vec<u8>> = HashMap::new();
        for _ in 0..rng.below(40) + 5 {
            let (category, purpose) = RECORD_KINDS[rng.below(RECORD_KINDS.len() as u64) as usize];
            let len = rng.below(3000) as usize;
            let value = if rng.below(2) == 0 {
                rng.text(len)
            } else {
                rng.bytes(len)
            };
            let id = dp.write(subject, category, purpose, &value);
            records.insert(id, value);
        }
        // Media: random categories and sizes (several chunks).
        let mut media: HashMap<String, Vec<u8>> = HashMap::new();
        for _ in 0..rng.below(4) {
            let (category, purpose) = MEDIA_KINDS[rng.below(MEDIA_KINDS.len() as u64) as usize];
            let len = rng.below(300_000) as usize + 1;
            let body = rng.bytes(len);
            let id = dp.upload(subject, category, purpose, &body);
            media.insert(id, body);
        }
        // Disclosures to the SDKs entitled to what they received.
        let mut disclosures = 0;
        for _ in 0..rng.below(3) {
            dp.disclose(
                subject,
                "Tencent Bugly SDK",
                &["user.device.device_id", "system.operations.crash_log"],
                "crash_reporting",
            );
            disclosures += 1;
        }
        dp.clock.advance_days(1);
        let request = dp.verified(subject, RequestKind::Portability, json!({"format": "zip"}));
        let (report, zip) = dp.export(request.id);
        let manifest_struct = report.export.unwrap();
        let files = unzip(&zip);
        let manifest = check_manifest(&files);
        assert_eq!(manifest["format"], "custodia-export/1");
        assert_eq!(manifest["subject"], subject.to_string());
        assert_eq!(manifest["policy_version"], "2025-06-01");
        assert_eq!(manifest["counts"]["records"], records.len() as u64);
        assert_eq!(manifest_struct.counts.records, records.len() as u64);
        assert_eq!(manifest_struct.files.len() + 1, files.len());

        // Every record, decrypted, in JSON and CSV.
        let exported = json_of(&files, "records.json");
        let exported = exported.as_array().unwrap();
        assert_eq!(exported.len(), records.len());
        for item in exported {
            let id = item["id"].as_str().unwrap();
            let value = match item["encoding"].as_str().unwrap() {
                "utf8" => item["value"].as_str().unwrap().as_bytes().to_vec(),
                "base64" => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(item["value"].as_str().unwrap())
                        .unwrap()
                }
                other => panic!("encoding {other}"),
            };
            assert_eq!(&value, &records[id], "record {id}");
        }
        let csv = String::from_utf8(files["records.csv"].clone()).unwrap();
        for id in records.keys() {
            assert!(csv.contains(id.as_str()), "{id} in records.csv");
        }
        // Every consent event with its receipt.
        let ledger = json_of(&files, "consents.json");
        let ids: BTreeSet<String> = ledger
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, consents);
        for id in &consents {
            let receipt = json_of(&files, &format!("receipts/{id}.json"));
            assert_eq!(receipt["record_id"], id.as_str());
        }
        // Every media object, byte for byte, and in media.csv with its hash.
        let media_csv = String::from_utf8(files["media.csv"].clone()).unwrap();
        assert_eq!(media_csv.lines().count(), media.len() + 1);
        for (id, body) in &media {
            let name = format!("media/{id}.mp3");
            assert_eq!(&files[&name], body, "{name}");
            assert!(media_csv.contains(&sha256_hex(body)));
        }
        assert_eq!(manifest["counts"]["media"], media.len() as u64);
        // Every disclosure.
        let disclosed = json_of(&files, "disclosures.json");
        assert_eq!(disclosed.as_array().unwrap().len(), disclosures);
        let disclosed_csv = String::from_utf8(files["disclosures.csv"].clone()).unwrap();
        assert_eq!(disclosed_csv.lines().count(), disclosures + 1);
        // The categories held, with the purposes and retention that apply.
        let purposes = json_of(&files, "purposes.json");
        let held: BTreeSet<String> = purposes["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"].as_str().unwrap().to_owned())
            .collect();
        for category in dp
            .data
            .records_of(subject, None)
            .unwrap()
            .iter()
            .map(|r| r.category.clone())
            .chain(
                dp.data
                    .media_of(subject, None)
                    .unwrap()
                    .iter()
                    .map(|m| m.category.clone()),
            )
        {
            assert!(held.contains(&category), "{category} in purposes.json");
        }
        assert!(!purposes["retention"].as_array().unwrap().is_empty());
        // The request itself, with what was asked.
        let requests = json_of(&files, "requests.json");
        let listed = requests
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == request.id.to_string())
            .unwrap();
        assert_eq!(listed["details"]["asked"], json!({"format": "zip"}));
        let profile = json_of(&files, "profile.json");
        assert_eq!(profile["external_id"], format!("random-{seed}"));

        // Reads are audited per category and per media object, not per record.
        let reads: Vec<_> = dp
            .entries()
            .into_iter()
            .filter(|e| {
                e.event.kind == EventKind::RecordRead
                    && e.event.purpose.as_deref() == Some("custodia.subject_access")
            })
            .collect();
        let categories: BTreeSet<&str> = reads
            .iter()
            .filter(|e| {
                e.event
                    .outcome
                    .as_deref()
                    .is_some_and(|o| o.starts_with("export records="))
            })
            .filter_map(|e| e.event.category.as_deref())
            .collect();
        let record_categories: BTreeSet<String> = dp
            .data
            .records_of(subject, None)
            .unwrap()
            .into_iter()
            .map(|r| r.category)
            .collect();
        assert_eq!(categories.len(), record_categories.len());
        let media_reads = reads
            .iter()
            .filter(|e| {
                e.event
                    .record
                    .as_deref()
                    .is_some_and(|r| media.contains_key(r))
            })
            .count();
        assert_eq!(media_reads, media.len());
    }
}
