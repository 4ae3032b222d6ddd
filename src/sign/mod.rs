//! Signing images the way cosign does with a key pair (`cosign generate-key-pair`,
//! `cosign sign --key`), so that `cosign verify --key cosign.pub` accepts what xbake signs
//! and xbake reads the keys cosign writes.
//!
//! - `keys`: the key files. `cosign.key` is a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY`
//!   whose body is go-securesystemslib's `encrypted` JSON (scrypt, then NaCl secretbox)
//!   around the PKCS#8 DER of an ECDSA P-256 key; `cosign.pub` is a PKIX `PUBLIC KEY`.
//! - `simple_signing`: the payload cosign signs (containers/image's "simple signing"
//!   JSON naming the repository and the manifest digest), and ECDSA P-256 / SHA-256
//!   signatures over it, ASN.1 DER in standard base64.
//! - `image`: the OCI image cosign pushes as the `sha256-<hex>.sig` tag: one
//!   `application/vnd.dev.cosign.simplesigning.v1+json` layer per signature (the
//!   payload), each annotated with its signature; reading such a manifest back and
//!   checking a layer.
//!
//! Everything here is bytes in, bytes out: no registry I/O and no files. Byte-exactness
//! matters because a signature covers bytes: the payload, the config and the manifest are
//! written as Go's `encoding/json` writes cosign's structs (field order, no spaces, no
//! trailing newline, `<`, `>` and `&` escaped), with known-answer tests from real cosign
//! output.

mod envelope;
mod image;
mod keys;
mod pem;
mod simple_signing;

pub use image::{
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SignatureImage, SignatureLayer, SignedPayload,
    signature_image, signature_image_of, signature_tag, signatures_in, verify_signature_layer,
};
pub use keys::{
    COSIGN_PRIVATE_KEY_PEM_TYPE, KeyPair, SIGSTORE_PRIVATE_KEY_PEM_TYPE, SigningKey, VerifyingKey,
    generate_key_pair, load_signing_key, load_verifying_key,
};
pub use simple_signing::{
    Payload, SIMPLE_SIGNING_TYPE, parse_payload, sign, simple_signing_payload, verify,
};

/// What can go wrong reading keys, signing and checking signatures. The messages name
/// the thing (which key, which layer); the callers add the file or the reference.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("not a PEM file: {0}")]
    Pem(String),
    #[error(
        "a PEM block of type {found:?} is not a private key xbake can sign with (expected \
         ENCRYPTED SIGSTORE PRIVATE KEY or ENCRYPTED COSIGN PRIVATE KEY as cosign writes \
         them, or an unencrypted PRIVATE KEY or EC PRIVATE KEY)"
    )]
    UnsupportedPrivateKeyType { found: String },
    #[error(
        "a PEM block of type {found:?} is not a public key (expected PUBLIC KEY, as in \
         cosign.pub)"
    )]
    UnsupportedPublicKeyType { found: String },
    #[error("the private key is encrypted and no password was given (set COSIGN_PASSWORD)")]
    PasswordRequired,
    #[error("wrong password for the private key (or the key file is damaged)")]
    WrongPassword,
    #[error("the encrypted private key is malformed: {0}")]
    Envelope(String),
    #[error("not an ECDSA P-256 key: {found} (cosign's default, and the only kind xbake uses)")]
    NotP256 { found: String },
    #[error("the {what} is not valid {format}: {reason}")]
    KeyEncoding {
        what: &'static str,
        format: &'static str,
        reason: String,
    },
    #[error("reading the operating system's randomness: {0}")]
    Random(#[source] getrandom::Error),
    #[error("the signature is not standard base64: {0}")]
    SignatureBase64(#[source] base64::DecodeError),
    #[error("the signature is not an ASN.1 DER ECDSA signature")]
    SignatureEncoding,
    #[error("the signature does not match the payload and the public key")]
    BadSignature,
    #[error("the signed payload is not a cosign simple-signing payload: {0}")]
    Payload(String),
    #[error(
        "the signed payload's type is {found:?}, not {:?}",
        simple_signing::SIMPLE_SIGNING_TYPE
    )]
    PayloadType { found: String },
    #[error("the signature signs {signed}, not {expected}")]
    PayloadDigestMismatch {
        signed: crate::digest::Digest,
        expected: crate::digest::Digest,
    },
    #[error("the signature manifest is malformed: {0}")]
    SignatureManifest(String),
    #[error(transparent)]
    PayloadBlob(#[from] crate::digest::DigestError),
}

/// `s` as Go's `encoding/json` writes a string: `"`, `\` and the control characters
/// escaped (`\n`, `\r`, `\t`, `\b`, `\f` by name since Go 1.22, the rest as `\u00XX`),
/// and, because `json.Marshal` escapes for HTML by default, `<`, `>`, `&`, U+2028 and
/// U+2029 as `\u…` too (encoding/json, `appendString`). serde_json leaves those five
/// alone, so a payload it wrote would differ from cosign's for such a string.
fn go_json_string(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::go_json_string;

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        assert_eq!(go_json_string("ghcr.io/a/b"), r#""ghcr.io/a/b""#);
        // Go: json.Marshal("a<b>&\"\\\n\r\t\b\f\x01\u2028\u2029é")
        assert_eq!(
            go_json_string("a<b>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{2028}\u{2029}é"),
            r#""a\u003cb\u003e\u0026\"\\\n\r\t\b\f\u0001\u2028\u2029é""#
        );
    }
}
