"""Shared plumbing of the lab-peer stand-ins in this directory (see README.md).

`LabPeer` is the seed program's design in the standard dialect (docs/PROTOCOL.md, section 1):
a thread per accepted connection, a single recv(1024), the strict parse
`addr, name, msg = text.split(" ", 2)`, peers keyed by observed IP + claimed port, `connect`
answered with `connect_ack` on a new connection, every message sent on its own connection.
The stand-ins subclass it and override the hooks where the peer they mimic differs.
"""

import argparse
import os
import socket
import sys
import threading

_PRINT_LOCK = threading.Lock()
CONTROL_WORDS = ("connect", "connect_ack", "exit")


def emit(line):
    """Prints one event line atomically and flushes it."""
    with _PRINT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def hexs(text):
    return text.encode("utf-8").hex()


def split_addr(text):
    """`IP:PORT` -> (ip, port); ValueError if it is not that."""
    ip, sep, port = text.rpartition(":")
    if not sep or not ip or not port.isdigit():
        raise ValueError(f"not IP:PORT: {text!r}")
    return ip, int(port)


def fmt(addr):
    return f"{addr[0]}:{addr[1]}"


def parse_args(description, default_name, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bind", required=True, help="IP to listen on (and send from)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument("--name", default=default_name, help="team name in headers")
    if extra:
        extra(parser)
    return parser.parse_args()


def open_conn(src_ip, dest, timeout=5):
    """A connected TCP socket from src_ip (ephemeral port) to dest."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.bind((src_ip, 0))
        s.connect(dest)
    except OSError:
        s.close()
        raise
    return s


def parse_standard(text):
    """The seed's parse of `IP:PORT NAME MESSAGE`; raises ValueError where the seed crashes."""
    addr, name, msg = text.split(" ", 2)
    ip, port = addr.split(":")
    return ip, int(port), name, msg


class Peers:
    """The peer table: a set of `IP:PORT` keys; prints `peers K1,K2,...` (sorted; `-` when
    empty) after each change."""

    def __init__(self):
        self._keys = set()
        self._lock = threading.Lock()

    def _change(self, key, add):
        with self._lock:
            if (key in self._keys) == add:
                return
            (self._keys.add if add else self._keys.discard)(key)
            emit("peers " + (",".join(sorted(self._keys)) or "-"))

    def add(self, key):
        self._change(key, True)

    def remove(self, key):
        self._change(key, False)

    def keys(self):
        with self._lock:
            return sorted(self._keys)


class LabPeer:
    CONNECT = "connect"  # this dialect's connect and leave words
    LEAVE = "exit"

    def __init__(self, args, src_ip=None):
        self.args = args
        self.src_ip = src_ip or args.bind  # source IP of outgoing connections
        self.peers = Peers()

    def payload(self, dest, text):
        """The bytes that carry TEXT to dest."""
        return f"{self.args.bind}:{self.args.port} {self.args.name} {text}".encode()

    def parse(self, text, addr):
        """-> (key_ip, key_port, name, msg, word): how the peer files the sender, and the
        control word (connect, connect_ack, exit) or None. Raises ValueError on what it
        cannot parse."""
        _ip, port, name, msg = parse_standard(text)
        return addr[0], port, name, msg, msg if msg in CONTROL_WORDS else None

    def read(self, conn):
        return conn.recv(1024)

    def handle(self, conn, addr, seq):
        with conn:
            try:
                data = self.read(conn)
            except OSError:
                data = b""
            got = self.show(data, addr, seq)
            self.answer(conn, got)
        self.after(got)

    def show(self, data, addr, seq, extra=""):
        """Decodes and prints one arrival, updates the table; returns the parse or None."""
        origin = fmt(addr)
        try:
            got = self.parse(data.decode("utf-8"), addr)  # strict, like the real peers
        except ValueError as e:  # UnicodeDecodeError is one
            emit(f"decode_error seq={seq} from={origin} raw_hex={data.hex()} error={e}")
            return None
        ip, port, name, msg, word = got
        key = f"{ip}:{port}"
        if word:
            emit(f"control word={word} from={origin} key={key} name={name}")
        else:
            emit(f"message seq={seq}{extra} from={origin} key={key} name={name} text_hex={hexs(msg)}")
        (self.peers.remove if word == "exit" else self.peers.add)(key)
        return got

    def answer(self, conn, got):
        """A reply on the same connection, before it closes: none in the seed."""

    def after(self, got):
        """After the connection closed: `connect` gets `connect_ack` on a new connection."""
        if got and got[4] == "connect":
            self.send((got[0], got[1]), "connect_ack")

    def send(self, dest, text):
        """TEXT on its own connection: connect, write, close. Prints sent or send_error."""
        try:
            with open_conn(self.src_ip, dest) as s:
                s.sendall(self.payload(dest, text))
                emit(f"sent to={fmt(dest)} text_hex={hexs(text)}")
                self.after_send(s, dest, text)
            return True
        except OSError as e:
            emit(f"send_error to={fmt(dest)} error={e}")
            return False

    def after_send(self, sock, dest, text):
        """What happens on our connection after writing: nothing in the seed."""

    def commands(self):
        return {"send": self.cmd_send, "connect": self.cmd_connect, "quit": self.cmd_quit}

    def cmd_send(self, rest):
        addr, _, text = rest.partition(" ")
        dest = split_addr(addr)
        if self.send(dest, text):
            self.peers.add(fmt(dest))

    def cmd_connect(self, rest):
        dest = split_addr(rest.strip())
        if self.send(dest, self.CONNECT):
            self.peers.add(fmt(dest))

    def cmd_quit(self, _rest):
        for key in self.peers.keys():
            self.send(split_addr(key), self.LEAVE)

    def run(self):
        server = listen(self.args)
        command_loop(self.commands())
        serve(server, self.handle)


def listen(args):
    """Binds, prints `listening on IP:PORT as NAME`, returns the server socket."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.bind, args.port))
    server.listen(128)
    args.port = server.getsockname()[1]
    emit(f"listening on {args.bind}:{args.port} as {args.name}")
    return server


def serve(server, handle):
    """The accept loop: handle(conn, addr, seq) in a thread per connection, seq = accept order."""
    seq = 0
    while True:
        conn, addr = server.accept()
        threading.Thread(target=handle, args=(conn, addr, seq), daemon=True).start()
        seq += 1


def command_loop(commands):
    """Reads `WORD REST` commands from stdin in a thread; `quit` exits 0 after its handler.
    EOF on stdin is ignored (the peer keeps running)."""

    def run():
        for line in sys.stdin:
            word, _, rest = line.rstrip("\r\n").partition(" ")
            if not word:
                continue
            try:
                commands[word](rest)
            except (KeyError, ValueError) as e:
                emit(f"command_error line_hex={hexs(line.rstrip())} error={e!r}")
            if word == "quit":
                sys.stdout.flush()
                os._exit(0)

    threading.Thread(target=run, daemon=True).start()
