#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/:
a few valid inputs each, in the target's input format (see fuzz/src/lib.rs:
`records` is control byte + 2-byte big-endian length + bytes; `chunks` takes
one seed byte before the stream). Run from anywhere; rewrites the seeds only."""
import os
import struct

HOST_MAC = bytes([0x02, 0x76, 0x6D, 0, 3, 1])  # default_mac(10.0.3.1)
HOST_IP = bytes([10, 0, 3, 1])


A, AAAA, PTR = 1, 28, 12


def mac(n):
    return bytes([0x52, 0x54, 0, 0, 0, n])


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def eth(src, dst, etype, payload):
    return dst + src + struct.pack("!H", etype) + payload


def udp(src_mac, src, dst_mac, dst, sport, dport, payload):
    u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none
    return eth(src_mac, dst_mac, 0x0800, ipv4(src, dst, 17, u))


def tcp_syn(src_mac, src, sport, dport, seq):
    t = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 6 << 4, 0x02, 64240, 0, 0) + bytes([2, 4, 5, 180])
    pseudo = src + HOST_IP + struct.pack("!BBH", 0, 6, len(t))
    t = t[:16] + struct.pack("!H", csum(pseudo + t)) + t[18:]
    return eth(src_mac, HOST_MAC, 0x0800, ipv4(src, HOST_IP, 6, t))


def arp_request(src_mac, src_ip, target_ip):
    a = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src_mac + src_ip + bytes(6) + target_ip
    return eth(src_mac, b"\xff" * 6, 0x0806, a)


def icmp_echo(src_mac, src_ip):
    i = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"ping"
    i = i[:2] + struct.pack("!H", csum(i)) + i[4:]
    return eth(src_mac, HOST_MAC, 0x0800, ipv4(src_ip, HOST_IP, 1, i))


def dhcp(n, mtype, opts=b""):
    m = struct.pack("!BBBBIHH", 1, 1, 6, 0, 0x1000 + n, 0, 0) + bytes(16) + mac(n) + bytes(10) + bytes(192)
    m += b"\x63\x82\x53\x63" + bytes([53, 1, mtype]) + opts + bytes([55, 4, 1, 3, 6, 15, 255])
    return m


def discover(n):
    return dhcp(n, 1, bytes([12, 6]) + f"guest{n}".encode())


def request(n, ip):
    return dhcp(n, 3, bytes([50, 4]) + bytes(ip) + bytes([54, 4]) + HOST_IP + bytes([12, 6]) + f"guest{n}".encode())


def dns_query(name, qtype, qid=0x4242, edns=False):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", qtype, 1)
    if edns:
        q += b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return q


def dns_answer(name, ip, qid=0x4242):
    """A response to `name` A: one A record, the name by a pointer to the question's."""
    a = bytearray(dns_query(name, A, qid))
    a[2:4] = b"\x81\x80"  # QR, RD, RA
    a[6:8] = b"\x00\x01"  # one answer
    return bytes(a) + b"\xc0\x0c" + struct.pack("!HHIH", A, 1, 60, 4) + bytes(ip)


def rec(ctl, b):
    return bytes([ctl]) + struct.pack("!H", len(b)) + b


def dns_frame(q, n=7):
    return udp(mac(n), bytes([10, 0, 3, 100 + n]), HOST_MAC, HOST_IP, 40000, 53, q)


seeds = {
    "host_frame": {
        "arp_request": rec(0, arp_request(mac(3), bytes([10, 0, 3, 103]), HOST_IP)),
        "icmp_echo": rec(0, icmp_echo(mac(3), bytes([10, 0, 3, 103]))),
        "dhcp_discover_request": rec(0, udp(mac(3), bytes(4), b"\xff" * 6, b"\xff" * 4, 68, 67, discover(3)))
        + rec(0x81, udp(mac(3), bytes(4), b"\xff" * 6, b"\xff" * 4, 68, 67, request(3, [10, 0, 3, 100]))),
        "dns_a_query": rec(0, dns_frame(dns_query("master.cluster", A))),
        "dns_forwarded": rec(0, dns_frame(dns_query("example.org", AAAA, edns=True))),
        "tcp_syn_53": rec(0, tcp_syn(mac(7), bytes([10, 0, 3, 107]), 40000, 53, 1)),
    },
    "dhcp": {
        "discover": rec(3, discover(3)),
        "discover_request": rec(3, discover(3)) + rec(3, request(3, [10, 0, 3, 100])),
        "reserved_then_expiry": rec(1, discover(1)) + rec(1, request(1, [10, 0, 3, 101])) + rec(0x7C, discover(4)),
    },
    "dns_udp": {
        "a_master": dns_query("master.cluster", A),
        "ptr": dns_query("101.3.0.10.in-addr.arpa", PTR),
        "cname_www": dns_query("www", A, edns=True),
        "forwarded": dns_query("example.org", A),
        "upstream_answer": dns_answer("example.org", [192, 0, 2, 80]),
    },
    "dns_tcp": {
        "two_queries": b"\x05"
        + b"".join(struct.pack("!H", len(q)) + q for q in [dns_query("master.cluster", A), dns_query("example.org", A, 7)]),
        "ptr": b"\x21" + struct.pack("!H", len(dns_query("101.3.0.10.in-addr.arpa", PTR))) + dns_query("101.3.0.10.in-addr.arpa", PTR),
    },
    "stream_framing": {
        "arp_and_dhcp": b"\x09"
        + b"".join(struct.pack("!I", len(f)) + f for f in [arp_request(mac(3), bytes([10, 0, 3, 103]), HOST_IP), udp(mac(3), bytes(4), b"\xff" * 6, b"\xff" * 4, 68, 67, discover(3))]),
        "min_frame": b"\x01" + struct.pack("!I", 14) + bytes(14),
    },
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
for target, files in seeds.items():
    os.makedirs(os.path.join(here, target), exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(here, target, name), "wb") as f:
            f.write(data)
