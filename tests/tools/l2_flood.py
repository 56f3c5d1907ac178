#!/usr/bin/env python3
"""A bounded flood of Ethernet frames from random source MACs, written to one
interface through an AF_PACKET raw socket (tests/e2e_faults.rs runs it on a tap
inside a network namespace the test created; it never opens anything else).

Modes:
  dhcp  DHCPDISCOVERs (broadcast, from 0.0.0.0:68 to 255.255.255.255:67), each
        from its own random MAC (Ethernet source and chaddr) with its own xid;
        a second socket counts the DHCPOFFERs that come back for those xids.
  mac   frames of EtherType 0x88b5 (local experimental) from random source
        MACs to one unicast destination MAC nobody has (flooded by a switch).

Bounded twice: at most --count frames and at most --seconds of sending, paced
to --rate frames per second. Random MACs are drawn from a PRNG seeded with
--seed, each unicast and locally administered (02:...), never repeated.
Prints one JSON line: {"sent": N, "refused": N, "offers": N, "secs": S, "seed": N}
(refused: frames the interface's queue dropped at once, ENOBUFS; not sent).
"""

import argparse
import errno
import json
import random
import socket
import struct
import threading
import time

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6
NOBODY = bytes.fromhex("02fffffffffe")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def discover(mac, xid):
    """An Ethernet frame holding a DHCPDISCOVER from `mac` with `xid`."""
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 0, xid, 0, 0x8000,  # BOOTREQUEST, Ethernet, broadcast flag
        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4,
        mac + b"\0" * 10, b"\0" * 64, b"\0" * 128,
    )
    # Magic cookie, message type DISCOVER, parameter request list, end.
    bootp += b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\x37\x03\x01\x03\x06" + b"\xff"
    bootp += b"\0" * (300 - len(bootp))
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), xid & 0xFFFF, 0, 64, 17, 0,
        b"\0" * 4, b"\xff" * 4,
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return BROADCAST + mac + struct.pack("!H", ETH_P_IP) + ip + udp


def plain(mac):
    """A minimum-size frame from `mac` to a MAC nobody has."""
    return NOBODY + mac + b"\x88\xb5" + b"vmlan-mac-flood".ljust(46, b"\0")


def offer_xid(frame):
    """The xid of a DHCPOFFER in `frame`, else None."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17:
        return None
    udp = 14 + ihl
    if struct.unpack("!H", frame[udp + 2 : udp + 4])[0] != 68:
        return None
    bootp = frame[udp + 8 :]
    if len(bootp) < 240 or bootp[0] != 2 or bootp[236:240] != b"\x63\x82\x53\x63":
        return None
    opts, i = bootp[240:], 0
    while i + 1 < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == 53 and i + 2 < len(opts) and opts[i + 2] == 2:
            return struct.unpack("!I", bootp[4:8])[0]
        i += 2 + opts[i + 1]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--mode", choices=["dhcp", "mac"], required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seed", type=int, required=True)
    a = ap.parse_args()
    rng = random.Random(a.seed)

    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.bind((a.iface, 0))
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    xids, offers = set(), set()
    done = threading.Event()
    rx_thread = None
    if a.mode == "dhcp":
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        rx.bind((a.iface, ETH_P_IP))
        try:  # SO_RCVBUFFORCE (root): past net.core.rmem_max, so a burst of OFFERs fits
            rx.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
        except OSError:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.settimeout(0.2)

        def receive():
            while not done.is_set():
                try:
                    frame, addr = rx.recvfrom(2048)
                except socket.timeout:
                    continue
                if addr[2] == PACKET_OUTGOING:
                    continue
                x = offer_xid(frame)
                if x is not None and x in xids:
                    offers.add(x)

        rx_thread = threading.Thread(target=receive)
        rx_thread.start()

    seen = set()
    sent = refused = 0
    start = time.monotonic()
    while sent < a.count:
        now = time.monotonic()
        if now - start > a.seconds:
            break
        ahead = start + sent / a.rate - now
        if ahead > 0:
            time.sleep(ahead)
        while True:
            mac = bytes([0x02] + [rng.randrange(256) for _ in range(5)])
            if mac not in seen:
                seen.add(mac)
                break
        if a.mode == "dhcp":
            xid = rng.getrandbits(32)
            xids.add(xid)
            frame = discover(mac, xid)
        else:
            frame = plain(mac)
        try:
            tx.send(frame)
        except OSError as e:  # ENOBUFS: the interface's queue dropped it
            if e.errno != errno.ENOBUFS:
                raise
            refused += 1
            continue
        sent += 1
    secs = time.monotonic() - start
    if rx_thread:
        time.sleep(1.0)  # the last OFFERs
        done.set()
        rx_thread.join()
    summary = {"sent": sent, "refused": refused, "offers": len(offers), "secs": round(secs, 2), "seed": a.seed}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
