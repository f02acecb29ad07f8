#!/usr/bin/env python3
"""Stand-in for the lab peer that speaks only the space-separated dialect `IP PORT NAME MESSAGE`.

An early version of the seed program: one message per connection, no trailing newline, a single
recv(1024), then the strict parse `ip, port, name, msg = text.split(" ", 3)` and `int(port)`.
Anything else (our standard `IP:PORT NAME MESSAGE` fails on `int(NAME)`) is a decode_error.
`connect`, `connect_ack` and `exit` travel as the MESSAGE field, compared exactly; `connect` is
answered with `connect_ack` on a new connection to the observed IP and the claimed port, which is
also how it files its peers.

Usage: spaced_peer.py --bind IP [--port 0] [--name NAME]      (commands on stdin: README.md)
"""

import sys

sys.dont_write_bytecode = True
import labpeer  # noqa: E402


class SpacedPeer(labpeer.LabPeer):
    def payload(self, dest, text):
        return f"{self.args.bind} {self.args.port} {self.args.name} {text}".encode()

    def parse(self, text, addr):
        _ip, port, name, msg = text.split(" ", 3)
        port = int(port)
        return addr[0], port, name, msg, msg if msg in labpeer.CONTROL_WORDS else None


if __name__ == "__main__":
    SpacedPeer(labpeer.parse_args("space-separated-only lab peer", "spaced")).run()
