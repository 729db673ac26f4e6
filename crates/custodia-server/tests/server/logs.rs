//! The request log: one JSON line per request with the route template, the status, the latency
//! and the caller's key id, and never a subject id, a query string or a value.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::app::{Backend, spawn_app};
use crate::gate::{EMAIL, PHONE};

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn request_logs_carry_route_templates_and_key_ids_only() {
    let sink = Sink::default();
    let writer = sink.clone();
    // Global, so the server's runtime threads log here; the other tests' servers do too, which
    // only widens what the assertions below cover.
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();

    let app = spawn_app(&Backend::Sqlite);
    let s = app.subject();
    app.write(&app.admin, &s, PHONE, "account", "+86 138 0000 0004")
        .expect(201);
    app.read(&app.admin, &s, PHONE, "account").expect(200);
    app.read(&app.admin, &s, EMAIL, "marketing")
        .expect_error(403, "gate.denied");
    app.raw("GET", "/v1/policy", None, &[], None)
        .expect_error(401, "auth.missing");
    // An operation log with a raw device id and address, and a bad one naming neither.
    let entry = serde_json::json!({
        "category": "system.operations.network_log",
        "purpose": "security",
        "occurred_at": "2026-02-10T08:00:00Z",
        "identifiers": { "device_id": "CANARY-LOG-DEVICE-0c2e" },
        "ip_address": "192.0.2.201",
    });
    let path = format!("/v1/subjects/{s}/operation-logs");
    app.json("POST", &path, &app.admin, &entry).expect(201);
    let mut bad = entry.clone();
    bad["ip_address"] = serde_json::json!("192.0.2.201/33");
    app.json("POST", &path, &app.admin, &bad)
        .expect_error(422, "request.invalid_body");
    app.json("POST", "/v1/sweeps", &app.admin, &serde_json::json!({}))
        .expect(200);
    drop(app);

    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "custodia::http")
        .collect();
    let records = "/v1/subjects/{id}/records/{category}";
    let read = requests
        .iter()
        .find(|line| line["route"] == records && line["method"] == "GET" && line["status"] == 200)
        .unwrap_or_else(|| panic!("no read logged in {text}"));
    assert!(read["key"].as_str().unwrap().starts_with("api_"));
    assert!(read["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        requests
            .iter()
            .any(|line| line["route"] == records && line["status"] == 403)
    );
    assert!(
        requests.iter().any(|line| line["route"] == "/v1/policy"
            && line["status"] == 401
            && line["key"] == "-")
    );
    assert!(
        lines
            .iter()
            .any(|line| line["target"] == "custodia::sweep" && line["deleted"] == 0),
        "no sweep summary in {text}"
    );
    for forbidden in [
        s.as_str(),
        "sub_",
        "purpose=",
        "+86",
        "account\"",
        "CANARY-LOG-DEVICE",
        "192.0.2.201",
    ] {
        assert!(!text.contains(forbidden), "{forbidden} in the log:\n{text}");
    }
}
