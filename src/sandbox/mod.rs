//! The namespace sandbox: the build's user namespace, and one set of namespaces per RUN
//! step. With `emulation/`, the only place for unsafe code and raw syscalls.

pub mod idmap;
pub mod init;
pub mod limits;
pub mod mounts;
mod net;
pub mod network;
pub mod overlay;
mod persona;
pub mod placeholders;
pub mod plan;
mod privileges;
pub mod run;
pub mod seccomp;
pub mod spec;
pub mod stubs;
pub mod tmpfs;
pub mod userns;

pub use run::{StepExit, StepResult, run_step};
pub use spec::{MountKind, MountSource, NetworkMode, SeccompMode, StepMount, StepSpec};
pub use stubs::MountStubs;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {}", errno.desc())]
    Sys {
        what: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("cannot create the build's user namespace ({}): {advice}", errno.desc())]
    UserNamespace {
        errno: nix::errno::Errno,
        advice: String,
    },
    #[error("setting up the build's id maps: {detail}")]
    IdMap {
        detail: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("{message}")]
    StepSetup { message: String },
    #[error(transparent)]
    Network(#[from] network::NetworkError),
}

/// Asks for SIGKILL when the parent dies (prctl(2) PR_SET_PDEATHSIG), then checks that
/// `parent` did not die before that took effect. Call again after every credential
/// change: commit_creds (kernel/cred.c) clears the setting when the effective ids or
/// the capabilities change, as entering a user namespace or becoming its root does.
/// Ok(false): the parent is gone.
fn die_with_parent(parent: nix::unistd::Pid) -> Result<bool, nix::errno::Errno> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    Ok(nix::unistd::getppid() == parent)
}

/// Hidden modes, checked first thing in `main` while the process is single-threaded:
/// `xbake __step` (never returns), and the build-namespace handshake (returns `Ok` and
/// lets `main` go on to run the command inside the namespace).
pub fn hidden_entry() -> Result<(), SandboxError> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == init::STEP_ARG)
    {
        init::step_main();
    }
    userns::enter_if_requested().map(|_| ())
}
