//! `rollback <app> [in <env>]`: deploy the commit of the previous successful deploy again (its sha,
//! not its ref, which may have moved since).

use super::{Bot, Thread};
use crate::chat::{ChatOutput, Inbound};
use crate::domain::{AppName, Environment, Task};
use crate::policy::Denial;
use crate::reply;
use crate::store::DeploymentState;

impl<O: ChatOutput> Bot<O> {
    /// `force`: `rollback!`, an admin's only (like `deploy!` through a freeze or outside a window):
    /// anyone else is refused before anything happens.
    pub(super) async fn rollback(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        force: bool,
        inbound: &Inbound,
        thread: &Thread,
    ) -> Result<String, Denial> {
        if force && !self.config.bot.admins.iter().any(|a| a == &inbound.user) {
            return Err(Denial::NotAdmin { what: "rollback!" });
        }
        let target = self.checked_target(app, environment, inbound).await?;
        let overridden = self.closure_check(&target, force, inbound).await?;
        let recent = match self
            .store
            .recent(&target.app_name, Some(&target.environment), 50)
            .await
        {
            Ok(recent) => recent,
            Err(e) => {
                tracing::error!("cannot read recent deployments: {e}");
                return Ok(reply::store_unavailable());
            }
        };
        let mut good = recent
            .iter()
            .filter(|d| d.state == DeploymentState::Success && d.task == Task::deploy());
        // The last good deploy of another commit: redeploying the same commit under another name (a
        // branch and a tag on one sha) would change nothing.
        let current = good.next();
        let previous = current.and_then(|current| good.find(|d| d.sha != current.sha));
        let (Some(current), Some(previous)) = (current, previous) else {
            return Ok(reply::nothing_to_roll_back_to(
                &target.app_name,
                &target.environment,
            ));
        };
        self.say(
            thread,
            &reply::rolling_back(
                &target.app_name,
                &target.environment,
                &current.git_ref,
                &previous.git_ref,
            ),
        )
        .await;
        let git_ref = previous.git_ref.clone();
        if !overridden.is_empty() {
            self.say(thread, &reply::overriding(&overridden, &inbound.user))
                .await;
        }
        if target.app.lock_on_failure {
            self.lock_for_incident(&target, &inbound.user, thread).await;
        }
        if target.app.approvals.contains_key(&target.environment) {
            let command = crate::command::DeployCommand {
                task: Task::deploy(),
                force,
                app: target.app_name.clone(),
                git_ref: Some(git_ref.clone()),
                environment: Some(target.environment.clone()),
                hosts: None,
                otp: None,
            };
            return Ok(self
                .request_approval(
                    &target,
                    &git_ref,
                    Some(&previous.sha),
                    &command,
                    inbound,
                    thread,
                )
                .await);
        }
        Ok(self
            .create(
                &target,
                &git_ref,
                Some(&previous.sha),
                &Task::deploy(),
                force,
                None,
                !overridden.is_empty(),
                None,
                inbound,
                thread,
            )
            .await)
    }
}

impl<O: ChatOutput> Bot<O> {
    /// `lock_on_failure`: a rollback locks the environment for the person rolling back, so nobody
    /// deploys on top of the incident (said in the thread).
    async fn lock_for_incident(
        &self,
        target: &crate::policy::Target<'_>,
        user: &str,
        thread: &Thread,
    ) {
        let reason = "rolled back: an incident is being handled";
        match self
            .store
            .lock(
                &target.app_name,
                &target.environment,
                user,
                Some(reason),
                self.clock.now(),
                None,
                false,
            )
            .await
        {
            Ok(Ok((lock, _))) => {
                self.say(thread, &reply::locked_for_incident(&lock)).await;
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::error!("cannot lock after a rollback: {e}"),
        }
    }
}
