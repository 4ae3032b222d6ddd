//! `--sign-key`: the index digest signed as `cosign sign --key` signs it — a
//! simple-signing payload naming the repository and the digest, ECDSA P-256 over it,
//! in a signature image tagged `sha256-HEX.sig` (src/sign/). In a registry the tag's
//! earlier signatures are kept (cosign appends); in a layout the tag sits beside the
//! image's in index.json.

use super::BuildError;
use crate::digest::Digest;
use crate::image::{BlobStore, ImageError, descriptor};
use crate::registry::{Client, RegistryError};
use crate::sign::{
    SignedPayload, SigningKey, sign, signature_image_of, signature_tag, signatures_in,
    simple_signing_payload,
};
use oci_spec::image::MediaType;

use crate::registry::media_types::OCI_MANIFEST;
/// The most an earlier signature's payload may be (cosign's are ~250 bytes).
const PAYLOAD_LIMIT: u64 = 64 << 10;

/// A signature image in the store: its manifest digest and every blob it needs.
pub struct Signed {
    pub tag: String,
    pub manifest: Digest,
    pub manifest_size: u64,
    pub blobs: Vec<Digest>,
    /// Signatures under the tag, this one included.
    pub count: usize,
}

/// Signs `image` for `reference` (the repository, `host/name`), after `earlier`
/// signatures (payload, signature) the tag already holds; a signature that is already
/// there is not added twice (ECDSA here is deterministic, RFC 6979: the same key and
/// payload give the same signature).
pub fn sign_into(
    store: &BlobStore,
    key: &SigningKey,
    reference: &str,
    image: &Digest,
    earlier: &[(Vec<u8>, String)],
) -> Result<Signed, ImageError> {
    let payload = simple_signing_payload(reference, image);
    let signature = sign(key, &payload);
    let mut all: Vec<(Vec<u8>, String)> = earlier.to_vec();
    if !all.iter().any(|(p, s)| *p == payload && *s == signature) {
        all.push((payload, signature));
    }
    let list: Vec<SignedPayload> = all
        .iter()
        .map(|(payload, signature_b64)| SignedPayload {
            payload,
            signature_b64,
        })
        .collect();
    let made = signature_image_of(&list);
    let mut blobs = Vec::new();
    for (payload, _) in &all {
        blobs.push(store.put_bytes(payload)?.0);
    }
    blobs.push(store.put_bytes(&made.config)?.0);
    let (manifest, manifest_size) = store.put_bytes(&made.manifest)?;
    blobs.push(manifest.clone());
    Ok(Signed {
        tag: signature_tag(image),
        manifest,
        manifest_size,
        blobs,
        count: all.len(),
    })
}

/// The signatures (payload, signature) the registry's `sha256-HEX.sig` tag of `image`
/// holds already; none when the tag does not exist.
pub fn earlier_in_registry(
    client: &Client,
    image: &Digest,
) -> Result<Vec<(Vec<u8>, String)>, BuildError> {
    let tag = signature_tag(image);
    let manifest = match client.get_manifest(&tag) {
        Ok(m) => m,
        Err(RegistryError::ManifestUnknown { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let refuse = |message: String| BuildError::Command {
        what: client.describe(&tag),
        message,
    };
    // Rebuilt from (payload, signature) pairs, the tag would lose anything else its
    // layers carry (a keyless signature's certificate, chain, bundle): such a tag is
    // left alone rather than rewritten without them.
    let doc: serde_json::Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| refuse(format!("not a signature manifest: {e}")))?;
    for layer in doc["layers"].as_array().into_iter().flatten() {
        let plain = layer["mediaType"] == crate::sign::SIMPLE_SIGNING_MEDIA_TYPE
            && layer["annotations"]
                .as_object()
                .is_some_and(|a| a.len() == 1 && a.contains_key(crate::sign::SIGNATURE_ANNOTATION));
        if !plain {
            return Err(refuse(
                "it holds signatures that are not plain key signatures (a certificate, bundle \
                 or other layer); xbake would drop those, so it does not sign over them"
                    .into(),
            ));
        }
    }
    let layers = signatures_in(&manifest.bytes).map_err(|e| refuse(e.to_string()))?;
    let scratch = tempfile::tempdir().map_err(|source| BuildError::Io {
        what: "a scratch folder for the earlier signatures".into(),
        source,
    })?;
    let store = BlobStore::open(scratch.path())?;
    let mut out = Vec::new();
    for layer in layers {
        // A cosign payload is a few hundred bytes; a bigger one is not fetched.
        if layer.size > PAYLOAD_LIMIT {
            return Err(refuse(format!(
                "signature payload {} claims {} bytes, more than {PAYLOAD_LIMIT}",
                layer.digest, layer.size
            )));
        }
        client.fetch_blob(&layer.digest, layer.size, &store)?;
        out.push((store.read_bytes(&layer.digest)?, layer.signature_b64));
    }
    Ok(out)
}

/// Pushes the signature image under its tag.
pub fn push(client: &Client, store: &BlobStore, signed: &Signed) -> Result<(), RegistryError> {
    crate::registry::push_with(
        client,
        store,
        OCI_MANIFEST,
        &signed.manifest,
        &signed.tag,
        None,
    )
    .map(|_| ())
}

/// The signature's entry in a layout's index.json: its manifest under its tag.
pub fn layout_entry(signed: &Signed) -> Result<oci_spec::image::Descriptor, ImageError> {
    let mut d = descriptor(
        MediaType::ImageManifest,
        &signed.manifest,
        signed.manifest_size,
    )?;
    d.set_annotations(Some(
        [(
            crate::image::ANNOTATION_REF_NAME.to_string(),
            signed.tag.clone(),
        )]
        .into_iter()
        .collect(),
    ));
    Ok(d)
}
