//! The step process (`xbake __step`): enters the step's namespaces, becomes the monitor
//! of a pid-1 child that sets up the sandbox and executes the step's command.
//!
//! Protocol with the builder (`run.rs`): fd 0 is a Unix socket. The builder writes the
//! JSON [`StepSpec`] on one line; this process creates the step's namespaces (a nested
//! user namespace among them) and answers `ready`; the builder, still outside them,
//! writes the nested namespace's id maps (only a process in the parent namespace may map
//! more than one id, user_namespaces(7)) and answers `go`. Then this process answers
//! with at most one line `error: …` (set-up or exec failed) and status lines `exit: N`
//! or `signal: N`: the first one is the command's (written by pid 1); the monitor adds
//! its own, which matters only when pid 1 died before reporting. stdout and stderr are
//! the step's output pipe.

use super::mounts;
use super::plan;
use super::spec::{NetworkMode, StepSpec};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid};
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The hidden first argument that selects this mode.
pub const STEP_ARG: &str = "__step";
/// The monitor's word that the step's namespaces exist and wait for their id maps.
pub const READY: &str = "ready";
/// The builder's word that the maps (and whatever else it sets up) are in place.
pub const GO: &str = "go";
/// Where the builder puts the caller's stdin for `xbake run -i`.
pub const CALLER_STDIN_FD: i32 = 3;

/// Runs the step process; never returns.
pub fn step_main() -> ! {
    let code = match monitor() {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "xbake step: {message}");
            125
        }
    };
    std::process::exit(code)
}

fn monitor() -> Result<i32, String> {
    let builder = nix::unistd::getppid();
    let builder_alive = || match super::die_with_parent(builder) {
        Ok(true) => Ok(()),
        Ok(false) => Err("the builder is gone".to_string()),
        Err(e) => Err(format!("prctl: {e}")),
    };
    builder_alive()?;
    // Layers must not depend on the umask the builder was started with.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut control = take_control_socket()?;
    close_inherited_descriptors()?;
    // A new session with no controlling terminal: a step can neither open the caller's
    // terminal through /dev/tty nor push keystrokes into it with TIOCSTI (bubblewrap's
    // CVE-2017-5226), and no signal from the caller's terminal reaches it.
    nix::unistd::setsid().map_err(|e| format!("setsid: {}", e.desc()))?;
    let mut incoming = BufReader::new(
        control
            .try_clone()
            .map_err(|e| format!("duplicating the control socket: {e}"))?,
    );
    let mut text = String::new();
    incoming
        .read_line(&mut text)
        .map_err(|e| format!("reading the step spec: {e}"))?;
    let spec: StepSpec =
        serde_json::from_str(&text).map_err(|e| format!("decoding the step spec: {e}"))?;
    if spec.stdin_from_caller {
        // `xbake run -i`: the caller's stdin, passed by the builder as fd 3.
        nix::unistd::dup2_stdin(
            // SAFETY: fd 3 was installed by the builder for exactly this (see run.rs);
            // it stays open for the borrow's duration.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(CALLER_STDIN_FD) },
        )
        .map_err(|e| format!("taking the caller's stdin: {e}"))?;
    }

    // The mounts that read the build's own folders, made while this process can still
    // reach them (see plan::split_host_side), in a mount namespace of its own.
    let (host_ops, step_ops) = plan::split_host_side(&plan::plan(&spec));
    let mut mounts = mounts::Mounts::default();
    let host_side = unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("creating the step's mount namespace: {}", e.desc()))
        .and_then(|()| mounts.execute(&host_ops).map_err(|e| e.to_string()))
        .and_then(|()| mounts.enter_root().map_err(|e| e.to_string()));
    if let Err(message) = host_side {
        report(&mut control, &message);
        return finish(&mut control, 125, false);
    }

    // A nested user namespace first (the other namespaces then belong to it): its ids
    // are the image's, `0..n` of the build namespace, and nothing else, so even as root
    // of it a step can never take an id that is host root's (see idmap.rs).
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network != NetworkMode::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(errno) = unshare(flags) {
        report(
            &mut control,
            &format!("creating the step's namespaces: {}", errno.desc()),
        );
        return finish(&mut control, 125, false);
    }

    // New credentials (those of the new user namespace) cleared the parent-death signal.
    builder_alive()?;
    let _ = writeln!(control, "{READY}");
    let mut go = String::new();
    match incoming.read_line(&mut go) {
        Ok(_) if go.trim_end() == GO => {}
        // The builder could not finish the set-up on its side, and says why itself.
        _ => return Ok(125),
    }
    // SAFETY: this process is single-threaded (a fresh exec that started no threads), so
    // the child may run arbitrary code after fork(2).
    match unsafe { nix::unistd::fork() } {
        Err(errno) => {
            report(&mut control, &format!("fork: {}", errno.desc()));
            finish(&mut control, 125, false)
        }
        Ok(ForkResult::Child) => {
            // pid 1 of the new pid namespace; when it exits, the kernel kills the rest.
            match pid1(&spec, &step_ops, mounts, &mut control) {
                Ok(()) => std::process::exit(0),
                Err(error) => {
                    report(&mut control, &error);
                    std::process::exit(127)
                }
            }
        }
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return finish(&mut control, code, false),
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return finish(&mut control, sig as i32, true);
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(format!("waiting for the step: {}", errno.desc())),
            }
        },
    }
}

/// Moves the control socket off fd 0 (close-on-exec, so the step's command never
/// inherits it) and puts /dev/null in its place as the step's stdin.
fn take_control_socket() -> Result<UnixStream, String> {
    let stdin = std::io::stdin();
    let control: OwnedFd = stdin
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("duplicating the control socket: {e}"))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    nix::unistd::dup2_stdin(null.as_fd()).map_err(|e| format!("dup2: {e}"))?;
    Ok(UnixStream::from(control))
}

/// Marks every descriptor above stderr close-on-exec, so the step's command starts with
/// stdin, stdout and stderr only, whatever the caller of xbake had open.
fn close_inherited_descriptors() -> Result<(), String> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors;
    // it closes nothing that Rust objects in this process still own.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd instead.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("listing /proc/self/fd: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a number from our own fd table; errors (the directory's
        // own descriptor, already closed) are harmless.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok(())
}

fn report(control: &mut UnixStream, message: &str) {
    if !message.is_empty() {
        let _ = writeln!(control, "error: {}", message.replace('\n', " "));
    }
}

fn finish(control: &mut UnixStream, value: i32, signal: bool) -> Result<i32, String> {
    let kind = if signal { "signal" } else { "exit" };
    let _ = writeln!(control, "{kind}: {value}");
    Ok(if signal { 128 + value } else { value })
}

/// Set-up as pid 1, then run the command as pid 2 and reap until it ends; its status
/// goes on the control socket. Returns Err only when set-up fails.
///
/// The command must not be pid 1 itself: the kernel drops signals with the default
/// action that init sends to itself (pid_namespaces(7)), so a program that dies by
/// raising a signal, as QEMU does for SIGILL in emulated code, would hang instead.
fn pid1(
    spec: &StepSpec,
    ops: &[plan::SetupOp],
    mut mounts: mounts::Mounts,
    control: &mut UnixStream,
) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl: {e}"))?;
    // Its own session and process group, apart from the monitor's: `kill -TERM 0` in a
    // step then reaches only the step's processes (pid 1 ignores it, as init does).
    nix::unistd::setsid().map_err(|e| format!("setsid: {}", e.desc()))?;
    mounts.execute(ops).map_err(|e| e.to_string())?;
    nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    if spec.network != NetworkMode::Host {
        super::net::loopback_up().map_err(|e| format!("bringing up lo: {e}"))?;
    }
    // SAFETY: still single-threaded, as in `monitor`.
    let command = match unsafe { nix::unistd::fork() } {
        Err(errno) => return Err(format!("fork: {}", errno.desc())),
        Ok(ForkResult::Child) => {
            let error = command(spec).err().unwrap_or_default();
            report(control, &error);
            std::process::exit(127)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    loop {
        // Reap every child (orphans are re-parented to us) until the command ends.
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                let _ = finish(control, code, false);
                return Ok(());
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                let _ = finish(control, sig as i32, true);
                return Ok(());
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(format!("waiting for the command: {}", errno.desc())),
        }
    }
}

/// In the command's process: personality, capabilities, identity, directory, exec.
fn command(spec: &StepSpec) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl: {e}"))?;
    if spec.linux32 {
        super::persona::set_linux32().map_err(|e| format!("personality(PER_LINUX32): {e}"))?;
    }
    // Before the capabilities go: loading a filter without no_new_privs takes
    // CAP_SYS_ADMIN (see seccomp.rs).
    if let Some(at) = spec.not_before_unix_ns {
        crate::layer::snapshot::wait_until(i128::from(at));
    }
    super::seccomp::apply(spec.seccomp).map_err(|e| e.to_string())?;
    super::privileges::restrict_capabilities()?;
    set_identity(spec.uid, spec.gid, &spec.groups)?;
    nix::unistd::chdir(spec.cwd.as_str())
        .map_err(|e| format!("working directory {}: {}", spec.cwd, e.desc()))?;
    // Last, as the identity counts for RLIMIT_NPROC: the limits no cgroup enforces.
    spec.limits.rlimits.apply(spec.uid)?;
    exec(spec)
}

fn set_identity(uid: u32, gid: u32, groups: &[u32]) -> Result<(), String> {
    let unmapped = |what: &str, e: nix::errno::Errno| {
        format!(
            "switching to {what} {uid}:{gid}: {} (an id not mapped in this build's user \
             namespace: rootless builds need a range in /etc/subuid and /etc/subgid)",
            e.desc()
        )
    };
    // setgroups(2) is denied in namespaces that map only the caller, where no other
    // group exists: the memberships are dropped there, as runc does.
    let groups: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    match nix::unistd::setgroups(&groups) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(nix::errno::Errno::EINVAL) => {
            return Err(format!(
                "setting the supplementary groups {groups:?}: a gid not mapped in this \
                 build's user namespace (rootless builds need a range in /etc/subgid)"
            ));
        }
        Err(e) => return Err(format!("setgroups: {e}")),
    }
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(|e| unmapped("group", e))?;
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(|e| unmapped("user", e))
}

fn exec(spec: &StepSpec) -> Result<(), String> {
    let Some(program) = spec.argv.first() else {
        return Err("empty command".into());
    };
    let path_var = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let resolved = resolve_program(program, path_var, |p| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
    })
    .ok_or_else(|| {
        format!("{program}: not found in the image (PATH={path_var}); is the base image right for this step?")
    })?;
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let path = cstr(&resolved)?;
    let errno = match nix::unistd::execve(&path, &argv, &envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let hint = match errno {
        nix::errno::Errno::ENOEXEC => {
            " (exec format error: no emulator handled this architecture)".to_string()
        }
        // The program is there (it was found), so what is missing is what it needs.
        nix::errno::Errno::ENOENT if Path::new(&resolved).exists() => {
            missing_interpreter_hint(&file_head(&resolved), |p| Path::new(p).exists())
        }
        _ => String::new(),
    };
    Err(format!("executing {resolved}: {}{hint}", errno.desc()))
}

/// The first bytes of a file: enough for a `#!` line.
fn file_head(path: &str) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(256).read_to_end(&mut head);
    }
    head
}

/// Why exec said "No such file or directory" for a file that exists: a script whose
/// `#!` interpreter is not in the image (a script copied onto `scratch`), else a
/// dynamically linked program whose loader is missing.
fn missing_interpreter_hint(head: &[u8], exists: impl Fn(&str) -> bool) -> String {
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        if let Some(interpreter) = line.split_whitespace().next()
            && !exists(interpreter)
        {
            return format!(
                " (its #! line names {interpreter}, which is not in the image: a script \
                 needs its interpreter in the image, e.g. a base with a shell instead of \
                 scratch)"
            );
        }
        return String::new();
    }
    if head.starts_with(b"\x7fELF") {
        return " (the program is there: it is dynamically linked and its loader or a \
                library it needs is not in the image; build it statically for scratch)"
            .to_string();
    }
    String::new()
}

/// Docker's default PATH for a step whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// execvp(3)'s lookup, against the step's PATH rather than this process's.
fn resolve_program(
    program: &str,
    path_var: &str,
    executable: impl Fn(&str) -> bool,
) -> Option<String> {
    if program.contains('/') {
        return Some(program.to_string());
    }
    path_var
        .split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
        .find(|candidate| executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interpreter_is_named() {
        let exists = |p: &str| p == "/bin/sh";
        let hint = missing_interpreter_hint(b"#!/bin/bash -e\necho hi\n", exists);
        assert!(hint.contains("its #! line names /bin/bash"), "{hint}");
        assert!(missing_interpreter_hint(b"#!/bin/sh\n", exists).is_empty());
        let hint = missing_interpreter_hint(b"\x7fELF\x02\x01\x01", exists);
        assert!(hint.contains("dynamically linked"), "{hint}");
        assert!(missing_interpreter_hint(b"plain text", exists).is_empty());
    }

    #[test]
    fn program_lookup_follows_the_step_path() {
        let exists = |p: &str| p == "/usr/bin/env" || p == "/bin/sh";
        assert_eq!(
            resolve_program("sh", "/usr/bin:/bin", exists).as_deref(),
            Some("/bin/sh")
        );
        assert_eq!(
            resolve_program("env", "/usr/bin/:/bin", exists).as_deref(),
            Some("/usr/bin/env")
        );
        assert_eq!(
            resolve_program("/opt/x", "/bin", exists).as_deref(),
            Some("/opt/x")
        );
        assert_eq!(resolve_program("nope", "/bin", exists), None);
    }
}
