//! The step sandbox as an attacker tries it (issue 8, items 1-4): uid 0 in a step is
//! never host root, /proc's host knobs are read-only or hidden, a step cannot reach
//! the caller's terminal or process group, and the cache's scratch folders are private.
//! Each runs as root and as the unprivileged test user.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The busybox fixtures, or a skip saying why.
fn have_fixtures() -> bool {
    fixtures().is_some() || !skip("needs the busybox fixtures (`just fixtures`)")
}

/// A recipe folder `name` whose recipe runs `steps` (YAML list items) on the native
/// amd64 busybox base.
fn native_recipe(scratch: &Scratch, name: &str, steps: &str) -> std::path::PathBuf {
    scratch.recipe(
        name,
        &format!("from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n{steps}"),
        &[],
    )
}

/// Who runs the builds: root, and the unprivileged test user when the tests are root.
fn callers() -> Vec<As> {
    let mut who = vec![As::Me];
    if is_root() && test_user().is_some() {
        who.push(As::TestUser);
    }
    who
}

const HOST_KNOBS: [&str; 2] = [
    "/proc/sys/kernel/printk_ratelimit",
    "/proc/sys/kernel/core_pattern",
];

fn read_knobs() -> Vec<String> {
    HOST_KNOBS
        .iter()
        .map(|k| std::fs::read_to_string(k).unwrap_or_default())
        .collect()
}

#[test]
fn a_step_cannot_write_host_sysctls_and_is_never_host_root() {
    if !emulation_ready() {
        return;
    }
    let before = read_knobs();
    for who in callers() {
        let scratch = Scratch::new();
        let recipe = scratch.recipe(
            "sysctl",
            "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz\nsteps:\n\
             \x20 - run: |\n\
             \x20     cat /proc/self/uid_map > /uid_map\n\
             \x20     if echo 7 > /proc/sys/kernel/printk_ratelimit; then echo wrote; else echo refused; fi > /printk\n\
             \x20     if echo '|/tmp/pwn %p' > /proc/sys/kernel/core_pattern; then echo wrote; else echo refused; fi > /core\n\
             \x20     if echo h > /proc/sysrq-trigger; then echo wrote; else echo refused; fi > /sysrq\n\
             \x20     cat /proc/keys /proc/timer_list | wc -c > /masked-bytes\n\
             \x20     ls -A /sys/firmware | wc -l > /firmware-entries\n\
             \x20     grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | cut -d' ' -f5,6 > /ro-mounts\n",
            &[],
        );
        let dir = recipe.parent().unwrap();
        assert_ok(&xbake(
            who,
            dir,
            &[
                "build",
                "recipe.yaml",
                "--arch",
                "amd64,arm64",
                "-o",
                "oci:o",
            ],
            &[],
        ));
        let (_, images) = read_layout(&dir.join("o"), "latest");
        for image in &images {
            for knob in ["printk", "core", "sysrq"] {
                assert_eq!(
                    file_text(image, knob).trim(),
                    "refused",
                    "{who:?} {}: {knob}",
                    image.platform
                );
            }
            // runc's masked paths read as empty, its read-only ones are mounted ro.
            assert_eq!(file_text(image, "masked-bytes").trim(), "0", "{who:?}");
            assert_eq!(file_text(image, "firmware-entries").trim(), "0", "{who:?}");
            let ro = file_text(image, "ro-mounts");
            for path in ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"] {
                assert!(
                    ro.lines().any(|l| l.starts_with(&format!("{path} ro,"))),
                    "{who:?} {path} not read-only:\n{ro}"
                );
            }
            // The step's namespace maps only image ids: nothing at 2^31 and up, where a
            // root build keeps the host's own ids (host root among them).
            for line in file_text(image, "uid_map").lines() {
                let inside: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
                assert!(inside < 1 << 31, "{who:?}: {line}");
            }
        }
        assert_eq!(read_knobs(), before, "{who:?} changed a host sysctl");
    }
}

/// Starts a build whose step waits, finds the step's shell on the host, and returns
/// its uid_map as the host sees it (/proc/PID/uid_map read from the initial namespace
/// is in host ids, user_namespaces(7)).
fn uid_map_of_a_running_step(who: As) -> String {
    let scratch = Scratch::new();
    let marker = format!("xbake-uidmap-marker-{}", std::process::id());
    let recipe = native_recipe(
        &scratch,
        "waits",
        &format!("  - run: sleep 60; true {marker}\n"),
    );
    let dir = recipe.parent().unwrap().to_path_buf();
    let build = std::thread::spawn(move || xbake(who, &dir, &["build", "recipe.yaml"], &[]));
    let mut map = None;
    for _ in 0..300 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let found = Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap();
        let pids = String::from_utf8_lossy(&found.stdout).into_owned();
        if let Some(pid) = pids.split_whitespace().next() {
            map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok();
            let _ = Command::new("pkill")
                .args(["-KILL", "-f", &marker])
                .status();
            break;
        }
    }
    let out = build.join().unwrap();
    assert!(!out.status.success(), "the killed step must fail the build");
    map.expect("the step never started")
}

#[test]
fn the_hosts_view_of_a_steps_ids_never_maps_root_to_root() {
    if !is_root() || fixtures().is_none() {
        skip("needs root (to read another user's /proc/PID/uid_map) and the fixtures");
        return;
    }
    let as_root = uid_map_of_a_running_step(As::Me);
    let first: Vec<u64> = as_root
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    // 0 inside is root's /etc/subuid range or the documented built-in one, never 0.
    assert_eq!(first[0], 0, "{as_root}");
    assert_ne!(
        first[1], 0,
        "uid 0 of a root build's step is host root:\n{as_root}"
    );
    let has_root_entry = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("root:") || l.starts_with("0:"));
    if !has_root_entry {
        assert_eq!(first[1], 0x7000_0000, "the built-in range:\n{as_root}");
    }
    assert!(
        !as_root
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("0")),
        "no host id 0 anywhere in the step's map:\n{as_root}"
    );
    if let Some((uid, _, _)) = test_user() {
        let rootless = uid_map_of_a_running_step(As::TestUser);
        let first = rootless.lines().next().unwrap().to_string();
        let fields: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(fields[..2], ["0", &uid.to_string()], "{rootless}");
    }
}

/// Builds (gcc -static) the program that tries to reach the terminal: open /dev/tty,
/// and TIOCSTI on stdin, stdout, stderr and /dev/tty.
fn terminal_probe(dir: &Path) -> Option<std::path::PathBuf> {
    let source = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
int main(void) {
    const char *line = "echo INJECTED\n";
    int tty = open("/dev/tty", O_RDWR);
    printf("open /dev/tty: %s\n", tty < 0 ? strerror(errno) : "opened");
    for (int fd = 0; fd < 3; fd++) {
        int done = 0;
        for (const char *c = line; *c; c++) done += ioctl(fd, TIOCSTI, c) == 0;
        printf("TIOCSTI fd %d: %s\n", fd, done ? "injected" : strerror(errno));
    }
    if (tty >= 0) {
        int done = 0;
        for (const char *c = line; *c; c++) done += ioctl(tty, TIOCSTI, c) == 0;
        printf("TIOCSTI /dev/tty: %s\n", done ? "injected" : strerror(errno));
    }
    return 0;
}
"#;
    static_program(dir, "probe", source)
}

fn pty_run(who: As, dir: &Path, args: &[&str]) -> (String, std::process::ExitStatus) {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/pty_run.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&helper)
        .arg(shared_binary())
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join(".cache-pty"));
    if who == As::TestUser {
        let (uid, gid, home) = test_user().unwrap();
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid).env("HOME", home);
    }
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(300));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status,
    )
}

#[test]
fn a_step_under_a_terminal_cannot_open_it_or_inject_keystrokes() {
    if !have_fixtures() {
        return;
    }
    for who in callers() {
        let scratch = Scratch::new();
        let recipe = native_recipe(
            &scratch,
            "tty",
            "  - copy: probe\n    to: /probe\n    mode: \"0755\"\n  - run: /probe\n",
        );
        let dir = recipe.parent().unwrap();
        if terminal_probe(dir).is_none() {
            return;
        }
        open_up(dir);
        let (screen, status) = pty_run(who, dir, &["build", "recipe.yaml", "-o", "oci:o"]);
        assert!(status.success(), "{who:?}:\n{screen}");
        assert!(
            screen.contains("open /dev/tty: No such device or address"),
            "{who:?}: the step has no controlling terminal:\n{screen}"
        );
        assert!(!screen.contains(": injected"), "{who:?}:\n{screen}");
        assert!(screen.contains("PENDING_INPUT=0"), "{who:?}:\n{screen}");

        // `xbake run -i` hands the terminal over as stdin; TIOCSTI on it still fails.
        let (screen, status) = pty_run(who, dir, &["run", "-i", "oci:o", "--", "/probe"]);
        assert!(status.success(), "{who:?}:\n{screen}");
        assert!(
            screen.contains("TIOCSTI fd 0: Operation not permitted"),
            "{who:?}:\n{screen}"
        );
        assert!(!screen.contains(": injected"), "{who:?}:\n{screen}");
        assert!(screen.contains("PENDING_INPUT=0"), "{who:?}:\n{screen}");
    }
}

#[test]
fn stdin_is_empty_unless_run_asks_for_it() {
    if !have_fixtures() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = native_recipe(&scratch, "stdin", "  - run: cat > /seen\n");
    let dir = recipe.parent().unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "-o", "oci:o"],
        &[],
    ));
    let (_, images) = read_layout(&dir.join("o"), "latest");
    assert_eq!(
        file_text(&images[0], "seen"),
        "",
        "a RUN step reads /dev/null"
    );

    let mut run = Command::new(shared_binary());
    run.args(["run", "-i", "oci:o", "--", "sh", "-c", "tr a-z A-Z"])
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join(".cache-me"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = run.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"through\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "THROUGH");
}

#[test]
fn kill_zero_in_a_step_leaves_the_caller_alive() {
    if !have_fixtures() {
        return;
    }
    for who in callers() {
        let scratch = Scratch::new();
        let recipe = native_recipe(&scratch, "kill0", "  - run: kill -TERM 0; sleep 5\n");
        let dir = recipe.parent().unwrap();
        // The caller's shell runs xbake in its own process group, as scripts and CI do.
        let script = format!(
            "{} build recipe.yaml; echo \"caller alive, xbake exit $?\"",
            shared_binary().display()
        );
        let out = xbake_shell(who, dir, &script);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert!(
            stdout.contains("caller alive, xbake exit 3"),
            "{who:?}: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("killed by signal SIGTERM"),
            "{}",
            text(&out)
        );
    }
}

/// Runs `script` with sh as `who`, in `dir`, with the caches the other helpers use.
fn xbake_shell(who: As, dir: &Path, script: &str) -> std::process::Output {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join(".cache-sh"));
    if who == As::TestUser {
        let (uid, gid, home) = test_user().unwrap();
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid).env("HOME", home);
    }
    run_with_timeout(cmd, std::time::Duration::from_secs(300))
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn scratch_folders_are_private_to_the_builder() {
    if !have_fixtures() {
        return;
    }
    let scratch = Scratch::new();
    let marker = format!("xbake-private-marker-{}", std::process::id());
    let recipe = native_recipe(
        &scratch,
        "private",
        &format!("  - run: cp /bin/busybox /suid && chmod 4755 /suid; sleep 3; true {marker}\n"),
    );
    let dir = recipe.parent().unwrap().to_path_buf();
    // A shared cache folder, as with `--cache-dir /tmp/…`: open to everyone at first.
    let cache = scratch.path().join("shared-cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache_arg = cache.display().to_string();
    let build = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            xbake(
                As::Me,
                &dir,
                &["build", "recipe.yaml", "--cache-dir", &cache_arg],
                &[],
            )
        })
    };
    // While the step runs: every folder on the way to its rootfs is 0700.
    let mut seen = Vec::new();
    for _ in 0..300 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let running = Command::new("pgrep")
            .args(["-f", &marker])
            .status()
            .unwrap();
        if !running.success() {
            continue;
        }
        for entry in walkdir::WalkDir::new(cache.join("work")).max_depth(2) {
            let entry = entry.unwrap();
            if entry.file_type().is_dir() {
                seen.push((entry.path().to_path_buf(), mode_of(entry.path())));
            }
        }
        break;
    }
    assert_ok(&build.join().unwrap());
    assert!(
        seen.iter().any(|(p, _)| p.ends_with("platform-0")),
        "the step's folders were never seen: {seen:?}"
    );
    for (path, mode) in &seen {
        assert_eq!(*mode, 0o700, "{}", path.display());
    }
    for name in ["", "work", "steps", "imports", "diffids"] {
        assert_eq!(mode_of(&cache.join(name)), 0o700, "cache folder {name:?}");
    }
}

#[test]
fn a_root_builds_outputs_belong_to_root() {
    if !is_root() || fixtures().is_none() {
        skip("needs root and the fixtures");
        return;
    }
    let scratch = Scratch::new();
    let recipe = native_recipe(&scratch, "owner", "  - run: echo x > /x\n");
    let dir = recipe.parent().unwrap();
    assert_ok(&xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "-o",
            "oci:o",
            "--metadata-file",
            "meta.json",
        ],
        &[],
    ));
    use std::os::unix::fs::MetadataExt;
    for entry in walkdir::WalkDir::new(dir.join("o")) {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "{}",
            entry.path().display()
        );
    }
    let meta = std::fs::metadata(dir.join("meta.json")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}
