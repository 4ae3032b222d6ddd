//! Provenance, SBOMs and signatures (issue 14): statements valid under the in-toto,
//! SLSA v1 and SPDX 2.3 schemas (PyPI's in-toto-attestation and spdx-tools), attached in
//! BuildKit's layout and as OCI 1.1 referrers, byte-identical across builds, leaving the
//! platform manifests alone; a cosign signature an independent implementation (Python's
//! `cryptography`) accepts; `xbake verify REF` from the provenance alone.

mod common;
mod registry_harness;

use common::*;
use registry_harness::registry_process::RegistryProcess;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECIPE: &str = "from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
platforms: [arm/v7, arm64, ppc64le]
args: {GREETING: hello}
steps:
  - copy: files/hello.txt
    to: /hello.txt
  - run: echo \"${GREETING} from $(uname -m)\" > /greeting
";

fn project(scratch: &Scratch) -> PathBuf {
    let recipe = scratch.recipe("supply", RECIPE, &[("files/hello.txt", "hello, auditor\n")]);
    recipe.parent().unwrap().to_path_buf()
}

/// The validators, in a virtualenv outside the clone.
fn validators() -> Option<PathBuf> {
    let venv = python_venv(
        "xbake-test-attestations",
        &[
            "in-toto-attestation==0.9.3",
            "spdx-tools==0.8.5",
            "cryptography==50.0.2",
        ],
    );
    if venv.is_none() {
        skip(
            "no virtualenv with in-toto-attestation, spdx-tools and cryptography (python3-venv, PyPI)",
        );
    }
    venv
}

fn helper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/helpers")
        .join(name)
}

/// Every statement `attest inspect --json` finds on `image`.
fn attestations(dir: &Path, image: &str) -> Vec<Value> {
    let (out, _) = xbake_ok(dir, &["attest", "inspect", image, "--json"], &[]);
    json(out.as_bytes()).as_array().unwrap().clone()
}

/// Runs the schema validators over every statement; panics naming the invalid one.
fn assert_valid_statements(venv: &Path, dir: &Path, found: &[Value]) {
    let mut files = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let path = dir.join(format!("statement-{i}.json"));
        std::fs::write(&path, serde_json::to_vec(&f["statement"]).unwrap()).unwrap();
        files.push(path);
    }
    let out = Command::new(venv.join("bin/python"))
        .arg(helper("check_attestations.py"))
        .args(&files)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(said.matches("valid: ").count(), files.len(), "{said}");
}

/// What the registry tests need: emulation, a registry on loopback, a scratch folder;
/// None (after saying why) when one is missing.
fn registry_and_scratch() -> Option<(RegistryProcess, Scratch)> {
    if !emulation_ready() {
        return None;
    }
    Some((RegistryProcess::start()?, Scratch::new()))
}

fn key_pair(dir: &Path) {
    xbake_ok(
        dir,
        &["key", "generate"],
        &[("COSIGN_PASSWORD", "correct horse")],
    );
}

#[test]
fn a_pushed_image_carries_checked_provenance_sboms_and_a_signature() {
    let Some((registry, scratch)) = registry_and_scratch() else {
        return;
    };
    let Some(venv) = validators() else { return };
    let dir = project(&scratch);
    key_pair(&dir);
    let target = format!("{}/app:1", registry.addr);
    let (digest, err) = xbake_ok(
        &dir,
        &[
            "build",
            "recipe.yaml",
            "--build-arg",
            "GREETING=hi",
            "--push",
            &target,
            "--provenance",
            "--sbom",
            "--attest-referrers",
            "--sign-key",
            "cosign.key",
        ],
        &[("COSIGN_PASSWORD", "correct horse")],
    );
    assert!(
        err.contains("sha256-HEX tag"),
        "Debian's registry has no referrers API: {err}"
    );
    assert!(err.contains("1 signature under the tag"), "{err}");

    // The index as BuildKit lays it out: the platforms, then one attestation manifest
    // each, platform unknown/unknown, pointing at its manifest.
    let index = json(
        &skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{target}"),
        ])
        .unwrap(),
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "{index}");
    for (image, attestation) in entries[..3].iter().zip(&entries[3..]) {
        assert_eq!(attestation["platform"]["os"], "unknown");
        assert_eq!(attestation["platform"]["architecture"], "unknown");
        let notes = &attestation["annotations"];
        assert_eq!(notes["vnd.docker.reference.type"], "attestation-manifest");
        assert_eq!(notes["vnd.docker.reference.digest"], image["digest"]);
    }

    // Each platform: provenance and SBOM, in the index and as referrers, all valid.
    let found = attestations(&dir, &target);
    assert_eq!(
        found.len(),
        12,
        "3 platforms × 2 statements × 2 attachments"
    );
    assert_valid_statements(&venv, &dir, &found);
    let provenance = found
        .iter()
        .find(|f| {
            f["platform"] == "linux/arm64" && f["predicateType"] == "https://slsa.dev/provenance/v1"
        })
        .unwrap();
    let predicate = &provenance["statement"]["predicate"];
    let external = &predicate["buildDefinition"]["externalParameters"];
    assert_eq!(external["args"]["GREETING"], "hi");
    assert_eq!(external["recipe"]["path"], "recipe.yaml");
    assert_eq!(
        external["recipe"]["digest"]["sha256"],
        sha256_hex(&std::fs::read(dir.join("recipe.yaml")).unwrap())
    );
    let deps = predicate["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let kinds: Vec<&str> = deps
        .iter()
        .map(|d| d["annotations"]["xbake.kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["base", "copy-input", "emulator"], "{predicate}");
    assert_eq!(deps[1]["digest"]["sha256"], sha256_hex(b"hello, auditor\n"));
    assert_eq!(deps[2]["uri"], "file:///usr/bin/qemu-aarch64-static");
    assert_eq!(
        deps[2]["digest"]["sha256"],
        sha256_hex(&std::fs::read("/usr/bin/qemu-aarch64-static").unwrap())
    );

    // The signature, checked by Python's cryptography against the simple-signing
    // payload; one byte of the payload or of the index changed, and it fails.
    let out = Command::new(venv.join("bin/python"))
        .arg(helper("check_signature.py"))
        .args([
            &registry.addr,
            "app",
            digest.as_str(),
            dir.join("cosign.pub").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("signature verifies"), "{said}");
    assert!(said.contains("a changed payload byte: refused"), "{said}");
    assert!(said.contains("a changed index byte: refused"), "{said}");
    let (said, _) = xbake_ok(
        &dir,
        &["verify-signature", &target, "--key", "cosign.pub"],
        &[],
    );
    assert!(
        said.contains(&format!(
            "is signed by cosign.pub for {}/app",
            registry.addr
        )),
        "{said}"
    );
    xbake_ok(
        &dir,
        &["key", "generate", "--output", "other"],
        &[("COSIGN_PASSWORD", "")],
    );
    let out = xbake(
        As::Me,
        &dir,
        &["verify-signature", &target, "--key", "other.pub"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // verify from the reference alone: the provenance gives recipe, args, bases.
    let (said, _) = xbake_ok(&dir, &["verify", &target], &[]);
    assert!(
        said.starts_with(&format!("verified: {target} ({digest})")),
        "{said}"
    );
    assert!(
        said.contains("index: identical too, attestations included"),
        "{said}"
    );
    // A copy input changed in the context: named, and nothing is rebuilt.
    std::fs::write(dir.join("files/hello.txt"), "hello, forger\n").unwrap();
    let out = xbake(As::Me, &dir, &["verify", &target], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "differs: context file files/hello.txt: sha256:{} here, sha256:{} recorded",
            sha256_hex(b"hello, forger\n"),
            sha256_hex(b"hello, auditor\n")
        )),
        "{said}"
    );
    assert!(said.contains("not rebuilt"), "{said}");
}

#[test]
fn attestations_are_the_same_bytes_every_build_and_leave_the_manifests_alone() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = project(&scratch);
    let build = |cache: &str, out: &str, extra: &[&str]| -> String {
        let mut args = vec![
            "build",
            "recipe.yaml",
            "--cache-dir",
            cache,
            "-o",
            out,
            "--tag",
            "1",
        ];
        args.extend_from_slice(extra);
        xbake_ok(&dir, &args, &[("COSIGN_PASSWORD", "correct horse")]).0
    };
    let plain = build("c0", "oci:plain", &[]);
    let one = build(
        "c1",
        "oci:one",
        &["--provenance", "--sbom", "--attest-referrers"],
    );
    let two = build(
        "c2",
        "oci:two",
        &["--provenance", "--sbom", "--attest-referrers"],
    );
    assert_eq!(one, two, "the same build, the same index and attestations");
    assert_ne!(one, plain);
    let (_, plain_images) = read_layout(&dir.join("plain"), "1");
    let (_, attested) = read_layout(&dir.join("one"), "1");
    let digests = |images: &[ReadImage]| {
        images
            .iter()
            .map(|i| i.manifest_digest.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        digests(&plain_images),
        digests(&attested),
        "platform manifests unchanged"
    );
    assert_eq!(
        attestations(&dir, "oci:one:1"),
        attestations(&dir, "oci:two:1"),
        "byte-identical statements"
    );
    // The referrers sit untagged beside the tag; the layout still opens without one.
    let index = json(&std::fs::read(dir.join("one/index.json")).unwrap());
    let referrers = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["artifactType"] == "application/vnd.in-toto+json")
        .count();
    assert_eq!(referrers, 6, "{index}");
    let (said, _) = xbake_ok(&dir, &["verify", "oci:one:1"], &[]);
    assert!(
        said.starts_with(&format!("verified: oci:one:1 ({one})")),
        "{said}"
    );
    // The recipe given instead: the rebuild has no attestations, the platforms match.
    let (said, _) = xbake_ok(
        &dir,
        &["verify", "recipe.yaml", "--against", "oci:one:1"],
        &[],
    );
    assert!(said.starts_with("verified: oci:one:1"), "{said}");

    // A signed layout: the signature under cosign's tag beside the image, and the
    // layout still names one image without a tag.
    key_pair(&dir);
    build("c5", "oci:signed", &["--sign-key", "cosign.key"]);
    let index = json(&std::fs::read(dir.join("signed/index.json")).unwrap());
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    let signature_tag = format!("sha256-{}.sig", plain.trim_start_matches("sha256:"));
    assert_eq!(tags, ["1", signature_tag.as_str()]);
    let (said, _) = xbake_ok(
        &dir,
        &["verify-signature", "oci:signed", "--key", "cosign.pub"],
        &[],
    );
    assert!(
        said.starts_with(&format!(
            "verified: oci:signed ({plain}) is signed by cosign.pub"
        )),
        "{said}"
    );

    // Wall-clock times only when asked for, and then the bytes differ.
    let timed =
        |cache: &str, out: &str| build(cache, out, &["--provenance=mode=max,timestamps=true"]);
    let (a, b) = (timed("c3", "oci:t1"), timed("c4", "oci:t2"));
    let found = attestations(&dir, "oci:t1:1");
    let predicate = &found[0]["statement"]["predicate"];
    assert!(
        predicate["runDetails"]["metadata"]["startedOn"].is_string(),
        "{predicate}"
    );
    assert!(predicate["buildDefinition"]["externalParameters"]["steps"].is_array());
    if a == b {
        // Both within one second: the times are at second precision.
        assert_eq!(attestations(&dir, "oci:t2:1"), found);
    }
    let out = xbake(
        As::Me,
        &dir,
        &["build", "recipe.yaml", "--provenance=mode=huge"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("unknown provenance option \"mode=huge\""),
        "{}",
        text(&out)
    );
    // A signature with nowhere to go is refused before anything is built.
    let out = xbake(
        As::Me,
        &dir,
        &["build", "recipe.yaml", "--sign-key", "cosign.key"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the signature needs -o oci:DIR"),
        "{}",
        text(&out)
    );
    let out = xbake(As::Me, &dir, &["build", "recipe.yaml", "--sbom"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the attestations need -o oci:DIR"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_sbom_of_a_debian_image_lists_what_dpkg_query_prints_in_it() {
    if !is_root() {
        skip("the Debian base fixture is made as root");
        return;
    }
    let Some(_) = debian_base("amd64") else {
        return;
    };
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "sbom-debian",
        "from: rootfs:bases/debian-amd64.tar.zst\nplatforms: [amd64]\nsteps:\n  - run: apt-get update -q && apt-get install -y -q --no-install-recommends hello\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let out = xbake_within(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--sbom",
            "-o",
            "oci:out",
            "--tag",
            "1",
            "--progress",
            "quiet",
        ],
        &[],
        std::time::Duration::from_secs(1800),
    );
    assert_ok(&out);
    let (listed, _) = xbake_ok(
        dir,
        &[
            "run",
            "oci:out:1",
            "--",
            "dpkg-query",
            "-W",
            "-f",
            "${Package} ${Version} ${Architecture}\\n",
        ],
        &[],
    );
    let mut in_image: Vec<String> = listed.lines().map(str::to_string).collect();
    in_image.sort();
    assert!(in_image.iter().any(|l| l.starts_with("hello ")), "{listed}");
    let found = attestations(dir, "oci:out:1");
    assert_eq!(found.len(), 1);
    let packages = found[0]["statement"]["predicate"]["packages"]
        .as_array()
        .unwrap();
    let mut in_sbom: Vec<String> = packages
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:deb/debian/"))
        })
        .map(|p| {
            let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
            let arch = purl
                .split("arch=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            format!(
                "{} {} {arch}",
                p["name"].as_str().unwrap(),
                p["versionInfo"].as_str().unwrap()
            )
        })
        .collect();
    in_sbom.sort();
    assert_eq!(in_sbom, in_image);
    if let Some(venv) = validators() {
        assert_valid_statements(&venv, dir, &found);
    }
}

#[test]
fn verify_fetches_registry_bases_by_the_recorded_digest_after_the_tag_moves() {
    let Some((registry, scratch)) = registry_and_scratch() else {
        return;
    };
    let base = format!("{}/base:1", registry.addr);
    let base_recipe = |extra_step: &str| {
        format!(
            "from: rootfs:bases/busybox-${{TARGETARCH}}.tar.gz\nplatforms: [arm64]\nsteps:\n  - run: echo base > /base\n{extra_step}"
        )
    };
    let base_dir = scratch.recipe("base", &base_recipe(""), &[]);
    let base_dir = base_dir.parent().unwrap();
    xbake_ok(base_dir, &["build", "recipe.yaml", "--push", &base], &[]);
    let app = scratch.recipe(
        "app",
        &format!("from: {base}\nplatforms: [arm64]\nsteps:\n  - run: cat /base > /copied\n"),
        &[],
    );
    let app_dir = app.parent().unwrap();
    let target = format!("{}/app:1", registry.addr);
    let (digest, _) = xbake_ok(
        app_dir,
        &["build", "recipe.yaml", "--push", &target, "--provenance"],
        &[],
    );
    let plain = |cache: &str| {
        xbake_ok(
            app_dir,
            &["build", "recipe.yaml", "--cache-dir", cache],
            &[],
        )
        .0
    };
    let before = plain("c1");
    // The base's tag moves to another image: the same build now differs…
    std::fs::write(
        base_dir.join("recipe.yaml"),
        base_recipe("  - run: touch /moved\n"),
    )
    .unwrap();
    xbake_ok(base_dir, &["build", "recipe.yaml", "--push", &base], &[]);
    assert_ne!(plain("c2"), before, "the base tag did not move");
    // …but verify fetches the base the provenance names, by digest.
    let (said, _) = xbake_ok(app_dir, &["verify", &target], &[]);
    assert!(
        said.starts_with(&format!("verified: {target} ({digest})")),
        "{said}"
    );
}

#[test]
fn per_platform_pushes_merged_keep_their_provenance_and_verify() {
    let Some((registry, scratch)) = registry_and_scratch() else {
        return;
    };
    let dir = project(&scratch);
    let repo = format!("{}/app", registry.addr);
    // Two "runners", one platform each, pushed by digest with their provenance.
    let mut sources = Vec::new();
    for (arch, cache) in [("arm64", "runner-1"), ("ppc64le", "runner-2")] {
        let (digest, _) = xbake_ok(
            &dir,
            &[
                "build",
                "recipe.yaml",
                "--arch",
                arch,
                "--cache-dir",
                cache,
                "--push-by-digest",
                &repo,
                "--provenance",
            ],
            &[],
        );
        sources.push(format!("{repo}@{digest}"));
    }
    let target = format!("{repo}:merged");
    let mut args = vec!["manifest", "create", "--target", target.as_str()];
    args.extend(sources.iter().map(String::as_str));
    xbake_ok(&dir, &args, &[]);
    let index = json(
        &skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{target}"),
        ])
        .unwrap(),
    );
    let kinds: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let p = &d["platform"];
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "linux/arm64",
            "linux/ppc64le",
            "unknown/unknown",
            "unknown/unknown"
        ]
    );
    let found = attestations(&dir, &target);
    let platforms: Vec<&str> = found
        .iter()
        .map(|f| f["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/arm64", "linux/ppc64le"]);
    let (said, _) = xbake_ok(&dir, &["verify", &target], &[]);
    assert!(
        said.contains("reproduced bit for bit") && said.contains("(2 platforms)"),
        "{said}"
    );
}
