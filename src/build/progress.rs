//! Build progress on stderr. `plain`: `[arm64 2/4] RUN …` headers and prefixed step
//! output, one line at a time so platforms building side by side never interleave
//! mid-line. `quiet`: warnings and errors only. `rawjson`: one JSON event per line, for
//! CI (see [`Event`]). `tty`: one live line per stage build, redrawn in place, with
//! warnings and the summary above and below it. `auto`: tty on a terminal, else plain.

use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// Every step header and every output line.
    Plain,
    /// Nothing but warnings and errors.
    Quiet,
    /// One JSON object per line.
    RawJson,
    /// One live line per stage build (a terminal).
    Tty,
}

impl std::str::FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(ProgressMode::Plain),
            "quiet" => Ok(ProgressMode::Quiet),
            "rawjson" => Ok(ProgressMode::RawJson),
            "tty" => Ok(ProgressMode::Tty),
            "auto" if std::io::stderr().is_terminal() => Ok(ProgressMode::Tty),
            "auto" => Ok(ProgressMode::Plain),
            other => Err(format!(
                "unknown progress mode {other:?}; use auto, plain, tty, rawjson or quiet"
            )),
        }
    }
}

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Started,
    Cached,
    Done,
    Error,
}

/// One `rawjson` line. `platform` and `stage` come from the stage build's label
/// (`arm64`, `builder@amd64→arm64`); `step` is 1-based.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    /// Seconds since the build started.
    pub time: f64,
    /// `step`, `log`, `warning` or `info` (the build's own phases).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<StepState>,
    /// Seconds the step took (done, error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// The compressed size of the layer it made (done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
}

/// A stage build's label split: (platform, stage). `builder@amd64→arm64` builds for
/// arm64 on amd64: the platform is the target's.
fn split_label(label: &str) -> (&str, Option<&str>) {
    match label.split_once('@') {
        None => (label, None),
        Some((stage, rest)) => (rest.rsplit('→').next().unwrap_or(rest), Some(stage)),
    }
}

/// `arm64 2/4` → (`arm64`, Some((2, 4))); `arm64` → (`arm64`, None).
fn split_prefix(prefix: &str) -> (&str, Option<(usize, usize)>) {
    if let Some((label, counts)) = prefix.rsplit_once(' ')
        && let Some((n, t)) = counts.split_once('/')
        && let (Ok(n), Ok(t)) = (n.parse(), t.parse())
    {
        return (label, Some((n, t)));
    }
    (prefix, None)
}

/// The live lines of `tty` mode: one per stage build, in the order they appeared.
#[derive(Default)]
struct Live {
    lines: Vec<(String, String)>,
    /// How many lines were drawn last (to move back over).
    drawn: usize,
}

#[derive(Clone)]
pub struct Progress {
    mode: ProgressMode,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    live: Arc<Mutex<Live>>,
    started: Instant,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        Progress::to(mode, Box::new(std::io::stderr()))
    }

    pub fn to(mode: ProgressMode, out: Box<dyn Write + Send>) -> Progress {
        Progress {
            mode,
            out: Arc::new(Mutex::new(out)),
            live: Arc::new(Mutex::new(Live::default())),
            started: Instant::now(),
        }
    }

    fn line(&self, text: &str) {
        if self.mode == ProgressMode::Tty {
            return self.above_live(text);
        }
        // A poisoned lock only means another thread panicked mid-write; keep printing.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{text}");
    }

    fn event(&self, event: &Event) {
        if let Ok(json) = serde_json::to_string(event) {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{json}");
        }
    }

    fn base_event<'a>(&self, kind: &'static str, prefix: Option<&'a str>) -> Event<'a> {
        let (label, counts) = prefix.map_or(("", None), split_prefix);
        // The build's own prefixes name no platform.
        let (platform, stage) = if label.is_empty() || label == "build" || label == "recipe" {
            (None, None)
        } else {
            let (p, s) = split_label(label);
            (Some(p), s)
        };
        Event {
            time: self.started.elapsed().as_secs_f64(),
            kind,
            platform,
            stage,
            step: counts.map(|c| c.0),
            total: counts.map(|c| c.1),
            state: None,
            duration: None,
            bytes: None,
            text: None,
        }
    }

    /// A line shown in plain mode (a log event in rawjson, the stage's live line in tty).
    pub fn info(&self, prefix: &str, text: &str) {
        match self.mode {
            ProgressMode::Plain => self.line(&format!("[{prefix}] {text}")),
            ProgressMode::RawJson => self.event(&Event {
                text: Some(text),
                ..self.base_event("log", Some(prefix))
            }),
            ProgressMode::Tty => {
                let label = split_prefix(prefix).0;
                if label == "build" || label == "recipe" {
                    // The build's own lines stay, above the stage builds' live lines.
                    self.above_live(&format!("[{prefix}] {text}"));
                } else {
                    self.set_live(label, &format!("[{prefix}] {text}"));
                }
            }
            ProgressMode::Quiet => {}
        }
    }

    /// An unprefixed line shown in plain mode: the build's own phases (output, summary).
    /// They come after the stage builds: in tty mode the live lines stay as they were
    /// last drawn, and these follow below them.
    pub fn note(&self, text: &str) {
        match self.mode {
            ProgressMode::Tty => {
                let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
                live.lines.clear();
                live.drawn = 0;
                drop(live);
                let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(out, "{text}");
            }
            ProgressMode::Plain => self.line(text),
            ProgressMode::RawJson => self.event(&Event {
                text: Some(text),
                ..self.base_event("info", None)
            }),
            ProgressMode::Quiet => {}
        }
    }

    /// Whether plain lines are shown: lets a caller skip work only they need.
    pub fn is_plain(&self) -> bool {
        self.mode != ProgressMode::Quiet
    }

    /// A line shown in every mode.
    pub fn warn(&self, prefix: &str, text: &str) {
        match self.mode {
            ProgressMode::RawJson => self.event(&Event {
                text: Some(text),
                ..self.base_event("warning", Some(prefix))
            }),
            _ => self.line(&format!("[{prefix}] warning: {text}")),
        }
    }

    /// Where step `number` of `total` of the stage build `label` is: a `step` event in
    /// rawjson; nothing in the other modes, whose lines say it already.
    pub fn step(
        &self,
        label: &str,
        (number, total): (usize, usize),
        state: StepState,
        took: Option<Duration>,
        bytes: Option<u64>,
        text: Option<&str>,
    ) {
        if self.mode != ProgressMode::RawJson {
            return;
        }
        let prefix = format!("{label} {number}/{total}");
        self.event(&Event {
            state: Some(state),
            duration: took.map(|d| d.as_secs_f64()),
            bytes,
            text,
            ..self.base_event("step", Some(&prefix))
        });
    }

    /// The build's outcome: a `result` event in rawjson (the digest is on stdout in
    /// every mode).
    pub fn result(&self, digest: &str, steps_run: usize, steps_cached: usize) {
        if self.mode != ProgressMode::RawJson {
            return;
        }
        #[derive(Serialize)]
        struct Outcome<'a> {
            time: f64,
            kind: &'static str,
            digest: &'a str,
            steps_run: usize,
            steps_cached: usize,
        }
        if let Ok(json) = serde_json::to_string(&Outcome {
            time: self.started.elapsed().as_secs_f64(),
            kind: "result",
            digest,
            steps_run,
            steps_cached,
        }) {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{json}");
        }
    }

    fn set_live(&self, label: &str, text: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        // One line each: a step's output line must not wrap the display.
        let text: String = text.chars().filter(|c| !c.is_control()).take(160).collect();
        match live.lines.iter_mut().find(|(l, _)| l == label) {
            Some(slot) => slot.1 = text,
            None => live.lines.push((label.to_string(), text)),
        }
        self.redraw(&mut live, None);
    }

    fn above_live(&self, text: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        self.redraw(&mut live, Some(text));
    }

    /// Moves back over the live lines, prints `above` (if any) in their place, and draws
    /// them again below it.
    fn redraw(&self, live: &mut Live, above: Option<&str>) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        if live.drawn > 0 {
            text.push_str(&format!("\x1b[{}F", live.drawn));
        }
        if let Some(above) = above {
            text.push_str(&format!("\x1b[2K{above}\n"));
        }
        for (_, line) in &live.lines {
            text.push_str(&format!("\x1b[2K{line}\n"));
        }
        live.drawn = live.lines.len();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
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
    fn rawjson_events_name_platform_stage_and_step() {
        assert_eq!(split_label("arm64"), ("arm64", None));
        assert_eq!(split_label("builder@arm64"), ("arm64", Some("builder")));
        assert_eq!(
            split_label("builder@amd64→arm/v7"),
            ("arm/v7", Some("builder"))
        );
        assert_eq!(split_prefix("arm64 2/4"), ("arm64", Some((2, 4))));
        assert_eq!(split_prefix("builder@arm64"), ("builder@arm64", None));
        let sink = Sink::default();
        let p = Progress::to(ProgressMode::RawJson, Box::new(sink.clone()));
        p.info("builder@amd64→arm64 1/2", "RUN go build");
        p.step(
            "builder@amd64→arm64",
            (1, 2),
            StepState::Done,
            Some(Duration::from_millis(1500)),
            Some(42),
            None,
        );
        p.warn("arm64", "a warning");
        p.note("summary: built in 1.50 s");
        p.result("sha256:ab", 1, 0);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 5, "{text}");
        assert_eq!(events[0]["kind"], "log");
        assert_eq!(events[0]["platform"], "arm64");
        assert_eq!(events[0]["stage"], "builder");
        assert_eq!(events[0]["step"], 1);
        assert_eq!(events[0]["text"], "RUN go build");
        assert_eq!(events[1]["state"], "done");
        assert_eq!(events[1]["duration"], 1.5);
        assert_eq!(events[1]["bytes"], 42);
        assert_eq!(events[2]["kind"], "warning");
        assert_eq!(events[3]["kind"], "info");
        assert!(events[3].get("platform").is_none(), "{text}");
        assert_eq!(events[4]["kind"], "result");
        assert_eq!(events[4]["digest"], "sha256:ab");
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
