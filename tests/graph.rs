//! Stages: the build graph from a recipe's `stages:`, with busybox bases only (the Go
//! cross-compiling workflow is in tests/stages.rs).

mod common;

use common::*;
use std::path::Path;

/// `tools` runs natively and names the target; `shared` runs natively and does not;
/// `unused` is never needed; the final image starts from `base` and copies from both.
const GRAPH: &str = r#"
stages:
  tools:
    from: rootfs:bases/busybox-amd64.tar.gz
    platform: build
    steps:
      - run: mkdir -p /out && echo "built on $(uname -m) for $TARGETARCH" > /out/note && echo tools-ran
  unused:
    from: rootfs:bases/busybox-amd64.tar.gz
    steps:
      - run: echo unused-ran
  shared:
    from: rootfs:bases/busybox-amd64.tar.gz
    platform: build
    steps:
      - run: mkdir -p /share/sub && echo SHARED > /share/sub/data && ln -s /share/sub/data /share/link && echo shared-ran
  base:
    from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
    env: {FROM_BASE: "yes", PATH: /usr/bin:/bin}
    steps:
      - run: uname -m > /arch
from: base
env: {PATH: "/opt/bin:${PATH}"}
steps:
  - copy: /out/note
    from: tools
    to: /note
  - copy: /share/sub/*
    from: shared
    to: /share/
  - copy: /share/link
    from: shared
    to: /copied-link
  - run: echo "$FROM_BASE $PATH" > /env
"#;

fn build(who: As, dir: &Path, tag: &str, extra: &[&str]) -> (String, Vec<ReadImage>, String) {
    // Each user writes its own layout (a root-made folder is not the test user's).
    let layout = match who {
        As::Me => "out/graph".to_string(),
        As::TestUser => "out-user/graph".to_string(),
    };
    let output = format!("oci:{layout}");
    let mut args = vec![
        "build",
        "recipe.yaml",
        "--arch",
        "arm64,ppc64le",
        "--network",
        "none",
        "-o",
        &output,
        "--tag",
        tag,
    ];
    args.extend(extra);
    let out = xbake(who, dir, &args, &[]);
    assert_ok(&out);
    let (index, images) = read_layout(&dir.join(&layout), tag);
    (
        index,
        images,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many times step `prefix` (`shared@amd64 1/1`) printed the line `what`: once
/// each time it ran, never when it came from the cache.
fn ran(stderr: &str, prefix: &str, what: &str) -> usize {
    let line = format!("[{prefix}] {what}");
    stderr.lines().filter(|l| *l == line).count()
}

fn ready() -> bool {
    if fixtures().is_none() {
        return !skip("busybox fixtures (just fixtures)");
    }
    emulation_ready()
}

#[test]
fn stages_build_what_the_output_needs_and_copy_between_them() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("graph", GRAPH, &[]);
    let dir = recipe.parent().unwrap();
    let (index, images, stderr) = build(As::Me, dir, "1", &[]);

    let by_arch = |arch: &str| images.iter().find(|i| i.platform.contains(arch)).unwrap();
    for (arch, uname) in [("arm64", "aarch64"), ("ppc64le", "ppc64le")] {
        let image = by_arch(arch);
        // The build-platform stage ran natively, naming the target.
        assert_eq!(
            file_text(image, "note"),
            format!("built on x86_64 for {arch}\n")
        );
        assert_eq!(file_text(image, "arch"), format!("{uname}\n"));
        // A link copied from a stage is resolved inside that stage.
        assert_eq!(file_text(image, "copied-link"), "SHARED\n");
        assert_eq!(file_text(image, "share/data"), "SHARED\n");
        // `${PATH}` sees the env the base stage left.
        assert_eq!(file_text(image, "env"), "yes /opt/bin:/usr/bin:/bin\n");
        assert!(
            image.config["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&"PATH=/opt/bin:/usr/bin:/bin".into()),
            "{}",
            image.config
        );
    }
    assert!(
        !stderr.contains("unused-ran"),
        "an unused stage ran:\n{stderr}"
    );
    // `tools` names TARGETARCH: once per target; `shared` does not: once.
    assert_eq!(
        ran(&stderr, "tools@amd64→arm64 1/1", "tools-ran"),
        1,
        "{stderr}"
    );
    assert_eq!(
        ran(&stderr, "tools@amd64→ppc64le 1/1", "tools-ran"),
        1,
        "{stderr}"
    );
    assert_eq!(
        ran(&stderr, "shared@amd64 1/1", "shared-ran"),
        1,
        "{stderr}"
    );

    // Cached: nothing runs, same digest.
    let (again, _, stderr) = build(As::Me, dir, "2", &[]);
    assert_eq!(again, index);
    assert!(stderr.contains("0 steps run"), "{stderr}");

    // A change in one stage reruns it and what depends on it, nothing else.
    let changed = GRAPH.replace("echo SHARED", "echo CHANGED");
    std::fs::write(&recipe, changed).unwrap();
    let (third, images, stderr) = build(As::Me, dir, "3", &[]);
    assert_ne!(third, index);
    assert_eq!(file_text(&images[0], "share/data"), "CHANGED\n");
    assert_eq!(
        ran(&stderr, "shared@amd64 1/1", "shared-ran"),
        1,
        "{stderr}"
    );
    for target in ["arm64", "ppc64le"] {
        let step = format!("tools@amd64→{target} 1/1");
        assert_eq!(ran(&stderr, &step, "tools-ran"), 0, "{stderr}");
    }
    for platform in ["arm64", "ppc64le"] {
        assert!(
            stderr.contains(&format!(
                "[base@{platform} 1/1] RUN uname -m > /arch (cached)"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "[{platform} 1/4] COPY --from=tools /out/note /note (cached)"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn a_fresh_rootless_build_of_stages_matches_the_cached_root_one() {
    if !ready() || test_user().is_none() && skip("a test user (needs root)") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("graph", GRAPH, &[]);
    let dir = recipe.parent().unwrap();
    let (root, _, _) = build(As::Me, dir, "root", &[]);
    let (cached, _, _) = build(As::Me, dir, "cached", &[]);
    let (rootless, _, stderr) = build(As::TestUser, dir, "rootless", &[]);
    assert_eq!(cached, root);
    assert_eq!(rootless, root, "{stderr}");
    assert!(
        !stderr.contains("(cached)"),
        "the test user's cache is its own:\n{stderr}"
    );
}

#[test]
fn target_builds_a_stage_and_unknown_targets_are_named() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("graph", GRAPH, &[]);
    let dir = recipe.parent().unwrap();
    // `shared` does not depend on the target: one amd64 image serves both.
    let (_, images, stderr) = build(
        As::Me,
        dir,
        "shared",
        &["--target", "shared", "--metadata-file", "meta.json"],
    );
    assert_eq!(images.len(), 1, "{stderr}");
    let meta = json(&std::fs::read(dir.join("meta.json")).unwrap());
    assert_eq!(meta["xbake.target"], "shared");
    assert_eq!(images[0].platform, "linux/amd64");
    assert_eq!(file_text(&images[0], "share/sub/data"), "SHARED\n");
    assert_eq!(
        ran(&stderr, "tools@amd64→arm64 1/1", "tools-ran"),
        0,
        "{stderr}"
    );

    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--target", "nope"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "--target nope: the recipe has no such stage; its stages: tools, unused, shared, base"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn copy_from_an_image_reads_its_filesystem_for_the_platform() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    // An image to copy from: a file per platform and a link that only resolves inside it.
    let source = scratch.recipe(
        "source",
        r#"
from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
steps:
  - run: mkdir -p /data && uname -m > /data/arch && ln -s /etc/passwd /data/passwd
"#,
        &[],
    );
    let source_dir = source.parent().unwrap();
    xbake_ok(
        source_dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,ppc64le",
            "--network",
            "none",
            "-o",
            "oci:out/src",
            "--tag",
            "1",
        ],
        &[],
    );
    let user = scratch.recipe(
        "user",
        &format!(
            "from: scratch\nsteps:\n  - copy: [/data/arch, /data/passwd]\n    from: oci:{0}:1\n    to: /got/\n  - copy: /d*/a?ch\n    from: oci:{0}:1\n    to: /glob/\n",
            source_dir.join("out/src").display()
        ),
        &[],
    );
    let user_dir = user.parent().unwrap();
    let (_, stderr) = xbake_ok(
        user_dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,ppc64le",
            "-o",
            "oci:out/user",
            "--tag",
            "1",
        ],
        &[],
    );
    let (_, images) = read_layout(&user_dir.join("out/user"), "1");
    for (image, uname) in images.iter().zip(["aarch64", "ppc64le"]) {
        assert_eq!(
            file_text(image, "got/arch"),
            format!("{uname}\n"),
            "{stderr}"
        );
        // A wildcard in a folder's name, as BuildKit's copy allows.
        assert_eq!(file_text(image, "glob/arch"), format!("{uname}\n"));
        // The image's /etc/passwd, not the host's.
        assert!(
            file_text(image, "got/passwd").starts_with("root:x:0:0:"),
            "{stderr}"
        );
        assert_ne!(
            file_text(image, "got/passwd"),
            std::fs::read_to_string("/etc/passwd").unwrap()
        );
    }
}

/// Every run mount type in one recipe; the platform is emulated, the bound stage native.
const MOUNTS: &str = r#"
stages:
  data:
    from: rootfs:bases/busybox-amd64.tar.gz
    platform: build
    steps:
      - run: mkdir -p /data && echo from-stage > /data/file
from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
steps:
  - run: n=$(cat /cache/count 2>/dev/null || echo 0); echo $((n+1)) > /cache/count; cp /cache/count /seen
    mounts: [{type: cache, target: /cache}]
  - run: sha256sum < /run/secrets/token | cut -d' ' -f1 > /secret-sum; stat -c '%a %u' /run/secrets/token > /secret-mode
    mounts: [{type: secret, id: token, required: true}]
  - run: cat /mnt/data/file > /bound; touch /mnt/data/x 2>/dev/null || echo refused > /bind-write
    mounts: [{type: bind, from: data, source: /data, target: /mnt/data}]
  - run: grep ' /scratch ' /proc/mounts | cut -d' ' -f3 > /scratch-type; echo x > /scratch/f
    mounts: [{type: tmpfs, target: /scratch, size: 1m}]
"#;

/// Whether `needle` occurs in any file under `dir`.
fn found_under(dir: &Path, needle: &[u8]) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn run_mounts_cache_secret_bind_and_tmpfs_never_reach_a_layer() {
    if !ready() {
        return;
    }
    let scratch = Scratch::new();
    let secret = "s3cr3t-value-that-must-not-leak-9f2c";
    let recipe = scratch.recipe("mounts", MOUNTS, &[("token.txt", secret)]);
    let dir = recipe.parent().unwrap();
    let build = |tag: &str, extra: &[&str]| {
        let mut args = vec![
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--network",
            "none",
            "--secret",
            "id=token,src=token.txt",
            "--metadata-file",
            "meta.json",
            "-o",
            "oci:out/mounts",
            "--tag",
            tag,
        ];
        args.extend(extra);
        let out = xbake(As::Me, dir, &args, &[]);
        assert_ok(&out);
        let (_, images) = read_layout(&dir.join("out/mounts"), tag);
        (images.into_iter().next().unwrap(), text(&out))
    };
    let (image, log) = build("1", &[]);
    assert_eq!(file_text(&image, "seen"), "1\n");
    assert_eq!(
        file_text(&image, "secret-sum"),
        format!("{}\n", sha256_hex(secret.as_bytes()))
    );
    assert_eq!(file_text(&image, "secret-mode"), "400 0\n");
    assert_eq!(file_text(&image, "bound"), "from-stage\n");
    assert_eq!(file_text(&image, "bind-write"), "refused\n");
    assert_eq!(file_text(&image, "scratch-type"), "tmpfs\n");
    // No mount, mount point or written-through file is in the image.
    for path in ["cache", "run/secrets", "mnt", "scratch"] {
        assert!(
            !image
                .meta
                .keys()
                .any(|p| p == path || p.starts_with(&format!("{path}/"))),
            "{path} is in the image: {:?}",
            image.meta.keys().collect::<Vec<_>>()
        );
    }
    // The cache mount kept its file: a build that runs every step again counts on.
    let (image, _) = build("2", &["--no-cache"]);
    assert_eq!(file_text(&image, "seen"), "2\n");
    // The secret's bytes are nowhere: not in a blob, a record, the metadata or the log.
    for place in [
        dir.join(".cache-me"),
        dir.join("out"),
        dir.join("meta.json"),
    ] {
        assert_eq!(found_under(&place, secret.as_bytes()), Vec::<String>::new());
    }
    assert!(!log.contains(secret));
    // A required secret that is not given fails, naming it.
    let out = xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--network",
            "none",
            "--no-cache",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("token"), "{}", text(&out));
    // verify rebuilds with the secret it is given (in a fresh cache, so the cache mount
    // starts empty as it did for tag 1), and cannot without it.
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "recipe.yaml", "--against", "oci:out/mounts:1"];
        args.extend(extra);
        xbake(As::Me, dir, &args, &[])
    };
    assert_ok(&verify(&["--secret", "id=token,src=token.txt"]));
    let out = verify(&[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("token"), "{}", text(&out));
    assert!(!text(&out).contains(secret));
}
