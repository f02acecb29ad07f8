#!/usr/bin/env python3
"""Stand-in for a lab peer whose listening address is not its sending address.

Its user typed the address the listener binds to (--bind), but its outgoing connections leave
from another local address (--send-from, as from the default route), while the header still
claims the listening address: `BINDIP:PORT NAME MESSAGE`. A receiver that replies to the IP it
observes is refused; the claimed IP answers. Otherwise the seed's design, like
thread_receiver.py: thread per connection, one recv(1024), standard dialect, `connect` answered
with `connect_ack` on a new connection to the observed IP and claimed port (sent from
--send-from too).

Usage: relay_address_peer.py --bind IP --send-from IP2 [--port 0] [--name NAME]
"""

import sys

sys.dont_write_bytecode = True
import labpeer  # noqa: E402


def options(parser):
    parser.add_argument("--send-from", required=True, help="source IP of outgoing connections")


if __name__ == "__main__":
    args = labpeer.parse_args("peer that sends from another address", "relay", options)
    labpeer.LabPeer(args, src_ip=args.send_from).run()
