//! Entra ID token endpoints (v1 and v2), client-credentials grant with a secret or a signed
//! certificate assertion (private_key_jwt).

use std::sync::Arc;

use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::errors::AadError;
use crate::state::{App, Sim, TokenInfo, lock};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Audiences of the Management Activity API in every cloud.
const MANAGEMENT_AUDIENCES: [&str; 5] = [
    "https://manage.office.com",
    "https://manage-gcc.office.com",
    "https://manage.office365.us",
    "https://manage.protection.apps.mil",
    "https://manage.office365.cn",
];
/// Other resources a tenant knows (tokens are issued, but the Management API refuses them).
/// The Azure Monitor audiences serve the Logs Ingestion simulator.
const OTHER_RESOURCES: [&str; 12] = [
    "https://monitor.azure.com",
    "https://monitor.azure.us",
    "https://monitor.azure.cn",
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
    "https://api-gcc.securitycenter.microsoft.us",
    "https://api-gov.securitycenter.microsoft.us",
    "05a65629-4c1b-48c1-a78b-804c4abdd4af",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The token endpoints (v2 and v1) on their own, for simulators that need Entra tokens.
pub(crate) fn router(sim: Arc<Sim>) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route("/{tenant}/oauth2/token", post(token_v1))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(sim)
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token_v2(
    State(sim): State<Arc<Sim>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&sim, &tenant, Version::V2, &headers, &body)
}

/// `POST /{tenant}/oauth2/token` (v1: `resource` instead of `scope`, string-typed numbers).
pub(crate) async fn token_v1(
    State(sim): State<Arc<Sim>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&sim, &tenant, Version::V1, &headers, &body)
}

fn handle(sim: &Sim, tenant: &str, version: Version, headers: &HeaderMap, body: &[u8]) -> Response {
    sim.count(tenant, |s| {
        s.requests += 1;
        *s.by_endpoint.entry("token".into()).or_default() += 1;
    });
    match issue(sim, tenant, version, headers, body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(tenant, error = %e, "token request refused");
            e.into_response()
        }
    }
}

struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    fn require(&self, name: &str) -> Result<&str, AadError> {
        self.get(name).ok_or_else(|| missing(name))
    }
}

fn missing(name: &str) -> AadError {
    AadError::bad(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn issue(
    sim: &Sim,
    tenant: &str,
    version: Version,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AadError> {
    let profile = sim.world.tenant_by_id_or_domain(tenant).ok_or_else(|| {
        AadError::bad(
            "invalid_request",
            90002,
            format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        )
    })?;
    let tenant_idx = sim
        .world
        .tenants
        .iter()
        .position(|t| t.id == profile.id)
        .unwrap_or_default();
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    // Entra only reads form bodies: anything else looks like a request without parameters.
    let form = if form_type {
        Form(form_urlencoded::parse(body).into_owned().collect())
    } else {
        Form(Vec::new())
    };
    let grant = form.require("grant_type")?;
    if grant != "client_credentials" {
        return Err(AadError::bad(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = form.require("client_id")?.to_ascii_lowercase();
    let app = sim
        .apps
        .iter()
        .find(|a| a.tenant == tenant_idx && a.client_id == client_id)
        .ok_or_else(|| {
            AadError::bad(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                    profile.domain
                ),
            )
        })?;
    let host = request_host(sim, headers);
    let resource = match version {
        Version::V2 => {
            let scope = form.require("scope")?;
            let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
            let [one] = scopes[..] else {
                return Err(AadError::bad(
                    "invalid_scope",
                    70011,
                    format!(
                        "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                    ),
                ));
            };
            let Some(res) = one.strip_suffix("/.default") else {
                return Err(AadError::bad(
                    "invalid_scope",
                    1002012,
                    format!(
                        "The provided value for scope {one} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                ));
            };
            res.trim_end_matches('/').to_string()
        }
        Version::V1 => form.require("resource")?.trim_end_matches('/').to_string(),
    };
    let management = MANAGEMENT_AUDIENCES
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&resource))
        || resource.eq_ignore_ascii_case(&format!("http://{host}"))
        || resource.eq_ignore_ascii_case(&format!("http://{}", sim.local_addr));
    if !management
        && !OTHER_RESOURCES
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&resource))
    {
        return Err(AadError::bad(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                profile.domain
            ),
        ));
    }
    let now_ms = sim.now_ms();
    let secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let cert_auth = match (secret, assertion) {
        (Some(_), Some(_)) => {
            return Err(AadError::bad(
                "invalid_request",
                90014,
                "Only one of 'client_secret' and 'client_assertion' may be present.",
            ));
        }
        (None, None) => {
            return Err(AadError::client(
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        }
        (Some(s), None) => {
            if app.secret.as_deref() != Some(s) {
                return Err(AadError::client(
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                        app.client_id
                    ),
                ));
            }
            false
        }
        (None, Some(jwt)) => {
            let kind = form.require("client_assertion_type")?;
            if kind != JWT_BEARER {
                return Err(AadError::bad(
                    "invalid_request",
                    50027,
                    format!("client_assertion_type '{kind}' is not supported; use '{JWT_BEARER}'."),
                ));
            }
            let path = match version {
                Version::V2 => "oauth2/v2.0/token",
                Version::V1 => "oauth2/token",
            };
            let audiences = [
                format!("http://{host}/{tenant}/{path}"),
                format!("http://{}/{tenant}/{path}", sim.local_addr),
            ];
            verify_assertion(app, jwt, &audiences, now_ms)?;
            true
        }
    };
    let lifetime = sim.cfg.token_lifetime.as_secs();
    let exp_ms = now_ms + (lifetime as i64) * 1000;
    let roles = roles_for(&resource, management, &app.roles);
    let token = make_token(
        &profile.id,
        &app.client_id,
        &resource,
        &roles,
        now_ms,
        exp_ms,
        cert_auth,
    );
    {
        let mut tokens = lock(&sim.tokens);
        if tokens.len() > 10_000 {
            tokens.retain(|_, t| t.expires_ms > now_ms);
        }
        tokens.insert(
            token.clone(),
            TokenInfo {
                tenant: tenant_idx,
                roles,
                management,
                audience: resource.clone(),
                client_id: app.client_id.clone(),
                expires_ms: exp_ms,
            },
        );
    }
    let now_s = now_ms / 1000;
    let body = match version {
        Version::V2 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
        Version::V1 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "expires_on": (now_s + lifetime as i64).to_string(),
            "not_before": now_s.to_string(),
            "resource": resource,
            "access_token": token,
        }),
    };
    let mut r = body.to_string().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    Ok(r)
}

/// The app roles a token for `resource` carries: as in Entra, only the resource's own —
/// `ActivityFeed.*` for the Management API, `Investigation.*` for Defender for Cloud Apps,
/// `Alert.*` for Defender for Endpoint, the others for Graph; every role elsewhere.
fn roles_for(resource: &str, management: bool, roles: &[String]) -> Vec<String> {
    let graph = resource.contains("graph.microsoft");
    let cloud_apps = resource
        .trim_start_matches("api://")
        .eq_ignore_ascii_case(crate::defender_cloud_apps::CLOUD_APPS_AUDIENCE);
    let endpoint = resource.contains("securitycenter") || resource.contains("api.security.");
    roles
        .iter()
        .filter(|r| {
            let feed = r.starts_with("ActivityFeed.");
            let investigation = r.starts_with("Investigation.");
            let alert = r.starts_with("Alert.");
            if management {
                feed
            } else if cloud_apps {
                investigation
            } else if endpoint {
                alert
            } else if graph {
                !feed && !investigation && !alert
            } else {
                true
            }
        })
        .cloned()
        .collect()
}

/// The bearer token of an `Authorization` header (scheme case-insensitive), if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The host the client addressed (the `Host` header, else the listening address): for the
/// exact token URL an assertion must name, and the links a response carries.
pub(crate) fn request_host(sim: &Sim, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| sim.local_addr.to_string())
}

/// A JWT-shaped opaque token: clients may read its claims, only this simulator can honour it.
fn make_token(
    tid: &str,
    appid: &str,
    aud: &str,
    roles: &[String],
    now_ms: i64,
    exp_ms: i64,
    cert: bool,
) -> String {
    let header =
        json!({"typ": "JWT", "alg": "RS256", "x5t": "c2ltdWxhdG9y", "kid": "c2ltdWxhdG9y"});
    let claims = json!({
        "aud": aud,
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now_ms / 1000,
        "nbf": now_ms / 1000,
        "exp": exp_ms / 1000,
        "appid": appid,
        "appidacr": if cert { "2" } else { "1" },
        "idp": format!("https://sts.windows.net/{tid}/"),
        "oid": uuid::Uuid::new_v4().to_string(),
        "roles": roles,
        "sub": appid,
        "tid": tid,
        "ver": "1.0",
    });
    let sig: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(sig)
    )
}

fn malformed(why: &str) -> AadError {
    AadError::client(50027, format!("JWT token is invalid or malformed: {why}."))
}

/// Verifies a client assertion strictly: signature by a registered certificate named by
/// thumbprint, exact audience, issuer and subject equal to the client id, valid time range.
fn verify_assertion(
    app: &App,
    jwt: &str,
    audiences: &[String],
    now_ms: i64,
) -> Result<(), AadError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err(malformed("a JWT has three dot-separated parts"));
    };
    let decode = |p: &str, what: &str| {
        B64.decode(p)
            .map_err(|_| malformed(&format!("{what} is not base64url")))
    };
    let header: Value = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|_| malformed("header is not JSON"))?;
    let claims: Value = serde_json::from_slice(&decode(c, "payload")?)
        .map_err(|_| malformed("payload is not JSON"))?;
    let signature = decode(s, "signature")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (params, thumb_field): (&'static aws_lc_rs::signature::RsaParameters, &str) = match alg {
        "RS256" => (&RSA_PKCS1_2048_8192_SHA256, "x5t"),
        "PS256" => (&RSA_PSS_2048_8192_SHA256, "x5t#S256"),
        other => {
            return Err(AadError::client(
                5002738,
                format!(
                    "Invalid JWT token. '{other}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256, PS256'."
                ),
            ));
        }
    };
    let unknown_key = || {
        AadError::client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                header
                    .get(thumb_field)
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                app.client_id
            ),
        )
    };
    let thumb = header
        .get(thumb_field)
        .and_then(Value::as_str)
        .and_then(|t| B64.decode(t).ok())
        .ok_or_else(unknown_key)?;
    let cert = app
        .certs
        .iter()
        .find(|c| {
            if alg == "RS256" {
                c.sha1 == thumb
            } else {
                c.sha256 == thumb
            }
        })
        .ok_or_else(unknown_key)?;
    let signed = format!("{h}.{c}");
    UnparsedPublicKey::new(params, &cert.rsa_public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| {
            AadError::client(
                700027,
                "Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value.]",
            )
        })?;
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !audiences.iter().any(|a| a == aud) {
        return Err(AadError::client(
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials. Expected '{}', got '{aud}'.",
                audiences[0]
            ),
        ));
    }
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !iss.eq_ignore_ascii_case(&app.client_id) || !sub.eq_ignore_ascii_case(&app.client_id) {
        return Err(AadError::client(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials.",
        ));
    }
    let now_s = now_ms / 1000;
    let exp = claims.get("exp").and_then(Value::as_i64);
    let nbf = claims.get("nbf").and_then(Value::as_i64);
    let in_range = exp.is_some_and(|e| e > now_s) && nbf.is_none_or(|n| n <= now_s);
    if !in_range {
        return Err(AadError::client(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {now_s}, assertion valid from {}, expiry time of assertion {}.",
                nbf.map(|n| n.to_string()).unwrap_or_default(),
                exp.map(|n| n.to_string()).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}
