//! The outbox: messages the engine owes someone, kept until they are delivered and, for erasure
//! notices, until their recipient acknowledges them or an operator marks them impossible with a
//! reason (design invariant 4).
//!
//! - [`Vault::queue_notification`] queues one message (a verification code for the subject, ...);
//!   [`Vault::notify_recipients`] queues one `erasure_notice` per recipient in the subject's
//!   disclosure log for an erasure or cancellation request; a rectification or a restriction
//!   owes its recipients a `rectification_notice` (with the corrected values of what each
//!   received) or a `restriction_notice` (GDPR Art. 19), queued with the request's own commit.
//! - Payloads are sealed under the *outbox key*, derived from the root key
//!   ([`custodia_crypto::RootKey::derived_key`]), not under the subject's key: an erasure notice
//!   must still be deliverable after the subject is crypto-shredded. The associated data binds
//!   each payload to its notification id and subject, so sealed payloads cannot be swapped
//!   between rows. A payload is wiped once it is no longer needed: a verification code or a
//!   correction after delivery, an erasure or restriction notice once settled.
//! - A deliverer (the server's webhook worker) calls [`Vault::claim_due_notifications`], which
//!   leases due messages so two instances never send the same one at once, and reports each
//!   attempt with [`Vault::record_delivery`]: failures retry with exponential backoff (1 minute,
//!   doubling, at most 1 hour between attempts) and give up after [`MAX_ATTEMPTS`] (state
//!   `failed`, which still holds the request open until the notice is marked impossible).
//! - [`Vault::acknowledge_notification`] and [`Vault::mark_notification_impossible`] settle a
//!   notice; once every recipient notice of a request is settled, the request moves from
//!   `waiting_on_recipients` to `fulfilled` ([`Vault::settle_recipients`]).
//!
//! All times come from the injected clock; every change is audited with pseudonymous ids, the
//! notification's id, its kind and its recipient's policy name, never a payload.

use std::collections::BTreeMap;
use std::time::Duration;

use custodia_audit::{AuditEvent, EventKind};
use custodia_core::{NotificationId, RequestId, SubjectId, Timestamp};
use custodia_crypto::{DataKey, FieldContext};
use custodia_store::{
    Mutation, NotificationRow, NotificationUpdate, RequestRow, RequestUpdate, StoreError,
    WriteBatch,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::vault::{Vault, poisoned};

/// The kind of an erasure notice to a recipient.
pub const ERASURE_NOTICE: &str = "erasure_notice";
/// The kind of a rectification notice to a recipient (GDPR Art. 19): what was corrected, as
/// corrected, for the categories it received.
pub const RECTIFICATION_NOTICE: &str = "rectification_notice";
/// The kind of a restriction notice to a recipient (GDPR Art. 19).
pub const RESTRICTION_NOTICE: &str = "restriction_notice";
/// The notices a request owes the recipients of the subject's data, each of which it waits on
/// until acknowledged or marked impossible.
pub const RECIPIENT_NOTICES: [&str; 3] = [ERASURE_NOTICE, RECTIFICATION_NOTICE, RESTRICTION_NOTICE];
/// The kind of an identity-verification code for the subject.
pub const VERIFICATION_CODE: &str = "verification_code";
/// The recipient name of messages to the subject themself (the operator's SMS or e-mail sender).
pub const SUBJECT_CHANNEL: &str = "subject";
/// Delivery attempts before a notification is given up (`failed`).
pub const MAX_ATTEMPTS: u32 = 10;
/// The wait after the first failed attempt; it doubles with each further failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The name the outbox key is derived under.
const OUTBOX_KEY: &str = "outbox";
/// The context category of sealed payloads.
const PAYLOAD_CONTEXT: &str = "custodia.outbox.payload";
/// The context category of sealed impossibility reasons.
const REASON_CONTEXT: &str = "custodia.outbox.reason";
/// The request state that waits on the notices, and the one that follows.
const WAITING_ON_RECIPIENTS: &str = "waiting_on_recipients";
const FULFILLED: &str = "fulfilled";
/// The longest reason an operator may give for an impossible notice.
const MAX_REASON_CHARS: usize = 2000;
/// How many times a version-checked change of a request (queuing erasure notices, settling)
/// looks again when another instance changed the request meanwhile.
const VERSION_RETRIES: usize = 4;

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationState {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// Delivered; a recipient notice still waits for its acknowledgement.
    Delivered,
    /// The recipient acknowledged it.
    Acknowledged,
    /// Marked impossible by an operator, with a reason.
    Impossible,
    /// Given up after [`MAX_ATTEMPTS`]; still unsettled.
    Failed,
}

impl NotificationState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Acknowledged => "acknowledged",
            Self::Impossible => "impossible",
            Self::Failed => "failed",
        }
    }

    /// From the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "acknowledged" => Self::Acknowledged,
            "impossible" => Self::Impossible,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Acknowledged or impossible: nothing more will happen to it.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Acknowledged | Self::Impossible)
    }
}

fn state_of(row: &NotificationRow) -> Result<NotificationState, VaultError> {
    NotificationState::parse(&row.state).ok_or_else(|| {
        VaultError::Store(StoreError::Corrupt(format!(
            "notification {} has unknown state",
            row.id
        )))
    })
}

/// A claimed notification, ready to send: its payload decrypted.
pub struct OutgoingNotification {
    /// The notification's id (recipients use it to acknowledge).
    pub id: NotificationId,
    /// What it is (`erasure_notice`, `verification_code`, ...).
    pub kind: String,
    /// The request it belongs to.
    pub request: Option<RequestId>,
    /// Whom it concerns (pseudonymous).
    pub subject: SubjectId,
    /// To whom: a recipient's policy name, or [`SUBJECT_CHANNEL`].
    pub recipient: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// When it was queued.
    pub created_at: Timestamp,
    /// The payload as JSON, wiped from memory when dropped.
    pub payload: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OutgoingNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingNotification")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("request", &self.request)
            .field("subject", &self.subject)
            .field("recipient", &self.recipient)
            .field("attempt", &self.attempt)
            .field("payload", &"redacted")
            .finish()
    }
}

impl OutgoingNotification {
    /// The message as delivered: a JSON object with `id`, `kind`, `request`, `subject`,
    /// `recipient`, `attempt`, `created_at` and the `payload` object, in a buffer wiped when
    /// dropped.
    pub fn body(&self) -> Zeroizing<Vec<u8>> {
        let envelope = json!({
            "id": self.id.to_string(),
            "kind": self.kind,
            "request": self.request.map(|id| id.to_string()),
            "subject": self.subject.to_string(),
            "recipient": self.recipient,
            "attempt": self.attempt,
            "created_at": self.created_at.to_string(),
        });
        // The envelope holds no personal data; the payload is spliced in as its last member so
        // it never passes through an unwiped `Value`.
        let head = envelope.to_string();
        let head = head.strip_suffix('}').unwrap_or(&head);
        let mut body = Zeroizing::new(Vec::with_capacity(head.len() + self.payload.len() + 16));
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(b",\"payload\":");
        body.extend_from_slice(&self.payload);
        body.push(b'}');
        body
    }
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The recipient's endpoint accepted it.
    Delivered,
    /// It failed; `code` is a stable code (`webhook.status_500`, `webhook.timeout`, ...).
    Failed {
        /// Why, as a stable code (anything but `[a-z0-9._-]`, or over 64 characters, is
        /// recorded as `delivery.failed`).
        code: String,
    },
}

/// A notification as an operator sees it: everything but the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationStatus {
    /// The notification's id.
    pub id: NotificationId,
    /// What it is.
    pub kind: String,
    /// The request it belongs to.
    pub request: Option<RequestId>,
    /// Whom it concerns.
    pub subject: SubjectId,
    /// To whom.
    pub recipient: String,
    /// Where it is.
    pub state: NotificationState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: Option<Timestamp>,
    /// The stable code of the last failure.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
    /// When it was acknowledged or marked impossible.
    pub settled_at: Option<Timestamp>,
    /// Why it is impossible (decrypted).
    pub reason: Option<String>,
}

/// The wait before the attempt after `failures` failed ones: 1 minute, doubling, at most 1 hour.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn stable_code(code: &str) -> String {
    let clean = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if clean {
        code.to_owned()
    } else {
        "delivery.failed".to_owned()
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// One recipient's part of a subject's disclosure log, for the notices it is owed.
struct RecipientLog {
    kind: String,
    categories: Vec<String>,
    disclosures: Vec<Value>,
}

/// What a request tells the recipients of the subject's data.
pub(crate) struct RecipientNotice {
    /// One of [`RECIPIENT_NOTICES`].
    pub kind: &'static str,
    /// Only the recipients that received at least one of these categories; all when `None`.
    pub only: Option<std::collections::BTreeSet<String>>,
    /// What the recipient is asked to do.
    pub instruction: &'static str,
    /// Items by category (a correction, ...): each recipient gets those of the categories it
    /// received, as `items`.
    pub items: Vec<(String, Value)>,
}

impl Vault {
    /// The outbox key: derived from the root key, so it survives every subject's shredding.
    fn outbox_key(&self) -> Result<DataKey, VaultError> {
        let ring = self.core.ring.read().map_err(|_| poisoned())?;
        Ok(ring.root().derived_key(OUTBOX_KEY)?)
    }

    /// A new pending notification row and its audit entry (not yet committed).
    #[allow(clippy::too_many_arguments)]
    fn new_notification(
        &self,
        key: &DataKey,
        kind: &str,
        request: Option<RequestId>,
        subject: SubjectId,
        recipient: &str,
        payload: &Value,
        actor: &str,
    ) -> Result<(NotificationRow, AuditEvent), VaultError> {
        if !is_name(kind) {
            return Err(VaultError::Invalid {
                field: "kind",
                reason: "must be 1 to 64 of a-z, 0-9 and _".into(),
            });
        }
        if recipient.trim().is_empty() || recipient.len() > 200 {
            return Err(VaultError::Invalid {
                field: "recipient",
                reason: "must be 1 to 200 bytes".into(),
            });
        }
        let id = NotificationId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?;
        let plain =
            Zeroizing::new(
                serde_json::to_vec(payload).map_err(|_| VaultError::Invalid {
                    field: "payload",
                    reason: "cannot be encoded".into(),
                })?,
            );
        let (id_text, subject_text) = (id.to_string(), subject.to_string());
        let sealed = key.seal(
            &FieldContext::new(&subject_text, PAYLOAD_CONTEXT, &id_text),
            &plain,
        )?;
        let now = self.core.clock.now();
        let row = NotificationRow {
            id,
            kind: kind.to_owned(),
            request,
            subject,
            recipient: recipient.to_owned(),
            payload: sealed,
            state: NotificationState::Pending.as_str().to_owned(),
            attempts: 0,
            next_attempt_at: Some(now),
            last_error: None,
            created_at: now,
            delivered_at: None,
            settled_at: None,
            reason: None,
        };
        let event = self
            .core
            .event(EventKind::NotificationQueued, actor)
            .with_subject(subject_text)
            .with_record(id_text)
            .with_outcome(format!("{kind} to {recipient}"));
        Ok((row, event))
    }

    /// Queues one message in the outbox: `payload` (any JSON) is sealed under the outbox key and
    /// delivered to `recipient` (a recipient's policy name, or [`SUBJECT_CHANNEL`]) by the
    /// deliverer, with retries. Audited as `notification_queued`.
    pub fn queue_notification(
        &self,
        kind: &str,
        request: Option<RequestId>,
        subject: SubjectId,
        recipient: &str,
        payload: &Value,
        actor: &str,
    ) -> Result<NotificationRow, VaultError> {
        let key = self.outbox_key()?;
        let (row, event) =
            self.new_notification(&key, kind, request, subject, recipient, payload, actor)?;
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::InsertNotification(row.clone())],
            audit: vec![event],
        })?;
        Ok(row)
    }

    /// Queues one [`ERASURE_NOTICE`] per distinct recipient in the subject's disclosure log for
    /// an erasure or cancellation `request`, and returns every erasure notice of the request
    /// (those queued before too: repeating it after a crash queues nothing twice). No recipient:
    /// an empty list. The notices are committed with a version-checked touch of the request, so
    /// two instances resuming the same erasure at once cannot both queue them: the one that
    /// loses looks again and finds the other's. The request's version moves when anything is
    /// queued; a caller holding the row reads it again.
    ///
    /// Call it *before* shredding the subject: each notice carries the subject's external id
    /// (the app's user id, which the recipient knows them by), read from the profile while it
    /// is still readable, and sealed under the outbox key so the notice outlives the shredding.
    /// Authorities are not told (GDPR Art. 4(9): an authority receiving data for an inquiry is
    /// not a recipient; a court's file is not erased on the subject's request).
    pub fn notify_recipients(
        &self,
        request: &RequestRow,
        actor: &str,
    ) -> Result<Vec<NotificationRow>, VaultError> {
        let notice = RecipientNotice {
            kind: ERASURE_NOTICE,
            only: None,
            instruction: "Erase the personal data of this user that you received from us, and acknowledge this notice.",
            items: Vec::new(),
        };
        let mut request = request.clone();
        for _ in 0..VERSION_RETRIES {
            let (existing, mut batch) = self.recipient_notices(&request, &notice, actor)?;
            let queued: Vec<NotificationRow> = batch
                .mutations
                .iter()
                .filter_map(|mutation| match mutation {
                    Mutation::InsertNotification(row) => Some(row.clone()),
                    _ => None,
                })
                .collect();
            if queued.is_empty() {
                return Ok(existing);
            }
            batch.mutations.push(Mutation::UpdateRequest {
                id: request.id,
                expected_version: request.version,
                update: Self::update_at(self.core.clock.now()),
            });
            match self.core.data.commit(batch) {
                Ok(_) => {
                    let mut all = existing;
                    all.extend(queued);
                    return Ok(all);
                }
                // Another instance queued them, or changed the request: look again.
                Err(StoreError::Conflict(_)) => {
                    request = self
                        .core
                        .data
                        .request(request.id)?
                        .ok_or(VaultError::RequestNotFound(request.id))?;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(VaultError::RequestConflict(request.id))
    }

    /// The notices of `notice.kind` that `request` owes the recipients in the subject's
    /// disclosure log (those that received one of `notice.only`'s categories, when set): the
    /// ones queued before, and a batch (rows and audit entries, not committed) with one for
    /// each recipient that has none yet. Authorities are not recipients (see
    /// [`Vault::notify_recipients`]).
    pub(crate) fn recipient_notices(
        &self,
        request: &RequestRow,
        notice: &RecipientNotice,
        actor: &str,
    ) -> Result<(Vec<NotificationRow>, WriteBatch), VaultError> {
        let mut logs: BTreeMap<String, RecipientLog> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for disclosure in self.core.data.disclosures_of(request.subject)? {
            if disclosure.recipient_kind == crate::disclosures::AUTHORITY {
                continue;
            }
            if let Some(only) = &notice.only
                && !disclosure.categories.iter().any(|c| only.contains(c))
            {
                continue;
            }
            let log = logs.entry(disclosure.recipient.clone()).or_insert_with(|| {
                order.push(disclosure.recipient.clone());
                RecipientLog {
                    kind: disclosure.recipient_kind.clone(),
                    categories: Vec::new(),
                    disclosures: Vec::new(),
                }
            });
            for category in &disclosure.categories {
                if !log.categories.contains(category) {
                    log.categories.push(category.clone());
                }
            }
            log.disclosures.push(json!({
                "id": disclosure.id.to_string(),
                "at": disclosure.at.to_string(),
                "purpose": disclosure.purpose,
                "categories": disclosure.categories,
            }));
        }
        let existing: Vec<NotificationRow> = self
            .core
            .data
            .notifications_of(request.id)?
            .into_iter()
            .filter(|row| row.kind == notice.kind)
            .collect();
        let missing: Vec<&String> = order
            .iter()
            .filter(|name| !existing.iter().any(|row| &row.recipient == *name))
            .collect();
        let mut batch = WriteBatch::default();
        if missing.is_empty() {
            return Ok((existing, batch));
        }
        // The app's own id for the subject, while the profile can still be read.
        let external_id = match self.subject(request.subject) {
            Ok(subject) => subject.profile.map(|profile| profile.external_id),
            Err(VaultError::KeyDestroyed(_) | VaultError::SubjectNotFound(_)) => None,
            Err(other) => return Err(other),
        };
        let key = self.outbox_key()?;
        for name in missing {
            let Some(log) = logs.get(name) else { continue };
            let mut payload = json!({
                "type": notice.kind,
                "request": request.id.to_string(),
                "request_kind": request.kind,
                "requested_at": request.received_at.to_string(),
                "subject": request.subject.to_string(),
                "external_id": external_id,
                "recipient": name,
                "recipient_kind": log.kind,
                "categories": log.categories,
                "disclosures": log.disclosures,
                "instruction": notice.instruction,
            });
            if !notice.items.is_empty()
                && let Some(fields) = payload.as_object_mut()
            {
                // Only what this recipient received.
                let items: Vec<&Value> = notice
                    .items
                    .iter()
                    .filter(|(category, _)| log.categories.contains(category))
                    .map(|(_, item)| item)
                    .collect();
                fields.insert("items".to_owned(), json!(items));
            }
            let (row, event) = self.new_notification(
                &key,
                notice.kind,
                Some(request.id),
                request.subject,
                name,
                &payload,
                actor,
            )?;
            batch.mutations.push(Mutation::InsertNotification(row));
            batch.audit.push(event);
        }
        Ok((existing, batch))
    }

    /// Claims up to `limit` notifications due now for delivery, leasing each for `lease` (another
    /// deliverer will not take it meanwhile; one that dies lets the lease lapse and the message
    /// is sent again), and returns them with their payloads decrypted. A payload that cannot be
    /// opened (the root key was replaced) is given up at once as `outbox.payload_unreadable`.
    pub fn claim_due_notifications(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutgoingNotification>, VaultError> {
        let now = self.core.clock.now();
        let until = now.plus_millis(millis(lease).max(1));
        let rows = self.core.data.claim_due_notifications(now, until, limit)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.outbox_key()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (id_text, subject_text) = (row.id.to_string(), row.subject.to_string());
            match key.open(
                &FieldContext::new(&subject_text, PAYLOAD_CONTEXT, &id_text),
                &row.payload,
            ) {
                Ok(payload) => out.push(OutgoingNotification {
                    id: row.id,
                    kind: row.kind,
                    request: row.request,
                    subject: row.subject,
                    recipient: row.recipient,
                    attempt: row.attempts.saturating_add(1),
                    created_at: row.created_at,
                    payload,
                }),
                Err(_) => {
                    self.give_up(&row, "outbox.payload_unreadable", "system")?;
                }
            }
        }
        Ok(out)
    }

    fn give_up(&self, row: &NotificationRow, code: &str, actor: &str) -> Result<(), VaultError> {
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::UpdateNotification {
                id: row.id,
                update: NotificationUpdate {
                    state: Some(NotificationState::Failed.as_str().to_owned()),
                    next_attempt_at: Some(None),
                    last_error: Some(Some(code.to_owned())),
                    ..NotificationUpdate::default()
                },
            }],
            audit: vec![
                self.core
                    .event(EventKind::NotificationDelivery, actor)
                    .with_subject(row.subject.to_string())
                    .with_record(row.id.to_string())
                    .with_outcome("failed")
                    .with_reasons([code]),
            ],
        })?;
        Ok(())
    }

    /// Records how a delivery attempt went. Delivered: the notification is `delivered` (a
    /// verification code's payload is wiped: it has served). Failed: the next attempt is due
    /// after [`backoff`] of the failures so far, or, at the [`MAX_ATTEMPTS`]th failure, it is
    /// given up as `failed` (an erasure notice then waits to be marked impossible). A report for
    /// a notification no longer pending (settled meanwhile) changes nothing. Returns the row
    /// as it is now.
    pub fn record_delivery(
        &self,
        id: NotificationId,
        outcome: &DeliveryOutcome,
        actor: &str,
    ) -> Result<NotificationRow, VaultError> {
        let row = self
            .core
            .data
            .notification(id)?
            .ok_or(VaultError::NotificationNotFound(id))?;
        if state_of(&row)? != NotificationState::Pending {
            return Ok(row);
        }
        let now = self.core.clock.now();
        let attempts = row.attempts.saturating_add(1);
        // An erasure notice keeps its payload until settled (it carries no value of the
        // subject's); a correction's values and a code go once delivered.
        let wipes_after_use = row.kind != ERASURE_NOTICE && row.kind != RESTRICTION_NOTICE;
        let (update, outcome_name, reasons) = match outcome {
            DeliveryOutcome::Delivered => (
                NotificationUpdate {
                    state: Some(NotificationState::Delivered.as_str().to_owned()),
                    attempts: Some(attempts),
                    next_attempt_at: Some(None),
                    last_error: Some(None),
                    delivered_at: Some(now),
                    payload: wipes_after_use.then(Vec::new),
                    ..NotificationUpdate::default()
                },
                "delivered",
                Vec::new(),
            ),
            DeliveryOutcome::Failed { code } => {
                let code = stable_code(code);
                let update = if attempts >= MAX_ATTEMPTS {
                    NotificationUpdate {
                        state: Some(NotificationState::Failed.as_str().to_owned()),
                        attempts: Some(attempts),
                        next_attempt_at: Some(None),
                        last_error: Some(Some(code.clone())),
                        payload: wipes_after_use.then(Vec::new),
                        ..NotificationUpdate::default()
                    }
                } else {
                    NotificationUpdate {
                        attempts: Some(attempts),
                        next_attempt_at: Some(Some(now.plus_millis(millis(backoff(attempts))))),
                        last_error: Some(Some(code.clone())),
                        ..NotificationUpdate::default()
                    }
                };
                let name = if attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "retry"
                };
                (update, name, vec![code])
            }
        };
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::UpdateNotification { id, update }],
            audit: vec![
                self.core
                    .event(EventKind::NotificationDelivery, actor)
                    .with_subject(row.subject.to_string())
                    .with_record(id.to_string())
                    .with_outcome(format!("{outcome_name} attempt={attempts}"))
                    .with_reasons(reasons),
            ],
        })?;
        self.core
            .data
            .notification(id)?
            .ok_or(VaultError::NotificationNotFound(id))
    }

    /// The recipient acknowledged the notification (it has erased what it received): settled,
    /// its payload wiped. Repeating it changes nothing; a notification marked impossible cannot
    /// be acknowledged. When it was the last unsettled recipient notice of its request, the request
    /// moves to `fulfilled`.
    pub fn acknowledge_notification(
        &self,
        id: NotificationId,
        actor: &str,
    ) -> Result<NotificationStatus, VaultError> {
        let row = self
            .core
            .data
            .notification(id)?
            .ok_or(VaultError::NotificationNotFound(id))?;
        match state_of(&row)? {
            NotificationState::Impossible => {
                return Err(VaultError::NotificationSettled(id, "impossible"));
            }
            NotificationState::Acknowledged => {}
            _ => self.settle(&row, NotificationState::Acknowledged, None, actor)?,
        }
        if let Some(request) = row.request {
            self.settle_recipients(request, actor)?;
        }
        self.notification_status(id)
    }

    /// Marks a notification impossible to deliver or to have acted on, with the operator's
    /// `reason` (sealed, shown to operators): settled, its payload wiped. Repeating it keeps the
    /// first reason; an acknowledged notification cannot be marked impossible. When it was the
    /// last unsettled recipient notice of its request, the request moves to `fulfilled`.
    pub fn mark_notification_impossible(
        &self,
        id: NotificationId,
        reason: &str,
        actor: &str,
    ) -> Result<NotificationStatus, VaultError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(VaultError::Invalid {
                field: "reason",
                reason: format!("must be 1 to {MAX_REASON_CHARS} characters"),
            });
        }
        let row = self
            .core
            .data
            .notification(id)?
            .ok_or(VaultError::NotificationNotFound(id))?;
        match state_of(&row)? {
            NotificationState::Acknowledged => {
                return Err(VaultError::NotificationSettled(id, "acknowledged"));
            }
            NotificationState::Impossible => {}
            _ => {
                let sealed = self.outbox_key()?.seal(
                    &FieldContext::new(&row.subject.to_string(), REASON_CONTEXT, &id.to_string()),
                    reason.as_bytes(),
                )?;
                self.settle(&row, NotificationState::Impossible, Some(sealed), actor)?;
            }
        }
        if let Some(request) = row.request {
            self.settle_recipients(request, actor)?;
        }
        self.notification_status(id)
    }

    fn settle(
        &self,
        row: &NotificationRow,
        state: NotificationState,
        reason: Option<Vec<u8>>,
        actor: &str,
    ) -> Result<(), VaultError> {
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::UpdateNotification {
                id: row.id,
                update: NotificationUpdate {
                    state: Some(state.as_str().to_owned()),
                    next_attempt_at: Some(None),
                    settled_at: Some(self.core.clock.now()),
                    reason,
                    payload: Some(Vec::new()),
                    ..NotificationUpdate::default()
                },
            }],
            audit: vec![
                self.core
                    .event(EventKind::NotificationSettled, actor)
                    .with_subject(row.subject.to_string())
                    .with_record(row.id.to_string())
                    .with_outcome(state.as_str()),
            ],
        })?;
        Ok(())
    }

    /// Moves `request` from `waiting_on_recipients` to `fulfilled` when every recipient notice
    /// of it ([`RECIPIENT_NOTICES`]) is acknowledged or impossible (audited as a
    /// `request_transition`); returns whether it moved. Any other state, or a notice still
    /// unsettled, changes nothing. Safe to call at
    /// any time and from several instances at once: the move is checked against the request's
    /// version, so it happens once.
    pub fn settle_recipients(&self, request: RequestId, actor: &str) -> Result<bool, VaultError> {
        for _ in 0..VERSION_RETRIES {
            let Some(row) = self.core.data.request(request)? else {
                return Ok(false);
            };
            if row.state != WAITING_ON_RECIPIENTS {
                return Ok(false);
            }
            for notice in self.core.data.notifications_of(request)? {
                if RECIPIENT_NOTICES.contains(&notice.kind.as_str())
                    && !state_of(&notice)?.is_settled()
                {
                    return Ok(false);
                }
            }
            let now = self.core.clock.now();
            let committed = self.core.data.commit(WriteBatch {
                mutations: vec![Mutation::UpdateRequest {
                    id: request,
                    expected_version: row.version,
                    update: RequestUpdate {
                        state: Some(FULFILLED.to_owned()),
                        due_at: None,
                        original_due_at: None,
                        details: None,
                        flags: None,
                        verification: None,
                        closed_at: Some(now),
                        updated_at: now,
                    },
                }],
                audit: vec![
                    self.core
                        .event(EventKind::RequestTransition, actor)
                        .with_subject(row.subject.to_string())
                        .with_record(request.to_string())
                        .with_outcome(format!("{WAITING_ON_RECIPIENTS} -> {FULFILLED}")),
                ],
            });
            match committed {
                Ok(_) => return Ok(true),
                // Another instance changed the request meanwhile: look again.
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Ok(false)
    }

    fn status_of(&self, row: NotificationRow) -> Result<NotificationStatus, VaultError> {
        let state = state_of(&row)?;
        let reason = match &row.reason {
            Some(sealed) if !sealed.is_empty() => {
                let plain = self.outbox_key()?.open(
                    &FieldContext::new(
                        &row.subject.to_string(),
                        REASON_CONTEXT,
                        &row.id.to_string(),
                    ),
                    sealed,
                )?;
                Some(String::from_utf8_lossy(&plain).into_owned())
            }
            _ => None,
        };
        Ok(NotificationStatus {
            id: row.id,
            kind: row.kind,
            request: row.request,
            subject: row.subject,
            recipient: row.recipient,
            state,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
            settled_at: row.settled_at,
            reason,
        })
    }

    /// A notification as operators see it (no payload; the impossibility reason decrypted).
    pub fn notification_status(
        &self,
        id: NotificationId,
    ) -> Result<NotificationStatus, VaultError> {
        let row = self
            .core
            .data
            .notification(id)?
            .ok_or(VaultError::NotificationNotFound(id))?;
        self.status_of(row)
    }

    /// A request's notifications, in the order they were queued, as operators see them.
    pub fn request_notifications(
        &self,
        request: RequestId,
    ) -> Result<Vec<NotificationStatus>, VaultError> {
        self.core
            .data
            .notifications_of(request)?
            .into_iter()
            .map(|row| self.status_of(row))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_an_hour() {
        let minutes: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn failure_codes_are_kept_only_when_stable() {
        assert_eq!(stable_code("webhook.status_500"), "webhook.status_500");
        assert_eq!(stable_code("Connection refused"), "delivery.failed");
        assert_eq!(stable_code(""), "delivery.failed");
        assert_eq!(stable_code(&"a".repeat(65)), "delivery.failed");
    }
}
