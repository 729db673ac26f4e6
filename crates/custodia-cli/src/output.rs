//! How commands report: JSON documents for machines, lines for people, and errors with their
//! stable code (`error[code]: message`) on stderr, or as `{"error": {...}}` in JSON mode.

use std::io::Write;
use std::process::ExitCode;

/// Exit code when a command ran and found a problem (findings, a broken chain, a bad line).
pub const FOUND_PROBLEM: u8 = 1;
/// Exit code when a command could not run (unreadable input, unavailable store, wrong key).
pub const COULD_NOT_RUN: u8 = 2;

/// Prints a JSON value to stdout.
pub fn json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value:#}");
}

/// Prints a JSON value as one line (for commands that stream JSON lines).
pub fn json_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
}

/// Prints a line to stdout.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Reports an error with its code and returns `exit`.
pub fn error(as_json: bool, code: &str, message: &str, exit: u8) -> ExitCode {
    if as_json {
        json_line(&serde_json::json!({ "error": { "code": code, "message": message } }));
    } else {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error[{code}]: {message}");
    }
    ExitCode::from(exit)
}
