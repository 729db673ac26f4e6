//! `custodia bench vault|gate|media|dsr [--json] [--quick]`: speed figures, each beside a raw
//! baseline measured in the same run.
//!
//! Progress goes to standard error, the report to standard output (a table, or JSON with
//! `--json`). Exit 0 when the benchmark ran, even if a target is missed (the report says which),
//! so that a slow machine does not look like a broken one; 2 when it could not run.

use std::io::Write;
use std::process::ExitCode;

use custodia_bench::Options;

/// The `bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Field encryption, encrypted ingest, crypto-shredding and audit append, against raw
    /// AES-256-GCM and plain SQLite inserts. Takes up to a minute in a release build.
    Vault {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Smaller workloads and shorter measurements: seconds instead of a minute, noisier.
        #[arg(long)]
        quick: bool,
        /// Run only the figures whose name starts with this (`field`, `encrypted_ingest`,
        /// `crypto_shred`, `audit_append`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Gate decisions per second in process on the largest example policy.
    Gate {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Shorter measurements, noisier.
        #[arg(long)]
        quick: bool,
    },
    /// Media upload and download against raw AES-256-GCM, the peak memory of a 2 GiB upload
    /// against a 100 MiB one, and sweeping 100,000 expired records against plain SQL deletes.
    /// Writes a few GiB to the temporary directory; takes a minute or two in a release build.
    Media {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Smaller files and fewer records: seconds instead of minutes, noisier.
        #[arg(long)]
        quick: bool,
        /// Run only the figures whose name starts with this (`media_upload`,
        /// `media_download`, `media_peak_memory`, `sweep_expired`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Data-subject requests: exporting a subject holding 10,000 records and 100 MiB of media
    /// against reading the same stored bytes raw, and erasing a subject holding ~100 MiB against
    /// one holding ~1 KB. Writes under a GiB to the temporary directory; takes a minute or so in
    /// a release build.
    Dsr {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// 1,000 records and 10 MiB instead: seconds, noisier.
        #[arg(long)]
        quick: bool,
        /// Run only the figures whose name starts with this (`dsr_export`, `dsr_erasure`).
        #[arg(long)]
        only: Option<String>,
    },
    /// The child process of `media_peak_memory`: uploads MiB into a fresh vault in DIR and
    /// prints its peak resident memory in KiB.
    #[command(hide = true)]
    MediaChild {
        /// How many MiB to upload.
        #[arg(long)]
        mib: u64,
        /// A directory for the throwaway vault.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

/// Runs a `bench` subcommand and returns the process exit code.
pub fn run(command: BenchCommand) -> ExitCode {
    match command {
        BenchCommand::Vault { json, quick, only } => report(
            json,
            &Options {
                quick,
                work_dir: None,
                only,
                exe: None,
            },
            custodia_bench::vault,
        ),
        BenchCommand::Gate { json, quick } => report(
            json,
            &Options {
                quick,
                work_dir: None,
                only: None,
                exe: None,
            },
            custodia_bench::gate,
        ),
        BenchCommand::Media { json, quick, only } => report(
            json,
            &Options {
                quick,
                work_dir: None,
                only,
                exe: std::env::current_exe().ok(),
            },
            custodia_bench::media,
        ),
        BenchCommand::Dsr { json, quick, only } => report(
            json,
            &Options {
                quick,
                work_dir: None,
                only,
                exe: None,
            },
            custodia_bench::dsr,
        ),
        BenchCommand::MediaChild { mib, dir } => {
            match custodia_bench::media::upload_peak_kib(&dir, mib) {
                Ok(peak) => {
                    let _ = writeln!(std::io::stdout().lock(), "{peak}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    let _ = writeln!(std::io::stderr().lock(), "error: {err}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

type Bench = fn(
    &Options,
    &mut dyn FnMut(&str),
) -> Result<custodia_bench::Report, custodia_bench::BenchError>;

fn report(json: bool, options: &Options, bench: Bench) -> ExitCode {
    let mut progress = |line: &str| {
        // Progress is a courtesy: a closed stderr must not stop the benchmark.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    };
    let report = match bench(options, &mut progress) {
        Ok(report) => report,
        Err(err) => {
            let _ = writeln!(std::io::stderr().lock(), "error: {err}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|text| writeln!(out, "{text}"))
    } else {
        write!(out, "{report}")
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}
