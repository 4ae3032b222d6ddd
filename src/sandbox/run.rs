//! Builder side of a step: start `xbake __step` with the spec, stream its output line by
//! line, and collect how it ended.

use super::SandboxError;
use super::idmap;
use super::init::{CALLER_STDIN_FD, GO, READY, STEP_ARG};
use super::limits::LimitHit;
use super::limits::cgroup::{BuildCgroups, RealFs};
use super::spec::{NetworkMode, StepSpec};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
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
    /// The resource limit that explains a failure, if one does.
    pub limit: Option<LimitHit>,
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
    if spec.stdin_from_caller {
        let caller_stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io("duplicating stdin"))?;
        // SAFETY: the hook runs between fork and exec and only calls dup2(2), which is
        // async-signal-safe, on a descriptor this process owns (moved into the hook).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(caller_stdin.as_raw_fd(), CALLER_STDIN_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().map_err(io("starting the step process"))?;
    // The Command still holds our copies of the pipe's write end; without this drop the
    // output would never reach end-of-file.
    drop(cmd);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut child = Reaper(Some(child));

    let mut json = serde_json::to_vec(spec).map_err(|e| SandboxError::Io {
        what: "encoding the step spec",
        source: std::io::Error::other(e),
    })?;
    json.push(b'\n');
    ours.write_all(&json).map_err(io("sending the step spec"))?;
    let mut incoming = BufReader::new(
        ours.try_clone()
            .map_err(io("duplicating the control socket"))?,
    );
    let mut line = String::new();
    incoming
        .read_line(&mut line)
        .map_err(io("waiting for the step's namespaces"))?;
    if line.trim_end() != READY {
        // Set-up failed before the namespaces existed; the report says why.
        line.push_str(&read_rest(&mut incoming));
        let status = child.wait().map_err(io("waiting for the step process"))?;
        return Err(setup_failure(&line, &status.to_string()));
    }
    // Into the step's cgroup before anything runs: all its processes follow. Moving a
    // process between cgroups waits for an RCU grace period (10 to 15 ms here, on
    // cgroup v1 and v2 alike), so the network helper starts meanwhile, in a thread: it
    // connects the step's network namespace before the step starts, and ends when this
    // function returns, whichever way.
    let (cgroup, maps, network) = std::thread::scope(|scope| {
        let network = (spec.network == NetworkMode::Private)
            .then(|| scope.spawn(|| super::network::start(pid)));
        let cgroup = BuildCgroups::current().enter_step(&RealFs, &spec.limits, pid.as_raw());
        let maps = write_nested_maps(pid);
        let network = network.map(|started| {
            started.join().unwrap_or_else(|_| {
                Err(super::network::NetworkError::Failed {
                    helper: "the network helper".into(),
                    why: "its starting thread panicked".into(),
                    output: String::new(),
                })
            })
        });
        (cgroup, maps, network)
    });
    let _network = network.transpose()?;
    let cgroup = cgroup.map_err(|message| SandboxError::StepSetup { message })?;
    maps?;
    ours.write_all(format!("{GO}\n").as_bytes())
        .map_err(io("releasing the step"))?;
    ours.shutdown(std::net::Shutdown::Write)
        .map_err(io("releasing the step"))?;

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut reader = BufReader::new(output);
    let mut buf = Vec::new();
    while read_line_capped(&mut reader, &mut buf).map_err(io("reading the step's output"))? {
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        on_line(line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }

    let report = read_rest(&mut incoming);
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
    let limit = match (&cgroup, exit.success()) {
        (_, true) => None,
        (Some(cgroup), false) => cgroup.hit(),
        (None, false) => spec.limits.rlimit_hint(),
    };
    Ok(StepResult {
        exit,
        tail: tail.into(),
        limit,
    })
}

/// What is left on the control socket (the status lines); a read error ends it.
fn read_rest(incoming: &mut impl Read) -> String {
    let mut text = String::new();
    let _ = incoming.read_to_string(&mut text);
    text
}

fn setup_failure(report: &str, status: &str) -> SandboxError {
    let message = parse_report(report)
        .error
        .unwrap_or_else(|| format!("the step process ended during set-up ({status})"));
    SandboxError::StepSetup { message }
}

/// The nested user namespace's maps: the image's ids of the build namespace, as they
/// are, and nothing else (not the host ids a root build parks high, see idmap.rs).
/// Written from here, the parent namespace, where this process holds CAP_SETUID and
/// CAP_SETGID.
fn write_nested_maps(pid: nix::unistd::Pid) -> Result<(), SandboxError> {
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let write = |file: &str, text: &str| {
        std::fs::write(proc.join(file), text).map_err(|source| SandboxError::IdMap {
            detail: format!("writing {text:?} to /proc/{pid}/{file} (the step's namespace)"),
            source: Some(source),
        })
    };
    let own = |file: &str| {
        std::fs::read_to_string(Path::new("/proc/self").join(file)).map_err(|source| {
            SandboxError::IdMap {
                detail: format!("reading /proc/self/{file}"),
                source: Some(source),
            }
        })
    };
    write("uid_map", &idmap::nested_map(&own("uid_map")?))?;
    // A namespace that may not call setgroups(2) (a rootless build mapping only its
    // caller) can only create children that may not either; say so before gid_map.
    if own("setgroups").is_ok_and(|s| s.trim() == "deny") {
        write("setgroups", "deny")?;
    }
    write("gid_map", &idmap::nested_map(&own("gid_map")?))
}

/// The step process, killed and reaped if the builder gives up on it early (an error
/// while talking to it), so no step outlives its build step.
struct Reaper(Option<std::process::Child>);

impl Reaper {
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.0.take() {
            Some(mut child) => child.wait(),
            None => Err(std::io::Error::other("already waited")),
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Longest output line kept whole; longer ones (binary output, `\r` progress bars) are
/// cut into pieces of this size, so memory stays bounded.
pub const MAX_LINE: usize = 64 * 1024;

/// Reads one line (with its newline) or up to [`MAX_LINE`] bytes into `buf`; false at
/// end of output.
fn read_line_capped(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    while buf.len() < MAX_LINE {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let room = MAX_LINE - buf.len();
        let window = &available[..available.len().min(room)];
        match window.iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&window[..=i]);
                reader.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = window.len();
                buf.extend_from_slice(window);
                reader.consume(n);
            }
        }
    }
    Ok(!buf.is_empty())
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
    fn long_lines_are_cut_and_short_ones_kept() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nend\nlast");
        let mut reader = BufReader::with_capacity(1000, &input[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while read_line_capped(&mut reader, &mut buf).unwrap() {
            lines.push(buf.len());
        }
        assert_eq!(lines, [MAX_LINE, 11, 4, 4]);
    }

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
