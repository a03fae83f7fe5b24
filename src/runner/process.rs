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
use tokio::sync::{oneshot, watch};

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

/// What to run and how.
pub struct Run<'a> {
    pub invocation: &'a Invocation,
    pub dir: &'a Path,
    pub extra_env: &'a [(String, String)],
    pub timeout: Duration,
    /// Holds a reason once the run must stop.
    pub cancel: watch::Receiver<Option<String>>,
    pub log: &'a LogSender,
    /// Told the process group id once the program started.
    pub started: oneshot::Sender<u32>,
}

/// Runs the program until it exits, the timeout passes or `cancel` holds a reason.
pub async fn run(run: Run<'_>) -> Exit {
    let Run {
        invocation,
        dir,
        extra_env,
        timeout,
        mut cancel,
        log,
        started,
    } = run;
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
    if let Some(pid) = child.id() {
        let _ = started.send(pid);
    }
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
    // The leader's exit is watched without reaping it: while it is a zombie its pid stays reserved,
    // so signalling the group afterwards cannot hit another process that was given the same number.
    let Some(pid) = child.id() else {
        return Exit::NotStarted(format!(
            "{} exited before it could be watched",
            invocation.program
        ));
    };
    let mut leader_exited = tokio::task::spawn_blocking(move || wait_without_reaping(pid));
    let stopped = tokio::select! {
        _ = &mut leader_exited => None,
        _ = tokio::time::sleep(timeout) => Some(Exit::TimedOut(timeout)),
        _ = cancelled => Some(Exit::Cancelled),
    };
    let group = pid as i32;
    if stopped.is_some() {
        signal_group(group, libc::SIGTERM);
        if tokio::time::timeout(GRACE, &mut leader_exited)
            .await
            .is_err()
        {
            log.note(format!(
                "still running {}s after SIGTERM: sending SIGKILL",
                GRACE.as_secs()
            ))
            .await;
        }
    }
    // Whatever the deploy left in its group goes with it.
    signal_group(group, libc::SIGKILL);
    let status = child.wait().await;
    let exit = match (stopped, status) {
        (Some(stopped), _) => stopped,
        (None, Ok(status)) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        },
        (None, Err(e)) => Exit::NotStarted(format!("lost track of {}: {e}", invocation.program)),
    };
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

/// Kills what is left of a deploy a previous zbot ran, if group `group` still holds a process of
/// that deploy: after a reboot the number may belong to someone else, so the deploy's
/// `ZBOT_DEPLOYMENT_ID` must be in a member's environment. Returns whether it killed.
pub fn kill_leftover_group(group: i32, deployment_id: crate::domain::DeploymentId) -> bool {
    let marker = format!("ZBOT_DEPLOYMENT_ID={deployment_id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let member_of_deploy = |pid: &str| {
        let in_group = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            // pgrp is the 3rd field after the parenthesised command name.
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(2))
                == Some(&group.to_string())
        });
        in_group
            && std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
    };
    let found = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .any(|pid| member_of_deploy(&pid));
    if found {
        signal_group(group, libc::SIGKILL);
    }
    found
}

/// Blocks until process `pid` has exited, leaving it to be reaped by its `Child`.
fn wait_without_reaping(pid: u32) {
    loop {
        // SAFETY: waitid writes only into `info`, which lives on this stack frame.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let result =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if result == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Sends `signal` to a process group; a group that no longer exists is not an error.
pub fn signal_group(group: i32, signal: i32) {
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
            Ok(Read::End) | Err(_) => return,
            Ok(Read::Line) => log.line(stream, line).await,
            Ok(Read::Part) => log.part(stream, line).await,
        }
    }
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// A whole line: up to and including `\n`, or the last bytes before the end.
    Line,
    /// [`MAX_LINE`] bytes of a line that goes on.
    Part,
    /// Nothing: the pipe is at its end.
    End,
}

/// Reads up to and including `\n`, or [`MAX_LINE`] bytes, whichever comes first.
async fn read_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    out: &mut Vec<u8>,
) -> std::io::Result<Read> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if out.is_empty() {
                Read::End
            } else {
                Read::Line
            });
        }
        let room = MAX_LINE - out.len();
        let newline = available.iter().take(room).position(|&b| b == b'\n');
        let take = newline.map_or(available.len().min(room), |i| i + 1);
        out.extend_from_slice(&available[..take]);
        reader.consume(take);
        if newline.is_some() {
            return Ok(Read::Line);
        }
        if out.len() == MAX_LINE {
            return Ok(Read::Part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::log::LogWriter;
    use crate::secret::{Redactor, Secret};

    const TOKEN: &str = "ghp_PLANTEDtoken0123456789abcdef";

    /// The texts the log holds after `output` came through a pipe: one per log line.
    async fn logged(output: &[u8]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let redactor = Redactor::new(&[Secret::new(TOKEN)]);
        let (writer, log) = LogWriter::create(&path, redactor).await.unwrap();
        forward(output, Stream::Stdout, log).await;
        writer.finish().await.unwrap();
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| l.split_once(" out | ").unwrap().1.to_string())
            .collect()
    }

    #[tokio::test]
    async fn read_line_cuts_long_lines_and_says_so() {
        let mut output = vec![b'x'; MAX_LINE + 5];
        output.extend_from_slice(b"\nlast without newline");
        let mut reader = BufReader::new(output.as_slice());
        let mut reads = Vec::new();
        loop {
            let mut piece = Vec::new();
            match read_line(&mut reader, &mut piece).await.unwrap() {
                Read::End => break,
                read => reads.push((read, piece.len())),
            }
        }
        assert_eq!(
            reads,
            [
                (Read::Part, MAX_LINE),
                (Read::Line, 6),
                (Read::Line, "last without newline".len())
            ]
        );
    }

    /// A token at every offset around the cuts of a long line: the log holds the line redacted as if
    /// it had never been cut, so no part of the token is in it.
    #[tokio::test]
    async fn a_token_across_the_cut_of_a_long_line_is_redacted_at_every_offset() {
        for cut in [MAX_LINE, 2 * MAX_LINE] {
            for before in cut - TOKEN.len() - 1..=cut + 1 {
                let line = format!("{}{TOKEN}{}\n", "x".repeat(before), "y".repeat(10));
                let texts = logged(line.as_bytes()).await;
                assert_eq!(
                    texts.concat(),
                    format!("{}***{}", "x".repeat(before), "y".repeat(10)),
                    "token at {before}"
                );
                assert!(texts.len() > 1, "the line was cut");
                assert!(
                    texts.iter().all(|t| t.len() < MAX_LINE + TOKEN.len()),
                    "pieces stay bounded"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_character_across_the_cut_is_not_broken() {
        for before in MAX_LINE - 4..=MAX_LINE {
            let line = format!("{}é😀 done\n", "x".repeat(before));
            let texts = logged(line.as_bytes()).await;
            assert_eq!(texts.concat(), line.trim_end(), "character at {before}");
        }
    }
}
