//! What a deploy leaves running: a deploy ends when its program ends. Processes it started that left
//! its process group (`setsid`, a double fork, a group of their own) and hold its output do not hold
//! the deploy: they are named in its log and stopped, unless the recipe keeps them, and zbot, their
//! subreaper, reaps them. After a crash, the restarted zbot finds every process of an unfinished deploy
//! and stops it before that environment's queue moves, also when the crash came before zbot had
//! recorded the deploy's process group.

use std::path::Path;
use std::time::Duration;

use crate::fakes::github::FakeGitHub;
use crate::harness::{
    self, TOKEN, TestRepo, config_text, deploy, process_alive, setup_process, start_zbot,
    wait_for_file, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// The number a deploy script wrote into `file`, once the file is complete.
fn pid_in(file: &Path) -> i32 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", file.display()))
}

/// Gone from the process table: exited and reaped, not a zombie waiting for its parent.
fn reaped(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent of process `pid`.
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    after_name
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn log_of(dir: &Path, id: u64) -> String {
    std::fs::read_to_string(dir.join(format!("data/logs/{id}.log"))).unwrap()
}

/// A shell function for deploy scripts: `left_group PID COMMAND` returns once process PID is in a
/// process group other than the script's and runs COMMAND (`setsid` or a fork has become it), so it
/// is named by that command. A script that ended sooner would take it along with its group. And
/// `execed PID COMMAND` returns once process PID runs COMMAND (a background `nohup` has become it).
const LEFT_GROUP: &str = r#"left_group() {
  while :; do
    if [ "$(cut -d' ' -f5 /proc/$1/stat)" != "$(cut -d' ' -f5 /proc/$$/stat)" ]; then
      case "$(tr '\0' ' ' < /proc/$1/cmdline)" in "$2"*) return ;; esac
    fi
    sleep 0.02
  done
}
execed() {
  while :; do
    case "$(tr '\0' ' ' < /proc/$1/cmdline)" in "$2"*) return ;; esac
    sleep 0.02
  done
}
"#;

/// The sentence the log says a stopped process with.
fn stopped_line(pid: i32, command: &str) -> String {
    format!(
        "pid {pid} ({command}) left the deploy's process group and outlived its program: stopped (SIGTERM)"
    )
}

/// The script's `setsid sleep 600 &` keeps its stdout and stderr open: the deploy still ends with the
/// script, the sleep is named in the log and stopped, and zbot, to which it was re-parented when the
/// script exited, reaps it. Before, the deploy went on until the sleep ended (600 s, past the test's
/// deadline).
// zbot is started synchronously while the fake GitHub must keep serving: two runtime threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_process_holding_the_output_does_not_hold_the_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("daemon.pid");
    let script = format!(
        "#!/bin/sh\n{LEFT_GROUP}echo starting a daemon\nsetsid sleep 600 &\necho $! > {pid}\nleft_group $! sleep\necho script done\n",
        pid = pid_file.display()
    );
    let (github, sha, zbot) = setup_process(&dir, &[("script/deploy", &script, true)], "").await;
    deploy(zbot.addr, 3101, "v0.0.1", &sha, "production").await;
    let last = github.final_status(3101, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");

    let daemon = pid_in(&pid_file);
    let log = log_of(dir.path(), 3101);
    assert!(log.contains("script done"), "{log}");
    assert!(log.contains(&stopped_line(daemon, "sleep 600")), "{log}");
    assert!(
        !process_alive(daemon),
        "the detached sleep {daemon} outlived its deploy"
    );
    wait_until(
        &format!("zbot to reap the sleep {daemon} it inherited"),
        DEADLINE,
        || reaped(daemon),
    )
    .await;
}

/// Every way out of the process group a script can take: each process is found by the deploy's
/// marks in its environment, named in the log with its command line, and stopped; one that ignores
/// SIGTERM gets SIGKILL. A `nohup … &` that keeps the output stays in the group and goes with it.
#[tokio::test]
async fn every_way_out_of_the_group_is_found_named_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(format!("{name}.pid"));
    let its_child = at("its-child");
    let ignoring = dir.path().join("ignoring-sigterm");
    let script = format!(
        r#"#!/bin/sh
{LEFT_GROUP}echo "leaving the group in every way"
setsid sleep 601 &
echo $! > {setsid}
left_group $! sleep
( setsid sleep 602 & echo $! > {double_fork} )
left_group $(cat {double_fork}) sleep
perl -e 'setpgrp(0, 0); sleep 603' &
echo $! > {own_group}
left_group $! perl
setsid perl -e '$SIG{{TERM}} = "IGNORE"; open my $f, ">", $ARGV[0]; close $f; sleep 604' {ignoring} &
echo $! > {ignores_term}
{wait_ignoring}setsid sleep 605 < /dev/null > /dev/null 2>&1 &
echo $! > {quiet}
left_group $! sleep
nohup sleep 606 &
echo $! > {nohup}
execed $! "sleep 606"
setsid sh -c 'sleep 607 & echo $! > {its_child}; wait' &
echo $! > {parent}
left_group $! sh
{wait_child}left_group $(cat {its_child}) sleep
echo "all started"
"#,
        setsid = at("setsid").display(),
        double_fork = at("double-fork").display(),
        own_group = at("own-group").display(),
        ignoring = ignoring.display(),
        ignores_term = at("ignores-term").display(),
        wait_ignoring = wait_for_file(&ignoring),
        quiet = at("quiet").display(),
        nohup = at("nohup").display(),
        its_child = its_child.display(),
        parent = at("parent").display(),
        wait_child = wait_for_file(&its_child),
    );
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("script/deploy", &script, true)], "v0.0.1");
    let zbot = start_zbot(dir.path(), &config_text(&github, &repo, "", "")).await;
    deploy(zbot.addr, 3201, "v0.0.1", &sha, "production").await;
    let last = github.final_status(3201, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    let log = log_of(dir.path(), 3201);
    assert!(log.contains("all started"), "{log}");

    let named = [
        ("setsid", "sleep 601"),
        ("double-fork", "sleep 602"),
        ("own-group", "perl -e setpgrp(0, 0); sleep 603"),
        ("quiet", "sleep 605"),
        ("parent", "sh -c sleep 607 & echo $! > "),
        ("its-child", "sleep 607"),
    ];
    for (name, command) in named {
        let pid = pid_in(&at(name));
        assert!(
            log.lines()
                .any(|line| line.contains(&format!("pid {pid} ({command}"))
                    && line.contains("outlived its program: stopped (SIGTERM)")),
            "{name}: pid {pid} is not named as stopped: {log}"
        );
    }
    // The `nohup` one stayed in the group: it goes with the group, and is named too.
    let in_group = pid_in(&at("nohup"));
    assert!(
        log.lines()
            .any(|line| line.contains(&format!("pid {in_group} (sleep 606"))
                && line.contains("still running in the deploy's process group")),
        "the process left in the group is named: {log}"
    );
    let stubborn = pid_in(&at("ignores-term"));
    assert!(
        log.lines()
            .any(|line| line.contains(&format!("pid {stubborn} ("))
                && line.contains("killed (SIGKILL): still running 5s after SIGTERM")),
        "{log}"
    );
    for name in named
        .iter()
        .map(|(name, _)| *name)
        .chain(["ignores-term", "nohup"])
    {
        let pid = pid_in(&at(name));
        assert!(!process_alive(pid), "{name} ({pid}) outlived its deploy");
    }
    zbot.stop().await.unwrap();
}

/// The recipe of a daemon a deploy starts on purpose (`keep_children = true`): the daemon holds the
/// script's output, yet the deploy ends with the script; the log names the daemon as kept and says its
/// later output is dropped; the daemon goes on running (a later line does not kill it with a closed
/// pipe), adopted by zbot, which reaps it when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipe_may_keep_the_daemons_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("daemon.pid");
    let wrote_late = dir.path().join("wrote-late");
    let script = format!(
        "#!/bin/sh\n{LEFT_GROUP}echo starting the daemon\n\
         ( setsid sh -c 'echo daemon up; sleep 5; echo late line; touch {late}; exec sleep 600' & echo $! > {pid} )\n\
         left_group $(cat {pid}) sh\necho script done\n",
        late = wrote_late.display(),
        pid = pid_file.display()
    );
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("script/start-daemon", &script, true)], "v0.0.1");
    harness::prepare_dir(
        dir.path(),
        &config_text(&github, &repo, "provider = \"daemon\"", ""),
    );
    std::fs::write(
        dir.path().join("commands/daemon.toml"),
        "description = \"the repository's script/start-daemon; the daemon it starts runs on\"\n\
         program = \"./script/start-daemon\"\nkeep_children = true\n",
    )
    .unwrap();
    let zbot = harness::ZbotProcess::start(dir.path());
    deploy(zbot.addr, 3301, "v0.0.1", &sha, "production").await;
    let last = github.final_status(3301, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");

    let daemon = pid_in(&pid_file);
    let log = log_of(dir.path(), 3301);
    assert!(
        log.contains(&format!(
            "pid {daemon} (sh -c echo daemon up; sleep 5; echo late line; "
        )) && log.contains(
            "left the deploy's process group and outlived its program: left running: the recipe keeps the processes it starts (keep_children = true)"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "output still arriving 2s after the deploy's program ended was dropped: a process it left running holds it open"
        ),
        "{log}"
    );
    wait_until("the daemon's late line", DEADLINE, || wrote_late.exists()).await;
    assert!(process_alive(daemon), "the kept daemon {daemon} died");
    assert_eq!(
        parent_of(daemon),
        zbot.child.id() as i32,
        "zbot adopted the daemon"
    );
    assert!(
        !log_of(dir.path(), 3301).contains("out | late line"),
        "output after the grace is dropped"
    );

    // SAFETY: signals the daemon this test's deploy started, by its number.
    unsafe {
        libc::kill(daemon, libc::SIGKILL);
    }
    wait_until(
        &format!("zbot to reap the daemon {daemon} it adopted"),
        DEADLINE,
        || reaped(daemon),
    )
    .await;
}

/// Holds SQLite's write lock on zbot's store (`BEGIN IMMEDIATE`) until dropped.
struct StoreLock(sqlx::sqlite::SqliteConnection);

impl StoreLock {
    async fn take(data_dir: &Path) -> StoreLock {
        use sqlx::Connection;
        let url = format!("sqlite://{}", data_dir.join("zbot.sqlite").display());
        let mut connection = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .unwrap();
        StoreLock(connection)
    }

    /// The process group recorded for `deployment_id` (read inside the held transaction).
    async fn process_group(&mut self, deployment_id: u64) -> Option<i64> {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT process_group FROM deployments WHERE deployment_id = ?",
        )
        .bind(deployment_id as i64)
        .fetch_one(&mut self.0)
        .await
        .unwrap()
    }
}

/// zbot is killed after the recipe started but before it recorded the deploy's process group (it
/// waits for the store's write lock, which the test holds). After the restart the interrupted deploy
/// ends `error`, and every process of it — the script, its child, a `setsid` one — is stopped before
/// the next deploy of that environment runs, which therefore runs alone; zbot's output names them,
/// the planted token in a command line redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_group_is_recorded_leaves_nothing_running_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let (script_pid, escaped_pid) = (file("script.pid"), file("escaped.pid"));
    let script = format!(
        r#"#!/bin/sh
echo "deploy $ZBOT_DEPLOYMENT_ID"
if [ "$ZBOT_DEPLOYMENT_ID" = 3401 ]; then
  setsid perl -e 'sleep 600' {TOKEN} &
  echo $! > {escaped}
  echo $$ > {script}
  sleep 600
fi
for pid in $(cat {script} {escaped}); do
  grep -qv ') Z ' /proc/$pid/stat 2>/dev/null && echo "a process of 3401 is still running: $pid"
done
echo done
"#,
        escaped = escaped_pid.display(),
        script = script_pid.display(),
    );
    let (github, sha, mut zbot) =
        setup_process(&dir, &[("script/deploy", &script, true)], "").await;
    // 3401 is held before its recipe starts (GitHub has not answered its gist, its first call),
    // while 3402 queues behind it and the test takes the store's write lock.
    let release = github.hold_gists();
    deploy(zbot.addr, 3401, "v0.0.1", &sha, "production").await;
    github
        .wait_for("3401's gist asked for", DEADLINE, |g| {
            (g.gists_asked() == 1).then_some(())
        })
        .await;
    deploy(zbot.addr, 3402, "v0.0.1", &sha, "production").await;
    github
        .wait_for("3402 queued", DEADLINE, |g| {
            g.states(3402).contains(&"queued".to_string()).then_some(())
        })
        .await;
    let mut lock = StoreLock::take(&dir.path().join("data")).await;
    release.send(true).unwrap();
    wait_until("3401's script to start", DEADLINE, || {
        std::fs::read_to_string(&script_pid).is_ok_and(|t| t.ends_with('\n'))
            && std::fs::read_to_string(&escaped_pid).is_ok_and(|t| t.ends_with('\n'))
    })
    .await;
    zbot.kill_hard();
    assert_eq!(
        lock.process_group(3401).await,
        None,
        "zbot died before it recorded the process group"
    );
    drop(lock);
    let (script, escaped) = (pid_in(&script_pid), pid_in(&escaped_pid));
    assert!(
        process_alive(script) && process_alive(escaped),
        "the crash left the recipe running"
    );

    let zbot = harness::ZbotProcess::start(dir.path());
    let interrupted = github.final_status(3401, DEADLINE).await;
    assert_eq!(
        (interrupted.state.as_str(), interrupted.description.as_str()),
        ("error", "zbot restarted during this deploy")
    );
    let next = github.final_status(3402, DEADLINE).await;
    let log = log_of(dir.path(), 3402);
    assert_eq!(next.state, "success", "{log}");
    assert!(log.contains("done"), "{log}");
    assert!(
        !log.contains("is still running"),
        "3402 ran while 3401 was still running: {log}"
    );
    for pid in [script, escaped] {
        assert!(!process_alive(pid), "{pid} of 3401 was left running");
    }
    let output = zbot.output.lock().unwrap().clone();
    assert!(
        output.lines().any(
            |line| line.contains("stopped a process of the interrupted deploy")
                && line.contains(&format!("pid={escaped}"))
                && line.contains("perl -e sleep 600 ***")
        ),
        "{output}"
    );
    assert!(!output.contains(TOKEN), "the token leaked: {output}");
}
