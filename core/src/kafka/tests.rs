use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

/// The connection options as a plugin's table holds them.
#[derive(Deserialize)]
struct Options {
    bootstrap_servers: Option<String>,
    tls: Option<TlsConfig>,
    sasl: Option<SaslConfig>,
    event_hubs: Option<EventHubsConfig>,
    compression: Option<String>,
    #[serde(default)]
    librdkafka_options: BTreeMap<String, String>,
}

impl Options {
    fn parse(text: &str) -> Options {
        toml::from_str(text).expect("options")
    }

    fn connection(&self) -> KafkaConnection<'_> {
        KafkaConnection {
            bootstrap_servers: self.bootstrap_servers.as_deref(),
            tls: self.tls.as_ref(),
            sasl: self.sasl.as_ref(),
            event_hubs: self.event_hubs.as_ref(),
            compression: self.compression.as_deref(),
            librdkafka_options: &self.librdkafka_options,
        }
    }

    fn keys(&self) -> Vec<String> {
        self.connection()
            .issues()
            .into_iter()
            .filter_map(|issue| issue.key)
            .collect()
    }

    fn property(&self, client: KafkaClient, name: &str) -> Option<String> {
        self.connection()
            .properties(client)
            .into_iter()
            .rev()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

const CONN: &str = "Endpoint=sb://contoso-eh.servicebus.windows.net/;SharedAccessKeyName=siemflow-listen;SharedAccessKey=c2VjcmV0S2V5VmFsdWU9PQ==";

#[test]
fn a_connection_string_names_its_namespace_and_hub() {
    let parsed = parse_connection_string(CONN).expect("valid");
    assert_eq!(parsed.host, "contoso-eh.servicebus.windows.net");
    assert_eq!(parsed.entity_path, None);
    let limited = parse_connection_string(&format!("{CONN};EntityPath=xdr")).expect("valid");
    assert_eq!(limited.entity_path.as_deref(), Some("xdr"));
    // Keys in any case, a port in the endpoint, a SAS token instead of a key.
    let sas = parse_connection_string(
        "endpoint=sb://NS.servicebus.windows.net:5671/;sharedaccesssignature=SharedAccessSignature sr=x&sig=y",
    )
    .expect("valid");
    assert_eq!(sas.host, "ns.servicebus.windows.net");
    assert!(!format!("{limited:?}").contains("c2VjcmV0"));
}

#[test]
fn a_malformed_connection_string_says_which_part_and_never_shows_the_key() {
    let problem = |text: &str| parse_connection_string(text).expect_err(text).to_string();
    assert_eq!(problem(" "), "is empty");
    assert!(problem("SharedAccessKeyName=a;SharedAccessKey=b").contains("no Endpoint"));
    assert!(
        problem(
            "Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b"
        )
        .contains("does not start with sb://")
    );
    assert!(problem("Endpoint=sb:///;SharedAccessKeyName=a;SharedAccessKey=b").contains("no host"));
    assert!(
        problem("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a")
            .contains("no SharedAccessKey")
    );
    assert!(
        problem("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=TOPSECRET")
            .contains("no SharedAccessKeyName")
    );
    assert!(problem("Endpoint=sb://ns.servicebus.windows.net/").contains("no SharedAccessKeyName"));
    let no_equals =
        problem("Endpoint=sb://ns.servicebus.windows.net/;TOPSECRET;SharedAccessKeyName=a");
    assert!(no_equals.contains("part 2 of 3 has no `=`"), "{no_equals}");
    assert!(!no_equals.contains("TOPSECRET"));
    assert!(problem(&format!("{CONN};endpoint=sb://x/")).contains("`endpoint` appears twice"));
    assert!(problem(&format!("{CONN};EntityPath=")).contains("empty EntityPath"));
}

#[test]
fn a_connection_string_becomes_sasl_ssl_plain_with_microsofts_settings() {
    let options = Options::parse(&format!(
        "event_hubs = {{ connection_string = \"{CONN}\" }}"
    ));
    assert_eq!(options.keys(), Vec::<String>::new());
    let producer = |name| options.property(KafkaClient::Producer, name);
    assert_eq!(
        producer("bootstrap.servers").as_deref(),
        Some("contoso-eh.servicebus.windows.net:9093")
    );
    assert_eq!(producer("security.protocol").as_deref(), Some("sasl_ssl"));
    assert_eq!(producer("sasl.mechanism").as_deref(), Some("PLAIN"));
    assert_eq!(
        producer("sasl.username").as_deref(),
        Some("$ConnectionString")
    );
    assert_eq!(producer("sasl.password").as_deref(), Some(CONN));
    assert_eq!(producer("ssl.ca.location").as_deref(), Some("probe"));
    assert_eq!(
        producer("ssl.endpoint.identification.algorithm").as_deref(),
        Some("https")
    );
    assert_eq!(producer("socket.keepalive.enable").as_deref(), Some("true"));
    assert_eq!(producer("metadata.max.age.ms").as_deref(), Some("180000"));
    assert_eq!(producer("request.timeout.ms").as_deref(), Some("60000"));
    assert_eq!(producer("session.timeout.ms"), None);
    let consumer = |name| options.property(KafkaClient::Consumer, name);
    assert_eq!(consumer("session.timeout.ms").as_deref(), Some("30000"));
    assert_eq!(consumer("request.timeout.ms"), None);
    assert!(!format!("{:?}", options.event_hubs).contains("c2VjcmV0"));
    assert_eq!(options.connection().oauth().map(|(_, scope)| scope), None);
}

#[test]
fn a_local_stand_in_takes_the_address_and_ca_and_keeps_the_authentication() {
    let options = Options::parse(&format!(
        "event_hubs = {{ connection_string = \"{CONN};EntityPath=xdr\", bootstrap_servers = \"127.0.0.1:19093\" }}\n\
         tls = {{ ca_file = \"Cargo.toml\" }}"
    ));
    assert_eq!(options.keys(), Vec::<String>::new());
    let producer = |name| options.property(KafkaClient::Producer, name);
    assert_eq!(
        producer("bootstrap.servers").as_deref(),
        Some("127.0.0.1:19093")
    );
    assert_eq!(producer("ssl.ca.location").as_deref(), Some("Cargo.toml"));
    assert_eq!(
        producer("sasl.password").as_deref(),
        Some(&*format!("{CONN};EntityPath=xdr"))
    );
    assert_eq!(options.connection().entity_path().as_deref(), Some("xdr"));
}

#[test]
fn entra_authenticates_with_the_namespace_scope() {
    let auth = "auth = { tenant_id = \"contoso.onmicrosoft.com\", client_id = \"00000000-0000-0000-0000-000000000001\", client_secret = \"TOPSECRET\" }";
    let short = Options::parse(&format!(
        "event_hubs = {{ namespace = \"contoso-eh\", {auth} }}"
    ));
    assert_eq!(short.keys(), Vec::<String>::new());
    let producer = |name| short.property(KafkaClient::Producer, name);
    assert_eq!(
        producer("bootstrap.servers").as_deref(),
        Some("contoso-eh.servicebus.windows.net:9093")
    );
    assert_eq!(producer("sasl.mechanism").as_deref(), Some("OAUTHBEARER"));
    assert_eq!(producer("security.protocol").as_deref(), Some("sasl_ssl"));
    assert_eq!(producer("sasl.password"), None);
    assert_eq!(
        short
            .connection()
            .oauth()
            .map(|(_, scope)| scope)
            .as_deref(),
        Some("https://contoso-eh.servicebus.windows.net/.default")
    );
    let gov = Options::parse(&format!(
        "event_hubs = {{ namespace = \"contoso-eh\", {} }}",
        auth.replace("}", ", cloud = \"gcc_high\" }")
    ));
    assert_eq!(
        gov.connection().oauth().map(|(_, scope)| scope).as_deref(),
        Some("https://contoso-eh.servicebus.usgovcloudapi.net/.default")
    );
    let host = Options::parse(&format!(
        "event_hubs = {{ namespace = \"contoso-eh.servicebus.windows.net\", {auth} }}"
    ));
    assert_eq!(
        host.property(KafkaClient::Consumer, "bootstrap.servers")
            .as_deref(),
        Some("contoso-eh.servicebus.windows.net:9093")
    );
}

#[test]
fn contradictions_with_event_hubs_name_their_keys() {
    let options = Options::parse(&format!(
        r#"
bootstrap_servers = "k:9092"
sasl = {{ mechanism = "plain", username = "u", password = "p" }}
tls = {{ verify_certificate = false }}
compression = "zstd"
librdkafka_options = {{ "security.protocol" = "plaintext", "compression.type" = "lz4" }}
event_hubs = {{ connection_string = "{CONN}" }}
"#
    ));
    assert_eq!(
        options.keys(),
        [
            "bootstrap_servers",
            "sasl",
            "tls.verify_certificate",
            "compression",
            "librdkafka_options.compression.type",
            "librdkafka_options.security.protocol",
        ]
    );
    let both = Options::parse(&format!(
        "event_hubs = {{ connection_string = \"{CONN}\", namespace = \"ns\" }}"
    ));
    assert_eq!(both.keys(), ["event_hubs"]);
    assert_eq!(Options::parse("event_hubs = {}").keys(), ["event_hubs"]);
    assert_eq!(
        Options::parse("event_hubs = { namespace = \"ns\" }").keys(),
        ["event_hubs.auth"]
    );
    let bad = Options::parse(
        "event_hubs = { connection_string = \"Endpoint=sb://ns/;SharedAccessKey=TOPSECRET\" }",
    );
    let issues = bad.connection().issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0].key.as_deref(),
        Some("event_hubs.connection_string")
    );
    assert!(issues[0].message.contains("no SharedAccessKeyName"));
    assert!(!format!("{issues:?}").contains("TOPSECRET"));
    // gzip is fine; an unverified stand-in is fine.
    let stand_in = Options::parse(&format!(
        "compression = \"gzip\"\ntls = {{ verify_certificate = false }}\n\
         event_hubs = {{ connection_string = \"{CONN}\", bootstrap_servers = \"127.0.0.1:1\" }}"
    ));
    assert_eq!(stand_in.keys(), Vec::<String>::new());
}

#[test]
fn without_event_hubs_the_options_are_kafkas_own() {
    assert_eq!(Options::parse("").keys(), ["bootstrap_servers"]);
    let plain = Options::parse("bootstrap_servers = \" k1:9092 \"");
    assert_eq!(plain.keys(), Vec::<String>::new());
    assert_eq!(
        plain
            .property(KafkaClient::Producer, "bootstrap.servers")
            .as_deref(),
        Some("k1:9092")
    );
    assert_eq!(
        plain
            .property(KafkaClient::Producer, "security.protocol")
            .as_deref(),
        Some("plaintext")
    );
    assert_eq!(
        plain.property(KafkaClient::Producer, "metadata.max.age.ms"),
        None
    );
    let scram = Options::parse(
        "bootstrap_servers = \"k1:9092\"\nsasl = { mechanism = \"scram-sha-512\", username = \"u\", password = \"p\" }",
    );
    assert_eq!(
        scram
            .property(KafkaClient::Consumer, "security.protocol")
            .as_deref(),
        Some("sasl_plaintext")
    );
    assert_eq!(
        scram
            .property(KafkaClient::Consumer, "sasl.mechanism")
            .as_deref(),
        Some("SCRAM-SHA-512")
    );
    let oauth = Options::parse(
        "bootstrap_servers = \"ns.servicebus.windows.net:9093\"\ntls = {}\n\
         sasl = { mechanism = \"oauthbearer\", auth = { tenant_id = \"contoso.onmicrosoft.com\", client_id = \"00000000-0000-0000-0000-000000000001\", client_secret = \"s\" } }",
    );
    assert_eq!(
        oauth
            .connection()
            .oauth()
            .map(|(_, scope)| scope)
            .as_deref(),
        Some("https://ns.servicebus.windows.net/.default")
    );
}
