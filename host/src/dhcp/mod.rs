//! DHCP for IPv4 (RFC 2131, options from RFC 2132), sans-IO: the server and
//! its message handling ([`server`]), address allocation from the pools
//! ([`pool`]), and the replies' options and destinations ([`reply`]).

pub mod config;
pub mod pool;
pub mod reply;
pub mod server;

pub use reply::{order_options, request_list, Destination, Reply};
pub use server::{Binding, DhcpServer, Ignored, RESERVE_MAX};
