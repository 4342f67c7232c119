//! `entra_logs`: the Entra ID sign-in, directory audit and provisioning logs of one or more
//! tenants through Microsoft Graph, following reference section 6.
//!
//! Each (tenant, log) is polled in windows `[cursor − lateness, now − lag)` on the
//! record's own time (`createdDateTime`, `activityDateTime`); results come newest-first,
//! so a window is paged whole before the cursor may move to its end, and records already
//! emitted inside the lateness window are dropped by `id`. The poll loop, cursors and
//! settlement are the shared toolkit's ([`crate::microsoft::poll`]).

mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::HeaderMap;
use siemflow_core::auth::Cloud;
use siemflow_core::{BoxFuture, SourceConfig, SourceContext};

pub use config::{EntraLogsConfig, RESOURCES, SIGN_IN_TYPES};

use crate::microsoft::api::ENTRA_REPORTS;
use crate::microsoft::poll::{Collection, Feed, GraphSource, Order, PollTuning, Wire};
use crate::microsoft::tenants::refuse_issues;
use crate::microsoft::{ApiClient, Window};

/// Records per page: the documented maximum (§6.2).
pub const PAGE: u32 = 1000;

impl SourceConfig for EntraLogsConfig {
    fn check(&self) -> Vec<siemflow_core::ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: SourceContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        self.build_with(cx, PollTuning::default())
    }
}

impl EntraLogsConfig {
    /// Builds the source with the given timings (tests shorten them).
    pub(crate) fn build_with(
        &self,
        cx: SourceContext,
        tuning: PollTuning,
    ) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        refuse_issues(&self.issues(), "entra_logs")?;
        let source = GraphSource {
            profile: ENTRA_REPORTS,
            root: Cloud::graph_url,
            audience: Cloud::graph_url,
            tenants: &self.tenants,
            windows: &[Window::new(self.requests_per_10s, Duration::from_secs(10))],
            api_url: self.api_url.as_deref(),
            request_timeout: self.request_timeout,
            tls: &self.tls,
            start_from: self.start_from,
            overlap: ("lateness", self.lateness),
            poll_interval: self.poll_interval,
            permission: ENTRA_REPORTS.permission,
        };
        source.build(cx, tuning, |client, root| {
            let mut feeds = Vec::new();
            for resource in &self.resources {
                if resource == "sign_ins" {
                    for kind in &self.sign_in_types {
                        feeds.push(feed(client, root, sign_in_log(kind))?);
                    }
                } else {
                    feeds.push(feed(client, root, audit_log(resource))?);
                }
            }
            Ok(feeds)
        })
    }
}

/// Where one log lives and how it is read.
struct Log {
    /// The name in metadata, metrics and the cursor key.
    resource: &'static str,
    endpoint: &'static str,
    path: &'static str,
    time_field: &'static str,
    fixed_filter: Option<&'static str>,
}

/// The sign-ins of one kind: interactive ones on v1.0, the others only on beta (§6.2).
fn sign_in_log(kind: &str) -> Log {
    let beta = |resource, event_type| Log {
        resource,
        endpoint: "beta/signIns",
        path: "beta/auditLogs/signIns",
        time_field: "createdDateTime",
        fixed_filter: Some(event_type),
    };
    match kind {
        "non_interactive" => beta(
            "non_interactive_sign_ins",
            "signInEventTypes/any(t: t eq 'nonInteractiveUser')",
        ),
        "service_principal" => beta(
            "service_principal_sign_ins",
            "signInEventTypes/any(t: t eq 'servicePrincipal')",
        ),
        "managed_identity" => beta(
            "managed_identity_sign_ins",
            "signInEventTypes/any(t: t eq 'managedIdentity')",
        ),
        _ => Log {
            resource: "sign_ins",
            endpoint: "signIns",
            path: "v1.0/auditLogs/signIns",
            time_field: "createdDateTime",
            fixed_filter: None,
        },
    }
}

/// The directory audit or provisioning log (`activityDateTime`).
fn audit_log(resource: &str) -> Log {
    let (resource, endpoint, path) = match resource {
        "provisioning" => (
            "provisioning",
            "provisioning",
            "v1.0/auditLogs/provisioning",
        ),
        _ => (
            "directory_audits",
            "directoryAudits",
            "v1.0/auditLogs/directoryAudits",
        ),
    };
    Log {
        resource,
        endpoint,
        path,
        time_field: "activityDateTime",
        fixed_filter: None,
    }
}

fn feed(client: &Arc<ApiClient>, root: &reqwest::Url, log: Log) -> anyhow::Result<Feed> {
    Ok(Feed {
        client: Arc::clone(client),
        collection: Collection {
            resource: log.resource.to_string(),
            endpoint: log.endpoint,
            url: root
                .join(log.path)
                .context("the Graph root cannot take a path")?,
            time_field: log.time_field,
            // Log records do not change: one emission per id.
            versioned: false,
            fixed_filter: log.fixed_filter.map(str::to_string),
            order: Order::NewestFirst,
            top: PAGE,
            headers: HeaderMap::new(),
            wire: Wire::OData,
        },
    })
}
