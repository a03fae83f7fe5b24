//! The `zbot` binary: flags, logging, and one exit code per outcome. The work lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zbot::command::{Addressing, parse_message};
use zbot::config::{Config, apps_json};
use zbot::domain::InstanceId;
use zbot::recipe::{Origin, Recipes};

#[derive(Parser)]
#[command(name = "zbot", version, about = "A Slack bot with a built-in deployer")]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "ZBOT_CONFIG", default_value = "bot.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the bot: the webhook listener, the deploy queue and (with [slack]) the Slack connection.
    Run {
        /// Log lines as JSON objects instead of text.
        #[arg(long)]
        json_logs: bool,
        /// This instance's name among several sharing one Postgres store: in logs, /healthz and deploy
        /// logs, and in the store as the holder of its deploys (default: host name and process id).
        #[arg(long, value_name = "ID", env = "ZBOT_INSTANCE_ID")]
        instance_id: Option<String>,
    },
    /// The bot in a terminal: type what you would type in Slack. Deploys for real, without Slack or GitHub.
    Shell,
    /// Write a commented bot.toml into the current directory for a new installation.
    Init,
    /// Check bot.toml and every recipe, list apps and recipes; or convert a hubot-deploy apps.json.
    Check {
        /// Print the [apps.*] tables for this hubot-deploy apps.json instead.
        #[arg(long, value_name = "FILE")]
        apps_json: Option<PathBuf>,
        /// Also check the connections: Slack's auth.test, the GitHub token's access to each repository,
        /// the Heroku API key's access to each heroku_app, and that [campfire] url answers.
        #[arg(long)]
        online: bool,
    },
    /// A deploy's guard, started by `zbot run` beside each deploy it runs on a shared store: kills the
    /// deploy's process group when zbot stops feeding it heartbeats on stdin (zbot died, was paused, or
    /// lost its lease).
    #[command(hide = true)]
    Guard {
        /// The deploy's process group.
        group: i32,
        /// How long a silence, in milliseconds, means zbot no longer holds the deploy.
        silence_ms: u64,
        /// The deploy's data directory mark: with --deployment, the processes carrying both marks
        /// are killed too.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The deploy's deployment id mark.
        #[arg(long)]
        deployment: Option<u64>,
    },
    /// Show what the chat grammar makes of a message, as JSON (exit 0 command, 1 malformed, 3 not addressed).
    Parse {
        /// The bot's Slack user id, for `<@U…>` mentions.
        #[arg(long, value_name = "U…")]
        bot_id: Option<String>,
        /// The message is a direct message (no prefix needed).
        #[arg(long)]
        dm: bool,
        /// The message is the text of this slash command.
        #[arg(long, value_name = "/COMMAND")]
        slash: Option<String>,
        /// The bot's name and aliases (default: zbot).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// The message, exactly as Slack delivers it.
        text: String,
    },
}

/// Large buffers (webhook bodies up to GitHub's 25 MB) are mapped from the OS and returned to it when
/// freed. glibc otherwise raises its mmap threshold after the first such free and keeps later ones in
/// per-thread arenas, so a few refused bodies would stay resident long after they were dropped.
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called once, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    return_large_buffers_to_the_os();
    let cli = Cli::parse();
    match cli.command {
        Commands::Run {
            json_logs,
            instance_id,
        } => run(&cli.config, json_logs, instance_id.as_deref()),
        Commands::Shell => shell(&cli.config),
        Commands::Guard {
            group,
            silence_ms,
            data_dir,
            deployment,
        } => {
            let marks = data_dir.zip(deployment).map(|(dir, id)| {
                zbot::runner::escaped::Marks::new(&dir, zbot::domain::DeploymentId(id))
            });
            ExitCode::from(zbot::runner::process::guard(
                group,
                std::time::Duration::from_millis(silence_ms),
                marks.as_ref(),
            ))
        }
        Commands::Init => init(&cli.config),
        Commands::Parse {
            bot_id,
            dm,
            slash,
            names,
            text,
        } => parse(&text, bot_id.as_deref(), dm, slash.as_deref(), names),
        Commands::Check { apps_json, online } => match apps_json {
            Some(file) => convert_apps_json(&file),
            None => match check(&cli.config) {
                Some(config) if online => block_on(check_online(config)),
                Some(_) => ExitCode::SUCCESS,
                None => ExitCode::FAILURE,
            },
        },
    }
}

/// Logs go to stderr; `RUST_LOG` overrides `default_level`.
fn init_logs(default_level: &str, json_logs: bool) {
    init_logs_of(default_level, json_logs, None);
}

/// Logs on stderr; with `instance`, every line names it (`zbot run`: several instances may log into
/// one place).
fn init_logs_of(default_level: &str, json_logs: bool, instance: Option<&InstanceId>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let instance = instance.map(ToString::to_string);
    if json_logs {
        let format = tracing_subscriber::fmt::format().json();
        logs.event_format(WithInstance {
            instance,
            json: true,
            inner: format,
        })
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .init();
    } else {
        let format = tracing_subscriber::fmt::format();
        logs.event_format(WithInstance {
            instance,
            json: false,
            inner: format,
        })
        .init();
    }
}

/// A log line format with the instance id first (`instance=…` in text, an `"instance"` key in JSON).
/// The id is ASCII letters, digits and `.` `_` `-` `:` only, so it needs no escaping in either.
struct WithInstance<F> {
    instance: Option<String>,
    json: bool,
    inner: F,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithInstance<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(instance) = &self.instance else {
            return self.inner.format_event(ctx, writer, event);
        };
        // (Formatted into a string, the line has no colours.)
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) if self.json => write!(writer, "{{\"instance\":\"{instance}\",{rest}"),
            _ => write!(writer, "instance={instance} {line}"),
        }
    }
}

/// The value, or every problem printed on stderr.
fn or_report<T>(loaded: Result<T, Vec<zbot::config::Problem>>) -> Option<T> {
    match loaded {
        Ok(value) => Some(value),
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            None
        }
    }
}

fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(work));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zbot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn shell(config_path: &Path) -> ExitCode {
    init_logs("warn", false);
    zbot::runner::escaped::become_subreaper();
    let loaded = if config_path.exists() {
        Config::load_local(config_path)
    } else {
        eprintln!(
            "zbot: no {}: using the example configuration (`zbot init` writes it there)",
            config_path.display()
        );
        Config::local_from_source(config_path, zbot::example::BOT_TOML)
    };
    let Some(config) = or_report(loaded) else {
        return ExitCode::FAILURE;
    };
    make_example_repository(&config);
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    block_on(zbot::app::shell(config, stdin, interactive))
}

/// For the shell: the example app's repository is made where its local `clone_url` has none; any
/// other app whose local repository is missing is named with what to do.
fn make_example_repository(config: &Config) {
    for (name, app) in &config.apps {
        let Some(dir) = app.clone_url.as_deref().and_then(zbot::example::local_path) else {
            continue;
        };
        if zbot::example::is_repository(&dir) {
            continue;
        }
        if name.as_str() == zbot::example::APP {
            match zbot::example::make_repository(&dir) {
                Ok(()) => eprintln!(
                    "zbot: made the example app's repository in {} (tags v0.0.1 and v0.0.2)",
                    dir.display()
                ),
                Err(e) => eprintln!(
                    "zbot: cannot make the example app's repository in {}: {e}",
                    dir.display()
                ),
            }
        } else {
            eprintln!(
                "zbot: {name}: no git repository at {} (its clone_url): clone your app there, or point clone_url at it",
                dir.display()
            );
        }
    }
}

/// `zbot init`: the commented example bot.toml at `--config` (`ZBOT_CONFIG`; `./bot.toml` by default),
/// never over an existing file ([`zbot::example::write_new`]: whole beside its place and linked in,
/// or created new in place where the filesystem has no hard links).
fn init(path: &Path) -> ExitCode {
    let shown = path.display();
    match zbot::example::write_new(path, zbot::example::BOT_TOML.as_bytes()) {
        Ok(()) => {
            println!(
                "wrote {shown}: read it top to bottom, set SLACK_APP_TOKEN, SLACK_BOT_TOKEN, GITHUB_TOKEN and \
                 GITHUB_WEBHOOK_SECRET (or remove [slack]), replace [apps.adxstat] with your apps, then run \
                 `zbot check` and `zbot run`; `zbot shell` tries it in this terminal first"
            );
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("zbot: {shown} exists already: not overwritten");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("zbot: cannot write {shown}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: &Path, json_logs: bool, instance_id: Option<&str>) -> ExitCode {
    let instance = match instance_id.map(str::parse::<InstanceId>).transpose() {
        Ok(id) => id.unwrap_or_else(InstanceId::of_this_process),
        Err(e) => {
            eprintln!("--instance-id: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs_of("info", json_logs, Some(&instance));
    // Processes a deploy leaves behind when their parent exits come to zbot, not to init.
    zbot::runner::escaped::become_subreaper();
    // This binary is each deploy's guard too (`zbot guard`).
    // /proc/self/exe names the running binary even after an upgrade replaced or removed its file.
    let own = std::path::PathBuf::from("/proc/self/exe");
    if own.exists() {
        zbot::runner::process::set_guard_program(own);
    } else {
        match std::env::current_exe() {
            Ok(exe) => zbot::runner::process::set_guard_program(exe),
            Err(e) => tracing::error!(
                "cannot find zbot's own binary: deploys on a shared store do not run without their guard: {e}"
            ),
        }
    }
    // ring is the only crypto provider compiled in; installing it explicitly keeps it that way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(mut config) = or_report(Config::load(config_path)) else {
        return ExitCode::FAILURE;
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    config.store.instance = instance;
    tracing::info!("zbot instance starting");
    block_on(async {
        let running = zbot::app::start(config, None).await?;
        wait_for_signal().await;
        tracing::info!(
            "stopping: no new deploys; running ones get {:?}",
            zbot::app::SHUTDOWN_GRACE
        );
        running.stop().await
    })
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn parse(
    text: &str,
    bot_id: Option<&str>,
    dm: bool,
    slash: Option<&str>,
    names: Vec<String>,
) -> ExitCode {
    let names = if names.is_empty() {
        vec!["zbot".to_string()]
    } else {
        names
    };
    let addressing = Addressing {
        names: &names,
        bot_user_id: bot_id,
        direct: dm,
        slash_command: slash,
    };
    let (code, json) = zbot::reply::parse_outcome(parse_message(text, &addressing));
    println!("{json}");
    ExitCode::from(code)
}

/// Checks the connections to Slack, GitHub, Heroku and Campfire; fails if any is broken.
async fn check_online(config: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut failures = 0;
    if let Some(slack) = &config.slack {
        match zbot::slack::check(slack).await {
            Ok(identity) => println!("slack: ok, {identity}"),
            Err(e) => {
                failures += 1;
                println!("slack: {e:#}");
            }
        }
    }
    if let Some(github_config) = &config.github {
        let github = zbot::forge::github::GitHub::new(github_config, Default::default())?;
        for (name, app) in &config.apps {
            match github.check_access(&app.repository).await {
                Ok(()) => println!("github: ok, {name} ({})", app.repository),
                Err(reason) => {
                    failures += 1;
                    println!("github: {name}: {reason}");
                }
            }
        }
        match github.rate_limit().await {
            Ok(rate) => println!(
                "github: rate limit {} requests per hour, {} left{}",
                rate.limit,
                rate.remaining,
                poll_budget(&config, github_config.poll, rate.limit)
            ),
            Err(e) => {
                failures += 1;
                println!("github: cannot read the rate limit: {e}");
            }
        }
    }
    if let Some(heroku_config) = &config.heroku {
        let heroku = zbot::runner::heroku::HerokuExecutor::new(heroku_config)?;
        for (name, app) in &config.apps {
            for (environment, heroku_app) in &app.heroku_apps {
                match heroku.check_app(heroku_app).await {
                    Ok(()) => println!("heroku: ok, {name} {environment} ({heroku_app})"),
                    Err(reason) => {
                        failures += 1;
                        println!("heroku: {name} {environment}: {reason}");
                    }
                }
            }
        }
    }
    if let Some(url) = &config.store.url {
        let shown = zbot::config::url_without_password(url.expose());
        match zbot::store::Store::probe(url.expose()).await {
            Ok(()) => println!("store: ok, {shown} answers"),
            Err(e) => {
                failures += 1;
                let hint = zbot::store::Store::hint(&e)
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                println!(
                    "store: {shown}: {}{hint}",
                    zbot::secret::Redactor::new(config.secrets()).redact(&e.to_string())
                );
            }
        }
    }
    if let Some(campfire) = &config.campfire {
        match zbot::campfire::check(campfire).await {
            Ok(status) => println!("campfire: ok, {} answered {status}", campfire.url),
            Err(e) => {
                failures += 1;
                println!("campfire: {} does not answer: {e}", campfire.url);
            }
        }
    }
    anyhow::ensure!(failures == 0, "{failures} connection check(s) failed");
    Ok(())
}

/// What `[github] poll` costs of an hourly rate limit of `limit` requests: one listing per repository
/// per interval at most (a 304, when nothing changed, costs none).
fn poll_budget(config: &Config, poll: Option<std::time::Duration>, limit: u64) -> String {
    let Some(poll) = poll else {
        return "; no polling ([github] poll is not set)".to_string();
    };
    let mut repositories: Vec<&str> = config
        .apps
        .values()
        .map(|app| app.repository.as_str())
        .collect();
    repositories.sort_unstable();
    repositories.dedup();
    let per_hour = (3600.0 / poll.as_secs_f64()).ceil() as u64 * repositories.len() as u64;
    let share = (per_hour * 100)
        .checked_div(limit)
        .map(|percent| format!(" ({percent}% of the limit)"))
        .unwrap_or_default();
    format!(
        "; polling {} {} every {} uses at most {per_hour} requests per hour{share}, \
         and none while nothing changes (304 answers are free)",
        repositories.len(),
        if repositories.len() == 1 {
            "repository"
        } else {
            "repositories"
        },
        zbot::config::HumanDuration(poll)
    )
}

/// Checks bot.toml and the recipes and prints what it found; the configuration if all is well.
fn check(config_path: &Path) -> Option<Config> {
    let config = Config::load(config_path);
    let mut problems = Vec::new();
    let (config, recipes) = match config {
        Ok(config) => match zbot::recipe::load_for(&config) {
            Ok(recipes) => (config, recipes),
            Err(p) => {
                problems.extend(p.iter().map(ToString::to_string));
                (config, Recipes::default())
            }
        },
        Err(p) => {
            // The recipes directory comes from the config: without a config there is none to read.
            problems.extend(p.iter().map(ToString::to_string));
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("{} problem(s) found", problems.len());
            return None;
        }
    };
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!("{} problem(s) found", problems.len());
        return None;
    }
    for warning in &config.warnings {
        eprintln!("{warning} (warning)");
    }
    println!("{}: ok", config.path.display());
    match &config.store.url {
        // The URL may carry a password: it is not printed.
        Some(_) => println!(
            "store: postgres ([store] url), leases of {}",
            zbot::config::HumanDuration(config.store.lease)
        ),
        None => println!(
            "store: sqlite in {}",
            config.bot.data_dir.join("zbot.sqlite").display()
        ),
    }
    if let Some(github) = config.github.as_ref()
        && let Some(poll) = github.poll
    {
        println!(
            "polling: every {}; a deployment found older than {} is refused ([github] poll_max_age)",
            zbot::config::HumanDuration(poll),
            zbot::config::HumanDuration(github.poll_max_age)
        );
    }
    println!("apps:");
    for (name, app) in &config.apps {
        let provider = app.provider.as_deref().unwrap_or("detected");
        println!(
            "  {name}: {} → {} (recipe: {provider})",
            app.repository,
            app.environments.join(", ")
        );
    }
    println!("recipes (detection order first):");
    let detected = recipes.detection_order();
    let origin = |recipe: &zbot::recipe::Recipe| match recipe.origin {
        Origin::Stock => "stock".to_string(),
        Origin::Local {
            overrides_stock: true,
        } => format!("local, replaces the stock one: {}", recipe.file.display()),
        Origin::Local {
            overrides_stock: false,
        } => format!("local: {}", recipe.file.display()),
    };
    // Whether `deploy:noop` can run: a recipe without `noop_task` refuses it.
    let dry_run = |recipe: &zbot::recipe::Recipe| match &recipe.noop {
        Some(noop) => format!("dry run: task {}", noop.task),
        None => "no dry run".to_string(),
    };
    for recipe in &detected {
        println!(
            "  {} ({}; {}): {}",
            recipe.name,
            origin(recipe),
            dry_run(recipe),
            recipe.description
        );
    }
    for recipe in recipes
        .by_name
        .values()
        .filter(|r| !detected.iter().any(|d| d.name == r.name))
    {
        println!(
            "  {} ({}, only when named; {}): {}",
            recipe.name,
            origin(recipe),
            dry_run(recipe),
            recipe.description
        );
    }
    Some(config)
}

fn convert_apps_json(file: &Path) -> ExitCode {
    let converted = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read the file: {e}", file.display()))
        .and_then(|json| apps_json::convert(&json).map_err(|e| format!("{}: {e}", file.display())));
    match converted {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
