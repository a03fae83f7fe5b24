//! Runs one deployment from start to end: lock tasks and lock checks, the log and its gist, the
//! checkout, the recipe, the process, and the statuses on GitHub. Deploy programs are started only by
//! [`process`]; git by [`checkout`], pip by [`tools`].
//!
//! [`Deployer::run`] takes a deployment the scheduler has marked running and always ends it exactly
//! once: `success` (exit 0), `failure` (the deploy itself failed) or `error` (zbot could not run it: no
//! app, locked, checkout failed, no recipe, timed out, cancelled). Every state change is posted to
//! GitHub and published on the [`EventBus`].
//!
//! A deploy's start, once its log file exists, runs on two sides at once:
//! - GitHub's: the gist is asked for (`POST /gists`); its answer (made, or refused: the log is then
//!   zbot's own page) is GitHub's first answer of the deploy ([`FirstAnswer`]); then the link is
//!   recorded and `in_progress` is posted (after a lease check), once the program has started or
//!   [`IN_PROGRESS_WITHIN`] after that answer, whichever comes first.
//! - the deploy's: the grant and the guards (store reads, well under a millisecond: a deploy they
//!   stop is told at once and leaves the tree as it was), then the checkout (for an executor that
//!   [checks out](executor::Executor::checks_out)), the recipe chosen, then GitHub's first answer
//!   and the lease (fencing) awaited, then the program. GitHub's silence ends the deploy as soon as
//!   it is known, also during the checkout (whose git is then stopped, as on a cancel).
//!
//! The program waits for the tree, for GitHub's first answer and for the lease, never for
//! `in_progress`. With a real GitHub (100–300 ms a call) that is one round trip on the program's
//! path, overlapped with the checkout: waiting for one answer proves GitHub answers (a deploy GitHub
//! could not be told the end of does not run: `error`, saying so), and waiting for `in_progress` too
//! would cost a second round trip. `in_progress` is answered (or given up) before the final status is
//! posted, so it never follows it; it is posted only over a lease this instance still holds, and not
//! at all for a deploy cancelled before it began or whose preparing ended without the program (one
//! that fails after [`IN_PROGRESS_WITHIN`] has said `in_progress` already). Without gists (the embedded forge) `in_progress` is
//! the first answer and the program waits for it. A lock task acts once GitHub's first answer came.

pub mod checkout;
pub mod escaped;
pub mod executor;
pub mod heroku;
pub mod log;
pub mod process;
pub mod tools;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{AppConfig, Config};
use crate::domain::{DeploymentId, Task};
use crate::events::{DeploymentEvent, EventBus};
use crate::forge::{Changes, Forge, ForgeError, LogPage, StatusState, StatusUpdate};
use crate::loglink::LogLinks;
use crate::metrics::{DeployOutcome, EnvironmentLabel};
use crate::policy::{self, Denial, Refusal};
use crate::recipe::{Invocation, Recipes, RenderInput};
use crate::reply::{self, human_duration};
use crate::secret::Redactor;
use crate::store::{Deployment, DeploymentState, Grant, Store};
use checkout::{Checkouts, GitAuth};
use log::{LogSender, LogWriter};
use process::Exit;

/// How often a running deploy's gist is refreshed, so a reader can follow along.
pub const LOG_REFRESH: Duration = Duration::from_secs(3);

/// A gist file stays under GitHub's 1 MB limit with room to spare.
pub const GIST_LIMIT: u64 = 900 * 1024;

/// How many output lines a failure carries to chat.
pub const TAIL_LINES: usize = 15;

/// How long a success waits, at most, for the forge to say what it shipped (the "N commits since
/// the last deploy" line); past it the outcome is posted without that line. Zbot's own bound, short
/// against `[github] timeout`, so a slow compare never holds up the status, the reply or the sinks.
pub const CHANGES_LIMIT: Duration = Duration::from_secs(10);

/// Everything a deploy needs, shared by all running deploys.
#[derive(Debug)]
pub struct Deployer {
    pub config: Arc<Config>,
    pub recipes: Arc<Recipes>,
    pub store: Store,
    pub forge: Forge,
    pub checkouts: Checkouts,
    pub events: EventBus,
    pub redactor: Redactor,
    /// Links to zbot's own log pages, on the listener. Without a listener (`zbot shell`) the link is
    /// the log file's path.
    pub log_links: Option<LogLinks>,
    /// What carries deployments out: the process runner, Heroku's Platform API.
    pub executors: executor::Executors,
    /// "Now", for freezes, windows and lock expiry.
    pub clock: crate::clock::Clock,
    /// This zbot's metrics: deploys that ended, by app, environment and outcome.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The override said of each deployment an admin's `deploy!` took through a freeze or window, while
    /// it runs: added to its `in_progress` and final status descriptions.
    pub overrides: std::sync::Mutex<std::collections::BTreeMap<DeploymentId, Overridden>>,
    /// With a shared store, each running deploy's local lease deadline, which its guard follows.
    pub lease_deadlines: LeaseDeadlines,
}

/// How often a shared store's leases are renewed, and how long one renewal may take: a sixth of the
/// lease, so that with a local deadline of half the lease a renewal that fails or gets no answer is
/// followed by another before the deadline.
pub fn renew_every(lease: Duration) -> Duration {
    lease / 6
}

/// What [`Deployer::holds_lease`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Renewed by a try that began at `since` (a local deadline counts from there).
    Held { since: tokio::time::Instant },
    /// Another instance holds it, or the deployment has ended: this instance must not act on it.
    Lost,
    /// The store did not answer in time: nobody knows.
    Unanswered,
}

/// Each deploy's local lease deadline on a shared store: the start of its last successful renewal plus
/// half the lease (the scheduler moves it on). Past it this instance stops its deploy and stops feeding
/// the deploy's guard ([`process::GuardSpec`]), so its processes are dead before another instance may
/// take the deploy over, whatever became of this one.
#[derive(Debug, Default)]
pub struct LeaseDeadlines(
    std::sync::Mutex<std::collections::HashMap<DeploymentId, watch::Sender<tokio::time::Instant>>>,
);

impl LeaseDeadlines {
    fn map(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<DeploymentId, watch::Sender<tokio::time::Instant>>,
    > {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets (or moves) the deadline of deployment `id`.
    pub fn set(&self, id: DeploymentId, deadline: tokio::time::Instant) {
        let mut map = self.map();
        match map.get(&id) {
            Some(sender) => {
                sender.send_replace(deadline);
            }
            None => {
                map.insert(id, watch::channel(deadline).0);
            }
        }
    }

    /// Forgets deployment `id` (it ended here).
    pub fn release(&self, id: DeploymentId) {
        self.map().remove(&id);
    }

    /// The deadline of deployment `id`, as it moves.
    pub fn watch(&self, id: DeploymentId) -> Option<watch::Receiver<tokio::time::Instant>> {
        self.map().get(&id).map(watch::Sender::subscribe)
    }

    /// The deployments whose deadline has passed at `now`.
    pub fn overdue(&self, now: tokio::time::Instant) -> Vec<DeploymentId> {
        self.map()
            .iter()
            .filter(|(_, deadline)| *deadline.borrow() <= now)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// What an admin's `deploy!` went through: who, and every closure that held.
#[derive(Debug, Clone)]
pub struct Overridden {
    pub admin: String,
    pub closures: Vec<policy::guards::Closure>,
}

impl Overridden {
    /// A status description with the override after it, each closure named while GitHub's
    /// [`MAX_DESCRIPTION`](crate::forge::MAX_DESCRIPTION) leaves room, then "+N more".
    fn after(&self, description: &str) -> String {
        let room = crate::forge::MAX_DESCRIPTION.saturating_sub(description.chars().count() + 2);
        format!(
            "{description}; {}",
            reply::overridden_plain(&self.closures, &self.admin, room)
        )
    }
}

/// Resolves with the cancel's reason once the deploy is cancelled; never if it is not.
async fn cancelled(mut cancel: watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = cancel.borrow_and_update().clone() {
            return reason;
        }
        if cancel.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// GitHub's first answer of a deploy, which its recipe waits for: the gist made or refused (the
/// answer says where the log is read), or no answer within `[github] timeout` (the deploy does not
/// run: GitHub could not be told how it ends either). Without gists (the embedded forge) the first
/// call is `in_progress` itself, and the recipe waits for that.
#[derive(Debug, Clone)]
pub struct FirstAnswer {
    /// The log's link, or why the deploy ends without running (GitHub's silence); `None` until then.
    answer: watch::Receiver<Option<Result<String, String>>>,
    /// No gist is made: `in_progress` is GitHub's first answer.
    in_progress_first: bool,
}

impl FirstAnswer {
    /// The log's link once GitHub answered; else how the deploy ends (`error`, saying GitHub did not
    /// answer).
    pub async fn log_url(&self) -> Result<String, Outcome> {
        let mut answer = self.answer.clone();
        let answered = answer
            .wait_for(Option::is_some)
            .await
            .map(|answer| answer.clone());
        match answered {
            Ok(Some(Ok(url))) => Ok(url),
            Ok(Some(Err(why))) => Err(Outcome::error(why)),
            // The deploy's start was given up before GitHub answered (zbot is stopping).
            Ok(None) | Err(_) => Err(Outcome::error(reply::zbot_failed())),
        }
    }
}

/// How long after GitHub's first answer `in_progress` waits at most for the program's start
/// ([`Deployer::run_process`]).
const IN_PROGRESS_WITHIN: Duration = Duration::from_millis(200);

/// A deploy's checkout under way: its tree's path and a line for the log, once done.
pub type Checkout<'a> = std::pin::Pin<
    Box<dyn Future<Output = Result<(PathBuf, String), checkout::CheckoutError>> + Send + Sync + 'a>,
>;

/// What ties a deploy's program to its `in_progress` status ([`Deployer::run_process`]).
struct Gates<'a> {
    /// GitHub's first answer, which nothing runs before.
    first: &'a FirstAnswer,
    /// How posting `in_progress` ended: awaited before the program when it is GitHub's first answer.
    told: tokio::sync::oneshot::Receiver<Result<(), Outcome>>,
    /// Set once the program started; dropped when the deploy ends before it.
    begun: watch::Sender<bool>,
    /// The checkout started once the guards let the deploy go, if it was.
    checkout: Option<Checkout<'a>>,
}

/// What [`Deployer::prepare`] made ready.
struct Prepared {
    invocation: Invocation,
    tree: PathBuf,
    timeout: Duration,
    /// The recipe's `keep_children`.
    keep_children: bool,
}

impl Prepared {
    /// The program's name, not the path a recipe may give it.
    fn program_name(&self) -> String {
        let program = &self.invocation.program;
        std::path::Path::new(program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
    }
}

/// How a deployment ended, as its final status: pure, from the program's exit and how long it took.
/// `cancelled_because` is the reason a cancel gave.
fn report(
    d: &Deployment,
    exit: Exit,
    took: Duration,
    program: &str,
    cancelled_because: Option<String>,
) -> Outcome {
    let took = human_duration(took);
    match exit {
        Exit::Code(0) => Outcome::done(StatusState::Success, reply::deployed(d, &took), Some(0)),
        Exit::Code(code) => Outcome::done(
            StatusState::Failure,
            reply::exited(program, code, &took),
            Some(code),
        ),
        Exit::Signal(signal) => Outcome::done(
            StatusState::Failure,
            reply::killed(program, signal, &took),
            None,
        ),
        Exit::TimedOut(limit) => Outcome::error(reply::timed_out(limit)),
        Exit::Cancelled => Outcome::error(cancelled_because.unwrap_or_else(|| "Cancelled".into())),
        Exit::NotStarted(reason) => Outcome::error(reason),
        Exit::StoppedByGuard => Outcome::error(reply::STOPPED_BY_GUARD.to_string()),
    }
}

/// A duration as the deploy log and zbot's own log give it: tenths of a second under a minute
/// (`0.2s`), [`human_duration`] above.
fn log_duration(took: Duration) -> String {
    if took < Duration::from_secs(60) {
        format!("{:.1}s", took.as_secs_f64())
    } else {
        human_duration(took)
    }
}

/// The deploy log's last line, for every outcome: `success: exit 0 in 0.2s`; other outcomes add
/// why (`error: Cancelled by alice in 3.0s`), and the exit code when there was one.
fn ending(outcome: &Outcome, took: Duration) -> String {
    let state = outcome.state.as_str();
    let took = log_duration(took);
    match (outcome.state, outcome.exit_code) {
        (StatusState::Success, Some(code)) => format!("{state}: exit {code} in {took}"),
        (StatusState::Success, None) => format!("{state} after {took}: {}", outcome.description),
        (_, Some(code)) => format!("{state}: exit {code} in {took}: {}", outcome.description),
        // The time first, so it is never read as part of the reason.
        (_, None) => format!("{state} after {took}: {}", outcome.description),
    }
}

/// How a deployment ended, before it is posted: what an [`executor::Executor`] returns.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub state: StatusState,
    /// The status description (cut to GitHub's 140 characters when posted).
    pub description: String,
    /// The deploy program's exit code, when there was one.
    pub exit_code: Option<i32>,
    /// Why policy did not let it run (a lock): chat words it with a mention, GitHub gets `description`.
    pub denial: Option<Denial>,
}

impl Outcome {
    pub fn done(state: StatusState, description: String, exit_code: Option<i32>) -> Outcome {
        Outcome {
            state,
            description,
            exit_code,
            denial: None,
        }
    }

    pub fn error(description: impl Into<String>) -> Outcome {
        Outcome::done(StatusState::Error, description.into(), None)
    }

    fn denied(denial: Denial) -> Outcome {
        Outcome {
            denial: Some(denial.clone()),
            ..Outcome::error(reply::denial_plain(&denial))
        }
    }
}

impl Deployer {
    /// Where a deploy's whole log is kept.
    pub fn log_path(&self, deployment_id: DeploymentId) -> PathBuf {
        self.config
            .bot
            .data_dir
            .join("logs")
            .join(format!("{deployment_id}.log"))
    }

    /// zbot's own page for a deploy's log, used when a gist cannot be written.
    fn own_log_url(&self, deployment_id: DeploymentId) -> String {
        match &self.log_links {
            Some(links) => links.url(deployment_id),
            None => self.log_path(deployment_id).display().to_string(),
        }
    }

    /// The environment's URL, shown with its statuses; none for a dry run, which deploys nothing there.
    fn environment_url(&self, d: &Deployment) -> Option<String> {
        if d.task.is_noop() {
            return None;
        }
        self.config
            .apps
            .get(&d.app)?
            .environment_urls
            .get(&d.environment)
            .cloned()
    }

    /// Tells GitHub (an `error` status saying why, when the repository is known) and chat that a
    /// deployment was refused before it was queued.
    pub async fn refuse(&self, refusal: Refusal) {
        if let Some(repository) = &refusal.repository {
            let update = StatusUpdate {
                state: StatusState::Error,
                description: self.redactor.redact(&reply::refusal_plain(&refusal)),
                log_url: None,
                environment_url: None,
                dry_run: false,
            };
            if let Err(e) = self
                .forge
                .post_status(repository, refusal.deployment_id, &update)
                .await
            {
                tracing::error!(deployment = %refusal.deployment_id, "cannot post the error status: {e}");
            }
        }
        self.events.refused(refusal);
    }

    /// Publishes a state change (with the denial that stopped the deployment, if one did, for chat),
    /// then posts it to GitHub. GitHub's failure is logged and returned; only the start of a deploy
    /// depends on it.
    ///
    /// The event bus comes first so that chat hears of the change at once even when GitHub takes
    /// its whole `[github] timeout` to fail.
    pub async fn announce(
        &self,
        d: &Deployment,
        state: StatusState,
        description: &str,
        log_url: Option<&str>,
        tail: Vec<String>,
        denial: Option<Denial>,
    ) -> Result<(), ForgeError> {
        self.announce_changes(d, state, description, log_url, tail, denial, None)
            .await
    }

    /// [`Deployer::announce`], with what a successful deploy shipped.
    #[allow(clippy::too_many_arguments)]
    async fn announce_changes(
        &self,
        d: &Deployment,
        state: StatusState,
        description: &str,
        log_url: Option<&str>,
        tail: Vec<String>,
        denial: Option<Denial>,
        changes: Option<Changes>,
    ) -> Result<(), ForgeError> {
        let description = self.redactor.redact(description);
        let mut event = DeploymentEvent::of(
            d,
            state,
            description.clone(),
            log_url.map(str::to_string),
            tail,
        );
        event.denial = denial;
        event.changes = changes;
        self.events.publish(event);
        let update = StatusUpdate {
            state,
            description,
            log_url: log_url.map(str::to_string),
            environment_url: self.environment_url(d),
            dry_run: d.task.is_noop(),
        };
        self.forge
            .post_status(&d.repository, d.deployment_id, &update)
            .await
            .inspect_err(|e| {
                tracing::error!(
                    deployment = %d.deployment_id,
                    "cannot post the {} status: {e}",
                    state.as_str()
                );
            })
    }

    /// Ends a deployment a previous zbot process (or, with a shared store, an instance that stopped) was
    /// running: whatever it started must not go on deploying unsupervised, so every process of it this
    /// zbot's data directory started is stopped first: its recorded process group, and every process
    /// carrying its marks (also when zbot died before it could record the group, and those that left
    /// it). Another instance's processes, on this machine or another, are its guard's to stop
    /// ([`process::guard`]).
    pub async fn end_interrupted(&self, d: &Deployment, description: &str) {
        tracing::warn!(
            deployment = %d.deployment_id,
            process_group = d.process_group,
            reason = description,
            "ending an interrupted deploy"
        );
        let marks = escaped::Marks::new(&self.config.bot.data_dir, d.deployment_id);
        if let Some(group) = d.process_group.and_then(|g| i32::try_from(g).ok())
            && process::kill_leftover_group(group, &marks).await
        {
            tracing::warn!(
                deployment = %d.deployment_id,
                "killed the process group it left running"
            );
        }
        for stopped in escaped::stop(&marks, None, process::GRACE).await {
            tracing::warn!(
                deployment = %d.deployment_id,
                pid = stopped.process.pid,
                command = %self.redactor.redact(&stopped.process.command),
                ending = ?stopped.ending,
                "stopped a process of the interrupted deploy"
            );
        }
        self.end_unrun(d, description).await;
    }

    /// Whether this instance still holds the lease of its running deployment `d` (renewing it): always
    /// alone on the store; on a shared store, [`Lease::Lost`] only when the store says so (another
    /// instance took it over: this one was paused, or cut off). A store that fails or does not answer
    /// (each try bounded by a sixth of the lease) is asked again, twice a second, until `until`; then
    /// [`Lease::Unanswered`]. Asked before anything a deploy does outside zbot that another instance
    /// may have done or undone meanwhile.
    pub async fn holds_lease(&self, d: &Deployment, until: tokio::time::Instant) -> Lease {
        if !self.store.is_shared() {
            return Lease::Held {
                since: tokio::time::Instant::now(),
            };
        }
        let each = renew_every(self.store.lease());
        loop {
            let since = tokio::time::Instant::now();
            let left = until.saturating_duration_since(since);
            if left.is_zero() {
                return Lease::Unanswered;
            }
            match tokio::time::timeout(each.min(left), self.store.renew(d.deployment_id)).await {
                Ok(Ok(true)) => return Lease::Held { since },
                Ok(Ok(false)) => return Lease::Lost,
                Ok(Err(e)) => {
                    tracing::warn!(deployment = %d.deployment_id, "cannot renew the lease yet (trying again): {e}");
                }
                Err(_) => {
                    tracing::warn!(deployment = %d.deployment_id, "cannot renew the lease yet: the store did not answer (trying again)");
                }
            }
            let pause = Duration::from_millis(500)
                .min(until.saturating_duration_since(tokio::time::Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }

    /// The local lease deadline of this instance's deployment `d` (now, if it has none).
    fn lease_deadline(&self, d: &Deployment) -> tokio::time::Instant {
        self.lease_deadlines
            .watch(d.deployment_id)
            .map_or_else(tokio::time::Instant::now, |deadline| *deadline.borrow())
    }

    /// Records the end of a deploy this instance ran ([`Store::finish`], fenced by the lease). On a
    /// shared store a store that does not answer is tried again, once a second, for up to a lease:
    /// the store is where the outcome is decided, so none is reported before it is recorded.
    async fn record_end(
        &self,
        d: &Deployment,
        state: DeploymentState,
        description: &str,
        exit_code: Option<i32>,
    ) -> Result<bool, crate::store::StoreError> {
        let give_up = Instant::now() + self.store.lease();
        let within = self.store.lease() / 3;
        loop {
            let finish = self
                .store
                .finish(d.deployment_id, state, description, exit_code);
            // A half-open connection must not hold the deploy's end (and its environment) for minutes.
            let ended = if self.store.is_shared() {
                match tokio::time::timeout(within, finish).await {
                    Ok(ended) => ended,
                    Err(_) => Err(crate::store::StoreError::Unanswered(within)),
                }
            } else {
                finish.await
            };
            match ended {
                Err(e) if self.store.is_shared() && Instant::now() < give_up => {
                    tracing::warn!(deployment = %d.deployment_id, "cannot record the end yet (trying again): {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                ended => return ended,
            }
        }
    }

    /// Counts deployment `d`'s end in `zbot_deployments_total` and its duration.
    fn count_ended(&self, d: &Deployment, ended: DeployOutcome, took: Duration) {
        let configured = self
            .config
            .apps
            .get(&d.app)
            .is_some_and(|app| app.environments.contains(&d.environment));
        self.metrics.deploy_ended(
            &d.app,
            EnvironmentLabel::of(&d.environment, configured),
            ended,
            took,
        );
    }

    /// Whether the store says another instance has taken deployment `d` from this one (a store that
    /// does not answer says nothing: the end is recorded when it is back, or not at all).
    async fn lost_lease(&self, d: &Deployment) -> bool {
        self.store.is_shared()
            && matches!(
                tokio::time::timeout(self.store.lease() / 3, self.store.renew(d.deployment_id))
                    .await,
                Ok(Ok(false))
            )
    }

    /// Ends a deployment that never ran (restart recovery, cancel while queued).
    pub async fn end_unrun(&self, d: &Deployment, description: &str) {
        let ended = self
            .store
            .finish(d.deployment_id, DeploymentState::Error, description, None)
            .await;
        self.told_unrun(d, description, ended).await;
    }

    /// Ends a deployment that is still waiting (a cancel); false if it had started meanwhile.
    pub async fn end_queued(&self, d: &Deployment, description: &str) -> bool {
        let ended = self.store.end_queued(d.deployment_id, description).await;
        let was_queued = matches!(ended, Ok(true));
        self.told_unrun(d, description, ended).await;
        was_queued
    }

    async fn told_unrun(
        &self,
        d: &Deployment,
        description: &str,
        ended: Result<bool, crate::store::StoreError>,
    ) {
        match ended {
            Ok(true) => {
                // One that ran counts among the ended deploys (a failover's `error` included).
                if let Some(took) = d
                    .started_at
                    .and_then(|started| (chrono::Utc::now() - started).to_std().ok())
                {
                    self.count_ended(d, DeployOutcome::Error, took);
                }
                let _ = self
                    .announce(
                        d,
                        StatusState::Error,
                        description,
                        d.log_url.as_deref(),
                        Vec::new(),
                        None,
                    )
                    .await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(deployment = %d.deployment_id, "cannot record the end: {e}"),
        }
    }

    /// Runs a deployment the scheduler has marked running, to its one end.
    ///
    /// GitHub's side of the start (the gist made, its link recorded, then `in_progress`) runs beside
    /// the deploy's own (guards, then checkout and recipe): the recipe waits only
    /// for GitHub's first answer ([`FirstAnswer`]), never for `in_progress`, which is awaited before
    /// the final status.
    pub async fn run(&self, d: Deployment, cancel: watch::Receiver<Option<String>>) {
        let started = Instant::now();
        let log_path = self.log_path(d.deployment_id);
        let created =
            LogWriter::create(&log_path, self.redactor.clone(), self.config.bot.time_zone).await;
        let (writer, log) = match created {
            Ok(pair) => pair,
            Err(e) => {
                let outcome = Outcome::error(reply::log_unwritable(&log_path, &e));
                self.end(&d, outcome, None).await;
                return;
            }
        };
        tracing::trace!(deployment = %d.deployment_id, "the log is open: GitHub's side and the deploy's start");
        let (answered, answer) = watch::channel(None);
        let first = FirstAnswer {
            answer,
            in_progress_first: !self.forge.publishes_logs(),
        };
        let (refresh_stop, refresh_stopped) = watch::channel(false);
        let ((page, log_url, refresh), outcome) = tokio::join!(
            self.open_log(&d, answered, &log_path, refresh_stopped),
            self.deploy(&d, &log, &first, started, cancel)
        );
        // A deploy whose lease this instance lost (its guard may have killed it) did not fail: it
        // was taken from this instance, which says so in its log rather than what became of it.
        let outcome = if self.lost_lease(&d).await {
            Outcome::error(reply::LEASE_LOST)
        } else {
            outcome
        };
        let took = started.elapsed();
        log.note(ending(&outcome, took)).await;
        tracing::info!(
            deployment = %d.deployment_id,
            outcome = outcome.state.as_str(),
            exit = outcome.exit_code.map_or_else(|| "none".to_string(), |c| c.to_string()),
            duration = %log_duration(took),
            "deploy ended"
        );
        drop(log);
        if let Err(e) = writer.finish().await {
            tracing::error!(
                deployment = %d.deployment_id,
                "the log was not written completely: {e}"
            );
        }
        let _ = refresh_stop.send(true);
        if let Some(refresh) = refresh {
            let _ = refresh.await;
        }
        // Another instance that took the deploy over may have written its end into the page.
        if let Some(page) = &page
            && matches!(
                self.holds_lease(&d, self.lease_deadline(&d)).await,
                Lease::Held { .. }
            )
        {
            self.page_refresher(&d)
                .refresh(&d, page, &log_path, &log_url)
                .await;
        }
        self.end(&d, outcome, Some(&log_url)).await;
    }

    /// GitHub's side of a deploy's start: the gist (when the forge keeps logs), then GitHub's first
    /// answer told to `answered` (the log's link, or that GitHub did not answer: the deploy does not
    /// run, since GitHub could not be told how it ends either), the link recorded, and the gist kept
    /// fresh until `stop`. Returns the gist, the link and the refresher.
    async fn open_log(
        &self,
        d: &Deployment,
        answered: watch::Sender<Option<Result<String, String>>>,
        log_path: &std::path::Path,
        stop: watch::Receiver<bool>,
    ) -> (Option<LogPage>, String, Option<tokio::task::JoinHandle<()>>) {
        let (page, unanswered) = if self.forge.publishes_logs() {
            match self.create_page(d).await {
                Ok(page) => (page, None),
                Err(e) => (None, Some(reply::github_unanswered(&e))),
            }
        } else {
            (None, None)
        };
        let log_url = page
            .as_ref()
            .map_or_else(|| self.own_log_url(d.deployment_id), |p| p.url.clone());
        answered.send_replace(Some(match unanswered {
            Some(why) => Err(why),
            None => Ok(log_url.clone()),
        }));
        if let Err(e) = self
            .store
            .set_log(
                d.deployment_id,
                page.as_ref().map(|p| p.id.as_str()),
                &log_url,
            )
            .await
        {
            tracing::error!(
                deployment = %d.deployment_id,
                "cannot record the log url: {e}"
            );
        }
        let refresh = page
            .clone()
            .map(|page| self.keep_page_fresh(d, page, log_path, &log_url, stop));
        (page, log_url, refresh)
    }

    async fn end(&self, d: &Deployment, outcome: Outcome, log_url: Option<&str>) {
        let failed = matches!(outcome.state, StatusState::Failure | StatusState::Error);
        let state = match outcome.state {
            StatusState::Success => DeploymentState::Success,
            StatusState::Failure => DeploymentState::Failure,
            _ => DeploymentState::Error,
        };
        let description = self.redactor.redact(&outcome.description);
        // Asked while the row still says running: a crash here leaves it to recovery, never a
        // finished row whose GitHub status stays in_progress. Bounded, so the outcome is not held up.
        let changes = if outcome.state == StatusState::Success && d.task == Task::deploy() {
            tokio::time::timeout(CHANGES_LIMIT, self.changes(d))
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(
                        deployment = %d.deployment_id,
                        "what changed since the last deploy took longer than {CHANGES_LIMIT:?}; answering without it"
                    );
                    None
                })
        } else {
            None
        };
        // The end is recorded first, fenced by the lease: an instance that lost it (another ended
        // the deployment) does nothing more, neither lock nor status.
        match self
            .record_end(d, state, &description, outcome.exit_code)
            .await
        {
            Ok(true) => {
                let took = d
                    .started_at
                    .and_then(|started| (chrono::Utc::now() - started).to_std().ok())
                    .unwrap_or_default();
                let ended = match outcome.state {
                    StatusState::Success => DeployOutcome::Success,
                    StatusState::Failure => DeployOutcome::Failure,
                    _ => DeployOutcome::Error,
                };
                self.count_ended(d, ended, took);
            }
            Ok(false) => {
                tracing::warn!(
                    deployment = %d.deployment_id,
                    "lost the lease on this deploy: another instance ended it, so this one reports nothing"
                );
                return;
            }
            // Shared: nothing is said that the store does not hold (the instance that ends the
            // deploy once its lease expires says how it ended). Alone: said anyway.
            Err(e) if self.store.is_shared() => {
                tracing::error!(deployment = %d.deployment_id, "cannot record the end, so it is not reported: {e}");
                return;
            }
            Err(e) => tracing::error!(deployment = %d.deployment_id, "cannot record the end: {e}"),
        }
        let mut description = description;
        if failed
            && outcome.denial.is_none()
            && d.task == crate::domain::Task::deploy()
            && let Some(note) = self.lock_after_failure(d).await
        {
            description = format!("{description}; {note}");
        }
        let tail = if outcome.state == StatusState::Failure {
            log::last_lines(&self.log_path(d.deployment_id), TAIL_LINES)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let _ = self
            .announce_changes(
                d,
                outcome.state,
                &description,
                log_url,
                tail,
                outcome.denial,
                changes,
            )
            .await;
    }

    /// What `d` shipped, against the last successful deploy of its app to its environment before it;
    /// `None` when the forge cannot say (logged).
    async fn changes(&self, d: &Deployment) -> Option<Changes> {
        let recent = match self.store.recent(&d.app, Some(&d.environment), 100).await {
            Ok(recent) => recent,
            Err(e) => {
                tracing::warn!(deployment = %d.deployment_id, "cannot read earlier deploys: {e}");
                return None;
            }
        };
        let Some(last) = recent.into_iter().find(|p| {
            p.seq < d.seq && p.state == DeploymentState::Success && p.task == Task::deploy()
        }) else {
            return Some(Changes::First);
        };
        if last.sha == d.sha {
            return Some(Changes::Same);
        }
        let compared = self
            .forge
            .compare(&d.repository, &d.clone_url, &last.sha, &d.sha)
            .await
            .inspect_err(|e| {
                tracing::warn!(deployment = %d.deployment_id, "cannot compare with the last deploy: {e}");
            })
            .ok()?;
        if compared.ahead_by > 0 || compared.behind_by == 0 {
            return Some(Changes::Since(compared));
        }
        // Only behind: a rollback. What it took back is what the last deploy had that this lacks.
        self.forge
            .compare(&d.repository, &d.clone_url, &d.sha, &last.sha)
            .await
            .inspect_err(|e| {
                tracing::warn!(deployment = %d.deployment_id, "cannot compare with the last deploy: {e}");
            })
            .ok()
            .map(Changes::TookBack)
    }

    /// The deploy proper: lock tasks end here; the lock check; then the app's [`executor`] carries it
    /// out and says how it ended.
    async fn deploy(
        &self,
        d: &Deployment,
        log: &LogSender,
        first: &FirstAnswer,
        started: Instant,
        cancel: watch::Receiver<Option<String>>,
    ) -> Outcome {
        let Some(app) = self.config.apps.get(&d.app) else {
            return Outcome::error(reply::no_app_for(&d.repository));
        };
        let locks = d.task.is_lock() || d.task.is_unlock();
        let executor = self.executors.of_task(app, d.task.is_noop());
        let checks = async {
            // What zbot recorded when it made this deployment, if the payload names a grant: claimed
            // for this deployment id (the webhook did so already; a grant that is not its own
            // refuses it).
            let grant = self.grant(d).await.map_err(Outcome::denied)?;
            // A lock task acts only once GitHub has answered, as a deploy runs only then.
            if locks {
                first.log_url().await?;
                return Err(self.lock_task(d, d.task.is_lock()).await);
            }
            if let Err(outcome) = self.guards(d, app, grant.as_ref(), log).await {
                self.override_of(d, true);
                return Err(outcome);
            }
            Ok(())
        };
        if let Err(outcome) = checks.await {
            return outcome;
        }
        // The tree moves once the grant and the guards (store reads, well under a millisecond) let the
        // deploy go: a deploy they stop is told at once and leaves the tree as it was. The checkout
        // then runs beside GitHub's first answer.
        let checkout = match &executor {
            Ok(executor) if executor.checks_out() && !locks => Some(self.start_checkout(d, app)),
            _ => None,
        };
        log.note(format!(
            "zbot deploy #{}: {}@{} ({}) to {} for {}",
            d.deployment_id, d.repository, d.git_ref, d.sha, d.environment, d.actor
        ))
        .await;
        if let Some(user) = requested_by(d).filter(|u| u.as_str() != d.actor) {
            log.note(format!("asked for by {user} (per payload, not verified)"))
                .await;
        }
        log.note(format!(
            "zbot instance {} ({} store)",
            self.store.instance(),
            self.store.backend().as_str()
        ))
        .await;
        let executor = match executor {
            Ok(executor) => executor,
            Err(reason) => return Outcome::error(reason),
        };
        let mut outcome = executor
            .execute(executor::Job {
                deployer: self,
                d,
                app,
                log,
                first,
                checkout,
                started,
                cancel,
            })
            .await;
        if let Some(overridden) = self.override_of(d, true) {
            outcome.description = overridden.after(&outcome.description);
        }
        outcome
    }

    /// The guards every deployment meets, whatever path it came by (chat, a webhook, polling,
    /// auto-deploy): the lock (one that ended does not count), freezes and windows (an admin's
    /// `deploy!` goes through, remembered to be said), and approvals (for this very commit). A dry
    /// run (`deploy:noop`) meets the lock only.
    async fn guards(
        &self,
        d: &Deployment,
        app: &AppConfig,
        grant: Option<&Grant>,
        log: &LogSender,
    ) -> Result<(), Outcome> {
        let now = self.clock.now();
        let lock = self.store.lock_of(&d.app, &d.environment).await;
        if let Err(e) = &lock {
            tracing::error!(deployment = %d.deployment_id, "cannot read locks: {e}");
        }
        let lock = lock.map(|lock| lock.filter(|l| l.holds_at(now)));
        policy::may_run(
            lock.as_ref().map(Option::as_ref).map_err(drop),
            &d.actor,
            self.config.bot.time_zone,
        )
        .map_err(Outcome::denied)?;
        // A dry run changes nothing: freezes, windows and approvals do not hold it (locks do).
        if d.task.is_noop() {
            return Ok(());
        }
        if let Some(overridden) = self.closure_check(d, grant, now).await? {
            log.note(reply::overridden_plain(
                &overridden.closures,
                &overridden.admin,
                usize::MAX,
            ))
            .await;
            self.overrides
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(d.deployment_id, overridden);
        }
        if app.approvals.contains_key(&d.environment) {
            let approval = self.approval(d, grant).await;
            policy::approvals::approval_holds(approval.as_ref(), &d.sha)
                .map_err(Outcome::denied)?;
            if let Some(approval) = approval {
                let by = self
                    .store
                    .approvers_of(approval.id, &d.sha)
                    .await
                    .unwrap_or_default();
                log.note(reply::approved_plain(
                    approval.id,
                    &by,
                    self.config.bot.time_zone,
                ))
                .await;
            }
        }
        Ok(())
    }

    /// The override said of deployment `d`, if an admin's `deploy!` took it through a closure;
    /// `forget` once it has ended.
    fn override_of(&self, d: &Deployment, forget: bool) -> Option<Overridden> {
        let mut overrides = self
            .overrides
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if forget {
            overrides.remove(&d.deployment_id)
        } else {
            overrides.get(&d.deployment_id).cloned()
        }
    }

    /// Tells GitHub the deploy is in progress; `Err` (the deploy's end, if nothing runs yet) when GitHub
    /// does not answer, since it could not be told how the deploy ends either, or when this instance
    /// no longer holds the deploy's lease.
    pub async fn tell_started(&self, d: &Deployment, log_url: &str) -> Result<(), Outcome> {
        // Never `in_progress` over the end another instance gave it; a store that does not answer
        // is asked again until the deploy's local deadline.
        match self.holds_lease(d, self.lease_deadline(d)).await {
            Lease::Held { .. } => {}
            Lease::Lost | Lease::Unanswered => return Err(Outcome::error(reply::LEASE_LOST)),
        }
        let deploying = match self.override_of(d, false) {
            Some(overridden) => overridden.after(&reply::deploying(d)),
            None => reply::deploying(d),
        };
        let told = self
            .announce(
                d,
                StatusState::InProgress,
                &deploying,
                Some(log_url),
                Vec::new(),
                None,
            )
            .await;
        match told {
            Err(e) if e.is_unanswered() => Err(Outcome::error(reply::github_unanswered(&e))),
            _ => Ok(()),
        }
    }

    /// Starts moving `d`'s tree (see [`Checkouts::prepare`]); nothing happens until it is polled.
    fn start_checkout<'a>(&'a self, d: &'a Deployment, app: &AppConfig) -> Checkout<'a> {
        let auth = GitAuth {
            token: self.config.github.as_ref().and_then(|g| g.token.clone()),
            deploy_key: app.deploy_key.clone(),
        };
        Box::pin(async move {
            self.checkouts
                .prepare(
                    &d.repository,
                    &d.clone_url,
                    &d.sha,
                    &d.app,
                    &d.environment,
                    &auth,
                )
                .await
        })
    }

    /// The process executor: [`Deployer::prepare`] (checkout, recipe), then [`Deployer::execute`] (the
    /// process), then [`report`] (how it ended, as a status). `in_progress` is posted beside them, once
    /// GitHub's first answer came and the program started (or [`IN_PROGRESS_WITHIN`] passed; not at
    /// all when preparing ended without the program), and has been answered (or given up) when this
    /// returns, so it never follows the final status.
    async fn run_process(&self, job: executor::Job<'_>) -> Outcome {
        let (d, app, log, first, cancel) = (job.d, job.app, job.log, job.first, job.cancel);
        let (checkout, started) = (job.checkout, job.started);
        let (told_tx, told) = tokio::sync::oneshot::channel();
        let (begun_tx, mut begun) = watch::channel(false);
        let in_progress = async {
            let answered = first.log_url().await;
            // With a gist, `in_progress` waits for the program's start, but no longer than
            // IN_PROGRESS_WITHIN after GitHub's answer: the processes before the program get the
            // machine, and a long checkout or fetch does not leave GitHub saying `queued`. A deploy
            // whose preparing ended without the program is not said to be in progress.
            let mut prepared_in_vain = false;
            if !first.in_progress_first {
                prepared_in_vain = matches!(
                    tokio::time::timeout(IN_PROGRESS_WITHIN, begun.wait_for(|begun| *begun)).await,
                    Ok(Err(_))
                );
            }
            let told = match answered {
                // A deploy cancelled before it began is not said to be in progress.
                Ok(_) if prepared_in_vain || cancel.borrow().is_some() => Ok(()),
                Ok(log_url) => {
                    let told = self.tell_started(d, &log_url).await;
                    if let Err(outcome) = &told
                        && !first.in_progress_first
                    {
                        tracing::warn!(deployment = %d.deployment_id,
                            "in_progress was not posted; the deploy goes on: {}", outcome.description);
                    }
                    told
                }
                Err(outcome) => Err(outcome),
            };
            let _ = told_tx.send(told);
        };
        let (_, outcome) = tokio::join!(
            in_progress,
            self.prepare_and_execute(
                d,
                app,
                log,
                Gates {
                    first,
                    told,
                    begun: begun_tx,
                    checkout,
                },
                started,
                cancel.clone()
            )
        );
        outcome
    }

    /// [`Deployer::run_process`] without `in_progress`, which `gates` connect it to.
    async fn prepare_and_execute(
        &self,
        d: &Deployment,
        app: &AppConfig,
        log: &LogSender,
        gates: Gates<'_>,
        started: Instant,
        cancel: watch::Receiver<Option<String>>,
    ) -> Outcome {
        // Preparing (a fetch, installing Fabric, GitHub) is bounded by the deploy's timeout too, and a
        // cancel stops it; dropping it ends the git or pip it was waiting for (kill on drop).
        let limit = timeout_for(app, None, &self.config);
        let prepared = tokio::select! {
            prepared = tokio::time::timeout(limit, self.prepare(d, app, log, gates.first, gates.told, gates.checkout)) => match prepared {
                Ok(Ok(prepared)) => prepared,
                Ok(Err(outcome)) => return outcome,
                Err(_) => return Outcome::error(reply::timed_out(limit)),
            },
            reason = cancelled(cancel.clone()) => return Outcome::error(reason),
        };
        // A cancel that came while preparing: the program never starts.
        if let Some(reason) = cancel.borrow().clone() {
            return Outcome::error(reason);
        }
        let exit = self
            .execute(d, &prepared, log, cancel.clone(), &gates.begun)
            .await;
        if let Exit::TimedOut(limit) = &exit {
            log.note(format!(
                "DEPLOYMENT TIMED OUT AFTER {} SECONDS",
                limit.as_secs()
            ))
            .await;
        }
        let cancelled_because = cancel.borrow().clone();
        report(
            d,
            exit,
            started.elapsed(),
            &prepared.program_name(),
            cancelled_because,
        )
    }

    /// Everything before the program runs: the tree checked out; the recipe chosen and
    /// rendered; Fabric provisioned if needed; then GitHub's first answer ([`FirstAnswer`]; with no
    /// gist, `in_progress`, which `told` says the end of) and the lease, checked last (fencing).
    /// `Err` is how the deployment ends without running anything.
    async fn prepare(
        &self,
        d: &Deployment,
        app: &AppConfig,
        log: &LogSender,
        first: &FirstAnswer,
        told: tokio::sync::oneshot::Receiver<Result<(), Outcome>>,
        checkout: Option<Checkout<'_>>,
    ) -> Result<Prepared, Outcome> {
        let checkout = checkout.unwrap_or_else(|| self.start_checkout(d, app));
        // GitHub's silence ends the deploy as soon as it is known, not after a checkout that may be
        // waiting on the same outage (a fetch from github.com); a checkout that failed meanwhile is
        // told as that silence too, which explains it.
        let silent = async {
            match first.log_url().await {
                Err(outcome) => outcome,
                Ok(_) => std::future::pending().await,
            }
        };
        let checked_out = tokio::select! {
            biased;
            outcome = silent => return Err(outcome),
            checked_out = checkout => checked_out,
        };
        let (tree, note) = match checked_out {
            Ok(done) => done,
            Err(e) => {
                first.log_url().await?;
                return Err(Outcome::error(reply::checkout_failed(&e)));
            }
        };
        log.note(note).await;
        let recipe = self
            .recipes
            .choose(app.provider.as_deref(), &tree)
            .map_err(Outcome::error)?;
        let input = RenderInput {
            environment: &d.environment,
            git_ref: &d.git_ref,
            sha: &d.sha,
            task: &d.task,
            hosts: d.hosts.as_ref(),
            app: &d.app,
            repository: &d.repository,
            deployment_id: d.deployment_id,
        };
        let rendered = if d.task.is_noop() {
            recipe.render_dry_run(&input)
        } else {
            recipe.render(&input)
        };
        let mut invocation = rendered
            .map_err(|reason| Outcome::error(reply::recipe_refused(&recipe.name, &reason)))?;
        if recipe.drives_fabric1()
            && invocation.program == "fab"
            && tools::on_path("fab").is_none()
            && self.config.deploy.provision_fabric
        {
            let fab = tools::fabric(&self.config.bot.data_dir, log)
                .await
                .map_err(Outcome::error)?;
            invocation.program = fab.display().to_string();
        }
        // GitHub's first answer, then the lease: nothing runs that GitHub could not be told the end
        // of, nor what another instance may have taken over meanwhile.
        first.log_url().await?;
        if first.in_progress_first {
            match told.await {
                Ok(told) => told?,
                Err(_) => return Err(Outcome::error(reply::zbot_failed())),
            }
        }
        match self.holds_lease(d, self.lease_deadline(d)).await {
            Lease::Held { .. } => {}
            Lease::Lost | Lease::Unanswered => return Err(Outcome::error(reply::LEASE_LOST)),
        }
        let timeout = timeout_for(app, recipe.timeout, &self.config);
        log.note(format!(
            "recipe {}: {} {} (timeout {}{})",
            recipe.name,
            invocation.program,
            invocation.args.join(" "),
            human_duration(timeout),
            if recipe.keep_children {
                "; processes it starts outside its group are kept"
            } else {
                ""
            }
        ))
        .await;
        Ok(Prepared {
            invocation,
            tree,
            timeout,
            keep_children: recipe.keep_children,
        })
    }

    /// Whether the environment is frozen or outside its window at `now`, for a deployment from any
    /// path. Only a deployment zbot created for an admin's `deploy!` (its grant says so) goes through,
    /// with the override returned to be stated; anything else is refused with the closure.
    async fn closure_check(
        &self,
        d: &Deployment,
        grant: Option<&Grant>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Overridden>, Outcome> {
        let freezes = self.store.freezes().await.map_err(|e| {
            tracing::error!(deployment = %d.deployment_id, "cannot read freezes: {e}");
            Outcome::denied(Denial::FreezesUnreadable)
        })?;
        let closures = policy::guards::closures(
            now,
            &d.app,
            &d.environment,
            &freezes,
            &self.config.windows,
            self.config.bot.time_zone,
        );
        if closures.is_empty() {
            return Ok(None);
        }
        let admin = grant
            .filter(|grant| grant.overrides)
            .map(|grant| grant.actor.clone())
            .unwrap_or_default();
        let closures =
            policy::guards::may_pass(closures, !admin.is_empty(), &admin, &self.config.bot.admins)
                .map_err(Outcome::denied)?;
        Ok((!closures.is_empty()).then_some(Overridden { admin, closures }))
    }

    /// The approval request this deployment carries out (its grant names it), for this app and
    /// environment, bound to this deployment: an approval carries out one deployment only.
    async fn approval(
        &self,
        d: &Deployment,
        grant: Option<&Grant>,
    ) -> Option<crate::store::ApprovalRequest> {
        let id = grant?.approval_request?;
        let request = match self.store.request(id).await {
            Ok(Some(r)) if r.request.app == d.app && r.request.environment.same(&d.environment) => {
                r
            }
            Ok(_) => return None,
            Err(e) => {
                tracing::error!(deployment = %d.deployment_id, "cannot read a deploy request: {e}");
                return None;
            }
        };
        match self.store.set_request_deployment(id, d.deployment_id).await {
            Ok(true) => Some(request),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(deployment = %d.deployment_id, "cannot bind a deploy request: {e}");
                None
            }
        }
    }

    /// What zbot asked for when it created this deployment (the payload's `zbot_grant`), claimed for
    /// this deployment: `Ok(None)` without a token; [`Denial::GrantNotValid`] for a token that is
    /// not this deployment's (used by another, ended, or for another commit, task or environment);
    /// [`Denial::LocksUnreadable`] when the store cannot say (fail closed).
    async fn grant(&self, d: &Deployment) -> Result<Option<Grant>, Denial> {
        let Some(token) = crate::payload::Parts::of(&d.payload)
            .ok()
            .and_then(|parts| parts.grant)
        else {
            return Ok(None);
        };
        let claim = crate::store::GrantClaim {
            deployment_id: d.deployment_id,
            app: &d.app,
            repository: &d.repository,
            environment: &d.environment,
            task: &d.task,
            sha: &d.sha,
        };
        match self
            .store
            .claim_grant(&token, claim, self.clock.now())
            .await
        {
            Ok(Some(grant)) => Ok(Some(grant)),
            Ok(None) => Err(Denial::GrantNotValid),
            Err(e) => {
                tracing::error!(deployment = %d.deployment_id, "cannot read grants: {e}");
                Err(Denial::LocksUnreadable)
            }
        }
    }

    /// Runs the prepared program to its end, recording its process group as soon as it starts (so a
    /// restarted zbot can stop what a crash left behind).
    async fn execute(
        &self,
        d: &Deployment,
        prepared: &Prepared,
        log: &LogSender,
        cancel: watch::Receiver<Option<String>>,
        begun: &watch::Sender<bool>,
    ) -> Exit {
        // `ZBOT_DEPLOYMENT_ID` and `ZBOT_DATA_DIR` come with the marks `process::run` finds the
        // deploy's processes by.
        let marks = escaped::Marks::new(&self.config.bot.data_dir, d.deployment_id);
        let mut zbot_env = vec![
            ("ZBOT_ENVIRONMENT".to_string(), d.environment.to_string()),
            ("ZBOT_REF".to_string(), d.git_ref.to_string()),
            ("ZBOT_SHA".to_string(), d.sha.to_string()),
            ("ZBOT_TASK".to_string(), d.task.to_string()),
            ("ZBOT_ACTOR".to_string(), d.actor.clone()),
        ];
        if let Some(user) = requested_by(d) {
            zbot_env.push(("ZBOT_REQUESTED_BY".to_string(), user.to_string()));
        }
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let record_group = async {
            if let Ok(group) = started_rx.await {
                begun.send_replace(true);
                match self.store.set_process_group(d.deployment_id, group).await {
                    Ok(()) => tracing::info!(
                        deployment = %d.deployment_id,
                        process_group = group,
                        "deploy started"
                    ),
                    Err(e) => tracing::error!(
                        deployment = %d.deployment_id,
                        "cannot record the process group: {e}"
                    ),
                }
            }
        };
        let run = process::run(process::Run {
            invocation: &prepared.invocation,
            dir: &prepared.tree,
            marks: &marks,
            extra_env: &zbot_env,
            timeout: prepared.timeout,
            keep_children: prepared.keep_children,
            cancel,
            log,
            started: started_tx,
            guard: self
                .lease_deadlines
                .watch(d.deployment_id)
                .map(|deadline| process::GuardSpec {
                    deadline,
                    silence: self.store.lease() / 4,
                }),
        });
        let (exit, ()) = tokio::join!(run, record_group);
        exit
    }

    /// `lock_on_failure`: a failed deploy locks its environment for the person who deployed, so nobody
    /// deploys on top of the incident; what to add to the description.
    async fn lock_after_failure(&self, d: &Deployment) -> Option<String> {
        let app = self.config.apps.get(&d.app)?;
        if !app.lock_on_failure {
            return None;
        }
        let reason = format!("deploy #{} failed", d.deployment_id);
        match self
            .store
            .lock(
                &d.app,
                &d.environment,
                &d.actor,
                Some(&reason),
                self.clock.now(),
                None,
                false,
            )
            .await
        {
            Ok(Ok(_)) => Some(reply::locked_after_failure(&d.environment, &d.actor)),
            Ok(Err(_)) => None,
            Err(e) => {
                tracing::error!(deployment = %d.deployment_id, "cannot lock after a failure: {e}");
                None
            }
        }
    }

    /// `deploy:lock` / `deploy:unlock` deployments (Heaven's behaviour): set or clear the lock.
    async fn lock_task(&self, d: &Deployment, lock: bool) -> Outcome {
        let reason = crate::payload::Parts::of(&d.payload)
            .ok()
            .and_then(|p| p.reason);
        let reason = reason.as_deref();
        let result = if lock {
            self.store
                .lock(
                    &d.app,
                    &d.environment,
                    &d.actor,
                    reason,
                    self.clock.now(),
                    None,
                    false,
                )
                .await
                .map(|taken| match taken {
                    Ok(_) => {
                        Outcome::done(StatusState::Success, reply::lock_task_done(d, true), None)
                    }
                    Err(held) => Outcome::denied(Denial::Locked {
                        lock: held,
                        time_zone: self.config.bot.time_zone,
                    }),
                })
        } else {
            match self.store.lock_of(&d.app, &d.environment).await {
                Ok(Some(lock)) => {
                    if let Err(denial) =
                        policy::may_unlock(&lock, &d.actor, &self.config.bot.admins)
                    {
                        return Outcome::denied(denial);
                    }
                    self.store
                        .unlock(&d.app, &d.environment, &lock.holder)
                        .await
                        .map(|_| {
                            Outcome::done(
                                StatusState::Success,
                                reply::lock_task_done(d, false),
                                None,
                            )
                        })
                }
                Ok(None) => Ok(Outcome::done(
                    StatusState::Success,
                    reply::lock_task_done(d, false),
                    None,
                )),
                Err(e) => Err(e),
            }
        };
        result.unwrap_or_else(|e| {
            tracing::error!(deployment = %d.deployment_id, "cannot change a lock: {e}");
            Outcome::error(reply::lock_unchangeable())
        })
    }

    /// The deploy's gist, or `None` when GitHub refuses one (the log is then zbot's own page); an
    /// error only when GitHub does not answer at all.
    async fn create_page(&self, d: &Deployment) -> Result<Option<LogPage>, ForgeError> {
        let description = format!(
            "zbot deploy #{}: {}@{} to {}",
            d.deployment_id, d.repository, d.git_ref, d.environment
        );
        let file = format!("deploy-{}.log", d.deployment_id);
        let content = format!("Deployment {} pending", d.deployment_id);
        match self.forge.create_log(&description, &file, &content).await {
            Ok(page) => Ok(Some(page)),
            Err(e) if e.is_unanswered() => Err(e),
            Err(e) => {
                tracing::warn!(
                    deployment = %d.deployment_id,
                    "no gist for this deploy, using zbot's own log page: {e}"
                );
                Ok(None)
            }
        }
    }

    fn page_refresher(&self, d: &Deployment) -> PageRefresher {
        PageRefresher {
            forge: self.forge.clone(),
            own_log_url: self.own_log_url(d.deployment_id),
        }
    }

    /// Refreshes the gist every [`LOG_REFRESH`] while the log grows, until `stop` changes.
    fn keep_page_fresh(
        &self,
        d: &Deployment,
        page: LogPage,
        log_path: &std::path::Path,
        log_url: &str,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let refresher = self.page_refresher(d);
        let (d, log_path, log_url) = (d.clone(), log_path.to_path_buf(), log_url.to_string());
        tokio::spawn(async move {
            let mut last_size = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(LOG_REFRESH) => {}
                    _ = stop.changed() => return,
                }
                let size = tokio::fs::metadata(&log_path)
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                if size != last_size {
                    last_size = size;
                    refresher.refresh(&d, &page, &log_path, &log_url).await;
                }
            }
        })
    }
}

/// Writes the head and tail of a deploy's log into its gist; owned so it can run in its own task.
struct PageRefresher {
    forge: Forge,
    own_log_url: String,
}

impl PageRefresher {
    async fn refresh(
        &self,
        d: &Deployment,
        page: &LogPage,
        log_path: &std::path::Path,
        log_url: &str,
    ) {
        let full_at = if self.own_log_url == log_url {
            log_url
        } else {
            self.own_log_url.as_str()
        };
        if let Ok(text) = log::excerpt(log_path, GIST_LIMIT, full_at).await {
            let file = format!("deploy-{}.log", d.deployment_id);
            if let Err(e) = self.forge.update_log(page, &file, &text).await {
                tracing::warn!(deployment = %d.deployment_id, "cannot update the gist: {e}");
            }
        }
    }
}

/// The app's timeout, else `[deploy] timeout`, else the recipe's, else 30 minutes.
/// The chat user the deployment's payload names (`notify.user`), for audit only: anyone who can write
/// to the repository writes any payload, so it is never who the deployment is for (its actor) and
/// never authorizes anything. A [`crate::domain::User`]: at most 255 characters, no control or shell
/// character.
fn requested_by(d: &Deployment) -> Option<crate::domain::User> {
    crate::payload::Parts::of(&d.payload).ok()?.notify?.user
}

fn timeout_for(app: &AppConfig, recipe: Option<Duration>, config: &Config) -> Duration {
    app.timeout
        .or(config.deploy.timeout)
        .or(recipe)
        .unwrap_or(crate::config::DEFAULT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            seq: 1,
            deployment_id: DeploymentId(42),
            app: "adxstat".parse().unwrap(),
            repository: "octo/adxstat".parse().unwrap(),
            clone_url: "file:///x".into(),
            environment: "production".parse().unwrap(),
            git_ref: "v0.0.1".parse().unwrap(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".parse().unwrap(),
            task: crate::domain::Task::deploy(),
            hosts: None,
            notify: None,
            payload: serde_json::Value::Null,
            actor: "U0BOB".into(),
            state: DeploymentState::Running,
            description: String::new(),
            queue_position: None,
            created_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            process_group: None,
            log_path: None,
            log_url: None,
            instance_id: None,
        }
    }

    #[test]
    fn the_log_ends_with_every_outcome() {
        let took = Duration::from_millis(200);
        let cases = [
            (
                Outcome::done(StatusState::Success, "Deployed".into(), Some(0)),
                "success: exit 0 in 0.2s",
            ),
            (
                Outcome::done(
                    StatusState::Failure,
                    "fab exited with code 3".into(),
                    Some(3),
                ),
                "failure: exit 3 in 0.2s: fab exited with code 3",
            ),
            (
                Outcome::error("Cancelled by U0ALICE"),
                "error after 0.2s: Cancelled by U0ALICE",
            ),
            (
                Outcome::error("Timed out after 30m 00s: the deploy was stopped"),
                "error after 0.2s: Timed out after 30m 00s: the deploy was stopped",
            ),
        ];
        for (outcome, line) in cases {
            assert_eq!(ending(&outcome, took), line);
        }
        assert_eq!(log_duration(Duration::from_secs(75)), "1m 15s");
    }

    #[test]
    fn a_deploy_ends_as_its_program_ended() {
        let d = deployment();
        let took = Duration::from_secs(75);
        let cases = [
            (
                Exit::Code(0),
                None,
                StatusState::Success,
                "Deployed v0.0.1 (f95f852) to production in 1m 15s",
                Some(0),
            ),
            (
                Exit::Code(3),
                None,
                StatusState::Failure,
                "fab exited with code 3 after 1m 15s",
                Some(3),
            ),
            (
                Exit::Signal(9),
                None,
                StatusState::Failure,
                "fab was killed by signal 9 after 1m 15s",
                None,
            ),
            (
                Exit::TimedOut(Duration::from_secs(1800)),
                None,
                StatusState::Error,
                "Timed out after 30m 00s: the deploy was stopped",
                None,
            ),
            (
                Exit::Cancelled,
                Some("Cancelled by U0ALICE".to_string()),
                StatusState::Error,
                "Cancelled by U0ALICE",
                None,
            ),
            (
                Exit::StoppedByGuard,
                None,
                StatusState::Error,
                "stopped by its guard (lease not renewed in time)",
                None,
            ),
            (
                Exit::NotStarted("cannot start fab: not found".into()),
                None,
                StatusState::Error,
                "cannot start fab: not found",
                None,
            ),
        ];
        for (exit, reason, state, description, exit_code) in cases {
            let what = format!("{exit:?}");
            assert_eq!(
                report(&d, exit, took, "fab", reason),
                Outcome::done(state, description.into(), exit_code),
                "{what}"
            );
        }
    }
}
