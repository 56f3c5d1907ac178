//! What the hub's integration tests share: a host that answers nothing, the
//! current-thread tokio runtime the ports are opened and run on, and a
//! vhost-user frontend ([`vhost_frontend`]).

#[allow(dead_code)] // only the vhost-user test binaries drive a frontend
pub mod vhost_frontend;

use std::time::Instant;

use vmlan_hub::{LocalHost, MacAddr};

/// A host at 02:00:00:00:00:01 that answers nothing: the segment's port 0
/// when a test looks at switching only.
pub struct NoHost;

impl LocalHost for NoHost {
    fn mac(&self) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, 1])
    }
    fn handle_frame(&mut self, _: Instant, _: &[u8], _: &mut Vec<Vec<u8>>) {}
}

/// A current-thread tokio runtime with I/O and time enabled.
#[allow(dead_code)] // not every test binary runs ports on tokio
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
