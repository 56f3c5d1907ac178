//! vmlan's launcher: a whole cluster of QEMU VMs from one TOML file. `vmlan up`
//! reads and checks the file ([`cluster`]), makes each node's overlay and seed
//! ([`qemu`], [`seed`]), starts one `vmlan hub` per network ([`hub`]) and one
//! QEMU per node ([`process`]), records everything in the state directory
//! ([`state`]), gives every node a stable reservation ([`addresses`]), writes an
//! ssh config and a roster ([`files`]) and waits for the leases and each node's
//! sshd ([`up`], through each hub's API, [`api_client`]); [`status`], [`console`] and [`down`] work from that state.

pub mod addresses;
pub mod api_client;
pub mod cluster;
pub mod console;
pub mod down;
pub mod files;
pub mod hub;
pub mod machines;
pub mod process;
pub mod qemu;
pub mod ready;
pub mod seed;
pub mod state;
pub mod status;
pub mod up;
