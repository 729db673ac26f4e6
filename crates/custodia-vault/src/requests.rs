//! Data-subject requests in the vault: receipt with the law's due dates, identity verification by
//! one-time code, the state machine's transitions, and fulfilment of every kind. The pure rules
//! (calendars, deadlines, the transition table, the excessive-request rules) live in
//! [`custodia_requests`]; this module stores, seals, audits and acts.
//!
//! **Receipt** ([`Vault::open_request`]). A kind the policy's `[rights].offered` does not offer is
//! refused (`request.not_offered`). The law is chosen from the subject's jurisdiction among the
//! policy's `laws` ([`law_for`]): `CN` (and `CN-*`) → PIPL, an EU or EEA country (and its
//! subdivisions) → GDPR, `US-CA` → CCPA; when that law is not among the policy's, or the
//! jurisdiction maps to none, the policy's first law. The due dates come from the policy's
//! `rights.respond_within` (an `account_cancellation` request: the policy's
//! `account_cancellation.complete_within` when it has one) combined with the law's own limits
//! ([`custodia_requests::Deadlines::compute`]: the earlier of the promise and the law's; CCPA
//! also an acknowledgement date). A date that cannot be computed (a calendar year not published)
//! is an error with the calendar's code (`calendar.year_not_published`) and nothing is stored.
//! Repeated or excessive requests are flagged from the subject's earlier ones
//! ([`custodia_requests::assess`]). What the requester asked (`details`) is checked against the
//! kind, then sealed under the subject's data key, bound to the request id; the request starts
//! `received`.
//!
//! **Verification** ([`Vault::send_verification`], [`Vault::verify_request`]). A 6-digit code
//! from the operating system's random source; only its HMAC-SHA256 under a key derived from the
//! root key for this use alone ([`custodia_crypto::RootKey::verification_key`]), over the request
//! id and the code, is stored, with its expiry ([`CODE_TTL`], by the injected clock) and a count
//! of wrong tries. The code goes to the subject through the outbox (kind `verification_code`,
//! payload sealed under the outbox key) and appears nowhere else: not in audit entries, errors
//! or logs. Codes are compared in constant time. A wrong code counts one try
//! (`request.code_invalid`); the [`MAX_CODE_ATTEMPTS`]th wrong try locks the code
//! (`request.verification_locked`, and so does every later try, right or wrong); an expired code
//! is `request.code_expired` and counts nothing. A locked or expired code is replaced by sending
//! a new one ([`Vault::send_verification`] again: the request stays `awaiting_verification`, it
//! is not rejected, so that a stranger guessing codes cannot get a person's request refused).
//! Every try is version-checked, so concurrent guesses cannot exceed the limit.
//!
//! **Transitions** ([`Vault::act_on_request`]). Every change applies
//! [`custodia_requests::transition`] to the state read, and commits only if the request is still
//! at the version read (`Mutation::UpdateRequest`): a lost race is `request.conflict` and does
//! nothing. A rejection's reason and an extension's notice are sealed into the details. An
//! extension follows the law ([`custodia_requests::Deadlines::extend`]): the longest extension
//! the law allows (GDPR two months, CCPA 45 days), only before the original due date, which is
//! kept as `original_due_at`; the notice goes to the subject through the outbox (kind
//! `extension_notice`). PIPL has no statutory extension (`deadline.not_extendable`). Every
//! transition is audited as `request_transition`: the subject's pseudonymous id, the request id,
//! `from -> to` and the kind; never the details.
//!
//! **Fulfilment** ([`Vault::fulfil_request`], [`Vault::fulfil_export_request`]) from `verified`,
//! `extended` or `in_progress` (a fulfilment interrupted by a crash is resumed). It first claims
//! the request (→ `in_progress`, version-checked), does the work, and ends with one
//! version-checked commit that holds the state change and every ledger, profile and record
//! change of the kind, so two callers can never both apply them: the loser gets
//! `request.conflict` and its changes are not committed. On one instance a second fulfilment of
//! a request already being fulfilled is refused at once (`request.conflict`).
//! - access, copy, portability: the export of [`crate::export`], written to the caller's output;
//! - rectification: the profile changes (re-sealed profile) and the named records' new values
//!   (same id, category, purpose, collection time and expiry, re-sealed under the same key), and
//!   a `rectification_notice` to each recipient in the disclosure log of a corrected category,
//!   carrying the corrected values of the categories it received (GDPR Art. 19), queued in the
//!   same commit; the request then waits on them as an erasure does;
//! - restriction: a `restricted` ledger event and a `restriction_notice` to every recipient
//!   (Art. 19), likewise; objection: `objected` for the named purposes (by
//!   default every legitimate-interest and public-interest purpose); consent withdrawal:
//!   `withdrawn` for the named purposes (by default every consent purpose currently given);
//! - explanation: a JSON explanation of the policy's automated-decision purposes that apply to
//!   the subject (it holds data of their categories and, for consent purposes, consented);
//! - erasure: one erasure notice per recipient in the disclosure log
//!   ([`Vault::notify_recipients`], before the profile becomes unreadable), then the
//!   crypto-shred ([`Vault::shred_subject`]; statutory records stay storage-only); with notices
//!   outstanding the request waits (`waiting_on_recipients`) until the outbox settles them all
//!   ([`Vault::settle_recipients`] moves it to `fulfilled`), otherwise it is fulfilled at once;
//! - account cancellation: the account is closed ([`Vault::close_account`]), which starts every
//!   `account_closed` retention rule, so the policy's terms follow from its retention (DeepPiano:
//!   account data kept 90 days, then swept; Audio Extract Kit: removed by the next sweep, within
//!   the 5 working days the due date allows); recipients are told as for an erasure.
//!
//! Rectification, restriction, objection and withdrawal take effect in the gate at once: the
//! subject's cached facts are dropped on this instance when the commit lands, and other
//! instances drop theirs when their audit tail reads the `consent_recorded` or
//! `request_transition` entry (see [`crate::cache`]).
//!
//! Residual limit, by design: the verification code is queued in a second commit after the
//! request's (a failure between the two leaves a code nobody received: send another). The
//! erasure notices are queued before the final commit, once per recipient even when two
//! instances resume the same interrupted erasure at once: they are committed with a
//! version-checked touch of the request ([`Vault::notify_recipients`]).

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use custodia_audit::{AuditEvent, EventKind};
use custodia_core::{ConsentId, NotificationId, RecordId, RequestId, SubjectId, Timestamp};
use custodia_crypto::{DataKey, FieldContext};
use custodia_policy::Deadline;
use custodia_policy::model::{Law, LegalBasis, Policy};
use custodia_requests::{
    Action, DeadlineError, Deadlines, Due, ExcessiveRules, RequestKind, RequestState,
    SubjectRequest, TransitionError, Urgency,
};
use custodia_store::{
    ConsentEventKind, ConsentRow, Mutation, RecordRow, RequestFilter, RequestRow, RequestUpdate,
    StoreError, SubjectUpdate, VerificationRow, WriteBatch,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::export::ExportManifest;
use crate::outbox::{
    RECTIFICATION_NOTICE, RESTRICTION_NOTICE, RecipientNotice, SUBJECT_CHANNEL, VERIFICATION_CODE,
};
use crate::profile::NewSubject;
use crate::vault::{PROFILE_CATEGORY, Vault, poisoned};

/// How long a verification code is accepted.
pub const CODE_TTL: Duration = Duration::from_secs(15 * 60);

/// Wrong tries that lock a verification code.
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// Digits in a verification code.
pub const CODE_DIGITS: usize = 6;

/// The category under which a request's details are sealed (and their reads audited).
pub const DETAILS_CATEGORY: &str = "custodia.request";

/// The outbox kind of an extension notice to the subject.
pub const EXTENSION_NOTICE: &str = "extension_notice";

/// The longest `details` accepted, as JSON.
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;

/// The longest rejection reason or extension notice, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;

/// "Due soon" in a listing without its own window: at most this many days left.
pub const DEFAULT_SOON_DAYS: u32 = 3;

/// How ledger events made by a request are recorded as collected.
pub const REQUEST_METHOD: &str = "data_subject_request";

const DAY_MS: i64 = 86_400_000;

/// EU member states and the other EEA countries (Iceland, Liechtenstein, Norway), by ISO 3166
/// code; `EL` is Greece's code in EU usage.
const EEA: [&str; 31] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "EL", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// Requests being fulfilled in this process: a second fulfilment of the same request waits for
/// nothing and is refused (`request.conflict`).
static FULFILLING: LazyLock<Mutex<HashSet<RequestId>>> = LazyLock::new(Mutex::default);

/// Holds a request in [`FULFILLING`] until dropped.
struct FulfilGuard(RequestId);

impl FulfilGuard {
    fn take(id: RequestId) -> Result<Self, VaultError> {
        let mut set = FULFILLING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if set.insert(id) {
            Ok(Self(id))
        } else {
            Err(VaultError::RequestConflict(id))
        }
    }
}

impl Drop for FulfilGuard {
    fn drop(&mut self) {
        FULFILLING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// What a request holds sealed: what was asked, and the operator's words about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDetails {
    /// What the requester asked, as given to [`Vault::open_request`].
    pub asked: Value,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<String>,
    /// The notice sent with an extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_notice: Option<String>,
    /// What fulfilling it did or answered (an explanation, the purposes withdrawn, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
}

/// A pending verification code, without the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationStatus {
    /// When it was sent.
    pub issued_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
    /// Wrong tries so far.
    pub attempts: u32,
    /// Locked by too many wrong tries.
    pub locked: bool,
}

/// A request as the vault shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    /// The request's id.
    pub id: RequestId,
    /// Whose.
    pub subject: SubjectId,
    /// What is asked.
    pub kind: RequestKind,
    /// Where it stands.
    pub state: RequestState,
    /// The law whose deadlines apply.
    pub law: Law,
    /// When it was received.
    pub received_at: Timestamp,
    /// When receipt must be confirmed (CCPA).
    pub acknowledge_by: Option<Timestamp>,
    /// When it must be answered (after an extension, the extended date).
    pub due_at: Timestamp,
    /// The due date before an extension.
    pub original_due_at: Option<Timestamp>,
    /// Flags raised on receipt (`ccpa.more_than_two_in_12_months`, `gdpr.repeated_request`).
    pub flags: Vec<String>,
    /// The pending verification code, if any.
    pub verification: Option<VerificationStatus>,
    /// How pressing it is now; `None` once closed.
    pub urgency: Option<Urgency>,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
    /// Bumped by every change.
    pub version: u64,
    /// The sealed details, when they were read ([`Vault::read_request`]) and are still readable
    /// (an erasure makes them unreadable with the rest of the subject's data).
    pub details: Option<RequestDetails>,
}

impl RequestView {
    /// As JSON, for exports and APIs (times in RFC 3339).
    pub fn to_json(&self) -> Value {
        let time = |at: Timestamp| at.to_string();
        json!({
            "id": self.id.to_string(),
            "subject": self.subject.to_string(),
            "kind": self.kind.as_str(),
            "state": self.state.as_str(),
            "law": self.law.name(),
            "received_at": time(self.received_at),
            "acknowledge_by": self.acknowledge_by.map(time),
            "due_at": time(self.due_at),
            "original_due_at": self.original_due_at.map(time),
            "flags": self.flags,
            "verification": self.verification.map(|v| json!({
                "issued_at": time(v.issued_at),
                "expires_at": time(v.expires_at),
                "attempts": v.attempts,
                "locked": v.locked,
            })),
            "urgency": self.urgency.map(Urgency::as_str),
            "days_left": match self.urgency {
                Some(Urgency::DueWithin(days)) => Some(days),
                _ => None,
            },
            "updated_at": time(self.updated_at),
            "closed_at": self.closed_at.map(time),
            "version": self.version,
            "details": self.details,
        })
    }
}

/// Which requests to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestQuery {
    /// Only in this state.
    pub state: Option<RequestState>,
    /// Only this subject's.
    pub subject: Option<SubjectId>,
    /// Only open ones (not fulfilled or rejected).
    pub open_only: bool,
    /// Only those due within this many days (overdue ones included); also the "due soon"
    /// window of [`RequestView::urgency`] ([`DEFAULT_SOON_DAYS`] when `None`).
    pub due_within_days: Option<u32>,
    /// Only those due at or before this instant (with `due_within_days`, the earlier bound).
    pub due_before: Option<Timestamp>,
    /// At most this many (all when 0).
    pub limit: usize,
}

/// What fulfilling a request did.
#[derive(Debug, Clone, PartialEq)]
pub struct FulfilmentReport {
    /// The request after it.
    pub request: RequestView,
    /// The export written (access, copy, portability).
    pub export: Option<ExportManifest>,
    /// Data keys destroyed (erasure).
    pub keys_destroyed: Option<usize>,
    /// The erasure notices queued to recipients (erasure, account cancellation).
    pub notices: Vec<NotificationId>,
    /// The ledger events appended (restriction, objection, consent withdrawal).
    pub consent_events: Vec<ConsentId>,
    /// What a rectification changed: `profile.<field>` and record ids.
    pub rectified: Vec<String>,
    /// The explanation given (explanation).
    pub explanation: Option<Value>,
}

/// A rectification as asked: profile fields to change and records to replace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rectification {
    #[serde(default)]
    profile: Option<ProfileChanges>,
    #[serde(default)]
    records: Vec<RecordChange>,
}

/// Profile fields a rectification may change (the external id and guardian are not the subject's
/// to change through a request).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileChanges {
    #[serde(default)]
    jurisdiction: Option<String>,
    #[serde(default)]
    birth_date: Option<String>,
    #[serde(default)]
    age_band: Option<String>,
}

/// One record's new value: text, or bytes in base64.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordChange {
    id: RecordId,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
}

impl RecordChange {
    fn bytes(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        match (&self.value, &self.value_base64) {
            (Some(text), None) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(Zeroizing::new)
                .map_err(|_| details_error("records[].value_base64 is not valid base64")),
            _ => Err(details_error(
                "each record needs exactly one of `value` and `value_base64`",
            )),
        }
    }
}

/// Purposes named by an objection, a withdrawal or an explanation request, and free text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeChoice {
    #[serde(default)]
    purposes: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<String>,
}

fn details_error(reason: &str) -> VaultError {
    VaultError::RequestDetails(reason.to_owned())
}

fn corrupt(what: String) -> VaultError {
    VaultError::Store(StoreError::Corrupt(what))
}

/// The law of a subject in `jurisdiction` under `policy` (see the module documentation).
pub fn law_for(policy: &Policy, jurisdiction: &str) -> Option<Law> {
    let country = jurisdiction.split('-').next().unwrap_or(jurisdiction);
    let by_place = if country == "CN" {
        Some(Law::Pipl)
    } else if EEA.contains(&country) {
        Some(Law::Gdpr)
    } else if jurisdiction == "US-CA" {
        Some(Law::Ccpa)
    } else {
        None
    };
    by_place
        .filter(|law| policy.applies(*law))
        .or_else(|| policy.laws.first().map(|law| *law.get_ref()))
}

/// The deadline the policy promises for `kind`.
pub fn promised_deadline(policy: &Policy, kind: RequestKind) -> &Deadline {
    match (&policy.account_cancellation, kind) {
        (Some(terms), RequestKind::AccountCancellation) => terms.complete_within.get_ref(),
        _ => policy.rights.respond_within.get_ref(),
    }
}

fn parse_law(text: &str) -> Option<Law> {
    [Law::Pipl, Law::Gdpr, Law::Ccpa, Law::Coppa]
        .into_iter()
        .find(|law| law.name() == text)
}

/// The kind, state and law of a stored row.
fn parsed(row: &RequestRow) -> Result<(RequestKind, RequestState, Law), VaultError> {
    let kind = RequestKind::parse(&row.kind)
        .map_err(|_| corrupt(format!("request {} has an unknown kind", row.id)))?;
    let state = RequestState::parse(&row.state)
        .map_err(|_| corrupt(format!("request {} has an unknown state", row.id)))?;
    let law = parse_law(&row.law)
        .ok_or_else(|| corrupt(format!("request {} has an unknown law", row.id)))?;
    Ok((kind, state, law))
}

fn details_context<'a>(subject: &'a str, id: &'a str) -> FieldContext<'a> {
    FieldContext::new(subject, DETAILS_CATEGORY, id)
}

fn seal_details(
    key: &DataKey,
    subject: SubjectId,
    id: RequestId,
    details: &RequestDetails,
) -> Result<Vec<u8>, VaultError> {
    let plain = Zeroizing::new(
        serde_json::to_vec(details).map_err(|_| details_error("cannot be encoded"))?,
    );
    Ok(key.seal(
        &details_context(&subject.to_string(), &id.to_string()),
        &plain,
    )?)
}

fn open_details(key: &DataKey, row: &RequestRow) -> Result<RequestDetails, VaultError> {
    let plain = key.open(
        &details_context(&row.subject.to_string(), &row.id.to_string()),
        &row.details,
    )?;
    serde_json::from_slice(&plain).map_err(|_| corrupt(format!("details of request {}", row.id)))
}

/// A fresh code of [`CODE_DIGITS`] decimal digits, uniform (rejection sampling).
fn new_code() -> Result<Zeroizing<String>, VaultError> {
    // The largest multiple of 10^6 that fits in a u32: values at or above it are redrawn.
    const LIMIT: u32 = 4_294_000_000;
    let rng = SystemRandom::new();
    loop {
        let mut bytes = Zeroizing::new([0u8; 4]);
        rng.fill(bytes.as_mut_slice())
            .map_err(|_| custodia_crypto::CryptoError::Rng)?;
        let value = u32::from_le_bytes(*bytes);
        if value < LIMIT {
            return Ok(Zeroizing::new(format!("{:06}", value % 1_000_000)));
        }
    }
}

fn code_shaped(code: &str) -> bool {
    code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

fn check_text(field: &'static str, text: &str) -> Result<String, VaultError> {
    let text = text.trim();
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(VaultError::Invalid {
            field,
            reason: format!("must be at most {MAX_TEXT_CHARS} characters"),
        });
    }
    Ok(text.to_owned())
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The urgency of an open request at `now`.
fn urgency_of(due_at: Timestamp, now: Timestamp, window_days: u32) -> Option<Urgency> {
    let date = jiff::Timestamp::from_millisecond(due_at.as_millis())
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let due = Due {
        date,
        at: due_at,
        offset: jiff::tz::Offset::UTC,
    };
    Some(custodia_requests::urgency(&due, now, window_days))
}

impl Vault {
    fn request_row(&self, id: RequestId) -> Result<RequestRow, VaultError> {
        self.core
            .data
            .request(id)?
            .ok_or(VaultError::RequestNotFound(id))
    }

    /// The subject's data key for request details, `None` once it is erased or gone.
    fn details_key(&self, subject: SubjectId) -> Result<Option<DataKey>, VaultError> {
        let Some(row) = self.core.data.subject(subject)? else {
            return Ok(None);
        };
        if row.erased_at.is_some() {
            return Ok(None);
        }
        match self.core.load_key(row.key, subject) {
            Ok(key) => Ok(Some(key)),
            Err(VaultError::KeyDestroyed(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The keyed hash of a verification code, bound to its request.
    fn code_digest(&self, id: RequestId, code: &str) -> Result<[u8; 32], VaultError> {
        let ring = self.core.ring.read().map_err(|_| poisoned())?;
        let key = ring.root().verification_key()?;
        let message = Zeroizing::new(format!("{id}:{code}"));
        Ok(key.digest(message.as_bytes()))
    }

    fn view(
        &self,
        row: RequestRow,
        details: Option<RequestDetails>,
        now: Timestamp,
        window_days: u32,
    ) -> Result<RequestView, VaultError> {
        let (kind, state, law) = parsed(&row)?;
        Ok(RequestView {
            id: row.id,
            subject: row.subject,
            kind,
            state,
            law,
            received_at: row.received_at,
            acknowledge_by: row.acknowledge_by,
            due_at: row.due_at,
            original_due_at: row.original_due_at,
            flags: row.flags,
            verification: row.verification.map(|v| VerificationStatus {
                issued_at: v.issued_at,
                expires_at: v.expires_at,
                attempts: v.attempts,
                locked: v.attempts >= MAX_CODE_ATTEMPTS,
            }),
            urgency: if state.is_terminal() {
                None
            } else {
                urgency_of(row.due_at, now, window_days)
            },
            updated_at: row.updated_at,
            closed_at: row.closed_at,
            version: row.version,
            details,
        })
    }

    fn transition_event(
        &self,
        row: &RequestRow,
        kind: RequestKind,
        outcome: String,
        actor: &str,
    ) -> AuditEvent {
        self.core
            .event(EventKind::RequestTransition, actor)
            .with_subject(row.subject.to_string())
            .with_record(row.id.to_string())
            .with_outcome(outcome)
            .with_reasons([kind.as_str()])
    }

    /// Commits `mutations`, then the request's `update` checked against the version read, with
    /// `audit`; a lost race is [`VaultError::RequestConflict`].
    fn commit_request(
        &self,
        row: &RequestRow,
        mut mutations: Vec<Mutation>,
        update: RequestUpdate,
        audit: Vec<AuditEvent>,
    ) -> Result<(), VaultError> {
        mutations.push(Mutation::UpdateRequest {
            id: row.id,
            expected_version: row.version,
            update,
        });
        match self.core.data.commit(WriteBatch { mutations, audit }) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(VaultError::RequestConflict(row.id)),
            Err(StoreError::NotFound(_)) => Err(VaultError::RequestNotFound(row.id)),
            Err(other) => Err(other.into()),
        }
    }

    pub(crate) fn update_at(now: Timestamp) -> RequestUpdate {
        RequestUpdate {
            state: None,
            due_at: None,
            original_due_at: None,
            details: None,
            flags: None,
            verification: None,
            closed_at: None,
            updated_at: now,
        }
    }

    /// Receives a data-subject request of `kind` for `subject`, with what the requester asked
    /// (`details`; see the module documentation for each kind's shape), by `actor` (the channel:
    /// an API key id, `operator`, ...). Returns it `received`, with its law and due dates.
    pub fn open_request(
        &self,
        subject: SubjectId,
        kind: RequestKind,
        details: Value,
        actor: &str,
    ) -> Result<RequestView, VaultError> {
        let policy = self.policy();
        if !custodia_requests::offered(&policy.rights, kind) {
            return Err(VaultError::RequestNotOffered(kind.as_str()));
        }
        let row = self.live_subject(subject)?;
        let profile = self
            .subject(subject)?
            .profile
            .ok_or(VaultError::SubjectErased(subject))?;
        let details = if details.is_null() {
            json!({})
        } else {
            details
        };
        self.check_asked(&policy, subject, &profile, kind, &details)?;
        let law = law_for(&policy, &profile.jurisdiction)
            .ok_or_else(|| details_error("the policy names no law"))?;
        let now = self.core.clock.now();
        let deadlines = Deadlines::compute(law, promised_deadline(&policy, kind), now)?;
        let previous: Vec<SubjectRequest> = self
            .core
            .data
            .requests(&RequestFilter {
                subject: Some(subject),
                ..RequestFilter::default()
            })?
            .iter()
            .filter_map(|earlier| {
                RequestKind::parse(&earlier.kind)
                    .ok()
                    .map(|kind| SubjectRequest {
                        kind,
                        received_at: earlier.received_at,
                    })
            })
            .collect();
        let flags: Vec<String> = custodia_requests::assess(
            law,
            &previous,
            &SubjectRequest {
                kind,
                received_at: now,
            },
            ExcessiveRules::default(),
        )
        .map(|flag| vec![flag.code().to_owned()])
        .unwrap_or_default();
        let id = RequestId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?;
        let key = self.core.load_key(row.key, subject)?;
        let sealed = seal_details(
            &key,
            subject,
            id,
            &RequestDetails {
                asked: details,
                ..RequestDetails::default()
            },
        )?;
        let request = RequestRow {
            id,
            subject,
            kind: kind.as_str().to_owned(),
            state: RequestState::Received.as_str().to_owned(),
            law: law.name().to_owned(),
            received_at: now,
            acknowledge_by: deadlines.acknowledge_by.map(|due| due.at),
            due_at: deadlines.respond_by.at,
            original_due_at: None,
            details: sealed,
            flags: flags.clone(),
            verification: None,
            updated_at: now,
            closed_at: None,
            version: 0,
        };
        let mut reasons = vec![kind.as_str().to_owned()];
        reasons.extend(flags);
        let event = self
            .core
            .event(EventKind::RequestTransition, actor)
            .with_subject(subject.to_string())
            .with_record(id.to_string())
            .with_outcome(RequestState::Received.as_str())
            .with_reasons(reasons);
        match self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::InsertRequest(request.clone())],
            audit: vec![event],
        }) {
            Ok(_) => {}
            // The subject went between the check and the insert.
            Err(StoreError::NotFound(_)) => return Err(VaultError::SubjectNotFound(subject)),
            Err(other) => return Err(other.into()),
        }
        self.view(request, None, now, DEFAULT_SOON_DAYS)
    }

    /// Checks what was asked against the kind (shape, size, named purposes and records).
    fn check_asked(
        &self,
        policy: &Policy,
        subject: SubjectId,
        profile: &NewSubject,
        kind: RequestKind,
        asked: &Value,
    ) -> Result<(), VaultError> {
        if !asked.is_object() {
            return Err(details_error("must be a JSON object"));
        }
        let size = serde_json::to_vec(asked).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_DETAILS_BYTES {
            return Err(VaultError::RequestDetails(format!(
                "must be at most {MAX_DETAILS_BYTES} bytes as JSON"
            )));
        }
        match kind {
            RequestKind::Rectification => {
                let asked = rectification_of(asked)?;
                if asked.profile.is_none() && asked.records.is_empty() {
                    return Err(details_error(
                        "name the profile fields or the records to correct",
                    ));
                }
                if let Some(changes) = &asked.profile {
                    rectified_profile(profile, changes)?;
                }
                let mut seen = HashSet::new();
                for change in &asked.records {
                    change.bytes()?;
                    if !seen.insert(change.id) {
                        return Err(details_error("a record is named twice"));
                    }
                    let owned = self
                        .core
                        .data
                        .record(change.id)?
                        .is_some_and(|record| record.subject == subject);
                    if !owned {
                        return Err(VaultError::RecordNotFound(change.id));
                    }
                }
            }
            RequestKind::Objection
            | RequestKind::ConsentWithdrawal
            | RequestKind::Explanation
            | RequestKind::Restriction => {
                let choice = purpose_choice(asked)?;
                if kind == RequestKind::Restriction && !choice.purposes.is_empty() {
                    return Err(details_error(
                        "a restriction applies to all processing; name no purposes",
                    ));
                }
                for purpose in &choice.purposes {
                    let declared = policy
                        .purpose(purpose)
                        .ok_or_else(|| VaultError::UnknownPurpose(purpose.clone()))?;
                    if kind == RequestKind::ConsentWithdrawal
                        && *declared.basis.get_ref() != LegalBasis::Consent
                    {
                        return Err(VaultError::RequestDetails(format!(
                            "purpose `{purpose}` does not rest on consent"
                        )));
                    }
                }
                if kind == RequestKind::Objection && objection_purposes(policy, &choice).is_empty()
                {
                    return Err(details_error(
                        "the policy has no legitimate-interest purpose; name the purposes objected to",
                    ));
                }
            }
            RequestKind::Access
            | RequestKind::Copy
            | RequestKind::Portability
            | RequestKind::Erasure
            | RequestKind::AccountCancellation => {}
        }
        Ok(())
    }

    /// A request without its details (nothing decrypted, nothing audited).
    pub fn request(&self, id: RequestId) -> Result<RequestView, VaultError> {
        let row = self.request_row(id)?;
        self.view(row, None, self.core.clock.now(), DEFAULT_SOON_DAYS)
    }

    /// A request with its sealed details decrypted (when still readable); the read is audited.
    pub fn read_request(&self, id: RequestId, actor: &str) -> Result<RequestView, VaultError> {
        let row = self.request_row(id)?;
        let details = match self.details_key(row.subject)? {
            Some(key) => {
                let details = open_details(&key, &row)?;
                self.core.data.commit(WriteBatch {
                    mutations: Vec::new(),
                    audit: vec![
                        self.core
                            .event(EventKind::RecordRead, actor)
                            .with_subject(row.subject.to_string())
                            .with_category(DETAILS_CATEGORY)
                            .with_record(row.id.to_string()),
                    ],
                })?;
                Some(details)
            }
            None => None,
        };
        self.view(row, details, self.core.clock.now(), DEFAULT_SOON_DAYS)
    }

    /// Requests matching `query`, earliest due first, each with its urgency now (overdue, due
    /// within the window, on track). Details are not decrypted.
    pub fn requests(&self, query: &RequestQuery) -> Result<Vec<RequestView>, VaultError> {
        let now = self.core.clock.now();
        let window = query.due_within_days.unwrap_or(DEFAULT_SOON_DAYS);
        // Due within N days: fewer than N + 1 whole days left, as `Urgency::DueWithin` counts.
        let within = query.due_within_days.map(|days| {
            now.plus_millis(
                (i64::from(days) + 1)
                    .saturating_mul(DAY_MS)
                    .saturating_sub(1),
            )
        });
        let due_before = match (within, query.due_before) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let rows = self.core.data.requests(&RequestFilter {
            state: query.state.map(|state| state.as_str().to_owned()),
            due_before,
            subject: query.subject,
            open_only: query.open_only,
            limit: query.limit,
        })?;
        rows.into_iter()
            .map(|row| self.view(row, None, now, window))
            .collect()
    }

    /// A subject's requests with their details (for its export, which audits the read).
    pub(crate) fn subject_requests(
        &self,
        subject: SubjectId,
    ) -> Result<Vec<RequestView>, VaultError> {
        let now = self.core.clock.now();
        let key = self.details_key(subject)?;
        let rows = self.core.data.requests(&RequestFilter {
            subject: Some(subject),
            ..RequestFilter::default()
        })?;
        rows.into_iter()
            .map(|row| {
                let details = key.as_ref().map(|k| open_details(k, &row)).transpose()?;
                self.view(row, details, now, DEFAULT_SOON_DAYS)
            })
            .collect()
    }

    /// Sends a new verification code to the subject through the outbox and moves the request to
    /// `awaiting_verification` (from `received`; from `awaiting_verification` it replaces the
    /// pending code, locked, expired or not, with a fresh one and no wrong tries).
    pub fn send_verification(&self, id: RequestId, actor: &str) -> Result<RequestView, VaultError> {
        let row = self.request_row(id)?;
        let (kind, state, _) = parsed(&row)?;
        let target = if state == RequestState::AwaitingVerification {
            state
        } else {
            custodia_requests::transition(state, &Action::RequestVerification)?
        };
        let profile = self
            .subject(row.subject)?
            .profile
            .ok_or(VaultError::SubjectErased(row.subject))?;
        let code = new_code()?;
        let now = self.core.clock.now();
        let expires_at = now.plus_millis(ms(CODE_TTL));
        let verification = VerificationRow {
            code_hash: self.code_digest(id, &code)?,
            issued_at: now,
            expires_at,
            attempts: 0,
        };
        let update = RequestUpdate {
            state: Some(target.as_str().to_owned()),
            verification: Some(Some(verification)),
            ..Self::update_at(now)
        };
        let event = self
            .transition_event(&row, kind, format!("{state} -> {target}"), actor)
            .with_reason("verification.code_sent");
        self.commit_request(&row, Vec::new(), update, vec![event])?;
        let payload = json!({
            "type": VERIFICATION_CODE,
            "request": id.to_string(),
            "request_kind": kind.as_str(),
            "external_id": profile.external_id,
            "code": code.as_str(),
            "expires_at": expires_at.to_string(),
        });
        self.queue_notification(
            VERIFICATION_CODE,
            Some(id),
            row.subject,
            SUBJECT_CHANNEL,
            &payload,
            actor,
        )?;
        self.request(id)
    }

    /// Checks a verification code (see the module documentation): right → `verified`; wrong →
    /// one try counted and `request.code_invalid`, or `request.verification_locked` at the
    /// [`MAX_CODE_ATTEMPTS`]th; expired → `request.code_expired`.
    pub fn verify_request(
        &self,
        id: RequestId,
        code: &str,
        actor: &str,
    ) -> Result<RequestView, VaultError> {
        let row = self.request_row(id)?;
        let (kind, state, _) = parsed(&row)?;
        custodia_requests::transition(state, &Action::Verify)?;
        let pending = match (&row.verification, state) {
            (Some(pending), RequestState::AwaitingVerification) => pending.clone(),
            _ => return Err(VaultError::NoCodePending),
        };
        if pending.attempts >= MAX_CODE_ATTEMPTS {
            return Err(VaultError::VerificationLocked);
        }
        let now = self.core.clock.now();
        if now > pending.expires_at {
            return Err(VaultError::CodeExpired);
        }
        let digest = self.code_digest(id, code)?;
        let right =
            custodia_crypto::token::hashes_equal(&digest, &pending.code_hash) && code_shaped(code);
        if !right {
            let attempts = pending.attempts.saturating_add(1);
            let update = RequestUpdate {
                verification: Some(Some(VerificationRow {
                    attempts,
                    ..pending
                })),
                ..Self::update_at(now)
            };
            let event = self
                .transition_event(&row, kind, format!("{state} -> {state}"), actor)
                .with_reason(if attempts >= MAX_CODE_ATTEMPTS {
                    "verification.locked"
                } else {
                    "verification.code_invalid"
                });
            self.commit_request(&row, Vec::new(), update, vec![event])?;
            return Err(if attempts >= MAX_CODE_ATTEMPTS {
                VaultError::VerificationLocked
            } else {
                VaultError::CodeInvalid {
                    attempts_left: MAX_CODE_ATTEMPTS - attempts,
                }
            });
        }
        let update = RequestUpdate {
            state: Some(RequestState::Verified.as_str().to_owned()),
            verification: Some(None),
            ..Self::update_at(now)
        };
        let event = self
            .transition_event(
                &row,
                kind,
                format!("{state} -> {}", RequestState::Verified),
                actor,
            )
            .with_reason("verification.code_accepted");
        self.commit_request(&row, Vec::new(), update, vec![event])?;
        self.request(id)
    }

    /// Applies `action` to a request (see the module documentation): `request_verification`
    /// sends a code, `fulfil` fulfils it ([`Vault::fulfil_request`]), `reject` and `extend` seal
    /// their text, `extend` moves the due date under the law; `wait_on_recipients` is the
    /// engine's own step and is refused here.
    pub fn act_on_request(
        &self,
        id: RequestId,
        action: &Action,
        actor: &str,
    ) -> Result<RequestView, VaultError> {
        match action {
            Action::RequestVerification => return self.send_verification(id, actor),
            Action::Fulfil => return self.fulfil_request(id, actor).map(|report| report.request),
            Action::WaitOnRecipients => {
                return Err(VaultError::Invalid {
                    field: "action",
                    reason: "a request waits on recipients only when its erasure is fulfilled"
                        .into(),
                });
            }
            Action::Verify | Action::Start | Action::Reject { .. } | Action::Extend { .. } => {}
        }
        let row = self.request_row(id)?;
        let (kind, state, law) = parsed(&row)?;
        let target = custodia_requests::transition(state, action)?;
        let now = self.core.clock.now();
        let mut update = RequestUpdate {
            state: Some(target.as_str().to_owned()),
            ..Self::update_at(now)
        };
        let mut event = self.transition_event(&row, kind, format!("{state} -> {target}"), actor);
        let mut extension = None;
        match action {
            Action::Verify => update.verification = Some(None),
            Action::Reject { reason } => {
                let reason = check_text("reason", reason)?;
                update.closed_at = Some(now);
                // Once the subject is erased the reason has nothing to be sealed under: the
                // rejection stands without it.
                if let Some(key) = self.details_key(row.subject)? {
                    let mut details = open_details(&key, &row)?;
                    details.rejection = Some(reason);
                    update.details = Some(seal_details(&key, row.subject, row.id, &details)?);
                }
            }
            Action::Extend { notice } => {
                let notice = check_text("notice", notice)?;
                if now > row.due_at {
                    return Err(DeadlineError::ExtensionTooLate {
                        original_due: row.due_at,
                        now,
                    }
                    .into());
                }
                let policy = self.policy();
                let deadlines =
                    Deadlines::compute(law, promised_deadline(&policy, kind), row.received_at)?;
                let Some(longest) = deadlines.max_extension.clone() else {
                    return Err(DeadlineError::NotExtendable { law: law.name() }.into());
                };
                let due = deadlines.extend(&longest, now)?;
                let key = self
                    .details_key(row.subject)?
                    .ok_or(VaultError::SubjectErased(row.subject))?;
                let mut details = open_details(&key, &row)?;
                details.extension_notice = Some(notice.clone());
                update.details = Some(seal_details(&key, row.subject, row.id, &details)?);
                update.due_at = Some(due.at);
                update.original_due_at = Some(row.due_at);
                event = event.with_reason("deadline.extended");
                extension = Some((notice, due.at));
            }
            Action::Start
            | Action::RequestVerification
            | Action::Fulfil
            | Action::WaitOnRecipients => {}
        }
        self.commit_request(&row, Vec::new(), update, vec![event])?;
        if let Some((notice, new_due)) = extension {
            let external_id = self
                .subject(row.subject)
                .ok()
                .and_then(|subject| subject.profile)
                .map(|profile| profile.external_id);
            self.queue_notification(
                EXTENSION_NOTICE,
                Some(row.id),
                row.subject,
                SUBJECT_CHANNEL,
                &json!({
                    "type": EXTENSION_NOTICE,
                    "request": row.id.to_string(),
                    "request_kind": kind.as_str(),
                    "external_id": external_id,
                    "law": law.name(),
                    "original_due_at": row.due_at.to_string(),
                    "due_at": new_due.to_string(),
                    "notice": notice,
                }),
                actor,
            )?;
        }
        self.request(id)
    }

    /// Fulfils a request of any kind but access, copy and portability (those need an output:
    /// [`Vault::fulfil_export_request`]); see the module documentation for what each kind does.
    pub fn fulfil_request(
        &self,
        id: RequestId,
        actor: &str,
    ) -> Result<FulfilmentReport, VaultError> {
        self.fulfil(id, None::<&mut std::io::Cursor<Vec<u8>>>, actor)
    }

    /// Fulfils a request, writing the export of an access, copy or portability request to
    /// `out` (a zip archive, see [`crate::export`]); other kinds leave `out` untouched. When this
    /// fails after writing, discard what was written.
    pub fn fulfil_export_request<W: Write>(
        &self,
        id: RequestId,
        out: &mut W,
        actor: &str,
    ) -> Result<FulfilmentReport, VaultError> {
        self.fulfil(id, Some(out), actor)
    }

    fn fulfil<W: Write>(
        &self,
        id: RequestId,
        out: Option<&mut W>,
        actor: &str,
    ) -> Result<FulfilmentReport, VaultError> {
        let _guard = FulfilGuard::take(id)?;
        let row = self.request_row(id)?;
        let (kind, state, _) = parsed(&row)?;
        if kind.is_access_like() && out.is_none() {
            return Err(VaultError::ExportOutputRequired(kind.as_str()));
        }
        // The claim: verified or extended → in_progress. A request already in progress (a
        // fulfilment interrupted) is resumed; the final commit is checked against the version
        // read here either way.
        let mut claimed = match state {
            RequestState::Verified | RequestState::Extended => {
                let target = custodia_requests::transition(state, &Action::Start)?;
                let update = RequestUpdate {
                    state: Some(target.as_str().to_owned()),
                    ..Self::update_at(self.core.clock.now())
                };
                let event =
                    self.transition_event(&row, kind, format!("{state} -> {target}"), actor);
                self.commit_request(&row, Vec::new(), update, vec![event])?;
                let claimed = self.request_row(id)?;
                if claimed.state != target.as_str() || claimed.version != row.version + 1 {
                    return Err(VaultError::RequestConflict(id));
                }
                claimed
            }
            RequestState::InProgress => row,
            other if other.is_terminal() => {
                return Err(TransitionError::AlreadyClosed { state: other }.into());
            }
            other => {
                return Err(TransitionError::Invalid {
                    from: other,
                    to: RequestState::InProgress,
                }
                .into());
            }
        };
        let subject = claimed.subject;
        let mut report = FulfilmentReport {
            request: self.view(
                claimed.clone(),
                None,
                self.core.clock.now(),
                DEFAULT_SOON_DAYS,
            )?,
            export: None,
            keys_destroyed: None,
            notices: Vec::new(),
            consent_events: Vec::new(),
            rectified: Vec::new(),
            explanation: None,
        };
        let mut mutations = Vec::new();
        let mut audit = Vec::new();
        let mut answer: Option<Value> = None;
        let mut waits = false;
        let mut touches_gate = false;
        // Queuing erasure notices moves the request's version: the final commit checks the new
        // one (still in progress, or another caller got there first).
        let mut requeued = false;
        // What a rectification or a restriction owes the recipients (GDPR Art. 19).
        let mut owed: Option<RecipientNotice> = None;
        let asked = || -> Result<Value, VaultError> {
            let key = self
                .details_key(subject)?
                .ok_or(VaultError::SubjectErased(subject))?;
            Ok(open_details(&key, &claimed)?.asked)
        };
        match kind {
            RequestKind::Access | RequestKind::Copy | RequestKind::Portability => {
                let Some(out) = out else {
                    return Err(VaultError::ExportOutputRequired(kind.as_str()));
                };
                let manifest = self.export_subject(subject, out, actor)?;
                answer = Some(json!({
                    "export": {
                        "format": manifest.format,
                        "generated_at": manifest.generated_at,
                        "files": manifest.files.len(),
                        "records": manifest.counts.records,
                        "media": manifest.counts.media,
                    }
                }));
                report.export = Some(manifest);
            }
            RequestKind::Rectification => {
                let asked = rectification_of(&asked()?)?;
                let mut corrections = Vec::new();
                let changed = self.rectify(
                    subject,
                    &asked,
                    &mut mutations,
                    &mut audit,
                    &mut corrections,
                    actor,
                )?;
                // GDPR Art. 19: each recipient of a corrected category is told, in the same
                // commit as the correction (below), and the request waits on them.
                let only: BTreeSet<String> = corrections.iter().map(|(c, _)| c.clone()).collect();
                if !only.is_empty() {
                    owed = Some(RecipientNotice {
                        kind: RECTIFICATION_NOTICE,
                        only: Some(only),
                        instruction: "Correct the personal data of this user that you received from us as given in `items`, and acknowledge this notice.",
                        items: corrections,
                    });
                }
                answer = Some(json!({ "rectified": changed }));
                report.rectified = changed;
                touches_gate = true;
            }
            RequestKind::Restriction => {
                let (event, entry) =
                    self.ledger_event(subject, Vec::new(), ConsentEventKind::Restricted, actor)?;
                report.consent_events.push(event.id);
                mutations.push(Mutation::InsertConsent(event));
                audit.push(entry);
                owed = Some(RecipientNotice {
                    kind: RESTRICTION_NOTICE,
                    only: None,
                    instruction: "Restrict the processing of the personal data of this user that you received from us to storage, and acknowledge this notice.",
                    items: Vec::new(),
                });
                answer = Some(json!({ "restricted": true }));
                touches_gate = true;
            }
            RequestKind::Objection | RequestKind::ConsentWithdrawal => {
                let choice = purpose_choice(&asked()?)?;
                let policy = self.policy();
                let (purposes, event_kind) = if kind == RequestKind::Objection {
                    (
                        objection_purposes(&policy, &choice),
                        ConsentEventKind::Objected,
                    )
                } else {
                    let purposes = if choice.purposes.is_empty() {
                        self.consented_purposes(&policy, subject)?
                    } else {
                        choice.purposes
                    };
                    (purposes, ConsentEventKind::Withdrawn)
                };
                if !purposes.is_empty() {
                    let (event, entry) =
                        self.ledger_event(subject, purposes.clone(), event_kind, actor)?;
                    report.consent_events.push(event.id);
                    mutations.push(Mutation::InsertConsent(event));
                    audit.push(entry);
                }
                answer = Some(json!({ event_kind.as_str(): purposes }));
                touches_gate = true;
            }
            RequestKind::Explanation => {
                let choice = purpose_choice(&asked()?)?;
                let explanation = self.explain(subject, &choice)?;
                answer = Some(explanation.clone());
                report.explanation = Some(explanation);
            }
            RequestKind::Erasure | RequestKind::AccountCancellation => {
                // Notices first: they carry the app's id for the subject, readable only until
                // the shred. Queued idempotently per recipient.
                let notices = self.notify_recipients(&claimed, actor)?;
                requeued = !notices.is_empty();
                if kind == RequestKind::Erasure {
                    report.keys_destroyed = Some(self.shred_subject(subject, actor)?);
                } else {
                    self.close_account(subject, actor)?;
                    answer = Some(json!({ "account_closed": true }));
                }
                waits = notices.iter().any(|notice| {
                    crate::outbox::NotificationState::parse(&notice.state)
                        .is_none_or(|state| !state.is_settled())
                });
                report.notices = notices.iter().map(|notice| notice.id).collect();
            }
        }
        if let Some(notice) = &owed {
            waits = self.owe_recipients(
                &claimed,
                notice,
                (&mut mutations, &mut audit),
                &mut report,
                actor,
            )?;
        }
        if requeued {
            claimed = self.request_row(id)?;
            if claimed.state != RequestState::InProgress.as_str() {
                return Err(VaultError::RequestConflict(id));
            }
        }
        let now = self.core.clock.now();
        let (target, action) = if waits {
            (RequestState::WaitingOnRecipients, Action::WaitOnRecipients)
        } else {
            (RequestState::Fulfilled, Action::Fulfil)
        };
        custodia_requests::transition(RequestState::InProgress, &action)?;
        let mut update = RequestUpdate {
            state: Some(target.as_str().to_owned()),
            closed_at: (target == RequestState::Fulfilled).then_some(now),
            ..Self::update_at(now)
        };
        if let Some(answer) = answer
            && let Some(key) = self.details_key(subject)?
        {
            let mut details = open_details(&key, &claimed)?;
            details.answer = Some(answer);
            update.details = Some(seal_details(&key, subject, id, &details)?);
        }
        audit.push(self.transition_event(
            &claimed,
            kind,
            format!("{} -> {target}", RequestState::InProgress),
            actor,
        ));
        let committed = self.commit_request(&claimed, mutations, update, audit);
        if touches_gate {
            // Dropped whether or not the commit went through: a failed commit may have landed.
            self.caches.forget_subject(subject);
        }
        committed?;
        if waits {
            // Every notice may already be settled (a resumed fulfilment): finish it then.
            self.settle_recipients(id, actor)?;
        }
        report.request = self.request(id)?;
        Ok(report)
    }

    /// Adds the notices `notice` owes the recipients (those not queued yet) to the request's
    /// commit, lists every one of them in `report`, and returns whether any is unsettled (the
    /// request then waits on recipients).
    fn owe_recipients(
        &self,
        request: &RequestRow,
        notice: &RecipientNotice,
        (mutations, audit): (&mut Vec<Mutation>, &mut Vec<AuditEvent>),
        report: &mut FulfilmentReport,
        actor: &str,
    ) -> Result<bool, VaultError> {
        let (existing, batch) = self.recipient_notices(request, notice, actor)?;
        let mut unsettled = !batch.mutations.is_empty();
        for row in &existing {
            unsettled |= crate::outbox::NotificationState::parse(&row.state)
                .is_none_or(|state| !state.is_settled());
            report.notices.push(row.id);
        }
        for mutation in &batch.mutations {
            if let Mutation::InsertNotification(row) = mutation {
                report.notices.push(row.id);
            }
        }
        mutations.extend(batch.mutations);
        audit.extend(batch.audit);
        Ok(unsettled)
    }

    /// A ledger event made by a request, and its audit entry (as [`Vault::record_consent`]
    /// writes them).
    fn ledger_event(
        &self,
        subject: SubjectId,
        purposes: Vec<String>,
        kind: ConsentEventKind,
        actor: &str,
    ) -> Result<(ConsentRow, AuditEvent), VaultError> {
        let event = ConsentRow {
            id: ConsentId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?,
            subject,
            purposes,
            kind,
            guardian: None,
            guardian_verified: false,
            policy_version: self.policy().version.get_ref().clone(),
            method: REQUEST_METHOD.to_owned(),
            at: self.core.clock.now(),
            expires_at: None,
        };
        let entry = self
            .core
            .event(EventKind::ConsentRecorded, actor)
            .with_subject(subject.to_string())
            .with_purpose(event.purposes.join(","))
            .with_record(event.id.to_string())
            .with_outcome(kind.as_str());
        Ok((event, entry))
    }

    /// The consent purposes whose latest ledger event is a given or renewed consent.
    fn consented_purposes(
        &self,
        policy: &Policy,
        subject: SubjectId,
    ) -> Result<Vec<String>, VaultError> {
        let ledger = self.core.data.consents_of(subject)?;
        Ok(policy
            .purposes
            .iter()
            .filter(|purpose| *purpose.basis.get_ref() == LegalBasis::Consent)
            .map(|purpose| purpose.key.get_ref().clone())
            .filter(|key| latest_kind(&ledger, key).is_some_and(is_given))
            .collect())
    }

    /// Applies a rectification to `mutations` and `audit`; returns what changed, and adds to
    /// `corrections` each corrected record as its recipients are told it (by category).
    fn rectify(
        &self,
        subject: SubjectId,
        asked: &Rectification,
        mutations: &mut Vec<Mutation>,
        audit: &mut Vec<AuditEvent>,
        corrections: &mut Vec<(String, Value)>,
        actor: &str,
    ) -> Result<Vec<String>, VaultError> {
        let row = self.live_subject(subject)?;
        let subject_text = subject.to_string();
        let mut changed = Vec::new();
        if let Some(changes) = &asked.profile {
            let current = self
                .subject(subject)?
                .profile
                .ok_or(VaultError::SubjectErased(subject))?;
            let updated = rectified_profile(&current, changes)?;
            let plain = Zeroizing::new(
                serde_json::to_vec(&updated).map_err(|_| details_error("cannot be encoded"))?,
            );
            let key = self.core.load_key(row.key, subject)?;
            let sealed = key.seal(
                &FieldContext::new(&subject_text, PROFILE_CATEGORY, &subject_text),
                &plain,
            )?;
            mutations.push(Mutation::UpdateSubject {
                id: subject,
                update: SubjectUpdate {
                    profile: Some(sealed),
                    ..SubjectUpdate::default()
                },
            });
            audit.push(
                self.core
                    .event(EventKind::RecordWritten, actor)
                    .with_subject(&subject_text)
                    .with_category(PROFILE_CATEGORY)
                    .with_outcome("rectified"),
            );
            for (field, set) in [
                ("jurisdiction", changes.jurisdiction.is_some()),
                ("birth_date", changes.birth_date.is_some()),
                ("age_band", changes.age_band.is_some()),
            ] {
                if set {
                    changed.push(format!("profile.{field}"));
                }
            }
        }
        for change in &asked.records {
            let record: RecordRow = self
                .core
                .data
                .record(change.id)?
                .filter(|record| record.subject == subject)
                .ok_or(VaultError::RecordNotFound(change.id))?;
            let value = change.bytes()?;
            let key = self.core.load_key(record.key, subject)?;
            let id_text = record.id.to_string();
            let ciphertext = key.seal(
                &FieldContext::new(&subject_text, &record.category, &id_text),
                &value,
            )?;
            audit.push(
                self.core
                    .event(EventKind::RecordWritten, actor)
                    .with_subject(&subject_text)
                    .with_category(&record.category)
                    .with_purpose(&record.purpose)
                    .with_record(&id_text)
                    .with_rule(&record.rule)
                    .with_outcome("rectified"),
            );
            let encoded = crate::export::encode_value(&value);
            corrections.push((
                record.category.clone(),
                json!({
                    "record": id_text,
                    "category": record.category,
                    "encoding": encoded.encoding(),
                    "value": encoded.as_str(),
                }),
            ));
            // Same id, metadata and expiry; only the sealed value changes.
            mutations.push(Mutation::DeleteRecord(record.id));
            mutations.push(Mutation::InsertRecord(RecordRow {
                ciphertext,
                ..record
            }));
            changed.push(id_text);
        }
        Ok(changed)
    }

    /// The explanation of the automated decisions that apply to the subject.
    fn explain(&self, subject: SubjectId, choice: &PurposeChoice) -> Result<Value, VaultError> {
        let policy = self.policy();
        let mut held: BTreeSet<String> = self
            .core
            .data
            .records_of(subject, None)?
            .into_iter()
            .map(|record| record.category)
            .collect();
        held.extend(
            self.core
                .data
                .media_of(subject, None)?
                .into_iter()
                .map(|media| media.category),
        );
        let ledger = self.core.data.consents_of(subject)?;
        let decisions: Vec<Value> = policy
            .purposes
            .iter()
            .filter(|purpose| purpose.automated_decision)
            .filter(|purpose| {
                choice.purposes.is_empty() || choice.purposes.contains(purpose.key.get_ref())
            })
            .filter_map(|purpose| {
                let key = purpose.key.get_ref();
                let used: Vec<&String> = purpose
                    .categories
                    .iter()
                    .map(|c| c.get_ref())
                    .filter(|c| held.contains(c.as_str()))
                    .collect();
                let latest = latest_kind(&ledger, key);
                let consent_basis = *purpose.basis.get_ref() == LegalBasis::Consent;
                if used.is_empty() || (consent_basis && !latest.is_some_and(is_given)) {
                    return None;
                }
                Some(json!({
                    "purpose": key,
                    "name": purpose.display_name(),
                    "logic": purpose.description,
                    "legal_basis": serde_json::to_value(purpose.basis.get_ref()).unwrap_or(Value::Null),
                    "categories_used": purpose.categories.iter().map(|c| c.get_ref()).collect::<Vec<_>>(),
                    "categories_held": used,
                    "latest_consent_event": latest.map(ConsentEventKind::as_str),
                    "how_to_refuse": if consent_basis {
                        "withdraw your consent to this purpose"
                    } else {
                        "object to this purpose, or ask for a human review"
                    },
                }))
            })
            .collect();
        Ok(json!({
            "subject": subject.to_string(),
            "policy_version": policy.version.get_ref(),
            "generated_at": self.core.clock.now().to_string(),
            "automated_decisions": decisions,
        }))
    }
}

fn rectification_of(asked: &Value) -> Result<Rectification, VaultError> {
    serde_json::from_value(asked.clone()).map_err(|_| {
        details_error(
            "a rectification is {\"profile\": {jurisdiction, birth_date, age_band}, \"records\": [{\"id\", \"value\" or \"value_base64\"}]}",
        )
    })
}

fn purpose_choice(asked: &Value) -> Result<PurposeChoice, VaultError> {
    serde_json::from_value(asked.clone())
        .map_err(|_| details_error("expected {\"purposes\": [purpose keys], \"reason\": text}"))
}

/// The profile after a rectification, checked.
fn rectified_profile(
    current: &NewSubject,
    changes: &ProfileChanges,
) -> Result<NewSubject, VaultError> {
    if changes.jurisdiction.is_none() && changes.birth_date.is_none() && changes.age_band.is_none()
    {
        return Err(details_error("name at least one profile field to correct"));
    }
    let mut updated = current.clone();
    if let Some(jurisdiction) = &changes.jurisdiction {
        updated.jurisdiction.clone_from(jurisdiction);
    }
    if let Some(birth_date) = &changes.birth_date {
        updated.birth_date = Some(birth_date.clone());
    }
    if let Some(age_band) = &changes.age_band {
        updated.age_band = Some(age_band.clone());
    }
    updated.validate()?;
    Ok(updated)
}

/// The purposes an objection covers: those named, or every legitimate-interest and
/// public-interest purpose.
fn objection_purposes(policy: &Policy, choice: &PurposeChoice) -> Vec<String> {
    if !choice.purposes.is_empty() {
        return choice.purposes.clone();
    }
    policy
        .purposes
        .iter()
        .filter(|purpose| {
            matches!(
                purpose.basis.get_ref(),
                LegalBasis::LegitimateInterest | LegalBasis::PublicInterest
            )
        })
        .map(|purpose| purpose.key.get_ref().clone())
        .collect()
}

/// The latest ledger event that names `purpose`.
fn latest_kind(ledger: &[ConsentRow], purpose: &str) -> Option<ConsentEventKind> {
    ledger
        .iter()
        .rev()
        .find(|event| event.purposes.iter().any(|p| p == purpose))
        .map(|event| event.kind)
}

fn is_given(kind: ConsentEventKind) -> bool {
    matches!(kind, ConsentEventKind::Given | ConsentEventKind::Renewed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = new_code().unwrap_or_default();
            assert!(code_shaped(&code), "{}", code.as_str());
        }
        assert!(!code_shaped("12345"));
        assert!(!code_shaped("12345a"));
        assert!(!code_shaped("1234567"));
    }

    #[test]
    fn jurisdictions_map_to_laws() {
        let source = custodia_policy::Source::new(
            "deeppiano.toml",
            include_str!("../../../examples/deeppiano.toml"),
        );
        let Ok(policy) = source.parse() else {
            panic!("the example parses");
        };
        assert_eq!(law_for(&policy, "CN"), Some(Law::Pipl));
        assert_eq!(law_for(&policy, "DE"), Some(Law::Gdpr));
        assert_eq!(law_for(&policy, "FR-75"), Some(Law::Gdpr));
        assert_eq!(law_for(&policy, "NO"), Some(Law::Gdpr));
        // Not among DeepPiano's laws, or no mapping: the policy's first law.
        assert_eq!(law_for(&policy, "US-CA"), Some(Law::Pipl));
        assert_eq!(law_for(&policy, "JP"), Some(Law::Pipl));
    }
}
