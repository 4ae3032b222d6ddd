//! The payload cosign signs for an image, containers/image's "simple signing" format
//! (containers-signature(5)), as sigstore's `payload.Cosign` marshals it
//! (sigstore/sigstore pkg/signature/payload/payload.go): `json.Marshal` of
//! `SimpleContainerImage`, fields in struct order, `optional` null when there are no
//! annotations, no trailing newline. The signature is ECDSA P-256 over SHA-256 of those
//! bytes, ASN.1 DER, in standard base64 (sigstore's ECDSASignerVerifier).

use super::keys::{SigningKey, VerifyingKey};
use super::{SignError, go_json_string};
use crate::digest::Digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};

/// `critical.type` of every cosign image signature (payload.go, `CosignSignatureType`).
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// What a signature payload says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// `critical.identity.docker-reference`: the repository the signer named
    /// (`registry/repo`, as `cosign sign` writes it, or with a tag).
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the manifest (or index) signed.
    pub manifest_digest: Digest,
    /// `optional`: cosign's `-a key=value` annotations; `null` when there are none.
    pub optional: serde_json::Value,
}

/// The exact bytes `cosign sign` signs for `manifest_digest` pushed to
/// `docker_reference` (the repository, e.g. `ghcr.io/org/app`), with no annotations.
pub fn simple_signing_payload(docker_reference: &str, manifest_digest: &Digest) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":{}}},"optional":null}}"#,
        go_json_string(docker_reference),
        go_json_string(&manifest_digest.to_string()),
        go_json_string(SIMPLE_SIGNING_TYPE),
    )
    .into_bytes()
}

/// The signature of `payload` in standard base64, the value of the
/// `dev.cosignproject.cosign/signature` annotation. RustCrypto signs deterministically
/// (RFC 6979), so the same key and payload always give the same signature; cosign's
/// are randomized, and either kind verifies the same way.
pub fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let signature: p256::ecdsa::DerSignature = key.inner.sign(payload);
    BASE64.encode(signature.as_bytes())
}

/// Checks that `signature_b64` (standard base64 of an ASN.1 DER ECDSA signature, as in
/// the annotation) signs `payload` under `key`.
pub fn verify(key: &VerifyingKey, payload: &[u8], signature_b64: &str) -> Result<(), SignError> {
    let der = BASE64
        .decode(signature_b64)
        .map_err(SignError::SignatureBase64)?;
    // Strict DER, as Go's ecdsa.VerifyASN1; a high S is accepted, as Go accepts it.
    let signature =
        p256::ecdsa::Signature::from_der(&der).map_err(|_| SignError::SignatureEncoding)?;
    key.inner
        .verify(payload, &signature)
        .map_err(|_| SignError::BadSignature)
}

#[derive(serde::Deserialize)]
struct Simple {
    critical: Critical,
    #[serde(default)]
    optional: serde_json::Value,
}

// containers/image refuses unknown fields in `critical` (and its parts): a verifier that
// ignored one could accept a claim it does not understand. cosign never writes any.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Reads a signed payload, refusing any whose type is not cosign's.
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, SignError> {
    let simple: Simple =
        serde_json::from_slice(bytes).map_err(|e| SignError::Payload(e.to_string()))?;
    if simple.critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(SignError::PayloadType {
            found: simple.critical.kind,
        });
    }
    let manifest_digest = simple
        .critical
        .image
        .docker_manifest_digest
        .parse::<Digest>()
        .map_err(|e| SignError::Payload(format!("critical.image.docker-manifest-digest: {e}")))?;
    Ok(Payload {
        docker_reference: simple.critical.identity.docker_reference,
        manifest_digest,
        optional: simple.optional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{generate_key_pair, load_signing_key, load_verifying_key};

    /// A signature `cosign sign` made (sigstore-rs, src/crypto/verification_key.rs and
    /// src/cosign/signature_layers.rs, `verify_signature_success`): the public key, the
    /// payload it signed and the signature annotation.
    const COSIGN_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----
";
    const COSIGN_PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#;
    const COSIGN_SIGNATURE: &str = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";

    fn busybox_digest() -> Digest {
        "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"
            .parse()
            .unwrap()
    }

    #[test]
    fn the_payload_is_byte_for_byte_cosign_s_and_its_signature_verifies() {
        let payload = simple_signing_payload("registry-testing.svc.lan/busybox", &busybox_digest());
        assert_eq!(String::from_utf8(payload.clone()).unwrap(), COSIGN_PAYLOAD);
        let key = load_verifying_key(COSIGN_PUBLIC_KEY).unwrap();
        verify(&key, &payload, COSIGN_SIGNATURE).unwrap();
    }

    #[test]
    fn a_tampered_payload_or_signature_fails() {
        let key = load_verifying_key(COSIGN_PUBLIC_KEY).unwrap();
        let other = simple_signing_payload("registry-testing.svc.lan/busybox2", &busybox_digest());
        assert!(matches!(
            verify(&key, &other, COSIGN_SIGNATURE),
            Err(SignError::BadSignature)
        ));
        let der = BASE64.decode(COSIGN_SIGNATURE).unwrap();
        let mut flipped = der.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            verify(&key, COSIGN_PAYLOAD.as_bytes(), &BASE64.encode(&flipped)),
            Err(SignError::BadSignature)
        ));
        // Not DER: the raw r||s form, a truncation.
        let raw = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
        for bad in [BASE64.encode(raw), BASE64.encode(&der[..der.len() - 1])] {
            assert!(matches!(
                verify(&key, COSIGN_PAYLOAD.as_bytes(), &bad),
                Err(SignError::SignatureEncoding)
            ));
        }
        assert!(matches!(
            verify(&key, COSIGN_PAYLOAD.as_bytes(), "not base64!"),
            Err(SignError::SignatureBase64(_))
        ));
    }

    #[test]
    fn a_high_s_signature_verifies_as_in_go() {
        // Go's ecdsa signatures are randomized and half of them have S > n/2; Go and
        // cosign accept them, so must we.
        let pair = generate_key_pair(b"").unwrap();
        let key = load_signing_key(&pair.private_pem, Some(b"")).unwrap();
        let public = load_verifying_key(&pair.public_pem).unwrap();
        let der = BASE64.decode(sign(&key, b"x")).unwrap();
        let signature = p256::ecdsa::Signature::from_der(&der).unwrap();
        let (r, s) = signature.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert_ne!(flipped, signature);
        let flipped = BASE64.encode(flipped.to_der().as_bytes());
        verify(&public, b"x", &flipped).unwrap();
    }

    #[test]
    fn signing_is_deterministic() {
        let pair = generate_key_pair(b"").unwrap();
        let key = load_signing_key(&pair.private_pem, Some(b"")).unwrap();
        assert_eq!(sign(&key, b"payload"), sign(&key, b"payload"));
        assert_ne!(sign(&key, b"payload"), sign(&key, b"payload2"));
    }

    #[test]
    fn payloads_parse_back_and_foreign_ones_are_refused() {
        let parsed = parse_payload(COSIGN_PAYLOAD.as_bytes()).unwrap();
        assert_eq!(
            parsed,
            Payload {
                docker_reference: "registry-testing.svc.lan/busybox".into(),
                manifest_digest: busybox_digest(),
                optional: serde_json::Value::Null,
            }
        );
        // With annotations (sigstore-rs's `verify_signature_with_annotations`).
        let annotated =
            COSIGN_PAYLOAD.replace(r#""optional":null"#, r#""optional":{"creator":"OBS"}"#);
        assert_eq!(
            parse_payload(annotated.as_bytes()).unwrap().optional,
            serde_json::json!({"creator": "OBS"})
        );
        let atomic = COSIGN_PAYLOAD.replace(SIMPLE_SIGNING_TYPE, "atomic container signature");
        assert!(matches!(
            parse_payload(atomic.as_bytes()),
            Err(SignError::PayloadType { found }) if found == "atomic container signature"
        ));
        for broken in [
            COSIGN_PAYLOAD.replace(r#""type""#, r#""extra":1,"type""#),
            COSIGN_PAYLOAD.replace("sha256:f3cf", "sha512:f3cf"),
            COSIGN_PAYLOAD.replace(
                r#""identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"#,
                "",
            ),
            "null".into(),
        ] {
            assert!(
                matches!(parse_payload(broken.as_bytes()), Err(SignError::Payload(_))),
                "{broken}"
            );
        }
    }

    #[test]
    fn odd_references_are_escaped_as_go_escapes_them() {
        let payload = simple_signing_payload("a<b>&\"c", &busybox_digest());
        let text = String::from_utf8(payload.clone()).unwrap();
        assert!(
            text.contains(r#""docker-reference":"a\u003cb\u003e\u0026\"c""#),
            "{text}"
        );
        assert_eq!(
            parse_payload(&payload).unwrap().docker_reference,
            "a<b>&\"c"
        );
    }
}
