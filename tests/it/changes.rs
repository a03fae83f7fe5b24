//! "What changed" in every success reply: against a repository with known history, the fake GitHub's
//! compare API computed with git.

use std::time::Duration;

use crate::fakes::github::FakeGitHub;
use crate::fakes::slack::{self, FakeSlack};
use crate::harness::{FABFILE, TestRepo, config_text, git, start_chat_zbot};

const CHANNEL: &str = "C0CHAN";
const DEADLINE: Duration = Duration::from_secs(60);

fn mention(slack: &FakeSlack, n: u32, text: &str) -> String {
    slack::mention(slack, n, "U0ALICE", CHANNEL, text)
}

#[tokio::test]
async fn success_replies_say_what_the_deploy_shipped_or_took_back() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    let first = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let config = format!(
        "{}\n{}",
        config_text(&github, &repo, "", ""),
        slack::config_section(&slack, "dm_requester = false")
    );
    let zbot = start_chat_zbot(dir.path(), &config, &github, &slack, &repo).await;

    let thread = mention(&slack, 1, "deploy adxstat/v0.0.1 to production");
    let reply = slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    assert!(
        reply
            .text
            .contains("The first deploy of adxstat to production."),
        "{}",
        reply.text
    );

    // Three commits on top, one with markup in its message.
    for message in ["Add <b>users</b> & co", "Second change", "Third change"] {
        git(
            &repo.path,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
    }
    git(&repo.path, &["tag", "v0.0.2"]);
    let second = git(&repo.path, &["rev-parse", "HEAD"]);
    let thread = mention(&slack, 2, "deploy adxstat/v0.0.2 to production");
    let reply = slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    let expected = format!(
        "3 commits since the last deploy to production \
         (<https://github.example/octo/adxstat/compare/{first}...{second}|compare>) by tests:\n\
         • Add &lt;b&gt;users&lt;/b&gt; &amp; co\n• Second change\n• Third change"
    );
    assert!(reply.text.contains(&expected), "{}", reply.text);

    let thread = mention(&slack, 3, "rollback adxstat in production");
    github.final_status(5003, DEADLINE).await;
    let reply = slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    assert!(
        reply.text.contains("Took back 3 commits from production"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("• Third change"), "{}", reply.text);
    zbot.stop().await.unwrap();
}

/// A compare GitHub never answers (within a `[github] timeout` far past the test's deadline) holds up
/// neither the success status nor the reply: they come without the changes line.
#[tokio::test]
async fn a_compare_that_never_answers_holds_up_neither_status_nor_reply() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let config = format!(
        "{}\n{}",
        config_text(&github, &repo, "", ""),
        slack::config_section(&slack, "dm_requester = false")
    )
    .replace("[github]\n", "[github]\ntimeout = \"600s\"\n");
    let zbot = start_chat_zbot(dir.path(), &config, &github, &slack, &repo).await;
    let thread = mention(&slack, 1, "deploy adxstat/v0.0.1 to production");
    slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;

    git(
        &repo.path,
        &["commit", "--quiet", "--allow-empty", "-m", "Second change"],
    );
    git(&repo.path, &["tag", "v0.0.2"]);
    github.hold_compares();
    let thread = mention(&slack, 2, "deploy adxstat/v0.0.2 to production");
    let status = github.final_status(5002, DEADLINE).await;
    assert_eq!(status.state, "success");
    let reply = slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    assert!(
        !reply.text.contains("since the last deploy"),
        "{}",
        reply.text
    );
    zbot.stop().await.unwrap();
}
