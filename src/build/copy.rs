//! `copy:` steps: files and folders from the build context into the rootfs, with
//! Docker COPY's destination rules; what the context's ignore file excludes is skipped. Content and permission bits come from the input;
//! owner from the step (default 0:0) and mtime from SOURCE_DATE_EPOCH — never the
//! host's owner or mtime, so the layer does not depend on the machine or the checkout.

use crate::context::{BuildContext, ContextError};
use crate::layer::LayerError;
use crate::layer::root::{EntryMeta, RootDir};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("copying to {to}: {source}")]
    Write {
        to: String,
        #[source]
        source: LayerError,
    },
    #[error("copying {count} sources needs a destination folder: end `to: {to}` with a /")]
    NeedsFolder { count: usize, to: String },
    #[error("{}: cannot copy a {kind}", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("{} changed while the build was reading it; build again", path.display())]
    Changed { path: PathBuf },
    #[error(transparent)]
    Context(#[from] ContextError),
}

pub struct CopyRequest<'a> {
    /// The build context whose ignore file a copied folder's entries are filtered
    /// through; None for sources in an image's or a stage's filesystem.
    pub context: Option<&'a BuildContext>,
    /// Resolved, canonical sources (inside the context: each let through by its ignore
    /// file, see `resolve_copy_sources`).
    pub sources: &'a [PathBuf],
    pub to: &'a str,
    pub mode: Option<u32>,
    pub owner: (u32, u32),
    pub epoch: i64,
    /// The content digests the step's cache key was computed from, by source path: a
    /// file must still have that content when it is copied, or the cache would record
    /// a layer under a key for other bytes.
    pub expected: &'a std::collections::HashMap<PathBuf, crate::digest::Digest>,
    /// ADD: a source file that is a tar archive (plain or compressed) is unpacked into
    /// the destination folder, writing at most this many bytes; None: COPY.
    pub unpack_limit: Option<u64>,
}

/// Performs the copy; returns the warnings the rootfs layer produced.
pub fn copy_into(root: &RootDir, req: &CopyRequest) -> Result<Vec<String>, CopyError> {
    let mut warnings = Vec::new();
    let to_dir_written = req.to.ends_with('/');
    let to = req.to.trim_end_matches('/');
    let to = if to.is_empty() { "/" } else { to };
    let existing_dir = root
        .lstat(Path::new(to))
        .map_err(|source| write_err(to, source))?
        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    let into_folder = to_dir_written || existing_dir;
    if req.sources.len() > 1 && !into_folder {
        return Err(CopyError::NeedsFolder {
            count: req.sources.len(),
            to: req.to.to_string(),
        });
    }
    for source in req.sources {
        let meta = std::fs::symlink_metadata(source).map_err(read_err(source))?;
        if let Some(limit) = req.unpack_limit
            && meta.is_file()
            && is_tar_archive(source).map_err(read_err(source))?
        {
            unpack_archive(root, source, Path::new(to), limit, req, &mut warnings)?;
            continue;
        }
        if meta.is_dir() {
            // Docker copies a folder's contents, not the folder itself.
            let dir_mode = req.mode.unwrap_or(meta.permissions().mode() & 0o7777);
            make_dirs(root, Path::new(to), dir_mode, req.owner, &mut warnings)?;
            copy_tree(root, source, Path::new(to), req, &mut warnings)?;
        } else {
            let dest = if into_folder {
                let name = source.file_name().unwrap_or_default();
                Path::new(to).join(name)
            } else {
                PathBuf::from(to)
            };
            if let Some(parent) = dest.parent() {
                make_dirs(root, parent, 0o755, (0, 0), &mut warnings)?;
            }
            copy_entry(root, source, &meta, &dest, req, &mut warnings)?;
        }
    }
    Ok(warnings)
}

/// Writes files given by their content (a Dockerfile's `COPY <<EOF`) with the same
/// destination rules as a copy: named `name` inside `to` when it is a folder, else as
/// `to` (one file only); mode 0644 unless given, mtime the build's epoch.
pub fn write_inline(
    root: &RootDir,
    files: &[(String, String)],
    to: &str,
    mode: Option<u32>,
    owner: (u32, u32),
    epoch: i64,
) -> Result<Vec<String>, CopyError> {
    let mut warnings = Vec::new();
    let to_dir_written = to.ends_with('/');
    let trimmed = to.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let existing_dir = root
        .lstat(Path::new(trimmed))
        .map_err(|source| write_err(trimmed, source))?
        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    let into_folder = to_dir_written || existing_dir;
    if files.len() > 1 && !into_folder {
        return Err(CopyError::NeedsFolder {
            count: files.len(),
            to: to.to_string(),
        });
    }
    for (name, content) in files {
        let dest = if into_folder {
            Path::new(trimmed).join(name)
        } else {
            PathBuf::from(trimmed)
        };
        if let Some(parent) = dest.parent() {
            make_dirs(root, parent, 0o755, (0, 0), &mut warnings)?;
        }
        let meta = EntryMeta {
            mode: mode.unwrap_or(0o644),
            uid: owner.0,
            gid: owner.1,
            mtime: epoch,
            xattrs: Vec::new(),
        };
        let dest_text = dest.display().to_string();
        let w = root
            .write_file(&dest, &mut content.as_bytes(), &meta)
            .map_err(|s| write_err(&dest_text, s))?;
        warnings.extend(w.into_vec());
    }
    Ok(warnings)
}

/// Whether the file is a tar archive, plain or compressed (gzip, bzip2, xz, zstd): what
/// Docker's ADD unpacks. Anything else, a lone `.gz` file included, is copied as it is.
fn is_tar_archive(path: &Path) -> std::io::Result<bool> {
    let file = std::fs::File::open(path)?;
    let Ok(mut stream) = crate::layer::compress::decompressor(std::io::BufReader::new(file)) else {
        return Ok(false);
    };
    let mut header = [0u8; 512];
    let mut filled = 0;
    while filled < header.len() {
        match stream.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            // Not decompressible after all: not an archive.
            Err(_) => return Ok(false),
        }
    }
    // POSIX ustar (`ustar\0`) and GNU (`ustar  `) headers both start so at 257.
    Ok(filled == header.len() && &header[257..262] == b"ustar")
}

/// ADD of an archive: its entries written under `to` with the layer unpacker's
/// safeguards (paths stay inside, links are not followed, a size limit), the file
/// checked against the content the step's key was made of.
fn unpack_archive(
    root: &RootDir,
    source: &Path,
    to: &Path,
    limit: u64,
    req: &CopyRequest,
    warnings: &mut Vec<String>,
) -> Result<(), CopyError> {
    let to_text = to.display().to_string();
    make_dirs(root, to, 0o755, (0, 0), warnings)?;
    let inside = root
        .resolve(to)
        .and_then(|path| RootDir::open(&path))
        .map_err(|source| write_err(&to_text, source))?;
    let file = std::fs::File::open(source).map_err(read_err(source))?;
    let mut hashing = crate::digest::HashingReader::new(file);
    let mut budget = crate::layer::unpack::UnpackBudget::new(limit);
    let tar = crate::layer::compress::decompressor(std::io::BufReader::new(&mut hashing))
        .map_err(|source| write_err(&to_text, source))?;
    let report = crate::layer::apply_layer(&inside, tar, &mut budget)
        .map_err(|source| write_err(&to_text, source))?;
    let (actual, _) = hashing.drain_and_finish().map_err(read_err(source))?;
    if req.expected.get(source).is_some_and(|want| *want != actual) {
        return Err(CopyError::Changed {
            path: source.to_path_buf(),
        });
    }
    warnings.extend(report.warnings);
    Ok(())
}

/// A Dockerfile WORKDIR's folder: made with its parents when missing, 0755, `owner`'s;
/// an existing one is left as it is.
pub fn make_workdir(
    root: &RootDir,
    dir: &str,
    owner: (u32, u32),
) -> Result<Vec<String>, CopyError> {
    let mut warnings = Vec::new();
    make_dirs(root, Path::new(dir), 0o755, owner, &mut warnings)?;
    Ok(warnings)
}

fn make_dirs(
    root: &RootDir,
    dir: &Path,
    mode: u32,
    owner: (u32, u32),
    warnings: &mut Vec<String>,
) -> Result<(), CopyError> {
    let dir_text = dir.display().to_string();
    let w = root
        .create_dir_all(dir, mode, owner)
        .map_err(|source| write_err(&dir_text, source))?;
    warnings.extend(w.into_vec());
    Ok(())
}

fn copy_tree(
    root: &RootDir,
    source: &Path,
    dest: &Path,
    req: &CopyRequest,
    warnings: &mut Vec<String>,
) -> Result<(), CopyError> {
    // Sorted so the order of writes (and so any hard-link or inode order) is stable;
    // the same entries the step's key was made of.
    let entries = match req.context {
        Some(context) => context.entries(source)?,
        None => crate::context::all_entries(source)?,
    };
    for entry in entries.iter().filter(|e| e.depth > 0) {
        let rel = entry.path.strip_prefix(source).unwrap_or(&entry.path);
        copy_entry(
            root,
            &entry.path,
            &entry.meta,
            &dest.join(rel),
            req,
            warnings,
        )?;
    }
    Ok(())
}

fn copy_entry(
    root: &RootDir,
    source: &Path,
    meta: &std::fs::Metadata,
    dest: &Path,
    req: &CopyRequest,
    warnings: &mut Vec<String>,
) -> Result<(), CopyError> {
    let dest_text = dest.display().to_string();
    let entry_meta = EntryMeta {
        mode: req.mode.unwrap_or(meta.permissions().mode() & 0o7777),
        uid: req.owner.0,
        gid: req.owner.1,
        mtime: req.epoch,
        xattrs: Vec::new(),
    };
    let kind = meta.file_type();
    let w = if kind.is_dir() {
        let w = root
            .create_dir_all(dest, entry_meta.mode, req.owner)
            .map_err(|s| write_err(&dest_text, s))?;
        // An existing folder keeps its contents but takes the source's metadata.
        let mut all = w;
        all.absorb(
            root.set_metadata(dest, &entry_meta)
                .map_err(|s| write_err(&dest_text, s))?,
        );
        all
    } else if kind.is_file() {
        let file = std::fs::File::open(source).map_err(read_err(source))?;
        let mut hashing = crate::digest::HashingReader::new(file);
        let w = root
            .write_file(dest, &mut hashing, &entry_meta)
            .map_err(|s| write_err(&dest_text, s))?;
        let (actual, _) = hashing.drain_and_finish().map_err(read_err(source))?;
        if req.expected.get(source).is_some_and(|want| *want != actual) {
            return Err(CopyError::Changed {
                path: source.to_path_buf(),
            });
        }
        w
    } else if kind.is_symlink() {
        // Links inside a copied folder are copied as links, never followed: the
        // recipe folder must not leak what they point at.
        let target = std::fs::read_link(source).map_err(read_err(source))?;
        let link_meta = EntryMeta {
            mode: 0o777,
            ..entry_meta
        };
        root.symlink(dest, &target, &link_meta)
            .map_err(|s| write_err(&dest_text, s))?
    } else {
        return Err(CopyError::Unsupported {
            path: source.to_path_buf(),
            kind: "special file (device, fifo or socket)",
        });
    };
    warnings.extend(w.into_vec());
    Ok(())
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> CopyError + '_ {
    move |source| CopyError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_err(to: &str, source: LayerError) -> CopyError {
    CopyError::Write {
        to: to.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    struct Fixture {
        _tmp: tempfile::TempDir,
        src: PathBuf,
        rootfs: PathBuf,
        context: BuildContext,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("ctx");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(src.join("dir/sub")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(src.join("a.txt"), "A").unwrap();
        std::fs::write(src.join("b.sh"), "B").unwrap();
        std::fs::set_permissions(src.join("b.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(src.join("dir/sub/c.txt"), "C").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", src.join("dir/link")).unwrap();
        let context = BuildContext::open(&src).unwrap();
        let src = context.dir().to_path_buf();
        Fixture {
            _tmp: tmp,
            src,
            rootfs,
            context,
        }
    }

    static NOTHING_EXPECTED: std::sync::LazyLock<
        std::collections::HashMap<PathBuf, crate::digest::Digest>,
    > = std::sync::LazyLock::new(Default::default);

    fn req<'a>(f: &'a Fixture, sources: &'a [PathBuf], to: &'a str) -> CopyRequest<'a> {
        CopyRequest {
            context: Some(&f.context),
            sources,
            to,
            mode: None,
            owner: (0, 0),
            epoch: 0,
            expected: &NOTHING_EXPECTED,
            unpack_limit: None,
        }
    }

    #[test]
    fn a_file_that_changed_since_it_was_hashed_is_refused() {
        let f = fixture();
        let root = RootDir::open(&f.rootfs).unwrap();
        let source = f.src.join("a.txt");
        let expected = [(source.clone(), crate::digest::Digest::of(b"old content"))]
            .into_iter()
            .collect();
        let mut r = req(&f, std::slice::from_ref(&source), "/a.txt");
        r.expected = &expected;
        let err = copy_into(&root, &r).unwrap_err();
        assert!(matches!(err, CopyError::Changed { .. }), "{err}");
    }

    #[test]
    fn file_to_path_file_into_folder_and_folder_contents() {
        let f = fixture();
        let root = RootDir::open(&f.rootfs).unwrap();
        copy_into(&root, &req(&f, &[f.src.join("a.txt")], "/opt/renamed.txt")).unwrap();
        copy_into(&root, &req(&f, &[f.src.join("b.sh")], "/etc")).unwrap();
        copy_into(&root, &req(&f, &[f.src.join("dir")], "/srv/d/")).unwrap();
        assert_eq!(
            std::fs::read_to_string(f.rootfs.join("opt/renamed.txt")).unwrap(),
            "A"
        );
        let b = std::fs::metadata(f.rootfs.join("etc/b.sh")).unwrap();
        assert_eq!(b.mode() & 0o7777, 0o755);
        assert_eq!(
            b.mtime(),
            0,
            "mtime comes from the epoch, not the host file"
        );
        assert_eq!(
            std::fs::read_to_string(f.rootfs.join("srv/d/sub/c.txt")).unwrap(),
            "C"
        );
        assert_eq!(
            std::fs::read_link(f.rootfs.join("srv/d/link")).unwrap(),
            Path::new("/etc/shadow"),
            "links are copied as links"
        );
        assert!(
            !f.rootfs.join("srv/d/dir").exists(),
            "contents, not the folder"
        );
    }

    #[test]
    fn several_sources_need_a_folder_and_mode_overrides() {
        let f = fixture();
        let root = RootDir::open(&f.rootfs).unwrap();
        let both = [f.src.join("a.txt"), f.src.join("b.sh")];
        let err = copy_into(&root, &req(&f, &both, "/opt/x")).unwrap_err();
        assert!(
            matches!(err, CopyError::NeedsFolder { count: 2, .. }),
            "{err}"
        );
        let mut r = req(&f, &both, "/opt/");
        r.mode = Some(0o600);
        r.epoch = 1_700_000_000;
        copy_into(&root, &r).unwrap();
        for name in ["a.txt", "b.sh"] {
            let m = std::fs::metadata(f.rootfs.join("opt").join(name)).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o600);
            assert_eq!(m.mtime(), 1_700_000_000);
        }
    }

    #[test]
    fn a_symlinked_destination_stays_inside_the_rootfs() {
        let f = fixture();
        let outside = f._tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        // The image's /opt points at an absolute path; it must resolve in the rootfs.
        std::os::unix::fs::symlink(&outside, f.rootfs.join("opt")).unwrap();
        let root = RootDir::open(&f.rootfs).unwrap();
        let _ = copy_into(&root, &req(&f, &[f.src.join("a.txt")], "/opt/a.txt"));
        assert!(!outside.join("a.txt").exists(), "wrote outside the rootfs");
    }

    #[test]
    fn a_copied_folder_skips_what_the_ignore_file_excludes() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx_dir = tmp.path().join("ctx");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(ctx_dir.join("app/cache")).unwrap();
        std::fs::create_dir_all(&rootfs).unwrap();
        for (path, text) in [
            (".dockerignore", "app/.env\napp/cache\n!app/cache/seed\n"),
            ("app/.env", "TOKEN=1"),
            ("app/main.c", "m"),
            ("app/cache/big", "b"),
            ("app/cache/seed", "s"),
        ] {
            std::fs::write(ctx_dir.join(path), text).unwrap();
        }
        let context = BuildContext::open(&ctx_dir).unwrap();
        let sources = [context.dir().join("app")];
        let root = RootDir::open(&rootfs).unwrap();
        let mut request = CopyRequest {
            context: Some(&context),
            sources: &sources,
            to: "/srv/",
            mode: None,
            owner: (0, 0),
            epoch: 0,
            expected: &NOTHING_EXPECTED,
            unpack_limit: None,
        };
        copy_into(&root, &request).unwrap();
        let copied = |under: &str| -> Vec<String> {
            walkdir::WalkDir::new(rootfs.join(under))
                .sort_by_file_name()
                .into_iter()
                .map(|e| {
                    let e = e.unwrap();
                    e.path()
                        .strip_prefix(&rootfs)
                        .unwrap()
                        .display()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(
            copied("srv"),
            ["srv", "srv/cache", "srv/cache/seed", "srv/main.c"],
            "no .env, no cache/big; cache/ is there for its exception"
        );
        // From an image's or a stage's tree, no ignore file applies.
        request.context = None;
        request.to = "/all/";
        copy_into(&root, &request).unwrap();
        assert_eq!(
            copied("all"),
            [
                "all",
                "all/.env",
                "all/cache",
                "all/cache/big",
                "all/cache/seed",
                "all/main.c"
            ]
        );
    }
}
