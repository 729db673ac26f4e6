//! Progress for long operations on stderr: a line redrawn in place on a terminal, an occasional
//! line otherwise, nothing when output is meant for machines.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Reports `done/total` for one operation.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    quiet: bool,
    terminal: bool,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    /// A reporter; `quiet` suppresses everything (JSON output).
    pub fn new(label: &'static str, quiet: bool) -> Self {
        Self {
            label,
            quiet,
            terminal: std::io::stderr().is_terminal(),
            last: None,
            shown: false,
        }
    }

    /// Reports progress, at most every 100 ms on a terminal and every 2 s otherwise.
    pub fn update(&mut self, done: u64, total: u64) {
        if self.quiet {
            return;
        }
        let interval = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        };
        if self.last.is_some_and(|last| last.elapsed() < interval) {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        let text = if total > 0 {
            format!("{}: {done}/{total}", self.label)
        } else {
            format!("{}: {done}", self.label)
        };
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{text}\u{1b}[K")
        } else {
            writeln!(err, "{text}")
        };
    }

    /// Ends the progress line.
    pub fn finish(&mut self, done: u64) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.terminal && self.shown {
            let _ = writeln!(err, "\r{}: {done} done\u{1b}[K", self.label);
        }
    }
}
