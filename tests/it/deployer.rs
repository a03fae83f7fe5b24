//! The deployer: signed webhooks in, real git checkouts and real Fabric runs, statuses and gists on
//! the fake GitHub out.

use std::time::Duration;

use serde_json::json;

use crate::fakes::github::FakeGitHub;
use crate::harness::{self, TestRepo, config_text, deliver, deploy, deployment_event, http, start_zbot};

const DEADLINE: Duration = Duration::from_secs(60);

const FABFILE: &str = r#"from fabric.api import env, local, task
env.roledefs = {'production': ['localhost'], 'staging': ['localhost']}

@task
def deploy(branch_name='master'):
    print("deploying %s to %s" % (branch_name, env.roles))
    local("echo local step for %s" % branch_name)
"#;

const FAILING_FABFILE: &str = r#"from fabric.api import env, local, task
env.roledefs = {'production': ['localhost']}

@task
def deploy(branch_name='master'):
    print("about to migrate %s" % branch_name)
    local("echo 'migration 42 failed: relation users already exists' >&2; exit 3")
"#;

struct Setup {
    _dir: tempfile::TempDir,
    github: FakeGitHub,
    repo: TestRepo,
    zbot: zbot::app::Running,
}

async fn setup(files: &[(&str, &str, bool)], extra_app: &str, deploy_section: &str) -> (Setup, String) {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(files, "v0.0.1");
    let config = config_text(&github, &repo, extra_app, deploy_section);
    let zbot = start_zbot(dir.path(), &config).await;
    (Setup { _dir: dir, github, repo, zbot }, sha)
}

#[tokio::test]
async fn a_signed_deployment_runs_real_fabric_and_reports_to_github() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "provider = \"fabric\"", "").await;
    deploy(s.zbot.addr, 1001, "v0.0.1", &sha, "production").await;

    let last = s.github.final_status(1001, DEADLINE).await;
    assert_eq!(s.github.states(1001), ["in_progress", "success"], "{:#?}", s.github.statuses(1001));
    assert!(last.description.starts_with("Deployed v0.0.1"), "{}", last.description);
    assert_eq!(last.environment_url.as_deref(), Some("https://adxstat.example.com"));
    let gist_url = last.log_url.clone().expect("the status links the log");
    let in_progress = &s.github.statuses(1001)[0];
    assert_eq!(in_progress.log_url.as_deref(), Some(gist_url.as_str()));

    let gist = s.github.gist_by_url(&gist_url).expect("the log_url is the gist");
    assert!(!gist.public);
    assert_eq!(gist.description, "zbot deploy #1001: octo/adxstat@v0.0.1 to production");
    let log = &gist.files["deploy-1001.log"];
    assert!(log.contains("deploying v0.0.1 to ['production']"), "{log}");
    assert!(log.contains("local step for v0.0.1"), "{log}");
    assert!(log.contains("deploy:branch_name=v0.0.1"), "the log names the command: {log}");
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_fabfile_ends_failure_with_its_lines_in_the_gist() {
    let (s, sha) = setup(&[("fabfile.py", FAILING_FABFILE, false)], "", "").await;
    deploy(s.zbot.addr, 1002, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(1002, DEADLINE).await;
    assert_eq!(last.state, "failure", "{last:?}");
    assert!(last.description.contains("exited with code 1"), "{}", last.description);
    let gist = s.github.gist_by_url(last.log_url.as_deref().unwrap()).unwrap();
    let log = &gist.files["deploy-1002.log"];
    assert!(log.contains("migration 42 failed: relation users already exists"), "{log}");
    assert!(log.contains("Fatal error"), "{log}");
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn no_matching_recipe_is_an_error_that_says_so() {
    let (s, sha) = setup(&[("README.md", "nothing to deploy here", false)], "", "").await;
    deploy(s.zbot.addr, 1003, "v0.0.1", &sha, "production").await;
    let last = s.github.final_status(1003, DEADLINE).await;
    assert_eq!(last.state, "error");
    assert!(last.description.contains("no deploy recipe matched"), "{}", last.description);
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_sha_is_an_error_that_says_so() {
    let (s, _) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let missing = "0123456789abcdef0123456789abcdef01234567";
    deploy(s.zbot.addr, 1004, "v9.9.9", missing, "production").await;
    let last = s.github.final_status(1004, DEADLINE).await;
    assert_eq!(last.state, "error");
    assert!(last.description.contains(&format!("commit {missing} is not in octo/adxstat")), "{}", last.description);
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_locked_environment_is_an_error_naming_the_holder() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let lock = deployment_event(1005, "v0.0.1", &sha, "production", "deploy:lock",
        json!({"notify": {"user": "U0ALICE"}, "reason": "database migration"}));
    assert_eq!(deliver(s.zbot.addr, "deployment", "d-1005", &lock).await.0, 202);
    let locked = s.github.final_status(1005, DEADLINE).await;
    assert_eq!((locked.state.as_str(), locked.description.as_str()), ("success", "adxstat locked on production by U0ALICE"));

    let other = deployment_event(1006, "v0.0.1", &sha, "production", "deploy", json!({"notify": {"user": "U0BOB"}}));
    assert_eq!(deliver(s.zbot.addr, "deployment", "d-1006", &other).await.0, 202);
    let refused = s.github.final_status(1006, DEADLINE).await;
    assert_eq!(refused.state, "error");
    assert!(refused.description.starts_with("adxstat is locked on production by U0ALICE since "), "{}", refused.description);
    assert!(refused.description.ends_with(": database migration"), "{}", refused.description);

    // The holder still deploys; staging is not locked.
    let own = deployment_event(1007, "v0.0.1", &sha, "production", "deploy", json!({"notify": {"user": "U0ALICE"}}));
    assert_eq!(deliver(s.zbot.addr, "deployment", "d-1007", &own).await.0, 202);
    assert_eq!(s.github.final_status(1007, DEADLINE).await.state, "success");

    let unlock = deployment_event(1008, "v0.0.1", &sha, "production", "deploy:unlock", json!({"notify": {"user": "U0ALICE"}}));
    assert_eq!(deliver(s.zbot.addr, "deployment", "d-1008", &unlock).await.0, 202);
    assert_eq!(s.github.final_status(1008, DEADLINE).await.description, "adxstat unlocked on production by U0ALICE");
    let again = deployment_event(1009, "v0.0.1", &sha, "production", "deploy", json!({"notify": {"user": "U0BOB"}}));
    assert_eq!(deliver(s.zbot.addr, "deployment", "d-1009", &again).await.0, 202);
    assert_eq!(s.github.final_status(1009, DEADLINE).await.state, "success");
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
    assert_eq!(last.description, "Timed out after 2s: the deploy was stopped");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(!process_alive(pid), "the grandchild sleep {pid} survived the timeout");
    let gist = s.github.gist_by_url(last.log_url.as_deref().unwrap()).unwrap();
    assert!(gist.files["deploy-1010.log"].contains("DEPLOYMENT TIMED OUT AFTER 2 SECONDS"));
    s.zbot.stop().await.unwrap();
}

/// Alive and not a zombie.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_runs() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let body = serde_json::to_vec(&deployment_event(1011, "v0.0.1", &sha, "production", "deploy", json!({}))).unwrap();
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
        let (status, text) = http(s.zbot.addr, "POST", "/webhooks/github", &base(signature), &body).await;
        assert_eq!((status, text.as_str()), (401, ""));
    }
    assert_eq!(http(s.zbot.addr, "GET", "/healthz", &[], b"").await, (200, "ok".to_string()));
    assert!(s.github.all_statuses().is_empty(), "nothing may run: {:#?}", s.github.all_statuses());
    assert!(s.zbot.store.get(1011).await.unwrap().is_none());
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn replays_and_redeliveries_run_once() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let event = deployment_event(1012, "v0.0.1", &sha, "production", "deploy", json!({}));
    assert_eq!(deliver(s.zbot.addr, "deployment", "same-delivery", &event).await.0, 202);
    assert_eq!(deliver(s.zbot.addr, "deployment", "same-delivery", &event).await.0, 202);
    assert_eq!(deliver(s.zbot.addr, "deployment", "another-delivery", &event).await.0, 202);
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
    let ping: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate::support::repo_root().join("tests/fixtures/github/ping__payload.json")).unwrap()).unwrap();
    assert_eq!(deliver(s.zbot.addr, "ping", "p-1", &ping).await.0, 200);
    assert_eq!(deliver(s.zbot.addr, "push", "p-2", &json!({"ref": "refs/heads/main"})).await.0, 202);
    let junk = b"{not json";
    let headers = [
        ("X-GitHub-Event", "deployment".to_string()),
        ("X-GitHub-Delivery", "p-3".to_string()),
        ("X-Hub-Signature-256", harness::sign(harness::SECRET, junk)),
    ];
    assert_eq!(http(s.zbot.addr, "POST", "/webhooks/github", &headers, junk).await.0, 400);
    let huge = vec![b' '; 26 * 1024 * 1024];
    let headers = [("X-GitHub-Event", "deployment".to_string()), ("X-Hub-Signature-256", harness::sign(harness::SECRET, &huge))];
    assert_eq!(http(s.zbot.addr, "POST", "/webhooks/github", &headers, &huge).await.0, 413);
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn form_encoded_deliveries_are_accepted() {
    let (s, sha) = setup(&[("fabfile.py", FABFILE, false)], "", "").await;
    let event = deployment_event(1014, "v0.0.1", &sha, "production", "deploy", json!({}));
    let body: String = form_urlencoded::Serializer::new(String::new()).append_pair("payload", &event.to_string()).finish();
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded".to_string()),
        ("X-GitHub-Event", "deployment".to_string()),
        ("X-GitHub-Delivery", "f-1".to_string()),
        ("X-Hub-Signature-256", harness::sign(harness::SECRET, body.as_bytes())),
    ];
    assert_eq!(http(s.zbot.addr, "POST", "/webhooks/github", &headers, body.as_bytes()).await.0, 202);
    assert_eq!(s.github.final_status(1014, DEADLINE).await.state, "success");
    s.zbot.stop().await.unwrap();
}
