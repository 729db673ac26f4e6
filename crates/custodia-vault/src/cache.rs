//! In-memory caches for the hot path of the gate: verified API keys and each subject's gate facts
//! (the ledger replayed, erasure, birth date or age band), so that a decision can be answered
//! without touching storage.
//!
//! Correctness comes from invalidation, not from expiry:
//! - a change made through this vault (a consent event, an erasure, a revocation) drops the
//!   entries it affects as soon as it commits;
//! - a change made by another process sharing the stores (the CLI, another server instance) is
//!   seen by tailing the audit chain, which records every such change, every
//!   [`TAIL_INTERVAL`]: that is the longest another process's change can go unseen here;
//! - a read that raced a change must not put stale facts back: every invalidation bumps a
//!   generation counter, and an entry read before the bump is not stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use custodia_audit::EventKind;
use custodia_core::{ApiKeyId, SubjectId};
use custodia_gate::SubjectFacts;
use custodia_store::{ApiKeyRow, DataStore};

/// How often the audit chain is tailed for changes made by other processes.
pub const TAIL_INTERVAL: Duration = Duration::from_millis(100);

/// The kinds of audit entry that can make a cache entry stale, and so the ones the tail reads.
const CHANGES: [EventKind; 5] = [
    EventKind::ConsentRecorded,
    EventKind::SubjectErased,
    EventKind::SubjectCreated,
    EventKind::RequestTransition,
    EventKind::KeyDestroyed,
];

/// Changes read per store call by the tail.
const TAIL_PAGE: usize = 1024;

/// Entries kept at most per cache; past that the cache starts over (simple and bounded).
const MAX_ENTRIES: usize = 200_000;

/// A subject's facts, with its age as of one UTC day (ages change at birthdays, so an entry read
/// on another day recomputes it).
#[derive(Debug, Clone)]
pub(crate) struct CachedFacts {
    /// The ledger-derived facts, with the age as of `day`.
    pub facts: SubjectFacts,
    /// The UTC day (days since the Unix epoch) `facts.age` is for.
    pub day: i64,
    /// The birth date, when known.
    pub birth: Option<custodia_core::Timestamp>,
    /// The age band's age, when only a band is known.
    pub band_age: Option<u8>,
}

impl CachedFacts {
    /// The facts as of `now`: the cached ones on the same day, recomputed otherwise.
    pub fn as_of(&self, now: custodia_core::Timestamp) -> std::borrow::Cow<'_, SubjectFacts> {
        if day_of(now) == self.day {
            std::borrow::Cow::Borrowed(&self.facts)
        } else {
            let mut facts = self.facts.clone();
            facts.age = age(self.birth, self.band_age, now);
            std::borrow::Cow::Owned(facts)
        }
    }
}

/// The UTC day of an instant.
pub(crate) fn day_of(at: custodia_core::Timestamp) -> i64 {
    at.as_millis().div_euclid(86_400_000)
}

/// A subject's age on `now`'s day, from the birth date or else the band.
pub(crate) fn age(
    birth: Option<custodia_core::Timestamp>,
    band_age: Option<u8>,
    now: custodia_core::Timestamp,
) -> Option<u8> {
    birth
        .and_then(|birth| custodia_gate::age_on(birth, now))
        .or(band_age)
}

/// The caches and their generation counter.
#[derive(Debug, Default)]
pub(crate) struct Caches {
    keys: RwLock<HashMap<ApiKeyId, ApiKeyRow>>,
    facts: RwLock<HashMap<SubjectId, Arc<CachedFacts>>>,
    generation: AtomicU64,
}

impl Caches {
    /// The generation to pass back to [`Caches::store_facts`] after reading from storage.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// `look` applied to the cached key `id`, under the cache's read lock (no copy of the row).
    pub(crate) fn with_key<T>(
        &self,
        id: ApiKeyId,
        look: impl FnOnce(&ApiKeyRow) -> T,
    ) -> Option<T> {
        self.keys.read().ok()?.get(&id).map(look)
    }

    pub(crate) fn store_key(&self, row: ApiKeyRow, read_at: u64) {
        if let Ok(mut keys) = self.keys.write() {
            if self.generation() != read_at {
                return;
            }
            if keys.len() >= MAX_ENTRIES {
                keys.clear();
            }
            keys.insert(row.id, row);
        }
    }

    pub(crate) fn facts(&self, subject: SubjectId) -> Option<Arc<CachedFacts>> {
        self.facts.read().ok()?.get(&subject).cloned()
    }

    pub(crate) fn store_facts(&self, subject: SubjectId, facts: Arc<CachedFacts>, read_at: u64) {
        if let Ok(mut map) = self.facts.write() {
            if self.generation() != read_at {
                return;
            }
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(subject, facts);
        }
    }

    /// Drops what a committed change to `subject` may have made stale.
    pub(crate) fn forget_subject(&self, subject: SubjectId) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut map) = self.facts.write() {
            map.remove(&subject);
        }
    }

    /// Drops a key after it changed (revocation).
    pub(crate) fn forget_key(&self, id: ApiKeyId) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut keys) = self.keys.write() {
            keys.remove(&id);
        }
    }

    fn forget_everything(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut map) = self.facts.write() {
            map.clear();
        }
        if let Ok(mut keys) = self.keys.write() {
            keys.clear();
        }
    }
}

/// Starts the thread that tails the audit chain from `from` (the head when the vault opened) and
/// drops cache entries that other processes' changes made stale. It stops when the caches go.
pub(crate) fn start_tail(caches: &Arc<Caches>, data: Arc<dyn DataStore>, from: u64) {
    let weak: Weak<Caches> = Arc::downgrade(caches);
    // If the thread cannot start, every change still invalidates locally; other processes'
    // changes would go unseen, so in that case nothing is cached at all.
    let started = std::thread::Builder::new()
        .name("custodia-cache-tail".into())
        .spawn(move || tail(&weak, data.as_ref(), from));
    if started.is_err() {
        caches.generation.store(u64::MAX, Ordering::SeqCst);
    }
}

fn tail(caches: &Weak<Caches>, data: &dyn DataStore, mut seen: u64) {
    loop {
        std::thread::sleep(TAIL_INTERVAL);
        let Some(caches) = caches.upgrade() else {
            return;
        };
        let head = match data.audit_head() {
            Ok(head) => head.map_or(0, |anchor| anchor.seq),
            Err(_) => {
                caches.forget_everything();
                continue;
            }
        };
        // Only changes matter here; the store skips the rest (gate decisions, reads) itself.
        while seen < head {
            let page = match data.audit_entries_of(seen + 1, head, &CHANGES, TAIL_PAGE) {
                Ok(page) => page,
                Err(_) => {
                    // Unreadable entries: nothing cached can be trusted.
                    caches.forget_everything();
                    seen = head;
                    break;
                }
            };
            let full = page.len() >= TAIL_PAGE;
            for entry in &page {
                seen = entry.seq;
                let event = &entry.event;
                let subject = event
                    .subject
                    .as_deref()
                    .and_then(|s| s.parse::<SubjectId>().ok());
                match event.kind {
                    EventKind::ConsentRecorded
                    | EventKind::SubjectErased
                    | EventKind::SubjectCreated
                    | EventKind::RequestTransition => {
                        if let Some(subject) = subject {
                            caches.forget_subject(subject);
                        }
                    }
                    EventKind::KeyDestroyed => {
                        if let Some(subject) = subject {
                            caches.forget_subject(subject);
                        }
                        if let Some(id) = event.record.as_deref().and_then(|r| r.parse().ok()) {
                            caches.forget_key(id);
                        }
                    }
                    _ => {}
                }
            }
            if !full {
                // Everything up to the head has been seen.
                seen = head;
            }
        }
    }
}
