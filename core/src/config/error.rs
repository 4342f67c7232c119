//! Configuration errors that say where, what, and what would be valid.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file it is in, when it is in one.
    pub file: Option<PathBuf>,
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// The component, as `kind.id` (e.g. `sinks.out`).
    pub component: Option<String>,
    /// The key at fault, as a dotted path inside the component.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What would be valid.
    pub hint: Option<String>,
    /// A warning: reported, but the pipeline runs.
    pub warning: bool,
}

impl ConfigError {
    /// An error with a message and nothing else yet.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: 0,
            column: 0,
            component: None,
            key: None,
            message: message.into(),
            hint: None,
            warning: false,
        }
    }

    /// Makes it a warning.
    pub fn warning(mut self) -> Self {
        self.warning = true;
        self
    }

    /// Places the error at a byte span of a file.
    pub fn at(mut self, file: &SourceFile, span: Range<usize>) -> Self {
        let (line, column) = file.line_column(span.start);
        self.file = Some(file.path.clone());
        self.line = line;
        self.column = column;
        self
    }

    /// Names the component.
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = Some(component.into());
        self
    }

    /// Names the key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if !key.is_empty() && key != "." {
            self.key = Some(key);
        }
        self
    }

    /// Says what would be valid.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint only when there is one.
    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if self.line > 0 {
                write!(f, ":{}:{}", self.line, self.column)?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", if self.warning { "warning" } else { "error" })?;
        match (&self.component, &self.key) {
            (Some(c), Some(k)) => write!(f, " in [{c}] at `{k}`")?,
            (Some(c), None) => write!(f, " in [{c}]")?,
            (None, Some(k)) => write!(f, " at `{k}`")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(f, "{error}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} configuration error{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigErrors {}

/// A config file's text, kept to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl SourceFile {
    /// Wraps a file's path and text.
    pub fn new(path: impl AsRef<Path>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.as_ref().to_path_buf(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

/// The candidate closest to `wanted`, if any is close enough to be a likely typo.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wanted, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A hint naming the closest candidate and listing all of them.
pub fn suggest(wanted: &str, candidates: &[&str], what: &str) -> String {
    let list = candidates
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(wanted, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? {what}: {list}"),
        None if candidates.is_empty() => format!("there are no {what}"),
        None => format!("{what}: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let file = SourceFile::new("p.toml", "a = 1\nbé = 2\n");
        assert_eq!(file.line_column(0), (1, 1));
        assert_eq!(file.line_column(6), (2, 1));
        assert_eq!(file.line_column(9), (2, 3));
    }

    #[test]
    fn suggests_the_closest() {
        let hint = suggest(
            "blackhol",
            &["blackhole", "console", "file"],
            "known sink types",
        );
        assert!(hint.starts_with("did you mean `blackhole`?"), "{hint}");
    }
}
