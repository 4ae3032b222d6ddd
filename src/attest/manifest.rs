//! Attaching statements to an image, the two ways readers look for them:
//!
//! - BuildKit's attestation manifest: one image manifest per platform whose layers are
//!   the statements (`application/vnd.in-toto+json`, annotated with their predicate
//!   type), listed in the index beside the platform manifests as platform
//!   `unknown/unknown` with `vnd.docker.reference.type: attestation-manifest` and
//!   `vnd.docker.reference.digest` naming the manifest it describes. This is the layout
//!   BuildKit documents (docs/attestations/attestation-storage.md).
//! - OCI 1.1 referrers (`--attest-referrers`): one artifact manifest per statement with
//!   `subject` set to the platform manifest, what a referrers lookup (`oras discover`)
//!   lists.
//!
//! The platform manifests themselves are not touched, so their digests do not move.

use super::{
    ATTESTATION_MANIFEST, IN_TOTO_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION, REFERENCE_DIGEST,
    REFERENCE_TYPE,
};
use crate::digest::Digest;
use crate::image::{BlobStore, ImageError, canonical_json};
use crate::registry::media_types::{OCI_CONFIG, OCI_MANIFEST};
use serde_json::{Value, json};

/// OCI 1.1's empty descriptor: the config of an artifact that needs none.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// One statement to attach.
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// A manifest written into the store, and the blobs it needs (itself included).
pub struct Written {
    /// Its entry for an index (or a referrers list).
    pub descriptor: Value,
    pub digest: Digest,
    pub blobs: Vec<Digest>,
}

fn layer_of(store: &BlobStore, s: &Statement) -> Result<(Value, Digest), ImageError> {
    let (digest, size) = store.put_bytes(&s.bytes)?;
    Ok((
        json!({
            "mediaType": IN_TOTO_MEDIA_TYPE,
            "digest": digest.to_string(),
            "size": size,
            "annotations": {PREDICATE_TYPE_ANNOTATION: s.predicate_type},
        }),
        digest,
    ))
}

/// BuildKit's attestation manifest for the platform manifest `subject` (digest).
pub fn attestation_manifest(
    store: &BlobStore,
    subject: &Digest,
    statements: &[Statement],
) -> Result<Written, ImageError> {
    let mut layers = Vec::new();
    let mut blobs = Vec::new();
    for s in statements {
        let (layer, digest) = layer_of(store, s)?;
        layers.push(layer);
        blobs.push(digest);
    }
    // The statements are stored uncompressed, so each diff_id is its digest.
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": blobs.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    let (config_digest, config_size) =
        store.put_bytes(&canonical_json(&config, "attestation config")?)?;
    blobs.push(config_digest.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
        "layers": layers,
    });
    let (digest, size) = store.put_bytes(&canonical_json(&manifest, "attestation manifest")?)?;
    blobs.push(digest.clone());
    Ok(Written {
        descriptor: json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest.to_string(),
            "size": size,
            "annotations": {REFERENCE_DIGEST: subject.to_string(), REFERENCE_TYPE: ATTESTATION_MANIFEST},
            "platform": {"architecture": "unknown", "os": "unknown"},
        }),
        digest,
        blobs,
    })
}

/// An OCI 1.1 referrer carrying one statement about `subject` (its descriptor: media
/// type, digest, size).
pub fn referrer_manifest(
    store: &BlobStore,
    subject: &Value,
    statement: &Statement,
) -> Result<Written, ImageError> {
    let (layer, layer_digest) = layer_of(store, statement)?;
    let (empty_digest, empty_size) = store.put_bytes(b"{}")?;
    let annotations = json!({PREDICATE_TYPE_ANNOTATION: statement.predicate_type});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": IN_TOTO_MEDIA_TYPE,
        "config": {"mediaType": OCI_EMPTY, "digest": empty_digest.to_string(), "size": empty_size},
        "layers": [layer],
        "subject": {
            "mediaType": subject["mediaType"],
            "digest": subject["digest"],
            "size": subject["size"],
        },
        "annotations": annotations,
    });
    let (digest, size) = store.put_bytes(&canonical_json(&manifest, "attestation manifest")?)?;
    Ok(Written {
        // A referrers list entry: the referrer's artifactType and annotations beside
        // its digest (OCI distribution spec, "Listing Referrers").
        descriptor: json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest.to_string(),
            "size": size,
            "artifactType": IN_TOTO_MEDIA_TYPE,
            "annotations": annotations,
        }),
        blobs: vec![layer_digest, empty_digest, digest.clone()],
        digest,
    })
}

/// Whether an index entry is an attestation manifest (BuildKit's annotation, or the
/// `unknown/unknown` platform it always carries).
pub fn is_attestation_entry(d: &oci_spec::image::Descriptor) -> bool {
    let annotated = d
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REFERENCE_TYPE))
        .is_some_and(|t| t == ATTESTATION_MANIFEST);
    let unknown = d.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" && p.architecture().to_string() == "unknown"
    });
    annotated || unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(t: &str) -> Statement {
        Statement {
            predicate_type: t.into(),
            bytes: format!("{{\"predicateType\":\"{t}\"}}").into_bytes(),
        }
    }

    #[test]
    fn an_attestation_manifest_is_laid_out_as_buildkit_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let subject = Digest::of(b"platform manifest");
        let written = attestation_manifest(
            &store,
            &subject,
            &[
                statement(super::super::SLSA_PROVENANCE_V1),
                statement(super::super::SPDX_DOCUMENT),
            ],
        )
        .unwrap();
        let d = &written.descriptor;
        assert_eq!(
            d["platform"],
            json!({"architecture": "unknown", "os": "unknown"})
        );
        assert_eq!(d["annotations"][REFERENCE_TYPE], ATTESTATION_MANIFEST);
        assert_eq!(d["annotations"][REFERENCE_DIGEST], subject.to_string());
        let manifest: Value =
            serde_json::from_slice(&store.read_bytes(&written.digest).unwrap()).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0]["mediaType"], IN_TOTO_MEDIA_TYPE);
        assert_eq!(
            layers[1]["annotations"][PREDICATE_TYPE_ANNOTATION],
            super::super::SPDX_DOCUMENT
        );
        let config_digest: Digest = manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let config: Value =
            serde_json::from_slice(&store.read_bytes(&config_digest).unwrap()).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], layers[0]["digest"]);
        // Every blob it needs is in the list, and it is the same bytes the second time.
        for b in &written.blobs {
            assert!(store.contains(b), "{b}");
        }
        let again = attestation_manifest(
            &store,
            &subject,
            &[
                statement(super::super::SLSA_PROVENANCE_V1),
                statement(super::super::SPDX_DOCUMENT),
            ],
        )
        .unwrap();
        assert_eq!(again.digest, written.digest);
    }

    #[test]
    fn a_referrer_points_at_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let subject =
            json!({"mediaType": OCI_MANIFEST, "digest": Digest::of(b"m").to_string(), "size": 7});
        let written =
            referrer_manifest(&store, &subject, &statement("https://spdx.dev/Document")).unwrap();
        let manifest: Value =
            serde_json::from_slice(&store.read_bytes(&written.digest).unwrap()).unwrap();
        assert_eq!(manifest["subject"], subject);
        assert_eq!(manifest["artifactType"], IN_TOTO_MEDIA_TYPE);
        assert_eq!(manifest["config"]["size"], 2);
        assert_eq!(written.descriptor["artifactType"], IN_TOTO_MEDIA_TYPE);
    }
}
