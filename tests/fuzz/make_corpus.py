#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/ (run once; the result is checked in).

usage: make_corpus.py PATH/TO/e2ee-node [CORPUS_DIR]

- fuzz_wire: Signal wire bytes from a real conversation through e2ee-node (a
  send_message reply's encrypted_message.ciphertext is base64 of them):
  prekey messages, SignalMessages with small and multi-byte counters and
  previous counters, short and long ciphertexts.
- fuzz_bulk, fuzz_salvage: the request lines of the golden transcripts, a few
  protocol lines of each node, damaged lines; for fuzz_bulk also templates
  whose 0x01 / 0x02 bytes fuzz_bulk expands into long strings.
- fuzz_codec: hex, base64 and UTF-8 samples at the SIMD block edges.

Regression inputs (regress-*) are written by hand, not by this script; it
leaves them alone. Standard library only.
"""
import base64
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


class Node:
    def __init__(self):
        self.p = subprocess.Popen([BIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.msg_id = 0

    def call(self, src, body):
        self.msg_id += 1
        body = dict(body, msg_id=self.msg_id)
        line = json.dumps({"src": src, "dest": "n1", "body": body})
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        reply = json.loads(self.p.stdout.readline())["body"]
        assert reply.get("in_reply_to") == self.msg_id, reply
        return line, reply

    def send(self, frm, to, text):
        line, r = self.call(frm, {"type": "send_message", "recipient": to, "plaintext": text})
        assert r["type"] == "message_encrypted", r
        return line, r["encrypted_message"]

    def recv(self, me, frm, em):
        line, r = self.call(me, {"type": "receive_message", "sender": frm, "encrypted_message": em})
        assert r["type"] == "message_decrypted", r
        return line, r


def wire_corpus():
    n = Node()
    lines = []

    def keep(name, em):
        raw = base64.b64decode(em["ciphertext"])
        write("fuzz_wire", name, raw)

    line, em1 = n.send("alice", "bob", "hi bob")
    lines.append(line)
    keep("prekey-first", em1)
    _, em2 = n.send("alice", "bob", "")
    keep("prekey-empty-plaintext", em2)
    _, em3 = n.send("alice", "bob", "x" * 200)
    keep("prekey-long-ciphertext", em3)
    for em in (em1, em2, em3):
        lines.append(n.recv("bob", "alice", em)[0])
    line, em = n.send("bob", "alice", "hello alice")
    lines.append(line)
    keep("signal-first-reply", em)
    lines.append(n.recv("alice", "bob", em)[0])
    for i in range(3):
        _, em = n.send("alice", "bob", "m%d" % i)
        n.recv("bob", "alice", em)
    keep("signal-counter-2", em)
    ems = [n.send("bob", "alice", "burst %d" % i)[1] for i in range(130)]
    keep("signal-counter-129", ems[-1])
    keep("signal-counter-0-of-burst", ems[0])
    for em in ems:
        n.recv("alice", "bob", em)
    _, em = n.send("alice", "bob", "after the burst")
    n.recv("bob", "alice", em)
    _, em = n.send("bob", "alice", "previous counter 130")
    keep("signal-previous-counter-130", em)
    _, em = n.send("bob", "alice", "y" * 300)
    keep("signal-long-ciphertext", em)
    # A second pair, so that the prekey ids differ.
    _, em = n.send("carol", "dave", "hi dave")
    keep("prekey-second-pair", em)
    n.p.stdin.close()
    n.p.wait()
    return lines


def json_corpus(e2ee_lines):
    golden = os.path.join(HERE, "..", "transcripts", "golden")
    lines = []
    for name in sorted(os.listdir(golden)):
        if name.endswith(".in.jsonl"):
            with open(os.path.join(golden, name), "rb") as f:
                lines += [l.rstrip(b"\n") for l in f if l.strip()]
    lines += [l.encode() for l in e2ee_lines]
    for i, l in enumerate(lines):
        write("fuzz_salvage", "line-%02d" % i, l)
        write("fuzz_bulk", "line-%02d" % i, l)
    damaged = [
        b'{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":7,"echo":"\\ud800"}}',
        b'{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":8,"in_reply_to":3}} trailing',
        b'{"src":"c\\u00e9\\ud83d\\udd10","dest":"n1","body":{"msg_id":-9007199254740991,"x":[',
        b'{"id":1,"body":{"a":{"b":[1,{"c":"}"}]},"msg_id":12},"src":"late"',
        b'{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":9007199254740992}}',
    ]
    for i, l in enumerate(damaged):
        write("fuzz_salvage", "damaged-%02d" % i, l)
        write("fuzz_bulk", "damaged-%02d" % i, l)
    # Templates: \x01 is BULK_MIN - 1 'a's, \x02 511 "é" (see fuzz_bulk.c).
    templates = [
        b'{"src":"c","dest":"n1","body":{"type":"encrypt","msg_id":1,"plaintext":"\x01b"}}',
        b'{"src":"c","dest":"n1","body":{"type":"decrypt","msg_id":2,"iv":"00","encryptedData":"\x01\x01","authTag":"\x01"}}',
        b'{"\x01b":"\x02xy","k":["\x01\x01",{"\x02\xc3\xa9":1}],"e":"\x01\\"x"}',
        b'{"k":1} "\x01b"',
        b'["\x01b\\u0000", "\x01b"]',
        b'{"a":"\x01b","b":"\x01\\\\"}',
    ]
    for i, l in enumerate(templates):
        write("fuzz_bulk", "long-%02d" % i, l)


def codec_corpus():
    samples = {
        "hex-iv": b"000102030405060708090a0b",
        "hex-upper-33": b"0123456789ABCDEFabcdef" * 3,
        "hex-bad-tail": b"00" * 40 + b"0g",
        "b64-pad1": b"QUJDREU=",
        "b64-pad2": b"QUJDRA==",
        "b64-key": base64.b64encode(bytes(range(33))),
        "b64-long": base64.b64encode(bytes(range(256)) * 2),
        "utf8-mixed": "ascii é € 🔐 \u07ff\uffff".encode() * 4,
        "utf8-edges": b"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\xf0\x90\x80\x80" + b"a" * 70,
        "utf8-bad": b"a" * 63 + b"\xe0\x80\x80" + b"\xed\xa0\x80" + b"\xf4\x90\x80\x80",
        "utf8-control": b"x" * 64 + b"\x1f" + b"y" * 8 + b"\x00",
    }
    for name, data in samples.items():
        write("fuzz_codec", name, data)


lines = wire_corpus()
json_corpus(lines)
codec_corpus()
