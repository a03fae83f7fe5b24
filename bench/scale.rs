//! Cases 9, 10 and 11: what grows with a team. A deep queue over many apps, a burst of chat
//! commands, and a Slack mention followed through to the recipe's first statement. Counts are the
//! issue's (1,000 deployments over 100 apps, 100 commands in one second, 100 mentions), scaled by
//! `ZBOT_BENCH_SCALE`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fakes::github::WebhookTarget;
use crate::{
    Args, Connection, FakeGitHub, FakeSlack, Process, Report, Result, Row, SECRET, Setup,
    app_table, deploy_repo, deployment_posts, epoch, goal, percentile_rows, row, scaled,
    start_script, start_zbot, started_at,
};

/// Connections the queue is filled over.
const SENDERS: usize = 8;

/// Waits until zbot has connected to the fake Slack.
pub async fn connected(slack: &FakeSlack) {
    slack
        .wait_for("zbot to connect to Slack", Duration::from_secs(30), |s| {
            (s.connections() > 0).then_some(())
        })
        .await;
}

/// Starts zbot with Slack and `apps` (`[apps.*]` tables) and waits until it has connected.
pub async fn chat_zbot(
    args: &Args,
    dir: &std::path::Path,
    github: &FakeGitHub,
    slack: &FakeSlack,
    apps: String,
) -> Result<Process> {
    let clone_url = String::new();
    let zbot = start_zbot(
        args,
        dir,
        &Setup {
            slack: Some(slack),
            apps,
            ..Setup::new(github, &clone_url)
        },
    )?;
    connected(slack).await;
    Ok(zbot)
}

/// `U0USER` mentions zbot in `C0CHAN` with `text`, as envelope `env-{n}` (a new thread).
pub fn say(slack: &FakeSlack, n: usize, text: &str) {
    crate::fakes::slack::mention(slack, n as u32, "U0USER", "C0CHAN", text);
}

/// The `[apps.*]` tables of `apps` apps, `app0` … (repositories `octo/app0` …), all cloned from
/// `clone_url`.
fn apps(apps: usize, clone_url: &str) -> String {
    (0..apps)
        .map(|a| app_table(&format!("app{a}"), &format!("octo/app{a}"), clone_url))
        .collect()
}

/// Delivers `(deployment id, app number)` pairs over [`SENDERS`] connections at once; every one
/// must be accepted.
async fn deliver_all(
    args: &Args,
    addr: SocketAddr,
    deployments: &[(u64, usize)],
    clone_url: &str,
    sha: &str,
) -> Result<()> {
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let mine: Vec<(u64, usize)> = deployments
            .iter()
            .skip(sender)
            .step_by(SENDERS)
            .copied()
            .collect();
        let bodies: Vec<(u64, Vec<u8>)> = mine
            .iter()
            .map(|(id, app)| {
                let repository = format!("octo/app{app}");
                (
                    *id,
                    crate::delivery(&args.fixture, *id, &repository, clone_url, sha),
                )
            })
            .collect();
        senders.spawn(async move {
            let mut connection = Connection::open(addr).await?;
            for (id, body) in bodies {
                let status = connection
                    .deliver(
                        "/webhooks/github",
                        "deployment",
                        &format!("queue-{id}"),
                        SECRET,
                        &body,
                    )
                    .await?;
                if status != 202 {
                    return Err(format!("zbot answered {status} to deployment {id}").into());
                }
            }
            Result::Ok(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent??;
    }
    Ok(())
}

/// Waits until every deployment in `ids` has a final status at the fake GitHub; when the last one
/// arrived. Any deployment that did not succeed is an error.
async fn all_ended(github: &FakeGitHub, ids: Range<u64>, deadline: Duration) -> Result<Instant> {
    let until = Instant::now() + deadline;
    let wanted = (ids.end - ids.start) as usize;
    loop {
        let mut ended = HashMap::new();
        for status in github.all_statuses() {
            if ids.contains(&status.deployment_id)
                && matches!(status.state.as_str(), "success" | "failure" | "error")
            {
                if status.state != "success" {
                    return Err(format!(
                        "deployment {} ended {}",
                        status.deployment_id, status.state
                    )
                    .into());
                }
                ended.entry(status.deployment_id).or_insert(status.at);
            }
        }
        if ended.len() == wanted {
            return ended
                .into_values()
                .max()
                .ok_or_else(|| "no deployment".into());
        }
        if Instant::now() > until {
            return Err(format!(
                "{} of {wanted} deployments ended in {deadline:?}",
                ended.len()
            )
            .into());
        }
        // A poll, not a wait on each status: looking at thousands of statuses on every arrival
        // would take the CPU zbot is measured on.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The floor of case 9: seconds to start `n` processes (`true`) and see them all exit.
fn spawn_floor(n: usize) -> Result<f64> {
    let started = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(
            Command::new("true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
    }
    for mut child in children {
        child.wait()?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Case 9: 1,000 deployments over 100 apps queued at once, a recipe that exits at once: time until
/// all have ended, beside starting as many processes; zbot's peak memory. Every app has deployed
/// once before (warm repository caches and working trees).
pub async fn queue_case(args: &Args, report: &mut Report) -> Result<()> {
    let (deployments, app_count) = (scaled(1000), scaled(100));
    let dir = args.work.join("case9");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, sha) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let github = FakeGitHub::start().await;
    let zbot = start_zbot(
        args,
        &dir,
        &Setup {
            apps: apps(app_count, &clone_url),
            ..Setup::new(&github, &clone_url)
        },
    )?;
    let warm: Vec<(u64, usize)> = (0..app_count).map(|a| (70_000 + a as u64, a)).collect();
    deliver_all(args, zbot.addr, &warm, &clone_url, &sha).await?;
    all_ended(
        &github,
        70_000..70_000 + app_count as u64,
        Duration::from_secs(300),
    )
    .await?;

    let first = 100_000u64;
    let queue: Vec<(u64, usize)> = (0..deployments)
        .map(|n| (first + n as u64, n % app_count))
        .collect();
    let started = Instant::now();
    deliver_all(args, zbot.addr, &queue, &clone_url, &sha).await?;
    let accepted = started.elapsed().as_secs_f64();
    let last = all_ended(
        &github,
        first..first + deployments as u64,
        Duration::from_secs(600),
    )
    .await?;
    let ended = last.duration_since(started).as_secs_f64();
    let peak = zbot.peak_mib();
    drop(zbot);
    let floor = spawn_floor(deployments)?;
    let case = "9 deep queue";
    let what = format!("{deployments} deployments over {app_count} apps");
    report.rows.push(row(
        case,
        &format!("{what} queued at once: all accepted (202)"),
        accepted,
        None,
        "s",
    ));
    report.rows.push(row(
        case,
        &format!("{what} queued at once: all ended"),
        ended,
        Some((floor, "starting as many `true` processes")),
        "s",
    ));
    report.rows.push(row(
        case,
        &format!("{what}: zbot's peak memory"),
        peak,
        None,
        "MiB",
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Case 10: 100 chat commands (each for its own app) arriving within one second through Socket
/// Mode: command → `POST …/deployments` at the fake GitHub, p50 and p99; every envelope acked within
/// Slack's 3 s.
pub async fn burst_case(args: &Args, report: &mut Report) -> Result<()> {
    let commands = scaled(100);
    let dir = args.work.join("case10");
    std::fs::create_dir_all(&dir)?;
    let (clone_url, _) = deploy_repo(&dir.join("repo"), "#!/bin/sh\nexit 0\n")?;
    let github = FakeGitHub::start().await;
    github.create_deployments_in(&dir.join("repo"));
    let slack = FakeSlack::start().await;
    let zbot = chat_zbot(args, &dir, &github, &slack, apps(commands, &clone_url)).await?;
    let begin = Instant::now() + Duration::from_millis(100);
    let mut sent = Vec::with_capacity(commands);
    for n in 0..commands {
        let at = begin + Duration::from_secs_f64(n as f64 / commands as f64);
        tokio::time::sleep_until(at.into()).await;
        sent.push(Instant::now());
        say(&slack, n + 1, &format!("deploy app{n}/v1 to production"));
    }
    let posts = github
        .wait_for("every command's deployment", Duration::from_secs(60), |g| {
            let posts = deployment_posts(g);
            (posts.len() >= commands).then_some(posts)
        })
        .await;
    let acks = slack
        .wait_for("every envelope's ack", Duration::from_secs(60), |s| {
            (1..=commands)
                .map(|n| s.acked_at(&format!("env-{n}")))
                .collect::<Option<Vec<_>>>()
        })
        .await;
    drop(zbot);
    let mut latencies = Vec::with_capacity(commands);
    for (n, sent) in sent.iter().enumerate() {
        let path = format!("POST /repos/octo/app{n}/deployments");
        let (at, _) = posts
            .iter()
            .find(|(_, call)| *call == path)
            .ok_or_else(|| format!("no deployment for app{n}"))?;
        latencies.push(at.duration_since(*sent).as_secs_f64() * 1000.0);
    }
    let slowest_ack = acks
        .iter()
        .zip(&sent)
        .map(|(ack, sent)| ack.duration_since(*sent).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let case = "10 burst of commands";
    percentile_rows(&mut report.rows, case, latencies, |name| {
        format!("{commands} commands in one second: command → deployment created, {name}")
    });
    report.rows.push(row(
        case,
        &format!("{commands} commands in one second: slowest envelope ack"),
        slowest_ack,
        Some((3000.0, "Slack's limit")),
        "ms",
    ));
    report.goals.push(goal(
        "every envelope of a burst of commands acked within Slack's 3 s",
        slowest_ack,
        3000.0,
        "ms",
        true,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Case 11: a Slack mention (`deploy bench/v1 to production`) → the recipe's first statement, end
/// to end through the fakes (the fake GitHub sends the `deployment` webhook at once), one at a
/// time after a warm-up: p50 and p99.
pub async fn mention_case(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let mentions = scaled(100);
    let dir = args.work.join("case11");
    std::fs::create_dir_all(&dir)?;
    let record = dir.join("starts");
    let script = std::fs::read_to_string(start_script(&dir, &record)?)?;
    let (clone_url, _) = deploy_repo(&dir.join("repo"), &script)?;
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    // The fake GitHub's webhooks name the repository `octo/adxstat`.
    let apps = app_table("bench", "octo/adxstat", &clone_url);
    let zbot = chat_zbot(args, &dir, &github, &slack, apps).await?;
    github.send_webhooks_to(WebhookTarget {
        zbot: zbot.addr,
        repo: dir.join("repo"),
    });
    let mut latencies = Vec::with_capacity(mentions);
    for n in 0..=mentions {
        let before = github.deployment_ids().len();
        let sent = epoch();
        say(&slack, n + 1, "deploy bench/v1 to production");
        let id = github
            .wait_for("the deployment", Duration::from_secs(30), |g| {
                g.deployment_ids().get(before).copied()
            })
            .await;
        let started = started_at(&record, &id.to_string())?;
        github.final_status(id, Duration::from_secs(60)).await;
        if n > 0 {
            latencies.push((started - sent) * 1000.0);
        }
    }
    drop(zbot);
    percentile_rows(rows, "11 mention → recipe start", latencies, |name| {
        format!("{name} of {mentions} mentions, end to end through the fakes")
    });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
