//! What happened: [`AuditEvent`] and its [`EventKind`].
//!
//! An event carries pseudonymous identifiers only (invariant 1): an API key id, a subject's opaque
//! token, a record id, policy keys and reason codes. It never carries a value, a name, an e-mail
//! address or an external user id, because the audit log outlives crypto-shredding: whatever is
//! written here survives the erasure of the subject it describes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::AuditError;

/// Declares [`EventKind`] from one list so that the variant, its stable name, serde, parsing and
/// [`EventKind::ALL`] cannot disagree. Adding a kind is one line here; renaming one would change
/// the hash of every stored event of that kind, so names are never changed once released.
macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )+) => {
        /// The kind of an audited event. Its [`name`](EventKind::as_str) is part of the
        /// canonical encoding and therefore of every hash: names are stable forever.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )+
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            /// The stable snake_case name, as stored, serialised and hashed.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }
        }

        impl FromStr for EventKind {
            type Err = AuditError;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $($name => Ok(EventKind::$variant),)+
                    _ => Err(AuditError::UnknownEventKind { name: name.to_owned() }),
                }
            }
        }
    };
}

event_kinds! {
    /// A subject was registered.
    SubjectCreated => "subject_created",
    /// A record was stored for a subject.
    RecordWritten => "record_written",
    /// A record was read, for a purpose, after the gate allowed it.
    RecordRead => "record_read",
    /// A record was deleted.
    RecordDeleted => "record_deleted",
    /// A subject's key was destroyed and their data erased.
    SubjectErased => "subject_erased",
    /// A subject key was created.
    KeyCreated => "key_created",
    /// A key was rotated.
    KeyRotated => "key_rotated",
    /// A key was destroyed (crypto-shredding).
    KeyDestroyed => "key_destroyed",
    /// An epoch key was created.
    EpochCreated => "epoch_created",
    /// An epoch key was destroyed, erasing the backups it protected.
    EpochDestroyed => "epoch_destroyed",
    /// The gate decided on an access; `outcome` and `reasons` say how and why.
    Decision => "decision",
    /// A consent event was recorded.
    ConsentRecorded => "consent_recorded",
    /// A policy version was published.
    PolicyPublished => "policy_published",
    /// The retention sweeper deleted data; `rule` names the retention rule.
    RetentionDeleted => "retention_deleted",
    /// A media object was stored.
    MediaStored => "media_stored",
    /// A media object was deleted.
    MediaDeleted => "media_deleted",
    /// A data-subject request changed state.
    RequestTransition => "request_transition",
    /// Data was handed to a processor or an authority.
    DisclosureRecorded => "disclosure_recorded",
    /// A legal hold was placed: matching records are kept past their expiry.
    HoldPlaced => "hold_placed",
    /// A legal hold was released: the sweeper deletes what it kept.
    HoldReleased => "hold_released",
    /// A message was queued in the outbox: an erasure notice to a recipient, a verification
    /// code for the subject (`record` names the notification, `outcome` its kind and recipient).
    NotificationQueued => "notification_queued",
    /// An outbox delivery attempt ended: `outcome` is `delivered`, `retry` or `failed` (given up),
    /// `reasons` the failure's code.
    NotificationDelivery => "notification_delivery",
    /// A notification was settled: acknowledged by its recipient, or marked impossible.
    NotificationSettled => "notification_settled",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audited event: what happened, when, by whom, to which pseudonymous subject, and why.
///
/// Every field takes part in the hash, so a storage backend must give back exactly what it was
/// given: the same strings, `None` kept distinct from `Some("")`, `reasons` in the same order.
/// Unknown fields are refused when deserialising: silently dropping one would make an intact
/// entry look tampered with, which is worse than a clear error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// What happened.
    pub kind: EventKind,
    /// When, in Unix milliseconds UTC, from the caller's clock (time is injected).
    pub at: i64,
    /// Who acted: an API key id, or `system` for the engine's own jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The subject concerned, as a pseudonymous opaque token, never the app's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A policy category key, such as `user.biometric.voice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// A policy purpose key, such as `ai_transcription`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// An opaque record or media id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The result, such as `allow` or `deny` for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Machine-readable reason codes; order is significant (it is hashed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The rule applied, such as a retention rule id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` at `at` (Unix milliseconds) with every other field empty.
    pub fn new(kind: EventKind, at: i64) -> Self {
        Self {
            kind,
            at,
            actor: None,
            subject: None,
            category: None,
            purpose: None,
            record: None,
            outcome: None,
            reasons: Vec::new(),
            rule: None,
        }
    }

    /// Sets the actor.
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the pseudonymous subject id.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the category key.
    #[must_use]
    pub fn with_category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Sets the purpose key.
    #[must_use]
    pub fn with_purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }

    /// Sets the record id.
    #[must_use]
    pub fn with_record(mut self, record: impl Into<String>) -> Self {
        self.record = Some(record.into());
        self
    }

    /// Sets the outcome.
    #[must_use]
    pub fn with_outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = Some(outcome.into());
        self
    }

    /// Appends one reason code.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reasons.push(reason.into());
        self
    }

    /// Appends several reason codes, in order.
    #[must_use]
    pub fn with_reasons<I, S>(mut self, reasons: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.reasons.extend(reasons.into_iter().map(Into::into));
        self
    }

    /// Sets the rule id.
    #[must_use]
    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn kind_names_are_unique_snake_case_and_round_trip() {
        let mut seen = HashSet::new();
        for kind in EventKind::ALL {
            let name = kind.as_str();
            assert!(seen.insert(name), "duplicate name {name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name} is not snake_case"
            );
            assert_eq!(name.parse::<EventKind>().unwrap(), *kind);
            assert_eq!(serde_json::to_string(kind).unwrap(), format!("\"{name}\""));
            assert_eq!(kind.to_string(), name);
        }
        assert_eq!(EventKind::ALL.len(), 23);
    }

    #[test]
    fn unknown_kind_is_a_coded_error() {
        let err = "record_edited".parse::<EventKind>().unwrap_err();
        assert_eq!(err.code(), "audit.unknown_event_kind");
    }

    #[test]
    fn serde_keeps_none_and_empty_apart_and_refuses_unknown_fields() {
        let event = AuditEvent::new(EventKind::Decision, 1)
            .with_subject("")
            .with_reasons(["consent_missing", "minor"]);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"decision","at":1,"subject":"","reasons":["consent_missing","minor"]}"#
        );
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.actor, None);

        let extra = r#"{"kind":"decision","at":1,"email":"a@b.c"}"#;
        assert!(serde_json::from_str::<AuditEvent>(extra).is_err());
    }
}
