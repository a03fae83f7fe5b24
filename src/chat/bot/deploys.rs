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
                    // Who a deployment is for, as zbot recorded it (a grant's chat user, or
                    // `github:<creator>`), over what the listing's payload claims.
                    for row in &mut rows {
                        if let Ok(Some(d)) = self.store.get(row.id).await {
                            row.who = d.actor;
                        }
                    }
                    let approvals = self.approvals_of(&rows).await;
                    reply::deploys_table(
                        &name,
                        environment.as_ref(),
                        git_ref,
                        &rows,
                        &approvals,
                        self.clock.now(),
                        self.config.bot.time_zone,
                    )
                }
                Err(e) => reply::deployments_unlisted(&name, &e),
            },
        )
    }

    /// Who approved which of these deployments, and when.
    async fn approvals_of(&self, rows: &[crate::forge::DeploymentSummary]) -> Vec<reply::Approved> {
        let ids: Vec<_> = rows.iter().map(|r| r.id).collect();
        let requests = match self.store.approvals_of(&ids).await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!("cannot read approvals: {e}");
                return Vec::new();
            }
        };
        let mut approved = Vec::new();
        for request in requests {
            let Some(id) = request.deployment_id else {
                continue;
            };
            if let Ok(by) = self
                .store
                .approvers_of(request.id, &request.request.sha)
                .await
            {
                approved.push((id, by));
            }
        }
        approved
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
        let now = self.clock.now();
        let locks: Vec<_> = locks.into_iter().filter(|l| l.holds_at(now)).collect();
        let freezes = match self.store.freezes().await {
            Ok(freezes) => freezes,
            Err(e) => {
                tracing::error!("cannot read freezes: {e}");
                return Err(Denial::FreezesUnreadable);
            }
        };
        let closures: Vec<_> = app_config
            .environments
            .iter()
            .flat_map(|env| {
                policy::guards::closures(
                    now,
                    &name,
                    env,
                    &freezes,
                    &self.config.windows,
                    self.config.bot.time_zone,
                )
            })
            .collect();
        Ok(reply::environments(
            &name,
            &app_config.environments,
            &locks,
            &closures,
            now,
            self.config.bot.time_zone,
        ))
    }
}
