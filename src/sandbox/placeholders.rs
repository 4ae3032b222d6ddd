//! Mount points steps need but the image lacks (`/proc` in a scratch image, an
//! `/etc/hosts` to bind over, …) are created once, before the first snapshot of the
//! rootfs, and stay until it is thrown away. Being in every snapshot, they never show
//! up in a layer (unless a step really changes them, e.g. copies its own /etc/hosts);
//! and creating them per step would bump their parents' ctime between snapshots and
//! make every step report `/etc` as changed. All paths go through [`RootDir`], so they
//! resolve inside the rootfs.

use super::plan::{mount_point_dirs, mount_point_files};
use crate::layer::LayerError;
use crate::layer::root::{EntryMeta, RootDir};
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Placeholders {
    /// Created paths, parents before children (`true` for folders).
    pub created: Vec<(PathBuf, bool)>,
}

impl Placeholders {
    /// Creates the mount points that do not exist yet: those of every step, plus the
    /// host's resolv.conf and a host emulator to bind, when steps will use them.
    pub fn prepare(
        root: &RootDir,
        resolv_conf: bool,
        emulator: Option<&Path>,
    ) -> Result<Placeholders, LayerError> {
        let mut made = Placeholders::default();
        for dir in mount_point_dirs() {
            made.ensure_dir(root, Path::new(dir))?;
        }
        for file in mount_point_files(resolv_conf, emulator) {
            let file = PathBuf::from(file);
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                let mut partial = PathBuf::new();
                for part in parent.components() {
                    partial.push(part);
                    made.ensure_dir(root, &partial)?;
                }
            }
            if root.lstat(&file)?.is_none() {
                let meta = EntryMeta {
                    mode: 0o644,
                    ..EntryMeta::default()
                };
                // Owned by namespace root, so no metadata can be skipped; and the file
                // is gone again after the step.
                let _ = root.write_file(&file, &mut std::io::empty(), &meta)?;
                made.created.push((file, false));
            }
        }
        Ok(made)
    }

    fn ensure_dir(&mut self, root: &RootDir, rel: &Path) -> Result<(), LayerError> {
        if root.lstat(rel)?.is_none() {
            let _ = root.create_dir_all(rel, 0o755, (0, 0))?;
            self.created.push((rel.to_path_buf(), true));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(dir)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn an_empty_rootfs_gets_every_mount_point() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RootDir::open(tmp.path()).unwrap();
        let made = Placeholders::prepare(&root, true, Some(Path::new("/usr/bin/qemu-arm-static")))
            .unwrap();
        let expected = [
            "dev",
            "etc",
            "etc/hostname",
            "etc/hosts",
            "etc/resolv.conf",
            "proc",
            "sys",
            "usr",
            "usr/bin",
            "usr/bin/qemu-arm-static",
        ];
        assert_eq!(listing(tmp.path()), expected);
        assert_eq!(made.created.len(), expected.len());
    }

    #[test]
    fn existing_paths_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("proc")).unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/hosts"), "base").unwrap();
        let root = RootDir::open(tmp.path()).unwrap();
        let made = Placeholders::prepare(&root, false, None).unwrap();
        let created: Vec<String> = made
            .created
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(created, ["dev", "sys", "etc/hostname"]);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("etc/hosts")).unwrap(),
            "base"
        );
    }
}
