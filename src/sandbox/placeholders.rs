//! Mount points a step needs but the image lacks (`/proc` in a scratch image, an
//! `/etc/hosts` to bind over, …) are created just before the step and removed right
//! after it, so they never show up in the step's layer. Everything goes through
//! [`RootDir`], so a step that replaces `/etc` with a symlink cannot redirect the
//! clean-up outside the rootfs.

use super::plan::{mount_point_dirs, mount_point_files};
use super::spec::StepSpec;
use crate::layer::LayerError;
use crate::layer::root::{EntryMeta, RootDir};
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Placeholders {
    /// Created paths, parents before children.
    created: Vec<(PathBuf, bool)>,
}

impl Placeholders {
    /// Creates the mount points `spec` needs that do not exist yet.
    pub fn prepare(root: &RootDir, spec: &StepSpec) -> Result<Placeholders, LayerError> {
        let mut made = Placeholders::default();
        for dir in mount_point_dirs() {
            made.ensure_dir(root, Path::new(dir))?;
        }
        for file in mount_point_files(spec) {
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
                root.write_file(&file, &mut std::io::empty(), &meta)?;
                made.created.push((file, false));
            }
        }
        Ok(made)
    }

    fn ensure_dir(&mut self, root: &RootDir, rel: &Path) -> Result<(), LayerError> {
        if root.lstat(rel)?.is_none() {
            root.create_dir_all(rel, 0o755, (0, 0))?;
            self.created.push((rel.to_path_buf(), true));
        }
        Ok(())
    }

    /// Removes what `prepare` created, children first. A created directory the step
    /// filled (say `/etc` in a scratch image) is the step's work and stays.
    pub fn remove(self, root: &RootDir) -> Result<(), LayerError> {
        for (path, is_dir) in self.created.into_iter().rev() {
            if is_dir {
                if root.lstat(&path)?.is_some() && root.read_dir(&path)?.is_empty() {
                    root.remove_all(&path)?;
                }
            } else {
                root.remove_all(&path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::NetworkMode;

    fn spec() -> StepSpec {
        StepSpec {
            rootfs: "/unused".into(),
            argv: vec![],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            network: NetworkMode::Host,
            hostname: "xbake".into(),
            hosts_file: "/h".into(),
            hostname_file: "/n".into(),
            resolv_conf: Some("/r".into()),
            emulator_bind: Some("/usr/bin/qemu-arm-static".into()),
            linux32: false,
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(dir)
            .min_depth(1)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn an_empty_rootfs_gets_every_mount_point_and_loses_them_afterwards() {
        let tmp = tempfile::tempdir().unwrap();
        let root = RootDir::open(tmp.path()).unwrap();
        let p = Placeholders::prepare(&root, &spec()).unwrap();
        assert_eq!(
            listing(tmp.path()),
            [
                "dev", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys",
                "usr", "usr/bin", "usr/bin/qemu-arm-static"
            ]
        );
        p.remove(&root).unwrap();
        assert!(listing(tmp.path()).is_empty());
    }

    #[test]
    fn existing_paths_are_left_alone_and_step_output_in_created_dirs_survives() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("proc")).unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/hosts"), "base").unwrap();
        let root = RootDir::open(tmp.path()).unwrap();
        let p = Placeholders::prepare(&root, &spec()).unwrap();
        // The "step" writes into a directory that only exists as a placeholder.
        std::fs::write(tmp.path().join("usr/bin/tool"), "x").unwrap();
        p.remove(&root).unwrap();
        assert_eq!(
            listing(tmp.path()),
            ["etc", "etc/hosts", "proc", "usr", "usr/bin", "usr/bin/tool"]
        );
        assert_eq!(std::fs::read_to_string(tmp.path().join("etc/hosts")).unwrap(), "base");
    }
}
