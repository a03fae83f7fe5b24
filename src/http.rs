//! A small HTTP client for the services zbot reaches without a crate of their own (Heroku's Platform
//! API, Campfire's bot API, GitHub's archive redirect): hyper with rustls, a connect timeout and a
//! total timeout on every call, bodies read up to a bound, redirects never followed.
//!
//! Errors never carry the URL: a URL may hold a token (a GitHub archive link, a Campfire bot key).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The largest answer body read into memory; a longer one is an error.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why a call got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request could not be built (a URL that does not parse).
    #[error("not a valid request: {0}")]
    Request(String),
    /// No answer: the connection failed or broke.
    #[error("no answer: {0}")]
    Network(String),
    /// No whole answer within the call's time.
    #[error("no answer within {}s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The answer's body is longer than [`MAX_BODY`].
    #[error("the answer is longer than {MAX_BODY} bytes")]
    TooLarge,
}

/// An answer, whatever its status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client with its timeouts; cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    /// The longest one call may take, from connecting to the last byte of the answer.
    timeout: Duration,
}

/// A body being received: its frames as they arrive.
pub struct Streaming {
    body: hyper::body::Incoming,
}

impl Streaming {
    /// The next piece of the body; `None` at its end. An error ends it too.
    pub async fn next(&mut self) -> Option<Result<Bytes, HttpError>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
                Err(e) => return Some(Err(HttpError::Network(e.to_string()))),
            }
        }
    }
}

impl HttpClient {
    /// A client giving up on a connection after `connect` and on a call after `timeout`; it accepts
    /// `http://` URLs (for fakes on loopback) as well as `https://`.
    pub fn new(connect: Duration, timeout: Duration) -> Result<HttpClient, HttpError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| HttpError::Request(format!("the system's CA certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// A request of `method` to `url` with `headers` and `body`.
    pub fn request(
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<http::Request<Full<Bytes>>, HttpError> {
        let mut builder = http::Request::builder().method(method).uri(url);
        builder = builder.header("user-agent", concat!("zbot/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            // The URL is left out: it may hold a token.
            .map_err(|e| HttpError::Request(e.to_string()))
    }

    /// Sends `request` and reads the whole answer, within the client's timeout.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Answer, HttpError> {
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Network(describe(&e)))?;
            let (parts, body) = response.into_parts();
            let mut streaming = Streaming { body };
            let mut bytes = Vec::new();
            while let Some(piece) = streaming.next().await {
                bytes.extend_from_slice(&piece?);
                if bytes.len() > MAX_BODY {
                    return Err(HttpError::TooLarge);
                }
            }
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: Bytes::from(bytes),
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(HttpError::Timeout(self.timeout)))
    }

    /// Sends `request` and returns its status once the headers arrive (within the client's timeout),
    /// with the body to read as it comes, for as long as the caller wants.
    pub async fn open(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(u16, Streaming), HttpError> {
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
            .map_err(|e| HttpError::Network(describe(&e)))?;
        let status = response.status().as_u16();
        Ok((
            status,
            Streaming {
                body: response.into_body(),
            },
        ))
    }
}

/// hyper's error with its cause, which says what failed (refused, reset, TLS).
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}
