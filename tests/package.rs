//! What `just package` makes (`just test` runs it first): the Debian package and xbake's
//! own amd64 image, built by xbake from ./xbake.yaml.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/package")
}

fn output_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn the_deb() -> Option<PathBuf> {
    let found = std::fs::read_dir(package_dir())
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"));
    if found.is_none() {
        skip("no target/package/*.deb: run `just package` (`just test` does)");
    }
    found
}

#[test]
fn the_debian_package_holds_xbake_its_pages_and_what_it_runs() {
    let Some(deb) = the_deb() else { return };
    let depends = output_of(
        Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .arg("Depends"),
    );
    for needed in [
        "qemu-user-static",
        "uidmap",
        "slirp4netns | passt",
        "libseccomp2",
    ] {
        assert!(
            depends.contains(needed),
            "no {needed} in Depends: {depends}"
        );
    }
    let contents = output_of(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/xbake",
        "./usr/share/man/man1/xbake.1.gz",
        "./usr/share/man/man1/xbake-build.1.gz",
        "./usr/share/bash-completion/completions/xbake",
        "./usr/share/zsh/vendor-completions/_xbake",
        "./usr/share/fish/vendor_completions.d/xbake.fish",
    ] {
        assert!(contents.contains(path), "no {path} in:\n{contents}");
    }
    // apt would install it here, dependencies and all (simulated: nothing changes).
    let plan = output_of(Command::new("apt-get").arg("install").arg("-s").arg(&deb));
    assert!(plan.contains("Inst xbake (0.1.0"), "{plan}");
    // The binary in it runs.
    let root = tempfile::tempdir().unwrap();
    output_of(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root.path()),
    );
    let version = output_of(Command::new(root.path().join("usr/bin/xbake")).arg("--version"));
    assert_eq!(version, format!("xbake {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn xbakes_own_image_runs_xbake_as_an_unprivileged_user() {
    let archive = package_dir().join("xbake-image-amd64.tar");
    if !archive.is_file() {
        skip("no target/package/xbake-image-amd64.tar: run `just package`");
        return;
    }
    let image = format!(
        "oci-archive:{}:{}",
        archive.display(),
        env!("CARGO_PKG_VERSION")
    );
    let scratch = Scratch::new();
    let out = xbake(
        As::Me,
        scratch.path(),
        &["run", &image, "--", "--version"],
        &[],
    );
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("xbake {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = xbake(As::Me, scratch.path(), &["inspect", &image, "--json"], &[]);
    assert_ok(&out);
    let summary = json(&out.stdout);
    assert_eq!(
        summary["platforms"][0]["platform"], "linux/amd64",
        "{summary}"
    );
    assert_eq!(
        summary["platforms"][0]["entrypoint"],
        serde_json::json!(["/usr/bin/xbake"]),
        "{summary}"
    );
    // Builds in the container run as `builder`, who has subordinate ranges.
    let Some(config) = skopeo(&["inspect", "--config", &image]) else {
        return;
    };
    assert_eq!(json(&config)["config"]["User"], "builder");
}
