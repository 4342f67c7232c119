//! The OTLP logs protocol over the shared delivery machinery.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use siemflow_core::delivery::{Failure, Outcome, Protocol, Rejection, Request};
use siemflow_core::metrics::ComponentLabels;
use siemflow_core::{Event, Secret};

use super::config::{OpentelemetrySinkConfig, Transport};
use super::encode::{Mapper, request_body};
use super::grpc::{Answer, GrpcClient};
use super::http::HttpExporter;
use super::status::partial_success;

/// One sink's receiver and mapping.
pub(super) struct Otlp {
    mapper: Mapper,
    transport: Client,
    component: String,
}

enum Client {
    Grpc(GrpcClient),
    Http(HttpExporter),
}

impl Otlp {
    pub fn new(config: &OpentelemetrySinkConfig, labels: &ComponentLabels) -> anyhow::Result<Self> {
        let headers: Vec<(String, Secret)> = config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let transport = match config.protocol {
            Transport::Grpc => Client::Grpc(GrpcClient::new(
                &config.endpoint,
                &config.tls,
                &headers,
                config.compression,
                config.request.timeout,
                labels,
            )?),
            Transport::Http => Client::Http(HttpExporter::new(
                &config.endpoint,
                &config.tls,
                config.proxy.as_ref(),
                &headers,
                config.compression,
                config.request.timeout,
                labels,
            )?),
        };
        Ok(Otlp {
            mapper: Mapper::new(config, labels)?,
            transport,
            component: labels.id.clone(),
        })
    }

    async fn export(&self, body: Vec<u8>) -> Answer {
        match &self.transport {
            Client::Grpc(grpc) => grpc.export(body).await,
            Client::Http(http) => http.export(body).await,
        }
    }

    fn judged(&self, response: Option<ExportLogsServiceResponse>, events: usize) -> Outcome {
        match response {
            Some(response) => partial_success(&response, events, &self.component),
            None => {
                tracing::warn!(
                    component = %self.component,
                    events,
                    "the receiver answered success with a body that is not an ExportLogsServiceResponse; counted as delivered"
                );
                Outcome::Delivered
            }
        }
    }
}

impl Protocol for Otlp {
    fn encode(&self, event: &Event, out: &mut Vec<u8>) -> Result<String, Rejection> {
        Ok(self.mapper.encode(event, chrono::Utc::now(), out))
    }

    async fn send(&self, request: Request<'_>) -> Outcome {
        let body = match request_body(request.partition, request.items) {
            Ok(body) => body,
            // Partitions are this sink's own encoding: this is a bug, never the data's.
            Err(error) => {
                return Outcome::Failed(Failure::Data(Rejection::new(
                    "encoding_failed",
                    format!("cannot build the request: {error:#}"),
                )));
            }
        };
        match self.export(body).await {
            Answer::Ok(response) => self.judged(response, request.len()),
            Answer::Failed(failure) => Outcome::Failed(failure),
        }
    }

    async fn healthcheck(&self) -> Result<(), Failure> {
        // An empty request: the specification asks receivers to answer it with success.
        match self.export(Vec::new()).await {
            Answer::Ok(_) => Ok(()),
            Answer::Failed(failure) => Err(failure),
        }
    }
}
