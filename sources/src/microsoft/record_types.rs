//! The names of the audit log's `RecordType` numbers (reference 1.8), which every record
//! of the unified audit log carries, whichever API delivered it.

use siemflow_core::Value;

/// The name of a `RecordType` number or string of digits; `Unknown(n)` when not known.
/// `None` for null or absent values.
pub fn record_type_name(value: &Value) -> Option<String> {
    let number = match value {
        Value::Integer(n) => *n,
        Value::Float(f) if f.fract() == 0.0 => f.into_inner() as i64,
        Value::Null => return None,
        other => {
            let text = other.to_string_lossy();
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            match text.parse::<i64>() {
                Ok(n) => n,
                Err(_) => return Some(format!("Unknown({text})")),
            }
        }
    };
    Some(match name_of(number) {
        Some(name) => name.to_string(),
        None => format!("Unknown({number})"),
    })
}

/// The RecordType values of reference 1.8; the full list has ~300 and grows.
fn name_of(record_type: i64) -> Option<&'static str> {
    Some(match record_type {
        1 => "ExchangeAdmin",
        2 => "ExchangeItem",
        3 => "ExchangeItemGroup",
        4 => "SharePoint",
        6 => "SharePointFileOperation",
        7 => "OneDrive",
        8 => "AzureActiveDirectory",
        9 => "AzureActiveDirectoryAccountLogon",
        10 => "DataCenterSecurityCmdlet",
        11 => "ComplianceDLPSharePoint",
        13 => "ComplianceDLPExchange",
        14 => "SharePointSharingOperation",
        15 => "AzureActiveDirectoryStsLogon",
        18 => "SecurityComplianceCenterEOPCmdlet",
        19 => "ExchangeAggregatedOperation",
        20 => "PowerBIAudit",
        25 => "MicrosoftTeams",
        28 => "ThreatIntelligence",
        29 => "MailSubmission",
        36 => "SharePointListOperation",
        40 => "SecurityComplianceAlerts",
        41 => "ThreatIntelligenceUrl",
        43 => "MIPLabel",
        47 => "ThreatIntelligenceAtpContent",
        50 => "ExchangeItemAggregated",
        63 => "DLPEndpoint",
        64 => "AirInvestigation",
        65 => "Quarantine",
        78 => "WDATPAlerts",
        85 => "AttackSim",
        98 => "MCASAlerts",
        113 => "MS365DCustomDetection",
        235 => "MicrosoftDefenderForIdentityAudit",
        261 => "CopilotInteraction",
        294 => "AadRiskDetection",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_types_as_numbers_or_strings() {
        assert_eq!(
            record_type_name(&Value::from(15)).as_deref(),
            Some("AzureActiveDirectoryStsLogon")
        );
        assert_eq!(
            record_type_name(&Value::from("40")).as_deref(),
            Some("SecurityComplianceAlerts")
        );
        assert_eq!(
            record_type_name(&Value::from(" 6 ")).as_deref(),
            Some("SharePointFileOperation")
        );
        assert_eq!(
            record_type_name(&Value::from(9999)).as_deref(),
            Some("Unknown(9999)")
        );
        assert_eq!(
            record_type_name(&Value::from("odd")).as_deref(),
            Some("Unknown(odd)")
        );
        assert_eq!(record_type_name(&Value::Null), None);
    }
}
