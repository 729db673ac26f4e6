//! The consent ledger over HTTP: events with their ISO/IEC TS 27560 receipts, the append-only
//! list, Kantara receipts, and events the policy does not allow.

use serde_json::json;

use crate::app::each_backend;

#[test]
fn each_event_has_a_receipt_and_the_ledger_lists_them_in_order() {
    each_backend(|app| {
        let s = app.subject();
        let given = app
            .consent_with(
                &s,
                json!({ "kind": "given", "purposes": ["ai_transcription"], "method": "web_form" }),
            )
            .expect(201)
            .json();
        let event = &given["event"];
        assert!(event["id"].as_str().unwrap().starts_with("con_"));
        assert_eq!(event["subject"], s);
        assert_eq!(event["kind"], "given");
        assert_eq!(event["policy_version"], "2025-06-01");
        assert_eq!(event["method"], "web_form");
        assert_eq!(event["at"], "2026-02-10T09:00:00Z");
        assert_eq!(event["guardian"], json!(null));
        let receipt = &given["receipt"];
        assert!(receipt["schema"].as_str().unwrap().contains("27560"));
        assert_eq!(receipt["record_id"], event["id"]);
        assert_eq!(receipt["data_subject"], s);
        assert_eq!(receipt["consent"]["state"], "given");
        assert_eq!(
            receipt["purposes"][0]["sensitive_data"],
            json!(["user.content.audio_recording"])
        );

        app.clock.advance_days(1);
        app.consent(&s, "withdrawn", &["ai_transcription"])
            .expect(201);
        let ledger = app
            .get(&format!("/v1/subjects/{s}/consents"), &app.admin)
            .expect(200)
            .json();
        let kinds: Vec<_> = ledger["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, ["given", "withdrawn"]);

        let id = event["id"].as_str().unwrap();
        let iso = app
            .get(
                &format!("/v1/subjects/{s}/consents/{id}/receipt"),
                &app.admin,
            )
            .expect(200)
            .json();
        assert_eq!(&iso, receipt);
        let kantara = app
            .get(
                &format!("/v1/subjects/{s}/consents/{id}/receipt?format=kantara"),
                &app.admin,
            )
            .expect(200)
            .json();
        assert_eq!(kantara["version"], "KI-CR-v1.1.0");
        assert_eq!(kantara["consentReceiptID"], id);
        assert_eq!(kantara["jurisdiction"], "CN");
        assert_eq!(kantara["sensitive"], true);
        app.get(
            &format!("/v1/subjects/{s}/consents/{id}/receipt?format=pdf"),
            &app.admin,
        )
        .expect_error(400, "request.invalid_query");
        app.get(
            &format!("/v1/subjects/{s}/consents/con_00000000000000000000000000000000/receipt"),
            &app.admin,
        )
        .expect_error(404, "consent.not_found");
    });
}

#[test]
fn service_keys_record_consents_and_events_the_policy_forbids_are_refused() {
    each_backend(|app| {
        let s = app.subject();
        let service = app.service_key(&["marketing"]);
        app.json(
            "POST",
            &format!("/v1/subjects/{s}/consents"),
            &service,
            &json!({ "kind": "given", "purposes": ["marketing"], "method": "app_dialog" }),
        )
        .expect(201);

        let before = app.audit_len();
        // Consent does not apply to a purpose that rests on a contract.
        let contract = app.consent(&s, "given", &["account"]);
        let body = contract.expect_error(422, "vault.invalid");
        assert_eq!(body["details"]["field"], "purposes");
        app.consent(&s, "given", &["profiling"])
            .expect_error(422, "vault.unknown_purpose");
        app.consent(&s, "given", &[])
            .expect_error(422, "vault.invalid");
        app.consent_with(
            &s,
            json!({ "kind": "given", "purposes": ["marketing"], "policy_version": "1999-01-01" }),
        )
        .expect_error(422, "vault.invalid");
        app.consent_with(
            &s,
            json!({ "kind": "given", "purposes": ["marketing"], "expires_at": "2020-01-01T00:00:00Z" }),
        )
        .expect_error(422, "vault.invalid");
        app.consent_with(
            &s,
            json!({ "kind": "given", "purposes": ["marketing"], "expires_at": "2030-01-01" }),
        )
        .expect_error(422, "request.invalid_body");
        app.consent_with(
            &s,
            json!({ "kind": "given", "purposes": ["marketing"], "method": "" }),
        )
        .expect_error(422, "vault.invalid");
        app.consent(
            "sub_00000000000000000000000000000000",
            "given",
            &["marketing"],
        )
        .expect_error(404, "vault.subject_not_found");
        assert_eq!(app.audit_len(), before);
    });
}
