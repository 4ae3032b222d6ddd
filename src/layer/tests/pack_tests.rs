use super::*;
use crate::digest::Digest;
use crate::layer::pack::{PackOptions, pack_changes, write_tar};
use crate::layer::snapshot::{Change, ChangeKind, ChangeSet, Snapshotter, WalkSnapshotter};
use crate::layer::unpack::apply_blob;
use std::os::unix::fs::PermissionsExt;

/// A change set listing every entry below `root` as added, in walk order.
fn everything_added(root: &Path) -> ChangeSet {
    let changes = walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| Change {
            path: e.unwrap().path().strip_prefix(root).unwrap().to_path_buf(),
            kind: ChangeKind::Added,
        })
        .collect();
    ChangeSet {
        changes,
        ..ChangeSet::default()
    }
}

fn changes(list: &[(&str, ChangeKind)]) -> ChangeSet {
    ChangeSet {
        changes: list
            .iter()
            .map(|(p, k)| Change {
                path: PathBuf::from(p),
                kind: *k,
            })
            .collect(),
        ..ChangeSet::default()
    }
}

fn tar_bytes(root: &Path, set: &ChangeSet, epoch: i64) -> Vec<u8> {
    write_tar(
        root,
        set,
        &PackOptions {
            epoch,
            ..Default::default()
        },
        Vec::new(),
    )
    .unwrap()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The same logical tree, built in one of two orders, with mtimes left at "now" or set to
/// `mtime`.
fn build_tree(root: &Path, reverse_order: bool, mtime: Option<i64>) {
    let mut files: Vec<(&str, &[u8], u32)> = vec![
        ("a", b"alpha", 0o644),
        ("b/z", b"zulu", 0o600),
        ("b/a", b"", 0o755),
        ("c/d/e", b"echo", 0o4755),
        ("c-sibling", b"dash sorts before slash", 0o644),
    ];
    if reverse_order {
        files.reverse();
    }
    for (path, body, mode) in &files {
        write(&root.join(path), body);
        chmod(&root.join(path), *mode);
    }
    fs::hard_link(root.join("a"), root.join("hardlink-to-a")).unwrap();
    std::os::unix::fs::symlink("c/d/e", root.join("symlink")).unwrap();
    let xattrs = [("user.one", b"1"), ("user.two", b"2")];
    for (name, value) in if reverse_order {
        xattrs.iter().rev().collect::<Vec<_>>()
    } else {
        xattrs.iter().collect()
    } {
        xattr::set(root.join("b/z"), name, *value).unwrap();
    }
    for dir in ["b", "c", "c/d"] {
        chmod(&root.join(dir), 0o755);
    }
    if let Some(mtime) = mtime {
        // Deepest first, so setting a child does not disturb a parent already set.
        let mut all: Vec<PathBuf> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .collect();
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for path in all {
            set_mtime(&path, mtime);
        }
    }
}

#[test]
fn the_same_tree_gives_the_same_bytes_whatever_its_history() {
    let epoch = 1_700_000_000;
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    build_tree(first.path(), false, None);
    build_tree(second.path(), true, Some(2_000_000_000));

    let a = tar_bytes(first.path(), &everything_added(first.path()), epoch);
    let again = tar_bytes(first.path(), &everything_added(first.path()), epoch);
    let b = tar_bytes(second.path(), &everything_added(second.path()), epoch);
    assert_eq!(a, again, "packing the same tree twice");
    assert_eq!(
        a, b,
        "a copy built in another order, with other mtimes, elsewhere"
    );

    let opts = PackOptions {
        epoch,
        ..Default::default()
    };
    let (gz_a, layer_a) = pack_changes(
        first.path(),
        &everything_added(first.path()),
        &opts,
        Vec::new(),
    )
    .unwrap();
    let (gz_b, layer_b) = pack_changes(
        second.path(),
        &everything_added(second.path()),
        &opts,
        Vec::new(),
    )
    .unwrap();
    assert_eq!(gz_a, gz_b);
    assert_eq!(layer_a, layer_b);
    // The digests describe exactly the bytes produced.
    assert_eq!(layer_a.digest, Digest::of(&gz_a));
    assert_eq!(layer_a.diff_id, Digest::of(&a));
    assert_eq!(layer_a.size, gz_a.len() as u64);
    assert_eq!(layer_a.entries, list_tar(&a).len() as u64);
    assert_eq!(&gz_a[4..8], &[0, 0, 0, 0], "gzip mtime");
    assert_eq!(gz_a[3], 0, "no gzip file name or other optional fields");
}

#[test]
fn every_compression_holds_the_same_tar_and_only_the_setting_changes_the_bytes() {
    use crate::layer::compress::{LayerCompression, decompressor};
    use std::io::Read;
    let tree = tempfile::tempdir().unwrap();
    build_tree(tree.path(), false, None);
    // A file big enough that gzip spans several blocks and threads.
    let big: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(i) % 253) as u8)
        .collect();
    write(&tree.path().join("big"), &big);
    let set = everything_added(tree.path());
    let tar = tar_bytes(tree.path(), &set, 0);
    let mut blobs = Vec::new();
    for (compression, media_type) in [
        (
            LayerCompression::Gzip(6),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            LayerCompression::Gzip(1),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            LayerCompression::Zstd(3),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            LayerCompression::Zstd(19),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            LayerCompression::None,
            "application/vnd.oci.image.layer.v1.tar",
        ),
    ] {
        let pack = |threads| {
            let opts = PackOptions {
                epoch: 0,
                compression,
                gzip_threads: threads,
            };
            pack_changes(tree.path(), &set, &opts, Vec::new()).unwrap()
        };
        let (blob, layer) = pack(1);
        assert!(
            pack(4) == (blob.clone(), layer.clone()),
            "{compression}: 4 threads"
        );
        assert_eq!(layer.media_type, media_type);
        assert_eq!(layer.digest, Digest::of(&blob), "{compression}");
        assert_eq!(layer.size, blob.len() as u64);
        assert_eq!(layer.diff_id, Digest::of(&tar), "{compression}");
        let mut unpacked = Vec::new();
        decompressor(&blob[..])
            .unwrap()
            .read_to_end(&mut unpacked)
            .unwrap();
        assert!(
            unpacked == tar,
            "{compression} does not decompress to the tar"
        );
        blobs.push(blob);
    }
    assert_eq!(blobs[4], tar, "none is the tar itself");
    for (i, a) in blobs.iter().enumerate() {
        for b in &blobs[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn entries_are_depth_first_by_name_bytes_with_ancestors_first() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for file in ["a/b/c", "a/b/d", "a-x", "z", "a/b-y"] {
        write(&r.join(file), b"x");
    }
    let set = changes(&[
        ("z", ChangeKind::Added),
        ("a/b/c", ChangeKind::Modified),
        ("a-x", ChangeKind::Added),
    ]);
    let listing = list_tar(&tar_bytes(r, &set, 0));
    assert_eq!(paths(&listing), ["a/", "a/b/", "a/b/c", "a-x", "z"]);
}

#[test]
fn deletions_become_top_most_whiteouts_and_a_directory_made_again_names_what_it_lost() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for file in [
        "del-file",
        "deldir/sub/x",
        "keep",
        "rep/old",
        "rep/kept-name",
        "sub/gone",
    ] {
        write(&r.join(file), b"lower");
    }
    let mut snap = WalkSnapshotter::new(r.to_path_buf());
    snap.begin().unwrap();
    fs::remove_file(r.join("del-file")).unwrap();
    fs::remove_dir_all(r.join("deldir")).unwrap();
    fs::remove_file(r.join("sub/gone")).unwrap();
    write(&r.join("rep.new/kept-name"), b"upper");
    write(&r.join("rep.new/-first"), b"sorts before the marker's name");
    fs::remove_dir_all(r.join("rep")).unwrap();
    fs::rename(r.join("rep.new"), r.join("rep")).unwrap();
    let set = snap.changes().unwrap();

    let epoch = 1_000;
    let listing = list_tar(&tar_bytes(r, &set, epoch));
    assert_eq!(
        paths(&listing),
        [
            ".wh.del-file",
            ".wh.deldir",
            "rep/",
            "rep/-first",
            "rep/.wh.old",
            "rep/kept-name",
            "sub/",
            "sub/.wh.gone",
        ]
    );
    for whiteout in listing.iter().filter(|e| e.path.contains(".wh.")) {
        assert_eq!(whiteout.kind, EntryType::Regular, "{}", whiteout.path);
        assert_eq!(
            (whiteout.mode, whiteout.uid, whiteout.gid),
            (0o644, 0, 0),
            "{}",
            whiteout.path
        );
        assert_eq!(whiteout.mtime, epoch as u64, "{}", whiteout.path);
    }
}

#[test]
fn hardlinks_are_written_once_then_linked() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(&r.join("f1"), b"shared");
    fs::hard_link(r.join("f1"), r.join("f2")).unwrap();
    write(&r.join("g1"), b"other link not in this layer");
    fs::hard_link(r.join("g1"), r.join("g2")).unwrap();
    let set = changes(&[
        ("f1", ChangeKind::Added),
        ("f2", ChangeKind::Added),
        ("g1", ChangeKind::Added),
    ]);
    let listing = list_tar(&tar_bytes(r, &set, 0));
    assert_eq!(paths(&listing), ["f1", "f2", "g1"]);
    assert_eq!(listing[0].kind, EntryType::Regular);
    assert_eq!(
        (listing[1].kind, listing[1].link.as_deref()),
        (EntryType::Link, Some("f1"))
    );
    assert_eq!(listing[2].kind, EntryType::Regular);
}

#[test]
fn mtimes_are_clamped_to_the_epoch() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(&r.join("d/old"), b"o");
    write(&r.join("d/new"), b"n");
    write(&r.join("d/before-1970"), b"b");
    set_mtime(&r.join("d/old"), 10);
    set_mtime(&r.join("d/new"), 5_000);
    set_mtime(&r.join("d/before-1970"), -5);
    set_mtime(&r.join("d"), 999_999);
    let set = changes(&[
        ("d/old", ChangeKind::Added),
        ("d/new", ChangeKind::Added),
        ("d/before-1970", ChangeKind::Added),
    ]);
    let listing = list_tar(&tar_bytes(r, &set, 1_000));
    let mtimes: Vec<(&str, u64)> = listing.iter().map(|e| (e.path.as_str(), e.mtime)).collect();
    assert_eq!(
        mtimes,
        [
            ("d/", 1_000),
            ("d/before-1970", 0),
            ("d/new", 1_000),
            ("d/old", 10)
        ]
    );
}

#[test]
fn headers_carry_numeric_ids_sorted_xattrs_and_the_recorded_owner() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(&r.join("f"), b"x");
    chmod(&r.join("f"), 0o4750);
    xattr::set(r.join("f"), "user.zz", b"last").unwrap();
    xattr::set(r.join("f"), "user.aa", b"first").unwrap();
    xattr::set(r.join("f"), "user.xbake.owner", b"123:456").unwrap();
    xattr::set(r.join("f"), "user.xbake.other", b"private").unwrap();
    write(&r.join("plain"), b"y");
    let listing = list_tar(&tar_bytes(
        r,
        &changes(&[("f", ChangeKind::Added), ("plain", ChangeKind::Added)]),
        0,
    ));
    let f = &listing[0];
    assert_eq!(
        (f.uid, f.gid),
        (123, 456),
        "user.xbake.owner overrides the on-disk owner"
    );
    assert_eq!(f.mode, 0o4750);
    assert!(f.uname.is_empty() && f.gname.is_empty());
    let keys: Vec<&str> = f.pax.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["SCHILY.xattr.user.aa", "SCHILY.xattr.user.zz"]);
    let plain = &listing[1];
    let meta = fs::metadata(r.join("plain")).unwrap();
    assert_eq!(
        (plain.uid, plain.gid),
        (u64::from(meta.uid()), u64::from(meta.gid()))
    );
    assert!(
        plain.pax.is_empty(),
        "no atime/ctime or other records: {:?}",
        plain.pax
    );

    xattr::set(r.join("plain"), "user.xbake.owner", b"nonsense").unwrap();
    let err = write_tar(
        r,
        &changes(&[("plain", ChangeKind::Added)]),
        &PackOptions::default(),
        Vec::new(),
    )
    .unwrap_err();
    assert!(chain(&err).contains("plain"), "{}", chain(&err));
}

#[test]
fn names_that_look_like_whiteouts_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(&r.join("d/.wh.sneaky"), b"");
    write(&r.join("d/.wh..wh..opq"), b"");
    for path in ["d/.wh.sneaky", "d/.wh..wh..opq"] {
        let err = write_tar(
            r,
            &changes(&[(path, ChangeKind::Added)]),
            &PackOptions::default(),
            Vec::new(),
        )
        .unwrap_err();
        assert!(
            matches!(err, LayerError::ReservedName { .. }),
            "{}",
            chain(&err)
        );
        assert!(chain(&err).contains(path), "{}", chain(&err));
    }
}

#[test]
fn sockets_are_skipped_and_long_names_survive() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let _listener = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
    let long = format!("{}/{}", "n".repeat(90), "m".repeat(90));
    let target = format!("/{}", "t".repeat(200));
    write(&r.join(&long), b"long");
    std::os::unix::fs::symlink(&target, r.join("longlink")).unwrap();
    let set = changes(&[
        ("sock", ChangeKind::Added),
        (&long, ChangeKind::Added),
        ("longlink", ChangeKind::Added),
    ]);
    let listing = list_tar(&tar_bytes(r, &set, 0));
    assert_eq!(
        paths(&listing),
        [
            "longlink",
            format!("{}/", "n".repeat(90)).as_str(),
            long.as_str()
        ]
    );
    assert_eq!(listing[0].link.as_deref(), Some(target.as_str()));
}

#[test]
fn a_packed_step_applied_onto_the_lower_tree_reproduces_the_upper_tree() {
    let work = tempfile::tempdir().unwrap();
    let lower = work.path().join("lower");
    for file in [
        "etc/hosts",
        "usr/bin/tool",
        "var/lib/data/1",
        "var/lib/data/2",
        "opt/rep/a",
        "retype/child",
        "keep",
    ] {
        write(&lower.join(file), file.as_bytes());
    }
    xattr::set(lower.join("keep"), "user.lower", b"yes").unwrap();
    let upper = work.path().join("upper");
    let target = work.path().join("target");
    copy_tree(&lower, &upper);
    copy_tree(&lower, &target);

    let mut snap = WalkSnapshotter::new(upper.clone());
    snap.begin().unwrap();
    let u = &upper;
    write(&u.join("etc/hosts"), b"127.0.0.1 changed\n");
    write(&u.join("etc/new.conf"), b"new");
    xattr::set(u.join("etc/new.conf"), "user.note", b"added by the step").unwrap();
    chmod(&u.join("usr/bin/tool"), 0o4755);
    fs::remove_dir_all(u.join("var/lib/data")).unwrap();
    write(&u.join("opt/rep.new/b"), b"b");
    fs::remove_dir_all(u.join("opt/rep")).unwrap();
    fs::rename(u.join("opt/rep.new"), u.join("opt/rep")).unwrap();
    fs::remove_dir_all(u.join("retype")).unwrap();
    write(&u.join("retype"), b"was a directory");
    std::os::unix::fs::symlink("usr/bin/tool", u.join("newlink")).unwrap();
    write(&u.join("links/h1"), b"linked");
    fs::hard_link(u.join("links/h1"), u.join("links/h2")).unwrap();
    nix::unistd::mkfifo(
        &u.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    write(
        &u.join(format!("deep/{}/file", "p".repeat(150))),
        b"long path",
    );
    let set = snap.changes().unwrap();

    let opts = PackOptions {
        epoch: i64::MAX,
        ..Default::default()
    };
    let (blob, layer) = pack_changes(&upper, &set, &opts, Vec::new()).unwrap();
    let (report, _) = apply_blob(
        &RootDir::open(&target).unwrap(),
        &blob[..],
        &layer.digest,
        Some(&layer.diff_id),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.entries, layer.entries);

    let (expected, actual) = (describe_tree(&upper), describe_tree(&target));
    for (path, want) in &expected {
        assert_eq!(actual.get(path), Some(want), "{}", path.display());
    }
    assert_eq!(
        expected.len(),
        actual.len(),
        "extra entries: {:?}",
        actual
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .collect::<Vec<_>>()
    );
}

/// `cargo test --release --lib -- --ignored 10k_entries --nocapture` prints the figures.
#[test]
#[ignore = "timing figure; run in release mode"]
fn pack_and_unpack_of_10k_entries_timing() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    for d in 0..100 {
        for f in 0..99 {
            write(&tree.join(format!("dir{d:03}/file{f:03}")), &[b'x'; 1000]);
        }
    }
    let set = everything_added(&tree);
    let started = std::time::Instant::now();
    let (blob, layer) = pack_changes(&tree, &set, &PackOptions::default(), Vec::new()).unwrap();
    let packed = started.elapsed();
    let target = work.path().join("target");
    fs::create_dir(&target).unwrap();
    let started = std::time::Instant::now();
    let (report, _) = apply_blob(
        &RootDir::open(&target).unwrap(),
        &blob[..],
        &layer.digest,
        Some(&layer.diff_id),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    let unpacked = started.elapsed();
    println!(
        "10,000 entries of 1 kB: pack {packed:?} ({} gzip bytes), apply_blob {unpacked:?} ({} warnings)",
        layer.size,
        report.warnings.len()
    );
    assert_eq!(report.entries, layer.entries);
}
