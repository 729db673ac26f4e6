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

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use custodia_audit::AuditEvent;
use custodia_store::{DataStore, StoreError, WriteBatch};

/// Events per commit at most; more wait for the next one.
const MAX_BATCH: usize = 4096;

/// How long the writer gathers deferred entries before committing them, when nobody is waiting:
/// fewer, larger commits (each rewrites the log's last pages and syncs the disk) for a delay
/// no caller feels.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

struct Pending {
    events: Vec<AuditEvent>,
    done: Option<SyncSender<Result<(), String>>>,
}

/// The writer's inbox.
pub(crate) struct AuditBatcher {
    inbox: Mutex<Sender<Pending>>,
}

impl std::fmt::Debug for AuditBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditBatcher")
    }
}

impl AuditBatcher {
    /// Starts the writer thread; it stops when the batcher is dropped.
    pub(crate) fn start(data: Arc<dyn DataStore>) -> Result<Self, StoreError> {
        let (inbox, queue) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("custodia-audit-writer".into())
            .spawn(move || write_loop(data.as_ref(), &queue))
            .map_err(|err| StoreError::Backend(format!("cannot start the audit writer: {err}")))?;
        Ok(Self {
            inbox: Mutex::new(inbox),
        })
    }

    fn send(&self, pending: Pending) -> Result<(), StoreError> {
        self.inbox
            .lock()
            .map_err(|_| stopped())?
            .send(pending)
            .map_err(|_| stopped())
    }

    /// Appends `events` and returns once they are committed.
    pub(crate) fn append(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Pending {
            events,
            done: Some(done),
        })?;
        wait.recv()
            .map_err(|_| stopped())?
            .map_err(StoreError::Backend)
    }

    /// Hands `events` to the writer without waiting for the commit.
    pub(crate) fn append_deferred(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.send(Pending { events, done: None })
    }

    /// Returns once everything handed over before this call is committed (the writer takes its
    /// inbox in order).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Pending {
            events: Vec::new(),
            done: Some(done),
        })?;
        wait.recv()
            .map_err(|_| stopped())?
            .map_err(StoreError::Backend)
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the audit writer stopped".into())
}

fn write_loop(data: &dyn DataStore, queue: &Receiver<Pending>) {
    while let Ok(first) = queue.recv() {
        let mut waiting = first.done.is_some();
        let mut count = first.events.len();
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + LINGER;
        while count < MAX_BATCH {
            // Someone waits for durability: take only what is already queued. Otherwise linger.
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let next = if waiting || remaining.is_zero() {
                queue.try_recv().ok()
            } else {
                queue.recv_timeout(remaining).ok()
            };
            let Some(next) = next else {
                break;
            };
            waiting |= next.done.is_some();
            count += next.events.len();
            batch.push(next);
        }
        let mut dones = Vec::with_capacity(batch.len());
        let mut audit = Vec::with_capacity(count);
        for pending in batch {
            audit.extend(pending.events);
            dones.extend(pending.done);
        }
        let result = if audit.is_empty() {
            Ok(())
        } else {
            data.commit(WriteBatch {
                mutations: Vec::new(),
                audit,
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
        for done in dones {
            // A caller that gave up waiting is no reason to stop the writer.
            let _ = done.send(result.clone());
        }
    }
}
