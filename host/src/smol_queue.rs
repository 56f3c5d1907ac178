//! The smoltcp device both of the host's smoltcp stacks run on (DNS over TCP,
//! dns/tcp.rs, on IP packets; the forwarder, forward/, on Ethernet frames):
//! a queue the host fills with what arrived and drains of what smoltcp sent.
//! No I/O: the host hands packets in with [`Queue::rx`] and takes smoltcp's
//! out of [`Queue::tx`] after each poll (smoltcp `phy::Device`).

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};

/// Packets (or frames) between the host and one smoltcp interface.
pub(crate) struct Queue {
    /// Arrived, for smoltcp to receive, oldest first; the caller bounds it.
    pub rx: VecDeque<Vec<u8>>,
    /// Sent by smoltcp, for the host to put on the segment.
    pub tx: Vec<Vec<u8>>,
    /// `Medium::Ip` (IP packets) or `Medium::Ethernet` (whole frames).
    medium: Medium,
    /// The largest packet smoltcp may send, bytes (with the Ethernet header
    /// for `Medium::Ethernet`).
    mtu: usize,
}

impl Queue {
    /// An empty queue of `medium` packets of at most `mtu` bytes.
    pub fn new(medium: Medium, mtu: usize) -> Self {
        Queue {
            rx: VecDeque::new(),
            tx: Vec::new(),
            medium,
            mtu,
        }
    }
}

pub(crate) struct RxToken(Vec<u8>);

pub(crate) struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push(packet);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxToken, TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxToken(p), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}
