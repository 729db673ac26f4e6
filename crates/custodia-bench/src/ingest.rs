//! `encrypted_ingest`: records per second through [`Vault::ingest`](custodia_vault::Vault::ingest)
//! in batches of 1,000 small values spread over many subjects, against plain batched inserts of
//! the same rows (same size, plaintext instead of ciphertext) into the same `records` table (the
//! store's own schema, with its indexes and foreign key; same directory, same pragmas, one
//! transaction per batch). That ratio is what encryption, the audit chain and the engine's
//! bookkeeping cost on top of storing the rows.
//!
//! `encrypted_ingest_bare_table` puts the same vault rate beside inserts into a bare table with no
//! index at all, for context: it shows what the indexes the vault needs (lookups by id, by
//! subject, by expiry) cost in SQLite.
//!
//! The vault's side pays for everything a real ingest does: policy checks, reading each subject
//! and unwrapping its key, sealing, the records' indexes, the subjects' activity updates and the
//! hashed audit entries.

use std::path::Path;

use custodia_core::SubjectId;
use custodia_vault::NewRecord;
use rusqlite::{TransactionBehavior, params};

use crate::fixture::{self, ACTOR, DEVICE, Filler, PHONE};
use crate::measure::{self, Plan, Rounds};
use crate::{BenchError, Figure};

/// The design's target: at least half the raw insert rate.
const TARGET: f64 = 0.5;

/// The store's own data schema, so the baseline inserts into the very table the vault writes.
const STORE_SCHEMA: &str =
    include_str!("../../custodia-store-sqlite/migrations/data/001_initial.sql");

/// The records table without its constraints and indexes: the bytes of a record row, stored.
const RAW_TABLE: &str = "CREATE TABLE records (
    id BLOB NOT NULL, subject BLOB NOT NULL, category TEXT NOT NULL, purpose TEXT NOT NULL,
    key BLOB NOT NULL, ciphertext BLOB NOT NULL, collected_at INTEGER NOT NULL,
    rule TEXT NOT NULL, expires_at INTEGER, statutory INTEGER NOT NULL
)";
const RAW_INSERT: &str = "INSERT INTO records (id, subject, category, purpose, key, ciphertext, \
    collected_at, rule, expires_at, statutory) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// What a sealed field adds to its value: version, nonce and tag.
const SEALED_OVERHEAD: usize = custodia_crypto::field::FIELD_OVERHEAD;

/// Measures the figure in `work/ingest` (the vault) and `work/ingest-raw.db` (the baseline).
///
/// # Errors
/// [`BenchError`] if either side fails.
pub fn run(
    plan: &Plan,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let bench = fixture::open_vault(&work.join("ingest"))?;
    progress(&format!("  creating {} subjects", plan.ingest_subjects));
    let subjects = fixture::create_subjects(&bench.vault, "ingest", plan.ingest_subjects)?;
    let mut filler = Filler::new(0x1A6E);
    let values: Vec<Vec<u8>> = (0..plan.ingest_batch)
        .map(|_| filler.bytes(plan.value_len))
        .collect();
    // Alternating categories mixes two retention rules (one with an expiry, one without).
    let kinds = [PHONE, DEVICE];
    let items: Vec<(SubjectId, NewRecord<'_>)> = values
        .iter()
        .zip(subjects.iter().cycle())
        .zip(kinds.iter().cycle())
        .map(|((value, subject), &(category, purpose))| {
            (
                *subject,
                NewRecord {
                    category,
                    purpose,
                    value,
                },
            )
        })
        .collect();

    let mut bare = fixture::raw_connection(&work.join("ingest-bare.db"))?;
    bare.execute_batch(RAW_TABLE)?;
    let raw_subjects: Vec<([u8; 16], [u8; 16])> = (0..plan.ingest_subjects)
        .map(|_| (filler.id_bytes(), filler.id_bytes()))
        .collect();
    let mut same = fixture::raw_connection(&work.join("ingest-same.db"))?;
    same.execute_batch(STORE_SCHEMA)?;
    {
        let tx = same.transaction()?;
        for (subject, key) in &raw_subjects {
            tx.execute(
                "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
                 VALUES (?1, ?2, ?3, ?4, 0, 0)",
                params![subject, filler.bytes(32), filler.bytes(96), key],
            )?;
        }
        tx.commit()?;
    }
    let plaintexts: Vec<Vec<u8>> = (0..plan.ingest_batch)
        .map(|_| filler.bytes(plan.value_len + SEALED_OVERHEAD))
        .collect();
    let collected_at = bench.vault.now().as_millis();
    let expires_at = collected_at.saturating_add(365 * 24 * 3600 * 1000);

    let batches = plan.ingest_records.div_ceil(plan.ingest_batch);
    let rounds = Rounds {
        min: batches,
        max: batches,
        budget: std::time::Duration::MAX,
    };
    let insert_batch =
        |conn: &mut rusqlite::Connection, filler: &mut Filler| -> Result<u64, BenchError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(RAW_INSERT)?;
                let rows = plaintexts
                    .iter()
                    .zip(raw_subjects.iter().cycle())
                    .zip(kinds.iter().cycle());
                for ((value, (subject, key)), &(category, purpose)) in rows {
                    let phone = category == PHONE.0;
                    insert.execute(params![
                        filler.ordered_id_bytes(collected_at),
                        subject,
                        category,
                        purpose,
                        key,
                        value,
                        collected_at,
                        if phone {
                            "account-data"
                        } else {
                            "retention[2]"
                        },
                        if phone { None } else { Some(expires_at) },
                        0,
                    ])?;
                }
            }
            tx.commit()?;
            Ok(plaintexts.len() as u64)
        };
    let (vault, same_table) = measure::alternate(
        rounds,
        &mut || {
            measure::time(|| {
                let written = bench.vault.ingest(&items, ACTOR)?;
                Ok(written.len() as u64)
            })
        },
        &mut || measure::time(|| insert_batch(&mut same, &mut filler)),
    )?;
    insert_batch(&mut bare, &mut filler)?;
    let bare_table = (0..batches)
        .map(|_| measure::time(|| insert_batch(&mut bare, &mut filler)))
        .collect::<Result<Vec<_>, _>>()?;
    let vault_rate = measure::total_rate(&vault);
    Ok(vec![
        Figure::min_ratio(
            "encrypted_ingest",
            "records/s",
            vault_rate,
            &format!(
                "plain batched SQLite inserts (rusqlite, {} rows per transaction, WAL, \
                 synchronous=FULL) of the same rows with plaintext of the sealed size ({} bytes) \
                 into the store's own records table (same indexes and foreign key), no \
                 encryption, no audit",
                plan.ingest_batch,
                plan.value_len + SEALED_OVERHEAD
            ),
            measure::total_rate(&same_table),
            TARGET,
        ),
        Figure::context(
            "encrypted_ingest_bare_table",
            "records/s",
            vault_rate,
            &format!(
                "the same inserts into a bare table with no index, no constraint ({} rows per \
                 transaction): what SQLite indexes cost",
                plan.ingest_batch
            ),
            measure::total_rate(&bare_table),
        ),
    ])
}
