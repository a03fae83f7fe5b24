//! Helpers shared by the test modules: running the zbot binary.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built `zbot` binary with `args` in `dir`, with `env` added.
pub fn zbot(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zbot"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("ZBOT_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the zbot binary runs")
}

/// Runs `command` with `input` on its stdin, capturing its stdout and stderr.
pub fn piped(mut command: Command, input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// PATH with the test Fabric 1 first, as an operator's would have Fabric installed.
pub fn path_with_fab() -> String {
    let fab_dir = crate::harness::fab()
        .parent()
        .unwrap()
        .display()
        .to_string();
    format!("{fab_dir}:{}", std::env::var("PATH").unwrap_or_default())
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The repository root, where bot.toml and commands/ live.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
