//! The consent ledger, the gate's decisions and API keys at the vault level: validation that
//! changes nothing, receipts, a published material change superseding consents, withdrawal
//! taking effect at once, and keys that stop working the moment they are revoked.

use custodia_store::ConsentEventKind;
use custodia_vault::{Ask, Caller, Gated, NewConsent, NewRecord, ReceiptFormat};

use crate::backends::{fresh, new_subject};

const AUDIO: &str = "user.content.audio_recording";

fn consent(kind: ConsentEventKind, purposes: &[&str]) -> NewConsent {
    NewConsent {
        purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
        kind,
        guardian: None,
        guardian_verified: false,
        policy_version: None,
        method: "app_dialog".to_owned(),
        expires_at: None,
    }
}

fn ask(subject: custodia_core::SubjectId) -> Ask {
    Ask {
        subject,
        purpose: "ai_transcription".to_owned(),
        categories: vec![AUDIO.to_owned()],
    }
}

#[test]
fn consent_given_then_withdrawn_opens_then_closes_the_gate() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("alice"), "t").unwrap();
    let operator = Caller::operator();
    let denied = t.vault.decide(&ask(alice.id), &operator).unwrap();
    assert_eq!(denied.codes(), ["consent.missing"]);
    t.vault
        .record_consent(
            alice.id,
            &consent(ConsentEventKind::Given, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    t.vault
        .write_records(
            alice.id,
            &[NewRecord {
                category: AUDIO,
                purpose: "ai_transcription",
                value: b"take 1",
            }],
            "t",
        )
        .unwrap();
    match t
        .vault
        .read_gated(alice.id, AUDIO, "ai_transcription", &operator)
        .unwrap()
    {
        Gated::Allowed { value, decision } => {
            assert_eq!(value[0].value.as_slice(), b"take 1");
            assert_eq!(decision.codes(), ["basis.consent"]);
        }
        Gated::Denied(decision) => panic!("denied: {decision:?}"),
    }
    t.vault
        .record_consent(
            alice.id,
            &consent(ConsentEventKind::Withdrawn, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    match t
        .vault
        .read_gated(alice.id, AUDIO, "ai_transcription", &operator)
        .unwrap()
    {
        Gated::Denied(decision) => assert_eq!(decision.codes(), ["consent.withdrawn"]),
        Gated::Allowed { .. } => panic!("read after withdrawal"),
    }
    // Every decision is in the audit chain, with its reasons.
    let decisions: Vec<_> = t
        .data
        .audit_entries(1, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind.as_str() == "decision")
        .collect();
    assert_eq!(decisions.len(), 3);
    assert_eq!(decisions[2].event.reasons, ["consent.withdrawn"]);
    assert_eq!(decisions[2].event.outcome.as_deref(), Some("deny"));
}

#[test]
fn bad_consent_events_are_refused_and_write_nothing() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("alice"), "t").unwrap();
    let head = t.data.audit_head().unwrap();
    let cases = [
        (consent(ConsentEventKind::Given, &[]), "vault.invalid"),
        (
            consent(ConsentEventKind::Given, &["nope"]),
            "vault.unknown_purpose",
        ),
        (
            consent(ConsentEventKind::Given, &["account"]),
            "vault.invalid",
        ),
        (
            consent(ConsentEventKind::Restricted, &["account"]),
            "vault.invalid",
        ),
        (
            NewConsent {
                policy_version: Some("1999-01-01".into()),
                ..consent(ConsentEventKind::Given, &["ai_transcription"])
            },
            "vault.invalid",
        ),
        (
            NewConsent {
                guardian: Some(alice.id),
                ..consent(ConsentEventKind::Given, &["ai_transcription"])
            },
            "vault.invalid",
        ),
        (
            NewConsent {
                guardian_verified: true,
                ..consent(ConsentEventKind::Given, &["ai_transcription"])
            },
            "vault.invalid",
        ),
        (
            NewConsent {
                method: String::new(),
                ..consent(ConsentEventKind::Given, &["ai_transcription"])
            },
            "vault.invalid",
        ),
        (
            NewConsent {
                expires_at: Some(t.vault.now()),
                ..consent(ConsentEventKind::Given, &["ai_transcription"])
            },
            "vault.invalid",
        ),
    ];
    for (bad, code) in cases {
        let err = t.vault.record_consent(alice.id, &bad, "t").unwrap_err();
        assert_eq!(err.code(), code, "{bad:?}: {err}");
    }
    assert!(t.vault.consents(alice.id).unwrap().is_empty());
    assert_eq!(t.data.audit_head().unwrap(), head);
}

#[test]
fn receipts_follow_iso_27560_and_kantara_shapes() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("alice"), "t").unwrap();
    let event = t
        .vault
        .record_consent(
            alice.id,
            &consent(ConsentEventKind::Given, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    let iso = t
        .vault
        .receipt(alice.id, event.id, ReceiptFormat::Iso27560)
        .unwrap();
    assert_eq!(iso["record_id"], event.id.to_string());
    assert_eq!(iso["data_subject"], alice.id.to_string());
    assert_eq!(iso["consent"]["state"], "given");
    assert_eq!(iso["purposes"][0]["purpose"], "ai_transcription");
    assert_eq!(iso["purposes"][0]["legal_basis"], "consent");
    assert_eq!(iso["purposes"][0]["sensitive_data"][0], AUDIO);
    assert_eq!(iso["notice"]["policy_version"], "2025-06-01");
    let kantara = t
        .vault
        .receipt(alice.id, event.id, ReceiptFormat::Kantara)
        .unwrap();
    assert_eq!(kantara["version"], "KI-CR-v1.1.0");
    assert_eq!(kantara["jurisdiction"], "CN");
    assert_eq!(kantara["consentReceiptID"], event.id.to_string());
    assert_eq!(kantara["sensitive"], true);
    assert_eq!(
        kantara["piiControllers"][0]["piiController"],
        "Example Audio Co., Ltd."
    );
    // Receipts carry pseudonymous ids, never the app's user id.
    assert!(!iso.to_string().contains("alice") && !kantara.to_string().contains("alice"));
}

#[test]
fn a_material_policy_change_supersedes_consents_until_renewed() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("alice"), "t").unwrap();
    t.vault
        .record_consent(
            alice.id,
            &consent(ConsentEventKind::Given, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    assert!(
        t.vault
            .decide(&ask(alice.id), &Caller::operator())
            .unwrap()
            .allowed
    );
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../custodia-policy/tests/fixtures/clean.toml"),
    )
    .unwrap();
    // Version 2: transcription also uses device ids (a new category for a purpose: material).
    let v2 = source
        .replacen("version = \"2025-06-01\"", "version = \"2025-09-01\"", 1)
        .replacen(
            "categories = [\"user.content.audio_recording\"]",
            "categories = [\"user.content.audio_recording\", \"user.device.device_id\"]",
            1,
        );
    t.clock.advance_days(1);
    let published = t.vault.publish_policy(&v2, "dpo").unwrap();
    assert_eq!(published.fresh_consent_purposes, ["ai_transcription"]);
    assert_eq!(published.previous.as_deref(), Some("2025-06-01"));
    let decision = t.vault.decide(&ask(alice.id), &Caller::operator()).unwrap();
    assert_eq!(decision.codes(), ["consent.superseded"]);
    // Contract purposes are untouched by the change.
    t.clock.advance_days(1);
    t.vault
        .record_consent(
            alice.id,
            &consent(ConsentEventKind::Renewed, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    assert!(
        t.vault
            .decide(&ask(alice.id), &Caller::operator())
            .unwrap()
            .allowed
    );
    assert_eq!(t.vault.policy_history().unwrap().len(), 2);
    // Publishing the same version again, or a file with findings, is refused.
    assert_eq!(
        t.vault.publish_policy(&v2, "dpo").unwrap_err().code(),
        "policy.version_conflict"
    );
    let broken = v2
        .replacen("version = \"2025-09-01\"", "version = \"2025-10-01\"", 1)
        .replacen("separate_consent = true\n", "", 1);
    assert_eq!(
        t.vault.publish_policy(&broken, "dpo").unwrap_err().code(),
        "policy.not_clean"
    );
    assert_eq!(t.vault.policy_history().unwrap().len(), 2);
}

#[test]
fn service_keys_are_bound_to_purposes_and_revocation_is_immediate() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("alice"), "t").unwrap();
    let issued = t
        .vault
        .create_api_key("transcriber", false, &["ai_transcription".to_owned()], "t")
        .unwrap();
    let caller = t.vault.authenticate(&issued.token).unwrap();
    assert!(!caller.admin);
    assert_eq!(caller.purposes, ["ai_transcription"]);
    let other = Ask {
        subject: alice.id,
        purpose: "account".to_owned(),
        categories: vec!["user.contact.phone_number".to_owned()],
    };
    assert!(
        t.vault
            .decide(&other, &caller)
            .unwrap()
            .codes()
            .contains(&"key.purpose_not_bound")
    );
    // The stored hash is not the token, and wrong or mangled tokens are all the same refusal.
    let keys = t.vault.api_keys().unwrap();
    assert!(
        !issued.token.contains(
            &keys[0]
                .secret_hash
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    );
    let mut wrong = issued.token.to_string();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    for bad in [wrong.as_str(), "nonsense", "api_00.00", ""] {
        assert_eq!(
            t.vault.authenticate(bad).unwrap_err().code(),
            "auth.invalid_key"
        );
    }
    t.vault.revoke_api_key(issued.key.id, "t").unwrap();
    assert_eq!(
        t.vault.authenticate(&issued.token).unwrap_err().code(),
        "auth.invalid_key"
    );
    assert_eq!(
        t.vault
            .create_api_key("bad", false, &[], "t")
            .unwrap_err()
            .code(),
        "vault.invalid"
    );
    assert_eq!(
        t.vault
            .create_api_key("bad", false, &["nope".to_owned()], "t")
            .unwrap_err()
            .code(),
        "vault.unknown_purpose"
    );
}

#[test]
fn guardians_and_age_bands_feed_the_gate() {
    let t = fresh();
    let parent = t.vault.create_subject(&new_subject("parent"), "t").unwrap();
    let mut child_profile = new_subject("child");
    child_profile.birth_date = Some("2015-06-01".into());
    let child = t.vault.create_subject(&child_profile, "t").unwrap();
    t.vault
        .record_consent(
            child.id,
            &consent(ConsentEventKind::Given, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    let decision = t.vault.decide(&ask(child.id), &Caller::operator()).unwrap();
    assert_eq!(decision.codes(), ["minor.guardian_consent_required"]);
    t.vault
        .record_consent(
            child.id,
            &NewConsent {
                guardian: Some(parent.id),
                guardian_verified: true,
                ..consent(ConsentEventKind::Given, &["ai_transcription"])
            },
            "t",
        )
        .unwrap();
    assert!(
        t.vault
            .decide(&ask(child.id), &Caller::operator())
            .unwrap()
            .allowed
    );
    // Restriction stops everything but legal obligations, until lifted.
    t.vault
        .record_consent(child.id, &consent(ConsentEventKind::Restricted, &[]), "t")
        .unwrap();
    assert_eq!(
        t.vault
            .decide(&ask(child.id), &Caller::operator())
            .unwrap()
            .codes(),
        ["subject.restricted"]
    );
    t.vault
        .record_consent(child.id, &consent(ConsentEventKind::Unrestricted, &[]), "t")
        .unwrap();
    assert!(
        t.vault
            .decide(&ask(child.id), &Caller::operator())
            .unwrap()
            .allowed
    );
}

#[test]
fn changes_made_by_another_process_reach_the_cached_gate_through_the_audit_tail() {
    let t = fresh();
    let alice = t.vault.create_subject(&new_subject("alice"), "t").unwrap();
    t.vault
        .record_consent(
            alice.id,
            &consent(ConsentEventKind::Given, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    let issued = t
        .vault
        .create_api_key("worker", false, &["ai_transcription".to_owned()], "t")
        .unwrap();
    // Warm this vault's caches: the fast path answers from memory.
    let caller = t.vault.authenticate(&issued.token).unwrap();
    assert!(t.vault.decide(&ask(alice.id), &caller).unwrap().allowed);
    assert!(t.vault.try_authenticate_cached(&issued.token).is_some());
    let cached = t
        .vault
        .try_decide_cached(&[ask(alice.id)], &caller)
        .unwrap()
        .unwrap();
    assert!(cached[0].allowed);

    // Another process (a second vault on the same files) withdraws and revokes.
    let other =
        crate::backends::open_at(&t.dir, t.clock.clone(), &crate::backends::root()).unwrap();
    other
        .vault
        .record_consent(
            alice.id,
            &consent(ConsentEventKind::Withdrawn, &["ai_transcription"]),
            "t",
        )
        .unwrap();
    other.vault.revoke_api_key(issued.key.id, "t").unwrap();

    // Within the tail interval (bounded wait; the tail runs on its own thread).
    let deadline = std::time::Instant::now() + custodia_vault::cache::TAIL_INTERVAL * 50;
    loop {
        let seen_withdrawal = t
            .vault
            .try_decide_cached(&[ask(alice.id)], &caller)
            .is_none();
        let seen_revocation = t.vault.try_authenticate_cached(&issued.token).is_none();
        if seen_withdrawal && seen_revocation {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit tail never invalidated the caches"
        );
        std::thread::sleep(custodia_vault::cache::TAIL_INTERVAL / 4);
    }
    assert_eq!(
        t.vault.decide(&ask(alice.id), &caller).unwrap().codes(),
        ["consent.withdrawn"]
    );
    assert_eq!(
        t.vault.authenticate(&issued.token).unwrap_err().code(),
        "auth.invalid_key"
    );
}
