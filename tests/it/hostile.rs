//! Deployments from GitHub that must not run: values that do not validate, environments the app does not
//! have, repositories no app deploys. Anyone with write access to a repository can create a deployment
//! with any values through GitHub's REST API, and GitHub delivers it signed; zbot must refuse it with an
//! `error` status that says why, touch nothing on disk, and keep deploying the good ones.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use zbot::events::Event;

use crate::fakes::github::FakeGitHub;
use crate::harness::{TestRepo, config_text, deployment_event, start_zbot};

const DEADLINE: Duration = Duration::from_secs(60);

/// A fabfile whose deploy leaves a mark in `marks`, so a test can tell whether any recipe ran.
fn marking_fabfile(marks: &Path) -> String {
    format!(
        r#"from fabric.api import env, local, task
env.roledefs = {{'production': ['localhost'], 'staging': ['localhost']}}

@task
def deploy(branch_name='master'):
    with open('{}', 'a') as marks:
        marks.write('ran %s\n' % branch_name)
"#,
        marks.display()
    )
}

/// Files beside and above the working trees that no deployment may remove.
const CANARIES: &[&str] = &[
    "canary.txt",
    "data/canary.txt",
    "data/work/canary.txt",
    "data/work/adxstat/canary.txt",
    "data/repos/canary.txt",
];

fn plant(dir: &Path) {
    for canary in CANARIES {
        let path = dir.join(canary);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "still here").unwrap();
    }
}

fn canaries_intact(dir: &Path, case: &str) {
    for canary in CANARIES {
        let path = dir.join(canary);
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("still here"),
            "{case}: {} was removed or changed",
            path.display()
        );
    }
    assert!(
        dir.join("data/zbot.sqlite").exists(),
        "{case}: the database is gone"
    );
}

struct Case {
    name: &'static str,
    /// Changes the fixture event.
    edit: fn(&mut Value),
    /// The final status description must contain this.
    reason: &'static str,
}

fn set(event: &mut Value, pointer: &str, value: Value) {
    *event.pointer_mut(pointer).unwrap() = value;
}

#[tokio::test]
async fn hostile_deployments_are_refused_with_a_reason_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("recipe-ran.txt");
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", &marking_fabfile(&marks), false)], "v0.0.1");
    let config = config_text(&github, &repo, "provider = \"fabric\"", "");
    let zbot = start_zbot(dir.path(), &config).await;
    let mut events = zbot.events.subscribe();
    plant(dir.path());

    let cases = [
        Case {
            name: "environment ..",
            edit: |e| set(e, "/deployment/environment", json!("..")),
            reason: "`..` is not an environment name",
        },
        Case {
            name: "environment ../..",
            edit: |e| set(e, "/deployment/environment", json!("../..")),
            reason: "`/` is not allowed in an environment name",
        },
        Case {
            name: "environment a/../..",
            edit: |e| set(e, "/deployment/environment", json!("a/../..")),
            reason: "`/` is not allowed in an environment name",
        },
        Case {
            name: "an environment the app does not list",
            edit: |e| set(e, "/deployment/environment", json!("qa")),
            reason: "`qa` is not one of adxstat's environments: production, staging",
        },
        Case {
            name: "a 300-character environment",
            edit: |e| set(e, "/deployment/environment", json!("e".repeat(300))),
            reason: "an environment name has at most 255 characters",
        },
        Case {
            name: "an environment with a newline",
            edit: |e| set(e, "/deployment/environment", json!("production\nstaging")),
            reason: "an environment name cannot contain control characters",
        },
        Case {
            name: "an option-like ref",
            edit: |e| set(e, "/deployment/ref", json!("--upload-pack=touch")),
            reason: "starts with `-`",
        },
        Case {
            name: "an option-like sha",
            edit: |e| set(e, "/deployment/sha", json!("--upload-pack=touch")),
            reason: "is not allowed in a commit sha",
        },
        Case {
            name: "a non-hex sha",
            edit: |e| set(e, "/deployment/sha", json!("z".repeat(40))),
            reason: "`z` is not allowed in a commit sha",
        },
        Case {
            name: "a task with ;",
            edit: |e| set(e, "/deployment/task", json!("deploy;reboot")),
            reason: "`;` is not allowed in a task",
        },
        Case {
            name: "hosts beginning with -",
            edit: |e| {
                set(
                    e,
                    "/deployment/payload",
                    json!({"hosts": "web1,-oProxyCommand"}),
                )
            },
            reason: "must start with a letter or a digit",
        },
        Case {
            name: "a chat alias from GitHub (to GitHub `prod` is not `production`)",
            edit: |e| set(e, "/deployment/environment", json!("prod")),
            reason: "`prod` is not one of adxstat's environments: production, staging",
        },
        Case {
            name: "a missing sha",
            edit: |e| set(e, "/deployment/sha", Value::Null),
            reason: "a commit sha is missing",
        },
        Case {
            name: "an environment that is not text",
            edit: |e| set(e, "/deployment/environment", json!(["production"])),
            reason: "an environment name is not text",
        },
        Case {
            name: "hosts that are not text",
            edit: |e| set(e, "/deployment/payload", json!({"hosts": ["web1", "-x"]})),
            reason: "the deployment payload has `hosts` that are not text",
        },
        Case {
            name: "a payload that is not JSON",
            edit: |e| set(e, "/deployment/payload", json!("{hosts: web1")),
            reason: "the deployment payload is text that is not a JSON object",
        },
        Case {
            name: "a payload naming an app zbot does not have",
            edit: |e| set(e, "/deployment/payload", json!({"name": "other"})),
            reason: "no app named `other` in bot.toml",
        },
        Case {
            name: "an unconfigured repository",
            edit: |e| set(e, "/repository/full_name", json!("octo/other")),
            reason: "no app in zbot's bot.toml deploys octo/other",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let id = 7000 + i as u64;
        let mut event = deployment_event(id, "v0.0.1", &sha, "production", "deploy", json!({}));
        (case.edit)(&mut event);
        let (status, answer) = github.deliver_deployment(zbot.addr, &event).await;
        assert_eq!(status, 422, "{}: {answer}", case.name);
        let last = github.final_status(id, DEADLINE).await;
        assert_eq!(last.state, "error", "{}: {last:?}", case.name);
        assert!(
            last.description.contains(case.reason),
            "{}: the status says {:?}",
            case.name,
            last.description
        );
        assert_eq!(
            github.states(id),
            ["error"],
            "{}: nothing started",
            case.name
        );
        // Chat hears of it (the default channel), with the same reason.
        let refusal = tokio::time::timeout(DEADLINE, async {
            loop {
                if let Ok(Event::Refused(r)) = events.recv().await
                    && r.deployment_id.0 == id
                {
                    return r;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}: chat was not told", case.name));
        assert_eq!(refusal.deployment_id.0, id);
        canaries_intact(dir.path(), case.name);
        assert!(
            !marks.exists(),
            "{}: a recipe ran: {:?}",
            case.name,
            std::fs::read_to_string(&marks)
        );
        // A redelivery of the same refused deployment is answered the same, and said once.
        let (status, _) = github.deliver_deployment(zbot.addr, &event).await;
        assert_eq!(status, 422, "{}: redelivery", case.name);
    }
    assert_eq!(
        github
            .all_statuses()
            .iter()
            .filter(|s| s.state == "error")
            .count(),
        cases.len(),
        "each refusal is posted once"
    );

    // An ordinary deploy right after still succeeds.
    let event = deployment_event(7999, "v0.0.1", &sha, "production", "deploy", json!({}));
    let (status, answer) = github.deliver_deployment(zbot.addr, &event).await;
    assert_eq!(status, 202, "{answer}");
    let last = github.final_status(7999, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "ran v0.0.1\n",
        "the good deploy ran, alone"
    );
    canaries_intact(dir.path(), "after the good deploy");
    zbot.stop().await.unwrap();
}

/// GitHub compares environment names case-insensitively: a deployment to `Production` is the app's
/// `production`, runs there (named as configured), and meets the lock held on `production`.
#[tokio::test]
async fn an_environment_in_another_case_is_the_same_environment_and_meets_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("recipe-ran.txt");
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("fabfile.py", &marking_fabfile(&marks), false)], "v0.0.1");
    let config = config_text(&github, &repo, "provider = \"fabric\"", "");
    let zbot = start_zbot(dir.path(), &config).await;

    let event = deployment_event(7101, "v0.0.1", &sha, "Production", "deploy", json!({}));
    let (status, answer) = github.deliver_deployment(zbot.addr, &event).await;
    assert_eq!(status, 202, "{answer}");
    let last = github.final_status(7101, DEADLINE).await;
    assert_eq!(last.state, "success", "{last:?}");
    assert!(
        last.description.contains("to production in"),
        "{}",
        last.description
    );
    assert!(dir.path().join("data/work/adxstat/production").is_dir());
    assert!(!dir.path().join("data/work/adxstat/Production").exists());

    // alice locks production (Heaven's deploy:lock task); bob's deployment to PRODUCTION meets it.
    let payload = json!({"notify": {"user": "U0ALICE"}, "reason": "migrating"});
    let lock = deployment_event(7102, "v0.0.1", &sha, "production", "deploy:lock", payload);
    let lock = crate::harness::by(lock, "alice");
    assert_eq!(github.deliver_deployment(zbot.addr, &lock).await.0, 202);
    assert_eq!(github.final_status(7102, DEADLINE).await.state, "success");
    let payload = json!({"notify": {"user": "U0BOB"}});
    let blocked = deployment_event(7103, "v0.0.1", &sha, "PRODUCTION", "deploy", payload);
    let blocked = crate::harness::by(blocked, "bob");
    assert_eq!(github.deliver_deployment(zbot.addr, &blocked).await.0, 202);
    let last = github.final_status(7103, DEADLINE).await;
    assert_eq!(last.state, "error", "{last:?}");
    assert!(
        last.description
            .contains("locked on production by github:alice"),
        "{}",
        last.description
    );
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "ran v0.0.1\n",
        "only the first deploy ran"
    );
    zbot.stop().await.unwrap();
}
