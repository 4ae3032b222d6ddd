//! cosign's key files (pkg/cosign/keys.go): `GenerateKeyPair` makes an ECDSA P-256 key,
//! marshals it as PKCS#8 (`x509.MarshalPKCS8PrivateKey`), encrypts that with
//! go-securesystemslib's `encrypted.Encrypt` and writes the JSON as a PEM block of type
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign 1 wrote `ENCRYPTED COSIGN PRIVATE KEY`;
//! both are read); the public key is `cryptoutils.MarshalPublicKeyToPEM`, a PKIX
//! `PUBLIC KEY` block.

use super::{SignError, envelope, pem};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::der::asn1::ObjectIdentifier;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use p256::pkcs8::{EncodePublicKey as _, PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use std::fmt;

/// The PEM type cosign 2 and 3 write.
pub const SIGSTORE_PRIVATE_KEY_PEM_TYPE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM type cosign 1 wrote; still read (and re-imported keys keep it) by cosign.
pub const COSIGN_PRIVATE_KEY_PEM_TYPE: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PKCS8_PEM_TYPE: &str = "PRIVATE KEY";
const SEC1_PEM_TYPE: &str = "EC PRIVATE KEY";
const PUBLIC_KEY_PEM_TYPE: &str = "PUBLIC KEY";
const PKCS1_PUBLIC_KEY_PEM_TYPE: &str = "RSA PUBLIC KEY";

const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A new key pair's two files, as `cosign generate-key-pair` writes them.
pub struct KeyPair {
    /// `cosign.key`: the encrypted private key.
    pub private_pem: String,
    /// `cosign.pub`.
    pub public_pem: String,
}

/// An ECDSA P-256 private key. Its bytes are wiped when it is dropped (RustCrypto's
/// `SecretKey` zeroizes itself).
pub struct SigningKey {
    pub(super) inner: p256::ecdsa::SigningKey,
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub(super) inner: p256::ecdsa::VerifyingKey,
}

impl SigningKey {
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: *self.inner.verifying_key(),
        }
    }

    /// This key as cosign writes it: PKCS#8, encrypted under `password`, in an
    /// `ENCRYPTED SIGSTORE PRIVATE KEY` block.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, SignError> {
        let der = self.pkcs8_der()?;
        let envelope = envelope::encrypt(der.as_bytes(), password)?;
        Ok(pem::encode(SIGSTORE_PRIVATE_KEY_PEM_TYPE, &envelope))
    }

    fn pkcs8_der(&self) -> Result<p256::pkcs8::SecretDocument, SignError> {
        p256::SecretKey::from(&self.inner)
            .to_pkcs8_der()
            .map_err(|e| SignError::KeyEncoding {
                what: "private key",
                format: "PKCS#8",
                reason: e.to_string(),
            })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret: the public half identifies the key.
        f.debug_struct("SigningKey")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The `cosign.pub` text: a PKIX SubjectPublicKeyInfo in a `PUBLIC KEY` block.
    pub fn to_pem(&self) -> String {
        pem::encode(PUBLIC_KEY_PEM_TYPE, &self.spki_der())
    }

    fn spki_der(&self) -> Vec<u8> {
        // The SPKI of a P-256 point is a fixed 91-byte structure; encoding one cannot
        // fail, so an empty result would only come from a broken encoder.
        self.inner
            .to_public_key_der()
            .map(|d| d.into_vec())
            .unwrap_or_default()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The SPKI's sha256, as `cosign` and Rekor name keys by their hash.
        write!(
            f,
            "VerifyingKey({})",
            crate::digest::Digest::of(&self.spki_der())
        )
    }
}

/// A new P-256 key pair from the operating system's randomness, the private key
/// encrypted under `password` (empty is allowed, as in cosign: the key is then
/// protected by nothing but the file's mode).
pub fn generate_key_pair(password: &[u8]) -> Result<KeyPair, SignError> {
    let secret = p256::SecretKey::try_generate().map_err(SignError::Random)?;
    let key = SigningKey {
        inner: p256::ecdsa::SigningKey::from(secret),
    };
    Ok(KeyPair {
        private_pem: key.to_encrypted_pem(password)?,
        public_pem: key.verifying_key().to_pem(),
    })
}

/// A private key from its PEM text: cosign's encrypted key (either PEM type; `password`
/// required, an empty one included), or an unencrypted PKCS#8 `PRIVATE KEY` or SEC1
/// `EC PRIVATE KEY` (`password` is then not used). P-256 only.
pub fn load_signing_key(pem: &str, password: Option<&[u8]>) -> Result<SigningKey, SignError> {
    let block = pem::decode(pem)?;
    let secret = match block.label.as_str() {
        SIGSTORE_PRIVATE_KEY_PEM_TYPE | COSIGN_PRIVATE_KEY_PEM_TYPE => {
            let password = password.ok_or(SignError::PasswordRequired)?;
            let der = envelope::decrypt(&block.body, password)?;
            // cosign's LoadPrivateKey parses only PKCS#8 here (x509.ParsePKCS8PrivateKey):
            // an encrypted SEC1 key is refused by cosign too (keys_test.go,
            // "COSIGN PEM EC Type").
            secret_from_pkcs8(&der)?
        }
        PKCS8_PEM_TYPE => secret_from_pkcs8(&block.body)?,
        SEC1_PEM_TYPE => secret_from_sec1(&block.body)?,
        other => {
            return Err(SignError::UnsupportedPrivateKeyType {
                found: other.to_string(),
            });
        }
    };
    Ok(SigningKey {
        inner: p256::ecdsa::SigningKey::from(secret),
    })
}

/// A public key from its PEM text (`cosign.pub`). P-256 only.
pub fn load_verifying_key(pem: &str) -> Result<VerifyingKey, SignError> {
    let block = pem::decode(pem)?;
    match block.label.as_str() {
        PUBLIC_KEY_PEM_TYPE => {}
        PKCS1_PUBLIC_KEY_PEM_TYPE => {
            return Err(SignError::NotP256 {
                found: "an RSA key (PKCS#1)".into(),
            });
        }
        other => {
            return Err(SignError::UnsupportedPublicKeyType {
                found: other.to_string(),
            });
        }
    }
    match p256::PublicKey::from_public_key_der(&block.body) {
        Ok(public) => Ok(VerifyingKey {
            inner: p256::ecdsa::VerifyingKey::from(public),
        }),
        Err(e) => {
            let spki = SubjectPublicKeyInfoRef::try_from(block.body.as_slice()).map_err(|_| {
                SignError::KeyEncoding {
                    what: "public key",
                    format: "PKIX SubjectPublicKeyInfo DER",
                    reason: e.to_string(),
                }
            })?;
            Err(wrong_kind(
                spki.algorithm.oid,
                spki.algorithm.parameters_oid().ok(),
                "public key",
                "PKIX SubjectPublicKeyInfo DER",
                e.to_string(),
            ))
        }
    }
}

fn secret_from_pkcs8(der: &[u8]) -> Result<p256::SecretKey, SignError> {
    p256::SecretKey::from_pkcs8_der(der).map_err(|e| {
        let format = "PKCS#8 DER";
        match PrivateKeyInfoRef::try_from(der) {
            Ok(info) => wrong_kind(
                info.algorithm.oid,
                info.algorithm.parameters_oid().ok(),
                "private key",
                format,
                e.to_string(),
            ),
            Err(_) => SignError::KeyEncoding {
                what: "private key",
                format,
                reason: e.to_string(),
            },
        }
    })
}

fn secret_from_sec1(der: &[u8]) -> Result<p256::SecretKey, SignError> {
    let format = "SEC1 DER";
    let key = sec1::EcPrivateKey::try_from(der).map_err(|e| SignError::KeyEncoding {
        what: "private key",
        format,
        reason: e.to_string(),
    })?;
    if let Some(sec1::EcParameters::NamedCurve(curve)) = key.parameters
        && curve != P256
    {
        return Err(SignError::NotP256 {
            found: format!("an ECDSA key on {}", curve_name(curve)),
        });
    }
    p256::SecretKey::from_slice(key.private_key).map_err(|e| SignError::KeyEncoding {
        what: "private key",
        format,
        reason: e.to_string(),
    })
}

/// The error for a key that parsed as PKCS#8 or SPKI but not as P-256: which kind it is
/// when its algorithm says, else the decoder's reason.
fn wrong_kind(
    algorithm: ObjectIdentifier,
    curve: Option<ObjectIdentifier>,
    what: &'static str,
    format: &'static str,
    reason: String,
) -> SignError {
    // id-ecPublicKey (RFC 5480), rsaEncryption and RSASSA-PSS (RFC 8017), id-Ed25519
    // and id-Ed448 (RFC 8410).
    let found = match algorithm.to_string().as_str() {
        "1.2.840.10045.2.1" => match curve {
            Some(c) if c == P256 => {
                return SignError::KeyEncoding {
                    what,
                    format,
                    reason,
                };
            }
            Some(c) => format!("an ECDSA key on {}", curve_name(c)),
            None => "an ECDSA key with explicit curve parameters".into(),
        },
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => "an RSA key".into(),
        "1.3.101.112" => "an Ed25519 key".into(),
        "1.3.101.113" => "an Ed448 key".into(),
        other => format!("a key of algorithm {other}"),
    };
    SignError::NotP256 { found }
}

fn curve_name(curve: ObjectIdentifier) -> String {
    match curve.to_string().as_str() {
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        other => format!("curve {other}"),
    }
}

#[cfg(test)]
mod tests;
