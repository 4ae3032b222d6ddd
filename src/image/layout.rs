//! OCI image layouts (image-spec image-layout.md): reading tags, and writing a new tag
//! atomically.
//!
//! Atomicity: the new layout is assembled in a sibling staging directory (existing
//! blobs hard-linked, so this is cheap), then swapped with the old one in a single
//! renameat2(RENAME_EXCHANGE). A build killed at any moment leaves DIR exactly as it
//! was, or fully updated; never a mix, and never an index pointing at a missing blob.

use super::regular_file::{RegularFile, SizedReader, open_regular};
use super::{
    ANNOTATION_REF_NAME, BlobStore, ImageError, MANIFEST_SIZE_LIMIT, canonical_json, checks,
    parse_json,
};
use crate::digest::Digest;
use crate::registry::media_types::manifest_kind;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType, SCHEMA_VERSION};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// A readable OCI layout.
pub struct Layout {
    dir: PathBuf,
    store: BlobStore,
}

impl Layout {
    /// Opens the layout at `dir`: its `oci-layout` must be a regular file (never followed
    /// through a symlink) declaring a 1.x `imageLayoutVersion`.
    pub fn open(dir: &Path) -> Result<Layout, ImageError> {
        let marker = match open_regular(dir, OCI_LAYOUT_FILE) {
            Ok(marker) => marker,
            Err(ImageError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(ImageError::NotALayout {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(e),
        };
        let what = marker.path.display().to_string();
        let bytes = read_small(marker, &what)?;
        checks::check_layout_version(&bytes, &what)?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            store: BlobStore::open(dir)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The index or manifest `desc` names: size-checked (at most [`MANIFEST_SIZE_LIMIT`]),
    /// digest-verified, and its structure checked against the descriptor's media type
    /// (checks::check_document). Returns the bytes, their digest and what they are.
    pub fn read_document(
        &self,
        desc: &Descriptor,
    ) -> Result<(Vec<u8>, Digest, crate::registry::media_types::ManifestKind), ImageError> {
        use crate::registry::media_types::ManifestKind;
        let digest = super::descriptor_digest(desc)?;
        let name = match manifest_kind(desc.media_type().as_ref()) {
            Some(ManifestKind::Image) => "image manifest",
            Some(ManifestKind::Index) => "image index",
            None => "image index or manifest",
        };
        let bytes = self
            .store
            .read_sized(&digest, desc.size(), MANIFEST_SIZE_LIMIT, name)?;
        let what = format!("{name} {digest}");
        let kind = checks::check_document(&bytes, desc.media_type().as_ref(), &what)?;
        Ok((bytes, digest, kind))
    }

    /// A JSON blob (manifest, config, index) of the layout that its descriptor says has
    /// `size` bytes: size-checked (at most `limit`), digest-verified and parsed.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Digest,
        size: u64,
        limit: u64,
        what: &str,
    ) -> Result<T, ImageError> {
        parse_json(
            &self.store.read_sized(digest, size, limit, what)?,
            &format!("{what} {digest}"),
        )
    }

    pub fn index(&self) -> Result<ImageIndex, ImageError> {
        let index = open_regular(&self.dir, "index.json")?;
        let what = index.path.display().to_string();
        let bytes = read_small(index, &what)?;
        checks::check_document(&bytes, MediaType::ImageIndex.as_ref(), &what)?;
        parse_json(&bytes, &what)
    }

    /// The descriptor tagged `tag`; without a tag, the only image entry (skopeo's rule).
    /// Entries of a media type that is neither an index nor a manifest are skipped, and a
    /// `ref.name` outside the image-layout grammar is never taken for a tag.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, ImageError> {
        let index = self.index()?;
        // OCI 1.1 referrers listed beside an image (untagged, with an artifactType)
        // are not images of their own.
        let images: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| manifest_kind(d.media_type().as_ref()).is_some())
            .filter(|d| d.artifact_type().is_none() || ref_name(d).is_some())
            .filter(|d| tag.is_some() || !ref_name(d).is_some_and(is_signature_tag))
            .collect();
        let tags = tags_of(&index);
        let found = match tag {
            Some(tag) => images.iter().find(|d| ref_name(d) == Some(tag)).copied(),
            None if images.len() == 1 => images.first().copied(),
            None => {
                return Err(ImageError::Invalid {
                    what: self.dir.display().to_string(),
                    message: format!(
                        "holds {} images; name one with DIR:TAG (tags: {})",
                        images.len(),
                        tags.join(", ")
                    ),
                });
            }
        };
        found.cloned().ok_or_else(|| ImageError::TagNotFound {
            dir: self.dir.clone(),
            tag: tag.unwrap_or("").to_string(),
            available: tags,
        })
    }
}

/// Reads a layout's own small file (`oci-layout`, `index.json`), bounded.
fn read_small(file: RegularFile, what: &str) -> Result<Vec<u8>, ImageError> {
    if file.size > MANIFEST_SIZE_LIMIT {
        return Err(ImageError::TooLarge {
            what: what.to_string(),
            size: file.size,
            limit: MANIFEST_SIZE_LIMIT,
        });
    }
    let mut bytes = Vec::new();
    SizedReader::new(file.file, file.size, what)
        .read_to_end(&mut bytes)
        .map_err(ImageError::io(&file.path))?;
    Ok(bytes)
}

/// cosign's signature tag, `sha256-<64 hex>.sig`: an image's signatures beside it, not an
/// image of the layout's own.
fn is_signature_tag(name: &str) -> bool {
    name.strip_prefix("sha256-")
        .and_then(|rest| rest.strip_suffix(".sig"))
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The descriptor's tag, if it is a valid one.
fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
        .filter(|name| checks::valid_ref_name(name))
}

fn tags_of(index: &ImageIndex) -> Vec<String> {
    index
        .manifests()
        .iter()
        .filter(|d| manifest_kind(d.media_type().as_ref()).is_some())
        .filter_map(|d| ref_name(d).map(str::to_string))
        .collect()
}

/// Writes `top` (with its blobs, all in `source`) into the layout at `dir` under `tag`,
/// keeping the layout's other tags. Creates `dir` if it does not exist.
pub fn write_tag(
    dir: &Path,
    source: &BlobStore,
    blobs: &[Digest],
    tag: &str,
    top: &Descriptor,
) -> Result<(), ImageError> {
    write_entries(dir, source, blobs, tag, top, &[])
}

/// [`write_tag`], and `extra` entries beside it: one with a `ref.name` replaces the
/// entry of that name (a signature's `sha256-HEX.sig`), one without replaces the entry
/// of its digest (an OCI 1.1 referrer, which a layout lists untagged).
pub fn write_entries(
    dir: &Path,
    source: &BlobStore,
    blobs: &[Digest],
    tag: &str,
    top: &Descriptor,
    extra: &[Descriptor],
) -> Result<(), ImageError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "layout".into());
    // Serialise concurrent writers of the same layout; the lock file lives beside it.
    let lock_path = parent.join(format!(".{name}.xbake-lock"));
    let lock = File::create(&lock_path).map_err(ImageError::io(&lock_path))?;
    let _guard =
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            ImageError::Io {
                path: lock_path.clone(),
                source: e.into(),
            }
        })?;
    // Under the lock, any staging folder beside the layout belongs to a writer that was
    // killed before it finished (or before it removed the old layout): remove it.
    sweep_staging(parent, &name);
    let state = layout_state(dir)?;
    let existing = state == LayoutState::Layout;

    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.xbake-"))
        .tempdir_in(parent)
        .map_err(ImageError::io(parent))?;
    let staged = BlobStore::open(staging.path())?;
    let mut manifests: Vec<Descriptor> = Vec::new();
    if existing {
        let old = Layout::open(dir)?;
        link_all_blobs(old.store(), &staged)?;
        manifests = old
            .index()?
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(tag))
            .filter(|d| {
                !extra.iter().any(|e| match ref_name(e) {
                    Some(name) => ref_name(d) == Some(name),
                    None => ref_name(d).is_none() && e.digest() == d.digest(),
                })
            })
            .cloned()
            .collect();
    }
    for digest in blobs {
        source.export_to(digest, &staged)?;
    }
    let mut entry = top.clone();
    let mut annotations = entry.annotations().clone().unwrap_or_default();
    annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
    entry.set_annotations(Some(annotations));
    manifests.push(entry);
    manifests.extend(extra.iter().cloned());
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| ImageError::Invalid {
            what: "index.json".into(),
            message: e.to_string(),
        })?;
    write_synced(
        &staging.path().join(OCI_LAYOUT_FILE),
        OCI_LAYOUT_CONTENT.as_bytes(),
    )?;
    write_synced(
        &staging.path().join("index.json"),
        &canonical_json(&index, "index.json")?,
    )?;
    // Directories are created 0700 by tempfile; a layout is meant to be shared.
    set_mode(staging.path(), 0o755)?;

    let staging_path = staging.keep();
    let swap = if state != LayoutState::Absent {
        renameat2(
            AT_FDCWD,
            &staging_path,
            AT_FDCWD,
            dir,
            RenameFlags::RENAME_EXCHANGE,
        )
    } else {
        renameat2(
            AT_FDCWD,
            &staging_path,
            AT_FDCWD,
            dir,
            RenameFlags::RENAME_NOREPLACE,
        )
    };
    if let Err(errno) = swap {
        let _ = std::fs::remove_dir_all(&staging_path);
        return Err(ImageError::Io {
            path: dir.to_path_buf(),
            source: errno.into(),
        });
    }
    sync_dir(parent)?;
    if state != LayoutState::Absent {
        // The old layout (or empty folder) now sits at the staging path.
        std::fs::remove_dir_all(&staging_path).map_err(ImageError::io(&staging_path))?;
    }
    Ok(())
}

fn sweep_staging(parent: &Path, name: &str) {
    let prefix = format!(".{name}.xbake-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&prefix) && !file_name.ends_with("-lock") && entry.path().is_dir()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LayoutState {
    Absent,
    /// An empty folder: replaced like a new layout, but by exchange (it exists).
    Empty,
    Layout,
}

/// What is at `dir`. Anything that is neither absent, empty nor a layout is refused
/// rather than overwritten.
fn layout_state(dir: &Path) -> Result<LayoutState, ImageError> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LayoutState::Absent),
        Err(e) => Err(ImageError::io(dir)(e)),
        Ok(mut entries) => {
            if dir.join(OCI_LAYOUT_FILE).is_file() {
                Ok(LayoutState::Layout)
            } else if entries.next().is_none() {
                Ok(LayoutState::Empty)
            } else {
                Err(ImageError::NotALayout {
                    dir: dir.to_path_buf(),
                })
            }
        }
    }
}

fn link_all_blobs(from: &BlobStore, to: &BlobStore) -> Result<(), ImageError> {
    let dir = from.root().join("blobs/sha256");
    let entries = std::fs::read_dir(&dir).map_err(ImageError::io(&dir))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
            continue; // temporary files and foreign names are not blobs
        };
        from.export_to(&digest, to)?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(ImageError::io(path))?;
    f.write_all(bytes).map_err(ImageError::io(path))?;
    f.sync_all().map_err(ImageError::io(path))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(ImageError::io(path))
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::descriptor;

    fn index_blob(store: &BlobStore, content: &str) -> (Digest, Descriptor) {
        let (d, n) = store.put_bytes(content.as_bytes()).unwrap();
        (d.clone(), descriptor(MediaType::ImageIndex, &d, n).unwrap())
    }

    #[test]
    fn writes_a_new_layout_then_adds_and_replaces_tags() {
        let tmp = tempfile::tempdir().unwrap();
        let src = BlobStore::open(&tmp.path().join("src")).unwrap();
        let out = tmp.path().join("out/app");
        let (d1, top1) = index_blob(&src, "{\"a\":1}");
        write_tag(&out, &src, std::slice::from_ref(&d1), "1.0", &top1).unwrap();
        let layout = Layout::open(&out).unwrap();
        assert_eq!(
            layout.resolve(Some("1.0")).unwrap().digest().to_string(),
            d1.to_string()
        );
        assert_eq!(
            layout.resolve(None).unwrap().digest().to_string(),
            d1.to_string()
        );
        assert_eq!(
            std::fs::read_to_string(out.join("oci-layout")).unwrap(),
            OCI_LAYOUT_CONTENT
        );

        let (d2, top2) = index_blob(&src, "{\"a\":2}");
        write_tag(&out, &src, std::slice::from_ref(&d2), "2.0", &top2).unwrap();
        let (d3, top3) = index_blob(&src, "{\"a\":3}");
        write_tag(&out, &src, std::slice::from_ref(&d3), "1.0", &top3).unwrap();
        let layout = Layout::open(&out).unwrap();
        assert_eq!(
            layout.resolve(Some("2.0")).unwrap().digest().to_string(),
            d2.to_string()
        );
        assert_eq!(
            layout.resolve(Some("1.0")).unwrap().digest().to_string(),
            d3.to_string()
        );
        assert!(layout.resolve(None).is_err(), "two tags: ambiguous");
        let err = layout.resolve(Some("3.0")).unwrap_err().to_string();
        assert!(err.contains("2.0") && err.contains("1.0"), "{err}");
        // Nothing but the layout is left beside it (the lock file aside).
        let leftovers: Vec<String> = std::fs::read_dir(tmp.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".xbake-lock"))
            .collect();
        assert_eq!(leftovers, ["app"]);
    }

    #[test]
    fn refuses_a_directory_that_is_not_a_layout_and_leaves_it_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let src = BlobStore::open(&tmp.path().join("src")).unwrap();
        let out = tmp.path().join("precious");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "keep me").unwrap();
        let (d, top) = index_blob(&src, "{}");
        let err = write_tag(&out, &src, &[d], "x", &top).unwrap_err();
        assert!(matches!(err, ImageError::NotALayout { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "keep me"
        );
    }

    #[test]
    fn an_empty_folder_becomes_a_layout_and_stale_staging_is_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let src = BlobStore::open(&tmp.path().join("src")).unwrap();
        let out = tmp.path().join("app");
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir_all(tmp.path().join(".app.xbake-KILLED/blobs")).unwrap();
        let (d, top) = index_blob(&src, "{}");
        write_tag(&out, &src, std::slice::from_ref(&d), "t", &top).unwrap();
        assert!(Layout::open(&out).unwrap().resolve(Some("t")).is_ok());
        assert!(!tmp.path().join(".app.xbake-KILLED").exists());
    }

    #[test]
    fn a_missing_blob_fails_before_the_layout_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = BlobStore::open(&tmp.path().join("src")).unwrap();
        let out = tmp.path().join("app");
        let (d1, top1) = index_blob(&src, "{\"a\":1}");
        write_tag(&out, &src, &[d1], "1.0", &top1).unwrap();
        let before = std::fs::read(out.join("index.json")).unwrap();
        let ghost = Digest::of(b"never stored");
        let err = write_tag(&out, &src, std::slice::from_ref(&ghost), "2.0", &top1);
        assert!(err.is_err());
        assert_eq!(std::fs::read(out.join("index.json")).unwrap(), before);
        assert!(!out.join(ghost.blob_path()).exists());
    }
}
