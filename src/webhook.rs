//! The webhook listener (axum): GitHub's deliveries in, stored deployments out. It never deploys
//! inline: it verifies, stores (which wakes the queue) and answers within milliseconds.
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

use serde::Deserialize;

use crate::config::Config;
use crate::domain::{DeploymentId, Environment, GitRef, Invalid, Repository, Sha, Task};
use crate::payload::Parts;
use crate::policy::{self, Refusal, Why};
use crate::runner::Deployer;
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
    /// Tells GitHub and chat about refused deployments.
    pub deployer: Arc<Deployer>,
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
            let body: DeploymentEventBody = match serde_json::from_value(payload) {
                Ok(body) => body,
                Err(e) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("not a deployment event: {e}"),
                    )
                        .into_response();
                }
            };
            let deployment = match job_from(body, &listener.config) {
                Ok(d) => d,
                Err(refusal) => return refuse(&listener, refusal).await,
            };
            match listener
                .store
                .accept(delivery_id, event, Some(&deployment))
                .await
            {
                Ok(Accepted::New) => {
                    tracing::info!(deployment = %deployment.deployment_id, repository = %deployment.repository,
                        environment = %deployment.environment, "deployment accepted");
                    (StatusCode::ACCEPTED, "accepted").into_response()
                }
                Ok(duplicate) => {
                    tracing::info!(
                        deployment = %deployment.deployment_id,
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

/// Records a refused deployment, answers 422 with the reason, and (once per deployment) tells GitHub
/// and chat why it will not run. Nothing is created or removed on disk.
async fn refuse(listener: &Listener, refusal: Box<Refusal>) -> Response {
    let reason = crate::reply::refusal_plain(&refusal);
    tracing::warn!(deployment = %refusal.deployment_id, repository = %refusal.repository_text,
        "refused a deployment: {reason}");
    let first = match listener
        .store
        .record_refused(refusal.deployment_id, &refusal.repository_text, &reason)
        .await
    {
        Ok(first) => first,
        Err(e) => {
            tracing::error!("cannot record a refused deployment: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the deployment",
            )
                .into_response();
        }
    };
    if first {
        let deployer = Arc::clone(&listener.deployer);
        tokio::spawn(async move { deployer.refuse(*refusal).await });
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("refused: {reason}"),
    )
        .into_response()
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

/// A `deployment` event as GitHub sends it: only the fields zbot reads, as sent (they are validated by
/// [`job_from`], so a refusal can still name the deployment it refuses).
#[derive(Debug, Deserialize)]
pub struct DeploymentEventBody {
    pub deployment: GitHubDeployment,
    pub repository: GitHubRepository,
}

#[derive(Debug, Deserialize)]
pub struct GitHubDeployment {
    pub id: u64,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    #[serde(default)]
    pub task: Option<String>,
    pub environment: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub creator: Option<GitHubUser>,
}

#[derive(Debug, Deserialize)]
pub struct GitHubRepository {
    pub full_name: String,
    #[serde(default)]
    pub clone_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct GitHubUser {
    pub login: String,
}

/// Turns a `deployment` event into a job for the queue, or a [`Refusal`] that says why it will not run:
/// every value validated, the app found by repository (and the payload's `name`), the environment one
/// of that app's (as GitHub compares them: any case; aliases too), named as configured.
pub fn job_from(
    event: DeploymentEventBody,
    config: &Config,
) -> Result<NewDeployment, Box<Refusal>> {
    let deployment_id = DeploymentId(event.deployment.id);
    let refuse = |repository: Option<Repository>, why: Why| {
        Box::new(Refusal {
            deployment_id,
            repository,
            repository_text: event.repository.full_name.clone(),
            why,
        })
    };
    let repository: Repository = event
        .repository
        .full_name
        .parse()
        .map_err(|e| refuse(None, Why::Invalid(e)))?;
    let invalid = |e: Invalid| refuse(Some(repository.clone()), Why::Invalid(e));
    let d = &event.deployment;
    let environment: Environment = d.environment.parse().map_err(invalid)?;
    let git_ref: GitRef = d.git_ref.parse().map_err(invalid)?;
    let sha: Sha = d.sha.parse().map_err(invalid)?;
    let task: Task = match &d.task {
        Some(task) if !task.is_empty() => task.parse().map_err(invalid)?,
        _ => Task::deploy(),
    };
    let parts = Parts::of(&d.payload).map_err(invalid)?;
    let target = policy::job_target(config, &repository, parts.name.as_ref(), &environment)
        .map_err(|denial| refuse(Some(repository.clone()), Why::Denied(denial)))?;
    let clone_url = target
        .app
        .clone_url
        .clone()
        .or_else(|| event.repository.clone_url.clone())
        .ok_or_else(|| refuse(Some(repository.clone()), Why::NoCloneUrl))?;
    let actor = parts
        .notify
        .as_ref()
        .and_then(|n| n.user.as_ref().map(|u| u.to_string()))
        .or_else(|| d.creator.as_ref().map(|c| c.login.clone()))
        .unwrap_or_else(|| "unknown".to_string());
    // hubot-deploy may send the payload as JSON text: store the object.
    let payload = match &d.payload {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    Ok(NewDeployment {
        deployment_id,
        app: target.app_name,
        repository: target.app.repository.clone(),
        clone_url,
        environment: target.environment,
        git_ref,
        sha,
        task,
        payload,
        actor,
    })
}

async fn log_page(State(listener): State<Listener>, Path(id): Path<u64>) -> Response {
    let Ok(Some(d)) = listener.store.get(DeploymentId(id)).await else {
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
