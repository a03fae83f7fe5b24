//! Telling people an environment is free (`notify me when production is free`): once, by direct
//! message, when its lock is removed or ends by itself.

use chrono::{DateTime, Utc};

use super::{ChatOutput, Message};
use crate::reply;
use crate::store::Store;

/// Tells every watcher whose environment has no lock left at `now`, once, and forgets them.
pub async fn tell_watchers<O: ChatOutput>(store: &Store, out: &O, now: DateTime<Utc>) {
    let (watchers, locks) = match (store.lock_watchers().await, store.locks().await) {
        (Ok(watchers), Ok(locks)) => (watchers, locks),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot read locks and their watchers: {e}");
            return;
        }
    };
    for watcher in watchers {
        let held = locks.iter().any(|l| {
            l.environment.same(&watcher.environment)
                && l.holds_at(now)
                && watcher.app.as_ref().is_none_or(|app| app == &l.app)
        });
        if held {
            continue;
        }
        match store.unwatch(&watcher).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("cannot forget a watcher: {e}");
                continue;
            }
        }
        let text = reply::now_free(watcher.app.as_ref(), &watcher.environment);
        if let Err(e) = out.post(&watcher.user, None, &Message::text(text)).await {
            tracing::warn!(user = %watcher.user, "cannot tell a watcher the environment is free: {e}");
        }
    }
}
