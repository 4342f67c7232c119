//! The TLS listener's rustls configuration: the server certificate and, with `ca_file`,
//! mandatory client certificates (mutual TLS).

use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use siemflow_core::tls::{certificates, private_key};
use tokio_rustls::TlsAcceptor;

use super::config::ServerTls;

/// An acceptor for `tls`, with the aws-lc-rs provider and rustls' safe protocol versions.
pub fn acceptor(tls: &ServerTls) -> anyhow::Result<TlsAcceptor> {
    Ok(TlsAcceptor::from(Arc::new(server_config(tls)?)))
}

/// The rustls server configuration of `tls`: also the `opentelemetry` source's, which
/// adds its ALPN protocols.
pub(crate) fn server_config(tls: &ServerTls) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no safe protocol version")?;
    let builder = match &tls.ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file, "tls.ca_file")? {
                roots.add(cert).with_context(|| {
                    format!("tls.ca_file {}: unusable CA certificate", ca_file.display())
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("tls.ca_file cannot verify client certificates")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let certs = certificates(&tls.crt_file, "tls.crt_file")?;
    let key = private_key(&tls.key_file, "tls.key_file")?;
    builder
        .with_single_cert(certs, key)
        .context("tls.crt_file and tls.key_file do not form a usable identity")
}
