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
}
