//! The HEC wire protocol over the shared delivery machinery.

use std::sync::Arc;

use metrics::Counter;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use siemflow_core::delivery::{
    Compression, DroppedResponse, EventOutcome, Failure, HttpClient, HttpResponse, Outcome,
    Protocol, Rejection, Request,
};
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Event, Secret};
use tokio::sync::OwnedSemaphorePermit;

use super::acks::{AckPoller, AckTracker, with_query};
use super::codes::{Class, HecReply, INCORRECT_INDEX, IndexFrom, classify, config_hint};
use super::config::{EndpointTarget, SplunkHecSinkConfig};
use super::encode::Encoder;

/// One sink's connection to a collector.
pub(super) struct Hec {
    http: HttpClient,
    url: String,
    health_url: String,
    authorization: Secret,
    channel: String,
    target: EndpointTarget,
    host: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    encoder: Encoder,
    compression: Compression,
    acks: Option<Arc<AckTracker>>,
    index_missing: Counter,
}

impl Hec {
    /// The protocol and, with acknowledgements on, the poller to run beside it.
    pub fn new(
        config: &SplunkHecSinkConfig,
        labels: &ComponentLabels,
    ) -> anyhow::Result<(Self, Option<AckPoller>)> {
        let http = HttpClient::new(
            &config.tls,
            config.request.timeout,
            config.proxy.as_ref(),
            labels,
        )?;
        let base = config.endpoint.trim().trim_end_matches('/');
        let path = match config.endpoint_target {
            EndpointTarget::Event => "/services/collector/event",
            EndpointTarget::Raw => "/services/collector/raw",
        };
        // One channel per sink instance: ackIds are per channel, and Splunk wants one
        // even without acknowledgements on some versions.
        let channel = uuid::Uuid::new_v4().to_string();
        let authorization = Secret::new(format!("Splunk {}", config.token.expose().trim()));
        let acks = config.acknowledgements.enabled.then(|| {
            Arc::new(AckTracker::new(
                config.acknowledgements.max_pending_acks,
                config.acknowledgements.ack_timeout,
                labels.gauge("splunk_hec_pending_acks", &[]),
            ))
        });
        let poller = acks.as_ref().map(|tracker| AckPoller {
            tracker: Arc::clone(tracker),
            http: http.clone(),
            url: format!("{base}/services/collector/ack"),
            authorization: authorization.expose().to_string(),
            channel: channel.clone(),
            interval: config.acknowledgements.ack_poll_interval,
            component: labels.id.clone(),
        });
        let hec = Hec {
            url: format!("{base}{path}"),
            health_url: format!("{base}/services/collector/health"),
            http,
            authorization,
            channel,
            target: config.endpoint_target,
            host: config.host.clone(),
            source: config.source.clone(),
            sourcetype: config.sourcetype.clone(),
            encoder: Encoder::new(config)?,
            compression: config.compression,
            acks,
            index_missing: labels.counter(
                "component_errors_total",
                &[
                    ("error_type", "index_field_missing"),
                    ("stage", "processing"),
                ],
            ),
        };
        Ok((hec, poller))
    }

    fn request(&self, partition: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let (url, content_type) = match self.target {
            EndpointTarget::Event => (self.url.clone(), "application/json"),
            EndpointTarget::Raw => {
                let mut query = vec![("channel", self.channel.as_str())];
                for (key, value) in [
                    ("index", (!partition.is_empty()).then_some(partition)),
                    ("host", self.host.as_deref()),
                    ("source", self.source.as_deref()),
                    ("sourcetype", self.sourcetype.as_deref()),
                ] {
                    if let Some(value) = value {
                        query.push((key, value));
                    }
                }
                (with_query(&self.url, &query), "text/plain; charset=utf-8")
            }
        };
        let mut builder = self
            .http
            .inner()
            .post(url)
            .header(AUTHORIZATION, self.authorization.expose())
            .header("x-splunk-request-channel", &self.channel)
            .header(CONTENT_TYPE, content_type);
        if let Some(encoding) = self.compression.content_encoding() {
            builder = builder.header(CONTENT_ENCODING, encoding);
        }
        builder.body(self.compression.compress(body))
    }

    /// Reads HEC's answer to a request of `events` events bound for `index` (the
    /// request's partition).
    async fn judge(
        &self,
        events: usize,
        index: &str,
        response: HttpResponse,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Outcome {
        let status = response.status;
        let reply = HecReply::parse(&response.body);
        let code = reply.as_ref().and_then(|r| r.code);
        let index_from = if !index.is_empty() && self.encoder.index_has_fields() {
            IndexFrom::Events
        } else {
            IndexFrom::Config
        };
        let class = code.and_then(|code| classify(code, index_from));
        let reply = reply.unwrap_or_default();
        let describe = || match code {
            Some(code) => format!("HEC code {code} ({}), HTTP {status}", reply.text),
            None => format!("HTTP {status}"),
        };
        if status.is_success() && matches!(class, Some(Class::Ok) | None) {
            return match (&self.acks, reply.ack_id) {
                (Some(tracker), Some(ack_id)) => {
                    Outcome::Accepted(Box::pin(tracker.wait(ack_id, slot)))
                }
                (Some(_), None) if code.is_none() => Outcome::Failed(Failure::retry(format!(
                    "{}: not a HEC answer, so delivery cannot be confirmed",
                    describe()
                ))),
                _ => Outcome::Delivered,
            };
        }
        match (class, code) {
            (Some(Class::Retry), _) => {
                let failure = Failure::Retry {
                    reason: describe(),
                    retry_after: siemflow_core::http::retry_after(&response.headers),
                };
                match reply.invalid_event.filter(|k| *k > 0 && *k < events) {
                    // Busy part way: events before k were taken, k onwards is sent again.
                    Some(k) => {
                        let mut outcomes = self.taken(k, reply.ack_id, slot).await;
                        outcomes.resize(events, EventOutcome::Retry(failure));
                        Outcome::PerEvent(outcomes)
                    }
                    None => Outcome::Failed(failure),
                }
            }
            (Some(Class::Data), Some(code)) => {
                let message = match code {
                    INCORRECT_INDEX => format!(
                        "{}: the index `{index}`, rendered from the event, is not one the token may write to",
                        describe()
                    ),
                    _ => describe(),
                };
                let rejection = Rejection {
                    reason: data_reason(code).to_string(),
                    message,
                    response: Some(DroppedResponse::new(status.as_u16(), &response.body)),
                };
                match reply.invalid_event {
                    // Splunk stopped at event k (0-based): the ones before it were
                    // indexed, k is bad, the rest were never looked at. An incorrect
                    // index is every event's of the request (it holds one index).
                    Some(k) if k < events && code != INCORRECT_INDEX => {
                        let mut outcomes = self.taken(k, reply.ack_id, slot).await;
                        outcomes.push(EventOutcome::Rejected(rejection));
                        outcomes.resize(events, EventOutcome::Resend);
                        Outcome::PerEvent(outcomes)
                    }
                    _ => Outcome::Failed(Failure::Data(rejection)),
                }
            }
            (Some(Class::Config), Some(code)) => Outcome::Failed(Failure::config(format!(
                "{}: {}",
                describe(),
                config_hint(code)
            ))),
            _ => Outcome::Failed(
                Failure::from_status(status, &response.headers, &response.body)
                    .unwrap_or_else(|| Failure::retry(describe())),
            ),
        }
    }

    /// The first `k` events of a partially failed request were indexed: delivered — once
    /// Splunk acknowledged them when acknowledgements are on.
    async fn taken(
        &self,
        k: usize,
        ack_id: Option<u64>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Vec<EventOutcome> {
        let outcome = match (&self.acks, ack_id) {
            (Some(tracker), Some(ack_id)) if k > 0 => match tracker.wait(ack_id, slot).await {
                Ok(()) => EventOutcome::Delivered,
                Err(failure) => EventOutcome::Retry(failure),
            },
            _ => EventOutcome::Delivered,
        };
        vec![outcome; k]
    }
}

fn data_reason(code: u32) -> &'static str {
    match code {
        5 => "no_data",
        6 => "invalid_data_format",
        12 => "event_field_required",
        13 => "event_field_blank",
        15 => "invalid_indexed_fields",
        INCORRECT_INDEX => "incorrect_index",
        _ => "rejected",
    }
}

impl Protocol for Hec {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        let encoded = self.encoder.encode(event, out, chrono::Utc::now())?;
        if encoded.index_missing {
            self.index_missing.increment(1);
        }
        Ok(encoded.index)
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let slot = match &self.acks {
            Some(tracker) => tracker.slot().await,
            None => None,
        };
        let body = request.body(b"", b"\n", b"\n");
        let response = match self.http.send(self.request(request.partition, body)).await {
            Ok(response) => response,
            Err(failure) => return Outcome::Failed(failure),
        };
        self.judge(request.len(), request.partition, response, slot)
            .await
    }

    async fn healthcheck(&self) -> Result<(), Failure> {
        let response = self
            .http
            .send(self.http.inner().get(&self.health_url))
            .await?;
        if response.status.is_success() {
            return Ok(());
        }
        let reply = HecReply::parse(&response.body).unwrap_or_default();
        let reason = format!(
            "health: HEC code {} ({}), HTTP {}",
            reply
                .code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into()),
            reply.text,
            response.status
        );
        // The health endpoint names no index.
        Err(
            match reply
                .code
                .and_then(|code| classify(code, IndexFrom::Config))
            {
                Some(Class::Config) => Failure::config(reason),
                _ => Failure::retry(reason),
            },
        )
    }
}
