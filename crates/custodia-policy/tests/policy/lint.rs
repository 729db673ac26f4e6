//! Every lint rule fires on a fixture built to break it, and cites its legal source; the clean
//! fixture and every operator example check clean.

use custodia_policy::{CheckedPolicy, PolicyError, Severity, Source};

use crate::support::{checked, examples, fixture};

fn clean_text() -> String {
    std::fs::read_to_string(fixture("clean.toml")).unwrap()
}

/// The clean fixture with `from` replaced by `to` (which must occur exactly once).
fn broken(from: &str, to: &str) -> CheckedPolicy {
    let text = clean_text();
    assert_eq!(
        text.matches(from).count(),
        1,
        "fixture edit `{from}` is ambiguous or missing"
    );
    checked("broken.toml", &text.replacen(from, to, 1))
}

/// The clean fixture with `extra` appended.
fn extended(extra: &str) -> CheckedPolicy {
    checked("broken.toml", &format!("{}\n{extra}\n", clean_text()))
}

/// Asserts that `code` fired, cites `article` and points at a line holding `line_contains`.
fn assert_fires(policy: &CheckedPolicy, code: &str, article: Option<&str>, line_contains: &str) {
    let finding = policy
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("{code} did not fire; findings: {:#?}", policy.findings));
    assert_eq!(finding.severity, Severity::Error);
    if let Some(article) = article {
        let source = finding
            .source
            .unwrap_or_else(|| panic!("{code} cites no source"));
        assert!(
            source.contains(article),
            "{code} cites `{source}`, expected `{article}`"
        );
    }
    let line = policy
        .source
        .text
        .lines()
        .nth(finding.location.line - 1)
        .unwrap();
    assert!(
        line.contains(line_contains),
        "{code} points at line {} `{line}`, expected a line containing `{line_contains}`",
        finding.location.line
    );
}

#[test]
fn the_clean_fixture_is_clean() {
    let policy = checked("clean.toml", &clean_text());
    assert!(policy.findings.is_empty(), "{:#?}", policy.findings);
}

#[test]
fn every_operator_example_checks_clean() {
    let files = examples();
    assert!(!files.is_empty(), "no examples/*.toml found");
    for path in files {
        let policy = custodia_policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            policy.findings.is_empty(),
            "{}: {:#?}",
            path.display(),
            policy.findings
        );
    }
}

#[test]
fn a_category_without_retention_fires_pipl_19() {
    let policy = broken(
        "[[retention]]\ncategories = [\"user.device.device_id\"]\nkeep = \"1y\"\n",
        "",
    );
    assert_fires(
        &policy,
        "retention.missing",
        Some("PIPL Art. 19"),
        "user.device.device_id",
    );
    assert!(
        policy.findings[0]
            .source
            .unwrap()
            .contains("GDPR Art. 5(1)(e)")
    );
}

#[test]
fn sensitive_data_under_bundled_consent_fires_pipl_29() {
    let policy = broken("separate_consent = true\n", "");
    assert_fires(
        &policy,
        "consent.sensitive_not_separate",
        Some("PIPL Art. 29"),
        "user.content.audio_recording",
    );
}

#[test]
fn a_consent_purpose_that_blocks_the_service_fires_pipl_16() {
    let policy = broken("optional = true\n", "");
    assert_fires(
        &policy,
        "consent.not_optional",
        Some("PIPL Art. 16"),
        "basis = \"consent\"",
    );
}

#[test]
fn a_processor_receiving_a_category_outside_its_purposes_fires() {
    let policy = broken(
        "categories = [\"user.device.device_id\"]\npurposes = [\"crash_reporting\"]",
        "categories = [\"user.device.device_id\", \"user.contact.phone_number\"]\npurposes = [\"crash_reporting\"]",
    );
    assert_fires(
        &policy,
        "processor.category_outside_purposes",
        Some("Art. 23"),
        "user.contact.phone_number",
    );
}

#[test]
fn a_processor_receiving_a_never_shared_category_fires() {
    let policy = broken(
        "key = \"user.device.device_id\"\nname = \"device identifiers\"\n",
        "key = \"user.device.device_id\"\nname = \"device identifiers\"\nnever_share = true\n",
    );
    assert_fires(
        &policy,
        "processor.never_shared_category",
        Some("never_share"),
        "categories = [\"user.device.device_id\"]",
    );
}

#[test]
fn a_processor_without_purposes_fires() {
    let policy = broken("purposes = [\"crash_reporting\"]", "purposes = []");
    assert_fires(
        &policy,
        "processor.no_purpose",
        Some("PIPL Art. 6"),
        "Tencent Bugly SDK",
    );
}

#[test]
fn network_logs_kept_under_six_months_fire_the_cybersecurity_law() {
    let policy = broken("keep = \"6mo\"", "keep = \"179d\"");
    assert_fires(
        &policy,
        "retention.network_log_too_short",
        Some("Cybersecurity Law Art. 21(3)"),
        "keep = \"179d\"",
    );
    for enough in ["180d", "26w", "6mo", "1y"] {
        let kept = broken("keep = \"6mo\"", &format!("keep = \"{enough}\""));
        assert!(kept.findings.is_empty(), "{enough}: {:#?}", kept.findings);
    }
    let months = broken("keep = \"6mo\"", "keep = \"5mo\"");
    assert_fires(
        &months,
        "retention.network_log_too_short",
        Some("Art. 21(3)"),
        "5mo",
    );
    // Without PIPL the Chinese log rule does not apply.
    let gdpr_only = checked(
        "gdpr.toml",
        &clean_text()
            .replacen("keep = \"6mo\"", "keep = \"179d\"", 1)
            .replacen("laws = [\"PIPL\", \"GDPR\"]", "laws = [\"GDPR\"]", 1),
    );
    assert!(
        !gdpr_only
            .findings
            .iter()
            .any(|f| f.code == "retention.network_log_too_short")
    );
}

#[test]
fn a_response_deadline_over_fifteen_working_days_fires_the_app_rules() {
    let policy = broken(
        "respond_within = { working_days = 15, calendar = \"CN\" }",
        "respond_within = { working_days = 20, calendar = \"CN\" }",
    );
    assert_fires(
        &policy,
        "deadline.too_long",
        Some("15 working days"),
        "respond_within",
    );
}

#[test]
fn a_response_deadline_over_one_month_fires_gdpr_12() {
    let policy = checked(
        "gdpr.toml",
        &clean_text()
            .replacen("laws = [\"PIPL\", \"GDPR\"]", "laws = [\"GDPR\"]", 1)
            .replacen(
                "respond_within = { working_days = 15, calendar = \"CN\" }",
                "respond_within = { months = 2 }",
                1,
            ),
    );
    assert_fires(
        &policy,
        "deadline.too_long",
        Some("GDPR Art. 12(3)"),
        "respond_within",
    );
}

#[test]
fn a_ccpa_deadline_over_45_days_fires() {
    let policy = broken("laws = [\"PIPL\", \"GDPR\"]", "laws = [\"CCPA\"]");
    // CCPA alone: 15 working days is within 45 days, so only the rights rule may fire here.
    assert!(
        !policy
            .findings
            .iter()
            .any(|f| f.code == "deadline.too_long")
    );
    let slow = checked(
        "ccpa.toml",
        &clean_text()
            .replacen("laws = [\"PIPL\", \"GDPR\"]", "laws = [\"CCPA\"]", 1)
            .replacen(
                "respond_within = { working_days = 15, calendar = \"CN\" }",
                "respond_within = { days = 60 }",
                1,
            ),
    );
    assert_fires(
        &slow,
        "deadline.too_long",
        Some("§1798.130"),
        "respond_within",
    );
}

#[test]
fn an_account_cancellation_over_fifteen_working_days_fires() {
    let policy = broken(
        "complete_within = { working_days = 15 }",
        "complete_within = { days = 30 }",
    );
    assert_fires(
        &policy,
        "deadline.too_long",
        Some("15 working days"),
        "complete_within",
    );
}

#[test]
fn a_guardian_age_below_pipl_fires_pipl_31() {
    let policy = broken("guardian_consent_below = 14", "guardian_consent_below = 13");
    assert_fires(
        &policy,
        "minors.guardian_age_too_low",
        Some("Art. 31"),
        "guardian_consent_below",
    );
}

#[test]
fn a_guardian_age_below_coppa_fires_coppa() {
    let policy = checked(
        "coppa.toml",
        &clean_text()
            .replacen("laws = [\"PIPL\", \"GDPR\"]", "laws = [\"COPPA\"]", 1)
            .replacen(
                "guardian_consent_below = 14",
                "guardian_consent_below = 12",
                1,
            ),
    );
    assert_fires(
        &policy,
        "minors.guardian_age_too_low",
        Some("312.5"),
        "guardian_consent_below",
    );
}

#[test]
fn refusing_children_outright_satisfies_the_guardian_rule() {
    let policy = broken("guardian_consent_below = 14", "refuse_below = 14");
    assert!(policy.findings.is_empty(), "{:#?}", policy.findings);
}

#[test]
fn no_minors_section_under_pipl_fires() {
    let policy = broken("[minors]\nguardian_consent_below = 14\n", "");
    assert_fires(&policy, "minors.missing", Some("Art. 31"), "version");
}

#[test]
fn a_processor_abroad_without_a_transfer_mechanism_fires_pipl_38() {
    let policy = broken("\nlocation = \"CN\"", "\nlocation = \"SG\"");
    assert_fires(
        &policy,
        "transfer.missing_mechanism",
        Some("PIPL Art. 38"),
        "location = \"SG\"",
    );
    let covered = checked(
        "covered.toml",
        &format!(
            "{}\n[[transfer]]\ndestination = \"SG\"\nmechanism = \"standard_contract\"\ncategories = [\"user.device.device_id\"]\nrecipients = [\"Tencent Bugly SDK\"]\n",
            clean_text().replacen("\nlocation = \"CN\"", "\nlocation = \"SG\"", 1)
        ),
    );
    assert!(covered.findings.is_empty(), "{:#?}", covered.findings);
}

#[test]
fn a_purpose_naming_an_undeclared_category_fires() {
    let policy = broken(
        "categories = [\"user.device.device_id\"]\n\n[[purpose]]\nkey = \"security\"",
        "categories = [\"user.device.device_id\", \"user.location.precise\"]\n\n[[purpose]]\nkey = \"security\"",
    );
    assert_fires(
        &policy,
        "reference.undeclared_category",
        None,
        "user.location.precise",
    );
}

#[test]
fn undeclared_purposes_and_processors_fire() {
    let policy = broken(
        "purposes = [\"crash_reporting\"]",
        "purposes = [\"crash_reportin\"]",
    );
    assert_fires(
        &policy,
        "reference.undeclared_purpose",
        None,
        "crash_reportin",
    );
    let transfer = extended(
        "[[transfer]]\ndestination = \"US\"\nmechanism = \"consent\"\ncategories = [\"user.device.device_id\"]\nrecipients = [\"Nobody Inc\"]",
    );
    assert_fires(
        &transfer,
        "reference.undeclared_processor",
        None,
        "Nobody Inc",
    );
}

#[test]
fn duplicate_keys_fire() {
    let policy = extended(
        "[[purpose]]\nkey = \"account\"\nbasis = \"contract\"\ncategories = [\"user.contact.phone_number\"]",
    );
    assert_fires(&policy, "duplicate.purpose", None, "key = \"account\"");
    let category = extended("[[category]]\nkey = \"user.device.device_id\"");
    assert_fires(
        &category,
        "duplicate.category",
        None,
        "key = \"user.device.device_id\"",
    );
    let processor = extended(
        "[[processor]]\nname = \"Tencent Bugly SDK\"\ncategories = []\npurposes = [\"crash_reporting\"]\nlocation = \"CN\"",
    );
    assert_fires(&processor, "duplicate.processor", None, "Tencent Bugly SDK");
    let retention =
        extended("[[retention]]\ncategories = [\"user.device.device_id\"]\nkeep = \"2y\"");
    assert_fires(
        &retention,
        "duplicate.retention_category",
        None,
        "user.device.device_id",
    );
}

#[test]
fn a_duplicate_toml_key_is_a_syntax_error_with_a_line() {
    let text = clean_text().replacen(
        "sensitive = true\n",
        "sensitive = true\nsensitive = false\n",
        1,
    );
    match CheckedPolicy::from_source(Source::new("dup.toml", text)) {
        Err(PolicyError::Syntax {
            location: Some(location),
            message,
            ..
        }) => {
            assert!(location.line > 1, "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn unknown_fields_and_bad_values_are_syntax_errors_with_lines() {
    for (from, to) in [
        ("sensitive = true\n", "sensitiv = true\n"),
        ("keep = \"90d\"", "keep = \"90 days\""),
        ("basis = \"contract\"", "basis = \"contrakt\""),
        (
            "laws = [\"PIPL\", \"GDPR\"]",
            "laws = [\"PIPL\", \"HIPAA\"]",
        ),
        (
            "respond_within = { working_days = 15, calendar = \"CN\" }",
            "respond_within = { working_days = 15, days = 3 }",
        ),
    ] {
        let text = clean_text().replacen(from, to, 1);
        match CheckedPolicy::from_source(Source::new("bad.toml", text.clone())) {
            Err(PolicyError::Syntax {
                location: Some(location),
                ..
            }) => {
                let line = text.lines().nth(location.line - 1).unwrap();
                let token = to.split_whitespace().next().unwrap();
                assert!(
                    line.contains(token) || to.contains(line.trim()),
                    "`{to}` reported at `{line}`"
                );
            }
            other => panic!("`{to}` should be a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn category_keys_align_with_fideslang() {
    let typo = broken(
        "key = \"user.device.device_id\"",
        "key = \"user.devise.device_id\"",
    );
    assert_fires(&typo, "category.unknown_key", None, "user.devise.device_id");
    let orphan = extended("[[category]]\nkey = \"stuff.things\"\nextension = true");
    assert_fires(
        &orphan,
        "category.extension_without_parent",
        None,
        "stuff.things",
    );
    let known = broken(
        "key = \"user.device.device_id\"\n",
        "key = \"user.device.device_id\"\nextension = true\n",
    );
    assert_fires(
        &known,
        "category.extension_is_known",
        None,
        "user.device.device_id",
    );
    let use_typo = broken(
        "use = \"essential.service.operations\"",
        "use = \"essential.servce\"",
    );
    assert_fires(&use_typo, "purpose.unknown_use", None, "essential.servce");
}

#[test]
fn legitimate_interest_is_not_a_pipl_basis() {
    let policy = broken(
        "key = \"crash_reporting\"\nbasis = \"contract\"",
        "key = \"crash_reporting\"\nbasis = \"legitimate_interest\"",
    );
    assert_fires(
        &policy,
        "purpose.basis_not_in_law",
        Some("PIPL Art. 13"),
        "legitimate_interest",
    );
    let gdpr_only = checked(
        "gdpr.toml",
        &clean_text()
            .replacen("laws = [\"PIPL\", \"GDPR\"]", "laws = [\"GDPR\"]", 1)
            .replacen(
                "basis = \"contract\"\ncategories = [\"user.device",
                "basis = \"legitimate_interest\"\ncategories = [\"user.device",
                1,
            ),
    );
    assert!(gdpr_only.findings.is_empty(), "{:#?}", gdpr_only.findings);
}

#[test]
fn a_statutory_rule_must_name_its_law() {
    let policy = broken("legal_source = \"Cybersecurity Law Art. 21(3)\"\n", "");
    assert_fires(
        &policy,
        "retention.statutory_without_source",
        Some("GDPR Art. 17(3)(b)"),
        "keep = \"6mo\"",
    );
}

#[test]
fn required_rights_must_be_offered() {
    let policy = broken("\"restriction\", \"objection\", ", "");
    assert_fires(
        &policy,
        "rights.missing",
        Some("GDPR Art. 15-21"),
        "respond_within",
    );
    let message = &policy
        .findings
        .iter()
        .find(|f| f.code == "rights.missing")
        .unwrap()
        .message;
    assert!(
        message.contains("restriction") && message.contains("objection"),
        "{message}"
    );
}

#[test]
fn automated_decisions_need_an_explanation_right() {
    let policy = broken(
        "key = \"crash_reporting\"\n",
        "key = \"crash_reporting\"\nautomated_decision = true\n",
    );
    assert_fires(
        &policy,
        "rights.explanation_missing",
        Some("PIPL Art. 24"),
        "crash_reporting",
    );
}

#[test]
fn a_category_no_purpose_uses_fires_purpose_limitation() {
    let policy = extended(
        "[[category]]\nkey = \"user.location.precise\"\n[[retention]]\ncategories = [\"user.location.precise\"]\nkeep = \"1d\"",
    );
    assert_fires(
        &policy,
        "category.unused",
        Some("PIPL Art. 6"),
        "user.location.precise",
    );
}

#[test]
fn a_contact_is_required() {
    let policy = broken(
        "contact = { email = \"privacy@example.com\" }",
        "contact = { email = \"\" }",
    );
    assert_fires(
        &policy,
        "controller.no_contact",
        Some("PIPL Art. 17"),
        "Example Audio Co.",
    );
}

#[test]
fn an_invalid_effective_date_fires() {
    let policy = broken("effective = \"2025-06-01\"", "effective = \"2025-02-30\"");
    assert_fires(&policy, "policy.effective_date", None, "effective");
}

#[test]
fn findings_are_reported_all_at_once_in_file_order() {
    let text = clean_text()
        .replacen("separate_consent = true\n", "", 1)
        .replacen(
            "guardian_consent_below = 14",
            "guardian_consent_below = 10",
            1,
        );
    let policy = checked("many.toml", &text);
    let codes: Vec<_> = policy.findings.iter().map(|f| f.code).collect();
    assert!(
        codes.contains(&"consent.sensitive_not_separate"),
        "{codes:?}"
    );
    assert!(codes.contains(&"minors.guardian_age_too_low"), "{codes:?}");
    let lines: Vec<_> = policy.findings.iter().map(|f| f.location.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}
