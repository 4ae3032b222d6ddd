//! The build's user namespace: the host-side launcher and the child-side handshake.
//!
//! DESIGN decision 2: never unshare from a threaded process. The launcher re-executes
//! `/proc/self/exe` with the same arguments; the new process, still single-threaded at
//! the top of `main`, unshares its user and mount namespaces, tells the launcher, and
//! waits while the launcher (outside the namespace, where the rules allow it) writes the
//! id maps. Then the child carries on as root of the namespace and runs the whole build,
//! so everything that touches a rootfs happens in there (decision 1).

use super::SandboxError;
use super::idmap::{self, IdContext, IdMapPlan};
use super::limits::cgroup::{LauncherCgroups, RealFs};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Pid, Uid};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Set in the child's environment: `READ_FD,WRITE_FD` of its ends of the two pipes.
const SYNC_ENV: &str = "XBAKE_USERNS_SYNC";
/// Set once the process is inside a build namespace (inherited by step processes).
const INSIDE_ENV: &str = "XBAKE_IN_BUILD_NAMESPACE";
/// Set by the launcher of a root build: `UID:GID`, the caller's ids inside the
/// namespace (see [`BuildIds`]).
const CALLER_ENV: &str = "XBAKE_CALLER_IDS";

/// What the build namespace knows about its caller (from the launcher's plan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildIds {
    /// The caller's ids inside the namespace when they are not its root (root builds):
    /// the owner to give outputs back to.
    pub caller: Option<(u32, u32)>,
}

impl BuildIds {
    /// Inside the build namespace: what its launcher said.
    pub fn current() -> BuildIds {
        let caller = std::env::var(CALLER_ENV).ok().and_then(|text| {
            let (u, g) = text.split_once(':')?;
            Some((u.parse().ok()?, g.parse().ok()?))
        });
        BuildIds { caller }
    }
}

/// True in the re-executed process after [`enter_if_requested`] succeeded.
pub fn inside_build_namespace() -> bool {
    std::env::var_os(INSIDE_ENV).is_some()
}

/// Reads the caller's identity and the system's subordinate-id setup, and chooses maps.
pub fn current_plan() -> Result<IdMapPlan, SandboxError> {
    let uid = Uid::current().as_raw();
    let gid = Gid::current().as_raw();
    let user = nix::unistd::User::from_uid(Uid::current()).ok().flatten();
    let subuid = std::fs::read_to_string("/etc/subuid").ok();
    let subgid = std::fs::read_to_string("/etc/subgid").ok();
    idmap::choose(&IdContext {
        uid,
        gid,
        user_name: user.as_ref().map(|u| u.name.as_str()),
        subuid: subuid.as_deref(),
        subgid: subgid.as_deref(),
        newuidmap: find_program("newuidmap"),
        newgidmap: find_program("newgidmap"),
        force_self_only: std::env::var("XBAKE_USERNS").is_ok_and(|v| v == "self"),
    })
    .map_err(|detail| SandboxError::IdMap {
        detail,
        source: None,
    })
}

/// `name` in PATH, then /usr/bin and /usr/sbin (where Debian's uidmap puts them).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Host side: re-runs this program with `args` inside a new user + mount namespace
/// mapped per `plan`, and returns its exit status.
pub fn run_in_build_namespace(
    args: &[OsString],
    plan: &IdMapPlan,
) -> Result<ExitStatus, SandboxError> {
    let io = |what: &'static str| move |source| SandboxError::Io { what, source };
    // Close-on-exec pipes; only the child's two ends are made inheritable, in the child
    // itself after fork, so neither our ends nor anything else leak into the build.
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Sys {
            what: "pipe",
            errno: e,
        })
    };
    let (child_ready_r, child_ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let inherit = [go_r.as_raw_fd(), child_ready_w.as_raw_fd()];
    let mut command = Command::new("/proc/self/exe");
    command
        .args(args)
        .env(SYNC_ENV, format!("{},{}", inherit[0], inherit[1]));
    if let Some((uid, gid)) = plan.caller_inside(Uid::current().as_raw(), Gid::current().as_raw()) {
        command.env(CALLER_ENV, format!("{uid}:{gid}"));
    }
    // The build's cgroups for the steps' limits, handed to the namespace's root; removed
    // when this function returns, after the build.
    let cgroups = LauncherCgroups::create(namespace_root(plan));
    let (key, value) = cgroups.cgroups.to_env();
    command.env(key, value);
    // SAFETY: the hook runs between fork and exec and only calls fcntl(2), which is
    // async-signal-safe, on two descriptors this process owns.
    unsafe {
        command.pre_exec(move || {
            for fd in inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(io("starting the build namespace process"))?;
    drop(go_r);
    drop(child_ready_w);
    // A failure shows up as a clear error at the first step that needs the cgroup.
    let _ = cgroups.cgroups.adopt(&RealFs, child.id() as i32);
    let mut ready = File::from(child_ready_r);
    let mut go = File::from(go_w);

    let mut byte = [0u8; 1];
    if ready
        .read(&mut byte)
        .map_err(io("waiting for the build namespace"))?
        == 0
    {
        // The child failed before unsharing and has said why on stderr.
        return child.wait().map_err(io("waiting for the build process"));
    }
    if let Err(e) = write_maps(Pid::from_raw(child.id() as i32), plan) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    go.write_all(b"1")
        .map_err(io("releasing the build namespace"))?;
    drop(go);
    child.wait().map_err(io("waiting for the build process"))
}

/// The host ids of a root build's namespace root (the owner of the build's cgroups);
/// None for rootless builds, whose namespace root is the caller already.
fn namespace_root(plan: &IdMapPlan) -> Option<(u32, u32)> {
    let IdMapPlan::Direct { uids, gids } = plan else {
        return None;
    };
    let root = |ranges: &[idmap::IdRange]| ranges.iter().find(|r| r.inside == 0).map(|r| r.outside);
    Some((root(uids)?, root(gids)?))
}

fn write_maps(pid: Pid, plan: &IdMapPlan) -> Result<(), SandboxError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let write = |file: &str, text: &str| {
        std::fs::write(proc.join(file), text).map_err(|source| SandboxError::IdMap {
            detail: format!("writing {text:?} to /proc/{pid}/{file}"),
            source: Some(source),
        })
    };
    match plan {
        IdMapPlan::Direct { uids, gids } => {
            write("uid_map", &idmap::map_text(uids))?;
            write("gid_map", &idmap::map_text(gids))
        }
        IdMapPlan::SelfOnly { uid, gid } => {
            // An unprivileged writer may map only its own ids, and must first give up
            // setgroups(2) in the namespace (user_namespaces(7), since Linux 3.19).
            write("uid_map", &format!("0 {uid} 1\n"))?;
            write("setgroups", "deny")?;
            write("gid_map", &format!("0 {gid} 1\n"))
        }
        IdMapPlan::Subordinate {
            uids,
            gids,
            newuidmap,
            newgidmap,
        } => {
            run_map_helper(newuidmap, pid, &idmap::helper_args(uids))?;
            run_map_helper(newgidmap, pid, &idmap::helper_args(gids))
        }
    }
}

fn run_map_helper(helper: &Path, pid: Pid, args: &[String]) -> Result<(), SandboxError> {
    let out = Command::new(helper)
        .arg(pid.to_string())
        .args(args)
        .output()
        .map_err(|source| SandboxError::IdMap {
            detail: format!("running {}", helper.display()),
            source: Some(source),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(SandboxError::IdMap {
        detail: format!(
            "{} {} {} failed ({}): {}; check /etc/subuid and /etc/subgid, or set \
             XBAKE_USERNS=self to map only your own id",
            helper.display(),
            pid,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        source: None,
    })
}

/// Child side, first thing in `main`: when launched by [`run_in_build_namespace`],
/// enter the namespace and wait for the maps. Returns Ok(false) when not requested.
pub fn enter_if_requested() -> Result<bool, SandboxError> {
    let Some(fds) = std::env::var_os(SYNC_ENV) else {
        return Ok(false);
    };
    let fds = fds.to_string_lossy().into_owned();
    let parsed: Option<(i32, i32)> = fds
        .split_once(',')
        .and_then(|(r, w)| Some((r.parse().ok()?, w.parse().ok()?)));
    let Some((go_fd, ready_fd)) = parsed else {
        return Err(SandboxError::IdMap {
            detail: format!("malformed {SYNC_ENV}={fds:?}"),
            source: None,
        });
    };
    // Only adopt descriptors that really are pipes: a stray variable in the environment
    // must not make us take over (and later close) stdin or stdout.
    for fd in [go_fd, ready_fd] {
        let is_pipe = fd > 2
            && nix::sys::stat::fstat(unsafe_borrow(fd))
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO);
        if !is_pipe {
            return Err(SandboxError::IdMap {
                detail: format!("{SYNC_ENV}={fds:?} does not name this process's sync pipes"),
                source: None,
            });
        }
    }
    // SAFETY: both are open pipes (checked above) that the launcher created for this
    // process and passed by number; nothing else in this fresh process owns them yet.
    let (go, ready) = unsafe { (OwnedFd::from_raw_fd(go_fd), OwnedFd::from_raw_fd(ready_fd)) };
    let launcher = nix::unistd::getppid();
    // SAFETY: still single-threaded (top of main), so no other thread reads the
    // environment concurrently (the reason set_var/remove_var are unsafe in Rust 2024).
    unsafe {
        std::env::remove_var(SYNC_ENV);
        std::env::set_var(INSIDE_ENV, "1");
    }
    // If the launcher dies, so does the build and, through the same setting in each
    // step process, every step (prctl(2) PR_SET_PDEATHSIG).
    let launcher_alive = || match super::die_with_parent(launcher) {
        Ok(true) => Ok(()),
        // The launcher died before the setting took effect.
        Ok(false) => std::process::exit(1),
        Err(errno) => Err(SandboxError::Sys {
            what: "prctl(PR_SET_PDEATHSIG)",
            errno,
        }),
    };
    launcher_alive()?;
    // Layers and outputs must not depend on the caller's umask (runc sets the same).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|errno| {
        SandboxError::UserNamespace {
            errno,
            advice: userns_advice(),
        }
    })?;
    let mut ready = File::from(ready);
    let mut go = File::from(go);
    let io = |what: &'static str| move |source| SandboxError::Io { what, source };
    ready
        .write_all(b"1")
        .map_err(io("signalling the launcher"))?;
    drop(ready);
    let mut byte = [0u8; 1];
    if go.read(&mut byte).map_err(io("waiting for id maps"))? == 0 {
        // The launcher could not write the maps; it reports why.
        std::process::exit(1);
    }
    // The maps make our host id namespace root; be root in every id slot.
    let root_u = Uid::from_raw(0);
    let root_g = Gid::from_raw(0);
    nix::unistd::setresgid(root_g, root_g, root_g).map_err(|e| SandboxError::Sys {
        what: "setresgid(0) in the build namespace",
        errno: e,
    })?;
    nix::unistd::setresuid(root_u, root_u, root_u).map_err(|e| SandboxError::Sys {
        what: "setresuid(0) in the build namespace",
        errno: e,
    })?;
    // Changing the effective uid (a root build's namespace root is an unprivileged host
    // id) cleared the parent-death signal.
    launcher_alive()?;
    // Mounts made by the build (binfmt_misc, step mounts) must never propagate back.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| SandboxError::Sys {
        what: "making / private in the build's mount namespace",
        errno: e,
    })?;
    Ok(true)
}

/// A borrowed view of a raw descriptor number, for fstat before adopting it.
fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only for the fstat(2) just after, while the number cannot be reused
    // (this process is single-threaded and opens nothing in between); fstat on a closed
    // number fails with EBADF, which the caller treats as "not a pipe".
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Why unshare(CLONE_NEWUSER) may have failed, from the knobs that control it.
fn userns_advice() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled: as root run \
                `sysctl kernel.unprivileged_userns_clone=1`"
            .into();
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled: as root run \
                `sysctl user.max_user_namespaces=15000`"
            .into();
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces: as root run \
                `sysctl kernel.apparmor_restrict_unprivileged_userns=0`, or give xbake an \
                AppArmor profile with `userns,`"
            .into();
    }
    "the kernel refused a new user namespace; inside a container, its seccomp profile \
     may block unshare(2) (run xbake on the host or allow user namespaces)"
        .into()
}

/// Gives a file or folder this build wrote for the caller (an output, a metadata file)
/// back to the caller's own ids: in a root build the namespace's root is an
/// unprivileged host id (see idmap.rs), which must not be left owning root's outputs.
/// Nothing to do when the caller is the namespace's root (rootless builds).
pub fn hand_back_to_caller(path: &Path) -> std::io::Result<()> {
    let Some((uid, gid)) = BuildIds::current().caller else {
        return Ok(());
    };
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid)).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", entry.path().display()))
        })?;
    }
    Ok(())
}

/// `xbake doctor`: whether this process may create a user namespace, tried for real in a
/// child (`/proc/self/exe --version` after unshare), so sysctls, AppArmor and seccomp
/// policies all have their say.
pub fn probe_user_namespace() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut probe = std::process::Command::new("/proc/self/exe");
    probe
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the hook runs between fork and exec and only calls unshare(2), a plain
    // system call, touching no memory of the parent.
    unsafe {
        probe.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(std::io::Error::from)
        });
    }
    match probe.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("the probe exited with {status}")),
        Err(e) => Err(format!("unshare(CLONE_NEWUSER): {e}")),
    }
}
