//! [`Chain`]: the writer's side, which numbers events and links them into entries.
//!
//! A `Chain` is only the head (last seq and hash); it holds no entries. It is `Copy`, so a caller
//! that fails to persist what it appended can keep the value from before the append, or resume
//! from storage again. A backend with several writers (several instances on one PostgreSQL) must
//! serialise appends, for example by reading the head under a row lock in the transaction that
//! inserts, and should put a unique constraint on `seq` so that a lost race fails instead of
//! forking the chain.

use crate::anchor::Anchor;
use crate::canonical::entry_hash_with;
use crate::entry::AuditEntry;
use crate::error::AuditError;
use crate::event::AuditEvent;

/// The largest seq a chain may reach: storage backends keep seq in a signed 64-bit integer
/// (SQLite `INTEGER`, PostgreSQL `BIGINT`).
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The head of a chain, ready to append to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chain {
    head: Anchor,
}

impl Chain {
    /// An empty chain: the first entry will be seq 1 with a zero `prev_hash`.
    pub fn new() -> Self {
        Self {
            head: Anchor::GENESIS,
        }
    }

    /// Continues after the last stored entry, `(seq, hash)`, or from genesis for `None`.
    ///
    /// The values are trusted as given: verify the stored chain (or at least its last entry)
    /// first if it may have been tampered with.
    pub fn resume(last: Option<(u64, [u8; 32])>) -> Result<Self, AuditError> {
        Self::from_anchor(last.map_or(Anchor::GENESIS, Anchor::from))
    }

    /// Continues after `anchor`.
    pub fn from_anchor(anchor: Anchor) -> Result<Self, AuditError> {
        if anchor.seq > MAX_SEQ {
            return Err(AuditError::SeqOutOfRange {
                seq: anchor.seq,
                max: MAX_SEQ,
            });
        }
        Ok(Self { head: anchor })
    }

    /// The last entry's seq and hash, or [`Anchor::GENESIS`] for an empty chain. Written down
    /// outside the database, it later proves the tail was not cut (see
    /// [`crate::verify_against_anchor`]).
    pub fn head(&self) -> Anchor {
        self.head
    }

    /// The seq the next appended entry will get.
    pub fn next_seq(&self) -> u64 {
        // Starting at most at MAX_SEQ (2^63 - 1), reaching u64::MAX would take 2^63 appends;
        // saturating keeps the arithmetic total without a panic path for an impossible case.
        self.head.seq.saturating_add(1)
    }

    /// Links `event` after the head and advances the head.
    pub fn append(&mut self, event: AuditEvent) -> AuditEntry {
        let mut buf = Vec::new();
        self.append_with(event, &mut buf)
    }

    /// Links several events in order, for a group commit: the returned entries are meant to be
    /// persisted together in one transaction.
    pub fn append_batch<I>(&mut self, events: I) -> Vec<AuditEntry>
    where
        I: IntoIterator<Item = AuditEvent>,
    {
        let events = events.into_iter();
        let mut out = Vec::with_capacity(events.size_hint().0);
        let mut buf = Vec::new();
        for event in events {
            out.push(self.append_with(event, &mut buf));
        }
        out
    }

    fn append_with(&mut self, event: AuditEvent, buf: &mut Vec<u8>) -> AuditEntry {
        let seq = self.next_seq();
        let prev_hash = self.head.hash;
        let hash = entry_hash_with(seq, &prev_hash, &event, buf);
        self.head = Anchor::new(seq, hash);
        AuditEntry {
            seq,
            prev_hash,
            event,
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::GENESIS_HASH;
    use crate::event::EventKind;

    fn ev(i: i64) -> AuditEvent {
        AuditEvent::new(EventKind::RecordRead, i).with_subject(format!("sub_{i}"))
    }

    #[test]
    fn first_entry_links_to_genesis() {
        let mut chain = Chain::new();
        assert_eq!(chain.head(), Anchor::GENESIS);
        let e = chain.append(ev(1));
        assert_eq!(e.seq, 1);
        assert_eq!(e.prev_hash, GENESIS_HASH);
        assert!(e.is_self_consistent());
        assert_eq!(chain.head(), e.anchor());
        assert_eq!(chain.next_seq(), 2);
    }

    #[test]
    fn batch_equals_one_by_one() {
        let mut a = Chain::new();
        let mut b = Chain::new();
        let one_by_one: Vec<_> = (0..50).map(|i| a.append(ev(i))).collect();
        let batch = b.append_batch((0..50).map(ev));
        assert_eq!(one_by_one, batch);
        assert_eq!(a, b);
        assert!(b.append_batch(Vec::new()).is_empty());
        assert_eq!(a, b);
    }

    #[test]
    fn resume_continues_where_it_left_off() {
        let mut whole = Chain::new();
        let entries = whole.append_batch((0..10).map(ev));
        let last = entries.last().unwrap();
        let mut resumed = Chain::resume(Some((last.seq, last.hash))).unwrap();
        let mut split = Chain::new();
        split.append_batch((0..10).map(ev));
        assert_eq!(resumed, split);
        assert_eq!(resumed.append(ev(10)), whole.append(ev(10)));
        assert_eq!(Chain::resume(None).unwrap(), Chain::new());
    }

    #[test]
    fn resume_refuses_an_unstorable_seq() {
        assert!(Chain::resume(Some((MAX_SEQ, [1; 32]))).is_ok());
        let err = Chain::resume(Some((MAX_SEQ + 1, [1; 32]))).unwrap_err();
        assert_eq!(err.code(), "audit.seq_out_of_range");
    }

    #[test]
    fn a_failed_commit_can_roll_back_by_copy() {
        let mut chain = Chain::new();
        chain.append(ev(0));
        let before = chain;
        let lost = chain.append_batch((1..5).map(ev));
        assert_eq!(lost.len(), 4);
        chain = before;
        assert_eq!(chain.append(ev(1)).seq, 2);
    }
}
