//! A string that never shows itself in logs, errors or debug output, and the secret
//! files (`${file:/path}`) such strings are read from.

use std::path::Path;

use serde::Deserialize;

use crate::fs::{ReadError, read_text_bounded};

/// The most a secret file may hold. A secret is a password, a token or a key: 64 KiB
/// holds any of them many times over, and nothing larger is read into memory.
pub const FILE_LIMIT: u64 = 64 << 10;

/// The value of a secret file (a Kubernetes secret volume, a Docker secret): a regular
/// file of at most [`FILE_LIMIT`] bytes of UTF-8, its trailing line break dropped.
pub fn read_file(path: &Path) -> Result<String, ReadError> {
    let text = read_text_bounded(path, FILE_LIMIT, "secret file")?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// A secret value from the config (a client secret, a token).
#[derive(Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when `candidate` is the secret, compared in constant time (over SHA-256
    /// digests, so not even the length shows in the timing): for checking a presented
    /// token.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use aws_lc_rs::digest::{SHA256, digest};
        let ours = digest(&SHA256, self.0.as_bytes());
        let theirs = digest(&SHA256, candidate);
        aws_lc_rs::constant_time::verify_slices_are_equal(ours.as_ref(), theirs.as_ref()).is_ok()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("**redacted**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
        assert!(secret.matches(b"hunter2"));
        assert!(!secret.matches(b"hunter3") && !secret.matches(b"hunter") && !secret.matches(b""));
    }

    #[test]
    fn a_secret_file_loses_its_line_break_and_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\r\n").expect("write");
        assert_eq!(read_file(&path).expect("read"), "s3cret");
        std::fs::write(&path, vec![b'x'; FILE_LIMIT as usize + 1]).expect("write");
        assert!(matches!(read_file(&path), Err(ReadError::TooLarge { .. })));
    }
}
