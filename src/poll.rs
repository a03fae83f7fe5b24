//! Polling GitHub for deployments (`[github] poll = "15s"`), for installations GitHub cannot reach:
//! no inbound port is needed.
//!
//! Every interval, each configured repository's newest deployments are listed
//! (`GET /repos/{owner}/{repo}/deployments`, newest first) with `If-None-Match` and the ETag of the
//! previous listing, so an unchanged list is a 304 that costs no rate limit. A deployment newer than
//! the repository's poll mark (kept in the store) is handed to [`webhook::take_deployment`] as if
//! GitHub had delivered it: the same validation, the same store, the same exactly-once (one row per
//! deployment id), so webhook and polling may run together and a deployment still runs once.
//!
//! The first poll of a repository only sets its mark to the newest deployment there: its history is
//! not run. Deployments made while zbot was stopped are newer than the mark, and run at the next
//! start. When every deployment of the first page ([`POLL_PAGE`]) is newer than the mark, older
//! pages are read until one reaches the mark, up to [`POLL_MAX_PAGES`] pages; deployments beyond
//! that are not run (a warning says how far the poll read). The first poll after a start costs one
//! full listing per repository (the ETags are not kept across restarts).
//!
//! After downtime, replaying every deployment made meanwhile, in order, would deploy v1, v2 and v3
//! although v3 was perhaps deployed otherwise since. So a new deployment is not run when:
//! - it was created longer ago than `[github] poll_max_age` (default one hour): it is refused like
//!   any deployment zbot will not run — an `error` status on GitHub and a message in chat, saying
//!   "created 3h ago, older than [github] poll_max_age = 1h; deploy again" ([`Why::TooOld`]);
//! - its latest status is no longer `pending` (someone, zbot's webhook or another deployer, has
//!   taken it already): it is passed over, with a log line.
//!
//! Deliveries to the webhook are not held to these rules: GitHub sends them as deployments are made.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::domain::{DeploymentId, Repository};
use crate::forge::DeploymentListing;
use crate::forge::github::{GitHub, POLL_MAX_PAGES, POLL_PAGE};
use crate::metrics::PollResult;
use crate::policy::{Refusal, Why};
use crate::webhook::{self, DeploymentEventBody, GitHubRepository, Listener, Taken};

/// Polls GitHub for the repositories of the configured apps.
pub struct Poller {
    pub github: GitHub,
    pub listener: Listener,
    pub interval: Duration,
    /// `[github] poll_max_age`: older deployments are refused, not run.
    pub max_age: Duration,
}

/// How long ago a deployment as GitHub lists it was created (its `created_at`), if it says; a
/// `created_at` in the future (clocks differ) is no age at all.
fn age_of(deployment: &Value, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let created = deployment.get("created_at").and_then(Value::as_str)?;
    let created = chrono::DateTime::parse_from_rfc3339(created).ok()?;
    Some(
        (now - created.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default(),
    )
}

/// The age of a deployment older than `max_age`, which is not run.
fn too_old(
    deployment: &Value,
    now: chrono::DateTime<chrono::Utc>,
    max_age: Duration,
) -> Option<Duration> {
    age_of(deployment, now).filter(|age| *age > max_age)
}

/// What a first look at a new deployment found.
enum Look {
    /// New to everyone: it is taken as a delivery.
    New,
    /// Not run: refused as too old, or taken already by someone.
    NotRun(Taken),
    /// GitHub could not say whether someone took it: the next poll looks again.
    Unknown,
}

/// The configured apps' repositories, each once.
fn repositories(listener: &Listener) -> Vec<Repository> {
    let mut repositories: Vec<Repository> = listener
        .config
        .apps
        .values()
        .map(|app| app.repository.clone())
        .collect();
    repositories.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    repositories.dedup();
    repositories
}

/// The id of a deployment as GitHub lists it.
fn id_of(deployment: &Value) -> Option<u64> {
    deployment.get("id").and_then(Value::as_u64)
}

/// Whether a full page of a listing holds only deployments newer than `mark`: older pages may
/// hold more new ones.
fn reaches_past(page: &[Value], mark: u64) -> bool {
    page.len() >= usize::from(POLL_PAGE) && page.iter().filter_map(id_of).all(|id| id > mark)
}

/// The deployments of a listing newer than `mark`, oldest first (the order they were made in).
fn newer_than(deployments: Vec<Value>, mark: u64) -> Vec<(DeploymentId, Value)> {
    let mut newer: Vec<(DeploymentId, Value)> = deployments
        .into_iter()
        .filter_map(|d| Some((DeploymentId(id_of(&d)?), d)))
        .filter(|(id, _)| id.0 > mark)
        .collect();
    newer.sort_by_key(|(id, _)| id.0);
    newer
}

impl Poller {
    /// Polls every interval until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let repositories = repositories(&self.listener);
        tracing::info!(
            interval = ?self.interval,
            repositories = repositories.len(),
            "polling GitHub for deployments"
        );
        let mut etags: HashMap<Repository, String> = HashMap::new();
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            for repository in &repositories {
                let etag = etags.get(repository).map(String::as_str);
                if let Some(next) = self.poll(repository, etag).await {
                    etags.insert(repository.clone(), next);
                } else {
                    etags.remove(repository);
                }
            }
        }
    }

    /// One poll of `repository`; the ETag to ask with next time, or `None` to list in full (the
    /// listing failed, or not every new deployment could be stored).
    async fn poll(&self, repository: &Repository, etag: Option<&str>) -> Option<String> {
        let metrics = &self.listener.metrics;
        let listing = match self.github.poll_deployments(repository, etag).await {
            Ok(listing) => listing,
            Err(e) => {
                metrics.poll(PollResult::Error);
                tracing::warn!(%repository, "cannot poll deployments: {e}");
                return etag.map(str::to_string);
            }
        };
        let (next_etag, deployments) = match listing {
            DeploymentListing::Unchanged { .. } => {
                metrics.poll(PollResult::Unchanged);
                return etag.map(str::to_string);
            }
            DeploymentListing::Changed {
                etag, deployments, ..
            } => {
                metrics.poll(PollResult::Changed);
                (etag, deployments)
            }
        };
        let store = &self.listener.store;
        let mark = match store.poll_mark(repository).await {
            Ok(mark) => mark,
            Err(e) => {
                tracing::error!(%repository, "cannot read the poll mark: {e}");
                return None;
            }
        };
        let Some(mark) = mark else {
            let newest = deployments.iter().filter_map(id_of).max().unwrap_or(0);
            if let Err(e) = store.set_poll_mark(repository, newest).await {
                tracing::error!(%repository, "cannot record the poll mark: {e}");
                return None;
            }
            tracing::info!(%repository, newest, "first poll: deployments after #{newest} will run");
            return next_etag;
        };
        let mut deployments = deployments;
        let mut last_page = deployments.clone();
        let mut page = 1;
        while reaches_past(&last_page, mark) {
            if page >= POLL_MAX_PAGES {
                tracing::warn!(%repository, mark, pages = page,
                    "more than {} deployments since the last poll: older ones are not run",
                    u32::from(POLL_PAGE) * POLL_MAX_PAGES);
                break;
            }
            page += 1;
            match self.github.deployments_page(repository, page).await {
                Ok(older) => {
                    deployments.extend(older.iter().cloned());
                    last_page = older;
                }
                Err(e) => {
                    tracing::warn!(%repository, page, "cannot list older deployments: {e}");
                    return None;
                }
            }
        }
        for (id, deployment) in newer_than(deployments, mark) {
            let taken = match self.passed_over(repository, id, &deployment).await {
                Look::NotRun(taken) => taken,
                Look::New => self.take(repository, id, deployment).await,
                Look::Unknown => return None,
            };
            if taken == Taken::StoreFailed {
                return None;
            }
            tracing::info!(%repository, deployment = %id, ?taken, "polled deployment");
            if let Err(e) = store.set_poll_mark(repository, id.0).await {
                tracing::error!(%repository, "cannot record the poll mark: {e}");
                return None;
            }
        }
        next_etag
    }

    /// Whether a new deployment is not run, and what became of it: passed over when its latest
    /// status is no longer pending (someone took it); refused only when it is still pending and
    /// older than `[github] poll_max_age`, and not held by zbot already (it came by the webhook
    /// before the poll mark moved: [`webhook::refuse`] leaves it be). What is settled is never
    /// overwritten.
    async fn passed_over(
        &self,
        repository: &Repository,
        id: DeploymentId,
        deployment: &Value,
    ) -> Look {
        match self.github.settled_state(repository, id).await {
            Ok(None) => {}
            Ok(Some(state)) => {
                tracing::info!(%repository, deployment = %id, state = state.as_str(),
                    "a polled deployment was taken already (its latest status is not pending): not run");
                return Look::NotRun(Taken::Duplicate);
            }
            Err(e) => {
                tracing::warn!(%repository, deployment = %id, "cannot read a polled deployment's status: {e}");
                return Look::Unknown;
            }
        }
        let now = self.listener.deployer.clock.now();
        let Some(age) = too_old(deployment, now, self.max_age) else {
            return Look::New;
        };
        let refusal = Refusal {
            deployment_id: id,
            repository: Some(repository.clone()),
            repository_text: repository.to_string(),
            why: Why::TooOld {
                age,
                max_age: self.max_age,
            },
        };
        Look::NotRun(webhook::refuse(&self.listener, Box::new(refusal)).await)
    }

    /// A new deployment taken as the webhook takes a delivery.
    async fn take(&self, repository: &Repository, id: DeploymentId, deployment: Value) -> Taken {
        let body = serde_json::from_value(deployment).map(|deployment| DeploymentEventBody {
            deployment,
            repository: GitHubRepository {
                full_name: repository.to_string(),
                clone_url: None,
            },
        });
        match body {
            Ok(body) => {
                webhook::take_deployment(&self.listener, Some(&format!("poll-{id}")), body).await
            }
            Err(e) => {
                tracing::warn!(%repository, deployment = %id, "a deployment zbot cannot read: {e}");
                Taken::Refused(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_deployments_after_the_mark_are_taken_oldest_first() {
        let listing = vec![
            json!({"id": 12}),
            json!({"id": 11}),
            json!({"id": 10}),
            json!({"no": "id"}),
        ];
        let ids: Vec<u64> = newer_than(listing, 10)
            .into_iter()
            .map(|(id, _)| id.0)
            .collect();
        assert_eq!(ids, [11, 12]);
        assert!(newer_than(vec![json!({"id": 3})], 3).is_empty());
    }

    #[test]
    fn a_deployment_older_than_the_max_age_is_too_old() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let hour = Duration::from_secs(3600);
        for (created_at, expected) in [
            (json!("2026-11-29T09:00:00Z"), Some(3 * 3600)),
            (json!("2026-11-29T10:59:59Z"), Some(3601)),
            (json!("2026-11-29T11:00:00Z"), None),
            (json!("2026-11-29T11:59:00Z"), None),
            // Clocks differ: a deployment from the future is new.
            (json!("2026-11-29T12:05:00Z"), None),
            (json!("2026-11-29T12:00:00+02:00"), Some(2 * 3600)),
            // Unreadable or missing: taken, as a delivery would be.
            (json!("yesterday"), None),
            (json!(null), None),
        ] {
            let deployment = json!({"id": 1, "created_at": created_at});
            assert_eq!(
                too_old(&deployment, now, hour),
                expected.map(Duration::from_secs),
                "{created_at}"
            );
        }
    }

    #[test]
    fn only_a_full_page_of_new_deployments_sends_the_poll_to_older_pages() {
        let page = |from: u64| -> Vec<Value> {
            (0..u64::from(POLL_PAGE))
                .map(|i| json!({"id": from - i}))
                .collect()
        };
        for (listing, mark, further) in [
            (page(100), 70, true),
            (page(100), 71, false),
            (page(100), 100, false),
            (vec![json!({"id": 100})], 1, false),
        ] {
            assert_eq!(reaches_past(&listing, mark), further, "mark {mark}");
        }
    }
}
