//! Just enough of GitHub and Slack on loopback for the benchmark: canned answers, and the arrival
//! times the cases measure.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::routing::{patch, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message as Frame;

const TIME: &str = "2026-11-27T10:00:00Z";

/// What the fake GitHub saw, with arrival times.
#[derive(Default)]
pub struct Seen {
    /// (arrival, deployment id) of `POST …/deployments`.
    pub deployments: Vec<(Instant, u64)>,
    /// (arrival, deployment id, state) of `POST …/statuses`.
    pub statuses: Vec<(Instant, u64, String)>,
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    pub changed: Arc<Notify>,
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback");
        let fake = FakeGitHub {
            addr: listener.local_addr().expect("bound"),
            seen: Arc::default(),
            changed: Arc::default(),
        };
        let app = Router::new()
            .route("/repos/{owner}/{repo}/deployments", post(create_deployment))
            .route(
                "/repos/{owner}/{repo}/deployments/{id}/statuses",
                post(create_status),
            )
            .route("/gists", post(gist))
            .route("/gists/{id}", patch(gist))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn create_deployment(
    State(fake): State<FakeGitHub>,
    Path((owner, repo)): Path<(String, String)>,
) -> (axum::http::StatusCode, Json<Value>) {
    let id = {
        let mut seen = fake.seen.lock().expect("not poisoned");
        let id = 900_000 + seen.deployments.len() as u64;
        seen.deployments.push((Instant::now(), id));
        id
    };
    fake.changed.notify_waiters();
    let base = fake.url();
    (
        axum::http::StatusCode::CREATED,
        Json(
            json!({"url": format!("{base}/repos/{owner}/{repo}/deployments/{id}"), "id": id, "node_id": "D",
            "sha": "0000000000000000000000000000000000000000", "ref": "v1", "task": "deploy", "payload": {},
            "environment": "production", "created_at": TIME, "updated_at": TIME,
            "statuses_url": format!("{base}/s"), "repository_url": format!("{base}/r")}),
        ),
    )
}

async fn create_status(
    State(fake): State<FakeGitHub>,
    Path((_, _, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> (axum::http::StatusCode, Json<Value>) {
    let state = body["state"].as_str().unwrap_or_default().to_string();
    fake.seen
        .lock()
        .expect("not poisoned")
        .statuses
        .push((Instant::now(), id, state.clone()));
    fake.changed.notify_waiters();
    let base = fake.url();
    (
        axum::http::StatusCode::CREATED,
        Json(
            json!({"url": format!("{base}/s/1"), "id": 1, "node_id": "S", "state": state, "created_at": TIME,
            "updated_at": TIME, "deployment_url": format!("{base}/d"), "repository_url": format!("{base}/r")}),
        ),
    )
}

async fn gist(State(fake): State<FakeGitHub>) -> (axum::http::StatusCode, Json<Value>) {
    let base = fake.url();
    (
        axum::http::StatusCode::CREATED,
        Json(
            json!({"url": format!("{base}/g"), "forks_url": format!("{base}/g"), "commits_url": format!("{base}/g"),
            "id": "g1", "node_id": "G", "git_pull_url": format!("{base}/g"), "git_push_url": format!("{base}/g"),
            "html_url": format!("{base}/gist/g1"), "files": {}, "public": false, "created_at": TIME,
            "updated_at": TIME, "description": "", "comments": 0, "comments_url": format!("{base}/g")}),
        ),
    )
}

/// Slack's Web API (the calls zbot makes) and one Socket Mode connection.
#[derive(Clone)]
pub struct FakeSlack {
    pub api: SocketAddr,
    ws: SocketAddr,
    socket: Arc<Mutex<Option<mpsc::UnboundedSender<Frame>>>>,
    pub connected: Arc<Notify>,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let api = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback");
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback");
        let fake = FakeSlack {
            api: api.local_addr().expect("bound"),
            ws: ws.local_addr().expect("bound"),
            socket: Arc::default(),
            connected: Arc::default(),
        };
        let app = Router::new()
            .route("/api/{method}", post(web_api).get(web_api))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(api, app).await });
        let sockets = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = ws.accept().await {
                let fake = sockets.clone();
                tokio::spawn(async move { fake.serve(tcp).await });
            }
        });
        fake
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.api)
    }

    async fn serve(&self, tcp: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
        let hello = json!({"type": "hello", "num_connections": 1, "debug_info": {"host": "bench"},
            "connection_info": {"app_id": "A0APP"}});
        let _ = tx.send(Frame::text(hello.to_string()));
        *self.socket.lock().expect("not poisoned") = Some(tx);
        self.connected.notify_waiters();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if sink.send(frame).await.is_err() {
                    return;
                }
            }
        });
        // Acks are read and dropped.
        while let Some(Ok(_)) = stream.next().await {}
    }

    pub fn is_connected(&self) -> bool {
        self.socket.lock().expect("not poisoned").is_some()
    }

    /// Sends an app_mention envelope.
    pub fn mention(&self, n: u64, text: &str) {
        let ts = format!("1700000000.{n:06}");
        let envelope = json!({"envelope_id": format!("env-{n}"), "type": "events_api", "accepts_response_payload": false,
            "retry_attempt": 0, "retry_reason": "",
            "payload": {"token": "x", "team_id": "T0", "api_app_id": "A0APP", "type": "event_callback",
                "event_id": format!("Ev{n}"), "event_time": 1_700_000_000,
                "event": {"type": "app_mention", "user": "U0USER", "text": format!("<@U0BOT> {text}"),
                    "ts": ts, "channel": "C0CHAN", "event_ts": ts}}});
        if let Some(socket) = self.socket.lock().expect("not poisoned").as_ref() {
            let _ = socket.send(Frame::text(envelope.to_string()));
        }
    }
}

async fn web_api(State(fake): State<FakeSlack>, Path(method): Path<String>) -> Json<Value> {
    Json(match method.as_str() {
        "apps.connections.open" => {
            json!({"ok": true, "url": format!("ws://{}/link/?ticket=t&app_id=A0APP", fake.ws)})
        }
        "auth.test" => {
            json!({"ok": true, "url": "https://bench.slack.com/", "team": "bench", "user": "zbot",
            "team_id": "T0", "user_id": "U0BOT", "bot_id": "B0BOT"})
        }
        _ => json!({"ok": true, "channel": "C0CHAN", "ts": "1700000001.000001",
            "message": {"type": "message", "text": "", "ts": "1700000001.000001", "bot_id": "B0BOT"}}),
    })
}
