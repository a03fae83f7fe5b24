//! `deploys <app>[/<ref>] [in <env>]` and `where can i deploy <app>`.

use super::Bot;
use crate::chat::ChatOutput;
use crate::domain::{AppName, Environment, GitRef};
use crate::policy::{self, Denial};
use crate::reply;

impl<O: ChatOutput> Bot<O> {
    pub(super) async fn deploys(
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
                        // A ref, or (7 to 40 hex digits) the start of a sha.
                        let text = git_ref.as_str();
                        let sha_prefix = (7..=40).contains(&text.len())
                            && text.chars().all(|c| c.is_ascii_hexdigit());
                        rows.retain(|r| {
                            r.git_ref == text
                                || (sha_prefix && r.sha.starts_with(&text.to_ascii_lowercase()))
                        });
                    }
                    reply::deploys_table(&name, environment.as_ref(), git_ref, &rows)
                }
                Err(e) => reply::deployments_unlisted(&name, &e),
            },
        )
    }

    pub(super) async fn where_(&self, app: &AppName) -> Result<String, Denial> {
        let (name, app_config) = policy::app(&self.config, app)?;
        let locks: Vec<_> = match self.store.locks().await {
            Ok(locks) => locks.into_iter().filter(|l| l.app == name).collect(),
            Err(e) => {
                tracing::error!("cannot read locks: {e}");
                return Err(Denial::LocksUnreadable);
            }
        };
        Ok(reply::environments(&name, &app_config.environments, &locks))
    }
}
