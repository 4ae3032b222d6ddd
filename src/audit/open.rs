//! Opening any image reference for reading: a layout directly, an OCI archive by
//! unpacking it (verified) into a scratch folder that lives as long as the result.

use super::{AuditError, LoadedImage, load};
use crate::image::archive::{ExtractedLayout, open_oci_archive, read_docker_archive};
use crate::image::reference::{ImageRef, LayoutRef};
use crate::image::{BlobStore, ImageError, canonical_json};
use crate::registry::RegistryOptions;
use serde_json::json;
use std::path::Path;
use tempfile::TempDir;

pub struct Opened {
    pub image: LoadedImage,
    _extracted: Option<ExtractedLayout>,
    /// The layout a docker-archive was read into.
    _converted: Option<TempDir>,
}

impl Opened {
    pub fn new(image: LoadedImage) -> Opened {
        Opened {
            image,
            _extracted: None,
            _converted: None,
        }
    }
}

/// `scratch` must outlive the result (registry images are kept there); `with_layers`
/// fetches a registry image's layers too (diff, verify), not only its configs.
pub fn open(
    reference: &ImageRef,
    scratch: &Path,
    registry: &RegistryOptions,
    with_layers: bool,
) -> Result<Opened, AuditError> {
    match reference {
        ImageRef::Layout(layout) => Ok(Opened::new(load(layout)?)),
        ImageRef::OciArchive(archive) => {
            let extracted =
                open_oci_archive(&archive.dir, scratch).map_err(|source| AuditError::Image {
                    what: reference.to_string(),
                    source,
                })?;
            let mut image = load(&LayoutRef {
                dir: extracted.layout.dir().to_path_buf(),
                tag: archive.tag.clone(),
            })?;
            image.name = reference.to_string();
            Ok(Opened {
                image,
                _extracted: Some(extracted),
                _converted: None,
            })
        }
        ImageRef::DockerArchive(file) => {
            let image_err = |source| AuditError::Image {
                what: reference.to_string(),
                source,
            };
            let extracted = docker_archive_layout(file, scratch).map_err(image_err)?;
            let mut image = load(&LayoutRef {
                dir: extracted.path().to_path_buf(),
                tag: None,
            })?;
            image.name = reference.to_string();
            Ok(Opened {
                image,
                _extracted: None,
                _converted: Some(extracted),
            })
        }
        ImageRef::Registry(name) => super::registry::open(name, scratch, registry, with_layers),
    }
}

/// A `docker save` archive read (verified, as a docker-archive base is) into an OCI
/// layout in a folder of `scratch`, under the manifest `docker push` would send for it
/// (Docker schema 2): the archive holds a config and layers, not a manifest, so the
/// manifest digest shown is of that one.
fn docker_archive_layout(file: &Path, scratch: &Path) -> Result<TempDir, ImageError> {
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    let dir = tempfile::Builder::new()
        .prefix("docker-archive-")
        .tempdir_in(scratch)
        .map_err(ImageError::io(scratch))?;
    let store = BlobStore::open(dir.path())?;
    let limit = crate::build::rootfs::unpack_limit(None, scratch);
    let image = read_docker_archive(file, &store, scratch, limit)?;
    let layers: Vec<serde_json::Value> = image
        .layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG,
            "digest": image.config_digest.to_string(),
            "size": image.config.len(),
        },
        "layers": layers,
    });
    let bytes = canonical_json(&manifest, "the manifest")?;
    let (digest, size) = store.put_bytes(&bytes)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": digest.to_string(), "size": size}],
    });
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).map_err(ImageError::io(&path))
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write("index.json", &canonical_json(&index, "the index")?)?;
    Ok(dir)
}
