//! The API's unix socket: mode 0660, group `tbd` when that group exists, so only root and
//! members of the group can use the daemon.

use std::{ffi::CString, os::unix::fs::PermissionsExt, path::Path};

use tokio::net::UnixListener;

use crate::error::TbdError;

/// Binds the socket at `path` (replacing a stale one) with mode 0660 and group `group`.
pub fn bind(path: &Path, group: &str) -> Result<UnixListener, TbdError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(TbdError::Io(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another tbd answers on {}; stop it or pass --socket",
                    path.display()
                ),
            )));
        }
        std::fs::remove_file(path)?;
    }
    // Bound under a temporary name, given its mode and group, then renamed into place: the
    // socket never appears at `path` open to other users, even for an instant.
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))?;
    match group_id(group) {
        Some(gid) => {
            let c = CString::new(tmp.as_os_str().as_encoded_bytes()).expect("no NUL in path");
            // SAFETY: valid C string; uid -1 leaves the owner unchanged.
            if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
                tracing::warn!(
                    "could not give {} to group {group}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        None => tracing::warn!(
            "group {group} does not exist: only root can use {} (create it with `groupadd {group}`)",
            path.display()
        ),
    }
    std::fs::rename(&tmp, path)?;
    Ok(listener)
}

/// The gid of a group by name.
pub fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: getgrnam returns a pointer to static storage or null; read immediately.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}
