//! Turning "run this argv in that rootfs" into a sandbox spec: used by RUN steps and by
//! `xbake run`.

use super::env::step_env;
use super::users;
use crate::emulation::Activation;
use crate::layer::LayerError;
use crate::layer::root::RootDir;
use crate::recipe::Network;
use crate::sandbox::placeholders::Placeholders;
use crate::sandbox::{NetworkMode, StepSpec};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Everything about one sandboxed command that does not depend on the recipe: used by
/// RUN steps and by `xbake run`.
pub struct SandboxRequest<'a> {
    pub root: &'a RootDir,
    /// Scratch folder for the generated hosts/hostname files.
    pub scratch: &'a Path,
    pub platform: &'a crate::platform::Platform,
    pub native: bool,
    pub activation: &'a Activation,
    pub image_env: &'a [(String, String)],
    pub build_env: &'a [(String, String)],
    pub workdir: &'a str,
    pub user: Option<&'a str>,
    pub argv: Vec<String>,
    pub network: NetworkMode,
    /// `xbake run -i`: pass the caller's stdin through.
    pub stdin_from_caller: bool,
    pub seccomp: crate::sandbox::SeccompMode,
    pub limits: crate::sandbox::limits::StepLimits,
}

/// Resolves the user in the image, writes hosts/hostname, and assembles the spec.
pub fn sandbox_spec(req: SandboxRequest) -> Result<StepSpec, String> {
    let read_text = |path: &str| -> Option<String> {
        let mut text = String::new();
        req.root
            .open_file(Path::new(path))
            .ok()?
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    let user = users::resolve(
        req.user,
        read_text("etc/passwd").as_deref(),
        read_text("etc/group").as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let spec = StepSpec {
        rootfs: req.root.path().to_path_buf(),
        argv: req.argv,
        env: step_env(
            req.image_env,
            req.build_env,
            req.platform,
            !req.native,
            &user.home,
        ),
        cwd: req.workdir.to_string(),
        uid: user.uid,
        gid: user.gid,
        groups: user.groups,
        network: req.network,
        hostname: "xbake".into(),
        hosts_file: req.scratch.join("hosts"),
        hostname_file: req.scratch.join("hostname"),
        resolv_conf: match req.network {
            NetworkMode::Private => Some(req.scratch.join("resolv.conf")),
            NetworkMode::Host | NetworkMode::None => host_resolv_conf(),
        },
        emulator_bind: req.activation.bind_for(req.platform).map(Path::to_path_buf),
        // i386 binaries on an x86_64 kernel: report i686 like `setarch linux32`.
        linux32: req.native
            && req.platform.oci_arch() == "386"
            && std::env::consts::ARCH == "x86_64",
        stdin_from_caller: req.stdin_from_caller,
        seccomp: req.seccomp,
        limits: req.limits,
        // The caller's to fill (see build/mounts.rs): they need the step's leases.
        mounts: Vec::new(),
        // The build's to set (pipeline.rs), from its snapshot baseline.
        not_before_unix_ns: None,
    };
    let hosts =
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\txbake\n";
    write_if_missing(&spec.hosts_file, hosts)
        .map_err(|e| format!("writing the step's /etc/hosts: {e}"))?;
    write_if_missing(&spec.hostname_file, "xbake\n")
        .map_err(|e| format!("writing the step's /etc/hostname: {e}"))?;
    if let (NetworkMode::Private, Some(resolv)) = (spec.network, &spec.resolv_conf) {
        write_if_missing(resolv, &private_resolv_conf())
            .map_err(|e| format!("writing the step's /etc/resolv.conf: {e}"))?;
    }
    Ok(spec)
}

/// A private network's resolv.conf: its helper's DNS forwarder, which asks the host's
/// resolvers. Never the host's file, whose servers may be loopback addresses
/// (systemd-resolved's 127.0.0.53) that the step's namespace cannot reach.
fn private_resolv_conf() -> String {
    format!("nameserver {}\n", crate::sandbox::network::DNS_SERVER)
}

/// Which network a RUN step gets: its own `network:` first, then the command line's
/// `--network`, else a private one.
pub fn step_network(step: Option<Network>, command_line: Option<NetworkMode>) -> NetworkMode {
    match (step, command_line) {
        (Some(n), _) => n.into(),
        (None, Some(mode)) => mode,
        (None, None) => NetworkMode::Private,
    }
}

impl From<Network> for NetworkMode {
    fn from(n: Network) -> NetworkMode {
        match n {
            Network::Private => NetworkMode::Private,
            Network::Host => NetworkMode::Host,
            Network::None => NetworkMode::None,
        }
    }
}

/// The host's resolv.conf, bound into steps when it exists.
fn host_resolv_conf() -> Option<PathBuf> {
    let resolv = Path::new("/etc/resolv.conf");
    resolv.is_file().then(|| resolv.to_path_buf())
}

/// Creates the mount points every step of this rootfs needs; call once, before the
/// first snapshot (see sandbox/placeholders.rs for why).
pub fn prepare_mount_points(
    root: &RootDir,
    activation: &Activation,
    platform: &crate::platform::Platform,
) -> Result<(), LayerError> {
    // Private-network steps (the default) always bind a resolv.conf.
    Placeholders::prepare(root, true, activation.bind_for(platform)).map(|_| ())
}

fn write_if_missing(path: &Path, text: &str) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, text)
}

#[cfg(test)]
#[test]
fn a_steps_own_network_wins_then_the_command_line_then_private() {
    assert_eq!(step_network(None, None), NetworkMode::Private);
    assert_eq!(
        step_network(None, Some(NetworkMode::Host)),
        NetworkMode::Host
    );
    assert_eq!(
        step_network(None, Some(NetworkMode::None)),
        NetworkMode::None
    );
    assert_eq!(
        step_network(Some(Network::None), Some(NetworkMode::Host)),
        NetworkMode::None
    );
    assert_eq!(
        step_network(Some(Network::Host), Some(NetworkMode::None)),
        NetworkMode::Host
    );
    assert_eq!(
        step_network(Some(Network::Private), Some(NetworkMode::Host)),
        NetworkMode::Private
    );
    assert_eq!(private_resolv_conf(), "nameserver 10.0.2.3\n");
}
