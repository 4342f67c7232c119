use prost::Message as _;
use siemflow_core::Value;
use siemflow_core::external::proto;

use super::*;

#[test]
fn a_framed_batch_is_a_sink_batch_of_the_encoded_events() {
    let values = [Value::from("a"), Value::Integer(7), Value::Null];
    let encoded: Vec<Vec<u8>> = values
        .iter()
        .map(|v| value::event_to_wire(v, value::EventForm::Value).encode_to_vec())
        .collect();
    let bytes = frame(42, encoded.iter().map(Vec::as_slice));
    let batch = proto::SinkBatch::decode(bytes).expect("a SinkBatch");
    assert_eq!(batch.batch_id, 42);
    let decoded: Vec<Value> = batch
        .events
        .into_iter()
        .map(|e| value::event_from_wire(e).expect("valid"))
        .collect();
    assert_eq!(decoded, values);
}

#[test]
fn answers_map_to_the_engine_outcomes() {
    let answer = |outcome| proto::SinkResult {
        batch_id: 1,
        outcome: Some(outcome),
    };
    assert!(matches!(
        outcome(
            answer(sink_result::Outcome::Delivered(proto::Delivered {})),
            2
        ),
        Outcome::Delivered
    ));
    let retry = outcome(
        answer(sink_result::Outcome::Retry(proto::Retry {
            after_ms: 1500,
            reason: "busy".into(),
        })),
        2,
    );
    match retry {
        Outcome::Failed(Failure::Retry {
            retry_after,
            reason,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_millis(1500)));
            assert!(reason.contains("busy"));
        }
        _ => panic!("a retry"),
    }
    let rejected = outcome(
        answer(sink_result::Outcome::Rejected(proto::Rejected {
            indices: vec![1, 9],
            reason: "no such index".into(),
        })),
        3,
    );
    match rejected {
        Outcome::PerEvent(each) => {
            assert_eq!(each[0], EventOutcome::Delivered);
            assert!(matches!(&each[1], EventOutcome::Rejected(r) if r.message == "no such index"));
            assert_eq!(
                each[2],
                EventOutcome::Delivered,
                "an index out of range is ignored"
            );
        }
        _ => panic!("per event"),
    }
    assert!(matches!(
        outcome(
            proto::SinkResult {
                batch_id: 1,
                outcome: None
            },
            1
        ),
        Outcome::Failed(Failure::Retry { .. })
    ));
}
