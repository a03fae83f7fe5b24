//! Who may deploy what, where: a command's app and environment resolved against `bot.toml`, and the
//! checks of channel, user and lock. Pure: it reads the configuration and a lock it is given, and
//! answers with a target or a typed [`Denial`]; the reply text lives in `reply`.

use crate::config::{AppConfig, Config};
use crate::store::Lock;
use crate::suggest;

/// Why a command may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    UnknownApp {
        typed: String,
        suggestion: Option<String>,
    },
    UnknownEnvironment {
        app: String,
        typed: String,
        known: Vec<String>,
        suggestion: Option<String>,
    },
    ChannelNotAllowed {
        app: String,
    },
    UserNotAllowed {
        app: String,
        environment: String,
    },
    Locked(Lock),
}

/// An app and one of its environments, after aliases.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub app_name: String,
    pub app: &'a AppConfig,
    pub environment: String,
}

/// The app by name (any case).
pub fn app<'a>(config: &'a Config, typed: &str) -> Result<(String, &'a AppConfig), Denial> {
    config
        .apps
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(typed))
        .map(|(name, app)| (name.clone(), app))
        .ok_or_else(|| Denial::UnknownApp {
            typed: typed.to_string(),
            suggestion: suggest::closest(typed, config.apps.keys().map(String::as_str))
                .map(str::to_string),
        })
}

/// The app and environment a command names; no environment means `[bot] default_environment`.
pub fn target<'a>(
    config: &'a Config,
    app_typed: &str,
    environment: Option<&str>,
) -> Result<Target<'a>, Denial> {
    let (app_name, app) = app(config, app_typed)?;
    let typed = environment.unwrap_or(&config.bot.default_environment);
    let resolved = config.resolve_environment(typed);
    if !app.environments.iter().any(|e| e == resolved) {
        return Err(Denial::UnknownEnvironment {
            app: app_name,
            typed: typed.to_string(),
            known: app.environments.clone(),
            suggestion: suggest::closest(typed, app.environments.iter().map(String::as_str))
                .map(str::to_string),
        });
    }
    Ok(Target {
        app_name,
        app,
        environment: resolved.to_string(),
    })
}

/// Whether `user` may deploy `target` from `channel` now, given the environment's lock.
pub fn may_deploy(
    target: &Target<'_>,
    user: &str,
    channel: &str,
    channel_name: Option<&str>,
    lock: Option<&Lock>,
) -> Result<(), Denial> {
    let app = target.app;
    let channel_ok = app.allowed_channels.is_empty()
        || app
            .allowed_channels
            .iter()
            .any(|c| c == channel || Some(c.trim_start_matches('#')) == channel_name);
    if !channel_ok {
        return Err(Denial::ChannelNotAllowed {
            app: target.app_name.clone(),
        });
    }
    if let Some(users) = app.allowed_users.get(&target.environment)
        && !users.iter().any(|u| u == user)
    {
        return Err(Denial::UserNotAllowed {
            app: target.app_name.clone(),
            environment: target.environment.clone(),
        });
    }
    match lock {
        Some(lock) if lock.holder != user => Err(Denial::Locked(lock.clone())),
        _ => Ok(()),
    }
}
