//! `diff` marks material changes (widening processing, weakening promises) and names the purposes
//! that need fresh consent; harmless changes are listed but not material.

use custodia_policy::diff::{ChangeKind, diff};

use crate::support::{checked, fixture};

fn clean_text() -> String {
    std::fs::read_to_string(fixture("clean.toml")).unwrap()
}

fn diff_after(from: &str, to: &str) -> custodia_policy::diff::PolicyDiff {
    let old_text = clean_text();
    assert_eq!(
        old_text.matches(from).count(),
        1,
        "`{from}` is ambiguous or missing"
    );
    let old = checked("old.toml", &old_text);
    let new = checked("new.toml", &old_text.replacen(from, to, 1));
    diff(&old.policy, &new.policy)
}

#[test]
fn identical_versions_have_no_changes() {
    let changes = diff_after("version = \"2025-06-01\"", "version = \"2025-06-01\"");
    assert!(changes.changes.is_empty());
    assert!(!changes.is_material());
}

#[test]
fn a_new_purpose_is_material_for_itself() {
    let changes = diff_after(
        "[[retention]]\nid = \"account-data\"",
        "[[purpose]]\nkey = \"train_models\"\nbasis = \"consent\"\nseparate_consent = true\noptional = true\ncategories = [\"user.content.audio_recording\"]\n\n[[retention]]\nid = \"account-data\"",
    );
    assert!(changes.is_material());
    assert_eq!(
        changes
            .purposes_needing_fresh_consent()
            .into_iter()
            .collect::<Vec<_>>(),
        ["train_models"]
    );
}

#[test]
fn a_new_category_for_a_purpose_is_material() {
    let changes = diff_after(
        "categories = [\"user.contact.phone_number\"]\n\n[[purpose]]",
        "categories = [\"user.contact.phone_number\", \"user.device.device_id\"]\n\n[[purpose]]",
    );
    let change = changes
        .changes
        .iter()
        .find(|c| c.path == "purpose.account.categories")
        .unwrap();
    assert_eq!(change.kind, ChangeKind::Added);
    assert!(change.material);
    assert_eq!(change.purposes, ["account"]);
}

#[test]
fn a_longer_retention_is_material_and_a_shorter_one_is_not() {
    let longer = diff_after("keep = \"90d\"", "keep = \"180d\"");
    assert!(longer.is_material(), "{longer:#?}");
    assert_eq!(
        longer
            .purposes_needing_fresh_consent()
            .into_iter()
            .collect::<Vec<_>>(),
        ["account"]
    );
    let shorter = diff_after("keep = \"90d\"", "keep = \"30d\"");
    assert!(!shorter.is_material());
    assert_eq!(shorter.changes.len(), 1);
    let retriggered = diff_after("after = \"account_closed\"", "after = \"last_active\"");
    assert!(retriggered.is_material());
}

#[test]
fn a_new_processor_or_transfer_is_material() {
    let processor = diff_after(
        "[rights]",
        "[[processor]]\nname = \"Ads Inc\"\ncategories = [\"user.device.device_id\"]\npurposes = [\"crash_reporting\"]\nlocation = \"CN\"\n\n[rights]",
    );
    assert!(processor.is_material());
    assert!(
        processor
            .changes
            .iter()
            .any(|c| c.path == "processor.Ads Inc" && c.material)
    );
    let transfer = diff_after(
        "[rights]",
        "[[transfer]]\ndestination = \"SG\"\nmechanism = \"consent\"\ncategories = [\"user.device.device_id\"]\n\n[rights]",
    );
    assert!(transfer.is_material());
    assert_eq!(
        transfer
            .purposes_needing_fresh_consent()
            .into_iter()
            .collect::<Vec<_>>(),
        ["crash_reporting"]
    );
}

#[test]
fn weaker_rights_are_material_and_stronger_ones_are_not() {
    let dropped = diff_after("\"objection\", ", "");
    assert!(dropped.is_material());
    let slower = diff_after("working_days = 15, calendar", "working_days = 10, calendar");
    assert!(!slower.is_material(), "a shorter deadline is not material");
    let faster_then_slower = {
        let old = checked(
            "old.toml",
            &clean_text().replacen(
                "working_days = 15, calendar",
                "working_days = 10, calendar",
                1,
            ),
        );
        let new = checked("new.toml", &clean_text());
        diff(&old.policy, &new.policy)
    };
    assert!(faster_then_slower.is_material());
    let younger = diff_after("guardian_consent_below = 14", "guardian_consent_below = 13");
    assert!(younger.is_material());
}

#[test]
fn losing_separate_consent_or_optionality_is_material() {
    let bundled = diff_after("separate_consent = true\n", "");
    assert!(
        bundled
            .changes
            .iter()
            .any(|c| c.path == "purpose.ai_transcription.separate_consent" && c.material)
    );
    let mandatory = diff_after("optional = true\n", "");
    assert!(
        mandatory
            .changes
            .iter()
            .any(|c| c.path == "purpose.ai_transcription.optional" && c.material)
    );
}

#[test]
fn a_removed_purpose_is_listed_but_not_material() {
    let changes = diff_after(
        "[[purpose]]\nkey = \"security\"\nbasis = \"legal_obligation\"\ncategories = [\"system.operations.network_log\"]\n",
        "",
    );
    assert!(
        changes
            .changes
            .iter()
            .any(|c| c.path == "purpose.security" && c.kind == ChangeKind::Removed)
    );
    assert!(!changes.is_material());
}
