//! The forge: where deployments, their statuses and their logs are kept — GitHub ([`github`]), or
//! zbot's own store and log files for `zbot shell` ([`local`]). [`Forge`] is what the rest of zbot
//! calls, so no other module names octocrab.

pub mod github;
pub mod local;

use std::time::Duration;

use crate::config::{AppConfig, HumanDuration};
use crate::domain::{AppName, DeploymentId, Environment, GitRef, Repository, Sha, Task};
use crate::secret::Secret;
use github::GitHub;
use local::LocalForge;

/// Why a call to GitHub failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// GitHub answered, and not with success.
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    /// No answer: the connection failed or broke, also after retrying.
    #[error("cannot reach GitHub: {0}")]
    Network(String),
    /// No answer within `[github] timeout` (`after`), retries included.
    #[error("GitHub did not answer within {}", HumanDuration(*after))]
    Timeout { after: Duration },
    #[error("GitHub is not configured: {0}")]
    Config(String),
}

/// A deployment to create (`POST /repos/{owner}/{repo}/deployments`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentRequest {
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
    pub task: Task,
    pub environment: Environment,
    pub description: String,
    pub production_environment: bool,
    /// GitHub's `transient_environment`: a dry run's deployment, which no later deployment makes
    /// inactive and which never stands for what is live.
    pub transient_environment: bool,
    /// `None`: GitHub's default, every context must pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_contexts: Option<Vec<String>>,
    pub auto_merge: bool,
    pub payload: serde_json::Value,
}

/// What GitHub did with a deployment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// 201: a deployment exists and its webhook is on the way.
    Deployment { id: DeploymentId, sha: Sha },
    /// 202: GitHub merged the default branch into the ref instead of deploying.
    Merged { message: String },
}

/// Why GitHub refused a deployment, in terms a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("required commit status contexts did not pass")]
    FailedContexts { contexts: Vec<(String, String)> },
    #[error("merge conflict: {0}")]
    MergeConflict(String),
    #[error("validation failed: {0}")]
    Validation(String),
    #[error("not found")]
    NotFound,
    #[error("bad credentials: {0}")]
    Unauthorized(String),
    #[error("GitHub answered {status}: {message}")]
    Other { status: u16, message: String },
    #[error("{0}")]
    Unreachable(String),
    /// The request's answer was lost and GitHub did not answer the look-up either: whether the
    /// deployment exists is unknown (if it does, its webhook still arrives).
    #[error("{0}")]
    Unanswered(ForgeError),
    /// The embedded forge: neither a branch, a tag nor a commit's sha of the repository.
    #[error("no ref {git_ref} in {repository}")]
    UnknownRef {
        git_ref: GitRef,
        repository: Repository,
    },
    /// The embedded forge: an abbreviated sha that is not the start of exactly one branch's or tag's
    /// commit (`matches` of them), which is all `git ls-remote` can see.
    #[error("{prefix} is the start of {matches} listed commits of {repository}")]
    ShortSha {
        prefix: GitRef,
        repository: Repository,
        matches: usize,
    },
    /// The embedded forge: the app's clone URL could not be read as a git repository (`reason`, git's
    /// own words), e.g. the example repository was not made yet.
    #[error("cannot read the repository at {url}: {reason}")]
    NoRepository { url: String, reason: String },
    /// The embedded forge: its own store failed.
    #[error("the store failed: {0}")]
    Store(String),
    /// The embedded forge: a full sha the repository does not have.
    #[error("no commit {sha} in {repository}")]
    UnknownCommit { sha: Sha, repository: Repository },
}

/// GitHub's REST rate limit for the token: requests per hour, how many are left, and when (Unix
/// seconds) the count resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub remaining: u64,
    pub reset_epoch: i64,
}

/// A poll's listing of a repository's deployments.
#[derive(Debug, Clone)]
pub enum DeploymentListing {
    /// 304: the same as last time (free of rate limit).
    Unchanged { rate: Option<RateLimit> },
    /// The newest deployments, newest first, as GitHub sent them, and the ETag to ask with next.
    Changed {
        etag: Option<String>,
        deployments: Vec<serde_json::Value>,
        rate: Option<RateLimit>,
    },
}

/// One row of `deploys`.
#[derive(Debug, Clone)]
pub struct DeploymentSummary {
    pub id: DeploymentId,
    /// As GitHub has it (shown, escaped; never run).
    pub task: String,
    pub git_ref: String,
    pub sha: String,
    pub environment: String,
    pub who: String,
    /// When the deployment was created; `None` when GitHub's timestamp did not read as RFC 3339.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub state: String,
}

/// The forge zbot works with.
#[derive(Clone, Debug)]
pub enum Forge {
    GitHub(Box<GitHub>),
    Local(LocalForge),
}

impl Forge {
    /// Whether logs are published as pages (gists); the local forge keeps them on disk only.
    pub fn publishes_logs(&self) -> bool {
        matches!(self, Forge::GitHub(_))
    }

    pub async fn post_status(
        &self,
        repository: &Repository,
        deployment_id: DeploymentId,
        update: &StatusUpdate,
    ) -> Result<(), ForgeError> {
        match self {
            Forge::GitHub(github) => github.post_status(repository, deployment_id, update).await,
            // The store already holds the state; nothing else to tell.
            Forge::Local(_) => Ok(()),
        }
    }

    pub async fn create_log(
        &self,
        description: &str,
        file_name: &str,
        content: &str,
    ) -> Result<LogPage, ForgeError> {
        match self {
            Forge::GitHub(github) => github.create_log(description, file_name, content).await,
            Forge::Local(_) => Err(ForgeError::Config(
                "the local forge keeps logs on disk".into(),
            )),
        }
    }

    pub async fn update_log(
        &self,
        page: &LogPage,
        file_name: &str,
        content: &str,
    ) -> Result<(), ForgeError> {
        match self {
            Forge::GitHub(github) => github.update_log(page, file_name, content).await,
            Forge::Local(_) => Ok(()),
        }
    }

    /// A short-lived URL from which anyone may download `repository` at `sha` as a tarball (for Heroku's
    /// builds); it may carry a token, so it is never logged or stored. The embedded forge has none.
    pub async fn archive_url(
        &self,
        repository: &Repository,
        sha: &Sha,
    ) -> Result<SourceUrl, ForgeError> {
        match self {
            Forge::GitHub(github) => github
                .archive_url(repository, sha)
                .await
                .map(|url| SourceUrl(Secret::new(url))),
            Forge::Local(_) => Err(ForgeError::Config(
                "the embedded forge has no archive Heroku could download: deploy to Heroku through GitHub".into(),
            )),
        }
    }

    /// `base...head` compared: by GitHub's compare API, or by the embedded forge in the repository at
    /// `clone_url` (the deployment's).
    pub async fn compare(
        &self,
        repository: &Repository,
        clone_url: &str,
        base: &Sha,
        head: &Sha,
    ) -> Result<Comparison, ForgeError> {
        match self {
            Forge::GitHub(github) => github.compare(repository, base, head).await,
            Forge::Local(_) => local::compare(clone_url, base, head)
                .await
                .map_err(ForgeError::Config),
        }
    }

    /// Creates a deployment of `app` for `actor`.
    pub async fn create_deployment(
        &self,
        app_name: &AppName,
        app: &AppConfig,
        request: &DeploymentRequest,
        actor: &str,
    ) -> Result<Created, Refused> {
        match self {
            Forge::GitHub(github) => github.create_deployment(&app.repository, request).await,
            Forge::Local(local) => local.create_deployment(app_name, app, request, actor).await,
        }
    }

    /// The commit `git_ref` names in `app`'s repository now (what an approval is for).
    pub async fn resolve(
        &self,
        app_name: &AppName,
        app: &AppConfig,
        git_ref: &GitRef,
    ) -> Result<Sha, Refused> {
        match self {
            Forge::GitHub(github) => github.resolve_ref(&app.repository, git_ref).await,
            Forge::Local(local) => local.resolve(app_name, app, git_ref).await,
        }
    }

    /// The statuses and check runs of `sha` (auto-deploy); the embedded forge has no CI.
    pub async fn checks(&self, app: &AppConfig, sha: &Sha) -> Result<Checks, ForgeError> {
        match self {
            Forge::GitHub(github) => github.checks(&app.repository, sha).await,
            Forge::Local(_) => Ok(Checks::default()),
        }
    }

    pub async fn recent_deployments(
        &self,
        app_name: &AppName,
        app: &AppConfig,
        environment: Option<&Environment>,
        count: u8,
    ) -> Result<Vec<DeploymentSummary>, String> {
        match self {
            Forge::GitHub(github) => github
                .recent_deployments(&app.repository, environment, count)
                .await
                .map_err(|e| e.to_string()),
            Forge::Local(local) => local.recent_deployments(app_name, environment, count).await,
        }
    }
}

/// How many of a comparison's commit messages are shown (their first lines).
pub const SHOWN_COMMITS: usize = 5;

/// Two commits compared (GitHub's compare API, `GET /repos/{owner}/{repo}/compare/{base}...{head}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Commits in head that base lacks.
    pub ahead_by: u64,
    /// Commits in base that head lacks.
    pub behind_by: u64,
    /// The page showing the comparison.
    pub url: String,
    /// Head's commits that base lacks, oldest first: their authors' logins (when GitHub knows them)
    /// and their messages' first lines.
    pub commits: Vec<(Option<String>, String)>,
}

/// What a deploy shipped, compared with the last successful deploy of its app to its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// No earlier successful deploy there.
    First,
    /// The same commit again.
    Same,
    /// New commits since the last deploy.
    Since(Comparison),
    /// The last deploy's commits that this one took back (a rollback): `ahead_by` of them.
    TookBack(Comparison),
}

pub use crate::domain::{CheckState, Checks};

/// A deployment status as GitHub knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    /// Created, not yet seen by the deployer (zbot publishes this itself; GitHub's own is `pending`).
    Pending,
    Queued,
    InProgress,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StatusState::Success | StatusState::Failure | StatusState::Error
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Queued => "queued",
            StatusState::InProgress => "in_progress",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// One status to post on a deployment.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub state: StatusState,
    /// Cut to GitHub's 140 characters by the forge.
    pub description: String,
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
    /// A dry run's status: it does not make the environment's earlier deployments inactive (GitHub's
    /// `auto_inactive`, on by default, would on success).
    pub dry_run: bool,
}

/// A published log (a gist): its id to update it, and the page people open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub id: String,
    pub url: String,
}

/// GitHub's limit on a status description.
pub const MAX_DESCRIPTION: usize = 140;

/// `text` cut to at most `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A source archive's URL ([`Forge::archive_url`]): it may carry a token in its query, so it is a
/// secret, shown only to the API that downloads it.
#[derive(Clone)]
pub struct SourceUrl(Secret);

impl SourceUrl {
    /// The URL itself, for the one request that hands it on.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// What must not show anywhere: the whole URL, and each value of its query (a token may be
    /// echoed alone, or the URL percent-decoded around it).
    pub fn secrets(&self) -> Vec<Secret> {
        let url = self.0.expose();
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        std::iter::once(Secret::new(url))
            .chain(
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('=').map(|(_, v)| v))
                    .filter(|v| !v.is_empty())
                    .map(Secret::new),
            )
            .collect()
    }
}

impl std::fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceUrl(***)")
    }
}
