//! Azure Event Hubs through its simulator: `siemflow simulate event-hubs` (TLS and SASL
//! PLAIN with a connection string) before a real broker (tansu) that advertises the
//! front's address. A real Event Hubs client (confluent-kafka, configured as Microsoft
//! documents it) gets through with the right connection string only; plaintext is cut
//! off; and `examples/eventhubs-xdr-cef-syslog.toml` turns Defender XDR streaming
//! messages written by `siemflow simulate xdr-stream` into one CEF line per record at a
//! syslog receiver.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siemflow_simulator::event_hubs::xdr::{self, XdrStreamConfig};

use crate::harness::free_port;
use crate::harness::{Workspace, binary, poll, venv, wait_for};
use crate::tansu::Broker;

/// The connection string the front accepts (the simulator's kind, not a real key).
const CONN: &str = "Endpoint=sb://siemflow-test.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=dGVzdC1rZXktb25l";

/// A broker and the Event Hubs front before it, each a process stopped when dropped.
struct EventHubs {
    front: Child,
    address: String,
    ca_file: PathBuf,
    _broker: Broker,
}

impl EventHubs {
    fn start(ws: &Workspace) -> EventHubs {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let broker = Broker::start_advertising(ws.dir.path(), &address);
        let ca_file = ws.path("front-ca.pem");
        let stdout = ws.path("front.out");
        let front = Command::new(binary())
            .args(["simulate", "event-hubs", "--listen", &address])
            .args(["--broker", &broker.bootstrap(), "--connection-string", CONN])
            .arg("--ca-out")
            .arg(&ca_file)
            .stdout(std::fs::File::create(&stdout).expect("front stdout"))
            .stderr(std::fs::File::create(ws.path("front.err")).expect("front stderr"))
            .spawn()
            .expect("spawn siemflow simulate event-hubs");
        let mut hubs = EventHubs {
            front,
            address,
            ca_file,
            _broker: broker,
        };
        wait_for("the Event Hubs front", Duration::from_secs(30), || {
            if let Some(status) = hubs.front.try_wait().expect("try_wait") {
                panic!(
                    "the front exited ({status}): {}",
                    std::fs::read_to_string(ws.path("front.err")).unwrap_or_default()
                );
            }
            std::fs::read_to_string(&stdout)
                .ok()
                .filter(|text| text.contains("ready at"))
        });
        hubs
    }

    /// tests/kafka/event_hubs_client.py with `connection_string`: its JSON report.
    fn client(&self, connection_string: &str, topic: &str, count: usize) -> serde_json::Value {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/kafka/event_hubs_client.py");
        let output = Command::new(venv().join("bin/python"))
            .arg(script)
            .arg(&self.address)
            .arg(&self.ca_file)
            .args([connection_string, topic, &count.to_string()])
            .output()
            .expect("run event_hubs_client.py");
        assert!(
            output.status.success(),
            "event_hubs_client.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON from event_hubs_client.py")
    }
}

impl Drop for EventHubs {
    fn drop(&mut self) {
        let _ = self.front.kill();
        let _ = self.front.wait();
    }
}

#[test]
fn the_front_lets_only_the_right_connection_string_through_and_only_over_tls() {
    let ws = Workspace::new();
    let hubs = EventHubs::start(&ws);

    let right = hubs.client(CONN, "roundtrip", 50);
    assert_eq!(right, serde_json::json!({"produced": 50, "consumed": 50}));

    let wrong_key = CONN.replace("dGVzdC1rZXktb25l", "d3Jvbmcta2V5");
    let refused = hubs.client(&wrong_key, "refused", 5);
    assert_eq!(refused["refused"], "_AUTHENTICATION", "{refused}");
    let reason = refused["reason"].as_str().expect("reason");
    assert!(
        reason.contains("SASL authentication error: Authentication failed"),
        "librdkafka passes on the front's message: {reason}"
    );

    // A plaintext ApiVersions request: the front closes without answering.
    let mut plain = TcpStream::connect(&hubs.address).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut request = Vec::new();
    request.extend_from_slice(&18i16.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&1i32.to_be_bytes());
    request.extend_from_slice(&(-1i16).to_be_bytes());
    let mut framed = (request.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    // The front may already have closed: a failed write is the same refusal.
    let _ = plain.write_all(&framed);
    let mut answer = Vec::new();
    match plain.read_to_end(&mut answer) {
        Ok(_) => assert!(answer.is_empty(), "plaintext got an answer: {answer:?}"),
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset,
            "plaintext: {error}"
        ),
    }
    // The front logs a closed connection once its task has ended, just after the close.
    let logged = poll(Duration::from_secs(30), || {
        std::fs::read_to_string(ws.path("front.err"))
            .ok()
            .filter(|log| log.contains("not TLS"))
    });
    assert!(
        logged.is_some(),
        "the front logs the refusal: {}",
        std::fs::read_to_string(ws.path("front.err")).unwrap_or_default()
    );
}

/// A syslog receiver over TCP with newline framing: every line it was sent.
fn syslog_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the syslog receiver");
    let address = listener.local_addr().expect("address").to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::clone(&lines);
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(connection) = connection else { continue };
            let lines = Arc::clone(&received);
            std::thread::spawn(move || {
                for line in BufReader::new(connection).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("lines").push(line);
                }
            });
        }
    });
    (address, lines)
}

/// The example with the simulator's address, CA and connection string, the receiver and
/// a free API port; each replaced text must be in the example as written.
fn example_against(hubs: &EventHubs, syslog: &str) -> String {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/eventhubs-xdr-cef-syslog.toml"
    ))
    .expect("the example");
    let replacements = [
        (
            "address = \"127.0.0.1:8688\"",
            "address = \"127.0.0.1:0\"".to_string(),
        ),
        (
            "# tls = { ca_file = \"eventhubs-sim-ca.pem\" }",
            format!("tls = {{ ca_file = \"{}\" }}", hubs.ca_file.display()),
        ),
        (
            "# bootstrap_servers = \"127.0.0.1:9093\"",
            format!("bootstrap_servers = \"{}\"", hubs.address),
        ),
        (
            "${EH_CONN:-Endpoint=sb://contoso-eh.servicebus.windows.net/;SharedAccessKeyName=siemflow-listen;SharedAccessKey=set-EH_CONN}",
            CONN.to_string(),
        ),
        (
            "${SYSLOG_ADDRESS:-smartconnector.example:514}",
            syslog.to_string(),
        ),
    ];
    let mut config = example;
    for (from, to) in replacements {
        assert!(config.contains(from), "the example no longer holds {from}");
        config = config.replace(from, &to);
    }
    config
}

/// (table, externalId) of a CEF line: the header's class id and the extension's key.
fn table_and_id(line: &str) -> (String, String) {
    let cef = &line[line
        .find("CEF:0|")
        .unwrap_or_else(|| panic!("not CEF: {line}"))..];
    let fields: Vec<&str> = cef.splitn(8, '|').collect();
    assert_eq!(fields[1], "Microsoft", "{line}");
    assert_eq!(fields[2], "Defender XDR Advanced Hunting", "{line}");
    let id = fields[7]
        .split(' ')
        .find_map(|pair| pair.strip_prefix("externalId="))
        .unwrap_or_else(|| panic!("no externalId: {line}"));
    (fields[4].to_string(), id.to_string())
}

#[test]
fn defender_xdr_streaming_through_event_hubs_becomes_one_cef_line_per_record() {
    const MESSAGES: usize = 40;
    const PER_MESSAGE: usize = 7;
    const SEED: u64 = 3;
    let ws = Workspace::new();
    let hubs = EventHubs::start(&ws);
    let (syslog, lines) = syslog_receiver();

    let generated = Command::new(binary())
        .args(["simulate", "xdr-stream", "--to", &hubs.address])
        .args(["--topic", "defender-xdr", "--connection-string", CONN])
        .arg("--ca-file")
        .arg(&hubs.ca_file)
        .args(["--messages", &MESSAGES.to_string()])
        .args(["--records-per-message", &PER_MESSAGE.to_string()])
        .args(["--seed", &SEED.to_string()])
        .output()
        .expect("run siemflow simulate xdr-stream");
    assert!(
        generated.status.success(),
        "xdr-stream failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let total = MESSAGES * PER_MESSAGE;
    assert!(
        String::from_utf8_lossy(&generated.stdout).contains(&format!("({total} records)")),
        "{}",
        String::from_utf8_lossy(&generated.stdout)
    );

    // What was written, record for record: the generator is deterministic for a seed
    // (its timestamps follow the clock, the rest does not).
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    let config = XdrStreamConfig {
        messages: MESSAGES,
        records_per_message: PER_MESSAGE,
        seed: SEED,
        ..XdrStreamConfig::default()
    };
    for message in xdr::messages(&config) {
        let body: serde_json::Value = serde_json::from_str(&message).expect("JSON");
        for record in body["records"].as_array().expect("records") {
            let properties = &record["properties"];
            let id = ["ReportId", "AlertId", "NetworkMessageId"]
                .iter()
                .find_map(|key| match &properties[*key] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(text) => Some(text.clone()),
                    other => Some(other.to_string()),
                })
                .expect("an id");
            let table = record["category"].as_str().expect("category").to_string();
            *expected.entry((table, id)).or_default() += 1;
        }
    }
    assert_eq!(expected.values().sum::<usize>(), total);

    ws.write("p.toml", &example_against(&hubs, &syslog));
    let mut pipeline = ws.run("p.toml", Stdio::null());
    let arrived = poll(Duration::from_secs(120), || {
        let lines = lines.lock().expect("lines");
        (lines.len() >= total).then(|| lines.clone())
    });
    let arrived = arrived.unwrap_or_else(|| {
        panic!(
            "{} of {total} lines arrived; siemflow's log:\n{}",
            lines.lock().expect("lines").len(),
            pipeline.logs()
        )
    });
    let mut delivered: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in &arrived {
        *delivered.entry(table_and_id(line)).or_default() += 1;
    }
    assert_eq!(delivered, expected, "every record once, its table kept");
    let tables: std::collections::BTreeSet<_> = delivered.keys().map(|(t, _)| t).collect();
    assert_eq!(tables.len(), xdr::CATEGORIES.len(), "{tables:?}");
    println!(
        "{MESSAGES} Event Hubs messages, {total} records, {} CEF lines in {} tables",
        arrived.len(),
        tables.len()
    );
    pipeline.signal(libc::SIGTERM);
    assert!(pipeline.wait_exit(Duration::from_secs(60)).success());
}
