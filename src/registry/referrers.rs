//! Attaching OCI 1.1 referrers (manifests with a `subject`) in a registry: each is
//! pushed by digest; a registry with the referrers API indexes them itself, and for one
//! without (distribution 2.x, Debian's docker-registry among them) the spec's fallback
//! is kept up to date: an image index tagged `sha256-HEX` of the subject listing them.

use super::client::Client;
use super::error::RegistryError;
use super::push::push_with;
use crate::digest::Digest;
use crate::image::BlobStore;
use serde_json::{Value, json};

use super::media_types::{OCI_INDEX, OCI_MANIFEST};

/// The fallback tag of `subject` (distribution spec, "Referrers Tag Schema").
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// Pushes each referrer (digest, its referrers-list descriptor) of `subject`, all in
/// `store`, and updates the fallback tag when the registry has no referrers API.
/// Returns whether the fallback tag was used.
pub fn attach(
    client: &Client,
    store: &BlobStore,
    subject: &Digest,
    referrers: &[(Digest, Value)],
) -> Result<bool, RegistryError> {
    for (digest, _) in referrers {
        push_with(
            client,
            store,
            OCI_MANIFEST,
            digest,
            &digest.to_string(),
            None,
        )?;
    }
    if client.get_referrers(subject)?.is_some() {
        return Ok(false);
    }
    let tag = fallback_tag(subject);
    let mut entries: Vec<Value> = match client.get_manifest(&tag) {
        // Another tool's referrers are kept; a tag that is not an index is not ours to
        // overwrite.
        Ok(existing) => serde_json::from_slice::<Value>(&existing.bytes)
            .ok()
            .and_then(|v| v["manifests"].as_array().cloned())
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: client.registry().to_string(),
                reference: client.describe(&tag),
                message: "the referrers fallback tag holds something other than an image index; not overwriting it".into(),
            })?,
        Err(RegistryError::ManifestUnknown { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    for (digest, descriptor) in referrers {
        let text = digest.to_string();
        if !entries.iter().any(|e| e["digest"] == text.as_str()) {
            entries.push(descriptor.clone());
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let bytes = serde_json::to_vec(&index).unwrap_or_default();
    client.put_manifest(&tag, OCI_INDEX, &bytes)?;
    Ok(true)
}

/// The referrers of `subject` as an index's bytes: the API's answer, else the fallback
/// tag's, else None.
pub fn list(client: &Client, subject: &Digest) -> Result<Option<Vec<u8>>, RegistryError> {
    if let Some(list) = client.get_referrers(subject)? {
        return Ok(Some(list));
    }
    match client.get_manifest(&fallback_tag(subject)) {
        Ok(m) => Ok(Some(m.bytes)),
        Err(RegistryError::ManifestUnknown { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
