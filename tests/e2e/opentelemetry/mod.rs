//! The `opentelemetry` source and sink through the real binary, against OpenTelemetry's
//! own Python SDK (the sender) and a receiver built on `opentelemetry-proto` and `grpcio`,
//! both from `.venv-test/` (`scripts/test-deps.sh`).

mod sink;
mod source;
