//! Deploy tools zbot can install itself: Fabric 1 (fab-classic, pinned) into a venv in the data
//! directory, when a recipe runs `fab` and none is on PATH. `[deploy] provision_fabric = false` turns
//! this off.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tokio::sync::Mutex;

use super::log::LogSender;

/// The Fabric 1 release zbot installs.
pub const FAB_CLASSIC: &str = "fab-classic==1.21.0";

/// The first `program` on `PATH`, if any.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One installation at a time.
static INSTALLING: Mutex<()> = Mutex::const_new(());

/// `fab` from `<data_dir>/tools/fabric`, installing it first if needed. Progress goes to the deploy log.
pub async fn fabric(data_dir: &Path, log: &LogSender) -> Result<PathBuf, String> {
    let venv = data_dir.join("tools/fabric");
    let fab = venv.join("bin/fab");
    let _guard = INSTALLING.lock().await;
    if fab.is_file() {
        return Ok(fab);
    }
    let python = on_path("python3").ok_or("fab is not installed and python3 is not on PATH to install it: install Fabric 1 (pip install fab-classic)")?;
    log.note(format!(
        "fab is not on PATH: installing {FAB_CLASSIC} into {} (once)…",
        venv.display()
    ))
    .await;
    tracing::info!(
        venv = %venv.display(),
        "installing {FAB_CLASSIC} for the fabric recipe (first time only, takes a few seconds)"
    );
    run(
        &python,
        &["-m", "venv", &venv.display().to_string()],
        "python3 -m venv (is python3-venv installed?)",
    )
    .await?;
    let pip = venv.join("bin/pip");
    run(
        &pip,
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            FAB_CLASSIC,
        ],
        "pip install",
    )
    .await?;
    log.note("fab-classic installed").await;
    Ok(fab)
}

async fn run(program: &Path, args: &[&str], what: &str) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot install Fabric: {what} did not start: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "cannot install Fabric: {what} failed: {}",
            stderr.trim().lines().last().unwrap_or_default()
        ))
    }
}
