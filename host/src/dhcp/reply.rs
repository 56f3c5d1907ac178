//! The DHCP server's replies (RFC 2131 section 4.3, options from RFC 2132):
//! the reply message and its options (the hub's defaults, `--dhcp-option`,
//! PXE boot fields), where it goes (section 4.1), and its encoding with the
//! options in the client's requested order (option 55), split when over 255
//! bytes (RFC 3396, by dhcproto), padded to a BOOTP message's 300 bytes (RFC
//! 1542 section 2.1).

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::Encodable;
use vmlan_hub::MacAddr;

use crate::config::{LeaseSecs, INFINITE};

use super::server::{message_type, DhcpServer};

/// Smallest reply, in bytes (a BOOTP message; RFC 1542 section 2.1).
pub const MIN_REPLY: usize = 300;

/// Where a reply goes (RFC 2131 section 4.1, "the server sends ... to").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// IPv4 destination.
    pub ip: Ipv4Addr,
    /// Ethernet destination.
    pub mac: MacAddr,
    /// UDP destination port: 68 to a client, 67 to a relay agent.
    pub port: u16,
}

/// A reply to send.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The DHCP message.
    pub msg: Message,
    /// Where it goes.
    pub to: Destination,
}

impl Reply {
    /// The message as bytes: options in the client's requested order, padded to 300 bytes.
    ///
    /// # Errors
    /// dhcproto's encoding error (an option value it cannot encode).
    pub fn encode(&self, request_list: &[u8]) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
        Ok(order_options(self.msg.to_vec()?, request_list))
    }
}

/// The client's parameter request list (option 55), codes in its order.
pub fn request_list(msg: &Message) -> Vec<u8> {
    match msg.opts().get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(codes)) => codes.iter().map(|c| u8::from(*c)).collect(),
        _ => Vec::new(),
    }
}

impl DhcpServer {
    pub(super) fn reply(&self, req: &Message, mtype: MessageType, yiaddr: Ipv4Addr) -> Message {
        let mut m = Message::new_with_id(
            req.xid(),
            if mtype == MessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                req.ciaddr()
            },
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            req.giaddr(),
            &req.chaddr()[..6],
        );
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_flags(req.flags());
        m.opts_mut().insert(DhcpOption::MessageType(mtype));
        m
    }

    /// Adds the server's options: server id, lease times, mask, broadcast, router
    /// (the hub, or giaddr for a relayed subnet) and DNS server (the hub) unless
    /// `--dhcp-option` says otherwise, domain, hostname, the PXE boot fields, then
    /// every `--dhcp-option` in order (which override the defaults; one without a
    /// value removes the option, the default included, as dnsmasq's
    /// `--dhcp-option=3`).
    pub(super) fn add_options(
        &self,
        m: &mut Message,
        req: &Message,
        mac: MacAddr,
        subnet: usize,
        lease: Option<LeaseSecs>,
    ) {
        let sub = &self.subnets[subnet];
        let router = if sub.relayed { req.giaddr() } else { self.server_ip };
        if let Some(b) = &self.boot {
            m.set_fname_str(&b.file);
            if let Some(name) = &b.server_name {
                m.set_sname_str(name);
            }
            m.set_siaddr(b.server_addr.unwrap_or(self.server_ip));
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::ServerIdentifier(self.server_ip));
        if let Some(secs) = lease {
            o.insert(DhcpOption::AddressLeaseTime(secs));
            if secs != INFINITE {
                o.insert(DhcpOption::Renewal(secs / 2));
                o.insert(DhcpOption::Rebinding(secs / 8 * 7));
            }
        }
        o.insert(DhcpOption::SubnetMask(sub.net.netmask()));
        o.insert(DhcpOption::BroadcastAddr(sub.net.broadcast()));
        o.insert(DhcpOption::Router(vec![router]));
        o.insert(DhcpOption::DomainNameServer(vec![self.server_ip]));
        if let Some(d) = &self.domain {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
        if let Some(name) = self.reservations.get(&mac).and_then(|r| r.hostname.clone()) {
            o.insert(DhcpOption::Hostname(name));
        }
        for (code, data) in &self.options {
            if data.is_empty() {
                o.remove((*code).into());
            } else {
                o.insert(DhcpOption::Unknown(UnknownOption::new((*code).into(), data.clone())));
            }
        }
    }

    /// RFC 2131 section 4.1: to the relay if giaddr is set; NAK broadcast; to
    /// ciaddr if set; broadcast if the client asked; else unicast to yiaddr at chaddr.
    pub(super) fn destination(&self, req: &Message, reply: &Message, mac: MacAddr, frame_src: MacAddr) -> Destination {
        let bcast = Destination {
            ip: Ipv4Addr::BROADCAST,
            mac: MacAddr::BROADCAST,
            port: 68,
        };
        if !req.giaddr().is_unspecified() {
            return Destination {
                ip: req.giaddr(),
                mac: frame_src,
                port: 67,
            };
        }
        if message_type(reply) == Some(MessageType::Nak) {
            bcast
        } else if !req.ciaddr().is_unspecified() {
            Destination {
                ip: req.ciaddr(),
                mac,
                port: 68,
            }
        } else if req.flags().broadcast() || reply.yiaddr().is_unspecified() {
            bcast
        } else {
            Destination {
                ip: reply.yiaddr(),
                mac,
                port: 68,
            }
        }
    }
}

/// Reorders the options of an encoded message: message type (53) and server
/// identifier (54) first, then the codes of `request_list` in its order, then
/// the rest as they were; the runs of one split option (RFC 3396) stay together.
/// Pads the message to [`MIN_REPLY`] bytes.
pub fn order_options(mut msg: Vec<u8>, request_list: &[u8]) -> Vec<u8> {
    const OPTIONS: usize = 240; // 236-byte fixed header + 4-byte magic cookie
    if msg.len() <= OPTIONS {
        msg.resize(MIN_REPLY.max(msg.len()), 0);
        return msg;
    }
    // Groups of (code, byte range) in the encoded order, consecutive equal codes merged.
    let mut groups: Vec<(u8, usize, usize)> = Vec::new();
    let mut i = OPTIONS;
    while i < msg.len() {
        let code = msg[i];
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let Some(&len) = msg.get(i + 1) else { break };
                let end = (i + 2 + usize::from(len)).min(msg.len());
                match groups.last_mut() {
                    Some(g) if g.0 == code && g.2 == i => g.2 = end,
                    _ => groups.push((code, i, end)),
                }
                i = end;
            }
        }
    }
    let rank = |code: u8| match code {
        53 => 0,
        54 => 1,
        _ => request_list
            .iter()
            .position(|c| *c == code)
            .map_or(usize::MAX, |p| p + 2),
    };
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|g| rank(groups[*g].0)); // stable: unrequested keep their order
    let mut out = Vec::with_capacity(msg.len().max(MIN_REPLY));
    out.extend_from_slice(&msg[..OPTIONS]);
    for g in order {
        out.extend_from_slice(&msg[groups[g].1..groups[g].2]);
    }
    out.push(255);
    if out.len() < MIN_REPLY {
        out.resize(MIN_REPLY, 0);
    }
    msg = out;
    msg
}

/// The hostname a client sent in option 12, if it is a valid single label.
pub(super) fn client_hostname(req: &Message) -> Option<String> {
    match req.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => crate::config::check_hostname(h)
            .ok()
            .map(|n| n.split('.').next().unwrap_or_default().to_string()),
        _ => None,
    }
}
