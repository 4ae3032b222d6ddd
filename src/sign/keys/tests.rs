use super::*;
use crate::sign::{sign, verify};
use base64::Engine as _;

/// Real cosign keys (tests/data/cosign/README.md says where each comes from).
const COSIGN_V1_KEY: &str = include_str!("../../../tests/data/cosign/cosign-v1-qwerty.key");
const COSIGN_V1_PUB: &str = include_str!("../../../tests/data/cosign/cosign-v1-qwerty.pub");
const COSIGN_EMPTY_PASSWORD_KEY: &str =
    include_str!("../../../tests/data/cosign/cosign-empty-password.key");
const COSIGN_SIGSTORE_HELLO_KEY: &str =
    include_str!("../../../tests/data/cosign/cosign-sigstore-hello.key");
const COSIGN_ENCRYPTED_SEC1_KEY: &str =
    include_str!("../../../tests/data/cosign/cosign-encrypted-sec1.key");

/// Other kinds of keys, made with OpenSSL 3.0 (`openssl genpkey`, `openssl ec`,
/// `openssl pkey -pubout`).
const P384_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDlCX+uRDxIGhpjdvwn
A3oyHV5JuTBEu/fyGORmxLnQh5ZePkVFkiXUROdfEy8Ic1uhZANiAAT6se5vtEcr
AUs098tFfTWk5iNI50wdpgrS4u0DtKol8NUtEcTJIC4tMh150RyRypJ6QS6FtgAg
q67yCmo0wQEVm4Kst8liN4o2cxUH7ESoyLHpWBHxhzR6II2GPDcTXoM=
-----END PRIVATE KEY-----
";
const P384_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MIGkAgEBBDDlCX+uRDxIGhpjdvwnA3oyHV5JuTBEu/fyGORmxLnQh5ZePkVFkiXU
ROdfEy8Ic1ugBwYFK4EEACKhZANiAAT6se5vtEcrAUs098tFfTWk5iNI50wdpgrS
4u0DtKol8NUtEcTJIC4tMh150RyRypJ6QS6FtgAgq67yCmo0wQEVm4Kst8liN4o2
cxUH7ESoyLHpWBHxhzR6II2GPDcTXoM=
-----END EC PRIVATE KEY-----
";
const P384_PUB: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE+rHub7RHKwFLNPfLRX01pOYjSOdMHaYK
0uLtA7SqJfDVLRHEySAuLTIdedEckcqSekEuhbYAIKuu8gpqNMEBFZuCrLfJYjeK
NnMVB+xEqMix6VgR8Yc0eiCNhjw3E16D
-----END PUBLIC KEY-----
";
const ED25519_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIf3pOwExxLv1c18aDdoZldWSeafV4hPxZHjTeh+oFoi
-----END PRIVATE KEY-----
";
const ED25519_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGdqwj08tdxxcR6+cvbsyTVvVEf6Oj+8h+oy/1MCNGKI=
-----END PUBLIC KEY-----
";
const RSA_PUB: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDKGJXcVhPdaheoWz0c2x9/9QS7
4JUsYPz+GX0O18RU+niJBEXTu9mgk7yLMja9MZdBdSLEDXqWB22Xy6vQIOUYIKTo
je7KGxgYg6uA6CWQYZeEqsyoJQa88hEBt05VpnhuWKSErLuN3+wB6bygNrvqoBL/
zg7zWXb2440oMe/q8QIDAQAB
-----END PUBLIC KEY-----
";

fn envelope_json(private_pem: &str) -> serde_json::Value {
    serde_json::from_slice(&pem::decode(private_pem).unwrap().body).unwrap()
}

#[test]
fn a_generated_pair_loads_signs_and_verifies() {
    let pair = generate_key_pair(b"s3cret").unwrap();
    assert!(
        pair.private_pem
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    );
    assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    // Current cosign's strength (go-securesystemslib `Standard`), a 32-byte salt and a
    // 24-byte nonce.
    let json = envelope_json(&pair.private_pem);
    assert_eq!(
        json["kdf"]["params"],
        serde_json::json!({"N": 65536, "r": 8, "p": 1})
    );
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
            .len()
    };
    assert_eq!(b64(&json["kdf"]["salt"]), 32);
    assert_eq!(b64(&json["cipher"]["nonce"]), 24);

    let key = load_signing_key(&pair.private_pem, Some(b"s3cret")).unwrap();
    let public = load_verifying_key(&pair.public_pem).unwrap();
    assert_eq!(key.verifying_key(), public);
    assert_eq!(public.to_pem(), pair.public_pem);
    let signature = sign(&key, b"payload");
    verify(&public, b"payload", &signature).unwrap();
    // Two pairs are two keys.
    let other = generate_key_pair(b"s3cret").unwrap();
    assert_ne!(other.public_pem, pair.public_pem);
    assert!(matches!(
        verify(
            &load_verifying_key(&other.public_pem).unwrap(),
            b"payload",
            &signature
        ),
        Err(SignError::BadSignature)
    ));
}

#[test]
fn the_wrong_password_or_none_is_refused() {
    let pair = generate_key_pair(b"right").unwrap();
    assert!(matches!(
        load_signing_key(&pair.private_pem, Some(b"wrong")),
        Err(SignError::WrongPassword)
    ));
    assert!(matches!(
        load_signing_key(&pair.private_pem, Some(b"")),
        Err(SignError::WrongPassword)
    ));
    assert!(matches!(
        load_signing_key(&pair.private_pem, None),
        Err(SignError::PasswordRequired)
    ));
    // An empty password is a password, as in cosign.
    let empty = generate_key_pair(b"").unwrap();
    load_signing_key(&empty.private_pem, Some(b"")).unwrap();
}

#[test]
fn a_key_cosign_1_generated_decrypts_to_its_published_public_key() {
    let key = load_signing_key(COSIGN_V1_KEY, Some(b"qwerty")).unwrap();
    assert_eq!(key.verifying_key().to_pem(), COSIGN_V1_PUB);
    assert_eq!(
        load_verifying_key(COSIGN_V1_PUB).unwrap(),
        key.verifying_key()
    );
    assert!(matches!(
        load_signing_key(COSIGN_V1_KEY, Some(b"qwertz")),
        Err(SignError::WrongPassword)
    ));
}

#[test]
fn pkcs8_is_encoded_byte_for_byte_as_go_encodes_it() {
    // The plaintext cosign encrypted is Go's x509.MarshalPKCS8PrivateKey; re-encoding
    // the loaded key gives the same bytes, so keys xbake writes are what cosign writes.
    let body = pem::decode(COSIGN_V1_KEY).unwrap().body;
    let go_der = envelope::decrypt(&body, b"qwerty").unwrap();
    let key = load_signing_key(COSIGN_V1_KEY, Some(b"qwerty")).unwrap();
    assert_eq!(key.pkcs8_der().unwrap().as_bytes(), go_der.as_slice());
    assert_eq!(go_der.len(), 138);
}

#[test]
fn a_current_cosign_key_with_an_empty_password_loads() {
    // N = 65536: what cosign 2 and 3 write. Its public key as Python's `cryptography`
    // derives it from the decrypted PKCS#8.
    let key = load_signing_key(COSIGN_EMPTY_PASSWORD_KEY, Some(b"")).unwrap();
    assert_eq!(
        key.verifying_key().to_pem(),
        "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGmsWpZNuu+SUX70n3lVK4JLsaoV7
T+rhea2rQUu29EQiatoLB06QdsmSd+GsQGlQzfcDtsKPzb+B2zLggrWZjg==
-----END PUBLIC KEY-----
"
    );
    assert_eq!(
        envelope_json(COSIGN_EMPTY_PASSWORD_KEY)["kdf"]["params"]["N"],
        65536
    );
    assert!(matches!(
        load_signing_key(COSIGN_EMPTY_PASSWORD_KEY, None),
        Err(SignError::PasswordRequired)
    ));
}

#[test]
fn cosign_s_own_test_keys_load_or_fail_as_in_cosign() {
    let key = load_signing_key(COSIGN_SIGSTORE_HELLO_KEY, Some(b"hello")).unwrap();
    assert!(
        key.verifying_key()
            .to_pem()
            .contains("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7z9gA/tqa9iHt/f9F3ulyVi4lwqU")
    );
    // cosign: "parsing private key: x509: failed to parse private key (use
    // ParseECPrivateKey instead for this key format)".
    match load_signing_key(COSIGN_ENCRYPTED_SEC1_KEY, Some(b"hello")) {
        Err(SignError::KeyEncoding { format, .. }) => assert_eq!(format, "PKCS#8 DER"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unencrypted_pkcs8_and_sec1_keys_load_without_a_password() {
    let key = load_signing_key(COSIGN_V1_KEY, Some(b"qwerty")).unwrap();
    let secret = p256::SecretKey::from(&key.inner);
    let pkcs8 = secret
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string();
    let sec1 = secret
        .to_sec1_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string();
    for text in [&pkcs8, &sec1] {
        for password in [None, Some(&b"ignored"[..])] {
            let loaded = load_signing_key(text, password).unwrap();
            assert_eq!(loaded.verifying_key().to_pem(), COSIGN_V1_PUB, "{text}");
        }
    }
}

#[test]
fn other_kinds_of_keys_are_named_in_the_error() {
    let not_p256 = |result: Result<(), SignError>| match result {
        Err(SignError::NotP256 { found }) => found,
        other => panic!("{other:?}"),
    };
    let private = |pem| load_signing_key(pem, None).map(|_| ());
    let public = |pem| load_verifying_key(pem).map(|_| ());
    assert_eq!(not_p256(private(P384_PKCS8)), "an ECDSA key on P-384");
    assert_eq!(not_p256(private(P384_SEC1)), "an ECDSA key on P-384");
    assert_eq!(not_p256(private(ED25519_PKCS8)), "an Ed25519 key");
    assert_eq!(not_p256(public(P384_PUB)), "an ECDSA key on P-384");
    assert_eq!(not_p256(public(ED25519_PUB)), "an Ed25519 key");
    assert_eq!(not_p256(public(RSA_PUB)), "an RSA key");
    let message = private(P384_PKCS8).unwrap_err().to_string();
    assert!(
        message.starts_with("not an ECDSA P-256 key: an ECDSA key on P-384"),
        "{message}"
    );
}

#[test]
fn the_wrong_kind_of_pem_block_is_refused() {
    assert!(matches!(
        load_signing_key(COSIGN_V1_PUB, None),
        Err(SignError::UnsupportedPrivateKeyType { found }) if found == "PUBLIC KEY"
    ));
    assert!(matches!(
        load_verifying_key(COSIGN_V1_KEY),
        Err(SignError::UnsupportedPublicKeyType { found }) if found == COSIGN_PRIVATE_KEY_PEM_TYPE
    ));
    assert!(matches!(
        load_signing_key(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            None
        ),
        Err(SignError::UnsupportedPrivateKeyType { .. })
    ));
    assert!(matches!(
        load_verifying_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        Err(SignError::KeyEncoding { .. })
    ));
    assert!(matches!(load_signing_key("", None), Err(SignError::Pem(_))));
}

#[test]
fn debug_output_shows_no_secret() {
    let key = load_signing_key(COSIGN_V1_KEY, Some(b"qwerty")).unwrap();
    let secret_hex = hex::encode(p256::SecretKey::from(&key.inner).to_bytes());
    let shown = format!("{key:?}");
    assert!(
        shown.starts_with("SigningKey { public: VerifyingKey(sha256:"),
        "{shown}"
    );
    assert!(!shown.contains(&secret_hex));
}
