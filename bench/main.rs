//! zbot's benchmarks, side by side with the tools people use instead, in one run on one machine.
//!
//! `bench/run` installs the references (Debian's `webhook`, npm's `hubot`), builds zbot and this binary
//! in release mode and runs it; it prints one Markdown table (zbot, the reference, their ratio), the
//! goal verdicts and a per-step trace of one deploy start, which `bench/run` puts into
//! `bench/README.md`. Every case is bounded in time and stops what it started. The fakes of GitHub and
//! Slack are the test suite's (`tests/it/fakes/`).
//!
//! Usage: `zbot-bench ZBOT WEBHOOK HUBOT_DIR FIXTURE WORK_DIR [--runs N]`: cases 1 and 2 (the goals on
//! throughput and deploy start) run N times in a row (default 1) and their spread is reported.
//! `ZBOT_BENCH_SCALE` (a factor, default 1) scales every count and size down for trying the cases
//! out; `ZBOT_BENCH_CASES` (case numbers, comma-separated) runs only those cases.

mod client;
/// The test suite's fakes of GitHub and Slack; the bench uses a part of them.
#[allow(dead_code)]
#[path = "../tests/it/fakes/mod.rs"]
mod fakes;
/// The Postgres server the tests use (std and libc only), for the case of two instances on one store.
#[path = "../tests/it/postgres.rs"]
mod postgres;
mod scale;
mod trace;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use client::Connection;
use fakes::github::FakeGitHub;
use fakes::slack::FakeSlack;
use fakes::wire::SECRET;

const CONNECTIONS: usize = 64;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `ZBOT_BENCH_SCALE`: every count and size is multiplied by it (default 1).
fn scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("ZBOT_BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| *s > 0.0)
            .unwrap_or(1.0)
    })
}

/// `n` scaled by `ZBOT_BENCH_SCALE`, at least 1.
fn scaled(n: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(1)
}

struct Args {
    zbot: PathBuf,
    webhook: PathBuf,
    hubot: PathBuf,
    fixture: Value,
    work: PathBuf,
    /// How many times cases 1 and 2 run in a row.
    runs: usize,
    /// Only these cases, when `ZBOT_BENCH_CASES` is set.
    cases: Option<Vec<u32>>,
}

impl Args {
    fn wants(&self, case: u32) -> bool {
        self.cases
            .as_ref()
            .is_none_or(|cases| cases.contains(&case))
    }
    fn sequential(&self) -> usize {
        scaled(1000)
    }
    fn load_time(&self) -> Duration {
        Duration::from_secs_f64(10.0 * scale())
    }
    fn starts(&self) -> usize {
        scaled(50)
    }
}

/// One line of the results table.
struct Row {
    case: &'static str,
    figure: String,
    zbot: String,
    reference: String,
    ratio: String,
}

fn row(
    case: &'static str,
    figure: &str,
    zbot: f64,
    reference: Option<(f64, &str)>,
    unit: &str,
) -> Row {
    let show = |v: f64| {
        if v.abs() >= 100.0 {
            format!("{v:.0} {unit}")
        } else {
            format!("{v:.2} {unit}")
        }
    };
    Row {
        case,
        figure: figure.to_string(),
        zbot: show(zbot),
        reference: reference.map_or_else(|| "—".into(), |(v, who)| format!("{} ({who})", show(v))),
        ratio: reference.map_or_else(|| "—".into(), |(v, _)| format!("{:.2}", zbot / v)),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// Rows of the p50 and the p99 of `latencies` (ms); `figure` names the row after the percentile.
fn percentile_rows(
    rows: &mut Vec<Row>,
    case: &'static str,
    latencies: Vec<f64>,
    figure: impl Fn(&str) -> String,
) {
    let latencies = sorted(latencies);
    for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
        rows.push(row(
            case,
            &figure(name),
            percentile(&latencies, p),
            None,
            "ms",
        ));
    }
}

/// The median of several runs' figures.
fn median(values: &[f64]) -> f64 {
    percentile(&sorted(values.to_vec()), 0.5)
}

/// Run-to-run spread: (largest − smallest) / median, in percent.
fn spread(values: &[f64]) -> f64 {
    let values = sorted(values.to_vec());
    match (values.first(), values.last()) {
        (Some(low), Some(high)) => (high - low) / median(&values) * 100.0,
        _ => f64::NAN,
    }
}

/// A child process stopped by its PID when dropped; its stderr lines are kept.
struct Process {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn kib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    }
    fn rss_mib(&self) -> f64 {
        self.kib("VmRSS:") / 1024.0
    }
    fn peak_mib(&self) -> f64 {
        self.kib("VmHWM:") / 1024.0
    }
    /// The stderr lines so far.
    fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@zbot.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@zbot.invalid")
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A repository with an executable `script/deploy`; returns (clone URL, sha of tag v1).
fn deploy_repo(dir: &Path, script: &str) -> Result<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("script"))?;
    git(dir, &["init", "--quiet", "--initial-branch=main"])?;
    std::fs::write(dir.join("script/deploy"), script)?;
    std::fs::set_permissions(
        dir.join("script/deploy"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    git(dir, &["add", "--all"])?;
    git(dir, &["commit", "--quiet", "-m", "v1"])?;
    git(dir, &["tag", "v1"])?;
    Ok((
        format!("file://{}", dir.display()),
        git(dir, &["rev-parse", "HEAD"])?,
    ))
}

/// An `[apps.NAME]` table of bot.toml.
fn app_table(name: &str, repository: &str, clone_url: &str) -> String {
    format!(
        "[apps.{name}]\nrepository = \"{repository}\"\nclone_url = \"{clone_url}\"\nenvironments = [\"production\"]\n"
    )
}

/// How zbot is started for a case.
struct Setup<'a> {
    github: &'a FakeGitHub,
    slack: Option<&'a FakeSlack>,
    /// The `[apps.*]` tables.
    apps: String,
    /// More bot.toml (a `[store]` table).
    extra: String,
    /// More environment (`RUST_LOG`, `GIT_TRACE2_EVENT`).
    env: Vec<(&'static str, String)>,
}

impl<'a> Setup<'a> {
    /// The app `bench` of repository `octo/bench` cloned from `clone_url`.
    fn new(github: &'a FakeGitHub, clone_url: &str) -> Setup<'a> {
        Setup {
            github,
            slack: None,
            apps: app_table("bench", "octo/bench", clone_url),
            extra: String::new(),
            env: Vec::new(),
        }
    }
}

/// Starts `zbot run` in `dir` as `setup` says, waiting until it listens.
fn start_zbot(args: &Args, dir: &Path, setup: &Setup) -> Result<Process> {
    std::fs::create_dir_all(dir.join("commands"))?;
    std::fs::write(
        dir.join("commands/shell.toml"),
        "description = \"script/deploy\"\nprogram = \"./script/deploy\"\n[detect]\nexecutables = [\"script/deploy\"]\n",
    )?;
    let mut config = format!(
        "[bot]\ndata_dir = \"data\"\n[github]\ntoken = \"ghp_bench\"\napi_url = \"{}\"\n\
         [webhook]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n[deploy]\nconcurrency = 4\n{}",
        setup.github.url(),
        setup.apps
    );
    if let Some(slack) = setup.slack {
        config.push_str(&fakes::slack::config_section(slack, ""));
    }
    config.push_str(&setup.extra);
    std::fs::write(dir.join("bot.toml"), config)?;
    let mut command = Command::new(&args.zbot);
    command
        .args(["--config", "bot.toml", "run"])
        .current_dir(dir)
        .env("RUST_LOG", "warn,zbot::app=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in &setup.env {
        command.env(name, value);
    }
    let mut child = command.spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if let Some(addr) = line
                .split("addr=")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
            {
                let _ = tx.send(addr.parse::<SocketAddr>().ok());
            }
            if let Ok(mut kept) = kept.lock() {
                kept.push(line);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))?
        .ok_or("zbot did not say where it listens")?;
    Ok(Process { child, addr, log })
}

/// What `webhook`'s hook script is given.
#[derive(Clone, Copy, PartialEq)]
enum HookArgs {
    /// The delivery id.
    Delivery,
    /// The delivery id and the deployment's sha.
    DeliveryAndSha,
}

/// Starts Debian's `webhook` with one hook running `script` on a signed `deployment` delivery.
fn start_webhook(args: &Args, dir: &Path, script: &Path, hook_args: HookArgs) -> Result<Process> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut pass = vec![json!({"source": "header", "name": "X-GitHub-Delivery"})];
    if hook_args == HookArgs::DeliveryAndSha {
        pass.push(json!({"source": "payload", "name": "deployment.sha"}));
    }
    let hooks = json!([{"id": "github-deploy", "execute-command": script, "command-working-directory": dir,
        "http-methods": ["POST"], "response-message": "accepted", "success-http-response-code": 202,
        "pass-arguments-to-command": pass,
        "trigger-rule": {"and": [
            {"match": {"type": "payload-hmac-sha256", "secret": SECRET, "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
            {"match": {"type": "value", "value": "deployment", "parameter": {"source": "header", "name": "X-GitHub-Event"}}}]},
        "trigger-rule-mismatch-http-response-code": 403}]);
    std::fs::write(dir.join("hooks.json"), hooks.to_string())?;
    let child = Command::new(&args.webhook)
        .args([
            "-hooks",
            "hooks.json",
            "-ip",
            "127.0.0.1",
            "-port",
            &port.to_string(),
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("webhook did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Process {
        child,
        addr,
        log: Arc::default(),
    })
}

/// The fixture `deployment` event as deployment `id` of `repository`.
fn delivery(fixture: &Value, id: u64, repository: &str, clone_url: &str, sha: &str) -> Vec<u8> {
    let mut event = fixture.clone();
    event["deployment"]["id"] = json!(id);
    event["deployment"]["ref"] = json!("v1");
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["environment"] = json!("production");
    event["deployment"]["payload"] = json!({});
    event["repository"]["full_name"] = json!(repository);
    event["repository"]["clone_url"] = json!(clone_url);
    serde_json::to_vec(&event).unwrap_or_default()
}

/// Case 1: sequential latency on one keep-alive connection, then throughput over 64 connections.
async fn webhook_load(
    args: &Args,
    addr: SocketAddr,
    path: &'static str,
    first_id: u64,
    clone_url: &str,
    sha: &str,
    together: Option<&tokio::sync::Barrier>,
) -> Result<(Vec<f64>, f64)> {
    let sequential = args.sequential();
    let mut connection = Connection::open(addr).await?;
    let mut latencies = Vec::with_capacity(sequential);
    for i in 0..sequential as u64 {
        let body = delivery(&args.fixture, first_id + i, "octo/bench", clone_url, sha);
        let started = Instant::now();
        let status = connection
            .deliver(
                path,
                "deployment",
                &format!("seq-{first_id}-{i}"),
                SECRET,
                &body,
            )
            .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 202 {
            return Err(format!("{path} answered {status}").into());
        }
    }
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(
        first_id + sequential as u64,
    ));
    // Loads measured side by side start their windows together, so their rates add up.
    if let Some(together) = together {
        together.wait().await;
    }
    let load_time = args.load_time();
    let until = Instant::now() + load_time;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (next_id, clone_url, sha) = (next_id.clone(), clone_url.to_string(), sha.to_string());
        let fixture = args.fixture.clone();
        workers.spawn(async move {
            let mut connection = Connection::open(addr).await?;
            let mut done = 0u64;
            while Instant::now() < until {
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = delivery(&fixture, id, "octo/bench", &clone_url, &sha);
                if connection
                    .deliver(path, "deployment", &format!("load-{id}"), SECRET, &body)
                    .await?
                    == 202
                {
                    done += 1;
                }
            }
            Result::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = workers.join_next().await {
        total += done??;
    }
    Ok((sorted(latencies), total as f64 / load_time.as_secs_f64()))
}

/// The script both tools run: its first statement records when it started.
fn start_script(dir: &Path, record: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("on-deploy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\necho \"$EPOCHREALTIME ${{ZBOT_DEPLOYMENT_ID:-$1}}\" >> {}\n",
            record.display()
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

/// The fair reference's hook script: moves a reused working tree to the sha as zbot does
/// (`git checkout --force` and `git clean -ffdx`), then starts the same recipe.
fn checkout_script(dir: &Path, tree: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("checkout-and-deploy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\ncd {} || exit 1\ngit checkout --quiet --force \"$2\" && git clean -ffdxq && exec ./script/deploy \"$1\"\n",
            tree.display()
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

/// When the script recorded `id` as started, waiting up to 10 s.
fn started_at(record: &Path, id: &str) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(record).unwrap_or_default();
        if let Some(t) = text.lines().find_map(|l| {
            l.split_once(' ')
                .filter(|(_, i)| *i == id)
                .map(|(t, _)| t.to_string())
        }) {
            return Ok(t.parse()?);
        }
        if Instant::now() > deadline {
            return Err(format!("{id} never started").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The wall-clock time (seconds since the epoch) of a past `Instant`.
fn epoch_of(at: Instant) -> f64 {
    epoch() - at.elapsed().as_secs_f64()
}

/// Case 2: webhook sent → first statement of the deploy command, sequentially.
async fn deploy_starts(
    args: &Args,
    addr: SocketAddr,
    path: &'static str,
    record: &Path,
    ids: impl Fn(u64) -> (u64, String),
    clone_url: &str,
    sha: &str,
) -> Result<Vec<f64>> {
    let mut connection = Connection::open(addr).await?;
    let mut latencies = Vec::new();
    // One warm-up start (it fills zbot's repository cache and working tree).
    for i in 0..=args.starts() as u64 {
        let (id, delivery_id) = ids(i);
        let body = delivery(&args.fixture, id, "octo/bench", clone_url, sha);
        let sent = epoch();
        connection
            .deliver(path, "deployment", &delivery_id, SECRET, &body)
            .await?;
        let marker = if path == "/hooks/github-deploy" {
            delivery_id
        } else {
            id.to_string()
        };
        let started = started_at(record, &marker)?;
        if i > 0 {
            latencies.push((started - sent) * 1000.0);
        }
        // Let the deploy end before the next one, so each start is measured alone.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(sorted(latencies))
}

/// Case 5: a repository of a real one's size (scaled by `ZBOT_BENCH_SCALE`): its origin's path.
fn large_repository(dir: &Path) -> Result<PathBuf> {
    let origin = dir.join("big.git");
    git(dir, &["init", "--quiet", "--bare", "big.git"])?;
    let mut stream = String::new();
    let (files, commits, pulls) = (scaled(3000), scaled(20_000), scaled(3000));
    for commit in 1..=commits {
        stream.push_str(&format!("commit refs/heads/main\nmark :{commit}\ncommitter bench <b@zbot.invalid> {} +0000\ndata 10\ncommit {:03}\n", 1_700_000_000 + commit, commit % 1000));
        if commit == 1 {
            for f in 0..files {
                let content = format!("file {f}\n{}\n", "x".repeat(1500));
                stream.push_str(&format!(
                    "M 644 inline src/m{}/f{f}.txt\ndata {}\n{content}\n",
                    f % 50,
                    content.len()
                ));
            }
        } else {
            stream.push_str(&format!("from :{}\n", commit - 1));
            let f = commit % files;
            let content = format!("file {f} at {commit}\n");
            stream.push_str(&format!(
                "M 644 inline src/m{}/f{f}.txt\ndata {}\n{content}\n",
                f % 50,
                content.len()
            ));
        }
    }
    for pull in 1..=pulls {
        stream.push_str(&format!(
            "reset refs/pull/{pull}/head\nfrom :{}\n\n",
            (pull * 7) % commits + 1
        ));
    }
    stream.push_str(&format!("reset refs/tags/v1\nfrom :{commits}\n\n"));
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&origin)
        .stdin(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(stream.as_bytes())?;
    if !child.wait()?.success() {
        return Err("git fast-import failed".into());
    }
    Ok(origin)
}

/// Adds the next release (one changed file) to the origin; its sha.
fn next_release(origin: &Path) -> Result<String> {
    let stream = "commit refs/heads/main\ncommitter bench <b@zbot.invalid> 1800000000 +0000\ndata 7\nrelease\nfrom refs/heads/main^0\nM 644 inline RELEASE\ndata 3\nv2\n\nreset refs/tags/v2\nfrom refs/heads/main^0\n\n";
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(origin)
        .stdin(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(stream.as_bytes())?;
    child.wait()?;
    git(origin, &["rev-parse", "v2^{commit}"])
}

fn seconds(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// Returns (zbot, Heaven) seconds.
async fn checkout_case(args: &Args, rows: &mut Vec<Row>) -> Result<(f64, f64)> {
    let dir = args.work.join("checkout");
    std::fs::create_dir_all(&dir)?;
    let origin = large_repository(&dir)?;
    let url = format!("file://{}", origin.display());
    let v1 = git(&origin, &["rev-parse", "v1^{commit}"])?;
    // zbot: cache and tree warm at v1.
    let checkouts =
        zbot::runner::checkout::Checkouts::new(&dir.join("zbot-data"), &dir.join("zbot-work"));
    let auth = zbot::runner::checkout::GitAuth::default();
    let (repository, app, environment): (
        zbot::domain::Repository,
        zbot::domain::AppName,
        zbot::domain::Environment,
    ) = ("octo/big".parse()?, "big".parse()?, "production".parse()?);
    let v1: zbot::domain::Sha = v1.parse()?;
    checkouts
        .prepare(&repository, &url, &v1, &app, &environment, &auth)
        .await?;
    // Heaven: one shared checkout, cloned at v1.
    git(&dir, &["clone", "--quiet", &url, "heaven"])?;
    let v2 = next_release(&origin)?;

    let started = Instant::now();
    let v2: zbot::domain::Sha = v2.parse()?;
    checkouts
        .prepare(&repository, &url, &v2, &app, &environment, &auth)
        .await?;
    let zbot_warm = seconds(started);

    let started = Instant::now();
    git(&dir.join("heaven"), &["fetch", "--quiet"])?;
    git(
        &dir.join("heaven"),
        &["reset", "--quiet", "--hard", v2.as_str()],
    )?;
    let heaven = seconds(started);

    let started = Instant::now();
    git(&dir, &["clone", "--quiet", "--no-checkout", &url, "fresh"])?;
    git(&dir.join("fresh"), &["checkout", "--quiet", v2.as_str()])?;
    let fresh = seconds(started);

    rows.push(row(
        "5 checkout",
        "next release ready, vs a fresh clone",
        zbot_warm,
        Some((fresh, "git clone")),
        "s",
    ));
    rows.push(row(
        "5 checkout",
        "next release ready, vs fetch + reset --hard",
        zbot_warm,
        Some((heaven, "Heaven's shared checkout")),
        "s",
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok((zbot_warm, heaven))
}

/// The cost of one durable write on this disk: what zbot pays before each 202.
fn fsync_ms(dir: &Path) -> Result<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::File::create(dir.join("fsync-probe"))?;
    let mut times = Vec::new();
    for _ in 0..200 {
        file.write_all(&[b'x'; 512])?;
        let started = Instant::now();
        file.sync_data()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(percentile(&sorted(times), 0.5))
}

/// Cases 1, 2 and 3 of one run: the webhook listener under load, deploy starts, memory.
struct Race {
    zbot_latency: Vec<f64>,
    zbot_rps: f64,
    zbot_idle: f64,
    zbot_after: f64,
    webhook_latency: Vec<f64>,
    webhook_rps: f64,
    webhook_idle: f64,
    webhook_after: f64,
    zbot_starts: Vec<f64>,
    webhook_starts: Vec<f64>,
    fair_starts: Vec<f64>,
}

async fn race(args: &Args, github: &FakeGitHub, run: usize) -> Result<Race> {
    let work = args.work.join(format!("run{run}"));
    // Cases 1 and 3: the webhook listener under load, and memory (Slack connected).
    let slack = FakeSlack::start().await;
    let dir = work.join("case1-zbot");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let zbot = start_zbot(
        args,
        &dir,
        &Setup {
            slack: Some(&slack),
            ..Setup::new(github, &clone_url)
        },
    )?;
    slack
        .wait_for("zbot to connect to Slack", Duration::from_secs(10), |s| {
            (s.connections() > 0).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let zbot_idle = zbot.rss_mib();
    let (zbot_latency, zbot_rps) = webhook_load(
        args,
        zbot.addr,
        "/webhooks/github",
        1,
        &clone_url,
        &sha,
        None,
    )
    .await?;
    let zbot_after = zbot.rss_mib();
    drop(zbot);

    let wdir = work.join("case1-webhook");
    std::fs::create_dir_all(&wdir)?;
    let script = start_script(&wdir, &wdir.join("starts"))?;
    let webhook = start_webhook(args, &wdir, &script, HookArgs::Delivery)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let webhook_idle = webhook.rss_mib();
    let (webhook_latency, webhook_rps) = webhook_load(
        args,
        webhook.addr,
        "/hooks/github-deploy",
        1,
        &clone_url,
        &sha,
        None,
    )
    .await?;
    let webhook_after = webhook.rss_mib();
    drop(webhook);

    // Case 2: webhook → the deploy command's first statement.
    let dir = work.join("case2-zbot");
    std::fs::create_dir_all(&dir)?;
    let record = dir.join("starts");
    let script = std::fs::read_to_string(start_script(&dir, &record)?)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), &script)?;
    let zbot = start_zbot(args, &dir, &Setup::new(github, &clone_url))?;
    let zbot_starts = deploy_starts(
        args,
        zbot.addr,
        "/webhooks/github",
        &record,
        |i| (10_000 + i, format!("start-{i}")),
        &clone_url,
        &sha,
    )
    .await?;
    drop(zbot);
    let wdir = work.join("case2-webhook");
    std::fs::create_dir_all(&wdir)?;
    let wrecord = wdir.join("starts");
    let wscript = start_script(&wdir, &wrecord)?;
    let webhook = start_webhook(args, &wdir, &wscript, HookArgs::Delivery)?;
    let webhook_starts = deploy_starts(
        args,
        webhook.addr,
        "/hooks/github-deploy",
        &wrecord,
        |i| (20_000 + i, format!("start-{i}")),
        &clone_url,
        &sha,
    )
    .await?;
    drop(webhook);
    // The fair reference: a reused working tree moved to the sha, then the same recipe.
    let fdir = work.join("case2-fair");
    std::fs::create_dir_all(&fdir)?;
    git(&fdir, &["clone", "--quiet", &clone_url, "tree"])?;
    let fscript = checkout_script(&fdir, &fdir.join("tree"))?;
    let fair = start_webhook(args, &fdir, &fscript, HookArgs::DeliveryAndSha)?;
    let fair_starts = deploy_starts(
        args,
        fair.addr,
        "/hooks/github-deploy",
        &record,
        |i| (30_000 + i, format!("fair-start-{i}")),
        &clone_url,
        &sha,
    )
    .await?;
    drop(fair);
    let _ = std::fs::remove_dir_all(&work);
    Ok(Race {
        zbot_latency,
        zbot_rps,
        zbot_idle,
        zbot_after,
        webhook_latency,
        webhook_rps,
        webhook_idle,
        webhook_after,
        zbot_starts,
        webhook_starts,
        fair_starts,
    })
}

/// What `zbot-bench` prints: the table, the goal verdicts, the trace of one deploy start.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    goals: Vec<String>,
    trace: Vec<String>,
}

/// The median over the runs of `figure` of each run.
fn over(races: &[Race], figure: impl Fn(&Race) -> f64) -> f64 {
    median(&races.iter().map(figure).collect::<Vec<_>>())
}

/// The figure of each run.
fn each(races: &[Race], figure: impl Fn(&Race) -> f64) -> Vec<f64> {
    races.iter().map(figure).collect()
}

/// Rows and goals of cases 1 and 2 over all runs.
fn race_report(args: &Args, races: &[Race], fsync: f64, report: &mut Report) {
    let runs = races.len();
    let of = if runs > 1 {
        format!(", median of {runs} runs")
    } else {
        String::new()
    };
    let sequential = args.sequential();
    let rows = &mut report.rows;
    for (p, name) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
        rows.push(row(
            "1 webhook → response",
            &format!("{name} of {sequential} sequential{of}"),
            over(races, |r| percentile(&r.zbot_latency, p)),
            Some((
                over(races, |r| percentile(&r.webhook_latency, p)),
                "webhook",
            )),
            "ms",
        ));
    }
    let non_fsync = |r: &Race| percentile(&r.zbot_latency, 0.5) - fsync;
    rows.push(row(
        "1 webhook → response",
        &format!("non-fsync share: p50 − one fsync p50, vs webhook's p50{of}"),
        over(races, non_fsync),
        Some((
            over(races, |r| percentile(&r.webhook_latency, 0.5)),
            "webhook",
        )),
        "ms",
    ));
    rows.push(row(
        "1 webhook → response",
        &format!("throughput, {CONNECTIONS} connections{of}"),
        over(races, |r| r.zbot_rps),
        Some((over(races, |r| r.webhook_rps), "webhook")),
        "req/s",
    ));
    if runs > 1 {
        rows.push(row(
            "1 webhook → response",
            &format!("throughput, spread over {runs} runs (largest − smallest) / median"),
            spread(&each(races, |r| r.zbot_rps)),
            Some((spread(&each(races, |r| r.webhook_rps)), "webhook")),
            "%",
        ));
    }
    let starts = args.starts();
    for (p, name) in [(0.5, "p50"), (0.9, "p90")] {
        rows.push(row(
            "2 webhook → deploy start",
            &format!("{name} of {starts}, vs a checkout and the recipe{of}"),
            over(races, |r| percentile(&r.zbot_starts, p)),
            Some((
                over(races, |r| percentile(&r.fair_starts, p)),
                "webhook + checkout",
            )),
            "ms",
        ));
        rows.push(row(
            "2 webhook → deploy start",
            &format!("{name} of {starts}, vs the recipe alone{of}"),
            over(races, |r| percentile(&r.zbot_starts, p)),
            Some((over(races, |r| percentile(&r.webhook_starts, p)), "webhook")),
            "ms",
        ));
    }
    if runs > 1 {
        rows.push(row(
            "2 webhook → deploy start",
            &format!("p50, spread over {runs} runs (largest − smallest) / median"),
            spread(&each(races, |r| percentile(&r.zbot_starts, 0.5))),
            Some((
                spread(&each(races, |r| percentile(&r.fair_starts, 0.5))),
                "webhook + checkout",
            )),
            "%",
        ));
    }
    report.goals.push(goal_runs(
        "webhook answer's non-fsync share (p50 − one fsync p50) at most half of webhook's p50",
        &each(races, non_fsync),
        &each(races, |r| 0.5 * percentile(&r.webhook_latency, 0.5)),
        "ms",
        true,
    ));
    report.goals.push(goal_runs(
        "throughput at least twice webhook's",
        &each(races, |r| r.zbot_rps),
        &each(races, |r| 2.0 * r.webhook_rps),
        "req/s",
        false,
    ));
    report.goals.push(goal_runs(
        "webhook → deploy start p50 no slower than webhook moving a working tree and starting the recipe",
        &each(races, |r| percentile(&r.zbot_starts, 0.5)),
        &each(races, |r| percentile(&r.fair_starts, 0.5)),
        "ms",
        true,
    ));
    report.goals.push(goal_runs(
        "webhook → deploy start p50 no slower than webhook starting the recipe alone",
        &each(races, |r| percentile(&r.zbot_starts, 0.5)),
        &each(races, |r| percentile(&r.webhook_starts, 0.5)),
        "ms",
        true,
    ));
}

async fn run(args: Args) -> Result<Report> {
    let mut report = Report::default();
    let fsync = fsync_ms(&args.work)?;
    report.rows.push(row(
        "0 machine",
        "one fsync of a small write, p50",
        fsync,
        None,
        "ms",
    ));
    let github = FakeGitHub::start().await;

    let mut races = Vec::new();
    if [1, 2, 3, 7].iter().any(|c| args.wants(*c)) {
        for run in 0..args.runs {
            races.push(race(&args, &github, run).await?);
        }
        race_report(&args, &races, fsync, &mut report);
    }
    if let Some(first) = races.first()
        && args.wants(7)
    {
        // Case 7: two instances on one Postgres, every delivery sent to one of them (a load
        // balancer), beside the one instance on SQLite of the first run above.
        let (pg_latency, pg_rps, pg_starts) = two_instances_case(&args, &github).await?;
        let sequential = args.sequential();
        report.rows.push(row(
            "7 two instances on Postgres",
            &format!("webhook → response p50 of {sequential} sequential, per instance"),
            percentile(&pg_latency, 0.5),
            Some((percentile(&first.zbot_latency, 0.5), "one zbot on SQLite")),
            "ms",
        ));
        report.rows.push(row(
            "7 two instances on Postgres",
            &format!("throughput, {CONNECTIONS} connections to each"),
            pg_rps,
            Some((first.zbot_rps, "one zbot on SQLite")),
            "req/s",
        ));
        for (p, name) in [(0.5, "p50"), (0.9, "p90")] {
            report.rows.push(row(
                "7 two instances on Postgres",
                &format!("webhook → deploy start {name} of {}", args.starts()),
                percentile(&pg_starts, p),
                Some((percentile(&first.zbot_starts, p), "one zbot on SQLite")),
                "ms",
            ));
        }
    }
    if let Some(first) = races.first()
        && args.wants(3)
    {
        memory_case(&args, first, &mut report)?;
    }
    if args.wants(4) {
        // Case 4: a deploy printing 1 GiB.
        chatty_case(&args, &github, &mut report).await?;
    }
    if args.wants(5) {
        // Case 5: checkout of a large repository.
        let (zbot_checkout, heaven_checkout) = checkout_case(&args, &mut report.rows).await?;
        report.goals.push(goal(
            "warm checkout no slower than Heaven's fetch + reset",
            zbot_checkout,
            heaven_checkout,
            "s",
            true,
        ));
    }
    if args.wants(6) {
        // Case 6: Socket Mode envelope → POST /deployments, one command at a time.
        chat_case(&args, &mut report.rows).await?;
    }
    if args.wants(8) {
        report.trace = trace::deploy_start(&args).await?;
    }
    if args.wants(9) {
        scale::queue_case(&args, &mut report).await?;
    }
    if args.wants(10) {
        scale::burst_case(&args, &mut report).await?;
    }
    if args.wants(11) {
        scale::mention_case(&args, &mut report.rows).await?;
    }
    Ok(report)
}

/// Case 3: idle memory beside `webhook` and Hubot (when installed), and after the throughput run.
fn memory_case(args: &Args, first: &Race, report: &mut Report) -> Result<()> {
    report.rows.push(row(
        "3 memory",
        "idle (Slack connected, listener up)",
        first.zbot_idle,
        Some((first.webhook_idle, "webhook")),
        "MiB",
    ));
    let hubot_idle = if args.hubot.join("node_modules/.bin/hubot").exists() {
        Some(hubot_rss(args)?)
    } else {
        None
    };
    if let Some(hubot_idle) = hubot_idle {
        report.rows.push(row(
            "3 memory",
            "idle, vs a chat bot",
            first.zbot_idle,
            Some((hubot_idle, "Hubot 14, shell adapter")),
            "MiB",
        ));
    }
    report.rows.push(row(
        "3 memory",
        "after the throughput run",
        first.zbot_after,
        Some((first.webhook_after, "webhook")),
        "MiB",
    ));
    report.goals.push(goal(
        "idle memory no more than webhook's",
        first.zbot_idle,
        first.webhook_idle,
        "MiB",
        true,
    ));
    if let Some(hubot_idle) = hubot_idle {
        report.goals.push(goal(
            "idle memory under a fifth of Hubot's",
            first.zbot_idle,
            hubot_idle / 5.0,
            "MiB",
            true,
        ));
    }
    report.goals.push(goal(
        "memory after the throughput run at most 64 MiB",
        first.zbot_after,
        64.0,
        "MiB",
        true,
    ));
    Ok(())
}

/// Case 7: two `zbot run` on one Postgres (a fresh database per part): (latencies of the first
/// instance's sequential deliveries, the two instances' summed throughput, webhook → deploy start with
/// deliveries sent to the first while both serve the queue).
async fn two_instances_case(args: &Args, github: &FakeGitHub) -> Result<(Vec<f64>, f64, Vec<f64>)> {
    let store = || format!("[store]\nurl = \"{}\"\n", postgres::database());
    let dir = args.work.join("case7-load");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let setup = Setup {
        extra: store(),
        ..Setup::new(github, &clone_url)
    };
    let a = start_zbot(args, &dir.join("a"), &setup)?;
    let b = start_zbot(args, &dir.join("b"), &setup)?;
    let together = tokio::sync::Barrier::new(2);
    let (on_a, on_b) = tokio::join!(
        webhook_load(
            args,
            a.addr,
            "/webhooks/github",
            1_000_000,
            &clone_url,
            &sha,
            Some(&together),
        ),
        webhook_load(
            args,
            b.addr,
            "/webhooks/github",
            2_000_000,
            &clone_url,
            &sha,
            Some(&together),
        ),
    );
    let ((latency, rps_a), (_, rps_b)) = (on_a?, on_b?);
    drop((a, b));

    let dir = args.work.join("case7-starts");
    std::fs::create_dir_all(&dir)?;
    let record = dir.join("starts");
    let script = std::fs::read_to_string(start_script(&dir, &record)?)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), &script)?;
    let setup = Setup {
        extra: store(),
        ..Setup::new(github, &clone_url)
    };
    let a = start_zbot(args, &dir.join("a"), &setup)?;
    let b = start_zbot(args, &dir.join("b"), &setup)?;
    let starts = deploy_starts(
        args,
        a.addr,
        "/webhooks/github",
        &record,
        |i| (40_000 + i, format!("pg-start-{i}")),
        &clone_url,
        &sha,
    )
    .await?;
    drop((a, b));
    Ok((latency, rps_a + rps_b, starts))
}

/// One goal from the issue, judged on this run: met, or by how much it is missed.
fn goal(what: &str, zbot: f64, limit: f64, unit: &str, at_most: bool) -> String {
    let met = if at_most {
        zbot <= limit
    } else {
        zbot >= limit
    };
    let miss = if at_most {
        zbot / limit - 1.0
    } else {
        1.0 - zbot / limit
    };
    if met {
        format!("- met: {what} ({zbot:.2} {unit}; limit {limit:.2} {unit})")
    } else {
        format!(
            "- **not met**: {what} ({zbot:.2} {unit}; limit {limit:.2} {unit}; missed by {:.0}%)",
            miss * 100.0
        )
    }
}

/// One goal judged on each of several runs in a row: met only when met on every run.
fn goal_runs(what: &str, zbot: &[f64], limits: &[f64], unit: &str, at_most: bool) -> String {
    if let ([zbot], [limit]) = (zbot, limits) {
        return goal(what, *zbot, *limit, unit, at_most);
    }
    let met = zbot
        .iter()
        .zip(limits)
        .filter(|(z, l)| if at_most { z <= l } else { z >= l })
        .count();
    let runs: Vec<String> = zbot
        .iter()
        .zip(limits)
        .map(|(z, l)| format!("{z:.2} against {l:.2}"))
        .collect();
    let tally = format!("met on {met} of {} runs", zbot.len());
    let verdict = if met == zbot.len() {
        tally
    } else {
        format!("**not met** ({tally})")
    };
    format!(
        "- {verdict}: {what} (zbot against the limit, {unit}: {}; zbot's spread {:.1}%)",
        runs.join(", "),
        spread(zbot)
    )
}

fn hubot_rss(args: &Args) -> Result<f64> {
    let hubot = args.hubot.join("node_modules/.bin/hubot");
    let mut child = Command::new(hubot)
        .args(["--adapter", "Shell", "--name", "hubot"])
        .current_dir(&args.hubot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(4));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .ok_or("hubot is not running")?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(rss / 1024.0)
}

/// Case 4: a deploy printing 1 GiB (scaled): peak memory above idle, recipe exit → final status.
async fn chatty_case(args: &Args, github: &FakeGitHub, report: &mut Report) -> Result<()> {
    let dir = args.work.join("case4");
    std::fs::create_dir_all(&dir)?;
    let exited = dir.join("exited");
    let bytes = scaled(1 << 30);
    let script = format!(
        "#!/bin/bash\nhead -c {bytes} /dev/zero | tr '\\0' x | fold -w 1023\necho\necho \"$EPOCHREALTIME\" > {}\n",
        exited.display()
    );
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), &script)?;
    let zbot = start_zbot(args, &dir, &Setup::new(github, &clone_url))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = zbot.rss_mib();
    let mut connection = Connection::open(zbot.addr).await?;
    let id = 50_000;
    connection
        .deliver(
            "/webhooks/github",
            "deployment",
            "chatty",
            SECRET,
            &delivery(&args.fixture, id, "octo/bench", &clone_url, &sha),
        )
        .await?;
    let last = github.final_status(id, Duration::from_secs(300)).await;
    if last.state != "success" {
        return Err(format!("the 1 GiB deploy ended {}", last.state).into());
    }
    let exit: f64 = std::fs::read_to_string(&exited)?.trim().parse()?;
    let peak = zbot.peak_mib() - idle;
    let log = std::fs::metadata(dir.join(format!("data/logs/{id}.log")))?.len();
    drop(zbot);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    report.rows.push(row(
        "4 1 GiB deploy",
        "peak memory above idle",
        peak,
        None,
        "MiB",
    ));
    report.rows.push(row(
        "4 1 GiB deploy",
        "recipe exit → final status",
        (epoch_of(last.at) - exit) * 1000.0,
        None,
        "ms",
    ));
    report.rows.push(row(
        "4 1 GiB deploy",
        &format!("log on disk (GiB, output {gib:.2} GiB + time stamps)"),
        log as f64 / (1u64 << 30) as f64,
        None,
        "GiB",
    ));
    report.goals.push(goal(
        "memory during the 1 GiB deploy at most 16 MiB above idle",
        peak,
        16.0,
        "MiB",
        true,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// When each `POST …/deployments` arrived at the fake GitHub, with its path.
fn deployment_posts(github: &FakeGitHub) -> Vec<(Instant, String)> {
    github
        .requests()
        .into_iter()
        .filter(|(_, call)| call.starts_with("POST ") && call.ends_with("/deployments"))
        .collect()
}

/// Case 6: a Socket Mode mention → `POST …/deployments` at the fake GitHub, one command at a time.
async fn chat_case(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let dir = args.work.join("case6");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, _) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let github = FakeGitHub::start().await;
    github.create_deployments_in(&dir.join("repo"));
    let slack = FakeSlack::start().await;
    let apps = app_table("bench", "octo/bench", &clone_url);
    let zbot = scale::chat_zbot(args, &dir, &github, &slack, apps).await?;
    let commands = scaled(200);
    let mut latencies = Vec::new();
    for n in 1..=commands {
        let sent = Instant::now();
        scale::say(&slack, n, "deploy bench/v1 to production");
        let arrived = github
            .wait_for("the deployment", Duration::from_secs(10), |g| {
                deployment_posts(g).get(n - 1).map(|(at, _)| *at)
            })
            .await;
        latencies.push(arrived.duration_since(sent).as_secs_f64() * 1000.0);
    }
    drop(zbot);
    percentile_rows(rows, "6 chat → deployment", latencies, |name| {
        format!("{name} of {commands} commands, one at a time")
    });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let argv: Vec<String> = std::env::args().collect();
    let runs = match argv.get(6..) {
        Some([]) | None => Some(1),
        Some([flag, n]) if flag == "--runs" => n.parse().ok().filter(|n| *n > 0),
        Some(_) => None,
    };
    let (Some(runs), true) = (runs, argv.len() >= 6) else {
        eprintln!("usage: zbot-bench ZBOT WEBHOOK HUBOT_DIR FIXTURE WORK_DIR [--runs N]");
        return std::process::ExitCode::from(2);
    };
    let fixture = match std::fs::read_to_string(&argv[4])
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(fixture) => fixture,
        Err(e) => {
            eprintln!("cannot read the fixture {}: {e}", argv[4]);
            return std::process::ExitCode::FAILURE;
        }
    };
    let cases = std::env::var("ZBOT_BENCH_CASES").ok().map(|list| {
        list.split(',')
            .filter_map(|c| c.trim().parse().ok())
            .collect()
    });
    let args = Args {
        zbot: PathBuf::from(&argv[1]),
        webhook: PathBuf::from(&argv[2]),
        hubot: PathBuf::from(&argv[3]),
        fixture,
        work: PathBuf::from(&argv[5]),
        runs,
        cases,
    };
    match run(args).await {
        Ok(report) => {
            println!("| case | figure | zbot | reference | ratio zbot/reference |");
            println!("|---|---|---|---|---|");
            for r in report.rows {
                println!(
                    "| {} | {} | {} | {} | {} |",
                    r.case, r.figure, r.zbot, r.reference, r.ratio
                );
            }
            if scale() < 1.0 {
                println!(
                    "\nGoals, judged on this run (indicative only: counts scaled by {}):\n",
                    scale()
                );
            } else {
                println!("\nGoals, judged on this run:\n");
            }
            for g in report.goals {
                println!("{g}");
            }
            if !report.trace.is_empty() {
                println!();
                for line in report.trace {
                    println!("{line}");
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_range_over_the_median() {
        for (values, expected) in [
            (vec![100.0, 100.0, 100.0], 0.0),
            (vec![90.0, 100.0, 110.0], 20.0),
            (vec![110.0, 90.0, 100.0], 20.0),
        ] {
            assert!((spread(&values) - expected).abs() < 1e-9, "{values:?}");
        }
    }

    #[test]
    fn a_goal_over_runs_is_met_only_on_every_run() {
        for (zbot, limits, at_most, verdict) in [
            (
                vec![1.0, 2.0, 3.0],
                vec![3.0, 3.0, 3.0],
                true,
                "- met on 3 of 3 runs",
            ),
            (
                vec![1.0, 4.0, 3.0],
                vec![3.0, 3.0, 3.0],
                true,
                "- **not met** (met on 2 of 3 runs)",
            ),
            (
                vec![5.0, 6.0],
                vec![4.0, 7.0],
                false,
                "- **not met** (met on 1 of 2 runs)",
            ),
            (vec![2.0], vec![1.0], false, "- met: "),
        ] {
            let said = goal_runs("x", &zbot, &limits, "ms", at_most);
            assert!(said.starts_with(verdict), "{said}");
        }
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let values = sorted((1..=100).map(f64::from).rev().collect());
        for (p, expected) in [(0.0, 1.0), (0.5, 51.0), (0.99, 99.0), (1.0, 100.0)] {
            assert_eq!(percentile(&values, p), expected);
        }
        assert!(percentile(&[], 0.5).is_nan());
    }
}
