//! Ports: thin I/O adapters between a transport QEMU speaks and the
//! [`Segment`](crate::segment::Segment). Each port has a receive loop that
//! hands whole frames to `Segment::ingress` and a [`PortTx`](crate::segment::PortTx)
//! that writes one frame. The framing rules live in the transport's file.

pub mod mcast;
