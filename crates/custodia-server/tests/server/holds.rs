//! Legal holds and the sweep route over HTTP: a hold keeps expired records through sweeps until
//! it is released or ends; a dry run deletes nothing; only admin keys reach either; bad bodies
//! get stable codes and change nothing.

use serde_json::{Value, json};

use crate::app::{Backend, TestApp, each_backend, spawn_app};

const DEVICE: &str = "user.device.device_id";

/// Writes a device id (kept a year after collection) and returns the record's id.
fn device_record(app: &TestApp, subject: &str) -> String {
    app.write(
        &app.admin,
        subject,
        DEVICE,
        "crash_reporting",
        "android-1234",
    )
    .expect(201)
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn sweep(app: &TestApp, body: &Value) -> Value {
    app.json("POST", "/v1/sweeps", &app.admin, body)
        .expect(200)
        .json()
}

fn place(app: &TestApp, body: &Value) -> Value {
    app.json("POST", "/v1/holds", &app.admin, body)
        .expect(201)
        .json()
}

#[test]
fn a_hold_keeps_expired_records_until_it_is_released() {
    each_backend(|app| {
        let held = app.subject();
        let other = app.subject();
        device_record(app, &held);
        device_record(app, &other);

        let hold = place(app, &json!({ "subject": held, "reason": "case 2026-17" }));
        let id = hold["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("hold_"), "{hold}");
        assert_eq!(hold["subject"], held.as_str());
        assert_eq!(hold["category"], Value::Null);
        assert_eq!(hold["reason"], "case 2026-17");
        assert_eq!(hold["created_at"], "2026-02-10T09:00:00Z");
        assert_eq!(hold["ends_at"], Value::Null);
        assert_eq!(hold["released_at"], Value::Null);
        assert_eq!(hold["active"], true);
        let listed = app.get("/v1/holds", &app.admin).expect(200).json();
        assert_eq!(listed["holds"], json!([hold]));

        // A year and a bit later both records have expired; the hold keeps one.
        app.clock.advance_days(400);
        let before = app.record_count();
        let dry = sweep(app, &json!({ "dry_run": true }));
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["deleted"], 1);
        assert_eq!(dry["held"], 1);
        assert_eq!(dry["by_rule"][0]["category"], DEVICE);
        assert_eq!(dry["by_rule"][0]["count"], 1);
        assert_eq!(app.record_count(), before, "a dry run deletes nothing");

        let swept = sweep(app, &json!({}));
        assert_eq!(swept["dry_run"], false);
        assert_eq!(swept["deleted"], 1);
        assert_eq!(swept["held"], 1);
        assert_eq!(swept["by_rule"], dry["by_rule"]);
        assert_eq!(app.record_count(), before - 1);
        let again = sweep(app, &json!({ "dry_run": false }));
        assert_eq!(
            (again["deleted"].clone(), again["held"].clone()),
            (json!(0), json!(1))
        );

        // Released: the next sweep takes what it kept. Releasing twice answers the same.
        let released = app
            .raw(
                "DELETE",
                &format!("/v1/holds/{id}"),
                Some(&app.admin),
                &[],
                None,
            )
            .expect(200)
            .json();
        assert_eq!(released["id"], id.as_str());
        assert_eq!(released["released_at"], "2027-03-17T09:00:00Z");
        assert_eq!(released["active"], false);
        let audit = app.audit_len();
        app.clock.advance_millis(1000);
        let twice = app
            .raw(
                "DELETE",
                &format!("/v1/holds/{id}"),
                Some(&app.admin),
                &[],
                None,
            )
            .expect(200)
            .json();
        assert_eq!(twice, released);
        assert_eq!(app.audit_len(), audit, "a second release audits nothing");

        let last = sweep(app, &json!({}));
        assert_eq!(
            (last["deleted"].clone(), last["held"].clone()),
            (json!(1), json!(0))
        );
        assert_eq!(app.record_count(), before - 2);

        let metrics = app
            .raw("GET", "/metrics", None, &[], None)
            .expect(200)
            .text();
        assert!(
            metrics.contains("custodia_sweep_runs_total{trigger=\"request\",outcome=\"ok\"} 3"),
            "{metrics}"
        );
        assert!(
            metrics.contains("custodia_sweep_deleted_total 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("custodia_sweep_held_records 0"),
            "{metrics}"
        );
    });
}

#[test]
fn a_hold_on_a_category_ends_by_itself() {
    each_backend(|app| {
        let s = app.subject();
        device_record(app, &s);
        let hold = place(
            app,
            &json!({
                "category": DEVICE,
                "reason": "regulator's inquiry",
                "ends_at": "2027-04-01T00:00:00Z",
            }),
        );
        assert_eq!(hold["subject"], Value::Null);
        assert_eq!(hold["category"], DEVICE);
        assert_eq!(hold["ends_at"], "2027-04-01T00:00:00Z");

        app.clock.advance_days(400); // 2027-03-17: expired, still held
        let kept = sweep(app, &json!({}));
        assert_eq!(
            (kept["deleted"].clone(), kept["held"].clone()),
            (json!(0), json!(1))
        );
        app.clock.advance_days(20); // 2027-04-06: the hold has ended
        let listed = app.get("/v1/holds", &app.admin).expect(200).json();
        assert_eq!(listed["holds"][0]["active"], false);
        assert_eq!(listed["holds"][0]["released_at"], Value::Null);
        let gone = sweep(app, &json!({}));
        assert_eq!(
            (gone["deleted"].clone(), gone["held"].clone()),
            (json!(1), json!(0))
        );
        assert_eq!(app.record_count(), 0);
    });
}

#[test]
fn holds_and_sweeps_take_admin_keys_only() {
    each_backend(|app| {
        let service = app.service_key(&["crash_reporting"]);
        let hold = place(app, &json!({ "reason": "everything, for now" }));
        let id = hold["id"].as_str().unwrap();
        let before = app.audit_len();
        app.json("POST", "/v1/holds", &service, &json!({ "reason": "mine" }))
            .expect_error(403, "auth.admin_required");
        app.get("/v1/holds", &service)
            .expect_error(403, "auth.admin_required");
        app.raw(
            "DELETE",
            &format!("/v1/holds/{id}"),
            Some(&service),
            &[],
            None,
        )
        .expect_error(403, "auth.admin_required");
        app.json("POST", "/v1/sweeps", &service, &json!({}))
            .expect_error(403, "auth.admin_required");
        app.raw("GET", "/v1/holds", None, &[], None)
            .expect_error(401, "auth.missing");
        app.raw("POST", "/v1/sweeps", Some("not-a-key"), &[], None)
            .expect_error(401, "auth.invalid_key");
        assert_eq!(app.audit_len(), before);
        let listed = app.get("/v1/holds", &app.admin).expect(200).json();
        assert_eq!(listed["holds"][0]["active"], true);
    });
}

#[test]
fn bad_hold_and_sweep_requests_get_stable_codes_and_change_nothing() {
    each_backend(|app| {
        let s = app.subject();
        let before = app.audit_len();
        let invalid_body = [
            json!({ "reason": "x", "until": "2027-01-01T00:00:00Z" }),
            json!({ "subject": s }),
            json!({ "reason": 17 }),
            json!({ "reason": "x", "subject": "not-a-subject" }),
            json!({ "reason": "x", "ends_at": "2027-01-01" }),
            json!({ "reason": "x", "ends_at": "next week" }),
        ];
        for body in invalid_body {
            let error = app
                .json("POST", "/v1/holds", &app.admin, &body)
                .expect_error(422, "request.invalid_body");
            assert!(!error["message"].as_str().unwrap().contains("next week"));
        }
        for (body, field) in [
            (json!({ "reason": "   " }), "reason"),
            (json!({ "reason": "x".repeat(501) }), "reason"),
            (
                json!({ "reason": "x", "ends_at": "2026-02-10T08:59:59Z" }),
                "ends_at",
            ),
        ] {
            let error = app
                .json("POST", "/v1/holds", &app.admin, &body)
                .expect_error(422, "vault.invalid");
            assert_eq!(error["details"]["field"], field);
        }
        app.json(
            "POST",
            "/v1/holds",
            &app.admin,
            &json!({ "reason": "x", "category": "user.secret" }),
        )
        .expect_error(422, "vault.unknown_category");
        app.json(
            "POST",
            "/v1/holds",
            &app.admin,
            &json!({ "reason": "x", "subject": "sub_00000000000000000000000000000000" }),
        )
        .expect_error(404, "vault.subject_not_found");
        app.raw("POST", "/v1/holds", Some(&app.admin), &[], Some(b"{}"))
            .expect_error(415, "request.unsupported_media_type");
        app.raw(
            "POST",
            "/v1/holds",
            Some(&app.admin),
            &[("Content-Type", "application/json")],
            Some(b"{\"reason\":"),
        )
        .expect_error(400, "request.malformed_json");

        app.raw("DELETE", "/v1/holds/hold_42", Some(&app.admin), &[], None)
            .expect_error(400, "request.invalid_id");
        app.raw(
            "DELETE",
            &format!("/v1/holds/{s}"),
            Some(&app.admin),
            &[],
            None,
        )
        .expect_error(400, "request.invalid_id");
        app.raw(
            "DELETE",
            "/v1/holds/hold_00000000000000000000000000000000",
            Some(&app.admin),
            &[],
            None,
        )
        .expect_error(404, "hold.not_found");
        app.raw("PUT", "/v1/holds", Some(&app.admin), &[], None)
            .expect_error(405, "route.method_not_allowed");

        for body in [
            json!({ "dry_run": "yes" }),
            json!({ "force": true }),
            json!(7),
        ] {
            app.json("POST", "/v1/sweeps", &app.admin, &body)
                .expect_error(422, "request.invalid_body");
        }
        app.raw("POST", "/v1/sweeps", Some(&app.admin), &[], None)
            .expect_error(415, "request.unsupported_media_type");

        assert_eq!(app.audit_len(), before);
        assert_eq!(app.get("/v1/holds", &app.admin).json()["holds"], json!([]));
    });
}

#[test]
fn the_openapi_document_describes_holds_and_sweeps() {
    {
        let app = &spawn_app(&Backend::Sqlite);
        let doc = app
            .raw("GET", "/openapi.json", None, &[], None)
            .expect(200)
            .json();
        let paths = &doc["paths"];
        for (path, method) in [
            ("/v1/holds", "post"),
            ("/v1/holds", "get"),
            ("/v1/holds/{id}", "delete"),
            ("/v1/sweeps", "post"),
            ("/v1/subjects/{id}/operation-logs", "post"),
        ] {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
        }
        assert!(paths["/v1/holds/{id}"]["delete"]["responses"]["404"].is_object());
        let schemas = &doc["components"]["schemas"];
        for schema in [
            "PlaceHold",
            "HoldView",
            "StartSweep",
            "SweepView",
            "WriteOperationLog",
        ] {
            assert!(schemas[schema].is_object(), "no schema {schema}");
        }
        assert_eq!(
            schemas["PlaceHold"]["additionalProperties"], false,
            "unknown fields are refused, and the document says so"
        );
    }
}
