//! Fakes of the services zbot talks to, speaking their real wire protocols on 127.0.0.1.

pub mod campfire;
pub mod github;
pub mod heroku;
pub mod sink;
pub mod slack;
pub mod wire;

use std::time::Duration;

use tokio::sync::watch;

/// Tells waiters that a fake's model changed, so tests wait on events with a deadline, never sleep.
#[derive(Clone)]
pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(watch::channel(0).0)
    }
}

impl Changes {
    pub fn touch(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    /// Waits until `done` gives a value, or fails the test after `deadline` with `context()`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut() -> Option<T>,
        context: impl Fn() -> String,
    ) -> T {
        let mut changed = self.0.subscribe();
        let result = tokio::time::timeout(deadline, async {
            loop {
                if let Some(value) = done() {
                    return value;
                }
                changed.changed().await.unwrap();
            }
        })
        .await;
        result.unwrap_or_else(|_| {
            panic!(
                "timed out after {deadline:?} waiting for {what}; {}",
                context()
            )
        })
    }
}
