//! Hostile archives (issue 8, items 11 and 12): bombs stop at the unpack limit, sparse
//! entries keep their holes, extension headers are bounded, PAX records are read by
//! length, and whatever readers would disagree on is refused — in unpack and in
//! check_layer alike, and with the same listing as Python's tarfile.

use super::hostile_tar::{Bomb, RawTar, bomb, python_listing, zeros_bomb};
use super::*;
use crate::digest::Digest;
use crate::layer::compress::decompressor;
use crate::layer::tar_reader::{MAX_EXTENSION_SIZE, parse_pax};
use crate::layer::unpack::{
    DEFAULT_MAX_UNPACK_SIZE, UnpackBudget, apply_blob, check_layer, default_unpack_limit,
};
use std::io::Read;
use std::os::unix::fs::FileExt;

const GIB: u64 = 1 << 30;

fn apply(root: &Path, tar: &[u8], budget: &mut UnpackBudget) -> Result<UnpackReport, LayerError> {
    apply_layer(&RootDir::open(root)?, tar, budget)
}

fn apply_unlimited(root: &Path, tar: &[u8]) -> Result<UnpackReport, LayerError> {
    apply(root, tar, &mut UnpackBudget::unlimited())
}

/// Both readers of a layer refuse `tar`; returns the unpack error's text after checking
/// check_layer says the same.
/// Unpacks a whole layer blob into `root` within `budget`; the error it must end in.
fn unpack_blob_refused(root: &Path, blob: &[u8], budget: &mut UnpackBudget) -> LayerError {
    apply_blob(
        &RootDir::open(root).unwrap(),
        blob,
        &Digest::of(blob),
        None,
        budget,
    )
    .unwrap_err()
}

fn refused_everywhere(tar: &[u8]) -> String {
    let root = tempfile::tempdir().unwrap();
    let unpacked = chain(&apply_unlimited(root.path(), tar).unwrap_err());
    let checked = chain(&check_layer(tar, &mut UnpackBudget::unlimited()).unwrap_err());
    assert_eq!(unpacked, checked, "unpack and check_layer disagree");
    unpacked
}

#[test]
fn the_default_limit_is_64_gib_or_the_free_space_whichever_is_smaller() {
    assert_eq!(DEFAULT_MAX_UNPACK_SIZE, 64 * GIB);
    assert_eq!(default_unpack_limit(None), 64 * GIB);
    assert_eq!(default_unpack_limit(Some(10 * GIB)), 10 * GIB);
    assert_eq!(default_unpack_limit(Some(64 * GIB)), 64 * GIB);
    assert_eq!(default_unpack_limit(Some(64 * GIB + 1)), 64 * GIB);
    assert_eq!(default_unpack_limit(Some(u64::MAX)), 64 * GIB);
    assert_eq!(default_unpack_limit(Some(0)), 0);
}

#[test]
fn the_bomb_builder_makes_the_stream_it_claims() {
    // A small bomb of each format decodes to the whole claimed size (so the 10 GiB ones
    // below really are 10 GiB of tar).
    for format in [Bomb::Gzip, Bomb::Zstd, Bomb::Xz] {
        let blob = bomb(format, 32 << 20);
        let mut tar = Vec::new();
        decompressor(&blob[..])
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(tar.len(), 512 + (32 << 20) + 1024, "{format:?}");
        let root = tempfile::tempdir().unwrap();
        apply_unlimited(root.path(), &tar).unwrap();
        assert_eq!(
            fs::metadata(root.path().join("zeros")).unwrap().len(),
            32 << 20
        );
    }
}

#[test]
fn a_10_gib_bomb_stops_at_the_limit_before_writing_it_in_every_format() {
    for format in [Bomb::Gzip, Bomb::Zstd, Bomb::Xz] {
        let blob = bomb(format, 10 * GIB);
        assert!(blob.len() < 12 << 20, "{format:?}: {} bytes", blob.len());
        let root = tempfile::tempdir().unwrap();
        let mut budget = UnpackBudget::new(16 << 20);
        let err = unpack_blob_refused(root.path(), &blob, &mut budget);
        let text = chain(&err);
        assert!(
            text.contains("layer entry \"zeros\"")
                && text.contains("size limit of 16 MiB (16777216 bytes)")
                && text.contains(
                    "0 bytes were unpacked before this entry of 10 GiB (10737418240 bytes)"
                )
                && text.contains("--max-unpack-size"),
            "{format:?}: {text}"
        );
        assert!(
            !root.path().join("zeros").exists(),
            "{format:?}: the bomb was written"
        );
        assert_eq!(budget.used(), 0);
    }
}

#[test]
fn check_layer_refuses_a_10_gib_bomb_at_its_header_as_unpacking_does() {
    for format in [Bomb::Gzip, Bomb::Zstd, Bomb::Xz] {
        let blob = bomb(format, 10 * GIB);
        let root = tempfile::tempdir().unwrap();
        let unpacked = unpack_blob_refused(root.path(), &blob, &mut UnpackBudget::new(16 << 20));
        let mut budget = UnpackBudget::new(16 << 20);
        let checked = check_layer(decompressor(&blob[..]).unwrap(), &mut budget).unwrap_err();
        assert_eq!(chain(&checked), chain(&unpacked), "{format:?}");
        assert!(
            chain(&checked).contains("this entry of 10 GiB"),
            "{format:?}"
        );
        assert_eq!(budget.used(), 0);
    }
}

#[test]
fn a_stream_of_zeros_stops_at_twice_the_limit_in_every_reader() {
    // 1 GiB of zeros is a valid empty tar plus padding: no entry reaches the budget, the
    // stream's length does.
    for format in [Bomb::Gzip, Bomb::Zstd, Bomb::Xz] {
        let blob = zeros_bomb(format, GIB);
        let expected = "the decompressed tar stream is longer than 32 MiB (33554432 bytes), \
                        twice the unpacked size limit";
        let root = tempfile::tempdir().unwrap();
        let unpacked = unpack_blob_refused(root.path(), &blob, &mut UnpackBudget::new(16 << 20));
        assert!(
            chain(&unpacked).contains(expected),
            "{format:?}: {}",
            chain(&unpacked)
        );
        let checked = check_layer(
            decompressor(&blob[..]).unwrap(),
            &mut UnpackBudget::new(16 << 20),
        )
        .unwrap_err();
        assert_eq!(chain(&checked), chain(&unpacked), "{format:?}");
    }
    // Padding after the end-of-archive marker is fine while the stream stays within twice
    // the limit, and exactly twice is allowed.
    let limit = 4096;
    let mut tar = RawTar::new().file("f", &[7u8; 4096]).finish();
    tar.resize(2 * limit as usize, 0);
    check_layer(&tar[..], &mut UnpackBudget::new(limit)).unwrap();
    tar.push(0);
    let text = chain(&check_layer(&tar[..], &mut UnpackBudget::new(limit)).unwrap_err());
    assert!(text.contains("longer than 8 KiB (8192 bytes)"), "{text}");
}

#[test]
fn the_limit_counts_every_layer_of_the_rootfs_and_allows_exactly_the_limit() {
    let root = tempfile::tempdir().unwrap();
    let mut budget = UnpackBudget::new(10);
    let first = RawTar::new().file("a", b"123456").dir("d/").finish();
    apply(root.path(), &first, &mut budget).unwrap();
    let exactly = RawTar::new().file("b", b"1234").finish();
    apply(root.path(), &exactly, &mut budget).unwrap();
    assert_eq!(budget.used(), 10);
    let over = RawTar::new().file("c", b"1").finish();
    let text = chain(&apply(root.path(), &over, &mut budget).unwrap_err());
    assert!(
        text.contains("layer entry \"c\"")
            && text.contains(
                "limit of 10 bytes is reached: 10 bytes were unpacked before this entry of 1 bytes"
            ),
        "{text}"
    );
    assert!(!root.path().join("c").exists());
}

#[test]
fn sparse_entries_keep_their_holes() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let tar = RawTar::new()
        .sparse(
            "holey",
            1 << 20,
            &[(0, b"head"), (8192, b"middle"), ((1 << 20) - 4, b"tail")],
        )
        .finish();
    let report = apply_unlimited(r, &tar).unwrap();
    assert_eq!(report.entries, 1);
    let mut expected = vec![0u8; 1 << 20];
    expected[..4].copy_from_slice(b"head");
    expected[8192..8198].copy_from_slice(b"middle");
    expected[(1 << 20) - 4..].copy_from_slice(b"tail");
    assert!(
        fs::read(r.join("holey")).unwrap() == expected,
        "contents differ"
    );
    // Three chunks: a few file system blocks, not the 2048 sectors of 1 MiB.
    let blocks = fs::metadata(r.join("holey")).unwrap().blocks();
    assert!(
        blocks <= 3 * 8 * 4,
        "{blocks} blocks of 512 bytes: holes were written"
    );
}

#[test]
fn a_1_tib_sparse_entry_is_a_hole_under_a_large_limit_and_refused_by_the_default() {
    const TIB: u64 = 1 << 40;
    let tar = RawTar::new()
        .sparse("huge", TIB, &[(0, b"head"), (TIB - 4, b"tail")])
        .finish();

    let root = tempfile::tempdir().unwrap();
    let mut budget = UnpackBudget::new(2 * TIB);
    apply(root.path(), &tar, &mut budget).unwrap();
    assert_eq!(budget.used(), TIB, "holes count at their apparent size");
    let file = fs::File::open(root.path().join("huge")).unwrap();
    let meta = file.metadata().unwrap();
    assert_eq!(meta.len(), TIB);
    assert!(
        meta.blocks() <= 64,
        "{} blocks: the holes were written",
        meta.blocks()
    );
    let mut end = [0u8; 4];
    file.read_exact_at(&mut end, TIB - 4).unwrap();
    assert_eq!(&end, b"tail");

    let root = tempfile::tempdir().unwrap();
    let mut budget = UnpackBudget::new(default_unpack_limit(None));
    let text = chain(&apply(root.path(), &tar, &mut budget).unwrap_err());
    assert!(
        text.contains("layer entry \"huge\"") && text.contains("this entry of 1 TiB"),
        "{text}"
    );
    assert!(!root.path().join("huge").exists());
}

/// A tar header for `hidden`, to be smuggled as the data of a header-only entry.
fn hidden_member() -> Vec<u8> {
    let inner = RawTar::new().file("hidden", b"surprise").finish();
    inner[..1024].to_vec()
}

#[test]
fn header_only_entries_carrying_data_are_refused_naming_the_entry() {
    for (kind, name, what) in [
        (b'2', "link", "symlink"),
        (b'1', "hard", "hard link"),
        (b'5', "dir/", "directory"),
    ] {
        let smuggled = hidden_member();
        let tar = RawTar::new()
            .file("target", b"t")
            .raw(
                kind,
                name.as_bytes(),
                smuggled.len() as u64,
                &smuggled,
                b"target",
            )
            .finish();
        let text = refused_everywhere(&tar);
        assert!(
            text.contains(&format!("layer entry \"{name}\""))
                && text.contains(&format!("a {what} header carries 1024 bytes of data")),
            "{text}"
        );
    }
}

#[test]
fn a_pax_path_with_a_newline_is_accepted_and_later_records_still_apply() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // The header says 0 bytes; the PAX `size` after the newline record says 5. Reading
    // records by line would lose it and take "hello" for the next header.
    let tar = RawTar::new()
        .dir("dir/")
        .pax(b'x', &[(b"path", b"dir/new\nline"), (b"size", b"5")])
        .raw(b'0', b"placeholder", 0, b"hello", b"")
        .file("after", b"ok")
        .finish();
    apply_unlimited(r, &tar).unwrap();
    assert_eq!(fs::read(r.join("dir/new\nline")).unwrap(), b"hello");
    assert_eq!(fs::read(r.join("after")).unwrap(), b"ok");
    assert!(!r.join("placeholder").exists());
    check_layer(&tar[..], &mut UnpackBudget::unlimited()).unwrap();
}

#[test]
fn extension_headers_over_1_mib_are_refused_with_the_figures() {
    for (kind, what) in [
        (b'x', "PAX extended"),
        (b'L', "GNU long name"),
        (b'g', "PAX global"),
    ] {
        // The claimed size is checked before anything is read.
        let tar = RawTar::new()
            .raw(kind, b"ext", MAX_EXTENSION_SIZE + 1, b"", b"")
            .file("x", b"x")
            .finish();
        let text = refused_everywhere(&tar);
        assert!(
            text.contains(&format!(
                "a {what} header of 1048577 bytes is larger than the limit of 1048576 bytes"
            )),
            "{text}"
        );
    }
    // Exactly at the limit is fine.
    let comment = vec![b'c'; MAX_EXTENSION_SIZE as usize - 20];
    let tar = RawTar::new()
        .pax(b'x', &[(b"comment", &comment)])
        .file("x", b"x")
        .finish();
    let root = tempfile::tempdir().unwrap();
    apply_unlimited(root.path(), &tar).unwrap();
    assert_eq!(fs::read(root.path().join("x")).unwrap(), b"x");
}

#[test]
fn headers_readers_disagree_on_are_refused() {
    let global_path = RawTar::new()
        .pax(b'g', &[(b"path", b"everything")])
        .file("a", b"a")
        .finish();
    let text = refused_everywhere(&global_path);
    assert!(text.contains("a PAX global header sets \"path\""), "{text}");

    let two_pax = RawTar::new()
        .pax(b'x', &[(b"path", b"one")])
        .pax(b'x', &[(b"path", b"two")])
        .file("a", b"a")
        .finish();
    let text = refused_everywhere(&two_pax);
    assert!(
        text.contains("two PAX extended headers describe the same entry"),
        "{text}"
    );

    let pax_sparse = RawTar::new()
        .pax(
            b'x',
            &[(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0")],
        )
        .file("GNUSparseFile.0/a", b"a")
        .finish();
    let text = refused_everywhere(&pax_sparse);
    assert!(
        text.contains("PAX GNU sparse entries (GNU.sparse.major) are not supported"),
        "{text}"
    );

    let dangling = {
        let mut t = RawTar::new().pax(b'x', &[(b"path", b"x")]).finish();
        t.truncate(t.len() - 1024);
        t
    };
    let text = refused_everywhere(&dangling);
    assert!(
        text.contains("extension headers that describe no entry"),
        "{text}"
    );

    // A global header with only a comment (git archive writes one) is harmless.
    let comment = RawTar::new()
        .pax(b'g', &[(b"comment", b"0123abcd")])
        .file("a", b"a")
        .finish();
    let root = tempfile::tempdir().unwrap();
    assert_eq!(apply_unlimited(root.path(), &comment).unwrap().entries, 1);
}

#[test]
fn pax_records_are_parsed_by_their_length() {
    let records = parse_pax(b"16 path=a\nb\nc=d\n8 uid=7\n\0\0").unwrap();
    assert_eq!(
        records,
        vec![
            (b"path".to_vec(), b"a\nb\nc=d".to_vec()),
            (b"uid".to_vec(), b"7".to_vec())
        ]
    );
    for (bad, reason) in [
        (&b"x path=a\n"[..], "the length is not a decimal number"),
        (b"99 path=a\n", "the length runs past the header"),
        (b"10 path=ab", "the record does not end with a newline"),
        (b"9 patha\n\n", "no '=' in the record"),
        (b"6 =ab\n", "an empty key"),
        (b"path=a\n", "no length"),
    ] {
        let err = parse_pax(bad).unwrap_err().to_string();
        assert!(err.contains(reason), "{bad:?}: {err}");
    }
}

/// Every path below `root` with its size (directories 0), sorted.
fn unpacked_tree(root: &Path) -> Vec<(Vec<u8>, u64)> {
    let mut tree: Vec<(Vec<u8>, u64)> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let meta = e.path().symlink_metadata().unwrap();
            (rel, if meta.is_file() { meta.len() } else { 0 })
        })
        .collect();
    tree.sort();
    tree
}

/// Python's listing as (name, size), directory names without their slash.
fn python_tree(listing: &[String]) -> Vec<(Vec<u8>, u64)> {
    let mut tree: Vec<(Vec<u8>, u64)> = listing
        .iter()
        .map(|line| {
            let (name, rest) = line.rsplit_once(' ').unwrap();
            let (name, kind) = name.rsplit_once(' ').unwrap();
            let size: u64 = rest.parse().unwrap();
            // A bytes literal: b'...' with Python's escapes; the tests use only \n.
            let bytes = name[2..name.len() - 1].replace("\\n", "\n").into_bytes();
            let bytes = bytes.strip_suffix(b"/").unwrap_or(&bytes).to_vec();
            (bytes, if kind == "5" { 0 } else { size })
        })
        .collect();
    tree.sort();
    tree
}

#[test]
fn python_tarfile_lists_the_tree_xbake_unpacks() {
    let work = tempfile::tempdir().unwrap();
    let tricky = RawTar::new()
        .dir("dir/")
        .pax(b'x', &[(b"path", b"dir/new\nline"), (b"size", b"5")])
        .raw(b'0', b"placeholder", 0, b"hello", b"")
        .sparse(
            "dir/sparse",
            1 << 20,
            &[(0, b"head"), ((1 << 20) - 4, b"tail")],
        )
        .pax(b'x', &[(b"path", "long/".repeat(40).as_bytes())])
        .raw(b'5', b"short", 0, b"", b"")
        .file("plain", b"plain")
        .finish();
    let path = work.path().join("tricky.tar");
    fs::write(&path, &tricky).unwrap();
    let Some(listing) = python_listing(&path) else {
        if std::env::var_os("XBAKE_TEST_STRICT").is_some() {
            panic!("required but unavailable: python3");
        }
        eprintln!("skipped: python3 is not installed");
        return;
    };
    let listing = listing.unwrap();
    let root = work.path().join("root");
    fs::create_dir(&root).unwrap();
    apply_unlimited(&root, &tricky).unwrap();
    // xbake creates the long name's implied parents; Python lists only members.
    let mut expected = python_tree(&listing);
    let long = "long/".repeat(40);
    let mut parent = String::new();
    for part in long.trim_end_matches('/').split('/').take(39) {
        parent = if parent.is_empty() {
            part.to_string()
        } else {
            format!("{parent}/{part}")
        };
        expected.push((parent.clone().into_bytes(), 0));
    }
    expected.sort();
    assert_eq!(unpacked_tree(&root), expected, "python: {listing:#?}");

    // A symlink carrying a member: Python lists the hidden file, xbake refuses the
    // archive naming the symlink, so nobody unpacks a tree a scanner did not see.
    let smuggled = hidden_member();
    let hidden = RawTar::new()
        .raw(b'2', b"link", smuggled.len() as u64, &smuggled, b"target")
        .finish();
    let path = work.path().join("hidden.tar");
    fs::write(&path, &hidden).unwrap();
    let listing = python_listing(&path).unwrap().unwrap();
    assert!(
        listing.iter().any(|l| l.starts_with("b'hidden' 0 8")),
        "{listing:?}"
    );
    let text = refused_everywhere(&hidden);
    assert!(
        text.contains("layer entry \"link\": a symlink header carries"),
        "{text}"
    );
}
