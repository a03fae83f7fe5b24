//! The documents people follow: the Slack app manifest matches what the code uses, and every command
//! in README.md is one a test or `.ci/run` runs, so the README cannot drift from the code.

use std::collections::BTreeSet;

use crate::support::{repo_root, stdout, zbot};

/// The manifest as JSON, read by PyYAML (installed by `.ci/run`).
fn manifest() -> serde_json::Value {
    let python = repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(repo_root().join("slack-app-manifest.yml"))
        .output()
        .expect("PyYAML from .venv (bash .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn strings(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_manifest_enables_socket_mode_and_every_scope_and_event_the_code_uses() {
    let m = manifest();
    assert_eq!(m["settings"]["socket_mode_enabled"], true);
    assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
    let events = strings(&m["settings"]["event_subscriptions"]["bot_events"]);
    assert_eq!(
        events,
        zbot::slack::EVENTS.iter().map(|s| s.to_string()).collect()
    );
    let scopes = strings(&m["oauth_config"]["scopes"]["bot"]);
    assert_eq!(
        scopes,
        zbot::slack::BOT_SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let slash = m["features"]["slash_commands"].as_array().unwrap();
    assert!(slash.iter().any(|c| c["command"] == "/deploy"));
}

/// Commands in README.md's ```sh blocks.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() && !l.starts_with('#') => commands.push(l.to_string()),
            _ => {}
        }
    }
    commands
}

/// Where each README command is run. A README command missing here fails this test.
const RUN_ELSEWHERE: &[(&str, &str)] = &[
    (
        "examples/try-it",
        "shell::the_example_app_deploys_moves_forward_and_rolls_back",
    ),
    ("cargo test --locked", ".ci/run"),
    ("bash .ci/run", "CI"),
    (
        "zbot run",
        "deployer::a_killed_zbot_ends_interrupted_deploys_and_runs_queued_ones",
    ),
    (
        "zbot check --online",
        "chat::check_online_verifies_both_connections",
    ),
    (
        "zbot check --apps-json apps.json",
        "check::apps_json_converts_to_toml",
    ),
    (
        "docker compose run --rm shell   # the example app in zbot shell: offline, no bot.toml needed",
        "container::the_image_builds_when_a_container_engine_answers",
    ),
    (
        "docker compose up -d            # for real: ./bot.toml and the secrets from .env",
        "container::the_image_builds_when_a_container_engine_answers (its configuration)",
    ),
];

/// README commands this test runs itself against the shipped files.
const RUN_HERE: &[&str] = &[
    "zbot check",
    "zbot parse 'zbot deploy adxstat/v0.0.1 to production'",
    "zbot --version",
];

#[test]
fn every_readme_command_is_run_somewhere() {
    for command in readme_commands() {
        let covered = RUN_HERE.contains(&command.as_str())
            || RUN_ELSEWHERE.iter().any(|(c, _)| *c == command);
        assert!(
            covered,
            "README.md shows `{command}`, but no test runs it: add it to tests/it/docs.rs"
        );
    }
    let env = [
        ("SLACK_APP_TOKEN", "xapp-1-test"),
        ("SLACK_BOT_TOKEN", "xoxb-test"),
        ("GITHUB_TOKEN", "ghp_test"),
        ("GITHUB_WEBHOOK_SECRET", "a-long-enough-webhook-secret"),
    ];
    for command in RUN_HERE {
        let words: Vec<String> = command
            .split('\'')
            .enumerate()
            .flat_map(|(i, part)| {
                if i % 2 == 1 {
                    vec![part.to_string()]
                } else {
                    part.split_whitespace().map(str::to_string).collect()
                }
            })
            .collect();
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let out = zbot(repo_root(), &args, &env);
        assert!(
            out.status.success(),
            "`{command}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout(&out).is_empty(), "`{command}` printed nothing");
    }
}

/// `examples/try-it` starts zbot with `cargo run`, which must know which binary that is.
#[test]
fn cargo_run_runs_zbot() {
    let manifest: toml::Table = std::fs::read_to_string(repo_root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let bins = manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .map_or(0, Vec::len);
    if bins > 1 {
        assert_eq!(manifest["package"]["default-run"].as_str(), Some("zbot"));
    }
}

/// Every Rust file opens with a `//!` comment saying what it is for (ARCHITECTURE.md's code map relies
/// on them).
#[test]
fn every_source_file_says_what_it_is_for() {
    fn visit(dir: &std::path::Path, missing: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                visit(&path, missing);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if !text.starts_with("//!") {
                    missing.push(path.display().to_string());
                }
            }
        }
    }
    let mut missing = Vec::new();
    for dir in ["src", "tests", "bench", "fuzz/fuzz_targets"] {
        visit(&repo_root().join(dir), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "files without a //! module comment: {missing:?}"
    );
}
