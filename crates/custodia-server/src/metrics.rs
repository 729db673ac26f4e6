//! [`Metrics`]: request counts by route template, method and status class, request latency
//! histograms by route template, gate decisions by outcome and denial reason, and retention
//! sweeps (runs by trigger and outcome, records deleted, records held), rendered in the
//! Prometheus text exposition format. Labels are route templates, methods, status classes and
//! stable reason codes: never an id or a value, so a scrape reveals nothing about anyone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use custodia_gate::Decision;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Latency {
    /// Cumulative counts per bucket (each counts every sample at or below its bound).
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, &'static str, &'static str), u64>,
    latency: BTreeMap<String, Latency>,
    denials: BTreeMap<&'static str, u64>,
    sweeps: BTreeMap<(&'static str, &'static str), u64>,
    swept: u64,
    swept_media: u64,
    sweep_held: u64,
}

/// What can start a sweep, as metric labels (each rendered even before its first run).
const SWEEP_TRIGGERS: [&str; 2] = ["scheduled", "request"];

/// The server's counters. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    /// Decisions by outcome, outside the lock: counted on every decision, the gate's hot path.
    outcomes: Arc<Outcomes>,
}

#[derive(Debug, Default)]
struct Outcomes {
    allowed: AtomicU64,
    denied: AtomicU64,
}

/// A method as a label: the standard ones by name, anything else as `OTHER`, so a client cannot
/// grow the label set.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Escapes a label value as the exposition format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counters stay meaningful after a panic elsewhere: each update is a few additions.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one request. `route` is the matched route template (never the raw path).
    pub fn observe_request(&self, route: &str, method: &str, status: StatusCode, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut inner = self.lock();
        *inner
            .requests
            .entry((route.to_owned(), method_label(method), status_class(status)))
            .or_default() += 1;
        let latency = inner.latency.entry(route.to_owned()).or_default();
        for (count, bound) in latency.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        latency.sum_seconds += seconds;
        latency.count += 1;
    }

    /// Counts gate decisions, with the reasons of each denial.
    pub fn observe_decisions<'a>(&self, decisions: impl IntoIterator<Item = &'a Decision>) {
        // Only denials take the lock, for their reasons.
        let mut inner = None;
        for decision in decisions {
            if decision.allowed {
                self.outcomes.allowed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.outcomes.denied.fetch_add(1, Ordering::Relaxed);
            let inner = inner.get_or_insert_with(|| self.lock());
            for code in decision.codes() {
                *inner.denials.entry(code).or_default() += 1;
            }
        }
    }

    /// Counts one retention sweep started by `trigger` (`scheduled` or `request`): its report,
    /// or `None` when it failed.
    pub fn observe_sweep(
        &self,
        trigger: &'static str,
        report: Option<&custodia_vault::SweepReport>,
    ) {
        let mut inner = self.lock();
        let outcome = if report.is_some() { "ok" } else { "error" };
        *inner.sweeps.entry((trigger, outcome)).or_default() += 1;
        if let Some(report) = report {
            inner.swept = inner.swept.saturating_add(report.deleted);
            inner.swept_media = inner.swept_media.saturating_add(report.media_deleted);
            inner.sweep_held = report.held;
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        // Writing to a String cannot fail; the results are discarded for that reason.
        let _ = writeln!(
            out,
            "# HELP custodia_http_requests_total HTTP requests by route template, method and status class."
        );
        let _ = writeln!(out, "# TYPE custodia_http_requests_total counter");
        for ((route, method, class), count) in &inner.requests {
            let _ = writeln!(
                out,
                "custodia_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{class}\"}} {count}",
                label(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP custodia_http_request_duration_seconds HTTP request latency by route template."
        );
        let _ = writeln!(
            out,
            "# TYPE custodia_http_request_duration_seconds histogram"
        );
        for (route, latency) in &inner.latency {
            let route = label(route);
            for (count, bound) in latency.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "custodia_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "custodia_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                latency.count
            );
            let _ = writeln!(
                out,
                "custodia_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                latency.sum_seconds
            );
            let _ = writeln!(
                out,
                "custodia_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                latency.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP custodia_gate_decisions_total Gate decisions made over HTTP, by outcome."
        );
        let _ = writeln!(out, "# TYPE custodia_gate_decisions_total counter");
        for (outcome, count) in [
            ("allow", &self.outcomes.allowed),
            ("deny", &self.outcomes.denied),
        ] {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "custodia_gate_decisions_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP custodia_gate_denial_reasons_total Reasons given by denying gate decisions."
        );
        let _ = writeln!(out, "# TYPE custodia_gate_denial_reasons_total counter");
        for (reason, count) in &inner.denials {
            let _ = writeln!(
                out,
                "custodia_gate_denial_reasons_total{{reason=\"{reason}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP custodia_sweep_runs_total Retention sweeps run by this instance, by trigger and outcome."
        );
        let _ = writeln!(out, "# TYPE custodia_sweep_runs_total counter");
        for trigger in SWEEP_TRIGGERS {
            for outcome in ["ok", "error"] {
                let count = inner.sweeps.get(&(trigger, outcome)).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "custodia_sweep_runs_total{{trigger=\"{trigger}\",outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP custodia_sweep_deleted_total Expired records and media objects deleted by this instance's retention sweeps."
        );
        let _ = writeln!(out, "# TYPE custodia_sweep_deleted_total counter");
        let _ = writeln!(out, "custodia_sweep_deleted_total {}", inner.swept);
        let _ = writeln!(
            out,
            "# HELP custodia_sweep_media_deleted_total Of the deleted, the media objects."
        );
        let _ = writeln!(out, "# TYPE custodia_sweep_media_deleted_total counter");
        let _ = writeln!(
            out,
            "custodia_sweep_media_deleted_total {}",
            inner.swept_media
        );
        let _ = writeln!(
            out,
            "# HELP custodia_sweep_held_records Expired records kept by legal holds, at this instance's last sweep."
        );
        let _ = writeln!(out, "# TYPE custodia_sweep_held_records gauge");
        let _ = writeln!(out, "custodia_sweep_held_records {}", inner.sweep_held);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        let route = "/v1/subjects/{id}";
        metrics.observe_request(route, "GET", StatusCode::OK, Duration::from_millis(3));
        metrics.observe_request(
            route,
            "BREW",
            StatusCode::NOT_FOUND,
            Duration::from_secs(20),
        );
        let text = metrics.render();
        assert!(text.contains(
            "custodia_http_requests_total{route=\"/v1/subjects/{id}\",method=\"GET\",status=\"2xx\"} 1"
        ));
        assert!(text.contains("method=\"OTHER\",status=\"4xx\"} 1"));
        assert!(text.contains("route=\"/v1/subjects/{id}\",le=\"0.005\"} 1"));
        assert!(text.contains("route=\"/v1/subjects/{id}\",le=\"+Inf\"} 2"));
        assert!(text.contains("custodia_gate_decisions_total{outcome=\"deny\"} 0"));
        assert!(text.contains("custodia_sweep_runs_total{trigger=\"scheduled\",outcome=\"ok\"} 0"));
        assert!(text.contains("custodia_sweep_deleted_total 0"));
    }

    #[test]
    fn counts_sweeps_and_what_they_deleted() {
        let metrics = Metrics::default();
        let report = custodia_vault::SweepReport {
            deleted: 3,
            media_deleted: 1,
            held: 2,
            ..custodia_vault::SweepReport::default()
        };
        metrics.observe_sweep("scheduled", Some(&report));
        metrics.observe_sweep("scheduled", Some(&report));
        metrics.observe_sweep("request", None);
        let text = metrics.render();
        assert!(text.contains("custodia_sweep_runs_total{trigger=\"scheduled\",outcome=\"ok\"} 2"));
        assert!(
            text.contains("custodia_sweep_runs_total{trigger=\"request\",outcome=\"error\"} 1")
        );
        assert!(text.contains("custodia_sweep_deleted_total 6"));
        assert!(text.contains("custodia_sweep_media_deleted_total 2"));
        assert!(text.contains("custodia_sweep_held_records 2"));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
