//! `--cache-to type=local` / `--cache-from type=local`: a cache exported by one build
//! (and user) lets another with an empty cache run no step and get the same digest; a
//! damaged entry or cache is refused, and the steps run.

mod common;

use common::*;
use std::path::Path;

const RECIPE: &str = "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
platforms: [arm64, s390x]
steps:
  - run: uname -m > /arch
  - run: echo two > /two
";

fn build(who: As, dir: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["build", "recipe.yaml", "--progress", "plain"];
    args.extend_from_slice(extra);
    let out = xbake(who, dir, &args, &[]);
    assert_ok(&out);
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every blob file of the cache layout, by size, largest first.
fn blobs_of(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut blobs: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    blobs
}

#[test]
fn an_exported_cache_runs_nothing_elsewhere_and_damage_is_refused() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("shared", RECIPE, &[]);
    let dir = recipe.parent().unwrap();
    let shared = dir.join("shared-cache");
    let (digest, err) = build(
        As::Me,
        dir,
        &[
            "--cache-dir",
            "c1",
            "-o",
            "oci:one",
            "--cache-to",
            "type=local,dest=shared-cache",
        ],
    );
    assert!(err.contains("cache: wrote 4 steps to --cache-to"), "{err}");
    assert_eq!(steps_line(&err), "2 platforms: 4 steps run, 0 cached");

    // Another user, an empty cache of its own: nothing runs, the same image.
    let rootless = is_root() && tun_ready(As::TestUser);
    let who = if rootless { As::TestUser } else { As::Me };
    if rootless {
        open_up(dir);
    }
    let (again, err) = build(
        who,
        dir,
        &[
            "--cache-dir",
            "c2",
            "-o",
            "oci:two",
            "--cache-from",
            "type=local,src=shared-cache",
        ],
    );
    assert_eq!(again, digest);
    assert!(err.contains("cache: 4 steps in --cache-from"), "{err}");
    assert_eq!(steps_line(&err), "2 platforms: 0 steps run, 4 cached");

    // One layer damaged (same size): that step is refused and runs; the image is the same.
    let damaged = dir.join("damaged");
    copy_tree(&shared, &damaged);
    let layer = blobs_of(&damaged)
        .into_iter()
        .find(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.starts_with(&[0x1f, 0x8b])
        })
        .expect("a gzip layer in the cache");
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, &bytes).unwrap();
    let (third, err) = build(
        As::Me,
        dir,
        &[
            "--cache-dir",
            "c3",
            "-o",
            "oci:three",
            "--cache-from",
            "type=local,src=damaged",
        ],
    );
    assert_eq!(third, digest);
    assert!(
        err.contains("is refused (the step is run instead): digest mismatch"),
        "{err}"
    );
    assert_eq!(steps_line(&err), "2 platforms: 1 step run, 3 cached");

    // The cache's own documents damaged: the whole cache is refused, every step runs.
    let broken = dir.join("broken");
    copy_tree(&shared, &broken);
    for blob in blobs_of(&broken) {
        let text = std::fs::read(&blob).unwrap();
        if text.starts_with(b"{") && String::from_utf8_lossy(&text).contains("xbake-cache-v1") {
            std::fs::write(
                &blob,
                String::from_utf8_lossy(&text).replace("uname", "UNAME"),
            )
            .unwrap();
        }
    }
    let (fourth, err) = build(
        As::Me,
        dir,
        &[
            "--cache-dir",
            "c4",
            "-o",
            "oci:four",
            "--cache-from",
            "type=local,src=broken",
        ],
    );
    assert_eq!(fourth, digest);
    assert!(
        err.contains("--cache-from type=local,src=broken is refused (building without it)"),
        "{err}"
    );
    assert_eq!(steps_line(&err), "2 platforms: 4 steps run, 0 cached");

    // Bad flags are usage errors, before any work.
    for bad in [
        "type=local",
        "type=registry",
        "type=s3,src=x",
        "type=local,dest=x",
    ] {
        let out = xbake(
            As::Me,
            dir,
            &["build", "recipe.yaml", "--cache-from", bad],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    open_up(to);
}
