//! OData `$filter`: the subset Graph documents for these collections — comparisons
//! (`eq ne gt ge lt le`) joined by `and`/`or`/`not` and parentheses, `startswith(p,'x')`,
//! and `collection/any(v: v eq 'x')` — type-checked against the collection's filterable
//! properties and evaluated on the records as served.

use serde_json::Value;

use super::time::{self, Ticks};

/// The type of a filterable property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropType {
    DateTime,
    Str,
    /// An enumeration with its members (`unknownFutureValue` and evolvable ones included).
    Enum(&'static [&'static str]),
    Int,
    Bool,
    /// A collection of enum members (any string when empty) usable only inside `any`.
    Strings(&'static [&'static str]),
}

impl PropType {
    fn edm(self) -> &'static str {
        match self {
            PropType::DateTime => "Edm.DateTimeOffset",
            PropType::Str | PropType::Enum(_) => "Edm.String",
            PropType::Int => "Edm.Int32",
            PropType::Bool => "Edm.Boolean",
            PropType::Strings(_) => "Collection(Edm.String)",
        }
    }
}

/// A collection's filterable properties (paths such as `status/errorCode`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schema {
    /// The entity type named in error messages, e.g. `microsoft.graph.security.alert`.
    pub(crate) type_name: &'static str,
    pub(crate) props: &'static [(&'static str, PropType)],
    /// More properties (a beta version's additions).
    pub(crate) more: &'static [(&'static str, PropType)],
}

impl Schema {
    fn prop(&self, path: &str) -> Option<PropType> {
        self.props
            .iter()
            .chain(self.more)
            .find(|(p, _)| p.eq_ignore_ascii_case(path))
            .map(|(_, t)| *t)
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub(crate) fn parse(word: &str) -> Option<Op> {
        Some(match word {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    /// The operator kind as OData error messages name it.
    fn kind(self) -> &'static str {
        match self {
            Op::Eq => "Equal",
            Op::Ne => "NotEqual",
            Op::Gt => "GreaterThan",
            Op::Ge => "GreaterThanOrEqual",
            Op::Lt => "LessThan",
            Op::Le => "LessThanOrEqual",
        }
    }

    /// Whether a value comparing `ord` to the literal satisfies the comparison.
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
        }
    }
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    DateTime(Ticks),
    Number(f64),
    Bool(bool),
    Null,
}

impl Literal {
    fn edm(&self) -> &'static str {
        match self {
            Literal::Str(_) => "Edm.String",
            Literal::DateTime(_) => "Edm.DateTimeOffset",
            Literal::Number(_) => "Edm.Int32",
            Literal::Bool(_) => "Edm.Boolean",
            Literal::Null => "null",
        }
    }
}

/// A parsed, type-checked filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        path: String,
        ty: PropType,
        op: Op,
        value: Literal,
    },
    StartsWith {
        path: String,
        prefix: String,
    },
    /// `path/any(v: v op value)`.
    Any {
        path: String,
        op: Op,
        value: Literal,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    /// A number or DateTimeOffset, still as written.
    Bare(String),
    Open,
    Close,
    Comma,
    Colon,
}

/// Parses `text` against `schema`; the error is the message of Graph's 400.
pub(crate) fn parse(text: &str, schema: &Schema) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("Invalid filter clause: The $filter expression must not be empty.".into());
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        schema,
        text,
    };
    let e = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(p.syntax());
    }
    Ok(e)
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push((Token::Open, start));
                i += 1;
            }
            ')' => {
                out.push((Token::Close, start));
                i += 1;
            }
            ',' => {
                out.push((Token::Comma, start));
                i += 1;
            }
            ':' => {
                out.push((Token::Colon, start));
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!(
                                "Invalid filter clause: There is an unterminated string literal at position {start} in '{text}'."
                            ));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((Token::Str(s), start));
            }
            c if c.is_ascii_digit() || c == '-' => {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || matches!(chars[i], ':' | '.' | '+' | '-'))
                {
                    i += 1;
                }
                out.push((Token::Bare(chars[start..i].iter().collect()), start));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '/' | '.'))
                {
                    i += 1;
                }
                out.push((Token::Ident(chars[start..i].iter().collect()), start));
            }
            _ => {
                return Err(format!(
                    "Invalid filter clause: Syntax error: character '{c}' is not valid at position {start} in '{text}'."
                ));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    schema: &'a Schema,
    text: &'a str,
}

impl Parser<'_> {
    fn syntax(&self) -> String {
        let at = self
            .tokens
            .get(self.pos)
            .map_or(self.text.chars().count(), |(_, p)| *p);
        format!(
            "Invalid filter clause: Syntax error at position {at} in '{}'.",
            self.text
        )
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &Token) -> Result<(), String> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == word)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.pos += 1;
            let e = self.or()?;
            self.expect(&Token::Close)?;
            return Ok(e);
        }
        let Some(Token::Ident(name)) = self.next() else {
            self.pos -= 1;
            return Err(self.syntax());
        };
        if self.peek() == Some(&Token::Open) {
            return self.call(&name);
        }
        let ty = self.property(&name)?;
        let op = self.op()?;
        let value = self.literal()?;
        check(&name, ty, op, &value)?;
        Ok(Expr::Compare {
            path: name,
            ty,
            op,
            value,
        })
    }

    fn property(&self, path: &str) -> Result<PropType, String> {
        self.schema.prop(path).ok_or_else(|| {
            format!(
                "Invalid filter clause: Could not find a property named '{}' on type '{}'.",
                path.split('/').next_back().unwrap_or(path),
                self.schema.type_name
            )
        })
    }

    fn op(&mut self) -> Result<Op, String> {
        match self.next() {
            Some(Token::Ident(w)) => Op::parse(&w).ok_or_else(|| {
                self.pos -= 1;
                self.syntax()
            }),
            _ => {
                self.pos -= 1;
                Err(self.syntax())
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Literal::Str(s)),
            Some(Token::Ident(w)) if w == "true" => Ok(Literal::Bool(true)),
            Some(Token::Ident(w)) if w == "false" => Ok(Literal::Bool(false)),
            Some(Token::Ident(w)) if w == "null" => Ok(Literal::Null),
            Some(Token::Bare(b)) => {
                if let Ok(n) = b.parse::<f64>() {
                    Ok(Literal::Number(n))
                } else if let Some(t) = time::parse(&b) {
                    Ok(Literal::DateTime(t))
                } else {
                    Err(format!(
                        "Invalid filter clause: Unrecognized '{b}' literal at position {} in '{}'.",
                        self.tokens[self.pos - 1].1,
                        self.text
                    ))
                }
            }
            _ => {
                self.pos -= 1;
                Err(self.syntax())
            }
        }
    }

    fn call(&mut self, name: &str) -> Result<Expr, String> {
        self.expect(&Token::Open)?;
        if name.eq_ignore_ascii_case("startswith") {
            let Some(Token::Ident(path)) = self.next() else {
                self.pos -= 1;
                return Err(self.syntax());
            };
            let ty = self.property(&path)?;
            self.expect(&Token::Comma)?;
            let Some(Token::Str(prefix)) = self.next() else {
                self.pos -= 1;
                return Err(self.syntax());
            };
            self.expect(&Token::Close)?;
            if !matches!(ty, PropType::Str | PropType::Enum(_)) {
                return Err(format!(
                    "Invalid filter clause: No function signature for the function with name 'startswith' matches the specified arguments. The function signatures considered are: startswith(Edm.String Nullable=true, Edm.String Nullable=true); the argument is '{}'.",
                    ty.edm()
                ));
            }
            return Ok(Expr::StartsWith { path, prefix });
        }
        if let Some(path) = name.strip_suffix("/any") {
            let ty = self.property(path)?;
            let PropType::Strings(members) = ty else {
                return Err(format!(
                    "Invalid filter clause: The 'any' lambda needs a collection; '{path}' is '{}'.",
                    ty.edm()
                ));
            };
            let Some(Token::Ident(var)) = self.next() else {
                self.pos -= 1;
                return Err(self.syntax());
            };
            self.expect(&Token::Colon)?;
            if self.next() != Some(Token::Ident(var.clone())) {
                self.pos -= 1;
                return Err(self.syntax());
            }
            let op = self.op()?;
            let value = self.literal()?;
            self.expect(&Token::Close)?;
            let item = if members.is_empty() {
                PropType::Str
            } else {
                PropType::Enum(members)
            };
            check(path, item, op, &value)?;
            return Ok(Expr::Any {
                path: path.to_string(),
                op,
                value,
            });
        }
        Err(format!(
            "Invalid filter clause: An unknown function with name '{name}' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed."
        ))
    }
}

/// Rejects comparisons whose operand types do not fit, as the OData parser does.
fn check(path: &str, ty: PropType, op: Op, value: &Literal) -> Result<(), String> {
    let fits = match (ty, value) {
        (_, Literal::Null) => matches!(op, Op::Eq | Op::Ne),
        (PropType::DateTime, Literal::DateTime(_)) => true,
        (PropType::Str, Literal::Str(_)) => true,
        (PropType::Enum(members), Literal::Str(s)) => {
            if !members.iter().any(|m| m.eq_ignore_ascii_case(s)) {
                return Err(format!(
                    "Invalid filter clause: The string '{s}' is not a valid enumeration type constant."
                ));
            }
            true
        }
        (PropType::Int, Literal::Number(_)) => true,
        (PropType::Bool, Literal::Bool(_)) => matches!(op, Op::Eq | Op::Ne),
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "Invalid filter clause: A binary operator with incompatible types was detected. Found operand types '{}' and '{}' for operator kind '{}' on '{path}'.",
            ty.edm(),
            value.edm(),
            op.kind()
        ))
    }
}

/// The value at a `/`-separated path of a record.
fn lookup<'v>(record: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('/').try_fold(record, |v, part| {
        v.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(part))
            .map(|(_, v)| v)
    })
}

fn compare(found: Option<&Value>, op: Op, value: &Literal) -> bool {
    let found = found.filter(|v| !v.is_null());
    match (found, value) {
        (None, Literal::Null) => op == Op::Eq,
        (Some(_), Literal::Null) => op == Op::Ne,
        (None, _) => op == Op::Ne,
        (Some(v), Literal::DateTime(t)) => v
            .as_str()
            .and_then(time::parse)
            .is_some_and(|x| op.holds(x.cmp(t))),
        (Some(v), Literal::Str(s)) => v
            .as_str()
            .is_some_and(|x| op.holds(x.to_ascii_lowercase().cmp(&s.to_ascii_lowercase()))),
        (Some(v), Literal::Number(n)) => v
            .as_f64()
            .and_then(|x| x.partial_cmp(n))
            .is_some_and(|o| op.holds(o)),
        (Some(v), Literal::Bool(b)) => v.as_bool().is_some_and(|x| op.holds(x.cmp(b))),
    }
}

impl Expr {
    /// Whether `record` (as served) satisfies the filter.
    pub(crate) fn matches(&self, record: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.matches(record) && b.matches(record),
            Expr::Or(a, b) => a.matches(record) || b.matches(record),
            Expr::Not(a) => !a.matches(record),
            Expr::Compare {
                path, op, value, ..
            } => compare(lookup(record, path), *op, value),
            Expr::StartsWith { path, prefix } => lookup(record, path)
                .and_then(Value::as_str)
                .is_some_and(|s| {
                    s.to_ascii_lowercase()
                        .starts_with(&prefix.to_ascii_lowercase())
                }),
            Expr::Any { path, op, value } => lookup(record, path)
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|i| compare(Some(i), *op, value))),
        }
    }

    /// Bounds [lo, hi) that every match's `path` timestamp satisfies, from the comparisons
    /// the top-level `and` chain puts on it (None: unbounded). Lets a query skip generating
    /// hours the filter excludes.
    pub(crate) fn time_bounds(&self, path: &str) -> (Option<Ticks>, Option<Ticks>) {
        match self {
            Expr::And(a, b) => {
                let (alo, ahi) = a.time_bounds(path);
                let (blo, bhi) = b.time_bounds(path);
                (alo.max(blo), min_some(ahi, bhi))
            }
            Expr::Compare {
                path: p,
                op,
                value: Literal::DateTime(t),
                ..
            } if p.eq_ignore_ascii_case(path) => match op {
                Op::Ge | Op::Gt => (Some(*t), None),
                Op::Le => (None, Some(t + 1)),
                Op::Lt => (None, Some(*t)),
                Op::Eq => (Some(*t), Some(t + 1)),
                Op::Ne => (None, None),
            },
            _ => (None, None),
        }
    }

    /// Whether the filter is only an `and` chain of the comparisons on `path` that
    /// [`Expr::time_bounds`] renders exactly (`ge`, `lt`, `le`, `eq` a DateTimeOffset): a
    /// record within those bounds matches without being looked at.
    pub(crate) fn only_bounds(&self, path: &str) -> bool {
        match self {
            Expr::And(a, b) => a.only_bounds(path) && b.only_bounds(path),
            Expr::Compare {
                path: p,
                op: Op::Ge | Op::Lt | Op::Le | Op::Eq,
                value: Literal::DateTime(_),
                ..
            } => p.eq_ignore_ascii_case(path),
            _ => false,
        }
    }

    /// The string `v` of a `path/any(t: t eq 'v')` clause in the top-level `and` chain:
    /// every match's `path` holds it. Lets a query generate only the kind of record it asks for.
    pub(crate) fn required_member(&self, path: &str) -> Option<&str> {
        match self {
            Expr::And(a, b) => a.required_member(path).or_else(|| b.required_member(path)),
            Expr::Any {
                path: p,
                op: Op::Eq,
                value: Literal::Str(v),
            } if p.eq_ignore_ascii_case(path) => Some(v),
            _ => None,
        }
    }

    /// Whether the filter mentions the property `path` anywhere.
    pub(crate) fn mentions(&self, path: &str) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.mentions(path) || b.mentions(path),
            Expr::Not(a) => a.mentions(path),
            Expr::Compare { path: p, .. }
            | Expr::StartsWith { path: p, .. }
            | Expr::Any { path: p, .. } => p.eq_ignore_ascii_case(path),
        }
    }
}

fn min_some(a: Option<Ticks>, b: Option<Ticks>) -> Option<Ticks> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: Schema = Schema {
        type_name: "microsoft.graph.test",
        props: &[
            ("createdDateTime", PropType::DateTime),
            ("status", PropType::Enum(&["new", "inProgress", "resolved"])),
            ("assignedTo", PropType::Str),
            ("status/errorCode", PropType::Int),
            ("isInteractive", PropType::Bool),
            (
                "signInEventTypes",
                PropType::Strings(&["interactiveUser", "nonInteractiveUser", "servicePrincipal"]),
            ),
        ],
        more: &[],
    };

    fn record() -> Value {
        json!({
            "createdDateTime": "2026-09-01T10:00:00.5000000Z",
            "status": "inProgress",
            "assignedTo": null,
            "isInteractive": false,
            "signInEventTypes": ["nonInteractiveUser"],
        })
    }

    fn eval(f: &str) -> bool {
        parse(f, &SCHEMA).expect(f).matches(&record())
    }

    #[test]
    fn comparisons_and_logic() {
        assert!(eval("createdDateTime ge 2026-09-01T10:00:00Z"));
        assert!(eval(
            "createdDateTime ge 2026-09-01T10:00:00Z and createdDateTime lt 2026-09-01T10:15:00Z"
        ));
        assert!(!eval("createdDateTime gt 2026-09-01T10:00:00.5Z"));
        assert!(eval("createdDateTime le 2026-09-01T10:00:00.5Z"));
        assert!(eval("status eq 'inprogress' or status eq 'new'"));
        assert!(eval("not (status eq 'new')"));
        assert!(eval("assignedTo eq null"));
        assert!(eval("isInteractive eq false"));
        assert!(eval("signInEventTypes/any(t: t eq 'nonInteractiveUser')"));
        assert!(!eval("signInEventTypes/any(x: x eq 'servicePrincipal')"));
        assert!(eval(
            "startswith(assignedTo,'a') or startsWith(status, 'IN')"
        ));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            "",
            "createdDateTime ge '2026-09-01T10:00:00Z'",
            "createdDateTime ge 2026-09-01T10:00:00",
            "title eq 'x'",
            "status eq 'bogus'",
            "status eq",
            "status eq 'new' and",
            "(status eq 'new'",
            "status equals 'new'",
            "status eq 'new",
            "contains(status,'n')",
            "isInteractive gt true",
            "signInEventTypes/any(t: u eq 'x')",
            "signInEventTypes/any(t: t eq 'robot')",
            "createdDateTime ge 2026-09-01T10:00:00Z;",
        ] {
            assert!(parse(bad, &SCHEMA).is_err(), "{bad:?} should be refused");
        }
        let e = parse("createdDateTime ge '2026'", &SCHEMA).expect_err("type");
        assert!(
            e.contains("Edm.DateTimeOffset") && e.contains("GreaterThanOrEqual"),
            "{e}"
        );
    }

    #[test]
    fn time_bounds_follow_the_and_chain() {
        let t = |s: &str| time::parse(s).expect("time");
        let e = parse(
            "createdDateTime ge 2026-09-01T10:00:00Z and status eq 'new' and createdDateTime lt 2026-09-01T11:00:00Z",
            &SCHEMA,
        )
        .expect("parses");
        assert_eq!(
            e.time_bounds("createdDateTime"),
            (
                Some(t("2026-09-01T10:00:00Z")),
                Some(t("2026-09-01T11:00:00Z"))
            )
        );
        let or = parse(
            "createdDateTime ge 2026-09-01T10:00:00Z or status eq 'new'",
            &SCHEMA,
        )
        .expect("parses");
        assert_eq!(or.time_bounds("createdDateTime"), (None, None));
        assert!(or.mentions("status") && !or.mentions("assignedTo"));
    }
}
