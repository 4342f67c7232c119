//! Which Azure cloud the ingestion endpoint lives in, and the token scope and authority
//! that cloud needs (reference §2.2).

use siemflow_core::auth::Cloud;

/// An Azure cloud, as far as Logs Ingestion tokens are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AzureCloud {
    /// Azure (public, also used by most GCC tenants).
    Public,
    /// Azure Government.
    UsGovernment,
    /// Azure operated by 21Vianet.
    China,
}

impl AzureCloud {
    /// The cloud an ingestion endpoint's host name belongs to, when it says
    /// (`*.ingest.monitor.azure.com`, `.us`, `.cn`); `None` for any other host.
    pub(crate) fn of_endpoint(endpoint: &str) -> Option<Self> {
        let url = host_of(endpoint)?;
        let host = url.trim_end_matches('.').to_ascii_lowercase();
        if host.ends_with(".monitor.azure.com") {
            Some(AzureCloud::Public)
        } else if host.ends_with(".monitor.azure.us") {
            Some(AzureCloud::UsGovernment)
        } else if host.ends_with(".monitor.azure.cn") {
            Some(AzureCloud::China)
        } else {
            None
        }
    }

    /// The Azure cloud that goes with a Microsoft 365 cloud's sign-in host.
    pub(crate) fn of_m365(cloud: Cloud) -> Self {
        match cloud {
            Cloud::Commercial | Cloud::Gcc => AzureCloud::Public,
            Cloud::GccHigh | Cloud::Dod => AzureCloud::UsGovernment,
        }
    }

    /// The client-credentials scope every Microsoft SDK uses: the resource URI with its
    /// trailing slash, then `/.default` (hence the double slash).
    pub(crate) fn scope(self) -> &'static str {
        match self {
            AzureCloud::Public => "https://monitor.azure.com//.default",
            AzureCloud::UsGovernment => "https://monitor.azure.us//.default",
            AzureCloud::China => "https://monitor.azure.cn//.default",
        }
    }

    /// The Entra ID authority of the cloud.
    pub(crate) fn login_url(self) -> &'static str {
        match self {
            AzureCloud::Public => "https://login.microsoftonline.com",
            AzureCloud::UsGovernment => "https://login.microsoftonline.us",
            AzureCloud::China => "https://login.chinacloudapi.cn",
        }
    }

    /// The name used in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AzureCloud::Public => "Azure public cloud",
            AzureCloud::UsGovernment => "Azure Government",
            AzureCloud::China => "Azure operated by 21Vianet",
        }
    }
}

/// The host of an `http(s)://host[:port]/...` URL, without a URL parser dependency.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.trim().split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.split_once(']').map(|(h, _)| &h[1..]);
    }
    Some(host_port.split(':').next().unwrap_or(host_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_their_cloud() {
        let cases = [
            (
                "https://my-dce-abcd.eastus-1.ingest.monitor.azure.com",
                Some(AzureCloud::Public),
            ),
            (
                "https://my-dcr-x1y2.usgovvirginia-1.ingest.monitor.azure.us/",
                Some(AzureCloud::UsGovernment),
            ),
            (
                "https://dce.chinanorth3-1.ingest.monitor.azure.cn:443/x",
                Some(AzureCloud::China),
            ),
            ("http://127.0.0.1:8080", None),
            ("https://monitor.azure.com.evil.example", None),
            ("not a url", None),
        ];
        for (endpoint, cloud) in cases {
            assert_eq!(AzureCloud::of_endpoint(endpoint), cloud, "{endpoint}");
        }
    }

    #[test]
    fn scopes_match_the_reference_table() {
        assert_eq!(
            AzureCloud::Public.scope(),
            "https://monitor.azure.com//.default"
        );
        assert_eq!(
            AzureCloud::UsGovernment.scope(),
            "https://monitor.azure.us//.default"
        );
        assert_eq!(
            AzureCloud::China.scope(),
            "https://monitor.azure.cn//.default"
        );
        assert_eq!(AzureCloud::of_m365(Cloud::Gcc), AzureCloud::Public);
        assert_eq!(AzureCloud::of_m365(Cloud::Dod), AzureCloud::UsGovernment);
        assert_eq!(
            AzureCloud::China.login_url(),
            "https://login.chinacloudapi.cn"
        );
    }
}
