//! Slack through slack-morphism: Socket Mode in (no inbound port), the Web API out. The only module that
//! names slack-morphism.
//!
//! Every envelope is acknowledged as soon as its callback returns, and callbacks return at once: the
//! work runs in a spawned task (Slack wants the ack within 3 s). Slack redelivers envelopes it did not
//! see acknowledged, and one mention arrives both as `app_mention` and as `message`, so events are
//! handled once by `event_id` and by channel + ts; the store remembers both for an hour, so an event
//! redelivered after a restart is handled once too. The bot ignores its own messages, other bots,
//! edits and deletions. Reconnects (`disconnect`, a closed or silent socket) are slack-morphism's, with its
//! backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::task::JoinSet;

use crate::chat::bot::Bot;
use crate::chat::sinks::{Deliver, Delivery};
use crate::chat::{ChatError, ChatOutput, Inbound, InboundKind, Message};
use crate::config::NotifyEvent;
use crate::config::{HumanDuration, SlackConfig, Timeouts};
use crate::events::DeploymentEvent;
use crate::metrics::{Metrics, SlackResult};

type Client = SlackClient<SlackClientHyperHttpsConnector>;

/// The events zbot handles (`on_push`): mentions, and messages in channels, private channels, DMs and
/// group DMs. `slack-app-manifest.yml` subscribes to exactly these (a test checks).
pub const EVENTS: &[&str] = &[
    "app_mention",
    "message.channels",
    "message.groups",
    "message.im",
    "message.mpim",
];

/// The bot scopes those events and the Web API calls zbot makes (`chat.postMessage`, `chat.update`,
/// `usergroups.list` and `usergroups.users.list` for approvers named by user group)
/// need, plus `commands` for slash commands. `auth.test` and Socket Mode need no bot scope.
pub const BOT_SCOPES: &[&str] = &[
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "commands",
    "groups:history",
    "im:history",
    "im:write",
    "mpim:history",
    "usergroups:read",
];

/// A Web API client that also accepts `http://` base URLs (for a local fake), giving up on a
/// connection after `[slack] connect_timeout`.
fn client(api_url: &str, timeouts: Timeouts) -> anyhow::Result<Arc<Client>> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    // The scheme is the TLS layer's business: it allows http:// only for a fake.
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeouts.connect));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("loading the system's CA certificates")?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let connector = SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url);
    Ok(Arc::new(SlackClient::new(connector)))
}

/// Posting and updating through the Web API, waiting out rate limits.
#[derive(Clone, Debug)]
pub struct SlackOutput {
    client: Arc<Client>,
    token: SlackApiToken,
    /// `[slack] timeout`: the longest one call may take.
    timeout: Duration,
    /// This zbot's metrics: each Web API call, Socket Mode reconnections.
    metrics: Arc<Metrics>,
}

/// One Web API call, given up after `limit` (`[slack] timeout`): a Slack that never answers must not
/// hold the notifier, and with it every thread, forever.
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = ClientResult<T>>,
) -> Result<ClientResult<T>, ChatError> {
    tokio::time::timeout(limit, call).await.map_err(|_| {
        ChatError::Other(format!(
            "Slack did not answer within {}",
            HumanDuration(limit)
        ))
    })
}

/// How often a rate-limited call is tried.
const RATE_LIMIT_ATTEMPTS: u32 = 3;

fn content(message: &Message) -> SlackMessageContent {
    let mut content = SlackMessageContent::new().with_text(message.text.clone());
    if let Some(blocks) = message
        .blocks
        .clone()
        .and_then(|b| serde_json::from_value::<Vec<SlackBlock>>(b).ok())
    {
        content = content.with_blocks(blocks);
    }
    content
}

/// An error as the person operating zbot needs it: what to fix.
fn explain(error: &SlackClientError) -> ChatError {
    match error {
        SlackClientError::ApiError(e) if e.code == "channel_not_found" => ChatError::NoSuchPlace(
            "channel_not_found: the channel does not exist or zbot cannot see it".into(),
        ),
        SlackClientError::ApiError(e) if e.code == "not_in_channel" => ChatError::NoSuchPlace(
            "not_in_channel: invite zbot to the channel (/invite @zbot)".into(),
        ),
        SlackClientError::ApiError(e) if e.code == "is_archived" => {
            ChatError::NoSuchPlace("is_archived: the channel is archived".into())
        }
        other => ChatError::Other(other.to_string()),
    }
}

impl SlackOutput {
    /// `call` (the Web API's `method`), tried again after a rate limit; each try is counted and timed
    /// (`zbot_slack_requests_total`).
    async fn with_rate_limits<T, F, Fut>(
        &self,
        method: &'static str,
        mut call: F,
    ) -> Result<T, ChatError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ClientResult<T>>,
    {
        let mut attempt = 1;
        loop {
            let sent = std::time::Instant::now();
            let answered = within(self.timeout, call()).await;
            let result = match &answered {
                Ok(Ok(_)) => SlackResult::Ok,
                Ok(Err(SlackClientError::RateLimitError(_))) => SlackResult::RateLimited,
                Ok(Err(_)) => SlackResult::Error,
                Err(_) => SlackResult::Timeout,
            };
            self.metrics.slack_request(method, result, sent.elapsed());
            match answered? {
                Ok(value) => return Ok(value),
                Err(SlackClientError::RateLimitError(limit)) if attempt < RATE_LIMIT_ATTEMPTS => {
                    let wait = limit.retry_after.unwrap_or(Duration::from_secs(1));
                    tracing::warn!(?wait, "Slack rate limit; waiting");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(explain(&e)),
            }
        }
    }
}

impl SlackOutput {
    /// Sends `message` to `user` (a Slack user id) in a direct message: `conversations.open` gives the
    /// DM's channel (the `im:write` scope), then `chat.postMessage`.
    pub async fn direct_message(&self, user: &str, message: &Message) -> Result<(), ChatError> {
        let request =
            SlackApiConversationsOpenRequest::new().with_users(vec![SlackUserId::new(user.into())]);
        let opened = self
            .with_rate_limits("conversations.open", || async {
                self.client
                    .open_session(&self.token)
                    .conversations_open(&request)
                    .await
            })
            .await?;
        let channel = opened.channel.id.to_string();
        self.post(&channel, None, message).await.map(drop)
    }
}

/// The direct message to the person who asked for a deployment from Slack, when it ends
/// (`[slack] dm_requester`, on by default): the deployment's actor, when the payload's Slack user is
/// that actor (a deployment zbot made from chat), never a user only the payload names.
#[derive(Debug, Clone)]
pub struct RequesterDm(pub SlackOutput);

impl Deliver for RequesterDm {
    fn deliver<'a>(&'a self, event: &'a DeploymentEvent, _kind: NotifyEvent) -> Delivery<'a> {
        Box::pin(async move {
            let user = event
                .notify
                .as_ref()
                .filter(|n| n.place_in(&crate::domain::Adapter::slack()).is_some())
                .and_then(|n| n.user.as_ref())
                // Only the person zbot recorded as asking (a grant's chat user): a payload's user is
                // anyone's to write, and must not get zbot to message someone.
                .filter(|u| u.is_slack_id() && u.as_str() == event.actor);
            let Some(user) = user else {
                return Ok(());
            };
            self.0
                .direct_message(user.as_str(), &crate::reply::outcome(event))
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl ChatOutput for SlackOutput {
    async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        message: &Message,
    ) -> Result<String, ChatError> {
        let mut request = SlackApiChatPostMessageRequest::new(channel.into(), content(message))
            .with_unfurl_links(false);
        if let Some(ts) = thread_ts {
            request = request.with_thread_ts(ts.into());
        }
        let response = self
            .with_rate_limits("chat.postMessage", || async {
                self.client
                    .open_session(&self.token)
                    .chat_post_message(&request)
                    .await
            })
            .await?;
        Ok(response.ts.to_string())
    }

    async fn update(&self, channel: &str, ts: &str, message: &Message) -> Result<(), ChatError> {
        let request = SlackApiChatUpdateRequest::new(channel.into(), content(message), ts.into());
        self.with_rate_limits("chat.update", || async {
            self.client
                .open_session(&self.token)
                .chat_update(&request)
                .await
        })
        .await
        .map(drop)
    }

    /// `views.open` with the reject modal.
    async fn ask_reject_reason(&self, trigger_id: &str, request: i64) -> bool {
        let view: SlackView =
            match serde_json::from_value(crate::reply::reject_reason_modal(request)) {
                Ok(view) => view,
                Err(e) => {
                    tracing::error!("the reject modal does not read as a Slack view: {e}");
                    return false;
                }
            };
        let request = SlackApiViewsOpenRequest::new(trigger_id.into(), view);
        match self
            .with_rate_limits("views.open", || async {
                self.client
                    .open_session(&self.token)
                    .views_open(&request)
                    .await
            })
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("cannot open the reject modal, rejecting without a reason: {e}");
                false
            }
        }
    }

    /// `usergroups.list` (with users) for `@handle`s, `usergroups.users.list` for `S…` ids.
    async fn group_members(&self, approvers: &[String]) -> Vec<String> {
        let handles: Vec<&str> = approvers
            .iter()
            .filter_map(|a| a.strip_prefix('@'))
            .collect();
        let ids: Vec<&String> = approvers.iter().filter(|a| a.starts_with('S')).collect();
        let mut members = Vec::new();
        if !handles.is_empty() {
            let request = SlackApiUserGroupsListRequest::new().with_include_users(true);
            match self
                .with_rate_limits("usergroups.list", || async {
                    self.client
                        .open_session(&self.token)
                        .usergroups_list(&request)
                        .await
                })
                .await
            {
                Ok(list) => {
                    for group in list.usergroups {
                        if handles.contains(&group.handle.as_str()) {
                            members.extend(
                                group
                                    .users
                                    .unwrap_or_default()
                                    .iter()
                                    .map(|u| u.to_string()),
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot read Slack user groups: {e}"),
            }
        }
        for id in ids {
            let request = SlackApiUserGroupsUsersListRequest::new(id.as_str().into());
            match self
                .with_rate_limits("usergroups.users.list", || async {
                    self.client
                        .open_session(&self.token)
                        .usergroups_users_list(&request)
                        .await
                })
                .await
            {
                Ok(list) => members.extend(list.users.iter().map(|u| u.to_string())),
                Err(e) => tracing::warn!(group = %id, "cannot read a Slack user group: {e}"),
            }
        }
        members
    }
}

/// How long a handled event is remembered. Slack redelivers an envelope it did not see acknowledged
/// within minutes (at once, after 1 minute, after 5 minutes), so an hour is ample.
const SEEN_FOR: Duration = Duration::from_secs(3600);

/// What the callbacks share (slack-morphism callbacks are plain functions).
struct SlackState {
    bot: Arc<Bot<SlackOutput>>,
    /// The messages being handled; `None` once input has stopped.
    handlers: Mutex<Option<JoinSet<()>>>,
    /// Whether Socket Mode said `hello` once: every later `hello` is a reconnection.
    connected_once: std::sync::atomic::AtomicBool,
}

/// True if none of `keys` (an event id, a message's channel + ts) was handled before, by this
/// process or an earlier one. A store error is tried again (two instances recording one event may
/// deadlock, and one of them is told to try again); if it persists, a store shared with other
/// instances counts the event as handled (another may have acted on it: acting twice is worse than
/// a command someone types again), a store of this process alone as new.
async fn first_time(bot: &Bot<SlackOutput>, keys: &[String]) -> bool {
    let mut tries = 0;
    loop {
        match bot
            .store
            .first_sight(keys, chrono::Utc::now(), SEEN_FOR)
            .await
        {
            Ok(first) => return first,
            Err(e) if tries < 2 => {
                tries += 1;
                tracing::warn!("cannot record a Slack event as handled (trying again): {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
            }
            Err(e) if bot.store.is_shared() => {
                tracing::error!(
                    "cannot record a Slack event as handled; not acting on it, since another instance may have: {e}"
                );
                return false;
            }
            Err(e) => {
                // Without the store a command fails anyway; it is answered (with the error) rather
                // than dropped without a word.
                tracing::error!("cannot record a Slack event as handled, handling it anyway: {e}");
                return true;
            }
        }
    }
}

async fn state_of(states: &SlackClientEventsUserState) -> Option<Arc<SlackState>> {
    states
        .read()
        .await
        .get_user_state::<Arc<SlackState>>()
        .cloned()
}

/// Why an envelope is not acknowledged: zbot is stopping, and Slack redelivers unacknowledged envelopes
/// (to the next connection).
#[derive(Debug, thiserror::Error)]
#[error("zbot is stopping; Slack will redeliver this event")]
struct Stopping;

/// Handles `inbound` in a task of its own, so the callback returns (and Slack gets its ack) at once,
/// unless an event with one of its `keys` was handled before.
fn dispatch(state: Arc<SlackState>, keys: Vec<String>, inbound: Inbound) -> UserCallbackResult<()> {
    spawn_once(&state, keys, |bot| async move { bot.handle(inbound).await })
}

/// Runs `work` with the bot in a task of its own (so the callback returns, and Slack gets its ack, at
/// once), unless an event with one of its `keys` was handled before; refused once input has stopped.
fn spawn_once<F, Fut>(state: &SlackState, keys: Vec<String>, work: F) -> UserCallbackResult<()>
where
    F: FnOnce(Arc<Bot<SlackOutput>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut handlers = state
        .handlers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(handlers) = handlers.as_mut() else {
        return Err(Box::new(Stopping));
    };
    // Forget the handlers that have ended, so the set holds only those still running.
    while handlers.try_join_next().is_some() {}
    let bot = Arc::clone(&state.bot);
    handlers.spawn(async move {
        if first_time(&bot, &keys).await {
            work(bot).await;
        }
    });
    Ok(())
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some(state) = state_of(&states).await else {
        return Ok(());
    };
    let team_id = Some(event.team_id.to_string());
    let inbound = match event.event {
        SlackEventCallbackBody::AppMention(m) => {
            if m.edited.is_some() {
                return Ok(());
            }
            Inbound {
                kind: InboundKind::Mention,
                channel: m.channel.to_string(),
                channel_name: None,
                user: m.user.to_string(),
                user_name: None,
                team_id,
                text: m.content.text.unwrap_or_default(),
                ts: Some(m.origin.ts.to_string()),
                thread_ts: m.origin.thread_ts.map(|t| t.to_string()),
            }
        }
        SlackEventCallbackBody::Message(m) => {
            let from_bot = m.sender.bot_id.is_some()
                || m.sender
                    .user
                    .as_ref()
                    .is_some_and(|u| u.0 == state.bot.bot_user_id);
            if from_bot || m.subtype.is_some() || m.message.is_some() || m.deleted_ts.is_some() {
                return Ok(());
            }
            let (Some(user), Some(channel)) = (m.sender.user, m.origin.channel) else {
                return Ok(());
            };
            let direct = m.origin.channel_type.as_ref().is_some_and(|t| t.0 == "im");
            let text = m.content.and_then(|c| c.text).unwrap_or_default();
            // A mention is handled through its app_mention event.
            if !direct
                && text
                    .trim_start_matches(crate::domain::is_space)
                    .starts_with(&format!("<@{}", state.bot.bot_user_id))
            {
                return Ok(());
            }
            Inbound {
                kind: if direct {
                    InboundKind::Direct
                } else {
                    InboundKind::Channel
                },
                channel: channel.to_string(),
                channel_name: None,
                user: user.to_string(),
                user_name: None,
                team_id,
                text,
                ts: Some(m.origin.ts.to_string()),
                thread_ts: m.origin.thread_ts.map(|t| t.to_string()),
            }
        }
        _ => return Ok(()),
    };
    let keys = vec![
        format!("event/{}", event.event_id),
        format!(
            "message/{}/{}",
            inbound.channel,
            inbound.ts.as_deref().unwrap_or_default()
        ),
    ];
    dispatch(state, keys, inbound)
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let ack = SlackCommandEventResponse::new(SlackMessageContent::new().with_text("On it…".into()))
        .with_response_type(SlackMessageResponseType::Ephemeral);
    let Some(state) = state_of(&states).await else {
        return Ok(ack);
    };
    let command = event.command.to_string();
    let configured = state
        .bot
        .config
        .slack
        .as_ref()
        .is_some_and(|slack| slack.slash_commands.contains(&command));
    if !configured {
        let text = format!(
            "zbot is not set up for {command}: add it to [slack] slash_commands in bot.toml."
        );
        return Ok(
            SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
                .with_response_type(SlackMessageResponseType::Ephemeral),
        );
    }
    // A slash command has no event id and no message; its trigger id is unique per invocation.
    dispatch(
        state,
        vec![format!("slash/{}", event.trigger_id)],
        Inbound {
            kind: InboundKind::Slash(event.command.to_string()),
            channel: event.channel_id.to_string(),
            channel_name: event.channel_name.clone(),
            user: event.user_id.to_string(),
            user_name: None,
            team_id: Some(event.team_id.to_string()),
            text: event.text.unwrap_or_default(),
            ts: None,
            thread_ts: None,
        },
    )?;
    Ok(ack)
}

/// A click on a button of zbot's (a deploy request's Approve or Reject): handled in a task of its own,
/// once per trigger id; anything else is acknowledged and ignored.
async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some(state) = state_of(&states).await else {
        return Ok(());
    };
    let actions = match event {
        SlackInteractionEvent::BlockActions(actions) => actions,
        SlackInteractionEvent::ViewSubmission(submission) => {
            return on_submission(state, submission);
        }
        _ => return Ok(()),
    };
    let Some(user) = actions.user.as_ref().map(|u| u.id.to_string()) else {
        return Ok(());
    };
    let Some(action) = actions.actions.as_ref().and_then(|a| a.first()) else {
        return Ok(());
    };
    let action_id = action.action_id.to_string();
    let value = action.value.clone().unwrap_or_default();
    let trigger_id = actions.trigger_id.to_string();
    let key = format!("click/{trigger_id}");
    spawn_once(&state, vec![key], |bot| async move {
        bot.clicked(&user, &action_id, &value, Some(&trigger_id))
            .await
    })
}

/// The reject modal submitted: its request number and reason, handled in a task of its own. The
/// envelope's acknowledgement closes the modal.
fn on_submission(
    state: Arc<SlackState>,
    submission: SlackInteractionViewSubmissionEvent,
) -> UserCallbackResult<()> {
    let SlackView::Modal(modal) = &submission.view.view else {
        return Ok(());
    };
    if modal.callback_id.as_ref().map(|c| c.to_string()).as_deref()
        != Some(crate::reply::REJECT_CALLBACK)
    {
        return Ok(());
    }
    let request = modal.private_metadata.clone().unwrap_or_default();
    let field = crate::reply::REASON_FIELD;
    let reason = submission
        .view
        .state_params
        .state
        .as_ref()
        .and_then(|s| s.values.get(&field.into()))
        .and_then(|block| block.get(&field.into()))
        .and_then(|value| value.value.clone());
    let user = submission.user.id.to_string();
    let key = format!(
        "submission/{}/{request}/{user}",
        submission.view.state_params.id
    );
    spawn_once(&state, vec![key], |bot| async move {
        bot.rejected_with_reason(&user, &request, reason.as_deref())
            .await
    })
}

/// Socket Mode's `hello`, sent on each connection: after the first, a reconnection
/// (`zbot_slack_socket_mode_reconnects_total`).
/// (The event's type is not exported by slack-morphism: it is taken as given.)
async fn on_hello<E>(_event: E, _client: Arc<Client>, states: SlackClientEventsUserState) {
    if let Some(state) = state_of(&states).await
        && state
            .connected_once
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::info!("Socket Mode connected again");
        state.bot.out.metrics.socket_mode_reconnects.inc();
    }
}

fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    if error.downcast_ref::<Stopping>().is_some() {
        // No ack: Slack redelivers the envelope to the next connection.
        return HttpStatusCode::SERVICE_UNAVAILABLE;
    }
    tracing::error!("Slack event handling failed: {error}");
    // Acknowledge anyway: a redelivery would fail the same way.
    HttpStatusCode::OK
}

/// How long stopping waits for the messages being handled, and then for the notifier to show what
/// was published; what is left after that is dropped.
const DRAIN: Duration = Duration::from_secs(30);

/// A running Slack connection.
pub struct SlackConnection {
    listener: SlackClientSocketModeListener<SlackClientHyperHttpsConnector>,
    state: Arc<SlackState>,
}

impl std::fmt::Debug for SlackConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackConnection")
    }
}

/// Checks the bot token with `auth.test`; the bot's name and team on success.
pub async fn check(slack: &SlackConfig) -> anyhow::Result<String> {
    let client = client(&slack.api_url, slack.timeouts)?;
    let token = SlackApiToken::new(slack.bot_token.expose().into());
    let identity = within(
        slack.timeouts.request,
        client.open_session(&token).auth_test(),
    )
    .await?
    .map_err(|e| anyhow::anyhow!("auth.test with [slack] bot_token failed: {}", explain(&e)))?;
    Ok(format!(
        "{} ({}) in {}",
        identity.user.unwrap_or_default(),
        identity.user_id,
        identity.team
    ))
}

/// Connects to Slack: `auth.test` for the bot's user id, then Socket Mode.
pub async fn connect(
    slack: &SlackConfig,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(SlackOutput, String)> {
    let client = client(&slack.api_url, slack.timeouts)?;
    let token = SlackApiToken::new(slack.bot_token.expose().into());
    let identity = within(
        slack.timeouts.request,
        client.open_session(&token).auth_test(),
    )
    .await?
    .map_err(|e| {
        anyhow::anyhow!(
            "Slack auth.test with [slack] bot_token failed: {}",
            explain(&e)
        )
    })?;
    tracing::info!(bot_user = %identity.user_id, team = %identity.team, "connected to Slack");
    let out = SlackOutput {
        client,
        token,
        timeout: slack.timeouts.request,
        metrics,
    };
    Ok((out, identity.user_id.to_string()))
}

/// Opens Socket Mode and hands every message for the bot to `bot` (in a task of its own, so the
/// envelope is acknowledged at once).
pub async fn listen(
    slack: &SlackConfig,
    bot: Arc<Bot<SlackOutput>>,
) -> anyhow::Result<SlackConnection> {
    let client = Arc::clone(&bot.out.client);
    let state = Arc::new(SlackState {
        bot,
        handlers: Mutex::new(Some(JoinSet::new())),
        connected_once: std::sync::atomic::AtomicBool::new(false),
    });
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client)
            .with_error_handler(on_error)
            .with_user_state(Arc::clone(&state)),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_hello_events(on_hello)
        .with_push_events(on_push)
        .with_command_events(on_command)
        .with_interaction_events(on_interaction);
    // One connection; after a disconnect slack-morphism reconnects, retrying every few seconds.
    let socket_config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(1)
        .with_reconnect_timeout_in_seconds(5);
    let listener = SlackClientSocketModeListener::new(&socket_config, environment, callbacks);
    let app_token = SlackApiToken::new(slack.app_token.expose().into());
    within(slack.timeouts.request, listener.listen_for(&app_token))
        .await?
        .map_err(|e| {
            anyhow::anyhow!(
                "opening a Socket Mode connection with [slack] app_token failed: {}",
                explain(&e)
            )
        })?;
    listener.start().await;
    Ok(SlackConnection { listener, state })
}

impl SlackConnection {
    /// Stops taking input from Slack and waits (up to [`DRAIN`]) for the messages being handled.
    /// Envelopes that arrive from now on are not acknowledged, so Slack redelivers them to the next
    /// connection.
    pub async fn stop_input(&self) {
        let handlers = self
            .state
            .handlers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        self.listener.shutdown().await;
        let Some(mut handlers) = handlers else {
            return;
        };
        let finished = tokio::time::timeout(DRAIN, async {
            while handlers.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                still_running = handlers.len(),
                "stopping without waiting longer for the Slack messages being handled"
            );
        }
    }
}
