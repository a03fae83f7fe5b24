//! The deployer: signed webhooks in, real git checkouts and real Fabric runs, statuses and gists on
//! the fake GitHub out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fakes::github::FakeGitHub;
use crate::harness::{
    self, FABFILE, FAILING_FABFILE, TestRepo, config_text, deliver, deploy, deployment_event, http,
    process_alive, setup_process, start_zbot, wait_for_file,
};

const DEADLINE: Duration = Duration::from_secs(60);

struct Setup {
    dir: tempfile::TempDir,
    github: FakeGitHub,
    zbot: zbot::app::Running,
}

async fn setup(
    files: &[(&str, &str, bool)],
    extra_app: &str,
    deploy_section: &str,
) -> (Setup, String) {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(files, "v0.0.1");
    let config = config_text(&github, &repo, extra_app, deploy_section);
    let zbot = start_zbot(dir.path(), &config).await;
    (Setup { dir, github, zbot }, sha)
}

/// The last line of deployment `id`'s log on disk, without its time stamp.
fn last_log_line(s: &Setup, id: u64) -> String {
    let path = s.dir.path().join(format!("data/logs/{id}.log"));
    let log = std::fs::read_to_string(&path).unwrap();
    let last = log.lines().last().unwrap_or_default();
    last.split_once(' ')
        .map_or(last, |(_, rest)| rest)
        .to_string()
}

/// zbot deploying `fabfile` (with the fabric recipe) as deployment `id` of `v0.0.1` to production, to
/// its last status.
async fn run_fabfile(fabfile: &str, id: u64) -> (Setup, crate::fakes::github::Status) {
    let (s, sha) = setup(
        &[("fabfile.py", fabfile, false)],
        "provider = \"fabric\"",
        "",
    )
    .await;
    deploy(s.zbot.addr, id, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(id, DEADLINE).await;
    (s, last)
}

#[tokio::test]
async fn a_signed_deployment_runs_real_fabric_and_reports_to_github() {
    let (s, last) = run_fabfile(FABFILE, 1001).await;
    assert_eq!(
        s.github.states(1001),
        ["in_progress", "success"],
        "{:#?}",
        s.github.statuses(1001)
    );
    assert!(
        last.description.starts_with("Deployed v0.0.1"),
        "{}",
        last.description
    );
    assert_eq!(
        last.environment_url.as_deref(),
        Some("https://adxstat.example.com")
    );
    let gist_url = last.log_url.clone().expect("the status links the log");
    let in_progress = &s.github.statuses(1001)[0];
    assert_eq!(in_progress.log_url.as_deref(), Some(gist_url.as_str()));

    let gist = s
        .github
        .gist_by_url(&gist_url)
        .expect("the log_url is the gist");
    assert!(!gist.public);
    assert_eq!(
        gist.description,
        "zbot deploy #1001: octo/adxstat@v0.0.1 to production"
    );
    let log = &gist.files["deploy-1001.log"];
    assert!(log.contains("deploying v0.0.1 to ['production']"), "{log}");
    assert!(log.contains("local step for v0.0.1"), "{log}");
    assert!(
        log.contains("deploy:branch_name=v0.0.1"),
        "the log names the command: {log}"
    );
    let ending = last_log_line(&s, 1001);
    assert!(
        ending.starts_with("zbot | success: exit 0 in ") && ending.ends_with('s'),
        "the log on disk ends with how the deploy ended: {ending}"
    );
    s.zbot.stop().await.unwrap();
}

/// A fabfile that writes to stdout and stderr in turns, each line only once the one before it is in
/// zbot's log (waiting with a deadline): the log must show them in the program's order.
const INTERLEAVING_FABFILE: &str = r#"import os, sys, time
from fabric.api import env, task
env.roledefs = {'production': ['localhost']}

def log_file():
    name = os.environ['ZBOT_DEPLOYMENT_ID'] + '.log'
    here = os.getcwd()
    while here != '/':
        candidate = os.path.join(here, 'logs', name)
        if os.path.exists(candidate):
            return candidate
        here = os.path.dirname(here)

def logged(line):
    deadline = time.time() + 20
    while line not in open(log_file()).read():
        if time.time() > deadline:
            sys.stderr.write('never logged: %s\n' % line)
            sys.exit(7)
        time.sleep(0.02)

@task
def deploy(branch_name='master'):
    for n in range(3):
        print('to stdout %d' % n)
        logged('to stdout %d' % n)
        sys.stderr.write('to stderr %d\n' % n)
        logged('to stderr %d' % n)
"#;

#[tokio::test]
async fn fab_output_is_logged_in_the_programs_order() {
    let (s, last) = run_fabfile(INTERLEAVING_FABFILE, 1010).await;
    let gist = s
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let log = &gist.files["deploy-1010.log"];
    assert_eq!(last.state, "success", "{log}");
    let order: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once(" | ").map(|(_, text)| text))
        .filter(|text| text.contains("to stdout ") || text.contains("to stderr "))
        .collect();
    assert_eq!(
        order,
        [
            "to stdout 0",
            "to stderr 0",
            "to stdout 1",
            "to stderr 1",
            "to stdout 2",
            "to stderr 2"
        ],
        "{log}"
    );
    assert!(
        log.contains("out | to stdout 0") && log.contains("err | to stderr 0"),
        "{log}"
    );
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_fabfile_ends_failure_with_its_lines_in_the_gist() {
    let (s, sha) = setup(&[("fabfile.py", FAILING_FABFILE, false)], "", "").await;
    deploy(s.zbot.addr, 1002, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(1002, DEADLINE).await;
    assert_eq!(last.state, "failure", "{last:?}");
    assert!(
        last.description.contains("exited with code 1"),
        "{}",
        last.description
    );
    let gist = s
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let log = &gist.files["deploy-1002.log"];
    assert!(
        log.contains("migration 42 failed: <b>users</b> & co"),
        "{log}"
    );
    assert!(log.contains("Fatal error"), "{log}");
    let ending = last_log_line(&s, 1002);
    assert!(
        ending.starts_with("zbot | failure: exit 1 in ") && ending.contains("exited with code 1"),
        "the log on disk ends with how the deploy ended: {ending}"
    );
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn no_matching_recipe_is_an_error_that_says_so() {
    let (s, sha) = setup(&[("README.md", "nothing to deploy here", false)], "", "").await;
    deploy(s.zbot.addr, 1003, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(1003, DEADLINE).await;
    assert_eq!(last.state, "error");
    assert!(
        last.description.contains("no deploy recipe matched"),
        "{}",
        last.description
    );
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_sha_is_an_error_that_says_so() {
    let (s, _) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let missing = "0123456789abcdef0123456789abcdef01234567";
    deploy(s.zbot.addr, 1004, "v9.9.9", missing, "production").await;
    let last = s.github.final_status(1004, DEADLINE).await;
    assert_eq!(last.state, "error");
    assert!(
        last.description
            .contains(&format!("commit {missing} is not in octo/adxstat")),
        "{}",
        last.description
    );
    s.zbot.stop().await.unwrap();
}

/// Locks set by GitHub deployments (Heaven's `deploy:lock` / `deploy:unlock`) are their GitHub
/// creator's (`github:<login>`): others are refused naming the holder, the holder deploys and unlocks.
#[tokio::test]
async fn a_locked_environment_is_an_error_naming_the_holder() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    // Deployment `id` of `task` made on GitHub by `login`; GitHub's final status.
    let made_by = |id: u64, task: &'static str, login: &'static str, payload: Value| {
        let event = crate::harness::by(
            deployment_event(id, "v0.0.1", &sha, "production", task, payload),
            login,
        );
        let s = &s;
        async move {
            let delivery = format!("d-{id}");
            assert_eq!(
                deliver(s.zbot.addr, "deployment", &delivery, &event)
                    .await
                    .0,
                202
            );
            s.github.final_status(id, DEADLINE).await
        }
    };
    let locked = made_by(
        1005,
        "deploy:lock",
        "alice",
        json!({"notify": {"user": "U0ALICE"}, "reason": "database migration"}),
    )
    .await;
    assert_eq!(
        (locked.state.as_str(), locked.description.as_str()),
        ("success", "adxstat locked on production by github:alice")
    );
    let refused = made_by(1006, "deploy", "bob", json!({"notify": {"user": "U0BOB"}})).await;
    assert_eq!(refused.state, "error");
    assert!(
        refused
            .description
            .starts_with("adxstat is locked on production by github:alice since "),
        "{}",
        refused.description
    );
    assert!(
        refused.description.ends_with(": database migration"),
        "{}",
        refused.description
    );

    // The holder still deploys, and unlocks; then others deploy again.
    let own = made_by(1007, "deploy", "alice", json!({})).await;
    assert_eq!(own.state, "success");
    let unlocked = made_by(1008, "deploy:unlock", "alice", json!({})).await;
    assert_eq!(
        unlocked.description,
        "adxstat unlocked on production by github:alice"
    );
    let again = made_by(1009, "deploy", "bob", json!({})).await;
    assert_eq!(again.state, "success");
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_timeout_is_an_error_and_kills_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!(
        "#!/bin/sh\necho starting a long deploy\n( sleep 1000 & echo $! > {} )\nsleep 1000\n",
        pid_file.display()
    );
    let (s, sha) = setup(&[("script/deploy", &script, true)], "timeout = \"2s\"", "").await;
    deploy(s.zbot.addr, 1010, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(1010, DEADLINE).await;
    assert_eq!(last.state, "error");
    assert_eq!(
        last.description,
        "Timed out after 2s: the deploy was stopped"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !process_alive(pid),
        "the grandchild sleep {pid} survived the timeout"
    );
    let gist = s
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    assert!(gist.files["deploy-1010.log"].contains("DEPLOYMENT TIMED OUT AFTER 2 SECONDS"));
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_runs() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let body = serde_json::to_vec(&deployment_event(
        1011,
        "v0.0.1",
        &sha,
        "production",
        "deploy",
        json!({}),
    ))
    .unwrap();
    let base = |sig: Option<String>| {
        let mut h = vec![
            ("Content-Type", "application/json".to_string()),
            ("X-GitHub-Event", "deployment".to_string()),
            ("X-GitHub-Delivery", "bad-1".to_string()),
        ];
        if let Some(sig) = sig {
            h.push(("X-Hub-Signature-256", sig));
        }
        h
    };
    for signature in [
        None,
        Some("sha256=00".to_string()),
        Some(harness::sign("the-wrong-secret-0123456789", &body)),
        Some(harness::sign(harness::SECRET, &body).replace("sha256=", "sha1=")),
        Some(harness::sign(harness::SECRET, b"another body")),
    ] {
        let (status, text) = http(
            s.zbot.addr,
            "POST",
            "/webhooks/github",
            &base(signature),
            &body,
        )
        .await;
        assert_eq!((status, text.as_str()), (401, ""));
    }
    let (status, health) = http(s.zbot.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200, "{health}");
    assert!(health.starts_with("ok\ninstance: "), "{health}");
    assert!(health.contains("store: sqlite ok"), "{health}");
    assert!(
        s.github.all_statuses().is_empty(),
        "nothing may run: {:#?}",
        s.github.all_statuses()
    );
    assert!(
        s.zbot
            .store
            .get(zbot::domain::DeploymentId(1011))
            .await
            .unwrap()
            .is_none()
    );
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn replays_and_redeliveries_run_once() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let event = deployment_event(1012, "v0.0.1", &sha, "production", "deploy", json!({}));
    assert_eq!(
        deliver(s.zbot.addr, "deployment", "same-delivery", &event)
            .await
            .0,
        202
    );
    assert_eq!(
        deliver(s.zbot.addr, "deployment", "same-delivery", &event)
            .await
            .0,
        202
    );
    assert_eq!(
        deliver(s.zbot.addr, "deployment", "another-delivery", &event)
            .await
            .0,
        202
    );
    s.github.final_status(1012, DEADLINE).await;
    // A later deployment finishing shows the queue has moved past any duplicate.
    deploy(s.zbot.addr, 1013, "v0.0.1", &sha, "production").await;
    s.github.final_status(1013, DEADLINE).await;
    assert_eq!(s.github.states(1012), ["in_progress", "success"]);
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn other_events_and_malformed_bodies_get_the_documented_answers() {
    let (s, _) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let ping: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::support::repo_root().join("tests/fixtures/github/ping__payload.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(deliver(s.zbot.addr, "ping", "p-1", &ping).await.0, 200);
    assert_eq!(
        deliver(
            s.zbot.addr,
            "push",
            "p-2",
            &json!({"ref": "refs/heads/main"})
        )
        .await
        .0,
        202
    );
    let junk = b"{not json";
    let headers = [
        ("X-GitHub-Event", "deployment".to_string()),
        ("X-GitHub-Delivery", "p-3".to_string()),
        ("X-Hub-Signature-256", harness::sign(harness::SECRET, junk)),
    ];
    assert_eq!(
        http(s.zbot.addr, "POST", "/webhooks/github", &headers, junk)
            .await
            .0,
        400
    );
    let huge = vec![b' '; 26 * 1024 * 1024];
    let headers = [
        ("X-GitHub-Event", "deployment".to_string()),
        ("X-Hub-Signature-256", harness::sign(harness::SECRET, &huge)),
    ];
    assert_eq!(
        http(s.zbot.addr, "POST", "/webhooks/github", &headers, &huge)
            .await
            .0,
        413
    );
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn form_encoded_deliveries_are_accepted() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let event = deployment_event(1014, "v0.0.1", &sha, "production", "deploy", json!({}));
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &event.to_string())
        .finish();
    let headers = [
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("X-GitHub-Event", "deployment".to_string()),
        ("X-GitHub-Delivery", "f-1".to_string()),
        (
            "X-Hub-Signature-256",
            harness::sign(harness::SECRET, body.as_bytes()),
        ),
    ];
    assert_eq!(
        http(
            s.zbot.addr,
            "POST",
            "/webhooks/github",
            &headers,
            body.as_bytes()
        )
        .await
        .0,
        202
    );
    assert_eq!(s.github.final_status(1014, DEADLINE).await.state, "success");
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn fabric_deploys_over_real_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = crate::sshd::Sshd::start(dir.path());
    let target = dir.path().join("server/deployed-ref");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let fabfile = format!(
        r#"from fabric.api import env, run, task
env.roledefs = {{'production': ['{user}@127.0.0.1:{port}']}}
env.key_filename = '{key}'
env.disable_known_hosts = True
env.abort_on_prompts = True

@task
def deploy(branch_name='master'):
    run("echo %s > {target}" % branch_name)
    run("echo remote step for %s on the server" % branch_name)
"#,
        user = sshd.user,
        port = sshd.port,
        key = sshd.client_key.display(),
        target = target.display()
    );
    let (s, sha) = setup(&[("fabfile.py", &fabfile, false)], "", "").await;
    deploy(s.zbot.addr, 1101, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(1101, DEADLINE).await;
    let gist = s
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let log = &gist.files["deploy-1101.log"];
    assert_eq!(last.state, "success", "{log}");
    assert!(
        log.contains(&format!(
            "[{}@127.0.0.1:{}] out: remote step for v0.0.1 on the server",
            sshd.user, sshd.port
        )),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap().trim(), "v0.0.1");
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn one_deploy_at_a_time_per_environment_and_environments_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release-first-deploy");
    let script = format!(
        "#!/bin/sh\necho \"deploy $ZBOT_DEPLOYMENT_ID to $DEPLOY_ENV\"\nif [ \"$ZBOT_DEPLOYMENT_ID\" = 1201 ]; then\n{}fi\n",
        wait_for_file(&release)
    );
    let (s, sha) = setup(&[("script/deploy", &script, true)], "", "").await;
    deploy(s.zbot.addr, 1201, "v0.0.1", &sha, "production").await;
    s.github.in_progress(1201, DEADLINE).await;
    deploy(s.zbot.addr, 1202, "v0.0.1", &sha, "production").await;
    deploy(s.zbot.addr, 1203, "v0.0.1", &sha, "staging").await;

    // Staging runs to the end while production's first deploy is still running: they overlap.
    assert_eq!(s.github.final_status(1203, DEADLINE).await.state, "success");
    let queued = s
        .github
        .wait_for("1202 queued", DEADLINE, |g| {
            g.statuses(1202).first().cloned()
        })
        .await;
    assert_eq!(queued.state, "queued");
    assert_eq!(
        queued.description,
        "Queued: 1 deploy(s) of octo/adxstat to production ahead"
    );
    assert!(
        s.github
            .statuses(1201)
            .iter()
            .all(|st| st.state == "in_progress"),
        "1201 must still run: {:#?}",
        s.github.all_statuses()
    );

    std::fs::write(&release, "go").unwrap();
    assert_eq!(s.github.final_status(1202, DEADLINE).await.state, "success");
    let order: Vec<(u64, String)> = s
        .github
        .all_statuses()
        .into_iter()
        .map(|st| (st.deployment_id, st.state))
        .collect();
    let at = |id: u64, state: &str| {
        order
            .iter()
            .position(|(i, s)| *i == id && s == state)
            .unwrap()
    };
    assert!(at(1201, "success") < at(1202, "in_progress"), "{order:?}");
    assert_eq!(s.github.states(1202), ["queued", "in_progress", "success"]);
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_gist_the_status_links_zbots_own_log_page() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    s.github.fail_gists();
    deploy(s.zbot.addr, 1301, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(1301, DEADLINE).await;
    assert_eq!(
        last.state, "success",
        "a gist that cannot be written never fails the deploy"
    );
    let url = last.log_url.unwrap();
    let page = format!("http://{}/deployments/1301/log?token=", s.zbot.addr);
    assert!(url.starts_with(&page), "{url}");
    let path = url
        .strip_prefix(&format!("http://{}", s.zbot.addr))
        .unwrap();
    let (status, log) = http(s.zbot.addr, "GET", path, &[], b"").await;
    assert_eq!(status, 200);
    assert!(log.contains("local step for v0.0.1"), "{log}");
    s.zbot.stop().await.unwrap();
}

/// A deploy printing 100 MB: zbot's memory stays flat, the gist keeps head and tail under 1 MB, and
/// the whole log is on disk. zbot runs as its own process so its memory can be read.
// zbot is started synchronously while the fake GitHub must keep serving: two runtime threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_deploy_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let script = "#!/bin/sh\necho FIRST-LINE\nhead -c 104857600 /dev/zero | tr '\\0' x | fold -w 99\necho\necho LAST-LINE\n";
    let (github, sha, zbot) = setup_process(&dir, &[("script/deploy", script, true)], "").await;
    let idle_kib = zbot.peak_rss_kib();
    deploy(zbot.addr, 1401, "v0.0.1", &sha, "production").await;
    let last = github.final_status(1401, Duration::from_secs(300)).await;
    assert_eq!(last.state, "success");
    let peak_kib = zbot.peak_rss_kib();
    let log = std::fs::read_to_string(dir.path().join("data/logs/1401.log")).unwrap();
    assert!(
        log.len() > 104_857_600,
        "the whole log is on disk ({} bytes)",
        log.len()
    );
    // FIRST-LINE, the x lines (the last one partial), LAST-LINE.
    assert_eq!(
        log.matches(" out | ").count(),
        1 + 104_857_600_usize.div_ceil(99) + 1,
        "every line is in the log"
    );
    let gist = github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let text = &gist.files["deploy-1401.log"];
    assert!(text.len() < 1_000_000, "gist file is {} bytes", text.len());
    assert!(
        text.contains("FIRST-LINE") && text.contains("LAST-LINE"),
        "head and tail are kept"
    );
    assert!(
        text.contains("bytes left out here; the whole log"),
        "the cut is said"
    );
    eprintln!("zbot peak RSS: idle {idle_kib} KiB, after a 100 MB deploy {peak_kib} KiB");
    assert!(
        peak_kib < idle_kib + 16 * 1024,
        "memory grew from {idle_kib} KiB to {peak_kib} KiB"
    );
}

/// SIGKILL during a deploy: after a restart the interrupted deployment ends `error`, its processes are
/// gone, and the queued one runs. The planted token never appears in the log, the gist or zbot's output.
// zbot is started synchronously while the fake GitHub must keep serving: two runtime threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_zbot_ends_interrupted_deploys_and_runs_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("stuck.pid");
    let script = format!(
        "#!/bin/sh\necho \"the token is {token}\"\n\
         if [ \"$ZBOT_DEPLOYMENT_ID\" = 1501 ]; then echo $$ > {pid}; sleep 1000; fi\necho done\n",
        token = harness::TOKEN,
        pid = pid_file.display()
    );
    let (github, sha, mut zbot) =
        setup_process(&dir, &[("script/deploy", &script, true)], "").await;
    deploy(zbot.addr, 1501, "v0.0.1", &sha, "production").await;
    // The script has started once its first line reached the live gist.
    github
        .wait_for("1501's script to start", DEADLINE, |g| {
            let url = g.statuses(1501).first()?.log_url.clone()?;
            g.gist_by_url(&url)?.files["deploy-1501.log"]
                .contains("the token is")
                .then_some(())
        })
        .await;
    deploy(zbot.addr, 1502, "v0.0.1", &sha, "production").await;
    github
        .wait_for("1502 queued", DEADLINE, |g| {
            g.states(1502).contains(&"queued".to_string()).then_some(())
        })
        .await;
    let stuck: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    zbot.kill_hard();
    let first_output = zbot.output.lock().unwrap().clone();

    let zbot = harness::ZbotProcess::start(dir.path());
    let interrupted = github.final_status(1501, DEADLINE).await;
    assert_eq!(
        (interrupted.state.as_str(), interrupted.description.as_str()),
        ("error", "zbot restarted during this deploy")
    );
    assert!(
        !process_alive(stuck),
        "the interrupted deploy's process {stuck} was left running:\n{first_output}\n{}",
        zbot.output.lock().unwrap()
    );
    let queued = github.final_status(1502, DEADLINE).await;
    assert_eq!(queued.state, "success");

    let gist = github
        .gist_by_url(queued.log_url.as_deref().unwrap())
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("data/logs/1502.log")).unwrap();
    assert!(log.contains("the token is ***"), "{log}");
    assert!(
        github
            .authorizations()
            .iter()
            .any(|a| a.contains(harness::TOKEN)),
        "the token was in use"
    );
    let output = zbot.output.lock().unwrap().clone();
    for (what, text) in [
        ("log", log.as_str()),
        ("gist", gist.files["deploy-1502.log"].as_str()),
        ("zbot's output", output.as_str()),
    ] {
        assert!(
            !text.contains(harness::TOKEN),
            "the token leaked into the {what}"
        );
    }
}

/// SIGTERM stops taking new work but lets a running deploy finish (within the grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_deploy_finish() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let script = format!(
        "#!/bin/sh\necho waiting\n{}echo finished\n",
        wait_for_file(&release)
    );
    let (github, sha, mut zbot) =
        setup_process(&dir, &[("script/deploy", &script, true)], "").await;
    deploy(zbot.addr, 1601, "v0.0.1", &sha, "production").await;
    github.in_progress(1601, DEADLINE).await;
    // SAFETY: signals our own child.
    unsafe {
        libc::kill(zbot.child.id() as i32, libc::SIGTERM);
    }
    let stopping = tokio::task::spawn_blocking(move || {
        let status = zbot.child.wait().unwrap();
        (status, zbot)
    });
    std::fs::write(&release, "go").unwrap();
    let (status, _zbot) = stopping.await.unwrap();
    assert!(
        status.success(),
        "zbot exits cleanly after SIGTERM: {status}"
    );
    assert_eq!(github.states(1601), ["in_progress", "success"]);
}

/// The working tree is reused from deploy to deploy, left-overs are cleaned, a broken tree is rebuilt.
#[tokio::test]
async fn a_reused_tree_is_cleaned_and_a_broken_one_rebuilt() {
    let script =
        "#!/bin/sh\necho \"version $(cat VERSION)\"\n[ -e junk ] && echo JUNK-PRESENT\nexit 0\n";
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let v1 = repo.commit(
        &[("script/deploy", script, true), ("VERSION", "one", false)],
        "v0.0.1",
    );
    let zbot = start_zbot(dir.path(), &config_text(&github, &repo, "", "")).await;
    let log_of =
        |id: u64| std::fs::read_to_string(dir.path().join(format!("data/logs/{id}.log"))).unwrap();
    let tree = dir.path().join("data/work/adxstat/production");

    deploy(zbot.addr, 1701, "v0.0.1", &v1, "production").await;
    assert_eq!(github.final_status(1701, DEADLINE).await.state, "success");
    assert!(log_of(1701).contains("tree created"));

    std::fs::write(tree.join("junk"), "left by a previous run").unwrap();
    std::fs::write(tree.join("VERSION"), "edited by hand").unwrap();
    let v2 = repo.commit(&[("VERSION", "two", false)], "v0.0.2");
    deploy(zbot.addr, 1702, "v0.0.2", &v2, "production").await;
    assert_eq!(github.final_status(1702, DEADLINE).await.state, "success");
    let log = log_of(1702);
    assert!(
        log.contains("version two") && !log.contains("JUNK-PRESENT"),
        "{log}"
    );
    assert!(log.contains("fetched, tree reused"), "{log}");

    std::fs::write(tree.join(".git"), "gitdir: /nowhere").unwrap();
    deploy(zbot.addr, 1703, "v0.0.1", &v1, "production").await;
    assert_eq!(github.final_status(1703, DEADLINE).await.state, "success");
    let log = log_of(1703);
    assert!(
        log.contains("version one") && log.contains("cache hit, tree created"),
        "{log}"
    );
    zbot.stop().await.unwrap();
}

/// As a GitHub App: the installation token is fetched with the App's JWT and used for the statuses.
#[tokio::test]
async fn a_github_app_installation_posts_the_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let made = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let config = config_text(&github, &repo, "", "").replace(
        &format!("token = \"{}\"", harness::TOKEN),
        &format!(
            "app_id = 12345\ninstallation_id = 678\nprivate_key_path = \"{}\"",
            key.display()
        ),
    );
    let zbot = start_zbot(dir.path(), &config).await;
    deploy(zbot.addr, 1801, "v0.0.1", &sha, "production").await;
    let last = github.final_status(1801, DEADLINE).await;
    assert_eq!(last.state, "success");
    let auths = github.authorizations();
    assert!(
        auths.iter().any(|a| a.starts_with("Bearer ey")),
        "the App's JWT was exchanged: {auths:?}"
    );
    assert!(
        auths.iter().any(|a| a == "Bearer ghs_installation_token"),
        "{auths:?}"
    );
    // An App cannot write gists: the log is linked to zbot's own page.
    let url = last.log_url.unwrap();
    assert!(
        url.starts_with(&format!("http://{}/deployments/1801/log?token=", zbot.addr)),
        "{url}"
    );
    zbot.stop().await.unwrap();
}

/// A per-app SSH deploy key: zbot fetches over ssh with that key and its own known_hosts (learnt on
/// first use, then enforced), never `StrictHostKeyChecking no`.
#[tokio::test]
async fn an_ssh_deploy_key_fetches_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = crate::sshd::Sshd::start(dir.path());
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let ssh_url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        sshd.user,
        sshd.port,
        repo.path.display()
    );
    let config = config_text(
        &github,
        &repo,
        &format!("deploy_key = \"{}\"", sshd.client_key.display()),
        "",
    )
    .replace(
        &format!("clone_url = \"{}\"", repo.clone_url()),
        &format!("clone_url = \"{ssh_url}\""),
    );
    let zbot = start_zbot(dir.path(), &config).await;
    deploy(zbot.addr, 1901, "v0.0.1", &sha, "production").await;
    let last = github.final_status(1901, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    // The server's host key was learnt into zbot's own known_hosts.
    let known_hosts = std::fs::read_to_string(dir.path().join("data/known_hosts")).unwrap();
    let host_key = std::fs::read_to_string(dir.path().join("sshd/host_key.pub")).unwrap();
    let key_material = host_key.split_whitespace().nth(1).unwrap();
    assert!(known_hosts.contains(key_material), "{known_hosts}");
    zbot.stop().await.unwrap();
}

/// A deployment zbot ran, delivered again after its environment left bot.toml, is a duplicate: the
/// success stays the last word, with no refusal on top.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_delivered_again_after_the_config_changed_is_left_as_it_ran() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    deploy(s.zbot.addr, 1901, "v0.0.1", &sha, "production").await;
    assert_eq!(s.github.final_status(1901, DEADLINE).await.state, "success");
    let before = s.github.states(1901);
    s.zbot.stop().await.unwrap();

    let config = std::fs::read_to_string(s.dir.path().join("bot.toml"))
        .unwrap()
        .replace(
            r#"environments = ["production", "staging"]"#,
            r#"environments = ["staging"]"#,
        )
        .replace(r#"{ production = "https"#, r#"{ staging = "https"#);
    let zbot = start_zbot(s.dir.path(), &config).await;
    let event = deployment_event(1901, "v0.0.1", &sha, "production", "deploy", json!({}));
    let (status, body) = deliver(zbot.addr, "deployment", "delivery-1901-again", &event).await;
    assert_eq!((status, body.as_str()), (202, "already accepted"));
    assert_eq!(
        s.github.states(1901),
        before,
        "no refusal on top of the success"
    );
    zbot.stop().await.unwrap();
}
