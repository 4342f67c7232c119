//! Producing to Kafka over the shared delivery machinery: a request is a batch of
//! messages handed to librdkafka in order, and its outcome is their delivery reports.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge};
use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use siemflow_core::delivery::{EventOutcome, Failure, Outcome, Protocol, Rejection, Request};
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::template::Template;
use siemflow_core::{Event, Value};
use vrl::path::OwnedValuePath;

use super::config::{KafkaSinkConfig, topic_problem};
use super::errors::classify;
use crate::encoding::LineEncoder;

/// How long the healthcheck waits for the cluster's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before enqueuing again when librdkafka's local queue is full (its
/// delivery reports free room; there is no signal to wait on in the API).
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// One sink's producer and what it makes of events.
pub(super) struct Kafka {
    /// The producer's configuration, to build a new producer when one becomes unusable.
    client_config: ClientConfig,
    producer: RwLock<Arc<FutureProducer<Context>>>,
    context: Context,
    topic: Template,
    key: Option<OwnedValuePath>,
    headers: Vec<(String, OwnedValuePath)>,
    encoder: Mutex<LineEncoder>,
    producers_replaced: Counter,
    component: String,
}

impl Kafka {
    pub fn new(config: &KafkaSinkConfig, labels: &ComponentLabels) -> anyhow::Result<Self> {
        let topic = Template::parse(&config.topic).map_err(anyhow::Error::msg)?;
        let key = match &config.key_field {
            Some(field) => Some(
                siemflow_core::event::field_path("key_field", field)
                    .map_err(|issue| anyhow::anyhow!("key_field: {}", issue.message))?,
            ),
            None => None,
        };
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, field) in &config.headers {
            let path = siemflow_core::event::field_path(&format!("headers.{name}"), field)
                .map_err(|issue| anyhow::anyhow!("headers.{name}: {}", issue.message))?;
            headers.push((name.clone(), path));
        }
        let client_config = config.client_config();
        let mut context = Context::new(labels);
        if let Some((auth, scope)) = config.connection().oauth() {
            context.oauth = Some(Arc::new(OAuth::new(auth, &scope)?));
        }
        let producer = create(&client_config, &context)?;
        Ok(Kafka {
            client_config,
            producer: RwLock::new(Arc::new(producer)),
            context,
            topic,
            key,
            headers,
            encoder: Mutex::new(LineEncoder::new(config.encoding, labels)),
            producers_replaced: labels.counter("kafka_producers_replaced_total", &[]),
            component: labels.id.clone(),
        })
    }

    fn producer(&self) -> Arc<FutureProducer<Context>> {
        Arc::clone(&self.producer.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts a new producer in place of `broken` (unless another call already did). The
    /// old one is dropped once its last user lets go, purging what it still holds.
    fn replace(&self, broken: &Arc<FutureProducer<Context>>, reason: &str) {
        let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, broken) {
            return;
        }
        match create(&self.client_config, &self.context) {
            Ok(producer) => {
                *current = Arc::new(producer);
                self.producers_replaced.increment(1);
                tracing::warn!(component = %self.component, %reason, "replaced the Kafka producer; its failed messages are sent again by the new one");
            }
            Err(error) => {
                tracing::error!(component = %self.component, %error, "could not build a new Kafka producer; keeping the old one")
            }
        }
    }

    /// The message key: the key field's value, text as it is, anything else as JSON.
    fn key<'e>(&self, event: &'e Event) -> Option<Cow<'e, [u8]>> {
        let value = event.get(self.key.as_ref()?)?;
        field_bytes(value)
    }

    fn headers(&self, event: &Event) -> Option<OwnedHeaders> {
        let mut headers: Option<OwnedHeaders> = None;
        for (name, path) in &self.headers {
            if let Some(value) = event.get(path).and_then(field_bytes) {
                headers = Some(headers.unwrap_or_default().insert(Header {
                    key: name,
                    value: Some(value.as_ref()),
                }));
            }
        }
        headers
    }

    /// Hands one message to librdkafka, waiting while its local queue is full.
    async fn enqueue(
        &self,
        producer: &FutureProducer<Context>,
        topic: &str,
        event: &Event,
        payload: &[u8],
    ) -> Result<DeliveryFuture, KafkaError> {
        let key = self.key(event);
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = &key {
            record = record.key(key.as_ref());
        }
        if let Some(headers) = self.headers(event) {
            record = record.headers(headers);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

/// A field's bytes for a key or header: text as it is (borrowed, librdkafka copies it),
/// anything else as JSON text.
fn field_bytes(value: &Value) -> Option<Cow<'_, [u8]>> {
    match value {
        Value::Null => None,
        Value::Bytes(bytes) => Some(Cow::Borrowed(bytes.as_ref())),
        Value::String(text) => Some(Cow::Borrowed(text.as_bytes())),
        other => serde_json::to_vec(other).ok().map(Cow::Owned),
    }
}

fn create(config: &ClientConfig, context: &Context) -> anyhow::Result<FutureProducer<Context>> {
    config
        .create_with_context(context.clone())
        // librdkafka names the property it refused; none of them is echoed with its value.
        .map_err(|error| anyhow::anyhow!("cannot create the Kafka producer: {error}"))
}

impl Protocol for Kafka {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        let topic = self
            .topic
            .render_path(event, chrono::Utc::now())
            .map_err(|message| Rejection::new("topic_field_missing", message))?;
        topic_problem(&topic).map_err(|message| Rejection::new("invalid_topic", message))?;
        self.encoder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .encode(event, out);
        // One event is one message: the line encoder's newline is not part of it.
        out.pop();
        Ok(topic)
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let producer = self.producer();
        // Every message is enqueued before any report is awaited, in order: librdkafka
        // keeps that order per partition (the idempotent producer even across retries).
        let mut pending = Vec::with_capacity(request.len());
        for item in request.items {
            pending.push(
                self.enqueue(&producer, request.partition, &item.event, &item.encoded)
                    .await,
            );
        }
        self.context
            .queue_messages
            .set(producer.in_flight_count() as f64);
        let mut outcomes = Vec::with_capacity(pending.len());
        let mut replace: Option<String> = None;
        for enqueued in pending {
            let report = match enqueued {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(error),
                    Err(_) => Err(KafkaError::Canceled),
                },
                Err(error) => Err(error),
            };
            outcomes.push(match report {
                Ok(()) => EventOutcome::Delivered,
                Err(error) => {
                    let verdict = classify(&error);
                    if verdict.replace_producer {
                        replace.get_or_insert_with(|| error.to_string());
                    }
                    verdict.outcome
                }
            });
        }
        if let Some((code, reason)) = producer.client().fatal_error() {
            replace.get_or_insert_with(|| format!("fatal error {code:?}: {reason}"));
        }
        if let Some(reason) = replace {
            self.replace(&producer, &reason);
        }
        if outcomes.iter().all(|o| *o == EventOutcome::Delivered) {
            Outcome::Delivered
        } else {
            Outcome::PerEvent(outcomes)
        }
    }

    async fn healthcheck(&self) -> Result<(), Failure> {
        let producer = self.producer();
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map(|m| (m.brokers().len(), m.topics().len()))
        })
        .await
        .map_err(|e| Failure::retry(format!("the metadata request did not finish: {e}")))?;
        match metadata {
            Ok((brokers, topics)) => {
                tracing::info!(component = %self.component, brokers, topics, "Kafka cluster metadata fetched");
                Ok(())
            }
            Err(error) => Err(match error.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed,
                ) => Failure::config(format!("cannot read the cluster's metadata: {error}")),
                _ => Failure::retry(format!("cannot read the cluster's metadata: {error}")),
            }),
        }
    }
}

/// OAUTHBEARER tokens from siemflow's Entra token provider (shared with the source).
pub(super) use siemflow_core::kafka::OAuthTokens as OAuth;

/// The producer's callbacks: librdkafka's statistics become the sink's metrics (the
/// names Vector uses), its client-wide errors are logged with the component, and with
/// OAUTHBEARER its tokens come from Entra ID.
#[derive(Clone)]
pub(super) struct Context {
    oauth: Option<Arc<OAuth>>,
    component: String,
    queue_messages: Gauge,
    queue_bytes: Gauge,
    requests: Counter,
    request_bytes: Counter,
    responses: Counter,
    response_bytes: Counter,
    produced_messages: Counter,
    produced_bytes: Counter,
}

impl Context {
    fn new(labels: &ComponentLabels) -> Self {
        Context {
            oauth: None,
            component: labels.id.clone(),
            queue_messages: labels.gauge("kafka_queue_messages", &[]),
            queue_bytes: labels.gauge("kafka_queue_messages_bytes", &[]),
            requests: labels.counter("kafka_requests_total", &[]),
            request_bytes: labels.counter("kafka_requests_bytes_total", &[]),
            responses: labels.counter("kafka_responses_total", &[]),
            response_bytes: labels.counter("kafka_responses_bytes_total", &[]),
            produced_messages: labels.counter("kafka_produced_messages_total", &[]),
            produced_bytes: labels.counter("kafka_produced_messages_bytes_total", &[]),
        }
    }
}

impl ClientContext for Context {
    // librdkafka asks for a token only when sasl.mechanism is OAUTHBEARER.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        match &self.oauth {
            Some(oauth) => {
                let token = oauth.token()?;
                Ok(OAuthToken {
                    token: token.token,
                    principal_name: token.principal_name,
                    lifetime_ms: token.lifetime_ms,
                })
            }
            None => Err(
                "sasl.mechanism is OAUTHBEARER only through the sink's `sasl` or `event_hubs` option"
                    .into(),
            ),
        }
    }

    fn stats(&self, statistics: Statistics) {
        self.queue_messages.set(statistics.msg_cnt as f64);
        self.queue_bytes.set(statistics.msg_size as f64);
        // librdkafka's totals count from the producer's creation; a replaced producer
        // starts again at 0, which Prometheus reads as a counter reset.
        self.requests.absolute(statistics.tx.max(0) as u64);
        self.request_bytes
            .absolute(statistics.tx_bytes.max(0) as u64);
        self.responses.absolute(statistics.rx.max(0) as u64);
        self.response_bytes
            .absolute(statistics.rx_bytes.max(0) as u64);
        self.produced_messages
            .absolute(statistics.txmsgs.max(0) as u64);
        self.produced_bytes
            .absolute(statistics.txmsg_bytes.max(0) as u64);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transport errors (a broker going away) are retried by librdkafka itself.
        tracing::warn!(component = %self.component, %error, %reason, "librdkafka reported an error");
    }
}
