//! Build progress on stderr: `[arm64 2/4] RUN …` headers and prefixed step output,
//! one line at a time so platforms building side by side never interleave mid-line.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// Every step header and every output line.
    Plain,
    /// Nothing but warnings and errors.
    Quiet,
}

impl std::str::FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" | "auto" | "tty" => Ok(ProgressMode::Plain),
            "quiet" => Ok(ProgressMode::Quiet),
            other => Err(format!(
                "unknown progress mode {other:?}; use plain or quiet"
            )),
        }
    }
}

#[derive(Clone)]
pub struct Progress {
    mode: ProgressMode,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        Progress::to(mode, Box::new(std::io::stderr()))
    }

    pub fn to(mode: ProgressMode, out: Box<dyn Write + Send>) -> Progress {
        Progress {
            mode,
            out: Arc::new(Mutex::new(out)),
        }
    }

    fn line(&self, text: &str) {
        // A poisoned lock only means another thread panicked mid-write; keep printing.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{text}");
    }

    /// A line shown in plain mode.
    pub fn info(&self, prefix: &str, text: &str) {
        if self.mode == ProgressMode::Plain {
            self.line(&format!("[{prefix}] {text}"));
        }
    }

    /// An unprefixed line shown in plain mode: the build's own phases (output, summary).
    pub fn note(&self, text: &str) {
        if self.mode == ProgressMode::Plain {
            self.line(text);
        }
    }

    /// Whether plain lines are shown: lets a caller skip work only they need.
    pub fn is_plain(&self) -> bool {
        self.mode == ProgressMode::Plain
    }

    /// A line shown in every mode.
    pub fn warn(&self, prefix: &str, text: &str) {
        self.line(&format!("[{prefix}] warning: {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn quiet_mode_keeps_only_warnings() {
        let sink = Sink::default();
        let p = Progress::to(ProgressMode::Quiet, Box::new(sink.clone()));
        p.info("arm64 1/2", "RUN true");
        p.warn("arm64", "skipped device /dev/console");
        p.note("output: wrote oci:o:latest");
        let plain = Progress::to(ProgressMode::Plain, Box::new(sink.clone()));
        plain.info("arm/v7 2/2", "hello");
        plain.note("summary: built in 1.00 s");
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "[arm64] warning: skipped device /dev/console\n[arm/v7 2/2] hello\n\
             summary: built in 1.00 s\n"
        );
        assert!("loud".parse::<ProgressMode>().is_err());
    }
}
