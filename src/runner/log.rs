//! A deploy's log file: every line of output, interleaved, time-stamped and redacted, written as it
//! arrives so memory stays flat however much a deploy prints. [`excerpt`] reads back the head and tail
//! of a log for a size-limited page such as a gist, [`last_lines`] its end for a failure message.
//!
//! A line longer than a reader holds arrives in pieces ([`LogSender::part`]); each piece is written as
//! a log line of its own, but redacted as part of the whole line: a secret the cut splits is hidden
//! whole. What is written never depends on where output was cut. The excerpt and the last lines are
//! cut from this redacted file, at line ends only.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::secret::Redactor;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// zbot's own notes: checkout, recipe chosen, timeout.
    Zbot,
}

impl Stream {
    const ALL: [Stream; 3] = [Stream::Stdout, Stream::Stderr, Stream::Zbot];

    /// Its place in [`Stream::ALL`].
    fn index(self) -> usize {
        self as usize
    }

    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
            Stream::Zbot => "zbot",
        }
    }
}

/// Pieces waiting to be written; a full channel makes readers wait, which is what bounds memory.
const CHANNEL_LINES: usize = 1024;

/// Output on its way to the log: a whole line, or a piece of a line longer than a reader holds.
#[derive(Debug)]
struct Piece {
    stream: Stream,
    bytes: Vec<u8>,
    /// False when the line goes on in the next piece of the same stream.
    ends_line: bool,
}

/// A handle to send lines to the log; clone it for each reader.
#[derive(Clone, Debug)]
pub struct LogSender {
    tx: mpsc::Sender<Piece>,
}

impl LogSender {
    /// A whole line (a trailing newline is dropped).
    pub async fn line(&self, stream: Stream, bytes: Vec<u8>) {
        self.send(stream, bytes, true).await;
    }

    /// The beginning or middle of a line that goes on in the next piece of `stream`: the log holds back
    /// what could be the start of a secret until it knows how the line goes on.
    pub async fn part(&self, stream: Stream, bytes: Vec<u8>) {
        self.send(stream, bytes, false).await;
    }

    pub async fn note(&self, text: impl Into<String>) {
        self.line(Stream::Zbot, text.into().into_bytes()).await;
    }

    async fn send(&self, stream: Stream, bytes: Vec<u8>, ends_line: bool) {
        // The writer only stops when every sender is gone, so this cannot fail while we hold one.
        let piece = Piece {
            stream,
            bytes,
            ends_line,
        };
        let _ = self.tx.send(piece).await;
    }
}

/// One stream's line being received in pieces: redacts what is safe to write, keeps the rest.
///
/// A secret cut between two pieces is redacted whole: the end of a piece that could be the start of a
/// secret ([`Redactor::safe_cut`]) waits for the next piece, as do the bytes of a character the cut
/// split. So what is written does not depend on where a line was cut.
#[derive(Debug, Default)]
struct PartialLine {
    /// Decoded, not yet written.
    pending: String,
    /// The first bytes of a UTF-8 character the last piece ended inside.
    split_char: Vec<u8>,
    /// Whether part of this line was written already.
    written: bool,
}

impl PartialLine {
    /// The redacted text to write for `bytes`, if any.
    fn push(&mut self, redactor: &Redactor, bytes: &[u8], ends_line: bool) -> Option<String> {
        let mut raw = std::mem::take(&mut self.split_char);
        raw.extend_from_slice(bytes);
        let whole = if ends_line {
            raw.len()
        } else {
            raw.len() - split_char_len(&raw)
        };
        self.split_char = raw.split_off(whole);
        self.pending.push_str(&String::from_utf8_lossy(&raw));
        if ends_line {
            return self.end(redactor);
        }
        let cut = redactor.safe_cut(&self.pending);
        if cut == 0 {
            return None;
        }
        let text = redactor.redact(&self.pending[..cut]);
        self.pending.drain(..cut);
        self.written = true;
        Some(text)
    }

    /// The rest of the line, redacted; `None` when only its newline was left.
    fn end(&mut self, redactor: &Redactor) -> Option<String> {
        let mut rest = std::mem::take(&mut self.pending);
        rest.push_str(&String::from_utf8_lossy(&std::mem::take(
            &mut self.split_char,
        )));
        let rest = rest.trim_end_matches(['\n', '\r']);
        let written = std::mem::take(&mut self.written);
        (!(written && rest.is_empty())).then(|| redactor.redact(rest))
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is not complete (0 to 3).
fn split_char_len(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: the character began further back
        }
        let needs = match byte {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if needs > back { back } else { 0 };
    }
    0
}

/// The task writing one log file. [`LogWriter::finish`] waits until every line is on disk.
#[derive(Debug)]
pub struct LogWriter {
    pub path: PathBuf,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LogWriter {
    /// Creates (truncating) the log file and starts its writer; each line is stamped with the time
    /// of day in `zone` (`[bot] time_zone`) and its offset: `10:42:01.123+01:00`.
    pub async fn create(
        path: &Path,
        redactor: Redactor,
        zone: chrono_tz::Tz,
    ) -> std::io::Result<(LogWriter, LogSender)> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = File::create(path).await?;
        let (tx, mut rx) = mpsc::channel::<Piece>(CHANNEL_LINES);
        let task = tokio::spawn(async move {
            let mut out = BufWriter::with_capacity(64 * 1024, file);
            // Pieces of stdout and stderr interleave: each stream has its own line in progress.
            let mut lines: [PartialLine; 3] = Default::default();
            while let Some(piece) = rx.recv().await {
                let line = &mut lines[piece.stream.index()];
                if let Some(text) = line.push(&redactor, &piece.bytes, piece.ends_line) {
                    write_line(&mut out, piece.stream, &text, zone).await?;
                }
                if rx.is_empty() {
                    out.flush().await?;
                }
            }
            // Every sender is gone: a line still in progress has nothing more to come.
            for (stream, line) in Stream::ALL.into_iter().zip(&mut lines) {
                if let Some(text) = line.end(&redactor).filter(|t| !t.is_empty()) {
                    write_line(&mut out, stream, &text, zone).await?;
                }
            }
            out.flush().await
        });
        Ok((
            LogWriter {
                path: path.to_path_buf(),
                task,
            },
            LogSender { tx },
        ))
    }

    /// Waits for the writer to drain; call after the last sender is dropped.
    pub async fn finish(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

async fn write_line(
    out: &mut BufWriter<File>,
    stream: Stream,
    redacted: &str,
    zone: chrono_tz::Tz,
) -> std::io::Result<()> {
    // A stamp, not a rule about time: the wall clock, as the process's output arrives.
    let stamp = chrono::Utc::now()
        .with_timezone(&zone)
        .format("%H:%M:%S%.3f%:z");
    let shown = after_carriage_returns(redacted);
    out.write_all(format!("{stamp} {} | {shown}\n", stream.tag()).as_bytes())
        .await
}

/// A line as a terminal last showed it: a progress bar redraws its line after `\r`
/// (`10%\r20%\r100%`), so only the text after the last `\r` is kept (the last that is not empty:
/// `done\r` is `done`). Browsers, gists and chat would show every `\r` as a line of its own, or as
/// nothing.
fn after_carriage_returns(line: &str) -> &str {
    line.rsplit('\r')
        .find(|segment| !segment.is_empty())
        .unwrap_or_default()
}

/// At most `limit` bytes of the log at `path`: all of it if it fits, else its beginning and its end
/// with a line saying how much was left out and where the whole log is. Only whole lines are shown.
pub async fn excerpt(path: &Path, limit: u64, full_log_at: &str) -> std::io::Result<String> {
    let mut file = File::open(path).await?;
    let size = file.metadata().await?.len();
    if size <= limit {
        // The log may grow while it is read: read what was measured.
        let mut all = Vec::with_capacity(size as usize);
        (&mut file).take(size).read_to_end(&mut all).await?;
        return Ok(String::from_utf8_lossy(&all).into_owned());
    }
    let half = (limit / 2).saturating_sub(256).max(1);
    let mut head = vec![0; half as usize];
    file.read_exact(&mut head).await?;
    let head = to_last_whole_line(&head);
    let tail = read_lines(&mut file, size - half, size).await?;
    let tail = tail.as_slice();
    let left_out = size - head.len() as u64 - tail.len() as u64;
    Ok(format!(
        "{}\n… {left_out} bytes left out here; the whole log ({size} bytes) is at {full_log_at} …\n\n{}",
        String::from_utf8_lossy(head),
        String::from_utf8_lossy(tail)
    ))
}

/// How much of a log's end [`last_lines`] reads.
const LAST_LINES_WINDOW: u64 = 16 * 1024;

/// The last `lines` lines of output in the log (for a failure message); a line longer than the
/// 16 KiB read is left out, not shown cut.
pub async fn last_lines(path: &Path, lines: usize) -> std::io::Result<Vec<String>> {
    let mut file = File::open(path).await?;
    let size = file.metadata().await?.len();
    let buf = read_lines(&mut file, size.saturating_sub(LAST_LINES_WINDOW), size).await?;
    let text = String::from_utf8_lossy(&buf);
    let output: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.split_once(' ')
                .is_none_or(|(_, rest)| !rest.starts_with("zbot | "))
        })
        .collect();
    Ok(output[output.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect())
}

/// The lines of `file` from byte `start` to byte `end`, without the line `start` cuts.
async fn read_lines(file: &mut File, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    // One byte more, to see whether `start` begins a line.
    let from = start.saturating_sub(1);
    file.seek(SeekFrom::Start(from)).await?;
    let mut buf = Vec::with_capacity((end - from) as usize);
    file.take(end - from).read_to_end(&mut buf).await?;
    let first = if start == 0 {
        0
    } else {
        buf.iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1)
    };
    buf.drain(..first);
    Ok(buf)
}

/// `text` up to and including its last newline: a line cut at the end is left out.
fn to_last_whole_line(text: &[u8]) -> &[u8] {
    let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn a_redrawn_line_keeps_what_was_shown_last() {
        for (line, shown) in [
            ("plain", "plain"),
            ("10%\r20%\r100%", "100%"),
            ("done\r", "done"),
            ("\rstart", "start"),
            ("\r", ""),
            ("", ""),
        ] {
            assert_eq!(after_carriage_returns(line), shown, "{line:?}");
        }
    }

    const TOKEN: &str = "ghp_PLANTEDtoken0123456789abcdef";

    fn redactor() -> Redactor {
        Redactor::new(&[Secret::new(TOKEN)])
    }

    #[test]
    fn split_char_len_finds_a_character_cut_at_the_end() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"abc", 0),
            ("é".as_bytes(), 0),
            (&"é".as_bytes()[..1], 1),
            (&"x€".as_bytes()[..2], 1),
            (&"x€".as_bytes()[..3], 2),
            ("x€".as_bytes(), 0),
            (&"😀".as_bytes()[..3], 3),
            ("😀".as_bytes(), 0),
            // Not UTF-8 at all: nothing waits, the bytes are shown replaced.
            (b"\x80\x80\x80\x80", 0),
        ];
        for (bytes, expected) in cases {
            assert_eq!(split_char_len(bytes), *expected, "{bytes:?}");
        }
    }

    /// The texts written for `pieces` of one line, the last one ending it.
    fn written(pieces: &[&[u8]]) -> Vec<String> {
        let redactor = redactor();
        let mut line = PartialLine::default();
        let last = pieces.len() - 1;
        pieces
            .iter()
            .enumerate()
            .filter_map(|(i, piece)| line.push(&redactor, piece, i == last))
            .collect()
    }

    #[test]
    fn a_line_cut_anywhere_is_written_as_if_whole() {
        let line = format!("deploying with {TOKEN} now é done\n");
        let expected = "deploying with *** now é done";
        for cut in 0..=line.len() {
            let (a, b) = line.as_bytes().split_at(cut);
            let texts = written(&[a, b]);
            assert_eq!(texts.concat(), expected, "cut at {cut}: {texts:?}");
        }
        // Cut twice, both cuts in the token.
        let at = line.find(TOKEN).unwrap();
        for first in at..at + TOKEN.len() {
            for second in first..at + TOKEN.len() {
                let b = line.as_bytes();
                let texts = written(&[&b[..first], &b[first..second], &b[second..]]);
                assert_eq!(texts.concat(), expected, "cut at {first} and {second}");
            }
        }
    }

    #[test]
    fn a_line_cut_just_before_its_newline_writes_no_empty_line() {
        let redactor = Redactor::default();
        let mut line = PartialLine::default();
        assert_eq!(
            line.push(&redactor, b"a long line", false).as_deref(),
            Some("a long line")
        );
        assert_eq!(line.push(&redactor, b"\n", true), None);
        // An empty line of its own is still written.
        assert_eq!(line.push(&redactor, b"\n", true).as_deref(), Some(""));
    }

    /// A log file made of `lines`, as the writer formats them.
    fn log_file(dir: &Path, lines: &[String]) -> PathBuf {
        let path = dir.join("1.log");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn numbered_lines(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10:00:00.000 out | line {i:04} {}", "x".repeat(i % 37)))
            .collect()
    }

    #[tokio::test]
    async fn an_excerpt_shows_only_whole_lines_wherever_it_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let lines = numbered_lines(400);
        let path = log_file(dir.path(), &lines);
        let size = std::fs::metadata(&path).unwrap().len();
        // Limits whose head and tail cuts sweep across whole lines, byte by byte.
        for limit in (2048..2048 + 2 * 80).chain([size - 1, size]) {
            let text = excerpt(&path, limit, "the-full-log").await.unwrap();
            let shown: Vec<&str> = text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with("… "))
                .collect();
            for line in &shown {
                assert!(
                    lines.iter().any(|l| l == line),
                    "limit {limit}: {line:?} is cut"
                );
            }
            assert_eq!(shown.first().copied(), lines.first().map(String::as_str));
            assert_eq!(shown.last().copied(), lines.last().map(String::as_str));
            assert!(text.len() as u64 <= limit.max(512) + 200, "limit {limit}");
        }
    }

    #[tokio::test]
    async fn last_lines_leaves_out_a_line_the_window_cuts_and_zbots_notes() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("10:00:00.000 out | {}", "y".repeat(20 * 1024));
        let lines = [
            long.clone(),
            "10:00:00.001 out | one".to_string(),
            "10:00:00.002 zbot | a note".to_string(),
            "10:00:00.003 err | two says zbot | hello".to_string(),
        ];
        let path = log_file(dir.path(), &lines);
        assert_eq!(
            last_lines(&path, 15).await.unwrap(),
            [
                "10:00:00.001 out | one",
                "10:00:00.003 err | two says zbot | hello"
            ]
        );
        // A line that begins exactly where the window does is whole, and shown.
        let exact = format!(
            "10:00:00.000 out | {}",
            "z".repeat(LAST_LINES_WINDOW as usize - 20)
        );
        let path = log_file(dir.path(), &[long, exact.clone()]);
        assert_eq!(last_lines(&path, 15).await.unwrap(), [exact]);
    }

    /// Each line's stamp is the time of day in the configured zone, with its offset.
    #[tokio::test]
    async fn a_line_is_stamped_in_the_configured_zone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let zone = chrono_tz::Asia::Kolkata;
        let (writer, log) = LogWriter::create(&path, redactor(), zone).await.unwrap();
        log.line(Stream::Stdout, b"hello\n".to_vec()).await;
        drop(log);
        writer.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (stamp, rest) = text.trim_end().split_once(' ').unwrap();
        assert_eq!(rest, "out | hello");
        let (time, offset) = stamp.split_at(12);
        assert_eq!(offset, "+05:30", "{stamp}");
        assert!(
            chrono::NaiveTime::parse_from_str(time, "%H:%M:%S%.3f").is_ok(),
            "{stamp}"
        );
    }

    #[tokio::test]
    async fn the_writer_redacts_pieces_of_interleaved_streams_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let (writer, log) = LogWriter::create(&path, redactor(), chrono_tz::Tz::UTC)
            .await
            .unwrap();
        let (a, b) = TOKEN.split_at(9);
        log.part(Stream::Stdout, format!("out {a}").into_bytes())
            .await;
        log.part(Stream::Stderr, format!("err {a}").into_bytes())
            .await;
        log.line(Stream::Stdout, format!("{b} out\n").into_bytes())
            .await;
        log.note("a note").await;
        log.part(
            Stream::Stderr,
            format!("{b} err, and a line that never ends {a}").into_bytes(),
        )
        .await;
        drop(log);
        writer.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let logged = |tag: &str| -> String {
            text.lines()
                .filter_map(|l| l.split_once(&format!(" {tag} | ")).map(|(_, t)| t))
                .collect()
        };
        assert_eq!(logged("out"), "out *** out");
        assert_eq!(
            logged("err"),
            format!("err *** err, and a line that never ends {a}")
        );
        assert_eq!(logged("zbot"), "a note");
    }
}
