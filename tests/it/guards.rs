//! The guards through the fake Slack and the fake GitHub: freezes and deploy windows (with an injected
//! clock), expiring locks, `lock!` and its direct message, and `notify me when … is free`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::fakes::github::{FakeGitHub, WebhookTarget};
use crate::fakes::slack::{self, FakeSlack, block_action_envelope, view_submission_envelope};
use crate::harness::{FABFILE, TestRepo, config_text, install_recipes};

const DEADLINE: Duration = Duration::from_secs(60);
const CHANNEL: &str = "C0CHAN";

struct Guarded {
    _dir: tempfile::TempDir,
    sha: String,
    github: FakeGitHub,
    slack: FakeSlack,
    zbot: zbot::app::Running,
    clock: zbot::clock::Clock,
    next: std::sync::atomic::AtomicU32,
    repo: TestRepo,
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// zbot with `U0ADMIN` as its admin, `more` appended to bot.toml, and its clock at `now`.
async fn guarded(more: &str, now: DateTime<Utc>) -> Guarded {
    guarded_app("", more, now).await
}

/// [`guarded_app`] where production needs one approval (a request waits two hours), at 09:00 UTC.
async fn guarded_with_approval() -> Guarded {
    guarded_app(
        "approvals = { production = { count = 1, timeout = \"2h\" } }",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await
}

/// [`guarded`] with `app` added to `[apps.adxstat]`.
async fn guarded_app(app: &str, more: &str, now: DateTime<Utc>) -> Guarded {
    guarded_with(&[("fabfile.py", FABFILE, false)], app, more, now).await
}

/// [`guarded_app`] with a repository of `files`.
async fn guarded_with(
    files: &[(&str, &str, bool)],
    app: &str,
    more: &str,
    now: DateTime<Utc>,
) -> Guarded {
    guarded_with_bot(files, app, "", more, now).await
}

/// [`guarded_with`] with `bot` added to `[bot]`.
async fn guarded_with_bot(
    files: &[(&str, &str, bool)],
    app: &str,
    bot: &str,
    more: &str,
    now: DateTime<Utc>,
) -> Guarded {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let slack = FakeSlack::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(files, "v0.0.1");
    let config = format!(
        "{}\n{}\n{more}\n",
        config_text(&github, &repo, app, "").replace(
            "[bot]\n",
            &format!("[bot]\nadmins = [\"U0ADMIN\"]\ntime_zone = \"Europe/Berlin\"\n{bot}\n")
        ),
        slack::config_section(
            &slack,
            "default_channel = \"C0DEPLOYS\"\nstatus_refresh = \"1s\""
        ),
    );
    let path = dir.path().join("bot.toml");
    std::fs::write(&path, &config).unwrap();
    install_recipes(dir.path());
    let config = zbot::config::Config::load(&path).unwrap_or_else(|p| panic!("{p:?}"));
    let clock = zbot::clock::Clock::manual(now);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let zbot = zbot::app::start_with_clock(config, Some(listener), clock.clone())
        .await
        .expect("zbot starts");
    github.send_webhooks_to(WebhookTarget {
        zbot: zbot.addr,
        repo: repo.path.clone(),
    });
    slack
        .wait_for("zbot to connect", DEADLINE, |s| {
            (s.connections() > 0).then_some(())
        })
        .await;
    Guarded {
        _dir: dir,
        sha,
        github,
        slack,
        zbot,
        clock,
        next: std::sync::atomic::AtomicU32::new(1),
        repo,
    }
}

impl Guarded {
    /// `user` says `text` to the bot in a new thread; its ts.
    fn say(&self, user: &str, text: &str) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        slack::mention(&self.slack, n, user, CHANNEL, text)
    }

    /// Waits for a message zbot posted to `channel` (a user id: a direct message) containing `needle`.
    async fn posted_to(&self, channel: &str, needle: &str) -> slack::Posted {
        self.slack
            .wait_for(
                &format!("a post to {channel} with {needle:?}"),
                DEADLINE,
                |s| {
                    s.posts()
                        .into_iter()
                        .find(|p| p.channel == channel && p.text.contains(needle))
                },
            )
            .await
    }

    /// `user` says `text`; the reply in its thread that contains `needle`.
    async fn ask(&self, user: &str, text: &str, needle: &str) -> String {
        let thread = self.say(user, text);
        self.slack
            .reply_containing(CHANNEL, &thread, needle)
            .await
            .text
    }

    /// The deploy request message `#id` zbot posted (with its buttons).
    async fn request_message(&self, id: u32) -> slack::Posted {
        let needle = format!("*Deploy request #{id}*");
        self.slack
            .wait_for(&format!("request #{id}"), DEADLINE, |s| {
                s.posts()
                    .into_iter()
                    .find(|p| p.method == "chat.postMessage" && p.text.contains(&needle))
            })
            .await
    }

    /// `user` clicks `action_id` on request `id`'s message.
    async fn click(&self, user: &str, id: u32, action_id: &str) {
        let message = self.request_message(id).await;
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.slack.send(block_action_envelope(
            &format!("click-{n}"),
            user,
            CHANNEL,
            &message.ts,
            action_id,
            &id.to_string(),
        ));
    }

    /// `U0ALICE` deploys to staging (`text`), then a new commit tagged `tag` moves main on.
    async fn staging_deploy_then_commit(&self, text: &str, tag: &str) {
        self.ask("U0ALICE", text, "is on *staging*").await;
        self.repo
            .commit(&[("fabfile.py", crate::harness::FABFILE, false)], tag);
    }

    /// Direct messages to `user` (posts to their user id).
    fn direct_messages(&self, user: &str) -> Vec<String> {
        self.slack
            .posts()
            .into_iter()
            .filter(|p| p.method == "chat.postMessage" && p.channel == user)
            .map(|p| p.text)
            .collect()
    }
}

/// A freeze blocks chat and GitHub deployments with who, why and until when; a `deploy!` by someone
/// who is not an admin is refused; an admin's goes through and says so in the thread and the status.
#[tokio::test]
async fn a_freeze_blocks_chat_and_webhook_deploys_until_an_admin_overrides() {
    let g = guarded("", at("2026-11-30T09:00:00Z")).await;
    let frozen = g
        .ask("U0BOB", "freeze production 2h release week", "Froze")
        .await;
    assert_eq!(
        frozen,
        ":snowflake: Froze production (every app) for deploys until 12:00 CET: release week."
    );

    let refused = g
        .ask("U0ALICE", "deploy adxstat/v0.0.1 to production", "frozen")
        .await;
    assert!(
        refused.starts_with(
            "production (every app) is frozen by <@U0BOB> until 12:00 CET: release week."
        ),
        "{refused}"
    );
    assert!(
        refused.contains("An admin can deploy through it with `deploy!`"),
        "{refused}"
    );
    let not_admin = g
        .ask("U0ALICE", "deploy! adxstat/v0.0.1 to production", "frozen")
        .await;
    assert!(
        not_admin.contains("Only an admin can deploy through it"),
        "{not_admin}"
    );
    assert!(
        g.github.deployment_requests().is_empty(),
        "nothing asked of GitHub"
    );

    // A deployment made on GitHub meets the same freeze, as its `error` status.
    let event = crate::harness::deployment_event(
        7001,
        "v0.0.1",
        &g.sha,
        "production",
        "deploy",
        json!({"notify": {"user": "U0ALICE"}}),
    );
    assert_eq!(
        g.github.deliver_deployment(g.zbot.addr, &event).await.0,
        202
    );
    let status = g.github.final_status(7001, DEADLINE).await;
    assert_eq!(status.state, "error");
    assert_eq!(
        status.description,
        "production (every app) is frozen by U0BOB until 12:00 CET: release week"
    );

    // Staging is not frozen.
    let staging = g.say("U0ALICE", "deploy adxstat/v0.0.1 to staging");
    g.slack
        .reply_containing(CHANNEL, &staging, "is on *staging*")
        .await;

    let where_ = g
        .ask("U0ALICE", "where can i deploy adxstat", "can be deployed")
        .await;
    assert!(
        where_.contains(":snowflake: production (every app) is frozen by <@U0BOB>"),
        "{where_}"
    );

    // The admin's deploy! goes through, said in the thread and in GitHub's statuses.
    let thread = g.say("U0ADMIN", "deploy! adxstat/v0.0.1 to production");
    let said = g
        .slack
        .reply_containing(CHANNEL, &thread, "is deploying through this")
        .await;
    assert!(said.text.starts_with(":warning: <@U0ADMIN> is deploying through this: production (every app) is frozen by <@U0BOB>"), "{}", said.text);
    g.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    let id = *g.github.deployment_ids().last().unwrap();
    let last = g.github.final_status(id, DEADLINE).await;
    assert_eq!(last.state, "success");
    assert!(
        last.description
            .contains("override by U0ADMIN (production (every app) is frozen by U0BOB"),
        "{}",
        last.description
    );

    // Only the holder or an admin lifts it; then deploys go again.
    let other = g.ask("U0ALICE", "unfreeze production", "lift").await;
    assert_eq!(
        other,
        "Only <@U0BOB> or an admin can lift that freeze of production (every app)."
    );
    let lifted = g.ask("U0BOB", "unfreeze production", "Unfroze").await;
    assert_eq!(lifted, "Unfroze production (every app).");
    let thread = g.say("U0ALICE", "deploy adxstat/v0.0.1 to production");
    g.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    g.zbot.stop().await.unwrap();
}

/// An admin's `deploy!` through two freezes names both in the thread, and in GitHub's status as
/// far as its 140 characters go, counting the rest.
#[tokio::test]
async fn an_override_through_two_freezes_names_both() {
    let g = guarded("", at("2026-11-30T09:00:00Z")).await;
    g.ask("U0BOB", "freeze production 2h release week", "Froze")
        .await;
    g.ask(
        "U0CAROL",
        "freeze adxstat in production 4h db move",
        "Froze",
    )
    .await;
    let thread = g.say("U0ADMIN", "deploy! adxstat/v0.0.1 to production");
    let said = g
        .slack
        .reply_containing(CHANNEL, &thread, "is deploying through")
        .await;
    assert!(
        said.text.contains("release week") && said.text.contains("db move"),
        "{}",
        said.text
    );
    g.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    let id = *g.github.deployment_ids().last().unwrap();
    let last = g.github.final_status(id, DEADLINE).await;
    assert_eq!(last.state, "success");
    let description = &last.description;
    assert!(description.chars().count() <= 140, "{description}");
    assert!(
        description.contains("override by U0ADMIN (production (every app) is frozen by U0BOB")
            && (description.contains("db move") || description.contains("; +1 more)")),
        "{description}"
    );
    g.zbot.stop().await.unwrap();
}

/// A freeze stored under an environment bot.toml does not have (a typo from before names were
/// checked, an environment removed since) is lifted by an admin by that name; others are told
/// the environment is unknown.
#[tokio::test]
async fn an_admin_unfreezes_a_freeze_stored_under_a_name_no_longer_configured() {
    let g = guarded("", at("2026-11-30T09:00:00Z")).await;
    g.zbot
        .store
        .freeze(
            None,
            &"prodcution".parse().unwrap(),
            "U0BOB",
            Some("typo"),
            at("2026-11-29T09:00:00Z"),
            None,
        )
        .await
        .unwrap();
    let refused = g.ask("U0ALICE", "unfreeze prodcution", "prodcution").await;
    assert!(!refused.contains("Unfroze"), "{refused}");
    let lifted = g.ask("U0ADMIN", "unfreeze prodcution", "Unfroze").await;
    assert_eq!(lifted, "Unfroze prodcution (every app).");
    let freezes = g.zbot.store.freezes().await.unwrap();
    assert!(
        zbot::policy::guards::active_freezes(&freezes, at("2026-11-30T09:00:00Z")).is_empty(),
        "{freezes:?}"
    );
    g.zbot.stop().await.unwrap();
}

/// A dry run changes nothing: a freeze and approvals do not hold it (a real deploy stays refused).
#[tokio::test]
async fn a_dry_run_goes_through_a_freeze_without_approval() {
    let g = guarded_with(
        &[("fabfile.py", crate::chat::NOOP_FABFILE, false)],
        "approvals = { production = { count = 1, timeout = \"2h\" } }",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await;
    g.ask("U0BOB", "freeze production 2h release week", "Froze")
        .await;
    let thread = g.say("U0ALICE", "deploy:noop adxstat/v0.0.1 to production");
    let outcome = g
        .slack
        .reply_containing(CHANNEL, &thread, "nothing was deployed")
        .await;
    assert!(
        outcome.text.contains("`deploy:noop` adxstat `v0.0.1`"),
        "{}",
        outcome.text
    );
    let id = *g.github.deployment_ids().last().unwrap();
    assert_eq!(g.github.final_status(id, DEADLINE).await.state, "success");
    let refused = g
        .ask("U0ALICE", "deploy adxstat/v0.0.1 to production", "frozen")
        .await;
    assert!(
        refused.starts_with("production (every app) is frozen by <@U0BOB>"),
        "{refused}"
    );
    g.zbot.stop().await.unwrap();
}

/// A window of 09:00–17:00 New York time, with the clock set: 08:00 there is refused (saying when it
/// opens), staging (no window) is not, 09:30 deploys; a freeze of one app ends by itself at its time.
#[tokio::test]
async fn a_deploy_window_is_honoured_in_its_time_zone() {
    let window =
        "[windows.production]\ntime_zone = \"America/New_York\"\nhours = \"09:00-17:00\"\n";
    // Monday 30 November 2026, 13:00 UTC: 08:00 in New York.
    let g = guarded(window, at("2026-11-30T13:00:00Z")).await;
    let refused = g
        .ask(
            "U0ALICE",
            "deploy adxstat/v0.0.1 to production",
            "deploy window",
        )
        .await;
    assert_eq!(
        refused,
        "production is outside its deploy window (Mon–Fri 09:00–17:00 America/New_York); it opens Mon Nov 30 09:00 EST (15:00 CET). An admin can deploy through it with `deploy!`."
    );
    let staging = g.say("U0ALICE", "deploy adxstat/v0.0.1 to staging");
    g.slack
        .reply_containing(CHANNEL, &staging, "is on *staging*")
        .await;

    g.clock.set(at("2026-11-30T14:30:00Z"));
    let thread = g.say("U0ALICE", "deploy adxstat/v0.0.1 to production");
    g.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;

    // `until 15:00` is read in [bot] time_zone (Berlin: 14:00 UTC tomorrow, as 15:00 today is past).
    let frozen = g
        .ask(
            "U0BOB",
            "freeze adxstat in production until 15:00 db migration",
            "Froze",
        )
        .await;
    assert_eq!(
        frozen,
        ":snowflake: Froze adxstat in production for deploys until Tue Dec 1 15:00 CET: db migration."
    );
    g.ask(
        "U0ALICE",
        "deploy adxstat/v0.0.1 to production",
        "frozen by <@U0BOB>",
    )
    .await;
    g.clock.set(at("2026-12-01T14:00:00Z"));
    let thread = g.say("U0ALICE", "deploy adxstat/v0.0.1 to production");
    g.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    g.zbot.stop().await.unwrap();
}

/// Locks end by themselves; `lock!` is an admin's and tells the holder by direct message; `locks`
/// lists age, end and reason; `notify me when … is free` sends one direct message when the lock goes.
#[tokio::test]
async fn expiring_locks_lock_bang_and_notify_me() {
    let g = guarded("", at("2026-11-30T09:00:00Z")).await;
    let taken = g
        .ask(
            "U0BOB",
            "lock adxstat in production 2h incident review",
            "Locked",
        )
        .await;
    assert_eq!(
        taken,
        "Locked adxstat on *production*. Only <@U0BOB> can deploy there until 12:00 CET or `unlock adxstat in production`."
    );
    g.clock.advance(chrono::Duration::minutes(5));
    let locks = g.ask("U0ALICE", "locks", "Locked environments").await;
    assert!(
        locks.contains("• adxstat is locked on *production* by <@U0BOB> since ")
            && locks.contains("(for 5m 00s; ends 12:00 CET): incident review"),
        "{locks}"
    );
    let watching = g
        .ask(
            "U0CAROL",
            "notify me when production is free",
            "direct message",
        )
        .await;
    assert_eq!(
        watching,
        "I'll send you a direct message when *production* is free."
    );

    let not_admin = g
        .ask("U0ALICE", "lock! adxstat in production", "admin")
        .await;
    assert_eq!(not_admin, "Only an admin can `lock!`.");
    let over = g
        .ask(
            "U0ADMIN",
            "lock! adxstat in production 2h hotfix",
            "Took the lock",
        )
        .await;
    assert_eq!(
        over,
        "Took the lock on adxstat in *production* from <@U0BOB>; only <@U0ADMIN> can deploy there \
         until 12:05 CET or `unlock adxstat in production`. I told <@U0BOB> by direct message."
    );
    let told = g.posted_to("U0BOB", "took your lock").await;
    assert_eq!(
        told.text,
        "<@U0ADMIN> took your lock on adxstat in *production* (`lock!`)."
    );
    assert!(g.direct_messages("U0CAROL").is_empty(), "still locked");

    g.ask("U0ADMIN", "unlock adxstat in production", "Unlocked")
        .await;
    g.posted_to("U0CAROL", "is free now").await;

    // An expiring lock ends by itself once the clock passes its end.
    g.ask("U0BOB", "lock adxstat in production 30m", "Locked")
        .await;
    g.ask(
        "U0CAROL",
        "notify me when adxstat in production is free",
        "direct message",
    )
    .await;
    g.clock.advance(chrono::Duration::minutes(31));
    g.slack
        .wait_for("the second direct message", DEADLINE, |s| {
            let told = s
                .posts()
                .into_iter()
                .filter(|p| p.channel == "U0CAROL")
                .count();
            (told == 2).then_some(())
        })
        .await;
    g.ask("U0ALICE", "locks", "No environment is locked.").await;
    // Locking and unlocking again tells nobody: each watcher was told once.
    g.ask("U0BOB", "lock adxstat in production", "Locked").await;
    g.ask("U0BOB", "unlock adxstat in production", "Unlocked")
        .await;
    assert_eq!(
        g.direct_messages("U0CAROL"),
        vec![
            ":unlock: *production* is free now: nobody holds its lock.".to_string(),
            ":unlock: adxstat in *production* is free now: nobody holds its lock.".to_string(),
        ]
    );
    g.zbot.stop().await.unwrap();
}

/// A production deploy waits for approval (posted with buttons; nothing on GitHub yet); the requester's
/// own click is refused with a sentence; another user's click starts it; an approval holds for its sha
/// only (a new commit asks again, and GitHub deployments without one are refused); a request expires
/// saying so; a waiting request holds neither staging nor a second request; `approve #n` and
/// `reject #n <reason>` work in text; `deploys` shows who approved.
#[tokio::test]
async fn production_waits_for_approval() {
    let g = guarded_with_approval().await;
    let first = g.say("U0ALICE", "deploy adxstat/v0.0.1 to production");
    let request = g.request_message(1).await;
    assert_eq!(request.thread_ts.as_deref(), Some(first.as_str()));
    assert!(
        request.text.starts_with(&format!(
            ":raised_hand: *Deploy request #1*: <@U0ALICE> wants to deploy adxstat `v0.0.1` (`{}`) to *production*. It needs one approval from anyone but the requester by 12:00 CET.",
            &g.sha[..7]
        )),
        "{}",
        request.text
    );
    let blocks = request.blocks.clone().expect("Block Kit buttons");
    let buttons: Vec<&str> = blocks[1]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, ["zbot_approve", "zbot_reject"]);
    assert!(
        g.github.deployment_requests().is_empty(),
        "nothing on GitHub while it waits"
    );

    // Waiting holds nothing: staging deploys, and a second production request is posted.
    let staging = g.say("U0ALICE", "deploy adxstat/v0.0.1 to staging");
    g.slack
        .reply_containing(CHANNEL, &staging, "is on *staging*")
        .await;
    let second = g.say("U0BOB", "deploy adxstat/v0.0.1 to production");
    g.request_message(2).await;

    // The requester's own click is refused; another user's starts the deploy.
    g.click("U0ALICE", 1, "zbot_approve").await;
    let own = g
        .slack
        .reply_containing(CHANNEL, &first, "can't approve it yourself")
        .await;
    assert_eq!(
        own.text,
        "<@U0ALICE> You asked for deploy request #1, so you can't approve it yourself: someone else has to."
    );
    assert_eq!(
        g.github.deployment_requests().len(),
        1,
        "only staging so far"
    );
    g.click("U0BOB", 1, "zbot_approve").await;
    let approved = g
        .slack
        .reply_containing(CHANNEL, &first, ":white_check_mark: Deploy request #1")
        .await;
    assert!(
        approved.text.starts_with(
            ":white_check_mark: Deploy request #1 approved by <@U0BOB>: deploying adxstat"
        ),
        "{}",
        approved.text
    );
    g.slack
        .reply_containing(CHANNEL, &first, "is on *production*")
        .await;
    let buttons_gone = g
        .slack
        .wait_for("the request without buttons", DEADLINE, |s| {
            s.posts()
                .into_iter()
                .find(|p| p.method == "chat.update" && p.ts == request.ts && p.blocks.is_none())
        })
        .await;
    assert!(
        buttons_gone.text.contains("approved by <@U0BOB>"),
        "{}",
        buttons_gone.text
    );
    let grant = g.github.deployment_requests().last().unwrap()["payload"]["zbot_grant"]
        .as_str()
        .unwrap()
        .to_string();

    // A new commit needs a new approval.
    let sha2 = g
        .repo
        .commit(&[("fabfile.py", crate::harness::FABFILE, false)], "v0.0.2");
    let third = g.say("U0ALICE", "deploy adxstat/v0.0.2 to production");
    g.request_message(3).await;
    // A deployment made on GitHub has no approval; one carrying #1's grant (used already) is refused.
    for (id, payload, expected) in [
        (
            7101,
            json!({}),
            "this environment needs an approval given in zbot's chat before a deploy runs",
        ),
        (
            7102,
            json!({"zbot_grant": grant}),
            "its zbot grant was used by another deployment, expired or is for another commit: ask again in chat",
        ),
    ] {
        let event =
            crate::harness::deployment_event(id, "v0.0.2", &sha2, "production", "deploy", payload);
        let answer = g.github.deliver_deployment(g.zbot.addr, &event).await.0;
        assert_eq!(answer, if id == 7101 { 202 } else { 422 });
        let status = g.github.final_status(id, DEADLINE).await;
        assert_eq!(
            (status.state.as_str(), status.description.as_str()),
            ("error", expected)
        );
    }

    // `approve #3` in text, from another thread: said there and in the request's thread.
    let answer = g.ask("U0CAROL", "approve #3", "approved by").await;
    assert!(
        answer.starts_with(":white_check_mark: Deploy request #3 approved by <@U0CAROL>"),
        "{answer}"
    );
    g.slack
        .reply_containing(CHANNEL, &third, "is on *production*")
        .await;
    let deploys = g
        .ask(
            "U0ALICE",
            "deploys adxstat in production",
            "Recent deployments",
        )
        .await;
    assert!(
        deploys.contains("approved by <@U0BOB> (10:00 CET)"),
        "{deploys}"
    );
    assert!(deploys.contains("approved by <@U0CAROL>"), "{deploys}");

    // `reject #n <reason>` says who and why.
    let fourth = g.say("U0ALICE", "deploy adxstat/v0.0.2 to production");
    g.request_message(4).await;
    let rejected = g
        .ask("U0BOB", "reject #4 not on a friday", "rejected")
        .await;
    assert_eq!(
        rejected,
        ":no_entry: Deploy request #4 was rejected by <@U0BOB>: not on a friday. Nothing was deployed."
    );
    g.slack
        .reply_containing(CHANNEL, &fourth, "rejected by <@U0BOB>")
        .await;

    // The Reject button asks for a reason in a modal; its submission rejects with it.
    let fifth = g.say("U0ALICE", "deploy adxstat/v0.0.2 to production");
    g.request_message(5).await;
    g.click("U0BOB", 5, "zbot_reject").await;
    let opened = g
        .slack
        .wait_for("the reject modal", DEADLINE, |s| {
            s.posts().into_iter().find(|p| p.method == "views.open")
        })
        .await;
    let view = opened.blocks.unwrap();
    assert_eq!(view["callback_id"], "zbot_reject_reason");
    assert_eq!(view["private_metadata"], "5");
    g.slack.send(view_submission_envelope(
        "submit-5",
        "U0BOB",
        &view,
        json!({"reason": {"reason": {"type": "plain_text_input", "value": "the db is hot"}}}),
    ));
    let said = g
        .slack
        .reply_containing(CHANNEL, &fifth, ":no_entry:")
        .await;
    assert_eq!(
        said.text,
        ":no_entry: Deploy request #5 was rejected by <@U0BOB>: the db is hot. Nothing was deployed."
    );

    // Request #2 expires after its two hours, said in its thread.
    g.clock.advance(chrono::Duration::minutes(121));
    let expired = g
        .slack
        .reply_containing(CHANNEL, &second, ":hourglass:")
        .await;
    assert_eq!(
        expired.text,
        ":hourglass: Deploy request #2 expired after 2h 00m without approval; nothing was deployed. Ask again to deploy adxstat to *production*."
    );
    let late = g.ask("U0CAROL", "approve #2", "expired").await;
    assert_eq!(late, "Deploy request #2 expired; nothing was deployed.");
    g.zbot.stop().await.unwrap();
}

/// `rollback!` is an admin's, like `deploy!`: anyone else is refused; an admin's goes through a freeze,
/// said in the thread. `approve #N` says what N is when it is not a waiting request: a deployment's
/// number, no request, one approved already by the same person, one decided already.
#[tokio::test]
async fn rollback_bang_is_for_admins_and_numbers_say_what_they_are() {
    let g = guarded_app(
        "approvals = { production = { count = 2 } }",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await;
    g.staging_deploy_then_commit("deploy adxstat/v0.0.1 to staging", "v0.0.2")
        .await;
    g.staging_deploy_then_commit("deploy adxstat/v0.0.2 to staging", "v0.0.3")
        .await;
    g.ask("U0CAROL", "freeze staging 1h release week", "Froze")
        .await;
    let refused = g
        .ask("U0ALICE", "rollback! adxstat in staging", "admin")
        .await;
    assert_eq!(refused, "Only an admin can `rollback!`.");
    g.ask("U0ALICE", "rollback adxstat in staging", "frozen")
        .await;
    assert_eq!(g.github.deployment_requests().len(), 2);
    let thread = g.say("U0ADMIN", "rollback! adxstat in staging");
    for said in ["is deploying through this", "is on *staging*"] {
        g.slack.reply_containing(CHANNEL, &thread, said).await;
    }
    let asked = g.github.deployment_requests().last().unwrap().clone();
    assert_eq!(asked["ref"], g.sha.as_str());

    let deployment = g.ask("U0BOB", "approve #5001", "#5001").await;
    assert_eq!(
        deployment,
        "#5001 is a deployment, not a deploy request: `approve` and `reject` take the number of a *Deploy request #…*."
    );
    let none = g.ask("U0BOB", "approve #99", "#99").await;
    assert_eq!(none, "There is no deploy request #99.");
    g.say("U0ALICE", "deploy adxstat/v0.0.2 to production");
    g.request_message(1).await;
    g.ask("U0BOB", "approve #1", "(1 of 2)").await;
    let again = g.ask("U0BOB", "approve #1", "already").await;
    assert_eq!(
        again,
        "You approved deploy request #1 already; it has 1 of 2 approvals and needs someone else's."
    );
    g.ask("U0CAROL", "reject #1 not today", "rejected").await;
    let late = g.ask("U0DAVE", "approve #1", "already").await;
    assert_eq!(
        late,
        "Deploy request #1 was already rejected by <@U0CAROL>."
    );
    g.zbot.stop().await.unwrap();
}

/// An approval given while a freeze closes the environment is not taken: the click is answered with the
/// freeze, nothing is created on GitHub, and the request stays open; approved again once unfrozen, it
/// deploys.
#[tokio::test]
async fn an_approval_during_a_freeze_waits_for_it_to_end() {
    let g = guarded_with_approval().await;
    let thread = g.say("U0ALICE", "deploy adxstat/v0.0.1 to production");
    g.request_message(1).await;
    g.ask("U0CAROL", "freeze production 1h release week", "Froze")
        .await;
    g.click("U0BOB", 1, "zbot_approve").await;
    let answer = g
        .slack
        .reply_containing(CHANNEL, &thread, "approval was not taken")
        .await;
    assert!(
        answer.text.starts_with("production (every app) is frozen by <@U0CAROL>")
            && answer
                .text
                .ends_with("request #1 stays open until 12:00 CET; approve it again once deploys are open there."),
        "{}",
        answer.text
    );
    assert!(g.github.deployment_requests().is_empty());
    g.ask("U0CAROL", "unfreeze production", "Unfroze").await;
    g.click("U0BOB", 1, "zbot_approve").await;
    g.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    g.zbot.stop().await.unwrap();
}

/// An approval is checked as the runner will check the deployment: freezes that cannot be read, or a
/// lock someone other than the requester took since, refuse it with that reason; nothing is created on
/// GitHub and the request stays open (approved once the lock is gone, it deploys).
#[tokio::test]
async fn an_approval_while_locked_or_unreadable_is_not_taken() {
    let g = guarded_with_approval().await;
    g.say("U0ALICE", "deploy adxstat/v0.0.1 to production");
    g.request_message(1).await;
    g.ask("U0CAROL", "lock adxstat in production incident", "ock")
        .await;
    let locked = g.ask("U0BOB", "approve #1", "not taken").await;
    assert!(
        locked.contains("<@U0CAROL>")
            && locked.ends_with(
                "Your approval was not taken: request #1 stays open until 12:00 CET; approve it again once deploys are open there."
            ),
        "{locked}"
    );
    assert!(g.github.deployment_requests().is_empty());
    g.ask("U0CAROL", "unlock adxstat in production", "nlock")
        .await;

    crate::harness::lose_table(g._dir.path(), "freezes").await;
    let unreadable = g.ask("U0BOB", "approve #1", "not taken").await;
    assert_eq!(
        unreadable,
        "I could not read the freezes, so I can't tell whether that environment is frozen and did nothing. Try again in a moment. Your approval was not taken: request #1 stays open until 12:00 CET; approve it again once deploys are open there."
    );
    assert!(g.github.deployment_requests().is_empty());
    // Still open: the click is answered the same way, not "already approved".
    g.click("U0BOB", 1, "zbot_approve").await;
    g.slack
        .wait_for("a second refusal", DEADLINE, |s| {
            (s.posts()
                .iter()
                .filter(|p| p.text.contains("Your approval was not taken"))
                .count()
                >= 2)
                .then_some(())
        })
        .await;
    assert!(g.github.deployment_requests().is_empty());
    g.zbot.stop().await.unwrap();
}

/// Who approves: with no approvers listed, anyone allowed to deploy there (`allowed_users`) but the
/// requester — not anyone at all; approvers named by user group are that group's members, as Slack
/// lists them (by handle or by `S…` id), and a group's name is nobody.
#[tokio::test]
async fn approvers_are_those_allowed_and_the_members_of_named_groups() {
    let g = guarded_app(
        "approvals = { production = { approvers = [\"@oncall\", \"S0DBA\"] }, staging = { approvers = [] } }\n\
         allowed_users = { staging = [\"U0ALICE\", \"U0BOB\"] }",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await;
    g.slack.add_user_group("S0ONCALL", "oncall", &["U0CAROL"]);
    g.slack.add_user_group("S0DBA", "dba", &["U0DAVE"]);
    let staging = g.say("U0ALICE", "deploy adxstat/v0.0.1 to staging");
    let request = g.request_message(1).await;
    assert!(
        request.text.contains("from <@U0ALICE>, <@U0BOB> by"),
        "{}",
        request.text
    );
    let eve = g.ask("U0EVE", "approve #1", "approvers").await;
    assert!(
        eve.starts_with("You are not one of the approvers of deploy request #1"),
        "{eve}"
    );
    g.ask("U0BOB", "approve #1", "approved by").await;
    g.slack
        .reply_containing(CHANNEL, &staging, "is on *staging*")
        .await;

    for (n, environment, outsider, member) in [
        (2, "production", "U0BOB", "U0CAROL"),
        (3, "production", "U0EVE", "U0DAVE"),
    ] {
        let thread = g.say(
            "U0ALICE",
            &format!("deploy adxstat/v0.0.1 to {environment}"),
        );
        g.request_message(n).await;
        let refused = g.ask(outsider, &format!("approve #{n}"), "approvers").await;
        assert!(refused.contains("not one of the approvers"), "{refused}");
        g.ask(member, &format!("approve #{n}"), "approved by").await;
        g.slack
            .reply_containing(CHANNEL, &thread, &format!("is on *{environment}*"))
            .await;
    }
    g.zbot.stop().await.unwrap();
}

/// A deployment made on GitHub acts as its creator (`github:<login>`), never as the payload's
/// `notify.user`, which anyone with write access sets: naming the lock's holder there neither passes
/// the lock nor unlocks it. A deploy zbot made for that person in chat does pass it.
#[tokio::test]
async fn the_payloads_user_is_not_the_actor_of_a_github_deployment() {
    let g = guarded("", at("2026-11-30T09:00:00Z")).await;
    g.ask("U0ALICE", "lock adxstat in production db work", "Locked")
        .await;
    for (id, task, expected) in [
        (
            7301,
            "deploy",
            "adxstat is locked on production by U0ALICE since ",
        ),
        (
            7302,
            "deploy:unlock",
            "only U0ALICE or an admin can unlock adxstat on production",
        ),
    ] {
        let mut event = crate::harness::deployment_event(
            id,
            "v0.0.1",
            &g.sha,
            "production",
            task,
            json!({"notify": {"user": "U0ALICE", "user_name": "alice"}}),
        );
        event["deployment"]["creator"]["login"] = json!("mallory");
        assert_eq!(
            g.github.deliver_deployment(g.zbot.addr, &event).await.0,
            202
        );
        let status = g.github.final_status(id, DEADLINE).await;
        assert_eq!(status.state, "error", "{task}: {status:?}");
        assert!(
            status.description.starts_with(expected),
            "{task}: {}",
            status.description
        );
    }
    // GitHub's creator is who it is: mallory's own lock is held by `github:mallory`.
    let mut lock = crate::harness::deployment_event(
        7303,
        "v0.0.1",
        &g.sha,
        "staging",
        "deploy:lock",
        json!({"notify": {"user": "U0ALICE"}}),
    );
    lock["deployment"]["creator"]["login"] = json!("mallory");
    assert_eq!(g.github.deliver_deployment(g.zbot.addr, &lock).await.0, 202);
    assert_eq!(
        g.github.final_status(7303, DEADLINE).await.description,
        "adxstat locked on staging by github:mallory"
    );
    g.ask(
        "U0ALICE",
        "deploy adxstat/v0.0.1 to staging",
        "adxstat is locked on *staging* by github:mallory",
    )
    .await;
    // `deploys` names the creator too, not the payload's `alice`.
    let listed = g
        .ask(
            "U0BOB",
            "deploys adxstat in production",
            "Recent deployments",
        )
        .await;
    let row = listed
        .lines()
        .find(|l| l.contains("7301"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains("github:mallory") && !row.contains("alice"),
        "{row}"
    );
    // Alice's own deploy from chat passes her lock: zbot recorded her as its requester.
    g.ask(
        "U0ALICE",
        "deploy adxstat/v0.0.1 to production",
        "is on *production*",
    )
    .await;
    g.zbot.stop().await.unwrap();
}

/// A grant is claimed once, by the deployment zbot made with it: the same payload on a second
/// deployment is refused (422, an `error` status saying why, the default channel told); a grant nobody
/// claimed within its hour is worth nothing; the store keeps only a grant's digest.
#[tokio::test]
async fn a_grant_is_used_once_and_not_after_its_hour() {
    let g = guarded("", at("2026-11-30T09:00:00Z")).await;
    g.ask(
        "U0ALICE",
        "deploy adxstat/v0.0.1 to staging",
        "is on *staging*",
    )
    .await;
    let payload = g.github.deployment_requests()[0]["payload"].clone();
    let replay =
        crate::harness::deployment_event(7401, "v0.0.1", &g.sha, "staging", "deploy", payload);
    let (status, _) = g.github.deliver_deployment(g.zbot.addr, &replay).await;
    assert_eq!(status, 422);
    let refused = g.github.final_status(7401, DEADLINE).await;
    assert_eq!(
        (refused.state.as_str(), refused.description.as_str()),
        (
            "error",
            "its zbot grant was used by another deployment, expired or is for another commit: ask again in chat"
        )
    );
    g.posted_to("C0DEPLOYS", "zbot grant").await;
    assert_eq!(g.github.states(7401), ["error"], "the replay never ran");

    // A grant whose deployment GitHub never made, presented after its hour: refused too.
    g.github.answer_next_deployment(
        422,
        json!({"message": "No ref found for: v0.0.1", "documentation_url": ""}),
    );
    g.ask(
        "U0ALICE",
        "deploy adxstat/v0.0.1 to staging",
        "GitHub refused the deployment",
    )
    .await;
    let unclaimed = g.github.deployment_requests()[1]["payload"].clone();
    let token = unclaimed["zbot_grant"].as_str().unwrap().to_string();
    g.clock.advance(chrono::Duration::minutes(61));
    let late =
        crate::harness::deployment_event(7402, "v0.0.1", &g.sha, "staging", "deploy", unclaimed);
    assert_eq!(g.github.deliver_deployment(g.zbot.addr, &late).await.0, 422);

    // Of a grant, only its digest is stored (a deployment's payload keeps the token GitHub shows).
    for entry in std::fs::read_dir(g._dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "the grant's token is in {}",
                path.display()
            );
        }
    }
    g.zbot.stop().await.unwrap();
}

/// What was approved is what is deployed: the request's commit, even when its branch moved since
/// (GitHub is asked for the sha, without auto-merge); a rollback deploys the previous deploy's commit,
/// not what its ref names now.
#[tokio::test]
async fn the_approved_commit_is_deployed_when_the_branch_moved() {
    let g = guarded_with_approval().await;
    let files = [("fabfile.py", crate::harness::FABFILE, false)];
    let thread = g.say("U0ALICE", "deploy adxstat/main to production");
    g.request_message(1).await;
    let moved = g.repo.commit(&files, "v0.0.2");
    g.click("U0BOB", 1, "zbot_approve").await;
    g.slack
        .reply_containing(CHANNEL, &thread, "is on *production*")
        .await;
    let asked = g.github.deployment_requests().last().unwrap().clone();
    assert_eq!(asked["ref"], g.sha.as_str(), "the approved commit");
    assert_eq!(asked["auto_merge"], false);
    let id = *g.github.deployment_ids().last().unwrap();
    assert_eq!(g.github.final_status(id, DEADLINE).await.state, "success");

    // Staging: main deployed at v0.0.2, then main moves to v0.0.3 and is deployed; main moves again.
    // The rollback deploys v0.0.2's commit, not main.
    g.staging_deploy_then_commit("deploy adxstat/main to staging", "v0.0.3")
        .await;
    g.staging_deploy_then_commit("deploy adxstat/main to staging", "v0.0.4")
        .await;
    g.ask("U0ALICE", "rollback adxstat in staging", "is on *staging*")
        .await;
    let asked = g.github.deployment_requests().last().unwrap().clone();
    assert_eq!(asked["ref"], moved.as_str(), "the previous deploy's commit");
    assert_eq!(asked["auto_merge"], false);
    g.zbot.stop().await.unwrap();
}

/// A signed `status` webhook: CI set `context` of `sha` on main.
async fn status_event(g: &Guarded, n: u32, sha: &str, state: &str) {
    let body = json!({"id": n, "sha": sha, "name": "octo/adxstat", "state": state, "context": "ci",
        "branches": [{"name": "main", "commit": {"sha": sha}}],
        "repository": {"full_name": "octo/adxstat", "name": "adxstat"}});
    let (status, answer) =
        crate::harness::deliver(g.zbot.addr, "status", &format!("status-{n}"), &body).await;
    assert_eq!((status, answer.as_str()), (202, "checked"));
}

/// Auto-deploy: a green head of main is deployed to staging by itself (the payload says automatic);
/// three green pushes while that deploy runs make exactly one further deploy, of the newest; a red head
/// none; a locked environment none, said once in the app's channel.
#[tokio::test]
async fn auto_deploy_deploys_the_newest_green_head_once() {
    let release = tempfile::tempdir().unwrap();
    let file = release.path().join("release");
    let script = crate::harness::held_deploy_script(&file);
    let files = [("script/deploy", script.as_str(), true)];
    let g = guarded_with(
        &files,
        "auto_deploy = { branch = \"main\", environments = [\"staging\"] }",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await;
    g.github.set_commit_status(&g.sha, "ci", "success");
    status_event(&g, 1, &g.sha, "success").await;
    let first = g.github.deployment_requests();
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0]["ref"], g.sha.as_str());
    assert_eq!(first[0]["environment"], "staging");
    assert_eq!(first[0]["payload"]["automatic"], true);
    g.github.in_progress(5001, DEADLINE).await;

    let mut newest = String::new();
    for n in 2..=4 {
        newest = g.repo.commit(&files, &format!("v0.0.{n}"));
        g.github.set_commit_status(&newest, "ci", "success");
        status_event(&g, n, &newest, "success").await;
    }
    assert_eq!(
        g.github.deployment_requests().len(),
        1,
        "none while one runs"
    );
    std::fs::write(&file, "go").unwrap();
    assert_eq!(g.github.final_status(5001, DEADLINE).await.state, "success");
    let second = g
        .github
        .wait_for("the deploy of the newest", DEADLINE, |gh| {
            gh.deployment_requests().get(1).cloned()
        })
        .await;
    assert_eq!(second["ref"], newest.as_str());
    assert_eq!(g.github.final_status(5002, DEADLINE).await.state, "success");
    // Green again for the same head: it is deployed there already.
    status_event(&g, 5, &newest, "success").await;
    assert_eq!(g.github.deployment_requests().len(), 2);

    // A red head is not deployed.
    let red = g.repo.commit(&files, "v0.0.6");
    g.github.set_commit_status(&red, "ci", "failure");
    status_event(&g, 6, &red, "failure").await;
    assert_eq!(g.github.deployment_requests().len(), 2);

    // A locked environment holds green heads back, said once in the app's channel.
    g.ask(
        "U0BOB",
        "lock adxstat in staging checking the release",
        "Locked",
    )
    .await;
    for n in 7..=8 {
        let green = g.repo.commit(&files, &format!("v0.0.{n}"));
        g.github.set_commit_status(&green, "ci", "success");
        status_event(&g, n, &green, "success").await;
    }
    assert_eq!(g.github.deployment_requests().len(), 2);
    let held = g.posted_to("C0DEPLOYS", "Auto-deploy").await;
    assert!(
        held.text
            .starts_with(":pause_button: Auto-deploy of adxstat to *staging* is holding back `")
            && held
                .text
                .contains("adxstat is locked on staging by U0BOB since"),
        "{}",
        held.text
    );
    // Counted once zbot has answered a later question and stopped, so a repeat posted after the
    // first would be seen.
    g.ask("U0BOB", "locks", "staging").await;
    g.zbot.stop().await.unwrap();
    let notices = g
        .slack
        .posts()
        .into_iter()
        .filter(|p| p.text.contains("Auto-deploy"))
        .count();
    assert_eq!(notices, 1, "said once, not per push");
}

/// Auto-deploy never deploys without CI: a head nothing reported on waits, also with
/// `required_contexts = []`. A waiting commit is asked about again before it is deployed: once the
/// branch moved past it, it is not deployed (the new head is, when green). A hold that ended is
/// forgotten, so the next hold is said again.
#[tokio::test]
async fn auto_deploy_waits_for_ci_rechecks_the_head_and_says_each_hold() {
    let release = tempfile::tempdir().unwrap();
    let file = release.path().join("release");
    let script = crate::harness::held_deploy_script(&file);
    let files = [("script/deploy", script.as_str(), true)];
    let g = guarded_with(
        &files,
        "auto_deploy = { branch = \"main\", environments = [\"staging\"] }\nrequired_contexts = []",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await;
    status_event(&g, 1, &g.sha, "success").await;
    assert!(
        g.github.deployment_requests().is_empty(),
        "nothing reported on the head: no deploy"
    );
    g.github.set_commit_status(&g.sha, "ci", "success");
    status_event(&g, 2, &g.sha, "success").await;
    assert_eq!(g.github.deployment_requests().len(), 1);
    g.github.in_progress(5001, DEADLINE).await;

    // Green while the deploy runs: it waits. Then the branch moves past it before its turn.
    let passed_by = g.repo.commit(&files, "v0.0.2");
    g.github.set_commit_status(&passed_by, "ci", "success");
    status_event(&g, 3, &passed_by, "success").await;
    let head = g.repo.commit(&files, "v0.0.3");
    std::fs::write(&file, "go").unwrap();
    assert_eq!(g.github.final_status(5001, DEADLINE).await.state, "success");
    g.github.set_commit_status(&head, "ci", "success");
    status_event(&g, 4, &head, "success").await;
    let second = g
        .github
        .wait_for("the deploy of the head", DEADLINE, |gh| {
            gh.deployment_requests().get(1).cloned()
        })
        .await;
    assert_eq!(second["ref"], head.as_str(), "not the commit it passed by");
    assert_eq!(g.github.final_status(5002, DEADLINE).await.state, "success");
    assert_eq!(g.github.deployment_requests().len(), 2);

    // Locked: said once. Unlocked and locked again: the new hold is said again.
    let holds = || {
        g.slack
            .posts()
            .into_iter()
            .filter(|p| p.text.contains("is holding back"))
            .count()
    };
    for (n, round) in [(5, 1), (6, 2)] {
        g.ask("U0BOB", "lock adxstat in staging checking", "Locked")
            .await;
        let green = g.repo.commit(&files, &format!("v0.0.{n}"));
        g.github.set_commit_status(&green, "ci", "success");
        status_event(&g, n, &green, "success").await;
        g.slack
            .wait_for(&format!("hold #{round} said"), DEADLINE, |_| {
                (holds() == round).then_some(())
            })
            .await;
        g.ask("U0BOB", "unlock adxstat in staging", "nlocked").await;
    }
    assert_eq!(g.github.deployment_requests().len(), 2);
    g.zbot.stop().await.unwrap();
}

/// `lock_on_failure`: a failed deploy locks its environment for the person who deployed, said with
/// its end; nobody else deploys on top of it.
#[tokio::test]
async fn a_failed_deploy_locks_its_environment_when_asked_to() {
    let g = guarded_with(
        &[("fabfile.py", crate::harness::FAILING_FABFILE, false)],
        "lock_on_failure = true",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await;
    let thread = g.say("U0ALICE", "deploy adxstat/v0.0.1 to staging");
    let outcome = g
        .slack
        .reply_containing(
            CHANNEL,
            &thread,
            "staging is now locked for U0ALICE (lock_on_failure)",
        )
        .await;
    assert!(outcome.text.contains("failed"), "{}", outcome.text);
    let status = g.github.final_status(5001, DEADLINE).await;
    assert_eq!(status.state, "failure");
    assert!(
        status
            .description
            .ends_with("; staging is now locked for U0ALICE (lock_on_failure)"),
        "{}",
        status.description
    );
    g.ask(
        "U0BOB",
        "deploy adxstat/v0.0.1 to staging",
        "adxstat is locked on *staging* by <@U0ALICE>",
    )
    .await;
    g.zbot.stop().await.unwrap();
}

/// Freezes and watches name real environments, as deploys do: an alias is followed, a typo is refused
/// with "did you mean", an app's name without `in <env>` is pointed out. Out-of-range durations and
/// times are refused, not read as the reason. A second freeze by another person adds one and names
/// the first; the same person's extends theirs. A deploy is refused naming the freeze that ends last;
/// `where` lists each. Times are in `[bot] time_zone`, its zone named; `unfreeze` of nothing says so.
#[tokio::test]
async fn freezes_name_real_environments_and_each_is_listed() {
    let g = guarded_with_bot(
        &[("fabfile.py", FABFILE, false)],
        "",
        "environment_aliases = { prod = \"production\" }",
        "",
        at("2026-11-30T09:00:00Z"),
    )
    .await;
    for (text, needle, expected) in [
        (
            "freeze prodution 2h release week",
            "prodution",
            "No app has a `prodution` environment. There are: production, staging. Did you mean `production`?",
        ),
        (
            "notify me when prodution is free",
            "prodution",
            "No app has a `prodution` environment. There are: production, staging. Did you mean `production`?",
        ),
        (
            "unfreeze stagin",
            "stagin",
            "No app has a `stagin` environment. There are: production, staging. Did you mean `staging`?",
        ),
        (
            "freeze adxstat 2h",
            "adxstat",
            "No app has a `adxstat` environment. There are: production, staging. `adxstat` is an app: name its environment, as in `adxstat in production`.",
        ),
        (
            "notify me when adxstt in production is free",
            "adxstt",
            "`adxstt`? Never heard of it. Did you mean `adxstat`?",
        ),
        (
            "freeze adxstat in prodution 2h",
            "prodution",
            "adxstat doesn't have a `prodution` environment. It has: production, staging. Did you mean `production`?",
        ),
        (
            "freeze production 100d reason",
            "100d",
            "`100d` is out of range: a freeze or lock lasts from 1m to 30d, zbot's own limit. for longer, add a closed period to the environment's `[windows.&lt;env&gt;]` in bot.toml",
        ),
        (
            "lock adxstat in production 0m testing",
            "0m",
            "`0m` is out of range: a freeze or lock lasts from 1m to 30d, zbot's own limit. for longer, add a closed period to the environment's `[windows.&lt;env&gt;]` in bot.toml",
        ),
        (
            "freeze production until 25:61 db migration",
            "25:61",
            "`25:61` is not a time of day. write `until 18:00` (24-hour clock, `00:00` to `24:00`, the end of the day), or a duration like `2h`",
        ),
    ] {
        let said = g.ask("U0BOB", text, needle).await;
        assert_eq!(said, expected, "{text}");
    }
    let where_ = g
        .ask("U0ALICE", "where can i deploy adxstat", "can be deployed")
        .await;
    assert!(!where_.contains(":snowflake:"), "nothing froze: {where_}");
    assert!(
        g.ask("U0ALICE", "locks", "No environment").await == "No environment is locked.",
        "nothing locked"
    );

    // Through the alias; then another person's freeze, ending later, adds one and names the first.
    let first = g.ask("U0BOB", "freeze prod 2h release week", "Froze").await;
    assert_eq!(
        first,
        ":snowflake: Froze production (every app) for deploys until 12:00 CET: release week."
    );
    let second = g
        .ask(
            "U0BOSS",
            "freeze production until 18:00 db migration",
            "Froze",
        )
        .await;
    assert_eq!(
        second,
        ":snowflake: Froze production (every app) for deploys until 18:00 CET: db migration. \
         Also frozen: production (every app) by <@U0BOB> until 12:00 CET: release week."
    );
    let extended = g.ask("U0BOB", "freeze prod 3h", "freeze").await;
    assert_eq!(
        extended,
        ":snowflake: Extended your freeze of production (every app) until 13:00 CET (it was until 12:00 CET): release week."
    );

    let refused = g
        .ask("U0ALICE", "deploy adxstat/v0.0.1 to production", "frozen")
        .await;
    assert!(
        refused.starts_with(
            "production (every app) is frozen by <@U0BOSS> until 18:00 CET: db migration."
        ),
        "the freeze ending last: {refused}"
    );
    let where_ = g
        .ask("U0ALICE", "where can i deploy adxstat", "can be deployed")
        .await;
    let bob =
        ":snowflake: production (every app) is frozen by <@U0BOB> until 13:00 CET: release week.";
    let boss =
        ":snowflake: production (every app) is frozen by <@U0BOSS> until 18:00 CET: db migration.";
    assert!(
        where_.contains(&format!("{bob}\n{boss}")),
        "each, soonest end first: {where_}"
    );

    // Unfreezing what is not frozen says so; a lock's reason with "because" is not doubled, and its
    // start is in Berlin time.
    assert_eq!(
        g.ask("U0BOB", "unfreeze staging", "unfreeze").await,
        "*staging* was not frozen: there was nothing to unfreeze."
    );
    g.ask(
        "U0BOB",
        "lock adxstat in staging 1h because testing",
        "Locked",
    )
    .await;
    let locks = g.ask("U0ALICE", "locks", "Locked environments").await;
    assert!(
        locks.contains("by <@U0BOB> since 10:00 CET (for ")
            && locks.contains("ends 11:00 CET) because testing"),
        "{locks}"
    );
    let locked = g
        .ask("U0ALICE", "deploy adxstat/v0.0.1 to staging", "locked")
        .await;
    assert!(
        locked.starts_with(
            "adxstat is locked on *staging* by <@U0BOB> since Mon Nov 30 10:00 CET because testing"
        ),
        "{locked}"
    );
    g.zbot.stop().await.unwrap();
}

/// `until 02:30` on the night Berlin springs forward ends when the gap does (03:00 CEST), on the
/// injected clock. Then the freezes table goes missing under zbot: chat, GitHub and auto-deploy
/// deployments are each refused (fail closed), saying the freezes could not be read.
#[tokio::test]
async fn a_freeze_across_a_switch_and_freezes_that_cannot_be_read() {
    let g = guarded_with(
        &[("fabfile.py", FABFILE, false)],
        "auto_deploy = { branch = \"main\", environments = [\"staging\"] }",
        "",
        // Saturday 27 Mar 2027, 22:00 CET.
        at("2027-03-27T21:00:00Z"),
    )
    .await;
    let frozen = g
        .ask("U0BOB", "freeze production until 02:30 switch", "Froze")
        .await;
    assert_eq!(
        frozen,
        ":snowflake: Froze production (every app) for deploys until Sun Mar 28 03:00 CEST: switch."
    );
    g.clock.set(at("2027-03-28T00:59:00Z"));
    g.ask("U0ALICE", "where can i deploy adxstat", ":snowflake:")
        .await;
    g.clock.set(at("2027-03-28T01:00:00Z"));
    let where_ = g
        .ask("U0ALICE", "where can i deploy adxstat", "can be deployed")
        .await;
    assert!(
        !where_.contains(":snowflake:"),
        "ended at 03:00 CEST: {where_}"
    );

    crate::harness::lose_table(g._dir.path(), "freezes").await;

    let chat = g
        .ask("U0ALICE", "deploy adxstat/v0.0.1 to production", "freezes")
        .await;
    assert_eq!(
        chat,
        "I could not read the freezes, so I can't tell whether that environment is frozen and did nothing. Try again in a moment."
    );
    assert!(g.github.deployment_requests().is_empty());

    let event = crate::harness::deployment_event(
        7101,
        "v0.0.1",
        &g.sha,
        "production",
        "deploy",
        json!({"notify": {"user": "U0ALICE"}}),
    );
    assert_eq!(
        g.github.deliver_deployment(g.zbot.addr, &event).await.0,
        202
    );
    let status = g.github.final_status(7101, DEADLINE).await;
    assert_eq!(
        (status.state.as_str(), status.description.as_str()),
        (
            "error",
            "zbot could not read its freezes, so it does not deploy: try again"
        )
    );

    g.github.set_commit_status(&g.sha, "ci", "success");
    status_event(&g, 1, &g.sha, "success").await;
    let held = g.posted_to("C0DEPLOYS", "Auto-deploy").await;
    assert!(
        held.text
            .contains("zbot could not read its freezes, so it does not deploy: try again"),
        "{}",
        held.text
    );
    assert!(g.github.deployment_requests().is_empty());
    g.zbot.stop().await.unwrap();
}
