//! The HTTP client: timed connections, one request at a time each.

pub mod conn;
pub mod error;
pub mod response;
pub mod target;
pub mod timed_io;

pub use conn::{Conn, RequestTemplate};
pub use error::ClientError;
pub use target::Target;
