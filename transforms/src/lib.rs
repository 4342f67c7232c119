//! siemflow transforms: `filter`, `route` and `remap`, all driven by VRL.

pub mod cef;
mod condition;
pub mod dedup;
pub mod enrich;
mod error_log;
pub mod filter;
pub mod leef;
pub mod plugin;
pub mod remap;
pub mod route;
pub mod siem_mapping;
mod vrl_program;

#[cfg(test)]
mod test_support;

pub use condition::{Condition, ConditionConfig, ConditionKind, TypedCondition};

/// Registers every transform of this crate.
pub fn register(registry: &mut siemflow_core::Registry) {
    registry.transform::<dedup::DedupConfig>(
        "dedup",
        "Drops events whose key was delivered within a window; the seen-set persists",
    );
    registry.transform::<enrich::EnrichConfig>(
        "enrich",
        "Adds static fields, CSV lookups (exact or CIDR), GeoIP/ASN and derived fields",
    );
    registry.transform::<cef::CefConfig>(
        "cef",
        "Renders each event as a CEF line for ArcSight, mapped by Microsoft 365 presets",
    );
    registry.transform::<leef::LeefConfig>(
        "leef",
        "Renders each event as a LEEF 1.0/2.0 line for QRadar, mapped by Microsoft 365 presets",
    );
    registry.transform::<filter::FilterConfig>(
        "filter",
        "Keeps the events that match a VRL condition; the rest are dropped as delivered",
    );
    registry.transform::<route::RouteConfig>(
        "route",
        "Sends each event to every named output whose VRL condition it matches",
    );
    registry.transform::<plugin::PluginTransformConfig>(
        "plugin",
        "Runs an external program (any language) over gRPC as the transform; see docs/plugin-authoring.md",
    );
    registry.transform::<remap::RemapConfig>(
        "remap",
        "Rewrites events with a VRL program; failing events go to the `dropped` output",
    );
}

#[cfg(test)]
mod tests {
    use siemflow_core::metrics::ComponentKind;
    use toml::de::ValueDeserializer;

    use super::*;

    fn registry() -> siemflow_core::Registry {
        let mut registry = siemflow_core::Registry::new();
        register(&mut registry);
        registry
    }

    #[test]
    fn registers_the_three_transforms_with_their_schemas() {
        let registry = registry();
        assert_eq!(
            registry.names(ComponentKind::Transform),
            vec![
                "cef", "dedup", "enrich", "filter", "leef", "plugin", "remap", "route"
            ]
        );
        for plugin in registry.iter() {
            let schema = serde_json::to_string(&(plugin.schema)()).expect("schema serializes");
            assert!(schema.contains("properties"), "{}: {schema}", plugin.name);
        }
    }

    #[test]
    fn configs_parse_through_the_registry() {
        let registry = registry();
        let parse = |name: &str, options: &str| {
            let plugin = registry
                .get(ComponentKind::Transform, name)
                .expect("registered");
            let de = ValueDeserializer::parse(options).expect("valid TOML value");
            plugin.parse(de).map_err(|e| e.to_string())
        };
        let route = parse(
            "route",
            r#"{ route = { exchange = '.Workload == "Exchange"', aad = { type = "vrl", source = ".RecordType == 15" } } }"#,
        )
        .expect("route parses");
        assert_eq!(route.outputs(), vec!["aad", "exchange", "_unmatched"]);
        assert!(route.check().is_empty());
        let remap =
            parse("remap", "{ source = '.a = 1', reroute_dropped = true }").expect("remap parses");
        assert_eq!(remap.outputs(), vec!["dropped"]);
        let error = parse("filter", "{ condition = { type = 'vrl', sourc = 'true' } }")
            .expect_err("unknown key");
        assert!(error.contains("sourc"), "{error}");
    }
}
