//! A deploy's start: the tree is checked out beside GitHub's side of the start (the gist, then
//! `in_progress`), the recipe waits for GitHub's first answer but not for `in_progress`, which still
//! comes before the final status; a GitHub that does not answer runs nothing; a cancel before GitHub
//! answered runs nothing and says nothing is in progress; a dirty tree is moved like a fresh one.

use std::path::Path;
use std::time::Duration;

use zbot::domain::DeploymentId;
use zbot::events::Event;
use zbot::store::DeploymentState;

use crate::fakes::github::FakeGitHub;
use crate::harness::{TestRepo, config_text, deploy, start_zbot, wait_until};

/// Generous: each wait ends as soon as what it waits for happens.
const DEADLINE: Duration = Duration::from_secs(60);

/// A `script/deploy` that records that it ran in `ran` (outside the tree, which is cleaned).
fn recording_script(ran: &Path) -> String {
    format!(
        "#!/bin/sh\necho \"deploy $ZBOT_DEPLOYMENT_ID ran\"\necho $ZBOT_DEPLOYMENT_ID >> {}\n",
        ran.display()
    )
}

struct Setup {
    dir: tempfile::TempDir,
    github: FakeGitHub,
    zbot: zbot::app::Running,
    sha: String,
    /// Where the recipe records each run.
    ran: std::path::PathBuf,
}

async fn setup(github_section: &str) -> Setup {
    setup_cloning_from(github_section, None).await
}

/// [`setup`], the repository cloned from `clone_url` when given (the test repository's otherwise).
async fn setup_cloning_from(github_section: &str, clone_url: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(
        &[("script/deploy", &recording_script(&ran), true)],
        "v0.0.1",
    );
    let mut config = config_text(&github, &repo, "", "")
        .replace("[github]\n", &format!("[github]\n{github_section}"));
    if let Some(url) = clone_url {
        config = config.replace(&repo.clone_url(), url);
    }
    let zbot = start_zbot(dir.path(), &config).await;
    Setup {
        dir,
        github,
        zbot,
        sha,
        ran,
    }
}

impl Setup {
    fn runs(&self) -> String {
        std::fs::read_to_string(&self.ran).unwrap_or_default()
    }
}

/// Deploys `id` while GitHub answers nothing (a 2 s timeout): it ends `error` saying GitHub did not
/// answer, and the recipe did not run.
async fn deploy_unanswered(s: &Setup, id: u64) {
    let mut events = s.zbot.events.subscribe();
    s.github.never_answer();
    deploy(s.zbot.addr, id, "v0.0.1", &s.sha, "production").await;
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Event::Deployment(event) = events.recv().await.unwrap()
                && event.deployment_id == DeploymentId(id)
                && event.state.is_final()
            {
                return event;
            }
        }
    })
    .await
    .expect("the deploy ends");
    assert_eq!(
        (ended.state.as_str(), ended.description.as_str()),
        (
            "error",
            "GitHub did not answer within 2s, so zbot did not start the deploy"
        )
    );
    assert_eq!(s.runs(), "", "the recipe ran");
}

#[tokio::test]
async fn the_recipe_runs_while_in_progress_is_unanswered_and_the_end_comes_after_it() {
    let s = setup("").await;
    let release = s.github.hold_status_answers(1501);
    deploy(s.zbot.addr, 1501, "v0.0.1", &s.sha, "production").await;
    wait_until("the recipe to run", DEADLINE, || s.runs() == "1501\n").await;
    s.github.in_progress(1501, DEADLINE).await;
    // GitHub has not answered `in_progress`: the deploy has not ended, nothing else was posted.
    let stored = s.zbot.store.get(DeploymentId(1501)).await.unwrap().unwrap();
    assert_eq!(stored.state, DeploymentState::Running);
    assert_eq!(s.github.states(1501), ["in_progress"]);

    release.send(true).unwrap();
    let last = s.github.final_status(1501, DEADLINE).await;
    assert_eq!(last.state, "success", "{:?}", last.description);
    let statuses = s.github.statuses(1501);
    assert_eq!(s.github.states(1501), ["in_progress", "success"]);
    // Both link the deploy's gist, which holds the recipe's output.
    let gist_url = statuses[0].log_url.clone().unwrap();
    assert_eq!(statuses[1].log_url.as_deref(), Some(gist_url.as_str()));
    let gist = s
        .github
        .gist_by_url(&gist_url)
        .expect("the status links the gist");
    let text: String = gist.files.values().cloned().collect();
    assert!(text.contains("deploy 1501 ran"), "{text}");
    s.zbot.stop().await.unwrap();
}

#[tokio::test]
async fn a_github_that_does_not_answer_runs_no_recipe() {
    let s = setup("timeout = \"2s\"\nconnect_timeout = \"2s\"\n").await;
    deploy_unanswered(&s, 1502).await;
    let log = std::fs::read_to_string(s.dir.path().join("data/logs/1502.log")).unwrap();
    assert!(!log.contains("recipe "), "{log}");
    tokio::time::timeout(DEADLINE, s.zbot.stop())
        .await
        .expect("zbot stops while GitHub hangs")
        .unwrap();
}

/// In an outage GitHub's git is as silent as its API: the deploy ends on GitHub's silence when it is
/// known, saying so, and does not wait for a fetch that hangs.
#[tokio::test]
async fn a_github_that_does_not_answer_ends_the_deploy_while_its_fetch_hangs() {
    // Takes connections and never answers them, as a git host in an outage.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/octo/app.git", hanging.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    let s = setup_cloning_from("timeout = \"2s\"\nconnect_timeout = \"2s\"\n", Some(&url)).await;
    deploy_unanswered(&s, 1504).await;
    tokio::time::timeout(DEADLINE, s.zbot.stop())
        .await
        .expect("zbot stops while GitHub hangs")
        .unwrap();
    held.abort();
}

#[tokio::test]
async fn a_cancel_before_github_answered_runs_nothing_and_says_no_in_progress() {
    let s = setup("").await;
    let release = s.github.hold_gists();
    deploy(s.zbot.addr, 1503, "v0.0.1", &s.sha, "production").await;
    s.github
        .wait_for("the gist to be asked for", DEADLINE, |g| {
            (g.gists_asked() == 1).then_some(())
        })
        .await;
    s.zbot
        .scheduler
        .cancel(DeploymentId(1503), "Cancelled by U0ALICE")
        .await;
    release.send(true).unwrap();
    let last = s.github.final_status(1503, DEADLINE).await;
    assert_eq!(
        (last.state.as_str(), last.description.as_str()),
        ("error", "Cancelled by U0ALICE")
    );
    assert_eq!(s.github.states(1503), ["error"]);
    assert_eq!(s.runs(), "", "the recipe ran");
    s.zbot.stop().await.unwrap();
}

/// A tree a previous run left dirty (a tracked file edited, another deleted, an untracked file, an
/// ignored build directory) is moved to the next commit (which deletes one file and adds another)
/// exactly: the recipe sees the commit's files and nothing else.
#[tokio::test]
async fn a_dirty_tree_is_moved_to_exactly_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let script = "#!/bin/sh\nfind . -path ./.git -prune -o -type f -print | sort | sed 's/^/file /'\nfor f in VERSION kept.txt; do echo \"$f: $(cat $f)\"; done\n";
    let v1 = repo.commit(
        &[
            ("script/deploy", script, true),
            (".gitignore", "build/\n", false),
            ("VERSION", "one", false),
            ("kept.txt", "kept", false),
            ("old/gone.txt", "gone in v2", false),
        ],
        "v0.0.1",
    );
    let zbot = start_zbot(dir.path(), &config_text(&github, &repo, "", "")).await;
    deploy(zbot.addr, 1504, "v0.0.1", &v1, "production").await;
    assert_eq!(github.final_status(1504, DEADLINE).await.state, "success");

    let tree = dir.path().join("data/work/adxstat/production");
    std::fs::write(tree.join("VERSION"), "edited by hand").unwrap();
    std::fs::remove_file(tree.join("kept.txt")).unwrap();
    std::fs::write(tree.join("untracked.txt"), "left by a run").unwrap();
    std::fs::create_dir_all(tree.join("build")).unwrap();
    std::fs::write(tree.join("build/artifact"), "ignored").unwrap();
    std::fs::write(tree.join("old/untracked-too"), "beside a deleted file").unwrap();
    std::fs::remove_dir_all(repo.path.join("old")).unwrap();
    let v2 = repo.commit(
        &[("VERSION", "two", false), ("new.txt", "new", false)],
        "v0.0.2",
    );
    deploy(zbot.addr, 1505, "v0.0.2", &v2, "production").await;
    assert_eq!(github.final_status(1505, DEADLINE).await.state, "success");

    let log = std::fs::read_to_string(dir.path().join("data/logs/1505.log")).unwrap();
    let seen: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once(" out | ").map(|(_, said)| said))
        .collect();
    assert_eq!(
        seen,
        [
            "file ./.gitignore",
            "file ./VERSION",
            "file ./kept.txt",
            "file ./new.txt",
            "file ./script/deploy",
            "VERSION: two",
            "kept.txt: kept",
        ],
        "{log}"
    );
    assert!(!tree.join("old").exists(), "the deleted directory is gone");
    zbot.stop().await.unwrap();
}
