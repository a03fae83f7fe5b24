//! The user's loop through Slack: a message in the fake Slack, a deployment on the fake GitHub, its
//! signed webhook back to zbot, real Fabric, and the answer in the same thread.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fakes::github::FakeGitHub;
use crate::fakes::slack::{
    self, FakeSlack, app_mention, channel_message, event_envelope, slash_envelope, user_ts,
};
use crate::harness::{FABFILE, FAILING_FABFILE, TestRepo, config_text, start_chat_zbot};

const DEADLINE: Duration = Duration::from_secs(60);
const CHANNEL: &str = "C0CHAN";

struct Chat {
    dir: tempfile::TempDir,
    config: String,
    /// The commit tagged `v0.0.1`.
    sha: String,
    github: FakeGitHub,
    slack: FakeSlack,
    zbot: zbot::app::Running,
}

/// zbot with Slack and GitHub fakes, deploying a repository with `files`.
async fn chat(files: &[(&str, &str, bool)]) -> Chat {
    chat_with(files, "", &[]).await
}

/// [`chat`] with `extra_app` in adxstat's table and `recipes` (file name, text) in the recipes
/// directory.
async fn chat_with(
    files: &[(&str, &str, bool)],
    extra_app: &str,
    recipes: &[(&str, &str)],
) -> Chat {
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands");
    std::fs::create_dir_all(&commands).unwrap();
    for (name, text) in recipes {
        std::fs::write(commands.join(name), text).unwrap();
    }
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(files, "v0.0.1");
    let config = format!(
        "{}
[apps.vault]
repository = \"octo/adxstat\"
environments = [\"production\"]
allowed_channels = [\"C0OPS\"]
allowed_users = {{ production = [\"U0BOSS\"] }}

[slack]
app_token = \"{}\"
bot_token = \"{}\"
api_url = \"{}\"
default_channel = \"C0DEPLOYS\"
slash_commands = [\"/deploy\"]
status_refresh = \"1s\"
",
        config_text(&github, &repo, extra_app, ""),
        slack::APP_TOKEN,
        slack::BOT_TOKEN,
        slack.api_url()
    );
    let zbot = start_chat_zbot(dir.path(), &config, &github, &slack, &repo).await;
    Chat {
        dir,
        config,
        sha,
        github,
        slack,
        zbot,
    }
}

/// Lets the deploys of [`chat_holding_deploys`] go on.
struct Release {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
}

impl Release {
    fn go(&self) {
        std::fs::write(&self.file, "go").unwrap();
    }
}

/// zbot whose deploys run `script/deploy`, which holds until released.
async fn chat_holding_deploys() -> (Chat, Release) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release");
    let script = crate::harness::held_deploy_script(&file);
    let c = chat(&[("script/deploy", &script, true)]).await;
    (c, Release { _dir: dir, file })
}

/// The outcome replies "… is on *production*" zbot posted in a thread.
fn production_outcomes(slack: &FakeSlack, thread_ts: &str) -> Vec<slack::Posted> {
    slack
        .thread(CHANNEL, thread_ts)
        .into_iter()
        .filter(|p| p.method == "chat.postMessage" && p.text.contains("is on *production*"))
        .collect()
}

impl Chat {
    /// Stops zbot and starts a new one on the same data directory, as after a restart.
    async fn restart(self) -> Chat {
        let connections = self.slack.connections();
        self.zbot.stop().await.unwrap();
        let repo = TestRepo {
            path: self.dir.path().join("adxstat"),
        };
        let zbot = start_chat_zbot(
            self.dir.path(),
            &self.config,
            &self.github,
            &self.slack,
            &repo,
        )
        .await;
        self.slack
            .wait_for("zbot to connect again", DEADLINE, |s| {
                (s.connections() > connections).then_some(())
            })
            .await;
        Chat { zbot, ..self }
    }

    /// A mention from `user` in the channel, as a new thread.
    fn mention(&self, n: u32, user: &str, text: &str) -> String {
        slack::mention(&self.slack, n, user, CHANNEL, text)
    }

    async fn reply(&self, thread_ts: &str, needle: &str) -> String {
        self.slack
            .reply_containing(CHANNEL, thread_ts, needle)
            .await
            .text
    }

    /// A deployment hubot-deploy asked GitHub for, with this `notify`, delivered to zbot.
    async fn deliver_from_hubot(&self, id: u64, task: &str, notify: Value) {
        let event = crate::harness::deployment_event(
            id,
            "v0.0.1",
            &self.sha,
            "production",
            task,
            json!({"name": "adxstat", "robotName": "hubot", "hosts": "", "notify": notify,
                   "config": {"provider": "shell", "auto_merge": true}}),
        );
        let (status, answer) = self.github.deliver_deployment(self.zbot.addr, &event).await;
        assert_eq!(status, 202, "{answer}");
    }

    /// The final status message of the deployment shown in `thread_ts`.
    async fn final_status_message(&self, thread_ts: &str) -> slack::Posted {
        self.slack
            .wait_for("the status message to end", DEADLINE, |s| {
                s.thread(CHANNEL, thread_ts)
                    .into_iter()
                    .rev()
                    .find(|p| p.method == "chat.update" && p.text.contains(":white_check_mark:"))
            })
            .await
    }
}

#[tokio::test]
async fn a_mention_deploys_and_answers_in_its_thread() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.slack
        .wait_for("the ack", DEADLINE, |s| s.acked("env-1"))
        .await;

    let request = c
        .github
        .wait_for("a deployment", DEADLINE, |g| {
            g.deployment_requests().first().cloned()
        })
        .await;
    assert_eq!(request["ref"], "v0.0.1");
    assert_eq!(request["environment"], "production");
    assert_eq!(request["task"], "deploy");
    assert_eq!(request["production_environment"], true);
    assert_eq!(request["auto_merge"], false);
    let payload = &request["payload"];
    assert_eq!(payload["name"], "adxstat");
    assert_eq!(payload["robotName"], "zbot");
    assert_eq!(
        payload["notify"],
        json!({"adapter": "slack", "room": CHANNEL, "thread_ts": thread, "user": "U0ALICE", "user_name": "U0ALICE", "team_id": "T0TEAM"})
    );
    assert_eq!(payload["config"]["repository"], "octo/adxstat");
    assert!(
        !payload.to_string().contains("ghp_"),
        "no token in the payload"
    );

    let last = c.github.final_status(5001, DEADLINE).await;
    assert_eq!(last.state, "success");
    let gist = last.log_url.unwrap();
    let outcome = c.reply(&thread, "is on *production*").await;
    assert!(outcome.contains(&format!("<{gist}|log>")), "{outcome}");
    assert!(
        outcome.starts_with("<@U0ALICE> adxstat `v0.0.1`"),
        "{outcome}"
    );
    let status = c.final_status_message(&thread).await;
    assert!(
        status.text.contains("*Deployment #5001*: adxstat `v0.0.1`"),
        "{}",
        status.text
    );
    assert!(
        status.blocks.is_some(),
        "the status message is Block Kit with a text fallback"
    );
    // One status message, posted once in the thread and then only updated.
    let posted_status: Vec<_> = c
        .slack
        .thread(CHANNEL, &thread)
        .into_iter()
        .filter(|p| p.method == "chat.postMessage" && p.text.contains("*Deployment #5001*"))
        .collect();
    assert_eq!(posted_status.len(), 1, "{posted_status:#?}");
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_slash_command_acks_at_once_and_answers_in_a_thread_it_starts() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    c.slack.send(slash_envelope(
        "env-s",
        "U0ALICE",
        CHANNEL,
        "/deploy",
        "adxstat/v0.0.1 to production",
    ));
    let ack = c
        .slack
        .wait_for("the ack", DEADLINE, |s| s.acked("env-s"))
        .await;
    assert_eq!(ack["payload"]["text"], "On it…");
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    let parent = c
        .slack
        .wait_for("the parent message", DEADLINE, |s| {
            s.posts().into_iter().find(|p| {
                p.thread_ts.is_none()
                    && p.text
                        .contains("ran `/deploy adxstat/v0.0.1 to production`")
            })
        })
        .await;
    let outcome = c.reply(&parent.ts, "is on *production*").await;
    assert!(outcome.contains("<@U0ALICE>"), "{outcome}");
    // A slash command bot.toml does not list is explained, not run.
    c.slack.send(slash_envelope(
        "env-x", "U0ALICE", CHANNEL, "/ship", "adxstat",
    ));
    let ack = c
        .slack
        .wait_for("the ack", DEADLINE, |s| s.acked("env-x"))
        .await;
    assert_eq!(
        ack["payload"]["text"],
        "zbot is not set up for /ship: add it to [slack] slash_commands in bot.toml."
    );
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn zbot_deploy_typed_in_a_channel_works_like_a_mention() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    let ts = user_ts(7);
    let event = channel_message(
        "U0ALICE",
        CHANNEL,
        &ts,
        "zbot deploy adxstat/v0.0.1 to production",
    );
    c.slack.send(event_envelope("env-7", "Ev7", event, 0));
    c.reply(&ts, "is on *production*").await;
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn refusals_are_answered_in_the_thread_and_create_no_deployment() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    let cases = [
        (
            1,
            "U0ALICE",
            "deploy adxstats/v0.0.1 to production",
            "`adxstats`? Never heard of it. Did you mean `adxstat`?",
        ),
        (
            2,
            "U0ALICE",
            "deploy adxstat to qa",
            "adxstat doesn't have a `qa` environment. It has: production, staging.",
        ),
        (
            3,
            "U0ALICE",
            "deploy vault to production",
            "vault is not allowed to be deployed from this channel.",
        ),
        (
            4,
            "U0ALICE",
            "depoly adxstat",
            "I don't know the command `depoly`. did you mean `deploy`?",
        ),
        (
            5,
            "U0ALICE",
            "deploy adxstat/a&amp;b to production",
            "`&amp;` is not allowed in a ref",
        ),
    ];
    for (n, user, text, expected) in cases {
        let thread = c.mention(n, user, text);
        c.reply(&thread, expected).await;
    }
    // A user not allowed in production, from an allowed channel.
    let ts = user_ts(6);
    let event = app_mention(
        "U0ALICE",
        "C0OPS",
        &ts,
        "<@U0BOT> deploy vault to production",
    );
    c.slack.send(event_envelope("env-6", "Ev6", event, 0));
    c.slack
        .reply_containing(
            "C0OPS",
            &ts,
            "You are not allowed to deploy vault to *production*.",
        )
        .await;

    // A lock blocks everyone else, and says who, since when and why.
    let thread = c.mention(
        8,
        "U0BOSS",
        "lock adxstat in production migrating the database",
    );
    c.reply(&thread, "Locked adxstat on *production*").await;
    let thread = c.mention(9, "U0ALICE", "deploy adxstat to production");
    let refusal = c
        .reply(
            &thread,
            "adxstat is locked on *production* by <@U0BOSS> since",
        )
        .await;
    assert!(refusal.ends_with(": migrating the database"), "{refusal}");
    let thread = c.mention(10, "U0ALICE", "unlock adxstat in production");
    c.reply(
        &thread,
        "Only <@U0BOSS> or an admin can unlock adxstat on *production*.",
    )
    .await;

    assert!(
        c.github.deployment_requests().is_empty(),
        "{:#?}",
        c.github.deployment_requests()
    );
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn github_refusals_become_replies_a_person_understands() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    c.github.answer_next_deployment(
        409,
        json!({"message": "Conflict: Commit status checks failed for main.",
               "errors": [{"contexts": [{"context": "ci/test", "state": "failure"}, {"context": "security", "state": "success"}]}]}),
    );
    let thread = c.mention(1, "U0ALICE", "deploy adxstat to production");
    c.reply(&thread, "Unmet required commit status contexts for adxstat: ci/test (failure). Fix them, or use `deploy!` to skip them.").await;

    c.github
        .answer_next_deployment(404, json!({"message": "Not Found"}));
    let thread = c.mention(2, "U0ALICE", "deploy adxstat to production");
    c.reply(
        &thread,
        "I can't create deployments on octo/adxstat: the token needs the `repo_deployment` scope",
    )
    .await;

    // 202: GitHub merged instead of deploying; zbot says so and deploys the merged ref.
    c.github.answer_next_deployment(
        202,
        json!({"message": "Auto-merged main into v0.0.1 on deployment."}),
    );
    let thread = c.mention(3, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.reply(&thread, "GitHub merged the default branch into the ref first (“Auto-merged main into v0.0.1 on deployment.”)").await;
    c.reply(&thread, "is on *production*").await;

    let forced = c.mention(4, "U0ALICE", "deploy! adxstat/v0.0.1 to staging");
    c.reply(&forced, "is on *staging*").await;
    let requests = c.github.deployment_requests();
    let last = requests.last().unwrap();
    assert_eq!(
        (
            last["required_contexts"].clone(),
            last["auto_merge"].clone()
        ),
        (json!([]), json!(false))
    );
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_deploy_says_failure_with_the_last_lines_escaped() {
    let c = chat(&[("fabfile.py", FAILING_FABFILE, false)]).await;
    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    let reply = c.reply(&thread, "to *production* failed:").await;
    assert!(reply.contains("deploying adxstat `v0.0.1`"), "{reply}");
    assert!(
        reply.contains("migration 42 failed: &lt;b&gt;users&lt;/b&gt; &amp; co"),
        "{reply}"
    );
    assert!(!reply.contains("<b>"), "{reply}");
    assert!(reply.contains("```"), "the output is a code block: {reply}");
    let gist = c.github.final_status(5001, DEADLINE).await.log_url.unwrap();
    assert!(reply.contains(&format!("<{gist}|log>")), "{reply}");
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_reconnect_mid_deploy_still_delivers_the_answer_and_redeliveries_run_once() {
    let (c, release) = chat_holding_deploys().await;
    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.github.in_progress(5001, DEADLINE).await;
    // Slack redelivers the same event, as after a missed ack.
    let redelivered = app_mention(
        "U0ALICE",
        CHANNEL,
        &thread,
        &format!("<@{}> deploy adxstat/v0.0.1 to production", slack::BOT_USER),
    );
    c.slack
        .send(event_envelope("env-1-retry", "Ev1", redelivered, 1));
    c.slack
        .wait_for("the redelivery's ack", DEADLINE, |s| s.acked("env-1-retry"))
        .await;

    // While it runs, the status message tells for how long.
    c.slack
        .wait_for("the elapsed time in the status", DEADLINE, |s| {
            s.thread(CHANNEL, &thread).into_iter().find(|p| {
                p.method == "chat.update"
                    && p.text.contains(":rocket: deploying… ")
                    && p.text.contains("s · <")
            })
        })
        .await;
    let reconnects = "zbot_slack_socket_mode_reconnects_total";
    let before = crate::metrics::value(&crate::metrics::scrape(c.zbot.addr).await, reconnects, &[]);
    c.slack.disconnect("refresh_requested");
    c.slack
        .wait_for("a new connection", DEADLINE, |s| {
            (s.connections() > 1).then_some(())
        })
        .await;
    // The new connection's `hello` is counted when it is handled, and a connection's frames are
    // handled in order: once an envelope sent after it is acknowledged, the count has moved.
    let other_bot = json!({"type": "message", "channel": CHANNEL, "bot_id": "B0OTHER",
        "subtype": "bot_message", "text": "hello", "ts": user_ts(90), "channel_type": "channel"});
    c.slack
        .send(event_envelope("env-after-reconnect", "Ev90", other_bot, 0));
    c.slack
        .wait_for("the ack after the reconnect", DEADLINE, |s| {
            s.acked("env-after-reconnect")
        })
        .await;
    let after = crate::metrics::value(&crate::metrics::scrape(c.zbot.addr).await, reconnects, &[]);
    assert_eq!(after - before, 1.0, "one reconnect counted in {reconnects}");
    release.go();
    c.reply(&thread, "is on *production*").await;
    assert_eq!(
        c.github.deployment_requests().len(),
        1,
        "the redelivered event created no second deployment"
    );
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn its_own_messages_other_bots_and_edits_trigger_nothing() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    let ignored: [Value; 3] = [
        json!({"type": "message", "channel": CHANNEL, "user": slack::BOT_USER, "bot_id": "B0BOT",
               "text": "zbot deploy adxstat to production", "ts": user_ts(1), "channel_type": "channel"}),
        json!({"type": "message", "channel": CHANNEL, "bot_id": "B0OTHER", "subtype": "bot_message",
               "text": "zbot deploy adxstat to production", "ts": user_ts(2), "channel_type": "channel"}),
        json!({"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": user_ts(3),
               "message": {"type": "message", "user": "U0ALICE", "text": "zbot deploy adxstat to production", "ts": user_ts(3)},
               "channel_type": "channel"}),
    ];
    for (n, event) in ignored.into_iter().enumerate() {
        let id = format!("env-ignored-{n}");
        c.slack
            .send(event_envelope(&id, &format!("EvI{n}"), event, 0));
        c.slack
            .wait_for("the ack", DEADLINE, |s| s.acked(&id))
            .await;
    }
    // A person's message after them is answered, and it is the only thing zbot said.
    let thread = user_ts(4);
    c.slack.send(event_envelope(
        "env-v",
        "EvV",
        channel_message("U0ALICE", CHANNEL, &thread, "zbot version"),
        0,
    ));
    c.reply(&thread, "zbot v").await;
    assert_eq!(c.slack.posts().len(), 1, "{:#?}", c.slack.posts());
    assert!(c.github.deployment_requests().is_empty());
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn lock_unlock_locks_where_deploys_and_help() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to staging");
    c.reply(&thread, "is on *staging*").await;
    let steps = [
        (
            "lock adxstat in production release freeze",
            "Locked adxstat on *production*",
        ),
        (
            "locks",
            "adxstat is locked on *production* by <@U0ALICE> since",
        ),
        (
            "where can i deploy adxstat",
            "adxstat can be deployed to production (locked by <@U0ALICE> since",
        ),
        (
            "unlock adxstat in production",
            "Unlocked adxstat on *production*.",
        ),
        ("locks", "No environment is locked."),
        ("deploys adxstat", "Recent deployments of adxstat"),
        ("help", "`lock adxstat in production 2h &lt;reason&gt;`"),
        (
            "help deploy",
            "usage: deploy[:task][!] &lt;app&gt;[/&lt;ref&gt;]",
        ),
        (
            "cancel adxstat in production",
            "Nothing of adxstat is queued or running on *production*.",
        ),
    ];
    for (n, (text, expected)) in steps.into_iter().enumerate() {
        let thread = c.mention(10 + n as u32, "U0ALICE", text);
        let reply = c.reply(&thread, expected).await;
        if text == "deploys adxstat" {
            assert!(
                reply.contains("5001") && reply.contains("v0.0.1") && reply.contains("success"),
                "{reply}"
            );
        }
    }
    c.zbot.stop().await.unwrap();
}

/// `zbot check --online` checks the Slack token and the GitHub token's access to every repository.
#[tokio::test]
async fn check_online_verifies_both_connections() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    let config = format!(
        "{}
[apps.hidden]
repository = \"octo/secret\"

[slack]
app_token = \"{}\"
bot_token = \"{}\"
api_url = \"{}\"
",
        config_text(&github, &repo, "", ""),
        slack::APP_TOKEN,
        slack::BOT_TOKEN,
        slack.api_url()
    );
    crate::harness::prepare_dir(dir.path(), &config);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_zbot"))
        .args(["--config", "bot.toml", "check", "--online"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("slack: ok, zbot (U0BOT) in acme"),
        "{stdout}"
    );
    assert!(
        stdout.contains("github: ok, adxstat (octo/adxstat)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("github: hidden: the token cannot see octo/secret"),
        "{stdout}"
    );
}

/// `cancel` stops a running deploy: its processes end and the thread and GitHub say who cancelled it.
#[tokio::test]
async fn cancel_stops_a_running_deploy() {
    let c = chat(&[(
        "script/deploy",
        "#!/bin/sh\necho holding\nsleep 1000\n",
        true,
    )])
    .await;
    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.github.in_progress(5001, DEADLINE).await;
    let asked = c.mention(2, "U0BOB", "cancel adxstat in production");
    c.reply(&asked, "Stopping deployment #5001.").await;
    let last = c.github.final_status(5001, DEADLINE).await;
    assert_eq!(
        (last.state.as_str(), last.description.as_str()),
        ("error", "Cancelled by U0BOB")
    );
    c.reply(
        &thread,
        "was not deployed to *production*: Cancelled by U0BOB",
    )
    .await;
    let again = c.mention(3, "U0BOB", "cancel #5001");
    c.reply(&again, "Deployment #5001 is not queued or running.")
        .await;
    c.zbot.stop().await.unwrap();
}

/// Stopping zbot while a deploy runs lets the deploy end, and zbot says how it ended in the thread
/// before it exits.
#[tokio::test]
async fn stopping_mid_deploy_answers_the_thread_before_exiting() {
    let (c, release) = chat_holding_deploys().await;
    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.github.in_progress(5001, DEADLINE).await;
    release.go();
    c.zbot.stop().await.unwrap();
    assert_eq!(c.github.final_status(5001, DEADLINE).await.state, "success");
    let outcomes = production_outcomes(&c.slack, &thread);
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
}

/// A restart between a Slack event and its redelivery creates one deployment, not two.
#[tokio::test]
async fn a_redelivery_after_a_restart_deploys_once() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    let thread = user_ts(1);
    let text = format!("<@{}> deploy adxstat/v0.0.1 to production", slack::BOT_USER);
    let event = app_mention("U0ALICE", CHANNEL, &thread, &text);
    c.slack
        .send(event_envelope("env-1", "Ev1", event.clone(), 0));
    c.reply(&thread, "is on *production*").await;

    let c = c.restart().await;
    // Slack did not see the ack (say it was lost with the connection) and delivers the event again.
    c.slack.send(event_envelope("env-1-retry", "Ev1", event, 1));
    c.slack
        .wait_for("the redelivery's ack", DEADLINE, |s| s.acked("env-1-retry"))
        .await;
    // Stopping waits for every message zbot acknowledged to be handled.
    c.zbot.stop().await.unwrap();
    assert_eq!(
        c.github.deployment_requests().len(),
        1,
        "the redelivered event created no second deployment"
    );
}

/// Every slash command is handled, however many come from one channel.
#[tokio::test]
async fn two_slash_commands_from_one_channel_are_both_answered() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    for (n, environment) in [(1, "staging"), (2, "production")] {
        let text = format!("adxstat/v0.0.1 to {environment}");
        c.slack.send(slash_envelope(
            &format!("env-s{n}"),
            "U0ALICE",
            CHANNEL,
            "/deploy",
            &text,
        ));
        let parent = c
            .slack
            .wait_for("the parent message", DEADLINE, |s| {
                s.posts().into_iter().find(|p| {
                    p.thread_ts.is_none() && p.text.contains(&format!("ran `/deploy {text}`"))
                })
            })
            .await;
        c.reply(&parent.ts, &format!("is on *{environment}*")).await;
    }
    c.zbot.stop().await.unwrap();
}

/// After a restart zbot says every outcome that GitHub got but the thread did not, once.
#[tokio::test]
async fn an_outcome_chat_missed_is_posted_once_after_a_restart() {
    let (c, release) = chat_holding_deploys().await;
    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.slack
        .wait_for("the status message", DEADLINE, |s| {
            s.thread(CHANNEL, &thread)
                .into_iter()
                .find(|p| p.text.contains(":rocket: deploying"))
        })
        .await;
    // Slack fails while the deploy ends: the outcome cannot be posted.
    c.slack.refuse_posts(true);
    release.go();
    assert_eq!(c.github.final_status(5001, DEADLINE).await.state, "success");
    c.slack
        .wait_for("the outcome to be refused", DEADLINE, |s| {
            s.refused()
                .into_iter()
                .find(|p| p.text.contains("is on *production*"))
        })
        .await;
    c.slack.refuse_posts(false);

    let c = c.restart().await;
    c.reply(&thread, "is on *production*").await;
    c.zbot.stop().await.unwrap();
    let outcomes = production_outcomes(&c.slack, &thread);
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    let said = c.slack.thread(CHANNEL, &thread);
    let status = said
        .iter()
        .rev()
        .find(|p| p.text.contains("*Deployment #5001*"));
    assert!(
        status.is_some_and(|p| p.text.contains(":white_check_mark:")),
        "the status message says it ended: {said:#?}"
    );
}

/// When zbot cannot read the locks it refuses to deploy, rather than deploy past a lock it cannot see.
#[tokio::test]
async fn a_deploy_is_refused_while_the_locks_cannot_be_read() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    // The locks table goes missing under zbot, as in a damaged database.
    crate::harness::lose_table(c.dir.path(), "locks").await;

    let thread = c.mention(1, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.reply(
        &thread,
        "I couldn't read the locks, so I can't tell whether that environment is locked. Try again in a moment.",
    )
    .await;
    c.zbot.stop().await.unwrap();
    assert!(
        c.github.deployment_requests().is_empty(),
        "{:#?}",
        c.github.deployment_requests()
    );
}

/// A deployment from GitHub that zbot refuses is told in the default channel, with the reason; text
/// from the webhook reaches Slack escaped, so `<!channel>` pings nobody.
#[tokio::test]
async fn a_refused_deployment_is_told_in_the_default_channel_escaped() {
    let c = chat(&[("fabfile.py", FABFILE, false)]).await;
    let sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
    let mut event =
        crate::harness::deployment_event(8801, "v0.0.1", sha, "<!channel>", "deploy", json!({}));
    let (status, _) = c.github.deliver_deployment(c.zbot.addr, &event).await;
    assert_eq!(status, 422);
    event["deployment"]["id"] = json!(8802);
    event["deployment"]["environment"] = json!("production");
    event["repository"]["full_name"] = json!("<!here>/x");
    let (status, _) = c.github.deliver_deployment(c.zbot.addr, &event).await;
    assert_eq!(status, 422);
    let told = c
        .slack
        .wait_for("both refusals in the default channel", DEADLINE, |s| {
            let posts: Vec<_> = s
                .posts()
                .into_iter()
                .filter(|p| p.channel == "C0DEPLOYS" && p.text.contains("did not run"))
                .collect();
            (posts.len() == 2).then_some(posts)
        })
        .await;
    for post in &told {
        assert!(
            !post.text.contains('<') && post.text.contains("&lt;"),
            "escaped: {}",
            post.text
        );
    }
    // The two refusals are told independently, in either order.
    let of = |id: &str| {
        told.iter()
            .find(|p| p.text.contains(id))
            .unwrap_or_else(|| panic!("no refusal of {id}: {told:?}"))
    };
    let environment = of("#8801");
    assert!(
        environment
            .text
            .contains("is not allowed in an environment name"),
        "{}",
        environment.text
    );
    let repository = of("#8802");
    assert!(
        repository.text.contains("of &lt;!here&gt;/x")
            && repository.text.contains("is not allowed in a repository"),
        "{}",
        repository.text
    );
    c.zbot.stop().await.unwrap();
}

/// hubot-deploy's Campfire adapter sends the room and the user as numbers. That user is only what
/// the payload says (anyone with write access writes it): the deploy is its GitHub creator's
/// (`github:<login>`) in the log's first line, in `ZBOT_ACTOR`, in Slack (the default channel:
/// Campfire is not Slack) and for locks, and naming a lock's holder in the payload does not pass it.
/// The payload's user is kept for audit as unverified: `ZBOT_REQUESTED_BY` and a log line saying so.
#[tokio::test]
async fn a_numeric_hubot_user_is_not_taken_for_the_actor() {
    let c = chat(&[(
        "script/deploy",
        "#!/bin/sh\necho \"actor=$ZBOT_ACTOR requested_by=$ZBOT_REQUESTED_BY\"\n",
        true,
    )])
    .await;
    let campfire = |user: u64| json!({"adapter": "campfire", "room": 564573, "user": user});
    c.deliver_from_hubot(7101, "deploy", campfire(1232913))
        .await;
    let last = c.github.final_status(7101, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    let log = &c
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap()
        .files["deploy-7101.log"];
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.ends_with(&format!(
            "zbot deploy #7101: octo/adxstat@v0.0.1 ({}) to production for github:Codertocat",
            c.sha
        )),
        "{log}"
    );
    // The payload's user, for audit, said to be unverified.
    assert!(
        log.contains("out | actor=github:Codertocat requested_by=1232913"),
        "{log}"
    );
    assert!(
        log.lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("asked for by 1232913 (per payload, not verified)")),
        "{log}"
    );
    let status = c
        .slack
        .wait_for("the status message", DEADLINE, |s| {
            s.posts()
                .into_iter()
                .find(|p| p.channel == "C0DEPLOYS" && p.text.contains("*Deployment #7101*"))
        })
        .await;
    assert!(
        status.text.contains(" for github:Codertocat"),
        "{}",
        status.text
    );

    // The lock is the creator's; a deployment by another GitHub user naming the same hubot user in
    // its payload does not pass it.
    c.deliver_from_hubot(7102, "deploy:lock", campfire(1232913))
        .await;
    assert_eq!(
        c.github.final_status(7102, DEADLINE).await.description,
        "adxstat locked on production by github:Codertocat"
    );
    c.deliver_from_hubot(7103, "deploy", campfire(4242)).await;
    assert_eq!(c.github.final_status(7103, DEADLINE).await.state, "success");
    let event = crate::harness::deployment_event(
        7104,
        "v0.0.1",
        &c.sha,
        "production",
        "deploy",
        json!({"notify": campfire(1232913)}),
    );
    let event = crate::harness::by(event, "mallory");
    assert_eq!(
        c.github.deliver_deployment(c.zbot.addr, &event).await.0,
        202
    );
    let refused = c.github.final_status(7104, DEADLINE).await;
    assert_eq!(refused.state, "error");
    assert!(
        refused
            .description
            .starts_with("adxstat is locked on production by github:Codertocat since "),
        "{}",
        refused.description
    );
    // `deploys` names the refused deployment (not in zbot's store) by its GitHub creator, not by
    // the payload's user.
    c.github.hold(event["deployment"].clone());
    let thread = c.mention(1, "U0ALICE", "deploys adxstat");
    let listed = c.reply(&thread, "Recent deployments").await;
    let row = listed
        .lines()
        .find(|l| l.contains("7104"))
        .unwrap_or_default();
    assert!(
        row.contains("github:mallory") && !listed.contains("1232913"),
        "{listed}"
    );
    c.zbot.stop().await.unwrap();
}

/// hubot-deploy's Slack adapter names the channel (`ops`), which this workspace does not know
/// (`channel_not_found`); its shell adapter's room is `Shell`. Both deployments are told in the default
/// channel, under a line saying where they were asked from, instead of nowhere.
#[tokio::test]
async fn a_deployment_asked_for_where_zbot_cannot_answer_is_told_in_the_default_channel() {
    let c = chat(&[("script/deploy", "#!/bin/sh\necho deployed\n", true)]).await;
    let cases = [
        (
            7201,
            json!({"adapter": "slack", "room": "ops", "user": "atmos",
                   "message_id": "unknown", "thread_id": "unknown"}),
            "Asked for in Slack room `ops` by atmos (per payload), where I can't post (channel_not_found: \
             the channel does not exist or zbot cannot see it), so I answer here.",
        ),
        (
            7202,
            json!({"adapter": "shell", "room": "Shell", "user": 1, "user_name": "Shell"}),
            "Asked for in shell room `Shell` by 1 (per payload), where I can't answer, so I answer here.",
        ),
        // A Slack user id in a payload is whatever its writer put there: never a mention.
        (
            7203,
            json!({"adapter": "shell", "room": "Shell", "user": "U0ALICE"}),
            "Asked for in shell room `Shell` by U0ALICE (per payload), where I can't answer, so I answer here.",
        ),
    ];
    for (id, notify, asked) in cases {
        c.deliver_from_hubot(id, "deploy", notify).await;
        assert_eq!(c.github.final_status(id, DEADLINE).await.state, "success");
        let status = c
            .slack
            .wait_for("the status message", DEADLINE, |s| {
                s.posts().into_iter().find(|p| {
                    p.method == "chat.postMessage"
                        && p.text.contains(&format!("*Deployment #{id}*"))
                })
            })
            .await;
        assert_eq!(status.channel, "C0DEPLOYS");
        c.slack
            .reply_containing("C0DEPLOYS", &status.ts, asked)
            .await;
        c.slack
            .reply_containing("C0DEPLOYS", &status.ts, "is on *production*")
            .await;
    }
    c.zbot.stop().await.unwrap();
}

/// A fabfile whose `deploy` takes Fabric's `noop` argument.
pub(crate) const NOOP_FABFILE: &str = r#"from fabric.api import env, task
env.roledefs = {'production': ['localhost']}

@task
def deploy(branch_name='master', noop='false'):
    if noop == 'true':
        print("dry run of %s" % branch_name)
    else:
        print("deploying %s" % branch_name)
"#;

/// A recipe without a dry run is refused in the thread before GitHub is asked for a deployment.
#[tokio::test]
async fn a_dry_run_of_a_recipe_without_one_is_refused_before_any_deployment() {
    let plain = "description = \"a deploy script without a dry run\"\n\
        program = \"./script/deploy\"\nargs = [\"{ref}\"]\n";
    let c = chat_with(
        &[("script/deploy", "#!/bin/sh\necho deployed\n", true)],
        "provider = \"plain\"",
        &[("plain.toml", plain)],
    )
    .await;
    let thread = c.mention(1, "U0ALICE", "deploy:noop adxstat/v0.0.1 to production");
    let refused = c.reply(&thread, "declares no dry run").await;
    assert!(
        refused.contains("Refused to run recipe plain") && refused.contains("without `:noop`"),
        "{refused}"
    );
    assert!(
        c.github.deployment_requests().is_empty(),
        "no deployment was asked of GitHub"
    );
    // The same app deploys for real as before.
    let thread = c.mention(2, "U0ALICE", "deploy adxstat/v0.0.1 to production");
    c.reply(&thread, "is on *production*").await;
    assert_eq!(c.github.deployment_requests().len(), 1);
    c.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_dry_run_is_a_transient_deployment_that_deactivates_nothing() {
    let c = chat(&[("fabfile.py", NOOP_FABFILE, false)]).await;
    let thread = c.mention(1, "U0ALICE", "deploy:noop adxstat/v0.0.1 to production");
    let request = c
        .github
        .wait_for("a deployment", DEADLINE, |g| {
            g.deployment_requests().first().cloned()
        })
        .await;
    assert_eq!(request["task"], "deploy:noop");
    assert_eq!(request["transient_environment"], true);
    assert_eq!(request["production_environment"], false);
    let last = c.github.final_status(5001, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    assert_eq!(last.environment_url, None, "a dry run deploys nowhere");
    assert!(
        c.github
            .statuses(5001)
            .iter()
            .all(|s| s.auto_inactive == Some(false)),
        "{:#?}",
        c.github.statuses(5001)
    );
    let gist = c
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let text = gist.files.values().next().unwrap();
    assert!(text.contains("dry run of v0.0.1"), "{text}");
    assert!(text.contains("noop=true"), "{text}");
    let outcome = c.reply(&thread, "nothing was deployed").await;
    assert!(
        outcome.contains("`deploy:noop` adxstat `v0.0.1`"),
        "{outcome}"
    );
    c.zbot.stop().await.unwrap();
}
