//! The deployment event bus: every state change of a deployment is published here, so that the chat
//! side can answer in the right thread without the deployer knowing about chat.

use tokio::sync::broadcast;

use crate::forge::StatusState;
use crate::store::Deployment;

/// One state change of a deployment.
#[derive(Debug, Clone)]
pub struct DeploymentEvent {
    pub deployment_id: u64,
    pub app: String,
    pub repository: String,
    pub environment: String,
    pub git_ref: String,
    pub sha: String,
    pub actor: String,
    pub state: StatusState,
    pub description: String,
    pub log_url: Option<String>,
    /// The `notify` object of the deployment payload (channel, thread, user), if any.
    pub notify: Option<serde_json::Value>,
    /// The last lines of output, for a failure.
    pub tail: Vec<String>,
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
            actor: d.actor.clone(),
            state,
            description,
            log_url,
            notify: d.payload.get("notify").cloned(),
            tail,
        }
    }
}

/// Sends events to every subscriber; publishing never waits (slow subscribers miss old events).
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<DeploymentEvent>,
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
        // No subscriber is fine: zbot may run as a deployer only.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DeploymentEvent> {
        self.tx.subscribe()
    }
}
