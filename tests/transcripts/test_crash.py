#!/usr/bin/env python3
"""kill -9 at any instant (PROTOCOL.md §4): pipelined load on a node with
--state-dir, killed at random instants (seeded), restarted on its state,
round after round. Every invariant is checked from what the node wrote to
stdout before each kill:

- no Double Ratchet chain position carries two different plaintexts (the
  wire bytes of every message_encrypted are parsed for its ratchet key and
  counter);
- a message reported decrypted is refused as a duplicate ever after; a
  message reported encrypted decrypts (exactly once) whenever it arrives;
- no one-time prekey id is handed out twice; no msg_id repeats;
- the database passes PRAGMA integrity_check after every kill.

usage: test_crash.py PATH/TO/e2ee-node PATH/TO/symmetric-node
Environment: SECURITOR_SEED, SECURITOR_KILLS (rounds per node, default 150).
"""
import base64
import json
import os
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import run_all, test  # noqa: E402

E2EE, SYM = sys.argv[1], sys.argv[2]
KEY = "c7" * 32
SEED = int(os.environ.get("SECURITOR_SEED", random.randrange(1 << 30)))
ROUNDS = int(os.environ.get("SECURITOR_KILLS", "150"))


# --- Signal wire bytes -------------------------------------------------------

def varint(b, i):
    v = shift = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, i


def fields(b):
    """protobuf fields of b as {number: value} (last one wins)."""
    out, i = {}, 0
    while i < len(b):
        key, i = varint(b, i)
        num, typ = key >> 3, key & 7
        if typ == 0:
            out[num], i = varint(b, i)
        elif typ == 2:
            n, i = varint(b, i)
            out[num] = b[i:i + n]
            i += n
        else:
            raise ValueError("unexpected wire type %d" % typ)
    return out


def position(em):
    """(ratchet key, counter) of an encrypted_message: the chain position."""
    raw = base64.b64decode(em["ciphertext"])
    assert raw[0] == 0x33, raw[:1]
    if em["kind"] == "prekey":
        inner = fields(raw[1:])[4]
    else:
        inner = raw
    f = fields(inner[1:-8])
    return f[1], f.get(2, 0)


# --- driving a node that may be killed ----------------------------------------

class Run:
    """One life of a node: lines written all at once (from a thread), replies
    read until the node is killed, then whatever it had written."""

    def __init__(self, binary, state, env):
        self.p = subprocess.Popen([binary, "--state-dir", state], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=dict(os.environ, SECURITOR_KEY=KEY, **env))
        self.buf = b""
        self.replies = []

    def feed(self, lines, rng):
        """Writes the lines in random pieces with short pauses, so that they
        make several batches (several commits) in the node."""
        pieces = []
        i = 0
        while i < len(lines):
            k = rng.randrange(1, 30)
            pieces.append((b"".join(l.encode() + b"\n" for l in lines[i:i + k]),
                           rng.random() * 0.004))
            i += k

        def write():
            try:
                for data, pause in pieces:
                    self.p.stdin.write(data)
                    self.p.stdin.flush()
                    time.sleep(pause)
            except (BrokenPipeError, ValueError, OSError):
                pass
        t = threading.Thread(target=write, daemon=True)
        t.start()
        return t

    def read(self, until_count=None, timeout=10.0):
        fd = self.p.stdout.fileno()
        end = time.monotonic() + timeout
        while until_count is None or len(self.replies) < until_count:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], min(left, 0.05))
            if not r:
                if until_count is None:
                    break
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            self.replies += [json.loads(l) for l in lines if l]

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        rest = self.p.stdout.read()  # what it wrote before it died
        self.buf += rest
        lines = self.buf.split(b"\n")
        # A line cut short by the kill is not a reply anyone received.
        self.replies += [json.loads(l) for l in lines[:-1] if l]
        try:
            self.p.stdin.close()
        except OSError:  # data still buffered for a process that is gone
            pass
        err = self.p.stderr.read().decode(errors="replace")
        assert "Sanitizer" not in err and "runtime error" not in err, err[-3000:]
        return err


def integrity_ok(state):
    """PRAGMA integrity_check on a copy (a reader must not change the state)."""
    with tempfile.TemporaryDirectory() as d:
        for name in os.listdir(state):
            shutil.copy(os.path.join(state, name), d)
        for name in os.listdir(d):
            if name.endswith(".db"):
                with sqlite3.connect(os.path.join(d, name)) as db:
                    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", name


def line(src, body):
    return json.dumps({"src": src, "dest": "n1", "body": body})


# --- e2ee-node ----------------------------------------------------------------

@test
def e2ee_survives_kill_9_at_any_instant():
    rng = random.Random(SEED)
    print("crash seed: %d (SECURITOR_SEED repeats it), %d rounds" % (SEED, ROUNDS))
    state = tempfile.mkdtemp(prefix="securitor-crash-")
    users = ["u%d" % i for i in range(5)]
    positions = {}        # (frm, to, ratchet key, counter) -> plaintext
    in_flight = []        # [frm, to, text, em, tried]: encrypted, not known delivered
    delivered = []        # (frm, to, text, em): reported decrypted
    opk_seen = {}         # user -> ids handed out
    msg_ids = set()
    next_id = [1]
    kills = 0
    for rnd in range(ROUNDS + 1):
        last = rnd == ROUNDS
        run = Run(E2EE, state, {})
        ops, lines = {}, []

        def op(kind, src, body, *info):
            mid = next_id[0]
            next_id[0] += 1
            body["msg_id"] = mid
            ops[mid] = (kind,) + info
            lines.append(line(src, body))

        tried = set()  # messages with a delivery earlier in this round

        def deliver(m):
            # Refusing it is right when an earlier attempt may have delivered it.
            earlier = m[4] or id(m) in tried
            tried.add(id(m))
            op("recv", m[1], {"type": "receive_message", "sender": m[0],
                              "encrypted_message": m[3]}, m, earlier)

        op("init", "c", {"type": "init", "node_id": "n1", "node_ids": ["n1"]})
        if last:  # everything still in flight arrives now
            for m in in_flight:
                deliver(m)
        else:
            for _ in range(rng.randrange(10, 120)):
                x = rng.random()
                if x < 0.5 or not in_flight:
                    frm, to = rng.sample(users, 2)
                    text = "r%d-%s" % (rnd, os.urandom(6).hex())
                    op("send", frm, {"type": "send_message", "recipient": to, "plaintext": text},
                       frm, to, text)
                elif x < 0.85:
                    deliver(rng.choice(in_flight))
                elif x < 0.95 and delivered:
                    m = rng.choice(delivered)
                    op("again", m[1], {"type": "receive_message", "sender": m[0],
                                       "encrypted_message": m[3]}, m)
                else:
                    u = rng.choice(users)
                    op("bundle", u, {"type": "get_bundle"}, u)
        writer = run.feed(lines, rng)
        if last:
            run.read(until_count=len(lines), timeout=60)
            run.p.stdin.close()
            run.p.wait(timeout=60)
        else:
            # The kill comes at a random instant: after some of the replies,
            # or any time while the node works (the first round of a state
            # takes longest: it makes the file and the users' keys).
            if rng.random() < 0.4:
                run.read(until_count=rng.randrange(1, len(lines) + 1), timeout=10)
            else:
                time.sleep(rng.random() * (0.15 if rnd < 3 else 0.06))
            run.kill()
            kills += 1
        writer.join(timeout=10)
        # What the node said before it died.
        for r in run.replies:
            b = r["body"]
            assert b["msg_id"] not in msg_ids, ("msg_id repeated", b["msg_id"], SEED)
            msg_ids.add(b["msg_id"])
            kind, *info = ops[b["in_reply_to"]]
            if kind == "send":
                frm, to, text = info
                assert b["type"] == "message_encrypted", (b, SEED)
                em = b["encrypted_message"]
                rk, ctr = position(em)
                key = (frm, to, rk, ctr)
                assert positions.get(key, text) == text, ("a chain position reused", key, SEED)
                positions[key] = text
                in_flight.append([frm, to, text, em, False])
            elif kind == "recv":
                m, earlier = info
                if b["type"] == "message_decrypted":
                    assert b["plaintext"] == m[2], (b, m, SEED)
                    assert any(x is m for x in in_flight), ("decrypted twice", m, SEED)
                    in_flight[:] = [x for x in in_flight if x is not m]
                    delivered.append(tuple(m[:4]))
                else:
                    # Refused only when an earlier attempt (whose reply may
                    # have been lost) had delivered it already.
                    assert b["type"] == "decryption_failed" and earlier, (b, m, SEED)
                    in_flight[:] = [x for x in in_flight if x is not m]
            elif kind == "again":
                assert b["type"] == "decryption_failed", ("a duplicate decrypted", b, SEED)
            elif kind == "bundle":
                oid = b.get("one_time_pre_key_id")
                seen = opk_seen.setdefault(info[0], set())
                assert oid is None or oid not in seen, ("prekey handed out twice", oid, SEED)
                seen.add(oid)
        # Deliveries whose reply was lost may have happened.
        answered = {r["body"]["in_reply_to"] for r in run.replies}
        for mid, (kind, *info) in ops.items():
            if kind == "recv" and mid not in answered:
                info[0][4] = True
        if not last:
            integrity_ok(state)
    assert not in_flight, ("encrypted messages that never decrypted", in_flight[:3], SEED)
    integrity_ok(state)
    print("e2ee: %d kills, %d messages encrypted, %d delivered" % (kills, len(positions),
                                                                  len(delivered)))
    shutil.rmtree(state)


run_all()
