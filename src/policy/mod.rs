//! Who may deploy what, where: a command's app and environment resolved against `bot.toml`, and the
//! checks of channel, user and lock. Pure: it reads the configuration and a lock it is given, and
//! answers with a target or a typed [`Denial`]; the reply text lives in `reply`.

pub mod approvals;
pub mod autodeploy;
pub mod guards;

pub use guards::Closure;

use crate::config::{AppConfig, Config};
use crate::domain::{AppName, Environment, Hosts, Repository, Task};
use crate::store::Lock;
use crate::suggest;

/// Why a command or a deployment may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    UnknownApp {
        typed: String,
        suggestion: Option<AppName>,
    },
    UnknownEnvironment {
        app: AppName,
        typed: Environment,
        known: Vec<Environment>,
        suggestion: Option<Environment>,
    },
    /// An environment named for every app (`freeze prodution`) that no app has, even through
    /// `[bot] environment_aliases`; `app`: the word typed is an app's name (`freeze adxstat 2h`).
    NoSuchEnvironment {
        typed: Environment,
        known: Vec<Environment>,
        suggestion: Option<Environment>,
        app: Option<AppName>,
    },
    /// The freezes could not be read, so zbot cannot tell whether the environment is frozen: refused
    /// (fail closed), on every path a deployment comes from.
    FreezesUnreadable,
    /// A deployment from GitHub for a repository no app in `bot.toml` deploys.
    UnknownRepository {
        repository: Repository,
    },
    ChannelNotAllowed {
        app: AppName,
    },
    UserNotAllowed {
        app: AppName,
        environment: Environment,
    },
    /// Held by someone else; its times are said in `time_zone` (`[bot] time_zone`).
    Locked {
        lock: Lock,
        time_zone: chrono_tz::Tz,
    },
    /// Only a lock's holder or an admin removes it.
    NotLockHolder(Lock),
    /// The store could not be read, so zbot cannot tell whether the environment is locked: refused
    /// (fail closed).
    LocksUnreadable,
    /// Frozen, outside its window, or in a closed period; `tried_override`: a `deploy!` by someone who
    /// is not an admin.
    Closed {
        closure: Box<Closure>,
        tried_override: bool,
    },
    /// `approve`/`reject` of a request that is no longer waiting.
    RequestDecided(Box<crate::store::ApprovalRequest>),
    RequestExpired {
        id: i64,
    },
    /// The requester's own approval.
    OwnRequest {
        id: i64,
    },
    /// Not among the environment's approvers.
    NotApprover {
        id: i64,
        approvers: Vec<String>,
    },
    /// A deployment where approval is needed, without one (made outside zbot, or not yet approved).
    NeedsApproval,
    /// A deployment presenting a grant (`zbot_grant`) that is not its own: one another deployment
    /// used, one that ended unclaimed, or one zbot made for another commit, task or environment.
    GrantNotValid,
    /// Approved, but for another commit: a new sha needs a new approval.
    ApprovedAnotherSha {
        approved: crate::domain::Sha,
    },
    /// Something only `[bot] admins` may do (`lock!`).
    NotAdmin {
        what: &'static str,
    },
    /// Only the freeze's holder or an admin removes it.
    NotFreezeHolder(Box<crate::store::Freeze>),
    /// A host limit (`to production/web1`) for an app Heroku builds: Heroku has no hosts to limit a
    /// deploy to, so the whole app would be deployed.
    HerokuHosts {
        app: AppName,
    },
    /// A task other than `deploy` (and the lock tasks) for an app Heroku builds: Heroku's Platform API
    /// only builds and releases, so `deploy:migrate` would run a full deploy instead.
    HerokuTask {
        app: AppName,
        task: Task,
    },
    /// A dry run (`deploy:noop`) where there is none: an app Heroku builds (`recipe` is `None`), or
    /// an app whose named recipe declares no `noop_task`. Run anyway, it would deploy for real.
    NoDryRun {
        app: AppName,
        recipe: Option<String>,
    },
}

/// A deployment from GitHub that will not run, and why: a value that does not validate, or a policy
/// denial (unknown repository, an environment the app does not have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub deployment_id: crate::domain::DeploymentId,
    /// The repository, when its name validated (so GitHub can be told).
    pub repository: Option<Repository>,
    /// The repository's name as sent, for logs and messages.
    pub repository_text: String,
    pub why: Why,
}

/// Why a deployment from GitHub was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    Invalid(crate::domain::Invalid),
    Denied(Denial),
    /// Neither `bot.toml` nor the event gives a URL to fetch the repository from.
    NoCloneUrl,
    /// Found by polling, created `age` ago: longer than `[github] poll_max_age` (`max_age`), so
    /// what it asked for may well have been deployed otherwise since.
    TooOld {
        age: std::time::Duration,
        max_age: std::time::Duration,
    },
}

/// An app and one of its environments, after aliases, with their names as configured.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub app_name: AppName,
    pub app: &'a AppConfig,
    pub environment: Environment,
}

/// The app by name (any case).
pub fn app<'a>(config: &'a Config, typed: &AppName) -> Result<(AppName, &'a AppConfig), Denial> {
    config
        .app(typed.as_str())
        .map(|(name, app)| (name.clone(), app))
        .ok_or_else(|| Denial::UnknownApp {
            typed: typed.to_string(),
            suggestion: suggest::closest(typed.as_str(), config.apps.keys().map(AppName::as_str))
                .and_then(|s| s.parse().ok()),
        })
}

/// An environment named for every app (`freeze production`, `unfreeze prod`, `notify me when prod is
/// free`), as the deploy command resolves one: `[bot] environment_aliases` followed, any case, the name
/// as the apps spell it. One no app has is refused with the closest known name ("did you mean"), and
/// with a note when the word is an app's name (`freeze adxstat 2h` lacks `in <env>`).
pub fn environment_anywhere(config: &Config, typed: &Environment) -> Result<Environment, Denial> {
    let aliases = &config.bot.environment_aliases;
    if let Some(known) = config
        .apps
        .values()
        .find_map(|app| app.environment(typed, aliases))
    {
        return Ok(known.clone());
    }
    let mut known: Vec<Environment> = Vec::new();
    for env in config.apps.values().flat_map(|app| &app.environments) {
        if !known.iter().any(|k| k.same(env)) {
            known.push(env.clone());
        }
    }
    Err(Denial::NoSuchEnvironment {
        suggestion: suggest::closest(typed.as_str(), known.iter().map(Environment::as_str))
            .and_then(|s| s.parse().ok()),
        app: config.app(typed.as_str()).map(|(name, _)| name.clone()),
        typed: typed.clone(),
        known,
    })
}

/// The scope of a freeze or a watch: one app's environment (`adxstat in production`), or an
/// environment of every app (`production`), each resolved as a deploy resolves it.
pub fn scope(
    config: &Config,
    app: Option<&AppName>,
    environment: &Environment,
) -> Result<(Option<AppName>, Environment), Denial> {
    match app {
        Some(app) => {
            let target = target(config, app, Some(environment))?;
            Ok((Some(target.app_name), target.environment))
        }
        None => Ok((None, environment_anywhere(config, environment)?)),
    }
}

/// The app and environment a command names; no environment means `[bot] default_environment`.
pub fn target<'a>(
    config: &'a Config,
    app_typed: &AppName,
    environment: Option<&Environment>,
) -> Result<Target<'a>, Denial> {
    let (app_name, app) = app(config, app_typed)?;
    let typed = environment.unwrap_or(&config.bot.default_environment);
    in_app(config, app_name, app, typed)
}

fn in_app<'a>(
    config: &'a Config,
    app_name: AppName,
    app: &'a AppConfig,
    typed: &Environment,
) -> Result<Target<'a>, Denial> {
    named_in(app_name, app, typed, &config.bot.environment_aliases)
}

/// `typed` as one of `app`'s environments, following `aliases` (chat's `[bot] environment_aliases`;
/// none for GitHub).
fn named_in<'a>(
    app_name: AppName,
    app: &'a AppConfig,
    typed: &Environment,
    aliases: &std::collections::BTreeMap<Environment, Environment>,
) -> Result<Target<'a>, Denial> {
    match app.environment(typed, aliases) {
        Some(environment) => Ok(Target {
            app_name,
            app,
            environment: environment.clone(),
        }),
        None => Err(Denial::UnknownEnvironment {
            app: app_name,
            typed: typed.clone(),
            known: app.environments.clone(),
            suggestion: suggest::closest(
                typed.as_str(),
                app.environments.iter().map(Environment::as_str),
            )
            .and_then(|s| s.parse().ok()),
        }),
    }
}

/// The app and environment a deployment from GitHub is for: the app deploying `repository` (the one the
/// payload names, if several do), and one of its environments as GitHub compares them (any case). Chat's
/// environment aliases do not apply: to GitHub, `prod` is another environment than `production`, without
/// its protection rules, so a deployment to `prod` must not run as `production`. A deployment that names
/// neither is refused, never run.
pub fn job_target<'a>(
    config: &'a Config,
    repository: &Repository,
    named: Option<&AppName>,
    environment: &Environment,
) -> Result<Target<'a>, Denial> {
    let mut apps = config
        .apps
        .iter()
        .filter(|(_, app)| app.repository.same(repository));
    let chosen = match named {
        // The payload names its app (hubot-deploy's `name`): that one, or none.
        Some(named) => apps.find(|(name, _)| name.as_str().eq_ignore_ascii_case(named.as_str())),
        None => apps.next(),
    };
    let Some((app_name, app)) = chosen else {
        return Err(match named {
            Some(named) if config.app(named.as_str()).is_none() => Denial::UnknownApp {
                typed: named.to_string(),
                suggestion: None,
            },
            _ => Denial::UnknownRepository {
                repository: repository.clone(),
            },
        });
    };
    named_in(
        app_name.clone(),
        app,
        environment,
        &std::collections::BTreeMap::new(),
    )
}

/// Whether `user` may deploy `target` from `channel` now, given the environment's lock (`Err` when the
/// lock could not be read: refused); a refusal says the lock's times in `time_zone`.
pub fn may_deploy(
    target: &Target<'_>,
    user: &str,
    channel: &str,
    channel_name: Option<&str>,
    lock: Result<Option<&Lock>, ()>,
    time_zone: chrono_tz::Tz,
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
    may_run(lock, user, time_zone)
}

/// Whether `task` limited to `hosts` is something `target`'s provider can carry out: an app Heroku
/// builds (`provider = "heroku"`) takes neither a host limit nor a task other than `deploy` (the lock
/// tasks never reach Heroku). Checked before the GitHub deployment is created from chat, and again for
/// deployments other tools create.
pub fn may_carry_out(
    target: &Target<'_>,
    task: &Task,
    hosts: Option<&Hosts>,
) -> Result<(), Denial> {
    if !target.app.is_heroku() {
        return Ok(());
    }
    if task.is_noop() {
        return Err(Denial::NoDryRun {
            app: target.app_name.clone(),
            recipe: None,
        });
    }
    if hosts.is_some() {
        return Err(Denial::HerokuHosts {
            app: target.app_name.clone(),
        });
    }
    if *task != Task::deploy() && !task.is_lock() && !task.is_unlock() {
        return Err(Denial::HerokuTask {
            app: target.app_name.clone(),
            task: task.clone(),
        });
    }
    Ok(())
}

/// Whether a dry run (`deploy:noop`) of `target` can run as one, known before GitHub is asked for a
/// deployment: not when the app names its recipe (`provider`) and that recipe declares no
/// `noop_task` (an app whose recipe is detected in the checkout is checked by the runner, which
/// refuses the same way). Apps Heroku builds are refused by [`may_carry_out`].
pub fn may_dry_run(target: &Target<'_>, recipes: &crate::recipe::Recipes) -> Result<(), Denial> {
    let Some(name) = target.app.provider.as_deref() else {
        return Ok(());
    };
    match recipes.get(name) {
        Some(recipe) if recipe.noop.is_none() => Err(Denial::NoDryRun {
            app: target.app_name.clone(),
            recipe: Some(recipe.name.clone()),
        }),
        _ => Ok(()),
    }
}

/// Whether `actor` may remove `lock`: its holder, or one of `[bot] admins`. The same rule for chat's
/// `unlock` and Heaven's `deploy:unlock` task.
pub fn may_unlock(lock: &Lock, actor: &str, admins: &[String]) -> Result<(), Denial> {
    if lock.holder == actor || admins.iter().any(|a| a == actor) {
        Ok(())
    } else {
        Err(Denial::NotLockHolder(lock.clone()))
    }
}

/// Whether a deploy by `actor` may run given the environment's lock: only its holder deploys there
/// (a refusal says the lock's times in `time_zone`).
pub fn may_run(
    lock: Result<Option<&Lock>, ()>,
    actor: &str,
    time_zone: chrono_tz::Tz,
) -> Result<(), Denial> {
    match lock {
        Err(()) => Err(Denial::LocksUnreadable),
        Ok(Some(lock)) if lock.holder != actor => Err(Denial::Locked {
            lock: lock.clone(),
            time_zone,
        }),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let source = r#"
[apps.short]
repository = "octo/short"
environments = ["prod", "staging"]

[apps.long]
repository = "octo/long"
environments = ["production", "staging"]
"#;
        Config::from_source(std::path::Path::new("bot.toml"), source).unwrap()
    }

    /// An environment named for every app is found as a deploy finds one (any case, through an alias,
    /// as an app spells it), or refused with the closest name and, for an app's name, a note.
    #[test]
    fn an_environment_of_every_app_resolves_as_a_deploys_does() {
        let source = r#"
[bot]
environment_aliases = { live = "production", stg = "staging" }

[apps.short]
repository = "octo/short"
environments = ["prod", "staging"]

[apps.long]
repository = "octo/long"
environments = ["production", "staging"]
"#;
        let config = Config::from_source(std::path::Path::new("bot.toml"), source).unwrap();
        let env = |s: &str| -> Environment { s.parse().unwrap() };
        let known = vec![env("production"), env("staging"), env("prod")];
        for (typed, expected) in [
            ("production", Ok(env("production"))),
            ("PRODUCTION", Ok(env("production"))),
            ("live", Ok(env("production"))),
            ("stg", Ok(env("staging"))),
            ("prod", Ok(env("prod"))),
            (
                "prodution",
                Err(Denial::NoSuchEnvironment {
                    typed: env("prodution"),
                    known: known.clone(),
                    suggestion: Some(env("production")),
                    app: None,
                }),
            ),
            (
                "long",
                Err(Denial::NoSuchEnvironment {
                    typed: env("long"),
                    known: known.clone(),
                    suggestion: None,
                    app: Some("long".parse().unwrap()),
                }),
            ),
        ] {
            assert_eq!(
                environment_anywhere(&config, &env(typed)),
                expected,
                "{typed}"
            );
        }
        let long: AppName = "LONG".parse().unwrap();
        assert_eq!(
            scope(&config, Some(&long), &env("live")),
            Ok((Some("long".parse().unwrap()), env("production")))
        );
        assert!(matches!(
            scope(&config, Some(&long), &env("prod")),
            Err(Denial::UnknownEnvironment { .. })
        ));
    }

    /// An app Heroku builds takes no host limit and no task but `deploy` and the lock tasks; any other
    /// app takes both.
    /// An app Heroku builds (`web`), one with a named recipe (`fab`) and one whose recipe is
    /// detected in its checkout (`found`).
    fn heroku_and_recipes() -> Config {
        let source = r#"
[apps.web]
repository = "octo/web"
environments = ["production"]
provider = "heroku"
heroku_app = "octo-web"

[apps.fab]
repository = "octo/fab"
environments = ["production"]
provider = "fabric"

[apps.found]
repository = "octo/found"
environments = ["production"]
"#;
        Config::from_source(std::path::Path::new("bot.toml"), source).unwrap()
    }

    #[test]
    fn heroku_apps_take_no_hosts_and_only_the_deploy_task() {
        let config = heroku_and_recipes();
        let production: Environment = "production".parse().unwrap();
        for (app, task, hosts, allowed) in [
            ("web", "deploy", None, true),
            ("web", "deploy:lock", None, true),
            ("web", "deploy:unlock", None, true),
            ("web", "deploy", Some("web1"), false),
            ("web", "deploy:migrate", None, false),
            ("web", "deploy:noop", None, false),
            ("fab", "deploy:migrate", Some("web1"), true),
            ("fab", "deploy:noop", None, true),
        ] {
            let target = target(&config, &app.parse().unwrap(), Some(&production)).unwrap();
            let task: Task = task.parse().unwrap();
            let hosts: Option<Hosts> = hosts.map(|h| h.parse().unwrap());
            let result = may_carry_out(&target, &task, hosts.as_ref());
            assert_eq!(
                result.is_ok(),
                allowed,
                "{app} {task} {hosts:?}: {result:?}"
            );
        }
    }

    /// A dry run is refused before it is created where it could only deploy for real: on Heroku,
    /// and with a named recipe that declares no `noop_task`.
    #[test]
    fn a_dry_run_needs_an_executor_and_recipe_that_have_one() {
        let config = heroku_and_recipes();
        let production: Environment = "production".parse().unwrap();
        let web = target(&config, &"web".parse().unwrap(), Some(&production)).unwrap();
        assert_eq!(
            may_carry_out(&web, &Task::noop(), None),
            Err(Denial::NoDryRun {
                app: "web".parse().unwrap(),
                recipe: None
            })
        );
        let mut recipes = crate::recipe::Recipes::stock();
        let fab = target(&config, &"fab".parse().unwrap(), Some(&production)).unwrap();
        let found = target(&config, &"found".parse().unwrap(), Some(&production)).unwrap();
        assert_eq!(may_dry_run(&fab, &recipes), Ok(()));
        if let Some(fabric) = recipes.by_name.get_mut("fabric") {
            fabric.noop = None;
        }
        assert_eq!(
            may_dry_run(&fab, &recipes),
            Err(Denial::NoDryRun {
                app: "fab".parse().unwrap(),
                recipe: Some("fabric".into())
            })
        );
        // Detected in the checkout: the runner knows which recipe, and refuses the same way.
        assert_eq!(may_dry_run(&found, &recipes), Ok(()));
    }

    /// An alias (`prod` → `production`, a default) never hides an app's own environment of that name;
    /// for an app without one it still leads to its target in chat. From GitHub only the app's own
    /// environments count (any case): `prod` there is not `production`.
    #[test]
    fn an_apps_own_environment_wins_over_an_alias() {
        let config = config();
        for (app, typed, from_chat, from_github) in [
            ("short", "prod", Some("prod"), Some("prod")),
            ("short", "PROD", Some("prod"), Some("prod")),
            ("short", "stg", Some("staging"), None),
            ("long", "prod", Some("production"), None),
            ("long", "Production", Some("production"), Some("production")),
        ] {
            let app: AppName = app.parse().unwrap();
            let typed: Environment = typed.parse().unwrap();
            let chat = target(&config, &app, Some(&typed)).ok();
            assert_eq!(
                chat.map(|t| t.environment.to_string()).as_deref(),
                from_chat,
                "chat: {app} {typed}"
            );
            let repository = config.apps[&app].repository.clone();
            let github = job_target(&config, &repository, None, &typed).ok();
            assert_eq!(
                github.map(|t| t.environment.to_string()).as_deref(),
                from_github,
                "GitHub: {app} {typed}"
            );
        }
        assert!(matches!(
            target(
                &config,
                &"short".parse().unwrap(),
                Some(&"production".parse().unwrap())
            ),
            Err(Denial::UnknownEnvironment { .. })
        ));
    }
}
