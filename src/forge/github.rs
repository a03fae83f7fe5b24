//! GitHub through octocrab: deployments, their statuses, and gists, each call bounded in time and
//! retried where retrying is safe.
//!
//! Only this module names octocrab, and only as an authenticated HTTP client: every call goes through
//! [`GitHub::call`], which reads the status, the rate-limit headers and the body itself, so that there is
//! one place for the rules below.
//!
//! - **Time.** A connection may take `[github] connect_timeout` to open, and one call, its retries
//!   included, `[github] timeout` as a whole; then it fails with [`ForgeError::Timeout`]. A GitHub that
//!   accepts connections and never answers therefore costs a deploy one timeout per call, never forever.
//! - **Retries, one layer.** octocrab's own retry layer is not compiled in (it retried at once, under
//!   zbot's retries, and replayed `POST`s). A failed connection and a 5xx are tried again with
//!   exponential backoff; a 429, or a 403 that says the rate limit is used up, after the time GitHub
//!   asks for (`Retry-After`, `x-ratelimit-reset`) when that fits in the call's time; any other answer is
//!   reported at once, since asking again will not change it.
//! - **Creating a deployment is not repeated blindly.** Each request carries a random id in its payload
//!   ([`REQUEST_ID`]). When the answer is lost (the connection dropped, the time ran out, a 5xx), zbot
//!   lists the repository's deployments with the same ref, environment and task and takes the one with
//!   that id; only when none exists does it create again. A lost answer that cannot be checked is
//!   [`Refused::Unanswered`], never a second deployment.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    CheckState, Checks, Created, DeploymentListing, DeploymentRequest, DeploymentSummary,
    ForgeError, LogPage, MAX_DESCRIPTION, RateLimit, Refused, StatusUpdate, truncate,
};
use crate::config::{GithubConfig, Timeouts};
use crate::domain::{DeploymentId, Environment, GitRef, Repository, Sha};
use crate::http::{HttpClient, HttpError};
use crate::metrics::{GitHubResult, Metrics};
use crate::secret::Secret;

impl From<octocrab::Error> for ForgeError {
    fn from(e: octocrab::Error) -> Self {
        match e {
            // Only from exchanging a GitHub App's JWT for an installation token.
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
    /// GitHub gave no answer at all (as opposed to a refusal): it cannot be told anything either.
    pub fn is_unanswered(&self) -> bool {
        matches!(self, ForgeError::Network(_) | ForgeError::Timeout { .. })
    }
}

/// How many times one call is tried, at most.
const ATTEMPTS: u32 = 4;
/// The wait before the second try; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The payload key that carries a deployment request's id (32 hex digits), so that a request whose
/// answer was lost can be found again.
pub const REQUEST_ID: &str = "zbot_request";

/// How many deployments are searched for a lost request: it was made moments ago, so it is among the
/// newest with its ref, environment and task.
const LOOKUP_PAGE: u8 = 30;

/// How many of the newest deployments a poll lists (GitHub's default page); when all of them are
/// new, the poll reads further pages, up to [`POLL_MAX_PAGES`] in all.
pub const POLL_PAGE: u8 = 30;

/// How many pages of deployments one poll reads at most (the first, ETag-checked, and older ones
/// while every deployment on a page is new): `POLL_PAGE * POLL_MAX_PAGES` deployments.
pub const POLL_MAX_PAGES: u32 = 5;

/// A random id for one deployment request: 128 bits from the process's randomly keyed hasher.
fn request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    (0..2u8)
        .map(|half| {
            // Each `RandomState` has keys of its own, drawn from the OS once per thread and stepped
            // for every new one, so two ids never share a hasher.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_u8(half);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

/// A request to GitHub: its method and JSON body.
#[derive(Debug, Clone, Copy)]
enum Call<'a> {
    Get,
    /// A conditional `GET`: `If-None-Match` with this ETag; GitHub answers 304 when nothing changed,
    /// and a 304 does not count against the rate limit.
    GetIfNoneMatch(&'a str),
    Post(&'a Value),
    Patch(&'a Value),
}

/// GitHub's answer to one request, whatever its status.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    /// How long GitHub asks zbot to wait, when it refuses for a rate limit.
    rate_limit_wait: Option<Duration>,
    /// The `ETag` header, for the next conditional request.
    etag: Option<String>,
    /// The `x-ratelimit-*` headers.
    rate: Option<RateLimit>,
    body: String,
}

impl Answer {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// `T` from a successful answer's body; any other answer as [`ForgeError::Api`].
    fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, ForgeError> {
        if !self.is_success() {
            return Err(self.into_error());
        }
        serde_json::from_str(&self.body).map_err(|e| ForgeError::Api {
            status: self.status,
            message: format!("an answer zbot cannot read: {e}"),
        })
    }

    /// Nothing from a successful answer; any other as [`ForgeError::Api`].
    fn success(self) -> Result<(), ForgeError> {
        if self.is_success() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    fn into_error(self) -> ForgeError {
        let message = match self.json().get("message").and_then(Value::as_str) {
            Some(message) => message.to_string(),
            None => truncate(self.body.trim(), MAX_DESCRIPTION),
        };
        ForgeError::Api {
            status: self.status,
            message,
        }
    }
}

/// The wait GitHub asks for in a 429, or a 403 whose rate limit is used up; `None` for other answers.
/// Rules: <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>.
fn rate_limit_wait(status: u16, headers: &http::HeaderMap, now_epoch: i64) -> Option<Duration> {
    let number =
        |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if status != 429 && status != 403 {
        return None;
    }
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds.max(0).unsigned_abs()));
    }
    if number("x-ratelimit-remaining") == Some(0) {
        let reset = number("x-ratelimit-reset")?;
        return Some(Duration::from_secs(
            (reset - now_epoch).max(1).unsigned_abs(),
        ));
    }
    // A 429 without headers: GitHub's advice is to wait at least a minute.
    (status == 429).then_some(Duration::from_secs(60))
}

/// The `x-ratelimit-limit`, `-remaining` and `-reset` headers, when GitHub sent all three.
fn rate_limit_headers(headers: &http::HeaderMap) -> Option<RateLimit> {
    let number =
        |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    Some(RateLimit {
        limit: number("x-ratelimit-limit")?.unsigned_abs(),
        remaining: number("x-ratelimit-remaining")?.unsigned_abs(),
        reset_epoch: number("x-ratelimit-reset")?,
    })
}

/// When to try a call again after `outcome` of try number `attempt`; `None`: do not.
fn next_try(outcome: &Result<Answer, ForgeError>, attempt: u32) -> Option<Duration> {
    if attempt >= ATTEMPTS {
        return None;
    }
    match outcome {
        Ok(answer) if answer.rate_limit_wait.is_some() => answer.rate_limit_wait,
        Ok(answer) if answer.status >= 500 => Some(backoff(attempt)),
        Ok(_) => None,
        Err(ForgeError::Network(_)) => Some(backoff(attempt)),
        Err(_) => None,
    }
}

/// The wait after try number `attempt` failed: exponential from [`FIRST_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF * 2u32.pow(attempt.saturating_sub(1))
}

fn client(api_url: &str, token: &Secret, timeouts: Timeouts) -> Result<Octocrab, ForgeError> {
    builder(api_url, timeouts)?
        .personal_token(token.expose().to_string())
        .build()
        .map_err(|e| ForgeError::Config(e.to_string()))
}

type Builder = octocrab::OctocrabBuilder<
    octocrab::NoSvc,
    octocrab::DefaultOctocrabBuilderConfig,
    octocrab::NoAuth,
    octocrab::NotLayerReady,
>;

/// octocrab's builder with the base URL and the connect timeout.
///
/// Its read and write timeouts stay off: hyper-timeout starts the read countdown while a pooled
/// connection sits idle (octocrab does not reset it on write), so a request on a connection that had
/// been idle for nearly that long would fail at once. The whole call is bounded in [`GitHub::call`]
/// instead.
fn builder(api_url: &str, timeouts: Timeouts) -> Result<Builder, ForgeError> {
    Ok(Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| ForgeError::Config(format!("api_url `{api_url}`: {e}")))?
        .set_connect_timeout(Some(timeouts.connect)))
}

/// Acts as a GitHub App installation: octocrab signs a JWT with the App's key and refreshes the
/// installation token itself.
fn installation_client(
    api_url: &str,
    app: &crate::config::GithubApp,
    timeouts: Timeouts,
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
    let app_client = builder(api_url, timeouts)?
        .app(octocrab::models::AppId(app.app_id), key)
        .build()
        .map_err(|e| ForgeError::Config(e.to_string()))?;
    app_client
        .installation(octocrab::models::InstallationId(app.installation_id))
        .map_err(|e| ForgeError::Config(e.to_string()))
}

/// `route?key=value&…`, the values percent-encoded.
fn with_query(route: &str, query: &[(&str, &str)]) -> String {
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (key, value) in query {
        encoded.append_pair(key, value);
    }
    format!("{route}?{}", encoded.finish())
}

/// One request, once: GitHub's answer whatever its status, or why there was none. Not bounded in
/// time here; [`GitHub::call`] and [`GitHub::create_deployment`] bound it.
async fn send(client: &Octocrab, route: &str, call: Call<'_>) -> Result<Answer, ForgeError> {
    let response = match call {
        Call::Get => client._get(route).await,
        Call::GetIfNoneMatch(etag) => {
            let mut headers = http::HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(etag) {
                headers.insert(http::header::IF_NONE_MATCH, value);
            }
            client._get_with_headers(route, Some(headers)).await
        }
        Call::Post(body) => client._post(route, Some(body)).await,
        Call::Patch(body) => client._patch(route, Some(body)).await,
    }?;
    let status = response.status().as_u16();
    let rate_limit_wait =
        rate_limit_wait(status, response.headers(), chrono::Utc::now().timestamp());
    let etag = response
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let rate = rate_limit_headers(response.headers());
    let body = client.body_to_string(response).await?;
    Ok(Answer {
        status,
        rate_limit_wait,
        etag,
        rate,
        body,
    })
}

/// A GitHub client for one installation of zbot.
#[derive(Clone, Debug)]
pub struct GitHub {
    api: Octocrab,
    gists: Octocrab,
    timeouts: Timeouts,
    /// For the one call whose redirect must not be followed (octocrab follows them): the archive.
    archive: Option<Archive>,
    /// Where each try of a request is counted and timed.
    metrics: Arc<Metrics>,
}

/// What asking for a source archive's URL needs: a client that does not follow redirects, the token.
#[derive(Clone, Debug)]
struct Archive {
    client: HttpClient,
    api_url: String,
    token: Secret,
}

impl GitHub {
    /// A client with `[github] token`, or acting as the configured GitHub App installation. Gists go
    /// through `gist_token` (an App cannot write gists), else `token`; with neither, gist requests fail
    /// and deploy logs are linked to zbot's own log page. Each try of a request is counted in `metrics`.
    pub fn new(config: &GithubConfig, metrics: Arc<Metrics>) -> Result<GitHub, ForgeError> {
        let timeouts = config.timeouts;
        let api = match (&config.token, &config.app) {
            (Some(token), _) => client(&config.api_url, token, timeouts)?,
            (None, Some(app)) => installation_client(&config.api_url, app, timeouts)?,
            (None, None) => {
                return Err(ForgeError::Config(
                    "set [github] token or a GitHub App".into(),
                ));
            }
        };
        let gists = match config.gist_token.as_ref().or(config.token.as_ref()) {
            Some(token) => client(&config.api_url, token, timeouts)?,
            None => api.clone(),
        };
        let archive = match &config.token {
            Some(token) => Some(Archive {
                client: HttpClient::new(timeouts.connect, timeouts.request)
                    .map_err(|e| ForgeError::Config(e.to_string()))?,
                api_url: config.api_url.clone(),
                token: token.clone(),
            }),
            None => None,
        };
        Ok(GitHub {
            api,
            gists,
            timeouts,
            archive,
            metrics,
        })
    }

    /// A request with its retries, within `[github] timeout` as a whole. The last answer is returned
    /// whatever its status; an error means there was none.
    async fn call(
        &self,
        what: &str,
        client: &Octocrab,
        route: &str,
        call: Call<'_>,
    ) -> Result<Answer, ForgeError> {
        let limit = self.timeouts.request;
        let deadline = Instant::now() + limit;
        let mut attempt = 1;
        loop {
            let sent = Instant::now();
            let outcome = tokio::time::timeout_at(deadline, send(client, route, call))
                .await
                .unwrap_or(Err(ForgeError::Timeout { after: limit }));
            let result = match &outcome {
                Ok(answer) => GitHubResult::of_status(answer.status),
                Err(ForgeError::Timeout { .. }) => GitHubResult::Timeout,
                Err(_) => GitHubResult::Network,
            };
            self.metrics.github_request(result, sent.elapsed());
            match next_try(&outcome, attempt) {
                // A wait that would end past the deadline is not worth starting.
                Some(wait) if Instant::now() + wait < deadline => {
                    tracing::warn!(
                        attempt,
                        "{what} failed ({}); trying again in {wait:?}",
                        describe(&outcome)
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return outcome,
            }
        }
    }

    /// `T` read from a `GET` of `route` (with its retries); an answer other than success is an error.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
    ) -> Result<T, ForgeError> {
        self.call(what, &self.api, route, Call::Get).await?.parse()
    }

    /// Posts a deployment status on `repository` (`owner/name`).
    pub async fn post_status(
        &self,
        repository: &Repository,
        deployment_id: DeploymentId,
        update: &StatusUpdate,
    ) -> Result<(), ForgeError> {
        let route = format!("/repos/{repository}/deployments/{deployment_id}/statuses");
        let mut body = json!({
            "state": update.state.as_str(),
            "description": truncate(&update.description, MAX_DESCRIPTION),
        });
        if let Some(url) = &update.log_url {
            body["log_url"] = json!(url);
        }
        if let Some(url) = &update.environment_url {
            body["environment_url"] = json!(url);
        }
        if update.dry_run {
            body["auto_inactive"] = json!(false);
        }
        self.call(
            "posting a deployment status",
            &self.api,
            &route,
            Call::Post(&body),
        )
        .await?
        .success()
    }

    /// A short-lived URL of the tarball of `repository` at `sha`, which anyone holding it can download
    /// for a few minutes (GitHub's `GET /repos/{owner}/{repo}/tarball/{ref}` answers a redirect to it;
    /// <https://docs.github.com/en/rest/repos/contents#download-a-repository-archive-tar>). The redirect
    /// is not followed. For a private repository the URL carries a token of its own: it is handed on,
    /// never logged or stored.
    ///
    /// Needs `[github] token`: a GitHub App's installation token is octocrab's, which follows redirects.
    pub async fn archive_url(
        &self,
        repository: &Repository,
        sha: &Sha,
    ) -> Result<String, ForgeError> {
        let Some(archive) = &self.archive else {
            return Err(ForgeError::Config(
                "a source archive for Heroku needs [github] token".into(),
            ));
        };
        let url = format!("{}/repos/{repository}/tarball/{sha}", archive.api_url);
        let authorization = format!("Bearer {}", archive.token.expose());
        let request = HttpClient::request(
            http::Method::GET,
            &url,
            &[
                ("authorization", &authorization),
                ("accept", "application/vnd.github+json"),
                ("x-github-api-version", "2022-11-28"),
            ],
            None,
        )
        .map_err(|e| ForgeError::Config(e.to_string()))?;
        let answer = archive.client.send(request).await.map_err(|e| match e {
            HttpError::Timeout(after) => ForgeError::Timeout { after },
            other => ForgeError::Network(other.to_string()),
        })?;
        let location = answer
            .header("location")
            .filter(|l| l.starts_with("https://") || l.starts_with("http://"));
        match (answer.status, location) {
            (301 | 302 | 303 | 307 | 308, Some(location)) => Ok(location.to_string()),
            (status, _) => {
                let message = match answer.json().get("message").and_then(Value::as_str) {
                    Some(message) => message.to_string(),
                    None => format!("no archive redirect for {sha}"),
                };
                Err(ForgeError::Api { status, message })
            }
        }
    }

    /// `base...head` compared (`GET /repos/{owner}/{repo}/compare/{base}...{head}`), with at most
    /// [`super::SHOWN_COMMITS`] commits kept (the newest).
    pub async fn compare(
        &self,
        repository: &Repository,
        base: &Sha,
        head: &Sha,
    ) -> Result<super::Comparison, ForgeError> {
        #[derive(Deserialize)]
        struct Compared {
            ahead_by: u64,
            behind_by: u64,
            html_url: String,
            #[serde(default)]
            commits: Vec<Commit>,
        }
        #[derive(Deserialize)]
        struct Commit {
            commit: Detail,
            author: Option<Login>,
        }
        #[derive(Deserialize)]
        struct Detail {
            message: String,
        }
        #[derive(Deserialize)]
        struct Login {
            login: String,
        }
        let route = format!("/repos/{repository}/compare/{base}...{head}");
        let compared: Compared = self.get("comparing commits", &route).await?;
        let skip = compared.commits.len().saturating_sub(super::SHOWN_COMMITS);
        Ok(super::Comparison {
            ahead_by: compared.ahead_by,
            behind_by: compared.behind_by,
            url: compared.html_url,
            commits: compared
                .commits
                .into_iter()
                .skip(skip)
                .map(|c| {
                    let first = c
                        .commit
                        .message
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    (c.author.map(|a| a.login), first)
                })
                .collect(),
        })
    }

    /// Creates a private gist holding one file.
    pub async fn create_log(
        &self,
        description: &str,
        file_name: &str,
        content: &str,
    ) -> Result<LogPage, ForgeError> {
        let body = json!({
            "description": description,
            "public": false,
            "files": { file_name: { "content": content } },
        });
        #[derive(Deserialize)]
        struct Gist {
            id: String,
            html_url: String,
        }
        let gist: Gist = self
            .call("creating a gist", &self.gists, "/gists", Call::Post(&body))
            .await?
            .parse()?;
        Ok(LogPage {
            id: gist.id,
            url: gist.html_url,
        })
    }

    /// Replaces the file's content in a gist.
    pub async fn update_log(
        &self,
        page: &LogPage,
        file_name: &str,
        content: &str,
    ) -> Result<(), ForgeError> {
        let body = json!({ "files": { file_name: { "content": content } } });
        let route = format!("/gists/{}", page.id);
        self.call("updating a gist", &self.gists, &route, Call::Patch(&body))
            .await?
            .success()
    }
}

/// An outcome for the log: the status, or the error.
fn describe(outcome: &Result<Answer, ForgeError>) -> String {
    match outcome {
        Ok(answer) => format!("GitHub answered {}", answer.status),
        Err(e) => e.to_string(),
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

impl GitHub {
    /// Creates a deployment and reports GitHub's answer as a value.
    ///
    /// The request carries a fresh id in its payload ([`REQUEST_ID`]); when its answer is lost it is
    /// looked up by that id before it is made again, so one request makes at most one deployment.
    pub async fn create_deployment(
        &self,
        repository: &Repository,
        request: &DeploymentRequest,
    ) -> Result<Created, Refused> {
        let route = format!("/repos/{repository}/deployments");
        let id = request_id();
        let mut request = request.clone();
        let Some(payload) = request.payload.as_object_mut() else {
            return Err(Refused::Validation(
                "the deployment payload is not a JSON object".into(),
            ));
        };
        payload.insert(REQUEST_ID.into(), json!(id));
        let body =
            serde_json::to_value(&request).map_err(|e| Refused::Validation(e.to_string()))?;
        let limit = self.timeouts.request;
        let mut attempt = 1;
        loop {
            let outcome = tokio::time::timeout(limit, send(&self.api, &route, Call::Post(&body)))
                .await
                .unwrap_or(Err(ForgeError::Timeout { after: limit }));
            // GitHub may have made the deployment and the answer never arrived. A request GitHub is
            // still working on when the look-up runs would not be found and be made again; the look-up
            // starts only once the connection broke or `timeout` passed in silence, long after GitHub
            // normally answers.
            let lost = match &outcome {
                Ok(answer) => answer.status >= 500,
                Err(e) => e.is_unanswered(),
            };
            if lost {
                match self.find_request(&route, &request, &id).await {
                    Ok(Some(created)) => {
                        tracing::info!(
                            %repository,
                            "GitHub's answer to a deployment request was lost ({}); found the deployment it made",
                            describe(&outcome)
                        );
                        return Ok(created);
                    }
                    // Nothing was made: asking again cannot make a second one.
                    Ok(None) => {}
                    Err(e) => return Err(Refused::Unanswered(e)),
                }
            }
            let wait = if lost {
                (attempt < ATTEMPTS).then(|| backoff(attempt))
            } else {
                next_try(&outcome, attempt).filter(|wait| *wait <= limit)
            };
            match (wait, outcome) {
                (Some(wait), outcome) => {
                    tracing::warn!(
                        %repository,
                        attempt,
                        "creating a deployment failed ({}); trying again in {wait:?}",
                        describe(&outcome)
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                (None, Ok(answer)) => return created(answer),
                (None, Err(e)) => return Err(Refused::Unreachable(e.to_string())),
            }
        }
    }

    /// The deployment `request` with id `id` made, if GitHub made it: among the newest with its ref,
    /// environment and task.
    async fn find_request(
        &self,
        route: &str,
        request: &DeploymentRequest,
        id: &str,
    ) -> Result<Option<Created>, ForgeError> {
        let route = with_query(
            route,
            &[
                ("ref", request.git_ref.as_str()),
                ("environment", request.environment.as_str()),
                ("task", request.task.as_str()),
                ("per_page", &LOOKUP_PAGE.to_string()),
            ],
        );
        let deployments: Vec<WireDeployment> = self.get("looking up a deployment", &route).await?;
        let Some(found) = deployments
            .into_iter()
            .find(|d| d.payload().get(REQUEST_ID).and_then(Value::as_str) == Some(id))
        else {
            return Ok(None);
        };
        let sha = found.sha.parse::<Sha>().map_err(|e| ForgeError::Api {
            status: 200,
            message: format!("deployment {}: {e}", found.id),
        })?;
        Ok(Some(Created::Deployment {
            id: DeploymentId(found.id),
            sha,
        }))
    }

    /// The latest deployments of a repository (optionally in one environment), newest first, with
    /// their latest status. Once GitHub stops answering, the remaining states are `unknown` rather
    /// than one timeout each.
    pub async fn recent_deployments(
        &self,
        repository: &Repository,
        environment: Option<&Environment>,
        count: u8,
    ) -> Result<Vec<DeploymentSummary>, ForgeError> {
        let repo = format!("/repos/{repository}");
        let count = count.to_string();
        let mut query = vec![("per_page", count.as_str())];
        if let Some(env) = environment {
            query.push(("environment", env.as_str()));
        }
        let route = with_query(&format!("{repo}/deployments"), &query);
        let deployments: Vec<WireDeployment> = self.get("listing deployments", &route).await?;
        let mut answering = true;
        let mut rows = Vec::new();
        for d in deployments {
            let state = if answering {
                match self.latest_state(&repo, d.id).await {
                    Ok(state) => state.as_str(),
                    Err(e) => {
                        tracing::warn!(deployment = d.id, "cannot read the latest status: {e}");
                        answering = !e.is_unanswered();
                        "unknown"
                    }
                }
            } else {
                "unknown"
            };
            // Who GitHub says made it: the payload's user is whatever its writer put there, so a row
            // zbot did not record (refused, made before this store) is its creator's.
            let who = d
                .creator
                .as_ref()
                .map_or_else(|| "unknown".into(), |c| format!("github:{}", c.login));
            let created_at = chrono::DateTime::parse_from_rfc3339(&d.created_at)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc));
            rows.push(DeploymentSummary {
                id: DeploymentId(d.id),
                task: d.task,
                git_ref: d.git_ref,
                sha: d.sha,
                environment: d.environment,
                who,
                created_at,
                state: state.to_string(),
            });
        }
        Ok(rows)
    }

    /// The state of `deployment_id`'s latest status as GitHub names it, or `None` while it is
    /// pending (no status yet, or `pending`): whether someone already took the deployment.
    pub async fn settled_state(
        &self,
        repository: &Repository,
        deployment_id: DeploymentId,
    ) -> Result<Option<WireState>, ForgeError> {
        let state = self
            .latest_state(&format!("/repos/{repository}"), deployment_id.0)
            .await?;
        Ok((state != WireState::Pending).then_some(state))
    }

    /// The state of a deployment's latest status; `pending` before it has any.
    async fn latest_state(&self, repo: &str, deployment_id: u64) -> Result<WireState, ForgeError> {
        let route = with_query(
            &format!("{repo}/deployments/{deployment_id}/statuses"),
            &[("per_page", "1")],
        );
        let statuses: Vec<WireStatus> = self.get("reading a deployment status", &route).await?;
        Ok(statuses
            .first()
            .map_or(WireState::Pending, |status| status.state))
    }

    /// The newest deployments of `repository` (GitHub's default page, newest first), asked with
    /// `If-None-Match: etag` when an ETag from the previous listing is given: a 304 is
    /// [`DeploymentListing::Unchanged`] and costs no rate limit. Deployments are returned as GitHub
    /// sent them; the caller reads them as a `deployment` event's.
    pub async fn poll_deployments(
        &self,
        repository: &Repository,
        etag: Option<&str>,
    ) -> Result<DeploymentListing, ForgeError> {
        let route = with_query(
            &format!("/repos/{repository}/deployments"),
            &[("per_page", &POLL_PAGE.to_string())],
        );
        let call = match etag {
            Some(etag) => Call::GetIfNoneMatch(etag),
            None => Call::Get,
        };
        let answer = self
            .call("polling deployments", &self.api, &route, call)
            .await?;
        if answer.status == 304 {
            return Ok(DeploymentListing::Unchanged { rate: answer.rate });
        }
        let (etag, rate) = (answer.etag.clone(), answer.rate);
        let deployments: Vec<Value> = answer.parse()?;
        Ok(DeploymentListing::Changed {
            etag,
            deployments,
            rate,
        })
    }

    /// Page `page` (1-based, GitHub's `page` query parameter) of `repository`'s deployments,
    /// newest first, [`POLL_PAGE`] a page, without ETag: for a poll that found only new deployments
    /// on the first page.
    pub async fn deployments_page(
        &self,
        repository: &Repository,
        page: u32,
    ) -> Result<Vec<Value>, ForgeError> {
        let route = with_query(
            &format!("/repos/{repository}/deployments"),
            &[
                ("per_page", &POLL_PAGE.to_string()),
                ("page", &page.to_string()),
            ],
        );
        self.get("polling older deployments", &route).await
    }

    /// The token's core REST rate limit (`GET /rate_limit`, which does not count against it).
    pub async fn rate_limit(&self) -> Result<RateLimit, ForgeError> {
        #[derive(Deserialize)]
        struct Wire {
            resources: Resources,
        }
        #[derive(Deserialize)]
        struct Resources {
            core: Core,
        }
        #[derive(Deserialize)]
        struct Core {
            limit: u64,
            remaining: u64,
            reset: i64,
        }
        let wire: Wire = self.get("reading the rate limit", "/rate_limit").await?;
        Ok(RateLimit {
            limit: wire.resources.core.limit,
            remaining: wire.resources.core.remaining,
            reset_epoch: wire.resources.core.reset,
        })
    }

    /// The commit `git_ref` names in `repository` now (`GET /repos/{owner}/{repo}/commits/{ref}`): a
    /// not-found ref is [`Refused::UnknownRef`].
    pub async fn resolve_ref(
        &self,
        repository: &Repository,
        git_ref: &GitRef,
    ) -> Result<Sha, Refused> {
        #[derive(serde::Deserialize)]
        struct Commit {
            sha: String,
        }
        // Each segment percent-encoded; the slashes of a branch name stay.
        let path: Vec<String> = git_ref
            .as_str()
            .split('/')
            .map(|segment| form_urlencoded::byte_serialize(segment.as_bytes()).collect())
            .collect();
        let route = format!("/repos/{repository}/commits/{}", path.join("/"));
        let answer = self
            .call("resolving a ref", &self.api, &route, Call::Get)
            .await
            .map_err(Refused::Unanswered)?;
        match answer.status {
            404 | 422 => Err(Refused::UnknownRef {
                git_ref: git_ref.clone(),
                repository: repository.clone(),
            }),
            _ => {
                let commit: Commit = answer.parse().map_err(Refused::Unanswered)?;
                commit
                    .sha
                    .parse()
                    .map_err(|e: crate::domain::Invalid| Refused::Validation(e.to_string()))
            }
        }
    }

    /// The commit statuses (`GET …/commits/{sha}/status`, the latest per context) and check runs
    /// (`GET …/commits/{sha}/check-runs`) of `sha`.
    pub async fn checks(&self, repository: &Repository, sha: &Sha) -> Result<Checks, ForgeError> {
        #[derive(Deserialize)]
        struct Combined {
            #[serde(default)]
            statuses: Vec<Status>,
        }
        #[derive(Deserialize)]
        struct Status {
            context: String,
            state: String,
        }
        #[derive(Deserialize)]
        struct Runs {
            #[serde(default)]
            check_runs: Vec<Run>,
        }
        #[derive(Deserialize)]
        struct Run {
            name: String,
            status: String,
            conclusion: Option<String>,
        }
        let base = format!("/repos/{repository}/commits/{sha}");
        let combined: Combined = self
            .get("reading commit statuses", &format!("{base}/status"))
            .await?;
        let runs: Runs = self
            .get(
                "reading check runs",
                &with_query(&format!("{base}/check-runs"), &[("per_page", "100")]),
            )
            .await?;
        let mut contexts: Vec<(String, CheckState)> = combined
            .statuses
            .into_iter()
            .map(|s| {
                let state = match s.state.as_str() {
                    "success" => CheckState::Passed,
                    "pending" => CheckState::Pending,
                    _ => CheckState::Failed,
                };
                (s.context, state)
            })
            .collect();
        contexts.extend(runs.check_runs.into_iter().map(|r| {
            let state = match (r.status.as_str(), r.conclusion.as_deref()) {
                ("completed", Some("success" | "neutral" | "skipped")) => CheckState::Passed,
                ("completed", _) => CheckState::Failed,
                _ => CheckState::Pending,
            };
            (r.name, state)
        }));
        Ok(Checks { contexts })
    }

    /// Whether the token can see `repository` (`GET /repos/{owner}/{repo}`); the reason if not.
    pub async fn check_access(&self, repository: &Repository) -> Result<(), String> {
        let route = format!("/repos/{repository}");
        let answer = self
            .call("checking access", &self.api, &route, Call::Get)
            .await
            .map_err(|e| e.to_string())?;
        match answer.status {
            200 => Ok(()),
            401 => Err("GitHub rejected the token (401): check [github] token".into()),
            403 | 404 => Err(format!(
                "the token cannot see {repository}: give it access to the repository (and Deployments: write)"
            )),
            status => Err(format!("GitHub answered {status}")),
        }
    }
}

/// GitHub's answer to a deployment request, as a value.
fn created(answer: Answer) -> Result<Created, Refused> {
    let body = answer.json();
    match answer.status {
        201 => {
            let id = body.get("id").and_then(Value::as_u64);
            let sha = body
                .get("sha")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Sha>().ok());
            match (id, sha) {
                (Some(id), Some(sha)) => Ok(Created::Deployment {
                    id: DeploymentId(id),
                    sha,
                }),
                _ => Err(Refused::Other {
                    status: answer.status,
                    message: "GitHub's answer had no deployment id or sha".into(),
                }),
            }
        }
        202 => Ok(Created::Merged {
            message: body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }),
        status => Err(refusal(status, &body)),
    }
}

/// A deployment as GitHub lists it: the fields zbot reads.
#[derive(Debug, Deserialize)]
struct WireDeployment {
    id: u64,
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    #[serde(default)]
    task: String,
    environment: String,
    #[serde(default)]
    payload: Value,
    creator: Option<WireUser>,
    created_at: String,
}

impl WireDeployment {
    /// The payload as an object: GitHub keeps a payload that was sent as a string as that string.
    fn payload(&self) -> Value {
        match &self.payload {
            Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
            other => other.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireUser {
    login: String,
}

#[derive(Debug, Deserialize)]
struct WireStatus {
    state: WireState,
}

/// A deployment status's state as GitHub writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireState {
    Error,
    Failure,
    Inactive,
    InProgress,
    Queued,
    Pending,
    Success,
    /// A state newer than zbot.
    #[serde(other)]
    Unknown,
}

impl WireState {
    /// The name GitHub uses, which `deploys` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            WireState::Error => "error",
            WireState::Failure => "failure",
            WireState::Inactive => "inactive",
            WireState::InProgress => "in_progress",
            WireState::Queued => "queued",
            WireState::Pending => "pending",
            WireState::Success => "success",
            WireState::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_states_keep_their_wire_names() {
        for name in [
            "error",
            "failure",
            "inactive",
            "in_progress",
            "queued",
            "pending",
            "success",
        ] {
            let state: WireState = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(state.as_str(), name);
        }
        let later: WireState = serde_json::from_value(json!("paused")).unwrap();
        assert_eq!(later, WireState::Unknown);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn rate_limits_say_how_long_to_wait() {
        let now = 1_700_000_000;
        type Headers<'a> = &'a [(&'static str, &'a str)];
        let table: [(u16, Headers<'_>, Option<u64>); 7] = [
            (429, &[("retry-after", "7")], Some(7)),
            (403, &[("retry-after", "7")], Some(7)),
            (
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1700000042"),
                ],
                Some(42),
            ),
            (429, &[], Some(60)),
            // A plain 403 is a refusal, not a rate limit.
            (403, &[], None),
            (403, &[("x-ratelimit-remaining", "12")], None),
            (500, &[("retry-after", "7")], None),
        ];
        for (status, pairs, expected) in table {
            assert_eq!(
                rate_limit_wait(status, &headers(pairs), now),
                expected.map(Duration::from_secs),
                "{status} {pairs:?}"
            );
        }
    }

    fn answer(status: u16, rate_limit_wait: Option<u64>) -> Result<Answer, ForgeError> {
        Ok(Answer {
            status,
            rate_limit_wait: rate_limit_wait.map(Duration::from_secs),
            etag: None,
            rate: None,
            body: String::new(),
        })
    }

    #[test]
    fn only_what_may_change_is_tried_again() {
        let network = || Err(ForgeError::Network("connection refused".into()));
        let timeout = || {
            Err(ForgeError::Timeout {
                after: Duration::from_secs(30),
            })
        };
        let table = [
            (answer(201, None), 1, None),
            (answer(422, None), 1, None),
            (answer(404, None), 1, None),
            (answer(502, None), 1, Some(FIRST_BACKOFF)),
            (answer(502, None), 3, Some(FIRST_BACKOFF * 4)),
            (answer(502, None), ATTEMPTS, None),
            (answer(429, Some(5)), 1, Some(Duration::from_secs(5))),
            (network(), 2, Some(FIRST_BACKOFF * 2)),
            // The time is used up: another try would only make people wait again.
            (timeout(), 1, None),
        ];
        for (outcome, attempt, expected) in table {
            assert_eq!(
                next_try(&outcome, attempt),
                expected,
                "{} on try {attempt}",
                describe(&outcome)
            );
        }
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (request_id(), request_id());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }
}
