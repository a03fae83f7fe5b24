//! Deploys to Heroku: the Platform API executor against a fake Heroku that downloads the source from
//! the fake GitHub's archive redirect, with the answer in the Slack thread.

use std::time::Duration;

use crate::fakes::github::{ARCHIVE_TOKEN, FakeGitHub, Status};
use crate::fakes::heroku::{API_KEY, FakeHeroku, Script};
use crate::fakes::slack::{self, FakeSlack};
use crate::harness::{TestRepo, config_text, deliver, deploy, deployment_event, start_chat_zbot};

const DEADLINE: Duration = Duration::from_secs(60);
const CHANNEL: &str = "C0CHAN";

struct Setup {
    _dir: tempfile::TempDir,
    sha: String,
    github: FakeGitHub,
    slack: FakeSlack,
    heroku: FakeHeroku,
    zbot: zbot::app::Running,
}

/// zbot whose app `adxstat` deploys to the Heroku apps `adxstat` (production, which the fake knows)
/// and `adxstat-staging` (staging, which it does not); `extra_app` goes into the app's table.
async fn setup(extra_app: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let heroku = FakeHeroku::start(&["adxstat"]).await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(
        &[
            ("package.json", "{\"name\": \"adxstat\"}", false),
            ("Procfile", "web: node index.js", false),
        ],
        "v0.0.1",
    );
    let app = format!(
        "provider = \"heroku\"\nheroku_app = {{ production = \"adxstat\", staging = \"adxstat-staging\" }}\n{extra_app}"
    );
    let config = format!(
        "{}
[heroku]
api_key = \"{API_KEY}\"
api_url = \"{}\"
poll_interval = \"100ms\"

{}",
        config_text(&github, &repo, &app, ""),
        heroku.url(),
        slack::config_section(&slack, "")
    );
    let zbot = start_chat_zbot(dir.path(), &config, &github, &slack, &repo).await;
    Setup {
        _dir: dir,
        sha,
        github,
        slack,
        heroku,
        zbot,
    }
}

impl Setup {
    fn mention(&self, n: u32, text: &str) -> String {
        slack::mention(&self.slack, n, "U0ALICE", CHANNEL, text)
    }

    /// The deployment's final GitHub status, which must be `state` and say `says`.
    async fn ended(&self, id: u64, state: &str, says: &str) -> Status {
        let last = self.github.final_status(id, DEADLINE).await;
        assert_eq!(last.state, state, "{last:?}");
        assert!(last.description.contains(says), "{}", last.description);
        last
    }
}

#[tokio::test]
async fn a_heroku_deploy_from_slack_ends_with_the_release_in_its_thread() {
    let s = setup("").await;
    s.heroku.script(Script::Succeed(vec![
        "-----> Node.js app detected".into(),
        "-----> Build succeeded!".into(),
    ]));
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    let last = s
        .ended(5001, "success", "Heroku release v42 of adxstat")
        .await;
    let reply = s
        .slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    assert!(reply.text.contains("v42"), "{}", reply.text);

    // Heroku was asked as documented, with the commit's source from GitHub's archive.
    let builds = s.heroku.builds();
    assert_eq!(builds.len(), 1, "{builds:#?}");
    let build = &builds[0];
    assert_eq!(build.app, "adxstat");
    assert_eq!(build.source_blob["version"], s.sha.as_str());
    assert_eq!(build.authorization, format!("Bearer {API_KEY}"));
    assert_eq!(build.accept, "application/vnd.heroku+json; version=3");
    assert!(
        build.files.iter().any(|f| f == "Procfile"),
        "{:?}",
        build.files
    );
    assert_eq!(s.github.tarball_requests(), vec![s.sha.clone()]);
    assert_eq!(s.github.archive_downloads(), vec![s.sha.clone()]);

    // The build's output is in the log; the archive URL's token is nowhere zbot writes.
    let gist = s
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let log: String = gist.files.values().cloned().collect();
    assert!(log.contains("-----> Node.js app detected"), "{log}");
    assert!(!log.contains(ARCHIVE_TOKEN), "{log}");
    for status in s.github.all_statuses() {
        assert!(!status.description.contains(ARCHIVE_TOKEN));
    }
    for post in s.slack.posts() {
        assert!(!post.text.contains(ARCHIVE_TOKEN));
    }
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_heroku_build_is_a_failure_with_its_output_tail() {
    let s = setup("").await;
    s.heroku.script(Script::Fail(vec![
        "-----> Installing dependencies".into(),
        "npm ERR! missing script: build".into(),
        "-----> Build failed".into(),
    ]));
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    s.ended(5001, "failure", "failed").await;
    let reply = s
        .slack
        .reply_containing(CHANNEL, &thread, "npm ERR! missing script: build")
        .await;
    assert!(
        reply.text.contains("to *production* failed"),
        "{}",
        reply.text
    );
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn each_heroku_api_error_is_an_error_that_says_what_to_fix() {
    let s = setup("").await;
    let cases: Vec<(Option<Script>, &str, &str)> = vec![
        (
            Some(Script::Refuse(
                401,
                serde_json::json!({"id": "unauthorized", "message": "Invalid credentials provided."}),
                None,
            )),
            "production",
            "set [heroku] api_key",
        ),
        (None, "staging", "Heroku has no app adxstat-staging"),
        (
            Some(Script::Refuse(
                422,
                serde_json::json!({"id": "invalid_params", "message": "source_blob.url is not reachable"}),
                None,
            )),
            "production",
            "Heroku refused the build of adxstat (source_blob.url is not reachable)",
        ),
        (
            Some(Script::Refuse(
                429,
                serde_json::json!({"id": "rate_limit", "message": "Your account reached the API rate limit"}),
                Some(120),
            )),
            "production",
            "rate limit is used up: deploy again in 2m 00s",
        ),
    ];
    for (n, (script, environment, sentence)) in cases.into_iter().enumerate() {
        let id = 7001 + n as u64;
        if let Some(script) = script {
            s.heroku.script(script);
        }
        deploy(s.zbot.addr, id, "v0.0.1", &s.sha, environment).await;
        s.ended(id, "error", sentence).await;
    }
    assert!(s.heroku.builds().is_empty());
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_heroku_build_past_the_timeout_is_left_to_heroku_and_said_so() {
    let s = setup("timeout = \"2s\"").await;
    s.heroku.script(Script::Hang);
    deploy(s.zbot.addr, 7101, "v0.0.1", &s.sha, "production").await;
    s.ended(7101, "error", "Heroku may still finish").await;
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_heroku_deploy_stops_following_the_build_and_says_heroku_may_finish_it() {
    let s = setup("").await;
    s.heroku.script(Script::Hang);
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    // Cancelled once Heroku has the build.
    s.github.in_progress(5001, DEADLINE).await;
    let build_id = s.heroku.first_build().await.id;
    s.mention(2, "cancel #5001");
    s.ended(5001, "error", "Heroku may still finish build")
        .await;
    let reply = s
        .slack
        .reply_containing(CHANNEL, &thread, "Heroku may still finish")
        .await;
    assert!(reply.text.contains(&build_id[..8]), "{}", reply.text);
    s.zbot.stop().await.unwrap();
}

/// Every file under `dir`, read as text.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    found
}

/// Heroku echoes the source URL (and so the archive's token) in a 422's message and in a build's
/// output: neither the statuses, the chat, the gists nor any file zbot writes shows it.
#[tokio::test]
async fn a_source_url_heroku_echoes_shows_nowhere() {
    let s = setup("").await;
    s.heroku.script(Script::Refuse(
        422,
        serde_json::json!({"id": "invalid_params", "message": "cannot fetch {source_url}"}),
        None,
    ));
    let refused = s.mention(1, "deploy adxstat/v0.0.1 to production");
    s.ended(
        5001,
        "error",
        "Heroku refused the build of adxstat (cannot fetch ***)",
    )
    .await;
    s.slack
        .reply_containing(CHANNEL, &refused, "cannot fetch ***")
        .await;

    s.heroku.script(Script::Fail(vec![
        "-----> Fetching {source_url}".into(),
        "-----> Build failed".into(),
    ]));
    let failed = s.mention(2, "deploy adxstat/v0.0.1 to production");
    let last = s.github.final_status(5002, DEADLINE).await;
    assert_eq!(last.state, "failure", "{last:?}");
    s.slack
        .reply_containing(CHANNEL, &failed, "Fetching ***")
        .await;
    let gist = s
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let log: String = gist.files.values().cloned().collect();
    assert!(log.contains("-----> Fetching ***"), "{log}");

    for status in s.github.all_statuses() {
        assert!(!status.description.contains(ARCHIVE_TOKEN), "{status:?}");
    }
    for post in s.slack.posts() {
        assert!(!post.text.contains(ARCHIVE_TOKEN), "{}", post.text);
    }
    let files = files_under(s._dir.path());
    assert!(
        files
            .iter()
            .any(|(_, text)| text.contains("-----> Fetching ***")),
        "the log file is on disk"
    );
    for (path, text) in files {
        assert!(!text.contains(ARCHIVE_TOKEN), "{}", path.display());
    }
    s.zbot.stop().await.unwrap();
}

/// Heroku's API has a bad moment: a poll answering 503 is asked again, and a release it cannot look
/// up after the build succeeded leaves the deploy a success, without the release's version.
#[tokio::test]
async fn a_failed_poll_is_asked_again_and_a_failed_release_lookup_is_still_a_success() {
    let s = setup("").await;
    s.heroku.fail_polls(1);
    s.heroku.fail_releases();
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    let last = s.ended(5001, "success", "as Heroku app adxstat").await;
    assert!(s.heroku.polls() >= 2, "{}", s.heroku.polls());
    s.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    let gist = s
        .github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let log: String = gist.files.values().cloned().collect();
    assert!(log.contains("asking again"), "{log}");
    assert!(log.contains("the release's version is unknown"), "{log}");
    s.zbot.stop().await.unwrap();
}

/// Cancelled while Heroku has the build request but has not answered it: Heroku may be building it,
/// and the outcome says so.
#[tokio::test]
async fn a_deploy_cancelled_while_heroku_holds_the_build_request_says_heroku_may_build_it() {
    let s = setup("").await;
    s.heroku.script(Script::HoldCreation);
    let thread = s.mention(1, "deploy adxstat/v0.0.1 to production");
    s.heroku.held_creation().await;
    s.mention(2, "cancel #5001");
    s.ended(5001, "error", "Heroku may still build").await;
    s.slack
        .reply_containing(CHANNEL, &thread, "Heroku may still build")
        .await;
    s.zbot.stop().await.unwrap();
}

/// A host limit or a task other than `deploy` means nothing to Heroku: from chat they are refused
/// before a GitHub deployment exists; from another tool the deployment ends `error` with the reason.
/// Heroku is never asked to build.
#[tokio::test]
async fn a_heroku_app_refuses_host_limits_and_tasks() {
    let s = setup("").await;
    for (n, text, says) in [
        (
            1,
            "deploy adxstat/v0.0.1 to production/web1",
            "takes no host limit",
        ),
        (
            2,
            "deploy:migrate adxstat/v0.0.1 to production",
            "takes no `deploy:migrate` task",
        ),
    ] {
        let thread = s.mention(n, text);
        let reply = s.slack.reply_containing(CHANNEL, &thread, says).await;
        assert!(
            reply.text.contains("built by Heroku"),
            "{text}: {}",
            reply.text
        );
    }
    assert!(s.github.deployment_requests().is_empty());

    for (id, task, payload, says) in [
        (
            7201,
            "deploy",
            serde_json::json!({"hosts": "web1"}),
            "takes no host limit",
        ),
        (
            7202,
            "deploy:migrate",
            serde_json::json!({}),
            "takes no `deploy:migrate` task",
        ),
    ] {
        let event = deployment_event(id, "v0.0.1", &s.sha, "production", task, payload);
        let (status, body) =
            deliver(s.zbot.addr, "deployment", &format!("delivery-{id}"), &event).await;
        assert_eq!(status, 422, "{body}");
        s.ended(id, "error", says).await;
    }
    assert!(s.heroku.builds().is_empty());
    s.zbot.stop().await.unwrap();
}
