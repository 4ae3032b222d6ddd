//! Folders of the cache that only the build's owner may enter. A build's root
//! filesystems hold whatever its steps made — setuid-root programs and copies of
//! /etc/shadow among them — so with a shared `--cache-dir` (say under /tmp) another local
//! user must not be able to reach them: every folder the cache creates is 0700, as
//! podman's and buildah's storage roots are.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

pub const PRIVATE_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700. An existing `dir` is tightened
/// to 0700 too, so a cache made by an older xbake is private from now on.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_MODE)
        .create(dir)
        .map_err(|e| with_path(dir, e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| with_path(dir, e))?;
    if !meta.is_dir() {
        return Err(with_path(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        ));
    }
    if meta.permissions().mode() & 0o7777 != PRIVATE_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_MODE))
            .map_err(|e| with_path(dir, e))?;
    }
    Ok(())
}

/// Creates `dir`, which must not exist yet, with mode 0700.
pub fn create_new_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .mode(PRIVATE_MODE)
        .create(dir)
        .map_err(|e| with_path(dir, e))
}

fn with_path(dir: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn folders_are_made_private_and_existing_ones_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        create_private_dir(&deep).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&tmp.path().join(p)), 0o700, "{p}");
        }
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        create_new_private_dir(&tmp.path().join("new")).unwrap();
        assert_eq!(mode(&tmp.path().join("new")), 0o700);
        assert!(create_new_private_dir(&tmp.path().join("new")).is_err());
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let err = create_private_dir(&tmp.path().join("file")).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }
}
