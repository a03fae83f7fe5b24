//! `zbot shell`: the bot in a terminal, like Hubot's shell adapter.
//!
//! Lines typed (or piped) are handled by the same [`Bot`] as Slack messages — grammar, policy, locks,
//! queue, recipes, runner — with the embedded forge instead of GitHub (deployments and statuses in the
//! store, logs on disk). What the Slack thread would show is printed as text, status updates
//! included. With piped input each line's deploys are waited for before the next line is read, so
//! `deploy`, `deploy`, `rollback` mean what they say; at the end of input the shell exits.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use crate::chat::bot::Bot;
use crate::chat::notifier::Notifier;
use crate::chat::{ChatError, ChatOutput, Inbound, InboundKind, Message};
use crate::domain::DeploymentId;
use crate::events::{DeploymentEvent, Event, EventBus};
use crate::store::Store;

/// The terminal's one "channel".
pub const CHANNEL: &str = "shell";

/// Prints what the bot says.
#[derive(Clone, Debug, Default)]
pub struct Terminal {
    next_ts: Arc<AtomicU64>,
    /// Whoever types ([`user`]): a reply that starts by naming them does not, in the terminal.
    user: String,
}

/// Who types in the shell: `$USER`, else "you".
pub fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "you".to_string())
}

/// A message as the terminal shows it: plain text ([`crate::mrkdwn::plain`]), without the mention
/// of the requester a reply starts with in Slack (in the shell it is always `user`, whoever typed),
/// and without code fences (a table's rows start on their own lines, aligned).
fn terminal_text(text: &str, user: &str) -> String {
    let named = format!("{} ", crate::mrkdwn::escape(user));
    let text = match text
        .strip_prefix("<@")
        .and_then(|rest| rest.split_once("> "))
    {
        Some((_, rest)) => rest,
        None if !user.is_empty() => text.strip_prefix(named.as_str()).unwrap_or(text),
        None => text,
    };
    let plain = crate::mrkdwn::plain(text);
    let mut lines = Vec::new();
    for line in plain.lines() {
        let unfenced = line.trim_start_matches("```").trim_end_matches("```");
        if unfenced.is_empty() && !line.is_empty() {
            continue;
        }
        lines.push(unfenced);
    }
    lines.join("\n")
}

impl Terminal {
    /// The terminal of the shell `user` types in.
    pub fn for_user(user: String) -> Terminal {
        Terminal {
            next_ts: Arc::default(),
            user,
        }
    }

    async fn print(&self, prefix: &str, message: &Message) {
        let text = terminal_text(&message.text, &self.user);
        let mut lines = text.lines();
        let mut block = format!("{prefix} {}\n", lines.next().unwrap_or_default());
        for line in lines {
            block.push_str(&format!(
                "{:width$} {line}\n",
                "",
                width = prefix.chars().count()
            ));
        }
        let mut stdout = tokio::io::stdout();
        // A closed stdout leaves nobody to tell.
        let _ = stdout.write_all(block.as_bytes()).await;
        let _ = stdout.flush().await;
    }
}

impl ChatOutput for Terminal {
    async fn post(
        &self,
        _channel: &str,
        _thread_ts: Option<&str>,
        message: &Message,
    ) -> Result<String, ChatError> {
        self.print("zbot>", message).await;
        Ok(self.next_ts.fetch_add(1, Ordering::Relaxed).to_string())
    }

    async fn update(&self, _channel: &str, _ts: &str, message: &Message) -> Result<(), ChatError> {
        self.print("zbot ↻", message).await;
        Ok(())
    }
}

/// Deployments shown but not finished yet.
#[derive(Default)]
struct Open(HashSet<DeploymentId>);

impl Open {
    /// Adds every deployment the store has queued or running: the ones this line started.
    async fn add_active(&mut self, store: &crate::store::Store) {
        if let Ok(queue) = store.queue().await {
            self.0.extend(queue.into_iter().map(|q| q.deployment_id));
        }
        if let Ok(running) = store.running().await {
            self.0.extend(running.into_iter().map(|d| d.deployment_id));
        }
    }

    /// Forgets the deployments that are no longer queued or running.
    async fn keep_active(&mut self, store: &Store) {
        let mut active = Open::default();
        active.add_active(store).await;
        self.0.retain(|id| active.0.contains(id));
    }

    fn track(&mut self, event: &DeploymentEvent) {
        if event.state.is_final() {
            self.0.remove(&event.deployment_id);
        } else {
            self.0.insert(event.deployment_id);
        }
    }
}

/// Runs the shell on `input` until it ends; `interactive` prints a prompt and does not wait for deploys
/// between lines.
pub async fn run<O: ChatOutput>(
    store: &Store,
    events: &EventBus,
    bot: Bot<O>,
    notifier: Notifier<O>,
    input: impl AsyncBufRead + Unpin,
    interactive: bool,
) -> anyhow::Result<()> {
    let user = user();
    let mut events = events.subscribe();
    let mut open = Open::default();
    let mut lines = input.lines();
    let mut n = 0u64;
    if interactive {
        println!(
            "zbot shell: type what you would type in Slack (`help` to start, Ctrl-D to leave)."
        );
    }
    loop {
        if interactive {
            let mut stdout = tokio::io::stdout();
            let _ = stdout.write_all(format!("{user}> ").as_bytes()).await;
            let _ = stdout.flush().await;
        }
        let line = tokio::select! {
            line = lines.next_line() => line?,
            event = events.recv() => {
                show(&notifier, &mut open, event).await;
                continue;
            }
        };
        let Some(line) = line else {
            break;
        };
        if line.trim_matches(crate::domain::is_space).is_empty() {
            continue;
        }
        n += 1;
        let inbound = Inbound {
            kind: InboundKind::Direct,
            channel: CHANNEL.to_string(),
            channel_name: Some(CHANNEL.to_string()),
            user: user.clone(),
            user_name: Some(user.clone()),
            team_id: None,
            text: line,
            ts: Some(n.to_string()),
            thread_ts: None,
        };
        bot.handle(inbound).await;
        if !interactive {
            open.add_active(store).await;
            finish_open(store, &notifier, &mut open, &mut events).await;
        }
    }
    open.add_active(store).await;
    finish_open(store, &notifier, &mut open, &mut events).await;
    Ok(())
}

/// Shows events until every deployment shown so far has ended.
async fn finish_open<O: ChatOutput>(
    store: &Store,
    notifier: &Notifier<O>,
    open: &mut Open,
    events: &mut broadcast::Receiver<Event>,
) {
    // Events already published (e.g. a deploy just requested) are shown first.
    while let Ok(event) = events.try_recv() {
        show(notifier, open, Ok(event)).await;
    }
    while !open.0.is_empty() {
        let event = events.recv().await;
        if let Err(broadcast::error::RecvError::Lagged(_)) = &event {
            // Events were missed, final ones perhaps: what the store says has ended has ended.
            open.keep_active(store).await;
        }
        show(notifier, open, event).await;
    }
}

async fn show<O: ChatOutput>(
    notifier: &Notifier<O>,
    open: &mut Open,
    event: Result<Event, broadcast::error::RecvError>,
) {
    match event {
        Ok(event) => {
            notifier.show_event(&event).await;
            if let Event::Deployment(event) = &event {
                open.track(event);
            }
        }
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            tracing::warn!(missed, "the shell fell behind")
        }
        Err(broadcast::error::RecvError::Closed) => open.0.clear(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_shows_no_mention_of_whoever_typed_and_no_fences() {
        for (text, shown) in [
            (
                "<@you> adxstat `v0.0.1` is on *production*.",
                "adxstat `v0.0.1` is on *production*.",
            ),
            ("Locked by <@alice>.", "Locked by alice."),
            (
                "Recent deployments\n```# who\n1 you```",
                "Recent deployments\n# who\n1 you",
            ),
            ("```\n# who\n1 you\n```", "# who\n1 you"),
            ("one\n\ntwo", "one\n\ntwo"),
            ("", ""),
        ] {
            assert_eq!(terminal_text(text, ""), shown, "{text:?}");
        }
        // Named as the shell names whoever types (not a Slack id): dropped at the start only.
        for (text, shown) in [
            (
                "alice adxstat `v0.0.1` is on *production*.",
                "adxstat `v0.0.1` is on *production*.",
            ),
            ("Locked by alice.", "Locked by alice."),
            ("alicebeth is here", "alicebeth is here"),
        ] {
            assert_eq!(terminal_text(text, "alice"), shown, "{text:?}");
        }
    }
}
