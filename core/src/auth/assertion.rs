//! The signed JWT (private_key_jwt) that stands in for a client secret (reference 0.2).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::certificate::SigningCertificate;
use super::config::SignatureStyle;
use super::error::AuthError;

/// The form value of `client_assertion_type` that goes with the assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Long enough to outlast a slow token request, short enough to be useless if captured.
const LIFETIME_SECS: u64 = 600;

/// Signs a fresh assertion for `client_id` addressed to exactly `token_url`.
pub fn sign(
    certificate: &SigningCertificate,
    style: SignatureStyle,
    client_id: &str,
    token_url: &str,
) -> Result<String, AuthError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (header, encoding): (serde_json::Value, &'static dyn RsaEncoding) = match style {
        SignatureStyle::Ps256 => (
            serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": certificate.sha256_thumbprint}),
            &RSA_PSS_SHA256,
        ),
        SignatureStyle::Rs256 => (
            serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": certificate.sha1_thumbprint}),
            &RSA_PKCS1_SHA256,
        ),
    };
    let claims = serde_json::json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = certificate.key();
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        encoding,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| AuthError::config("signing the client assertion failed"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{
        KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
        VerificationAlgorithm,
    };

    use super::*;
    use crate::auth::certificate::tests::{SHA1, SHA256, config};

    const URL: &str =
        "https://login.microsoftonline.com/0b6f0c1e-5a3d-4c2b-9e8f-1a2b3c4d5e6f/oauth2/v2.0/token";
    const CLIENT: &str = "6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c";

    /// Splits, decodes and verifies a JWT with the certificate's public key, as Entra ID would.
    fn open(
        jwt: &str,
        certificate: &SigningCertificate,
        algorithm: &'static dyn VerificationAlgorithm,
    ) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .expect("base64url without padding")
        };
        // The public key from the certificate file itself, not from our key pair.
        let pem = std::fs::read(config("cert.pem", None, None).path).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let public_key = parsed.public_key().subject_public_key.data.to_vec();
        assert_eq!(public_key, certificate.key().public_key().as_ref());
        UnparsedPublicKey::new(algorithm, &public_key)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &decode(parts[2]),
            )
            .expect("signature verifies with the certificate's public key");
        (
            serde_json::from_slice(&decode(parts[0])).unwrap(),
            serde_json::from_slice(&decode(parts[1])).unwrap(),
        )
    }

    use rustls_pki_types::pem::PemObject;

    fn check_claims(claims: &serde_json::Value) {
        assert_eq!(claims["aud"], URL);
        assert_eq!(claims["iss"], CLIENT);
        assert_eq!(claims["sub"], CLIENT);
        let jti = claims["jti"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(jti).is_ok(), "{jti}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let nbf = claims["nbf"].as_u64().unwrap();
        assert!(now.abs_diff(nbf) < 60);
        assert_eq!(claims["iat"], nbf);
        assert_eq!(claims["exp"].as_u64().unwrap(), nbf + 600);
    }

    #[test]
    fn ps256_with_sha256_thumbprint() {
        let certificate = SigningCertificate::load(&config("combined.pem", None, None)).unwrap();
        let jwt = sign(&certificate, SignatureStyle::Ps256, CLIENT, URL).unwrap();
        let (header, claims) = open(&jwt, &certificate, &RSA_PSS_2048_8192_SHA256);
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t#S256"], SHA256);
        assert!(header.get("x5t").is_none());
        check_claims(&claims);
    }

    #[test]
    fn rs256_with_sha1_thumbprint() {
        let certificate =
            SigningCertificate::load(&config("cert-legacy.p12", None, Some("test-password")))
                .unwrap();
        let jwt = sign(&certificate, SignatureStyle::Rs256, CLIENT, URL).unwrap();
        let (header, claims) = open(&jwt, &certificate, &RSA_PKCS1_2048_8192_SHA256);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t"], SHA1);
        assert!(header.get("x5t#S256").is_none());
        check_claims(&claims);
    }

    #[test]
    fn each_assertion_is_unique() {
        let certificate = SigningCertificate::load(&config("combined.pem", None, None)).unwrap();
        let a = sign(&certificate, SignatureStyle::Ps256, CLIENT, URL).unwrap();
        let b = sign(&certificate, SignatureStyle::Ps256, CLIENT, URL).unwrap();
        assert_ne!(a.split('.').nth(1), b.split('.').nth(1), "jti differs");
    }
}
