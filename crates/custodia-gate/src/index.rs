//! [`GateIndex`]: the policy compiled once into what each decision looks up, so a decision costs
//! a few hash lookups and no allocation beyond its reasons.

use std::collections::HashMap;

use custodia_core::Timestamp;
use custodia_policy::model::{LegalBasis, Policy};

/// One purpose as the gate sees it.
#[derive(Debug, Clone)]
pub struct PurposeEntry {
    /// The legal basis.
    pub basis: LegalBasis,
    /// The categories it covers.
    pub categories: Vec<String>,
    /// Consent for it must be separate (never bundled with other purposes).
    pub separate_consent: bool,
    /// Consents given before this instant no longer count: a later policy version changed the
    /// purpose materially and needs fresh consent.
    pub fresh_consent_since: Option<Timestamp>,
}

/// The policy, compiled for the gate.
#[derive(Debug, Clone)]
pub struct GateIndex {
    purposes: HashMap<String, PurposeEntry>,
    sensitive: HashMap<String, bool>,
    guardian_below: Option<u8>,
    refuse_below: Option<u8>,
    version: String,
}

impl GateIndex {
    /// Compiles a policy. `fresh_consent` lists, per purpose, when a published version made a
    /// material change to it (the latest such time counts).
    pub fn new<'a>(
        policy: &Policy,
        fresh_consent: impl IntoIterator<Item = (&'a str, Timestamp)>,
    ) -> Self {
        let mut cutoffs: HashMap<&str, Timestamp> = HashMap::new();
        for (purpose, at) in fresh_consent {
            let entry = cutoffs.entry(purpose).or_insert(at);
            *entry = (*entry).max(at);
        }
        let purposes = policy
            .purposes
            .iter()
            .map(|p| {
                let key = p.key.get_ref().clone();
                let entry = PurposeEntry {
                    basis: *p.basis.get_ref(),
                    categories: p.categories.iter().map(|c| c.get_ref().clone()).collect(),
                    separate_consent: p.separate_consent,
                    fresh_consent_since: cutoffs.get(key.as_str()).copied(),
                };
                (key, entry)
            })
            .collect();
        let sensitive = policy
            .categories
            .iter()
            .map(|c| (c.key.get_ref().clone(), c.sensitive))
            .collect();
        let minors = policy.minors.as_ref();
        Self {
            purposes,
            sensitive,
            guardian_below: minors
                .and_then(|m| m.guardian_consent_below.as_ref().map(|a| *a.get_ref())),
            refuse_below: minors.and_then(|m| m.refuse_below.as_ref().map(|a| *a.get_ref())),
            version: policy.version.get_ref().clone(),
        }
    }

    /// A purpose by key.
    pub fn purpose(&self, key: &str) -> Option<&PurposeEntry> {
        self.purposes.get(key)
    }

    /// Whether a category is declared, and whether it is sensitive.
    pub fn category(&self, key: &str) -> Option<bool> {
        self.sensitive.get(key).copied()
    }

    /// Below this age a verified guardian's consent is needed.
    pub fn guardian_below(&self) -> Option<u8> {
        self.guardian_below
    }

    /// Below this age the service is refused.
    pub fn refuse_below(&self) -> Option<u8> {
        self.refuse_below
    }

    /// The policy version compiled.
    pub fn version(&self) -> &str {
        &self.version
    }
}
