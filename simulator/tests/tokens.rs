//! Entra ID token endpoint: secret and certificate flows, and the AADSTS refusals.

mod common;

use common::*;
use serde_json::Value;
use siemflow_simulator::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, M365Config, TenantConfig,
};

type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, u64);

fn aad_code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or_default()
}

fn secret_form<'a>(client: &'a str, secret: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
        ("scope", scope),
    ]
}

#[tokio::test]
async fn secret_flow_v2_and_v1() {
    let sim = start(M365Config::default()).await;
    let (s, b) = token_request(
        &sim,
        DEFAULT_TENANT_ID,
        false,
        &secret_form(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            "https://manage.office.com/.default",
        ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 3599);
    assert!(b["ext_expires_in"].is_number());
    let (s, b) = token_request(
        &sim,
        DEFAULT_TENANT_ID,
        true,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("resource", MANAGE),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["expires_in"], "3599", "v1 answers strings");
    assert!(b["expires_on"].is_string() && b["not_before"].is_string());
    assert_eq!(b["resource"], MANAGE);
    // The v1 token works on the management API.
    let (s, _, body) = call(
        &sim,
        "GET",
        "subscriptions/list",
        b["access_token"].as_str(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    sim.stop().await;
}

#[tokio::test]
async fn refusals_carry_the_right_aadsts_code() {
    let sim = start(M365Config::default()).await;
    let scope = "https://manage.office.com/.default";
    // (tenant in the path, form, expected HTTP status, expected AADSTS code)
    let cases: Vec<Case> = vec![
        (
            "00000000-0000-0000-0000-000000000001",
            secret_form(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, scope),
            400,
            90002,
        ),
        (
            DEFAULT_TENANT_ID,
            secret_form(
                "00000000-0000-0000-0000-000000000002",
                DEFAULT_CLIENT_SECRET,
                scope,
            ),
            400,
            700016,
        ),
        (
            DEFAULT_TENANT_ID,
            secret_form(DEFAULT_CLIENT_ID, "wrong", scope),
            401,
            7000215,
        ),
        (
            DEFAULT_TENANT_ID,
            secret_form(
                DEFAULT_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
                "https://manage.office.com",
            ),
            400,
            1002012,
        ),
        (
            DEFAULT_TENANT_ID,
            secret_form(
                DEFAULT_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
                "https://nowhere.example/.default",
            ),
            400,
            500011,
        ),
        (
            DEFAULT_TENANT_ID,
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("scope", scope),
            ],
            401,
            7000218,
        ),
        (
            DEFAULT_TENANT_ID,
            vec![
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("scope", scope),
            ],
            400,
            900144,
        ),
        (
            DEFAULT_TENANT_ID,
            vec![
                ("grant_type", "password"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("scope", scope),
            ],
            400,
            70003,
        ),
    ];
    for (tenant, form, status, code) in cases {
        let (s, b) = token_request(&sim, tenant, false, &form).await;
        assert_eq!((s, aad_code(&b)), (status, code), "{form:?}: {b}");
        let desc = b["error_description"].as_str().unwrap_or_default();
        assert!(desc.starts_with(&format!("AADSTS{code}:")), "{desc}");
        assert!(
            b["trace_id"].is_string()
                && b["correlation_id"].is_string()
                && b["timestamp"].is_string()
        );
    }
    // A JSON body is not a form: Entra sees no parameters at all.
    let r = http()
        .post(format!(
            "{}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token",
            sim.base_url()
        ))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    // Oversized bodies are refused before parsing.
    let r = http()
        .post(format!(
            "{}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token",
            sim.base_url()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a".repeat(200_000))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 413);
    sim.stop().await;
}

async fn cert_sim() -> siemflow_simulator::Simulator {
    let cfg = M365Config {
        tenants: vec![TenantConfig {
            tenant_id: DEFAULT_TENANT_ID.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: None,
            certificate_pem: Some(fixture("app.cert.pem")),
            roles: vec!["ActivityFeed.Read".into()],
        }],
        ..M365Config::default()
    };
    start(cfg).await
}

async fn assertion_request(sim: &siemflow_simulator::Simulator, jwt: &str) -> (u16, Value) {
    token_request(
        sim,
        DEFAULT_TENANT_ID,
        false,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("scope", "https://manage.office.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ],
    )
    .await
}

#[tokio::test]
async fn certificate_assertions_both_styles_and_refusals() {
    let sim = cert_sim().await;
    let aud = format!("{}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", sim.base_url());
    let now = chrono::Utc::now().timestamp();
    let good = claims(&aud, DEFAULT_CLIENT_ID, now);
    for alg in ["RS256", "PS256"] {
        let jwt = assertion(alg, "app.key.pem", "app.cert.pem", &good);
        let (s, b) = assertion_request(&sim, &jwt).await;
        assert_eq!(s, 200, "{alg}: {b}");
        let (s, _, body) = call(
            &sim,
            "GET",
            "subscriptions/list",
            b["access_token"].as_str(),
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    // v1 assertions name the v1 URL.
    let v1_aud = format!("{}/{DEFAULT_TENANT_ID}/oauth2/token", sim.base_url());
    let jwt = assertion(
        "RS256",
        "app.key.pem",
        "app.cert.pem",
        &claims(&v1_aud, DEFAULT_CLIENT_ID, now),
    );
    let (s, b) = token_request(
        &sim,
        DEFAULT_TENANT_ID,
        true,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("resource", MANAGE),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &jwt),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // Signed by another key but claiming the registered certificate's thumbprint.
    let forged = {
        let real = assertion("RS256", "app.key.pem", "app.cert.pem", &good);
        let other = assertion("RS256", "other.key.pem", "other.cert.pem", &good);
        let (head, _) = real.rsplit_once('.').expect("jwt");
        let (_, sig) = other.rsplit_once('.').expect("jwt");
        format!("{head}.{sig}")
    };
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = "https://login.microsoftonline.com/common/oauth2/v2.0/token".into();
    let expired = claims(&aud, DEFAULT_CLIENT_ID, now - 3600);
    let mut future = claims(&aud, DEFAULT_CLIENT_ID, now);
    future["nbf"] = (now + 600).into();
    let wrong_iss = claims(&aud, "00000000-0000-0000-0000-000000000009", now);
    let cases = [
        (
            "unregistered certificate",
            assertion("PS256", "other.key.pem", "other.cert.pem", &good),
            700027,
        ),
        ("forged signature", forged, 700027),
        (
            "wrong audience",
            assertion("RS256", "app.key.pem", "app.cert.pem", &wrong_aud),
            700023,
        ),
        (
            "expired",
            assertion("PS256", "app.key.pem", "app.cert.pem", &expired),
            700024,
        ),
        (
            "not yet valid",
            assertion("RS256", "app.key.pem", "app.cert.pem", &future),
            700024,
        ),
        (
            "issuer is not the client",
            assertion("RS256", "app.key.pem", "app.cert.pem", &wrong_iss),
            700021,
        ),
        ("not a JWT", "abc".to_string(), 50027),
    ];
    for (what, jwt, code) in cases {
        let (s, b) = assertion_request(&sim, &jwt).await;
        assert_eq!((s, aad_code(&b)), (401, code), "{what}: {b}");
    }
    // No secret is registered: a secret cannot stand in.
    let (s, b) = token_request(
        &sim,
        DEFAULT_TENANT_ID,
        false,
        &secret_form(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            "https://manage.office.com/.default",
        ),
    )
    .await;
    assert_eq!((s, aad_code(&b)), (401, 7000215));
    sim.stop().await;
}

/// The `aud` and `tid` claims of a simulator token (JWT-shaped).
fn audience_and_tenant(token: &str) -> (String, String) {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT-shaped token");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims");
    (
        claims["aud"].as_str().unwrap_or_default().to_string(),
        claims["tid"].as_str().unwrap_or_default().to_string(),
    )
}

/// Defender for Endpoint tokens (reference §0.1, §3.1): the token endpoint issues one for
/// each cloud's MDE audience (commercial's legacy and current resources and the
/// `windowsatpservice` alias, GCC's and the Gov host), and only MDE takes it: Graph and
/// the Management API refuse it as a token for another audience, MDE refuses another
/// cloud's MDE audience and Graph's, and an expired MDE token until a new one is asked for.
#[tokio::test]
async fn defender_for_endpoint_tokens_are_for_mde_of_the_tenants_cloud_only() {
    use siemflow_simulator::{Cloud, GraphTenantConfig};
    const GCC: (&str, &str, &str) = (
        "3c9e1a52-7d4b-4e8f-a1c6-2b5d8f0e9a13",
        "8e2d4f6a-1b3c-4d5e-9f7a-0c1b2d3e4f5a",
        "gcc-secret",
    );
    const GCC_HIGH: (&str, &str, &str) = (
        "0b6f0c1e-5a3d-4c2b-9e8f-1a2b3c4d5e6f",
        "6f1a2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c",
        "high-secret",
    );
    const DOD: (&str, &str, &str) = (
        "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
        "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a",
        "dod-secret",
    );
    let mut cfg = M365Config {
        live: false,
        token_lifetime: std::time::Duration::from_secs(60),
        ..M365Config::default()
    };
    for ((tenant, client, secret), cloud) in [
        (GCC, Cloud::Gcc),
        (GCC_HIGH, Cloud::GccHigh),
        (DOD, Cloud::Dod),
    ] {
        cfg.tenants.push(TenantConfig {
            tenant_id: tenant.into(),
            client_id: client.into(),
            client_secret: Some(secret.into()),
            certificate_pem: None,
            roles: siemflow_simulator::DEFAULT_ROLES
                .iter()
                .map(|r| r.to_string())
                .collect(),
        });
        cfg.graph.tenants.push(GraphTenantConfig {
            tenant_id: tenant.into(),
            premium: true,
            cloud,
        });
    }
    let sim = start(cfg).await;
    let commercial = (DEFAULT_TENANT_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET);
    let status_and_message = |(status, _, body): (u16, reqwest::header::HeaderMap, String)| {
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        (status, message.to_string())
    };
    let graph = |token: String| {
        let url = format!("{}/v1.0/security/alerts_v2?$top=1", sim.base_url());
        async move { status_and_message(call_url("GET", &url, Some(&token)).await) }
    };
    let mde = |token: String| {
        let url = format!("{}/api/alerts?$top=1", sim.base_url());
        async move { status_and_message(call_url("GET", &url, Some(&token)).await) }
    };
    let management = |tenant: &str, token: String| {
        let url = format!(
            "{}/api/v1.0/{tenant}/activity/feed/subscriptions/list?PublisherIdentifier={tenant}",
            sim.base_url()
        );
        async move { call_url("GET", &url, Some(&token)).await.0 }
    };
    // (the app, its cloud's MDE audiences, another cloud's MDE audience)
    for ((tenant, client, secret), audiences, foreign) in [
        (
            commercial,
            &[
                "https://api.securitycenter.microsoft.com",
                "https://api.security.microsoft.com",
                "https://securitycenter.onmicrosoft.com/windowsatpservice",
            ][..],
            "https://api-gov.securitycenter.microsoft.us",
        ),
        (
            GCC,
            &["https://api-gcc.securitycenter.microsoft.us"][..],
            "https://api.securitycenter.microsoft.com",
        ),
        (
            GCC_HIGH,
            &["https://api-gov.securitycenter.microsoft.us"][..],
            "https://api-gcc.securitycenter.microsoft.us",
        ),
        (
            DOD,
            &["https://api-gov.securitycenter.microsoft.us"][..],
            "https://api.securitycenter.microsoft.com",
        ),
    ] {
        for audience in audiences {
            let token = token_for_resource(&sim, tenant, client, secret, audience).await;
            assert_eq!(
                audience_and_tenant(&token),
                (audience.to_string(), tenant.to_string())
            );
            assert_eq!(mde(token.clone()).await.0, 200, "{tenant} {audience}");
            let (status, message) = graph(token.clone()).await;
            assert_eq!(status, 401, "Graph took an MDE token: {tenant} {audience}");
            assert!(message.contains("Invalid audience"), "{message}");
            assert_eq!(
                management(tenant, token).await,
                401,
                "the Management API took an MDE token: {tenant} {audience}"
            );
        }
        let other_cloud = token_for_resource(&sim, tenant, client, secret, foreign).await;
        let (status, message) = mde(other_cloud).await;
        assert_eq!(
            status, 401,
            "another cloud's MDE audience: {tenant} {foreign}"
        );
        assert!(message.contains("Invalid audience"), "{message}");
    }
    let graph_token = token_for_resource(
        &sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        "https://graph.microsoft.com",
    )
    .await;
    assert_eq!(graph(graph_token.clone()).await.0, 200);
    assert_eq!(mde(graph_token).await.0, 401, "MDE took a Graph token");
    // Expired: refused until a new token is asked for.
    let old = token_for_resource(
        &sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        "https://api.securitycenter.microsoft.com",
    )
    .await;
    sim.advance_clock(std::time::Duration::from_secs(61));
    let (status, message) = mde(old).await;
    assert_eq!(status, 401);
    assert!(message.contains("expired"), "{message}");
    let new = token_for_resource(
        &sim,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        "https://api.securitycenter.microsoft.com",
    )
    .await;
    assert_eq!(mde(new).await.0, 200);
    sim.stop().await;
}
