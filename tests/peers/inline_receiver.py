#!/usr/bin/env python3
"""A reference lab peer of the other common design: single-threaded, one connection at a time.

It accepts a connection, serves it inline with a single recv(1024) (blocking everyone else
meanwhile), closes it, and only then accepts the next. Parsing, output lines and the
`connect_ack` answer are those of thread_receiver.py, which it reuses.

Usage: inline_receiver.py --bind IP [--port 0] [--name NAME] [--reply TEXT]
"""

from thread_receiver import handle, listen, parse_args


def main():
    args = parse_args("single-threaded inline reference peer")
    server = listen(args)
    seq = 0
    while True:
        conn, addr = server.accept()
        handle(conn, addr, seq, args)
        seq += 1


if __name__ == "__main__":
    main()
