//! The retention sweeper inside the server (invariant 3): [`Sweeper`] runs
//! [`Vault::sweep`](custodia_vault::Vault::sweep) on the blocking pool, counts the run in the
//! [`Metrics`] and logs a summary with counts only; [`spawn_sweeper`] runs it on a schedule
//! (`sweep_interval`, an hour unless configured, zero for never) until [`SweeperHandle::stop`].
//!
//! The first scheduled sweep runs as the server starts, then one every interval, so an instance
//! that restarts often still sweeps. A sweep under way when the server stops is let finish: each
//! batch deletes and audits atomically, and the store shares the work between instances on one
//! database, so nothing is lost or done twice either way. `POST /v1/sweeps` goes through the same
//! [`Sweeper`], so its runs are counted and logged alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custodia_vault::{SweepReport, Vault};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ServerState;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// How often the server sweeps unless configured otherwise.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The longest interval accepted: a sweep at least weekly, or expiries slip by too long.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Records deleted (and audited) per transaction.
pub const SWEEP_BATCH: usize = 500;
/// The actor recorded on the audit entries of scheduled sweeps.
pub const SCHEDULED_ACTOR: &str = "sweeper";

/// What started a sweep, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepTrigger {
    /// The schedule.
    Scheduled,
    /// `POST /v1/sweeps`.
    Request,
}

impl SweepTrigger {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Request => "request",
        }
    }
}

/// An interval that does not parse or is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalError {
    /// Not `off`, a number of seconds, or a number with a unit.
    Syntax,
    /// Longer than [`MAX_SWEEP_INTERVAL`].
    TooLong,
}

impl std::fmt::Display for IntervalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Syntax => {
                "not an interval: use `off`, seconds (`900`) or a whole number with s, m, h or d (`15m`)"
            }
            Self::TooLong => "longer than 7 days",
        })
    }
}

impl std::error::Error for IntervalError {}

/// Parses a sweep interval: `off` or `0` (never: [`Duration::ZERO`]), whole seconds (`900`), or
/// a whole number with a unit `s`, `m`, `h` or `d` (`90s`, `15m`, `1h`, `1d`), at most 7 days.
pub fn parse_interval(text: &str) -> Result<Duration, IntervalError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(IntervalError::Syntax);
    }
    let amount: u64 = number.parse().map_err(|_| IntervalError::TooLong)?;
    let scale: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(IntervalError::Syntax),
    };
    let seconds = amount.checked_mul(scale).ok_or(IntervalError::TooLong)?;
    let interval = Duration::from_secs(seconds);
    if interval > MAX_SWEEP_INTERVAL {
        return Err(IntervalError::TooLong);
    }
    Ok(interval)
}

/// Runs sweeps for the server: on the blocking pool, counted, logged.
#[derive(Debug, Clone)]
pub struct Sweeper {
    vault: Arc<Vault>,
    metrics: Metrics,
}

impl Sweeper {
    /// A sweeper over the state's vault, counting into its metrics.
    pub fn new(state: &ServerState) -> Self {
        Self {
            vault: state.vault().clone(),
            metrics: state.metrics().clone(),
        }
    }

    /// Sweeps once (or counts, in a dry run) as `actor`, in batches of [`SWEEP_BATCH`]. A real
    /// sweep is counted in the metrics, success or failure; every run is logged with its counts
    /// (never an id or a value).
    pub async fn sweep(
        &self,
        dry_run: bool,
        actor: String,
        trigger: SweepTrigger,
    ) -> Result<SweepReport, ApiError> {
        let started = Instant::now();
        let vault = self.vault.clone();
        let result = tokio::task::spawn_blocking(move || {
            vault.sweep(dry_run, SWEEP_BATCH, &actor, &mut |_: u64, _: u64| {})
        })
        .await;
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(Ok(report)) => {
                if !dry_run {
                    self.metrics.observe_sweep(trigger.as_str(), Some(&report));
                }
                tracing::info!(
                    target: "custodia::sweep",
                    trigger = trigger.as_str(),
                    dry_run,
                    deleted = report.deleted,
                    media_deleted = report.media_deleted,
                    held = report.held,
                    rules = report.by_rule.len(),
                    took_ms,
                    "retention sweep finished"
                );
                Ok(report)
            }
            Ok(Err(err)) => {
                if !dry_run {
                    self.metrics.observe_sweep(trigger.as_str(), None);
                }
                tracing::warn!(
                    target: "custodia::sweep",
                    trigger = trigger.as_str(),
                    dry_run,
                    code = err.code(),
                    took_ms,
                    "retention sweep failed; the next one carries on"
                );
                Err(err.into())
            }
            Err(_) => {
                if !dry_run {
                    self.metrics.observe_sweep(trigger.as_str(), None);
                }
                tracing::warn!(
                    target: "custodia::sweep",
                    trigger = trigger.as_str(),
                    dry_run,
                    "retention sweep task failed; the next one carries on"
                );
                Err(ApiError::Internal)
            }
        }
    }

    /// One scheduled sweep, as the schedule runs it (errors are logged and counted, and the
    /// next tick tries again).
    pub async fn run_once(&self) -> Result<SweepReport, ApiError> {
        self.sweep(false, SCHEDULED_ACTOR.to_owned(), SweepTrigger::Scheduled)
            .await
    }
}

/// The scheduled sweeper, running.
#[derive(Debug)]
pub struct SweeperHandle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SweeperHandle {
    /// Stops the schedule: no sweep starts after this, and one under way is let finish before
    /// this returns.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Starts the scheduled sweeper: a sweep at once, then one every `sweep_interval` of the
/// state's options (a late sweep pushes the next one back rather than running two in a row).
/// Returns `None` when the interval is zero. Must be called inside a Tokio runtime.
pub fn spawn_sweeper(state: &ServerState) -> Option<SweeperHandle> {
    let every = state.options().sweep_interval;
    if every.is_zero() {
        return None;
    }
    let sweeper = Sweeper::new(state);
    tracing::info!(
        target: "custodia::sweep",
        interval_seconds = every.as_secs_f64(),
        "retention sweeper scheduled"
    );
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = ticker.tick() => {}
            }
            // Failures are logged and counted inside; the schedule carries on.
            let _ = sweeper.run_once().await;
        }
    });
    Some(SweeperHandle {
        stop: Some(stop),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_units_off_and_bounds() {
        let secs = Duration::from_secs;
        assert_eq!(parse_interval("900"), Ok(secs(900)));
        assert_eq!(parse_interval("90s"), Ok(secs(90)));
        assert_eq!(parse_interval("15m"), Ok(secs(900)));
        assert_eq!(parse_interval(" 1h "), Ok(secs(3600)));
        assert_eq!(parse_interval("1d"), Ok(secs(86_400)));
        assert_eq!(parse_interval("7d"), Ok(MAX_SWEEP_INTERVAL));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("0m"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("off"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("OFF"), Ok(Duration::ZERO));
        for bad in ["", "m", "15 m", "1.5h", "-1", "15min", "1h30m", "on", "1w"] {
            assert_eq!(parse_interval(bad), Err(IntervalError::Syntax), "{bad:?}");
        }
        for long in [
            "8d",
            "604801",
            "99999999999999999999999",
            "18446744073709551615d",
        ] {
            assert_eq!(
                parse_interval(long),
                Err(IntervalError::TooLong),
                "{long:?}"
            );
        }
    }

    #[test]
    fn the_default_is_an_hour() {
        assert_eq!(DEFAULT_SWEEP_INTERVAL, Duration::from_secs(3600));
        assert_eq!(
            parse_interval("1h"),
            Ok(DEFAULT_SWEEP_INTERVAL),
            "the documented default parses to itself"
        );
    }
}
