//! The queue: which stored deployment runs next, and when.
//!
//! Rules: at most `[deploy] concurrency` deploys at once; one at a time per repository + environment,
//! later ones waiting in order of arrival with a `queued` status that tells their position (never
//! Heaven's "Already deploying."). Different environments of one repository run in parallel.
//!
//! The scheduler is one task; it reads the queue from the [`Store`] each time it wakes (a deployment
//! was stored, a deploy ended, a cancel) so the database stays the single source of truth, also
//! across restarts: at start, deployments a previous process was running end as `error`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinSet;

use crate::domain::{DeploymentId, Environment, Repository};
use crate::forge::StatusState;
use crate::runner::Deployer;
use crate::store::{DeploymentState, QueueEntry};

pub const RESTARTED: &str = "zbot restarted during this deploy";

/// How many waiting deployments per repository + environment have their position kept current.
const ANNOUNCED_POSITIONS: i64 = 10;

/// What a cancel found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting and now ended as `error`.
    Queued,
    /// It was running; its processes are being stopped.
    Running,
    /// Unknown, or already ended.
    NotActive,
}

/// The queue's handle: wake it, cancel through it.
#[derive(Debug)]
pub struct Scheduler {
    deployer: Arc<Deployer>,
    concurrency: usize,
    wake: Notify,
    /// Cancel switches of the deploys this process runs.
    running: Mutex<HashMap<DeploymentId, watch::Sender<Option<String>>>>,
}

impl Scheduler {
    pub fn new(deployer: Arc<Deployer>) -> Arc<Scheduler> {
        let concurrency = deployer.config.deploy.concurrency.max(1);
        Arc::new(Scheduler {
            deployer,
            concurrency,
            wake: Notify::new(),
            running: Mutex::default(),
        })
    }

    /// Something changed: look at the queue again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ends deployments a previous process left running.
    pub async fn recover(&self) {
        match self.deployer.store.running().await {
            Ok(interrupted) => {
                for d in interrupted {
                    self.deployer.end_interrupted(&d, RESTARTED).await;
                }
            }
            Err(e) => tracing::error!("cannot read interrupted deploys: {e}"),
        }
    }

    /// Stops a queued or running deployment; `reason` becomes its status description.
    pub async fn cancel(&self, deployment_id: DeploymentId, reason: &str) -> Cancelled {
        if let Some(switch) = self.running.lock().await.get(&deployment_id) {
            let _ = switch.send(Some(reason.to_string()));
            return Cancelled::Running;
        }
        match self.deployer.store.get(deployment_id).await {
            Ok(Some(d)) if d.state == DeploymentState::Queued => {
                // Only while it is still queued: if the queue started it meanwhile, its switch is in
                // place (see `start`) and stops it instead.
                if self.deployer.end_queued(&d, reason).await {
                    self.wake();
                    return Cancelled::Queued;
                }
                match self.running.lock().await.get(&deployment_id) {
                    Some(switch) => {
                        let _ = switch.send(Some(reason.to_string()));
                        Cancelled::Running
                    }
                    None => Cancelled::NotActive,
                }
            }
            _ => Cancelled::NotActive,
        }
    }

    /// Serves the queue until `shutdown` turns true, then lets running deploys finish for up to
    /// `grace` before stopping them (they end as `error`).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut deploys = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.start_what_can_run(&mut deploys).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.deployer.store.queued().notified() => {}
                Some(joined) = deploys.join_next(), if !deploys.is_empty() => {
                    if let Err(e) = joined {
                        self.after_a_failed_deploy_task(e).await;
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
        if !deploys.is_empty() {
            tracing::info!(
                "waiting up to {grace:?} for {} running deploy(s)",
                deploys.len()
            );
            if tokio::time::timeout(grace, async {
                while deploys.join_next().await.is_some() {}
            })
            .await
            .is_err()
            {
                for switch in self.running.lock().await.values() {
                    let _ = switch.send(Some(RESTARTED.to_string()));
                }
                while deploys.join_next().await.is_some() {}
            }
        }
    }

    /// A deploy's task panicked (a bug in zbot): its deployment must still end, and its environment
    /// must not stay busy until a restart. The switches left behind name the deployments whose tasks
    /// are gone.
    async fn after_a_failed_deploy_task(&self, error: tokio::task::JoinError) {
        tracing::error!("a deploy task failed: {error}");
        let gone: Vec<DeploymentId> = {
            let running = self.running.lock().await;
            running
                .iter()
                .filter(|(_, switch)| switch.is_closed())
                .map(|(id, _)| *id)
                .collect()
        };
        for id in gone {
            self.running.lock().await.remove(&id);
            if let Ok(Some(d)) = self.deployer.store.get(id).await {
                // Whatever it started must not go on unsupervised.
                self.deployer
                    .end_interrupted(&d, crate::reply::zbot_failed())
                    .await;
            }
        }
    }

    async fn start_what_can_run(self: &Arc<Self>, deploys: &mut JoinSet<()>) {
        let store = &self.deployer.store;
        let (running, queued) = match (store.running().await, store.queue().await) {
            (Ok(r), Ok(q)) => (r, q),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot read the queue: {e}");
                return;
            }
        };
        let running: Vec<(Repository, Environment)> = running
            .into_iter()
            .map(|d| (d.repository, d.environment))
            .collect();
        let plan = plan(&running, &queued, self.concurrency);
        let waiting = queued.len().saturating_sub(plan.start.len());
        crate::metrics::global()
            .queue_depth
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        for deployment_id in plan.start {
            self.start(deployment_id, deploys).await;
        }
        for wait in plan.announce {
            self.announce_queued(wait).await;
        }
    }

    async fn announce_queued(&self, wait: Wait) {
        let store = &self.deployer.store;
        let Ok(Some(d)) = store.get(wait.deployment_id).await else {
            return;
        };
        let description = crate::reply::queued(&d, wait.ahead, self.concurrency);
        if let Err(e) = store
            .set_queue_position(wait.deployment_id, wait.stored())
            .await
        {
            tracing::error!("cannot record the queue position: {e}");
        }
        let _ = self
            .deployer
            .announce(
                &d,
                StatusState::Queued,
                &description,
                d.log_url.as_deref(),
                Vec::new(),
                None,
            )
            .await;
    }

    async fn start(self: &Arc<Self>, deployment_id: DeploymentId, deploys: &mut JoinSet<()>) {
        // (Marking it running is conditional on it still being queued: a cancel may have come first.)
        let store = &self.deployer.store;
        let log_path = self.deployer.log_path(deployment_id);
        // The cancel switch is in place before the row says `running`, so a cancel never finds it
        // running with no way to stop it.
        let (switch, cancel) = watch::channel(None);
        self.running.lock().await.insert(deployment_id, switch);
        let started = match store.start(deployment_id, &log_path).await {
            Ok(true) => store.get(deployment_id).await,
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        let d = match started {
            Ok(Some(d)) => d,
            Ok(None) => {
                self.running.lock().await.remove(&deployment_id);
                return;
            }
            Err(e) => {
                tracing::error!(deployment = %deployment_id, "cannot start: {e}");
                self.running.lock().await.remove(&deployment_id);
                return;
            }
        };
        let waited = (chrono::Utc::now() - d.created_at)
            .to_std()
            .unwrap_or_default();
        crate::metrics::global()
            .queue_wait
            .observe(waited.as_secs_f64());
        let this = Arc::clone(self);
        deploys.spawn(async move {
            this.deployer.run(d, cancel).await;
            this.running.lock().await.remove(&deployment_id);
        });
    }
}

/// What the queue does next: the deployments to start now, and the waiting ones whose `queued` status
/// must be (re)announced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub start: Vec<DeploymentId>,
    pub announce: Vec<Wait>,
}

/// A waiting deployment to announce: how many deploys of its repository + environment are ahead of it
/// (the running one included); 0 means it waits only for a free slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub deployment_id: DeploymentId,
    pub ahead: i64,
}

impl Wait {
    /// The position as stored: "waiting for a slot" is kept as -1, distinct from "not announced yet".
    pub fn stored(&self) -> i64 {
        if self.ahead > 0 { self.ahead } else { -1 }
    }
}

/// Decides what runs next. Pure: the running deploys (repository + environment), the queue oldest first,
/// and the concurrency limit in; a [`Plan`] out. Rules: at most `concurrency` deploys at once; one per
/// repository + environment, later ones waiting in order of arrival; a waiting deployment is announced
/// when its position changes, but past the first [`ANNOUNCED_POSITIONS`] only once, so a deep queue does
/// not cost a status per waiting deployment each time one ends.
pub fn plan(
    running: &[(Repository, Environment)],
    queued: &[QueueEntry],
    concurrency: usize,
) -> Plan {
    let mut busy: HashSet<(Repository, Environment)> = running.iter().cloned().collect();
    let mut free = concurrency.saturating_sub(running.len());
    let mut ahead: HashMap<(Repository, Environment), i64> =
        busy.iter().map(|k| (k.clone(), 1)).collect();
    let mut plan = Plan::default();
    for entry in queued {
        let k = (entry.repository.clone(), entry.environment.clone());
        if !busy.contains(&k) && free > 0 {
            // Started now: the next of its repository + environment waits for this one.
            ahead.insert(k.clone(), 1);
            busy.insert(k);
            free -= 1;
            plan.start.push(entry.deployment_id);
            continue;
        }
        let position = ahead.entry(k.clone()).or_insert(0);
        let waiting_for = if busy.contains(&k) { *position } else { 0 };
        *position += 1;
        let wait = Wait {
            deployment_id: entry.deployment_id,
            ahead: waiting_for,
        };
        let announced = entry.queue_position.is_some();
        if entry.queue_position == Some(wait.stored())
            || (announced && waiting_for > ANNOUNCED_POSITIONS)
        {
            continue;
        }
        plan.announce.push(wait);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(repository: &str, environment: &str) -> (Repository, Environment) {
        (repository.parse().unwrap(), environment.parse().unwrap())
    }

    fn entry(id: u64, repository: &str, environment: &str, announced: Option<i64>) -> QueueEntry {
        let (repository, environment) = key(repository, environment);
        QueueEntry {
            deployment_id: DeploymentId(id),
            repository,
            environment,
            queue_position: announced,
        }
    }

    fn ids(list: &[u64]) -> Vec<DeploymentId> {
        list.iter().copied().map(DeploymentId).collect()
    }

    fn waits(list: &[(u64, i64)]) -> Vec<Wait> {
        list.iter()
            .map(|&(id, ahead)| Wait {
                deployment_id: DeploymentId(id),
                ahead,
            })
            .collect()
    }

    /// (what it shows, running, queue, concurrency, expected plan)
    type Case = (
        &'static str,
        Vec<(Repository, Environment)>,
        Vec<QueueEntry>,
        usize,
        Plan,
    );

    #[test]
    fn plans_follow_the_queue_rules() {
        let cases: Vec<Case> = vec![
            (
                "an empty queue does nothing",
                vec![],
                vec![],
                4,
                Plan::default(),
            ),
            (
                "one per repository + environment, the next waits with 1 ahead",
                vec![],
                vec![
                    entry(1, "o/a", "production", None),
                    entry(2, "o/a", "production", None),
                ],
                4,
                Plan {
                    start: ids(&[1]),
                    announce: waits(&[(2, 1)]),
                },
            ),
            (
                "two environments of one repository run side by side",
                vec![],
                vec![
                    entry(1, "o/a", "production", None),
                    entry(2, "o/a", "staging", None),
                ],
                4,
                Plan {
                    start: ids(&[1, 2]),
                    announce: vec![],
                },
            ),
            (
                "a running deploy holds its environment",
                vec![key("o/a", "production")],
                vec![
                    entry(3, "o/a", "production", None),
                    entry(4, "o/a", "production", None),
                ],
                4,
                Plan {
                    start: vec![],
                    announce: waits(&[(3, 1), (4, 2)]),
                },
            ),
            (
                "the concurrency limit makes others wait for a slot",
                vec![key("o/a", "production")],
                vec![
                    entry(5, "o/b", "production", None),
                    entry(6, "o/c", "production", None),
                ],
                2,
                Plan {
                    start: ids(&[5]),
                    announce: waits(&[(6, 0)]),
                },
            ),
            (
                "an unchanged position is not announced again",
                vec![key("o/a", "production")],
                vec![
                    entry(7, "o/a", "production", Some(1)),
                    entry(8, "o/a", "production", Some(1)),
                ],
                4,
                Plan {
                    start: vec![],
                    announce: waits(&[(8, 2)]),
                },
            ),
            (
                "past the first positions, an announced deployment is not told each move",
                vec![key("o/a", "production")],
                (1..=13)
                    .map(|i| entry(100 + i, "o/a", "production", Some(i as i64 + 1)))
                    .collect(),
                4,
                Plan {
                    start: vec![],
                    announce: waits(&(1..=10).map(|i| (100 + i, i as i64)).collect::<Vec<_>>()),
                },
            ),
        ];
        for (name, running, queued, concurrency, expected) in cases {
            assert_eq!(plan(&running, &queued, concurrency), expected, "{name}");
        }
    }
}
