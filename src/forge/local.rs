//! The embedded forge for `zbot shell`: deployments are numbered and stored in zbot's own SQLite store,
//! statuses live in that store too, and logs stay on disk. Refs are resolved with `git ls-remote`
//! against the app's clone URL, as GitHub would resolve them against the repository.

use std::process::Stdio;

use tokio::process::Command;

use super::{Created, DeploymentRequest, DeploymentSummary, Refused};
use crate::config::AppConfig;
use crate::domain::{AppName, DeploymentId, Environment, GitRef, Sha};
use crate::store::{NewDeployment, Store};

#[derive(Clone, Debug)]
pub struct LocalForge {
    pub store: Store,
}

/// The commit `git_ref` names in the repository at `url` (a full sha names itself; else a peeled tag,
/// a branch or a tag).
async fn resolve(url: &str, git_ref: &GitRef) -> Result<Sha, Refused> {
    if let Ok(sha) = git_ref.as_str().parse::<Sha>() {
        return Ok(sha);
    }
    let peeled = format!("refs/tags/{git_ref}^{{}}");
    let output = Command::new("git")
        .args(["ls-remote", "--", url, git_ref.as_str(), &peeled])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Refused::Unreachable(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        return Err(Refused::Unreachable(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
    let wanted = [
        peeled,
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}"),
    ];
    wanted
        .iter()
        .find_map(|name| {
            lines
                .iter()
                .find(|(_, n)| n == name)
                .and_then(|(sha, _)| sha.parse::<Sha>().ok())
        })
        .ok_or_else(|| Refused::Validation(format!("No ref found for: {git_ref}")))
}

impl LocalForge {
    pub async fn create_deployment(
        &self,
        app_name: &AppName,
        app: &AppConfig,
        request: &DeploymentRequest,
        actor: &str,
    ) -> Result<Created, Refused> {
        let url = app.clone_url.as_deref().ok_or_else(|| {
            Refused::Validation(format!(
                "[apps.{app_name}] needs a clone_url to deploy without GitHub"
            ))
        })?;
        let sha = resolve(url, &request.git_ref).await?;
        let deployment = NewDeployment {
            deployment_id: DeploymentId::default(),
            app: app_name.clone(),
            repository: app.repository.clone(),
            clone_url: url.to_string(),
            environment: request.environment.clone(),
            git_ref: request.git_ref.clone(),
            sha: sha.clone(),
            task: request.task.clone(),
            payload: request.payload.clone(),
            actor: actor.to_string(),
        };
        let id = self
            .store
            .accept_local(deployment)
            .await
            .map_err(|e| Refused::Unreachable(e.to_string()))?;
        Ok(Created::Deployment { id, sha })
    }

    pub async fn recent_deployments(
        &self,
        app_name: &AppName,
        environment: Option<&Environment>,
        count: u8,
    ) -> Result<Vec<DeploymentSummary>, String> {
        let rows = self
            .store
            .recent(app_name, environment, i64::from(count))
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|d| DeploymentSummary {
                id: d.deployment_id,
                task: d.task.to_string(),
                git_ref: d.git_ref.to_string(),
                sha: d.sha.to_string(),
                environment: d.environment.to_string(),
                who: d.actor,
                created_at: d.created_at.format("%Y-%m-%d %H:%M").to_string(),
                state: d.state.as_str().to_string(),
            })
            .collect())
    }
}
