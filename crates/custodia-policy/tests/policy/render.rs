//! Rendering: snapshots of the fixture and of every operator example, the enforced numbers in the
//! published text, escaping of file text, and the section order.

use custodia_policy::render::{self, SECTIONS};
use custodia_policy::{Policy, load};

use crate::support;

/// The clean fixture, every example that exists when the test runs, and [`full`], named for
/// snapshots.
fn policies() -> Vec<(String, Policy)> {
    let mut files = vec![("fixture_clean".to_owned(), support::fixture("clean.toml"))];
    files.extend(support::examples().into_iter().map(|path| {
        let stem = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('-', "_");
        (format!("example_{stem}"), path)
    }));
    let mut policies: Vec<(String, Policy)> = files
        .into_iter()
        .map(|(name, path)| {
            let checked = load(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            (name, checked.policy)
        })
        .collect();
    policies.push(("full".to_owned(), full()));
    policies
}

/// The fixture with every optional part of the model filled in, so that every branch of the
/// renderer shows up in a snapshot whatever the examples contain.
fn full() -> Policy {
    let text = fixture_text()
        .replace(
            "name = \"practice recordings\"",
            "name = \"practice recordings\"\ndescription = \"Audio you record while practising.\"\nnever_share = true",
        )
        .replace(
            "name = \"device identifiers\"",
            "name = \"device identifiers\"\ndeidentify = \"before_analysis\"",
        )
        .replace(
            "contact = { email = \"privacy@example.com\" }",
            "address = \"1 Example Road, Beijing\"\neu_representative = \"Example EU Rep GmbH, Berlin\"\n\
             contact = { email = \"privacy@example.com\", phone = \"+86 10 0000 0000\", \
             web = \"https://example.com/privacy-centre\", dpo_email = \"dpo@example.com\" }",
        )
        .replace(
            "offered = [\"access\"",
            "offered = [\"explanation\", \"complaint\", \"access\"",
        )
        .replace(
            "respond_within = { working_days = 15, calendar = \"CN\" }",
            "respond_within = { working_days = 15, calendar = \"CN\" }\n\
             complaints_within = { working_days = 15 }\n\
             questions_within = { working_days = 10 }\n\
             verification = \"we send a code to the phone number on your account\"\n\
             channels = [\"In the app: Me > Settings > Privacy\", \"privacy@example.com\"]\n\
             portability_format = \"JSON\"",
        )
        .replace(
            "complete_within = { working_days = 15 }",
            "complete_within = { working_days = 5 }\n\
             conditions = [\"no unfinished orders\", \"no open disputes\"]\n\
             how = \"Me > Settings > Cancel account\"",
        )
        .replace(
            "guardian_consent_below = 14",
            "guardian_consent_below = 14\nrefuse_below = 8\nnotes = [\"We do not show advertising to children.\"]",
        );
    let extra = r#"
[[category]]
key = "user.content.training_clip"
name = "training clips"
extension = true

[[purpose]]
key = "train_ai_system"
name = "Improving our transcription model"
description = "We use short clips of your practice to train the transcription model."
basis = "consent"
separate_consent = true
optional = true
consent_valid_for = "1y"
consent_scope = "which clips are used, for which model, and for how long"
automated_decision = true
categories = ["user.content.training_clip", "user.device.device_id"]

[[retention]]
id = "training"
categories = ["user.content.training_clip"]
keep = "1y"
description = "Clips are deleted yearly."
extension = { purpose = "train_ai_system", keep = "3y" }

[[processor]]
name = "Cohort Ads"
kind = "service"
deidentified_only = true
categories = ["user.device.device_id"]
purposes = ["crash_reporting"]
location = "CN"
description = "Receives aggregated cohorts only."

[[processor]]
name = "Cloud Storage"
entity = "Example Cloud Ltd."
kind = "service"
categories = ["user.content.training_clip"]
purposes = ["train_ai_system"]
location = "SG"
policy_url = "https://cloud.example/privacy"

[[processor]]
name = "Courts and regulators"
kind = "authority"
categories = ["system.operations.network_log"]
purposes = ["security"]
location = "CN"

[[transfer]]
destination = "SG"
mechanism = "consent"
categories = ["user.content.training_clip"]
recipients = ["Cloud Storage"]
description = "training runs on GPUs in Singapore"

[[transfer]]
destination = "EU"
mechanism = "standard_contract"
categories = ["user.device.device_id"]

[[cookie]]
key = "strictly_necessary"
description = "Keep you signed in."
lifetime = "30d"

[[cookie]]
key = "analytics"
description = "Count page views."
purpose = "crash_reporting"
lifetime = "6mo"
optional = true

[security]
measures = ["Encryption of every field and file under a per-person key", "Access on a need-to-know basis"]
incident_notice = "by in-app message and e-mail within 72 hours"

[changes]
notice = "we announce changes in the app 7 days before they take effect"
archive = "https://example.com/privacy/archive"
"#;
    let policy = support::checked("full.toml", &format!("{text}{extra}")).policy;
    // Each replacement above must have matched, or the snapshot silently loses a branch.
    assert!(
        policy
            .category("user.content.audio_recording")
            .unwrap()
            .never_share
    );
    assert!(
        policy
            .category("user.device.device_id")
            .unwrap()
            .deidentify
            .is_some()
    );
    assert!(policy.controller.address.is_some());
    assert_eq!(policy.rights.offered.len(), 11);
    assert!(policy.rights.portability_format.is_some());
    assert!(policy.account_cancellation.as_ref().unwrap().how.is_some());
    assert!(policy.minors.as_ref().unwrap().refuse_below.is_some());
    policy
}

fn fixture_text() -> String {
    std::fs::read_to_string(support::fixture("clean.toml")).unwrap()
}

/// The smallest file the model accepts: every optional section is absent.
const MINIMAL: &str = r#"
version = "1"
effective = "2025-01-01"
laws = ["PIPL"]
data_location = "CN"

[controller]
name = "Minimal Co."
product = "Minimal"
contact = { email = "privacy@minimal.example" }

[rights]
offered = ["access"]
respond_within = { working_days = 15, calendar = "CN" }
"#;

#[test]
fn markdown_snapshots() {
    for (name, policy) in policies() {
        insta::assert_snapshot!(format!("markdown_{name}"), render::markdown(&policy));
    }
}

#[test]
fn html_snapshots() {
    for (name, policy) in policies() {
        insta::assert_snapshot!(format!("html_{name}"), render::html(&policy));
    }
}

#[test]
fn minimal_policy_snapshot() {
    let policy = support::checked("minimal.toml", MINIMAL).policy;
    insta::assert_snapshot!("markdown_minimal", render::markdown(&policy));
}

/// Every period, deadline and age the engine enforces, in the words the renderer must use.
fn enforced_phrases(policy: &Policy) -> Vec<String> {
    let mut phrases = Vec::new();
    for rule in &policy.retention {
        let after = rule.after.to_words();
        phrases.push(format!("{} {after}", rule.keep.get_ref().to_words()));
        if let Some(extension) = &rule.extension {
            phrases.push(format!("{} {after}", extension.keep.get_ref().to_words()));
        }
    }
    let rights = &policy.rights;
    phrases.push(rights.respond_within.get_ref().to_words());
    for deadline in [&rights.complaints_within, &rights.questions_within]
        .into_iter()
        .flatten()
    {
        phrases.push(deadline.get_ref().to_words());
    }
    if let Some(cancellation) = &policy.account_cancellation {
        phrases.push(cancellation.complete_within.get_ref().to_words());
    }
    if let Some(minors) = &policy.minors {
        for age in [&minors.guardian_consent_below, &minors.refuse_below]
            .into_iter()
            .flatten()
        {
            phrases.push(format!("under {}", age.get_ref()));
        }
    }
    for purpose in &policy.purposes {
        let valid = purpose.consent_valid_for.as_ref().map(|v| v.get_ref());
        if let Some(valid) = valid.filter(|v| !v.is_zero()) {
            phrases.push(valid.to_words());
        }
    }
    for cookie in &policy.cookies {
        if let Some(lifetime) = &cookie.lifetime {
            phrases.push(lifetime.get_ref().to_words());
        }
    }
    phrases
}

#[test]
fn every_enforced_number_appears_in_both_formats() {
    let mut checked = 0;
    for (name, policy) in policies() {
        let markdown = render::markdown(&policy);
        let html = render::html(&policy);
        for phrase in enforced_phrases(&policy) {
            assert!(
                markdown.contains(&phrase),
                "{name}: markdown lacks {phrase:?}"
            );
            assert!(html.contains(&phrase), "{name}: html lacks {phrase:?}");
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn fixture_states_its_promises_in_words() {
    let policy = load(&support::fixture("clean.toml")).unwrap().policy;
    let markdown = render::markdown(&policy);
    for phrase in [
        "90 days after your account is closed",
        "immediately after processing completes",
        "6 months after collection",
        "15 working days (CN official calendar)",
        "under 14",
        "Cybersecurity Law Art. 21(3)",
        "Tencent Bugly SDK",
        "We do not transfer personal information outside CN.",
        "you can still use the basic functions of ExampleTune",
        "separate consent",
        "Device permission:** microphone",
    ] {
        assert!(markdown.contains(phrase), "markdown lacks {phrase:?}");
    }
}

#[test]
fn file_text_cannot_inject_markup() {
    let attack = "<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) \
                  <javascript:alert(4)> | cell\n# heading\n\n1. list";
    let quoted = format!("{attack:?}");
    let text = fixture_text()
        .replace(
            "name = \"Transcribing your recordings\"",
            &format!("name = \"Transcribing your recordings\"\ndescription = {quoted}"),
        )
        .replace("\"ExampleTune\"", &quoted)
        .replace("\"practice recordings\"", &quoted)
        .replace(
            "entity = \"Shenzhen Tencent Computer Systems Co., Ltd.\"",
            &format!("entity = {quoted}\npolicy_url = \"javascript:alert(5)\""),
        )
        .replace(
            "[minors]",
            &format!(
                "[security]\nmeasures = [{quoted}, \"# heading\", \"- nested\", \"1. ordered\", \
                 \"> quoted\", \"---\"]\nincident_notice = {quoted}\n\n[minors]"
            ),
        );
    let policy = support::checked("attack.toml", &text).policy;
    assert!(
        policy.purposes[1].description.is_some(),
        "the attack was not inserted"
    );

    let html = render::html(&policy).to_ascii_lowercase();
    for tag in [
        "<script",
        "<img",
        "href=\"javascript",
        "<h1>heading",
        "<ol>",
        "<blockquote>",
        "<hr",
        "<li>nested",
    ] {
        assert!(!html.contains(tag), "html contains {tag}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(html.matches("<h1>").count(), 1);
    for literal in [
        "<li># heading</li>",
        "<li>- nested</li>",
        "<li>1. ordered</li>",
        "<li>&gt; quoted</li>",
        "<li>---</li>",
    ] {
        assert!(html.contains(literal), "html lacks {literal}");
    }

    let markdown = render::markdown(&policy);
    // Every `<` from the file is backslash-escaped, so no Markdown renderer sees a tag.
    let unescaped = markdown.replace("\\<", "");
    for tag in ["<script", "<img", "<javascript"] {
        assert!(!unescaped.contains(tag), "markdown contains {tag}");
    }
    assert!(markdown.contains("\\<script\\>"));
    // The processor table keeps its six columns: the `|` in the entity is escaped.
    let sdk_row = markdown
        .lines()
        .find(|line| line.starts_with("| Tencent Bugly SDK"))
        .unwrap();
    assert_eq!(sdk_row.replace("\\|", "").matches('|').count(), 7);
}

/// The `## N. Title` headings in document order.
fn section_headings(markdown: &str) -> Vec<&str> {
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .collect()
}

#[test]
fn sections_follow_the_source_policies_order() {
    let expected: Vec<String> = SECTIONS
        .iter()
        .enumerate()
        .map(|(i, title)| format!("{}. {title}", i + 1))
        .collect();
    let minimal = support::checked("minimal.toml", MINIMAL).policy;
    let mut all = policies();
    all.push(("minimal".to_owned(), minimal));
    for (name, policy) in all {
        let markdown = render::markdown(&policy);
        assert!(markdown.starts_with("# "), "{name}: no title first");
        assert_eq!(section_headings(&markdown), expected, "{name}");

        let html = render::html(&policy);
        let mut at = html.find("<h1>").unwrap();
        for heading in &expected {
            let found = html[at..]
                .find(&format!("<h2>{heading}</h2>"))
                .unwrap_or_else(|| panic!("{name}: html lacks or misorders {heading:?}"));
            at += found;
        }
    }
}

#[test]
fn no_section_is_left_empty() {
    let minimal = support::checked("minimal.toml", MINIMAL).policy;
    let mut all = policies();
    all.push(("minimal".to_owned(), minimal));
    for (name, policy) in all {
        let markdown = render::markdown(&policy);
        let lines: Vec<&str> = markdown.lines().filter(|l| !l.trim().is_empty()).collect();
        for pair in lines.windows(2) {
            assert!(
                !(pair[0].starts_with('#') && pair[1].starts_with('#')),
                "{name}: heading {:?} has no body",
                pair[0]
            );
        }
        assert!(
            !lines.last().unwrap().starts_with('#'),
            "{name}: ends on a heading"
        );
    }
}

#[test]
fn empty_sections_say_so() {
    let policy = support::checked("minimal.toml", MINIMAL).policy;
    let markdown = render::markdown(&policy);
    for statement in [
        "We do not process personal information for any purpose.",
        "We do not process sensitive personal information.",
        "Minimal does not use cookies or similar tracking technologies.",
        "We do not share personal information with third parties.",
        "We do not transfer personal information outside CN.",
        "15 working days (CN official calendar)",
    ] {
        assert!(markdown.contains(statement), "minimal lacks {statement:?}");
    }
}

#[test]
fn html_is_one_self_contained_page() {
    for (name, policy) in policies() {
        let html = render::html(&policy);
        assert!(
            html.starts_with("<!doctype html>\n<html lang=\"en\">"),
            "{name}"
        );
        assert!(html.contains("<meta charset=\"utf-8\">"), "{name}");
        assert!(html.contains("<meta name=\"viewport\""), "{name}");
        assert!(html.contains("<title>"), "{name}");
        assert!(html.contains("<style>"), "{name}");
        assert!(html.contains("<table>"), "{name}: retention table missing");
        for external in ["<script", "<link", "src=", "@import", "url("] {
            assert!(!html.contains(external), "{name}: html contains {external}");
        }
        assert_eq!(
            html,
            render::html(&policy),
            "{name}: output is not deterministic"
        );
    }
}
