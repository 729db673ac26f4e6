//! `audit_append`: audit events per second through
//! [`DataStore::commit`](custodia_store::DataStore::commit) in batches of 1,000 (no mutations),
//! against plain batched inserts of rows of the same size into a bare table without hashing.
//! The design's target is absolute, 30,000 events per second with batching; the ratio shows
//! what chaining and the store's checks cost.

use std::path::Path;

use custodia_audit::{AuditEvent, EventKind};
use custodia_store::{DataStore, WriteBatch};
use custodia_store_sqlite::SqliteStores;
use rusqlite::{TransactionBehavior, params};

use crate::fixture::{self, ACTOR, DEVICE, Filler, PHONE, RECORDING};
use crate::measure::{self, Plan, Rounds};
use crate::{BenchError, Figure};

/// The design's target, in events per second.
const TARGET: f64 = 30_000.0;

/// The audit table without its append-only triggers.
const RAW_TABLE: &str = "CREATE TABLE audit (
    seq INTEGER NOT NULL PRIMARY KEY, prev_hash BLOB NOT NULL, hash BLOB NOT NULL,
    kind TEXT NOT NULL, at INTEGER NOT NULL, actor TEXT, subject TEXT, category TEXT,
    purpose TEXT, record TEXT, outcome TEXT, reasons TEXT NOT NULL, rule TEXT
)";
const RAW_INSERT: &str = "INSERT INTO audit (seq, prev_hash, hash, kind, at, actor, subject, \
    category, purpose, record, outcome, reasons, rule) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// Realistic events: gate decisions (allowed and denied, with reasons), reads and writes.
fn events(count: usize, filler: &mut Filler) -> Vec<AuditEvent> {
    let subjects: Vec<String> = (0..100).map(|_| filler.id_text("sub")).collect();
    let start = 1_770_714_000_000_i64;
    (0..count)
        .zip(subjects.iter().cycle())
        .map(|(n, subject)| {
            let at = start.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
            let base = |kind| {
                AuditEvent::new(kind, at)
                    .with_actor(ACTOR)
                    .with_subject(subject.as_str())
            };
            match n % 4 {
                0 => base(EventKind::Decision)
                    .with_category(PHONE.0)
                    .with_purpose(PHONE.1)
                    .with_outcome("allow")
                    .with_reasons(["purpose_covers_category", "basis_contract"]),
                1 => base(EventKind::Decision)
                    .with_category(RECORDING.0)
                    .with_purpose("marketing")
                    .with_outcome("deny")
                    .with_reasons(["purpose_not_declared"]),
                2 => base(EventKind::RecordRead)
                    .with_category(DEVICE.0)
                    .with_purpose(DEVICE.1)
                    .with_record(filler.id_text("rec")),
                _ => base(EventKind::RecordWritten)
                    .with_category(PHONE.0)
                    .with_purpose(PHONE.1)
                    .with_record(filler.id_text("rec"))
                    .with_rule("account-data"),
            }
        })
        .collect()
}

/// Measures the figure in `work/audit.db` (the store) and `work/audit-raw.db` (the baseline).
///
/// # Errors
/// [`BenchError`] if either side fails.
pub fn run(plan: &Plan, work: &Path) -> Result<Figure, BenchError> {
    let store = SqliteStores::open_data(&work.join("audit.db"))?;
    let mut filler = Filler::new(0xA0D1);
    let events = events(plan.audit_batch, &mut filler);
    // The raw rows carry what the store writes, `reasons` as the same JSON array.
    let reasons: Vec<String> = events
        .iter()
        .map(|event| serde_json::to_string(&event.reasons))
        .collect::<Result<_, _>>()
        .map_err(|e| BenchError::Other(format!("encoding reasons: {e}")))?;
    let mut raw = fixture::raw_connection(&work.join("audit-raw.db"))?;
    raw.execute_batch(RAW_TABLE)?;
    let hash = filler.id_bytes().repeat(2);
    let mut seq = 0_i64;

    let rounds = Rounds {
        min: 3,
        max: plan.audit_max_batches,
        budget: plan.audit_budget,
    };
    let (appended, baseline) = measure::alternate(
        rounds,
        &mut || {
            // Built outside the timing: the figure is the store's, not the caller's.
            let batch = WriteBatch {
                mutations: Vec::new(),
                audit: events.clone(),
            };
            measure::time(|| {
                store.commit(batch)?;
                Ok(events.len() as u64)
            })
        },
        &mut || {
            measure::time(|| {
                let tx = raw.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(RAW_INSERT)?;
                    for (event, reasons) in events.iter().zip(&reasons) {
                        seq = seq.saturating_add(1);
                        insert.execute(params![
                            seq,
                            hash,
                            hash,
                            event.kind.as_str(),
                            event.at,
                            event.actor,
                            event.subject,
                            event.category,
                            event.purpose,
                            event.record,
                            event.outcome,
                            reasons,
                            event.rule,
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(events.len() as u64)
            })
        },
    )?;
    let rate = measure::total_rate(&appended);
    let baseline_rate = measure::total_rate(&baseline);
    Ok(Figure {
        name: "audit_append".to_owned(),
        unit: "events/s".to_owned(),
        rate,
        baseline: format!(
            "plain batched SQLite inserts (rusqlite, {} rows per transaction, WAL, \
             synchronous=FULL) of audit rows of the same size, constant hashes, no chaining",
            plan.audit_batch
        ),
        baseline_rate,
        ratio: rate / baseline_rate,
        target: format!("rate >= {TARGET} events/s"),
        meets_target: rate >= TARGET,
    })
}
