#!/usr/bin/env python3
"""Transcript tests for symmetric-node: the real binary, driven over stdin/stdout.

usage: test_symmetric.py PATH/TO/symmetric-node
Environment: SECURITOR_SHARED (the shared/ folder: seed cases),
SECURITOR_VECTORS (Wycheproof vectors; skipped when absent).
"""
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import (Node, check_fuzz, check_golden, matches, run_all, run_lines,  # noqa: E402
                     skip, test)

BIN = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("SECURITOR_SHARED", os.path.join(HERE, "../../../shared"))
VECTORS = os.environ.get("SECURITOR_VECTORS", os.path.join(SHARED, "vectors"))
AUTH_FAILED = "Authentication failed - data has been tampered with"
KEY_HEX = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
KEY_ENV = {"SECURITOR_KEY": KEY_HEX}


def msg(body, src="client", dest="n1"):
    return json.dumps({"src": src, "dest": dest, "body": body})


def flip_hex(h, bit):
    b = bytearray(bytes.fromhex(h))
    b[bit // 8] ^= 1 << (bit % 8)
    return b.hex()


@test
def golden_protocol():
    check_golden(BIN, os.path.join(HERE, "golden/symmetric_protocol"))


@test
def seed_cases():
    """Every published symmetric case: honest ones must match; the dishonest
    one must be refused (decryption_failed), never faked; and its honest form
    (encrypt, then decrypt what came back) must give the plaintext."""
    path = os.path.join(SHARED, "seed-cases/cases.json")
    if not os.path.exists(path):
        skip("%s absent" % path)
    cases = [c for c in json.load(open(path))["cases"] if c["binary"] == "symmetric-node"]
    assert cases
    for case in cases:
        replies, err, code = run_lines(BIN, [json.dumps(case["input"])])
        assert code == 0 and len(replies) == 1, (case["name"], replies, err)
        body = replies[0]["body"]
        problems = matches(case["expected"], body)
        if case["honest"]:
            assert not problems, (case["name"], problems)
        else:
            assert problems, "dishonest case %r was faked: %r" % (case["name"], body)
            assert body == {"type": "decryption_failed", "msg_id": 1, "in_reply_to": 1,
                            "error": AUTH_FAILED}, body
    node = Node(BIN, src="client", dest="encryption")
    enc = node.call({"type": "encrypt", "plaintext": "Secret message"})
    dec = node.call({"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                     "authTag": enc["authTag"]})
    assert dec["type"] == "decrypted" and dec["plaintext"] == "Secret message", dec
    node.close()


@test
def round_trips():
    node = Node(BIN)
    texts = ["Secret message", "", "ünïcødé 🔐 \u2028 \"quoted\" \\ back\tslash\n",
             "x" * 100000]
    for text in texts:
        for aad in (None, "", "header v1", "ключ"):
            req = {"type": "encrypt", "plaintext": text}
            if aad is not None:
                req["aad"] = aad
            enc = node.call(req)
            assert enc["type"] == "encrypted" and enc["key_id"] == 1, enc
            assert len(enc["iv"]) == 24 and len(enc["authTag"]) == 32
            assert len(enc["encryptedData"]) == 2 * len(text.encode())
            dreq = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                    "authTag": enc["authTag"]}
            if aad is not None:
                dreq["aad"] = aad
            dec = node.call(dreq)
            assert dec == {"type": "decrypted", "msg_id": dec["msg_id"],
                           "in_reply_to": dec["in_reply_to"], "plaintext": text}, dec
            if aad:  # the AAD is authenticated: leaving it out fails
                dreq.pop("aad")
                assert node.call(dreq)["type"] == "decryption_failed"
    # Uppercase hex input is accepted.
    enc = node.call({"type": "encrypt", "plaintext": "case"})
    dec = node.call({"type": "decrypt", "iv": enc["iv"].upper(),
                     "encryptedData": enc["encryptedData"].upper(),
                     "authTag": enc["authTag"].upper()})
    assert dec["plaintext"] == "case"
    node.close()


@test
def escaping_at_every_offset():
    """Every character that needs escaping (or is multi-byte), at every offset
    around the writer's 8-byte fast path, comes back unchanged."""
    specials = ['"', "\\", "\n", "\t", "\x01", "\x1f", "\x7f", "é", "€", "🔐", "\u2028"]
    values = []
    for sp in specials:
        for pos in range(0, 18):
            for total in (pos + 1, 17, 24):
                if total > pos:
                    values.append("a" * pos + sp + "b" * (total - pos))
    lines = [msg({"type": "echo", "msg_id": i, "echo": v}) for i, v in enumerate(values)]
    replies, err, code = run_lines(BIN, lines)
    assert code == 0 and [r["body"]["echo"] for r in replies] == values


@test
def long_strings_mean_the_same():
    """Strings of 1 KiB and more skip cJSON's copy (src/node/bulk.c): as
    keys, values, envelope fields and plaintexts they mean what they say."""
    sizes = (1023, 1024, 1025, 70000)
    values = []
    for n in sizes:
        values += ["k" * n, ("é" * n)[:n], "q" * (n - 2) + '"' + "\\",
                   "\n" + "t" * n, "€🔐" * (n // 2)]
    big_key = "K" * 3000
    echo = {big_key: values, "nested": [{"x" * 1500: {"y": "z" * 2000}}], "": ""}
    long_src = "client-" + "s" * 3000
    node = Node(BIN, src=long_src)
    node.send({"type": "echo", "echo": echo})
    reply = node.recv()
    assert reply["dest"] == long_src and reply["body"]["echo"] == echo
    for text in values:
        enc = node.call({"type": "encrypt", "plaintext": text, "aad": text[:1500]})
        assert len(enc["encryptedData"]) == 2 * len(text.encode()), enc
        dec = node.call({"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                         "authTag": enc["authTag"], "aad": text[:1500]})
        assert dec["plaintext"] == text
    unknown = node.call({"type": "t" * 2000})
    # Error texts are capped at 511 bytes.
    assert unknown["code"] == 10 and unknown["text"].startswith('unknown type "' + "t" * 400)
    node.close()


@test
def raw_nul_and_bad_utf8_refused_in_long_and_short_strings():
    """A raw NUL byte would cut a string short inside cJSON: refused, like
    \\u0000, whatever the string's length; so is invalid UTF-8."""
    lines = []
    for n in (5, 1500):
        for bad in (b"\x00", b"\xff"):
            lines.append(b'{"src":"c","dest":"n1","body":{"type":"encrypt","msg_id":%d,'
                         b'"plaintext":"%s%s%s"}}' % (n, b"a" * n, bad, b"b" * n))
    # \u0000 in a long string, and in a short one beside a long one.
    lines.append(b'{"src":"c","dest":"n1","body":{"type":"encrypt","msg_id":7,'
                 b'"plaintext":"%s\\u0000"}}' % (b"a" * 2000))
    lines.append(b'{"src":"c","dest":"n1","body":{"type":"encrypt","msg_id":8,'
                 b'"plaintext":"%s","aad":"\\u0000"}}' % (b"a" * 2000))
    replies, err, code = run_lines(BIN, lines)
    assert code == 0, err
    got = [(r["body"]["type"], r["body"]["code"]) for r in replies]
    assert got == [("error", 12)] * 6, got
    assert all("\\u0000" in r["body"]["text"] for r in replies[4:]), replies[4:]
    texts = [r["body"]["text"] for r in replies]
    assert "raw NUL" in texts[0] and "raw NUL" in texts[2], texts
    assert "not valid UTF-8" in texts[1] and "not valid UTF-8" in texts[3], texts


@test
def fresh_iv_every_time():
    node = Node(BIN)
    seen_iv, seen_ct = set(), set()
    for _ in range(200):
        enc = node.call({"type": "encrypt", "plaintext": "same plaintext"})
        seen_iv.add(enc["iv"])
        seen_ct.add(enc["encryptedData"])
    assert len(seen_iv) == 200 and len(seen_ct) == 200
    node.close()


@test
def binary_plaintext_base64():
    node = Node(BIN)
    raw = bytes(range(256)) + b"\x00\x00\xff"
    enc = node.call({"type": "encrypt", "plaintext": base64.b64encode(raw).decode(),
                     "encoding": "base64"})
    dec = node.call({"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                     "authTag": enc["authTag"]})
    assert dec["encoding"] == "base64" and base64.b64decode(dec["plaintext"]) == raw, dec
    # NUL bytes alone are valid UTF-8 but not carried as JSON text here: base64 back.
    enc = node.call({"type": "encrypt", "plaintext": base64.b64encode(b"a\x00b").decode(),
                     "encoding": "base64"})
    dec = node.call({"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                     "authTag": enc["authTag"]})
    assert dec["encoding"] == "base64" and base64.b64decode(dec["plaintext"]) == b"a\x00b"
    # Valid UTF-8 sent as base64 comes back as text.
    enc = node.call({"type": "encrypt", "plaintext": base64.b64encode("héllo".encode()).decode(),
                     "encoding": "base64"})
    dec = node.call({"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                     "authTag": enc["authTag"]})
    assert dec["plaintext"] == "héllo" and "encoding" not in dec
    # Binary AAD via aad_encoding.
    aad = base64.b64encode(b"\xff\x00\xfe").decode()
    enc = node.call({"type": "encrypt", "plaintext": "p", "aad": aad, "aad_encoding": "base64"})
    dreq = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
            "authTag": enc["authTag"], "aad": aad, "aad_encoding": "base64"}
    assert node.call(dreq)["plaintext"] == "p"
    dreq["aad_encoding"] = "utf-8"
    assert node.call(dreq)["type"] == "decryption_failed"
    node.close()


@test
def tamper_every_bit():
    """A flipped bit anywhere in iv, ciphertext, tag or aad is refused with the
    exact decryption_failed text; the untouched message still decrypts."""
    lines, n = [], 0
    node = Node(BIN, env=KEY_ENV)
    enc = node.call({"type": "encrypt", "plaintext": "attack at dawn", "aad": "hdr"})
    node.close()
    base = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
            "authTag": enc["authTag"], "aad": "hdr"}
    for field in ("iv", "encryptedData", "authTag"):
        for bit in range(len(base[field]) * 4):
            lines.append(msg(dict(base, **{field: flip_hex(base[field], bit)})))
    for i in range(3):
        for bit in range(8):
            aad = bytearray(b"hdr")
            aad[i] ^= 1 << bit
            try:
                lines.append(msg(dict(base, aad=aad.decode())))
            except UnicodeDecodeError:
                lines.append(msg(dict(base, aad=base64.b64encode(aad).decode(),
                                      aad_encoding="base64")))
    # Truncated tags of every length, an empty tag, an extended tag, bad hex.
    for k in range(0, 32, 2):
        lines.append(msg(dict(base, authTag=base["authTag"][:k])))
    lines.append(msg(dict(base, authTag=base["authTag"] + "00")))
    lines.append(msg(dict(base, iv=base["iv"][:-2])))
    lines.append(msg(dict(base, iv=base["iv"] + "00")))
    lines.append(msg(dict(base, encryptedData=base["encryptedData"][:-2])))
    lines.append(msg(dict(base, encryptedData=base["encryptedData"] + "00")))
    lines.append(msg(dict(base, encryptedData="zz" + base["encryptedData"][2:])))
    lines.append(msg(dict(base, encryptedData=base["encryptedData"][:-1])))
    n = len(lines)
    lines.append(msg(base))
    replies, err, code = run_lines(BIN, lines, env=KEY_ENV)
    assert code == 0 and len(replies) == n + 1
    for r in replies[:n]:
        assert r["body"]["type"] == "decryption_failed", r
        assert r["body"]["error"] == AUTH_FAILED, r
    assert replies[n]["body"]["plaintext"] == "attack at dawn"


@test
def tamper_in_every_piece():
    """Decryption decodes and opens the ciphertext 16 KiB at a time. A message
    of several pieces round-trips; a bad hex digit or a flipped bit in any
    piece (first, middle, last, at its edges) is refused with the exact
    decryption_failed text, and gives out no plaintext."""
    node = Node(BIN, env=KEY_ENV)
    text = "".join(chr(0x61 + i % 26) for i in range(40_000))
    enc = node.call({"type": "encrypt", "plaintext": text})
    node.close()
    base = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
            "authTag": enc["authTag"]}
    ct = base["encryptedData"]
    lines = []
    for byte in (0, 16383, 16384, 20000, 32767, 32768, 39999):
        lines.append(msg(dict(base, encryptedData=flip_hex(ct, byte * 8 + 5))))
        bad = ct[:2 * byte + 1] + "g" + ct[2 * byte + 2:]
        lines.append(msg(dict(base, encryptedData=bad)))
    n = len(lines)
    lines.append(msg(base))
    replies, err, code = run_lines(BIN, lines, env=KEY_ENV)
    assert code == 0 and len(replies) == n + 1
    for r in replies[:n]:
        assert r["body"]["type"] == "decryption_failed" and "plaintext" not in r["body"], r
        assert r["body"]["error"] == AUTH_FAILED, r
    assert replies[n]["body"]["plaintext"] == text


@test
def key_rotation():
    node = Node(BIN)
    old = node.call({"type": "encrypt", "plaintext": "under key 1"})
    assert old["key_id"] == 1
    rot = node.call({"type": "rotate_key"})
    assert rot["type"] == "key_rotated" and rot["key_id"] == 2
    new = node.call({"type": "encrypt", "plaintext": "under key 2"})
    assert new["key_id"] == 2
    for enc, text in ((old, "under key 1"), (new, "under key 2")):
        req = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
               "authTag": enc["authTag"]}
        assert node.call(dict(req, key_id=enc["key_id"]))["plaintext"] == text
        assert node.call(req)["plaintext"] == text  # without key_id: the newest are tried
        wrong = 3 - enc["key_id"]
        assert node.call(dict(req, key_id=wrong))["type"] == "decryption_failed"
    err = node.call({"type": "decrypt", "iv": old["iv"], "encryptedData": old["encryptedData"],
                     "authTag": old["authTag"], "key_id": 3})
    assert err["type"] == "error" and err["code"] == 20, err
    assert node.call({"type": "rotate_key"})["key_id"] == 3
    node.close()


def dec_req(enc, **extra):
    req = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
           "authTag": enc["authTag"]}
    req.update(extra)
    return req


KEYRING_MAX_VERSIONS = 1024  # src/symmetric/keyring.h


@test
def keyring_is_bounded():
    """At most 1,024 live versions: the rotation past it is refused with
    error 22 naming the way out, and leaves the ring as it was (before,
    100,000 rotations held 236 MB)."""
    lines = [msg({"type": "rotate_key", "msg_id": i}) for i in range(KEYRING_MAX_VERSIONS)]
    lines.append(msg({"type": "encrypt", "msg_id": 5000, "plaintext": "still works"}))
    replies, err, code = run_lines(BIN, lines, env=KEY_ENV)
    assert code == 0, err
    ids = [r["body"].get("key_id") for r in replies[:KEYRING_MAX_VERSIONS - 1]]
    assert ids == list(range(2, KEYRING_MAX_VERSIONS + 1)), ids[-3:]
    full = replies[KEYRING_MAX_VERSIONS - 1]["body"]
    assert full["type"] == "error" and full["code"] == 22, full
    assert full["text"].startswith("keyring full") and "min_decryption_version" in full["text"] \
        and "trim_keys" in full["text"], full
    enc = replies[KEYRING_MAX_VERSIONS]["body"]
    assert enc["type"] == "encrypted" and enc["key_id"] == KEYRING_MAX_VERSIONS, enc


@test
def decrypt_without_key_id_tries_every_version_above_the_minimum():
    """Without key_id, decrypt and rewrap try every version at or above
    min_decryption_version, newest first (PROTOCOL.md §2): a ciphertext from
    20 rotations ago still opens; once the minimum passes its version it
    does not, and naming it gets error 22. (The node once tried only the 8
    newest.)"""
    node = Node(BIN, env=KEY_ENV)
    old = node.call({"type": "encrypt", "plaintext": "under version 1"})
    for _ in range(20):
        node.call({"type": "rotate_key"})
    assert node.call(dec_req(old))["plaintext"] == "under version 1"
    wrapped = node.call(dict(dec_req(old), type="rewrap"))
    assert wrapped["type"] == "rewrapped" and wrapped["key_id"] == 21, wrapped
    assert node.call(dec_req(wrapped))["plaintext"] == "under version 1"
    assert node.call({"type": "set_min_decryption_version", "key_id": 2})["min_decryption_version"] == 2
    got = node.call(dec_req(old))
    assert got["type"] == "decryption_failed" and got["error"] == AUTH_FAILED, got
    got = node.call(dec_req(old, key_id=1))
    assert got["type"] == "error" and got["code"] == 22, got
    node.close()


@test
def key_from_env_and_file():
    """SECURITOR_KEY and --key-file give the same key, so ciphertexts cross
    processes; the key shows up in no output."""
    node = Node(BIN, env=KEY_ENV)
    enc = node.call({"type": "encrypt", "plaintext": "portable"})
    _, err1, _ = node.close()
    dreq = {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
            "authTag": enc["authTag"], "key_id": 1}
    with tempfile.TemporaryDirectory() as d:
        hex_file, raw_file = os.path.join(d, "k.hex"), os.path.join(d, "k.raw")
        with open(hex_file, "w") as f:
            f.write(KEY_HEX.upper() + "\n")
        with open(raw_file, "wb") as f:
            f.write(bytes.fromhex(KEY_HEX))
        os.chmod(hex_file, 0o600)
        os.chmod(raw_file, 0o600)
        for args in (["--key-file", hex_file], ["--key-file=" + raw_file]):
            replies, err, code = run_lines(BIN, [msg(dreq)], args=args)
            assert code == 0 and replies[0]["body"]["plaintext"] == "portable", replies
            assert KEY_HEX not in err.lower()
        # A different (random) key cannot decrypt it.
        replies, err, code = run_lines(BIN, [msg(dreq)])
        assert replies[0]["body"]["type"] == "decryption_failed"
        assert "random key" in err
        # Bad keys are refused at start-up, without echoing the value.
        for env in ({"SECURITOR_KEY": "00" * 31}, {"SECURITOR_KEY": "zz" * 32}):
            replies, err, code = run_lines(BIN, [msg(dreq)], env=env)
            assert code == 2 and not replies and "64 hex" in err, (code, err)
            assert env["SECURITOR_KEY"] not in err
        with open(hex_file, "w") as f:
            f.write("too short")
        _, err, code = run_lines(BIN, [], args=["--key-file", hex_file])
        assert code == 2 and "64 hex" in err
        _, err, code = run_lines(BIN, [], args=["--key-file", os.path.join(d, "missing")])
        assert code == 2 and "missing" in err
        _, err, code = run_lines(BIN, [], args=["--key-file", raw_file], env=KEY_ENV)
        assert code == 2 and "give one" in err
    assert KEY_HEX not in err1.lower()


@test
def key_file_of_32_hex_digits_refused():
    """A 128-bit key written in hex is 32 bytes long, like a raw 256-bit key:
    such a file (32 hex digits, with or without white space around them) is
    refused with a message naming both accepted formats, never taken as 32
    raw bytes of ASCII. A raw key that merely holds some hex digits works."""
    hex128 = KEY_HEX[:32]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k")
        for content in (hex128.encode(), hex128.upper().encode(), hex128.encode() + b"\n",
                        hex128[:30].encode() + b"\r\n", b" " + hex128[:31].encode(),
                        b" " * 32):
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, 0o600)
            replies, err, code = run_lines(BIN, [msg({"type": "echo", "msg_id": 1, "echo": 1})],
                                           args=["--key-file", path])
            assert code == 2 and not replies, (content, code, replies)
            assert "64 hex characters" in err and "32 raw bytes" in err, (content, err)
            assert hex128 not in err.lower(), err
        with open(path, "wb") as f:
            f.write(hex128[:31].encode() + b"\xff")  # not all hex digits: raw bytes
        replies, err, code = run_lines(BIN, [msg({"type": "echo", "msg_id": 1, "echo": 1})],
                                       args=["--key-file", path])
        assert code == 0 and replies[0]["body"]["echo"] == 1, err
        _, err, code = run_lines(BIN, [], args=["--key-file"])
        assert code == 2 and "needs a path" in err, err


@test
def known_answer_through_binary():
    """GCM spec test case 16 decrypted by the binary with SECURITOR_KEY (the
    node picks IVs itself, so encryption cannot be a fixed answer)."""
    pt = bytes.fromhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    req = {"type": "decrypt", "iv": "cafebabefacedbaddecaf888",
           "encryptedData": "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
           "authTag": "76fc6ece0f4e1768cddf8853bb2d551b",
           "aad": base64.b64encode(aad).decode(), "aad_encoding": "base64"}
    replies, _, code = run_lines(BIN, [msg(req)], env=KEY_ENV)
    body = replies[0]["body"]
    assert body["encoding"] == "base64" and base64.b64decode(body["plaintext"]) == pt, body


@test
def wycheproof_through_binary():
    path = os.path.join(VECTORS, "wycheproof/aes_gcm_test.json")
    if not os.path.exists(path):
        skip("%s absent" % path)
    checked = 0
    for group in json.load(open(path))["testGroups"]:
        if group["keySize"] != 256:
            continue
        for t in group["tests"]:
            req = {"type": "decrypt", "msg_id": 1, "iv": t["iv"], "encryptedData": t["ct"],
                   "authTag": t["tag"], "aad": base64.b64encode(bytes.fromhex(t["aad"])).decode(),
                   "aad_encoding": "base64"}
            replies, err, code = run_lines(BIN, [msg(req)], env={"SECURITOR_KEY": t["key"]})
            assert code == 0 and len(replies) == 1, err
            body = replies[0]["body"]
            ok = (t["result"] == "valid" and group["ivSize"] == 96 and group["tagSize"] == 128)
            if ok:
                got = (base64.b64decode(body["plaintext"]) if body.get("encoding") == "base64"
                       else body["plaintext"].encode())
                assert body["type"] == "decrypted" and got == bytes.fromhex(t["msg"]), (t, body)
            else:
                assert body == {"type": "decryption_failed", "msg_id": 1, "in_reply_to": 1,
                                "error": AUTH_FAILED}, (t["tcId"], body)
            checked += 1
    assert checked > 80, checked


@test
def bad_lines_never_kill_the_node():
    lines = [b"{", b"[]", b"null", b'"str"', b'{"src":1,"body":{}}',
             b'{"src":"c","body":{"type":"encrypt","plaintext":"\xff\xfe"}}',
             b'{"src":"c","body":{"type":"encrypt","msg_id":1,"plaintext":"\xc3"}}',
             b"\x00\x01\x02", b"{" * 10000,
             b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":9,"echo":1}}']
    replies, err, code = run_lines(BIN, lines)
    assert code == 0, err
    kinds = [(r["body"]["type"], r["body"].get("code")) for r in replies]
    assert kinds == [("error", 12), ("error", 12), ("echo_ok", None)], kinds
    assert "not valid UTF-8" in replies[0]["body"]["text"]
    assert err.count("no reply possible") == 7, err


@test
def text_after_the_object_refused():
    """cJSON stops after the first value; the node does not ignore the rest."""
    lines = [b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":1,"echo":1}} x',
             b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":2,"echo":1}}{"a":1}',
             b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":3,"echo":"%s"}}"%s"'
             % (b"l" * 3000, b"m" * 3000),
             b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":4,"echo":4}} \t ']
    replies, err, code = run_lines(BIN, lines)
    assert code == 0, err
    got = [(r["body"]["in_reply_to"], r["body"]["type"], r["body"].get("code")) for r in replies]
    assert got == [(1, "error", 12), (2, "error", 12), (3, "error", 12), (4, "echo_ok", None)], got
    assert "unexpected text after the JSON object" in replies[0]["body"]["text"]


@test
def damaged_requests_never_crash():
    enc = msg({"type": "encrypt", "msg_id": 1, "plaintext": "Secret message", "aad": "hdr"})
    dec = msg({"type": "decrypt", "msg_id": 2, "iv": "cafebabefacedbaddecaf888",
               "encryptedData": "522dc1f099567d07", "authTag": "00" * 16, "key_id": 1})
    b64 = msg({"type": "encrypt", "msg_id": 3, "plaintext": "AAEC/w==", "encoding": "base64"})
    other = [msg({"type": "rotate_key", "msg_id": 4}), msg({"type": "echo", "msg_id": 5,
                                                           "echo": {"a": [1, "b"]}}),
             msg({"type": "init", "msg_id": 6, "node_id": "n1", "node_ids": ["n1"]})]
    # The transit requests (PROTOCOL.md §2), a known ciphertext under the key.
    known = {"iv": "240c345f93c13a89fab7ec31", "encryptedData": "7f39448bc90ad3921c3d321147b72c",
             "authTag": "5c0860c0fb358e2e48414ecff022299d", "aad": "row 7"}
    transit = [msg(dict(known, type="rewrap", msg_id=7)),
               msg(dict(known, type="rewrap", msg_id=8, key_id=1)),
               msg({"type": "datakey", "msg_id": 9, "bits": 128, "plaintext": False}),
               msg({"type": "keys", "msg_id": 10}),
               msg({"type": "set_min_decryption_version", "msg_id": 11, "key_id": 2}),
               msg({"type": "trim_keys", "msg_id": 12}),
               msg({"type": "blind_index", "msg_id": 13, "index": "email", "value": "a@b.c",
                    "bits": 64}),
               msg({"type": "blind_index", "msg_id": 14, "index": "bin", "value": "AP8=",
                    "encoding": "base64"})]
    n = check_fuzz(BIN, [enc, dec, b64] + other + transit, env=KEY_ENV)
    assert n > 500, n


@test
def burst_with_stdin_closed():
    """Thousands of lines piped at once: every reply is written, in order, exit 0."""
    n = 5000
    lines = []
    for i in range(n):
        if i % 3 == 2:
            lines.append(msg({"type": "decrypt", "msg_id": i, "iv": "00" * 12,
                              "encryptedData": "00", "authTag": "00" * 16}))
        else:
            lines.append(msg({"type": "encrypt", "msg_id": i, "plaintext": "message %d" % i}))
    replies, err, code = run_lines(BIN, lines)
    assert code == 0, err
    assert [r["body"]["in_reply_to"] for r in replies] == list(range(n))
    assert [r["body"]["msg_id"] for r in replies] == list(range(1, n + 1))
    assert all(r["body"]["type"] == ("decryption_failed" if i % 3 == 2 else "encrypted")
               for i, r in enumerate(replies))


def feed_in_pieces(env, data, rng):
    """Runs the binary with data written to its stdin in random pieces (so
    lines arrive split anywhere, several per read or one across many);
    returns (stdout bytes, exit code)."""
    full_env = dict(os.environ, **env)
    p = subprocess.Popen([BIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=full_env)
    out = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()))
    reader.start()
    i = 0
    while i < len(data):
        k = rng.choice((1, 7, 100, 4096, 65535, 65536, 65537, 300_000))
        p.stdin.write(data[i:i + k])
        p.stdin.flush()
        i += k
    p.stdin.close()
    reader.join()
    return out[0], p.wait()


@test
def two_threads_answer_as_one():
    """The loop parses on one thread and answers on another (a batch per
    read). Random lines (echo requests of every size around the 64 KiB read
    and the 1 KiB long-string threshold, blank lines, CRLF, garbage, bad
    UTF-8, errors), written in random pieces, must get exactly the replies,
    byte for byte, that the loop on one thread gives (SECURITOR_THREADS=1)."""
    seed = int(os.environ.get("SECURITOR_SEED", time.time_ns() % (1 << 30)))
    rng = random.Random(seed)
    lines = [msg({"type": "init", "msg_id": 0, "node_id": "n7", "node_ids": ["n7"]}).encode()]
    for i in range(1, 1500):
        kind = rng.randrange(10)
        if kind == 0:
            lines.append(rng.choice([b"", b"   ", b"\r", b"not json", b"{\"src\":1}",
                                     b"\xff\xfe", b"{} trailing"]))
            continue
        size = rng.choice((0, 5, 1023, 1024, 5000, 65535, 65536, 70000, 200_000))
        text = list("x" * size)
        for _ in range(rng.randrange(4)):  # a few characters that need escapes
            if size:
                text[rng.randrange(size)] = rng.choice("\u00e9\"\\\n\t")
        text = "".join(text)
        body = {"type": "echo" if kind > 1 else "nope", "msg_id": i, "echo": text}
        line = msg(body).encode()
        if kind == 2:
            line += b"\r"
        lines.append(line)
    data = b"\n".join(lines) + b"\n"
    one, code_one = feed_in_pieces(dict(KEY_ENV, SECURITOR_THREADS="1"), data, rng)
    two, code_two = feed_in_pieces(KEY_ENV, data, rng)
    assert code_one == 0 and code_two == 0, (code_one, code_two)
    assert one == two, "seed %d: the threaded loop answered differently" % seed
    replies = [json.loads(l) for l in two.split(b"\n") if l]
    assert len(replies) > 1000 and all(r["src"] == "n7" for r in replies[1:]), seed


@test
def interactive_reply_before_more_input():
    """The reply to a line arrives while stdin is still open (flushed before
    the node blocks on reading)."""
    node = Node(BIN)
    for i in range(3):
        assert node.call({"type": "echo", "echo": i})["echo"] == i
    replies, _, code = node.close()
    assert replies == [] and code == 0


@test
def last_line_without_newline_and_crlf():
    p = subprocess.run(
        [BIN], input=b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":1,"echo":"crlf"}}\r\n'
                     b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":2,"echo":"eof"}}',
        capture_output=True, timeout=30)
    replies = [json.loads(l) for l in p.stdout.splitlines()]
    assert [r["body"]["echo"] for r in replies] == ["crlf", "eof"] and p.returncode == 0


@test
def sixty_four_mib_lines():
    """A 48 MiB plaintext in base64 (a 64 MiB line) encrypts; the ~96 MiB
    decrypt line round-trips it."""
    raw = os.urandom(48 << 20)
    b64 = base64.b64encode(raw).decode()
    line = msg({"type": "encrypt", "msg_id": 1, "plaintext": b64, "encoding": "base64"})
    assert len(line) >= 64 << 20
    node = Node(BIN)
    node.send_line(line)
    enc = node.recv(timeout=120)["body"]
    assert enc["type"] == "encrypted" and len(enc["encryptedData"]) == 2 * len(raw)
    node.send({"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
               "authTag": enc["authTag"]})
    dec = node.recv(timeout=120)["body"]
    assert dec["encoding"] == "base64" and base64.b64decode(dec["plaintext"]) == raw
    node.close()


@test
def help_and_version():
    p = subprocess.run([BIN, "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"usage: symmetric-node" in p.stdout and b"--key-file" in p.stdout
    p = subprocess.run([BIN, "--version"], capture_output=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith(b"symmetric-node ")
    p = subprocess.run([BIN, "--frob"], capture_output=True, timeout=10)
    assert p.returncode == 2 and b"unknown argument" in p.stderr


run_all()
