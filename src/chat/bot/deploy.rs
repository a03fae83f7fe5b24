//! `deploy[:task][!] <app>[/<ref>] [to <env>[/<hosts>]]`: the checks, then a GitHub deployment whose
//! payload says where to answer.

use super::{Bot, Thread};
use crate::chat::{ChatOutput, Inbound};
use crate::command::DeployCommand;
use crate::domain::{Environment, GitRef, Hosts, Notify, Room, Sha, Task, ThreadTs, User};
use crate::forge::{Created, DeploymentRequest};
use crate::payload::Payload;
use crate::policy::{Denial, Target};
use crate::reply;
use crate::store::{Grant, GrantClaim};

/// How long a grant waits for its deployment's webhook (or poll) to claim it: GitHub sends the webhook
/// within seconds; this leaves room for a slow delivery or a poll interval, not for a replay days later.
pub(crate) const GRANT_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

impl<O: ChatOutput> Bot<O> {
    pub(super) async fn deploy(
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
        crate::policy::may_carry_out(&target, &command.task, command.hosts.as_ref())?;
        // A dry run changes nothing: a freeze or a closed window does not hold it, and it needs no approval.
        let dry_run = command.task.is_noop();
        if dry_run {
            // Refused before GitHub has a deployment, not by the runner after.
            crate::policy::may_dry_run(&target, self.scheduler.recipes())?;
        }
        let overridden = if dry_run {
            Vec::new()
        } else {
            self.closure_check(&target, command.force, inbound).await?
        };
        if !overridden.is_empty() {
            self.say(thread, &reply::overriding(&overridden, &inbound.user))
                .await;
        }
        let git_ref = command
            .git_ref
            .clone()
            .unwrap_or_else(|| target.app.default_ref.clone());
        if !dry_run && target.app.approvals.contains_key(&target.environment) {
            return Ok(self
                .request_approval(&target, &git_ref, None, command, inbound, thread)
                .await);
        }
        Ok(self
            .create(
                &target,
                &git_ref,
                None,
                &command.task,
                command.force,
                command.hosts.as_ref(),
                !overridden.is_empty(),
                None,
                inbound,
                thread,
            )
            .await)
    }

    /// Creates the GitHub deployment and says what happened; retries once after an auto-merge.
    /// `pinned`: the very commit to deploy (an approved request's, a rollback's): GitHub is asked for
    /// that sha, not `git_ref` (which may have moved since), and never merges into it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn create(
        &self,
        target: &Target<'_>,
        git_ref: &GitRef,
        pinned: Option<&Sha>,
        task: &Task,
        force: bool,
        hosts: Option<&Hosts>,
        overrides: bool,
        approval: Option<i64>,
        inbound: &Inbound,
        thread: &Thread,
    ) -> String {
        let app = target.app;
        let mut payload = self.payload(target, hosts, inbound, thread);
        // What zbot asked for, recorded before GitHub hears of it: the runner trusts the payload's
        // chat user and override only through this.
        let Some(token) = crate::secret::random_token() else {
            tracing::error!("cannot read the system's random source");
            return reply::store_unavailable();
        };
        let now = self.clock.now();
        let grant = Grant {
            app: target.app_name.clone(),
            repository: app.repository.clone(),
            environment: target.environment.clone(),
            task: task.clone(),
            sha: pinned.cloned(),
            actor: inbound.user.clone(),
            overrides,
            approval_request: approval,
            expires_at: now + GRANT_LIFETIME,
            deployment_id: None,
        };
        if let Err(e) = self.store.grant(&token, &grant, now).await {
            tracing::error!("cannot record a grant: {e}");
            return reply::store_unavailable();
        }
        payload.grant = Some(token.clone());
        let deploy_ref = match pinned.map(|sha| sha.as_str().parse::<GitRef>()) {
            Some(Ok(sha)) => sha,
            Some(Err(_)) | None => git_ref.clone(),
        };
        let request = DeploymentRequest {
            git_ref: deploy_ref,
            task: task.clone(),
            environment: target.environment.clone(),
            description: format!(
                "{task} {}/{git_ref} to {} from zbot",
                target.app_name, target.environment
            ),
            production_environment: !task.is_noop()
                && target.environment.same(&Environment::production()),
            transient_environment: task.is_noop(),
            required_contexts: if force {
                Some(Vec::new())
            } else {
                app.required_contexts.clone()
            },
            auto_merge: !force && pinned.is_none() && app.auto_merge,
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
                    // The grant is this deployment's (its webhook may have claimed it already).
                    let claim = GrantClaim {
                        deployment_id: id,
                        app: &target.app_name,
                        repository: &app.repository,
                        environment: &target.environment,
                        task,
                        sha: &sha,
                    };
                    if let Err(e) = self.store.claim_grant(&token, claim, now).await {
                        tracing::error!("cannot bind a grant to its deployment: {e}");
                    }
                    if let Some(request) = approval
                        && let Err(e) = self.store.set_request_deployment(request, id).await
                    {
                        tracing::error!("cannot record the deployment of a request: {e}");
                    }
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
    pub(super) fn payload(
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
                adapter: Some(self.out.adapter()),
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
            config: target.app.public_settings(),
            reason: None,
            grant: None,
            automatic: false,
        }
    }
}
