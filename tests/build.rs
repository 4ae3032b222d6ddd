//! End-to-end builds: emulated platforms, root and rootless, read back without xbake.

mod common;

use common::*;
use std::path::Path;

const HELLO: &str = r#"
from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
platforms: [arm, arm64, ppc64le]
args: {GREETING: hello}
env: {PATH: /usr/bin:/bin:/usr/sbin:/sbin}
workdir: /app
steps:
  - run: uname -m > /arch
  - copy: files/hello.txt
    to: /opt/hello.txt
    mode: "0600"
  - run: echo "${GREETING} $TARGETARCH $GOARCH ${GOARM:-none} $(id -u)" > /app/vars
  - run: stat -c '%u:%g' /home/user > /owner && chown 1234:4321 /opt/hello.txt
  - run: ["/bin/echo", "exec form"]
  - env: {STAGE: two}
  - user: "1000:1000"
  - run: id -u > /tmp/uid
config:
  entrypoint: ["/bin/sh", "-c"]
  cmd: ["cat /arch"]
  labels: {org.opencontainers.image.title: hello}
  exposed_ports: ["8080/tcp"]
  stop_signal: SIGTERM
"#;

fn build_hello(who: As, scratch: &Scratch, name: &str) -> (String, Vec<ReadImage>) {
    let recipe = scratch.recipe(
        name,
        HELLO,
        &[("files/hello.txt", "hi from the recipe folder\n")],
    );
    let dir = recipe.parent().unwrap();
    let out = xbake(
        who,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm,arm64,ppc64le,arm/v6",
            "-o",
            "oci:out/hello",
            "--tag",
            "1.0",
        ],
        &[],
    );
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (index, images) = read_layout(&dir.join("out/hello"), "1.0");
    assert_eq!(stdout, index, "stdout carries the index digest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[arm64 1/8] RUN uname -m > /arch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[arm64 5/8] exec form"),
        "step output is prefixed:\n{stderr}"
    );
    (index, images)
}

fn check_images(images: &[ReadImage]) {
    let platforms: Vec<&str> = images.iter().map(|i| i.platform.as_str()).collect();
    assert_eq!(
        platforms,
        [
            "linux/arm/v7",
            "linux/arm64",
            "linux/ppc64le",
            "linux/arm/v6"
        ]
    );
    let expect = [
        ("armv7l", "arm 7"),
        ("aarch64", "arm64 none"),
        ("ppc64le", "ppc64le none"),
        ("armv6l", "arm 6"),
    ];
    for (image, (uname, goarm)) in images.iter().zip(expect) {
        assert_eq!(file_text(image, "arch").trim(), uname, "{}", image.platform);
        let arch = image.platform.split('/').nth(1).unwrap();
        let (goarch, goarm) = goarm.split_once(' ').unwrap();
        assert_eq!(goarch, arch);
        assert_eq!(
            file_text(image, "app/vars").trim(),
            format!("hello {arch} {arch} {goarm} 0"),
            "{}",
            image.platform
        );
        assert_eq!(
            file_text(image, "opt/hello.txt"),
            "hi from the recipe folder\n"
        );
        assert_eq!(
            image.meta["opt/hello.txt"],
            (1234, 4321, 0o600),
            "chown in a step, mode from copy"
        );
        assert_eq!(
            file_text(image, "owner").trim(),
            "1000:1000",
            "base owners survive unpacking"
        );
        assert_eq!(image.meta["home/user"].0, 1000);
        assert_eq!(
            file_text(image, "tmp/uid").trim(),
            "1000",
            "user: applies to later steps"
        );
        assert!(
            !image.files.contains_key("etc/hosts"),
            "sandbox files stay out of layers"
        );
        let config = &image.config;
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat /arch"]));
        assert_eq!(config["config"]["WorkingDir"], "/app");
        assert_eq!(config["config"]["User"], "1000:1000");
        assert_eq!(config["config"]["StopSignal"], "SIGTERM");
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.title"],
            "hello"
        );
        assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
        let env: Vec<&str> = config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(env, ["PATH=/usr/bin:/bin:/usr/sbin:/sbin", "STAGE=two"]);
        let history = config["history"].as_array().unwrap();
        let layered = history.iter().filter(|h| h["empty_layer"] != true).count();
        assert_eq!(
            layered,
            config["rootfs"]["diff_ids"].as_array().unwrap().len()
        );
        // The exec-form echo changed nothing: an empty_layer history entry.
        assert!(
            history
                .iter()
                .any(|h| h["created_by"].as_str().unwrap().contains("exec form")
                    && h["empty_layer"] == true)
        );
    }
}

#[test]
fn builds_four_platforms_as_root_and_rootless_with_identical_digests() {
    if !emulation_ready() {
        return;
    }
    if !is_root() && skip("needs root to create the unprivileged test user") {
        return;
    }
    let scratch = Scratch::new();
    let (root_index, root_images) = build_hello(As::Me, &scratch, "as-root");
    check_images(&root_images);
    let (user_index, user_images) = build_hello(As::TestUser, &scratch, "as-user");
    check_images(&user_images);
    assert_eq!(root_index, user_index, "root and rootless builds differ");

    // A rebuild in another folder gives the same bytes again.
    let (again, _) = build_hello(As::Me, &scratch, "again");
    assert_eq!(again, root_index);

    // skopeo (Debian's) reads the layout and returns exactly the index bytes.
    let layout = scratch.path().join("as-root/out/hello");
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{}:1.0", layout.display())])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            assert_eq!(format!("sha256:{}", sha256_hex(&out.stdout)), root_index);
        }
        Ok(out) => panic!("skopeo failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => {
            skip("skopeo is not installed");
        }
    }
}

#[test]
fn xbake_run_reports_each_platforms_cpu() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "run",
        "from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\n\
         steps:\n  - run: uname -m > /arch\n\
         config:\n  cmd: [\"cat\", \"/arch\"]\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "s390x,arm/v5",
            "-o",
            "oci:img:t",
        ],
        &[],
    ));
    for (platform, want) in [("s390x", "s390x"), ("arm/v5", "armv5tel")] {
        let out = xbake(
            As::Me,
            dir,
            &["run", "oci:img:t", "--platform", platform],
            &[],
        );
        assert_ok(&out);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
        let out = xbake(
            As::Me,
            dir,
            &[
                "run",
                "oci:img:t",
                "--platform",
                platform,
                "--",
                "sh",
                "-c",
                "exit 7",
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    }
    let out = xbake(As::Me, dir, &["run", "oci:img:t"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--platform"), "{}", text(&out));
}

#[test]
fn v7_code_faults_on_an_arm_v6_cpu() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    // Debian's armhf busybox is ARMv7 code; a Raspberry Pi 1 (ARM1176) cannot run it.
    let recipe = scratch.recipe(
        "v6",
        "from: rootfs:bases/busybox-armv7.tar.gz\nsteps:\n  - run: uname -m\n",
        &[],
    );
    let out = xbake(
        As::Me,
        recipe.parent().unwrap(),
        &["build", "recipe.yaml", "--arch", "arm/v6"],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("SIGILL"), "{}", text(&out));
}

#[test]
fn network_none_leaves_only_loopback() {
    if !emulation_ready() || !tun_ready(As::Me) {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "net",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n\
         \x20 - run: ls /sys/class/net > /isolated\n    network: none\n\
         \x20 - run: ls /sys/class/net > /private\n\
         \x20 - run: ls /sys/class/net > /host\n    network: host\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    // The recipe cannot grant itself the host's network: the caller must.
    let refused = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "-o", "oci:o"],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("recipe.yaml:6:5: step 3 asks for the host's network")
            && err.contains("--allow network.host"),
        "{err}"
    );
    assert!(!dir.join("o").exists());
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--allow",
            "network.host",
            "-o",
            "oci:o",
        ],
        &[],
    ));
    let (_, images) = read_layout(&dir.join("o"), "latest");
    assert_eq!(file_text(&images[0], "isolated").trim(), "lo");
    assert_eq!(
        file_text(&images[0], "private")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo", "tap0"],
        "a private network by default: loopback and the helper's tap"
    );
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    assert_eq!(
        file_text(&images[0], "host")
            .split_whitespace()
            .collect::<Vec<_>>(),
        host,
        "the host's interfaces on request"
    );
    // --network none applies to every step without its own `network:`.
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--network",
            "none",
            "--allow",
            "network.host",
            "-o",
            "oci:o2",
        ],
        &[],
    ));
    let (_, images) = read_layout(&dir.join("o2"), "latest");
    assert_eq!(file_text(&images[0], "private").trim(), "lo");
    assert_eq!(file_text(&images[0], "isolated").trim(), "lo");
}

#[test]
fn a_failing_step_names_platform_step_command_exit_code_and_output() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "fail",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: echo fine\n  - run: echo first; echo last words >&2; exit 42\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "-o", "oci:out"],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "[arm64 2/2] RUN echo first; echo last words >&2; exit 42 failed with exit code 42"
        ),
        "{err}"
    );
    assert!(err.contains("recipe.yaml:4:5"), "{err}");
    assert!(err.contains("| last words"), "{err}");
    assert!(!dir.join("out").exists(), "a failed build writes no output");
}

#[test]
fn bad_input_fails_early_with_a_clear_message() {
    let scratch = Scratch::new();
    let recipe = scratch.recipe("bad", "from: scratch\nsteps:\n  - rnu: true\n", &[]);
    let dir = recipe.parent().unwrap();
    let out = xbake(As::Me, dir, &["build", "recipe.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("recipe.yaml:3:5"), "{}", text(&out));

    std::fs::write(&recipe, "from: scratch\nsteps: []\n").unwrap();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "arm64,mips"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("\"mips\"") && t.contains("ppc64le"), "{t}");

    let empty = scratch.path().join("no-qemu");
    std::fs::create_dir_all(&empty).unwrap();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "riscv64"],
        &[("XBAKE_QEMU_PATH", empty.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("qemu-riscv64-static") && t.contains("apt-get install qemu-user-static"),
        "{t}"
    );

    std::fs::create_dir_all(dir.join("notalayout")).unwrap();
    std::fs::write(dir.join("notalayout/keep"), "x").unwrap();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "-o", "oci:notalayout"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not an OCI image layout"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notalayout/keep")).unwrap(),
        "x"
    );
}

/// A rootfs tarball with an entry that climbs out of the root.
fn hostile_tar(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // Write the name bytes directly: the tar crate refuses `..` in set_path.
    let name = b"../../escaped";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    tar.append(&h, &b"evil"[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn a_hostile_base_is_refused_naming_the_entry() {
    let scratch = Scratch::new();
    let recipe = scratch.recipe("hostile", "from: rootfs:evil.tar.gz\nsteps: []\n", &[]);
    let dir = recipe.parent().unwrap();
    hostile_tar(&dir.join("evil.tar.gz"));
    let out = xbake(As::Me, dir, &["build", "recipe.yaml", "-o", "oci:out"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("../../escaped"), "{}", text(&out));
    assert!(!scratch.path().join("escaped").exists());
    assert!(!dir.join("out").exists());
}

#[test]
fn a_layer_whose_digest_does_not_match_is_refused() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "base",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: echo x > /x\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "-o",
            "oci:base:1",
        ],
        &[],
    ));
    // Corrupt the layer the step wrote, keeping its name.
    let (_, images) = read_layout(&dir.join("base"), "1");
    let manifest = json(&blob(&dir.join("base"), &images[0].manifest_digest));
    let last = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = dir
        .join("base/blobs/sha256")
        .join(last.strip_prefix("sha256:").unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 9] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    std::fs::write(&recipe, "from: oci:base:1\nsteps:\n  - run: \"true\"\n").unwrap();
    let out = xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "-o",
            "oci:derived",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&last) || t.contains("mismatch") || t.contains("corrupt"),
        "{t}"
    );
    assert!(!dir.join("derived").exists());
}

#[test]
fn an_oci_base_is_reused_byte_for_byte_and_its_config_inherited() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "chain",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nenv: {FROM_BASE: yes}\n\
         steps:\n  - run: echo base > /base\nconfig:\n  cmd: [\"cat\", \"/base\"]\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,s390x",
            "-o",
            "oci:base:1",
        ],
        &[],
    ));
    std::fs::write(
        dir.join("derived.yaml"),
        "from: oci:base:1\nsteps:\n  - run: echo derived > /derived; rm /etc/group; rm -r /home/user\n",
    )
    .unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "derived.yaml",
            "--arch",
            "s390x,arm64",
            "-o",
            "oci:derived:2",
        ],
        &[],
    ));
    let (_, base) = read_layout(&dir.join("base"), "1");
    let (_, derived) = read_layout(&dir.join("derived"), "2");
    assert_eq!(derived[0].platform, "linux/s390x");
    let base_s390x = &base[1];
    let base_layers = base_s390x.config["rootfs"]["diff_ids"].as_array().unwrap();
    let derived_layers = derived[0].config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(&derived_layers[..base_layers.len()], &base_layers[..]);
    assert_eq!(
        derived[0].config["config"]["Cmd"],
        serde_json::json!(["cat", "/base"])
    );
    assert!(
        derived[0].config["config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("FROM_BASE=yes"))
    );
    assert_eq!(file_text(&derived[0], "base").trim(), "base");
    assert_eq!(file_text(&derived[0], "derived").trim(), "derived");
    // Deletions travel as whiteouts.
    assert!(base_s390x.files.contains_key("etc/group"));
    assert!(!derived[0].files.contains_key("etc/group"));
    assert!(!derived[0].meta.keys().any(|k| k.starts_with("home/user")));
}

#[test]
fn a_killed_build_leaves_the_output_as_it_was() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "kill",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: echo one > /v\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "-o",
            "oci:out:keep",
        ],
        &[],
    ));
    let before = std::fs::read(dir.join("out/index.json")).unwrap();
    std::fs::write(
        &recipe,
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: echo two > /v; sleep 600\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(shared_binary());
    cmd.args([
        "build",
        "recipe.yaml",
        "--arch",
        "arm64",
        "-o",
        "oci:out:new",
    ])
    .current_dir(dir)
    .env("XDG_CACHE_HOME", dir.join(".cache-me"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Wait until the step runs, then kill the whole build.
    let start = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let running = std::process::Command::new("pgrep")
            .args(["-f", "sleep 600"])
            .output()
            .unwrap();
        if running.status.success() {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 120,
            "the slow step never started"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Every process of the build goes with it (parent-death signals down the chain).
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !std::process::Command::new("pgrep")
            .args(["-f", "sleep 600"])
            .status()
            .unwrap()
            .success()
    });
    assert!(gone, "the step outlived the killed build");
    assert_eq!(std::fs::read(dir.join("out/index.json")).unwrap(), before);
    let (_, images) = read_layout(&dir.join("out"), "keep");
    assert_eq!(file_text(&images[0], "v").trim(), "one");
}

#[test]
fn native_platforms_run_without_emulation() {
    if fixtures().is_none() && skip("no busybox fixtures; run `just fixtures`") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "native",
        "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nsteps:\n  - run: uname -m > /arch; env > /env\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    // No emulator at all: the host's own platforms must not need one.
    let empty = scratch.path().join("no-qemu");
    std::fs::create_dir_all(&empty).unwrap();
    let out = xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--platform",
            "linux/amd64,386",
            "-o",
            "oci:o",
        ],
        &[("XBAKE_QEMU_PATH", empty.to_str().unwrap())],
    );
    assert_ok(&out);
    let (_, images) = read_layout(&dir.join("o"), "latest");
    assert_eq!(file_text(&images[0], "arch").trim(), "x86_64");
    assert_eq!(
        file_text(&images[1], "arch").trim(),
        "i686",
        "linux32 personality"
    );
    assert!(!file_text(&images[0], "env").contains("QEMU_CPU"));
}

#[test]
fn rootfs_tarballs_in_every_compression_give_the_same_image() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "compress",
        "args: {EXT: .tar}\nfrom: rootfs:base${EXT}\nsteps:\n  - run: echo hi > /hi\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let gz = std::fs::read(dir.join("bases/busybox-arm64.tar.gz")).unwrap();
    let mut tar_bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar_bytes).unwrap();
    std::fs::write(dir.join("base.tar"), &tar_bytes).unwrap();
    for (tool, ext) in [("xz", "xz"), ("zstd", "zst")] {
        let status = std::process::Command::new(tool)
            .args(["-q", "-k", "-f"])
            .arg(dir.join("base.tar"))
            .status();
        match status {
            Ok(s) if s.success() => {}
            _ => {
                if skip(&format!("{tool} is not installed")) {
                    return;
                }
            }
        }
        assert!(dir.join(format!("base.tar.{ext}")).exists());
    }
    // The history names the file, so compare the layers: converted once to gzip,
    // deterministically, they must be the same bytes whatever the input compression.
    let mut layers = Vec::new();
    for (i, ext) in [".tar", ".tar.xz", ".tar.zst"].into_iter().enumerate() {
        let dest = format!("oci:o{i}");
        let arg = format!("EXT={ext}");
        let out = xbake(
            As::Me,
            dir,
            &[
                "build",
                "recipe.yaml",
                "--arch",
                "arm64",
                "--build-arg",
                &arg,
                "--progress",
                "quiet",
                "-o",
                &dest,
            ],
            &[],
        );
        assert_ok(&out);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("RUN"),
            "quiet progress prints no steps"
        );
        let (_, images) = read_layout(&dir.join(format!("o{i}")), "latest");
        layers.push(images[0].config["rootfs"]["diff_ids"].clone());
        let manifest = json(&blob(
            &dir.join(format!("o{i}")),
            &images[0].manifest_digest,
        ));
        layers.push(manifest["layers"].clone());
    }
    assert_eq!(layers[0], layers[2]);
    assert_eq!(layers[1], layers[3]);
    assert_eq!(layers[0], layers[4]);
    assert_eq!(layers[1], layers[5]);
    let out = xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "arm64",
            "--build-arg",
            "EXT=.tar.bz2",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// A rootfs with a device node.
fn tar_with_device(path: &Path) {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut dir, "dev/", std::io::empty()).unwrap();
    let mut dev = header(tar::EntryType::Char, 0o666, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    tar.append_data(&mut dev, "dev/null", std::io::empty())
        .unwrap();
    let mut file = header(tar::EntryType::Regular, 0o644, 2);
    tar.append_data(&mut file, "etc/motd", &b"hi"[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn device_nodes_in_a_base_are_skipped_with_a_warning() {
    let scratch = Scratch::new();
    // The copy step makes the rootfs necessary, so the base is unpacked.
    let recipe = scratch.recipe(
        "dev",
        "from: rootfs:dev.tar.gz\nsteps:\n  - copy: files/x\n    to: /x\n",
        &[("files/x", "x")],
    );
    let dir = recipe.parent().unwrap();
    tar_with_device(&dir.join("dev.tar.gz"));
    let out = xbake(As::Me, dir, &["build", "recipe.yaml", "-o", "oci:o"], &[]);
    assert_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("dev/null"), "{err}");
    // The base layer itself is kept byte for byte, device included.
    let (_, images) = read_layout(&dir.join("o"), "latest");
    assert!(images[0].meta.contains_key("dev/null"));
}

#[test]
fn rootless_without_subordinate_ids_records_owners_and_matches_root() {
    if !emulation_ready() {
        return;
    }
    if !is_root() && skip("needs root to create the unprivileged test user") {
        return;
    }
    let scratch = Scratch::new();
    let text = "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n\
                \x20 - copy: files/\n    to: /srv/\n    owner: \"1000:1000\"\n\
                \x20 - run: echo changed >> /home/user/.profile\n";
    let mut digests = Vec::new();
    for (who, env) in [
        (As::Me, vec![]),
        (As::TestUser, vec![("XBAKE_USERNS", "self")]),
    ] {
        let recipe = scratch.recipe(
            &format!("selfonly-{who:?}"),
            text,
            &[("files/a.txt", "a\n")],
        );
        let dir = recipe.parent().unwrap();
        let out = xbake(
            who,
            dir,
            &["build", "recipe.yaml", "--arch", "arm64", "-o", "oci:o"],
            &env,
        );
        assert_ok(&out);
        let (index, images) = read_layout(&dir.join("o"), "latest");
        assert_eq!(
            images[0].meta["srv/a.txt"].0, 1000,
            "owner from the copy step"
        );
        assert_eq!(
            images[0].meta["home/user/.profile"].0, 1000,
            "owner from the base survives a change"
        );
        digests.push(index);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn steps_see_no_stray_descriptors_and_the_umask_does_not_matter() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "hygiene",
        "from: rootfs:bases/busybox-arm64.tar.gz\nworkdir: /app\nsteps:\n\
         \x20 - run: ls /proc/self/fd > /fds; touch /made-by-step; mkdir /dir-by-step\n\
         \x20 - copy: files/a.txt\n    to: rel/a.txt\n\
         \x20 - user: \"1000:1000\"\n\
         \x20 - run: id -u > /tmp/me\n",
        &[("files/a.txt", "a\n")],
    );
    let dir = recipe.parent().unwrap();
    let mut digests = Vec::new();
    for umask in ["022", "077"] {
        // The caller's umask and an open descriptor it does not mark close-on-exec.
        let script = format!(
            "umask {umask}; exec 7</etc/hostname; exec \"$0\" build recipe.yaml --arch arm64 -o oci:o{umask}"
        );
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", &script])
            .arg(shared_binary())
            .current_dir(dir)
            .env("XDG_CACHE_HOME", dir.join(".cache-me"));
        let out = run_with_timeout(cmd, std::time::Duration::from_secs(300));
        assert_ok(&out);
        let (index, images) = read_layout(&dir.join(format!("o{umask}")), "latest");
        // ls itself holds one descriptor for the folder it lists.
        let fds: Vec<String> = file_text(&images[0], "fds")
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "umask {umask}");
        assert_eq!(images[0].meta["made-by-step"].2 & 0o777, 0o644);
        assert_eq!(images[0].meta["dir-by-step"].2 & 0o777, 0o755);
        assert_eq!(
            file_text(&images[0], "app/rel/a.txt"),
            "a\n",
            "relative to: follows workdir"
        );
        assert_eq!(file_text(&images[0], "tmp/me").trim(), "1000");
        let blob_mode =
            std::fs::metadata(dir.join(format!("o{umask}/blobs/sha256")).join(&index[7..]))
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
                .unwrap();
        assert_eq!(blob_mode, 0o644, "output blobs are readable by everyone");
        digests.push(index);
    }
    assert_eq!(digests[0], digests[1], "the umask changed the image");
    let work = dir.join(".cache-me/xbake/work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "workspaces left behind: {left:?}");

    std::fs::write(&recipe, "from: oci:../elsewhere\nsteps: []\n").unwrap();
    let out = xbake(As::Me, dir, &["build", "recipe.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Docker's config extensions, labels and annotations at every level, on one native
/// platform (no emulation needed).
const METADATA: &str = r#"
from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
args: {VERSION: "1.0"}
env: {VARIANT: "${TARGETVARIANT:-none}", GOARM: "${TARGETVARIANT#v}"}
steps:
  - run: echo "$SHELL_WAS" > /shell-was
    network: none
config:
  shell: ["/bin/busybox", "env", "SHELL_WAS=custom", "/bin/sh", "-c"]
  cmd: ["echo", "${TARGETARCH}"]
  labels: {title: recipe, version: "${VERSION}"}
  healthcheck:
    test: wget -q -O- http://localhost/ || exit 1
    interval: 30s
    timeout: 5s
    start_period: 1m
    retries: 3
  annotations:
    manifest: {org.opencontainers.image.version: "${VERSION}", arch: "${TARGETARCH}"}
    index: {org.opencontainers.image.title: hello}
"#;

/// Built on METADATA's image: no config of its own.
const DERIVED: &str = r#"
stages:
  mid:
    from: oci:out:1
    steps:
      - run: echo "$SHELL_WAS" > /mid
        network: none
from: mid
steps:
  - run: echo "$SHELL_WAS" > /top
    network: none
"#;

/// The raw bytes of a blob named by a descriptor, and the same parsed.
fn described(layout: &Path, descriptor: &serde_json::Value) -> (String, serde_json::Value) {
    let bytes = blob(layout, descriptor["digest"].as_str().unwrap());
    (String::from_utf8(bytes.clone()).unwrap(), json(&bytes))
}

#[test]
fn healthcheck_shell_labels_annotations_and_iidfile_as_docker_buildx_writes_them() {
    if fixtures().is_none() && skip("no busybox fixtures; run `just fixtures`") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("metadata", METADATA, &[]);
    let dir = recipe.parent().unwrap();
    let (stdout, stderr) = xbake_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "--platform",
            "linux/amd64",
            "-o",
            "oci:out:1",
            "--label",
            "title=from the command line",
            "--label",
            "org.example.by=cli",
            "--annotation",
            "cli.manifest=yes",
            "--annotation",
            "manifest[linux/arm64]:not.this.platform=x",
            "--annotation",
            "index,manifest-descriptor:org.opencontainers.image.revision=abc123",
            "--annotation",
            "index-descriptor:top=1",
            "--iidfile",
            "iid",
        ],
        &[],
    );
    assert!(
        stderr.contains(
            "[recipe] warning: recipe.yaml:10:8: config.cmd is exec form and is not \
             expanded; ${TARGETARCH} stays literal"
        ),
        "{stderr}"
    );
    let layout = dir.join("out");
    let (index_digest, images) = read_layout(&layout, "1");
    assert_eq!(stdout, index_digest);

    // --iidfile: the index digest, no newline, handed back to the caller.
    let iid = std::fs::read(dir.join("iid")).unwrap();
    assert_eq!(String::from_utf8(iid).unwrap(), index_digest);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(dir.join("iid")).unwrap().uid(),
        nix::unistd::getuid().as_raw()
    );

    let [image] = &images[..] else {
        panic!("one platform expected: {images:?}")
    };
    assert_eq!(
        file_text(image, "shell-was"),
        "custom\n",
        "RUN used config.shell"
    );
    let config = &image.config["config"];
    assert_eq!(
        config["Env"],
        serde_json::json!(["VARIANT=none", "GOARM="]),
        "amd64 has no variant"
    );

    // The config's bytes, with Docker's names and units (nanoseconds, zeros left out).
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let index_entry = &top["manifests"][0];
    let (_, index) = described(&layout, index_entry);
    let manifest_entry = &index["manifests"][0];
    let (_, manifest) = described(&layout, manifest_entry);
    let (config_text, _) = described(&layout, &manifest["config"]);
    for expected in [
        r#""Healthcheck":{"Interval":30000000000,"Retries":3,"StartPeriod":60000000000,"Test":["CMD-SHELL","wget -q -O- http://localhost/ || exit 1"],"Timeout":5000000000}"#,
        r#""Shell":["/bin/busybox","env","SHELL_WAS=custom","/bin/sh","-c"]"#,
        r#""Labels":{"org.example.by":"cli","title":"from the command line","version":"1.0"}"#,
        r#""Cmd":["echo","${TARGETARCH}"]"#,
    ] {
        assert!(
            config_text.contains(expected),
            "{expected} not in {config_text}"
        );
    }
    // skopeo reads the same bytes as the config (OCI field names included).
    if let Some(raw) = skopeo(&[
        "inspect",
        "--raw",
        "--config",
        &format!("oci:{}:1", layout.display()),
    ]) {
        assert_eq!(String::from_utf8(raw).unwrap(), config_text);
    }
    if let Some(parsed) = skopeo(&[
        "inspect",
        "--config",
        &format!("oci:{}:1", layout.display()),
    ]) {
        let parsed = json(&parsed);
        assert_eq!(parsed["config"]["Labels"]["org.example.by"], "cli");
        assert_eq!(parsed["architecture"], "amd64");
    }

    // Annotations, each where it was asked for.
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({
            "arch": "amd64",
            "cli.manifest": "yes",
            "org.opencontainers.image.version": "1.0",
        })
    );
    assert_eq!(
        index["annotations"],
        serde_json::json!({
            "org.opencontainers.image.revision": "abc123",
            "org.opencontainers.image.title": "hello",
        })
    );
    assert_eq!(
        manifest_entry["annotations"],
        serde_json::json!({"org.opencontainers.image.revision": "abc123"})
    );
    assert_eq!(
        index_entry["annotations"],
        serde_json::json!({"org.opencontainers.image.ref.name": "1", "top": "1"})
    );

    // The same build again gives the same bytes; an unknown annotation type is a usage error.
    let (again, _) = xbake_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "--platform",
            "linux/amd64",
            "--label",
            "title=from the command line",
            "--label",
            "org.example.by=cli",
            "--annotation",
            "cli.manifest=yes",
            "--annotation",
            "manifest[linux/arm64]:not.this.platform=x",
            "--annotation",
            "index,manifest-descriptor:org.opencontainers.image.revision=abc123",
        ],
        &[],
    );
    assert_eq!(again, index_digest);
    // verify rebuilds with the labels and annotations it is given: equal with them,
    // different (exit 1) without.
    let cli_metadata = [
        "--label",
        "title=from the command line",
        "--label",
        "org.example.by=cli",
        "--annotation",
        "cli.manifest=yes",
        "--annotation",
        "index,manifest-descriptor:org.opencontainers.image.revision=abc123",
    ];
    let verify = ["verify", "recipe.yaml", "--against", "oci:out:1"];
    xbake_ok(dir, &[&verify[..], &cli_metadata].concat(), &[]);
    let out = xbake(As::Me, dir, &verify, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // An image built on it inherits its Healthcheck and Shell, as docker's FROM does, and
    // its run steps (in a stage on it, and in a stage on that stage) use that shell.
    std::fs::write(dir.join("derived.yaml"), DERIVED).unwrap();
    xbake_ok(
        dir,
        &[
            "build",
            "derived.yaml",
            "--platform",
            "linux/amd64",
            "-o",
            "oci:derived:1",
        ],
        &[],
    );
    let (_, derived) = read_layout(&dir.join("derived"), "1");
    assert_eq!(file_text(&derived[0], "mid"), "custom\n");
    assert_eq!(file_text(&derived[0], "top"), "custom\n");
    let base_config = &images[0].config["config"];
    let derived_config = &derived[0].config["config"];
    for field in ["Healthcheck", "Shell"] {
        assert!(!base_config[field].is_null(), "{field}");
        assert_eq!(derived_config[field], base_config[field], "{field}");
    }
    for bad in [["--annotation", "layer:k=v"], ["--label", "novalue"]] {
        let out = xbake(
            As::Me,
            dir,
            &[&["build", "recipe.yaml"][..], &bad].concat(),
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
}

/// A build context folder `ctx` beside the recipe folder, holding `files`.
fn context_folder(scratch: &Scratch, files: &[(&str, &str)]) -> std::path::PathBuf {
    let ctx = scratch.path().join("ctx");
    for (path, content) in files {
        let p = ctx.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    ctx
}

/// Builds the native platform of `recipe` (from scratch: nothing runs, no fixtures
/// needed) with `extra` flags into `oci:../NAME`; returns (index digest, the image's
/// files from its layer, stderr).
fn build_copy(
    recipe: &Path,
    out: &str,
    extra: &[&str],
) -> (String, std::collections::BTreeMap<String, Vec<u8>>, String) {
    let dir = recipe.parent().unwrap();
    let output = format!("oci:../{out}");
    let mut args = vec![
        "build",
        "recipe.yaml",
        "--platform",
        "linux/amd64",
        "-o",
        &output,
    ];
    args.extend_from_slice(extra);
    let (digest, stderr) = xbake_ok(dir, &args, &[]);
    let (index, mut images) = read_layout(&dir.join("..").join(out), "latest");
    assert_eq!(digest, index);
    (index, images.remove(0).files, stderr)
}

#[test]
fn an_ignore_file_keeps_files_out_of_the_image_and_out_of_the_copy_key() {
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "ignore",
        "from: scratch\nsteps:\n  - copy: .\n    to: /app/\n",
        &[],
    );
    let ctx = context_folder(
        &scratch,
        &[
            (
                ".dockerignore",
                "# not for images\n.env\n*.log\n!keep.log\n",
            ),
            (".env", "TOKEN=1\n"),
            ("x.log", "noise\n"),
            ("keep.log", "kept\n"),
            ("main.txt", "main\n"),
            ("sub/x.log", "not at the top, so not excluded\n"),
        ],
    );
    let context = ["--context", ctx.to_str().unwrap()];
    let (first, files, _) = build_copy(&recipe, "one", &context);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "app/.dockerignore",
            "app/keep.log",
            "app/main.txt",
            "app/sub/x.log"
        ],
        "no .env, no x.log"
    );
    assert_eq!(files["app/keep.log"], b"kept\n");

    // Changing what is ignored changes nothing: the copy step comes from the cache.
    std::fs::write(ctx.join(".env"), "TOKEN=2\n").unwrap();
    std::fs::write(ctx.join("x.log"), "more noise\n").unwrap();
    let (again, _, stderr) = build_copy(&recipe, "two", &context);
    assert!(
        stderr.contains("[amd64 1/1] COPY . /app/ (cached)"),
        "{stderr}"
    );
    assert_eq!(again, first);
    // Changing what is copied does.
    std::fs::write(ctx.join("keep.log"), "kept, changed\n").unwrap();
    let (changed, _, stderr) = build_copy(&recipe, "three", &context);
    assert!(!stderr.contains("(cached)"), "{stderr}");
    assert_ne!(changed, first);

    // .xbakeignore, when there is one, is the ignore file instead.
    std::fs::write(ctx.join(".xbakeignore"), "keep.log\n.*ignore\n").unwrap();
    let (_, files, _) = build_copy(&recipe, "four", &context);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["app/.env", "app/main.txt", "app/sub/x.log", "app/x.log"]
    );
}

#[test]
fn the_context_defaults_to_the_recipe_folder_and_must_exist() {
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "default-context",
        "from: scratch\nsteps:\n  - copy: files\n    to: /f/\n",
        &[
            (".dockerignore", "files/secret\n"),
            ("files/a.txt", "a\n"),
            ("files/secret", "s\n"),
        ],
    );
    let (_, files, _) = build_copy(&recipe, "out-default", &[]);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["f/a.txt"]);

    let dir = recipe.parent().unwrap();
    let missing = scratch.path().join("no-such-context");
    let out = xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--context",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("build context {}: ", missing.display())),
        "{stderr}"
    );

    // A source the ignore file excludes entirely fails like one that matches nothing.
    std::fs::write(
        &recipe,
        "from: scratch\nsteps:\n  - copy: files/secret\n    to: /s\n",
    )
    .unwrap();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--platform", "linux/amd64"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("copy source \"files/secret\" matches nothing that ")
            && stderr.contains(".dockerignore lets through (1 excluded)"),
        "{stderr}"
    );
}

const TWO_STEPS: &str = r#"
from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
steps:
  - run: uname -m > /arch
  - env: {STAGE: two}
  - run: echo "built for $TARGETPLATFORM" > /greeting
"#;

/// The lines of `stderr` that start with `prefix`.
fn lines_starting<'a>(stderr: &'a str, prefix: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn platforms_build_side_by_side_unless_jobs_says_otherwise() {
    if !emulation_ready() {
        return;
    }
    // Three platforms on a machine of any size (two CPUs in CI): no platform waits for a
    // slot, and every one has started before the first is done.
    let scratch = Scratch::new();
    let recipe = scratch.recipe("default", TWO_STEPS, &[]);
    let dir = recipe.parent().unwrap();
    let args = [
        "build",
        "recipe.yaml",
        "--arch",
        "arm64,ppc64le,s390x",
        "--progress",
        "plain",
        "-o",
        "oci:out/app",
    ];
    let (_, err) = xbake_ok(dir, &args, &[]);
    assert!(!err.contains("queued:"), "{err}");
    let first_done = err
        .find("] manifest sha256:")
        .unwrap_or_else(|| panic!("no manifest line in:\n{err}"));
    for arch in ["arm64", "ppc64le", "s390x"] {
        let from = err
            .find(&format!("[{arch}] FROM "))
            .unwrap_or_else(|| panic!("no FROM line for {arch} in:\n{err}"));
        assert!(
            from < first_done,
            "{arch} started after a platform was done:\n{err}"
        );
    }
}

#[test]
fn plain_progress_reports_every_phase_and_quiet_none() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let args = |progress| {
        [
            "build",
            "recipe.yaml",
            "--arch",
            "arm64,ppc64le",
            "--jobs",
            "1",
            "--progress",
            progress,
            "-o",
            "oci:out/app",
        ]
    };
    let recipe = scratch.recipe("plain", TWO_STEPS, &[]);
    let dir = recipe.parent().unwrap();
    let (_, err) = xbake_ok(dir, &args("plain"), &[]);

    // One slot: ppc64le waits while arm64 builds, and says so before arm64 starts.
    let at = |line: &str| {
        err.find(line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{err}"))
    };
    let queued = at("[ppc64le] queued: 1 of 1 slot busy\n");
    assert!(queued < at("[arm64] FROM "), "{err}");
    let started = at("[ppc64le] started after ");
    assert!(started > at("[arm64] manifest "), "{err}");
    assert!(started < at("[ppc64le] FROM "), "{err}");
    assert!(!err.contains("[arm64] queued"), "{err}");

    for arch in ["arm64", "ppc64le"] {
        let base = lines_starting(&err, &format!("[{arch}] base: unpacked 1 layer, "));
        assert_eq!(base.len(), 1, "{err}");
        let (size, took) = base[0]
            .rsplit_once(", ")
            .and_then(|(_, rest)| rest.split_once(" in "))
            .unwrap();
        assert!(is_size(size), "{}", base[0]);
        assert!(took.ends_with(" s"), "{}", base[0]);

        // A committed line for each run step (1 and 3), with the layer's size; none for
        // the env step.
        let committed = lines_starting(&err, &format!("[{arch}] step "));
        assert_eq!(committed.len(), 2, "{err}");
        for (line, number) in committed.iter().zip([1, 3]) {
            let rest = line
                .strip_prefix(&format!("[{arch}] step {number}/3 committed: layer "))
                .unwrap_or_else(|| panic!("{line}"));
            let (size, rest) = rest.split_once(" (gzip), ").unwrap();
            assert!(is_size(size), "{line}");
            assert!(rest.starts_with("1 entry in "), "{line}");
        }
    }
    let output = lines_starting(&err, "output: wrote oci:out/app:latest (2 manifests, ");
    assert_eq!(output.len(), 1, "{err}");
    assert!(output[0].contains(" new blobs) in "), "{err}");

    let summary = &err[at("summary: built in ")..];
    let lines: Vec<&str> = summary.lines().collect();
    assert!(
        lines[1].starts_with("  setup (emulation, bases): "),
        "{summary}"
    );
    assert!(lines[2].starts_with("  [arm64] "), "{summary}");
    assert!(!lines[2].contains("queue"), "{summary}");
    assert!(lines[3].starts_with("  [ppc64le] "), "{summary}");
    assert!(lines[3].contains(", after ") && lines[3].ends_with(" in the queue"));
    assert!(lines[4].starts_with("  output: "), "{summary}");
    assert!(lines[5].starts_with("  cleanup: "), "{summary}");
    assert!(
        at("cleanup: removed the build's unpacked trees in ") < at("summary: "),
        "{err}"
    );

    // Again from the cache: nothing is unpacked or committed, and the lines say so.
    let (_, again) = xbake_ok(dir, &args("plain"), &[]);
    for arch in ["arm64", "ppc64le"] {
        assert!(
            again.contains(&format!(
                "[{arch}] base: reused, nothing unpacked (1 layer; every step came from the cache)\n"
            )),
            "{again}"
        );
    }
    assert!(!again.contains("committed:"), "{again}");

    // Quiet: the same work (a fresh cache, so every step runs), none of these lines.
    let recipe = scratch.recipe("quiet", TWO_STEPS, &[]);
    let dir = recipe.parent().unwrap();
    let (digest, err) = xbake_ok(dir, &args("quiet"), &[]);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    for phase in [
        "queued:",
        "started after",
        "base:",
        "committed:",
        "output:",
        "summary:",
    ] {
        assert!(!err.contains(phase), "quiet printed {phase:?}:\n{err}");
    }
}

#[test]
fn a_cached_rebuild_leaves_every_blob_trusted_despite_the_output_write() {
    if fixtures().is_none() && skip("no busybox fixtures; run `just fixtures`") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "trusted",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: echo hi > /hi\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let build = || {
        let args = ["build", "recipe.yaml", "--arch", "amd64", "-o", "oci:o"];
        let out = xbake(As::Me, dir, &args, &[]);
        assert_ok(&out);
        // Past the racy window (src/trust.rs): what this build wrote may be trusted later.
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    build();
    build(); // hashes what the first one wrote, records it, writes the output again
    let cache = dir.join(".cache-me/xbake");
    let blobs = dir.join("o/blobs/sha256");
    let mut checked = 0;
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let blob = cache.join("blobs/sha256").join(&name);
        let meta = std::fs::symlink_metadata(&blob).unwrap();
        let text = std::fs::read_to_string(cache.join("trust/blobs").join(&name))
            .unwrap_or_else(|e| panic!("no trust record for {name}: {e}"));
        let record = xbake::trust::Record::decode(&text).unwrap();
        assert_eq!(record.digest.hex(), name);
        // Linking into the output, unlinking the old output and (as root) handing it
        // back moved the ctime; the record followed, so the next build reads nothing.
        assert!(
            record.vouches_for(&xbake::trust::Stamp::of(&meta)),
            "{name}: {record:?} vs {meta:?}"
        );
        checked += 1;
    }
    assert!(checked >= 4, "layers, config, manifest, index: {checked}");
    // A blob changed in place is hashed and refused on the next build, not trusted:
    // the step's layer is rebuilt.
    let record_dir = cache.join("steps");
    let step = std::fs::read_dir(&record_dir)
        .unwrap()
        .flatten()
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .unwrap();
    let layer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(step.path()).unwrap()).unwrap();
    let hex = layer["layer"]["digest"].as_str().unwrap()[7..].to_string();
    let blob = cache.join("blobs/sha256").join(&hex);
    let mtime = std::fs::metadata(&blob).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    let mut f = std::fs::File::options().write(true).open(&blob).unwrap();
    std::io::Write::write_all(&mut f, &bytes).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let args = ["build", "recipe.yaml", "--arch", "amd64", "-o", "oci:o"];
    let out = xbake(As::Me, dir, &args, &[]);
    assert_ok(&out);
    assert!(
        text(&out).contains("1 step run, 0 cached"),
        "{}",
        text(&out)
    );
    let repaired = std::fs::read(&blob).unwrap();
    assert_eq!(sha256_hex(&repaired), hex, "the damaged blob was replaced");
}

#[test]
fn build_help_names_every_output_form() {
    let scratch = Scratch::new();
    let out = xbake(As::Me, scratch.path(), &["build", "--help"], &[]);
    assert_ok(&out);
    let help = String::from_utf8_lossy(&out.stdout);
    for form in [
        "oci:DIR[:TAG]",
        "oci-archive:FILE[:TAG]",
        "docker-archive:FILE[:NAME:TAG]",
        "--push REF",
    ] {
        assert!(help.contains(form), "no {form} in:\n{help}");
    }
}

#[test]
fn an_unknown_xbake_binfmt_value_is_refused_before_any_work() {
    if fixtures().is_none() && skip("needs the busybox fixtures") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "binfmt",
        "from: rootfs:bases/busybox-arm64.tar.gz\nsteps:\n  - run: \"true\"\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "arm64", "-o", "oci:out"],
        &[("XBAKE_BINFMT", "hots")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("XBAKE_BINFMT=\"hots\": expected host"),
        "{err}"
    );
    assert!(!dir.join("out").exists(), "an output was written");
}

#[test]
fn a_script_on_scratch_names_its_missing_interpreter() {
    if fixtures().is_none() && skip("needs the fixtures (a machine set up for the sandbox)") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "script",
        "from: scratch\nsteps:\n  - copy: hello.sh\n    to: /hello.sh\n    mode: \"0755\"\n  - run: [\"/hello.sh\"]\n",
        &[("hello.sh", "#!/bin/sh\necho hello\n")],
    );
    let dir = recipe.parent().unwrap();
    let out = xbake(As::Me, dir, &["build", "recipe.yaml", "-o", "oci:out"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("executing /hello.sh: No such file or directory")
            && err.contains("its #! line names /bin/sh, which is not in the image"),
        "{err}"
    );
    assert!(!dir.join("out").exists(), "an output was written");
}

#[test]
fn the_1970_created_time_is_explained_once_per_cache() {
    if fixtures().is_none() && skip("needs the busybox fixtures") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "epoch",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: echo hi > /hi\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let note = "note: the image's created time is 1970-01-01T00:00:00Z";
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "recipe.yaml", "--cache-dir", "c", "-o", "oci:out"];
        args.extend_from_slice(extra);
        xbake_ok(dir, &args, &[]).1
    };
    // A dated image says nothing, and does not use the note up.
    assert!(!build(&["--source-date-epoch", "1700000000"]).contains(note));
    let first = build(&[]);
    assert!(first.contains(note), "{first}");
    assert!(first.contains("said once per cache"), "{first}");
    let again = build(&[]);
    assert!(!again.contains(note), "{again}");
}

#[test]
fn an_image_user_missing_from_its_passwd_is_warned_of() {
    if fixtures().is_none() && skip("needs the busybox fixtures") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "user",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - user: nosuch\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let args = ["build", "recipe.yaml", "--cache-dir", "c", "-o", "oci:out"];
    let warning = "warning: the image's user \"nosuch\": user \"nosuch\" is not in the image's /etc/passwd; `docker run` and `podman run` will refuse to start it";
    // The image is built (docker builds it too), with the warning, cold and cached.
    for round in ["cold", "cached"] {
        let (digest, err) = xbake_ok(dir, &args, &[]);
        assert!(digest.starts_with("sha256:"), "{round}: {digest}");
        assert!(err.contains(warning), "{round}:\n{err}");
    }
    // Numeric ids and accounts the image has: no warning.
    for user in ["\"1000:1000\"", "root", "root:root"] {
        let recipe = scratch.recipe(
            &format!("user-{}", user.replace(['"', ':'], "")),
            &format!("from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - user: {user}\n"),
            &[],
        );
        let (_, err) = xbake_ok(recipe.parent().unwrap(), &args, &[]);
        assert!(!err.contains("warning:"), "{user}:\n{err}");
    }
}

#[test]
fn build_without_a_recipe_argument_builds_the_folders_xbake_yaml() {
    if fixtures().is_none() && skip("needs the busybox fixtures") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "default",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: echo hi > /hi\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    std::fs::rename(&recipe, dir.join("xbake.yaml")).unwrap();
    let (named, _) = xbake_ok(dir, &["build", "xbake.yaml", "-o", "oci:named"], &[]);
    let (default, _) = xbake_ok(dir, &["build", "-o", "oci:out"], &[]);
    assert_eq!(default, named);
    // No xbake.yaml here: a usage error that says what was looked for.
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = xbake(As::Me, &empty, &["build", "-o", "oci:out"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("this folder has no xbake.yaml"),
        "{}",
        text(&out)
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definitions() {
    let scratch = Scratch::new();
    for (shell, marker, flag) in [
        ("bash", "complete -F", "--source-date-epoch"),
        ("zsh", "#compdef xbake", "--source-date-epoch"),
        ("fish", "complete -c xbake", "-l source-date-epoch"),
    ] {
        let out = xbake(As::Me, scratch.path(), &["completions", shell], &[]);
        assert_ok(&out);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(script.contains(flag), "{shell}: build's flags missing");
    }
    let out = xbake(As::Me, scratch.path(), &["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = xbake(As::Me, scratch.path(), &["man"], &[]);
    assert_ok(&out);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "not roff:\n{page}");
    assert!(page.contains(".TH xbake 1"), "{page}");
    let pages = scratch.path().join("man");
    let out = xbake(
        As::Me,
        scratch.path(),
        &["man", "--output-dir", pages.to_str().unwrap()],
        &[],
    );
    assert_ok(&out);
    for page in ["xbake.1", "xbake-build.1", "xbake-verify.1"] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    let build_page = std::fs::read_to_string(pages.join("xbake-build.1")).unwrap();
    assert!(build_page.contains("source\\-date\\-epoch"), "{build_page}");
}

/// The events of a `--progress rawjson` build's stderr, each line parsed.
fn rawjson_events(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{stderr}"))
        })
        .collect()
}

/// (step, state) of every step event of `platform`, in order.
fn step_states(events: &[serde_json::Value], platform: &str) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|e| e["kind"] == "step" && e["platform"] == platform)
        .map(|e| {
            (
                e["step"].as_u64().unwrap(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn rawjson_progress_is_one_json_event_per_line_and_says_what_ran() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("rawjson", TWO_STEPS, &[]);
    let dir = recipe.parent().unwrap();
    let args = [
        "build",
        "recipe.yaml",
        "--arch",
        "arm64",
        "--cache-dir",
        "c",
        "--progress",
        "rawjson",
        "-o",
        "oci:out",
    ];
    let (digest, err) = xbake_ok(dir, &args, &[]);
    let events = rawjson_events(&err);
    let started_done = |n| [(n, "started".to_string()), (n, "done".to_string())];
    let expected: Vec<(u64, String)> = (1..=3).flat_map(started_done).collect();
    assert_eq!(step_states(&events, "arm64"), expected, "{err}");
    // A RUN step's done event has its duration and its layer's size.
    let done = events
        .iter()
        .find(|e| e["kind"] == "step" && e["step"] == 1 && e["state"] == "done")
        .unwrap();
    assert!(done["duration"].as_f64().unwrap() > 0.0, "{done}");
    assert!(done["bytes"].as_u64().unwrap() > 0, "{done}");
    // The step's output line is a log event of that step.
    assert!(
        events.iter().any(|e| e["kind"] == "log" && e["step"] == 1),
        "{err}"
    );
    let result = events.last().unwrap();
    assert_eq!(result["kind"], "result", "{result}");
    assert_eq!(result["digest"], digest.as_str(), "{result}");
    assert_eq!(result["steps_run"], 2, "{result}");

    // Cached: the RUN steps say so (the env step is config only: started, done).
    let (again, err) = xbake_ok(dir, &args, &[]);
    assert_eq!(again, digest);
    let events = rawjson_events(&err);
    assert_eq!(
        step_states(&events, "arm64"),
        vec![
            (1, "cached".to_string()),
            (2, "started".to_string()),
            (2, "done".to_string()),
            (3, "cached".to_string()),
        ],
        "{err}"
    );
    assert_eq!(events.last().unwrap()["steps_cached"], 2);

    // Quiet: nothing on stderr, the digest on stdout.
    let quiet = [
        "build",
        "recipe.yaml",
        "--arch",
        "arm64",
        "--cache-dir",
        "c",
        "--progress",
        "quiet",
        "-o",
        "oci:out",
    ];
    let (same, err) = xbake_ok(dir, &quiet, &[]);
    assert_eq!(same, digest);
    assert_eq!(err, "", "quiet printed something");
}

#[test]
fn tty_progress_redraws_one_line_per_platform_in_place() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("tty", TWO_STEPS, &[]);
    let dir = recipe.parent().unwrap();
    open_up(dir);
    // script(1) gives xbake a terminal; `auto` picks tty there.
    let command = format!(
        "{} build recipe.yaml --arch arm64,s390x --cache-dir c -o oci:out",
        shared_binary().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // Lines are cleared and drawn again (ESC[2K), the cursor moved back over them
    // (ESC[nF), and each platform has its line.
    assert!(screen.contains("\x1b[2K[arm64"), "{screen:?}");
    assert!(screen.contains("\x1b[2K[s390x"), "{screen:?}");
    assert!(screen.contains("\x1b[2F"), "{screen:?}");
    assert!(
        screen.contains("2 platforms: 4 steps run, 0 cached"),
        "{screen:?}"
    );
}

#[test]
fn xbake_run_takes_env_volumes_a_user_and_archives() {
    if fixtures().is_none() && skip("needs the busybox fixtures") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "run",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: echo built > /built\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    xbake_ok(dir, &["build", "recipe.yaml", "-o", "oci:img:1"], &[]);
    xbake_ok(
        dir,
        &["build", "recipe.yaml", "-o", "docker-archive:img.tar"],
        &[],
    );
    // The command's writes reach the host through -v (as the step's ids: open to them).
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in.txt"), "from the host\n").unwrap();
    open_up(&shared);
    let run = |args: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        xbake(As::Me, dir, &all, &[])
    };
    let out = run(&[
        "oci:img:1",
        "-e",
        "GREETING=hello",
        "-v",
        "shared:/data",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING $(cat /data/in.txt)\"; echo from the image > /data/out.txt",
    ]);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the host\n"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("out.txt")).unwrap(),
        "from the image\n"
    );
    // :ro refuses writes; --user replaces the image's user.
    let out = run(&[
        "oci:img:1",
        "--user",
        "1000:1000",
        "-v",
        "shared:/data:ro",
        "--",
        "sh",
        "-c",
        "id -u; echo x > /data/ro.txt",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // (The command's stderr comes out on stdout too, as every step's output does.)
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("1000\n"), "{said}");
    assert!(said.contains("Read-only file system"), "{said}");
    assert!(!shared.join("ro.txt").exists());
    // An archive is an image too.
    let out = run(&["docker-archive:img.tar", "--", "cat", "/built"]);
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built\n");
    // Bad flags are usage errors.
    for bad in [
        vec!["oci:img:1", "-e", "NOEQUALS", "--", "true"],
        vec!["oci:img:1", "-v", "missing:/x", "--", "true"],
        vec!["oci:img:1", "-v", "shared:relative", "--", "true"],
    ] {
        let out = run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }
}
