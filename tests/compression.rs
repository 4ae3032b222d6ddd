//! `--compression`: the layers a build makes as gzip, zstd or plain tar, each with its
//! OCI media type, the same tar (diff_id) inside, and the same bytes on every build and
//! for any gzip thread count. Read back with the tests' own reader, skopeo and umoci.

mod common;

use common::*;
use std::path::Path;

/// Native (no QEMU): a step writing a few MB of compressible text and noise-free zeros,
/// enough for gzip to span many blocks, and a copy step.
const RECIPE: &str = "from: rootfs:bases/busybox-amd64.tar.gz
platforms: [amd64]
steps:
  - run: seq 1 400000 > /numbers && head -c 1000000 /dev/zero > /zeros
  - copy: files/note.txt
    to: /note.txt
";

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn ready() -> bool {
    if fixtures().is_none() {
        return !skip("no busybox fixtures; run `just fixtures` (or ./dev test)");
    }
    true
}

fn folder(scratch: &Scratch, name: &str) -> std::path::PathBuf {
    let recipe = scratch.recipe(name, RECIPE, &[("files/note.txt", "a note\n")]);
    recipe.parent().unwrap().to_path_buf()
}

fn build(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut all = vec!["build", "recipe.yaml"];
    all.extend_from_slice(args);
    xbake_ok(dir, &all, env)
}

/// The one manifest under `tag`: (its layer media types and digests, the config's diff_ids).
fn layers(layout: &Path, tag: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (_, images) = read_layout(layout, tag);
    assert_eq!(images.len(), 1);
    let manifest = json(&blob(layout, &images[0].manifest_digest));
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let diff_ids = images[0].config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    (layers, diff_ids)
}

#[test]
fn each_compression_has_its_media_type_and_the_same_tars_inside() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = folder(&scratch, "kinds");
    let mut seen = Vec::new();
    for (setting, media_type) in [
        ("gzip", GZIP),
        ("gzip:1", GZIP),
        ("zstd", ZSTD),
        ("zstd:19", ZSTD),
        ("none", TAR),
    ] {
        let tag = setting.replace(':', "-");
        build(
            &dir,
            &["--compression", setting, "-o", &format!("oci:out:{tag}")],
            &[],
        );
        // read_layout decompresses every layer by its media type and checks each tar's
        // sha256 against the config's diff_id.
        let (layers, diff_ids) = layers(&dir.join("out"), &tag);
        assert_eq!(layers.len(), 3, "{setting}: base and two steps");
        // The base is kept as it came (a gzip rootfs file is stored byte for byte).
        assert_eq!(layers[0].0, GZIP, "{setting}: base layer");
        for (kind, digest) in &layers[1..] {
            assert_eq!(kind, media_type, "{setting}: layer {digest}");
        }
        seen.push((setting, layers, diff_ids));
    }
    let (_, gzip_layers, gzip_diff_ids) = &seen[0];
    for (setting, layers, diff_ids) in &seen[1..] {
        assert_eq!(diff_ids, gzip_diff_ids, "{setting}: the same tars");
        assert_eq!(layers[0], gzip_layers[0], "{setting}: the same base blob");
        for i in 1..3 {
            assert_ne!(layers[i].1, gzip_layers[i].1, "{setting}: another blob");
        }
    }
    // Plain tar layers are the tars themselves: digest equals diff_id.
    let (_, plain, plain_ids) = &seen[4];
    assert_eq!(plain[1].1, plain_ids[1]);
    assert_eq!(plain[2].1, plain_ids[2]);

    // skopeo reads the zstd image and lists the same layers.
    if let Some(raw) = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}/out:zstd", dir.display()),
    ]) {
        let index = json(&raw);
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest = json(&blob(&dir.join("out"), digest));
        let listed: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [GZIP, ZSTD, ZSTD]);
        let config = skopeo(&[
            "inspect",
            "--config",
            &format!("oci:{}/out:zstd", dir.display()),
        ])
        .unwrap();
        assert_eq!(
            json(&config)["rootfs"]["diff_ids"][2],
            seen[2].2[2].as_str()
        );
    }
    // umoci unpacks the gzip and the plain tar images, checking each diff_id on its way
    // (umoci 0.4 has no zstd; skopeo above read that one).
    for tag in ["gzip-1", "none"] {
        let bundle = format!("bundle-{tag}");
        match std::process::Command::new("umoci")
            .args([
                "unpack",
                "--rootless",
                "--image",
                &format!("out:{tag}"),
                &bundle,
            ])
            .current_dir(&dir)
            .output()
        {
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "umoci unpack {tag}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let rootfs = dir.join(&bundle).join("rootfs");
                let numbers = std::fs::read_to_string(rootfs.join("numbers")).unwrap();
                assert_eq!(numbers.lines().count(), 400_000);
                assert_eq!(numbers.lines().last(), Some("400000"));
                assert_eq!(std::fs::read(rootfs.join("note.txt")).unwrap(), b"a note\n");
            }
            Err(_) => {
                skip("umoci is not installed");
                break;
            }
        }
    }
}

#[test]
fn builds_are_byte_identical_whatever_the_gzip_threads_and_zstd_twice() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = folder(&scratch, "same");
    let (one, _) = build(
        &dir,
        &["--no-cache", "-o", "oci:out:t1"],
        &[("XBAKE_GZIP_THREADS", "1")],
    );
    for threads in ["2", "8"] {
        let (many, _) = build(
            &dir,
            &["--no-cache", "-o", "oci:out:t"],
            &[("XBAKE_GZIP_THREADS", threads)],
        );
        assert_eq!(many, one, "{threads} gzip threads");
    }
    let (zstd_a, _) = build(
        &dir,
        &["--no-cache", "--compression", "zstd", "-o", "oci:out:z"],
        &[],
    );
    let (zstd_b, _) = build(
        &dir,
        &["--no-cache", "--compression", "zstd", "-o", "oci:out:z"],
        &[],
    );
    assert_eq!(zstd_a, zstd_b);
    assert_ne!(zstd_a, one);
}

#[test]
fn a_cached_gzip_layer_is_not_reused_for_zstd() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = folder(&scratch, "cache");
    let (_, err) = build(&dir, &["-o", "oci:out:gzip"], &[]);
    assert_eq!(steps_line(&err), "1 platform: 2 steps run, 0 cached");
    let (zstd, err) = build(&dir, &["--compression", "zstd", "-o", "oci:out:zstd"], &[]);
    assert_eq!(steps_line(&err), "1 platform: 2 steps run, 0 cached");
    let (again, err) = build(
        &dir,
        &["--compression", "zstd:3", "-o", "oci:out:zstd"],
        &[],
    );
    assert_eq!(steps_line(&err), "1 platform: 0 steps run, 2 cached");
    assert_eq!(again, zstd);
    let (layers, _) = layers(&dir.join("out"), "zstd");
    assert_eq!(layers[1].0, ZSTD);
    let (_, err) = build(&dir, &["-o", "oci:out:gzip"], &[]);
    assert_eq!(steps_line(&err), "1 platform: 0 steps run, 2 cached");
}

#[test]
fn bad_settings_are_refused_naming_the_value() {
    let scratch = Scratch::new();
    let dir = folder(&scratch, "bad");
    for (setting, says) in [
        ("brotli", "unknown compression \"brotli\""),
        (
            "gzip:10",
            "\"gzip:10\": the level must be a whole number from 1 to 9",
        ),
        (
            "zstd:0",
            "\"zstd:0\": the level must be a whole number from 1 to 22",
        ),
        ("none:3", "none takes no level"),
    ] {
        let out = xbake(
            As::Me,
            &dir,
            &["build", "recipe.yaml", "--compression", setting],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{setting}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            text(&out)
        );
    }
    let out = xbake(
        As::Me,
        &dir,
        &["build", "recipe.yaml"],
        &[("XBAKE_GZIP_THREADS", "0")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("XBAKE_GZIP_THREADS=\"0\""),
        "{}",
        text(&out)
    );
}

#[test]
fn a_zstd_build_written_as_a_docker_archive_holds_plain_tars_and_the_metadata_names_it() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = folder(&scratch, "docker");
    build(
        &dir,
        &[
            "--compression",
            "zstd:7",
            "--metadata-file",
            "meta.json",
            "-o",
            "docker-archive:d.tar:me/app:1",
        ],
        &[],
    );
    let meta = json(&std::fs::read(dir.join("meta.json")).unwrap());
    assert_eq!(meta["xbake.compression"], "zstd:7");
    // docker save's format: each layer a plain tar named by its diff_id.
    let mut archive = tar::Archive::new(std::fs::File::open(dir.join("d.tar")).unwrap());
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.insert(name, bytes);
    }
    let manifest = json(&files["manifest.json"]);
    let config = json(&files[manifest[0]["Config"].as_str().unwrap()]);
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    for (layer, diff_id) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        let bytes = &files[layer.as_str().unwrap()];
        assert_eq!(
            format!("sha256:{}", sha256_hex(bytes)),
            diff_id.as_str().unwrap()
        );
        assert_eq!(&bytes[257..262], b"ustar", "{layer} is a tar");
    }
}

#[test]
fn verify_rebuilds_with_the_images_compression() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = folder(&scratch, "verify");
    build(&dir, &["--compression", "zstd", "-o", "oci:pub:1"], &[]);
    // Guessed from the top layer's media type (zstd, default level).
    let (said, _) = xbake_ok(
        &dir,
        &["verify", "recipe.yaml", "--against", "oci:pub:1"],
        &[],
    );
    assert!(said.starts_with("verified: oci:pub:1"), "{said}");
    let (said, _) = xbake_ok(
        &dir,
        &[
            "verify",
            "recipe.yaml",
            "--against",
            "oci:pub:1",
            "--compression",
            "zstd:3",
        ],
        &[],
    );
    assert!(said.starts_with("verified: oci:pub:1"), "{said}");
    // Another setting makes other blobs, so not the published image.
    let out = xbake(
        As::Me,
        &dir,
        &[
            "verify",
            "recipe.yaml",
            "--against",
            "oci:pub:1",
            "--compression",
            "gzip",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}
