//! The embedded forge for `zbot shell`: deployments are numbered and stored in zbot's own SQLite store,
//! statuses live in that store too, and logs stay on disk. Refs are resolved against the app's clone
//! URL before the deployment is created, as GitHub resolves them against the repository: branches,
//! tags and abbreviated shas with `git ls-remote`, a full sha by fetching that commit alone.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::process::Command;

use super::{Comparison, Created, DeploymentRequest, DeploymentSummary, Refused};
use crate::config::AppConfig;
use crate::domain::{AppName, DeploymentId, Environment, GitRef, Repository, Sha};
use crate::store::{NewDeployment, Store};

#[derive(Clone, Debug)]
pub struct LocalForge {
    pub store: Store,
}

/// The shortest abbreviated sha git itself accepts.
const MIN_ABBREVIATION: usize = 4;

/// How long one git call of the embedded forge may take (it lists refs or fetches one commit).
const GIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs git with `args` (no prompt for credentials) for at most [`GIT_LIMIT`]; its stdout, or why it
/// failed (its stderr).
async fn git(args: &[&str]) -> Result<String, String> {
    let run = Command::new("git")
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(GIT_LIMIT, run)
        .await
        .map_err(|_| format!("git did not finish within {}s", GIT_LIMIT.as_secs()))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// The commit `git_ref` names in the repository at `url`, as GitHub resolves a deployment's ref: a
/// branch or tag of that name (a tag peeled to its commit), else a full sha the repository has, else an
/// abbreviated sha of exactly one branch's or tag's commit. `git ls-remote` lists only those refs, so an
/// abbreviation of an older commit cannot be resolved and is refused with that said; a full sha that is
/// no ref's is looked for by fetching that one commit (no trees, no blobs) into a scratch repository.
async fn resolve(url: &str, repository: &Repository, git_ref: &GitRef) -> Result<Sha, Refused> {
    let listing = git(&["ls-remote", "--heads", "--tags", "--", url])
        .await
        .map_err(|reason| Refused::NoRepository {
            url: url.to_string(),
            reason,
        })?;
    let refs: Vec<(Sha, &str)> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter_map(|(sha, name)| Some((sha.parse().ok()?, name)))
        .collect();
    let named = [
        format!("refs/tags/{git_ref}^{{}}"),
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}"),
    ];
    if let Some(sha) = named
        .iter()
        .find_map(|wanted| refs.iter().find(|(_, name)| name == wanted))
        .map(|(sha, _)| sha.clone())
    {
        return Ok(sha);
    }
    if let Ok(sha) = git_ref.as_str().parse::<Sha>() {
        if refs.iter().any(|(listed, _)| *listed == sha) || has_commit(url, &sha).await {
            return Ok(sha);
        }
        return Err(Refused::UnknownCommit {
            sha,
            repository: repository.clone(),
        });
    }
    let typed = git_ref.as_str();
    if typed.len() >= MIN_ABBREVIATION && typed.chars().all(|c| c.is_ascii_hexdigit()) {
        let prefix = typed.to_ascii_lowercase();
        let mut matching: Vec<&Sha> = refs
            .iter()
            .map(|(sha, _)| sha)
            .filter(|sha| sha.as_str().starts_with(&prefix))
            .collect();
        matching.sort_by_key(|sha| sha.as_str());
        matching.dedup();
        return match matching.as_slice() {
            [sha] => Ok((*sha).clone()),
            _ => Err(Refused::ShortSha {
                prefix: git_ref.clone(),
                repository: repository.clone(),
                matches: matching.len(),
            }),
        };
    }
    Err(Refused::UnknownRef {
        git_ref: git_ref.clone(),
        repository: repository.clone(),
    })
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    /// A fresh path under the temporary directory, named for `purpose`; not created.
    fn new(purpose: &str) -> Scratch {
        static SCRATCH: AtomicU64 = AtomicU64::new(0);
        Scratch(std::env::temp_dir().join(format!(
            "zbot-{purpose}-{}-{}",
            std::process::id(),
            SCRATCH.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

/// `base...head` in the repository at `url`, counted as GitHub's compare API counts them: the commits
/// head has that base lacks (their authors' names and messages' first lines, the last
/// [`SHOWN_COMMITS`](super::SHOWN_COMMITS), oldest first) and how many base has that head lacks. Both
/// commits are fetched (no blobs) into a scratch bare repository. There is no page to link to: the URL
/// is empty.
pub async fn compare(url: &str, base: &Sha, head: &Sha) -> Result<Comparison, String> {
    let scratch = Scratch::new("compare");
    let dir = scratch.0.display().to_string();
    git(&["init", "--quiet", "--bare", &dir]).await?;
    git(&[
        "-C",
        &dir,
        "fetch",
        "--quiet",
        "--no-tags",
        "--filter=blob:none",
        "--",
        url,
        base.as_str(),
        head.as_str(),
    ])
    .await?;
    let count = |range: String| {
        let dir = dir.clone();
        async move {
            git(&["-C", &dir, "rev-list", "--count", &range])
                .await?
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("git rev-list --count: {e}"))
        }
    };
    let ahead_by = count(format!("{base}..{head}")).await?;
    let behind_by = count(format!("{head}..{base}")).await?;
    let log = git(&[
        "-C",
        &dir,
        "log",
        "--reverse",
        "--format=%an%x09%s",
        &format!("{base}..{head}"),
    ])
    .await?;
    let lines: Vec<&str> = log.lines().collect();
    let skip = lines.len().saturating_sub(super::SHOWN_COMMITS);
    Ok(Comparison {
        ahead_by,
        behind_by,
        url: String::new(),
        commits: lines
            .into_iter()
            .skip(skip)
            .map(|line| match line.split_once('\t') {
                Some((author, subject)) => (Some(author.to_string()), subject.to_string()),
                None => (None, line.to_string()),
            })
            .collect(),
    })
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the repository at `url` has commit `sha`: fetched alone (depth 1, no trees) into a scratch
/// bare repository, as `git ls-remote` cannot say. A failure to fetch counts as not having it; the
/// listing before it showed the repository is reachable.
async fn has_commit(url: &str, sha: &Sha) -> bool {
    let scratch = Scratch::new("commit-check");
    let dir = scratch.0.display().to_string();
    let fetched = async {
        git(&["init", "--quiet", "--bare", &dir]).await?;
        git(&[
            "-C",
            &dir,
            "fetch",
            "--quiet",
            "--no-tags",
            "--depth=1",
            "--filter=tree:0",
            "--",
            url,
            sha.as_str(),
        ])
        .await
    };
    match fetched.await {
        Ok(_) => true,
        Err(why) => {
            tracing::info!(%sha, "commit not found by fetching it: {why}");
            false
        }
    }
}

/// Where the embedded forge fetches `app` from: its `clone_url`, which it needs.
fn clone_url<'a>(app_name: &AppName, app: &'a AppConfig) -> Result<&'a str, Refused> {
    app.clone_url.as_deref().ok_or_else(|| {
        Refused::Validation(format!(
            "[apps.{app_name}] needs a clone_url to deploy from the shell"
        ))
    })
}

impl LocalForge {
    /// The commit `git_ref` names in the app's repository.
    pub async fn resolve(
        &self,
        app_name: &AppName,
        app: &AppConfig,
        git_ref: &GitRef,
    ) -> Result<Sha, Refused> {
        resolve(clone_url(app_name, app)?, &app.repository, git_ref).await
    }

    pub async fn create_deployment(
        &self,
        app_name: &AppName,
        app: &AppConfig,
        request: &DeploymentRequest,
        actor: &str,
    ) -> Result<Created, Refused> {
        let url = clone_url(app_name, app)?;
        let sha = resolve(url, &app.repository, &request.git_ref).await?;
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
            .map_err(|e| Refused::Store(e.to_string()))?;
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
                created_at: Some(d.created_at),
                state: d.state.as_str().to_string(),
            })
            .collect())
    }
}
