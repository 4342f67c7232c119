//! VRL compilation and execution shared by `filter`, `route` and `remap`.

use vrl::compiler::runtime::{Runtime, RuntimeResult, Terminate};
use vrl::compiler::{CompileConfig, Program, TargetValue, TimeZone, TypeState};
use vrl::diagnostic::{DiagnosticList, Formatter, Note};
use vrl::value::{ObjectMap, Secrets, Value};

/// UTC, the zone conditions run in and `remap`'s default.
pub fn utc() -> TimeZone {
    // "UTC" is always in the tz database; `Local` is only a formal fallback.
    TimeZone::parse("UTC").unwrap_or_default()
}

/// A VRL program that compiled, with its warnings rendered as text.
pub struct Compiled {
    /// The program, ready to run.
    pub program: Program,
    /// Compiler warnings as `vrl` prints them; empty when there are none.
    pub warnings: String,
}

/// Whether the program may write to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Conditions only look at the event, so each evaluation can run on the event in place.
    ReadOnly,
    /// Remap programs rewrite the event.
    ReadWrite,
}

/// Compiles a program against the full standard library; the error is the rendered
/// diagnostics (line, column and a caret under the fault), located as `origin:line:column`.
pub fn compile(source: &str, origin: &str, access: Access) -> Result<Compiled, String> {
    let functions = vrl::stdlib::all();
    let mut config = CompileConfig::default();
    if access == Access::ReadOnly {
        config.set_read_only();
    }
    match vrl::compiler::compile_with_state(source, &functions, &TypeState::default(), config) {
        Ok(result) => Ok(Compiled {
            program: result.program,
            warnings: render(source, origin, result.warnings),
        }),
        Err(diagnostics) => Err(render(source, origin, diagnostics)),
    }
}

fn render(source: &str, origin: &str, diagnostics: DiagnosticList) -> String {
    // VRL renders an unnamed source as `┌─ :1:8`; naming it tells which option or file.
    Formatter::new(source, diagnostics)
        .to_string()
        .trim()
        .replace("┌─ :", &format!("┌─ {origin}:"))
}

/// The message of a runtime failure: the program's own `abort`/error text where it gave one.
pub fn failure_message(terminate: &Terminate) -> String {
    match terminate {
        Terminate::Interrupted => terminate.to_string(),
        Terminate::Abort(error) | Terminate::Error(error) => {
            use vrl::diagnostic::DiagnosticMessage;
            // Vector reports the last user-supplied message when there is one.
            error
                .notes()
                .into_iter()
                .rev()
                .find_map(|note| match note {
                    Note::UserErrorMessage(message) => Some(message),
                    _ => None,
                })
                .unwrap_or_else(|| error.to_string())
        }
    }
}

/// One compiled program with the runtime it reuses for every event.
pub struct VrlRunner {
    program: Program,
    runtime: Runtime,
    timezone: TimeZone,
}

impl VrlRunner {
    /// A runner for this program, resolving timestamps without a zone in `timezone`.
    pub fn new(program: Program, timezone: TimeZone) -> Self {
        VrlRunner {
            program,
            runtime: Runtime::default(),
            timezone,
        }
    }

    /// Runs the program on `value` in place and returns what the program resolved to.
    ///
    /// On failure `value` holds whatever the program had written before it stopped.
    pub fn run(&mut self, value: &mut Value) -> RuntimeResult {
        // Moving the value in and out of the target avoids copying the event.
        let mut target = TargetValue {
            value: std::mem::replace(value, Value::Null),
            metadata: Value::Object(ObjectMap::new()),
            secrets: Secrets::default(),
        };
        let result = self
            .runtime
            .resolve(&mut target, &self.program, &self.timezone);
        self.runtime.clear();
        *value = target.value;
        result
    }
}
