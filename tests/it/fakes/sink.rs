//! A notification webhook receiver: records every POST (its headers and body) and answers as told —
//! 204, 500, or never.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Fail,
    /// Holds every request open, never answering.
    Hang,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct FakeSink {
    pub addr: SocketAddr,
    answer: Answer,
    received: Arc<Mutex<Vec<Received>>>,
    changed: super::Changes,
}

impl FakeSink {
    pub async fn start(answer: Answer) -> FakeSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeSink {
            addr,
            answer,
            received: Arc::default(),
            changed: super::Changes::default(),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `done` gives a value from what was received.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        mut done: impl FnMut(&[Received]) -> Option<T>,
    ) -> T {
        self.changed
            .wait_for(
                what,
                Duration::from_secs(60),
                || done(&self.received()),
                || format!("received: {:#?}", self.received()),
            )
            .await
    }
}

async fn receive(State(fake): State<FakeSink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-zbot-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    fake.received.lock().unwrap().push(Received {
        signature,
        body: body.to_vec(),
    });
    fake.changed.touch();
    match fake.answer {
        Answer::Accept => StatusCode::NO_CONTENT,
        Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::Hang => std::future::pending().await,
    }
}
