//! The image cosign pushes to hold an image's signatures: tag `sha256-<hex>.sig` in the
//! image's repository, an OCI manifest whose config is an (empty) image config and whose
//! layers are the signed payloads, one per signature, each annotated with its signature.
//!
//! cosign builds it with go-containerregistry (cosign pkg/oci/empty, pkg/oci/mutate,
//! pkg/oci/static): `empty.Image` with the OCI manifest and config media types, then
//! `mutate.Append` of one layer per signature. So the config is `json.Marshal` of
//! go-containerregistry's `v1.ConfigFile` with zero values (`architecture` and `os` empty,
//! `created` the zero time, `config` `{}`), one `diff_id` and one empty history entry per
//! layer; the manifest is `json.Marshal` of `v1.Manifest`. Without
//! `--record-creation-timestamp` (off by default since cosign 2) nothing in either
//! depends on the time, so the same signatures always give the same digests.

use super::{SignError, go_json_string, simple_signing};
use crate::digest::Digest;
use std::collections::BTreeMap;

/// The media type of a signature layer (cosign pkg/types, `SimpleSigningMediaType`).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature (cosign pkg/oci/static).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
use crate::registry::media_types::{
    OCI_CONFIG as OCI_CONFIG_MEDIA_TYPE, OCI_MANIFEST as OCI_MANIFEST_MEDIA_TYPE,
};
/// Go's zero `time.Time` as `time.Time.MarshalJSON` writes it.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// cosign refuses signature images with more layers (pkg/oci/mutate, `maxLayers`).
const MAX_LAYERS: usize = 1000;

/// The tag cosign stores `digest`'s signatures under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// One signature to put in a signature image.
#[derive(Clone, Copy, Debug)]
pub struct SignedPayload<'a> {
    pub payload: &'a [u8],
    pub signature_b64: &'a str,
}

/// A signature image's blobs and manifest, ready to push: the config blob, each payload
/// as a layer blob (the caller has the bytes), then the manifest under the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureImage {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// The layers' digests, in order: one per payload given (each payload's sha256,
    /// which is also its diff_id: the layers are not compressed).
    pub payload_digests: Vec<Digest>,
}

/// The signature image cosign pushes for one signature of `payload`.
pub fn signature_image(payload: &[u8], signature_b64: &str) -> SignatureImage {
    signature_image_of(&[SignedPayload {
        payload,
        signature_b64,
    }])
}

/// The signature image holding `signatures`, in order. cosign adds a new signature
/// after the ones the tag already has, so keeping an image's earlier signatures is
/// passing them first, as [`signatures_in`] returns them (with their payloads).
pub fn signature_image_of(signatures: &[SignedPayload<'_>]) -> SignatureImage {
    let payload_digests: Vec<Digest> = signatures.iter().map(|s| Digest::of(s.payload)).collect();
    let config = config_json(ZERO_TIME, &payload_digests).into_bytes();
    let config_digest = Digest::of(&config);
    let layers: Vec<(&Digest, usize, &str)> = signatures
        .iter()
        .zip(&payload_digests)
        .map(|(s, d)| (d, s.payload.len(), s.signature_b64))
        .collect();
    let manifest = manifest_json((&config_digest, config.len()), &layers).into_bytes();
    SignatureImage {
        manifest_digest: Digest::of(&manifest),
        config,
        config_digest,
        manifest,
        payload_digests,
    }
}

/// go-containerregistry's `v1.ConfigFile` after `mutate.Append` onto `empty.Image`:
/// fields in struct order, `omitempty` ones left out.
fn config_json(created: &str, diff_ids: &[Digest]) -> String {
    let diff_ids: Vec<String> = diff_ids
        .iter()
        .map(|d| go_json_string(&d.to_string()))
        .collect();
    let history = vec![format!(r#"{{"created":"{ZERO_TIME}"}}"#); diff_ids.len()];
    format!(
        r#"{{"architecture":"","created":{},"history":[{}],"os":"","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        go_json_string(created),
        history.join(","),
        diff_ids.join(","),
    )
}

/// go-containerregistry's `v1.Manifest`: schemaVersion, mediaType, config, layers; a
/// descriptor is mediaType, size, digest, then annotations (a Go map: keys sorted).
fn manifest_json(config: (&Digest, usize), layers: &[(&Digest, usize, &str)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(digest, size, signature)| {
            format!(
                r#"{{"mediaType":{},"size":{size},"digest":{},"annotations":{{{}:{}}}}}"#,
                go_json_string(SIMPLE_SIGNING_MEDIA_TYPE),
                go_json_string(&digest.to_string()),
                go_json_string(SIGNATURE_ANNOTATION),
                go_json_string(signature),
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":{},"config":{{"mediaType":{},"size":{},"digest":{}}},"layers":[{}]}}"#,
        go_json_string(OCI_MANIFEST_MEDIA_TYPE),
        go_json_string(OCI_CONFIG_MEDIA_TYPE),
        config.1,
        go_json_string(&config.0.to_string()),
        layers.join(","),
    )
}

/// A signature layer of a signature manifest: the payload blob to fetch and the
/// signature to check it against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    pub digest: Digest,
    pub size: u64,
    pub signature_b64: String,
}

#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    layers: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The signatures a signature manifest (the `.sig` tag's) holds, in layer order: its
/// simple-signing layers that carry a signature annotation (other layers are left out).
/// A listed layer whose digest is not sha256 is an error.
pub fn signatures_in(manifest: &[u8]) -> Result<Vec<SignatureLayer>, SignError> {
    if manifest.len() as u64 > crate::image::MANIFEST_SIZE_LIMIT {
        return Err(SignError::SignatureManifest(format!(
            "{} bytes, over the {}-byte limit for manifests",
            manifest.len(),
            crate::image::MANIFEST_SIZE_LIMIT
        )));
    }
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| SignError::SignatureManifest(e.to_string()))?;
    if manifest.schema_version != 2 {
        return Err(SignError::SignatureManifest(format!(
            "schemaVersion {}, not 2",
            manifest.schema_version
        )));
    }
    if manifest.layers.len() > MAX_LAYERS {
        return Err(SignError::SignatureManifest(format!(
            "{} layers, over cosign's limit of {MAX_LAYERS}",
            manifest.layers.len()
        )));
    }
    let mut found = Vec::new();
    for (i, layer) in manifest.layers.into_iter().enumerate() {
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            continue;
        }
        let Some(signature_b64) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
            continue;
        };
        let digest = layer
            .digest
            .parse::<Digest>()
            .map_err(|e| SignError::SignatureManifest(format!("layer {i}: {e}")))?;
        found.push(SignatureLayer {
            digest,
            size: layer.size,
            signature_b64: signature_b64.clone(),
        });
    }
    Ok(found)
}

/// Checks one signature layer of the signature image of `image_digest`: `payload` (the
/// fetched layer blob) is the blob the layer names, its signature verifies under `key`,
/// it is a cosign payload and it signs `image_digest`. Returns the payload, whose
/// `docker_reference` the caller may show or compare (cosign does not enforce it).
pub fn verify_signature_layer(
    key: &super::VerifyingKey,
    layer: &SignatureLayer,
    payload: &[u8],
    image_digest: &Digest,
) -> Result<simple_signing::Payload, SignError> {
    let what = format!("signature payload {}", layer.digest);
    if payload.len() as u64 != layer.size {
        return Err(crate::digest::DigestError::SizeMismatch {
            what,
            expected: layer.size,
            actual: payload.len() as u64,
        }
        .into());
    }
    layer.digest.verify(&Digest::of(payload), &what)?;
    simple_signing::verify(key, payload, &layer.signature_b64)?;
    let parsed = simple_signing::parse_payload(payload)?;
    if &parsed.manifest_digest != image_digest {
        return Err(SignError::PayloadDigestMismatch {
            signed: parsed.manifest_digest,
            expected: image_digest.clone(),
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature image cosign v1.13.1 pushed to Docker Hub (chihjenhuang/cosign1,
    /// 2023-02-17), from its `--verbose` log published on GitHub: the config blob
    /// (247 bytes, sha256:85ad8e17…; that cosign still stamped `created`) and the
    /// manifest it PUT (558 bytes), which Docker Hub acknowledged as
    /// sha256:7ebe8964… (Docker-Content-Digest).
    const COSIGN_CONFIG: &str = r#"{"architecture":"","created":"2023-02-17T09:25:33.91047962-08:00","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:b671489ededd1a180bd87235bba00fd83354f9c7d13b71d9f8b66a8e52965ebc"]},"config":{}}"#;
    const COSIGN_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":247,"digest":"sha256:85ad8e17d3d7c00664855c638832bd99f32d42542c2d587851410a45a7f60b95"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":252,"digest":"sha256:b671489ededd1a180bd87235bba00fd83354f9c7d13b71d9f8b66a8e52965ebc","annotations":{"dev.cosignproject.cosign/signature":"MEYCIQCPH7NJAIfrB6BZN91dV0o7l/i11muXrvrAh100jDMMhAIhAPsLH0oXb2OPITXRpWBMUd3vHtz5Ks5pql2Hr6t/IJXw"}}]}"#;

    fn digest(s: &str) -> Digest {
        s.parse().unwrap()
    }

    #[test]
    fn config_and_manifest_bytes_are_cosign_s() {
        let payload =
            digest("sha256:b671489ededd1a180bd87235bba00fd83354f9c7d13b71d9f8b66a8e52965ebc");
        let config = config_json(
            "2023-02-17T09:25:33.91047962-08:00",
            std::slice::from_ref(&payload),
        );
        assert_eq!(config, COSIGN_CONFIG);
        assert_eq!(
            Digest::of(config.as_bytes()).to_string(),
            "sha256:85ad8e17d3d7c00664855c638832bd99f32d42542c2d587851410a45a7f60b95"
        );
        let manifest = manifest_json(
            (&Digest::of(config.as_bytes()), config.len()),
            &[(
                &payload,
                252,
                "MEYCIQCPH7NJAIfrB6BZN91dV0o7l/i11muXrvrAh100jDMMhAIhAPsLH0oXb2OPITXRpWBMUd3vHtz5Ks5pql2Hr6t/IJXw",
            )],
        );
        assert_eq!(manifest, COSIGN_MANIFEST);
        assert_eq!(
            Digest::of(manifest.as_bytes()).to_string(),
            "sha256:7ebe8964225fa4619b53aa35416ef0246c037e36ddf81776b21b15e1dda2262b"
        );
    }

    #[test]
    fn a_signature_image_is_deterministic_and_self_consistent() {
        let payload = br#"{"critical":{}}"#;
        let a = signature_image(payload, "c2ln");
        assert_eq!(a, signature_image(payload, "c2ln"));
        assert_ne!(
            a.manifest_digest,
            signature_image(payload, "c2lo").manifest_digest
        );
        assert_eq!(a.payload_digests, vec![Digest::of(payload)]);
        assert_eq!(a.config_digest, Digest::of(&a.config));
        assert_eq!(a.manifest_digest, Digest::of(&a.manifest));
        let config: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(config["created"], ZERO_TIME);
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            Digest::of(payload).to_string()
        );
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], a.config_digest.to_string());
        assert_eq!(manifest["config"]["size"], a.config.len());
        assert_eq!(manifest["layers"][0]["size"], payload.len());
        assert_eq!(
            manifest["layers"][0]["annotations"][SIGNATURE_ANNOTATION],
            "c2ln"
        );
        assert!(!a.manifest.ends_with(b"\n") && !a.config.ends_with(b"\n"));
    }

    #[test]
    fn several_signatures_are_layers_in_order_and_read_back() {
        let image = signature_image_of(&[
            SignedPayload {
                payload: b"one",
                signature_b64: "MQ==",
            },
            SignedPayload {
                payload: b"two",
                signature_b64: "Mg==",
            },
        ]);
        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            Digest::of(b"two").to_string()
        );
        let layers = signatures_in(&image.manifest).unwrap();
        assert_eq!(
            layers,
            vec![
                SignatureLayer {
                    digest: Digest::of(b"one"),
                    size: 3,
                    signature_b64: "MQ==".into()
                },
                SignatureLayer {
                    digest: Digest::of(b"two"),
                    size: 3,
                    signature_b64: "Mg==".into()
                },
            ]
        );
    }

    #[test]
    fn signatures_in_reads_cosign_s_manifest_and_skips_other_layers() {
        let layers = signatures_in(COSIGN_MANIFEST.as_bytes()).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].size, 252);
        let other =
            COSIGN_MANIFEST.replace(SIMPLE_SIGNING_MEDIA_TYPE, "application/vnd.in-toto+json");
        assert!(signatures_in(other.as_bytes()).unwrap().is_empty());
        let unsigned = COSIGN_MANIFEST.replace(SIGNATURE_ANNOTATION, "org.example/other");
        assert!(signatures_in(unsigned.as_bytes()).unwrap().is_empty());
        for broken in [
            COSIGN_MANIFEST.replace("sha256:b671", "sha512:b671"),
            COSIGN_MANIFEST.replace(r#""schemaVersion":2"#, r#""schemaVersion":1"#),
            COSIGN_MANIFEST.replace(r#""size":252"#, r#""size":-1"#),
            "[]".to_string(),
        ] {
            assert!(
                matches!(
                    signatures_in(broken.as_bytes()),
                    Err(SignError::SignatureManifest(_))
                ),
                "{broken}"
            );
        }
    }

    #[test]
    fn the_tag_is_cosign_s() {
        let d = digest("sha256:4c1c50d0ffc614f90b93b07d778028dc765548e823f676fb027f61d281ac380d");
        assert_eq!(
            signature_tag(&d),
            "sha256-4c1c50d0ffc614f90b93b07d778028dc765548e823f676fb027f61d281ac380d.sig"
        );
    }
}

#[cfg(test)]
mod verify_tests {
    use super::*;
    use crate::sign::{
        generate_key_pair, load_signing_key, load_verifying_key, sign, simple_signing_payload,
    };

    #[test]
    fn a_pushed_signature_checks_out_against_its_image_only() {
        let image: Digest = Digest::of(b"the image manifest");
        let pair = generate_key_pair(b"pw").unwrap();
        let key = load_signing_key(&pair.private_pem, Some(b"pw")).unwrap();
        let public = load_verifying_key(&pair.public_pem).unwrap();
        let payload = simple_signing_payload("ghcr.io/org/app", &image);
        let signature = sign(&key, &payload);
        let pushed = signature_image(&payload, &signature);

        let layers = signatures_in(&pushed.manifest).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].digest, pushed.payload_digests[0]);
        let checked = verify_signature_layer(&public, &layers[0], &payload, &image).unwrap();
        assert_eq!(checked.docker_reference, "ghcr.io/org/app");

        // Signed for another image.
        assert!(matches!(
            verify_signature_layer(&public, &layers[0], &payload, &Digest::of(b"other")),
            Err(SignError::PayloadDigestMismatch { .. })
        ));
        // A blob that is not the layer's.
        let mut other = payload.clone();
        other[0] = b' ';
        assert!(matches!(
            verify_signature_layer(&public, &layers[0], &other, &image),
            Err(SignError::PayloadBlob(_))
        ));
        assert!(matches!(
            verify_signature_layer(&public, &layers[0], &payload[1..], &image),
            Err(SignError::PayloadBlob(_))
        ));
        // Another key.
        let stranger = load_verifying_key(&generate_key_pair(b"").unwrap().public_pem).unwrap();
        assert!(matches!(
            verify_signature_layer(&stranger, &layers[0], &payload, &image),
            Err(SignError::BadSignature)
        ));
    }
}
