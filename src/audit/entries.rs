//! The entries of one layer as comparable records: what `diff` and `verify` report on.

use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::layer::LayerError;
use crate::layer::compress;
use crate::layer::rel_path;
use crate::layer::tar_reader::{TarEntry, TarReader};
use crate::layer::unpack::{BoundedStream, UnpackBudget, counts_in_budget, entry_meta};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
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
    read_layer(path, digest, unpack_limit, read_tar)
}

/// Reads the layer again for the files in `wanted` (paths as `read_entries` names
/// them) and hands each one's first `cap` bytes as unpacked (a sparse file's holes as
/// zeros) to `each`, with the same rules, bounds and digest check as `read_entries`.
/// Only one file's sample is held at a time; what `each` keeps is up to it.
pub fn read_samples(
    path: &Path,
    digest: &Digest,
    unpack_limit: u64,
    wanted: &BTreeSet<String>,
    cap: usize,
    mut each: impl FnMut(&str, Vec<u8>),
) -> Result<(), LayerError> {
    read_layer(path, digest, unpack_limit, |tar, budget| {
        let mut reader = TarReader::new(tar);
        while let Some(entry) = reader.next_entry()? {
            let rel = rel_path::clean_bytes(&entry.path)?;
            let name = format!("/{}", rel.to_string_lossy());
            if !counts_in_budget(entry.kind) {
                continue;
            }
            budget.take(entry.apparent_size())?;
            if !wanted.contains(&name) {
                continue;
            }
            let mut kept = CappedBuffer::new(cap);
            unpacked_content(&entry, &mut reader.data(), &mut kept).map_err(|e| {
                LayerError::Entry {
                    entry: entry.name(),
                    source: Box::new(tar_err(e)),
                }
            })?;
            each(&name, kept.bytes);
        }
        // Drain the rest, so the blob's digest below covers every byte.
        std::io::copy(&mut reader.into_inner(), &mut std::io::sink()).map_err(tar_err)?;
        Ok(())
    })
}

/// Opens the blob, decompresses it within the unpacking bounds, hands the tar stream to
/// `read`, and checks the blob's digest once everything was read.
fn read_layer<T>(
    path: &Path,
    digest: &Digest,
    unpack_limit: u64,
    read: impl FnOnce(&mut dyn Read, &mut UnpackBudget) -> Result<T, LayerError>,
) -> Result<T, LayerError> {
    let file = std::fs::File::open(path).map_err(|source| LayerError::Io {
        op: "opening a layer",
        path: path.to_path_buf(),
        source,
    })?;
    let mut budget = UnpackBudget::new(unpack_limit);
    read_layer_blob(file, &path.display().to_string(), digest, &mut budget, read)
}

/// [`read_layer`] on an opened blob (`what` names it in a digest mismatch), counting
/// against `budget`, which the caller may share between the layers of one image. The
/// digest is checked after `read` returns and every byte of the blob was hashed.
pub(crate) fn read_layer_blob<T>(
    blob: impl Read,
    what: &str,
    digest: &Digest,
    budget: &mut UnpackBudget,
    read: impl FnOnce(&mut dyn Read, &mut UnpackBudget) -> Result<T, LayerError>,
) -> Result<T, LayerError> {
    let mut blob = HashingReader::new(blob);
    let out = {
        let tar = compress::decompressor(BufReader::new(&mut blob))?;
        let mut bounded = BoundedStream::new(tar, budget.stream_limit());
        let result = read(&mut bounded, budget);
        bounded.explain(result)?
    };
    let (actual, _) = blob.drain_and_finish().map_err(tar_err)?;
    digest.verify(&actual, what)?;
    Ok(out)
}

/// Keeps the first `cap` bytes written and counts, then drops, the rest.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: usize,
}

impl CappedBuffer {
    fn new(cap: usize) -> CappedBuffer {
        CappedBuffer {
            bytes: Vec::new(),
            cap,
        }
    }
}

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.cap.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn tar_err(source: std::io::Error) -> LayerError {
    LayerError::Tar {
        after: None,
        source,
    }
}

fn read_tar(
    tar: &mut dyn Read,
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

/// The sha256 of the file as unpacked.
fn file_content(entry: &TarEntry, data: &mut dyn Read) -> std::io::Result<Digest> {
    let mut hasher = HashingWriter::new(std::io::sink());
    unpacked_content(entry, data, &mut hasher)?;
    let (_, digest, _) = hasher.finish();
    Ok(digest)
}

/// Writes the file's bytes as unpacking writes them: a sparse entry's holes as zeros.
pub(crate) fn unpacked_content(
    entry: &TarEntry,
    data: &mut dyn Read,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match &entry.sparse {
        None => {
            std::io::copy(data, out)?;
        }
        Some(map) => {
            let mut at = 0;
            for &(offset, length) in &map.chunks {
                std::io::copy(&mut std::io::repeat(0).take(offset.saturating_sub(at)), out)?;
                std::io::copy(&mut data.take(length), out)?;
                at = offset + length;
            }
            std::io::copy(
                &mut std::io::repeat(0).take(map.real_size.saturating_sub(at)),
                out,
            )?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `tar` gzip-compressed into a blob file in `dir`: (path, digest).
    fn blob(dir: &Path, tar: &[u8]) -> (std::path::PathBuf, Digest) {
        let mut gz = compress::gzip_writer(Vec::new());
        gz.write_all(tar).unwrap();
        let gz = gz.finish().unwrap();
        let digest = Digest::of(&gz);
        let path = dir.join(digest.hex());
        std::fs::write(&path, &gz).unwrap();
        (path, digest)
    }

    /// A raw header of type `kind` whose size field says `size`, then `data` padded.
    fn raw(kind: u8, name: &str, size: u64, data: &[u8], link: &str) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(size);
        h.as_mut_bytes()[156] = kind;
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    use crate::layer::tests::chain;

    #[test]
    fn entries_are_read_with_the_builders_rules_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let mut tar = raw(b'5', "./etc/", 0, b"", "");
        tar.extend(raw(b'0', "etc/hosts", 3, b"hi\n", ""));
        tar.extend([0u8; 1024]);
        let (path, digest) = blob(tmp.path(), &tar);
        let (entries, diff_id) = read_entries(&path, &digest, 1 << 20).unwrap();
        assert_eq!(diff_id, Digest::of(&tar));
        assert_eq!(
            entries.keys().collect::<Vec<_>>(),
            ["/etc", "/etc/hosts"],
            "names cleaned as unpacking cleans them"
        );
        assert_eq!(entries["/etc/hosts"].content, Some(Digest::of(b"hi\n")));

        // A symlink carrying data (a hidden file for Go and Python) is refused, as the
        // builder refuses it; the tar crate used to skip it.
        let mut hidden = raw(b'2', "link", 512, &[b'x'; 512], "target");
        hidden.extend([0u8; 1024]);
        let (path, digest) = blob(tmp.path(), &hidden);
        let err = read_entries(&path, &digest, 1 << 20).unwrap_err();
        let text = chain(&err);
        assert!(
            text.contains("a symlink header carries 512 bytes"),
            "{text}"
        );

        // A 10 GiB entry stops at its header under the limit.
        let mut bomb = raw(b'0', "zeros", 10 << 30, b"", "");
        bomb.extend([0u8; 1024]);
        let (path, digest) = blob(tmp.path(), &bomb);
        let err = read_entries(&path, &digest, 1 << 20).unwrap_err();
        let text = chain(&err);
        assert!(
            text.contains("layer entry \"zeros\"") && text.contains("this entry of 10 GiB"),
            "{text}"
        );
    }
}
