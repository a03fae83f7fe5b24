//! GitHub through octocrab: deployment statuses and gists, with retries where retrying makes sense.
//!
//! Only this module names octocrab. Requests that fail on the network or with a 5xx/429 are retried
//! with exponential backoff; a 4xx is reported at once, since asking again will not change the answer.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::repos::DeploymentStatusState;

use super::{
    Created, DeploymentRequest, DeploymentSummary, ForgeError, LogPage, MAX_DESCRIPTION, Refused,
    StatusState, StatusUpdate, truncate,
};
use crate::config::GithubConfig;
use crate::domain::{DeploymentId, Environment, Repository, Sha};
use crate::secret::Secret;

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

/// Acts as a GitHub App installation: octocrab signs a JWT with the App's key and refreshes the
/// installation token itself.
fn installation_client(
    api_url: &str,
    app: &crate::config::GithubApp,
) -> Result<Octocrab, ForgeError> {
    let pem = std::fs::read(&app.private_key_path).map_err(|e| {
        ForgeError::Config(format!(
            "cannot read {}: {e}",
            app.private_key_path.display()
        ))
    })?;
    let key = octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
        ForgeError::Config(format!(
            "{} is not an RSA private key: {e}",
            app.private_key_path.display()
        ))
    })?;
    let app_client = Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| ForgeError::Config(format!("api_url `{api_url}`: {e}")))?
        .app(octocrab::models::AppId(app.app_id), key)
        .build()
        .map_err(|e| ForgeError::Config(e.to_string()))?;
    app_client
        .installation(octocrab::models::InstallationId(app.installation_id))
        .map_err(|e| ForgeError::Config(e.to_string()))
}

/// A GitHub client for one installation of zbot.
#[derive(Clone, Debug)]
pub struct GitHub {
    api: Octocrab,
    gists: Octocrab,
}

impl GitHub {
    /// A client with `[github] token`, or acting as the configured GitHub App installation. Gists go
    /// through `gist_token` (an App cannot write gists), else `token`; with neither, gist requests fail
    /// and deploy logs are linked to zbot's own log page.
    pub fn new(config: &GithubConfig) -> Result<GitHub, ForgeError> {
        let api = match (&config.token, &config.app) {
            (Some(token), _) => client(&config.api_url, token)?,
            (None, Some(app)) => installation_client(&config.api_url, app)?,
            (None, None) => {
                return Err(ForgeError::Config(
                    "set [github] token or a GitHub App".into(),
                ));
            }
        };
        let gists = match config.gist_token.as_ref().or(config.token.as_ref()) {
            Some(token) => client(&config.api_url, token)?,
            None => api.clone(),
        };
        Ok(GitHub { api, gists })
    }

    /// Posts a deployment status on `repository` (`owner/name`).
    pub async fn post_status(
        &self,
        repository: &Repository,
        deployment_id: DeploymentId,
        update: &StatusUpdate,
    ) -> Result<(), ForgeError> {
        let (owner, name) = repository.parts();
        let deployment_id = deployment_id.0;
        let state = match update.state {
            StatusState::Pending => DeploymentStatusState::Pending,
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

fn refusal(status: u16, body: &serde_json::Value) -> Refused {
    let message = body
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    match status {
        401 => Refused::Unauthorized(message),
        404 => Refused::NotFound,
        409 => {
            let contexts: Vec<(String, String)> = body
                .pointer("/errors/0/contexts")
                .and_then(|c| c.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|c| {
                            Some((
                                c.get("context")?.as_str()?.to_string(),
                                c.get("state")?.as_str()?.to_string(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if contexts.is_empty() && !message.contains("status") {
                Refused::MergeConflict(message)
            } else {
                Refused::FailedContexts { contexts }
            }
        }
        422 => {
            let details: Vec<String> = body
                .get("errors")
                .and_then(|e| e.as_array())
                .map(|list| {
                    list.iter()
                        .map(|e| {
                            e.get("message")
                                .and_then(|m| m.as_str())
                                .map_or_else(|| e.to_string(), str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Refused::Validation(if details.is_empty() {
                message
            } else {
                format!("{message}: {}", details.join("; "))
            })
        }
        _ => Refused::Other { status, message },
    }
}

/// A status state as GitHub writes it on the wire.
fn wire_name(state: &DeploymentStatusState) -> &'static str {
    match state {
        DeploymentStatusState::Error => "error",
        DeploymentStatusState::Failure => "failure",
        DeploymentStatusState::Inactive => "inactive",
        DeploymentStatusState::InProgress => "in_progress",
        DeploymentStatusState::Queued => "queued",
        DeploymentStatusState::Pending => "pending",
        DeploymentStatusState::Success => "success",
    }
}

impl GitHub {
    /// Creates a deployment and reports GitHub's answer as a value.
    pub async fn create_deployment(
        &self,
        repository: &Repository,
        request: &DeploymentRequest,
    ) -> Result<Created, Refused> {
        let route = format!("/repos/{repository}/deployments");
        let answer = with_retries("creating a deployment", || async {
            let response = self
                .api
                ._post(route.as_str(), Some(request))
                .await
                .map_err(ForgeError::from)?;
            let status = response.status().as_u16();
            let text = self
                .api
                .body_to_string(response)
                .await
                .map_err(ForgeError::from)?;
            if status >= 500 || status == 429 {
                return Err(ForgeError::Api {
                    status,
                    message: text,
                });
            }
            Ok((status, text))
        })
        .await;
        let (status, text) = answer.map_err(|e| Refused::Unreachable(e.to_string()))?;
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match status {
            201 => {
                let id = body.get("id").and_then(|v| v.as_u64());
                let sha = body
                    .get("sha")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<Sha>().ok());
                match (id, sha) {
                    (Some(id), Some(sha)) => Ok(Created::Deployment {
                        id: DeploymentId(id),
                        sha,
                    }),
                    _ => Err(Refused::Other {
                        status,
                        message: "GitHub's answer had no deployment id or sha".into(),
                    }),
                }
            }
            202 => Ok(Created::Merged {
                message: body
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => Err(refusal(status, &body)),
        }
    }

    /// The latest deployments of a repository (optionally in one environment), newest first, with
    /// their latest status.
    pub async fn recent_deployments(
        &self,
        repository: &Repository,
        environment: Option<&Environment>,
        count: u8,
    ) -> Result<Vec<DeploymentSummary>, ForgeError> {
        let (owner, name) = repository.parts();
        let repo = self.api.repos(owner, name);
        let deployments = repo.deployments();
        let mut list = deployments.list().per_page(count);
        if let Some(env) = environment {
            list = list.environment(env.as_str());
        }
        let page = list.send().await?;
        let mut rows = Vec::new();
        for d in page.items {
            let id = d.id.into_inner();
            let state = deployments
                .statuses(id)
                .list()
                .per_page(1)
                .send()
                .await
                .ok()
                .and_then(|p| p.items.into_iter().next())
                .map_or_else(
                    || "pending".to_string(),
                    |s| wire_name(&s.state).to_string(),
                );
            let who = d
                .payload
                .pointer("/notify/user_name")
                .or_else(|| d.payload.pointer("/notify/user"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or_else(|| d.creator.as_ref().map(|c| c.login.clone()))
                .unwrap_or_else(|| "unknown".into());
            rows.push(DeploymentSummary {
                id: DeploymentId(id),
                task: d.task,
                git_ref: d.ref_field,
                sha: d.sha,
                environment: d.environment,
                who,
                created_at: d.created_at.format("%Y-%m-%d %H:%M").to_string(),
                state,
            });
        }
        Ok(rows)
    }
}

impl GitHub {
    /// Whether the token can see `repository` (`GET /repos/{owner}/{repo}`); the reason if not.
    pub async fn check_access(&self, repository: &Repository) -> Result<(), String> {
        let response = self
            .api
            ._get(format!("/repos/{repository}"))
            .await
            .map_err(|e| format!("cannot reach GitHub: {e}"))?;
        match response.status().as_u16() {
            200 => Ok(()),
            401 => Err("GitHub rejected the token (401): check [github] token".into()),
            403 | 404 => Err(format!(
                "the token cannot see {repository}: give it access to the repository (and Deployments: write)"
            )),
            status => Err(format!("GitHub answered {status}")),
        }
    }
}
