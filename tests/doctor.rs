//! `xbake doctor` on this machine: as root, as the unprivileged test user (with ranges),
//! as a user without subordinate ranges, and with the emulators hidden.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::Command;

fn doctor(who: As, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let scratch = Scratch::new();
    open_up(scratch.path());
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let out = xbake(who, scratch.path(), &all, env);
    (out.status.code(), text(&out))
}

#[test]
fn doctor_passes_here_as_root_and_names_each_platforms_emulator() {
    if !emulation_ready() || !is_root() {
        return;
    }
    let (code, out) = doctor(As::Me, &["--arch", "arm64,ppc64le"], &[]);
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "OK   user namespaces: this user can create one",
        "OK   id mapping: root: steps run as a range of unprivileged host ids",
        "OK   platform linux/arm64: ",
        "qemu-aarch64-static (qemu-aarch64 version ",
        "OK   platform linux/ppc64le: ",
        "can build: linux/arm64, linux/ppc64le",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    let scratch = Scratch::new();
    let out = xbake(
        As::Me,
        scratch.path(),
        &["doctor", "--arch", "arm64", "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json(&out.stdout);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["platforms"][0][0], "linux/arm64", "{report}");
    assert!(
        report["lines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| ["ok", "warn", "fail"].contains(&l["status"].as_str().unwrap())),
        "{report}"
    );
}

#[test]
fn hidden_emulators_fail_the_platform_with_the_install_command() {
    if fixtures().is_none() && skip("needs a machine set up for builds") {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let env = [("XBAKE_QEMU_PATH", empty.path().to_str().unwrap())];
    let (code, out) = doctor(As::Me, &["--arch", "s390x"], &env);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL platform linux/s390x: no QEMU user-mode emulator"),
        "{out}"
    );
    assert!(
        out.contains("fix: as root: apt-get install qemu-user-static"),
        "{out}"
    );
    assert!(out.contains("cannot build: linux/s390x"), "{out}");
    // The native platform needs no emulator: still fine.
    let (code, out) = doctor(As::Me, &["--arch", "amd64"], &env);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn doctor_as_an_unprivileged_user_with_and_without_ranges() {
    if !is_root() || !emulation_ready() {
        return;
    }
    // The test user has ranges (tests/common): mapped through newuidmap.
    let (code, out) = doctor(As::TestUser, &["--arch", "arm64"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "OK   id mapping: {TEST_USER} has /etc/subuid and /etc/subgid ranges"
        )),
        "{out}"
    );
    // A system user gets no ranges from useradd: builds still run, mapped to itself.
    let name = "xbake-test-noids";
    if nix::unistd::User::from_name(name).ok().flatten().is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
    }
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    assert!(
        !subuid.lines().any(|l| l.starts_with(&format!("{name}:"))),
        "{subuid}"
    );
    let scratch = tempfile::tempdir().unwrap();
    open_up(scratch.path());
    let out = Command::new(shared_binary())
        .args(["doctor", "--arch", "arm64"])
        .current_dir(scratch.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", scratch.path())
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .output()
        .unwrap();
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(0), "{out_text}");
    assert!(
        out_text.contains(&format!(
            "WARN id mapping: only {name} is mapped ({name} has no range in /etc/subuid)"
        )),
        "{out_text}"
    );
    assert!(
        out_text.contains(&format!(
            "fix: as root: apt-get install uidmap; usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
        )),
        "{out_text}"
    );
}
