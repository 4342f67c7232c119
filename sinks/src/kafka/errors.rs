//! What a failed delivery report means for its event: dead-letter, or retry (and whether
//! the producer must be replaced first).

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use siemflow_core::delivery::{EventOutcome, Failure, Rejection};

/// The sink's reading of one failed message.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Verdict {
    /// What happens to the event.
    pub outcome: EventOutcome,
    /// The producer is unusable (a fatal idempotence error, or messages timing out — a
    /// broker that lost its producer state refuses the producer id forever): build a new
    /// one before the retry.
    pub replace_producer: bool,
}

/// Classifies the error of a delivery report (or of an enqueue other than a full queue).
///
/// Data: the message can never be accepted as it is — too large, a corrupt record, a
/// topic Kafka refuses or that does not exist, or no permission to write it; the event is
/// dead-lettered with the reason (Vector treats the same codes as final). Everything else
/// was already retried by librdkafka within `message.timeout.ms`: it is retried again
/// under `retry`, after a backoff.
pub(super) fn classify(error: &KafkaError) -> Verdict {
    let code = error.rdkafka_error_code();
    let message = error.to_string();
    let rejected = |reason: &str| Verdict {
        outcome: EventOutcome::Rejected(Rejection::new(reason, message.clone())),
        replace_producer: false,
    };
    use RDKafkaErrorCode as C;
    match code {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge) => {
            rejected("too_large")
        }
        Some(C::InvalidMessage | C::InvalidRecord | C::UnsupportedForMessageFormat) => {
            rejected("invalid_record")
        }
        Some(C::InvalidTopic) => rejected("invalid_topic"),
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            rejected("unknown_topic")
        }
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed,
        ) => rejected("not_authorized"),
        Some(C::InvalidRequiredAcks) => rejected("invalid_required_acks"),
        Some(
            C::Fatal
            | C::MessageTimedOut
            | C::OutOfOrderSequenceNumber
            | C::InvalidProducerEpoch
            | C::UnknownProducerId
            | C::ProducerFenced,
        ) => Verdict {
            outcome: EventOutcome::Retry(Failure::retry(message)),
            replace_producer: true,
        },
        _ => Verdict {
            outcome: EventOutcome::Retry(Failure::retry(message)),
            replace_producer: false,
        },
    }
}
