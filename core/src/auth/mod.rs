//! Entra ID (Azure AD) app-only authentication: client secret or certificate, per national cloud.
//!
//! A plugin deserializes an [`EntraConfig`], reports [`EntraConfig::check`] issues at validation,
//! builds one [`TokenProvider`] per (tenant, client, scope) and sends its API requests through
//! [`TokenProvider::send`], which adds the bearer token and recovers from a 401 once.

mod assertion;
mod certificate;
mod cloud;
mod config;
mod error;
mod provider;
mod token;

#[cfg(test)]
mod tests;

pub use assertion::ASSERTION_TYPE;
pub use certificate::SigningCertificate;
pub use cloud::{Cloud, default_scope};
pub use config::{CertificateConfig, EntraConfig, SignatureStyle};
pub use error::AuthError;
pub use provider::TokenProvider;
pub use token::AccessToken;
