//! `zbot shell` and the try-it path a newcomer follows: the example app deployed for real, without
//! Slack or GitHub, with the same answers the Slack thread would get.

use std::path::Path;
use std::process::Command;

use crate::harness::{FAILING_FABFILE, TestRepo};
use crate::support::{path_with_fab, piped, repo_root};

/// A copy of what the try-it command needs (bot.toml, commands/, examples/) in a fresh directory.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-R")
        .args(["bot.toml", "commands", "examples"].map(|p| repo_root().join(p)))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Runs `examples/try-it` in `dir` with `input` piped in, as `user`; returns stdout.
fn try_it(dir: &Path, user: &str, input: &str) -> String {
    let mut command = Command::new(dir.join("examples/try-it"));
    command
        .current_dir(dir)
        .env("ZBOT", env!("CARGO_BIN_EXE_zbot"))
        .env("PATH", path_with_fab())
        .env("USER", user);
    let output = piped(command, input);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn current_release(dir: &Path) -> String {
    let link = std::fs::read_link(dir.join("data/releases/adxstat/production/current")).unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_example_app_deploys_moves_forward_and_rolls_back() {
    let dir = checkout();
    let out = try_it(
        dir.path(),
        "alice",
        "zbot deploy adxstat/v0.0.1 to production\n",
    );
    assert!(
        out.contains("🚀 deploying…"),
        "the status while it runs: {out}"
    );
    // The reply names nobody: in the shell it is whoever typed.
    assert!(out.contains("zbot> adxstat `v0.0.1`"), "{out}");
    assert!(out.contains("is on *production*. Deployed v0.0.1"), "{out}");
    assert!(
        out.contains("log: ") && out.contains("/data/logs/1.log"),
        "the log link is a local path: {out}"
    );
    assert_eq!(current_release(dir.path()), "v0.0.1");

    assert!(
        out.contains("The first deploy of adxstat to production."),
        "{out}"
    );

    // The embedded forge compares in the local repository: what each deploy shipped or took back.
    let out = try_it(
        dir.path(),
        "alice",
        "zbot deploy adxstat/v0.0.2 to production\n",
    );
    assert_eq!(current_release(dir.path()), "v0.0.2");
    assert!(
        out.contains("1 commit since the last deploy to production"),
        "{out}"
    );

    let out = try_it(dir.path(), "alice", "rollback adxstat in production\n");
    assert!(
        out.contains("Rolling adxstat on *production* back from `v0.0.2` to `v0.0.1`."),
        "{out}"
    );
    assert!(out.contains("Took back 1 commit from production"), "{out}");
    // A rollback deploys the previous deploy's commit by its sha (its ref may have moved since).
    let v1 = crate::harness::git(
        &dir.path().join("data/example/adxstat"),
        &["rev-parse", "v0.0.1^{commit}"],
    );
    assert_eq!(current_release(dir.path()), v1);
    let log = std::fs::read_to_string(dir.path().join("data/logs/3.log")).unwrap();
    assert!(log.contains("[3/3] switching current"), "{log}");

    // The ref in `deploys app/ref` is used, and a one-time password is refused, not ignored.
    let out = try_it(
        dir.path(),
        "alice",
        "deploys adxstat/v0.0.2\ndeploy adxstat/v0.0.2 to production 123456\n",
    );
    assert!(
        out.contains("Recent deployments of adxstat at `v0.0.2`"),
        "{out}"
    );
    let table: Vec<&str> = out.lines().filter(|l| l.contains("(")).collect();
    assert!(
        table.iter().any(|l| l.contains("v0.0.2(")) && !table.iter().any(|l| l.contains("v0.0.1(")),
        "only v0.0.2 rows: {out}"
    );
    assert!(out.contains("I don't check one-time passwords"), "{out}");
    assert_eq!(
        current_release(dir.path()),
        v1,
        "the deploy with a one-time password did not run"
    );
    assert!(!dir.path().join("data/logs/4.log").exists());
}

#[test]
fn locks_unknown_apps_and_failures_read_as_in_slack() {
    let dir = checkout();
    // A second app whose deploy fails.
    let repo = TestRepo::new(dir.path());
    repo.commit(&[("fabfile.py", FAILING_FABFILE, false)], "v1");
    let mut config = std::fs::read_to_string(dir.path().join("bot.toml")).unwrap();
    config.push_str(&format!(
        "\n[apps.broken]\nrepository = \"octo/broken\"\nclone_url = \"{}\"\nprovider = \"fabric\"\ndefault_ref = \"v1\"\n",
        repo.clone_url()
    ));
    std::fs::write(dir.path().join("bot.toml"), config).unwrap();

    let out = try_it(
        dir.path(),
        "alice",
        "lock adxstat in production because testing\nlocks\n",
    );
    assert!(
        out.contains("Locked adxstat on *production*. Only alice can deploy there"),
        "{out}"
    );
    assert!(
        out.contains("adxstat is locked on *production* by alice since"),
        "{out}"
    );

    let out = try_it(
        dir.path(),
        "bob",
        "deploy adxstat to production\ndeploy nope to production\ndeploy broken to production\nhelp\n",
    );
    assert!(
        out.contains("adxstat is locked on *production* by alice since"),
        "{out}"
    );
    assert!(
        out.contains(" UTC because testing") && !out.contains(": because"),
        "{out}"
    );
    assert!(out.contains("`nope`? Never heard of it."), "{out}");
    assert!(out.contains("zbot> deploying broken `v1`"), "{out}");
    assert!(
        out.contains("to *production* failed: fab exited with code 1"),
        "{out}"
    );
    assert!(
        out.contains("migration 42 failed: <b>users</b> & co"),
        "the output tail, unescaped for the terminal: {out}"
    );
    assert!(out.contains("I deploy apps from chat."), "{out}");
    assert!(
        !dir.path().join("data/releases/adxstat/production").exists(),
        "the locked deploy did not run"
    );
}

/// `zbot shell` resolves refs before it creates a deployment, as GitHub does: an abbreviated sha of a
/// branch's or tag's commit deploys; one of an older commit (which `git ls-remote` cannot see) and a
/// full sha the repository does not have are refused with a sentence saying what to use instead; a full
/// sha of an older commit deploys.
#[test]
fn shas_are_resolved_before_a_deployment_is_created() {
    let dir = checkout();
    try_it(dir.path(), "alice", "version\n");
    let repo = dir.path().join("data/example/adxstat");
    let git = |args: &[&str]| crate::harness::git(&repo, args);
    let tagged = git(&["rev-parse", "v0.0.1^{commit}"]);
    git(&["commit", "--quiet", "--allow-empty", "-m", "older"]);
    let older = git(&["rev-parse", "HEAD"]);
    git(&["commit", "--quiet", "--allow-empty", "-m", "newest"]);
    let missing = "0123456789abcdef0123456789abcdef01234567";

    let out = try_it(
        dir.path(),
        "alice",
        &format!(
            "deploy adxstat/{} to production\ndeploy adxstat/{} to staging\ndeploy adxstat/{missing} to staging\n",
            &tagged[..8],
            &older[..8]
        ),
    );
    assert!(
        out.contains(&format!(
            "adxstat `{}` (`{}`) is on *production*",
            &tagged[..8],
            &tagged[..7]
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "`{}` looks like an abbreviated sha, but no branch or tag of octo/adxstat is at a commit that \
             starts with it, and I can only look those up: use the full sha, or a branch or tag.",
            &older[..8]
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "octo/adxstat has no commit `{missing}`: check the sha, or deploy a branch or tag."
        )),
        "{out}"
    );
    assert!(
        !dir.path().join("data/logs/2.log").exists(),
        "only the first was a deployment"
    );

    let out = try_it(
        dir.path(),
        "alice",
        &format!("deploy adxstat/{older} to staging\n"),
    );
    assert!(out.contains("is on *staging*"), "{out}");
}

/// Approvals in `zbot shell`: a production deploy waits as a request; its requester's `approve` is
/// refused with a sentence; another person's runs it.
#[test]
fn approvals_work_in_the_shell() {
    let dir = checkout();
    let config = std::fs::read_to_string(dir.path().join("bot.toml"))
        .unwrap()
        .replace(
            "auto_merge = false\n",
            "auto_merge = false\napprovals = { production = {} }\n",
        );
    std::fs::write(dir.path().join("bot.toml"), config).unwrap();
    let out = try_it(dir.path(), "alice", "deploy adxstat to production\n");
    assert!(
        out.contains("*Deploy request #1*: alice wants to deploy adxstat `main`"),
        "{out}"
    );
    let out = try_it(dir.path(), "alice", "approve #1\n");
    assert!(
        out.contains("You asked for deploy request #1, so you can't approve it yourself"),
        "{out}"
    );
    assert!(!dir.path().join("data/releases/adxstat/production").exists());
    let out = try_it(dir.path(), "bob", "approve #1\n");
    assert!(out.contains("Deploy request #1 approved by bob"), "{out}");
    assert!(out.contains("is on *production*"), "{out}");
    assert!(dir.path().join("data/releases/adxstat/production").exists());
}

/// A bot.toml shared with production instances names their Postgres: the shell never joins them (it
/// would claim their queued deploys and run them with its embedded forge), it keeps its own SQLite.
#[test]
fn a_shell_never_opens_the_shared_store() {
    let dir = checkout();
    let config = std::fs::read_to_string(dir.path().join("bot.toml")).unwrap();
    let config = config.replace(
        "# url = \"postgres://zbot@db.example/zbot?sslmode=require\"",
        "url = \"postgres://zbot@127.0.0.1:1/zbot\"",
    );
    assert!(config.contains("url = \"postgres://zbot@127.0.0.1:1/zbot\""));
    std::fs::write(dir.path().join("bot.toml"), config).unwrap();
    let out = try_it(
        dir.path(),
        "alice",
        "zbot deploy adxstat/v0.0.1 to production\n",
    );
    assert!(out.contains("is on *production*. Deployed v0.0.1"), "{out}");
    assert!(dir.path().join("data/zbot.sqlite").exists());
}
