//! Pulling one platform's image: resolve the reference (index or manifest, OCI or Docker),
//! pick the platform, and fetch the config and every layer into the content store unless
//! already there. Every byte is verified against its digest on the way in; a second pull
//! of the same image fetches only the top manifest (tags can move, digests cannot).

use super::auth::Credentials;
use super::client::{Client, Manifest};
use super::endpoint::RegistryOptions;
use super::error::RegistryError;
use super::manifest_doc::{BlobRef, ConfigHead, ImageManifestDoc};
use super::media_types::{ManifestKind, is_supported_config, is_supported_layer};
use super::reference::Reference;
use crate::digest::Digest;
use crate::image::checks::check_document;
use crate::image::select::select_manifest;
use crate::image::{BlobStore, ImageError, MANIFEST_SIZE_LIMIT, descriptor_digest, parse_json};
use crate::platform::Platform;
use oci_spec::image::ImageIndex;

/// Image configs are small JSON documents; bound what a registry can make us read.
pub use crate::image::CONFIG_SIZE_LIMIT;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledImage {
    /// The platform's image manifest (not the index); its bytes are in the store too.
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// The config's bytes, verified against `config_digest`.
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// Bottom layer first, each blob in the store.
    pub layers: Vec<PulledLayer>,
    /// What the pull found worth telling (two manifests for the platform).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledLayer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// The digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// Pulls `reference` for `platform` into `store`.
pub fn pull(
    reference: &Reference,
    platform: &Platform,
    store: &BlobStore,
    opts: &RegistryOptions,
    creds: Option<Credentials>,
) -> Result<PulledImage, RegistryError> {
    let client = Client::new(reference, opts, creds)?;
    pull_with(&client, &reference.tag_or_digest(), platform, store)
}

/// [`pull`] with a client the caller keeps (to read its request counts, or to pull
/// several platforms over one connection and token).
pub fn pull_with(
    client: &Client,
    tag_or_digest: &str,
    platform: &Platform,
    store: &BlobStore,
) -> Result<PulledImage, RegistryError> {
    let name = client.describe(tag_or_digest);
    let top = client.get_manifest(tag_or_digest)?;
    let top_kind = check_document(&top.bytes, &top.media_type, "the manifest")
        .map_err(|e| invalid(client, &name, e))?;
    let mut warnings = Vec::new();
    // The index entry that led to the manifest, whose platform the config must have.
    let mut entry = None;
    let manifest = if top_kind == ManifestKind::Index {
        let index: ImageIndex =
            parse_json(&top.bytes, "the index").map_err(|e| invalid(client, &name, e))?;
        let selected = select_manifest(&index, platform, &name).map_err(|e| match e {
            ImageError::PlatformNotFound {
                what,
                platform,
                available,
            } => RegistryError::PlatformNotFound {
                reference: what,
                platform,
                available,
            },
            other => invalid(client, &name, other),
        })?;
        warnings.extend(selected.warnings);
        let chosen = selected.descriptor;
        let digest = descriptor_digest(&chosen).map_err(|e| invalid(client, &name, e))?;
        let mut manifest = manifest_by_digest(client, &digest, chosen.size(), store)?;
        // The descriptor's media type is the one that counts; the document (and the
        // Content-Type it came with) must agree with it (CVE-2021-41190).
        manifest.media_type = chosen.media_type().to_string();
        entry = Some(chosen);
        manifest
    } else {
        top
    };
    let manifest_name = client.describe(&manifest.digest.to_string());
    let kind = check_document(&manifest.bytes, &manifest.media_type, "the manifest")
        .map_err(|e| invalid(client, &manifest_name, e))?;
    if kind != ManifestKind::Image {
        return Err(RegistryError::UnsupportedMediaType {
            registry: client.registry().to_string(),
            reference: manifest_name,
            what: "the platform's manifest".into(),
            media_type: manifest.media_type,
        });
    }
    let doc: ImageManifestDoc = parse_json(&manifest.bytes, "the manifest")
        .map_err(|e| invalid(client, &manifest_name, e))?;
    store
        .put_bytes(&manifest.bytes)
        .map_err(|source| store_error(&manifest_name, source))?;

    let (config, config_digest) = fetch_config(client, &doc.config, store)?;
    let head: ConfigHead =
        parse_json(&config, "the image config").map_err(|e| invalid(client, &manifest_name, e))?;
    match &entry {
        // A single-platform image must be the platform asked for, as containerd checks.
        None => head.check_platform(platform, &name)?,
        Some(entry) => {
            head.check_entry(entry)
                .map_err(|message| RegistryError::InvalidResponse {
                    registry: client.registry().to_string(),
                    reference: manifest_name.clone(),
                    message,
                })?
        }
    }
    if head.rootfs.diff_ids.len() != doc.layers.len() {
        return Err(RegistryError::InvalidResponse {
            registry: client.registry().to_string(),
            reference: manifest_name,
            message: format!(
                "the config lists {} diff_ids but the manifest has {} layers",
                head.rootfs.diff_ids.len(),
                doc.layers.len()
            ),
        });
    }

    let mut layers = Vec::with_capacity(doc.layers.len());
    let count = doc.layers.len();
    for (i, (layer, diff_id)) in doc.layers.iter().zip(&head.rootfs.diff_ids).enumerate() {
        if !is_supported_layer(&layer.media_type) {
            return Err(RegistryError::UnsupportedMediaType {
                registry: client.registry().to_string(),
                reference: manifest_name,
                what: format!("layer {}/{count} ({})", i + 1, layer.digest),
                media_type: layer.media_type.clone(),
            });
        }
        ensure_blob(client, layer, store)?;
        let what = format!("layer {}/{count} {}", i + 1, layer.digest);
        store
            .check_layer_compression(&layer.digest, layer.size, &layer.media_type, &what)
            .map_err(|e| invalid(client, &manifest_name, e))?;
        layers.push(PulledLayer {
            digest: layer.digest.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
            diff_id: diff_id.clone(),
        });
    }
    Ok(PulledImage {
        manifest_digest: manifest.digest,
        manifest_media_type: manifest.media_type,
        config,
        config_digest,
        layers,
        warnings,
    })
}

/// A platform manifest named by digest: from the store when an earlier pull kept it
/// (content under a digest never changes), else from the registry.
fn manifest_by_digest(
    client: &Client,
    digest: &Digest,
    size: u64,
    store: &BlobStore,
) -> Result<Manifest, RegistryError> {
    // A damaged copy (read_sized checks size and digest) is fetched again.
    if let Ok(bytes) = store.read_sized(digest, size, MANIFEST_SIZE_LIMIT, "manifest") {
        let media_type = super::media_types::detect_manifest_media_type(None, &bytes);
        return Ok(Manifest {
            bytes,
            media_type,
            digest: digest.clone(),
        });
    }
    client.get_manifest_sized(digest, size)
}

fn fetch_config(
    client: &Client,
    config: &BlobRef,
    store: &BlobStore,
) -> Result<(Vec<u8>, Digest), RegistryError> {
    let name = client.describe(&config.digest.to_string());
    if !is_supported_config(&config.media_type) {
        return Err(RegistryError::UnsupportedMediaType {
            registry: client.registry().to_string(),
            reference: name,
            what: "the image config".into(),
            media_type: config.media_type.clone(),
        });
    }
    if config.size > CONFIG_SIZE_LIMIT {
        return Err(RegistryError::TooLarge {
            registry: client.registry().to_string(),
            reference: name,
            what: "the image config".into(),
            limit: CONFIG_SIZE_LIMIT,
        });
    }
    ensure_blob(client, config, store)?;
    let bytes = store
        .read_bytes(&config.digest)
        .map_err(|source| store_error(&name, source))?;
    Ok((bytes, config.digest.clone()))
}

/// Fetches a blob unless the store already holds it intact (size and digest checked:
/// a layer reused byte for byte may never be unpacked, so nothing later would notice
/// a damaged copy).
fn ensure_blob(client: &Client, blob: &BlobRef, store: &BlobStore) -> Result<(), RegistryError> {
    if store.verifies(&blob.digest, blob.size) {
        return Ok(());
    }
    client.fetch_blob(&blob.digest, blob.size, store)
}

fn invalid(client: &Client, name: &str, e: ImageError) -> RegistryError {
    RegistryError::InvalidResponse {
        registry: client.registry().to_string(),
        reference: name.to_string(),
        message: e.to_string(),
    }
}

fn store_error(name: &str, source: ImageError) -> RegistryError {
    RegistryError::Store {
        reference: name.to_string(),
        source,
    }
}
