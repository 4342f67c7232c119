//! The skeleton of docs/plugin-authoring.md, "A new Microsoft pull source: the recipe":
//! compiled here, run against a loopback Graph, and held to be the very code the page
//! shows (between the markers below).

// recipe:start
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use reqwest::Url;
use siemflow_core::auth::{EntraConfig, TokenProvider};
use siemflow_core::event::{Event, attach_ack};
use siemflow_core::settlement::{AfterFailure, OrderedSettlement, Settled};
use siemflow_core::{BatchStatus, SourceContext, Value};

use crate::microsoft::api::GRAPH_SECURITY;
use crate::microsoft::{
    ApiClient, ApiRequest, ClientSettings, CursorStore, ODataPager, PagingError, RecordVersion,
    RetryRules,
};

/// One poll of Graph's alerts_v2 for one tenant: from the saved mark (less the overlap)
/// to now, each page one acknowledged batch, the mark moved over delivered pages only.
pub(crate) async fn poll_alerts(
    entra: &EntraConfig,
    graph_root: &Url,
    http: reqwest::Client,
    cx: &SourceContext,
) -> anyhow::Result<()> {
    // 1. Tokens for the API's audience; the client joins the (tenant, host) budget.
    let tokens = TokenProvider::new(entra, "https://graph.microsoft.com/.default", http.clone())?;
    let client = ApiClient::new(ClientSettings {
        profile: GRAPH_SECURITY,
        tenant_id: &entra.tenant_id,
        api_root: graph_root,
        http,
        tokens,
        windows: GRAPH_SECURITY.windows,
        retries: RetryRules::default(),
        labels: &cx.component.metrics.labels,
    });
    // 2. The cursor store: a high-water mark, an overlap, the pairs already emitted.
    let path = cx.component.ensure_state_dir()?.join("cursors.json");
    let mut store = CursorStore::open(path, TimeDelta::minutes(5))?;
    let key = format!("{}/alerts", client.tenant_id());
    let from = store
        .cursor(&key)
        .and_then(|c| c.query_from())
        .unwrap_or_else(|| Utc::now() - TimeDelta::days(1));
    // 3. Ordered settlement: a failed page rewinds the mark to before it.
    let mut settlement = OrderedSettlement::new(AfterFailure::Rewind);
    settlement.track(key.clone(), store.cursor(&key).and_then(|c| c.high_water()));
    // 4. OData paging; drop versions already emitted; one acknowledged batch per page.
    let since = from.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut url = graph_root.join("v1.0/security/alerts_v2")?;
    url.query_pairs_mut()
        .append_pair("$filter", &format!("lastUpdateDateTime ge {since}"))
        .append_pair("$orderby", "lastUpdateDateTime asc")
        .append_pair("$top", "500");
    let mut pager = ODataPager::new(ApiRequest::get("alerts", url));
    let mut receipts = FuturesUnordered::new();
    loop {
        let page = match pager
            .next_page::<serde_json::Value>(&client, &cx.shutdown)
            .await
        {
            Ok(Some(page)) => page,
            Ok(None) => break,
            // The next poll queries again from the mark.
            Err(PagingError::SkipTokenExpired { .. }) => break,
            Err(PagingError::Api(error)) if error.is_config() => {
                let advice = error.advice(client.profile().permission);
                tracing::error!(%error, "reading alerts failed: {advice}");
                break;
            }
            Err(error) => return Err(error.into()),
        };
        let cursor = store.cursor_mut(&key);
        let (mut events, mut versions, mut reach) = (Vec::new(), Vec::new(), from);
        for item in page.items {
            let text = |name| item.get(name).and_then(serde_json::Value::as_str);
            let (Some(id), Some(updated)) = (text("id"), text("lastUpdateDateTime")) else {
                continue; // a real source keeps and counts it
            };
            let Ok(at) = DateTime::parse_from_rfc3339(updated) else {
                continue;
            };
            let at = at.with_timezone(&Utc);
            let version = RecordVersion::new(id, updated);
            reach = reach.max(at);
            if cursor.admit(version, at) {
                versions.push(version);
                events.push(Event::new(Value::from(item)));
            }
        }
        if events.is_empty() {
            settlement.register_settled(key.clone(), reach);
            continue;
        }
        let ticket = settlement.register(key.clone(), reach);
        let receipt = attach_ack(&mut events);
        cx.out.send(events).await;
        receipts.push(async move { (ticket, versions, receipt.await) });
    }
    // 5. Acknowledgements in any order; the mark moves over the settled prefix.
    while let Some((ticket, versions, status)) = receipts.next().await {
        let cursor = store.cursor_mut(&key);
        cursor.settle(&versions, status == BatchStatus::Delivered);
        match settlement.settle(&ticket, status) {
            Settled::Delivered { advanced: true } => {
                if let Some(mark) = settlement.checkpoint(&key) {
                    cursor.advance(mark);
                }
            }
            // Later pages are void; the next poll reads again from the mark.
            Settled::Failed(failure) => {
                tracing::warn!(resume_from = ?failure.resume_from, "a page was not delivered");
            }
            _ => {}
        }
    }
    // 6. Written crash-safely (from spawn_blocking in a real source).
    store.save()?;
    Ok(())
}
// recipe:end

#[cfg(test)]
mod tests {
    use siemflow_core::event::resolve_batch;

    use super::*;
    use crate::microsoft::tests::{http_and_tokens, json, serve};

    const HEADING: &str = "## A new Microsoft pull source: the recipe";

    /// The first ```rust block after the recipe's heading in the docs.
    fn documented() -> String {
        let page = include_str!("../../../docs/plugin-authoring.md");
        let section = page.split(HEADING).nth(1).expect("the recipe's heading");
        let block = section.split("```rust\n").nth(1).expect("a rust block");
        block.split("```").next().expect("its end").to_string()
    }

    #[test]
    fn the_documented_skeleton_is_this_code() {
        let source = include_str!("recipe.rs");
        let start = source.find("// recipe:start\n").expect("start") + "// recipe:start\n".len();
        let end = source.find("// recipe:end").expect("end");
        assert_eq!(
            documented(),
            source[start..end],
            "docs/plugin-authoring.md and sources/src/microsoft/recipe.rs differ"
        );
    }

    #[tokio::test]
    async fn the_skeleton_polls_a_graph_and_moves_its_mark_over_delivered_pages() {
        let server = serve(|_, _| {
            let alert = |id: &str, minute: u32| {
                format!(r#"{{"id":"{id}","lastUpdateDateTime":"2099-09-01T10:{minute:02}:00.1234567Z"}}"#)
            };
            json(200, &format!(r#"{{"value":[{},{}]}}"#, alert("a", 1), alert("b", 2)))
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wired = crate::testing::wire("recipe", "graph_security", dir.path());
        let (http, _) = http_and_tokens(&server, "https://graph.microsoft.com/.default");
        let entra = EntraConfig {
            tenant_id: crate::microsoft::tests::TENANT.into(),
            client_id: "5e1f3a9c-6b2d-4c8e-9f01-365d0c0a5e1f".into(),
            client_secret: Some(siemflow_core::Secret::new("secret")),
            certificate: None,
            cloud: siemflow_core::auth::Cloud::Commercial,
            login_url: Some(server.base.clone()),
        };
        let root = server.url("/");
        let poll = poll_alerts(&entra, &root, http, &wired.cx);
        let deliver = async {
            let batch = crate::testing::next_batch(&mut wired.rx).await;
            assert_eq!(batch.len(), 2);
            resolve_batch(batch, BatchStatus::Delivered);
        };
        let (polled, ()) = tokio::join!(poll, deliver);
        polled.expect("poll");
        let store = CursorStore::open(dir.path().join("cursors.json"), TimeDelta::minutes(5))
            .expect("saved");
        let cursor = store
            .cursor(&format!("{}/alerts", crate::microsoft::tests::TENANT))
            .expect("cursor");
        assert_eq!(
            cursor.high_water(),
            Some(
                DateTime::parse_from_rfc3339("2099-09-01T10:02:00.1234567Z")
                    .expect("time")
                    .with_timezone(&Utc)
            )
        );
        assert!(!cursor.is_new(&RecordVersion::new("a", "2099-09-01T10:01:00.1234567Z")));
        let calls = server.calls();
        assert_eq!(
            calls.len(),
            1,
            "a short page (2 < 500) ends the walk: {calls:?}"
        );
        assert!(calls[0].target.contains("lastUpdateDateTime"), "{calls:?}");
    }
}
