//! Reproducibility, the step cache, and the audit commands (verify, diff, metadata).

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const CACHED: &str = "from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
platforms: [arm64, ppc64le, arm]
steps:
  - run: cat /proc/sys/kernel/random/uuid > /a
  - copy: files/input.txt
    to: /input.txt
  - run: cat /proc/sys/kernel/random/uuid > /b
";

fn build(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut all = vec!["build", "recipe.yaml"];
    all.extend_from_slice(args);
    xbake_ok(dir, &all, env)
}

#[test]
fn a_cached_rebuild_runs_nothing_and_a_changed_input_reruns_from_its_step() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("cache", CACHED, &[("files/input.txt", "one\n")]);
    let dir = recipe.parent().unwrap();
    let (first, err) = build(dir, &["-o", "oci:o:1"], &[]);
    assert_eq!(steps_line(&err), "3 platforms: 9 steps run, 0 cached");

    let start = std::time::Instant::now();
    let (again, err) = build(dir, &["-o", "oci:o:2"], &[]);
    let cached_time = start.elapsed();
    assert_eq!(steps_line(&err), "3 platforms: 0 steps run, 9 cached");
    assert_eq!(again, first, "a cached rebuild reproduces the image");
    assert!(
        err.contains("[arm64 1/3] RUN cat /proc/sys/kernel/random/uuid > /a (cached)"),
        "{err}"
    );
    eprintln!("cached rebuild of 3 platforms: {cached_time:?} (debug build)");

    let (fresh, err) = build(dir, &["--no-cache", "-o", "oci:o:3"], &[]);
    assert_eq!(steps_line(&err), "3 platforms: 9 steps run, 0 cached");
    assert_ne!(fresh, first, "--no-cache reran the uuid steps");

    // The input changes: step 1 stays cached (from the --no-cache run, the latest), 2 and 3 run.
    std::fs::write(dir.join("files/input.txt"), "two\n").unwrap();
    let (changed, err) = build(dir, &["-o", "oci:o:4"], &[]);
    assert_eq!(steps_line(&err), "3 platforms: 6 steps run, 3 cached");
    let (_, before) = read_layout(&dir.join("o"), "3");
    let (_, after) = read_layout(&dir.join("o"), "4");
    assert_ne!(changed, fresh);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(file_text(b, "a"), file_text(a, "a"), "step 1 was reused");
        assert_ne!(file_text(b, "b"), file_text(a, "b"), "step 3 ran again");
        assert_eq!(file_text(a, "input.txt"), "two\n");
    }

    // ls and prune see and drop the steps.
    let cache = dir.join(".cache-me/xbake");
    let out = xbake(
        As::Me,
        dir,
        &[
            "cache",
            "ls",
            "--json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        &[],
    );
    assert_ok(&out);
    let listed = json(&out.stdout);
    // Build 1 recorded 9 steps. --no-cache re-recorded step 1 under the same keys and
    // steps 2-3 under new ones (their parent layers differ): 6 more. The changed input
    // gave steps 2-3 new keys again: 6 more.
    assert_eq!(listed.as_array().unwrap().len(), 21);
    // The table gives sizes with their units (`--json` keeps bytes).
    let out = xbake(
        As::Me,
        dir,
        &["cache", "ls", "--cache-dir", cache.to_str().unwrap()],
        &[],
    );
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let total = table
        .lines()
        .find_map(|l| l.strip_prefix("21 steps, "))
        .and_then(|rest| rest.split_once(" of blobs in "))
        .unwrap_or_else(|| panic!("no summary line in:\n{table}"))
        .0;
    assert!(is_size(total), "{total:?} in:\n{table}");
    let rows: Vec<&str> = table.lines().skip(1).take(21).collect();
    for row in &rows {
        // KEY PLATFORM SIZE UNIT DATE STEP…
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert!(is_size(&format!("{} {}", fields[2], fields[3])), "{row}");
    }
    let out = xbake(
        As::Me,
        dir,
        &["cache", "prune", "--cache-dir", cache.to_str().unwrap()],
        &[],
    );
    assert_ok(&out);
    let (_, err) = build(dir, &["-o", "oci:o:5"], &[]);
    assert_eq!(steps_line(&err), "3 platforms: 9 steps run, 0 cached");
}

#[test]
fn the_same_inputs_give_the_same_digest_from_any_folder_with_any_mtimes_and_owners() {
    if !emulation_ready() {
        return;
    }
    if !is_root() && skip("needs root to give the inputs another owner") {
        return;
    }
    let scratch = Scratch::new();
    let text = "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nplatforms: [arm64, s390x]\nsteps:\n\
                \x20 - copy: files/\n    to: /srv/\n  - run: ls -ln /srv > /listing\n";
    let files = [("files/a.txt", "a\n"), ("files/sub/b.sh", "#!/bin/sh\n")];
    let one = scratch.recipe("one", text, &files);
    let two = scratch.recipe("somewhere/else/two", text, &files);
    // Years-old mtimes and a foreign owner on the second copy's inputs.
    for f in ["files/a.txt", "files/sub/b.sh", "files/sub", "files"] {
        let p = two.parent().unwrap().join(f);
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(978_307_200);
        std::fs::File::open(&p).unwrap().set_modified(old).unwrap();
        std::os::unix::fs::chown(&p, Some(4242), Some(4242)).unwrap();
    }
    let (a, _) = build(one.parent().unwrap(), &["-o", "oci:o"], &[]);
    let (b, _) = build(two.parent().unwrap(), &["--no-cache", "-o", "oci:o"], &[]);
    assert_eq!(a, b);
    let (_, images) = read_layout(&two.parent().unwrap().join("o"), "latest");
    assert_eq!(
        images[0].meta["srv/a.txt"],
        (0, 0, images[0].meta["srv/a.txt"].2)
    );
}

#[test]
fn source_date_epoch_sets_created_and_clamps_every_mtime() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "epoch",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: mkdir -p /new/dir && echo x > /new/dir/file\n  - copy: files/c\n    to: /c\n",
        &[("files/c", "c\n")],
    );
    let dir = recipe.parent().unwrap();
    let (zero, _) = build(dir, &["--arch", "arm64", "-o", "oci:zero"], &[]);
    let (epoch, _) = build(
        dir,
        &["--arch", "arm64", "-o", "oci:epoch"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_ne!(zero, epoch);
    let (_, images) = read_layout(&dir.join("epoch"), "latest");
    let config = &images[0].config;
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    for h in config["history"].as_array().unwrap() {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
    }
    // Every entry of the layers this build made: no mtime after the epoch. (Read the
    // tars directly: the reader helper flattens away the mtimes.)
    let manifest = json(&blob(&dir.join("epoch"), &images[0].manifest_digest));
    let layers = manifest["layers"].as_array().unwrap();
    let mut seen = 0;
    for layer in &layers[1..] {
        let gz = blob(&dir.join("epoch"), layer["digest"].as_str().unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            assert!(entry.header().mtime().unwrap() <= 1_700_000_000);
            seen += 1;
        }
    }
    assert!(seen >= 4, "the step layers hold the new entries");
    // --source-date-epoch wins over the environment.
    let (flag, _) = build(
        dir,
        &[
            "--arch",
            "arm64",
            "--source-date-epoch",
            "1700000000",
            "-o",
            "oci:flag",
        ],
        &[("SOURCE_DATE_EPOCH", "5")],
    );
    assert_eq!(flag, epoch);
}

#[test]
fn kill_9_at_any_moment_leaves_a_cache_that_still_gives_the_clean_digest() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let text = "from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\nplatforms: [arm64, arm, ppc64le]\nsteps:\n\
                \x20 - run: for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /f$i; done; sleep 0.3\n\
                \x20 - copy: files/x\n    to: /x\n\
                \x20 - run: cat /f* | md5sum > /sum; sleep 0.2\n";
    let recipe = scratch.recipe("kill", text, &[("files/x", "x\n")]);
    let dir = recipe.parent().unwrap();
    let clean_cache = dir.join("clean-cache");
    let (clean, _) = build(dir, &["--cache-dir", clean_cache.to_str().unwrap()], &[]);
    let shared = dir.join("shared-cache");
    for delay_ms in [10u64, 100, 250, 500, 800, 1200] {
        let mut cmd = std::process::Command::new(shared_binary());
        cmd.args([
            "build",
            "recipe.yaml",
            "--cache-dir",
            shared.to_str().unwrap(),
            "--no-cache",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
    }
    // Whatever the kills left, the next build with that cache gives the clean image.
    let (after, _) = build(dir, &["--cache-dir", shared.to_str().unwrap()], &[]);
    assert_eq!(after, clean);

    // A damaged layer behind a step record must not be used: the step runs again.
    let (record_key, victim) = std::fs::read_dir(shared.join("steps"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .find_map(|e| {
            let record = json(&std::fs::read(e.path()).ok()?);
            let digest = record["layer"]["digest"].as_str()?.to_string();
            Some((e.path(), digest))
        })
        .expect("a complete build recorded its step layers");
    let blob_path = shared.join("blobs/sha256").join(&victim[7..]);
    let mut bytes = std::fs::read(&blob_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob_path, bytes).unwrap();
    let (repaired, err) = build(dir, &["--cache-dir", shared.to_str().unwrap()], &[]);
    assert_eq!(repaired, clean);
    assert!(!steps_line(&err).contains(" 0 steps run"), "{err}");
    assert!(
        record_key.exists(),
        "the step ran again and re-recorded its layer"
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&std::fs::read(&blob_path).unwrap())),
        victim,
        "the damaged blob was replaced"
    );
    let (again, err) = build(dir, &["--cache-dir", shared.to_str().unwrap()], &[]);
    assert_eq!(again, clean);
    assert_eq!(steps_line(&err), "3 platforms: 0 steps run, 9 cached");
}

#[test]
fn two_builds_at_once_share_one_cache() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "concurrent",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nplatforms: [arm64, s390x]\nsteps:\n  - run: seq 1 5000 > /n\n  - run: wc -l /n > /count\n",
        &[],
    );
    let dir = recipe.parent().unwrap().to_path_buf();
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let out = format!("oci:out{i}");
                build(&dir, &["-o", &out], &[]).0
            })
        })
        .collect();
    let digests: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(digests[0], digests[1]);
}

const STATEFUL: &str = "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
platforms: [arm64, s390x]
steps:
  - run: mkdir -p /var/lib/x && echo stable > /var/lib/x/config
  - run: cat /proc/sys/kernel/random/uuid > /var/lib/x/state
";

#[test]
fn verify_confirms_a_reproducible_image_and_names_the_file_that_is_not() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("verify", STATEFUL, &[]);
    let dir = recipe.parent().unwrap();
    build(dir, &["-o", "oci:published:1"], &[]);
    let out = xbake(
        As::Me,
        dir,
        &["verify", "recipe.yaml", "--against", "oci:published:1"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("/var/lib/x/state: content differs"),
        "{report}"
    );
    assert!(!report.contains("/var/lib/x/config"), "{report}");
    assert!(
        report.contains("linux/arm64: differs") && report.contains("linux/s390x: differs"),
        "{report}"
    );

    // Two builds of the same: diff names the same file, as text and as JSON.
    build(dir, &["--no-cache", "-o", "oci:published:2"], &[]);
    let out = xbake(
        As::Me,
        dir,
        &["diff", "oci:published:1", "oci:published:2"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/var/lib/x/state: content differs"));
    let out = xbake(
        As::Me,
        dir,
        &["diff", "--json", "oci:published:1", "oci:published:2"],
        &[],
    );
    let report = json(&out.stdout);
    assert_eq!(report["identical"], false);
    assert_eq!(
        report["platforms"][0]["layers"][0]["files"][0]["path"],
        "/var/lib/x/state"
    );
    let out = xbake(
        As::Me,
        dir,
        &["diff", "oci:published:1", "oci:published:1"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));

    // A reproducible recipe verifies, with the epoch taken from the image itself.
    std::fs::write(
        &recipe,
        STATEFUL.replace("cat /proc/sys/kernel/random/uuid", "echo fixed"),
    )
    .unwrap();
    build(
        dir,
        &["-o", "oci:good:1"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    let out = xbake(
        As::Me,
        dir,
        &["verify", "recipe.yaml", "--against", "oci:good:1"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("verified: oci:good:1 (sha256:") && line.contains("2 platforms"),
        "{line}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.join(".cache-me/xbake/work"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "verify left its rebuild behind");
}

#[test]
fn metadata_file_records_digests_and_every_input() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "meta",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nsteps:\n  - copy: files/in.txt\n    to: /in.txt\n",
        &[("files/in.txt", "input\n")],
    );
    let dir = recipe.parent().unwrap();
    let (digest, _) = build(
        dir,
        &[
            "--arch",
            "arm64,amd64",
            "-o",
            "oci:o:1",
            "--metadata-file",
            "meta.json",
            "--label",
            "team=ci",
            "--annotation",
            "manifest[linux/arm64]:org.example.k=v",
        ],
        &[],
    );
    let meta = json(&std::fs::read(dir.join("meta.json")).unwrap());
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    assert_eq!(meta["image.name"], "oci:o:1");
    // What verify needs again besides the recipe: the command line's labels and
    // annotations, and the stage built (none: the final image).
    assert_eq!(meta["xbake.labels"], serde_json::json!({"team": "ci"}));
    assert_eq!(
        meta["xbake.annotations"],
        serde_json::json!([{"type": "manifest", "platform": "linux/arm64", "key": "org.example.k", "value": "v"}])
    );
    assert!(meta["xbake.target"].is_null());
    assert_eq!(
        meta["xbake.recipe"]["sha256"],
        format!("sha256:{}", sha256_hex(&std::fs::read(&recipe).unwrap()))
    );
    let (_, images) = read_layout(&dir.join("o"), "1");
    let platforms = meta["xbake.platforms"].as_array().unwrap();
    for (p, image) in platforms.iter().zip(&images) {
        assert_eq!(p["platform"], image.platform.as_str());
        assert_eq!(p["manifest"], image.manifest_digest.as_str());
        assert_eq!(p["copy_inputs"][0]["path"], "files/in.txt");
        assert_eq!(
            p["copy_inputs"][0]["sha256"],
            format!("sha256:{}", sha256_hex(b"input\n"))
        );
        let base = std::fs::read(dir.join(format!(
            "bases/busybox-{}.tar.gz",
            image.platform.rsplit('/').next().unwrap()
        )))
        .unwrap();
        assert_eq!(p["base_layers"][0], format!("sha256:{}", sha256_hex(&base)));
    }
    let arm64 = &platforms[0]["emulator"];
    assert_eq!(arm64["path"], "/usr/bin/qemu-aarch64-static");
    assert!(arm64["version"].as_str().unwrap().contains("qemu-aarch64"));
    assert_eq!(
        arm64["sha256"],
        format!(
            "sha256:{}",
            sha256_hex(&std::fs::read("/usr/bin/qemu-aarch64-static").unwrap())
        )
    );
    assert!(platforms[1]["emulator"].is_null(), "amd64 runs natively");
}

#[test]
fn a_partly_cached_build_equals_a_fresh_one_even_for_steps_that_look_at_mtimes() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let one =
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: mkdir /d && echo x > /d/f\n";
    let two = format!(
        "{one}  - run: find /d /d/f -newer /bin/busybox > /list; ls -l --full-time /d > /times\n"
    );
    let recipe = scratch.recipe("mtimes", one, &[]);
    let dir = recipe.parent().unwrap();
    let warm = dir.join("warm");
    build(
        dir,
        &["--arch", "arm64", "--cache-dir", warm.to_str().unwrap()],
        &[],
    );
    std::fs::write(&recipe, &two).unwrap();
    let (partly, err) = build(
        dir,
        &["--arch", "arm64", "--cache-dir", warm.to_str().unwrap()],
        &[],
    );
    assert_eq!(steps_line(&err), "1 platform: 1 step run, 1 cached");
    let cold = dir.join("cold");
    let (fresh, _) = build(
        dir,
        &["--arch", "arm64", "--cache-dir", cold.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        partly, fresh,
        "the step saw different mtimes with and without the cache"
    );
}
