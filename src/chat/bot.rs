//! Handles one message for the bot: parse it, check it, act on it, answer in its thread.
//!
//! The thread is the one the message came from (`thread_ts`, else the message's own `ts`); a slash
//! command has no message, so the bot posts one in the channel and answers under it. A `deploy` that
//! passes the checks becomes a GitHub deployment whose payload says where to answer (hubot-deploy and
//! Heaven compatible); from then on the [`super::notifier`] keeps the thread current.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ChatOutput, Inbound, InboundKind, Message, escape};
use crate::command::{Addressing, CancelTarget, Command, DeployCommand, parse_message};
use crate::config::{AppConfig, Config};
use crate::domain::{
    Adapter, AppName, Environment, GitRef, Hosts, Notify, Room, Task, ThreadTs, User,
};
use crate::forge::{Created, DeploymentRequest, Forge};
use crate::payload::Payload;
use crate::policy::{self, Denial, Target};
use crate::reply;
use crate::scheduler::{Cancelled, Scheduler};
use crate::store::{DeploymentState, Store};

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

    async fn say(&self, thread: &Thread, text: &str) {
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
        let text = format!(
            "{} ran `{command} {}`",
            reply::user(&inbound.user),
            escape(inbound.text.trim())
        );
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
                app,
                environment,
                reason,
            } => {
                self.lock(&app, environment.as_ref(), reason.as_deref(), inbound)
                    .await
            }
            Command::Unlock { app, environment } => {
                self.unlock(&app, environment.as_ref(), inbound).await
            }
            Command::Locks => Ok(self
                .store
                .locks()
                .await
                .map(|l| reply::locks(&l))
                .unwrap_or_else(|e| e.to_string())),
            Command::Cancel(target) => self.cancel(target, inbound).await,
            Command::Rollback { app, environment } => {
                self.rollback(&app, environment.as_ref(), inbound, thread)
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

    async fn checked_target<'a>(
        &'a self,
        app: &AppName,
        environment: Option<&Environment>,
        inbound: &Inbound,
    ) -> Result<Target<'a>, Denial> {
        let target = policy::target(&self.config, app, environment)?;
        let lock = self
            .store
            .lock_of(&target.app_name, &target.environment)
            .await;
        if let Err(e) = &lock {
            tracing::error!("cannot read locks: {e}");
        }
        policy::may_deploy(
            &target,
            &inbound.user,
            &inbound.channel,
            inbound.channel_name.as_deref(),
            lock.as_ref().map(Option::as_ref).map_err(drop),
        )?;
        Ok(target)
    }

    async fn deploy(
        &self,
        command: &DeployCommand,
        inbound: &Inbound,
        thread: &Thread,
    ) -> Result<String, Denial> {
        if command.otp.is_some() {
            return Ok(reply::otp_not_checked());
        }
        let target = self
            .checked_target(&command.app, command.environment.as_ref(), inbound)
            .await?;
        let git_ref = command
            .git_ref
            .clone()
            .unwrap_or_else(|| target.app.default_ref.clone());
        Ok(self
            .create(
                &target,
                &git_ref,
                &command.task,
                command.force,
                command.hosts.as_ref(),
                inbound,
                thread,
            )
            .await)
    }

    /// Creates the GitHub deployment and says what happened; retries once after an auto-merge.
    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        target: &Target<'_>,
        git_ref: &GitRef,
        task: &Task,
        force: bool,
        hosts: Option<&Hosts>,
        inbound: &Inbound,
        thread: &Thread,
    ) -> String {
        let app = target.app;
        let payload = self.payload(target, hosts, inbound, thread);
        let request = DeploymentRequest {
            git_ref: git_ref.clone(),
            task: task.clone(),
            environment: target.environment.clone(),
            description: format!(
                "{task} {}/{git_ref} to {} from zbot",
                target.app_name, target.environment
            ),
            production_environment: target.environment.same(&Environment::production()),
            required_contexts: if force {
                Some(Vec::new())
            } else {
                app.required_contexts.clone()
            },
            auto_merge: !force && app.auto_merge,
            payload: payload.to_value(),
        };
        for attempt in 0..2 {
            match self
                .forge
                .create_deployment(&target.app_name, app, &request, &inbound.user)
                .await
            {
                Ok(Created::Deployment { id, sha }) => {
                    // The deployer announces it (queued, in progress) in this thread: the payload
                    // says where. Nothing is published from here.
                    tracing::info!(deployment = %id, sha = %sha, "deployment created");
                    return String::new();
                }
                Ok(Created::Merged { message }) if attempt == 0 => {
                    self.say(thread, &reply::merged(&message)).await
                }
                Ok(Created::Merged { message }) => return reply::merged_again(&message),
                Err(refusal) => {
                    return reply::refused(
                        &refusal,
                        target.app_name.as_str(),
                        app.repository.as_str(),
                    );
                }
            }
        }
        String::new()
    }

    /// The deployment payload: where to answer, hubot-deploy and Heaven compatible.
    fn payload(
        &self,
        target: &Target<'_>,
        hosts: Option<&Hosts>,
        inbound: &Inbound,
        thread: &Thread,
    ) -> Payload {
        let user: Option<User> = inbound.user.parse().ok();
        Payload {
            name: target.app_name.clone(),
            robot_name: self.config.bot.name.clone(),
            hosts: hosts.map(ToString::to_string).unwrap_or_default(),
            notify: Notify {
                adapter: Some(Adapter::slack()),
                room: thread.channel.parse::<Room>().ok(),
                thread_ts: thread.ts.parse::<ThreadTs>().ok(),
                user: user.clone(),
                user_name: inbound
                    .user_name
                    .as_deref()
                    .and_then(|n| n.parse().ok())
                    .or(user),
                team_id: inbound.team_id.as_deref().and_then(|t| t.parse().ok()),
            },
            config: public_settings(target.app),
            reason: None,
        }
    }

    async fn deploys(
        &self,
        app: &AppName,
        git_ref: Option<&GitRef>,
        environment: Option<&Environment>,
    ) -> Result<String, Denial> {
        let (name, app_config) = policy::app(&self.config, app)?;
        let environment = match environment {
            Some(typed) => Some(policy::target(&self.config, &name, Some(typed))?.environment),
            None => None,
        };
        Ok(
            match self
                .forge
                .recent_deployments(&name, app_config, environment.as_ref(), 10)
                .await
            {
                Ok(mut rows) => {
                    if let Some(git_ref) = git_ref {
                        rows.retain(|r| {
                            r.git_ref == git_ref.as_str() || r.sha.starts_with(git_ref.as_str())
                        });
                    }
                    reply::deploys_table(&name, environment.as_ref(), git_ref, &rows)
                }
                Err(e) => format!(
                    "I couldn't list the deployments of {name}: {}",
                    escape(&e.to_string())
                ),
            },
        )
    }

    async fn where_(&self, app: &AppName) -> Result<String, Denial> {
        let (name, app_config) = policy::app(&self.config, app)?;
        let locks: Vec<_> = self
            .store
            .locks()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.app == name)
            .collect();
        Ok(reply::environments(&name, &app_config.environments, &locks))
    }

    async fn lock(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        reason: Option<&str>,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let target = policy::target(&self.config, app, environment)?;
        match self
            .store
            .lock(&target.app_name, &target.environment, &inbound.user, reason)
            .await
        {
            Ok(Ok(lock)) => Ok(reply::lock_taken(&lock)),
            Ok(Err(held)) => Err(Denial::Locked(held)),
            Err(e) => Ok(format!("I couldn't take the lock: {e}")),
        }
    }

    async fn unlock(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let target = policy::target(&self.config, app, environment)?;
        let (name, env) = (&target.app_name, &target.environment);
        match self.store.lock_of(name, env).await {
            Ok(None) => Ok(reply::not_locked(name, env)),
            Ok(Some(lock))
                if lock.holder != inbound.user
                    && !self.config.bot.admins.contains(&inbound.user) =>
            {
                Ok(reply::unlock_denied(&lock))
            }
            Ok(Some(_)) => Ok(match self.store.unlock(name, env).await {
                Ok(_) => reply::unlocked(name, env),
                Err(e) => format!("I couldn't remove the lock: {e}"),
            }),
            Err(e) => Ok(format!("I couldn't read the lock: {e}")),
        }
    }

    async fn cancel(&self, target: CancelTarget, inbound: &Inbound) -> Result<String, Denial> {
        let id = match target {
            CancelTarget::Deployment(id) => id,
            CancelTarget::App { app, environment } => {
                let target = policy::target(&self.config, &app, environment.as_ref())?;
                match self
                    .store
                    .active(&target.app_name, &target.environment)
                    .await
                {
                    Ok(active) if !active.is_empty() => active[0].deployment_id,
                    _ => {
                        return Ok(format!(
                            "Nothing of {} is queued or running on *{}*.",
                            target.app_name, target.environment
                        ));
                    }
                }
            }
        };
        let reason = format!(
            "Cancelled by {}",
            inbound
                .user_name
                .clone()
                .unwrap_or_else(|| inbound.user.clone())
        );
        Ok(match self.scheduler.cancel(id, &reason).await {
            Cancelled::Queued => format!("Deployment #{id} was waiting; it will not run."),
            Cancelled::Running => format!("Stopping deployment #{id}."),
            Cancelled::NotActive => format!("Deployment #{id} is not queued or running."),
        })
    }

    async fn rollback(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        inbound: &Inbound,
        thread: &Thread,
    ) -> Result<String, Denial> {
        let target = self.checked_target(app, environment, inbound).await?;
        let recent = self
            .store
            .recent(&target.app_name, Some(&target.environment), 50)
            .await
            .unwrap_or_default();
        let mut good = recent
            .iter()
            .filter(|d| d.state == DeploymentState::Success && d.task == Task::deploy());
        let (Some(current), Some(previous)) = (good.next(), good.next()) else {
            return Ok(format!(
                "There is no earlier successful deploy of {} to *{}* to roll back to.",
                target.app_name, target.environment
            ));
        };
        self.say(
            thread,
            &format!(
                "Rolling {} on *{}* back from `{}` to `{}`.",
                target.app_name,
                target.environment,
                escape(current.git_ref.as_str()),
                escape(previous.git_ref.as_str())
            ),
        )
        .await;
        let git_ref = previous.git_ref.clone();
        Ok(self
            .create(
                &target,
                &git_ref,
                &Task::deploy(),
                false,
                None,
                inbound,
                thread,
            )
            .await)
    }
}

/// An app's settings as sent in the deployment payload: nothing secret.
fn public_settings(app: &AppConfig) -> Value {
    json!({
        "repository": app.repository,
        "provider": app.provider,
        "environments": app.environments,
        "environment_urls": app.environment_urls,
        "required_contexts": app.required_contexts,
        "auto_merge": app.auto_merge,
    })
}
