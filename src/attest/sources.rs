//! Where `attest inspect` and `verify REF` read statements from: an OCI layout (or an
//! OCI archive, unpacked), or a registry. Each implements [`Source`]: documents and
//! blobs by digest and size, and a manifest's referrers.

use super::read::Source;
use crate::digest::Digest;
use crate::image::archive::{ExtractedLayout, open_oci_archive};
use crate::image::layout::Layout;
use crate::image::reference::ImageRef;
use crate::image::{BlobStore, MANIFEST_SIZE_LIMIT, descriptor_digest};
use crate::registry::{self, Client, Reference, RegistryOptions};
use serde_json::{Value, json};
use std::path::Path;

/// Statements are small; a bigger one is refused rather than read.
const STATEMENT_LIMIT: u64 = 64 << 20;

/// An opened image: its top document and where the rest comes from.
pub struct Opened {
    pub source: Box<dyn Source>,
    pub top: Vec<u8>,
    pub top_digest: Digest,
    pub top_size: u64,
    pub media_type: String,
    _extracted: Option<ExtractedLayout>,
}

struct LayoutSource {
    layout: Layout,
}

impl Source for LayoutSource {
    fn document(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
        self.layout
            .store()
            .read_sized(digest, size, MANIFEST_SIZE_LIMIT, "manifest")
            .map_err(|e| e.to_string())
    }

    fn blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
        self.layout
            .store()
            .read_sized(digest, size, STATEMENT_LIMIT, "statement")
            .map_err(|e| e.to_string())
    }

    fn tagged(&self, tag: &str) -> Result<Option<Vec<u8>>, String> {
        let top = match self.layout.resolve(Some(tag)) {
            Ok(top) => top,
            Err(crate::image::ImageError::TagNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let digest = descriptor_digest(&top).map_err(|e| e.to_string())?;
        self.document(&digest, top.size()).map(Some)
    }

    /// A layout has no referrers API: its index.json's untagged entries that name the
    /// subject are its referrers.
    fn referrers(&self, subject: &Digest) -> Result<Option<Vec<u8>>, String> {
        let index = self.layout.index().map_err(|e| e.to_string())?;
        let mut list = Vec::new();
        for d in index.manifests() {
            if d.artifact_type().is_none() {
                continue;
            }
            let digest = descriptor_digest(d).map_err(|e| e.to_string())?;
            let bytes = self.document(&digest, d.size())?;
            let doc: Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{digest}: {e}"))?;
            if doc["subject"]["digest"].as_str() == Some(subject.to_string().as_str()) {
                list.push(serde_json::to_value(d).map_err(|e| e.to_string())?);
            }
        }
        let index = json!({"schemaVersion": 2, "mediaType": crate::registry::media_types::OCI_INDEX, "manifests": list});
        crate::image::canonical_json(&index, "referrers list")
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

struct RegistrySource {
    client: Client,
    /// Fetched blobs land here first, checked against their digest and size.
    store: BlobStore,
    _scratch: tempfile::TempDir,
}

impl Source for RegistrySource {
    fn document(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
        self.client
            .get_manifest_sized(digest, size)
            .map(|m| m.bytes)
            .map_err(|e| e.to_string())
    }

    fn blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
        if size > STATEMENT_LIMIT {
            return Err(format!(
                "statement {digest} has {size} bytes, more than {STATEMENT_LIMIT}"
            ));
        }
        if !self.store.verifies(digest, size) {
            self.client
                .fetch_blob(digest, size, &self.store)
                .map_err(|e| e.to_string())?;
        }
        self.store
            .read_sized(digest, size, STATEMENT_LIMIT, "statement")
            .map_err(|e| e.to_string())
    }

    fn referrers(&self, subject: &Digest) -> Result<Option<Vec<u8>>, String> {
        registry::referrers::list(&self.client, subject).map_err(|e| e.to_string())
    }

    fn tagged(&self, tag: &str) -> Result<Option<Vec<u8>>, String> {
        match self.client.get_manifest(tag) {
            Ok(m) => Ok(Some(m.bytes)),
            Err(registry::RegistryError::ManifestUnknown { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Opens `text` (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, or a registry reference).
pub fn open(text: &str, scratch: &Path, opts: &RegistryOptions) -> Result<Opened, String> {
    let reference = ImageRef::parse(text)?;
    let from_layout = |layout: Layout, tag: Option<&str>, extracted| -> Result<Opened, String> {
        let top = layout.resolve(tag).map_err(|e| e.to_string())?;
        let digest = descriptor_digest(&top).map_err(|e| e.to_string())?;
        let bytes = layout
            .store()
            .read_sized(
                &digest,
                top.size(),
                MANIFEST_SIZE_LIMIT,
                "the image's top document",
            )
            .map_err(|e| e.to_string())?;
        Ok(Opened {
            top: bytes,
            top_digest: digest,
            top_size: top.size(),
            media_type: top.media_type().to_string(),
            source: Box::new(LayoutSource { layout }),
            _extracted: extracted,
        })
    };
    match reference {
        ImageRef::Layout(r) => {
            let layout = Layout::open(&r.dir).map_err(|e| e.to_string())?;
            from_layout(layout, r.tag.as_deref(), None)
        }
        ImageRef::OciArchive(r) => {
            let extracted = open_oci_archive(&r.dir, scratch).map_err(|e| e.to_string())?;
            let layout = Layout::open(extracted.layout.dir()).map_err(|e| e.to_string())?;
            from_layout(layout, r.tag.as_deref(), Some(extracted))
        }
        ImageRef::DockerArchive(_) => Err(
            "a docker-archive holds no attestations; read the oci: layout or the registry".into(),
        ),
        ImageRef::Registry(name) => {
            let name = name.strip_prefix("docker://").unwrap_or(&name).to_string();
            let reference: Reference = name
                .parse()
                .map_err(|e: registry::RegistryError| e.to_string())?;
            let creds =
                registry::auth::credentials_for(&reference.registry).map_err(|e| e.to_string())?;
            let client = Client::new(&reference, opts, creds).map_err(|e| e.to_string())?;
            let top = client
                .get_manifest(&reference.tag_or_digest())
                .map_err(|e| e.to_string())?;
            let scratch = tempfile::Builder::new()
                .prefix("attest-")
                .tempdir_in(scratch)
                .map_err(|e| format!("{}: {e}", scratch.display()))?;
            let store = BlobStore::open(scratch.path()).map_err(|e| e.to_string())?;
            Ok(Opened {
                top_size: top.bytes.len() as u64,
                top_digest: top.digest,
                media_type: top.media_type,
                top: top.bytes,
                source: Box::new(RegistrySource {
                    client,
                    store,
                    _scratch: scratch,
                }),
                _extracted: None,
            })
        }
    }
}
