//! A tiny UnifiedPush distributor for tests: an HTTP server on loopback that records the JSON
//! bodies POSTed to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::{TestNode, TestUser, authed};
use guildhall::proto::guildhall::v1 as pb;

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

/// A tiny HTTP server that records the JSON bodies POSTed to it.
#[derive(Clone)]
pub struct Distributor {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Distributor {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let me = Self {
            addr: listener.local_addr().expect("addr"),
            bodies: Arc::default(),
        };
        let shared = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move {
                            let body: hyper::Request<hyper::body::Incoming> = request;
                            let bytes = body
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let json =
                                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                            shared.bodies.lock().expect("lock").push(json);
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        me
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().expect("lock").clone()
    }
}
