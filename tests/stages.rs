//! Stages: the Kubernetes workflow end to end. recipes/go-hello.yaml cross-compiles a Go
//! program natively in a `platform: build` stage (the Go toolchain fixture,
//! golang-amd64.tar.zst) for five CPUs and copies each binary into a busybox image of
//! its platform; every image then runs its binary under that CPU's emulator.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

/// The recipe and the program exactly as shipped, so what the README shows is tested.
const GO_HELLO: &str = include_str!("../recipes/go-hello.yaml");
const GO_MOD: &str = include_str!("../recipes/go-hello/go.mod");
const MAIN_GO: &str = include_str!("../recipes/go-hello/main.go");

const EM_ARM: u16 = 40;
const EM_AARCH64: u16 = 183;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;

/// What one platform's binary must be and say.
struct Target {
    platform: &'static str,
    /// The OCI platform the index lists.
    oci: &'static str,
    output: &'static str,
    machine: u16,
    bits: u8,
    little_endian: bool,
}

const TARGETS: [Target; 5] = [
    Target {
        platform: "arm/v6",
        oci: "linux/arm/v6",
        output: "hello from linux/arm/v6 (GOARCH=arm GOARM=6)",
        machine: EM_ARM,
        bits: 32,
        little_endian: true,
    },
    Target {
        platform: "arm/v7",
        oci: "linux/arm/v7",
        output: "hello from linux/arm/v7 (GOARCH=arm GOARM=7)",
        machine: EM_ARM,
        bits: 32,
        little_endian: true,
    },
    Target {
        platform: "arm64",
        oci: "linux/arm64",
        output: "hello from linux/arm64 (GOARCH=arm64)",
        machine: EM_AARCH64,
        bits: 64,
        little_endian: true,
    },
    Target {
        platform: "ppc64le",
        oci: "linux/ppc64le",
        output: "hello from linux/ppc64le (GOARCH=ppc64le)",
        machine: EM_PPC64,
        bits: 64,
        little_endian: true,
    },
    Target {
        platform: "s390x",
        oci: "linux/s390x",
        output: "hello from linux/s390x (GOARCH=s390x)",
        machine: EM_S390,
        bits: 64,
        little_endian: false,
    },
];

const BINARY: &str = "usr/local/bin/hello";

/// An ELF header's class (32 or 64 bits), byte order and e_machine.
#[derive(Debug, PartialEq, Eq)]
struct ElfId {
    bits: u8,
    little_endian: bool,
    machine: u16,
}

fn elf_id(bytes: &[u8]) -> ElfId {
    assert!(
        bytes.len() > 20 && bytes.starts_with(b"\x7fELF"),
        "not an ELF file"
    );
    let bits = match bytes[4] {
        1 => 32,
        2 => 64,
        other => panic!("ELF class {other}"),
    };
    let little_endian = match bytes[5] {
        1 => true,
        2 => false,
        other => panic!("ELF data encoding {other}"),
    };
    let machine = [bytes[18], bytes[19]];
    let machine = if little_endian {
        u16::from_le_bytes(machine)
    } else {
        u16::from_be_bytes(machine)
    };
    ElfId {
        bits,
        little_endian,
        machine,
    }
}

/// The Go toolchain base the build stage runs on (this machine's CPU, amd64).
fn go_toolchain() -> Option<std::path::PathBuf> {
    mmdebstrap_fixture("golang-amd64.tar.zst")
}

/// A folder holding the shipped recipe as recipe.yaml, its program under go-hello/, the
/// busybox bases and the Go toolchain under bases/.
fn go_hello_folder(scratch: &Scratch, toolchain: &Path) -> std::path::PathBuf {
    let recipe = scratch.recipe(
        "go",
        GO_HELLO,
        &[("go-hello/go.mod", GO_MOD), ("go-hello/main.go", MAIN_GO)],
    );
    let dir = recipe.parent().unwrap().to_path_buf();
    link_fixture(toolchain, &dir.join("bases/golang-amd64.tar.zst"));
    open_up(&dir);
    dir
}

fn platform_list() -> String {
    TARGETS
        .iter()
        .map(|t| t.platform)
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds the five platforms into oci:out/go:TAG; returns (index digest, stderr).
fn build_go_hello(dir: &Path, tag: &str) -> (String, String) {
    let out = xbake_within(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            &platform_list(),
            "-o",
            "oci:out/go",
            "--tag",
            tag,
        ],
        &[],
        // Five cold cross-compiles of Go's standard library on a shared 2-core machine.
        std::time::Duration::from_secs(1200),
    );
    assert_ok(&out);
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `binary` outside any image on QEMU's ARM1176 (a Raspberry Pi 1's CPU), where
/// ARMv7 instructions fault. In the scratch folder, so a core dump lands there.
fn on_arm1176(scratch: &Scratch, name: &str, binary: &[u8]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch.path().join(name);
    std::fs::write(&path, binary).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("/usr/bin/qemu-arm-static")
        .args(["-cpu", "arm1176"])
        .arg(&path)
        .current_dir(scratch.path())
        .output()
        .expect("running qemu-arm-static")
}

fn have_s390x_qemu() -> bool {
    Path::new("/usr/bin/qemu-s390x-static").exists()
        || !skip("no qemu-s390x-static; apt-get install qemu-user-static")
}

#[test]
fn go_hello_cross_compiles_natively_for_five_cpus_and_each_image_runs_it() {
    if !emulation_ready() || !have_s390x_qemu() {
        return;
    }
    let Some(toolchain) = go_toolchain() else {
        return;
    };
    let scratch = Scratch::new();
    let dir = go_hello_folder(&scratch, &toolchain);
    let (index, _) = build_go_hello(&dir, "1");
    let (read_index, images) = read_layout(&dir.join("out/go"), "1");
    assert_eq!(index, read_index, "stdout carries the index digest");
    let platforms: Vec<&str> = images.iter().map(|i| i.platform.as_str()).collect();
    let want: Vec<&str> = TARGETS.iter().map(|t| t.oci).collect();
    assert_eq!(platforms, want);

    for (image, target) in images.iter().zip(&TARGETS) {
        let binary = image
            .files
            .get(BINARY)
            .unwrap_or_else(|| panic!("{} has no {BINARY}", image.platform));
        assert_eq!(
            elf_id(binary),
            ElfId {
                bits: target.bits,
                little_endian: target.little_endian,
                machine: target.machine,
            },
            "{}",
            image.platform
        );
        assert_eq!(
            image.meta[BINARY].2 & 0o777,
            0o755,
            "{}: the binary keeps go build's permission bits",
            image.platform
        );
        assert!(
            !image.files.keys().any(|p| p.starts_with("src/")
                || p.starts_with("out/")
                || p.starts_with("usr/lib/go")),
            "{}: nothing of the build stage but the binary reaches the image",
            image.platform
        );
        assert_eq!(
            image.config["config"]["Cmd"],
            serde_json::json!(["/usr/local/bin/hello"])
        );
        let (said, _) = xbake_ok(
            &dir,
            &["run", "oci:out/go:1", "--platform", target.platform],
            &[],
        );
        assert_eq!(said, target.output, "xbake run on {}", target.platform);
    }
    // GOARM took effect: the v6 binary runs on an ARM1176, the v7 one (VFPv3
    // instructions) dies there of SIGILL.
    let v6 = on_arm1176(&scratch, "hello-armv6", &images[0].files[BINARY]);
    assert!(v6.status.success(), "{}", text(&v6));
    assert_eq!(
        String::from_utf8_lossy(&v6.stdout).trim(),
        TARGETS[0].output
    );
    let v7 = on_arm1176(&scratch, "hello-armv7", &images[1].files[BINARY]);
    assert_eq!(
        v7.status.signal(),
        Some(nix::sys::signal::Signal::SIGILL as i32),
        "{}",
        text(&v7)
    );

    // The second build finds every step in the cache and writes the same index.
    let (again, stderr) = build_go_hello(&dir, "2");
    let summary = stderr
        .lines()
        .find(|l| l.contains("steps run") || l.contains("step run"))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    assert!(
        summary.starts_with("5 platforms: 0 steps run,"),
        "a rebuild with nothing changed ran steps: {summary}"
    );
    assert_eq!(again, index, "the cached rebuild gives another index");

    // The SBOM of each image finds the Go binary's build info: the toolchain that
    // built it and its main module, from the binary's own bytes (cached: no step runs).
    let out = xbake(
        As::Me,
        &dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            &platform_list(),
            "--sbom",
            "-o",
            "oci:out/go",
            "--tag",
            "3",
        ],
        &[],
    );
    assert_ok(&out);
    let (listed, _) = xbake_ok(&dir, &["attest", "inspect", "oci:out/go:3", "--json"], &[]);
    let found = json(listed.as_bytes());
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), TARGETS.len());
    for f in found {
        let packages = f["statement"]["predicate"]["packages"].as_array().unwrap();
        let stdlib = packages
            .iter()
            .find(|p| p["name"] == "stdlib")
            .unwrap_or_else(|| panic!("{}: no Go toolchain in {packages:?}", f["platform"]));
        let version = stdlib["versionInfo"].as_str().unwrap();
        assert!(version.starts_with("go1."), "{version}");
        assert_eq!(
            stdlib["externalRefs"][0]["referenceLocator"],
            format!("pkg:golang/stdlib@{}", version.trim_start_matches("go"))
        );
        assert!(
            stdlib["sourceInfo"]
                .as_str()
                .unwrap_or("")
                .contains("/usr/local/bin/hello"),
            "{stdlib}"
        );
    }
}

#[test]
fn elf_ids_are_read_in_the_files_byte_order() {
    // ELF header prefixes: ARM 32-bit little-endian, s390x 64-bit big-endian.
    let mut arm = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0];
    arm.resize(18, 0);
    arm.extend_from_slice(&[40, 0, 1, 0, 0, 0]);
    let mut s390 = vec![0x7f, b'E', b'L', b'F', 2, 2, 1, 0];
    s390.resize(18, 0);
    s390.extend_from_slice(&[0, 22, 0, 0, 0, 1]);
    assert_eq!(
        elf_id(&arm),
        ElfId {
            bits: 32,
            little_endian: true,
            machine: EM_ARM
        }
    );
    assert_eq!(
        elf_id(&s390),
        ElfId {
            bits: 64,
            little_endian: false,
            machine: EM_S390
        }
    );
}
