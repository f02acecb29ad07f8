#!/usr/bin/env python3
"""Writes a small seed corpus (corpus/decoder, corpus/split) from the dialects of
docs/PROTOCOL.md. The corpus directories are not committed; re-run this to recreate them."""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

MESSAGES = [
    b"198.51.100.201:8080 blockchain hello",
    b"198.51.100.201:8080 blockchain hello\n",
    b"[::1]:9000 bob hey you",
    b"198.51.100.201 8080 blockchain hello",
    b"fe80::1 7000 me hi",
    b"<198.51.100.201:8080> @ <team>\nhello\nworld\n<end>\n",
    b"<198.51.100.201:8080> @ <team>\n\nfirst\n\nsecond\n<203.0.113.1:80> @ <other>\nx",
    b"<198.51.100.201:8080> DISCONNECT",
    b"<203.0.113.9:8080> team hi there",
    b"LISTENING_PORT:8080|TEAM_NAME:team|hello | with pipes",
    b"LISTENING_PORT:8080",
    b"MESSAGE:bob:8080:hello: world",
    b"MESSAGE:bob:80:exit",
    b"CONNECT:bob:8080",
    b"ACK:bob:8080",
    b"EXIT:8080",
    b"CONNECT:8080",
    b"8080\nCONNECT\nhello\nworld\n",
    b"8080",
    b"8080\nhello\n10.0.0.1:80 bob hi\nafter\n",
    b'{"type": "message", "content": "hi", "sender_name": "bob", "sender_port": 8080}',
    b'{"type": "connect", "sender_name": "bob", "sender_port": "8080"}',
    b'{"type": "ack", "sender_ip": "203.0.113.1", "sender_port": 8080}\n{"type": "ACK", "sender_ip": "[::1]", "sender_port": 0}',
    b'{"type": "message", "content": "hi", "sender_ip": " fe80::1 ", "sender_name": "a\\nb"}\nraw after',
    b'{"type": "exit", "sender_port": 8080}{"type":"message","content":"a"} {"content": 5}',
    b'{\n  "type": "message",\n  "content": "pretty\\nprinted",\n  "sender_name": "bob",\n  "sender_port": 8080\n}\nafter',
    b'{"type": "message", "content": "cut\n<203.0.113.1:80> @ <t>\nx',
    b"{hello\n{}\n{\n",
    b"hello world",
    b"ACK from 8080",
    b"Connection Acknowledged",
    b"exit",
    b"  CONNECT_ACK \r\n",
    b"[PEER_QUIT]\nhandshake\nCONNECTION_REQUEST\nDISCONNECT",
    b"bad \xff\xfe bytes\nok \xe6\x97",
    b"203.0.113.1:80 a h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89",
    b"a\x00b\x07\r\n\n\n\t\n",
]

def limit_bytes(max_line):
    """The two leading bytes of decoder.rs that select `max_line` (16..=4096)."""
    if 16 <= max_line <= 143:
        return bytes([max_line - 16, 0])
    v = max_line - 16
    return bytes([0x80 | (v >> 8), v & 0xFF])

def write(directory, data):
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)

def main():
    dec = os.path.join(HERE, "corpus", "decoder")
    split = os.path.join(HERE, "corpus", "split")
    for msg in MESSAGES:
        write(dec, limit_bytes(1024) + b"\x00" + msg)        # one chunk
        write(dec, limit_bytes(32) + b"\x01\x01" + msg)      # byte by byte, small limit
        write(dec, limit_bytes(20) + b"\x03\x05\x00\x02" + msg)  # 5, empty, 2, ...
        write(split, b"\x1e\x00\x00" + msg)                   # header 30, once
        write(split, b"\x1e\x00\x07" + msg * 8)               # repeated: longer than 1024
    write(split, b"\x00\x04\x00" + "日本".encode())            # header 1024: absurd
    write(split, b"\xfe\x03\x03" + ("é" * 400).encode())      # header 1022
    print(f"{len(os.listdir(dec))} decoder seeds, {len(os.listdir(split))} split seeds")

if __name__ == "__main__":
    sys.exit(main())
