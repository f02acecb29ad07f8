#!/usr/bin/env python3
"""Stand-in for the thread-per-connection receivers that reorder what arrives close together.

Standard dialect. Each connection's thread does one recv(1024), sleeps a random 0..--jitter-ms
milliseconds (how long the real peers' threads take to get scheduled and print), THEN prints
its line, THEN closes the connection (print before close, as the real peers do). `seq` is the
accept order, `shown` the print order (counting message lines only). A sender that waits for
our close before sending the next message gets its messages shown in order; one that does not
gets them shuffled. `connect` is answered with `connect_ack` on a new connection, as the seed.

Usage: ordered_receiver.py --bind IP [--port 0] [--name NAME] [--jitter-ms 50] [--seed N]
"""

import random
import sys
import threading
import time

sys.dont_write_bytecode = True
import labpeer  # noqa: E402


def options(parser):
    parser.add_argument("--jitter-ms", type=float, default=50, help="max delay before printing")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random delays")


class OrderedReceiver(labpeer.LabPeer):
    def __init__(self, args):
        super().__init__(args)
        self.random = random.Random(args.seed)
        self.shown = 0
        self.show_lock = threading.Lock()

    def handle(self, conn, addr, seq):
        with conn:
            try:
                data = conn.recv(1024)
            except OSError:
                data = b""
            with self.show_lock:
                delay = self.random.uniform(0, self.args.jitter_ms) / 1000
            time.sleep(delay)
            with self.show_lock:  # `shown` numbers the message lines in print order
                got = self.show(data, addr, seq, extra=f" shown={self.shown}")
                if got and not got[4]:
                    self.shown += 1
        self.after(got)


if __name__ == "__main__":
    args = labpeer.parse_args("thread-per-connection receiver that reorders", "ordered", options)
    OrderedReceiver(args).run()
