//! GeoIP city and ASN lookups from MaxMind DB files, reloaded when a file changes.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use maxminddb::{Reader, geoip2};
use metrics::Counter;
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{ObjectMap, Value};
use vrl::path::OwnedValuePath;

use super::Misses;
use siemflow_core::event::field_path;

use super::config::GeoipConfig;
use super::ip::{IpField, ip_field};
use super::watch::{Reload, Watched};

/// The most a GeoIP database file may hold; it is read whole into memory. GeoIP2 City
/// is about 130 MB; the larger commercial editions fit too.
pub const DATABASE_FILE_LIMIT: u64 = 1 << 30;

/// Reads a MaxMind DB file into memory and checks its metadata and search tree.
fn read_database(option: &'static str, path: &Path) -> anyhow::Result<Reader<Vec<u8>>> {
    let bytes = siemflow_core::fs::read_bounded(path, DATABASE_FILE_LIMIT, option)?;
    Reader::from_source(bytes).with_context(|| format!("{option} {}", path.display()))
}

/// One opened database and the file it came from.
struct Db {
    /// `geoip.city_db` or `geoip.asn_db`, for errors and logs.
    option: &'static str,
    reader: Reader<Vec<u8>>,
    file: Watched,
    reloads_ok: Counter,
    reloads_failed: Counter,
}

impl Db {
    fn open(
        option: &'static str,
        path: &Path,
        interval: Duration,
        now: Instant,
        labels: &ComponentLabels,
    ) -> anyhow::Result<Self> {
        let context = || format!("{option} {}", path.display());
        let file = Watched::new(path, interval, now).with_context(context)?;
        let reader = read_database(option, path)?;
        let name = path.display().to_string();
        let counter = |result| {
            labels.counter(
                "enrich_table_reloads_total",
                &[("table", name.as_str()), ("result", result)],
            )
        };
        Ok(Db {
            option,
            reader,
            file,
            reloads_ok: counter("ok"),
            reloads_failed: counter("error"),
        })
    }

    /// Reads the file again if it changed. The new database is opened whole (its
    /// metadata and search tree checked) before it replaces the old one; a missing or
    /// broken file keeps the old one and is tried again only once it changes again.
    fn reload_if_changed(&mut self) -> Reload {
        let path = self.file.path.display().to_string();
        match self.file.changed() {
            Ok(true) => {}
            Ok(false) => return Reload::Unchanged,
            Err(error) => {
                tracing::warn!(option = self.option, file = %path, %error, "GeoIP database unreadable; keeping the loaded one");
                self.reloads_failed.increment(1);
                return Reload::Failed;
            }
        }
        match read_database(self.option, &self.file.path) {
            Ok(reader) => {
                tracing::info!(option = self.option, file = %path, build_epoch = reader.metadata().build_epoch, "GeoIP database reloaded");
                self.reader = reader;
                self.reloads_ok.increment(1);
                Reload::Reloaded
            }
            Err(error) => {
                tracing::error!(option = self.option, file = %path, error = format!("{error:#}"), "GeoIP database reload failed; keeping the previous one");
                self.reloads_failed.increment(1);
                Reload::Failed
            }
        }
    }
}

/// The opened databases and where their results go.
pub struct Geoip {
    city: Option<Db>,
    asn: Option<Db>,
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

impl Geoip {
    /// Opens the configured databases; an unreadable one is a build error.
    pub fn new(
        config: &GeoipConfig,
        labels: &ComponentLabels,
        now: Instant,
    ) -> anyhow::Result<Self> {
        let path = |key: &str, text: &str| {
            field_path(key, text).map_err(|issue| anyhow::anyhow!("{key}: {}", issue.message))
        };
        let interval = siemflow_core::units::parse_duration(&config.reload_interval)
            .map_err(|e| anyhow::anyhow!("geoip.reload_interval: {e}"))?;
        let open = |option, file: &Option<std::path::PathBuf>| {
            file.as_deref()
                .map(|p| Db::open(option, p, interval, now, labels))
                .transpose()
        };
        Ok(Geoip {
            city: open("geoip.city_db", &config.city_db)?,
            asn: open("geoip.asn_db", &config.asn_db)?,
            source: path("geoip.source", &config.source)?,
            target: path("geoip.target", &config.target)?,
            misses: Misses::new(labels, "geoip"),
        })
    }

    /// Checks each database file whose reload interval has passed.
    pub fn maybe_reload(&mut self, now: Instant) {
        for db in [&mut self.city, &mut self.asn].into_iter().flatten() {
            if db.file.due(now) {
                db.reload_if_changed();
            }
        }
    }

    /// Reloads the changed databases now: the city's outcome, then the ASN's (tests).
    #[cfg(test)]
    pub fn reload_if_changed(&mut self) -> Vec<Reload> {
        [&mut self.city, &mut self.asn]
            .into_iter()
            .flatten()
            .map(Db::reload_if_changed)
            .collect()
    }

    /// Writes what the databases know of the source IP under the target object.
    pub fn apply(&mut self, event: &mut Value) {
        let ip = match ip_field(event.get(&self.source)) {
            IpField::Ip(ip) => ip,
            IpField::Missing => return self.misses.count("field_missing"),
            IpField::Invalid => return self.misses.count("invalid_ip"),
        };
        let mut found = ObjectMap::new();
        if let Some(db) = &self.city {
            match city_fields(&db.reader, ip, &mut found) {
                Ok(true) => {}
                Ok(false) => self.misses.count("no_city"),
                Err(error) => {
                    // A record the database cannot decode is a miss for this IP, not a failure.
                    tracing::debug!(%ip, %error, "GeoIP city record unreadable");
                    self.misses.count("no_city");
                }
            }
        }
        if let Some(db) = &self.asn {
            match asn_fields(&db.reader, ip, &mut found) {
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
