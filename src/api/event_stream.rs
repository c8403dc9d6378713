//! `SubscribeEvents` over the wire: the node serves this one method on its own route, with a
//! codec that sends each event's bytes as they are, instead of through the generated service.
//!
//! The generated service wants a `StreamResponse` per item and encodes it once per stream, so an
//! event fanned out to 10,000 streams was cloned and encoded 10,000 times. Here each live event is
//! encoded once ([`crate::events::LiveEvent::encoded`]) and every stream copies the same bytes into
//! its HTTP/2 frame. The wire format is unchanged: a client sees the same `StreamResponse`
//! messages, byte for byte, as the generated service would send.
//!
//! The route sits inside the same layers as every other method (metrics, client address, session,
//! request text checks), so the caller is authenticated the same way.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut as _, Bytes};
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

use super::session::caller;
use crate::events::Events;
use crate::events::stream::EventStream;
use crate::proto::guildhall::v1 as pb;

/// The gRPC path this route answers.
pub const PATH: &str = "/guildhall.v1.GuildHall/SubscribeEvents";

/// Bytes a stream's encode buffer starts with: events are a few hundred bytes, and an idle stream
/// should not hold tonic's default of 8 KiB. The buffer grows when an event needs more.
const ENCODE_BUFFER_BYTES: usize = 1024;
/// Encoded bytes a stream gathers before handing them to HTTP/2 (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// Opens `SubscribeEvents` for the request's caller: the one place both the route and the
/// generated service's method go through.
pub async fn open(
    events: &Events,
    r: &Request<pb::SubscribeRequest>,
) -> Result<EventStream, Status> {
    let s = caller(r)?;
    let resume = match r.get_ref().resume_from_event_id.as_str() {
        "" => None,
        id => Some(id.parse::<u64>().map_err(|_| {
            Status::invalid_argument("resume_from_event_id: must be an event id (a decimal number)")
        })?),
    };
    // While the stream is open the user counts as online (no pushes), and holds one of their
    // `max_event_streams_per_user` slots.
    Ok(crate::events::stream::subscribe(events, &s.user_id, resume).await?)
}

/// The HTTP service answering [`PATH`]; mount it beside the generated service, which it shadows
/// for this one method.
#[derive(Debug, Clone)]
pub struct SubscribeRoute {
    events: Events,
    max_request_bytes: usize,
}

impl SubscribeRoute {
    /// Streams from `events`, refusing requests over `max_request_bytes` encoded as every method
    /// does.
    pub fn new(events: Events, max_request_bytes: usize) -> Self {
        Self {
            events,
            max_request_bytes,
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for SubscribeRoute {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = Subscribe {
            events: self.events.clone(),
        };
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(PreEncoded)
                .apply_max_message_size_config(Some(max_request_bytes), None);
            Ok(grpc.server_streaming(method, req).await)
        })
    }
}

struct Subscribe {
    events: Events,
}

impl tonic::server::ServerStreamingService<pb::SubscribeRequest> for Subscribe {
    type Response = Bytes;
    type ResponseStream = EventStream;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EventStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<pb::SubscribeRequest>) -> Self::Future {
        let events = self.events.clone();
        Box::pin(async move { open(&events, &request).await.map(Response::new) })
    }
}

/// Decodes the `SubscribeRequest` with prost and sends already-encoded `StreamResponse` bytes as
/// they are.
#[derive(Debug, Clone, Copy)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = pb::SubscribeRequest;
    type Encoder = PassThrough;
    type Decoder = tonic_prost::ProstDecoder<pb::SubscribeRequest>;

    fn encoder(&mut self) -> PassThrough {
        PassThrough
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Writes an encoded message into the frame as it is.
#[derive(Debug, Clone, Copy)]
struct PassThrough;

impl Encoder for PassThrough {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(ENCODE_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    }
}
