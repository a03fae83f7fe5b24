//! `bot.toml` in, a validated [`Config`] out. No network.
//!
//! Loading happens in two passes. serde reads the file into the `Raw*` structs (unknown keys and values
//! of the wrong shape stop it there, with the position toml reports). Then [`validate`] checks what
//! serde cannot — missing environment variables, references between sections, names the grammar would
//! refuse — and collects *every* problem, each as a [`Problem`] with file, line and key.
//!
//! Secrets are never written in the file: `"${SLACK_BOT_TOKEN}"` is read from the environment, and the
//! result is a [`Secret`]. Relative paths are relative to the directory of the config file.

pub mod apps_json;
mod guards;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{
    AppName, Environment, GitRef, HerokuApp, InstanceId, Invalid, Repository, Room,
};
use crate::secret::Secret;
pub use guards::{Approvals, AutoDeploy, ClosedPeriod, Window};
pub use values::{EnvString, HumanDuration};

/// One thing wrong with a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single place (e.g. the file cannot be read).
    pub line: usize,
    /// The key as written in the file, e.g. `[slack] bot_token`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub bot: BotConfig,
    pub slack: Option<SlackConfig>,
    pub github: Option<GithubConfig>,
    pub webhook: Option<WebhookConfig>,
    /// `[heroku]`: the Platform API, for apps with `provider = "heroku"`.
    pub heroku: Option<HerokuConfig>,
    /// `[campfire]`: Campfire as a second chat beside Slack.
    pub campfire: Option<CampfireConfig>,
    /// `[[notify]]`: where deployment events are also sent.
    pub notify: Vec<NotifyConfig>,
    pub deploy: DeployConfig,
    pub store: StoreConfig,
    pub apps: BTreeMap<AppName, AppConfig>,
    /// `[windows.<environment>]`: when deploys to an environment (of any app) may run.
    pub windows: BTreeMap<Environment, Window>,
    /// What is allowed but probably not meant (an environment alias an app's own environment shadows);
    /// `zbot check` prints them, zbot runs anyway.
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct BotConfig {
    pub name: String,
    pub aliases: Vec<String>,
    pub default_environment: Environment,
    /// `prod` → `production`.
    pub environment_aliases: BTreeMap<Environment, Environment>,
    pub data_dir: PathBuf,
    /// Slack user ids that may remove anyone's lock or freeze, take a lock (`lock!`) and deploy through
    /// a freeze or outside a window (`deploy!`).
    pub admins: Vec<String>,
    /// The time zone in which chat times are read and shown (`freeze … until 18:00`); default UTC.
    pub time_zone: chrono_tz::Tz,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub app_token: Secret,
    pub bot_token: Secret,
    pub api_url: String,
    pub slash_commands: Vec<String>,
    pub default_channel: Option<String>,
    /// How often a running deployment's status message shows its elapsed time.
    pub status_refresh: Duration,
    /// `dm_requester`: tell the person who asked for a deploy how it ended, in a direct message
    /// (default true).
    pub dm_requester: bool,
    /// How long one Web API call may take (`timeout`, `connect_timeout`).
    pub timeouts: Timeouts,
}

/// How long zbot waits for an outside service before it gives up on one call.
///
/// Without these a service that accepts the connection and never answers would hold a deploy's end,
/// and shutdown, forever. `zbot check` refuses a zero duration and a `connect_timeout` longer than
/// `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest wait to open a connection (`connect_timeout`, default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect: Duration,
    /// Longest wait for one request as a whole, from connecting to the last byte of the answer
    /// (`timeout`, default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub token: Option<Secret>,
    pub api_url: String,
    pub gist_token: Option<Secret>,
    pub app: Option<GithubApp>,
    /// How long one GitHub request may take (`timeout`, `connect_timeout`).
    pub timeouts: Timeouts,
    /// `poll = "15s"`: list each app's deployments this often (with `If-None-Match`, so an unchanged
    /// list costs no rate limit) and take new ones as if delivered by the webhook. `None`: webhook only.
    pub poll: Option<Duration>,
    /// `poll_max_age = "1h"`: a deployment polling finds that was created longer ago than this is
    /// not run but refused (`error`, "deploy again"): after downtime zbot does not replay every
    /// deployment it missed. Default [`DEFAULT_POLL_MAX_AGE`].
    pub poll_max_age: Duration,
}

/// `[github] poll_max_age` when unset: an hour, longer than a restart takes and shorter than the
/// time in which what was asked for is likely to have been deployed otherwise.
pub const DEFAULT_POLL_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct GithubApp {
    pub app_id: u64,
    pub private_key_path: PathBuf,
    pub installation_id: u64,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub path: String,
    /// The listener as people reach it, for links to zbot's own log pages; by default
    /// `http://` and the address it listens on.
    pub public_url: Option<String>,
    /// `None` only when `insecure_skip_signature = true`, or when deliveries are not received.
    pub secret: Option<Secret>,
    /// `receive = false`: no route for GitHub's deliveries (deployments come by `[github] poll`); the
    /// listener still serves `/healthz` and the log pages.
    pub receive: bool,
    /// `metrics_token`: when set, `GET /metrics` answers only a request with
    /// `Authorization: Bearer <token>` (compared in constant time); 401 otherwise.
    pub metrics_token: Option<Secret>,
}

impl WebhookConfig {
    /// The listener of a configuration without `[webhook]` that polls GitHub: on
    /// `127.0.0.1:8080`, receiving no deliveries.
    pub fn polling_only() -> WebhookConfig {
        WebhookConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            path: DEFAULT_WEBHOOK_PATH.to_string(),
            public_url: None,
            secret: None,
            receive: false,
            metrics_token: None,
        }
    }
}

/// `[heroku]`: how zbot reaches Heroku's Platform API.
#[derive(Debug, Clone)]
pub struct HerokuConfig {
    /// `api_key`: an API token (`heroku authorizations:create`), sent as `Authorization: Bearer`.
    pub api_key: Secret,
    /// `api_url`, by default [`DEFAULT_HEROKU_API_URL`] (tests point it at a fake).
    pub api_url: String,
    /// `poll_interval`: how often a running build is asked for its state (default 5s).
    pub poll_interval: Duration,
    /// How long one API call may take (`timeout`, `connect_timeout`).
    pub timeouts: Timeouts,
}

/// One `[[notify]]` sink: where deployment events go, and which.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub sink: SinkKind,
    /// `apps`: only these apps' deployments; empty means every app.
    pub apps: Vec<AppName>,
    /// `environments`: only deployments to these; empty means every environment.
    pub environments: Vec<Environment>,
    /// `events`: which events; by default all four.
    pub events: Vec<NotifyEvent>,
}

/// A sink's `kind` with what it needs.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// `kind = "slack"`, `channel`: a message in a Slack channel (needs `[slack]`).
    Slack { channel: String },
    /// `kind = "campfire"`, `room`: a message in a Campfire room (needs `[campfire]`).
    Campfire { room: Room },
    /// `kind = "webhook"`, `url`, `secret`: a JSON POST signed with `X-Zbot-Signature-256`, tried up
    /// to `attempts` times (default 5) with backoff from 1 s, then dropped and logged.
    Webhook {
        url: String,
        secret: Secret,
        attempts: u32,
        timeouts: Timeouts,
    },
}

/// The deployment events a sink can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyEvent {
    /// The deploy started running (`in_progress`).
    Started,
    /// It ended `success`.
    Succeeded,
    /// It ended `failure`.
    Failed,
    /// It ended `error` (zbot could not run it).
    Errored,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 4] = [
        NotifyEvent::Started,
        NotifyEvent::Succeeded,
        NotifyEvent::Failed,
        NotifyEvent::Errored,
    ];

    /// As written in `events` and sent in a webhook's `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Started => "started",
            NotifyEvent::Succeeded => "succeeded",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Errored => "errored",
        }
    }
}

/// Where recipes beside the stock ones are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipesDir {
    /// `[deploy] recipes_dir`: it must exist and be readable.
    Named(PathBuf),
    /// Unset: `commands/` beside bot.toml, read when it is a directory.
    Beside(PathBuf),
}

impl RecipesDir {
    /// The directory, named or not.
    pub fn path(&self) -> &Path {
        match self {
            RecipesDir::Named(path) | RecipesDir::Beside(path) => path,
        }
    }

    /// The directory to read: a named one always (so a missing one is reported), the default one when
    /// it is a directory.
    pub fn existing(&self) -> Option<&Path> {
        match self {
            RecipesDir::Named(path) => Some(path),
            RecipesDir::Beside(path) => path.is_dir().then_some(path.as_path()),
        }
    }
}

/// `[campfire]`: Campfire (ONCE Campfire) as a chat: its bot API out, its room webhook in.
#[derive(Debug, Clone)]
pub struct CampfireConfig {
    /// `url`: the Campfire installation, without a trailing slash.
    pub url: String,
    /// `bot_key`: the bot's key (`<id>-<token>` as Campfire shows it); part of every post's path.
    pub bot_key: Secret,
    /// The listener path the room webhook posts to, without its last segment (the token).
    pub webhook_prefix: String,
    /// The last segment of `webhook_path`: the webhook's secret, compared in constant time.
    pub webhook_token: Secret,
    /// `rooms`: the room ids zbot acts in; a message from another room is ignored.
    pub rooms: Vec<Room>,
    /// How long one bot API call may take (`timeout`, `connect_timeout`).
    pub timeouts: Timeouts,
}

/// `[store]`: where zbot keeps its state, and how instances sharing it hand over work.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://user@host/db` (`sslmode` and the other libpq URL parameters as sqlx's
    /// `PgConnectOptions` reads them; the password from `PGPASSWORD` or `${VAR}`): several instances
    /// share it. `None`: SQLite in the data directory, for one instance.
    pub url: Option<Secret>,
    /// The password in `url`, if it holds one: redacted on its own too, as a driver's error may
    /// quote it without the rest of the URL.
    pub password: Option<Secret>,
    /// How long a running deployment stays claimed by its instance without a renewal; another instance
    /// ends it once this has passed (its renewals come every third of it).
    pub lease: Duration,
    /// This process among the instances (`zbot run --instance-id`; not a file key).
    pub instance: InstanceId,
}

/// The lease a running deployment's instance holds unless `[store] lease` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct DeployConfig {
    pub work_dir: PathBuf,
    /// `None`: the recipe's timeout, else [`DEFAULT_TIMEOUT`].
    pub timeout: Option<Duration>,
    pub concurrency: usize,
    pub recipes_dir: RecipesDir,
    /// Install Fabric 1 into the data directory when a recipe needs `fab` and none is on PATH.
    pub provision_fabric: bool,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub repository: Repository,
    pub clone_url: Option<String>,
    pub provider: Option<String>,
    pub environments: Vec<Environment>,
    pub default_ref: GitRef,
    pub allowed_channels: Vec<String>,
    pub allowed_users: BTreeMap<Environment, Vec<String>>,
    pub environment_urls: BTreeMap<Environment, String>,
    /// `None`: GitHub's default (every context must pass).
    pub required_contexts: Option<Vec<String>>,
    /// Whether GitHub merges the default branch into the ref first; `false` when not set (GitHub's and
    /// hubot-deploy's default is `true`: `apps_json` writes it out).
    pub auto_merge: bool,
    pub timeout: Option<Duration>,
    pub deploy_key: Option<PathBuf>,
    /// `heroku_app`: the Heroku app each environment deploys to (`provider = "heroku"`).
    pub heroku_apps: BTreeMap<Environment, HerokuApp>,
    /// Environments whose deploys wait for approval, and by whom.
    pub approvals: BTreeMap<Environment, Approvals>,
    /// Deploy a branch's head when its CI passes.
    pub auto_deploy: Option<AutoDeploy>,
    /// Lock the environment when a deploy there fails or is rolled back (off by default).
    pub lock_on_failure: bool,
}

impl Config {
    /// Reads and validates the file at `path`; every problem found is returned at once.
    pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
        let source = read(path)?;
        Config::from_source(path, &source)
    }

    /// Like [`Config::load`], for running without the outside services (`zbot shell`): `[slack]`,
    /// `[github]` and `[webhook]` are read for their shape but not validated, so their environment
    /// variables need not be set. `[store] url` is dropped too: a shell keeps its state in SQLite in
    /// the data directory and never joins the instances sharing a production store (it would claim
    /// their queued work and run it with the embedded forge).
    pub fn load_local(path: &Path) -> Result<Config, Vec<Problem>> {
        Config::local_from_source(path, &read(path)?)
    }

    /// [`Config::load_local`] for `source` as if read from `path`.
    pub fn local_from_source(path: &Path, source: &str) -> Result<Config, Vec<Problem>> {
        let mut raw: RawConfig =
            toml::from_str(source).map_err(|e| vec![Problem::from_toml(path, source, &e)])?;
        raw.slack = None;
        raw.github = None;
        raw.webhook = None;
        raw.heroku = None;
        raw.campfire = None;
        raw.notify = Vec::new();
        raw.store.url = None;
        validate(path, source, raw)
    }

    /// Validates `source` as if read from `path` (which anchors relative paths and names the file in problems).
    pub fn from_source(path: &Path, source: &str) -> Result<Config, Vec<Problem>> {
        let raw: RawConfig =
            toml::from_str(source).map_err(|e| vec![Problem::from_toml(path, source, &e)])?;
        validate(path, source, raw)
    }

    /// Every secret this configuration holds, for the [`crate::secret::Redactor`].
    pub fn secrets(&self) -> Vec<&Secret> {
        let mut secrets = Vec::new();
        if let Some(slack) = &self.slack {
            secrets.extend([&slack.app_token, &slack.bot_token]);
        }
        if let Some(github) = &self.github {
            secrets.extend(github.token.iter().chain(github.gist_token.iter()));
        }
        if let Some(webhook) = &self.webhook {
            secrets.extend(webhook.secret.iter().chain(webhook.metrics_token.iter()));
        }
        if let Some(heroku) = &self.heroku {
            secrets.push(&heroku.api_key);
        }
        if let Some(campfire) = &self.campfire {
            secrets.extend([&campfire.bot_key, &campfire.webhook_token]);
        }
        for notify in &self.notify {
            if let SinkKind::Webhook { secret, .. } = &notify.sink {
                secrets.push(secret);
            }
        }
        secrets.extend(self.store.url.iter().chain(self.store.password.iter()));
        secrets
    }

    /// The app called `name` in any case, with its name as configured.
    pub fn app(&self, name: &str) -> Option<(&AppName, &AppConfig)> {
        self.apps
            .iter()
            .find(|(configured, _)| configured.as_str().eq_ignore_ascii_case(name))
    }
}

/// The `provider` that deploys through Heroku's Platform API instead of a recipe.
pub const HEROKU_PROVIDER: &str = "heroku";

impl AppConfig {
    /// Whether the app deploys through Heroku's Platform API (`provider = "heroku"`).
    pub fn is_heroku(&self) -> bool {
        self.provider.as_deref() == Some(HEROKU_PROVIDER)
    }

    /// The app's settings as sent in a deployment payload (`config`): nothing secret.
    pub fn public_settings(&self) -> serde_json::Value {
        serde_json::json!({
            "repository": self.repository,
            "provider": self.provider,
            "environments": self.environments,
            "environment_urls": self.environment_urls,
            "required_contexts": self.required_contexts,
            "auto_merge": self.auto_merge,
        })
    }

    /// The app's environment that `typed` names, as configured: the app's own environment of that name
    /// (any case, as GitHub compares them) wins; otherwise `aliases` (`[bot] environment_aliases`) are
    /// followed. `None` if the app has no such environment.
    pub fn environment(
        &self,
        typed: &Environment,
        aliases: &BTreeMap<Environment, Environment>,
    ) -> Option<&Environment> {
        let own = |name: &Environment| self.environments.iter().find(|e| e.same(name));
        own(typed).or_else(|| {
            aliases
                .iter()
                .find(|(alias, _)| alias.same(typed))
                .and_then(|(_, target)| own(target))
        })
    }
}

impl Problem {
    pub(crate) fn from_toml(path: &Path, source: &str, error: &toml::de::Error) -> Problem {
        let offset = error.span().map(|s| s.start).unwrap_or(0);
        // Without the input, toml's Display names the key path ("in `apps.adxstat.timeout`").
        let mut bare = error.clone();
        bare.set_input(None);
        let key_path = bare.to_string().lines().find_map(|l| {
            l.strip_prefix("in `")
                .and_then(|k| k.strip_suffix('`'))
                .map(str::to_string)
        });
        let mut message = error.message().trim().to_string();
        // "unknown field `concurency`, expected one of `work_dir`, …": name the key itself, and the
        // closest known one.
        let unknown_field = message.strip_prefix("unknown field `").map(|rest| {
            let field = rest.split('`').next().unwrap_or_default().to_string();
            let known: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            (
                field.clone(),
                crate::suggest::closest(&field, known.iter().copied()).map(str::to_string),
            )
        });
        let key = match (unknown_field, key_path) {
            (Some((field, close)), table) => {
                if let Some(close) = close {
                    message = format!("{message} (did you mean `{close}`?)");
                }
                table.map_or(field.clone(), |t| format!("{t}.{field}"))
            }
            (None, Some(path)) => path,
            (None, None) => key_at(source, offset),
        };
        Problem {
            file: path.to_path_buf(),
            line: line_of(source, offset),
            key,
            message,
        }
    }

    fn at(path: &Path, source: &str, offset: usize, message: impl Into<String>) -> Problem {
        Problem {
            file: path.to_path_buf(),
            line: line_of(source, offset),
            key: key_at(source, offset),
            message: message.into(),
        }
    }
}

fn read(path: &Path) -> Result<String, Vec<Problem>> {
    std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("cannot read the file: {e} (run `zbot init` to write one)")
            } else {
                format!("cannot read the file: {e}")
            },
        }]
    })
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The key written on the line at `offset`, with its table: `[slack] bot_token`.
fn key_at(source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = source[line_start..].lines().next().unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .unwrap_or_default();
    let table = source[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .unwrap_or_default();
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table.to_string(),
        (false, false) => format!("{table} {key}"),
    }
}

/// The byte offset of `key` inside table `[table]`, or of the table header, for problems found after
/// deserialization. Falls back to the start of the file.
fn locate(source: &str, table: &str, key: Option<&str>) -> usize {
    let header = format!("[{table}]");
    let mut offset = 0;
    let mut in_table = table.is_empty();
    let mut table_offset = 0;
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if in_table && !table.is_empty() {
                break;
            }
            in_table = trimmed == header;
            if in_table {
                table_offset = offset;
            }
        } else if in_table && let Some(key) = key {
            let name = trimmed.split('=').next().unwrap_or_default().trim();
            if name == key {
                return offset;
            }
        }
        offset += line.len();
    }
    table_offset
}

// ---- The file as serde reads it -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    bot: RawBot,
    slack: Option<RawSlack>,
    github: Option<RawGithub>,
    webhook: Option<RawWebhook>,
    heroku: Option<RawHeroku>,
    campfire: Option<RawCampfire>,
    #[serde(default)]
    notify: Vec<RawNotify>,
    #[serde(default)]
    deploy: RawDeploy,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    apps: BTreeMap<String, RawApp>,
    #[serde(default)]
    windows: BTreeMap<String, guards::RawWindow>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBot {
    name: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    default_environment: Option<String>,
    environment_aliases: Option<BTreeMap<String, String>>,
    data_dir: Option<EnvString>,
    #[serde(default)]
    admins: Vec<String>,
    time_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    app_token: EnvString,
    bot_token: EnvString,
    api_url: Option<EnvString>,
    slash_commands: Option<Vec<String>>,
    default_channel: Option<String>,
    status_refresh: Option<HumanDuration>,
    dm_requester: Option<bool>,
    timeout: Option<HumanDuration>,
    connect_timeout: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    kind: String,
    channel: Option<String>,
    room: Option<RawRoom>,
    url: Option<EnvString>,
    secret: Option<EnvString>,
    attempts: Option<u32>,
    #[serde(default)]
    apps: Vec<String>,
    #[serde(default)]
    environments: Vec<String>,
    events: Option<Vec<String>>,
    timeout: Option<HumanDuration>,
    connect_timeout: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    token: Option<EnvString>,
    api_url: Option<EnvString>,
    gist_token: Option<EnvString>,
    app_id: Option<u64>,
    private_key_path: Option<EnvString>,
    installation_id: Option<u64>,
    timeout: Option<HumanDuration>,
    connect_timeout: Option<HumanDuration>,
    poll: Option<HumanDuration>,
    poll_max_age: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: Option<EnvString>,
    path: Option<String>,
    public_url: Option<EnvString>,
    secret: Option<EnvString>,
    #[serde(default)]
    insecure_skip_signature: bool,
    receive: Option<bool>,
    metrics_token: Option<EnvString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeroku {
    api_key: EnvString,
    api_url: Option<EnvString>,
    poll_interval: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
    connect_timeout: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampfire {
    url: EnvString,
    bot_key: EnvString,
    webhook_path: EnvString,
    #[serde(default)]
    rooms: Vec<RawRoom>,
    timeout: Option<HumanDuration>,
    connect_timeout: Option<HumanDuration>,
}

/// A Campfire room id, written as a number or as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoom {
    Number(u64),
    Text(String),
}

/// `heroku_app = "name"` for every environment, or `{ production = "name", … }`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "must be a Heroku app name (heroku_app = \"adxstat\") or one per environment (heroku_app = { production = \"adxstat\" })"
)]
enum RawHerokuApp {
    One(String),
    Each(BTreeMap<String, String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    work_dir: Option<EnvString>,
    timeout: Option<HumanDuration>,
    concurrency: Option<usize>,
    recipes_dir: Option<EnvString>,
    provision_fabric: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<EnvString>,
    lease: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    repository: String,
    clone_url: Option<EnvString>,
    provider: Option<String>,
    environments: Option<Vec<String>>,
    default_ref: Option<String>,
    #[serde(default)]
    allowed_channels: Vec<String>,
    #[serde(default)]
    allowed_users: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    environment_urls: BTreeMap<String, String>,
    required_contexts: Option<Vec<String>>,
    #[serde(default)]
    auto_merge: bool,
    timeout: Option<HumanDuration>,
    deploy_key: Option<EnvString>,
    heroku_app: Option<RawHerokuApp>,
    #[serde(default)]
    approvals: BTreeMap<String, guards::RawApprovals>,
    auto_deploy: Option<guards::RawAutoDeploy>,
    #[serde(default)]
    lock_on_failure: bool,
}

pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
pub const DEFAULT_WEBHOOK_PATH: &str = "/webhooks/github";
pub const DEFAULT_HEROKU_API_URL: &str = "https://api.heroku.com";
/// How often a Heroku build is polled: Heaven polled every 10 s; 5 s shows the end sooner and stays far
/// under Heroku's limit of 4500 calls an hour.
pub const DEFAULT_HEROKU_POLL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a connection to GitHub or Slack may take to open: long enough for a slow TLS handshake
/// across the world, short enough that a host dropping packets is noticed.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request to GitHub or Slack may take: both answer in well under a second normally,
/// and a deploy whose GitHub does not answer should end within a minute or two, not hang.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---- Validation: every problem at once -------------------------------------------------------------

struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    base: PathBuf,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// The expanded string, recording a problem for each missing or empty variable.
    fn env(&mut self, value: &EnvString) -> String {
        let unusable = (value.missing.iter().map(|name| (name, "is not set")))
            .chain(value.empty.iter().map(|name| (name, "is empty")));
        for (name, why) in unusable {
            self.problems.push(Problem::at(
                self.path,
                self.source,
                value.span.start,
                format!("environment variable {name} {why}"),
            ));
        }
        value.value.clone()
    }

    fn path(&mut self, value: &EnvString) -> PathBuf {
        let text = self.env(value);
        self.base.join(text)
    }

    fn problem(&mut self, table: &str, key: Option<&str>, message: impl Into<String>) {
        let problem = self.located(table, key, message);
        self.problems.push(problem);
    }

    /// A [`Problem`] at `key` of `[table]`.
    fn located(&self, table: &str, key: Option<&str>, message: impl Into<String>) -> Problem {
        let offset = locate(self.source, table, key);
        let mut problem = Problem::at(self.path, self.source, offset, message);
        problem.key = match key {
            Some(key) => format!("[{table}] {key}"),
            None => format!("[{table}]"),
        };
        problem
    }

    /// `timeout` and `connect_timeout` of `[table]`, with their defaults; both more than zero, and the
    /// connection no longer than the whole request.
    fn timeouts(
        &mut self,
        table: &str,
        request: Option<HumanDuration>,
        connect: Option<HumanDuration>,
    ) -> Timeouts {
        let (request, connect) = (request.map(|d| d.0), connect.map(|d| d.0));
        for (key, value) in [("timeout", request), ("connect_timeout", connect)] {
            if value.is_some_and(|value| value.is_zero()) {
                self.problem(table, Some(key), "must be longer than 0s");
            }
        }
        let request = request.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let connect = connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT.min(request));
        if connect > request {
            self.problem(
                table,
                Some("connect_timeout"),
                format!(
                    "{} is longer than timeout ({}): the connection is part of the request",
                    HumanDuration(connect),
                    HumanDuration(request)
                ),
            );
        }
        Timeouts { connect, request }
    }

    /// `value` as a domain type, recording a problem if it does not validate.
    fn parse<T: std::str::FromStr<Err = Invalid>>(
        &mut self,
        table: &str,
        key: Option<&str>,
        value: &str,
    ) -> Option<T> {
        match value.parse() {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                self.problem(table, key, e.to_string());
                None
            }
        }
    }
}

fn validate(path: &Path, source: &str, raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // Paths in the file are relative to it; made absolute, they mean the same from any directory.
    let base = std::path::absolute(&base).unwrap_or(base);
    let mut c = Checker {
        path,
        source,
        base,
        problems: Vec::new(),
    };

    let bot = validate_bot(&mut c, raw.bot);
    let slack = raw.slack.map(|s| validate_slack(&mut c, s));
    let github = raw.github.map(|g| validate_github(&mut c, g));
    let webhook = raw.webhook.map(|w| validate_webhook(&mut c, w));
    let heroku = raw.heroku.map(|h| validate_heroku(&mut c, h));
    let campfire = raw.campfire.map(|r| validate_campfire(&mut c, r));
    let notify: Vec<NotifyConfig> = raw
        .notify
        .into_iter()
        .filter_map(|n| validate_notify(&mut c, n, slack.is_some(), campfire.is_some()))
        .collect();
    let polls = github.as_ref().is_some_and(|g| g.poll.is_some());
    if webhook.as_ref().is_some_and(|w| !w.receive) && !polls {
        c.problem(
            "webhook",
            Some("receive"),
            "with receive = false deployments arrive only by polling: set [github] poll",
        );
    }
    let deploy = validate_deploy(&mut c, raw.deploy, &bot.data_dir);
    let store = validate_store(&mut c, raw.store);
    let apps = raw
        .apps
        .into_iter()
        .filter_map(|(name, app)| {
            let app = validate_app(&mut c, &name, app);
            Some((c.parse(&format!("apps.{name}"), None, &name)?, app?))
        })
        .collect();
    heroku_needs(&mut c, &apps, heroku.is_some(), github.as_ref());
    let windows = guards::validate_windows(&mut c, raw.windows, bot.time_zone);
    let notify = notify
        .into_iter()
        .map(|n| notify_filter(&mut c, &bot, &apps, n))
        .collect();

    if c.problems.is_empty() {
        let mut warnings = shadowed_aliases(&c, &bot, &apps);
        warnings.extend(unreachable_log_links(
            &c,
            slack.is_some(),
            webhook.as_ref(),
            polls,
        ));
        Ok(Config {
            path: path.to_path_buf(),
            bot,
            slack,
            github,
            webhook,
            heroku,
            campfire,
            notify,
            deploy,
            store,
            apps,
            windows,
            warnings,
        })
    } else {
        c.problems.sort_by_key(|p| p.line);
        Err(c.problems)
    }
}

/// An app Heroku builds needs `[heroku]` (its API key) and `[github] token`: the build's source is
/// GitHub's archive redirect, which only a token zbot sends itself can read (a GitHub App's token is
/// octocrab's, which follows redirects). Not asked without `[github]` (`zbot shell`, which has no Heroku).
fn heroku_needs(
    c: &mut Checker<'_>,
    apps: &BTreeMap<AppName, AppConfig>,
    has_heroku: bool,
    github: Option<&GithubConfig>,
) {
    let Some(github) = github else { return };
    for name in apps
        .iter()
        .filter_map(|(name, app)| app.is_heroku().then_some(name))
    {
        let table = format!("apps.{name}");
        if !has_heroku {
            c.problem(
                &table,
                Some("provider"),
                "provider = \"heroku\" needs a [heroku] section with api_key",
            );
        }
        if github.token.is_none() {
            c.problem(
                &table,
                Some("provider"),
                "provider = \"heroku\" needs [github] token: Heroku builds from GitHub's source archive, which a GitHub App's token cannot hand on",
            );
        }
    }
}

fn validate_heroku(c: &mut Checker<'_>, raw: RawHeroku) -> HerokuConfig {
    let api_key = Secret::new(c.env(&raw.api_key));
    if raw.api_key.missing.is_empty() && api_key.expose().trim().is_empty() {
        c.problem("heroku", Some("api_key"), "is empty");
    }
    let api_url = validate_secret_url(
        c,
        "heroku",
        "api_url",
        raw.api_url.as_ref(),
        DEFAULT_HEROKU_API_URL,
    );
    let poll_interval = raw.poll_interval.map_or(DEFAULT_HEROKU_POLL, |d| d.0);
    if poll_interval.is_zero() {
        c.problem("heroku", Some("poll_interval"), "must be longer than 0s");
    }
    HerokuConfig {
        api_key,
        api_url,
        poll_interval,
        timeouts: c.timeouts("heroku", raw.timeout, raw.connect_timeout),
    }
}

/// How many times a webhook sink tries one event by default.
pub const DEFAULT_NOTIFY_ATTEMPTS: u32 = 5;

/// One `[[notify]]` table (problems are placed at the first `[[notify]]`).
fn validate_notify(
    c: &mut Checker<'_>,
    raw: RawNotify,
    slack: bool,
    campfire: bool,
) -> Option<NotifyConfig> {
    // `locate` finds `[<table>]`: for `[[notify]]` the table is `[notify]`.
    let table = "[notify]";
    let apps = raw
        .apps
        .iter()
        .filter_map(|a| c.parse::<AppName>(table, Some("apps"), a))
        .collect();
    let environments = raw
        .environments
        .iter()
        .filter_map(|e| c.parse::<Environment>(table, Some("environments"), e))
        .collect();
    let events = match raw.events {
        None => NotifyEvent::ALL.to_vec(),
        Some(names) if names.is_empty() => {
            c.problem(
                table,
                Some("events"),
                "`events = []` would send nothing: leave `events` out for all four, or name some",
            );
            Vec::new()
        }
        Some(names) => names
            .iter()
            .filter_map(|name| {
                let event = NotifyEvent::ALL.into_iter().find(|e| e.as_str() == name);
                if event.is_none() {
                    c.problem(
                        table,
                        Some("events"),
                        format!(
                            "`{name}` is not an event: use started, succeeded, failed, errored"
                        ),
                    );
                }
                event
            })
            .collect(),
    };
    let timeouts = c.timeouts(table, raw.timeout, raw.connect_timeout);
    let sink = match (raw.kind.as_str(), raw.channel, raw.room, raw.url) {
        ("slack", Some(channel), None, None) => {
            if !slack {
                c.problem(table, Some("kind"), "a slack sink needs [slack]");
            }
            SinkKind::Slack { channel }
        }
        ("campfire", None, Some(room), None) => {
            if !campfire {
                c.problem(table, Some("kind"), "a campfire sink needs [campfire]");
            }
            let text = match room {
                RawRoom::Number(n) => n.to_string(),
                RawRoom::Text(text) => text,
            };
            SinkKind::Campfire {
                room: c.parse(table, Some("room"), &text)?,
            }
        }
        ("webhook", None, None, Some(url)) => {
            let url = validate_secret_url(c, table, "url", Some(&url), "");
            let secret = match &raw.secret {
                Some(secret) => Secret::new(c.env(secret)),
                None => {
                    c.problem(
                        table,
                        Some("secret"),
                        "a webhook sink signs its events: set secret = \"${…}\"",
                    );
                    Secret::new("")
                }
            };
            let attempts = raw.attempts.unwrap_or(DEFAULT_NOTIFY_ATTEMPTS);
            if attempts == 0 {
                c.problem(table, Some("attempts"), "must be at least 1");
            }
            SinkKind::Webhook {
                url,
                secret,
                attempts,
                timeouts,
            }
        }
        (kind @ ("slack" | "campfire" | "webhook"), ..) => {
            let needs = match kind {
                "slack" => "channel",
                "campfire" => "room",
                _ => "url and secret",
            };
            c.problem(
                table,
                Some("kind"),
                format!("a {kind} sink takes {needs} (and no other place)"),
            );
            return None;
        }
        (other, ..) => {
            c.problem(
                table,
                Some("kind"),
                format!("`{other}` is not a sink: use slack, campfire or webhook"),
            );
            return None;
        }
    };
    Some(NotifyConfig {
        sink,
        apps,
        environments,
        events,
    })
}

/// A `[[notify]]` filter against the apps: each of `apps` names an app (as configured, any case), and
/// each of `environments` is an environment of one of those apps (of any app when `apps` is empty),
/// after `[bot] environment_aliases` as chat resolves them (`prod` → `production`). A filter that could
/// never match is a problem, not a sink that stays silent.
fn notify_filter(
    c: &mut Checker<'_>,
    bot: &BotConfig,
    apps: &BTreeMap<AppName, AppConfig>,
    mut notify: NotifyConfig,
) -> NotifyConfig {
    let table = "[notify]";
    let mut named = Vec::new();
    for typed in &notify.apps {
        match apps
            .keys()
            .find(|name| name.as_str().eq_ignore_ascii_case(typed.as_str()))
        {
            Some(name) => named.push(name.clone()),
            None => c.problem(
                table,
                Some("apps"),
                format!(
                    "no app `{typed}` in [apps]: use one of {}",
                    listed(apps.keys())
                ),
            ),
        }
    }
    let candidates: Vec<&AppConfig> = if named.is_empty() {
        apps.values().collect()
    } else {
        named.iter().filter_map(|name| apps.get(name)).collect()
    };
    let mut environments: Vec<Environment> = Vec::new();
    for typed in &notify.environments {
        let found: Vec<&Environment> = candidates
            .iter()
            .filter_map(|app| app.environment(typed, &bot.environment_aliases))
            .collect();
        if found.is_empty() {
            let mut known: Vec<&Environment> = candidates
                .iter()
                .flat_map(|app| &app.environments)
                .collect();
            known.sort_by_key(|e| e.as_str());
            known.dedup();
            c.problem(
                table,
                Some("environments"),
                format!(
                    "no app{} has a `{typed}` environment: use one of {}",
                    if named.is_empty() { "" } else { " in `apps`" },
                    listed(known)
                ),
            );
        }
        for environment in found {
            if !environments.iter().any(|e| e.same(environment)) {
                environments.push(environment.clone());
            }
        }
    }
    notify.apps = named;
    notify.environments = environments;
    notify
}

/// Names joined by `, `, each in backticks.
fn listed<T: fmt::Display>(names: impl IntoIterator<Item = T>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The shortest webhook token zbot accepts: as for `[webhook] secret`.
const MIN_TOKEN: usize = 16;

fn validate_campfire(c: &mut Checker<'_>, raw: RawCampfire) -> CampfireConfig {
    let url = validate_secret_url(c, "campfire", "url", Some(&raw.url), "");
    let bot_key = Secret::new(c.env(&raw.bot_key));
    if raw.bot_key.missing.is_empty()
        && !bot_key
            .expose()
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        c.problem(
            "campfire",
            Some("bot_key"),
            "a bot key is letters, digits and `-` (as Campfire shows it)",
        );
    }
    let path = c.env(&raw.webhook_path);
    let (prefix, token) = path.rsplit_once('/').unwrap_or_default();
    if raw.webhook_path.missing.is_empty() {
        if !path.starts_with('/') || prefix.is_empty() {
            c.problem(
                "campfire",
                Some("webhook_path"),
                "write it like \"/campfire/${CAMPFIRE_WEBHOOK_TOKEN}\": a path and a secret last segment",
            );
        } else if token.len() < MIN_TOKEN
            || !token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'))
        {
            c.problem(
                "campfire",
                Some("webhook_path"),
                format!(
                    "its last segment is the webhook's secret: use at least {MIN_TOKEN} letters, digits, `-` or `_`"
                ),
            );
        }
    }
    let rooms = raw
        .rooms
        .into_iter()
        .filter_map(|room| {
            let text = match room {
                RawRoom::Number(n) => n.to_string(),
                RawRoom::Text(text) => text,
            };
            c.parse::<Room>("campfire", Some("rooms"), &text)
        })
        .collect::<Vec<_>>();
    if rooms.is_empty() {
        c.problem(
            "campfire",
            Some("rooms"),
            "list the room ids zbot may act in, like rooms = [1]",
        );
    }
    CampfireConfig {
        url,
        bot_key,
        webhook_prefix: prefix.to_string(),
        webhook_token: Secret::new(token.to_string()),
        rooms,
        timeouts: c.timeouts("campfire", raw.timeout, raw.connect_timeout),
    }
}

/// Every environment's Heroku app (`heroku_app`): one name for all, or one per environment.
fn validate_heroku_apps(
    c: &mut Checker<'_>,
    table: &str,
    environments: &[Environment],
    provider: Option<&str>,
    raw: Option<RawHerokuApp>,
) -> BTreeMap<Environment, HerokuApp> {
    let mut apps = BTreeMap::new();
    // A name that does not validate is reported once: its environments are not missing a heroku_app.
    let mut invalid: Vec<&Environment> = Vec::new();
    match raw {
        None => {}
        Some(RawHerokuApp::One(name)) => {
            match c.parse::<HerokuApp>(table, Some("heroku_app"), &name) {
                Some(app) => {
                    for env in environments {
                        apps.insert(env.clone(), app.clone());
                    }
                }
                None => invalid.extend(environments),
            }
        }
        Some(RawHerokuApp::Each(each)) => {
            for (env, name) in each {
                let known = environments.iter().find(|e| e.as_str() == env);
                let app = c.parse::<HerokuApp>(table, Some("heroku_app"), &name);
                match (known, app) {
                    (Some(env), Some(app)) => {
                        apps.insert(env.clone(), app);
                    }
                    (None, _) => c.problem(
                        table,
                        Some("heroku_app"),
                        format!("`{env}` is not one of this app's environments"),
                    ),
                    (Some(env), None) => invalid.push(env),
                }
            }
        }
    }
    let heroku = provider == Some(HEROKU_PROVIDER);
    if heroku {
        let missing: Vec<&str> = environments
            .iter()
            .filter(|e| !apps.contains_key(*e) && !invalid.contains(e))
            .map(Environment::as_str)
            .collect();
        if let Some(first) = missing.first() {
            c.problem(
                table,
                Some("provider"),
                format!(
                    "provider = \"heroku\" needs heroku_app for {}: heroku_app = \"name\" or {{ {first} = \"name\" }}",
                    missing.join(", ")
                ),
            );
        }
    } else if !apps.is_empty() {
        c.problem(
            table,
            Some("heroku_app"),
            "is used only with provider = \"heroku\"",
        );
    }
    apps
}

/// An environment alias (`prod = "production"`, a default) that is also an app's own environment name:
/// for that app the name means its own environment ([`AppConfig::environment`]), which is right but may
/// surprise whoever reads the aliases, so `zbot check` says so.
fn shadowed_aliases(
    c: &Checker<'_>,
    bot: &BotConfig,
    apps: &BTreeMap<AppName, AppConfig>,
) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for (name, app) in apps {
        for (alias, target) in &bot.environment_aliases {
            let own = app.environments.iter().find(|e| e.same(alias));
            if let Some(own) = own.filter(|_| !alias.same(target)) {
                warnings.push(c.located(
                    &format!("apps.{name}"),
                    Some("environments"),
                    format!(
                        "`{own}` is also an alias of `{target}` in [bot] environment_aliases: \
                         for {name}, `{alias}` means its own `{own}` environment, not `{target}`"
                    ),
                ));
            }
        }
    }
    warnings
}

/// Links to zbot's own log pages (said in chat when a gist cannot be written) are built from
/// `[webhook] public_url`, else from the listen address: a loopback or unspecified one (the
/// poll-only default `127.0.0.1:8080`, a container's `0.0.0.0:8080`) makes links nobody in chat can
/// open, so `zbot check` says so when Slack is configured.
fn unreachable_log_links(
    c: &Checker<'_>,
    slack: bool,
    webhook: Option<&WebhookConfig>,
    polls: bool,
) -> Option<Problem> {
    if !slack {
        return None;
    }
    let (listen, table, key) = match webhook {
        Some(webhook) if webhook.public_url.is_some() => return None,
        Some(webhook) => (webhook.listen, "webhook", "listen"),
        None if polls => (WebhookConfig::polling_only().listen, "github", "poll"),
        None => return None,
    };
    let ip = listen.ip();
    if !ip.is_loopback() && !ip.is_unspecified() {
        return None;
    }
    Some(c.located(
        table,
        Some(key),
        format!(
            "links to zbot's own log pages would point at http://{listen}, which nobody in chat can \
             open: set [webhook] public_url to the address people reach zbot at"
        ),
    ))
}

fn validate_bot(c: &mut Checker<'_>, raw: RawBot) -> BotConfig {
    let name = raw.name.unwrap_or_else(|| "zbot".to_string());
    for (key, value) in
        std::iter::once(("name", &name)).chain(raw.aliases.iter().map(|a| ("aliases", a)))
    {
        if value.is_empty()
            || value
                .chars()
                .any(|ch| crate::domain::is_space(ch) || matches!(ch, ':' | ','))
        {
            c.problem(
                "bot",
                Some(key),
                format!("`{value}` cannot be a bot name: use one word"),
            );
        }
    }
    let default_environment = raw
        .default_environment
        .and_then(|e| c.parse("bot", Some("default_environment"), &e))
        .unwrap_or_else(Environment::production);
    let environment_aliases = raw
        .environment_aliases
        .unwrap_or_else(|| {
            BTreeMap::from([
                ("prod".into(), "production".into()),
                ("stg".into(), "staging".into()),
            ])
        })
        .into_iter()
        .filter_map(|(alias, target)| {
            let alias = c.parse("bot", Some("environment_aliases"), &alias);
            let target = c.parse("bot", Some("environment_aliases"), &target);
            Some((alias?, target?))
        })
        .collect();
    let data_dir = match &raw.data_dir {
        Some(dir) => c.path(dir),
        None => c.base.join("data"),
    };
    let time_zone = match &raw.time_zone {
        Some(zone) => guards::time_zone(c, "bot", "time_zone", zone),
        None => chrono_tz::Tz::UTC,
    };
    BotConfig {
        name,
        aliases: raw.aliases,
        default_environment,
        environment_aliases,
        data_dir,
        admins: raw.admins,
        time_zone,
    }
}

fn validate_url(
    c: &mut Checker<'_>,
    table: &str,
    key: &str,
    value: Option<&EnvString>,
    default: &str,
) -> String {
    let url = value.map_or_else(|| default.to_string(), |v| c.env(v));
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        c.problem(table, Some(key), format!("`{url}` is not an http(s) URL"));
    }
    url.trim_end_matches('/').to_string()
}

/// [`validate_url`] for a URL that carries a secret (an API key, a bot key, a signed body): `https://`
/// unless its host is this machine (`127.0.0.1`, `::1`, `localhost`), where nothing crosses a network.
fn validate_secret_url(
    c: &mut Checker<'_>,
    table: &str,
    key: &str,
    value: Option<&EnvString>,
    default: &str,
) -> String {
    let url = validate_url(c, table, key, value, default);
    if let Some(rest) = url.strip_prefix("http://")
        && !is_loopback(rest)
    {
        c.problem(
            table,
            Some(key),
            format!("`{url}` must be https:// (plain http only to 127.0.0.1, ::1 or localhost)"),
        );
    }
    url
}

/// Whether the authority at the start of `rest` (`host[:port]/…`) is this machine.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    matches!(
        host.to_ascii_lowercase().as_str(),
        "127.0.0.1" | "::1" | "localhost"
    )
}

fn validate_slack(c: &mut Checker<'_>, raw: RawSlack) -> SlackConfig {
    let app_token = c.env(&raw.app_token);
    let bot_token = c.env(&raw.bot_token);
    if raw.app_token.missing.is_empty() && !app_token.starts_with("xapp-") {
        c.problem(
            "slack",
            Some("app_token"),
            "the app-level token (Socket Mode) starts with `xapp-`",
        );
    }
    if raw.bot_token.missing.is_empty() && !bot_token.starts_with("xoxb-") {
        c.problem(
            "slack",
            Some("bot_token"),
            "the bot token starts with `xoxb-`",
        );
    }
    let api_url = validate_url(
        c,
        "slack",
        "api_url",
        raw.api_url.as_ref(),
        DEFAULT_SLACK_API_URL,
    );
    let slash_commands = raw.slash_commands.unwrap_or_else(|| vec!["/deploy".into()]);
    for command in &slash_commands {
        let ok = command.strip_prefix('/').is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'))
        });
        if !ok {
            c.problem(
                "slack",
                Some("slash_commands"),
                format!("`{command}` is not a slash command like `/deploy`"),
            );
        }
    }
    SlackConfig {
        app_token: Secret::new(app_token),
        bot_token: Secret::new(bot_token),
        api_url,
        slash_commands,
        default_channel: raw.default_channel,
        status_refresh: raw
            .status_refresh
            .map_or(Duration::from_secs(30), |d| d.0.max(Duration::from_secs(1))),
        dm_requester: raw.dm_requester.unwrap_or(true),
        timeouts: c.timeouts("slack", raw.timeout, raw.connect_timeout),
    }
}

fn validate_github(c: &mut Checker<'_>, raw: RawGithub) -> GithubConfig {
    let token = raw.token.as_ref().map(|t| Secret::new(c.env(t)));
    let gist_token = raw.gist_token.as_ref().map(|t| Secret::new(c.env(t)));
    let api_url = validate_url(
        c,
        "github",
        "api_url",
        raw.api_url.as_ref(),
        DEFAULT_GITHUB_API_URL,
    );
    let app = match (raw.app_id, &raw.private_key_path, raw.installation_id) {
        (Some(app_id), Some(key), Some(installation_id)) => Some(GithubApp {
            app_id,
            private_key_path: c.path(key),
            installation_id,
        }),
        (None, None, None) => None,
        _ => {
            c.problem(
                "github",
                Some("app_id"),
                "a GitHub App needs all of app_id, private_key_path and installation_id",
            );
            None
        }
    };
    if token.is_none() && app.is_none() {
        c.problem(
            "github",
            None,
            "set `token`, or a GitHub App (app_id, private_key_path, installation_id)",
        );
    }
    let poll = raw.poll.map(|poll| {
        if poll.0 < MIN_POLL {
            c.problem(
                "github",
                Some("poll"),
                format!("must be at least {}", HumanDuration(MIN_POLL)),
            );
        }
        poll.0
    });
    let poll_max_age = match raw.poll_max_age {
        Some(age) if age.0.is_zero() => {
            c.problem("github", Some("poll_max_age"), "must be longer than 0s");
            DEFAULT_POLL_MAX_AGE
        }
        Some(age) => age.0,
        None => DEFAULT_POLL_MAX_AGE,
    };
    if let Some(problem) =
        poll.and_then(|poll| max_age_problem(poll, poll_max_age, raw.poll_max_age.is_some()))
    {
        // Where the file says it: at poll_max_age when set, else at poll.
        let key = if raw.poll_max_age.is_some() {
            "poll_max_age"
        } else {
            "poll"
        };
        c.problem("github", Some(key), problem);
    }
    GithubConfig {
        token,
        api_url,
        gist_token,
        app,
        timeouts: c.timeouts("github", raw.timeout, raw.connect_timeout),
        poll,
        poll_max_age,
    }
}

/// `[github] poll_max_age` must be at least twice `poll`: a deployment made just after one poll is
/// one interval old at the next (a restart or a slow listing adds more), and one older than the max
/// age is refused, never run. The problem to state, if any; `set` is whether the file sets the max age.
fn max_age_problem(poll: Duration, max_age: Duration, set: bool) -> Option<String> {
    let least = poll.saturating_mul(2);
    let subject = if set {
        format!("\"{}\"", HumanDuration(max_age))
    } else {
        format!("poll_max_age (default \"{}\")", HumanDuration(max_age))
    };
    (max_age < least).then(|| {
        format!(
            "{subject} must be at least twice poll = \"{}\", or a deployment made just after a poll \
             is refused as too old at the next: set poll_max_age = \"{}\" or longer",
            HumanDuration(poll),
            HumanDuration(least),
        )
    })
}

/// The shortest `[github] poll` interval: GitHub asks integrations not to poll in tight loops, and a
/// 304 still takes a request.
pub const MIN_POLL: Duration = Duration::from_secs(1);

fn validate_webhook(c: &mut Checker<'_>, raw: RawWebhook) -> WebhookConfig {
    let listen_text = raw
        .listen
        .as_ref()
        .map_or_else(|| "127.0.0.1:8080".to_string(), |l| c.env(l));
    let listen = listen_text.parse().unwrap_or_else(|_| {
        c.problem(
            "webhook",
            Some("listen"),
            format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let path = raw.path.unwrap_or_else(|| DEFAULT_WEBHOOK_PATH.to_string());
    if !path.starts_with('/') {
        c.problem(
            "webhook",
            Some("path"),
            format!("`{path}` must start with `/`"),
        );
    }
    let secret = raw.secret.as_ref().map(|s| Secret::new(c.env(s)));
    let receive = raw.receive.unwrap_or(true);
    match (&secret, raw.insecure_skip_signature) {
        _ if !receive => {}
        (None, false) => c.problem(
            "webhook",
            Some("secret"),
            "a webhook secret is required (or set insecure_skip_signature = true, which lets anyone start deploys)",
        ),
        (Some(s), false) if s.expose().len() < 16 && raw.secret.as_ref().is_some_and(|r| r.missing.is_empty()) => {
            c.problem("webhook", Some("secret"), "the webhook secret is too short: use at least 16 characters")
        }
        _ => {}
    }
    let public_url = raw
        .public_url
        .as_ref()
        .map(|url| validate_url(c, "webhook", "public_url", Some(url), ""));
    let metrics_token = raw.metrics_token.as_ref().map(|t| Secret::new(c.env(t)));
    if let Some(token) = &metrics_token
        && token.expose().len() < 16
        && raw
            .metrics_token
            .as_ref()
            .is_some_and(|r| r.missing.is_empty())
    {
        c.problem(
            "webhook",
            Some("metrics_token"),
            "the metrics token is too short: use at least 16 characters",
        );
    }
    WebhookConfig {
        metrics_token,
        listen,
        path,
        public_url,
        secret: if raw.insecure_skip_signature || !receive {
            None
        } else {
            secret
        },
        receive,
    }
}

fn validate_deploy(c: &mut Checker<'_>, raw: RawDeploy, data_dir: &Path) -> DeployConfig {
    let work_dir = match &raw.work_dir {
        Some(dir) => c.path(dir),
        None => data_dir.join("work"),
    };
    let recipes_dir = match &raw.recipes_dir {
        Some(dir) => RecipesDir::Named(c.path(dir)),
        None => RecipesDir::Beside(c.base.join("commands")),
    };
    let concurrency = raw.concurrency.unwrap_or(4);
    if concurrency == 0 {
        c.problem("deploy", Some("concurrency"), "must be at least 1");
    }
    DeployConfig {
        work_dir,
        timeout: raw.timeout.map(|t| t.0),
        concurrency,
        recipes_dir,
        provision_fabric: raw.provision_fabric.unwrap_or(true),
    }
}

/// The password of a `scheme://user:password@host/…` URL, as written (percent-encoded); `None`
/// without one.
fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `url` as it may be shown: its password, if any, replaced by `***`.
pub fn url_without_password(url: &str) -> String {
    match url_password(url) {
        Some(password) => url.replacen(&format!(":{password}@"), ":***@", 1),
        None => url.to_string(),
    }
}

fn validate_store(c: &mut Checker<'_>, raw: RawStore) -> StoreConfig {
    let url = raw.url.as_ref().map(|url| Secret::new(c.env(url)));
    if let Some(url) = &url
        && !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://"))
    {
        // The value may hold a password: it is not repeated.
        c.problem(
            "store",
            Some("url"),
            "must be a Postgres URL like postgres://zbot@db.example/zbot (without it, zbot uses SQLite in the data directory)",
        );
    }
    let lease = raw.lease.map_or(DEFAULT_LEASE, |d| d.0);
    if lease < Duration::from_secs(1) {
        c.problem("store", Some("lease"), "must be at least 1s");
    }
    let password = url
        .as_ref()
        .and_then(|url| url_password(url.expose()))
        .map(|p| Secret::new(p.to_string()));
    StoreConfig {
        url,
        password,
        lease,
        instance: InstanceId::of_this_process(),
    }
}

fn validate_app(c: &mut Checker<'_>, name: &str, raw: RawApp) -> Option<AppConfig> {
    let table = format!("apps.{name}");
    let repository = c.parse::<Repository>(&table, Some("repository"), &raw.repository);
    let environments: Vec<Environment> = raw
        .environments
        .unwrap_or_else(|| vec!["production".into()])
        .iter()
        .filter_map(|e| c.parse(&table, Some("environments"), e))
        .collect();
    if environments.is_empty() {
        c.problem(
            &table,
            Some("environments"),
            "list at least one environment",
        );
    }
    for (i, env) in environments.iter().enumerate() {
        if environments[..i].iter().any(|e| e.same(env)) {
            c.problem(
                &table,
                Some("environments"),
                format!("`{env}` is listed twice (GitHub ignores case in environment names)"),
            );
        }
    }
    let mut per_environment = |key: &str, keys: Vec<&String>| -> Vec<Option<Environment>> {
        keys.into_iter()
            .map(|env| {
                let known = environments.iter().find(|e| e.as_str() == env.as_str());
                if known.is_none() {
                    c.problem(
                        &table,
                        Some(key),
                        format!("`{env}` is not one of this app's environments"),
                    );
                }
                known.cloned()
            })
            .collect()
    };
    let user_envs = per_environment("allowed_users", raw.allowed_users.keys().collect());
    let url_envs = per_environment("environment_urls", raw.environment_urls.keys().collect());
    let allowed_users = user_envs
        .into_iter()
        .zip(raw.allowed_users.into_values())
        .filter_map(|(env, users)| Some((env?, users)))
        .collect();
    let environment_urls = url_envs
        .into_iter()
        .zip(raw.environment_urls.into_values())
        .filter_map(|(env, url)| Some((env?, url)))
        .collect();
    let default_ref = c.parse::<GitRef>(
        &table,
        Some("default_ref"),
        raw.default_ref.as_deref().unwrap_or("main"),
    );
    // A clone URL without a scheme (and not `user@host:path`) is a local path, relative to this file.
    let clone_url = raw.clone_url.as_ref().map(|u| {
        let url = c.env(u);
        // A password in the URL would be printed wherever the URL is (git's errors, statuses, chat).
        let with_password = url.split_once("://").is_some_and(|(_, rest)| {
            rest.split(['/', '?', '#'])
                .next()
                .and_then(|authority| authority.rsplit_once('@'))
                .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        });
        if with_password {
            c.problem(
                &table,
                Some("clone_url"),
                "has a password in it: use [github] token (https) or deploy_key (ssh) instead",
            );
        }
        let scp_like = url
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@'));
        if url.contains("://") || scp_like {
            url
        } else {
            let path = c.base.join(&url);
            let absolute = std::path::absolute(&path).unwrap_or(path);
            format!("file://{}", absolute.display())
        }
    });
    let deploy_key = raw.deploy_key.as_ref().map(|k| c.path(k));
    let heroku_apps = validate_heroku_apps(
        c,
        &table,
        &environments,
        raw.provider.as_deref(),
        raw.heroku_app,
    );
    let approvals = guards::validate_approvals(c, &table, &environments, raw.approvals);
    let auto_deploy = raw
        .auto_deploy
        .and_then(|auto| guards::validate_auto_deploy(c, &table, &environments, auto));
    Some(AppConfig {
        repository: repository?,
        clone_url,
        provider: raw.provider,
        environments,
        default_ref: default_ref?,
        allowed_channels: raw.allowed_channels,
        allowed_users,
        environment_urls,
        required_contexts: raw.required_contexts,
        auto_merge: raw.auto_merge,
        timeout: raw.timeout.map(|t| t.0),
        deploy_key,
        heroku_apps,
        approvals,
        auto_deploy,
        lock_on_failure: raw.lock_on_failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_password_is_found_for_redaction() {
        let cases = [
            ("postgres://zbot:s3cret@db.example/zbot", Some("s3cret")),
            (
                "postgres://zbot:a%2Fb%40c@db:5432/zbot?sslmode=require",
                Some("a%2Fb%40c"),
            ),
            ("postgres://zbot@db.example/zbot", None),
            ("postgres://zbot:@db.example/zbot", None),
            ("postgres://db.example/zbot?user=a@b", None),
            ("not a url", None),
        ];
        for (url, expected) in cases {
            assert_eq!(url_password(url), expected, "{url}");
        }
        assert_eq!(
            url_without_password("postgres://zbot:s3cret@db:5432/zbot"),
            "postgres://zbot:***@db:5432/zbot"
        );
    }

    /// The `[github]` and `[slack]` timeouts of a file with `github` and `slack` lines in those tables,
    /// or its problems as `zbot check` prints them.
    fn timeouts_of(github: &str, slack: &str) -> Result<(Timeouts, Timeouts), Vec<String>> {
        let source = format!(
            "[github]\ntoken = \"ghp_test\"\n{github}\n[slack]\napp_token = \"xapp-1\"\nbot_token = \"xoxb-1\"\n{slack}\n"
        );
        Config::from_source(Path::new("bot.toml"), &source)
            .map(|c| {
                let (github, slack) = (c.github.unwrap(), c.slack.unwrap());
                (github.timeouts, slack.timeouts)
            })
            .map_err(|problems| problems.iter().map(ToString::to_string).collect())
    }

    fn timeouts(connect: u64, request: u64) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(connect),
            request: Duration::from_secs(request),
        }
    }

    #[test]
    fn poll_max_age_is_at_least_twice_the_poll_interval() {
        let table = [
            ("poll = \"15s\"", Ok(Duration::from_secs(3600))),
            ("poll = \"30m\"", Ok(Duration::from_secs(3600))),
            (
                "poll = \"1m\"\npoll_max_age = \"2m\"",
                Ok(Duration::from_secs(120)),
            ),
            (
                "poll = \"1h\"",
                Err(
                    "bot.toml:3: [github] poll: poll_max_age (default \"1h\") must be at least twice \
                     poll = \"1h\", or a deployment made just after a poll is refused as too old at \
                     the next: set poll_max_age = \"2h\" or longer",
                ),
            ),
            (
                "poll = \"2h\"",
                Err(
                    "bot.toml:3: [github] poll: poll_max_age (default \"1h\") must be at least twice \
                     poll = \"2h\", or a deployment made just after a poll is refused as too old at \
                     the next: set poll_max_age = \"4h\" or longer",
                ),
            ),
            (
                "poll = \"1m\"\npoll_max_age = \"90s\"",
                Err(
                    "bot.toml:4: [github] poll_max_age: \"1m30s\" must be at least twice \
                     poll = \"1m\", or a deployment made just after a poll is refused as too old at \
                     the next: set poll_max_age = \"2m\" or longer",
                ),
            ),
        ];
        for (lines, expected) in table {
            let source = format!("[github]\ntoken = \"ghp_test\"\n{lines}\n");
            let got = Config::from_source(Path::new("bot.toml"), &source)
                .map(|c| c.github.unwrap().poll_max_age)
                .map_err(|problems| {
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                });
            assert_eq!(got, expected.map_err(str::to_string), "{lines}");
        }
    }

    #[test]
    fn timeouts_have_defaults_and_can_be_set() {
        let table = [
            ("", "", timeouts(10, 30), timeouts(10, 30)),
            // A short request timeout shortens the default connect timeout with it.
            ("timeout = \"5s\"", "", timeouts(5, 5), timeouts(10, 30)),
            (
                "timeout = \"1m\"\nconnect_timeout = \"3s\"",
                "timeout = \"15s\"",
                timeouts(3, 60),
                timeouts(10, 15),
            ),
        ];
        for (github, slack, expected_github, expected_slack) in table {
            assert_eq!(
                timeouts_of(github, slack),
                Ok((expected_github, expected_slack)),
                "{github} / {slack}"
            );
        }
    }

    #[test]
    fn zbot_check_refuses_timeouts_that_cannot_work() {
        let table = [
            (
                "timeout = \"0s\"",
                "",
                "bot.toml:3: [github] timeout: must be longer than 0s",
            ),
            (
                "timeout = \"5s\"\nconnect_timeout = \"10s\"",
                "",
                "bot.toml:4: [github] connect_timeout: 10s is longer than timeout (5s): the connection is part of the request",
            ),
            (
                "",
                "connect_timeout = \"0s\"",
                "bot.toml:7: [slack] connect_timeout: must be longer than 0s",
            ),
        ];
        for (github, slack, expected) in table {
            assert_eq!(
                timeouts_of(github, slack),
                Err(vec![expected.to_string()]),
                "{github} / {slack}"
            );
        }
    }
}
