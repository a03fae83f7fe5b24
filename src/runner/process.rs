//! Runs one deploy program: its own process group, stdin from /dev/null, a clean environment, output
//! streamed line by line into the log, and a timeout or cancel that ends the whole group.
//!
//! Ending a group is SIGTERM, then SIGKILL after a grace period. A deploy ends when its program exits:
//! whatever it left behind in its group is killed then, and so are the processes of the deploy that
//! left the group ([`escaped`](super::escaped)), each named in the log, unless the recipe keeps them
//! (`keep_children`). Output still arriving [`OUTPUT_GRACE`] after the program's exit is dropped with
//! a line in the log, so a process that holds the pipes open cannot hold the deploy.
//!
//! With a store shared by several instances, a guard ([`guard`], zbot re-run as `zbot guard`) runs
//! beside the group, fed heartbeats over a pipe until this instance's local lease deadline: when
//! zbot dies, is paused or stops feeding it, the guard kills the group, so a deploy never outlives
//! the lease another instance may take over.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::escaped::{self, Ending};
use super::log::{LogSender, Stream};
use crate::recipe::Invocation;
use crate::reply::{self, LeftBehind};

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
    /// Its guard killed it: this zbot did not renew its lease in time (starved or cut off from the
    /// store), whatever the program was doing.
    StoppedByGuard,
}

/// A line longer than this is written in pieces, so one endless line cannot grow memory.
const MAX_LINE: usize = 64 * 1024;

/// How long a group gets between SIGTERM and SIGKILL; also the processes a deploy left outside it.
pub const GRACE: Duration = Duration::from_secs(5);

/// How long after the program's exit its output is still written to the log. Past it, what processes
/// it left running print is read and dropped (so they do not die of a closed pipe).
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

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
    /// Given to every process of the deploy (`ZBOT_DEPLOYMENT_ID`, `ZBOT_DATA_DIR`): how those that
    /// leave its process group are found, also by a zbot started after a crash.
    pub marks: &'a escaped::Marks,
    pub extra_env: &'a [(String, String)],
    pub timeout: Duration,
    /// The recipe's `keep_children`: processes outside the group are left running at the end.
    pub keep_children: bool,
    /// Holds a reason once the run must stop.
    pub cancel: watch::Receiver<Option<String>>,
    pub log: &'a LogSender,
    /// Told the process group id once the program started.
    pub started: oneshot::Sender<u32>,
    /// With a shared store: the guard that kills the group once this zbot stops holding its lease.
    pub guard: Option<GuardSpec>,
}

/// What a deploy's guard ([`guard`]) is fed: heartbeats until `deadline` (this instance's local lease
/// deadline, moved on by each renewal), and how long a silence it takes for loss.
#[derive(Debug)]
pub struct GuardSpec {
    pub deadline: watch::Receiver<tokio::time::Instant>,
    /// A quarter of the lease: with the local deadline at half the lease after the last renewal's
    /// start, the group is dead three quarters of a lease after it, before another instance may take
    /// the deploy over.
    pub silence: Duration,
}

/// The signals a deploy's guard ignores: those a terminal (Ctrl-C, Ctrl-Z, a hang-up, background
/// reads and writes) or a kill of zbot's process group sends.
pub const GUARD_IGNORES: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// The guard's exit code after it killed the group (0: released, nothing killed).
pub const GUARD_KILLED: u8 = 3;

/// The byte that tells the guard the deploy ended under this zbot's watch: it exits, killing nothing.
const RELEASE: u8 = b'x';
/// A heartbeat.
const BEAT: u8 = b'.';

/// The zbot binary, run as `zbot guard`: set by `zbot run` at start (`/proc/self/exe`, which names the
/// running binary even after a package upgrade replaced or removed its file), and by tests that embed
/// zbot. Unset, a deploy that needs a guard (a shared store) does not run.
static GUARD_PROGRAM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Names the zbot binary that guards deploys (`zbot run` calls it once, at start).
pub fn set_guard_program(program: std::path::PathBuf) {
    let _ = GUARD_PROGRAM.set(program);
}

fn guard_program() -> Option<std::path::PathBuf> {
    GUARD_PROGRAM.get().cloned()
}

/// A running guard: the `zbot guard` process and the task feeding it.
struct Guard {
    child: tokio::process::Child,
    stdin: std::sync::Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>,
    feeder: JoinHandle<()>,
    /// The guard leaves zbot's process group, so the orphan reaper would take it for an orphan once
    /// it exits and reap it before `release` waits for its exit code: registered like a deploy's
    /// leader until then.
    _registered: escaped::Leader,
}

impl Guard {
    /// Starts `zbot guard <group> <silence ms>` with `program` and feeds it heartbeats until the spec's
    /// deadline; why not when it cannot be started.
    fn start(
        program: &Path,
        spec: GuardSpec,
        group: i32,
        marks: &escaped::Marks,
    ) -> Result<Guard, String> {
        let mut command = Command::new(program);
        command
            .arg("guard")
            .arg(group.to_string())
            .arg(spec.silence.as_millis().to_string())
            .args(marks.guard_args())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        let (mut child, registered) = match escaped::spawn_leader(&mut command) {
            Ok(spawned) => spawned,
            Err(e) => return Err(reply::guard_not_started(&e.to_string())),
        };
        let Some(stdin) = child.stdin.take() else {
            return Err(reply::guard_not_started("no pipe to it"));
        };
        let stdin = std::sync::Arc::new(tokio::sync::Mutex::new(stdin));
        let feeder = tokio::spawn(feed(spec, std::sync::Arc::clone(&stdin)));
        Ok(Guard {
            child,
            stdin,
            feeder,
            _registered: registered,
        })
    }

    /// The deploy ended under this zbot's watch: the guard exits without killing anything. True if
    /// it had killed the group already (it exited [`GUARD_KILLED`]).
    async fn release(mut self) -> bool {
        use tokio::io::AsyncWriteExt;
        self.feeder.abort();
        let _ = self.stdin.lock().await.write_all(&[RELEASE]).await;
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await,
            Ok(Ok(status)) if status.code() == Some(i32::from(GUARD_KILLED))
        )
    }
}

/// Writes a heartbeat every third of the silence until the local deadline; past it (the lease was not
/// renewed in time) the guard hears nothing more.
async fn feed(
    mut spec: GuardSpec,
    stdin: std::sync::Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>,
) {
    use tokio::io::AsyncWriteExt;
    loop {
        let until = *spec.deadline.borrow_and_update();
        let now = tokio::time::Instant::now();
        if now >= until {
            if spec.deadline.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            continue;
        }
        if stdin.lock().await.write_all(&[BEAT]).await.is_err() {
            return;
        }
        tokio::time::sleep_until((now + spec.silence / 3).min(until)).await;
    }
}

/// `zbot guard <group> <silence ms>`: a deploy's guard, a process of its own beside zbot, so it runs
/// on when zbot dies or is paused. It reads heartbeats on stdin and kills process group `group`
/// (SIGKILL) when stdin ends (zbot died) or no heartbeat came for `silence` (zbot is paused, or stopped
/// feeding it because its lease was not renewed in time); a release byte ends it quietly. Blocks;
/// returns the exit code: 0 released, [`GUARD_KILLED`] after killing. With the deploy's `marks` it
/// then kills every process carrying them too (those that left the group), since no instance on
/// this machine may be left to do it.
///
/// It leaves zbot's session and process group first and ignores the signals a terminal or a group
/// kill sends (INT, TERM, HUP, TSTP, TTIN, TTOU): Ctrl-C, Ctrl-Z or `kill -TERM -<zbot's group>` must
/// not stop or kill the guard while the deploy's group runs on.
pub fn guard(group: i32, silence: Duration, marks: Option<&escaped::Marks>) -> u8 {
    // SAFETY: setsid and signal take no pointers; SIG_IGN is a valid disposition for these signals.
    unsafe {
        libc::setsid();
        for signal in GUARD_IGNORES {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut byte = [0u8; 1];
        loop {
            match stdin.read(&mut byte) {
                Ok(1) => {
                    if tx.send(byte[0]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // End of input: zbot is gone.
                _ => return,
            }
        }
    });
    loop {
        match rx.recv_timeout(silence) {
            Ok(RELEASE) => return 0,
            Ok(_) => {}
            Err(why) => {
                signal_group(group, libc::SIGKILL);
                let escaped = marks.map_or(0, escaped::kill_carrying);
                let why = match why {
                    std::sync::mpsc::RecvTimeoutError::Timeout => {
                        format!("no heartbeat for {silence:?}")
                    }
                    std::sync::mpsc::RecvTimeoutError::Disconnected => "zbot ended".to_string(),
                };
                eprintln!(
                    "zbot guard: {why}: killed the deploy's process group {group}, whose lease this zbot no longer holds, and {escaped} process(es) of the deploy outside it"
                );
                return GUARD_KILLED;
            }
        }
    }
}

/// Runs the program until it exits, the timeout passes or `cancel` holds a reason; then deals with
/// what it left running and with its output, within [`OUTPUT_GRACE`] (or [`GRACE`] for processes
/// that ignore SIGTERM).
pub async fn run(run: Run<'_>) -> Exit {
    let Run {
        invocation,
        dir,
        marks,
        extra_env,
        timeout,
        keep_children,
        mut cancel,
        log,
        started,
        guard,
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
        .envs(marks.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // A deploy that must be guarded (a shared store) does not run without its guard.
    let guard_with = match guard {
        Some(spec) => match guard_program() {
            Some(program) => Some((program, spec)),
            None => return Exit::NotStarted(reply::guard_not_started("no zbot binary to run it")),
        },
        None => None,
    };
    tracing::trace!(program = %invocation.program, "the program starts");
    let (mut child, leader) = match escaped::spawn_leader(&mut command) {
        Ok(spawned) => spawned,
        Err(e) => return Exit::NotStarted(format!("cannot start {}: {e}", invocation.program)),
    };
    // The child leads its own group, so its pid is the group id.
    let group_id = child.id().and_then(|pid| i32::try_from(pid).ok());
    if let Some(pid) = child.id() {
        let _ = started.send(pid);
    }
    let guard = match (guard_with, group_id) {
        (Some((program, spec)), Some(group)) => match Guard::start(&program, spec, group, marks) {
            Ok(guard) => Some(guard),
            Err(why) => {
                signal_group(group, libc::SIGKILL);
                let _ = child.wait().await;
                drop(leader);
                return Exit::NotStarted(why);
            }
        },
        _ => None,
    };
    let (cut, cut_rx) = watch::channel(false);
    let readers: Vec<JoinHandle<()>> = [
        child
            .stdout
            .take()
            .map(|out| read_pipe(out, Stream::Stdout, log.clone(), cut_rx.clone())),
        child
            .stderr
            .take()
            .map(|err| read_pipe(err, Stream::Stderr, log.clone(), cut_rx.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();

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
    // Whatever the deploy left in its group goes with it, named in the log like those outside it.
    let in_group = if stopped.is_none() {
        escaped::in_group(marks, group).await
    } else {
        Vec::new()
    };
    signal_group(group, libc::SIGKILL);
    for process in &in_group {
        log.note(reply::left_in_group(&process.to_string())).await;
    }
    let guard_killed = match guard {
        Some(guard) => guard.release().await,
        None => false,
    };
    let status = child.wait().await;
    drop(leader);
    let ended = tokio::time::Instant::now();
    let exit = match (stopped, status) {
        (Some(stopped), _) => stopped,
        (None, _) if guard_killed => Exit::StoppedByGuard,
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
    // The deploy has ended. Its processes outside the group are stopped (or kept) while the output
    // they may hold open gets its grace; the log says what became of them after the last output.
    let left_behind = async {
        if keep_children {
            escaped::outside_group(marks, group)
                .await
                .into_iter()
                .map(|process| (process, LeftBehind::Kept))
                .collect()
        } else {
            stop_left_behind(marks, group).await
        }
    };
    let output_dropped = async {
        let mut all = std::pin::pin!(async {
            for reader in readers {
                let _ = reader.await;
            }
        });
        let open = tokio::time::timeout_at(ended + OUTPUT_GRACE, &mut all)
            .await
            .is_err();
        if open {
            let _ = cut.send(true);
            all.await;
        }
        open
    };
    let (left_behind, output_dropped) = tokio::join!(left_behind, output_dropped);
    for (process, ending) in left_behind {
        log.note(reply::left_behind(&process.to_string(), ending, GRACE))
            .await;
    }
    if output_dropped {
        log.note(reply::output_dropped(OUTPUT_GRACE)).await;
    }
    exit
}

/// Stops the processes of the deploy outside `group`; what became of each.
async fn stop_left_behind(
    marks: &escaped::Marks,
    group: i32,
) -> Vec<(escaped::Process, LeftBehind)> {
    let stopped = escaped::stop(marks, Some(group), GRACE).await;
    stopped
        .into_iter()
        .map(|stopped| {
            let ending = match stopped.ending {
                Ending::Terminated => LeftBehind::Stopped,
                Ending::Killed => LeftBehind::Killed,
                Ending::Survived => LeftBehind::StillRunning,
            };
            tracing::warn!(
                deployment = %marks.deployment_id(),
                pid = stopped.process.pid,
                ?ending,
                "stopped a process the deploy left outside its process group"
            );
            (stopped.process, ending)
        })
        .collect()
}

/// Kills what is left of a deploy a previous zbot ran in group `group`, if that group still holds a
/// process of the deploy (after a reboot the number may belong to someone else). Returns whether it
/// killed.
pub async fn kill_leftover_group(group: i32, marks: &escaped::Marks) -> bool {
    let found = escaped::group_of_deploy(group, marks).await;
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

/// Reads a pipe of the deploy in its own task: into the log until its end or until `cut`, then (if
/// something still holds it open) into nothing, in a task of its own.
fn read_pipe<P>(
    pipe: P,
    stream: Stream,
    log: LogSender,
    cut: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    P: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Some(rest) = forward(pipe, stream, log, cut).await {
            tokio::spawn(async move {
                let mut rest = rest;
                let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
            });
        }
    })
}

/// Copies lines from a pipe into the log until its end (`None`) or until `cut` turns true (the pipe,
/// still open; a line being read then is dropped).
async fn forward<P: AsyncRead + Unpin>(
    pipe: P,
    stream: Stream,
    log: LogSender,
    mut cut: watch::Receiver<bool>,
) -> Option<P> {
    let mut reader = BufReader::with_capacity(MAX_LINE, pipe);
    let mut cut = std::pin::pin!(async move {
        if cut.wait_for(|cut| *cut).await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    loop {
        let mut line = Vec::new();
        let read = tokio::select! {
            biased;
            () = &mut cut => return Some(reader.into_inner()),
            read = read_line(&mut reader, &mut line) => read,
        };
        match read {
            Ok(Read::End) | Err(_) => return None,
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
        let (writer, log) = LogWriter::create(&path, redactor, chrono_tz::Tz::UTC)
            .await
            .unwrap();
        let never_cut = watch::channel(false).1;
        forward(output, Stream::Stdout, log, never_cut).await;
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
