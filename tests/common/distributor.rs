//! A UnifiedPush distributor for tests: an HTTP server on loopback that records the JSON bodies
//! POSTed to it and answers from a script.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::{TestNode, TestUser, authed};
use guildhall::proto::guildhall::v1 as pb;

/// How long [`Distributor::wait_for_count`] waits.
const WAIT: Duration = Duration::from_secs(15);

/// `who` registers the push distributor `url` on `node` (their homeserver or a host).
pub async fn register_distributor(node: &TestNode, who: &TestUser, url: &str) {
    node.client()
        .await
        .register_push_distributor(authed(
            &who.token,
            pb::RegisterPushDistributorRequest {
                distributor_url: url.into(),
            },
        ))
        .await
        .expect("register distributor");
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Never answers.
    Hang,
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: serde_json::Value,
}

/// A UnifiedPush distributor for tests: an HTTP server on 127.0.0.1:0 that records every POST and answers from a script of
/// (path, answer) pairs, each used once, in order (200 when none is left for the path).
#[derive(Clone)]
pub struct Distributor {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<(&'static str, Answer)>>>,
}

impl Distributor {
    pub async fn start(script: &[(&'static str, Answer)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let receiver = Self {
            addr: listener.local_addr().expect("addr"),
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { shared.answer(request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    async fn answer(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
        let path = request.uri().path().to_owned();
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        self.received.lock().expect("lock").push(Received {
            path: path.clone(),
            body,
        });
        let answer = {
            let mut script = self.script.lock().expect("lock");
            match script.iter().position(|(p, _)| *p == path) {
                Some(i) => script.remove(i).map_or(Answer::Status(200), |(_, a)| a),
                None => Answer::Status(200),
            }
        };
        match answer {
            Answer::Hang => std::future::pending().await,
            Answer::Status(code) => {
                let mut response = hyper::Response::new(Full::new(Bytes::new()));
                *response.status_mut() = hyper::StatusCode::from_u16(code).expect("status");
                Ok(response)
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// The JSON bodies received, in arrival order, whatever their path.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    pub async fn wait_for_count(&self, path: &str, n: usize) -> Vec<Received> {
        super::wait_for(WAIT, || async { self.at(path).len() >= n }).await;
        self.at(path)
    }
}
