//! cosign-compatible keys and signatures, checked against an independent implementation:
//! Python's `cryptography` (OpenSSL) and PyNaCl (libsodium) from PyPI, with the
//! standard library's `hashlib.scrypt`. Python decrypts what `xbake key generate` writes
//! exactly as go-securesystemslib would, writes keys the way cosign writes them for
//! xbake to read, and signs and verifies simple-signing payloads both ways.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn venv() -> Option<PathBuf> {
    let venv = python_venv(
        "xbake-test-signing",
        &["cryptography==50.0.2", "pynacl==1.6.2"],
    );
    if venv.is_none() {
        skip("could not make a venv with cryptography and pynacl from PyPI");
    }
    venv
}

/// Runs `script` with the venv's Python, `args` after it; asserts success.
fn python(venv: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Decrypts a cosign key as go-securesystemslib's `encrypted.Decrypt` does and checks
/// every byte of the format against what cosign writes; prints "ok".
const CHECK_KEY: &str = r#"
import base64, hashlib, json, sys
import nacl.exceptions, nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

key_path, pub_path, password = sys.argv[1], sys.argv[2], sys.argv[3].encode()
text = open(key_path).read()
lines = text.split("\n")
assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", lines[0]
assert lines[-2:] == ["-----END ENCRYPTED SIGSTORE PRIVATE KEY-----", ""], lines[-2:]
body = lines[1:-2]
assert all(len(l) == 64 for l in body[:-1]) and 0 < len(body[-1]) <= 64, body
raw = base64.b64decode("".join(body), validate=True)
data = json.loads(raw)
# Go's json.Marshal: struct field order, no spaces.
assert json.dumps(data, separators=(",", ":")).encode() == raw, raw
assert list(data) == ["kdf", "cipher", "ciphertext"], list(data)
assert list(data["kdf"]) == ["name", "params", "salt"]
assert list(data["kdf"]["params"]) == ["N", "r", "p"]
assert list(data["cipher"]) == ["name", "nonce"]
assert data["kdf"]["name"] == "scrypt" and data["cipher"]["name"] == "nacl/secretbox"
params = data["kdf"]["params"]
assert params == {"N": 65536, "r": 8, "p": 1}, params
salt = base64.b64decode(data["kdf"]["salt"], validate=True)
nonce = base64.b64decode(data["cipher"]["nonce"], validate=True)
assert len(salt) == 32 and len(nonce) == 24
def box(pw):
    k = hashlib.scrypt(pw, salt=salt, n=params["N"], r=params["r"], p=params["p"],
                       dklen=32, maxmem=256 * 1024 * 1024)
    return nacl.secret.SecretBox(k)
ciphertext = base64.b64decode(data["ciphertext"], validate=True)
der = box(password).decrypt(ciphertext, nonce)
try:
    box(password + b"x").decrypt(ciphertext, nonce)
    raise SystemExit("a wrong password opened the box")
except nacl.exceptions.CryptoError:
    pass
private = serialization.load_der_private_key(der, password=None)
assert isinstance(private, ec.EllipticCurvePrivateKey)
assert private.curve.name == "secp256r1", private.curve.name
# PKCS#8 as Go's x509.MarshalPKCS8PrivateKey (and OpenSSL) encode it.
assert private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()) == der
public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
assert open(pub_path, "rb").read() == public, (open(pub_path).read(), public)
print("ok")
"#;

/// Writes a new P-256 key in cosign's encrypted format (Go's JSON, byte for byte) with
/// the PEM type and scrypt N given, plus its unencrypted PKCS#8 and SEC1 forms and its
/// public key: argv = folder, password, pem type, N.
const WRITE_KEYS: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret, nacl.utils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

folder, password, pem_type, n = sys.argv[1], sys.argv[2].encode(), sys.argv[3], int(sys.argv[4])
private = ec.generate_private_key(ec.SECP256R1())
der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
salt, nonce = os.urandom(32), os.urandom(24)
key = hashlib.scrypt(password, salt=salt, n=n, r=8, p=1, dklen=32, maxmem=256 * 1024 * 1024)
sealed = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
b64 = lambda b: base64.b64encode(b).decode()
envelope = json.dumps({"kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1}, "salt": b64(salt)},
                       "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
                       "ciphertext": b64(sealed)}, separators=(",", ":")).encode()
body = b64(envelope)
pem = "-----BEGIN %s-----\n" % pem_type
pem += "".join(body[i:i + 64] + "\n" for i in range(0, len(body), 64))
pem += "-----END %s-----\n" % pem_type
open(os.path.join(folder, "cosign.key"), "w").write(pem)
open(os.path.join(folder, "pkcs8.pem"), "wb").write(private.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
open(os.path.join(folder, "sec1.pem"), "wb").write(private.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption()))
open(os.path.join(folder, "cosign.pub"), "wb").write(private.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
print("ok")
"#;

/// argv = public key file, payload file, base64 signature: exits 0 when the signature
/// verifies (ECDSA P-256, SHA-256, DER), 1 when it does not.
const VERIFY: &str = r#"
import base64, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
public = serialization.load_pem_public_key(open(sys.argv[1], "rb").read())
try:
    public.verify(base64.b64decode(sys.argv[3], validate=True), open(sys.argv[2], "rb").read(),
                  ec.ECDSA(hashes.SHA256()))
    print("valid")
except InvalidSignature:
    print("invalid")
"#;

/// argv = PKCS#8 PEM file, payload file: prints the base64 DER signature.
const SIGN: &str = r#"
import base64, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
private = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
print(base64.b64encode(private.sign(open(sys.argv[2], "rb").read(), ec.ECDSA(hashes.SHA256()))).decode())
"#;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn key_generate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec!["key", "generate"];
    all.extend_from_slice(args);
    xbake(As::Me, dir, &all, env)
}

#[test]
fn python_decrypts_what_xbake_key_generate_writes_as_cosign_would() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let password = "pässword with spaces";
    let out = key_generate(
        dir.path(),
        &["--output", "release"],
        &[("COSIGN_PASSWORD", password)],
    );
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Private key written to release.key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Public key written to release.pub"),
        "{stderr}"
    );
    let key = dir.path().join("release.key");
    let public = dir.path().join("release.pub");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&public), 0o644);
    let checked = python(
        &venv,
        CHECK_KEY,
        &[key.to_str().unwrap(), public.to_str().unwrap(), password],
    );
    assert_eq!(checked.trim(), "ok");

    // An empty password is allowed, as in cosign.
    let out = key_generate(
        dir.path(),
        &["--output", "empty"],
        &[("COSIGN_PASSWORD", "")],
    );
    assert_ok(&out);
    let checked = python(
        &venv,
        CHECK_KEY,
        &[
            dir.path().join("empty.key").to_str().unwrap(),
            dir.path().join("empty.pub").to_str().unwrap(),
            "",
        ],
    );
    assert_eq!(checked.trim(), "ok");
}

#[test]
fn keys_python_writes_in_cosign_s_format_load_in_xbake() {
    let Some(venv) = venv() else { return };
    for (pem_type, n) in [
        ("ENCRYPTED SIGSTORE PRIVATE KEY", "65536"),
        ("ENCRYPTED COSIGN PRIVATE KEY", "32768"),
        ("ENCRYPTED SIGSTORE PRIVATE KEY", "131072"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_str().unwrap();
        assert_eq!(
            python(&venv, WRITE_KEYS, &[folder, "hunter2", pem_type, n]).trim(),
            "ok"
        );
        let expected = std::fs::read_to_string(dir.path().join("cosign.pub")).unwrap();
        // Through the command line...
        let (stdout, _) = xbake_ok(
            dir.path(),
            &["key", "public-key"],
            &[("COSIGN_PASSWORD", "hunter2")],
        );
        assert_eq!(format!("{stdout}\n"), expected, "{pem_type} N={n}");
        for unencrypted in ["pkcs8.pem", "sec1.pem"] {
            let (stdout, _) = xbake_ok(
                dir.path(),
                &["key", "public-key", "--key", unencrypted],
                &[],
            );
            assert_eq!(format!("{stdout}\n"), expected, "{unencrypted}");
        }
        // ...and through the library.
        let pem = std::fs::read_to_string(dir.path().join("cosign.key")).unwrap();
        let key = xbake::sign::load_signing_key(&pem, Some(b"hunter2")).unwrap();
        assert_eq!(key.verifying_key().to_pem(), expected);

        let out = xbake(
            As::Me,
            dir.path(),
            &["key", "public-key"],
            &[("COSIGN_PASSWORD", "hunter3")],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("wrong password"), "{}", text(&out));
    }
}

#[test]
fn signatures_verify_across_xbake_and_python_both_ways() {
    let Some(venv) = venv() else { return };
    use xbake::sign;
    let dir = tempfile::tempdir().unwrap();
    let digest = xbake::digest::Digest::of(b"an image manifest");
    let payload = sign::simple_signing_payload("registry.example/team/app", &digest);
    let payload_file = dir.path().join("payload.json");
    std::fs::write(&payload_file, &payload).unwrap();
    let arg = |p: &Path| p.to_str().unwrap().to_string();

    // xbake signs, Python verifies.
    let pair = sign::generate_key_pair(b"pw").unwrap();
    let public_file = dir.path().join("xbake.pub");
    std::fs::write(&public_file, &pair.public_pem).unwrap();
    let key = sign::load_signing_key(&pair.private_pem, Some(b"pw")).unwrap();
    let signature = sign::sign(&key, &payload);
    let verdict = python(
        &venv,
        VERIFY,
        &[&arg(&public_file), &arg(&payload_file), &signature],
    );
    assert_eq!(verdict.trim(), "valid");
    let other = dir.path().join("other.json");
    std::fs::write(
        &other,
        sign::simple_signing_payload("registry.example/team/app2", &digest),
    )
    .unwrap();
    let verdict = python(
        &venv,
        VERIFY,
        &[&arg(&public_file), &arg(&other), &signature],
    );
    assert_eq!(verdict.trim(), "invalid");

    // Python signs (randomized, as Go does), xbake verifies, through the signature image
    // a registry would hold.
    assert_eq!(
        python(
            &venv,
            WRITE_KEYS,
            &[
                dir.path().to_str().unwrap(),
                "",
                "ENCRYPTED SIGSTORE PRIVATE KEY",
                "65536"
            ]
        )
        .trim(),
        "ok"
    );
    let python_signature = python(
        &venv,
        SIGN,
        &[&arg(&dir.path().join("pkcs8.pem")), &arg(&payload_file)],
    );
    let public =
        sign::load_verifying_key(&std::fs::read_to_string(dir.path().join("cosign.pub")).unwrap())
            .unwrap();
    let image = sign::signature_image(&payload, python_signature.trim());
    let layers = sign::signatures_in(&image.manifest).unwrap();
    let checked = sign::verify_signature_layer(&public, &layers[0], &payload, &digest).unwrap();
    assert_eq!(checked.docker_reference, "registry.example/team/app");
    assert!(sign::verify(&public, &payload, &signature).is_err());
}

#[test]
fn generate_needs_a_password_source_and_keeps_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    // No COSIGN_PASSWORD and standard input is not a terminal (the helper gives
    // /dev/null): refused, naming the variable, and nothing written.
    let out = key_generate(dir.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("COSIGN_PASSWORD"), "{}", text(&out));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    assert_ok(&key_generate(dir.path(), &[], &[("COSIGN_PASSWORD", "a")]));
    let first = std::fs::read(dir.path().join("cosign.key")).unwrap();
    let out = key_generate(dir.path(), &[], &[("COSIGN_PASSWORD", "b")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.path().join("cosign.key")).unwrap(), first);
    // A lone cosign.pub is protected too.
    std::fs::remove_file(dir.path().join("cosign.key")).unwrap();
    let out = key_generate(dir.path(), &[], &[("COSIGN_PASSWORD", "b")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!dir.path().join("cosign.key").exists());

    assert_ok(&key_generate(
        dir.path(),
        &["--force"],
        &[("COSIGN_PASSWORD", "b")],
    ));
    let (public, _) = xbake_ok(
        dir.path(),
        &["key", "public-key"],
        &[("COSIGN_PASSWORD", "b")],
    );
    assert_eq!(
        format!("{public}\n"),
        std::fs::read_to_string(dir.path().join("cosign.pub")).unwrap()
    );
    assert_eq!(mode(&dir.path().join("cosign.key")), 0o600);
    // Nothing else is left in the folder (no temporary files).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".cache-"))
        .collect();
    names.sort();
    assert_eq!(names, ["cosign.key", "cosign.pub"]);
}

/// Drives `xbake key generate` on a pseudo-terminal (Python's pty module): argv =
/// xbake, folder, first answer, second answer. Prints what the terminal showed, then
/// the exit status.
const ON_A_TERMINAL: &str = r#"
import os, pty, sys, time
xbake, folder, first, second = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.chdir(folder)
    env = {k: v for k, v in os.environ.items() if k != "COSIGN_PASSWORD"}
    os.execve(xbake, [xbake, "key", "generate"], env)
shown = b""
def wait_for(text):
    global shown
    deadline = time.time() + 60
    while text not in shown and time.time() < deadline:
        try:
            shown += os.read(fd, 1024)
        except OSError:
            return
wait_for(b"Enter password for private key: ")
os.write(fd, first.encode() + b"\n")
wait_for(b"again: ")
os.write(fd, second.encode() + b"\n")
wait_for(b"\0")
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace") + "\nstatus %d\n" % os.waitstatus_to_exitcode(status))
"#;

#[test]
fn without_cosign_password_a_terminal_is_asked_twice_without_echo() {
    let on_terminal = |folder: &Path, first: &str, second: &str| {
        let out = Command::new("python3")
            .arg("-c")
            .arg(ON_A_TERMINAL)
            .arg(xbake_bin())
            .arg(folder)
            .args([first, second])
            .output();
        match out {
            Ok(out) if out.status.success() => {
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(out) => panic!("{}", text(&out)),
            Err(e) => {
                skip(&format!("no python3 to drive a pseudo-terminal ({e})"));
                None
            }
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(shown) = on_terminal(dir.path(), "tty secret", "tty secret") else {
        return;
    };
    assert!(shown.contains("status 0"), "{shown}");
    assert!(
        shown.contains("Enter password for private key again: "),
        "{shown}"
    );
    assert!(
        !shown.contains("tty secret"),
        "the password was echoed:\n{shown}"
    );
    let (public, _) = xbake_ok(
        dir.path(),
        &["key", "public-key"],
        &[("COSIGN_PASSWORD", "tty secret")],
    );
    assert_eq!(
        format!("{public}\n"),
        std::fs::read_to_string(dir.path().join("cosign.pub")).unwrap()
    );

    let dir = tempfile::tempdir().unwrap();
    let Some(shown) = on_terminal(dir.path(), "one", "two") else {
        return;
    };
    assert!(shown.contains("passwords do not match"), "{shown}");
    assert!(shown.contains("status 2"), "{shown}");
    assert!(!dir.path().join("cosign.key").exists());
}
