//! Every stock recipe against its real tool: Fabric 1 (fab-classic), Fabric 2, Capistrano 3, Ansible
//! and a `script/deploy`. Each table renders hostile refs, tasks and host limits through the shipped
//! recipe, runs the tool on a small app whose tasks record what they were given and for which host, and
//! checks those records: a value arrives exactly as typed, the task asked for is the one that runs, a
//! host limit runs on exactly the named hosts (and, where the tool can tell, only on those of the
//! environment), or the deploy is refused before anything runs, with the sentence a person reads.
//!
//! The apps run locally: hosts are names in the tool's own roledefs, stages or inventory, and a task
//! "runs on" a host by recording that host, without connecting to it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use zbot::recipe::{Recipe, Recipes};

use crate::harness;
use crate::support::repo_root;

/// A deploy as asked: values as typed, parsed into zbot's domain types as its edges do.
#[derive(Debug, Clone, Copy)]
struct Ask {
    git_ref: &'static str,
    task: &'static str,
    environment: &'static str,
    hosts: Option<&'static str>,
}

const fn ask(git_ref: &'static str, task: &'static str, hosts: Option<&'static str>) -> Ask {
    Ask {
        git_ref,
        task,
        environment: "staging",
        hosts,
    }
}

/// What happened: refused by zbot (at its edge or by the recipe, with the sentence), or run, with the
/// tool's exit code, its output and the records its tasks wrote, by host.
#[derive(Debug)]
enum Happened {
    Refused(String),
    Ran {
        code: Option<i32>,
        output: String,
        records: BTreeMap<String, Value>,
    },
}

/// What a case expects.
enum Expect {
    /// zbot refuses; the sentence contains this.
    Refused(&'static str),
    /// The tool succeeds, and its tasks record these (by host).
    Records(Vec<(&'static str, Value)>),
    /// The tool fails with this in its output, and no task ran.
    ToolFails(&'static str),
}

/// A small app in a temporary directory, whose tasks write one JSON record per host into `records`.
struct App {
    dir: tempfile::TempDir,
    records: PathBuf,
    recipe: Recipe,
    program: PathBuf,
}

impl App {
    /// `files` are written with `{records}` replaced by the records directory.
    fn new(recipe: &str, program: PathBuf, files: &[(&str, &str, bool)]) -> App {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("records");
        for (name, content, executable) in files {
            let path = dir.path().join("app").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(
                &path,
                content.replace("{records}", &records.display().to_string()),
            )
            .unwrap();
            if *executable {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let recipes = Recipes::load_dir(&repo_root().join("commands")).unwrap();
        App {
            dir,
            records,
            recipe: recipes.get(recipe).unwrap().clone(),
            program,
        }
    }

    fn app_dir(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    /// Renders the shipped recipe for `ask` and runs it as the runner does: its argv, its environment
    /// added to a clean one, in the app's tree.
    fn run(&self, ask: Ask) -> Happened {
        let _ = std::fs::remove_dir_all(&self.records);
        std::fs::create_dir_all(&self.records).unwrap();
        let invocation = match crate::recipes::render_task(
            &self.recipe,
            ask.git_ref,
            ask.task,
            ask.environment,
            ask.hosts,
        ) {
            Ok(invocation) => invocation,
            Err(sentence) => return Happened::Refused(sentence),
        };
        let program = if invocation.program.starts_with("./") {
            self.app_dir().join(&invocation.program)
        } else {
            self.program.clone()
        };
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let out = Command::new(program)
            .args(&invocation.args)
            .current_dir(self.app_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("LANG", "C.UTF-8")
            .envs(invocation.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(&self.records).unwrap() {
            let path = entry.unwrap().path();
            let host = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let record: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("record {}: {e}: {text}", path.display()));
            records.insert(host, record);
        }
        Happened::Ran {
            code: out.status.code(),
            output: format!(
                "$ {} {:?}\n{}{}",
                invocation.program,
                invocation.args,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            records,
        }
    }

    /// Runs every case and reports every mismatch at once.
    fn check(&self, cases: Vec<(Ask, Expect)>) {
        let mut wrong = Vec::new();
        for (ask, expect) in cases {
            let happened = self.run(ask);
            let ok = match (&expect, &happened) {
                (Expect::Refused(part), Happened::Refused(sentence)) => sentence.contains(part),
                (
                    Expect::Records(expected),
                    Happened::Ran {
                        code: Some(0),
                        records,
                        ..
                    },
                ) => {
                    let expected: BTreeMap<String, Value> = expected
                        .iter()
                        .map(|(host, record)| (host.to_string(), record.clone()))
                        .collect();
                    *records == expected
                }
                (
                    Expect::ToolFails(part),
                    Happened::Ran {
                        code: Some(code),
                        output,
                        records,
                    },
                ) => *code != 0 && output.contains(part) && records.is_empty(),
                _ => false,
            };
            if !ok {
                let expected = match &expect {
                    Expect::Refused(part) => format!("refused, saying {part:?}"),
                    Expect::Records(records) => format!("records {records:?}"),
                    Expect::ToolFails(part) => format!("the tool fails, saying {part:?}"),
                };
                wrong.push(format!(
                    "{} {ask:?}\n  expected {expected}\n  got {happened:#?}",
                    self.recipe.name
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }
}

/// Refs a person may type that mean something inside a tool's arguments, or to a shell.
const HOSTILE_REFS: &[&str] = &[
    "hotfix,urgent",
    "rel=2",
    "v1,host=prod1",
    "a=b,roles=production",
    "x,exclude_hosts=web1",
    "release+1@%#",
];

/// Refs zbot refuses at its edge, before any recipe sees them: `:` and `\` are not in git refs.
const REFUSED_REFS: &[(&str, &str)] = &[
    ("deploy:host=prod1", "`:` is not allowed in a ref"),
    ("a\\,b", "`\\` is not allowed in a ref"),
    ("$(reboot)", "`$` is not allowed in a ref"),
];

/// The cases every tool shares: hostile refs arrive as typed on every host of the environment, and
/// refs zbot refuses never reach the tool.
fn ref_cases(
    hosts: &[&'static str],
    record: impl Fn(&str, &str, &str) -> Value,
) -> Vec<(Ask, Expect)> {
    let mut cases = Vec::new();
    for git_ref in HOSTILE_REFS {
        cases.push((
            ask(git_ref, "deploy", None),
            Expect::Records(
                hosts
                    .iter()
                    .map(|h| (*h, record(h, "deploy", git_ref)))
                    .collect(),
            ),
        ));
    }
    for (git_ref, sentence) in REFUSED_REFS {
        cases.push((ask(git_ref, "deploy", None), Expect::Refused(sentence)));
    }
    cases
}

/// A Fabric 1 app: roles `staging` (web1, web2) and `production` (prod1); `deploy` is the default task
/// of the `deploy` namespace, `deploy.migrate` another. Each records its arguments, host and roles.
const FABRIC1_APP: &[(&str, &str, bool)] = &[
    (
        "fabfile/__init__.py",
        "from fabric.api import env\nfrom . import deploy\n\
         env.roledefs = {'staging': ['web1', 'web2'], 'production': ['prod1']}\n",
        false,
    ),
    (
        "fabfile/deploy.py",
        r#"import json
from fabric.api import env, task

def record(name, args, kwargs):
    with open('{records}/%s.json' % env.host_string, 'w') as f:
        json.dump({'task': name, 'args': list(args), 'kwargs': kwargs, 'roles': env.roles}, f)

@task(default=True)
def deploy(*args, **kwargs):
    record('deploy', args, kwargs)

@task
def migrate(*args, **kwargs):
    record('deploy.migrate', args, kwargs)
"#,
        false,
    ),
];

fn fabric1_record(_host: &str, task: &str, git_ref: &str) -> Value {
    json!({"task": task, "args": [], "kwargs": {"branch_name": git_ref}, "roles": ["staging"]})
}

#[test]
fn fabric1_gets_values_tasks_and_hosts_as_asked() {
    let app = App::new("fabric", harness::fab(), FABRIC1_APP);
    let mut cases = ref_cases(&["web1", "web2"], fabric1_record);
    let r = fabric1_record;
    cases.extend([
        (
            ask("v0.0.1", "deploy:migrate", None),
            Expect::Records(vec![
                ("web1", r("web1", "deploy.migrate", "v0.0.1")),
                ("web2", r("web2", "deploy.migrate", "v0.0.1")),
            ]),
        ),
        (
            ask("hotfix,urgent", "deploy", Some("web1")),
            Expect::Records(vec![("web1", r("web1", "deploy", "hotfix,urgent"))]),
        ),
        (
            ask("v1,hosts=prod1", "deploy:migrate", Some("web2")),
            Expect::Records(vec![(
                "web2",
                r("web2", "deploy.migrate", "v1,hosts=prod1"),
            )]),
        ),
        (
            ask("v0.0.1", "deploy", Some("web1,web2")),
            Expect::Records(vec![
                ("web1", r("web1", "deploy", "v0.0.1")),
                ("web2", r("web2", "deploy", "v0.0.1")),
            ]),
        ),
        // Fabric 1 cannot tell whether a host is in the role: a named host is the host it runs on.
        (
            ask("v0.0.1", "deploy", Some("prod1")),
            Expect::Records(vec![("prod1", r("prod1", "deploy", "v0.0.1"))]),
        ),
        (
            ask("v0.0.1", "deploy", Some("web1;x")),
            Expect::Refused("`;` is not allowed"),
        ),
        (
            ask("v0.0.1", "nosuch", None),
            Expect::ToolFails("Command(s) not found:\n    nosuch"),
        ),
    ]);
    app.check(cases);
}

/// What the escaping must get right beyond what a git ref can hold: values with `\` before, after and
/// instead of Fabric's separators, written by the `fabric1_arg` filter and read back by the real `fab`.
#[test]
fn fabric1_reads_back_every_escape() {
    use zbot::recipe::syntax::{Quote, Unrepresentable, Value as V};
    let app = App::new("fabric", harness::fab(), FABRIC1_APP);
    let values = [
        "a,b=c",
        "\\",
        "a\\b",
        "a\\,b",
        "a\\=b",
        "a\\\\,b\\\\=c",
        ",=\\,\\=",
        "end\\",
    ];
    for value in values {
        let last = Quote::Fabric1Arg
            .write(&V::Text(value.into()), None)
            .unwrap();
        // Before a `,`, a value ending in `\` cannot be written: Fabric would read `\,` as an escape.
        let (word, expected) = match Quote::Fabric1Arg.write(&V::Text(value.into()), Some(',')) {
            Ok(first) => (
                format!("deploy:first={first},last={last}"),
                json!({"first": value, "last": value}),
            ),
            Err(why) => {
                assert!(value.ends_with('\\'), "{value:?}: {why:?}");
                assert_eq!(why, Unrepresentable::TrailingBackslash { before: ',' });
                (format!("deploy:last={last}"), json!({"last": value}))
            }
        };
        let _ = std::fs::remove_dir_all(&app.records);
        std::fs::create_dir_all(&app.records).unwrap();
        let out = Command::new(&app.program)
            .args(["--abort-on-prompts", "-H", "web1", &word])
            .current_dir(app.app_dir())
            .env("PYTHONWARNINGS", "ignore")
            .output()
            .unwrap();
        assert!(out.status.success(), "{word}: {out:?}");
        let record: Value =
            serde_json::from_str(&std::fs::read_to_string(app.records.join("web1.json")).unwrap())
                .unwrap();
        assert_eq!(record["kwargs"], expected, "{word}");
    }
}

/// A Fabric 2 app: `deploy` (default) and `migrate` in a `deploy` namespace, and `db_setup`.
const FABRIC2_APP: &[(&str, &str, bool)] = &[(
    "fabfile.py",
    r#"import json, os
from fabric import task
from invoke import Collection

def record(c, name, branch_name):
    host = getattr(c, 'host', None) or 'local'
    with open('{records}/%s.json' % host, 'w') as f:
        json.dump({'task': name, 'ref': branch_name, 'environment': os.environ.get('ZBOT_ENVIRONMENT_NAME')}, f)

@task
def deploy(c, branch_name='master'):
    record(c, 'deploy', branch_name)

@task
def migrate(c, branch_name='master'):
    record(c, 'deploy.migrate', branch_name)

@task
def db_setup(c, branch_name='master'):
    record(c, 'db_setup', branch_name)

ns = Collection()
namespace = Collection('deploy')
namespace.add_task(deploy, default=True)
namespace.add_task(migrate)
ns.add_collection(namespace)
ns.add_task(db_setup)
"#,
    false,
)];

fn fabric2_record(_host: &str, task: &str, git_ref: &str) -> Value {
    json!({"task": task, "ref": git_ref, "environment": "staging"})
}

#[test]
fn fabric2_gets_values_tasks_and_hosts_as_asked() {
    let app = App::new("fabric2", harness::fab2(), FABRIC2_APP);
    let mut cases = ref_cases(&["local"], fabric2_record);
    let r = fabric2_record;
    cases.extend([
        (
            ask("v0.0.1", "deploy:migrate", None),
            Expect::Records(vec![("local", r("local", "deploy.migrate", "v0.0.1"))]),
        ),
        (
            ask("v0.0.1", "db_setup", None),
            Expect::Records(vec![("local", r("local", "db_setup", "v0.0.1"))]),
        ),
        (
            ask("rel=2", "deploy", Some("web1")),
            Expect::Records(vec![("web1", r("web1", "deploy", "rel=2"))]),
        ),
        (
            ask("v0.0.1", "deploy:migrate", Some("web1,web2")),
            Expect::Records(vec![
                ("web1", r("web1", "deploy.migrate", "v0.0.1")),
                ("web2", r("web2", "deploy.migrate", "v0.0.1")),
            ]),
        ),
        (
            ask("v0.0.1", "nosuch", None),
            Expect::ToolFails("No idea what 'nosuch' is!"),
        ),
    ]);
    app.check(cases);
}

/// A Capistrano 3 app with a local stage: `staging` has web1, web2 and web_3, `production` prod1;
/// `deploy` runs on every server, `deploy:migrate` on the `db` role (web1).
const CAPISTRANO_APP: &[(&str, &str, bool)] = &[
    (
        "Capfile",
        r#"require "capistrano/setup"
require "json"

def record(host, task)
  File.write("{records}/#{host.hostname}.json",
             { task: task, ref: ENV["BRANCH"], environment: fetch(:stage).to_s }.to_json)
end

task :deploy do
  on(roles(:all)) { |host| record(host, "deploy") }
end

namespace :deploy do
  task :migrate do
    on(roles(:db)) { |host| record(host, "deploy:migrate") }
  end
end
"#,
        false,
    ),
    (
        "config/deploy.rb",
        "set :application, \"adxstat\"\nset :scm, nil\n",
        false,
    ),
    (
        "config/deploy/staging.rb",
        "server \"web1\", roles: %w[app db]\nserver \"web2\", roles: %w[app]\n\
         server \"web_3\", roles: %w[app]\n",
        false,
    ),
    (
        "config/deploy/production.rb",
        "server \"prod1\", roles: %w[app db]\n",
        false,
    ),
];

fn capistrano_record(_host: &str, task: &str, git_ref: &str) -> Value {
    json!({"task": task, "ref": git_ref, "environment": "staging"})
}

#[test]
fn capistrano_gets_values_tasks_and_hosts_as_asked() {
    let app = App::new("capistrano", harness::cap(), CAPISTRANO_APP);
    let mut cases = ref_cases(&["web1", "web2", "web_3"], capistrano_record);
    let r = capistrano_record;
    cases.extend([
        (
            ask("v0.0.1", "deploy:migrate", None),
            Expect::Records(vec![("web1", r("web1", "deploy:migrate", "v0.0.1"))]),
        ),
        (
            ask("rel=2", "deploy", Some("web1")),
            Expect::Records(vec![("web1", r("web1", "deploy", "rel=2"))]),
        ),
        (
            ask("v0.0.1", "deploy", Some("web2,web1")),
            Expect::Records(vec![
                ("web1", r("web1", "deploy", "v0.0.1")),
                ("web2", r("web2", "deploy", "v0.0.1")),
            ]),
        ),
        // `web_3` is a regular expression to Capistrano, `web` would match every host as one: zbot
        // writes names it matches exactly.
        (
            ask("v0.0.1", "deploy", Some("web_3")),
            Expect::Records(vec![("web_3", r("web_3", "deploy", "v0.0.1"))]),
        ),
        (
            ask("v0.0.1", "deploy", Some("web")),
            Expect::Records(vec![]),
        ),
        // `all` alone is every host to Capistrano; here it is a host of that name, and there is none.
        (
            ask("v0.0.1", "deploy", Some("all")),
            Expect::Records(vec![]),
        ),
        // The filter applies to the stage's servers: a host of another stage is never deployed to.
        (
            ask("v0.0.1", "deploy", Some("prod1")),
            Expect::Records(vec![]),
        ),
        (
            ask("v0.0.1", "deploy", Some("web1,prod1")),
            Expect::Records(vec![("web1", r("web1", "deploy", "v0.0.1"))]),
        ),
        (
            ask("v0.0.1", "nosuch", None),
            Expect::ToolFails("Don't know how to build task 'nosuch'"),
        ),
    ]);
    app.check(cases);
}

/// An Ansible app: inventory groups `staging` (web1, web2) and `production` (prod1), every host local;
/// the play runs on the environment's group and records the extra variables it was given.
const ANSIBLE_APP: &[(&str, &str, bool)] = &[
    (
        "ansible/hosts",
        "[staging]\nweb1\nweb2\n\n[production]\nprod1\n\n[all:vars]\nansible_connection=local\n\
         ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n",
        false,
    ),
    (
        "ansible/site.yml",
        r#"- hosts: "{{ zbot_environment }}"
  gather_facts: false
  tasks:
    - name: record what this host was given
      ansible.builtin.copy:
        dest: "{records}/{{ inventory_hostname }}.json"
        content: "{{ {'task': zbot_task, 'ref': zbot_deploy_ref, 'environment': zbot_environment, 'sha': zbot_deploy_sha} | to_json }}"
"#,
        false,
    ),
];

fn ansible_record(_host: &str, task: &str, git_ref: &str) -> Value {
    json!({"task": task, "ref": git_ref, "environment": "staging",
           "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"})
}

#[test]
fn ansible_gets_values_tasks_and_hosts_as_asked() {
    let app = App::new("ansible", harness::ansible_playbook(), ANSIBLE_APP);
    // Each run of ansible-playbook takes a second or two: the hostile refs go through one case with
    // every kind of character rather than one run each.
    let r = ansible_record;
    let cases = vec![
        (
            ask("a=b,c@d%e+f#g", "deploy:migrate", None),
            Expect::Records(vec![
                ("web1", r("web1", "deploy:migrate", "a=b,c@d%e+f#g")),
                ("web2", r("web2", "deploy:migrate", "a=b,c@d%e+f#g")),
            ]),
        ),
        (
            ask("x,zbot_environment=production", "deploy", Some("web1")),
            Expect::Records(vec![(
                "web1",
                r("web1", "deploy", "x,zbot_environment=production"),
            )]),
        ),
        (
            ask("v0.0.1", "deploy", Some("web1,prod1")),
            Expect::Records(vec![("web1", r("web1", "deploy", "v0.0.1"))]),
        ),
        // Outside the environment, or unknown: Ansible says there is no host to run on.
        (
            ask("v0.0.1", "deploy", Some("prod1")),
            Expect::ToolFails("no hosts to target"),
        ),
        (
            ask("v0.0.1", "deploy", Some("web9")),
            Expect::ToolFails("no hosts to target"),
        ),
        // A group name is no host: `all` would be every host of the environment.
        (
            ask("v0.0.1", "deploy", Some("web1,all")),
            Expect::Refused(
                "Refused to run recipe ansible: the hosts `web1,all` cannot be given to Ansible as \
                 typed: Ansible reads `all` as a group of hosts, not as one host",
            ),
        ),
        (
            ask("deploy:host=prod1", "deploy", None),
            Expect::Refused("`:` is not allowed in a ref"),
        ),
    ];
    app.check(cases);
}

/// A `script/deploy` that records the variables it was given.
const SHELL_APP: &[(&str, &str, bool)] = &[(
    "script/deploy",
    "#!/bin/sh\nprintf '{\"task\": \"%s\", \"ref\": \"%s\", \"environment\": \"%s\"}' \
     \"$DEPLOY_TASK\" \"$BRANCH\" \"$DEPLOY_ENV\" > {records}/local.json\n",
    true,
)];

fn shell_record(_host: &str, task: &str, git_ref: &str) -> Value {
    json!({"task": task, "ref": git_ref, "environment": "staging"})
}

#[test]
fn a_deploy_script_gets_values_as_asked_and_a_host_limit_is_refused() {
    let app = App::new("shell", PathBuf::new(), SHELL_APP);
    let mut cases = ref_cases(&["local"], shell_record);
    cases.extend([
        (
            ask("v0.0.1", "deploy:migrate", None),
            Expect::Records(vec![(
                "local",
                shell_record("local", "deploy:migrate", "v0.0.1"),
            )]),
        ),
        (
            ask("v0.0.1", "deploy", Some("web1")),
            Expect::Refused(
                "Refused to run recipe shell: it cannot limit a deploy to some hosts (the recipe \
                 has no {hosts})",
            ),
        ),
    ]);
    app.check(cases);
}

/// The whole path, as a person meets it: a deployment of `deploy:migrate` limited to web1, with a ref
/// Fabric would have split, runs the fabfile's migrate task on web1 only and ends `success`; one that
/// the recipe cannot pass on ends `error` with the sentence, and nothing runs.
#[tokio::test]
async fn a_deployment_runs_the_task_on_the_named_hosts_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    std::fs::create_dir_all(&records).unwrap();
    let github = crate::fakes::github::FakeGitHub::start().await;
    let repo = harness::TestRepo::new(dir.path());
    let files: Vec<(&str, String, bool)> = FABRIC1_APP
        .iter()
        .map(|(name, content, x)| {
            (
                *name,
                content.replace("{records}", &records.display().to_string()),
                *x,
            )
        })
        .collect();
    let files: Vec<(&str, &str, bool)> =
        files.iter().map(|(n, c, x)| (*n, c.as_str(), *x)).collect();
    let sha = repo.commit(&files, "hotfix,urgent");
    let config = harness::config_text(&github, &repo, "provider = \"fabric\"", "");
    let zbot = harness::start_zbot(dir.path(), &config).await;
    let deadline = std::time::Duration::from_secs(60);

    let event = harness::deployment_event(
        3001,
        "hotfix,urgent",
        &sha,
        "staging",
        "deploy:migrate",
        json!({"hosts": "web1"}),
    );
    let (status, body) = harness::deliver(zbot.addr, "deployment", "d-3001", &event).await;
    assert_eq!(status, 202, "{body}");
    let last = github.final_status(3001, deadline).await;
    assert_eq!(last.state, "success", "{last:?}");
    let ran: Vec<String> = std::fs::read_dir(&records)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ran, ["web1.json"]);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(records.join("web1.json")).unwrap()).unwrap();
    assert_eq!(
        record,
        fabric1_record("web1", "deploy.migrate", "hotfix,urgent")
    );
    std::fs::remove_file(records.join("web1.json")).unwrap();

    // The shell recipe cannot limit hosts: refused, nothing runs.
    let config = harness::config_text(&github, &repo, "provider = \"shell\"", "");
    zbot.stop().await.unwrap();
    let zbot = harness::start_zbot(dir.path(), &config).await;
    let event = harness::deployment_event(
        3002,
        "hotfix,urgent",
        &sha,
        "staging",
        "deploy",
        json!({"hosts": "web1"}),
    );
    let (status, body) = harness::deliver(zbot.addr, "deployment", "d-3002", &event).await;
    assert_eq!(status, 202, "{body}");
    let last = github.final_status(3002, deadline).await;
    assert_eq!(last.state, "error", "{last:?}");
    assert!(
        last.description
            .starts_with("Refused to run recipe shell: it cannot limit a deploy to some hosts"),
        "{}",
        last.description
    );
    assert_eq!(std::fs::read_dir(&records).unwrap().count(), 0);
    zbot.stop().await.unwrap();
}
