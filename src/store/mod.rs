//! zbot's durable state: all SQL lives here (sqlx). Two backends behind one API: SQLite in the data
//! directory (WAL, `synchronous = FULL`) for one instance, the default; Postgres (`[store] url`) for
//! several instances sharing the work.
//!
//! The store holds every accepted deployment and its state (the queue is the `queued` rows in order of
//! arrival; a redelivered or polled deployment is known by its id, so the `deliveries` table of the
//! first migration is no longer written), environment locks, and what the chat side must
//! not forget across a restart (the chat events it handled, the outcome replies it posted). A
//! deployment is written before its webhook is answered, so an accepted deployment survives a crash;
//! [`Store::running`] finds the ones a previous process was running.
//!
//! The queries are written once, in the SQL both dialects share (`$1` parameters, `ON CONFLICT`), and
//! run through sqlx's `Any` driver; the schema exists in both dialects (`migrations/` for SQLite,
//! `migrations/postgres/` beside it, the same numbers). What several instances need — claiming queued
//! work, leases on running deployments, waking each other — is in [`shared`].

pub mod shared;

use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, Executor, FromRow, Row};
use tokio::sync::{mpsc, oneshot};

use crate::config::StoreConfig;
use crate::domain::{
    AppName, DeploymentId, Environment, GitRef, Hosts, InstanceId, Notify, Repository, Sha, Task,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("storing failed: {0}")]
    Writer(String),
    /// The store did not answer within this long (a half-open connection, a server that hangs).
    #[error("the store did not answer within {0:?}")]
    Unanswered(Duration),
    /// `--instance-id` names an instance that is alive: fencing is keyed on the id, so two processes
    /// with one id would end each other's deploys.
    #[error(
        "another zbot instance with the id `{instance}` is running (it renewed its heartbeat {age_ms} ms ago): give each instance its own --instance-id (with systemd: --instance-id %H-%i)"
    )]
    InstanceLive { instance: String, age_ms: i64 },
    /// Another process registered this instance's id (this one was paused or cut off past its
    /// heartbeat, and a restart took the id): this process holds nothing any more and must stop.
    #[error(
        "another zbot process has taken over the instance id `{instance}`: this one holds no lease any more and stops"
    )]
    Displaced { instance: String },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    /// A stored value outside what zbot ever writes (a row changed by hand, another program).
    #[error("the store holds a value zbot cannot read: {0}")]
    Corrupt(String),
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    Queued,
    Running,
    Success,
    Failure,
    Error,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Queued => "queued",
            DeploymentState::Running => "running",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Error => "error",
        }
    }
}

impl FromStr for DeploymentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => DeploymentState::Queued,
            "running" => DeploymentState::Running,
            "success" => DeploymentState::Success,
            "failure" => DeploymentState::Failure,
            "error" => DeploymentState::Error,
            other => return Err(format!("unknown deployment state `{other}`")),
        })
    }
}

/// A deployment as accepted from a webhook, before it is stored: every value already validated, the app
/// and environment as configured.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub deployment_id: DeploymentId,
    pub app: AppName,
    pub repository: Repository,
    pub clone_url: String,
    pub environment: Environment,
    pub git_ref: GitRef,
    pub sha: Sha,
    pub task: Task,
    /// The payload as sent (hubot-deploy/Heaven compatible); its `hosts` and `notify` were validated.
    pub payload: serde_json::Value,
    pub actor: String,
}

/// A stored deployment, its values validated again as they are read back.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub seq: i64,
    pub deployment_id: DeploymentId,
    pub app: AppName,
    pub repository: Repository,
    pub clone_url: String,
    pub environment: Environment,
    pub git_ref: GitRef,
    pub sha: Sha,
    pub task: Task,
    /// The payload's `hosts`, if it limits the deploy to some hosts.
    pub hosts: Option<Hosts>,
    /// The payload's `notify`: where chat talks about this deployment.
    pub notify: Option<Notify>,
    pub payload: serde_json::Value,
    pub actor: String,
    pub state: DeploymentState,
    pub description: String,
    pub queue_position: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i64>,
    pub process_group: Option<i64>,
    pub log_path: Option<String>,
    pub log_url: Option<String>,
    /// The instance running it (or that last ran it); `None` before instances were recorded.
    pub instance_id: Option<InstanceId>,
}

impl<'r> FromRow<'r, AnyRow> for Deployment {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        let decode = |column: &str, message: String| sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: message.into(),
        };
        let time = |column: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
            row.try_get::<Option<String>, _>(column)?
                .map(|t| {
                    DateTime::parse_from_rfc3339(&t)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| decode(column, e.to_string()))
                })
                .transpose()
        };
        let state: String = row.try_get("state")?;
        let payload: String = row.try_get("payload")?;
        let payload: serde_json::Value =
            serde_json::from_str(&payload).map_err(|e| decode("payload", e.to_string()))?;
        let parts =
            crate::payload::Parts::of(&payload).map_err(|e| decode("payload", e.to_string()))?;
        Ok(Deployment {
            seq: row.try_get("seq")?,
            deployment_id: DeploymentId(row.try_get::<i64, _>("deployment_id")? as u64),
            app: typed(row, "app")?,
            repository: typed(row, "repository")?,
            clone_url: row.try_get("clone_url")?,
            environment: typed(row, "environment")?,
            git_ref: typed(row, "git_ref")?,
            sha: typed(row, "sha")?,
            task: typed(row, "task")?,
            hosts: parts.hosts,
            notify: parts.notify,
            payload,
            actor: row.try_get("actor")?,
            state: state.parse().map_err(|e| decode("state", e))?,
            description: row.try_get("description")?,
            queue_position: row.try_get("queue_position")?,
            created_at: time("created_at")?.unwrap_or_default(),
            started_at: time("started_at")?,
            finished_at: time("finished_at")?,
            exit_code: row.try_get("exit_code")?,
            process_group: row.try_get("process_group")?,
            log_path: row.try_get("log_path")?,
            log_url: row.try_get("log_url")?,
            instance_id: row
                .try_get::<Option<String>, _>("instance_id")?
                .map(|i| i.parse())
                .transpose()
                .map_err(|e: crate::domain::Invalid| decode("instance_id", e.to_string()))?,
        })
    }
}

/// A column read back into its domain type: a row that no longer validates is an error, never used.
fn typed<T: std::str::FromStr<Err = crate::domain::Invalid>>(
    row: &AnyRow,
    column: &str,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|e: crate::domain::Invalid| sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: e.to_string().into(),
        })
}

/// Ends the queued or running row `seq`, whose values no longer validate, as `error` (logged).
async fn end_unreadable(
    conn: &mut AnyConnection,
    seq: i64,
    why: &sqlx::Error,
) -> Result<(), StoreError> {
    tracing::error!(
        seq,
        "ending a stored deployment zbot cannot read back: {why}"
    );
    sqlx::query(
        "UPDATE deployments SET state = 'error', description = $1, finished_at = $2, queue_position = NULL
         WHERE seq = $3 AND state IN ('queued', 'running')",
    )
    .bind(format!("zbot cannot read this deployment back: {why}"))
    .bind(now())
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// A waiting deployment, as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    pub deployment_id: DeploymentId,
    pub repository: Repository,
    pub environment: Environment,
    /// The position last announced, if any.
    pub queue_position: Option<i64>,
}

impl QueueEntry {
    fn from_row(r: &AnyRow) -> Result<QueueEntry, sqlx::Error> {
        Ok(QueueEntry {
            deployment_id: DeploymentId(r.try_get::<i64, _>("deployment_id")? as u64),
            repository: typed(r, "repository")?,
            environment: typed(r, "environment")?,
            queue_position: r.try_get("queue_position")?,
        })
    }
}

/// What shows that the queue can be read: a read of the table (the schema, a WAL read lock), not only
/// an open file.
const READS_CHECK: &str = "SELECT 1 FROM deployments LIMIT 1";

/// The queued deployments, oldest first.
const QUEUE: &str =
    "SELECT seq, deployment_id, repository, environment, queue_position FROM deployments
                     WHERE state = 'queued' ORDER BY seq";

/// An environment lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub app: AppName,
    pub environment: Environment,
    pub holder: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it ends by itself; `None`: when it is unlocked.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What [`Store::accept`] made of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored: it will run.
    New,
    /// This deployment id is stored already: a redelivery, a second delivery of the same deployment,
    /// or the same deployment found by polling. GitHub numbers deployments, so the id names it.
    Duplicate,
}

/// Which database a [`Store`] speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file in the data directory: one instance.
    Sqlite,
    /// A server several instances share.
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The migrations of one dialect, compiled into the binary: `migrations/NNNN_name.sql` for SQLite and
/// `migrations/postgres/NNNN_name.sql` for Postgres, the same numbers and names in both (a test checks).
#[derive(Debug)]
struct EmbeddedMigrations(Backend);

/// The advisory lock [`Store::lock`] takes first on Postgres (any constant, the same in every instance,
/// other than the claim's).
const LOCKS_LOCK: i64 = 0x7a62_6c6b; // "zblk"

/// (version, description, SQLite text, Postgres text)
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/0001_initial.sql"),
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "refused",
        include_str!("../../migrations/0002_refused.sql"),
        include_str!("../../migrations/postgres/0002_refused.sql"),
    ),
    (
        3,
        "chat durability",
        include_str!("../../migrations/0003_chat_durability.sql"),
        include_str!("../../migrations/postgres/0003_chat_durability.sql"),
    ),
    (
        5,
        "guards",
        include_str!("../../migrations/0005_guards.sql"),
        include_str!("../../migrations/postgres/0005_guards.sql"),
    ),
    (
        6,
        "polling",
        include_str!("../../migrations/0006_polling.sql"),
        include_str!("../../migrations/postgres/0006_polling.sql"),
    ),
    (
        7,
        "instances",
        include_str!("../../migrations/0007_instances.sql"),
        include_str!("../../migrations/postgres/0007_instances.sql"),
    ),
    // 8's comment is wrong on one point, and it stays as applied (see the test
    // `applied_migrations_never_change`): a deployment still carrying a grant made before it is
    // refused (the grant is unknown: `Denial::GrantNotValid`), not run as its GitHub creator. README's
    // "Upgrading" says to let the queue drain first.
    (
        8,
        "grant claims",
        include_str!("../../migrations/0008_grant_claims.sql"),
        include_str!("../../migrations/postgres/0008_grant_claims.sql"),
    ),
    (
        11,
        "instance liveness",
        include_str!("../../migrations/0011_instance_liveness.sql"),
        include_str!("../../migrations/postgres/0011_instance_liveness.sql"),
    ),
];

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<
        Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 'static>,
    > {
        let backend = self.0;
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sqlite, postgres)| {
                    let sql = match backend {
                        Backend::Sqlite => sqlite,
                        Backend::Postgres => postgres,
                    };
                    Migration::new(
                        version,
                        description.into(),
                        MigrationType::Simple,
                        sql.into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// A cheap-to-clone handle on the database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Where the queue is read for a claim. On SQLite a read-only connection of its own: a deep
    /// queue's read does not hold up the one connection that writes (WAL lets readers and the writer
    /// work side by side, and a reader never waits for the write lock). On Postgres, `pool`.
    reads: AnyPool,
    backend: Backend,
    /// This process, as the holder of the leases of the deployments it runs.
    instance: InstanceId,
    /// How long a claim on a running deployment holds without a renewal.
    lease: Duration,
    /// Tells this process from another that was given the same instance id ([`Store::register`]).
    token: String,
    /// Deliveries to the group-commit writer.
    accepts: mpsc::Sender<PendingAccept>,
    /// Notified whenever the queue may have changed (a deployment was queued or ended, here or, with
    /// Postgres, on another instance), so the queue learns of new work from the store itself, whoever
    /// stored it (a webhook, the embedded forge, another instance).
    queued: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for PendingAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAccept")
            .field("deployment", &self.deployment.deployment_id)
            .finish()
    }
}

/// How long a status message's reservation holds without the message being recorded: a post takes
/// well under a second, so an older one belongs to an instance that stopped mid-post.
pub const RESERVATION_EXPIRY: Duration = Duration::from_secs(15);

/// How long connecting to the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Opens (creating if needed) `zbot.sqlite` in `data_dir` and brings its schema up to date, for this
    /// process alone (its default instance id and lease).
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_sqlite(
            data_dir,
            InstanceId::of_this_process(),
            crate::config::DEFAULT_LEASE,
        )
        .await
    }

    /// Opens the store `[store]` names: Postgres at its `url`, else SQLite in `data_dir`.
    pub async fn from_config(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
        match &config.url {
            Some(url) => {
                Store::open_postgres(url.expose(), config.instance.clone(), config.lease).await
            }
            None => Store::open_sqlite(data_dir, config.instance.clone(), config.lease).await,
        }
    }

    async fn open_sqlite(
        data_dir: &Path,
        instance: InstanceId,
        lease: Duration,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let file = std::path::absolute(data_dir.join("zbot.sqlite")).map_err(|source| {
            StoreError::DataDir {
                path: data_dir.display().to_string(),
                source,
            }
        })?;
        // The Any driver takes a URL; the path is percent-encoded (sqlx decodes it).
        let path: String = file
            .to_string_lossy()
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let options: AnyConnectOptions = format!("sqlite://{path}?mode=rwc").parse()?;
        sqlx::any::install_default_drivers();
        // One connection: SQLite lets one writer in at a time, and a second connection that finds
        // the file locked waits in SQLite's busy handler, which sleeps 1, 2, 5, 10… ms between tries
        // (tens of milliseconds on a webhook's answer). In one connection the statements queue in
        // order instead, each taking microseconds, and the group commit keeps batching deliveries.
        // A connection to a local file does not go stale: no ping (a round trip to the connection's
        // thread) before each statement. A failing statement still says so.
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL; FULL: a deployment answered 202 must survive a power cut, not only a crash.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let reads = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            })
            // Lazily, for the file and its schema to exist first; connected below, so that a store
            // whose queue cannot be read fails at start, not later in silence.
            .connect_lazy_with(format!("sqlite://{path}?mode=ro").parse()?);
        let store = Store::ready(pool, reads, Backend::Sqlite, instance, lease).await?;
        sqlx::query(READS_CHECK).execute(&store.reads).await?;
        Ok(store)
    }

    async fn open_postgres(
        url: &str,
        instance: InstanceId,
        lease: Duration,
    ) -> Result<Store, StoreError> {
        // sqlx's PgConnectOptions reads the URL (sslmode included) and, without a password in it,
        // PGPASSWORD or ~/.pgpass.
        let options: AnyConnectOptions = url.parse()?;
        sqlx::any::install_default_drivers();
        // A transaction left open longer than half a lease is an instance that stopped (paused, cut
        // off) in its middle: Postgres ends its session, so the locks it held (the claim lock, rows)
        // do not stop the other instances. zbot's own transactions take milliseconds.
        let idle_limit = (lease / 2).as_millis().max(500);
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(
                        format!("SET idle_in_transaction_session_timeout = {idle_limit}").as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store::ready(pool.clone(), pool, Backend::Postgres, instance, lease).await?;
        shared::listen(url, Arc::clone(&store.queued)).await?;
        Ok(store)
    }

    /// Brings the schema up to date and starts the group-commit writer.
    async fn ready(
        pool: AnyPool,
        reads: AnyPool,
        backend: Backend,
        instance: InstanceId,
        lease: Duration,
    ) -> Result<Store, StoreError> {
        Migrator::new(EmbeddedMigrations(backend))
            .await?
            .run(&pool)
            .await?;
        let (accepts, pending) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(write_accepts(pool.clone(), backend, pending));
        Ok(Store {
            pool,
            reads,
            backend,
            instance,
            lease,
            token: format!(
                "{}-{}",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ),
            accepts,
            queued: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process among the instances sharing the store.
    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    /// How long a claim on a running deployment holds without a renewal.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Whether other instances may share this store (Postgres): then running deployments are held
    /// under leases, and only expired or own ones are taken for interrupted.
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Whether the Postgres at `url` answers zbot's credentials (`zbot check --online`): one
    /// connection and `SELECT 1`, within [`CONNECT_TIMEOUT`]; nothing is changed.
    pub async fn probe(url: &str) -> Result<(), StoreError> {
        use sqlx::Connection;
        let connect = async {
            let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    /// What to do about `error`, met opening a Postgres store, when zbot can tell.
    pub fn hint(error: &StoreError) -> Option<&'static str> {
        let StoreError::Database(e) = error else {
            return None;
        };
        if let Some(code) = e.as_database_error().and_then(|d| d.code()) {
            return match code.as_ref() {
                // invalid_password, invalid_authorization_specification
                "28P01" | "28000" => Some(
                    "set PGPASSWORD (or ${VAR} in [store] url) to the role's password, and check the role",
                ),
                // invalid_catalog_name
                "3D000" => {
                    Some("create the database first (createdb), or fix its name in [store] url")
                }
                _ => None,
            };
        }
        match e {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                Some("nothing listens at the host and port of [store] url")
            }
            sqlx::Error::PoolTimedOut => Some(
                "the database did not answer in time: check the host and port of [store] url, and the network between",
            ),
            _ => None,
        }
    }

    /// Whether the database answers (`/healthz`), on both connections a SQLite store has.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        if self.backend == Backend::Sqlite {
            sqlx::query(READS_CHECK).execute(&self.reads).await?;
        }
        Ok(())
    }

    /// Queues a deployment unless its id is stored already; returns once it is committed.
    ///
    /// Deployments that arrive together are committed together (one statement, one sync to disk), so
    /// a burst of webhooks costs one fsync, not one each.
    pub async fn accept(&self, deployment: NewDeployment) -> Result<Accepted, StoreError> {
        let (reply, answer) = oneshot::channel();
        tracing::trace!(deployment = %deployment.deployment_id, "handed to the group commit");
        let pending = PendingAccept { deployment, reply };
        self.accepts
            .send(pending)
            .await
            .map_err(|_| StoreError::Writer("the writer has stopped".into()))?;
        let accepted = answer
            .await
            .map_err(|_| StoreError::Writer("the writer has stopped".into()))?
            .map_err(StoreError::Writer)?;
        if accepted == Accepted::New {
            self.queued.notify_one();
        }
        Ok(accepted)
    }

    /// Wakes when a deployment is queued (a permit is kept if nobody waits yet).
    pub fn queued(&self) -> &tokio::sync::Notify {
        &self.queued
    }

    /// A transaction that reads and then writes. On SQLite it takes the write lock at its start
    /// (`BEGIN IMMEDIATE`): a transaction that read first could not take it later while another
    /// process's write is pending, and would fail with "database is locked" instead of waiting.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Stores a deployment created by zbot itself (the embedded forge), numbering it after the last one.
    pub async fn accept_local(
        &self,
        mut deployment: NewDeployment,
    ) -> Result<DeploymentId, StoreError> {
        let mut tx = self.begin_write().await?;
        let (id,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(deployment_id), 0) + 1 FROM deployments")
                .fetch_one(&mut *tx)
                .await?;
        deployment.deployment_id = DeploymentId(id as u64);
        insert_deployments(&mut tx, &[&deployment]).await?;
        tx.commit().await?;
        self.wake_queues().await;
        Ok(deployment.deployment_id)
    }

    pub async fn get(&self, deployment_id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM deployments WHERE deployment_id = $1")
                .bind(deployment_id.0 as i64)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The queue, oldest first: just what scheduling needs, so a deep queue stays cheap to read.
    pub async fn queue(&self) -> Result<Vec<QueueEntry>, StoreError> {
        let rows = sqlx::query(QUEUE).fetch_all(&self.pool).await?;
        let mut queue = Vec::with_capacity(rows.len());
        for r in &rows {
            match QueueEntry::from_row(r) {
                Ok(entry) => queue.push(entry),
                Err(e) => self.end_unreadable(r.try_get("seq")?, &e).await?,
            }
        }
        Ok(queue)
    }

    /// Deployments marked running. At start-up these are the ones a previous process was running.
    pub async fn running(&self) -> Result<Vec<Deployment>, StoreError> {
        let rows = sqlx::query("SELECT * FROM deployments WHERE state = 'running' ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let mut running = Vec::with_capacity(rows.len());
        for r in &rows {
            match Deployment::from_row(r) {
                Ok(d) => running.push(d),
                Err(e) => self.end_unreadable(r.try_get("seq")?, &e).await?,
            }
        }
        Ok(running)
    }

    /// Ends a queued or running row whose values no longer validate (written by an older zbot, or
    /// changed by hand), so that one such row never stops the queue: it becomes `error`, logged.
    async fn end_unreadable(&self, seq: i64, why: &sqlx::Error) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        end_unreadable(&mut conn, seq, why).await
    }

    pub async fn set_process_group(
        &self,
        deployment_id: DeploymentId,
        group: u32,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deployments SET process_group = $1 WHERE deployment_id = $2")
            .bind(i64::from(group))
            .bind(deployment_id.0 as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_log(
        &self,
        deployment_id: DeploymentId,
        gist_id: Option<&str>,
        log_url: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deployments SET gist_id = $1, log_url = $2 WHERE deployment_id = $3")
            .bind(gist_id)
            .bind(log_url)
            .bind(deployment_id.0 as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a deployment. Only the first end counts: false if it had already ended.
    pub async fn finish(
        &self,
        deployment_id: DeploymentId,
        state: DeploymentState,
        description: &str,
        exit_code: Option<i32>,
    ) -> Result<bool, StoreError> {
        self.finish_from(deployment_id, state, description, exit_code, false)
            .await
    }

    /// Ends a deployment that is still waiting, as `error` (a cancel): false if it was no longer
    /// queued — it started meanwhile, and then only its runner ends it.
    pub async fn end_queued(
        &self,
        deployment_id: DeploymentId,
        description: &str,
    ) -> Result<bool, StoreError> {
        self.finish_from(
            deployment_id,
            DeploymentState::Error,
            description,
            None,
            true,
        )
        .await
    }

    async fn finish_from(
        &self,
        deployment_id: DeploymentId,
        state: DeploymentState,
        description: &str,
        exit_code: Option<i32>,
        only_queued: bool,
    ) -> Result<bool, StoreError> {
        // A running deployment is ended only by the instance holding its lease (rows from before
        // leases have no holder).
        let from = if only_queued {
            "state = 'queued' AND $6 = $6"
        } else {
            "(state = 'queued' OR (state = 'running' AND (instance_id IS NULL OR instance_id = $6)))"
        };
        let changed = sqlx::query(&format!(
            "UPDATE deployments SET state = $1, description = $2, exit_code = $3, finished_at = $4, queue_position = NULL
             WHERE deployment_id = $5 AND {from}"
        ))
        .bind(state.as_str())
        .bind(description)
        .bind(exit_code.map(i64::from))
        .bind(now())
        .bind(deployment_id.0 as i64)
        .bind(self.instance.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 1 {
            // A slot, or an environment, may be free for another instance's queue.
            self.wake_queues().await;
        }
        Ok(changed == 1)
    }

    /// The latest deployments of an app (optionally in one environment), newest first.
    pub async fn recent(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        limit: i64,
    ) -> Result<Vec<Deployment>, StoreError> {
        let environment = environment.map(Environment::as_str);
        Ok(sqlx::query_as(
            "SELECT * FROM deployments WHERE app = $1 AND ($2 IS NULL OR environment = $3) ORDER BY seq DESC LIMIT $4",
        )
        .bind(app.as_str())
        .bind(environment)
        .bind(environment)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Takes the lock, or returns the lock someone else already holds. A lock that ended by `now` is
    /// gone first; the holder taking their own lock again gets the new reason and end. With `take`
    /// (`lock!`), another's lock is replaced and returned beside the new one. On Postgres the
    /// transaction first takes an advisory lock, so two instances' takes happen one after the other.
    #[allow(clippy::too_many_arguments)]
    pub async fn lock(
        &self,
        app: &AppName,
        environment: &Environment,
        holder: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        take: bool,
    ) -> Result<Result<(Lock, Option<Lock>), Lock>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LOCKS_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM locks WHERE app = $1 AND environment = $2 AND expires_at IS NOT NULL AND expires_at <= $3")
            .bind(app.as_str())
            .bind(environment.as_str())
            .bind(stamp(now))
            .execute(&mut *tx)
            .await?;
        let before = sqlx::query("SELECT * FROM locks WHERE app = $1 AND environment = $2")
            .bind(app.as_str())
            .bind(environment.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| lock_from_row(&r))
            .transpose()?;
        let taken_from = match before {
            Some(held) if held.holder != holder && !take => return Ok(Err(held)),
            Some(held) if held.holder != holder => Some(held),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO locks (app, environment, holder, reason, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (app, environment) DO UPDATE SET holder = excluded.holder, reason = excluded.reason, \
             created_at = CASE WHEN locks.holder = excluded.holder THEN locks.created_at ELSE excluded.created_at END, \
             expires_at = excluded.expires_at",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(holder)
        .bind(reason)
        .bind(stamp(now))
        .bind(expires_at.map(stamp))
        .execute(&mut *tx)
        .await?;
        let lock = sqlx::query("SELECT * FROM locks WHERE app = $1 AND environment = $2")
            .bind(app.as_str())
            .bind(environment.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)
            .and_then(|r| lock_from_row(&r))?;
        tx.commit().await?;
        Ok(Ok((lock, taken_from)))
    }

    /// Removes a lock; returns it if there was one.
    /// Removes the lock `holder` holds; false if there was none, or another holder's (taken since it
    /// was read: that one stays).
    pub async fn unlock(
        &self,
        app: &AppName,
        environment: &Environment,
        holder: &str,
    ) -> Result<bool, StoreError> {
        let removed =
            sqlx::query("DELETE FROM locks WHERE app = $1 AND environment = $2 AND holder = $3")
                .bind(app.as_str())
                .bind(environment.as_str())
                .bind(holder)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if removed == 1 {
            self.forget_auto_held(Some(app.as_str()), environment.as_str())
                .await?;
        }
        Ok(removed == 1)
    }

    pub async fn lock_of(
        &self,
        app: &AppName,
        environment: &Environment,
    ) -> Result<Option<Lock>, StoreError> {
        let row = sqlx::query("SELECT * FROM locks WHERE app = $1 AND environment = $2")
            .bind(app.as_str())
            .bind(environment.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| lock_from_row(&r)).transpose()
    }

    pub async fn locks(&self) -> Result<Vec<Lock>, StoreError> {
        let rows = sqlx::query("SELECT * FROM locks ORDER BY app, environment")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(lock_from_row).collect()
    }
}

impl Store {
    /// Records a deployment from GitHub that was refused before it was queued; false if this
    /// deployment id was recorded (refused) before.
    pub async fn record_refused(
        &self,
        deployment_id: DeploymentId,
        repository: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO refused_deployments (deployment_id, repository, reason, received_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(deployment_id.0 as i64)
        .bind(repository)
        .bind(reason)
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }
}

/// Where a deployment's status is shown in chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub channel: String,
    pub thread_ts: String,
    pub status_ts: String,
}

impl Store {
    /// The status message of a deployment; `None` while there is none, or while it is being posted
    /// (reserved, see [`Store::reserve_chat_message`]).
    pub async fn chat_message(
        &self,
        deployment_id: DeploymentId,
    ) -> Result<Option<ChatMessage>, StoreError> {
        let row = sqlx::query(
            "SELECT channel, thread_ts, status_ts FROM chat_messages
             WHERE deployment_id = $1 AND status_ts <> ''",
        )
        .bind(deployment_id.0 as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ChatMessage {
                channel: r.try_get("channel")?,
                thread_ts: r.try_get("thread_ts")?,
                status_ts: r.try_get("status_ts")?,
            })
        })
        .transpose()
    }

    /// Reserves the posting of a deployment's first status message: true for exactly one caller (of
    /// any instance), who posts it and records it with [`Store::set_chat_message`], or gives the
    /// reservation back ([`Store::release_chat_message`]); the others wait for it and update it, so a
    /// thread gets one status message whichever instances publish the deployment's events. A
    /// reservation older than [`RESERVATION_EXPIRY`] whose message was never recorded (its instance
    /// stopped mid-post) is taken over, by one caller.
    pub async fn reserve_chat_message(
        &self,
        deployment_id: DeploymentId,
    ) -> Result<bool, StoreError> {
        let now = self.clock_now().await?;
        let stale =
            now.saturating_sub(i64::try_from(RESERVATION_EXPIRY.as_millis()).unwrap_or(i64::MAX));
        let reserved = sqlx::query(
            "INSERT INTO chat_messages (deployment_id, channel, thread_ts, status_ts, reserved_at)
             VALUES ($1, '', '', '', $2)
             ON CONFLICT (deployment_id) DO UPDATE SET reserved_at = excluded.reserved_at
             WHERE chat_messages.status_ts = ''
               AND (chat_messages.reserved_at IS NULL OR chat_messages.reserved_at < $3)",
        )
        .bind(deployment_id.0 as i64)
        .bind(now)
        .bind(stale)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(reserved == 1)
    }

    /// Gives back a reservation whose message could not be posted.
    pub async fn release_chat_message(
        &self,
        deployment_id: DeploymentId,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM chat_messages WHERE deployment_id = $1 AND status_ts = ''")
            .bind(deployment_id.0 as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_chat_message(
        &self,
        deployment_id: DeploymentId,
        message: &ChatMessage,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chat_messages (deployment_id, channel, thread_ts, status_ts) VALUES ($1, $2, $3, $4)
             ON CONFLICT (deployment_id) DO UPDATE SET
                 channel = CASE WHEN chat_messages.status_ts = '' THEN excluded.channel ELSE chat_messages.channel END,
                 thread_ts = CASE WHEN chat_messages.status_ts = '' THEN excluded.thread_ts ELSE chat_messages.thread_ts END,
                 status_ts = excluded.status_ts",
        )
        .bind(deployment_id.0 as i64)
        .bind(&message.channel)
        .bind(&message.thread_ts)
        .bind(&message.status_ts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The queued or running deployment of an app in an environment, oldest first.
    pub async fn active(
        &self,
        app: &AppName,
        environment: &Environment,
    ) -> Result<Vec<Deployment>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM deployments WHERE app = $1 AND environment = $2 AND state IN ('queued', 'running')
             ORDER BY state = 'running' DESC, seq",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A deployment waiting for the next group commit.
struct PendingAccept {
    deployment: NewDeployment,
    reply: oneshot::Sender<Result<Accepted, String>>,
}

/// The most deployments committed in one statement (11 parameters each: within SQLite's 32,766 and
/// Postgres's 65,535 parameters per statement).
const MAX_BATCH: usize = 256;

/// Commits deployments as they come, batching those that wait together into one `INSERT`: one round
/// trip to the database and, on SQLite, one implicit transaction and one sync.
///
/// On Postgres, instances committing the same deployments at once may deadlock on the unique keys
/// (each waits for the other's row): Postgres ends one transaction, and that batch is tried again.
/// The batch is written in the order of its keys, which makes that rare.
async fn write_accepts(
    pool: AnyPool,
    backend: Backend,
    mut pending: mpsc::Receiver<PendingAccept>,
) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        batch.sort_by_key(|p| p.deployment.deployment_id.0);
        let deployments: Vec<&NewDeployment> = batch.iter().map(|p| &p.deployment).collect();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let result = async {
                match backend {
                    Backend::Sqlite => {
                        let mut conn = pool.acquire().await?;
                        insert_deployments(&mut conn, &deployments).await
                    }
                    Backend::Postgres => {
                        let mut tx = pool.begin().await?;
                        let inserted = insert_deployments(&mut tx, &deployments).await?;
                        if !inserted.is_empty() {
                            shared::notify_queue(&mut tx).await?;
                        }
                        tx.commit().await?;
                        Ok(inserted)
                    }
                }
            }
            .await;
            match result {
                Err(e) if attempt < 5 && shared::is_conflict(&e) => {
                    tracing::debug!(
                        "another instance wrote the same deployments; trying again: {e}"
                    );
                }
                result => break result,
            }
        };
        tracing::trace!(deployments = batch.len(), "group commit done");
        match result {
            Ok(mut inserted) => {
                // The first of a batch's copies of one deployment is the new one.
                for p in batch {
                    let new = inserted.remove(&p.deployment.deployment_id);
                    let _ = p.reply.send(Ok(if new {
                        Accepted::New
                    } else {
                        Accepted::Duplicate
                    }));
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// The `INSERT` of `rows` queued deployments, 11 parameters each, in the order
/// [`insert_deployments`] binds them.
fn insert_sql(rows: usize) -> String {
    const COLUMNS: usize = 11;
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let p: Vec<String> = (1..=COLUMNS)
                .map(|c| format!("${}", row * COLUMNS + c))
                .collect();
            // `state` is written as 'queued' between the actor and the time of arrival.
            format!("({}, 'queued', {})", p[..10].join(", "), p[10])
        })
        .collect();
    format!(
        "INSERT INTO deployments (deployment_id, app, repository, clone_url, environment, git_ref, sha, task,
                                  payload, actor, state, created_at)
         VALUES {} ON CONFLICT DO NOTHING RETURNING deployment_id",
        values.join(", ")
    )
}

/// Inserts queued deployments, in one statement, unless their ids are stored already; the ids
/// inserted.
async fn insert_deployments(
    conn: &mut AnyConnection,
    deployments: &[&NewDeployment],
) -> Result<std::collections::HashSet<DeploymentId>, sqlx::Error> {
    // Every delivery's statement when they come one at a time: written once.
    static ONE_ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(1));
    let many;
    let sql = if deployments.len() == 1 {
        ONE_ROW.as_str()
    } else {
        many = insert_sql(deployments.len());
        many.as_str()
    };
    let created_at = now();
    // Each batch size is its own SQL: only the one-row statement (every delivery's, when they come one
    // at a time) is kept prepared, so a burst does not fill the statement cache with large programs.
    let mut query = sqlx::query_as::<_, (i64,)>(sql).persistent(deployments.len() == 1);
    for d in deployments {
        query = query
            .bind(d.deployment_id.0 as i64)
            .bind(d.app.as_str())
            .bind(d.repository.as_str())
            .bind(&d.clone_url)
            .bind(d.environment.as_str())
            .bind(d.git_ref.as_str())
            .bind(d.sha.as_str())
            .bind(d.task.as_str())
            .bind(d.payload.to_string())
            .bind(&d.actor)
            .bind(created_at.clone());
    }
    Ok(query
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|(id,)| DeploymentId(id as u64))
        .collect())
}

fn lock_from_row(row: &AnyRow) -> Result<Lock, StoreError> {
    let created: String = row.try_get("created_at")?;
    Ok(Lock {
        app: typed(row, "app")?,
        environment: typed(row, "environment")?,
        holder: row.try_get("holder")?,
        reason: row.try_get("reason")?,
        created_at: DateTime::parse_from_rfc3339(&created)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
        expires_at: time_column(row, "expires_at")?,
    })
}

/// An optional RFC 3339 column.
fn time_column(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    Ok(text.and_then(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .ok()
    }))
}

/// A time as stored: RFC 3339 in UTC to the second, so that stored times compare as text.
fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Lock {
    /// Whether the lock still holds at `now` (it has no end, or its end is later).
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// What `[github] poll` keeps across restarts (`migrations/0006_polling.sql`).
impl Store {
    /// The newest deployment id a poll of `repository` has seen; `None` before its first poll.
    pub async fn poll_mark(&self, repository: &Repository) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT last_deployment_id FROM poll_marks WHERE repository = $1")
                .bind(repository.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(id,)| {
            u64::try_from(id)
                .map_err(|_| StoreError::Corrupt(format!("the poll mark of {repository} is {id}")))
        })
        .transpose()
    }

    /// Records that polls of `repository` have seen deployments up to `deployment_id` (never moves back).
    pub async fn set_poll_mark(
        &self,
        repository: &Repository,
        deployment_id: u64,
    ) -> Result<(), StoreError> {
        // A CASE, not SQLite's two-argument MAX (Postgres has none; SQLite has no GREATEST).
        sqlx::query(
            "INSERT INTO poll_marks (repository, last_deployment_id) VALUES ($1, $2)
             ON CONFLICT (repository) DO UPDATE
             SET last_deployment_id = CASE
                 WHEN excluded.last_deployment_id > poll_marks.last_deployment_id
                 THEN excluded.last_deployment_id
                 ELSE poll_marks.last_deployment_id
             END",
        )
        .bind(repository.as_str())
        .bind(i64::try_from(deployment_id).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What the chat side keeps across restarts: the events it handled, and which outcome replies it
/// posted (`migrations/0003_chat_durability.sql`).
/// What [`Store::claim_outcome`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClaim {
    /// This caller posts it.
    Claimed,
    /// Claimed (posted) before.
    Posted,
    /// The deployment has no chat message to record it on (a chat without threads): post it,
    /// unrecorded.
    Unrecorded,
}

impl Store {
    /// Records chat events as seen at `now` and says whether this is their first sighting: true if
    /// none of `keys` was seen within `keep` before `now` (each key is recorded either way). Keys
    /// older than `keep` are forgotten first. One transaction, so of two deliveries of one event that
    /// race each other exactly one gets `true`, also across processes sharing the data directory.
    pub async fn first_sight(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        keep: Duration,
    ) -> Result<bool, StoreError> {
        let seen_at = now.timestamp();
        let oldest = seen_at.saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        // The first statement writes, so the transaction holds the write lock from its start.
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chat_events_seen WHERE seen_at < $1")
            .bind(oldest)
            .execute(&mut *tx)
            .await?;
        let mut inserted = 0;
        for key in keys {
            inserted += sqlx::query(
                "INSERT INTO chat_events_seen (key, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(key)
            .bind(seen_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted == keys.len() as u64)
    }

    /// Claims the posting of the reply telling how deployment `deployment_id` ended, so that of the
    /// instances showing it exactly one posts it (a conditional update): [`OutcomeClaim::Posted`] if
    /// it was claimed before. Give it back with [`Store::unclaim_outcome`] if the post fails.
    pub async fn claim_outcome(
        &self,
        deployment_id: DeploymentId,
    ) -> Result<OutcomeClaim, StoreError> {
        let claimed = sqlx::query(
            "UPDATE chat_messages SET outcome_posted_at = $1
             WHERE deployment_id = $2 AND outcome_posted_at IS NULL",
        )
        .bind(now())
        .bind(deployment_id.0 as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if claimed == 1 {
            return Ok(OutcomeClaim::Claimed);
        }
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT outcome_posted_at FROM chat_messages WHERE deployment_id = $1")
                .bind(deployment_id.0 as i64)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(_) => OutcomeClaim::Posted,
            None => OutcomeClaim::Unrecorded,
        })
    }

    /// Whether the reply telling how deployment `deployment_id` ended was posted (claimed) in its
    /// thread.
    pub async fn outcome_posted(&self, deployment_id: DeploymentId) -> Result<bool, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT outcome_posted_at FROM chat_messages WHERE deployment_id = $1")
                .bind(deployment_id.0 as i64)
                .fetch_optional(&self.pool)
                .await?;
        Ok(matches!(row, Some((Some(_),))))
    }

    /// Gives back a claim whose outcome could not be posted: the next start posts it.
    pub async fn unclaim_outcome(&self, deployment_id: DeploymentId) -> Result<(), StoreError> {
        sqlx::query("UPDATE chat_messages SET outcome_posted_at = NULL WHERE deployment_id = $1")
            .bind(deployment_id.0 as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ended deployments shown in chat whose outcome reply was not posted yet, oldest first.
    pub async fn unposted_outcomes(&self) -> Result<Vec<Deployment>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.* FROM deployments d JOIN chat_messages c ON c.deployment_id = d.deployment_id
             WHERE c.outcome_posted_at IS NULL AND c.status_ts <> ''
               AND d.state IN ('success', 'failure', 'error')
             ORDER BY d.seq",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A deployment of `main` of adxstat to production, asked for by `U0ALICE`, for tests.
#[cfg(test)]
pub(crate) fn deployment(id: u64) -> NewDeployment {
    NewDeployment {
        deployment_id: DeploymentId(id),
        app: "adxstat".parse().unwrap(),
        repository: "octo/adxstat".parse().unwrap(),
        clone_url: "file:///nowhere".into(),
        environment: "production".parse().unwrap(),
        git_ref: "main".parse().unwrap(),
        sha: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
        task: "deploy".parse().unwrap(),
        payload: serde_json::json!({}),
        actor: "U0ALICE".into(),
    }
}

#[cfg(test)]
#[path = "../../tests/it/postgres.rs"]
mod test_postgres;

/// A fresh store of each backend for one test: SQLite in `dir`, and Postgres in a new database of the
/// test server.
#[cfg(test)]
pub(crate) async fn test_stores(dir: &Path) -> Vec<Store> {
    let url = tokio::task::spawn_blocking(test_postgres::database)
        .await
        .unwrap();
    vec![
        Store::open(dir).await.unwrap(),
        Store::open_postgres(
            &url,
            InstanceId::of_this_process(),
            crate::config::DEFAULT_LEASE,
        )
        .await
        .unwrap(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migration once applied is never edited: sqlx compares each applied migration's checksum and a
    /// store whose migration changed refuses to start. Corrections come as new migrations or README
    /// notes. The SHA-256 of every released migration's text, per dialect.
    #[test]
    fn applied_migrations_never_change() {
        use sha2::Digest;
        let pinned: &[(i64, &str, &str)] = &[
            (
                1,
                "ce596f5a7f981641c0b7667064b38de663ffb1834581e34cc28a5328d139dc76",
                "ecb265c706f0dd2d7570fcb7c5bb6e9a8e1d60c5b03a049b33f5e39fa924d038",
            ),
            (
                2,
                "d7d708fa2088801dcd28eaa3bb5717f82255f7cbae768aae99a9c92a89e3777f",
                "305ea1027caf9f658f6057cc645cad7d998add63d79a50e0cf17c47dbc6253ee",
            ),
            (
                3,
                "2569f2a635b233edc15602139406761f9a397224392a204f40f361eacc42b53c",
                "c0ef3e8de14e7aa53983b1eaecb17a7fc3fa39ddda19a7a548aaef933547445d",
            ),
            (
                5,
                "11c302adfa20b2a5e7f3d2495905244eeae179fdc33d73c8c816c609b6168829",
                "6016fa137368e73166d1eae23181ef4915b6c4c02729793c6e6211eec239e09d",
            ),
            (
                6,
                "bdcb5ff4007f435bc4d43077c68eacb06f383e31e72367f367140680ea8438f8",
                "9b35c765eb0c53636c313a5a89d92b518256c996dc2383784fb161c9c2fffa85",
            ),
            (
                7,
                "8c2ef4c5c9b05adefac2f8e656c67263ca133e3a3b884f43b14abcdcc4efefff",
                "d5e62a5dc844b4f5b2c1835a139022354c2701d81159f1cb8b026d27ef2241a6",
            ),
            (
                8,
                "d50c535e320db8f2eafe7db00dfc3e2fc3fe84e92df6f2fe555b97c4a246593f",
                "5065d38deba8645efbab87c5b7860dd86f80031dc43e812c7460327799f8cc96",
            ),
            (
                11,
                "f6fbd156f53b5595ba300d430ee84e869a646463787c15113ba34d7d2a8a938c",
                "cec3a85e8350b52fa49e06871fba7ad61beff6db16b4025e980f53b697da85ee",
            ),
        ];
        let digest = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
        for &(version, sqlite, postgres) in pinned {
            let Some(&(_, name, sqlite_text, postgres_text)) =
                MIGRATIONS.iter().find(|m| m.0 == version)
            else {
                panic!("migration {version} is gone");
            };
            assert_eq!(
                digest(sqlite_text),
                sqlite,
                "SQLite migration {version} ({name}) changed"
            );
            assert_eq!(
                digest(postgres_text),
                postgres,
                "Postgres migration {version} ({name}) changed"
            );
        }
    }

    fn message(ts: &str) -> ChatMessage {
        ChatMessage {
            channel: "C0CHAN".into(),
            thread_ts: ts.into(),
            status_ts: ts.into(),
        }
    }

    /// A queued or running row that no longer validates (written by an older zbot, or by hand) ends
    /// as `error`; the good rows around it are still served, so one bad row never stops the queue.
    #[tokio::test]
    async fn an_unreadable_row_ends_and_does_not_stop_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            for id in [1, 2, 3, 4, 5] {
                store.accept_local(deployment(id)).await.unwrap();
            }
            let bad = |id: i64, state: &str| {
                sqlx::query(
                "UPDATE deployments SET environment = '..', state = $1 WHERE deployment_id = $2",
            )
            .bind(state.to_string())
            .bind(id)
            };
            bad(2, "queued").execute(&store.pool).await.unwrap();
            bad(4, "running").execute(&store.pool).await.unwrap();
            sqlx::query("UPDATE deployments SET state = 'running' WHERE deployment_id = 3")
                .execute(&store.pool)
                .await
                .unwrap();
            let queue: Vec<u64> = queued_ids(&store).await;
            assert_eq!(queue, [1, 5], "{backend}");
            let running: Vec<u64> = running_ids(&store).await;
            assert_eq!(running, [3], "{backend}");
            // One a claim finds: the claim starts the good one beside it.
            bad(5, "queued").execute(&store.pool).await.unwrap();
            let started: Vec<u64> = store
                .claim(everything, log)
                .await
                .unwrap()
                .started
                .iter()
                .map(|d| d.deployment_id.0)
                .collect();
            assert_eq!(started, [1], "{backend}");
            for id in [2, 4, 5] {
                let (state, description): (String, String) = sqlx::query_as(
                    "SELECT state, description FROM deployments WHERE deployment_id = $1",
                )
                .bind(id)
                .fetch_one(&store.pool)
                .await
                .unwrap();
                assert_eq!(state, "error", "{backend} #{id}");
                assert!(
                    description.contains("cannot read this deployment back"),
                    "{backend} #{id}: {description}"
                );
            }
        }
    }

    /// What the grant tests grant and claim: one app's production deploys of one commit.
    struct GrantFixture {
        app: AppName,
        env: Environment,
        repository: Repository,
        task: Task,
        sha: Sha,
        t0: DateTime<Utc>,
    }

    impl GrantFixture {
        fn new() -> GrantFixture {
            GrantFixture {
                app: "adxstat".parse().unwrap(),
                env: "production".parse().unwrap(),
                repository: "octo/adxstat".parse().unwrap(),
                task: Task::deploy(),
                sha: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
                t0: "2026-11-29T12:00:00Z".parse().unwrap(),
            }
        }

        /// `hours` after `t0`.
        fn hours(&self, hours: i64) -> DateTime<Utc> {
            self.t0 + chrono::Duration::hours(hours)
        }

        /// Alice's grant, unclaimed, ending an hour after `t0`.
        fn grant(&self) -> Grant {
            Grant {
                app: self.app.clone(),
                repository: self.repository.clone(),
                environment: self.env.clone(),
                task: self.task.clone(),
                sha: None,
                actor: "U0ALICE".into(),
                overrides: false,
                approval_request: None,
                expires_at: self.hours(1),
                deployment_id: None,
            }
        }

        /// The claim of deployment `id`.
        fn claim(&self, id: u64) -> GrantClaim<'_> {
            GrantClaim {
                deployment_id: DeploymentId(id),
                app: &self.app,
                repository: &self.repository,
                environment: &self.env,
                task: &self.task,
                sha: &self.sha,
            }
        }
    }

    /// What instances race for is won once, on both backends: eight claims of one grant by eight
    /// deployment ids at the same time give it to exactly one, and eight deployments binding one
    /// approved request bind exactly one.
    #[tokio::test]
    async fn a_grant_and_an_approved_request_are_won_by_one_of_many_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(GrantFixture::new());
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            store.grant("raced", &f.grant(), f.t0).await.unwrap();
            let claims = (0..8u64).map(|n| {
                let (store, f) = (store.clone(), Arc::clone(&f));
                tokio::spawn(async move {
                    store
                        .claim_grant("raced", f.claim(100 + n), f.t0)
                        .await
                        .unwrap()
                })
            });
            let won: Vec<Grant> = futures_util::future::join_all(claims)
                .await
                .into_iter()
                .filter_map(|joined| joined.unwrap())
                .collect();
            assert_eq!(won.len(), 1, "{backend}: {won:?}");

            let request = NewRequest {
                app: f.app.clone(),
                environment: f.env.clone(),
                git_ref: "main".parse().unwrap(),
                sha: f.sha.clone(),
                task: f.task.clone(),
                hosts: None,
                force: false,
                requester: "U0ALICE".into(),
                channel: "C0CHAN".into(),
                thread_ts: "1.1".into(),
                needed: 1,
                created_at: f.t0,
                expires_at: f.hours(2),
            };
            let id = store.create_request(&request).await.unwrap();
            assert!(
                store
                    .decide_request(id, RequestState::Approved, Some("U0BOB"), None, f.t0)
                    .await
                    .unwrap()
            );
            let binds = (0..8u64).map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .set_request_deployment(id, DeploymentId(200 + n))
                        .await
                        .unwrap()
                })
            });
            let bound = futures_util::future::join_all(binds)
                .await
                .into_iter()
                .filter(|joined| *joined.as_ref().unwrap())
                .count();
            assert_eq!(bound, 1, "{backend}");
        }
    }

    /// Grants go once they can no longer be claimed (unclaimed past their end) or were claimed more
    /// than 30 days ago; the others stay, on both backends.
    #[tokio::test]
    async fn grants_that_can_no_longer_be_used_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let f = GrantFixture::new();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            // (token, claimed at, prune at, still claimable by its deployment after)
            let table = [
                ("waiting", None, f.hours(0), true),
                ("ended unclaimed", None, f.hours(1), false),
                ("claimed lately", Some(f.t0), f.hours(24 * 29), true),
                ("claimed long ago", Some(f.t0), f.hours(24 * 30), false),
            ];
            for (n, (token, claimed, prune_at, kept)) in table.into_iter().enumerate() {
                store.grant(token, &f.grant(), f.t0).await.unwrap();
                if let Some(at) = claimed {
                    assert!(
                        store
                            .claim_grant(token, f.claim(n as u64), at)
                            .await
                            .unwrap()
                            .is_some(),
                        "{backend} {token}"
                    );
                }
                let gone = store.prune_grants(prune_at).await.unwrap();
                assert!(gone >= u64::from(!kept), "{backend} {token}");
                // A redelivery claims a kept grant again (its end does not matter once claimed).
                let again = store
                    .claim_grant(token, f.claim(n as u64), f.t0)
                    .await
                    .unwrap();
                assert_eq!(again.is_some(), kept, "{backend} {token}");
            }
        }
    }

    /// A poll mark starts absent and only moves forward, per repository, on both backends; ids past
    /// 32 bits (GitHub's are) survive.
    #[tokio::test]
    async fn a_poll_mark_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let one: Repository = "octo/adxstat".parse().unwrap();
        let other: Repository = "octo/other".parse().unwrap();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            assert_eq!(store.poll_mark(&one).await.unwrap(), None, "{backend}");
            // (mark set, mark read back)
            let table = [
                (5_000_000_000, 5_000_000_000),
                (7, 5_000_000_000),
                (5_000_000_001, 5_000_000_001),
            ];
            for (set, expected) in table {
                store.set_poll_mark(&one, set).await.unwrap();
                assert_eq!(
                    store.poll_mark(&one).await.unwrap(),
                    Some(expected),
                    "{backend} after {set}"
                );
            }
            assert_eq!(store.poll_mark(&other).await.unwrap(), None, "{backend}");
        }
    }

    /// The guards' rows (`0005_guards.sql`) on both backends: freezes, grants, lock ends, `lock!`,
    /// watchers, approval requests and auto-deploy's memory, each read back as written; what another
    /// instance could race for (a watcher told, a request decided) is done once.
    #[tokio::test]
    async fn the_guards_rows_read_back_on_both_backends() {
        let dir = tempfile::tempdir().unwrap();
        let app: AppName = "adxstat".parse().unwrap();
        let env: Environment = "production".parse().unwrap();
        let sha: Sha = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let t0: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        let later = |mins| t0 + chrono::Duration::minutes(mins);
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            let frozen = store
                .freeze(
                    Some(&app),
                    &env,
                    "U0ALICE",
                    Some("release"),
                    t0,
                    Some(later(60)),
                )
                .await
                .unwrap();
            assert_eq!(
                store.freezes().await.unwrap(),
                std::slice::from_ref(&frozen),
                "{backend}"
            );
            let extended = store
                .extend_freeze(frozen.id, Some(later(120)), None)
                .await
                .unwrap();
            let expected = Freeze {
                until: Some(later(120)),
                ..frozen.clone()
            };
            assert_eq!(extended.as_ref(), Some(&expected), "{backend}");
            let open = store
                .extend_freeze(frozen.id, None, Some("incident"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (open.until, open.reason.as_deref()),
                (None, Some("incident"))
            );
            store.unfreeze(&[frozen.id]).await.unwrap();
            assert_eq!(
                store.extend_freeze(frozen.id, None, None).await.unwrap(),
                None,
                "{backend}"
            );
            assert!(store.freezes().await.unwrap().is_empty(), "{backend}");

            let repository: Repository = "octo/adxstat".parse().unwrap();
            let task = Task::deploy();
            let grant = Grant {
                app: app.clone(),
                repository: repository.clone(),
                environment: env.clone(),
                task: task.clone(),
                sha: None,
                actor: "U0ALICE".into(),
                overrides: true,
                approval_request: Some(5_000_000_000),
                expires_at: later(60),
                deployment_id: None,
            };
            store.grant("tok", &grant, t0).await.unwrap();
            let claim = |id, sha| GrantClaim {
                deployment_id: DeploymentId(id),
                app: &app,
                repository: &repository,
                environment: &env,
                task: &task,
                sha,
            };
            let other: Sha = "1123456789abcdef0123456789abcdef01234567".parse().unwrap();
            assert_eq!(
                store.claim_grant("nope", claim(7, &sha), t0).await.unwrap(),
                None,
                "{backend}"
            );
            let claimed = Grant {
                sha: Some(sha.clone()),
                deployment_id: Some(DeploymentId(7)),
                ..grant.clone()
            };
            assert_eq!(
                store.claim_grant("tok", claim(7, &sha), t0).await.unwrap(),
                Some(claimed.clone()),
                "{backend}"
            );
            // The same deployment again (a redelivery, the runner) keeps it, also after its end;
            // another deployment, or another commit, never gets it.
            assert_eq!(
                store
                    .claim_grant("tok", claim(7, &sha), later(90))
                    .await
                    .unwrap(),
                Some(claimed),
                "{backend}"
            );
            assert_eq!(
                store.claim_grant("tok", claim(8, &sha), t0).await.unwrap(),
                None,
                "{backend}"
            );
            assert_eq!(
                store
                    .claim_grant("tok", claim(7, &other), t0)
                    .await
                    .unwrap(),
                None,
                "{backend}"
            );
            // Unclaimed past its end, a grant is worth nothing.
            store.grant("late", &grant, t0).await.unwrap();
            assert_eq!(
                store
                    .claim_grant("late", claim(9, &sha), later(60))
                    .await
                    .unwrap(),
                None,
                "{backend}"
            );

            let (lock, taken) = store
                .lock(
                    &app,
                    &env,
                    "U0ALICE",
                    Some("db"),
                    t0,
                    Some(later(10)),
                    false,
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (lock.expires_at, taken),
                (Some(later(10)), None),
                "{backend}"
            );
            let held = store
                .lock(&app, &env, "U0BOB", None, t0, None, false)
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(held.holder, "U0ALICE", "{backend}");
            let (lock, taken) = store
                .lock(&app, &env, "U0BOB", None, later(1), None, true)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(lock.holder, "U0BOB", "{backend}");
            assert_eq!(
                taken.map(|l| l.holder).as_deref(),
                Some("U0ALICE"),
                "{backend}"
            );
            store
                .lock(&app, &env, "U0BOB", None, later(1), Some(later(5)), false)
                .await
                .unwrap()
                .unwrap();
            assert!(
                store.expire_locks(later(4)).await.unwrap().is_empty(),
                "{backend}"
            );
            assert_eq!(
                store.expire_locks(later(5)).await.unwrap().len(),
                1,
                "{backend}"
            );

            store.watch_lock(None, &env, "U0CAROL", t0).await.unwrap();
            store.watch_lock(None, &env, "U0CAROL", t0).await.unwrap();
            let watchers = store.lock_watchers().await.unwrap();
            assert_eq!(watchers.len(), 1, "{backend}");
            assert!(store.unwatch(&watchers[0]).await.unwrap(), "{backend}");
            assert!(
                !store.unwatch(&watchers[0]).await.unwrap(),
                "{backend}: told once"
            );

            let request = NewRequest {
                app: app.clone(),
                environment: env.clone(),
                git_ref: "main".parse().unwrap(),
                sha: sha.clone(),
                task: "deploy".parse().unwrap(),
                hosts: None,
                force: true,
                requester: "U0ALICE".into(),
                channel: "C0CHAN".into(),
                thread_ts: "1.1".into(),
                needed: 2,
                created_at: t0,
                expires_at: later(30),
            };
            let id = store.create_request(&request).await.unwrap();
            store.set_request_message(id, "2.2").await.unwrap();
            let approvers = store
                .approve_request(id, "U0BOB", &sha, later(1))
                .await
                .unwrap();
            assert_eq!(approvers, ["U0BOB"], "{backend}");
            assert!(
                store
                    .decide_request(id, RequestState::Approved, Some("U0BOB"), None, later(2))
                    .await
                    .unwrap(),
                "{backend}"
            );
            assert!(
                !store
                    .decide_request(id, RequestState::Rejected, Some("U0DAN"), None, later(3))
                    .await
                    .unwrap(),
                "{backend}: decided once"
            );
            store
                .set_request_deployment(id, DeploymentId(7))
                .await
                .unwrap();
            let read = store.request(id).await.unwrap().unwrap();
            assert_eq!(read.request, request, "{backend}");
            assert_eq!(
                (read.state, read.message_ts.as_deref(), read.deployment_id),
                (RequestState::Approved, Some("2.2"), Some(DeploymentId(7))),
                "{backend}"
            );
            assert_eq!(
                store.approvals_of(&[DeploymentId(7)]).await.unwrap().len(),
                1
            );
            assert_eq!(store.approvers_of(id, &sha).await.unwrap().len(), 1);
            let expiring = store.create_request(&request).await.unwrap();
            let expired = store.expire_requests(later(30)).await.unwrap();
            assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), [expiring]);

            store.set_auto_pending(&app, &env, &sha, t0).await.unwrap();
            assert_eq!(
                store.auto_pending(&app, &env).await.unwrap(),
                Some(sha.clone())
            );
            store.clear_auto_pending(&app, &env, &sha).await.unwrap();
            assert_eq!(
                store.auto_pending(&app, &env).await.unwrap(),
                None,
                "{backend}"
            );
            assert!(!store.busy(&app, &env, t0).await.unwrap(), "{backend}");
            assert!(!store.deployed_there(&app, &env, &sha).await.unwrap());
            assert!(
                store.auto_held(&app, &env, "red", t0).await.unwrap(),
                "{backend}"
            );
            assert!(
                !store.auto_held(&app, &env, "red", t0).await.unwrap(),
                "{backend}"
            );
            assert!(
                store
                    .record_auto_deploy(&app, &env, &sha, t0)
                    .await
                    .unwrap(),
                "{backend}"
            );
            assert!(
                !store
                    .record_auto_deploy(&app, &env, &sha, t0)
                    .await
                    .unwrap(),
                "asked for once: {backend}"
            );
            assert!(store.busy(&app, &env, later(1)).await.unwrap(), "{backend}");
            assert!(
                store.deployed_there(&app, &env, &sha).await.unwrap(),
                "{backend}"
            );
            assert!(
                store.auto_held(&app, &env, "red", t0).await.unwrap(),
                "{backend}"
            );
            // A hold that ends (here: every app's freeze of that environment lifted) is forgotten.
            store
                .forget_auto_held(None, &env.as_str().to_uppercase())
                .await
                .unwrap();
            assert!(
                store.auto_held(&app, &env, "red", t0).await.unwrap(),
                "said again: {backend}"
            );
        }
    }

    #[tokio::test]
    async fn an_event_is_new_once_per_key_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            let start = Utc::now();
            let keep = Duration::from_secs(3600);
            // (keys, seconds after start, first sighting?)
            let table: &[(&[&str], i64, bool)] = &[
                (&["event/Ev1", "C1/1.1"], 0, true),
                (&["event/Ev1", "C1/1.1"], 60, false),
                // The same message under another event id (app_mention and message).
                (&["event/Ev2", "C1/1.1"], 61, false),
                // That recorded Ev2 all the same.
                (&["event/Ev2", "C1/2.2"], 62, false),
                (&["event/Ev3", "C1/3.3"], 63, true),
                (&["slash/trigger-1"], 64, true),
                (&["slash/trigger-2"], 65, true),
                (&["slash/trigger-1"], 66, false),
                // An hour later the first sighting is forgotten, later ones are not.
                (&["event/Ev1", "C1/1.1"], 3601, true),
                (&["event/Ev3", "C1/3.3"], 3602, false),
            ];
            for (keys, after, expected) in table {
                let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                let at = start + chrono::Duration::seconds(*after);
                assert_eq!(
                    store.first_sight(&keys, at, keep).await.unwrap(),
                    *expected,
                    "{backend}: {keys:?} at +{after}s"
                );
            }
        }
    }

    /// The ids of the queued deployments, oldest first.
    async fn queued_ids(store: &Store) -> Vec<u64> {
        let queue = store.queue().await.unwrap();
        queue.iter().map(|q| q.deployment_id.0).collect()
    }

    /// The ids of the running deployments, oldest first.
    async fn running_ids(store: &Store) -> Vec<u64> {
        let running = store.running().await.unwrap();
        running.iter().map(|d| d.deployment_id.0).collect()
    }

    /// One statement with two copies of a deployment stores it once and names it once as inserted.
    #[tokio::test]
    async fn a_batch_holding_a_deployment_twice_inserts_it_once() {
        let dir = tempfile::tempdir().unwrap();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            let (a, b) = (deployment(41), deployment(42));
            let mut conn = store.pool.acquire().await.unwrap();
            let inserted = insert_deployments(&mut conn, &[&a, &a, &b]).await.unwrap();
            assert_eq!(
                inserted,
                [DeploymentId(41), DeploymentId(42)].into_iter().collect(),
                "{backend}"
            );
            let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deployments")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(rows, 2, "{backend}");
        }
    }

    /// Deployments arriving together are stored in one statement: each id once, the first copy of
    /// one is the new one and every other a duplicate, in one batch or across batches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deployment_arriving_twice_is_stored_once_in_a_batch_or_across() {
        let dir = tempfile::tempdir().unwrap();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            let copies = (1..=60u64).flat_map(|id| [id, id % 30 + 1]);
            let answers =
                futures_util::future::join_all(copies.map(|id| store.accept(deployment(id)))).await;
            let new = answers
                .iter()
                .filter(|a| *a.as_ref().unwrap() == Accepted::New)
                .count();
            assert_eq!(new, 60, "{backend}: each of 60 ids once");
            assert_eq!(
                store.accept(deployment(7)).await.unwrap(),
                Accepted::Duplicate,
                "{backend}"
            );
            let queued: Vec<u64> = queued_ids(&store).await;
            assert_eq!(queued.len(), 60, "{backend}");
        }
    }

    #[tokio::test]
    async fn two_deliveries_racing_get_one_first_sighting() {
        let dir = tempfile::tempdir().unwrap();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            let keys = vec!["event/Ev1".to_string(), "C1/1.1".to_string()];
            let keep = Duration::from_secs(3600);
            let tries = (0..8).map(|_| store.first_sight(&keys, Utc::now(), keep));
            let answers = futures_util::future::join_all(tries).await;
            let firsts = answers.into_iter().filter(|a| *a.as_ref().unwrap()).count();
            assert_eq!(firsts, 1, "{backend}");
        }
    }

    #[tokio::test]
    async fn an_ended_deployment_shown_in_chat_waits_for_its_outcome_until_it_is_posted() {
        let dir = tempfile::tempdir().unwrap();
        for store in test_stores(dir.path()).await {
            let backend = store.backend().as_str();
            let unposted = || async {
                let rows = store.unposted_outcomes().await.unwrap();
                rows.iter().map(|d| d.deployment_id.0).collect::<Vec<_>>()
            };
            for id in [1, 2, 3] {
                store.accept(deployment(id)).await.unwrap();
            }
            // 1 and 2 are shown in chat, 3 is not; 1 and 3 end.
            store
                .set_chat_message(DeploymentId(1), &message("1.1"))
                .await
                .unwrap();
            store
                .set_chat_message(DeploymentId(2), &message("2.2"))
                .await
                .unwrap();
            assert_eq!(unposted().await, Vec::<u64>::new(), "none has ended");
            for id in [1, 3] {
                store
                    .finish(
                        DeploymentId(id),
                        DeploymentState::Success,
                        "Deployed",
                        Some(0),
                    )
                    .await
                    .unwrap();
            }
            assert_eq!(unposted().await, vec![1], "{backend}");
            assert!(!store.outcome_posted(DeploymentId(1)).await.unwrap());
            assert_eq!(
                store.claim_outcome(DeploymentId(1)).await.unwrap(),
                OutcomeClaim::Claimed
            );
            assert!(store.outcome_posted(DeploymentId(1)).await.unwrap());
            assert_eq!(
                store.claim_outcome(DeploymentId(1)).await.unwrap(),
                OutcomeClaim::Posted,
                "{backend}: claimed once"
            );
            assert_eq!(
                store.claim_outcome(DeploymentId(3)).await.unwrap(),
                OutcomeClaim::Unrecorded
            );
            assert_eq!(unposted().await, Vec::<u64>::new());
            // A second status message (an update of the row) keeps what was posted.
            store
                .set_chat_message(DeploymentId(1), &message("1.1"))
                .await
                .unwrap();
            assert!(store.outcome_posted(DeploymentId(1)).await.unwrap());
        }
    }

    /// The pool of an empty database of `backend` with only the first migration applied, and how to
    /// open the store on it afterwards.
    async fn at_first_migration(backend: Backend, dir: &Path) -> (AnyPool, String) {
        sqlx::any::install_default_drivers();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("zbot.sqlite").display()),
            Backend::Postgres => tokio::task::spawn_blocking(test_postgres::database)
                .await
                .unwrap(),
        };
        let pool = AnyPool::connect(&url).await.unwrap();
        let mut all = EmbeddedMigrations(backend).resolve().await.unwrap();
        all.truncate(1);
        let first_only = Migrator {
            migrations: std::borrow::Cow::Owned(all),
            ..Migrator::DEFAULT
        };
        first_only.run(&pool).await.unwrap();
        (pool, url)
    }

    #[tokio::test]
    async fn an_upgrade_counts_the_outcomes_of_deployments_that_ended_before_it_as_posted() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let dir = tempfile::tempdir().unwrap();
            let (pool, url) = at_first_migration(backend, dir.path()).await;
            for (id, state) in [(1, "success"), (2, "running")] {
                sqlx::query(
                    "INSERT INTO deployments (deployment_id, app, repository, clone_url, environment, git_ref,
                                              sha, task, payload, actor, state, created_at, finished_at)
                     VALUES ($1, 'adxstat', 'octo/adxstat', '', 'production', 'main', $2, 'deploy', '{}',
                             'U0ALICE', $3, '2026-11-01T10:00:00+00:00', '2026-11-01T10:01:00+00:00')",
                )
                .bind(id as i64)
                .bind("0123456789abcdef0123456789abcdef01234567")
                .bind(state)
                .execute(&pool)
                .await
                .unwrap();
                sqlx::query(
                    "INSERT INTO chat_messages (deployment_id, channel, thread_ts, status_ts)
                     VALUES ($1, 'C0CHAN', '1.1', '1.2')",
                )
                .bind(id as i64)
                .execute(&pool)
                .await
                .unwrap();
            }
            pool.close().await;

            let store = match backend {
                Backend::Sqlite => Store::open(dir.path()).await.unwrap(),
                Backend::Postgres => Store::open_postgres(
                    &url,
                    InstanceId::of_this_process(),
                    crate::config::DEFAULT_LEASE,
                )
                .await
                .unwrap(),
            };
            let backend = backend.as_str();
            assert!(
                store.outcome_posted(DeploymentId(1)).await.unwrap(),
                "{backend}: ended before"
            );
            assert!(
                !store.outcome_posted(DeploymentId(2)).await.unwrap(),
                "{backend}: still running"
            );
            store
                .finish(
                    DeploymentId(2),
                    DeploymentState::Error,
                    "zbot restarted",
                    None,
                )
                .await
                .unwrap();
            let unposted = store.unposted_outcomes().await.unwrap();
            assert_eq!(
                unposted
                    .iter()
                    .map(|d| d.deployment_id.0)
                    .collect::<Vec<_>>(),
                vec![2],
                "{backend}"
            );
        }
    }

    /// A claim's choice that starts the whole queue.
    fn everything(_: &[(Repository, Environment)], queue: &[QueueEntry]) -> shared::Choice {
        shared::Choice {
            start: queue.iter().map(|e| e.deployment_id).collect(),
            positions: vec![],
        }
    }

    /// Where a claimed deploy's log goes, in the store's tests.
    fn log(_: DeploymentId) -> std::path::PathBuf {
        std::path::PathBuf::from("x.log")
    }

    /// Two instances on one store of `backend`, with leases of `lease`.
    async fn two_instances(backend: Backend, dir: &Path, lease: Duration) -> (Store, Store) {
        let id = |name: &str| name.parse::<InstanceId>().unwrap();
        match backend {
            Backend::Sqlite => (
                Store::open_sqlite(dir, id("a"), lease).await.unwrap(),
                Store::open_sqlite(dir, id("b"), lease).await.unwrap(),
            ),
            Backend::Postgres => {
                let url = tokio::task::spawn_blocking(test_postgres::database)
                    .await
                    .unwrap();
                (
                    Store::open_postgres(&url, id("a"), lease).await.unwrap(),
                    Store::open_postgres(&url, id("b"), lease).await.unwrap(),
                )
            }
        }
    }

    /// Claims made at once by two instances start each deployment once; only the lease holder renews
    /// and ends it; once the lease has passed unrenewed, the other instance takes it over, and the old
    /// holder can neither renew nor end it any more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deployment_is_claimed_once_and_only_its_lease_holder_ends_it() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let dir = tempfile::tempdir().unwrap();
            let lease = Duration::from_millis(400);
            let (a, b) = two_instances(backend, dir.path(), lease).await;
            let name = backend.as_str();
            for id in 1..=20 {
                let store = if id % 2 == 0 { &a } else { &b };
                store.accept(deployment(id)).await.unwrap();
            }
            let (by_a, by_b) = tokio::join!(a.claim(everything, log), b.claim(everything, log));
            let (by_a, by_b) = (by_a.unwrap().started, by_b.unwrap().started);
            let mut ids: Vec<u64> = by_a
                .iter()
                .chain(&by_b)
                .map(|d| d.deployment_id.0)
                .collect();
            ids.sort();
            assert_eq!(
                ids,
                (1..=20).collect::<Vec<_>>(),
                "{name}: each claimed once"
            );
            let (holder, other, id) = match by_a.first() {
                Some(d) => (&a, &b, d.deployment_id),
                None => (&b, &a, by_b[0].deployment_id),
            };
            assert_eq!(
                holder.get(id).await.unwrap().unwrap().instance_id.as_ref(),
                Some(holder.instance()),
                "{name}"
            );
            assert!(holder.renew(id).await.unwrap(), "{name}");
            assert!(!other.renew(id).await.unwrap(), "{name}: not the holder");
            assert!(
                !other.take_over(id, true).await.unwrap(),
                "{name}: not expired"
            );
            assert!(
                !other
                    .finish(id, DeploymentState::Error, "no", None)
                    .await
                    .unwrap(),
                "{name}: only the holder ends it"
            );
            // The holder stops renewing: the lease passes.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !other
                .expired()
                .await
                .unwrap()
                .iter()
                .any(|d| d.deployment_id == id)
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name}: never expired"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(other.take_over(id, true).await.unwrap(), "{name}");
            assert!(
                !holder.take_over(id, true).await.unwrap(),
                "{name}: taken once"
            );
            assert!(!holder.renew(id).await.unwrap(), "{name}: fenced");
            assert!(
                !holder
                    .finish(id, DeploymentState::Success, "Deployed", Some(0))
                    .await
                    .unwrap(),
                "{name}: the old holder cannot end it"
            );
            assert!(
                other
                    .finish(id, DeploymentState::Error, "stopped", None)
                    .await
                    .unwrap(),
                "{name}"
            );
            let ended = a.get(id).await.unwrap().unwrap();
            assert_eq!(
                (ended.state, ended.description.as_str()),
                (DeploymentState::Error, "stopped"),
                "{name}"
            );
        }
    }

    /// Only the leases an instance names are renewed: a claim it left behind (its start found the
    /// store away) expires, so another instance ends it. A process whose instance id another process
    /// registered claims nothing, and its renewal says it was displaced. Ids gone for a day are
    /// forgotten.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_named_leases_are_renewed_and_a_displaced_process_claims_nothing() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = two_instances(backend, dir.path(), Duration::from_millis(400)).await;
            let name = backend.as_str();
            a.register().await.unwrap();
            b.register().await.unwrap();
            for id in 1..=3 {
                a.accept(deployment(id)).await.unwrap();
            }
            assert_eq!(
                a.claim(everything, log).await.unwrap().started.len(),
                3,
                "{name}"
            );
            // `a` runs #1 only; #2 and #3 were claimed and left behind.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let renewed = a.renew_all(&[DeploymentId(1)]).await.unwrap();
                assert_eq!(renewed, vec![DeploymentId(1)], "{name}");
                let mut expired: Vec<u64> = b
                    .expired()
                    .await
                    .unwrap()
                    .iter()
                    .map(|d| d.deployment_id.0)
                    .collect();
                expired.sort();
                assert!(!expired.contains(&1), "{name}: #1 is renewed");
                if expired == [2, 3] {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name}: the left-behind claims never expired"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // An id whose process has been gone for more than a day is forgotten when another
            // instance registers.
            sqlx::query("INSERT INTO instances (instance_id, token, heartbeat_at) VALUES ('gone-1', 't', 0)")
                .execute(&a.pool)
                .await
                .unwrap();
            b.register().await.unwrap();
            let left: Vec<(String,)> =
                sqlx::query_as("SELECT instance_id FROM instances ORDER BY instance_id")
                    .fetch_all(&a.pool)
                    .await
                    .unwrap();
            assert_eq!(
                left.into_iter().map(|(id,)| id).collect::<Vec<_>>(),
                ["a", "b"],
                "{name}"
            );
            // Another process registers `a`'s id.
            sqlx::query("UPDATE instances SET token = 'another process' WHERE instance_id = 'a'")
                .execute(&a.pool)
                .await
                .unwrap();
            a.accept(deployment(4)).await.unwrap();
            assert!(
                a.claim(everything, log).await.unwrap().started.is_empty(),
                "{name}: a displaced process claims nothing"
            );
            assert_eq!(
                a.get(DeploymentId(4)).await.unwrap().unwrap().state,
                DeploymentState::Queued,
                "{name}"
            );
            assert!(
                matches!(
                    a.renew_all(&[DeploymentId(1)]).await,
                    Err(StoreError::Displaced { .. })
                ),
                "{name}: told it was displaced"
            );
        }
    }

    /// The concurrency limit holds across instances claiming at once, also on a server whose default
    /// isolation is REPEATABLE READ (the claim sets READ COMMITTED itself): with a limit of 1 and two
    /// environments waiting, of two claims made at once exactly one starts a deploy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_claims_at_once_keep_the_concurrency_limit() {
        use sqlx::Connection;
        let url = tokio::task::spawn_blocking(test_postgres::database)
            .await
            .unwrap();
        let name = url.rsplit('/').next().unwrap().to_string();
        let mut admin = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
        sqlx::query(&format!(
            "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        let id = |name: &str| name.parse::<InstanceId>().unwrap();
        let lease = Duration::from_secs(30);
        let a = Store::open_postgres(&url, id("a"), lease).await.unwrap();
        let b = Store::open_postgres(&url, id("b"), lease).await.unwrap();
        // The oldest waiting deployment starts only when nothing runs (a limit of 1).
        let limit_one =
            |running: &[(Repository, Environment)], queue: &[QueueEntry]| shared::Choice {
                start: if running.is_empty() {
                    queue.iter().take(1).map(|e| e.deployment_id).collect()
                } else {
                    vec![]
                },
                positions: vec![],
            };
        let log = |_| std::path::PathBuf::from("x.log");
        for round in 0..10u64 {
            for (n, environment) in [(1, "production"), (2, "staging")] {
                let mut d = deployment(round * 10 + n);
                d.environment = environment.parse().unwrap();
                a.accept(d.clone()).await.unwrap();
            }
            let (by_a, by_b) = tokio::join!(a.claim(limit_one, log), b.claim(limit_one, log));
            let (by_a, by_b) = (by_a.unwrap().started, by_b.unwrap().started);
            assert_eq!(
                by_a.len() + by_b.len(),
                1,
                "round {round}: a started {by_a:?}, b started {by_b:?}"
            );
            // Leave nothing running or waiting for the next round.
            for (store, started) in [(&a, &by_a), (&b, &by_b)] {
                for d in started {
                    assert!(
                        store
                            .finish(d.deployment_id, DeploymentState::Success, "ok", Some(0))
                            .await
                            .unwrap()
                    );
                }
            }
            for n in [1, 2] {
                let _ = a
                    .end_queued(DeploymentId(round * 10 + n), "next round")
                    .await;
            }
        }
    }

    /// A cancel asked for on one instance reaches the instance running the deploy.
    #[tokio::test]
    async fn a_cancel_asked_for_anywhere_reaches_the_running_instance() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = two_instances(backend, dir.path(), Duration::from_secs(30)).await;
            let name = backend.as_str();
            a.accept(deployment(1)).await.unwrap();
            let started = a
                .claim(
                    |_, _| shared::Choice {
                        start: vec![DeploymentId(1)],
                        positions: vec![],
                    },
                    |_| std::path::PathBuf::from("x.log"),
                )
                .await
                .unwrap()
                .started;
            assert_eq!(started.len(), 1, "{name}");
            assert!(b.cancel_requests().await.unwrap().is_empty(), "{name}");
            assert!(
                b.request_cancel(DeploymentId(1), "Cancelled by bob")
                    .await
                    .unwrap(),
                "{name}"
            );
            assert_eq!(
                a.cancel_requests().await.unwrap(),
                vec![(DeploymentId(1), "Cancelled by bob".to_string())],
                "{name}"
            );
            assert!(
                b.cancel_requests().await.unwrap().is_empty(),
                "{name}: not b's deploy"
            );
            assert!(
                !b.request_cancel(DeploymentId(2), "x").await.unwrap(),
                "{name}: unknown"
            );
        }
    }

    /// Of instances racing to post a deployment's first status message, one reserves it; the message
    /// is invisible until recorded; a reservation given back lets the next one try.
    #[tokio::test]
    async fn one_instance_posts_the_status_message() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = two_instances(backend, dir.path(), Duration::from_secs(30)).await;
            let name = backend.as_str();
            let id = DeploymentId(1);
            let (first, second) =
                tokio::join!(a.reserve_chat_message(id), b.reserve_chat_message(id));
            assert!(
                first.unwrap() ^ second.unwrap(),
                "{name}: exactly one reserves"
            );
            assert_eq!(
                b.chat_message(id).await.unwrap(),
                None,
                "{name}: being posted"
            );
            a.release_chat_message(id).await.unwrap();
            assert!(
                b.reserve_chat_message(id).await.unwrap(),
                "{name}: given back"
            );
            b.set_chat_message(id, &message("1.1")).await.unwrap();
            assert_eq!(
                a.chat_message(id).await.unwrap(),
                Some(message("1.1")),
                "{name}"
            );
            a.release_chat_message(id).await.unwrap();
            assert!(
                !a.reserve_chat_message(id).await.unwrap(),
                "{name}: posted stays"
            );
            // An instance that stopped mid-post: its reservation holds until it is old, then exactly
            // one other takes it over.
            let stuck = DeploymentId(2);
            assert!(a.reserve_chat_message(stuck).await.unwrap(), "{name}");
            assert!(!b.reserve_chat_message(stuck).await.unwrap(), "{name}");
            let long_ago = Utc::now().timestamp_millis()
                - i64::try_from(RESERVATION_EXPIRY.as_millis()).unwrap()
                - 1000;
            sqlx::query("UPDATE chat_messages SET reserved_at = $1 WHERE deployment_id = $2")
                .bind(long_ago)
                .bind(2i64)
                .execute(&a.pool)
                .await
                .unwrap();
            let (first, second) =
                tokio::join!(a.reserve_chat_message(stuck), b.reserve_chat_message(stuck));
            assert!(
                first.unwrap() ^ second.unwrap(),
                "{name}: exactly one takes an old reservation over"
            );
        }
    }

    /// SQLite through the Any driver keeps what an accepted deployment needs to survive a power cut.
    #[tokio::test]
    async fn sqlite_is_in_wal_mode_with_full_sync_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut connections = Vec::new();
        for _ in 0..store.pool.options().get_max_connections() {
            let mut conn = store.pool.acquire().await.unwrap();
            let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
            connections.push(conn);
        }
        // Every write goes through that connection: the one that reads the queue cannot write.
        let written = sqlx::query("DELETE FROM deployments")
            .execute(&store.reads)
            .await;
        assert!(written.is_err(), "the reading connection wrote");
    }
}

/// A freeze: no deploys to an environment (of one app, or of every app) until it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    pub id: i64,
    /// `None`: that environment of every app.
    pub app: Option<AppName>,
    pub environment: Environment,
    pub holder: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `None`: until `unfreeze`.
    pub until: Option<DateTime<Utc>>,
}

fn freeze_from_row(row: &AnyRow) -> Result<Freeze, StoreError> {
    let app: Option<String> = row.try_get("app")?;
    Ok(Freeze {
        id: row.try_get("id")?,
        app: app
            .map(|a| a.parse())
            .transpose()
            .map_err(|e: crate::domain::Invalid| sqlx::Error::ColumnDecode {
                index: "app".into(),
                source: e.to_string().into(),
            })?,
        environment: typed(row, "environment")?,
        holder: row.try_get("holder")?,
        reason: row.try_get("reason")?,
        created_at: time_column(row, "created_at")?.unwrap_or_default(),
        until: time_column(row, "until")?,
    })
}

/// What zbot asked for when it created a deployment (`migrations/0008_grant_claims.sql`), found
/// again through the token in the deployment's payload (`zbot_grant`); the store keeps only the
/// token's SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub app: AppName,
    pub repository: Repository,
    pub environment: Environment,
    pub task: Task,
    /// The commit asked for; `None` while GitHub resolves a ref (bound when the grant is claimed).
    pub sha: Option<Sha>,
    /// Who asked in chat (a Slack user id): the deployment's actor for locks.
    pub actor: String,
    /// An admin's `deploy!` through a freeze or outside a window.
    pub overrides: bool,
    /// The approval request this deployment carries out.
    pub approval_request: Option<i64>,
    /// Unclaimed by then, the grant is worth nothing.
    pub expires_at: DateTime<Utc>,
    /// The one deployment that claimed it.
    pub deployment_id: Option<DeploymentId>,
}

/// A deployment that presents a grant's token: what it must match for the claim to succeed.
#[derive(Debug, Clone, Copy)]
pub struct GrantClaim<'a> {
    pub deployment_id: DeploymentId,
    pub app: &'a AppName,
    pub repository: &'a Repository,
    pub environment: &'a Environment,
    pub task: &'a Task,
    pub sha: &'a Sha,
}

fn grant_from_row(row: &AnyRow) -> Result<Grant, StoreError> {
    let sha: Option<String> = row.try_get("sha")?;
    let deployment_id: Option<i64> = row.try_get("deployment_id")?;
    Ok(Grant {
        app: typed(row, "app")?,
        repository: typed(row, "repository")?,
        environment: typed(row, "environment")?,
        task: typed(row, "task")?,
        sha: sha.and_then(|s| s.parse().ok()),
        actor: row.try_get("actor")?,
        overrides: row.try_get::<i64, _>("override")? != 0,
        approval_request: row.try_get("approval_request")?,
        expires_at: time_column(row, "expires_at")?.unwrap_or_default(),
        deployment_id: deployment_id
            .and_then(|id| u64::try_from(id).ok())
            .map(DeploymentId),
    })
}

/// Freezes, grants, lock expiry (`migrations/0005_guards.sql`).
impl Store {
    /// Records a freeze; returns it.
    #[allow(clippy::too_many_arguments)]
    pub async fn freeze(
        &self,
        app: Option<&AppName>,
        environment: &Environment,
        holder: &str,
        reason: Option<&str>,
        at: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Freeze, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO freezes (app, environment, holder, reason, created_at, until) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(app.map(AppName::as_str))
        .bind(environment.as_str())
        .bind(holder)
        .bind(reason)
        .bind(stamp(at))
        .bind(until.map(stamp))
        .fetch_one(&self.pool)
        .await?;
        Ok(Freeze {
            id,
            app: app.cloned(),
            environment: environment.clone(),
            holder: holder.to_string(),
            reason: reason.map(str::to_string),
            created_at: at,
            until,
        })
    }

    /// Every freeze recorded, ended ones too (the caller compares with its clock).
    pub async fn freezes(&self) -> Result<Vec<Freeze>, StoreError> {
        let rows = sqlx::query("SELECT * FROM freezes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(freeze_from_row).collect()
    }

    /// Extends freeze `id` to end at `until` (`None`: until `unfreeze`), with `reason` when one is
    /// given (else its own stays); the freeze as it is now, or `None` when it is gone.
    pub async fn extend_freeze(
        &self,
        id: i64,
        until: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Result<Option<Freeze>, StoreError> {
        sqlx::query("UPDATE freezes SET until = $1, reason = COALESCE($2, reason) WHERE id = $3")
            .bind(until.map(stamp))
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT * FROM freezes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(freeze_from_row).transpose()
    }

    /// Removes freezes by id.
    pub async fn unfreeze(&self, ids: &[i64]) -> Result<(), StoreError> {
        for id in ids {
            let lifted =
                sqlx::query("DELETE FROM freezes WHERE id = $1 RETURNING app, environment")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(row) = lifted {
                let app: Option<String> = row.try_get("app")?;
                let environment: String = row.try_get("environment")?;
                self.forget_auto_held(app.as_deref(), &environment).await?;
            }
        }
        Ok(())
    }

    /// Records what zbot asked for, before the deployment is created; only `token`'s digest is kept.
    pub async fn grant(
        &self,
        token: &str,
        grant: &Grant,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO grants (token_hash, app, repository, environment, task, sha, actor, override, approval_request, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(crate::secret::digest(token))
        .bind(grant.app.as_str())
        .bind(grant.repository.as_str())
        .bind(grant.environment.as_str())
        .bind(grant.task.as_str())
        .bind(grant.sha.as_ref().map(Sha::as_str))
        .bind(&grant.actor)
        .bind(i64::from(grant.overrides))
        .bind(grant.approval_request)
        .bind(stamp(at))
        .bind(stamp(grant.expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims the grant of `token` for `claim`'s deployment: one conditional UPDATE, so of any number
    /// of callers (instances, redeliveries, polls) only those presenting the same deployment id get
    /// it. `None`: no such grant, one for another repository, environment, task or commit, one
    /// another deployment claimed, or one that ended unclaimed by `now`.
    pub async fn claim_grant(
        &self,
        token: &str,
        claim: GrantClaim<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(
            "UPDATE grants SET deployment_id = $1, claimed_at = COALESCE(claimed_at, $2), sha = COALESCE(sha, $3) \
             WHERE token_hash = $4 AND app = $5 AND repository = $6 AND environment = $7 AND task = $8 \
             AND (sha IS NULL OR sha = $3) \
             AND (deployment_id = $1 OR (deployment_id IS NULL AND expires_at > $2)) RETURNING *",
        )
        .bind(i64::try_from(claim.deployment_id.0).unwrap_or(i64::MAX))
        .bind(stamp(now))
        .bind(claim.sha.as_str())
        .bind(crate::secret::digest(token))
        .bind(claim.app.as_str())
        .bind(claim.repository.as_str())
        .bind(claim.environment.as_str())
        .bind(claim.task.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| grant_from_row(&row)).transpose()
    }
}

/// Someone waiting for an environment to be free (`notify me when … is free`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    /// `None`: every app's environment of that name.
    pub app: Option<AppName>,
    pub environment: Environment,
    pub user: String,
}

/// Lock expiry and watchers (`migrations/0005_guards.sql`).
impl Store {
    /// Removes the locks that ended by `now`; returns them.
    pub async fn expire_locks(&self, now: DateTime<Utc>) -> Result<Vec<Lock>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM locks WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING *",
        )
        .bind(stamp(now))
        .fetch_all(&self.pool)
        .await?;
        let ended = rows
            .iter()
            .map(lock_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for lock in &ended {
            self.forget_auto_held(Some(lock.app.as_str()), lock.environment.as_str())
                .await?;
        }
        Ok(ended)
    }

    /// How long a claimed grant is kept after its claim: long enough for GitHub's redeliveries of its
    /// deployment (which claim it again), short enough that the table does not grow for ever.
    pub const GRANT_KEPT_AFTER_CLAIM: chrono::Duration = chrono::Duration::days(30);

    /// Deletes the grants that can no longer be claimed by `now` (unclaimed past their end) and those
    /// claimed more than [`Store::GRANT_KEPT_AFTER_CLAIM`] ago; returns how many went. A deployment
    /// presenting a deleted grant is refused as one presenting an unknown grant is.
    pub async fn prune_grants(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let gone = sqlx::query(
            "DELETE FROM grants WHERE (claimed_at IS NULL AND expires_at <= $1) \
             OR (claimed_at IS NOT NULL AND claimed_at <= $2)",
        )
        .bind(stamp(now))
        .bind(stamp(now - Self::GRANT_KEPT_AFTER_CLAIM))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(gone)
    }

    /// Records that `user` wants a direct message when the environment is free.
    pub async fn watch_lock(
        &self,
        app: Option<&AppName>,
        environment: &Environment,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO lock_watchers (app, environment, \"user\", created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(app.map_or("", AppName::as_str))
        .bind(environment.as_str())
        .bind(user)
        .bind(stamp(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Everyone waiting.
    pub async fn lock_watchers(&self) -> Result<Vec<Watcher>, StoreError> {
        let rows = sqlx::query("SELECT * FROM lock_watchers ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let app: String = row.try_get("app")?;
                Ok(Watcher {
                    app: if app.is_empty() {
                        None
                    } else {
                        Some(typed(row, "app")?)
                    },
                    environment: typed(row, "environment")?,
                    user: row.try_get("user")?,
                })
            })
            .collect()
    }

    /// Forgets a watcher once told; false if another process told them first.
    pub async fn unwatch(&self, watcher: &Watcher) -> Result<bool, StoreError> {
        let removed = sqlx::query(
            "DELETE FROM lock_watchers WHERE app = $1 AND environment = $2 AND \"user\" = $3",
        )
        .bind(watcher.app.as_ref().map_or("", AppName::as_str))
        .bind(watcher.environment.as_str())
        .bind(&watcher.user)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(removed == 1)
    }
}

/// Where an approval request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Waiting,
    Approved,
    Rejected,
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Waiting => "waiting",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
            RequestState::Expired => "expired",
        }
    }

    fn parse(text: &str) -> RequestState {
        match text {
            "approved" => RequestState::Approved,
            "rejected" => RequestState::Rejected,
            "expired" => RequestState::Expired,
            _ => RequestState::Waiting,
        }
    }
}

/// A deploy waiting for approval, before anything exists on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub app: AppName,
    pub environment: Environment,
    pub git_ref: GitRef,
    /// The commit the approval is for.
    pub sha: Sha,
    pub task: Task,
    pub hosts: Option<Hosts>,
    /// `deploy!`.
    pub force: bool,
    pub requester: String,
    pub channel: String,
    pub thread_ts: String,
    /// How many different people must approve.
    pub needed: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An approval request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub id: i64,
    pub request: NewRequest,
    /// The message with the buttons.
    pub message_ts: Option<String>,
    pub state: RequestState,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// The GitHub deployment made once approved.
    pub deployment_id: Option<DeploymentId>,
}

fn request_from_row(row: &AnyRow) -> Result<ApprovalRequest, StoreError> {
    let hosts: Option<String> = row.try_get("hosts")?;
    let needed: i64 = row.try_get("needed")?;
    let state: String = row.try_get("state")?;
    let deployment_id: Option<i64> = row.try_get("deployment_id")?;
    Ok(ApprovalRequest {
        id: row.try_get("id")?,
        request: NewRequest {
            app: typed(row, "app")?,
            environment: typed(row, "environment")?,
            git_ref: typed(row, "git_ref")?,
            sha: typed(row, "sha")?,
            task: typed(row, "task")?,
            hosts: hosts.and_then(|h| h.parse().ok()),
            force: row.try_get::<i64, _>("force")? != 0,
            requester: row.try_get("requester")?,
            channel: row.try_get("channel")?,
            thread_ts: row.try_get("thread_ts")?,
            needed: u32::try_from(needed).unwrap_or(1),
            created_at: time_column(row, "created_at")?.unwrap_or_default(),
            expires_at: time_column(row, "expires_at")?.unwrap_or_default(),
        },
        message_ts: row.try_get("message_ts")?,
        state: RequestState::parse(&state),
        decided_by: row.try_get("decided_by")?,
        decided_at: time_column(row, "decided_at")?,
        reason: row.try_get("reason")?,
        deployment_id: deployment_id
            .and_then(|id| u64::try_from(id).ok())
            .map(DeploymentId),
    })
}

/// Approval requests (`migrations/0005_guards.sql`).
impl Store {
    /// Records a request; returns its number.
    pub async fn create_request(&self, r: &NewRequest) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO approval_requests (app, environment, git_ref, sha, task, hosts, force, requester, channel, thread_ts, needed, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'waiting', $12, $13) RETURNING id",
        )
        .bind(r.app.as_str())
        .bind(r.environment.as_str())
        .bind(r.git_ref.as_str())
        .bind(r.sha.as_str())
        .bind(r.task.as_str())
        .bind(r.hosts.as_ref().map(ToString::to_string))
        .bind(i64::from(r.force))
        .bind(&r.requester)
        .bind(&r.channel)
        .bind(&r.thread_ts)
        .bind(i64::from(r.needed))
        .bind(stamp(r.created_at))
        .bind(stamp(r.expires_at))
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn request(&self, id: i64) -> Result<Option<ApprovalRequest>, StoreError> {
        let row = sqlx::query("SELECT * FROM approval_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| request_from_row(&r)).transpose()
    }

    /// The message that carries the request's buttons.
    pub async fn set_request_message(&self, id: i64, ts: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE approval_requests SET message_ts = $1 WHERE id = $2")
            .bind(ts)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records `approver`'s approval of `sha`; returns who approved that sha so far.
    pub async fn approve_request(
        &self,
        id: i64,
        approver: &str,
        sha: &Sha,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "INSERT INTO approvals (request_id, approver, sha, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(approver)
        .bind(sha.as_str())
        .bind(stamp(now))
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar(
            "SELECT approver FROM approvals WHERE request_id = $1 AND sha = $2 ORDER BY created_at, approver",
        )
        .bind(id)
        .bind(sha.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends a waiting request as `state`; false if it was no longer waiting (decided elsewhere).
    pub async fn decide_request(
        &self,
        id: i64,
        state: RequestState,
        by: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE approval_requests SET state = $1, decided_by = $2, decided_at = $3, reason = $4 WHERE id = $5 AND state = 'waiting'",
        )
        .bind(state.as_str())
        .bind(by)
        .bind(stamp(now))
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// The GitHub deployment an approved request became: one only. False when the request is bound
    /// to another deployment already (an approval carries out one deployment, never a second).
    pub async fn set_request_deployment(
        &self,
        id: i64,
        deployment_id: DeploymentId,
    ) -> Result<bool, StoreError> {
        let bound = sqlx::query(
            "UPDATE approval_requests SET deployment_id = $1 WHERE id = $2 AND state = 'approved' \
             AND (deployment_id IS NULL OR deployment_id = $1)",
        )
        .bind(i64::try_from(deployment_id.0).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(bound == 1)
    }

    /// Ends the waiting requests whose time ran out by `now`; returns them.
    pub async fn expire_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApprovalRequest>, StoreError> {
        let rows = sqlx::query(
            "UPDATE approval_requests SET state = 'expired', decided_at = $1 WHERE state = 'waiting' AND expires_at <= $2 RETURNING *",
        )
        .bind(stamp(now))
        .bind(stamp(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// The approved requests that became these deployments, by deployment id.
    pub async fn approvals_of(
        &self,
        deployments: &[DeploymentId],
    ) -> Result<Vec<ApprovalRequest>, StoreError> {
        let mut found = Vec::new();
        for id in deployments {
            let row = sqlx::query("SELECT * FROM approval_requests WHERE deployment_id = $1")
                .bind(i64::try_from(id.0).unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                found.push(request_from_row(&row)?);
            }
        }
        Ok(found)
    }

    /// Who approved request `id`'s sha, and when.
    pub async fn approvers_of(
        &self,
        id: i64,
        sha: &Sha,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT approver, created_at FROM approvals WHERE request_id = $1 AND sha = $2 ORDER BY created_at, approver",
        )
        .bind(id)
        .bind(sha.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("approver")?,
                    time_column(row, "created_at")?.unwrap_or_default(),
                ))
            })
            .collect()
    }
}

/// Auto-deploy's memory (`migrations/0005_guards.sql`).
impl Store {
    /// Remembers `sha` as the newest green head waiting for `app`'s `environment`.
    pub async fn set_auto_pending(
        &self,
        app: &AppName,
        environment: &Environment,
        sha: &Sha,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auto_deploy_pending (app, environment, sha, since) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app, environment) DO UPDATE SET sha = excluded.sha, since = excluded.since",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(sha.as_str())
        .bind(stamp(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The waiting head, if any, without taking it.
    pub async fn auto_pending(
        &self,
        app: &AppName,
        environment: &Environment,
    ) -> Result<Option<Sha>, StoreError> {
        let sha: Option<String> = sqlx::query_scalar(
            "SELECT sha FROM auto_deploy_pending WHERE app = $1 AND environment = $2",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(sha.and_then(|s| s.parse().ok()))
    }

    /// Forgets the waiting head if it is still `sha`.
    pub async fn clear_auto_pending(
        &self,
        app: &AppName,
        environment: &Environment,
        sha: &Sha,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM auto_deploy_pending WHERE app = $1 AND environment = $2 AND sha = $3",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(sha.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a deployment of `app` to `environment` is queued or running, or auto-deploy asked
    /// GitHub for one within the last ten minutes whose webhook has not arrived yet.
    pub async fn busy(
        &self,
        app: &AppName,
        environment: &Environment,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let recently = stamp(now - chrono::Duration::minutes(10));
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM deployments WHERE app = $1 AND environment = $2 AND state IN ('queued', 'running')) \
             + (SELECT COUNT(*) FROM auto_deploys a WHERE a.app = $3 AND a.environment = $4 AND a.created_at >= $5 \
                AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.app = a.app AND d.environment = a.environment AND d.sha = a.sha))",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(recently)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Whether `sha` was deployed (or is being deployed) there, or auto-deploy already asked for it; a
    /// dry run (`deploy:noop`) deployed nothing and does not count.
    pub async fn deployed_there(
        &self,
        app: &AppName,
        environment: &Environment,
        sha: &Sha,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM deployments WHERE app = $1 AND environment = $2 AND sha = $3 AND task <> 'deploy:noop' AND state IN ('queued', 'running', 'success')) \
             + (SELECT COUNT(*) FROM auto_deploys WHERE app = $4 AND environment = $5 AND sha = $6)",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(sha.as_str())
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(sha.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Records that auto-deploy asks for `sha` there; false when it was asked for already (by this
    /// or another instance sharing the store), so one commit is asked for once.
    pub async fn record_auto_deploy(
        &self,
        app: &AppName,
        environment: &Environment,
        sha: &Sha,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let recorded = sqlx::query(
            "INSERT INTO auto_deploys (app, environment, sha, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(sha.as_str())
        .bind(stamp(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.forget_auto_held(Some(app.as_str()), environment.as_str())
            .await?;
        Ok(recorded == 1)
    }

    /// Forgets that auto-deploy said it holds back `environment` (of `app`; `None`: of every app),
    /// because that hold ended (a lock went, a freeze was lifted, nothing holds it any more): the
    /// next hold is said again.
    pub async fn forget_auto_held(
        &self,
        app: Option<&str>,
        environment: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM auto_deploy_held WHERE ($1 = '' OR app = $1) AND LOWER(environment) = LOWER($2)",
        )
        .bind(app.unwrap_or_default())
        .bind(environment)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records why auto-deploy holds back; true only the first time for this reason (say it once).
    pub async fn auto_held(
        &self,
        app: &AppName,
        environment: &Environment,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "INSERT INTO auto_deploy_held (app, environment, reason, said_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app, environment) DO UPDATE SET reason = excluded.reason, said_at = excluded.said_at \
             WHERE auto_deploy_held.reason <> excluded.reason",
        )
        .bind(app.as_str())
        .bind(environment.as_str())
        .bind(reason)
        .bind(stamp(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }
}
