//! Talking to OCI / Docker registries (the OCI distribution spec, v2 API): image
//! references, credentials, a client for one repository, and whole-image pull and push.

pub mod auth;
mod error;
pub mod reference;

pub use auth::{AuthFiles, Credentials};
pub use error::RegistryError;
pub use reference::Reference;
