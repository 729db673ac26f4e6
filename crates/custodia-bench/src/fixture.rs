//! What the benchmarks run against: a throwaway vault on SQLite under the clean test policy and a
//! manual clock, raw SQLite files with the store's pragmas for the baselines, and realistic ids
//! and values.

use std::path::Path;
use std::sync::Arc;

use custodia_core::{ManualClock, SubjectId, Timestamp};
use custodia_policy::{CheckedPolicy, Source};
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{NewSubject, RootKeySource, Vault};
use rusqlite::Connection;

use crate::BenchError;

/// The policy every benchmark vault runs under: the small clean fixture of the policy crate,
/// built in so the command needs no file.
const POLICY: &str = include_str!("../../custodia-policy/tests/fixtures/clean.toml");

/// Who the benchmark's vault operations are attributed to in the audit log.
pub const ACTOR: &str = "key_0123456789abcdef0123456789abcdef";

/// A category and a purpose that covers it, both in [`POLICY`], for small values.
pub const PHONE: (&str, &str) = ("user.contact.phone_number", "account");
/// Another small-value pair, so batches mix retention rules.
pub const DEVICE: (&str, &str) = ("user.device.device_id", "crash_reporting");
/// The pair for large values.
pub const RECORDING: (&str, &str) = ("user.content.audio_recording", "ai_transcription");

/// A vault on its own data directory.
#[derive(Debug)]
pub struct BenchVault {
    /// The vault.
    pub vault: Vault,
    /// Its clock, which only the benchmark moves.
    pub clock: Arc<ManualClock>,
}

/// The bench policy, parsed and checked.
///
/// # Errors
/// [`BenchError::Other`] if it does not parse or is not clean (the fixture changed).
pub fn policy() -> Result<CheckedPolicy, BenchError> {
    let checked = CheckedPolicy::from_source(Source::new("clean.toml", POLICY))
        .map_err(|e| BenchError::Other(format!("bench policy: {e}")))?;
    if !checked.is_clean() {
        return Err(BenchError::Other(format!(
            "bench policy has {} finding(s)",
            checked.findings.len()
        )));
    }
    Ok(checked)
}

/// Opens a new vault in `dir`, with a fresh root key file beside it.
///
/// # Errors
/// [`BenchError`] if the stores or the key file cannot be created.
pub fn open_vault(dir: &Path) -> Result<BenchVault, BenchError> {
    let (data, keys) = SqliteStores::open(dir)?;
    let start = Timestamp::parse("2026-02-10T09:00:00Z")
        .map_err(|e| BenchError::Other(format!("bench clock: {e}")))?;
    let clock = Arc::new(ManualClock::new(start));
    let vault = Vault::open(
        Arc::new(data),
        Arc::new(keys),
        policy()?,
        clock.clone(),
        &RootKeySource::KeyFile(dir.with_extension("key")),
    )?;
    Ok(BenchVault { vault, clock })
}

/// Registers `count` subjects named `{prefix}-{n}`.
///
/// # Errors
/// [`BenchError::Vault`] if the vault refuses one.
pub fn create_subjects(
    vault: &Vault,
    prefix: &str,
    count: usize,
) -> Result<Vec<SubjectId>, BenchError> {
    (0..count)
        .map(|n| {
            let subject = vault.create_subject(
                &NewSubject {
                    external_id: format!("{prefix}-{n}"),
                    jurisdiction: "CN".to_owned(),
                    birth_date: Some("1990-04-01".to_owned()),
                    age_band: None,
                    guardian: None,
                },
                ACTOR,
            )?;
            Ok(subject.id)
        })
        .collect()
}

/// Opens a raw SQLite file for a baseline, with the store's pragmas: WAL, `synchronous = FULL`
/// (an fsync per commit, as the store pays), foreign keys and secure delete.
///
/// # Errors
/// [`BenchError::Sqlite`] if it cannot be opened or configured.
pub fn raw_connection(path: &Path) -> Result<Connection, BenchError> {
    let conn = Connection::open(path)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BenchError::Other(format!(
            "the raw baseline cannot use WAL in {} (journal mode {mode})",
            path.display()
        )));
    }
    for (name, value) in [
        ("synchronous", "FULL"),
        ("foreign_keys", "ON"),
        ("secure_delete", "ON"),
    ] {
        conn.pragma_update(None, name, value)?;
    }
    Ok(conn)
}

/// A deterministic generator of ids and filler bytes (SplitMix64). The contents are irrelevant
/// to speed, since nothing compresses; only sizes and id shapes need to be realistic.
#[derive(Debug, Clone)]
pub struct Filler(u64);

impl Filler {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 16 bytes, the size of every Custodia id.
    pub fn id_bytes(&mut self) -> [u8; 16] {
        let high = u128::from(self.next_u64()) << 64;
        (high | u128::from(self.next_u64())).to_be_bytes()
    }

    /// 16 bytes shaped like [`custodia_core::RecordId::ordered`]: 48 bits of `millis`, then
    /// pseudo-random bits.
    pub fn ordered_id_bytes(&mut self, millis: i64) -> [u8; 16] {
        let mut bytes = self.id_bytes();
        let prefix = u64::try_from(millis).unwrap_or(0).to_be_bytes();
        for (dst, src) in bytes.iter_mut().zip(prefix.iter().skip(2)) {
            *dst = *src;
        }
        bytes
    }

    /// An id as text, `{prefix}_` then 32 hex digits, like [`custodia_core::SubjectId`]'s.
    pub fn id_text(&mut self, prefix: &str) -> String {
        let bytes = u128::from_be_bytes(self.id_bytes());
        format!("{prefix}_{bytes:032x}")
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len.saturating_add(8));
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}
