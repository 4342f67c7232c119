//! What a Microsoft API's refusal means: its error envelope read, and the failure put in
//! one of the classes every pull source acts on (DESIGN "Errors and retries").
//!
//! The envelopes (reference §1.7, §2.3, §3.2, §5.1):
//!
//! - Management Activity: `{"error":{"code":"AF…","message":…}}`; throttling is `AF429`,
//!   documented with HTTP 403; an ASP.NET 401 is `{"Message":…}`.
//! - Graph: `{"error":{"code","message","innerError"|"innererror":{"request-id",…}}}`,
//!   codes in varying case (`BadRequest`, `badRequest`).
//! - Defender for Endpoint: `{"error":{"code","message","target":<correlation id>}}`.
//! - Defender for Cloud Apps: Django REST framework's `{"detail":…}` (also seen: `{"error":
//!   "…"}`); the status carries the meaning.
//!
//! One reader takes all of them; codes compare without case.

use serde::Deserialize;
use serde_json::Value;
use siemflow_core::auth::AuthError;

/// How much of a body that is not an error envelope goes into a message.
const MAX_MESSAGE_CHARS: usize = 300;

/// Codes that mean "throttled", whatever the status (AF429 comes as 403).
const THROTTLE_CODES: &[&str] = &["AF429", "TooManyRequests", "activityLimitReached"];

/// Codes only a change of configuration, permission or licence fixes.
const CONFIG_CODES: &[&str] = &[
    // Management Activity, reference §1.7 "fatal".
    "AF10001",
    "AF20001",
    "AF20002",
    "AF20003",
    "AF20010",
    "AF20011",
    "AF20012",
    "AF20013",
    "AF20020",
    "AF20021",
    "AF20053",
    "AF20054",
    // Graph and Entra (§2.3, §6.1).
    "Authorization_RequestDenied",
    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    "Authorization_IdentityNotFound",
    "InvalidAuthenticationToken",
    "Forbidden",
    "Unauthorized",
    "AccessDenied",
    // Defender for Endpoint (§3.2): the feature is off for the tenant.
    "DisabledFeature",
];

/// What to do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The (tenant, host) quota is spent: every caller of it waits, then tries again.
    Throttled,
    /// Worth trying this request again after a back-off: 5xx, 408, network errors.
    Retry,
    /// Only an operator fixes it (credentials, permission, consent, licence, wrong host):
    /// report it clearly, mark the source unhealthy, try again slowly.
    Config,
    /// This request can never succeed as sent (other 4xx): the caller decides (skip the
    /// item, re-list, give up on the request).
    Data,
}

/// A refusal's envelope, read from any of the APIs' shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// The API's error code (`AF20022`, `TooManyRequests`, `Forbidden`…), when it gave one.
    pub code: Option<String>,
    /// The API's message, or the start of the body when it is not an envelope.
    pub message: String,
    /// Graph's `request-id` or Defender's `target`: what Microsoft support asks for.
    pub request_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Option<Value>,
    #[serde(alias = "Message")]
    message: Option<String>,
    detail: Option<Value>,
}

/// Reads an error body; never fails (a body that is not an envelope becomes the message).
pub fn parse_error_body(body: &[u8]) -> ErrorBody {
    let raw = || {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        siemflow_core::escape::escape_str(&text.chars().take(MAX_MESSAGE_CHARS).collect::<String>())
            .into_owned()
    };
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return ErrorBody {
            message: raw(),
            ..ErrorBody::default()
        };
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
    match envelope.error {
        Some(Value::Object(error)) => {
            let inner = error.get("innerError").or_else(|| error.get("innererror"));
            ErrorBody {
                code: text(error.get("code")).filter(|c| !c.is_empty()),
                message: text(error.get("message")).unwrap_or_else(raw),
                request_id: inner
                    .and_then(|i| text(i.get("request-id")))
                    .or_else(|| text(error.get("target"))),
            }
        }
        Some(Value::String(message)) => ErrorBody {
            message,
            ..ErrorBody::default()
        },
        _ => ErrorBody {
            message: envelope
                .message
                .or_else(|| match envelope.detail {
                    Some(Value::String(detail)) => Some(detail),
                    Some(other) => Some(other.to_string()),
                    None => None,
                })
                .unwrap_or_else(raw),
            ..ErrorBody::default()
        },
    }
}

/// True when `code` is one of `names`, without regard to case.
fn code_in(code: Option<&str>, names: &[&str]) -> bool {
    code.is_some_and(|code| names.iter().any(|name| code.eq_ignore_ascii_case(name)))
}

/// The class of a non-2xx answer by its status and envelope. The code wins over the
/// status: throttling comes as 403 (AF429), internal errors as 400 (AF5xxxx).
pub fn classify(status: u16, body: &ErrorBody) -> ErrorClass {
    let code = body.code.as_deref();
    if status == 429 || code_in(code, THROTTLE_CODES) {
        return ErrorClass::Throttled;
    }
    if code_in(code, CONFIG_CODES) || body.message.contains("AADSTS") {
        return ErrorClass::Config;
    }
    let internal = code.is_some_and(|c| c.len() > 3 && c[..3].eq_ignore_ascii_case("AF5"));
    if status >= 500 || status == 408 || internal {
        return ErrorClass::Retry;
    }
    match status {
        401 | 403 => ErrorClass::Config,
        // A 404 without an envelope is not the API answering about an item: the root is wrong.
        404 if code.is_none() => ErrorClass::Config,
        _ => ErrorClass::Data,
    }
}

/// Why a request did not succeed, after the retries the client does itself.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error the client does not retry (or no longer retries).
    #[error("the {endpoint} request was refused with {} (HTTP {status}): {message}{}", code.as_deref().unwrap_or("no error code"), request_id.as_deref().map(|id| format!(" (request-id {id})")).unwrap_or_default())]
    Refused {
        /// Which operation, as in metrics.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: Option<String>,
        /// The API's message.
        message: String,
        /// Graph's request-id or Defender's target.
        request_id: Option<String>,
        /// What it means.
        class: ErrorClass,
    },
    /// No token could be had.
    #[error("cannot get an access token: {0}")]
    Auth(#[source] AuthError),
    /// Timeouts, 5xx or network errors that outlasted the retries.
    #[error("the {endpoint} request still failed after {attempts} attempts: {last}")]
    Exhausted {
        /// Which operation.
        endpoint: &'static str,
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        last: String,
    },
    /// The answer is bigger than the caller allows.
    #[error("the {endpoint} answer is larger than {limit} bytes{}", size.map(|s| format!(": {s} bytes")).unwrap_or_default())]
    TooLarge {
        /// Which operation.
        endpoint: &'static str,
        /// The limit.
        limit: u64,
        /// The size, when announced.
        size: Option<u64>,
    },
    /// The answer is not what the API documents.
    #[error("the {endpoint} answer is malformed: {detail}")]
    Malformed {
        /// Which operation.
        endpoint: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A URL the API handed out (a next page, a blob) is on another origin than the
    /// configured API root: not requested, so the bearer token never leaves that origin.
    #[error(
        "refused to send the token to `{url}`: the {endpoint} URL is not on the API's origin `{origin}` (scheme, host and port must match)"
    )]
    ForeignOrigin {
        /// Which operation.
        endpoint: &'static str,
        /// The URL refused.
        url: String,
        /// Scheme, host and port of the configured API root.
        origin: String,
    },
    /// The caller is stopping.
    #[error("stopped")]
    Cancelled,
}

impl ApiError {
    /// The API's error code, when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// True when the API's code is one of `codes` (without regard to case).
    pub fn code_is(&self, codes: &[&str]) -> bool {
        code_in(self.code(), codes)
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Refused { class, .. } => *class,
            ApiError::Auth(error) if error.is_permanent() => ErrorClass::Config,
            ApiError::Auth(_) | ApiError::Exhausted { .. } | ApiError::Cancelled => {
                ErrorClass::Retry
            }
            ApiError::TooLarge { .. } | ApiError::Malformed { .. } => ErrorClass::Data,
            // Retrying cannot help; only api_url (or whatever rewrites the API's URLs) can.
            ApiError::ForeignOrigin { .. } => ErrorClass::Config,
        }
    }

    /// True for failures only a config, permission or licence change fixes.
    pub fn is_config(&self) -> bool {
        self.class() == ErrorClass::Config
    }

    /// What an operator should do about a configuration error, naming the application
    /// `permission` the API needs.
    pub fn advice(&self, permission: &str) -> String {
        let missing = format!(
            "the app registration lacks the {permission} application permission, or admin consent for it: add it under API permissions and grant admin consent"
        );
        if let ApiError::Auth(_) = self {
            return "fix the credentials (the message above says how)".into();
        }
        if let ApiError::ForeignOrigin { .. } = self {
            return "the API handed out a URL on another host than the configured API root: if api_url points at a proxy, the proxy must rewrite the URLs in the API's answers to its own origin (or set api_url to the host the API names)".into();
        }
        if self.code_is(&["AF20010", "AF20011", "AF20012", "AF20013"]) {
            return "the tenant id is wrong or does not match the app's tenant: check tenant_id and that the app is consented in that tenant".into();
        }
        if self.code_is(&["AF20020"]) {
            return "a content type name is not valid".into();
        }
        if self.code_is(&["Authentication_RequestFromNonPremiumTenantOrB2CTenant"]) {
            return "the tenant has no Microsoft Entra ID P1 or P2 licence, which this API needs (the portal shows sign-ins without one; the API does not)".into();
        }
        if self.code_is(&["DisabledFeature"]) {
            return "the feature is not enabled for this tenant: check its licence and that it is onboarded".into();
        }
        if self.code_is(&[
            "AF10001",
            "Authorization_RequestDenied",
            "Forbidden",
            "AccessDenied",
        ]) {
            return missing;
        }
        match self.status() {
            Some(401) => format!(
                "the token was refused: check the app's {permission} permission, admin consent, and that `cloud` matches the tenant"
            ),
            Some(403) => missing,
            Some(404) => "the API root is wrong: check api_url and cloud".into(),
            _ => "check the configuration and the app registration".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, body: &str) -> ErrorClass {
        classify(status, &parse_error_body(body.as_bytes()))
    }

    /// Canned answers of each API and what they mean.
    #[test]
    fn the_classification_table() {
        use ErrorClass::*;
        let table: &[(&str, u16, &str, ErrorClass)] = &[
            // Management Activity.
            (
                "o365 AF429 as 403",
                403,
                r#"{"error":{"code":"AF429","message":"Too many requests. Method=GetBlob, PublisherId=x"}}"#,
                Throttled,
            ),
            (
                "o365 AF429 as 429",
                429,
                r#"{"error":{"code":"AF429","message":"Too many requests."}}"#,
                Throttled,
            ),
            (
                "o365 internal as 500",
                500,
                r#"{"error":{"code":"AF50000","message":"An internal error occurred."}}"#,
                Retry,
            ),
            (
                "o365 internal as 400",
                400,
                r#"{"error":{"code":"AF50005","message":"x"}}"#,
                Retry,
            ),
            (
                "o365 no permission",
                401,
                r#"{"error":{"code":"AF10001","message":"The permission set () sent in the request does not include the expected permission."}}"#,
                Config,
            ),
            (
                "o365 tenant mismatch",
                400,
                r#"{"error":{"code":"AF20010","message":"The tenant ID passed in the URL does not match the token."}}"#,
                Config,
            ),
            (
                "o365 no subscription",
                400,
                r#"{"error":{"code":"AF20022","message":"No subscription found for the specified content type"}}"#,
                Data,
            ),
            (
                "o365 missing blob",
                400,
                r#"{"error":{"code":"AF20050","message":"The specified content does not exist."}}"#,
                Data,
            ),
            ("o365 429 without a body", 429, "", Throttled),
            (
                "o365 ASP.NET 401",
                401,
                r#"{"Message":"Authorization has been denied for this request."}"#,
                Config,
            ),
            (
                "o365 html 503",
                503,
                "<html>Service Unavailable</html>",
                Retry,
            ),
            // Graph.
            (
                "graph 429",
                429,
                r#"{"error":{"code":"TooManyRequests","message":"Too many requests.","innerError":{"date":"2026-09-01T10:00:00","request-id":"r1","client-request-id":"r1"}}}"#,
                Throttled,
            ),
            (
                "graph lower-case code",
                400,
                r#"{"error":{"code":"tooManyRequests","message":"x","innererror":{"request-id":"r2"}}}"#,
                Throttled,
            ),
            (
                "graph 503",
                503,
                r#"{"error":{"code":"serviceNotAvailable","message":"Service unavailable"}}"#,
                Retry,
            ),
            (
                "graph 504",
                504,
                r#"{"error":{"code":"UnknownError","message":""}}"#,
                Retry,
            ),
            (
                "graph role missing",
                403,
                r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#,
                Config,
            ),
            (
                "graph forbidden",
                403,
                r#"{"error":{"code":"Forbidden","message":"Missing role permissions on the request."}}"#,
                Config,
            ),
            (
                "entra no premium licence",
                403,
                r#"{"error":{"code":"Authentication_RequestFromNonPremiumTenantOrB2CTenant","message":"Neither tenant is B2C or tenant doesn't have premium license"}}"#,
                Config,
            ),
            (
                "graph bad token",
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token validation failure."}}"#,
                Config,
            ),
            (
                "graph bad request",
                400,
                r#"{"error":{"code":"BadRequest","message":"Invalid filter clause"}}"#,
                Data,
            ),
            (
                "graph expired skiptoken",
                400,
                r#"{"error":{"code":"BadRequest","message":"Skip token has expired. Restart pagination from the first page."}}"#,
                Data,
            ),
            (
                "graph item not found",
                404,
                r#"{"error":{"code":"NotFound","message":"Not found"}}"#,
                Data,
            ),
            // Defender for Endpoint.
            (
                "mde 429",
                429,
                r#"{"error":{"code":"TooManyRequests","message":"Too many requests","target":"6b3c2e14-0f1a-4d2b-9c3e-7a8b9c0d1e2f"}}"#,
                Throttled,
            ),
            (
                "mde disabled feature",
                403,
                r#"{"error":{"code":"DisabledFeature","message":"Feature is disabled","target":"t"}}"#,
                Config,
            ),
            (
                "mde bad filter",
                400,
                r#"{"error":{"code":"InvalidInput","message":"Invalid $filter","target":"t"}}"#,
                Data,
            ),
            (
                "mde internal",
                500,
                r#"{"error":{"code":"InternalServerError","message":"x","target":"t"}}"#,
                Retry,
            ),
            (
                "mde unauthorized",
                401,
                r#"{"error":{"code":"Unauthorized","message":"Invalid token.","target":"t"}}"#,
                Config,
            ),
            (
                "mde missing role",
                403,
                r#"{"error":{"code":"Forbidden","message":"The application does not have any of the required application permissions (Alert.ReadWrite.All, Alert.Read.All) to access the resource.","target":"t"}}"#,
                Config,
            ),
            (
                "mde odata",
                400,
                r#"{"error":{"code":"ODataError","message":"Query option 'Orderby' is not allowed.","target":"t"}}"#,
                Data,
            ),
            (
                "mde bad request",
                400,
                r#"{"error":{"code":"BadRequest","message":"x","target":"t"}}"#,
                Data,
            ),
            (
                "mde alert not found",
                404,
                r#"{"error":{"code":"ResourceNotFound","message":"Alert da1 was not found","target":"t"}}"#,
                Data,
            ),
            (
                "mde unavailable",
                503,
                r#"{"error":{"code":"ServiceUnavailable","message":"x","target":"t"}}"#,
                Retry,
            ),
            // Defender for Cloud Apps.
            (
                "mda 429",
                429,
                r#"{"detail":"Request was throttled. Expected available in 30 seconds."}"#,
                Throttled,
            ),
            ("mda 401", 401, r#"{"detail":"Invalid token."}"#, Config),
            (
                "mda 403",
                403,
                r#"{"detail":"You do not have permission to perform this action."}"#,
                Config,
            ),
            ("mda 400", 400, r#"{"error":"Invalid filter"}"#, Data),
            ("mda 504", 504, "", Retry),
            // Anything: AADSTS anywhere, a bare 404, a 408.
            (
                "aadsts in a 400",
                400,
                r#"{"error":{"code":"BadRequest","message":"AADSTS500011: The resource principal was not found"}}"#,
                Config,
            ),
            (
                "bare 404: wrong root",
                404,
                "<html>Not Found</html>",
                Config,
            ),
            ("408", 408, "", Retry),
        ];
        for (what, status, body, expected) in table {
            assert_eq!(class(*status, body), *expected, "{what}");
        }
    }

    #[test]
    fn every_envelope_gives_its_code_message_and_request_id() {
        let graph = parse_error_body(
            br#"{"error":{"code":"TooManyRequests","message":"slow down","innerError":{"request-id":"r-1"}}}"#,
        );
        assert_eq!(graph.code.as_deref(), Some("TooManyRequests"));
        assert_eq!(graph.message, "slow down");
        assert_eq!(graph.request_id.as_deref(), Some("r-1"));
        let lower = parse_error_body(
            br#"{"error":{"code":"x","message":"m","innererror":{"request-id":"r-2"}}}"#,
        );
        assert_eq!(lower.request_id.as_deref(), Some("r-2"));
        let mde =
            parse_error_body(br#"{"error":{"code":"Forbidden","message":"no","target":"c-9"}}"#);
        assert_eq!(mde.request_id.as_deref(), Some("c-9"));
        let mda = parse_error_body(br#"{"detail":"Invalid token."}"#);
        assert_eq!((mda.code, mda.message.as_str()), (None, "Invalid token."));
        let aspnet =
            parse_error_body(br#"{"Message":"Authorization has been denied for this request."}"#);
        assert!(aspnet.message.contains("denied"));
        let html = parse_error_body(b"<html>\x1b[31mboom</html>");
        assert!(
            html.message.starts_with("<html>") && !html.message.contains('\x1b'),
            "{}",
            html.message
        );
        let long = parse_error_body("x".repeat(10_000).as_bytes());
        assert_eq!(long.message.len(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn errors_tell_their_class_and_advice() {
        let refused = |status, code: &str, class| ApiError::Refused {
            endpoint: "alerts",
            status,
            code: Some(code.into()),
            message: String::new(),
            request_id: None,
            class,
        };
        let denied = refused(403, "Authorization_RequestDenied", ErrorClass::Config);
        assert!(denied.is_config());
        assert!(
            denied
                .advice("SecurityAlert.Read.All")
                .contains("SecurityAlert.Read.All")
        );
        let af = refused(401, "AF10001", ErrorClass::Config);
        assert!(af.advice("ActivityFeed.Read").contains("ActivityFeed.Read"));
        assert!(af.code_is(&["af10001"]), "codes compare without case");
        let licence = refused(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            ErrorClass::Config,
        );
        assert!(licence.advice("AuditLog.Read.All").contains("P1 or P2"));
        assert!(!refused(400, "AF20022", ErrorClass::Data).is_config());
        let permanent = ApiError::Auth(AuthError::Config {
            code: Some(7000215),
            message: "bad secret".into(),
        });
        assert_eq!(permanent.class(), ErrorClass::Config);
        let transient = ApiError::Auth(AuthError::Transient {
            message: "down".into(),
            retry_after: None,
        });
        assert_eq!(transient.class(), ErrorClass::Retry);
    }
}
