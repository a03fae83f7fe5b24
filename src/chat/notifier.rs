//! Shows deployments in chat: one status message per deployment in its thread, kept current with
//! `update` as the deployment moves, and a new reply when it ends (so people are notified), with the
//! log link and, on failure, the last lines of output.
//!
//! The thread comes from the deployment payload's `notify` (`room`, `thread_ts`); deployments that were
//! not started from chat are announced in `[slack] default_channel`. One task handles events in order,
//! so a deployment never gets two status messages.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::{ChatOutput, Message};
use crate::events::{DeploymentEvent, Event};
use crate::forge::StatusState;
use crate::reply;
use crate::store::{ChatMessage, Store};

#[derive(Debug, Clone)]
pub struct Notifier<O: ChatOutput> {
    pub store: Store,
    pub out: O,
    pub default_channel: Option<String>,
    /// How often running deployments' status messages show their elapsed time; `None`: only on changes.
    pub refresh: Option<Duration>,
}

/// What the notifier is told besides the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Show every event published so far, then stop (shutdown). A closed control channel means the same.
    Drain,
}

impl<O: ChatOutput> Notifier<O> {
    /// Follows `events` (subscribe before anything is published that chat must show) until told to
    /// drain, refreshing running deployments' elapsed time.
    pub async fn run(
        self,
        mut events: broadcast::Receiver<Event>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        // Without a refresh the interval exists but is never polled.
        let mut ticks = tokio::time::interval(self.refresh.unwrap_or(Duration::from_secs(3600)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Events first: an order comes after the events published before it.
            tokio::select! {
                biased;
                received = events.recv() => match received {
                    Ok(event) => self.show_event(&event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "chat fell behind the deployment events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                order = control.recv() => match order {
                    Some(Control::Drain) | None => {
                        self.drain(&mut events).await;
                        return;
                    }
                },
                _ = ticks.tick(), if self.refresh.is_some() => self.refresh_running().await,
            }
        }
    }

    /// Shows the events already published, without waiting for more.
    async fn drain(&self, events: &mut broadcast::Receiver<Event>) {
        loop {
            match events.try_recv() {
                Ok(event) => self.show_event(&event).await,
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "chat fell behind the deployment events");
                }
                Err(_) => return,
            }
        }
    }

    /// Updates the status message of every running deployment with how long it has been running.
    async fn refresh_running(&self) {
        let Ok(running) = self.store.running().await else {
            return;
        };
        for d in running {
            let (Ok(Some(message)), Some(started)) =
                (self.store.chat_message(d.deployment_id).await, d.started_at)
            else {
                continue;
            };
            let elapsed = (chrono::Utc::now() - started).to_std().unwrap_or_default();
            let event = DeploymentEvent::of(
                &d,
                StatusState::InProgress,
                String::new(),
                d.log_url.clone(),
                Vec::new(),
            );
            if let Err(e) = self
                .out
                .update(
                    &message.channel,
                    &message.status_ts,
                    &reply::status(&event, Some(elapsed)),
                )
                .await
            {
                tracing::warn!(
                    deployment = %d.deployment_id,
                    "cannot refresh the status message: {e}"
                );
            }
        }
    }

    /// Shows one event: a deployment's state change, or a refused deployment (in the default channel).
    pub async fn show_event(&self, event: &Event) {
        match event {
            Event::Deployment(event) => self.show(event).await,
            Event::Refused(refusal) => {
                let Some(channel) = &self.default_channel else {
                    return;
                };
                if let Err(e) = self
                    .out
                    .post(channel, None, &reply::refusal_in_chat(refusal))
                    .await
                {
                    tracing::error!(deployment = %refusal.deployment_id, "cannot tell chat about a refused deployment: {e}");
                }
            }
        }
    }

    /// Shows one deployment event: creates or updates the status message, and replies when it is final.
    pub async fn show(&self, event: &DeploymentEvent) {
        let existing = match self.store.chat_message(event.deployment_id).await {
            Ok(existing) => existing,
            Err(e) => {
                tracing::error!(
                    deployment = %event.deployment_id,
                    "cannot read the chat message: {e}"
                );
                None
            }
        };
        // "requested" comes from the chat side; the deployer may already have moved on.
        if event.state == StatusState::Pending && existing.is_some() {
            return;
        }
        let status = reply::status(event, None);
        let place = match existing {
            Some(message) => {
                if let Err(e) = self
                    .out
                    .update(&message.channel, &message.status_ts, &status)
                    .await
                {
                    tracing::warn!(
                        deployment = %event.deployment_id,
                        "cannot update the status message: {e}"
                    );
                }
                message
            }
            None => match self.start(event, &status).await {
                Some(message) => message,
                None => return,
            },
        };
        if event.state.is_final() {
            let outcome: Message = reply::outcome(event);
            if let Err(e) = self
                .out
                .post(&place.channel, Some(&place.thread_ts), &outcome)
                .await
            {
                tracing::error!(
                    deployment = %event.deployment_id,
                    "cannot post the outcome: {e}"
                );
            }
        }
    }

    /// Posts the first status message where the deployment asked to be answered.
    async fn start(&self, event: &DeploymentEvent, status: &Message) -> Option<ChatMessage> {
        let place = event.notify.as_ref().and_then(|n| n.slack_place());
        let (channel, thread_ts) = match place {
            Some((room, thread)) => (room.to_string(), thread.map(ToString::to_string)),
            None => (self.default_channel.clone()?, None),
        };
        match self.out.post(&channel, thread_ts.as_deref(), status).await {
            Ok(ts) => {
                let message = ChatMessage {
                    channel,
                    thread_ts: thread_ts.unwrap_or_else(|| ts.clone()),
                    status_ts: ts,
                };
                if let Err(e) = self
                    .store
                    .set_chat_message(event.deployment_id, &message)
                    .await
                {
                    tracing::error!(
                        deployment = %event.deployment_id,
                        "cannot record the chat message: {e}"
                    );
                }
                Some(message)
            }
            Err(e) => {
                tracing::error!(deployment = %event.deployment_id, %channel, "cannot post the status: {e}");
                None
            }
        }
    }
}
