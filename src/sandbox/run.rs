//! Builder side of a step: start `xbake __step` with the spec, stream its output line by
//! line, and collect how it ended.

use super::SandboxError;
use super::init::STEP_ARG;
use super::spec::StepSpec;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

/// How many trailing output lines a failed step's error shows.
pub const TAIL_LINES: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepExit {
    Code(i32),
    Signal(i32),
}

impl StepExit {
    pub fn success(&self) -> bool {
        *self == StepExit::Code(0)
    }
}

impl std::fmt::Display for StepExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepExit::Code(c) => write!(f, "exit code {c}"),
            StepExit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| s.to_string());
                write!(f, "killed by signal {name}")
            }
        }
    }
}

#[derive(Debug)]
pub struct StepResult {
    pub exit: StepExit,
    /// The last [`TAIL_LINES`] lines of output.
    pub tail: Vec<String>,
}

/// Runs one step to completion. `on_line` sees every output line as it arrives.
pub fn run_step(
    spec: &StepSpec,
    on_line: &mut dyn FnMut(&str),
) -> Result<StepResult, SandboxError> {
    let io = |what: &'static str| move |source| SandboxError::Io { what, source };
    let (mut ours, theirs) = UnixStream::pair().map_err(io("creating the control socket"))?;
    let (output, output_w) = std::io::pipe().map_err(io("creating the output pipe"))?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(STEP_ARG)
        .env_clear()
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(
            output_w
                .try_clone()
                .map_err(io("duplicating the output pipe"))?,
        ))
        .stderr(Stdio::from(output_w));
    let mut child = cmd.spawn().map_err(io("starting the step process"))?;
    // The Command still holds our copies of the pipe's write end; without this drop the
    // output would never reach end-of-file.
    drop(cmd);

    let json = serde_json::to_vec(spec).map_err(|e| SandboxError::Io {
        what: "encoding the step spec",
        source: std::io::Error::other(e),
    })?;
    ours.write_all(&json).map_err(io("sending the step spec"))?;
    ours.shutdown(std::net::Shutdown::Write)
        .map_err(io("sending the step spec"))?;

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut reader = BufReader::new(output);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(io("reading the step's output"))?;
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        on_line(line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }

    let mut report = String::new();
    ours.read_to_string(&mut report)
        .map_err(io("reading the step's status"))?;
    let status = child.wait().map_err(io("waiting for the step process"))?;
    let parsed = parse_report(&report);
    if let Some(message) = parsed.error {
        return Err(SandboxError::StepSetup { message });
    }
    let exit = parsed.exit.ok_or_else(|| SandboxError::StepSetup {
        message: format!(
            "the step process ended without a status ({status}); output: {}",
            tail.iter().cloned().collect::<Vec<_>>().join(" | ")
        ),
    })?;
    Ok(StepResult {
        exit,
        tail: tail.into(),
    })
}

#[derive(Debug, Default, PartialEq)]
struct Report {
    error: Option<String>,
    exit: Option<StepExit>,
}

fn parse_report(text: &str) -> Report {
    let mut report = Report::default();
    for line in text.lines() {
        if let Some(msg) = line.strip_prefix("error: ") {
            report.error.get_or_insert_with(|| msg.to_string());
        } else if report.exit.is_some() {
            // The first status is the command's; later ones are the monitor's.
            continue;
        } else if let Some(code) = line.strip_prefix("exit: ") {
            report.exit = code.trim().parse().ok().map(StepExit::Code);
        } else if let Some(sig) = line.strip_prefix("signal: ") {
            report.exit = sig.trim().parse().ok().map(StepExit::Signal);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_parsed() {
        assert_eq!(
            parse_report("exit: 3\n"),
            Report {
                error: None,
                exit: Some(StepExit::Code(3))
            }
        );
        assert_eq!(
            parse_report("error: executing /bin/sh: No such file\nexit: 127\n")
                .error
                .as_deref(),
            Some("executing /bin/sh: No such file")
        );
        assert_eq!(parse_report("signal: 9\n").exit, Some(StepExit::Signal(9)));
        assert_eq!(
            parse_report("signal: 4\nexit: 0\n").exit,
            Some(StepExit::Signal(4)),
            "pid 1's report of the command wins over the monitor's"
        );
        assert_eq!(parse_report("").exit, None);
        assert_eq!(StepExit::Signal(9).to_string(), "killed by signal SIGKILL");
        assert_eq!(StepExit::Code(2).to_string(), "exit code 2");
    }
}
