//! Records over HTTP: text and binary values round-trip, the answer's shape, and one subject's id
//! never reaching another subject's data.

use serde_json::json;

use crate::app::each_backend;
use crate::gate::{AUDIO, NETLOG, PHONE};

#[test]
fn text_and_binary_values_round_trip() {
    each_backend(|app| {
        let s = app.subject();
        let written = app
            .write(&app.admin, &s, PHONE, "account", "+86 138 0000 0002")
            .expect(201)
            .json();
        assert!(written["id"].as_str().unwrap().starts_with("rec_"));
        assert_eq!(written["rule"], "account-data");
        assert_eq!(written["expires_at"], json!(null));
        assert_eq!(written["statutory"], false);

        let statutory = app
            .write(&app.admin, &s, NETLOG, "security", "10.0.0.1 GET /")
            .expect(201)
            .json();
        assert_eq!(statutory["statutory"], true);
        assert_eq!(statutory["expires_at"], "2026-08-10T09:00:00Z");

        // Bytes that are not UTF-8 go in and come out as base64.
        app.consent(&s, "given", &["ai_transcription"]).expect(201);
        app.json(
            "PUT",
            &format!("/v1/subjects/{s}/records/{AUDIO}"),
            &app.admin,
            &json!({ "purpose": "ai_transcription", "value_base64": "/wCA/w==" }),
        )
        .expect(201);

        let phone = app
            .read(&app.admin, &s, PHONE, "account")
            .expect(200)
            .json();
        assert_eq!(phone["records"][0]["value"], "+86 138 0000 0002");
        assert_eq!(phone["records"][0]["id"], written["id"]);
        assert_eq!(phone["records"][0]["purpose"], "account");
        assert_eq!(phone["records"][0]["collected_at"], "2026-02-10T09:00:00Z");
        assert_eq!(phone["reasons"], json!(["basis.contract"]));
        let audio = app
            .read(&app.admin, &s, AUDIO, "ai_transcription")
            .expect(200)
            .json();
        assert_eq!(audio["records"][0]["value_base64"], "/wCA/w==");
        assert!(audio["records"][0].get("value").is_none());
    });
}

#[test]
fn a_value_is_text_or_base64_never_both_or_neither() {
    each_backend(|app| {
        let s = app.subject();
        let path = format!("/v1/subjects/{s}/records/{PHONE}");
        let before = (app.record_count(), app.audit_len());
        for body in [
            json!({ "purpose": "account", "value": "a", "value_base64": "YQ==" }),
            json!({ "purpose": "account" }),
            json!({ "purpose": "account", "value_base64": "not base64!" }),
            json!({ "value": "no purpose" }),
        ] {
            app.json("PUT", &path, &app.admin, &body)
                .expect_error(422, "request.invalid_body");
        }
        assert_eq!((app.record_count(), app.audit_len()), before);
    });
}

#[test]
fn one_subjects_id_never_reaches_another_subjects_data() {
    each_backend(|app| {
        let a = app.subject();
        let b = app.subject();
        app.write(&app.admin, &a, PHONE, "account", "A's phone")
            .expect(201);
        let b_record = app
            .write(&app.admin, &b, PHONE, "account", "B's phone")
            .expect(201)
            .json();

        let read_a = app.read(&app.admin, &a, PHONE, "account").expect(200);
        let records = read_a.json()["records"].as_array().unwrap().clone();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["value"], "A's phone");
        assert_ne!(records[0]["id"], b_record["id"]);
        assert!(!read_a.text().contains("B's phone"));

        // B's consent events are not reachable through A's path either.
        let b_consent = app.consent(&b, "given", &["marketing"]).expect(201).json();
        let consent_id = b_consent["event"]["id"].as_str().unwrap();
        app.get(
            &format!("/v1/subjects/{a}/consents/{consent_id}/receipt"),
            &app.admin,
        )
        .expect_error(404, "consent.not_found");
        let a_ledger = app
            .get(&format!("/v1/subjects/{a}/consents"), &app.admin)
            .expect(200)
            .json();
        assert_eq!(a_ledger["events"], json!([]));

        // A subject that does not exist has nothing to read or write.
        let ghost = "sub_00000000000000000000000000000000";
        app.read(&app.admin, ghost, PHONE, "account")
            .expect_error(404, "vault.subject_not_found");
        app.write(&app.admin, ghost, PHONE, "account", "x")
            .expect_error(404, "vault.subject_not_found");
    });
}
