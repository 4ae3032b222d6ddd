//! User-mode networking for a step's private network namespace (`--network private`,
//! the default): a helper program (Debian's `slirp4netns`, else `pasta` from `passt`)
//! puts a tap device into the step's namespace and relays its TCP/UDP through sockets
//! of its own in the build's network namespace, as rootless podman and buildah do. The
//! step gets outbound connections and DNS, but not the host's loopback (the helper is
//! told to refuse 10.0.2.2 → 127.0.0.1) and not the host's abstract unix sockets,
//! which belong to the host's network namespace (containerd's CVE-2020-15257).
//!
//! The helper runs as the builder, root of the build's user namespace, and joins only
//! the step's network namespace, not its user namespace: the builder holds every
//! capability over the step's (nested) namespaces, and it opens /dev/net/tun with its
//! own credentials. For a root build those include the host's root, parked in the build
//! namespace (idmap.rs), so a 0600 /dev/net/tun works; a rootless build needs the
//! device to be usable by the caller (0666, the kernel's and most distributions'
//! default). [`preflight`] checks both the helper and the device before any work.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::ffi::OsString;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Overrides PATH for finding the helper (tests, or a helper outside PATH).
pub const SEARCH_PATH_ENV: &str = "XBAKE_NETWORK_HELPER_PATH";
/// The DNS forwarder of slirp4netns's default network (10.0.2.0/24, slirp4netns(1)):
/// the step's resolv.conf names it, never the host's resolver, which may well be a
/// loopback address (systemd-resolved, dnsmasq) the step cannot reach.
pub const DNS_SERVER: &str = "10.0.2.3";
/// The tap device inside the step's namespace.
const TAP: &str = "tap0";
/// slirp4netns's own recommendation (slirp4netns(1), EXAMPLE): fewer, bigger packets.
const MTU: &str = "65520";
/// How long the helper may take to configure the namespace.
const READY_TIMEOUT_MS: u16 = 10_000;
/// Where the device lives; both helpers open this path.
pub const TUN_DEVICE: &str = "/dev/net/tun";

const REMEDY: &str = "or build with --network host (the host's network, no isolation) \
                      or --network none";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "RUN steps get a private network by default, which needs slirp4netns or pasta, \
         and neither is in {searched}: install one (apt-get install slirp4netns, or \
         apt-get install passt for pasta), {REMEDY}"
    )]
    NoHelper { searched: String },
    #[error(
        "RUN steps get a private network by default, and its helper must open \
         {TUN_DEVICE}, which this build cannot: {detail}. {advice}, {REMEDY}"
    )]
    Tun { detail: String, advice: String },
    #[error("starting {helper} for the step's network: {source}")]
    Spawn {
        helper: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{helper} could not set up the step's network ({why}){}", output_suffix(.output))]
    Failed {
        helper: String,
        why: String,
        output: String,
    },
}

fn output_suffix(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", output.trim().replace('\n', " | "))
    }
}

/// The program that gives a private network namespace its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Helper {
    Slirp4netns(PathBuf),
    Pasta(PathBuf),
}

impl Helper {
    pub fn path(&self) -> &Path {
        match self {
            Helper::Slirp4netns(p) | Helper::Pasta(p) => p,
        }
    }

    pub fn name(&self) -> String {
        self.path().display().to_string()
    }
}

/// Finds the helper in `XBAKE_NETWORK_HELPER_PATH`, else in PATH.
pub fn find_helper() -> Result<Helper, NetworkError> {
    let search = std::env::var_os(SEARCH_PATH_ENV)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    find_helper_in(&search, |p| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
    })
}

/// slirp4netns first: the 2023 pasta in Debian 12 gives up when started as root, and a
/// builder is root of its namespace (see [`pasta_args`]).
fn find_helper_in(
    search: &std::ffi::OsStr,
    executable: impl Fn(&Path) -> bool,
) -> Result<Helper, NetworkError> {
    let dirs: Vec<PathBuf> = std::env::split_paths(search).collect();
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| executable(p));
    if let Some(p) = find("slirp4netns") {
        return Ok(Helper::Slirp4netns(p));
    }
    if let Some(p) = find("pasta") {
        return Ok(Helper::Pasta(p));
    }
    let searched = match std::env::var_os(SEARCH_PATH_ENV) {
        Some(_) => format!("{SEARCH_PATH_ENV} ({})", search.to_string_lossy()),
        None => format!("PATH ({})", search.to_string_lossy()),
    };
    Err(NetworkError::NoHelper { searched })
}

/// Checks that `helper` will be able to open /dev/net/tun. slirp4netns opens it with
/// this process's credentials: opening it here, read-write, is the same check (and
/// creates nothing until TUNSETIFF). pasta switches to `nobody` first when started as
/// root (of the build namespace, here; even `--runas 0` does not keep it from
/// isolating itself), so it needs the device open to everyone: mode o+rw.
pub fn check_tun(helper: &Helper) -> Result<(), NetworkError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE);
    let meta = std::fs::metadata(TUN_DEVICE).ok();
    let mode = meta.as_ref().map(|m| m.permissions().mode() & 0o7777);
    let err = match (opened, helper, mode) {
        (Ok(_), Helper::Slirp4netns(_), _) => return Ok(()),
        (Ok(_), Helper::Pasta(_), Some(mode)) if mode & 0o006 == 0o006 => return Ok(()),
        (Ok(_), Helper::Pasta(p), _) => std::io::Error::other(format!(
            "{} switches to the user nobody, who may not open it",
            p.display()
        )),
        (Err(e), _, _) => e,
    };
    let detail = match (&meta, mode) {
        (Some(m), Some(mode)) => format!(
            "{err} ({TUN_DEVICE} is mode {mode:04o}, owner {}:{})",
            m.uid(),
            m.gid()
        ),
        _ => err.to_string(),
    };
    Err(NetworkError::Tun {
        detail,
        advice: tun_advice(err.kind()),
    })
}

fn tun_advice(kind: std::io::ErrorKind) -> String {
    match kind {
        std::io::ErrorKind::NotFound => format!(
            "Load the tun module as root (modprobe tun) or create the device \
             (mkdir -p /dev/net && mknod -m 0666 {TUN_DEVICE} c 10 200)"
        ),
        _ => format!(
            "Let users open it, as the kernel and most distributions do: as root, \
             chmod 0666 {TUN_DEVICE} (until the next boot), or for good a udev rule \
             such as `KERNEL==\"tun\", MODE=\"0666\"` in /etc/udev/rules.d/60-tun.rules"
        ),
    }
}

/// Both checks, before any work: the build needs a private network.
pub fn preflight() -> Result<Helper, NetworkError> {
    let helper = find_helper()?;
    check_tun(&helper)?;
    Ok(helper)
}

/// slirp4netns joins the namespace by path (`--netns-type=path`, no `--userns-path`), so
/// it keeps the builder's credentials (see the module comment); `--ready-fd` says when
/// the tap is up and configured, `--exit-fd` ends it when the builder closes the other
/// end (or dies). `--disable-host-loopback`: 10.0.2.2 does not lead to the host's
/// 127.0.0.1.
fn slirp4netns_args(netns: &Path, ready_fd: i32, exit_fd: i32) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--configure".to_string(),
        format!("--mtu={MTU}"),
        "--disable-host-loopback".to_string(),
        format!("--ready-fd={ready_fd}"),
        format!("--exit-fd={exit_fd}"),
        "--netns-type=path".to_string(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(netns.as_os_str().to_owned());
    args.push(TAP.into());
    args
}

/// pasta joins the namespace by path only (`--netns-only`), configures it, forwards no
/// ports either way (its default `auto` would map the host's bound loopback ports into
/// the step's loopback), does not map the gateway to the host (`--no-map-gw`), and
/// forwards DNS sent to [`DNS_SERVER`]. Without `--foreground` it forks once the
/// namespace is ready and the parent exits: that exit is the ready signal, the pid file
/// names the process to end.
fn pasta_args(netns: &Path, pid_file: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--config-net",
        "--quiet",
        "--netns-only",
        "--no-map-gw",
        "--tcp-ports",
        "none",
        "--udp-ports",
        "none",
        "--tcp-ns",
        "none",
        "--udp-ns",
        "none",
        "--dns-forward",
        DNS_SERVER,
        "--ns-ifname",
        TAP,
        "--pid",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(pid_file.as_os_str().to_owned());
    args.push("--netns".into());
    args.push(netns.as_os_str().to_owned());
    args
}

/// A running helper; ended when dropped, on every path out of the step, and reaped by a
/// thread of its own: a helper takes one RCU grace period or more to exit (its tap
/// device and namespace go with it), 10 to 20 ms here, which the step's commit need not
/// wait for.
pub struct Running {
    child: Option<Child>,
    /// slirp4netns: closing our end of the exit pipe tells it to quit.
    exit: Option<OwnedFd>,
    /// pasta: the daemon's pid, from its pid file.
    daemon: Option<nix::unistd::Pid>,
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.exit.take());
        if let Some(pid) = self.daemon {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // Without a thread to spare, the killed helper stays a zombie until this
            // process exits: nothing else depends on its being reaped.
            let _ = std::thread::Builder::new()
                .name("network-helper-reaper".into())
                .spawn(move || child.wait());
        }
    }
}

/// Connects the network namespace of process `pid` (the step's monitor) and returns once
/// the helper reports it configured.
pub fn start(pid: nix::unistd::Pid) -> Result<Running, NetworkError> {
    let helper = find_helper()?;
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let spawn_err = |source| NetworkError::Spawn {
        helper: helper.name(),
        source,
    };
    // Its output goes to an unnamed file, read only when it fails: a pipe nobody
    // drains could block it mid-build.
    let log = tempfile::tempfile().map_err(spawn_err)?;
    let mut cmd = Command::new(helper.path());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(spawn_err)?))
        .stderr(Stdio::from(log.try_clone().map_err(spawn_err)?));
    let failed = |why: String, log: &std::fs::File| NetworkError::Failed {
        helper: helper.name(),
        why,
        output: read_log(log),
    };
    match &helper {
        Helper::Slirp4netns(_) => {
            let (ready_r, ready_w) = pipe().map_err(spawn_err)?;
            let (exit_r, exit_w) = pipe().map_err(spawn_err)?;
            // The child's two ends keep their numbers; only in the child, after fork,
            // do they lose close-on-exec, so no other process inherits them.
            let inherit = [ready_w.as_raw_fd(), exit_r.as_raw_fd()];
            cmd.args(slirp4netns_args(&netns, inherit[0], inherit[1]));
            // SAFETY: the hook runs between fork and exec and only calls fcntl(2),
            // which is async-signal-safe, on two descriptors this process owns.
            unsafe {
                cmd.pre_exec(move || {
                    for fd in inherit {
                        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().map_err(spawn_err)?;
            // Our copies of the child's ends: without this, the ready pipe would never
            // report end-of-file if slirp4netns died, nor the exit pipe close.
            drop((ready_w, exit_r));
            let running = Running {
                child: Some(child),
                exit: Some(exit_w),
                daemon: None,
            };
            match wait_ready(&ready_r) {
                Ok(true) => Ok(running),
                Ok(false) => Err(failed(
                    "it exited before the network was ready".into(),
                    &log,
                )),
                Err(why) => Err(failed(why, &log)),
            }
        }
        Helper::Pasta(_) => {
            let pid_file = tempfile::NamedTempFile::new().map_err(spawn_err)?;
            cmd.args(pasta_args(&netns, pid_file.path()));
            let mut child = cmd.spawn().map_err(spawn_err)?;
            // The foreground process exits once the daemon has the namespace set up.
            let status = wait_timeout(&mut child).map_err(|why| failed(why, &log))?;
            if !status.success() {
                return Err(failed(format!("it exited with {status}"), &log));
            }
            let daemon = std::fs::read_to_string(pid_file.path())
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .map(nix::unistd::Pid::from_raw)
                .ok_or_else(|| failed("it wrote no pid file".into(), &log))?;
            Ok(Running {
                child: None,
                exit: None,
                daemon: Some(daemon),
            })
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Waits for slirp4netns's "1" on the ready pipe: Ok(false) if it closed it without.
fn wait_ready(ready: &OwnedFd) -> Result<bool, String> {
    let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(READY_TIMEOUT_MS)) {
        Ok(0) => return Err(format!("not ready after {} s", READY_TIMEOUT_MS / 1000)),
        Ok(_) => {}
        Err(e) => return Err(format!("waiting for it: {}", e.desc())),
    }
    let mut byte = [0u8; 1];
    let mut file = std::fs::File::from(ready.try_clone().map_err(|e| e.to_string())?);
    match file.read(&mut byte) {
        Ok(1) => Ok(byte[0] == b'1'),
        Ok(_) => Ok(false),
        Err(e) => Err(format!("reading its ready pipe: {e}")),
    }
}

/// Waits for a child to exit, at most [`READY_TIMEOUT_MS`]; kills it after that.
fn wait_timeout(child: &mut Child) -> Result<std::process::ExitStatus, String> {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(READY_TIMEOUT_MS.into());
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("not ready after {} s", READY_TIMEOUT_MS / 1000));
            }
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
}

/// The helper's output so far (its last 2 KiB), for an error message.
fn read_log(log: &std::fs::File) -> String {
    let mut file = log;
    let mut text = String::new();
    if file.rewind().is_ok() {
        let _ = file.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(2048);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn slirp4netns_joins_only_the_network_namespace_and_refuses_host_loopback() {
        assert_eq!(
            strings(&slirp4netns_args(Path::new("/proc/42/ns/net"), 3, 4)),
            [
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--ready-fd=3",
                "--exit-fd=4",
                "--netns-type=path",
                "/proc/42/ns/net",
                "tap0"
            ]
        );
    }

    #[test]
    fn pasta_forwards_no_ports_and_does_not_map_the_gateway() {
        let args = strings(&pasta_args(
            Path::new("/proc/42/ns/net"),
            Path::new("/t/pid"),
        ));
        for pair in [
            ["--tcp-ports", "none"],
            ["--udp-ports", "none"],
            ["--tcp-ns", "none"],
            ["--udp-ns", "none"],
            ["--dns-forward", DNS_SERVER],
            ["--netns", "/proc/42/ns/net"],
            ["--pid", "/t/pid"],
        ] {
            assert!(
                args.windows(2).any(|w| w == pair),
                "{pair:?} missing from {args:?}"
            );
        }
        assert!(args.contains(&"--no-map-gw".to_string()));
        assert!(args.contains(&"--netns-only".to_string()));
    }

    #[test]
    fn slirp4netns_is_preferred_and_a_missing_helper_names_the_packages() {
        let search = std::ffi::OsStr::new("/a:/b");
        let both = |p: &Path| p == Path::new("/a/pasta") || p == Path::new("/b/slirp4netns");
        assert_eq!(
            find_helper_in(search, both).unwrap(),
            Helper::Slirp4netns("/b/slirp4netns".into())
        );
        let pasta = |p: &Path| p == Path::new("/b/pasta");
        assert_eq!(
            find_helper_in(search, pasta).unwrap(),
            Helper::Pasta("/b/pasta".into())
        );
        let message = find_helper_in(search, |_| false).unwrap_err().to_string();
        assert!(message.contains("apt-get install slirp4netns"), "{message}");
        assert!(message.contains("passt"), "{message}");
        assert!(message.contains("--network host"), "{message}");
        assert!(message.contains("/a:/b"), "{message}");
    }

    #[test]
    fn helper_output_is_cut_to_its_tail() {
        let mut log = tempfile::tempfile().unwrap();
        use std::io::Write;
        write!(log, "{}é end", "x".repeat(3000)).unwrap();
        let tail = read_log(&log);
        assert!(
            tail.ends_with("é end") && tail.len() <= 2048,
            "{}",
            tail.len()
        );
    }
}
