//! The processes a deploy leaves behind outside its process group (`setsid`, a double fork, `nohup`,
//! a process that moves to a group of its own), and the orphans zbot inherits as child subreaper.
//!
//! A deploy's processes are recognised by their [`Marks`], `ZBOT_DEPLOYMENT_ID=<id>` and
//! `ZBOT_DATA_DIR=<zbot's data directory>` in their environment as the kernel keeps it
//! (`/proc/<pid>/environ`): every process a deploy starts inherits them, whatever group or session it
//! moves to, and they are still there after zbot itself died and was started again. (The data
//! directory tells two zbots on one machine apart: their deployment numbers may meet.)
//! [`stop`] signals them (SIGTERM, then SIGKILL after a grace period) through a pidfd opened before
//! the process is checked again, so a number the kernel gave to another process meanwhile is never
//! signalled.
//!
//! zbot makes itself the child subreaper once at start ([`become_subreaper`]): a process whose parent
//! exits is re-parented to zbot instead of init, and zbot must reap it when it ends. [`watch_orphans`]
//! does so without taking an exit status a `Child` waits for: it reaps only zombies that are not in
//! zbot's own process group (where git and pip run, never moved out of it) and are not registered:
//! the leader of a running deploy, or a deploy's guard, which leaves zbot's group (each is registered
//! until its exit status is taken, [`spawn_leader`]).
//!
//! Reading `/proc` is Linux only: elsewhere nothing is found, nothing is adopted, and zbot says so once
//! in its own log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::DeploymentId;

/// The variable every process of a deploy carries; its value is the deployment id.
pub const DEPLOYMENT_VAR: &str = "ZBOT_DEPLOYMENT_ID";

/// The variable that says which zbot ran the deploy: its data directory.
pub const DATA_DIR_VAR: &str = "ZBOT_DATA_DIR";

/// How often the processes being stopped are looked at again.
const POLL: Duration = Duration::from_millis(50);

/// How long processes get to go after SIGKILL before they are reported as still running.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How often orphans are looked for without a SIGCHLD (signals of one kind coalesce).
const REAP_EVERY: Duration = Duration::from_secs(10);

/// The longest command line kept to name a process, in characters.
const COMMAND_CHARS: usize = 200;

/// A process, as the logs name it: `pid 4242 (sleep 600)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    /// Its command line, arguments separated by spaces and cut at [`COMMAND_CHARS`]; the kernel's
    /// short name in brackets when it has none.
    pub command: String,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
}

/// How a process [`stop`] found came to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It ended after SIGTERM, within the grace period.
    Terminated,
    /// It was still running after the grace period and got SIGKILL.
    Killed,
    /// It was still running [`KILL_WAIT`] after SIGKILL (stuck in the kernel, or not ours to signal).
    Survived,
}

/// A process [`stop`] found, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub process: Process,
    pub ending: Ending,
}

/// How one deploy's processes are recognised: the variables every one of them inherits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    deployment_id: DeploymentId,
    /// The data directory, made absolute, as text.
    data_dir: String,
}

impl Marks {
    /// The marks of deployment `deployment_id` run by the zbot whose data directory is `data_dir`.
    pub fn new(data_dir: &Path, deployment_id: DeploymentId) -> Marks {
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Marks {
            deployment_id,
            data_dir: data_dir.to_string_lossy().into_owned(),
        }
    }

    pub fn deployment_id(&self) -> DeploymentId {
        self.deployment_id
    }

    /// The variables the deploy's program is given.
    pub fn vars(&self) -> [(String, String); 2] {
        [
            (DEPLOYMENT_VAR.to_string(), self.deployment_id.to_string()),
            (DATA_DIR_VAR.to_string(), self.data_dir.clone()),
        ]
    }

    /// The arguments that give these marks to `zbot guard`.
    pub fn guard_args(&self) -> [String; 4] {
        [
            "--data-dir".to_string(),
            self.data_dir.clone(),
            "--deployment".to_string(),
            self.deployment_id.to_string(),
        ]
    }

    /// Whether a NUL-separated environment block carries both marks.
    fn found_in(&self, environ: &[u8]) -> bool {
        self.vars()
            .iter()
            .all(|(name, value)| has_var(environ, format!("{name}={value}").as_bytes()))
    }
}

/// Whether a NUL-separated environment block holds exactly the variable `marker` (`NAME=value`).
fn has_var(environ: &[u8], marker: &[u8]) -> bool {
    environ.split(|&b| b == 0).any(|var| var == marker)
}

/// The fields of `/proc/<pid>/stat` zbot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// `R`, `S`, `D`, `T`, `Z` (zombie: exited, not reaped), …
    state: char,
    ppid: i32,
    pgrp: i32,
    /// Clock ticks after boot; with the pid, it names one process for the machine's uptime.
    start_time: u64,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid pgrp session … starttime …`. The command name
/// may hold spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<(String, Stat)> {
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // starttime is field 22; state, ppid and pgrp were fields 3 to 5.
    let start_time = fields.nth(16)?.parse().ok()?;
    Some((
        comm,
        Stat {
            state,
            ppid,
            pgrp,
            start_time,
        },
    ))
}

/// A command line from `/proc/<pid>/cmdline` (NUL-separated), for a log line.
fn command_line(cmdline: &[u8], comm: &str) -> String {
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        return format!("[{comm}]");
    }
    let line = words.join(" ");
    match line.char_indices().nth(COMMAND_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// Whether a child of zbot is an orphan it inherited and may reap: exited (a zombie), not in zbot's
/// own process group (git and pip, whose `Child` reaps them), not registered (a deploy's leader or
/// guard).
fn is_orphan(stat: &Stat, own_pid: i32, own_group: i32, leader: bool) -> bool {
    stat.state == 'Z' && stat.ppid == own_pid && stat.pgrp != own_group && !leader
}

/// Reading `/proc`. A process that has gone reads as gone; any other failure to read (too many open
/// files in a busy zbot) is an error, never "no process".
mod procfs {
    use super::{Process, Stat, command_line, parse_stat};

    /// Whether reading a process's file failed because the process has gone.
    fn gone(e: &std::io::Error) -> bool {
        e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
    }

    /// The numbers of all processes (not threads) now.
    pub fn pids() -> std::io::Result<Vec<i32>> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            if let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// zbot's own children, every thread's (`/proc/self/task/*/children`): a few files rather than
    /// one per process on the machine. `None` where the kernel does not list them
    /// (`CONFIG_PROC_CHILDREN`). The kernel keeps no such list steady while children come and go, so
    /// one missed here is found by the next full look ([`pids`]).
    pub fn children() -> Option<Vec<i32>> {
        if !std::path::Path::new("/proc/thread-self/children").exists() {
            return None;
        }
        let mut pids = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            // A thread that ended meanwhile has no children left to list.
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(
                    text.split_whitespace()
                        .filter_map(|pid| pid.parse::<i32>().ok()),
                );
            }
        }
        Some(pids)
    }

    /// The process's command name and status; `None` once it has gone.
    pub fn stat(pid: i32) -> std::io::Result<Option<(String, Stat)>> {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(text) => Ok(parse_stat(&text)),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The environment the process started with; empty once it exited, or when not ours to read.
    pub fn environ(pid: i32) -> std::io::Result<Vec<u8>> {
        match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(environ) => Ok(environ),
            Err(e) if gone(&e) || e.kind() == std::io::ErrorKind::PermissionDenied => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    pub fn process(pid: i32, comm: &str) -> Process {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        Process {
            pid,
            command: command_line(&cmdline, comm),
        }
    }
}

/// One running process carrying a marker: its number and start time name it.
type Key = (i32, u64);

/// The live processes (not zombies) carrying `marks`, except zbot itself and the members of
/// `except_group`; an error when `/proc` could not be read.
fn carrying_now(marks: &Marks, except_group: Option<i32>) -> std::io::Result<Vec<(Key, Process)>> {
    if !cfg!(target_os = "linux") {
        return Ok(Vec::new());
    }
    let own = own_pid();
    let mut found = Vec::new();
    for pid in procfs::pids()? {
        if pid == own {
            continue;
        }
        let Some((comm, stat)) = procfs::stat(pid)? else {
            continue;
        };
        let live = !matches!(stat.state, 'Z' | 'X' | 'x');
        let outside = Some(stat.pgrp) != except_group;
        if live && outside && marks.found_in(&procfs::environ(pid)?) {
            found.push(((pid, stat.start_time), procfs::process(pid, &comm)));
        }
    }
    Ok(found)
}

/// How many times `/proc` is read before zbot gives up and says so, [`POLL`] apart.
const READ_TRIES: u32 = 20;

/// [`carrying_now`], read again while `/proc` cannot be read; after [`READ_TRIES`] the error is
/// logged (nothing can be found then) rather than taken for "no process".
async fn carrying(marks: &Marks, except_group: Option<i32>) -> Vec<(Key, Process)> {
    let mut tries = 0;
    loop {
        match carrying_now(marks, except_group) {
            Ok(found) => return found,
            Err(e) if tries + 1 < READ_TRIES => {
                tries += 1;
                tracing::warn!("cannot read /proc yet (trying again): {e}");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => {
                tracing::error!(
                    "cannot read /proc to find a deploy's processes (they may still run): {e}"
                );
                return Vec::new();
            }
        }
    }
}

/// SIGKILLs every process carrying `marks` (wherever it went: `setsid`, a double fork), again while
/// new ones appear, for `zbot guard`, which has no runtime and cannot wait on zbot. Returns how many
/// were killed; a `/proc` that cannot be read is read again, then said on stderr.
pub fn kill_carrying(marks: &Marks) -> usize {
    let mut killed = 0;
    let mut failures = 0;
    for _ in 0..READ_TRIES {
        match carrying_now(marks, None) {
            Ok(found) if found.is_empty() => return killed,
            Ok(found) => {
                for ((pid, _), _) in found {
                    // SAFETY: kill takes no pointers.
                    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                        killed += 1;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures + 1 == READ_TRIES {
                    eprintln!("zbot guard: cannot read /proc to find the deploy's processes: {e}");
                    return killed;
                }
            }
        }
        std::thread::sleep(POLL);
    }
    killed
}

/// The processes of the deploy `marks` names still running inside process group `group` (its leader
/// has exited and is a zombie, so it is not among them).
pub async fn in_group(marks: &Marks, group: i32) -> Vec<Process> {
    let outside: Vec<Key> = carrying(marks, Some(group))
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    carrying(marks, None)
        .await
        .into_iter()
        .filter(|(key, _)| !outside.contains(key))
        .map(|(_, p)| p)
        .collect()
}

/// The processes of the deploy `marks` names still running outside process group `group`.
pub async fn outside_group(marks: &Marks, group: i32) -> Vec<Process> {
    carrying(marks, Some(group))
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Whether process group `group` holds a process of the deploy `marks` names — its deployment id and
/// this zbot's data directory (after a reboot, or a long time, the number may name someone else's
/// group; and another instance on this machine, with its own data directory, stops its own deploys).
pub async fn group_of_deploy(group: i32, marks: &Marks) -> bool {
    carrying(marks, None).await.iter().any(|((pid, _), _)| {
        procfs::stat(*pid)
            .ok()
            .flatten()
            .is_some_and(|(_, stat)| stat.pgrp == group)
    })
}

/// Stops every process of the deploy `marks` names outside `except_group` (all of them with `None`):
/// SIGTERM (and SIGCONT, so a stopped one sees it), then SIGKILL to those still running after
/// `grace`. Processes they start meanwhile are found and stopped too. Those zbot inherited are reaped.
/// Returns each process found, in the order found, with how it ended.
pub async fn stop(marks: &Marks, except_group: Option<i32>, grace: Duration) -> Vec<Stopped> {
    let started = Instant::now();
    let mut found: BTreeMap<Key, (usize, Target)> = BTreeMap::new();
    let alive: BTreeSet<Key> = loop {
        let now = carrying(marks, except_group).await;
        if now.is_empty() {
            break BTreeSet::new();
        }
        let keys = now.iter().map(|(key, _)| *key).collect();
        let elapsed = started.elapsed();
        let signal = if elapsed >= grace {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        for (key, process) in now {
            let order = found.len();
            let (_, target) = found
                .entry(key)
                .or_insert_with(|| (order, Target::open(key, process)));
            target.send(signal);
        }
        if elapsed >= grace + KILL_WAIT {
            break keys;
        }
        tokio::time::sleep(POLL).await;
    };
    let mut stopped: Vec<(usize, Stopped)> = found
        .into_iter()
        .map(|(key, (order, target))| {
            let ending = if alive.contains(&key) {
                Ending::Survived
            } else if target.sent == Some(libc::SIGKILL) {
                Ending::Killed
            } else {
                Ending::Terminated
            };
            (
                order,
                Stopped {
                    process: target.process,
                    ending,
                },
            )
        })
        .collect();
    stopped.sort_by_key(|(order, _)| *order);
    let stopped: Vec<Stopped> = stopped.into_iter().map(|(_, s)| s).collect();
    if !stopped.is_empty() {
        reap_orphans_among(stopped.iter().map(|s| s.process.pid));
    }
    stopped
}

/// A process being stopped: signalled through a pidfd when the kernel has them.
struct Target {
    process: Process,
    handle: Handle,
    /// The last signal sent.
    sent: Option<i32>,
}

/// How a [`Target`] is signalled.
enum Handle {
    /// Opened, then the process checked again: it is the one found, not a later holder of its number.
    #[cfg(target_os = "linux")]
    Pidfd(std::os::fd::OwnedFd),
    /// By its number (no pidfds: not Linux, or a kernel before 5.3); it was found a moment ago.
    Number,
    /// It ended before it could be opened.
    #[cfg(target_os = "linux")]
    Gone,
}

impl Target {
    fn open(key: Key, process: Process) -> Target {
        #[cfg(target_os = "linux")]
        let handle = match sys::pidfd_open(key.0) {
            // The number may have been given to another process since it was found.
            Ok(pidfd)
                if procfs::stat(key.0)
                    .ok()
                    .flatten()
                    .is_some_and(|(_, stat)| stat.start_time == key.1) =>
            {
                Handle::Pidfd(pidfd)
            }
            Ok(_) => Handle::Gone,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Handle::Gone,
            // No pidfds here (ENOSYS), or none to be had just now (EMFILE, ENOMEM): by its number,
            // as without pidfds, rather than leave it running as if it were gone.
            Err(_) => Handle::Number,
        };
        #[cfg(not(target_os = "linux"))]
        let handle = {
            let _ = key;
            Handle::Number
        };
        Target {
            process,
            handle,
            sent: None,
        }
    }

    /// Sends `signal` unless it was the last one sent; SIGTERM comes with SIGCONT, so a stopped
    /// process sees it.
    fn send(&mut self, signal: i32) {
        if self.sent == Some(signal) {
            return;
        }
        self.sent = Some(signal);
        let signals: &[i32] = if signal == libc::SIGTERM {
            &[libc::SIGTERM, libc::SIGCONT]
        } else {
            &[signal]
        };
        for &signal in signals {
            match &self.handle {
                #[cfg(target_os = "linux")]
                Handle::Pidfd(pidfd) => sys::pidfd_signal(pidfd, signal),
                // SAFETY: kill only sends a signal; a process that is gone gives ESRCH, which is fine.
                Handle::Number => unsafe {
                    libc::kill(self.process.pid, signal);
                },
                #[cfg(target_os = "linux")]
                Handle::Gone => {}
            }
        }
    }
}

/// Deploy leaders: zbot's children that lead their own group, left to their `Child` to reap. Held
/// while a leader is spawned and while orphans are reaped, so neither can happen halfway through
/// the other.
static LEADERS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn leaders() -> MutexGuard<'static, BTreeSet<i32>> {
    LEADERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A registered deploy leader; dropping it (once its `Child` was waited for) ends the registration.
#[derive(Debug)]
pub struct Leader(Option<i32>);

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            leaders().remove(&pid);
        }
    }
}

/// Spawns a deploy's leader (a command in a process group of its own) or another child that leaves
/// zbot's group (a deploy's guard) and registers it, so the orphan reaper never takes the exit
/// status its `Child` waits for.
///
/// # Errors
/// The spawn's own error.
pub fn spawn_leader(
    command: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, Leader)> {
    let mut leaders = leaders();
    let child = command.spawn()?;
    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    if let Some(pid) = pid {
        leaders.insert(pid);
    }
    Ok((child, Leader(pid)))
}

fn own_pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(i32::MAX)
}

/// Reaps, among `pids`, the orphans zbot inherited that have exited. Returns those reaped.
fn reap_orphans_among(pids: impl IntoIterator<Item = i32>) -> Vec<Process> {
    let leaders = leaders();
    let own = own_pid();
    // SAFETY: getpgrp cannot fail.
    let own_group = unsafe { libc::getpgrp() };
    pids.into_iter()
        .filter_map(|pid| {
            let (comm, stat) = procfs::stat(pid).ok().flatten()?;
            (is_orphan(&stat, own, own_group, leaders.contains(&pid)) && sys::reap(pid)).then(
                || Process {
                    pid,
                    command: format!("[{comm}]"),
                },
            )
        })
        .collect()
}

/// Makes zbot the child subreaper: processes its descendants leave behind when their parent exits
/// are re-parented to zbot instead of init (and zbot reaps them, [`watch_orphans`]). Call once at
/// start, after logging is set up. Returns whether zbot is a subreaper now; when not, the log says
/// what that means.
pub fn become_subreaper() -> bool {
    match sys::set_subreaper() {
        Ok(()) => true,
        Err(reason) if cfg!(target_os = "linux") => {
            tracing::warn!(
                "zbot cannot adopt the processes deploys leave behind ({reason}); they are still found by their ZBOT_DEPLOYMENT_ID and stopped"
            );
            false
        }
        Err(reason) => {
            tracing::warn!(
                "on this system zbot cannot find the processes a deploy leaves outside its process group ({reason}): only the group is stopped when a deploy ends or after a restart"
            );
            false
        }
    }
}

/// When zbot is the child subreaper, starts the task that reaps the orphans it inherits: on each
/// SIGCHLD, and every [`REAP_EVERY`]. Once per process, whatever the number of calls.
///
/// A SIGCHLD (every git and deploy program that exits sends one) costs a look at whether any child
/// has exited, then at zbot's own children only; the whole of `/proc` (a read per process on the
/// machine, milliseconds of CPU beside the next process zbot starts) is read every [`REAP_EVERY`].
pub fn watch_orphans() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    if !sys::is_subreaper() {
        return;
    }
    STARTED.call_once(|| {
        let mut child_exited =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    tracing::warn!("no SIGCHLD for the orphan reaper ({e}); looking every {REAP_EVERY:?}");
                    None
                }
            };
        tokio::spawn(async move {
            // Its own clock: SIGCHLDs coming all the time must not put the full look off.
            let mut full = tokio::time::interval(REAP_EVERY);
            full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            full.tick().await;
            loop {
                let exited = async {
                    match &mut child_exited {
                        Some(signal) => {
                            signal.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let signalled = tokio::select! {
                    () = exited => true,
                    _ = full.tick() => false,
                };
                let candidates = match (signalled, procfs::children()) {
                    (true, _) if !sys::any_child_exited() => continue,
                    (true, Some(children)) => children,
                    _ => procfs::pids().unwrap_or_default(),
                };
                for orphan in reap_orphans_among(candidates) {
                    tracing::debug!(pid = orphan.pid, command = %orphan.command, "reaped a process zbot inherited");
                }
            }
        });
    });
}

#[cfg(target_os = "linux")]
mod sys {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub fn set_subreaper() -> Result<(), String> {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag of this process.
        let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if result == 0 {
            Ok(())
        } else {
            Err(format!(
                "PR_SET_CHILD_SUBREAPER: {}",
                std::io::Error::last_os_error()
            ))
        }
    }

    pub fn is_subreaper() -> bool {
        let mut flag: libc::c_int = 0;
        // SAFETY: PR_GET_CHILD_SUBREAPER writes one int, into `flag`.
        let result = unsafe {
            libc::prctl(
                libc::PR_GET_CHILD_SUBREAPER,
                &mut flag as *mut libc::c_int as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        result == 0 && flag != 0
    }

    /// Reaps `pid` if it is a child of zbot that has exited: checked first without reaping (WNOWAIT),
    /// so a process that is not (or not yet) a zombie child is left alone.
    pub fn reap(pid: i32) -> bool {
        let Ok(id) = libc::id_t::try_from(pid) else {
            return false;
        };
        // SAFETY: waitid writes only into `info`, which lives on this stack frame.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let exited = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: after waitid returned 0, `si_pid` is set (0 when nothing has exited).
        if exited != 0 || unsafe { info.si_pid() } != pid {
            return false;
        }
        // SAFETY: waitpid on a pid just seen to be our exited child; the status is not needed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) == pid }
    }

    /// Whether a child of zbot has exited and waits to be reaped: looked at without reaping it
    /// (WNOWAIT), so its own waiter still gets its status.
    pub fn any_child_exited() -> bool {
        // SAFETY: waitid writes only into `info`, which lives on this stack frame.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let looked = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: after waitid returned 0, `si_pid` is set (0 when nothing has exited).
        looked == 0 && unsafe { info.si_pid() } != 0
    }

    /// A pidfd for `pid`: `ESRCH` when it is gone, `ENOSYS` when the kernel has none (before 5.3).
    pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        match i32::try_from(fd) {
            Ok(fd) if fd >= 0 => {
                // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    pub fn pidfd_signal(pidfd: &OwnedFd, signal: i32) {
        // SAFETY: sends `signal` to the process the descriptor names; no siginfo is passed.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub fn set_subreaper() -> Result<(), String> {
        Err("finding them needs Linux's /proc and PR_SET_CHILD_SUBREAPER".into())
    }

    pub fn is_subreaper() -> bool {
        false
    }

    pub fn reap(_pid: i32) -> bool {
        false
    }

    pub fn any_child_exited() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
        // num_threads itrealvalue starttime vsize rss
        let tail = "0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        let cases = [
            (
                format!("4242 (sleep) S 1 4242 4242 {tail}"),
                Some(("sleep", 'S', 1, 4242, 987_654)),
            ),
            (
                format!("77 (my (odd) name) Z 10 9 9 {tail}"),
                Some(("my (odd) name", 'Z', 10, 9, 987_654)),
            ),
            (
                format!("5 (a) b) R 3 5 5 {tail}"),
                Some(("a) b", 'R', 3, 5, 987_654)),
            ),
            ("5 (cut short) R 3".to_string(), None),
            (String::new(), None),
        ];
        for (text, expected) in cases {
            let parsed = parse_stat(&text);
            let got = parsed
                .as_ref()
                .map(|(comm, s)| (comm.as_str(), s.state, s.ppid, s.pgrp, s.start_time));
            assert_eq!(got, expected, "{text}");
        }
    }

    /// A process that has gone reads as gone (not as an error), so only a real failure to read `/proc`
    /// is retried and said.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_gone_process_reads_as_gone_not_as_an_error() {
        let gone = i32::MAX;
        assert!(procfs::stat(gone).unwrap().is_none());
        assert!(procfs::environ(gone).unwrap().is_empty());
        assert!(procfs::pids().unwrap().contains(&own_pid()));
    }

    /// Waits until child `pid` has exited, leaving it to be reaped.
    fn exited_unreaped(pid: i32) {
        // SAFETY: waitid writes only into `info`; WNOWAIT leaves the child to be reaped.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let waited = unsafe {
            libc::waitid(
                libc::P_PID,
                libc::id_t::try_from(pid).unwrap(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(waited, 0);
    }

    /// The reaper's cheap look on a SIGCHLD: zbot's own children are listed, and an exited one is
    /// seen without being reaped (its `Child` still gets its status).
    #[cfg(target_os = "linux")]
    #[test]
    fn own_children_are_listed_and_an_exited_one_is_seen_unreaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        if let Some(children) = procfs::children() {
            assert!(children.contains(&pid), "{children:?} lacks {pid}");
        }
        exited_unreaped(pid);
        assert!(sys::any_child_exited());
        assert!(child.wait().unwrap().success(), "its status was kept");
    }

    /// A child that leaves zbot's process group (a deploy's guard, a leader) and is registered keeps
    /// its exit status for its `Child`, even when the reaper looks right after it exited.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_registered_child_outside_zbots_group_is_not_reaped() {
        let mut command = tokio::process::Command::new("true");
        command.process_group(0);
        let (mut child, registered) = spawn_leader(&mut command).unwrap();
        let pid = i32::try_from(child.id().unwrap()).unwrap();
        exited_unreaped(pid);
        assert!(reap_orphans_among([pid]).is_empty(), "the reaper took it");
        assert!(child.wait().await.unwrap().success(), "its status was kept");
        drop(registered);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_the_kernel_shows_it() {
        let (_, stat) = procfs::stat(own_pid()).unwrap().unwrap();
        // SAFETY: getppid and getpgrp cannot fail.
        let (ppid, pgrp) = unsafe { (libc::getppid(), libc::getpgrp()) };
        assert_eq!((stat.ppid, stat.pgrp), (ppid, pgrp));
        assert!(stat.start_time > 0);
    }

    #[test]
    fn the_marker_is_one_whole_variable() {
        let marker = b"ZBOT_DEPLOYMENT_ID=15";
        let cases: [(&[u8], bool); 6] = [
            (b"PATH=/bin\0ZBOT_DEPLOYMENT_ID=15\0HOME=/", true),
            (b"ZBOT_DEPLOYMENT_ID=15", true),
            (b"ZBOT_DEPLOYMENT_ID=150\0", false),
            (b"ZBOT_DEPLOYMENT_ID=1\0", false),
            (b"X_ZBOT_DEPLOYMENT_ID=15\0", false),
            (b"", false),
        ];
        for (environ, expected) in cases {
            assert_eq!(
                has_var(environ, marker),
                expected,
                "{}",
                String::from_utf8_lossy(environ)
            );
        }
    }

    #[test]
    fn both_marks_must_be_there() {
        let marks = Marks::new(Path::new("/nowhere/zbot-data"), DeploymentId(15));
        let cases: [(&[u8], bool); 4] = [
            (
                b"ZBOT_DATA_DIR=/nowhere/zbot-data\0PATH=/bin\0ZBOT_DEPLOYMENT_ID=15\0",
                true,
            ),
            (b"ZBOT_DEPLOYMENT_ID=15\0", false),
            (b"ZBOT_DATA_DIR=/elsewhere\0ZBOT_DEPLOYMENT_ID=15\0", false),
            (b"ZBOT_DATA_DIR=/nowhere/zbot-data\0", false),
        ];
        for (environ, expected) in cases {
            assert_eq!(
                marks.found_in(environ),
                expected,
                "{}",
                String::from_utf8_lossy(environ)
            );
        }
    }

    #[test]
    fn a_command_line_is_named_with_spaces_and_cut() {
        assert_eq!(command_line(b"sleep\x00600\x00", "sleep"), "sleep 600");
        assert_eq!(command_line(b"", "kworker/0:1"), "[kworker/0:1]");
        let long = format!("perl\0-e\0{}\0", "x".repeat(300));
        let named = command_line(long.as_bytes(), "perl");
        assert_eq!(named.chars().count(), COMMAND_CHARS + 1);
        assert!(named.starts_with("perl -e xxx") && named.ends_with('…'));
    }

    /// Only an exited child outside zbot's group that no `Child` waits for is reaped.
    #[test]
    fn only_inherited_orphans_are_reaped() {
        let (own, group) = (100, 100);
        let stat = |state, ppid, pgrp| Stat {
            state,
            ppid,
            pgrp,
            start_time: 1,
        };
        let cases = [
            ("an orphan that exited", stat('Z', own, 4242), false, true),
            (
                "an orphan still running",
                stat('S', own, 4242),
                false,
                false,
            ),
            ("git, in zbot's group", stat('Z', own, group), false, false),
            ("a deploy's leader", stat('Z', own, 4242), true, false),
            ("another process's child", stat('Z', 1, 4242), false, false),
        ];
        for (what, stat, leader, reaped) in cases {
            assert_eq!(is_orphan(&stat, own, group, leader), reaped, "{what}");
        }
    }
}
