//! Talking to OCI / Docker registries (the OCI distribution spec, v2 API): image
//! references, credentials, a client for one repository, and whole-image pull and push.

pub mod auth;
mod challenge;
mod endpoint;
mod error;
pub mod reference;
mod token;

pub use auth::{AuthFiles, Credentials};
pub use endpoint::{RegistryOptions, Scheme, scheme_for};
pub use error::RegistryError;
pub use reference::Reference;
