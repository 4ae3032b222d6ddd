//! The seccomp filter of RUN steps and `xbake run` (issue 8, item 5): a static probe
//! built here with gcc calls what Docker's default profile refuses; the filter must answer
//! EPERM (ENOSYS for clone3) natively, on i386 and under QEMU, as root and rootless, and
//! `--security-opt seccomp=unconfined` must give the kernel's own answers back.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// What the probe prints under the filter (tests/seccomp/probe.c picks arguments the
/// kernel itself answers differently).
const FILTERED: &[(&str, &str)] = &[
    ("keyctl", "EPERM"),
    ("userfaultfd", "EPERM"),
    ("bpf", "EPERM"),
    ("perf_event_open", "EPERM"),
    ("mount", "EPERM"),
    ("ioctl_tiocsti", "EPERM"),
    ("ioctl_tiocsti_high", "EPERM"),
    ("ioctl_fionread", "ENOTTY"),
    ("socket_vsock", "EPERM"),
    ("personality_query", "ok"),
    ("personality_no_randomize", "EPERM"),
    ("clone3", "ENOSYS"),
    ("clone_newuser", "EPERM"),
    ("unshare_user", "EPERM"),
    ("fork", "ok"),
];

fn parse(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expected_filtered() -> BTreeMap<String, String> {
    FILTERED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A recipe folder whose amd64 image holds the static probe at /probe and ran it in a
/// RUN step into /filtered; None (after saying why) without gcc or the fixtures.
fn probe_recipe(scratch: &Scratch) -> Option<std::path::PathBuf> {
    if fixtures().is_none() {
        skip("no busybox fixtures; run `just fixtures`");
        return None;
    }
    let recipe = scratch.recipe(
        "probe",
        "from: rootfs:bases/busybox-amd64.tar.gz\n\
         steps:\n  - copy: probe\n    to: /probe\n  - run: /probe > /filtered\n",
        &[],
    );
    let dir = recipe.parent().unwrap().to_path_buf();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seccomp/probe.c");
    let built = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("probe"))
        .arg(&source)
        .output();
    match built {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            skip(&format!(
                "gcc -static failed (install gcc and libc6-dev): {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return None;
        }
        Err(_) => {
            skip("no gcc; apt-get install gcc libc6-dev");
            return None;
        }
    }
    open_up(&dir);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("probe"), std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(dir)
}

fn users() -> Vec<As> {
    if is_root() {
        vec![As::Me, As::TestUser]
    } else {
        skip("needs root to create the unprivileged test user");
        vec![As::Me]
    }
}

#[test]
fn run_steps_and_xbake_run_refuse_what_docker_refuses_natively() {
    let scratch = Scratch::new();
    let Some(dir) = probe_recipe(&scratch) else {
        return;
    };
    for who in users() {
        let out_name = format!("oci:img-{who:?}");
        let out = xbake(
            who,
            &dir,
            &[
                "build",
                "recipe.yaml",
                "--platform",
                "linux/amd64",
                "-o",
                &out_name,
            ],
            &[],
        );
        assert_ok(&out);
        let (_, images) = read_layout(&dir.join(format!("img-{who:?}")), "latest");
        let in_step = parse(file_text(&images[0], "filtered").as_bytes());
        assert_eq!(in_step, expected_filtered(), "RUN step as {who:?}");

        let run = |extra: &[&str]| {
            let mut args = vec!["run", out_name.as_str()];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--", "/probe"]);
            let out = xbake(who, &dir, &args, &[]);
            assert_ok(&out);
            parse(&out.stdout)
        };
        assert_eq!(run(&[]), expected_filtered(), "xbake run as {who:?}");
        let unconfined = run(&["--security-opt", "seccomp=unconfined"]);
        for (call, filtered) in FILTERED {
            if matches!(*filtered, "EPERM" | "ENOSYS") {
                assert_ne!(
                    unconfined.get(*call).map(String::as_str),
                    Some(*filtered),
                    "{call} without the filter, as {who:?}: {unconfined:?}"
                );
            }
        }
        assert_eq!(unconfined["unshare_user"], "ok", "as {who:?}");
        assert_eq!(unconfined["clone_newuser"], "ok", "as {who:?}");
    }
}

#[test]
fn unconfined_builds_run_the_step_again_without_the_filter() {
    let scratch = Scratch::new();
    let Some(dir) = probe_recipe(&scratch) else {
        return;
    };
    let build = |extra: &[&str], out: &str| {
        let mut args = vec![
            "build",
            "recipe.yaml",
            "--platform",
            "linux/amd64",
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        assert_ok(&xbake(As::Me, &dir, &args, &[]));
        let (_, images) = read_layout(&dir.join(&out[4..]), "latest");
        parse(file_text(&images[0], "filtered").as_bytes())
    };
    assert_eq!(build(&[], "oci:confined"), expected_filtered());
    // Same recipe, same cache: the filtered step's result must not be reused.
    let open = build(&["--security-opt", "seccomp=unconfined"], "oci:open");
    assert_eq!(open["unshare_user"], "ok", "{open:?}");
    assert_eq!(build(&[], "oci:confined-again"), expected_filtered());
}

#[test]
fn other_security_options_are_usage_errors() {
    let scratch = Scratch::new();
    for args in [
        &[
            "build",
            "recipe.yaml",
            "--security-opt",
            "seccomp=/tmp/profile.json",
        ][..],
        &["run", "oci:x", "--security-opt", "apparmor=unconfined"][..],
    ] {
        let out = xbake(As::Me, scratch.path(), args, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("seccomp=unconfined"), "{stderr}");
    }
}

/// i386 steps make compat syscalls, and emulated steps make QEMU's host syscalls: the
/// filter must refuse a nested user namespace there too, and let it through unconfined.
#[test]
fn i386_and_emulated_steps_are_filtered_too() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "unshare",
        "from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\n\
         steps:\n  - run: \"true\"\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    for who in users() {
        let image = format!("oci:img-{who:?}");
        assert_ok(&xbake(
            who,
            dir,
            &[
                "build",
                "recipe.yaml",
                "--platform",
                "386,arm64",
                "-o",
                &image,
            ],
            &[],
        ));
        for platform in ["386", "arm64"] {
            let probe = |extra: &[&str]| {
                let mut args = vec!["run", image.as_str(), "--platform", platform];
                args.extend_from_slice(extra);
                args.extend_from_slice(&[
                    "--",
                    "sh",
                    "-c",
                    "unshare -U true 2>&1; echo \"rc=$?\"; ls / >/dev/null && echo ok",
                ]);
                let out = xbake(who, dir, &args, &[]);
                assert_ok(&out);
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let filtered = probe(&[]);
            assert!(
                filtered.contains("Operation not permitted") && filtered.contains("rc=1"),
                "{platform} as {who:?}: {filtered}"
            );
            assert!(
                filtered.ends_with("ok\n"),
                "{platform} as {who:?}: {filtered}"
            );
            let open = probe(&["--security-opt", "seccomp=unconfined"]);
            if platform == "386" {
                assert_eq!(open, "rc=0\nok\n", "{platform} unconfined as {who:?}");
            } else {
                // QEMU is multithreaded, so the kernel itself answers EINVAL
                // (unshare(2)): the EPERM above was the filter's.
                assert!(
                    open.contains("Invalid argument") && open.ends_with("rc=1\nok\n"),
                    "{platform} unconfined as {who:?}: {open}"
                );
            }
        }
    }
}

/// QEMU runs under the filter as a host program: every supported platform must still
/// build and run a shell step with it on.
#[test]
fn every_platform_runs_under_the_filter() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "all",
        "from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\n\
         steps:\n  - run: sh -c 'ls / > /dev/null && echo ok > /ok && uname -m > /arch'\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let platforms = [
        ("arm/v6", "armv6l"),
        ("arm/v7", "armv7l"),
        ("arm64", "aarch64"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("386", "i686"),
        ("amd64", "x86_64"),
    ];
    let list: Vec<&str> = platforms.iter().map(|(p, _)| *p).collect();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--platform",
            &list.join(","),
            "-o",
            "oci:img",
        ],
        &[],
    ));
    let (_, images) = read_layout(&dir.join("img"), "latest");
    assert_eq!(images.len(), platforms.len());
    for (image, (platform, arch)) in images.iter().zip(platforms) {
        assert_eq!(file_text(image, "ok").trim(), "ok", "{platform}");
        assert_eq!(file_text(image, "arch").trim(), arch, "{platform}");
    }
}
