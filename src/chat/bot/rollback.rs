//! `rollback <app> [in <env>]`: deploy the ref of the previous successful deploy again.

use super::{Bot, Thread};
use crate::chat::{ChatOutput, Inbound};
use crate::domain::{AppName, Environment, Task};
use crate::policy::Denial;
use crate::reply;
use crate::store::DeploymentState;

impl<O: ChatOutput> Bot<O> {
    pub(super) async fn rollback(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        inbound: &Inbound,
        thread: &Thread,
    ) -> Result<String, Denial> {
        let target = self.checked_target(app, environment, inbound).await?;
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
