//! The webhook listener (axum): GitHub's deliveries in, stored deployments out. It never deploys
//! inline: it verifies, stores (which wakes the queue) and answers within milliseconds.
//!
//! Routes:
//! - `POST [webhook] path`: a GitHub delivery, JSON or form-encoded (`payload=…`). The
//!   `X-Hub-Signature-256` HMAC is computed over the exact raw body as it arrives and checked in
//!   constant time before anything is parsed: missing or wrong → 401 with no detail. Malformed → 400,
//!   over 25 MB → 413, `ping` → 200, `deployment` → 202 once stored durably, anything else → 202 and
//!   logged.
//! - `GET /healthz`: 200 `ok` for load balancers while the store answers (503 when it does not), with
//!   this instance's id and its store.
//! - `GET /metrics`: the Prometheus metrics ([`crate::metrics`]); with `[webhook] metrics_token`, only
//!   for `Authorization: Bearer <token>` (compared in constant time), else 401.
//! - `GET /deployments/{id}/log?token=…`: a deploy's log page, live in a browser, raw otherwise, for
//!   the link the runner made ([`crate::logpage`], [`crate::loglink`]); without that deploy's token → 404.
//!
//! What anyone who reaches the port can make zbot hold is bounded: a delivery without a well-formed
//! signature header is refused before its body is read, and bodies not yet verified share
//! [`UNVERIFIED_BUDGET`] bytes; a request that finds no room within [`BUDGET_WAIT`] gets 503 with
//! `Retry-After`, and a body must arrive within [`BODY_DEADLINE`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use serde::Deserialize;

use crate::config::Config;
use crate::domain::{
    DeploymentId, Environment, GitRef, Invalid, Problem, Repository, Sha, Task, ValueKind,
};
use crate::loglink::LinkKey;
use crate::metrics::{DeliveryEvent, DeliveryResult, Metrics};
use crate::payload::Parts;
use crate::policy::{self, Denial, Refusal, Why};
use crate::runner::Deployer;
use crate::secret::Secret;
use crate::store::{Accepted, NewDeployment, Store};

/// GitHub caps payloads at 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// Bytes of request bodies held before their signature is checked, all requests together: one
/// delivery of [`MAX_BODY`] fits, with room beside it for the small ones GitHub usually sends. Without
/// a bound anyone who reaches the port makes zbot hold 25 MB per request (eight at once took it from
/// 11 to 85 MB).
pub const UNVERIFIED_BUDGET: usize = MAX_BODY + MAX_BODY / 4;

/// How long a request waits for room in [`UNVERIFIED_BUDGET`] before it is answered 503: long enough
/// for a burst of real deliveries to pass one after another, short enough that waiters do not pile up.
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// How long a body may take to arrive once it has room: GitHub gives up on a delivery after 10
/// seconds, so a slower body is not one GitHub is waiting on, and it holds its room no longer.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// What `Retry-After` says when there is no room, in seconds.
const RETRY_AFTER_SECONDS: &str = "10";

/// What the handlers share.
#[derive(Clone)]
pub struct Listener {
    pub config: Arc<Config>,
    pub store: Store,
    /// Tells GitHub and chat about refused deployments.
    pub deployer: Arc<Deployer>,
    /// `None` only with `insecure_skip_signature = true`.
    pub secret: Option<Secret>,
    /// Checks the tokens of log page links.
    pub log_key: LinkKey,
    /// This zbot's metrics, recorded here and served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// `[webhook] metrics_token`: the bearer token `/metrics` asks for, if any.
    pub metrics_token: Option<Secret>,
    /// Turns true when zbot stops: the log pages' open streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Deploys green branch heads (`auto_deploy`); `None` when no app does.
    pub autodeploy: Option<Arc<crate::autodeploy::AutoDeployer>>,
}

/// The handlers' state: the listener and the room for unverified bodies.
#[derive(Clone)]
struct Shared {
    listener: Listener,
    budget: Budget,
}

/// The listener's routes; `path` receives GitHub's deliveries unless it is `None` (deployments then
/// come by polling).
pub fn router(listener: Listener, path: Option<&str>) -> Router {
    let router = match path {
        Some(path) => Router::new().route(path, post(delivery)),
        None => Router::new(),
    };
    router
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Shared {
            listener: listener.clone(),
            budget: Budget::new(UNVERIFIED_BUDGET, BUDGET_WAIT),
        })
        .merge(crate::logpage::router(crate::logpage::LogPages {
            store: listener.store,
            key: listener.log_key,
            shutdown: listener.shutdown,
        }))
}

/// `GET /healthz`: 200 `ok` when the store answers, else 503; then this instance's id and its store,
/// one `key: value` a line, for whoever runs several instances behind a load balancer.
async fn healthz(State(shared): State<Shared>) -> (StatusCode, String) {
    let store = &shared.listener.store;
    // Within what a load balancer's health check waits (often 2 to 5 s).
    let answered = tokio::time::timeout(Duration::from_secs(2), store.ping()).await;
    let (status, health) = match answered {
        Ok(Ok(())) => (StatusCode::OK, "ok"),
        Ok(Err(_)) | Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let first = if status == StatusCode::OK {
        "ok"
    } else {
        "store unavailable"
    };
    (
        status,
        format!(
            "{first}\ninstance: {}\nstore: {} {health}\n",
            store.instance(),
            store.backend().as_str()
        ),
    )
}

/// HMAC-SHA256 of a body as it arrives, compared in constant time with the signature GitHub sent.
struct SignatureCheck {
    mac: hmac::Hmac<sha2::Sha256>,
    expected: Vec<u8>,
}

/// Bytes in an HMAC-SHA256.
const SIGNATURE_LEN: usize = 32;

impl SignatureCheck {
    /// The check of a body against `header`, `sha256=<64 hex digits>`; `None` when the header is
    /// missing or malformed, so the body need not be read to refuse it.
    fn new(secret: &Secret, header: Option<&str>) -> Option<SignatureCheck> {
        let expected = hex::decode(header?.strip_prefix("sha256=")?).ok()?;
        if expected.len() != SIGNATURE_LEN {
            return None;
        }
        let mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()).ok()?;
        Some(SignatureCheck { mac, expected })
    }

    fn update(&mut self, bytes: &[u8]) {
        self.mac.update(bytes);
    }

    /// Whether the body so far has the expected signature (constant time: `verify_slice`).
    fn verify(self) -> bool {
        self.mac.verify_slice(&self.expected).is_ok()
    }
}

/// Room for bodies not yet verified: a byte budget shared by all requests.
#[derive(Clone)]
struct Budget {
    bytes: Arc<Semaphore>,
    /// How long a request waits for room.
    wait: Duration,
}

impl Budget {
    fn new(bytes: usize, wait: Duration) -> Budget {
        Budget {
            bytes: Arc::new(Semaphore::new(bytes)),
            wait,
        }
    }

    /// `bytes` of room, held until the permit is dropped.
    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Refused> {
        let bytes = u32::try_from(bytes).map_err(|_| Refused::TooLarge)?;
        match tokio::time::timeout(self.wait, self.bytes.clone().acquire_many_owned(bytes)).await {
            Ok(Ok(room)) => Ok(room),
            // Not within the wait, or more than the whole budget (the semaphore is never closed).
            Ok(Err(_)) | Err(_) => Err(Refused::Busy),
        }
    }
}

/// Why a delivery's body was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("no valid signature")]
    Unsigned,
    #[error("over 25 MB")]
    TooLarge,
    #[error("no room for another unverified body")]
    Busy,
    #[error("the body did not arrive in time")]
    TooSlow,
    #[error("the body could not be read")]
    Broken,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Unsigned => StatusCode::UNAUTHORIZED.into_response(),
            Refused::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "over 25 MB").into_response(),
            Refused::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)],
                "busy",
            )
                .into_response(),
            Refused::TooSlow => {
                (StatusCode::REQUEST_TIMEOUT, "the body took too long").into_response()
            }
            Refused::Broken => {
                (StatusCode::BAD_REQUEST, "the body could not be read").into_response()
            }
        }
    }
}

/// Reads a body of at most [`MAX_BODY`] within the budget, checking `check` as it arrives; the room
/// is given back once the body is verified (or refused). `declared` is its `Content-Length`.
async fn read_body(
    budget: &Budget,
    declared: Option<usize>,
    mut body: Body,
    mut check: Option<SignatureCheck>,
) -> Result<Bytes, Refused> {
    if declared.is_some_and(|length| length > MAX_BODY) {
        return Err(Refused::TooLarge);
    }
    // With a length, all the room at once; without (chunked), as the body arrives.
    let mut room = budget.reserve(declared.unwrap_or(0)).await?;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout_at(deadline, next).await {
            Err(_) => return Err(Refused::TooSlow),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Refused::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let length = bytes.len() + data.len();
        if length > MAX_BODY {
            return Err(Refused::TooLarge);
        }
        if length > room.num_permits() {
            room.merge(budget.reserve(length - room.num_permits()).await?);
        }
        if let Some(check) = &mut check {
            check.update(&data);
        }
        bytes.extend_from_slice(&data);
    }
    if check.is_some_and(|check| !check.verify()) {
        return Err(Refused::Unsigned);
    }
    Ok(Bytes::from(bytes))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A delivery, counted by its event and the answer it got (`zbot_webhook_deliveries_total`).
async fn delivery(state: State<Shared>, headers: HeaderMap, body: Body) -> Response {
    // A label from a fixed few: the header is read before the signature is checked, and a client
    // that is not GitHub must not make up label values (each one a new series held forever).
    let event = DeliveryEvent::of(header(&headers, "x-github-event"));
    let metrics = Arc::clone(&state.listener.metrics);
    let response = answer_delivery(state, &headers, body).await;
    metrics.delivery(event, DeliveryResult::of(response.status().as_u16()));
    response
}

async fn answer_delivery(
    State(shared): State<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let listener = &shared.listener;
    let check = match &listener.secret {
        Some(secret) => match SignatureCheck::new(secret, header(headers, "x-hub-signature-256")) {
            Some(check) => Some(check),
            None => return Refused::Unsigned.into_response(),
        },
        None => None,
    };
    let declared = header(headers, "content-length").and_then(|l| l.parse().ok());
    let body = match read_body(&shared.budget, declared, body, check).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    // The steps of an answer, at trace level, for `bench/run`'s trace of one delivery.
    tracing::trace!(
        bytes = body.len(),
        "delivery read (and its signature checked, if one is asked)"
    );
    let Some(event) = header(headers, "x-github-event") else {
        return (StatusCode::BAD_REQUEST, "missing X-GitHub-Event").into_response();
    };
    let delivery_id = header(headers, "x-github-delivery");
    let form = header(headers, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let text = match json_text(&body, form) {
        Ok(text) => text,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    match event {
        "deployment" => {
            let body: DeploymentEventBody = match read_json(&text, "deployment event") {
                Ok(body) => body,
                Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
            };
            tracing::trace!("deployment event read");
            // GitHub gives a delivery 10 s: a store that does not answer within a few gets 503, and
            // the delivery can be redelivered (a late store write makes that a duplicate).
            let taken = tokio::time::timeout(
                STORE_ANSWER_WITHIN,
                take_deployment(listener, delivery_id, body),
            )
            .await
            .unwrap_or_else(|_| {
                tracing::error!(
                    "cannot store a deployment: the store did not answer within {STORE_ANSWER_WITHIN:?}"
                );
                Taken::StoreFailed
            });
            match taken {
                Taken::New => (StatusCode::ACCEPTED, "accepted").into_response(),
                Taken::Duplicate => (StatusCode::ACCEPTED, "already accepted").into_response(),
                Taken::Refused(reason) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("refused: {reason}"),
                )
                    .into_response(),
                Taken::StoreFailed => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot store the deployment",
                )
                    .into_response(),
            }
        }
        "status" | "check_suite" | "check_run" => {
            let payload: Value = match read_json(&text, "JSON value") {
                Ok(payload) => payload,
                Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
            };
            match &listener.autodeploy {
                Some(autodeploy) => ci_event(autodeploy, &payload).await,
                None => (StatusCode::ACCEPTED, "ignored").into_response(),
            }
        }
        other => {
            // Checked to be JSON all the same: a body that is not is answered 400, whatever the event.
            if let Err(reason) = read_json::<serde::de::IgnoredAny>(&text, "JSON value") {
                return (StatusCode::BAD_REQUEST, reason).into_response();
            }
            if other == "ping" {
                return (StatusCode::OK, "pong").into_response();
            }
            tracing::info!(event = other, "event not handled");
            (StatusCode::ACCEPTED, "ignored").into_response()
        }
    }
}

/// How long a `deployment` delivery waits for the store before it is answered 503: well within the
/// 10 s GitHub gives a delivery (its documented webhook timeout).
const STORE_ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// How long a CI event's look at the branch may hold its answer: GitHub gives up after 10 s. A look
/// that takes longer goes on after the answer.
const CI_ANSWER_WITHIN: Duration = Duration::from_secs(8);

/// A `status`, `check_suite` or `check_run` event: auto-deploy looks at the branches it names (all of
/// the app's, when it names none), then it is answered 202.
async fn ci_event(autodeploy: &Arc<crate::autodeploy::AutoDeployer>, payload: &Value) -> Response {
    let Some(repository) = payload
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
        .and_then(|name| name.parse::<Repository>().ok())
    else {
        return (StatusCode::BAD_REQUEST, "no repository").into_response();
    };
    let mut branches: Vec<String> = payload
        .get("branches")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|b| b.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for pointer in [
        "/check_suite/head_branch",
        "/check_run/check_suite/head_branch",
    ] {
        if let Some(branch) = payload.pointer(pointer).and_then(Value::as_str) {
            branches.push(branch.to_string());
        }
    }
    let autodeploy = Arc::clone(autodeploy);
    let look = tokio::spawn(async move { autodeploy.on_ci(&repository, &branches).await });
    match tokio::time::timeout(CI_ANSWER_WITHIN, look).await {
        Ok(_) => (StatusCode::ACCEPTED, "checked").into_response(),
        Err(_) => (StatusCode::ACCEPTED, "checking").into_response(),
    }
}

/// What became of a `deployment` event, delivered or polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Stored: it runs.
    New,
    /// Its deployment id is stored already (a redelivery, a poll, another instance): it runs once,
    /// already.
    Duplicate,
    /// It will not run, for this reason (recorded, and told to GitHub and chat once).
    Refused(String),
    /// The store could not record it; GitHub may deliver it again (or the next poll finds it).
    StoreFailed,
}

/// A `deployment` event, whether GitHub delivered it to the webhook or zbot found it by polling
/// (`delivery_id` then names the poll): validated into a job ([`job_from`]) and stored once (the store
/// knows a deployment again by its id), or refused with its reason.
pub async fn take_deployment(
    listener: &Listener,
    delivery_id: Option<&str>,
    body: DeploymentEventBody,
) -> Taken {
    let mut deployment = match job_from(body, &listener.config) {
        Ok(d) => d,
        Err(refusal) => return refuse(listener, refusal).await,
    };
    // A payload naming a grant: claimed for this deployment id (once; a redelivery of the same id
    // claims it again), and then its chat user is the actor. A grant used by another deployment,
    // ended, or made for another commit, task or environment refuses the deployment.
    let token = Parts::of(&deployment.payload).ok().and_then(|p| p.grant);
    if let Some(token) = token {
        let claim = crate::store::GrantClaim {
            deployment_id: deployment.deployment_id,
            app: &deployment.app,
            repository: &deployment.repository,
            environment: &deployment.environment,
            task: &deployment.task,
            sha: &deployment.sha,
        };
        match listener
            .store
            .claim_grant(&token, claim, listener.deployer.clock.now())
            .await
        {
            Ok(Some(grant)) => deployment.actor = grant.actor,
            Ok(None) => {
                let refusal = Box::new(Refusal {
                    deployment_id: deployment.deployment_id,
                    repository: Some(deployment.repository.clone()),
                    repository_text: deployment.repository.to_string(),
                    why: Why::Denied(Denial::GrantNotValid),
                });
                return refuse(listener, refusal).await;
            }
            Err(e) => {
                tracing::error!("cannot read grants: {e}");
                return Taken::StoreFailed;
            }
        }
    }
    let id = deployment.deployment_id;
    let (repository, environment) = (
        deployment.repository.clone(),
        deployment.environment.clone(),
    );
    match listener.store.accept(deployment).await {
        Ok(Accepted::New) => {
            if delivery_id.is_some_and(|id| id.starts_with("poll-")) {
                tracing::info!(deployment = %id, %repository, %environment, came_by = "polling",
                    "deployment polled");
            } else {
                tracing::info!(deployment = %id, %repository, %environment, came_by = "webhook",
                    "deployment accepted");
            }
            Taken::New
        }
        Ok(Accepted::Duplicate) => {
            tracing::info!(deployment = %id, "a deployment zbot holds already arrived again: ignored");
            Taken::Duplicate
        }
        Err(e) => {
            tracing::error!("cannot store a deployment: {e}");
            Taken::StoreFailed
        }
    }
}

/// Records a refused deployment and (once per deployment) tells GitHub and chat why it will not
/// run. Nothing is created or removed on disk. A deployment zbot holds already (taken before the
/// configuration changed, or by the webhook before a poll saw it) is a duplicate, not refused: its
/// statuses and thread are left as they are.
pub async fn refuse(listener: &Listener, refusal: Box<Refusal>) -> Taken {
    match listener.store.get(refusal.deployment_id).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            tracing::info!(deployment = %refusal.deployment_id,
                "a deployment zbot holds already arrived again: left as it is");
            return Taken::Duplicate;
        }
        Err(e) => {
            tracing::error!("cannot read the store: {e}");
            return Taken::StoreFailed;
        }
    }
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
            return Taken::StoreFailed;
        }
    };
    if first {
        let deployer = Arc::clone(&listener.deployer);
        tokio::spawn(async move { deployer.refuse(*refusal).await });
    }
    Taken::Refused(reason)
}

/// The JSON text of a delivery: the body, or a form body's `payload` field (GitHub's
/// `application/x-www-form-urlencoded` content type).
fn json_text(body: &[u8], form: bool) -> Result<std::borrow::Cow<'_, [u8]>, &'static str> {
    if form {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| std::borrow::Cow::Owned(v.into_owned().into_bytes()))
            .ok_or("form body without payload")
    } else {
        Ok(std::borrow::Cow::Borrowed(body))
    }
}

/// Reads a delivery's JSON straight into `T` (no intermediate tree: a `deployment` event is read
/// once, skipping the fields zbot does not use). `Err` is the 400 answer: text that is not JSON, or
/// JSON that is not a `T` (with serde's reason).
fn read_json<T: serde::de::DeserializeOwned>(text: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("not a {what}: {e}"),
        _ => "body is not JSON".to_string(),
    })
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
    /// These are read loosely (any JSON) so that a missing or ill-typed one is refused with its reason,
    /// recorded and told, like a value that does not validate.
    #[serde(default, rename = "ref")]
    pub git_ref: Value,
    #[serde(default)]
    pub sha: Value,
    #[serde(default)]
    pub task: Value,
    #[serde(default)]
    pub environment: Value,
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

/// A field of the event as its domain type: text that validates, else the refusal (missing, not text, or
/// what its validation says).
fn typed<T: std::str::FromStr<Err = Invalid>>(
    value: &Value,
    kind: ValueKind,
) -> Result<T, Invalid> {
    match value {
        Value::String(text) => text.parse(),
        other => Err(Invalid {
            kind,
            value: String::new(),
            problem: Problem::Format(if other.is_null() {
                "is missing"
            } else {
                "is not text"
            }),
        }),
    }
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
            // As sent, but bounded: it is logged and told in chat.
            repository_text: event.repository.full_name.chars().take(140).collect(),
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
    let environment: Environment =
        typed(&d.environment, ValueKind::Environment).map_err(invalid)?;
    let git_ref: GitRef = typed(&d.git_ref, ValueKind::Ref).map_err(invalid)?;
    let sha: Sha = typed(&d.sha, ValueKind::Sha).map_err(invalid)?;
    let task: Task = match &d.task {
        Value::Null => Task::deploy(),
        Value::String(task) if task.is_empty() => Task::deploy(),
        other => typed(other, ValueKind::Task).map_err(invalid)?,
    };
    let parts = Parts::of(&d.payload).map_err(invalid)?;
    let target = policy::job_target(config, &repository, parts.name.as_ref(), &environment)
        .and_then(|target| {
            policy::may_carry_out(&target, &task, parts.hosts.as_ref())?;
            Ok(target)
        })
        .map_err(|denial| refuse(Some(repository.clone()), Why::Denied(denial)))?;
    let clone_url = target
        .app
        .clone_url
        .clone()
        .or_else(|| event.repository.clone_url.clone())
        .ok_or_else(|| refuse(Some(repository.clone()), Why::NoCloneUrl))?;
    // Who made it on GitHub. The payload's `notify.user` is anyone's to write (repository write
    // access is enough), so it never stands for a person here: a chat user becomes the actor only
    // through the grant zbot recorded ([`take_deployment`]).
    let actor = github_actor(d.creator.as_ref().map(|c| c.login.as_str()));
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

/// Whether an `Authorization` header carries `Bearer <token>`, the token compared in constant time.
fn bearer_matches(authorization: Option<&str>, token: &Secret) -> bool {
    use subtle::ConstantTimeEq;
    let Some(given) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    given.as_bytes().ct_eq(token.expose().as_bytes()).into()
}

/// The actor of a deployment made on GitHub, as locks and logs name it: `github:<creator login>`
/// (`github:unknown` when GitHub names no creator), which no chat user id can equal.
pub fn github_actor(login: Option<&str>) -> String {
    format!("github:{}", login.unwrap_or("unknown"))
}

/// `GET /metrics`: every metric, in the text format Prometheus scrapes.
async fn metrics(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(token) = &shared.listener.metrics_token
        && !bearer_matches(header(&headers, "authorization"), token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.listener.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-webhook-secret-0123456789";

    fn sign(body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn check(header: &str) -> Option<SignatureCheck> {
        SignatureCheck::new(&Secret::new(SECRET), Some(header))
    }

    #[test]
    fn the_metrics_token_is_a_bearer_token() {
        let token = Secret::new("metrics-token-0123456789");
        for (header, allowed) in [
            (Some("Bearer metrics-token-0123456789"), true),
            (Some("Bearer metrics-token-012345678"), false),
            (Some("bearer metrics-token-0123456789"), false),
            (Some("metrics-token-0123456789"), false),
            (Some("Bearer "), false),
            (None, false),
        ] {
            assert_eq!(bearer_matches(header, &token), allowed, "{header:?}");
        }
    }

    #[test]
    fn a_malformed_signature_header_is_refused_before_the_body() {
        let good = sign(b"body");
        for header in [
            "",
            "sha256=",
            "sha256=00",
            "sha256=zz",
            &good.replace("sha256=", "sha1="),
            &format!("{good}00"),
            &good[..good.len() - 2],
        ] {
            assert!(check(header).is_none(), "{header:?}");
        }
        assert!(SignatureCheck::new(&Secret::new(SECRET), None).is_none());
    }

    #[test]
    fn the_signature_is_checked_over_the_body_in_any_pieces() {
        let body = b"{\"zen\": \"Design for failure.\"}";
        let good = sign(body);
        for cut in 0..=body.len() {
            let mut c = check(&good).unwrap();
            c.update(&body[..cut]);
            c.update(&body[cut..]);
            assert!(c.verify(), "cut at {cut}");
        }
        let mut c = check(&sign(b"another body")).unwrap();
        c.update(body);
        assert!(!c.verify());
        let mut c = check(&good).unwrap();
        c.update(&body[1..]);
        assert!(!c.verify());
    }

    fn body(bytes: &[u8]) -> (Option<usize>, Body) {
        (Some(bytes.len()), Body::from(bytes.to_vec()))
    }

    #[tokio::test]
    async fn a_body_holds_room_until_it_is_verified() {
        let budget = Budget::new(100, Duration::from_millis(50));
        let (length, b) = body(b"a signed body");
        let read = read_body(&budget, length, b, check(&sign(b"a signed body"))).await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"a signed body"));
        assert_eq!(
            budget.bytes.available_permits(),
            100,
            "the room is given back"
        );

        let (length, b) = body(b"a forged body");
        let read = read_body(&budget, length, b, check(&sign(b"the real body"))).await;
        assert_eq!(read.unwrap_err(), Refused::Unsigned);
        assert_eq!(budget.bytes.available_permits(), 100);

        // Without a length, room is taken as the body arrives.
        let read = read_body(&budget, None, Body::from("chunked"), None).await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"chunked"));
    }

    #[tokio::test]
    async fn without_room_a_body_is_refused_unread() {
        let budget = Budget::new(100, Duration::from_millis(50));
        let held = budget.reserve(90).await.unwrap();
        let (length, b) = body(&[b'x'; 20]);
        assert_eq!(
            read_body(&budget, length, b, None).await.unwrap_err(),
            Refused::Busy
        );
        let read = read_body(&budget, None, Body::from(vec![b'x'; 20]), None).await;
        assert_eq!(read.unwrap_err(), Refused::Busy);
        drop(held);
        let (length, b) = body(&[b'x'; 20]);
        assert!(read_body(&budget, length, b, None).await.is_ok());
        // More than the whole budget never fits.
        let (length, b) = body(&[b'x'; 101]);
        assert_eq!(
            read_body(&budget, length, b, None).await.unwrap_err(),
            Refused::Busy
        );
    }

    #[tokio::test]
    async fn over_25_mb_is_refused() {
        let budget = Budget::new(UNVERIFIED_BUDGET, Duration::from_millis(50));
        let declared = read_body(&budget, Some(MAX_BODY + 1), Body::empty(), None).await;
        assert_eq!(declared.unwrap_err(), Refused::TooLarge);
        let chunked = read_body(&budget, None, Body::from(vec![0; MAX_BODY + 1]), None).await;
        assert_eq!(chunked.unwrap_err(), Refused::TooLarge);
        assert_eq!(budget.bytes.available_permits(), UNVERIFIED_BUDGET);
    }
}
