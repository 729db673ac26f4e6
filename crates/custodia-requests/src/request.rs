//! Data-subject requests: what is asked ([`RequestKind`]), where the request stands
//! ([`RequestState`]), and the one pure function that moves it ([`transition`]).
//!
//! The state machine (every pair not listed is refused):
//!
//! | from | to |
//! |---|---|
//! | `received` | `awaiting_verification`, `verified`, `rejected` |
//! | `awaiting_verification` | `verified`, `rejected` |
//! | `verified` | `in_progress`, `extended`, `rejected` |
//! | `in_progress` | `waiting_on_recipients`, `fulfilled`, `extended`, `rejected` |
//! | `waiting_on_recipients` | `in_progress`, `fulfilled`, `extended` |
//! | `extended` | `in_progress`, `waiting_on_recipients`, `fulfilled`, `rejected` |
//! | `fulfilled`, `rejected` | (terminal) |
//!
//! Design choices:
//! - `extended` ("extended with notice") is a state, not a flag, because the notice is an event
//!   the queue shows. Work continues from it. It can be entered only once the requester is
//!   verified (so leaving it can never skip verification) and only once per request (CCPA
//!   § 1798.130(a)(2) allows one extension; GDPR Art. 12(3) one of up to two months): there is
//!   no `extended → extended`. Whether the notice is still in time is the deadline's business
//!   ([`crate::deadline::Deadlines::extend`]).
//! - A request is verified before work starts; a request from an authenticated session may go
//!   straight from `received` to `verified`.
//! - Once recipients are being told of an erasure or rectification (`waiting_on_recipients`)
//!   the request can no longer be rejected: a recipient that cannot be reached is recorded as
//!   impossible with a reason (design invariant 4) and the request is fulfilled.
//! - A rejection and an extension each need a non-empty reason or notice text.

use std::fmt;
use std::str::FromStr;

use custodia_policy::model::{Right, Rights};
use serde::{Deserialize, Serialize};

/// What a data subject asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// See what is held (PIPL Art. 45, GDPR Art. 15, CCPA § 1798.110).
    Access,
    /// A copy of it (PIPL Art. 45, GDPR Art. 15(3)).
    Copy,
    /// A machine-readable export, or a transfer to another handler (PIPL Art. 45, GDPR Art. 20).
    Portability,
    /// Correct or complete it (PIPL Art. 46, GDPR Art. 16, CCPA § 1798.106).
    Rectification,
    /// Delete it (PIPL Art. 47, GDPR Art. 17, CCPA § 1798.105).
    Erasure,
    /// Restrict processing (PIPL Art. 44, GDPR Art. 18).
    Restriction,
    /// Object to processing (GDPR Art. 21).
    Objection,
    /// Withdraw a consent (PIPL Art. 15, GDPR Art. 7(3)).
    ConsentWithdrawal,
    /// Cancel the account.
    AccountCancellation,
    /// Explain an automated decision (PIPL Art. 24, 48, GDPR Art. 22).
    Explanation,
}

impl RequestKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 10] = [
        Self::Access,
        Self::Copy,
        Self::Portability,
        Self::Rectification,
        Self::Erasure,
        Self::Restriction,
        Self::Objection,
        Self::ConsentWithdrawal,
        Self::AccountCancellation,
        Self::Explanation,
    ];

    /// The stable name: `access`, `consent_withdrawal`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Copy => "copy",
            Self::Portability => "portability",
            Self::Rectification => "rectification",
            Self::Erasure => "erasure",
            Self::Restriction => "restriction",
            Self::Objection => "objection",
            Self::ConsentWithdrawal => "consent_withdrawal",
            Self::AccountCancellation => "account_cancellation",
            Self::Explanation => "explanation",
        }
    }

    /// The kind of that stable name.
    pub fn parse(text: &str) -> Result<Self, RequestParseError> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| RequestParseError::UnknownKind {
                input: text.to_owned(),
            })
    }

    /// The policy right this request exercises.
    pub fn right(self) -> Right {
        match self {
            Self::Access => Right::Access,
            Self::Copy => Right::Copy,
            Self::Portability => Right::Portability,
            Self::Rectification => Right::Rectification,
            Self::Erasure => Right::Erasure,
            Self::Restriction => Right::Restriction,
            Self::Objection => Right::Objection,
            Self::ConsentWithdrawal => Right::WithdrawConsent,
            Self::AccountCancellation => Right::AccountCancellation,
            Self::Explanation => Right::Explanation,
        }
    }

    /// The request kind that exercises `right`; `None` for rights that are not requests handled
    /// here (complaints, CCPA opt-out of sale).
    pub fn from_right(right: Right) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.right() == right)
    }

    /// Whether the request is about receiving the data (access, copy, portability): the kinds
    /// the CCPA's twice-in-12-months rule counts.
    pub fn is_access_like(self) -> bool {
        matches!(self, Self::Access | Self::Copy | Self::Portability)
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestKind {
    type Err = RequestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Whether the policy's `[rights]` offers the right `kind` exercises. A request of a kind the
/// policy does not offer may be refused. The match is exact: offering `access` does not offer
/// `copy` or `portability`.
pub fn offered(policy_rights: &Rights, kind: RequestKind) -> bool {
    offered_in(
        policy_rights.offered.iter().map(|right| *right.get_ref()),
        kind,
    )
}

/// [`offered`] over a plain list of rights.
pub fn offered_in(rights: impl IntoIterator<Item = Right>, kind: RequestKind) -> bool {
    let wanted = kind.right();
    rights.into_iter().any(|right| right == wanted)
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Received, nothing done yet. The deadline runs from here.
    Received,
    /// The requester has been asked to prove who they are.
    AwaitingVerification,
    /// The requester's identity is verified.
    Verified,
    /// Being worked on.
    InProgress,
    /// Done here; waiting for the recipients of the data to confirm (erasure, rectification).
    WaitingOnRecipients,
    /// The deadline was extended with a notice to the requester; work continues.
    Extended,
    /// Answered and done. Terminal.
    Fulfilled,
    /// Refused, with a reason. Terminal.
    Rejected,
}

impl RequestState {
    /// Every state, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::Received,
        Self::AwaitingVerification,
        Self::Verified,
        Self::InProgress,
        Self::WaitingOnRecipients,
        Self::Extended,
        Self::Fulfilled,
        Self::Rejected,
    ];

    /// The stable name: `received`, `awaiting_verification`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::AwaitingVerification => "awaiting_verification",
            Self::Verified => "verified",
            Self::InProgress => "in_progress",
            Self::WaitingOnRecipients => "waiting_on_recipients",
            Self::Extended => "extended",
            Self::Fulfilled => "fulfilled",
            Self::Rejected => "rejected",
        }
    }

    /// The state of that stable name.
    pub fn parse(text: &str) -> Result<Self, RequestParseError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| RequestParseError::UnknownState {
                input: text.to_owned(),
            })
    }

    /// Whether the request is closed (fulfilled or rejected).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Fulfilled | Self::Rejected)
    }

    /// The states this one may move to (the module's table).
    pub fn allowed_next(self) -> &'static [Self] {
        use RequestState::*;
        match self {
            Received => &[AwaitingVerification, Verified, Rejected],
            AwaitingVerification => &[Verified, Rejected],
            Verified => &[InProgress, Extended, Rejected],
            InProgress => &[WaitingOnRecipients, Fulfilled, Extended, Rejected],
            WaitingOnRecipients => &[InProgress, Fulfilled, Extended],
            Extended => &[InProgress, WaitingOnRecipients, Fulfilled, Rejected],
            Fulfilled | Rejected => &[],
        }
    }

    /// Whether `self → to` is in the table.
    pub fn can_move_to(self, to: Self) -> bool {
        self.allowed_next().contains(&to)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = RequestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// What the operator (or the engine) does to a request. Each action leads to one state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Ask the requester to prove their identity.
    RequestVerification,
    /// Record that the identity is verified.
    Verify,
    /// Start the work.
    Start,
    /// The work is done here; wait for the recipients to confirm.
    WaitOnRecipients,
    /// The request is answered.
    Fulfil,
    /// Refuse the request.
    Reject {
        /// Why, as told to the requester (right not offered, identity not verified, manifestly
        /// excessive, ...). Must not be empty.
        reason: String,
    },
    /// Extend the deadline.
    Extend {
        /// The notice sent to the requester, with the reasons for the delay. Must not be empty.
        notice: String,
    },
}

impl Action {
    /// The stable name: `request_verification`, `verify`, `start`, `wait_on_recipients`,
    /// `fulfil`, `reject`, `extend`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::RequestVerification => "request_verification",
            Self::Verify => "verify",
            Self::Start => "start",
            Self::WaitOnRecipients => "wait_on_recipients",
            Self::Fulfil => "fulfil",
            Self::Reject { .. } => "reject",
            Self::Extend { .. } => "extend",
        }
    }

    /// The state the action leads to.
    pub fn target(&self) -> RequestState {
        match self {
            Self::RequestVerification => RequestState::AwaitingVerification,
            Self::Verify => RequestState::Verified,
            Self::Start => RequestState::InProgress,
            Self::WaitOnRecipients => RequestState::WaitingOnRecipients,
            Self::Fulfil => RequestState::Fulfilled,
            Self::Reject { .. } => RequestState::Rejected,
            Self::Extend { .. } => RequestState::Extended,
        }
    }
}

/// A kind or state name that is not one of the stable names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestParseError {
    /// Not a [`RequestKind`] name.
    #[error("unknown request kind {input:?}")]
    UnknownKind {
        /// The text refused.
        input: String,
    },
    /// Not a [`RequestState`] name.
    #[error("unknown request state {input:?}")]
    UnknownState {
        /// The text refused.
        input: String,
    },
}

impl RequestParseError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownKind { .. } => "request.unknown_kind",
            Self::UnknownState { .. } => "request.unknown_state",
        }
    }
}

/// Why an action cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The request is already fulfilled or rejected.
    #[error("the request is already closed ({state})")]
    AlreadyClosed {
        /// Its terminal state.
        state: RequestState,
    },
    /// The move is not in the state machine's table.
    #[error("a request cannot move from {from} to {to}")]
    Invalid {
        /// The current state.
        from: RequestState,
        /// The state the action leads to.
        to: RequestState,
    },
    /// A rejection without a reason.
    #[error("a rejection needs a reason")]
    ReasonRequired,
    /// An extension without a notice.
    #[error("an extension needs the notice sent to the requester")]
    NoticeRequired,
}

impl TransitionError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyClosed { .. } => "request.already_closed",
            Self::Invalid { .. } => "request.invalid_transition",
            Self::ReasonRequired => "request.reason_required",
            Self::NoticeRequired => "request.notice_required",
        }
    }
}

/// The state after applying `action` to a request in `state`, or why it cannot be applied.
pub fn transition(state: RequestState, action: &Action) -> Result<RequestState, TransitionError> {
    if state.is_terminal() {
        return Err(TransitionError::AlreadyClosed { state });
    }
    let to = action.target();
    if !state.can_move_to(to) {
        return Err(TransitionError::Invalid { from: state, to });
    }
    match action {
        Action::Reject { reason } if reason.trim().is_empty() => {
            Err(TransitionError::ReasonRequired)
        }
        Action::Extend { notice } if notice.trim().is_empty() => {
            Err(TransitionError::NoticeRequired)
        }
        _ => Ok(to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions() -> Vec<Action> {
        vec![
            Action::RequestVerification,
            Action::Verify,
            Action::Start,
            Action::WaitOnRecipients,
            Action::Fulfil,
            Action::Reject {
                reason: "identity could not be verified".into(),
            },
            Action::Extend {
                notice: "complex request, answer by 2026-04-30".into(),
            },
        ]
    }

    /// The table written out independently of `allowed_next`.
    const ALLOWED: &[(RequestState, RequestState)] = {
        use RequestState::*;
        &[
            (Received, AwaitingVerification),
            (Received, Verified),
            (Received, Rejected),
            (AwaitingVerification, Verified),
            (AwaitingVerification, Rejected),
            (Verified, InProgress),
            (Verified, Extended),
            (Verified, Rejected),
            (InProgress, WaitingOnRecipients),
            (InProgress, Fulfilled),
            (InProgress, Extended),
            (InProgress, Rejected),
            (WaitingOnRecipients, InProgress),
            (WaitingOnRecipients, Fulfilled),
            (WaitingOnRecipients, Extended),
            (Extended, InProgress),
            (Extended, WaitingOnRecipients),
            (Extended, Fulfilled),
            (Extended, Rejected),
        ]
    };

    #[test]
    fn every_state_and_action_pair() {
        let mut allowed_seen = 0;
        for from in RequestState::ALL {
            for action in actions() {
                let to = action.target();
                let result = transition(from, &action);
                if from.is_terminal() {
                    let err = result.unwrap_err();
                    assert_eq!(err, TransitionError::AlreadyClosed { state: from });
                    assert_eq!(err.code(), "request.already_closed");
                } else if ALLOWED.contains(&(from, to)) {
                    assert_eq!(result, Ok(to), "{from} -> {to}");
                    allowed_seen += 1;
                } else {
                    let err = result.unwrap_err();
                    assert_eq!(err, TransitionError::Invalid { from, to }, "{from} -> {to}");
                    assert_eq!(err.code(), "request.invalid_transition");
                    assert_eq!(
                        err.to_string(),
                        format!("a request cannot move from {from} to {to}")
                    );
                }
            }
        }
        assert_eq!(allowed_seen, ALLOWED.len());
        // Every target state is reached by exactly one action, so the pairs above cover every
        // (state, state) pair that can be asked for.
        let mut targets: Vec<_> = actions().iter().map(Action::target).collect();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), actions().len());
        assert!(!targets.contains(&RequestState::Received));
    }

    #[test]
    fn terminal_states_and_the_table_agree() {
        for state in RequestState::ALL {
            assert_eq!(state.is_terminal(), state.allowed_next().is_empty());
            for to in RequestState::ALL {
                assert_eq!(state.can_move_to(to), ALLOWED.contains(&(state, to)));
            }
        }
    }

    #[test]
    fn a_rejection_needs_a_reason_and_an_extension_a_notice() {
        let err = transition(
            RequestState::InProgress,
            &Action::Reject {
                reason: "  ".into(),
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "request.reason_required");
        let err = transition(
            RequestState::Verified,
            &Action::Extend {
                notice: String::new(),
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "request.notice_required");
        // An invalid move is reported as such even without a notice.
        let err = transition(
            RequestState::Extended,
            &Action::Extend {
                notice: String::new(),
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "request.invalid_transition");
    }

    #[test]
    fn stable_names_round_trip() {
        for kind in RequestKind::ALL {
            assert_eq!(RequestKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(kind.to_string().parse::<RequestKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
            assert_eq!(RequestKind::from_right(kind.right()), Some(kind));
        }
        for state in RequestState::ALL {
            assert_eq!(RequestState::parse(state.as_str()), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        let err = RequestKind::parse("Access").unwrap_err();
        assert_eq!(err.code(), "request.unknown_kind");
        let err = RequestState::parse("closed").unwrap_err();
        assert_eq!(err.code(), "request.unknown_state");
        assert_eq!(RequestKind::from_right(Right::Complaint), None);
        assert_eq!(RequestKind::from_right(Right::OptOutOfSale), None);
        let names: Vec<_> = actions().iter().map(Action::as_str).collect();
        assert_eq!(
            names,
            [
                "request_verification",
                "verify",
                "start",
                "wait_on_recipients",
                "fulfil",
                "reject",
                "extend"
            ]
        );
    }

    #[test]
    fn only_offered_rights_are_offered() {
        let rights = [Right::Access, Right::Erasure, Right::WithdrawConsent];
        assert!(offered_in(rights, RequestKind::Access));
        assert!(offered_in(rights, RequestKind::ConsentWithdrawal));
        assert!(!offered_in(rights, RequestKind::Copy));
        assert!(!offered_in(rights, RequestKind::Explanation));
        assert!(!offered_in([], RequestKind::Erasure));
    }

    #[test]
    fn offered_reads_the_policy_file() {
        let source = custodia_policy::Source::new(
            "audio-extract-kit.toml",
            include_str!("../../../examples/audio-extract-kit.toml"),
        );
        let policy = source.parse().unwrap();
        assert!(offered(&policy.rights, RequestKind::Copy));
        assert!(offered(&policy.rights, RequestKind::ConsentWithdrawal));
        assert!(!offered(&policy.rights, RequestKind::Portability));
        assert!(!offered(&policy.rights, RequestKind::Explanation));
    }
}
