//! zbot where it meets what it does not trust: a token a deploy prints across the cut of a long line
//! stays hidden in the log, the gist and the failure reply; webhook bodies nobody has signed cannot
//! grow zbot's memory; a deploy's log page opens only with the token of its own link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::fakes::github::FakeGitHub;
use crate::fakes::slack::{self, FakeSlack};
use crate::harness::{self, FABFILE, TOKEN, TestRepo, config_text, deploy, http, start_zbot};

const DEADLINE: Duration = Duration::from_secs(60);

/// Where a line longer than this is cut (`MAX_LINE` in src/runner/process.rs).
const CUT: usize = 64 * 1024;

/// Parts of [`TOKEN`] this long are a leak: the first or last 8 characters already narrow it down.
const FRAGMENT: usize = 8;

/// Every part of [`TOKEN`] of [`FRAGMENT`] characters that `text` contains.
fn token_fragments(text: &str) -> Vec<&'static str> {
    (0..=TOKEN.len() - FRAGMENT)
        .map(|i| &TOKEN[i..i + FRAGMENT])
        .filter(|fragment| text.contains(fragment))
        .collect()
}

#[tokio::test]
async fn a_token_cut_across_long_lines_reaches_no_log_gist_or_reply() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let chat = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    // Lines where the cut falls inside the token, after 1, 30, 20 and 10 of its characters: the last
    // of them is what the failure reply shows.
    let mut script = String::from("#!/bin/sh\n");
    for in_first_piece in [1, TOKEN.len() - 1, 20, 10] {
        script.push_str(&format!(
            "head -c {} /dev/zero | tr '\\0' x; echo '{TOKEN} goes on'\n",
            CUT - in_first_piece
        ));
    }
    script.push_str("echo 'the migration failed'\nexit 3\n");
    let sha = repo.commit(&[("script/deploy", &script, true)], "v0.0.1");
    let config = format!(
        "{}
[slack]
app_token = \"{}\"
bot_token = \"{}\"
api_url = \"{}\"
default_channel = \"C0DEPLOYS\"
",
        config_text(&github, &repo, "", ""),
        slack::APP_TOKEN,
        slack::BOT_TOKEN,
        chat.api_url()
    );
    let zbot = start_zbot(dir.path(), &config).await;
    deploy(zbot.addr, 2001, "v0.0.1", &sha, "production").await;

    let last = github.final_status(2001, DEADLINE).await;
    assert_eq!(last.state, "failure", "{last:?}");
    let reply = chat
        .wait_for("the failure reply", DEADLINE, |s| {
            s.posts()
                .into_iter()
                .find(|p| p.text.contains("to *production* failed:"))
        })
        .await
        .text;
    assert!(
        reply.contains("the migration failed"),
        "the reply shows the last lines: {reply}"
    );
    let log = std::fs::read_to_string(dir.path().join("data/logs/2001.log")).unwrap();
    let gist = github
        .gist_by_url(last.log_url.as_deref().unwrap())
        .unwrap();
    let gist = &gist.files["deploy-2001.log"];
    for (what, text) in [("failure reply", &reply), ("gist", gist), ("log", &log)] {
        assert_eq!(
            token_fragments(text),
            Vec::<&str>::new(),
            "parts of the token are in the {what}"
        );
    }
    assert_eq!(
        log.matches("*** goes on").count(),
        4,
        "every token is redacted whole"
    );
    assert!(gist.contains("*** goes on"), "the gist shows the lines");
    zbot.stop().await.unwrap();
}

/// Eight requests of 25 MB with a well-formed but wrong signature, at once: zbot must read each body
/// to refuse it, and holds at most its budget of unverified bytes while doing so. zbot runs as its
/// own process so its memory can be read.
// zbot is started synchronously while the fake GitHub must keep serving: two runtime threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_bodies_cannot_grow_zbots_memory() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    harness::prepare_dir(dir.path(), &config_text(&github, &repo, "", ""));
    let zbot = harness::ZbotProcess::start(dir.path());
    let idle_kib = zbot.peak_rss_kib();

    let body = Arc::new(vec![b' '; zbot::webhook::MAX_BODY]);
    let forged = harness::sign("not-the-webhook-secret-0123456789", &body);
    let requests: Vec<_> = (0..8)
        .map(|n| {
            let (body, forged, addr) = (body.clone(), forged.clone(), zbot.addr);
            tokio::spawn(async move {
                let headers = [
                    ("Content-Type", "application/json".to_string()),
                    ("X-GitHub-Event", "deployment".to_string()),
                    ("X-GitHub-Delivery", format!("forged-{n}")),
                    ("X-Hub-Signature-256", forged),
                ];
                http(addr, "POST", "/webhooks/github", &headers, &body)
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    let peak_kib = zbot.peak_rss_kib();
    eprintln!(
        "zbot peak RSS: idle {idle_kib} KiB, after 8 forged 25 MB bodies {peak_kib} KiB; answers {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 413, 503].contains(s)),
        "every request is answered: {statuses:?}"
    );
    assert!(
        statuses.contains(&401),
        "a body was read and refused: {statuses:?}"
    );
    // Eight bodies held at once would be 200 MB; the budget is 31 MB.
    let body_kib = zbot::webhook::MAX_BODY as u64 / 1024;
    assert!(
        peak_kib < idle_kib + 2 * body_kib,
        "memory grew from {idle_kib} KiB to {peak_kib} KiB"
    );

    deploy(zbot.addr, 2101, "v0.0.1", &sha, "production").await;
    assert_eq!(github.final_status(2101, DEADLINE).await.state, "success");
}

/// The path and token of the link to zbot's own log page in `id`'s final status.
async fn own_link(github: &FakeGitHub, zbot: SocketAddr, id: u64) -> (String, String) {
    let url = github.final_status(id, DEADLINE).await.log_url.unwrap();
    let path = url
        .strip_prefix(&format!("http://{zbot}"))
        .unwrap_or_else(|| panic!("{url} is zbot's own page"))
        .to_string();
    let token = path
        .strip_prefix(&format!("/deployments/{id}/log?token="))
        .unwrap_or_else(|| panic!("{url} carries a token"))
        .to_string();
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    (path, token)
}

#[tokio::test]
async fn a_log_page_opens_only_with_its_links_token() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.fail_gists();
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let zbot = start_zbot(dir.path(), &config_text(&github, &repo, "", "")).await;
    deploy(zbot.addr, 2201, "v0.0.1", &sha, "production").await;
    deploy(zbot.addr, 2202, "v0.0.1", &sha, "staging").await;
    let (first, first_token) = own_link(&github, zbot.addr, 2201).await;
    let (second, second_token) = own_link(&github, zbot.addr, 2202).await;
    assert_ne!(first_token, second_token);

    let (status, log) = http(zbot.addr, "GET", &first, &[], b"").await;
    assert_eq!(status, 200);
    assert!(log.contains("local step for v0.0.1"), "{log}");
    assert!(log.contains("to production"), "{log}");
    let (status, log) = http(zbot.addr, "GET", &second, &[], b"").await;
    assert_eq!(status, 200);
    assert!(log.contains("to staging"), "{log}");

    let mut wrong = first_token.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let refused = (404, "no such deployment".to_string());
    for path in [
        "/deployments/2201/log".to_string(),
        "/deployments/2201/log?token=".to_string(),
        format!("/deployments/2201/log?token={wrong}"),
        format!("/deployments/2201/log?token={second_token}"),
        format!("/deployments/2201/log?other={first_token}"),
        format!("/deployments/9999/log?token={first_token}"),
    ] {
        assert_eq!(
            http(zbot.addr, "GET", &path, &[], b"").await,
            refused,
            "{path}"
        );
    }
    let key = dir.path().join("data/log-link.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key is the owner's alone");
    zbot.stop().await.unwrap();
}
