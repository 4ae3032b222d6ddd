//! Talking to OCI / Docker registries (the OCI distribution spec, v2 API): image
//! references, credentials, a client for one repository, and whole-image pull and push.
//!
//! - `reference`: `debian:bookworm` → `docker.io/library/debian:bookworm`.
//! - `auth`: Docker/podman auth files; `login`/`logout`.
//! - `client`: manifests and blobs of one repository, with Basic and Bearer-token
//!   authentication (`transport`, `challenge`, `token`) over HTTPS or, for loopback and
//!   insecure registries, plain HTTP (`endpoint`).
//! - `pull` / `push`: one platform of an image into a content store; an index and all its
//!   platforms out of one.

pub mod auth;
mod challenge;
mod client;
mod endpoint;
mod error;
mod manifest_doc;
pub mod media_types;
mod pull;
mod push;
pub mod reference;
pub mod referrers;
mod request_log;
mod token;
mod transport;

pub(crate) use transport::http_agent_config;

pub use auth::{AuthFiles, Credentials};
pub use client::{Client, MANIFEST_SIZE_LIMIT, Manifest};
pub use endpoint::{RegistryOptions, Scheme, scheme_for};
pub use error::RegistryError;
pub use pull::{CONFIG_SIZE_LIMIT, PulledImage, PulledLayer, pull, pull_with};
pub use push::{push, push_with};
pub use reference::Reference;
pub use request_log::RequestLog;
