//! Several `zbot run` processes on one Postgres (the test server of `postgres.rs`): every delivery sent
//! to every instance, as a load balancer and GitHub's redeliveries may. What people see must be what
//! one zbot would do: each deployment runs once, one at a time per environment in order of arrival,
//! and a deploy whose instance dies or pauses ends `error` and the queue moves on elsewhere.
//!
//! The deploy script records its start and end (with the PID of the zbot that started it) and holds a
//! lock per environment while it runs: a second deploy of that environment running at the same time
//! would find the lock taken and record an overlap.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fakes::github::FakeGitHub;
use crate::harness::{
    TestRepo, ZbotProcess, config_text, deliver, deployment_event, http, prepare_dir,
};

/// The lease of most tests: long enough that a renewal starved on a loaded machine does not make a
/// healthy deploy lose its lease.
const LEASE: &str = "10s";

/// The lease of the failover tests, short enough to wait on: an instance gone for longer loses its
/// deploys. Its guard's silence is a quarter of it (1.5 s), long enough that a healthy instance
/// starved on a loaded 2-core machine keeps its deploys.
const FAILOVER_LEASE: &str = "6s";
/// [`FAILOVER_LEASE`] in seconds.
const FAILOVER_LEASE_SECS: u64 = 6;

/// How long the recording script runs.
#[derive(Clone, Copy)]
enum Hold<'a> {
    /// It ends at once.
    No,
    /// Until this file exists.
    Until(&'a Path),
    /// About a tenth of a second.
    Briefly,
}

/// A deploy script that records `start`/`end` lines into `record` (environment, deployment id, the
/// starting zbot's PID, nanoseconds), holds `locks/<environment>.lock` while it runs (an overlap is
/// recorded), and runs as long as `hold` says.
fn recording_script(dir: &Path, hold: Hold<'_>) -> String {
    let record = dir.join("record");
    let locks = dir.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let hold = match hold {
        Hold::Until(release) => format!(
            "i=0\nwhile [ ! -e {} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done\n",
            release.display()
        ),
        Hold::Briefly => "sleep 0.1\n".to_string(),
        Hold::No => String::new(),
    };
    format!(
        "#!/bin/sh\nexec 9>>{locks}/$DEPLOY_ENV.lock\n\
         flock -n 9 || echo \"overlap $DEPLOY_ENV $ZBOT_DEPLOYMENT_ID $PPID 0\" >> {record}\n\
         echo \"start $DEPLOY_ENV $ZBOT_DEPLOYMENT_ID $PPID $(date +%s%N)\" >> {record}\n\
         {hold}echo \"end $DEPLOY_ENV $ZBOT_DEPLOYMENT_ID $PPID $(date +%s%N)\" >> {record}\n",
        locks = locks.display(),
        record = record.display(),
    )
}

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mark {
    what: String,
    environment: String,
    id: u64,
    zbot_pid: u32,
    at_ns: u128,
}

fn marks(dir: &Path) -> Vec<Mark> {
    std::fs::read_to_string(dir.join("record"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(Mark {
                what: f.first()?.to_string(),
                environment: f.get(1)?.to_string(),
                id: f.get(2)?.parse().ok()?,
                zbot_pid: f.get(3)?.parse().ok()?,
                at_ns: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// Polls `done` until it gives a value, or panics with `what` and `context()` after `deadline`.
async fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut done: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A shared setup: the fake GitHub, the repository with the recording script, and one directory per
/// instance whose bot.toml points at `url`.
struct Cluster {
    github: FakeGitHub,
    /// With `slack`: the fake every instance connects to.
    slack: Option<crate::fakes::slack::FakeSlack>,
    sha: String,
    /// The store every instance shares.
    url: String,
    root: tempfile::TempDir,
    instances: Vec<ZbotProcess>,
}

impl Cluster {
    /// Waits (up to 60 s) until each of these deployments has a `success` status on GitHub.
    async fn succeeded(&self, ids: &[u64]) {
        let what = format!("{ids:?} to succeed");
        self.github
            .wait_for(&what, Duration::from_secs(60), |g| {
                ids.iter()
                    .all(|&id| g.states(id).contains(&"success".to_string()))
                    .then_some(())
            })
            .await;
    }

    async fn start(count: usize, environments: &[&str], release: Option<&Path>) -> Cluster {
        let hold = release.map_or(Hold::No, Hold::Until);
        Cluster::start_with(count, environments, hold, false, &[], LEASE).await
    }

    /// Two instances with the failover tests' short lease, deploys held until `release` exists, and
    /// the fake Slack if `slack`.
    async fn failover(release: &Path, slack: bool) -> Cluster {
        let environments = ["production", "staging"];
        let hold = Hold::Until(release);
        Cluster::start_with(2, &environments, hold, slack, &[], FAILOVER_LEASE).await
    }

    /// `start` with the fake Slack (`slack`), `deploy[i]` in instance i's `[deploy]` table, and leases
    /// of `lease`.
    async fn start_with(
        count: usize,
        environments: &[&str],
        hold: Hold<'_>,
        slack: bool,
        deploy: &[&str],
        lease: &str,
    ) -> Cluster {
        use crate::fakes::slack::FakeSlack;
        let slack = if slack {
            Some(FakeSlack::start().await)
        } else {
            None
        };
        let root = tempfile::tempdir().unwrap();
        let url = tokio::task::spawn_blocking(crate::postgres::database)
            .await
            .unwrap();
        let github = FakeGitHub::start().await;
        let repo = TestRepo::new(root.path());
        let script = recording_script(root.path(), hold);
        let sha = repo.commit(&[("script/deploy", &script, true)], "v0.0.1");
        let environments = environments
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config_with = |deploy: &str| {
            config_text(&github, &repo, "", deploy).replace(
                "environments = [\"production\", \"staging\"]",
                &format!("environments = [{environments}]"),
            ) + &format!("\n[store]\nurl = \"{url}\"\nlease = \"{lease}\"\n")
                + &slack
                    .as_ref()
                    .map(|s| {
                        format!(
                            "\n[slack]\napp_token = \"{}\"\nbot_token = \"{}\"\napi_url = \"{}\"\n",
                            crate::fakes::slack::APP_TOKEN,
                            crate::fakes::slack::BOT_TOKEN,
                            s.api_url()
                        )
                    })
                    .unwrap_or_default()
        };
        let mut instances = Vec::new();
        for i in 0..count {
            let dir = root.path().join(format!("instance-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            prepare_dir(&dir, &config_with(deploy.get(i).copied().unwrap_or("")));
            instances.push(ZbotProcess::start_with(
                &dir,
                &["--instance-id", &format!("test-{i}")],
            ));
        }
        Cluster {
            github,
            slack,
            sha,
            url,
            root,
            instances,
        }
    }

    /// Sends deployment `id` to every instance (the same delivery id), each accepting or recognising it;
    /// chat hears of it in thread `<id>.0` of `C0CHAN`.
    async fn deliver_everywhere(&self, id: u64, environment: &str) {
        self.deliver_to(&self.instances, id, environment).await;
    }

    /// Sends deployment `id` to `instances` only.
    async fn deliver_to(&self, instances: &[ZbotProcess], id: u64, environment: &str) {
        let notify = json!({"notify": {"room": "C0CHAN", "thread_ts": format!("{id}.0")}});
        let event = deployment_event(id, "v0.0.1", &self.sha, environment, "deploy", notify);
        let sends = instances.iter().map(|zbot| {
            let event = event.clone();
            async move { deliver(zbot.addr, "deployment", &format!("delivery-{id}"), &event).await }
        });
        for (status, body) in futures_util::future::join_all(sends).await {
            assert!((200..300).contains(&status), "{status} {body}");
        }
    }

    fn marks(&self) -> Vec<Mark> {
        marks(self.root.path())
    }

    /// When deploy `id` started (the first record of it), waiting for it.
    async fn started(&self, id: u64) -> Mark {
        wait_until(
            &format!("#{id} to start"),
            Duration::from_secs(60),
            || {
                self.marks()
                    .into_iter()
                    .find(|m| m.what == "start" && m.id == id)
            },
            || self.logs(),
        )
        .await
    }

    /// #1 of production delivered and running (its start returned), #2 and #3 delivered behind it.
    async fn one_running_two_waiting(&self) -> Mark {
        self.deliver_everywhere(1, "production").await;
        let first = self.started(1).await;
        self.deliver_everywhere(2, "production").await;
        self.deliver_everywhere(3, "production").await;
        first
    }

    /// Waits until instance `i` (or a process it started, as its guard) has said `text` in its log.
    async fn said(&self, i: usize, text: &str) {
        let output = self.instances[i].output.clone();
        wait_until(
            &format!("instance {i} to say {text:?}"),
            Duration::from_secs(30),
            || output.lock().unwrap().contains(text).then_some(()),
            || self.logs(),
        )
        .await;
    }

    /// Every instance's log, for a failure message.
    fn logs(&self) -> String {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, z)| format!("--- instance {i}:\n{}", z.output.lock().unwrap()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn final_state(&self, id: u64) -> Option<String> {
        self.github
            .states(id)
            .into_iter()
            .rfind(|s| ["success", "failure", "error"].contains(&s.as_str()))
    }

    /// Deployment `id` has exactly one final status on GitHub.
    fn assert_ended_once(&self, id: u64) {
        let states = self.github.states(id);
        let ends = states
            .iter()
            .filter(|s| ["success", "failure", "error"].contains(&s.as_str()))
            .count();
        assert_eq!(ends, 1, "#{id}: {states:?}\n{}", self.logs());
    }

    fn instance_of(&self, pid: u32) -> usize {
        self.instances
            .iter()
            .position(|z| z.child.id() == pid)
            .unwrap_or_else(|| panic!("no instance has PID {pid}"))
    }
}

/// Per environment, the runs' [start, end] never overlap, and no run found its environment's lock
/// taken.
fn assert_no_overlap(marks: &[Mark], context: &str) {
    assert!(
        !marks.iter().any(|m| m.what == "overlap"),
        "two deploys of one environment ran at once:\n{marks:#?}\n{context}"
    );
    let mut intervals: Vec<(String, u128, u128, u64)> = Vec::new();
    for start in marks.iter().filter(|m| m.what == "start") {
        if let Some(end) = marks
            .iter()
            .find(|m| m.what == "end" && m.id == start.id && m.zbot_pid == start.zbot_pid)
        {
            intervals.push((start.environment.clone(), start.at_ns, end.at_ns, start.id));
        }
    }
    intervals.sort();
    for pair in intervals.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert!(
                pair[0].2 <= pair[1].1,
                "#{} and #{} of {} overlap\n{context}",
                pair[0].3,
                pair[1].3,
                pair[0].0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_deployments_delivered_to_three_instances_each_run_once_in_order() {
    let environments = ["production", "staging", "qa", "canary"];
    // A limit of 2 over 4 environments binds: at most 2 deploys at once across the instances.
    let limit = ["concurrency = 2"; 3];
    let cluster = Cluster::start_with(3, &environments, Hold::Briefly, false, &limit, LEASE).await;
    let count = 200u64;
    for id in 1..=count {
        cluster
            .deliver_everywhere(id, environments[(id % 4) as usize])
            .await;
    }
    cluster
        .github
        .wait_for("every deployment to end", Duration::from_secs(600), |g| {
            (1..=count)
                .all(|id| {
                    g.states(id)
                        .iter()
                        .any(|s| ["success", "failure", "error"].contains(&s.as_str()))
                })
                .then_some(())
        })
        .await;
    let marks = cluster.marks();
    let logs = cluster.logs();
    for id in 1..=count {
        let runs = marks
            .iter()
            .filter(|m| m.what == "start" && m.id == id)
            .count();
        assert_eq!(runs, 1, "#{id} ran {runs} times\n{logs}");
        assert_eq!(
            cluster.final_state(id).as_deref(),
            Some("success"),
            "#{id}: {:?}",
            cluster.github.states(id)
        );
        let ends = cluster
            .github
            .states(id)
            .iter()
            .filter(|s| *s == "success")
            .count();
        assert_eq!(ends, 1, "#{id} ended {ends} times");
    }
    // Order of arrival within each environment.
    for environment in environments {
        let started: Vec<u64> = marks
            .iter()
            .filter(|m| m.what == "start" && m.environment == environment)
            .map(|m| m.id)
            .collect();
        let mut sorted = started.clone();
        sorted.sort();
        assert_eq!(started, sorted, "{environment} ran out of order");
    }
    assert_no_overlap(&marks, &logs);
    let mut changes: Vec<(u128, i32)> = marks
        .iter()
        .filter_map(|m| match m.what.as_str() {
            "start" => Some((m.at_ns, 1)),
            "end" => Some((m.at_ns, -1)),
            _ => None,
        })
        .collect();
    // An end and a start at one instant: the end first.
    changes.sort();
    let (mut now, mut most) = (0, 0);
    for (_, change) in changes {
        now += change;
        most = most.max(now);
    }
    assert!(
        most <= 2,
        "{most} deploys ran at once, over a limit of 2\n{logs}"
    );
    assert_eq!(
        most, 2,
        "the limit was never reached: the test shows nothing"
    );
    let by_instance: Vec<usize> = (0..3)
        .map(|i| {
            let pid = cluster.instances[i].child.id();
            marks
                .iter()
                .filter(|m| m.what == "start" && m.zbot_pid == pid)
                .count()
        })
        .collect();
    eprintln!("deploys run per instance: {by_instance:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instances_deploy_ends_as_error_and_another_runs_the_queue() {
    let root_release = tempfile::tempdir().unwrap();
    let release = root_release.path().join("release");
    let mut cluster = Cluster::failover(&release, true).await;
    let first = cluster.one_running_two_waiting().await;
    let dead = cluster.instance_of(first.zbot_pid);
    let killed_at = Instant::now();
    cluster.instances[dead].kill_hard();

    let description = cluster
        .github
        .wait_for("#1 to end as error", Duration::from_secs(30), |g| {
            g.statuses(1)
                .into_iter()
                .find(|s| s.state == "error")
                .map(|s| s.description)
        })
        .await;
    let took = killed_at.elapsed();
    eprintln!("#1 ended {took:?} after its instance was killed (lease {FAILOVER_LEASE})");
    assert!(
        description.contains("the zbot instance running this deploy stopped"),
        "{description}"
    );
    assert!(
        took < Duration::from_secs(FAILOVER_LEASE_SECS + 8),
        "{took:?}"
    );
    // The dead instance's guard killed #1's processes (the surviving instance, with its own data
    // directory, leaves them to it, as it must for an instance on another machine).
    cluster
        .said(
            dead,
            "zbot guard: zbot ended: killed the deploy's process group",
        )
        .await;
    // The thread hears it from the surviving instance.
    let slack = cluster.slack.as_ref().unwrap();
    wait_until(
        "the thread to hear why #1 ended",
        Duration::from_secs(30),
        || {
            slack.thread("C0CHAN", "1.0").into_iter().find(|p| {
                p.text
                    .contains("the zbot instance running this deploy stopped")
            })
        },
        || format!("{:#?}\n{}", slack.posts(), cluster.logs()),
    )
    .await;
    // The surviving instance counts the deploy it ended.
    let (_, metrics) = http(
        cluster.instances[1 - dead].addr,
        "GET",
        "/metrics",
        &[],
        b"",
    )
    .await;
    assert!(
        metrics.contains(
            "zbot_deployments_total{app=\"adxstat\",environment=\"production\",outcome=\"error\"} 1"
        ),
        "{metrics}"
    );
    std::fs::write(&release, "").unwrap();
    cluster.succeeded(&[2, 3]).await;
    let alive = cluster.instances[1 - dead].child.id();
    for id in [2, 3] {
        let run = cluster
            .marks()
            .into_iter()
            .find(|m| m.what == "start" && m.id == id)
            .unwrap();
        assert_eq!(run.zbot_pid, alive, "#{id} ran on the surviving instance");
    }
    assert_eq!(
        cluster
            .github
            .states(1)
            .iter()
            .filter(|s| *s == "success")
            .count(),
        0
    );
    assert_no_overlap(&cluster.marks(), &cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_instance_stops_its_deploy_and_no_environment_runs_two_at_once() {
    let root_release = tempfile::tempdir().unwrap();
    let release = root_release.path().join("release");
    let cluster = Cluster::failover(&release, false).await;
    let first = cluster.one_running_two_waiting().await;
    let paused = cluster.instance_of(first.zbot_pid);
    let pid = first.zbot_pid as i32;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    // Past its lease, the other instance ends #1 and starts #2.
    cluster
        .github
        .wait_for("#1 to end as error", Duration::from_secs(30), |g| {
            g.states(1).contains(&"error".to_string()).then_some(())
        })
        .await;
    cluster.started(2).await;
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    std::fs::write(&release, "").unwrap();
    cluster.succeeded(&[2, 3]).await;
    let logs = cluster.logs();
    // #1 ended once, as error: the paused instance did not report it as its own.
    cluster.assert_ended_once(1);
    assert_no_overlap(&cluster.marks(), &logs);
    // #1 never ran to its end: the paused instance's guard killed it before #2 started.
    assert!(
        !cluster.marks().iter().any(|m| m.what == "end" && m.id == 1),
        "{:#?}\n{logs}",
        cluster.marks()
    );
    let paused_log = cluster.instances[paused].output.lock().unwrap().clone();
    assert!(
        paused_log.contains("zbot guard: no heartbeat for"),
        "the paused instance's guard stopped #1:\n{logs}"
    );
    wait_until(
        "the paused instance to say it lost #1's lease",
        Duration::from_secs(10),
        || {
            let log = cluster.instances[paused].output.lock().unwrap().clone();
            log.lines()
                .any(|l| l.contains("lost the lease on this deploy") && l.contains("deployment=1"))
                .then_some(())
        },
        || cluster.logs(),
    )
    .await;
    // The paused instance is serving again.
    let (status, health) = http(cluster.instances[paused].addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("instance: test-"), "{health}");
    assert!(health.contains("store: postgres ok"), "{health}");
}

/// zbot started in this process from `dir/bot.toml` (written from `config`) as instance `instance`.
async fn start_instance(dir: &Path, config: &str, instance: &str) -> zbot::app::Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::harness::embedded_guard();
    prepare_dir(dir, config);
    let mut config = zbot::config::Config::load(&dir.join("bot.toml"))
        .unwrap_or_else(|p| panic!("test config: {p:?}"));
    config.store.instance = instance.parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    zbot::app::start(config, Some(listener))
        .await
        .expect("zbot starts")
}

/// Each instance holds its own Socket Mode connection; an envelope both receive (Slack's retry may
/// reach another connection) is acted on once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slack_envelope_delivered_to_two_instances_creates_one_deployment() {
    use crate::fakes::slack::{self, FakeSlack, app_mention, event_envelope, user_ts};
    let root = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(crate::postgres::database)
        .await
        .unwrap();
    let github = FakeGitHub::start().await;
    let fake_slack = FakeSlack::start().await;
    let repo = TestRepo::new(root.path());
    repo.commit(&[("fabfile.py", crate::harness::FABFILE, false)], "v0.0.1");
    let config = format!(
        "{}\n[slack]\napp_token = \"{}\"\nbot_token = \"{}\"\napi_url = \"{}\"\n\
         default_channel = \"C0DEPLOYS\"\n\n[store]\nurl = \"{url}\"\nlease = \"{LEASE}\"\n",
        config_text(&github, &repo, "", ""),
        slack::APP_TOKEN,
        slack::BOT_TOKEN,
        fake_slack.api_url(),
    );
    let mut instances = Vec::new();
    for i in 0..2 {
        let dir = root.path().join(format!("instance-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        instances.push(start_instance(&dir, &config, &format!("chat-{i}")).await);
    }
    github.send_webhooks_to(crate::fakes::github::WebhookTarget {
        zbot: instances[1].addr,
        repo: repo.path.clone(),
    });
    fake_slack
        .wait_for("both instances to connect", Duration::from_secs(60), |s| {
            (s.connections() >= 2).then_some(())
        })
        .await;
    let thread = user_ts(1);
    let text = format!("<@{}> deploy adxstat/v0.0.1 to production", slack::BOT_USER);
    let event = app_mention("U0ALICE", "C0CHAN", &thread, &text);
    fake_slack.send_everywhere(event_envelope("env-1", "Ev1", event, 0));
    fake_slack
        .wait_for("both instances' acks", Duration::from_secs(60), |s| {
            (s.acks_of("env-1") == 2).then_some(())
        })
        .await;
    fake_slack
        .reply_containing("C0CHAN", &thread, "is on *production*")
        .await;
    // Stopping waits for every message an instance acknowledged to be handled.
    for zbot in instances {
        zbot.stop().await.unwrap();
    }
    assert_eq!(
        github.deployment_requests().len(),
        1,
        "one envelope, one deployment"
    );
    let answers = fake_slack
        .thread("C0CHAN", &thread)
        .into_iter()
        .filter(|p| p.text.contains("is on *production*"))
        .count();
    assert_eq!(answers, 1, "{:#?}", fake_slack.thread("C0CHAN", &thread));
}

/// Work delivered to one instance that it may not start (its `[deploy] concurrency` of 1 is taken by
/// #1, wherever that runs) is started at once by another, which hears of it through `NOTIFY`, not by
/// polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_hears_of_work_delivered_to_another() {
    let root_release = tempfile::tempdir().unwrap();
    let release = root_release.path().join("release");
    let cluster = Cluster::start_with(
        2,
        &["production", "staging"],
        Hold::Until(&release),
        false,
        &["concurrency = 1"],
        LEASE,
    )
    .await;
    let only_first = &cluster.instances[..1];
    cluster.deliver_to(only_first, 1, "production").await;
    // Either instance may run #1 (the second hears of it too): the first, whose limit counts every
    // instance's deploys, can start nothing more either way.
    cluster.started(1).await;
    // The second hears of #2 from the store.
    let delivered = Instant::now();
    cluster.deliver_to(only_first, 2, "staging").await;
    let second = cluster.started(2).await;
    eprintln!(
        "#2 started on the other instance {:?} after its delivery",
        delivered.elapsed()
    );
    assert_eq!(cluster.instance_of(second.zbot_pid), 1);
    std::fs::write(&release, "").unwrap();
    cluster.succeeded(&[1, 2]).await;
}

/// Runs `zbot run` with `dir/bot.toml` and `args`, which must refuse to start: returns what it said.
fn refused_run(dir: &Path, args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zbot"))
        .args(["run", "--config"])
        .arg(dir.join("bot.toml"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zbot run {args:?} was not refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    assert!(!status.success(), "{said}");
    said
}

/// Fencing is keyed on the instance id and a data directory holds one zbot's working trees and
/// marks: a second instance with the id of a live one is refused, and so is a second zbot on a data
/// directory in use, each with a sentence that says what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_with_a_live_id_or_a_used_data_directory_is_refused() {
    let cluster = Cluster::start(1, &["production"], None).await;
    let other = cluster.root.path().join("instance-x");
    std::fs::create_dir_all(&other).unwrap();
    let config = std::fs::read_to_string(cluster.root.path().join("instance-0/bot.toml")).unwrap();
    prepare_dir(&other, &config);
    let said =
        tokio::task::spawn_blocking(move || refused_run(&other, &["--instance-id", "test-0"]))
            .await
            .unwrap();
    assert!(
        said.contains("another zbot instance with the id `test-0` is running")
            && said.contains("--instance-id %H-%i"),
        "{said}"
    );
    let used = cluster.root.path().join("instance-0");
    let pid = cluster.instances[0].child.id();
    let said =
        tokio::task::spawn_blocking(move || refused_run(&used, &["--instance-id", "test-9"]))
            .await
            .unwrap();
    assert!(
        said.contains(&format!(
            "another zbot (process {pid}) is running on the data directory"
        )),
        "{said}"
    );
    // The first instance still serves, and deploys.
    cluster.deliver_everywhere(1, "production").await;
    cluster.succeeded(&[1]).await;
}

/// Cuts every connection to the database at `url` and refuses new ones (`on = false`), or lets them in
/// again, through the server's own `postgres` database.
async fn store_reachable(url: &str, on: bool) {
    use sqlx::Connection;
    let (server, name) = url.rsplit_once('/').unwrap();
    let mut admin = sqlx::postgres::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {on}"))
        .execute(&mut admin)
        .await
        .unwrap();
    if !on {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// A deploy that ends while the store is out of reach is not reported until its end is recorded: no
/// `success` GitHub would later see contradicted, and once the store is back the end is recorded and
/// reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_ending_while_the_store_is_away_is_reported_once_it_is_recorded() {
    let root_release = tempfile::tempdir().unwrap();
    let release = root_release.path().join("release");
    // A lease long enough that the store's return and the reconnect fit in the retries of the end.
    let hold = Hold::Until(&release);
    let cluster = Cluster::start_with(1, &["production"], hold, false, &[], "30s").await;
    cluster.deliver_everywhere(1, "production").await;
    cluster.started(1).await;
    store_reachable(&cluster.url, false).await;
    std::fs::write(&release, "").unwrap();
    // It finds the store away at the deploy's end.
    cluster.said(0, "cannot record the end yet").await;
    assert!(
        cluster.final_state(1).is_none(),
        "reported before it was recorded: {:?}",
        cluster.github.states(1)
    );
    store_reachable(&cluster.url, true).await;
    cluster.succeeded(&[1]).await;
    cluster.assert_ended_once(1);
}

/// A deploy whose end cannot be recorded for longer than a lease (the store away) is not reported as
/// it ended: once the store is back, it ends `error`, saying its end could not be recorded, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_ending_while_the_store_stays_away_past_a_lease_ends_as_error() {
    let root_release = tempfile::tempdir().unwrap();
    let release = root_release.path().join("release");
    let hold = Hold::Until(&release);
    let cluster = Cluster::start_with(1, &["production"], hold, false, &[], FAILOVER_LEASE).await;
    cluster.deliver_everywhere(1, "production").await;
    cluster.started(1).await;
    store_reachable(&cluster.url, false).await;
    std::fs::write(&release, "").unwrap();
    cluster
        .said(0, "cannot record the end, so it is not reported")
        .await;
    assert!(
        cluster.final_state(1).is_none(),
        "reported before it was recorded: {:?}",
        cluster.github.states(1)
    );
    store_reachable(&cluster.url, true).await;
    let last = cluster
        .github
        .wait_for("#1 to end", Duration::from_secs(60), |g| {
            g.statuses(1)
                .into_iter()
                .rfind(|s| ["success", "failure", "error"].contains(&s.state.as_str()))
        })
        .await;
    assert_eq!(
        (last.state.as_str(), last.description.as_str()),
        ("error", zbot::reply::STORE_LOST),
        "{}",
        cluster.logs()
    );
    cluster.assert_ended_once(1);
}

/// `zbot guard`'s signal mask and session, as the kernel shows them: (ignored signals, session id).
fn guard_setup(pid: u32) -> Option<(u64, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let session = after_name.split(' ').nth(3)?.parse().ok()?;
    Some((ignored, session))
}

/// A deploy's guard leaves zbot's session (Ctrl-Z or a kill of zbot's process group does not reach
/// it) and ignores the signals a terminal or a group kill sends: sent INT, TERM, HUP and TSTP, it
/// still kills the deploy's group when the heartbeats stop, and every process carrying the deploy's
/// marks outside it, and says so by its exit code (3), which zbot reads as "stopped by its guard".
/// Released, it exits 0 and kills nothing.
#[tokio::test]
async fn a_guard_ignores_terminal_signals_kills_when_unfed_and_says_so() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mask = |signals: &[i32]| signals.iter().fold(0u64, |m, s| m | 1 << (s - 1));
    let expected = mask(&zbot::runner::process::GUARD_IGNORES);
    for released in [false, true] {
        let mut deploy = std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = deploy.id() as i32;
        // A process of the deploy that left its group, found by its marks.
        let data = tempfile::tempdir().unwrap();
        let data_dir = std::fs::canonicalize(data.path()).unwrap();
        let mut escaped = std::process::Command::new("sleep")
            .arg("601")
            .process_group(0)
            .env("ZBOT_DEPLOYMENT_ID", "7")
            .env("ZBOT_DATA_DIR", &data_dir)
            .spawn()
            .unwrap();
        let mut guard = std::process::Command::new(env!("CARGO_BIN_EXE_zbot"))
            .args(["guard", &group.to_string(), "2000", "--deployment", "7"])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = guard.id();
        wait_until(
            "the guard to leave zbot's session and ignore the signals",
            Duration::from_secs(30),
            || {
                guard_setup(pid)
                    .filter(|&(ignored, session)| {
                        ignored & expected == expected && session == pid as i32
                    })
                    .map(|_| ())
            },
            || format!("{:?}", guard_setup(pid)),
        )
        .await;
        let mut stdin = guard.stdin.take().unwrap();
        if released {
            stdin.write_all(b"x").unwrap();
        } else {
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGTSTP] {
                unsafe { libc::kill(pid as i32, signal) };
            }
        }
        let status = tokio::task::spawn_blocking(move || guard.wait().unwrap())
            .await
            .unwrap();
        let deploy_alive = deploy.try_wait().unwrap().is_none();
        let escaped_alive = escaped.try_wait().unwrap().is_none();
        if released {
            assert_eq!(status.code(), Some(0), "released: {status:?}");
            assert!(
                deploy_alive && escaped_alive,
                "a released guard kills nothing"
            );
            deploy.kill().unwrap();
            escaped.kill().unwrap();
        } else {
            assert_eq!(status.code(), Some(3), "unfed: {status:?}");
            use std::os::unix::process::ExitStatusExt;
            let ended = deploy.wait().unwrap();
            assert_eq!(ended.signal(), Some(libc::SIGKILL), "the group was killed");
            let pid = escaped.id();
            let ended = wait_until(
                "the process that left the group to be killed",
                Duration::from_secs(30),
                || escaped.try_wait().unwrap(),
                || format!("pid {pid}"),
            )
            .await;
            assert_eq!(
                ended.signal(),
                Some(libc::SIGKILL),
                "the process that left the group was killed"
            );
        }
        let _ = escaped.wait();
        drop(stdin);
        let _ = deploy.wait();
    }
}
