//! The registry client against a real registry (Debian's `docker-registry`, the CNCF
//! distribution registry, on a free loopback port) and against tiny fake servers for what
//! the real one will not do: serve corrupt blobs, issue bearer tokens, redirect to storage.

mod registry_harness;

use base64::Engine as _;
use registry_harness::fake_server::{FakeServer, Recorded, Reply};
use registry_harness::registry_process::{RegistryProcess, free_port};
use registry_harness::test_image::{self, OCI_INDEX};
use serde_json::json;
use std::collections::HashMap;
use xbake::digest::Digest;
use xbake::image::BlobStore;
use xbake::platform::Platform;
use xbake::registry::{
    Client, Credentials, Reference, RegistryError, RegistryOptions, pull, pull_with, push,
    push_with,
};

fn new_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    (dir, store)
}

fn reference(addr: &str, rest: &str) -> Reference {
    format!("{addr}/{rest}").parse().unwrap()
}

fn platform(name: &str) -> Platform {
    name.parse().unwrap()
}

fn opts() -> RegistryOptions {
    RegistryOptions::default()
}

/// Files in the store's blob folder (temporary files included).
fn blob_files(store: &BlobStore) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn push_then_pull_every_platform_byte_for_byte_and_a_second_pull_fetches_no_blob() {
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let (_src_dir, src) = new_store();
    let image = test_image::build(&src, "one");
    let target = reference(&registry.addr, "test/hello:1.0");

    let client = Client::new(&target, &opts(), None).unwrap();
    let pushed = push_with(&client, &src, OCI_INDEX, &image.index.digest, "1.0", None).unwrap();
    assert_eq!(pushed, image.index.digest);
    let log = client.requests();
    assert_eq!(
        log.blob_uploads as usize,
        image.unique_blob_count(),
        "{log:?}"
    );
    assert_eq!(image.unique_blob_count(), 5, "the gzip layer is shared");
    assert_eq!(
        log.manifest_puts, 3,
        "two platform manifests and the index: {log:?}"
    );
    assert_eq!(log.mount_attempts, 0);

    // The registry serves exactly the local index (what `skopeo inspect --raw` shows).
    let top = client.get_manifest("1.0").unwrap();
    assert_eq!(top.bytes, image.index.bytes);
    assert_eq!(top.digest, image.index.digest);
    assert_eq!(top.media_type, OCI_INDEX);

    let (_dst_dir, dst) = new_store();
    for expected in &image.platforms {
        let pulled = pull(&target, &platform(expected.platform), &dst, &opts(), None).unwrap();
        assert_eq!(pulled.manifest_digest, expected.manifest.digest);
        assert_eq!(pulled.config, expected.config.bytes);
        assert_eq!(pulled.config_digest, expected.config.digest);
        assert_eq!(pulled.layers.len(), 2);
        for (layer, want) in pulled.layers.iter().zip(&expected.layers) {
            assert_eq!(layer.digest, want.digest);
            assert_eq!(layer.size, want.bytes.len() as u64);
            assert_eq!(dst.read_bytes(&layer.digest).unwrap(), want.bytes);
        }
        assert_eq!(pulled.layers[0].media_type, test_image::LAYER_GZIP);
        // An uncompressed layer's diff_id is its digest.
        assert_eq!(pulled.layers[1].diff_id, pulled.layers[1].digest);
        assert_eq!(
            dst.read_bytes(&pulled.manifest_digest).unwrap(),
            expected.manifest.bytes,
            "the platform manifest is kept in the store"
        );
    }

    // Pull again: only the tag is resolved; no blob and no platform manifest is fetched.
    let blob_gets_logged = registry.count_requests("GET", "/blobs/");
    assert!(
        blob_gets_logged >= 5,
        "the access log should show the first pulls:\n{}",
        registry.log()
    );
    for expected in &image.platforms {
        let again = Client::new(&target, &opts(), None).unwrap();
        let pulled = pull_with(&again, "1.0", &platform(expected.platform), &dst).unwrap();
        assert_eq!(pulled.config, expected.config.bytes);
        let log = again.requests();
        assert_eq!(log.blob_gets, 0, "{log:?}");
        assert_eq!(log.manifest_gets, 1, "{log:?}");
    }
    assert_eq!(registry.count_requests("GET", "/blobs/"), blob_gets_logged);

    // Pushing the same image again uploads nothing: every blob is found by HEAD.
    let again = Client::new(&target, &opts(), None).unwrap();
    push_with(&again, &src, OCI_INDEX, &image.index.digest, "1.0", None).unwrap();
    let log = again.requests();
    assert_eq!(log.blob_uploads, 0, "{log:?}");
    assert_eq!(log.blob_heads, 5, "{log:?}");

    // By digest too, through the public one-call API.
    let by_digest = reference(
        &registry.addr,
        &format!("test/hello@{}", image.index.digest),
    );
    let pulled = pull(&by_digest, &platform("arm64"), &dst, &opts(), None).unwrap();
    assert_eq!(pulled.manifest_digest, image.platforms[1].manifest.digest);
}

#[test]
fn skopeo_sees_exactly_the_pushed_index() {
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    if !std::path::Path::new("/usr/bin/skopeo").exists() {
        registry_harness::skip("no skopeo; apt-get install skopeo");
        return;
    }
    let (_dir, store) = new_store();
    let image = test_image::build(&store, "skopeo");
    let target = reference(&registry.addr, "test/skopeo:v1");
    push(
        &store,
        OCI_INDEX,
        &image.index.digest,
        &target,
        &opts(),
        None,
        None,
    )
    .unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/test/skopeo:v1", registry.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(Digest::of(&out.stdout), image.index.digest);
    assert_eq!(out.stdout, image.index.bytes);
}

#[test]
fn pushing_to_another_repository_mounts_instead_of_uploading() {
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let (_dir, store) = new_store();
    let image = test_image::build(&store, "mount");
    let base = reference(&registry.addr, "test/base:1");
    push(
        &store,
        OCI_INDEX,
        &image.index.digest,
        &base,
        &opts(),
        None,
        None,
    )
    .unwrap();

    let app = reference(&registry.addr, "test/app:1");
    let client = Client::new(&app, &opts(), None).unwrap();
    push_with(
        &client,
        &store,
        OCI_INDEX,
        &image.index.digest,
        "1",
        Some("test/base"),
    )
    .unwrap();
    let log = client.requests();
    assert_eq!(log.blob_uploads, 0, "{log:?}");
    assert_eq!(log.blob_mounts, 5, "{log:?}");
    assert_eq!(log.mount_attempts, 5, "{log:?}");
    assert!(registry.count_requests("POST", "mount=") >= 5);

    let (_dst_dir, dst) = new_store();
    let pulled = pull(&app, &platform("amd64"), &dst, &opts(), None).unwrap();
    assert_eq!(pulled.config, image.platforms[0].config.bytes);

    // A repository that lacks the blobs: the registry starts uploads instead, which are
    // cancelled, and the bytes are uploaded.
    let other = test_image::build(&store, "unrelated");
    let fresh = reference(&registry.addr, "test/fresh:1");
    let client = Client::new(&fresh, &opts(), None).unwrap();
    push_with(
        &client,
        &store,
        OCI_INDEX,
        &other.index.digest,
        "1",
        Some("test/base"),
    )
    .unwrap();
    let log = client.requests();
    assert_eq!(log.blob_mounts, 0, "{log:?}");
    assert_eq!(log.mount_attempts, 5, "{log:?}");
    assert_eq!(log.blob_uploads, 5, "{log:?}");
}

#[test]
fn missing_platform_lists_the_platforms_the_index_has() {
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let (_dir, store) = new_store();
    let image = test_image::build(&store, "platforms");
    let target = reference(&registry.addr, "test/multi:2");
    push(
        &store,
        OCI_INDEX,
        &image.index.digest,
        &target,
        &opts(),
        None,
        None,
    )
    .unwrap();

    let err = pull(&target, &platform("s390x"), &store, &opts(), None).unwrap_err();
    assert!(
        matches!(err, RegistryError::PlatformNotFound { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("test/multi:2")
            && message.contains("linux/s390x")
            && message.contains("it has: linux/amd64, linux/arm64/v8"),
        "{message}"
    );
}

#[test]
fn unknown_manifests_and_blobs_say_what_the_registry_answered() {
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let target = reference(&registry.addr, "test/nothing:here");
    let client = Client::new(&target, &opts(), None).unwrap();
    let err = client.get_manifest("here").unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestUnknown { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&registry.addr)
            && message.contains("test/nothing:here")
            && message.contains("404")
            && message.contains("MANIFEST_UNKNOWN"),
        "{message}"
    );

    let (_dir, store) = new_store();
    let digest = Digest::of(b"absent");
    assert!(!client.blob_exists(&digest).unwrap());
    let err = client.fetch_blob(&digest, 6, &store).unwrap_err();
    assert!(matches!(err, RegistryError::BlobUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("blob unknown"), "{err}");
}

#[test]
fn nothing_listening_is_reported_as_such() {
    let port = free_port();
    let target = reference(&format!("127.0.0.1:{port}"), "a/b:c");
    let (_dir, store) = new_store();
    let err = pull(&target, &platform("amd64"), &store, &opts(), None).unwrap_err();
    assert!(
        matches!(err, RegistryError::ConnectionRefused { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!(
            "is a registry running at http://127.0.0.1:{port}?"
        )),
        "{err}"
    );
}

#[test]
fn registries_off_loopback_get_tls_unless_told_otherwise() {
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    // On Linux, connecting to 0.0.0.0 reaches this machine, but the name is not a
    // loopback one: xbake must speak TLS to it, and the plain-HTTP registry cannot answer.
    let port = registry.addr.rsplit(':').next().unwrap();
    let name = format!("0.0.0.0:{port}");
    let target = reference(&name, "test/tls:1");
    let err = Client::new(&target, &opts(), None)
        .unwrap()
        .get_manifest("1")
        .unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("--tls-verify=false"), "{err}");

    // Plain HTTP when the user says so: the registry answers (the image does not exist).
    let no_verify = RegistryOptions {
        tls_verify: false,
        insecure_registries: Vec::new(),
    };
    let listed = RegistryOptions {
        tls_verify: true,
        insecure_registries: vec![name.clone()],
    };
    for options in [no_verify, listed] {
        let err = Client::new(&target, &options, None)
            .unwrap()
            .get_manifest("1")
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::ManifestUnknown { .. }),
            "{err:?}"
        );
    }
}

#[test]
fn basic_auth_wrong_password_is_a_401_naming_the_registry_and_the_right_one_works() {
    let Some(registry) = RegistryProcess::start_with_htpasswd("xbake", "s3cret") else {
        return;
    };
    let (_dir, store) = new_store();
    let image = test_image::build(&store, "auth");
    let target = reference(&registry.addr, "test/private:1");

    for creds in [None, Some(Credentials::new("xbake", "wrong"))] {
        let err = push(
            &store,
            OCI_INDEX,
            &image.index.digest,
            &target,
            &opts(),
            creds.clone(),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&registry.addr)
                && message.contains("401 Unauthorized")
                && message.contains(&format!("xbake login {}", registry.addr)),
            "{message}"
        );
        assert!(
            !message.contains("wrong"),
            "never print a password: {message}"
        );
        // Credentials refused are told from credentials missing.
        let advice = match &creds {
            None => "if it needs credentials, run `xbake login".to_string(),
            Some(_) => "it rejected the user name \"xbake\" or its password".to_string(),
        };
        assert!(message.contains(&advice), "{message}");
    }

    let ping = |creds: Option<Credentials>| Client::new(&target, &opts(), creds).unwrap().ping();
    let err = ping(Some(Credentials::new("xbake", "wrong"))).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    ping(Some(Credentials::new("xbake", "s3cret"))).unwrap();

    let right = Some(Credentials::new("xbake", "s3cret"));
    push(
        &store,
        OCI_INDEX,
        &image.index.digest,
        &target,
        &opts(),
        right.clone(),
        None,
    )
    .unwrap();
    let (_dst_dir, dst) = new_store();
    let pulled = pull(&target, &platform("arm64"), &dst, &opts(), right).unwrap();
    assert_eq!(pulled.config, image.platforms[1].config.bytes);

    let err = pull(&target, &platform("arm64"), &dst, &opts(), None).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
}

// ---- fake registries ------------------------------------------------------------------

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A Docker schema 2 image for amd64 with one layer whose descriptor says `layer`;
/// returns (manifest bytes, config bytes).
fn docker_image(layer_digest: &Digest, layer_size: usize, layer_type: &str) -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": null},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"uncompressed").to_string()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": layer_digest.to_string(), "size": layer_size}],
    }))
    .unwrap();
    (manifest, config)
}

/// Serves fixed content by path: `(content type, bytes)`.
fn static_registry(routes: HashMap<String, (String, Vec<u8>)>) -> FakeServer {
    FakeServer::start("127.0.0.1", move |_addr| {
        move |request: &Recorded| match routes.get(request.path()) {
            Some((content_type, body)) => Reply::ok(content_type, body),
            None => Reply::new(404).body(br#"{"errors":[{"code":"NOT_FOUND","message":"no"}]}"#),
        }
    })
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_not_stored() {
    let good_layer = b"the real layer bytes".to_vec();
    let evil_layer = b"THE EVIL LAYER BYTES".to_vec(); // same length: only the digest differs
    let layer_digest = Digest::of(&good_layer);
    let (manifest, config) = docker_image(&layer_digest, good_layer.len(), DOCKER_LAYER);
    let manifest_copy = manifest.clone();
    let (short_manifest, _) = docker_image(&layer_digest, good_layer.len() + 5, DOCKER_LAYER);
    let helm = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
    let (helm_manifest, _) = docker_image(&layer_digest, good_layer.len(), helm);
    let routes: HashMap<String, (String, Vec<u8>)> = [
        (
            "/v2/evil/app/manifests/latest",
            (DOCKER_MANIFEST, manifest_copy),
        ),
        (
            "/v2/evil/app/manifests/short",
            (DOCKER_MANIFEST, short_manifest),
        ),
        (
            "/v2/evil/app/manifests/helm",
            (DOCKER_MANIFEST, helm_manifest),
        ),
        (
            &format!("/v2/evil/app/blobs/{}", Digest::of(&config)),
            ("application/octet-stream", config.clone()),
        ),
        (
            &format!("/v2/evil/app/blobs/{layer_digest}"),
            ("application/octet-stream", evil_layer),
        ),
    ]
    .into_iter()
    .map(|(path, (ct, body))| (path.to_string(), (ct.to_string(), body)))
    .collect();
    let server = static_registry(routes);

    let (_dir, store) = new_store();
    let target = reference(&server.addr, "evil/app");
    let err = pull(&target, &platform("amd64"), &store, &opts(), None).unwrap_err();
    let RegistryError::DigestMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("expected a digest mismatch, got {err:?}");
    };
    assert_eq!(expected, &layer_digest);
    assert_eq!(actual, &Digest::of(b"THE EVIL LAYER BYTES"));
    let message = err.to_string();
    assert!(
        message.contains(&server.addr) && message.contains("nothing was stored"),
        "{message}"
    );
    assert!(!store.contains(&layer_digest));
    // Only the verified manifest and config are in the store; no temporary file is left.
    let mut kept = vec![
        Digest::of(&config).hex().to_string(),
        Digest::of(&manifest).hex().to_string(),
    ];
    kept.sort();
    assert_eq!(blob_files(&store), kept);

    // A descriptor whose size disagrees with what is served: a size mismatch.
    let err = pull(
        &reference(&server.addr, "evil/app:short"),
        &platform("amd64"),
        &store,
        &opts(),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err:?}");
    assert!(!store.contains(&layer_digest));

    // A layer type xbake cannot unpack.
    let err = pull(
        &reference(&server.addr, "evil/app:helm"),
        &platform("amd64"),
        &store,
        &opts(),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::UnsupportedMediaType { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(helm), "{err}");
}

#[test]
fn a_manifest_asked_by_digest_must_have_that_digest() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    let claimed = Digest::of(b"something else");
    let routes: HashMap<String, (String, Vec<u8>)> = [(
        format!("/v2/x/manifests/{claimed}"),
        (
            "application/vnd.oci.image.manifest.v1+json".to_string(),
            manifest.to_vec(),
        ),
    )]
    .into_iter()
    .collect();
    let server = static_registry(routes);
    let client = Client::new(&reference(&server.addr, "x"), &opts(), None).unwrap();
    let err = client.get_manifest(&claimed.to_string()).unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&claimed.to_string()), "{err}");
}

const TOKEN: &str = "tok-123";

/// A registry that wants a bearer token from its own `/token` endpoint (which wants
/// basic credentials xbake:pw), serves `content` by path, and answers the paths in
/// `redirects` with a 307 to the given URL (as registries send blob downloads to storage).
fn bearer_registry(
    content: HashMap<String, (String, Vec<u8>)>,
    redirects: HashMap<String, String>,
) -> FakeServer {
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("xbake:pw")
    );
    FakeServer::start("127.0.0.1", move |addr| {
        move |request: &Recorded| {
            let path = request.path();
            if path == "/token" {
                if request.header("authorization") != Some(expected_basic.as_str()) {
                    return Reply::new(401).body(br#"{"details":"bad credentials"}"#);
                }
                let answer = format!(r#"{{"token":"{TOKEN}","expires_in":60}}"#);
                return Reply::ok("application/json", answer.as_bytes());
            }
            if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
                let challenge = format!(
                    r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:team/app:pull""#
                );
                return Reply::new(401).header("WWW-Authenticate", &challenge).body(
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                );
            }
            if let Some(location) = redirects.get(path) {
                return Reply::new(307).header("Location", location);
            }
            match content.get(path) {
                Some((content_type, body)) => Reply::ok(content_type, body),
                None => Reply::new(404),
            }
        }
    })
}

#[test]
fn bearer_tokens_are_fetched_once_and_never_sent_to_storage_redirects() {
    // Gzip bytes, as the layer's media type says (a pull checks the magic number).
    let layer = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"layer bytes").unwrap();
        gz.finish().unwrap()
    };
    let layer_digest = Digest::of(&layer);
    let stored = layer.clone();
    // Another loopback address: another host as far as credentials are concerned.
    let storage = FakeServer::start("127.0.0.2", move |_| {
        move |_: &Recorded| Reply::ok("application/octet-stream", &stored)
    });

    let (manifest, config) = docker_image(&layer_digest, layer.len(), DOCKER_LAYER);
    let manifest_digest = Digest::of(&manifest);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux", "features": ["sse4"]}},
            {"mediaType": DOCKER_MANIFEST, "digest": Digest::of(b"other").to_string(), "size": 5,
             "platform": {"architecture": "ppc64le", "os": "linux"}},
        ],
    }))
    .unwrap();
    let content: HashMap<String, (String, Vec<u8>)> = [
        (
            "/v2/team/app/manifests/latest".to_string(),
            (DOCKER_LIST, list),
        ),
        (
            format!("/v2/team/app/manifests/{manifest_digest}"),
            (DOCKER_MANIFEST, manifest),
        ),
        (
            format!("/v2/team/app/blobs/{}", Digest::of(&config)),
            (DOCKER_CONFIG, config.clone()),
        ),
    ]
    .into_iter()
    .map(|(path, (ct, body))| (path, (ct.to_string(), body)))
    .collect();
    let redirects: HashMap<String, String> = [(
        format!("/v2/team/app/blobs/{layer_digest}"),
        format!(
            "http://{}/storage/{}?signature=x",
            storage.addr,
            layer_digest.hex()
        ),
    )]
    .into_iter()
    .collect();
    let server = bearer_registry(content, redirects);

    let target = reference(&server.addr, "team/app");
    let (_dir, store) = new_store();
    let client = Client::new(&target, &opts(), Some(Credentials::new("xbake", "pw"))).unwrap();
    let pulled = pull_with(&client, "latest", &platform("amd64"), &store).unwrap();
    assert_eq!(pulled.manifest_digest, manifest_digest);
    assert_eq!(pulled.config, config);
    assert_eq!(store.read_bytes(&layer_digest).unwrap(), layer);
    let log = client.requests();
    assert_eq!(log.token_fetches, 1, "{log:?}");
    assert_eq!((log.manifest_gets, log.blob_gets), (2, 2), "{log:?}");

    let requests = server.requests();
    let token_requests: Vec<&Recorded> = requests.iter().filter(|r| r.path() == "/token").collect();
    assert_eq!(token_requests.len(), 1, "{requests:#?}");
    let token_target = &token_requests[0].target;
    assert!(
        token_target.contains("service=fake-registry")
            && token_target.contains("scope=repository%3Ateam%2Fapp%3Apull")
            && token_target.contains("account=xbake"),
        "{token_target}"
    );
    let anonymous = requests
        .iter()
        .filter(|r| r.path() != "/token" && r.header("authorization").is_none())
        .count();
    assert_eq!(
        anonymous, 1,
        "only the first request goes without a token: {requests:#?}"
    );

    let storage_requests = storage.requests();
    assert_eq!(storage_requests.len(), 1, "{storage_requests:#?}");
    assert_eq!(
        storage_requests[0].header("authorization"),
        None,
        "the token must not follow a redirect to another host"
    );

    // Wrong credentials: the token server's refusal is reported as a 401.
    let (_dir2, store2) = new_store();
    let err = pull(
        &target,
        &platform("amd64"),
        &store2,
        &opts(),
        Some(Credentials::new("xbake", "nope")),
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("token server")
            && message.contains(&server.addr)
            && message.contains("401"),
        "{message}"
    );
}

#[test]
fn a_push_with_bearer_auth_needs_one_pull_push_token() {
    let server = FakeServer::start("127.0.0.1", |addr| {
        move |request: &Recorded| {
            let path = request.path();
            if path == "/token" {
                return Reply::ok(
                    "application/json",
                    format!(r#"{{"access_token":"{TOKEN}"}}"#).as_bytes(),
                );
            }
            if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
                let challenge = format!(
                    r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:team/app:pull,push""#
                );
                return Reply::new(401).header("WWW-Authenticate", &challenge);
            }
            match (request.method.as_str(), path) {
                ("HEAD", _) => Reply::new(404),
                ("POST", "/v2/team/app/blobs/uploads/") => Reply::new(202).header(
                    "Location",
                    "/v2/team/app/blobs/uploads/session-1?_state=abc",
                ),
                ("PUT", "/v2/team/app/blobs/uploads/session-1") => Reply::new(201),
                ("PUT", p) if p.starts_with("/v2/team/app/manifests/") => Reply::new(201),
                _ => Reply::new(400),
            }
        }
    });
    let (_dir, store) = new_store();
    let image = test_image::build(&store, "bearer-push");
    let target = reference(&server.addr, "team/app:v2");
    let client = Client::new(&target, &opts(), None).unwrap();
    push_with(&client, &store, OCI_INDEX, &image.index.digest, "v2", None).unwrap();
    let log = client.requests();
    assert_eq!(log.token_fetches, 1, "{log:?}");
    assert_eq!(log.blob_uploads, 5, "{log:?}");

    let requests = server.requests();
    let token = requests.iter().find(|r| r.path() == "/token").unwrap();
    assert!(
        token
            .target
            .contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush"),
        "{}",
        token.target
    );
    // Every blob went up whole, to the session URL with its digest, with the token.
    let uploads: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path().ends_with("/session-1"))
        .collect();
    assert_eq!(uploads.len(), 5);
    for upload in uploads {
        let digest: Digest = upload
            .target
            .split("digest=")
            .nth(1)
            .unwrap()
            .replace("%3A", ":")
            .parse()
            .unwrap();
        assert!(
            upload.target.contains("_state=abc&digest="),
            "{}",
            upload.target
        );
        assert_eq!(upload.body, store.read_bytes(&digest).unwrap());
        assert_eq!(
            upload.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    // Manifests went up byte for byte with their media types; the index last, by tag.
    let manifest_puts: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path().contains("/manifests/"))
        .collect();
    assert_eq!(manifest_puts.len(), 3);
    let top = manifest_puts.last().unwrap();
    assert_eq!(top.path(), "/v2/team/app/manifests/v2");
    assert_eq!(top.body, image.index.bytes);
    assert_eq!(top.header("content-type"), Some(OCI_INDEX));
    assert_eq!(
        manifest_puts[0].path(),
        format!(
            "/v2/team/app/manifests/{}",
            image.platforms[0].manifest.digest
        )
    );
    assert_eq!(manifest_puts[0].body, image.platforms[0].manifest.bytes);
}

/// The structure checks of every image reader apply to pulls: an index entry's size and
/// media type must be the manifest's, the config must be for the entry's platform, and
/// two manifests for the platform give a warning naming the one used.
#[test]
fn pulled_indexes_are_checked_like_layouts() {
    let layer = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"layer bytes").unwrap();
        gz.finish().unwrap()
    };
    let layer_digest = Digest::of(&layer);
    let (manifest, config) = docker_image(&layer_digest, layer.len(), DOCKER_LAYER);
    let manifest_digest = Digest::of(&manifest);
    let list = |entries: Vec<serde_json::Value>| {
        serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}),
        )
        .unwrap()
    };
    let entry = |media_type: &str, size: usize, arch: &str| {
        json!({"mediaType": media_type, "digest": manifest_digest.to_string(), "size": size,
               "platform": {"architecture": arch, "os": "linux"}})
    };
    let n = manifest.len();
    let routes: HashMap<String, (String, Vec<u8>)> = [
        ("short", list(vec![entry(DOCKER_MANIFEST, n - 1, "amd64")])),
        ("long", list(vec![entry(DOCKER_MANIFEST, 1 << 62, "amd64")])),
        ("oci-typed", list(vec![entry(OCI_MANIFEST, n, "amd64")])),
        ("wrong-arch", list(vec![entry(DOCKER_MANIFEST, n, "arm64")])),
        (
            "twice",
            list(vec![
                json!({"mediaType": "application/vnd.example.sbom+json", "digest": Digest::of(b"x").to_string(), "size": 1,
                       "platform": {"architecture": "amd64", "os": "linux"}}),
                entry(DOCKER_MANIFEST, n, "amd64"),
                entry(DOCKER_MANIFEST, n, "amd64"),
            ]),
        ),
    ]
    .into_iter()
    .map(|(tag, body)| (format!("/v2/x/app/manifests/{tag}"), (DOCKER_LIST.to_string(), body)))
    .chain([
        (
            format!("/v2/x/app/manifests/{manifest_digest}"),
            (DOCKER_MANIFEST.to_string(), manifest.clone()),
        ),
        (
            format!("/v2/x/app/blobs/{}", Digest::of(&config)),
            (DOCKER_CONFIG.to_string(), config.clone()),
        ),
        (
            format!("/v2/x/app/blobs/{layer_digest}"),
            ("application/octet-stream".to_string(), layer.clone()),
        ),
    ])
    .collect();
    let server = static_registry(routes);
    let target = reference(&server.addr, "x/app");
    let client = Client::new(&target, &opts(), None).unwrap();
    let pull = |tag: &str, arch: &str| {
        let (_dir, store) = new_store();
        pull_with(&client, tag, &platform(arch), &store).map_err(|e| e.to_string())
    };
    let err = pull("short", "amd64").unwrap_err();
    assert!(
        err.contains(&format!("of {n} bytes, not the expected {}", n - 1)),
        "{err}"
    );
    let err = pull("long", "amd64").unwrap_err();
    assert!(err.contains("declared 4611686018427387904 bytes"), "{err}");
    let err = pull("oci-typed", "amd64").unwrap_err();
    assert!(
        err.contains(&format!(
            "its mediaType is {DOCKER_MANIFEST} but its descriptor says {OCI_MANIFEST}"
        )),
        "{err}"
    );
    let err = pull("wrong-arch", "arm64").unwrap_err();
    assert!(
        err.contains(&format!(
            "the index lists image manifest {manifest_digest} as linux/arm64 but its config says linux/amd64"
        )),
        "{err}"
    );
    let pulled = pull("twice", "amd64").unwrap();
    assert_eq!(pulled.manifest_digest, manifest_digest);
    assert_eq!(pulled.warnings.len(), 1, "{:?}", pulled.warnings);
    assert!(
        pulled.warnings[0].contains("has 2 manifests for linux/amd64")
            && pulled.warnings[0].ends_with(&format!("using {manifest_digest}")),
        "{:?}",
        pulled.warnings
    );
}
