//! Runs one deploy program: its own process group, stdin from /dev/null, a clean environment, output
//! streamed line by line into the log, and a timeout or cancel that ends the whole group.
//!
//! Ending a group is SIGTERM, then SIGKILL after a grace period. When the program exits on its own,
//! whatever it left behind in its group is killed too: a deploy's processes do not outlive it, and its
//! pipes close so the log is complete.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use super::log::{LogSender, Stream};
use crate::recipe::Invocation;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The program exited with this code.
    Code(i32),
    /// The program was killed by this signal (not by zbot).
    Signal(i32),
    TimedOut(Duration),
    Cancelled,
    /// The program could not be started.
    NotStarted(String),
}

/// A line longer than this is written in pieces, so one endless line cannot grow memory.
const MAX_LINE: usize = 64 * 1024;

/// How long a group gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// The environment every deploy gets, besides the recipe's own variables and `ZBOT_*`.
fn base_environment() -> Vec<(String, String)> {
    let inherit = |name: &str, default: &str| {
        (
            name.to_string(),
            std::env::var(name).unwrap_or_else(|_| default.to_string()),
        )
    };
    vec![
        inherit("PATH", "/usr/local/bin:/usr/bin:/bin"),
        inherit("HOME", "/"),
        inherit("LANG", "C.UTF-8"),
    ]
}

/// Runs `invocation` in `dir` with `extra_env`, until it exits, `timeout` passes or `cancel` holds a reason.
pub async fn run(
    invocation: &Invocation,
    dir: &Path,
    extra_env: &[(String, String)],
    timeout: Duration,
    mut cancel: watch::Receiver<Option<String>>,
    log: &LogSender,
) -> Exit {
    // A relative program with a slash (`./script/deploy`) is the repository's own file.
    let program = if invocation.program.contains('/') && !invocation.program.starts_with('/') {
        dir.join(&invocation.program).display().to_string()
    } else {
        invocation.program.clone()
    };
    let mut command = Command::new(&program);
    command
        .args(&invocation.args)
        .current_dir(dir)
        .env_clear()
        .envs(base_environment())
        .envs(invocation.env.iter().cloned())
        .envs(extra_env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Exit::NotStarted(format!("cannot start {}: {e}", invocation.program)),
    };
    // The child leads its own group, so its pid is the group id.
    let group = child.id().map(|pid| pid as i32);
    let readers = [
        child
            .stdout
            .take()
            .map(|out| tokio::spawn(forward(out, Stream::Stdout, log.clone()))),
        child
            .stderr
            .take()
            .map(|err| tokio::spawn(forward(err, Stream::Stderr, log.clone()))),
    ];

    let cancelled = async {
        while cancel.borrow_and_update().is_none() {
            if cancel.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let exit = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Code(-1),
            },
            Err(e) => Exit::NotStarted(format!("lost track of {}: {e}", invocation.program)),
        },
        _ = tokio::time::sleep(timeout) => Exit::TimedOut(timeout),
        _ = cancelled => Exit::Cancelled,
    };
    if let Some(group) = group {
        if matches!(exit, Exit::TimedOut(_) | Exit::Cancelled) {
            signal_group(group, libc::SIGTERM);
            if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                log.note(format!(
                    "still running {}s after SIGTERM: sending SIGKILL",
                    GRACE.as_secs()
                ))
                .await;
            }
        }
        signal_group(group, libc::SIGKILL);
    }
    let _ = child.wait().await;
    for reader in readers.into_iter().flatten() {
        // A process that left the group (setsid) could hold a pipe open; do not wait for it forever.
        if tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .is_err()
        {
            log.note("output still open after the deploy ended; stopped reading it")
                .await;
        }
    }
    exit
}

fn signal_group(group: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a group that is already gone gives ESRCH, which is fine.
    unsafe {
        libc::killpg(group, signal);
    }
}

/// Copies lines from a pipe into the log.
async fn forward(pipe: impl AsyncRead + Unpin, stream: Stream, log: LogSender) {
    let mut reader = BufReader::with_capacity(MAX_LINE, pipe);
    loop {
        let mut line = Vec::new();
        match read_line(&mut reader, &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => log.line(stream, line).await,
        }
    }
}

/// Reads up to and including `\n`, or [`MAX_LINE`] bytes, whichever comes first; 0 at the end.
async fn read_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(out.len());
        }
        let room = MAX_LINE - out.len();
        let (take, done) = match available.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len().min(room), available.len() >= room),
        };
        out.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(out.len());
        }
    }
}
