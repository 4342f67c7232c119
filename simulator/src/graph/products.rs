//! The Defender products that raise alerts: their serviceSource and detectionSource values,
//! id forms, typical detections and the evidence they attach (reference §2.4).

/// How a product writes alert ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdForm {
    /// `da637551227677560813_-961444813` (Defender for Endpoint).
    Ticks,
    /// A two-letter prefix and a GUID: `fa7c1e22d4-3b9a-…` (Defender for Office 365).
    PrefixedGuid(&'static str),
    /// A two-letter prefix and 32 hex digits (Defender for Cloud Apps, Entra ID Protection).
    PrefixedHex(&'static str),
}

/// Evidence kinds a detection may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvidenceKind {
    Device,
    File,
    Process,
    RegistryKey,
    User,
    Ip,
    Url,
    Mailbox,
    AnalyzedMessage,
    CloudApplication,
    /// A newer cloud evidence type (`azureResourceEvidence`): clients must keep it as raw JSON.
    AzureResource,
}

/// One detection a product raises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Detection {
    pub(crate) title: &'static str,
    pub(crate) category: &'static str,
    pub(crate) techniques: &'static [&'static str],
    pub(crate) severity: &'static str,
    pub(crate) evidence: &'static [EvidenceKind],
}

/// A product and the alerts it raises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Product {
    pub(crate) service_source: &'static str,
    pub(crate) detection_sources: &'static [&'static str],
    pub(crate) product_name: &'static str,
    pub(crate) id_form: IdForm,
    /// Relative share of alerts.
    pub(crate) weight: u64,
    /// Its records leave classification/determination null until set (as Office 365
    /// alerts are observed to), rather than `unknown`.
    pub(crate) null_verdicts: bool,
    pub(crate) detections: &'static [Detection],
}

use EvidenceKind::*;

/// Every product, with the evolvable-enum ones (Defender for Cloud, Sentinel) last.
pub(crate) const PRODUCTS: [Product; 8] = [
    Product {
        service_source: "microsoftDefenderForEndpoint",
        detection_sources: &[
            "microsoftDefenderForEndpoint",
            "antivirus",
            "automatedInvestigation",
            "customDetection",
            "smartScreen",
        ],
        product_name: "Microsoft Defender for Endpoint",
        id_form: IdForm::Ticks,
        weight: 30,
        null_verdicts: false,
        detections: &[
            Detection {
                title: "Suspicious execution of hidden file",
                category: "DefenseEvasion",
                techniques: &["T1564.001"],
                severity: "low",
                evidence: &[Device, File, Process],
            },
            Detection {
                title: "Suspicious PowerShell command line",
                category: "Execution",
                techniques: &["T1059.001"],
                severity: "medium",
                evidence: &[Device, Process, User],
            },
            Detection {
                title: "Ransomware behavior detected in the file system",
                category: "Impact",
                techniques: &["T1486"],
                severity: "high",
                evidence: &[Device, File, Process, User],
            },
            Detection {
                title: "'Mimikatz' credential theft tool",
                category: "CredentialAccess",
                techniques: &["T1003.001"],
                severity: "high",
                evidence: &[Device, File, User],
            },
            Detection {
                title: "Suspicious modification of a registry run key",
                category: "Persistence",
                techniques: &["T1547.001"],
                severity: "medium",
                evidence: &[Device, Process, RegistryKey],
            },
        ],
    },
    Product {
        service_source: "microsoftDefenderForOffice365",
        detection_sources: &["microsoftDefenderForOffice365"],
        product_name: "Microsoft Defender for Office 365",
        id_form: IdForm::PrefixedGuid("fa"),
        weight: 20,
        null_verdicts: true,
        detections: &[
            Detection {
                title: "Email messages containing malicious URL removed after delivery",
                category: "InitialAccess",
                techniques: &["T1566.002"],
                severity: "high",
                evidence: &[User, Mailbox, AnalyzedMessage, Url],
            },
            Detection {
                title: "A potentially malicious URL click was detected",
                category: "InitialAccess",
                techniques: &["T1566.002"],
                severity: "high",
                evidence: &[User, Url],
            },
            Detection {
                title: "Email reported by user as malware or phish",
                category: "InitialAccess",
                techniques: &["T1566"],
                severity: "informational",
                evidence: &[Mailbox, AnalyzedMessage],
            },
        ],
    },
    Product {
        service_source: "microsoftDefenderForIdentity",
        detection_sources: &["microsoftDefenderForIdentity"],
        product_name: "Microsoft Defender for Identity",
        id_form: IdForm::PrefixedHex("aa"),
        weight: 8,
        null_verdicts: false,
        detections: &[
            Detection {
                title: "Suspected brute-force attack (LDAP)",
                category: "CredentialAccess",
                techniques: &["T1110"],
                severity: "medium",
                evidence: &[User, Device, Ip],
            },
            Detection {
                title: "Suspected DCSync attack (replication of directory services)",
                category: "CredentialAccess",
                techniques: &["T1003.006"],
                severity: "high",
                evidence: &[User, Device],
            },
        ],
    },
    Product {
        service_source: "microsoftDefenderForCloudApps",
        detection_sources: &["cloudAppSecurity"],
        product_name: "Microsoft Defender for Cloud Apps",
        id_form: IdForm::PrefixedHex("ca"),
        weight: 12,
        null_verdicts: false,
        detections: &[
            Detection {
                title: "Impossible travel activity",
                category: "InitialAccess",
                techniques: &["T1078"],
                severity: "medium",
                evidence: &[User, Ip, CloudApplication],
            },
            Detection {
                title: "Mass download by a single user",
                category: "Exfiltration",
                techniques: &["T1530"],
                severity: "medium",
                evidence: &[User, CloudApplication],
            },
            Detection {
                title: "Suspicious inbox forwarding",
                category: "Exfiltration",
                techniques: &["T1114.003"],
                severity: "high",
                evidence: &[User, Mailbox, CloudApplication],
            },
        ],
    },
    Product {
        service_source: "azureAdIdentityProtection",
        detection_sources: &["azureAdIdentityProtection"],
        product_name: "Microsoft Entra ID Protection",
        id_form: IdForm::PrefixedHex("ad"),
        weight: 12,
        null_verdicts: false,
        detections: &[
            Detection {
                title: "Anonymous IP address",
                category: "InitialAccess",
                techniques: &["T1078"],
                severity: "low",
                evidence: &[User, Ip],
            },
            Detection {
                title: "Unfamiliar sign-in properties",
                category: "InitialAccess",
                techniques: &["T1078"],
                severity: "medium",
                evidence: &[User, Ip],
            },
            Detection {
                title: "Password spray",
                category: "CredentialAccess",
                techniques: &["T1110.003"],
                severity: "high",
                evidence: &[User, Ip],
            },
        ],
    },
    Product {
        service_source: "dataLossPrevention",
        detection_sources: &["microsoftDataLossPrevention"],
        product_name: "Microsoft Data Loss Prevention",
        id_form: IdForm::PrefixedGuid("dl"),
        weight: 8,
        null_verdicts: false,
        detections: &[Detection {
            title: "DLP policy (Financial data) matched for document in SharePoint",
            category: "Exfiltration",
            techniques: &[],
            severity: "medium",
            evidence: &[User, File, CloudApplication],
        }],
    },
    Product {
        service_source: "microsoftDefenderForCloud",
        detection_sources: &[
            "microsoftDefenderForServers",
            "microsoftDefenderForStorage",
            "microsoftDefenderForKeyVault",
        ],
        product_name: "Microsoft Defender for Cloud",
        id_form: IdForm::PrefixedHex("fc"),
        weight: 6,
        null_verdicts: false,
        detections: &[
            Detection {
                title: "Access from a suspicious IP address to a storage account",
                category: "Exfiltration",
                techniques: &["T1530"],
                severity: "medium",
                evidence: &[Ip, AzureResource],
            },
            Detection {
                title: "Suspicious authentication activity",
                category: "CredentialAccess",
                techniques: &["T1110"],
                severity: "medium",
                evidence: &[Ip, AzureResource, User],
            },
        ],
    },
    Product {
        service_source: "microsoftSentinel",
        detection_sources: &["scheduledAlerts", "nrtAlerts"],
        product_name: "Microsoft Sentinel",
        id_form: IdForm::PrefixedGuid("sn"),
        weight: 4,
        null_verdicts: false,
        detections: &[Detection {
            title: "Rare RDP connections",
            category: "LateralMovement",
            techniques: &["T1021.001"],
            severity: "low",
            evidence: &[Ip, Device, User],
        }],
    },
];

/// serviceSource and detectionSource members newer than `unknownFutureValue`: without
/// `Prefer: include-unknown-enum-members` they read `unknownFutureValue`.
pub(crate) const EVOLVABLE_SOURCES: &[&str] = &[
    "microsoftDefenderForCloud",
    "microsoftSentinel",
    "microsoftDefenderForIoT",
    "microsoftDefenderForServers",
    "microsoftDefenderForStorage",
    "microsoftDefenderForDNS",
    "microsoftDefenderForDatabases",
    "microsoftDefenderForContainers",
    "microsoftDefenderForNetwork",
    "microsoftDefenderForAppService",
    "microsoftDefenderForKeyVault",
    "scheduledAlerts",
    "nrtAlerts",
];

/// Index of the product with a random pick weighted by share.
pub(crate) fn pick_product(roll: u64) -> usize {
    let total: u64 = PRODUCTS.iter().map(|p| p.weight).sum();
    let mut r = roll % total;
    for (i, p) in PRODUCTS.iter().enumerate() {
        if r < p.weight {
            return i;
        }
        r -= p.weight;
    }
    0
}

/// Severities in rising order, to take an incident's maximum.
pub(crate) const SEVERITIES: [&str; 5] = ["unknown", "informational", "low", "medium", "high"];

/// Rank of a severity (unknown lowest).
pub(crate) fn severity_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(0)
}
