//! What several zbot instances sharing one store need, and one instance uses the same way: claiming
//! queued work, leases on running deployments, cancels across instances, and waking each other.
//!
//! - A queued deployment becomes `running` only through [`Store::claim`]: one transaction that reads
//!   what runs and what waits, lets the caller choose (the scheduler's rules: the concurrency limit,
//!   one per repository + environment, order of arrival) and marks the chosen ones running under this
//!   instance's lease. On Postgres the transaction first takes one advisory lock, so the claims of all
//!   instances happen one after another and each sees the others' (the rules hold across instances);
//!   the update is conditional on the row still being queued, so a deployment is claimed once.
//! - Each instance registers its id with a heartbeat ([`Store::register`]): a second live process with
//!   one id is refused, since the fencing below is keyed on the id.
//! - The instance running a deployment renews its lease ([`Store::renew`], [`Store::renew_all`]); only the lease holder can
//!   end a running deployment ([`Store::finish`] is fenced by `instance_id`). An instance that sees a
//!   lease expired ([`Store::expired`]) takes it over ([`Store::take_over`], conditional on it still
//!   being expired) and ends it; the paused or cut-off holder finds its renewal refused and stops.
//! - Postgres `NOTIFY zbot_queue` after a deployment is queued or ends, or a cancel is asked for; each
//!   instance `LISTEN`s and wakes its queue ([`Store::queued`]). SQLite has one instance, woken in
//!   process.
//!
//! Lease and heartbeat times are Unix milliseconds of one clock: the Postgres server's when the store
//! is shared (so the instances' own clocks may drift), this process's on SQLite.

use std::path::PathBuf;
use std::sync::Arc;

use sqlx::postgres::PgListener;

use super::{AnyConnection, Backend, Deployment, QueueEntry, Row, Store, StoreError, now, typed};
use crate::domain::{DeploymentId, Environment, Repository};

/// The Postgres channel the instances wake each other on.
const CHANNEL: &str = "zbot_queue";

/// How long after its last heartbeat an instance id is forgotten: a day, in milliseconds.
const FORGET_INSTANCES_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// The advisory lock every claim takes first on Postgres (any constant, the same in every instance).
const CLAIM_LOCK: i64 = 0x7a62_6f74; // "zbot"

/// What the caller chose in [`Store::claim`]: the queued deployments to start, and the waiting ones
/// whose announced queue position changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    pub start: Vec<DeploymentId>,
    /// (deployment, position as stored)
    pub positions: Vec<(DeploymentId, i64)>,
}

/// The condition that no other process has registered this instance's id (parameter `$param` holds
/// this process's token): a process whose id was taken over renews nothing.
fn own_id(param: usize) -> String {
    own_id_of("deployments.instance_id", param)
}

/// [`own_id`] for the instance id `instance` (an SQL expression: a column or a parameter).
fn own_id_of(instance: &str, param: usize) -> String {
    format!(
        "AND NOT EXISTS (SELECT 1 FROM instances i
             WHERE i.instance_id = {instance} AND i.token <> ${param})"
    )
}

/// What [`Store::claim`] did: the deployments this instance now runs (read back, running), and the
/// positions it recorded (to be announced by this instance).
#[derive(Debug, Default)]
pub struct Claimed {
    pub started: Vec<Deployment>,
    pub positions: Vec<(DeploymentId, i64)>,
}

/// The running deployments' repository + environment, the queue oldest first, and the `seq` of each
/// queued row that does not read back, with why.
type QueueView = (
    Vec<(Repository, Environment)>,
    Vec<QueueEntry>,
    Vec<(i64, sqlx::Error)>,
);

/// How many queue positions one statement records (two parameters each).
const POSITIONS_PER_STATEMENT: usize = 500;

/// `at` plus `after`, in Unix milliseconds.
fn millis_after(at: i64, after: std::time::Duration) -> i64 {
    at.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
}

/// The Postgres server's clock in Unix milliseconds: one clock for every instance's leases, so a
/// skew between the instances' own clocks cannot end a lease early.
const SERVER_NOW: &str = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// Whether a Postgres error says the transaction lost a race with another instance's (a deadlock, a
/// serialization failure) and may simply be tried again.
pub(super) fn is_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Queues a wake-up of every instance's queue, sent when the transaction commits.
pub(super) async fn notify_queue(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Listens on the queue channel and wakes `queued` for every notification. After a lost connection
/// (notifications may have been missed meanwhile) it reconnects, once a second until it can, and
/// wakes `queued` after each successful re-`LISTEN`, so work queued while it was away is found. (The
/// scheduler also looks at the queue every third of the lease, for a connection lost unnoticed.)
pub(super) async fn listen(url: &str, queued: Arc<tokio::sync::Notify>) -> Result<(), StoreError> {
    let mut listener = PgListener::connect(url).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    queued.notify_one();
                    continue;
                }
                Ok(None) => tracing::warn!(
                    "the store connection that listens for new work was lost; reconnecting"
                ),
                Err(e) => tracing::error!("cannot listen for new work (reconnecting): {e}"),
            }
            // Any statement reconnects and listens again.
            loop {
                match sqlx::query("SELECT 1").execute(&mut listener).await {
                    Ok(_) => {
                        queued.notify_one();
                        break;
                    }
                    Err(e) => {
                        tracing::error!("cannot listen for new work yet: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
    Ok(())
}

impl Store {
    /// "Now" for leases and heartbeats, in Unix milliseconds: the Postgres server's clock when shared,
    /// this process's alone.
    async fn clock(&self, conn: &mut AnyConnection) -> Result<i64, StoreError> {
        match self.backend {
            Backend::Postgres => {
                let (now,): (i64,) = sqlx::query_as(SERVER_NOW).fetch_one(&mut *conn).await?;
                Ok(now)
            }
            Backend::Sqlite => Ok(chrono::Utc::now().timestamp_millis()),
        }
    }

    /// [`Store::clock`] on a connection of the pool.
    pub(super) async fn clock_now(&self) -> Result<i64, StoreError> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?;
                self.clock(&mut conn).await
            }
            Backend::Sqlite => Ok(chrono::Utc::now().timestamp_millis()),
        }
    }

    /// Wakes the queue of this instance and, on Postgres, of every other.
    pub async fn wake_queues(&self) {
        self.queued.notify_one();
        if self.backend == Backend::Postgres {
            let woken = async {
                let mut conn = self.pool.acquire().await?;
                notify_queue(&mut conn).await
            }
            .await;
            if let Err(e) = woken {
                tracing::error!("cannot wake the other instances: {e}");
            }
        }
    }

    /// Claims queued work for this instance: `choose` sees the running deployments' repository +
    /// environment (of every instance) and the queue oldest first, and says what to start and which
    /// positions to record; the chosen deployments still queued become `running` under this instance's
    /// lease, their log at `log_path(id)`. See the module documentation for why this holds across
    /// instances.
    pub async fn claim(
        &self,
        choose: impl FnOnce(&[(Repository, Environment)], &[QueueEntry]) -> Choice,
        log_path: impl Fn(DeploymentId) -> PathBuf,
    ) -> Result<Claimed, StoreError> {
        let (started, positions) = match self.backend {
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                // Each claim must see the rows the claims before it committed: under REPEATABLE READ
                // (a server's `default_transaction_isolation`) the snapshot would be taken at the lock
                // statement, before the lock is granted, and the concurrency limit overrun.
                sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CLAIM_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let (running, queue, unreadable) = self.queue_view(&mut tx).await?;
                for (seq, e) in unreadable {
                    super::end_unreadable(&mut tx, seq, &e).await?;
                }
                let choice = choose(&running, &queue);
                let started = self.record_claim(&mut tx, &choice, log_path).await?;
                tx.commit().await?;
                (started, choice.positions)
            }
            // One instance, one queue task: nothing else claims between the read and the writes (each
            // still conditional on the row being queued). The connection is not held while the queue
            // is planned, and the writes share one transaction, so one sync.
            Backend::Sqlite => {
                let (running, queue, unreadable) = {
                    let mut conn = self.reads.acquire().await?;
                    self.queue_view(&mut conn).await?
                };
                for (seq, e) in unreadable {
                    self.end_unreadable(seq, &e).await?;
                }
                let choice = choose(&running, &queue);
                let started = if choice.start.is_empty() && choice.positions.is_empty() {
                    Vec::new()
                } else {
                    let mut tx = self.begin_write().await?;
                    let started = self.record_claim(&mut tx, &choice, log_path).await?;
                    tx.commit().await?;
                    started
                };
                (started, choice.positions)
            }
        };
        let mut claimed = Claimed {
            started: Vec::with_capacity(started.len()),
            positions,
        };
        for id in started {
            if let Some(d) = self.get(id).await? {
                claimed.started.push(d);
            }
        }
        Ok(claimed)
    }

    /// The running deployments' repository + environment, the queue oldest first, and the queued rows
    /// that do not read back (for the caller to end `error`, so one such row never stops the queue).
    ///
    /// One statement, so the running and the queued rows are seen at one moment: a deployment that
    /// started in between is never missing from both.
    async fn queue_view(&self, conn: &mut AnyConnection) -> Result<QueueView, StoreError> {
        // Streamed: a queue of a hundred thousand is held as entries, not as rows.
        let mut rows = sqlx::query(
            "SELECT seq, deployment_id, repository, environment, queue_position, state FROM deployments
             WHERE state IN ('running', 'queued') ORDER BY seq",
        )
        .fetch(&mut *conn);
        let mut running = Vec::new();
        let mut queue = Vec::new();
        let mut unreadable = Vec::new();
        while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            let r = &r;
            if r.try_get::<String, _>("state")? == "running" {
                // A running row that does not read back is ended by `Store::running`; here it holds
                // nothing.
                if let (Ok(repository), Ok(environment)) =
                    (typed(r, "repository"), typed(r, "environment"))
                {
                    running.push((repository, environment));
                }
                continue;
            }
            match QueueEntry::from_row(r) {
                Ok(entry) => queue.push(entry),
                Err(e) => unreadable.push((r.try_get("seq")?, e)),
            }
        }
        Ok((running, queue, unreadable))
    }

    /// Marks the chosen deployments running under this instance's lease (those still queued) and
    /// records the positions chosen; the deployments it marked.
    async fn record_claim(
        &self,
        conn: &mut AnyConnection,
        choice: &Choice,
        log_path: impl Fn(DeploymentId) -> PathBuf,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        let lease_until = millis_after(self.clock(&mut *conn).await?, self.lease);
        let mut started = Vec::with_capacity(choice.start.len());
        for &id in &choice.start {
            // A process whose id another has taken over claims nothing (it would not run it, and
            // the other's renewals would keep the claim alive).
            let changed = sqlx::query(&format!(
                "UPDATE deployments SET state = 'running', started_at = $1, log_path = $2,
                        queue_position = NULL, instance_id = $3, lease_until = $4, cancel_reason = NULL
                 WHERE deployment_id = $5 AND state = 'queued' {}",
                own_id_of("$3", 6)
            ))
            .bind(now())
            .bind(log_path(id).display().to_string())
            .bind(self.instance.as_str())
            .bind(lease_until)
            .bind(id.0 as i64)
            .bind(&self.token)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if changed == 1 {
                started.push(id);
            }
        }
        // The positions in a few statements, not one each: a burst of a thousand arrivals is announced
        // by one claim, which holds the writing connection meanwhile. `VALUES` columns are named
        // column1, column2 in both dialects.
        for chunk in choice.positions.chunks(POSITIONS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "UPDATE deployments SET queue_position = v.column2 FROM (VALUES {}) AS v
                 WHERE deployments.deployment_id = v.column1 AND deployments.state = 'queued'",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
            for &(id, position) in chunk {
                query = query.bind(id.0 as i64).bind(position);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(started)
    }

    /// Renews this instance's lease on a running deployment; false if it no longer holds it (another
    /// instance took it over, or it ended, or another process registered this instance's id).
    pub async fn renew(&self, deployment_id: DeploymentId) -> Result<bool, StoreError> {
        let changed = sqlx::query(&format!(
            "UPDATE deployments SET lease_until = $1
             WHERE deployment_id = $2 AND state = 'running' AND instance_id = $3 {}",
            own_id(4)
        ))
        .bind(millis_after(self.clock_now().await?, self.lease))
        .bind(deployment_id.0 as i64)
        .bind(self.instance.as_str())
        .bind(&self.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Renews the leases of `ids` (the deployments this process runs or has claimed and not yet
    /// started: never a row it left behind, which must expire so that another instance ends it) and
    /// this instance's heartbeat; returns the deployments renewed (those missing were taken over or
    /// have ended). [`StoreError::Displaced`] when another process has registered this instance's id.
    pub async fn renew_all(&self, ids: &[DeploymentId]) -> Result<Vec<DeploymentId>, StoreError> {
        let now = self.clock_now().await?;
        let renewed: Vec<(i64,)> = if ids.is_empty() {
            Vec::new()
        } else {
            let listed: Vec<String> = (4..4 + ids.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "UPDATE deployments SET lease_until = $1
                 WHERE state = 'running' AND instance_id = $2 {} AND deployment_id IN ({})
                 RETURNING deployment_id",
                own_id(3),
                listed.join(", ")
            );
            let mut query = sqlx::query_as(&sql)
                .bind(millis_after(now, self.lease))
                .bind(self.instance.as_str())
                .bind(&self.token);
            for id in ids {
                query = query.bind(id.0 as i64);
            }
            query.fetch_all(&self.pool).await?
        };
        let beat = sqlx::query(
            "UPDATE instances SET heartbeat_at = $1 WHERE instance_id = $2 AND token = $3",
        )
        .bind(now)
        .bind(self.instance.as_str())
        .bind(&self.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if beat == 0 {
            return Err(StoreError::Displaced {
                instance: self.instance.to_string(),
            });
        }
        Ok(renewed
            .into_iter()
            .map(|(id,)| DeploymentId(id as u64))
            .collect())
    }

    /// Records this process as the live instance of its id, before it recovers or claims anything.
    /// Alone on SQLite (the data directory's lock keeps it alone) it simply takes the id. On a shared
    /// store, an id whose heartbeat is within the lease is another process's: if that heartbeat moves
    /// on while this one waits for it to expire, the other is alive and this one is refused
    /// ([`StoreError::InstanceLive`]); if it expires (a restart after a crash), the id is taken over.
    pub async fn register(&self) -> Result<(), StoreError> {
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let heartbeat = || async {
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT heartbeat_at FROM instances WHERE instance_id = $1")
                    .bind(self.instance.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            Ok::<_, StoreError>(row.map(|(at,)| at))
        };
        let first = heartbeat().await?;
        let mut waited = false;
        loop {
            let now = self.clock_now().await?;
            // Alone: whatever the row says. Shared: only an expired heartbeat is taken.
            let expired_before = if self.is_shared() {
                now.saturating_sub(lease)
            } else {
                i64::MAX
            };
            let taken = sqlx::query(
                "INSERT INTO instances (instance_id, token, heartbeat_at) VALUES ($1, $2, $3)
                 ON CONFLICT (instance_id) DO UPDATE SET token = excluded.token,
                     heartbeat_at = excluded.heartbeat_at
                 WHERE instances.heartbeat_at < $4",
            )
            .bind(self.instance.as_str())
            .bind(&self.token)
            .bind(now)
            .bind(expired_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if taken == 1 {
                // Ids of processes gone for a day (default ids, `host-pid`, after crashes) are
                // forgotten, so the table does not grow with every restart.
                sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1 AND instance_id <> $2")
                    .bind(now.saturating_sub(FORGET_INSTANCES_AFTER_MS))
                    .bind(self.instance.as_str())
                    .execute(&self.pool)
                    .await?;
                return Ok(());
            }
            let current = heartbeat().await?;
            if current != first {
                return Err(StoreError::InstanceLive {
                    instance: self.instance.to_string(),
                    age_ms: current.map_or(0, |at| now.saturating_sub(at)),
                });
            }
            if !waited {
                tracing::warn!(
                    instance = %self.instance,
                    "an instance with this id renewed its heartbeat within the lease; waiting for it to expire (a restart after a crash) or to move on (another live instance, refused)"
                );
                waited = true;
            }
            tokio::time::sleep(self.lease / 6).await;
        }
    }

    /// Forgets this process as the live instance of its id (a clean stop), so a restart with the same
    /// id need not wait for the heartbeat to expire.
    pub async fn deregister(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM instances WHERE instance_id = $1 AND token = $2")
            .bind(self.instance.as_str())
            .bind(&self.token)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How long until the earliest lease of a running deployment expires (zero if one has); `None`
    /// when nothing runs.
    pub async fn next_expiry(&self) -> Result<Option<std::time::Duration>, StoreError> {
        let row: (Option<i64>,) =
            sqlx::query_as("SELECT MIN(lease_until) FROM deployments WHERE state = 'running'")
                .fetch_one(&self.pool)
                .await?;
        let now = self.clock_now().await?;
        Ok(row.0.map(|at| {
            let left = at.saturating_sub(now);
            std::time::Duration::from_millis(u64::try_from(left).unwrap_or(0))
        }))
    }

    /// Running deployments whose lease has expired: their instance stopped renewing it.
    pub async fn expired(&self) -> Result<Vec<Deployment>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM deployments WHERE state = 'running' AND lease_until < $1 ORDER BY seq",
        )
        .bind(self.clock_now().await?)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes this instance the holder of a running deployment, to end it: only if its lease has expired
    /// (another instance stopped), or whatever its lease when `expired_only` is false (start-up
    /// recovery of a store no other instance shares, or of this instance's own id). False if another
    /// instance took it first, or it ended.
    pub async fn take_over(
        &self,
        deployment_id: DeploymentId,
        expired_only: bool,
    ) -> Result<bool, StoreError> {
        let now = self.clock_now().await?;
        let condition = if expired_only {
            "AND lease_until < $4"
        } else {
            "AND $4 = $4"
        };
        let changed = sqlx::query(&format!(
            "UPDATE deployments SET instance_id = $1, lease_until = $2
             WHERE deployment_id = $3 AND state = 'running' {condition}"
        ))
        .bind(self.instance.as_str())
        .bind(millis_after(now, self.lease))
        .bind(deployment_id.0 as i64)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Asks the instance running a deployment to cancel it (`reason` becomes its description); false
    /// if it is not running.
    pub async fn request_cancel(
        &self,
        deployment_id: DeploymentId,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE deployments SET cancel_reason = $1 WHERE deployment_id = $2 AND state = 'running'",
        )
        .bind(reason)
        .bind(deployment_id.0 as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 1 {
            self.wake_queues().await;
        }
        Ok(changed == 1)
    }

    /// The cancels asked for the deployments this instance runs: (deployment, reason).
    pub async fn cancel_requests(&self) -> Result<Vec<(DeploymentId, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT deployment_id, cancel_reason FROM deployments
             WHERE state = 'running' AND instance_id = $1 AND cancel_reason IS NOT NULL",
        )
        .bind(self.instance.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    DeploymentId(r.try_get::<i64, _>("deployment_id")? as u64),
                    r.try_get("cancel_reason")?,
                ))
            })
            .collect()
    }
}
