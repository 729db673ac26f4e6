//! The scheduled sweeper inside the server: with a short interval it deletes a record soon after
//! the (moved) clock says it expired, counts its runs in `/metrics`, keeps what a hold keeps, and
//! stops with the server. The interval's parsing is tested beside the parser.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::app::{backends, spawn_app_with};

const DEVICE: &str = "user.device.device_id";

fn options(every: Duration) -> custodia_server::ServerOptions {
    custodia_server::ServerOptions {
        sweep_interval: every,
        ..custodia_server::ServerOptions::default()
    }
}

/// Waits, within a bound, until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_scheduled_sweeper_deletes_what_expired_when_its_interval_elapses() {
    for backend in backends() {
        let app = spawn_app_with(&backend, options(Duration::from_millis(50)));
        let kept = app.subject();
        let swept = app.subject();
        for subject in [&kept, &swept] {
            app.write(&app.admin, subject, DEVICE, "crash_reporting", "android-1")
                .expect(201);
        }
        app.json(
            "POST",
            "/v1/holds",
            &app.admin,
            &json!({ "subject": kept, "reason": "litigation" }),
        )
        .expect(201);
        // The schedule runs on the server's own timer; nothing has expired yet.
        let metrics = || {
            app.raw("GET", "/metrics", None, &[], None)
                .expect(200)
                .text()
        };
        eventually("a scheduled sweep", || {
            !metrics().contains("custodia_sweep_runs_total{trigger=\"scheduled\",outcome=\"ok\"} 0")
        });
        assert_eq!(app.record_count(), 2);

        app.clock.advance_days(400);
        eventually("the expired record's deletion", || app.record_count() == 1);
        // The run is counted once the sweep returns, a moment after its deletions commit.
        eventually("the sweep's counts", || {
            let text = metrics();
            text.contains("custodia_sweep_deleted_total 1")
                && text.contains("custodia_sweep_held_records 1")
        });
        let text = metrics();
        assert!(
            text.contains("custodia_sweep_runs_total{trigger=\"scheduled\",outcome=\"error\"} 0"),
            "{text}"
        );
        // The held subject's record is past its expiry, so no longer served, but still kept.
        let read = app
            .read(&app.admin, &kept, DEVICE, "crash_reporting")
            .expect(200)
            .json();
        assert_eq!(
            read["records"].as_array().unwrap().len(),
            0,
            "expired: not served"
        );
        assert_eq!(app.record_count(), 1, "but kept by the hold");
        // Dropping the app stops the server and its sweeper; a hang here would fail the test.
        drop(app);
    }
}

#[test]
fn a_zero_interval_schedules_nothing() {
    let app = spawn_app_with(&crate::app::Backend::Sqlite, options(Duration::ZERO));
    let s = app.subject();
    app.write(&app.admin, &s, DEVICE, "crash_reporting", "android-2")
        .expect(201);
    app.clock.advance_days(400);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(app.record_count(), 1);
    let text = app
        .raw("GET", "/metrics", None, &[], None)
        .expect(200)
        .text();
    assert!(
        text.contains("custodia_sweep_runs_total{trigger=\"scheduled\",outcome=\"ok\"} 0"),
        "{text}"
    );
}
