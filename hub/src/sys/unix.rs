//! Unix socket paths: a listener or bound datagram socket that finds a file at
//! its path replaces it only if it is a stale socket (a leftover of a process
//! that is gone), never a live one nor any other file. See `unix(7)`: a path
//! socket's file stays after its process exits, and `bind(2)` on it fails
//! with `EADDRINUSE`.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Removes a stale unix socket at `path` (one nobody accepts on), so that a
/// `bind(2)` there can succeed; does nothing when there is no file.
///
/// # Errors
/// `AlreadyExists` when the file is not a socket, `AddrInUse` when a process
/// accepts on it, or the error of reading its metadata or removing it.
pub fn clear_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if !m.file_type().is_socket() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running process", path.display()),
                ));
            }
            std::fs::remove_file(path)
        }
    }
}
