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
    for forbidden in [s.as_str(), "sub_", "purpose=", "+86", "account\""] {
        assert!(!text.contains(forbidden), "{forbidden} in the log:\n{text}");
    }
}
