//! The client's typed errors; each maps to a record's error class.

use crate::record::ErrorClass;

/// Why a request (or the set-up before any request) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("bad --url {0}")]
    BadUrl(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("stream ended before the server finished: {0}")]
    StreamCut(String),
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The kept-alive connection was closed by the server before this request was written, or
    /// right after, before any response byte (the keep-alive race): the caller reconnects and
    /// sends it once more, as browsers and Go's net/http do.
    #[error("connection closed by the server before the request was sent")]
    Stale,
}

impl ClientError {
    /// The record's error class.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::BadUrl(_) | ClientError::Connect(_) | ClientError::Stale => {
                ErrorClass::Connect
            }
            ClientError::Timeout(_) => ErrorClass::Timeout,
            ClientError::Http { .. } => ErrorClass::Http,
            ClientError::StreamCut(_) => ErrorClass::StreamCut,
            ClientError::Malformed(_) => ErrorClass::Malformed,
        }
    }
}
