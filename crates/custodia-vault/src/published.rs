//! The policy in force and its history. The vault runs under the newest published version; every
//! version is stored with the purposes its material changes affect, so consents given before such
//! a change stop counting until renewed. Publishing checks the new file, diffs it against the
//! version in force and records it atomically with its audit entry.

use std::sync::Arc;

use custodia_audit::EventKind;
use custodia_core::Timestamp;
use custodia_gate::GateIndex;
use custodia_policy::{CheckedPolicy, Policy, Source};
use custodia_store::{Mutation, PolicyVersionRow, WriteBatch};

use crate::error::VaultError;
use crate::keeper::Keeper;

/// The version in force, compiled for the gate.
#[derive(Debug)]
pub struct PolicyState {
    /// The parsed policy.
    pub policy: Arc<Policy>,
    /// Its TOML source, as published.
    pub source: String,
    /// The gate's index, with fresh-consent cutoffs from the whole history.
    pub index: GateIndex,
    /// Every version label published so far, oldest first.
    pub versions: Vec<String>,
}

/// What publishing a version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The new version label.
    pub version: String,
    /// The version it replaced, if any.
    pub previous: Option<String>,
    /// Purposes whose earlier consents stop counting.
    pub fresh_consent_purposes: Vec<String>,
    /// Every change, material or not, in words.
    pub changes: Vec<custodia_policy::diff::Change>,
}

/// Parses and checks a stored or submitted source; a file with findings is refused.
pub fn checked(source_name: &str, text: &str) -> Result<CheckedPolicy, VaultError> {
    let checked = CheckedPolicy::from_source(Source::new(source_name, text)).map_err(|err| {
        VaultError::Invalid {
            field: "policy",
            reason: err.to_string(),
        }
    })?;
    if !checked.is_clean() {
        return Err(VaultError::PolicyNotClean {
            findings: checked
                .findings
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}: {}: {}",
                        f.location.line, f.location.column, f.code, f.message
                    )
                })
                .collect(),
        });
    }
    Ok(checked)
}

fn cutoffs(history: &[PolicyVersionRow]) -> Vec<(&str, Timestamp)> {
    history
        .iter()
        .flat_map(|row| {
            row.fresh_consent_purposes
                .iter()
                .map(move |purpose| (purpose.as_str(), row.published_at))
        })
        .collect()
}

fn state(checked: CheckedPolicy, history: &[PolicyVersionRow]) -> PolicyState {
    let index = GateIndex::new(&checked.policy, cutoffs(history));
    PolicyState {
        policy: Arc::new(checked.policy),
        source: checked.source.text,
        index,
        versions: history.iter().map(|row| row.version.clone()).collect(),
    }
}

/// Brings the store's history in line with `offered` (the file the server was started with):
/// the first start publishes it; a newer version is published with its diff; the version already
/// in force is accepted only with the same content. Returns the state to run under.
pub fn sync(core: &Keeper, offered: CheckedPolicy, actor: &str) -> Result<PolicyState, VaultError> {
    if !offered.is_clean() {
        return Err(VaultError::PolicyNotClean {
            findings: offered.findings.iter().map(|f| f.code.to_owned()).collect(),
        });
    }
    let history = core.data.policy_versions()?;
    let offered_version = offered.policy.version.get_ref().clone();
    if let Some(known) = history.iter().find(|row| row.version == offered_version) {
        if known.source != offered.source.text {
            return Err(VaultError::PolicyConflict(offered_version));
        }
        let latest = history.last().map(|row| row.version.clone());
        if latest.as_deref() != Some(offered_version.as_str()) {
            // An older file than the one in force: run the newest published version instead.
            return load_latest(&history);
        }
        return Ok(state(offered, &history));
    }
    let (_, history) = publish_into(core, offered.clone(), &history, actor)?;
    Ok(state(offered, &history))
}

/// The newest published version, parsed from the store.
pub fn load_latest(history: &[PolicyVersionRow]) -> Result<PolicyState, VaultError> {
    let latest = history.last().ok_or_else(|| VaultError::Invalid {
        field: "policy",
        reason: "no version has been published".into(),
    })?;
    let checked = checked(&format!("policy {}", latest.version), &latest.source)?;
    Ok(state(checked, history))
}

/// Records `new` as the newest version after the last one in `history`.
pub fn publish_into(
    core: &Keeper,
    new: CheckedPolicy,
    history: &[PolicyVersionRow],
    actor: &str,
) -> Result<(Published, Vec<PolicyVersionRow>), VaultError> {
    let version = new.policy.version.get_ref().clone();
    if history.iter().any(|row| row.version == version) {
        return Err(VaultError::PolicyConflict(version));
    }
    let previous = history
        .last()
        .map(|row| checked(&format!("policy {}", row.version), &row.source))
        .transpose()?;
    let (fresh, changes) = match &previous {
        Some(old) => {
            let diff = custodia_policy::diff::diff(&old.policy, &new.policy);
            (
                diff.purposes_needing_fresh_consent().into_iter().collect(),
                diff.changes,
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let row = PolicyVersionRow {
        version: version.clone(),
        source: new.source.text.clone(),
        published_at: core.clock.now(),
        fresh_consent_purposes: fresh,
    };
    core.data.commit(WriteBatch {
        mutations: vec![Mutation::InsertPolicyVersion(row.clone())],
        audit: vec![
            core.event(EventKind::PolicyPublished, actor)
                .with_outcome(version.clone())
                .with_reasons(
                    row.fresh_consent_purposes
                        .iter()
                        .map(|p| format!("fresh_consent:{p}")),
                ),
        ],
    })?;
    let mut history = history.to_vec();
    history.push(row.clone());
    Ok((
        Published {
            version,
            previous: previous.map(|p| p.policy.version.get_ref().clone()),
            fresh_consent_purposes: row.fresh_consent_purposes,
            changes,
        },
        history,
    ))
}

/// Compiles the state for a checked policy and a history (after publishing).
pub fn compile(checked: CheckedPolicy, history: &[PolicyVersionRow]) -> PolicyState {
    state(checked, history)
}
