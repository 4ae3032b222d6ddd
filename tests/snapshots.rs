//! Layer snapshots: a step's rootfs is an overlay of layers unpacked once per machine,
//! and its layer is read from the overlay's upper folder. The walk snapshotter stays as
//! the fallback (`XBAKE_SNAPSHOTTER=walk`); both must give the same image, bit for bit,
//! as root and rootless. Also: a rebuild reuses the snapshots, `cache prune` removes
//! them.

mod common;

use common::*;
use std::path::Path;

/// Every kind of change a step makes to what the layers below it hold: files added,
/// appended to, deleted, replaced by a folder and the other way round, a folder removed
/// and made again, a folder renamed (overlayfs copies it), hard and symbolic links, a
/// file opened for writing but left as it was (an overlay copy-up that is no change),
/// mtimes and modes set, a cache mount (its mount point never reaches a layer), a copy
/// step, and a step that changes nothing.
const RECIPE: &str = "from: rootfs:bases/busybox-amd64.tar.gz
steps:
  - run: >-
      mkdir -p /a/b /keep /rep && echo 1 > /a/b/f && echo x > /a/g && ln -s /a/g /a/link &&
      ln /a/g /a/hard && echo r > /rep/old && echo k > /keep/k && chmod 0700 /a
  - run: >-
      echo 2 >> /a/b/f && rm /a/g && rm -rf /rep && mkdir /rep && echo new > /rep/new &&
      mv /a/b /a/c && rm /a/hard && mkdir /a/hard && rm -rf /keep && echo f > /keep &&
      : >> /etc/passwd && touch -d @5 /etc/group && chmod 0640 /etc/group && rm /linuxrc &&
      rm -rf /home && ln /bin/busybox /bin/extra-link
  - copy: files/x
    to: /a/c/x
  - run: cat /a/c/x > /dev/null
  - run: ls /var/cache/m > /dev/null; touch /var/cache/m/seen; echo done > /done
    mounts:
      - type: cache
        target: /var/cache/m
";

fn build(who: As, dir: &Path, snapshotter: &str, out: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["build", "recipe.yaml", "--progress", "plain", "-o", out];
    args.extend_from_slice(extra);
    let out = xbake(who, dir, &args, &[("XBAKE_SNAPSHOTTER", snapshotter)]);
    assert_ok(&out);
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ready(who: As) -> bool {
    if fixtures().is_none() {
        return !skip("no busybox fixtures; run `just fixtures` (or ./dev test)");
    }
    if who == As::TestUser && !is_root() {
        return !skip("the rootless case needs root to create the test user");
    }
    true
}

fn overlay_and_walk_give_one_image(who: As) {
    if !ready(who) {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("same", RECIPE, &[("files/x", "copied\n")]);
    let dir = recipe.parent().unwrap();
    let (overlay, log) = build(who, dir, "overlay", "oci:overlay:1", &["--no-cache"]);
    assert!(log.contains("snapshots: overlay"), "{log}");
    let (walk, log) = build(who, dir, "walk", "oci:walk:1", &["--no-cache"]);
    assert!(
        log.contains("snapshots: walk (XBAKE_SNAPSHOTTER=walk)"),
        "{log}"
    );
    assert_eq!(overlay, walk, "the overlay and the walk disagree");

    // What a user checks in the image: the changes are there, the no-op is not.
    let (_, images) = read_layout(&dir.join("overlay"), "1");
    let image = &images[0];
    assert_eq!(file_text(image, "a/c/f"), "1\n2\n");
    assert_eq!(file_text(image, "a/c/x"), "copied\n");
    assert_eq!(file_text(image, "keep"), "f\n");
    assert_eq!(file_text(image, "rep/new"), "new\n");
    for gone in ["a/g", "a/b/f", "rep/old", "linuxrc"] {
        assert!(!image.files.contains_key(gone), "{gone} is still there");
    }
    // The second step's layer: `: >> /etc/passwd` changed nothing and is not in it.
    let layer = image_layer_paths(&dir.join("overlay"), 2);
    assert!(!layer.iter().any(|p| p == "etc/passwd"), "{layer:?}");
    assert!(layer.iter().any(|p| p == "etc/group"), "{layer:?}");
    assert!(layer.iter().any(|p| p == "rep/"), "{layer:?}");
    assert!(layer.iter().any(|p| p == ".wh.home"), "{layer:?}");
    assert!(
        !layer.iter().any(|p| p.starts_with("var/cache/m")),
        "{layer:?}"
    );
}

/// The paths in the tar of layer `n` (from 0: the base) of the layout's only image.
fn image_layer_paths(layout: &Path, n: usize) -> Vec<String> {
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let mut desc = index["manifests"][0].clone();
    let mut manifest = json(&blob(layout, desc["digest"].as_str().unwrap()));
    if manifest["manifests"].is_array() {
        desc = manifest["manifests"][0].clone();
        manifest = json(&blob(layout, desc["digest"].as_str().unwrap()));
    }
    let layer = &manifest["layers"][n];
    let bytes = decompress_layer(
        layer["mediaType"].as_str().unwrap(),
        &blob(layout, layer["digest"].as_str().unwrap()),
    );
    let mut archive = tar::Archive::new(bytes.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn overlay_and_walk_give_one_image_as_root() {
    overlay_and_walk_give_one_image(As::Me);
}

#[test]
fn overlay_and_walk_give_one_image_rootless() {
    overlay_and_walk_give_one_image(As::TestUser);
}

/// The snapshot folders of a cache (all id maps).
fn snapshots(cache: &Path) -> Vec<String> {
    let Ok(maps) = std::fs::read_dir(cache.join("snapshots")) else {
        return Vec::new();
    };
    maps.flatten()
        .flat_map(|m| std::fs::read_dir(m.path()).unwrap().flatten())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_rebuild_mounts_the_layers_it_has_and_prune_removes_them() {
    if !ready(As::Me) {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("reuse", RECIPE, &[("files/x", "copied\n")]);
    let dir = recipe.parent().unwrap();
    let cache = dir.join(".cache-me/xbake");
    let (first, log) = build(As::Me, dir, "overlay", "oci:first:1", &[]);
    assert!(log.contains("[amd64] base: unpacked 1 layer"), "{log}");
    // The base and every step layer a later step ran on.
    assert_eq!(snapshots(&cache).len(), 4, "{log}");

    // Only the last step changed: everything below it is mounted, nothing unpacked.
    let changed = RECIPE.replace("echo done > /done", "echo changed > /done");
    std::fs::write(&recipe, &changed).unwrap();
    let (second, log) = build(As::Me, dir, "overlay", "oci:second:1", &[]);
    assert_ne!(first, second);
    assert!(
        log.contains("[amd64] base: 4 layers from the snapshot store, mounted in"),
        "{log}"
    );
    assert!(!log.contains(": unpacked "), "{log}");
    assert_eq!(steps_line(&log), "1 platform: 1 step run, 4 cached");
    let (walk, _) = build(As::Me, dir, "walk", "oci:walk:1", &["--no-cache"]);
    assert_eq!(
        second, walk,
        "the reused snapshots give what the walk gives"
    );

    // `cache verify` cannot hash a snapshot: it drops them, builds make them again.
    let out = xbake(As::Me, dir, &["cache", "verify"], &[]);
    assert_ok(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("dropped 4 unpacked layer snapshots"),
        "{said}"
    );
    assert_eq!(snapshots(&cache), Vec::<String>::new());
    let (remade, _) = build(As::Me, dir, "overlay", "oci:remade:1", &["--no-cache"]);
    assert_eq!(remade, second);
    assert_eq!(snapshots(&cache).len(), 4);

    let out = xbake(As::Me, dir, &["cache", "prune"], &[]);
    assert_ok(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("unpacked layer snapshots"), "{said}");
    assert_eq!(snapshots(&cache), Vec::<String>::new());
    // And the store fills again as needed.
    let (again, _) = build(As::Me, dir, "overlay", "oci:again:1", &[]);
    assert_eq!(again, second);
}
