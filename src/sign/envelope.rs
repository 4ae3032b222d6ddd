//! go-securesystemslib's `encrypted` package, which cosign uses for its private keys:
//! a 32-byte key from scrypt(password, salt), then NaCl secretbox (XSalsa20-Poly1305,
//! the tag before the ciphertext) under a random 24-byte nonce, stored as the JSON
//!
//! ```text
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"…"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"…"},"ciphertext":"…"}
//! ```
//!
//! (one line, byte strings in standard base64: Go's `json.Marshal` of its `data` struct).
//! `Encrypt` uses the "standard" scrypt strength, N = 2^16 (encrypted.go,
//! `defaultParams = standardParams`), which is what cosign 2 and 3 write; keys from older
//! cosign versions have N = 2^15 ("legacy"). Reading accepts exactly the three parameter
//! sets go-securesystemslib accepts (`CheckParams`), so a tampered file cannot make us
//! spend gigabytes of memory on the key derivation.

use super::SignError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use p256::elliptic_curve::zeroize::Zeroizing;

const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";

/// scrypt's (N, r, p).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub(super) struct ScryptParams {
    #[serde(rename = "N")]
    pub n: u64,
    pub r: u32,
    pub p: u32,
}

/// go-securesystemslib's `Legacy`, `Standard` and `OWASP` strengths.
pub(super) const LEGACY: ScryptParams = ScryptParams {
    n: 1 << 15,
    r: 8,
    p: 1,
};
pub(super) const STANDARD: ScryptParams = ScryptParams {
    n: 1 << 16,
    r: 8,
    p: 1,
};
const OWASP: ScryptParams = ScryptParams {
    n: 1 << 17,
    r: 8,
    p: 1,
};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    name: String,
    nonce: String,
}

/// The envelope JSON for `plaintext` under `password`, with a fresh salt and nonce.
pub(super) fn encrypt(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>, SignError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt).map_err(SignError::Random)?;
    getrandom::fill(&mut nonce).map_err(SignError::Random)?;
    encrypt_with(plaintext, password, STANDARD, &salt, &nonce)
}

/// `encrypt` with the salt, nonce and strength given (tests pin them).
pub(super) fn encrypt_with(
    plaintext: &[u8],
    password: &[u8],
    params: ScryptParams,
    salt: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, SignError> {
    let key = derive_key(password, salt, params)?;
    let ciphertext = XSalsa20Poly1305::new(&(*key).into())
        .encrypt(&(*nonce).into(), plaintext)
        .map_err(|_| SignError::Envelope("secretbox refused to encrypt".into()))?;
    // Field order and spelling of go-securesystemslib's `data`, `scryptKDF`,
    // `scryptParams` and `secretBoxCipher` structs; base64 never needs JSON escaping.
    Ok(format!(
        r#"{{"kdf":{{"name":"{KDF_NAME}","params":{{"N":{},"r":{},"p":{}}},"salt":"{}"}},"cipher":{{"name":"{CIPHER_NAME}","nonce":"{}"}},"ciphertext":"{}"}}"#,
        params.n,
        params.r,
        params.p,
        BASE64.encode(salt),
        BASE64.encode(nonce),
        BASE64.encode(ciphertext),
    )
    .into_bytes())
}

/// The plaintext of an envelope, or `WrongPassword` when the secretbox does not open
/// (a wrong password and a damaged ciphertext look the same, as in cosign).
pub(super) fn decrypt(envelope: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, SignError> {
    let data: Data = serde_json::from_slice(envelope)
        .map_err(|e| SignError::Envelope(format!("not the expected JSON: {e}")))?;
    if data.kdf.name != KDF_NAME {
        return Err(SignError::Envelope(format!(
            "unknown key derivation {:?} (expected {KDF_NAME:?})",
            data.kdf.name
        )));
    }
    if data.cipher.name != CIPHER_NAME {
        return Err(SignError::Envelope(format!(
            "unknown cipher {:?} (expected {CIPHER_NAME:?})",
            data.cipher.name
        )));
    }
    let params = data.kdf.params;
    if ![LEGACY, STANDARD, OWASP].contains(&params) {
        return Err(SignError::Envelope(format!(
            "unsupported scrypt parameters N={}, r={}, p={} (go-securesystemslib accepts \
             N=32768, 65536 or 131072 with r=8, p=1)",
            params.n, params.r, params.p
        )));
    }
    let field = |name: &str, value: &str| {
        BASE64
            .decode(value)
            .map_err(|e| SignError::Envelope(format!("{name} is not base64: {e}")))
    };
    let salt = field("kdf.salt", &data.kdf.salt)?;
    let nonce: [u8; NONCE_LEN] = field("cipher.nonce", &data.cipher.nonce)?
        .try_into()
        .map_err(|n: Vec<u8>| {
            SignError::Envelope(format!("the nonce has {} bytes, not {NONCE_LEN}", n.len()))
        })?;
    let ciphertext = field("ciphertext", &data.ciphertext)?;
    let key = derive_key(password, &salt, params)?;
    XSalsa20Poly1305::new(&(*key).into())
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| SignError::WrongPassword)
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    params: ScryptParams,
) -> Result<Zeroizing<[u8; KEY_LEN]>, SignError> {
    let invalid = || {
        SignError::Envelope(format!(
            "invalid scrypt parameters N={}, r={}, p={}",
            params.n, params.r, params.p
        ))
    };
    if !params.n.is_power_of_two() || params.n < 2 {
        return Err(invalid());
    }
    let log_n = u8::try_from(params.n.trailing_zeros()).map_err(|_| invalid())?;
    let scrypt_params = scrypt::Params::new(log_n, params.r, params.p).map_err(|_| invalid())?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    scrypt::scrypt(password, salt, &scrypt_params, key.as_mut_slice()).map_err(|_| invalid())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_with_its_password_only() {
        let sealed = encrypt(b"secret bytes", b"pw").unwrap();
        assert_eq!(decrypt(&sealed, b"pw").unwrap().as_slice(), b"secret bytes");
        assert!(matches!(
            decrypt(&sealed, b"pW"),
            Err(SignError::WrongPassword)
        ));
        // Fresh salt and nonce every time.
        assert_ne!(sealed, encrypt(b"secret bytes", b"pw").unwrap());
    }

    #[test]
    fn the_json_is_the_one_go_writes() {
        let sealed = encrypt_with(b"x", b"", LEGACY, &[1; 32], &[2; 24]).unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        let salt = BASE64.encode([1u8; 32]);
        let nonce = BASE64.encode([2u8; 24]);
        let prefix = format!(
            r#"{{"kdf":{{"name":"scrypt","params":{{"N":32768,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{nonce}"}},"ciphertext":""#
        );
        assert!(text.starts_with(&prefix), "{text}");
        assert!(text.ends_with("\"}"));
        // Tag (16) + one byte.
        let ct = text[prefix.len()..text.len() - 2].to_string();
        assert_eq!(BASE64.decode(ct).unwrap().len(), 17);
        assert_eq!(decrypt(&sealed, b"").unwrap().as_slice(), b"x");
    }

    #[test]
    fn tampering_is_refused_with_a_reason() {
        let sealed =
            String::from_utf8(encrypt_with(b"x", b"", LEGACY, &[1; 32], &[2; 24]).unwrap())
                .unwrap();
        let cases = [
            sealed.replace(r#""N":32768"#, r#""N":1048576"#),
            sealed.replace(r#""r":8"#, r#""r":1"#),
            sealed.replace(r#""name":"scrypt""#, r#""name":"pbkdf2""#),
            sealed.replace("nacl/secretbox", "aes-gcm"),
            sealed.replace(&BASE64.encode([2u8; 24]), &BASE64.encode([2u8; 12])),
            sealed.replace(r#""ciphertext":""#, r#""ciphertext":"!"#),
            sealed.replace('{', "["),
            sealed.replace(r#","ciphertext""#, r#","extra":1,"ciphertext""#),
        ];
        for case in cases {
            assert!(
                matches!(decrypt(case.as_bytes(), b""), Err(SignError::Envelope(_))),
                "{case}"
            );
        }
        // A flipped ciphertext byte fails the Poly1305 tag: indistinguishable from a
        // wrong password.
        let at = sealed.find(r#""ciphertext":""#).unwrap() + r#""ciphertext":""#.len();
        let mut flipped = sealed.clone();
        let first = if &sealed[at..at + 1] == "A" { "B" } else { "A" };
        flipped.replace_range(at..at + 1, first);
        assert!(matches!(
            decrypt(flipped.as_bytes(), b""),
            Err(SignError::WrongPassword)
        ));
    }
}
