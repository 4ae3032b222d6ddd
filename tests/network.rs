//! RUN steps get a private network by default (slirp4netns or pasta): online, but
//! without the host's loopback or its abstract unix sockets; `--network host` and
//! `network: none` on request. As root and as an unprivileged user.

mod common;

use common::*;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connects to a TCP address or an abstract unix socket and says what happened.
const PROBE: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd, rc;
    alarm(10);
    if (argc == 4 && strcmp(argv[1], "tcp") == 0) {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(atoi(argv[3]));
        if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) return 2;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    } else if (argc == 3 && strcmp(argv[1], "abstract") == 0) {
        struct sockaddr_un a = {0};
        size_t n = strlen(argv[2]);
        if (n + 1 > sizeof a.sun_path) return 2;
        a.sun_family = AF_UNIX;
        memcpy(a.sun_path + 1, argv[2], n);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        rc = connect(fd, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        return 2;
    }
    if (rc == 0) {
        printf("probe %s %s: connected\n", argv[1], argv[2]);
        (void)write(fd, "hello\n", 6);
    } else {
        printf("probe %s %s: %m\n", argv[1], argv[2]);
    }
    return 0;
}
"#;

/// The host's services the steps try to reach: a TCP listener on 127.0.0.1 and an
/// abstract unix socket, both made by this test.
struct HostServices {
    tcp: TcpListener,
    abstract_socket: UnixListener,
    abstract_name: String,
}

impl HostServices {
    fn start() -> HostServices {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let abstract_name = format!(
            "xbake-net-test-{}-{}",
            std::process::id(),
            tcp.local_addr().unwrap().port()
        );
        let addr = SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        let abstract_socket = UnixListener::bind_addr(&addr).unwrap();
        abstract_socket.set_nonblocking(true).unwrap();
        HostServices {
            tcp,
            abstract_socket,
            abstract_name,
        }
    }

    fn port(&self) -> u16 {
        self.tcp.local_addr().unwrap().port()
    }

    /// How many connections each listener has accepted since the last call.
    fn accepted(&self) -> (usize, usize) {
        let mut tcp = 0;
        while self.tcp.accept().is_ok() {
            tcp += 1;
        }
        let mut unix = 0;
        loop {
            match self.abstract_socket.accept() {
                Ok(_) => unix += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("accept: {e}"),
            }
        }
        (tcp, unix)
    }
}

/// A recipe folder with the probe copied into a busybox image, and a step that probes
/// the host's 127.0.0.1 and the abstract socket, and, on a private network only,
/// slirp4netns's gateway 10.0.2.2, which leads to the host's 127.0.0.1 unless
/// `--disable-host-loopback` (on the host's network that address is not ours to try).
fn probe_recipe(scratch: &Scratch, name: &str, services: &HostServices) -> Option<PathBuf> {
    let port = services.port();
    let recipe = scratch.recipe(
        name,
        &format!(
            "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n\
             \x20 - copy: probe\n    to: /probe\n    mode: \"0755\"\n\
             \x20 - run: /probe tcp 127.0.0.1 {port}; /probe abstract {};\
             \x20if ip link show tap0 > /dev/null 2>&1; then /probe tcp 10.0.2.2 {port}; fi\n",
            services.abstract_name
        ),
        &[],
    );
    let dir = recipe.parent().unwrap().to_path_buf();
    static_program(&dir, "probe", PROBE)?;
    open_up(&dir);
    Some(dir)
}

fn ready(who: As) -> bool {
    if fixtures().is_none() {
        return !skip("no busybox fixtures; run `just fixtures` (or ./dev test)");
    }
    if who == As::TestUser && !is_root() {
        return !skip("the rootless case needs root to create the test user");
    }
    tun_ready(who)
}

fn build(who: As, dir: &Path, extra: &[&str]) -> (String, std::process::Output) {
    let mut args = vec!["build", "recipe.yaml", "--arch", "amd64", "--no-cache"];
    args.extend_from_slice(extra);
    let out = xbake(who, dir, &args, &[]);
    (String::from_utf8_lossy(&out.stderr).into_owned(), out)
}

/// What the probe said about `target` ("connected", or the error), from the build log.
fn outcome(log: &str, target: &str) -> Option<String> {
    let marker = format!("] probe {target}: ");
    log.lines()
        .find_map(|l| Some(l.split_once(&marker)?.1.trim().to_string()))
}

fn host_services_are_out_of_reach_by_default(who: As) {
    if !ready(who) {
        return;
    }
    let scratch = Scratch::new();
    let services = HostServices::start();
    let Some(dir) = probe_recipe(&scratch, "probe", &services) else {
        return;
    };
    let port = services.port();
    let name = services.abstract_name.clone();

    let (log, out) = build(who, &dir, &[]);
    assert_ok(&out);
    let tcp = "tcp 127.0.0.1".to_string();
    let gateway = "tcp 10.0.2.2".to_string();
    let unix = format!("abstract {name}");
    for target in [&tcp, &gateway, &unix] {
        let result = outcome(&log, target);
        assert!(
            result.is_some_and(|r| r != "connected"),
            "{target} (port {port}) must be out of reach by default:\n{log}"
        );
    }
    assert_eq!(
        services.accepted(),
        (0, 0),
        "nothing reached the host's listeners"
    );

    let (log, out) = build(who, &dir, &["--network", "host"]);
    assert_ok(&out);
    for target in [&tcp, &unix] {
        assert_eq!(
            outcome(&log, target).as_deref(),
            Some("connected"),
            "{target} with --network host:\n{log}"
        );
    }
    assert_eq!(services.accepted(), (1, 1), "--network host reaches both");
}

#[test]
fn host_loopback_and_abstract_sockets_are_out_of_reach_by_default_as_root() {
    host_services_are_out_of_reach_by_default(As::Me);
}

#[test]
fn host_loopback_and_abstract_sockets_are_out_of_reach_by_default_rootless() {
    host_services_are_out_of_reach_by_default(As::TestUser);
}

/// The Debian archive's host and path, from this machine's apt sources (never written
/// into the code), if it has a plain `http://` one.
fn archive() -> Option<(String, String)> {
    let dir = std::fs::read_dir("/etc/apt/sources.list.d").ok()?;
    let mut names: Vec<PathBuf> = dir
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
        .collect();
    names.sort();
    names.iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        text.lines().find_map(|l| {
            let uri = l.strip_prefix("URIs:")?.split_whitespace().next()?;
            let rest = uri.strip_prefix("http://")?;
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            Some((host.to_string(), format!("/{path}")))
        })
    })
}

fn outbound_dns_and_tcp_work(who: As) {
    if !ready(who) {
        return;
    }
    let Some((host, path)) = archive() else {
        skip("no http:// URIs in /etc/apt/sources.list.d/*.sources to try outbound with");
        return;
    };
    // Only meaningful when the host itself gets there.
    if TcpStream::connect_timeout(
        &match std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 80))
            .ok()
            .and_then(|mut a| a.next())
        {
            Some(a) => a,
            None => {
                skip(&format!("the host cannot resolve {host}"));
                return;
            }
        },
        Duration::from_secs(5),
    )
    .is_err()
    {
        skip(&format!("the host cannot reach {host}:80"));
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "out",
        &format!(
            "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n\
             \x20 - run: |\n\
             \x20     cat /etc/resolv.conf\n\
             \x20     nslookup {host} > /dev/null && echo resolved\n\
             \x20     {{ printf 'HEAD {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n'; sleep 3; }} | nc -w 5 {host} 80 | head -n 1\n"
        ),
        &[],
    );
    let dir = recipe.parent().unwrap();
    let (log, out) = build(who, dir, &[]);
    assert_ok(&out);
    assert!(
        log.contains("nameserver 10.0.2.3"),
        "resolv.conf names slirp's DNS:\n{log}"
    );
    assert!(log.contains("] resolved"), "DNS through the helper:\n{log}");
    assert!(
        log.contains("] HTTP/1."),
        "an HTTP answer from {host}:\n{log}"
    );
}

#[test]
fn steps_resolve_names_and_connect_out_as_root() {
    outbound_dns_and_tcp_work(As::Me);
}

#[test]
fn steps_resolve_names_and_connect_out_rootless() {
    outbound_dns_and_tcp_work(As::TestUser);
}

#[test]
fn a_missing_helper_fails_before_any_step_unless_the_network_is_host() {
    if !ready(As::Me) {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "missing",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: echo ran > /ran\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let empty = scratch.path().join("no-helpers");
    std::fs::create_dir_all(&empty).unwrap();
    let env = [("XBAKE_NETWORK_HELPER_PATH", empty.to_str().unwrap())];
    let out = xbake(
        As::Me,
        dir,
        &["build", "recipe.yaml", "--arch", "amd64"],
        &env,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(log.contains("apt-get install slirp4netns"), "{log}");
    assert!(log.contains("--network host"), "{log}");
    assert!(!log.contains("FROM"), "failed before any work:\n{log}");
    // The host's network needs no helper.
    let out = xbake(
        As::Me,
        dir,
        &[
            "build",
            "recipe.yaml",
            "--arch",
            "amd64",
            "--network",
            "host",
        ],
        &env,
    );
    assert_ok(&out);
}

#[test]
fn a_private_tun_device_is_a_clear_error_rootless_and_fine_as_root() {
    if !is_root() {
        skip("needs root for a private mount namespace with its own /dev/net/tun");
        return;
    }
    if !ready(As::Me) {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe(
        "tun",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: ls /sys/class/net\n",
        &[],
    );
    let dir = recipe.parent().unwrap();
    let args = ["build", "recipe.yaml", "--arch", "amd64"];
    let out = xbake_with_tun_mode(As::TestUser, dir, &args, &[], 0o600);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(log.contains("chmod 0666 /dev/net/tun"), "{log}");
    assert!(log.contains("mode 0600"), "{log}");
    assert!(!log.contains("FROM"), "failed before any work:\n{log}");
    // A root build opens it as the host's root (parked in its namespace), so 0600 does.
    let out = xbake_with_tun_mode(As::Me, dir, &args, &[], 0o600);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("] tap0"),
        "{}",
        text(&out)
    );
}

/// With `--network host` the step gets the host's /sys, bound read-only with every
/// mount below it. That must work, and stay read-only, when the folders above the
/// recipe and cache are private to their owner (a `mktemp -d`), as the build's mapped
/// root cannot search them.
fn host_sys_is_read_only_under_a_private_folder(who: As) {
    if !ready(who) {
        return;
    }
    let scratch = Scratch::new();
    let private = scratch.path().join("private");
    let recipe = scratch.recipe(
        "private/sys",
        "from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: >-\n      \
         if touch /sys/xbake-probe 2>/dev/null; then echo sys-writable; else echo sys-read-only; fi;\n      \
         grep -q ' /sys ro,' /proc/self/mountinfo && echo sys-mounted-ro\n",
        &[],
    );
    if let As::TestUser = who {
        let (uid, gid, _) = test_user().expect("ready() checked the test user");
        std::os::unix::fs::chown(&private, Some(uid), Some(gid)).unwrap();
    }
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (log, out) = build(who, recipe.parent().unwrap(), &["--network", "host"]);
    assert_ok(&out);
    assert!(log.contains("sys-read-only"), "{log}");
    assert!(log.contains("sys-mounted-ro"), "{log}");
}

#[test]
fn host_sys_is_read_only_under_a_private_folder_as_root() {
    host_sys_is_read_only_under_a_private_folder(As::Me);
}

#[test]
fn host_sys_is_read_only_under_a_private_folder_rootless() {
    host_sys_is_read_only_under_a_private_folder(As::TestUser);
}
