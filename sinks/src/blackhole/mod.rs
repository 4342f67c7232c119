//! `blackhole`: counts and acknowledges every event without sending it anywhere.
//!
//! For testing pipelines and measuring the rest of them: the sink itself costs nothing.

use std::time::Duration;

use serde::Deserialize;
use siemflow_core::ack::AckSet;
use siemflow_core::{BatchStatus, BoxFuture, ConfigIssue, SinkConfig, SinkContext};
use tokio::time::{Interval, MissedTickBehavior};

use crate::duration;

/// Options of the `blackhole` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {
    /// How often to log the number of events received so far, e.g. `"10s"`; `"none"`
    /// (the default) never logs.
    #[serde(
        default,
        deserialize_with = "duration::deserialize_optional",
        serialize_with = "duration::serialize_optional"
    )]
    #[schemars(with = "String")]
    pub print_interval: Option<Duration>,
}

impl SinkConfig for BlackholeSinkConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        match self.print_interval {
            Some(interval) if interval.is_zero() => vec![
                ConfigIssue::new("print_interval", "must be longer than 0s")
                    .hint("a duration such as \"10s\", or \"none\""),
            ],
            _ => Vec::new(),
        }
    }

    fn build(&self, cx: SinkContext) -> anyhow::Result<BoxFuture<anyhow::Result<()>>> {
        Ok(Box::pin(discard(cx, self.print_interval)))
    }
}

async fn discard(mut cx: SinkContext, print_interval: Option<Duration>) -> anyhow::Result<()> {
    let mut report = print_interval
        .filter(|interval| !interval.is_zero())
        .map(report_timer);
    let mut received: u64 = 0;
    loop {
        let next = match report.as_mut() {
            Some(timer) => tokio::select! {
                batch = cx.input.recv() => batch,
                _ = timer.tick() => {
                    tracing::info!(component = %cx.component.id, events = received, "blackhole received events so far");
                    continue;
                }
            },
            None => cx.input.recv().await,
        };
        let Some(batch) = next else { break };
        let count = batch.len() as u64;
        let mut acks = AckSet::default();
        for mut event in batch {
            if let Some(ack) = event.ack.take() {
                acks.push(ack);
            }
        }
        received += count;
        cx.component.metrics.sent_events.increment(count);
        acks.resolve(BatchStatus::Delivered);
    }
    if report.is_some() {
        tracing::info!(component = %cx.component.id, events = received, "blackhole input closed");
    }
    Ok(())
}

fn report_timer(period: Duration) -> Interval {
    // The first tick of a plain interval fires at once; the first report is due one period in.
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{acked, assert_standard_metrics, harness, labels};
    use serde_json::json;

    fn config(value: serde_json::Value) -> Result<BlackholeSinkConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[tokio::test]
    async fn blackhole_acknowledges_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (h, cx) = harness("hole", "blackhole", dir.path());
        let sink = config(json!({ "print_interval": "10ms" }))
            .expect("valid")
            .build(cx)
            .expect("builds");
        let task = tokio::spawn(sink);
        let mut receipts = Vec::new();
        for i in 0..3 {
            let (batch, receipt) = acked(vec![json!({"n": i}), json!({"n": i + 1})]);
            h.sender.send(batch).await.expect("open");
            receipts.push(receipt);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(h.sender);
        task.await.expect("no panic").expect("runs cleanly");
        for receipt in receipts {
            assert_eq!(receipt.await, BatchStatus::Delivered);
        }
        // The compliance check: 6 received and 6 counted as sent, with the standard labels.
        assert_standard_metrics(&labels("hole", "blackhole"), 6);
    }

    #[test]
    fn blackhole_print_interval_defaults_to_none() {
        assert_eq!(config(json!({})).expect("valid").print_interval, None);
        assert_eq!(
            config(json!({ "print_interval": "none" }))
                .expect("valid")
                .print_interval,
            None
        );
        assert_eq!(
            config(json!({ "print_interval": "10s" }))
                .expect("valid")
                .print_interval,
            Some(Duration::from_secs(10))
        );
        assert!(config(json!({ "print_interval": "often" })).is_err());
        assert!(
            config(json!({ "interval": "10s" })).is_err(),
            "unknown keys are rejected"
        );
        let zero = config(json!({ "print_interval": "0s" })).expect("parses");
        assert_eq!(zero.check()[0].key.as_deref(), Some("print_interval"));
    }
}
