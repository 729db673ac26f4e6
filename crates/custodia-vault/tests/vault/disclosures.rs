//! Disclosures and the outbox under the example policies: every refusal reason of a hand-over,
//! both ways; erasure notices sealed so they survive the subject's shredding; delivery retries
//! with backoff on a moved clock; giving up; and a request that finishes only once every notice
//! is acknowledged or marked impossible.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custodia_audit::EventKind;
use custodia_core::{Clock, ManualClock, RequestId, SubjectId};
use custodia_store::{ConsentEventKind, DataStore, KeyStore, Mutation, RequestRow, WriteBatch};
use custodia_store_sqlite::SqliteStores;
use custodia_vault::outbox::{ERASURE_NOTICE, MAX_ATTEMPTS, SUBJECT_CHANNEL, VERIFICATION_CODE};
use custodia_vault::{
    Caller, DeliveryOutcome, Gated, NewConsent, NewDisclosure, NotificationState, RecipientKind,
    Vault,
};
use serde_json::{Value, json};

use crate::backends::{new_subject, root, start};

const BUGLY: &str = "Tencent Bugly SDK";
const ALIBABA: &str = "Alibaba Cloud Storage SDK";
const FIREBASE: &str = "Firebase SDK";
const ADMOB: &str = "AdMob SDK (Google Mobile Ads SDK)";
const HOSTING: &str = "Hosting providers";
const PORTRAIT_AUTHORITY: &str = "Law-enforcement, administrative and judicial authorities";
const PORTRAIT_AFFILIATES: &str = "Affiliates (not named in source)";
const DEVICE_ID: &str = "user.device.device_id";

struct Example {
    vault: Vault,
    clock: ManualClock,
    dir: PathBuf,
    data: Arc<dyn DataStore>,
    _keys: Arc<dyn KeyStore>,
    _temp: tempfile::TempDir,
}

fn open_example(file: &str) -> Example {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file);
    let policy = custodia_policy::load(&path).unwrap();
    assert!(policy.is_clean(), "{:#?}", policy.findings);
    let (data, keys) = SqliteStores::open(&dir).unwrap();
    let data: Arc<dyn DataStore> = Arc::new(data);
    let keys: Arc<dyn KeyStore> = Arc::new(keys);
    let clock = ManualClock::new(start());
    let vault = Vault::open(
        data.clone(),
        keys.clone(),
        policy,
        Arc::new(clock.clone()),
        &root(),
    )
    .unwrap();
    Example {
        vault,
        clock,
        dir,
        data,
        _keys: keys,
        _temp: temp,
    }
}

impl Example {
    fn subject(&self, external_id: &str) -> SubjectId {
        self.vault
            .create_subject(&new_subject(external_id), "test")
            .unwrap()
            .id
    }

    fn consent(&self, subject: SubjectId, purpose: &str) {
        self.vault
            .record_consent(
                subject,
                &NewConsent {
                    purposes: vec![purpose.to_owned()],
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

    /// The reason codes of a refused hand-over (panics if it was allowed).
    fn refused(&self, subject: SubjectId, new: &NewDisclosure, caller: &Caller) -> Vec<String> {
        match self.vault.record_disclosure(subject, new, caller).unwrap() {
            Gated::Denied(decision) => decision.codes().into_iter().map(str::to_owned).collect(),
            Gated::Allowed { value, .. } => panic!("allowed: {value:?}"),
        }
    }

    fn allowed(
        &self,
        subject: SubjectId,
        new: &NewDisclosure,
        caller: &Caller,
    ) -> custodia_store::DisclosureRow {
        match self.vault.record_disclosure(subject, new, caller).unwrap() {
            Gated::Allowed { value, .. } => value,
            Gated::Denied(decision) => panic!("denied: {:?}", decision.codes()),
        }
    }

    /// Alice, whose device id went to Bugly and system info to Alibaba, with an erasure
    /// request waiting on them.
    fn alice_shared_twice(&self) -> RequestRow {
        let alice = self.subject("alice");
        let admin = Caller::operator();
        self.allowed(alice, &to(BUGLY, &[DEVICE_ID], "crash_reporting"), &admin);
        self.allowed(
            alice,
            &to(ALIBABA, &["user.device.system_info"], "cloud_storage"),
            &admin,
        );
        self.waiting_request(alice)
    }

    /// A request in `waiting_on_recipients`, put straight into the store.
    fn waiting_request(&self, subject: SubjectId) -> RequestRow {
        let now = self.clock.now();
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
        self.data
            .commit(WriteBatch {
                mutations: vec![Mutation::InsertRequest(row.clone())],
                audit: Vec::new(),
            })
            .unwrap();
        self.data.request(row.id).unwrap().unwrap()
    }

    fn advance(&self, duration: Duration) {
        self.clock
            .advance_millis(i64::try_from(duration.as_millis()).unwrap());
    }

    fn audit_kinds(&self) -> Vec<(EventKind, Option<String>, Vec<String>)> {
        self.data
            .audit_entries(1, 100_000)
            .unwrap()
            .into_iter()
            .map(|entry| (entry.event.kind, entry.event.outcome, entry.event.reasons))
            .collect()
    }
}

fn to(recipient: &str, categories: &[&str], purpose: &str) -> NewDisclosure {
    NewDisclosure {
        recipient: recipient.to_owned(),
        recipient_kind: RecipientKind::Processor,
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
        purpose: purpose.to_owned(),
        reference: None,
        country: None,
        mechanism: None,
    }
}

fn service(purposes: &[&str]) -> Caller {
    Caller {
        key: None,
        admin: false,
        purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[test]
fn deeppiano_sdks_receive_only_what_the_policy_lists() {
    let t = open_example("deeppiano.toml");
    let alice = t.subject("alice");
    let admin = Caller::operator();

    // Allowed: Bugly gets the device id for crash reporting (a contract purpose: no consent).
    let row = t.allowed(alice, &to(BUGLY, &[DEVICE_ID], "crash_reporting"), &admin);
    assert_eq!(row.recipient, BUGLY);
    assert_eq!(row.recipient_kind, "processor");
    assert_eq!(
        (row.country.as_deref(), row.mechanism.as_deref()),
        (None, None)
    );

    // An SDK the policy does not name.
    assert_eq!(
        t.refused(
            alice,
            &to("Umeng SDK", &[DEVICE_ID], "crash_reporting"),
            &admin
        ),
        ["disclosure.unknown_recipient"]
    );
    // Bugly is not listed for the phone number (nor does crash reporting use it).
    assert_eq!(
        t.refused(
            alice,
            &to(BUGLY, &["user.contact.phone_number"], "crash_reporting"),
            &admin
        ),
        ["disclosure.not_entitled", "purpose.category_not_covered"]
    );
    // The cloud-storage SDK is entitled to the system info, but does not serve crash reporting.
    assert_eq!(
        t.refused(
            alice,
            &to(ALIBABA, &["user.device.system_info"], "crash_reporting"),
            &admin
        ),
        ["disclosure.purpose_not_served"]
    );
    t.allowed(
        alice,
        &to(ALIBABA, &["user.device.system_info"], "cloud_storage"),
        &admin,
    );
    // Firebase gets only anonymised statistics: no one subject's data.
    t.consent(alice, "usage_analytics");
    assert_eq!(
        t.refused(
            alice,
            &to(FIREBASE, &["user.device.system_info"], "usage_analytics"),
            &admin
        ),
        ["disclosure.deidentified_only"]
    );
    // An SDK named as an authority.
    let mut as_authority = to(BUGLY, &[DEVICE_ID], "crash_reporting");
    as_authority.recipient_kind = RecipientKind::Authority;
    as_authority.reference = Some("case 1".into());
    assert_eq!(
        t.refused(alice, &as_authority, &admin),
        ["disclosure.recipient_kind_mismatch"]
    );
    // A service key acts only for its purposes; the payment app cannot report crashes.
    assert_eq!(
        t.refused(
            alice,
            &to(BUGLY, &[DEVICE_ID], "crash_reporting"),
            &service(&["payment"])
        ),
        ["key.purpose_not_bound"]
    );
    t.allowed(
        alice,
        &to(BUGLY, &[DEVICE_ID], "crash_reporting"),
        &service(&["crash_reporting"]),
    );

    // Refusals stored nothing; the three allowed hand-overs are in the log, in order.
    let log = t.vault.disclosures(alice).unwrap();
    let recipients: Vec<&str> = log.iter().map(|d| d.recipient.as_str()).collect();
    assert_eq!(recipients, [BUGLY, ALIBABA, BUGLY]);
    // Every decision is audited with its reasons; each stored hand-over once more.
    let audit = t.audit_kinds();
    let recorded = audit
        .iter()
        .filter(|(kind, ..)| *kind == EventKind::DisclosureRecorded)
        .count();
    assert_eq!(recorded, 3);
    let denied: Vec<&Vec<String>> = audit
        .iter()
        .filter(|(kind, outcome, _)| {
            *kind == EventKind::Decision && outcome.as_deref() == Some("deny")
        })
        .map(|(_, _, reasons)| reasons)
        .collect();
    assert_eq!(denied.len(), 6);
    assert_eq!(denied[0], &["disclosure.unknown_recipient"]);
    // The undeclared name is the caller's free text: it never reaches the audit log.
    let entries = t.data.audit_entries(1, 100_000).unwrap();
    assert!(
        entries
            .iter()
            .all(|e| !format!("{:?}", e.event).contains("Umeng"))
    );
}

#[test]
fn audio_extract_kit_sends_device_ids_to_the_us_only_with_consent() {
    let t = open_example("audio-extract-kit.toml");
    let alice = t.subject("alice");
    let admin = Caller::operator();
    let admob = to(ADMOB, &[DEVICE_ID], "device_info_advertising");
    // AdMob processes in the US; the declared transfer rests on consent, which is missing.
    assert_eq!(
        t.refused(alice, &admob, &admin),
        ["disclosure.transfer_without_basis", "consent.missing"]
    );
    t.consent(alice, "device_info_advertising");
    // A mechanism the policy does not declare for this transfer is no basis.
    let mut scc = admob.clone();
    scc.mechanism = Some("scc".into());
    assert_eq!(
        t.refused(alice, &scc, &admin),
        ["disclosure.transfer_without_basis"]
    );
    let row = t.allowed(alice, &admob, &admin);
    assert_eq!(row.country.as_deref(), Some("US"));
    assert_eq!(row.mechanism.as_deref(), Some("consent"));
    // The device id also goes to AdMob for location advertising only with that consent.
    assert!(
        t.refused(
            alice,
            &to(ADMOB, &["user.location.imprecise"], "location_advertising"),
            &admin
        )
        .contains(&"disclosure.transfer_without_basis".to_owned())
    );
    // Withdrawal stops the next transfer at once.
    t.vault
        .record_consent(
            alice,
            &NewConsent {
                purposes: vec!["device_info_advertising".into()],
                kind: ConsentEventKind::Withdrawn,
                guardian: None,
                guardian_verified: false,
                policy_version: None,
                method: "app_dialog".into(),
                expires_at: None,
            },
            "test",
        )
        .unwrap();
    assert_eq!(
        t.refused(alice, &admob, &admin),
        ["disclosure.transfer_without_basis", "consent.withdrawn"]
    );
    // A bad mechanism name is a bad request, not a refusal.
    let mut bad = admob;
    bad.mechanism = Some("handshake".into());
    let err = t.vault.record_disclosure(alice, &bad, &admin).unwrap_err();
    assert_eq!(err.code(), "vault.invalid");
}

#[test]
fn qidian_providers_abroad_rely_on_the_declared_clauses() {
    let t = open_example("qidian-pixel.toml");
    let alice = t.subject("alice");
    let admin = Caller::operator();
    let hosting = to(HOSTING, &["user.contact.email"], "account_management");
    let row = t.allowed(alice, &hosting, &admin);
    assert_eq!(row.country.as_deref(), Some("ZZ"));
    assert_eq!(row.mechanism.as_deref(), Some("scc"));
    // A destination the policy declares no transfer to.
    let mut to_us = hosting.clone();
    to_us.country = Some("US".into());
    assert_eq!(
        t.refused(alice, &to_us, &admin),
        ["disclosure.transfer_without_basis"]
    );
    // Hosting providers get no payment token.
    assert_eq!(
        t.refused(
            alice,
            &to(HOSTING, &["user.payment.method_token"], "provide_services"),
            &admin
        ),
        ["disclosure.not_entitled", "purpose.category_not_covered"]
    );
    let mut bad = hosting;
    bad.country = Some("usa".into());
    assert_eq!(
        t.vault
            .record_disclosure(alice, &bad, &admin)
            .unwrap_err()
            .code(),
        "vault.invalid"
    );
}

#[test]
fn portrait_never_shares_faces_and_records_authorities_with_their_documents() {
    let t = open_example("portrait-effects.toml");
    let alice = t.subject("alice");
    let admin = Caller::operator();
    t.consent(alice, "portrait_effects");
    let faces = t.refused(
        alice,
        &to(
            PORTRAIT_AFFILIATES,
            &["user.content.self_image"],
            "portrait_effects",
        ),
        &admin,
    );
    assert_eq!(
        faces,
        [
            "disclosure.never_shared",
            "disclosure.not_entitled",
            "disclosure.purpose_not_served"
        ]
    );
    let mut police = to(
        PORTRAIT_AUTHORITY,
        &[DEVICE_ID, "system.operations.network_log"],
        "legal_disclosure",
    );
    police.recipient_kind = RecipientKind::Authority;
    assert_eq!(
        t.refused(alice, &police, &admin),
        ["disclosure.reference_required"]
    );
    police.reference = Some("  ".into());
    assert_eq!(
        t.refused(alice, &police, &admin),
        ["disclosure.reference_required"]
    );
    police.reference = Some("Investigation letter 2026-117".into());
    let row = t.allowed(alice, &police, &admin);
    assert_eq!(row.recipient_kind, "authority");
    assert_eq!(
        row.reference.as_deref(),
        Some("Investigation letter 2026-117")
    );
    // Named as a processor, the authority is refused (and still needs its document).
    let mut as_processor = police.clone();
    as_processor.recipient_kind = RecipientKind::Processor;
    as_processor.reference = None;
    assert_eq!(
        t.refused(alice, &as_processor, &admin),
        [
            "disclosure.recipient_kind_mismatch",
            "disclosure.reference_required"
        ]
    );
    // Authorities are not told of an erasure (GDPR Art. 4(9)); the affiliates are.
    t.allowed(
        alice,
        &to(PORTRAIT_AFFILIATES, &[DEVICE_ID], "account_security"),
        &admin,
    );
    let request = t.waiting_request(alice);
    let notices = t.vault.notify_recipients(&request, "dpo").unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].recipient, PORTRAIT_AFFILIATES);
}

/// Opens the one claimed notification's payload.
fn claim_one(t: &Example) -> (custodia_vault::OutgoingNotification, Value) {
    let mut claimed = t
        .vault
        .claim_due_notifications(10, Duration::from_secs(30))
        .unwrap();
    assert_eq!(claimed.len(), 1, "one due notification");
    let one = claimed.remove(0);
    let payload: Value = serde_json::from_slice(&one.payload).unwrap();
    (one, payload)
}

#[test]
fn an_erasure_notice_stays_readable_after_the_subject_is_shredded() {
    let t = open_example("deeppiano.toml");
    let canary = "CANARY-EXTERNAL-ID-5b71e0";
    let alice = t.subject(canary);
    let admin = Caller::operator();
    t.allowed(alice, &to(BUGLY, &[DEVICE_ID], "crash_reporting"), &admin);
    t.allowed(
        alice,
        &to(BUGLY, &["user.device.system_info"], "crash_reporting"),
        &admin,
    );
    t.allowed(
        alice,
        &to(ALIBABA, &["user.device.system_info"], "cloud_storage"),
        &admin,
    );
    let request = t.waiting_request(alice);
    let notices = t.vault.notify_recipients(&request, "dpo").unwrap();
    let recipients: Vec<&str> = notices.iter().map(|n| n.recipient.as_str()).collect();
    assert_eq!(recipients, [BUGLY, ALIBABA]);
    // Repeating it (after a crash, say) queues nothing twice.
    let again = t.vault.notify_recipients(&request, "dpo").unwrap();
    assert_eq!(again, notices);

    t.vault.erase_subject(alice, "dpo").unwrap();
    assert_eq!(
        t.vault.subject(alice).unwrap_err().code(),
        "vault.subject_not_found"
    );

    let claimed = t
        .vault
        .claim_due_notifications(10, Duration::from_secs(30))
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let bugly = claimed.iter().find(|n| n.recipient == BUGLY).unwrap();
    assert_eq!(bugly.kind, ERASURE_NOTICE);
    assert_eq!(bugly.attempt, 1);
    let payload: Value = serde_json::from_slice(&bugly.payload).unwrap();
    assert_eq!(payload["external_id"], canary);
    assert_eq!(payload["request"], request.id.to_string());
    assert_eq!(
        payload["categories"],
        json!([DEVICE_ID, "user.device.system_info"])
    );
    assert_eq!(payload["disclosures"].as_array().unwrap().len(), 2);
    let body: Value = serde_json::from_slice(&bugly.body()).unwrap();
    assert_eq!(body["id"], bugly.id.to_string());
    assert_eq!(body["payload"], payload);
    // Claimed: nobody else takes them within the lease.
    assert!(
        t.vault
            .claim_due_notifications(10, Duration::from_secs(30))
            .unwrap()
            .is_empty()
    );

    // The external id is nowhere in plaintext: not in the database files, not in the audit.
    drop(claimed);
    t.vault.flush_audit().unwrap();
    for entry in std::fs::read_dir(&t.dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "canary in {}",
            path.display()
        );
    }
    // A payload moved to another notification's row does not open: that notice is given up
    // (and waits to be marked impossible), the other is sent again once its lease lapses.
    let rows = t.data.notifications_of(request.id).unwrap();
    t.data
        .commit(WriteBatch {
            mutations: vec![Mutation::UpdateNotification {
                id: rows[0].id,
                update: custodia_store::NotificationUpdate {
                    payload: Some(rows[1].payload.clone()),
                    ..Default::default()
                },
            }],
            audit: Vec::new(),
        })
        .unwrap();
    t.advance(Duration::from_secs(30));
    let (again, _) = claim_one(&t);
    assert_eq!(again.id, rows[1].id);
    assert_eq!(again.attempt, 1);
    let moved = t.data.notification(rows[0].id).unwrap().unwrap();
    assert_eq!(moved.state, "failed");
    assert_eq!(
        moved.last_error.as_deref(),
        Some("outbox.payload_unreadable")
    );
}

#[test]
fn two_instances_resuming_one_erasure_queue_each_notice_once() {
    let t = open_example("deeppiano.toml");
    let request = t.alice_shared_twice();
    // A second instance on the same database, as another server would be.
    let (data, keys) = SqliteStores::open(&t.dir).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deeppiano.toml");
    let other = Vault::open(
        Arc::new(data),
        Arc::new(keys),
        custodia_policy::load(&path).unwrap(),
        Arc::new(t.clock.clone()),
        &root(),
    )
    .unwrap();
    let barrier = std::sync::Barrier::new(2);
    let (mine, theirs) = std::thread::scope(|scope| {
        let mine = scope.spawn(|| {
            barrier.wait();
            t.vault.notify_recipients(&request, "dpo").unwrap()
        });
        let theirs = scope.spawn(|| {
            barrier.wait();
            other.notify_recipients(&request, "dpo").unwrap()
        });
        (mine.join().unwrap(), theirs.join().unwrap())
    });
    let stored = t.data.notifications_of(request.id).unwrap();
    assert_eq!(stored.len(), 2, "one notice per recipient: {stored:?}");
    let ids = |rows: &[custodia_store::NotificationRow]| {
        let mut ids: Vec<_> = rows.iter().map(|row| row.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&mine), ids(&stored));
    assert_eq!(ids(&theirs), ids(&stored));
    // Queuing them moved the request's version once.
    assert_eq!(
        t.data.request(request.id).unwrap().unwrap().version,
        request.version + 1
    );
}

#[test]
fn failed_deliveries_back_off_from_a_minute_to_an_hour_and_give_up_after_ten() {
    let t = open_example("deeppiano.toml");
    let alice = t.subject("alice");
    let code = t
        .vault
        .queue_notification(
            VERIFICATION_CODE,
            None,
            alice,
            SUBJECT_CHANNEL,
            &json!({ "code": "493027" }),
            "requests",
        )
        .unwrap();
    let failed = DeliveryOutcome::Failed {
        code: "webhook.status_500".into(),
    };
    let mut waits = Vec::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let (one, payload) = claim_one(&t);
        assert_eq!(one.id, code.id);
        assert_eq!(one.attempt, attempt);
        assert_eq!(payload["code"], "493027");
        let row = t.vault.record_delivery(one.id, &failed, "worker").unwrap();
        assert_eq!(row.attempts, attempt);
        assert_eq!(row.last_error.as_deref(), Some("webhook.status_500"));
        let Some(next) = row.next_attempt_at else {
            assert_eq!(attempt, MAX_ATTEMPTS);
            assert_eq!(row.state, "failed");
            assert!(row.payload.is_empty(), "a code no longer needed is wiped");
            break;
        };
        let wait = next.as_millis() - t.clock.now().as_millis();
        waits.push(wait / 60_000);
        // Not due a moment before its time; due at it.
        t.clock.advance_millis(wait - 1);
        assert!(
            t.vault
                .claim_due_notifications(10, Duration::from_secs(30))
                .unwrap()
                .is_empty()
        );
        t.clock.advance_millis(1);
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    t.advance(Duration::from_secs(86_400));
    assert!(
        t.vault
            .claim_due_notifications(10, Duration::from_secs(30))
            .unwrap()
            .is_empty()
    );
    let status = t.vault.notification_status(code.id).unwrap();
    assert_eq!(status.state, NotificationState::Failed);
    assert_eq!(status.attempts, MAX_ATTEMPTS);

    // A deliverer that dies lets its lease lapse: the message comes back, same attempt.
    let second = t
        .vault
        .queue_notification(
            VERIFICATION_CODE,
            None,
            alice,
            SUBJECT_CHANNEL,
            &json!({"code": "1"}),
            "r",
        )
        .unwrap();
    let (first_try, _) = claim_one(&t);
    assert_eq!(first_try.id, second.id);
    t.advance(Duration::from_secs(30));
    let (retry, _) = claim_one(&t);
    assert_eq!(retry.attempt, 1);
    // Delivered: the code is wiped, and nothing is due any more.
    let row = t
        .vault
        .record_delivery(retry.id, &DeliveryOutcome::Delivered, "worker")
        .unwrap();
    assert_eq!(row.state, "delivered");
    assert_eq!(row.delivered_at, Some(t.clock.now()));
    assert!(row.payload.is_empty());
    // A late report from the lapsed deliverer changes nothing.
    let late = t
        .vault
        .record_delivery(first_try.id, &failed, "worker")
        .unwrap();
    assert_eq!(late, row);
    let kinds: Vec<EventKind> = t.audit_kinds().into_iter().map(|(k, ..)| k).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::NotificationDelivery)
            .count(),
        usize::try_from(MAX_ATTEMPTS).unwrap() + 1
    );
}

#[test]
fn a_request_waits_until_every_recipient_acknowledges_or_is_impossible() {
    let t = open_example("deeppiano.toml");
    let request = t.alice_shared_twice();
    let notices = t.vault.notify_recipients(&request, "dpo").unwrap();
    let (bugly, alibaba) = (notices[0].id, notices[1].id);

    // Bugly's endpoint answers; Alibaba's keeps failing until the worker gives up.
    for one in t
        .vault
        .claim_due_notifications(10, Duration::from_secs(30))
        .unwrap()
    {
        let outcome = if one.id == bugly {
            DeliveryOutcome::Delivered
        } else {
            DeliveryOutcome::Failed {
                code: "webhook.timeout".into(),
            }
        };
        t.vault.record_delivery(one.id, &outcome, "worker").unwrap();
    }
    let delivered = t.data.notification(bugly).unwrap().unwrap();
    assert_eq!(delivered.state, "delivered");
    assert!(!delivered.payload.is_empty(), "kept until acknowledged");
    for _ in 1..MAX_ATTEMPTS {
        t.advance(Duration::from_secs(3600));
        let (one, _) = claim_one(&t);
        assert_eq!(one.id, alibaba);
        t.vault
            .record_delivery(
                one.id,
                &DeliveryOutcome::Failed {
                    code: "webhook.timeout".into(),
                },
                "worker",
            )
            .unwrap();
    }
    assert_eq!(
        t.vault.notification_status(alibaba).unwrap().state,
        NotificationState::Failed
    );

    // Bugly acknowledges: one notice still open, the request waits.
    let acked = t
        .vault
        .acknowledge_notification(bugly, "bugly-hook")
        .unwrap();
    assert_eq!(acked.state, NotificationState::Acknowledged);
    assert_eq!(acked.settled_at, Some(t.clock.now()));
    assert!(
        t.data
            .notification(bugly)
            .unwrap()
            .unwrap()
            .payload
            .is_empty()
    );
    let waiting = t.data.request(request.id).unwrap().unwrap();
    assert_eq!(waiting.state, "waiting_on_recipients");
    // Acknowledging twice changes nothing; an acknowledged notice is not impossible.
    t.vault
        .acknowledge_notification(bugly, "bugly-hook")
        .unwrap();
    assert_eq!(
        t.vault
            .mark_notification_impossible(bugly, "gone", "dpo")
            .unwrap_err()
            .code(),
        "notification.settled"
    );
    assert_eq!(
        t.vault
            .mark_notification_impossible(alibaba, " ", "dpo")
            .unwrap_err()
            .code(),
        "vault.invalid"
    );

    // The failed notice is marked impossible with a reason: the request is fulfilled.
    t.advance(Duration::from_secs(60));
    let reason = "The SDK vendor ended the contract; no deletion channel exists.";
    let impossible = t
        .vault
        .mark_notification_impossible(alibaba, reason, "dpo")
        .unwrap();
    assert_eq!(impossible.state, NotificationState::Impossible);
    assert_eq!(impossible.reason.as_deref(), Some(reason));
    let stored = t.data.notification(alibaba).unwrap().unwrap();
    let sealed = stored.reason.unwrap();
    assert!(!sealed.windows(8).any(|w| w == &reason.as_bytes()[..8]));
    let done = t.data.request(request.id).unwrap().unwrap();
    assert_eq!(done.state, "fulfilled");
    assert_eq!(done.closed_at, Some(t.clock.now()));
    assert_eq!(done.version, waiting.version + 1);
    assert_eq!(
        t.vault
            .acknowledge_notification(alibaba, "x")
            .unwrap_err()
            .code(),
        "notification.settled"
    );
    // Settling again does not move the request twice.
    assert!(!t.vault.settle_recipients(request.id, "dpo").unwrap());
    let transitions: Vec<Option<String>> = t
        .audit_kinds()
        .into_iter()
        .filter(|(kind, ..)| *kind == EventKind::RequestTransition)
        .map(|(_, outcome, _)| outcome)
        .collect();
    assert_eq!(
        transitions,
        [Some("waiting_on_recipients -> fulfilled".to_owned())]
    );
    let statuses = t.vault.request_notifications(request.id).unwrap();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.iter().all(|s| s.state.is_settled()));
    assert_eq!(
        t.vault
            .acknowledge_notification(custodia_core::NotificationId::random().unwrap(), "x")
            .unwrap_err()
            .code(),
        "notification.not_found"
    );
}

#[test]
fn a_subject_without_disclosures_has_no_one_to_tell() {
    let t = open_example("deeppiano.toml");
    let alice = t.subject("alice");
    let request = t.waiting_request(alice);
    assert!(
        t.vault
            .notify_recipients(&request, "dpo")
            .unwrap()
            .is_empty()
    );
    assert!(t.vault.settle_recipients(request.id, "dpo").unwrap());
    assert_eq!(
        t.data.request(request.id).unwrap().unwrap().state,
        "fulfilled"
    );
}
