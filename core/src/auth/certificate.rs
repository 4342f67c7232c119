//! Loads a certificate credential (PEM or PKCS#12) into a key that can sign assertions.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::config::CertificateConfig;
use super::error::AuthError;

/// Entra ID refuses smaller RSA keys for certificate credentials.
const MIN_KEY_BITS: usize = 2048;

/// Warn this long before the certificate stops being accepted.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// A private key with the certificate it belongs to, ready to sign client assertions.
pub struct SigningCertificate {
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate DER (`x5t`).
    pub(crate) sha1_thumbprint: String,
    /// base64url SHA-256 of the certificate DER (`x5t#S256`).
    pub(crate) sha256_thumbprint: String,
    subject: String,
    not_after: SystemTime,
}

impl std::fmt::Debug for SigningCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCertificate")
            .field("subject", &self.subject)
            .field("x5t#S256", &self.sha256_thumbprint)
            .field("key", &"**redacted**")
            .finish()
    }
}

impl SigningCertificate {
    /// Reads the files named by `config` and pairs the key with its certificate.
    pub fn load(config: &CertificateConfig) -> Result<Self, AuthError> {
        let bytes = read(&config.path, "the certificate file")?;
        let (keys, certificates) = if is_pkcs12(&config.path, &bytes) {
            if config.key_path.is_some() {
                return Err(AuthError::config(format!(
                    "{} is a PKCS#12 file, which holds its own key: remove certificate.key_path",
                    config.path.display()
                )));
            }
            let password = config.password.as_ref().map_or("", |p| p.expose());
            from_pkcs12(&config.path, &bytes, password)?
        } else {
            if config.password.is_some() {
                return Err(AuthError::config(format!(
                    "certificate.password is set but {} is PEM: password only opens PKCS#12 (.p12/.pfx) files; \
                     for an encrypted PEM key, make a PKCS#12 file with `openssl pkcs12 -export`",
                    config.path.display()
                )));
            }
            let certificates = pem_certificates(&config.path, &bytes)?;
            let key = match &config.key_path {
                Some(key_path) => pem_key(key_path, &read(key_path, "the private key file")?)?,
                None => pem_key(&config.path, &bytes)?,
            };
            (vec![key], certificates)
        };
        pair(&config.path, keys, &certificates)
    }

    /// The certificate's subject, for log lines.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When the certificate stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// base64url SHA-1 thumbprint of the certificate (the `x5t` header).
    pub fn sha1_thumbprint(&self) -> &str {
        &self.sha1_thumbprint
    }

    /// base64url SHA-256 thumbprint of the certificate (the `x5t#S256` header).
    pub fn sha256_thumbprint(&self) -> &str {
        &self.sha256_thumbprint
    }

    pub(crate) fn key(&self) -> &RsaKeyPair {
        &self.key
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, AuthError> {
    crate::fs::read_bounded(path, crate::fs::CERTIFICATE_FILE_LIMIT, what)
        .map_err(|e| AuthError::config(e.to_string()))
}

/// By extension, or by the absence of any PEM armour (a DER PKCS#12 under another name).
fn is_pkcs12(path: &Path, bytes: &[u8]) -> bool {
    let by_extension = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("p12") || e.eq_ignore_ascii_case("pfx"));
    by_extension || !bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// A decoded private key, not yet known to be RSA.
enum KeyBytes {
    Pkcs8(Vec<u8>),
    Pkcs1(Vec<u8>),
}

fn pem_certificates(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>, AuthError> {
    let certificates = CertificateDer::pem_slice_iter(bytes)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AuthError::config(format!("{} is not valid PEM: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(AuthError::config(format!(
            "{} holds no certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certificates)
}

fn pem_key(path: &Path, bytes: &[u8]) -> Result<KeyBytes, AuthError> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(AuthError::config(format!(
            "the private key in {} is encrypted: decrypt it (`openssl pkey -in key.pem -out plain.pem`) \
             or bundle it as PKCS#12 with a password",
            path.display()
        )));
    }
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(PrivateKeyDer::Pkcs8(key)) => Ok(KeyBytes::Pkcs8(key.secret_pkcs8_der().to_vec())),
        Ok(PrivateKeyDer::Pkcs1(key)) => Ok(KeyBytes::Pkcs1(key.secret_pkcs1_der().to_vec())),
        Ok(_) => Err(not_rsa(path)),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(AuthError::config(format!(
            "{} holds no private key (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`): \
             add it or set certificate.key_path",
            path.display()
        ))),
        Err(e) => Err(AuthError::config(format!(
            "cannot read the private key in {}: {e}",
            path.display()
        ))),
    }
}

fn from_pkcs12(
    path: &Path,
    bytes: &[u8],
    password: &str,
) -> Result<(Vec<KeyBytes>, Vec<Vec<u8>>), AuthError> {
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password).map_err(|e| {
        AuthError::config(format!(
            "cannot open the PKCS#12 file {} ({e}): is certificate.password right?",
            path.display()
        ))
    })?;
    let keys = archive
        .keys
        .iter()
        .map(|bag| KeyBytes::Pkcs8(bag.key.as_der().to_vec()))
        .collect();
    let certificates = archive
        .certs
        .iter()
        .map(|bag| bag.cert.as_der().to_vec())
        .collect();
    Ok((keys, certificates))
}

fn not_rsa(path: &Path) -> AuthError {
    AuthError::config(format!(
        "the private key in {} is not an RSA key: Entra ID certificate credentials need RSA, {MIN_KEY_BITS} bits or more",
        path.display()
    ))
}

/// Finds the certificate whose public key is the key's: a chain file may hold issuers too.
fn pair(
    path: &Path,
    keys: Vec<KeyBytes>,
    certificates: &[Vec<u8>],
) -> Result<SigningCertificate, AuthError> {
    if keys.is_empty() {
        return Err(AuthError::config(format!(
            "{} holds no private key",
            path.display()
        )));
    }
    if certificates.is_empty() {
        return Err(AuthError::config(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    for key in keys {
        let key = match key {
            KeyBytes::Pkcs8(der) => RsaKeyPair::from_pkcs8(&der),
            KeyBytes::Pkcs1(der) => RsaKeyPair::from_der(&der),
        }
        .map_err(|_| not_rsa(path))?;
        if key.public_modulus_len() * 8 < MIN_KEY_BITS {
            return Err(AuthError::config(format!(
                "the RSA key in {} has {} bits; Entra ID needs {MIN_KEY_BITS} or more",
                path.display(),
                key.public_modulus_len() * 8
            )));
        }
        for der in certificates {
            let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
                continue;
            };
            if certificate.public_key().subject_public_key.data.as_ref()
                != key.public_key().as_ref()
            {
                continue;
            }
            let not_after = UNIX_EPOCH
                + Duration::from_secs(
                    u64::try_from(certificate.validity().not_after.timestamp()).unwrap_or(0),
                );
            let subject = certificate.subject().to_string();
            warn_if_expiring(&subject, not_after);
            return Ok(SigningCertificate {
                key,
                sha1_thumbprint: thumbprint(&digest::SHA1_FOR_LEGACY_USE_ONLY, der),
                sha256_thumbprint: thumbprint(&digest::SHA256, der),
                subject,
                not_after,
            });
        }
    }
    Err(AuthError::config(format!(
        "the private key does not belong to any certificate in {}: give the key that was generated with this certificate",
        path.display()
    )))
}

/// Entra ID stops accepting a certificate when it expires; say so before it happens.
fn warn_if_expiring(subject: &str, not_after: SystemTime) {
    let now = SystemTime::now();
    let expiry = humantime::format_rfc3339_seconds(not_after);
    if not_after <= now {
        tracing::warn!(%subject, %expiry, "the Entra ID client certificate has expired: token requests will be refused until a new one is uploaded and configured");
    } else if not_after <= now + EXPIRY_WARNING {
        tracing::warn!(%subject, %expiry, "the Entra ID client certificate expires within 30 days: upload and configure a new one");
    }
}

fn thumbprint(algorithm: &'static digest::Algorithm, der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(algorithm, der))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::Secret;
    use crate::auth::config::SignatureStyle;

    /// Computed with openssl (see the fixtures' README), not with our code.
    pub(crate) const SHA1: &str = "YKe05--pmQp6az7RXkXs1NedNm4";
    pub(crate) const SHA256: &str = "CSN-ewCckk0uR7hgLZF9C8UrSQKBGglLHdbMwFL1CKU";

    pub(crate) fn fixture(name: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth")).join(name)
    }

    pub(crate) fn config(
        path: &str,
        key_path: Option<&str>,
        password: Option<&str>,
    ) -> CertificateConfig {
        CertificateConfig {
            path: fixture(path),
            key_path: key_path.map(fixture),
            password: password.map(Secret::new),
            signature: SignatureStyle::Ps256,
        }
    }

    fn loads(config: &CertificateConfig) {
        let certificate = SigningCertificate::load(config)
            .unwrap_or_else(|e| panic!("{}: {e}", config.path.display()));
        assert_eq!(certificate.sha1_thumbprint(), SHA1);
        assert_eq!(certificate.sha256_thumbprint(), SHA256);
        assert!(certificate.subject().contains("siemflow-test-throwaway"));
        assert!(certificate.not_after() > SystemTime::now());
    }

    fn refuses(config: &CertificateConfig, needle: &str) {
        let error = SigningCertificate::load(config).unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().contains(needle), "{error}");
    }

    #[test]
    fn pem_combined_and_separate() {
        loads(&config("combined.pem", None, None));
        loads(&config("cert.pem", Some("key.pem"), None));
        loads(&config("cert.pem", Some("key-pkcs1.pem"), None));
    }

    #[test]
    fn pkcs12_modern_and_legacy() {
        loads(&config("cert-aes.p12", None, Some("test-password")));
        loads(&config("cert-legacy.p12", None, Some("test-password")));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        refuses(&config("missing.pem", None, None), "cannot read");
        refuses(&config("cert.pem", None, None), "holds no private key");
        refuses(
            &config("cert.pem", Some("other-key.pem"), None),
            "does not belong",
        );
        refuses(
            &config("cert.pem", Some("ec-key.pem"), None),
            "not an RSA key",
        );
        refuses(&config("cert-aes.p12", None, Some("wrong")), "password");
        refuses(&config("cert-aes.p12", None, None), "password");
        refuses(&config("combined.pem", None, Some("x")), "PKCS#12");
        refuses(&config("key.pem", None, None), "no certificate");
    }

    #[test]
    fn wrong_password_is_not_echoed() {
        let error = SigningCertificate::load(&config("cert-aes.p12", None, Some("hunter2-pw")))
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2-pw"));
        let loaded = SigningCertificate::load(&config("combined.pem", None, None)).unwrap();
        assert!(format!("{loaded:?}").contains("redacted"));
    }
}
