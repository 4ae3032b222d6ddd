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
        seen.iter().any(|(p, _)| p.ends_with("stage-0")),
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

// --- A step's own mounts (issue 10, "Run mounts"), driven through `xbake run --mount`,
// which prepares and makes them exactly as a RUN step's.

/// `scratch/name`: an OCI layout `img` of the native busybox base, built by `who`.
fn native_image(scratch: &Scratch, name: &str, who: As) -> std::path::PathBuf {
    let recipe = native_recipe(scratch, name, "  - run: mkdir -p /srv\n");
    let dir = recipe.parent().unwrap().to_path_buf();
    assert_ok(&xbake(
        who,
        &dir,
        &["build", "recipe.yaml", "--network", "none", "-o", "oci:img"],
        &[],
    ));
    dir
}

/// `xbake run oci:img FLAGS -- sh -c SCRIPT` in `dir`, as `who`.
fn run_with(who: As, dir: &Path, flags: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["run", "oci:img", "--network", "none"];
    args.extend(flags);
    args.extend(["--", "sh", "-c", script]);
    xbake(who, dir, &args, &[])
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A host folder `dir/name` holding `files`, owned by `who` as a user's own files are
/// (an overlay copies a file up only when its owner is mapped in the build's
/// namespace), and open to everyone: the step's uid 0 is not the host's owner of it.
fn host_folder(who: As, dir: &Path, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    for (file, text) in files {
        std::fs::write(folder.join(file), text).unwrap();
    }
    open_up(&folder);
    if let (As::TestUser, Some((uid, gid, _))) = (who, test_user()) {
        for entry in walkdir::WalkDir::new(&folder) {
            std::os::unix::fs::lchown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
        }
    }
    folder
}

#[test]
fn a_read_only_bind_refuses_every_write() {
    if !have_fixtures() {
        return;
    }
    for who in callers() {
        let scratch = Scratch::new();
        let dir = native_image(&scratch, "ro-bind", who);
        let host = host_folder(who, &dir, "host", &[("f", "from the host\n")]);
        let out = run_with(
            who,
            &dir,
            &["--mount", "type=bind,source=host,target=/h"],
            "cat /h/f; echo x > /h/f || echo refused=$?; touch /h/new; \
             grep ' /h ' /proc/self/mountinfo | cut -d' ' -f6; exit 7",
        );
        let stdout = stdout_of(&out);
        assert_eq!(out.status.code(), Some(7), "{who:?}: {}", text(&out));
        assert!(stdout.contains("from the host\n"), "{who:?}: {stdout}");
        assert!(stdout.contains("refused=1"), "{who:?}: {stdout}");
        // The step's stderr comes out with its stdout.
        assert_eq!(
            stdout.matches("Read-only file system").count(),
            2,
            "{who:?}: both writes fail with EROFS: {stdout}"
        );
        assert!(
            stdout.lines().any(|l| l.starts_with("ro,")),
            "{who:?}: {stdout}"
        );
        assert_eq!(
            std::fs::read_to_string(host.join("f")).unwrap(),
            "from the host\n"
        );
        assert!(!host.join("new").exists());
    }
}

#[test]
fn a_mount_over_the_kernel_folders_or_the_root_is_refused() {
    if !have_fixtures() {
        return;
    }
    let scratch = Scratch::new();
    let dir = native_image(&scratch, "refused", As::Me);
    for target in ["/proc/sys", "/dev", "/sys/fs", "/"] {
        let out = run_with(
            As::Me,
            &dir,
            &["--mount", &format!("type=tmpfs,target={target}")],
            "echo ran",
        );
        assert_eq!(out.status.code(), Some(1), "{target}: {}", text(&out));
        assert!(!stdout_of(&out).contains("ran"), "{target}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not allowed"), "{target}: {stderr}");
    }
}

/// The files below `dir` whose contents hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn a_cache_mount_keeps_its_files_on_the_host_until_prune() {
    if !have_fixtures() {
        return;
    }
    for who in callers() {
        let scratch = Scratch::new();
        let dir = native_image(&scratch, "cache-mount", who);
        let token = format!("cached-{}-{who:?}", std::process::id());
        let cache = ["--mount", "type=cache,target=/root/.cache/go-build"];
        let out = run_with(
            who,
            &dir,
            &cache,
            &format!(
                "stat -c '%a %u:%g' /root/.cache/go-build; echo {token} > /root/.cache/go-build/stamp"
            ),
        );
        assert_ok(&out);
        assert_eq!(
            stdout_of(&out).trim(),
            "755 0:0",
            "{who:?}: BuildKit's defaults"
        );
        let out = run_with(who, &dir, &cache, "cat /root/.cache/go-build/stamp");
        assert_ok(&out);
        assert_eq!(
            stdout_of(&out).trim(),
            token,
            "{who:?}: the second run sees it"
        );

        let cache_dir = dir.join(match who {
            As::Me => ".cache-me/xbake",
            As::TestUser => ".cache-user/xbake",
        });
        let holders = files_holding(&cache_dir, token.as_bytes());
        assert_eq!(holders.len(), 1, "{who:?}: {holders:?}");
        assert!(
            holders[0].starts_with(cache_dir.join("mounts")) && holders[0].ends_with("data/stamp"),
            "{who:?}: {holders:?}"
        );
        assert!(files_holding(&dir.join("img"), token.as_bytes()).is_empty());

        let listed = xbake(who, &dir, &["cache", "ls", "--mounts", "--json"], &[]);
        assert_ok(&listed);
        let listed = json(&listed.stdout);
        assert_eq!(
            listed[0]["id"], "/root/.cache/go-build",
            "{who:?}: {listed}"
        );
        assert_eq!(listed[0]["platform"], "linux/amd64");
        assert_eq!(listed[0]["bytes"], token.len() + 1);

        let pruned = xbake(who, &dir, &["cache", "prune"], &[]);
        assert_ok(&pruned);
        assert!(
            stdout_of(&pruned).contains("removed 1 cache mounts"),
            "{}",
            text(&pruned)
        );
        let out = run_with(
            who,
            &dir,
            &cache,
            "test -e /root/.cache/go-build/stamp; echo present=$?",
        );
        assert_eq!(
            stdout_of(&out).trim(),
            "present=1",
            "{who:?}: {}",
            text(&out)
        );
    }
}

#[test]
fn a_tmpfs_mount_holds_at_most_its_size() {
    if !have_fixtures() {
        return;
    }
    for who in callers() {
        let scratch = Scratch::new();
        let dir = native_image(&scratch, "tmpfs", who);
        let out = run_with(
            who,
            &dir,
            &["--mount", "type=tmpfs,target=/scratch,size=64k"],
            "stat -c %a /scratch; \
             dd if=/dev/zero of=/scratch/a bs=1024 count=40 2>/dev/null && echo first=ok; \
             dd if=/dev/zero of=/scratch/b bs=1024 count=40 2>/dev/null; echo second=$?",
        );
        assert_ok(&out);
        assert_eq!(
            stdout_of(&out).lines().collect::<Vec<_>>(),
            ["1777", "first=ok", "second=1"],
            "{who:?}: {}",
            text(&out)
        );
        // A mount inside an earlier one: its mount point is made in the earlier mount.
        let out = run_with(
            who,
            &dir,
            &[
                "--mount",
                "type=tmpfs,target=/scratch",
                "--mount",
                "type=tmpfs,target=/scratch/small,size=8k",
            ],
            "dd if=/dev/zero of=/scratch/small/x bs=1024 count=16 2>/dev/null; echo small=$?;              dd if=/dev/zero of=/scratch/x bs=1024 count=16 2>/dev/null; echo outer=$?",
        );
        assert_eq!(
            stdout_of(&out),
            "small=1\nouter=0\n",
            "{who:?}: {}",
            text(&out)
        );
    }
}

#[test]
fn a_writable_bind_throws_its_writes_away() {
    if !have_fixtures() {
        return;
    }
    for who in callers() {
        let scratch = Scratch::new();
        let dir = native_image(&scratch, "rw-bind", who);
        let host = host_folder(who, &dir, "src", &[("f", "original\n")]);
        let out = run_with(
            who,
            &dir,
            &["--mount", "type=bind,source=src,target=/src,rw"],
            "echo changed > /src/f && echo new > /src/g && cat /src/f /src/g",
        );
        assert_ok(&out);
        assert_eq!(stdout_of(&out), "changed\nnew\n", "{who:?}");
        assert_eq!(
            std::fs::read_to_string(host.join("f")).unwrap(),
            "original\n"
        );
        assert!(
            !host.join("g").exists(),
            "{who:?}: the host folder is untouched"
        );
        let out = run_with(
            who,
            &dir,
            &["--mount", "type=bind,source=src,target=/src,rw"],
            "cat /src/f; test -e /src/g; echo g=$?",
        );
        assert_eq!(
            stdout_of(&out),
            "original\ng=1\n",
            "{who:?}: a fresh overlay each time"
        );
        let work: Vec<_> = walkdir::WalkDir::new(dir.join(match who {
            As::Me => ".cache-me/xbake/work",
            As::TestUser => ".cache-user/xbake/work",
        }))
        .min_depth(1)
        .into_iter()
        .collect();
        assert!(
            work.is_empty(),
            "{who:?}: the scratch folders are gone: {work:?}"
        );
    }
}

#[test]
fn a_secret_is_a_read_only_file_and_in_nothing_xbake_writes() {
    if !have_fixtures() {
        return;
    }
    for who in callers() {
        let scratch = Scratch::new();
        let dir = native_image(&scratch, "secret", who);
        let value = format!("s3cr3t-{}-{who:?}", std::process::id());
        std::fs::write(dir.join("token.txt"), &value).unwrap();
        open_up(&dir.join("token.txt"));
        let out = xbake(
            who,
            &dir,
            &[
                "run",
                "oci:img",
                "--network",
                "none",
                "--secret",
                "id=tok,src=token.txt",
                "--secret",
                "id=env,env=XBAKE_TEST_SECRET",
                "--mount",
                "type=secret,id=tok",
                "--mount",
                "type=secret,id=env,target=/etc/app/key,mode=0440,uid=1,gid=2",
                "--",
                "sh",
                "-c",
                "stat -c '%a %u:%g' /run/secrets/tok /etc/app/key; \
                 cat /run/secrets/tok; echo; cat /etc/app/key; echo; \
                 echo x > /run/secrets/tok || echo refused",
            ],
            &[("XBAKE_TEST_SECRET", "from-the-environment")],
        );
        assert_ok(&out);
        assert_eq!(
            stdout_of(&out).lines().collect::<Vec<_>>(),
            [
                "400 0:0",
                "440 1:2",
                value.as_str(),
                "from-the-environment",
                "sh: can't create /run/secrets/tok: Read-only file system",
                "refused"
            ],
            "{who:?}: {}",
            text(&out)
        );
        for folder in [".cache-me", ".cache-user", "img"] {
            let holders = files_holding(&dir.join(folder), value.as_bytes());
            assert!(holders.is_empty(), "{who:?}: the secret is in {holders:?}");
        }
        let missing = run_with(
            who,
            &dir,
            &["--mount", "type=secret,id=tok,required"],
            "echo ran",
        );
        assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
        let stderr = String::from_utf8_lossy(&missing.stderr);
        assert!(stderr.contains("secret \"tok\" is required"), "{stderr}");
    }
}
