//! GitHub's side of a webhook on loopback: a signed `deployment` delivery, and the plain HTTP/1.1
//! request it travels in. Shared by the fakes, the tests and the benchmark (`bench/main.rs`).

use std::net::SocketAddr;
use std::path::Path;

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The webhook secret zbot is configured with in the tests (and the benchmark).
pub const SECRET: &str = "test-webhook-secret-0123456789";

/// The fixture `deployment` event with this deployment filled in.
pub fn deployment_event(
    id: u64,
    git_ref: &str,
    sha: &str,
    environment: &str,
    task: &str,
    payload: Value,
) -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/github/deployment__payload.json"),
    )
    .unwrap();
    let mut event: Value = serde_json::from_str(&text).unwrap();
    let d = &mut event["deployment"];
    d["id"] = json!(id);
    d["ref"] = json!(git_ref);
    d["sha"] = json!(sha);
    d["environment"] = json!(environment);
    d["original_environment"] = json!(environment);
    d["task"] = json!(task);
    d["payload"] = payload;
    event["repository"]["full_name"] = json!("octo/adxstat");
    event["repository"]["name"] = json!("adxstat");
    event
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A plain HTTP/1.1 request over loopback; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // The server may answer (413, 401) before reading a large body, and close.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends a signed GitHub delivery to zbot's webhook path.
pub async fn deliver(addr: SocketAddr, event: &str, delivery: &str, body: &Value) -> (u16, String) {
    let bytes = serde_json::to_vec(body).unwrap();
    let headers = [
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", "GitHub-Hookshot/044aadd".to_string()),
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        ("X-Hub-Signature-256", sign(SECRET, &bytes)),
    ];
    http(addr, "POST", "/webhooks/github", &headers, &bytes).await
}
