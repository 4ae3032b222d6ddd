//! Tests of the layer module against real directories. They pass as root and as an
//! unprivileged user: where the outcome depends on privilege (chown, device nodes,
//! trusted.* xattrs) each test asserts the outcome that applies, never skips.

#[path = "../../../tests/common/hostile_tar.rs"]
mod hostile_tar;
mod hostile_tests;
mod pack_tests;
mod root_tests;
mod snapshot_tests;
mod unpack_tests;

use super::error::LayerError;
use super::root::{OWNER_XATTR, RootDir};
use super::tar_writer::{TarHeader, TarWriter};
use super::unpack::{UnpackBudget, UnpackReport, apply_layer};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tar::EntryType;

pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The error and all its causes, as a user would see them (also the other modules' tests).
pub(crate) fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One entry of a hand-made test layer; paths are raw bytes so they can be hostile.
#[derive(Clone)]
pub(super) struct Entry {
    path: Vec<u8>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    body: Vec<u8>,
    link: Option<Vec<u8>>,
    device: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) const TEST_MTIME: u64 = 1_000_000;

impl Entry {
    fn new(path: &str, kind: EntryType, mode: u32) -> Self {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: TEST_MTIME,
            body: Vec::new(),
            link: None,
            device: None,
            xattrs: Vec::new(),
        }
    }
    pub fn dir(path: &str, mode: u32) -> Self {
        Entry::new(path, EntryType::Directory, mode)
    }
    pub fn file(path: &str, mode: u32, body: &[u8]) -> Self {
        Entry {
            body: body.to_vec(),
            ..Entry::new(path, EntryType::Regular, mode)
        }
    }
    /// An empty regular file, which is what a whiteout is.
    pub fn whiteout(path: &str) -> Self {
        Entry::file(path, 0o644, b"")
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Entry {
            link: Some(target.as_bytes().to_vec()),
            ..Entry::new(path, EntryType::Symlink, 0o777)
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Self {
        Entry {
            link: Some(target.as_bytes().to_vec()),
            ..Entry::new(path, EntryType::Link, 0o644)
        }
    }
    pub fn fifo(path: &str) -> Self {
        Entry::new(path, EntryType::Fifo, 0o640)
    }
    pub fn char_device(path: &str, major: u32, minor: u32) -> Self {
        Entry {
            device: Some((major, minor)),
            ..Entry::new(path, EntryType::Char, 0o666)
        }
    }
    pub fn owner(self, uid: u64, gid: u64) -> Self {
        Entry { uid, gid, ..self }
    }
    pub fn mtime(self, mtime: u64) -> Self {
        Entry { mtime, ..self }
    }
    pub fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.xattrs.push((name.as_bytes().to_vec(), value.to_vec()));
        self
    }
}

/// A tar stream of `entries`, written with the crate's own raw writer so that names the
/// `tar` crate's builder would refuse (`..`, absolute) can be tested.
pub(super) fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut writer = TarWriter::new(Vec::new());
    for e in entries {
        let header = TarHeader {
            path: &e.path,
            entry_type: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            size: e.body.len() as u64,
            link_target: e.link.as_deref(),
            device: e.device,
            xattrs: &e.xattrs,
        };
        writer.append(&header, Some(&mut &e.body[..])).unwrap();
    }
    writer.finish().unwrap().0
}

pub(super) fn unpack(root: &Path, entries: &[Entry]) -> Result<UnpackReport, LayerError> {
    apply_layer(
        &RootDir::open(root)?,
        &tar_of(entries)[..],
        &mut UnpackBudget::unlimited(),
    )
}

/// Asserts the owner a tar header asked for: the real one if we may chown, else the
/// `user.xbake.owner` record (DESIGN decision 1).
pub(super) fn assert_owner(path: &Path, uid: u32, gid: u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    if is_root() {
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path:?}");
    } else if (meta.uid(), meta.gid()) != (uid, gid) {
        let recorded = xattr::get(path, OWNER_XATTR).unwrap();
        assert_eq!(
            recorded,
            Some(format!("{uid}:{gid}").into_bytes()),
            "{path:?}"
        );
    }
}

pub(super) fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

pub(super) fn mtime_of(path: &Path) -> i64 {
    fs::symlink_metadata(path).unwrap().mtime()
}

pub(super) fn set_mtime(path: &Path, seconds: i64) {
    set_mtime_ns(path, (seconds, 0));
}

pub(super) fn set_mtime_ns(path: &Path, (seconds, nanos): (i64, i64)) {
    let time = nix::sys::time::TimeSpec::new(seconds, nanos);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &time,
        &time,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

pub(super) fn write(path: &Path, body: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, body).unwrap();
}

pub(super) fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A comparable description of every entry below `root`: type, mode, effective owner,
/// mtime, contents, link target, xattrs, and which entries are the same file.
pub(super) fn describe_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut described = BTreeMap::new();
    let mut first_path_of_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let meta = fs::symlink_metadata(path).unwrap();
        let kind = meta.file_type();
        let owner = match xattr::get(path, OWNER_XATTR).ok().flatten() {
            Some(record) => String::from_utf8(record).unwrap(),
            None => format!("{}:{}", meta.uid(), meta.gid()),
        };
        let mut text = format!("mode={:o} owner={owner}", meta.mode() & 0o7777);
        if kind.is_file() {
            let link = first_path_of_inode
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.clone());
            let digest = hex::encode(Sha256::digest(fs::read(path).unwrap()));
            text += &format!(" file sha={} inode-of={}", &digest[..16], link.display());
        } else if kind.is_dir() {
            text += " dir";
        } else if kind.is_symlink() {
            text += &format!(" symlink->{}", fs::read_link(path).unwrap().display());
        } else if kind.is_fifo() {
            text += " fifo";
        } else {
            text += &format!(" special rdev={}", meta.rdev());
        }
        if !kind.is_symlink() {
            text += &format!(" mtime={}", meta.mtime());
            let mut xattrs: Vec<_> = xattr::list(path)
                .unwrap()
                .filter(|n| {
                    n.as_bytes().starts_with(b"user.") && !n.as_bytes().starts_with(b"user.xbake.")
                })
                .map(|n| {
                    format!(
                        "{}={:?}",
                        n.to_string_lossy(),
                        xattr::get(path, &n).unwrap()
                    )
                })
                .collect();
            xattrs.sort();
            text += &format!(" xattrs={xattrs:?}");
        }
        described.insert(rel, text);
    }
    described
}

/// (path, entry type byte, uid, gid, mtime, link target) of every entry of a tar stream.
pub(super) fn list_tar(bytes: &[u8]) -> Vec<TarListing> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let header = e.header().clone();
            let pax: Vec<(String, Vec<u8>)> = match e.pax_extensions().unwrap() {
                Some(records) => records
                    .map(|r| r.unwrap())
                    .map(|r| (r.key().unwrap().to_string(), r.value_bytes().to_vec()))
                    .collect(),
                None => Vec::new(),
            };
            TarListing {
                path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap()),
                uname: header
                    .username_bytes()
                    .map(|b| b.to_vec())
                    .unwrap_or_default(),
                gname: header
                    .groupname_bytes()
                    .map(|b| b.to_vec())
                    .unwrap_or_default(),
                pax,
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub(super) struct TarListing {
    pub path: String,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub pax: Vec<(String, Vec<u8>)>,
}

pub(super) fn paths(listing: &[TarListing]) -> Vec<&str> {
    listing.iter().map(|e| e.path.as_str()).collect()
}
mod overlay_snapshot_tests;
