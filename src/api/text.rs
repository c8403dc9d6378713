//! The one check of text in every gRPC request, before any handler runs.
//!
//! Each method's request type is known from the node's own descriptor set
//! ([`crate::proto::FILE_DESCRIPTOR_SET`]), so this layer walks the encoded request (its protobuf
//! wire format, without decoding it into a message) and checks every string field at any depth,
//! in every method of every service the node serves, present and future: the field must be UTF-8
//! and free of control characters, except tab, line feed and carriage return in the multi-line
//! fields listed in [`MULTILINE`] ([`rules::no_controls`]). A refusal is `INVALID_ARGUMENT` naming
//! the field as a path (`invite.guild_name`, `components[1].label`, `metadata["k"]`) and reaches
//! no handler, so it changes nothing. A request that is not valid protobuf is refused the same
//! way (`request: …`) rather than failing inside the decoder.
//!
//! It runs after the session and server-call layers (an unauthenticated caller learns nothing
//! about its fields), and only for the node's gRPC methods: HTTP routes, health and reflection
//! pass through. Field rules stay where they are (names refuse more than control characters);
//! this is the floor every text field stands on.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use tower::{Layer, Service};

use crate::accounts::rules::{self, Lines};
use crate::error::Error;

/// String fields that hold multi-line text (`package.Message.field`, map entries included): here a
/// tab, line feed or carriage return is text, not a control. Every other string is one line.
pub const MULTILINE: &[&str] = &[
    "guildhall.v1.SendMessageRequest.text",
    "guildhall.v1.SendMessageRequest.MetadataEntry.value",
    "guildhall.v1.EditMessageRequest.text",
    "guildhall.v1.SetUserNoteRequest.note",
    "guildhall.v1.UserNote.note",
    "guildhall.v1.Message.text",
    "guildhall.v1.Message.MetadataEntry.value",
    "guildhall.v1.UpdateUserRequest.bio",
    "guildhall.v1.UpdateFederatedProfileRequest.bio",
    "guildhall.v1.User.bio",
];

/// Largest request body the layer reads: one message of [`crate::api::MAX_REQUEST_BYTES`] in its
/// gRPC frame (5 bytes of header). Every method of the node is unary or server-streaming, so a
/// request body is one frame. A larger body is refused before it is read to the end, for every
/// method alike, whether or not its request type can carry text.
const FRAMED_REQUEST_BYTES: usize = crate::api::MAX_REQUEST_BYTES + 5;

/// How deep messages (or groups, in unknown fields) may nest in a request: prost's own recursion
/// limit. No request type of the node nests this deep; a body that does is refused as malformed.
pub const MAX_DEPTH: u32 = 100;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text(Lines),
    Message(usize),
    Other,
}

#[derive(Debug)]
struct Field {
    name: String,
    repeated: bool,
    kind: Kind,
}

#[derive(Debug, Default)]
struct MessageType {
    name: String,
    fields: HashMap<u32, Field>,
    map_entry: bool,
    /// Whether a string field can occur in it at any depth (else it is not walked).
    has_text: bool,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A field broke a text rule.
    Field { field: String, rule: String },
    /// The bytes are not a protobuf message of the request type.
    Malformed(String),
}

/// Every request type of the node's services and where their string fields are.
#[derive(Debug)]
pub struct TextRules {
    messages: Vec<MessageType>,
    methods: HashMap<String, usize>,
}

impl TextRules {
    /// The rules for the services in `descriptors` (an encoded `FileDescriptorSet`).
    pub fn from_descriptors(descriptors: &[u8]) -> Result<Self, prost::DecodeError> {
        let set = FileDescriptorSet::decode(descriptors)?;
        let mut protos: Vec<(String, &DescriptorProto)> = Vec::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                collect(package, message, &mut protos);
            }
        }
        let index: HashMap<String, usize> = protos
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let multiline: HashSet<&str> = MULTILINE.iter().copied().collect();
        let mut messages: Vec<MessageType> = protos
            .iter()
            .map(|(name, proto)| MessageType {
                name: name.clone(),
                map_entry: proto.options.as_ref().is_some_and(|o| o.map_entry()),
                fields: proto
                    .field
                    .iter()
                    .filter_map(|f| {
                        let number = u32::try_from(f.number()).ok()?;
                        let kind = match f.r#type() {
                            Type::String => {
                                let path = format!("{name}.{}", f.name());
                                Kind::Text(if multiline.contains(path.as_str()) {
                                    Lines::Multi
                                } else {
                                    Lines::Single
                                })
                            }
                            Type::Message => index
                                .get(f.type_name().trim_start_matches('.'))
                                .map_or(Kind::Other, |&i| Kind::Message(i)),
                            _ => Kind::Other,
                        };
                        let field = Field {
                            name: f.name().to_owned(),
                            repeated: f.label() == Label::Repeated,
                            kind,
                        };
                        Some((number, field))
                    })
                    .collect(),
                has_text: false,
            })
            .collect();
        // A message has text if a field is a string or a message that has text; iterate to the
        // fixed point (message types may refer to themselves, e.g. Component).
        loop {
            let mut changed = false;
            for i in 0..messages.len() {
                if messages[i].has_text {
                    continue;
                }
                let has = messages[i].fields.values().any(|f| match f.kind {
                    Kind::Text(_) => true,
                    Kind::Message(t) => messages[t].has_text,
                    Kind::Other => false,
                });
                if has {
                    messages[i].has_text = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut methods = HashMap::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    if let Some(&i) = index.get(method.input_type().trim_start_matches('.')) {
                        methods.insert(path, i);
                    }
                }
            }
        }
        Ok(Self { messages, methods })
    }

    /// The request type of a gRPC path, if it is one of the node's methods and can carry text.
    #[cfg(test)]
    fn request_type(&self, path: &str) -> Option<usize> {
        self.method(path).filter(|&t| self.messages[t].has_text)
    }

    /// The request type of a gRPC path, if it is one of the node's methods.
    fn method(&self, path: &str) -> Option<usize> {
        self.methods.get(path).copied()
    }

    /// Checks the HTTP/2 gRPC request body of a call to `path` as the layer does: a method of the
    /// node whose request type can carry text has every string field of every frame checked;
    /// anything else passes. Public so the fuzz targets (`fuzz/`, `tests/fuzz.rs`) run this very
    /// check.
    pub fn check_request(&self, path: &str, body: &[u8]) -> Result<(), Error> {
        match self.method(path) {
            Some(ty) => self.check_request_type(ty, body),
            None => Ok(()),
        }
    }

    /// [`TextRules::check_request`] for a known request type.
    fn check_request_type(&self, ty: usize, body: &[u8]) -> Result<(), Error> {
        if self.messages[ty].has_text {
            self.check_body(ty, body)
        } else {
            Ok(())
        }
    }

    /// The gRPC paths of the node's methods, sorted (the fuzz targets pick one by index).
    pub fn method_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.methods.keys().map(String::as_str).collect();
        paths.sort_unstable();
        paths
    }

    /// Checks an HTTP/2 gRPC request body: each uncompressed frame holds one message of type `ty`.
    /// A body that is not well framed, or compressed, is left to tonic to refuse.
    fn check_body(&self, ty: usize, mut body: &[u8]) -> Result<(), Error> {
        while body.len() >= 5 {
            let compressed = body[0] != 0;
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            let Some(frame) = body.get(5..5 + len) else {
                return Ok(());
            };
            if !compressed {
                self.check(ty, frame).map_err(|refusal| match refusal {
                    Refusal::Field { field, rule } => Error::invalid(field, rule),
                    Refusal::Malformed(why) => Error::invalid(
                        "request",
                        format!("is not a valid {} message: {why}", self.messages[ty].name),
                    ),
                })?;
            }
            body = &body[5 + len..];
        }
        Ok(())
    }

    /// Checks one encoded message of type `ty`.
    fn check(&self, ty: usize, bytes: &[u8]) -> Result<(), Refusal> {
        self.walk(ty, bytes, "", 0)
    }

    fn walk(&self, ty: usize, mut buf: &[u8], prefix: &str, depth: u32) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(Refusal::Malformed("messages nested too deeply".into()));
        }
        let message = &self.messages[ty];
        // Occurrences so far of each repeated field (to name `field[i]`), and a map entry's key.
        let mut seen: Vec<(u32, usize)> = Vec::new();
        let mut map_key: Option<String> = None;
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let number = u32::try_from(key >> 3)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Refusal::Malformed(format!("bad field number in key {key}")))?;
            let wire = key & 7;
            let field = message.fields.get(&number);
            let kind = field.map_or(Kind::Other, |f| f.kind);
            let index = match field {
                Some(f) if f.repeated => Some(bump(&mut seen, number)),
                _ => None,
            };
            let path = || {
                field.map_or_else(String::new, |f| {
                    self.path(message, f, prefix, index, map_key.as_deref())
                })
            };
            match (wire, kind) {
                (2, _) => {
                    let len = usize::try_from(varint(&mut buf)?)
                        .map_err(|_| Refusal::Malformed("length too large".into()))?;
                    let data = take(&mut buf, len)?;
                    match kind {
                        Kind::Text(lines) => {
                            let Ok(text) = std::str::from_utf8(data) else {
                                return Err(Refusal::Field {
                                    field: path(),
                                    rule: "must be valid UTF-8".into(),
                                });
                            };
                            if let Err(rule) = rules::no_controls(text, lines) {
                                return Err(Refusal::Field {
                                    field: path(),
                                    rule,
                                });
                            }
                            let is_key = field.is_some_and(|f| f.name == "key");
                            if message.map_entry && is_key && text.len() <= 64 {
                                map_key = Some(text.to_owned());
                            }
                        }
                        Kind::Message(t) if self.messages[t].has_text => {
                            self.walk(t, data, &path(), depth + 1)?;
                        }
                        Kind::Message(_) | Kind::Other => {}
                    }
                }
                (_, Kind::Text(_) | Kind::Message(_)) => {
                    return Err(Refusal::Field {
                        field: path(),
                        rule: format!("has protobuf wire type {wire}, not length-delimited"),
                    });
                }
                (0, _) => {
                    varint(&mut buf)?;
                }
                (1, _) => {
                    take(&mut buf, 8)?;
                }
                (5, _) => {
                    take(&mut buf, 4)?;
                }
                (3, _) => skip_group(&mut buf, number, depth + 1)?,
                _ => return Err(Refusal::Malformed(format!("bad wire type {wire}"))),
            }
        }
        Ok(())
    }

    /// How an error names `field` of `message` under `prefix`: `a.b`, `a.list[2]`, a map's
    /// `metadata["key"]` (its value) or `metadata (key)`.
    fn path(
        &self,
        message: &MessageType,
        field: &Field,
        prefix: &str,
        index: Option<usize>,
        map_key: Option<&str>,
    ) -> String {
        if message.map_entry {
            return match (field.name.as_str(), map_key) {
                ("value", Some(k)) => format!("{prefix}[{k:?}]"),
                (name, _) => format!("{prefix} ({name})"),
            };
        }
        let mut path = if prefix.is_empty() {
            field.name.clone()
        } else {
            format!("{prefix}.{}", field.name)
        };
        let is_map = matches!(field.kind, Kind::Message(t) if self.messages[t].map_entry);
        if let (Some(i), false) = (index, is_map) {
            path.push_str(&format!("[{i}]"));
        }
        path
    }
}

/// Counts one more occurrence of field `number`; returns its index (from 0).
fn bump(seen: &mut Vec<(u32, usize)>, number: u32) -> usize {
    match seen.iter_mut().find(|(f, _)| *f == number) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            seen.push((number, 0));
            0
        }
    }
}

/// Collects `message` and its nested types under their full names (`package.Outer.Inner`).
fn collect<'a>(
    scope: &str,
    message: &'a DescriptorProto,
    out: &mut Vec<(String, &'a DescriptorProto)>,
) {
    let name = if scope.is_empty() {
        message.name().to_owned()
    } else {
        format!("{scope}.{}", message.name())
    };
    for nested in &message.nested_type {
        collect(&name, nested, out);
    }
    out.push((name, message));
}

fn varint(buf: &mut &[u8]) -> Result<u64, Refusal> {
    prost::encoding::decode_varint(buf).map_err(|e| Refusal::Malformed(e.to_string()))
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], Refusal> {
    if buf.len() < len {
        return Err(Refusal::Malformed("truncated field".into()));
    }
    let (data, rest) = buf.split_at(len);
    *buf = rest;
    Ok(data)
}

/// Skips a (deprecated, proto2) group up to its end marker; the types served here have none, so
/// its contents are unknown fields.
fn skip_group(buf: &mut &[u8], number: u32, depth: u32) -> Result<(), Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal::Malformed("groups nested too deeply".into()));
    }
    loop {
        if buf.is_empty() {
            return Err(Refusal::Malformed("unterminated group".into()));
        }
        let key = varint(buf)?;
        let inner = u32::try_from(key >> 3).unwrap_or(0);
        match key & 7 {
            0 => {
                varint(buf)?;
            }
            1 => {
                take(buf, 8)?;
            }
            2 => {
                let len = usize::try_from(varint(buf)?)
                    .map_err(|_| Refusal::Malformed("length too large".into()))?;
                take(buf, len)?;
            }
            3 => skip_group(buf, inner, depth + 1)?,
            4 if inner == number => return Ok(()),
            5 => {
                take(buf, 4)?;
            }
            _ => return Err(Refusal::Malformed("bad group".into())),
        }
    }
}

/// Tower layer running [`TextRules`] in front of the node's services.
#[derive(Debug, Clone)]
pub struct TextCheckLayer {
    rules: Arc<TextRules>,
}

impl TextCheckLayer {
    /// The layer for the node's own services.
    pub fn new() -> Self {
        let rules = TextRules::from_descriptors(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set is generated from proto/ at build time and decodes");
        Self {
            rules: Arc::new(rules),
        }
    }
}

impl Default for TextCheckLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for TextCheckLayer {
    type Service = TextCheckService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TextCheckService {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service [`TextCheckLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct TextCheckService<S> {
    inner: S,
    rules: Arc<TextRules>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ResBody> Service<http::Request<tonic::body::Body>> for TextCheckService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let rules = self.rules.clone();
        Box::pin(async move {
            let Some(ty) = rules.method(request.uri().path()) else {
                return inner.call(request).await;
            };
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, FRAMED_REQUEST_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => {
                    return Ok(refuse(Error::Exhausted(format!(
                        "request: must be at most {} bytes encoded",
                        crate::api::MAX_REQUEST_BYTES
                    ))));
                }
                Err(e) => {
                    return Ok(refuse(Error::invalid(
                        "request",
                        format!("the body could not be read: {e}"),
                    )));
                }
            };
            if let Err(err) = rules.check_request_type(ty, &bytes) {
                tracing::debug!(path = %parts.uri.path(), error = %err, "request text refused");
                return Ok(refuse(err));
            }
            let body = tonic::body::Body::new(Full::new(bytes));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

fn refuse<B: Default>(err: Error) -> http::Response<B> {
    tonic::Status::from(err).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::guildhall::v1 as pb;

    fn rules() -> TextRules {
        TextRules::from_descriptors(crate::proto::FILE_DESCRIPTOR_SET).expect("descriptors")
    }

    fn check<M: prost::Message>(rules: &TextRules, method: &str, m: &M) -> Result<(), Refusal> {
        let ty = rules
            .request_type(&format!("/guildhall.v1.GuildHall/{method}"))
            .expect("a method with text");
        rules.check(ty, &m.encode_to_vec())
    }

    fn field(refusal: Result<(), Refusal>) -> String {
        match refusal {
            Err(Refusal::Field { field, .. }) => field,
            other => panic!("expected a field refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_multiline_field_exists_and_every_method_is_known() {
        let rules = rules();
        for path in MULTILINE {
            let (message, field) = path.rsplit_once('.').expect("message.field");
            let t = rules
                .messages
                .iter()
                .find(|m| m.name == message)
                .unwrap_or_else(|| panic!("{message} is not a message"));
            assert!(
                t.fields
                    .values()
                    .any(|f| f.name == field && matches!(f.kind, Kind::Text(Lines::Multi))),
                "{path}"
            );
        }
        assert!(
            rules
                .methods
                .contains_key("/guildhall.v1.GuildHall/SearchMessages")
        );
        assert!(
            rules
                .methods
                .contains_key("/protocol.profile.v1.ProfileService/UpdateProfile")
        );
        assert_eq!(rules.request_type("/guildhall.v1.GuildHall/Nope"), None);
    }

    #[test]
    fn controls_are_refused_where_they_are_not_text() {
        let rules = rules();
        let search = pb::SearchMessagesRequest {
            query: "a\u{0}b".into(),
            ..Default::default()
        };
        assert_eq!(field(check(&rules, "SearchMessages", &search)), "query");
        let mut send = pb::SendMessageRequest {
            channel_id: "1".into(),
            text: "line\n\tnext\r\n".into(),
            metadata: [("k".to_owned(), "multi\nline".to_owned())].into(),
            ..Default::default()
        };
        assert_eq!(check(&rules, "SendMessage", &send), Ok(()));
        send.text = "bell\u{7}".into();
        assert_eq!(field(check(&rules, "SendMessage", &send)), "text");
        send.text = "ok".into();
        send.metadata = [("k".to_owned(), "nul\u{0}".to_owned())].into();
        assert_eq!(
            field(check(&rules, "SendMessage", &send)),
            "metadata[\"k\"]"
        );
        send.metadata = [("k\n".to_owned(), "v".to_owned())].into();
        assert_eq!(field(check(&rules, "SendMessage", &send)), "metadata (key)");
        send.metadata.clear();
        send.components = vec![
            pb::Component::default(),
            pb::Component {
                components: vec![pb::Component {
                    label: "tab\there".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ];
        assert_eq!(
            field(check(&rules, "SendMessage", &send)),
            "components[1].components[0].label"
        );
    }

    #[test]
    fn nested_requests_are_named_by_path() {
        let rules = rules();
        let federate = pb::FederationRequest {
            join: Some(pb::JoinInviteRequest {
                display_name: "Ada\u{1b}[2J".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            field(check(&rules, "Federate", &federate)),
            "join.display_name"
        );
        let update = pb::UpdateFederatedProfileRequest {
            update: Some(pb::UpdateUserRequest {
                bio: Some("two\nlines".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(check(&rules, "UpdateFederatedProfile", &update), Ok(()));
    }

    #[test]
    fn bad_utf8_bad_wire_types_and_truncation_are_refused() {
        let rules = rules();
        let ty = rules
            .request_type("/guildhall.v1.GuildHall/SearchMessages")
            .expect("method");
        // Field 2 (query), length-delimited, invalid UTF-8.
        assert_eq!(field(rules.check(ty, &[0x12, 0x02, 0xc3, 0x28])), "query");
        // Field 2 as a varint.
        assert_eq!(field(rules.check(ty, &[0x10, 0x01])), "query");
        // A length past the end.
        assert!(matches!(
            rules.check(ty, &[0x12, 0x05, b'a']),
            Err(Refusal::Malformed(_))
        ));
        // Unknown fields of every wire type are skipped, as prost does.
        assert_eq!(
            rules.check(
                ty,
                &[
                    0xf8, 0x01, 0x07, 0xfa, 0x01, 0x01, 0x00, 0xfd, 0x01, 1, 2, 3, 4
                ]
            ),
            Ok(())
        );
        // The frame layer: a refused message inside a frame, a compressed frame left alone.
        let mut frame = vec![0, 0, 0, 0, 4];
        frame.extend_from_slice(&[0x12, 0x02, b'a', 0]);
        assert!(rules.check_body(ty, &frame).is_err());
        frame[0] = 1;
        assert!(rules.check_body(ty, &frame).is_ok());
    }
}
