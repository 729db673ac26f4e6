//! `custodia requests list | show | export | reject | extend`: the data-subject request queue
//! for the privacy officer. `list` shows open requests earliest due first, with their due dates
//! and what is overdue or due soon (`--due-within 3d`); `show` one request (`--details` decrypts
//! what was asked, and the read is audited); `export` writes everything held about a subject as
//! the zip an access request answers with (given a request id, it fulfils that access, copy or
//! portability request); `reject` and `extend` act on a request with their text.
//!
//! An export is written straight to `--out`, created new with mode `0600` (an existing file is
//! refused, never overwritten), with progress on stderr; on any failure the partial file is
//! removed. It is plaintext personal data: keep it where the subject's data may be.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use custodia_core::{RequestId, SubjectId};
use custodia_requests::{Action, RequestState, Urgency};
use custodia_vault::{ExportManifest, RequestQuery, RequestView, Vault, VaultError};
use serde_json::{Value, json};

use crate::engine::{EngineArgs, ObjectArgs, open_objects};
use crate::output::{self, COULD_NOT_RUN};
use crate::progress::Progress;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The `requests` subcommands.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests earliest due first, flagging what is overdue or due soon (open ones unless
    /// `--all`).
    List {
        /// Only in this state (`received`, `awaiting_verification`, `verified`, `in_progress`,
        /// `waiting_on_recipients`, `extended`, `fulfilled`, `rejected`).
        #[arg(long)]
        status: Option<String>,
        /// Only those due within this long, overdue ones included (`3d`, `12h`, `2w`); also
        /// what counts as due soon (3 days when absent).
        #[arg(long)]
        due_within: Option<String>,
        /// Only this subject's (`sub_…`).
        #[arg(long)]
        subject: Option<String>,
        /// Closed ones too (fulfilled, rejected).
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one request.
    Show {
        /// The request's id (`req_…`).
        id: String,
        /// Decrypt and show what was asked and the operator's texts (the read is audited).
        #[arg(long)]
        details: bool,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export everything held about a subject as a zip with a JSON manifest; given an access,
    /// copy or portability request's id, fulfil that request with it.
    Export {
        /// A subject's id (`sub_…`), or a verified access, copy or portability request's
        /// (`req_…`).
        target: String,
        /// The zip to write (created new, mode 0600; an existing file is refused).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        objects: ObjectArgs,
        /// Print the result as JSON (and no progress).
        #[arg(long)]
        json: bool,
    },
    /// Reject a request, with the reason told to the requester.
    Reject {
        /// The request's id (`req_…`).
        id: String,
        /// Why (1 to 4000 characters); stored sealed.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Extend a request's deadline as far as its law allows (GDPR, CCPA; not PIPL), sending
    /// the notice to the requester.
    Extend {
        /// The request's id (`req_…`).
        id: String,
        /// The notice, with the reasons for the delay (1 to 4000 characters).
        #[arg(long)]
        notice: String,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A command's failure, already reported.
type Outcome = Result<ExitCode, ExitCode>;

/// Runs a `requests` subcommand.
pub fn run(command: RequestsCommand) -> ExitCode {
    let result = match command {
        RequestsCommand::List {
            status,
            due_within,
            subject,
            all,
            limit,
            engine,
            json,
        } => list(
            &Filters {
                status: status.as_deref(),
                due_within: due_within.as_deref(),
                subject: subject.as_deref(),
                all,
                limit,
            },
            &engine,
            json,
        ),
        RequestsCommand::Show {
            id,
            details,
            engine,
            json,
        } => show(&id, details, &engine, json),
        RequestsCommand::Export {
            target,
            out,
            engine,
            objects,
            json,
        } => export(&target, &out, &engine, &objects, json),
        RequestsCommand::Reject {
            id,
            reason,
            engine,
            json,
        } => act(&id, &Action::Reject { reason }, &engine, json),
        RequestsCommand::Extend {
            id,
            notice,
            engine,
            json,
        } => act(&id, &Action::Extend { notice }, &engine, json),
    };
    result.unwrap_or_else(|code| code)
}

fn open_vault(engine: &EngineArgs, json: bool) -> Result<Vault, ExitCode> {
    engine
        .open()
        .map_err(|err| output::error(json, &err.code, &err.message, COULD_NOT_RUN))
}

fn failed(json: bool, err: &VaultError) -> ExitCode {
    output::error(json, err.code(), &err.to_string(), COULD_NOT_RUN)
}

fn invalid(json: bool, code: &str, message: &str) -> ExitCode {
    output::error(json, code, message, COULD_NOT_RUN)
}

fn request_id(text: &str, json: bool) -> Result<RequestId, ExitCode> {
    text.parse()
        .map_err(|_| invalid(json, "request.invalid_id", "not a request id (req_…)"))
}

/// A duration like `3d`, `12h` or `2w`, in milliseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let count: i64 = text.get(..text.len() - unit.len_utf8())?.parse().ok()?;
    let per = match unit {
        'h' => HOUR_MS,
        'd' => DAY_MS,
        'w' => 7 * DAY_MS,
        _ => return None,
    };
    (count >= 0).then(|| count.checked_mul(per)).flatten()
}

/// What `list` filters on, as typed.
struct Filters<'a> {
    status: Option<&'a str>,
    due_within: Option<&'a str>,
    subject: Option<&'a str>,
    all: bool,
    limit: u32,
}

fn list(filters: &Filters<'_>, engine: &EngineArgs, json: bool) -> Outcome {
    let state = filters
        .status
        .map(RequestState::parse)
        .transpose()
        .map_err(|err| invalid(json, err.code(), "--status is not a request state"))?;
    let subject: Option<SubjectId> = filters.subject.map(str::parse).transpose().map_err(|_| {
        invalid(
            json,
            "request.invalid_id",
            "--subject is not a subject id (sub_…)",
        )
    })?;
    let window = filters
        .due_within
        .map(|text| {
            parse_duration(text).ok_or_else(|| {
                invalid(
                    json,
                    "cli.invalid_duration",
                    "--due-within must be a count and a unit: 3d, 12h, 2w",
                )
            })
        })
        .transpose()?;
    let vault = open_vault(engine, json)?;
    let now = vault.now();
    let mut query = RequestQuery {
        state,
        subject,
        // A closed state asked for by name is shown without `--all`.
        open_only: !filters.all && state.is_none_or(|state| !state.is_terminal()),
        limit: usize::try_from(filters.limit).unwrap_or(usize::MAX),
        ..RequestQuery::default()
    };
    if let Some(ms) = window {
        // Whole days count as the queue counts them (due within 3 days: fewer than 4 whole days
        // left); hours bound the due instant itself.
        let days = ms.unsigned_abs().div_ceil(DAY_MS.unsigned_abs());
        query.due_within_days = Some(u32::try_from(days).unwrap_or(u32::MAX));
        if ms % DAY_MS != 0 {
            query.due_before = Some(now.plus_millis(ms));
        }
    }
    let requests = vault.requests(&query).map_err(|err| failed(json, &err))?;
    let overdue = requests
        .iter()
        .filter(|r| r.urgency == Some(Urgency::Overdue))
        .count();
    let soon = requests
        .iter()
        .filter(|r| matches!(r.urgency, Some(Urgency::DueWithin(_))))
        .count();
    if json {
        output::json(&json!({
            "now": now.to_string(),
            "overdue": overdue,
            "due_soon": soon,
            "requests": requests.iter().map(RequestView::to_json).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if requests.is_empty() {
        output::line("no requests");
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&format!(
        "{:<36}  {:<20}  {:<21}  {:<4}  {:<10}  {:<24}  {}",
        "id", "kind", "state", "law", "received", "due", "urgency"
    ));
    for request in &requests {
        output::line(&request_line(request));
    }
    output::line(&format!(
        "{} request(s): {overdue} overdue, {soon} due soon",
        requests.len()
    ));
    Ok(ExitCode::SUCCESS)
}

fn urgency_text(request: &RequestView) -> String {
    match request.urgency {
        Some(Urgency::Overdue) => "OVERDUE".to_owned(),
        Some(Urgency::DueWithin(0)) => "DUE TODAY".to_owned(),
        Some(Urgency::DueWithin(days)) => format!("due soon ({days}d left)"),
        Some(Urgency::OnTrack) => "on track".to_owned(),
        None => "closed".to_owned(),
    }
}

fn request_line(request: &RequestView) -> String {
    let received = request.received_at.to_string();
    let mut line = format!(
        "{:<36}  {:<20}  {:<21}  {:<4}  {:<10}  {:<24}  {}",
        request.id.to_string(),
        request.kind.as_str(),
        request.state.as_str(),
        request.law.name(),
        received.get(..10).unwrap_or(&received),
        request.due_at.to_string(),
        urgency_text(request),
    );
    if request.original_due_at.is_some() {
        line.push_str("  [extended]");
    }
    if !request.flags.is_empty() {
        line.push_str(&format!("  flags: {}", request.flags.join(",")));
    }
    line
}

fn show(id: &str, details: bool, engine: &EngineArgs, json: bool) -> Outcome {
    let id = request_id(id, json)?;
    let vault = open_vault(engine, json)?;
    let request = if details {
        vault.read_request(id, "cli")
    } else {
        vault.request(id)
    }
    .map_err(|err| failed(json, &err))?;
    let mut value = request.to_json();
    if !details && let Some(object) = value.as_object_mut() {
        object.remove("details");
    }
    if json {
        output::json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let text = |key: &str| match value.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    for (label, key) in [
        ("id", "id"),
        ("subject", "subject"),
        ("kind", "kind"),
        ("state", "state"),
        ("law", "law"),
        ("received", "received_at"),
        ("acknowledge by", "acknowledge_by"),
        ("due", "due_at"),
        ("original due", "original_due_at"),
        ("closed", "closed_at"),
    ] {
        output::line(&format!("{label:<15} {}", text(key)));
    }
    output::line(&format!("{:<15} {}", "urgency", urgency_text(&request)));
    output::line(&format!(
        "{:<15} {}",
        "flags",
        if request.flags.is_empty() {
            "-".to_owned()
        } else {
            request.flags.join(", ")
        }
    ));
    if let Some(pending) = &request.verification {
        output::line(&format!(
            "{:<15} code sent {}, expires {}, {} wrong tr{}{}",
            "verification",
            pending.issued_at,
            pending.expires_at,
            pending.attempts,
            if pending.attempts == 1 { "y" } else { "ies" },
            if pending.locked { ", locked" } else { "" }
        ));
    }
    if details {
        let details = value.get("details").unwrap_or(&Value::Null);
        output::line(&format!("{:<15} {details:#}", "details"));
    }
    Ok(ExitCode::SUCCESS)
}

fn act(id: &str, action: &Action, engine: &EngineArgs, json: bool) -> Outcome {
    let id = request_id(id, json)?;
    let vault = open_vault(engine, json)?;
    let request = vault
        .act_on_request(id, action, "cli")
        .map_err(|err| failed(json, &err))?;
    if json {
        let mut value = request.to_json();
        if let Some(object) = value.as_object_mut() {
            object.remove("details");
        }
        output::json(&value);
    } else {
        output::line(&format!("{} {}", action.as_str(), request_line(&request)));
    }
    Ok(ExitCode::SUCCESS)
}

/// What to export.
enum Target {
    Subject(SubjectId),
    Request(RequestId),
}

/// The output file, reporting how far the archive has got.
struct Counting {
    inner: BufWriter<File>,
    position: u64,
    written: u64,
    progress: Progress,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.position += n as u64;
        if self.position > self.written {
            self.written = self.position;
            self.progress.update(self.written, 0);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for Counting {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.position = self.inner.seek(pos)?;
        Ok(self.position)
    }
}

fn export(
    target: &str,
    out: &Path,
    engine: &EngineArgs,
    objects: &ObjectArgs,
    json: bool,
) -> Outcome {
    let target = if let Ok(id) = target.parse::<RequestId>() {
        Target::Request(id)
    } else if let Ok(id) = target.parse::<SubjectId>() {
        Target::Subject(id)
    } else {
        return Err(invalid(
            json,
            "request.invalid_id",
            "give a subject id (sub_…) or a request id (req_…)",
        ));
    };
    let vault = engine
        .open()
        .and_then(|vault| {
            let store = open_objects(objects.objects.as_deref(), &engine.stores.data_dir())?;
            Ok(vault.with_media_store(store))
        })
        .map_err(|err| output::error(json, &err.code, &err.message, COULD_NOT_RUN))?;
    if let Target::Request(id) = target {
        let request = vault.request(id).map_err(|err| failed(json, &err))?;
        if !request.kind.is_access_like() {
            return Err(invalid(
                json,
                "request.not_an_export",
                &format!(
                    "a `{}` request is not answered with an export; give an access, copy or portability request, or a subject id",
                    request.kind
                ),
            ));
        }
    }
    let file = create_private(out).map_err(|err| {
        let code = if err.kind() == io::ErrorKind::AlreadyExists {
            "export.out_exists"
        } else {
            "export.io"
        };
        invalid(
            json,
            code,
            &format!("cannot create {}: {err}", out.display()),
        )
    })?;
    let mut writer = Counting {
        inner: BufWriter::with_capacity(256 * 1024, file),
        position: 0,
        written: 0,
        progress: Progress::new("writing the export (bytes)", json),
    };
    let written = match target {
        Target::Subject(id) => vault
            .export_subject(id, &mut writer, "cli")
            .map(|manifest| (Some(manifest), None)),
        Target::Request(id) => vault
            .fulfil_export_request(id, &mut writer, "cli")
            .map(|report| (report.export, Some(report.request))),
    }
    .and_then(|done| {
        writer
            .inner
            .flush()
            .and_then(|()| writer.inner.get_ref().sync_all())
            .map_err(VaultError::ExportIo)?;
        Ok(done)
    });
    let (manifest, request) = match written {
        Ok((Some(manifest), request)) => (manifest, request),
        Ok((None, _)) => {
            let _ = std::fs::remove_file(out);
            return Err(invalid(json, "export.io", "the export wrote no manifest"));
        }
        Err(err) => {
            // A partial archive is plaintext personal data: never leave it behind.
            drop(writer);
            let _ = std::fs::remove_file(out);
            return Err(failed(json, &err));
        }
    };
    writer.progress.finish(writer.written);
    report(out, &manifest, request.as_ref(), writer.written, json);
    Ok(ExitCode::SUCCESS)
}

fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn report(
    out: &Path,
    manifest: &ExportManifest,
    request: Option<&RequestView>,
    bytes: u64,
    json: bool,
) {
    if json {
        output::json(&json!({
            "out": out.display().to_string(),
            "bytes": bytes,
            "manifest": manifest,
            "request": request.map(|request| {
                let mut value = request.to_json();
                if let Some(object) = value.as_object_mut() {
                    object.remove("details");
                }
                value
            }),
        }));
        return;
    }
    let counts = &manifest.counts;
    output::line(&format!(
        "wrote {} ({bytes} bytes): {} record(s), {} consent event(s), {} media object(s) ({} bytes), {} disclosure(s), {} request(s)",
        out.display(),
        counts.records,
        counts.consents,
        counts.media,
        counts.media_bytes,
        counts.disclosures,
        counts.requests,
    ));
    if let Some(request) = request {
        output::line(&format!("request {} is {}", request.id, request.state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_count_and_a_unit() {
        assert_eq!(parse_duration("3d"), Some(3 * DAY_MS));
        assert_eq!(parse_duration("12h"), Some(12 * HOUR_MS));
        assert_eq!(parse_duration("2w"), Some(14 * DAY_MS));
        assert_eq!(parse_duration("0d"), Some(0));
        for bad in [
            "",
            "d",
            "3",
            "3x",
            "-1d",
            "1.5d",
            "3 d",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
