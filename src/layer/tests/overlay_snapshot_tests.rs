//! The overlay snapshotter's reading of an upper folder, on folders laid out by hand as
//! overlayfs leaves them (no mount needed): whiteouts are 0/0 character devices, which
//! anyone may create, and opaque folders carry `user.overlay.opaque=y`.

use super::*;
use crate::layer::overlay_snapshot::OverlaySnapshotter;
use crate::layer::snapshot::{ChangeKind, ChangeSet, Snapshotter};
use ChangeKind::*;
use std::path::Path;

fn summary(set: &ChangeSet) -> Vec<(String, ChangeKind)> {
    set.changes
        .iter()
        .map(|c| (c.path.to_string_lossy().into_owned(), c.kind))
        .collect()
}

fn whiteout(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
}

/// Copies `rel` from lower to upper as a copy-up does: same bytes, mode and mtime.
fn copy_up(lower: &Path, upper: &Path, rel: &str) {
    let (from, to) = (lower.join(rel), upper.join(rel));
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    let meta = fs::symlink_metadata(&from).unwrap();
    if meta.is_dir() {
        fs::create_dir_all(&to).unwrap();
    } else {
        fs::copy(&from, &to).unwrap();
    }
    fs::set_permissions(&to, meta.permissions()).unwrap();
    let mtime = filetime_of(&meta);
    set_mtime_ns(&to, mtime);
}

fn filetime_of(meta: &fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.mtime(), meta.mtime_nsec())
}

#[test]
fn upper_entries_become_the_walks_change_kinds_and_unchanged_copy_ups_drop_out() {
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
    for f in [
        "etc/passwd",
        "etc/group",
        "etc/gone",
        "var/lib/old/f",
        "opt/x/y",
        "lock",
    ] {
        write(&lower.join(f), f.as_bytes());
    }
    fs::create_dir_all(&upper).unwrap();
    let mut snap = OverlaySnapshotter::new(upper.clone(), lower.clone());
    snap.begin().unwrap();

    // /lock opened for writing and left alone: copied up, equal in every way.
    copy_up(&lower, &upper, "lock");
    // /etc/group written to, /etc copied up as the parent (its metadata unchanged).
    copy_up(&lower, &upper, "etc");
    copy_up(&lower, &upper, "etc/group");
    write(&upper.join("etc/group"), b"changed");
    // /etc/gone deleted, /etc/new added.
    whiteout(&upper.join("etc/gone"));
    write(&upper.join("etc/new"), b"new");
    // /var/lib/old removed and made again: opaque, with a new file.
    copy_up(&lower, &upper, "var");
    copy_up(&lower, &upper, "var/lib");
    fs::create_dir(upper.join("var/lib/old")).unwrap();
    xattr::set(upper.join("var/lib/old"), "user.overlay.opaque", b"y").unwrap();
    write(&upper.join("var/lib/old/g"), b"g");
    // /opt/x removed entirely.
    copy_up(&lower, &upper, "opt");
    whiteout(&upper.join("opt/x"));
    // A whiteout for something the lower never had is nothing.
    whiteout(&upper.join("never"));
    // overlayfs puts a parent's times back after copying a child up: /var is only a
    // copy-up, while /etc, /opt and /var/lib had entries made or removed in them.
    set_mtime_ns(
        &upper.join("var"),
        filetime_of(&fs::symlink_metadata(lower.join("var")).unwrap()),
    );

    let changes = summary(&snap.changes().unwrap());
    assert_eq!(
        changes,
        vec![
            ("etc".to_string(), Modified),
            ("etc/gone".to_string(), Deleted),
            ("etc/group".to_string(), Modified),
            ("etc/new".to_string(), Added),
            ("opt".to_string(), Modified),
            ("opt/x".to_string(), Deleted),
            ("var/lib".to_string(), Modified),
            ("var/lib/old".to_string(), Modified),
            ("var/lib/old/f".to_string(), Deleted),
            ("var/lib/old/g".to_string(), Added),
        ]
    );
}

#[test]
fn what_was_in_the_upper_folder_before_the_step_is_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
    write(&lower.join("etc/passwd"), b"root");
    // xbake's placeholders, made before the step.
    write(&upper.join("etc/resolv.conf"), b"");
    write(&upper.join("stub"), b"");
    let mut snap = OverlaySnapshotter::new(upper.clone(), lower.clone());
    snap.begin().unwrap();
    fs::remove_file(upper.join("stub")).unwrap();
    write(&upper.join("etc/hostname"), b"h");
    assert_eq!(
        summary(&snap.changes().unwrap()),
        vec![
            ("etc".to_string(), Modified),
            ("etc/hostname".to_string(), Added),
            ("stub".to_string(), Deleted),
        ]
    );
}
