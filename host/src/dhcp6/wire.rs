//! The checks a client message passes before dhcproto decodes it: its
//! options' lengths must fill the message exactly, recursively inside the
//! options that carry options (IA_NA, IA_TA, IA Address, IA_PD, IA Prefix),
//! and every option with a fixed layout must be long enough for it (RFC 8415
//! section 21). dhcproto 0.15 decodes a message leniently (a bad option ends
//! the list silently) and some short options underflow a length and panic
//! (Status Code shorter than 2 bytes, Vendor Class or Vendor-specific
//! Information shorter than 4, Authentication shorter than 11); those are
//! refused here, and the decoder's panic is caught besides, so no input stops
//! the hub.

use dhcproto::v6::Message;
use dhcproto::{Decodable, Decoder};

/// How deep options may nest (IA_NA > IA Address > Status Code is 3).
const MAX_DEPTH: usize = 4;

/// Whether the options in `buf` are well formed, at nesting `depth`.
fn options_ok(mut buf: &[u8], depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    while !buf.is_empty() {
        let [c0, c1, l0, l1, rest @ ..] = buf else { return false };
        let (code, len) = (
            u16::from_be_bytes([*c0, *c1]),
            usize::from(u16::from_be_bytes([*l0, *l1])),
        );
        let Some(body) = rest.get(..len) else { return false };
        let ok = match code {
            1 | 2 => (2..=130).contains(&len), // Client, Server Identifier: a DUID
            3 | 25 => len >= 12 && options_ok(&body[12..], depth + 1), // IA_NA, IA_PD
            4 => len >= 4 && options_ok(&body[4..], depth + 1), // IA_TA
            5 => len >= 24 && options_ok(&body[24..], depth + 1), // IA Address
            26 => len >= 25 && options_ok(&body[25..], depth + 1), // IA Prefix
            6 => len % 2 == 0,                 // Option Request
            7 | 19 => len == 1,                // Preference, Reconfigure Message
            8 => len == 2,                     // Elapsed Time
            9 => false,                        // Relay Message: relays only
            11 => len >= 11,                   // Authentication
            12 => len == 16,                   // Server Unicast
            13 => len >= 2,                    // Status Code
            14 | 20 => len == 0,               // Rapid Commit, Reconfigure Accept
            16 | 17 => len >= 4,               // Vendor Class, Vendor-specific Information
            23 => len % 16 == 0,               // DNS servers
            32 => len == 4,                    // Information Refresh Time
            _ => true,
        };
        if !ok {
            return false;
        }
        buf = &rest[len..];
    }
    true
}

/// Decodes a client message (RFC 8415 section 8: type, 3-byte transaction
/// id, options); `None` if it is malformed (see the module documentation).
pub(super) fn decode(bytes: &[u8]) -> Option<Message> {
    if bytes.len() < 4 || !options_ok(&bytes[4..], 0) {
        return None;
    }
    std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes)).ok())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_lengths_are_checked_before_decoding() {
        // SOLICIT, xid 1 2 3, Client Identifier 00:03:00:01 + MAC.
        let good = [1, 1, 2, 3, 0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
        assert!(decode(&good).is_some());
        assert!(decode(&good[..17]).is_none(), "option overruns the message");
        assert!(decode(&[1, 1, 2]).is_none(), "no header");
        // A Status Code of one byte inside an IA_NA (dhcproto would underflow).
        let mut short_status = vec![1, 1, 2, 3, 0, 3, 0, 17];
        short_status.extend_from_slice(&[0; 12]);
        short_status.extend_from_slice(&[0, 13, 0, 1, 0]);
        assert!(decode(&short_status).is_none());
        // Vendor Class of 2 bytes.
        assert!(decode(&[1, 1, 2, 3, 0, 16, 0, 2, 0, 0]).is_none());
    }
}
