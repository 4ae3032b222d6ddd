//! Running foreign-architecture binaries: QEMU user-mode emulators started by the kernel
//! through binfmt_misc. See `qemu/README.md` for the policy; this module is its code.

pub mod binfmt;
pub mod qemu;
pub mod table;

use crate::platform::Platform;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use table::BinfmtEntry;

#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error(
        "no QEMU user-mode emulator for {platform}: none of {} exists; install it with \
         `apt-get install qemu-user-static` (or point XBAKE_QEMU_PATH at the folder holding \
         qemu-{}-static)",
        list(looked_at), platform.qemu_name()
    )]
    MissingEmulator {
        platform: Platform,
        looked_at: Vec<PathBuf>,
    },
    #[error(
        "the QEMU emulator for {platform}, {path}, is dynamically linked and cannot start \
         inside a foreign root filesystem; install the static one with \
         `apt-get install qemu-user-static`"
    )]
    DynamicEmulator { platform: Platform, path: PathBuf },
    #[error("qemu/binfmt.conf line {line}: {reason}")]
    Table { line: usize, reason: String },
    #[error("qemu/binfmt.conf has no entry for QEMU architecture {name:?}")]
    NoTableEntry { name: String },
    #[error("registering binfmt_misc entry {name} for {interpreter}: {source}")]
    Register {
        name: String,
        interpreter: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot run {platform} steps: {why}, and the host has no enabled binfmt_misc entry \
         for {emulator}. {remedy}"
    )]
    Unavailable {
        platform: Platform,
        why: String,
        emulator: String,
        /// What to do, which depends on why the private instance was not used.
        remedy: String,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// One emulator a build needs: shared by every platform with the same QEMU name
/// (arm/v6 and arm/v7 both run on qemu-arm, with different CPU models).
#[derive(Clone, Debug)]
pub struct Emulator {
    pub platform: Platform,
    pub interpreter: PathBuf,
    pub entry: BinfmtEntry,
}

/// Pre-flight, on the host before any namespace exists: the emulators `platforms` need
/// on `host`, each found and checked. Native platforms need none.
pub fn required_emulators(
    platforms: &[Platform],
    host: &Platform,
    search: &[PathBuf],
) -> Result<Vec<Emulator>, EmulationError> {
    let mut out: Vec<Emulator> = Vec::new();
    for platform in platforms {
        if platform.runs_natively_on(host)
            || out
                .iter()
                .any(|e| e.platform.qemu_name() == platform.qemu_name())
        {
            continue;
        }
        out.push(Emulator {
            platform: *platform,
            interpreter: qemu::find_emulator(platform, search)?,
            entry: table::entry_for(platform.qemu_name())?,
        });
    }
    Ok(out)
}

/// How steps reach their emulators once [`activate`] succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activation {
    /// Host entries without `F`: QEMU name → emulator path, to bind-mount read-only at
    /// the same path inside each step's root.
    pub binds: BTreeMap<String, PathBuf>,
    /// True when the build's private binfmt_misc instance is in use.
    pub private_instance: bool,
}

impl Activation {
    pub fn bind_for(&self, platform: &Platform) -> Option<&Path> {
        self.binds.get(platform.qemu_name()).map(PathBuf::as_path)
    }
}

/// Where the kernel's binfmt_misc is usually mounted on the host.
pub const HOST_BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Makes every emulator usable by exec, from inside the build's user and mount
/// namespaces. Prefers a private binfmt_misc instance mounted at `private_dir`; when the
/// kernel refuses it (before Linux 6.7), or `force_host` is set (`XBAKE_BINFMT=host`),
/// falls back to the host's entries in `host_dir`.
pub fn activate(
    emulators: &[Emulator],
    private_dir: &Path,
    host_dir: &Path,
    force_host: bool,
) -> Result<Activation, EmulationError> {
    if emulators.is_empty() {
        return Ok(Activation::default());
    }
    let host_wide = "register the emulators host-wide once as root: \
                     `apt-get install qemu-user-static binfmt-support`";
    let (why, remedy) = if force_host {
        (
            "XBAKE_BINFMT=host asks for the host's entries".to_string(),
            format!(
                "Unset XBAKE_BINFMT to use a private binfmt_misc instance (this kernel, {}, \
                 {}), or {host_wide}",
                kernel_release(),
                if allows_private_instance(&kernel_release()) {
                    "allows one"
                } else {
                    "is older than Linux 6.7 and refuses one"
                }
            ),
        )
    } else {
        match binfmt::mount_private_instance(private_dir) {
            Ok(()) => {
                for e in emulators {
                    binfmt::register(private_dir, &e.entry, &e.interpreter)?;
                }
                return Ok(Activation {
                    binds: BTreeMap::new(),
                    private_instance: true,
                });
            }
            Err(errno) => (
                format!(
                    "this kernel ({}) refused a binfmt_misc instance in the build's user \
                     namespace ({}; Linux 6.7 is the first to allow it)",
                    kernel_release(),
                    errno.desc()
                ),
                format!("Either build on Linux 6.7 or newer, or {host_wide}"),
            ),
        }
    };
    use_host_entries(emulators, &binfmt::host_entries(host_dir), &why, &remedy)
}

/// The fallback: find a host entry claiming each emulator's executables.
fn use_host_entries(
    emulators: &[Emulator],
    host: &[binfmt::HostEntry],
    why: &str,
    remedy: &str,
) -> Result<Activation, EmulationError> {
    let mut binds = BTreeMap::new();
    for e in emulators {
        let Some(found) = host.iter().find(|h| h.claims(&e.entry)) else {
            return Err(EmulationError::Unavailable {
                platform: e.platform,
                why: why.to_string(),
                emulator: format!("qemu-{}", e.entry.name),
                remedy: remedy.to_string(),
            });
        };
        if found.needs_interpreter_in_rootfs() {
            binds.insert(e.entry.name.clone(), found.interpreter.clone());
        }
    }
    Ok(Activation {
        binds,
        private_instance: false,
    })
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Linux (major, minor) of a release string (`uname -r`: `6.18.3-amd64`).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether a kernel of this release lets a user namespace mount its own binfmt_misc
/// instance: Linux 6.7 and later. An unreadable release says no.
pub fn allows_private_instance(release: &str) -> bool {
    kernel_version(release).is_some_and(|v| v >= (6, 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_instances_are_known_from_linux_6_7_on() {
        for (release, allows) in [
            ("6.18.3-amd64", true),
            ("6.7.0", true),
            ("7.0.1", true),
            ("6.6.58-cloud", false),
            ("5.15.0-91-generic", false),
            ("", false),
            ("unknown", false),
        ] {
            assert_eq!(allows_private_instance(release), allows, "{release}");
        }
    }

    fn emulator(name: &str) -> Emulator {
        let platform: Platform = name.parse().unwrap();
        Emulator {
            platform,
            interpreter: PathBuf::from(format!("/usr/bin/qemu-{}-static", platform.qemu_name())),
            entry: table::entry_for(platform.qemu_name()).unwrap(),
        }
    }

    #[test]
    fn native_platforms_need_no_emulator_and_arm_variants_share_one() {
        let host: Platform = "amd64".parse().unwrap();
        let platforms = Platform::parse_list("amd64,386").unwrap();
        assert!(
            required_emulators(&platforms, &host, &[])
                .unwrap()
                .is_empty()
        );

        let dir = tempfile::tempdir().unwrap();
        let err = required_emulators(
            &Platform::parse_list("amd64,arm64").unwrap(),
            &host,
            &[dir.path().to_path_buf()],
        )
        .unwrap_err();
        assert!(
            matches!(err, EmulationError::MissingEmulator { .. }),
            "{err}"
        );

        if Path::new("/usr/bin/qemu-arm-static").exists() {
            let found = required_emulators(
                &Platform::parse_list("arm/v6,arm/v7").unwrap(),
                &host,
                &[PathBuf::from("/usr/bin")],
            )
            .unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].entry.name, "arm");
        }
    }

    #[test]
    fn host_fallback_binds_interpreters_of_entries_without_f_and_names_missing_ones() {
        let with_f = binfmt::HostEntry::parse(
            "qemu-aarch64",
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\n\
             magic 7f454c460201010000000000000000000200b700\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        let without_f = binfmt::HostEntry::parse(
            "arm",
            "enabled\ninterpreter /usr/local/bin/qemu-arm\nflags: P\n\
             magic 7f454c4601010100000000000000000002002800\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        let act = use_host_entries(
            &[emulator("arm64"), emulator("arm")],
            &[with_f.clone(), without_f],
            "test",
            "remedy",
        )
        .unwrap();
        assert!(!act.private_instance);
        assert_eq!(act.bind_for(&"arm64".parse().unwrap()), None);
        assert_eq!(
            act.bind_for(&"arm/v6".parse().unwrap()),
            Some(Path::new("/usr/local/bin/qemu-arm"))
        );

        let err = use_host_entries(
            &[emulator("ppc64le")],
            &[with_f],
            "kernel too old",
            "upgrade",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("linux/ppc64le") && msg.contains("qemu-ppc64le"),
            "{msg}"
        );
        assert!(msg.contains("kernel too old"), "{msg}");
    }

    #[test]
    fn forced_host_mode_without_entries_is_a_clear_error() {
        let empty = tempfile::tempdir().unwrap();
        let err = activate(&[emulator("s390x")], empty.path(), empty.path(), true).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("XBAKE_BINFMT=host"), "{msg}");
        // The remedy fits the cause: unset the variable, never "upgrade the kernel".
        assert!(msg.contains("Unset XBAKE_BINFMT"), "{msg}");
        assert!(!msg.contains("build on Linux 6.7 or newer"), "{msg}");
        assert_eq!(
            activate(&[], empty.path(), empty.path(), false).unwrap(),
            Activation::default()
        );
    }
}
