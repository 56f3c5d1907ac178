//! Ports: thin I/O adapters between a transport QEMU speaks and the
//! [`Segment`](crate::segment::Segment), one file per transport. A port's task
//! reads frames and hands them to a segment batch; its egress (a
//! [`StreamTx`](crate::segment::StreamTx) or [`DatagramTx`](crate::segment::DatagramTx))
//! writes them. The framing rules live in the transport's file (and framing.rs);
//! the socket plumbing they share (batched datagram I/O, addresses, unix
//! socket paths, coalescing, error backoff) lives in [`crate::sys`].

pub mod dgram;
pub mod mcast;
pub mod stream;
pub mod tap;
pub mod vhost_user;
