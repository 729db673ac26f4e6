//! The policy over HTTP: the version in force and its history, the rendered text, and
//! publishing (a new version, a taken label, a file with findings, a file that does not parse).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::app::{TestApp, backends, each_backend, policy_source, spawn_app_with};

/// The test policy with a new label and a longer retention for e-mail addresses: a material
/// change for `marketing`.
pub fn version_two() -> String {
    let source = policy_source();
    let old = "id = \"email\"\ncategories = [\"user.contact.email\"]\nkeep = \"1y\"";
    assert!(source.contains(old));
    source
        .replacen("version = \"2025-06-01\"", "version = \"2025-09-01\"", 1)
        .replacen(old, &old.replace("1y", "3y"), 1)
}

fn publish(app: &TestApp, source: &str) -> crate::http::Response {
    app.raw(
        "POST",
        "/v1/policy",
        Some(&app.admin),
        &[("Content-Type", "application/toml")],
        Some(source.as_bytes()),
    )
}

#[test]
fn the_policy_in_force_its_history_and_its_text() {
    each_backend(|app| {
        let service = app.service_key(&["account"]);
        let policy = app.get("/v1/policy", &service).expect(200).json();
        assert_eq!(policy["version"], "2025-06-01");
        assert_eq!(policy["effective"], "2025-06-01");
        assert_eq!(policy["controller"]["name"], "Example Audio Co., Ltd.");
        assert_eq!(policy["controller"]["product"], "ExampleTune");
        assert_eq!(
            policy["history"],
            json!([{ "version": "2025-06-01", "published_at": "2026-02-10T09:00:00Z", "fresh_consent_purposes": [] }])
        );

        let text = app.get("/v1/policy/text", &service).expect(200);
        assert!(
            text.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        let html = text.text();
        assert!(html.contains("Example Audio Co., Ltd."), "{html}");
        assert!(html.contains("Transcribing your recordings"));
    });
}

#[test]
fn publishing_a_version_puts_it_in_force_with_its_changes() {
    each_backend(|app| {
        app.clock.advance_days(3);
        let published = publish(app, &version_two()).expect(201).json();
        assert_eq!(published["version"], "2025-09-01");
        assert_eq!(published["previous"], "2025-06-01");
        assert_eq!(published["fresh_consent_purposes"], json!(["marketing"]));
        let change = &published["changes"][0];
        assert_eq!(change["kind"], "changed");
        assert_eq!(change["material"], true);
        assert_eq!(change["purposes"], json!(["marketing"]));

        let policy = app.get("/v1/policy", &app.admin).expect(200).json();
        assert_eq!(policy["version"], "2025-09-01");
        let history = policy["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1]["published_at"], "2026-02-13T09:00:00Z");
        assert_eq!(history[1]["fresh_consent_purposes"], json!(["marketing"]));

        let before = app.audit_len();
        publish(app, &version_two()).expect_error(409, "policy.version_conflict");

        // Personal data under consent without separate consent for a sensitive category.
        let unclean = policy_source()
            .replacen("version = \"2025-06-01\"", "version = \"2025-10-01\"", 1)
            .replacen("separate_consent = true\n", "", 1);
        let body = publish(app, &unclean).expect_error(422, "policy.not_clean");
        assert!(!body["details"]["findings"].as_array().unwrap().is_empty());
        publish(app, "version = [unterminated").expect_error(422, "vault.invalid");
        app.raw(
            "POST",
            "/v1/policy",
            Some(&app.admin),
            &[("Content-Type", "application/json")],
            Some(b"{}"),
        )
        .expect_error(415, "request.unsupported_media_type");
        app.raw(
            "POST",
            "/v1/policy",
            Some(&app.admin),
            &[("Content-Type", "application/toml")],
            Some(&[0xff, 0xfe, 0x00]),
        )
        .expect_error(400, "request.invalid_encoding");
        assert_eq!(app.audit_len(), before);
        assert_eq!(
            app.get("/v1/policy", &app.admin).json()["version"],
            "2025-09-01"
        );
    });
}

#[test]
fn a_version_another_instance_publishes_comes_into_force_here() {
    for backend in backends() {
        let options = custodia_server::ServerOptions {
            policy_reload_interval: Duration::from_millis(20),
            ..custodia_server::ServerOptions::default()
        };
        let app = spawn_app_with(&backend, options);
        let s = app.subject();
        app.consent(&s, "given", &["marketing"]).expect(201);
        app.clock.advance_days(1);

        let other = app.another_vault();
        other.publish_policy(&version_two(), "test").unwrap();
        // The reloader runs on the server's own timer; wait for it, within a bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.get("/v1/policy", &app.admin).json()["version"] != "2025-09-01" {
            assert!(
                Instant::now() < deadline,
                "the new version never came into force"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let superseded = app.decide(&app.admin, &s, "marketing", &[crate::gate::EMAIL]);
        assert_eq!(crate::app::reasons(&superseded), ["consent.superseded"]);
    }
}
