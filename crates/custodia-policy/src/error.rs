//! Errors that stop a policy file from being read at all. Problems in a file that parses are
//! [`crate::check::Finding`]s instead, so that all of them are reported together.

use std::path::PathBuf;

use crate::source::Location;

/// A policy file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read, or is not UTF-8.
    #[error("{path}: cannot read policy file: {reason}", path = path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML, or a value has the wrong shape.
    #[error("{path}{at}: {message}", path = path.display(), at = at(location))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where, when known.
        location: Option<Location>,
        /// What is wrong.
        message: String,
    },
}

fn at(location: &Option<Location>) -> String {
    location.map_or_else(String::new, |l| format!(":{}:{}", l.line, l.column))
}

impl PolicyError {
    /// A stable code for machines.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "policy.unreadable",
            Self::Syntax { .. } => "policy.syntax",
        }
    }
}
