//! [`Report`] and [`Figure`]: what a benchmark run measured, serialisable as JSON for machines
//! and printable as a table for people.

use std::fmt;

use serde::Serialize;

/// One benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which benchmark: `vault`.
    pub bench: String,
    /// `release` or `debug`: debug figures say little about production speed.
    pub build: String,
    /// The figures, in the order they were measured.
    pub figures: Vec<Figure>,
}

impl Report {
    /// A report of `bench` for this build.
    #[must_use]
    pub fn new(bench: &str, figures: Vec<Figure>) -> Self {
        let build = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        Self {
            bench: bench.to_owned(),
            build: build.to_owned(),
            figures,
        }
    }

    /// Whether every figure meets its target.
    #[must_use]
    pub fn meets_targets(&self) -> bool {
        self.figures.iter().all(|figure| figure.meets_target)
    }
}

/// One measured figure beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// A stable name, such as `field_seal`.
    pub name: String,
    /// The unit of `rate` and `baseline_rate`, such as `ops/s`.
    pub unit: String,
    /// What Custodia achieved.
    pub rate: f64,
    /// What the baseline is.
    pub baseline: String,
    /// What the baseline achieved, in the same unit.
    pub baseline_rate: f64,
    /// `rate / baseline_rate`, unless `target` says otherwise.
    pub ratio: f64,
    /// The target, in words.
    pub target: String,
    /// Whether the target is met.
    pub meets_target: bool,
}

impl Figure {
    /// A figure whose target is a minimum ratio to the baseline.
    #[must_use]
    pub fn min_ratio(
        name: &str,
        unit: &str,
        rate: f64,
        baseline: &str,
        baseline_rate: f64,
        min: f64,
    ) -> Self {
        let ratio = rate / baseline_rate;
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            rate,
            baseline: baseline.to_owned(),
            baseline_rate,
            ratio,
            target: format!("ratio >= {min}"),
            meets_target: ratio >= min,
        }
    }
}

impl Figure {
    /// A figure whose target is a maximum ratio to the baseline (memory, time): `ratio` is
    /// `rate / baseline_rate` and must stay at or below `max`.
    #[must_use]
    pub fn max_ratio(
        name: &str,
        unit: &str,
        rate: f64,
        baseline: &str,
        baseline_rate: f64,
        max: f64,
    ) -> Self {
        let ratio = rate / baseline_rate;
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            rate,
            baseline: baseline.to_owned(),
            baseline_rate,
            ratio,
            target: format!("ratio <= {max}"),
            meets_target: ratio <= max,
        }
    }

    /// A figure reported for context, with no target of its own.
    #[must_use]
    pub fn context(name: &str, unit: &str, rate: f64, baseline: &str, baseline_rate: f64) -> Self {
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            rate,
            baseline: baseline.to_owned(),
            baseline_rate,
            ratio: rate / baseline_rate,
            target: "context only".to_owned(),
            meets_target: true,
        }
    }
}

impl fmt::Display for Report {
    /// A table: one line per figure, then whether every target is met.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "custodia bench {} ({} build)", self.bench, self.build)?;
        if self.build == "debug" {
            writeln!(
                f,
                "warning: a debug build; only release figures mean anything"
            )?;
        }
        writeln!(
            f,
            "{:<17} {:>14} {:>14}  {:<10} {:>8}  {:<40} result",
            "figure", "rate", "baseline", "unit", "ratio", "target"
        )?;
        for figure in &self.figures {
            writeln!(
                f,
                "{:<17} {:>14} {:>14}  {:<10} {:>8.3}  {:<40} {}",
                figure.name,
                Rate(figure.rate),
                Rate(figure.baseline_rate),
                figure.unit,
                figure.ratio,
                figure.target,
                if figure.meets_target { "ok" } else { "MISSED" }
            )?;
        }
        writeln!(f)?;
        for figure in &self.figures {
            writeln!(f, "{}: baseline is {}", figure.name, figure.baseline)?;
        }
        let missed = self.figures.iter().filter(|f| !f.meets_target).count();
        if missed == 0 {
            writeln!(f, "every target met")
        } else {
            writeln!(f, "{missed} target(s) missed")
        }
    }
}

/// A rate with few significant digits: small rates (the inverse of seconds) need decimals, large
/// ones do not.
struct Rate(f64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if self.0 >= 1000.0 {
            format!("{:.0}", self.0)
        } else {
            format!("{:.2}", self.0)
        };
        f.pad(&text)
    }
}
