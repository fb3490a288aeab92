//! A progress line on stderr for long work (listing thousands of tags, cloning, discovery),
//! drawn only when stderr is a terminal: scripts and CI logs see nothing of it.

use std::io::{IsTerminal, stderr};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One progress line, a spinner with the step at hand or a bar counting items; hidden when
/// stderr is not a terminal.
pub(crate) struct Progress {
    line: ProgressBar,
}

impl Progress {
    /// A line that draws only when stderr is a terminal.
    pub(crate) fn new() -> Progress {
        let line = if stderr().is_terminal() {
            let line = ProgressBar::new_spinner();
            line.enable_steady_tick(Duration::from_millis(120));
            line
        } else {
            ProgressBar::hidden()
        };
        Progress { line }
    }

    /// Shows a spinner with `step`, e.g. `cloning the repository`.
    pub(crate) fn spin(&self, step: String) {
        self.line.set_style(ProgressStyle::default_spinner());
        self.line.set_length(0);
        self.line.set_message(step);
    }

    /// Counts `len` items of `step`; the returned bar is the same line.
    pub(crate) fn bar(&self, len: u64, step: String) -> &ProgressBar {
        let style = ProgressStyle::with_template("{spinner} {msg} {pos}/{len} [{bar:30}]")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        self.line.set_style(style);
        self.line.set_position(0);
        self.line.set_length(len);
        self.line.set_message(step);
        &self.line
    }

    /// Clears the line, before the result is printed.
    pub(crate) fn finish(&self) {
        self.line.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.line.finish_and_clear();
    }
}
