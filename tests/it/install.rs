//! zbot installed outside its checkout: the binary alone with a bot.toml deploys with its built-in
//! recipes, `zbot init` writes a configuration that checks, and `zbot shell` makes its example.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fakes::github::FakeGitHub;
use crate::harness::{FABFILE, SECRET, TOKEN, TestRepo, ZbotProcess, deploy};
use crate::support::{path_with_fab, piped, stderr, stdout, zbot};

const VARIABLES: &[(&str, &str)] = &[
    ("SLACK_APP_TOKEN", "xapp-1-test"),
    ("SLACK_BOT_TOKEN", "xoxb-test"),
    ("GITHUB_TOKEN", "ghp_test"),
    ("GITHUB_WEBHOOK_SECRET", "a-long-enough-webhook-secret"),
];

/// A directory holding only a copy of the `zbot` binary.
fn bare_install() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("zbot");
    std::fs::copy(env!("CARGO_BIN_EXE_zbot"), &binary).unwrap();
    (dir, binary)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_alone_with_a_minimal_config_deploys_with_its_stock_fabric_recipe() {
    let (dir, binary) = bare_install();
    let github = FakeGitHub::start().await;
    let source = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(source.path());
    let sha = repo.commit(&[("fabfile.py", FABFILE, false)], "v0.0.1");
    let config = format!(
        r#"[github]
token = "{TOKEN}"
api_url = "{github}"

[webhook]
listen = "127.0.0.1:0"
secret = "{SECRET}"

[apps.adxstat]
repository = "octo/adxstat"
clone_url = "{clone}"
environments = ["production"]
"#,
        github = github.url(),
        clone = repo.clone_url(),
    );
    std::fs::write(dir.path().join("bot.toml"), config).unwrap();
    assert!(!dir.path().join("commands").exists());

    let check = Command::new(&binary)
        .current_dir(dir.path())
        .arg("check")
        .env_remove("ZBOT_CONFIG")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let listed = stdout(&check);
    assert!(
        listed.contains("  fabric (stock; dry run: task deploy): "),
        "{listed}"
    );

    let mut command = Command::new(&binary);
    command
        .current_dir(dir.path())
        .env_remove("ZBOT_CONFIG")
        .env("PATH", path_with_fab())
        .arg("run");
    let zbot = ZbotProcess::spawn(command);
    deploy(zbot.addr, 7001, "v0.0.1", &sha, "production").await;
    let last = github.final_status(7001, Duration::from_secs(120)).await;
    assert_eq!(last.state, "success", "{}", zbot.output.lock().unwrap());
    let log = std::fs::read_to_string(dir.path().join("data/logs/7001.log")).unwrap();
    assert!(
        log.contains("deploying v0.0.1 to ['production']"),
        "Fabric ran the fabfile: {log}"
    );
}

#[test]
fn a_local_recipe_replaces_the_stock_one_and_check_says_which_is_which() {
    let (dir, _) = bare_install();
    std::fs::write(dir.path().join("bot.toml"), "").unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    std::fs::write(
        dir.path().join("commands/shell.toml"),
        "description = \"our own\"\nprogram = \"script/ship\"\n[detect]\norder = 5\nfiles = [\"script/ship\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("commands/make.toml"),
        "description = \"make deploy\"\nprogram = \"make\"\nargs = [\"deploy\"]\n",
    )
    .unwrap();
    let out = zbot(dir.path(), &["check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("  shell (local, replaces the stock one: ")
            && text.contains("commands/shell.toml; no dry run): our own"),
        "{text}"
    );
    assert!(
        text.contains("  make (local: ")
            && text.contains("only when named; no dry run): make deploy"),
        "{text}"
    );
    assert!(
        text.contains("  capistrano (stock; dry run: task deploy): "),
        "{text}"
    );

    let named = "[deploy]\nrecipes_dir = \"/nonexistent/zbot-recipes\"\n";
    std::fs::write(dir.path().join("bot.toml"), named).unwrap();
    let out = zbot(dir.path(), &["check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/zbot-recipes: cannot read the recipes directory"),
        "a named directory must exist: {}",
        stderr(&out)
    );
}

#[test]
fn init_writes_a_commented_config_that_checks_once_its_variables_are_set() {
    let (dir, _) = bare_install();
    let out = zbot(dir.path(), &["init"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(dir.path().join("bot.toml")).unwrap();
    assert!(written.lines().filter(|l| l.starts_with('#')).count() > 20);
    // Never over an existing file, and nothing left beside it.
    std::fs::write(dir.path().join("bot.toml"), "# mine\n").unwrap();
    let again = zbot(dir.path(), &["init"], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("bot.toml exists already: not overwritten"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("bot.toml")).unwrap(),
        "# mine\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("zbot-init"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::write(dir.path().join("bot.toml"), &written).unwrap();

    let check = zbot(dir.path(), &["check"], VARIABLES);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("fabric (stock; dry run: task deploy)"));
    let unset = zbot(dir.path(), &["check"], &[]);
    assert_eq!(unset.status.code(), Some(1), "the variables are needed");

    // --config (ZBOT_CONFIG in the container) names where init writes.
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let elsewhere = zbot(dir.path(), &["--config", "etc/bot.toml", "init"], &[]);
    assert!(elsewhere.status.success(), "{}", stderr(&elsewhere));
    assert!(stdout(&elsewhere).contains("wrote etc/bot.toml"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etc/bot.toml")).unwrap(),
        written
    );

    std::fs::write(dir.path().join("bot.toml"), "# mine\n").unwrap();
    let again = zbot(dir.path(), &["init"], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("bot.toml")).unwrap(),
        "# mine\n"
    );
}

/// Runs `zbot shell` in `dir` with `input` piped in; returns (stdout, stderr).
fn shell(dir: &Path, binary: &Path, input: &str) -> (String, String) {
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .arg("shell")
        .env_remove("ZBOT_CONFIG")
        .env("PATH", path_with_fab())
        .env("USER", "alice");
    let output = piped(command, input);
    (stdout(&output), stderr(&output))
}

#[test]
fn the_shell_alone_makes_its_example_and_deploys_it() {
    let (dir, binary) = bare_install();
    let (out, err) = shell(
        dir.path(),
        &binary,
        "zbot deploy adxstat/v0.0.2 to production\n",
    );
    assert!(err.contains("using the example configuration"), "{err}");
    assert!(err.contains("made the example app's repository"), "{err}");
    assert!(
        out.contains("is on *production*. Deployed v0.0.2"),
        "{out}\n{err}"
    );
    assert!(
        !out.contains("GitHub") && !err.contains("GitHub"),
        "{out}\n{err}"
    );
}

#[test]
fn a_missing_repository_in_the_shell_is_named_without_github() {
    let (dir, binary) = bare_install();
    let config = "[apps.web]\nrepository = \"octo/web\"\nclone_url = \"repos/web\"\nenvironments = [\"production\"]\n";
    std::fs::write(dir.path().join("bot.toml"), config).unwrap();
    let (out, err) = shell(dir.path(), &binary, "zbot deploy web to production\n");
    assert!(
        err.contains("web: no git repository at") && err.contains("repos/web"),
        "{err}"
    );
    assert!(out.contains("I can't read the repository at"), "{out}");
    assert!(!out.contains("GitHub"), "{out}");
}

#[test]
fn a_dry_run_runs_the_recipes_noop_form_and_leaves_rollback_where_it_was() {
    let (dir, binary) = bare_install();
    let (out, err) = shell(
        dir.path(),
        &binary,
        "zbot deploy adxstat/v0.0.1 to production\n\
         zbot deploy adxstat/v0.0.2 to production\n\
         zbot deploy:noop adxstat/v0.0.1 to production\n\
         zbot rollback adxstat in production\n",
    );
    assert!(
        out.contains("Dry run of v0.0.1") && out.contains("nothing was deployed"),
        "{out}\n{err}"
    );
    let log = std::fs::read_to_string(dir.path().join("data/logs/3.log")).unwrap();
    assert!(
        log.contains("deploy:branch_name=v0.0.1,noop=true"),
        "the recipe's noop form ran: {log}"
    );
    assert!(
        log.contains("dry run: would deploy adxstat v0.0.1 to production"),
        "{log}"
    );
    // Before the dry run, rollback would go from v0.0.2 back to v0.0.1; it still does.
    let rolled = out
        .lines()
        .find(|l| l.contains("back from"))
        .unwrap_or_else(|| panic!("no rollback line: {out}"));
    let (from, to) = rolled.split_once(" to ").unwrap();
    assert!(from.contains("v0.0.2") && to.contains("v0.0.1"), "{rolled}");
    // It deploys v0.0.1's commit, by its sha.
    let v1 = crate::harness::git(
        &dir.path().join("data/example/adxstat"),
        &["rev-parse", "v0.0.1^{commit}"],
    );
    let current =
        std::fs::read_link(dir.path().join("data/releases/adxstat/production/current")).unwrap();
    assert!(current.ends_with(&v1), "{current:?}");
}
