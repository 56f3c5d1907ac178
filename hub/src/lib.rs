//! vmlan's hub: a userspace Ethernet switch that QEMU's own netdevs connect to.
//!
//! - [`frame`]: MAC addresses and a zero-copy view of Ethernet II frames.
//! - [`framing`]: QEMU's length-prefixed stream framing (sans-IO decoder and encoder).
//! - [`switch`]: the sans-IO learning switch (MAC table, flooding, aging).
//! - [`segment`]: a switch, the hub's own host and the ports' transmit halves.
//! - [`port`]: the I/O adapters, one file per QEMU transport.
//! - [`sys`]: socket plumbing shared by the ports and the binary's DNS
//!   listeners: batched datagram I/O, address parsing, unix socket paths, the
//!   length-prefix writer, wake-up coalescing, error backoff.

pub mod frame;
pub mod framing;
pub mod port;
pub mod segment;
pub mod switch;
pub mod sys;

pub use frame::{Frame, MacAddr};
pub use segment::{Egress, LocalHost, PortSnapshot, Segment, SegmentEvent, Snapshot, HOST_PORT};
pub use switch::{PortId, Switch};
