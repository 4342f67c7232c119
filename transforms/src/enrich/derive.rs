//! Fields derived from well-known M365 fields: user domain, IP class, RecordType name.

use siemflow_core::Value;
use siemflow_core::metrics::ComponentLabels;
use siemflow_sources::microsoft::record_type_name;
use vrl::path::OwnedValuePath;

use super::Misses;
use siemflow_core::event::field_path;

use super::config::DeriveConfig;
use super::ip::{IpField, ip_class, ip_field};

/// What is derived.
#[derive(Debug, Clone, Copy)]
enum Kind {
    UserDomain,
    IpClass,
    RecordTypeName,
}

/// One enabled derivation.
#[derive(Debug)]
pub struct Derived {
    kind: Kind,
    from: OwnedValuePath,
    to: OwnedValuePath,
    misses: Misses,
}

/// Builds the enabled derivations.
pub fn build(config: &DeriveConfig, labels: &ComponentLabels) -> anyhow::Result<Vec<Derived>> {
    config
        .all()
        .into_iter()
        .map(|(name, (from, to))| {
            let path = |key: &str, text: &str| {
                field_path(key, text).map_err(|issue| anyhow::anyhow!("{key}: {}", issue.message))
            };
            Ok(Derived {
                kind: match name {
                    "user_domain" => Kind::UserDomain,
                    "ip_class" => Kind::IpClass,
                    _ => Kind::RecordTypeName,
                },
                from: path(&format!("derive.{name}.from"), from)?,
                to: path(&format!("derive.{name}.to"), to)?,
                misses: Misses::new(labels, &format!("derive.{name}")),
            })
        })
        .collect()
}

impl Derived {
    /// Sets the derived field, or counts why it could not.
    pub fn apply(&mut self, event: &mut Value) {
        let source = event.get(&self.from);
        let derived = match self.kind {
            Kind::UserDomain => match source.filter(|v| !v.is_null()) {
                None => Err("field_missing"),
                Some(value) => user_domain(value).map(Value::from).ok_or("no_domain"),
            },
            Kind::IpClass => match ip_field(source) {
                IpField::Missing => Err("field_missing"),
                IpField::Invalid => Ok(Value::from("invalid")),
                IpField::Ip(ip) => Ok(Value::from(ip_class(ip))),
            },
            Kind::RecordTypeName => source
                .and_then(record_type_name)
                .map(Value::from)
                .ok_or("field_missing"),
        };
        match derived {
            Ok(value) => {
                event.insert(&self.to, value);
            }
            Err(kind) => self.misses.count(kind),
        }
    }

    /// Misses so far, by kind (tests).
    #[cfg(test)]
    pub fn misses(&self) -> &Misses {
        &self.misses
    }
}

/// The lowercased domain of a UPN (`alex@Contoso.com` → `contoso.com`); `None` for
/// names that are not UPNs (`NT AUTHORITY\SYSTEM`, `SecurityComplianceAlerts`).
pub fn user_domain(value: &Value) -> Option<String> {
    let text = value.to_str_lossy()?;
    let (user, domain) = text.trim().rsplit_once('@')?;
    let valid = !user.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_');
    valid.then(|| domain.to_lowercase())
}
