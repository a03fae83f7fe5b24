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
//! that are not run (a warning says how far the poll read).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::domain::Repository;
use crate::forge::DeploymentListing;
use crate::forge::github::{GitHub, POLL_MAX_PAGES, POLL_PAGE};
use crate::webhook::{self, DeploymentEventBody, GitHubRepository, Listener, Taken};

/// Polls GitHub for the repositories of the configured apps.
pub struct Poller {
    pub github: GitHub,
    pub listener: Listener,
    pub interval: Duration,
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
fn newer_than(deployments: Vec<Value>, mark: u64) -> Vec<(u64, Value)> {
    let mut newer: Vec<(u64, Value)> = deployments
        .into_iter()
        .filter_map(|d| Some((id_of(&d)?, d)))
        .filter(|(id, _)| *id > mark)
        .collect();
    newer.sort_by_key(|(id, _)| *id);
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
        let metrics = crate::metrics::global();
        let listing = match self.github.poll_deployments(repository, etag).await {
            Ok(listing) => listing,
            Err(e) => {
                metrics.poll("error");
                tracing::warn!(%repository, "cannot poll deployments: {e}");
                return etag.map(str::to_string);
            }
        };
        let (next_etag, deployments) = match listing {
            DeploymentListing::Unchanged { .. } => {
                metrics.poll("unchanged");
                return etag.map(str::to_string);
            }
            DeploymentListing::Changed {
                etag, deployments, ..
            } => {
                metrics.poll("changed");
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
            let body = serde_json::from_value(deployment).map(|deployment| DeploymentEventBody {
                deployment,
                repository: GitHubRepository {
                    full_name: repository.to_string(),
                    clone_url: None,
                },
            });
            let taken = match body {
                Ok(body) => {
                    webhook::take_deployment(&self.listener, Some(&format!("poll-{id}")), body)
                        .await
                }
                Err(e) => {
                    tracing::warn!(%repository, deployment = id, "a deployment zbot cannot read: {e}");
                    Taken::Refused(e.to_string())
                }
            };
            if taken == Taken::StoreFailed {
                return None;
            }
            tracing::info!(%repository, deployment = id, ?taken, "polled deployment");
            if let Err(e) = store.set_poll_mark(repository, id).await {
                tracing::error!(%repository, "cannot record the poll mark: {e}");
                return None;
            }
        }
        next_etag
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
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, [11, 12]);
        assert!(newer_than(vec![json!({"id": 3})], 3).is_empty());
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
