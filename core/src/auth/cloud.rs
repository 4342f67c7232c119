//! National clouds and the hosts each one derives (reference table 0.1).

use serde::Deserialize;

/// The Microsoft cloud a tenant lives in: tokens from one are not valid in another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// Worldwide (commercial) Microsoft 365.
    #[default]
    Commercial,
    /// US Government Community Cloud (moderate): worldwide login and Graph, its own O365 and MDE hosts.
    Gcc,
    /// US Government GCC High (L4): the `.us` authority and hosts.
    GccHigh,
    /// US Government DoD (L5): the `.us` authority, DoD hosts.
    Dod,
}

impl Cloud {
    /// The config spelling (`gcc_high`), for messages.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Commercial => "commercial",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc_high",
            Cloud::Dod => "dod",
        }
    }

    /// The authority host that issues tokens.
    pub fn login_url(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "https://login.microsoftonline.com",
            Cloud::GccHigh | Cloud::Dod => "https://login.microsoftonline.us",
        }
    }

    /// The Office 365 Management Activity API root, which is also its token audience.
    pub fn management_url(self) -> &'static str {
        match self {
            Cloud::Commercial => "https://manage.office.com",
            Cloud::Gcc => "https://manage-gcc.office.com",
            Cloud::GccHigh => "https://manage.office365.us",
            Cloud::Dod => "https://manage.protection.apps.mil",
        }
    }

    /// The Microsoft Graph root, which is also its token audience.
    pub fn graph_url(self) -> &'static str {
        match self {
            // GCC keeps worldwide Graph.
            Cloud::Commercial | Cloud::Gcc => "https://graph.microsoft.com",
            Cloud::GccHigh => "https://graph.microsoft.us",
            Cloud::Dod => "https://dod-graph.microsoft.us",
        }
    }

    /// The Microsoft Defender for Endpoint API root.
    pub fn defender_url(self) -> &'static str {
        match self {
            Cloud::Commercial => "https://api.security.microsoft.com",
            Cloud::Gcc => "https://api-gcc.securitycenter.microsoft.us",
            Cloud::GccHigh | Cloud::Dod => "https://api-gov.securitycenter.microsoft.us",
        }
    }

    /// The token audience of the Defender for Endpoint API, which differs from its root in the commercial cloud.
    pub fn defender_audience(self) -> &'static str {
        match self {
            Cloud::Commercial => "https://api.securitycenter.microsoft.com",
            other => other.defender_url(),
        }
    }
}

/// The client-credentials scope for an API audience: `{audience}/.default`.
pub fn default_scope(audience: &str) -> String {
    format!("{}/.default", audience.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_reference() {
        let rows = [
            (
                Cloud::Commercial,
                "https://login.microsoftonline.com",
                "https://manage.office.com",
                "https://graph.microsoft.com",
                "https://api.security.microsoft.com",
            ),
            (
                Cloud::Gcc,
                "https://login.microsoftonline.com",
                "https://manage-gcc.office.com",
                "https://graph.microsoft.com",
                "https://api-gcc.securitycenter.microsoft.us",
            ),
            (
                Cloud::GccHigh,
                "https://login.microsoftonline.us",
                "https://manage.office365.us",
                "https://graph.microsoft.us",
                "https://api-gov.securitycenter.microsoft.us",
            ),
            (
                Cloud::Dod,
                "https://login.microsoftonline.us",
                "https://manage.protection.apps.mil",
                "https://dod-graph.microsoft.us",
                "https://api-gov.securitycenter.microsoft.us",
            ),
        ];
        for (cloud, login, management, graph, defender) in rows {
            assert_eq!(cloud.login_url(), login, "{cloud:?}");
            assert_eq!(cloud.management_url(), management, "{cloud:?}");
            assert_eq!(cloud.graph_url(), graph, "{cloud:?}");
            assert_eq!(cloud.defender_url(), defender, "{cloud:?}");
        }
        assert_eq!(
            Cloud::Commercial.defender_audience(),
            "https://api.securitycenter.microsoft.com"
        );
        assert_eq!(
            Cloud::Dod.defender_audience(),
            "https://api-gov.securitycenter.microsoft.us"
        );
    }

    #[test]
    fn config_spelling() {
        #[derive(Deserialize)]
        struct Holder {
            cloud: Cloud,
        }
        for (text, cloud) in [
            ("commercial", Cloud::Commercial),
            ("gcc", Cloud::Gcc),
            ("gcc_high", Cloud::GccHigh),
            ("dod", Cloud::Dod),
        ] {
            let holder: Holder = toml::from_str(&format!("cloud = \"{text}\"")).unwrap();
            assert_eq!(holder.cloud, cloud);
            assert_eq!(cloud.name(), text);
        }
        assert!(toml::from_str::<Holder>("cloud = \"china\"").is_err());
        assert_eq!(Cloud::default(), Cloud::Commercial);
    }

    #[test]
    fn scopes() {
        assert_eq!(
            default_scope("https://manage.office.com"),
            "https://manage.office.com/.default"
        );
        assert_eq!(
            default_scope("https://graph.microsoft.us/"),
            "https://graph.microsoft.us/.default"
        );
    }
}
