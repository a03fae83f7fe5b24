//! `lock[!] <app> [in <env>] [<duration> | until <HH:MM>] [<reason>]`, `unlock <app> [in <env>]` (the
//! holder or an admin), `locks`, and `notify me when [<app> in] <env> is free`. `lock!` takes another's
//! lock (admins; the holder is told by direct message); a lock with a duration ends by itself.

use super::Bot;
use crate::chat::{ChatOutput, Inbound, Message};
use crate::command::Until;
use crate::domain::{AppName, Environment};
use crate::policy::{self, Denial};
use crate::reply;

impl<O: ChatOutput> Bot<O> {
    pub(super) async fn lock(
        &self,
        force: bool,
        app: &AppName,
        environment: Option<&Environment>,
        until: Option<Until>,
        reason: Option<&str>,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let target = policy::target(&self.config, app, environment)?;
        let now = self.clock.now();
        let expires = until.map(|u| policy::guards::end_of(u, now, self.config.bot.time_zone));
        let admin = self.config.bot.admins.iter().any(|a| a == &inbound.user);
        if force && !admin {
            return Err(Denial::NotAdmin { what: "lock!" });
        }
        let taken = self
            .store
            .lock(
                &target.app_name,
                &target.environment,
                &inbound.user,
                reason,
                now,
                expires,
                force,
            )
            .await;
        match taken {
            Ok(Ok((lock, taken_from))) => {
                if let Some(previous) = taken_from {
                    let note = reply::lock_taken_from_you(&previous, &inbound.user);
                    if let Err(e) = self
                        .out
                        .post(&previous.holder, None, &Message::text(note))
                        .await
                    {
                        tracing::warn!("cannot tell a lock's holder it was taken: {e}");
                    }
                    return Ok(reply::lock_taken_over(
                        &lock,
                        &previous,
                        now,
                        self.config.bot.time_zone,
                    ));
                }
                Ok(reply::lock_taken(&lock, now, self.config.bot.time_zone))
            }
            Ok(Err(held)) => Err(Denial::Locked {
                lock: held,
                time_zone: self.config.bot.time_zone,
            }),
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
        let now = self.clock.now();
        match self.store.lock_of(name, env).await {
            Ok(Some(lock)) if lock.expires_at.is_none_or(|end| now < end) => {
                policy::may_unlock(&lock, &inbound.user, &self.config.bot.admins)?;
                Ok(match self.store.unlock(name, env, &lock.holder).await {
                    Ok(true) => {
                        crate::chat::free::tell_watchers(&self.store, &self.out, now).await;
                        reply::unlocked(name, env)
                    }
                    Ok(false) => reply::lock_changed(name, env),
                    Err(e) => {
                        tracing::error!("cannot remove a lock: {e}");
                        reply::store_unavailable()
                    }
                })
            }
            Ok(_) => Ok(reply::not_locked(name, env)),
            Err(e) => {
                tracing::error!("cannot read locks: {e}");
                Err(Denial::LocksUnreadable)
            }
        }
    }

    pub(super) async fn locks(&self) -> Result<String, Denial> {
        let now = self.clock.now();
        match self.store.locks().await {
            Ok(locks) => {
                let mut live: Vec<_> = locks
                    .into_iter()
                    .filter(|l| l.expires_at.is_none_or(|end| now < end))
                    .collect();
                // Soonest end first (a lock without an end last), then the oldest.
                live.sort_by(|a, b| {
                    let key = |l: &crate::store::Lock| (l.expires_at.is_none(), l.expires_at);
                    key(a)
                        .cmp(&key(b))
                        .then(a.created_at.cmp(&b.created_at))
                        .then_with(|| a.app.as_str().cmp(b.app.as_str()))
                });
                Ok(reply::locks(&live, now, self.config.bot.time_zone))
            }
            Err(e) => {
                tracing::error!("cannot read locks: {e}");
                Err(Denial::LocksUnreadable)
            }
        }
    }

    pub(super) async fn notify_when_free(
        &self,
        app: Option<&AppName>,
        environment: &Environment,
        inbound: &Inbound,
    ) -> Result<String, Denial> {
        let (app, environment) = policy::scope(&self.config, app, environment)?;
        let now = self.clock.now();
        let locks = self.store.locks().await.map_err(|e| {
            tracing::error!("cannot read locks: {e}");
            Denial::LocksUnreadable
        })?;
        let held = locks.iter().any(|l| {
            l.environment.same(&environment)
                && l.expires_at.is_none_or(|end| now < end)
                && app.as_ref().is_none_or(|a| a == &l.app)
        });
        if !held {
            return Ok(reply::already_free(app.as_ref(), &environment));
        }
        match self
            .store
            .watch_lock(app.as_ref(), &environment, &inbound.user, now)
            .await
        {
            Ok(()) => Ok(reply::will_notify(app.as_ref(), &environment)),
            Err(e) => {
                tracing::error!("cannot record a watcher: {e}");
                Ok(reply::store_unavailable())
            }
        }
    }
}
