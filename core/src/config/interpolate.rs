//! `${VAR}`, `${VAR:-default}` and `${file:/path}` inside string values.
//!
//! Interpolation happens after parsing and only inside strings, so an environment value
//! can never add keys or tables to the config.

use std::path::Path;

use crate::fs::ReadError;
use crate::secret;
use crate::units::format_size;

/// Expands every reference in `text`; `$$` stands for a literal `$`.
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, Option<String>)> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                (
                    "unclosed `${` in string".to_string(),
                    Some("write `${NAME}`, or `$$` for a literal `$`".to_string()),
                )
            })?;
            out.push_str(&expand(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(
    reference: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, Option<String>)> {
    if let Some(path) = reference.strip_prefix("file:") {
        return secret::read_file(Path::new(path)).map_err(|error| {
            let hint = match error {
                ReadError::Io { .. } => None,
                _ => Some(format!(
                    "a secret file must be a regular file of at most {}",
                    format_size(secret::FILE_LIMIT)
                )),
            };
            (error.to_string(), hint)
        });
    }
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err((
            format!("`${{{reference}}}` is not a valid reference"),
            Some("write `${NAME}`, `${NAME:-default}` or `${file:/path/to/secret}`".into()),
        ));
    }
    match (env(name).filter(|v| !v.is_empty()), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (None, None) => Err((
            format!("environment variable `{name}` is not set"),
            Some(format!("set it, or give a default: `${{{name}:-value}}`")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TENANT" => Some("contoso".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(interpolate("t=${TENANT}", &env).as_deref(), Ok("t=contoso"));
        assert_eq!(interpolate("${MISSING:-x}", &env).as_deref(), Ok("x"));
        assert_eq!(interpolate("${EMPTY:-d}", &env).as_deref(), Ok("d"));
        assert_eq!(
            interpolate("cost $$5 $x", &env).as_deref(),
            Ok("cost $5 $x")
        );
    }

    #[test]
    fn reports_missing_variables() {
        let (message, hint) = interpolate("${NOPE}", &env).expect_err("unset");
        assert!(message.contains("NOPE"));
        assert!(hint.expect("hint").contains("${NOPE:-value}"));
        assert!(interpolate("${bad-name}", &env).is_err());
        assert!(interpolate("${TENANT", &env).is_err());
    }

    #[test]
    fn reads_secret_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").expect("write");
        let text = format!("${{file:{}}}", path.display());
        assert_eq!(interpolate(&text, &env).as_deref(), Ok("s3cret"));
    }

    /// The message and hint of a `${file:...}` that must be refused.
    fn refused(path: &Path) -> (String, String) {
        let text = format!("${{file:{}}}", path.display());
        let (message, hint) = interpolate(&text, &env).expect_err("refused");
        (message, hint.expect("a hint"))
    }

    #[test]
    fn refuses_dev_zero_as_a_secret_file() {
        let (message, hint) = refused(Path::new("/dev/zero"));
        assert!(
            message.contains("/dev/zero is a character device"),
            "{message}"
        );
        assert!(hint.contains("regular file of at most 64KiB"), "{hint}");
    }

    #[test]
    fn refuses_a_fifo_as_a_secret_file_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(path.to_str().expect("UTF-8")).expect("no NUL");
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let (message, _) = refused(&path);
        assert!(
            message.contains("is a FIFO, not a regular file"),
            "{message}"
        );
    }

    #[test]
    fn refuses_an_oversize_secret_file_and_a_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; secret::FILE_LIMIT as usize + 1]).expect("write");
        let (message, _) = refused(&path);
        assert!(
            message.contains("larger than the 64KiB allowed"),
            "{message}"
        );
        let (message, _) = refused(dir.path());
        assert!(message.contains("is a folder"), "{message}");
    }
}
