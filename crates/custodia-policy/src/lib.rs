//! Custodia's policy as code: the operator's privacy policy as a checked TOML file.
//!
//! - [`model`]: the types of the file, with source spans;
//! - [`source`]: reading and parsing a file, positions for messages;
//! - [`check`]: cross-references and the legal lint rules, each citing its article;
//! - [`render`]: the human-readable policy (Markdown, HTML) generated from the file;
//! - [`diff`]: what changed between two versions, and which changes are material;
//! - [`duration`]: retention periods and response deadlines;
//! - [`taxonomy`]: the embedded fideslang keys that category and purpose keys align with.
//!
//! Everything downstream (the vault, the gate, retention, requests) reads a [`Policy`] that has
//! passed [`check`]; [`load`] is the one call that gives it.

pub mod check;
pub mod diff;
pub mod duration;
pub mod error;
pub mod model;
pub mod render;
pub mod source;
pub mod taxonomy;

use std::path::Path;

pub use check::{Finding, Severity, check};
pub use duration::{Deadline, DurationUnit, PolicyDuration};
pub use error::PolicyError;
pub use model::Policy;
pub use source::{Location, Source};

/// A parsed policy with its source and the checker's findings.
#[derive(Debug, Clone)]
pub struct CheckedPolicy {
    /// The file it came from.
    pub source: Source,
    /// The parsed model.
    pub policy: Policy,
    /// Everything the checker found; empty for a clean file.
    pub findings: Vec<Finding>,
}

impl CheckedPolicy {
    /// Parses and checks a source already in memory.
    pub fn from_source(source: Source) -> Result<Self, PolicyError> {
        let policy = source.parse()?;
        let findings = check(&source, &policy);
        Ok(Self {
            source,
            policy,
            findings,
        })
    }

    /// Whether the checker found nothing.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Reads, parses and checks a policy file.
pub fn load(path: &Path) -> Result<CheckedPolicy, PolicyError> {
    CheckedPolicy::from_source(Source::read(path)?)
}
