//! Timing: the sizes and time budgets of a run ([`Plan`]), and measuring two workloads in
//! alternation so that whatever else the machine is doing slows both sides alike.
//!
//! Each workload is run in slices (a few thousand operations, one batch), and the slices of the
//! two sides alternate, swapping which goes first every round, so neither side always runs on a
//! cold cache or right after the other's fsync. Wall-clock [`Instant`] is the right clock here:
//! this measures speed, not behaviour, so nothing is injected.

use std::time::{Duration, Instant};

use crate::BenchError;

/// Sizes and time budgets of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Operations per timed slice of a micro-benchmark.
    pub micro_slice: usize,
    /// Wall time for each micro-benchmark, both sides together.
    pub micro_budget: Duration,
    /// Records ingested on each side.
    pub ingest_records: usize,
    /// Records per ingest batch (one commit).
    pub ingest_batch: usize,
    /// Subjects the ingested records are spread over.
    pub ingest_subjects: usize,
    /// Bytes of each ingested value, and of each field sealed.
    pub value_len: usize,
    /// Subjects of each size shredded; the median is reported.
    pub shred_subjects: usize,
    /// MiB held by each large subject, in 1 MiB values.
    pub shred_big_mib: usize,
    /// Bytes held by each small subject, in one value.
    pub shred_small_bytes: usize,
    /// Audit events per commit.
    pub audit_batch: usize,
    /// At most this many audit batches on each side.
    pub audit_max_batches: usize,
    /// Wall time for the audit benchmark, both sides together.
    pub audit_budget: Duration,
}

impl Plan {
    /// The full run (under a minute in release), or the quick one (seconds).
    #[must_use]
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                micro_slice: 5_000,
                micro_budget: Duration::from_millis(400),
                ingest_records: 5_000,
                ingest_batch: 1_000,
                ingest_subjects: 100,
                value_len: 100,
                shred_subjects: 3,
                shred_big_mib: 10,
                shred_small_bytes: 1_024,
                audit_batch: 1_000,
                audit_max_batches: 10,
                audit_budget: Duration::from_millis(600),
            }
        } else {
            Self {
                micro_slice: 20_000,
                micro_budget: Duration::from_secs(3),
                ingest_records: 100_000,
                ingest_batch: 1_000,
                ingest_subjects: 100,
                value_len: 100,
                shred_subjects: 5,
                shred_big_mib: 100,
                shred_small_bytes: 1_024,
                audit_batch: 1_000,
                audit_max_batches: 200,
                audit_budget: Duration::from_secs(6),
            }
        }
    }
}

/// One timed slice: how many items it processed, in how long.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Items processed.
    pub items: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Sample {
    /// Items per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        rate(self.items, self.elapsed)
    }
}

/// Times `work`, which returns how many items it processed.
///
/// # Errors
/// Whatever `work` returns.
pub fn time(work: impl FnOnce() -> Result<u64, BenchError>) -> Result<Sample, BenchError> {
    let start = Instant::now();
    let items = work()?;
    Ok(Sample {
        items,
        elapsed: start.elapsed(),
    })
}

/// `items / elapsed`; never zero or infinite, so ratios stay finite even for a slice too fast
/// for the clock.
#[must_use]
pub fn rate(items: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    (items.max(1) as f64) / seconds
}

/// How long to keep alternating: at least `min` rounds, then until `budget` has passed or `max`
/// rounds are done.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    /// Rounds always run.
    pub min: usize,
    /// Rounds never exceeded.
    pub max: usize,
    /// Wall time after which no new round starts (once `min` are done).
    pub budget: Duration,
}

/// Runs one untimed slice of each side (warm-up), then alternates timed slices of `a` and `b`
/// as `rounds` says; returns the samples of each side.
///
/// # Errors
/// The first error of either side.
pub fn alternate(
    rounds: Rounds,
    a: &mut dyn FnMut() -> Result<Sample, BenchError>,
    b: &mut dyn FnMut() -> Result<Sample, BenchError>,
) -> Result<(Vec<Sample>, Vec<Sample>), BenchError> {
    a()?;
    b()?;
    let start = Instant::now();
    let (mut samples_a, mut samples_b) = (Vec::new(), Vec::new());
    for round in 0..rounds.max {
        if round >= rounds.min && start.elapsed() >= rounds.budget {
            break;
        }
        if round % 2 == 0 {
            samples_a.push(a()?);
            samples_b.push(b()?);
        } else {
            samples_b.push(b()?);
            samples_a.push(a()?);
        }
    }
    Ok((samples_a, samples_b))
}

/// The median of the slices' rates: one slice stalled by another process does not move it.
#[must_use]
pub fn median_rate(samples: &[Sample]) -> f64 {
    median(samples.iter().map(Sample::rate).collect())
}

/// All items over all time: the throughput a long run sees, periodic costs (checkpoints)
/// included.
#[must_use]
pub fn total_rate(samples: &[Sample]) -> f64 {
    let items = samples.iter().map(|s| s.items).sum();
    let elapsed = samples.iter().map(|s| s.elapsed).sum();
    rate(items, elapsed)
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
#[must_use]
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match (values.len() % 2, values.get(middle)) {
        (_, None) => 0.0,
        (1, Some(value)) => *value,
        (_, Some(upper)) => {
            let lower = middle.checked_sub(1).and_then(|i| values.get(i));
            lower.map_or(*upper, |lower| (lower + upper) / 2.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
