//! The policy model: every promise an operator's privacy policy makes that the engine enforces,
//! as Rust types deserialised from the TOML policy file.
//!
//! The types here are the *file's* shape, with source spans kept on the values the checker points
//! at. Cross-references (a purpose naming a category, a processor naming a purpose) are checked by
//! [`crate::check`], not here, so that a file with several mistakes reports all of them at once.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::duration::{Deadline, PolicyDuration};

/// A string value with its byte range in the source file.
pub type Key = Spanned<String>;

/// One operator's privacy policy, as published.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The published version label, for example `2025-06-01` or `3.2`.
    pub version: Key,
    /// The date this version takes effect, `YYYY-MM-DD`.
    pub effective: Key,
    /// Who is responsible for the data, and how to reach them.
    pub controller: Controller,
    /// The laws the operator declares itself subject to.
    pub laws: Vec<Spanned<Law>>,
    /// Where personal data is stored, as an ISO 3166 country or region code (`CN`, `EU`, `US`).
    pub data_location: Key,
    /// The kinds of personal data held.
    #[serde(default, rename = "category")]
    pub categories: Vec<Category>,
    /// Why data is processed.
    #[serde(default, rename = "purpose")]
    pub purposes: Vec<Purpose>,
    /// How long each category is kept.
    #[serde(default)]
    pub retention: Vec<RetentionRule>,
    /// Third parties that receive data (the SDK and service-provider tables).
    #[serde(default, rename = "processor")]
    pub processors: Vec<Processor>,
    /// Transfers of data outside `data_location`, with their legal mechanism.
    #[serde(default, rename = "transfer")]
    pub transfers: Vec<Transfer>,
    /// Cookies and similar tracking technologies.
    #[serde(default, rename = "cookie")]
    pub cookies: Vec<CookieCategory>,
    /// The rights people have and how fast they are answered.
    pub rights: Rights,
    /// How an account is cancelled and what is kept afterwards.
    #[serde(default)]
    pub account_cancellation: Option<AccountCancellation>,
    /// Rules for children.
    #[serde(default)]
    pub minors: Option<Minors>,
    /// How the data is protected, and how incidents are handled.
    #[serde(default)]
    pub security: Option<Security>,
    /// How changes to the policy are announced.
    #[serde(default)]
    pub changes: Option<Changes>,
}

/// The controller (personal information handler) and its contact points.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    /// The legal entity.
    pub name: Key,
    /// The product or service the policy covers.
    pub product: Key,
    /// Registered address.
    #[serde(default)]
    pub address: Option<String>,
    /// How people reach the privacy team.
    pub contact: Contact,
    /// Representative in the EU (GDPR Art. 27), if any.
    #[serde(default)]
    pub eu_representative: Option<String>,
}

/// Contact channels. At least one must be given.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Telephone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// Postal address.
    #[serde(default)]
    pub address: Option<String>,
    /// A web form or in-app path.
    #[serde(default)]
    pub web: Option<String>,
    /// The data protection officer's or personal-information officer's e-mail.
    #[serde(default)]
    pub dpo_email: Option<String>,
}

/// A data-protection law the operator declares itself subject to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Law {
    /// China's Personal Information Protection Law (with the Cybersecurity Law and the app rules).
    #[serde(rename = "PIPL")]
    Pipl,
    /// The EU General Data Protection Regulation.
    #[serde(rename = "GDPR")]
    Gdpr,
    /// The California Consumer Privacy Act (as amended by the CPRA).
    #[serde(rename = "CCPA")]
    Ccpa,
    /// The US Children's Online Privacy Protection Act.
    #[serde(rename = "COPPA")]
    Coppa,
}

impl Law {
    /// The short name used in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pipl => "PIPL",
            Self::Gdpr => "GDPR",
            Self::Ccpa => "CCPA",
            Self::Coppa => "COPPA",
        }
    }
}

/// A kind of personal data, keyed by a dotted fideslang key or a declared extension of one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// Dotted key, for example `user.contact.phone_number` or `user.content.audio_recording`.
    pub key: Key,
    /// A short human name; defaults to the key.
    #[serde(default)]
    pub name: Option<String>,
    /// What exactly is held.
    #[serde(default)]
    pub description: Option<String>,
    /// Sensitive personal information (PIPL Art. 28) / special category (GDPR Art. 9).
    #[serde(default)]
    pub sensitive: bool,
    /// The policy promises this category is never given to any third party.
    #[serde(default)]
    pub never_share: bool,
    /// The key is not in the fideslang taxonomy and extends its nearest parent there.
    #[serde(default)]
    pub extension: bool,
    /// Network or security logs, which the Cybersecurity Law requires to be kept.
    #[serde(default)]
    pub network_log: bool,
    /// When identifying details are removed.
    #[serde(default)]
    pub deidentify: Option<Deidentify>,
}

impl Category {
    /// The human name, or the key when none is given.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.key.get_ref())
    }
}

/// When a category is de-identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deidentify {
    /// Identifiers are pseudonymised or removed as the data arrives.
    OnCollection,
    /// Identifiers are removed before the data is analysed.
    BeforeAnalysis,
}

/// The legal basis of a purpose (PIPL Art. 13, GDPR Art. 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// The person's consent.
    Consent,
    /// Necessary for a contract with the person.
    Contract,
    /// The operator's legitimate interest.
    LegitimateInterest,
    /// A legal obligation of the operator.
    LegalObligation,
    /// Vital interests of a person.
    VitalInterest,
    /// A task in the public interest.
    PublicInterest,
}

impl LegalBasis {
    /// Human text for the rendered policy.
    pub fn to_words(self) -> &'static str {
        match self {
            Self::Consent => "your consent",
            Self::Contract => "necessary to provide the service you asked for",
            Self::LegitimateInterest => "our legitimate interests",
            Self::LegalObligation => "a legal obligation",
            Self::VitalInterest => "to protect someone's vital interests",
            Self::PublicInterest => "a task in the public interest",
        }
    }
}

/// Why data is processed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Snake-case key, for example `ai_transcription`.
    pub key: Key,
    /// A short human name.
    #[serde(default)]
    pub name: Option<String>,
    /// What is done, in the policy's words.
    #[serde(default)]
    pub description: Option<String>,
    /// The fideslang data use this purpose is an instance of, for example `train_ai_system`.
    #[serde(default, rename = "use")]
    pub data_use: Option<Key>,
    /// The legal basis.
    pub basis: Spanned<LegalBasis>,
    /// The categories this purpose processes.
    pub categories: Vec<Key>,
    /// Refusing this purpose must not block the basic functions (PIPL Art. 16).
    #[serde(default)]
    pub optional: bool,
    /// The device permission that triggers it (`microphone`, `camera`, `location`, ...).
    #[serde(default)]
    pub permission: Option<String>,
    /// Consent for this purpose is asked separately from any other (PIPL Art. 29, 39).
    #[serde(default)]
    pub separate_consent: bool,
    /// How long a consent for this purpose lasts before it must be renewed.
    #[serde(default)]
    pub consent_valid_for: Option<Spanned<PolicyDuration>>,
    /// What the opt-in states about scope, for consent purposes that need it.
    #[serde(default)]
    pub consent_scope: Option<String>,
    /// The purpose makes automated decisions about the person (PIPL Art. 24, GDPR Art. 22).
    #[serde(default)]
    pub automated_decision: bool,
}

impl Purpose {
    /// The human name, or the key when none is given.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.key.get_ref())
    }
}

/// The event a retention period counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// When the value was collected.
    Collected,
    /// When processing of the value completed (an input kept "until processed").
    Processed,
    /// When the subject's account was closed.
    AccountClosed,
    /// The subject's last activity.
    LastActive,
    /// When consent for the purpose of collection was withdrawn.
    ConsentWithdrawn,
}

impl Trigger {
    /// Human text: "after collection", "after your account is closed".
    pub fn to_words(self) -> &'static str {
        match self {
            Self::Collected => "after collection",
            Self::Processed => "after processing completes",
            Self::AccountClosed => "after your account is closed",
            Self::LastActive => "after your last activity",
            Self::ConsentWithdrawn => "after you withdraw consent",
        }
    }
}

/// How long categories are kept, counted from a trigger.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// A name for the rule, used in audit entries; defaults to `retention[N]`.
    #[serde(default)]
    pub id: Option<Key>,
    /// The categories the rule covers.
    pub categories: Vec<Key>,
    /// How long to keep, counted from `after`. `0s` deletes at the trigger.
    pub keep: Spanned<PolicyDuration>,
    /// The event the period counts from.
    #[serde(default = "default_trigger")]
    pub after: Trigger,
    /// Kept because a law requires it: survives an erasure request, storage-only.
    #[serde(default)]
    pub statutory: bool,
    /// The law that requires a statutory retention, for example `E-Commerce Law Art. 31`.
    #[serde(default)]
    pub legal_source: Option<String>,
    /// A longer period allowed for one purpose, with consent (model training, for example).
    #[serde(default)]
    pub extension: Option<RetentionExtension>,
    /// The policy's words for this rule.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_trigger() -> Trigger {
    Trigger::Collected
}

/// A longer retention allowed while a purpose holds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionExtension {
    /// The purpose that justifies keeping longer.
    pub purpose: Key,
    /// The longest keep while the purpose holds.
    pub keep: Spanned<PolicyDuration>,
}

/// What a processor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProcessorKind {
    /// A third-party SDK embedded in the app.
    #[default]
    Sdk,
    /// A service provider or partner receiving data server to server.
    Service,
    /// A public authority (court, regulator, police) receiving data on legal request.
    Authority,
}

/// A third party that receives data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    /// The product or SDK name; unique in the file.
    pub name: Key,
    /// The legal entity behind it.
    #[serde(default)]
    pub entity: Option<String>,
    /// SDK, service provider or authority.
    #[serde(default)]
    pub kind: ProcessorKind,
    /// The categories it receives.
    pub categories: Vec<Key>,
    /// The purposes it serves; each received category must be used by one of them.
    pub purposes: Vec<Key>,
    /// Where it processes the data (ISO 3166 code).
    pub location: Key,
    /// Its privacy policy.
    #[serde(default)]
    pub policy_url: Option<String>,
    /// It receives only de-identified or aggregated data (advertising cohorts, for example).
    #[serde(default)]
    pub deidentified_only: bool,
    /// What it does, in the policy's words.
    #[serde(default)]
    pub description: Option<String>,
}

/// The legal mechanism for a cross-border transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMechanism {
    /// The person's separate consent (PIPL Art. 39).
    Consent,
    /// China's standard contract (PIPL Art. 38(1)(3)).
    StandardContract,
    /// A CAC security assessment (PIPL Art. 38(1)(1), 40).
    SecurityAssessment,
    /// Personal information protection certification (PIPL Art. 38(1)(2)).
    Certification,
    /// EU standard contractual clauses (GDPR Art. 46(2)(c)).
    Scc,
    /// An adequacy decision (GDPR Art. 45).
    Adequacy,
    /// Binding corporate rules (GDPR Art. 47).
    Bcr,
}

impl TransferMechanism {
    /// Human text for the rendered policy.
    pub fn to_words(self) -> &'static str {
        match self {
            Self::Consent => "your separate consent",
            Self::StandardContract => "the standard contract for cross-border transfer",
            Self::SecurityAssessment => "a security assessment by the Cyberspace Administration",
            Self::Certification => "personal information protection certification",
            Self::Scc => "standard contractual clauses approved by the European Commission",
            Self::Adequacy => "an adequacy decision",
            Self::Bcr => "binding corporate rules",
        }
    }
}

/// A transfer of data outside the storage location.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// Where the data goes (ISO 3166 code).
    pub destination: Key,
    /// The legal mechanism.
    pub mechanism: Spanned<TransferMechanism>,
    /// The categories transferred.
    pub categories: Vec<Key>,
    /// Processors (by name) that receive data under this transfer; empty means the operator's
    /// own systems abroad.
    #[serde(default)]
    pub recipients: Vec<Key>,
    /// Why the data goes abroad.
    #[serde(default)]
    pub description: Option<String>,
}

/// A group of cookies or similar trackers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CookieCategory {
    /// `strictly_necessary`, `functional`, `analytics`, `advertising`.
    pub key: Key,
    /// What they do.
    #[serde(default)]
    pub description: Option<String>,
    /// The purpose they serve, if it is one of the file's purposes.
    #[serde(default)]
    pub purpose: Option<Key>,
    /// How long they last on the device.
    #[serde(default)]
    pub lifetime: Option<Spanned<PolicyDuration>>,
    /// Whether the person can refuse them.
    #[serde(default)]
    pub optional: bool,
}

/// A right a person can exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// See what is held (PIPL Art. 45, GDPR Art. 15).
    Access,
    /// Get a copy (PIPL Art. 45).
    Copy,
    /// Get it in a machine-readable format, or sent to another handler (PIPL Art. 45, GDPR Art. 20).
    Portability,
    /// Correct it (PIPL Art. 46, GDPR Art. 16).
    Rectification,
    /// Delete it (PIPL Art. 47, GDPR Art. 17).
    Erasure,
    /// Restrict processing (PIPL Art. 44, GDPR Art. 18).
    Restriction,
    /// Object to processing (GDPR Art. 21).
    Objection,
    /// Withdraw consent (PIPL Art. 15, GDPR Art. 7(3)).
    WithdrawConsent,
    /// Cancel the account.
    AccountCancellation,
    /// An explanation of automated decisions (PIPL Art. 24, 48, GDPR Art. 22).
    Explanation,
    /// Complain to the operator or a regulator.
    Complaint,
    /// Opt out of sale or sharing (CCPA §1798.120).
    OptOutOfSale,
}

impl Right {
    /// Human text for the rendered policy.
    pub fn to_words(self) -> &'static str {
        match self {
            Self::Access => "access the personal information we hold about you",
            Self::Copy => "obtain a copy of it",
            Self::Portability => {
                "receive it in a structured, machine-readable format or have it sent to another provider"
            }
            Self::Rectification => "correct or complete it",
            Self::Erasure => "have it deleted",
            Self::Restriction => "restrict how we process it",
            Self::Objection => "object to processing based on our legitimate interests",
            Self::WithdrawConsent => "withdraw a consent you gave, at any time",
            Self::AccountCancellation => "cancel your account",
            Self::Explanation => "ask for an explanation of automated decisions that affect you",
            Self::Complaint => "complain to us or to a supervisory authority",
            Self::OptOutOfSale => "opt out of the sale or sharing of your personal information",
        }
    }
}

/// The rights offered and the deadlines for answering.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rights {
    /// The rights offered.
    pub offered: Vec<Spanned<Right>>,
    /// How long the operator takes to answer a request.
    pub respond_within: Spanned<Deadline>,
    /// How long to answer a complaint, when it differs.
    #[serde(default)]
    pub complaints_within: Option<Spanned<Deadline>>,
    /// How long to answer a question, when it differs.
    #[serde(default)]
    pub questions_within: Option<Spanned<Deadline>>,
    /// The identity checks asked of a requester.
    #[serde(default)]
    pub verification: Option<String>,
    /// Where requests are made (in-app paths, e-mail, web forms).
    #[serde(default)]
    pub channels: Vec<String>,
    /// The format of a portability export, for example `JSON`.
    #[serde(default)]
    pub portability_format: Option<String>,
}

/// Account cancellation terms.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCancellation {
    /// How long the operator has to complete a cancellation.
    pub complete_within: Spanned<Deadline>,
    /// Conditions the account must meet first (no unsettled orders, ...).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Where to cancel.
    #[serde(default)]
    pub how: Option<String>,
}

/// Rules for children.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Minors {
    /// Below this age a verified guardian's consent is required.
    #[serde(default)]
    pub guardian_consent_below: Option<Spanned<u8>>,
    /// Below this age the service is refused.
    #[serde(default)]
    pub refuse_below: Option<Spanned<u8>>,
    /// Extra rules for children's data, in the policy's words.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Security measures and incident handling.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// The measures taken.
    #[serde(default)]
    pub measures: Vec<String>,
    /// How people are told of an incident.
    #[serde(default)]
    pub incident_notice: Option<String>,
}

/// How policy changes are announced.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// How a change is announced.
    #[serde(default)]
    pub notice: Option<String>,
    /// Where earlier versions are published.
    #[serde(default)]
    pub archive: Option<String>,
}

impl Policy {
    /// Finds a declared category by key.
    pub fn category(&self, key: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.key.get_ref() == key)
    }

    /// Finds a purpose by key.
    pub fn purpose(&self, key: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.key.get_ref() == key)
    }

    /// Finds a processor by name.
    pub fn processor(&self, name: &str) -> Option<&Processor> {
        self.processors.iter().find(|p| p.name.get_ref() == name)
    }

    /// The retention rule that covers a category, if any.
    pub fn retention_for(&self, category: &str) -> Option<&RetentionRule> {
        self.retention
            .iter()
            .find(|r| r.categories.iter().any(|c| c.get_ref() == category))
    }

    /// Whether a law applies.
    pub fn applies(&self, law: Law) -> bool {
        self.laws.iter().any(|l| *l.get_ref() == law)
    }
}

impl RetentionRule {
    /// The rule's id, or `retention[index]` when none is given.
    pub fn id_or(&self, index: usize) -> String {
        self.id
            .as_ref()
            .map_or_else(|| format!("retention[{index}]"), |id| id.get_ref().clone())
    }
}
