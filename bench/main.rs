//! zbot's benchmarks, side by side with the tools people use instead, in one run on one machine.
//!
//! `bench/run` installs the references (Debian's `webhook`, npm's `hubot`), builds zbot and this binary
//! in release mode and runs it; it prints one Markdown table (zbot, the reference, their ratio) that
//! `bench/run` puts into `bench/README.md`. Every case is bounded in time and stops what it started.
//!
//! Usage: `zbot-bench ZBOT WEBHOOK HUBOT_DIR FIXTURE WORK_DIR`

mod client;
mod fakes;
/// The Postgres server the tests use (std and libc only), for the case of two instances on one store.
#[path = "../tests/it/postgres.rs"]
mod postgres;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use client::Connection;
use fakes::{FakeGitHub, FakeSlack};

const SECRET: &str = "bench-webhook-secret-0123456789";
const SEQUENTIAL: usize = 1000;
const CONNECTIONS: usize = 64;
const LOAD_TIME: Duration = Duration::from_secs(10);
const STARTS: usize = 50;
const COMMANDS: u64 = 200;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    zbot: PathBuf,
    webhook: PathBuf,
    hubot: PathBuf,
    fixture: Value,
    work: PathBuf,
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
        if v >= 100.0 {
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
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

/// A child process stopped by its PID when dropped.
struct Process {
    child: Child,
    addr: SocketAddr,
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

/// Starts `zbot run` in `dir` with a bot.toml for the bench app, waiting until it listens.
fn start_zbot(
    args: &Args,
    dir: &Path,
    github: &FakeGitHub,
    slack: Option<&FakeSlack>,
    clone_url: &str,
) -> Result<Process> {
    start_zbot_with(args, dir, github, slack, clone_url, "")
}

/// `start_zbot` with `extra` appended to its bot.toml (a `[store]` table).
fn start_zbot_with(
    args: &Args,
    dir: &Path,
    github: &FakeGitHub,
    slack: Option<&FakeSlack>,
    clone_url: &str,
    extra: &str,
) -> Result<Process> {
    std::fs::create_dir_all(dir.join("commands"))?;
    std::fs::write(
        dir.join("commands/shell.toml"),
        "description = \"script/deploy\"\nprogram = \"./script/deploy\"\n[detect]\nexecutables = [\"script/deploy\"]\n",
    )?;
    let mut config = format!(
        "[bot]\ndata_dir = \"data\"\n[github]\ntoken = \"ghp_bench\"\napi_url = \"{}\"\n\
         [webhook]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n[deploy]\nconcurrency = 4\n\
         [apps.bench]\nrepository = \"octo/bench\"\nclone_url = \"{clone_url}\"\nenvironments = [\"production\"]\n",
        github.url()
    );
    if let Some(slack) = slack {
        config.push_str(&format!(
            "[slack]\napp_token = \"xapp-1-bench\"\nbot_token = \"xoxb-bench\"\napi_url = \"{}\"\n",
            slack.api_url()
        ));
    }
    config.push_str(extra);
    std::fs::write(dir.join("bot.toml"), config)?;
    let mut child = Command::new(&args.zbot)
        .args(["--config", "bot.toml", "run"])
        .current_dir(dir)
        .env("RUST_LOG", "warn,zbot::app=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
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
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))?
        .ok_or("zbot did not say where it listens")?;
    Ok(Process { child, addr })
}

/// Starts Debian's `webhook` with one hook running `script` on a signed `deployment` delivery.
fn start_webhook(args: &Args, dir: &Path, script: &Path) -> Result<Process> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let hooks = json!([{"id": "github-deploy", "execute-command": script, "command-working-directory": dir,
        "http-methods": ["POST"], "response-message": "accepted", "success-http-response-code": 202,
        "pass-arguments-to-command": [{"source": "header", "name": "X-GitHub-Delivery"}],
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
    Ok(Process { child, addr })
}

/// The fixture `deployment` event as deployment `id` of the bench app.
fn delivery(fixture: &Value, id: u64, clone_url: &str, sha: &str) -> Vec<u8> {
    let mut event = fixture.clone();
    event["deployment"]["id"] = json!(id);
    event["deployment"]["ref"] = json!("v1");
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["environment"] = json!("production");
    event["deployment"]["payload"] = json!({});
    event["repository"]["full_name"] = json!("octo/bench");
    event["repository"]["clone_url"] = json!(clone_url);
    serde_json::to_vec(&event).expect("JSON")
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
    let mut connection = Connection::open(addr).await?;
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL as u64 {
        let body = delivery(&args.fixture, first_id + i, clone_url, sha);
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
    let next_id = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
        first_id + SEQUENTIAL as u64,
    ));
    // Loads measured side by side start their windows together, so their rates add up.
    if let Some(together) = together {
        together.wait().await;
    }
    let until = Instant::now() + LOAD_TIME;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (next_id, clone_url, sha) = (next_id.clone(), clone_url.to_string(), sha.to_string());
        let fixture = args.fixture.clone();
        workers.spawn(async move {
            let mut connection = Connection::open(addr).await?;
            let mut done = 0u64;
            while Instant::now() < until {
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = delivery(&fixture, id, &clone_url, &sha);
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
    Ok((sorted(latencies), total as f64 / LOAD_TIME.as_secs_f64()))
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
    for i in 0..=STARTS as u64 {
        let (id, delivery_id) = ids(i);
        let body = delivery(&args.fixture, id, clone_url, sha);
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

/// Case 5: a repository of a real one's size: (origin path, sha of v1, sha of v2 once added).
fn large_repository(dir: &Path) -> Result<PathBuf> {
    let origin = dir.join("big.git");
    git(dir, &["init", "--quiet", "--bare", "big.git"])?;
    let mut stream = String::new();
    const FILES: usize = 3000;
    const COMMITS: usize = 20_000;
    for commit in 1..=COMMITS {
        stream.push_str(&format!("commit refs/heads/main\nmark :{commit}\ncommitter bench <b@zbot.invalid> {} +0000\ndata 10\ncommit {:03}\n", 1_700_000_000 + commit, commit % 1000));
        if commit == 1 {
            for f in 0..FILES {
                let content = format!("file {f}\n{}\n", "x".repeat(1500));
                stream.push_str(&format!(
                    "M 644 inline src/m{}/f{f}.txt\ndata {}\n{content}\n",
                    f % 50,
                    content.len()
                ));
            }
        } else {
            stream.push_str(&format!("from :{}\n", commit - 1));
            let f = commit % FILES;
            let content = format!("file {f} at {commit}\n");
            stream.push_str(&format!(
                "M 644 inline src/m{}/f{f}.txt\ndata {}\n{content}\n",
                f % 50,
                content.len()
            ));
        }
    }
    for pull in 1..=3000 {
        stream.push_str(&format!(
            "reset refs/pull/{pull}/head\nfrom :{}\n\n",
            (pull * 7) % COMMITS + 1
        ));
    }
    stream.push_str(&format!("reset refs/tags/v1\nfrom :{COMMITS}\n\n"));
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

async fn run(args: Args) -> Result<(Vec<Row>, Vec<String>)> {
    let mut rows = vec![row(
        "0 machine",
        "one fsync of a small write, p50",
        fsync_ms(&args.work)?,
        None,
        "ms",
    )];
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;

    // Cases 1 and 3: the webhook listener under load, and memory.
    let dir = args.work.join("case1-zbot");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let zbot = start_zbot(&args, &dir, &github, Some(&slack), &clone_url)?;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !slack.is_connected() {
            slack.connected.notified().await;
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let zbot_idle = zbot.rss_mib();
    let (zbot_latency, zbot_rps) = webhook_load(
        &args,
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

    let wdir = args.work.join("case1-webhook");
    std::fs::create_dir_all(&wdir)?;
    let script = start_script(&wdir, &wdir.join("starts"))?;
    let webhook = start_webhook(&args, &wdir, &script)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let webhook_idle = webhook.rss_mib();
    let (webhook_latency, webhook_rps) = webhook_load(
        &args,
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

    for (p, name) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
        rows.push(row(
            "1 webhook → response",
            &format!("{name} of {SEQUENTIAL} sequential"),
            percentile(&zbot_latency, p),
            Some((percentile(&webhook_latency, p), "webhook")),
            "ms",
        ));
    }
    rows.push(row(
        "1 webhook → response",
        &format!("throughput, {CONNECTIONS} connections"),
        zbot_rps,
        Some((webhook_rps, "webhook")),
        "req/s",
    ));

    // Case 2: webhook → the deploy command's first statement.
    let dir = args.work.join("case2-zbot");
    std::fs::create_dir_all(&dir)?;
    let record = dir.join("starts");
    let script = std::fs::read_to_string(start_script(&dir, &record)?)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), &script)?;
    let zbot = start_zbot(&args, &dir, &github, None, &clone_url)?;
    let zbot_starts = deploy_starts(
        &args,
        zbot.addr,
        "/webhooks/github",
        &record,
        |i| (10_000 + i, format!("start-{i}")),
        &clone_url,
        &sha,
    )
    .await?;
    drop(zbot);
    let wdir = args.work.join("case2-webhook");
    std::fs::create_dir_all(&wdir)?;
    let wrecord = wdir.join("starts");
    let wscript = start_script(&wdir, &wrecord)?;
    let webhook = start_webhook(&args, &wdir, &wscript)?;
    let webhook_starts = deploy_starts(
        &args,
        webhook.addr,
        "/hooks/github-deploy",
        &wrecord,
        |i| (20_000 + i, format!("start-{i}")),
        &clone_url,
        &sha,
    )
    .await?;
    drop(webhook);
    for (p, name) in [(0.5, "p50"), (0.9, "p90")] {
        rows.push(row(
            "2 webhook → deploy start",
            &format!("{name} of {STARTS}"),
            percentile(&zbot_starts, p),
            Some((percentile(&webhook_starts, p), "webhook")),
            "ms",
        ));
    }

    // Case 7: two instances on one Postgres, every delivery sent to one of them (a load balancer),
    // beside the one instance on SQLite above.
    let (pg_latency, pg_rps, pg_starts) = two_instances_case(&args, &github).await?;
    rows.push(row(
        "7 two instances on Postgres",
        &format!("webhook → response p50 of {SEQUENTIAL} sequential, per instance"),
        percentile(&pg_latency, 0.5),
        Some((percentile(&zbot_latency, 0.5), "one zbot on SQLite")),
        "ms",
    ));
    rows.push(row(
        "7 two instances on Postgres",
        &format!("throughput, {CONNECTIONS} connections to each"),
        pg_rps,
        Some((zbot_rps, "one zbot on SQLite")),
        "req/s",
    ));
    for (p, name) in [(0.5, "p50"), (0.9, "p90")] {
        rows.push(row(
            "7 two instances on Postgres",
            &format!("webhook → deploy start {name} of {STARTS}"),
            percentile(&pg_starts, p),
            Some((percentile(&zbot_starts, p), "one zbot on SQLite")),
            "ms",
        ));
    }

    // Case 3: memory.
    let hubot_idle = hubot_rss(&args)?;
    rows.push(row(
        "3 memory",
        "idle (Slack connected, listener up)",
        zbot_idle,
        Some((webhook_idle, "webhook")),
        "MiB",
    ));
    rows.push(row(
        "3 memory",
        "idle, vs a chat bot",
        zbot_idle,
        Some((hubot_idle, "Hubot 14, shell adapter")),
        "MiB",
    ));
    rows.push(row(
        "3 memory",
        "after the throughput run",
        zbot_after,
        Some((webhook_after, "webhook")),
        "MiB",
    ));

    // Case 4: a deploy printing 1 GiB.
    let chatty_peak = chatty_case(&args, &github, &mut rows).await?;
    // Case 5: checkout of a large repository.
    let (zbot_checkout, heaven_checkout) = checkout_case(&args, &mut rows).await?;
    // Case 6: Socket Mode envelope → POST /deployments.
    chat_case(&args, &github, &slack, &mut rows).await?;
    let goals = vec![
        goal(
            "webhook answer p50 at most half of webhook's",
            percentile(&zbot_latency, 0.5),
            0.5 * percentile(&webhook_latency, 0.5),
            "ms",
            true,
        ),
        goal(
            "throughput at least twice webhook's",
            zbot_rps,
            2.0 * webhook_rps,
            "req/s",
            false,
        ),
        goal(
            "webhook → deploy start p50 no slower than webhook's",
            percentile(&zbot_starts, 0.5),
            percentile(&webhook_starts, 0.5),
            "ms",
            true,
        ),
        goal(
            "idle memory no more than webhook's",
            zbot_idle,
            webhook_idle,
            "MiB",
            true,
        ),
        goal(
            "idle memory under a fifth of Hubot's",
            zbot_idle,
            hubot_idle / 5.0,
            "MiB",
            true,
        ),
        goal(
            "memory after the throughput run at most 64 MiB",
            zbot_after,
            64.0,
            "MiB",
            true,
        ),
        goal(
            "memory during the 1 GiB deploy at most 16 MiB above idle",
            chatty_peak,
            16.0,
            "MiB",
            true,
        ),
        goal(
            "warm checkout no slower than Heaven's fetch + reset",
            zbot_checkout,
            heaven_checkout,
            "s",
            true,
        ),
    ];
    Ok((rows, goals))
}

/// Case 7: two `zbot run` on one Postgres (a fresh database per part): (latencies of the first
/// instance's sequential deliveries, the two instances' summed throughput, webhook → deploy start with
/// deliveries sent to the first while both serve the queue).
async fn two_instances_case(args: &Args, github: &FakeGitHub) -> Result<(Vec<f64>, f64, Vec<f64>)> {
    let store = || -> Result<String> {
        let url = postgres::database();
        Ok(format!("[store]\nurl = \"{url}\"\n"))
    };
    let dir = args.work.join("case7-load");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let store_load = store()?;
    let a = start_zbot_with(args, &dir.join("a"), github, None, &clone_url, &store_load)?;
    let b = start_zbot_with(args, &dir.join("b"), github, None, &clone_url, &store_load)?;
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
    let store_starts = store()?;
    let a = start_zbot_with(
        args,
        &dir.join("a"),
        github,
        None,
        &clone_url,
        &store_starts,
    )?;
    let b = start_zbot_with(
        args,
        &dir.join("b"),
        github,
        None,
        &clone_url,
        &store_starts,
    )?;
    let starts = deploy_starts(
        args,
        a.addr,
        "/webhooks/github",
        &record,
        |i| (30_000 + i, format!("pg-start-{i}")),
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

/// Returns the peak memory above idle, in MiB.
async fn chatty_case(args: &Args, github: &FakeGitHub, rows: &mut Vec<Row>) -> Result<f64> {
    let dir = args.work.join("case4");
    std::fs::create_dir_all(&dir)?;
    let exited = dir.join("exited");
    let script = format!(
        "#!/bin/bash\nhead -c 1073741824 /dev/zero | tr '\\0' x | fold -w 1023\necho\necho \"$EPOCHREALTIME\" > {}\n",
        exited.display()
    );
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), &script)?;
    let zbot = start_zbot(args, &dir, github, None, &clone_url)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = zbot.rss_mib();
    let mut connection = Connection::open(zbot.addr).await?;
    let id = 40_000;
    connection
        .deliver(
            "/webhooks/github",
            "deployment",
            "chatty",
            SECRET,
            &delivery(&args.fixture, id, &clone_url, &sha),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let final_at = loop {
        let seen = github
            .seen
            .lock()
            .map_err(|_| "poisoned")?
            .statuses
            .iter()
            .find(|(_, d, s)| *d == id && (s == "success" || s == "failure" || s == "error"))
            .cloned();
        if let Some((_, _, state)) = &seen {
            if state != "success" {
                return Err(format!("the 1 GiB deploy ended {state}").into());
            }
            break epoch();
        }
        if Instant::now() > deadline {
            return Err("the 1 GiB deploy did not end in 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let exit: f64 = std::fs::read_to_string(&exited)?.trim().parse()?;
    let peak = zbot.peak_mib();
    let log = std::fs::metadata(dir.join(format!("data/logs/{id}.log")))?.len();
    drop(zbot);
    rows.push(row(
        "4 1 GiB deploy",
        "peak memory above idle",
        peak - idle,
        None,
        "MiB",
    ));
    rows.push(row(
        "4 1 GiB deploy",
        "recipe exit → final status",
        (final_at - exit) * 1000.0,
        None,
        "ms",
    ));
    rows.push(row(
        "4 1 GiB deploy",
        "log on disk (GiB, output 1 GiB + time stamps)",
        log as f64 / (1u64 << 30) as f64,
        None,
        "GiB",
    ));
    Ok(peak - idle)
}

async fn chat_case(
    args: &Args,
    github: &FakeGitHub,
    slack: &FakeSlack,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let dir = args.work.join("case6");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, _) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let before = github
        .seen
        .lock()
        .map_err(|_| "poisoned")?
        .deployments
        .len();
    let zbot = start_zbot(args, &dir, github, Some(slack), &clone_url)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::new();
    for n in 1..=COMMANDS {
        let sent = Instant::now();
        slack.mention(n, "deploy bench/v1 to production");
        let deadline = sent + Duration::from_secs(10);
        let arrived = loop {
            // Created before looking, so a notification in between is not lost.
            let changed = github.changed.notified();
            let seen = github
                .seen
                .lock()
                .map_err(|_| "poisoned")?
                .deployments
                .get(before + n as usize - 1)
                .map(|(t, _)| *t);
            if let Some(t) = seen {
                break t;
            }
            tokio::time::timeout_at(deadline.into(), changed).await?;
        };
        latencies.push(arrived.duration_since(sent).as_secs_f64() * 1000.0);
    }
    drop(zbot);
    let latencies = sorted(latencies);
    rows.push(row(
        "6 chat → deployment",
        &format!("p50 of {COMMANDS} commands"),
        percentile(&latencies, 0.5),
        None,
        "ms",
    ));
    rows.push(row(
        "6 chat → deployment",
        &format!("p99 of {COMMANDS} commands"),
        percentile(&latencies, 0.99),
        None,
        "ms",
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() != 6 {
        eprintln!("usage: zbot-bench ZBOT WEBHOOK HUBOT_DIR FIXTURE WORK_DIR");
        return std::process::ExitCode::from(2);
    }
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
    let args = Args {
        zbot: PathBuf::from(&argv[1]),
        webhook: PathBuf::from(&argv[2]),
        hubot: PathBuf::from(&argv[3]),
        fixture,
        work: PathBuf::from(&argv[5]),
    };
    match run(args).await {
        Ok((rows, goals)) => {
            println!("| case | figure | zbot | reference | ratio zbot/reference |");
            println!("|---|---|---|---|---|");
            for r in rows {
                println!(
                    "| {} | {} | {} | {} | {} |",
                    r.case, r.figure, r.zbot, r.reference, r.ratio
                );
            }
            println!("\nGoals, judged on this run:\n");
            for g in goals {
                println!("{g}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
