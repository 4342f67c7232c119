use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use siemflow_core::{Transform, TransformConfig, TransformOutputs, Value};

use super::cidr::parse_net;
use super::derive::user_domain;
use super::ip::{IpField, ip_class, ip_field, parse_ip};
use super::watch::Reload;
use super::{Clock, Enrich, EnrichConfig};
use crate::test_support::{bodies, build, config, context, event};
use siemflow_sources::microsoft::record_type_name;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/enrich")
        .join(name)
}

fn enrich(toml_text: &str) -> Enrich {
    let config: EnrichConfig = config(toml_text);
    assert_eq!(config.check(), Vec::new(), "config checks clean");
    config
        .build_enrich(&context("enrich_test", "enrich"))
        .expect("builds")
}

fn run(enrich: &mut Enrich, json: serde_json::Value) -> serde_json::Value {
    let mut value = Value::from(json);
    enrich.enrich(&mut value);
    serde_json::to_value(&value).expect("serializable")
}

/// A TOML string literal for a path (single quotes: no escapes on Windows paths).
fn lit(path: &Path) -> String {
    format!("'{}'", path.display())
}

#[test]
fn static_fields_and_templates() {
    let mut e = enrich(
        r#"
        [fields]
        "siem.vendor" = "Microsoft"
        tenant_label = "tenant {{ .OrganizationId }} / {{ Workload }} 100%"
        copy_of_type = "{{ .RecordType }}"
        priority = 3
        flagged = true
        "#,
    );
    let out = run(
        &mut e,
        json!({"OrganizationId": "t1", "Workload": "Exchange", "RecordType": 2}),
    );
    assert_eq!(out["siem"]["vendor"], "Microsoft");
    assert_eq!(out["tenant_label"], "tenant t1 / Exchange 100%");
    assert_eq!(out["copy_of_type"], 2, "a lone template keeps the type");
    assert_eq!(out["priority"], 3);
    assert_eq!(out["flagged"], true);
}

#[test]
fn a_template_with_a_missing_field_is_skipped_and_counted() {
    let mut e = enrich(
        r#"
        [fields]
        who = "{{ .UserId }}@{{ .Workload }}"
        "#,
    );
    let input = json!({"Workload": "Exchange"});
    assert_eq!(run(&mut e, input.clone()), input);
    assert_eq!(e.field_misses.get("field_missing"), 1);
}

#[test]
fn exact_lookup_from_csv() {
    let mut e = enrich(&format!(
        r#"
        [[lookup]]
        file = {}
        key = "UserId"
        column = "upn"
        target = "user"
        ignore_case = true
        "#,
        lit(&fixture("users.csv"))
    ));
    let out = run(&mut e, json!({"UserId": "Alex@Contoso.com"}));
    assert_eq!(
        out["user"],
        json!({"department": "Finance", "manager": "jordan@contoso.com", "risk": "high"})
    );
    let input = json!({"UserId": "nobody@contoso.com"});
    assert_eq!(run(&mut e, input.clone()), input);
    let input = json!({"Other": 1});
    assert_eq!(run(&mut e, input.clone()), input);
    assert_eq!(e.lookups[0].misses().get("no_match"), 1);
    assert_eq!(e.lookups[0].misses().get("field_missing"), 1);
}

#[test]
fn cidr_lookup_longest_prefix_wins() {
    let mut e = enrich(&format!(
        r#"
        [[lookup]]
        file = {}
        match = "cidr"
        key = "ClientIP"
        column = "network"
        target = "network"
        "#,
        lit(&fixture("networks.csv"))
    ));
    let site = |e: &mut Enrich, ip: &str| {
        run(e, json!({ "ClientIP": ip }))["network"]["site"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(site(&mut e, "10.20.30.40").as_deref(), Some("paris-dc"));
    assert_eq!(site(&mut e, "10.20.99.1:443").as_deref(), Some("paris"));
    assert_eq!(site(&mut e, "::ffff:10.1.2.3").as_deref(), Some("corp"));
    assert_eq!(
        site(&mut e, "[2001:db8:aa::1]:443").as_deref(),
        Some("lab-v6")
    );
    assert_eq!(site(&mut e, "2001:db8:bb::1").as_deref(), Some("corp-v6"));
    assert_eq!(
        run(&mut e, json!({"ClientIP": "203.0.113.24"}))["network"],
        json!({"site": "vpn", "zone": "egress"})
    );
    for input in [
        json!({"ClientIP": "8.8.8.8"}),
        json!({"ClientIP": null}),
        json!({"ClientIP": ""}),
        json!({"ClientIP": "not-an-ip"}),
    ] {
        assert_eq!(run(&mut e, input.clone()), input);
    }
    let misses = e.lookups[0].misses();
    assert_eq!(
        (
            misses.get("no_match"),
            misses.get("field_missing"),
            misses.get("invalid_ip")
        ),
        (1, 2, 1)
    );
}

#[test]
fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nets.csv");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    write_stamped(&path, "cidr,site\n10.0.0.0/8,old\n", t0);
    let mut e = enrich(&format!(
        r#"
        [[lookup]]
        file = {}
        match = "cidr"
        key = "ip"
        column = "cidr"
        target = "net"
        reload_interval = "1h"
        "#,
        lit(&path)
    ));
    let site = |e: &mut Enrich| run(e, json!({"ip": "10.1.1.1"}))["net"]["site"].clone();
    assert_eq!(site(&mut e), "old");
    assert_eq!(e.lookups[0].reload_if_changed(), Reload::Unchanged);

    write_stamped(
        &path,
        "cidr,site\n10.0.0.0/8,new\n10.1.0.0/16,newer\n",
        t0 + Duration::from_secs(60),
    );
    assert_eq!(e.lookups[0].reload_if_changed(), Reload::Reloaded);
    assert_eq!(site(&mut e), "newer");

    // A bad network, then a ragged row: each keeps the last good table and is tried once.
    for (i, broken) in [
        "cidr,site\nnot-a-net,x\n",
        "cidr,site\n10.0.0.0/8,a,extra\n",
    ]
    .into_iter()
    .enumerate()
    {
        write_stamped(&path, broken, t0 + Duration::from_secs(120 + i as u64));
        assert_eq!(e.lookups[0].reload_if_changed(), Reload::Failed);
        assert_eq!(e.lookups[0].reload_if_changed(), Reload::Unchanged);
        assert_eq!(site(&mut e), "newer");
    }
    // A table whose match column vanished is broken too.
    write_stamped(
        &path,
        "net,site\n10.0.0.0/8,x\n",
        t0 + Duration::from_secs(200),
    );
    assert_eq!(e.lookups[0].reload_if_changed(), Reload::Failed);
    // A deleted file keeps the table.
    fs::remove_file(&path).expect("remove");
    assert_eq!(e.lookups[0].reload_if_changed(), Reload::Failed);
    assert_eq!(site(&mut e), "newer");
    // Fixed again: picked up.
    write_stamped(
        &path,
        "cidr,site\n10.0.0.0/8,fixed\n",
        t0 + Duration::from_secs(300),
    );
    assert_eq!(e.lookups[0].reload_if_changed(), Reload::Reloaded);
    assert_eq!(site(&mut e), "fixed");
}

/// A clock the test moves by hand, installed in a built transform.
fn manual_clock(e: &mut Enrich) -> Arc<Mutex<Instant>> {
    let now = Arc::new(Mutex::new(Instant::now()));
    e.clock = Clock::Manual(now.clone());
    now
}

fn advance(clock: &Arc<Mutex<Instant>>, by: Duration) {
    let mut now = clock.lock().expect("clock");
    *now += by;
}

/// Runs one batch through the transform as the topology does.
fn run_batch(e: &mut Enrich, json: serde_json::Value) -> serde_json::Value {
    let mut out = TransformOutputs::new(&[]);
    Transform::transform(e, vec![event(&json.to_string())], &mut out);
    let (default, _) = out.drain();
    let body = bodies(&default)[0].clone();
    crate::test_support::deliver_all(default);
    body
}

#[test]
fn the_transform_checks_for_reloads_between_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.csv");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    write_stamped(&path, "upn,team\na@x.com,red\n", t0);
    let toml = |interval: &str| {
        format!(
            "[[lookup]]\nfile = {}\nkey = 'UserId'\ncolumn = 'upn'\ntarget = 'u'\nreload_interval = '{interval}'\n",
            lit(&path)
        )
    };
    let team = |e: &mut Enrich| run_batch(e, json!({"UserId": "a@x.com"}))["u"]["team"].clone();

    // `0s` turns reloading off, however much time passes.
    let mut off = enrich(&toml("0s"));
    let clock = manual_clock(&mut off);
    assert_eq!(team(&mut off), "red");
    write_stamped(
        &path,
        "upn,team\na@x.com,blue\n",
        t0 + Duration::from_secs(5),
    );
    advance(&clock, Duration::from_secs(86_400));
    assert_eq!(team(&mut off), "red");

    let mut e = enrich(&toml("1m"));
    let clock = manual_clock(&mut e);
    assert_eq!(team(&mut e), "blue");
    write_stamped(
        &path,
        "upn,team\na@x.com,green\n",
        t0 + Duration::from_secs(10),
    );
    // Before the interval has passed the file is not looked at.
    advance(&clock, Duration::from_secs(30));
    assert_eq!(team(&mut e), "blue");
    // Once it has, the next batch sees the new table.
    advance(&clock, Duration::from_secs(31));
    assert_eq!(team(&mut e), "green");
}

#[test]
fn a_missing_or_broken_table_at_start_is_a_build_error() {
    let broken: EnrichConfig =
        config("[[lookup]]\nfile = '/nonexistent/t.csv'\nkey = 'a'\ncolumn = 'a'\ntarget = 'b'\n");
    let error = broken
        .build(&context("e", "enrich"))
        .err()
        .expect("fails")
        .to_string();
    assert!(
        error.contains("lookup[0]") && error.contains("t.csv"),
        "{error}"
    );
    let config: EnrichConfig = config(&format!(
        "[[lookup]]\nfile = {}\nkey = 'a'\ncolumn = 'nope'\ntarget = 'b'\n",
        lit(&fixture("users.csv"))
    ));
    let error = format!(
        "{:#}",
        config.build(&context("e", "enrich")).err().expect("fails")
    );
    assert!(
        error.contains("no column `nope`") && error.contains("upn"),
        "{error}"
    );
}

/// JSON as MaxMind types it: the readers want `u16` metro codes and `u32` elsewhere.
fn mmdb(key: &str, value: &serde_json::Value) -> mmdb_writer::Value {
    use mmdb_writer::Value as V;
    match value {
        serde_json::Value::String(s) => V::String(s.clone()),
        serde_json::Value::Number(n) => match (n.as_u64(), key) {
            (Some(n), "metro_code") => V::U16(u16::try_from(n).expect("u16")),
            (Some(n), _) => V::U32(u32::try_from(n).expect("u32")),
            (None, _) => V::Double(n.as_f64().expect("float")),
        },
        serde_json::Value::Bool(b) => V::Bool(*b),
        serde_json::Value::Array(items) => V::Array(items.iter().map(|v| mmdb(key, v)).collect()),
        serde_json::Value::Object(map) => {
            V::Map(map.iter().map(|(k, v)| (k.clone(), mmdb(k, v))).collect())
        }
        serde_json::Value::Null => panic!("MaxMind DB has no null"),
    }
}

/// A City database placing 198.51.100.0/24 in `city_name`.
fn city_db(city_name: &str) -> Vec<u8> {
    let mut city = mmdb_writer::Writer::new("GeoIP2-City");
    let record = json!({
        "city": {"names": {"en": city_name}},
        "country": {"iso_code": "FR", "names": {"en": "France"}}
    });
    let net = "198.51.100.0/24".parse::<ipnet::IpNet>().expect("network");
    city.insert_value(net, mmdb("", &record)).expect("insert");
    city.to_bytes().expect("city bytes")
}

/// Writes a file (a table, a database) and stamps it with an explicit time, so no test
/// has to sleep.
fn write_stamped(path: &Path, bytes: impl AsRef<[u8]>, modified: SystemTime) {
    fs::write(path, bytes).expect("write");
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(modified))
        .expect("set mtime");
}

#[test]
fn a_changed_geoip_database_is_reloaded_and_a_broken_one_keeps_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, asn) = write_mmdbs(dir.path());
    let city = dir.path().join("city-reload.mmdb");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    write_stamped(&city, city_db("Paris"), t0);
    let mut e = enrich(&format!(
        "[geoip]\ncity_db = {}\nasn_db = {}\nreload_interval = '1h'\n",
        lit(&city),
        lit(&asn)
    ));
    let name =
        |e: &mut Enrich| run(e, json!({"ClientIP": "198.51.100.7"}))["geo"]["city_name"].clone();
    let geoip = |e: &mut Enrich| e.geoip.as_mut().expect("geoip").reload_if_changed();
    use Reload::{Failed, Reloaded, Unchanged};
    assert_eq!(name(&mut e), "Paris");
    assert_eq!(geoip(&mut e), [Unchanged, Unchanged]);

    write_stamped(&city, city_db("Lyon"), t0 + Duration::from_secs(60));
    assert_eq!(geoip(&mut e), [Reloaded, Unchanged]);
    assert_eq!(name(&mut e), "Lyon");

    // Garbage, then a database cut short (its metadata is at the end): each keeps the
    // database in use, and is tried once.
    let whole = city_db("Nice");
    for (i, broken) in [
        b"not a database".to_vec(),
        whole[..whole.len() / 2].to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        write_stamped(&city, &broken, t0 + Duration::from_secs(120 + i as u64));
        assert_eq!(geoip(&mut e), [Failed, Unchanged]);
        assert_eq!(geoip(&mut e), [Unchanged, Unchanged]);
        assert_eq!(name(&mut e), "Lyon");
    }
    // A deleted file keeps the database too.
    fs::remove_file(&city).expect("remove");
    assert_eq!(geoip(&mut e), [Failed, Unchanged]);
    assert_eq!(name(&mut e), "Lyon");
    // Fixed: picked up.
    write_stamped(&city, &whole, t0 + Duration::from_secs(300));
    assert_eq!(geoip(&mut e), [Reloaded, Unchanged]);
    assert_eq!(name(&mut e), "Nice");
}

#[test]
fn the_transform_checks_geoip_databases_between_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let city = dir.path().join("city.mmdb");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    write_stamped(&city, city_db("Paris"), t0);
    let mut e = enrich(&format!(
        "[geoip]\ncity_db = {}\nreload_interval = '10s'\n",
        lit(&city)
    ));
    let clock = manual_clock(&mut e);
    let name = |e: &mut Enrich| {
        run_batch(e, json!({"ClientIP": "198.51.100.7"}))["geo"]["city_name"].clone()
    };
    assert_eq!(name(&mut e), "Paris");
    write_stamped(&city, city_db("Lyon"), t0 + Duration::from_secs(60));
    advance(&clock, Duration::from_secs(5));
    assert_eq!(name(&mut e), "Paris");
    advance(&clock, Duration::from_secs(6));
    assert_eq!(name(&mut e), "Lyon");
    // `0s` turns reloading off.
    let mut off = enrich(&format!(
        "[geoip]\ncity_db = {}\nreload_interval = '0s'\n",
        lit(&city)
    ));
    let clock = manual_clock(&mut off);
    write_stamped(&city, city_db("Nice"), t0 + Duration::from_secs(120));
    advance(&clock, Duration::from_secs(86_400));
    assert_eq!(name(&mut off), "Lyon");
}

/// Writes a City and an ASN database the way MaxMind lays them out.
fn write_mmdbs(dir: &Path) -> (PathBuf, PathBuf) {
    let mut city = mmdb_writer::Writer::new("GeoIP2-City");
    let paris = json!({
        "city": {"geoname_id": 2988507, "names": {"en": "Paris", "fr": "Paris"}},
        "continent": {"code": "EU", "names": {"en": "Europe"}},
        "country": {"iso_code": "FR", "names": {"en": "France"}},
        "subdivisions": [{"iso_code": "IDF", "names": {"en": "Île-de-France"}}],
        "location": {"latitude": 48.8534, "longitude": 2.3488, "time_zone": "Europe/Paris"},
        "postal": {"code": "75001"}
    });
    let seattle = json!({
        "city": {"names": {"en": "Seattle"}},
        "continent": {"code": "NA"},
        "country": {"iso_code": "US", "names": {"en": "United States"}},
        "location": {"latitude": 47.6062, "longitude": -122.3321, "metro_code": 819}
    });
    let net = |text: &str| text.parse::<ipnet::IpNet>().expect("network");
    city.insert_value(net("198.51.100.0/24"), mmdb("", &paris))
        .expect("insert");
    city.insert_value(net("2001:db8:1::/48"), mmdb("", &seattle))
        .expect("insert");
    let mut asn = mmdb_writer::Writer::new("GeoLite2-ASN");
    let transit = json!({"autonomous_system_number": 64500, "autonomous_system_organization": "Example Transit"});
    asn.insert_value(net("198.51.100.0/24"), mmdb("", &transit))
        .expect("insert");
    let city_path = dir.join("city.mmdb");
    let asn_path = dir.join("asn.mmdb");
    fs::write(&city_path, city.to_bytes().expect("city bytes")).expect("write");
    fs::write(&asn_path, asn.to_bytes().expect("asn bytes")).expect("write");
    (city_path, asn_path)
}

#[test]
fn geoip_city_and_asn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (city, asn) = write_mmdbs(dir.path());
    let mut e = enrich(&format!(
        "[geoip]\ncity_db = {}\nasn_db = {}\n",
        lit(&city),
        lit(&asn)
    ));
    let out = run(&mut e, json!({"ClientIP": "198.51.100.7:50123"}));
    assert_eq!(
        out["geo"],
        json!({
            "city_name": "Paris",
            "continent_code": "EU",
            "country_code": "FR",
            "country_name": "France",
            "region_code": "IDF",
            "region_name": "Île-de-France",
            "postal_code": "75001",
            "timezone": "Europe/Paris",
            "latitude": 48.8534,
            "longitude": 2.3488,
            "autonomous_system_number": 64500,
            "autonomous_system_organization": "Example Transit"
        })
    );
    let out = run(&mut e, json!({"ClientIP": "[2001:db8:1::9]:443"}));
    assert_eq!(out["geo"]["city_name"], "Seattle");
    assert_eq!(out["geo"]["metro_code"], 819);
    assert!(out["geo"].get("autonomous_system_number").is_none());
    let out = run(&mut e, json!({"ClientIP": "::ffff:198.51.100.7"}));
    assert_eq!(out["geo"]["country_code"], "FR");

    for input in [
        json!({"ClientIP": "10.1.2.3"}),
        json!({"ClientIP": null}),
        json!({"UserId": "x"}),
        json!({"ClientIP": "garbage"}),
    ] {
        assert_eq!(run(&mut e, input.clone()), input);
    }
    let misses = e.geoip.as_ref().expect("geoip").misses();
    assert_eq!(misses.get("no_city"), 1);
    assert_eq!(misses.get("no_asn"), 2);
    assert_eq!(misses.get("field_missing"), 2);
    assert_eq!(misses.get("invalid_ip"), 1);
}

#[test]
fn geoip_options_source_and_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, asn) = write_mmdbs(dir.path());
    let mut e = enrich(&format!(
        "[geoip]\nasn_db = {}\nsource = '.ActorIpAddress'\ntarget = 'client.as'\n",
        lit(&asn)
    ));
    let out = run(&mut e, json!({"ActorIpAddress": "198.51.100.200"}));
    assert_eq!(out["client"]["as"]["autonomous_system_number"], 64500);
}

#[test]
fn ip_parsing_variants() {
    let ip = |t: &str| parse_ip(t).map(|ip| ip.to_string());
    assert_eq!(ip("1.2.3.4").as_deref(), Some("1.2.3.4"));
    assert_eq!(ip("1.2.3.4:443").as_deref(), Some("1.2.3.4"));
    assert_eq!(ip("2001:db8::1").as_deref(), Some("2001:db8::1"));
    assert_eq!(ip("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
    assert_eq!(ip("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
    assert_eq!(ip("::ffff:10.1.2.3").as_deref(), Some("10.1.2.3"));
    assert_eq!(ip("1.2.3"), None);
    assert_eq!(ip("1.2.3.4:99999"), None);
    assert_eq!(ip_field(None), IpField::Missing);
    assert_eq!(ip_field(Some(&Value::Null)), IpField::Missing);
    assert_eq!(ip_field(Some(&Value::from("  "))), IpField::Missing);
    assert_eq!(ip_field(Some(&Value::from("x"))), IpField::Invalid);
    assert_eq!(ip_field(Some(&Value::from(7))), IpField::Invalid);
    assert!(matches!(
        ip_field(Some(&Value::from(" 1.2.3.4 "))),
        IpField::Ip(_)
    ));
    assert_eq!(
        parse_net("10.0.0.0/8").map(|n| n.to_string()).as_deref(),
        Some("10.0.0.0/8")
    );
    assert_eq!(
        parse_net("10.0.0.1").map(|n| n.to_string()).as_deref(),
        Some("10.0.0.1/32")
    );
    assert_eq!(parse_net("10.0.0.0/33"), None);
}

#[test]
fn ip_classes() {
    let class = |t: &str| ip_class(parse_ip(t).expect("valid"));
    for (ip, expected) in [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("169.254.1.1", "private"),
        ("fd00::1", "private"),
        ("fe80::1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "invalid"),
        ("255.255.255.255", "invalid"),
        ("224.0.0.1", "invalid"),
        ("::", "invalid"),
        ("ff02::1", "invalid"),
        ("203.0.113.24", "public"),
        ("8.8.8.8", "public"),
        ("172.32.0.1", "public"),
        ("2001:4860::8888", "public"),
    ] {
        assert_eq!(class(ip), expected, "{ip}");
    }
}

#[test]
fn derived_fields() {
    let mut e = enrich(
        r#"
        [derive]
        user_domain = {}
        ip_class = {}
        record_type_name = { to = "siem.record_type" }
        "#,
    );
    let out = run(
        &mut e,
        json!({"UserId": "Alex@Contoso.COM", "ClientIP": "[2001:db8::1]:443", "RecordType": "40"}),
    );
    assert_eq!(out["user_domain"], "contoso.com");
    assert_eq!(out["ip_class"], "public");
    assert_eq!(out["siem"]["record_type"], "SecurityComplianceAlerts");
    let out = run(
        &mut e,
        json!({"UserId": "NT AUTHORITY\\SYSTEM (w3wp.exe)", "ClientIP": "nonsense", "RecordType": 9999}),
    );
    assert!(out.get("user_domain").is_none());
    assert_eq!(out["ip_class"], "invalid");
    assert_eq!(out["siem"]["record_type"], "Unknown(9999)");
    let input = json!({"ClientIP": null});
    assert_eq!(run(&mut e, input.clone()), input);
    let misses: Vec<u64> = e
        .derived
        .iter()
        .map(|d| d.misses().get("field_missing"))
        .collect();
    assert_eq!(misses, vec![1, 1, 1]);
    assert_eq!(e.derived[0].misses().get("no_domain"), 1);
}

#[test]
fn derivation_helpers() {
    assert_eq!(
        user_domain(&Value::from("a@b.example")).as_deref(),
        Some("b.example")
    );
    assert_eq!(
        user_domain(&Value::from("app@sharepoint")).as_deref(),
        Some("sharepoint")
    );
    assert_eq!(user_domain(&Value::from("SecurityComplianceAlerts")), None);
    assert_eq!(user_domain(&Value::from("@contoso.com")), None);
    assert_eq!(user_domain(&Value::from("a@")), None);
    assert_eq!(
        record_type_name(&Value::from(15)).as_deref(),
        Some("AzureActiveDirectoryStsLogon")
    );
    assert_eq!(
        record_type_name(&Value::from(" 6 ")).as_deref(),
        Some("SharePointFileOperation")
    );
    assert_eq!(
        record_type_name(&Value::from("abc")).as_deref(),
        Some("Unknown(abc)")
    );
    assert_eq!(record_type_name(&Value::Null), None);
}

#[test]
fn a_batch_passes_through_in_order_with_acknowledgements() {
    let mut built = build::<EnrichConfig>("enrich_batch", "enrich", "fields.tag = 'x'\n");
    let emitted = built.run(vec![event(r#"{"n":1}"#), event(r#"{"n":2}"#)]);
    assert_eq!(
        bodies(&emitted.default),
        vec![json!({"n":1,"tag":"x"}), json!({"n":2,"tag":"x"})]
    );
}

#[test]
fn config_errors_name_the_key() {
    let keys = |text: &str| -> Vec<String> {
        config::<EnrichConfig>(text)
            .check()
            .into_iter()
            .filter_map(|i| i.key)
            .collect()
    };
    assert_eq!(
        keys(
            "[[lookup]]\nfile = 'a.csv'\nkey = ''\ncolumn = 'c'\ntarget = 't'\nreload_interval = 'soon'\n"
        ),
        vec!["lookup[0].key", "lookup[0].reload_interval"]
    );
    assert_eq!(keys("[geoip]\n"), vec!["geoip"]);
    assert_eq!(keys("fields.x = '{{ .a'\n"), vec!["fields.x"]);
    assert!(
        toml::from_str::<EnrichConfig>(
            "[[lookup]]\nfile='a'\nkey='a'\ncolumn='a'\ntarget='a'\nmatch='prefix'\n"
        )
        .is_err()
    );
    assert!(toml::from_str::<EnrichConfig>("[derive]\nuser_domian = {}\n").is_err());
    assert!(toml::from_str::<EnrichConfig>("feilds = {}\n").is_err());
}
