#!/usr/bin/env python3
"""Lists the DHCPACKs in a pcap file (classic libpcap format, Ethernet, as
`tcpdump -w` writes it) sent from one server address: one line per ACK,
"CHADDR YIADDR" (MAC as aa:bb:cc:dd:ee:ff, dotted IPv4). Used by
tests/e2e_faults.rs to learn every lease a DHCP client was granted.

Usage: pcap_acks.py FILE SERVER_IP
"""

import socket
import struct
import sys


def acks(data, server):
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise SystemExit("not a pcap file")
    if struct.unpack(endian + "I", data[20:24])[0] != 1:
        raise SystemExit("not an Ethernet capture")
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or ip[12:16] != server:
            continue
        udp = ip[ihl:]
        if struct.unpack("!H", udp[0:2])[0] != 67:
            continue
        bootp = udp[8:]
        if len(bootp) < 240 or bootp[0] != 2 or bootp[236:240] != b"\x63\x82\x53\x63":
            continue
        opts, i = bootp[240:], 0
        while i + 1 < len(opts) and opts[i] != 255:
            if opts[i] == 0:
                i += 1
                continue
            if opts[i] == 53 and i + 2 < len(opts) and opts[i + 2] == 5:
                mac = ":".join("%02x" % b for b in bootp[28:34])
                yield mac, socket.inet_ntoa(bootp[16:20])
                break
            i += 2 + opts[i + 1]


def main():
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    for mac, ip in acks(data, socket.inet_aton(sys.argv[2])):
        print(mac, ip)


if __name__ == "__main__":
    main()
