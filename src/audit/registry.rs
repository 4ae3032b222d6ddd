//! Reading an image from a registry for `inspect`, `diff`, `verify` and `manifest
//! inspect`: the index (or manifest), every platform manifest and config, and with
//! `with_layers` the layers, all verified, into a scratch OCI layout that the ordinary
//! layout reader then loads.

use super::open::Opened;
use super::{AuditError, load};
use crate::digest::Digest;
use crate::image::reference::LayoutRef;
use crate::image::{BlobStore, ImageError, descriptor, descriptor_digest, layout, parse_json};
use crate::registry::{self, Client, Reference, RegistryError, RegistryOptions};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use std::path::Path;

fn reg(what: &str) -> impl FnOnce(RegistryError) -> AuditError + '_ {
    move |e| AuditError::Invalid {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn img(what: &str) -> impl FnOnce(ImageError) -> AuditError + '_ {
    move |source| AuditError::Image {
        what: what.to_string(),
        source,
    }
}

pub fn open(
    name: &str,
    scratch: &Path,
    opts: &RegistryOptions,
    with_layers: bool,
) -> Result<Opened, AuditError> {
    let reference: Reference = name.parse().map_err(reg(name))?;
    let creds = registry::auth::credentials_for(&reference.registry).map_err(reg(name))?;
    let client = Client::new(&reference, opts, creds).map_err(reg(name))?;
    let dir = scratch.join("registry-image");
    let store = BlobStore::open(&dir.join("store")).map_err(img(name))?;
    let top = client
        .get_manifest(&reference.tag_or_digest())
        .map_err(reg(name))?;
    store.put_bytes(&top.bytes).map_err(img(name))?;
    let mut blobs: Vec<Digest> = vec![top.digest.clone()];
    let platform_manifests: Vec<Descriptor> =
        if top.media_type.contains("index") || top.media_type.contains("list") {
            let index: ImageIndex = parse_json(&top.bytes, "image index").map_err(img(name))?;
            // Attestation manifests describe the images; they are not platforms.
            (index.manifests().iter())
                .filter(|d| !crate::attest::manifest::is_attestation_entry(d))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
    let mut manifests: Vec<(Digest, Vec<u8>)> = Vec::new();
    if platform_manifests.is_empty() {
        manifests.push((top.digest.clone(), top.bytes.clone()));
    }
    for d in &platform_manifests {
        let digest = descriptor_digest(d).map_err(img(name))?;
        let m = client
            .get_manifest(&digest.to_string())
            .map_err(reg(name))?;
        store.put_bytes(&m.bytes).map_err(img(name))?;
        blobs.push(digest.clone());
        manifests.push((digest, m.bytes));
    }
    for (_, bytes) in &manifests {
        let manifest: ImageManifest = parse_json(bytes, "image manifest").map_err(img(name))?;
        let mut wanted = vec![manifest.config().clone()];
        if with_layers {
            wanted.extend(manifest.layers().iter().cloned());
        }
        for d in wanted {
            let digest = descriptor_digest(&d).map_err(img(name))?;
            if !store.verifies(&digest, d.size()) {
                client
                    .fetch_blob(&digest, d.size(), &store)
                    .map_err(reg(name))?;
            }
            blobs.push(digest);
        }
    }
    blobs.sort();
    blobs.dedup();
    // Layers left out (inspect) are simply absent from this scratch layout.
    let top_desc = descriptor(
        MediaType::from(top.media_type.as_str()),
        &top.digest,
        top.bytes.len() as u64,
    )
    .map_err(img(name))?;
    let layout_dir = dir.join("layout");
    layout::write_tag(&layout_dir, &store, &blobs, "ref", &top_desc).map_err(img(name))?;
    let mut image = load(&LayoutRef {
        dir: layout_dir,
        tag: Some("ref".into()),
    })?;
    image.name = reference.to_string();
    Ok(Opened::new(image))
}
