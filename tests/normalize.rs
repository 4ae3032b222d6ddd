//! Normalisation after run steps (src/normalize/, normalize/rules.conf): real package
//! installs on Debian bases reproduce bit for bit; without the rules they do not, and
//! `xbake diff` names the files the rules cover.

mod common;

use common::*;
use std::path::Path;

/// The issue's workload, smaller: one package that runs update-alternatives and the
/// ldconfig trigger, so every file of the issue's list is written.
const APT: &str =
    "  - run: apt-get update -q && apt-get install -y -q --no-install-recommends iptables\n";

/// The files the issue lists and what the rules leave of them: None = absent, Some("") =
/// empty.
const RULE_FILES: [(&str, Option<&str>); 7] = [
    ("var/cache/apt/pkgcache.bin", None),
    ("var/cache/apt/srcpkgcache.bin", None),
    ("var/cache/ldconfig/aux-cache", None),
    ("var/log/alternatives.log", Some("")),
    ("var/log/apt/history.log", Some("")),
    ("var/log/apt/term.log", Some("")),
    ("var/log/dpkg.log", Some("")),
];

fn debian_recipe(
    scratch: &Scratch,
    name: &str,
    arches: &[&str],
    steps: &str,
) -> Option<std::path::PathBuf> {
    let mut extra = Vec::new();
    for arch in arches {
        debian_base(arch)?;
        extra.push(*arch);
    }
    let text = format!(
        "from: rootfs:bases/debian-${{TARGETARCH}}.tar.zst\nplatforms: [{}]\nsteps:\n{steps}",
        extra.join(", ")
    );
    Some(scratch.recipe(name, &text, &[]))
}

fn build(dir: &Path, out: &str, extra: &[&str]) -> String {
    build_as(As::Me, dir, out, extra)
}

fn build_as(who: As, dir: &Path, out: &str, extra: &[&str]) -> String {
    build_with(who, dir, out, extra, &[])
}

fn build_with(who: As, dir: &Path, out: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec![
        "build",
        "recipe.yaml",
        "--no-cache",
        "--progress",
        "quiet",
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    // apt-get under QEMU on a shared 2-core machine: up to ~10 minutes per build.
    let out = xbake_within(who, dir, &args, env, std::time::Duration::from_secs(1800));
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn apt_install_reproduces_natively_and_under_emulation() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let Some(recipe) = debian_recipe(&scratch, "apt", &["amd64", "arm64"], APT) else {
        return;
    };
    let dir = recipe.parent().unwrap();
    let first = build(dir, "oci:a:1", &["--metadata-file", "meta.json"]);
    // The second on the walk snapshotter: overlay snapshots (the first) give the same.
    let second = build_with(
        As::Me,
        dir,
        "oci:b:1",
        &[],
        &[("XBAKE_SNAPSHOTTER", "walk")],
    );
    assert_eq!(
        first, second,
        "two --no-cache builds of an apt-get install differ (overlay, then walk)"
    );
    let (_, images) = read_layout(&dir.join("a"), "1");
    assert_eq!(images.len(), 2);
    for image in &images {
        assert!(
            image.files.contains_key("usr/sbin/xtables-nft-multi"),
            "{}",
            image.platform
        );
        for (path, left) in RULE_FILES {
            assert_eq!(
                image
                    .files
                    .get(path)
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
                left.map(String::from),
                "{} {path}",
                image.platform
            );
        }
    }
    let meta = json(&std::fs::read(dir.join("meta.json")).unwrap());
    let normalize = &meta["xbake.normalize"];
    assert_eq!(normalize["enabled"], true);
    assert_eq!(normalize["steps"], serde_json::json!([1]));
    assert!(normalize["sha256"].as_str().unwrap().starts_with("sha256:"));
    let paths: Vec<&str> = normalize["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/var/log/dpkg.log"), "{paths:?}");
}

#[test]
fn without_the_rules_apt_installs_differ_and_diff_names_the_rule_files() {
    let scratch = Scratch::new();
    let Some(recipe) = debian_recipe(&scratch, "raw", &["amd64"], APT) else {
        return;
    };
    let dir = recipe.parent().unwrap();
    let first = build(dir, "oci:a:1", &["--no-normalize"]);
    // apt and dpkg log to the second: make sure the two runs do not share one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = build(dir, "oci:b:1", &["--no-normalize"]);
    assert_ne!(first, second);
    let out = xbake(As::Me, dir, &["diff", "oci:a:1", "oci:b:1"], &[]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for (path, _) in RULE_FILES {
        assert!(
            report.contains(&format!("/{path}")),
            "{path} not named in:\n{report}"
        );
    }
    // The log's differing lines are shown, and both images are recognised as built
    // without the rules.
    assert!(
        report.contains("/var/log/dpkg.log: content differs")
            && report.contains("first difference at line"),
        "{report}"
    );
    assert!(
        report.contains("only files that xbake's normalisation rules cover differ"),
        "{report}"
    );
    let normalized = build(dir, "oci:n:1", &[]);
    assert_ne!(normalized, first);
}

#[test]
fn python_bytecode_and_a_new_user_reproduce_and_only_the_rules_change() {
    let scratch = Scratch::new();
    let steps = "  - copy: app\n    to: /opt/app\n  - run: python3 -m compileall -q /opt/app && useradd -r svc\n  - run: echo kept > /var/log/dpkg.log.1\n    normalize: false\n";
    let Some(_) = debian_base("amd64") else {
        return;
    };
    let text =
        format!("from: rootfs:bases/debian-amd64.tar.zst\nplatforms: [amd64]\nsteps:\n{steps}");
    let recipe = scratch.recipe("py", &text, &[("app/hello.py", "print('hello')\n")]);
    let dir = recipe.parent().unwrap();
    let epoch = "1700000000";
    let first = build(dir, "oci:a:1", &["--source-date-epoch", epoch]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = build(dir, "oci:b:1", &["--source-date-epoch", epoch]);
    assert_eq!(first, second);
    let (_, images) = read_layout(&dir.join("a"), "1");
    let image = &images[0];
    let pyc = image
        .files
        .iter()
        .find(|(p, _)| p.starts_with("opt/app/__pycache__/hello.") && p.ends_with(".pyc"))
        .map(|(_, b)| b.clone())
        .unwrap_or_else(|| {
            panic!(
                "no pyc in {:?}",
                image
                    .files
                    .keys()
                    .filter(|p| p.starts_with("opt"))
                    .collect::<Vec<_>>()
            )
        });
    // PEP 552 flags: under SOURCE_DATE_EPOCH py_compile writes checked-hash files (bit 0
    // and bit 1 set), which carry no time at all.
    assert_eq!(u32::from_le_bytes(pyc[4..8].try_into().unwrap()), 3);
    let shadow = file_text(image, "etc/shadow");
    let svc = shadow
        .lines()
        .find(|l| l.starts_with("svc:"))
        .unwrap_or_else(|| panic!("{shadow}"));
    assert_eq!(svc.split(':').nth(2), Some("19675"), "{svc}"); // 1700000000 / 86400
    assert_eq!(file_text(image, "var/log/dpkg.log.1"), "kept\n");
}

/// Writes a small pure-Python wheel (PEP 427: the files, METADATA, WHEEL and a RECORD of
/// their sha256s) into `dir`, with the host's python3; returns its file name.
fn make_wheel(dir: &Path) -> &'static str {
    const NAME: &str = "xbakedemo-1.0-py3-none-any.whl";
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "xbakedemo/__init__.py": b"VALUE = 42\n",
    "xbakedemo/util.py": b"def double(x):\n    return 2 * x\n",
    "xbakedemo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: xbakedemo\nVersion: 1.0\n",
    "xbakedemo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: xbake-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for path, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{path},sha256={digest},{len(data)}\n"
record += "xbakedemo-1.0.dist-info/RECORD,,\n"
files["xbakedemo-1.0.dist-info/RECORD"] = record.encode()
with zipfile.ZipFile(sys.argv[1], "w") as whl:
    for path, data in files.items():
        whl.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join(NAME))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    NAME
}

#[test]
fn pip_install_of_a_wheel_reproduces() {
    let scratch = Scratch::new();
    let Some(_) = debian_base("amd64") else {
        return;
    };
    let dir = scratch.path().join("pip");
    std::fs::create_dir_all(&dir).unwrap();
    let wheel = make_wheel(&dir);
    let text = format!(
        "from: rootfs:bases/debian-amd64.tar.zst\nplatforms: [amd64]\nsteps:\n\
         \x20 - copy: {wheel}\n    to: /tmp/wheels/\n\
         \x20 - run: pip install --no-index --break-system-packages /tmp/wheels/{wheel} && \
         python3 -c 'import xbakedemo.util as u; print(u.double(21))' > /answer\n"
    );
    let recipe = scratch.recipe("pip", &text, &[]);
    std::fs::rename(dir.join(wheel), recipe.parent().unwrap().join(wheel)).unwrap();
    let dir = recipe.parent().unwrap();
    let first = build(dir, "oci:a:1", &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = build(dir, "oci:b:1", &[]);
    assert_eq!(first, second, "two --no-cache pip installs differ");
    let (_, images) = read_layout(&dir.join("a"), "1");
    let image = &images[0];
    assert_eq!(file_text(image, "answer"), "42\n");
    let pycs: Vec<&String> = image
        .files
        .keys()
        .filter(|p| p.contains("dist-packages/xbakedemo/__pycache__/") && p.ends_with(".pyc"))
        .collect();
    assert_eq!(pycs.len(), 2, "pip compiled the package: {pycs:?}");
    for pyc in pycs {
        let bytes = &image.files[pyc];
        // Checked-hash bytecode (PEP 552): no build time inside.
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
            3,
            "{pyc}"
        );
    }
}

#[test]
fn apt_install_as_root_and_rootless_give_one_digest() {
    if !is_root() || test_user().is_none() || !tun_ready(As::TestUser) {
        skip("needs root (to create the test user) and /dev/net/tun open to it");
        return;
    }
    let scratch = Scratch::new();
    let Some(recipe) = debian_recipe(&scratch, "apt-users", &["amd64"], APT) else {
        return;
    };
    let dir = recipe.parent().unwrap();
    open_up(dir);
    let as_root = build_as(As::Me, dir, "oci:root:1", &[]);
    let rootless = build_as(As::TestUser, dir, "oci:user:1", &[]);
    assert_eq!(as_root, rootless, "root and rootless apt installs differ");
}
