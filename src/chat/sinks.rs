//! Notification sinks (`[[notify]]`): deployment events sent beyond the thread they were asked from —
//! a Slack channel, a Campfire room, or a webhook (a signed JSON POST, for a team's own service or a
//! relay to Microsoft Teams, Discord or Mattermost) — and the direct message to the person who asked.
//!
//! Each sink is its own task with its own bounded queue: its subscription to the event bus, which
//! holds at most the bus's capacity and drops the oldest events when the sink falls that far behind
//! (logged). Publishing never waits on a sink, so a sink that is down — answering 500, or never
//! answering — delays no deploy, no thread reply and no other sink.
//!
//! A webhook event is `POST`ed as JSON with `X-Zbot-Signature-256: sha256=<hex HMAC-SHA256 of the
//! body>` keyed by the sink's secret (GitHub's scheme for `X-Hub-Signature-256`), tried up to the
//! sink's `attempts` with exponential backoff from [`FIRST_BACKOFF`], each try bounded by its timeout;
//! then it is dropped and logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{ChatOutput, Message};
use crate::config::{NotifyConfig, NotifyEvent};
use crate::events::{DeploymentEvent, Event, EventBus};
use crate::forge::StatusState;
use crate::http::HttpClient;
use crate::reply;
use crate::secret::Secret;

/// The wait after a webhook's first failed try; it doubles for each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The header a webhook event's signature is sent in.
pub const SIGNATURE_HEADER: &str = "X-Zbot-Signature-256";

/// What an event means to a sink; `None` for states no sink is told of (pending, queued).
pub fn event_of(state: StatusState) -> Option<NotifyEvent> {
    match state {
        StatusState::InProgress => Some(NotifyEvent::Started),
        StatusState::Success => Some(NotifyEvent::Succeeded),
        StatusState::Failure => Some(NotifyEvent::Failed),
        StatusState::Error => Some(NotifyEvent::Errored),
        StatusState::Pending | StatusState::Queued => None,
    }
}

/// The future a delivery is.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where a sink sends an event; the error says why it was dropped.
pub trait Deliver: Send + Sync + 'static {
    fn deliver<'a>(&'a self, event: &'a DeploymentEvent, kind: NotifyEvent) -> Delivery<'a>;
}

/// Which events a sink takes.
#[derive(Debug, Clone)]
pub struct Filter {
    pub apps: Vec<crate::domain::AppName>,
    pub environments: Vec<crate::domain::Environment>,
    pub events: Vec<NotifyEvent>,
}

impl Filter {
    /// The filter of a `[[notify]]` entry.
    pub fn of(config: &NotifyConfig) -> Filter {
        Filter {
            apps: config.apps.clone(),
            environments: config.environments.clone(),
            events: config.events.clone(),
        }
    }

    /// Every event of every app: only ends (for the requester's direct message).
    pub fn ends() -> Filter {
        Filter {
            apps: Vec::new(),
            environments: Vec::new(),
            events: vec![
                NotifyEvent::Succeeded,
                NotifyEvent::Failed,
                NotifyEvent::Errored,
            ],
        }
    }

    pub fn matches(&self, event: &DeploymentEvent, kind: NotifyEvent) -> bool {
        self.events.contains(&kind)
            && (self.apps.is_empty() || self.apps.contains(&event.app))
            && (self.environments.is_empty()
                || self.environments.iter().any(|e| e.same(&event.environment)))
    }
}

/// A message in a chat place (a Slack channel, a Campfire room), as a new message: the status when a
/// deploy starts, the outcome when it ends.
#[derive(Debug, Clone)]
pub struct ChatSink<O: ChatOutput> {
    pub out: O,
    pub place: String,
}

/// What a sink in chat says of an event.
fn chat_message(event: &DeploymentEvent, kind: NotifyEvent) -> Message {
    match kind {
        NotifyEvent::Started => reply::status(event, None),
        _ => reply::outcome(event),
    }
}

impl<O: ChatOutput> ChatSink<O> {
    /// Whether `event`'s deployment was asked for in this sink's place of a chat without threads (a
    /// Campfire room): its outcome is already said there, as a new message, so the sink says nothing.
    fn is_origin(&self, event: &DeploymentEvent) -> bool {
        !self.out.threads()
            && event.notify.as_ref().is_some_and(|n| {
                n.adapter.as_ref() == Some(&self.out.adapter())
                    && n.room.as_ref().is_some_and(|r| r.as_str() == self.place)
            })
    }
}

impl<O: ChatOutput> Deliver for ChatSink<O> {
    fn deliver<'a>(&'a self, event: &'a DeploymentEvent, kind: NotifyEvent) -> Delivery<'a> {
        Box::pin(async move {
            if self.is_origin(event) {
                return Ok(());
            }
            self.out
                .post(&self.place, None, &chat_message(event, kind))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}

/// A signed JSON POST to a URL.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    client: HttpClient,
    url: String,
    secret: Secret,
    attempts: u32,
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed by `secret`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A deployment event as a webhook sink sends it.
pub fn event_json(event: &DeploymentEvent, kind: NotifyEvent) -> Value {
    json!({
        "event": kind.as_str(),
        "state": event.state.as_str(),
        "description": event.description,
        "log_url": event.log_url,
        "deployment": {
            "id": event.deployment_id.0,
            "app": event.app,
            "repository": event.repository,
            "environment": event.environment,
            "ref": event.git_ref,
            "sha": event.sha,
            "task": event.task,
            "actor": event.actor,
        },
    })
}

impl WebhookSink {
    pub fn new(
        url: &str,
        secret: &Secret,
        attempts: u32,
        timeouts: crate::config::Timeouts,
    ) -> Result<WebhookSink, crate::http::HttpError> {
        Ok(WebhookSink {
            client: HttpClient::new(timeouts.connect, timeouts.request)?,
            url: url.to_string(),
            secret: secret.clone(),
            attempts: attempts.max(1),
        })
    }

    async fn post(&self, body: &[u8], signature: &str) -> Result<(), String> {
        let request = HttpClient::request(
            http::Method::POST,
            &self.url,
            &[
                ("content-type", "application/json"),
                (SIGNATURE_HEADER, signature),
            ],
            Some(body.to_vec()),
        )
        .map_err(|e| e.to_string())?;
        let answer = self.client.send(request).await.map_err(|e| e.to_string())?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", answer.status))
        }
    }
}

impl Deliver for WebhookSink {
    fn deliver<'a>(&'a self, event: &'a DeploymentEvent, kind: NotifyEvent) -> Delivery<'a> {
        Box::pin(async move {
            let body = event_json(event, kind).to_string().into_bytes();
            let signature = signature(&self.secret, &body);
            let mut wait = FIRST_BACKOFF;
            let mut attempt = 1;
            loop {
                match self.post(&body, &signature).await {
                    Ok(()) => return Ok(()),
                    Err(why) if attempt >= self.attempts => {
                        return Err(format!("{why}, after {attempt} tries"));
                    }
                    Err(why) => {
                        tracing::warn!(
                            attempt,
                            "a notification webhook failed ({why}); trying again in {wait:?}"
                        );
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                        attempt += 1;
                    }
                }
            }
        })
    }
}

/// Starts a sink's task: it takes the events `filter` lets through from `events`, one after another,
/// until the bus closes or the task is aborted.
pub fn spawn(
    name: String,
    filter: Filter,
    sink: Arc<dyn Deliver>,
    events: &EventBus,
) -> tokio::task::JoinHandle<()> {
    let mut events = events.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Deployment(event)) => {
                    let Some(kind) = event_of(event.state) else {
                        continue;
                    };
                    if !filter.matches(&event, kind) {
                        continue;
                    }
                    if let Err(why) = sink.deliver(&event, kind).await {
                        tracing::warn!(
                            sink = %name,
                            deployment = %event.deployment_id,
                            event = kind.as_str(),
                            "notification dropped: {why}"
                        );
                    }
                }
                Ok(Event::Refused(_)) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(sink = %name, missed, "a notification sink fell behind: events dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_githubs_scheme() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let secret = Secret::new("It's a Secret to Everybody");
        assert_eq!(
            signature(&secret, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn states_map_to_events() {
        let table = [
            (StatusState::Pending, None),
            (StatusState::Queued, None),
            (StatusState::InProgress, Some(NotifyEvent::Started)),
            (StatusState::Success, Some(NotifyEvent::Succeeded)),
            (StatusState::Failure, Some(NotifyEvent::Failed)),
            (StatusState::Error, Some(NotifyEvent::Errored)),
        ];
        for (state, event) in table {
            assert_eq!(event_of(state), event, "{state:?}");
        }
    }
}
