//! Talking to OCI / Docker registries (the OCI distribution spec, v2 API): image
//! references, credentials, a client for one repository, and whole-image pull and push.

pub mod auth;
mod challenge;
mod client;
mod endpoint;
mod error;
pub mod media_types;
pub mod reference;
mod request_log;
mod token;
mod transport;

pub use auth::{AuthFiles, Credentials};
pub use client::{Client, MANIFEST_SIZE_LIMIT, Manifest};
pub use endpoint::{RegistryOptions, Scheme, scheme_for};
pub use error::RegistryError;
pub use reference::Reference;
pub use request_log::RequestLog;
