use super::*;
use crate::digest::{Digest, DigestError};
use crate::layer::compress::gzip_writer;
use crate::layer::unpack::apply_blob;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn unpacks_files_dirs_links_and_fifos_with_their_metadata() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let report = unpack(
        r,
        &[
            Entry::dir("etc/", 0o755).mtime(500),
            Entry::file("etc/hosts", 0o640, b"127.0.0.1 localhost\n")
                .mtime(12345)
                .owner(0, 42)
                .xattr("user.origin", b"layer-1"),
            Entry::symlink("etc/localhost", "hosts"),
            Entry::hardlink("etc/hosts.bak", "etc/hosts"),
            Entry::dir("bin/", 0o755),
            Entry::file("bin/su", 0o4755, b"#!/bin/true\n"),
            Entry::file("bin/wall", 0o2755, b"wall"),
            Entry::dir("tmp/", 0o1777),
            Entry::dir("run/", 0o755),
            Entry::fifo("run/initctl"),
            Entry::dir("home/", 0o755),
            Entry::dir("home/u/", 0o700).owner(1000, 1000),
            Entry::file("home/u/.profile", 0o600, b"x").owner(1000, 1000),
        ],
    )
    .unwrap();
    assert_eq!(report.entries, 13);
    if is_root() {
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    } else {
        // user.* xattrs exist only on files and directories (xattr(7)): a rootless unpack
        // cannot record a fifo's owner, and says so.
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("run/initctl"),
            "{:?}",
            report.warnings
        );
    }

    assert_eq!(
        fs::read(r.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(mode_of(&r.join("etc/hosts")), 0o640);
    assert_eq!(mtime_of(&r.join("etc/hosts")), 12345);
    assert_owner(&r.join("etc/hosts"), 0, 42);
    assert_eq!(
        xattr::get(r.join("etc/hosts"), "user.origin").unwrap(),
        Some(b"layer-1".to_vec())
    );
    assert_eq!(
        fs::read_link(r.join("etc/localhost")).unwrap(),
        Path::new("hosts")
    );
    let (hosts, bak) = (
        fs::metadata(r.join("etc/hosts")).unwrap(),
        fs::metadata(r.join("etc/hosts.bak")).unwrap(),
    );
    assert_eq!((hosts.ino(), hosts.nlink()), (bak.ino(), 2));
    assert_eq!(
        mode_of(&r.join("bin/su")),
        0o4755,
        "setuid kept after chown"
    );
    assert_eq!(
        mode_of(&r.join("bin/wall")),
        0o2755,
        "setgid kept after chown"
    );
    assert_eq!(mode_of(&r.join("tmp")), 0o1777, "sticky bit");
    assert!(
        fs::symlink_metadata(r.join("run/initctl"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(mode_of(&r.join("run/initctl")), 0o640);
    assert_eq!(mode_of(&r.join("home/u")), 0o700);
    assert_owner(&r.join("home/u"), 1000, 1000);
    assert_owner(&r.join("home/u/.profile"), 1000, 1000);
    // Directory mtimes are applied after their children were created.
    assert_eq!(mtime_of(&r.join("etc")), 500);
    assert_eq!(mtime_of(&r.join("home/u")), TEST_MTIME as i64);
}

#[test]
fn missing_parents_are_created_and_leading_slash_and_dot_stay_inside() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    unpack(
        r,
        &[
            Entry::file("/abs", 0o644, b"abs"),
            Entry::file("./usr/lib/deep/file", 0o644, b"deep"),
        ],
    )
    .unwrap();
    assert_eq!(fs::read(r.join("abs")).unwrap(), b"abs");
    assert_eq!(fs::read(r.join("usr/lib/deep/file")).unwrap(), b"deep");
    assert_eq!(mode_of(&r.join("usr/lib")), 0o755);
}

#[test]
fn root_entry_metadata_is_ignored_and_a_non_directory_root_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::set_permissions(r, fs::Permissions::from_mode(0o711)).unwrap();
    unpack(r, &[Entry::dir("./", 0o700), Entry::dir("/", 0o555)]).unwrap();
    assert_eq!(mode_of(r), 0o711);
    for bad in [Entry::file(".", 0o644, b"x"), Entry::symlink("./", "/etc")] {
        let err = unpack(r, &[bad]).unwrap_err();
        assert!(chain(&err).contains("root directory"), "{}", chain(&err));
    }
    assert!(fs::symlink_metadata(r).unwrap().is_dir());
}

#[test]
fn dot_dot_entries_are_errors_naming_the_entry() {
    let outer = tempfile::tempdir().unwrap();
    let r = outer.path().join("root");
    fs::create_dir(&r).unwrap();
    for name in ["../escape", "a/../../escape", "a/.."] {
        let err = unpack(&r, &[Entry::file(name, 0o644, b"x")]).unwrap_err();
        assert!(chain(&err).contains(name), "{}", chain(&err));
    }
    assert!(!outer.path().join("escape").exists());
}

/// The entry name is not `passwd`: if confinement ever broke while the tests run as root,
/// the damage would be a stray file in the host's /etc, not its password database.
#[test]
fn symlinked_parents_resolve_inside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let name = format!("xbake-escape-test-{}", std::process::id());
    unpack(
        r,
        &[
            Entry::dir("etc/", 0o755),
            Entry::symlink("a", "/etc"),
            Entry::file(&format!("a/{name}"), 0o644, b"inside"),
            Entry::symlink("up", "../../.."),
            Entry::file("up/x", 0o644, b"x"),
        ],
    )
    .unwrap();
    assert_eq!(fs::read(r.join("etc").join(&name)).unwrap(), b"inside");
    assert!(
        !Path::new("/etc").join(&name).exists(),
        "escaped to the host's /etc"
    );
    assert_eq!(fs::read(r.join("x")).unwrap(), b"x");
    assert!(
        fs::symlink_metadata(r.join("a"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn hardlinks_must_point_at_an_existing_file_inside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for (entry, target) in [
        ("l1", "../../etc/passwd"),
        ("l2", "/etc/passwd"),
        ("l3", "missing"),
    ] {
        let err = unpack(r, &[Entry::hardlink(entry, target)]).unwrap_err();
        let text = chain(&err);
        assert!(text.contains(entry) && text.contains(target), "{text}");
        assert!(!r.join(entry).exists());
    }
    let err = unpack(r, &[Entry::dir("d/", 0o755), Entry::hardlink("l4", "d")]).unwrap_err();
    assert!(chain(&err).contains("directory"), "{}", chain(&err));
    // An absolute target means the root's file, not the host's.
    unpack(
        r,
        &[
            Entry::file("etc/passwd", 0o644, b"root:x:0:0::/:/bin/sh\n"),
            Entry::hardlink("pw", "/etc/passwd"),
        ],
    )
    .unwrap();
    assert_eq!(fs::read(r.join("pw")).unwrap(), b"root:x:0:0::/:/bin/sh\n");
}

#[test]
fn device_nodes_are_created_when_permitted_and_otherwise_skipped_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let report = unpack(
        r,
        &[
            Entry::dir("dev/", 0o755),
            Entry::char_device("dev/null", 1, 3),
        ],
    )
    .unwrap();
    let node = r.join("dev/null");
    match fs::symlink_metadata(&node) {
        Ok(meta) => {
            assert!(is_root(), "an unprivileged user created a device node");
            assert!(meta.file_type().is_char_device());
            assert_eq!(meta.rdev(), nix::sys::stat::makedev(1, 3));
            assert!(report.warnings.is_empty());
        }
        // Root in a container without CAP_MKNOD gets the same treatment as a user.
        Err(_) => {
            assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
            assert!(
                report.warnings[0].contains("dev/null"),
                "{:?}",
                report.warnings
            );
        }
    }
}

#[test]
fn xattrs_that_cannot_be_set_are_warnings_and_xbake_records_cannot_be_forged() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let report = unpack(
        r,
        &[Entry::file("f", 0o644, b"x")
            .xattr("user.ok", b"1")
            .xattr("trusted.test", b"2")
            .xattr("user.xbake.owner", b"0:0")],
    )
    .unwrap();
    let f = r.join("f");
    assert_eq!(xattr::get(&f, "user.ok").unwrap(), Some(b"1".to_vec()));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("user.xbake.owner")),
        "{:?}",
        report.warnings
    );
    let trusted_warned = report.warnings.iter().any(|w| w.contains("trusted.test"));
    if is_root() {
        assert_eq!(xattr::get(&f, "trusted.test").unwrap(), Some(b"2".to_vec()));
    } else {
        assert!(trusted_warned, "{:?}", report.warnings);
    }
    // The owner record, if any, is the header's (0:0), never the forged value taken as such.
    assert_owner(&f, 0, 0);
}

#[test]
fn whiteouts_delete_lower_files_and_directories_and_opaque_empties_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    unpack(
        r,
        &[
            Entry::file("a/file", 0o644, b"lower"),
            Entry::file("a/keep", 0o644, b"lower"),
            Entry::file("d/sub/x", 0o644, b"lower"),
            Entry::file("o/old", 0o644, b"lower"),
            Entry::file("o/olddir/y", 0o644, b"lower"),
        ],
    )
    .unwrap();
    let report = unpack(
        r,
        &[
            Entry::whiteout("a/.wh.file"),
            Entry::whiteout(".wh.d"),
            Entry::whiteout("o/.wh..wh..opq"),
            Entry::file("o/new", 0o644, b"upper"),
            Entry::whiteout("a/.wh.never-existed"),
        ],
    )
    .unwrap();
    assert_eq!(report.entries, 5);
    assert_eq!(names_in(&r.join("a")), ["keep"]);
    assert!(!r.join("d").exists());
    assert_eq!(names_in(&r.join("o")), ["new"]);
}

#[test]
fn a_whiteout_never_deletes_what_the_same_layer_wrote_in_either_order() {
    let lower = [
        Entry::file("x/f", 0o644, b"lower"),
        Entry::file("x/g", 0o644, b"lower"),
        Entry::file("o/old", 0o644, b"lower"),
        Entry::file("w/old", 0o644, b"lower"),
    ];
    let whiteouts = [
        Entry::whiteout("x/.wh.f"),
        Entry::whiteout("o/.wh..wh..opq"),
        Entry::whiteout(".wh.w"),
    ];
    let writes = [
        Entry::file("x/f", 0o644, b"upper"),
        Entry::file("o/new", 0o644, b"upper"),
        Entry::file("w/new", 0o644, b"upper"),
    ];
    for whiteouts_first in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        unpack(r, &lower).unwrap();
        let layer: Vec<Entry> = if whiteouts_first {
            whiteouts.iter().chain(&writes).cloned().collect()
        } else {
            writes.iter().chain(&whiteouts).cloned().collect()
        };
        unpack(r, &layer).unwrap();
        let order = if whiteouts_first {
            "whiteouts first"
        } else {
            "writes first"
        };
        assert_eq!(fs::read(r.join("x/f")).unwrap(), b"upper", "{order}");
        assert_eq!(fs::read(r.join("x/g")).unwrap(), b"lower", "{order}");
        assert_eq!(names_in(&r.join("o")), ["new"], "{order}");
        assert_eq!(names_in(&r.join("w")), ["new"], "{order}");
    }
}

#[test]
fn directories_merge_and_non_directories_replace_whatever_is_there() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    unpack(
        r,
        &[
            Entry::dir("merge/", 0o755),
            Entry::file("merge/lower", 0o644, b"lower"),
            Entry::file("was-file", 0o644, b"file"),
            Entry::file("was-dir/child", 0o644, b"child"),
            Entry::symlink("was-link", "/"),
        ],
    )
    .unwrap();
    unpack(
        r,
        &[
            Entry::dir("merge/", 0o700).mtime(77),
            Entry::file("merge/upper", 0o644, b"upper"),
            Entry::dir("was-file/", 0o755),
            Entry::file("was-dir", 0o644, b"now a file"),
            Entry::dir("was-link/", 0o755),
        ],
    )
    .unwrap();
    assert_eq!(names_in(&r.join("merge")), ["lower", "upper"]);
    assert_eq!(mode_of(&r.join("merge")), 0o700);
    assert_eq!(mtime_of(&r.join("merge")), 77);
    assert!(fs::symlink_metadata(r.join("was-file")).unwrap().is_dir());
    assert_eq!(fs::read(r.join("was-dir")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(r.join("was-link")).unwrap().is_dir());
}

#[test]
fn gnu_long_names_and_pax_paths_are_honoured() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let long_dir = "d".repeat(120);
    let long_target = format!("/{}", "t".repeat(150));

    // GNU: the tar crate's builder writes 'L' and 'K' records for long names.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(3);
    builder
        .append_data(&mut header, format!("{long_dir}/gnu-file"), &b"gnu"[..])
        .unwrap();
    let mut link = header.clone();
    link.set_entry_type(EntryType::Symlink);
    link.set_size(0);
    builder
        .append_link(&mut link, format!("{long_dir}/gnu-link"), &long_target)
        .unwrap();
    let gnu = builder.into_inner().unwrap();
    apply_layer(
        &RootDir::open(r).unwrap(),
        &gnu[..],
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    assert_eq!(
        fs::read(r.join(&long_dir).join("gnu-file")).unwrap(),
        b"gnu"
    );
    assert_eq!(
        fs::read_link(r.join(&long_dir).join("gnu-link")).unwrap(),
        Path::new(&long_target)
    );

    // PAX: `path` records (written by the crate's own writer) ...
    unpack(
        r,
        &[Entry::file(&format!("{long_dir}/pax-file"), 0o600, b"pax")],
    )
    .unwrap();
    assert_eq!(
        fs::read(r.join(&long_dir).join("pax-file")).unwrap(),
        b"pax"
    );

    // ... and PAX `mtime`, `uid` and `gid` records, which override the header.
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            ("mtime", &b"1700000000.75"[..]),
            ("uid", &b"3000000"[..]),
            ("gid", &b"3000001"[..]),
        ])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1);
    header.set_size(1);
    builder
        .append_data(&mut header, "pax-mtime", &b"m"[..])
        .unwrap();
    let pax = builder.into_inner().unwrap();
    apply_layer(
        &RootDir::open(r).unwrap(),
        &pax[..],
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    assert_eq!(mtime_of(&r.join("pax-mtime")), 1_700_000_000);
    assert_owner(&r.join("pax-mtime"), 3_000_000, 3_000_001);
}

fn is_mismatch(err: &LayerError, object: &str) -> bool {
    matches!(err, LayerError::Digest(DigestError::Mismatch { what, .. }) if what == object)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut w = gzip_writer(Vec::new());
    w.write_all(bytes).unwrap();
    w.finish().unwrap()
}

#[test]
fn apply_blob_checks_digest_and_diff_id_over_every_byte() {
    let tar = tar_of(&[Entry::file("hello", 0o644, b"world")]);
    let blob = gzip(&tar);
    let (digest, diff_id) = (Digest::of(&blob), Digest::of(&tar));

    let root = tempfile::tempdir().unwrap();
    let rootdir = RootDir::open(root.path()).unwrap();
    let (report, computed) = apply_blob(
        &rootdir,
        &blob[..],
        &digest,
        Some(&diff_id),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    assert_eq!(computed, diff_id);
    assert_eq!(report.entries, 1);
    assert_eq!(fs::read(root.path().join("hello")).unwrap(), b"world");

    let wrong = Digest::of(b"something else");
    let err = apply_blob(
        &rootdir,
        &blob[..],
        &wrong,
        Some(&diff_id),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap_err();
    let text = chain(&err);
    assert!(is_mismatch(&err, "layer blob"), "{text}");
    assert!(
        text.contains(&wrong.to_string()) && text.contains(&digest.to_string()),
        "{text}"
    );

    let err = apply_blob(
        &rootdir,
        &blob[..],
        &digest,
        Some(&wrong),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap_err();
    let text = chain(&err);
    assert!(is_mismatch(&err, "layer diff_id"), "{text}");
    assert!(
        text.contains(&wrong.to_string()) && text.contains(&diff_id.to_string()),
        "{text}"
    );

    // Bytes after the end-of-archive marker are part of the diff_id: the tar reader stops
    // at the marker, the check must not.
    let mut padded = tar.clone();
    padded.extend_from_slice(&[0u8; 512 * 6]);
    padded.extend_from_slice(b"trailing bytes");
    let padded_blob = gzip(&padded);
    let blob_digest = Digest::of(&padded_blob);
    apply_blob(
        &rootdir,
        &padded_blob[..],
        &blob_digest,
        Some(&Digest::of(&padded)),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    let err = apply_blob(
        &rootdir,
        &padded_blob[..],
        &blob_digest,
        Some(&diff_id),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap_err();
    assert!(is_mismatch(&err, "layer diff_id"), "{}", chain(&err));

    // An uncompressed blob: digest and diff_id are the same bytes.
    apply_blob(
        &rootdir,
        &padded[..],
        &Digest::of(&padded),
        Some(&Digest::of(&padded)),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    // zstd, and bytes after the compressed stream counted in the digest.
    let mut zst = zstd::encode_all(&tar[..], 3).unwrap();
    apply_blob(
        &rootdir,
        &zst[..],
        &Digest::of(&zst),
        Some(&diff_id),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap();
    let clean_digest = Digest::of(&zst);
    zst.extend_from_slice(b"junk");
    assert!(
        apply_blob(
            &rootdir,
            &zst[..],
            &clean_digest,
            Some(&diff_id),
            &mut UnpackBudget::unlimited()
        )
        .is_err()
    );
}

#[test]
fn a_corrupt_blob_is_reported_as_a_digest_mismatch() {
    let tar = tar_of(&[Entry::file("hello", 0o644, &[7u8; 10_000])]);
    let blob = gzip(&tar);
    let mut corrupt = blob.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    let root = tempfile::tempdir().unwrap();
    let err = apply_blob(
        &RootDir::open(root.path()).unwrap(),
        &corrupt[..],
        &Digest::of(&blob),
        Some(&Digest::of(&tar)),
        &mut UnpackBudget::unlimited(),
    )
    .unwrap_err();
    assert!(is_mismatch(&err, "layer blob"), "{}", chain(&err));
}
