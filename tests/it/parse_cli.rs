//! `zbot parse`: the JSON contract, for hubot-deploy's test corpus and every command, in every
//! addressing form (name, `name:`, `name,`, mention, DM, slash command). The tables run in this process
//! through the same functions `zbot parse` calls; one test runs the binary itself for the contract.

use serde_json::{Value, json};
use zbot::command::{Addressing, parse_message};

use crate::support::{repo_root, stdout, zbot};

/// What `zbot parse --bot-id U0BOT ARGS…` answers: (exit code, JSON), computed in this process.
fn parse(args: &[&str]) -> (i32, Value) {
    let (mut dm, mut slash, mut text) = (false, None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--dm" => dm = true,
            "--slash" => slash = args.next().copied(),
            other => text = Some(other),
        }
    }
    let names = vec!["zbot".to_string()];
    let addressing = Addressing {
        names: &names,
        bot_user_id: Some("U0BOT"),
        direct: dm,
        slash_command: slash,
    };
    let (code, json) =
        zbot::reply::parse_outcome(parse_message(text.unwrap_or_default(), &addressing));
    (i32::from(code), json)
}

/// The binary keeps the contract: one JSON value on stdout, exit 0 / 1 / 3, same answers as in-process.
#[test]
fn zbot_parse_binary_keeps_the_contract() {
    for (args, code) in [
        (vec!["zbot deploy adxstat/v0.0.1 to production"], 0),
        (vec!["zbot deploy adxstat to"], 1),
        (vec!["good morning"], 3),
        (vec!["--dm", "deploy adxstat"], 0),
        (vec!["--slash", "/deploy", "adxstat to staging"], 0),
        // As Slack delivers a pasted command: no-break spaces.
        (
            vec!["zbot\u{a0}deploy\u{a0}adxstat/v0.0.1\u{a0}to staging"],
            0,
        ),
    ] {
        let mut all = vec!["parse", "--bot-id", "U0BOT"];
        all.extend_from_slice(&args);
        let out = zbot(repo_root(), &all, &[]);
        let json: Value =
            serde_json::from_str(stdout(&out).trim()).expect("zbot parse prints one JSON value");
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert_eq!((code, json), parse(&args), "{args:?}");
    }
}

fn deploy(
    task: &str,
    force: bool,
    app: &str,
    r: Option<&str>,
    env: Option<&str>,
    hosts: Option<&str>,
    otp: Option<&str>,
) -> Value {
    json!({"command": "deploy", "task": task, "force": force, "app": app, "ref": r, "environment": env,
           "hosts": hosts, "otp": otp})
}

/// Every addressing form of `text` must give `expected`.
fn assert_all_forms(text: &str, expected: &Value) {
    let forms = [
        format!("zbot {text}"),
        format!("zbot: {text}"),
        format!("zbot, {text}"),
        format!("ZBOT {text}"),
        format!("@zbot {text}"),
        format!("<@U0BOT> {text}"),
        format!("<@U0BOT|zbot>: {text}"),
    ];
    for form in &forms {
        assert_eq!(
            parse(&[form]),
            (0, expected.clone()),
            "addressed as {form:?}"
        );
    }
    assert_eq!(
        parse(&["--dm", text]),
        (0, expected.clone()),
        "as a DM: {text:?}"
    );
    assert_eq!(
        parse(&["--dm", &format!("zbot {text}")]),
        (0, expected.clone()),
        "as a DM with prefix"
    );
    assert_eq!(
        parse(&["--slash", "/zbot", text]),
        (0, expected.clone()),
        "as /zbot {text:?}"
    );
    let verb = text.split_whitespace().next().unwrap();
    if verb == "deploy" {
        let rest = text.strip_prefix("deploy ").unwrap();
        assert_eq!(
            parse(&["--slash", "/deploy", rest]),
            (0, expected.clone()),
            "as /deploy {rest:?}"
        );
    }
}

#[test]
fn hubot_deploy_pattern_corpus() {
    let yubikey = "ccccccdlnncbtuevhdbctrccukdciveuclhbkvehbeve";
    let cases = [
        (
            "deploy hubot",
            deploy("deploy", false, "hubot", None, None, None, None),
        ),
        (
            "deploy! hubot",
            deploy("deploy", true, "hubot", None, None, None, None),
        ),
        (
            "deploy:migrate hubot",
            deploy("deploy:migrate", false, "hubot", None, None, None, None),
        ),
        (
            "deploy hubot/mybranch to production",
            deploy(
                "deploy",
                false,
                "hubot",
                Some("mybranch"),
                Some("production"),
                None,
                None,
            ),
        ),
        (
            "deploy hubot to production",
            deploy(
                "deploy",
                false,
                "hubot",
                None,
                Some("production"),
                None,
                None,
            ),
        ),
        (
            "deploy hubot to production/fe",
            deploy(
                "deploy",
                false,
                "hubot",
                None,
                Some("production"),
                Some("fe"),
                None,
            ),
        ),
        (
            "deploy hubot/atmos/branch to production/fe",
            deploy(
                "deploy",
                false,
                "hubot",
                Some("atmos/branch"),
                Some("production"),
                Some("fe"),
                None,
            ),
        ),
        (
            &*format!("deploy hubot/atmos/branch to production/fe {yubikey}"),
            deploy(
                "deploy",
                false,
                "hubot",
                Some("atmos/branch"),
                Some("production"),
                Some("fe"),
                Some(yubikey),
            ),
        ),
        (
            "deploy hubot/atmos/branch to production/fe 123456",
            deploy(
                "deploy",
                false,
                "hubot",
                Some("atmos/branch"),
                Some("production"),
                Some("fe"),
                Some("123456"),
            ),
        ),
        (
            "deploy hubot in production",
            deploy(
                "deploy",
                false,
                "hubot",
                None,
                Some("production"),
                None,
                None,
            ),
        ),
        (
            "deploy hubot on staging",
            deploy("deploy", false, "hubot", None, Some("staging"), None, None),
        ),
        (
            "deploy hubot to prod",
            deploy("deploy", false, "hubot", None, Some("prod"), None, None),
        ),
        (
            "deploy adxstat/v0.0.1 to production",
            deploy(
                "deploy",
                false,
                "adxstat",
                Some("v0.0.1"),
                Some("production"),
                None,
                None,
            ),
        ),
        (
            "deploy hubot-deploy",
            deploy("deploy", false, "hubot-deploy", None, None, None, None),
        ),
        (
            "deploys hubot",
            json!({"command": "deploys", "app": "hubot", "ref": null, "environment": null}),
        ),
        (
            "deploys hubot in production",
            json!({"command": "deploys", "app": "hubot", "ref": null, "environment": "production"}),
        ),
        (
            "deploys hubot/mybranch to production",
            json!({"command": "deploys", "app": "hubot", "ref": "mybranch", "environment": "production"}),
        ),
        (
            "where can i deploy hubot",
            json!({"command": "where", "app": "hubot"}),
        ),
        (
            "deploy:lock! hubot",
            json!({"command": "lock", "force": false, "until": null, "app": "hubot", "environment": null, "reason": null}),
        ),
        (
            "deploy:lock hubot in production",
            json!({"command": "lock", "force": false, "until": null, "app": "hubot", "environment": "production", "reason": null}),
        ),
        (
            "deploy:unlock hubot in production",
            json!({"command": "unlock", "app": "hubot", "environment": "production"}),
        ),
        ("deploy:version", json!({"command": "version"})),
    ];
    for (text, expected) in &cases {
        assert_all_forms(text, expected);
    }
}

#[test]
fn every_command_in_every_form() {
    let cases = [
        (
            "lock adxstat in production because testing",
            json!({"command": "lock", "force": false, "until": null, "app": "adxstat", "environment": "production", "reason": "because testing"}),
        ),
        (
            "lock adxstat",
            json!({"command": "lock", "force": false, "until": null, "app": "adxstat", "environment": null, "reason": null}),
        ),
        (
            "unlock adxstat",
            json!({"command": "unlock", "app": "adxstat", "environment": null}),
        ),
        ("locks", json!({"command": "locks"})),
        (
            "cancel adxstat in production",
            json!({"command": "cancel", "app": "adxstat", "environment": "production", "id": null}),
        ),
        (
            "cancel #42",
            json!({"command": "cancel", "app": null, "environment": null, "id": 42}),
        ),
        (
            "rollback adxstat in staging",
            json!({"command": "rollback", "force": false, "app": "adxstat", "environment": "staging"}),
        ),
        (
            "rollback! adxstat in staging",
            json!({"command": "rollback", "force": true, "app": "adxstat", "environment": "staging"}),
        ),
        ("help", json!({"command": "help", "topic": null})),
        ("help deploy", json!({"command": "help", "topic": "deploy"})),
        ("version", json!({"command": "version"})),
        (
            "Where can I deploy adxstat?",
            json!({"command": "where", "app": "adxstat"}),
        ),
    ];
    for (text, expected) in &cases {
        assert_all_forms(text, expected);
    }
}

#[test]
fn slash_deploy_accepts_other_verbs() {
    assert_eq!(
        parse(&["--slash", "/deploy", "lock adxstat in production"]),
        (
            0,
            json!({"command": "lock", "force": false, "until": null, "app": "adxstat", "environment": "production", "reason": null})
        )
    );
    assert_eq!(
        parse(&["--slash", "/zbot", ""]),
        (0, json!({"command": "help", "topic": null}))
    );
}

#[test]
fn malformed_messages_get_an_error_and_a_hint() {
    let cases = [
        (
            "zbot deploy hubot/atmos/branch to production/fe burgers",
            "one-time password",
        ),
        ("zbot deploy hubot/branch tos taging", "did you mean `to`?"),
        ("zbot depoly adxstat", "did you mean `deploy`?"),
        ("zbot deploy adxstat to", "usage: deploy"),
        ("zbot deploy", "usage: deploy"),
        ("zbot ping", "help"),
        ("zbot image me pugs", "help"),
        ("zbot help depoly", "did you mean `help deploy`?"),
        ("zbot lock adxstat/v1 in production", "usage: lock"),
        ("zbot locks now", "usage: locks"),
    ];
    for (text, hint_part) in cases {
        let (code, json) = parse(&[text]);
        assert_eq!(code, 1, "{text}: {json}");
        let error = json["error"].as_str().unwrap_or_default();
        let hint = json["hint"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{text}: {json}");
        assert!(
            hint.contains(hint_part) || error.contains(hint_part),
            "{text}: {json}"
        );
    }
}

#[test]
fn messages_not_for_the_bot_are_ignored() {
    for text in [
        "ping",
        "image me pugs",
        "deploy hubot",
        "zbotty deploy hubot",
        "<@U0OTHER> deploy hubot",
        "hey zbot deploy x",
        "",
    ] {
        assert_eq!(parse(&[text]), (3, Value::Null), "{text:?}");
    }
}

#[test]
fn slack_encoding_is_undone_before_parsing() {
    assert_eq!(
        parse(&["<@U0BOT> deploy adxstat/<http://feature.x|feature.x> to production"]).1["ref"],
        json!("feature.x")
    );
    let (code, json) = parse(&["zbot deploy adxstat/a&amp;b to production"]);
    assert_eq!(code, 1);
    assert!(json["error"].as_str().unwrap().contains('&'), "{json}");
    let (code, json) = parse(&["zbot lock adxstat in production 1 &lt; 2 &amp; ok"]);
    assert_eq!(code, 0);
    assert_eq!(json["reason"], json!("1 < 2 & ok"));
}

#[test]
fn injection_attempts_are_refused() {
    let attempts = [
        "zbot deploy adxstat/$(reboot) to production",
        "zbot deploy adxstat/`id` to production",
        "zbot deploy adxstat/main;rm -rf / to production",
        "zbot deploy adxstat/main|cat to production",
        "zbot deploy adxstat/main&amp;&amp;id to production",
        "zbot deploy adxstat/--upload-pack=evil to production",
        "zbot deploy adxstat to prod;id",
        "zbot deploy adxstat to $(id)",
        "zbot deploy adxstat to production/web1;id",
        "zbot deploy adxstat to production/$(id)",
        "zbot deploy:$(id) adxstat",
        "zbot deploy:x;y adxstat",
        "zbot deploy adx$(id)stat",
        "zbot deploys adxstat/`id`",
        "zbot rollback adxstat in -rf",
    ];
    for text in attempts {
        let (code, json) = parse(&[text]);
        assert_eq!(code, 1, "{text} should be refused, got {json}");
    }
}
