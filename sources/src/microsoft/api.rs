//! The Microsoft APIs the pull sources read, as the shared client needs to know them: the
//! quota each counts against and its documented limits (the budget's defaults), the
//! application permission it needs (named in configuration errors) and the prefix of its
//! metrics.

use std::time::Duration;

use super::budget::Window;

/// What the shared client and budget need to know about one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiProfile {
    /// The API's name in logs.
    pub name: &'static str,
    /// The prefix of its metrics: `o365` gives `o365_requests_total`.
    pub metric_prefix: &'static str,
    /// The quota it counts against on its host (one host may serve several).
    pub quota: &'static str,
    /// The documented limits: the budget's default windows.
    pub windows: &'static [Window],
    /// The application permission it needs, named when a request is refused for the lack
    /// of it. A source reading another endpoint of the API sets its own.
    pub permission: &'static str,
}

/// The Office 365 Management Activity API: 2,000 requests a minute per tenant (§1.6).
pub const O365_MANAGEMENT: ApiProfile = ApiProfile {
    name: "Office 365 Management Activity API",
    metric_prefix: "o365",
    quota: "activity",
    windows: &[Window::per_minute(2000)],
    permission: "ActivityFeed.Read (Office 365 Management APIs)",
};

/// Graph's security API (alerts_v2, incidents): 150 requests a minute per app per tenant (§2.3).
pub const GRAPH_SECURITY: ApiProfile = ApiProfile {
    name: "Microsoft Graph security API",
    metric_prefix: "graph",
    quota: "security",
    windows: &[Window::per_minute(150)],
    permission: "SecurityAlert.Read.All (Microsoft Graph)",
};

/// Graph's identity reports (signIns, directoryAudits): 5 requests per 10 s per app per
/// tenant (§6.3).
pub const ENTRA_REPORTS: ApiProfile = ApiProfile {
    name: "Microsoft Graph identity reports",
    metric_prefix: "graph",
    quota: "reports",
    windows: &[Window::new(5, Duration::from_secs(10))],
    permission: "AuditLog.Read.All and Directory.Read.All (Microsoft Graph)",
};

/// The Defender for Endpoint API: 100 requests a minute and 1,500 an hour (§3.2).
pub const DEFENDER_ENDPOINT: ApiProfile = ApiProfile {
    name: "Microsoft Defender for Endpoint API",
    metric_prefix: "mde",
    quota: "api",
    windows: &[Window::per_minute(100), Window::per_hour(1500)],
    permission: "Alert.Read.All (WindowsDefenderATP)",
};

/// The Defender for Cloud Apps API: 30 requests a minute per tenant (§5.1).
pub const DEFENDER_CLOUD_APPS: ApiProfile = ApiProfile {
    name: "Microsoft Defender for Cloud Apps API",
    metric_prefix: "mda",
    quota: "api",
    windows: &[Window::per_minute(30)],
    permission: "Investigation.read (Microsoft Cloud App Security)",
};
