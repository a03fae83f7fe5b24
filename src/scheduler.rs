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
use crate::store::DeploymentState;

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
                self.deployer.end_unrun(&d, reason).await;
                self.wake();
                Cancelled::Queued
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
                Some(_) = deploys.join_next(), if !deploys.is_empty() => {}
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

    async fn start_what_can_run(self: &Arc<Self>, deploys: &mut JoinSet<()>) {
        let store = &self.deployer.store;
        let (running, queued) = match (store.running().await, store.queue().await) {
            (Ok(r), Ok(q)) => (r, q),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot read the queue: {e}");
                return;
            }
        };
        let mut busy: HashSet<(Repository, Environment)> = running
            .iter()
            .map(|d| (d.repository.clone(), d.environment.clone()))
            .collect();
        let mut free = self.concurrency.saturating_sub(running.len());
        // Deployments ahead of each waiting one, per repository + environment (the running one included).
        let mut ahead: HashMap<(Repository, Environment), i64> =
            busy.iter().map(|k| (k.clone(), 1)).collect();
        for entry in queued {
            let k = (entry.repository.clone(), entry.environment.clone());
            if !busy.contains(&k) && free > 0 {
                busy.insert(k);
                free -= 1;
                self.start(entry.deployment_id, deploys).await;
                continue;
            }
            let position = ahead.entry(k.clone()).or_insert(0);
            let waiting_for = if busy.contains(&k) { *position } else { 0 };
            *position += 1;
            // Position 0 means "waiting for a slot", so it is stored as -1 to stay distinct from "none yet".
            let stored = if waiting_for > 0 { waiting_for } else { -1 };
            // A deep queue would cost a status per waiting deployment each time one ends: past the first
            // few, a deployment is told once that it is queued, and its position when it comes close.
            let announced = entry.queue_position.is_some();
            if entry.queue_position == Some(stored)
                || (announced && waiting_for > ANNOUNCED_POSITIONS)
            {
                continue;
            }
            self.announce_queued(entry.deployment_id, waiting_for, stored)
                .await;
        }
    }

    async fn announce_queued(&self, deployment_id: DeploymentId, waiting_for: i64, stored: i64) {
        let store = &self.deployer.store;
        let Ok(Some(d)) = store.get(deployment_id).await else {
            return;
        };
        let description = if waiting_for > 0 {
            format!(
                "Queued: {waiting_for} deploy(s) of {} to {} ahead",
                d.repository, d.environment
            )
        } else {
            format!(
                "Queued: waiting for a free slot ({} deploys running)",
                self.concurrency
            )
        };
        if let Err(e) = store.set_queue_position(deployment_id, stored).await {
            tracing::error!("cannot record the queue position: {e}");
        }
        self.deployer
            .announce(
                &d,
                StatusState::Queued,
                &description,
                d.log_url.as_deref(),
                Vec::new(),
            )
            .await;
    }

    async fn start(self: &Arc<Self>, deployment_id: DeploymentId, deploys: &mut JoinSet<()>) {
        let store = &self.deployer.store;
        let log_path = self.deployer.log_path(deployment_id);
        let started = match store.start(deployment_id, &log_path).await {
            Ok(true) => store.get(deployment_id).await,
            Ok(false) => return,
            Err(e) => Err(e),
        };
        let d = match started {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(deployment = %deployment_id, "cannot start: {e}");
                return;
            }
        };
        let (switch, cancel) = watch::channel(None);
        self.running.lock().await.insert(deployment_id, switch);
        let this = Arc::clone(self);
        deploys.spawn(async move {
            this.deployer.run(d, cancel).await;
            this.running.lock().await.remove(&deployment_id);
        });
    }
}
