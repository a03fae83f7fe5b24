//! A fake Heroku Platform API (version 3): builds (`pending` → `succeeded` / `failed`) whose source it
//! downloads from the URL it is given (the fake GitHub's archive), a streamed `output_stream_url`,
//! releases, and the documented error bodies (`{"id", "message"}`) for 401, 404, 422 and 429.
//! Shapes: <https://devcenter.heroku.com/articles/platform-api-reference#build>.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The API key the fake accepts.
pub const API_KEY: &str = "heroku-api-key-0123456789abcdef";

/// What the next build does.
#[derive(Debug, Clone)]
pub enum Script {
    /// Prints these lines, then succeeds.
    Succeed(Vec<String>),
    /// Prints these lines, then fails.
    Fail(Vec<String>),
    /// Prints its first line and stays pending, its stream open, until the test ends.
    Hang,
    /// The creation is received and never answered.
    HoldCreation,
    /// The creation is refused with this status, body and `Retry-After`.
    Refuse(u16, Value, Option<u64>),
}

#[derive(Debug, Clone)]
pub struct Build {
    pub id: String,
    pub app: String,
    pub status: String,
    /// `source_blob` as zbot sent it.
    pub source_blob: Value,
    /// The files of the archive the fake downloaded from `source_blob.url`.
    pub files: Vec<String>,
    pub release: Option<(String, u64)>,
    /// `Authorization` and `Accept` of the creation.
    pub authorization: String,
    pub accept: String,
}

#[derive(Default)]
struct Model {
    apps: Vec<String>,
    scripts: std::collections::VecDeque<Script>,
    builds: BTreeMap<String, Build>,
    /// Lines each build printed, by id.
    output: BTreeMap<String, Vec<String>>,
    next_version: u64,
    /// How many of the next build polls answer 503.
    failing_polls: u32,
    /// Polls answered so far.
    polls: u32,
    /// Release lookups answer 500.
    failing_releases: bool,
    /// Creations held unanswered.
    held_creations: u32,
}

#[derive(Clone)]
pub struct FakeHeroku {
    pub addr: SocketAddr,
    model: Arc<Mutex<Model>>,
    changed: super::Changes,
}

impl FakeHeroku {
    /// A fake that knows the apps `apps`.
    pub async fn start(apps: &[&str]) -> FakeHeroku {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeHeroku {
            addr,
            model: Arc::new(Mutex::new(Model {
                apps: apps.iter().map(|a| a.to_string()).collect(),
                next_version: 42,
                ..Model::default()
            })),
            changed: super::Changes::default(),
        };
        let app = Router::new()
            .route("/apps/{app}", get(app_info))
            .route("/apps/{app}/builds", post(create_build))
            .route("/apps/{app}/builds/{id}", get(build_info))
            .route("/apps/{app}/releases/{id}", get(release_info))
            .route("/streams/{id}", get(stream))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the next build does (by default it succeeds).
    pub fn script(&self, script: Script) {
        self.model.lock().unwrap().scripts.push_back(script);
    }

    /// The next `n` build polls answer 503 (Heroku's API has bad moments).
    pub fn fail_polls(&self, n: u32) {
        self.model.lock().unwrap().failing_polls = n;
    }

    /// How many build polls were answered (503s included).
    pub fn polls(&self) -> u32 {
        self.model.lock().unwrap().polls
    }

    /// Every release lookup answers 500.
    pub fn fail_releases(&self) {
        self.model.lock().unwrap().failing_releases = true;
    }

    pub fn builds(&self) -> Vec<Build> {
        self.model
            .lock()
            .unwrap()
            .builds
            .values()
            .cloned()
            .collect()
    }

    /// Waits until a build creation is held unanswered.
    pub async fn held_creation(&self) {
        self.changed
            .wait_for(
                "a held build creation",
                std::time::Duration::from_secs(60),
                || (self.model.lock().unwrap().held_creations > 0).then_some(()),
                || "no creation held".to_string(),
            )
            .await
    }

    /// Waits for the first build to be created, and returns it.
    pub async fn first_build(&self) -> Build {
        self.changed
            .wait_for(
                "a build",
                std::time::Duration::from_secs(60),
                || self.builds().into_iter().next(),
                || format!("builds: {:#?}", self.builds()),
            )
            .await
    }
}

fn error(status: u16, id: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"id": id, "message": message})),
    )
        .into_response()
}

fn build_json(base: &str, b: &Build) -> Value {
    json!({
        "app": {"id": format!("app-{}", b.app), "name": b.app},
        "buildpacks": [{"url": "heroku/nodejs", "name": "heroku/nodejs"}],
        "created_at": "2026-11-29T12:00:00Z", "updated_at": "2026-11-29T12:00:00Z",
        "id": b.id, "status": b.status,
        "output_stream_url": format!("{base}/streams/{}", b.id),
        "release": b.release.as_ref().map(|(id, _)| json!({"id": id})),
        "slug": null,
        "source_blob": {"checksum": null, "url": b.source_blob["url"], "version": b.source_blob["version"], "version_description": null},
        "stack": "heroku-24",
        "user": {"id": "user-1", "email": "ops@example.com"},
    })
}

/// A GET of `url` over loopback: (status, body).
async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap_or_default();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return (0, Vec::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        response.get(split + 4..).unwrap_or_default().to_vec(),
    )
}

/// The files of a gzipped tarball.
fn tar_files(archive: &[u8]) -> Vec<String> {
    use std::io::Write;
    let mut tar = std::process::Command::new("tar")
        .args(["-tzf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(archive).unwrap();
    let out = tar.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `GET /apps/{app}`: the app's name and id, or 401 / 404 as Heroku answers them.
async fn app_info(
    State(fake): State<FakeHeroku>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if authorization != format!("Bearer {API_KEY}") {
        return error(401, "unauthorized", "Invalid credentials provided.");
    }
    if !fake.model.lock().unwrap().apps.contains(&app) {
        return error(404, "not_found", "Couldn't find that app.");
    }
    Json(json!({"name": app, "id": format!("01234567-89ab-cdef-0123-{app:0>12}")})).into_response()
}

async fn create_build(
    State(fake): State<FakeHeroku>,
    Path(app): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (authorization, accept) = (header("authorization"), header("accept"));
    if authorization != format!("Bearer {API_KEY}") {
        return error(401, "unauthorized", "Invalid credentials provided.");
    }
    if !accept.contains("application/vnd.heroku+json; version=3") {
        return error(
            406,
            "not_acceptable",
            "Accept header must be application/vnd.heroku+json; version=3",
        );
    }
    let (known, script) = {
        let mut model = fake.model.lock().unwrap();
        (model.apps.contains(&app), model.scripts.pop_front())
    };
    if !known {
        return error(404, "not_found", "Couldn't find that app.");
    }
    let script = script.unwrap_or(Script::Succeed(vec!["-----> Build succeeded!".into()]));
    if let Script::HoldCreation = script {
        fake.model.lock().unwrap().held_creations += 1;
        fake.changed.touch();
        std::future::pending::<()>().await;
    }
    // `{source_url}` in a script stands for the URL zbot sent: Heroku may echo it.
    let sent_url = body["source_blob"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Script::Refuse(status, answer, retry_after) = &script {
        let answer: Value =
            serde_json::from_str(&answer.to_string().replace("{source_url}", &sent_url)).unwrap();
        let mut response = (StatusCode::from_u16(*status).unwrap(), Json(answer)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
        }
        return response;
    }
    let source_blob = body["source_blob"].clone();
    let url = source_blob["url"].as_str().unwrap_or_default().to_string();
    if url.is_empty() || source_blob["version"].as_str().is_none() {
        return error(
            422,
            "invalid_params",
            "Invalid source_blob: url and version are required",
        );
    }
    // Heroku downloads the source when the build starts.
    let (status, archive) = fetch(&url).await;
    let files = if status == 200 {
        tar_files(&archive)
    } else {
        Vec::new()
    };
    let id = {
        let model = fake.model.lock().unwrap();
        format!("01234567-89ab-cdef-0123-{:012}", model.builds.len() + 1)
    };
    let (lines, outcome) = match (&script, status) {
        (_, code) if code != 200 => (
            vec![format!("-----> Unable to fetch source: {code}")],
            Some("failed"),
        ),
        (Script::Succeed(lines), _) => (lines.clone(), Some("succeeded")),
        (Script::Fail(lines), _) => (lines.clone(), Some("failed")),
        _ => (vec!["-----> Building on the Heroku-24 stack".into()], None),
    };
    let mut lines_all = vec![
        "-----> Building on the Heroku-24 stack".to_string(),
        format!("-----> Fetched source: {} files", files.len()),
    ];
    lines_all.extend(lines.iter().map(|l| l.replace("{source_url}", &sent_url)));
    let build = Build {
        id: id.clone(),
        app,
        status: "pending".into(),
        source_blob,
        files,
        release: None,
        authorization,
        accept,
    };
    {
        let mut model = fake.model.lock().unwrap();
        model.builds.insert(id.clone(), build.clone());
        model.output.insert(id.clone(), lines_all);
        if let Some(outcome) = outcome {
            // Remembered for the stream's end.
            model
                .builds
                .get_mut(&id)
                .unwrap()
                .source_blob
                .as_object_mut()
                .unwrap()
                .insert("_outcome".into(), json!(outcome));
        }
    }
    fake.changed.touch();
    let mut answer = build_json(&fake.url(), &build);
    answer["source_blob"]["url"] = json!(url);
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// The build's output, streamed; once printed the build ends as scripted (a hanging one never does).
async fn stream(State(fake): State<FakeHeroku>, Path(id): Path<String>) -> Response {
    let (lines, outcome) = {
        let model = fake.model.lock().unwrap();
        let Some(build) = model.builds.get(&id) else {
            return (StatusCode::NOT_FOUND, "").into_response();
        };
        (
            model.output.get(&id).cloned().unwrap_or_default(),
            build.source_blob["_outcome"].as_str().map(str::to_string),
        )
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        for line in lines {
            if tx.send(Ok(format!("{line}\n").into_bytes())).await.is_err() {
                return;
            }
        }
        let Some(outcome) = outcome else {
            // Pending forever: the stream stays open while anyone reads it.
            tx.closed().await;
            return;
        };
        {
            let mut model = fake.model.lock().unwrap();
            let version = model.next_version;
            model.next_version += 1;
            let build = model.builds.get_mut(&id).unwrap();
            build.status = outcome.clone();
            if outcome == "succeeded" {
                build.release = Some((format!("release-{version}"), version));
            }
        }
        fake.changed.touch();
        drop(tx);
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        StatusCode::OK,
        [("content-type", "text/plain")],
        Body::from_stream(body),
    )
        .into_response()
}

async fn build_info(
    State(fake): State<FakeHeroku>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return error(401, "unauthorized", "Invalid credentials provided.");
    }
    let (build, fail) = {
        let mut model = fake.model.lock().unwrap();
        model.polls += 1;
        let fail = model.failing_polls > 0;
        if fail {
            model.failing_polls -= 1;
        }
        (model.builds.get(&id).cloned(), fail)
    };
    if fail {
        return error(503, "unavailable", "Heroku is having trouble.");
    }
    match build {
        Some(build) if build.app == app => {
            let mut answer = build_json(&fake.url(), &build);
            answer["source_blob"]["url"] = json!("(not shown)");
            Json(answer).into_response()
        }
        _ => error(404, "not_found", "Couldn't find that build."),
    }
}

async fn release_info(
    State(fake): State<FakeHeroku>,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    if fake.model.lock().unwrap().failing_releases {
        return error(500, "internal_server_error", "Internal server error.");
    }
    let release = fake.model.lock().unwrap().builds.values().find_map(|b| {
        b.release
            .clone()
            .filter(|(rid, _)| *rid == id && b.app == app)
    });
    match release {
        Some((id, version)) => Json(json!({
            "id": id, "version": version, "status": "succeeded", "current": true,
            "description": "Deploy", "app": {"name": app},
            "created_at": "2026-11-29T12:00:00Z", "updated_at": "2026-11-29T12:00:00Z",
        }))
        .into_response(),
        None => error(404, "not_found", "Couldn't find that release."),
    }
}
