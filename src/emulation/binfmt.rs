//! binfmt_misc: a private instance in the build's user namespace, or the host's entries.

use super::EmulationError;
use super::table::BinfmtEntry;
use nix::mount::{MsFlags, mount};
use std::path::{Path, PathBuf};

/// Flags for every entry xbake registers (qemu/README.md explains each):
/// F opens the emulator now, so it need not exist in the rootfs; C (implies O) gives
/// setuid programs their own credentials; P keeps argv[0] for busybox-style programs.
pub const FLAGS: &str = "POCF";

/// Mounts a fresh binfmt_misc instance at `dir`. Since Linux 6.7 (commit 21ca59b365c0,
/// "binfmt_misc: enable sandboxed mounts") an instance mounted inside a user namespace
/// belongs to that namespace: entries registered there apply to its processes only, and
/// the host's entries are not consulted any more. Must run as root of the build's user
/// namespace, inside its own mount namespace.
pub fn mount_private_instance(dir: &Path) -> Result<(), nix::Error> {
    mount(
        Some("binfmt_misc"),
        dir,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}

/// Detaches the instance mounted at `dir` (the build is done with it; its entries go
/// with the user namespace anyway, but the mount point must become removable).
pub fn unmount_private_instance(dir: &Path) -> Result<(), nix::Error> {
    nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH)
}

/// Registers `entry` with `interpreter` in the instance mounted at `dir`, under the name
/// `qemu-NAME`. One write to `register` is atomic in the kernel: either the entry
/// exists afterwards or nothing was added.
pub fn register(dir: &Path, entry: &BinfmtEntry, interpreter: &Path) -> Result<(), EmulationError> {
    let name = format!("qemu-{}", entry.name);
    let line = entry.register_line(&name, &interpreter.to_string_lossy(), FLAGS);
    let register = dir.join("register");
    std::fs::write(&register, line).map_err(|source| EmulationError::Register {
        name: name.clone(),
        interpreter: interpreter.to_path_buf(),
        source,
    })?;
    let status =
        std::fs::read_to_string(dir.join(&name)).map_err(|source| EmulationError::Register {
            name: name.clone(),
            interpreter: interpreter.to_path_buf(),
            source,
        })?;
    if !status.lines().any(|l| l == "enabled") {
        return Err(EmulationError::Register {
            name,
            interpreter: interpreter.to_path_buf(),
            source: std::io::Error::other("entry registered but not enabled"),
        });
    }
    Ok(())
}

/// One entry as the kernel reports it in `/proc/sys/fs/binfmt_misc/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    pub flags: String,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

impl HostEntry {
    /// Parses the kernel's text form (see `entry_status` in fs/binfmt_misc.c). Extension
    /// entries (`E` type, no magic) return None: xbake only cares about ELF magic.
    pub fn parse(name: &str, text: &str) -> Option<HostEntry> {
        let mut entry = HostEntry {
            name: name.to_string(),
            enabled: false,
            interpreter: PathBuf::new(),
            flags: String::new(),
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            if line == "enabled" {
                entry.enabled = true;
            } else if let Some(v) = line.strip_prefix("interpreter ") {
                entry.interpreter = PathBuf::from(v);
            } else if let Some(v) = line.strip_prefix("flags: ") {
                entry.flags = v.to_string();
            } else if let Some(v) = line.strip_prefix("magic ") {
                entry.magic = hex::decode(v).ok()?;
            } else if let Some(v) = line.strip_prefix("mask ") {
                entry.mask = hex::decode(v).ok()?;
            }
        }
        if entry.magic.is_empty() {
            return None;
        }
        if entry.mask.is_empty() {
            entry.mask = vec![0xff; entry.magic.len()];
        }
        Some(entry)
    }

    /// Whether this entry claims the executables `ours` describes: our magic, taken as a
    /// file header, passes the host entry's magic/mask test.
    pub fn claims(&self, ours: &BinfmtEntry) -> bool {
        BinfmtEntry {
            name: self.name.clone(),
            magic: self.magic.clone(),
            mask: self.mask.clone(),
        }
        .matches(&ours.magic)
    }

    /// Without `F` the kernel opens the interpreter by path at every exec, from inside the
    /// step's root, so the emulator must be visible there.
    pub fn needs_interpreter_in_rootfs(&self) -> bool {
        !self.flags.contains('F')
    }
}

/// Reads every enabled magic entry of the host's binfmt_misc mounted at `dir`. A missing
/// or unmounted directory gives an empty list.
pub fn host_entries(dir: &Path) -> Vec<HostEntry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut entries: Vec<HostEntry> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            HostEntry::parse(&name, &text)
        })
        .filter(|e| e.enabled)
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulation::table::entry_for;

    const DEBIAN_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
flags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
mask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn parses_the_kernel_entry_format() {
        let e = HostEntry::parse("qemu-aarch64", DEBIAN_AARCH64).unwrap();
        assert!(e.enabled);
        assert_eq!(
            e.interpreter,
            Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        assert_eq!(e.flags, "POCF");
        assert!(!e.needs_interpreter_in_rootfs());
        assert!(e.claims(&entry_for("aarch64").unwrap()));
        assert!(!e.claims(&entry_for("arm").unwrap()));
        let no_f = HostEntry::parse("x", &DEBIAN_AARCH64.replace("POCF", "P")).unwrap();
        assert!(no_f.needs_interpreter_in_rootfs());
        assert_eq!(
            HostEntry::parse(
                "jar",
                "enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n"
            ),
            None
        );
    }

    #[test]
    fn host_entries_reads_a_directory_and_skips_control_files_and_disabled_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        std::fs::write(dir.path().join("qemu-aarch64"), DEBIAN_AARCH64).unwrap();
        std::fs::write(
            dir.path().join("qemu-off"),
            DEBIAN_AARCH64.replace("enabled", "disabled"),
        )
        .unwrap();
        let entries = host_entries(dir.path());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "qemu-aarch64");
        assert!(host_entries(&dir.path().join("absent")).is_empty());
    }
}
