//! Outside calls that hang or lose their answer: a GitHub that never answers still lets a deploy end,
//! as `error` in the store, on the event bus and in its Slack thread, and lets zbot stop; a
//! deployment whose answer was lost on the way is made once; `deploys` shows GitHub's state names.

use std::time::Duration;

use serde_json::json;
use zbot::domain::DeploymentId;
use zbot::events::{DeploymentEvent, Event};
use zbot::forge::StatusState;
use zbot::store::DeploymentState;

use crate::fakes::github::FakeGitHub;
use crate::fakes::slack::{self, FakeSlack, app_mention, event_envelope, user_ts};
use crate::harness::{FABFILE, TestRepo, config_text, start_chat_zbot};

/// Generous: each wait ends as soon as what it waits for happens.
const DEADLINE: Duration = Duration::from_secs(60);
const CHANNEL: &str = "C0CHAN";
/// The `[github] timeout` of the tests where GitHub hangs: short, so they end soon.
const GITHUB_TIMEOUT: &str = "2s";
/// What the thread and GitHub are told when GitHub does not answer before the deploy starts.
const UNANSWERED: &str = "GitHub did not answer within 2s, so zbot did not start the deploy";

struct Setup {
    _dir: tempfile::TempDir,
    github: FakeGitHub,
    slack: FakeSlack,
    zbot: zbot::app::Running,
    /// The commit tagged v0.0.1.
    sha: String,
}

/// zbot with the Slack and GitHub fakes, deploying a repository with `files`; `github_timeout`
/// replaces the default `[github] timeout`.
async fn start(files: &[(&str, &str, bool)], github_timeout: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(files, "v0.0.1");
    let mut config = format!(
        "{}
[slack]
app_token = \"{}\"
bot_token = \"{}\"
api_url = \"{}\"
timeout = \"10s\"
",
        config_text(&github, &repo, "", ""),
        slack::APP_TOKEN,
        slack::BOT_TOKEN,
        slack.api_url()
    );
    if let Some(timeout) = github_timeout {
        config = config.replace(
            "[github]\n",
            &format!("[github]\ntimeout = \"{timeout}\"\nconnect_timeout = \"{timeout}\"\n"),
        );
    }
    let zbot = start_chat_zbot(dir.path(), &config, &github, &slack, &repo).await;
    Setup {
        _dir: dir,
        github,
        slack,
        zbot,
        sha,
    }
}

impl Setup {
    /// A mention from Alice in the channel, as a new thread; its ts.
    fn mention(&self, n: u32, text: &str) -> String {
        let ts = user_ts(n);
        let text = format!("<@{}> {text}", slack::BOT_USER);
        let event = app_mention("U0ALICE", CHANNEL, &ts, &text);
        self.slack.send(event_envelope(
            &format!("env-{n}"),
            &format!("Ev{n}"),
            event,
            0,
        ));
        ts
    }

    /// GitHub's `deployment` webhook for deployment `id` of v0.0.1 to production, answered in the
    /// thread `thread_ts`, as if it had been made from chat.
    async fn deliver_deployment(&self, id: u64, thread_ts: &str) {
        let payload = json!({"notify": {"adapter": "slack", "room": CHANNEL, "thread_ts": thread_ts,
            "user": "U0ALICE"}});
        let event = crate::harness::deployment_event(
            id,
            "v0.0.1",
            &self.sha,
            "production",
            "deploy",
            payload,
        );
        let (status, answer) =
            crate::harness::deliver(self.zbot.addr, "deployment", &format!("gh-{id}"), &event)
                .await;
        assert_eq!(status, 202, "{answer}");
    }
}

/// Stops zbot, which must not wait on GitHub's silence.
async fn stop_while_github_hangs(zbot: zbot::app::Running) {
    tokio::time::timeout(DEADLINE, zbot.stop())
        .await
        .expect("zbot stops while GitHub hangs")
        .unwrap();
}

/// The first final event of deployment `id` on the bus.
async fn final_event(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    id: u64,
) -> DeploymentEvent {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Event::Deployment(event) = events.recv().await.expect("the event bus is open")
                && event.deployment_id == DeploymentId(id)
                && event.state.is_final()
            {
                return *event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("deployment {id} did not end within {DEADLINE:?}"))
}

#[tokio::test]
async fn a_github_that_never_answers_still_ends_the_deploy_as_error() {
    let s = start(&[("fabfile.py", FABFILE, false)], Some(GITHUB_TIMEOUT)).await;
    let mut events = s.zbot.events.subscribe();
    s.github.never_answer();
    let thread = user_ts(1);
    s.deliver_deployment(2001, &thread).await;

    let ended = final_event(&mut events, 2001).await;
    assert_eq!(
        (ended.state, ended.description.as_str()),
        (StatusState::Error, UNANSWERED)
    );
    let stored = s.zbot.store.get(DeploymentId(2001)).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.description.as_str()),
        (DeploymentState::Error, UNANSWERED)
    );
    s.slack
        .reply_containing(
            CHANNEL,
            &thread,
            &format!("was not deployed to *production*: {UNANSWERED}"),
        )
        .await;
    assert!(
        s.github.unanswered().contains(&"POST /gists".to_string()),
        "zbot asked GitHub for the log's gist first: {:?}",
        s.github.unanswered()
    );
    // The `error` status is still being posted into the silence; stopping does not wait for it.
    stop_while_github_hangs(s.zbot).await;
}

#[tokio::test]
async fn zbot_stops_while_a_github_call_hangs() {
    let s = start(&[("fabfile.py", FABFILE, false)], Some(GITHUB_TIMEOUT)).await;
    s.github.never_answer();
    s.deliver_deployment(2002, &user_ts(1)).await;
    s.github
        .wait_for("zbot to wait on GitHub", DEADLINE, |g| {
            (!g.unanswered().is_empty()).then_some(())
        })
        .await;
    let store = s.zbot.store.clone();
    stop_while_github_hangs(s.zbot).await;
    let stored = store.get(DeploymentId(2002)).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.description.as_str()),
        (DeploymentState::Error, UNANSWERED)
    );
}

#[tokio::test]
async fn a_deploy_command_is_answered_when_github_hangs() {
    let s = start(&[("fabfile.py", FABFILE, false)], Some(GITHUB_TIMEOUT)).await;
    s.github.never_answer();
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    s.slack
        .reply_containing(
            CHANNEL,
            &thread,
            "GitHub did not answer within 2s, so I can't tell whether it made the deployment. If it did, the deploy will show up in this thread; if nothing does, try again.",
        )
        .await;
    // Asked once, then looked for; never asked twice into the silence.
    assert_eq!(
        s.github.unanswered(),
        vec![
            "POST /repos/octo/adxstat/deployments".to_string(),
            "GET /repos/octo/adxstat/deployments".to_string()
        ]
    );
    stop_while_github_hangs(s.zbot).await;
}

#[tokio::test]
async fn a_deployment_whose_answer_is_lost_is_made_once() {
    let s = start(&[("fabfile.py", FABFILE, false)], None).await;
    s.github.drop_next_deployment_answer();
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    s.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    assert_eq!(s.github.deployment_ids(), vec![5001]);
    let requests = s.github.deployment_requests();
    assert_eq!(requests.len(), 1, "found, not asked again: {requests:#?}");
    let request_id = requests[0]["payload"]["zbot_request"].as_str().unwrap();
    assert_eq!(request_id.len(), 32, "{request_id}");
    // It was looked up among the deployments of its ref, environment and task.
    let lookups = s.github.deployment_lists();
    assert_eq!(lookups.len(), 1, "{lookups:#?}");
    let lookup = &lookups[0];
    assert_eq!(
        (&lookup["ref"], &lookup["environment"], &lookup["task"]),
        (
            &"v0.0.1".to_string(),
            &"production".to_string(),
            &"deploy".to_string()
        )
    );
    // The deployment zbot found is the one it reports on, once.
    let last = s.github.final_status(5001, DEADLINE).await;
    assert_eq!(last.state, "success");
    let outcomes: Vec<_> = s
        .slack
        .thread(CHANNEL, &thread)
        .into_iter()
        .filter(|p| p.text.contains("is on *production*"))
        .collect();
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn deploys_shows_the_states_by_githubs_names() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let script = crate::harness::held_deploy_script(&release);
    let s = start(&[("script/deploy", &script, true)], None).await;
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    s.github.in_progress(5001, DEADLINE).await;
    let asked = s.mention(2, "deploys adxstat");
    let table = s
        .slack
        .reply_containing(CHANNEL, &asked, "Recent deployments of adxstat")
        .await
        .text;
    let row = table
        .lines()
        .find(|l| l.starts_with("5001"))
        .unwrap_or_else(|| panic!("no row for 5001: {table}"));
    assert!(row.contains(" in_progress "), "{row}");
    std::fs::write(&release, "go").unwrap();
    s.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    s.zbot.stop().await.unwrap();
}
