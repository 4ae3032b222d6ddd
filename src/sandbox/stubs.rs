//! Mount points for a step's own mounts (`StepSpec::mounts`) that the rootfs lacks: a
//! cache at /root/.cache/go-build, a secret at /run/secrets/token. Each missing target
//! (a folder, or a file for a file source) and its missing parents are created just
//! before the step and removed just after it, before its changes are found, so they
//! never appear in a layer; the times of the folder they were made in are put back,
//! and the snapshotter is told to overlook the ctime that creating and removing an
//! entry leaves (BuildKit does the same: executor/stubs.go, moby/buildkit#3148).
//!
//! A stub the step wrote into (an intermediate folder such as /root/.cache, with a new
//! file beside the mount) is the step's own output: it stays, and is in the layer.
//!
//! Unlike `placeholders.rs` (the mount points of every step, made once per rootfs),
//! these differ from step to step, and a later step must not find them: its layer would
//! then depend on whether this step ran or came from the cache.

use super::spec::{MountKind, MountSource, StepMount, check_target, target_path};
use crate::layer::LayerError;
use crate::layer::root::{EntryMeta, RootDir};
use crate::layer::snapshot::Snapshotter;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use nix::sys::time::TimeSpec;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StubError {
    #[error("mount target {target}: {reason}")]
    Target { target: String, reason: String },
    #[error("mount source {source_path}: {errno}", errno = .errno.desc())]
    Source {
        source_path: String,
        errno: nix::errno::Errno,
    },
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// The mount points one step's mounts needed, to remove after it.
#[derive(Debug, Default)]
#[must_use = "the stubs must be removed after the step (MountStubs::remove)"]
pub struct MountStubs {
    /// Created paths relative to the root, parents before children; `true`: a folder.
    created: Vec<(PathBuf, bool)>,
}

/// Symlinks followed while resolving one target, as the kernel's limit (path_resolution(7)).
const MAX_SYMLINKS: usize = 40;

impl MountStubs {
    /// Creates the targets of `mounts` that do not exist in the rootfs yet, with their
    /// missing parents: folders 0755 and empty files 0644, owned by 0:0 (what runc makes
    /// for a missing mount point). Targets resolve inside the root as the sandbox's
    /// openat2(RESOLVE_IN_ROOT) will resolve them, and one that lands in /proc, /dev or
    /// /sys is refused here, before the step.
    pub fn create(root: &RootDir, mounts: &[StepMount]) -> Result<MountStubs, StubError> {
        let mut stubs = MountStubs::default();
        for m in mounts {
            let refused = |reason: String| StubError::Target {
                target: m.target.clone(),
                reason,
            };
            let written = target_path(&m.target).map_err(&refused)?;
            let (real, existing) = resolve_in_root(root, &written)?;
            check_target(&real).map_err(|reason| {
                refused(format!(
                    "it resolves to /{} in the rootfs; {reason}",
                    real.display()
                ))
            })?;
            if existing == real.components().count() {
                continue;
            }
            let file = !wants_folder(&m.kind)?;
            stubs.make(root, &real, existing, file)?;
        }
        Ok(stubs)
    }

    /// Paths created, relative to the root, parents first (for tests and progress).
    pub fn created(&self) -> impl Iterator<Item = &Path> {
        self.created.iter().map(|(p, _)| p.as_path())
    }

    /// `real` (symlink-free) exists up to its first `existing` components: creates the
    /// rest, the last as a file when `file`, then puts the times of the folder they were
    /// made in back.
    fn make(
        &mut self,
        root: &RootDir,
        real: &Path,
        existing: usize,
        file: bool,
    ) -> Result<(), StubError> {
        let parts: Vec<&std::ffi::OsStr> = real.iter().collect();
        let parent: PathBuf = parts[..existing].iter().collect();
        let times = Times::of(root, &parent)?;
        let mut path = parent.clone();
        for (i, name) in parts.iter().enumerate().skip(existing) {
            path.push(name);
            if file && i + 1 == parts.len() {
                let meta = EntryMeta {
                    mode: 0o644,
                    ..EntryMeta::default()
                };
                let _ = root.write_file(&path, &mut std::io::empty(), &meta)?;
                self.created.push((path.clone(), false));
            } else {
                let _ = root.create_dir_all(&path, 0o755, (0, 0))?;
                self.created.push((path.clone(), true));
            }
        }
        times.restore(root, &parent)?;
        Ok(())
    }

    /// Removes the stubs the step left empty, deepest first, putting back the times of
    /// the folders they were in, and tells `snapshotter` (None: the rootfs is not
    /// snapshotted, as in `xbake run`) to overlook the ctime this leaves on the folders
    /// that existed before. Call right after the step, before its changes are taken.
    pub fn remove(
        self,
        root: &RootDir,
        snapshotter: Option<&mut dyn Snapshotter>,
    ) -> Result<(), StubError> {
        let mut forgiven: Vec<PathBuf> = Vec::new();
        for (path, folder) in self.created.iter().rev() {
            let Some(st) = root.lstat(path)? else {
                continue;
            };
            let untouched = if *folder {
                is_type(&st, libc::S_IFDIR) && root.read_dir(path)?.is_empty()
            } else {
                is_type(&st, libc::S_IFREG) && st.st_size == 0
            };
            if !untouched {
                // The step wrote into it: it is part of the step's output now.
                continue;
            }
            let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
            let times = Times::of(root, &parent)?;
            root.remove_all(path)?;
            times.restore(root, &parent)?;
            let made_here = self.created.iter().any(|(p, _)| *p == parent);
            if !made_here && !forgiven.contains(&parent) {
                forgiven.push(parent);
            }
        }
        if let Some(snapshotter) = snapshotter {
            snapshotter.forgive_ctime(&forgiven);
        }
        Ok(())
    }
}

/// Whether a mount's target must be a folder: everything but a bind of a file.
fn wants_folder(kind: &MountKind) -> Result<bool, StubError> {
    let source = match kind {
        MountKind::Tmpfs { .. } => return Ok(true),
        MountKind::Bind { source, .. } | MountKind::Scratch { source, .. } => source,
    };
    let failed = |errno| StubError::Source {
        source_path: match source {
            MountSource::Host(p) => p.display().to_string(),
            MountSource::InRoot { root, path } => format!("{path} in {}", root.display()),
        },
        errno,
    };
    let fd: OwnedFd = match source {
        MountSource::Host(path) => {
            nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(failed)?
        }
        MountSource::InRoot { root, path } => {
            let tree = nix::fcntl::open(
                root,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(failed)?;
            crate::layer::root::open_in_root(tree.as_fd(), Path::new(path), OFlag::O_PATH)
                .map_err(failed)?
        }
    };
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(failed)?;
    Ok(is_type(&st, libc::S_IFDIR))
}

fn is_type(st: &FileStat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// Resolves `rel` (clean, relative) inside the root the way openat2(RESOLVE_IN_ROOT)
/// does: every symlink met, the last component's included, is followed as if the root
/// were `/`, and `..` stops at the root. Returns the real path and how many of its
/// leading components exist (all of them: the target exists).
fn resolve_in_root(root: &RootDir, rel: &Path) -> Result<(PathBuf, usize), StubError> {
    let mut pending: Vec<OsString> = rel.iter().rev().map(|c| c.to_os_string()).collect();
    let mut real = PathBuf::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        // `real` is symlink-free, so `..` in it is plain lexical climbing.
        if name == ".." {
            real.pop();
            continue;
        }
        if name == "." || name.is_empty() {
            continue;
        }
        let candidate = real.join(&name);
        let Some(st) = root.lstat(&candidate)? else {
            // The rest is created, so it must be plain names.
            let existing = real.components().count();
            real.push(&name);
            while let Some(rest) = pending.pop() {
                if rest == ".." {
                    return Err(StubError::Target {
                        target: format!("/{}", rel.display()),
                        reason: "a symlink on the way leads to \"..\" below a missing folder"
                            .into(),
                    });
                }
                if rest != "." && !rest.is_empty() {
                    real.push(rest);
                }
            }
            return Ok((real, existing));
        };
        if !is_type(&st, libc::S_IFLNK) {
            real = candidate;
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(StubError::Target {
                target: format!("/{}", rel.display()),
                reason: "too many levels of symbolic links".into(),
            });
        }
        let link = root.read_link(&candidate)?;
        if link.is_absolute() {
            real = PathBuf::new();
        }
        for part in link.components().rev() {
            match part {
                Component::Normal(n) => pending.push(n.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    }
    let count = real.components().count();
    Ok((real, count))
}

/// A folder's access and modification times, to put back after xbake's own changes.
struct Times {
    atime: TimeSpec,
    mtime: TimeSpec,
}

impl Times {
    fn of(root: &RootDir, dir: &Path) -> Result<Times, StubError> {
        let st = root
            .lstat(dir)?
            .ok_or_else(|| LayerError::io("stat", dir, nix::errno::Errno::ENOENT))?;
        Ok(Times {
            atime: TimeSpec::new(st.st_atime, st.st_atime_nsec),
            mtime: TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        })
    }

    fn restore(&self, root: &RootDir, dir: &Path) -> Result<(), StubError> {
        let io = |e| LayerError::io("set the times of", dir, e);
        let top = nix::fcntl::open(
            root.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        let fd = crate::layer::root::open_in_root(
            top.as_fd(),
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        )
        .map_err(io)?;
        nix::sys::stat::futimens(&fd, &self.atime, &self.mtime).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::snapshot::{ChangeKind, WalkSnapshotter};
    use crate::sandbox::spec::MountSource;

    fn tmpfs(target: &str) -> StepMount {
        StepMount {
            target: target.into(),
            kind: MountKind::Tmpfs { size: None },
        }
    }

    fn file_bind(target: &str, source: &Path) -> StepMount {
        StepMount {
            target: target.into(),
            kind: MountKind::Bind {
                source: MountSource::Host(source.to_path_buf()),
                read_only: true,
            },
        }
    }

    /// A rootfs with /root, /run and /var/run -> ../run, its mtimes in the past.
    fn rootfs() -> (tempfile::TempDir, RootDir) {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["root", "run", "var", "etc"] {
            std::fs::create_dir(tmp.path().join(dir)).unwrap();
        }
        std::os::unix::fs::symlink("../run", tmp.path().join("var/run")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for dir in ["root", "run", "var", "etc", ""] {
            std::fs::File::open(tmp.path().join(dir))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let root = RootDir::open(tmp.path()).unwrap();
        (tmp, root)
    }

    fn mtime(root: &RootDir, rel: &str) -> (i64, i64) {
        let st = root.lstat(Path::new(rel)).unwrap().unwrap();
        (st.st_mtime, st.st_mtime_nsec)
    }

    #[test]
    fn stubs_made_and_removed_leave_no_change_behind() {
        let (tmp, root) = rootfs();
        let secret = tmp.path().join("etc/secret-source");
        std::fs::write(&secret, b"x").unwrap();
        let before: Vec<(i64, i64)> = ["", "root", "run", "var"]
            .iter()
            .map(|d| mtime(&root, d))
            .collect();
        let mut snapshotter = WalkSnapshotter::new(tmp.path().to_path_buf());
        snapshotter.begin().unwrap();

        let mounts = [
            tmpfs("/root/.cache/go-build"),
            file_bind("/var/run/secrets/token", &secret),
            tmpfs("/opt/tool"),
            tmpfs("/root"),
        ];
        let stubs = MountStubs::create(&root, &mounts).unwrap();
        let created: Vec<String> = stubs.created().map(|p| p.display().to_string()).collect();
        assert_eq!(
            created,
            [
                "root/.cache",
                "root/.cache/go-build",
                "run/secrets",
                "run/secrets/token",
                "opt",
                "opt/tool",
            ],
            "symlinks resolve inside the root; an existing target needs no stub"
        );
        let token = root.lstat(Path::new("run/secrets/token")).unwrap().unwrap();
        assert_eq!(
            token.st_mode & libc::S_IFMT,
            libc::S_IFREG,
            "a file for a file source"
        );
        let during: Vec<(i64, i64)> = ["", "root", "run", "var"]
            .iter()
            .map(|d| mtime(&root, d))
            .collect();
        assert_eq!(during, before, "making stubs puts the folders' times back");

        stubs.remove(&root, Some(&mut snapshotter)).unwrap();
        for gone in ["root/.cache", "run/secrets", "opt"] {
            assert!(root.lstat(Path::new(gone)).unwrap().is_none(), "{gone}");
        }
        let after: Vec<(i64, i64)> = ["", "root", "run", "var"]
            .iter()
            .map(|d| mtime(&root, d))
            .collect();
        assert_eq!(after, before);
        let changes = snapshotter.changes().unwrap();
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn without_forgiveness_the_ctime_would_show() {
        // The reason for Snapshotter::forgive_ctime: the same dance, not told.
        let (tmp, root) = rootfs();
        let mut snapshotter = WalkSnapshotter::new(tmp.path().to_path_buf());
        snapshotter.begin().unwrap();
        let stubs = MountStubs::create(&root, &[tmpfs("/root/.cache")]).unwrap();
        stubs.remove(&root, None).unwrap();
        let changes = snapshotter.changes().unwrap();
        let paths: Vec<String> = changes
            .changes
            .iter()
            .map(|c| c.path.display().to_string())
            .collect();
        assert_eq!(paths, ["root"]);
    }

    #[test]
    fn a_stub_the_step_wrote_into_is_the_steps_output() {
        let (tmp, root) = rootfs();
        let mut snapshotter = WalkSnapshotter::new(tmp.path().to_path_buf());
        snapshotter.begin().unwrap();
        let stubs = MountStubs::create(&root, &[tmpfs("/root/.cache/go-build")]).unwrap();
        // The step: a file beside the mount point, in the stub /root/.cache.
        std::fs::write(tmp.path().join("root/.cache/other"), b"mine").unwrap();
        stubs.remove(&root, Some(&mut snapshotter)).unwrap();
        assert!(tmp.path().join("root/.cache/other").exists());
        assert!(!tmp.path().join("root/.cache/go-build").exists());
        let changes = snapshotter.changes().unwrap();
        let seen: Vec<(String, ChangeKind)> = changes
            .changes
            .iter()
            .map(|c| (c.path.display().to_string(), c.kind))
            .collect();
        assert_eq!(
            seen,
            [
                ("root".to_string(), ChangeKind::Modified),
                ("root/.cache".to_string(), ChangeKind::Added),
                ("root/.cache/other".to_string(), ChangeKind::Added),
            ]
        );
    }

    #[test]
    fn a_real_change_to_a_forgiven_folder_still_shows() {
        let (tmp, root) = rootfs();
        let mut snapshotter = WalkSnapshotter::new(tmp.path().to_path_buf());
        snapshotter.begin().unwrap();
        let stubs = MountStubs::create(&root, &[tmpfs("/root/.cache")]).unwrap();
        // The step changes /root's mode; the stub goes as always.
        std::fs::set_permissions(
            tmp.path().join("root"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        stubs.remove(&root, Some(&mut snapshotter)).unwrap();
        let changes = snapshotter.changes().unwrap();
        assert_eq!(changes.changes.len(), 1, "{changes:?}");
        assert_eq!(changes.changes[0].path, Path::new("root"));
    }

    #[test]
    fn targets_that_resolve_into_kernel_folders_are_refused() {
        let (tmp, root) = rootfs();
        std::fs::create_dir(tmp.path().join("proc")).unwrap();
        std::os::unix::fs::symlink("/proc/sys", tmp.path().join("etc/knobs")).unwrap();
        std::os::unix::fs::symlink("../../../../dev", tmp.path().join("root/dev")).unwrap();
        for (target, shown) in [
            ("/etc/knobs/x", "/proc/sys/x"),
            ("/root/dev/shm", "/dev/shm"),
        ] {
            let err = MountStubs::create(&root, &[tmpfs(target)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(target) && err.contains(shown) && err.contains("not allowed"),
                "{err}"
            );
        }
        assert!(
            root.lstat(Path::new("proc/sys")).unwrap().is_none(),
            "nothing is made for a refused target"
        );
        let err = MountStubs::create(&root, &[tmpfs("/sys")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/sys"), "{err}");
    }
}
