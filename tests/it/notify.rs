//! Notification sinks: signed webhook events, the requester's direct message, and sinks that are
//! down delaying nothing.

use serde_json::Value;

use crate::fakes::github::FakeGitHub;
use crate::fakes::sink::{Answer, FakeSink};
use crate::fakes::slack::{self, FakeSlack};
use crate::harness::{FABFILE, TestRepo, config_text, sign, start_chat_zbot};

const CHANNEL: &str = "C0CHAN";
const SINK_SECRET: &str = "sink-secret-0123456789abcdef";

struct Setup {
    _dir: tempfile::TempDir,
    sha: String,
    github: FakeGitHub,
    slack: FakeSlack,
    zbot: zbot::app::Running,
}

/// zbot with Slack, deploying a Fabric app, with `notify` (`[[notify]]` tables) appended.
async fn setup(notify: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let config = format!(
        "{}\n{}\n{notify}\n",
        config_text(&github, &repo, "", ""),
        slack::config_section(&slack, "")
    );
    let zbot = start_chat_zbot(dir.path(), &config, &github, &slack, &repo).await;
    Setup {
        _dir: dir,
        sha,
        github,
        slack,
        zbot,
    }
}

fn webhook_sink(sink: &FakeSink, events: &str) -> String {
    format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SINK_SECRET}\"\nevents = {events}\nattempts = 2\n",
        sink.url()
    )
}

impl Setup {
    fn mention(&self, n: u32, text: &str) -> String {
        slack::mention(&self.slack, n, "U0ALICE", CHANNEL, text)
    }
}

#[tokio::test]
async fn a_webhook_sink_gets_signed_events_and_the_requester_a_direct_message() {
    let sink = FakeSink::start(Answer::Accept).await;
    let s = setup(&webhook_sink(&sink, "[\"started\", \"succeeded\"]")).await;
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    let received = sink
        .wait_for("started and succeeded", |r| {
            (r.len() >= 2).then(|| r.to_vec())
        })
        .await;
    let events: Vec<Value> = received
        .iter()
        .map(|r| {
            assert_eq!(
                r.signature.as_deref(),
                Some(sign(SINK_SECRET, &r.body).as_str()),
                "each event is signed with the sink's secret"
            );
            serde_json::from_slice(&r.body).unwrap()
        })
        .collect();
    assert_eq!(events[0]["event"], "started");
    assert_eq!(events[1]["event"], "succeeded");
    assert_eq!(events[1]["state"], "success");
    assert_eq!(events[1]["deployment"]["id"], 5001);
    assert_eq!(events[1]["deployment"]["app"], "adxstat");
    assert_eq!(events[1]["deployment"]["environment"], "production");
    assert!(events[1]["log_url"].as_str().is_some());

    // The thread has the outcome; the person who asked also has it directly.
    s.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    let dm = s
        .slack
        .wait_for(
            "the direct message",
            std::time::Duration::from_secs(60),
            |f| f.direct_messages("U0ALICE").into_iter().next(),
        )
        .await;
    assert!(dm.text.contains("is on *production*"), "{}", dm.text);
    s.zbot.stop().await.unwrap();
}

/// The direct message goes to the person zbot recorded as asking, never to a user a payload names:
/// a deployment made on GitHub with a Slack `notify.user` does not get zbot to message that user.
#[tokio::test]
async fn a_payload_does_not_get_zbot_to_message_its_user() {
    let s = setup("").await;
    let event = crate::harness::deployment_event(
        7301,
        "v0.0.1",
        &s.sha,
        "production",
        "deploy",
        serde_json::json!({"notify": {"adapter": "slack", "room": CHANNEL, "user": "U0BOB"}}),
    );
    let event = crate::harness::by(event, "mallory");
    assert_eq!(
        s.github.deliver_deployment(s.zbot.addr, &event).await.0,
        202
    );
    let status = s
        .github
        .final_status(7301, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(status.state, "success", "{status:?}");
    // A deploy asked for in chat afterwards: its direct message comes after 7301 has ended.
    s.mention(1, "deploy adxstat/v0.0.1 to production");
    s.slack
        .wait_for(
            "the direct message",
            std::time::Duration::from_secs(60),
            |f| f.direct_messages("U0ALICE").into_iter().next(),
        )
        .await;
    s.zbot.stop().await.unwrap();
    assert!(s.slack.direct_messages("U0BOB").is_empty());
}

#[tokio::test]
async fn a_sink_that_hangs_or_fails_delays_nothing() {
    let hanging = FakeSink::start(Answer::Hang).await;
    let failing = FakeSink::start(Answer::Fail).await;
    let all = "[\"started\", \"succeeded\", \"failed\", \"errored\"]";
    let notify = format!(
        "{}timeout = \"1h\"\n\n{}",
        webhook_sink(&hanging, all),
        webhook_sink(&failing, all)
    );
    let s = setup(&notify).await;
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    let reply = s
        .slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    assert!(reply.text.contains("adxstat"), "{}", reply.text);
    // The outcome reached the thread while the hanging sink still holds the first event it was sent
    // (`started`): the end has not even been offered to it yet.
    let held = hanging.received();
    assert_eq!(held.len(), 1, "{held:#?}");
    let first: Value = serde_json::from_slice(&held[0].body).unwrap();
    assert_eq!(first["event"], "started");
    // The sink that answers 500 was tried and does not hold GitHub's statuses either.
    failing
        .wait_for("a try", |r| (!r.is_empty()).then_some(()))
        .await;
    assert_eq!(
        s.github
            .final_status(5001, std::time::Duration::from_secs(60))
            .await
            .state,
        "success"
    );
    s.zbot.stop().await.unwrap();
}
