//! Finding the static QEMU user-mode emulator for an architecture.

use super::EmulationError;
use crate::platform::Platform;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Folders searched for emulators: `$XBAKE_QEMU_PATH` if set (so tests and unusual
/// installs can point elsewhere), else `$PATH` followed by the usual install folders.
pub fn search_path() -> Vec<PathBuf> {
    if let Some(dirs) = std::env::var_os("XBAKE_QEMU_PATH") {
        return std::env::split_paths(&dirs).collect();
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/local/bin", "/usr/bin"] {
        let extra = PathBuf::from(extra);
        if !dirs.contains(&extra) {
            dirs.push(extra);
        }
    }
    dirs
}

/// The emulator for `platform`: `qemu-NAME-static`, else `qemu-NAME`, in `dirs`, and
/// statically linked. The kernel starts it inside the step's root filesystem, where a
/// dynamically linked emulator would not find the host's libraries.
pub fn find_emulator(platform: &Platform, dirs: &[PathBuf]) -> Result<PathBuf, EmulationError> {
    let names = [
        format!("qemu-{}-static", platform.qemu_name()),
        format!("qemu-{}", platform.qemu_name()),
    ];
    let mut looked_at = Vec::new();
    let mut dynamic = None;
    for name in &names {
        for dir in dirs {
            let candidate = dir.join(name);
            looked_at.push(candidate.clone());
            if !is_executable_file(&candidate) {
                continue;
            }
            match is_static_elf(&candidate) {
                Ok(true) => return Ok(candidate),
                Ok(false) => {
                    dynamic.get_or_insert(candidate);
                }
                Err(_) => continue,
            }
        }
    }
    match dynamic {
        Some(path) => Err(EmulationError::DynamicEmulator {
            platform: *platform,
            path,
        }),
        None => Err(EmulationError::MissingEmulator {
            platform: *platform,
            looked_at,
        }),
    }
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

const PT_INTERP: u32 = 3;

/// Whether an ELF file has no program interpreter (no PT_INTERP program header), i.e. is
/// statically linked. Reads only the ELF header and the program header table.
pub fn is_static_elf(path: &Path) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    let mut head = vec![0u8; 64];
    file.read_exact(&mut head)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an ELF file");
    if &head[..4] != b"\x7fELF" {
        return Err(invalid());
    }
    let is64 = head[4] == 2;
    let big = head[5] == 2;
    let u16_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1]];
        if big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let u64_at = |b: &[u8], o: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[o..o + 8]);
        if big {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        }
    };
    // e_phoff, e_phentsize, e_phnum (ELF specification, "ELF Header").
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(&head, 32), u16_at(&head, 54), u16_at(&head, 56))
    } else {
        (
            u64::from(u32_at(&head, 28)),
            u16_at(&head, 42),
            u16_at(&head, 44),
        )
    };
    if phentsize < 4 {
        return Err(invalid());
    }
    let table_len = usize::from(phentsize) * usize::from(phnum);
    let mut table = vec![0u8; table_len];
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut table)?;
    let has_interp = table
        .chunks_exact(usize::from(phentsize))
        .any(|ph| u32_at(ph, 0) == PT_INTERP);
    Ok(!has_interp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        // The test binary itself is dynamically linked (Rust's default on glibc).
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("script");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        assert!(is_static_elf(&text).is_err());
    }

    #[test]
    fn missing_emulator_error_names_the_files_and_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let arm64: Platform = "arm64".parse().unwrap();
        let err = find_emulator(&arm64, &[dir.path().to_path_buf()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("linux/arm64"), "{msg}");
        assert!(msg.contains("qemu-aarch64-static"), "{msg}");
        assert!(msg.contains("apt-get install qemu-user-static"), "{msg}");
    }

    #[test]
    fn a_dynamically_linked_emulator_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("qemu-s390x-static");
        std::fs::copy(std::env::current_exe().unwrap(), &fake).unwrap();
        let s390x: Platform = "s390x".parse().unwrap();
        let err = find_emulator(&s390x, &[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            matches!(err, EmulationError::DynamicEmulator { .. }),
            "{err}"
        );
    }

    #[test]
    fn installed_debian_emulators_are_found_when_present() {
        let arm64: Platform = "arm64".parse().unwrap();
        let dirs = [PathBuf::from("/usr/bin")];
        if Path::new("/usr/bin/qemu-aarch64-static").exists() {
            let found = find_emulator(&arm64, &dirs).unwrap();
            assert_eq!(found, Path::new("/usr/bin/qemu-aarch64-static"));
            assert!(is_static_elf(&found).unwrap());
        }
    }
}

/// What an auditor needs to know about the emulator that ran a build's steps: it is
/// part of what made the image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EmulatorIdentity {
    pub path: std::path::PathBuf,
    /// First line of `--version`, e.g. "qemu-aarch64 version 7.2.19 (Debian …)".
    pub version: String,
    pub sha256: crate::digest::Digest,
}

/// `sha256` is the digest the build already computed for its step keys: the very bytes
/// that ran, not a second read that could see a replaced file.
pub fn identify(path: &Path, sha256: crate::digest::Digest) -> std::io::Result<EmulatorIdentity> {
    Ok(EmulatorIdentity {
        path: path.to_path_buf(),
        version: version_of(path)?,
        sha256,
    })
}

/// The first line of `PROGRAM --version` (QEMU's, a network helper's), trimmed.
pub fn version_of(path: &Path) -> std::io::Result<String> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}
