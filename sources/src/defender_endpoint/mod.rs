//! `defender_endpoint`: Microsoft Defender for Endpoint alerts (`GET /api/alerts`, with
//! `$expand=evidence`) of one or more tenants, following reference section 3.
//!
//! Each tenant's alerts are polled with `lastUpdateTime ge cursor − overlap and
//! lastUpdateTime lt now − 1m`, and every new version — an `(id, lastUpdateTime)` pair not
//! emitted before — becomes one event. The API documents no order and takes no `$orderby`,
//! so a window is read as sub-windows each answered by a single page (halved while a page
//! would not hold it): `$skip` pages of a collection that changes while it is read may skip
//! an alert. The poll loop, cursors, budget (100 requests a minute *and* 1,500 an hour per
//! tenant and host) and settlement are the shared toolkit's ([`crate::microsoft::poll`]).

mod config;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use reqwest::header::HeaderMap;
use siemflow_core::auth::Cloud;
use siemflow_core::{BoxFuture, SourceConfig, SourceContext};

pub use config::{DefenderEndpointConfig, MAX_PAGE_SIZE, REGIONS};

use crate::microsoft::api::DEFENDER_ENDPOINT;
use crate::microsoft::poll::{Collection, Feed, GraphSource, Order, PollTuning, Wire};
use crate::microsoft::tenants::refuse_issues;
use crate::microsoft::{ApiClient, Window};

/// The application permission the alerts need, as a refusal names it.
const PERMISSION: &str =
    "Alert.Read.All (WindowsDefenderATP application permission, \"Read all alerts\")";

impl SourceConfig for DefenderEndpointConfig {
    fn check(&self) -> Vec<siemflow_core::ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        self.build_with(cx, PollTuning::default())
    }
}

impl DefenderEndpointConfig {
    /// Builds the source with the given timings (tests shorten them).
    pub(crate) fn build_with(
        &self,
        cx: SourceContext,
        tuning: PollTuning,
    ) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        let windows = [
            Window::per_minute(self.requests_per_minute),
            Window::per_hour(self.requests_per_hour),
        ];
        self.build_windowed(cx, tuning, &windows)
    }

    /// Builds the source with its budget's windows given (tests shorten the periods).
    pub(crate) fn build_windowed(
        &self,
        cx: SourceContext,
        tuning: PollTuning,
        windows: &[Window],
    ) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        refuse_issues(&self.issues(), "defender_endpoint")?;
        let region_url = self.region_url();
        let source = GraphSource {
            profile: DEFENDER_ENDPOINT,
            root: Cloud::defender_url,
            audience: Cloud::defender_audience,
            tenants: &self.tenants,
            windows,
            api_url: self.api_url.as_deref().or(region_url.as_deref()),
            request_timeout: self.request_timeout,
            tls: &self.tls,
            start_from: self.start_from,
            overlap: ("overlap", self.overlap),
            poll_interval: self.poll_interval,
            permission: PERMISSION,
        };
        source.build(cx, tuning, |client, root| {
            Ok(vec![self.alerts(client, root)?])
        })
    }

    /// The alerts collection of one tenant.
    fn alerts(&self, client: &Arc<ApiClient>, root: &reqwest::Url) -> anyhow::Result<Feed> {
        let mut url = root
            .join("api/alerts")
            .context("the API root cannot take a path")?;
        if self.expand_evidence {
            url.set_query(Some("$expand=evidence"));
        }
        Ok(Feed {
            client: Arc::clone(client),
            collection: Collection {
                resource: "alerts".to_string(),
                endpoint: "alerts",
                url,
                time_field: "lastUpdateTime",
                versioned: true,
                fixed_filter: None,
                order: Order::Unsorted,
                top: self.page_size,
                headers: HeaderMap::new(),
                wire: Wire::OData,
            },
        })
    }
}
