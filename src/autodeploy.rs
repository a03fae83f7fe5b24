//! Auto-deploy on green CI: `auto_deploy = { branch = "main", environments = ["staging"] }` on an app.
//! A `status`, `check_suite` or `check_run` webhook for its repository makes zbot ask GitHub for the
//! branch's head and that commit's statuses and check runs; when they pass ([`policy::autodeploy`]),
//! the head becomes the environment's waiting commit. It is deployed (a GitHub deployment whose
//! payload says `automatic`) once the environment is free: nothing queued or running there, so
//! several green pushes while one deploy runs collapse into one deploy of the newest; a commit
//! already deployed there is not deployed again. A lock, a freeze or window, or approvals hold it
//! back, said once in the app's channel (not on every push).

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use crate::clock::Clock;
use crate::config::{AppConfig, Config};
use crate::domain::{Adapter, AppName, Environment, GitRef, Notify, Repository, Sha, Task};
use crate::events::{Event, EventBus};
use crate::forge::{Created, DeploymentRequest, Forge};
use crate::metrics::{AutoOutcome, EnvironmentLabel, Metrics};
use crate::payload::Payload;
use crate::policy::{self, autodeploy::Verdict};
use crate::reply;
use crate::store::Store;

/// A sentence for an app's channel: (channel, text).
pub type Said = (String, String);

/// Deploys green branch heads by itself.
#[derive(Debug)]
pub struct AutoDeployer {
    pub config: Arc<Config>,
    pub store: Store,
    pub forge: Forge,
    pub clock: Clock,
    /// Where the sentences for chat go (a chat side posts them); `None`: logged only.
    pub say: Option<mpsc::UnboundedSender<Said>>,
    /// This zbot's metrics: what auto-deploy did, by app, environment and outcome.
    pub metrics: Arc<Metrics>,
    /// One decision at a time, so two events cannot both find the environment free.
    turn: Mutex<()>,
}

/// An environment as a metrics label: named only when configured for `app`.
fn label(app: &AppConfig, environment: &Environment) -> EnvironmentLabel {
    EnvironmentLabel::of(environment, app.environments.contains(environment))
}

impl AutoDeployer {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        forge: Forge,
        clock: Clock,
        say: Option<mpsc::UnboundedSender<Said>>,
        metrics: Arc<Metrics>,
    ) -> AutoDeployer {
        AutoDeployer {
            config,
            store,
            forge,
            clock,
            say,
            metrics,
            turn: Mutex::new(()),
        }
    }

    /// Whether any app deploys by itself.
    pub fn wanted(config: &Config) -> bool {
        config.apps.values().any(|app| app.auto_deploy.is_some())
    }

    /// A CI webhook for `repository` (`branches`: the branches the event names, if it names any).
    /// Returns once every app it concerns was looked at.
    pub async fn on_ci(&self, repository: &Repository, branches: &[String]) {
        for (name, app) in &self.config.apps {
            let Some(auto) = &app.auto_deploy else {
                continue;
            };
            if !app.repository.same(repository) {
                continue;
            }
            if !branches.is_empty() && !branches.iter().any(|b| b == auto.branch.as_str()) {
                continue;
            }
            self.evaluate(name, app).await;
        }
    }

    /// Asks GitHub for the branch's head and its checks; a green head waits for each environment.
    async fn evaluate(&self, name: &AppName, app: &AppConfig) {
        let Some(auto) = &app.auto_deploy else {
            return;
        };
        let head = match self.forge.resolve(name, app, &auto.branch).await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(app = %name, branch = %auto.branch, "auto-deploy cannot read the branch: {e}");
                return;
            }
        };
        let checks = match self.forge.checks(app, &head).await {
            Ok(checks) => checks,
            Err(e) => {
                tracing::warn!(app = %name, sha = %head, "auto-deploy cannot read the checks: {e}");
                return;
            }
        };
        let verdict = policy::autodeploy::verdict(&checks, app.required_contexts.as_deref());
        tracing::info!(app = %name, sha = %head, ?verdict, "auto-deploy looked at the branch head");
        if verdict == Verdict::NoneReported {
            tracing::info!(app = %name, sha = %head, "auto-deploy waits: no CI status or check run reported for the head yet");
        }
        if verdict != Verdict::Green {
            return;
        }
        for environment in &auto.environments {
            let _turn = self.turn.lock().await;
            let now = self.clock.now();
            match self.store.deployed_there(name, environment, &head).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!("auto-deploy cannot read the store: {e}");
                    continue;
                }
            }
            if let Err(e) = self
                .store
                .set_auto_pending(name, environment, &head, now)
                .await
            {
                tracing::error!("auto-deploy cannot record a waiting commit: {e}");
                continue;
            }
            self.try_deploy(name, app, environment).await;
        }
    }

    /// Deploys the waiting commit of `environment` if the environment is free and nothing holds it.
    /// The caller holds the turn.
    async fn try_deploy(&self, name: &AppName, app: &AppConfig, environment: &Environment) {
        let sha = match self.store.auto_pending(name, environment).await {
            Ok(Some(sha)) => sha,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("auto-deploy cannot read the store: {e}");
                return;
            }
        };
        match self.store.busy(name, environment, self.clock.now()).await {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                tracing::error!("auto-deploy cannot read the queue: {e}");
                return;
            }
        }
        if let Ok(true) = self.store.deployed_there(name, environment, &sha).await {
            let _ = self.store.clear_auto_pending(name, environment, &sha).await;
            return;
        }
        if let Some(held) = self.held(name, app, environment).await {
            self.metrics
                .auto_deploy(name, label(app, environment), AutoOutcome::Held);
            let now = self.clock.now();
            if let Ok(true) = self.store.auto_held(name, environment, &held, now).await {
                let text = reply::auto_deploy_held(name, environment, &sha, &held);
                tracing::info!(app = %name, %environment, "auto-deploy held: {held}");
                self.tell(app, text);
            }
            return;
        }
        // Nothing holds it (any more): the next hold is said again.
        if let Err(e) = self
            .store
            .forget_auto_held(Some(name.as_str()), environment.as_str())
            .await
        {
            tracing::error!("auto-deploy cannot read the store: {e}");
            return;
        }
        if !self.still_green_head(name, app, environment, &sha).await {
            return;
        }
        self.deploy(name, app, environment, &sha).await;
    }

    /// Asked again just before deploying (the caller holds the turn): whether `sha` is still the
    /// branch's head and its checks still pass. The waiting commit may be minutes old: the branch may
    /// have moved (its new head is deployed when its own CI passes) or a re-run may have failed. A
    /// commit that is no longer the head, or turned red, stops waiting; one whose checks are pending
    /// again keeps waiting.
    async fn still_green_head(
        &self,
        name: &AppName,
        app: &AppConfig,
        environment: &Environment,
        sha: &Sha,
    ) -> bool {
        let Some(auto) = &app.auto_deploy else {
            return false;
        };
        let head = match self.forge.resolve(name, app, &auto.branch).await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(app = %name, branch = %auto.branch, "auto-deploy cannot read the branch: {e}");
                return false;
            }
        };
        if &head != sha {
            tracing::info!(app = %name, %environment, waiting = %sha, %head, "auto-deploy: the branch moved; the waiting commit is no longer its head");
            let _ = self.store.clear_auto_pending(name, environment, sha).await;
            return false;
        }
        let verdict = match self.forge.checks(app, sha).await {
            Ok(checks) => policy::autodeploy::verdict(&checks, app.required_contexts.as_deref()),
            Err(e) => {
                tracing::warn!(app = %name, %sha, "auto-deploy cannot read the checks: {e}");
                return false;
            }
        };
        match verdict {
            Verdict::Green => true,
            Verdict::Red => {
                tracing::info!(app = %name, %environment, %sha, "auto-deploy: the waiting commit's checks failed since");
                let _ = self.store.clear_auto_pending(name, environment, sha).await;
                false
            }
            Verdict::Pending | Verdict::NoneReported => false,
        }
    }

    /// Why the environment may not be auto-deployed now, in words.
    async fn held(
        &self,
        name: &AppName,
        app: &AppConfig,
        environment: &Environment,
    ) -> Option<String> {
        let now = self.clock.now();
        if app.approvals.contains_key(environment) {
            return Some(reply::auto_needs_approval());
        }
        match self.store.lock_of(name, environment).await {
            Ok(Some(lock)) if lock.holds_at(now) => {
                return Some(reply::locked(&lock, self.config.bot.time_zone));
            }
            Ok(_) => {}
            Err(_) => return Some("zbot cannot read its locks".into()),
        }
        let freezes = match self.store.freezes().await {
            Ok(freezes) => freezes,
            Err(e) => {
                tracing::error!("cannot read freezes: {e}");
                return Some(reply::denial_plain(&policy::Denial::FreezesUnreadable));
            }
        };
        policy::guards::closure(
            now,
            name,
            environment,
            &freezes,
            &self.config.windows,
            self.config.bot.time_zone,
        )
        .map(|closure| reply::closure_text(&closure, false))
    }

    async fn deploy(&self, name: &AppName, app: &AppConfig, environment: &Environment, sha: &Sha) {
        let Ok(git_ref) = sha.as_str().parse::<GitRef>() else {
            return;
        };
        let Some(branch) = app.auto_deploy.as_ref().map(|a| a.branch.clone()) else {
            return;
        };
        let payload = Payload {
            name: name.clone(),
            robot_name: self.config.bot.name.clone(),
            hosts: String::new(),
            notify: Notify {
                adapter: Some(Adapter::slack()),
                room: None,
                thread_ts: None,
                user: None,
                user_name: None,
                team_id: None,
            },
            config: app.public_settings(),
            reason: None,
            grant: None,
            automatic: true,
        };
        let request = DeploymentRequest {
            git_ref,
            task: Task::deploy(),
            environment: environment.clone(),
            description: format!("auto-deploy of {name} {branch} to {environment}: CI passed"),
            production_environment: environment.same(&Environment::production()),
            transient_environment: false,
            // zbot checked the contexts itself; GitHub must not merge either.
            required_contexts: Some(Vec::new()),
            auto_merge: false,
            payload: payload.to_value(),
        };
        let now = self.clock.now();
        match self
            .store
            .record_auto_deploy(name, environment, sha, now)
            .await
        {
            Ok(true) => {}
            // Asked for already (another instance sharing the store got there first).
            Ok(false) => {
                let _ = self.store.clear_auto_pending(name, environment, sha).await;
                return;
            }
            Err(e) => {
                tracing::error!("auto-deploy cannot record a deploy: {e}");
                return;
            }
        }
        let _ = self.store.clear_auto_pending(name, environment, sha).await;
        match self
            .forge
            .create_deployment(name, app, &request, &self.config.bot.name)
            .await
        {
            Ok(Created::Deployment { id, .. }) => {
                self.metrics
                    .auto_deploy(name, label(app, environment), AutoOutcome::Created);
                tracing::info!(app = %name, %environment, %sha, deployment = %id, "auto-deploy created a deployment")
            }
            Ok(Created::Merged { .. }) => {}
            Err(refused) => {
                self.metrics
                    .auto_deploy(name, label(app, environment), AutoOutcome::Refused);
                let text = reply::refused(&refused, name.as_str(), app.repository.as_str());
                tracing::warn!(app = %name, %environment, "auto-deploy was refused: {refused}");
                self.tell(app, text);
            }
        }
    }

    fn tell(&self, app: &AppConfig, text: String) {
        let channel = app.allowed_channels.first().cloned().or_else(|| {
            self.config
                .slack
                .as_ref()
                .and_then(|s| s.default_channel.clone())
        });
        if let (Some(say), Some(channel)) = (&self.say, channel) {
            let _ = say.send((channel, text));
        }
    }

    /// After each deploy ends, its environment's waiting commit (if any) gets its turn.
    pub async fn run(
        self: Arc<Self>,
        events: EventBus,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut bus = events.subscribe();
        loop {
            let event = tokio::select! {
                event = bus.recv() => event,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let ended = match event {
                Ok(Event::Deployment(e)) if e.state.is_final() => e,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let Some(app) = self.config.apps.get(&ended.app) else {
                continue;
            };
            if app.auto_deploy.is_none() {
                continue;
            }
            let _turn = self.turn.lock().await;
            self.try_deploy(&ended.app, app, &ended.environment).await;
        }
    }
}
