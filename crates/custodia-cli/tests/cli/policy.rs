//! `custodia policy check|render|diff` as a user or a CI job runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn custodia(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .output()
        .unwrap()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn fixture(name: &str) -> String {
    repo("crates/custodia-policy/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn examples() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("custodia-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_exits_zero_on_every_example() {
    let files = examples();
    assert_eq!(
        files.len(),
        4,
        "expected the four operator examples, found {files:?}"
    );
    let args: Vec<&str> = ["policy", "check"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = custodia(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_exits_one_on_findings_with_the_article_in_the_message() {
    let text = std::fs::read_to_string(fixture("clean.toml"))
        .unwrap()
        .replacen(
            "guardian_consent_below = 14",
            "guardian_consent_below = 12",
            1,
        );
    let path = temp_file("minors.toml", &text);
    let out = custodia(&["policy", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("minors.guardian_age_too_low"), "{stdout}");
    assert!(stdout.contains("PIPL Art. 28, Art. 31"), "{stdout}");
    assert!(stdout.contains("minors.toml:"), "{stdout}");
}

#[test]
fn check_exits_two_on_unreadable_input() {
    let missing = custodia(&["policy", "check", "/nonexistent/policy.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    let binary = temp_file("binary.toml", "\u{0}\u{1}");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        custodia(&["policy", "check", binary.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    let syntax = temp_file("syntax.toml", "version = \n");
    let out = custodia(&["policy", "check", syntax.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("syntax.toml:1:"));
}

#[test]
fn check_speaks_json_for_machines() {
    let text = std::fs::read_to_string(fixture("clean.toml"))
        .unwrap()
        .replacen("separate_consent = true\n", "", 1);
    let bad = temp_file("bundled.toml", &text);
    let out = custodia(&[
        "policy",
        "check",
        "--format",
        "json",
        &fixture("clean.toml"),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["files"], 2);
    assert_eq!(report["files"][0]["status"], "clean");
    let finding = &report["files"][1]["findings"][0];
    assert_eq!(finding["code"], "consent.sensitive_not_separate");
    assert!(finding["source"].as_str().unwrap().contains("PIPL Art. 29"));
    assert!(finding["location"]["line"].as_u64().unwrap() > 1);
}

#[test]
fn diff_marks_material_changes_and_exits_one() {
    let text = std::fs::read_to_string(fixture("clean.toml")).unwrap();
    let longer = temp_file(
        "longer.toml",
        &text.replacen("keep = \"90d\"", "keep = \"2y\"", 1),
    );
    let out = custodia(&[
        "policy",
        "diff",
        "--format",
        "json",
        &fixture("clean.toml"),
        longer.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["material"], true);
    assert_eq!(report["purposes_needing_fresh_consent"][0], "account");
    let same = custodia(&[
        "policy",
        "diff",
        &fixture("clean.toml"),
        &fixture("clean.toml"),
    ]);
    assert_eq!(same.status.code(), Some(0));
}
