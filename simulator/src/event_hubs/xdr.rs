//! Defender XDR streaming messages in Microsoft's shape (m365-sources.md §4.2): each
//! message body is `{"records": [...]}` with records of several `AdvancedHunting-<Table>`
//! categories, each with `time`, `tenantId`, `operationName` ("Publish"), `category`,
//! `Tenant`, `_TimeReceivedBySvc` and the advanced-hunting row under `properties`
//! (PascalCase columns; `AdditionalFields` and other dynamic columns as JSON text).
//! Deterministic for a seed, so tests can compare what arrives with what was written.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The tables the generator takes turns with, as the streaming API names them.
pub const CATEGORIES: &[&str] = &[
    "AdvancedHunting-DeviceProcessEvents",
    "AdvancedHunting-DeviceNetworkEvents",
    "AdvancedHunting-DeviceLogonEvents",
    "AdvancedHunting-AlertInfo",
    "AdvancedHunting-AlertEvidence",
    "AdvancedHunting-EmailEvents",
    "AdvancedHunting-IdentityLogonEvents",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct XdrStreamConfig {
    /// How many Event Hubs messages.
    pub messages: usize,
    /// Records in each message (several categories in one message, as Defender sends).
    pub records_per_message: usize,
    /// Picks the devices, users and values.
    pub seed: u64,
    /// `Timestamp` of the first record; later ones follow a second apart.
    pub start: DateTime<Utc>,
    /// The tenant the records belong to.
    pub tenant_id: String,
}

impl Default for XdrStreamConfig {
    fn default() -> Self {
        XdrStreamConfig {
            messages: 10,
            records_per_message: 5,
            seed: 1,
            start: DateTime::parse_from_rfc3339("2026-09-01T10:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            tenant_id: "41463f53-8812-40f4-890f-865bf6e35190".to_string(),
        }
    }
}

impl XdrStreamConfig {
    /// `messages` of `records_per_message` records whose timestamps start now.
    pub fn starting_now(messages: usize, records_per_message: usize, seed: u64) -> Self {
        XdrStreamConfig {
            messages,
            records_per_message,
            seed,
            start: Utc::now(),
            ..XdrStreamConfig::default()
        }
    }
}

/// A small deterministic generator (SplitMix64): the same seed, the same messages.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Defender's timestamps: ISO 8601 with seven fractional digits.
fn timestamp(time: DateTime<Utc>) -> String {
    let micros = time.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    format!("{micros}0Z")
}

const DEVICES: &[&str] = &[
    "ws-0142.contoso.com",
    "ws-0177.contoso.com",
    "srv-sql01.contoso.com",
    "lt-alex.contoso.com",
];
const ACCOUNTS: &[&str] = &["alex", "dana", "svc-backup", "morgan"];
const GROUPS: &[&str] = &["Finance", "Engineering", "Servers"];

/// Record `sequence` of the stream: its table by turn, its values from the seed.
fn record(config: &XdrStreamConfig, rng: &mut Rng, sequence: u64) -> Value {
    let category = CATEGORIES[(sequence % CATEGORIES.len() as u64) as usize];
    let event_time = config.start + TimeDelta::seconds(sequence as i64);
    let received = event_time + TimeDelta::milliseconds(80_000 + (rng.next() % 5_000) as i64);
    let sent = received + TimeDelta::milliseconds(1_500);
    let device = rng.pick(DEVICES);
    let device_id = format!(
        "{:040x}",
        u128::from(rng.next()) << 32 | u128::from(sequence)
    );
    let account = rng.pick(ACCOUNTS);
    let report_id = 10_000 + sequence;
    let properties = match category {
        "AdvancedHunting-DeviceProcessEvents" => json!({
            "Timestamp": timestamp(event_time), "DeviceId": device_id, "DeviceName": device,
            "ActionType": "ProcessCreated", "FileName": "powershell.exe",
            "FolderPath": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "ProcessId": 4000 + rng.next() % 4000,
            "ProcessCommandLine": "powershell.exe -nop -w hidden -enc SQBFAFgA",
            "SHA256": format!("{:016x}{:016x}{:016x}{:016x}", rng.next(), rng.next(), rng.next(), rng.next()),
            "AccountName": account, "AccountDomain": "contoso",
            "InitiatingProcessFileName": "winword.exe", "ReportId": report_id,
            "MachineGroup": rng.pick(GROUPS),
            "AdditionalFields": format!("{{\"ProcessStartKey\":{}}}", 1_688_849_860_000_000 + sequence),
        }),
        "AdvancedHunting-DeviceNetworkEvents" => json!({
            "Timestamp": timestamp(event_time), "DeviceId": device_id, "DeviceName": device,
            "ActionType": "ConnectionSuccess", "RemoteIP": format!("203.0.113.{}", rng.next() % 250 + 1),
            "RemotePort": 443, "RemoteUrl": "update.contoso-cdn.example", "LocalIP": "10.1.4.17",
            "LocalPort": 49152 + rng.next() % 16000, "Protocol": "Tcp",
            "InitiatingProcessFileName": "msedge.exe", "ReportId": report_id,
            "MachineGroup": rng.pick(GROUPS), "AdditionalFields": "{}",
        }),
        "AdvancedHunting-DeviceLogonEvents" => json!({
            "Timestamp": timestamp(event_time), "DeviceId": device_id, "DeviceName": device,
            "ActionType": if rng.next().is_multiple_of(4) { "LogonFailed" } else { "LogonSuccess" },
            "LogonType": "RemoteInteractive", "AccountName": account, "AccountDomain": "contoso",
            "RemoteIP": format!("198.51.100.{}", rng.next() % 250 + 1), "ReportId": report_id,
            "MachineGroup": rng.pick(GROUPS), "AdditionalFields": "{\"IsLocalLogon\":false}",
        }),
        "AdvancedHunting-AlertInfo" => json!({
            "Timestamp": timestamp(event_time),
            "AlertId": format!("da{:018}_{}", 638_912_345_678_901_234u64 + sequence, rng.next() % 1_000_000_000),
            "Title": "Suspicious PowerShell command line", "Category": "Execution",
            "Severity": rng.pick(&["Low", "Medium", "High"]),
            "ServiceSource": "Microsoft Defender for Endpoint", "DetectionSource": "EDR",
            "AttackTechniques": "[\"PowerShell (T1059.001)\"]",
        }),
        "AdvancedHunting-AlertEvidence" => json!({
            "Timestamp": timestamp(event_time),
            "AlertId": format!("da{:018}_{}", 638_912_345_678_901_234u64 + sequence, rng.next() % 1_000_000_000),
            "Title": "Suspicious PowerShell command line", "Categories": "[\"Execution\"]",
            "AttackTechniques": "[\"PowerShell (T1059.001)\"]", "ServiceSource": "Microsoft Defender for Endpoint",
            "DetectionSource": "EDR", "EntityType": "Machine", "EvidenceRole": "Impacted",
            "DeviceId": device_id, "DeviceName": device, "Severity": "Medium",
            "AdditionalFields": format!("{{\"HostName\":\"{}\",\"Type\":\"host\"}}", device.split('.').next().unwrap_or(device)),
        }),
        "AdvancedHunting-EmailEvents" => json!({
            "Timestamp": timestamp(event_time),
            "NetworkMessageId": format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", rng.next() as u32, sequence as u16, rng.next() % 4096, rng.next() % 4096, rng.next() % (1 << 48)),
            "InternetMessageId": format!("<msg-{sequence}@fabrikam.example>"),
            "SenderFromAddress": "billing@fabrikam.example", "RecipientEmailAddress": format!("{account}@contoso.com"),
            "Subject": "Invoice overdue", "DeliveryAction": "Delivered", "DeliveryLocation": "Inbox/folder",
            "EmailDirection": "Inbound", "ThreatTypes": "Phish", "ReportId": format!("{report_id}-ec"),
            "AdditionalFields": "{}",
        }),
        _ => json!({
            "Timestamp": timestamp(event_time), "ActionType": "LogonSuccess", "Application": "Active Directory",
            "LogonType": "Resource access", "Protocol": "Kerberos", "AccountName": account,
            "AccountDomain": "contoso.com", "AccountUpn": format!("{account}@contoso.com"),
            "DeviceName": device, "IPAddress": format!("10.1.{}.{}", rng.next() % 250, rng.next() % 250 + 1),
            "DestinationDeviceName": "dc01.contoso.com", "ReportId": format!("{report_id}-id"),
            "AdditionalFields": "{\"Spns\":\"krbtgt/CONTOSO.COM\"}",
        }),
    };
    json!({
        "time": timestamp(sent),
        "tenantId": config.tenant_id,
        "operationName": "Publish",
        "category": category,
        "Tenant": "DefaultTenant",
        "_TimeReceivedBySvc": timestamp(received),
        "properties": properties,
    })
}

/// The messages, each a `{"records": [...]}` body; record `i` of the whole stream is in
/// message `i / records_per_message`.
pub fn messages(config: &XdrStreamConfig) -> Vec<String> {
    let mut rng = Rng(config.seed);
    let per_message = config.records_per_message.max(1);
    (0..config.messages)
        .map(|m| {
            let records: Vec<Value> = (0..per_message)
                .map(|r| record(config, &mut rng, (m * per_message + r) as u64))
                .collect();
            json!({ "records": records }).to_string()
        })
        .collect()
}

/// How long the producer may take to deliver every message.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The producer's callbacks: an authentication failure ends the run at once (librdkafka
/// would otherwise retry until the messages time out).
struct Context {
    refused: watch::Sender<Option<String>>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                self.refused.send_replace(Some(reason.to_string()));
            }
            _ => tracing::warn!(%error, %reason, "librdkafka reported an error"),
        }
    }
}

/// Produces `messages` to `topic` with librdkafka configured by `properties` (the
/// connection's: address, TLS, SASL) and waits for every delivery report. Returns how
/// many were delivered; the first failure, or the broker refusing the credentials, is an
/// error.
pub async fn produce(
    properties: &[(String, String)],
    topic: &str,
    messages: &[String],
) -> anyhow::Result<usize> {
    let (refused, mut refusal) = watch::channel(None);
    let delivered = deliver(properties, topic, messages, Context { refused });
    // The reason is copied out: a borrow would hold the channel's lock while the dropped
    // producer's thread may still be reporting into it.
    let refused = async move {
        refusal
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default())
    };
    tokio::select! {
        result = delivered => result,
        Ok(reason) = refused => anyhow::bail!("authentication refused: {reason}"),
    }
}

async fn deliver(
    properties: &[(String, String)],
    topic: &str,
    messages: &[String],
    context: Context,
) -> anyhow::Result<usize> {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config.set("enable.idempotence", "true").set(
        "message.timeout.ms",
        DELIVERY_TIMEOUT.as_millis().to_string(),
    );
    let producer: FutureProducer<Context> = config
        .create_with_context(context)
        .context("cannot create the Kafka producer")?;
    let mut pending = Vec::with_capacity(messages.len());
    for message in messages {
        let mut record = FutureRecord::<(), str>::to(topic).payload(message.as_str());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    // Delivery reports free the queue; poll serves them.
                    producer.poll(Duration::from_millis(100));
                }
                Err((error, _)) => return Err(error).context("cannot enqueue a message"),
            }
        }
    }
    let mut delivered = 0;
    for delivery in pending {
        match delivery.await {
            Ok(Ok(_)) => delivered += 1,
            Ok(Err((error, _))) => {
                return Err(error).with_context(|| {
                    format!(
                        "message {} of {} was not delivered",
                        delivered + 1,
                        messages.len()
                    )
                });
            }
            Err(_) => anyhow::bail!("the producer went away before every delivery report"),
        }
    }
    producer
        .flush(DELIVERY_TIMEOUT)
        .context("flushing the producer")?;
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_hold_records_of_several_tables_in_microsofts_shape() {
        let config = XdrStreamConfig {
            messages: 3,
            records_per_message: 7,
            ..XdrStreamConfig::default()
        };
        let messages = messages(&config);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages, super::messages(&config), "deterministic");
        let mut categories = std::collections::BTreeSet::new();
        for message in &messages {
            let body: Value = serde_json::from_str(message).expect("JSON");
            let records = body["records"].as_array().expect("records");
            assert_eq!(records.len(), 7);
            for record in records {
                assert_eq!(record["operationName"], "Publish");
                assert_eq!(record["Tenant"], "DefaultTenant");
                assert_eq!(record["tenantId"], config.tenant_id);
                let time = record["time"].as_str().expect("time");
                assert_eq!(time.len(), "2026-09-01T10:14:02.5512034Z".len(), "{time}");
                let properties = record["properties"].as_object().expect("properties");
                assert!(
                    properties["Timestamp"]
                        .as_str()
                        .is_some_and(|t| t.ends_with('Z'))
                );
                if let Some(fields) = properties.get("AdditionalFields") {
                    let text = fields.as_str().expect("AdditionalFields is JSON text");
                    serde_json::from_str::<Value>(text).expect("valid JSON inside");
                }
                categories.insert(record["category"].as_str().expect("category").to_string());
            }
        }
        assert_eq!(categories.len(), CATEGORIES.len());
        let first: Value = serde_json::from_str(&messages[0]).expect("JSON");
        let tables: std::collections::BTreeSet<_> = first["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["category"].to_string())
            .collect();
        assert!(tables.len() > 1, "one message mixes tables");
    }
}
