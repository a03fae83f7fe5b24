//! Chat commands: what a person asked zbot to do, as a typed value.
//!
//! [`grammar`] turns a chat message into a [`Command`] (or a [`ParseError`] with a hint); this module
//! owns the types and their two printed forms: [`std::fmt::Display`] writes the command back as chat text
//! (parsing that text again gives the same command) and [`Command::to_json`] is the `zbot parse` contract.
//! Nothing here does I/O or reads configuration: a value that was not typed stays `None`.

pub mod grammar;

use std::fmt;

pub use grammar::{Addressing, ParseError, parse_message};

use crate::domain::{AppName, Environment, GitRef, Hosts, Task};

/// The task a plain `deploy` runs.
pub const DEFAULT_TASK: &str = "deploy";

/// `deploy[:task][!] <app>[/<ref>] [to <env>[/<hosts>]] [<otp>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployCommand {
    /// `deploy` or `deploy:<name>…` as typed (lowercase segments).
    pub task: Task,
    /// `!`: skip auto-merge and required commit contexts.
    pub force: bool,
    pub app: AppName,
    pub git_ref: Option<GitRef>,
    pub environment: Option<Environment>,
    /// Host names, as typed after `env/`.
    pub hosts: Option<Hosts>,
    /// A 6-digit code or a 32–64 character yubikey string.
    pub otp: Option<String>,
}

/// Everything a person can ask zbot in chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Deploy(DeployCommand),
    /// `deploys <app>[/<ref>] [in <env>]`: recent deployments.
    Deploys {
        app: AppName,
        git_ref: Option<GitRef>,
        environment: Option<Environment>,
    },
    /// `where can i deploy <app>`.
    Where {
        app: AppName,
    },
    /// `lock[!] <app> [in <env>] [<duration> | until <HH:MM>] [<reason…>]`, also `deploy:lock`.
    Lock {
        /// `lock!`: take the lock from its holder (admins).
        force: bool,
        app: AppName,
        environment: Option<Environment>,
        /// When the lock ends by itself; `None`: when it is unlocked.
        until: Option<Until>,
        reason: Option<String>,
    },
    /// `unlock <app> [in <env>]`, also `deploy:unlock`.
    Unlock {
        app: AppName,
        environment: Option<Environment>,
    },
    /// `locks`.
    Locks,
    /// `cancel <app> [in <env>]` or `cancel #<id>`.
    Cancel(CancelTarget),
    /// `rollback[!] <app> [in <env>]`; `!`: an admin's, through a freeze or outside a window.
    Rollback {
        app: AppName,
        environment: Option<Environment>,
        force: bool,
    },
    /// `freeze [<app> in] <env> [<duration> | until <HH:MM>] [<reason…>]`: no deploys there.
    Freeze {
        /// `None`: every app's environment of that name.
        app: Option<AppName>,
        environment: Environment,
        until: Option<Until>,
        reason: Option<String>,
    },
    /// `unfreeze [<app> in] <env>`.
    Unfreeze {
        app: Option<AppName>,
        environment: Environment,
    },
    /// `approve #<n>`: approve a waiting deploy.
    Approve {
        request: u64,
    },
    /// `reject #<n> [<reason…>]`.
    Reject {
        request: u64,
        reason: Option<String>,
    },
    /// `notify me when [<app> in] <env> is free`: a direct message once its lock is gone.
    NotifyWhenFree {
        app: Option<AppName>,
        environment: Environment,
    },
    /// `help [<command>]`.
    Help {
        topic: Option<String>,
    },
    /// `version` or `deploy:version`.
    Version,
}

/// When a freeze or a lock ends by itself, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After this many minutes (`2h`, `30m`, `1h30m`, `1d`).
    For { minutes: u32 },
    /// At the next such time of day, in `[bot] time_zone` (`until 18:00`).
    At { hour: u32, minute: u32 },
}

impl fmt::Display for Until {
    /// `2h30m`, `1d`, `until 18:00`: what the grammar reads back as the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Until::At { hour, minute } => write!(f, "until {hour:02}:{minute:02}"),
            Until::For { minutes } => {
                let parts = [
                    (minutes / (24 * 60), "d"),
                    (minutes % (24 * 60) / 60, "h"),
                    (minutes % 60, "m"),
                ];
                let mut wrote = false;
                for (value, unit) in parts.into_iter().filter(|(v, _)| *v > 0) {
                    write!(f, "{value}{unit}")?;
                    wrote = true;
                }
                if !wrote {
                    f.write_str("0m")?;
                }
                Ok(())
            }
        }
    }
}

/// What a `cancel` names: a deployment number, or the current deploy of an app in an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    Deployment(crate::domain::DeploymentId),
    App {
        app: AppName,
        environment: Option<Environment>,
    },
}

impl Command {
    /// The verb as `zbot parse` reports it in `"command"`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Deploy(_) => "deploy",
            Command::Deploys { .. } => "deploys",
            Command::Where { .. } => "where",
            Command::Lock { .. } => "lock",
            Command::Freeze { .. } => "freeze",
            Command::Unfreeze { .. } => "unfreeze",
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::NotifyWhenFree { .. } => "notify",
            Command::Unlock { .. } => "unlock",
            Command::Locks => "locks",
            Command::Cancel(_) => "cancel",
            Command::Rollback { .. } => "rollback",
            Command::Help { .. } => "help",
            Command::Version => "version",
        }
    }

    /// The `zbot parse` JSON object. Key names are a contract shared with other tools.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let name = self.name();
        match self {
            Command::Deploy(d) => json!({
                "command": name, "task": d.task, "force": d.force, "app": d.app, "ref": d.git_ref,
                "environment": d.environment, "hosts": d.hosts, "otp": d.otp,
            }),
            Command::Deploys {
                app,
                git_ref,
                environment,
            } => json!({"command": name, "app": app, "ref": git_ref, "environment": environment}),
            Command::Where { app } => json!({"command": name, "app": app}),
            Command::Lock {
                force,
                app,
                environment,
                until,
                reason,
            } => json!({"command": name, "force": force, "app": app, "environment": environment,
                "until": until.map(|u| u.to_string()), "reason": reason}),
            Command::Freeze {
                app,
                environment,
                until,
                reason,
            } => json!({"command": name, "app": app, "environment": environment,
                "until": until.map(|u| u.to_string()), "reason": reason}),
            Command::Unfreeze { app, environment }
            | Command::NotifyWhenFree { app, environment } => {
                json!({"command": name, "app": app, "environment": environment})
            }
            Command::Approve { request } => json!({"command": name, "id": request}),
            Command::Reject { request, reason } => {
                json!({"command": name, "id": request, "reason": reason})
            }
            Command::Unlock { app, environment } => {
                json!({"command": name, "app": app, "environment": environment})
            }
            Command::Rollback {
                app,
                environment,
                force,
            } => json!({"command": name, "force": force, "app": app, "environment": environment}),
            Command::Locks | Command::Version => json!({ "command": name }),
            Command::Cancel(CancelTarget::Deployment(id)) => {
                json!({"command": name, "app": null, "environment": null, "id": id})
            }
            Command::Cancel(CancelTarget::App { app, environment }) => {
                json!({"command": name, "app": app, "environment": environment, "id": null})
            }
            Command::Help { topic } => json!({"command": name, "topic": topic}),
        }
    }
}

/// Writes ` in <env>` when an environment was given.
fn write_env(f: &mut fmt::Formatter<'_>, environment: &Option<Environment>) -> fmt::Result {
    match environment {
        Some(env) => write!(f, " in {env}"),
        None => Ok(()),
    }
}

/// `<env>` or `<app> in <env>`.
fn write_scope(
    f: &mut fmt::Formatter<'_>,
    app: &Option<AppName>,
    environment: &Environment,
) -> fmt::Result {
    match app {
        Some(app) => write!(f, "{app} in {environment}"),
        None => write!(f, "{environment}"),
    }
}

/// ` <until>` and ` <reason>`, each when given.
fn write_until_reason(
    f: &mut fmt::Formatter<'_>,
    until: &Option<Until>,
    reason: &Option<String>,
) -> fmt::Result {
    if let Some(until) = until {
        write!(f, " {until}")?;
    }
    match reason {
        Some(reason) => write!(f, " {reason}"),
        None => Ok(()),
    }
}

fn write_app_ref(
    f: &mut fmt::Formatter<'_>,
    app: &AppName,
    git_ref: &Option<GitRef>,
) -> fmt::Result {
    write!(f, "{app}")?;
    match git_ref {
        Some(r) => write!(f, "/{r}"),
        None => Ok(()),
    }
}

impl fmt::Display for Command {
    /// The canonical chat text for the command; parsing it gives the same command back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Deploy(d) => {
                write!(f, "{}{} ", d.task, if d.force { "!" } else { "" })?;
                write_app_ref(f, &d.app, &d.git_ref)?;
                if let Some(env) = &d.environment {
                    write!(f, " to {env}")?;
                    if let Some(hosts) = &d.hosts {
                        write!(f, "/{hosts}")?;
                    }
                }
                match &d.otp {
                    Some(otp) => write!(f, " {otp}"),
                    None => Ok(()),
                }
            }
            Command::Deploys {
                app,
                git_ref,
                environment,
            } => {
                write!(f, "deploys ")?;
                write_app_ref(f, app, git_ref)?;
                write_env(f, environment)
            }
            Command::Where { app } => write!(f, "where can i deploy {app}"),
            Command::Lock {
                force,
                app,
                environment,
                until,
                reason,
            } => {
                write!(f, "lock{} {app}", if *force { "!" } else { "" })?;
                write_env(f, environment)?;
                write_until_reason(f, until, reason)
            }
            Command::Freeze {
                app,
                environment,
                until,
                reason,
            } => {
                write!(f, "freeze ")?;
                write_scope(f, app, environment)?;
                write_until_reason(f, until, reason)
            }
            Command::Unfreeze { app, environment } => {
                write!(f, "unfreeze ")?;
                write_scope(f, app, environment)
            }
            Command::Approve { request } => write!(f, "approve #{request}"),
            Command::Reject { request, reason } => {
                write!(f, "reject #{request}")?;
                match reason {
                    Some(reason) => write!(f, " {reason}"),
                    None => Ok(()),
                }
            }
            Command::NotifyWhenFree { app, environment } => {
                write!(f, "notify me when ")?;
                write_scope(f, app, environment)?;
                write!(f, " is free")
            }
            Command::Unlock { app, environment } => {
                write!(f, "unlock {app}")?;
                write_env(f, environment)
            }
            Command::Locks => write!(f, "locks"),
            Command::Cancel(CancelTarget::Deployment(id)) => write!(f, "cancel #{id}"),
            Command::Cancel(CancelTarget::App { app, environment }) => {
                write!(f, "cancel {app}")?;
                write_env(f, environment)
            }
            Command::Rollback {
                app,
                environment,
                force,
            } => {
                write!(f, "rollback{} {app}", if *force { "!" } else { "" })?;
                write_env(f, environment)
            }
            Command::Help { topic: None } => write!(f, "help"),
            Command::Help { topic: Some(t) } => write!(f, "help {t}"),
            Command::Version => write!(f, "version"),
        }
    }
}
