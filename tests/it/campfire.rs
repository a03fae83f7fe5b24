//! Campfire as a second chat: a mention in a Campfire room deploys through the fake GitHub and real
//! Fabric, and the outcome is posted in that room with the log link.

use crate::fakes::campfire::{self, BOT_KEY, FakeCampfire};
use crate::fakes::github::{FakeGitHub, WebhookTarget};
use crate::fakes::slack::{self, FakeSlack};
use crate::harness::{FABFILE, TestRepo, config_text, start_chat_zbot, start_zbot};

const TOKEN: &str = "campfire-hook-token-0123456789";
const PATH: &str = "/campfire/campfire-hook-token-0123456789";
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    github: FakeGitHub,
    campfire: FakeCampfire,
    slack: Option<FakeSlack>,
    zbot: zbot::app::Running,
}

async fn setup() -> Setup {
    setup_with(false, "").await
}

async fn setup_with(with_slack: bool, notify: &str) -> Setup {
    setup_app(with_slack, "", notify).await
}

/// zbot with Campfire, and with Slack too when `slack`; `extra_app` is added to the app's table,
/// `notify` is appended to bot.toml.
async fn setup_app(with_slack: bool, extra_app: &str, notify: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let campfire = FakeCampfire::start().await;
    let repo = TestRepo::new(dir.path());
    repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let fake_slack = if with_slack {
        Some(FakeSlack::start().await)
    } else {
        None
    };
    let slack_section = fake_slack.as_ref().map_or_else(String::new, |s| {
        slack::config_section(s, "default_channel = \"C0DEPLOYS\"")
    });
    let config = format!(
        "{slack_section}{}
[campfire]
url = \"{}\"
bot_key = \"{BOT_KEY}\"
webhook_path = \"/campfire/{TOKEN}\"
rooms = [42]
{notify}",
        config_text(&github, &repo, extra_app, ""),
        campfire.url()
    );
    let zbot = match &fake_slack {
        Some(s) => start_chat_zbot(dir.path(), &config, &github, s, &repo).await,
        None => {
            let zbot = start_zbot(dir.path(), &config).await;
            github.send_webhooks_to(WebhookTarget {
                zbot: zbot.addr,
                repo: repo.path.clone(),
            });
            zbot
        }
    };
    Setup {
        _dir: dir,
        github,
        campfire,
        slack: fake_slack,
        zbot,
    }
}

#[tokio::test]
async fn a_deploy_typed_in_campfire_runs_and_its_outcome_is_posted_in_that_room() {
    let s = setup().await;
    let hook = campfire::webhook(
        1001,
        (7, "Alice"),
        (42, "Ops"),
        "@zbot deploy adxstat/v0.0.1 to production",
    );
    let (status, answer) = campfire::send(s.zbot.addr, PATH, &hook).await;
    assert_eq!(status, 200, "{answer}");

    let request = s
        .github
        .wait_for("a deployment", DEADLINE, |g| {
            g.deployment_requests().first().cloned()
        })
        .await;
    assert_eq!(request["ref"], "v0.0.1");
    assert_eq!(request["payload"]["notify"]["adapter"], "campfire");
    assert_eq!(request["payload"]["notify"]["room"], "42");
    let last = s.github.final_status(5001, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    let gist_url = last.log_url.clone().unwrap();
    let gist = s.github.gist_by_url(&gist_url).unwrap();
    let log: String = gist.files.values().cloned().collect();
    assert!(log.contains("deploying v0.0.1"), "real Fabric ran: {log}");

    let outcome = s
        .campfire
        .message_containing("42", "is on *production*")
        .await;
    assert!(outcome.body.contains(&gist_url), "{}", outcome.body);
    assert!(outcome.body.contains("adxstat"), "{}", outcome.body);
    // No threads, no edits: one message says the outcome, none shows a live status.
    let posts = s.campfire.posts();
    assert_eq!(
        posts
            .iter()
            .filter(|p| p.body.contains("Deployment #5001"))
            .count(),
        0,
        "{posts:#?}"
    );
    s.zbot.stop().await.unwrap();
}

/// `allowed_channels` written for a Slack channel does not let in a Campfire room of the same name;
/// the room's own `campfire:<name>` entry does.
#[tokio::test]
async fn a_campfire_room_named_like_an_allowed_slack_channel_is_refused() {
    let deploy = "@zbot deploy adxstat/v0.0.1 to production";
    let s = setup_app(false, "allowed_channels = [\"#prod-deploys\"]\n", "").await;
    let hook = campfire::webhook(1011, (7, "Alice"), (42, "prod-deploys"), deploy);
    let (status, _) = campfire::send(s.zbot.addr, PATH, &hook).await;
    assert_eq!(status, 200);
    let refusal = s.campfire.message_containing("42", "adxstat").await;
    assert!(
        refusal.body.contains("channel"),
        "a refusal that names the channel rule: {}",
        refusal.body
    );
    assert!(s.github.deployment_requests().is_empty());
    s.zbot.stop().await.unwrap();

    let s = setup_app(
        false,
        "allowed_channels = [\"campfire:prod-deploys\"]\n",
        "",
    )
    .await;
    let hook = campfire::webhook(1012, (7, "Alice"), (42, "prod-deploys"), deploy);
    let (status, _) = campfire::send(s.zbot.addr, PATH, &hook).await;
    assert_eq!(status, 200);
    s.github
        .wait_for("a deployment", DEADLINE, |g| {
            g.deployment_requests().first().cloned()
        })
        .await;
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_campfire_webhook_with_a_wrong_token_gets_401_and_nothing_happens() {
    let s = setup().await;
    let hook = campfire::webhook(
        1002,
        (7, "Alice"),
        (42, "Ops"),
        "@zbot deploy adxstat/v0.0.1 to production",
    );
    for path in [
        "/campfire/campfire-hook-token-0123456780",
        "/campfire/campfire-hook-token-012345678",
        "/campfire/x",
    ] {
        let (status, _) = campfire::send(s.zbot.addr, path, &hook).await;
        assert_eq!(status, 401, "{path}");
    }
    // A room zbot may not act in is ignored.
    let elsewhere = campfire::webhook(
        1004,
        (7, "Alice"),
        (43, "Lobby"),
        "@zbot deploy adxstat/v0.0.1 to production",
    );
    let (status, _) = campfire::send(s.zbot.addr, PATH, &elsewhere).await;
    assert_eq!(status, 200);
    // The right token still works: the bot answers in the room; the refused ones did nothing.
    let help = campfire::webhook(
        1003,
        (7, "Alice"),
        (42, "Ops"),
        "@zbot where can i deploy adxstat",
    );
    let (status, _) = campfire::send(s.zbot.addr, PATH, &help).await;
    assert_eq!(status, 200);
    s.campfire.message_containing("42", "production").await;
    assert!(s.github.deployment_requests().is_empty());
    assert_eq!(s.campfire.posts().len(), 1, "{:#?}", s.campfire.posts());
    s.zbot.stop().await.unwrap();
}

/// A wrong token is refused on the request line: zbot answers 401 while the (announced 50 MB) body
/// has not been sent. With the right token a body past 64 KiB is refused whole, and every refusal
/// has an empty body (Campfire would post it in the room).
#[tokio::test]
async fn a_campfire_webhook_is_refused_before_its_body_is_read_and_bodies_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup().await;
    let mut stream = tokio::net::TcpStream::connect(s.zbot.addr).await.unwrap();
    let request = format!(
        "POST /campfire/wrong-token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 50000000\r\n\r\n{{\"user\":",
        s.zbot.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(DEADLINE, async {
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).await.unwrap(),
                1,
                "connection closed"
            );
            head.push(byte[0]);
        }
    })
    .await
    .expect("an answer before the body");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let mut hook = campfire::webhook(
        1005,
        (7, "Alice"),
        (42, "Ops"),
        "@zbot deploy adxstat/v0.0.1 to production",
    );
    hook["padding"] = serde_json::Value::String(" ".repeat(100 * 1024));
    let (status, answer) = campfire::send(s.zbot.addr, PATH, &hook).await;
    assert_eq!((status, answer.as_str()), (413, ""));
    let (status, answer) = crate::harness::http(
        s.zbot.addr,
        "POST",
        PATH,
        &[("Content-Type", "application/json".to_string())],
        b"{\"not\": \"campfire\"}",
    )
    .await;
    assert_eq!((status, answer.as_str()), (400, ""));
    assert!(s.github.deployment_requests().is_empty());
    assert!(s.campfire.posts().is_empty(), "{:#?}", s.campfire.posts());
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn with_slack_and_campfire_each_deployment_answers_in_the_chat_it_came_from() {
    let s = setup_with(true, "").await;
    let slack = s.slack.clone().unwrap();
    let hook = campfire::webhook(
        1001,
        (7, "Alice"),
        (42, "Ops"),
        "@zbot deploy adxstat/v0.0.1 to production",
    );
    let (status, _) = campfire::send(s.zbot.addr, PATH, &hook).await;
    assert_eq!(status, 200);
    s.campfire
        .message_containing("42", "is on *production*")
        .await;
    assert_eq!(s.github.final_status(5001, DEADLINE).await.state, "success");

    // Then one from Slack: its thread gets it, the Campfire room does not.
    let ts = slack::mention(
        &slack,
        1,
        "U0ALICE",
        "C0CHAN",
        "deploy adxstat/v0.0.1 to staging",
    );
    slack
        .reply_containing("C0CHAN", &ts, "is on *staging*")
        .await;
    // Slack's notifier handles events in order: by now it has seen all of #5001's.
    let in_slack: Vec<_> = slack
        .posts()
        .into_iter()
        .filter(|p| p.text.contains("#5001") || p.text.contains("*production*"))
        .collect();
    assert!(in_slack.is_empty(), "{in_slack:#?}");
    let in_campfire: Vec<_> = s
        .campfire
        .posts()
        .into_iter()
        .filter(|p| p.body.contains("staging"))
        .collect();
    assert!(in_campfire.is_empty(), "{in_campfire:#?}");
    s.zbot.stop().await.unwrap();
}

/// A `[[notify]]` Campfire sink for the room a deploy was typed in says nothing there: the outcome is
/// posted once. A sink for another room still gets it.
#[tokio::test]
async fn a_campfire_sink_for_the_room_a_deploy_came_from_does_not_repeat_it() {
    let s = setup_with(
        false,
        "\n[[notify]]\nkind = \"campfire\"\nroom = 42\n\n[[notify]]\nkind = \"campfire\"\nroom = 43\n",
    )
    .await;
    let hook = campfire::webhook(
        1001,
        (7, "Alice"),
        (42, "Ops"),
        "@zbot deploy adxstat/v0.0.1 to production",
    );
    let (status, answer) = campfire::send(s.zbot.addr, PATH, &hook).await;
    assert_eq!(status, 200, "{answer}");
    let last = s.github.final_status(5001, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    s.campfire
        .message_containing("43", "is on *production*")
        .await;
    s.campfire
        .message_containing("42", "is on *production*")
        .await;
    let in_42: Vec<_> = s
        .campfire
        .posts()
        .into_iter()
        .filter(|p| p.room == "42" && p.body.contains("adxstat"))
        .collect();
    assert_eq!(in_42.len(), 1, "{in_42:#?}");
    s.zbot.stop().await.unwrap();
}
