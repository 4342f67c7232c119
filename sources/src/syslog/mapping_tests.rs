//! What the `syslog` source reads from the MDA SIEM agent's lines, given to the `cef`
//! and `leef` transforms' encoders with `preset = "auto"`: the `mda_activity` and
//! `mda_alert` presets are picked and render each agent line back key for key (the CEF
//! of a relay is the agent's own, as VRL's parse_cef reads both), and LEEF carries the
//! same values under QRadar's names.

use siemflow_simulator::mda_agent::{self, Transport};
use siemflow_transforms::cef::{CefConfig, CefEncoder};
use siemflow_transforms::leef::{LeefConfig, LeefEncoder};
use vrl::value::{ObjectMap, Value};

use super::tests::{collect, start, text, vrl_parse_cef};
use crate::testing::PATIENCE;

/// Agent lines as the syslog source emits them (CEF decoding, over TCP).
async fn agent_events() -> Vec<ObjectMap> {
    let lines = mda_agent::agent_lines();
    let (mut source, address) = start("syslog_mapping", "decoding = \"cef\"", false, 1000).await;
    mda_agent::send(address, Transport::Tcp, &lines)
        .await
        .expect("send");
    let events = collect(&mut source, lines.len()).await;
    source.stop(PATIENCE, |_| {}).await;
    events
}

#[tokio::test]
async fn the_mda_presets_render_agent_lines_read_by_the_syslog_source_back_to_the_agents_cef() {
    let lines = mda_agent::agent_lines();
    let events = agent_events().await;
    let config: CefConfig = toml::from_str("unmapped = \"drop\"").expect("cef config");
    let mut cef = CefEncoder::new(&config).expect("encoder");
    for (n, (line, event)) in lines.iter().zip(&events).enumerate() {
        let event = Value::Object(event.clone());
        let expected = if n < 6 { "mda_activity" } else { "mda_alert" };
        assert_eq!(cef.preset_for(&event), expected, "line {n}");
        let mut ours = String::new();
        cef.encode(&event, &mut ours);
        let agent = vrl_parse_cef(mda_agent::cef_part(line));
        let rendered = vrl_parse_cef(&ours);
        for (key, value) in &agent {
            let value = value.to_string_lossy();
            let mine = rendered
                .get(key.as_str())
                .map(|v| v.to_string_lossy().into_owned());
            let base_is_empty = key
                .strip_suffix("Label")
                .and_then(|base| agent.get(base))
                .is_some_and(|v| v.to_string_lossy().is_empty());
            if value.is_empty() || base_is_empty {
                // The agent prints empty keys (and their labels); absent and empty say
                // the same, and the presets write no empty key.
                assert!(
                    mine.as_deref().unwrap_or("").is_empty() || base_is_empty,
                    "line {n}: {key}={mine:?}\n{ours}"
                );
            } else if key == "externalId" && value.chars().count() > 40 {
                // CEF's 40-character limit on externalId (the agent's ids are 50).
                let cut: String = value.chars().take(40).collect();
                assert_eq!(mine.as_deref(), Some(cut.as_str()), "line {n}");
            } else {
                assert_eq!(
                    mine.as_deref(),
                    Some(value.as_ref()),
                    "line {n}: {key}\nagent: {line}\nours:  {ours}"
                );
            }
        }
        for key in rendered.keys() {
            assert!(
                agent.contains_key(key.as_str()),
                "line {n}: {key} is not the agent's\n{ours}"
            );
        }
    }
}

#[tokio::test]
async fn the_leef_transform_carries_agent_lines_read_by_the_syslog_source() {
    let lines = mda_agent::agent_lines();
    let events = agent_events().await;
    let config: LeefConfig = toml::from_str("unmapped = \"drop\"").expect("leef config");
    let mut leef = LeefEncoder::new(&config).expect("encoder");
    for (n, (line, event)) in lines.iter().zip(&events).enumerate() {
        let event = Value::Object(event.clone());
        assert_eq!(
            leef.preset_for(&event),
            if n < 6 { "mda_activity" } else { "mda_alert" }
        );
        let mut out = String::new();
        leef.encode(&event, &mut out);
        let parsed =
            siemflow_core::leef::parse(&out).unwrap_or_else(|e| panic!("line {n}: {e}: {out}"));
        let agent = vrl_parse_cef(mda_agent::cef_part(line));
        assert_eq!(
            [
                parsed.vendor.as_str(),
                parsed.product.as_str(),
                parsed.event_id.as_str()
            ],
            [
                text(&agent, "deviceVendor"),
                text(&agent, "deviceProduct"),
                text(&agent, "deviceEventClassId")
            ]
            .each_ref()
            .map(String::as_str),
            "line {n}: {out}"
        );
        let attribute = |key: &str| {
            parsed
                .attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            attribute("usrName"),
            Some(text(&agent, "suser").as_str()),
            "line {n}: {out}"
        );
        assert_eq!(
            attribute("devTime"),
            agent.get("rt").map(|v| v.to_string_lossy()).as_deref(),
            "line {n}: {out}"
        );
        assert_eq!(
            attribute("portalURL"),
            Some(text(&agent, "cs1").as_str()),
            "line {n}: {out}"
        );
        assert_eq!(
            attribute("msg"),
            Some(text(&agent, "msg").as_str()),
            "line {n}: {out}"
        );
    }
}
