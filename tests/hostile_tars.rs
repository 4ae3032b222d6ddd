//! Hostile `rootfs:` bases (issue 8, items 11 and 12) through the real CLI: each build
//! fails with exit code 1 and an error naming the layer, the entry and the figures, leaves
//! nothing behind in the cache's scratch space, and a good build with the same cache
//! afterwards succeeds.

mod common;

use common::hostile_tar::{Bomb, RawTar, bomb, zeros_bomb};
use common::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;

const RECIPE: &str = "from: rootfs:base.tar.gz\nsteps:\n  - copy: files/x\n    to: /x\n";

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(tar).unwrap();
    gz.finish().unwrap()
}

/// Builds `RECIPE` on `base` (gzip bytes) in `dir` with `extra` flags.
fn build(dir: &Path, base: &[u8], extra: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("base.tar.gz"), base).unwrap();
    let mut args = vec!["build", "recipe.yaml", "-o", "oci:out"];
    args.extend_from_slice(extra);
    xbake(As::Me, dir, &args, &[])
}

/// The failed build exits 1 with every piece of `expected` in its stderr, no build
/// folder survives in the cache, and a good base then builds with the same cache.
fn assert_refused_then_good_build(dir: &Path, base: &[u8], extra: &[&str], expected: &[&str]) {
    let out = build(dir, base, extra);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for piece in expected {
        assert!(err.contains(piece), "missing {piece:?} in:\n{err}");
    }
    assert!(!dir.join("out").exists(), "an output was written");
    let work = dir.join(".cache-me/xbake/work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", work.display());
    // Refused at import: nothing of the base in the store (not even a temporary file) and
    // no import or diff_id record.
    for folder in ["blobs/sha256", "imports", "diffids"] {
        let path = dir.join(".cache-me/xbake").join(folder);
        let left: Vec<_> = std::fs::read_dir(&path)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", path.display());
    }

    let good = gzip(
        &RawTar::new()
            .dir("etc/")
            .file("etc/os-release", b"ID=good\n")
            .finish(),
    );
    let out = build(dir, &good, extra);
    assert_ok(&out);
    let (_, images) = read_layout(&dir.join("out"), "latest");
    assert_eq!(file_text(&images[0], "x"), "x");
    assert_eq!(file_text(&images[0], "etc/os-release"), "ID=good\n");
}

fn recipe_dir(scratch: &Scratch, name: &str) -> std::path::PathBuf {
    let recipe = scratch.recipe(name, RECIPE, &[("files/x", "x")]);
    recipe.parent().unwrap().to_path_buf()
}

#[test]
fn a_gzip_bomb_is_refused_at_import_naming_the_base_and_the_figures() {
    let scratch = Scratch::new();
    let dir = recipe_dir(&scratch, "bomb");
    // 1 GiB of zeros in about 1 MiB; the rootfs import hashes the file, and its check
    // stops at the entry's header, before anything is stored.
    let base = bomb(Bomb::Gzip, 1 << 30);
    assert_refused_then_good_build(
        &dir,
        &base,
        &["--max-unpack-size", "16M"],
        &[
            "base rootfs:base.tar.gz: layer entry \"zeros\"",
            "size limit of 16 MiB (16777216 bytes) is reached: 0 bytes were unpacked before this entry of 1 GiB (1073741824 bytes)",
        ],
    );
}

/// zstd and xz bases are converted to gzip; the conversion reads the tarball as the
/// check does, so a 10 GiB bomb stops at its header instead of being recompressed. (The
/// compression is detected from the bytes: the file keeps the recipe's name.)
#[test]
fn zstd_and_xz_bombs_stop_at_their_header_without_being_converted() {
    for (name, format) in [("zstd", Bomb::Zstd), ("xz", Bomb::Xz)] {
        let scratch = Scratch::new();
        let dir = recipe_dir(&scratch, name);
        assert_refused_then_good_build(
            &dir,
            &bomb(format, 10 << 30),
            &["--max-unpack-size", "16M"],
            &[
                "base rootfs:base.tar.gz: layer entry \"zeros\"",
                "size limit of 16 MiB (16777216 bytes) is reached: 0 bytes were unpacked before this entry of 10 GiB (10737418240 bytes)",
            ],
        );
    }
}

/// Plain zeros are an empty tar with 1 GiB of padding: the conversion stops at twice the
/// limit.
#[test]
fn a_zstd_stream_of_zeros_stops_at_twice_the_limit() {
    let scratch = Scratch::new();
    let dir = recipe_dir(&scratch, "zeros");
    assert_refused_then_good_build(
        &dir,
        &zeros_bomb(Bomb::Zstd, 1 << 30),
        &["--max-unpack-size", "16M"],
        &[
            "base rootfs:base.tar.gz",
            "the decompressed tar stream is longer than 32 MiB (33554432 bytes), twice the unpacked size limit",
        ],
    );
}

#[test]
fn the_limit_counts_what_earlier_entries_unpacked() {
    let scratch = Scratch::new();
    let dir = recipe_dir(&scratch, "limit");
    let base = gzip(
        &RawTar::new()
            .file("a", &[1u8; 3000])
            .file("b", &[2u8; 3000])
            .finish(),
    );
    assert_refused_then_good_build(
        &dir,
        &base,
        &["--max-unpack-size", "4k"],
        &[
            "layer entry \"b\"",
            "limit of 4 KiB (4096 bytes) is reached: 2.9 KiB (3000 bytes) were unpacked",
        ],
    );
}

#[test]
fn a_1_tib_sparse_entry_is_refused_by_the_default_limit_without_writing_it() {
    let scratch = Scratch::new();
    let dir = recipe_dir(&scratch, "sparse");
    let base = gzip(
        &RawTar::new()
            .sparse("huge", 1 << 40, &[(0, b"head"), ((1 << 40) - 4, b"tail")])
            .finish(),
    );
    assert_refused_then_good_build(
        &dir,
        &base,
        &[],
        &["layer entry \"huge\"", "this entry of 1 TiB"],
    );
}

#[test]
fn a_symlink_carrying_a_hidden_file_is_refused_when_the_base_is_imported() {
    let scratch = Scratch::new();
    let dir = recipe_dir(&scratch, "hidden");
    let smuggled = RawTar::new().file("hidden", b"surprise").finish()[..1024].to_vec();
    let base = gzip(
        &RawTar::new()
            .raw(b'2', b"link", smuggled.len() as u64, &smuggled, b"target")
            .finish(),
    );
    assert_refused_then_good_build(
        &dir,
        &base,
        &[],
        &[
            "layer entry \"link\"",
            "a symlink header carries 1024 bytes of data",
        ],
    );
}

#[test]
fn bad_max_unpack_size_is_a_usage_error() {
    let scratch = Scratch::new();
    let dir = recipe_dir(&scratch, "usage");
    let out = build(
        &dir,
        &gzip(&RawTar::new().finish()),
        &["--max-unpack-size", "lots"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"lots\" is not a size"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_empty_base_file_is_refused_naming_it() {
    let scratch = Scratch::new();
    let dir = recipe_dir(&scratch, "empty");
    assert_refused_then_good_build(
        &dir,
        b"",
        &[],
        &[
            "base rootfs:base.tar.gz:",
            "base.tar.gz is empty, not a root filesystem tarball",
        ],
    );
}
