//! The entries of one layer as comparable records: what `diff` and `verify` report on.

use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::layer::LayerError;
use crate::layer::compress;
use crate::layer::rel_path;
use crate::layer::tar_reader::{TarEntry, TarReader};
use crate::layer::unpack::{BoundedStream, UnpackBudget, counts_in_budget, entry_meta};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
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
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => "file",
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
/// absolute-style (`/etc/passwd`); whiteouts appear as their own names. The layer is
/// read by the builder's own tar reader with the builder's rules (clean paths, PAX
/// owners, times and sizes, sparse files with their holes, the same refusals), so what
/// `diff` and `verify` report is the tree a build unpacks; what it would unpack to must
/// fit in `unpack_limit`, counted as unpacking counts it.
pub fn read_entries(
    path: &Path,
    digest: &Digest,
    unpack_limit: u64,
) -> Result<(BTreeMap<String, EntryInfo>, Digest), LayerError> {
    let file = std::fs::File::open(path).map_err(|source| LayerError::Io {
        op: "opening a layer",
        path: path.to_path_buf(),
        source,
    })?;
    let mut blob = HashingReader::new(file);
    let mut budget = UnpackBudget::new(unpack_limit);
    let (out, diff_id) = {
        let tar = compress::decompressor(BufReader::new(&mut blob))?;
        let mut bounded = BoundedStream::new(tar, budget.stream_limit());
        let read = read_tar(&mut bounded, &mut budget);
        bounded.explain(read)?
    };
    let (actual, _) = blob.drain_and_finish().map_err(tar_err)?;
    digest.verify(&actual, &path.display().to_string())?;
    Ok((out, diff_id))
}

fn tar_err(source: std::io::Error) -> LayerError {
    LayerError::Tar {
        after: None,
        source,
    }
}

fn read_tar(
    tar: impl Read,
    budget: &mut UnpackBudget,
) -> Result<(BTreeMap<String, EntryInfo>, Digest), LayerError> {
    let mut reader = TarReader::new(HashingReader::new(tar));
    let mut out = BTreeMap::new();
    while let Some(entry) = reader.next_entry()? {
        let info =
            entry_info(&entry, &mut reader.data(), budget).map_err(|e| LayerError::Entry {
                entry: entry.name(),
                source: Box::new(e),
            })?;
        let rel = rel_path::clean_bytes(&entry.path)?;
        out.insert(format!("/{}", rel.to_string_lossy()), info);
    }
    // Drain what the tar reader left, so the diff_id covers every byte.
    let (diff_id, _) = reader.into_inner().drain_and_finish().map_err(tar_err)?;
    Ok((out, diff_id))
}

fn entry_info(
    entry: &TarEntry,
    data: &mut dyn Read,
    budget: &mut UnpackBudget,
) -> Result<EntryInfo, LayerError> {
    rel_path::clean_bytes(&entry.path)?;
    let meta = entry_meta(entry)?;
    let is_file = counts_in_budget(entry.kind);
    let content = if is_file {
        budget.take(entry.apparent_size())?;
        Some(file_content(entry, data).map_err(tar_err)?)
    } else {
        None
    };
    let device = match entry.kind {
        tar::EntryType::Char | tar::EntryType::Block => Some((
            entry.header.device_major().ok().flatten().unwrap_or(0),
            entry.header.device_minor().ok().flatten().unwrap_or(0),
        )),
        _ => None,
    };
    Ok(EntryInfo {
        kind: kind_name(entry.kind),
        mode: meta.mode,
        uid: u64::from(meta.uid),
        gid: u64::from(meta.gid),
        mtime: meta.mtime,
        size: if is_file { entry.apparent_size() } else { 0 },
        content,
        link: entry
            .link
            .as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned()),
        xattrs: meta
            .xattrs
            .iter()
            .map(|(name, value)| (name.clone(), Digest::of(value)))
            .collect(),
        device,
    })
}

/// The sha256 of the file as unpacked: a sparse entry's holes read as zeros, as they do
/// from the file unpacking writes.
fn file_content(entry: &TarEntry, data: &mut dyn Read) -> std::io::Result<Digest> {
    let mut hasher = HashingWriter::new(std::io::sink());
    match &entry.sparse {
        None => {
            std::io::copy(data, &mut hasher)?;
        }
        Some(map) => {
            let mut at = 0;
            for &(offset, length) in &map.chunks {
                std::io::copy(
                    &mut std::io::repeat(0).take(offset.saturating_sub(at)),
                    &mut hasher,
                )?;
                std::io::copy(&mut data.take(length), &mut hasher)?;
                at = offset + length;
            }
            std::io::copy(
                &mut std::io::repeat(0).take(map.real_size.saturating_sub(at)),
                &mut hasher,
            )?;
        }
    }
    let (_, digest, _) = hasher.finish();
    Ok(digest)
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
