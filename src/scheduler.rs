//! The queue: which stored deployment runs next, and when.
//!
//! Rules: at most `[deploy] concurrency` deploys at once; one at a time per repository + environment,
//! later ones waiting in order of arrival with a `queued` status that tells their position (never
//! Heaven's "Already deploying."). Different environments of one repository run in parallel.
//!
//! The scheduler is one task; it claims work from the [`Store`] each time it wakes (a deployment was
//! stored, a deploy ended, a cancel — here or, on Postgres, on another instance) so the database stays
//! the single source of truth, also across restarts and instances: at start, deployments a previous
//! process was running end as `error`. With several instances on one store ([`Store::is_shared`]) a
//! second task keeps the leases of this instance's running deploys (a lost lease, or one not renewed
//! by its local deadline, stops the deploy and its guard's heartbeats), and a third ends, each in a
//! task of its own, the deploys of instances that stopped renewing theirs.
//!
//! [`Store`]: crate::store::Store
//! [`Store::is_shared`]: crate::store::Store::is_shared

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinSet;

use crate::domain::{DeploymentId, Environment, Repository};
use crate::forge::StatusState;
use crate::runner::Deployer;
use crate::store::shared::Choice;
use crate::store::{DeploymentState, QueueEntry};

use crate::reply::{LEASE_LOST, RESTARTED};

/// How soon the queue is looked at again after the store could not be read.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

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
    /// Cancel switches of the deploys this process runs, and of those it has claimed and not yet
    /// started: the leases it renews are exactly these.
    running: Mutex<HashMap<DeploymentId, watch::Sender<Option<String>>>>,
    /// Another process registered this instance's id: this one claims nothing more.
    displaced: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// The recipes the deploys run (stock and the recipes directory's), for checks made before a
    /// deployment is created.
    pub fn recipes(&self) -> &crate::recipe::Recipes {
        &self.deployer.recipes
    }

    pub fn new(deployer: Arc<Deployer>) -> Arc<Scheduler> {
        let concurrency = deployer.config.deploy.concurrency.max(1);
        Arc::new(Scheduler {
            deployer,
            concurrency,
            wake: Notify::new(),
            running: Mutex::default(),
            displaced: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Something changed: look at the queue again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ends deployments a previous process left running: alone on the store, every running one; with
    /// other instances, those recorded under this instance's own id (a restart with the same
    /// `--instance-id`) and those whose lease expired.
    pub async fn recover(&self) {
        let store = &self.deployer.store;
        match store.running().await {
            Ok(interrupted) => {
                for d in interrupted {
                    let mine =
                        !store.is_shared() || d.instance_id.as_ref() == Some(store.instance());
                    if mine && matches!(store.take_over(d.deployment_id, false).await, Ok(true)) {
                        self.deployer.end_interrupted(&d, RESTARTED).await;
                    }
                }
            }
            Err(e) => tracing::error!("cannot read interrupted deploys: {e}"),
        }
        if store.is_shared() {
            self.end_expired().await;
        }
    }

    /// Ends the deploys of instances that stopped renewing their leases; true if there were any. Each
    /// is ended in a task of its own: stopping its processes and telling GitHub take seconds, and
    /// nothing here may wait on them.
    async fn end_expired(&self) -> bool {
        let store = &self.deployer.store;
        let within = store.lease() / 3;
        let expired = match tokio::time::timeout(within, store.expired()).await {
            Ok(Ok(expired)) => expired,
            Ok(Err(e)) => {
                tracing::error!("cannot read the expired leases: {e}");
                return false;
            }
            Err(_) => {
                tracing::error!("cannot read the expired leases: no answer within {within:?}");
                return false;
            }
        };
        let mut ended = false;
        for d in expired {
            // This instance's own, still running here: the store was out of reach; its renewals
            // resume now (or its deadline has stopped it already).
            let own = d.instance_id.as_ref() == Some(store.instance());
            if own && self.running.lock().await.contains_key(&d.deployment_id) {
                continue;
            }
            // Only one instance takes it over.
            if matches!(
                tokio::time::timeout(within, store.take_over(d.deployment_id, true)).await,
                Ok(Ok(true))
            ) {
                tracing::warn!(
                    deployment = %d.deployment_id,
                    instance = d.instance_id.as_ref().map_or("unknown", |i| i.as_str()),
                    "the instance running this deploy stopped renewing its lease"
                );
                let deployer = Arc::clone(&self.deployer);
                tokio::spawn(async move {
                    let why = if own {
                        crate::reply::STORE_LOST.to_string()
                    } else {
                        crate::reply::instance_stopped(d.instance_id.as_ref())
                    };
                    deployer.end_interrupted(&d, &why).await;
                });
                ended = true;
            }
        }
        ended
    }

    /// Ends the deploys of instances that stopped, just after the earliest lease expires and at least
    /// every third of the lease; each look also wakes the queue, so work whose wake-up was lost (a
    /// `NOTIFY` missed while the listener reconnected) is still found.
    async fn watch_expired(self: Arc<Self>) {
        let every = self.deployer.store.lease() / 3;
        loop {
            self.end_expired().await;
            self.wake();
            // Just after the earliest lease expires (at most a third of the lease on), so a stopped
            // instance's deploys end within the lease plus moments, not plus a whole interval; not
            // more often than every ninth of the lease (an expired lease of this instance's own, still
            // running here, is not taken over and would otherwise be looked at in a loop).
            let next = match tokio::time::timeout(every, self.deployer.store.next_expiry()).await {
                Ok(Ok(Some(left))) => (left + Duration::from_millis(50)).max(every / 3),
                _ => every,
            };
            tokio::time::sleep(next.min(every)).await;
        }
    }

    /// Renews the leases of the deploys this instance runs (or has claimed), every sixth of the lease,
    /// each renewal bounded by a sixth of the lease, so one renewal that fails or gets no answer is
    /// followed by another before any deadline passes. A deploy is stopped when its lease is lost:
    /// not renewed (another instance took it over), or past its local deadline — the start of its
    /// last successful renewal plus half the lease — whatever the store says (it cannot be reached, or
    /// this instance was paused); its guard kills it at the latest a quarter of the lease after that,
    /// so it is dead well before another instance may take it over. When another process has taken
    /// this instance's id, every deploy here stops and this instance claims nothing more.
    async fn keep_leases(self: Arc<Self>) {
        let store = &self.deployer.store;
        let lease = store.lease();
        let every = crate::runner::renew_every(lease);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadlines = &self.deployer.lease_deadlines;
        let mut missed = 0u32;
        loop {
            ticks.tick().await;
            let ids: Vec<DeploymentId> = self.running.lock().await.keys().copied().collect();
            let began = tokio::time::Instant::now();
            let mut lost = Vec::new();
            match tokio::time::timeout(every, store.renew_all(&ids)).await {
                Ok(Ok(renewed)) => {
                    if missed > 0 {
                        tracing::info!("the leases are renewed again after {missed} miss(es)");
                    }
                    missed = 0;
                    for id in &ids {
                        if renewed.contains(id) {
                            deadlines.set(*id, began + lease / 2);
                        } else if !self.ended_here(*id).await {
                            // Another instance took it over (and ends it, or has).
                            lost.push(*id);
                        }
                    }
                }
                Ok(Err(crate::store::StoreError::Displaced { instance })) => {
                    tracing::error!(
                        instance,
                        "another zbot process has taken over this instance's id: stopping every deploy here and claiming nothing more (restart this process with its own --instance-id)"
                    );
                    self.displaced
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    for switch in self.running.lock().await.values() {
                        if switch.borrow().is_none() {
                            let _ = switch.send(Some(LEASE_LOST.to_string()));
                        }
                    }
                    return;
                }
                Ok(Err(e)) => {
                    missed += 1;
                    tracing::error!("cannot renew the leases (miss {missed}): {e}");
                }
                Err(_) => {
                    missed += 1;
                    tracing::error!(
                        "cannot renew the leases (miss {missed}): no answer within {every:?}"
                    );
                }
            }
            for id in deadlines.overdue(tokio::time::Instant::now()) {
                if !lost.contains(&id) {
                    lost.push(id);
                }
            }
            let running = self.running.lock().await;
            for id in lost {
                if let Some(switch) = running.get(&id)
                    && switch.borrow().is_none()
                {
                    tracing::warn!(deployment = %id, "lost the lease on this deploy; stopping it");
                    let _ = switch.send(Some(LEASE_LOST.to_string()));
                }
            }
        }
    }

    /// Whether this instance's deploy `id` has just ended it itself (it is leaving): then its lease
    /// was not lost.
    async fn ended_here(&self, id: DeploymentId) -> bool {
        let store = &self.deployer.store;
        let within = crate::runner::renew_every(store.lease());
        matches!(
            tokio::time::timeout(within, store.get(id)).await,
            Ok(Ok(Some(d))) if d.instance_id.as_ref() == Some(store.instance())
                && d.state != DeploymentState::Running
        )
    }

    /// Passes on the cancels asked for on other instances (or here, before a deploy's switch was in
    /// place) to the deploys this instance runs.
    async fn apply_cancel_requests(&self) {
        let requests = match self.deployer.store.cancel_requests().await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!("cannot read the cancels asked for: {e}");
                return;
            }
        };
        let running = self.running.lock().await;
        for (id, reason) in requests {
            if let Some(switch) = running.get(&id)
                && switch.borrow().is_none()
            {
                let _ = switch.send(Some(reason));
            }
        }
    }

    /// Stops a queued or running deployment, wherever it runs; `reason` becomes its status description.
    pub async fn cancel(&self, deployment_id: DeploymentId, reason: &str) -> Cancelled {
        if let Some(switch) = self.running.lock().await.get(&deployment_id) {
            let _ = switch.send(Some(reason.to_string()));
            return Cancelled::Running;
        }
        match self.deployer.store.get(deployment_id).await {
            Ok(Some(d)) if d.state == DeploymentState::Queued => {
                // Only while it is still queued: if a queue started it meanwhile, it is stopped as
                // a running one.
                if self.deployer.end_queued(&d, reason).await {
                    self.wake();
                    return Cancelled::Queued;
                }
                self.cancel_running(deployment_id, reason).await
            }
            Ok(Some(d)) if d.state == DeploymentState::Running => {
                self.cancel_running(deployment_id, reason).await
            }
            _ => Cancelled::NotActive,
        }
    }

    /// Stops a running deploy: through its switch if it runs here, else through the store, where the
    /// instance running it (or this one, once its switch is in place) finds the request.
    async fn cancel_running(&self, deployment_id: DeploymentId, reason: &str) -> Cancelled {
        if let Some(switch) = self.running.lock().await.get(&deployment_id) {
            let _ = switch.send(Some(reason.to_string()));
            return Cancelled::Running;
        }
        match self
            .deployer
            .store
            .request_cancel(deployment_id, reason)
            .await
        {
            Ok(true) => {
                self.wake();
                Cancelled::Running
            }
            Ok(false) => Cancelled::NotActive,
            Err(e) => {
                tracing::error!(deployment = %deployment_id, "cannot ask for the cancel: {e}");
                Cancelled::NotActive
            }
        }
    }

    /// Serves the queue until `shutdown` turns true, then lets running deploys finish for up to
    /// `grace` before stopping them (they end as `error`).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut deploys = JoinSet::new();
        let leases = self.deployer.store.is_shared().then(|| {
            (
                tokio::spawn(Arc::clone(&self).keep_leases()),
                tokio::spawn(Arc::clone(&self).watch_expired()),
            )
        });
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.start_what_can_run(&mut deploys).await;
            self.apply_cancel_requests().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.deployer.store.queued().notified() => {}
                Some(joined) = deploys.join_next(), if !deploys.is_empty() => {
                    if let Err(e) = joined {
                        self.after_a_failed_deploy_task(e).await;
                    }
                }
                // Its sender gone without a word (an error path dropped it) is a stop too, not a
                // change to look at again at once, for ever.
                stopped = shutdown.changed() => if stopped.is_err() { break },
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
        if let Some((leases, expired)) = leases {
            leases.abort();
            expired.abort();
            if let Err(e) = self.deployer.store.deregister().await {
                tracing::warn!("cannot record that this instance stopped: {e}");
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
        if self.displaced.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let concurrency = self.concurrency;
        let mut announce = Vec::new();
        let claimed = store
            .claim(
                |running, queued| {
                    let plan = plan(running, queued, concurrency);
                    let waiting = queued.len().saturating_sub(plan.start.len());
                    self.deployer
                        .metrics
                        .queue_depth
                        .set(i64::try_from(waiting).unwrap_or(i64::MAX));
                    let positions = plan
                        .announce
                        .iter()
                        .map(|w| (w.deployment_id, w.stored()))
                        .collect();
                    announce = plan.announce;
                    Choice {
                        start: plan.start,
                        positions,
                    }
                },
                |id| self.deployer.log_path(id),
            )
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                // The store may be back in a moment (a lost connection, a transaction another
                // instance won): the queue looks again then, woken or not.
                tracing::error!("cannot read the queue (trying again in {CLAIM_RETRY:?}): {e}");
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(CLAIM_RETRY).await;
                    this.wake();
                });
                return;
            }
        };
        // Each claimed deploy has its switch before any starts, so its lease is renewed (and a cancel
        // reaches it) while the ones before it start.
        let mut switches = Vec::with_capacity(claimed.started.len());
        {
            let mut running = self.running.lock().await;
            for d in &claimed.started {
                let (switch, cancel) = watch::channel(None);
                running.insert(d.deployment_id, switch);
                switches.push(cancel);
            }
        }
        for (d, cancel) in claimed.started.into_iter().zip(switches) {
            self.start(d, cancel, deploys).await;
        }
        for wait in announce {
            if claimed
                .positions
                .iter()
                .any(|(id, _)| *id == wait.deployment_id)
            {
                self.announce_queued(wait).await;
            }
        }
    }

    async fn announce_queued(&self, wait: Wait) {
        let store = &self.deployer.store;
        let Ok(Some(d)) = store.get(wait.deployment_id).await else {
            return;
        };
        if d.state != DeploymentState::Queued {
            return;
        }
        let description = crate::reply::queued(&d, wait.ahead, self.concurrency);
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

    /// Runs a deployment this instance has claimed (it is marked running), with its cancel switch;
    /// on a shared store only once its lease is renewed: this instance may have been paused since the
    /// claim, and another may have ended the deployment meanwhile. A store that does not answer is
    /// asked again until half the lease has passed since the first try; then the deployment ends
    /// `error` without running (or, if that cannot be recorded either, its lease, no longer renewed,
    /// expires and an instance ends it).
    async fn start(
        self: &Arc<Self>,
        d: crate::store::Deployment,
        cancel: watch::Receiver<Option<String>>,
        deploys: &mut JoinSet<()>,
    ) {
        let deployment_id = d.deployment_id;
        let store = &self.deployer.store;
        let first_try = tokio::time::Instant::now();
        match self
            .deployer
            .holds_lease(&d, first_try + store.lease() / 2)
            .await
        {
            crate::runner::Lease::Held { since } => {
                if store.is_shared() {
                    self.deployer
                        .lease_deadlines
                        .set(deployment_id, since + store.lease() / 2);
                }
            }
            crate::runner::Lease::Lost => {
                self.running.lock().await.remove(&deployment_id);
                tracing::warn!(deployment = %deployment_id, "lost the lease on this deploy before it started; not running it");
                return;
            }
            crate::runner::Lease::Unanswered => {
                tracing::error!(deployment = %deployment_id, "the store did not answer before this deploy could start; ending it without running it");
                self.deployer
                    .end_unrun(&d, crate::reply::STORE_LOST_BEFORE_START)
                    .await;
                self.running.lock().await.remove(&deployment_id);
                self.wake();
                return;
            }
        }
        let waited = (chrono::Utc::now() - d.created_at)
            .to_std()
            .unwrap_or_default();
        self.deployer
            .metrics
            .queue_wait
            .observe(waited.as_secs_f64());
        let this = Arc::clone(self);
        deploys.spawn(async move {
            this.deployer.run(d, cancel).await;
            this.running.lock().await.remove(&deployment_id);
            this.deployer.lease_deadlines.release(deployment_id);
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
