//! The progress bar a sync shows on a terminal, and the lines it writes elsewhere.

use std::io::IsTerminal as _;

/// A progress bar on a terminal; plain lines at every tenth otherwise.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    name: String,
    total: u64,
    done: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub(super) fn new(name: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {human_pos}/{human_len} changes, {eta} left")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_message(name.to_owned());
            bar
        });
        Progress { bar, name: name.to_owned(), total, done: Default::default() }
    }

    pub(super) fn advance(&self, by: u64, err: &mut dyn std::io::Write) {
        let before = self.done.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
        match &self.bar {
            Some(bar) => bar.inc(by),
            None => {
                let tenth = (self.total / 10).max(1);
                if (before + by) / tenth > before / tenth {
                    // Progress is a courtesy: a line that cannot be written does not stop the sync.
                    let _ =
                        writeln!(err, "{}: {}/{} changes sent", self.name, (before + by).min(self.total), self.total);
                }
            }
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
