#!/usr/bin/env python3
"""Stand-in for the lab's persistent port-line peer.

Receiving: a connection must start with a line of digits only (the sender's listening port),
else it prints decode_error ("malformed message") and closes: one-shot messages and a
connect_ack on a new connection never reach it. Then every `\\n`-terminated line is one message
(or a control word: CONNECT/connect, EXIT/exit, connect_ack), each answered with
`Message received\\n` on the same connection, which stays open until the other side closes.
Senders are filed under the observed IP + the port line.

Sending: ONE persistent connection per destination: `OWNPORT\\n`, `CONNECT\\n`, then one
`TEXT\\n` per `send`, each followed by a wait of up to 5 s for a reply containing
`Message received`. No reply in time: send_error "no Message received", the line counts as lost
and the connection is kept. The other side closed the connection: send_error
"connection closed", the line is lost (not retried, the defect) and the next send/connect
opens a new connection. `quit` writes `EXIT\\n` on every open connection.

Usage: portline_peer.py --bind IP [--port 0] [--name NAME]
"""

import socket
import sys
import time

sys.dont_write_bytecode = True
import labpeer  # noqa: E402
from labpeer import emit, fmt, hexs  # noqa: E402

CONTROL = {"CONNECT": "connect", "connect": "connect", "EXIT": "exit", "exit": "exit",
           "connect_ack": "connect_ack"}


class Lost(Exception):
    """A line whose `Message received` never came; `closed`: the connection is gone."""

    def __init__(self, why, closed):
        super().__init__(why)
        self.closed = closed


class PortLinePeer(labpeer.LabPeer):
    def __init__(self, args):
        super().__init__(args)
        self.conns = {}  # destination -> its persistent socket (only the stdin thread uses it)

    # --- receiving -------------------------------------------------------------------
    def handle(self, conn, addr, seq):
        origin = fmt(addr)
        with conn, conn.makefile("rb") as lines:
            first = lines.readline()
            if not first.rstrip(b"\r\n").isdigit():
                emit(f"decode_error seq={seq} from={origin} raw_hex={first.hex()} "
                     "error=malformed message (no port line)")
                return
            key = f"{addr[0]}:{int(first)}"
            for n, raw in enumerate(lines):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    emit(f"decode_error seq={seq} from={origin} raw_hex={raw.hex()} error={e}")
                    return
                word = CONTROL.get(line)
                if word:
                    emit(f"control word={word} from={origin} key={key} name=?")
                elif line:
                    emit(f"message seq={seq} line={n} from={origin} key={key} name=? "
                         f"text_hex={hexs(line)}")
                if line:
                    (self.peers.remove if word == "exit" else self.peers.add)(key)
                try:
                    conn.sendall(b"Message received\n")
                except OSError:
                    return

    # --- sending ---------------------------------------------------------------------
    def write_line(self, dest, sock, text):
        """Writes TEXT\\n and waits up to 5 s for `Message received`; raises Lost."""
        try:
            sock.sendall(text.encode() + b"\n")
            reply, deadline = b"", time.monotonic() + 5
            while b"Message received" not in reply:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(1024)
                if not chunk:
                    raise Lost("connection closed", True)
                reply += chunk
        except socket.timeout:
            raise Lost("no Message received", False)
        except OSError:
            raise Lost("connection closed", True)
        emit(f"ack from={fmt(dest)} text_hex={reply.hex()}")
        emit(f"sent to={fmt(dest)} text_hex={hexs(text)}")
        self.peers.add(fmt(dest))

    def deliver(self, dest, texts):
        """Writes the lines in order on dest's persistent connection, opened if need be."""
        sock = self.conns.get(dest)
        if sock is None:
            try:
                sock = labpeer.open_conn(self.args.bind, dest)
                sock.sendall(f"{self.args.port}\n".encode())
            except OSError as e:
                emit(f"send_error to={fmt(dest)} error={e}")
                return
            self.conns[dest] = sock
            texts = ["CONNECT"] + [t for t in texts if t != "CONNECT"]
        for text in texts:
            try:
                self.write_line(dest, sock, text)
            except Lost as e:
                emit(f"send_error to={fmt(dest)} error={e}")
                if e.closed:
                    sock.close()
                    del self.conns[dest]
                    return

    def cmd_send(self, rest):
        addr, _, text = rest.partition(" ")
        self.deliver(labpeer.split_addr(addr), [text])

    def cmd_connect(self, rest):
        self.deliver(labpeer.split_addr(rest.strip()), ["CONNECT"])

    def cmd_quit(self, _rest):
        for dest, sock in self.conns.items():
            try:
                sock.sendall(b"EXIT\n")
                emit(f"sent to={fmt(dest)} text_hex={hexs('EXIT')}")
            except OSError as e:
                emit(f"send_error to={fmt(dest)} error={e}")
            try:  # drain, so that our close is a FIN, not a reset that could lose the EXIT
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(1)
                while sock.recv(1024):
                    pass
            except OSError:
                pass
            sock.close()


if __name__ == "__main__":
    PortLinePeer(labpeer.parse_args("persistent port-line lab peer", "portline")).run()
