//! The one layer that measures every gRPC call: `guildhall_grpc_requests_total{method, code}` and
//! `guildhall_grpc_request_duration_seconds{method}` ([`crate::metrics`]).
//!
//! It is the outermost layer of the server, so calls refused by the session, server-call or text
//! layers are counted too. The method label comes only from the node's own method set (its
//! services, health and reflection, read from their descriptor sets); any other path is `other`,
//! so a client can't grow the label set. HTTP routes (webhooks, files, `/metrics`) are not gRPC
//! and pass through unmeasured.
//!
//! The status is read where gRPC puts it: the `grpc-status` header of a trailers-only answer (a
//! refusal before any handler ran), or else the response's trailers. A call is counted when its
//! response ends, so a `SubscribeEvents` stream counts when it closes; a response dropped before
//! its end (the client went away) counts as `Cancelled`. The duration runs from the request's
//! arrival to the response's end, except for server-streaming methods, where it runs to the
//! stream's opening (the response headers), so hour-long streams don't swamp the histogram.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prost::Message as _;
use tower::{Layer, Service};

use crate::metrics::{Metrics, OTHER};

/// gRPC status code names by number, as `tonic::Code`'s `Debug` spells them.
const CODES: [&str; 17] = [
    "Ok",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// A known method: its label and whether the server streams its answer.
#[derive(Debug, Clone, Copy)]
struct Method {
    label: &'static str,
    server_streaming: bool,
}

/// The node's method set, read once per process from the descriptor sets of everything it serves.
/// The labels are leaked once: a fixed set of a few hundred short strings.
fn methods() -> &'static HashMap<String, Method> {
    static METHODS: OnceLock<HashMap<String, Method>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let sets = [
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut methods = HashMap::new();
        for bytes in sets {
            // Generated at build time (ours) or shipped with the crates; they decode.
            let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        let name =
                            format!("{}.{}/{}", file.package(), service.name(), method.name());
                        let path = format!("/{name}");
                        let label: &'static str = Box::leak(name.into_boxed_str());
                        methods.insert(
                            path,
                            Method {
                                label,
                                server_streaming: method.server_streaming(),
                            },
                        );
                    }
                }
            }
        }
        methods
    })
}

/// The name of a `grpc-status` value (`Unknown` for anything unreadable).
fn code_name(value: Option<&http::HeaderValue>) -> &'static str {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("Unknown")
}

/// Tower layer measuring gRPC calls into a node's [`Metrics`]; see the module docs.
#[derive(Debug, Clone)]
pub struct CallMetricsLayer {
    metrics: Metrics,
}

impl CallMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        methods();
        Self { metrics }
    }
}

impl<S> Layer<S> for CallMetricsLayer {
    type Service = CallMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`CallMetricsLayer`] wraps around the server.
#[derive(Debug, Clone)]
pub struct CallMetrics<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CallMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Unpin,
    ResBody: Body + Unpin,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = MeteredCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let meter = is_grpc.then(|| {
            let method = methods().get(request.uri().path()).copied();
            Meter {
                metrics: self.metrics.clone(),
                method: method.map_or(OTHER, |m| m.label),
                streaming: method.is_some_and(|m| m.server_streaming),
                started: Instant::now(),
                done: false,
            }
        });
        // No clone of the inner stack and no allocation: the inner future is wrapped as it is.
        MeteredCall {
            inner: self.inner.call(request),
            meter,
        }
    }
}

/// The future of a measured call: the inner service's, then the response with its body metered.
#[derive(Debug)]
pub struct MeteredCall<F> {
    inner: F,
    meter: Option<Meter>,
}

impl<F, ResBody, E> Future for MeteredCall<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>> + Unpin,
{
    type Output = Result<http::Response<MeteredBody<ResBody>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => response,
        };
        let mut meter = self.meter.take();
        if let Some(meter) = &mut meter {
            if let Some(status) = response.headers().get("grpc-status") {
                // Trailers-only: the call ended here.
                meter.finish(code_name(Some(status)));
            } else if meter.streaming {
                meter.opened();
            }
        }
        Poll::Ready(Ok(response.map(|body| MeteredBody { body, meter })))
    }
}

/// One call being measured; counted once, at the latest when dropped.
#[derive(Debug)]
struct Meter {
    metrics: Metrics,
    method: &'static str,
    streaming: bool,
    started: Instant,
    done: bool,
}

impl Meter {
    /// A server stream opened: its duration ends here.
    fn opened(&self) {
        self.metrics
            .grpc_duration(self.method, self.started.elapsed());
    }

    /// The call ended with `code`.
    fn finish(&mut self, code: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        self.metrics.grpc_call(self.method, code);
        if !self.streaming {
            self.metrics
                .grpc_duration(self.method, self.started.elapsed());
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Dropped before its trailers: the client went away (or the server is stopping).
        self.finish("Cancelled");
    }
}

/// A response body that reports its call's status when its trailers pass.
#[derive(Debug)]
pub struct MeteredBody<B> {
    body: B,
    meter: Option<Meter>,
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(meter) = &mut this.meter {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        meter.finish(code_name(trailers.get("grpc-status")));
                    }
                }
                Poll::Ready(Some(Err(_))) => meter.finish("Internal"),
                // Ended without trailers: not a well-formed gRPC answer.
                Poll::Ready(None) => meter.finish("Unknown"),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_set_covers_every_service_served() {
        let m = methods();
        for path in [
            "/guildhall.v1.GuildHall/SendMessage",
            "/protocol.profile.v1.ProfileService/GetProfile",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(m.contains_key(path), "{path}");
        }
        assert!(m["/guildhall.v1.GuildHall/SubscribeEvents"].server_streaming);
        assert!(!m["/guildhall.v1.GuildHall/SendMessage"].server_streaming);
        assert_eq!(
            m["/guildhall.v1.GuildHall/Ping"].label,
            "guildhall.v1.GuildHall/Ping"
        );
        assert_eq!(
            code_name(Some(&http::HeaderValue::from_static("5"))),
            "NotFound"
        );
        assert_eq!(
            code_name(Some(&http::HeaderValue::from_static("99"))),
            "Unknown"
        );
        assert_eq!(code_name(None), "Unknown");
        assert_eq!(format!("{:?}", tonic::Code::from_i32(16)), CODES[16]);
    }
}
