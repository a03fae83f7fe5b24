//! The deployer test harness: a real git repository, the shipped recipes, a fake GitHub, zbot itself
//! (in this process, or as a child process for crash tests), and signed webhooks sent over loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::fakes::github::FakeGitHub;
use crate::support::repo_root;

/// A Fabric 1 fabfile whose `deploy` works locally.
pub const FABFILE: &str = r#"from fabric.api import env, local, task
env.roledefs = {'production': ['localhost'], 'staging': ['localhost']}

@task
def deploy(branch_name='master'):
    print("deploying %s to %s" % (branch_name, env.roles))
    local("echo local step for %s" % branch_name)
"#;

/// A fabfile whose `deploy` fails, printing markup that must arrive escaped in Slack.
pub const FAILING_FABFILE: &str = r#"from fabric.api import env, local, task
env.roledefs = {'production': ['localhost']}

@task
def deploy(branch_name='master'):
    print("about to migrate %s" % branch_name)
    local("echo 'migration 42 failed: <b>users</b> & co' >&2; exit 3")
"#;

pub use crate::fakes::wire::{SECRET, deliver, deployment_event, http, sign};
/// A token value the tests plant and then search for: it must never be printed.
pub const TOKEN: &str = "ghp_PLANTEDtoken0123456789abcdef";

/// Shell lines that wait (up to 30 s) until `file` exists: how test deploys are held and released.
pub fn wait_for_file(file: &std::path::Path) -> String {
    format!(
        "i=0\nwhile [ ! -e {} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.05; done\n",
        file.display()
    )
}

/// Waits until `done` holds, or fails the test after `deadline`. For what no event announces: a file
/// a deploy script writes, a process the kernel removes once it is reaped.
pub async fn wait_until(what: &str, deadline: std::time::Duration, mut done: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut every = tokio::time::interval(std::time::Duration::from_millis(20));
    while !done() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        every.tick().await;
    }
}

/// A `script/deploy` that says "holding", waits for `release` to exist, and says "released".
pub fn held_deploy_script(release: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\necho holding\n{}echo released\n",
        wait_for_file(release)
    )
}

/// Runs git in `dir`, panicking with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "zbot tests")
        .env("GIT_AUTHOR_EMAIL", "tests@zbot.invalid")
        .env("GIT_COMMITTER_NAME", "zbot tests")
        .env("GIT_COMMITTER_EMAIL", "tests@zbot.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git repository the deployments come from.
pub struct TestRepo {
    pub path: PathBuf,
}

impl TestRepo {
    pub fn new(dir: &Path) -> TestRepo {
        let path = dir.join("adxstat");
        std::fs::create_dir_all(&path).unwrap();
        git(&path, &["init", "--quiet", "--initial-branch=main"]);
        TestRepo { path }
    }

    /// Writes files (path, content, executable), commits them, tags the commit; returns its sha.
    pub fn commit(&self, files: &[(&str, &str, bool)], tag: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        for (name, content, executable) in files {
            let file = self.path.join(name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, content).unwrap();
            let mode = if *executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        git(&self.path, &["add", "--all"]);
        git(
            &self.path,
            &["commit", "--quiet", "--allow-empty", "-m", tag],
        );
        git(&self.path, &["tag", tag]);
        git(&self.path, &["rev-parse", "HEAD"])
    }

    pub fn clone_url(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

/// A program on `PATH`, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A deploy tool the tests run for real: `venv/bin/name` in the repository (made by `.ci/run`), else
/// one on `PATH`; a missing tool fails the test saying what installs it.
fn tool(venv: Option<&str>, name: &str, what: &str) -> PathBuf {
    if let Some(venv) = venv {
        let path = repo_root().join(venv).join("bin").join(name);
        if path.exists() {
            return path;
        }
    }
    on_path(name).unwrap_or_else(|| {
        panic!("{what} is not installed: `bash .ci/run` installs it ({name} not found)")
    })
}

/// The Fabric 1 `fab` the tests run: `.venv/bin/fab` (fab-classic, made by `.ci/run`), else one on PATH.
pub fn fab() -> PathBuf {
    tool(Some(".venv"), "fab", "Fabric 1 (fab-classic)")
}

/// Fabric 2+'s `fab`: `.venv-fabric2/bin/fab`, its own virtualenv since it clashes with fab-classic's.
pub fn fab2() -> PathBuf {
    let venv = repo_root().join(".venv-fabric2/bin/fab");
    assert!(
        venv.exists(),
        "Fabric 2 is not installed: `bash .ci/run` installs it into .venv-fabric2"
    );
    venv
}

/// `ansible-playbook` from `.venv-ansible` (or PATH).
pub fn ansible_playbook() -> PathBuf {
    tool(
        Some(".venv-ansible"),
        "ansible-playbook",
        "Ansible (ansible-core)",
    )
}

/// Capistrano 3's `cap` (Debian's `capistrano` package).
pub fn cap() -> PathBuf {
    tool(None, "cap", "Capistrano (Debian's capistrano package)")
}

/// The program a shipped recipe runs, as the tests have it: an absolute path for the tools installed
/// into virtualenvs; `None` leaves the recipe's own.
fn test_program(recipe: &str) -> Option<PathBuf> {
    let venv = |path: &str| Some(repo_root().join(path)).filter(|p| p.exists());
    match recipe {
        "fabric.toml" => Some(fab()),
        "fabric2.toml" => venv(".venv-fabric2/bin/fab"),
        "ansible.toml" => venv(".venv-ansible/bin/ansible-playbook"),
        _ => None,
    }
}

/// Copies the shipped recipes into `dir/commands`, with each Python tool as an absolute path.
pub fn install_recipes(dir: &Path) {
    let commands = dir.join("commands");
    std::fs::create_dir_all(&commands).unwrap();
    for entry in std::fs::read_dir(repo_root().join("commands")).unwrap() {
        let entry = entry.unwrap();
        let mut text = std::fs::read_to_string(entry.path()).unwrap();
        if let Some(program) = test_program(&entry.file_name().to_string_lossy()) {
            let name = program.file_name().unwrap().to_string_lossy().into_owned();
            text = text.replace(
                &format!("program = \"{name}\""),
                &format!("program = \"{}\"", program.display()),
            );
        }
        std::fs::write(commands.join(entry.file_name()), text).unwrap();
    }
}

/// A bot.toml for tests: GitHub is the fake, the app deploys `repo`.
pub fn config_text(github: &FakeGitHub, repo: &TestRepo, extra_app: &str, deploy: &str) -> String {
    format!(
        r#"[bot]
data_dir = "data"

[github]
token = "{TOKEN}"
api_url = "{github}"

[webhook]
listen = "127.0.0.1:0"
secret = "{SECRET}"

[deploy]
work_dir = "data/work"
recipes_dir = "commands"
{deploy}

[apps.adxstat]
repository = "octo/adxstat"
clone_url = "{clone}"
environments = ["production", "staging"]
environment_urls = {{ production = "https://adxstat.example.com" }}
{extra_app}
"#,
        github = github.url(),
        clone = repo.clone_url(),
    )
}

/// Renames `table` of the SQLite store in `dir`'s `data/zbot.sqlite` to `<table>_gone` under a running
/// zbot, as in a damaged database: zbot's next read of it fails.
pub async fn lose_table(dir: &Path, table: &str) {
    use sqlx::Connection;
    let database = dir.join("data/zbot.sqlite");
    let mut db = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&database),
    )
    .await
    .unwrap();
    sqlx::query(&format!("ALTER TABLE {table} RENAME TO {table}_gone"))
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
}

/// Makes the zbot binary the guard of the deploys a zbot embedded in this test process runs on a
/// shared store (without it they would not run, as `zbot run` without its own binary).
pub fn embedded_guard() {
    zbot::runner::process::set_guard_program(env!("CARGO_BIN_EXE_zbot").into());
}

/// zbot started in this process on a port of its own.
pub async fn start_zbot(dir: &Path, config: &str) -> zbot::app::Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    embedded_guard();
    let path = dir.join("bot.toml");
    std::fs::write(&path, config).unwrap();
    install_recipes(dir);
    let config = zbot::config::Config::load(&path).unwrap_or_else(|p| panic!("test config: {p:?}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    zbot::app::start(config, Some(listener))
        .await
        .expect("zbot starts")
}

/// zbot started with `config` in `dir`, with the fake GitHub's webhooks pointed at it and its
/// Socket Mode connection to the fake Slack up.
pub async fn start_chat_zbot(
    dir: &Path,
    config: &str,
    github: &FakeGitHub,
    slack: &crate::fakes::slack::FakeSlack,
    repo: &TestRepo,
) -> zbot::app::Running {
    let zbot = start_zbot(dir, config).await;
    github.send_webhooks_to(crate::fakes::github::WebhookTarget {
        zbot: zbot.addr,
        repo: repo.path.clone(),
    });
    slack
        .wait_for("zbot to connect", std::time::Duration::from_secs(60), |s| {
            (s.connections() > 0).then_some(())
        })
        .await;
    zbot
}

/// `event` as made on GitHub by `login` (its `creator`): who a GitHub deployment acts as.
pub fn by(mut event: Value, login: &str) -> Value {
    event["deployment"]["creator"]["login"] = json!(login);
    event
}

/// Sends a deployment and expects it accepted.
pub async fn deploy(addr: SocketAddr, id: u64, git_ref: &str, sha: &str, environment: &str) {
    let event = deployment_event(id, git_ref, sha, environment, "deploy", json!({}));
    let (status, body) = deliver(addr, "deployment", &format!("delivery-{id}"), &event).await;
    assert_eq!(status, 202, "{body}");
}

/// zbot as a child process (`zbot run`), for tests that kill it or measure it.
pub struct ZbotProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Everything zbot printed on stderr so far.
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ZbotProcess {
    /// Starts `zbot run` with `dir/bot.toml` and waits until it says where it listens.
    pub fn start(dir: &Path) -> ZbotProcess {
        ZbotProcess::start_with(dir, &[])
    }

    /// Starts `zbot run` with `dir/bot.toml` and `args` (`--instance-id …`).
    pub fn start_with(dir: &Path, args: &[&str]) -> ZbotProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_zbot"));
        command
            .args(["run", "--config"])
            .arg(dir.join("bot.toml"))
            .args(args);
        ZbotProcess::spawn(command)
    }

    /// Starts `command` (a `zbot run`) and waits until it says where it listens.
    pub fn spawn(mut command: Command) -> ZbotProcess {
        use std::io::BufRead;
        let mut child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("zbot starts");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next())
                {
                    let _ = addr_tx.send(addr.parse::<SocketAddr>().ok());
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
            let _ = addr_tx.send(None);
        });
        let addr = addr_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("zbot did not start:\n{}", output.lock().unwrap()));
        ZbotProcess {
            child,
            addr,
            output,
        }
    }

    /// Peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ZbotProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Writes `config` and the recipes into `dir`, as `start_zbot` does, without starting zbot.
pub fn prepare_dir(dir: &Path, config: &str) {
    std::fs::write(dir.join("bot.toml"), config).unwrap();
    install_recipes(dir);
}

/// zbot as a child process deploying a repository with `files`; `extra_app` goes into the app's table.
pub async fn setup_process(
    dir: &tempfile::TempDir,
    files: &[(&str, &str, bool)],
    extra_app: &str,
) -> (FakeGitHub, String, ZbotProcess) {
    let github = FakeGitHub::start().await;
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(files, "v0.0.1");
    prepare_dir(dir.path(), &config_text(&github, &repo, extra_app, ""));
    let zbot = ZbotProcess::start(dir.path());
    (github, sha, zbot)
}

/// Alive and not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}
