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
use chrono::TimeDelta;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use siemflow_core::{BoxFuture, SourceConfig, SourceContext};

pub use config::{GraphSecurityConfig, RESOURCES};

use crate::microsoft::api::GRAPH_SECURITY;
use crate::microsoft::poll::{
    self, Collection, Feed, GraphAccess, Order, PollSettings, PollTuning,
};
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
        if let Some(issue) = self.issues().first() {
            anyhow::bail!(
                "{}: {}",
                issue.key.as_deref().unwrap_or("graph_security"),
                issue.message
            );
        }
        let windows = [Window::per_minute(self.requests_per_minute)];
        let access = GraphAccess {
            profile: GRAPH_SECURITY,
            windows: &windows,
            api_url: self.api_url.as_deref(),
            request_timeout: self.request_timeout,
            tls: &self.tls,
            retries: tuning.retries,
        };
        let clients = poll::graph_clients(&self.tenants, &access, &cx.component.metrics.labels)?;
        let mut feeds = Vec::new();
        for (client, root) in &clients {
            for resource in &self.resources {
                feeds.push(feed(client, root, resource)?);
            }
        }
        let settings = PollSettings {
            start_from: TimeDelta::from_std(self.start_from)
                .context("start_from is out of range")?,
            poll_interval: self.poll_interval,
            permission: "SecurityAlert.Read.All (alerts) and SecurityIncident.Read.All (incidents), Microsoft Graph application permissions",
            tuning,
        };
        let overlap = TimeDelta::from_std(self.overlap).context("overlap is out of range")?;
        Ok(Box::pin(poll::run(settings, overlap, feeds, cx)))
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
        },
    })
}
