//! GeoIP city and ASN lookups from MaxMind DB files.

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use maxminddb::{Reader, geoip2};
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{ObjectMap, Value};
use vrl::path::OwnedValuePath;

use super::Misses;
use super::config::{GeoipConfig, field_path};
use super::ip::{IpField, ip_field};

/// The opened databases and where their results go.
pub struct Geoip {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
    source: OwnedValuePath,
    target: OwnedValuePath,
    misses: Misses,
}

impl std::fmt::Debug for Geoip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geoip")
            .field("source", &self.source.to_string())
            .field("target", &self.target.to_string())
            .finish_non_exhaustive()
    }
}

fn open(path: &Path, kind: &str) -> anyhow::Result<Reader<Vec<u8>>> {
    Reader::open_readfile(path).with_context(|| format!("{kind} {}", path.display()))
}

impl Geoip {
    /// Opens the configured databases; an unreadable one is a build error.
    pub fn new(config: &GeoipConfig, labels: &ComponentLabels) -> anyhow::Result<Self> {
        let path = |key: &str, text: &str| {
            field_path(key, text).map_err(|issue| anyhow::anyhow!("{key}: {}", issue.message))
        };
        Ok(Geoip {
            city: config
                .city_db
                .as_deref()
                .map(|p| open(p, "geoip.city_db"))
                .transpose()?,
            asn: config
                .asn_db
                .as_deref()
                .map(|p| open(p, "geoip.asn_db"))
                .transpose()?,
            source: path("geoip.source", &config.source)?,
            target: path("geoip.target", &config.target)?,
            misses: Misses::new(labels, "geoip"),
        })
    }

    /// Writes what the databases know of the source IP under the target object.
    pub fn apply(&mut self, event: &mut Value) {
        let ip = match ip_field(event.get(&self.source)) {
            IpField::Ip(ip) => ip,
            IpField::Missing => return self.misses.count("field_missing"),
            IpField::Invalid => return self.misses.count("invalid_ip"),
        };
        let mut found = ObjectMap::new();
        if let Some(reader) = &self.city {
            match city_fields(reader, ip, &mut found) {
                Ok(true) => {}
                Ok(false) => self.misses.count("no_city"),
                Err(error) => {
                    // A record the database cannot decode is a miss for this IP, not a failure.
                    tracing::debug!(%ip, %error, "GeoIP city record unreadable");
                    self.misses.count("no_city");
                }
            }
        }
        if let Some(reader) = &self.asn {
            match asn_fields(reader, ip, &mut found) {
                Ok(true) => {}
                Ok(false) => self.misses.count("no_asn"),
                Err(error) => {
                    tracing::debug!(%ip, %error, "GeoIP ASN record unreadable");
                    self.misses.count("no_asn");
                }
            }
        }
        for (key, value) in found {
            event.insert(&self.target.with_field_appended(key.as_str()), value);
        }
    }

    /// Misses so far, by kind (tests).
    #[cfg(test)]
    pub fn misses(&self) -> &Misses {
        &self.misses
    }
}

fn put(found: &mut ObjectMap, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        found.insert(key.into(), value.into());
    }
}

/// Adds Vector's `geoip` field names; false when the database has no record.
fn city_fields(
    reader: &Reader<Vec<u8>>,
    ip: IpAddr,
    found: &mut ObjectMap,
) -> Result<bool, maxminddb::MaxMindDbError> {
    let Some(city) = reader.lookup(ip)?.decode::<geoip2::City>()? else {
        return Ok(false);
    };
    put(found, "city_name", city.city.names.english);
    put(found, "continent_code", city.continent.code);
    put(found, "country_code", city.country.iso_code);
    put(found, "country_name", city.country.names.english);
    if let Some(region) = city.subdivisions.first() {
        put(found, "region_code", region.iso_code);
        put(found, "region_name", region.names.english);
    }
    put(found, "postal_code", city.postal.code);
    put(found, "timezone", city.location.time_zone);
    put(found, "latitude", city.location.latitude.and_then(float));
    put(found, "longitude", city.location.longitude.and_then(float));
    put(found, "metro_code", city.location.metro_code.map(i64::from));
    Ok(true)
}

fn float(f: f64) -> Option<Value> {
    // NaN has no JSON form; a database holding one has no usable coordinate.
    f.is_finite().then(|| Value::from_f64_or_zero(f))
}

/// Adds `autonomous_system_number` and `autonomous_system_organization`.
fn asn_fields(
    reader: &Reader<Vec<u8>>,
    ip: IpAddr,
    found: &mut ObjectMap,
) -> Result<bool, maxminddb::MaxMindDbError> {
    let Some(asn) = reader.lookup(ip)?.decode::<geoip2::Asn>()? else {
        return Ok(false);
    };
    put(
        found,
        "autonomous_system_number",
        asn.autonomous_system_number.map(i64::from),
    );
    put(
        found,
        "autonomous_system_organization",
        asn.autonomous_system_organization,
    );
    Ok(true)
}
