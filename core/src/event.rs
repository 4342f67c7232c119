//! Events: a JSON-like object plus the acknowledgement share of its source batch.

use vrl::path::OwnedValuePath;
use vrl::value::{ObjectMap, Value};

use crate::ack::{AckReceipt, BatchStatus, EventAck, batch_ack};

/// Events travel between components in batches.
pub type Batch = Vec<Event>;

/// One record moving through the pipeline.
#[derive(Debug, Clone)]
pub struct Event {
    /// The record itself; an object for every event a built-in source emits.
    pub value: Value,
    /// This copy's share in its source batch's acknowledgement, if the source asked for one.
    pub ack: Option<EventAck>,
}

impl Event {
    /// An event with no acknowledgement attached.
    pub fn new(value: Value) -> Self {
        Event { value, ack: None }
    }

    /// An event whose body is the given object.
    pub fn from_object(object: ObjectMap) -> Self {
        Event::new(Value::Object(object))
    }

    /// An event holding one text line in its `message` field.
    pub fn from_message(message: impl Into<Value>) -> Self {
        let mut object = ObjectMap::new();
        object.insert("message".into(), message.into());
        Event::from_object(object)
    }

    /// The value at a VRL path such as `.Workload` or `.Actor[0].ID`.
    pub fn get(&self, path: &OwnedValuePath) -> Option<&Value> {
        self.value.get(path)
    }

    /// Settles this copy as delivered: for a transform that drops an event on purpose.
    pub fn deliver(mut self) {
        if let Some(ack) = self.ack.take() {
            ack.resolve(BatchStatus::Delivered);
        }
    }

    /// Appends the event as one line of compact JSON (no trailing newline).
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        crate::json::write_value(buf, &self.value);
    }
}

/// Attaches a fresh acknowledgement to every event of a batch and returns its receipt.
pub fn attach_ack(batch: &mut [Event]) -> AckReceipt {
    let (ack, receipt) = batch_ack();
    for event in batch.iter_mut() {
        event.ack = Some(ack.clone());
    }
    // The original share was only a template for the clones.
    ack.resolve(BatchStatus::Delivered);
    receipt
}

/// Settles every event of a batch the same way.
pub fn resolve_batch(batch: Vec<Event>, status: BatchStatus) {
    for mut event in batch {
        if let Some(ack) = event.ack.take() {
            ack.resolve(status);
        }
    }
}

/// The event path a config key names: a field name (`Id`) or a VRL path (`.Actor[0].ID`);
/// the event's root is refused. `key` names the option in the issue.
pub fn field_path(key: &str, text: &str) -> Result<OwnedValuePath, crate::ConfigIssue> {
    let trimmed = text.trim();
    let dotted = if trimmed.starts_with('.') {
        trimmed.to_string()
    } else {
        format!(".{trimmed}")
    };
    match vrl::path::parse_value_path(&dotted) {
        Ok(path) if !path.is_root() => Ok(path),
        _ => Err(
            crate::ConfigIssue::new(key, format!("`{text}` is not a field path"))
                .hint("a field name such as `Id`, or a path such as `.Actor[0].ID`"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batch_receipt_waits_for_every_event() {
        let mut batch = vec![Event::from_message("a"), Event::from_message("b")];
        let receipt = attach_ack(&mut batch);
        let second = batch.pop().expect("two events");
        resolve_batch(batch, BatchStatus::Delivered);
        second.deliver();
        assert_eq!(receipt.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn an_empty_batch_is_delivered() {
        let mut batch: Vec<Event> = Vec::new();
        assert_eq!(attach_ack(&mut batch).await, BatchStatus::Delivered);
    }

    #[test]
    fn json_is_compact() {
        let event = Event::from_message("x\"y");
        let mut buf = Vec::new();
        event.write_json(&mut buf);
        assert_eq!(buf, br#"{"message":"x\"y"}"#);
    }
}
