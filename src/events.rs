//! The deployment event bus: every state change of a deployment is published here, so that the chat
//! side can answer in the right thread without the deployer knowing about chat.

use tokio::sync::broadcast;

use crate::domain::{AppName, DeploymentId, Environment, GitRef, Notify, Repository, Sha, Task};
use crate::forge::StatusState;
use crate::policy::{Denial, Refusal};
use crate::store::Deployment;

/// What the chat side hears of.
#[derive(Debug, Clone)]
pub enum Event {
    /// A deployment changed state.
    Deployment(Box<DeploymentEvent>),
    /// A deployment from GitHub was refused before it was queued.
    Refused(Box<Refusal>),
}

/// One state change of a deployment.
#[derive(Debug, Clone)]
pub struct DeploymentEvent {
    pub deployment_id: DeploymentId,
    pub app: AppName,
    pub repository: Repository,
    pub environment: Environment,
    pub git_ref: GitRef,
    pub sha: Sha,
    pub task: Task,
    /// The hosts the deploy is limited to, if any.
    pub hosts: Option<crate::domain::Hosts>,
    pub actor: String,
    pub state: StatusState,
    pub description: String,
    pub log_url: Option<String>,
    /// Where chat talks about the deployment, if it was asked for from chat.
    pub notify: Option<Notify>,
    /// The last lines of output, for a failure.
    pub tail: Vec<String>,
    /// Why policy stopped it (a lock), typed, so chat says it in its own words: the description is
    /// GitHub's plain text.
    pub denial: Option<Denial>,
    /// What a successful deploy shipped, when it is known.
    pub changes: Option<crate::forge::Changes>,
}

impl DeploymentEvent {
    /// The event for stored deployment `d` entering `state`.
    pub fn of(
        d: &Deployment,
        state: StatusState,
        description: String,
        log_url: Option<String>,
        tail: Vec<String>,
    ) -> Self {
        DeploymentEvent {
            deployment_id: d.deployment_id,
            app: d.app.clone(),
            repository: d.repository.clone(),
            environment: d.environment.clone(),
            git_ref: d.git_ref.clone(),
            sha: d.sha.clone(),
            task: d.task.clone(),
            hosts: d.hosts.clone(),
            actor: d.actor.clone(),
            state,
            description,
            log_url,
            notify: d.notify.clone(),
            tail,
            denial: None,
            changes: None,
        }
    }
}

/// Sends events to every subscriber; publishing never waits (slow subscribers miss old events).
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: DeploymentEvent) {
        self.send(Event::Deployment(Box::new(event)));
    }

    /// Tells chat that a deployment from GitHub was refused.
    pub fn refused(&self, refusal: Refusal) {
        self.send(Event::Refused(Box::new(refusal)));
    }

    fn send(&self, event: Event) {
        // No subscriber is fine: zbot may run as a deployer only.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
