//! Campfire (37signals' ONCE Campfire) as a chat beside Slack: the room webhook in, the bot API out.
//! It only carries messages: the same [`Bot`] handles them (grammar, policy, locks, queue) and the
//! notifier tells the room how its deployments ended.
//!
//! - **In.** A Campfire bot's webhook POSTs JSON to `[campfire] webhook_path` on zbot's listener when
//!   the bot is mentioned in a room or written to directly: `user` (`id`, `name`), `room` (`id`,
//!   `name`) and `message` (its text as `body_text` / `body_html`, or as ONCE Campfire sends it,
//!   `body.plain` / `body.html`). Campfire signs nothing, so the path's last segment is a secret token,
//!   compared in constant time: a wrong one gets 401 and nothing else happens. A message from a room
//!   not in `[campfire] rooms` is ignored. The webhook is answered at once with an empty body (no reply
//!   from the answer); the bot answers through the API.
//! - **Out.** `POST {url}/rooms/{room_id}/{bot_key}/messages` with `{"body": …}`, the text plain (Slack
//!   markup turned into text, links as `label: url`). Campfire has no threads and no message edits:
//!   [`ChatOutput::threads`] is false, so deployments get no live status, only their outcome.
//!
//! The bot key is in every post's path: no error or log line carries the URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::chat::bot::Bot;
use crate::chat::{Adapter, ChatError, ChatOutput, Inbound, InboundKind, Message};
use crate::config::CampfireConfig;
use crate::domain::{Room, User};
use crate::http::{HttpClient, HttpError};
use crate::secret::Secret;

/// Posting to Campfire rooms through the bot API.
#[derive(Clone, Debug)]
pub struct CampfireOutput {
    client: HttpClient,
    /// `[campfire] url`, without a trailing slash.
    url: String,
    bot_key: Secret,
    /// Numbers the messages posted (Campfire's answer carries no id zbot needs).
    posted: Arc<AtomicU64>,
}

impl CampfireOutput {
    /// A client for `[campfire]`, bounded by its `timeout` and `connect_timeout`.
    pub fn new(config: &CampfireConfig) -> Result<CampfireOutput, HttpError> {
        Ok(CampfireOutput {
            client: HttpClient::new(config.timeouts.connect, config.timeouts.request)?,
            url: config.url.clone(),
            bot_key: config.bot_key.clone(),
            posted: Arc::default(),
        })
    }
}

/// Slack's markup as Campfire shows it: plain text.
fn text_of(message: &Message) -> String {
    crate::mrkdwn::plain(&message.text)
}

impl ChatOutput for CampfireOutput {
    async fn post(
        &self,
        channel: &str,
        _thread_ts: Option<&str>,
        message: &Message,
    ) -> Result<String, ChatError> {
        let room: Room = channel
            .parse()
            .map_err(|e| ChatError::NoSuchPlace(format!("not a Campfire room: {e}")))?;
        let url = format!(
            "{}/rooms/{room}/{}/messages",
            self.url,
            self.bot_key.expose()
        );
        let body = serde_json::json!({ "body": text_of(message) });
        let request = HttpClient::request(
            http::Method::POST,
            &url,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .map_err(|e| ChatError::Other(format!("Campfire: {e}")))?;
        let answer = self
            .client
            .send(request)
            .await
            .map_err(|e| ChatError::Other(format!("Campfire: {e}")))?;
        match answer.status {
            200..300 => Ok(self.posted.fetch_add(1, Ordering::Relaxed).to_string()),
            404 => Err(ChatError::NoSuchPlace(format!(
                "Campfire has no room {room} for this bot (404): check [campfire] rooms and bot_key"
            ))),
            401 | 403 => Err(ChatError::Other(format!(
                "Campfire refused the bot key ({}): check [campfire] bot_key",
                answer.status
            ))),
            status => Err(ChatError::Other(format!("Campfire answered {status}"))),
        }
    }

    /// Campfire has no message edits: nothing to do.
    async fn update(&self, _channel: &str, _ts: &str, _message: &Message) -> Result<(), ChatError> {
        Ok(())
    }

    fn adapter(&self) -> Adapter {
        Adapter::campfire()
    }

    fn threads(&self) -> bool {
        false
    }
}

/// A room webhook's JSON, as the issue of Campfire's bot API describes it and as ONCE Campfire sends it.
#[derive(Debug, Deserialize)]
struct Payload {
    user: Named,
    room: Named,
    message: Said,
}

#[derive(Debug, Deserialize)]
struct Named {
    id: IdOrText,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdOrText {
    Number(u64),
    Text(String),
}

impl IdOrText {
    fn text(&self) -> String {
        match self {
            IdOrText::Number(n) => n.to_string(),
            IdOrText::Text(text) => text.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Said {
    #[serde(default)]
    id: Option<IdOrText>,
    #[serde(default)]
    body_text: Option<String>,
    #[serde(default)]
    body: Option<Body>,
}

#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default)]
    plain: Option<String>,
}

/// What the webhook handler shares.
#[derive(Clone)]
struct Hook {
    bot: Arc<Bot<CampfireOutput>>,
    token: Secret,
    rooms: Vec<Room>,
    /// Numbers messages that came without an id.
    received: Arc<AtomicU64>,
}

/// The room webhook's route: `POST [campfire] webhook_path`, handing messages to `bot`.
pub fn router(bot: Arc<Bot<CampfireOutput>>, config: &CampfireConfig) -> Router {
    let path = format!("{}/{{token}}", config.webhook_prefix);
    Router::new().route(&path, post(webhook)).with_state(Hook {
        bot,
        token: config.webhook_token.clone(),
        rooms: config.rooms.clone(),
        received: Arc::default(),
    })
}

/// Whether `given` is the webhook's token, compared in constant time.
fn token_matches(given: &str, token: &Secret) -> bool {
    given.as_bytes().ct_eq(token.expose().as_bytes()).into()
}

/// The most a room webhook's body may hold. Zbot's own bound: a Campfire bot message is a few
/// hundred bytes of JSON; the token is checked before any of it is read.
pub const MAX_BODY: usize = 64 * 1024;

/// How long a room webhook's body may take to arrive once its token matched.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Every answer but 200 has an empty body: Campfire posts a webhook answer's body in the room as the
/// bot's reply.
async fn webhook(State(hook): State<Hook>, Path(token): Path<String>, body: HttpBody) -> Response {
    if !token_matches(&token, &hook.token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body = match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
        Err(_) => return StatusCode::REQUEST_TIMEOUT.into_response(),
    };
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::warn!("a Campfire webhook zbot cannot read: {e}");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let Ok(room) = payload.room.id.text().parse::<Room>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !hook.rooms.contains(&room) {
        tracing::info!(%room, "ignoring a Campfire message from a room not in [campfire] rooms");
        return StatusCode::OK.into_response();
    }
    let Ok(user) = payload.user.id.text().parse::<User>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let text = payload
        .message
        .body_text
        .or_else(|| payload.message.body.and_then(|b| b.plain))
        .unwrap_or_default();
    // The message's id numbers the "thread" (a room has none); digits, as a thread ts must be.
    let ts = payload
        .message
        .id
        .map(|id| id.text())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| hook.received.fetch_add(1, Ordering::Relaxed).to_string());
    let inbound = Inbound {
        // Campfire calls the bot only when it is addressed: mentioned, or in a direct room.
        kind: InboundKind::Direct,
        channel: room.to_string(),
        channel_name: payload.room.name.as_deref().map(policy_room_name),
        user: user.to_string(),
        user_name: payload.user.name,
        team_id: None,
        text,
        ts: Some(ts),
        thread_ts: None,
    };
    let bot = Arc::clone(&hook.bot);
    tokio::spawn(async move { bot.handle(inbound).await });
    StatusCode::OK.into_response()
}

/// The name a Campfire room is known by to `allowed_channels`: `campfire:<name>`, so that a room
/// named like a Slack channel (`prod-deploys`) never passes a rule written for that Slack channel.
/// Campfire room ids are numbers, which no Slack channel id is, so ids need no prefix.
fn policy_room_name(name: &str) -> String {
    format!("campfire:{name}")
}

/// Whether `[campfire] url` answers at all, for `zbot check --online`: the HTTP status of `GET {url}`,
/// or why there was none. Campfire's bot API has no call that tests a bot key without posting to a
/// room, so only the installation is reached.
pub async fn check(config: &CampfireConfig) -> Result<u16, HttpError> {
    let client = HttpClient::new(config.timeouts.connect, config.timeouts.request)?;
    let request = HttpClient::request(axum::http::Method::GET, &config.url, &[], None)?;
    Ok(client.send(request).await?.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campfire_room_is_named_apart_from_slack_channels() {
        for (name, expected) in [
            ("prod-deploys", "campfire:prod-deploys"),
            ("#ops", "campfire:#ops"),
            ("", "campfire:"),
        ] {
            assert_eq!(policy_room_name(name), expected);
        }
    }

    #[test]
    fn only_the_whole_token_matches() {
        let token = Secret::new("0123456789abcdefXYZ");
        assert!(token_matches("0123456789abcdefXYZ", &token));
        for wrong in [
            "",
            "0123456789abcdefXY",
            "0123456789abcdefXYZ0",
            "1123456789abcdefXYZ",
        ] {
            assert!(!token_matches(wrong, &token), "{wrong}");
        }
    }
}
