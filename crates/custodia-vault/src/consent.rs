//! The consent ledger: append-only events (given, withdrawn, refused, expired, renewed, objected,
//! restricted, unrestricted), validated against the policy in force, each with its receipt.

use custodia_audit::EventKind;
use custodia_core::{ConsentId, SubjectId, Timestamp};
use custodia_policy::model::LegalBasis;
use custodia_store::{ConsentEventKind, ConsentRow, Mutation, WriteBatch};
use serde_json::Value;

use crate::error::VaultError;
use crate::retention;
use crate::vault::Vault;

/// A consent event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    /// The purposes it covers: one for a separate consent, several for a bundled one; none for a
    /// restriction.
    pub purposes: Vec<String>,
    /// What happened.
    pub kind: ConsentEventKind,
    /// A guardian who expressed it for the subject.
    pub guardian: Option<SubjectId>,
    /// Whether the guardian's identity and authority were verified.
    pub guardian_verified: bool,
    /// The policy version shown; the version in force when `None`.
    pub policy_version: Option<String>,
    /// How it was collected (`app_dialog`, `web_form`, `paper`...).
    pub method: String,
    /// When a given consent lapses; the purpose's `consent_valid_for` when `None`.
    pub expires_at: Option<Timestamp>,
}

/// The receipt formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptFormat {
    /// A record shaped after ISO/IEC TS 27560.
    Iso27560,
    /// A Kantara Initiative Consent Receipt v1.1.
    Kantara,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> VaultError {
    VaultError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Vault {
    /// Appends an event to a subject's consent ledger. Withdrawing stops future processing at
    /// once and leaves what was done before valid.
    pub fn record_consent(
        &self,
        subject: SubjectId,
        new: &NewConsent,
        actor: &str,
    ) -> Result<ConsentRow, VaultError> {
        let state = self.state();
        let policy = &state.policy;
        let row = self
            .core
            .data
            .subject(subject)?
            .ok_or(VaultError::SubjectNotFound(subject))?;
        if row.erased_at.is_some() {
            return Err(VaultError::SubjectErased(subject));
        }
        let whole_subject = matches!(
            new.kind,
            ConsentEventKind::Restricted | ConsentEventKind::Unrestricted
        );
        if whole_subject && !new.purposes.is_empty() {
            return Err(invalid(
                "purposes",
                "a restriction applies to the whole subject; give no purposes",
            ));
        }
        if !whole_subject && new.purposes.is_empty() {
            return Err(invalid("purposes", "name at least one purpose"));
        }
        let mut seen = std::collections::HashSet::new();
        for purpose in &new.purposes {
            let declared = policy
                .purpose(purpose)
                .ok_or_else(|| VaultError::UnknownPurpose(purpose.clone()))?;
            if !seen.insert(purpose.as_str()) {
                return Err(invalid(
                    "purposes",
                    format!("purpose `{purpose}` is listed twice"),
                ));
            }
            let consent_kind = !matches!(new.kind, ConsentEventKind::Objected) && !whole_subject;
            if consent_kind && *declared.basis.get_ref() != LegalBasis::Consent {
                return Err(invalid(
                    "purposes",
                    format!(
                        "purpose `{purpose}` does not rest on consent, so consent events do not apply to it"
                    ),
                ));
            }
        }
        let policy_version = new
            .policy_version
            .clone()
            .unwrap_or_else(|| policy.version.get_ref().clone());
        // The labels known when the policy was last loaded answer almost every event; only an
        // unknown one (perhaps just published by another instance) is looked up in the store.
        let published = state.versions.contains(&policy_version)
            || self
                .core
                .data
                .policy_versions()?
                .iter()
                .any(|v| v.version == policy_version);
        if !published {
            return Err(invalid(
                "policy_version",
                format!("version `{policy_version}` was never published"),
            ));
        }
        if new.method.trim().is_empty() || new.method.len() > 64 {
            return Err(invalid("method", "must be 1 to 64 characters"));
        }
        match new.guardian {
            Some(guardian) if guardian == subject => {
                return Err(invalid("guardian", "a subject cannot be its own guardian"));
            }
            Some(guardian) => {
                let guardian_row = self
                    .core
                    .data
                    .subject(guardian)?
                    .ok_or_else(|| invalid("guardian", "no such subject"))?;
                if guardian_row.erased_at.is_some() {
                    return Err(invalid("guardian", "the guardian was erased"));
                }
            }
            None if new.guardian_verified => {
                return Err(invalid(
                    "guardian_verified",
                    "only a guardian can be verified",
                ));
            }
            None => {}
        }
        let now = self.core.clock.now();
        let giving = matches!(
            new.kind,
            ConsentEventKind::Given | ConsentEventKind::Renewed
        );
        let expires_at = match new.expires_at {
            Some(expiry) if expiry <= now => {
                return Err(invalid("expires_at", "must be in the future"));
            }
            Some(expiry) if giving => Some(expiry),
            Some(_) => return Err(invalid("expires_at", "only a given consent expires")),
            None if giving => new
                .purposes
                .iter()
                .filter_map(|p| policy.purpose(p)?.consent_valid_for.as_ref())
                .filter_map(|validity| retention::add(now, validity.get_ref()))
                .min(),
            None => None,
        };
        let event = ConsentRow {
            id: ConsentId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?,
            subject,
            purposes: new.purposes.clone(),
            kind: new.kind,
            guardian: new.guardian,
            guardian_verified: new.guardian_verified,
            policy_version,
            method: new.method.clone(),
            at: now,
            expires_at,
        };
        let committed = self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::InsertConsent(event.clone())],
            audit: vec![
                self.core
                    .event(EventKind::ConsentRecorded, actor)
                    .with_subject(subject.to_string())
                    .with_purpose(new.purposes.join(","))
                    .with_record(event.id.to_string())
                    .with_outcome(new.kind.as_str()),
            ],
        });
        // Dropped whether or not the commit went through: a failed commit may still have landed.
        self.caches.forget_subject(subject);
        committed?;
        Ok(event)
    }

    /// A subject's ledger, oldest first.
    pub fn consents(&self, subject: SubjectId) -> Result<Vec<ConsentRow>, VaultError> {
        if self.core.data.subject(subject)?.is_none() {
            return Err(VaultError::SubjectNotFound(subject));
        }
        Ok(self.core.data.consents_of(subject)?)
    }

    /// The receipt of one ledger event, built under the version it was given under.
    pub fn receipt(
        &self,
        subject: SubjectId,
        consent: ConsentId,
        format: ReceiptFormat,
    ) -> Result<Value, VaultError> {
        let event = self
            .consents(subject)?
            .into_iter()
            .find(|e| e.id == consent)
            .ok_or(VaultError::ConsentNotFound(consent))?;
        let history = self.core.data.policy_versions()?;
        let shown = history
            .iter()
            .find(|v| v.version == event.policy_version)
            .map(|v| crate::published::checked("receipt policy", &v.source))
            .transpose()?;
        let policy = shown.map_or_else(|| self.policy(), |c| std::sync::Arc::new(c.policy));
        let jurisdiction = self
            .subject(subject)
            .ok()
            .and_then(|s| s.profile.map(|p| p.jurisdiction))
            .unwrap_or_default();
        Ok(match format {
            ReceiptFormat::Iso27560 => crate::receipt::iso_27560(&policy, &event),
            ReceiptFormat::Kantara => crate::receipt::kantara(&policy, &event, &jurisdiction),
        })
    }
}
