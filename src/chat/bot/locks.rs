//! `lock <app> [in <env>] [<reason>]` and `unlock <app> [in <env>]` (the holder or an admin).

use super::Bot;
use crate::chat::{ChatOutput, Inbound};
use crate::domain::{AppName, Environment};
use crate::policy::{self, Denial};
use crate::reply;

impl<O: ChatOutput> Bot<O> {
    pub(super) async fn lock(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        reason: Option<&str>,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let target = policy::target(&self.config, app, environment)?;
        match self
            .store
            .lock(&target.app_name, &target.environment, &inbound.user, reason)
            .await
        {
            Ok(Ok(lock)) => Ok(reply::lock_taken(&lock)),
            Ok(Err(held)) => Err(Denial::Locked(held)),
            Err(e) => {
                tracing::error!("cannot take a lock: {e}");
                Ok(reply::store_unavailable())
            }
        }
    }

    pub(super) async fn unlock(
        &self,
        app: &AppName,
        environment: Option<&Environment>,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let target = policy::target(&self.config, app, environment)?;
        let (name, env) = (&target.app_name, &target.environment);
        match self.store.lock_of(name, env).await {
            Ok(None) => Ok(reply::not_locked(name, env)),
            Ok(Some(lock)) => {
                policy::may_unlock(&lock, &inbound.user, &self.config.bot.admins)?;
                Ok(match self.store.unlock(name, env, &lock.holder).await {
                    Ok(true) => reply::unlocked(name, env),
                    Ok(false) => reply::lock_changed(name, env),
                    Err(e) => {
                        tracing::error!("cannot remove a lock: {e}");
                        reply::store_unavailable()
                    }
                })
            }
            Err(e) => {
                tracing::error!("cannot read locks: {e}");
                Err(Denial::LocksUnreadable)
            }
        }
    }
}
