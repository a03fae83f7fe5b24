//! A real Postgres server for the tests: started once per test binary, when a test first asks for a
//! database, on 127.0.0.1 and a free port, from a fresh data directory in a temporary directory
//! (Debian's `postgresql` package: `initdb` and `postgres` from /usr/lib/postgresql/<version>/bin, or
//! `$ZBOT_TEST_PG_BIN`), and stopped by its PID when the test binary exits. Each test gets a database of
//! its own ([`database`]).
//!
//! Postgres refuses to run as root, and CI runs as root: then the server runs as the unprivileged
//! `postgres` user (`setpriv`), its directory owned by that user.
//!
//! The tests run it without `fsync` (nothing to keep); `ZBOT_TEST_PG_FSYNC=on` makes it durable, as the
//! benchmark wants it beside SQLite with `synchronous = FULL`.
//!
//! Used by the integration tests and, through `#[path]`, by the store's unit tests and the benchmark:
//! std and libc only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The superuser the tests connect as (trusted on 127.0.0.1, no password).
const USER: &str = "zbot";

/// The unprivileged account the server runs as when the tests run as root.
const RUN_AS: &str = "postgres";

struct Server {
    port: u16,
    bin: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The URL of a new, empty database on the test server (started on first use).
pub fn database() -> String {
    let server = SERVER.get_or_init(start);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let status = Command::new(server.bin.join("createdb"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            USER,
        ])
        .arg(&name)
        .status()
        .expect("createdb runs");
    assert!(status.success(), "createdb {name} failed");
    format!("postgres://{USER}@127.0.0.1:{}/{name}", server.port)
}

/// Where Debian's Postgres binaries are: the newest /usr/lib/postgresql/<version>/bin.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZBOT_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is installed (apt-get install postgresql; .ci/run does)")
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("a /usr/lib/postgresql/<version>/bin with initdb")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` run as the server's user: itself, or through `setpriv` as `postgres` when root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                &format!("--reuid={RUN_AS}"),
                &format!("--regid={RUN_AS}"),
                "--init-groups",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Gives `path` to the server's user when the tests run as root.
fn hand_over(path: &Path) {
    if !is_root() {
        return;
    }
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{RUN_AS}:"))
        .arg(path)
        .status()
        .expect("chown runs");
    assert!(status.success(), "chown {RUN_AS} {}", path.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start() -> Server {
    let bin = bin_dir();
    let dir = std::env::temp_dir().join(format!(
        "zbot-test-postgres-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).expect("the server's directory");
    hand_over(&dir);
    let initdb = as_server_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"])
        .arg("--no-locale")
        .stdout(Stdio::null())
        .output()
        .expect("initdb runs");
    assert!(
        initdb.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let fsync = match std::env::var("ZBOT_TEST_PG_FSYNC").as_deref() {
        Ok("on") => "on",
        _ => "off",
    };
    let mut last_log = String::new();
    for _ in 0..5 {
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).expect("the server log");
        hand_over(&dir.join("server.log"));
        let mut child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &format!("fsync={fsync}"),
                "-c",
                &format!("full_page_writes={fsync}"),
                "-c",
                "max_connections=300",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the server log"))
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                let pid = child.id() as i32;
                // setpriv executes postgres in its own place: this is the postmaster's PID.
                std::mem::forget(child);
                let server = Server {
                    port,
                    bin: bin.clone(),
                };
                STOP.set((pid, dir.clone())).ok();
                // SAFETY: registering a plain function to run at exit.
                unsafe {
                    libc::atexit(stop_at_exit);
                }
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "Postgres did not get ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        last_log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    }
    panic!("Postgres did not start: {last_log}");
}

/// What the exit hook stops: the postmaster's PID and the directory to remove.
static STOP: OnceLock<(i32, PathBuf)> = OnceLock::new();

/// Stops the server (SIGQUIT: immediate shutdown, nothing to keep) and removes its directory.
extern "C" fn stop_at_exit() {
    let Some((pid, dir)) = STOP.get() else {
        return;
    };
    // SAFETY: signalling and reaping our own child by its PID.
    unsafe {
        libc::kill(*pid, libc::SIGQUIT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: as above; WNOHANG never blocks.
        let reaped = unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
        if reaped != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(dir);
}
