//! The front's TLS identity: PEM files, or a certificate for 127.0.0.1 and localhost
//! signed by a CA generated on the spot (the client trusts the CA's PEM as `ca_file`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The front's certificate and key.
#[derive(Clone)]
pub struct FrontTls(Arc<ServerConfig>);

/// A generated identity: the front's TLS and the PEM of the CA that signed it.
pub struct GeneratedCertificate {
    /// For [`crate::event_hubs::EventHubsFront::start`].
    pub tls: FrontTls,
    /// The CA certificate clients trust (`tls.ca_file`).
    pub ca_pem: String,
}

impl FrontTls {
    /// A certificate chain and private key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("{}: not PEM certificates", cert.display()))?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("{}: not a PEM private key", key.display()))?;
        Self::new(chain, key)
    }

    /// A CA and a certificate it signs for `names` (host names or IP addresses).
    pub fn generate(names: &[String]) -> anyhow::Result<GeneratedCertificate> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "siemflow Event Hubs simulator CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).context("CA certificate")?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().context("server key")?;
        let mut params = CertificateParams::new(names.to_vec()).context("server names")?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .context("server certificate")?;
        let tls = Self::new(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
        Ok(GeneratedCertificate {
            tls,
            ca_pem: ca_cert.pem(),
        })
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no safe protocol version")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the certificate and key do not form a usable identity")?;
        Ok(FrontTls(Arc::new(config)))
    }

    pub(super) fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.0)
    }
}
