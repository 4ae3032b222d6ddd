use super::*;
use crate::layer::root::EntryMeta;

fn meta(mode: u32) -> EntryMeta {
    EntryMeta {
        mode,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        mtime: 1000,
        xattrs: Vec::new(),
    }
}

#[test]
fn create_dir_all_sets_mode_and_owner_on_new_directories_only() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir(r.join("existing")).unwrap();
    fs::set_permissions(
        r.join("existing"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let rootdir = RootDir::open(r).unwrap();
    let warnings = rootdir
        .create_dir_all(Path::new("/existing/a/b"), 0o555, (0, 0))
        .unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(mode_of(&r.join("existing")), 0o700);
    assert_eq!(mode_of(&r.join("existing/a")), 0o555);
    assert_eq!(mode_of(&r.join("existing/a/b")), 0o555);
    assert_owner(&r.join("existing/a/b"), 0, 0);
    // Idempotent, and a file in the way is an error naming it.
    let _ = rootdir
        .create_dir_all(Path::new("existing/a/b"), 0o700, (0, 0))
        .unwrap();
    fs::write(r.join("file"), b"").unwrap();
    let err = rootdir
        .create_dir_all(Path::new("file/sub"), 0o755, (0, 0))
        .unwrap_err();
    assert!(chain(&err).contains("file"), "{}", chain(&err));
}

#[test]
fn write_file_replaces_non_directories_but_not_directories() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let rootdir = RootDir::open(r).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", r.join("link")).unwrap();
    let _ = rootdir
        .write_file(Path::new("link"), &mut &b"new"[..], &meta(0o600))
        .unwrap();
    assert_eq!(fs::read(r.join("link")).unwrap(), b"new");
    assert!(fs::symlink_metadata(r.join("link")).unwrap().is_file());
    assert_eq!(mtime_of(&r.join("link")), 1000);

    fs::create_dir(r.join("dir")).unwrap();
    let err = rootdir
        .write_file(Path::new("dir"), &mut &b"x"[..], &meta(0o600))
        .unwrap_err();
    assert!(chain(&err).contains("dir"), "{}", chain(&err));
    let err = rootdir
        .write_file(Path::new("no/parent"), &mut &b"x"[..], &meta(0o600))
        .unwrap_err();
    assert!(chain(&err).contains("no/parent"), "{}", chain(&err));
}

#[test]
fn the_root_itself_can_never_be_replaced_or_removed() {
    let root = tempfile::tempdir().unwrap();
    let rootdir = RootDir::open(root.path()).unwrap();
    for path in ["", "/", ".", "./"] {
        let p = Path::new(path);
        assert!(
            matches!(rootdir.remove_all(p), Err(LayerError::RootReplace { .. })),
            "{path:?}"
        );
        assert!(matches!(
            rootdir.write_file(p, &mut &b""[..], &meta(0o644)),
            Err(LayerError::RootReplace { .. })
        ));
        assert!(matches!(
            rootdir.symlink(p, Path::new("/"), &meta(0o777)),
            Err(LayerError::RootReplace { .. })
        ));
    }
    assert!(root.path().is_dir());
}

#[test]
fn remove_all_removes_links_not_their_targets_and_tolerates_absence() {
    let outer = tempfile::tempdir().unwrap();
    let r = outer.path().join("root");
    write(&r.join("d/sub/file"), b"x");
    write(&outer.path().join("outside/precious"), b"keep");
    std::os::unix::fs::symlink(outer.path().join("outside"), r.join("d/sub/escape")).unwrap();
    std::os::unix::fs::symlink("/", r.join("d/rootlink")).unwrap();
    // A read-only directory can still be emptied by its owner.
    fs::set_permissions(
        r.join("d/sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o500),
    )
    .unwrap();
    let rootdir = RootDir::open(&r).unwrap();
    rootdir.remove_all(Path::new("d")).unwrap();
    assert!(!r.join("d").exists());
    assert_eq!(
        fs::read(outer.path().join("outside/precious")).unwrap(),
        b"keep"
    );
    rootdir.remove_all(Path::new("d")).unwrap();
    rootdir.remove_all(Path::new("not/even/a/parent")).unwrap();
    assert!(rootdir.lstat(Path::new("d")).unwrap().is_none());
    assert!(rootdir.remove_all(Path::new("../root")).is_err());
}

#[test]
fn owner_that_cannot_be_set_is_recorded_except_on_symlinks() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let rootdir = RootDir::open(r).unwrap();
    let foreign = EntryMeta {
        uid: 4321,
        gid: 8765,
        ..meta(0o644)
    };
    let warnings = rootdir
        .write_file(Path::new("f"), &mut &b"x"[..], &foreign)
        .unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    assert_owner(&r.join("f"), 4321, 8765);
    let warnings = rootdir
        .symlink(Path::new("l"), Path::new("f"), &foreign)
        .unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    if is_root() {
        assert_eq!(fs::symlink_metadata(r.join("l")).unwrap().uid(), 4321);
    }
    // Once a real chown succeeds on a merged directory, an old record must not linger.
    fs::create_dir(r.join("d")).unwrap();
    xattr::set(r.join("d"), OWNER_XATTR, b"1:1").unwrap();
    let _ = rootdir.set_metadata(Path::new("d"), &meta(0o755)).unwrap();
    assert_eq!(xattr::get(r.join("d"), OWNER_XATTR).unwrap(), None);
}
