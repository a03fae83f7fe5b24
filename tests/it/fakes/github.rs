//! A fake GitHub: the REST shapes zbot uses (deployment statuses, gists), in memory, every call
//! recorded. Tests wait on what it received with a deadline, never with a sleep.
//!
//! Faults on demand: [`FakeGitHub::never_answer`] accepts every request and never answers it,
//! [`FakeGitHub::drop_next_deployment_answer`] makes the next deployment and then closes the
//! connection instead of answering, and [`FakeGitHub::hold_status_answers`] records a deployment's
//! statuses at once but answers them only when the test says so.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::serve::IncomingStream;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// One status zbot posted.
#[derive(Debug, Clone)]
pub struct Status {
    pub deployment_id: u64,
    pub state: String,
    pub description: String,
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
    /// `auto_inactive` as sent (GitHub's default, when absent, is true).
    pub auto_inactive: Option<bool>,
    /// When it arrived (read by the benchmark, `bench/`).
    #[allow(dead_code)]
    pub at: std::time::Instant,
}

#[derive(Debug, Clone)]
pub struct Gist {
    pub description: String,
    pub public: bool,
    pub files: BTreeMap<String, String>,
    pub updates: usize,
}

/// Where the fake sends the `deployment` webhook of a deployment it creates.
#[derive(Clone)]
pub struct WebhookTarget {
    pub zbot: SocketAddr,
    /// The repository refs are resolved in.
    pub repo: std::path::PathBuf,
}

#[derive(Default)]
struct Model {
    target: Option<WebhookTarget>,
    /// Scripted answers to the next deployment creations (status, body); empty means 201.
    scripted: std::collections::VecDeque<(u16, Value)>,
    /// Request bodies of deployment creations, in order.
    deployment_requests: Vec<Value>,
    /// Created deployments: (id, body sent back).
    deployments: Vec<(u64, Value)>,
    statuses: Vec<Status>,
    gists: BTreeMap<String, Gist>,
    authorizations: Vec<String>,
    fail_gists: bool,
    /// Accept every request and never answer.
    silent: bool,
    /// Requests held unanswered (`METHOD /path`).
    unanswered: Vec<String>,
    /// Make the next deployment, then close the connection instead of answering.
    drop_next_deployment_answer: bool,
    /// Query strings of deployment listings, in order.
    deployment_lists: Vec<BTreeMap<String, String>>,
    /// The status of each deployment listing's answer (200, or 304 for an unchanged conditional one).
    list_answers: Vec<u16>,
    /// Requests that counted against the rate limit (all but 304s and `/rate_limit`).
    rate_used: u64,
    /// The repository deployments' refs are resolved in when no webhook target is set.
    repo: Option<std::path::PathBuf>,
    /// Deployments whose status posts are answered only once their switch turns true.
    held_status_answers: BTreeMap<u64, tokio::sync::watch::Receiver<bool>>,
    /// Gist creations are answered only once this switch turns true.
    held_gists: Option<tokio::sync::watch::Receiver<bool>>,
    /// The repository archives are made from.
    archive_repo: Option<std::path::PathBuf>,
    /// Shas whose archive redirect was asked for, in order.
    tarball_requests: Vec<String>,
    /// Archives downloaded through a redirect's URL, by sha.
    archive_downloads: Vec<String>,
    /// Compare requests are accepted and never answered.
    hold_compares: bool,
    /// Commit statuses by sha: (context, state), as `set_commit_status` set them.
    commit_statuses: BTreeMap<String, Vec<(String, String)>>,
    /// Every request's arrival and `METHOD /path`, in order.
    requests: Vec<(std::time::Instant, String)>,
}

/// The token GitHub puts in an archive URL of a private repository; it must not leak.
pub const ARCHIVE_TOKEN: &str = "ARCHIVEtokenAAAABBBBCCCC";

#[derive(Clone)]
pub struct FakeGitHub {
    pub addr: SocketAddr,
    model: Arc<Mutex<Model>>,
    changed: super::Changes,
}

/// When gists and statuses were made, as the fake says (deployments carry the time they were made).
const TIME: &str = "2026-11-27T10:00:00Z";

/// Now, as GitHub writes times: deployments are stamped with the time they were made, so rules
/// about their age (`[github] poll_max_age`) see them as new.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeGitHub {
            addr,
            model: Arc::default(),
            changed: super::Changes::default(),
        };
        let app = Router::new()
            .route(
                "/repos/{owner}/{repo}/deployments/{id}/statuses",
                post(create_status),
            )
            .route(
                "/repos/{owner}/{repo}/deployments",
                post(create_deployment).get(list_deployments),
            )
            .route(
                "/repos/{owner}/{repo}/deployments/{id}/statuses",
                axum::routing::get(list_statuses),
            )
            .route("/repos/{owner}/{repo}", axum::routing::get(get_repository))
            .route(
                "/repos/{owner}/{repo}/commits/{*git_ref}",
                axum::routing::get(get_commit),
            )
            .route(
                "/app/installations/{id}/access_tokens",
                post(installation_token),
            )
            .route(
                "/repos/{owner}/{repo}/tarball/{sha}",
                axum::routing::get(tarball_redirect),
            )
            .route(
                "/codeload/{owner}/{repo}/legacy.tar.gz/{sha}",
                axum::routing::get(archive),
            )
            .route(
                "/repos/{owner}/{repo}/compare/{basehead}",
                axum::routing::get(compare),
            )
            .route("/rate_limit", axum::routing::get(rate_limit))
            .route("/gists", post(create_gist))
            .route("/gists/{id}", patch(update_gist))
            .layer(axum::middleware::from_fn_with_state(
                fake.clone(),
                answer_unless_silent,
            ))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(
                CuttableListener(listener),
                app.into_make_service_with_connect_info::<Cut>(),
            )
            .await
            .unwrap()
        });
        fake
    }

    /// From now on every request is accepted and held, never answered: a GitHub that hangs.
    /// Sets the commit status `context` of `sha` to `state` (`success`, `pending`, `failure`), as CI
    /// would; what `GET …/commits/{sha}/status` answers.
    pub fn set_commit_status(&self, sha: &str, context: &str, state: &str) {
        let mut model = self.model.lock().unwrap();
        let statuses = model.commit_statuses.entry(sha.to_string()).or_default();
        statuses.retain(|(c, _)| c != context);
        statuses.push((context.to_string(), state.to_string()));
    }

    pub fn never_answer(&self) {
        self.model.lock().unwrap().silent = true;
    }

    /// Compare requests are accepted and never answered from now on.
    pub fn hold_compares(&self) {
        self.model.lock().unwrap().hold_compares = true;
    }

    /// Requests held unanswered so far, as `METHOD /path`.
    pub fn unanswered(&self) -> Vec<String> {
        self.model.lock().unwrap().unanswered.clone()
    }

    /// The next deployment request makes the deployment (and sends its webhook), and then the
    /// connection closes without an answer: the answer is lost on the way.
    pub fn drop_next_deployment_answer(&self) {
        self.model.lock().unwrap().drop_next_deployment_answer = true;
    }

    /// The query of each deployment listing zbot asked for, in order.
    pub fn deployment_lists(&self) -> Vec<BTreeMap<String, String>> {
        self.model.lock().unwrap().deployment_lists.clone()
    }

    /// From now on the statuses of `deployment_id` are recorded when they arrive, but answered only
    /// once the returned switch is sent `true`: zbot waits on GitHub while the test acts.
    pub fn hold_status_answers(&self, deployment_id: u64) -> tokio::sync::watch::Sender<bool> {
        let (release, held) = tokio::sync::watch::channel(false);
        self.model
            .lock()
            .unwrap()
            .held_status_answers
            .insert(deployment_id, held);
        release
    }

    /// From now on gists are made when asked for, but the answer comes only once the returned switch
    /// is sent `true`: zbot waits on GitHub's first answer of a deploy while the test acts.
    pub fn hold_gists(&self) -> tokio::sync::watch::Sender<bool> {
        let (release, held) = tokio::sync::watch::channel(false);
        self.model.lock().unwrap().held_gists = Some(held);
        release
    }

    /// How many gists zbot asked for so far.
    pub fn gists_asked(&self) -> usize {
        let model = self.model.lock().unwrap();
        model
            .requests
            .iter()
            .filter(|(_, call)| call == "POST /gists")
            .count()
    }

    /// The status of each deployment listing's answer, in order: 200, or 304 when the `If-None-Match`
    /// ETag matched.
    pub fn list_answers(&self) -> Vec<u16> {
        self.model.lock().unwrap().list_answers.clone()
    }

    /// Deployments are made (refs resolved in `repo`) without sending any webhook: a GitHub whose
    /// webhooks cannot reach zbot.
    pub fn create_deployments_in(&self, repo: &std::path::Path) {
        self.model.lock().unwrap().repo = Some(repo.to_path_buf());
    }

    /// Creates a deployment through the REST API, as someone (or another tool) would; its id.
    pub async fn create(&self, git_ref: &str, environment: &str) -> u64 {
        let body = serde_json::to_vec(&json!({
            "ref": git_ref, "environment": environment, "task": "deploy", "auto_merge": false,
            "required_contexts": [], "payload": {},
        }))
        .unwrap();
        let (status, answer) = super::wire::http(
            self.addr,
            "POST",
            "/repos/octo/adxstat/deployments",
            &[("Content-Type", "application/json".to_string())],
            &body,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        serde_json::from_str::<Value>(&answer).unwrap()["id"]
            .as_u64()
            .unwrap()
    }

    /// Lists `deployment` (a webhook's `deployment` object) as one GitHub holds, as a deployment that
    /// was delivered straight to zbot (and refused there) is.
    pub fn hold(&self, deployment: Value) {
        let id = deployment["id"].as_u64().expect("a deployment id");
        self.model
            .lock()
            .unwrap()
            .deployments
            .push((id, deployment));
    }

    /// Makes deployment `id` look created at `created_at` (RFC 3339), as one made while zbot was
    /// stopped long ago.
    pub fn set_created_at(&self, id: u64, created_at: &str) {
        let mut model = self.model.lock().unwrap();
        let (_, deployment) = model
            .deployments
            .iter_mut()
            .find(|(made, _)| *made == id)
            .expect("a deployment the fake made");
        deployment["created_at"] = json!(created_at);
        deployment["updated_at"] = json!(created_at);
    }

    /// Every request's arrival and `METHOD /path`, in order (read by the benchmark, `bench/`).
    #[allow(dead_code)]
    pub fn requests(&self) -> Vec<(std::time::Instant, String)> {
        self.model.lock().unwrap().requests.clone()
    }

    /// Ids of the deployments the fake made, oldest first.
    pub fn deployment_ids(&self) -> Vec<u64> {
        let model = self.model.lock().unwrap();
        model.deployments.iter().map(|(id, _)| *id).collect()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Deployments the fake creates are delivered as signed webhooks to `target`.
    pub fn send_webhooks_to(&self, target: WebhookTarget) {
        let mut model = self.model.lock().unwrap();
        model.archive_repo = Some(target.repo.clone());
        model.target = Some(target);
    }

    /// The shas whose archive redirect zbot asked for.
    pub fn tarball_requests(&self) -> Vec<String> {
        self.model.lock().unwrap().tarball_requests.clone()
    }

    /// The shas whose archive was downloaded (by the fake Heroku) through a redirect's URL.
    pub fn archive_downloads(&self) -> Vec<String> {
        self.model.lock().unwrap().archive_downloads.clone()
    }

    /// The next deployment creation is answered with `status` and `body` instead of 201.
    pub fn answer_next_deployment(&self, status: u16, body: Value) {
        self.model
            .lock()
            .unwrap()
            .scripted
            .push_back((status, body));
    }

    pub fn deployment_requests(&self) -> Vec<Value> {
        self.model.lock().unwrap().deployment_requests.clone()
    }

    /// Delivers a `deployment` event as GitHub would for a deployment someone created through the REST API
    /// with exactly these values (GitHub stores what it is given): signed, to `zbot`. Returns zbot's answer.
    pub async fn deliver_deployment(&self, zbot: SocketAddr, event: &Value) -> (u16, String) {
        let id = event["deployment"]["id"].as_u64().unwrap_or_default();
        self.model
            .lock()
            .unwrap()
            .deployments
            .push((id, event["deployment"].clone()));
        self.touch();
        super::wire::deliver(zbot, "deployment", &format!("gh-raw-{id}"), event).await
    }

    /// Makes gist creation fail with 403 (as for a GitHub App token).
    pub fn fail_gists(&self) {
        self.model.lock().unwrap().fail_gists = true;
    }

    fn touch(&self) {
        self.changed.touch();
    }

    pub fn statuses(&self, deployment_id: u64) -> Vec<Status> {
        let model = self.model.lock().unwrap();
        model
            .statuses
            .iter()
            .filter(|s| s.deployment_id == deployment_id)
            .cloned()
            .collect()
    }

    pub fn states(&self, deployment_id: u64) -> Vec<String> {
        self.statuses(deployment_id)
            .into_iter()
            .map(|s| s.state)
            .collect()
    }

    /// Every status, in the order received.
    pub fn all_statuses(&self) -> Vec<Status> {
        self.model.lock().unwrap().statuses.clone()
    }

    pub fn gist_by_url(&self, html_url: &str) -> Option<Gist> {
        let id = html_url.rsplit('/').next()?;
        self.model.lock().unwrap().gists.get(id).cloned()
    }

    pub fn authorizations(&self) -> Vec<String> {
        self.model.lock().unwrap().authorizations.clone()
    }

    /// Waits until `done` holds for the model, or fails the test after `deadline`.
    /// Waits until `done` holds for the fake, or fails the test after `deadline`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut(&FakeGitHub) -> Option<T>,
    ) -> T {
        self.changed
            .wait_for(
                what,
                deadline,
                || done(self),
                || format!("statuses: {:#?}", self.all_statuses()),
            )
            .await
    }

    /// Waits until the deployment has been reported `in_progress`.
    pub async fn in_progress(&self, deployment_id: u64, deadline: Duration) {
        self.wait_for(
            &format!("deployment {deployment_id} to start"),
            deadline,
            |fake| {
                fake.states(deployment_id)
                    .iter()
                    .any(|s| s == "in_progress")
                    .then_some(())
            },
        )
        .await
    }

    /// Waits for the deployment's final status (success, failure or error) and returns it.
    pub async fn final_status(&self, deployment_id: u64, deadline: Duration) -> Status {
        self.wait_for(
            &format!("a final status of deployment {deployment_id}"),
            deadline,
            |fake| {
                fake.statuses(deployment_id)
                    .into_iter()
                    .find(|s| matches!(s.state.as_str(), "success" | "failure" | "error"))
            },
        )
        .await
    }
}

fn record_auth(fake: &FakeGitHub, headers: &HeaderMap) {
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        fake.model
            .lock()
            .unwrap()
            .authorizations
            .push(auth.to_string());
    }
}

async fn create_status(
    State(fake): State<FakeGitHub>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record_auth(&fake, &headers);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let status = Status {
        deployment_id: id,
        state: text("state").unwrap_or_default(),
        description: text("description").unwrap_or_default(),
        log_url: text("log_url"),
        environment_url: text("environment_url"),
        auto_inactive: body.get("auto_inactive").and_then(Value::as_bool),
        at: std::time::Instant::now(),
    };
    if status.description.chars().count() > 140 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed"})),
        )
            .into_response();
    }
    let (n, held) = {
        let mut model = fake.model.lock().unwrap();
        model.statuses.push(status.clone());
        (
            model.statuses.len(),
            model.held_status_answers.get(&id).cloned(),
        )
    };
    fake.touch();
    if let Some(mut held) = held {
        let _ = held.wait_for(|released| *released).await;
    }
    let base = fake.url();
    (
        StatusCode::CREATED,
        Json(json!({
            "url": format!("{base}/repos/{owner}/{repo}/deployments/{id}/statuses/{n}"), "id": n,
            "node_id": format!("DS_{n}"), "state": status.state, "description": status.description,
            "environment": "production", "log_url": status.log_url, "target_url": status.log_url,
            "environment_url": status.environment_url, "created_at": TIME, "updated_at": TIME,
            "deployment_url": format!("{base}/repos/{owner}/{repo}/deployments/{id}"),
            "repository_url": format!("{base}/repos/{owner}/{repo}"),
        })),
    )
        .into_response()
}

fn gist_json(base: &str, id: &str, gist: &Gist) -> Value {
    let files: serde_json::Map<String, Value> = gist
        .files
        .iter()
        .map(|(name, content)| {
            (name.clone(), json!({"filename": name, "type": "text/plain", "language": null,
                "raw_url": format!("{base}/raw/{id}/{name}"), "size": content.len(), "truncated": false,
                "content": content}))
        })
        .collect();
    json!({
        "url": format!("{base}/gists/{id}"), "forks_url": format!("{base}/gists/{id}/forks"),
        "commits_url": format!("{base}/gists/{id}/commits"), "id": id, "node_id": format!("G_{id}"),
        "git_pull_url": format!("{base}/{id}.git"), "git_push_url": format!("{base}/{id}.git"),
        "html_url": format!("{base}/gist/{id}"), "files": files, "public": gist.public,
        "created_at": TIME, "updated_at": TIME, "description": gist.description, "comments": 0,
        "comments_url": format!("{base}/gists/{id}/comments"),
    })
}

fn files_of(body: &Value) -> BTreeMap<String, String> {
    body.get("files")
        .and_then(Value::as_object)
        .map(|files| {
            files
                .iter()
                .filter_map(|(name, f)| {
                    Some((name.clone(), f.get("content")?.as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn create_gist(
    State(fake): State<FakeGitHub>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record_auth(&fake, &headers);
    // As on GitHub, an App installation token cannot write gists.
    let app_token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("Bearer ghs_"));
    let (id, gist, held) = {
        let mut model = fake.model.lock().unwrap();
        if model.fail_gists || app_token {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"message": "Resource not accessible by integration"})),
            )
                .into_response();
        }
        let id = format!("{:032x}", model.gists.len() + 1);
        let gist = Gist {
            description: body
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            public: body.get("public").and_then(Value::as_bool).unwrap_or(true),
            files: files_of(&body),
            updates: 0,
        };
        model.gists.insert(id.clone(), gist.clone());
        (id, gist, model.held_gists.clone())
    };
    fake.touch();
    if let Some(mut held) = held {
        let _ = held.wait_for(|released| *released).await;
    }
    (
        StatusCode::CREATED,
        Json(gist_json(&fake.url(), &id, &gist)),
    )
        .into_response()
}

async fn update_gist(
    State(fake): State<FakeGitHub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record_auth(&fake, &headers);
    let gist = {
        let mut model = fake.model.lock().unwrap();
        let Some(gist) = model.gists.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
        };
        gist.files.extend(files_of(&body));
        gist.updates += 1;
        gist.clone()
    };
    fake.touch();
    (StatusCode::OK, Json(gist_json(&fake.url(), &id, &gist))).into_response()
}

/// `GET /repos/{owner}/{repo}/tarball/{ref}`: 302 to a short-lived archive URL carrying a token, as
/// GitHub answers for a private repository.
async fn tarball_redirect(
    State(fake): State<FakeGitHub>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    record_auth(&fake, &headers);
    fake.model
        .lock()
        .unwrap()
        .tarball_requests
        .push(sha.clone());
    fake.touch();
    let location = format!(
        "{}/codeload/{owner}/{repo}/legacy.tar.gz/{sha}?token={ARCHIVE_TOKEN}",
        fake.url()
    );
    (StatusCode::FOUND, [("location", location)]).into_response()
}

/// `GET /repos/{owner}/{repo}/compare/{base}...{head}`, computed from the real repository with git:
/// the counts both ways, and head's commits that base lacks, oldest first (author login: the email's
/// local part).
async fn compare(
    State(fake): State<FakeGitHub>,
    Path((owner, repo, basehead)): Path<(String, String, String)>,
) -> Response {
    if fake.model.lock().unwrap().hold_compares {
        std::future::pending::<()>().await;
    }
    let Some(dir) = fake.model.lock().unwrap().archive_repo.clone() else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    let Some((base, head)) = basehead.split_once("...") else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(&dir)
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    };
    let count = |range: &str| {
        git(&["rev-list", "--count", range]).and_then(|n| n.trim().parse::<u64>().ok())
    };
    let (Some(ahead), Some(behind)) = (
        count(&format!("{base}..{head}")),
        count(&format!("{head}..{base}")),
    ) else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    let log = git(&[
        "log",
        "--reverse",
        "--format=%H%x1f%ae%x1f%B%x1e",
        &format!("{base}..{head}"),
    ])
    .unwrap_or_default();
    let commits: Vec<Value> = log
        .split('\x1e')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let mut parts = c.trim_start().splitn(3, '\x1f');
            let (sha, email, message) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default().trim(),
            );
            let login = email.split('@').next().unwrap_or_default();
            json!({"sha": sha, "commit": {"message": message, "author": {"email": email}},
                   "author": {"login": login}})
        })
        .collect();
    let status = match (ahead, behind) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    Json(json!({
        "url": format!("{}/repos/{owner}/{repo}/compare/{basehead}", fake.url()),
        "html_url": format!("https://github.example/{owner}/{repo}/compare/{basehead}"),
        "status": status, "ahead_by": ahead, "behind_by": behind, "total_commits": ahead,
        "commits": commits, "files": [],
    }))
    .into_response()
}

/// The archive itself (`git archive` of the sha), only with the redirect's token.
async fn archive(
    State(fake): State<FakeGitHub>,
    Path((_owner, _repo, sha)): Path<(String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if query.get("token").map(String::as_str) != Some(ARCHIVE_TOKEN) {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    let Some(repo) = fake.model.lock().unwrap().archive_repo.clone() else {
        return (StatusCode::NOT_FOUND, "no repository").into_response();
    };
    let out = std::process::Command::new("git")
        .current_dir(&repo)
        .args(["archive", "--format=tar.gz", &sha])
        .output()
        .unwrap();
    if !out.status.success() {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    fake.model.lock().unwrap().archive_downloads.push(sha);
    fake.touch();
    (
        StatusCode::OK,
        [("content-type", "application/x-gzip")],
        out.stdout,
    )
        .into_response()
}

/// Holds every request forever while the fake is silent; the connection stays open.
async fn answer_unless_silent(
    State(fake): State<FakeGitHub>,
    request: Request,
    next: Next,
) -> Response {
    let held = {
        let mut model = fake.model.lock().unwrap();
        let call = format!("{} {}", request.method(), request.uri().path());
        model.requests.push((std::time::Instant::now(), call));
        if model.silent {
            let call = format!("{} {}", request.method(), request.uri().path());
            model.unanswered.push(call);
        }
        model.silent
    };
    if held {
        fake.touch();
        std::future::pending::<()>().await;
    }
    next.run(request).await
}

/// `GET /repos/{owner}/{repo}/commits/{ref}`: the commit a ref names in the webhook target's repository.
async fn get_commit(
    State(fake): State<FakeGitHub>,
    Path((_owner, _repo, git_ref)): Path<(String, String, String)>,
) -> Response {
    // `…/commits/{sha}/status` and `…/commits/{sha}/check-runs` share the route.
    if let Some(sha) = git_ref.strip_suffix("/status") {
        let statuses = fake
            .model
            .lock()
            .unwrap()
            .commit_statuses
            .get(sha)
            .cloned()
            .unwrap_or_default();
        let list: Vec<Value> = statuses
            .iter()
            .map(|(context, state)| json!({"context": context, "state": state}))
            .collect();
        let state = if statuses.iter().any(|(_, s)| s == "failure" || s == "error") {
            "failure"
        } else if !statuses.is_empty() && statuses.iter().all(|(_, s)| s == "success") {
            "success"
        } else {
            "pending"
        };
        return Json(
            json!({"state": state, "sha": sha, "total_count": list.len(), "statuses": list}),
        )
        .into_response();
    }
    if git_ref.ends_with("/check-runs") {
        return Json(json!({"total_count": 0, "check_runs": []})).into_response();
    }
    let repo_dir = {
        let model = fake.model.lock().unwrap();
        model
            .target
            .as_ref()
            .map(|t| t.repo.clone())
            .or(model.repo.clone())
    };
    let Some(repo_dir) = repo_dir else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    match commit_of(&repo_dir, &git_ref) {
        Some(sha) => Json(json!({"sha": sha})).into_response(),
        None => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": format!("No commit found for SHA: {git_ref}")})),
        )
            .into_response(),
    }
}

/// The commit `git_ref` names in `repo`, as GitHub resolves a ref.
fn commit_of(repo: &std::path::Path, git_ref: &str) -> Option<String> {
    let resolved = std::process::Command::new("git")
        .current_dir(repo)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{git_ref}^{{commit}}"),
        ])
        .output()
        .unwrap();
    resolved
        .status
        .success()
        .then(|| String::from_utf8_lossy(&resolved.stdout).trim().to_string())
}

async fn create_deployment(
    State(fake): State<FakeGitHub>,
    ConnectInfo(connection): ConnectInfo<Cut>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record_auth(&fake, &headers);
    let (scripted, target, repo_dir, id) = {
        let mut model = fake.model.lock().unwrap();
        model.deployment_requests.push(body.clone());
        let scripted = model.scripted.pop_front();
        let id = 5000 + model.deployments.len() as u64 + 1;
        let repo_dir = model
            .target
            .as_ref()
            .map(|t| t.repo.clone())
            .or(model.repo.clone());
        (scripted, model.target.clone(), repo_dir, id)
    };
    fake.touch();
    if let Some((status, answer)) = scripted {
        return (StatusCode::from_u16(status).unwrap(), Json(answer)).into_response();
    }
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (git_ref, environment, task) = (text("ref"), text("environment"), text("task"));
    let Some(repo_dir) = repo_dir else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": "no webhook target"})),
        )
            .into_response();
    };
    let Some(sha) = commit_of(&repo_dir, &git_ref) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": format!("No ref found for: {git_ref}")})),
        )
            .into_response();
    };
    let payload = body.get("payload").cloned().unwrap_or(json!({}));
    let base = fake.url();
    let created = json!({
        "url": format!("{base}/repos/{owner}/{repo}/deployments/{id}"), "id": id, "node_id": format!("DE_{id}"),
        "sha": sha, "ref": git_ref, "task": task, "payload": payload, "original_environment": environment,
        "environment": environment, "description": body.get("description"), "creator": null,
        "created_at": now(), "updated_at": now(),
        "statuses_url": format!("{base}/repos/{owner}/{repo}/deployments/{id}/statuses"),
        "repository_url": format!("{base}/repos/{owner}/{repo}"),
        "transient_environment": body.get("transient_environment").and_then(Value::as_bool).unwrap_or(false),
        "production_environment": body.get("production_environment").and_then(Value::as_bool)
            .unwrap_or(environment == "production"),
    });
    let drop_answer = {
        let mut model = fake.model.lock().unwrap();
        model.deployments.push((id, created.clone()));
        std::mem::take(&mut model.drop_next_deployment_answer)
    };
    if drop_answer {
        connection.cut();
    }
    fake.touch();
    let Some(target) = target else {
        return (StatusCode::CREATED, Json(created)).into_response();
    };
    let event = super::wire::deployment_event(id, &git_ref, &sha, &environment, &task, payload);
    tokio::spawn(async move {
        let (status, answer) =
            super::wire::deliver(target.zbot, "deployment", &format!("gh-{id}"), &event).await;
        assert_eq!(status, 202, "zbot refused the deployment webhook: {answer}");
    });
    (StatusCode::CREATED, Json(created)).into_response()
}

/// Newest first, filtered by `ref`, `environment` and `task` and cut to page `page` of `per_page`, as
/// GitHub does.
/// With an ETag of the listing, and 304 (no body) when `If-None-Match` names the current one.
async fn list_deployments(
    State(fake): State<FakeGitHub>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let answer = list_deployments_answer(&fake, &query, &headers);
    fake.touch();
    answer
}

fn list_deployments_answer(
    fake: &FakeGitHub,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let mut model = fake.model.lock().unwrap();
    model.deployment_lists.push(query.clone());
    let matches = |d: &Value| {
        ["ref", "environment", "task"].iter().all(|key| {
            query
                .get(*key)
                .is_none_or(|wanted| d[*key] == *wanted.as_str())
        })
    };
    let per_page = query
        .get("per_page")
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    let page: usize = query.get("page").and_then(|n| n.parse().ok()).unwrap_or(1);
    let list: Vec<Value> = model
        .deployments
        .iter()
        .rev()
        .map(|(_, d)| d.clone())
        .filter(matches)
        .skip(page.saturating_sub(1) * per_page)
        .take(per_page)
        .collect();
    let body = Value::Array(list);
    let etag = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.to_string().hash(&mut hasher);
        format!("W/\"{:016x}\"", hasher.finish())
    };
    let unchanged = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|wanted| wanted == etag);
    let status = if unchanged { 304 } else { 200 };
    model.list_answers.push(status);
    if !unchanged {
        model.rate_used += 1;
    }
    let rate = rate_headers(&model);
    if unchanged {
        return (StatusCode::NOT_MODIFIED, [("etag", etag)], rate).into_response();
    }
    (StatusCode::OK, [("etag", etag)], rate, Json(body)).into_response()
}

/// GitHub's core rate limit, as the fake counts it.
const RATE_LIMIT: u64 = 5000;

fn rate_headers(model: &Model) -> [(&'static str, String); 3] {
    [
        ("x-ratelimit-limit", RATE_LIMIT.to_string()),
        (
            "x-ratelimit-remaining",
            RATE_LIMIT.saturating_sub(model.rate_used).to_string(),
        ),
        ("x-ratelimit-reset", "4102444800".to_string()),
    ]
}

/// `GET /rate_limit`, which does not count against the limit.
async fn rate_limit(State(fake): State<FakeGitHub>) -> Response {
    let model = fake.model.lock().unwrap();
    let core = json!({"limit": RATE_LIMIT, "remaining": RATE_LIMIT.saturating_sub(model.rate_used),
        "reset": 4102444800u64, "used": model.rate_used, "resource": "core"});
    Json(json!({"resources": {"core": core}, "rate": core})).into_response()
}

async fn list_statuses(
    State(fake): State<FakeGitHub>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> Response {
    let base = fake.url();
    let statuses: Vec<Value> = fake
        .statuses(id)
        .iter()
        .enumerate()
        .rev()
        .map(|(n, st)| {
            json!({"url": format!("{base}/s/{n}"), "id": n + 1, "node_id": format!("DS_{n}"), "state": st.state,
                "created_at": TIME, "updated_at": TIME,
                "deployment_url": format!("{base}/repos/{owner}/{repo}/deployments/{id}"),
                "repository_url": format!("{base}/repos/{owner}/{repo}")})
        })
        .collect();
    Json(Value::Array(statuses)).into_response()
}

/// The fake knows one repository, `octo/adxstat`; any other is hidden from the token (404).
async fn get_repository(Path((owner, repo)): Path<(String, String)>) -> Response {
    if (owner.as_str(), repo.as_str()) == ("octo", "adxstat") {
        Json(json!({"id": 1, "name": repo, "full_name": format!("{owner}/{repo}")})).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response()
    }
}

/// A GitHub App's JWT exchanged for an installation token.
async fn installation_token(State(fake): State<FakeGitHub>, headers: HeaderMap) -> Response {
    record_auth(&fake, &headers);
    (
        StatusCode::CREATED,
        Json(
            json!({"token": "ghs_installation_token", "expires_at": "2099-01-01T00:00:00Z",
                    "permissions": {"deployments": "write", "metadata": "read"}}),
        ),
    )
        .into_response()
}

/// A switch on one connection: once cut, nothing more is written to it, so an answer being written
/// fails and the server closes the connection without a byte of it.
#[derive(Clone, Default)]
struct Cut(Arc<AtomicBool>);

impl Cut {
    fn cut(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Accepts connections the handlers can [`Cut`].
struct CuttableListener(TcpListener);

struct CuttableStream {
    tcp: TcpStream,
    cut: Cut,
}

impl axum::serve::Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CuttableStream, SocketAddr) {
        loop {
            if let Ok((tcp, addr)) = self.0.accept().await {
                let cut = Cut::default();
                return (CuttableStream { tcp, cut }, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, CuttableListener>> for Cut {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Cut {
        stream.io().cut.clone()
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.cut.0.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
