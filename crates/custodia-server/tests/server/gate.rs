//! Each gate rule over HTTP, both ways: the request it denies, with its reason code, and the
//! request it lets through.

use custodia_core::Clock as _;
use serde_json::json;

use crate::app::{each_backend, reasons};

pub const PHONE: &str = "user.contact.phone_number";
pub const EMAIL: &str = "user.contact.email";
pub const AUDIO: &str = "user.content.audio_recording";
pub const NETLOG: &str = "system.operations.network_log";

#[test]
fn the_purpose_must_exist_and_cover_every_category() {
    each_backend(|app| {
        let s = app.subject();
        let allowed = app.decide(&app.admin, &s, "account", &[PHONE]);
        assert_eq!(allowed["allowed"], true);
        assert_eq!(reasons(&allowed), ["basis.contract"]);

        let not_covered = app.decide(&app.admin, &s, "account", &[PHONE, AUDIO]);
        assert_eq!(not_covered["allowed"], false);
        assert_eq!(reasons(&not_covered), ["purpose.category_not_covered"]);
        let unknown_purpose = app.decide(&app.admin, &s, "profiling", &[PHONE]);
        assert_eq!(reasons(&unknown_purpose), ["purpose.unknown"]);
        let unknown_category = app.decide(&app.admin, &s, "account", &["user.secret"]);
        assert_eq!(reasons(&unknown_category), ["category.unknown"]);

        // Collecting is processing: a write passes the same rule.
        app.write(&app.admin, &s, PHONE, "account", "+86 138 0000 0000")
            .expect(201);
        let before = app.record_count();
        let denied = app
            .write(&app.admin, &s, AUDIO, "account", "not covered")
            .expect_error(403, "gate.denied");
        assert_eq!(
            reasons(&denied["details"]),
            ["purpose.category_not_covered"]
        );
        assert_eq!(denied["details"]["decision"]["allowed"], false);
        assert_eq!(app.record_count(), before);
    });
}

#[test]
fn a_service_key_acts_only_for_the_purposes_it_is_bound_to() {
    each_backend(|app| {
        let s = app.subject();
        app.consent(&s, "given", &["ai_transcription"]).expect(201);
        let account_key = app.service_key(&["account"]);
        let transcriber = app.service_key(&["ai_transcription"]);

        app.write(&account_key, &s, PHONE, "account", "+86 138 0000 0001")
            .expect(201);
        app.write(&transcriber, &s, AUDIO, "ai_transcription", "audio bytes")
            .expect(201);
        app.read(&account_key, &s, PHONE, "account").expect(200);
        app.read(&transcriber, &s, AUDIO, "ai_transcription")
            .expect(200);

        // The account key cannot reach the recordings: not under their purpose...
        let not_bound = app
            .read(&account_key, &s, AUDIO, "ai_transcription")
            .expect_error(403, "gate.denied");
        assert_eq!(reasons(&not_bound["details"]), ["key.purpose_not_bound"]);
        assert!(not_bound.get("records").is_none());
        // ...nor under its own, which does not cover them.
        let not_covered = app
            .read(&account_key, &s, AUDIO, "account")
            .expect_error(403, "gate.denied");
        assert_eq!(
            reasons(&not_covered["details"]),
            ["purpose.category_not_covered"]
        );
        // Nor can it write for a purpose it is not bound to.
        app.consent(&s, "given", &["marketing"]).expect(201);
        let write = app
            .write(&account_key, &s, EMAIL, "marketing", "a@example.com")
            .expect_error(403, "gate.denied");
        assert_eq!(reasons(&write["details"]), ["key.purpose_not_bound"]);
        // An admin key may act for any purpose (every other rule still applies).
        app.write(&app.admin, &s, EMAIL, "marketing", "a@example.com")
            .expect(201);
    });
}

#[test]
fn consent_given_allows_and_withdrawn_or_refused_denies() {
    each_backend(|app| {
        let s = app.subject();
        let missing = app.decide(&app.admin, &s, "marketing", &[EMAIL]);
        assert_eq!(reasons(&missing), ["consent.missing"]);

        app.consent(&s, "given", &["marketing"]).expect(201);
        let given = app.decide(&app.admin, &s, "marketing", &[EMAIL]);
        assert_eq!(given["allowed"], true);
        assert_eq!(reasons(&given), ["basis.consent"]);

        app.consent(&s, "withdrawn", &["marketing"]).expect(201);
        let withdrawn = app.decide(&app.admin, &s, "marketing", &[EMAIL]);
        assert_eq!(reasons(&withdrawn), ["consent.withdrawn"]);

        let other = app.subject();
        app.consent(&other, "refused", &["marketing"]).expect(201);
        let refused = app.decide(&app.admin, &other, "marketing", &[EMAIL]);
        assert_eq!(reasons(&refused), ["consent.refused"]);
    });
}

#[test]
fn withdrawing_consent_stops_reads_at_once() {
    each_backend(|app| {
        let s = app.subject();
        let key = app.service_key(&["marketing"]);
        app.consent(&s, "given", &["marketing"]).expect(201);
        app.write(&key, &s, EMAIL, "marketing", "reader@example.com")
            .expect(201);
        let read = app.read(&key, &s, EMAIL, "marketing").expect(200).json();
        assert_eq!(read["records"][0]["value"], "reader@example.com");

        app.consent(&s, "withdrawn", &["marketing"]).expect(201);
        let denied = app.read(&key, &s, EMAIL, "marketing");
        let body = denied.expect_error(403, "gate.denied");
        assert_eq!(reasons(&body["details"]), ["consent.withdrawn"]);
        assert!(!denied.text().contains("reader@example.com"));
    });
}

#[test]
fn consent_lapses_when_the_clock_passes_its_expiry() {
    each_backend(|app| {
        let s = app.subject();
        let expiry = app
            .clock
            .now()
            .checked_add(30, custodia_core::CalendarUnit::Days)
            .unwrap();
        app.consent_with(
            &s,
            json!({ "kind": "given", "purposes": ["marketing"], "expires_at": expiry.to_string() }),
        )
        .expect(201);
        assert_eq!(
            app.decide(&app.admin, &s, "marketing", &[EMAIL])["allowed"],
            true
        );
        app.clock.advance_days(29);
        assert_eq!(
            app.decide(&app.admin, &s, "marketing", &[EMAIL])["allowed"],
            true
        );
        app.clock.advance_days(2);
        let lapsed = app.decide(&app.admin, &s, "marketing", &[EMAIL]);
        assert_eq!(reasons(&lapsed), ["consent.expired"]);

        app.consent(&s, "renewed", &["marketing"]).expect(201);
        assert_eq!(
            app.decide(&app.admin, &s, "marketing", &[EMAIL])["allowed"],
            true
        );
    });
}

#[test]
fn a_material_change_supersedes_consent_until_it_is_renewed() {
    each_backend(|app| {
        let s = app.subject();
        app.consent(&s, "given", &["marketing"]).expect(201);
        app.consent(&s, "given", &["ai_transcription"]).expect(201);
        app.clock.advance_days(1);

        let v2 = crate::policy::version_two();
        let published = app
            .raw(
                "POST",
                "/v1/policy",
                Some(&app.admin),
                &[("Content-Type", "application/toml")],
                Some(v2.as_bytes()),
            )
            .expect(201)
            .json();
        assert_eq!(published["fresh_consent_purposes"], json!(["marketing"]));

        let superseded = app.decide(&app.admin, &s, "marketing", &[EMAIL]);
        assert_eq!(reasons(&superseded), ["consent.superseded"]);
        // A purpose the change did not touch keeps its consent.
        assert_eq!(
            app.decide(&app.admin, &s, "ai_transcription", &[AUDIO])["allowed"],
            true
        );

        app.clock.advance_days(1);
        app.consent(&s, "renewed", &["marketing"]).expect(201);
        assert_eq!(
            app.decide(&app.admin, &s, "marketing", &[EMAIL])["allowed"],
            true
        );
    });
}

#[test]
fn sensitive_data_needs_a_separate_consent() {
    each_backend(|app| {
        let s = app.subject();
        app.consent(&s, "given", &["ai_transcription", "marketing"])
            .expect(201);
        let bundled = app.decide(&app.admin, &s, "ai_transcription", &[AUDIO]);
        assert_eq!(reasons(&bundled), ["consent.not_separate"]);
        // Bundling is fine for the purpose that handles nothing sensitive.
        assert_eq!(
            app.decide(&app.admin, &s, "marketing", &[EMAIL])["allowed"],
            true
        );

        app.consent(&s, "given", &["ai_transcription"]).expect(201);
        let separate = app.decide(&app.admin, &s, "ai_transcription", &[AUDIO]);
        assert_eq!(separate["allowed"], true);
    });
}

#[test]
fn below_the_guardian_age_only_a_verified_guardian_consents() {
    each_backend(|app| {
        let guardian = app.subject();
        // Ten years old on the test clock (2026-02-10).
        let child = app.subject_with(json!({ "birth_date": "2015-06-01", "guardian": guardian }));

        app.consent(&child, "given", &["marketing"]).expect(201);
        let own = app.decide(&app.admin, &child, "marketing", &[EMAIL]);
        assert_eq!(reasons(&own), ["minor.guardian_consent_required"]);

        app.consent_with(
            &child,
            json!({ "kind": "given", "purposes": ["marketing"], "guardian": guardian }),
        )
        .expect(201);
        let unverified = app.decide(&app.admin, &child, "marketing", &[EMAIL]);
        assert_eq!(reasons(&unverified), ["minor.guardian_consent_required"]);

        app.consent_with(
            &child,
            json!({
                "kind": "given", "purposes": ["marketing"],
                "guardian": guardian, "guardian_verified": true,
            }),
        )
        .expect(201);
        let verified = app.decide(&app.admin, &child, "marketing", &[EMAIL]);
        assert_eq!(verified["allowed"], true);

        // At fifteen the subject's own consent counts.
        let teen = app.subject_with(json!({ "birth_date": "2010-06-01" }));
        app.consent(&teen, "given", &["marketing"]).expect(201);
        assert_eq!(
            app.decide(&app.admin, &teen, "marketing", &[EMAIL])["allowed"],
            true
        );
    });
}

#[test]
fn below_the_refusal_age_nothing_is_processed() {
    each_backend(|app| {
        let young = app.subject_with(json!({ "birth_date": "2019-06-01" }));
        let refused = app.decide(&app.admin, &young, "account", &[PHONE]);
        assert_eq!(reasons(&refused), ["minor.refused"]);
        let banded = app.subject_with(json!({ "birth_date": null, "age_band": "under_8" }));
        assert_eq!(
            reasons(&app.decide(&app.admin, &banded, "account", &[PHONE])),
            ["minor.refused"]
        );

        let older = app.subject_with(json!({ "birth_date": "2016-06-01" }));
        assert_eq!(
            app.decide(&app.admin, &older, "account", &[PHONE])["allowed"],
            true
        );
    });
}

#[test]
fn restriction_and_objection_stop_processing_except_for_legal_obligations() {
    each_backend(|app| {
        let s = app.subject();
        app.consent(&s, "restricted", &[]).expect(201);
        let restricted = app.decide(&app.admin, &s, "account", &[PHONE]);
        assert_eq!(reasons(&restricted), ["subject.restricted"]);
        let legal = app.decide(&app.admin, &s, "security", &[NETLOG]);
        assert_eq!(legal["allowed"], true);
        assert_eq!(reasons(&legal), ["basis.legal_obligation"]);
        app.consent(&s, "unrestricted", &[]).expect(201);
        assert_eq!(
            app.decide(&app.admin, &s, "account", &[PHONE])["allowed"],
            true
        );

        app.consent(&s, "objected", &["account", "security"])
            .expect(201);
        let objected = app.decide(&app.admin, &s, "account", &[PHONE]);
        assert_eq!(reasons(&objected), ["subject.objected"]);
        assert_eq!(
            app.decide(&app.admin, &s, "security", &[NETLOG])["allowed"],
            true
        );
    });
}

#[test]
fn an_erased_subject_is_processed_only_for_legal_obligations() {
    each_backend(|app| {
        let s = app.subject();
        app.write(&app.admin, &s, NETLOG, "security", "10.0.0.1 GET /")
            .expect(201);
        app.vault.erase_subject(s.parse().unwrap(), "test").unwrap();
        let erased = app.decide(&app.admin, &s, "account", &[PHONE]);
        assert_eq!(reasons(&erased), ["subject.erased"]);
        let kept = app
            .read(&app.admin, &s, NETLOG, "security")
            .expect(200)
            .json();
        assert_eq!(kept["records"][0]["value"], "10.0.0.1 GET /");
    });
}

#[test]
fn decisions_answer_batches_in_order_and_are_all_audited() {
    each_backend(|app| {
        let s = app.subject();
        let before = app.audit_len();
        app.decide(&app.admin, &s, "account", &[PHONE]);
        assert_eq!(app.audit_len(), before + 1);

        let batch = json!({ "requests": [
            { "subject": s, "purpose": "account", "categories": [PHONE] },
            { "subject": s, "purpose": "marketing", "categories": [EMAIL] },
            { "subject": s, "purpose": "security", "categories": [NETLOG] },
        ]});
        let answer = app
            .json("POST", "/v1/decisions", &app.admin, &batch)
            .expect(200)
            .json();
        let decisions = answer["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 3);
        assert_eq!(decisions[0]["allowed"], true);
        assert_eq!(reasons(&decisions[1]), ["consent.missing"]);
        assert_eq!(reasons(&decisions[2]), ["basis.legal_obligation"]);
        assert_eq!(app.audit_len(), before + 4);

        // A denied read is a decision too, and audited as one.
        let before = app.audit_len();
        app.read(&app.admin, &s, EMAIL, "marketing")
            .expect_error(403, "gate.denied");
        assert_eq!(app.audit_len(), before + 1);
    });
}
