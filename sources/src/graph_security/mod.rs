//! `graph_security`: Microsoft Graph security alerts (`alerts_v2`) and incidents of one or
//! more tenants, following reference section 2.
//!
//! Each (tenant, resource) is polled with `lastUpdateDateTime ge cursor − overlap`,
//! sorted ascending, and every new version — an `(id, lastUpdateDateTime)` pair not
//! emitted before — becomes one event. The poll loop, cursors and settlement are the
//! shared toolkit's ([`crate::microsoft::poll`]); this module says which collections to
//! read and how.

mod config;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use siemflow_core::auth::Cloud;
use siemflow_core::{BoxFuture, SourceConfig, SourceContext};

pub use config::{GraphSecurityConfig, RESOURCES};

use crate::microsoft::api::GRAPH_SECURITY;
use crate::microsoft::poll::{Collection, Feed, GraphSource, Order, PollTuning, Wire};
use crate::microsoft::tenants::refuse_issues;
use crate::microsoft::{ApiClient, Window};

/// Alerts per page: the largest `$top` real clients use (§2.2).
pub const ALERTS_PAGE: u32 = 2000;

/// Incidents per page: the largest `$top` real clients use (§2.2).
pub const INCIDENTS_PAGE: u32 = 50;

/// Without it, enum members added since v1.0 read `unknownFutureValue` (§2.2).
const PREFER_ALL_ENUMS: &str = "include-unknown-enum-members";

impl SourceConfig for GraphSecurityConfig {
    fn check(&self) -> Vec<siemflow_core::ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        self.build_with(cx, PollTuning::default())
    }
}

impl GraphSecurityConfig {
    /// Builds the source with the given timings (tests shorten them).
    pub(crate) fn build_with(
        &self,
        cx: SourceContext,
        tuning: PollTuning,
    ) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        refuse_issues(&self.issues(), "graph_security")?;
        let source = GraphSource {
            profile: GRAPH_SECURITY,
            root: Cloud::graph_url,
            audience: Cloud::graph_url,
            tenants: &self.tenants,
            windows: &[Window::per_minute(self.requests_per_minute)],
            api_url: self.api_url.as_deref(),
            request_timeout: self.request_timeout,
            tls: &self.tls,
            start_from: self.start_from,
            overlap: ("overlap", self.overlap),
            poll_interval: self.poll_interval,
            permission: "SecurityAlert.Read.All (alerts) and SecurityIncident.Read.All (incidents), Microsoft Graph application permissions",
        };
        source.build(cx, tuning, |client, root| {
            self.resources
                .iter()
                .map(|resource| feed(client, root, resource))
                .collect()
        })
    }
}

/// The collection behind a `resources` name.
fn feed(client: &Arc<ApiClient>, root: &reqwest::Url, resource: &str) -> anyhow::Result<Feed> {
    let (path, endpoint, top) = match resource {
        "alerts" => ("v1.0/security/alerts_v2", "alerts_v2", ALERTS_PAGE),
        _ => ("v1.0/security/incidents", "incidents", INCIDENTS_PAGE),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("prefer"),
        HeaderValue::from_static(PREFER_ALL_ENUMS),
    );
    Ok(Feed {
        client: Arc::clone(client),
        collection: Collection {
            resource: resource.to_string(),
            endpoint,
            url: root
                .join(path)
                .context("the Graph root cannot take a path")?,
            time_field: "lastUpdateDateTime",
            versioned: true,
            fixed_filter: None,
            order: Order::Ascending,
            top,
            headers,
            wire: Wire::OData,
        },
    })
}
