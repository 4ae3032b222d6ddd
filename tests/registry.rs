//! xbake with a real registry (Debian's docker-registry on loopback): push, pull as a
//! base, credentials, manifest lists from templates; and a registry that lies.

mod common;
mod registry_harness;

use common::*;
use registry_harness::fake_server::{FakeServer, Reply};
use registry_harness::registry_process::RegistryProcess;
use std::path::Path;

fn build_ok(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    xbake_ok(dir, args, env).0
}

fn skopeo_raw(reference: &str) -> Option<Vec<u8>> {
    match std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{reference}"),
        ])
        .output()
    {
        Ok(out) if out.status.success() => Some(out.stdout),
        Ok(out) => panic!("skopeo: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => {
            skip("skopeo is not installed");
            None
        }
    }
}

#[test]
fn push_three_platforms_then_build_from_them_and_fetch_nothing_the_second_time() {
    if !emulation_ready() {
        return;
    }
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "push",
        "from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\nplatforms: [arm, arm64, ppc64le]\n\
         steps:\n  - run: uname -m > /arch\nconfig:\n  cmd: [\"cat\", \"/arch\"]\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let target = format!("{}/demo/app:1.0", registry.addr);
    let digest = build_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "-o",
            "oci:out:1.0",
            "--push",
            &target,
        ],
        &[],
    );
    let (layout_digest, _) = read_layout(&dir.join("out"), "1.0");
    assert_eq!(digest, layout_digest);
    let Some(raw) = skopeo_raw(&target) else {
        return;
    };
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        digest,
        "the registry serves exactly the layout's index"
    );

    // A second recipe FROM the pushed image, for two platforms.
    std::fs::write(
        dir.join("derived.yaml"),
        format!("from: {target}\nsteps:\n  - run: cat /arch > /base-arch\n"),
    )
    .unwrap();
    // A cache of its own: the first cache already holds every blob it pushed.
    let cache = dir.join("pull-cache");
    let cache = cache.to_str().unwrap();
    let first = build_ok(
        dir,
        &[
            "build",
            "derived.yaml",
            "--arch",
            "arm64,ppc64le",
            "--cache-dir",
            cache,
            "-o",
            "oci:derived:1",
        ],
        &[],
    );
    let (_, images) = read_layout(&dir.join("derived"), "1");
    assert_eq!(file_text(&images[0], "base-arch").trim(), "aarch64");
    assert_eq!(file_text(&images[1], "base-arch").trim(), "ppc64le");
    let blob_gets = registry.count_requests("GET", "/blobs/");
    assert!(blob_gets > 0);
    let second = build_ok(
        dir,
        &[
            "build",
            "derived.yaml",
            "--arch",
            "arm64,ppc64le",
            "--cache-dir",
            cache,
            "-o",
            "oci:derived:2",
        ],
        &[],
    );
    assert_eq!(second, first);
    assert_eq!(
        registry.count_requests("GET", "/blobs/"),
        blob_gets,
        "the second build fetched blobs again"
    );

    // A platform the index does not have: the error lists what it has.
    let out = xbake(
        As::Me,
        dir,
        &["build", "derived.yaml", "--arch", "s390x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("linux/s390x") && t.contains("linux/arm/v7, linux/arm64, linux/ppc64le"),
        "{t}"
    );

    // inspect reads the registry's index.
    let out = xbake(As::Me, dir, &["inspect", "--json", &target], &[]);
    assert_ok(&out);
    let summary = json(&out.stdout);
    assert_eq!(summary["digest"], digest.as_str());
    assert_eq!(summary["platforms"].as_array().unwrap().len(), 3);
    assert_eq!(
        summary["platforms"][0]["cmd"],
        serde_json::json!(["cat", "/arch"])
    );
    let out = xbake(As::Me, dir, &["inspect", "--raw", &target], &[]);
    assert_eq!(out.stdout, raw);
}

#[test]
fn login_stores_credentials_a_wrong_password_is_refused_and_push_uses_them() {
    if !emulation_ready() {
        return;
    }
    let Some(registry) = RegistryProcess::start_with_htpasswd("builder", "s3cret") else {
        return;
    };
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "auth",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps: []\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let auth_file = dir.join("auth.json");
    let env = [("REGISTRY_AUTH_FILE", auth_file.to_str().unwrap())];
    let target = format!("{}/private/app:1", registry.addr);

    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "--push", &target],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains(&registry.addr) && t.contains("401"), "{t}");
    // Refused before the build (the push access is checked first), named by the
    // reference given, with the advice for missing credentials.
    assert!(
        t.contains(&format!(
            "{target}: registry {} answered 401",
            registry.addr
        )),
        "{t}"
    );
    assert!(!t.contains("/private/app@sha256:"), "{t}");
    assert!(!t.contains("steps run"), "{t}");

    let out = xbake(
        As::Me,
        dir,
        &["login", &registry.addr, "-u", "builder", "-p", "wrong"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("401")
            && text(&out).contains("rejected the user name \"builder\" or its password")
            && !text(&out).contains("wrong"),
        "{}",
        text(&out)
    );
    assert!(!auth_file.exists(), "nothing saved for bad credentials");

    let out = xbake(
        As::Me,
        dir,
        &["login", &registry.addr, "-u", "builder", "-p", "s3cret"],
        &env,
    );
    assert_ok(&out);
    let saved = json(&std::fs::read(&auth_file).unwrap());
    assert!(saved["auths"][registry.addr.as_str()]["auth"].is_string());
    let digest = build_ok(
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "--push", &target],
        &env,
    );
    assert!(digest.starts_with("sha256:"));

    let out = xbake(As::Me, dir, &["logout", &registry.addr], &env);
    assert_ok(&out);
    let saved = json(&std::fs::read(&auth_file).unwrap());
    assert!(saved["auths"].get(registry.addr.as_str()).is_none());
}

#[test]
fn manifest_create_from_a_template_merges_per_arch_images() {
    if !emulation_ready() {
        return;
    }
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "template",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nsteps:\n  - run: uname -m > /arch\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    for arch in ["arm64", "s390x"] {
        let target = format!("{}/demo/name-{arch}:v1", registry.addr);
        build_ok(
            dir,
            &["build", "recipe.yaml", "--arch", arch, "--push", &target],
            &[],
        );
    }
    let template = format!("{}/demo/name-ARCH:v1", registry.addr);
    let target = format!("{}/demo/name:v1", registry.addr);
    let args = [
        "manifest",
        "create",
        "--platforms",
        "linux/arm64,linux/s390x,linux/ppc64le",
        "--template",
        &template,
        "--target",
        &target,
    ];
    let out = xbake(As::Me, dir, &args, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("name-ppc64le"), "{}", text(&out));
    let mut with_skip = args.to_vec();
    with_skip.push("--ignore-missing");
    let uploads = || registry.count_requests("PUT", "/blobs/uploads/");
    let before = uploads();
    let out = xbake(As::Me, dir, &with_skip, &[]);
    assert_ok(&out);
    assert_eq!(
        uploads(),
        before,
        "blobs were mounted from the per-arch repositories, not uploaded"
    );
    assert!(
        registry.count_requests("POST", "mount=") > 0,
        "{}",
        registry.log()
    );
    let Some(raw) = skopeo_raw(&target) else {
        return;
    };
    let index = json(&raw);
    let platforms: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["arm64", "s390x"]);
    // The merged image is usable as a base.
    std::fs::write(
        dir.join("use.yaml"),
        format!("from: {target}\nsteps:\n  - run: cat /arch > /seen\n"),
    )
    .unwrap();
    build_ok(
        dir,
        &["build", "use.yaml", "--arch", "s390x", "-o", "oci:used"],
        &[],
    );
    let (_, images) = read_layout(&dir.join("used"), "latest");
    assert_eq!(file_text(&images[0], "seen").trim(), "s390x");
}

#[test]
fn local_layouts_merge_into_one_index() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "merge",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nsteps:\n  - run: uname -m > /arch\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    build_ok(
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "-o", "oci:a:1"],
        &[],
    );
    build_ok(
        dir,
        &["build", "recipe.yaml", "--arch", "s390x", "-o", "oci:b:1"],
        &[],
    );
    let both = build_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,s390x",
            "-o",
            "oci:both:1",
        ],
        &[],
    );
    let merged = build_ok(
        dir,
        &[
            "manifest",
            "create",
            "--target",
            "oci:merged:1",
            "oci:a:1",
            "oci:b:1",
        ],
        &[],
    );
    assert_eq!(
        merged, both,
        "merging per-arch builds gives the multi-arch build's index"
    );
    let (_, images) = read_layout(&dir.join("merged"), "1");
    assert_eq!(images.len(), 2);
}

#[test]
fn a_registry_serving_a_blob_that_does_not_match_its_digest_is_rejected_and_nothing_cached() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "liar",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: echo x > /x\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    build_ok(
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "-o", "oci:src:1"],
        &[],
    );
    let (index_digest, images) = read_layout(&dir.join("src"), "1");
    let manifest_digest = images[0].manifest_digest.clone();
    let manifest = json(&blob(&dir.join("src"), &manifest_digest));
    let bad_layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blobs = dir.join("src/blobs/sha256");
    let bad = bad_layer.clone();
    let server = FakeServer::start("127.0.0.1", move |_addr| {
        move |req: &registry_harness::fake_server::Recorded| {
            let path = req.path().to_string();
            if path == "/v2/" {
                return Reply::new(200);
            }
            let digest = path.rsplit('/').next().unwrap_or("").to_string();
            let file = if path.contains("/manifests/") && !digest.starts_with("sha256:") {
                index_digest.clone()
            } else {
                digest.clone()
            };
            let Some(hex) = file.strip_prefix("sha256:") else {
                return Reply::new(404);
            };
            let Ok(mut bytes) = std::fs::read(blobs.join(hex)) else {
                return Reply::new(404);
            };
            if file == bad {
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff; // same size, wrong content
            }
            let content_type = if file == index_digest {
                "application/vnd.oci.image.index.v1+json"
            } else if path.contains("/manifests/") {
                "application/vnd.oci.image.manifest.v1+json"
            } else {
                "application/octet-stream"
            };
            Reply::ok(content_type, &bytes)
        }
    });
    std::fs::write(
        dir.join("from-liar.yaml"),
        format!("from: {}/liar/app:1\nsteps: []\n", server.addr),
    )
    .unwrap();
    let cache = dir.join("liar-cache");
    let out = xbake(
        As::Me,
        dir,
        &[
            "build",
            "from-liar.yaml",
            "--arch",
            "arm64",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-o",
            "oci:never",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&bad_layer[..19]) || t.contains("mismatch"),
        "{t}"
    );
    assert!(
        !cache.join("blobs/sha256").join(&bad_layer[7..]).exists(),
        "the bad blob was cached"
    );
    assert!(!dir.join("never").exists());
}

#[test]
fn a_push_to_a_stopped_registry_fails_before_any_step() {
    if !emulation_ready() {
        return;
    }
    // A port nothing listens on: taken from the kernel, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scratch = Scratch::new();
    // Thirty seconds of steps, if they ran.
    let recipe = scratch.recipe(
        "stopped",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: sleep 30\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let target = format!("127.0.0.1:{port}/app:1");
    let started = std::time::Instant::now();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "--push", &target],
        &[],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("{target}: cannot connect to")), "{t}");
    assert!(!t.contains("RUN sleep 30"), "a step started: {t}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "took {took:?}: {t}"
    );

    // A base in that registry, in a later stage than a slow one: resolved before any
    // step too, and named.
    let text_of_recipe = format!(
        "stages:\n  first:\n    from: rootfs:bases/busybox-arm64.tar.gz\n    steps:\n      - run: sleep 30\nfrom: 127.0.0.1:{port}/base:1\nsteps:\n  - copy: /etc/hostname\n    from: first\n    to: /copied\n"
    );
    let recipe = scratch.recipe("stopped-base", &text_of_recipe, &[]);
    let started = std::time::Instant::now();
    let out = xbake(
        As::Me,
        recipe.parent().unwrap(),
        &["build", "recipe.yaml", "--arch", "arm64", "-o", "oci:out"],
        &[],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("base 127.0.0.1:{port}/base:1")), "{t}");
    assert!(t.contains("cannot connect to"), "{t}");
    assert!(!t.contains("RUN sleep 30"), "a step started: {t}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "took {took:?}: {t}"
    );

    // A registry cache to write there: refused before any step too.
    let recipe = scratch.recipe(
        "stopped-cache",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: sleep 30\n",
        &[],
    );
    let cache_ref = format!("127.0.0.1:{port}/app:cache");
    let started = std::time::Instant::now();
    let out = xbake(
        As::Me,
        recipe.parent().unwrap(),
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--cache-to",
            &format!("type=registry,ref={cache_ref}"),
        ],
        &[],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("{cache_ref}: cannot connect to")),
        "{t}"
    );
    assert!(!t.contains("RUN sleep 30"), "a step started: {t}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "took {took:?}: {t}"
    );
}

const RUNNERS: &str = "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
steps:
  - run: uname -m > /arch
";

#[test]
fn three_runners_push_by_digest_and_a_fourth_merges_what_one_machine_builds() {
    if !emulation_ready() {
        return;
    }
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let scratch = Scratch::new();
    let repo = format!("{}/ci/app", registry.addr);
    // Three runners: separate folders and caches, one of them the unprivileged user.
    let runners = [
        ("arm64", As::Me),
        (
            "s390x",
            if is_root() && tun_ready(As::TestUser) {
                As::TestUser
            } else {
                As::Me
            },
        ),
        ("ppc64le", As::Me),
    ];
    let mut digests = Vec::new();
    for (arch, who) in runners {
        let recipe = scratch.recipe(&format!("runner-{arch}"), RUNNERS, &[]);
        let dir = recipe.parent().unwrap();
        if who == As::TestUser {
            open_up(dir);
        }
        let out = xbake(
            who,
            dir,
            &[
                "build",
                "recipe.yaml",
                "--arch",
                arch,
                "--push-by-digest",
                &repo,
                "--metadata-file",
                "meta.json",
                // Kept by the merge: the index entry's annotation is part of the digest.
                "--annotation",
                "manifest-descriptor:org.example.built-by=runner",
            ],
            &[],
        );
        assert_ok(&out);
        let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            text(&out).contains(&format!("pushed {repo}@{digest}")),
            "{}",
            text(&out)
        );
        let meta = json(&std::fs::read(dir.join("meta.json")).unwrap());
        assert_eq!(meta["containerimage.digest"], digest.as_str(), "{meta}");
        digests.push(digest);
    }
    // Nothing was tagged: the registry's tag list (distribution spec) is empty.
    let listed = {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&registry.addr).unwrap();
        write!(
            conn,
            "GET /v2/ci/app/tags/list HTTP/1.0\r\nHost: {}\r\n\r\n",
            registry.addr
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    };
    let body = listed.split("\r\n\r\n").nth(1).unwrap_or_default();
    let tags = json(body.as_bytes());
    assert!(
        tags["tags"].is_null() || tags["tags"] == serde_json::json!([]),
        "{listed}"
    );
    // The fourth job merges them.
    let merged = format!("{repo}:1");
    let sources: Vec<String> = digests.iter().map(|d| format!("{repo}@{d}")).collect();
    let mut args = vec!["manifest", "create", "--target", merged.as_str()];
    args.extend(sources.iter().map(String::as_str));
    let (merged_digest, _) = xbake_ok(scratch.path(), &args, &[]);
    let Some(raw) = skopeo_raw(&merged) else {
        return;
    };
    let index = json(&raw);
    let platforms: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["arm64", "s390x", "ppc64le"], "{index}");
    for m in index["manifests"].as_array().unwrap() {
        assert_eq!(
            m["annotations"]["org.example.built-by"], "runner",
            "{index}"
        );
    }
    assert_eq!(
        sha256_hex(&raw),
        merged_digest.trim_start_matches("sha256:")
    );
    // One machine building all three gives the same index, digest for digest.
    let recipe = scratch.recipe("one-machine", RUNNERS, &[]);
    let single = build_ok(
        recipe.parent().unwrap(),
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,s390x,ppc64le",
            "--annotation",
            "manifest-descriptor:org.example.built-by=runner",
            "-o",
            "oci:out",
        ],
        &[],
    );
    assert_eq!(merged_digest, single);
    // A tag or digest in the repository is refused.
    let out = xbake(
        As::Me,
        recipe.parent().unwrap(),
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--push-by-digest",
            &merged,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("give a repository without a tag"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_registry_cache_from_one_user_runs_nothing_for_another() {
    if !emulation_ready() {
        return;
    }
    let Some(registry) = RegistryProcess::start() else {
        return;
    };
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "registry-cache",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nsteps:\n  - run: uname -m > /arch\n  - run: echo two > /two\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let cache_ref = format!("{}/cache/app:buildcache", registry.addr);
    let to = format!("type=registry,ref={cache_ref},mode=max");
    let from = format!("type=registry,ref={cache_ref}");
    let (digest, err) = xbake_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,s390x",
            "--cache-dir",
            "c1",
            "-o",
            "oci:one",
            "--cache-to",
            &to,
        ],
        &[],
    );
    assert!(
        err.contains("cache: wrote 4 steps to --cache-to type=registry"),
        "{err}"
    );
    // The cache is an index of cache manifests that the registry serves.
    let Some(raw) = skopeo_raw(&cache_ref) else {
        return;
    };
    let index = json(&raw);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.xbake.cache.config.v1+json"
    );
    // Another user, a fresh cache: no step runs, the same digest.
    let rootless = is_root() && tun_ready(As::TestUser);
    let who = if rootless { As::TestUser } else { As::Me };
    if rootless {
        open_up(dir);
    }
    let out = xbake(
        who,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,s390x",
            "--cache-dir",
            "c2",
            "-o",
            "oci:two",
            "--cache-from",
            &from,
            "--progress",
            "plain",
        ],
        &[],
    );
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    assert_eq!(
        steps_line(&text(&out)),
        "2 platforms: 0 steps run, 4 cached"
    );
    // The registry serving a damaged layer (a byte flipped in its storage): that step's
    // entry is refused, the step runs, the image is the same.
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest =
        json(&skopeo_raw(&format!("{}/cache/app@{manifest_digest}", registry.addr)).unwrap());
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let data = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let (damaged, err) = xbake_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,s390x",
            "--cache-dir",
            "c4",
            "-o",
            "oci:four",
            "--cache-from",
            &from,
            "--progress",
            "plain",
        ],
        &[],
    );
    assert_eq!(damaged, digest);
    // One refusal per step whose layer that was (an identical layer of two platforms
    // is one blob): exactly those steps run.
    let refused = err.matches("is refused (the step is run instead)").count();
    assert!(refused >= 1, "{err}");
    let run = if refused == 1 { "step" } else { "steps" };
    assert_eq!(
        steps_line(&err),
        format!("2 platforms: {refused} {run} run, {} cached", 4 - refused)
    );
    // A cache reference with nothing behind it: said, and the build runs its steps.
    let (_, err) = xbake_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--cache-dir",
            "c3",
            "-o",
            "oci:three",
            "--cache-from",
            &format!("type=registry,ref={}/cache/none:x", registry.addr),
            "--progress",
            "plain",
        ],
        &[],
    );
    assert!(err.contains("is refused (building without it)"), "{err}");
    assert_eq!(steps_line(&err), "1 platform: 2 steps run, 0 cached");
}
