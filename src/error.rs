//! The crate error and the one place it becomes a gRPC status.
//!
//! Domain code returns [`Error`]; the tonic layer converts with `?` through
//! `impl From<Error> for tonic::Status`. Messages for bad input name the field and the rule, so a
//! client developer can fix the request from the message alone. Internal failures are logged here
//! with their detail and reach the client only as a generic `INTERNAL`.

use crate::store::StorageError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field broke a rule: `INVALID_ARGUMENT`, message `"<field>: <rule>"`.
    #[error("{field}: {rule}")]
    InvalidArgument {
        /// The request field, as a path (`device_cert.pubkey`).
        field: String,
        /// The rule it broke.
        rule: String,
    },
    /// A missing, unknown or expired credential, or a proof that does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The thing asked for does not exist here.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the state does not allow it (e.g. an older profile change).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A rate limit was hit; retry after the given time.
    #[error("{what}: rate limit reached; retry in {retry_after_ms} ms")]
    ResourceExhausted {
        /// What is limited (the setting's name).
        what: String,
        /// When a retry can succeed.
        retry_after_ms: u64,
    },
    /// A bounded store of the node is full (not a rate limit): retry later. The message names
    /// the field whose request would overflow it.
    #[error("{0}")]
    Exhausted(String),
    /// A position (an event id, a page) outside what is kept.
    #[error("{0}")]
    OutOfRange(String),
    /// The method is part of the API but not served by this build yet.
    #[error("{0}")]
    Unimplemented(String),
    /// Another server needed for this request could not be reached; retry later. The message
    /// never says why (see `outbound::UNREACHABLE`): the detail is logged.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a client hears when the node's disk is full: a condition of the server that passes, not
/// a fault of the request, so `UNAVAILABLE` (retry later) rather than `INTERNAL`.
pub const DISK_FULL: &str =
    "storage: the server's disk is full; nothing was written, try again later";

/// Shorthand for results in request handling.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A field broke a rule.
    pub fn invalid(field: impl Into<String>, rule: impl std::fmt::Display) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            rule: rule.to_string(),
        }
    }

    /// A proof or credential failed; the message names the field and why.
    pub fn unauthenticated(field: &str, why: impl std::fmt::Display) -> Self {
        Error::Unauthenticated(format!("{field}: {why}"))
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        use tonic::Status;
        match err {
            Error::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::OutOfRange(m) => Status::out_of_range(m),
            Error::ResourceExhausted { retry_after_ms, .. } => {
                let mut status = Status::resource_exhausted(err.to_string());
                if let Ok(value) = retry_after_ms.to_string().parse() {
                    status.metadata_mut().insert("retry-after-ms", value);
                }
                status
            }
            Error::Exhausted(m) => Status::resource_exhausted(m),
            Error::Unimplemented(m) => Status::unimplemented(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Storage(StorageError::Conflict(m)) => Status::already_exists(m),
            Error::Storage(StorageError::Refused(m)) => Status::failed_precondition(m),
            Error::Storage(StorageError::Replay) => {
                Status::unauthenticated("signature: already used (replayed request)")
            }
            Error::Storage(StorageError::DiskFull(detail)) => {
                tracing::error!(%detail, "the disk is full: writes are refused until space is freed");
                Status::unavailable(DISK_FULL)
            }
            Error::Storage(other) => {
                tracing::error!(error = %other, "storage failure");
                Status::internal("internal storage error")
            }
        }
    }
}

/// The HTTP status for a gRPC code, for the node's plain-HTTP routes (webhook posts): errors
/// become a [`tonic::Status`] through the one mapping above, and its code picks the HTTP status
/// (the usual gRPC-to-HTTP table, as in grpc-gateway), so both transports refuse alike.
pub fn http_status(code: tonic::Code) -> http::StatusCode {
    use http::StatusCode as H;
    use tonic::Code as C;
    match code {
        C::Ok => H::OK,
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => H::BAD_REQUEST,
        C::Unauthenticated => H::UNAUTHORIZED,
        C::PermissionDenied => H::FORBIDDEN,
        C::NotFound => H::NOT_FOUND,
        C::AlreadyExists | C::Aborted => H::CONFLICT,
        C::ResourceExhausted => H::TOO_MANY_REQUESTS,
        C::Unimplemented => H::NOT_IMPLEMENTED,
        C::Unavailable => H::SERVICE_UNAVAILABLE,
        C::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        C::Cancelled | C::Unknown | C::Internal | C::DataLoss => H::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_try_later_not_internal() {
        let status = tonic::Status::from(Error::Storage(StorageError::DiskFull(
            "database or disk is full".into(),
        )));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), DISK_FULL);
    }
}
