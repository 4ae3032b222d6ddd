use super::*;
use crate::layer::snapshot::{ChangeKind, ChangeSet, Snapshotter, WalkSnapshotter};
use ChangeKind::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

fn summary(set: &ChangeSet) -> Vec<(String, ChangeKind)> {
    set.changes
        .iter()
        .map(|c| (c.path.to_string_lossy().into_owned(), c.kind))
        .collect()
}

fn expect(list: &[(&str, ChangeKind)]) -> Vec<(String, ChangeKind)> {
    list.iter().map(|(p, k)| (p.to_string(), *k)).collect()
}

#[test]
fn an_unchanged_tree_gives_an_empty_change_set() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("a/b/c"), b"x");
    std::os::unix::fs::symlink("a", root.path().join("link")).unwrap();
    let mut snap = WalkSnapshotter::new(root.path().to_path_buf());
    snap.begin().unwrap();
    // Reading is not changing.
    fs::read(root.path().join("a/b/c")).unwrap();
    assert!(snap.changes().unwrap().is_empty());
}

#[test]
fn detects_additions_modifications_deletions_and_replaced_directories() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for file in [
        "keep",
        "content",
        "chmod-me",
        "touch-me",
        "delete-me",
        "deldir/a/b",
        "rep/x",
        "rep/y",
        "retype/child",
    ] {
        write(&r.join(file), b"aaaa");
    }
    let mut snap = WalkSnapshotter::new(r.to_path_buf());
    snap.begin().unwrap();

    write(&r.join("new-file"), b"new");
    write(&r.join("newdir/inner"), b"new");
    write(&r.join("content"), b"bbbb"); // same size: only the timestamps tell
    fs::set_permissions(r.join("chmod-me"), fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&r.join("touch-me"), 1234);
    fs::remove_file(r.join("delete-me")).unwrap();
    fs::remove_dir_all(r.join("deldir")).unwrap();
    // Built beside and renamed over, so the new directory surely has a new inode.
    write(&r.join("rep.new/x"), b"new x");
    fs::remove_dir_all(r.join("rep")).unwrap();
    fs::rename(r.join("rep.new"), r.join("rep")).unwrap();
    fs::remove_dir_all(r.join("retype")).unwrap();
    write(&r.join("retype"), b"now a file");

    let changes = snap.changes().unwrap();
    assert_eq!(
        summary(&changes),
        expect(&[
            ("chmod-me", Modified),
            ("content", Modified),
            ("deldir", Deleted), // and nothing below it: the top-most deletion implies the rest
            ("delete-me", Deleted),
            ("new-file", Added),
            ("newdir", Added),
            ("newdir/inner", Added),
            // Made again (its inode may be new or reused): its old entries are deleted.
            ("rep", Modified),
            ("rep/x", Modified),
            ("rep/y", Deleted),
            ("retype", Modified),
            ("touch-me", Modified),
        ])
    );
}

#[test]
fn the_post_step_walk_is_the_next_baseline() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(&r.join("f"), b"1");
    let mut snap = WalkSnapshotter::new(r.to_path_buf());
    snap.begin().unwrap();
    write(&r.join("f"), b"2");
    assert_eq!(
        summary(&snap.changes().unwrap()),
        expect(&[("f", Modified)])
    );
    snap.begin().unwrap();
    assert!(
        snap.changes().unwrap().is_empty(),
        "the previous step's changes came back"
    );
    snap.begin().unwrap();
    write(&r.join("g"), b"3");
    assert_eq!(summary(&snap.changes().unwrap()), expect(&[("g", Added)]));
}

#[test]
fn a_same_size_rewrite_right_after_begin_is_seen() {
    // The racy case: the file changed just before the baseline, and changes again in the
    // same timestamp tick unless `begin` waits the tick out.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for round in 0..5u8 {
        write(&r.join("f"), &[round; 8]);
        let mut snap = WalkSnapshotter::new(r.to_path_buf());
        snap.begin().unwrap();
        write(&r.join("f"), &[round + 100; 8]);
        assert_eq!(
            summary(&snap.changes().unwrap()),
            expect(&[("f", Modified)]),
            "round {round}"
        );
    }
}

#[test]
fn a_deferred_begin_names_a_moment_after_which_a_same_size_rewrite_is_seen() {
    // What a RUN step does: the baseline now, the wait in the sandbox just before the
    // command starts (sandbox/init.rs); a change after that moment is always seen.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for round in 0..5u8 {
        write(&r.join("f"), &[round; 8]);
        let written = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let mut snap = WalkSnapshotter::new(r.to_path_buf());
        let settled = snap.begin_deferred().unwrap();
        assert!(settled > written, "round {round}: {settled} <= {written}");
        crate::layer::snapshot::wait_until(settled);
        write(&r.join("f"), &[round + 100; 8]);
        assert_eq!(
            summary(&snap.changes().unwrap()),
            expect(&[("f", Modified)]),
            "round {round}"
        );
    }
}

#[test]
fn changes_before_begin_is_an_error_and_invalidate_forces_a_new_baseline() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let mut snap = WalkSnapshotter::new(r.to_path_buf());
    assert!(matches!(
        snap.changes(),
        Err(LayerError::SnapshotNotBegun { .. })
    ));
    snap.begin().unwrap();
    assert!(snap.changes().unwrap().is_empty());
    // Changed outside a step (a cached layer applied, say): not this step's doing.
    write(&r.join("from-cache"), b"x");
    snap.invalidate();
    snap.begin().unwrap();
    assert!(snap.changes().unwrap().is_empty());
}

/// `cargo test --release --lib -- --ignored snapshot_of_10k --nocapture` prints the figures.
#[test]
#[ignore = "timing figure; run in release mode"]
fn snapshot_of_10k_entries_timing() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in 0..100 {
        let dir = r.join(format!("dir{d:03}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..99 {
            fs::write(dir.join(format!("file{f:03}")), b"x").unwrap();
        }
    }
    let mut snap = WalkSnapshotter::new(r.to_path_buf());
    let started = Instant::now();
    snap.begin().unwrap();
    let first_walk = started.elapsed();
    fs::write(r.join("dir050/file050"), b"changed").unwrap();
    let started = Instant::now();
    let changes = snap.changes().unwrap();
    let walk_and_diff = started.elapsed();
    let started = Instant::now();
    snap.begin().unwrap();
    let cached_begin = started.elapsed();
    println!(
        "10,000 entries: first walk {first_walk:?}, changes() walk+diff {walk_and_diff:?}, \
         next begin() {cached_begin:?}"
    );
    assert_eq!(summary(&changes), expect(&[("dir050/file050", Modified)]));
    assert!(walk_and_diff.as_millis() < 1000);
}
