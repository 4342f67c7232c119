//! The rustls client configuration of the sinks that speak TLS themselves (`syslog`, and
//! `opentelemetry` over gRPC): the system's roots plus `tls.ca_file`, a client
//! certificate, verification on unless explicitly turned off.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use siemflow_core::http::TlsConfig;
use siemflow_core::tls;

/// The rustls client configuration for `tls`: the system's roots plus `ca_file`, an
/// optional client certificate, verification on unless explicitly turned off.
pub(crate) fn client_config(tls: &TlsConfig) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no safe protocol version")?;
    let builder = if tls.verify_certificate {
        builder.with_root_certificates(root_store(tls)?)
    } else {
        tracing::warn!(
            "tls.verify_certificate = false: the receiver's certificate is not checked, so anyone on the path can read and change this traffic"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
    };
    let config = match (&tls.crt_file, &tls.key_file) {
        (Some(crt_file), key_file) => {
            let certs = tls::certificates(crt_file, "tls.crt_file")?;
            let (key_path, key_option) = match key_file {
                Some(key_file) => (key_file.as_path(), "tls.key_file"),
                None => (crt_file.as_path(), "tls.crt_file"),
            };
            let key = tls::private_key(key_path, key_option)?;
            builder
                .with_client_auth_cert(certs, key)
                .context("the client certificate and key do not form a usable identity")?
        }
        (None, Some(_)) => bail!("tls.key_file is set without tls.crt_file"),
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn root_store(tls: &TlsConfig) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if let Some(error) = native.errors.first() {
        tracing::debug!(%error, "some system CA certificates could not be loaded");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(
            ignored,
            "system CA certificates rustls cannot use were skipped"
        );
    }
    if let Some(ca_file) = &tls.ca_file {
        for cert in tls::certificates(ca_file, "tls.ca_file")? {
            roots.add(cert).with_context(|| {
                format!("tls.ca_file {}: unusable CA certificate", ca_file.display())
            })?;
        }
    }
    if roots.is_empty() {
        bail!(
            "no CA certificate to verify the receiver with: the system has none; set tls.ca_file"
        );
    }
    Ok(roots)
}

/// `verify_certificate = false`: any certificate is accepted, but handshake signatures are
/// still checked (so the session keys belong to whoever presented the certificate).
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
