//! The live log page: in a real headless Chromium (Debian's `chromium`) it shows the log so far and
//! follows it by server-sent events; without the link's token every route is 404.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fakes::github::FakeGitHub;
use crate::harness::{TestRepo, config_text, deploy, held_deploy_script, http, start_zbot};

const DEADLINE: Duration = Duration::from_secs(60);

/// Chromium, if installed (`.ci/run` installs Debian's `chromium`).
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A deploy held until `release` exists, its own log page link (gists refused), zbot and the fake.
struct Held {
    _dir: tempfile::TempDir,
    release: PathBuf,
    github: FakeGitHub,
    zbot: zbot::app::Running,
    /// The page's path and query, as the status links it.
    path: String,
    token: String,
}

async fn held_deploy(id: u64) -> Held {
    deploy_running(id, held_deploy_script).await
}

/// A deploy running `script(release)` as its `script/deploy`, once it is in progress.
async fn deploy_running(id: u64, script: impl Fn(&std::path::Path) -> String) -> Held {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let github = FakeGitHub::start().await;
    github.fail_gists();
    let repo = TestRepo::new(dir.path());
    let sha = repo.commit(&[("script/deploy", &script(&release), true)], "v0.0.1");
    let zbot = start_zbot(dir.path(), &config_text(&github, &repo, "", "")).await;
    deploy(zbot.addr, id, "v0.0.1", &sha, "production").await;
    github.in_progress(id, DEADLINE).await;
    let url = github
        .statuses(id)
        .into_iter()
        .find_map(|s| s.log_url)
        .expect("the in_progress status links the log");
    let path = url
        .strip_prefix(&format!("http://{}", zbot.addr))
        .unwrap_or_else(|| panic!("{url} is zbot's own page"))
        .to_string();
    let token = path
        .split_once("token=")
        .map(|(_, t)| t.to_string())
        .unwrap();
    Held {
        _dir: dir,
        release,
        github,
        zbot,
        path,
        token,
    }
}

/// A headless Chromium showing `url`, driven over the DevTools protocol; killed when dropped.
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    /// The browser's DevTools WebSocket.
    devtools: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools session: commands with ids, answers matched by id (events in between are skipped).
struct DevTools {
    ws: Socket,
    next_id: u64,
}

impl DevTools {
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut call = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            call["sessionId"] = json!(session);
        }
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(
                call.to_string(),
            ))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("DevTools answers")
                .unwrap()
                .unwrap();
            let Ok(answer) = serde_json::from_str::<Value>(message.to_text().unwrap_or("")) else {
                continue;
            };
            if answer["id"] == id {
                return answer["result"].clone();
            }
        }
    }
}

impl Browser {
    fn open(program: &std::path::Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // It says where DevTools listens: "DevTools listening on ws://127.0.0.1:PORT/devtools/…".
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("ws://").nth(1) {
                    let _ = tx.send(format!("ws://{}", rest.trim()));
                }
            }
        });
        let devtools = rx
            .recv_timeout(DEADLINE)
            .expect("chromium says where DevTools listens");
        Browser {
            child,
            _profile: profile,
            devtools,
        }
    }

    /// A DevTools session on the page whose URL contains `needle`.
    async fn page(&self, needle: &str) -> (DevTools, String) {
        let (ws, _) = tokio_tungstenite::connect_async(self.devtools.as_str())
            .await
            .unwrap();
        let mut devtools = DevTools { ws, next_id: 0 };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let target = loop {
            let targets = devtools.call(None, "Target.getTargets", json!({})).await;
            let found = targets["targetInfos"].as_array().and_then(|infos| {
                infos.iter().find_map(|t| {
                    (t["type"] == "page" && t["url"].as_str()?.contains(needle))
                        .then(|| t["targetId"].as_str().map(str::to_string))?
                })
            });
            if let Some(target) = found {
                break target;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no page {needle}: {targets}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let attached = devtools
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        let session = attached["sessionId"].as_str().unwrap().to_string();
        (devtools, session)
    }
}

/// Evaluates `expression` in the page until `done` holds for its text, within the deadline; the
/// text.
async fn evaluate_until(
    (devtools, session): &mut (DevTools, String),
    expression: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let result = devtools
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        let text = result["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed it: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's status line and log, as the browser shows them.
const SHOWN: &str = "(document.getElementById('status') || {textContent: ''}).textContent + '\\n' + \
                     (document.getElementById('log') || {textContent: ''}).textContent";

#[tokio::test(flavor = "multi_thread")]
async fn the_live_log_page_in_chromium_follows_the_deploy() {
    let Some(program) = chromium() else {
        eprintln!(
            "SKIPPED the_live_log_page_in_chromium_follows_the_deploy: no Chromium \
             (`apt-get install chromium`, as .ci/run does)"
        );
        return;
    };
    let held = held_deploy(2301).await;
    let url = format!("http://{}{}", held.zbot.addr, held.path);
    let browser = Browser::open(&program, &url);
    let mut page = browser.page("/deployments/2301/log").await;

    let before = evaluate_until(&mut page, SHOWN, |t| t.contains("holding")).await;
    assert!(before.starts_with("running: "), "{before}");
    assert!(!before.contains("released"), "{before}");
    // Printed only now, after the page opened: it arrives by the page's event stream.
    std::fs::write(&held.release, "go").unwrap();
    let after = evaluate_until(&mut page, SHOWN, |t| {
        t.contains("released") && t.starts_with("success: ")
    })
    .await;
    assert!(after.contains("holding"), "{after}");
    assert_eq!(
        held.github.final_status(2301, DEADLINE).await.state,
        "success"
    );
    drop(browser);
    held.zbot.stop().await.unwrap();
}

/// A GET's response head (status line and headers, names lower-cased) and body, read up to the
/// end of the response.
async fn get_with_head(addr: std::net::SocketAddr, path: &str, accept: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: {accept}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("zbot answers")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_lowercase(), body.to_string())
}

/// The value of header `name` (lower case) in a response head.
fn header_value<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_html_for_a_browser_raw_for_text_and_404_without_its_token() {
    let held = held_deploy(2302).await;
    let html = [("Accept", "text/html,*/*;q=0.8".to_string())];
    let (head, page) = get_with_head(held.zbot.addr, &held.path, &html[0].1).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(page.contains("<pre id=\"log\">"), "{page}");
    assert!(page.contains("id=\"status\" class=\"running\""), "{page}");
    assert!(page.contains("new EventSource("), "{page}");
    // Inline script and style are allowed by their hashes only; nothing may frame, post or rebase.
    let csp = header_value(&head, "content-security-policy");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
    for directive in [
        "default-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    let text = [("Accept", "text/plain".to_string())];
    let (head, raw) = get_with_head(held.zbot.addr, &held.path, &text[0].1).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!raw.contains("<pre"), "{raw}");
    assert_eq!(header_value(&head, "x-content-type-options"), "nosniff");
    assert_eq!(
        header_value(&head, "content-security-policy"),
        "default-src 'none'; sandbox"
    );

    let wrong = "0".repeat(64);
    for path in [
        "/deployments/2302/log".to_string(),
        format!("/deployments/2302/log?token={wrong}"),
        "/deployments/2302/log/events".to_string(),
        format!("/deployments/2302/log/events?token={wrong}"),
        format!("/deployments/9999/log/events?token={}", held.token),
    ] {
        for headers in [&html[..], &text[..]] {
            let (status, _) = http(held.zbot.addr, "GET", &path, headers, b"").await;
            assert_eq!(status, 404, "{path}");
        }
    }
    std::fs::write(&held.release, "go").unwrap();
    assert_eq!(
        held.github.final_status(2302, DEADLINE).await.state,
        "success"
    );
    // Once ended, the event stream sends what is left and ends.
    let events = format!("/deployments/2302/log/events?token={}", held.token);
    let (status, stream) = http(held.zbot.addr, "GET", &events, &[], b"").await;
    assert_eq!(status, 200);
    assert!(stream.contains("event: lines"), "{stream}");
    assert!(stream.contains("released"), "{stream}");
    assert!(stream.contains("event: end"), "{stream}");
    held.zbot.stop().await.unwrap();
}

/// Opens the event stream at `path`, sending `last_event_id` as a reconnecting `EventSource` does.
async fn open_events(
    addr: std::net::SocketAddr,
    path: &str,
    last_event_id: Option<&str>,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads `stream` into `text` until `text` satisfies `done`, within the deadline.
async fn read_until(
    stream: &mut tokio::net::TcpStream,
    text: &mut String,
    done: impl Fn(&str) -> bool,
) {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done(text) {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("the stream never showed it: {text}"))
            .unwrap();
        assert!(read > 0, "the stream ended before showing it: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
}

/// Reads the event stream at `path` (sending `last_event_id`, as a reconnecting `EventSource`
/// does) until its text so far satisfies `done`, within the deadline; the text. The connection
/// is dropped on return, as a browser losing its network would.
async fn read_events_until(
    addr: std::net::SocketAddr,
    path: &str,
    last_event_id: Option<&str>,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut stream = open_events(addr, path, last_event_id).await;
    let mut text = String::new();
    read_until(&mut stream, &mut text, done).await;
    text
}

/// The `id` of the last event in `text` that carries one.
fn last_event_id(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no event id in {text}"))
        .to_string()
}

/// Deployment `id` held running, its event stream open and read up to its first line: the deploy,
/// the stream and the text read so far.
async fn following_a_held_deploy(id: u64) -> (Held, tokio::net::TcpStream, String) {
    let held = held_deploy(id).await;
    let events = format!("/deployments/{id}/log/events?token={}", held.token);
    let mut stream = open_events(held.zbot.addr, &events, None).await;
    let mut text = String::new();
    read_until(&mut stream, &mut text, |t| t.contains("holding")).await;
    (held, stream, text)
}

/// Stopping zbot ends an open event stream with `end` at once, while the deploy it follows still
/// runs: the reader is not held until the listener's grace runs out.
#[tokio::test(flavor = "multi_thread")]
async fn stopping_zbot_ends_an_open_event_stream() {
    let (held, mut stream, mut text) = following_a_held_deploy(2304).await;
    let Held {
        _dir,
        release,
        github,
        zbot,
        ..
    } = held;
    let stopping = tokio::spawn(zbot.stop());
    read_until(&mut stream, &mut text, |t| t.contains("event: end")).await;
    assert!(text.contains("event: end\ndata: stopping"), "{text}");
    // The deploy was still running: it is let go so that zbot's stop completes.
    std::fs::write(&release, "go").unwrap();
    stopping.await.unwrap().unwrap();
    assert_eq!(github.final_status(2304, DEADLINE).await.state, "success");
}

/// zbot dropped without a stop (an error path): its shutdown signal is gone, which ends an open
/// event stream as a stop does, rather than leaving it to look at the store without a pause.
#[tokio::test(flavor = "multi_thread")]
async fn a_zbot_dropped_without_a_stop_ends_an_open_event_stream() {
    let (held, mut stream, mut text) = following_a_held_deploy(2305).await;
    let Held {
        _dir,
        release,
        zbot,
        ..
    } = held;
    drop(zbot);
    read_until(&mut stream, &mut text, |t| t.contains("event: end")).await;
    assert!(text.contains("event: end\ndata: stopping"), "{text}");
    std::fs::write(&release, "go").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnected_stream_resumes_after_its_last_event_without_repeating_lines() {
    let held = held_deploy(2303).await;
    let events = format!("/deployments/2303/log/events?token={}&from=0", held.token);
    let first = read_events_until(held.zbot.addr, &events, None, |t| {
        t.contains("holding") && t.contains("\nid: ")
    })
    .await;
    let id = last_event_id(&first);
    // The connection is gone; the deploy goes on and ends.
    std::fs::write(&held.release, "go").unwrap();
    assert_eq!(
        held.github.final_status(2303, DEADLINE).await.state,
        "success"
    );
    // The browser reconnects to the same URL (`from=0`) with the id it saw last.
    let second = read_events_until(held.zbot.addr, &events, Some(&id), |t| {
        t.contains("event: end")
    })
    .await;
    assert!(second.contains("released"), "{second}");
    assert!(!second.contains("holding"), "lines sent twice: {second}");
    // Without the id, `from=0` means the whole log again.
    let fresh =
        read_events_until(held.zbot.addr, &events, None, |t| t.contains("event: end")).await;
    assert!(
        fresh.contains("holding") && fresh.contains("released"),
        "{fresh}"
    );
    held.zbot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_longer_than_an_event_and_a_last_line_without_line_end_are_sent() {
    let held = deploy_running(2304, |_| "#!/bin/sh\necho done\n".to_string()).await;
    assert_eq!(
        held.github.final_status(2304, DEADLINE).await.state,
        "success"
    );
    // zbot's own writer ends every line and cuts long output; a log written otherwise need not:
    // 300 000 bytes on one line (longer than one event), then a last line with no line end.
    let log = held._dir.path().join("data/logs/2304.log");
    let mut text = std::fs::read(&log).unwrap();
    text.extend(std::iter::repeat_n(b'y', 300_000));
    text.extend(b"\nlast words");
    std::fs::write(&log, text).unwrap();
    let events = format!("/deployments/2304/log/events?token={}&from=0", held.token);
    let stream =
        read_events_until(held.zbot.addr, &events, None, |t| t.contains("event: end")).await;
    assert!(stream.contains("done"), "{stream}");
    let sent = stream.matches('y').count();
    assert!(sent >= 300_000, "{sent} of the long line's bytes sent");
    let end = stream.find("event: end").unwrap();
    let last = stream.find("last words").expect("the last line is sent");
    assert!(last < end, "the last line comes before the end");
    // The page of an ended deploy shows it too.
    let (_, page) = get_with_head(held.zbot.addr, &held.path, "text/html").await;
    assert!(page.contains("last words"), "the page shows the last line");
    held.zbot.stop().await.unwrap();
}
