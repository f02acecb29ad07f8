#!/usr/bin/env python3
"""Stand-in for the lab peers that acknowledge on the same socket.

Standard dialect, thread per connection, one recv(1024). An incoming `connect` is answered by
writing `IP:PORT NAME connected` (its own listening address and name) back on the SAME
connection before closing it; no `connect_ack` is sent on a new connection. When it sends
`connect` itself, it waits up to 5 s on that connection for such a reply and prints it as
`ack from=...` (or `no_ack to=... error=timeout|closed`).

With --ack-style received|ack-from|acknowledged it stands for the peers that instead answer
EVERY message (connect included) on the same socket with `Message received`, `ACK from PORT`
(its own listening port) or `Connection Acknowledged`. Replies carry no trailing newline.

Usage: same_socket_peer.py --bind IP [--port 0] [--name NAME] [--ack-style STYLE]
"""

import socket
import sys

sys.dont_write_bytecode = True
import labpeer  # noqa: E402


def options(parser):
    parser.add_argument("--ack-style", choices=("received", "ack-from", "acknowledged"))


class SameSocketPeer(labpeer.LabPeer):
    def reply_text(self, word):
        style, port = self.args.ack_style, self.args.port
        if style:
            return {"received": "Message received", "ack-from": f"ACK from {port}",
                    "acknowledged": "Connection Acknowledged"}[style]
        if word == "connect":
            return f"{self.args.bind}:{port} {self.args.name} connected"
        return None

    def answer(self, conn, got):
        reply = self.reply_text(got[4]) if got else None
        if reply:
            try:
                conn.sendall(reply.encode())
            except OSError:
                pass

    def after(self, got):
        """No connect_ack on a new connection: the same-socket reply was the answer."""

    def after_send(self, sock, dest, text):
        if text != "connect":
            return
        try:
            sock.settimeout(5)
            reply = sock.recv(1024)
        except socket.timeout:
            emit_no_ack(dest, "timeout")
            return
        except OSError as e:
            emit_no_ack(dest, f"closed ({e})")
            return
        if reply:
            labpeer.emit(f"ack from={labpeer.fmt(dest)} text_hex={reply.hex()}")
        else:
            emit_no_ack(dest, "closed")


def emit_no_ack(dest, why):
    labpeer.emit(f"no_ack to={labpeer.fmt(dest)} error={why}")


if __name__ == "__main__":
    args = labpeer.parse_args("peer that acknowledges on the same socket", "samesock", options)
    SameSocketPeer(args).run()
