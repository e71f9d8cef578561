//! The progress bar on standard error, for a person watching a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether to show progress: only to a person at a terminal, and never with
/// `--json`, whose reader wants the object and nothing around it.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A progress bar, or nothing when none is wanted.
#[derive(Debug)]
pub struct Progress {
    /// The bar; `None` makes every method do nothing.
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar on standard error if `enabled`.
    pub fn new(enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(style("{spinner} {msg}"));
            bar
        });
        Progress { bar }
    }

    /// Shows how many of `total` connects have completed or failed.
    pub fn connecting(&self, settled: u64, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("connecting: {settled}/{total}"));
            bar.tick();
        }
    }

    /// Turns the spinner into a bar over `duration`, once measuring starts.
    pub fn measuring(&self, duration: Duration) {
        if let Some(bar) = &self.bar {
            bar.set_style(style("[{bar:40}] {msg}"));
            bar.set_length(millis(duration));
            bar.set_position(0);
        }
    }

    /// Shows the time measured so far and the messages it has seen.
    pub fn measured(&self, elapsed: Duration, messages: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(millis(elapsed));
            bar.set_message(format!(
                "{:.1}s, {messages} messages",
                elapsed.as_secs_f64()
            ));
        }
    }

    /// Prints `line` on standard error, above the bar if there is one.
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar before the report is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The style of `template`.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are constants that indicatif accepts")
        .progress_chars("=> ")
}

/// `duration` in whole milliseconds, the bar's unit.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
