//! `[github] poll`: deployments found by listing them on GitHub (with `If-None-Match`) run exactly as
//! delivered ones, once, also when the webhook delivers them too.

use std::time::Duration;

use crate::fakes::github::{FakeGitHub, WebhookTarget};
use crate::fakes::slack::FakeSlack;
use crate::harness::{FABFILE, SECRET, TOKEN, TestRepo, start_zbot};
use crate::support::{stderr, stdout};

/// Generous: a poll every second, a deploy of a fabfile, on a shared machine.
const DEADLINE: Duration = Duration::from_secs(90);

/// A bot.toml polling the fake every second; `webhook` is the `[webhook]` table's body.
fn polling_config(github: &FakeGitHub, repo: &TestRepo, webhook: &str) -> String {
    format!(
        r#"[bot]
data_dir = "data"

[github]
token = "{TOKEN}"
api_url = "{github}"
poll = "1s"

[webhook]
listen = "127.0.0.1:0"
{webhook}

[deploy]
work_dir = "data/work"

[apps.adxstat]
repository = "octo/adxstat"
clone_url = "{clone}"
provider = "fabric"
environments = ["production"]
"#,
        github = github.url(),
        clone = repo.clone_url(),
    )
}

/// Waits until the fake has answered `more` listings beyond the `seen` it had answered.
async fn polls_after(github: &FakeGitHub, seen: usize, more: usize) -> Vec<u16> {
    github
        .wait_for("zbot to poll", DEADLINE, |g| {
            let answers = g.list_answers();
            (answers.len() >= seen + more).then_some(answers)
        })
        .await
}

/// The deploy logs zbot wrote: one per deploy it ran.
fn deploy_logs(dir: &std::path::Path) -> Vec<String> {
    let mut logs: Vec<String> = std::fs::read_dir(dir.join("data/logs"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs
}

/// Posts a status to deployment `id` as another deployer would.
async fn status_by_someone_else(github: &FakeGitHub, id: u64, state: &str) {
    let body = serde_json::to_vec(&serde_json::json!({"state": state, "description": "elsewhere"}))
        .unwrap();
    let (status, answer) = crate::harness::http(
        github.addr,
        "POST",
        &format!("/repos/octo/adxstat/deployments/{id}/statuses"),
        &[("Content-Type", "application/json".to_string())],
        &body,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_webhook_a_new_deployment_runs_by_polling_and_an_unchanged_list_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    github.create_deployments_in(&repo.path);
    // Made before zbot ever polled: history, not to be run.
    let old = github.create("v0.0.1", "production").await;
    let zbot = start_zbot(
        dir.path(),
        &polling_config(&github, &repo, "receive = false"),
    )
    .await;
    // No route for deliveries: the webhook is off.
    let (status, _) =
        crate::harness::deliver(zbot.addr, "ping", "d-1", &serde_json::json!({"zen": "hi"})).await;
    assert_eq!(status, 404);

    polls_after(&github, 0, 1).await;
    let id = github.create("v0.0.1", "production").await;
    let last = github.final_status(id, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    let log = std::fs::read_to_string(dir.path().join(format!("data/logs/{id}.log"))).unwrap();
    assert!(log.contains("deploying v0.0.1"), "{log}");

    // Later polls: the list is unchanged, GitHub answers 304, and nothing more is made or run.
    let seen = github.list_answers().len();
    let answers = polls_after(&github, seen, 2).await;
    assert!(
        answers[seen..].iter().all(|status| *status == 304),
        "{answers:?}"
    );
    assert_eq!(
        deploy_logs(dir.path()),
        [format!("{id}.log")],
        "one deploy ran"
    );
    assert!(
        github.statuses(old).is_empty(),
        "the old deployment never ran"
    );
    let successes = github
        .states(id)
        .into_iter()
        .filter(|s| s == "success")
        .count();
    assert_eq!(successes, 1);
    zbot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_and_polling_together_run_a_deployment_once() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let zbot = start_zbot(
        dir.path(),
        &polling_config(&github, &repo, &format!("secret = \"{SECRET}\"")),
    )
    .await;
    github.send_webhooks_to(WebhookTarget {
        zbot: zbot.addr,
        repo: repo.path.clone(),
    });
    let before = polls_after(&github, 0, 1).await.len();
    let id = github.create("v0.0.1", "production").await;
    let last = github.final_status(id, DEADLINE).await;
    assert_eq!(last.state, "success");
    // Both have seen it: the webhook was sent, and a listing with it was answered 200 after it was
    // made (the ones after it, 304).
    let seen = github.list_answers().len();
    let answers = polls_after(&github, seen, 2).await;
    assert!(answers[before..].contains(&200), "{answers:?}");
    let states = github.states(id);
    assert_eq!(
        states.iter().filter(|s| *s == "in_progress").count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| *s == "success").count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        deploy_logs(dir.path()),
        [format!("{id}.log")],
        "one deploy ran"
    );
    let log = std::fs::read_to_string(dir.path().join(format!("data/logs/{id}.log"))).unwrap();
    assert_eq!(log.matches("deploying v0.0.1").count(), 1, "{log}");
    zbot.stop().await.unwrap();
}

/// A polling zbot (no webhook) that polled once, which set its mark, and stopped: its directory,
/// the fake GitHub (deployments made there are not delivered) and its bot.toml.
async fn polled_once_then_stopped() -> (tempfile::TempDir, FakeGitHub, String) {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    github.create_deployments_in(&repo.path);
    let config = polling_config(&github, &repo, "receive = false");
    let zbot = start_zbot(dir.path(), &config).await;
    polls_after(&github, 0, 1).await;
    zbot.stop().await.unwrap();
    (dir, github, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn more_than_a_page_of_deployments_made_while_zbot_was_stopped_are_all_answered() {
    let (dir, github, config) = polled_once_then_stopped().await;

    // More than one page (30) while zbot is stopped; "qa" is no environment of the app, so each
    // is answered with a refusal at once, without running a recipe.
    let mut made = Vec::new();
    for _ in 0..33 {
        made.push(github.create("v0.0.1", "qa").await);
    }
    let zbot = start_zbot(dir.path(), &config).await;
    github
        .wait_for("every deployment to get a status", DEADLINE, |g| {
            made.iter()
                .all(|id| !g.statuses(*id).is_empty())
                .then_some(())
        })
        .await;
    for id in &made {
        let states = github.states(*id);
        assert!(
            states.iter().all(|s| s == "error" || s == "failure"),
            "#{id}: {states:?}"
        );
    }
    zbot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_restart_fresh_deployments_run_an_old_one_is_refused_and_taken_ones_are_left() {
    let (dir, github, config) = polled_once_then_stopped().await;

    // While zbot is stopped: one made three hours ago, one another deployer took, one fresh.
    let old = github.create("v0.0.1", "production").await;
    let three_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    github.set_created_at(old, &three_hours_ago);
    let taken = github.create("v0.0.1", "production").await;
    status_by_someone_else(&github, taken, "in_progress").await;
    // Another deployer took this one long ago: old, but settled, so not refused on top.
    let taken_long_ago = github.create("v0.0.1", "production").await;
    github.set_created_at(taken_long_ago, &three_hours_ago);
    status_by_someone_else(&github, taken_long_ago, "success").await;
    let fresh = github.create("v0.0.1", "production").await;

    // Restarted with Slack, whose default channel hears of deployments refused.
    let slack = FakeSlack::start().await;
    let config = format!(
        "{config}\n{}",
        crate::fakes::slack::config_section(&slack, "default_channel = \"C0DEPLOYS\"")
    );
    let zbot = start_zbot(dir.path(), &config).await;
    // Polled deployments are taken oldest first: by the end of the fresh one, the others were seen.
    let last = github.final_status(fresh, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    let refused = github.final_status(old, DEADLINE).await;
    assert_eq!(refused.state, "error");
    assert_eq!(
        refused.description,
        "created 3h ago, older than [github] poll_max_age = 1h; deploy again"
    );
    assert_eq!(github.states(old), ["error"], "the old one never started");
    let told = slack
        .wait_for("the refusal in the default channel", DEADLINE, |s| {
            s.posts().into_iter().find(|p| {
                p.channel == "C0DEPLOYS" && p.text.contains(&format!("deployment #{old}"))
            })
        })
        .await;
    assert!(
        told.text
            .contains("created 3h ago, older than [github] poll_max_age = 1h; deploy again"),
        "{}",
        told.text
    );
    assert_eq!(
        github.states(taken),
        ["in_progress"],
        "zbot left the one another deployer took alone"
    );
    assert_eq!(
        github.states(taken_long_ago),
        ["success"],
        "an old deployment someone else settled gets no refusal on top"
    );
    assert!(
        !slack
            .posts()
            .iter()
            .any(|p| p.text.contains(&format!("deployment #{taken_long_ago}"))),
        "nor a refusal in chat"
    );
    assert_eq!(
        deploy_logs(dir.path()),
        [format!("{fresh}.log")],
        "one deploy ran"
    );
    zbot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn check_online_reports_the_rate_limit_polling_uses() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let config = format!(
        "[github]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\npoll = \"15s\"\n\n\
         [apps.adxstat]\nrepository = \"octo/adxstat\"\nenvironments = [\"production\"]\n",
        github.url()
    );
    std::fs::write(dir.path().join("bot.toml"), config).unwrap();
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        crate::support::zbot(&path, &["check", "--online"], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("github: rate limit 5000 requests per hour, 5000 left"),
        "{text}"
    );
    assert!(
        text.contains(
            "polling 1 repository every 15s uses at most 240 requests per hour (4% of the limit)"
        ),
        "{text}"
    );
}
