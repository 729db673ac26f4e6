//! API keys over HTTP: every `/v1` call needs one, a bad key of any kind gets the same answer, a
//! revoked key is refused on its next call, and admin-only routes refuse service keys.

use custodia_core::ApiKeyId;
use serde_json::json;

use crate::app::each_backend;

#[test]
fn every_v1_call_needs_a_bearer_key() {
    each_backend(|app| {
        let missing = app.raw("GET", "/v1/policy", None, &[], None);
        missing.expect_error(401, "auth.missing");
        assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
        app.raw(
            "GET",
            "/v1/policy",
            None,
            &[("Authorization", "Basic dXNlcjpwYXNz")],
            None,
        )
        .expect_error(401, "auth.missing");

        let good = app.service_key(&["account"]);
        let (id, _) = good.split_once('.').unwrap();
        let unknown_id = format!("api_{}.{}", "0".repeat(32), good.split_once('.').unwrap().1);
        let wrong_secret = format!("{id}.{}", "0".repeat(64));
        let bodies: Vec<_> = ["garbage", unknown_id.as_str(), wrong_secret.as_str()]
            .into_iter()
            .map(|token| {
                app.get("/v1/policy", token)
                    .expect_error(401, "auth.invalid_key")
            })
            .collect();
        // One answer for every way a key can be wrong.
        assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
        app.get("/v1/policy", &good).expect(200);
    });
}

#[test]
fn a_revoked_key_is_refused_on_its_next_call() {
    each_backend(|app| {
        let token = app.service_key(&["account"]);
        app.get("/v1/policy", &token).expect(200);
        let id: ApiKeyId = token.split_once('.').unwrap().0.parse().unwrap();
        app.vault.revoke_api_key(id, "test").unwrap();
        app.get("/v1/policy", &token)
            .expect_error(401, "auth.invalid_key");
        app.json(
            "POST",
            "/v1/subjects",
            &token,
            &json!({ "external_id": "after-revocation", "jurisdiction": "CN" }),
        )
        .expect_error(401, "auth.invalid_key");
        assert_eq!(app.vault.find_subject("after-revocation").unwrap(), None);
    });
}

#[test]
fn admin_routes_refuse_service_keys() {
    each_backend(|app| {
        let service = app.service_key(&["account"]);
        let created = app
            .json(
                "POST",
                "/v1/subjects",
                &service,
                &json!({ "external_id": "made-by-a-service", "jurisdiction": "DE", "age_band": "adult" }),
            )
            .expect(201)
            .json();
        let id = created["id"].as_str().unwrap();

        app.get(&format!("/v1/subjects/{id}"), &service)
            .expect_error(403, "auth.admin_required");
        let profile = app
            .get(&format!("/v1/subjects/{id}"), &app.admin)
            .expect(200)
            .json();
        assert_eq!(profile["id"], id);
        assert_eq!(profile["profile"]["external_id"], "made-by-a-service");
        assert_eq!(profile["profile"]["jurisdiction"], "DE");
        assert_eq!(profile["profile"]["age_band"], "adult");
        assert_eq!(profile["erased_at"], json!(null));

        let before = app.audit_len();
        app.raw(
            "POST",
            "/v1/policy",
            Some(&service),
            &[("Content-Type", "application/toml")],
            Some(crate::policy::version_two().as_bytes()),
        )
        .expect_error(403, "auth.admin_required");
        assert_eq!(app.audit_len(), before);
    });
}

#[test]
fn health_metrics_and_the_document_need_no_key() {
    each_backend(|app| {
        for path in ["/healthz", "/metrics", "/openapi.json"] {
            app.raw("GET", path, None, &[], None).expect(200);
        }
        assert_eq!(
            app.raw("GET", "/healthz", None, &[], None).json(),
            json!({ "status": "ok" })
        );
    });
}
