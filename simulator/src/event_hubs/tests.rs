//! The front's rules over a real TLS connection, with a plain TCP listener as the broker
//! so the test sees exactly which bytes reach it. (tests/e2e/event_hubs.rs runs the front
//! before tansu with confluent-kafka.)

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustls::pki_types::ServerName;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::*;

/// A front before a listener standing in for the broker, and a TLS connector trusting it.
async fn front() -> (EventHubsFront, TcpListener, TlsConnector) {
    let broker = TcpListener::bind("127.0.0.1:0").await.expect("broker");
    let generated = FrontTls::generate(&["127.0.0.1".to_string()]).expect("certificate");
    let config = EventHubsFrontConfig::new(broker.local_addr().expect("addr").to_string());
    let front = EventHubsFront::start(config, generated.tls, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("front");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(generated.ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    (front, broker, TlsConnector::from(Arc::new(client)))
}

async fn connect(front: &EventHubsFront, tls: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(front.addr()).await.expect("connect");
    tls.connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// A request frame: header v1 with client id "test", then `body`.
fn request(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation.to_be_bytes());
    frame.extend_from_slice(&4i16.to_be_bytes());
    frame.extend_from_slice(b"test");
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend(frame);
    out
}

async fn response(stream: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.expect("length");
    let mut body = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).await.expect("body");
    body
}

/// SaslHandshake PLAIN, then SaslAuthenticate v1 with `password`: the error code.
async fn authenticate(stream: &mut TlsStream<TcpStream>, password: &str) -> i16 {
    let mut mechanism = 5i16.to_be_bytes().to_vec();
    mechanism.extend_from_slice(b"PLAIN");
    stream
        .write_all(&request(wire::SASL_HANDSHAKE, 1, 1, &mechanism))
        .await
        .expect("handshake");
    let handshake = response(stream).await;
    assert_eq!(&handshake[4..6], &0i16.to_be_bytes(), "PLAIN is offered");
    let token = format!("\0$ConnectionString\0{password}");
    let mut body = (token.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(token.as_bytes());
    stream
        .write_all(&request(wire::SASL_AUTHENTICATE, 1, 2, &body))
        .await
        .expect("authenticate");
    let answer = response(stream).await;
    assert_eq!(&answer[..4], &2i32.to_be_bytes(), "correlation id");
    i16::from_be_bytes([answer[4], answer[5]])
}

/// True once the front closed the stream (EOF or a reset).
async fn closed(stream: &mut TlsStream<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn a_request_other_than_sasl_before_authentication_closes_the_connection() {
    let (front, _broker, tls) = front().await;
    let mut stream = connect(&front, &tls).await;
    // Metadata (key 3) v1 with an empty topic list.
    stream
        .write_all(&request(3, 1, 7, &0i32.to_be_bytes()))
        .await
        .expect("write");
    assert!(closed(&mut stream).await);
    assert_eq!(
        front
            .stats()
            .refused_before_authentication
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(front.stats().authenticated.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_wrong_connection_string_gets_error_58_and_a_closed_connection() {
    let (front, _broker, tls) = front().await;
    let mut stream = connect(&front, &tls).await;
    let wrong = DEFAULT_CONNECTION_STRING.replace("SharedAccessKey=", "SharedAccessKey=x");
    assert_eq!(
        authenticate(&mut stream, &wrong).await,
        SASL_AUTHENTICATION_FAILED
    );
    assert!(closed(&mut stream).await);
    assert_eq!(
        front.stats().authentication_failed.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn after_authentication_requests_pass_through_up_to_the_size_limit() {
    let (front, broker, tls) = front().await;
    let mut stream = connect(&front, &tls).await;
    assert_eq!(
        authenticate(&mut stream, DEFAULT_CONNECTION_STRING).await,
        0
    );
    let (mut upstream, _) = broker
        .accept()
        .await
        .expect("the front connects to the broker");
    // A request passes byte for byte, and the broker's answer comes back as it is.
    let metadata = request(3, 1, 8, &0i32.to_be_bytes());
    stream.write_all(&metadata).await.expect("write");
    let mut forwarded = vec![0u8; metadata.len()];
    upstream
        .read_exact(&mut forwarded)
        .await
        .expect("forwarded");
    assert_eq!(forwarded, metadata);
    upstream
        .write_all(b"\0\0\0\x04\0\0\0\x08")
        .await
        .expect("answer");
    assert_eq!(response(&mut stream).await, 8i32.to_be_bytes());
    // One byte over the limit: the connection is closed, nothing of it reaches the broker.
    stream
        .write_all(&((MAX_REQUEST_BYTES + 1) as i32).to_be_bytes())
        .await
        .expect("write");
    assert!(closed(&mut stream).await);
    let mut rest = Vec::new();
    upstream
        .read_to_end(&mut rest)
        .await
        .expect("the broker side ends");
    assert!(
        rest.is_empty(),
        "{} bytes of it reached the broker",
        rest.len()
    );
    assert_eq!(front.stats().oversized_requests.load(Ordering::Relaxed), 1);
    assert_eq!(front.stats().requests_forwarded.load(Ordering::Relaxed), 1);
}
