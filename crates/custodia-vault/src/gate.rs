//! The gate inside the vault: a subject's facts (age from its sealed profile, erasure, its
//! ledger), decisions for one or many questions, each audited with its reasons, and reads that
//! pass the gate before any value is decrypted.

use std::collections::HashMap;
use std::sync::Arc;

use custodia_core::{ApiKeyId, SubjectId, Timestamp};
use custodia_gate::{Decision, GateRequest, LedgerEntry, LedgerKind, SubjectFacts};
use custodia_store::ConsentEventKind;

use crate::batcher::DecisionRecord;
use crate::cache::{self, CachedFacts};
use crate::error::VaultError;
use crate::vault::{RecordValue, Vault};

/// An authenticated caller: an API key with its rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id, or `None` for the operator's own tools.
    pub key: Option<ApiKeyId>,
    /// Admin keys act for any purpose (every other gate rule still applies).
    pub admin: bool,
    /// The purposes a service key is bound to.
    pub purposes: Vec<String>,
}

impl Caller {
    /// The operator's own tools (CLI, benchmarks): admin rights, no key.
    pub fn operator() -> Self {
        Self {
            key: None,
            admin: true,
            purposes: Vec::new(),
        }
    }

    /// The actor recorded in audit entries: the key id, or `operator`.
    pub fn actor(&self) -> String {
        crate::batcher::actor(self.key)
    }

    fn gate(&self) -> custodia_gate::Caller<'_> {
        if self.admin {
            custodia_gate::Caller::Admin
        } else {
            custodia_gate::Caller::Service {
                purposes: &self.purposes,
            }
        }
    }
}

/// One question for the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Whose data.
    pub subject: SubjectId,
    /// For which purpose.
    pub purpose: String,
    /// Which categories.
    pub categories: Vec<String>,
}

/// What a gated read returns.
#[derive(Debug)]
pub enum Gated<T> {
    /// The gate allowed it.
    Allowed {
        /// The result.
        value: T,
        /// Why it was allowed.
        decision: Decision,
    },
    /// The gate denied it; nothing was read.
    Denied(Decision),
}

/// An age band's age for the gate: the youngest age of `A_B` bands, one less than `N` for
/// `under_N`, 18 for `adult`; unknown bands say nothing.
fn band_age(band: &str) -> Option<u8> {
    if band == "adult" {
        return Some(18);
    }
    if let Some(limit) = band.strip_prefix("under_") {
        return limit.parse::<u8>().ok().map(|n| n.saturating_sub(1));
    }
    band.split('_').next().and_then(|low| low.parse().ok())
}

/// What the audit writer needs of a decision to write its entry (it builds the entry itself):
/// the subject, purpose, categories, outcome and reasons, the caller and the time.
fn decision_record(
    ask: &Ask,
    decision: &Decision,
    caller: &Caller,
    now: Timestamp,
) -> DecisionRecord {
    DecisionRecord {
        at: now.as_millis(),
        key: caller.key,
        subject: ask.subject,
        purpose: ask.purpose.clone(),
        categories: ask.categories.join(","),
        allowed: decision.allowed,
        reasons: decision.reasons.clone(),
    }
}

fn ledger_kind(kind: ConsentEventKind) -> LedgerKind {
    match kind {
        ConsentEventKind::Given => LedgerKind::Given,
        ConsentEventKind::Renewed => LedgerKind::Renewed,
        ConsentEventKind::Withdrawn => LedgerKind::Withdrawn,
        ConsentEventKind::Refused => LedgerKind::Refused,
        ConsentEventKind::Expired => LedgerKind::Expired,
        ConsentEventKind::Objected => LedgerKind::Objected,
        ConsentEventKind::Restricted => LedgerKind::Restricted,
        ConsentEventKind::Unrestricted => LedgerKind::Unrestricted,
    }
}

impl Vault {
    /// What the gate knows about a subject now.
    pub fn facts(&self, subject: SubjectId, now: Timestamp) -> Result<SubjectFacts, VaultError> {
        Ok(self.cached_facts(subject, now)?.as_of(now).into_owned())
    }

    /// The subject's facts from the cache, or read from storage and cached.
    fn cached_facts(
        &self,
        subject: SubjectId,
        now: Timestamp,
    ) -> Result<Arc<CachedFacts>, VaultError> {
        if let Some(hit) = self.caches.facts(subject) {
            return Ok(hit);
        }
        let read_at = self.caches.generation();
        let view = self.subject(subject)?;
        let (birth, band_age) = view.profile.as_ref().map_or((None, None), |profile| {
            (
                profile
                    .birth_date
                    .as_deref()
                    .and_then(|d| Timestamp::parse(d).ok()),
                profile.age_band.as_deref().and_then(band_age),
            )
        });
        let ledger = self.core.data.consents_of(subject)?;
        let facts = SubjectFacts::from_ledger(
            ledger.iter().map(|event| LedgerEntry {
                purposes: &event.purposes,
                kind: ledger_kind(event.kind),
                guardian: event.guardian.map(|_| event.guardian_verified),
                at: event.at,
                expires_at: event.expires_at,
            }),
            cache::age(birth, band_age, now),
            view.erased_at.is_some(),
        );
        let cached = Arc::new(CachedFacts {
            facts,
            day: cache::day_of(now),
            birth,
            band_age,
        });
        self.caches.store_facts(subject, cached.clone(), read_at);
        Ok(cached)
    }

    /// Answers from memory when the caller's facts are all cached: no storage read, no blocking
    /// (the audit entries go to the group-commit writer). `None` when something must be read
    /// first; the caller then uses [`Vault::decide_many`] on a blocking thread.
    pub fn try_decide_cached(
        &self,
        asks: &[Ask],
        caller: &Caller,
    ) -> Option<Result<Vec<Decision>, VaultError>> {
        let now = self.core.clock.now();
        let state = self.state();
        let handed = if let [ask] = asks {
            // One question, the usual case: no list to gather the decision in.
            let facts = self.caches.facts(ask.subject)?;
            let decision = self.decide_one(&state, &facts.as_of(now), ask, caller, now);
            let audit = decision_record(ask, &decision, caller, now);
            self.core
                .decisions
                .append_deferred(Some(audit))
                .map(|()| vec![decision])
        } else {
            let mut decisions = Vec::with_capacity(asks.len());
            let mut audit = Vec::with_capacity(asks.len());
            for ask in asks {
                // A subject not cached: nothing has been handed over yet, so giving up is free.
                let facts = self.caches.facts(ask.subject)?;
                let decision = self.decide_one(&state, &facts.as_of(now), ask, caller, now);
                audit.push(decision_record(ask, &decision, caller, now));
                decisions.push(decision);
            }
            self.core
                .decisions
                .append_deferred(audit)
                .map(|()| decisions)
        };
        Some(handed.map_err(VaultError::from))
    }

    fn decide_one(
        &self,
        state: &crate::published::PolicyState,
        facts: &SubjectFacts,
        ask: &Ask,
        caller: &Caller,
        now: Timestamp,
    ) -> Decision {
        let decide = |categories: &[&str]| {
            custodia_gate::decide(
                &state.index,
                facts,
                &GateRequest {
                    purpose: &ask.purpose,
                    categories,
                    caller: caller.gate(),
                    now,
                },
            )
        };
        // Most questions name a category or two: borrow them from the stack.
        let mut few = [""; 4];
        if ask.categories.len() <= few.len() {
            for (slot, category) in few.iter_mut().zip(&ask.categories) {
                *slot = category;
            }
            decide(few.get(..ask.categories.len()).unwrap_or_default())
        } else {
            let categories: Vec<&str> = ask.categories.iter().map(String::as_str).collect();
            decide(&categories)
        }
    }

    /// Decides many questions at once, loading each subject's facts once, and audits every
    /// decision, allow or deny, with its reasons. The audit entries are handed to the group-commit
    /// writer and made durable within one disk sync (see [`crate::Vault::flush_audit`]); a
    /// decision followed by a read ([`Vault::read_gated`]) waits for them instead.
    pub fn decide_many(&self, asks: &[Ask], caller: &Caller) -> Result<Vec<Decision>, VaultError> {
        self.decide_with(asks, caller, false)
    }

    /// Waits until every gate-decision audit entry handed over so far is durable.
    pub fn flush_audit(&self) -> Result<(), VaultError> {
        Ok(self.core.decisions.flush()?)
    }

    fn decide_with(
        &self,
        asks: &[Ask],
        caller: &Caller,
        durable: bool,
    ) -> Result<Vec<Decision>, VaultError> {
        let now = self.core.clock.now();
        let state = self.state();
        let mut facts: HashMap<SubjectId, Arc<CachedFacts>> = HashMap::new();
        let mut decisions = Vec::with_capacity(asks.len());
        let mut audit = Vec::with_capacity(asks.len());
        for ask in asks {
            let subject_facts = match facts.entry(ask.subject) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(self.cached_facts(ask.subject, now)?)
                }
            };
            let decision = self.decide_one(&state, &subject_facts.as_of(now), ask, caller, now);
            audit.push(decision_record(ask, &decision, caller, now));
            decisions.push(decision);
        }
        // Group commit: concurrent decisions share one durable commit of their audit entries.
        if durable {
            self.core.decisions.append(audit)?;
        } else {
            self.core.decisions.append_deferred(audit)?;
        }
        Ok(decisions)
    }

    /// Decides one question; its audit entry is durable when this returns.
    pub fn decide(&self, ask: &Ask, caller: &Caller) -> Result<Decision, VaultError> {
        let mut decisions = self.decide_with(std::slice::from_ref(ask), caller, true)?;
        decisions
            .pop()
            .ok_or(VaultError::SubjectNotFound(ask.subject))
    }

    /// Reads a subject's records of `category` for `purpose` if the gate allows it; a denial
    /// decrypts nothing. Both the decision and the reads are audited.
    pub fn read_gated(
        &self,
        subject: SubjectId,
        category: &str,
        purpose: &str,
        caller: &Caller,
    ) -> Result<Gated<Vec<RecordValue>>, VaultError> {
        let decision = self.decide(
            &Ask {
                subject,
                purpose: purpose.to_owned(),
                categories: vec![category.to_owned()],
            },
            caller,
        )?;
        if !decision.allowed {
            return Ok(Gated::Denied(decision));
        }
        let value = self.read_records(subject, category, purpose, &caller.actor())?;
        Ok(Gated::Allowed { value, decision })
    }
}

#[cfg(test)]
mod tests {
    use super::band_age;

    #[test]
    fn age_bands_map_to_a_conservative_age() {
        assert_eq!(band_age("under_13"), Some(12));
        assert_eq!(band_age("13_17"), Some(13));
        assert_eq!(band_age("adult"), Some(18));
        assert_eq!(band_age("teen"), None);
    }
}
