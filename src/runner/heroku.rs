//! The Heroku executor: a deployment built by Heroku through its Platform API, with no checkout and no
//! local program, the way Heaven deployed to Heroku.
//!
//! 1. GitHub gives a short-lived URL of the commit's tarball ([`crate::forge::Forge::archive_url`]);
//!    it may carry a token, so it is passed to Heroku and nowhere else (not the log, not the store).
//! 2. `POST /apps/{app}/builds` with `{"source_blob": {"url", "version": <sha>}}`.
//! 3. The build's `output_stream_url` is read as it arrives into the deploy log (and so the gist).
//! 4. `GET /apps/{app}/builds/{id}` every `[heroku] poll_interval` until `succeeded` or `failed`; on
//!    success the release's version (`GET /apps/{app}/releases/{id}`) goes into the status.
//!
//! A failed build is `failure` (chat shows the tail of its output); an API refusal is `error` with a
//! sentence that says what to fix ([`refusal`]). The deploy's timeout and a cancel stop following the
//! build, and say that Heroku may still finish it: the Platform API cannot stop a build.
//! Shapes: <https://devcenter.heroku.com/articles/platform-api-reference#build>.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::executor::{Executor, Job, Running};
use super::log::{LogSender, Stream};
use super::{Outcome, cancelled, timeout_for};
use crate::config::HerokuConfig;
use crate::domain::HerokuApp;
use crate::forge::StatusState;
use crate::http::{Answer, HttpClient, HttpError};
use crate::reply::human_duration;
use crate::secret::{Redactor, Secret};

/// Heroku's Platform API version 3 (`Accept`), required on every call.
const ACCEPT: &str = "application/vnd.heroku+json; version=3";

/// How long the build's output may go on arriving once Heroku says the build ended.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// Builds apps on Heroku.
#[derive(Debug)]
pub struct HerokuExecutor {
    /// For API calls: `[heroku] timeout` each.
    api: HttpClient,
    /// For the output stream, which stays open as long as the build runs; only its headers are
    /// bounded by `[heroku] timeout` here, the rest by the deploy's timeout.
    stream: HttpClient,
    api_url: String,
    api_key: Secret,
    poll: Duration,
}

/// A build as the Platform API shows it (the fields zbot reads).
#[derive(Debug, Clone, Deserialize)]
struct Build {
    id: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    #[serde(default)]
    output_stream_url: Option<String>,
    #[serde(default)]
    release: Option<Reference>,
}

#[derive(Debug, Clone, Deserialize)]
struct Reference {
    id: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Release {
    version: u64,
}

/// The sentence for a refused API call: what Heroku said and what to fix. Pure, for a table test.
/// `retry_after` is the `Retry-After` of a 429 (Heroku's rate limit,
/// <https://devcenter.heroku.com/articles/platform-api-reference#rate-limits>).
fn refusal(
    status: u16,
    message: &str,
    retry_after: Option<u64>,
    app: &HerokuApp,
    what: &str,
) -> String {
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    };
    match status {
        401 => format!(
            "Heroku refused the API key{said}: set [heroku] api_key to a valid token (heroku authorizations:create)"
        ),
        403 => format!(
            "Heroku's API key may not deploy {app}{said}: give its account access to the app"
        ),
        404 => format!(
            "Heroku has no app {app} that the API key can see{said}: check heroku_app in bot.toml"
        ),
        422 => format!("Heroku refused {what} of {app}{said}: fix what it names and deploy again"),
        429 => match retry_after {
            Some(seconds) => format!(
                "Heroku's API rate limit is used up: deploy again in {}",
                human_duration(Duration::from_secs(seconds))
            ),
            None => "Heroku's API rate limit is used up: deploy again in a few minutes".into(),
        },
        _ => format!("Heroku answered {status} to {what} of {app}{said}"),
    }
}

/// How far a deploy got with Heroku: what its early end (cancel, timeout, a lost answer) says.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    /// No build requested: Heroku builds nothing.
    NotAsked,
    /// The build request went out without an answer read: Heroku may be building it.
    Asked,
    /// Heroku answered with this build id.
    Started(String),
}

impl Progress {
    /// The sentence for an early end once Heroku was asked (the build id cut to 8 characters, which
    /// name it in Heroku's dashboard and keep the status under GitHub's 140).
    fn still(&self, app: &HerokuApp) -> String {
        match self {
            Progress::NotAsked => String::new(),
            Progress::Asked => {
                format!("Heroku may still build {app}: zbot stopped following it")
            }
            Progress::Started(id) => format!(
                "Heroku may still finish build {} of {app}: zbot stopped following it",
                id.get(..8).unwrap_or(id)
            ),
        }
    }
}

/// An API call that did not succeed: the deploy's end unless it is `transient` (no answer, a 5xx, or
/// a 429 with its `Retry-After` in seconds), which a poll may ask again.
struct Refused {
    transient: bool,
    retry_after: Option<u64>,
    outcome: Outcome,
}

impl From<Refused> for Outcome {
    fn from(refused: Refused) -> Outcome {
        refused.outcome
    }
}

/// `line` with `hide`'s secrets redacted; left as it is when it has none of them.
fn hidden(hide: &Redactor, line: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&line);
    let redacted = hide.redact(&text);
    if redacted == text {
        line
    } else {
        redacted.into_bytes()
    }
}

impl HerokuExecutor {
    pub fn new(config: &HerokuConfig) -> Result<HerokuExecutor, HttpError> {
        let timeouts = config.timeouts;
        Ok(HerokuExecutor {
            api: HttpClient::new(timeouts.connect, timeouts.request)?,
            stream: HttpClient::new(timeouts.connect, timeouts.request)?,
            api_url: config.api_url.clone(),
            api_key: config.api_key.clone(),
            poll: config.poll_interval,
        })
    }

    /// Whether the API key can see `app` (`GET /apps/{app}`), for `zbot check --online`; `Err` is the
    /// sentence a refused deploy would end with.
    pub async fn check_app(&self, app: &HerokuApp) -> Result<(), String> {
        self.call(
            http::Method::GET,
            &format!("/apps/{app}"),
            None,
            app,
            "the app",
            &Redactor::new([]),
        )
        .await
        .map(drop)
        .map_err(|refused| refused.outcome.description)
    }

    /// One API call; `Err` is the deploy's end, with a sentence.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
        app: &HerokuApp,
        what: &str,
        hide: &Redactor,
    ) -> Result<Answer, Refused> {
        let fatal = |outcome| Refused {
            transient: false,
            retry_after: None,
            outcome,
        };
        let authorization = format!("Bearer {}", self.api_key.expose());
        let request = HttpClient::request(
            method,
            &format!("{}{path}", self.api_url),
            &[
                ("accept", ACCEPT),
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            body.map(|b| b.to_string().into_bytes()),
        )
        .map_err(|e| {
            fatal(Outcome::error(
                hide.redact(&format!("Cannot ask Heroku for {what}: {e}")),
            ))
        })?;
        let answer = self.api.send(request).await.map_err(|e| Refused {
            transient: true,
            retry_after: None,
            outcome: Outcome::error(
                hide.redact(&format!("Heroku's API gave no answer to {what}: {e}")),
            ),
        })?;
        if answer.is_success() {
            return Ok(answer);
        }
        let body = answer.json();
        let message = body
            .get("message")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let retry_after = answer
            .header("retry-after")
            .and_then(|v| v.trim().parse().ok());
        Err(Refused {
            transient: answer.status >= 500 || answer.status == 429,
            retry_after,
            outcome: Outcome::error(hide.redact(&refusal(
                answer.status,
                message,
                retry_after,
                app,
                what,
            ))),
        })
    }

    /// `T` from a successful answer; the error is the deploy's `error` description.
    fn read<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, String> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| format!("Heroku's answer to {what} is not one zbot reads: {e}"))
    }

    /// Follows a build from its creation to its end.
    async fn follow(
        &self,
        job: &Job<'_>,
        app: &HerokuApp,
        progress: &std::sync::Mutex<Progress>,
    ) -> Result<Outcome, Outcome> {
        let d = job.d;
        let source = job
            .deployer
            .forge
            .archive_url(&d.repository, &d.sha)
            .await
            .map_err(|e| {
                Outcome::error(format!(
                    "GitHub gave no source archive of {} for Heroku: {e}",
                    d.sha.short()
                ))
            })?;
        job.log
            .note(format!(
                "Heroku: building {app} from {}@{}",
                d.repository, d.sha
            ))
            .await;
        // Heroku may echo the URL (and its token) in a message or the build's output.
        let hide = Redactor::new(&source.secrets());
        let body = json!({"source_blob": {"url": source.expose(), "version": d.sha}});
        let path = format!("/apps/{app}/builds");
        if let Ok(mut progress) = progress.lock() {
            *progress = Progress::Asked;
        }
        // Once asked, an answer lost or unreadable may still be a build Heroku runs.
        let may_build = |outcome: Outcome| {
            Outcome::error(format!(
                "{}; {}",
                outcome.description,
                Progress::Asked.still(app)
            ))
        };
        let created = match self
            .call(
                http::Method::POST,
                &path,
                Some(body),
                app,
                "the build",
                &hide,
            )
            .await
        {
            Ok(created) => created,
            Err(refused) if refused.transient => return Err(may_build(refused.outcome)),
            Err(refused) => return Err(refused.outcome),
        };
        let build: Build =
            Self::read(&created, "the build").map_err(|e| may_build(Outcome::error(e)))?;
        if let Ok(mut progress) = progress.lock() {
            *progress = Progress::Started(build.id.clone());
        }
        job.log
            .note(format!("Heroku build {} of {app} started", build.id))
            .await;
        let output = self.stream_output(build.output_stream_url.clone(), job.log, &hide);
        tokio::pin!(output);
        let mut output_done = false;
        let mut current = build;
        while current.status == "pending" {
            tokio::select! {
                () = &mut output, if !output_done => output_done = true,
                () = tokio::time::sleep(self.poll) => {}
            }
            let path = format!("/apps/{app}/builds/{}", current.id);
            // A poll that fails for a while is asked again (the deploy's deadline bounds it).
            let answer = match self
                .call(
                    http::Method::GET,
                    &path,
                    None,
                    app,
                    "the build's state",
                    &hide,
                )
                .await
            {
                Ok(answer) => answer,
                Err(refused) if refused.transient => {
                    job.log
                        .note(format!("{}; asking again", refused.outcome.description))
                        .await;
                    let wait = refused
                        .retry_after
                        .map_or(self.poll, |s| Duration::from_secs(s).max(self.poll));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(refused) => return Err(refused.into()),
            };
            current = Self::read(&answer, "the build's state").map_err(Outcome::error)?;
        }
        if !output_done {
            let _ = tokio::time::timeout(OUTPUT_GRACE, &mut output).await;
        }
        let took = human_duration(job.started.elapsed());
        match current.status.as_str() {
            "succeeded" => {
                // The build shipped: a release Heroku cannot name just now leaves out its version.
                let version = match &current.release {
                    Some(release) => {
                        let path = format!("/apps/{app}/releases/{}", release.id);
                        let looked_up = match self
                            .call(http::Method::GET, &path, None, app, "the release", &hide)
                            .await
                        {
                            Ok(answer) => Self::read::<Release>(&answer, "the release"),
                            Err(refused) => Err(refused.outcome.description),
                        };
                        match looked_up {
                            Ok(release) => Some(release.version),
                            Err(why) => {
                                job.log
                                    .note(format!("the release's version is unknown: {why}"))
                                    .await;
                                None
                            }
                        }
                    }
                    None => None,
                };
                let release = version.map_or_else(
                    || format!("Heroku app {app}"),
                    |v| format!("Heroku release v{v} of {app}"),
                );
                job.log.note(format!("Heroku: {release}")).await;
                Ok(Outcome::done(
                    StatusState::Success,
                    format!(
                        "Deployed {} ({}) to {} as {release} in {took}",
                        d.git_ref,
                        d.sha.short(),
                        d.environment
                    ),
                    None,
                ))
            }
            other => Ok(Outcome::done(
                StatusState::Failure,
                format!("Heroku build {} of {app} {other} after {took}", current.id),
                None,
            )),
        }
    }

    /// Copies the build's output into the log as it arrives, line by line, until the stream ends.
    /// Each line is shown with `hide`'s secrets redacted.
    async fn stream_output(&self, url: Option<String>, log: &LogSender, hide: &Redactor) {
        let Some(url) = url else {
            return;
        };
        let request = match HttpClient::request(http::Method::GET, &url, &[], None) {
            Ok(request) => request,
            Err(e) => {
                return log
                    .note(format!("cannot follow the build's output: {e}"))
                    .await;
            }
        };
        let mut body = match self.stream.open(request).await {
            Ok((200, body)) => body,
            Ok((status, _)) => {
                return log
                    .note(format!("the build's output answered {status}"))
                    .await;
            }
            Err(e) => {
                return log
                    .note(format!("cannot follow the build's output: {e}"))
                    .await;
            }
        };
        let mut pending: Vec<u8> = Vec::new();
        while let Some(piece) = body.next().await {
            match piece {
                Ok(bytes) => {
                    pending.extend_from_slice(&bytes);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        log.line(Stream::Stdout, hidden(hide, line)).await;
                    }
                }
                Err(e) => {
                    log.note(format!("the build's output broke off: {e}")).await;
                    break;
                }
            }
        }
        if !pending.is_empty() {
            log.line(Stream::Stdout, hidden(hide, pending)).await;
        }
    }

    async fn deploy(&self, job: Job<'_>) -> Outcome {
        let d = job.d;
        let Some(app) = job.app.heroku_apps.get(&d.environment).cloned() else {
            return Outcome::error(format!(
                "No Heroku app for {}: set heroku_app for it in bot.toml",
                d.environment
            ));
        };
        let told = match job.first.log_url().await {
            Ok(log_url) => job.deployer.tell_started(d, &log_url).await,
            Err(outcome) => Err(outcome),
        };
        if let Err(outcome) = told {
            return outcome;
        }
        let limit = timeout_for(job.app, None, &job.deployer.config);
        let deadline = tokio::time::Instant::from_std(job.started + limit);
        let progress = std::sync::Mutex::new(Progress::NotAsked);
        let still = |progress: &std::sync::Mutex<Progress>| {
            progress
                .lock()
                .ok()
                .filter(|p| !matches!(**p, Progress::NotAsked))
                .map_or_else(String::new, |p| format!("; {}", p.still(&app)))
        };
        let outcome = tokio::select! {
            followed = tokio::time::timeout_at(deadline, self.follow(&job, &app, &progress)) => match followed {
                Ok(Ok(outcome) | Err(outcome)) => outcome,
                Err(_) => {
                    let said = format!("Timed out after {}{}", human_duration(limit), still(&progress));
                    job.log.note(format!("DEPLOYMENT TIMED OUT AFTER {} SECONDS", limit.as_secs())).await;
                    Outcome::error(said)
                }
            },
            reason = cancelled(job.cancel.clone()) => Outcome::error(format!("{reason}{}", still(&progress))),
        };
        outcome
    }
}

impl Executor for HerokuExecutor {
    fn execute<'a>(&'a self, job: Job<'a>) -> Running<'a> {
        Box::pin(self.deploy(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_says_what_to_fix() {
        let app: HerokuApp = "adxstat".parse().unwrap();
        let cases = [
            (
                401,
                "Invalid credentials provided.",
                None,
                "set [heroku] api_key",
            ),
            (
                404,
                "Couldn't find that app.",
                None,
                "check heroku_app in bot.toml",
            ),
            (
                422,
                "Invalid source_blob",
                None,
                "Heroku refused the build of adxstat (Invalid source_blob)",
            ),
            (
                429,
                "Rate limit exceeded",
                Some(90),
                "deploy again in 1m 30s",
            ),
            (500, "boom", None, "Heroku answered 500"),
        ];
        for (status, message, retry, expected) in cases {
            let said = refusal(status, message, retry, &app, "the build");
            assert!(said.contains(expected), "{status}: {said}");
        }
    }
}
