//! Deploy executors: what carries out a deployment once the runner has checked it may run. The runner
//! hands every deployment to an [`Executor`] and takes back its [`Outcome`](super::Outcome), without
//! knowing which one it drove: [`ProcessExecutor`] checks the commit out and runs the recipe's program,
//! [`super::heroku::HerokuExecutor`] builds it on Heroku through the Platform API.
//!
//! [`Executors::of`] is the one place that picks an executor for an app (`provider = "heroku"`, else
//! the process runner).

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use tokio::sync::watch;

use super::log::LogSender;
use super::{Deployer, Outcome, heroku::HerokuExecutor};
use crate::config::{AppConfig, Config};
use crate::store::Deployment;

/// What an executor returns: its outcome, once the deployment has ended.
pub type Running<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One deployment to carry out, with everything the runner set up for it.
pub struct Job<'a> {
    pub deployer: &'a Deployer,
    pub d: &'a Deployment,
    pub app: &'a AppConfig,
    /// The deploy's log (file and gist).
    pub log: &'a LogSender,
    /// GitHub's first answer of the deploy: where people follow it (the gist, or zbot's own page), or
    /// that GitHub did not answer. Nothing runs before it.
    pub first: &'a super::FirstAnswer,
    /// When the runner took the deployment.
    pub started: Instant,
    /// The checkout the runner started once the guards let the deploy go, for an executor that
    /// [`Executor::checks_out`].
    pub checkout: Option<super::Checkout<'a>>,
    /// Holds the reason once the deployment is cancelled.
    pub cancel: watch::Receiver<Option<String>>,
}

/// Carries out one deployment to its end. The executor tells GitHub the deploy started (through
/// [`Deployer::tell_started`], once [`Job::first`] has answered; answered itself before it returns),
/// runs nothing before [`Job::first`] has answered, honours the deploy's timeout and its cancel, and
/// writes what happens into the log; the runner publishes the outcome.
pub trait Executor: Send + Sync + std::fmt::Debug {
    fn execute<'a>(&'a self, job: Job<'a>) -> Running<'a>;

    /// Whether it works in a checkout of the commit, which the runner then starts at once.
    fn checks_out(&self) -> bool {
        false
    }
}

/// The process runner: checkout, recipe, program ([`Deployer::prepare`], [`Deployer::execute`]).
#[derive(Debug, Default)]
pub struct ProcessExecutor;

impl Executor for ProcessExecutor {
    fn execute<'a>(&'a self, job: Job<'a>) -> Running<'a> {
        Box::pin(job.deployer.run_process(job))
    }

    fn checks_out(&self) -> bool {
        true
    }
}

/// The executors zbot has: the process runner always, Heroku's with `[heroku]`.
#[derive(Debug)]
pub struct Executors {
    process: ProcessExecutor,
    heroku: Option<HerokuExecutor>,
}

impl Executors {
    /// The executors `config` provides for. An error names what cannot be reached (the system's CA
    /// certificates for Heroku's API).
    pub fn new(config: &Config) -> Result<Executors, String> {
        let heroku = match &config.heroku {
            Some(heroku) => Some(HerokuExecutor::new(heroku).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Executors {
            process: ProcessExecutor,
            heroku,
        })
    }

    /// The executor that deploys `app`; an error (for the deploy's `error` status) when its provider
    /// needs one zbot was not configured for.
    /// A dry run (`deploy:noop`) is refused where the executor has none: Heroku's Platform API has none, and
    /// a build there would deploy for real.
    pub fn of_task(&self, app: &AppConfig, dry_run: bool) -> Result<&dyn Executor, String> {
        if app.is_heroku() && dry_run {
            return Err(crate::reply::HEROKU_NO_DRY_RUN.into());
        }
        if app.is_heroku() {
            return match &self.heroku {
                Some(heroku) => Ok(heroku),
                None => Err(
                    "This app deploys to Heroku, but bot.toml has no [heroku] section: add one with api_key"
                        .into(),
                ),
            };
        }
        Ok(&self.process)
    }
}
