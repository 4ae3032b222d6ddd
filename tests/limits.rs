//! Resource limits (issue 8, item 7): a memory hog and a fork loop fail naming the
//! limit, native and emulated, as root (a cgroup per step) and as an unprivileged user
//! (a delegated cgroup when the system has one, else rlimits and a warning).

mod common;

use common::*;
use std::path::Path;
use std::process::Output;

/// dd allocates one 100 MiB buffer and fills it with a single read(2): over a 32 MiB
/// limit at once, natively and under QEMU alike, and cheap on a shared machine.
const HOG: &str = r#"
from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
env: {PATH: /usr/bin:/bin:/usr/sbin:/sbin}
steps:
  - run: dd if=/dev/zero of=/dev/null bs=100M count=1
"#;

/// At most 100 sleeping children, which end with the step's pid namespace.
const FORKS: &str = r#"
from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
env: {PATH: /usr/bin:/bin:/usr/sbin:/sbin}
steps:
  - run: i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo all forked
"#;

const HOG_STEP: &str = "RUN dd if=/dev/zero of=/dev/null bs=100M count=1";

fn build(who: As, scratch: &Scratch, name: &str, recipe: &str, args: &[&str]) -> Output {
    let recipe = scratch.recipe(name, recipe, &[]);
    let dir = recipe.parent().unwrap();
    let mut all = vec!["build", "recipe.yaml", "-o", "oci:out"];
    all.extend_from_slice(args);
    xbake(who, dir, &all, &[])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failed build: exit code 3 (a step failed) and no output written.
fn assert_step_failed(out: &Output, dir: &Path) {
    assert_eq!(out.status.code(), Some(3), "{}", text(out));
    assert!(!dir.join("out").exists(), "a failed build wrote its output");
}

/// Every `xbake-PID` cgroup beside ours belongs to a live launcher: none is left over.
fn assert_no_stale_cgroups() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        for name in ["memory", "pids", "cpu"] {
            if !names.split(',').any(|n| n == name) {
                continue;
            }
            let dir = Path::new("/sys/fs/cgroup")
                .join(name)
                .join(path.trim_start_matches('/'));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = file
                    .strip_prefix("xbake-")
                    .and_then(|p| p.parse::<u32>().ok())
                {
                    assert!(
                        Path::new(&format!("/proc/{pid}")).exists(),
                        "stale cgroup {}",
                        entry.path().display()
                    );
                }
            }
        }
    }
}

#[test]
fn a_memory_hog_is_killed_at_the_limit_as_root_native_and_emulated() {
    if !emulation_ready() || (!is_root() && skip("needs root for the cgroup case")) {
        return;
    }
    let scratch = Scratch::new();
    for arch in ["amd64", "arm64"] {
        let name = format!("hog-{arch}");
        let out = build(
            As::Me,
            &scratch,
            &name,
            HOG,
            &["--arch", arch, "--memory", "32m"],
        );
        assert_step_failed(&out, &scratch.path().join(&name));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: [{arch} 1/1] {HOG_STEP} was killed: out of memory (limit 32M)"
            )),
            "{err}"
        );
        assert!(
            !err.contains("warning: --memory"),
            "root has a memory cgroup: {err}"
        );
    }
    assert_no_stale_cgroups();

    // The failed step recorded nothing: without the limit the same cache runs it again.
    let out = build(As::Me, &scratch, "hog-amd64", HOG, &["--arch", "amd64"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("1 step run, 0 cached"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_memory_hog_rootless_is_limited_or_the_warning_says_why() {
    if !emulation_ready() || (!is_root() && skip("needs root to create the test user")) {
        return;
    }
    let scratch = Scratch::new();
    for arch in ["amd64", "arm64"] {
        let name = format!("hog-user-{arch}");
        let out = build(
            As::TestUser,
            &scratch,
            &name,
            HOG,
            &["--arch", arch, "--memory", "32m"],
        );
        let err = stderr(&out);
        let killed = format!("[{arch} 1/1] {HOG_STEP} was killed: out of memory (limit 32M)");
        if err.contains(&killed) {
            eprintln!("{arch} rootless: a delegated memory cgroup");
            assert_step_failed(&out, &scratch.path().join(&name));
        } else if arch == "amd64" {
            // No cgroup: RLIMIT_DATA, so dd's allocation fails and the error says so.
            assert!(
                err.contains("warning: --memory 32M: no memory cgroup (")
                    && err.contains("limited to it with RLIMIT_DATA instead"),
                "{err}"
            );
            assert_step_failed(&out, &scratch.path().join(&name));
            assert!(
                err.contains(&format!(
                    "{HOG_STEP} failed with exit code 1; it ran under rlimits (memory 32M per process (RLIMIT_DATA)"
                )),
                "{err}"
            );
        } else {
            // No cgroup and no rlimit for QEMU: the warning, and the hog runs through.
            assert!(
                err.contains(
                    "warning: --memory 32M is not enforced for arm64 steps: no memory cgroup ("
                ) && err.contains("QEMU reserves the guest's whole address space"),
                "{err}"
            );
            assert_ok(&out);
        }
    }
}

#[test]
fn a_fork_loop_stops_at_the_process_limit_as_root_and_rootless() {
    if fixtures().is_none() && skip("no busybox fixtures; run `just fixtures`") {
        return;
    }
    if !is_root() && skip("needs root for the cgroup case and the test user") {
        return;
    }
    let scratch = Scratch::new();
    for who in [As::Me, As::TestUser] {
        let name = format!("forks-{who:?}");
        let out = build(
            who,
            &scratch,
            &name,
            FORKS,
            &["--arch", "amd64", "--pids-limit", "32"],
        );
        assert_step_failed(&out, &scratch.path().join(&name));
        let err = stderr(&out);
        assert!(!err.contains("1/1] all forked"), "{err}");
        assert!(err.contains("can't fork"), "{err}");
        let by_cgroup = err.contains("hit the process limit (32) and failed with exit code 2");
        if who == As::Me {
            assert!(by_cgroup, "root has a pids cgroup: {err}");
        } else if !by_cgroup {
            assert!(
                err.contains("warning: --pids-limit 32: no pids cgroup (")
                    && err.contains("ran under rlimits (32 processes per user id (RLIMIT_NPROC)"),
                "{err}"
            );
        }
    }
    assert_no_stale_cgroups();
}

#[test]
fn limits_are_checked_before_any_work() {
    let scratch = Scratch::new();
    for (flag, value, message) in [
        ("--memory", "1m", "the smallest limit is 6M"),
        ("--memory", "lots", "invalid size \"lots\""),
        (
            "--pids-limit",
            "-5",
            "expected a positive count, or 0 or -1 for no limit",
        ),
        ("--cpus", "0.001", "expected a number of CPUs from 0.01"),
    ] {
        let out = build(
            As::Me,
            &scratch,
            "bad",
            HOG,
            &["--arch", "amd64", flag, value],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(stderr(&out).contains(message), "{}", text(&out));
    }
}
