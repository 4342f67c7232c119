//! Options of the `enrich` transform.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use siemflow_core::event::field_path;
use siemflow_core::units;
use siemflow_core::{ConfigIssue, Transform, TransformConfig, TransformContext};

use super::Enrich;

/// Adds fields to events: static values and templates, CSV lookup tables (exact or
/// CIDR), GeoIP and ASN from MaxMind databases, and fields derived from M365 records.
/// A missing field or table row leaves the event unchanged and is counted
/// (`enrich_misses_total`), never an error.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Fields to set, by path: a value, or a string that may hold `{{ .Field }}`
    /// templates. A string that is exactly one template copies the field with its type.
    /// Default: none.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// CSV lookup tables, applied in order. Default: none.
    #[serde(default)]
    pub lookup: Vec<LookupConfig>,
    /// GeoIP city and ASN lookups of an IP field. Default: off.
    #[serde(default)]
    pub geoip: Option<GeoipConfig>,
    /// Fields derived from well-known M365 fields. Default: none.
    #[serde(default)]
    pub derive: DeriveConfig,
}

/// How a lookup table matches the event's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// The key equals the column's value.
    #[default]
    Exact,
    /// The key is an IP address inside the column's CIDR range; the longest prefix wins.
    Cidr,
}

/// One CSV lookup table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The CSV file; its first line names the columns. Required.
    pub file: PathBuf,
    /// `exact` or `cidr` (the column holds networks such as `10.0.0.0/8` or single
    /// addresses). Default: `exact`.
    #[serde(default, rename = "match")]
    pub match_kind: MatchKind,
    /// The event field whose value is looked up, e.g. `UserId` or `.Actor[0].ID`. Required.
    pub key: String,
    /// The CSV column matched against the key. Required.
    pub column: String,
    /// The object path where the matched row's other columns are written. Required.
    pub target: String,
    /// Compare exact keys ignoring ASCII case (UPNs, domains). Default: `false`.
    #[serde(default)]
    pub ignore_case: bool,
    /// How often the file's modification time and size are checked; a changed file is
    /// reloaded whole, and a broken one keeps the old table. `0s` turns reloading off.
    /// Default: `10s`.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: String,
}

fn default_reload_interval() -> String {
    "10s".to_string()
}

/// GeoIP and ASN lookups from MaxMind DB files (GeoIP2/GeoLite2 City and ASN).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// A City (or Country) database. Default: none.
    #[serde(default)]
    pub city_db: Option<PathBuf>,
    /// An ASN database. Default: none.
    #[serde(default)]
    pub asn_db: Option<PathBuf>,
    /// The field holding the IP address. Default: `ClientIP`.
    #[serde(default = "default_client_ip")]
    pub source: String,
    /// The object path the results are written under. Default: `geo`.
    #[serde(default = "default_geo_target")]
    pub target: String,
    /// How often the databases' modification time and size are checked; a changed file
    /// is opened whole before it replaces the database, and a broken one keeps the old
    /// database. `0s` turns reloading off. Default: `10s`.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: String,
}

fn default_client_ip() -> String {
    "ClientIP".to_string()
}

fn default_geo_target() -> String {
    "geo".to_string()
}

/// Which derived fields to add; each is off unless its table is present (`{}` takes
/// the defaults).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeriveConfig {
    /// The domain of a UPN, lowercased. Defaults: `from = "UserId"`, `to = "user_domain"`.
    #[serde(default)]
    pub user_domain: Option<Derivation>,
    /// `private`, `public`, `loopback` or `invalid`. Defaults: `from = "ClientIP"`,
    /// `to = "ip_class"`.
    #[serde(default)]
    pub ip_class: Option<Derivation>,
    /// The name of the `RecordType` number, `Unknown(n)` when not known. Defaults:
    /// `from = "RecordType"`, `to = "RecordTypeName"`.
    #[serde(default)]
    pub record_type_name: Option<Derivation>,
}

/// Where one derivation reads and writes; each has its own defaults (see above).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Derivation {
    /// The field read. Default: depends on the derivation.
    #[serde(default)]
    pub from: Option<String>,
    /// The field written. Default: depends on the derivation.
    #[serde(default)]
    pub to: Option<String>,
}

impl EnrichConfig {
    /// Every problem of the options, without touching files.
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        for (name, value) in &self.fields {
            let key = format!("fields.{name}");
            if let Err(issue) = field_path(&key, name) {
                issues.push(issue);
            }
            if let Some(text) = value.as_str()
                && let Err(message) = super::fields::FieldTemplate::parse(text)
            {
                issues.push(ConfigIssue::new(&key, message));
            }
        }
        for (i, lookup) in self.lookup.iter().enumerate() {
            let key = |k: &str| format!("lookup[{i}].{k}");
            issues.extend(field_path(&key("key"), &lookup.key).err());
            issues.extend(field_path(&key("target"), &lookup.target).err());
            if let Err(message) = units::parse_duration(&lookup.reload_interval) {
                issues.push(
                    ConfigIssue::new(&key("reload_interval"), message)
                        .hint("a duration such as `10s` or `1m`; `0s` turns reloading off"),
                );
            }
        }
        if let Some(geoip) = &self.geoip {
            if geoip.city_db.is_none() && geoip.asn_db.is_none() {
                issues.push(
                    ConfigIssue::new("geoip", "neither `city_db` nor `asn_db` is set")
                        .hint("the path of a GeoIP2/GeoLite2 City or ASN .mmdb file"),
                );
            }
            if let Err(message) = units::parse_duration(&geoip.reload_interval) {
                issues.push(
                    ConfigIssue::new("geoip.reload_interval", message)
                        .hint("a duration such as `10s` or `1m`; `0s` turns reloading off"),
                );
            }
            issues.extend(field_path("geoip.source", &geoip.source).err());
            issues.extend(field_path("geoip.target", &geoip.target).err());
        }
        for (name, derivation) in self.derive.all() {
            let (from, to) = derivation;
            issues.extend(field_path(&format!("derive.{name}.from"), from).err());
            issues.extend(field_path(&format!("derive.{name}.to"), to).err());
        }
        issues
    }

    /// Builds the concrete transform (the tests inspect it).
    pub(super) fn build_enrich(&self, cx: &TransformContext) -> anyhow::Result<Enrich> {
        if let Some(issue) = self.issues().into_iter().next() {
            anyhow::bail!(
                "option `{}`: {}",
                issue.key.unwrap_or_default(),
                issue.message
            );
        }
        Enrich::new(self, &cx.component.metrics.labels)
    }
}

impl DeriveConfig {
    /// The enabled derivations with their effective (from, to) paths.
    pub(super) fn all(&self) -> Vec<(&'static str, (&str, &str))> {
        fn effective<'a>(
            d: &'a Option<Derivation>,
            name: &'static str,
            from: &'static str,
            to: &'static str,
        ) -> Option<(&'static str, (&'a str, &'a str))> {
            d.as_ref().map(|d| {
                (
                    name,
                    (
                        d.from.as_deref().unwrap_or(from),
                        d.to.as_deref().unwrap_or(to),
                    ),
                )
            })
        }
        [
            effective(&self.user_domain, "user_domain", "UserId", "user_domain"),
            effective(&self.ip_class, "ip_class", "ClientIP", "ip_class"),
            effective(
                &self.record_type_name,
                "record_type_name",
                "RecordType",
                "RecordTypeName",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl TransformConfig for EnrichConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        self.issues()
    }

    fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(Box::new(self.build_enrich(cx)?))
    }
}
