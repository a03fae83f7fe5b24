//! Handles one message for the bot: parse it, check it, act on it, answer in its thread. One file per
//! command family: [`deploy`] (deploy and the GitHub deployment it becomes), [`deploys`] (`deploys`,
//! `where can i deploy`), [`locks`] (`lock`, `unlock`, `locks`), [`cancel`], [`rollback`]. Each returns
//! the answer as text that `reply` wrote, or a typed [`Denial`] that `reply` renders.
//!
//! The thread is the one the message came from (`thread_ts`, else the message's own `ts`); a slash
//! command has no message, so the bot posts one in the channel and answers under it. A `deploy` that
//! passes the checks becomes a GitHub deployment whose payload says where to answer (hubot-deploy and
//! Heaven compatible); from then on the [`super::notifier`] keeps the thread current.

mod approvals;
mod cancel;
mod deploy;
mod deploys;
mod guards;
mod locks;
mod rollback;

use std::sync::Arc;

use super::{ChatOutput, Inbound, InboundKind, Message};
use crate::command::{Addressing, Command, parse_message};
use crate::config::Config;
use crate::domain::{AppName, Environment};
use crate::forge::Forge;
use crate::policy::{self, Denial, Target};
use crate::reply;
use crate::scheduler::Scheduler;
use crate::store::Store;

/// Where the conversation about a message happens.
#[derive(Debug, Clone)]
pub struct Thread {
    pub channel: String,
    pub ts: String,
}

/// The bot, generic over its chat service.
#[derive(Debug)]
pub struct Bot<O: ChatOutput> {
    pub config: Arc<Config>,
    pub store: Store,
    pub forge: Forge,
    pub scheduler: Arc<Scheduler>,
    pub out: O,
    /// The bot's own user id in the chat service, for mentions.
    pub bot_user_id: String,
    /// "Now", for freezes, windows and expiry.
    pub clock: crate::clock::Clock,
}

impl<O: ChatOutput> Bot<O> {
    fn names(&self) -> Vec<String> {
        std::iter::once(self.config.bot.name.clone())
            .chain(self.config.bot.aliases.iter().cloned())
            .collect()
    }

    /// Handles a message; one not addressed to the bot is ignored.
    pub async fn handle(&self, inbound: Inbound) {
        let names = self.names();
        let slash = match &inbound.kind {
            InboundKind::Slash(command) => Some(command.as_str()),
            _ => None,
        };
        let addressing = Addressing {
            names: &names,
            bot_user_id: Some(&self.bot_user_id),
            direct: inbound.kind == InboundKind::Direct,
            slash_command: slash,
        };
        let Some(parsed) = parse_message(&inbound.text, &addressing) else {
            return;
        };
        let Some(thread) = self.thread_for(&inbound).await else {
            return;
        };
        let answer = match parsed {
            Err(error) => Some(reply::parse_error(&error)),
            Ok(command) => self.run(command, &inbound, &thread).await,
        };
        if let Some(text) = answer {
            self.say(&thread, &text).await;
        }
    }

    pub(super) async fn say(&self, thread: &Thread, text: &str) {
        if let Err(e) = self
            .out
            .post(&thread.channel, Some(&thread.ts), &Message::text(text))
            .await
        {
            tracing::error!(channel = %thread.channel, "cannot reply: {e}");
        }
    }

    async fn thread_for(&self, inbound: &Inbound) -> Option<Thread> {
        if let Some(ts) = inbound.thread_ts.clone().or_else(|| inbound.ts.clone()) {
            return Some(Thread {
                channel: inbound.channel.clone(),
                ts,
            });
        }
        // A slash command has no message to thread under: post one.
        let command = match &inbound.kind {
            InboundKind::Slash(command) => command.as_str(),
            _ => "",
        };
        let text = reply::slash_command_ran(&inbound.user, command, &inbound.text);
        match self
            .out
            .post(&inbound.channel, None, &Message::text(text))
            .await
        {
            Ok(ts) => Some(Thread {
                channel: inbound.channel.clone(),
                ts,
            }),
            Err(e) => {
                tracing::error!(channel = %inbound.channel, "cannot start a thread for a slash command: {e}");
                None
            }
        }
    }

    /// Runs a command; the text returned is the answer in the thread.
    async fn run(&self, command: Command, inbound: &Inbound, thread: &Thread) -> Option<String> {
        let result = match command {
            Command::Deploy(deploy) => self.deploy(&deploy, inbound, thread).await,
            Command::Deploys {
                app,
                git_ref,
                environment,
            } => {
                self.deploys(&app, git_ref.as_ref(), environment.as_ref())
                    .await
            }
            Command::Where { app } => self.where_(&app).await,
            Command::Lock {
                force,
                app,
                environment,
                until,
                reason,
            } => {
                self.lock(
                    force,
                    &app,
                    environment.as_ref(),
                    until,
                    reason.as_deref(),
                    inbound,
                )
                .await
            }
            Command::Freeze {
                app,
                environment,
                until,
                reason,
            } => {
                self.freeze(
                    app.as_ref(),
                    &environment,
                    until,
                    reason.as_deref(),
                    inbound,
                )
                .await
            }
            Command::Unfreeze { app, environment } => {
                self.unfreeze(app.as_ref(), &environment, inbound).await
            }
            Command::Approve { request } => self.approve(request, inbound, thread).await,
            Command::Reject { request, reason } => {
                self.reject(request, reason.as_deref(), inbound, thread)
                    .await
            }
            Command::NotifyWhenFree { app, environment } => {
                self.notify_when_free(app.as_ref(), &environment, inbound)
                    .await
            }
            Command::Unlock { app, environment } => {
                self.unlock(&app, environment.as_ref(), inbound).await
            }
            Command::Locks => self.locks().await,
            Command::Cancel(target) => self.cancel(target, inbound).await,
            Command::Rollback {
                app,
                environment,
                force,
            } => {
                self.rollback(&app, environment.as_ref(), force, inbound, thread)
                    .await
            }
            Command::Help { topic } => Ok(reply::help(topic.as_deref())),
            Command::Version => Ok(reply::version()),
        };
        match result {
            Ok(text) if text.is_empty() => None,
            Ok(text) => Some(text),
            Err(denial) => Some(reply::denial(&denial)),
        }
    }

    /// The lock of `target` now; `Err(())` when it cannot be read (logged), which refuses.
    async fn lock_now(&self, target: &Target<'_>) -> Result<Option<crate::store::Lock>, ()> {
        self.store
            .lock_of(&target.app_name, &target.environment)
            .await
            .map_err(|e| tracing::error!("cannot read locks: {e}"))
    }

    /// Whether `actor` may deploy to `target` given its lock now: [`policy::may_run`] on the store's
    /// lock (a lock that cannot be read refuses).
    pub(super) async fn lock_check(&self, target: &Target<'_>, actor: &str) -> Result<(), Denial> {
        let lock = self.lock_now(target).await;
        policy::may_run(
            lock.as_ref().map(Option::as_ref).map_err(|_| ()),
            actor,
            self.config.bot.time_zone,
        )
    }

    pub(super) async fn checked_target<'a>(
        &'a self,
        app: &AppName,
        environment: Option<&Environment>,
        inbound: &Inbound,
    ) -> Result<Target<'a>, Denial> {
        let target = policy::target(&self.config, app, environment)?;
        let lock = self.lock_now(&target).await;
        policy::may_deploy(
            &target,
            &inbound.user,
            &inbound.channel,
            inbound.channel_name.as_deref(),
            lock.as_ref().map(Option::as_ref).map_err(|_| ()),
            self.config.bot.time_zone,
        )?;
        Ok(target)
    }
}
