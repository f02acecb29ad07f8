"""Sends one message whose urgent mark reaches the receiver after the byte it points at.

Usage: urgent_sender.py --bind IP --to IP:PORT HEAD TAIL

Only inside a private network namespace (the test makes one with `unshare -rn`; this script
needs its CAP_NET_RAW and CAP_NET_ADMIN, and TCP timestamps turned off there). It connects
from IP to the receiver, then freezes that connection with TCP_REPAIR, so that its own
kernel sends nothing more on it, and reads the connection's sequence numbers. Then it writes
two segments through a raw socket:

1. `!` + TAIL + FIN, at the sequence number after HEAD: out of order, without URG;
2. HEAD, at the first sequence number, with URG and an urgent pointer naming that `!`.

Linux keeps such a mark "not yet valid" (the urgent byte was not in the segment that named
it): the receiver's poll reports no urgent data, yet a read stops at the mark, and the `!`
is skipped. A receiver that reads to the end shows HEAD + TAIL. Prints `sent` when done,
then waits for the end of stdin before it exits.
"""

import argparse
import socket
import struct
import sys

TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
SEND_QUEUE, RECV_QUEUE = 2, 1
FIN, PSH, ACK, URG = 0x01, 0x08, 0x10, 0x20


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def segment(src, dst, seq, ack, flags, payload, urgent=0):
    """A TCP header of five words (no options) and `payload`, checksummed."""
    header = struct.pack(
        "!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack, 5 << 4, flags, 65535, 0, urgent
    )
    pseudo = socket.inet_aton(src[0]) + socket.inet_aton(dst[0])
    pseudo += struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header) + len(payload))
    sum_ = checksum(pseudo + header + payload)
    return header[:16] + struct.pack("!H", sum_) + header[18:] + payload


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("head")
    parser.add_argument("tail")
    args = parser.parse_args()
    host, port = args.to.rsplit(":", 1)
    dst = (host, int(port))
    conn = socket.socket()
    conn.bind((args.bind, 0))
    conn.connect(dst)
    src = conn.getsockname()
    conn.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    conn.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, SEND_QUEUE)
    seq = conn.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ) & 0xFFFFFFFF
    conn.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, RECV_QUEUE)
    ack = conn.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ) & 0xFFFFFFFF
    head = args.head.encode()
    tail = b"!" + args.tail.encode()
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    raw.bind((args.bind, 0))
    first = segment(src, dst, seq + len(head), ack, ACK | PSH | FIN, tail)
    raw.sendto(first, (dst[0], 0))
    second = segment(src, dst, seq, ack, ACK | PSH | URG, head, urgent=len(head) + 1)
    raw.sendto(second, (dst[0], 0))
    print("sent", flush=True)
    # Kept until stdin ends: without the frozen socket, this kernel would answer the
    # receiver's acknowledgements with a reset.
    sys.stdin.read()


if __name__ == "__main__":
    main()
