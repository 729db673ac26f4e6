//! The disclosure log: each actual hand-over of a subject's data to a processor or an authority
//! the policy declares. It answers "who got my data" and names whom an erasure must reach
//! ([`Vault::notify_recipients`](crate::Vault::notify_recipients)).
//!
//! [`Vault::record_disclosure`] passes the hand-over through a gate made of the policy's sharing
//! rules and the ordinary purpose gate. It is refused, with stable reason codes, when:
//! - a category is one the policy says is never shared (`disclosure.never_shared`);
//! - the recipient is not declared (`disclosure.unknown_recipient`), or is declared as the other
//!   kind, processor versus authority (`disclosure.recipient_kind_mismatch`);
//! - the recipient is not declared to receive a category (`disclosure.not_entitled`), does not
//!   serve the purpose (`disclosure.purpose_not_served`), or receives only de-identified data
//!   (`disclosure.deidentified_only`: a hand-over of one subject's data is identifiable);
//! - the data goes abroad (the recipient's location, or the `country` given, differs from the
//!   policy's `data_location`) without a `[[transfer]]` that declares that destination, those
//!   categories and that recipient, or under a `consent` mechanism without the subject's live
//!   consent to the purpose (`disclosure.transfer_without_basis`);
//! - an authority's request comes without its document reference (`disclosure.reference_required`);
//! - the ordinary gate denies the purpose for the subject (consent, restriction, objection,
//!   erasure, the caller's key not bound to the purpose, ...), with the gate's own codes.
//!
//! An allowed disclosure is stored and audited (`decision` then `disclosure_recorded`, naming the
//! recipient by its policy name); a refusal is audited as a denying `decision` with its reasons
//! and stores nothing.

use custodia_audit::EventKind;
use custodia_core::{DisclosureId, SubjectId};
use custodia_gate::{Decision, GateRequest, Reason};
use custodia_policy::model::{Policy, Processor, ProcessorKind, TransferMechanism};
use custodia_store::{DisclosureRow, Mutation, WriteBatch};

use crate::error::VaultError;
use crate::gate::{Caller, Gated};
use crate::vault::Vault;

/// The stored recipient kind of a processor (SDK or service provider).
pub const PROCESSOR: &str = "processor";
/// The stored recipient kind of a public authority.
pub const AUTHORITY: &str = "authority";
/// The longest document reference accepted.
const MAX_REFERENCE_CHARS: usize = 500;

/// Whom data goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientKind {
    /// A processor: an SDK or a service provider (`kind = "sdk"` or `"service"` in the policy).
    Processor,
    /// A public authority on legal request (`kind = "authority"`).
    Authority,
}

impl RecipientKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processor => PROCESSOR,
            Self::Authority => AUTHORITY,
        }
    }

    /// From the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            PROCESSOR => Some(Self::Processor),
            AUTHORITY => Some(Self::Authority),
            _ => None,
        }
    }

    fn matches(self, declared: ProcessorKind) -> bool {
        (self == Self::Authority) == (declared == ProcessorKind::Authority)
    }
}

/// A hand-over to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDisclosure {
    /// The recipient's name as the policy's `[[processor]]` declares it.
    pub recipient: String,
    /// Processor or authority.
    pub recipient_kind: RecipientKind,
    /// The categories handed over.
    pub categories: Vec<String>,
    /// The purpose it serves.
    pub purpose: String,
    /// The legal document's reference (required for authorities).
    pub reference: Option<String>,
    /// Where the data went (ISO 3166 code), when not the recipient's declared location.
    pub country: Option<String>,
    /// The transfer mechanism relied on, when abroad (`consent`, `standard_contract`, `scc`...);
    /// it must be one the policy declares for the transfer. `None` takes the declared one.
    pub mechanism: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> VaultError {
    VaultError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn push_once(reasons: &mut Vec<Reason>, reason: Reason) {
    if !reasons.contains(&reason) {
        reasons.push(reason);
    }
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn mechanism_name(mechanism: TransferMechanism) -> String {
    serde_json::to_value(mechanism)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A [`NewDisclosure`] of the right shape.
struct Validated {
    categories: Vec<String>,
    reference: Option<String>,
    mechanism: Option<TransferMechanism>,
}

impl NewDisclosure {
    /// Checks the shape of the input (not the policy): what fails here is a bad request.
    fn validated(&self) -> Result<Validated, VaultError> {
        if self.recipient.trim().is_empty() || self.recipient.len() > 200 {
            return Err(invalid("recipient", "must be 1 to 200 bytes"));
        }
        if self.purpose.trim().is_empty() {
            return Err(invalid("purpose", "must not be empty"));
        }
        if self.categories.is_empty() {
            return Err(invalid("categories", "name at least one category"));
        }
        let mut categories: Vec<String> = Vec::with_capacity(self.categories.len());
        for category in &self.categories {
            if !categories.contains(category) {
                categories.push(category.clone());
            }
        }
        let reference = match self.reference.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.chars().count() > MAX_REFERENCE_CHARS => {
                return Err(invalid(
                    "reference",
                    format!("must be at most {MAX_REFERENCE_CHARS} characters"),
                ));
            }
            Some(text) => Some(text.to_owned()),
        };
        if let Some(country) = &self.country
            && !is_country(country)
        {
            return Err(invalid(
                "country",
                "must be a two-letter ISO 3166 code, such as `US`",
            ));
        }
        let mechanism = self
            .mechanism
            .as_deref()
            .map(|name| {
                serde_json::from_value::<TransferMechanism>(serde_json::Value::String(
                    name.to_owned(),
                ))
                .map_err(|_| {
                    invalid(
                        "mechanism",
                        "must be one of consent, standard_contract, security_assessment, \
                         certification, scc, adequacy, bcr",
                    )
                })
            })
            .transpose()?;
        Ok(Validated {
            categories,
            reference,
            mechanism,
        })
    }
}

/// What the policy's sharing rules say about a hand-over: the denials, and the mechanism a
/// transfer abroad relies on. `consent_holds` answers whether the subject's consent to the
/// purpose holds now (asked only for a transfer on consent).
struct SharingCheck {
    denials: Vec<Reason>,
    country: Option<String>,
    mechanism: Option<String>,
}

fn check_sharing(
    policy: &Policy,
    new: &NewDisclosure,
    categories: &[String],
    reference: Option<&str>,
    asked_mechanism: Option<TransferMechanism>,
    consent_holds: &dyn Fn() -> bool,
) -> SharingCheck {
    let mut denials = Vec::new();
    for category in categories {
        if policy
            .category(category)
            .is_some_and(|declared| declared.never_share)
        {
            push_once(&mut denials, Reason::DisclosureNeverShared);
        }
    }
    let processor = policy.processor(&new.recipient);
    let authority = new.recipient_kind == RecipientKind::Authority
        || processor.is_some_and(|p| p.kind == ProcessorKind::Authority);
    let mut country = new.country.clone();
    let mut mechanism = None;
    match processor {
        None => denials.push(Reason::DisclosureUnknownRecipient),
        Some(processor) => {
            if !new.recipient_kind.matches(processor.kind) {
                denials.push(Reason::DisclosureRecipientKindMismatch);
            }
            for category in categories {
                if !processor.categories.iter().any(|c| c.get_ref() == category) {
                    push_once(&mut denials, Reason::DisclosureNotEntitled);
                }
            }
            if !processor
                .purposes
                .iter()
                .any(|p| *p.get_ref() == new.purpose)
            {
                denials.push(Reason::DisclosurePurposeNotServed);
            }
            if processor.deidentified_only {
                denials.push(Reason::DisclosureDeidentifiedOnly);
            }
            match transfer_basis(
                policy,
                processor,
                categories,
                new.country.as_deref(),
                asked_mechanism,
                consent_holds,
            ) {
                Ok(None) => {}
                Ok(Some((destination, used))) => {
                    country = Some(destination);
                    mechanism = Some(mechanism_name(used));
                }
                Err(()) => denials.push(Reason::DisclosureTransferWithoutBasis),
            }
        }
    }
    if authority && reference.is_none() {
        denials.push(Reason::DisclosureReferenceRequired);
    }
    SharingCheck {
        denials,
        country,
        mechanism,
    }
}

/// The basis of a hand-over abroad: `Ok(None)` when the data stays in the policy's
/// `data_location`; `Ok(Some((destination, mechanism)))` when every destination abroad (the
/// recipient's location, and the `country` given) has a declared transfer naming this recipient
/// and covering every category, and the mechanism holds; `Err(())` otherwise.
fn transfer_basis(
    policy: &Policy,
    processor: &Processor,
    categories: &[String],
    country: Option<&str>,
    asked: Option<TransferMechanism>,
    consent_holds: &dyn Fn() -> bool,
) -> Result<Option<(String, TransferMechanism)>, ()> {
    let home = policy.data_location.get_ref().as_str();
    let mut destinations: Vec<&str> = vec![processor.location.get_ref().as_str()];
    if let Some(country) = country
        && !destinations.contains(&country)
    {
        destinations.push(country);
    }
    let mut basis = None;
    for destination in destinations.into_iter().filter(|d| *d != home) {
        let declared: Vec<TransferMechanism> = policy
            .transfers
            .iter()
            .filter(|t| {
                *t.destination.get_ref() == destination
                    && t.recipients
                        .iter()
                        .any(|r| r.get_ref() == processor.name.get_ref())
                    && categories
                        .iter()
                        .all(|c| t.categories.iter().any(|tc| tc.get_ref() == c))
            })
            .map(|t| *t.mechanism.get_ref())
            .filter(|m| asked.is_none_or(|asked| asked == *m))
            .collect();
        // A mechanism other than consent stands on its own; consent needs the subject's.
        let used = declared
            .iter()
            .copied()
            .find(|m| *m != TransferMechanism::Consent)
            .or_else(|| {
                declared
                    .contains(&TransferMechanism::Consent)
                    .then_some(TransferMechanism::Consent)
                    .filter(|_| consent_holds())
            })
            .ok_or(())?;
        // The last destination abroad is the one recorded (the `country` given, if any).
        basis = Some((destination.to_owned(), used));
    }
    Ok(basis)
}

impl Vault {
    /// Records a hand-over of a subject's data to a recipient the policy declares, if the
    /// policy's sharing rules and the gate allow it (see the [module](self) documentation for
    /// the reasons it is refused). Allowed: stored and audited, returned with the gate's
    /// decision. Refused: the denying decision, audited with its reasons; nothing is stored.
    /// Input of the wrong shape is [`VaultError::Invalid`].
    pub fn record_disclosure(
        &self,
        subject: SubjectId,
        new: &NewDisclosure,
        caller: &Caller,
    ) -> Result<Gated<DisclosureRow>, VaultError> {
        let Validated {
            categories,
            reference,
            mechanism: asked_mechanism,
        } = new.validated()?;
        if self.core.data.subject(subject)?.is_none() {
            return Err(VaultError::SubjectNotFound(subject));
        }
        let now = self.core.clock.now();
        let state = self.state();
        let facts = self.facts(subject, now)?;
        let category_refs: Vec<&str> = categories.iter().map(String::as_str).collect();
        let consent_holds = || {
            custodia_gate::consent_denials(&state.index, &facts, &new.purpose, &category_refs, now)
                .is_empty()
        };
        let sharing = check_sharing(
            &state.policy,
            new,
            &categories,
            reference.as_deref(),
            asked_mechanism,
            &consent_holds,
        );
        let gate_caller = if caller.admin {
            custodia_gate::Caller::Admin
        } else {
            custodia_gate::Caller::Service {
                purposes: &caller.purposes,
            }
        };
        let gate = custodia_gate::decide(
            &state.index,
            &facts,
            &GateRequest {
                purpose: &new.purpose,
                categories: &category_refs,
                caller: gate_caller,
                now,
            },
        );
        let decision = if sharing.denials.is_empty() {
            gate
        } else {
            let mut reasons = sharing.denials;
            if !gate.allowed {
                reasons.extend(gate.reasons);
            }
            Decision {
                allowed: false,
                reasons,
            }
        };
        let actor = caller.actor();
        let declared = state.policy.processor(&new.recipient).is_some();
        // Only a declared recipient's name (a policy key) goes into the audit log: an undeclared
        // one is the caller's free text.
        let recipient_label = if declared {
            new.recipient.as_str()
        } else {
            "undeclared recipient"
        };
        let decision_event = self
            .core
            .event(EventKind::Decision, &actor)
            .with_subject(subject.to_string())
            .with_purpose(&new.purpose)
            .with_category(categories.join(","))
            .with_rule(format!("disclosure to {recipient_label}"))
            .with_outcome(if decision.allowed { "allow" } else { "deny" })
            .with_reasons(decision.reasons.iter().map(|reason| reason.code()));
        if !decision.allowed {
            self.core.data.commit(WriteBatch {
                mutations: Vec::new(),
                audit: vec![decision_event],
            })?;
            return Ok(Gated::Denied(decision));
        }
        let id = DisclosureId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?;
        let row = DisclosureRow {
            id,
            subject,
            recipient: new.recipient.clone(),
            recipient_kind: new.recipient_kind.as_str().to_owned(),
            categories: categories.clone(),
            purpose: new.purpose.clone(),
            at: now,
            reference,
            country: sharing.country,
            mechanism: sharing.mechanism,
        };
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::InsertDisclosure(row.clone())],
            audit: vec![
                decision_event,
                self.core
                    .event(EventKind::DisclosureRecorded, &actor)
                    .with_subject(subject.to_string())
                    .with_purpose(&new.purpose)
                    .with_category(categories.join(","))
                    .with_record(id.to_string())
                    .with_outcome(new.recipient.clone()),
            ],
        })?;
        Ok(Gated::Allowed {
            value: row,
            decision,
        })
    }

    /// A subject's disclosure log, in the order recorded. The log outlives the subject's
    /// erasure: it is whom the erasure had to reach.
    pub fn disclosures(&self, subject: SubjectId) -> Result<Vec<DisclosureRow>, VaultError> {
        Ok(self.core.data.disclosures_of(subject)?)
    }
}
