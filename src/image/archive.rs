//! Image archives: `oci-archive` (a tar of an OCI layout, as skopeo writes it) and
//! `docker-archive` (what `docker save` writes and `docker load`/`podman load` read).
//! Written deterministically and atomically; read defensively (only the entries the
//! format defines, every blob verified against its digest).

use super::layout::{Layout, OCI_LAYOUT_FILE, write_entries};
use super::{BlobStore, ImageError, canonical_json, descriptor_digest, parse_json};
use crate::digest::{Digest, HashingReader};
use crate::layer::compress;
use crate::layer::error::human_size;
use crate::layer::unpack::{UnpackBudget, check_layer};
use oci_spec::image::{Descriptor, ImageManifest};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Writes `top` (all its blobs in `source`) as an OCI archive at `file` under `tag`.
/// Replaces an existing file atomically.
pub fn write_oci_archive(
    file: &Path,
    source: &BlobStore,
    blobs: &[Digest],
    tag: &str,
    top: &Descriptor,
    extra: &[Descriptor],
) -> Result<(), ImageError> {
    // Assemble the layout in a scratch folder (hard links, no copies), then tar it.
    let dir = parent_of(file);
    let scratch = tempfile::Builder::new()
        .prefix(".xbake-archive-")
        .tempdir_in(dir)
        .map_err(ImageError::io(dir))?;
    let layout_dir = scratch.path().join("layout");
    write_entries(&layout_dir, source, blobs, tag, top, extra)?;
    let mut entries: Vec<(String, PathBuf)> = vec![
        (OCI_LAYOUT_FILE.into(), layout_dir.join(OCI_LAYOUT_FILE)),
        ("index.json".into(), layout_dir.join("index.json")),
    ];
    let mut names: Vec<String> = std::fs::read_dir(layout_dir.join("blobs/sha256"))
        .map_err(ImageError::io(&layout_dir))?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for n in names {
        entries.push((
            format!("blobs/sha256/{n}"),
            layout_dir.join("blobs/sha256").join(&n),
        ));
    }
    write_tar_file(file, &["blobs/", "blobs/sha256/"], &entries)
}

/// A deterministic tar of `dirs` and `files` (name in the archive, source path):
/// mtime 0, owner 0:0, modes 0755/0644, in the given order; written beside `file` and
/// renamed over it.
fn write_tar_file(
    file: &Path,
    dirs: &[&str],
    files: &[(String, PathBuf)],
) -> Result<(), ImageError> {
    let dir = parent_of(file);
    let mut tmp = tempfile::Builder::new()
        .prefix(".xbake-archive-")
        .tempfile_in(dir)
        .map_err(ImageError::io(dir))?;
    {
        let mut tar = tar::Builder::new(&mut tmp);
        let header = |kind, mode, size| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h
        };
        for d in dirs {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, d, std::io::empty())
                .map_err(ImageError::io(file))?;
        }
        for (name, path) in files {
            let f = File::open(path).map_err(ImageError::io(path))?;
            let size = f.metadata().map_err(ImageError::io(path))?.len();
            let mut h = header(tar::EntryType::Regular, 0o644, size);
            tar.append_data(&mut h, name, f)
                .map_err(ImageError::io(file))?;
        }
        tar.finish().map_err(ImageError::io(file))?;
    }
    tmp.flush().map_err(ImageError::io(file))?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(ImageError::io(file))?;
    tmp.as_file().sync_all().map_err(ImageError::io(file))?;
    tmp.persist(file).map_err(|e| ImageError::Io {
        path: file.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn parent_of(file: &Path) -> &Path {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// An OCI archive unpacked into a temporary layout (removed on drop).
pub struct ExtractedLayout {
    _dir: tempfile::TempDir,
    pub layout: Layout,
}

/// Unpacks an OCI archive into a temporary folder under `scratch`. Only `oci-layout`,
/// `index.json` and `blobs/sha256/<digest>` are taken; each blob must hash to its name.
pub fn open_oci_archive(file: &Path, scratch: &Path) -> Result<ExtractedLayout, ImageError> {
    let dir = tempfile::Builder::new()
        .prefix("oci-archive-")
        .tempdir_in(scratch)
        .map_err(ImageError::io(scratch))?;
    let store = BlobStore::open(dir.path())?;
    let f = File::open(file).map_err(ImageError::io(file))?;
    let mut archive = tar::Archive::new(BufReader::new(f));
    let what = file.display().to_string();
    for entry in archive.entries().map_err(ImageError::io(file))? {
        let mut entry = entry.map_err(ImageError::io(file))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_start_matches("./");
        if !entry.header().entry_type().is_file() {
            continue;
        }
        match name {
            "oci-layout" | "index.json" => {
                let size = entry.header().size().map_err(ImageError::io(file))?;
                if size > 4 << 20 {
                    return Err(ImageError::Invalid {
                        what,
                        message: format!("{name} is {size} bytes; more than 4 MiB is not an index"),
                    });
                }
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(ImageError::io(file))?;
                std::fs::write(dir.path().join(name), bytes).map_err(ImageError::io(dir.path()))?;
            }
            _ => {
                let Some(digest) = name
                    .strip_prefix("blobs/sha256/")
                    .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
                else {
                    return Err(ImageError::Invalid {
                        what,
                        message: format!("unexpected entry {name:?} in an OCI archive"),
                    });
                };
                let size = entry.header().size().map_err(ImageError::io(file))?;
                store.put_reader(
                    &mut entry,
                    Some((&digest, size)),
                    &format!("{what}: {name}"),
                )?;
            }
        }
    }
    let layout = Layout::open(dir.path()).map_err(|_| ImageError::Invalid {
        what: what.clone(),
        message: "not an OCI archive (no oci-layout entry)".into(),
    })?;
    Ok(ExtractedLayout { _dir: dir, layout })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Writes one platform's image (its manifest `manifest_digest`, all blobs in `source`)
/// as a `docker save` archive: `manifest.json`, the config as `<hex>.json`, and each
/// layer uncompressed as `<diff_id hex>.tar` (the layout skopeo's docker-archive writes,
/// which `docker load` and `podman load` read).
pub fn write_docker_archive(
    file: &Path,
    source: &BlobStore,
    manifest_digest: &Digest,
    repo_tags: &[String],
) -> Result<(), ImageError> {
    let manifest: ImageManifest =
        parse_json(&source.read_bytes(manifest_digest)?, "image manifest")?;
    let config_digest = descriptor_digest(manifest.config())?;
    let config_bytes = source.read_bytes(&config_digest)?;
    let config: serde_json::Value = parse_json(&config_bytes, "image config")?;
    let diff_ids: Vec<Digest> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::Invalid {
            what: "image config".into(),
            message: "diff_ids and layers differ in number".into(),
        });
    }
    let dir = parent_of(file);
    let scratch = tempfile::Builder::new()
        .prefix(".xbake-archive-")
        .tempdir_in(dir)
        .map_err(ImageError::io(dir))?;
    let mut files = Vec::new();
    let config_name = format!("{}.json", config_digest.hex());
    std::fs::write(scratch.path().join(&config_name), &config_bytes)
        .map_err(ImageError::io(scratch.path()))?;
    let mut layer_names = Vec::new();
    for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
        let name = format!("{}.tar", diff_id.hex());
        if !layer_names.contains(&name) {
            let path = scratch.path().join(&name);
            let digest = descriptor_digest(layer)?;
            decompress_verified(source, &digest, diff_id, &path)?;
            files.push((name.clone(), path));
        }
        layer_names.push(name);
    }
    let entry = DockerManifestEntry {
        config: config_name.clone(),
        repo_tags: Some(repo_tags.to_vec()),
        layers: layer_names,
    };
    let manifest_path = scratch.path().join("manifest.json");
    std::fs::write(
        &manifest_path,
        canonical_json(&vec![entry], "manifest.json")?,
    )
    .map_err(ImageError::io(&manifest_path))?;
    files.insert(
        0,
        (
            config_name,
            scratch.path().join(format!("{}.json", config_digest.hex())),
        ),
    );
    files.push(("manifest.json".into(), manifest_path));
    write_tar_file(file, &[], &files)
}

/// Writes the uncompressed content of blob `digest` to `to`, checking both digests.
fn decompress_verified(
    store: &BlobStore,
    digest: &Digest,
    diff_id: &Digest,
    to: &Path,
) -> Result<(), ImageError> {
    let blob = HashingReader::new(store.open_blob(digest)?);
    let mut blob = blob;
    let what = format!("layer {digest}");
    let layer_err = |e: crate::layer::LayerError| ImageError::Invalid {
        what: what.clone(),
        message: e.to_string(),
    };
    let tar = compress::decompressor(BufReader::new(&mut blob)).map_err(layer_err)?;
    let mut tar = HashingReader::new(tar);
    let mut out = File::create(to).map_err(ImageError::io(to))?;
    std::io::copy(&mut tar, &mut out).map_err(ImageError::io(to))?;
    let (actual_diff, _) = tar.drain_and_finish().map_err(ImageError::io(to))?;
    let (actual, _) = blob.drain_and_finish().map_err(ImageError::io(to))?;
    digest.verify(&actual, &what)?;
    diff_id.verify(&actual_diff, &what)?;
    Ok(())
}

/// One image read from a `docker save` archive into a store.
pub struct DockerArchiveImage {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<super::Layer>,
    pub repo_tags: Vec<String>,
}

/// Reads the first image of a `docker save` archive: its config and layers go into
/// `store` byte for byte (a layer file's digest is the blob digest; its media type
/// follows its compression), each layer checked against the config's diff_ids and read
/// as unpacking reads it (hostile entries refused, what it would unpack to counted).
/// `unpack_limit` (the build's `--max-unpack-size`) bounds both what is staged from the
/// archive and what its layers would unpack to, so an archive claiming a huge entry is
/// refused from that entry's header, before anything of it is written.
pub fn read_docker_archive(
    file: &Path,
    store: &BlobStore,
    scratch: &Path,
    unpack_limit: u64,
) -> Result<DockerArchiveImage, ImageError> {
    let what = file.display().to_string();
    let invalid = |message: String| ImageError::Invalid {
        what: what.clone(),
        message,
    };
    // Entries may come in any order; stage the files we need by name.
    let dir = tempfile::Builder::new()
        .prefix("docker-archive-")
        .tempdir_in(scratch)
        .map_err(ImageError::io(scratch))?;
    let f = File::open(file).map_err(ImageError::io(file))?;
    let mut archive = tar::Archive::new(BufReader::new(f));
    // Archive name → the staged file (numbered, so no two names can collide).
    let mut staged: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    let mut staging = StagingBudget {
        what: &what,
        used: 0,
        limit: unpack_limit,
    };
    for entry in archive.entries().map_err(ImageError::io(file))? {
        let mut entry = entry.map_err(ImageError::io(file))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        // Names are only looked up, never used as paths: each entry is staged under a
        // number. A name that climbs (`..`) or repeats is refused all the same.
        if name.split('/').any(|c| c == ".." || c.is_empty()) || name.starts_with('/') {
            return Err(invalid(format!("unsafe entry name {name:?}")));
        }
        if staged.contains_key(&name) {
            return Err(invalid(format!("entry {name:?} appears twice")));
        }
        // Sized from the header before anything is written (the tar crate reads no
        // more than that, a PAX `size` included).
        let size = entry.size();
        staging.admit(&name, size)?;
        let path = dir.path().join(format!("entry-{}", staged.len()));
        let mut out = File::create(&path).map_err(ImageError::io(&path))?;
        std::io::copy(&mut entry, &mut out).map_err(ImageError::io(&path))?;
        staged.insert(name, path);
    }
    let missing = dir.path().join("missing");
    let staged_path = |name: &str| {
        staged
            .get(name.trim_start_matches("./"))
            .cloned()
            .unwrap_or_else(|| missing.clone())
    };
    // The JSON files are read whole: bounded as the same documents are in a layout.
    let read_bounded = |name: &str, limit: u64, missing: String| {
        let path = staged_path(name);
        let size = std::fs::metadata(&path)
            .map_err(|_| invalid(missing))?
            .len();
        if size > limit {
            return Err(ImageError::TooLarge {
                what: format!("{what}: {name}"),
                size,
                limit,
            });
        }
        std::fs::read(&path).map_err(ImageError::io(&path))
    };
    let manifest_bytes = read_bounded(
        "manifest.json",
        super::MANIFEST_SIZE_LIMIT,
        "no manifest.json: not a docker-archive".into(),
    )?;
    let entries: Vec<DockerManifestEntry> = parse_json(&manifest_bytes, "manifest.json")?;
    let Some(entry) = entries.into_iter().next() else {
        return Err(invalid("manifest.json lists no image".into()));
    };
    let config = read_bounded(
        &entry.config,
        super::CONFIG_SIZE_LIMIT,
        format!("missing config {}", entry.config),
    )?;
    let (config_digest, _) = store.put_bytes(&config)?;
    let config_json: serde_json::Value = parse_json(&config, "image config")?;
    let diff_ids: Vec<Digest> = config_json["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if diff_ids.len() != entry.layers.len() {
        return Err(invalid(
            "config diff_ids and manifest.json layers differ in number".into(),
        ));
    }
    let mut layers = Vec::new();
    let mut budget = UnpackBudget::new(unpack_limit);
    for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
        let path = staged_path(name);
        let mut head = [0u8; 6];
        let n = File::open(&path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|_| invalid(format!("missing layer {name}")))?;
        let media_type = match compress::detect(&head[..n]) {
            compress::Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            compress::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            compress::Compression::None => "application/vnd.oci.image.layer.v1.tar",
            compress::Compression::Xz => {
                return Err(invalid(format!("layer {name} is xz-compressed")));
            }
        };
        // Check the content against the diff_id before it becomes a blob, reading it as
        // unpacking will: one budget over all the layers, as for the rootfs they make.
        let layer_err = |source| ImageError::Layer {
            what: format!("{what}: layer {name}"),
            source: Box::new(source),
        };
        let tar = compress::decompressor(BufReader::new(
            File::open(&path).map_err(ImageError::io(&path))?,
        ))
        .map_err(layer_err)?;
        let actual = check_layer(tar, &mut budget).map_err(layer_err)?;
        diff_id.verify(&actual, &format!("{what}: layer {name}"))?;
        let file = File::open(&path).map_err(ImageError::io(&path))?;
        let (digest, size) = store.put_reader(file, None, name)?;
        layers.push(super::Layer {
            digest,
            size,
            media_type: media_type.to_string(),
            diff_id,
        });
    }
    Ok(DockerArchiveImage {
        config,
        config_digest,
        layers,
        repo_tags: entry.repo_tags.unwrap_or_default(),
    })
}

/// What staging a docker-archive's entries may write: `manifest.json` and the other
/// JSON documents no more than their limits in a layout ([`super::MANIFEST_SIZE_LIMIT`],
/// [`super::CONFIG_SIZE_LIMIT`]; a `docker save` manifest.json declares no sizes to check
/// against), and everything staged together no more than the unpack limit: the layers
/// are staged as stored, and a layer stored larger than the limit could only be a bomb
/// or a tar of mostly headers.
struct StagingBudget<'a> {
    what: &'a str,
    used: u64,
    limit: u64,
}

impl StagingBudget<'_> {
    fn admit(&mut self, name: &str, size: u64) -> Result<(), ImageError> {
        let document = if name == "manifest.json" {
            Some(super::MANIFEST_SIZE_LIMIT)
        } else if name.ends_with(".json") {
            Some(super::CONFIG_SIZE_LIMIT)
        } else {
            None
        };
        if let Some(limit) = document.filter(|&limit| size > limit) {
            return Err(ImageError::TooLarge {
                what: format!("{}: {name}", self.what),
                size,
                limit,
            });
        }
        match self.used.checked_add(size) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(())
            }
            _ => Err(ImageError::Invalid {
                what: self.what.to_string(),
                message: format!(
                    "entry {name:?} of {} would take what is staged from the archive \
                     past the unpacked size limit of {} ({} staged before it; a larger \
                     limit can be given with --max-unpack-size)",
                    human_size(size),
                    human_size(self.limit),
                    human_size(self.used)
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::descriptor;
    use oci_spec::image::MediaType;

    /// A one-layer image in a store: (manifest digest, all blobs).
    fn image(store: &BlobStore) -> (Digest, Vec<Digest>) {
        let mut tar_bytes = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar_bytes);
            let mut h = tar::Header::new_ustar();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            b.append_data(&mut h, "hello", &b"hi\n"[..]).unwrap();
            b.finish().unwrap();
        }
        let diff_id = Digest::of(&tar_bytes);
        let mut gz = compress::gzip_writer(Vec::new());
        gz.write_all(&tar_bytes).unwrap();
        let gz = gz.finish().unwrap();
        let (layer, layer_size) = store.put_bytes(&gz).unwrap();
        let config = serde_json::json!({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}});
        let (config_digest, config_size) = store
            .put_bytes(&serde_json::to_vec(&config).unwrap())
            .unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.to_string(), "size": layer_size}],
        });
        let (manifest_digest, _) = store
            .put_bytes(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        (
            manifest_digest.clone(),
            vec![layer, config_digest, manifest_digest],
        )
    }

    #[test]
    fn oci_archives_round_trip_and_are_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&tmp.path().join("s")).unwrap();
        let (m, blobs) = image(&store);
        let size = std::fs::metadata(store.path(&m)).unwrap().len();
        let top = descriptor(MediaType::ImageManifest, &m, size).unwrap();
        let a = tmp.path().join("a.tar");
        let b = tmp.path().join("b.tar");
        write_oci_archive(&a, &store, &blobs, "1.0", &top, &[]).unwrap();
        write_oci_archive(&b, &store, &blobs, "1.0", &top, &[]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let opened = open_oci_archive(&a, tmp.path()).unwrap();
        let d = opened.layout.resolve(Some("1.0")).unwrap();
        assert_eq!(d.digest().to_string(), m.to_string());
        for blob in &blobs {
            assert!(opened.layout.store().contains(blob));
        }
    }

    #[test]
    fn a_tampered_oci_archive_blob_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&tmp.path().join("s")).unwrap();
        let (m, blobs) = image(&store);
        let top = descriptor(MediaType::ImageManifest, &m, 1).unwrap();
        let a = tmp.path().join("a.tar");
        write_oci_archive(&a, &store, &blobs, "x", &top, &[]).unwrap();
        let mut bytes = std::fs::read(&a).unwrap();
        // Change a letter inside the config blob's content.
        let pos = bytes
            .windows(12)
            .position(|w| w == b"architecture")
            .unwrap();
        bytes[pos] = b'A';
        std::fs::write(&a, &bytes).unwrap();
        assert!(open_oci_archive(&a, tmp.path()).is_err());
    }

    /// A `docker save` archive of `entries` (name, header size, data); a header may claim
    /// more than its data (the archive then ends early).
    fn docker_tar(entries: &[(&str, u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, size, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_mode(0o644);
            h.set_size(*size);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend([0u8; 1024]);
        out
    }

    fn read_error(archive: &[u8], limit: u64) -> (String, Vec<std::fs::DirEntry>) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("d.tar");
        std::fs::write(&file, archive).unwrap();
        let store = BlobStore::open(&tmp.path().join("s")).unwrap();
        let scratch = tmp.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let err = read_docker_archive(&file, &store, &scratch, limit)
            .err()
            .expect("refused");
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        let blobs = std::fs::read_dir(tmp.path().join("s/blobs/sha256"))
            .map(|d| d.map(|e| e.unwrap()).collect())
            .unwrap_or_default();
        (text, blobs)
    }

    #[test]
    fn docker_archive_entries_are_bounded_before_they_are_staged() {
        // An entry claiming 10 GiB is refused from its header: its (absent) data is never
        // copied, so the archive ending early is not what stops it.
        let (text, _) = read_error(&docker_tar(&[("big.tar", 10 << 30, b"")]), 1 << 20);
        assert!(
            text.contains(
                "entry \"big.tar\" of 10 GiB (10737418240 bytes) would take what is staged \
                 from the archive past the unpacked size limit of 1 MiB (1048576 bytes) \
                 (0 bytes staged before it"
            ),
            "{text}"
        );
        // Staged entries add up.
        let (text, _) = read_error(
            &docker_tar(&[("a", 600 << 10, &[1; 600 << 10]), ("b", 600 << 10, b"")]),
            1 << 20,
        );
        assert!(text.contains("entry \"b\" of 600 KiB"), "{text}");
        // JSON documents keep their layout limits.
        let (text, _) = read_error(&docker_tar(&[("manifest.json", 5 << 20, b"")]), u64::MAX);
        assert!(
            text.ends_with(
                "manifest.json is 5242880 bytes; more than 4194304 is not accepted for it"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_docker_archive_layer_bomb_is_refused_before_it_is_stored() {
        // A gzip layer claiming a 1 GiB file; the config's diff_id is never reached.
        let mut tar = tar::Header::new_ustar();
        tar.set_path("zeros").unwrap();
        tar.set_size(1 << 30);
        tar.set_cksum();
        let mut gz = compress::gzip_writer(Vec::new());
        gz.write_all(tar.as_bytes()).unwrap();
        let layer = gz.finish().unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"x").to_string()]}
        }))
        .unwrap();
        let manifest = br#"[{"Config":"c.json","Layers":["l.tar"]}]"#;
        let archive = docker_tar(&[
            ("manifest.json", manifest.len() as u64, manifest),
            ("c.json", config.len() as u64, &config),
            ("l.tar", layer.len() as u64, &layer),
        ]);
        let (text, blobs) = read_error(&archive, 16 << 20);
        assert!(
            text.contains("layer l.tar: layer entry \"zeros\"")
                && text.contains("size limit of 16 MiB (16777216 bytes) is reached"),
            "{text}"
        );
        // Only the config (a complete document) is in the store, not the layer.
        let names: Vec<_> = blobs.iter().map(|e| e.file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from(Digest::of(&config).hex())]);
    }

    #[test]
    fn docker_archives_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&tmp.path().join("s")).unwrap();
        let (m, _) = image(&store);
        let file = tmp.path().join("d.tar");
        write_docker_archive(&file, &store, &m, &["hello:1.0".to_string()]).unwrap();
        let other = BlobStore::open(&tmp.path().join("o")).unwrap();
        let read = read_docker_archive(&file, &other, tmp.path(), u64::MAX).unwrap();
        assert_eq!(read.repo_tags, ["hello:1.0"]);
        assert_eq!(read.layers.len(), 1);
        assert_eq!(
            read.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar"
        );
        assert!(other.contains(&read.config_digest));
    }
}
