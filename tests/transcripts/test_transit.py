#!/usr/bin/env python3
"""Transcript tests for symmetric-node's key versions and transit requests
(PROTOCOL.md §2: rewrap, datakey, keys, set_min_decryption_version,
trim_keys, blind_index): the real binary, driven over stdin/stdout.

usage: test_transit.py PATH/TO/symmetric-node
Random tests print their seed; SECURITOR_SEED=N repeats a run.
"""
import base64
import hashlib
import hmac
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import (Node, can_read_memory, check_golden, memory_holds, run_all,  # noqa: E402
                     run_lines, test)

BIN = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
AUTH_FAILED = "Authentication failed - data has been tampered with"
KEY_HEX = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
KEY_ENV = {"SECURITOR_KEY": KEY_HEX}


def msg(body, src="client", dest="n1"):
    return json.dumps({"src": src, "dest": dest, "body": body})


def seeded(name):
    seed = int(os.environ.get("SECURITOR_SEED", time.time_ns() % (1 << 30)))
    print("%s: seed %d (SECURITOR_SEED=%d repeats it)" % (name, seed, seed))
    return random.Random(seed), seed


def dec_req(enc, typ="decrypt", aad=None, key_id=None):
    req = {"type": typ, "iv": enc["iv"], "encryptedData": enc["encryptedData"],
           "authTag": enc["authTag"]}
    if aad is not None:
        req.update(aad)
    if key_id is not None:
        req["key_id"] = key_id
    return req


def plaintext_of(reply):
    """The bytes of a decrypted reply."""
    assert reply["type"] == "decrypted", reply
    if reply.get("encoding") == "base64":
        return base64.b64decode(reply["plaintext"])
    return reply["plaintext"].encode()


def random_bytes(rng):
    n = rng.choice((0, 1, 14, 15, 16, 17, 100, 1000, 20000, 40000))
    if rng.random() < 0.5:
        return (bytes(rng.randrange(256) for _ in range(min(n, 300))) * (n // 300 + 1))[:n]
    return "".join(rng.choice("aé€🔐\n\"\\ x") for _ in range(n)).encode()[:n]


def random_aad(rng):
    """An AAD as request fields ({} for none) and its bytes."""
    k = rng.randrange(4)
    if k == 0:
        return {}, b""
    if k == 1:
        return {"aad": "header v1"}, b"header v1"
    raw = bytes(rng.randrange(256) for _ in range(rng.choice((1, 16, 300))))
    return {"aad": base64.b64encode(raw).decode(), "aad_encoding": "base64"}, raw


def encrypt_fields(data):
    try:
        text = data.decode()
        if "\0" not in text:
            return {"plaintext": text}
    except UnicodeDecodeError:
        pass
    return {"plaintext": base64.b64encode(data).decode(), "encoding": "base64"}


# ---------------------------------------------------------------------------
# Golden transcripts


@test
def golden_keyring():
    """keys, set_min_decryption_version and trim_keys, with every error they
    have, and what decrypt does around them: a known ciphertext under
    version 1 (the fixed key) is tried without key_id only while 1 is at or
    above the minimum; below it, naming it is error 22; once trimmed, error
    20 and the minimum can no longer go back."""
    check_golden(BIN, os.path.join(HERE, "golden/symmetric_keyring"), env=KEY_ENV)


@test
def golden_blind_index():
    """blind_index with every error; the tokens under the fixed key are
    known answers (blind_index_matches_a_reference computes them
    independently)."""
    check_golden(BIN, os.path.join(HERE, "golden/symmetric_blind_index"), env=KEY_ENV)


@test
def golden_rewrap_datakey():
    """rewrap and datakey with every error: random fields (iv, ciphertext,
    tag, data keys) are matched by pattern and length."""
    check_golden(BIN, os.path.join(HERE, "golden/symmetric_rewrap_datakey"), env=KEY_ENV)


# ---------------------------------------------------------------------------
# Properties


class Model:
    """What the keyring should be (PROTOCOL.md §2), to predict every reply."""

    def __init__(self):
        self.primary, self.min, self.trimmed_below = 1, 1, 1

    def versions(self):
        return list(range(self.trimmed_below, self.primary + 1))

    def opens(self, key_id, named):
        """The outcome of decrypting a ciphertext under key_id: "ok",
        "failed" (decryption_failed), or an error code."""
        if named:
            if key_id < self.trimmed_below:
                return 20
            return 22 if key_id < self.min else "ok"
        return "ok" if key_id >= self.min else "failed"  # every version >= min is tried


@test
def rewrap_then_decrypt_is_the_original():
    """Random plaintexts (text and bytes) and AADs, under random histories of
    rotations, rewraps (with and without key_id), minimums raised and
    lowered, and trims: every reply is the one the model predicts; a
    rewrapped ciphertext is under the primary, with a new IV, and decrypts
    to the original; the keyring's shape always matches."""
    rng, seed = seeded("rewrap_then_decrypt_is_the_original")
    node = Node(BIN)
    m = Model()
    held = []  # [fields, key_id, plaintext bytes, aad fields, aad bytes]
    ivs = set()
    for step in range(400):
        op, r = rng.random(), {}
        if op < 0.25 or not held:
            data = random_bytes(rng)
            aad, aad_raw = random_aad(rng)
            enc = node.call(dict({"type": "encrypt"}, **encrypt_fields(data), **aad))
            assert enc["type"] == "encrypted" and enc["key_id"] == m.primary, (seed, enc)
            held.append([enc, enc["key_id"], data, aad, aad_raw])
        elif op < 0.35:
            if m.primary - m.trimmed_below + 1 < 1024:
                r = node.call({"type": "rotate_key"})
                m.primary += 1
                assert r == dict(r, type="key_rotated", key_id=m.primary), (seed, r)
        elif op < 0.7:
            h = rng.choice(held)
            enc, key_id, data, aad, _ = h
            named = rng.random() < 0.5
            r = node.call(dec_req(enc, "rewrap", aad, key_id if named else None))
            want = m.opens(key_id, named)
            if want == "ok":
                assert r["type"] == "rewrapped" and r["key_id"] == m.primary, (seed, step, r)
                assert r["iv"] != enc["iv"] and r["iv"] not in ivs, (seed, r)
                assert len(r["encryptedData"]) == len(enc["encryptedData"]), (seed, r)
                ivs.add(r["iv"])
                h[0], h[1] = r, r["key_id"]
            elif want == "failed":
                assert r == dict(r, type="decryption_failed", error=AUTH_FAILED), (seed, step, r)
            else:
                assert r["type"] == "error" and r["code"] == want, (seed, step, want, r)
        elif op < 0.8:
            target = rng.randrange(m.trimmed_below, m.primary + 1)
            if rng.random() < 0.1:  # out of bounds: refused, nothing changes
                target = rng.choice((m.primary + 1, max(1, m.trimmed_below - 1)))
            r = node.call({"type": "set_min_decryption_version", "key_id": target})
            if m.trimmed_below <= target <= m.primary:
                m.min = target
            else:
                assert r["type"] == "error" and r["code"] == 22, (seed, step, r)
        elif op < 0.85:
            r = node.call({"type": "trim_keys"})
            m.trimmed_below = m.min
        else:
            r = node.call({"type": "keys"})
        if r.get("type") == "keys" or rng.random() < 0.1:
            keys = node.call({"type": "keys"})
            assert (keys["primary"], keys["min_decryption_version"], keys["versions"]) == \
                (m.primary, m.min, m.versions()), (seed, step, keys)
    # Every ciphertext still held decrypts to its original, or is refused
    # exactly as the model says.
    for enc, key_id, data, aad, _ in held:
        for named in (True, False):
            r = node.call(dec_req(enc, "decrypt", aad, key_id if named else None))
            want = m.opens(key_id, named)
            if want == "ok":
                assert plaintext_of(r) == data, (seed, key_id, r)
            elif want == "failed":
                assert r["type"] == "decryption_failed", (seed, r)
            else:
                assert r["type"] == "error" and r["code"] == want, (seed, r)
    node.close()


@test
def rewrap_refuses_what_does_not_authenticate():
    """A flipped bit in iv, ciphertext, tag or AAD, a wrong key_id, a short
    tag: rewrap answers decryption_failed with the exact text, never a
    ciphertext; the untouched message rewraps."""
    rng, seed = seeded("rewrap_refuses_what_does_not_authenticate")
    node = Node(BIN, env=KEY_ENV)
    enc = node.call({"type": "encrypt", "plaintext": "attack at dawn", "aad": "hdr"})
    node.call({"type": "rotate_key"})
    base = dec_req(enc, "rewrap", {"aad": "hdr"})
    bad = []
    for field in ("iv", "encryptedData", "authTag"):
        for _ in range(8):
            raw = bytearray(bytes.fromhex(base[field]))
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            bad.append(dict(base, **{field: raw.hex()}))
    bad += [dict(base, aad="hdR"), dict(base, aad=None), dict(base, authTag=base["authTag"][:30]),
            dict(base, key_id=2), dict(base, encryptedData=base["encryptedData"] + "00")]
    for req in bad:
        req = {k: v for k, v in req.items() if v is not None}
        r = node.call(req)
        assert r == {"type": "decryption_failed", "msg_id": r["msg_id"],
                     "in_reply_to": r["in_reply_to"], "error": AUTH_FAILED}, (seed, req, r)
    r = node.call(base)
    assert r["type"] == "rewrapped" and r["key_id"] == 2, r
    d = node.call(dec_req(r, aad={"aad": "hdr"}))
    assert d["plaintext"] == "attack at dawn", d
    node.close()


@test
def rewrap_of_large_messages():
    """A message of several 16 KiB pieces (and one of 1 MiB) rewraps and
    decrypts back; the ciphertext is the plaintext's length."""
    node = Node(BIN)
    for size in (16383, 16384, 40000, 1 << 20):
        data = os.urandom(size)
        enc = node.call({"type": "encrypt", "plaintext": base64.b64encode(data).decode(),
                         "encoding": "base64"})
        node.call({"type": "rotate_key"})
        r = node.call(dec_req(enc, "rewrap"))
        assert r["type"] == "rewrapped" and len(r["encryptedData"]) == 2 * size, r["type"]
        assert plaintext_of(node.call(dec_req(r, key_id=r["key_id"]))) == data
    node.close()


@test
def datakey_sealed_form_opens_to_its_key():
    """For random sizes, with and without the clear key, under random
    rotations: the sealed form decrypts (as base64 bytes) to a key of
    bits / 8 bytes, the one in `key` when given; keys are all different;
    a reply without the clear key carries no `key` at all."""
    rng, seed = seeded("datakey_sealed_form_opens_to_its_key")
    node = Node(BIN)
    primary, seen = 1, set()
    for _ in range(200):
        if rng.random() < 0.1:
            primary = node.call({"type": "rotate_key"})["key_id"]
        req = {"type": "datakey"}
        bits = rng.choice((None, 128, 192, 256))
        if bits:
            req["bits"] = bits
        clear = rng.choice((None, True, False))
        if clear is not None:
            req["plaintext"] = clear
        r = node.call(req)
        assert r["type"] == "datakey" and r["key_id"] == primary, (seed, r)
        assert len(r["iv"]) == 24 and len(r["authTag"]) == 32, (seed, r)
        n = (bits or 256) // 8
        assert len(r["encryptedData"]) == 2 * n, (seed, r)
        opened = plaintext_of(node.call(dec_req(r, key_id=r["key_id"])))
        assert len(opened) == n and opened not in seen, (seed, r)
        seen.add(opened)
        if clear is False:
            assert "key" not in r, (seed, r)
        else:
            assert base64.b64decode(r["key"]) == opened, (seed, r)
    # plaintext must be a boolean (PROTOCOL.md §2): null is not, and is no
    # way to get the key in the clear (it once read as absent, which gives it).
    for bad in (None, "false", 0):
        r = node.call({"type": "datakey", "plaintext": bad})
        assert r["type"] == "error" and r["code"] == 12 and "plaintext" in r["text"], r
    node.close()


# Sanitizer runtimes keep a copy of the environment they read at start-up
# (from /proc/self/environ, before main), out of the node's reach.
SANITIZED = any(k in os.environ for k in ("ASAN_OPTIONS", "TSAN_OPTIONS"))


@test
def trim_really_removes_the_key():
    """Through the binary: version 1 is the key given at start (in
    SECURITOR_KEY, then in a --key-file), so the test knows its bytes. While
    live they are in the node's memory (the check can see them); after
    rotate_key, set_min_decryption_version 2 and trim_keys, an old ciphertext
    can no longer be opened, and neither the raw key nor its hex appears
    anywhere in the process's writable memory (heap, freed heap, stacks). The
    blind-index root is derived from the key, not the key itself, and tokens
    go on unchanged."""
    if not can_read_memory():
        print("note: cannot read a child's memory here; skipped")
        return
    for how in ("env", "file"):
        key = os.urandom(32)
        needles = [key]
        if how == "file" or not SANITIZED:
            needles += [key.hex().encode(), key.hex().upper().encode()]
        with tempfile.TemporaryDirectory() as d:
            if how == "env":
                node = Node(BIN, env={"SECURITOR_KEY": key.hex()})
            else:
                path = os.path.join(d, "key")
                with open(path, "wb") as f:
                    f.write(key)
                os.chmod(path, 0o600)
                node = Node(BIN, args=["--key-file", path])
            check_trim_removes(node, key, needles, how)


def check_trim_removes(node, key, needles, how):
    old = node.call({"type": "encrypt", "plaintext": "under version 1", "aad": "a"})
    token = node.call({"type": "blind_index", "index": "email", "value": "x"})["token"]
    rewrapped = node.call(dec_req(old, "rewrap", {"aad": "a"}))
    assert rewrapped["type"] == "rewrapped" and rewrapped["key_id"] == 1, rewrapped
    found = memory_holds(node.proc.pid, needles)
    assert found == {key}, "%s: the check cannot see the live key, or sees its hex: %r" % (
        how, [n[:8] for n in found])
    assert node.call({"type": "rotate_key"})["key_id"] == 2
    node.call({"type": "set_min_decryption_version", "key_id": 2})
    assert node.call({"type": "trim_keys"})["versions"] == [2]
    r = node.call(dec_req(old, aad={"aad": "a"}, key_id=1))
    assert r["type"] == "error" and r["code"] == 20, r
    for enc in (old, rewrapped):
        r = node.call(dec_req(enc, aad={"aad": "a"}))
        assert r["type"] == "decryption_failed", r
    assert node.call({"type": "blind_index", "index": "email", "value": "x"})["token"] == token
    time.sleep(0.2)  # the worker wipes a batch once it is answered
    found = memory_holds(node.proc.pid, needles)
    node.close()
    assert not found, "%s: the trimmed key is still in memory: %r" % (how, [n[:8] for n in found])


# ---------------------------------------------------------------------------
# Blind indexes


def hkdf_sha256(ikm, info, n=32):
    """RFC 5869 with no salt, in Python's standard library: a reference the
    node's OpenSSL-based derivation must agree with."""
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:n]


def reference_token(key, index, value, bits=32):
    root = hkdf_sha256(key, b"securitor blind index root v1")
    k = hkdf_sha256(root, b"securitor blind index key v1" + index.encode())
    return hmac.new(k, value, hashlib.sha256).digest()[:bits // 8].hex()


def random_value(rng):
    """A value as request fields, and its bytes."""
    if rng.random() < 0.5:
        text = "".join(rng.choice("abcXYZ09@.é€🔐 ") for _ in range(rng.randrange(40)))
        return {"value": text}, text.encode()
    raw = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    return {"value": base64.b64encode(raw).decode(), "encoding": "base64"}, raw


def random_index(rng):
    return rng.choice(["email", "ssn", "last_name", "Email", "email ", "ключ", "x" * 256,
                       "idx%d" % rng.randrange(50)])


@test
def blind_index_matches_a_reference():
    """Tokens for random indexes, values (text and bytes) and sizes equal
    HKDF-SHA256 and HMAC-SHA256 computed by Python's standard library from
    the same key: PROTOCOL.md §2's derivation, checked independently."""
    rng, seed = seeded("blind_index_matches_a_reference")
    key = os.urandom(32)
    lines, want = [], []
    for i in range(300):
        index = random_index(rng)
        fields, raw = random_value(rng)
        bits = rng.choice((None, 8, 32, 64, 128, 248, 256))
        req = dict({"type": "blind_index", "msg_id": i, "index": index}, **fields)
        if bits:
            req["bits"] = bits
        lines.append(msg(req))
        want.append(reference_token(key, index, raw, bits or 32))
    replies, err, code = run_lines(BIN, lines, env={"SECURITOR_KEY": key.hex()})
    assert code == 0, err
    got = [r["body"].get("token") for r in replies]
    assert got == want, (seed, [(g, w) for g, w in zip(got, want) if g != w][:3])


def tokens(node, pairs, bits=32):
    return [node.call(dict({"type": "blind_index", "index": i, "bits": bits}, **f))["token"]
            for i, f in pairs]


@test
def blind_index_properties():
    """Deterministic per (index, value); every size a prefix of the 256-bit
    token (the 64-bit token starts with the 32-bit one); unrelated across
    indexes; the same after rotate_key, set_min_decryption_version and
    trim_keys, and in a second process with the same key; different under
    another key."""
    rng, seed = seeded("blind_index_properties")
    key = os.urandom(32).hex()
    pairs = []
    for _ in range(60):
        fields, raw = random_value(rng)
        pairs.append((random_index(rng), fields))
    node = Node(BIN, env={"SECURITOR_KEY": key})
    full = tokens(node, pairs, 256)
    assert tokens(node, pairs, 256) == full, seed
    for bits in range(8, 257, 8):
        got = tokens(node, pairs[:5], bits)
        assert all(full[k].startswith(t) and len(t) == bits // 4 for k, t in enumerate(got)), \
            (seed, bits)
    t32, t64 = tokens(node, pairs, 32), tokens(node, pairs, 64)
    assert all(b.startswith(a) for a, b in zip(t32, t64)), seed
    # Across indexes: the same value never gives the same 256-bit token.
    for fields in ({"value": "alice@example.com"}, {"value": ""}):
        per_index = tokens(node, [(i, fields) for i in ("a", "b", "email", "Email", "email ")],
                           256)
        assert len(set(per_index)) == len(per_index), (seed, per_index)
    for req in ({"type": "rotate_key"}, {"type": "rotate_key"},
                {"type": "set_min_decryption_version", "key_id": 3}, {"type": "trim_keys"}):
        node.call(req)
        assert tokens(node, pairs[:10], 256) == full[:10], (seed, req)
    assert node.call({"type": "keys"})["versions"] == [3], seed
    node.close()
    other = Node(BIN, env={"SECURITOR_KEY": key})
    assert tokens(other, pairs, 256) == full, seed
    other.close()
    stranger = Node(BIN, env={"SECURITOR_KEY": os.urandom(32).hex()})
    assert all(a != b for a, b in zip(tokens(stranger, pairs, 256), full)), seed
    stranger.close()


@test
def blind_index_cache_is_bounded():
    """More indexes than the cache holds (1,024): the oldest keys are
    evicted and derived again when used, with the same tokens."""
    key = os.urandom(32)
    names = ["index-%d" % i for i in range(1100)]
    lines = [msg({"type": "blind_index", "msg_id": i, "index": n, "value": "v"})
             for i, n in enumerate(names + names[:100] + names[-100:] + names[:100])]
    replies, err, code = run_lines(BIN, lines, env={"SECURITOR_KEY": key.hex()})
    assert code == 0, err
    want = [reference_token(key, n, b"v") for n in names + names[:100] + names[-100:] +
            names[:100]]
    assert [r["body"]["token"] for r in replies] == want


run_all()
