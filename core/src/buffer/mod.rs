//! The buffer in front of every transform and sink.
//!
//! Two kinds sit behind one sender/receiver pair: the in-memory, event-counted channel
//! ([`memory`]) and the durable, size-bounded disk buffer ([`disk`]). Producers and sinks
//! do not know which one they talk to.

pub mod disk;
mod memory;

use std::path::Path;

use serde::Deserialize;

use crate::api::Health;
use crate::event::Batch;
use crate::metrics::ComponentLabels;

/// Default `max_size` of a disk buffer: 256 MiB (Vector's minimum).
pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
/// Smallest `max_size` a disk buffer accepts.
pub const MIN_MAX_SIZE: u64 = 1 << 20;
/// Default `max_events` of a memory buffer (Vector's default).
pub const DEFAULT_MAX_EVENTS: usize = 500;

/// What a full buffer does with the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the slow sink slows its sources.
    #[default]
    Block,
    /// Discard the incoming batch and count it (`buffer_discarded_events_total`).
    DropNewest,
}

/// Where a buffer keeps its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    /// In memory: lost on a crash, which is safe because nothing is acknowledged until the
    /// sink delivered it.
    #[default]
    Memory,
    /// On disk under `data_dir/<sink id>/buffer/`: acknowledged upstream once written
    /// durably, survives crashes and restarts.
    Disk,
}

/// A sink's `buffer` table.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "RawBufferConfig")]
pub struct BufferConfig {
    /// Buffer type: `memory` or `disk`.
    pub kind: BufferType,
    /// Events a memory buffer holds before it is full.
    pub max_events: usize,
    /// Bytes a disk buffer may use on disk before it is full.
    pub max_size: u64,
    /// `block` or `drop_newest`.
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            kind: BufferType::Memory,
            max_events: DEFAULT_MAX_EVENTS,
            max_size: DEFAULT_MAX_SIZE,
            when_full: WhenFull::Block,
        }
    }
}

/// The `buffer` table as written; checked into a [`BufferConfig`].
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawBufferConfig {
    /// `memory` (default) or `disk`.
    #[serde(rename = "type", default)]
    kind: BufferType,
    /// Memory buffers: events held before full (default 500).
    #[serde(default, deserialize_with = "optional_event_count")]
    max_events: Option<usize>,
    /// Disk buffers: bytes on disk before full, e.g. `"256MiB"` (default, at least 1MiB).
    #[serde(default, deserialize_with = "optional_size")]
    max_size: Option<u64>,
    /// `block` (default) or `drop_newest`.
    #[serde(default)]
    when_full: WhenFull,
}

fn optional_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::units::size(d).map(Some)
}

/// A count the memory buffer's semaphore can hold; checked here, rather than after the
/// whole table, so the error points at the value.
fn optional_event_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    use crate::config::checks::{MAX_COUNT, count};
    let max_events = usize::deserialize(d)?;
    count(max_events, MAX_COUNT).map_err(serde::de::Error::custom)?;
    Ok(Some(max_events))
}

impl TryFrom<RawBufferConfig> for BufferConfig {
    type Error = String;

    fn try_from(raw: RawBufferConfig) -> Result<Self, String> {
        let defaults = BufferConfig::default();
        match raw.kind {
            BufferType::Memory => {
                if raw.max_size.is_some() {
                    return Err(
                        "`max_size` is a disk buffer option; a memory buffer counts \
                                events: use `max_events`, or set `type = \"disk\"`"
                            .into(),
                    );
                }
                Ok(BufferConfig {
                    kind: BufferType::Memory,
                    max_events: raw.max_events.unwrap_or(defaults.max_events),
                    when_full: raw.when_full,
                    ..defaults
                })
            }
            BufferType::Disk => {
                if raw.max_events.is_some() {
                    return Err("`max_events` is a memory buffer option; a disk buffer is \
                                bounded in bytes: use `max_size` (e.g. \"256MiB\")"
                        .into());
                }
                let max_size = raw.max_size.unwrap_or(DEFAULT_MAX_SIZE);
                if max_size < MIN_MAX_SIZE {
                    return Err(format!(
                        "`max_size` of a disk buffer must be at least 1MiB ({MIN_MAX_SIZE} bytes); got {max_size}"
                    ));
                }
                Ok(BufferConfig {
                    kind: BufferType::Disk,
                    max_size,
                    when_full: raw.when_full,
                    ..defaults
                })
            }
        }
    }
}

/// The consumer has gone; the batch came back undelivered.
#[derive(Debug)]
pub struct Closed(pub Batch);

#[derive(Clone)]
enum SenderKind {
    Memory(memory::Sender),
    Disk(disk::Sender),
}

#[derive(Clone)]
enum WeakSenderKind {
    Memory(memory::WeakSender),
    Disk(disk::WeakSender),
}

enum ReceiverKind {
    Memory(memory::Receiver),
    Disk(disk::Receiver),
}

/// The sending half; cheap to clone, one per upstream output.
#[derive(Clone)]
pub struct BufferSender(SenderKind);

/// A sender that does not keep the channel open.
#[derive(Clone)]
pub struct WeakBufferSender(WeakSenderKind);

/// The receiving half, owned by the transform or sink task.
pub struct BufferReceiver(ReceiverKind);

/// Creates an in-memory buffer of `config.max_events` for the component with these
/// labels (whatever `config.kind` says; [`open`] builds the configured type).
pub fn channel(config: &BufferConfig, labels: &ComponentLabels) -> (BufferSender, BufferReceiver) {
    let (tx, rx) = memory::channel(config.max_events, config.when_full, labels);
    (
        BufferSender(SenderKind::Memory(tx)),
        BufferReceiver(ReceiverKind::Memory(rx)),
    )
}

/// Creates the buffer `config` asks for; a disk buffer lives in `state_dir/buffer/` and
/// reports failing writes on the sink's `health`. Fails when a disk buffer cannot be
/// opened (e.g. another process holds it).
pub fn open(
    config: &BufferConfig,
    labels: &ComponentLabels,
    state_dir: &Path,
    health: &Health,
) -> anyhow::Result<(BufferSender, BufferReceiver)> {
    match config.kind {
        BufferType::Memory => Ok(channel(config, labels)),
        BufferType::Disk => {
            let options = disk::Options::new(config.max_size, config.when_full);
            let (tx, rx) = disk::open(&state_dir.join(disk::FOLDER), options, labels, health)?;
            Ok((
                BufferSender(SenderKind::Disk(tx)),
                BufferReceiver(ReceiverKind::Disk(rx)),
            ))
        }
    }
}

impl BufferSender {
    /// Queues a batch, waiting for room (or discarding it when `drop_newest`). A memory
    /// buffer queues a batch larger than itself in pieces, so `max_events` is never
    /// exceeded; a disk buffer acknowledges the batch upstream once it is on disk.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        match &self.0 {
            SenderKind::Memory(tx) => tx.send(batch).await,
            SenderKind::Disk(tx) => tx.send(batch).await,
        }
    }

    /// A handle that lets the channel close when every strong sender is gone.
    pub fn downgrade(&self) -> WeakBufferSender {
        WeakBufferSender(match &self.0 {
            SenderKind::Memory(tx) => WeakSenderKind::Memory(tx.downgrade()),
            SenderKind::Disk(tx) => WeakSenderKind::Disk(tx.downgrade()),
        })
    }

    /// True once the receiver is gone.
    pub fn is_closed(&self) -> bool {
        match &self.0 {
            SenderKind::Memory(tx) => tx.is_closed(),
            SenderKind::Disk(tx) => tx.is_closed(),
        }
    }
}

impl WeakBufferSender {
    /// A strong sender, unless the channel already closed.
    pub fn upgrade(&self) -> Option<BufferSender> {
        Some(BufferSender(match &self.0 {
            WeakSenderKind::Memory(tx) => SenderKind::Memory(tx.upgrade()?),
            WeakSenderKind::Disk(tx) => SenderKind::Disk(tx.upgrade()?),
        }))
    }
}

impl BufferReceiver {
    /// The next batch; `None` once every sender is gone and the buffer is empty (a disk
    /// buffer handed to a newer instance of the same sink ends as soon as its senders are
    /// gone: the rest is the newer instance's).
    pub async fn recv(&mut self) -> Option<Batch> {
        match &mut self.0 {
            ReceiverKind::Memory(rx) => rx.recv().await,
            ReceiverKind::Disk(rx) => rx.recv().await,
        }
    }

    /// The next batch if one is waiting, without waiting for more (a disk buffer reads
    /// the record from disk on the calling thread).
    pub fn try_recv(&mut self) -> Option<Batch> {
        match &mut self.0 {
            ReceiverKind::Memory(rx) => rx.try_recv(),
            ReceiverKind::Disk(rx) => rx.try_recv(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BufferConfig, String> {
        toml::from_str::<BufferConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn disk_config_with_units_and_defaults() {
        let config = parse("type = \"disk\"\nmax_size = \"64MiB\"").expect("valid");
        assert_eq!(config.kind, BufferType::Disk);
        assert_eq!(config.max_size, 64 << 20);
        assert_eq!(config.when_full, WhenFull::Block);
        let config = parse("type = \"disk\"\nwhen_full = \"drop_newest\"").expect("valid");
        assert_eq!(config.max_size, DEFAULT_MAX_SIZE);
        assert_eq!(config.when_full, WhenFull::DropNewest);
    }

    #[test]
    fn options_of_the_other_type_are_rejected() {
        let error = parse("type = \"disk\"\nmax_events = 10").expect_err("memory option");
        assert!(
            error.contains("`max_events` is a memory buffer option"),
            "{error}"
        );
        let error = parse("max_size = \"1GiB\"").expect_err("disk option");
        assert!(
            error.contains("`max_size` is a disk buffer option"),
            "{error}"
        );
    }

    #[test]
    fn too_small_and_unknown_keys_are_rejected() {
        let error = parse("type = \"disk\"\nmax_size = \"100KiB\"").expect_err("too small");
        assert!(error.contains("at least 1MiB"), "{error}");
        let error = parse("type = \"disk\"\npath = \"/tmp\"").expect_err("unknown key");
        assert!(error.contains("unknown field `path`"), "{error}");
    }

    #[test]
    fn memory_defaults_are_unchanged() {
        assert_eq!(parse("").expect("empty table"), BufferConfig::default());
        assert_eq!(parse("max_events = 7").expect("valid").max_events, 7);
    }
}
