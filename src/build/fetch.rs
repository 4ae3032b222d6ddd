//! `ADD https://…`: a file fetched over HTTP(S) into the build's scratch folder, hashed
//! on the way, bounded in size, and checked against `--checksum` when one is given, so
//! the step's key can name its content and a wrong download never reaches a layer.

use crate::digest::{Digest, HashingReader};
use std::io::{Read, Write};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("fetching {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url}: more than {limit} bytes (--max-unpack-size)")]
    TooLarge { url: String, limit: u64 },
    #[error("fetching {url}: writing {}: {source}", path.display())]
    Write {
        url: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: --checksum={expected} was given, but the download is {actual}")]
    Checksum {
        url: String,
        expected: Digest,
        actual: Digest,
    },
}

/// Whether `url` names this machine (no proxy for it, as for loopback registries).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    crate::registry::reference::is_loopback_host(host)
}

/// Fetches `url` into `file` (created, not there before), at most `limit` bytes; returns
/// the content's digest, checked against `checksum` when given.
pub fn fetch(
    url: &str,
    file: &Path,
    limit: u64,
    checksum: Option<&Digest>,
) -> Result<Digest, FetchError> {
    let agent: ureq::Agent = crate::registry::http_agent_config(is_loopback(url))
        .build()
        .into();
    let http = |source| FetchError::Http {
        url: url.to_string(),
        source: Box::new(source),
    };
    let response = agent.get(url).call().map_err(http)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(FetchError::Status {
            url: url.to_string(),
            status,
        });
    }
    let write = |source| FetchError::Write {
        url: url.to_string(),
        path: file.to_path_buf(),
        source,
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(write)?;
    // One byte past the limit tells a body that is too large from one that fits.
    let body = response
        .into_body()
        .into_reader()
        .take(limit.saturating_add(1));
    let mut hashing = HashingReader::new(body);
    let copied = std::io::copy(&mut hashing, &mut out).map_err(write)?;
    out.flush().map_err(write)?;
    if copied > limit {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let (digest, _) = hashing.drain_and_finish().map_err(write)?;
    if let Some(expected) = checksum
        && *expected != digest
    {
        return Err(FetchError::Checksum {
            url: url.to_string(),
            expected: expected.clone(),
            actual: digest,
        });
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// Serves `body` with `status` to one request on loopback; returns its URL.
    fn serve_once(status: &'static str, body: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        });
        format!("http://127.0.0.1:{port}/files/asset.txt")
    }

    #[test]
    fn fetches_hashes_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("asset.txt");
        let digest = fetch(&serve_once("200 OK", b"asset\n"), &file, 1024, None).unwrap();
        assert_eq!(digest, Digest::of(b"asset\n"));
        assert_eq!(std::fs::read(&file).unwrap(), b"asset\n");

        let wrong = Digest::of(b"other");
        let err = fetch(
            &serve_once("200 OK", b"asset\n"),
            &dir.path().join("b"),
            1024,
            Some(&wrong),
        )
        .unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        let err = fetch(
            &serve_once("404 Not Found", b""),
            &dir.path().join("c"),
            1024,
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().ends_with("the server answered 404"),
            "{err}"
        );
        let err = fetch(
            &serve_once("200 OK", b"0123456789"),
            &dir.path().join("d"),
            4,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:8000/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("https://example.org/x"));
        assert!(!is_loopback("https://user@example.org:8443/x"));
    }
}
