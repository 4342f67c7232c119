//! The Office 365 Management Activity API under `/api/v1.0/{tenant}/activity/feed/...`.

pub(crate) mod blobs;
pub(crate) mod content;
pub(crate) mod subscriptions;

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::config::{CONTENT_TYPES, is_guid};
use crate::errors::{AfError, unauthorized};
use crate::faults;
use crate::state::{Sim, lock};
use crate::tokens;
use crate::world::generate::content_type_index;

/// Query parameters; names compare case-insensitively, as the service itself emits
/// `starttime` in some NextPageUri values.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Self {
        let q = uri.query().unwrap_or_default();
        Self(form_urlencoded::parse(q.as_bytes()).into_owned().collect())
    }

    /// The first value of a parameter, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request that passed authentication, authorisation and throttling.
pub(crate) struct Ctx {
    pub(crate) tenant: usize,
    /// The tenant as written in the path.
    pub(crate) tenant_path: String,
    pub(crate) query: Query,
    pub(crate) host: String,
    pub(crate) publisher: Option<String>,
}

impl Ctx {
    /// `contentType`, validated (AF20001 missing, AF20020 unknown).
    pub(crate) fn content_type(&self) -> Result<usize, AfError> {
        let ct = self
            .query
            .get("contentType")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| AfError::bad("AF20001", "Missing parameter: contentType."))?;
        content_type_index(ct).ok_or_else(|| {
            AfError::bad(
                "AF20020",
                format!(
                    "The specified content type is not valid: {ct}. Valid values: {}.",
                    CONTENT_TYPES.join(", ")
                ),
            )
        })
    }

    /// The root URLs in responses point back at the host the client used.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.host)
    }
}

/// Common admission of every Management API request; `Err` is the finished refusal (boxed:
/// responses are large and the happy path should not pay for them).
pub(crate) fn gate(
    sim: &Sim,
    version: &str,
    tenant: &str,
    headers: &HeaderMap,
    uri: &Uri,
    endpoint: &str,
    method: &str,
) -> Result<Ctx, Box<Response>> {
    if version != "v1.0" && version != "v1" {
        return Err(Box::new((StatusCode::NOT_FOUND, "").into_response()));
    }
    let query = Query::parse(uri);
    let publisher = query
        .get("PublisherIdentifier")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    sim.count(tenant, |s| {
        s.requests += 1;
        *s.by_endpoint.entry(endpoint.into()).or_default() += 1;
        match &publisher {
            Some(p) => {
                s.publisher_ids.insert(p.clone());
            }
            None => s.unidentified += 1,
        }
    });
    let refuse = |r: Response| {
        sim.count(tenant, |s| s.unauthorized += 1);
        Box::new(r)
    };
    let Some(token) = tokens::bearer(headers) else {
        return Err(refuse(unauthorized()));
    };
    let info = lock(&sim.tokens).get(&token).cloned();
    let Some(info) = info.filter(|i| i.management && i.expires_ms > sim.now_ms()) else {
        return Err(refuse(unauthorized()));
    };
    if !is_guid(tenant) {
        return Err(refuse(
            AfError::bad(
                "AF20013",
                format!("The tenant ID ({tenant}) in the URL is not a valid GUID."),
            )
            .into_response(),
        ));
    }
    let token_tenant = &sim.world.tenants[info.tenant].id;
    if !token_tenant.eq_ignore_ascii_case(tenant) {
        return Err(refuse(
            AfError::new(
                StatusCode::UNAUTHORIZED,
                "AF20010",
                format!("The tenant ID passed in the URL ({tenant}) does not match the tenant ID passed in the access token ({token_tenant})."),
            )
            .into_response(),
        ));
    }
    if !info.roles.iter().any(|r| r == "ActivityFeed.Read") {
        return Err(refuse(
            AfError::new(
                StatusCode::UNAUTHORIZED,
                "AF10001",
                format!("The permission set ({}) sent in the request does not include the expected permission ActivityFeed.Read.", info.roles.join(",")),
            )
            .into_response(),
        ));
    }
    let admitted = faults::admit(sim, info.tenant, publisher.as_deref(), method)
        .and_then(|()| faults::inject(sim, method, publisher.as_deref()));
    if let Err(e) = admitted {
        sim.count(tenant, |s| {
            if e.code == "AF429" {
                s.throttled += 1;
            } else {
                s.server_errors += 1;
            }
        });
        return Err(Box::new(e.into_response()));
    }
    let host = tokens::request_host(sim, headers);
    Ok(Ctx {
        tenant: info.tenant,
        tenant_path: tenant.to_string(),
        query,
        host,
        publisher,
    })
}

/// A JSON body with the service's content type.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}
