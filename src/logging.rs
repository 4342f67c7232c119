//! Log setup: tracing to stderr, text or JSON.
//!
//! Log fields and messages carry text from outside: file names, API answers, event data.
//! The text format writes every field value and message through `core::escape`, so a file
//! named `x\n2026-… INFO forged` cannot add a line to the log and an ANSI sequence in a
//! name cannot reach the terminal. JSON escapes C0 controls itself; DEL, C1 (NEL, the
//! 8-bit CSI) and U+2028/U+2029 are valid raw in JSON, so the JSON format's lines go
//! through the same rule (as `\uHHHH`, the same JSON value). Colours
//! are used only when stderr is a terminal and `NO_COLOR` is unset, so a log file or a
//! pipe gets no escape sequence of ours either.

use std::fmt::{self, Write as _};
use std::io::IsTerminal as _;

use siemflow_core::escape::{escape_str, push_escaped};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

use crate::cli::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(colours())
            .fmt_fields(EscapedFields)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(|| EscapedLines(std::io::stderr()))
            .try_init(),
    };
}

/// Writes whole log lines with `core::escape`'s rule applied to everything but the final
/// newline. The formatter hands over one complete line per write, so no character is
/// split between two writes.
struct EscapedLines<W>(W);

impl<W: std::io::Write> std::io::Write for EscapedLines<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let (body, newline) = match line.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (line, false),
        };
        let mut out = Vec::with_capacity(line.len());
        push_escaped(&mut out, body);
        if newline {
            out.push(b'\n');
        }
        self.0.write_all(&out)?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Colours for a person at a terminal who did not ask for none (<https://no-color.org>).
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The text format's fields: `message` alone, the others `name=value`, each value escaped.
struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        // tracing-log's metadata of `log` records; the formatter shows it elsewhere.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = match name {
            "message" => self.writer.write_str(separator),
            name => write!(self.writer, "{separator}{}=", name.trim_start_matches("r#")),
        }
        .and_then(|()| Escaping(&mut self.writer).write_fmt(value));
    }
}

/// Passes what is written on to the log line with `core::escape`'s rule applied. The rule
/// is per character and every piece is whole characters, so each piece is escaped alone:
/// a piece with nothing to escape (nearly all) goes on as it is, without a copy.
struct Escaping<'a, 'writer>(&'a mut Writer<'writer>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.write_str(&escape_str(text))
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // A message is text; other strings are quoted, as tracing's default format does.
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;
    use siemflow_core::escape::is_line_unsafe;

    use super::*;

    /// What a text-format subscriber writes while `emit` runs.
    fn text_log(emit: impl FnOnce()) -> String {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || SharedBuffer(sink.clone()))
            .with_target(false)
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = written.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("the log is UTF-8")
    }

    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_log_lines_escape_what_json_leaves_raw_and_keep_their_value() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || EscapedLines(SharedBuffer(sink.clone())))
            .finish();
        let name = "a\u{85}b\u{2028}c\u{7f}d\u{9b}2J\u{1b}e\nf";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(name, "following file");
        });
        let bytes = written.lock().map(|b| b.clone()).unwrap_or_default();
        let log = String::from_utf8(bytes).expect("the log is UTF-8");
        assert_eq!(log.lines().count(), 1, "{log:?}");
        assert!(
            !log.trim_end_matches('\n').chars().any(is_line_unsafe),
            "{log:?}"
        );
        let line: serde_json::Value = serde_json::from_str(log.trim_end()).expect("JSON");
        assert_eq!(line["name"], name, "the same value once parsed");
    }

    #[test]
    fn a_hostile_file_name_cannot_forge_a_line_or_reach_the_terminal() {
        let path = std::path::PathBuf::from(
            "/var/log/x\n2026-01-01T00:00:00.000000Z  INFO forged: admin logged in \u{1b}[2J\u{85}.log",
        );
        let log = text_log(|| {
            tracing::info!(path = %path.display(), offset = 0, "following file");
            tracing::warn!(name = "q\"\n", "cannot open {}", path.display());
        });
        assert_eq!(log.lines().count(), 2, "{log}");
        assert!(!log.contains('\u{1b}'), "{log:?}");
        assert!(
            log.lines().next().is_some_and(|l| l.contains(
                "following file path=/var/log/x\\n2026-01-01T00:00:00.000000Z  INFO forged: admin logged in \\u001b[2J\\u0085.log offset=0"
            )),
            "{log}"
        );
        assert!(log.contains("name=\"q\\\"\\n\""), "{log}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any message and field text: one line per event, nothing unsafe in it.
        #[test]
        fn every_event_is_one_safe_line(
            message in any::<String>(),
            shown in any::<String>(),
            text in any::<String>(),
        ) {
            let log = text_log(|| {
                tracing::info!(shown = %shown, quoted = text.as_str(), "{message}");
                tracing::error!(error = %shown, "{}", text);
            });
            prop_assert_eq!(log.matches('\n').count(), 2, "{:?}", log);
            prop_assert!(!log.chars().any(|c| c != '\n' && is_line_unsafe(c)), "{:?}", log);
        }
    }
}
