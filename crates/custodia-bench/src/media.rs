//! `custodia bench media`: media custody and the retention sweeper against raw baselines run in
//! the same process.
//!
//! - `media_upload`: [`Vault::upload_media`] of one large file (STREAM-sealed in 64 KiB
//!   chunks, written to a file-system object store, registered and audited) against raw
//!   AES-256-GCM sealing of the same bytes in 64 KiB chunks in memory; target 70%.
//! - `media_download`: [`Vault::download_media`] of that file (gate decision, unwrapping,
//!   reading and authenticating every chunk) against raw AES-256-GCM opening of the same
//!   chunks; target 70%.
//! - `media_peak_memory`: the peak resident memory of a process uploading 2 GiB against one
//!   uploading 100 MiB (each a child process, so neither inherits the other's high-water mark);
//!   the ratio is large over small and the target is that it does not grow, within 10%.
//! - `sweep_expired`: the sweeper deleting 100,000 expired records (one audit entry each)
//!   against deleting the same rows of an identical database with plain SQL; target within 2x.
//!
//! The baselines use the same crypto library, the same key size, the same chunk size, and the
//! same disk, so a ratio says what Custodia adds and nothing else.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use custodia_core::SubjectId;
use custodia_objects::FsObjectStore;
use custodia_store::ConsentEventKind;
use custodia_vault::{Caller, Gated, NewConsent, NewMedia, NewRecord, Progress, Vault};

use crate::fixture::{self, ACTOR, DEVICE, Filler, RECORDING};
use crate::{BenchError, Figure};

/// The chunk size of the media stream, and of the raw baseline.
const CHUNK: usize = 64 * 1024;

/// The throughput target of upload and download, as a share of raw AES-256-GCM.
const MIN_THROUGHPUT_RATIO: f64 = 0.7;

/// The peak-memory target: the large upload's peak at most this multiple of the small one's.
const MAX_MEMORY_RATIO: f64 = 1.1;

/// The sweep target: at most this multiple of the raw deletion's time.
const MAX_SWEEP_RATIO: f64 = 2.0;

/// Records the sweeper deletes per transaction, in both the sweep and the raw baseline.
const SWEEP_BATCH: usize = 1_000;

/// Sizes of a run.
#[derive(Debug, Clone, Copy)]
pub struct MediaPlan {
    /// MiB uploaded and downloaded for the throughput figures.
    pub throughput_mib: u64,
    /// How many times each side of a throughput figure is run; the best is reported.
    pub rounds: usize,
    /// The small upload of the memory figure, in MiB.
    pub memory_small_mib: u64,
    /// The large upload of the memory figure, in MiB.
    pub memory_large_mib: u64,
    /// Expired records swept.
    pub sweep_records: usize,
}

impl MediaPlan {
    /// The full run (2 GiB against 100 MiB, 100,000 records) or a quick one.
    #[must_use]
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                throughput_mib: 32,
                rounds: 2,
                memory_small_mib: 16,
                memory_large_mib: 128,
                sweep_records: 10_000,
            }
        } else {
            Self {
                throughput_mib: 512,
                rounds: 3,
                memory_small_mib: 100,
                memory_large_mib: 2_048,
                sweep_records: 100_000,
            }
        }
    }
}

/// Pseudo-random bytes of a given length, produced as they are read: the source of every
/// upload, so the benchmark itself holds no file in memory.
#[derive(Debug)]
pub struct Generated {
    filler: Filler,
    left: u64,
}

impl Generated {
    /// `len` bytes from `seed`.
    #[must_use]
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            filler: Filler::new(seed),
            left: len,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let mut written = 0;
        for word in buf.chunks_mut(8).take(want.div_ceil(8)) {
            let bytes = self.filler.next_u64().to_le_bytes();
            let room = word.len().min(want - written);
            for (dst, src) in word.iter_mut().zip(bytes.iter()).take(room) {
                *dst = *src;
            }
            written += room;
        }
        self.left -= written as u64;
        Ok(written)
    }
}

/// A vault with a file-system object store (in `objects` beside the vault's `vault`
/// directory), a subject who consented to the recording purpose, and the operator as caller.
pub(crate) struct MediaVault {
    pub(crate) bench: fixture::BenchVault,
    pub(crate) subject: SubjectId,
}

pub(crate) fn open_media_vault(dir: &Path) -> Result<MediaVault, BenchError> {
    let fixture::BenchVault { vault, clock } = fixture::open_vault(&dir.join("vault"))?;
    let objects = FsObjectStore::open(dir.join("objects"))
        .map_err(|e| BenchError::Other(format!("object store: {e}")))?;
    let vault = vault.with_media_store(Arc::new(objects));
    let subject = fixture::create_subjects(&vault, "media", 1)?
        .pop()
        .ok_or_else(|| BenchError::Other("no subject was created".to_owned()))?;
    consent_to_recordings(&vault, subject)?;
    Ok(MediaVault {
        bench: fixture::BenchVault { vault, clock },
        subject,
    })
}

/// Records `subject`'s consent to the recording purpose, which media uploads need.
pub(crate) fn consent_to_recordings(vault: &Vault, subject: SubjectId) -> Result<(), BenchError> {
    vault.record_consent(
        subject,
        &NewConsent {
            purposes: vec![RECORDING.1.to_owned()],
            kind: ConsentEventKind::Given,
            guardian: None,
            guardian_verified: false,
            policy_version: None,
            method: "app_dialog".to_owned(),
            expires_at: None,
        },
        ACTOR,
    )?;
    Ok(())
}

/// Uploads `len` generated bytes from `seed` as a recording of `subject`.
pub(crate) fn upload(
    vault: &Vault,
    subject: SubjectId,
    len: u64,
    seed: u64,
) -> Result<u64, BenchError> {
    upload_checked(vault, subject, len, seed, None)
}

/// Like [`upload`], announcing the body's SHA-256 as a client's `Content-Digest` does (the
/// digest is computed first, by a pass over the same generated bytes).
pub(crate) fn upload_with_digest(
    vault: &Vault,
    subject: SubjectId,
    len: u64,
    seed: u64,
) -> Result<u64, BenchError> {
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let (mut body, mut buffer) = (Generated::new(seed, len), vec![0u8; 64 * 1024]);
    loop {
        let read = body.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hash.update(buffer.get(..read).unwrap_or_default());
    }
    let digest = <[u8; 32]>::try_from(hash.finish().as_ref())
        .map_err(|_| BenchError::Other("SHA-256 is not 32 bytes".to_owned()))?;
    upload_checked(vault, subject, len, seed, Some(digest))
}

fn upload_checked(
    vault: &Vault,
    subject: SubjectId,
    len: u64,
    seed: u64,
    expected_sha256: Option<[u8; 32]>,
) -> Result<u64, BenchError> {
    let (category, purpose) = RECORDING;
    let info = vault.upload_media(
        subject,
        &NewMedia {
            category,
            purpose,
            content_type: "audio/wav",
            expected_len: Some(len),
            expected_sha256,
        },
        &mut Generated::new(seed, len),
        &Caller::operator(),
    )?;
    if info.size != len {
        return Err(BenchError::Other(format!(
            "uploaded {} bytes of {len}",
            info.size
        )));
    }
    Ok(len)
}

/// Raw AES-256-GCM over `len` bytes in 64 KiB chunks, sealing or opening in place: the
/// baseline of both throughput figures. Returns the seconds taken.
fn raw_aes(len: u64, open: bool) -> Result<f64, BenchError> {
    let fail = |what: &str| BenchError::Other(format!("raw AES-256-GCM {what} failed"));
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).map_err(|_| fail("key setup"))?);
    let mut source = Generated::new(1, len);
    let mut chunk = vec![0u8; CHUNK];
    let mut sealed: Vec<(Vec<u8>, [u8; 16])> = Vec::new();
    let mut counter = 0u32;
    let nonce = |counter: u32| {
        let mut bytes = [0u8; 12];
        for (dst, src) in bytes.iter_mut().skip(8).zip(counter.to_be_bytes()) {
            *dst = src;
        }
        Nonce::assume_unique_for_key(bytes)
    };
    if open {
        // Prepare a few distinct sealed chunks to open, outside the timing.
        for _ in 0..4 {
            let read = fill(&mut source, &mut chunk)?;
            let mut data = chunk.get(..read).unwrap_or_default().to_vec();
            let tag = key
                .seal_in_place_separate_tag(nonce(counter), Aad::empty(), &mut data)
                .map_err(|_| fail("seal"))?;
            let mut tag_bytes = [0u8; 16];
            tag_bytes.copy_from_slice(tag.as_ref());
            sealed.push((data, tag_bytes));
            counter += 1;
        }
    }
    let chunks = len.div_ceil(CHUNK as u64);
    let started = Instant::now();
    if open {
        let mut work = Vec::with_capacity(CHUNK + 16);
        for n in 0..chunks {
            let index = usize::try_from(n % 4).unwrap_or(0);
            let (data, tag) = sealed.get(index).ok_or_else(|| fail("open"))?;
            work.clear();
            work.extend_from_slice(data);
            work.extend_from_slice(tag);
            let nonce_counter = u32::try_from(index).unwrap_or(0);
            key.open_in_place(nonce(nonce_counter), Aad::empty(), &mut work)
                .map_err(|_| fail("open"))?;
        }
    } else {
        for _ in 0..chunks {
            let read = fill(&mut source, &mut chunk)?;
            let data = chunk.get_mut(..read).unwrap_or_default();
            let tag = key
                .seal_in_place_separate_tag(nonce(counter), Aad::empty(), data)
                .map_err(|_| fail("seal"))?;
            let _ = std::hint::black_box(tag);
            counter = counter.wrapping_add(1);
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn fill(source: &mut dyn Read, buf: &mut [u8]) -> Result<usize, BenchError> {
    let mut filled = 0;
    while filled < buf.len() {
        let read = source.read(buf.get_mut(filled..).unwrap_or_default())?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds.max(f64::EPSILON)
}

/// Measures `media_upload` and `media_download` in `work/throughput`.
///
/// # Errors
/// [`BenchError`] if the vault or the baseline fails.
pub fn throughput(
    plan: &MediaPlan,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let media = open_media_vault(&work.join("throughput"))?;
    let vault = &media.bench.vault;
    let len = plan.throughput_mib * 1024 * 1024;
    let (mut best_upload, mut best_raw_seal) = (f64::MAX, f64::MAX);
    let (mut best_download, mut best_raw_open) = (f64::MAX, f64::MAX);
    let mut last = None;
    for round in 0..plan.rounds {
        progress(&format!(
            "  round {} of {}: {} MiB up and down",
            round + 1,
            plan.rounds,
            plan.throughput_mib
        ));
        best_raw_seal = best_raw_seal.min(raw_aes(len, false)?);
        let started = Instant::now();
        upload(vault, media.subject, len, round as u64)?;
        best_upload = best_upload.min(started.elapsed().as_secs_f64());
        let id = vault
            .list_media(media.subject, Some(RECORDING.0))?
            .pop()
            .map(|info| info.id)
            .ok_or_else(|| BenchError::Other("the upload is not listed".to_owned()))?;
        best_raw_open = best_raw_open.min(raw_aes(len, true)?);
        let started = Instant::now();
        let read = download(vault, id)?;
        best_download = best_download.min(started.elapsed().as_secs_f64());
        if read != len {
            return Err(BenchError::Other(format!(
                "downloaded {read} bytes of {len}"
            )));
        }
        if let Some(previous) = last.replace(id) {
            vault.delete_media(previous, ACTOR)?;
        }
    }
    Ok(vec![
        Figure::min_ratio(
            "media_upload",
            "MiB/s",
            mib_per_s(len, best_upload),
            "raw AES-256-GCM seal, 64 KiB chunks",
            mib_per_s(len, best_raw_seal),
            MIN_THROUGHPUT_RATIO,
        ),
        Figure::min_ratio(
            "media_download",
            "MiB/s",
            mib_per_s(len, best_download),
            "raw AES-256-GCM open, 64 KiB chunks",
            mib_per_s(len, best_raw_open),
            MIN_THROUGHPUT_RATIO,
        ),
    ])
}

fn download(vault: &Vault, id: custodia_core::MediaId) -> Result<u64, BenchError> {
    let download = match vault.download_media(id, RECORDING.1, None, &Caller::operator())? {
        Gated::Allowed { value, .. } => value,
        Gated::Denied(decision) => {
            return Err(BenchError::Other(format!(
                "the gate denied the download: {decision:?}"
            )));
        }
    };
    let mut reader = download.reader;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let read = reader.read(&mut buf)?;
        if read == 0 {
            break;
        }
        total += read as u64;
    }
    Ok(total)
}

/// The child side of `media_peak_memory`: uploads `mib` MiB into a fresh vault under `dir` and
/// returns this process's peak resident memory in KiB (`VmHWM`).
///
/// # Errors
/// [`BenchError`] if the upload fails or the peak cannot be read (not Linux).
pub fn upload_peak_kib(dir: &Path, mib: u64) -> Result<u64, BenchError> {
    let media = open_media_vault(dir)?;
    upload(&media.bench.vault, media.subject, mib * 1024 * 1024, 9)?;
    peak_resident_kib()
}

fn peak_resident_kib() -> Result<u64, BenchError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::Other("no VmHWM in /proc/self/status".to_owned()))
}

/// Measures `media_peak_memory` by running `exe bench media-child --mib N --dir D` for the
/// small and the large upload.
///
/// # Errors
/// [`BenchError`] if a child fails or prints no figure.
pub fn peak_memory(
    plan: &MediaPlan,
    exe: &Path,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Figure, BenchError> {
    let mut peaks = Vec::new();
    for mib in [plan.memory_small_mib, plan.memory_large_mib] {
        progress(&format!("  a child process uploads {mib} MiB"));
        let dir: PathBuf = work.join(format!("memory-{mib}"));
        let output = Command::new(exe)
            .args(["bench", "media-child", "--mib", &mib.to_string(), "--dir"])
            .arg(&dir)
            .output()?;
        if !output.status.success() {
            return Err(BenchError::Other(format!(
                "the {mib} MiB upload child failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let peak: u64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| BenchError::Other("the upload child printed no peak".to_owned()))?;
        peaks.push(peak as f64);
        std::fs::remove_dir_all(&dir)?;
    }
    let (small, large) = match peaks.as_slice() {
        [small, large] => (*small, *large),
        _ => return Err(BenchError::Other("missing peak".to_owned())),
    };
    Ok(Figure::max_ratio(
        "media_peak_memory",
        "KiB peak RSS",
        large,
        &format!(
            "{} MiB upload (this: {} MiB)",
            plan.memory_small_mib, plan.memory_large_mib
        ),
        small,
        MAX_MEMORY_RATIO,
    ))
}

/// Measures `sweep_expired` in `work/sweep`: two identical vaults each get `records` expiring
/// records; one is swept by the vault, the other's rows are deleted with plain SQL in batches
/// of the same size.
///
/// # Errors
/// [`BenchError`] if the vault or SQLite fails.
pub fn sweep(
    plan: &MediaPlan,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Figure, BenchError> {
    let count = plan.sweep_records;
    let mut seconds = Vec::new();
    for side in ["vault", "raw"] {
        progress(&format!("  {side}: writing {count} records that expire"));
        let dir = work.join(format!("sweep-{side}"));
        let fixture::BenchVault { vault, clock } = fixture::open_vault(&dir)?;
        fill_expiring(&vault, count)?;
        // Past the device ids' one-year retention.
        clock.advance_days(400);
        if side == "vault" {
            let started = Instant::now();
            let report = vault.sweep(false, SWEEP_BATCH, "system", &mut NoProgress)?;
            seconds.push(started.elapsed().as_secs_f64());
            if report.deleted != count as u64 {
                return Err(BenchError::Other(format!(
                    "the sweep deleted {} of {count}",
                    report.deleted
                )));
            }
        } else {
            let cutoff = vault.now().as_millis();
            drop(vault);
            let conn = fixture::raw_connection(&dir.join("data.db"))?;
            let started = Instant::now();
            let mut deleted = 0usize;
            loop {
                let batch = conn.execute(
                    "DELETE FROM records WHERE id IN (SELECT id FROM records \
                     WHERE expires_at IS NOT NULL AND expires_at <= ?1 \
                     ORDER BY expires_at LIMIT ?2)",
                    rusqlite::params![cutoff, SWEEP_BATCH as i64],
                )?;
                if batch == 0 {
                    break;
                }
                deleted += batch;
            }
            seconds.push(started.elapsed().as_secs_f64());
            if deleted != count {
                return Err(BenchError::Other(format!(
                    "the raw deletion removed {deleted} of {count}"
                )));
            }
        }
    }
    let (vault_s, raw_s) = match seconds.as_slice() {
        [vault_s, raw_s] => (*vault_s, *raw_s),
        _ => return Err(BenchError::Other("missing sweep timing".to_owned())),
    };
    let mut figure = Figure::max_ratio(
        "sweep_expired",
        "records/s",
        count as f64 / vault_s.max(f64::EPSILON),
        "plain SQL DELETE of the same rows",
        count as f64 / raw_s.max(f64::EPSILON),
        MAX_SWEEP_RATIO,
    );
    // Time over time: a rate ratio would read the other way round.
    figure.ratio = vault_s / raw_s.max(f64::EPSILON);
    figure.meets_target = figure.ratio <= MAX_SWEEP_RATIO;
    Ok(figure)
}

struct NoProgress;

impl Progress for NoProgress {
    fn advance(&mut self, _done: u64, _total: u64) {}
}

fn fill_expiring(vault: &Vault, count: usize) -> Result<(), BenchError> {
    let subjects = fixture::create_subjects(vault, "sweep", 100)?;
    let mut filler = Filler::new(0xD15C);
    let values: Vec<Vec<u8>> = (0..count).map(|_| filler.bytes(40)).collect();
    let (category, purpose) = DEVICE;
    let items: Vec<(SubjectId, NewRecord<'_>)> = subjects
        .iter()
        .cycle()
        .zip(&values)
        .map(|(subject, value)| {
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
    for batch in items.chunks(1_000) {
        vault.ingest(batch, ACTOR)?;
    }
    Ok(())
}
