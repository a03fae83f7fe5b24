//! `zbot check`: the shipped configuration passes, broken ones fail with file:line messages.

use crate::support::{repo_root, stderr, stdout, zbot};

const VARIABLES: &[(&str, &str)] = &[
    ("SLACK_APP_TOKEN", "xapp-1-test"),
    ("SLACK_BOT_TOKEN", "xoxb-test"),
    ("GITHUB_TOKEN", "ghp_test"),
    ("GITHUB_WEBHOOK_SECRET", "a-long-enough-webhook-secret"),
];

#[test]
fn shipped_bot_toml_passes_when_its_variables_are_set() {
    let out = zbot(repo_root(), &["check"], VARIABLES);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("adxstat: octo/adxstat"), "{text}");
    assert!(
        text.contains("fabric (stock; dry run: task deploy):"),
        "{text}"
    );
}

#[test]
fn missing_variables_are_all_reported_with_lines() {
    let out = zbot(repo_root(), &["check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for (name, _) in VARIABLES {
        assert!(
            err.contains(&format!("environment variable {name} is not set")),
            "{err}"
        );
    }
    assert!(
        err.lines()
            .all(|l| l.starts_with("bot.toml:") || l.contains("problem")),
        "{err}"
    );
}

#[test]
fn a_missing_configuration_names_zbot_init() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["check", "run"] {
        let out = zbot(dir.path(), &[command], VARIABLES);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("(run `zbot init` to write one)"),
            "zbot {command}: {err}"
        );
    }
}

/// compose passes `${GITHUB_TOKEN:-}` on as an empty variable when the host has none: it is as good
/// as unset.
#[test]
fn an_empty_variable_is_reported_like_a_missing_one() {
    let mut variables = VARIABLES.to_vec();
    variables.retain(|(name, _)| *name != "GITHUB_TOKEN");
    variables.push(("GITHUB_TOKEN", ""));
    let out = zbot(repo_root(), &["check"], &variables);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("environment variable GITHUB_TOKEN is empty"),
        "{err}"
    );
}

/// Writes `config` into a fresh directory with the shipped recipes and runs `zbot check` there.
fn check_file(config: &str) -> (i32, String) {
    run_with(config, &["check"])
}

/// Writes `config` as `check_file` does and runs zbot with `args` there.
fn run_with(config: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bot.toml"), config).unwrap();
    let commands = dir.path().join("commands");
    std::fs::create_dir(&commands).unwrap();
    for entry in std::fs::read_dir(repo_root().join("commands")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), commands.join(entry.file_name())).unwrap();
    }
    let out = zbot(dir.path(), args, VARIABLES);
    (out.status.code().unwrap_or(-1), stderr(&out))
}

#[test]
fn unknown_keys_name_the_line_and_key() {
    let (code, err) = check_file("[bot]\nname = \"zbot\"\n\n[deploy]\nconcurency = 4\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("bot.toml:5: deploy.concurency: unknown field `concurency`"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_line_and_key() {
    let (code, err) = check_file("[deploy]\ntimeout = \"30x\"\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("bot.toml:2: deploy.timeout: `30x` is not a duration"),
        "{err}"
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let config = r#"
[webhook]
listen = "not-an-address"
secret = "${ZBOT_TEST_UNSET_VARIABLE}"

[apps.adxstat]
repository = "adxstat"
environments = ["production"]
environment_urls = { staging = "https://x" }
default_ref = "bad..ref"
provider = "nosuchrecipe"
"#;
    let (code, err) = check_file(config);
    assert_eq!(code, 1);
    for expected in [
        "bot.toml:3: [webhook] listen: `not-an-address` is not an address",
        "bot.toml:4: [webhook] secret: environment variable ZBOT_TEST_UNSET_VARIABLE is not set",
        "bot.toml:7: [apps.adxstat] repository: `adxstat` is not a repository: it is not `owner/name`",
        "bot.toml:9: [apps.adxstat] environment_urls: `staging` is not one of this app's environments",
        "bot.toml:10: [apps.adxstat] default_ref:",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_provider_must_name_a_recipe() {
    let config = "[apps.adxstat]\nrepository = \"octo/adxstat\"\nprovider = \"nosuchrecipe\"\n";
    let (code, err) = check_file(config);
    assert_eq!(code, 1);
    assert!(
        err.contains("[apps.adxstat] provider: no recipe `nosuchrecipe`"),
        "{err}"
    );
    // `zbot run` and `zbot shell` load through the same path: they refuse to start, with the same words.
    let runnable = format!(
        "{config}[github]\ntoken = \"x\"\napi_url = \"http://127.0.0.1:9\"\n[webhook]\nlisten = \"127.0.0.1:0\"\nsecret = \"a-long-enough-webhook-secret\"\n"
    );
    for command in ["run", "shell"] {
        let (code, err) = run_with(&runnable, &[command]);
        assert_ne!(code, 0, "zbot {command} started: {err}");
        assert!(
            err.contains("[apps.adxstat] provider: no recipe `nosuchrecipe`"),
            "zbot {command}: {err}"
        );
    }
}

/// An environment alias that is also an app's own environment name is allowed (the app's own wins)
/// but said, with where: a warning, not a failure.
#[test]
fn an_alias_shadowed_by_an_apps_environment_is_a_warning() {
    let config = "[apps.short]\nrepository = \"octo/short\"\nenvironments = [\"prod\", \"staging\"]\n\n\
                  [apps.long]\nrepository = \"octo/long\"\nenvironments = [\"production\"]\n";
    let (code, err) = check_file(config);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.trim(),
        "bot.toml:3: [apps.short] environments: `prod` is also an alias of `production` in \
         [bot] environment_aliases: for short, `prod` means its own `prod` environment, not \
         `production` (warning)"
    );
    let (code, err) = check_file("[apps.long]\nrepository = \"octo/long\"\n");
    assert_eq!((code, err.as_str()), (0, ""));
}

/// Log page links built from a loopback (or unspecified) listen address reach nobody in chat: a
/// warning with where, until `public_url` is set.
#[test]
fn log_links_to_a_loopback_address_are_a_warning_when_slack_is_configured() {
    let slack = "[slack]\napp_token = \"xapp-1\"\nbot_token = \"xoxb-1\"\n\n";
    let poll_only = format!("{slack}[github]\ntoken = \"t\"\npoll = \"15s\"\n");
    let (code, err) = check_file(&poll_only);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.trim(),
        "bot.toml:7: [github] poll: links to zbot's own log pages would point at \
         http://127.0.0.1:8080, which nobody in chat can open: set [webhook] public_url to the \
         address people reach zbot at (warning)"
    );
    let container = format!("{poll_only}\n[webhook]\nreceive = false\nlisten = \"0.0.0.0:8080\"\n");
    let (code, err) = check_file(&container);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "[webhook] listen: links to zbot's own log pages would point at http://0.0.0.0:8080"
        ),
        "{err}"
    );
    let reachable = format!("{container}public_url = \"https://zbot.example.com\"\n");
    let (code, err) = check_file(&reachable);
    assert_eq!((code, err.as_str()), (0, ""));
    // Without Slack no link is said in chat.
    let (code, err) = check_file("[github]\ntoken = \"t\"\npoll = \"15s\"\n");
    assert_eq!((code, err.as_str()), (0, ""));
}

#[test]
fn a_broken_config_does_not_report_a_recipes_directory_it_never_named() {
    let (code, err) = check_file("[deploy]\nrecipes_dir = \"elsewhere\"\ntimeout = \"30x\"\n");
    assert_eq!(code, 1);
    assert!(!err.contains("recipes directory"), "{err}");
}

#[test]
fn a_broken_recipe_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bot.toml"), "").unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    std::fs::write(
        dir.path().join("commands/bad.toml"),
        "description = \"x\"\nprogram = \"sh\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("commands/worse.toml"),
        "description = \"x\"\nprogramm = \"fab\"\n",
    )
    .unwrap();
    let out = zbot(dir.path(), &["check"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("bad.toml: program `sh` is a shell"), "{err}");
    assert!(
        err.contains("worse.toml:2: programm: unknown field"),
        "{err}"
    );
}

#[test]
fn apps_json_converts_to_toml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apps.json");
    std::fs::write(
        &file,
        r##"{"hubot": {"provider": "fabric", "repository": "MyOrg/my-org-hubot", "environments": ["production"],
            "allowed_rooms": ["#ops"], "production_url": "https://hubot.example"}}"##,
    )
    .unwrap();
    let out = zbot(
        dir.path(),
        &["check", "--apps-json", file.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let toml = stdout(&out);
    std::fs::write(dir.path().join("bot.toml"), &toml).unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    std::fs::copy(
        repo_root().join("commands/fabric.toml"),
        dir.path().join("commands/fabric.toml"),
    )
    .unwrap();
    let out = zbot(dir.path(), &["check"], &[]);
    assert!(out.status.success(), "{toml}\n{}", stderr(&out));
    assert!(stdout(&out).contains("hubot: MyOrg/my-org-hubot → production (recipe: fabric)"));
    // apps.json left auto_merge out: hubot-deploy and GitHub merge then, and so does the converted app.
    let config = zbot::config::Config::load(&dir.path().join("bot.toml")).unwrap();
    let hubot: zbot::domain::AppName = "hubot".parse().unwrap();
    assert!(config.apps[&hubot].auto_merge, "{toml}");
}

/// A bot name is one word by the grammar's own idea of a space: a zero-width space pasted into it
/// would make a name no message can address.
#[test]
fn a_bot_name_with_any_space_is_refused() {
    for name in ["z bot", "zbot\\u200B", "z\\u00A0bot"] {
        let (code, err) = check_file(&format!("[bot]\nname = \"{name}\"\n"));
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains("bot.toml:2: [bot] name:") && err.contains("cannot be a bot name"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_clone_url_with_a_password_is_refused() {
    let (code, err) = check_file(
        "[apps.adxstat]\nrepository = \"octo/adxstat\"\nclone_url = \"https://x:ghp_secret@github.com/octo/adxstat.git\"\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("clone_url: has a password in it"), "{err}");
    let (code, err) = check_file(
        "[apps.adxstat]\nrepository = \"octo/adxstat\"\nclone_url = \"git@github.com:octo/adxstat.git\"\n",
    );
    assert_eq!(code, 0, "{err}");
}

/// `[heroku]`, `[campfire]` and `heroku_app`: a good configuration passes; each mistake is named with
/// its line and key.
#[test]
fn heroku_and_campfire_keys_are_checked() {
    // An app Heroku builds, with GitHub configured but no [heroku]: said at the app, not at deploy time.
    let (code, err) = check_file(
        "[github]\ntoken = \"${GITHUB_TOKEN}\"\n\n\
        [apps.web]\nrepository = \"octo/web\"\nprovider = \"heroku\"\nheroku_app = \"web-prod\"\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "[apps.web] provider: provider = \"heroku\" needs a [heroku] section with api_key"
        ),
        "{err}"
    );
    // A heroku_app of another shape says which shapes there are.
    let (code, err) = check_file(
        "[apps.web]\nrepository = \"octo/web\"\nprovider = \"heroku\"\nheroku_app = 42\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "heroku_app: must be a Heroku app name (heroku_app = \"adxstat\") or one per environment"
        ) && !err.contains("untagged"),
        "{err}"
    );
    let good = "[heroku]\napi_key = \"k\"\napi_url = \"http://127.0.0.1:9\"\npoll_interval = \"2s\"\n\
        timeout = \"20s\"\nconnect_timeout = \"5s\"\n\n\
        [campfire]\nurl = \"https://chat.example.com\"\nbot_key = \"2-AbCd\"\n\
        webhook_path = \"/campfire/0123456789abcdef0123\"\nrooms = [1, \"2\"]\ntimeout = \"10s\"\n\n\
        [apps.web]\nrepository = \"octo/web\"\nprovider = \"heroku\"\nenvironments = [\"production\", \"staging\"]\n\
        heroku_app = { production = \"web-prod\", staging = \"web-staging\" }\n";
    let (code, err) = check_file(good);
    assert_eq!(code, 0, "{err}");
    let bad = "[heroku]\napi_key = \"k\"\npoll_interval = \"0s\"\n\n\
        [campfire]\nurl = \"chat.example.com\"\nbot_key = \"2-AbCd\"\nwebhook_path = \"/campfire/short\"\nrooms = []\n\n\
        [apps.web]\nrepository = \"octo/web\"\nprovider = \"heroku\"\nenvironments = [\"production\", \"staging\"]\n\
        heroku_app = { production = \"Web_Prod\" }\n\n\
        [apps.other]\nrepository = \"octo/other\"\nheroku_app = \"other-app\"\n";
    let (code, err) = check_file(bad);
    assert_eq!(code, 1);
    for expected in [
        "bot.toml:3: [heroku] poll_interval: must be longer than 0s",
        "bot.toml:6: [campfire] url: `chat.example.com` is not an http(s) URL",
        "bot.toml:8: [campfire] webhook_path: its last segment is the webhook's secret",
        "bot.toml:9: [campfire] rooms: list the room ids",
        "[apps.web] heroku_app: `Web_Prod` is not a Heroku app name: it must be lowercase letters, digits or dashes",
        "[apps.web] provider: provider = \"heroku\" needs heroku_app for staging: heroku_app = \"name\" or { staging = \"name\" }",
        "[apps.other] heroku_app: is used only with provider = \"heroku\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// `[[notify]]` sinks: each kind with its place; the mistakes are named.
#[test]
fn notify_sinks_are_checked() {
    let good = "[slack]\napp_token = \"xapp-1\"\nbot_token = \"xoxb-1\"\ndm_requester = false\n\n\
        [[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example.com/z\"\nsecret = \"s3cret-s3cret-s3cret\"\n\
        events = [\"started\", \"errored\"]\napps = [\"adxstat\"]\nenvironments = [\"production\"]\nattempts = 3\n\
        timeout = \"5s\"\nconnect_timeout = \"2s\"\n\n\
        [[notify]]\nkind = \"slack\"\nchannel = \"C0DEPLOYS\"\nenvironments = [\"prod\"]\n\n\
        [apps.adxstat]\nrepository = \"octo/adxstat\"\nenvironments = [\"production\", \"staging\"]\n";
    let (code, err) = check_file(good);
    assert_eq!(code, 0, "{err}");
    let bad = "[[notify]]\nkind = \"teams\"\n\n[[notify]]\nkind = \"webhook\"\nurl = \"https://x.example\"\n\
        events = [\"done\"]\n\n[[notify]]\nkind = \"campfire\"\nroom = 1\n";
    let (code, err) = check_file(bad);
    assert_eq!(code, 1);
    for expected in [
        "[[notify]] kind: `teams` is not a sink: use slack, campfire or webhook",
        "[[notify]] secret: a webhook sink signs its events",
        "[[notify]] events: `done` is not an event",
        "[[notify]] kind: a campfire sink needs [campfire]",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn polling_needs_a_sane_interval_and_a_webhook_off_needs_polling() {
    let (code, err) = check_file("[github]\ntoken = \"t\"\npoll = \"500ms\"\n");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bot.toml:3: [github] poll: must be at least 1s"),
        "{err}"
    );
    let (code, err) =
        check_file("[github]\ntoken = \"t\"\npoll = \"15s\"\npoll_max_age = \"0s\"\n");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bot.toml:4: [github] poll_max_age: must be longer than 0s"),
        "{err}"
    );
    let (code, err) = check_file("[webhook]\nreceive = false\n");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("[webhook] receive: with receive = false deployments arrive only by polling"),
        "{err}"
    );
    let (code, err) =
        check_file("[github]\ntoken = \"t\"\npoll = \"15s\"\n\n[webhook]\nreceive = false\n");
    assert_eq!(
        code, 0,
        "no secret is needed without the webhook route: {err}"
    );
}

/// `[webhook] metrics_token` is a secret like the webhook's: at least 16 characters.
#[test]
fn a_metrics_token_is_at_least_16_characters() {
    let config = |token: &str| {
        format!("[webhook]\nsecret = \"0123456789abcdef\"\nmetrics_token = \"{token}\"\n")
    };
    let (code, err) = check_file(&config("short"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bot.toml:3: [webhook] metrics_token: the metrics token is too short"),
        "{err}"
    );
    let (code, err) = check_file(&config("scrape-me-0123456789"));
    assert_eq!(code, 0, "{err}");
}

/// A URL that carries a key or a signed body is https://, or plain http only to this machine.
#[test]
fn urls_with_secrets_are_https_unless_loopback() {
    let plain = "[heroku]\napi_key = \"k\"\napi_url = \"http://api.example.com\"\n\n\
        [campfire]\nurl = \"http://chat.example.com\"\nbot_key = \"2-AbCd\"\n\
        webhook_path = \"/campfire/0123456789abcdef0123\"\nrooms = [1]\n\n\
        [[notify]]\nkind = \"webhook\"\nurl = \"http://hooks.example.com/z\"\nsecret = \"s3cret-s3cret-s3cret\"\n";
    let (code, err) = check_file(plain);
    assert_eq!(code, 1);
    for expected in [
        "[heroku] api_url: `http://api.example.com` must be https://",
        "[campfire] url: `http://chat.example.com` must be https://",
        "[[notify]] url: `http://hooks.example.com/z` must be https://",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let local = plain
        .replace("http://api.example.com", "http://localhost:9")
        .replace("http://chat.example.com", "http://[::1]:9")
        .replace("http://hooks.example.com/z", "http://127.0.0.1:9/z");
    let (code, err) = check_file(&local);
    assert_eq!(code, 0, "{err}");
}

/// The guards' commented examples in the shipped bot.toml are valid once uncommented, and `zbot
/// check` names a wrong one with its line.
#[test]
fn the_guard_examples_in_bot_toml_pass_zbot_check() {
    let shipped = std::fs::read_to_string(repo_root().join("bot.toml")).unwrap();
    let examples = [
        "time_zone = ",
        "approvals = ",
        "auto_deploy = ",
        "lock_on_failure = ",
        "[windows.production]",
        "days = ",
        "hours = ",
        "closed = ",
    ];
    let mut uncommented = 0;
    let config: String = shipped
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if examples.iter().any(|e| rest.starts_with(e)) => {
                uncommented += 1;
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    assert_eq!(uncommented, 9, "every example is there");
    let (code, err) = run_with(&config, &["check"]);
    assert_eq!(code, 0, "{err}");
    let broken = config.replace("hours = \"09:00-17:00\"", "hours = \"9 to 5\"");
    let (code, err) = run_with(&broken, &["check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "[windows.production] hours: `9 to 5` is not a time span like \"09:00-17:00\""
        ),
        "{err}"
    );
}

/// A `[[notify]]` filter that could never match is refused: an app bot.toml lacks, an environment no
/// (listed) app has, `events = []`. An alias (`prod`) counts as the environment it stands for.
#[test]
fn a_notify_filter_that_never_matches_is_refused() {
    let app = "[apps.adxstat]\nrepository = \"octo/adxstat\"\nenvironments = [\"production\", \"staging\"]\n\n\
        [apps.other]\nrepository = \"octo/other\"\nenvironments = [\"qa\"]\n\n";
    let sink = "[[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example.com/z\"\nsecret = \"s3cret-s3cret-s3cret\"\n";
    let (code, err) = check_file(&format!("{app}{sink}environments = [\"prod\", \"QA\"]\n"));
    assert_eq!(code, 0, "{err}");
    for (filter, expected) in [
        (
            "apps = [\"nosuch\"]",
            "[[notify]] apps: no app `nosuch` in [apps]: use one of `adxstat`, `other`",
        ),
        (
            "environments = [\"qa\"]\napps = [\"adxstat\"]",
            "[[notify]] environments: no app in `apps` has a `qa` environment: use one of `production`, `staging`",
        ),
        (
            "environments = [\"preprod\"]",
            "[[notify]] environments: no app has a `preprod` environment",
        ),
        (
            "events = []",
            "[[notify]] events: `events = []` would send nothing",
        ),
    ] {
        let (code, err) = check_file(&format!("{app}{sink}{filter}\n"));
        assert_eq!(code, 1, "{filter}: {err}");
        assert!(
            err.contains(expected),
            "{filter}: missing {expected:?} in:\n{err}"
        );
    }
}

/// `zbot check --online` asks Heroku for each heroku_app with the API key, and reaches [campfire] url:
/// an app Heroku does not know is reported, and the check fails.
#[tokio::test(flavor = "multi_thread")]
async fn check_online_asks_heroku_for_each_app_and_reaches_campfire() {
    let heroku = crate::fakes::heroku::FakeHeroku::start(&["adxstat"]).await;
    let config = format!(
        "[github]\ntoken = \"x\"\napi_url = \"http://127.0.0.1:9\"\n\n\
        [heroku]\napi_key = \"{key}\"\napi_url = \"{url}\"\n\n\
        [campfire]\nurl = \"{url}\"\nbot_key = \"1-AbCdEfGh\"\nwebhook_path = \"/campfire/0123456789abcdef0123\"\nrooms = [1]\n\n\
        [apps.adxstat]\nrepository = \"octo/adxstat\"\nenvironments = [\"production\", \"staging\"]\n\
        provider = \"heroku\"\nheroku_app = {{ production = \"adxstat\", staging = \"adxstat-staging\" }}\n",
        key = crate::fakes::heroku::API_KEY,
        url = heroku.url(),
    );
    let out = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bot.toml"), config).unwrap();
        std::fs::create_dir(dir.path().join("commands")).unwrap();
        zbot(dir.path(), &["check", "--online"], VARIABLES)
    })
    .await
    .unwrap();
    let said = stdout(&out);
    assert!(
        said.contains("heroku: ok, adxstat production (adxstat)"),
        "{said}\n{}",
        stderr(&out)
    );
    assert!(
        said.contains("heroku: adxstat staging: Heroku has no app adxstat-staging"),
        "{said}"
    );
    assert!(said.contains("campfire: ok"), "{said}");
    assert_ne!(out.status.code(), Some(0), "{said}\n{}", stderr(&out));
}

/// `[store]`: a Postgres URL (its password never printed), a lease of at least a second.
#[test]
fn the_store_section_is_checked() {
    let (code, err) =
        check_file("[store]\nurl = \"mysql://zbot:hunter2@db/zbot\"\nlease = \"0s\"\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("bot.toml:2: [store] url: must be a Postgres URL"),
        "{err}"
    );
    assert!(
        err.contains("bot.toml:3: [store] lease: must be at least 1s"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.toml"),
        "[store]\nurl = \"postgres://zbot:${ZBOT_DB_PASSWORD}@db.example/zbot?sslmode=require\"\nlease = \"10s\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    let out = zbot(dir.path(), &["check"], &[("ZBOT_DB_PASSWORD", "hunter2")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("store: postgres ([store] url), leases of 10s"),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !stderr(&out).contains("hunter2"));
}

/// `zbot check --online` connects to the store: it says whether it answers, and what to do when it
/// does not, never printing the password.
#[tokio::test(flavor = "multi_thread")]
async fn check_online_reaches_the_store() {
    let url = tokio::task::spawn_blocking(crate::postgres::database)
        .await
        .unwrap();
    let check = |url: String| {
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("bot.toml"),
                format!("[store]\nurl = \"{url}\"\n"),
            )
            .unwrap();
            std::fs::create_dir(dir.path().join("commands")).unwrap();
            zbot(dir.path(), &["check", "--online"], &[])
        })
    };
    let out = check(url.clone()).await.unwrap();
    assert!(
        stdout(&out).contains(&format!("store: ok, {url} answers")),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(out.status.success());
    let out = check("postgres://zbot:hunter2@127.0.0.1:1/zbot".to_string())
        .await
        .unwrap();
    let said = stdout(&out);
    assert!(
        said.contains("store: postgres://zbot:***@127.0.0.1:1/zbot: ")
            && said.contains("(nothing listens at the host and port of [store] url)"),
        "{said}"
    );
    assert!(!said.contains("hunter2") && !stderr(&out).contains("hunter2"));
    assert_ne!(out.status.code(), Some(0));
}

/// `zbot run --instance-id` takes a host name's characters only (the id goes into log lines, headers
/// and the store).
#[test]
fn a_bad_instance_id_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = zbot(dir.path(), &["run", "--instance-id", "web 1"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--instance-id: U+0020"),
        "{}",
        stderr(&out)
    );
}
