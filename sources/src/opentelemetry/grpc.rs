//! OTLP/gRPC: `opentelemetry.proto.collector.logs.v1.LogsService/Export`.
//!
//! Served as the generated `LogsServiceServer` would serve it (tonic's unary call:
//! framing, gzip, the size limit, status codes), but with a codec that hands prost the
//! message as one slice: the generated codec decodes from tonic's buffer through the
//! general `Buf` path, whose per-varint and per-string calls were ~4 % of a siemflow →
//! siemflow round trip's CPU.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Buf as _;
use chrono::Utc;
use prost::Message as _;
use siemflow_core::otlp::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::Shared;
use super::receive::{self, Accepted, Refusal};

/// The trailer the OpenTelemetry Python exporter reads its retry delay from (it does not
/// read `grpc-status-details-bin`); sent beside the standard details.
const PYTHON_RETRY_INFO: &str = "google.rpc.retryinfo-bin";

/// The Export method of one source, as a route's service.
#[derive(Clone)]
pub(crate) struct Export {
    shared: Arc<Shared>,
    /// The largest message taken, as sent and once decompressed.
    limit: usize,
}

impl Export {
    pub(crate) fn new(shared: Shared, limit: usize) -> Self {
        Export {
            shared: Arc::new(shared),
            limit,
        }
    }
}

impl<B> Service<http::Request<B>> for Export
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ExportCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(method.limit);
            Ok(grpc.unary(method, request).await)
        })
    }
}

impl tonic::server::UnaryService<ExportLogsServiceRequest> for Export {
    type Response = ExportLogsServiceResponse;
    type Future = BoxFuture<Response<ExportLogsServiceResponse>, Status>;

    fn call(&mut self, request: Request<ExportLogsServiceRequest>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let outcome = answer(&shared, request).await;
            let status = match &outcome {
                Ok(accepted) if accepted.rejected > 0 => "partial",
                Ok(_) => "ok",
                Err(refusal) => refusal.status_label(),
            };
            shared.counters.request("grpc", status);
            outcome.map(response).map_err(status_of)
        })
    }
}

/// Decodes requests from one contiguous slice, encodes answers with prost.
#[derive(Clone, Copy)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = ExportLogsServiceRequest;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ExportCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = ExportLogsServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))
    }
}

impl Decoder for ExportCodec {
    type Item = ExportLogsServiceRequest;
    type Error = Status;

    /// A message that does not decode is INTERNAL, as tonic's own codec answers (the
    /// router turns it into INVALID_ARGUMENT for OTLP).
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // tonic's buffer gives the message up without a copy.
        let message = src.copy_to_bytes(src.remaining());
        ExportLogsServiceRequest::decode(message.as_ref())
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

async fn answer(
    shared: &Shared,
    request: Request<ExportLogsServiceRequest>,
) -> Result<Accepted, Refusal> {
    let token = request
        .metadata()
        .get("authorization")
        .map(MetadataValue::as_bytes);
    if !receive::authorized(shared.config.bearer_token.as_ref(), token) {
        return Err(Refusal::Unauthenticated);
    }
    let request = request.into_inner();
    let decoded = receive::events_of(request, Utc::now());
    receive::deliver(shared, decoded).await
}

/// The answer to a request taken in: `partial_success` only when records were refused.
pub(crate) fn response(accepted: Accepted) -> Response<ExportLogsServiceResponse> {
    Response::new(ExportLogsServiceResponse {
        partial_success: (accepted.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
            error_message: accepted.message,
        }),
    })
}

/// The status of a refusal, retryable exactly when the sender should send again (OTLP's
/// table: UNAVAILABLE is, INVALID_ARGUMENT, RESOURCE_EXHAUSTED without RetryInfo and
/// UNAUTHENTICATED are not).
pub(crate) fn status_of(refusal: Refusal) -> Status {
    let message = refusal.to_string();
    match &refusal {
        Refusal::Malformed(_) => Status::invalid_argument(message),
        Refusal::TooLarge { .. } => Status::resource_exhausted(message),
        Refusal::Unauthenticated => Status::unauthenticated(message),
        // What tonic answers a grpc-encoding it does not take.
        Refusal::UnsupportedEncoding(_) => Status::unimplemented(message),
        Refusal::Busy { .. } | Refusal::Undelivered { .. } | Refusal::Slow { .. } => {
            let delay = refusal.retry_after().unwrap_or_default();
            let mut status = Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(delay)),
            );
            let info = tonic_types::pb::RetryInfo::from(tonic_types::RetryInfo::new(Some(delay)));
            status.metadata_mut().insert_bin(
                PYTHON_RETRY_INFO,
                MetadataValue::from_bytes(&info.encode_to_vec()),
            );
            status
        }
    }
}
