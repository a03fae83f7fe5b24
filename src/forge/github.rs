//! GitHub through octocrab: deployment statuses and gists, with retries where retrying makes sense.
//!
//! Only this module names octocrab. Requests that fail on the network or with a 5xx/429 are retried
//! with exponential backoff; a 4xx is reported at once, since asking again will not change the answer.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::repos::DeploymentStatusState;

use super::{LogPage, MAX_DESCRIPTION, StatusState, StatusUpdate, truncate};
use crate::config::GithubConfig;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot reach GitHub: {0}")]
    Network(String),
    #[error("GitHub is not configured: {0}")]
    Config(String),
}

impl From<octocrab::Error> for ForgeError {
    fn from(e: octocrab::Error) -> Self {
        match e {
            octocrab::Error::GitHub { source, .. } => ForgeError::Api {
                status: source.status_code.as_u16(),
                message: source.message,
            },
            // Display only: octocrab's Debug carries a whole backtrace.
            other => ForgeError::Network(other.to_string()),
        }
    }
}

impl ForgeError {
    fn retryable(&self) -> bool {
        match self {
            ForgeError::Api { status, .. } => *status >= 500 || *status == 429,
            ForgeError::Network(_) => true,
            ForgeError::Config(_) => false,
        }
    }
}

/// How often and how patiently a request is retried.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

async fn with_retries<T, F, Fut>(what: &str, mut request: F) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ForgeError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match request().await {
            Ok(value) => return Ok(value),
            Err(e) if e.retryable() && attempt < ATTEMPTS => {
                tracing::warn!(%e, attempt, "{what} failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn client(api_url: &str, token: &Secret) -> Result<Octocrab, ForgeError> {
    Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| ForgeError::Config(format!("api_url `{api_url}`: {e}")))?
        .personal_token(token.expose().to_string())
        .build()
        .map_err(|e| ForgeError::Config(e.to_string()))
}

/// A GitHub client for one installation of zbot.
#[derive(Clone, Debug)]
pub struct GitHub {
    api: Octocrab,
    gists: Octocrab,
}

impl GitHub {
    pub fn new(config: &GithubConfig) -> Result<GitHub, ForgeError> {
        let token = config
            .token
            .as_ref()
            .ok_or_else(|| ForgeError::Config("[github] token is not set".into()))?;
        let gist_token = config.gist_token.as_ref().unwrap_or(token);
        Ok(GitHub {
            api: client(&config.api_url, token)?,
            gists: client(&config.api_url, gist_token)?,
        })
    }

    /// Posts a deployment status on `repository` (`owner/name`).
    pub async fn post_status(
        &self,
        repository: &str,
        deployment_id: u64,
        update: &StatusUpdate,
    ) -> Result<(), ForgeError> {
        let (owner, name) = repository
            .split_once('/')
            .ok_or_else(|| ForgeError::Config(format!("`{repository}` is not owner/name")))?;
        let state = match update.state {
            StatusState::Queued => DeploymentStatusState::Queued,
            StatusState::InProgress => DeploymentStatusState::InProgress,
            StatusState::Success => DeploymentStatusState::Success,
            StatusState::Failure => DeploymentStatusState::Failure,
            StatusState::Error => DeploymentStatusState::Error,
        };
        let description = truncate(&update.description, MAX_DESCRIPTION);
        with_retries("posting a deployment status", || async {
            let repo = self.api.repos(owner, name);
            let deployments = repo.deployments();
            let statuses = deployments.statuses(deployment_id);
            let mut request = statuses.create(state).description(description.clone());
            if let Some(url) = &update.log_url {
                request = request.log_url(url.clone());
            }
            if let Some(url) = &update.environment_url {
                request = request.environment_url(url.clone());
            }
            request.send().await.map(drop).map_err(ForgeError::from)
        })
        .await
    }

    /// Creates a private gist holding one file.
    pub async fn create_log(
        &self,
        description: &str,
        file_name: &str,
        content: &str,
    ) -> Result<LogPage, ForgeError> {
        with_retries("creating a gist", || async {
            let gist = self
                .gists
                .gists()
                .create()
                .description(description)
                .public(false)
                .file(file_name, content)
                .send()
                .await?;
            Ok(LogPage {
                id: gist.id,
                url: gist.html_url.to_string(),
            })
        })
        .await
    }

    /// Replaces the file's content in a gist.
    pub async fn update_log(
        &self,
        page: &LogPage,
        file_name: &str,
        content: &str,
    ) -> Result<(), ForgeError> {
        with_retries("updating a gist", || async {
            self.gists
                .gists()
                .update(&page.id)
                .file(file_name)
                .with_content(content)
                .send()
                .await
                .map(drop)
                .map_err(ForgeError::from)
        })
        .await
    }
}
