//! Bad input gets a 4xx with a stable code and changes nothing (design invariant 7): malformed
//! JSON, unknown fields, wrong types, oversized bodies, wrong content types, bad ids, unknown
//! routes and methods. No answer repeats a value the request carried.

use serde_json::json;

use crate::app::{TestApp, each_backend};
use crate::gate::PHONE;

/// A value that must never come back in an answer.
const CANARY: &str = "CANARY-3f1e-personal";

fn put_raw(
    app: &TestApp,
    subject: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> crate::http::Response {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("Content-Type", ct))
        .into_iter()
        .collect();
    app.raw(
        "PUT",
        &format!("/v1/subjects/{subject}/records/{PHONE}"),
        Some(&app.admin),
        &headers,
        Some(body),
    )
}

#[test]
fn bad_bodies_get_stable_codes_and_write_nothing() {
    each_backend(|app| {
        let s = app.subject();
        let before = (app.record_count(), app.audit_len());
        let json = Some("application/json");

        put_raw(app, &s, json, b"{\"purpose\": \"account\", \"value\": ")
            .expect_error(400, "request.malformed_json");
        put_raw(
            app,
            &s,
            json,
            b"{\"purpose\": \"account\", \"value\": \"x\"} trailing",
        )
        .expect_error(400, "request.malformed_json");
        put_raw(app, &s, json, b"").expect_error(400, "request.malformed_json");
        // A struct's fields in order, as an array: serde would take it, the API does not.
        let positional = put_raw(app, &s, json, b" [\"account\", \"x\"]");
        let body = positional.expect_error(422, "request.invalid_body");
        assert_eq!(body["details"]["field"], ".");
        put_raw(app, &s, json, b"[\"account\", ").expect_error(400, "request.malformed_json");

        let unknown = put_raw(
            app,
            &s,
            json,
            format!("{{\"purpose\": \"account\", \"value\": \"x\", \"note\": \"{CANARY}\"}}")
                .as_bytes(),
        );
        let body = unknown.expect_error(422, "request.invalid_body");
        assert!(body["message"].as_str().unwrap().contains("unknown field"));
        let wrong_type = put_raw(
            app,
            &s,
            json,
            format!("{{\"purpose\": [\"{CANARY}\"], \"value\": \"x\"}}").as_bytes(),
        );
        let body = wrong_type.expect_error(422, "request.invalid_body");
        assert_eq!(body["details"]["field"], "purpose");

        put_raw(
            app,
            &s,
            Some("text/plain"),
            b"{\"purpose\": \"account\", \"value\": \"x\"}",
        )
        .expect_error(415, "request.unsupported_media_type");
        put_raw(
            app,
            &s,
            None,
            b"{\"purpose\": \"account\", \"value\": \"x\"}",
        )
        .expect_error(415, "request.unsupported_media_type");

        // One byte over the default limit of 1 MiB.
        let big = format!(
            "{{\"purpose\": \"account\", \"value\": \"{}\"}}",
            "x".repeat(1024 * 1024)
        );
        put_raw(app, &s, json, big.as_bytes()).expect_error(413, "request.too_large");

        for response in [&unknown, &wrong_type] {
            assert!(!response.text().contains(CANARY), "{}", response.text());
        }
        assert_eq!((app.record_count(), app.audit_len()), before);
        // A charset parameter is fine.
        put_raw(
            app,
            &s,
            Some("application/json; charset=utf-8"),
            b"{\"purpose\": \"account\", \"value\": \"x\"}",
        )
        .expect(201);
    });
}

#[test]
fn invalid_fields_are_named_but_their_values_never_repeated() {
    each_backend(|app| {
        let before = app.audit_len();
        for body in [
            json!({ "external_id": "x", "jurisdiction": "CN", "birth_date": CANARY }),
            json!({ "external_id": "x", "jurisdiction": CANARY }),
            json!({ "external_id": CANARY, "jurisdiction": "CN", "guardian": CANARY }),
            json!({ "external_id": CANARY, "jurisdiction": "CN", "age_band": 7 }),
        ] {
            let response = app.json("POST", "/v1/subjects", &app.admin, &body);
            assert!(response.status == 422, "{}", response.text());
            assert!(!response.text().contains(CANARY), "{}", response.text());
        }
        let s = app.subject();
        let before_consent = app.audit_len();
        let response = app.consent_with(
            &s,
            json!({ "kind": "given", "purposes": ["marketing"], "expires_at": CANARY }),
        );
        response.expect_error(422, "request.invalid_body");
        assert!(!response.text().contains(CANARY));
        let response = app.consent_with(&s, json!({ "kind": CANARY, "purposes": ["marketing"] }));
        response.expect_error(422, "request.invalid_body");
        assert!(!response.text().contains(CANARY));
        assert_eq!(app.audit_len(), before_consent);
        assert!(before < before_consent);
    });
}

#[test]
fn bad_ids_routes_methods_and_queries_get_stable_codes() {
    each_backend(|app| {
        let s = app.subject();
        app.get("/v1/subjects/not-an-id", &app.admin)
            .expect_error(400, "request.invalid_id");
        app.get(
            &format!("/v1/subjects/{}", s.replace("sub_", "rec_")),
            &app.admin,
        )
        .expect_error(400, "request.invalid_id");
        app.get(
            &format!("/v1/subjects/{s}/consents/con_zz/receipt"),
            &app.admin,
        )
        .expect_error(400, "request.invalid_id");
        app.get(&format!("/v1/subjects/{s}/records/{PHONE}"), &app.admin)
            .expect_error(400, "request.invalid_query");
        app.get(
            &format!("/v1/subjects/{s}/records/{PHONE}?purpose=account&extra=1"),
            &app.admin,
        )
        .expect_error(400, "request.invalid_query");

        app.get("/v1/nothing-here", &app.admin)
            .expect_error(404, "route.not_found");
        app.raw("GET", "/nothing", None, &[], None)
            .expect_error(404, "route.not_found");
        let wrong_method = app.raw("DELETE", "/v1/policy", Some(&app.admin), &[], None);
        wrong_method.expect_error(405, "route.method_not_allowed");
        let allow = wrong_method.header("allow").unwrap_or_default().to_owned();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        app.raw("POST", "/healthz", None, &[], None)
            .expect_error(405, "route.method_not_allowed");
    });
}

#[test]
fn an_oversized_batch_is_refused_whole() {
    each_backend(|app| {
        let s = app.subject();
        let question = json!({ "subject": s, "purpose": "account", "categories": [PHONE] });
        let before = app.audit_len();
        app.json(
            "POST",
            "/v1/decisions",
            &app.admin,
            &json!({ "requests": vec![question.clone(); 1001] }),
        )
        .expect_error(422, "request.batch_too_large");
        app.json(
            "POST",
            "/v1/decisions",
            &app.admin,
            &json!({ "requests": [] }),
        )
        .expect_error(422, "request.invalid_body");
        let nested = app.json(
            "POST",
            "/v1/decisions",
            &app.admin,
            &json!({ "requests": [question.clone(), { "subject": s, "purpose": "account", "categories": [] }] }),
        );
        let body = nested.expect_error(422, "request.invalid_body");
        assert_eq!(body["details"]["field"], "requests[1].categories");
        let typo = app.json(
            "POST",
            "/v1/decisions",
            &app.admin,
            &json!({ "requests": [{ "subject": s, "purpose": "account", "category": [PHONE] }] }),
        );
        typo.expect_error(422, "request.invalid_body");
        assert_eq!(app.audit_len(), before);
        app.json(
            "POST",
            "/v1/decisions",
            &app.admin,
            &json!({ "requests": vec![question; 1000] }),
        )
        .expect(200);
        assert_eq!(app.audit_len(), before + 1000);
    });
}
