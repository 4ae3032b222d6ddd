//! Turning "run this argv in that rootfs" into a sandbox spec: used by RUN steps and by
//! `xbake run`.

use super::env::step_env;
use super::users;
use crate::emulation::Activation;
use crate::layer::LayerError;
use crate::layer::root::RootDir;
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
        network: req.network,
        hostname: "xbake".into(),
        hosts_file: req.scratch.join("hosts"),
        hostname_file: req.scratch.join("hostname"),
        resolv_conf: host_resolv_conf(),
        emulator_bind: req.activation.bind_for(req.platform).map(Path::to_path_buf),
        // i386 binaries on an x86_64 kernel: report i686 like `setarch linux32`.
        linux32: req.native
            && req.platform.oci_arch() == "386"
            && std::env::consts::ARCH == "x86_64",
        stdin_from_caller: req.stdin_from_caller,
        seccomp: req.seccomp,
        limits: req.limits,
    };
    let hosts =
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\txbake\n";
    write_if_missing(&spec.hosts_file, hosts)
        .map_err(|e| format!("writing the step's /etc/hosts: {e}"))?;
    write_if_missing(&spec.hostname_file, "xbake\n")
        .map_err(|e| format!("writing the step's /etc/hostname: {e}"))?;
    Ok(spec)
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
    Placeholders::prepare(
        root,
        host_resolv_conf().is_some(),
        activation.bind_for(platform),
    )
    .map(|_| ())
}

fn write_if_missing(path: &Path, text: &str) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, text)
}
