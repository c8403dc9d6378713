//! The web client's side of the node: the embedded page and files (`src/api/web.rs`), gRPC-web on
//! the gRPC port, and the CORS answers a browser needs to call a node other than the one that
//! served the page.
//!
//! gRPC-web calls here go through `tonic_web`'s client layer over a plain HTTP/1.1 hyper client,
//! as a browser's `fetch` would send them: an implementation of the wire format that isn't the
//! node's. Plain HTTP requests use hyper directly.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use guildhall::proto::guildhall::v1 as pb;
use guildhall::proto::guildhall::v1::guild_hall_client::GuildHallClient;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Waits for one HTTP answer.
const ANSWER: Duration = Duration::from_secs(10);

/// A gRPC-web client of `node` over HTTP/1.1.
fn web_client(
    node: &TestNode,
) -> GuildHallClient<
    tonic_web::GrpcWebClientService<
        Client<HttpConnector, tonic_web::GrpcWebCall<tonic::body::Body>>,
    >,
> {
    // hyper-util is built with HTTP/1.1 only, as a browser's fetch of a gRPC-web call may be.
    let http = Client::builder(TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebClientLayer::new())
        .service(http);
    let origin = node.address().parse().expect("node address is a URI");
    GuildHallClient::with_origin(service, origin)
}

/// One plain HTTP/1.1 request; the answer's parts and body.
async fn fetch(request: http::Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(ANSWER, http.request(request))
        .await
        .expect("an answer in time")
        .expect("the request succeeds");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    (parts, body)
}

fn get(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url)
        .body(Full::default())
        .expect("request")
}

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .expect("ascii header")
}

/// Every file under `web/dist/` (path under it, bytes), read from the checkout.
fn dist_files() -> Vec<(String, Vec<u8>)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read web/dist") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("under root");
                let url = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((url, std::fs::read(&path).expect("read file")));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dist");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn the_page_and_its_files_are_served_from_the_binary() {
    let node = TestNode::spawn().await;
    let base = node.address();
    let files = dist_files();
    let index = files
        .iter()
        .find(|(path, _)| path == "index.html")
        .expect("web/dist/index.html is committed");

    // `/` and every invite link answer the page, with a policy that keeps the invite token in the
    // path from leaking through Referer, and nothing but the page's own scripts running.
    for path in ["/", "/invite/AbCdEf123", "/index.html"] {
        let (parts, body) = fetch(get(&format!("{base}{path}"))).await;
        assert_eq!(parts.status, 200, "{path}");
        assert_eq!(
            body.as_ref(),
            index.1.as_slice(),
            "{path} answers index.html"
        );
        assert_eq!(header(&parts, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&parts, "referrer-policy"), "no-referrer");
        assert_eq!(header(&parts, "x-content-type-options"), "nosniff");
        let csp = header(&parts, "content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    // Every built file at its own path, byte for byte, revalidated by ETag.
    for (path, bytes) in &files {
        let url = format!("{base}/{path}");
        let (parts, body) = fetch(get(&url)).await;
        assert_eq!(parts.status, 200, "{path}");
        assert_eq!(
            body.as_ref(),
            bytes.as_slice(),
            "{path} is the committed file"
        );
        assert_eq!(header(&parts, "cache-control"), "no-cache");
        let etag = header(&parts, "etag").to_owned();
        let again = http::Request::get(&url)
            .header("if-none-match", &etag)
            .body(Full::default())
            .expect("request");
        let (parts, body) = fetch(again).await;
        assert_eq!(parts.status, 304, "{path} unchanged");
        assert!(body.is_empty());
    }
    let js = files
        .iter()
        .find(|(path, _)| path.ends_with(".js"))
        .expect("a script in web/dist");
    let (parts, _) = fetch(get(&format!("{base}/{}", js.0))).await;
    assert_eq!(
        header(&parts, "content-type"),
        "text/javascript; charset=utf-8"
    );

    // A browser that takes gzip gets the script gzipped, the same bytes once unpacked, under a
    // tag of its own.
    let url = format!("{base}/{}", js.0);
    let gzip_get = |tag: Option<&str>| {
        let mut request = http::Request::get(&url).header("accept-encoding", "gzip, br");
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        request.body(Full::default()).expect("request")
    };
    let (parts, body) = fetch(gzip_get(None)).await;
    assert_eq!(header(&parts, "content-encoding"), "gzip");
    assert_eq!(header(&parts, "vary"), "accept-encoding");
    assert!(
        body.len() < js.1.len() / 2,
        "{} of {}",
        body.len(),
        js.1.len()
    );
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut unpacked)
        .expect("valid gzip");
    assert_eq!(
        unpacked, js.1,
        "the gzipped script unpacks to the committed file"
    );
    let gz_tag = header(&parts, "etag").to_owned();
    let (plain, _) = fetch(get(&url)).await;
    assert_ne!(header(&plain, "etag"), gz_tag, "each form has its own tag");
    let (parts, _) = fetch(gzip_get(Some(&gz_tag))).await;
    assert_eq!(parts.status, 304);

    // Nothing else is made up: an unknown path is a 404 to a browser, and UNIMPLEMENTED to a
    // gRPC-web call.
    let (parts, _) = fetch(get(&format!("{base}/no-such-file.js"))).await;
    assert_eq!(parts.status, 404);
    let call = http::Request::post(format!("{base}/no.such.v1.Service/Method"))
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .expect("request");
    let (parts, _) = fetch(call).await;
    assert_eq!(header(&parts, "grpc-status"), "12", "UNIMPLEMENTED");
    // The rest of the HTTP side still answers HTTP/1.1 clients.
    let (parts, _) = fetch(get(&format!("{base}/healthz"))).await;
    assert_eq!(parts.status, 200);
}

#[tokio::test]
async fn a_page_from_another_origin_may_call_the_api() {
    let node = TestNode::spawn().await;
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri(format!(
            "{}/guildhall.v1.GuildHall/ListGuilds",
            node.address()
        ))
        .header("origin", "https://chat.other.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web,x-user-agent",
        )
        .body(Full::default())
        .expect("request");
    let (parts, _) = fetch(preflight).await;
    assert_eq!(parts.status, 200);
    assert_eq!(header(&parts, "access-control-allow-origin"), "*");
    let allowed = header(&parts, "access-control-allow-headers");
    for name in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
    ] {
        assert!(allowed.contains(name), "{name} allowed: {allowed}");
    }
    assert!(header(&parts, "access-control-allow-methods").contains("POST"));

    // The answer itself lets the page read the gRPC status.
    let call = http::Request::post(format!(
        "{}/guildhall.v1.GuildHall/ListGuilds",
        node.address()
    ))
    .header("origin", "https://chat.other.example")
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
    .expect("request");
    let (parts, _) = fetch(call).await;
    assert_eq!(header(&parts, "access-control-allow-origin"), "*");
    let exposed = header(&parts, "access-control-expose-headers");
    assert!(
        exposed.contains("grpc-status") && exposed.contains("grpc-message"),
        "{exposed}"
    );
    // No token: refused as over gRPC, readable by the page.
    assert_eq!(header(&parts, "grpc-status"), "16");
}

#[tokio::test]
async fn grpc_web_carries_unary_calls_refusals_and_the_event_stream() {
    let node = TestNode::spawn().await;
    let mut web = web_client(&node);

    // A public call, and a signed registration made through gRPC-web.
    let info = web
        .get_server_info(pb::Empty {})
        .await
        .expect("GetServerInfo over gRPC-web")
        .into_inner();
    assert_eq!(info.server_pubkey, node.audience().to_hex());
    let identity = new_identity("browser");
    let ada = web
        .register(identity.register_request(
            &node.audience(),
            "Ada",
            Some("Browser"),
            guildhall::identity::freshness::now_ms(),
        ))
        .await
        .expect("Register over gRPC-web")
        .into_inner();

    // Refusals keep their code and message.
    let refused = web
        .create_guild(authed(
            &ada.token,
            pb::CreateGuildRequest {
                name: String::new(),
                avatar_url: None,
            },
        ))
        .await
        .expect_err("an empty guild name is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("name:"),
        "{}",
        refused.message()
    );
    let refused = web
        .list_guilds(authed(
            "0".repeat(64).as_str(),
            pb::ListGuildsRequest::default(),
        ))
        .await
        .expect_err("a wrong token is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // The event stream, server-streamed over HTTP/1.1: a message sent over plain gRPC by another
    // member arrives on it.
    let guild = web
        .create_guild(authed(
            &ada.token,
            pb::CreateGuildRequest {
                name: "Web".into(),
                avatar_url: None,
            },
        ))
        .await
        .expect("create guild")
        .into_inner();
    let channel = web
        .list_channels(authed(
            &ada.token,
            pb::ListChannelsRequest {
                guild_id: guild.guild.expect("guild").id,
            },
        ))
        .await
        .expect("list channels")
        .into_inner()
        .channels[0]
        .id
        .clone();
    let bob = register(&node, "Bob").await;
    join_room(&node, &bob, &guild.token).await;
    let mut stream = web
        .subscribe_events(authed(&ada.token, pb::SubscribeRequest::default()))
        .await
        .expect("SubscribeEvents over gRPC-web")
        .into_inner();
    // The stream is open once the node has registered it; a message sent before that could be
    // missed, so send until one arrives (bounded).
    let mut seen = None;
    for attempt in 0..20 {
        send_text(&node, &bob.token, &channel, &format!("hello {attempt}")).await;
        if let Ok(Ok(Some(event))) =
            tokio::time::timeout(Duration::from_millis(500), stream.message()).await
        {
            seen = Some(event);
            break;
        }
    }
    let mut event = seen.expect("an event over gRPC-web");
    for _ in 0..100 {
        if let Some(pb::stream_response::Event::MessageCreated(created)) = &event.event {
            let message = created.message.as_ref().expect("message");
            assert!(message.text.starts_with("hello "), "{}", message.text);
            assert_eq!(message.channel_id, channel);
            return;
        }
        event = tokio::time::timeout(ANSWER, stream.message())
            .await
            .expect("next event in time")
            .expect("stream ok")
            .expect("stream open");
    }
    panic!("no message event over gRPC-web");
}
