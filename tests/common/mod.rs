//! Shared helpers for the integration tests: the xbake binary, the busybox fixtures,
//! running as root or as an unprivileged test user, and an OCI layout reader that is
//! independent of xbake's own code (serde_json, sha2, flate2, zstd and tar only).

#![allow(dead_code)]

pub mod hostile_layout;
pub mod hostile_tar;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `XBAKE_TEST_STRICT=1` (CI) turns a skip into a failure.
pub fn skip(why: &str) -> bool {
    if std::env::var_os("XBAKE_TEST_STRICT").is_some() {
        panic!("required but unavailable: {why}");
    }
    eprintln!("skipped: {why}");
    true
}

pub fn xbake_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xbake"))
}

/// The busybox bases made by `just fixtures` (scripts/fixtures.sh).
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("XBAKE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures/bases"));
    dir.join("busybox-arm64.tar.gz").is_file().then_some(dir)
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

pub fn have_qemu() -> bool {
    Path::new("/usr/bin/qemu-aarch64-static").exists()
        && Path::new("/usr/bin/qemu-arm-static").exists()
        && Path::new("/usr/bin/qemu-ppc64le-static").exists()
}

/// Checks the emulated-build prerequisites; false (after saying why) when a test must
/// skip.
pub fn emulation_ready() -> bool {
    if fixtures().is_none() {
        return !skip("no busybox fixtures; run `just fixtures` (or ./dev test)");
    }
    if !have_qemu() {
        return !skip("no qemu-user-static; run ./dev test or apt-get install qemu-user-static");
    }
    true
}

/// A scratch folder that an unprivileged test user may also use.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("xbake-it-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A recipe folder holding `recipe.yaml` with `text`, plus copies of the fixtures
    /// under `bases/` and `extra` files. The Go toolchains (`golang-*`, hundreds of MB
    /// unpacked) are left out: the few tests that use one copy it themselves.
    pub fn recipe(&self, name: &str, text: &str, extra: &[(&str, &str)]) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(dir.join("bases")).unwrap();
        if let Some(fx) = fixtures() {
            for entry in std::fs::read_dir(fx).unwrap() {
                let entry = entry.unwrap();
                // The Go toolchains are for the tests that ask for them.
                if entry.file_name().to_string_lossy().starts_with("golang-") {
                    continue;
                }
                // The large Debian bases (tens of MB each) are linked, not copied, for
                // every test; no test writes to a base.
                link_fixture(&entry.path(), &dir.join("bases").join(entry.file_name()));
            }
        }
        for (path, content) in extra {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::write(dir.join("recipe.yaml"), text).unwrap();
        open_up(&dir);
        dir.join("recipe.yaml")
    }
}

/// Puts fixture `from` at `to` as a hard link (a copy across file systems). A `to` that is
/// already there is kept: it is that fixture from an earlier set-up of the same folder,
/// and copying onto a link of the fixture would truncate the fixture itself.
pub fn link_fixture(from: &Path, to: &Path) {
    if std::fs::symlink_metadata(to).is_ok() {
        return;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

/// World-readable (and, for folders, writable) so the test user can use it. The caches
/// xbake keeps in a recipe folder (`.cache-me`, `.cache-user`) are its own and left as
/// they are: their layer snapshots are image trees whose modes are the image's.
pub fn open_up(path: &Path) {
    let xbakes_own = |e: &walkdir::DirEntry| {
        e.depth() > 0 && e.file_name().to_string_lossy().starts_with(".cache-")
    };
    for entry in walkdir::WalkDir::new(path)
        .into_iter()
        .filter_entry(|e| !xbakes_own(e))
    {
        let entry = entry.unwrap();
        if entry.path_is_symlink() {
            continue;
        }
        // A fixture linked into the folder is already world-readable and shared with
        // the fixture cache: leave its mode alone.
        if entry.file_type().is_file()
            && std::os::unix::fs::MetadataExt::nlink(&entry.metadata().unwrap()) > 1
        {
            continue;
        }
        let mode = if entry.file_type().is_dir() {
            0o777
        } else {
            0o666
        };
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// How a command is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum As {
    /// The test process's own user (root in CI).
    Me,
    /// The unprivileged user the tests create (needs root to create it).
    TestUser,
}

pub const TEST_USER: &str = "xbake-test";

/// Creates the unprivileged test user with subordinate id ranges, once.
pub fn test_user() -> Option<(u32, u32, PathBuf)> {
    if !is_root() {
        return None;
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if nix::unistd::User::from_name(TEST_USER)
            .ok()
            .flatten()
            .is_none()
        {
            let status = Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", TEST_USER])
                .status()
                .expect("useradd");
            assert!(status.success(), "useradd {TEST_USER} failed");
        }
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        if !subuid
            .lines()
            .any(|l| l.starts_with(&format!("{TEST_USER}:")))
        {
            let status = Command::new("usermod")
                .args([
                    "--add-subuids",
                    "300000-365535",
                    "--add-subgids",
                    "300000-365535",
                    TEST_USER,
                ])
                .status()
                .expect("usermod");
            assert!(status.success(), "usermod --add-subuids failed");
        }
    });
    let user = nix::unistd::User::from_name(TEST_USER).ok().flatten()?;
    Some((user.uid.as_raw(), user.gid.as_raw(), user.dir))
}

/// A copy of the xbake binary that any user can execute (the build tree may sit in a
/// folder only root can enter). One copy per build of the binary, shared by every test
/// process of a run: a copy per process filled /tmp (30 test binaries × the debug
/// binary) until a CI machine ran out of space.
pub fn shared_binary() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let source = xbake_bin();
        let meta = std::fs::metadata(&source).expect("the xbake binary");
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let dir = Path::new("/tmp").join(format!("xbake-it-bin-{}-{mtime}", meta.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("xbake");
        if std::fs::metadata(&copy).is_ok_and(|m| m.len() == meta.len()) {
            return copy;
        }
        // Copied under a private name, then renamed: another test process never runs
        // a half-written copy.
        let partial = dir.join(format!(".xbake-{}", std::process::id()));
        std::fs::copy(&source, &partial).unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&partial, &copy).unwrap();
        copy
    })
    .clone()
}

/// Runs xbake with `args` in `cwd` as `who`, with a private cache folder, a clean
/// environment plus `env`, and a time limit.
pub fn xbake(who: As, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    xbake_within(who, cwd, args, env, Duration::from_secs(300))
}

/// [`xbake`] with its own time limit, for real package installs under QEMU (minutes).
pub fn xbake_within(
    who: As,
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    run_with_timeout(xbake_command(who, cwd, args, env, None), limit)
}

/// Like [`xbake`], but in a private mount namespace (the test needs root) whose
/// /dev/net/tun is a fresh node with `mode`, so a test can try a device mode without
/// changing the host's.
pub fn xbake_with_tun_mode(
    who: As,
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    mode: u32,
) -> Output {
    run_with_timeout(
        xbake_command(who, cwd, args, env, Some(mode)),
        Duration::from_secs(300),
    )
}

fn xbake_command(
    who: As,
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    tun_mode: Option<u32>,
) -> Command {
    let cache = cwd.join(match who {
        As::Me => ".cache-me",
        As::TestUser => ".cache-user",
    });
    let user = match who {
        As::Me => None,
        As::TestUser => Some(test_user().expect("the test user needs root to create")),
    };
    let mut cmd = match tun_mode {
        None => Command::new(shared_binary()),
        Some(mode) => {
            // The user switch happens after the mounts, inside the namespace.
            let switch = match &user {
                Some((uid, gid, _)) => {
                    format!("setpriv --reuid={uid} --regid={gid} --clear-groups ")
                }
                None => String::new(),
            };
            let script = format!(
                "mount -t tmpfs -o mode=0755 tun /dev/net && \
                 mknod -m {mode:04o} /dev/net/tun c 10 200 && exec {switch}\"$0\" \"$@\""
            );
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .arg(shared_binary());
            cmd
        }
    };
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("XDG_CACHE_HOME", &cache)
        .stdin(Stdio::null());
    match user {
        None => {
            cmd.env(
                "HOME",
                std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
            );
        }
        Some((uid, gid, home)) => {
            use std::os::unix::process::CommandExt;
            if tun_mode.is_none() {
                cmd.uid(uid).gid(gid);
            }
            cmd.env("HOME", home).env("USER", TEST_USER);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Whether private networking can work for `who` on this machine: rootless builds need
/// /dev/net/tun open to everyone (root builds open it as the host's root, parked in
/// their namespace). `just test` sets 0666 for the run.
pub fn tun_ready(who: As) -> bool {
    let mode = std::fs::metadata("/dev/net/tun")
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if who == As::TestUser && mode & 0o006 != 0o006 {
        return !skip(&format!(
            "/dev/net/tun is mode {mode:04o}; rootless private networking needs 0666 \
             (`just test` sets it for the run; or chmod 0666 /dev/net/tun)"
        ));
    }
    true
}

/// Compiles a C program statically with gcc into `dir/name` (mode 0755), to run inside
/// a busybox image. None (after saying why) when gcc or a static libc is missing.
pub fn static_program(dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .output();
    match built {
        Ok(o) if o.status.success() => {
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
            Some(out)
        }
        Ok(o) => {
            skip(&format!(
                "gcc -static {name}.c failed (apt-get install gcc libc6-dev): {}",
                String::from_utf8_lossy(&o.stderr)
            ));
            None
        }
        Err(e) => {
            skip(&format!("no gcc ({e}); apt-get install gcc libc6-dev"));
            None
        }
    }
}

/// A Python virtualenv with `requirements` (pinned `name==version`) from PyPI, made once
/// per machine under the temporary folder (outside the clone) as `name` and reused while
/// it holds the same list; None when python3 or PyPI is unavailable (the caller skips,
/// saying which packages it needed). Tests of one binary share it safely.
pub fn python_venv(name: &str, requirements: &[&str]) -> Option<PathBuf> {
    static MADE: std::sync::Mutex<BTreeMap<String, Option<PathBuf>>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = made.get(name) {
        return known.clone();
    }
    let venv = std::env::temp_dir().join(name);
    // Written last, so a venv whose install was interrupted is made again.
    let marker = venv.join(".xbake-requirements");
    let wanted = requirements.join("\n");
    let ready = std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted);
    let ok = ready
        || (Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .args(requirements)
                .status()
                .is_ok_and(|s| s.success())
            && std::fs::write(&marker, &wanted).is_ok());
    let result = ok.then_some(venv);
    made.insert(name.to_string(), result.clone());
    result
}

/// skopeo's stdout; None (after saying why) when skopeo is not installed.
pub fn skopeo(args: &[&str]) -> Option<Vec<u8>> {
    match Command::new("skopeo").args(args).output() {
        Ok(out) if out.status.success() => Some(out.stdout),
        Ok(out) => panic!("skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => {
            skip("skopeo is not installed");
            None
        }
    }
}

pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().expect("spawning xbake");
    let pid = child.id() as i32;
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    loop {
        if let Ok(out) = rx.recv_timeout(Duration::from_millis(200)) {
            return out.expect("waiting for xbake");
        }
        if start.elapsed() > limit {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{cmd:?} ran over {limit:?}");
        }
    }
}

/// The build's `N platforms: R steps run, C cached` line.
/// `4.2 MiB`, `89 bytes`: a figure, then a unit, as xbake prints sizes.
pub fn is_size(text: &str) -> bool {
    let (figure, unit) = text.split_once(' ').unwrap_or(("", ""));
    figure.parse::<f64>().is_ok() && ["bytes", "KiB", "MiB", "GiB"].contains(&unit)
}

pub fn steps_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("steps run") || l.contains("step run"))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "xbake failed:\n{}", text(out));
}

/// Runs xbake as the test process's user, asserts success, and returns (trimmed stdout,
/// stderr).
pub fn xbake_ok(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = xbake(As::Me, dir, args, env);
    assert_ok(&out);
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------
// An independent OCI layout reader.

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Reads a blob and checks that its bytes hash to its name.
pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "blob {digest} does not match its digest"
    );
    bytes
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// One platform's image as read back.
#[derive(Debug)]
pub struct ReadImage {
    pub platform: String,
    pub manifest_digest: String,
    pub config: serde_json::Value,
    /// Every file of the flattened layers: path → content (regular files only).
    pub files: BTreeMap<String, Vec<u8>>,
    /// path → (uid, gid, mode) for every entry.
    pub meta: BTreeMap<String, (u64, u64, u32)>,
}

/// Returns (index digest, images) for `tag` in the layout at `dir`.
pub fn read_layout(dir: &Path, tag: &str) -> (String, Vec<ReadImage>) {
    assert_eq!(
        json(&std::fs::read(dir.join("oci-layout")).unwrap())["imageLayoutVersion"],
        "1.0.0"
    );
    let top = json(&std::fs::read(dir.join("index.json")).unwrap());
    let entry = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {top}"))
        .clone();
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index_digest = entry["digest"].as_str().unwrap().to_string();
    let index_bytes = blob(dir, &index_digest);
    assert_eq!(entry["size"].as_u64().unwrap(), index_bytes.len() as u64);
    let index = json(&index_bytes);
    let mut images = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        // Attestation manifests (BuildKit's layout) describe images; they are not one.
        if m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest" {
            continue;
        }
        let p = &m["platform"];
        let platform = match p["variant"].as_str() {
            Some(v) => format!(
                "{}/{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                v
            ),
            None => format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            ),
        };
        let manifest_digest = m["digest"].as_str().unwrap().to_string();
        let manifest = json(&blob(dir, &manifest_digest));
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        let config = json(&blob(dir, manifest["config"]["digest"].as_str().unwrap()));
        assert_eq!(config["os"], p["os"]);
        assert_eq!(config["architecture"], p["architecture"]);
        assert_eq!(config["variant"], p["variant"]);
        let layers = manifest["layers"].as_array().unwrap();
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(layers.len(), diff_ids.len(), "one diff_id per layer");
        let mut files = BTreeMap::new();
        let mut meta = BTreeMap::new();
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let compressed = blob(dir, layer["digest"].as_str().unwrap());
            assert_eq!(layer["size"].as_u64().unwrap(), compressed.len() as u64);
            let tar_bytes = decompress_layer(layer["mediaType"].as_str().unwrap(), &compressed);
            assert_eq!(
                format!("sha256:{}", sha256_hex(&tar_bytes)),
                diff_id.as_str().unwrap()
            );
            apply_tar(&tar_bytes, &mut files, &mut meta);
        }
        images.push(ReadImage {
            platform,
            manifest_digest,
            config,
            files,
            meta,
        });
    }
    (index_digest, images)
}

/// The tar inside a layer blob of `media_type` (the three OCI layer types; anything else
/// fails the test).
pub fn decompress_layer(media_type: &str, blob: &[u8]) -> Vec<u8> {
    let mut tar_bytes = Vec::new();
    match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip" => {
            flate2::read::MultiGzDecoder::new(blob)
                .read_to_end(&mut tar_bytes)
                .unwrap();
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            tar_bytes = zstd::stream::decode_all(blob).unwrap();
        }
        "application/vnd.oci.image.layer.v1.tar" => tar_bytes = blob.to_vec(),
        other => panic!("unexpected layer media type {other:?}"),
    }
    tar_bytes
}

/// A flattening good enough for assertions: files, whiteouts, opaque dirs.
fn apply_tar(
    bytes: &[u8],
    files: &mut BTreeMap<String, Vec<u8>>,
    meta: &mut BTreeMap<String, (u64, u64, u32)>,
) {
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        let parent = path
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        if name == ".wh..wh..opq" {
            let prefix = format!("{parent}/");
            files.retain(|k, _| !k.starts_with(&prefix));
            meta.retain(|k, _| !k.starts_with(&prefix));
            continue;
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            let victim = if parent.is_empty() {
                victim.to_string()
            } else {
                format!("{parent}/{victim}")
            };
            let prefix = format!("{victim}/");
            files.retain(|k, _| k != &victim && !k.starts_with(&prefix));
            meta.retain(|k, _| k != &victim && !k.starts_with(&prefix));
            continue;
        }
        let h = entry.header();
        meta.insert(
            path.clone(),
            (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap()),
        );
        if h.entry_type().is_file() {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            files.insert(path, content);
        } else {
            files.remove(&path);
        }
    }
}

pub fn file_text(image: &ReadImage, path: &str) -> String {
    String::from_utf8(
        image
            .files
            .get(path)
            .unwrap_or_else(|| panic!("{} has no {path}", image.platform))
            .clone(),
    )
    .unwrap()
}

/// The Debian bookworm base for `arch` (amd64: with python3; arm64) that
/// scripts/fixtures.sh makes with mmdebstrap as root; None (after saying why) when a test
/// must skip.
pub fn debian_base(arch: &str) -> Option<PathBuf> {
    mmdebstrap_fixture(&format!("debian-{arch}.tar.zst"))
}

/// A fixture that scripts/fixtures.sh makes with mmdebstrap as root (`debian-ARCH`,
/// `golang-ARCH`); None (after saying why) when a test must skip.
pub fn mmdebstrap_fixture(file: &str) -> Option<PathBuf> {
    let path = fixtures()?.join(file);
    if path.is_file() {
        Some(path)
    } else {
        skip(&format!(
            "no {} (run `just fixtures` as root)",
            path.display()
        ));
        None
    }
}
