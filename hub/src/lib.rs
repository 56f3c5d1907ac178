//! vmlan's hub: a userspace Ethernet switch that QEMU's own netdevs connect to.
//!
//! - [`frame`]: MAC addresses and a zero-copy view of Ethernet II frames.
//! - [`framing`]: QEMU's length-prefixed stream framing (sans-IO decoder and encoder).
//! - [`switch`]: the sans-IO learning switch (MAC table, flooding, aging).
//! - [`segment`]: a switch, the hub's own host and the ports' transmit halves.
//! - [`port`]: the I/O adapters, one file per QEMU transport.
//! - [`retry`]: backoff and rate-limited logs for the accept and receive loops.

pub mod frame;
pub mod framing;
pub mod port;
pub mod retry;
pub mod segment;
pub mod switch;

pub use frame::{Frame, MacAddr};
pub use segment::{Egress, LocalHost, Segment, HOST_PORT};
pub use switch::{PortId, Switch};
