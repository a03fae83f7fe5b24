//! The conversation side of zbot, independent of the chat service: messages in ([`Inbound`]), commands
//! handled ([`bot::Bot`]), deployment events shown in their thread ([`notifier`]), and replies out
//! through a [`ChatOutput`] that a transport (Slack) implements.

pub mod bot;
pub mod free;
pub mod notifier;
pub mod sinks;

use std::future::Future;

pub use crate::domain::Adapter;
pub use crate::mrkdwn::{Message, escape};

/// How a message reached the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundKind {
    /// An @-mention in a channel.
    Mention,
    /// A direct message.
    Direct,
    /// A plain channel message (addressed by name, Hubot style).
    Channel,
    /// The text of this slash command.
    Slash(String),
}

/// A message for the bot, as the transport received it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub kind: InboundKind,
    pub channel: String,
    pub channel_name: Option<String>,
    pub user: String,
    pub user_name: Option<String>,
    pub team_id: Option<String>,
    /// Exactly as the service delivered it (Slack-encoded).
    pub text: String,
    /// The message's own ts; `None` for slash commands.
    pub ts: Option<String>,
    pub thread_ts: Option<String>,
}

/// Why a chat service did not take a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    /// The service has no such room, or zbot may not post there (Slack's `channel_not_found`,
    /// `not_in_channel`, `is_archived`): said for the person operating zbot.
    #[error("{0}")]
    NoSuchPlace(String),
    #[error("{0}")]
    Other(String),
}

/// What a chat service must offer zbot.
pub trait ChatOutput: Clone + Send + Sync + 'static {
    /// Posts a message (in a thread when `thread_ts` is given); returns its ts.
    fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        message: &Message,
    ) -> impl Future<Output = Result<String, ChatError>> + Send;
    /// Replaces a message the bot posted.
    fn update(
        &self,
        channel: &str,
        ts: &str,
        message: &Message,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;
    /// The chat service's name in a deployment payload's `notify.adapter` (hubot-deploy's
    /// `robot.adapterName`): deployments asked for here say so, and are answered here.
    fn adapter(&self) -> Adapter {
        Adapter::slack()
    }
    /// Whether the service has threads and message edits (Slack). Without them (Campfire) a deployment
    /// gets no live status message: its outcome is said as one new message in the room.
    fn threads(&self) -> bool {
        true
    }
    /// Asks the person who clicked Reject on request `request` for a reason (a modal opened with the
    /// click's `trigger_id`); false when the service cannot, and the rejection goes ahead without one.
    fn ask_reject_reason(
        &self,
        trigger_id: &str,
        request: i64,
    ) -> impl Future<Output = bool> + Send {
        let _ = (trigger_id, request);
        async { false }
    }
    /// The user ids in the user groups among `approvers` (`@handle` or an `S…` id); a service
    /// without user groups has none. A group that cannot be read counts as empty.
    fn group_members(&self, approvers: &[String]) -> impl Future<Output = Vec<String>> + Send {
        let _ = approvers;
        async { Vec::new() }
    }
}
