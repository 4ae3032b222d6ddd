//! What one step process needs to know, sent by the builder over the control socket.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new network namespace connected by a user-mode helper (slirp4netns or pasta,
    /// see network.rs): outbound TCP/UDP and DNS, but not the host's loopback or its
    /// abstract unix sockets. The default, as in rootless podman and buildah.
    Private,
    /// The host's network namespace: everything the host can reach, its 127.0.0.1
    /// included. Only on request (`--network host`).
    Host,
    /// A new network namespace with only a loopback interface.
    None,
}

/// `--security-opt seccomp=…`: the filter of sandbox/seccomp.rs, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompMode {
    /// Docker's default profile.
    #[default]
    Default,
    Unconfined,
}

impl NetworkMode {
    /// The name used by the CLI, recipes and cache keys.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Private => "private",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    /// The unpacked root filesystem (a host path, inside the build's namespace).
    pub rootfs: PathBuf,
    /// Program and arguments; argv[0] without a `/` is looked up in the step's PATH.
    pub argv: Vec<String>,
    /// The complete environment, in order.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the rootfs; must exist.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's memberships in the image's /etc/group).
    #[serde(default)]
    pub groups: Vec<u32>,
    pub network: NetworkMode,
    pub hostname: String,
    /// Generated /etc/hosts and /etc/hostname, bound read-only over the rootfs's.
    pub hosts_file: PathBuf,
    pub hostname_file: PathBuf,
    /// Bound over /etc/resolv.conf: generated for a private network (naming its DNS
    /// forwarder), else the host's, if it has one.
    pub resolv_conf: Option<PathBuf>,
    /// A QEMU emulator to bind-mount at the same path in the rootfs (host binfmt_misc
    /// entries without the F flag only).
    pub emulator_bind: Option<PathBuf>,
    /// Run under the 32-bit personality (i386 on an amd64 kernel), so `uname -m` agrees.
    pub linux32: bool,
    /// `xbake run -i`: the command reads the caller's stdin (otherwise /dev/null).
    pub stdin_from_caller: bool,
    pub seccomp: SeccompMode,
    /// Memory, process and CPU limits, and how each is enforced (limits/).
    pub limits: super::limits::StepLimits,
    /// The step's own mounts (a RUN step's `mounts:`), made in this order after the
    /// standard ones. Their targets must exist in the rootfs (see `stubs.rs`).
    pub mounts: Vec<StepMount>,
    /// The wall clock (ns since the epoch) before which the command must not start: a
    /// build step's snapshot baseline tells its changes apart from what was there only
    /// by timestamps later than this (layer/snapshot.rs). The sandbox waits for it last,
    /// so its own set-up overlaps the wait.
    #[serde(default)]
    pub not_before_unix_ns: Option<u64>,
}

/// One of a step's own mounts: something bound or mounted at `target` for the duration
/// of the step only. Never part of a layer: the sandbox makes these mounts in the step's
/// namespaces, and the rootfs underneath sees none of their writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMount {
    /// Absolute path inside the rootfs; resolved inside it (symlinks never lead out).
    /// Never `/` or a path in /proc, /dev or /sys (see [`check_target`]).
    pub target: String,
    pub kind: MountKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A folder or file bound at the target (recursively). Read-only: every mount of the
    /// bound tree is made read-only, and the step cannot undo it. Read-write: the step's
    /// writes go to the source (cache mounts).
    Bind {
        source: MountSource,
        read_only: bool,
    },
    /// A folder bound read-write whose writes are thrown away after the step (BuildKit's
    /// `type=bind,rw`): an overlay whose lower layer is the source and whose upper and
    /// work folders are made in `scratch`, an empty private folder the caller owns and
    /// removes. A file source is copied into `scratch` and the copy bound instead.
    Scratch {
        source: MountSource,
        scratch: PathBuf,
    },
    /// A fresh tmpfs, `size` bytes at most (None: the kernel's default, half of RAM).
    /// Mode 1777, the kernel's default for a tmpfs root, as BuildKit leaves it; nosuid.
    Tmpfs { size: Option<u64> },
}

/// Where a bound file or folder comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A path xbake made or the caller named itself (a cache mount's folder, a secret's
    /// file on a private tmpfs): used as it is.
    Host(PathBuf),
    /// `path` inside the tree `root` (another stage's rootfs, the build context), as if
    /// `root` were `/`: symlinks in the tree never lead out of it.
    InRoot { root: PathBuf, path: String },
}

/// Top-level folders of the rootfs no step mount may cover or enter: the sandbox mounts
/// its own procfs, /dev and sysfs there, after the step's mounts, and a mount under them
/// would either be hidden or hide what the kernel interfaces must show.
pub const RESERVED_TARGETS: [&str; 3] = ["proc", "dev", "sys"];

/// Checks a step mount's target, relative to the rootfs (no leading `/`) and already
/// free of `.` and `..`: it must not be the root itself nor in a reserved folder. Also
/// applied to the target's real path, symlinks resolved, before anything is mounted.
pub fn check_target(rel: &std::path::Path) -> Result<(), String> {
    let mut parts = rel.components();
    match parts.next() {
        None => Err("a mount over the whole root filesystem is not allowed".into()),
        Some(first) => match first.as_os_str().to_str() {
            Some(top) if RESERVED_TARGETS.contains(&top) => Err(format!(
                "mounts in /{top} are not allowed: the sandbox mounts its own /{top} there"
            )),
            _ => Ok(()),
        },
    }
}

/// A target as written (absolute, e.g. `/root/.cache`) → the path relative to the
/// rootfs, checked with [`check_target`]. Refuses relative targets and `..`: the front
/// end makes a relative target absolute against the working directory first.
pub fn target_path(target: &str) -> Result<PathBuf, String> {
    if !target.starts_with('/') {
        return Err(format!("mount target {target:?} is not an absolute path"));
    }
    let mut rel = PathBuf::new();
    for part in std::path::Path::new(target).components() {
        match part {
            std::path::Component::Normal(name) => rel.push(name),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return Err(format!("mount target {target:?} has a \"..\" component")),
        }
    }
    if target.contains('\0') {
        return Err(format!("mount target {target:?} contains a NUL byte"));
    }
    check_target(&rel).map_err(|reason| format!("mount target {target}: {reason}"))?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_absolute_clean_and_outside_the_kernel_folders() {
        assert_eq!(
            target_path("/root/.cache/go-build"),
            Ok("root/.cache/go-build".into())
        );
        assert_eq!(target_path("//run/./secrets/"), Ok("run/secrets".into()));
        assert_eq!(
            target_path("/procfs"),
            Ok("procfs".into()),
            "a prefix is not /proc"
        );
        for (bad, why) in [
            ("relative", "not an absolute path"),
            ("/", "whole root"),
            ("/.", "whole root"),
            ("/proc", "/proc"),
            ("/proc/sys/kernel", "/proc"),
            ("/dev/shm", "/dev"),
            ("/sys/fs/cgroup", "/sys"),
            ("/a/../proc", ".."),
            ("/a\0b", "NUL"),
        ] {
            let err = target_path(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
