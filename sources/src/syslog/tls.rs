//! The TLS listener's rustls configuration: the server certificate and, with `ca_file`,
//! mandatory client certificates (mutual TLS).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use siemflow_core::fs::{CERTIFICATE_FILE_LIMIT, read_bounded};
use tokio_rustls::TlsAcceptor;

use super::config::ServerTls;

/// An acceptor for `tls`, with the aws-lc-rs provider and rustls' safe protocol versions.
pub fn acceptor(tls: &ServerTls) -> anyhow::Result<TlsAcceptor> {
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
    let key_pem = read_bounded(&tls.key_file, CERTIFICATE_FILE_LIMIT, "tls.key_file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "tls.key_file {}: no PEM private key ({e})",
            tls.key_file.display()
        )
    })?;
    let config = builder
        .with_single_cert(certs, key)
        .context("tls.crt_file and tls.key_file do not form a usable identity")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path, what: &'static str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read_bounded(path, CERTIFICATE_FILE_LIMIT, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{what} {}: not PEM certificates ({e})", path.display()))?;
    if certs.is_empty() {
        bail!("{what} {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}
