//! Operation logs over HTTP: entries are stored de-identified (a pseudonym per identifier, stable
//! and unlike the raw value; IPv4 cut to /24 and IPv6 to /48; the time coarsened as the
//! category's `deidentify` says), under the category's retention rule; raw identifiers and
//! addresses appear in no answer, no error, no audit entry and no file of the data directory.

use serde_json::{Value, json};

use crate::app::{TestApp, each_backend, policy_source};
use crate::http::Response;

const SEARCH: &str = "user.behavior.search_history";
const BROWSING: &str = "user.behavior.browsing_history";
const NETLOG: &str = "system.operations.network_log";

const DEVICE: &str = "CANARY-DEVICE-9d41c7";
const ACCOUNT: &str = "CANARY-ACCOUNT-51e0";
const IPV4: &str = "203.0.113.77";
const IPV6: &str = "2001:db8:85a3:8d3:1319:8a2e:370:7348";
const QUERY: &str = "CANARY QUERY chopin nocturne 3b7a";

/// The test policy with search history (de-identified on collection) and browsing history
/// (de-identified before analysis), kept 180 days, published as a new version.
fn publish_log_policy(app: &TestApp) {
    let source =
        policy_source().replacen("version = \"2025-06-01\"", "version = \"2025-12-01\"", 1)
            + r#"
[[category]]
key = "user.behavior.search_history"
name = "search history"
deidentify = "on_collection"

[[category]]
key = "user.behavior.browsing_history"
name = "browsing history"
deidentify = "before_analysis"

[[purpose]]
key = "recommendations"
name = "Recommending sheet music"
basis = "contract"
categories = ["user.behavior.search_history", "user.behavior.browsing_history"]

[[retention]]
id = "behaviour-logs"
categories = ["user.behavior.search_history", "user.behavior.browsing_history"]
keep = "180d"
"#;
    app.vault.publish_policy(&source, "test").unwrap();
}

fn log(app: &TestApp, token: &str, subject: &str, body: &Value) -> Response {
    app.json(
        "POST",
        &format!("/v1/subjects/{subject}/operation-logs"),
        token,
        body,
    )
}

fn search_entry() -> Value {
    json!({
        "category": SEARCH,
        "purpose": "recommendations",
        "occurred_at": "2026-02-10T08:41:27Z",
        "event": "search",
        "identifiers": { "device_id": DEVICE, "account_id": ACCOUNT },
        "ip_address": IPV4,
        "text": { "query": QUERY },
    })
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in [DEVICE, ACCOUNT, IPV4, IPV6, QUERY, "198.51.100.9"] {
        assert!(!text.contains(canary), "{canary} in {what}: {text}");
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn entries_are_stored_deidentified_under_their_categorys_retention() {
    each_backend(|app| {
        publish_log_policy(app);
        let s = app.subject();

        let search = log(app, &app.admin, &s, &search_entry()).expect(201);
        assert_no_canary("the answer", &search.text());
        let search = search.json();
        assert!(search["id"].as_str().unwrap().starts_with("rec_"));
        assert_eq!(search["rule"], "behaviour-logs");
        assert_eq!(search["expires_at"], "2026-08-09T09:00:00Z");
        assert_eq!(search["statutory"], false);
        let view = &search["deidentified"];
        assert_eq!(view["occurred_at"], "2026-02-10T00:00:00Z");
        assert_eq!(view["time_precision"], "day");
        assert_eq!(view["ip_prefix"], "203.0.113.0/24");
        assert_eq!(view["sealed_fields"], json!(["event", "text.query"]));
        let device = view["pseudonyms"]["device_id"].as_str().unwrap().to_owned();
        let account = view["pseudonyms"]["account_id"]
            .as_str()
            .unwrap()
            .to_owned();
        for pseudonym in [&device, &account] {
            assert!(pseudonym.starts_with("psn_"), "{pseudonym}");
            assert_eq!(pseudonym.len(), 4 + 32);
            assert!(pseudonym[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(device, account);

        // The same device, another category and an IPv6 address: the same pseudonym, the /48,
        // the hour.
        let browsing = log(
            app,
            &app.admin,
            &s,
            &json!({
                "category": BROWSING,
                "purpose": "recommendations",
                "occurred_at": "2026-02-10T08:41:27+00:00",
                "identifiers": { "device_id": DEVICE },
                "ip_address": IPV6,
                "text": { "url": "https://example.com/scores/chopin" },
            }),
        )
        .expect(201)
        .json();
        assert_eq!(browsing["rule"], "behaviour-logs");
        let view = &browsing["deidentified"];
        assert_eq!(view["pseudonyms"]["device_id"], device.as_str());
        assert_eq!(view["ip_prefix"], "2001:db8:85a3::/48");
        assert_eq!(view["occurred_at"], "2026-02-10T08:00:00Z");
        assert_eq!(view["time_precision"], "hour");
        assert_eq!(view["sealed_fields"], json!(["text.url"]));

        // Another subject on the same device gets the same pseudonym; another device does not;
        // the same value under another name does not either.
        let other = app.subject();
        let again = log(app, &app.admin, &other, &search_entry())
            .expect(201)
            .json();
        assert_eq!(
            again["deidentified"]["pseudonyms"]["device_id"],
            device.as_str()
        );
        let mut different = search_entry();
        different["identifiers"] = json!({ "device_id": "another-device", "account_id": DEVICE });
        let different = log(app, &app.admin, &other, &different).expect(201).json();
        let pseudonyms = &different["deidentified"]["pseudonyms"];
        assert_ne!(pseudonyms["device_id"], device.as_str());
        assert_ne!(pseudonyms["account_id"], device.as_str());

        // No deidentify on the category: the second; a statutory network log, kept six months;
        // an IPv4-mapped IPv6 address cut as IPv4.
        let netlog = log(
            app,
            &app.admin,
            &s,
            &json!({
                "category": NETLOG,
                "purpose": "security",
                "occurred_at": "2026-02-10T08:41:27.345Z",
                "event": "login",
                "identifiers": { "device_id": DEVICE },
                "ip_address": "::ffff:198.51.100.9",
            }),
        )
        .expect(201)
        .json();
        assert_eq!(netlog["statutory"], true);
        assert_eq!(netlog["expires_at"], "2026-08-10T09:00:00Z");
        let view = &netlog["deidentified"];
        assert_eq!(view["occurred_at"], "2026-02-10T08:41:27Z");
        assert_eq!(view["time_precision"], "second");
        assert_eq!(view["ip_prefix"], "198.51.100.0/24");
        assert_eq!(view["pseudonyms"]["device_id"], device.as_str());

        // What the record holds, read back through the gate: the de-identified entry, with the
        // free text sealed but there.
        let read = app
            .read(&app.admin, &s, SEARCH, "recommendations")
            .expect(200);
        assert!(!read.text().contains(DEVICE) && !read.text().contains(IPV4));
        let records = read.json()["records"].clone();
        assert_eq!(records.as_array().unwrap().len(), 1);
        let stored: Value = serde_json::from_str(records[0]["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            stored,
            json!({
                "format": "custodia.operation_log/v1",
                "occurred_at": "2026-02-10T00:00:00Z",
                "time_precision": "day",
                "event": "search",
                "pseudonyms": { "device_id": device, "account_id": account },
                "ip_prefix": "203.0.113.0/24",
                "text": { "query": QUERY },
            })
        );

        // Nothing raw at rest: not in the audit chain, not in any file of the data directory.
        app.vault.flush_audit().unwrap();
        let audit = app.data.audit_entries(1, 100_000).unwrap();
        assert!(!audit.is_empty());
        assert_no_canary("the audit chain", &format!("{audit:?}"));
        if let Some(dir) = app.data_dir() {
            for path in files(&dir) {
                let bytes = std::fs::read(&path).unwrap();
                for canary in [DEVICE, ACCOUNT, IPV4, IPV6, QUERY, "198.51.100.9"] {
                    assert!(
                        !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                        "{canary} found in {}",
                        path.display()
                    );
                }
            }
        }
    });
}

#[test]
fn a_service_key_logs_only_for_its_purposes() {
    each_backend(|app| {
        publish_log_policy(app);
        let s = app.subject();
        let crash = app.service_key(&["crash_reporting"]);
        let recommender = app.service_key(&["recommendations"]);
        let before = app.record_count();

        let denied = log(app, &crash, &s, &search_entry());
        assert_no_canary("a denial", &denied.text());
        denied.expect_error(403, "gate.denied");
        let mut not_covered = search_entry();
        not_covered["category"] = json!(NETLOG);
        log(app, &app.admin, &s, &not_covered).expect_error(403, "gate.denied");
        let mut unknown = search_entry();
        unknown["category"] = json!("user.behavior.dreams");
        log(app, &app.admin, &s, &unknown).expect_error(403, "gate.denied");
        assert_eq!(app.record_count(), before);

        log(app, &recommender, &s, &search_entry()).expect(201);
        assert_eq!(app.record_count(), before + 1);
    });
}

#[test]
fn bad_entries_get_stable_codes_name_the_field_and_change_nothing() {
    each_backend(|app| {
        publish_log_policy(app);
        let s = app.subject();
        let before = (app.record_count(), app.audit_len());
        let with = |changes: Value| {
            let mut body = search_entry();
            for (key, value) in changes.as_object().unwrap() {
                if value.is_null() {
                    body.as_object_mut().unwrap().remove(key);
                } else {
                    body[key] = value.clone();
                }
            }
            body
        };
        let many: serde_json::Map<String, Value> = (0..17)
            .map(|i| (format!("id_{i}"), json!(DEVICE)))
            .collect();
        let cases = [
            (
                with(json!({ "user_agent": "x" })),
                "request.invalid_body",
                None,
            ),
            (
                with(json!({ "purpose": null })),
                "request.invalid_body",
                None,
            ),
            (
                with(json!({ "ip_address": "203.0.113.300" })),
                "request.invalid_body",
                Some("ip_address"),
            ),
            (
                with(json!({ "ip_address": format!("{IPV4}:8080") })),
                "request.invalid_body",
                Some("ip_address"),
            ),
            (
                with(json!({ "occurred_at": "2026-02-10" })),
                "request.invalid_body",
                Some("occurred_at"),
            ),
            (
                with(json!({ "identifiers": { "device_id": 42 } })),
                "request.invalid_body",
                Some("identifiers.device_id"),
            ),
            (
                with(json!({ "occurred_at": "2026-02-10T09:06:00Z" })),
                "vault.invalid",
                Some("occurred_at"),
            ),
            (
                with(json!({ "identifiers": { (DEVICE): "x" } })),
                "vault.invalid",
                Some("identifiers"),
            ),
            (
                with(json!({ "identifiers": { "device_id": "x".repeat(513) } })),
                "vault.invalid",
                Some("identifiers"),
            ),
            (
                with(json!({ "identifiers": many })),
                "vault.invalid",
                Some("identifiers"),
            ),
            (
                with(json!({ "text": { "query": "x".repeat(8 * 1024 + 1) } })),
                "vault.invalid",
                Some("text"),
            ),
            (
                with(json!({ "event": "Search!" })),
                "vault.invalid",
                Some("event"),
            ),
            (
                with(json!({ "event": null, "identifiers": {}, "ip_address": null, "text": {} })),
                "vault.invalid",
                Some("entry"),
            ),
        ];
        for (body, code, field) in cases {
            let response = log(app, &app.admin, &s, &body);
            assert_no_canary("an error", &response.text());
            assert!(
                !response.text().contains("203.0.113.300"),
                "{}",
                response.text()
            );
            let error = response.expect_error(422, code);
            if let Some(field) = field {
                assert_eq!(error["details"]["field"], field, "{error}");
            }
        }
        assert_eq!((app.record_count(), app.audit_len()), before);

        log(app, &app.admin, "sub_42", &search_entry()).expect_error(400, "request.invalid_id");
        log(
            app,
            &app.admin,
            "sub_00000000000000000000000000000000",
            &search_entry(),
        )
        .expect_error(404, "vault.subject_not_found");
        app.raw(
            "POST",
            &format!("/v1/subjects/{s}/operation-logs"),
            Some(&app.admin),
            &[],
            Some(b"{}"),
        )
        .expect_error(415, "request.unsupported_media_type");
        assert_eq!(app.record_count(), before.0);
    });
}
