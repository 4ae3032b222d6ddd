//! The entries of one layer as comparable records: what `diff` and `verify` report on.

use crate::digest::{Digest, HashingReader};
use crate::layer::LayerError;
use crate::layer::compress;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    /// sha256 of a regular file's content.
    pub content: Option<Digest>,
    /// Symlink or hard-link target.
    pub link: Option<String>,
    /// Name → sha256 of the value.
    pub xattrs: BTreeMap<String, Digest>,
    /// Device numbers.
    pub device: Option<(u32, u32)>,
}

fn kind_name(t: tar::EntryType) -> &'static str {
    match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Symlink => "symlink",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "other",
    }
}

/// Reads the layer blob at `path`, checking its digest, into path → entry, and returns
/// the diff_id computed from the content (never the one a config claims). Paths are
/// absolute-style (`/etc/passwd`); whiteouts appear as their own names.
pub fn read_entries(
    path: &Path,
    digest: &Digest,
) -> Result<(BTreeMap<String, EntryInfo>, Digest), LayerError> {
    let file = std::fs::File::open(path).map_err(|source| LayerError::Io {
        op: "opening a layer",
        path: path.to_path_buf(),
        source,
    })?;
    let mut blob = HashingReader::new(file);
    let mut out = BTreeMap::new();
    let diff_id;
    {
        let tar = HashingReader::new(compress::decompressor(BufReader::new(&mut blob))?);
        let mut archive = tar::Archive::new(tar);
        let tar_err = |source| LayerError::Tar {
            after: None,
            source,
        };
        for entry in archive.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = format!(
                "/{}",
                name.trim_start_matches("./")
                    .trim_start_matches('/')
                    .trim_end_matches('/')
            );
            let header = entry.header().clone();
            let mut xattrs = BTreeMap::new();
            if let Ok(Some(exts)) = entry.pax_extensions() {
                for ext in exts.flatten() {
                    if let Some(key) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr."))
                    {
                        xattrs.insert(key.to_string(), Digest::of(ext.value_bytes()));
                    }
                }
            }
            let kind = kind_name(header.entry_type());
            let content = if header.entry_type().is_file() {
                let (d, _) = HashingReader::new(&mut entry)
                    .drain_and_finish()
                    .map_err(tar_err)?;
                Some(d)
            } else {
                None
            };
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            let device = match header.entry_type() {
                tar::EntryType::Char | tar::EntryType::Block => Some((
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                )),
                _ => None,
            };
            out.insert(
                name,
                EntryInfo {
                    kind,
                    mode: header.mode().unwrap_or(0) & 0o7777,
                    uid: header.uid().unwrap_or(0),
                    gid: header.gid().unwrap_or(0),
                    mtime: header.mtime().unwrap_or(0),
                    size: header.size().unwrap_or(0),
                    content,
                    link,
                    xattrs,
                    device,
                },
            );
        }
        // Drain what the tar reader left, so both digests cover every byte.
        let (d, _) = archive.into_inner().drain_and_finish().map_err(tar_err)?;
        diff_id = d;
    }
    let (actual, _) = blob.drain_and_finish().map_err(|source| LayerError::Tar {
        after: None,
        source,
    })?;
    digest.verify(&actual, &path.display().to_string())?;
    Ok((out, diff_id))
}

/// The differences between one path's two versions, as short phrases.
pub fn describe_differences(a: &EntryInfo, b: &EntryInfo) -> Vec<String> {
    let mut out = Vec::new();
    if a.kind != b.kind {
        out.push(format!("type differs ({} → {})", a.kind, b.kind));
        return out;
    }
    if a.content != b.content {
        out.push("content differs".into());
    }
    if a.mode != b.mode {
        out.push(format!("mode differs ({:04o} → {:04o})", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        out.push(format!(
            "owner differs ({}:{} → {}:{})",
            a.uid, a.gid, b.uid, b.gid
        ));
    }
    if a.mtime != b.mtime {
        out.push(format!("mtime differs ({} → {})", a.mtime, b.mtime));
    }
    if a.xattrs != b.xattrs {
        let names = |x: &BTreeMap<String, Digest>| x.keys().cloned().collect::<Vec<_>>().join(",");
        out.push(format!(
            "xattrs differ ({} → {})",
            names(&a.xattrs),
            names(&b.xattrs)
        ));
    }
    if a.link != b.link {
        out.push(format!(
            "link target differs ({} → {})",
            a.link.as_deref().unwrap_or("-"),
            b.link.as_deref().unwrap_or("-")
        ));
    }
    if a.device != b.device {
        out.push("device numbers differ".into());
    }
    out
}
