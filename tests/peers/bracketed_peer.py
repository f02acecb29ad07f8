#!/usr/bin/env python3
"""Stand-in for the lab peers of the bracketed, multi-line dialect.

Sends `<IP:PORT> @ <NAME>\\nMESSAGE\\n<end>` (its own listening address), one message per
connection; `connect` and `connect_ack` are such blocks, leave is `<IP:PORT> DISCONNECT`. It
reads until `<end>` or EOF (at most 4096 bytes), decodes strictly as UTF-8, and files a
bracketed block or DISCONNECT under the bracket's IP:PORT. Anything else (say our standard
`IP:PORT NAME MESSAGE`) it still shows as a message, whole, with name `?`, but files its
sender under the observed IP and the EPHEMERAL source port of the connection (the defect): its
replies, connect_ack and DISCONNECT to such a sender go to a port nobody listens on and fail.
An empty connection is a decode_error ("disconnected (empty buffer)").

Usage: bracketed_peer.py --bind IP [--port 0] [--name NAME]
"""

import re
import sys

sys.dont_write_bytecode = True
import labpeer  # noqa: E402

BLOCK = re.compile(r"<([^<>]+):(\d+)> @ <([^<>]*)>\n(.*)\n<end>\s*", re.S)
DISCONNECT = re.compile(r"<([^<>]+):(\d+)> DISCONNECT\s*")


class BracketedPeer(labpeer.LabPeer):
    LEAVE = "DISCONNECT"

    def payload(self, dest, text):
        me = f"<{self.args.bind}:{self.args.port}>"
        if text == "DISCONNECT":
            return f"{me} DISCONNECT".encode()
        return f"{me} @ <{self.args.name}>\n{text}\n<end>".encode()

    def read(self, conn):
        conn.settimeout(10)
        data = b""
        try:
            while b"<end>" not in data and len(data) < 4096:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        if b"<end>" in data:
            data = data[: data.index(b"<end>") + 5]
        return data[:4096]

    def parse(self, text, addr):
        if not text:
            raise ValueError("disconnected (empty buffer)")
        block = BLOCK.fullmatch(text)
        if block:
            ip, port, name, msg = block.groups()
            return ip, int(port), name, msg, msg if msg in ("connect", "connect_ack") else None
        leave = DISCONNECT.fullmatch(text)
        if leave:
            return leave.group(1), int(leave.group(2)), "?", "DISCONNECT", "exit"
        word = text if text in ("connect", "connect_ack") else None
        return addr[0], addr[1], "?", text, word  # keyed by the ephemeral source port


if __name__ == "__main__":
    BracketedPeer(labpeer.parse_args("bracketed multi-line lab peer", "bracketed")).run()
