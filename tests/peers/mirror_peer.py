#!/usr/bin/env python3
"""Stand-in for the lab peer whose header claims the receiver's own address.

Every message it sends (chat, `PING`, `connect`, `connect_ack`, `exit`) is in the standard form
but its header names the TARGET's IP:PORT instead of its own: `ping 127.0.0.5:6000` writes
`127.0.0.5:6000 mirror PING` to 127.0.0.5:6000. A receiver that trusts the header files itself
as a peer. It receives like thread_receiver.py (standard dialect, thread per connection, one
recv(1024)); its `connect_ack` answers, too, claim the address they are sent to.

Usage: mirror_peer.py --bind IP [--port 0] [--name NAME]   (extra stdin command: ping IP:PORT)
"""

import sys

sys.dont_write_bytecode = True
import labpeer  # noqa: E402


class MirrorPeer(labpeer.LabPeer):
    def payload(self, dest, text):
        return f"{dest[0]}:{dest[1]} {self.args.name} {text}".encode()

    def commands(self):
        table = super().commands()
        table["ping"] = lambda rest: self.cmd_send(rest.strip() + " PING")
        return table


if __name__ == "__main__":
    MirrorPeer(labpeer.parse_args("peer that claims the receiver's address", "mirror")).run()
