//! `cancel <app> [in <env>]` and `cancel #<id>`: stop a queued or running deploy.

use super::Bot;
use crate::chat::{ChatOutput, Inbound};
use crate::command::CancelTarget;
use crate::policy::{self, Denial};
use crate::reply;
use crate::scheduler::Cancelled;

impl<O: ChatOutput> Bot<O> {
    pub(super) async fn cancel(
        &self,
        target: CancelTarget,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
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
                    Ok(_) => {
                        return Ok(reply::nothing_to_cancel(
                            &target.app_name,
                            &target.environment,
                        ));
                    }
                    Err(e) => {
                        tracing::error!("cannot read the queue: {e}");
                        return Ok(reply::store_unavailable());
                    }
                }
            }
        };
        // Who may deploy there may stop a deploy there: the same channel and user rules (a lock does
        // not stop a cancel).
        match self.store.get(id).await {
            Ok(Some(d)) => {
                if let Ok(target) = policy::target(&self.config, &d.app, Some(&d.environment)) {
                    policy::may_deploy(
                        &target,
                        &inbound.user,
                        &inbound.channel,
                        inbound.channel_name.as_deref(),
                        Ok(None),
                        self.config.bot.time_zone,
                    )?;
                }
            }
            Ok(None) => return Ok(reply::not_cancellable(id)),
            Err(e) => {
                tracing::error!("cannot read a deployment: {e}");
                return Ok(reply::store_unavailable());
            }
        }
        let who = inbound.user_name.as_deref().unwrap_or(&inbound.user);
        let cancelled = self.scheduler.cancel(id, &reply::cancelled_by(who)).await;
        Ok(match cancelled {
            Cancelled::Queued => reply::cancelled_queued(id),
            Cancelled::Running => reply::cancelled_running(id),
            Cancelled::NotActive => reply::not_cancellable(id),
        })
    }
}
