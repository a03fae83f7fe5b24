//! A deploy's log file: every line of output, interleaved, time-stamped and redacted, written as it
//! arrives so memory stays flat however much a deploy prints. [`excerpt`] reads back the head and tail
//! of a log for a size-limited page such as a gist.

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
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
            Stream::Zbot => "zbot",
        }
    }
}

/// Lines waiting to be written; a full channel makes readers wait, which is what bounds memory.
const CHANNEL_LINES: usize = 1024;

/// A handle to send lines to the log; clone it for each reader.
#[derive(Clone, Debug)]
pub struct LogSender {
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
}

impl LogSender {
    pub async fn line(&self, stream: Stream, bytes: Vec<u8>) {
        // The writer only stops when every sender is gone, so this cannot fail while we hold one.
        let _ = self.tx.send((stream, bytes)).await;
    }

    pub async fn note(&self, text: impl Into<String>) {
        self.line(Stream::Zbot, text.into().into_bytes()).await;
    }
}

/// The task writing one log file. [`LogWriter::finish`] waits until every line is on disk.
#[derive(Debug)]
pub struct LogWriter {
    pub path: PathBuf,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LogWriter {
    /// Creates (truncating) the log file and starts its writer.
    pub async fn create(
        path: &Path,
        redactor: Redactor,
    ) -> std::io::Result<(LogWriter, LogSender)> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = File::create(path).await?;
        let (tx, mut rx) = mpsc::channel::<(Stream, Vec<u8>)>(CHANNEL_LINES);
        let task = tokio::spawn(async move {
            let mut out = BufWriter::with_capacity(64 * 1024, file);
            while let Some((stream, bytes)) = rx.recv().await {
                let text = String::from_utf8_lossy(&bytes);
                let text = redactor.redact(text.trim_end_matches(['\n', '\r']));
                let stamp = chrono::Local::now().format("%H:%M:%S%.3f");
                out.write_all(format!("{stamp} {} | {text}\n", stream.tag()).as_bytes())
                    .await?;
                if rx.is_empty() {
                    out.flush().await?;
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

/// At most `limit` bytes of the log at `path`: all of it if it fits, else its beginning and its end
/// with a line saying how much was left out and where the whole log is.
pub async fn excerpt(path: &Path, limit: u64, full_log_at: &str) -> std::io::Result<String> {
    let mut file = File::open(path).await?;
    let size = file.metadata().await?.len();
    if size <= limit {
        let mut all = Vec::with_capacity(size as usize);
        file.read_to_end(&mut all).await?;
        return Ok(String::from_utf8_lossy(&all).into_owned());
    }
    let half = (limit / 2).saturating_sub(256).max(1);
    let mut head = vec![0; half as usize];
    file.read_exact(&mut head).await?;
    let mut tail = vec![0; half as usize];
    file.seek(SeekFrom::Start(size - half)).await?;
    file.read_exact(&mut tail).await?;
    // Cut at line boundaries so no line is shown half.
    let head_end = head
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let tail_start = tail.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    let left_out = size - head_end as u64 - (tail.len() - tail_start) as u64;
    Ok(format!(
        "{}\n… {left_out} bytes left out here; the whole log ({size} bytes) is at {full_log_at} …\n\n{}",
        String::from_utf8_lossy(&head[..head_end]),
        String::from_utf8_lossy(&tail[tail_start..])
    ))
}

/// The last `lines` lines of output in the log (for a failure message).
pub async fn last_lines(path: &Path, lines: usize) -> std::io::Result<Vec<String>> {
    let mut file = File::open(path).await?;
    let size = file.metadata().await?.len();
    let window = size.min(16 * 1024);
    file.seek(SeekFrom::Start(size - window)).await?;
    let mut buf = Vec::with_capacity(window as usize);
    file.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().filter(|l| !l.contains(" zbot | ")).collect();
    Ok(all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect())
}
