//! The webhook listener (axum): GitHub's deliveries in, stored deployments out. It never deploys
//! inline: it verifies, stores, wakes the scheduler and answers within milliseconds.
//!
//! Routes:
//! - `POST [webhook] path`: a GitHub delivery, JSON or form-encoded (`payload=…`). The
//!   `X-Hub-Signature-256` HMAC is checked over the exact raw body in constant time before anything
//!   is parsed: missing or wrong → 401 with no detail. Malformed → 400, over 25 MB → 413, `ping` → 200,
//!   `deployment` → 202 once stored durably, anything else → 202 and logged.
//! - `GET /healthz`: 200 `ok` for load balancers.
//! - `GET /deployments/{id}/log`: a deploy's whole log as plain text.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::config::Config;
use crate::scheduler::Scheduler;
use crate::secret::Secret;
use crate::store::{Accepted, NewDeployment, Store};

/// GitHub caps payloads at 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct Listener {
    pub config: Arc<Config>,
    pub store: Store,
    pub scheduler: Arc<Scheduler>,
    /// `None` only with `insecure_skip_signature = true`.
    pub secret: Option<Secret>,
}

pub fn router(listener: Listener, path: &str) -> Router {
    Router::new()
        .route(path, post(delivery))
        .route("/healthz", get(|| async { "ok" }))
        .route("/deployments/{id}/log", get(log_page))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(listener)
}

/// Constant-time check of `sha256=<hex>` against HMAC-SHA256(secret, body).
pub fn signature_valid(secret: &Secret, header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn delivery(State(listener): State<Listener>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(secret) = &listener.secret
        && !signature_valid(secret, header(&headers, "x-hub-signature-256"), &body)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(event) = header(&headers, "x-github-event") else {
        return (StatusCode::BAD_REQUEST, "missing X-GitHub-Event").into_response();
    };
    let delivery_id = header(&headers, "x-github-delivery");
    let form = header(&headers, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let payload = match parse_body(&body, form) {
        Ok(payload) => payload,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    match event {
        "ping" => (StatusCode::OK, "pong").into_response(),
        "deployment" => {
            let deployment = match deployment_from(&payload, &listener.config) {
                Ok(d) => d,
                Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
            };
            match listener
                .store
                .accept(delivery_id, event, Some(&deployment))
                .await
            {
                Ok(Accepted::New) => {
                    tracing::info!(deployment = deployment.deployment_id, repository = %deployment.repository,
                        environment = %deployment.environment, "deployment accepted");
                    listener.scheduler.wake();
                    (StatusCode::ACCEPTED, "accepted").into_response()
                }
                Ok(duplicate) => {
                    tracing::info!(
                        deployment = deployment.deployment_id,
                        ?duplicate,
                        "duplicate delivery ignored"
                    );
                    (StatusCode::ACCEPTED, "already accepted").into_response()
                }
                Err(e) => {
                    tracing::error!("cannot store a deployment: {e}");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot store the deployment",
                    )
                        .into_response()
                }
            }
        }
        other => {
            tracing::info!(event = other, "event not handled");
            (StatusCode::ACCEPTED, "ignored").into_response()
        }
    }
}

fn parse_body(body: &[u8], form: bool) -> Result<Value, &'static str> {
    if form {
        let payload = form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())
            .ok_or("form body without payload")?;
        serde_json::from_str(&payload).map_err(|_| "payload is not JSON")
    } else {
        serde_json::from_slice(body).map_err(|_| "body is not JSON")
    }
}

/// The deployment in a `deployment` event, with the app it belongs to.
fn deployment_from(event: &Value, config: &Config) -> Result<NewDeployment, &'static str> {
    let d = event
        .get("deployment")
        .ok_or("no deployment in the payload")?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let deployment_id = d
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("deployment.id missing")?;
    let repository = event
        .get("repository")
        .ok_or("no repository in the payload")?;
    let full_name = text(repository, "full_name").ok_or("repository.full_name missing")?;
    let payload = match d.get("payload") {
        // hubot-deploy may send the payload as a JSON string.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let named = payload.get("name").and_then(Value::as_str);
    let app = config
        .apps
        .iter()
        .filter(|(_, app)| app.repository.eq_ignore_ascii_case(&full_name))
        .find(|(name, _)| named.is_none_or(|n| n == name.as_str()))
        .or_else(|| {
            config
                .apps
                .iter()
                .find(|(_, app)| app.repository.eq_ignore_ascii_case(&full_name))
        });
    let clone_url = app
        .and_then(|(_, a)| a.clone_url.clone())
        .or_else(|| text(repository, "clone_url"))
        .ok_or("repository.clone_url missing")?;
    let notify = payload.get("notify");
    let actor = notify
        .and_then(|n| text(n, "user"))
        .or_else(|| d.get("creator").and_then(|c| text(c, "login")))
        .unwrap_or_else(|| "unknown".to_string());
    Ok(NewDeployment {
        deployment_id,
        app: app.map(|(name, _)| name.clone()).unwrap_or_default(),
        repository: full_name,
        clone_url,
        environment: text(d, "environment").ok_or("deployment.environment missing")?,
        git_ref: text(d, "ref").ok_or("deployment.ref missing")?,
        sha: text(d, "sha").ok_or("deployment.sha missing")?,
        task: text(d, "task").unwrap_or_else(|| "deploy".to_string()),
        payload,
        actor,
    })
}

async fn log_page(State(listener): State<Listener>, Path(id): Path<u64>) -> Response {
    let Ok(Some(d)) = listener.store.get(id).await else {
        return (StatusCode::NOT_FOUND, "no such deployment").into_response();
    };
    let Some(path) = d.log_path else {
        return (StatusCode::NOT_FOUND, "this deployment has not started").into_response();
    };
    match tokio::fs::File::open(&path).await {
        Ok(file) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "the log is gone").into_response(),
    }
}
