//! Wires zbot's parts together and owns their shutdown. No business rules live here.
//!
//! [`start`] opens the store, connects to Slack (with `[slack]`), ends deploys a previous process left
//! running, posts the outcomes chat has not shown yet, starts the scheduler and the webhook listener, and returns a [`Running`] handle; [`Running::stop`] stops taking new work,
//! lets running deploys finish for a grace period, and returns once every task has ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::autodeploy::AutoDeployer;
use crate::campfire;
use crate::chat::ChatOutput;
use crate::chat::bot::Bot;
use crate::chat::notifier::{Notifier, NotifierTask};
use crate::clock::Clock;
use crate::config::Config;
use crate::events::EventBus;
use crate::forge::Forge;
use crate::forge::github::GitHub;
use crate::forge::local::LocalForge;
use crate::loglink::{LinkKey, LogLinks};
use crate::metrics::Metrics;
use crate::runner::Deployer;
use crate::runner::checkout::Checkouts;
use crate::scheduler::Scheduler;
use crate::secret::Redactor;
use crate::slack;
use crate::store::Store;
use crate::webhook;

/// How long the listener's open connections may take to finish at shutdown.
const LISTENER_GRACE: Duration = Duration::from_secs(10);

/// How long `SIGTERM` waits for running deploys before they are stopped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// A started zbot.
#[derive(Debug)]
pub struct Running {
    /// Where the webhook listener accepts connections.
    pub addr: SocketAddr,
    pub events: EventBus,
    pub scheduler: Arc<Scheduler>,
    pub store: Store,
    shutdown: watch::Sender<bool>,
    /// Slack's input, and the notifier that shows deployments there.
    slack: Option<(slack::SlackConnection, NotifierTask)>,
    /// The notifier that tells Campfire rooms how their deployments ended.
    campfire: Option<NotifierTask>,
    /// The `[[notify]]` sinks and the requester's direct message, one task each.
    sinks: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
    queue: JoinHandle<()>,
    /// Held until this zbot has stopped.
    _data_dir: DataDirLock,
    /// `[github] poll`'s task.
    poller: Option<JoinHandle<()>>,
    /// Ends locks and approval requests whose time is up (with chat).
    sweeper: Option<JoinHandle<()>>,
    /// Deploys waiting green commits as their environments come free.
    autodeploy: Option<JoinHandle<()>>,
}

/// The data directory, held by this process alone while it runs: an exclusive `flock` on
/// `<data_dir>/zbot.lock`, which the kernel releases when the process ends, also by kill -9. A second
/// zbot on one data directory would end the first one's deploys as interrupted at its start and
/// share its working trees and process marks.
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code)] std::fs::File);

impl DataDirLock {
    /// Takes the lock, creating the directory if needed; refused with a sentence naming the directory
    /// (and the process holding it) when another zbot holds it.
    pub fn take(data_dir: &std::path::Path) -> anyhow::Result<DataDirLock> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let path = data_dir.join("zbot.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "another zbot{} is running on the data directory {}: stop it first, or give this one its own data_dir (two instances sharing a [store] url each need their own)",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (process {holder})")
                },
                data_dir.display()
            );
        }
        // Who holds it, for the sentence above.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(DataDirLock(file))
    }
}

/// What every zbot runs, whatever its edges: the store, the deployer and the queue.
pub struct Core {
    /// Held for as long as this zbot runs.
    pub data_dir: DataDirLock,
    /// "Now" for every rule about time: the wall clock, or a test's.
    pub clock: Clock,
    /// This zbot's metrics, recorded by its parts and served by its listener.
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    pub store: Store,
    pub events: EventBus,
    pub scheduler: Arc<Scheduler>,
    pub deployer: Arc<Deployer>,
    pub forge: Forge,
}

impl Core {
    /// Loads the recipes, opens the store and builds the deployer and scheduler around `forge`.
    pub async fn build(
        config: Config,
        forge: impl FnOnce(&Store) -> Forge,
        log_links: Option<LogLinks>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Core> {
        let recipes = crate::recipe::load_for(&config).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the deploy recipes have problems:\n{}", lines.join("\n"))
        })?;
        let data_dir = DataDirLock::take(&config.bot.data_dir)?;
        let store = match Store::from_config(&config.store, &config.bot.data_dir).await {
            Ok(store) => store,
            Err(e) => {
                let hint = Store::hint(&e)
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                return Err(anyhow::Error::new(e).context(match &config.store.url {
                    Some(url) => format!(
                        "opening the store at {}{hint}",
                        crate::config::url_without_password(url.expose())
                    ),
                    None => format!("opening the store in {}", config.bot.data_dir.display()),
                }));
            }
        };
        store
            .register()
            .await
            .context("registering this instance in the store")?;
        tracing::info!(
            instance = %store.instance(),
            store = store.backend().as_str(),
            "store open"
        );
        // zbot, made the child subreaper at start, reaps the orphans it inherits.
        crate::runner::escaped::watch_orphans();
        let forge = forge(&store);
        let events = EventBus::default();
        let config = Arc::new(config);
        let deployer = Arc::new(Deployer {
            forge: forge.clone(),
            checkouts: Checkouts::new(&config.bot.data_dir, &config.deploy.work_dir),
            config: Arc::clone(&config),
            recipes: Arc::new(recipes),
            store: store.clone(),
            events: events.clone(),
            redactor: Redactor::new(config.secrets()),
            log_links,
            executors: crate::runner::executor::Executors::new(&config)
                .map_err(|e| anyhow::anyhow!("the deploy executors: {e}"))?,
            clock: clock.clone(),
            metrics: Arc::clone(&metrics),
            overrides: Default::default(),
            lease_deadlines: Default::default(),
        });
        Ok(Core {
            data_dir,
            clock,
            metrics,
            config,
            store,
            events,
            scheduler: Scheduler::new(Arc::clone(&deployer)),
            deployer,
            forge,
        })
    }
}

/// What the chat side of any chat service is built from: wired here, once, for Slack and the terminal.
struct ChatSide<'a> {
    clock: &'a Clock,
    config: &'a Arc<Config>,
    store: &'a Store,
    forge: &'a Forge,
    scheduler: &'a Arc<Scheduler>,
    /// The other chats wired beside this one, which answer their own deployments.
    elsewhere: Vec<crate::domain::Adapter>,
}

impl ChatSide<'_> {
    /// The bot that answers messages and the notifier that shows deployments, both speaking through
    /// `out`. `default_channel` hears of deployments not asked for from chat; `refresh` is how often a
    /// running deployment's status shows its elapsed time.
    fn wire<O: ChatOutput>(
        &self,
        out: O,
        bot_user_id: String,
        default_channel: Option<String>,
        refresh: Option<Duration>,
    ) -> (Bot<O>, Notifier<O>) {
        let bot = Bot {
            config: Arc::clone(self.config),
            store: self.store.clone(),
            forge: self.forge.clone(),
            scheduler: Arc::clone(self.scheduler),
            out: out.clone(),
            bot_user_id,
            clock: self.clock.clone(),
        };
        let notifier = Notifier {
            store: self.store.clone(),
            out,
            default_channel,
            refresh,
            elsewhere: self.elsewhere.clone(),
        };
        (bot, notifier)
    }
}

/// `zbot shell`: the embedded zbot with the terminal as its chat, reading `input` until it ends.
pub async fn shell(
    config: Config,
    input: impl tokio::io::AsyncBufRead + Unpin,
    interactive: bool,
) -> anyhow::Result<()> {
    let local = start_local(config).await?;
    let core = &local.core;
    let terminal = crate::shell::Terminal::for_user(crate::shell::user());
    let side = ChatSide {
        clock: &core.clock,
        config: &core.config,
        store: &core.store,
        forge: &core.forge,
        scheduler: &core.scheduler,
        elsewhere: Vec::new(),
    };
    let name = core.config.bot.name.clone();
    // A terminal shows every update as a new line: only state changes are printed.
    let (bot, notifier) = side.wire(
        terminal,
        name,
        Some(crate::shell::CHANNEL.to_string()),
        None,
    );
    crate::shell::run(&core.store, &core.events, bot, notifier, input, interactive).await?;
    local.stop().await
}

/// zbot without GitHub, Slack or a listener (`zbot shell`): the embedded forge and the queue.
pub struct Local {
    pub core: Core,
    shutdown: watch::Sender<bool>,
    queue: JoinHandle<()>,
}

/// Starts the embedded zbot; deploys a previous run left running end as `error`.
pub async fn start_local(config: Config) -> anyhow::Result<Local> {
    let core = Core::build(
        config,
        |store| {
            Forge::Local(LocalForge {
                store: store.clone(),
            })
        },
        None,
        Clock::system(),
        Arc::new(Metrics::new()),
    )
    .await?;
    core.scheduler.recover().await;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let queue = tokio::spawn(Arc::clone(&core.scheduler).run(shutdown_rx, SHUTDOWN_GRACE));
    Ok(Local {
        core,
        shutdown,
        queue,
    })
}

impl Local {
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.queue.await.context("the queue task")
    }
}

/// Starts zbot with `config`; `listener` replaces binding `[webhook] listen` (tests bind port 0).
pub async fn start(config: Config, listener: Option<TcpListener>) -> anyhow::Result<Running> {
    start_with_clock(config, listener, Clock::system()).await
}

/// [`start`] with the clock rules about time read (tests set a [`Clock::manual`] one).
pub async fn start_with_clock(
    config: Config,
    listener: Option<TcpListener>,
    clock: Clock,
) -> anyhow::Result<Running> {
    let Some(github_config) = config.github.clone() else {
        bail!(
            "{}: zbot run needs a [github] section to post statuses",
            config.path.display()
        );
    };
    let webhook_config = match (config.webhook.clone(), github_config.poll) {
        (Some(webhook), _) => webhook,
        (None, Some(_)) => crate::config::WebhookConfig::polling_only(),
        (None, None) => bail!(
            "{}: zbot run needs a [webhook] section to receive deployments, or [github] poll",
            config.path.display()
        ),
    };
    // One set of metrics for this zbot, served by its own listener.
    let metrics = Arc::new(Metrics::new());
    let github =
        GitHub::new(&github_config, Arc::clone(&metrics)).context("connecting to GitHub")?;
    let poll_client = github.clone();
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind(webhook_config.listen)
            .await
            .with_context(|| format!("listening on {}", webhook_config.listen))?,
    };
    let addr = listener.local_addr()?;
    let public_url = webhook_config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let log_key = LinkKey::load_or_create(&config.bot.data_dir).context("the log link key")?;
    let core = Core::build(
        config,
        |_| Forge::GitHub(Box::new(github)),
        Some(LogLinks::new(&public_url, log_key.clone())),
        clock,
        metrics,
    )
    .await?;
    let Core {
        data_dir,
        clock,
        metrics,
        config,
        store,
        events,
        scheduler,
        deployer,
        forge,
    } = core;
    // Chat first, so the ends of interrupted deploys reach their threads too.
    let mut said_tx = None;
    let side = |elsewhere| ChatSide {
        clock: &clock,
        config: &config,
        store: &store,
        forge: &forge,
        scheduler: &scheduler,
        elsewhere,
    };
    let mut slack_out = None;
    let slack = match &config.slack {
        Some(slack_config) => {
            let (out, bot_user_id) = slack::connect(slack_config, Arc::clone(&metrics)).await?;
            slack_out = Some(out.clone());
            let elsewhere = config
                .campfire
                .iter()
                .map(|_| crate::domain::Adapter::campfire())
                .collect();
            let side = side(elsewhere);
            let (bot, notifier) = side.wire(
                out,
                bot_user_id,
                slack_config.default_channel.clone(),
                Some(slack_config.status_refresh),
            );
            let notifier = notifier.spawn(&events);
            let bot = Arc::new(bot);
            let input = slack::listen(slack_config, Arc::clone(&bot)).await?;
            // What auto-deploy says in an app's channel.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<crate::autodeploy::Said>();
            said_tx = Some(tx);
            let out = bot.out.clone();
            tokio::spawn(async move {
                while let Some((channel, text)) = rx.recv().await {
                    if let Err(e) = out
                        .post(&channel, None, &crate::mrkdwn::Message::text(text))
                        .await
                    {
                        tracing::warn!(%channel, "cannot say what auto-deploy holds back: {e}");
                    }
                }
            });
            Some((input, notifier, bot))
        }
        None => None,
    };
    let mut campfire_out = None;
    let campfire = match &config.campfire {
        Some(campfire_config) => {
            let out =
                campfire::CampfireOutput::new(campfire_config).context("the Campfire client")?;
            campfire_out = Some(out.clone());
            let (bot, notifier) = side(Vec::new()).wire(out, config.bot.name.clone(), None, None);
            let notifier = notifier.spawn(&events);
            Some((campfire::router(Arc::new(bot), campfire_config), notifier))
        }
        None => None,
    };
    let sinks = spawn_sinks(&config, &events, slack_out, campfire_out)?;
    scheduler.recover().await;
    // Then the outcomes a previous process did not get to post, those of the deploys just ended included.
    if let Some((_, notifier, _)) = &slack {
        notifier.catch_up();
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    // Auto-deploy, when an app wants it: its sentences go to the chat side.
    let autodeploy = AutoDeployer::wanted(&config).then(|| {
        Arc::new(AutoDeployer::new(
            Arc::clone(&config),
            store.clone(),
            forge.clone(),
            clock.clone(),
            said_tx.clone(),
            Arc::clone(&metrics),
        ))
    });
    let auto_task = autodeploy
        .clone()
        .map(|auto| tokio::spawn(auto.run(events.clone(), shutdown_rx.clone())));
    let (campfire_routes, campfire) = match campfire {
        Some((routes, notifier)) => (Some(routes), Some(notifier)),
        None => (None, None),
    };
    let hooks = webhook::Listener {
        config: Arc::clone(&config),
        store: store.clone(),
        deployer,
        secret: webhook_config.secret.clone(),
        log_key,
        metrics,
        metrics_token: webhook_config.metrics_token.clone(),
        shutdown: shutdown_rx.clone(),
        autodeploy,
    };
    let poller = github_config.poll.map(|interval| {
        let poller = crate::poll::Poller {
            github: poll_client,
            listener: hooks.clone(),
            interval,
            max_age: github_config.poll_max_age,
        };
        tokio::spawn(poller.run(shutdown_rx.clone()))
    });
    let mut router = webhook::router(
        hooks,
        webhook_config
            .receive
            .then_some(webhook_config.path.as_str()),
    );
    if let Some(routes) = campfire_routes {
        router = router.merge(routes);
    }
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    // Locks that end and approval requests that expire are noticed by the bot that speaks of them.
    let (slack, sweeper) = match slack {
        Some((input, notifier, bot)) => (
            Some((input, notifier)),
            Some(tokio::spawn(bot.keep_sweeping(shutdown_rx.clone()))),
        ),
        None => (None, None),
    };
    let queue = tokio::spawn(Arc::clone(&scheduler).run(shutdown_rx, SHUTDOWN_GRACE));
    if webhook_config.receive {
        tracing::info!(%addr, path = %webhook_config.path, "zbot is listening for GitHub webhooks");
    } else {
        tracing::info!(%addr, "zbot is listening (no webhook: deployments come by polling)");
    }
    Ok(Running {
        poller,
        addr,
        events,
        scheduler,
        store,
        shutdown,
        slack,
        campfire,
        sinks,
        server,
        queue,
        _data_dir: data_dir,
        sweeper,
        autodeploy: auto_task,
    })
}

/// One task per `[[notify]]` sink, and the requester's direct message in Slack (`[slack] dm_requester`).
fn spawn_sinks(
    config: &Config,
    events: &EventBus,
    slack: Option<slack::SlackOutput>,
    campfire: Option<campfire::CampfireOutput>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    use crate::chat::sinks::{self, ChatSink, Deliver, Filter, WebhookSink};
    use crate::config::SinkKind;
    let mut tasks = Vec::new();
    for (n, notify) in config.notify.iter().enumerate() {
        let (name, sink): (String, Arc<dyn Deliver>) = match (&notify.sink, &slack, &campfire) {
            (SinkKind::Slack { channel }, Some(out), _) => (
                format!("slack {channel}"),
                Arc::new(ChatSink {
                    out: out.clone(),
                    place: channel.clone(),
                }),
            ),
            (SinkKind::Campfire { room }, _, Some(out)) => (
                format!("campfire room {room}"),
                Arc::new(ChatSink {
                    out: out.clone(),
                    place: room.to_string(),
                }),
            ),
            (
                SinkKind::Webhook {
                    url,
                    secret,
                    attempts,
                    timeouts,
                },
                _,
                _,
            ) => (
                format!("webhook #{}", n + 1),
                Arc::new(
                    WebhookSink::new(url, secret, *attempts, *timeouts)
                        .context("a notification webhook's client")?,
                ),
            ),
            // `zbot check` refuses a chat sink without its chat.
            _ => continue,
        };
        tasks.push(sinks::spawn(name, Filter::of(notify), sink, events));
    }
    if let (Some(out), Some(slack_config)) = (slack, &config.slack)
        && slack_config.dm_requester
    {
        tasks.push(sinks::spawn(
            "direct message".into(),
            Filter::ends(),
            Arc::new(slack::RequesterDm(out)),
            events,
        ));
    }
    Ok(tasks)
}

impl Running {
    /// Stops taking work, waits for running deploys (up to the grace period), and returns once chat
    /// has shown how they ended.
    ///
    /// The order matters: chat input stops first (the commands being handled finish, and may still
    /// create deployments whose webhooks arrive), then the listener and the queue, and chat closes
    /// last, after the notifier has shown every event the deploys published.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some((input, _)) = &self.slack {
            input.stop_input().await;
        }
        let _ = self.shutdown.send(true);
        if let Some(poller) = self.poller {
            poller.await.context("the poller task")?;
        }
        // Requests under way (a slow reader of a log page) get a few seconds, not the whole shutdown.
        let abort = self.server.abort_handle();
        match tokio::time::timeout(LISTENER_GRACE, self.server).await {
            Ok(served) => served
                .context("the listener task")?
                .context("the listener")?,
            Err(_) => {
                tracing::warn!("closing the connections still open after {LISTENER_GRACE:?}");
                abort.abort();
            }
        }
        self.queue.await.context("the queue task")?;
        if let Some(sweeper) = self.sweeper {
            sweeper.await.context("the sweeper task")?;
        }
        if let Some(auto) = self.autodeploy {
            auto.await.context("the auto-deploy task")?;
        }
        if let Some((_, notifier)) = self.slack {
            notifier.close().await;
        }
        if let Some(notifier) = self.campfire {
            notifier.close().await;
        }
        // A sink that is down holds nothing: what it has not sent is dropped.
        for sink in self.sinks {
            sink.abort();
        }
        Ok(())
    }
}
