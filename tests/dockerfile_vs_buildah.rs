//! The Dockerfile corpus (tests/dockerfiles, issue 12) built by xbake and by buildah
//! (Debian's, 1.28) from the same bases, served by a registry on loopback: the root
//! filesystems must match file by file (paths, types, modes, owners, link targets,
//! content; mtimes aside) and the configs field by field. Every difference is printed
//! before the test fails.
//!
//! Both trees are unpacked by buildah (`buildah from` + `buildah mount`, xbake's layout
//! through the `oci:` transport), so the comparison is of the images, not of two unpackers.
//! Everything is built for linux/amd64, the build machine's CPU: buildah runs a foreign
//! RUN step only through host-wide binfmt_misc entries, which this test does not register;
//! go-cross is built for linux/arm64 too, as its build stage runs natively either way.
//!
//! Not compared, because buildah 1.28 cannot build them (README says the same):
//! heredoc-run and heredoc-copy (heredocs came to buildah in 1.33), add-checksum
//! (`ADD --checksum`), network-none (`RUN --network`); rust-cross needs a Rust toolchain
//! image with musl targets, which the fixtures do not have.

mod common;
mod registry_harness;

use common::*;
use registry_harness::fake_server::{FakeServer, Reply};
use registry_harness::registry_process::RegistryProcess;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const BUILDAH: &str = "/usr/bin/buildah";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config fields compared (Docker's names; xbake writes the same ones).
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Healthcheck",
    "StopSignal",
    "Volumes",
    "OnBuild",
    "Shell",
];

/// buildah stamps its own version into every image's labels.
const BUILDAH_ONLY_LABEL: &str = "io.buildah.version";

/// What buildah's RUN steps bind-mount over and leave behind, empty, when the base did
/// not have it; BuildKit removes such mount stubs and so does xbake (README).
const BUILDAH_MOUNT_STUBS: &[&str] = &[
    "/dev",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/run",
];

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dockerfiles")
        .join(name)
}

// ---------------------------------------------------------------------------------
// The bases: the fixtures as images, pushed by xbake to a registry on loopback. Both
// tools then pull the very same manifests and blobs.

struct Bases {
    registry: RegistryProcess,
    scratch: Scratch,
}

impl Bases {
    /// The registry with `busybox:1` (the fixture with its applets linked, as in the
    /// busybox image) and, when `debian` is set, `debian:bookworm` and `golang:1.19`.
    fn start(debian: bool) -> Option<Bases> {
        fixtures().or_else(|| {
            skip("no busybox fixtures; run `just fixtures` (or ./dev test)");
            None
        })?;
        let registry = RegistryProcess::start()?;
        let scratch = Scratch::new();
        let bases = Bases { registry, scratch };
        bases.push(
            "busybox:1",
            "busybox-amd64.tar.gz",
            "  - run: /bin/busybox --install /bin\n    network: none\n",
            "sh",
        );
        if debian {
            mmdebstrap_fixture("debian-amd64.tar.zst")?;
            mmdebstrap_fixture("golang-amd64.tar.zst")?;
            bases.push("debian:bookworm", "debian-amd64.tar.zst", "", "bash");
            bases.push("golang:1.19", "golang-amd64.tar.zst", "", "bash");
        }
        Some(bases)
    }

    fn push(&self, name: &str, fixture: &str, steps: &str, cmd: &str) {
        let recipe = self.scratch.recipe(
            &name.replace(':', "-"),
            &format!(
                "from: rootfs:bases/{fixture}\nplatforms: [amd64]\nsteps:\n  - env: {{PATH: \"{PATH}\"}}\n{steps}config:\n  cmd: [{cmd}]\n"
            ),
            &[],
        );
        let dir = recipe.parent().unwrap();
        if fixture.starts_with("golang-") {
            link_fixture(
                &fixtures().unwrap().join(fixture),
                &dir.join("bases").join(fixture),
            );
        }
        let to = format!("{}/{name}", self.addr());
        xbake_ok(dir, &["build", "recipe.yaml", "--push", &to], &[]);
    }

    fn addr(&self) -> &str {
        &self.registry.addr
    }
}

// ---------------------------------------------------------------------------------
// buildah, as root, with storage of its own (vfs: this test is about results, not
// speed) and chroot isolation (no OCI runtime, the host's network for RUN steps).

struct Buildah {
    storage: tempfile::TempDir,
}

impl Buildah {
    fn new() -> Option<Buildah> {
        if !Path::new(BUILDAH).exists() {
            skip("no buildah; ./dev test installs it (apt-get install buildah)");
            return None;
        }
        if !is_root() {
            skip("buildah's storage here needs root; run the comparison as root");
            return None;
        }
        let storage = tempfile::Builder::new()
            .prefix("xbake-buildah-")
            .tempdir_in("/var/tmp")
            .unwrap();
        Some(Buildah { storage })
    }

    fn command(&self, args: &[&str]) -> Command {
        self.tool(BUILDAH, args)
    }

    /// buildah or podman on this storage. TMPDIR: buildah keeps RUN cache mounts under
    /// it, which must start empty as xbake's do.
    fn tool(&self, program: &str, args: &[&str]) -> Command {
        let tmp = self.storage.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let mut cmd = Command::new(program);
        cmd.env("TMPDIR", tmp)
            .arg("--root")
            .arg(self.storage.path().join("root"))
            .arg("--runroot")
            .arg(self.storage.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        output_of(self.command(args))
    }

    /// `buildah bud` of `context` into image `tag`, in docker format (buildah drops
    /// HEALTHCHECK, ONBUILD and SHELL from OCI-format images).
    fn build(&self, context: &Path, tag: &str, platform: &str, flags: &[String]) {
        let mut args = vec![
            "bud",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--tls-verify=false",
            "--platform",
            platform,
            "-t",
            tag,
        ];
        args.extend(flags.iter().map(String::as_str));
        let context = context.to_str().unwrap();
        args.push(context);
        self.run(&args);
    }

    /// The root filesystem of `image` (a local name, or an `oci:` reference pulled
    /// first), unpacked by buildah. podman mounts it from the same storage: `buildah
    /// from` would run the image's ONBUILD triggers.
    fn tree(&self, image: &str) -> Tree {
        let id = if image.starts_with("oci:") {
            self.run(&["pull", "-q", image])
        } else {
            image.to_string()
        };
        let root = output_of(self.tool("podman", &["image", "mount", &id]));
        let tree = walk(Path::new(&root));
        output_of(self.tool("podman", &["image", "unmount", &id]));
        tree
    }

    /// `image`'s Docker-format config.
    fn config(&self, image: &str) -> Value {
        let out = self.run(&["inspect", "--type", "image", image]);
        json(out.as_bytes())["Docker"].clone()
    }
}

/// A command's trimmed stdout; its failure fails the test, with its output.
fn output_of(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // vfs layers are plain folders; unmount whatever a failed step left mounted.
        let _ = self.command(&["rm", "-a"]).output();
        let _ = self.command(&["rmi", "-a", "-f"]).output();
    }
}

// ---------------------------------------------------------------------------------
// A root filesystem as the comparison sees it.

/// What one path is, mtimes aside.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Entry {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
}

type Tree = BTreeMap<String, Entry>;

fn walk(root: &Path) -> Tree {
    let mut tree = Tree::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let entry = entry.unwrap();
        let path = entry.path();
        let meta = std::fs::symlink_metadata(path).unwrap();
        let kind = meta.file_type();
        let kind = if kind.is_symlink() {
            format!("symlink -> {}", std::fs::read_link(path).unwrap().display())
        } else if kind.is_dir() {
            "folder".into()
        } else if kind.is_file() {
            format!(
                "file of {} bytes, sha256 {}",
                meta.len(),
                sha256_hex(&std::fs::read(path).unwrap())
            )
        } else if kind.is_char_device() {
            format!("char device {:#x}", meta.rdev())
        } else if kind.is_block_device() {
            format!("block device {:#x}", meta.rdev())
        } else if kind.is_fifo() {
            "fifo".into()
        } else {
            "socket".into()
        };
        let name = format!("/{}", path.strip_prefix(root).unwrap().display());
        tree.insert(
            name,
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            },
        );
    }
    tree
}

/// What buildah alone leaves in an image, by design, that BuildKit and xbake do not:
/// empty files and folders made for RUN steps' mounts (`stubs`: the standard ones and a
/// Dockerfile's own mount targets; BuildKit removes such stubs after the step), and an
/// empty folder for each VOLUME (BuildKit records volumes in the config only). A stub
/// folder may hold only other stubs.
fn buildah_only(tree: &Tree, path: &str, entry: &Entry, stubs: &[&str]) -> bool {
    const EMPTY: &str =
        "file of 0 bytes, sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let holds_only_stubs = entry.kind == "folder"
        && tree
            .keys()
            .filter(|p| {
                p.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .all(|p| stubs.contains(&p.as_str()));
    stubs.contains(&path) && (entry.kind == EMPTY || holds_only_stubs)
}

/// The differences between two trees; `stubs` are what buildah may leave (above).
fn tree_differences(buildah: &Tree, xbake: &Tree, stubs: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, b) in buildah {
        match xbake.get(path) {
            None if buildah_only(buildah, path, b, stubs) => {}
            None => out.push(format!("{path}: only in buildah's image ({})", b.kind)),
            Some(x) if x != b => {
                let mut what = Vec::new();
                if x.kind != b.kind {
                    what.push(format!("buildah: {}, xbake: {}", b.kind, x.kind));
                }
                if x.mode != b.mode {
                    what.push(format!("mode buildah {:04o}, xbake {:04o}", b.mode, x.mode));
                }
                if (x.uid, x.gid) != (b.uid, b.gid) {
                    what.push(format!(
                        "owner buildah {}:{}, xbake {}:{}",
                        b.uid, b.gid, x.uid, x.gid
                    ));
                }
                out.push(format!("{path}: {}", what.join("; ")));
            }
            Some(_) => {}
        }
    }
    for (path, x) in xbake {
        if !buildah.contains_key(path) {
            out.push(format!("{path}: only in xbake's image ({})", x.kind));
        }
    }
    out
}

/// A config field, with what docker treats as unset (missing, null, empty) as None.
fn field(config: &Value, name: &str) -> Option<Value> {
    let mut value = config.get(name)?.clone();
    if name == "Labels"
        && let Some(labels) = value.as_object_mut()
    {
        labels.remove(BUILDAH_ONLY_LABEL);
    }
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    (!empty).then_some(value)
}

/// The differences between two image configs: `author` and the `config` fields.
fn config_differences(buildah: &Value, xbake: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (b, x) = (field(buildah, "author"), field(xbake, "author"));
    if b != x {
        out.push(format!("author: buildah {b:?}, xbake {x:?}"));
    }
    for name in CONFIG_FIELDS {
        let (mut b, x) = (
            field(&buildah["config"], name),
            field(&xbake["config"], name),
        );
        if *name == "Labels" {
            b = with_maintainer_label(b, buildah);
        }
        if b != x {
            out.push(format!("config {name}: buildah {b:?}, xbake {x:?}"));
        }
    }
    out
}

/// buildah's labels plus the `maintainer` label xbake adds for MAINTAINER (README: the
/// author field, as docker and buildah, and the label the issue asks for).
fn with_maintainer_label(labels: Option<Value>, config: &Value) -> Option<Value> {
    let Some(author) = field(config, "author") else {
        return labels;
    };
    let mut labels = labels.unwrap_or_else(|| Value::Object(Default::default()));
    labels
        .as_object_mut()
        .expect("Labels is an object")
        .insert("maintainer".into(), author);
    Some(labels)
}

// ---------------------------------------------------------------------------------
// One comparison.

struct Comparison<'a> {
    bases: &'a Bases,
    buildah: &'a Buildah,
    scratch: LowercaseDir,
}

/// A scratch folder whose path has no upper case: buildah takes none in an `oci:` path
/// (tempfile's random names have some).
struct LowercaseDir(PathBuf);

impl LowercaseDir {
    fn new() -> LowercaseDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = PathBuf::from(format!(
            "/var/tmp/xbake-vs-buildah-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).unwrap();
        LowercaseDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for LowercaseDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Who builds: the flags differ only where a tool must name its own earlier image.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Xbake,
    Buildah,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Xbake => "xbake",
            Tool::Buildah => "buildah",
        }
    }
}

impl<'a> Comparison<'a> {
    fn new(bases: &'a Bases, buildah: &'a Buildah) -> Comparison<'a> {
        Comparison {
            bases,
            buildah,
            scratch: LowercaseDir::new(),
        }
    }

    /// Builds corpus entry `name` for `platform` with both tools, `flags(tool)` added to
    /// the registry's build arg; returns (buildah's local image, xbake's `oci:` reference).
    fn build(
        &self,
        name: &str,
        platform: &str,
        flags: impl Fn(Tool) -> Vec<String>,
    ) -> (String, String) {
        let context = corpus(name);
        let registry = format!("REGISTRY={}", self.bases.addr());
        let with_registry = |tool| {
            let mut all = vec!["--build-arg".to_string(), registry.clone()];
            all.extend(flags(tool));
            all
        };
        let image = buildah_image(name, platform);
        self.buildah
            .build(&context, &image, platform, &with_registry(Tool::Buildah));
        let layout = self.xbake_layout(name);
        let out = format!("oci:{}", layout.display());
        let cache = self.scratch.path().join("cache");
        let mut args = vec![
            "build".to_string(),
            context.display().to_string(),
            "--platform".into(),
            platform.into(),
            "-t".into(),
            format!("{name}:1"),
            "-o".into(),
            out,
            "--cache-dir".into(),
            cache.display().to_string(),
        ];
        args.extend(with_registry(Tool::Xbake));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        xbake_ok(self.scratch.path(), &args, &[]);
        (image, format!("oci:{}:1", layout.display()))
    }

    /// Builds and compares; panics with every difference found.
    fn assert_same(&self, name: &str, platform: &str, flags: impl Fn(Tool) -> Vec<String>) {
        self.assert_same_but(name, platform, flags, &Expected::default());
    }

    /// As `assert_same`, with what is known to differ (`Expected`).
    fn assert_same_but(
        &self,
        name: &str,
        platform: &str,
        flags: impl Fn(Tool) -> Vec<String>,
        expected: &Expected,
    ) {
        let known = expected.known;
        let (buildah_image, xbake_image) = self.build(name, platform, flags);
        let buildah_config = self.buildah.config(&buildah_image);
        let volumes: Vec<String> = buildah_config["config"]["Volumes"]
            .as_object()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let stubs: Vec<&str> = BUILDAH_MOUNT_STUBS
            .iter()
            .chain(expected.mount_stubs)
            .copied()
            .chain(volumes.iter().map(String::as_str))
            .collect();
        let mut differences = tree_differences(
            &self.buildah.tree(&buildah_image),
            &self.buildah.tree(&xbake_image),
            &stubs,
        );
        differences.extend(config_differences(
            &buildah_config,
            &self.xbake_config(name, platform),
        ));
        let rules = expected
            .normalization
            .then(normalized_paths)
            .unwrap_or_default();
        let (by_rules, differences): (Vec<String>, Vec<String>) = differences
            .into_iter()
            .partition(|d| rules.iter().any(|path| d.starts_with(&format!("{path}: "))));
        for d in &by_rules {
            eprintln!("{name}: xbake's normalisation rules: {d}");
        }
        let (expected, unexpected): (Vec<String>, Vec<String>) = differences
            .into_iter()
            .partition(|d| known.iter().any(|(start, _)| d.starts_with(start)));
        for d in &expected {
            eprintln!("{name}: known difference: {d}");
        }
        let missing: Vec<String> = known
            .iter()
            .filter(|(start, _)| !expected.iter().any(|d| d.starts_with(start)))
            .map(|(start, why)| format!("{start}… (expected: {why}) did not differ"))
            .collect();
        assert!(
            unexpected.is_empty() && missing.is_empty(),
            "{name} ({platform}): xbake's image differs from buildah's:\n  {}",
            [unexpected, missing].concat().join("\n  ")
        );
    }

    /// xbake's image config for `platform`, read from its layout.
    fn xbake_config(&self, name: &str, platform: &str) -> Value {
        let (_, images) = read_layout(&self.xbake_layout(name), "1");
        let image = images
            .iter()
            .find(|i| i.platform == platform)
            .unwrap_or_else(|| panic!("no {platform} image in xbake's {name}"));
        image.config.clone()
    }

    /// Where xbake's image of corpus entry `name` is written (tag `1`).
    fn xbake_layout(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// Pushes the image a tool built of corpus entry `name` for `platform` as
    /// `NAME-TOOL:1`, for a later build to start from; returns the reference.
    fn push(&self, tool: Tool, name: &str, platform: &str) -> String {
        let to = format!("{}/{name}-{}:1", self.bases.addr(), tool.name());
        match tool {
            Tool::Buildah => {
                self.buildah.run(&[
                    "push",
                    "--tls-verify=false",
                    &buildah_image(name, platform),
                    &format!("docker://{to}"),
                ]);
            }
            Tool::Xbake => {
                let from = format!("oci:{}:1", self.xbake_layout(name).display());
                let out = Command::new("skopeo")
                    .args(["copy", "--all", "--dest-tls-verify=false", &from])
                    .arg(format!("docker://{to}"))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "skopeo copy:\n{}", text(&out));
            }
        }
        to
    }
}

/// buildah's local name for its image of corpus entry `name` for `platform`.
fn buildah_image(name: &str, platform: &str) -> String {
    format!("localhost/{name}:{}", platform.replace('/', "-"))
}

/// What a comparison allows to differ.
#[derive(Default)]
struct Expected<'a> {
    /// (what a difference starts with, why): where buildah 1.28 differs from BuildKit,
    /// which xbake follows, or xbake deliberately differs. Each must be found, so a
    /// difference that goes away fails the test too.
    known: &'a [(&'a str, &'a str)],
    /// The Dockerfile's RUN mount targets buildah leaves behind (see `buildah_only`).
    mount_stubs: &'a [&'a str],
    /// The files xbake's normalisation rules (normalize/rules.conf) cover may differ: a
    /// package install writes dates and caches into them.
    normalization: bool,
}

/// The literal paths normalize/rules.conf names (its globs cover no file here).
fn normalized_paths() -> Vec<String> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("normalize/rules.conf");
    std::fs::read_to_string(rules)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with('/') && !p.contains('*'))
        .map(String::from)
        .collect()
}

fn no_flags(_: Tool) -> Vec<String> {
    Vec::new()
}

/// The registry and buildah, or None (after saying why) when the comparison cannot run.
fn set_up(debian: bool) -> Option<(Bases, Buildah)> {
    let buildah = Buildah::new()?;
    let bases = Bases::start(debian)?;
    Some((bases, buildah))
}

/// The busybox-based entries that need nothing but their context and the registry.
#[test]
fn busybox_dockerfiles_match_buildahs() {
    let Some((bases, buildah)) = set_up(false) else {
        return;
    };
    let compare = Comparison::new(&bases, &buildah);
    for name in [
        "busybox",
        "arg-scope",
        "arg-overrides-env",
        "config",
        "dockerignore",
        "copy-from-image",
    ] {
        compare.assert_same(name, "linux/amd64", no_flags);
    }
    // A step's supplementary groups: runc (so BuildKit, and xbake) sets the user's
    // memberships in /etc/group; buildah's chroot isolation adds the primary group too
    // (`groups=1500(app),1600(tools)` against `groups=1600(tools)`).
    compare.assert_same_but(
        "user-by-name",
        "linux/amd64",
        no_flags,
        &Expected {
            known: &[(
                "/home/app/whoami: ",
                "buildah 1.28 lists the primary group among the supplementary ones",
            )],
            ..Expected::default()
        },
    );
    // BuildKit reads ENV's words with the escape character the directive names, so a
    // backslash is an ordinary character there; buildah 1.28 keeps `\` as the escape in
    // ENV (and drops it: `C:Program` Filesapp`).
    const BUILDAH_ENV_ESCAPE: &str = "buildah 1.28 ignores `# escape=` in ENV";
    compare.assert_same_but(
        "escape-backtick",
        "linux/amd64",
        no_flags,
        &Expected {
            known: &[
                ("/winpath: ", BUILDAH_ENV_ESCAPE),
                ("config Env: ", BUILDAH_ENV_ESCAPE),
            ],
            ..Expected::default()
        },
    );
}

/// Cache, secret, bind (from a stage) and tmpfs mounts: the secret given to both tools
/// the same way, and nothing of any mount left in the image.
#[test]
fn run_mounts_match_buildahs() {
    let Some((bases, buildah)) = set_up(false) else {
        return;
    };
    let compare = Comparison::new(&bases, &buildah);
    let secret = compare.scratch.path().join("token");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let secret_flag = format!("id=token,src={}", secret.display());
    compare.assert_same_but(
        "mounts",
        "linux/amd64",
        |_| vec!["--secret".into(), secret_flag.clone()],
        &Expected {
            mount_stubs: &["/mnt", "/run/secrets", "/var/cache", "/var/cache/app"],
            ..Expected::default()
        },
    );
}

/// A local archive unpacked and a URL fetched (from a server on loopback).
#[test]
fn add_of_archives_and_urls_matches_buildahs() {
    let Some((bases, buildah)) = set_up(false) else {
        return;
    };
    let asset = std::fs::read(corpus("add-archive-and-url").join("asset.txt")).unwrap();
    let server = FakeServer::start("127.0.0.1", move |_| {
        move |_: &registry_harness::fake_server::Recorded| {
            Reply::ok("text/plain", &asset).header("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT")
        }
    });
    let url = format!("ASSET_URL=http://{}/asset.txt", server.addr);
    let compare = Comparison::new(&bases, &buildah);
    compare.assert_same("add-archive-and-url", "linux/amd64", |_| {
        vec!["--build-arg".into(), url.clone()]
    });
}

/// ONBUILD: the base's config records the triggers; a child built on each tool's own
/// base runs them (COPY of its context, then RUN) before its own instructions.
#[test]
fn onbuild_triggers_match_buildahs() {
    let Some((bases, buildah)) = set_up(false) else {
        return;
    };
    let compare = Comparison::new(&bases, &buildah);
    compare.assert_same("onbuild-base", "linux/amd64", no_flags);
    let buildah_base = compare.push(Tool::Buildah, "onbuild-base", "linux/amd64");
    let xbake_base = compare.push(Tool::Xbake, "onbuild-base", "linux/amd64");
    compare.assert_same("onbuild-child", "linux/amd64", |tool| {
        let base = match tool {
            Tool::Buildah => &buildah_base,
            Tool::Xbake => &xbake_base,
        };
        vec!["--build-arg".into(), format!("BASE={base}")]
    });
}

/// A Go program compiled in a build stage (`FROM --platform=$BUILDPLATFORM`, the
/// TARGET* args, a cache mount) into a scratch image: the binaries must be the same
/// bytes. For linux/amd64 only: buildah 1.28 does not honour `--platform=$BUILDPLATFORM`
/// on FROM (it asks the registry for a golang image of the target's CPU).
#[test]
fn go_build_stage_matches_buildahs() {
    let Some((bases, buildah)) = set_up(true) else {
        return;
    };
    let compare = Comparison::new(&bases, &buildah);
    compare.assert_same("go-cross", "linux/amd64", no_flags);
}

/// apt-get install on the Debian base, natively.
#[test]
fn debian_apt_install_matches_buildahs() {
    let Some((bases, buildah)) = set_up(true) else {
        return;
    };
    let compare = Comparison::new(&bases, &buildah);
    compare.assert_same_but(
        "debian-apt",
        "linux/amd64",
        no_flags,
        &Expected {
            // useradd (nfs-common's users) dates the password change by SOURCE_DATE_EPOCH,
            // which xbake's steps have; the backup file is no rule's.
            known: &[(
                "/etc/shadow-: ",
                "useradd dates its entries by xbake's SOURCE_DATE_EPOCH",
            )],
            normalization: true,
            ..Expected::default()
        },
    );
}
