//! `custodia bench dsr`: data-subject requests, against raw baselines run in the same process.
//!
//! - `dsr_export`: [`Vault::export_subject`] of a subject holding 10,000 small records (phone
//!   numbers, device ids and network log lines) and 100 MiB of media (ten 10 MiB recordings,
//!   uploaded with their digest announced, as the API recommends): every record read and
//!   decrypted, rendered as JSON and CSV, every object streamed through its verifying decryptor
//!   into the archive, every file listed with its SHA-256 in the manifest, and the reads
//!   audited. The whole zip goes into a writer that drops it, as the server streams it to the
//!   connection (no copy lands on a disk). The baseline is what it costs just to get the same
//!   bytes off storage, in the same process: the same rows' ciphertext selected from the
//!   vault's `data.db` with plain SQL and the media objects' stored files read whole with plain
//!   file reads. Both sides read from storage: before every timed round of either side the
//!   database and the objects are dropped from the page cache (`posix_fadvise(DONTNEED)`, no
//!   privilege needed). `rate` and `baseline_rate` are MiB/s of those stored bytes; `ratio` is
//!   the export's time over the raw read's (lower is better); target within 2x.
//! - `dsr_export_warm` (context): the same with everything in the page cache, where the raw
//!   read is a memory copy (about 9 GiB/s here) that AES-GCM decryption alone (about as fast)
//!   cannot stay within 2x of once anything else is done.
//! - `dsr_erasure`: what an erasure request does before it answers, [`Vault::shred_subject`]
//!   (the subject's key destroyed, so every copy of its data is unreadable, and its media objects
//!   marked for deletion, in one commit), for a subject holding ~100 MiB (a 1 KB record and ten
//!   10 MiB recordings) against one holding ~1 KB (the same record alone), in the same vault;
//!   the median of several subjects of each size, erased alternately. `rate` is one over the
//!   large subject's time, `baseline_rate` one over the small one's, and `ratio` the large time
//!   over the small (lower is better); target within 1.5x.
//! - `dsr_purge` (context): the housekeeping that follows, [`Vault::purge_subject`] deleting the
//!   erased subject's rows and its objects' bytes (which the sweeper also finishes), large over
//!   small. It grows with the number of objects (an unlink and a directory fsync each), not
//!   with what the data says: nothing readable is left by then.
//!
//! Quick runs use 1,000 records and 10 MiB (ten 1 MiB recordings) for both figures.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use custodia_core::SubjectId;
use custodia_vault::{NewRecord, Vault};
use rusqlite::{Connection, OpenFlags};

use crate::fixture::{self, ACTOR, DEVICE, Filler, PHONE, RECORDING};
use crate::media::{self, consent_to_recordings, upload};
use crate::{BenchError, Figure, measure};

/// The export target: at most this multiple of the raw read's time.
const MAX_EXPORT_RATIO: f64 = 2.0;

/// The erasure target: the large subject's time at most this multiple of the small one's.
const MAX_ERASURE_RATIO: f64 = 1.5;

/// A statutory category of the bench policy and its purpose: network logs.
const NETWORK_LOG: (&str, &str) = ("system.operations.network_log", "security");

/// Records ingested per commit while filling.
const FILL_BATCH: usize = 1_000;

/// The read buffer of the raw baseline's file reads.
const READ_BUFFER: usize = 256 * 1024;

/// Sizes of a run.
#[derive(Debug, Clone, Copy)]
pub struct DsrPlan {
    /// Records the exported subject holds.
    pub export_records: usize,
    /// Media objects the exported subject and each large erased subject hold.
    pub media_files: usize,
    /// The size of each media object, in bytes.
    pub media_file_bytes: u64,
    /// Timed rounds of the export and of the raw read, after a warm-up round of each; the
    /// median is reported.
    pub export_rounds: usize,
    /// Subjects of each size erased; the median is reported.
    pub erasure_subjects: usize,
    /// Bytes of the one record every erased subject holds.
    pub erasure_small_bytes: usize,
}

impl DsrPlan {
    /// The full run (10,000 records and 100 MiB) or a quick one (1,000 records and 10 MiB).
    #[must_use]
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                export_records: 1_000,
                media_files: 10,
                media_file_bytes: 1 << 20,
                export_rounds: 3,
                erasure_subjects: 3,
                erasure_small_bytes: 1_024,
            }
        } else {
            Self {
                export_records: 10_000,
                media_files: 10,
                media_file_bytes: 10 << 20,
                export_rounds: 5,
                erasure_subjects: 5,
                erasure_small_bytes: 1_024,
            }
        }
    }

    /// The media each large subject holds, in MiB.
    #[must_use]
    pub fn media_mib(&self) -> u64 {
        self.media_files as u64 * self.media_file_bytes / (1 << 20)
    }
}

fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds.max(1e-9)
}

/// Small text values, mixed over three categories as a real account's are.
fn record_values(count: usize) -> Vec<((&'static str, &'static str), String)> {
    let mut filler = Filler::new(0xD5A0);
    (0..count)
        .map(|n| match n % 3 {
            0 => (
                PHONE,
                format!("+86 1{:010}", filler.next_u64() % 10_000_000_000),
            ),
            1 => (DEVICE, filler.id_text("device")),
            _ => {
                let address = filler.next_u64();
                (
                    NETWORK_LOG,
                    format!(
                        "10.{}.{}.{} GET /api/v1/lessons/{} 200 {}ms",
                        address & 0xff,
                        (address >> 8) & 0xff,
                        (address >> 16) & 0xff,
                        (address >> 24) % 10_000,
                        (address >> 40) % 900
                    ),
                )
            }
        })
        .collect()
}

/// Gives `subject` `plan.media_files` recordings of `plan.media_file_bytes` each.
fn fill_media(
    vault: &Vault,
    subject: SubjectId,
    plan: &DsrPlan,
    seed: u64,
) -> Result<(), BenchError> {
    for n in 0..plan.media_files {
        upload(vault, subject, plan.media_file_bytes, seed + n as u64)?;
    }
    Ok(())
}

/// The raw side of `dsr_export`: selects the subject's records' ciphertext with plain SQL and
/// reads its media objects' stored files whole. Returns the rows and the bytes read.
fn raw_read(
    conn: &Connection,
    objects: &Path,
    subject: SubjectId,
    buffer: &mut [u8],
) -> Result<(u64, u64), BenchError> {
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut select = conn.prepare_cached("SELECT ciphertext FROM records WHERE subject = ?1")?;
    let mut found = select.query([subject.as_bytes()])?;
    while let Some(row) = found.next()? {
        let ciphertext = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        bytes += std::hint::black_box(ciphertext).len() as u64;
        rows += 1;
    }
    let mut locations = conn.prepare_cached("SELECT location FROM media WHERE subject = ?1")?;
    let paths: Vec<String> = locations
        .query_map([subject.as_bytes()], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for location in paths {
        let mut path = objects.to_path_buf();
        path.extend(location.split('/'));
        let mut file = File::open(&path)?;
        loop {
            let read = file.read(buffer)?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
        }
    }
    Ok((rows, bytes))
}

/// Writes `paths` back and drops them from the page cache, so that the next read of each
/// comes from storage. Needs no privilege: `posix_fadvise(DONTNEED)` drops a file's clean pages.
fn evict(paths: &[PathBuf]) -> Result<(), BenchError> {
    for path in paths {
        let file = match File::open(path) {
            Ok(file) => file,
            // The WAL may have been checkpointed away.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error.into()),
        };
        file.sync_all()?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
            .map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Whether the page cache starts each timed round holding the subject's bytes or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    /// Dropped before every round of either side: the bytes come from storage.
    Cold,
    /// Left as the previous round left it: the bytes come from memory.
    Warm,
}

/// Measures `dsr_export` (cold) and `dsr_export_warm` in `work/dsr-export`.
///
/// # Errors
/// [`BenchError`] if the vault or the baseline fails, or either reads less than was stored.
pub fn export(
    plan: &DsrPlan,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let dir = work.join("dsr-export");
    let media = media::open_media_vault(&dir)?;
    let (vault, subject) = (&media.bench.vault, media.subject);
    progress(&format!(
        "  filling the subject with {} records and {} MiB of media",
        plan.export_records,
        plan.media_mib()
    ));
    let values = record_values(plan.export_records);
    let items: Vec<(SubjectId, NewRecord<'_>)> = values
        .iter()
        .map(|((category, purpose), value)| {
            (
                subject,
                NewRecord {
                    category,
                    purpose,
                    value: value.as_bytes(),
                },
            )
        })
        .collect();
    for batch in items.chunks(FILL_BATCH) {
        vault.ingest(batch, ACTOR)?;
    }
    // Uploaded as a client that announces each body's digest does, so the manifest names the
    // checked digest instead of hashing every object again.
    for n in 0..plan.media_files {
        media::upload_with_digest(vault, subject, plan.media_file_bytes, 0xE0 + n as u64)?;
    }

    let database = dir.join("vault").join("data.db");
    let conn = Connection::open_with_flags(
        &database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let objects = dir.join("objects");
    let mut stored: Vec<PathBuf> = vec![database.clone(), dir.join("vault").join("data.db-wal")];
    {
        let mut locations = conn.prepare("SELECT location FROM media WHERE subject = ?1")?;
        let found = locations.query_map([subject.as_bytes()], |row| row.get::<_, String>(0))?;
        for location in found {
            let mut path = objects.clone();
            path.extend(location?.split('/'));
            stored.push(path);
        }
    }
    let mut buffer = vec![0u8; READ_BUFFER];
    let media_bytes = plan.media_files as u64 * plan.media_file_bytes;
    let mut stored_bytes = 0u64;
    let mut raw = |cache: Cache| -> Result<f64, BenchError> {
        if cache == Cache::Cold {
            evict(&stored)?;
        }
        let started = Instant::now();
        let (rows, bytes) = raw_read(&conn, &objects, subject, &mut buffer)?;
        let seconds = started.elapsed().as_secs_f64();
        if rows != plan.export_records as u64 || bytes < media_bytes {
            return Err(BenchError::Other(format!(
                "the raw read found {rows} rows and {bytes} bytes"
            )));
        }
        stored_bytes = bytes;
        Ok(seconds)
    };
    let export = |cache: Cache| -> Result<f64, BenchError> {
        if cache == Cache::Cold {
            evict(&stored)?;
        }
        // The archive is produced whole (compressed, checksummed, every entry framed) and
        // handed to a writer that drops it, as the server hands it to the connection: no copy
        // of it lands on a disk, so writing one is no part of the export's time.
        let mut out = std::io::sink();
        let started = Instant::now();
        let manifest = vault.export_subject(subject, &mut out, ACTOR)?;
        let seconds = started.elapsed().as_secs_f64();
        if manifest.counts.records != plan.export_records as u64
            || manifest.counts.media_bytes != media_bytes
        {
            return Err(BenchError::Other(format!(
                "the export held {} records and {} media bytes",
                manifest.counts.records, manifest.counts.media_bytes
            )));
        }
        Ok(seconds)
    };
    // Warm-up: the statements and the caches.
    progress("  warm-up round");
    export(Cache::Warm)?;
    raw(Cache::Warm)?;
    let mut times = |cache: Cache, label: &str| -> Result<(f64, f64), BenchError> {
        let (mut export_secs, mut raw_secs) = (Vec::new(), Vec::new());
        for round in 0..plan.export_rounds {
            progress(&format!(
                "  {label} round {} of {}: export against raw read",
                round + 1,
                plan.export_rounds
            ));
            // Alternate which goes first, so neither always runs right after the other.
            if round % 2 == 0 {
                export_secs.push(export(cache)?);
                raw_secs.push(raw(cache)?);
            } else {
                raw_secs.push(raw(cache)?);
                export_secs.push(export(cache)?);
            }
        }
        // Never zero, so the ratio and the rates stay finite.
        Ok((
            measure::median(export_secs).max(1e-9),
            measure::median(raw_secs).max(1e-9),
        ))
    };
    let cold = times(Cache::Cold, "cold")?;
    let warm = times(Cache::Warm, "warm")?;
    let what = |cache: &str| {
        format!(
            "plain SQL SELECT of the same {} rows' ciphertext from data.db plus plain reads of \
             the {} stored media files ({} MiB stored in all), {cache}; `rate` is \
             Vault::export_subject over the same stored bytes, the whole zip streamed into a \
             discarding writer (objects uploaded with their digest announced); median of {} \
             rounds each",
            plan.export_records,
            plan.media_files,
            stored_bytes / (1 << 20),
            plan.export_rounds
        )
    };
    let (export_time, raw_time) = cold;
    let mut figure = Figure::max_ratio(
        "dsr_export",
        "MiB/s",
        mib_per_s(stored_bytes, export_time),
        &what("both sides read from storage (the page cache dropped before every round)"),
        mib_per_s(stored_bytes, raw_time),
        MAX_EXPORT_RATIO,
    );
    // Time over time: a rate ratio would read the other way round.
    figure.ratio = export_time / raw_time;
    figure.target = format!("time <= {MAX_EXPORT_RATIO}x of the raw read's");
    figure.meets_target = figure.ratio <= MAX_EXPORT_RATIO;
    let (export_time, raw_time) = warm;
    let mut in_memory = Figure::context(
        "dsr_export_warm",
        "MiB/s",
        mib_per_s(stored_bytes, export_time),
        &what(
            "both sides from the page cache: the raw read is a memory copy, which decrypting \
             alone costs as much as",
        ),
        mib_per_s(stored_bytes, raw_time),
    );
    in_memory.ratio = export_time / raw_time;
    Ok(vec![figure, in_memory])
}

/// Measures `dsr_erasure` and `dsr_purge` in `work/dsr-erasure`.
///
/// # Errors
/// [`BenchError`] if the vault fails or an erasure leaves media behind.
pub fn erasure(
    plan: &DsrPlan,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let media = media::open_media_vault(&work.join("dsr-erasure"))?;
    let vault = &media.bench.vault;
    let count = plan.erasure_subjects;
    // One more small subject than measured: the first erasure warms up the statements and
    // caches. The media vault's own subject is not used.
    let small = fixture::create_subjects(vault, "small", count + 1)?;
    let big = fixture::create_subjects(vault, "big", count)?;
    let value = Filler::new(0xE2A5).bytes(plan.erasure_small_bytes);
    let (category, purpose) = RECORDING;
    for subject in small.iter().chain(&big) {
        // Both sizes consent alike, so they differ only in what they hold.
        consent_to_recordings(vault, *subject)?;
        vault.write_records(
            *subject,
            &[NewRecord {
                category,
                purpose,
                value: &value,
            }],
            ACTOR,
        )?;
    }
    for (n, subject) in big.iter().enumerate() {
        progress(&format!(
            "  filling large subject {} of {count} with {} MiB of media",
            n + 1,
            plan.media_mib()
        ));
        fill_media(vault, *subject, plan, 0x100 * (n as u64 + 1))?;
    }

    // Times the shred and the purge apart: the request waits for the first only.
    let erase = |subject: SubjectId, media: u64| -> Result<(f64, f64), BenchError> {
        let started = Instant::now();
        vault.shred_subject(subject, ACTOR)?;
        let shredded = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let report = vault.purge_subject(subject, ACTOR)?;
        let purged = started.elapsed().as_secs_f64();
        if report.media_deleted != media || report.records_deleted != 1 {
            return Err(BenchError::Other(format!(
                "the erasure deleted {} media objects and {} records",
                report.media_deleted, report.records_deleted
            )));
        }
        Ok((shredded, purged))
    };
    let files = plan.media_files as u64;
    let mut small_ids = small.iter();
    if let Some(warm) = small_ids.next() {
        erase(*warm, 0)?;
    }
    progress(&format!(
        "  erasing {count} subjects of each size, alternately"
    ));
    let (mut small_secs, mut big_secs) = (Vec::new(), Vec::new());
    let (mut small_purge, mut big_purge) = (Vec::new(), Vec::new());
    for (n, (small, big)) in small_ids.zip(&big).enumerate() {
        // Alternate which goes first, so neither size always follows the other's fsyncs.
        let order = if n % 2 == 0 {
            [(*small, 0), (*big, files)]
        } else {
            [(*big, files), (*small, 0)]
        };
        for (subject, media) in order {
            let (shred, purge) = erase(subject, media)?;
            if media == 0 {
                small_secs.push(shred);
                small_purge.push(purge);
            } else {
                big_secs.push(shred);
                big_purge.push(purge);
            }
        }
    }
    let mut purge = Figure::context(
        "dsr_purge",
        "purges/s",
        1.0 / measure::median(big_purge).max(1e-9),
        &format!(
            "Vault::purge_subject after the shred: {} objects' bytes and the rows, against one \
             record's row",
            plan.media_files
        ),
        1.0 / measure::median(small_purge).max(1e-9),
    );
    // Time over time, like the erasure figure.
    purge.ratio = purge.baseline_rate / purge.rate;
    // Never zero, so the ratio and the rates stay finite.
    let small_time = measure::median(small_secs).max(1e-9);
    let big_time = measure::median(big_secs).max(1e-9);
    let ratio = big_time / small_time;
    Ok(vec![
        Figure {
            name: "dsr_erasure".to_owned(),
            unit: "erasures/s".to_owned(),
            rate: 1.0 / big_time,
            baseline: format!(
                "Vault::shred_subject of a subject holding ~1 KB (one {}-byte record), against \
                 `rate` for a subject holding that record and {} MiB of media ({} objects); \
                 median of {count} each",
                plan.erasure_small_bytes,
                plan.media_mib(),
                plan.media_files
            ),
            baseline_rate: 1.0 / small_time,
            ratio,
            target: format!(
                "time({} MiB) <= {MAX_ERASURE_RATIO}x of the 1 KB time",
                plan.media_mib()
            ),
            meets_target: ratio <= MAX_ERASURE_RATIO,
        },
        purge,
    ])
}
