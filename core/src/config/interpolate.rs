//! `${VAR}`, `${VAR:-default}` and `${file:/path}` inside string values.
//!
//! Interpolation happens after parsing and only inside strings, so an environment value
//! can never add keys or tables to the config.

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
        return std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| (format!("cannot read secret file `{path}`: {e}"), None));
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
}
