#!/usr/bin/env python3
"""Sends messages to a peer the way the lab's peers do: connect, send, close.

Each MESSAGE argument is one message, written as given: backslash escapes (\\n, \\r\\n,
\\t, \\x00, \\u00e9) are decoded so that a test can spell any dialect of docs/PROTOCOL.md; with
--hex each MESSAGE is hex instead (for invalid UTF-8). `{i}` in a message becomes its index
when --count repeats the messages. By default every message goes on its own TCP connection
(back to back, the next one only after the previous is closed); --persistent writes them all,
in order, on one connection. --bind picks the source IP. An empty MESSAGE with the default
mode is a connect-only liveness probe.

Usage: sender.py --to IP:PORT [--bind IP] [--count N] [--persistent] [--pause-ms MS]
                 [--hex] MESSAGE...
Prints `sent N` (messages written) and exits 0, or prints `error WHY` and exits 1.
"""

import argparse
import socket
import sys
import time


def decode(message, is_hex):
    """The bytes a MESSAGE argument stands for."""
    if is_hex:
        return bytes.fromhex(message)
    # Escapes only: non-ASCII text passes through unchanged.
    return message.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("utf-8")


def connect(args, host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    if args.bind:
        s.bind((args.bind, 0))
    s.connect((host, port))
    return s


def main():
    parser = argparse.ArgumentParser(description="raw lab-peer sender")
    parser.add_argument("--to", required=True, help="IP:PORT of the receiver")
    parser.add_argument("--bind", default=None, help="source IP")
    parser.add_argument("--count", type=int, default=1, help="repeat the messages N times")
    parser.add_argument("--persistent", action="store_true", help="one connection for all")
    parser.add_argument("--pause-ms", type=int, default=0, help="pause between writes")
    parser.add_argument("--hex", action="store_true", help="messages are hex bytes")
    parser.add_argument("messages", nargs="+")
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    payloads = [
        decode(m.replace("{i}", str(i)), args.hex)
        for i in range(args.count)
        for m in args.messages
    ]
    try:
        if args.persistent:
            with connect(args, host, int(port)) as s:
                for p in payloads:
                    s.sendall(p)
                    time.sleep(args.pause_ms / 1000)
        else:
            for p in payloads:
                with connect(args, host, int(port)) as s:
                    s.sendall(p)
                time.sleep(args.pause_ms / 1000)
    except OSError as e:
        print(f"error {e}", flush=True)
        sys.exit(1)
    print(f"sent {len(payloads)}", flush=True)


if __name__ == "__main__":
    main()
