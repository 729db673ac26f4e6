//! Each operator's log retention as its file says, with a moved clock: an operation log ingested
//! through the de-identifying door is kept under the operator's log rule, survives until the
//! last millisecond of its period (and an erasure, where the rule is statutory), and the sweeper
//! deletes it just after, naming the rule.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use custodia_core::ManualClock;
use custodia_store::ConsentEventKind;
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{Caller, Gated, NewConsent, OperationLogEntry, Progress, Vault};

use crate::backends::{new_subject, root, start};

const DAY_MS: i64 = 86_400_000;

struct Quiet;

impl Progress for Quiet {
    fn advance(&mut self, _done: u64, _total: u64) {}
}

/// Ingests one log under `rule`'s `category` in the `file` example, then checks its expiry
/// (`min_days..=max_days` after collection: months vary in length), that it outlives an
/// erasure when `statutory`, and that the sweeper deletes it at its expiry and not before.
fn log_is_kept_as_the_file_says(
    file: &str,
    rule: &str,
    category: &str,
    (min_days, max_days): (i64, i64),
    statutory: bool,
) {
    let temp = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(file);
    let policy = custodia_policy::load(&path).unwrap();
    assert!(policy.is_clean(), "{file}: {:#?}", policy.findings);
    let (data, keys) = SqliteStores::open(&temp.path().join("data")).unwrap();
    let clock = ManualClock::new(start());
    let vault = Vault::open(
        Arc::new(data),
        Arc::new(keys),
        policy,
        Arc::new(clock.clone()),
        &root(),
    )
    .unwrap();
    let subject = vault
        .create_subject(&new_subject(&format!("{file}-user")), "test")
        .unwrap()
        .id;
    let purpose = vault
        .policy()
        .purposes
        .iter()
        .find(|purpose| purpose.categories.iter().any(|c| c.get_ref() == category))
        .map(|purpose| purpose.key.get_ref().clone())
        .unwrap_or_else(|| panic!("{file}: no purpose covers {category}"));
    // Consent where the purpose needs it; harmless where it does not.
    let _ = vault.record_consent(
        subject,
        &NewConsent {
            purposes: vec![purpose.clone()],
            kind: ConsentEventKind::Given,
            guardian: None,
            guardian_verified: false,
            policy_version: None,
            method: "app_dialog".to_owned(),
            expires_at: None,
        },
        "test",
    );
    let entry = OperationLogEntry {
        category: category.to_owned(),
        purpose: purpose.clone(),
        occurred_at: start(),
        event: Some("page_view".to_owned()),
        identifiers: BTreeMap::from([("device_id".to_owned(), "CANARY-DEVICE".to_owned())]),
        ip_address: Some("203.0.113.9".parse().unwrap()),
        text: BTreeMap::new(),
    };
    let logged = match vault
        .ingest_operation_log(subject, &entry, &Caller::operator())
        .unwrap()
    {
        Gated::Allowed { value, .. } => value,
        Gated::Denied(decision) => panic!("{file}: the gate denied the log: {decision:?}"),
    };
    assert_eq!(logged.record.rule, rule, "{file}");
    assert_eq!(logged.record.statutory, statutory, "{file}");
    let expires = logged
        .record
        .expires_at
        .expect("a collected-rule log has an expiry");
    let kept_ms = expires.as_millis() - start().as_millis();
    assert!(
        (min_days * DAY_MS..=max_days * DAY_MS).contains(&kept_ms),
        "{file}: kept {} days",
        kept_ms / DAY_MS
    );
    if statutory {
        // An erasure leaves a statutory log, storage-only, until its own expiry.
        vault.erase_subject(subject, "test").unwrap();
        assert_eq!(vault.data_store().count_records().unwrap(), 1, "{file}");
    }

    clock.advance_millis(kept_ms - 1);
    let early = vault.sweep(false, 100, "system", &mut Quiet).unwrap();
    assert_eq!(early.deleted, 0, "{file}: deleted before its period ended");

    clock.advance_millis(1);
    let due = vault.sweep(false, 100, "system", &mut Quiet).unwrap();
    assert_eq!(due.deleted, 1, "{file}");
    assert_eq!(
        due.by_rule.get(&(category.to_owned(), rule.to_owned())),
        Some(&1),
        "{file}: {:?}",
        due.by_rule
    );
    assert_eq!(vault.data_store().count_records().unwrap(), 0, "{file}");
}

#[test]
fn deeppiano_keeps_logs_180_days() {
    log_is_kept_as_the_file_says(
        "deeppiano.toml",
        "log-data",
        "system.operations.network_log",
        (180, 180),
        false,
    );
}

#[test]
fn portrait_effects_keeps_service_logs_six_months_through_an_erasure() {
    log_is_kept_as_the_file_says(
        "portrait-effects.toml",
        "network-logs",
        "system.operations.service_log",
        (181, 184),
        true,
    );
}

#[test]
fn audio_extract_kit_keeps_network_logs_six_months_through_an_erasure() {
    log_is_kept_as_the_file_says(
        "audio-extract-kit.toml",
        "network-logs",
        "system.operations.network_log",
        (181, 184),
        true,
    );
}

#[test]
fn qidian_pixel_keeps_access_logs_540_days() {
    log_is_kept_as_the_file_says(
        "qidian-pixel.toml",
        "access-logs",
        "system.operations.access_log",
        (540, 540),
        false,
    );
}
