//! Tests of the mapping model, and the fixture loader the encoders' tests share.

use vrl::value::Value;

use super::*;

// The loader is its own file so that tests/line_props.rs includes the same one.
#[path = "fixtures.rs"]
mod fixtures;
pub(crate) use fixtures::fixture_records;

fn value(json: &str) -> Value {
    serde_json::from_str(json).expect("valid JSON")
}

#[test]
fn presets_are_selected_per_family() {
    let cases = [
        (
            r#"{"cefVersion":"0","deviceVendor":"MCAS","deviceProduct":"SIEM_Agent","deviceEventClassId":"EVENT_CATEGORY_LOGOUT"}"#,
            "mda_activity",
        ),
        (
            r#"{"cefVersion":"0","deviceVendor":"MCAS","deviceProduct":"SIEM_Agent","deviceEventClassId":"ALERT_CABINET_EVENT_MATCH_AUDIT"}"#,
            "mda_alert",
        ),
        (
            r#"{"RecordType":15,"Workload":"AzureActiveDirectory","CreationTime":"x"}"#,
            "o365_azure_ad",
        ),
        (
            r#"{"recordtype":1,"workload":"Exchange","creationtime":"x"}"#,
            "o365_exchange_admin",
        ),
        (
            r#"{"RecordType":2,"Workload":"Exchange","CreationTime":"x"}"#,
            "o365_exchange_mailbox",
        ),
        (
            r#"{"RecordType":"50","OfficeWorkload":"Exchange"}"#,
            "o365_exchange_mailbox",
        ),
        (
            r#"{"RecordType":6,"Workload":"OneDrive","CreationTime":"x"}"#,
            "o365_sharepoint",
        ),
        (
            r#"{"RecordType":11,"Workload":"SharePoint","CreationTime":"x"}"#,
            "o365_dlp",
        ),
        (
            r#"{"RecordType":40,"Workload":"SecurityComplianceCenter","CreationTime":"x"}"#,
            "o365_security_compliance_alert",
        ),
        (
            r#"{"RecordType":28,"Workload":"ThreatIntelligence","CreationTime":"x"}"#,
            "o365_threat_intelligence",
        ),
        (
            r#"{"RecordType":25,"Workload":"MicrosoftTeams","CreationTime":"x"}"#,
            "o365_teams",
        ),
        (
            r#"{"RecordType":20,"Workload":"PowerBI","CreationTime":"x"}"#,
            "o365_power_bi",
        ),
        (
            r#"{"RecordType":261,"Workload":"Copilot","CreationTime":"x"}"#,
            "o365_copilot",
        ),
        (
            r#"{"RecordType":999,"Workload":"Yammer","CreationTime":"x"}"#,
            "o365_generic",
        ),
        (
            r##"{"@odata.type":"#microsoft.graph.security.alert","id":"a"}"##,
            "graph_alert_v2",
        ),
        (
            r##"{"@odata.type":"#microsoft.graph.security.incident","id":"1"}"##,
            "graph_incident",
        ),
        (
            r#"{"machineId":"m","alertCreationTime":"2024-01-01T00:00:00Z"}"#,
            "defender_endpoint_alert",
        ),
        (
            r#"{"_id":"1","appName":"Box","timestamp":1}"#,
            "mda_activity",
        ),
        (r#"{"_id":"1","appName":"Box","title":"t"}"#, "mda_alert"),
        (
            r#"{"userPrincipalName":"a","appDisplayName":"b"}"#,
            "entra_signin",
        ),
        (
            r#"{"activityDisplayName":"Add member to group"}"#,
            "entra_directory_audit",
        ),
        (r#"{"hello":"world"}"#, "generic"),
    ];
    for (json, expected) in cases {
        assert_eq!(detect(&value(json)), expected, "{json}");
    }
}

#[test]
fn every_fixture_family_has_its_own_preset() {
    let records = fixture_records();
    assert!(records.len() > 100, "{}", records.len());
    let mut seen: Vec<&str> = records.iter().map(|(_, r)| detect(r)).collect();
    seen.sort();
    seen.dedup();
    for family in [
        "o365_azure_ad",
        "o365_exchange_admin",
        "o365_exchange_mailbox",
        "o365_sharepoint",
        "graph_alert_v2",
        "graph_incident",
        "entra_signin",
        "entra_directory_audit",
        "defender_xdr_event",
    ] {
        assert!(seen.contains(&family), "{family} not in {seen:?}");
    }
}

#[test]
fn sources_parse_paths_fallbacks_constants_and_templates() {
    let record = value(r#"{"a":{"B":[1,{"c":"x"}]},"n":null,"t":"y"}"#);
    let text = |s: &str| match Source::parse(s).expect("parses").get(&record) {
        Some(got) => {
            let mut out = String::new();
            typed_text(&got, Kind::Text(usize::MAX), &mut out);
            Some(out)
        }
        None => None,
    };
    assert_eq!(
        text(".a.b[1].c").as_deref(),
        Some("x"),
        "case-insensitive key"
    );
    assert_eq!(text(".n ?? .t").as_deref(), Some("y"), "null falls through");
    assert_eq!(text(".missing ?? 7").as_deref(), Some("7"));
    assert_eq!(text(".missing"), None);
    assert_eq!(text("Microsoft").as_deref(), Some("Microsoft"));
    assert_eq!(text("{{ .t }}-{{.a.B[0]}}").as_deref(), Some("y-1"));
    assert!(Source::parse(".a[").is_err());
    assert!(Source::parse("{{ .a").is_err());
}

#[test]
fn timestamps_become_epoch_milliseconds() {
    assert_eq!(
        parse_time("2022-12-12 15:57:57"),
        Some(1_670_860_677_000),
        "naive is UTC"
    );
    assert_eq!(parse_time("2022-12-12T15:57:57"), Some(1_670_860_677_000));
    assert_eq!(
        parse_time("2020-03-13T19:15:41.6195833Z"),
        Some(1_584_126_941_619)
    );
    assert_eq!(
        parse_time("2022-12-12T16:57:57+01:00"),
        Some(1_670_860_677_000)
    );
    assert_eq!(parse_time("1670860677"), Some(1_670_860_677_000));
    assert_eq!(parse_time("1670860677123"), Some(1_670_860_677_123));
    assert_eq!(parse_time("yesterday"), None);
    assert_eq!(
        epoch_ms(&Value::Integer(1_670_860_677)),
        Some(1_670_860_677_000)
    );
}

#[test]
fn severities_map_to_zero_to_ten() {
    let sev = |s: &str| severity(&Got::Text(s.into(), Vec::new()));
    assert_eq!(sev("Informational"), Some(1));
    assert_eq!(sev("low"), Some(3));
    assert_eq!(sev("Medium"), Some(5));
    assert_eq!(sev("HIGH"), Some(8));
    assert_eq!(sev("critical"), Some(10));
    assert_eq!(sev("42"), Some(10));
    assert_eq!(sev("-3"), Some(0));
    assert_eq!(sev("whatever"), None);
}

#[test]
fn overrides_replace_extend_and_remove() {
    let mut mapping = Mapping::from_preset(preset("o365_azure_ad").expect("preset")).expect("ok");
    let overrides: MappingOverrides = toml::from_str(
        "name = '{{ .Operation }} by {{ .UserId }}'\n[extension]\nsuser = '.Actor[1].ID'\nact = ''\nflexString1 = '.Foo'\n",
    )
    .expect("toml");
    mapping.apply(&overrides).expect("applies");
    assert!(matches!(mapping.header[4], Source::Template(_)));
    let keys: Vec<&str> = mapping.extension.iter().map(|(k, _)| k.as_str()).collect();
    assert!(!keys.contains(&"act"));
    assert!(keys.contains(&"flexString1"));
    let suser = mapping
        .extension
        .iter()
        .find(|(k, _)| k == "suser")
        .expect("suser");
    assert_eq!(suser.1, Source::parse(".Actor[1].ID").expect("path"));
}

#[test]
fn array_selectors_and_value_maps() {
    let record = value(
        r#"{"entities":[{"type":"service","id":20893,"label":"Exchange"},{"type":"ip","id":"2001:db8::1"},{"type":"service","id":11161,"label":"Office 365"},{"type":"ip","id":"192.0.2.1"}],
            "audits":["a1","a2"],"objs":[{"name":"x"},{"id":1},null,{"name":"y"}],"sev":3,"empty":[]}"#,
    );
    let text = |s: &str| {
        Source::parse(s).expect("parses").get(&record).map(|got| {
            let mut out = String::new();
            typed_text(&got, Kind::Text(usize::MAX), &mut out);
            out
        })
    };
    assert_eq!(text(".audits[*]").as_deref(), Some("a1,a2"));
    assert_eq!(text(".objs[*].name").as_deref(), Some("x,,,y"));
    assert_eq!(
        text(".entities[type=service].id").as_deref(),
        Some("20893,11161")
    );
    assert_eq!(
        text(".entities[type=service][1].label").as_deref(),
        Some("Office 365")
    );
    assert_eq!(
        text(".entities[type=ip][0].id").as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(
        text(".entities[type=user][0].id ?? .audits[1]").as_deref(),
        Some("a2")
    );
    assert_eq!(text(".empty[*]"), None);
    assert_eq!(text(".missing[*]"), None);
    assert_eq!(text(".objs[*].nothing"), None);
    assert_eq!(
        text(".sev -> {\"3\": \"Informational\"}").as_deref(),
        Some("Informational")
    );
    assert_eq!(text(".sev -> {\"0\": \"Low\"}").as_deref(), Some("3"));
    assert_eq!(
        text(".missing ?? 0 -> {\"0\": \"Low\"}").as_deref(),
        Some("Low")
    );
    // After a value map, `?? <source>` is used unmapped when no mapped path is present
    // (MDA's severityValue enum, else the SIEM agent's own CEF severity).
    let severity = ".sevValue -> {\"3\": \"Informational\"} ?? .sev";
    assert_eq!(text(severity).as_deref(), Some("3"));
    assert_eq!(
        text(".audits -> {\"0\": \"Low\"} ?? .sev ?? 9").as_deref(),
        Some("a1,a2")
    );
    assert_eq!(
        text(".none -> {\"0\": \"Low\"} ?? .gone ?? 9").as_deref(),
        Some("9")
    );
    assert_eq!(text(".none -> {\"0\": \"Low\"} ?? .gone"), None);
    // A single selected element keeps its type (a number stays a number).
    let source = Source::parse(".entities[type=service][0].id").expect("parses");
    let got = source.get(&record).expect("found");
    assert!(matches!(got, Got::Field(Value::Integer(20893), _)));
    // A template none of whose fields is present writes nothing.
    assert_eq!(text("{{ .a }}\\{{ .b }}"), None);
    assert_eq!(text("{{ .audits[0] }}\\{{ .b }}").as_deref(), Some("a1\\"));
    for bad in [
        ".a[x]",
        ".a[*]b",
        ".x -> [1]",
        ".x -> {\"a\": [1]}",
        ".x -> {\"a\": \"b\"} .y",
    ] {
        assert!(Source::parse(bad).is_err(), "{bad}");
    }
}

/// A list of plain values is joined with commas wherever it is written — a field, a
/// template hole, a header — as Microsoft's SIEM agent prints lists; a list holding
/// objects or lists has no plain form and stays JSON.
#[test]
fn list_values_are_joined_with_commas() {
    let record = value(
        r#"{"Recipients":["alice@contoso.example","bob@contoso.example"],"ids":[1,2.5,true],
            "gaps":["a",null,"b"],"one":["x"],"none":[],
            "objects":[{"Name":"a","Value":"1"}],"nested":[["a"],["b"]],"mixed":["a",{"b":1}],
            "entities":[{"tags":["t1","t2"]},{"tags":["t3"]}]}"#,
    );
    let text = |s: &str| {
        Source::parse(s).expect("parses").get(&record).map(|got| {
            let mut out = String::new();
            typed_text(&got, Kind::Text(usize::MAX), &mut out);
            out
        })
    };
    for (source, expected) in [
        (".Recipients", "alice@contoso.example,bob@contoso.example"),
        (".ids", "1,2.5,true"),
        // A null element leaves an empty place, as a fan-out's missing field does.
        (".gaps", "a,,b"),
        (".one", "x"),
        (".none", ""),
        (
            "to {{ .Recipients }}",
            "to alice@contoso.example,bob@contoso.example",
        ),
        // A fan-out over lists goes through the same join.
        (".entities[*].tags", "t1,t2,t3"),
        (".objects", r#"[{"Name":"a","Value":"1"}]"#),
        (".nested", r#"[["a"],["b"]]"#),
        (".mixed", r#"["a",{"b":1}]"#),
    ] {
        assert_eq!(text(source).as_deref(), Some(expected), "{source}");
    }
}
