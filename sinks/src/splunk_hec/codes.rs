//! HEC's response body and status code table (reference §1.5), classified.

use serde::Deserialize;

/// A HEC response body: `{"text", "code"[, "invalid-event-number"][, "ackId"]}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct HecReply {
    #[serde(default)]
    pub text: String,
    pub code: Option<u32>,
    #[serde(rename = "ackId")]
    pub ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    pub invalid_event: Option<usize>,
}

impl HecReply {
    /// The body as HEC sends it; `None` when it is not HEC JSON (a proxy's page, say).
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

/// "Incorrect index": the token may not write to the index named (or it does not exist).
pub(super) const INCORRECT_INDEX: u32 = 7;

/// What a HEC code means for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Taken (0, and 24/25 "approaching capacity", which are still success).
    Ok,
    /// Transient: back off and send again.
    Retry,
    /// The data itself is bad: dead-letter.
    Data,
    /// The token, index or channel setup is wrong: unhealthy, retry slowly.
    Config,
}

/// Where a request's index came from: it decides whose fault an incorrect index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IndexFrom {
    /// The configuration (a fixed `index`) or the token's default: the setup's.
    Config,
    /// Rendered from the events' fields (a request holds one index): those events'.
    Events,
}

/// The class of a HEC code for a request whose index came from `index`, `None` for a
/// code the table does not list.
pub(super) fn classify(code: u32, index: IndexFrom) -> Option<Class> {
    Some(match code {
        // Splunk will never take these events in the index they chose, while every
        // other index flows: retrying them as a configuration error would hold them,
        // and the source behind them, forever.
        INCORRECT_INDEX if index == IndexFrom::Events => Class::Data,
        0 | 17 | 24 | 25 => Class::Ok,
        8 | 9 | 18 | 19 | 20 | 23 | 26 | 27 => Class::Retry,
        5 | 6 | 12 | 13 | 15 => Class::Data,
        1 | 2 | 3 | 4 | 7 | 10 | 11 | 14 | 16 | 21 | 22 => Class::Config,
        _ => return None,
    })
}

/// What an operator should do about a configuration code.
pub(super) fn config_hint(code: u32) -> &'static str {
    match code {
        1 | 22 => "the token is disabled in Splunk; enable it",
        2 | 3 => "the Authorization header was refused; check `token`",
        4 | 21 => "Splunk does not know this token; check `token`",
        7 => {
            "the token may not write to this index; add it to the token's allowed indexes or change `index`"
        }
        10 | 11 => "the token requires a valid channel (indexer acknowledgement is on)",
        14 => {
            "indexer acknowledgement is off for this token; set acknowledgements.enabled = false or turn it on in Splunk"
        }
        16 => "query-string authorization is disabled for this token",
        _ => "check the sink's configuration against the HEC input",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_table() {
        let expected = [
            (0, Class::Ok),
            (1, Class::Config),
            (2, Class::Config),
            (3, Class::Config),
            (4, Class::Config),
            (5, Class::Data),
            (6, Class::Data),
            (7, Class::Config),
            (8, Class::Retry),
            (9, Class::Retry),
            (10, Class::Config),
            (11, Class::Config),
            (12, Class::Data),
            (13, Class::Data),
            (14, Class::Config),
            (15, Class::Data),
            (16, Class::Config),
            (17, Class::Ok),
            (18, Class::Retry),
            (19, Class::Retry),
            (20, Class::Retry),
            (21, Class::Config),
            (22, Class::Config),
            (23, Class::Retry),
            (24, Class::Ok),
            (25, Class::Ok),
            (26, Class::Retry),
            (27, Class::Retry),
        ];
        for (code, class) in expected {
            assert_eq!(
                classify(code, IndexFrom::Config),
                Some(class),
                "code {code}"
            );
            let from_events = if code == INCORRECT_INDEX {
                Class::Data
            } else {
                class
            };
            assert_eq!(
                classify(code, IndexFrom::Events),
                Some(from_events),
                "code {code}"
            );
        }
        assert_eq!(classify(28, IndexFrom::Config), None);
    }

    #[test]
    fn parses_replies() {
        let reply = HecReply::parse(
            br#"{"text":"Invalid data format","code":6,"invalid-event-number":3,"ackId":9}"#,
        )
        .expect("json");
        assert_eq!(reply.code, Some(6));
        assert_eq!(reply.invalid_event, Some(3));
        assert_eq!(reply.ack_id, Some(9));
        assert!(HecReply::parse(b"<html>bad gateway</html>").is_none());
    }
}
