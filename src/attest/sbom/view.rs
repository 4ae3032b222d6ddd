//! The final view of an image's root filesystem, as far as a package scan needs it: the
//! layers read bottom to top through the builder's own tar reader and rules (clean
//! paths, the same refusals, the unpack budget, each blob's digest checked), their
//! whiteouts applied as image-spec layer.md says, keeping only the content of the files
//! asked for, the targets of symlinks at those paths, and the Go build info of
//! executables. Nothing is written to disk and no other file is held in memory.

use super::SbomError;
use super::gobuildinfo::{self, BuildInfo};
use crate::audit::entries::{read_layer_blob, unpacked_content};
use crate::image::{BlobStore, descriptor_digest};
use crate::layer::LayerError;
use crate::layer::rel_path;
use crate::layer::tar_reader::{TarEntry, TarReader};
use crate::layer::unpack::{UnpackBudget, counts_in_budget};
use crate::layer::whiteout::{self, EntryName};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// How much of one file the scan reads.
#[derive(Clone, Debug)]
pub(super) struct Limits {
    /// A kept file (a package database, os-release) is held whole, up to this size.
    pub text: u64,
    /// Executables larger than this are not scanned for Go build info (the largest Go
    /// binaries, kubelet or terraform, are around 100-150 MiB).
    pub go_binary: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        text: 64 << 20,
        go_binary: 256 << 20,
    };
}

/// What the scan keeps of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    /// A kept file's content.
    Text(Vec<u8>),
    /// A symlink at a kept path: its target, as written.
    Symlink(Vec<u8>),
    /// An executable ELF file with Go build info.
    GoBinary(BuildInfo),
}

/// The kept paths (absolute, `/etc/os-release`) of the final root filesystem.
#[derive(Debug, Default)]
pub(super) struct FinalView {
    nodes: BTreeMap<String, Node>,
}

/// Symlinks followed at most, as the kernel's limit on nested links (path_resolution(7)
/// says 40) bounds a loop.
const MAX_SYMLINKS: usize = 40;

impl FinalView {
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(path, node)| (path.as_str(), node))
    }

    /// The content at `path`, following symlinks the way the kernel would inside the
    /// image's root (`..` stops at `/`, an absolute target starts from the image's
    /// root), as long as every link on the way is a kept path.
    pub fn text(&self, path: &str) -> Option<&[u8]> {
        let mut path = path.to_string();
        for _ in 0..=MAX_SYMLINKS {
            match self.nodes.get(&path)? {
                Node::Text(text) => return Some(text),
                Node::Symlink(target) => path = resolve_link(&path, target),
                Node::GoBinary(_) => return None,
            }
        }
        None
    }

    /// Applies one layer's changes over the view of the layers below it. Removals
    /// first, so they only ever touch lower layers' paths (layer.md: a whiteout hides
    /// lower layers only, whatever the order of the entries).
    fn apply(&mut self, changes: LayerChanges) {
        for path in &changes.deleted {
            self.nodes.retain(|p, _| p != path && !is_below(p, path));
        }
        for dir in &changes.opaque {
            self.nodes.retain(|p, _| !is_below(p, dir));
        }
        for (path, written) in &changes.written {
            // A file, symlink or device replaces a lower directory with all it held.
            self.nodes
                .retain(|p, _| p != path && (written.is_dir || !is_below(p, path)));
        }
        for (path, written) in changes.written {
            if let Some(node) = written.node {
                self.nodes.insert(path, node);
            }
        }
    }
}

/// What one layer does to the view below it.
#[derive(Default)]
struct LayerChanges {
    /// `.wh.NAME`: the path and everything below it.
    deleted: Vec<String>,
    /// `.wh..wh..opq`: everything below the directory.
    opaque: Vec<String>,
    /// Every path the layer has an entry for (the last entry for it wins, as when
    /// unpacking), with what the scan keeps of it: `None` still hides what the lower
    /// layers had at the path.
    written: BTreeMap<String, Written>,
}

struct Written {
    node: Option<Node>,
    is_dir: bool,
}

/// A kept file over the text limit: its path and size.
struct TooLarge(String, u64);

/// Reads `layers` (bottom first) from `store` and returns the final view of the paths
/// for which `keep` is true, plus every executable with Go build info.
pub(super) fn final_view(
    store: &BlobStore,
    layers: &[oci_spec::image::Descriptor],
    unpack_limit: u64,
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<FinalView, SbomError> {
    let mut view = FinalView::default();
    // One budget for the whole image: the limit bounds a root filesystem, as when a
    // build unpacks these layers.
    let mut budget = UnpackBudget::new(unpack_limit);
    for (index, layer) in layers.iter().enumerate() {
        let digest =
            descriptor_digest(layer).map_err(|source| SbomError::Descriptor { index, source })?;
        let blob = store
            .open_sized(&digest, layer.size(), &format!("layer {index}"))
            .map_err(|source| SbomError::Blob {
                index,
                digest: digest.clone(),
                source,
            })?;
        let what = format!("layer {index} blob");
        let read = read_layer_blob(blob, &what, &digest, &mut budget, |tar, budget| {
            read_changes(tar, budget, &view, limits, keep)
        });
        let changes = read
            .map_err(|source| SbomError::Layer {
                index,
                digest: digest.clone(),
                source,
            })?
            .map_err(|TooLarge(path, size)| SbomError::FileTooLarge {
                index,
                digest,
                path,
                size,
                limit: limits.text,
            })?;
        view.apply(changes);
    }
    Ok(view)
}

fn read_changes(
    tar: &mut dyn Read,
    budget: &mut UnpackBudget,
    lower: &FinalView,
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Result<LayerChanges, TooLarge>, LayerError> {
    let mut reader = TarReader::new(tar);
    let mut changes = LayerChanges::default();
    while let Some(entry) = reader.next_entry()? {
        let named = |source: LayerError| LayerError::Entry {
            entry: entry.name(),
            source: Box::new(source),
        };
        let rel = rel_path::clean_bytes(&entry.path).map_err(named)?;
        if counts_in_budget(entry.kind) {
            budget.take(entry.apparent_size()).map_err(named)?;
        }
        // The same refusals as unpacking (layer/unpack.rs), so the scan never reports
        // on a tree a build would not have unpacked.
        let Some((parent, name)) = rel_path::split(&rel) else {
            if entry.kind.is_dir() {
                continue;
            }
            return Err(named(LayerError::RootReplace {
                op: "replace",
                path: rel,
            }));
        };
        match whiteout::classify(name) {
            EntryName::Plain => {}
            EntryName::Opaque => {
                changes.opaque.push(absolute(parent));
                continue;
            }
            EntryName::Delete(hidden) => {
                changes.deleted.push(absolute(&parent.join(hidden)));
                continue;
            }
            EntryName::AufsMeta => continue,
            EntryName::Invalid => {
                return Err(named(LayerError::UnsafePath {
                    path: rel,
                    reason: "is a whiteout that names nothing",
                }));
            }
        }
        let path = absolute(&rel);
        let node = match entry_node(&entry, &path, &mut reader, &changes, lower, limits, keep) {
            Ok(node) => node,
            Err(EntryError::TooLarge(size)) => return Ok(Err(TooLarge(path, size))),
            Err(EntryError::Layer(e)) => return Err(named(e)),
        };
        let is_dir = entry.kind.is_dir();
        changes.written.insert(path, Written { node, is_dir });
    }
    // Read to the end of the stream, as unpacking does, so a damaged tail is noticed.
    std::io::copy(&mut reader.into_inner(), &mut std::io::sink()).map_err(tar_err)?;
    Ok(Ok(changes))
}

enum EntryError {
    TooLarge(u64),
    Layer(LayerError),
}

/// What the scan keeps of `entry` at `path`: `None` for an entry it does not keep.
fn entry_node<R: Read>(
    entry: &TarEntry,
    path: &str,
    reader: &mut TarReader<R>,
    same_layer: &LayerChanges,
    lower: &FinalView,
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Option<Node>, EntryError> {
    let kept = keep(path);
    if entry.kind.is_symlink() {
        let target = entry.link.clone().unwrap_or_default();
        return Ok(kept.then_some(Node::Symlink(target)));
    }
    if entry.kind.is_hard_link() {
        // The same inode as an earlier path, of this layer or a lower one.
        let target = entry.link.as_deref().unwrap_or_default();
        let target = absolute(&rel_path::clean_bytes(target).map_err(EntryError::Layer)?);
        let node = match same_layer.written.get(&target) {
            Some(written) => written.node.clone(),
            None => lower.nodes.get(&target).cloned(),
        };
        // A hard link shares content, so a kept path may link a kept file, and a Go
        // binary is a Go binary under any name.
        let node = node.filter(|n| kept || matches!(n, Node::GoBinary(_)));
        return Ok(node);
    }
    if !counts_in_budget(entry.kind) {
        return Ok(None);
    }
    let size = entry.apparent_size();
    if kept {
        if size > limits.text {
            return Err(EntryError::TooLarge(size));
        }
        let mut text = Vec::new();
        unpacked_content(entry, &mut reader.data(), &mut text)
            .map_err(|e| EntryError::Layer(tar_err(e)))?;
        return Ok(Some(Node::Text(text)));
    }
    let mode = entry.header.mode().unwrap_or(0);
    if mode & 0o111 == 0 || size > limits.go_binary {
        return Ok(None);
    }
    // Streamed: the scanner holds at most one candidate build-info blob.
    let mut scanner = gobuildinfo::Scanner::new();
    unpacked_content(entry, &mut reader.data(), &mut scanner)
        .map_err(|e| EntryError::Layer(tar_err(e)))?;
    Ok(scanner.finish().map(Node::GoBinary))
}

fn tar_err(source: std::io::Error) -> LayerError {
    LayerError::Tar {
        after: None,
        source,
    }
}

/// `/etc/os-release` for the clean relative path `etc/os-release`; `/` for the root.
fn absolute(rel: &Path) -> String {
    format!("/{}", rel.to_string_lossy())
}

/// Whether `path` is strictly inside the directory `dir` (both absolute).
fn is_below(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path != "/";
    }
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Where the symlink at `link` pointing to `target` leads, inside the image's root.
fn resolve_link(link: &str, target: &[u8]) -> String {
    let target = String::from_utf8_lossy(target);
    let mut parts: Vec<&str> = Vec::new();
    if !target.starts_with('/') {
        parts.extend(link.split('/').filter(|c| !c.is_empty()));
        parts.pop();
    }
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_root() {
        let r = |l, t: &str| resolve_link(l, t.as_bytes());
        assert_eq!(
            r("/etc/os-release", "../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(
            r("/etc/os-release", "/usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(r("/etc/os-release", "../../../../x"), "/x");
        assert_eq!(
            r("/etc/os-release", "./os-release.d/./a"),
            "/etc/os-release.d/a"
        );
    }

    #[test]
    fn below_means_strictly_inside() {
        assert!(is_below("/var/lib/dpkg/status", "/var/lib/dpkg"));
        assert!(!is_below("/var/lib/dpkg", "/var/lib/dpkg"));
        assert!(!is_below("/var/lib/dpkgx/status", "/var/lib/dpkg"));
        assert!(is_below("/etc", "/"));
        assert!(!is_below("/", "/"));
    }
}
