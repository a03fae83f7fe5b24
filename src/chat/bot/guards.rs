//! `freeze [<app> in] <env> [<duration> | until <HH:MM>] [<reason>]` and `unfreeze [<app> in] <env>`,
//! and the check every chat deploy passes: is the environment frozen or outside its window, and may
//! this person deploy through it (`deploy!` by an admin).

use super::Bot;
use crate::chat::{ChatOutput, Inbound};
use crate::command::Until;
use crate::domain::{AppName, Environment};
use crate::policy::guards::Refreeze;
use crate::policy::{self, Closure, Denial, Target};
use crate::reply;

impl<O: ChatOutput> Bot<O> {
    pub(super) async fn freeze(
        &self,
        app: Option<&AppName>,
        environment: &Environment,
        until: Option<Until>,
        reason: Option<&str>,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let (app, environment) = policy::scope(&self.config, app, environment)?;
        let now = self.clock.now();
        let zone = self.config.bot.time_zone;
        let end = until.map(|until| policy::guards::end_of(until, now, zone));
        let active = match self.store.freezes().await {
            Ok(freezes) => policy::guards::active_freezes(&freezes, now),
            Err(e) => {
                tracing::error!("cannot read freezes: {e}");
                return Err(Denial::FreezesUnreadable);
            }
        };
        let done =
            match policy::guards::refreeze(&active, app.as_ref(), &environment, &inbound.user, end)
            {
                Refreeze::Extend { freeze, until } => self
                    .store
                    .extend_freeze(freeze.id, until, reason)
                    .await
                    .map(|now_is| {
                        now_is.map_or_else(
                            || reply::freeze_gone(&freeze),
                            |extended| reply::freeze_extended(&extended, &freeze, now, zone),
                        )
                    }),
                Refreeze::Add { overlapping } => self
                    .store
                    .freeze(app.as_ref(), &environment, &inbound.user, reason, now, end)
                    .await
                    .map(|freeze| reply::frozen(&freeze, &overlapping, now, zone)),
            };
        match done {
            Ok(text) => Ok(text),
            Err(e) => {
                tracing::error!("cannot record a freeze: {e}");
                Ok(reply::store_unavailable())
            }
        }
    }

    pub(super) async fn unfreeze(
        &self,
        app: Option<&AppName>,
        environment: &Environment,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let now = self.clock.now();
        let freezes = match self.store.freezes().await {
            Ok(freezes) => policy::guards::active_freezes(&freezes, now),
            Err(e) => {
                tracing::error!("cannot read freezes: {e}");
                return Ok(reply::store_unavailable());
            }
        };
        let admin = self.config.bot.admins.iter().any(|a| a == &inbound.user);
        let (app, environment) = match policy::scope(&self.config, app, environment) {
            Ok(scope) => scope,
            // A freeze stored under a name bot.toml no longer has (an environment removed, a typo
            // from before names were checked) still holds nothing configured, but an admin may
            // lift it by the name it was stored under.
            Err(unknown) => {
                let stored = freezes.iter().any(|f| lifted_by(f, app, environment));
                if !(admin && stored) {
                    return Err(unknown);
                }
                (app.cloned(), environment.clone())
            }
        };
        // `unfreeze production` lifts every freeze of production; `unfreeze adxstat in production`
        // those of adxstat there (an every-app freeze stays: it is lifted by its own scope).
        let (lifted, others): (Vec<_>, Vec<_>) = freezes
            .into_iter()
            .partition(|f| lifted_by(f, app.as_ref(), &environment));
        let still: Vec<_> = others
            .into_iter()
            .filter(|f| f.app.is_none() && f.environment.same(&environment))
            .collect();
        if let Some(other) = lifted.iter().find(|f| f.holder != inbound.user && !admin) {
            return Err(Denial::NotFreezeHolder(Box::new(other.clone())));
        }
        let ids: Vec<i64> = lifted.iter().map(|f| f.id).collect();
        if let Err(e) = self.store.unfreeze(&ids).await {
            tracing::error!("cannot lift a freeze: {e}");
            return Ok(reply::store_unavailable());
        }
        Ok(reply::unfrozen(&lifted, &still, app.as_ref(), &environment))
    }

    /// Whether `target` is closed now (frozen, outside its window), and whether `inbound.user` may go
    /// through it: a non-empty `Ok` is an admin's `deploy!` overriding every closure in it.
    pub(super) async fn closure_check(
        &self,
        target: &Target<'_>,
        force: bool,
        inbound: &Inbound,
    ) -> Result<Vec<Closure>, Denial> {
        let freezes = self.store.freezes().await.map_err(|e| {
            tracing::error!("cannot read freezes: {e}");
            Denial::FreezesUnreadable
        })?;
        let closures = policy::guards::closures(
            self.clock.now(),
            &target.app_name,
            &target.environment,
            &freezes,
            &self.config.windows,
            self.config.bot.time_zone,
        );
        policy::guards::may_pass(closures, force, &inbound.user, &self.config.bot.admins)
    }
}

/// How often the bot looks for locks that ended and requests that expired.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl<O: ChatOutput> Bot<O> {
    /// One look at what time has ended: expired locks go (their watchers are told), expired approval
    /// requests say so in their thread, and grants that can no longer be used are deleted.
    pub async fn sweep(&self) {
        let now = self.clock.now();
        match self.store.expire_locks(now).await {
            Ok(ended) => {
                for lock in &ended {
                    tracing::info!(app = %lock.app, environment = %lock.environment, "a lock ended");
                }
            }
            Err(e) => tracing::error!("cannot end expired locks: {e}"),
        }
        crate::chat::free::tell_watchers(&self.store, &self.out, now).await;
        self.expire_requests(now).await;
        match self.store.prune_grants(now).await {
            Ok(0) => {}
            Ok(gone) => tracing::debug!(gone, "pruned grants that can no longer be used"),
            Err(e) => tracing::error!("cannot prune grants: {e}"),
        }
    }

    /// Sweeps every [`SWEEP_EVERY`] until `stop` turns true.
    pub async fn keep_sweeping(
        self: std::sync::Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            self.sweep().await;
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// Whether `unfreeze [app in] environment` lifts `freeze`: `unfreeze production` every freeze of
/// production, `unfreeze adxstat in production` those of adxstat there (an every-app freeze stays:
/// it is lifted by its own scope).
fn lifted_by(
    freeze: &crate::store::Freeze,
    app: Option<&AppName>,
    environment: &Environment,
) -> bool {
    freeze.environment.same(environment)
        && match (app, &freeze.app) {
            (None, _) => true,
            (Some(app), Some(frozen)) => app.as_str().eq_ignore_ascii_case(frozen.as_str()),
            (Some(_), None) => false,
        }
}
