//! Shows deployments in chat: one status message per deployment in its thread, kept current with
//! `update` as the deployment moves, and a new reply when it ends (so people are notified), with the
//! log link and, on failure, the last lines of output.
//!
//! The thread comes from the deployment payload's `notify` (`room`, `thread_ts`); deployments that were
//! not started from Slack, or whose room Slack cannot post to, are announced in `[slack] default_channel`
//! (with a line saying where they were asked from, when they were). One task handles events in order,
//! so a deployment never gets two status messages.
//!
//! The outcome reply is recorded in the store once posted. Events are not durable (a restart, or a
//! notifier that fell behind the bus, loses some), so at start and after falling behind the notifier
//! posts the outcome of every ended deployment shown in chat whose reply is missing. A crash between
//! posting a reply and recording it repeats that reply at the next start: Slack's `chat.postMessage`
//! cannot be made idempotent, and a repeated outcome is better than a missing one.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::{ChatError, ChatOutput, Message};
use crate::events::{DeploymentEvent, Event, EventBus};
use crate::forge::StatusState;
use crate::reply;
use crate::runner::{TAIL_LINES, log};
use crate::store::{ChatMessage, Deployment, DeploymentState, OutcomeClaim, Store};

/// How long an event waits, at most, for the status message another instance is posting: a post takes
/// well under a second, and the reservation of an instance that died mid-post expires before this
/// ([`crate::store::RESERVATION_EXPIRY`]) and is taken over.
const POSTED_ELSEWHERE_WAIT: Duration = Duration::from_secs(20);

/// What became of a status message another instance reserved.
enum Elsewhere {
    /// It was posted and recorded there.
    Posted(ChatMessage),
    /// Its reservation expired and this caller took it over: it posts the message.
    TakenOver,
    /// Neither, in time.
    Never,
}

#[derive(Debug, Clone)]
pub struct Notifier<O: ChatOutput> {
    pub store: Store,
    pub out: O,
    pub default_channel: Option<String>,
    /// How often running deployments' status messages show their elapsed time; `None`: only on changes.
    pub refresh: Option<Duration>,
    /// Other chat services wired beside this one: deployments asked for there are answered there, not
    /// here.
    pub elsewhere: Vec<super::Adapter>,
}

/// What the notifier is told besides the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Post the outcomes missing from chat (after the start-up recovery of interrupted deploys).
    CatchUp,
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
        // Events were missed: the store is asked once the events still buffered have been shown.
        let mut behind = false;
        loop {
            // Events first: an order comes after the events published before it.
            tokio::select! {
                biased;
                received = events.recv() => match received {
                    Ok(event) => self.show_event(&event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "chat fell behind the deployment events");
                        behind = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                order = control.recv() => match order {
                    Some(Control::CatchUp) => self.catch_up().await,
                    Some(Control::Drain) | None => {
                        self.drain(&mut events).await;
                        return;
                    }
                },
                _ = ticks.tick(), if self.refresh.is_some() => self.refresh_running().await,
            }
            // Only now: the buffered events are older than what the store says, and showing one of
            // them after the catch-up would take a status message back in time. (The bus drops the
            // oldest events first, so none of them belongs to a deployment whose end was dropped.)
            if behind && events.is_empty() {
                behind = false;
                self.catch_up().await;
            }
        }
    }

    /// Shows the events already published, without waiting for more.
    async fn drain(&self, events: &mut broadcast::Receiver<Event>) {
        let mut behind = false;
        loop {
            match events.try_recv() {
                Ok(event) => self.show_event(&event).await,
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "chat fell behind the deployment events");
                    behind = true;
                }
                Err(_) => break,
            }
        }
        if behind {
            self.catch_up().await;
        }
    }

    /// Shows the end of every ended deployment that has a status message in chat but no outcome
    /// reply yet: the status message is updated and the outcome posted.
    pub async fn catch_up(&self) {
        let missing = match self.store.unposted_outcomes().await {
            Ok(missing) => missing,
            Err(e) => {
                tracing::error!("cannot read the outcomes missing from chat: {e}");
                return;
            }
        };
        for d in missing {
            let Some(state) = final_state(d.state) else {
                continue;
            };
            tracing::info!(deployment = %d.deployment_id, "posting an outcome chat missed");
            let tail = failure_tail(&d).await;
            let event =
                DeploymentEvent::of(&d, state, d.description.clone(), d.log_url.clone(), tail);
            self.show(&event).await;
        }
    }

    /// Updates the status message of every running deployment this instance runs (each instance
    /// refreshes its own) with how long it has been running.
    async fn refresh_running(&self) {
        let Ok(running) = self.store.running().await else {
            return;
        };
        let instance = Some(self.store.instance());
        for d in running
            .into_iter()
            .filter(|d| d.instance_id.as_ref() == instance)
        {
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
    /// Without threads only the outcome is said, in the room the deployment was asked from.
    pub async fn show(&self, event: &DeploymentEvent) {
        let adapter = event.notify.as_ref().and_then(|n| n.adapter.as_ref());
        if adapter.is_some_and(|a| self.elsewhere.contains(a)) {
            return;
        }
        if !self.out.threads() {
            return self.show_unthreaded(event).await;
        }
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
            None => match self.store.reserve_chat_message(event.deployment_id).await {
                // Another instance (or an earlier event here) is posting it: this event updates it.
                Ok(false) => match self.posted_elsewhere(event).await {
                    Elsewhere::Posted(message) => {
                        if let Err(e) = self
                            .out
                            .update(&message.channel, &message.status_ts, &status)
                            .await
                        {
                            tracing::warn!(deployment = %event.deployment_id, "cannot update the status message: {e}");
                        }
                        message
                    }
                    Elsewhere::TakenOver => match self.start(event, &status).await {
                        Some(message) => message,
                        None => {
                            let _ = self.store.release_chat_message(event.deployment_id).await;
                            return;
                        }
                    },
                    Elsewhere::Never => {
                        // The thread still hears how it ended, without a status message.
                        if event.state.is_final()
                            && let Some((room, thread)) =
                                event.notify.as_ref().and_then(|n| n.slack_place())
                        {
                            let place = ChatMessage {
                                channel: room.to_string(),
                                thread_ts: thread.map(ToString::to_string).unwrap_or_default(),
                                status_ts: String::new(),
                            };
                            self.post_outcome(event, &place).await;
                        }
                        return;
                    }
                },
                reserved => {
                    if let Err(e) = reserved {
                        tracing::error!(deployment = %event.deployment_id, "cannot reserve the status message: {e}");
                    }
                    match self.start(event, &status).await {
                        Some(message) => message,
                        None => {
                            let _ = self.store.release_chat_message(event.deployment_id).await;
                            return;
                        }
                    }
                }
            },
        };
        if event.state.is_final() {
            self.post_outcome(event, &place).await;
        }
    }

    /// A chat without threads: the outcome alone, as one new message in the deployment's own room.
    async fn show_unthreaded(&self, event: &DeploymentEvent) {
        if !event.state.is_final() {
            return;
        }
        let adapter = self.out.adapter();
        let Some((room, _)) = event.notify.as_ref().and_then(|n| n.place_in(&adapter)) else {
            return;
        };
        let place = ChatMessage {
            channel: room.to_string(),
            thread_ts: String::new(),
            status_ts: String::new(),
        };
        self.post_outcome(event, &place).await;
    }

    /// The status message another instance reserved and is posting, once it is recorded (within the
    /// time a Slack post may take), or the reservation taken over once it expired.
    async fn posted_elsewhere(&self, event: &DeploymentEvent) -> Elsewhere {
        let deadline = tokio::time::Instant::now() + POSTED_ELSEWHERE_WAIT;
        let mut tries = 0u32;
        loop {
            match self.store.chat_message(event.deployment_id).await {
                Ok(Some(message)) => return Elsewhere::Posted(message),
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tries += 1;
                    // Once a second: whether the reservation expired.
                    if tries.is_multiple_of(20)
                        && matches!(
                            self.store.reserve_chat_message(event.deployment_id).await,
                            Ok(true)
                        )
                    {
                        tracing::warn!(deployment = %event.deployment_id, "the status message reserved elsewhere was never posted; posting it here");
                        return Elsewhere::TakenOver;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(None) => {
                    tracing::warn!(deployment = %event.deployment_id, "the status message reserved elsewhere was never posted");
                    return Elsewhere::Never;
                }
                Err(e) => {
                    tracing::error!(deployment = %event.deployment_id, "cannot read the chat message: {e}");
                    return Elsewhere::Never;
                }
            }
        }
    }

    /// Posts the reply that tells how a deployment ended, unless it was posted before, and records it.
    async fn post_outcome(&self, event: &DeploymentEvent, place: &ChatMessage) {
        // Claimed first, so that of several instances showing it exactly one posts it.
        let claimed = match self.store.claim_outcome(event.deployment_id).await {
            Ok(OutcomeClaim::Posted) => return,
            Ok(OutcomeClaim::Claimed) => true,
            Ok(OutcomeClaim::Unrecorded) => false,
            // Posting it perhaps twice beats perhaps never.
            Err(e) => {
                tracing::error!(
                    deployment = %event.deployment_id,
                    "cannot claim the outcome's post: {e}"
                );
                false
            }
        };
        let outcome: Message = reply::outcome(event);
        let thread = Some(place.thread_ts.as_str()).filter(|t| !t.is_empty());
        if let Err(e) = self.out.post(&place.channel, thread, &outcome).await {
            tracing::error!(
                deployment = %event.deployment_id,
                "cannot post the outcome (it is tried again at the next start): {e}"
            );
            if claimed && let Err(e) = self.store.unclaim_outcome(event.deployment_id).await {
                tracing::error!(
                    deployment = %event.deployment_id,
                    "cannot give back the outcome's claim: {e}"
                );
            }
        }
    }

    /// Posts the first status message where the deployment asked to be answered: its Slack room and
    /// thread. Asked from elsewhere (another chat adapter, a room Slack cannot post to), it goes to the
    /// default channel with a line in its thread saying where it was asked from.
    async fn start(&self, event: &DeploymentEvent, status: &Message) -> Option<ChatMessage> {
        let place = event.notify.as_ref().and_then(|n| n.slack_place());
        let mut unreachable = None;
        if let Some((room, thread)) = place {
            let thread_ts = thread.map(ToString::to_string);
            match self
                .post_status(event, room.as_str(), thread_ts, status)
                .await
            {
                Err(ChatError::NoSuchPlace(why)) => unreachable = Some(why),
                posted => return posted.ok(),
            }
        }
        let channel = self.default_channel.clone()?;
        let message = self.post_status(event, &channel, None, status).await.ok()?;
        let note = event
            .notify
            .as_ref()
            .and_then(|n| reply::asked_elsewhere(n, unreachable.as_deref()));
        if let Some(note) = note
            && let Err(e) = self
                .out
                .post(&channel, Some(&message.thread_ts), &Message::text(note))
                .await
        {
            tracing::warn!(deployment = %event.deployment_id, "cannot say where it was asked from: {e}");
        }
        Some(message)
    }

    /// Posts the status message in `channel` (in `thread_ts`, else starting a thread) and records it.
    async fn post_status(
        &self,
        event: &DeploymentEvent,
        channel: &str,
        thread_ts: Option<String>,
        status: &Message,
    ) -> Result<ChatMessage, ChatError> {
        match self.out.post(channel, thread_ts.as_deref(), status).await {
            Ok(ts) => {
                let message = ChatMessage {
                    channel: channel.to_string(),
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
                Ok(message)
            }
            Err(e) => {
                tracing::error!(deployment = %event.deployment_id, %channel, "cannot post the status: {e}");
                Err(e)
            }
        }
    }
}

/// The status of an ended deployment as GitHub was told it; `None` while it has not ended.
fn final_state(state: DeploymentState) -> Option<StatusState> {
    match state {
        DeploymentState::Success => Some(StatusState::Success),
        DeploymentState::Failure => Some(StatusState::Failure),
        DeploymentState::Error => Some(StatusState::Error),
        DeploymentState::Queued | DeploymentState::Running => None,
    }
}

/// The last lines of a failed deployment's log, as its outcome reply carries them.
async fn failure_tail(d: &Deployment) -> Vec<String> {
    match (&d.state, &d.log_path) {
        (DeploymentState::Failure, Some(path)) => {
            log::last_lines(std::path::Path::new(path), TAIL_LINES)
                .await
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::chat::ChatError;
    use crate::domain::DeploymentId;
    use crate::store::NewDeployment;

    /// One thing the notifier said.
    #[derive(Clone, Debug)]
    struct Said {
        method: &'static str,
        channel: String,
        /// The thread of a post, the ts of an update.
        place: String,
        text: String,
    }

    /// Records what the notifier said.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Said>>>);

    impl Recorder {
        fn said(&self) -> Vec<Said> {
            self.0.lock().unwrap().clone()
        }

        fn posts(&self) -> Vec<Said> {
            self.said()
                .into_iter()
                .filter(|s| s.method == "post")
                .collect()
        }

        fn record(&self, method: &'static str, channel: &str, place: &str, text: &str) -> usize {
            let mut said = self.0.lock().unwrap();
            said.push(Said {
                method,
                channel: channel.into(),
                place: place.into(),
                text: text.into(),
            });
            said.len()
        }
    }

    impl ChatOutput for Recorder {
        async fn post(
            &self,
            channel: &str,
            thread_ts: Option<&str>,
            message: &Message,
        ) -> Result<String, ChatError> {
            let n = self.record(
                "post",
                channel,
                thread_ts.unwrap_or_default(),
                &message.text,
            );
            Ok(format!("2.{n}"))
        }

        async fn update(
            &self,
            channel: &str,
            ts: &str,
            message: &Message,
        ) -> Result<(), ChatError> {
            self.record("update", channel, ts, &message.text);
            Ok(())
        }
    }

    /// A deployment shown in chat (thread `1.0`, status message `1.1`) that failed while chat was
    /// not looking, with output in its log.
    async fn failed_while_away(store: &Store, dir: &std::path::Path) -> Deployment {
        let new = NewDeployment {
            payload: serde_json::json!({"notify": {"room": "C0CHAN", "thread_ts": "1.0"}}),
            ..crate::store::deployment(7)
        };
        store.accept(new.clone()).await.unwrap();
        let message = ChatMessage {
            channel: "C0CHAN".into(),
            thread_ts: "1.0".into(),
            status_ts: "1.1".into(),
        };
        store
            .set_chat_message(DeploymentId(7), &message)
            .await
            .unwrap();
        let log = dir.join("7.log");
        std::fs::write(&log, "10:00:00.000 err | migration 42 failed\n").unwrap();
        let claimed = store
            .claim(
                |_, _| crate::store::shared::Choice {
                    start: vec![DeploymentId(7)],
                    positions: vec![],
                },
                |_| log.clone(),
            )
            .await
            .unwrap();
        let running = claimed.started.into_iter().next().unwrap();
        store
            .finish(
                DeploymentId(7),
                DeploymentState::Failure,
                "exit code 3",
                Some(3),
            )
            .await
            .unwrap();
        running
    }

    #[tokio::test]
    async fn after_falling_behind_the_notifier_posts_the_missed_outcome_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let running = failed_while_away(&store, dir.path()).await;
        let out = Recorder::default();
        let notifier = Notifier {
            store: store.clone(),
            out: out.clone(),
            default_channel: None,
            refresh: None,
            elsewhere: Vec::new(),
        };
        // Three events on a bus with room for one: the notifier misses two, including the end.
        let (tx, events) = broadcast::channel(1);
        let in_progress = || {
            DeploymentEvent::of(
                &running,
                StatusState::InProgress,
                String::new(),
                None,
                vec![],
            )
        };
        let end = DeploymentEvent::of(
            &running,
            StatusState::Failure,
            "exit code 3".into(),
            None,
            vec![],
        );
        for event in [in_progress(), end.clone(), in_progress()] {
            tx.send(Event::Deployment(Box::new(event))).unwrap();
        }
        let (control, orders) = mpsc::unbounded_channel();
        control.send(Control::Drain).unwrap();
        notifier.clone().run(events, orders).await;

        let said = out.said();
        let posts = out.posts();
        assert_eq!(posts.len(), 1, "{said:#?}");
        let outcome = &posts[0];
        assert_eq!(
            (outcome.channel.as_str(), outcome.place.as_str()),
            ("C0CHAN", "1.0")
        );
        assert!(
            outcome.text.contains("deploying adxstat `main`"),
            "{outcome:?}"
        );
        assert!(
            outcome.text.contains("migration 42 failed"),
            "the tail: {outcome:?}"
        );
        let last_update = said.iter().rev().find(|s| s.method == "update").unwrap();
        assert_eq!(last_update.place, "1.1");
        assert!(
            last_update.text.contains(":x: failed: exit code 3"),
            "the status message ends as the deployment did: {said:#?}"
        );

        // The end arriving late, or another catch-up, posts nothing more.
        notifier.show(&end).await;
        notifier.catch_up().await;
        assert_eq!(out.posts().len(), 1, "{:#?}", out.said());
    }
}

/// How long shutdown waits for chat to show the events already published.
pub const DRAIN: Duration = Duration::from_secs(30);

/// A notifier running in its own task, following the event bus.
#[derive(Debug)]
pub struct NotifierTask {
    task: tokio::task::JoinHandle<()>,
    control: mpsc::UnboundedSender<Control>,
}

impl<O: ChatOutput> Notifier<O> {
    /// Starts following `events` in a task. Subscribed here, not in the task, so no event published
    /// from now on is missed.
    pub fn spawn(self, events: &EventBus) -> NotifierTask {
        let events = events.subscribe();
        let (control, commands) = mpsc::unbounded_channel();
        NotifierTask {
            task: tokio::spawn(self.run(events, commands)),
            control,
        }
    }
}

impl NotifierTask {
    /// Has the notifier post the outcomes missing from chat: call it once interrupted deploys have
    /// been ended at start-up, so their outcomes are among them.
    pub fn catch_up(&self) {
        let _ = self.control.send(Control::CatchUp);
    }

    /// Lets the notifier show every event published so far (up to [`DRAIN`]), then stops it. Call it
    /// after the deploys have ended, so their outcomes reach their threads.
    pub async fn close(self) {
        let _ = self.control.send(Control::Drain);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(DRAIN, self.task).await.is_err() {
            tracing::warn!(
                "stopping without waiting longer for chat to show the deployment events"
            );
            abort.abort();
        }
    }
}
