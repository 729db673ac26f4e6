//! Errors of the audit crate that are not a broken chain, each with a stable code. A broken
//! chain is a [`ChainBreak`], wrapped here so that a caller can carry one error type.

use crate::verify::ChainBreak;

/// Something the audit chain refused, or a [`ChainBreak`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A stored or submitted event kind that this version does not know.
    #[error("unknown audit event kind `{name}`")]
    UnknownEventKind {
        /// The name read; kind names are policy-free identifiers, never personal data.
        name: String,
    },
    /// An anchor string that is not `SEQ:HASH` with a decimal seq and 64 hex digits. The input
    /// is not echoed: it came from outside and could be anything.
    #[error("invalid audit anchor: {reason}; expected SEQ:HASH, a decimal seq and 64 hex digits")]
    InvalidAnchor {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A seq past [`crate::MAX_SEQ`], which storage backends cannot hold in a signed 64-bit
    /// column.
    #[error("audit seq {seq} is beyond the largest storable seq {max}")]
    SeqOutOfRange {
        /// The seq given.
        seq: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A checkpoint that lies before the anchor verification starts from, so no entry read
    /// could confirm it.
    #[error("checkpoint at seq {checkpoint} precedes the verification start at seq {start}")]
    CheckpointBeforeStart {
        /// The checkpoint's seq.
        checkpoint: u64,
        /// The start anchor's seq.
        start: u64,
    },
    /// Verification found a tampered, missing or truncated entry.
    #[error(transparent)]
    ChainBroken(#[from] ChainBreak),
}

impl AuditError {
    /// A stable code for machines.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownEventKind { .. } => "audit.unknown_event_kind",
            Self::InvalidAnchor { .. } => "audit.invalid_anchor",
            Self::SeqOutOfRange { .. } => "audit.seq_out_of_range",
            Self::CheckpointBeforeStart { .. } => "audit.checkpoint_before_start",
            Self::ChainBroken(b) => b.code(),
        }
    }
}
