//! Builds `from: oci:…` on each layout of the hostile-image corpus
//! (tests/common/hostile_layout.rs): each is refused with exit code 1 and an error
//! naming the problem, nothing is left in the output, the cache's store holds only
//! regular files, and a following build of a good layout that shares the layer digest
//! succeeds (one hostile layout must not poison the cache). The twists that must be
//! handled rather than refused (an unknown index entry, two manifests for a platform)
//! build, with the warning where one is due.

mod common;

use common::hostile_layout::{self, BASE_FILE, BASE_TEXT, Twist, Written, host_arch};
use common::*;
use std::path::Path;
use std::process::Output;

const NOTE: &str = "a file the recipe copies\n";

/// A recipe folder with `hostile.yaml` (from the twisted layout) and `good.yaml` (from a
/// good layout with the same layer), both copying one file on top.
fn setup(scratch: &Scratch, twist: Twist, tag: &str) -> (std::path::PathBuf, Written) {
    let recipe = |base: &str| {
        format!("from: \"oci:{base}:{tag}\"\nsteps:\n  - copy: files/note.txt\n    to: /note.txt\n")
    };
    let good = format!(
        "from: oci:good:{}\nsteps:\n  - copy: files/note.txt\n    to: /note.txt\n",
        hostile_layout::TAG
    );
    let path = scratch.recipe(
        "hostile",
        &recipe("hostile"),
        &[("files/note.txt", NOTE), ("good.yaml", &good)],
    );
    let dir = path.parent().unwrap().to_path_buf();
    let written = hostile_layout::write_layout(&dir.join("hostile"), twist);
    hostile_layout::write_layout(&dir.join("good"), Twist::None);
    (dir, written)
}

fn build(dir: &Path, recipe: &str, out: &str) -> Output {
    build_as(As::Me, dir, recipe, out)
}

fn build_as(who: As, dir: &Path, recipe: &str, out: &str) -> Output {
    xbake(
        who,
        dir,
        &[
            "build",
            recipe,
            "--arch",
            host_arch(),
            "-o",
            &format!("oci:{out}"),
        ],
        &[],
    )
}

/// Every entry below the cache's blob stores is a regular file or a folder.
fn assert_store_holds_only_regular_files(dir: &Path) {
    assert_cache_holds_only_regular_files(&dir.join(".cache-me"));
}

fn assert_cache_holds_only_regular_files(cache: &Path) {
    for entry in walkdir::WalkDir::new(cache) {
        let entry = entry.unwrap();
        let t = entry.file_type();
        assert!(
            t.is_file() || t.is_dir(),
            "{} in the cache is neither a file nor a folder ({t:?})",
            entry.path().display()
        );
    }
}

/// The output of a good build: the base's file and the copied one, every descriptor
/// carrying its blob's real size.
fn assert_good_output(dir: &Path, out: &str) {
    let layout = dir.join(out);
    let (_, images) = read_layout(&layout, "latest");
    assert_eq!(images.len(), 1);
    assert_eq!(file_text(&images[0], BASE_FILE), BASE_TEXT);
    assert_eq!(file_text(&images[0], "note.txt"), NOTE);
    let manifest = json(&blob(&layout, &images[0].manifest_digest));
    for layer in manifest["layers"].as_array().unwrap() {
        let bytes = blob(&layout, layer["digest"].as_str().unwrap());
        assert_eq!(
            layer["size"].as_u64().unwrap(),
            bytes.len() as u64,
            "{layer}"
        );
    }
}

/// Builds the hostile layout and expects exit code 1 with every one of `expected` in
/// the error; then nothing in the output, a clean store, and a good build that works.
fn refused(twist: Twist, expected: impl Fn(&Written, &Path) -> Vec<String>) {
    refused_with_tag(twist, hostile_layout::TAG, expected)
}

fn refused_with_tag(twist: Twist, tag: &str, expected: impl Fn(&Written, &Path) -> Vec<String>) {
    let scratch = Scratch::new();
    let (dir, written) = setup(&scratch, twist, tag);
    let out = build(&dir, "recipe.yaml", "out");
    assert_eq!(out.status.code(), Some(1), "{twist:?}:\n{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in expected(&written, &dir) {
        assert!(
            stderr.contains(&want),
            "{twist:?}: {want:?} not in:\n{stderr}"
        );
    }
    assert!(!dir.join("out").exists(), "{twist:?}: output written");
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.") && !n.ends_with("-lock"))
        .collect();
    assert!(leftovers.is_empty(), "{twist:?}: left {leftovers:?}");
    assert_store_holds_only_regular_files(&dir);
    let good = build(&dir, "good.yaml", "good-out");
    assert_ok(&good);
    assert_good_output(&dir, "good-out");
    assert_store_holds_only_regular_files(&dir);
}

/// A blob of the hostile layout as errors name it (the recipe says `oci:hostile`).
fn blob_path(digest: &str) -> String {
    format!(
        "hostile/blobs/sha256/{}",
        digest.trim_start_matches("sha256:")
    )
}

fn size_mismatch(what: &str, digest: &str, declared: u64, real: u64) -> Vec<String> {
    vec![
        format!("size mismatch for {what} {digest}"),
        format!("expected {declared} bytes, got {real}"),
    ]
}

#[test]
fn a_layer_linked_to_dev_zero_is_refused_and_does_not_poison_the_cache() {
    refused(Twist::LayerLinkedToDevZero, |w, _| {
        vec![format!(
            "{} is a symbolic link, not a regular file",
            blob_path(&w.layer_digest)
        )]
    });
}

#[test]
fn a_layer_linked_outside_the_layout_is_refused() {
    refused(Twist::LayerLinkedOutside, |w, _| {
        vec![format!(
            "{} is a symbolic link, not a regular file",
            blob_path(&w.layer_digest)
        )]
    });
}

#[test]
fn a_layer_one_byte_longer_than_declared_is_refused() {
    refused(Twist::LayerSizeMinusOne, |w, _| {
        size_mismatch("layer 1/1", &w.layer_digest, w.layer_size - 1, w.layer_size)
    });
}

#[test]
fn a_layer_one_byte_shorter_than_declared_is_refused() {
    refused(Twist::LayerSizePlusOne, |w, _| {
        size_mismatch("layer 1/1", &w.layer_digest, w.layer_size + 1, w.layer_size)
    });
}

#[test]
fn a_layer_declared_2_pow_62_bytes_is_refused() {
    refused(Twist::LayerSizeHuge, |w, _| {
        size_mismatch("layer 1/1", &w.layer_digest, 1 << 62, w.layer_size)
    });
}

#[test]
fn a_config_of_the_wrong_size_is_refused() {
    refused(Twist::ConfigSizePlusOne, |_, _| {
        vec!["size mismatch for image config sha256:".into()]
    });
}

#[test]
fn a_manifest_of_the_wrong_size_is_refused() {
    refused(Twist::ManifestSizeMinusOne, |w, dir| {
        let real = std::fs::metadata(dir.join(blob_path(&w.manifest_digest)))
            .unwrap()
            .len();
        size_mismatch("image manifest", &w.manifest_digest, real - 1, real)
    });
}

#[test]
fn a_manifest_that_is_also_an_index_is_refused() {
    refused(Twist::ManifestAndIndex, |w, _| {
        vec![
            format!("image manifest {}", w.manifest_digest),
            "has both `manifests` and `layers`/`config`".into(),
            "CVE-2021-41190".into(),
        ]
    });
}

#[test]
fn a_media_type_that_disagrees_with_its_descriptor_is_refused() {
    refused(Twist::MediaTypeMismatch, |_, _| {
        vec![format!(
            "its mediaType is {} but its descriptor says {}",
            hostile_layout::DOCKER_MANIFEST,
            hostile_layout::OCI_MANIFEST
        )]
    });
}

#[test]
fn a_plain_tar_declared_gzip_is_refused() {
    refused(Twist::TarDeclaredGzip, |w, _| {
        vec![
            format!("layer 1/1 {}", w.layer_digest),
            format!(
                "its media type {} says gzip but its bytes are uncompressed",
                hostile_layout::LAYER_GZIP
            ),
        ]
    });
}

#[test]
fn a_config_for_another_cpu_than_its_index_entry_is_refused() {
    refused(Twist::ConfigArchMismatch, |w, _| {
        vec![format!(
            "the index lists image manifest {} as linux/{} but its config says linux/{}",
            w.manifest_digest,
            host_arch(),
            hostile_layout::other_arch()
        )]
    });
}

#[test]
fn a_layout_version_2_is_refused() {
    refused(Twist::LayoutVersion2, |_, _| {
        vec!["hostile/oci-layout: imageLayoutVersion \"2.0.0\" is not a 1.x version".into()]
    });
}

#[test]
fn a_ref_name_outside_the_grammar_is_never_a_tag() {
    refused_with_tag(Twist::BadRefName, hostile_layout::BAD_REF_NAME, |_, _| {
        vec![format!(
            "has no tag {:?}; it has: no tags",
            hostile_layout::BAD_REF_NAME
        )]
    });
}

#[test]
fn unknown_index_entries_are_skipped() {
    let scratch = Scratch::new();
    let (dir, _) = setup(&scratch, Twist::UnknownIndexEntry, hostile_layout::TAG);
    let out = build(&dir, "recipe.yaml", "out");
    assert_ok(&out);
    assert_good_output(&dir, "out");
}

#[test]
fn two_manifests_for_the_platform_warn_and_name_the_one_used() {
    let scratch = Scratch::new();
    let (dir, written) = setup(&scratch, Twist::DuplicatePlatform, hostile_layout::TAG);
    let out = build(&dir, "recipe.yaml", "out");
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let second = written.second_manifest_digest.unwrap();
    let want = format!(
        "warning: oci:hostile:1.0 has 2 manifests for linux/{} ({}, {second}); using {}",
        host_arch(),
        written.manifest_digest,
        written.manifest_digest
    );
    assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    assert_good_output(&dir, "out");
}

/// A store already poisoned (by an older xbake) with a symlink under the shared layer's
/// digest: the good build replaces it instead of reading /dev/zero without end.
#[test]
fn a_symlink_already_in_the_cache_is_replaced_not_followed() {
    let scratch = Scratch::new();
    let (dir, written) = setup(&scratch, Twist::None, hostile_layout::TAG);
    let store = dir.join(".cache-me/xbake/blobs/sha256");
    std::fs::create_dir_all(&store).unwrap();
    let poisoned = store.join(written.layer_digest.trim_start_matches("sha256:"));
    std::os::unix::fs::symlink("/dev/zero", &poisoned).unwrap();
    assert_ok(&build(&dir, "good.yaml", "out"));
    assert_good_output(&dir, "out");
    assert!(std::fs::symlink_metadata(&poisoned).unwrap().is_file());
    assert_store_holds_only_regular_files(&dir);
}

/// As an unprivileged user (whose cache cannot hard-link root's layout files, so the
/// blobs are copied): the same refusal, and the same clean cache after it.
#[test]
fn an_unprivileged_build_refuses_the_dev_zero_layer_and_keeps_its_cache_clean() {
    if test_user().is_none() {
        skip("the unprivileged test user needs root to create");
        return;
    }
    let scratch = Scratch::new();
    let (dir, written) = setup(&scratch, Twist::LayerLinkedToDevZero, hostile_layout::TAG);
    open_up(&dir);
    let out = build_as(As::TestUser, &dir, "recipe.yaml", "out");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{} is a symbolic link, not a regular file",
        blob_path(&written.layer_digest)
    );
    assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    assert!(!dir.join("out").exists());
    assert_ok(&build_as(As::TestUser, &dir, "good.yaml", "good-out"));
    assert_good_output(&dir, "good-out");
    assert_cache_holds_only_regular_files(&dir.join(".cache-user"));
}

/// An oci-archive base is unpacked and then read like a layout: the same checks apply.
#[test]
fn an_oci_archive_of_a_hostile_layout_is_refused_the_same_way() {
    let scratch = Scratch::new();
    let (dir, written) = setup(&scratch, Twist::TarDeclaredGzip, hostile_layout::TAG);
    let file = std::fs::File::create(dir.join("hostile.tar")).unwrap();
    let mut tar = tar::Builder::new(file);
    tar.append_dir_all(".", dir.join("hostile")).unwrap();
    tar.finish().unwrap();
    std::fs::write(
        dir.join("archive.yaml"),
        format!(
            "from: oci-archive:hostile.tar:{}\nsteps:\n  - copy: files/note.txt\n    to: /note.txt\n",
            hostile_layout::TAG
        ),
    )
    .unwrap();
    let out = build(&dir, "archive.yaml", "out");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "layer 1/1 {}: its media type {} says gzip but its bytes are uncompressed",
        written.layer_digest,
        hostile_layout::LAYER_GZIP
    );
    assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    assert!(!dir.join("out").exists());
}
