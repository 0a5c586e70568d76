#!/usr/bin/env python3
"""The loop under hostile input, through symmetric-node: secrets left in
freed memory, lines that cost too much, memory limits, valid JSON cJSON
refuses, integers JSON cannot carry.

usage: test_loop.py PATH/TO/symmetric-node
Runs in the thread mode the environment gives (SECURITOR_THREADS).
"""
import base64
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import (Node, can_read_memory, memory_holds, run_all, run_lines, skip,  # noqa: E402
                     test)

BIN = sys.argv[1]
KEY_ENV = {"SECURITOR_KEY": "11" * 32}
SANITIZED = any(k in os.environ for k in ("ASAN_OPTIONS", "TSAN_OPTIONS"))


def msg(body, src="c", dest="n1"):
    return json.dumps({"src": src, "dest": dest, "body": body})


def token(tag):
    """A random marker that occurs nowhere else."""
    return ("%s-%s-" % (tag, os.urandom(8).hex())).encode()


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


@test
def no_plaintext_left_in_freed_memory():
    """Plaintexts pass through buffers that grow (a line longer than one read,
    replies queued while more are written) and through decoders that fail
    half way (malformed base64). Once the replies are out, none of them may
    be found anywhere in the node's memory, freed heap included."""
    if not can_read_memory():
        skip("cannot read a child's memory here")
    node = Node(BIN, env=KEY_ENV)
    t_long, t_reply, t_b64, t_split = token("long"), token("reply"), token("b64"), token("split")
    # 1. A 300 KB line: the input buffer grows several times holding it.
    node.send({"type": "encrypt", "plaintext": (t_long * 12000).decode()})
    assert node.recv()["body"]["type"] == "encrypted"
    # 2. Decrypted replies queued while more are formatted: the output
    #    buffer grows holding plaintexts.
    enc = node.call({"type": "encrypt", "plaintext": (t_reply * 1500).decode()})
    dec = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
           "authTag": enc["authTag"]}
    lines = [msg(dict(dec, msg_id=100 + i)) for i in range(40)]
    node.send_line("\n".join(lines))
    for _ in lines:
        assert node.recv()["body"]["type"] == "decrypted"
    # 3. base64 that goes bad at its end: the prefix decodes first.
    bad = base64.b64encode(t_b64 * 40).decode()[:-4] + "!!!!"
    r = node.call({"type": "encrypt", "plaintext": bad, "encoding": "base64"})
    assert r["type"] == "error" and r["code"] == 12, r
    # 4. A line split across two reads, after a complete one: its start moves
    #    to the front of the read buffer (one thread) or to the next batch.
    first = msg({"type": "echo", "msg_id": 200, "echo": "x" * 3000})
    second = msg({"type": "encrypt", "msg_id": 201, "plaintext": (t_split * 20).decode()})
    node.proc.stdin.write((first + "\n" + second[:len(second) // 2]).encode())
    node.proc.stdin.flush()
    assert node.recv()["body"]["echo"] == "x" * 3000
    time.sleep(0.2)
    node.proc.stdin.write((second[len(second) // 2:] + "\n").encode())
    node.proc.stdin.flush()
    assert node.recv()["body"]["type"] == "encrypted"
    time.sleep(0.3)  # the worker wipes a batch once it is answered
    found = memory_holds(node.proc.pid, [t_long, t_reply, t_b64, t_split])
    node.close()
    assert not found, "left in memory: %r" % sorted(found)


@test
def a_line_of_many_values_is_bounded():
    """[1,1,1,...] costs 32 bytes of tree per 2 bytes of text: a 60 MB line
    of it is refused (error 12) instead of taking gigabytes, and the memory
    goes back once it is answered."""
    n = 30_000_000
    head = b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":1,"echo":['
    line = head + b"1," * (n - 1) + b"1]}}"
    node = Node(BIN, env=KEY_ENV)
    node.send_line(line)
    r = node.recv(timeout=120)["body"]
    assert r["type"] == "error" and r["code"] == 12 and r["in_reply_to"] == 1, r
    assert "too many JSON values" in r["text"], r
    assert node.call({"type": "echo", "echo": [1] * 1000})["echo"] == [1] * 1000
    peak, now = status(node.proc.pid, "VmHWM"), status(node.proc.pid, "VmRSS")
    node.close()
    # ThreadSanitizer's shadow takes about 4 bytes per byte the node uses.
    limit = (1600 if "TSAN_OPTIONS" in os.environ else 400) << 20
    assert peak < limit, "peak RSS %d MiB" % (peak >> 20)
    if SANITIZED:  # ASan keeps freed memory in quarantine (256 MiB by default)
        print("note: sanitizer runtimes keep freed memory; the RSS after is not checked")
        return
    assert now < 64 << 20, "RSS after the big line: %d MiB" % (now >> 20)


@test
def out_of_memory_is_an_error_not_a_spin():
    """Under a memory limit, a line too big to hold gets error 13 (or its
    reply, if it fits), the next line is answered, and the node exits 0 at
    end of input."""
    if SANITIZED:
        skip("sanitizer runtimes do not run under an address-space limit")
    big = msg({"type": "encrypt", "msg_id": 1, "plaintext": "p" * (20 << 20)})
    small = msg({"type": "echo", "msg_id": 2, "echo": "still here"})
    for limit_mib in (40, 60, 100, 300):  # from "cannot hold the line" to "fits"
        limit = limit_mib << 20

        def cap():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        p = subprocess.run([BIN], input=(big + "\n" + small + "\n").encode(),
                           capture_output=True, timeout=120, preexec_fn=cap,
                           env=dict(os.environ, **KEY_ENV))
        replies = [json.loads(l) for l in p.stdout.split(b"\n") if l]
        assert p.returncode == 0, (limit_mib, p.returncode, p.stderr[-2000:])
        kinds = [(r["body"].get("in_reply_to"), r["body"]["type"], r["body"].get("code"))
                 for r in replies]
        assert len(kinds) == 2 and kinds[-1] == (2, "echo_ok", None), (limit_mib, kinds)
        assert kinds[0] in ((1, "error", 13), (1, "encrypted", None)), (limit_mib, kinds)
        assert p.stderr.count(b"\n") < 20, p.stderr[-2000:]


@test
def max_line_refuses_with_error_12():
    lines = [msg({"type": "echo", "msg_id": 1, "echo": "y" * (2 << 20)}),
             msg({"type": "echo", "msg_id": 2, "echo": "fine"})]
    replies, err, code = run_lines(BIN, lines, args=["--max-line", "1M"], env=KEY_ENV)
    assert code == 0, err
    r1, r2 = (r["body"] for r in replies)
    assert r1["type"] == "error" and r1["code"] == 12 and r1["in_reply_to"] == 1, r1
    assert "--max-line" in r1["text"]
    assert r2["echo"] == "fine"
    p = subprocess.run([BIN, "--max-line", "lots"], capture_output=True, timeout=10)
    assert p.returncode == 2 and b"--max-line" in p.stderr


@test
def valid_json_cjson_refuses_still_gets_error_12():
    sys.setrecursionlimit(20000)  # Python's own decoder reads the deep echo back
    deep = "[" * 1001 + "]" * 1001
    cases = [
        ('{"src":"c","dest":"n1","body":{"type":"echo","msg_id":1,"echo":"\\ud800"}}', 1),
        ('{"src":"c","dest":"n1","body":{"type":"echo","msg_id":2,"echo":%s}}' % deep, 2),
        ('{"src":"c","dest":"n1","body":{"type":"echo","msg_id":3,"echo":"a\x01b"}}', 3),
        ('{"src":"c","dest":"n1","body":{"type":"echo","msg_id":4,"echo":"a\tb"}}', 4),
        ('{"src":"c\\u00e9","dest":"n1","body":{"msg_id":5,"type":"echo","echo":"\\udc00"}}', 5),
        ('{"src":"c","dest":"n1","body":{"type":"echo","msg_id":6,"echo":"\x1f', 6),
        # a dest that is not a string no longer stops salvage before msg_id
        ('{"src":"c","dest":5,"body":{"type":"echo","msg_id":8,"echo":"\\ud800"}}', 8),
        # RFC 8259 white space is space, tab, LF and CR; cJSON skips any byte
        # up to 0x20 between tokens
        ('{"src":"c",\x0b"dest":"n1","body":{"type":"echo","msg_id":9,"echo":"x"}}', 9),
    ]
    replies, err, code = run_lines(BIN, [c for c, _ in cases] + [
        '{"src":"c",\t"dest":"n1",\t"body":{"type":"echo","msg_id":7,"echo":%s}}'
        % ("[" * 998 + "]" * 998)], env=KEY_ENV)  # 1000 deep with the two objects
    assert code == 0, err
    got = [(r["body"].get("in_reply_to"), r["body"]["type"], r["body"].get("code"))
           for r in replies]
    assert got == [(i, "error", 12) for _, i in cases] + [(7, "echo_ok", None)], got
    assert replies[4]["dest"] == "c\u00e9", replies[4]
    assert "control character" in replies[2]["body"]["text"], replies[2]
    assert "control character" in replies[3]["body"]["text"], replies[3]
    assert "between JSON tokens" in replies[7]["body"]["text"], replies[7]


@test
def u_escape_without_four_hex_digits_is_refused():
    """cJSON 1.7.15 reads a \\u escape whose four characters are not all hex
    digits as U+0000, and its C string ends there: "attack at dawn\\u00zz, not
    dusk" would encrypt only "attack at dawn". Such a line gets error 12
    naming the escape, in a short string and in a long one (the long-string
    path), and the node goes on."""
    long_text = "x" * 3000
    cases = ['"attack at dawn\\u00zz, not dusk"', '"\\u12 a"', '"%s\\u0G00"' % long_text,
             '"\\u\\"ab"', '"ok", "aad": "x\\uzzzz"']
    lines = ['{"src":"c","dest":"n1","body":{"type":"encrypt","msg_id":%d,"plaintext":%s}}'
             % (i + 1, c) for i, c in enumerate(cases)]
    lines.append(msg({"type": "encrypt", "msg_id": 9, "plaintext": "attack at dawn\u00e9"}))
    replies, err, code = run_lines(BIN, lines, env=KEY_ENV)
    assert code == 0, err
    got = [(r["body"].get("in_reply_to"), r["body"]["type"], r["body"].get("code"))
           for r in replies]
    assert got == [(i + 1, "error", 12) for i in range(len(cases))] + [
        (9, "encrypted", None)], got
    for r in replies[:-1]:
        assert "\\u escape" in r["body"]["text"] and "four hex digits" in r["body"]["text"], r


@test
def integers_json_cannot_carry_are_refused():
    big = 9007199254740993  # 2^53 + 1: a double reads it as 2^53
    lines = ['{"src":"c","dest":"n1","body":{"type":"echo","msg_id":%d,"echo":1}}' % big,
             '{"src":"c","dest":"n1","body":{"type":"echo","msg_id":9007199254740991,'
             '"echo":1}}',
             msg({"type": "decrypt", "msg_id": 3, "iv": "00" * 12, "encryptedData": "",
                  "authTag": "00" * 16, "key_id": big}),
             '{"src":"c","dest":"n1","body":{"type":"echo","msg_id":-9007199254740992,'
             '"echo":1}}']
    replies, err, code = run_lines(BIN, lines, env=KEY_ENV)
    assert code == 0, err
    b = [r["body"] for r in replies]
    assert b[0]["code"] == 12 and "in_reply_to" not in b[0], b[0]
    assert b[1]["in_reply_to"] == 9007199254740991 and b[1]["type"] == "echo_ok", b[1]
    assert b[2]["code"] == 12 and "key_id" in b[2]["text"], b[2]
    assert b[3]["code"] == 12 and "in_reply_to" not in b[3], b[3]


@test
def unparseable_replies_are_not_answered():
    """A broken line that carries in_reply_to is a reply, even when cJSON
    cannot read it: no answer."""
    lines = ['{"src":"n2","dest":"n1","body":{"type":"error","in_reply_to":3,"text":"\\ud800"}}',
             '{"src":"n2","dest":"n1","body":{"in_reply_to":3,"type":"x"}} trailing']
    replies, err, code = run_lines(BIN, lines, env=KEY_ENV)
    assert code == 0 and replies == [], replies


run_all()
