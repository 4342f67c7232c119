//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Value, json};
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config, Simulator,
};

pub const PUBLISHER: &str = "9a7c1f36-4c3e-4b0b-8d51-4f2a6e0c1d22";
pub const MANAGE: &str = "https://manage.office.com";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/test-certs")
        .join(name)
}

pub async fn start(cfg: M365Config) -> Simulator {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    Simulator::start(cfg, addr).await.expect("simulator starts")
}

/// `data` gzip-compressed, for `Content-Encoding: gzip` bodies.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs a form to a token endpoint; returns (status, JSON body).
pub async fn token_request(
    sim: &Simulator,
    tenant: &str,
    v1: bool,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let path = if v1 {
        "oauth2/token"
    } else {
        "oauth2/v2.0/token"
    };
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let r = http()
        .post(format!("{}/{tenant}/{path}", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("token body is JSON"))
}

/// A token for the default app by client secret.
pub async fn token(sim: &Simulator) -> String {
    token_for(
        sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
    )
    .await
}

pub async fn token_for(sim: &Simulator, tenant: &str, client: &str, secret: &str) -> String {
    token_for_resource(sim, tenant, client, secret, MANAGE).await
}

/// A token for `resource` (e.g. `https://graph.microsoft.com`) by client secret.
pub async fn token_for_resource(
    sim: &Simulator,
    tenant: &str,
    client: &str,
    secret: &str,
    resource: &str,
) -> String {
    let scope = format!("{resource}/.default");
    let (status, body) = token_request(
        sim,
        tenant,
        false,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// A signed client assertion. `alg` is RS256 (x5t) or PS256 (x5t#S256).
pub fn assertion(alg: &str, key_pem: &str, cert_pem: &str, claims: &Value) -> String {
    let key = pem_block(key_pem, "PRIVATE KEY");
    let cert = pem_block(cert_pem, "CERTIFICATE");
    let header = match alg {
        "RS256" => {
            json!({"alg": "RS256", "typ": "JWT", "x5t": B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert))})
        }
        _ => {
            json!({"alg": "PS256", "typ": "JWT", "x5t#S256": B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert))})
        }
    };
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let pair = RsaKeyPair::from_pkcs8(&key).expect("test key");
    let mut sig = vec![0; pair.public_modulus_len()];
    let padding = if alg == "RS256" {
        &RSA_PKCS1_SHA256
    } else {
        &RSA_PSS_SHA256
    };
    pair.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
        .expect("sign");
    format!("{input}.{}", B64.encode(sig))
}

fn pem_block(file: &str, label: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture(file)).expect("fixture");
    x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .map(|p| p.expect("pem"))
        .find(|p| p.label == label)
        .expect("block")
        .contents
}

pub fn claims(aud: &str, client: &str, now: i64) -> Value {
    json!({"aud": aud, "iss": client, "sub": client, "jti": uuid::Uuid::new_v4().to_string(), "nbf": now, "iat": now, "exp": now + 600})
}

/// GET or POST on the management root; returns (status, headers, body text).
pub async fn call(
    sim: &Simulator,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let url = format!(
        "{}/api/v1.0/{DEFAULT_TENANT_ID}/activity/feed/{path_and_query}",
        sim.base_url()
    );
    call_url(method, &url, token).await
}

pub async fn call_url(
    method: &str,
    url: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let c = http();
    let mut rb = if method == "POST" {
        c.post(url)
    } else {
        c.get(url)
    };
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

/// The AF code of an error body.
pub fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

pub async fn subscribe(sim: &Simulator, token: &str, ct: &str) {
    let (s, _, b) = call(
        sim,
        "POST",
        &format!("subscriptions/start?contentType={ct}&PublisherIdentifier={PUBLISHER}"),
        Some(token),
    )
    .await;
    assert!(s == 200 || code(&b) == "AF20024", "{s} {b}");
}

pub fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A 24-hour window that ends at the last whole minute before now.
pub fn last_day() -> (DateTime<Utc>, DateTime<Utc>) {
    let end = Utc::now()
        .duration_trunc(Duration::minutes(1))
        .expect("trunc")
        - Duration::minutes(1);
    (end - Duration::hours(24), end)
}

/// Lists a window to the end, following NextPageUri (adding PublisherIdentifier, which the
/// service leaves out of it). Returns every descriptor and the size of every page.
pub async fn list_all(
    sim: &Simulator,
    token: &str,
    ct: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (Vec<Value>, Vec<(usize, bool)>) {
    let mut url = format!(
        "{}/api/v1.0/{DEFAULT_TENANT_ID}/activity/feed/subscriptions/content?contentType={ct}&startTime={}&endTime={}&PublisherIdentifier={PUBLISHER}",
        sim.base_url(),
        fmt(start),
        fmt(end)
    );
    let mut all = Vec::new();
    let mut pages = Vec::new();
    for _ in 0..10_000 {
        let (s, h, b) = call_url("GET", &url, Some(token)).await;
        assert_eq!(s, 200, "{url}: {b}");
        let page: Vec<Value> = serde_json::from_str(&b).expect("array");
        let next = h
            .iter()
            .find(|(k, _)| k.as_str().eq_ignore_ascii_case("NextPageUri"))
            .map(|(_, v)| v.to_str().expect("ascii").to_string());
        pages.push((page.len(), next.is_some()));
        all.extend(page);
        match next {
            Some(n) => url = format!("{n}&PublisherIdentifier={PUBLISHER}"),
            None => return (all, pages),
        }
    }
    panic!("paging never ended");
}

pub async fn fetch_blob(token: &str, uri: &str) -> Vec<Value> {
    let (s, _, b) = call_url(
        "GET",
        &format!("{uri}?PublisherIdentifier={PUBLISHER}"),
        Some(token),
    )
    .await;
    assert_eq!(s, 200, "{uri}: {b}");
    serde_json::from_str(&b).expect("blob is a JSON array")
}
