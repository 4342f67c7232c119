//! Reading certificates and private keys for rustls from files: the one place the
//! syslog sink (client identity, extra CAs) and the syslog source (listener identity,
//! client CAs) do it. Files are read with the certificate size bound.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::fs::{CERTIFICATE_FILE_LIMIT, read_bounded};

/// The certificates in `path`: PEM (one or more `CERTIFICATE` blocks) or a single DER
/// certificate. `what` names the option in errors (`tls.ca_file`).
pub fn certificates(
    path: &Path,
    what: &'static str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read_bounded(path, CERTIFICATE_FILE_LIMIT, what)?;
    let certs = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{what} {}: not PEM certificates ({e})", path.display()))?
    } else {
        vec![CertificateDer::from(bytes)]
    };
    if certs.is_empty() {
        anyhow::bail!("{what} {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The first PEM private key (PKCS#8, PKCS#1 or SEC1) in `path`.
pub fn private_key(path: &Path, what: &'static str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_bounded(path, CERTIFICATE_FILE_LIMIT, what)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| anyhow::anyhow!("{what} {}: no PEM private key ({e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_option_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "-----BEGIN NOTHING-----\n-----END NOTHING-----\n").expect("write");
        let error = certificates(&empty, "tls.ca_file")
            .expect_err("no certificate")
            .to_string();
        assert!(
            error.contains("tls.ca_file") && error.contains("empty.pem"),
            "{error}"
        );
        let error = private_key(&empty, "tls.key_file")
            .expect_err("no key")
            .to_string();
        assert!(
            error.contains("tls.key_file") && error.contains("no PEM private key"),
            "{error}"
        );
        let missing = private_key(&dir.path().join("missing.key"), "tls.key_file");
        assert!(missing.is_err());
    }
}
