//! Verification: reading a chain back and naming the first entry that does not hold.
//!
//! Verification streams: it keeps the previous entry's seq and hash and one scratch buffer, so
//! memory is constant and time linear whatever the chain's length. [`Verifier`] is the
//! push-based form, for a backend that reads rows fallibly; [`verify`], [`verify_from`] and
//! [`verify_against_anchor`] drive it over an iterator.
//!
//! Each entry is checked in this order, and the first failure is reported:
//!
//! 1. its seq is the one expected next ([`BreakKind::SeqGap`] if larger: entries are missing;
//!    [`BreakKind::SeqOutOfOrder`] if smaller: a duplicate, an insertion or a reordering);
//! 2. its `prev_hash` is the previous entry's hash ([`BreakKind::PrevHashMismatch`]: something
//!    before it was replaced, or it was moved);
//! 3. its hash recomputes from its content ([`BreakKind::HashMismatch`]: the event, seq,
//!    `prev_hash` or the hash itself was edited).
//!
//! [`ChainBreak::seq`] is the chain position where verification failed, that is the seq the
//! entry read *should* have had; for checks 2 and 3 that is also the entry's own seq. So
//! removing entry 500 breaks at 500 (found 501), and editing entry 500 breaks at 500.
//!
//! What a hash chain cannot show on its own: a removed *tail* leaves a shorter chain that is
//! perfectly valid, and anyone able to write the table can rewrite an entry and recompute every
//! hash after it. Both are caught only by comparing with a head recorded elsewhere earlier, an
//! [`Anchor`], through [`verify_against_anchor`] or [`Verifier::with_checkpoint`].

use std::borrow::Borrow;
use std::fmt;

use serde::Serialize;

use crate::anchor::Anchor;
use crate::canonical::entry_hash_with;
use crate::entry::AuditEntry;
use crate::error::AuditError;
use crate::hex;

/// What verification established about a chain that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// How many entries were read and verified (the start anchor not included).
    pub entries: u64,
    /// The seq of the last entry, or the start anchor's seq when there were none.
    pub last_seq: u64,
    /// The hash of the last entry, or the start anchor's hash when there were none.
    #[serde(with = "crate::hex::serde32")]
    pub head_hash: [u8; 32],
}

impl VerifyReport {
    /// The verified head, to record as the anchor of a later verification.
    pub fn head(&self) -> Anchor {
        Anchor::new(self.last_seq, self.head_hash)
    }
}

/// How the chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// An entry's seq is past the one expected: entries before it were removed or moved.
    SeqGap,
    /// An entry's seq is at or before one already read: a duplicate, insertion or reordering.
    SeqOutOfOrder,
    /// An entry's `prev_hash` is not the previous entry's hash.
    PrevHashMismatch,
    /// An entry's stored hash does not match its content.
    HashMismatch,
    /// The chain ends before the seq of the anchor it was checked against: its tail is gone.
    Truncated,
    /// The entry at the anchor's seq has a different hash: history was rewritten.
    AnchorMismatch,
}

impl BreakKind {
    /// The stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SeqGap => "seq_gap",
            Self::SeqOutOfOrder => "seq_out_of_order",
            Self::PrevHashMismatch => "prev_hash_mismatch",
            Self::HashMismatch => "hash_mismatch",
            Self::Truncated => "truncated",
            Self::AnchorMismatch => "anchor_mismatch",
        }
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first point where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("audit chain broken at seq {seq} ({kind}): {message}")]
pub struct ChainBreak {
    /// The chain position that failed: the seq the offending entry should have had.
    pub seq: u64,
    /// How.
    pub kind: BreakKind,
    /// A sentence for the operator, with the seqs and hashes involved (never event content).
    pub message: String,
}

impl ChainBreak {
    /// A stable code for machines; [`ChainBreak::kind`] says more.
    pub fn code(&self) -> &'static str {
        "audit.chain_broken"
    }
}

/// Push-based streaming verifier. Feed entries in seq order, then call [`Verifier::finish`].
///
/// After the first break every further [`push`](Verifier::push) and the final
/// [`finish`](Verifier::finish) return that same break, so ignoring one error cannot turn into a
/// report of success.
#[derive(Debug, Clone)]
pub struct Verifier {
    head: Anchor,
    entries: u64,
    checkpoint: Option<Anchor>,
    broken: Option<ChainBreak>,
    buf: Vec<u8>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// Verifies a whole chain, from genesis.
    pub fn new() -> Self {
        Self::from_anchor(Anchor::GENESIS)
    }

    /// Verifies the suffix after a trusted `anchor`: the first entry pushed must be
    /// `anchor.seq + 1` with `prev_hash == anchor.hash`.
    pub fn from_anchor(anchor: Anchor) -> Self {
        Self {
            head: anchor,
            entries: 0,
            checkpoint: None,
            broken: None,
            buf: Vec::new(),
        }
    }

    /// Also requires the chain to pass through `checkpoint`, a head recorded earlier: the entry
    /// at its seq must exist and have its hash. Detects a removed tail and a rewritten history.
    pub fn with_checkpoint(mut self, checkpoint: Anchor) -> Result<Self, AuditError> {
        if checkpoint.seq < self.head.seq {
            return Err(AuditError::CheckpointBeforeStart {
                checkpoint: checkpoint.seq,
                start: self.head.seq,
            });
        }
        self.checkpoint = Some(checkpoint);
        Ok(self)
    }

    /// The last verified point.
    pub fn head(&self) -> Anchor {
        self.head
    }

    /// Verifies the next entry.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        let result = self.check_checkpoint().and_then(|()| self.check(entry));
        if let Err(b) = &result {
            self.broken = Some(b.clone());
        }
        result
    }

    /// Ends verification: checks that the checkpoint, if any, was reached and reports.
    pub fn finish(mut self) -> Result<VerifyReport, ChainBreak> {
        if let Some(b) = self.broken {
            return Err(b);
        }
        self.check_checkpoint()?;
        if let Some(cp) = self.checkpoint {
            // check_checkpoint clears it once its seq is reached, so it lies past the end.
            return Err(ChainBreak {
                seq: self.head.seq.saturating_add(1),
                kind: BreakKind::Truncated,
                message: format!(
                    "the chain ends at seq {} but the anchor {} records seq {}: its tail was \
                     removed",
                    self.head.seq, cp, cp.seq
                ),
            });
        }
        Ok(VerifyReport {
            entries: self.entries,
            last_seq: self.head.seq,
            head_hash: self.head.hash,
        })
    }

    fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let expected = self.head.seq.saturating_add(1);
        if entry.seq != expected {
            let (kind, why) = if entry.seq > expected {
                (
                    BreakKind::SeqGap,
                    "entries before it are missing (removed, or moved later)",
                )
            } else {
                (
                    BreakKind::SeqOutOfOrder,
                    "a duplicate, inserted or reordered entry",
                )
            };
            return Err(ChainBreak {
                seq: expected,
                kind,
                message: format!("expected seq {expected}, found seq {}: {why}", entry.seq),
            });
        }
        if entry.prev_hash != self.head.hash {
            return Err(ChainBreak {
                seq: expected,
                kind: BreakKind::PrevHashMismatch,
                message: format!(
                    "prev_hash {} is not the hash {} of seq {}: an entry before it was replaced, \
                     or this one was moved",
                    hex::encode(&entry.prev_hash),
                    self.head.hash_hex(),
                    self.head.seq
                ),
            });
        }
        let hash = entry_hash_with(entry.seq, &entry.prev_hash, &entry.event, &mut self.buf);
        if hash != entry.hash {
            return Err(ChainBreak {
                seq: expected,
                kind: BreakKind::HashMismatch,
                message: format!(
                    "stored hash {} does not match the recomputed {}: the entry was edited",
                    hex::encode(&entry.hash),
                    hex::encode(&hash)
                ),
            });
        }
        self.head = entry.anchor();
        self.entries = self.entries.saturating_add(1);
        self.check_checkpoint()
    }

    /// Compares the head with the checkpoint once the head reaches its seq.
    fn check_checkpoint(&mut self) -> Result<(), ChainBreak> {
        match self.checkpoint {
            Some(cp) if cp.seq == self.head.seq => {
                if cp.hash != self.head.hash {
                    return Err(ChainBreak {
                        seq: cp.seq,
                        kind: BreakKind::AnchorMismatch,
                        message: format!(
                            "the entry at seq {} has hash {}, the anchor records {}: history was \
                             rewritten",
                            cp.seq,
                            self.head.hash_hex(),
                            cp.hash_hex()
                        ),
                    });
                }
                self.checkpoint = None;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn run<I>(mut self, entries: I) -> Result<VerifyReport, ChainBreak>
    where
        I: IntoIterator,
        I::Item: Borrow<AuditEntry>,
    {
        for entry in entries {
            self.push(entry.borrow())?;
        }
        self.finish()
    }
}

/// Verifies a whole chain from genesis, in seq order.
pub fn verify<I>(entries: I) -> Result<VerifyReport, ChainBreak>
where
    I: IntoIterator,
    I::Item: Borrow<AuditEntry>,
{
    Verifier::new().run(entries)
}

/// Verifies the entries after a trusted `anchor`, such as the head of an earlier verification.
pub fn verify_from<I>(anchor: Anchor, entries: I) -> Result<VerifyReport, ChainBreak>
where
    I: IntoIterator,
    I::Item: Borrow<AuditEntry>,
{
    Verifier::from_anchor(anchor).run(entries)
}

/// Verifies a whole chain from genesis and that it still passes through `anchor`, a head
/// recorded outside the database earlier: a tail cut below it is [`BreakKind::Truncated`], a
/// history rewritten up to it is [`BreakKind::AnchorMismatch`] (or an earlier break).
pub fn verify_against_anchor<I>(entries: I, anchor: Anchor) -> Result<VerifyReport, ChainBreak>
where
    I: IntoIterator,
    I::Item: Borrow<AuditEntry>,
{
    // From genesis every checkpoint is at or after the start, so with_checkpoint's only
    // refusal cannot happen; the field is set directly rather than mapping an impossible error.
    let mut verifier = Verifier::new();
    verifier.checkpoint = Some(anchor);
    verifier.run(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{GENESIS_HASH, entry_hash};
    use crate::chain::Chain;
    use crate::event::{AuditEvent, EventKind};

    const N: u64 = 10_000;

    fn event(i: u64) -> AuditEvent {
        let kind = EventKind::ALL[i as usize % EventKind::ALL.len()];
        let mut e = AuditEvent::new(kind, 1_750_000_000_000 + i as i64)
            .with_actor(if i.is_multiple_of(7) {
                "system"
            } else {
                "key_01"
            })
            .with_subject(format!("sub_{:06}", i % 997))
            .with_category("user.content.audio_recording")
            .with_purpose("ai_transcription");
        if kind == EventKind::Decision {
            e = e.with_outcome("deny").with_reasons(["consent_missing"]);
        }
        e
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut c = Chain::new();
        c.append_batch((1..=n).map(event))
    }

    /// Index of the entry with `seq` in a chain built from genesis.
    fn at(seq: u64) -> usize {
        (seq - 1) as usize
    }

    fn broken(entries: &[AuditEntry]) -> ChainBreak {
        verify(entries).unwrap_err()
    }

    #[test]
    fn ten_thousand_entries_verify() {
        let entries = chain(N);
        let mut c = Chain::new();
        for e in &entries[..10] {
            assert_eq!(c.append(e.event.clone()), *e);
        }
        let report = verify(&entries).unwrap();
        assert_eq!(report.entries, N);
        assert_eq!(report.last_seq, N);
        assert_eq!(report.head_hash, entries[at(N)].hash);
        // Owned items stream as well as borrowed ones.
        assert_eq!(verify(entries.into_iter()).unwrap(), report);
    }

    #[test]
    fn empty_chain_verifies_to_genesis() {
        let report = verify(Vec::<AuditEntry>::new()).unwrap();
        assert_eq!(report.entries, 0);
        assert_eq!(report.head(), Anchor::GENESIS);
    }

    #[test]
    fn edited_event_breaks_at_that_entry() {
        let mut entries = chain(1_000);
        entries[at(500)].event.outcome = Some("allow".to_owned());
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::HashMismatch));
        assert_eq!(b.code(), "audit.chain_broken");
    }

    #[test]
    fn every_field_edit_is_detected() {
        let edits: Vec<fn(&mut AuditEvent)> = vec![
            |e| e.kind = EventKind::RecordDeleted,
            |e| e.at += 1,
            |e| e.actor = None,
            |e| e.subject = Some("sub_other".to_owned()),
            |e| e.category = Some(String::new()),
            |e| e.purpose = Some("account".to_owned()),
            |e| e.record = Some("rec_1".to_owned()),
            |e| e.outcome = Some("allow".to_owned()),
            |e| e.reasons.push("x".to_owned()),
            |e| e.rule = Some("r1".to_owned()),
        ];
        let clean = chain(600);
        for edit in edits {
            let mut entries = clean.clone();
            edit(&mut entries[at(500)].event);
            let b = broken(&entries);
            assert_eq!((b.seq, b.kind), (500, BreakKind::HashMismatch));
        }
    }

    #[test]
    fn edited_event_with_recomputed_hash_breaks_at_the_next_entry() {
        let mut entries = chain(1_000);
        let e = &mut entries[at(500)];
        e.event.subject = Some("sub_forged".to_owned());
        e.hash = e.compute_hash();
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (501, BreakKind::PrevHashMismatch));
    }

    #[test]
    fn removed_entry_breaks_at_its_seq() {
        let mut entries = chain(1_000);
        entries.remove(at(500));
        let b = broken(&entries);
        // The position that failed is the missing one, 500; the message names the 501 found.
        assert_eq!((b.seq, b.kind), (500, BreakKind::SeqGap));
        assert!(b.message.contains("found seq 501"), "{}", b.message);
    }

    #[test]
    fn removed_and_renumbered_breaks_at_the_gap() {
        let mut entries = chain(1_000);
        entries.remove(at(500));
        for e in &mut entries[at(500)..] {
            e.seq -= 1;
        }
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::PrevHashMismatch));
    }

    #[test]
    fn inserted_duplicate_breaks_where_it_sits() {
        let mut entries = chain(1_000);
        let copy = entries[at(499)].clone();
        entries.insert(at(500), copy);
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::SeqOutOfOrder));
    }

    #[test]
    fn inserted_forgery_with_valid_hashes_breaks_at_the_genuine_successor() {
        // A forger who knows the format builds a correct entry 501 after 500. It verifies on its
        // own; the break shows when the genuine 501 follows it, at position 502.
        let mut entries = chain(1_000);
        let mut forger = Chain::resume(Some((500, entries[at(500)].hash))).unwrap();
        let forged = forger.append(AuditEvent::new(EventKind::ConsentRecorded, 0));
        entries.insert(at(501), forged);
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (502, BreakKind::SeqOutOfOrder));
    }

    #[test]
    fn inserted_and_renumbered_breaks_after_the_insertion() {
        let mut entries = chain(1_000);
        let mut forger = Chain::resume(Some((499, entries[at(499)].hash))).unwrap();
        let forged = forger.append(AuditEvent::new(EventKind::ConsentRecorded, 0));
        entries.insert(at(500), forged);
        for e in &mut entries[at(501)..] {
            e.seq += 1;
        }
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (501, BreakKind::PrevHashMismatch));
    }

    #[test]
    fn swapped_entries_break_at_the_first_of_them() {
        let mut entries = chain(1_000);
        entries.swap(at(500), at(501));
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::SeqGap));

        // Rows swapped but renumbered, as `ORDER BY seq` would read them back.
        let mut entries = chain(1_000);
        entries.swap(at(500), at(501));
        entries[at(500)].seq = 500;
        entries[at(501)].seq = 501;
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::PrevHashMismatch));

        // Only the events swapped, seqs and hashes left in place.
        let mut entries = chain(1_000);
        let tmp = entries[at(500)].event.clone();
        entries[at(500)].event = entries[at(501)].event.clone();
        entries[at(501)].event = tmp;
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::HashMismatch));
    }

    #[test]
    fn changed_stored_hash_breaks_at_that_entry() {
        let mut entries = chain(1_000);
        entries[at(500)].hash[0] ^= 1;
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::HashMismatch));

        // The last entry has no successor to catch it; its own recomputation does.
        let mut entries = chain(1_000);
        entries[at(1_000)].hash[31] ^= 0x80;
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (1_000, BreakKind::HashMismatch));
    }

    #[test]
    fn changed_prev_hash_or_seq_is_detected() {
        let mut entries = chain(1_000);
        entries[at(500)].prev_hash[5] ^= 1;
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (500, BreakKind::PrevHashMismatch));

        let mut entries = chain(1_000);
        entries[0].prev_hash = [1; 32];
        let b = broken(&entries);
        assert_eq!((b.seq, b.kind), (1, BreakKind::PrevHashMismatch));
    }

    #[test]
    fn a_chain_not_starting_at_one_is_refused_from_genesis() {
        let entries = chain(1_000);
        let b = broken(&entries[at(2)..]);
        assert_eq!((b.seq, b.kind), (1, BreakKind::SeqGap));
    }

    #[test]
    fn suffix_verifies_from_a_trusted_anchor() {
        let entries = chain(N);
        let anchor = entries[at(7_000)].anchor();
        let report = verify_from(anchor, &entries[at(7_001)..]).unwrap();
        assert_eq!(report.entries, 3_000);
        assert_eq!(report.head(), entries[at(N)].anchor());

        // An empty suffix reports the anchor itself.
        let report = verify_from(anchor, &entries[at(N) + 1..]).unwrap();
        assert_eq!((report.entries, report.head()), (0, anchor));

        // The wrong start, or a wrong anchor hash, is a break at the first entry.
        let b = verify_from(anchor, &entries[at(7_002)..]).unwrap_err();
        assert_eq!((b.seq, b.kind), (7_001, BreakKind::SeqGap));
        let wrong = Anchor::new(7_000, entries[at(6_999)].hash);
        let b = verify_from(wrong, &entries[at(7_001)..]).unwrap_err();
        assert_eq!((b.seq, b.kind), (7_001, BreakKind::PrevHashMismatch));

        // Tampering inside the suffix is found as in a whole chain.
        let mut suffix = entries[at(7_001)..].to_vec();
        suffix[100].event.purpose = None;
        let b = verify_from(anchor, &suffix).unwrap_err();
        assert_eq!((b.seq, b.kind), (7_101, BreakKind::HashMismatch));
    }

    #[test]
    fn the_anchor_of_one_run_starts_the_next() {
        let mut c = Chain::new();
        let first = c.append_batch((1..=100).map(event));
        let head = verify(&first).unwrap().head();
        let second = c.append_batch((101..=150).map(event));
        assert_eq!(verify_from(head, &second).unwrap().head(), c.head());
    }

    #[test]
    fn truncated_tail_is_valid_alone_but_fails_against_the_anchor() {
        let entries = chain(1_000);
        let anchor = entries[at(1_000)].anchor();
        assert!(verify_against_anchor(&entries, anchor).is_ok());

        let cut = &entries[..at(900)];
        assert!(
            verify(cut).is_ok(),
            "a cut tail is undetectable without an anchor"
        );
        let b = verify_against_anchor(cut, anchor).unwrap_err();
        assert_eq!((b.seq, b.kind), (900, BreakKind::Truncated));

        // An anchor from the past is still satisfied by a chain that has grown since.
        let old = entries[at(600)].anchor();
        assert_eq!(
            verify_against_anchor(&entries, old).unwrap().last_seq,
            1_000
        );
    }

    #[test]
    fn rewritten_history_fails_against_the_anchor() {
        // Edit 500 and recompute every hash after it: internally consistent, but not the chain
        // the operator anchored.
        let entries = chain(1_000);
        let anchor = entries[at(800)].anchor();
        let mut rewritten: Vec<AuditEntry> = entries[..at(500)].to_vec();
        let mut c = Chain::resume(Some((499, entries[at(499)].hash))).unwrap();
        for e in &entries[at(500)..] {
            let mut ev = e.event.clone();
            if e.seq == 500 {
                ev.outcome = Some("allow".to_owned());
            }
            rewritten.push(c.append(ev));
        }
        assert!(verify(&rewritten).is_ok());
        let b = verify_against_anchor(&rewritten, anchor).unwrap_err();
        assert_eq!((b.seq, b.kind), (800, BreakKind::AnchorMismatch));
    }

    #[test]
    fn genesis_anchor_accepts_any_valid_chain() {
        assert!(verify_against_anchor(chain(3), Anchor::GENESIS).is_ok());
        assert!(verify_against_anchor(Vec::<AuditEntry>::new(), Anchor::GENESIS).is_ok());
        let bogus = Anchor::new(0, [9; 32]);
        let b = verify_against_anchor(Vec::<AuditEntry>::new(), bogus).unwrap_err();
        assert_eq!((b.seq, b.kind), (0, BreakKind::AnchorMismatch));
        let b = verify_against_anchor(chain(3), bogus).unwrap_err();
        assert_eq!((b.seq, b.kind), (0, BreakKind::AnchorMismatch));
    }

    #[test]
    fn checkpoint_on_a_suffix() {
        let entries = chain(1_000);
        let start = entries[at(500)].anchor();
        let cp = entries[at(700)].anchor();
        let v = Verifier::from_anchor(start).with_checkpoint(cp).unwrap();
        assert!(v.run(&entries[at(501)..]).is_ok());

        let v = Verifier::from_anchor(start).with_checkpoint(cp).unwrap();
        let b = v.run(&entries[at(501)..at(650)]).unwrap_err();
        assert_eq!(b.kind, BreakKind::Truncated);

        // A checkpoint equal to the start is compared with it.
        let v = Verifier::from_anchor(start).with_checkpoint(start).unwrap();
        assert!(v.run(&entries[at(501)..]).is_ok());
        let v = Verifier::from_anchor(start)
            .with_checkpoint(Anchor::new(500, [0; 32]))
            .unwrap();
        assert_eq!(v.finish().unwrap_err().kind, BreakKind::AnchorMismatch);

        let err = Verifier::from_anchor(start)
            .with_checkpoint(entries[at(10)].anchor())
            .unwrap_err();
        assert_eq!(err.code(), "audit.checkpoint_before_start");
    }

    #[test]
    fn a_break_is_sticky() {
        let mut entries = chain(10);
        entries[at(5)].hash = [0; 32];
        let mut v = Verifier::new();
        let mut first = None;
        for e in &entries {
            if let Err(b) = v.push(e) {
                first.get_or_insert(b);
            }
        }
        let first = first.unwrap();
        assert_eq!(first.seq, 5);
        assert_eq!(v.finish().unwrap_err(), first);
    }

    #[test]
    fn break_serialises_and_wraps_into_audit_error() {
        let mut entries = chain(3);
        entries[at(2)].event.at = 0;
        let b = broken(&entries);
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["seq"], 2);
        assert_eq!(json["kind"], "hash_mismatch");
        assert!(
            b.to_string()
                .starts_with("audit chain broken at seq 2 (hash_mismatch)")
        );
        let err: AuditError = b.into();
        assert_eq!(err.code(), "audit.chain_broken");
    }

    #[test]
    fn the_hash_covers_the_seq() {
        // Moving an entry to another seq with its own prev_hash and hash kept is caught even
        // when the prev link happens to fit, because the seq is hashed.
        let e = AuditEvent::new(EventKind::RecordRead, 1);
        let h1 = entry_hash(1, &GENESIS_HASH, &e);
        let moved = AuditEntry {
            seq: 1,
            prev_hash: GENESIS_HASH,
            event: e.clone(),
            hash: entry_hash(2, &GENESIS_HASH, &e),
        };
        assert_ne!(moved.hash, h1);
        let b = broken(&[moved]);
        assert_eq!((b.seq, b.kind), (1, BreakKind::HashMismatch));
    }
}
