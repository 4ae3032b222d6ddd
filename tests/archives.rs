//! oci-archive and docker-archive, in and out, checked with skopeo.

mod common;

use common::*;

#[test]
fn archives_round_trip_through_skopeo_and_serve_as_bases() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "arch",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nplatforms: [arm64, s390x]\nsteps:\n  - run: echo base > /base\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "-o", "oci-archive:img.tar:1.0"],
        &[],
    );
    assert_ok(&out);
    let index_digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The same bytes twice: the archive is deterministic.
    let first = std::fs::read(dir.join("img.tar")).unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "-o", "oci-archive:img.tar:1.0"],
        &[],
    ));
    assert_eq!(std::fs::read(dir.join("img.tar")).unwrap(), first);
    let Some(raw) = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:1.0", dir.join("img.tar").display()),
    ]) else {
        return;
    };
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), index_digest);
    // skopeo copies every platform out of it, verifying every blob.
    skopeo(&[
        "copy",
        "-q",
        "--all",
        &format!("oci-archive:{}:1.0", dir.join("img.tar").display()),
        &format!("oci:{}:copy", dir.join("copied").display()),
    ]);
    let (copied, images) = read_layout(&dir.join("copied"), "copy");
    assert_eq!(copied, index_digest);
    assert_eq!(images.len(), 2);

    // One platform as a docker-archive; skopeo reads it.
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "-o",
            "docker-archive:d.tar:demo/app:2",
        ],
        &[],
    ));
    let inspected = json(
        &skopeo(&[
            "inspect",
            &format!("docker-archive:{}", dir.join("d.tar").display()),
        ])
        .unwrap(),
    );
    assert_eq!(inspected["Architecture"], "arm64");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    // xbake inspect reads it too, with the same layers skopeo lists.
    let out = xbake(
        As::Me,
        dir,
        &["inspect", "docker-archive:d.tar", "--json"],
        &[],
    );
    assert_ok(&out);
    let summary = json(&out.stdout);
    assert_eq!(
        summary["platforms"][0]["platform"], "linux/arm64",
        "{summary}"
    );
    assert_eq!(summary["platforms"][0]["layers"], 2, "{summary}");
    let out = xbake(As::Me, dir, &["inspect", "docker-archive:missing.tar"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("docker-archive:missing.tar"),
        "{}",
        text(&out)
    );
    let manifest = {
        let f = std::fs::File::open(dir.join("d.tar")).unwrap();
        let mut a = tar::Archive::new(f);
        let mut text = String::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("manifest.json") {
                std::io::Read::read_to_string(&mut e, &mut text).unwrap();
            }
        }
        json(text.as_bytes())
    };
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["demo/app:2"]));
    // podman load (c/image's docker-archive reader, what `docker load` also accepts).
    let store = dir.join("podman");
    let podman = |args: &[&str]| {
        std::process::Command::new("podman")
            .args(["--storage-driver", "vfs", "--root"])
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(args)
            .output()
    };
    match podman(&["load", "-i", dir.join("d.tar").to_str().unwrap()]) {
        Ok(out) => {
            assert!(
                out.status.success(),
                "podman load: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let listed = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).unwrap();
            assert!(String::from_utf8_lossy(&listed.stdout).contains("demo/app:2"));
        }
        Err(_) => {
            skip("podman is not installed");
        }
    }
    // Several platforms cannot go into one docker-archive.
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "-o", "docker-archive:x.tar"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Both archives serve as bases, their layers reused.
    std::fs::write(
        dir.join("from-oci.yaml"),
        "from: oci-archive:img.tar:1.0\nsteps:\n  - run: cat /base > /seen\n",
    )
    .unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &["build", "from-oci.yaml", "--arch", "s390x", "-o", "oci:o1"],
        &[],
    ));
    let (_, derived) = read_layout(&dir.join("o1"), "latest");
    assert_eq!(file_text(&derived[0], "seen"), "base\n");
    std::fs::write(
        dir.join("from-docker.yaml"),
        "from: docker-archive:d.tar\nsteps:\n  - run: cat /base > /seen\n",
    )
    .unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "from-docker.yaml",
            "--arch",
            "arm64",
            "-o",
            "oci:o2",
        ],
        &[],
    ));
    let (_, derived) = read_layout_any_media(&dir.join("o2"), "latest");
    assert_eq!(derived, "base\n");
    // A docker-archive for another architecture is refused, naming both.
    let out = xbake(
        As::Me,
        dir,
        &["build", "from-docker.yaml", "--arch", "s390x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("linux/arm64, not linux/s390x")
            || text(&out).contains("not linux/s390x"),
        "{}",
        text(&out)
    );
}

/// Images built on a docker-archive base carry its uncompressed layers: read /seen by
/// running the image instead of the gzip-only reader.
fn read_layout_any_media(dir: &std::path::Path, tag: &str) -> (String, String) {
    let out = xbake(
        As::Me,
        dir.parent().unwrap(),
        &[
            "run",
            &format!("oci:{}:{tag}", dir.display()),
            "--",
            "cat",
            "/seen",
        ],
        &[],
    );
    assert_ok(&out);
    (
        String::new(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
