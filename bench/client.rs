//! A minimal HTTP/1.1 keep-alive client for the webhook cases (signed as `fakes::wire` signs).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::fakes::wire::sign;

/// One keep-alive connection.
pub struct Connection {
    stream: BufReader<TcpStream>,
    host: SocketAddr,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
            host: addr,
        })
    }

    /// POSTs a signed GitHub delivery and returns the response status.
    pub async fn deliver(
        &mut self,
        path: &str,
        event: &str,
        delivery: &str,
        secret: &str,
        body: &[u8],
    ) -> std::io::Result<u16> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nUser-Agent: GitHub-Hookshot/bench\r\n\
             X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            sign(secret, body),
            body.len()
        );
        let writer = self.stream.get_mut();
        writer.write_all(request.as_bytes()).await?;
        writer.write_all(body).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> std::io::Result<u16> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = self.stream.read_u8().await?;
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}
