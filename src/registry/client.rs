//! One repository on one registry: the distribution spec's manifest and blob endpoints
//! (https://github.com/opencontainers/distribution-spec/blob/main/spec.md, "Pulling",
//! "Pushing", "Checking if content exists"), each returning typed errors that name the
//! registry and the reference.

use super::auth::Credentials;
use super::endpoint::{Endpoints, RegistryOptions, base_url, with_query};
use super::error::RegistryError;
use super::media_types::{MANIFEST_ACCEPT, OCI_INDEX, detect_manifest_media_type, manifest_kind};
use super::reference::{Reference, check_repository, check_tag, is_loopback_host};
use super::request_log::{Counted, RequestLog};
use super::transport::{Call, Payload, Subject, Transport, read_limited};
use crate::digest::{Digest, DigestError};
use crate::image::{BlobStore, ImageError};
use std::io::Read;
use ureq::http::{Method, StatusCode, header};

/// Manifests and indexes are small JSON documents; refuse to buffer more from a hostile
/// registry (containerd uses the same 4 MiB limit).
pub const MANIFEST_SIZE_LIMIT: u64 = 4 * 1024 * 1024;

/// The header in which registries report the digest of what they serve or stored.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A manifest or index as the registry sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
}

pub struct Client {
    repository: String,
    endpoints: Endpoints,
    transport: Transport,
}

impl Client {
    /// A client for `reference`'s repository (its tag and digest are not used). Talks HTTPS
    /// unless the registry is on loopback or `opts` allows plain HTTP for it.
    pub fn new(
        reference: &Reference,
        opts: &RegistryOptions,
        auth: Option<Credentials>,
    ) -> Result<Client, RegistryError> {
        // The fields are public, so check again what goes into URLs.
        check_repository(&reference.repository).map_err(|reason| {
            RegistryError::InvalidReference {
                reference: reference.to_string(),
                reason,
            }
        })?;
        let base = base_url(&reference.registry, opts);
        let transport = Transport::new(
            &reference.registry,
            base.clone(),
            is_loopback_host(&reference.registry),
            auth,
        );
        Ok(Client {
            repository: reference.repository.clone(),
            endpoints: Endpoints::new(base, &reference.repository),
            transport,
        })
    }

    pub fn registry(&self) -> &str {
        self.transport.registry()
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Counts of the operations this client has made.
    pub fn requests(&self) -> RequestLog {
        self.transport.counters.snapshot()
    }

    /// `registry/repository:tag` or `registry/repository@digest`, for messages.
    pub fn describe(&self, tag_or_digest: &str) -> String {
        let separator = if tag_or_digest.contains(':') {
            '@'
        } else {
            ':'
        };
        format!(
            "{}/{}{separator}{tag_or_digest}",
            self.registry(),
            self.repository
        )
    }

    fn pull_scopes(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repository)]
    }

    fn push_scopes(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.repository)]
    }

    /// A digest (which must then be sha256) or a tag, checked before it goes into a URL.
    fn parse_tag_or_digest(&self, tag_or_digest: &str) -> Result<Option<Digest>, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidReference {
            reference: self.describe(tag_or_digest),
            reason,
        };
        if tag_or_digest.contains(':') {
            tag_or_digest
                .parse::<Digest>()
                .map(Some)
                .map_err(|e| invalid(e.to_string()))
        } else {
            check_tag(tag_or_digest).map_err(invalid)?;
            Ok(None)
        }
    }

    /// GETs `/v2/` (spec "Determining support"): the registry answers and, with
    /// credentials, accepts them. What `xbake login` checks before saving credentials.
    pub fn ping(&self) -> Result<(), RegistryError> {
        let reference = self.registry().to_string();
        let call = Call {
            method: Method::GET,
            url: self.endpoints.version_check(),
            headers: Vec::new(),
            scopes: &[],
            reference: &reference,
            follow_redirects: true,
        };
        let mut response = self.transport.send(&call, Payload::None)?;
        if response.status() != StatusCode::OK {
            return Err(self.transport.status_error(
                &mut response,
                "GET /v2/",
                Subject::Other,
                &reference,
            ));
        }
        Ok(())
    }

    /// GETs a manifest or index by tag or digest, accepting OCI and Docker schema 2 types.
    /// When asked by digest, bytes with another digest are an error; when asked by tag, so
    /// is a `Docker-Content-Digest` header that disagrees with the bytes.
    /// Read at most [`MANIFEST_SIZE_LIMIT`] bytes.
    pub fn get_manifest(&self, tag_or_digest: &str) -> Result<Manifest, RegistryError> {
        self.fetch_manifest(tag_or_digest, None)
    }

    /// [`Client::get_manifest`] for a manifest an index's descriptor says has `size`
    /// bytes: a different size is an error naming both, and no more than `size + 1`
    /// bytes are read (containerd checks descriptor sizes the same way).
    pub fn get_manifest_sized(
        &self,
        digest: &Digest,
        size: u64,
    ) -> Result<Manifest, RegistryError> {
        self.fetch_manifest(&digest.to_string(), Some(size))
    }

    fn fetch_manifest(
        &self,
        tag_or_digest: &str,
        size: Option<u64>,
    ) -> Result<Manifest, RegistryError> {
        let reference = self.describe(tag_or_digest);
        if let Some(size) = size
            && size > MANIFEST_SIZE_LIMIT
        {
            return Err(RegistryError::TooLarge {
                registry: self.registry().to_string(),
                reference,
                what: format!("the manifest (declared {size} bytes)"),
                limit: MANIFEST_SIZE_LIMIT,
            });
        }
        let size_mismatch = |actual| RegistryError::SizeMismatch {
            registry: self.registry().to_string(),
            reference: reference.clone(),
            what: "a manifest".into(),
            expected: size.unwrap_or_default(),
            actual,
        };
        let limit = size.map_or(MANIFEST_SIZE_LIMIT, |s| s + 1);
        let expected = self.parse_tag_or_digest(tag_or_digest)?;
        self.transport.count(Counted::ManifestGet);
        let scopes = self.pull_scopes();
        let url = self.endpoints.manifest(tag_or_digest);
        let call = Call {
            method: Method::GET,
            url: url.clone(),
            headers: vec![(header::ACCEPT, MANIFEST_ACCEPT.to_string())],
            scopes: &scopes,
            reference: &reference,
            follow_redirects: true,
        };
        let mut response = self.transport.send(&call, Payload::None)?;
        if response.status() != StatusCode::OK {
            return Err(self.transport.status_error(
                &mut response,
                "GET manifest",
                Subject::Manifest,
                &reference,
            ));
        }
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header_text(header::CONTENT_TYPE.as_str());
        let claimed: Option<Digest> =
            header_text(DOCKER_CONTENT_DIGEST).and_then(|d| d.parse().ok());
        if let (Some(size), Some(announced)) = (size, response.body().content_length())
            && announced != size
        {
            return Err(size_mismatch(announced));
        }
        let bytes = read_limited(&mut response, limit).map_err(|e| match e {
            // More than size + 1 bytes: report the one byte too many that was seen.
            ureq::Error::BodyExceedsLimit(_) if size.is_some() => size_mismatch(limit),
            ureq::Error::BodyExceedsLimit(_) => RegistryError::TooLarge {
                registry: self.registry().to_string(),
                reference: reference.clone(),
                what: "manifest".into(),
                limit: MANIFEST_SIZE_LIMIT,
            },
            other => self.transport.transport_error(other, &reference, &url),
        })?;
        if let Some(size) = size
            && bytes.len() as u64 != size
        {
            return Err(size_mismatch(bytes.len() as u64));
        }
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected.or(claimed)
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry().to_string(),
                reference,
                what: "a manifest".into(),
                expected,
                actual: digest,
            });
        }
        let media_type = detect_manifest_media_type(content_type.as_deref(), &bytes);
        if manifest_kind(&media_type).is_none() {
            return Err(RegistryError::UnsupportedMediaType {
                registry: self.registry().to_string(),
                reference,
                what: "the manifest".into(),
                media_type,
            });
        }
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Streams a blob into `store`, following redirects to storage. A blob whose size or
    /// digest is not the expected one is refused and nothing is stored.
    pub fn fetch_blob(
        &self,
        digest: &Digest,
        size: u64,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        let reference = self.describe(&digest.to_string());
        self.transport.count(Counted::BlobGet);
        let scopes = self.pull_scopes();
        let url = self.endpoints.blob(digest);
        let call = Call {
            method: Method::GET,
            url: url.clone(),
            headers: Vec::new(),
            scopes: &scopes,
            reference: &reference,
            follow_redirects: true,
        };
        let mut response = self.transport.send(&call, Payload::None)?;
        if response.status() != StatusCode::OK {
            return Err(self.transport.status_error(
                &mut response,
                "GET blob",
                Subject::Blob,
                &reference,
            ));
        }
        let size_mismatch = |actual| RegistryError::SizeMismatch {
            registry: self.registry().to_string(),
            reference: reference.clone(),
            what: "a blob".into(),
            expected: size,
            actual,
        };
        if let Some(announced) = response.body().content_length()
            && announced != size
        {
            return Err(size_mismatch(announced));
        }
        // One byte more than expected is enough to detect an oversized stream without
        // letting a hostile server fill the disk.
        let body = response.body_mut().as_reader().take(size.saturating_add(1));
        match store.put_reader(body, Some((digest, size)), &reference) {
            Ok(_) => Ok(()),
            Err(ImageError::Digest(DigestError::Mismatch {
                expected, actual, ..
            })) => Err(RegistryError::DigestMismatch {
                registry: self.registry().to_string(),
                reference,
                what: "a blob".into(),
                expected,
                actual,
            }),
            Err(ImageError::Digest(DigestError::SizeMismatch { actual, .. })) => {
                Err(size_mismatch(actual))
            }
            Err(source) => Err(RegistryError::Store { reference, source }),
        }
    }

    /// The referrers list of `digest` (an image index of descriptors), or None when the
    /// registry has no referrers API (a 404: distribution 2.x; clients then use the
    /// `sha256-HEX` tag the spec names as the fallback).
    pub fn get_referrers(&self, digest: &Digest) -> Result<Option<Vec<u8>>, RegistryError> {
        let reference = self.describe(&digest.to_string());
        self.transport.count(Counted::ManifestGet);
        let scopes = self.pull_scopes();
        let url = self.endpoints.referrers(digest);
        let call = Call {
            method: Method::GET,
            url: url.clone(),
            headers: vec![(header::ACCEPT, OCI_INDEX.into())],
            scopes: &scopes,
            reference: &reference,
            follow_redirects: true,
        };
        let mut response = self.transport.send(&call, Payload::None)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => {
                return Err(self.transport.status_error(
                    &mut response,
                    "GET referrers",
                    Subject::Other,
                    &reference,
                ));
            }
        }
        // Distribution 2.x answers unknown paths with 404, but a registry that serves
        // something else there (an HTML page) has no referrers API either.
        let is_index = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(OCI_INDEX));
        let bytes = read_limited(&mut response, MANIFEST_SIZE_LIMIT)
            .map_err(|e| self.transport.transport_error(e, &reference, &url))?;
        Ok(is_index.then_some(bytes))
    }

    /// Whether the repository has the blob (HEAD; spec "Checking if content exists").
    pub fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let reference = self.describe(&digest.to_string());
        self.transport.count(Counted::BlobHead);
        // Ask with the push scope: existence checks happen while pushing, and one token
        // then serves the whole push.
        let scopes = self.push_scopes();
        let call = Call {
            method: Method::HEAD,
            url: self.endpoints.blob(digest),
            headers: Vec::new(),
            scopes: &scopes,
            reference: &reference,
            follow_redirects: true,
        };
        let mut response = self.transport.send(&call, Payload::None)?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.transport.status_error(
                &mut response,
                "HEAD blob",
                Subject::Other,
                &reference,
            )),
        }
    }

    /// Asks the registry to link a blob it holds in `from_repository` into this one
    /// without uploading (spec "Mounting a blob from another repository"). `Ok(false)`
    /// when it started an ordinary upload instead (which is then cancelled).
    pub fn mount_blob(
        &self,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let reference = self.describe(&digest.to_string());
        check_repository(from_repository).map_err(|reason| RegistryError::InvalidReference {
            reference: format!("{}/{from_repository}", self.registry()),
            reason,
        })?;
        self.transport.count(Counted::MountAttempt);
        let mut scopes = self.push_scopes();
        scopes.push(format!("repository:{from_repository}:pull"));
        let digest_text = digest.to_string();
        let call = Call {
            method: Method::POST,
            url: with_query(
                &self.endpoints.uploads(),
                &[("mount", &digest_text), ("from", from_repository)],
            ),
            headers: Vec::new(),
            scopes: &scopes,
            reference: &reference,
            follow_redirects: false,
        };
        let mut response = self.transport.send(&call, Payload::Bytes(&[]))?;
        match response.status() {
            StatusCode::CREATED => {
                self.transport.count(Counted::BlobMount);
                Ok(true)
            }
            StatusCode::ACCEPTED => {
                // An upload session we will not use.
                if let Some(location) = self.location(&response) {
                    self.cancel_upload(location, &scopes, &reference);
                }
                Ok(false)
            }
            _ => Err(self.transport.status_error(
                &mut response,
                "a cross-repository mount",
                Subject::Other,
                &reference,
            )),
        }
    }

    /// Checks, before a build, that a push here can succeed: the registry answers and
    /// these credentials may push to the repository. Opens an upload session (the first
    /// request of every blob push, so the same authentication and permission checks) and
    /// cancels it; nothing is stored. Errors name `reference` (what the user gave).
    pub fn check_push_access(&self, reference: &str) -> Result<(), RegistryError> {
        let scopes = self.push_scopes();
        let location = self.start_upload(
            &scopes,
            reference,
            "POST to start an upload (checking push access before the build)",
        )?;
        if let Some(location) = location {
            self.cancel_upload(location, &scopes, reference);
        }
        Ok(())
    }

    /// POST to open an upload session (spec "Pushing blobs"): the session's Location,
    /// if the registry gave a usable one. `operation` names the request in an error.
    fn start_upload(
        &self,
        scopes: &[String],
        reference: &str,
        operation: &str,
    ) -> Result<Option<String>, RegistryError> {
        let start = Call {
            method: Method::POST,
            url: self.endpoints.uploads(),
            headers: Vec::new(),
            scopes,
            reference,
            follow_redirects: false,
        };
        let mut response = self.transport.send(&start, Payload::Bytes(&[]))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.transport.status_error(
                &mut response,
                operation,
                Subject::Other,
                reference,
            ));
        }
        Ok(self.location(&response))
    }

    /// Ends an upload session xbake will not use. A courtesy: an abandoned session
    /// expires on the registry, so a failure changes nothing for the caller.
    fn cancel_upload(&self, location: String, scopes: &[String], reference: &str) {
        let cancel = Call {
            method: Method::DELETE,
            url: location,
            headers: Vec::new(),
            scopes,
            reference,
            follow_redirects: false,
        };
        let _ = self.transport.send(&cancel, Payload::None);
    }

    /// Uploads a blob in one request: POST to open an upload session, then PUT all
    /// `size` bytes of `body` with `?digest=` (spec "Monolithic upload", POST then PUT).
    pub fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        mut body: impl Read,
    ) -> Result<(), RegistryError> {
        let reference = self.describe(&digest.to_string());
        self.transport.count(Counted::BlobUpload);
        let scopes = self.push_scopes();
        // The POST authenticates (it can be retried after a 401); the PUT's streamed body
        // cannot, so it reuses what the POST obtained.
        let location = self
            .start_upload(&scopes, &reference, "POST to start an upload")?
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: self.registry().to_string(),
                reference: reference.clone(),
                message: "the upload's 202 Accepted has no usable Location header".into(),
            })?;
        let digest_text = digest.to_string();
        let put = Call {
            method: Method::PUT,
            url: with_query(&location, &[("digest", &digest_text)]),
            headers: vec![(header::CONTENT_TYPE, "application/octet-stream".into())],
            scopes: &scopes,
            reference: &reference,
            follow_redirects: false,
        };
        let mut response = self.transport.send(
            &put,
            Payload::Stream {
                reader: &mut body,
                size,
            },
        )?;
        if response.status() != StatusCode::CREATED {
            return Err(self.transport.status_error(
                &mut response,
                "PUT of the blob's bytes",
                Subject::Other,
                &reference,
            ));
        }
        Ok(())
    }

    /// PUTs a manifest or index under a tag or its digest. The registry must store the
    /// bytes as sent: a `Docker-Content-Digest` answer that differs is an error.
    pub fn put_manifest(
        &self,
        tag_or_digest: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let reference = self.describe(tag_or_digest);
        self.parse_tag_or_digest(tag_or_digest)?;
        self.transport.count(Counted::ManifestPut);
        let scopes = self.push_scopes();
        let call = Call {
            method: Method::PUT,
            url: self.endpoints.manifest(tag_or_digest),
            headers: vec![(header::CONTENT_TYPE, media_type.to_string())],
            scopes: &scopes,
            reference: &reference,
            follow_redirects: false,
        };
        let mut response = self.transport.send(&call, Payload::Bytes(bytes))?;
        if !response.status().is_success() {
            return Err(self.transport.status_error(
                &mut response,
                "PUT manifest",
                Subject::Other,
                &reference,
            ));
        }
        let stored: Option<Digest> = response
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|d| d.parse().ok());
        let sent = Digest::of(bytes);
        match stored {
            Some(stored) if stored != sent => Err(RegistryError::StoredDigestMismatch {
                registry: self.registry().to_string(),
                reference,
                sent,
                stored,
            }),
            _ => Ok(()),
        }
    }

    /// An upload's `Location`, absolute.
    fn location(&self, response: &ureq::http::Response<ureq::Body>) -> Option<String> {
        let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
        self.endpoints.resolve_location(location)
    }
}
