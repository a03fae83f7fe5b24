//! The fake Slack is checked against Slack's official Python SDK (`slack_sdk`): its Socket Mode client
//! connects, receives an event, and its ack reaches the fake.

use std::time::Duration;

use crate::fakes::slack::{self, FakeSlack, app_mention, event_envelope};
use crate::support::repo_root;

fn python() -> std::path::PathBuf {
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "slack_sdk is not installed: `bash .ci/run` installs it into .venv from tests/requirements.txt"
    );
    venv
}

#[tokio::test]
async fn slacks_own_sdk_connects_to_the_fake_and_receives_an_event() {
    let fake = FakeSlack::start().await;
    let client = tokio::process::Command::new(python())
        .arg(repo_root().join("tests/it/slack_sdk_client.py"))
        .args([
            fake.api_url(),
            slack::APP_TOKEN.to_string(),
            slack::BOT_TOKEN.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    fake.wait_for("slack_sdk to connect", Duration::from_secs(30), |f| {
        (f.connections() > 0).then_some(())
    })
    .await;
    let event = app_mention(
        "U0ALICE",
        "C0CHAN",
        "1700000000.000100",
        "<@U0BOT> deploy adxstat/v0.0.1 to production",
    );
    fake.send(event_envelope("env-sdk", "EvSDK", event, 0));
    fake.wait_for("slack_sdk's ack", Duration::from_secs(30), |f| {
        f.acked("env-sdk")
    })
    .await;
    let output = tokio::time::timeout(Duration::from_secs(30), client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let received: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(
        received,
        serde_json::json!({"type": "events_api", "event_type": "app_mention", "text": "<@U0BOT> deploy adxstat/v0.0.1 to production"})
    );
}
