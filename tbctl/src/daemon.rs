//! The client of tbd's gRPC API, over its unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tb_proto::v1::tbd_client::TbdClient;
use tonic::transport::{Channel, Endpoint};

/// The daemon's default socket (tbd --socket).
pub const DEFAULT_SOCKET: &str = "/run/tbd/tbd.sock";

/// Why the daemon could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("no tbd at {0}: start it (systemctl start tbd) or pass --no-daemon")]
    Absent(PathBuf),
    #[error("cannot use tbd at {0}: permission denied; add yourself to group {1} (the socket's group), then log in again")]
    Denied(PathBuf, String),
    #[error("tbd at {path}: {msg}")]
    Other { path: PathBuf, msg: String },
    #[error("tbd: {0}")]
    Rpc(#[from] tonic::Status),
}

/// Reads `--daemon ADDR`: `unix:/path` or a plain path.
pub fn socket_path(addr: &str) -> PathBuf {
    PathBuf::from(addr.strip_prefix("unix:").unwrap_or(addr))
}

/// The name of the group that owns `path` ("tbd" when it cannot be told).
fn group_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(gid) = std::fs::metadata(path).map(|m| m.gid()) else {
        return "tbd".into();
    };
    // SAFETY: getgrgid returns static storage or null; the name is copied out at once.
    let g = unsafe { libc::getgrgid(gid) };
    if g.is_null() {
        return gid.to_string();
    }
    unsafe { std::ffi::CStr::from_ptr((*g).gr_name) }
        .to_string_lossy()
        .into_owned()
}

/// Connects to tbd on a unix socket.
pub async fn connect(path: &Path) -> Result<TbdClient<Channel>, DaemonError> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(DaemonError::Denied(path.into(), group_of(path)))
        }
        Err(_) => return Err(DaemonError::Absent(path.into())),
    }
    let p = path.to_path_buf();
    // The URI is unused: the connector always dials the unix socket.
    let channel = Endpoint::from_static("http://tbd.local")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let p = p.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
            }
        }))
        .await
        .map_err(|e| DaemonError::Other {
            path: path.into(),
            msg: e.to_string(),
        })?;
    Ok(TbdClient::new(channel).max_decoding_message_size(64 << 20))
}
