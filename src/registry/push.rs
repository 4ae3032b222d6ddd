//! Pushing an image (an index and its platform manifests, or one manifest) whose blobs
//! are all in a content store. Order matters (distribution spec, "Pushing manifests": a
//! registry may refuse a manifest whose blobs it lacks, and an index whose manifests it
//! lacks): blobs, then each platform manifest by digest, then the top under the tag.
//! Bytes go up exactly as stored, so the registry serves the local digests.

use super::auth::Credentials;
use super::client::Client;
use super::endpoint::RegistryOptions;
use super::error::RegistryError;
use super::manifest_doc::{BlobRef, ImageManifestDoc};
use super::media_types::{ManifestKind, manifest_kind};
use super::reference::Reference;
use crate::digest::Digest;
use crate::image::{BlobStore, ImageError, descriptor_digest, parse_json};
use oci_spec::image::ImageIndex;
use std::collections::HashSet;

/// Pushes the image whose top (index or manifest) is `top_digest` in `store` to `target`
/// (its tag, or its digest when it has no tag). Blobs the registry already has are
/// skipped; with `mount_from` (a repository on the same registry, e.g. the base image's)
/// missing blobs are first offered for a cross-repository mount. Returns the top digest.
pub fn push(
    store: &BlobStore,
    top_media_type: &str,
    top_digest: &Digest,
    target: &Reference,
    opts: &RegistryOptions,
    creds: Option<Credentials>,
    mount_from: Option<&str>,
) -> Result<Digest, RegistryError> {
    let client = Client::new(target, opts, creds)?;
    let tag_or_digest = match &target.tag {
        Some(tag) => tag.clone(),
        None => target.tag_or_digest(),
    };
    push_with(
        &client,
        store,
        top_media_type,
        top_digest,
        &tag_or_digest,
        mount_from,
    )
}

/// [`push`] with a client the caller keeps (to read its request counts).
pub fn push_with(
    client: &Client,
    store: &BlobStore,
    top_media_type: &str,
    top_digest: &Digest,
    tag_or_digest: &str,
    mount_from: Option<&str>,
) -> Result<Digest, RegistryError> {
    let name = client.describe(tag_or_digest);
    push_all(
        client,
        store,
        top_media_type,
        top_digest,
        tag_or_digest,
        mount_from,
    )
    .map_err(|e| e.pushing_to(&name))
}

fn push_all(
    client: &Client,
    store: &BlobStore,
    top_media_type: &str,
    top_digest: &Digest,
    tag_or_digest: &str,
    mount_from: Option<&str>,
) -> Result<Digest, RegistryError> {
    let name = client.describe(tag_or_digest);
    let top = store
        .read_bytes(top_digest)
        .map_err(|source| store_error(&name, source))?;
    // Another repository on this registry to mount from; the target itself is no source.
    let mount_from = mount_from.filter(|from| *from != client.repository());
    let mut pushed = HashSet::new();
    match manifest_kind(top_media_type) {
        Some(ManifestKind::Index) => {
            let index: ImageIndex =
                parse_json(&top, "the index").map_err(|source| store_error(&name, source))?;
            for descriptor in index.manifests() {
                let digest =
                    descriptor_digest(descriptor).map_err(|source| store_error(&name, source))?;
                let media_type = descriptor.media_type().to_string();
                if manifest_kind(&media_type) != Some(ManifestKind::Image) {
                    return Err(unsupported(client, &name, "an index entry", &media_type));
                }
                let bytes = store
                    .read_bytes(&digest)
                    .map_err(|source| store_error(&name, source))?;
                push_blobs_of(client, store, &bytes, &digest, mount_from, &mut pushed)?;
                client.put_manifest(&digest.to_string(), &media_type, &bytes)?;
            }
        }
        Some(ManifestKind::Image) => {
            push_blobs_of(client, store, &top, top_digest, mount_from, &mut pushed)?;
        }
        None => {
            return Err(unsupported(
                client,
                &name,
                "the image to push",
                top_media_type,
            ));
        }
    }
    client.put_manifest(tag_or_digest, top_media_type, &top)?;
    Ok(top_digest.clone())
}

/// The config and layers of one manifest, each once per push.
fn push_blobs_of(
    client: &Client,
    store: &BlobStore,
    manifest: &[u8],
    manifest_digest: &Digest,
    mount_from: Option<&str>,
    pushed: &mut HashSet<Digest>,
) -> Result<(), RegistryError> {
    let name = client.describe(&manifest_digest.to_string());
    let doc: ImageManifestDoc =
        parse_json(manifest, "the manifest").map_err(|source| store_error(&name, source))?;
    for blob in std::iter::once(&doc.config).chain(&doc.layers) {
        if pushed.insert(blob.digest.clone()) {
            push_blob(client, store, blob, mount_from)?;
        }
    }
    Ok(())
}

/// HEAD first (the registry may have it from an earlier push), then a mount, then the
/// bytes.
fn push_blob(
    client: &Client,
    store: &BlobStore,
    blob: &BlobRef,
    mount_from: Option<&str>,
) -> Result<(), RegistryError> {
    if client.blob_exists(&blob.digest)? {
        return Ok(());
    }
    if let Some(from) = mount_from
        && client.mount_blob(&blob.digest, from)?
    {
        return Ok(());
    }
    let name = client.describe(&blob.digest.to_string());
    let file = store
        .open_blob(&blob.digest)
        .map_err(|source| store_error(&name, source))?;
    let path = store.path(&blob.digest);
    let size = file
        .metadata()
        .map_err(|e| store_error(&name, ImageError::io(&path)(e)))?
        .len();
    if size != blob.size {
        return Err(store_error(
            &name,
            ImageError::Invalid {
                what: path.display().to_string(),
                message: format!(
                    "the stored blob has {size} bytes but the manifest says {}",
                    blob.size
                ),
            },
        ));
    }
    client.upload_blob(&blob.digest, size, file)
}

fn unsupported(client: &Client, name: &str, what: &str, media_type: &str) -> RegistryError {
    RegistryError::UnsupportedMediaType {
        registry: client.registry().to_string(),
        reference: name.to_string(),
        what: what.to_string(),
        media_type: media_type.to_string(),
    }
}

fn store_error(name: &str, source: ImageError) -> RegistryError {
    RegistryError::Store {
        reference: name.to_string(),
        source,
    }
}
