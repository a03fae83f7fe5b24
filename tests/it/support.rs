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
