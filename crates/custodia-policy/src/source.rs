//! Reading a policy file: the source text, byte offsets to line and column, and the parse into
//! the [`Policy`] model with errors that point at the line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::PolicyError;
use crate::model::Policy;

/// A policy file's text and where it came from, for locating spans.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file name shown in messages.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    line_starts: Vec<usize>,
}

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// Line number, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Source {
    /// Wraps text already in memory.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// Reads a file; a missing file or one that is not UTF-8 is [`PolicyError::Unreadable`].
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|err| PolicyError::Unreadable {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|err| PolicyError::Unreadable {
            path: path.to_path_buf(),
            reason: format!(
                "not UTF-8 (invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        })?;
        Ok(Self::new(path, text))
    }

    /// The line and column of a byte offset.
    pub fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line_index = self
            .line_starts
            .partition_point(|start| *start <= offset)
            .saturating_sub(1);
        let line_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(0, |prefix| prefix.chars().count());
        Location {
            line: line_index + 1,
            column: column + 1,
        }
    }

    /// The location of the start of a span.
    pub fn locate_span(&self, span: &Range<usize>) -> Location {
        self.locate(span.start)
    }

    /// Parses the text into a policy. TOML syntax errors and values of the wrong shape are
    /// [`PolicyError::Syntax`], pointing at the line.
    pub fn parse(&self) -> Result<Policy, PolicyError> {
        toml::from_str::<Policy>(&self.text).map_err(|err| {
            let location = err.span().map(|span| self.locate(span.start));
            PolicyError::Syntax {
                path: self.path.clone(),
                location,
                message: err.message().trim().to_owned(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let source = Source::new("p.toml", "a = 1\nbé = 2\n");
        assert_eq!(source.locate(0), Location { line: 1, column: 1 });
        assert_eq!(source.locate(6), Location { line: 2, column: 1 });
        assert_eq!(source.locate(9), Location { line: 2, column: 3 });
        assert_eq!(source.locate(999).line, 3);
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let source = Source::new("p.toml", "version = \"1\"\nlaws = [\n");
        match source.parse() {
            Err(PolicyError::Syntax { location, .. }) => assert!(location.is_some()),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }
}
