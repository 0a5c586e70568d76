#!/usr/bin/env python3
"""Writes the seed corpora of the whole-node targets (run once; the result is checked in).

usage: make_corpus_nodes.py PATH/TO/e2ee-node [CORPUS_DIR]

- fuzz_symmetric: each golden symmetric transcript as one input (its lines
  answered by one node, state carried), and a few of its lines alone.
- fuzz_e2ee: what the nodes of a small conversation were sent, per node, as
  inputs of fuzz_node.c's roles (the first byte: '0' standalone, '1' the
  directory, '2' the relay, '3' a host of devices): a standalone
  conversation through one e2ee-node; and the blind backend (directory
  "dir", relay "relay", devices "n2" and "n3", the names fuzz_node.c gives
  its nodes) where alice registers on n2, bob on n3, and they exchange
  messages. Inits are left out (the target sends its own).
Standard library only; uses tests/transcripts/netlib.py.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "transcripts"))
import netlib  # noqa: E402

BIN = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "corpus")
ROLE = {"n1": b"0", "dir": b"1", "relay": b"2", "n2": b"3"}


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def symmetric():
    golden = os.path.join(HERE, "..", "transcripts", "golden")
    for name in sorted(os.listdir(golden)):
        if name.startswith("symmetric_") and name.endswith(".in.jsonl"):
            with open(os.path.join(golden, name), "rb") as f:
                data = f.read()
            write("fuzz_symmetric", name[:-len(".in.jsonl")], data)
            lines = [l for l in data.split(b"\n") if l.strip()]
            for i, l in enumerate(lines[:4]):
                write("fuzz_symmetric", "%s-%d" % (name[len("symmetric_"):-len(".in.jsonl")], i), l)


class Recording(netlib.Net):
    def write(self, dest, line):
        if isinstance(line, str):
            line = line.encode()
        if b'"type": "init"' not in line and b'"type":"init"' not in line:
            self.sent.setdefault(dest, []).append(line)
        super().write(dest, line)


def e2ee():
    # Standalone: one node, n1.
    net = Recording({"n1": [BIN]})
    net.sent = {}
    net.init_all()
    def c(body, src):
        return net.reply_to(net.send("n1", body, src=src))
    c({"type": "get_bundle", "user": "bob"}, "bob")
    em = c({"type": "send_message", "recipient": "bob", "plaintext": "hi bob"}, "alice")
    c({"type": "receive_message", "sender": "alice",
       "encrypted_message": em["encrypted_message"]}, "bob")
    em = c({"type": "send_message", "recipient": "alice", "plaintext": "hello"}, "bob")
    c({"type": "receive_message", "sender": "bob",
       "encrypted_message": em["encrypted_message"]}, "alice")
    c({"type": "fingerprint", "peer": "bob"}, "alice")
    c({"type": "trust_identity", "peer": "bob", "identity_key":
       c({"type": "get_bundle", "user": "bob"}, "bob")["identity_key"]}, "alice")
    net.close()
    lines = net.sent["n1"]
    write("fuzz_e2ee", "standalone", b"0" + b"\n".join(lines))
    for i, l in enumerate(lines[:3]):
        write("fuzz_e2ee", "standalone-%d" % i, b"0" + l)

    # The backend.
    args = [BIN, "--directory", "dir", "--relay", "relay"]
    net = Recording({nid: args for nid in ("dir", "relay", "n2", "n3")})
    net.sent = {}
    net.init_all()
    assert net.call("n2", {"type": "register", "user": "alice"})["type"] == "registered"
    assert net.call("n3", {"type": "register", "user": "bob"})["type"] == "registered"
    net.call("n2", {"type": "send", "user": "alice", "to": "bob", "text": "hi bob"})
    net.run_for(0.5)
    net.call("n3", {"type": "read", "user": "bob"})
    net.call("n3", {"type": "send", "user": "bob", "to": "alice", "text": "hello"})
    net.run_for(0.5)
    net.call("n2", {"type": "read", "user": "alice"})
    net.call("n2", {"type": "devices", "user": "alice"})
    net.close()
    for nid in ("dir", "relay", "n2"):
        lines = net.sent.get(nid, [])
        write("fuzz_e2ee", "backend-" + nid, ROLE[nid] + b"\n".join(lines))
        seen = set()
        for l in lines:  # one of each type alone
            t = json.loads(l)["body"].get("type")
            if t and t not in seen:
                seen.add(t)
                write("fuzz_e2ee", "backend-%s-%s" % (nid, t), ROLE[nid] + l)


symmetric()
e2ee()
