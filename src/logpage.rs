//! A deploy's own log page, behind its link's unguessable token ([`crate::loglink`]), for people who
//! cannot open the gist:
//!
//! - `GET /deployments/{id}/log?token=…`: with `Accept: text/html` (a browser), an HTML page with the
//!   status at the top and the log so far, which follows the log live through server-sent events (a
//!   few lines of plain JavaScript, no framework; without JavaScript, reloading shows more). Any other
//!   `Accept` (`text/plain`, `*/*`, none) gets the raw log, as before.
//! - `GET /deployments/{id}/log/events?token=…&from=N`: the events the page follows: `lines` (the
//!   complete lines written after byte `N`; its SSE `id` is the byte offset after them, and a
//!   reconnect's `Last-Event-ID` overrides `from`, so no line is sent twice), `status`
//!   (`{"state", "description"}` when it changes), and `end` once the deployment has ended and its
//!   whole log was sent, or once it is gone from the store.
//!
//! A stream holds nothing back when zbot stops: at shutdown every open stream sends `end` (data
//! `stopping`) and closes, so the listener's graceful shutdown does not wait on readers. A stream
//! also closes after [`MAX_STREAM`] without `end`; the browser's `EventSource` reconnects at once
//! and goes on from its `Last-Event-ID`, so a forgotten tab does not hold a connection for ever.
//!
//! Without the deployment's token every route answers 404, before the store is asked: nothing is
//! learnt, not even whether the deployment exists.
//!
//! The page's Content-Security-Policy allows its own inline script and stylesheet by their SHA-256
//! hashes (never `'unsafe-inline'`) and nothing else; the raw log is served `nosniff` and sandboxed.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use crate::domain::DeploymentId;
use crate::loglink::LinkKey;
use crate::store::{Deployment, DeploymentState, Store};

/// How often a followed log is read for new lines, and the deployment for a new state.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// The most bytes one `lines` event carries; more is sent in further events (a longer line in
/// pieces).
const MAX_EVENT_BYTES: u64 = 256 * 1024;

/// The longest one event stream stays open; the browser then reconnects where it was.
pub const MAX_STREAM: Duration = Duration::from_secs(600);

/// What the log routes need.
#[derive(Clone)]
pub struct LogPages {
    pub store: Store,
    pub key: LinkKey,
    /// Turns true when zbot stops: open streams send `end` and close.
    pub shutdown: watch::Receiver<bool>,
}

/// The log page and its events.
pub fn router(pages: LogPages) -> Router {
    Router::new()
        .route("/deployments/{id}/log", get(page))
        .route("/deployments/{id}/log/events", get(events))
        .with_state(pages)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such deployment").into_response()
}

/// The value of `name` in a query string.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

impl LogPages {
    /// The deployment, if the query carries its token; `None` answers 404 either way.
    async fn deployment(&self, id: DeploymentId, query: Option<&str>) -> Option<Deployment> {
        let token = query_value(query, "token")?;
        // Checked before the store is asked.
        if !self.key.verify(id, &token) {
            return None;
        }
        self.store.get(id).await.ok().flatten()
    }
}

/// Whether the client asked for HTML (a browser does; `curl` and `text/plain` do not).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

async fn page(
    State(pages): State<LogPages>,
    Path(id): Path<DeploymentId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(d) = pages.deployment(id, query.as_deref()).await else {
        return not_found();
    };
    if !wants_html(&headers) {
        return raw(&d).await;
    }
    let (text, offset) = match &d.log_path {
        // Ended: the log is whole on disk, its last line too even without a line end.
        Some(path) => complete_lines(path, is_final(d.state)).await,
        None => (String::new(), 0),
    };
    let token = query_value(query.as_deref(), "token").unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page's own inline script and stylesheet, nothing from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                CONTENT_SECURITY_POLICY.as_str(),
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html(&d, &text, offset, &token),
    )
        .into_response()
}

/// The whole log as plain text.
async fn raw(d: &Deployment) -> Response {
    let Some(path) = &d.log_path else {
        return (StatusCode::NOT_FOUND, "this deployment has not started").into_response();
    };
    match tokio::fs::File::open(path).await {
        Ok(file) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CONTENT_SECURITY_POLICY, RAW_CONTENT_SECURITY_POLICY),
            ],
            Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "the log is gone").into_response(),
    }
}

/// The log's complete lines (up to its last line end, or all of it when `whole`) and their length
/// in bytes.
async fn complete_lines(path: &str, whole: bool) -> (String, u64) {
    let bytes = tokio::fs::read(path).await.unwrap_or_default();
    let end = if whole {
        bytes.len()
    } else {
        bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
    };
    (
        String::from_utf8_lossy(&bytes[..end]).into_owned(),
        end as u64,
    )
}

/// `text` safe inside HTML text and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The state and description as the page's status line shows them.
fn status_line(d: &Deployment) -> String {
    format!("{}: {}", d.state.as_str(), d.description)
}

fn is_final(state: DeploymentState) -> bool {
    matches!(
        state,
        DeploymentState::Success | DeploymentState::Failure | DeploymentState::Error
    )
}

/// The page: the status, the log so far, and the script that follows the rest.
fn html(d: &Deployment, log: &str, offset: u64, token: &str) -> String {
    let title = format!(
        "#{} {} {} to {}",
        d.deployment_id, d.app, d.git_ref, d.environment
    );
    let events = format!(
        "/deployments/{}/log/events?token={}&from={offset}",
        d.deployment_id,
        form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let follow = if is_final(d.state) {
        String::new()
    } else {
        format!("<script>{FOLLOW_SCRIPT}</script>")
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zbot deploy {title}</title>
<style>{STYLESHEET}</style>
</head>
<body>
<h1>zbot deploy {title}</h1>
<p id="status" class="{state}" data-events="{events}">{status}</p>
<noscript><p>Reload the page to see more of the log.</p></noscript>
<pre id="log">{log}</pre>
{follow}
</body>
</html>
"#,
        title = escape_html(&title),
        state = d.state.as_str(),
        events = escape_html(&events),
        status = escape_html(&status_line(d)),
        log = escape_html(log),
    )
}

/// The page's stylesheet, the whole text of its `<style>` element (allowed by its hash,
/// [`CONTENT_SECURITY_POLICY`]).
const STYLESHEET: &str = "
body { font-family: sans-serif; margin: 1rem; }
#status { font-weight: bold; padding: .5rem; border-radius: .3rem; background: #eee; }
#status.success { background: #d4f7d4; }
#status.failure, #status.error { background: #f7d4d4; }
pre { white-space: pre-wrap; word-break: break-all; font-size: .85rem; }
";

/// Follows the log: appends each `lines` event, shows each `status`, stops at `end`. The whole text
/// of the page's `<script>` element (allowed by its hash, [`CONTENT_SECURITY_POLICY`]).
const FOLLOW_SCRIPT: &str = r#"
(function () {
  var status = document.getElementById("status");
  var log = document.getElementById("log");
  var source = new EventSource(status.getAttribute("data-events"));
  source.addEventListener("lines", function (e) {
    log.appendChild(document.createTextNode(e.data + "\n"));
  });
  source.addEventListener("status", function (e) {
    var s = JSON.parse(e.data);
    status.textContent = s.state + ": " + s.description;
    status.className = s.state;
  });
  source.addEventListener("end", function () { source.close(); });
})();
"#;

/// A CSP source expression allowing exactly the inline element whose text is `text`:
/// `'sha256-…'`, the base64 of its SHA-256 (CSP Level 3, "hash-source").
fn hash_source(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content-Security-Policy: nothing but its own script and stylesheet (by their
/// hashes, no `'unsafe-inline'`) and its own event stream; no `<base>`, no form posts, no framing.
static CONTENT_SECURITY_POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash_source(FOLLOW_SCRIPT),
        hash_source(STYLESHEET)
    )
});

/// The raw log's Content-Security-Policy: a browser shown it runs and loads nothing.
const RAW_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";

/// Where a follower is.
struct Follow {
    pages: LogPages,
    id: DeploymentId,
    /// Bytes of the log already sent.
    offset: u64,
    /// The status line last sent.
    shown: Option<String>,
    /// The log's path, once the deployment has one.
    path: Option<PathBuf>,
    ended: bool,
    first: bool,
    /// zbot's shutdown: `end` is sent and the stream closes.
    shutdown: watch::Receiver<bool>,
    /// When the stream closes without `end` ([`MAX_STREAM`]).
    until: tokio::time::Instant,
}

impl Follow {
    /// The next event: new complete lines, else a changed status, else `end` once the deployment
    /// has ended; waits [`FOLLOW_EVERY`] between looks. `end` (`stopping`) as soon as zbot stops.
    /// `None` after `end`, and once the stream is [`MAX_STREAM`] old.
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            // zbot stops: `true` sent, or its sender gone without a word (an error path dropped it).
            let mut stopping = false;
            if !self.first {
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                    _ = self.shutdown.wait_for(|stop| *stop) => stopping = true,
                }
            }
            self.first = false;
            if stopping || *self.shutdown.borrow() || self.shutdown.has_changed().is_err() {
                self.ended = true;
                return Some(Event::default().event("end").data("stopping"));
            }
            if tokio::time::Instant::now() >= self.until {
                // Without `end`: the browser reconnects and goes on from its Last-Event-ID.
                return None;
            }
            let d = match self.pages.store.get(self.id).await {
                Ok(Some(d)) => d,
                // Forgotten: nothing more will come, and a browser must not reconnect for ever.
                Ok(None) => {
                    self.ended = true;
                    return Some(Event::default().event("end").data("gone"));
                }
                // The store failed this once: look again at the next turn.
                Err(_) => continue,
            };
            if self.path.is_none() {
                self.path = d.log_path.as_ref().map(PathBuf::from);
            }
            // The log is complete on disk before the deployment's end is recorded: once ended, a
            // last line without a line end is sent too.
            if let Some(lines) = self.read_lines(is_final(d.state)).await {
                self.first = true;
                // The id is the byte offset after these lines: a browser reconnecting sends it
                // back as `Last-Event-ID` and gets only what follows.
                return Some(
                    Event::default()
                        .event("lines")
                        .id(self.offset.to_string())
                        .data(lines),
                );
            }
            let line = status_line(&d);
            if self.shown.as_ref() != Some(&line) {
                let data = serde_json::json!({
                    "state": d.state.as_str(),
                    "description": d.description,
                });
                self.shown = Some(line);
                self.first = true;
                return Some(Event::default().event("status").data(data.to_string()));
            }
            if is_final(d.state) {
                self.ended = true;
                return Some(Event::default().event("end").data(d.state.as_str()));
            }
        }
    }

    /// The complete lines written since [`Follow::offset`] (at most [`MAX_EVENT_BYTES`]), without
    /// the last line end; `None` when there are none. See [`event_cut`] for a longer line and,
    /// when `flush`, the text after the last line end.
    async fn read_lines(&mut self, flush: bool) -> Option<String> {
        let path = self.path.as_ref()?;
        let mut file = tokio::fs::File::open(path).await.ok()?;
        file.seek(std::io::SeekFrom::Start(self.offset))
            .await
            .ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_EVENT_BYTES)
            .read_to_end(&mut bytes)
            .await
            .ok()?;
        let (end, consumed) = event_cut(&bytes, flush)?;
        self.offset += consumed as u64;
        Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}

/// How much of `bytes` (read from the log, at most [`MAX_EVENT_BYTES`]) one `lines` event sends:
/// the text's end and the bytes consumed. Up to the last line end (the line end consumed, not
/// sent); a full buffer without one (a line longer than an event) is sent as is, cut before a
/// character split at its end; when `flush` (the log is complete), the text after the last line
/// end too. `None`: nothing to send yet.
fn event_cut(bytes: &[u8], flush: bool) -> Option<(usize, usize)> {
    if let Some(end) = bytes.iter().rposition(|b| *b == b'\n') {
        return Some((end, end + 1));
    }
    if flush && !bytes.is_empty() {
        return Some((bytes.len(), bytes.len()));
    }
    if (bytes.len() as u64) < MAX_EVENT_BYTES {
        return None;
    }
    let end = match std::str::from_utf8(bytes) {
        // A character cut by the buffer's end goes whole into the next event.
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        _ => bytes.len(),
    };
    Some((end, end))
}

/// Where a follower starts: after the last `lines` event it saw (`Last-Event-ID`, sent by a
/// reconnecting `EventSource`), else at `from`, else at the log's start.
fn start_offset(headers: &HeaderMap, query: Option<&str>) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.trim().parse().ok())
        .or_else(|| query_value(query, "from").and_then(|from| from.parse().ok()))
        .unwrap_or(0)
}

async fn events(
    State(pages): State<LogPages>,
    Path(id): Path<DeploymentId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(d) = pages.deployment(id, query.as_deref()).await else {
        return not_found();
    };
    let offset = start_offset(&headers, query.as_deref());
    let follow = Follow {
        shutdown: pages.shutdown.clone(),
        pages,
        id,
        offset,
        shown: None,
        path: d.log_path.as_ref().map(PathBuf::from),
        ended: false,
        first: true,
        until: tokio::time::Instant::now() + MAX_STREAM,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok::<Event, Infallible>(event), follow))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_everything_from_outside() {
        assert_eq!(
            escape_html(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_own_script_and_style() {
        let policy = CONTENT_SECURITY_POLICY.as_str();
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains(&format!("script-src {};", hash_source(FOLLOW_SCRIPT))));
        assert!(policy.contains(&format!("style-src {};", hash_source(STYLESHEET))));
        // Known answer: SHA-256 of the empty text.
        assert_eq!(
            hash_source(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }

    #[test]
    fn a_reconnect_starts_after_its_last_event() {
        let with = |id: Option<&str>, query: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(id) = id {
                headers.insert("last-event-id", id.parse().unwrap());
            }
            start_offset(&headers, query)
        };
        assert_eq!(with(None, None), 0);
        assert_eq!(with(None, Some("token=t&from=12")), 12);
        assert_eq!(with(Some("40"), Some("token=t&from=12")), 40);
        assert_eq!(with(Some("40"), None), 40);
        assert_eq!(with(Some("junk"), Some("from=12")), 12);
        assert_eq!(with(None, Some("from=-1")), 0);
    }

    #[test]
    fn an_event_takes_whole_lines_a_full_buffer_or_the_flushed_rest() {
        let full = usize::try_from(MAX_EVENT_BYTES).unwrap();
        let long = vec![b'x'; full];
        let mut split = vec![b'x'; full - 1];
        split.push("é".as_bytes()[0]);
        for (bytes, flush, want) in [
            (&b""[..], false, None),
            (&b""[..], true, None),
            (&b"a\nb\n"[..], false, Some((3, 4))),
            (&b"a\nb"[..], false, Some((1, 2))),
            (&b"a\nb"[..], true, Some((1, 2))),
            (&b"partial"[..], false, None),
            (&b"partial"[..], true, Some((7, 7))),
            (&long[..], false, Some((full, full))),
            (&split[..], false, Some((full - 1, full - 1))),
        ] {
            assert_eq!(event_cut(bytes, flush), want, "{flush}");
        }
    }

    #[test]
    fn only_a_browser_gets_html() {
        let with = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, accept.parse().unwrap());
            wants_html(&headers)
        };
        assert!(with("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(!with("text/plain"));
        assert!(!with("*/*"));
        assert!(!wants_html(&HeaderMap::new()));
    }
}
