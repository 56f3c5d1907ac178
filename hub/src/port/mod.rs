//! Ports: thin I/O adapters between a transport QEMU speaks and the
//! [`Segment`](crate::segment::Segment), one file (or, for vhost-user, one
//! directory) per transport. A port's task reads frames and hands them to a
//! segment batch; its egress (a [`StreamTx`](crate::segment::StreamTx),
//! [`DatagramTx`](crate::segment::DatagramTx) or, straight into a guest's
//! memory, [`DirectTx`](crate::segment::DirectTx)) writes them. The framing rules live in the transport's file (and framing.rs);
//! the socket plumbing they share (batched datagram I/O, addresses, unix
//! socket paths, coalescing, error backoff) lives in [`crate::sys`].
//! [`vxlan`] is no QEMU transport: it joins the segment to other VTEPs over
//! UDP (RFC 7348), the whole VXLAN network as one port.

pub mod dgram;
pub mod mcast;
pub mod stream;
pub mod tap;
pub mod vhost_user;
pub mod vxlan;
