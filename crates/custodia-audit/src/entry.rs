//! [`AuditEntry`]: an event placed in the chain, with its seq and the hashes that link it.

use serde::{Deserialize, Serialize};

use crate::anchor::Anchor;
use crate::canonical::entry_hash;
use crate::event::AuditEvent;

/// One link of the chain, as stored. Backends persist these four fields as given and return
/// them unchanged; [`crate::verify()`] recomputes `hash` from the other three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// The `hash` of the entry at `seq - 1`, or [`crate::GENESIS_HASH`] for seq 1.
    #[serde(with = "crate::hex::serde32")]
    pub prev_hash: [u8; 32],
    /// What happened.
    pub event: AuditEvent,
    /// [`entry_hash`] of `seq`, `prev_hash` and `event`.
    #[serde(with = "crate::hex::serde32")]
    pub hash: [u8; 32],
}

impl AuditEntry {
    /// The hash this entry should have, recomputed from its content.
    pub fn compute_hash(&self) -> [u8; 32] {
        entry_hash(self.seq, &self.prev_hash, &self.event)
    }

    /// Whether the stored hash matches the content. This checks the entry alone, not its link
    /// to the previous one: use [`crate::verify()`] for the chain.
    pub fn is_self_consistent(&self) -> bool {
        self.compute_hash() == self.hash
    }

    /// The anchor naming this entry.
    pub fn anchor(&self) -> Anchor {
        Anchor::new(self.seq, self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::event::EventKind;

    #[test]
    fn serde_round_trip_keeps_the_entry_verifiable() {
        let mut chain = Chain::new();
        let entry = chain.append(
            AuditEvent::new(EventKind::RecordWritten, 7)
                .with_subject("sub_1")
                .with_category("user.contact.phone_number"),
        );
        let json = serde_json::to_string(&entry).unwrap();
        let back: AuditEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entry);
        assert!(back.is_self_consistent());
        assert_eq!(back.anchor(), chain.head());
    }
}
