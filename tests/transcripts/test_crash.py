#!/usr/bin/env python3
"""kill -9 at any instant (PROTOCOL.md §4): pipelined load on a node with
--state-dir, killed at random instants (seeded), restarted on its state,
round after round. Every invariant is checked from what the node wrote to
stdout before each kill.

e2ee-node:
- no Double Ratchet chain position carries two different plaintexts (the
  wire bytes of every message_encrypted are parsed for its ratchet key and
  counter);
- a message reported decrypted is refused as a duplicate ever after; a
  message reported encrypted decrypts (exactly once) whenever it arrives;
- no one-time prekey id is handed out twice; no msg_id repeats.

symmetric-node (rotate_key, encrypt, decrypt, set_min_decryption_version,
trim_keys):
- every returned ciphertext decrypts after a restart, unless its version
  is below the minimum (error 22) or trimmed (error 20); a version is
  trimmed only below a minimum that was asked for, and a version reported
  trimmed never comes back;
- every reported key_id exists (or was trimmed); a rotation's id is above
  every id reported before it, so none is given twice; a named version
  never fails to authenticate its own ciphertext (its key never changes);
- no msg_id repeats.

Both: the node starts again on its state every time (never exit 2), and
the database passes PRAGMA integrity_check after every kill.

usage: test_crash.py PATH/TO/e2ee-node PATH/TO/symmetric-node
Environment: SECURITOR_SEED, SECURITOR_KILLS (e2ee-node's rounds, default
150), SECURITOR_SYM_KILLS (symmetric-node's, default 100).
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
SYM_ROUNDS = int(os.environ.get("SECURITOR_SYM_KILLS", "100"))


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
        # Killed while it ran: not a node that refused its state and left.
        assert self.p.returncode == -signal.SIGKILL, (self.p.returncode, err[-3000:])
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


# --- symmetric-node -------------------------------------------------------------

@test
def symmetric_survives_kill_9_at_any_instant():
    rng = random.Random(SEED + 1)
    print("crash seed: %d (SECURITOR_SEED repeats it), %d symmetric rounds" % (SEED, SYM_ROUNDS))
    state = tempfile.mkdtemp(prefix="securitor-crash-sym-")
    cts = []              # every ciphertext reported: dict(iv, encryptedData, authTag, key_id, text)
    top = [1]             # the highest key id reported (existing unless trimmed)
    rotated = set()       # ids reported by key_rotated
    floor = [1]           # versions below it were reported trimmed
    max_min = [1]         # the highest min_decryption_version asked for
    rotations = [0]       # rotate_key requests sent
    msg_ids = set()
    next_id = [1]
    kills = 0
    checked = {"decrypted": 0, "below the minimum": 0, "trimmed": 0}
    lives_seen = 0  # lives whose ring reached stdout before the kill

    def dec_body(c, with_id):
        body = {"type": "decrypt", "iv": c["iv"], "encryptedData": c["encryptedData"],
                "authTag": c["authTag"]}
        if with_id:
            body["key_id"] = c["key_id"]
        return body

    def check_ring(b):
        """A keys reply: the ring's shape against what was reported."""
        p, m, v = b["primary"], b["min_decryption_version"], b["versions"]
        assert v == list(range(v[0], p + 1)) and v[0] <= m <= p, (b, SEED)
        assert v[0] >= floor[0], ("a trimmed version came back", b, floor[0], SEED)
        assert v[0] <= max_min[0], ("trimmed above every minimum asked for", b, SEED)
        assert p >= top[0], ("a reported key_id is gone (not trimmed)", b, top[0], SEED)
        assert p <= 1 + rotations[0], (b, rotations[0], SEED)
        floor[0] = v[0]
        return p, m, v[0]

    for rnd in range(SYM_ROUNDS + 1):
        last = rnd == SYM_ROUNDS
        run = Run(SYM, state, {})
        ops, lines = {}, []

        def op(kind, body, *info):
            mid = next_id[0]
            next_id[0] += 1
            body["msg_id"] = mid
            ops[mid] = (kind,) + info
            lines.append(line("c", body))

        # First what the restarted state holds: its ring, and ciphertexts
        # of earlier rounds (every one in the last round).
        op("init", {"type": "init", "node_id": "n1", "node_ids": ["n1"]})
        op("ring", {"type": "keys"})
        if last:
            checks = cts
        else:  # mostly versions not reported trimmed, some that were
            live = [c for c in cts if c["key_id"] >= floor[0]]
            gone = [c for c in cts if c["key_id"] < floor[0]]
            checks = rng.sample(live, min(len(live), 25)) + rng.sample(gone, min(len(gone), 5))
        for c in checks:
            op("check", dec_body(c, True), c)
        if not last:
            for _ in range(rng.randrange(10, 80)):
                x = rng.random()
                if x < 0.4 or not cts:
                    text = "r%d-%s" % (rnd, os.urandom(4).hex())
                    op("encrypt", {"type": "encrypt", "plaintext": text}, text)
                elif x < 0.62:
                    with_id = rng.random() < 0.7
                    c = rng.choice(cts[-50:])
                    op("decrypt", dec_body(c, with_id), c, with_id)
                elif x < 0.76:
                    rotations[0] += 1
                    op("rotate", {"type": "rotate_key"})
                elif x < 0.92:
                    # Anywhere from the lowest live version to one past the
                    # primary (error 22), or back down to the lowest.
                    k = rng.randint(floor[0], top[0] + 1) if rng.random() < 0.6 else floor[0]
                    max_min[0] = max(max_min[0], k)
                    op("set_min", {"type": "set_min_decryption_version", "key_id": k})
                else:
                    op("trim", {"type": "trim_keys"})
        writer = run.feed(lines, rng)
        if last:
            run.read(until_count=len(lines), timeout=60)
        elif rng.random() < 0.4:
            run.read(until_count=rng.randrange(1, len(lines) + 1), timeout=10)
        else:
            time.sleep(rng.random() * (0.1 if rnd < 2 else 0.03))
        if not last:
            run.kill()
            kills += 1
        writer.join(timeout=10)
        ring = None  # (primary, minimum, lowest live) as this life started
        for r in run.replies:
            b = r["body"]
            assert b["msg_id"] not in msg_ids, ("msg_id repeated", b["msg_id"], SEED)
            msg_ids.add(b["msg_id"])
            kind, *info = ops[b["in_reply_to"]]
            if kind == "init":
                assert b["type"] == "init_ok", (b, SEED)
            elif kind == "ring":
                ring = check_ring(b)
                lives_seen += 1
            elif kind == "check":
                c, (p, m, low) = info[0], ring
                if c["key_id"] >= m:
                    assert b["type"] == "decrypted" and b["plaintext"] == c["text"], \
                        ("a reported ciphertext does not decrypt", c, b, ring, SEED)
                    checked["decrypted"] += 1
                elif c["key_id"] >= low:
                    assert b["type"] == "error" and b["code"] == 22, (c, b, ring, SEED)
                    checked["below the minimum"] += 1
                else:
                    assert b["type"] == "error" and b["code"] == 20, (c, b, ring, SEED)
                    checked["trimmed"] += 1
            elif kind == "encrypt":
                assert b["type"] == "encrypted", (b, SEED)
                assert b["key_id"] >= floor[0], ("encrypted under a trimmed version", b, SEED)
                cts.append(dict(iv=b["iv"], encryptedData=b["encryptedData"],
                                authTag=b["authTag"], key_id=b["key_id"], text=info[0]))
                top[0] = max(top[0], b["key_id"])
            elif kind == "decrypt":
                c, with_id = info
                if b["type"] == "decrypted":
                    assert b["plaintext"] == c["text"], (c, b, SEED)
                elif with_id:  # a named version opens its own ciphertexts, or is refused
                    assert b["type"] == "error" and b["code"] in (20, 22), (c, b, SEED)
                else:
                    assert b["type"] == "decryption_failed", (c, b, SEED)
            elif kind == "rotate":
                assert b["type"] == "key_rotated", (b, SEED)
                k = b["key_id"]
                assert k not in rotated and k > top[0], ("a key id given twice", k, top[0], SEED)
                rotated.add(k)
                top[0] = k
            elif kind == "set_min":
                if b["type"] == "error":
                    assert b["code"] == 22, (b, SEED)
                else:
                    check_ring(b)
            elif kind == "trim":
                check_ring(b)
        if last:
            assert len(run.replies) == len(lines), "the last life answered every request"
            # Every ciphertext of a version still there opens once the
            # minimum is back at the lowest live version.
            p, m, low = ring
            body = {"type": "set_min_decryption_version", "key_id": low, "msg_id": next_id[0]}
            run.p.stdin.write((line("c", body) + "\n").encode())
            run.p.stdin.flush()
            run.read(until_count=len(lines) + 1, timeout=60)
            assert run.replies[-1]["body"]["type"] == "keys", run.replies[-1]
            live = [c for c in cts if c["key_id"] >= low]
            for i, c in enumerate(live):
                run.p.stdin.write((line("c", dict(dec_body(c, True), msg_id=next_id[0] + 1 + i))
                                   + "\n").encode())
            run.p.stdin.flush()
            run.read(until_count=len(lines) + 1 + len(live), timeout=60)
            for c, r in zip(live, run.replies[len(lines) + 1:]):
                assert r["body"]["type"] == "decrypted" and r["body"]["plaintext"] == c["text"], \
                    (c, r, SEED)
            run.p.stdin.close()
            assert run.p.wait(timeout=60) == 0
        else:
            integrity_ok(state)
    integrity_ok(state)
    print("symmetric: %d kills (%d lives showed their ring first), %d ciphertexts, %d "
          "rotations reported, versions %d-%d at the end; ciphertexts checked after a "
          "restart: %s" % (kills, lives_seen, len(cts), len(rotated), floor[0], top[0],
                           ", ".join("%d %s" % (v, k) for k, v in checked.items())))
    shutil.rmtree(state)


run_all()
