//! A fake Slack: the Web API methods zbot calls (`apps.connections.open`, `auth.test`,
//! `chat.postMessage`, `chat.update`) over HTTP, and Socket Mode over a WebSocket: `hello` on connect,
//! envelopes the test sends, acks recorded, `disconnect` on demand. The bot's own posts come back to it
//! as `message` events, as on real Slack. `chat.postMessage` can be made to fail, as during an outage.
//! A channel that is not an id is `channel_not_found`. A user id (`U…`, `W…`) as the channel is a direct
//! message, as on Slack (posted to the app's conversation with that user).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

pub const BOT_USER: &str = "U0BOT";
pub const APP_TOKEN: &str = "xapp-1-A0APP-test";
pub const BOT_TOKEN: &str = "xoxb-test-bot-token";

/// A message zbot posted or updated.
#[derive(Debug, Clone)]
pub struct Posted {
    pub method: String,
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Option<Value>,
}

#[derive(Default)]
struct Model {
    posts: Vec<Posted>,
    /// While set, `chat.postMessage` answers `fatal_error`; the messages refused are kept apart.
    refuse_posts: bool,
    refused: Vec<Posted>,
    acks: Vec<Value>,
    /// When each ack arrived, with its envelope id.
    ack_times: Vec<(std::time::Instant, String)>,
    connections: usize,
    next_ts: u64,
    /// Users a direct message was opened with (`conversations.open`).
    opened: Vec<String>,
    /// User groups: (id `S…`, handle, member ids).
    usergroups: Vec<(String, String, Vec<String>)>,
}

#[derive(Clone)]
pub struct FakeSlack {
    pub api: SocketAddr,
    ws: SocketAddr,
    model: Arc<Mutex<Model>>,
    changed: super::Changes,
    /// The current Socket Mode connection's outbox.
    socket: Arc<Mutex<Option<mpsc::UnboundedSender<Frame>>>>,
    /// Every Socket Mode connection's outbox (several zbot instances each hold one).
    sockets: Arc<Mutex<Vec<mpsc::UnboundedSender<Frame>>>>,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeSlack {
            api: api_listener.local_addr().unwrap(),
            ws: ws_listener.local_addr().unwrap(),
            model: Arc::default(),
            changed: super::Changes::default(),
            socket: Arc::default(),
            sockets: Arc::default(),
        };
        let app = Router::new()
            .route("/api/{method}", post(web_api).get(web_api))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(api_listener, app).await.unwrap() });
        let sockets = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = ws_listener.accept().await {
                let fake = sockets.clone();
                tokio::spawn(async move { fake.serve_socket(tcp).await });
            }
        });
        fake
    }

    /// A user group `id` (`S…`) with `handle` and `members`, as `usergroups.list` and
    /// `usergroups.users.list` answer.
    pub fn add_user_group(&self, id: &str, handle: &str, members: &[&str]) {
        self.model.lock().unwrap().usergroups.push((
            id.to_string(),
            handle.to_string(),
            members.iter().map(|m| m.to_string()).collect(),
        ));
    }

    /// The `[slack] api_url` for zbot.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.api)
    }

    fn touch(&self) {
        self.changed.touch();
    }

    async fn serve_socket(&self, tcp: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
        let hello = json!({"type": "hello", "num_connections": 1,
            "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": "A0APP"}});
        let _ = tx.send(Frame::text(hello.to_string()));
        *self.socket.lock().unwrap() = Some(tx.clone());
        self.sockets.lock().unwrap().push(tx.clone());
        self.model.lock().unwrap().connections += 1;
        self.touch();
        let writer = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let close = matches!(frame, Frame::Close(_));
                if sink.send(frame).await.is_err() || close {
                    return;
                }
            }
        });
        while let Some(Ok(frame)) = stream.next().await {
            if let Frame::Text(text) = frame
                && let Ok(ack) = serde_json::from_str::<Value>(&text)
            {
                let mut model = self.model.lock().unwrap();
                let envelope = ack["envelope_id"].as_str().unwrap_or_default().to_string();
                model.ack_times.push((std::time::Instant::now(), envelope));
                model.acks.push(ack);
                drop(model);
                self.touch();
            }
        }
        writer.abort();
        // Closed: nothing more is sent on it (a newer connection may have replaced it already).
        let mut socket = self.socket.lock().unwrap();
        if socket
            .as_ref()
            .is_some_and(|current| current.same_channel(&tx))
        {
            *socket = None;
        }
    }

    /// Sends a frame on the current Socket Mode connection.
    pub fn send(&self, frame: Value) {
        let socket = self.socket.lock().unwrap();
        socket
            .as_ref()
            .expect("zbot is connected")
            .send(Frame::text(frame.to_string()))
            .unwrap();
    }

    /// Sends a frame on every open Socket Mode connection, as when Slack's retry of an envelope reaches
    /// another of the app's connections.
    pub fn send_everywhere(&self, frame: Value) {
        let sockets = self.sockets.lock().unwrap();
        for socket in sockets.iter() {
            let _ = socket.send(Frame::text(frame.to_string()));
        }
    }

    /// How many acks came for `envelope_id`.
    pub fn acks_of(&self, envelope_id: &str) -> usize {
        let model = self.model.lock().unwrap();
        model
            .acks
            .iter()
            .filter(|a| a["envelope_id"] == envelope_id)
            .count()
    }

    /// Asks the client to reconnect, as Slack does every few hours.
    pub fn disconnect(&self, reason: &str) {
        self.send(
            json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}),
        );
    }

    pub fn connections(&self) -> usize {
        self.model.lock().unwrap().connections
    }

    /// When the first ack of `envelope_id` arrived (read by the benchmark, `bench/`).
    #[allow(dead_code)]
    pub fn acked_at(&self, envelope_id: &str) -> Option<std::time::Instant> {
        let model = self.model.lock().unwrap();
        model
            .ack_times
            .iter()
            .find(|(_, e)| e == envelope_id)
            .map(|(at, _)| *at)
    }

    pub fn acked(&self, envelope_id: &str) -> Option<Value> {
        let model = self.model.lock().unwrap();
        model
            .acks
            .iter()
            .find(|a| a["envelope_id"] == envelope_id)
            .cloned()
    }

    /// The messages zbot sent `user` directly (in the DM `conversations.open` gave it).
    pub fn direct_messages(&self, user: &str) -> Vec<Posted> {
        let opened = self
            .model
            .lock()
            .unwrap()
            .opened
            .contains(&user.to_string());
        let channel = format!("D{user}");
        self.posts()
            .into_iter()
            .filter(|p| opened && p.channel == channel)
            .collect()
    }

    pub fn posts(&self) -> Vec<Posted> {
        self.model.lock().unwrap().posts.clone()
    }

    /// From now on `chat.postMessage` fails (`true`) or works again (`false`); updates keep working.
    pub fn refuse_posts(&self, refuse: bool) {
        self.model.lock().unwrap().refuse_posts = refuse;
    }

    /// The messages zbot tried to post while posts were refused.
    pub fn refused(&self) -> Vec<Posted> {
        self.model.lock().unwrap().refused.clone()
    }

    /// What zbot said in a thread (posts and updates), in order.
    pub fn thread(&self, channel: &str, thread_ts: &str) -> Vec<Posted> {
        let posts = self.posts();
        // The status message is posted in the thread, then updated by its own ts.
        let in_thread: Vec<String> = posts
            .iter()
            .filter(|p| p.channel == channel && p.thread_ts.as_deref() == Some(thread_ts))
            .map(|p| p.ts.clone())
            .collect();
        posts
            .into_iter()
            .filter(|p| {
                p.channel == channel
                    && (p.thread_ts.as_deref() == Some(thread_ts) || in_thread.contains(&p.ts))
            })
            .collect()
    }

    /// Waits until `done` holds for the fake, or fails the test after `deadline`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut(&FakeSlack) -> Option<T>,
    ) -> T {
        self.changed
            .wait_for(
                what,
                deadline,
                || done(self),
                || format!("zbot posted: {:#?}", self.posts()),
            )
            .await
    }

    /// Waits for zbot's reply in a thread that contains `needle`.
    pub async fn reply_containing(&self, channel: &str, thread_ts: &str, needle: &str) -> Posted {
        self.wait_for(
            &format!("a reply containing {needle:?}"),
            Duration::from_secs(60),
            |s| {
                s.thread(channel, thread_ts)
                    .into_iter()
                    .find(|p| p.text.contains(needle))
            },
        )
        .await
    }
}

/// An `events_api` envelope.
pub fn event_envelope(
    envelope_id: &str,
    event_id: &str,
    event: Value,
    retry_attempt: u32,
) -> Value {
    json!({
        "envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": false,
        "retry_attempt": retry_attempt, "retry_reason": if retry_attempt > 0 { "timeout" } else { "" },
        "payload": {"token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
            "event_id": event_id, "event_time": 1_700_000_000,
            "authorizations": [{"enterprise_id": null, "team_id": "T0TEAM", "user_id": BOT_USER, "is_bot": true, "is_enterprise_install": false}],
            "event": event}
    })
}

pub fn app_mention(user: &str, channel: &str, ts: &str, text: &str) -> Value {
    json!({"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts})
}

pub fn channel_message(user: &str, channel: &str, ts: &str, text: &str) -> Value {
    json!({"type": "message", "channel": channel, "user": user, "text": text, "ts": ts, "event_ts": ts, "channel_type": "channel"})
}

pub fn slash_envelope(
    envelope_id: &str,
    user: &str,
    channel: &str,
    command: &str,
    text: &str,
) -> Value {
    json!({"envelope_id": envelope_id, "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"token": "x", "team_id": "T0TEAM", "team_domain": "acme", "channel_id": channel, "channel_name": "deploys",
            "user_id": user, "user_name": "bob", "command": command, "text": text, "api_app_id": "A0APP",
            "is_enterprise_install": "false", "response_url": "http://127.0.0.1:9/commands/T0TEAM/1/x",
            "trigger_id": format!("trigger-{envelope_id}")}})
}

/// An `interactive` envelope: `user` clicked the button `action_id` (with `value`) on zbot's message
/// `message_ts` in `channel`, as Slack sends a `block_actions` payload (see
/// `envelope_interactive_block_actions_modal_large.json` for a real one from a modal).
pub fn block_action_envelope(
    envelope_id: &str,
    user: &str,
    channel: &str,
    message_ts: &str,
    action_id: &str,
    value: &str,
) -> Value {
    json!({"envelope_id": envelope_id, "type": "interactive", "accepts_response_payload": false,
        "payload": {"type": "block_actions",
            "user": {"id": user, "username": "someone", "name": "someone", "team_id": "T0TEAM"},
            "api_app_id": "A0APP", "token": "x",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
            "trigger_id": format!("trigger-{envelope_id}"),
            "team": {"id": "T0TEAM", "domain": "acme"}, "enterprise": null, "is_enterprise_install": false,
            "channel": {"id": channel, "name": "deploys"},
            "response_url": "http://127.0.0.1:9/actions/T0TEAM/1/x",
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b",
                "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                "value": value, "style": "primary", "action_ts": "1700000000.000100"}]}})
}

/// Web API methods take JSON, form or query arguments, by POST or GET.
async fn web_api(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Json<Value> {
    let body: Value = serde_json::from_slice(&raw).unwrap_or_else(|_| {
        let form = if raw.is_empty() {
            query.unwrap_or_default().into_bytes()
        } else {
            raw.to_vec()
        };
        let pairs: serde_json::Map<String, Value> = form_urlencoded::parse(&form)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        Value::Object(pairs)
    });
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let answer = match method.as_str() {
        "apps.connections.open" if bearer.as_deref() == Some(APP_TOKEN) => {
            json!({"ok": true, "url": format!("ws://{}/link/?ticket=t-1&app_id=A0APP", fake.ws)})
        }
        "apps.connections.open" => json!({"ok": false, "error": "invalid_auth"}),
        _ if bearer.as_deref() != Some(BOT_TOKEN) => json!({"ok": false, "error": "invalid_auth"}),
        "auth.test" => {
            json!({"ok": true, "url": "https://acme.slack.com/", "team": "acme", "user": "zbot",
            "team_id": "T0TEAM", "user_id": BOT_USER, "bot_id": "B0BOT"})
        }
        // A direct message's channel: `D` and the user's id (one per user, as in Slack).
        // `users` is a comma-separated string, or (slack-morphism's JSON) an array.
        "conversations.open" => match text("users").or_else(|| {
            let list = body.get("users")?.as_array()?;
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            Some(names.join(","))
        }) {
            Some(users) if !users.contains(',') && users.starts_with(['U', 'W']) => {
                fake.model.lock().unwrap().opened.push(users.clone());
                json!({"ok": true, "channel": {"id": format!("D{users}")}})
            }
            _ => json!({"ok": false, "error": "users_not_found"}),
        },
        "chat.postMessage" | "chat.update"
            if !is_channel_id(&text("channel").unwrap_or_default()) =>
        {
            json!({"ok": false, "error": "channel_not_found"})
        }
        "chat.postMessage" | "chat.update" => {
            let channel = text("channel").unwrap_or_default();
            let ts = match method.as_str() {
                "chat.update" => text("ts").unwrap_or_default(),
                _ => {
                    let mut model = fake.model.lock().unwrap();
                    model.next_ts += 1;
                    format!("1700001000.{:06}", model.next_ts)
                }
            };
            let posted = Posted {
                method: method.clone(),
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts: text("thread_ts"),
                text: text("text").unwrap_or_default(),
                blocks: body.get("blocks").cloned(),
            };
            {
                let mut model = fake.model.lock().unwrap();
                if method == "chat.postMessage" && model.refuse_posts {
                    model.refused.push(posted);
                    drop(model);
                    fake.touch();
                    return Json(json!({"ok": false, "error": "fatal_error"}));
                }
                model.posts.push(posted.clone());
            }
            fake.touch();
            if method == "chat.postMessage" {
                // Real Slack echoes the bot's own message to it as an event.
                let mut echo = json!({"type": "message", "channel": channel, "user": BOT_USER, "bot_id": "B0BOT",
                    "text": posted.text, "ts": ts, "event_ts": ts, "channel_type": "channel"});
                if let Some(thread) = &posted.thread_ts {
                    echo["thread_ts"] = json!(thread);
                }
                // Only while zbot is connected (it may be stopping).
                if let Some(socket) = fake.socket.lock().unwrap().as_ref() {
                    let envelope =
                        event_envelope(&format!("echo-{ts}"), &format!("Ev-echo-{ts}"), echo, 0);
                    let _ = socket.send(Frame::text(envelope.to_string()));
                }
            }
            json!({"ok": true, "channel": channel, "ts": ts,
                "message": {"type": "message", "text": posted.text, "ts": ts, "bot_id": "B0BOT", "user": BOT_USER}})
        }
        "views.open" => {
            // Recorded as a post: `text` is the trigger id, `blocks` the view.
            let view: Value = match body.get("view") {
                Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_default(),
                Some(view) => view.clone(),
                None => Value::Null,
            };
            let posted = Posted {
                method: method.clone(),
                channel: String::new(),
                ts: String::new(),
                thread_ts: None,
                text: text("trigger_id").unwrap_or_default(),
                blocks: Some(view.clone()),
            };
            fake.model.lock().unwrap().posts.push(posted);
            fake.touch();
            let mut opened = view;
            opened["id"] = json!("V0VIEW");
            opened["team_id"] = json!("T0TEAM");
            opened["hash"] = json!("h");
            json!({"ok": true, "view": opened})
        }
        // Slack's shape of a user group (`include_users`: its members too).
        "usergroups.list" => {
            let groups: Vec<Value> = fake.model.lock().unwrap().usergroups.iter().map(|(id, handle, users)| {
                json!({"id": id, "team_id": "T0TEAM", "is_usergroup": true, "name": handle, "handle": handle,
                    "is_external": false, "date_create": 1446598059, "date_update": 1446670362, "date_delete": 0,
                    "created_by": "U0ADMIN", "prefs": {"channels": [], "groups": []},
                    "users": users, "user_count": users.len()})
            }).collect();
            json!({"ok": true, "usergroups": groups})
        }
        "usergroups.users.list" => {
            let id = text("usergroup").unwrap_or_default();
            let model = fake.model.lock().unwrap();
            match model.usergroups.iter().find(|(gid, _, _)| *gid == id) {
                Some((_, _, users)) => json!({"ok": true, "users": users}),
                None => json!({"ok": false, "error": "no_such_subteam"}),
            }
        }
        other => json!({"ok": false, "error": format!("unknown_method: {other}")}),
    };
    Json(answer)
}

/// An `interactive` envelope: `user` submitted the modal `view` (as zbot opened it) with `values`,
/// Slack's `view.state.values` (`{block_id: {action_id: {type, value}}}`).
pub fn view_submission_envelope(
    envelope_id: &str,
    user: &str,
    view: &Value,
    values: Value,
) -> Value {
    let mut view = view.clone();
    view["id"] = json!("V0VIEW");
    view["team_id"] = json!("T0TEAM");
    view["hash"] = json!("h");
    view["state"] = json!({"values": values});
    json!({"envelope_id": envelope_id, "type": "interactive", "accepts_response_payload": true,
        "payload": {"type": "view_submission",
            "team": {"id": "T0TEAM", "domain": "acme"},
            "user": {"id": user, "username": "someone", "name": "someone", "team_id": "T0TEAM"},
            "api_app_id": "A0APP", "token": "x", "trigger_id": format!("trigger-{envelope_id}"),
            "view": view}})
}

/// The fake workspace has every channel whose id looks like one (`C0CHAN`, `G…`, `D…`) and nothing
/// else: a channel name such as hubot-deploy's `ops` is `channel_not_found`.
fn is_channel_id(channel: &str) -> bool {
    channel.len() > 1
        && channel.starts_with(['C', 'G', 'D', 'U', 'W'])
        && channel
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Per-test helper: a unique ts for a user message.
pub fn user_ts(n: u32) -> String {
    format!("1700000000.{n:06}")
}

/// `user` mentions the bot in `channel` with `text`, as a new thread (envelope `env-n`); returns the
/// thread's ts.
pub fn mention(slack: &FakeSlack, n: u32, user: &str, channel: &str, text: &str) -> String {
    let ts = user_ts(n);
    let event = app_mention(user, channel, &ts, &format!("<@{BOT_USER}> {text}"));
    slack.send(event_envelope(
        &format!("env-{n}"),
        &format!("Ev{n}"),
        event,
        0,
    ));
    ts
}

/// A `[slack]` table pointing zbot at `slack`, with `extra` lines.
pub fn config_section(slack: &FakeSlack, extra: &str) -> String {
    format!(
        "[slack]\napp_token = \"{APP_TOKEN}\"\nbot_token = \"{BOT_TOKEN}\"\napi_url = \"{}\"\n{extra}\n",
        slack.api_url()
    )
}
