#!/usr/bin/env python3
"""A reference lab peer of the most common design: a thread per connection, one recv(1024).

Like most peers on the lab network (see docs/PROTOCOL.md), it reads a SINGLE recv(1024) per
connection, decodes it as strict UTF-8 (a message cut inside a character fails here, exactly
as it does at real peers), and splits the standard header `IP:PORT NAME MESSAGE`. It answers
an exact `connect` with `connect_ack` on a NEW connection to the sender's claimed listening
port, from its own bind address, as the seed program does.

Usage: thread_receiver.py --bind IP [--port 0] [--name NAME] [--reply TEXT]

Output, one line per event, flushed at once so that tests can wait for it:
    listening on IP:PORT as NAME
    message seq=N from=IP:PORT raw_len=N name=NAME port=PORT claimed_ip=IP text_hex=HEX raw_hex=HEX
    decode_error seq=N from=IP:PORT raw_len=N raw_hex=HEX error=WHY
    sent to=IP:PORT text_hex=HEX
    send_error to=IP:PORT error=WHY
`seq` counts accepted connections (accept order); header fields that cannot be parsed are `?`.
`--reply TEXT` answers every connection on the same socket, like peers that say "Message received".
"""

import argparse
import socket
import sys
import threading

_PRINT_LOCK = threading.Lock()


def emit(line):
    """Prints one event line atomically and flushes it."""
    with _PRINT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def parse_standard(text):
    """Splits `IP:PORT NAME MESSAGE` like the seed; returns (ip, port, name, message)."""
    parts = text.split(" ", 2)
    if len(parts) >= 2 and ":" in parts[0]:
        ip, _, port = parts[0].rpartition(":")
        if port.isdigit():
            return ip, port, parts[1], parts[2] if len(parts) == 3 else ""
    return "?", "?", "?", text


def send(args, ip, port, text):
    """Sends one message on a new connection, standard header, no newline."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.bind((args.bind, 0))
            s.connect((ip, port))
            s.sendall(f"{args.bind}:{args.port} {args.name} {text}".encode())
        emit(f"sent to={ip}:{port} text_hex={text.encode().hex()}")
    except OSError as e:
        emit(f"send_error to={ip}:{port} error={e}")


def handle(conn, addr, seq, args):
    """Serves one connection: a single recv(1024), then close."""
    with conn:
        data = conn.recv(1024)
        if args.reply:
            try:
                conn.sendall(args.reply.encode())
            except OSError:
                pass
    origin = f"{addr[0]}:{addr[1]}"
    try:
        text = data.decode("utf-8")  # strict, like the real peers
    except UnicodeDecodeError as e:
        emit(f"decode_error seq={seq} from={origin} raw_len={len(data)} raw_hex={data.hex()} error={e}")
        return
    ip, port, name, message = parse_standard(text)
    emit(
        f"message seq={seq} from={origin} raw_len={len(data)} name={name} port={port} "
        f"claimed_ip={ip} text_hex={message.encode().hex()} raw_hex={data.hex()}"
    )
    if message == "connect" and port != "?":  # compared exactly, like the seed
        send(args, addr[0], int(port), "connect_ack")


def listen(args):
    """Binds, prints the listening line, and returns the server socket."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.bind, args.port))
    server.listen(128)
    args.port = server.getsockname()[1]
    emit(f"listening on {args.bind}:{args.port} as {args.name}")
    return server


def parse_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="pypeer")
    parser.add_argument("--reply", default=None)
    return parser.parse_args()


def main():
    args = parse_args("thread-per-connection reference peer")
    server = listen(args)
    seq = 0
    while True:
        conn, addr = server.accept()
        threading.Thread(target=handle, args=(conn, addr, seq, args), daemon=True).start()
        seq += 1


if __name__ == "__main__":
    main()
