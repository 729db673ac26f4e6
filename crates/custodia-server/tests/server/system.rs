//! The OpenAPI document lists every route the router serves, and the metrics count requests and
//! decisions without any id or value in them.

use serde_json::Value;

use crate::app::each_backend;
use crate::gate::{EMAIL, PHONE};

/// Every route the router serves, with its methods.
const ROUTES: [(&str, &[&str]); 33] = [
    ("/v1/subjects", &["post"]),
    ("/v1/subjects/{id}", &["get"]),
    ("/v1/subjects/{id}/records/{category}", &["get", "put"]),
    ("/v1/subjects/{id}/operation-logs", &["post"]),
    ("/v1/holds", &["get", "post"]),
    ("/v1/holds/{id}", &["delete"]),
    ("/v1/sweeps", &["post"]),
    ("/v1/disclosures", &["post"]),
    ("/v1/subjects/{id}/disclosures", &["get"]),
    ("/v1/notifications/{id}/ack", &["post"]),
    ("/v1/notifications/{id}/impossible", &["post"]),
    ("/v1/requests", &["get", "post"]),
    ("/v1/requests/{id}", &["get"]),
    ("/v1/requests/{id}/verification", &["post"]),
    ("/v1/requests/{id}/verify", &["post"]),
    ("/v1/requests/{id}/actions", &["post"]),
    ("/v1/requests/{id}/fulfil", &["post"]),
    ("/v1/requests/{id}/notifications", &["get"]),
    ("/v1/subjects/{id}/media", &["get", "post"]),
    ("/v1/media/{id}", &["delete", "get"]),
    ("/v1/media/{id}/content", &["get"]),
    ("/v1/media/{id}/leases", &["post"]),
    ("/v1/media/{id}/leases/{lease}", &["delete"]),
    ("/v1/media/{id}/leases/{lease}/content", &["get"]),
    ("/v1/media/{id}/leases/{lease}/outputs", &["post"]),
    ("/v1/media/{id}/leases/{lease}/complete", &["post"]),
    ("/v1/subjects/{id}/consents", &["get", "post"]),
    ("/v1/subjects/{id}/consents/{consent_id}/receipt", &["get"]),
    ("/v1/decisions", &["post"]),
    ("/v1/policy", &["get", "post"]),
    ("/v1/policy/text", &["get"]),
    ("/healthz", &["get"]),
    ("/metrics", &["get"]),
];

#[test]
fn the_openapi_document_describes_every_route() {
    let app = crate::app::spawn_app(&crate::app::Backend::Sqlite);
    let response = app.raw("GET", "/openapi.json", None, &[], None).expect(200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let doc = response.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc,
        serde_json::to_value(custodia_server::openapi()).unwrap()
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in ROUTES
        .iter()
        .chain([("/openapi.json", &["get"][..])].iter())
    {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is missing"));
        for method in *methods {
            let operation = &item[*method];
            assert!(operation.is_object(), "{method} {path} is missing");
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path}");
            let secured = path.starts_with("/v1");
            assert_eq!(
                responses.contains_key("401"),
                secured,
                "{method} {path} 401"
            );
            let security = &operation["security"];
            if secured {
                assert_eq!(
                    security[0]["bearer"],
                    Value::Array(vec![]),
                    "{method} {path}"
                );
            }
        }
    }
    assert_eq!(paths.len(), ROUTES.len() + 1, "{:?}", paths.keys());
    let mut operation_ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let count = operation_ids.len();
    operation_ids.sort_unstable();
    operation_ids.dedup();
    assert_eq!(operation_ids.len(), count, "operation ids must be unique");
    assert_eq!(count, 41);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(
        error["required"],
        serde_json::json!(["code", "message", "details"])
    );
    // Request bodies deny unknown fields in the document as in the code.
    assert_eq!(
        doc["components"]["schemas"]["CreateSubject"]["additionalProperties"],
        false
    );
}

#[test]
fn metrics_count_requests_and_decisions_without_ids() {
    each_backend(|app| {
        let s = app.subject();
        app.write(&app.admin, &s, PHONE, "account", "+86 138 0000 0003")
            .expect(201);
        app.read(&app.admin, &s, PHONE, "account").expect(200);
        app.read(&app.admin, &s, EMAIL, "marketing")
            .expect_error(403, "gate.denied");
        app.get("/v1/nothing", &app.admin).expect(404);

        let metrics = app.raw("GET", "/metrics", None, &[], None).expect(200);
        assert!(
            metrics
                .header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        let text = metrics.text();
        assert!(text.contains(
            "custodia_http_requests_total{route=\"/v1/subjects/{id}/records/{category}\",method=\"GET\",status=\"2xx\"} 1"
        ), "{text}");
        assert!(text.contains(
            "custodia_http_requests_total{route=\"/v1/subjects/{id}/records/{category}\",method=\"GET\",status=\"4xx\"} 1"
        ));
        assert!(text.contains("route=\"unmatched\""));
        assert!(text.contains("custodia_gate_decisions_total{outcome=\"allow\"} 2"));
        assert!(text.contains("custodia_gate_decisions_total{outcome=\"deny\"} 1"));
        assert!(text.contains("custodia_gate_denial_reasons_total{reason=\"consent.missing\"} 1"));
        assert!(text.contains(
            "custodia_http_request_duration_seconds_bucket{route=\"/v1/subjects\",le=\"+Inf\"} 1"
        ));
        for forbidden in [
            s.as_str(),
            "sub_",
            "rec_",
            "api_",
            "+86",
            "purpose=",
            "/v1/nothing",
        ] {
            assert!(!text.contains(forbidden), "{forbidden} in metrics");
        }
    });
}
