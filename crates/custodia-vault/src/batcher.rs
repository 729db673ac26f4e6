//! Group commit for audit entries that carry no data change (gate decisions): callers hand their
//! events to one writer thread. While one commit is being synced, the events of every caller that
//! arrives meanwhile gather into the next, so many concurrent decisions share one fsync.
//!
//! A caller either waits until its entries are durable ([`AuditBatcher::append`], used when the
//! decision is followed by a read of personal data) or hands them over and goes on
//! ([`AuditBatcher::append_deferred`], used by the gate-only endpoint, where waiting for a disk
//! sync would cost more than the decision itself). Deferred entries are committed within one sync
//! of the writer (it gathers them for at most [`LINGER`] when nobody waits); a crash of the
//! process can lose the ones not yet synced, never a data change or the audit of a read, which
//! always commit before they are acknowledged.
//! [`AuditBatcher::flush`] waits until everything handed over so far is durable.
//!
//! What is handed over is a [`DecisionRecord`], not yet an audit event: the writer formats the
//! event (ids, actor, outcome, reason codes), commits it and frees it on its own thread, so a
//! decision costs the deciding thread a few small copies and no formatting.
//!
//! The inbox is one list under a mutex. Handing entries over appends to it and wakes the writer
//! only when it has to: when it is idle (waiting for the first entry of its next commit), when
//! someone waits for durability, or when the commit is full. A deferred hand-over during the
//! writer's linger is a lock and a move, with no system call on either side.

use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use custodia_audit::{AuditEvent, EventKind};
use custodia_core::{ApiKeyId, SubjectId};
use custodia_gate::Reason;
use custodia_store::{DataStore, StoreError, WriteBatch};

/// Events per commit at which the writer stops lingering and commits at once.
const MAX_BATCH: usize = 4096;

/// How long the writer gathers deferred entries before committing them, when nobody is waiting:
/// fewer, larger commits (each rewrites the log's last pages and syncs the disk) for a delay
/// no caller feels.
const LINGER: Duration = Duration::from_millis(5);

/// One gate decision to audit, as the deciding thread hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecisionRecord {
    /// When it was decided, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The caller's key, `None` for the operator's own tools.
    pub key: Option<ApiKeyId>,
    /// Whose data.
    pub subject: SubjectId,
    /// For which purpose.
    pub purpose: String,
    /// Which categories, comma-separated.
    pub categories: String,
    /// Allowed or not.
    pub allowed: bool,
    /// Why.
    pub reasons: Vec<Reason>,
}

/// The actor recorded for a caller: its key id, or `operator`.
pub(crate) fn actor(key: Option<ApiKeyId>) -> String {
    key.map_or_else(|| "operator".to_owned(), |id| id.to_string())
}

impl DecisionRecord {
    /// The decision's audit entry: subject, purpose, categories, outcome and reasons.
    pub(crate) fn into_event(self) -> AuditEvent {
        AuditEvent::new(EventKind::Decision, self.at)
            .with_actor(actor(self.key))
            .with_subject(self.subject.to_string())
            .with_purpose(self.purpose)
            .with_category(self.categories)
            .with_outcome(if self.allowed { "allow" } else { "deny" })
            .with_reasons(self.reasons.iter().map(|reason| reason.code()))
    }
}

/// Tells one waiting caller how the commit of its entries went.
type Done = SyncSender<Result<(), String>>;

/// What waits for the writer's next commit.
#[derive(Default)]
struct Inbox {
    /// Decisions handed over, in order, not yet taken by the writer.
    events: Vec<DecisionRecord>,
    /// Callers waiting until every event handed over before them is durable.
    waiters: Vec<Done>,
    /// The writer is waiting for the first entry of its next commit: the next hand-over wakes it.
    idle: bool,
    /// The batcher is gone: commit what is left and stop.
    stopped: bool,
}

struct Shared {
    inbox: Mutex<Inbox>,
    /// Wakes the writer.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // The inbox is a list and a few flags, each update complete before any call that could
        // panic: a poisoned lock leaves it consistent.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's inbox.
pub(crate) struct AuditBatcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditBatcher")
    }
}

impl AuditBatcher {
    /// Starts the writer thread; it stops when the batcher is dropped, after committing what it
    /// was handed.
    pub(crate) fn start(data: Arc<dyn DataStore>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
            wake: Condvar::new(),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("custodia-audit-writer".into())
            .spawn(move || write_loop(data.as_ref(), &writer))
            .map_err(|err| StoreError::Backend(format!("cannot start the audit writer: {err}")))?;
        Ok(Self { shared })
    }

    /// Hands `events` (and `done`, to be told when they are durable) to the writer.
    fn hand_over(
        &self,
        events: impl IntoIterator<Item = DecisionRecord>,
        done: Option<Done>,
    ) -> Result<(), StoreError> {
        let mut inbox = self.shared.lock();
        if inbox.stopped {
            return Err(stopped());
        }
        let before = inbox.events.len();
        inbox.events.extend(events);
        let added = inbox.events.len() > before;
        // A deferred hand-over while the writer lingers needs no wake-up: it takes everything
        // at the end of its linger. Anything that should cut the linger short wakes it.
        let wake = done.is_some() || (added && (inbox.idle || inbox.events.len() >= MAX_BATCH));
        if let Some(done) = done {
            inbox.waiters.push(done);
        }
        if wake {
            inbox.idle = false;
            drop(inbox);
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Appends `events` and returns once they are committed.
    pub(crate) fn append(&self, events: Vec<DecisionRecord>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, wait) = mpsc::sync_channel(1);
        self.hand_over(events, Some(done))?;
        wait.recv()
            .map_err(|_| stopped())?
            .map_err(StoreError::Backend)
    }

    /// Hands `events` to the writer without waiting for the commit.
    pub(crate) fn append_deferred(
        &self,
        events: impl IntoIterator<Item = DecisionRecord>,
    ) -> Result<(), StoreError> {
        self.hand_over(events, None)
    }

    /// Returns once everything handed over before this call is committed (the writer takes its
    /// inbox in order).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.hand_over(None, Some(done))?;
        wait.recv()
            .map_err(|_| stopped())?
            .map_err(StoreError::Backend)
    }
}

impl Drop for AuditBatcher {
    fn drop(&mut self) {
        let mut inbox = self.shared.lock();
        inbox.stopped = true;
        drop(inbox);
        self.shared.wake.notify_one();
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the audit writer stopped".into())
}

/// Waits for the next commit's worth of the inbox and swaps it into `batch` and `waiters` (both
/// empty): the inbox gets their allocations back, so handing over does not grow a fresh list
/// every commit. `false` once the batcher is gone and nothing is left.
fn next_batch(shared: &Shared, batch: &mut Vec<DecisionRecord>, waiters: &mut Vec<Done>) -> bool {
    let mut inbox = shared.lock();
    while inbox.events.is_empty() && inbox.waiters.is_empty() {
        if inbox.stopped {
            return false;
        }
        inbox.idle = true;
        inbox = shared
            .wake
            .wait(inbox)
            .unwrap_or_else(PoisonError::into_inner);
    }
    inbox.idle = false;
    // Someone waits for durability, the commit is full, or the batcher is going: commit now.
    // Otherwise linger, woken early only by one of those.
    let deadline = Instant::now() + LINGER;
    while inbox.waiters.is_empty() && inbox.events.len() < MAX_BATCH && !inbox.stopped {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        inbox = shared
            .wake
            .wait_timeout(inbox, remaining)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    std::mem::swap(&mut inbox.events, batch);
    std::mem::swap(&mut inbox.waiters, waiters);
    true
}

/// Marks the batcher stopped when the writer ends, however it ends: a panic must not leave
/// callers waiting forever for a commit (their waits fail instead) nor the inbox growing.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let mut inbox = self.0.lock();
        inbox.stopped = true;
        inbox.events = Vec::new();
        // Dropping a waiter's sender ends its wait with an error.
        inbox.waiters = Vec::new();
    }
}

fn write_loop(data: &dyn DataStore, shared: &Shared) {
    let _stopped = Stopped(shared);
    let mut decisions = Vec::new();
    let mut dones = Vec::new();
    while next_batch(shared, &mut decisions, &mut dones) {
        let result = if decisions.is_empty() {
            Ok(())
        } else {
            data.commit(WriteBatch {
                mutations: Vec::new(),
                audit: decisions
                    .drain(..)
                    .map(DecisionRecord::into_event)
                    .collect(),
            })
            .map(|_| ())
            .map_err(|err| err.to_string())
        };
        if let Err(message) = &result {
            // Nobody waits for deferred entries: the failure must still be visible.
            let mut err = std::io::stderr().lock();
            let _ = std::io::Write::write_fmt(
                &mut err,
                format_args!(
                    "custodia: committing gate-decision audit entries failed: {message}\n"
                ),
            );
        }
        for done in dones.drain(..) {
            // A caller that gave up waiting is no reason to stop the writer.
            let _ = done.send(result.clone());
        }
        // Keep the list for the next round, unless a burst left it far larger than a commit.
        if decisions.capacity() > 4 * MAX_BATCH {
            decisions = Vec::new();
        }
    }
}
