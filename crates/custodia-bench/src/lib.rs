//! Custodia's speed benchmarks. Every figure is reported as a ratio to a raw baseline measured in
//! the same process and the same run, on the same machine and disk, so a figure means the same
//! thing on a laptop and on a server, and a slow machine or a busy neighbour moves both sides.
//! Speed is measured here and never asserted in timed tests, which would be flaky.
//!
//! [`vault`] runs the vault's figures (the "Speed" section of the design):
//!
//! - `field_seal`, `field_open`: [`DataKey`](custodia_crypto::DataKey) against raw AES-256-GCM
//!   of the same library ([`field`]);
//! - `encrypted_ingest`: [`Vault::ingest`](custodia_vault::Vault::ingest) against plain batched
//!   SQLite inserts ([`ingest`]);
//! - `crypto_shred`: erasing a subject holding ~100 MB against one holding ~1 KB ([`shred`]);
//! - `audit_append`: batched audit commits against plain inserts of the same rows ([`audit`]).
//!
//! [`dsr`] runs the data-subject request figures: `dsr_export` (a subject's export against
//! reading its stored bytes raw) and `dsr_erasure` (erasing ~100 MB against ~1 KB) ([`dsr`]).
//!
//! Modules: [`measure`] (timing), [`fixture`] (a throwaway vault and raw SQLite files),
//! [`report`] ([`Report`], [`Figure`]).

pub mod audit;
pub mod dsr;
pub mod field;
pub mod fixture;
pub mod gate;
pub mod http;
pub mod ingest;
pub mod measure;
pub mod media;
pub mod report;
pub mod shred;

use std::path::PathBuf;

pub use report::{Figure, Report};

/// How to run the benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Smaller workloads and shorter measurements (seconds instead of up to a minute in
    /// release); the figures are noisier, and `crypto_shred` compares ~10 MB with ~1 KB.
    pub quick: bool,
    /// Where to create the benchmark's temporary directory (it is removed afterwards); the
    /// system's temporary directory when `None`. Point it at the disk the data will live on.
    pub work_dir: Option<PathBuf>,
    /// Run only the figures whose name starts with this (`field`, `encrypted_ingest`, ...).
    pub only: Option<String>,
    /// The `custodia` executable, run as `custodia bench media-child` to measure an upload's
    /// peak memory in a process of its own; without it `media_peak_memory` is skipped.
    pub exe: Option<PathBuf>,
}

impl Options {
    /// A fresh temporary directory for one run, under `work_dir` when given; removed when the
    /// run closes it.
    fn work_dir(&self) -> Result<tempfile::TempDir, BenchError> {
        let builder = tempfile::Builder::new().prefix("custodia-bench-").clone();
        Ok(match &self.work_dir {
            Some(dir) => builder.tempdir_in(dir)?,
            None => builder.tempdir()?,
        })
    }

    /// Whether `--only` selects the figure `name` (by prefix, either way round).
    fn wants(&self, name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| name.starts_with(only) || only.starts_with(name))
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The vault refused an operation.
    #[error("vault: {0}")]
    Vault(#[from] custodia_vault::VaultError),
    /// A store refused an operation.
    #[error("store: {0}")]
    Store(#[from] custodia_store::StoreError),
    /// The crypto library failed.
    #[error("crypto: {0}")]
    Crypto(#[from] custodia_crypto::CryptoError),
    /// The raw SQLite baseline failed.
    #[error("raw SQLite baseline: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The work directory could not be created or used.
    #[error("work directory: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else, such as the raw AES baseline failing or the bench policy not loading.
    #[error("{0}")]
    Other(String),
}

/// Runs the vault benchmarks and returns their figures. `progress` receives one line as each
/// step starts, for a person watching a run that takes up to a minute.
///
/// # Errors
/// [`BenchError`] if any step fails; nothing is left behind in the work directory either way.
pub fn vault(options: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    let work = options.work_dir()?;
    let plan = measure::Plan::new(options.quick);
    let wanted = |name: &str| options.wants(name);
    let mut figures = Vec::new();
    if wanted("field") {
        progress("field_seal, field_open: DataKey against raw AES-256-GCM");
        figures.extend(field::run(&plan)?);
    }
    if wanted("encrypted_ingest") {
        progress(&format!(
            "encrypted_ingest: {} records through Vault::ingest against plain SQLite inserts",
            plan.ingest_records
        ));
        figures.extend(ingest::run(&plan, work.path(), progress)?);
    }
    if wanted("crypto_shred") {
        progress(&format!(
            "crypto_shred: {} subjects of ~{} MiB against ~1 KB",
            plan.shred_subjects, plan.shred_big_mib
        ));
        figures.push(shred::run(&plan, work.path(), progress)?);
    }
    if wanted("audit_append") {
        progress("audit_append: batched audit commits against plain inserts");
        figures.push(audit::run(&plan, work.path())?);
    }
    // Removing explicitly reports a failure; dropping the TempDir would hide it.
    work.close()?;
    Ok(Report::new("vault", figures))
}

/// Runs the media benchmark: upload and download throughput against raw AES-256-GCM, peak
/// memory of a large upload against a small one, and the sweeper against plain SQL deletes.
///
/// # Errors
/// [`BenchError`] if any step fails; nothing is left behind in the work directory either way.
pub fn media(options: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    let work = options.work_dir()?;
    let plan = media::MediaPlan::new(options.quick);
    let wanted = |name: &str| options.wants(name);
    let mut figures = Vec::new();
    if wanted("media_upload") || wanted("media_download") {
        progress(&format!(
            "media_upload, media_download: {} MiB through the vault against raw AES-256-GCM",
            plan.throughput_mib
        ));
        figures.extend(media::throughput(&plan, work.path(), progress)?);
    }
    if wanted("media_peak_memory") {
        match &options.exe {
            Some(exe) => {
                progress(&format!(
                    "media_peak_memory: uploading {} MiB against {} MiB",
                    plan.memory_large_mib, plan.memory_small_mib
                ));
                figures.push(media::peak_memory(&plan, exe, work.path(), progress)?);
            }
            None => progress("media_peak_memory: skipped (no executable to run as a child)"),
        }
    }
    if wanted("sweep_expired") {
        progress(&format!(
            "sweep_expired: {} expired records against plain SQL deletes",
            plan.sweep_records
        ));
        figures.push(media::sweep(&plan, work.path(), progress)?);
    }
    work.close()?;
    Ok(Report::new("media", figures))
}

/// Runs the data-subject request benchmark: exporting a subject holding 10,000 records and
/// 100 MiB of media against reading the same stored bytes raw, and erasing a subject holding
/// ~100 MiB against one holding ~1 KB.
///
/// # Errors
/// [`BenchError`] if any step fails; nothing is left behind in the work directory either way.
pub fn dsr(options: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    let work = options.work_dir()?;
    let plan = dsr::DsrPlan::new(options.quick);
    let wanted = |name: &str| options.wants(name);
    let mut figures = Vec::new();
    if wanted("dsr_export") {
        progress(&format!(
            "dsr_export: a subject of {} records and {} MiB of media exported, against reading \
             its stored bytes raw",
            plan.export_records,
            plan.media_mib()
        ));
        figures.extend(dsr::export(&plan, work.path(), progress)?);
    }
    if wanted("dsr_erasure") {
        progress(&format!(
            "dsr_erasure: {} subjects of ~{} MiB erased against ~1 KB",
            plan.erasure_subjects,
            plan.media_mib()
        ));
        figures.extend(dsr::erasure(&plan, work.path(), progress)?);
    }
    work.close()?;
    Ok(Report::new("dsr", figures))
}

/// Runs the gate benchmark: in-process decisions per second on one core.
///
/// # Errors
/// [`BenchError`] if the example policy cannot be loaded.
pub fn gate(options: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    let plan = measure::Plan::new(options.quick);
    progress("gate_in_process: decide() on the DeepPiano policy against a purpose lookup");
    let mut figures = vec![gate::run(&plan)?];
    let work = options.work_dir()?;
    figures.extend(http::run(work.path(), options.quick, progress)?);
    work.close()?;
    Ok(Report::new("gate", figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_bench_reports_decisions_per_second() {
        let report = gate(
            &Options {
                quick: true,
                work_dir: None,
                only: None,
                exe: None,
            },
            &mut |_| {},
        )
        .unwrap();
        let figure = &report.figures[0];
        assert_eq!(figure.name, "gate_in_process");
        assert!(figure.rate > 0.0 && figure.baseline_rate > 0.0 && figure.ratio.is_finite());
    }

    #[test]
    fn only_selects_figures_by_prefix() {
        let report = vault(
            &Options {
                quick: true,
                work_dir: None,
                only: Some("field".to_owned()),
                exe: None,
            },
            &mut |_| {},
        )
        .unwrap();
        let names: Vec<&str> = report.figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["field_seal", "field_open"]);
    }

    #[test]
    fn quick_dsr_run_reports_every_figure() {
        let mut lines = Vec::new();
        let report = dsr(
            &Options {
                quick: true,
                work_dir: None,
                only: None,
                exe: None,
            },
            &mut |line| lines.push(line.to_owned()),
        )
        .unwrap();
        assert_eq!(report.bench, "dsr");
        assert!(!lines.is_empty());
        let names: Vec<&str> = report.figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["dsr_export", "dsr_export_warm", "dsr_erasure", "dsr_purge"]
        );
        for figure in &report.figures {
            assert!(figure.rate.is_finite() && figure.rate > 0.0, "{figure:?}");
            assert!(
                figure.baseline_rate.is_finite() && figure.baseline_rate > 0.0,
                "{figure:?}"
            );
            assert!(figure.ratio.is_finite() && figure.ratio > 0.0, "{figure:?}");
            assert!(!figure.target.is_empty(), "{figure:?}");
        }
    }

    #[test]
    fn quick_run_reports_every_figure() {
        let mut lines = Vec::new();
        let report = vault(
            &Options {
                quick: true,
                work_dir: None,
                only: None,
                exe: None,
            },
            &mut |line| lines.push(line.to_owned()),
        )
        .unwrap();
        assert_eq!(report.bench, "vault");
        assert!(!lines.is_empty());
        let names: Vec<&str> = report.figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "field_seal",
                "field_open",
                "encrypted_ingest",
                "encrypted_ingest_bare_table",
                "crypto_shred",
                "audit_append"
            ]
        );
        for figure in &report.figures {
            assert!(figure.rate > 0.0, "{figure:?}");
            assert!(figure.baseline_rate > 0.0, "{figure:?}");
            assert!(figure.ratio.is_finite() && figure.ratio > 0.0, "{figure:?}");
            assert!(!figure.target.is_empty(), "{figure:?}");
        }
    }
}
