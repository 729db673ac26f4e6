//! [`decide`]: the gate's rules. A request is allowed only when no rule denies it; every
//! decision carries machine-readable reasons (the denials, or the basis that allows it), which
//! are audited and returned to callers.
//!
//! The rules, in order: the purpose exists and covers the categories; the caller's key is bound
//! to the purpose; the subject is not erased, not below the refusal age, has not restricted
//! processing or objected to the purpose (legal obligations excepted); and the legal basis holds.
//! For consent that means the latest event for the purpose is a consent given, not withdrawn,
//! refused or lapsed, given after any material policy change to the purpose, given separately
//! when a sensitive category or the purpose demands it, and given by a verified guardian when the
//! subject is below the guardian age.

use serde::Serialize;

use custodia_core::Timestamp;
use custodia_policy::model::LegalBasis;

use crate::facts::{ConsentStatus, SubjectFacts};
use crate::index::GateIndex;

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// An admin key: may act for any purpose (the gate still applies every other rule).
    Admin,
    /// A service key bound to these purposes.
    Service {
        /// The purposes it may act for.
        purposes: &'a [String],
    },
}

/// One question for the gate.
#[derive(Debug, Clone, Copy)]
pub struct GateRequest<'a> {
    /// The purpose named.
    pub purpose: &'a str,
    /// The categories to be used.
    pub categories: &'a [&'a str],
    /// Who asks.
    pub caller: Caller<'a>,
    /// Now, from the injected clock.
    pub now: Timestamp,
}

/// Why the gate decided as it did. Codes are stable: callers and auditors match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub enum Reason {
    /// The purpose is not in the policy.
    PurposeUnknown,
    /// A category is not in the policy.
    CategoryUnknown,
    /// The purpose does not cover a category.
    CategoryNotCovered,
    /// The caller's key is not bound to the purpose.
    KeyNotBound,
    /// The subject was erased.
    SubjectErased,
    /// The subject is below the age the service refuses.
    MinorRefused,
    /// The subject restricted processing.
    SubjectRestricted,
    /// The subject objected to this purpose.
    SubjectObjected,
    /// No consent for the purpose.
    ConsentMissing,
    /// Consent was withdrawn.
    ConsentWithdrawn,
    /// Consent was refused.
    ConsentRefused,
    /// Consent lapsed.
    ConsentExpired,
    /// Consent predates a material change of the purpose.
    ConsentSuperseded,
    /// A sensitive category (or the purpose) needs separate consent, but it was bundled.
    ConsentNotSeparate,
    /// The subject is below the guardian age and the consent is not a verified guardian's.
    GuardianConsentRequired,
    /// Allowed on consent.
    BasisConsent,
    /// Allowed as necessary for a contract.
    BasisContract,
    /// Allowed on legitimate interest.
    BasisLegitimateInterest,
    /// Allowed for a legal obligation.
    BasisLegalObligation,
    /// Allowed for vital interests.
    BasisVitalInterest,
    /// Allowed for a task in the public interest.
    BasisPublicInterest,
    /// A hand-over of a category the policy says is never shared.
    DisclosureNeverShared,
    /// A hand-over to a recipient the policy does not declare.
    DisclosureUnknownRecipient,
    /// The recipient is declared, but as another kind (a processor named as an authority, or
    /// the reverse).
    DisclosureRecipientKindMismatch,
    /// The recipient is not declared to receive a category.
    DisclosureNotEntitled,
    /// The recipient does not serve the purpose named.
    DisclosurePurposeNotServed,
    /// The recipient may receive only de-identified data, never one subject's.
    DisclosureDeidentifiedOnly,
    /// Data going abroad without a transfer mechanism the policy declares for it, or without
    /// the subject's consent where that mechanism is consent.
    DisclosureTransferWithoutBasis,
    /// A hand-over to an authority without the legal document's reference.
    DisclosureReferenceRequired,
}

impl Reason {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::PurposeUnknown => "purpose.unknown",
            Self::CategoryUnknown => "category.unknown",
            Self::CategoryNotCovered => "purpose.category_not_covered",
            Self::KeyNotBound => "key.purpose_not_bound",
            Self::SubjectErased => "subject.erased",
            Self::MinorRefused => "minor.refused",
            Self::SubjectRestricted => "subject.restricted",
            Self::SubjectObjected => "subject.objected",
            Self::ConsentMissing => "consent.missing",
            Self::ConsentWithdrawn => "consent.withdrawn",
            Self::ConsentRefused => "consent.refused",
            Self::ConsentExpired => "consent.expired",
            Self::ConsentSuperseded => "consent.superseded",
            Self::ConsentNotSeparate => "consent.not_separate",
            Self::GuardianConsentRequired => "minor.guardian_consent_required",
            Self::BasisConsent => "basis.consent",
            Self::BasisContract => "basis.contract",
            Self::BasisLegitimateInterest => "basis.legitimate_interest",
            Self::BasisLegalObligation => "basis.legal_obligation",
            Self::BasisVitalInterest => "basis.vital_interest",
            Self::BasisPublicInterest => "basis.public_interest",
            Self::DisclosureNeverShared => "disclosure.never_shared",
            Self::DisclosureUnknownRecipient => "disclosure.unknown_recipient",
            Self::DisclosureRecipientKindMismatch => "disclosure.recipient_kind_mismatch",
            Self::DisclosureNotEntitled => "disclosure.not_entitled",
            Self::DisclosurePurposeNotServed => "disclosure.purpose_not_served",
            Self::DisclosureDeidentifiedOnly => "disclosure.deidentified_only",
            Self::DisclosureTransferWithoutBasis => "disclosure.transfer_without_basis",
            Self::DisclosureReferenceRequired => "disclosure.reference_required",
        }
    }

    fn for_basis(basis: LegalBasis) -> Self {
        match basis {
            LegalBasis::Consent => Self::BasisConsent,
            LegalBasis::Contract => Self::BasisContract,
            LegalBasis::LegitimateInterest => Self::BasisLegitimateInterest,
            LegalBasis::LegalObligation => Self::BasisLegalObligation,
            LegalBasis::VitalInterest => Self::BasisVitalInterest,
            LegalBasis::PublicInterest => Self::BasisPublicInterest,
        }
    }
}

impl From<Reason> for &'static str {
    fn from(reason: Reason) -> Self {
        reason.code()
    }
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// The denials, or the basis that allows.
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// The reason codes.
    pub fn codes(&self) -> Vec<&'static str> {
        self.reasons.iter().map(|r| r.code()).collect()
    }
}

/// Decides one request for one subject.
pub fn decide(index: &GateIndex, facts: &SubjectFacts, request: &GateRequest<'_>) -> Decision {
    let mut denials: Vec<Reason> = Vec::new();
    let Some(purpose) = index.purpose(request.purpose) else {
        return Decision {
            allowed: false,
            reasons: vec![Reason::PurposeUnknown],
        };
    };
    let mut sensitive = false;
    for category in request.categories {
        match index.category(category) {
            None => push_once(&mut denials, Reason::CategoryUnknown),
            Some(is_sensitive) => {
                sensitive |= is_sensitive;
                if !purpose.categories.iter().any(|c| c == category) {
                    push_once(&mut denials, Reason::CategoryNotCovered);
                }
            }
        }
    }
    if let Caller::Service { purposes } = request.caller
        && !purposes.iter().any(|p| p == request.purpose)
    {
        denials.push(Reason::KeyNotBound);
    }
    let legal_obligation = purpose.basis == LegalBasis::LegalObligation;
    if facts.erased && !legal_obligation {
        denials.push(Reason::SubjectErased);
    }
    if let (Some(age), Some(refuse)) = (facts.age, index.refuse_below())
        && age < refuse
    {
        denials.push(Reason::MinorRefused);
    }
    if facts.restricted && !legal_obligation {
        denials.push(Reason::SubjectRestricted);
    }
    if !legal_obligation && facts.objections.iter().any(|p| p == request.purpose) {
        denials.push(Reason::SubjectObjected);
    }
    if purpose.basis == LegalBasis::Consent {
        consent_rules(index, facts, request, purpose, sensitive, &mut denials);
    }
    if denials.is_empty() {
        Decision {
            allowed: true,
            reasons: vec![Reason::for_basis(purpose.basis)],
        }
    } else {
        Decision {
            allowed: false,
            reasons: denials,
        }
    }
}

/// The consent rules alone, for a purpose whatever its legal basis: what a transfer abroad on
/// the subject's consent needs (PIPL Art. 39) even when the purpose itself rests on a contract.
/// Empty when a consent for `purpose` holds now; an unknown purpose is
/// [`Reason::PurposeUnknown`].
pub fn consent_denials(
    index: &GateIndex,
    facts: &SubjectFacts,
    purpose: &str,
    categories: &[&str],
    now: Timestamp,
) -> Vec<Reason> {
    let Some(entry) = index.purpose(purpose) else {
        return vec![Reason::PurposeUnknown];
    };
    let sensitive = categories
        .iter()
        .any(|category| index.category(category).unwrap_or(false));
    let request = GateRequest {
        purpose,
        categories,
        caller: Caller::Admin,
        now,
    };
    let mut denials = Vec::new();
    consent_rules(index, facts, &request, entry, sensitive, &mut denials);
    denials
}

fn consent_rules(
    index: &GateIndex,
    facts: &SubjectFacts,
    request: &GateRequest<'_>,
    purpose: &crate::index::PurposeEntry,
    sensitive: bool,
    denials: &mut Vec<Reason>,
) {
    let Some(consent) = facts.consents.get(request.purpose) else {
        denials.push(Reason::ConsentMissing);
        return;
    };
    match consent.status {
        ConsentStatus::Withdrawn => denials.push(Reason::ConsentWithdrawn),
        ConsentStatus::Refused => denials.push(Reason::ConsentRefused),
        ConsentStatus::Expired => denials.push(Reason::ConsentExpired),
        ConsentStatus::Given => {
            if consent
                .expires_at
                .is_some_and(|expiry| expiry <= request.now)
            {
                denials.push(Reason::ConsentExpired);
            }
            if purpose
                .fresh_consent_since
                .is_some_and(|cutoff| consent.at < cutoff)
            {
                denials.push(Reason::ConsentSuperseded);
            }
            if consent.bundled && (sensitive || purpose.separate_consent) {
                denials.push(Reason::ConsentNotSeparate);
            }
            if let (Some(age), Some(limit)) = (facts.age, index.guardian_below())
                && age < limit
                && consent.guardian != Some(true)
            {
                denials.push(Reason::GuardianConsentRequired);
            }
        }
    }
}

fn push_once(reasons: &mut Vec<Reason>, reason: Reason) {
    if !reasons.contains(&reason) {
        reasons.push(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{LedgerEntry, LedgerKind};

    const POLICY: &str = r#"
version = "1"
effective = "2025-06-01"
laws = ["PIPL"]
data_location = "CN"
[controller]
name = "C"
product = "P"
contact = { email = "e@example.com" }
[[category]]
key = "user.contact.phone_number"
sensitive = true
[[category]]
key = "user.device.device_id"
[[category]]
key = "system.operations.network_log"
extension = true
network_log = true
[[purpose]]
key = "account"
basis = "contract"
categories = ["user.contact.phone_number"]
[[purpose]]
key = "marketing"
basis = "consent"
optional = true
categories = ["user.device.device_id"]
[[purpose]]
key = "voice"
basis = "consent"
optional = true
separate_consent = true
categories = ["user.contact.phone_number"]
[[purpose]]
key = "security"
basis = "legal_obligation"
categories = ["system.operations.network_log"]
[[retention]]
categories = ["user.contact.phone_number", "user.device.device_id"]
keep = "1y"
[[retention]]
categories = ["system.operations.network_log"]
keep = "6mo"
[rights]
offered = ["access", "copy", "rectification", "erasure", "withdraw_consent"]
respond_within = { working_days = 15 }
[minors]
guardian_consent_below = 14
refuse_below = 8
"#;

    fn index() -> GateIndex {
        let checked = custodia_policy::CheckedPolicy::from_source(custodia_policy::Source::new(
            "gate.toml",
            POLICY,
        ))
        .unwrap();
        assert!(checked.is_clean(), "{:#?}", checked.findings);
        GateIndex::new(&checked.policy, [])
    }

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    /// (purposes, kind, guardian verified, at, expires at)
    type Event<'a> = (&'a [&'a str], LedgerKind, Option<bool>, i64, Option<i64>);

    fn facts(events: &[Event<'_>]) -> SubjectFacts {
        let owned: Vec<Vec<String>> = events
            .iter()
            .map(|(p, ..)| p.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        SubjectFacts::from_ledger(
            events
                .iter()
                .zip(&owned)
                .map(|((_, kind, guardian, at, exp), purposes)| LedgerEntry {
                    purposes,
                    kind: *kind,
                    guardian: *guardian,
                    at: t(*at),
                    expires_at: exp.map(t),
                }),
            Some(30),
            false,
        )
    }

    #[test]
    fn consent_denials_apply_the_consent_rules_whatever_the_basis() {
        let index = index();
        let none = facts(&[]);
        let phone = ["user.contact.phone_number"];
        // `account` rests on a contract, yet a transfer on consent needs the subject's.
        assert!(ask(&index, &none, "account", &phone).allowed);
        assert_eq!(
            consent_denials(&index, &none, "account", &phone, t(1_000)),
            [Reason::ConsentMissing]
        );
        let given = facts(&[(&["account"], LedgerKind::Given, None, 10, None)]);
        assert!(consent_denials(&index, &given, "account", &phone, t(1_000)).is_empty());
        let bundled = facts(&[(&["account", "marketing"], LedgerKind::Given, None, 10, None)]);
        assert_eq!(
            consent_denials(&index, &bundled, "account", &phone, t(1_000)),
            [Reason::ConsentNotSeparate],
            "the phone number is sensitive"
        );
        let lapsed = facts(&[(&["account"], LedgerKind::Given, None, 10, Some(500))]);
        assert_eq!(
            consent_denials(&index, &lapsed, "account", &phone, t(1_000)),
            [Reason::ConsentExpired]
        );
        assert_eq!(
            consent_denials(&index, &given, "nope", &phone, t(1_000)),
            [Reason::PurposeUnknown]
        );
    }

    fn ask(
        index: &GateIndex,
        facts: &SubjectFacts,
        purpose: &str,
        categories: &[&str],
    ) -> Decision {
        decide(
            index,
            facts,
            &GateRequest {
                purpose,
                categories,
                caller: Caller::Admin,
                now: t(1_000),
            },
        )
    }

    #[test]
    fn contract_purposes_allow_what_they_cover_and_nothing_else() {
        let index = index();
        let none = facts(&[]);
        let allowed = ask(&index, &none, "account", &["user.contact.phone_number"]);
        assert!(allowed.allowed);
        assert_eq!(allowed.codes(), ["basis.contract"]);
        let denied = ask(&index, &none, "account", &["user.device.device_id"]);
        assert_eq!(denied.codes(), ["purpose.category_not_covered"]);
        assert_eq!(ask(&index, &none, "nope", &[]).codes(), ["purpose.unknown"]);
        assert_eq!(
            ask(&index, &none, "account", &["user.made_up"]).codes(),
            ["category.unknown"]
        );
    }

    #[test]
    fn service_keys_act_only_for_their_purposes() {
        let index = index();
        let none = facts(&[]);
        let bound = vec!["account".to_owned()];
        let request = |purpose| GateRequest {
            purpose,
            categories: &["user.contact.phone_number"],
            caller: Caller::Service { purposes: &bound },
            now: t(1),
        };
        assert!(decide(&index, &none, &request("account")).allowed);
        let other = decide(&index, &none, &request("voice"));
        assert!(
            other.codes().contains(&"key.purpose_not_bound"),
            "{other:?}"
        );
    }

    #[test]
    fn consent_must_be_given_current_and_not_withdrawn() {
        let index = index();
        let device = ["user.device.device_id"];
        assert_eq!(
            ask(&index, &facts(&[]), "marketing", &device).codes(),
            ["consent.missing"]
        );
        let given = facts(&[(&["marketing"], LedgerKind::Given, None, 10, None)]);
        assert_eq!(
            ask(&index, &given, "marketing", &device).codes(),
            ["basis.consent"]
        );
        let withdrawn = facts(&[
            (&["marketing"], LedgerKind::Given, None, 10, None),
            (&["marketing"], LedgerKind::Withdrawn, None, 20, None),
        ]);
        assert_eq!(
            ask(&index, &withdrawn, "marketing", &device).codes(),
            ["consent.withdrawn"]
        );
        let refused = facts(&[(&["marketing"], LedgerKind::Refused, None, 10, None)]);
        assert_eq!(
            ask(&index, &refused, "marketing", &device).codes(),
            ["consent.refused"]
        );
        let lapsed = facts(&[(&["marketing"], LedgerKind::Given, None, 10, Some(999))]);
        assert_eq!(
            ask(&index, &lapsed, "marketing", &device).codes(),
            ["consent.expired"]
        );
        let lasting = facts(&[(&["marketing"], LedgerKind::Given, None, 10, Some(1_001))]);
        assert!(ask(&index, &lasting, "marketing", &device).allowed);
        let renewed = facts(&[
            (&["marketing"], LedgerKind::Withdrawn, None, 10, None),
            (&["marketing"], LedgerKind::Renewed, None, 20, None),
        ]);
        assert!(ask(&index, &renewed, "marketing", &device).allowed);
    }

    #[test]
    fn a_material_change_supersedes_earlier_consents() {
        let checked = custodia_policy::CheckedPolicy::from_source(custodia_policy::Source::new(
            "gate.toml",
            POLICY,
        ))
        .unwrap();
        let index = GateIndex::new(&checked.policy, [("marketing", t(500))]);
        let device = ["user.device.device_id"];
        let before = facts(&[(&["marketing"], LedgerKind::Given, None, 100, None)]);
        assert_eq!(
            ask(&index, &before, "marketing", &device).codes(),
            ["consent.superseded"]
        );
        let after = facts(&[(&["marketing"], LedgerKind::Renewed, None, 600, None)]);
        assert!(ask(&index, &after, "marketing", &device).allowed);
    }

    #[test]
    fn sensitive_data_needs_a_separate_consent() {
        let index = index();
        let phone = ["user.contact.phone_number"];
        let bundled = facts(&[(&["voice", "marketing"], LedgerKind::Given, None, 10, None)]);
        assert_eq!(
            ask(&index, &bundled, "voice", &phone).codes(),
            ["consent.not_separate"]
        );
        let separate = facts(&[(&["voice"], LedgerKind::Given, None, 10, None)]);
        assert!(ask(&index, &separate, "voice", &phone).allowed);
        // A bundled consent still serves a purpose with no sensitive data and no separate rule.
        assert!(ask(&index, &bundled, "marketing", &["user.device.device_id"]).allowed);
    }

    #[test]
    fn children_need_a_verified_guardian_and_the_youngest_are_refused() {
        let index = index();
        let device = ["user.device.device_id"];
        let mut child = facts(&[(&["marketing"], LedgerKind::Given, None, 10, None)]);
        child.age = Some(12);
        assert_eq!(
            ask(&index, &child, "marketing", &device).codes(),
            ["minor.guardian_consent_required"]
        );
        let mut unverified = facts(&[(&["marketing"], LedgerKind::Given, Some(false), 10, None)]);
        unverified.age = Some(12);
        assert!(!ask(&index, &unverified, "marketing", &device).allowed);
        let mut guarded = facts(&[(&["marketing"], LedgerKind::Given, Some(true), 10, None)]);
        guarded.age = Some(12);
        assert!(ask(&index, &guarded, "marketing", &device).allowed);
        let mut teen = facts(&[(&["marketing"], LedgerKind::Given, None, 10, None)]);
        teen.age = Some(14);
        assert!(ask(&index, &teen, "marketing", &device).allowed);
        let mut young = guarded.clone();
        young.age = Some(7);
        assert!(
            ask(&index, &young, "marketing", &device)
                .codes()
                .contains(&"minor.refused")
        );
    }

    #[test]
    fn restriction_and_objection_deny_all_but_legal_obligations() {
        let index = index();
        let restricted = facts(&[(&[], LedgerKind::Restricted, None, 10, None)]);
        assert_eq!(
            ask(
                &index,
                &restricted,
                "account",
                &["user.contact.phone_number"]
            )
            .codes(),
            ["subject.restricted"]
        );
        assert!(
            ask(
                &index,
                &restricted,
                "security",
                &["system.operations.network_log"]
            )
            .allowed
        );
        let lifted = facts(&[
            (&[], LedgerKind::Restricted, None, 10, None),
            (&[], LedgerKind::Unrestricted, None, 20, None),
        ]);
        assert!(ask(&index, &lifted, "account", &["user.contact.phone_number"]).allowed);
        let objected = facts(&[(&["account"], LedgerKind::Objected, None, 10, None)]);
        assert_eq!(
            ask(&index, &objected, "account", &["user.contact.phone_number"]).codes(),
            ["subject.objected"]
        );
        let mut erased = facts(&[]);
        erased.erased = true;
        assert_eq!(
            ask(&index, &erased, "account", &["user.contact.phone_number"]).codes(),
            ["subject.erased"]
        );
        assert!(
            ask(
                &index,
                &erased,
                "security",
                &["system.operations.network_log"]
            )
            .allowed
        );
    }

    #[test]
    fn reasons_serialise_as_their_codes() {
        let decision = Decision {
            allowed: false,
            reasons: vec![Reason::ConsentMissing, Reason::KeyNotBound],
        };
        let json = serde_json::to_value(&decision).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "allowed": false, "reasons": ["consent.missing", "key.purpose_not_bound"] })
        );
    }
}
