#!/usr/bin/env python3
"""Writes a deterministic benchmark capture (classic pcap, Ethernet, snaplen 128).

About 2 million packets: 70% TCP over ~50k connections (handshake, data, FIN teardown),
25% UDP (request/response flows), 5% ICMP echo; 5% of TCP and UDP flows are IPv6. Flows run
concurrently (1000 at a time, interleaved), one microsecond apart. Same output on every run.

usage: generate.py OUTPUT [PACKETS]
"""
import random
import struct
import sys

SNAPLEN = 128


def checksum_free_ipv4(length, proto, src, dst):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0x4000, 64, proto, 0, src, dst)


def ipv6_header(payload_length, proto, src, dst):
    return struct.pack("!IHBB16s16s", 6 << 28, payload_length, proto, 64, src, dst)


class Writer:
    def __init__(self, path):
        self.out = open(path, "wb", buffering=1 << 20)
        self.out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))
        self.time_us = 1_700_000_000 * 1_000_000
        self.count = 0

    def packet(self, l3, wire_payload, ethertype):
        frame = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02" + struct.pack("!H", ethertype) + l3
        wire = len(frame) + wire_payload
        captured = frame[:SNAPLEN] + bytes(max(0, min(SNAPLEN, wire) - len(frame)))
        self.time_us += 1
        self.out.write(struct.pack("<IIII", self.time_us // 1_000_000, self.time_us % 1_000_000, len(captured), wire))
        self.out.write(captured)
        self.count += 1


def address_pair(rng, v6):
    if v6:
        return (b"\x20\x01\x0d\xb8" + rng.randbytes(12), b"\x20\x01\x0d\xb8\xff" + rng.randbytes(11))
    return (bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)]),
            bytes([192, 168, rng.randrange(256), rng.randrange(1, 255)]))


def l3(v6, proto, src, dst, l4, payload):
    if v6:
        return ipv6_header(len(l4) + payload, proto, src, dst) + l4
    return checksum_free_ipv4(20 + len(l4) + payload, proto, src, dst) + l4


def tcp_flow(rng, v6, packets):
    """(from_client, flags, payload) steps of one connection with `packets` packets."""
    steps = [(True, 0x02, 0), (False, 0x12, 0), (True, 0x10, 0)]
    while len(steps) < packets - 3:
        steps.append((True, 0x18, rng.randrange(50, 600)))
        steps.append((False, 0x18, rng.choice([1448, 1448, 900])))
    steps += [(True, 0x11, 0), (False, 0x11, 0), (True, 0x10, 0)]
    src, dst = address_pair(rng, v6)
    sport, dport = rng.randrange(32768, 61000), rng.choice([80, 443, 8080, 22, 5432])
    for from_client, flags, payload in steps:
        a, b, pa, pb = (src, dst, sport, dport) if from_client else (dst, src, dport, sport)
        header = struct.pack("!HHIIBBHHH", pa, pb, 1, 1, 5 << 4, flags, 65535, 0, 0)
        yield l3(v6, 6, a, b, header, payload), payload, 0x86DD if v6 else 0x0800


def udp_flow(rng, v6, packets):
    src, dst = address_pair(rng, v6)
    sport, dport = rng.randrange(32768, 61000), rng.choice([53, 123, 514, 4789, 9999])
    for i in range(packets):
        a, b, pa, pb = (src, dst, sport, dport) if i % 2 == 0 else (dst, src, dport, sport)
        payload = rng.randrange(20, 400)
        yield l3(v6, 17, a, b, struct.pack("!HHHH", pa, pb, 8 + payload, 0), payload), payload, 0x86DD if v6 else 0x0800


def icmp_flow(rng, packets):
    src, dst = address_pair(rng, False)
    ident = rng.randrange(65536)
    for i in range(packets):
        a, b, kind = (src, dst, 8) if i % 2 == 0 else (dst, src, 0)
        yield l3(False, 1, a, b, struct.pack("!BBHHH", kind, 0, 0, ident, i // 2), 56), 56, 0x0800


def main():
    path = sys.argv[1]
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    rng = random.Random(20261128)
    flows = []
    tcp_packets, udp_packets = int(total * 0.70), int(total * 0.25)
    tcp_connections = max(1, tcp_packets // 28)
    for i in range(tcp_connections):
        flows.append(("tcp", i % 20 == 0, 28))
    for i in range(max(1, udp_packets // 20)):
        flows.append(("udp", i % 20 == 0, 20))
    for i in range(max(1, (total - tcp_packets - udp_packets) // 10)):
        flows.append(("icmp", False, 10))
    rng.shuffle(flows)
    writer = Writer(path)
    concurrent = 1000
    for start in range(0, len(flows), concurrent):
        generators = []
        for kind, v6, n in flows[start:start + concurrent]:
            if kind == "tcp":
                generators.append(tcp_flow(rng, v6, n))
            elif kind == "udp":
                generators.append(udp_flow(rng, v6, n))
            else:
                generators.append(icmp_flow(rng, n))
        while generators:
            alive = []
            for g in generators:
                step = next(g, None)
                if step is not None:
                    writer.packet(*step)
                    alive.append(g)
            generators = alive
    writer.out.close()
    print(f"{path}: {writer.count} packets, {len(flows)} flows ({tcp_connections} TCP connections)")


if __name__ == "__main__":
    main()
