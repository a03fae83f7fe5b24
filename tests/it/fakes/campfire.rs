//! A fake Campfire (ONCE Campfire's bot API): records what the bot posts to rooms
//! (`POST /rooms/{room_id}/{bot_key}/messages`, JSON `{"body": …}` or plain text), and sends room
//! webhooks to zbot as Campfire does when the bot is mentioned.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The bot key the fake knows.
pub const BOT_KEY: &str = "2-AbCdEf0123456789";

/// One message the bot posted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub room: String,
    pub body: String,
}

#[derive(Clone)]
pub struct FakeCampfire {
    pub addr: SocketAddr,
    posts: Arc<Mutex<Vec<Posted>>>,
    changed: super::Changes,
}

impl FakeCampfire {
    pub async fn start() -> FakeCampfire {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeCampfire {
            addr,
            posts: Arc::default(),
            changed: super::Changes::default(),
        };
        let app = Router::new()
            .route("/rooms/{room}/{bot_key}/messages", post(message))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn posts(&self) -> Vec<Posted> {
        self.posts.lock().unwrap().clone()
    }

    /// Waits for a message in `room` containing `needle`.
    pub async fn message_containing(&self, room: &str, needle: &str) -> Posted {
        self.changed
            .wait_for(
                &format!("a Campfire message containing {needle:?}"),
                Duration::from_secs(60),
                || {
                    self.posts()
                        .into_iter()
                        .find(|p| p.room == room && p.body.contains(needle))
                },
                || format!("posted: {:#?}", self.posts()),
            )
            .await
    }
}

/// A room webhook's JSON, as Campfire sends it when `user` mentions the bot in `room`.
pub fn webhook(message_id: u64, user: (u64, &str), room: (u64, &str), text: &str) -> Value {
    json!({
        "user": {"id": user.0, "name": user.1},
        "room": {"id": room.0, "name": room.1, "path": format!("/rooms/{}/{BOT_KEY}/messages", room.0)},
        "message": {"id": message_id, "body_text": text, "body_html": format!("<p>{text}</p>"),
                    "path": format!("/rooms/{}/@{message_id}", room.0)},
    })
}

/// Sends a room webhook to zbot at `path`; returns zbot's answer.
pub async fn send(zbot: SocketAddr, path: &str, payload: &Value) -> (u16, String) {
    let body = serde_json::to_vec(payload).unwrap();
    let headers = [("Content-Type", "application/json".to_string())];
    super::wire::http(zbot, "POST", path, &headers, &body).await
}

async fn message(
    State(fake): State<FakeCampfire>,
    Path((room, bot_key)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    if bot_key != BOT_KEY {
        return StatusCode::NOT_FOUND;
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let body = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["body"].as_str().map(str::to_string))
        .unwrap_or(text);
    fake.posts.lock().unwrap().push(Posted { room, body });
    fake.changed.touch();
    StatusCode::CREATED
}
