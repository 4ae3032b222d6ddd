//! `docker-registry serve` in a temporary folder on 127.0.0.1:PORT, stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/docker-registry";

pub struct RegistryProcess {
    child: Child,
    /// `127.0.0.1:PORT`, as it appears in references.
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RegistryProcess {
    /// The blob data file the registry keeps for `digest` (`sha256:…`), for tests that
    /// damage what it serves.
    #[allow(dead_code)]
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self._dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// None (after saying why) when the registry binary is missing.
    pub fn start() -> Option<RegistryProcess> {
        RegistryProcess::start_with_auth(None)
    }

    /// With htpasswd basic authentication for `user`/`password`; None (after saying why)
    /// when `docker-registry` or `htpasswd` is missing.
    pub fn start_with_htpasswd(user: &str, password: &str) -> Option<RegistryProcess> {
        RegistryProcess::start_with_auth(Some((user, password)))
    }

    fn start_with_auth(auth: Option<(&str, &str)>) -> Option<RegistryProcess> {
        if !Path::new(BINARY).exists() {
            super::skip("no docker-registry; apt-get install docker-registry");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let auth_section = match auth {
            None => String::new(),
            Some((user, password)) => {
                let out = match Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                {
                    Ok(out) if out.status.success() => out,
                    _ => {
                        super::skip("no htpasswd; apt-get install apache2-utils");
                        return None;
                    }
                };
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: xbake-test\n    path: {}\n",
                    file.display()
                )
            }
        };
        // Another process may take the port between our probe and the registry's bind;
        // try a few times.
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  formatter: text\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n{auth_section}",
                    dir.path().join("storage").display()
                ),
            )
            .unwrap();
            let log = dir.path().join("registry.log");
            let log_file = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(BINARY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .unwrap();
            if wait_ready(&mut child, &addr) {
                return Some(RegistryProcess {
                    child,
                    addr,
                    log,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if !log_text.contains("address already in use") {
                panic!("docker-registry did not start:\n{log_text}");
            }
        }
        panic!("could not find a free port for docker-registry");
    }

    /// Everything the registry logged so far (including its access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many requests the access log shows with `method` on a path containing
    /// `path_part`.
    pub fn count_requests(&self, method: &str, path_part: &str) -> usize {
        let needle = format!("\"{method} ");
        self.log()
            .lines()
            .filter(|l| {
                l.find(&needle).is_some_and(|i| {
                    l[i + needle.len()..]
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .contains(path_part)
                })
            })
            .count()
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `/v2/` until it answers (200, or 401 with auth), the process dies, or 20 s.
fn wait_ready(child: &mut Child, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Some(200 | 401) = http_status(addr, "/v2/") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The status of a plain GET, with std only (independent of the code under test).
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
