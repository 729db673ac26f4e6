//! `crypto_shred`: how long [`Vault::shred_subject`](custodia_vault::Vault::shred_subject) takes
//! for a subject holding ~100 MB (1 MiB recordings) against one holding ~1 KB, in the same vault.
//! Destroying a key should cost the same whatever it sealed: the design's target is the same
//! time, here within 1.5x.
//!
//! Several subjects of each size are shredded, alternately, and the median time of each size is
//! reported; `rate` is one over the large subject's time, `baseline_rate` one over the small
//! one's, and `ratio` the large time over the small time (lower is better, unlike the others).

use std::path::Path;

use custodia_core::SubjectId;
use custodia_vault::NewRecord;

use crate::fixture::{self, ACTOR, Filler, RECORDING};
use crate::measure::{self, Plan, Sample};
use crate::{BenchError, Figure};

/// The large subjects' records are 1 MiB each.
const BIG_VALUE: usize = 1 << 20;

/// Large records written per commit: bounds the memory a batch holds.
const BIG_BATCH: usize = 8;

/// The target: the large subject's time at most this multiple of the small one's.
const MAX_RATIO: f64 = 1.5;

/// Measures the figure in `work/shred`.
///
/// # Errors
/// [`BenchError`] if the vault fails.
pub fn run(plan: &Plan, work: &Path, progress: &mut dyn FnMut(&str)) -> Result<Figure, BenchError> {
    let bench = fixture::open_vault(&work.join("shred"))?;
    let vault = &bench.vault;
    let count = plan.shred_subjects;
    let mut filler = Filler::new(0x5EED);
    // One more small subject than measured: the first shred warms up the statements and caches.
    let small = fixture::create_subjects(vault, "small", count + 1)?;
    let big = fixture::create_subjects(vault, "big", count)?;
    let small_value = filler.bytes(plan.shred_small_bytes);
    let (category, purpose) = RECORDING;
    for subject in &small {
        vault.write_records(
            *subject,
            &[NewRecord {
                category,
                purpose,
                value: &small_value,
            }],
            ACTOR,
        )?;
    }
    let big_value = filler.bytes(BIG_VALUE);
    for (n, subject) in big.iter().enumerate() {
        progress(&format!(
            "  filling large subject {} of {count} with {} MiB",
            n + 1,
            plan.shred_big_mib
        ));
        let mut left = plan.shred_big_mib;
        while left > 0 {
            let take = left.min(BIG_BATCH);
            let records = vec![
                NewRecord {
                    category,
                    purpose,
                    value: &big_value,
                };
                take
            ];
            vault.write_records(*subject, &records, ACTOR)?;
            left -= take;
        }
    }

    let shred = |subject: SubjectId| -> Result<Sample, BenchError> {
        measure::time(|| Ok(vault.shred_subject(subject, ACTOR)? as u64))
    };
    let mut small_ids = small.iter();
    if let Some(warm) = small_ids.next() {
        shred(*warm)?;
    }
    let (mut small_secs, mut big_secs) = (Vec::new(), Vec::new());
    for (n, (small, big)) in small_ids.zip(&big).enumerate() {
        // Alternate which goes first, so neither size always follows the other's fsyncs.
        let (first, second) = if n % 2 == 0 {
            (shred(*small)?, shred(*big)?)
        } else {
            let big = shred(*big)?;
            (shred(*small)?, big)
        };
        small_secs.push(first.elapsed.as_secs_f64());
        big_secs.push(second.elapsed.as_secs_f64());
    }
    // Never zero, so the ratio and the rates stay finite.
    let small_time = measure::median(small_secs).max(1e-9);
    let big_time = measure::median(big_secs).max(1e-9);
    let ratio = big_time / small_time;
    Ok(Figure {
        name: "crypto_shred".to_owned(),
        unit: "shreds/s".to_owned(),
        rate: 1.0 / big_time,
        baseline: format!(
            "Vault::shred_subject of a subject holding ~1 KB (one {}-byte record), against \
             `rate` for a subject holding {} MiB in 1 MiB records; median of {count} each",
            plan.shred_small_bytes, plan.shred_big_mib
        ),
        baseline_rate: 1.0 / small_time,
        ratio,
        target: format!(
            "time({} MiB) <= {MAX_RATIO}x of the 1 KB time",
            plan.shred_big_mib
        ),
        meets_target: ratio <= MAX_RATIO,
    })
}
