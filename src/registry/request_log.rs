//! Counts of what a client asked its registry, for tests ("a second pull fetches no
//! blob") and for progress output. One count per operation, however many HTTP round trips
//! authentication took.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestLog {
    pub manifest_gets: u64,
    pub manifest_puts: u64,
    pub blob_gets: u64,
    /// Blob existence checks (HEAD).
    pub blob_heads: u64,
    /// Blobs whose bytes were uploaded.
    pub blob_uploads: u64,
    /// Cross-repository mounts tried, and those the registry did.
    pub mount_attempts: u64,
    pub blob_mounts: u64,
    /// Bearer tokens fetched from a token server.
    pub token_fetches: u64,
}

#[derive(Debug, Default)]
pub(crate) struct RequestCounters {
    manifest_gets: AtomicU64,
    manifest_puts: AtomicU64,
    blob_gets: AtomicU64,
    blob_heads: AtomicU64,
    blob_uploads: AtomicU64,
    mount_attempts: AtomicU64,
    blob_mounts: AtomicU64,
    token_fetches: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Counted {
    ManifestGet,
    ManifestPut,
    BlobGet,
    BlobHead,
    BlobUpload,
    MountAttempt,
    BlobMount,
    TokenFetch,
}

impl RequestCounters {
    pub(crate) fn count(&self, what: Counted) {
        let counter = match what {
            Counted::ManifestGet => &self.manifest_gets,
            Counted::ManifestPut => &self.manifest_puts,
            Counted::BlobGet => &self.blob_gets,
            Counted::BlobHead => &self.blob_heads,
            Counted::BlobUpload => &self.blob_uploads,
            Counted::MountAttempt => &self.mount_attempts,
            Counted::BlobMount => &self.blob_mounts,
            Counted::TokenFetch => &self.token_fetches,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RequestLog {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestLog {
            manifest_gets: get(&self.manifest_gets),
            manifest_puts: get(&self.manifest_puts),
            blob_gets: get(&self.blob_gets),
            blob_heads: get(&self.blob_heads),
            blob_uploads: get(&self.blob_uploads),
            mount_attempts: get(&self.mount_attempts),
            blob_mounts: get(&self.blob_mounts),
            token_fetches: get(&self.token_fetches),
        }
    }
}
