//! Helpers for the registry tests: a real CNCF distribution registry (Debian's
//! `docker-registry`) on a free loopback port, a tiny scriptable HTTP server for
//! misbehaving registries, and a hand-made two-platform image in a content store.

#![allow(dead_code)]

pub mod fake_server;
pub mod registry_process;
pub mod test_image;

/// `XBAKE_TEST_STRICT=1` (CI) turns a skip into a failure (the same convention as
/// tests/common).
pub fn skip(why: &str) -> bool {
    if std::env::var_os("XBAKE_TEST_STRICT").is_some() {
        panic!("required but unavailable: {why}");
    }
    eprintln!("skipped: {why}");
    true
}
