//! OTLP/gRPC: `opentelemetry.proto.collector.logs.v1.LogsService/Export`.

use chrono::Utc;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
use prost::Message as _;
use siemflow_core::otlp::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::Shared;
use super::receive::{self, Accepted, Refusal};

/// The trailer the OpenTelemetry Python exporter reads its retry delay from (it does not
/// read `grpc-status-details-bin`); sent beside the standard details.
const PYTHON_RETRY_INFO: &str = "google.rpc.retryinfo-bin";

/// The `LogsService` of one source.
pub(crate) struct Grpc(pub Shared);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let shared = &self.0;
        let outcome = answer(shared, request).await;
        let status = match &outcome {
            Ok(accepted) if accepted.rejected > 0 => "partial",
            Ok(_) => "ok",
            Err(refusal) => refusal.status_label(),
        };
        shared.counters.request("grpc", status);
        outcome.map(response).map_err(status_of)
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
