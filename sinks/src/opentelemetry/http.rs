//! OTLP/HTTP: `POST <endpoint>/v1/logs` with a binary protobuf body, on the HTTP sinks'
//! shared client.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use siemflow_core::Secret;
use siemflow_core::delivery::{Compression, HttpClient};
use siemflow_core::http::TlsConfig;
use siemflow_core::metrics::ComponentLabels;

use super::grpc::Answer;
use super::status::http_failure;

/// The path OTLP/HTTP receivers take logs on, after the endpoint's own path.
pub(super) const LOGS_PATH: &str = "/v1/logs";

/// One sink's HTTP client to its receiver.
pub(super) struct HttpExporter {
    http: HttpClient,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    compression: Compression,
}

impl HttpExporter {
    /// A client posting to `endpoint` + `/v1/logs` (as `OTEL_EXPORTER_OTLP_ENDPOINT` does).
    pub fn new(
        endpoint: &str,
        tls: &TlsConfig,
        proxy: Option<&Secret>,
        headers: &[(String, Secret)],
        compression: Compression,
        timeout: std::time::Duration,
        labels: &ComponentLabels,
    ) -> anyhow::Result<Self> {
        let mut pairs = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let key = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow::anyhow!("headers: `{name}` is not an HTTP header name"))?;
            // The value is a secret: keep it out of the error and mark it so.
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                anyhow::anyhow!("headers.{name}: the value is not visible ASCII text")
            })?;
            value.set_sensitive(true);
            pairs.push((key, value));
        }
        Ok(HttpExporter {
            http: HttpClient::new(tls, timeout, proxy, labels)?,
            url: format!("{}{LOGS_PATH}", endpoint.trim().trim_end_matches('/')),
            headers: pairs,
            compression,
        })
    }

    /// Posts one encoded `ExportLogsServiceRequest`.
    pub async fn export(&self, body: Vec<u8>) -> Answer {
        let mut request = self
            .http
            .inner()
            .post(&self.url)
            .header(CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(encoding) = self.compression.content_encoding() {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let response = match self
            .http
            .send(request.body(self.compression.compress(body)))
            .await
        {
            Ok(response) => response,
            Err(failure) => return Answer::Failed(failure),
        };
        if response.status.is_success() {
            // An empty body is an empty response: full success.
            return Answer::Ok(ExportLogsServiceResponse::decode(response.body).ok());
        }
        Answer::Failed(http_failure(
            response.status,
            &response.headers,
            &response.body,
        ))
    }
}
