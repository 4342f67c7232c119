//! `defender_cloud_apps`: Microsoft Defender for Cloud Apps activities and alerts of one or
//! more tenants through each tenant portal's REST API, following reference section 5.1.
//!
//! - Activities are read by `created` (ingest time) ascending, from `cursor − overlap`:
//!   `created` only grows, so activities ingested while a walk runs come after everything
//!   it read, and the event time (`date`), which lags, never decides what is read. The
//!   cursor stops at the walk's start, so one indexed late (within `overlap` of its
//!   `created`) behind a walk is read by the next. Each `_id` is emitted once.
//! - Alerts are read by `date` (raise time) ascending from `cursor − alert_reread_window`:
//!   every poll reads again the alerts raised within the window, so a state change (read,
//!   resolved, dismissed) is emitted as a new version, `(_id, statusValue/resolutionStatusValue)`.
//!
//! Both go through the shared toolkit: POST-body keyset paging
//! ([`crate::microsoft::cloud_apps`]), the poll loop with its cursors and ordered settlement
//! ([`crate::microsoft::poll`]), one client per tenant with the 30-a-minute budget.

mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use chrono::TimeDelta;
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Map;
use siemflow_core::auth::TokenProvider;
use siemflow_core::{BoxFuture, SourceConfig, SourceContext};

pub use config::{CloudAppsConfig, CloudAppsTenant, RESOURCES};

use crate::microsoft::api::DEFENDER_CLOUD_APPS;
use crate::microsoft::client::Authorization;
use crate::microsoft::cloud_apps::{CloudAppsQuery, MAX_LIMIT};
use crate::microsoft::poll::{self, Collection, Feed, Order, PollSettings, PollTuning, Wire};
use crate::microsoft::tenants::refuse_issues;
use crate::microsoft::{ApiClient, ClientSettings, Window};

/// The "Microsoft Cloud App Security" API's application id: the token scope's resource.
pub const AUDIENCE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af";

/// The state fields whose change makes a new alert version.
const ALERT_STATE: &[&str] = &["statusValue", "resolutionStatusValue"];

/// What a refusal for lack of permission asks for.
const PERMISSION: &str = "Investigation.read (Microsoft Cloud App Security application permission), or an API token of an admin who may read activities and alerts";

impl SourceConfig for CloudAppsConfig {
    fn check(&self) -> Vec<siemflow_core::ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        self.build_with(cx, PollTuning::default())
    }
}

impl CloudAppsConfig {
    /// Builds the source with the given timings (tests shorten them).
    pub(crate) fn build_with(
        &self,
        cx: SourceContext,
        tuning: PollTuning,
    ) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        refuse_issues(&self.issues(), "defender_cloud_apps")?;
        let http = siemflow_core::http::client(&self.tls, self.request_timeout, None)?;
        let windows = [Window::per_minute(self.requests_per_minute)];
        let reread = TimeDelta::from_std(self.alert_reread_window)
            .context("alert_reread_window is out of range")?;
        let mut feeds = Vec::new();
        for (i, tenant) in self.tenants.iter().enumerate() {
            let auth = match (&tenant.api_token, tenant.entra()) {
                (Some(token), _) => Authorization::ApiToken(token.clone()),
                (None, Some(entra)) => Authorization::Entra(
                    TokenProvider::new(&entra, &format!("{AUDIENCE}/.default"), http.clone())
                        .with_context(|| format!("tenants[{i}]"))?,
                ),
                (None, None) => anyhow::bail!("tenants[{i}]: no credential"),
            };
            let portal = tenant.portal_url.trim().trim_end_matches('/');
            let root = Url::parse(&format!("{portal}/api/v1/"))
                .with_context(|| format!("tenants[{i}].portal_url is not a URL"))?;
            let key = tenant.key();
            let client = Arc::new(ApiClient::new(ClientSettings {
                profile: DEFENDER_CLOUD_APPS,
                tenant_id: &key,
                api_root: &root,
                http: http.clone(),
                tokens: auth,
                windows: &windows,
                retries: tuning.retries,
                labels: &cx.component.metrics.labels,
            }));
            for resource in &self.resources {
                feeds.push(feed(&client, &root, resource, reread)?);
            }
        }
        let settings = PollSettings {
            start_from: TimeDelta::from_std(self.start_from)
                .context("start_from is out of range")?,
            poll_interval: self.poll_interval,
            permission: PERMISSION,
            tuning,
        };
        let overlap = TimeDelta::from_std(self.overlap).context("overlap is out of range")?;
        Ok(Box::pin(poll::run(settings, overlap, feeds, cx)))
    }
}

/// The list behind a `resources` name.
fn feed(
    client: &Arc<ApiClient>,
    root: &Url,
    resource: &str,
    reread: TimeDelta,
) -> anyhow::Result<Feed> {
    let alerts = resource == "alerts";
    let (path, query) = if alerts {
        (
            "alerts/",
            CloudAppsQuery {
                filter_field: "date",
                record_field: "timestamp",
                fixed_filters: Map::new(),
                version_fields: ALERT_STATE,
                overlap: Some(reread),
                limit: MAX_LIMIT,
            },
        )
    } else {
        ("activities/", CloudAppsQuery::by_created(MAX_LIMIT))
    };
    Ok(Feed {
        client: Arc::clone(client),
        collection: Collection {
            resource: resource.to_string(),
            endpoint: if alerts { "alerts" } else { "activities" },
            url: root
                .join(path)
                .context("the portal URL cannot take a path")?,
            time_field: query.record_field,
            versioned: alerts,
            fixed_filter: None,
            order: Order::Ascending,
            top: MAX_LIMIT,
            headers: HeaderMap::new(),
            wire: Wire::CloudApps(query),
        },
    })
}
