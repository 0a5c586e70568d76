#!/usr/bin/env python3
"""Transcript and property tests for e2ee-node, through the real binary.

usage: test_e2ee.py PATH/TO/e2ee-node
"""
import base64
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import Node, check_fuzz, matches, run_all, run_lines, skip, test  # noqa: E402

BIN = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("SECURITOR_SHARED", os.path.join(HERE, "../../../shared"))


def send(n, frm, to, text):
    r = n.call({"type": "send_message", "recipient": to, "plaintext": text}, src=frm)
    assert r["type"] == "message_encrypted", r
    return r["encrypted_message"]


def recv(n, me, frm, em):
    return n.call({"type": "receive_message", "sender": frm, "encrypted_message": em}, src=me)


def flip_b64(b64, i, bit=0x01):
    raw = bytearray(base64.b64decode(b64))
    raw[i] ^= bit
    return base64.b64encode(bytes(raw)).decode()


@test
def seed_cases():
    path = os.path.join(SHARED, "seed-cases/cases.json")
    if not os.path.exists(path):
        skip("seed cases absent")
    cases = [c for c in json.load(open(path))["cases"] if c["binary"] == "e2ee-node"]
    assert cases
    for case in cases:
        replies, err, code = run_lines(BIN, [json.dumps(case["input"])])
        assert code == 0 and len(replies) == 1, (replies, err)
        body = replies[0]["body"]
        problems = matches(case["expected"], body)
        if case["honest"]:
            assert not problems, (case["name"], problems)
            em = body["encrypted_message"]
            assert em["kind"] == "prekey" and len(em["auth_tag"]) == 16
        else:
            assert problems, "dishonest case faked: %r" % body
            assert body["type"] == "error" and body["code"] == 12, body
            assert "identity_key" in body["text"], body
    # The honest forms: bob's real bundle, or none at all.
    n = Node(BIN, src="alice", dest="e2ee")
    bundle = n.call({"type": "get_bundle", "user": "bob"})
    ids = set()
    for bob_key in (bundle, None):
        req = {"type": "initiate_conversation", "recipient": "bob"}
        if bob_key:
            req["bob_public_key"] = bob_key
        r = n.call(req)
        assert r["type"] == "conversation_initiated" and r["recipient"] == "bob", r
        assert len(base64.b64decode(r["root_key"])) == 32
        assert len(r["session_id"]) == 36
        ids.add(r["session_id"])
    assert len(ids) == 2, "each conversation gets its own session_id"
    n.close()


@test
def conversation_with_ratchet_steps():
    n = Node(BIN)
    sid = None
    for rnd in range(6):
        for k in range(3):
            em = send(n, "alice", "bob", "a%d.%d" % (rnd, k))
            assert em["kind"] == ("prekey" if rnd == 0 else "message"), (rnd, em)
            r = recv(n, "bob", "alice", em)
            assert r["type"] == "message_decrypted" and r["plaintext"] == "a%d.%d" % (rnd, k), r
            sid = sid or r["session_id"]
            assert r["session_id"] == sid
        em = send(n, "bob", "alice", "b%d" % rnd)
        assert em["kind"] == "message"
        r = recv(n, "alice", "bob", em)
        assert r["plaintext"] == "b%d" % rnd and r["session_id"] == sid, r
    fa = n.call({"type": "fingerprint", "peer": "bob"}, src="alice")["safety_number"]
    fb = n.call({"type": "fingerprint", "peer": "alice"}, src="bob")["safety_number"]
    assert fa == fb and len(fa) == 60 and fa.isdigit()
    n.close()


@test
def unicode_and_binary_plaintexts():
    n = Node(BIN)
    for text in ("", "ünïcødé 🔐", "x" * 70000):
        assert recv(n, "bob", "alice", send(n, "alice", "bob", text))["plaintext"] == text
    raw = b"\x00\xff\x01"
    em = n.call({"type": "send_message", "recipient": "bob", "encoding": "base64",
                 "plaintext": base64.b64encode(raw).decode()}, src="alice")["encrypted_message"]
    r = recv(n, "bob", "alice", em)
    assert r["encoding"] == "base64" and base64.b64decode(r["plaintext"]) == raw
    n.close()


@test
def out_of_order_across_ratchet_steps():
    n = Node(BIN)
    held = []
    recv(n, "bob", "alice", send(n, "alice", "bob", "hello"))
    for rnd in range(4):
        batch = [("a%d.%d" % (rnd, k), send(n, "alice", "bob", "a%d.%d" % (rnd, k)))
                 for k in range(5)]
        held += batch[:2]  # two of each chain arrive late
        for text, em in reversed(batch[2:]):
            assert recv(n, "bob", "alice", em)["plaintext"] == text
        em = send(n, "bob", "alice", "ack%d" % rnd)
        assert recv(n, "alice", "bob", em)["plaintext"] == "ack%d" % rnd
    random.shuffle(held)
    for text, em in held:  # late messages from older chains
        assert recv(n, "bob", "alice", em)["plaintext"] == text
    for text, em in held:  # and each exactly once
        r = recv(n, "bob", "alice", em)
        assert r["type"] == "decryption_failed" and "duplicate" in r["error"], r
    n.close()


@test
def last_message_of_old_chain_pn_plus_one():
    """previousCounter is count - 1 (libsignal): the last message of the old
    chain must still decrypt when it arrives after the new chain."""
    n = Node(BIN)
    recv(n, "bob", "alice", send(n, "alice", "bob", "start"))
    recv(n, "alice", "bob", send(n, "bob", "alice", "reply"))
    last = send(n, "alice", "bob", "last of chain")
    recv(n, "alice", "bob", send(n, "bob", "alice", "bob again"))  # alice will ratchet
    nxt = send(n, "alice", "bob", "new chain")
    assert recv(n, "bob", "alice", nxt)["plaintext"] == "new chain"
    assert recv(n, "bob", "alice", last)["plaintext"] == "last of chain"
    n.close()


def registration_id_span(b64):
    """Byte indexes of the registrationId value in a PreKeySignalMessage: the
    envelope is not MAC'd in Signal v3 (SIGNAL.md 2.1), so a changed
    registration id is not detectable there."""
    raw = base64.b64decode(b64)
    assert raw[1] == 0x28
    i = 2
    while raw[i] & 0x80:
        i += 1
    return set(range(2, i + 1))


@test
def prekey_message_flips_refused():
    """Every byte of a first prekey message flipped in turn (bar the
    unauthenticated registrationId value): refused, and nothing changes."""
    n = Node(BIN)
    em = send(n, "alice", "bob", "first")
    assert em["kind"] == "prekey"
    skip = registration_id_span(em["ciphertext"])
    for i in range(len(base64.b64decode(em["ciphertext"]))):
        if i in skip:
            continue
        bad = dict(em, ciphertext=flip_b64(em["ciphertext"], i))
        bad.pop("auth_tag")
        r = recv(n, "bob", "alice", bad)
        assert r["type"] in ("decryption_failed", "error"), (i, r)
        assert r["type"] == "decryption_failed" or r["code"] in (12, 22), (i, r)
    assert recv(n, "bob", "alice", em)["plaintext"] == "first"
    n.close()


@test
def every_byte_flipped_is_refused_and_session_survives():
    n = Node(BIN)
    recv(n, "bob", "alice", send(n, "alice", "bob", "setup"))
    recv(n, "alice", "bob", send(n, "bob", "alice", "answer"))  # alice stops sending prekey
    em = send(n, "alice", "bob", "target")
    assert em["kind"] == "message"
    raw_len = len(base64.b64decode(em["ciphertext"]))
    for i in range(raw_len):
        bad = dict(em, ciphertext=flip_b64(em["ciphertext"], i))
        r = recv(n, "bob", "alice", bad)
        assert r["type"] == "decryption_failed", (i, r)
        bad.pop("auth_tag")  # without the tag check, the MAC must catch it
        r = recv(n, "bob", "alice", bad)
        assert r["type"] == "decryption_failed", (i, r)
    bad = dict(em, auth_tag="00" * 8)
    assert recv(n, "bob", "alice", bad)["type"] == "decryption_failed"
    assert recv(n, "bob", "alice", em)["plaintext"] == "target"
    assert recv(n, "alice", "bob", send(n, "bob", "alice", "still fine"))["plaintext"] == "still fine"
    n.close()


@test
def too_far_ahead_refused():
    n = Node(BIN)
    recv(n, "bob", "alice", send(n, "alice", "bob", "setup"))
    lines = [json.dumps({"src": "alice", "dest": "n", "body": {
        "type": "send_message", "msg_id": i, "recipient": "bob", "plaintext": "m%d" % i}})
        for i in range(2100)]
    ems = []
    for at in range(0, len(lines), 200):  # in batches, so neither pipe fills up
        for l in lines[at:at + 200]:
            n.send_line(l)
        ems += [n.recv()["body"]["encrypted_message"] for _ in lines[at:at + 200]]
    r = recv(n, "bob", "alice", ems[2099])  # 2099 keys would be skipped
    assert r["type"] == "decryption_failed" and "too far" in r["error"], r
    assert recv(n, "bob", "alice", ems[1999])["plaintext"] == "m1999"  # 1999 skipped: fine
    assert recv(n, "bob", "alice", ems[5])["plaintext"] == "m5"
    n.close()


@test
def pinning_and_trust():
    n = Node(BIN)
    b1 = n.call({"type": "get_bundle"}, src="mallory")
    b2 = n.call({"type": "get_bundle"}, src="bob")
    r = n.call({"type": "initiate_conversation", "recipient": "remote-bob", "bob_public_key": b2},
               src="alice")
    assert r["type"] == "conversation_initiated"
    # Another identity for the same peer name: refused until trusted.
    r = n.call({"type": "initiate_conversation", "recipient": "remote-bob", "bob_public_key": b1},
               src="alice")
    assert r["type"] == "error" and r["code"] == 22 and "changed" in r["text"], r
    r = n.call({"type": "trust_identity", "peer": "remote-bob", "identity_key": b1["identity_key"]},
               src="alice")
    assert r == {"type": "identity_trusted", "msg_id": r["msg_id"], "in_reply_to": r["in_reply_to"],
                 "peer": "remote-bob"}
    r = n.call({"type": "initiate_conversation", "recipient": "remote-bob", "bob_public_key": b1},
               src="alice")
    assert r["type"] == "conversation_initiated", r
    # No keys are invented for a remote peer.
    r = n.call({"type": "get_bundle"}, src="remote-bob")
    assert r["type"] == "error" and r["code"] == 20, r
    n.close()


@test
def changed_identity_in_a_prekey_message():
    """A prekey message from a remote peer whose identity key differs from
    the pinned one gets error 22 until the user trusts it; then it decrypts,
    and the fingerprint follows the newly trusted key (PROTOCOL.md §3). The
    remote "alice"s are users of two other node processes."""
    real, fake, n = Node(BIN), Node(BIN), Node(BIN)
    for other in (real, fake):
        bob = n.call({"type": "get_bundle"}, src="bob")  # a one-time prekey each
        for k in ("type", "msg_id", "in_reply_to"):
            bob.pop(k)
        r = other.call({"type": "initiate_conversation", "recipient": "bob",
                        "bob_public_key": bob}, src="alice")
        assert r["type"] == "conversation_initiated", r
    recv(n, "bob", "alice", send(real, "alice", "bob", "from the real alice"))
    before = n.call({"type": "fingerprint", "peer": "alice"}, src="bob")["safety_number"]
    forged = send(fake, "alice", "bob", "I am alice, honest")
    r = recv(n, "bob", "alice", forged)
    assert r["type"] == "error" and r["code"] == 22 and "changed" in r["text"], r
    fake_key = fake.call({"type": "get_bundle"}, src="alice")["identity_key"]
    r = n.call({"type": "trust_identity", "peer": "alice", "identity_key": fake_key}, src="bob")
    assert r["type"] == "identity_trusted", r
    after = n.call({"type": "fingerprint", "peer": "alice"}, src="bob")["safety_number"]
    assert after != before and len(after) == 60
    r = recv(n, "bob", "alice", forged)
    assert r["type"] == "message_decrypted" and r["plaintext"] == "I am alice, honest", r
    for node in (real, fake, n):
        node.close()


@test
def local_users_cannot_be_impersonated():
    """alice is a user of this node, so her identity is known: a prekey
    message from another identity that claims to be alice, a bundle for
    "alice" with a foreign key, and trusting a foreign key for alice are all
    refused with error 22, and alice's real conversation goes on."""
    n, mallory = Node(BIN), Node(BIN)
    recv(n, "bob", "alice", send(n, "alice", "bob", "from the real alice"))
    bob = n.call({"type": "get_bundle"}, src="bob")
    for k in ("type", "msg_id", "in_reply_to"):
        bob.pop(k)
    mallory.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": bob},
                 src="alice")
    forged = send(mallory, "alice", "bob", "I am alice, honest")
    r = recv(n, "bob", "alice", forged)
    assert r["type"] == "error" and r["code"] == 22 and "impersonation" in r["text"], r
    fake = mallory.call({"type": "get_bundle"}, src="alice")
    for k in ("type", "msg_id", "in_reply_to"):
        fake.pop(k)
    r = n.call({"type": "trust_identity", "peer": "alice", "identity_key": fake["identity_key"]},
               src="bob")
    assert r["type"] == "error" and r["code"] == 22, r
    r = n.call({"type": "initiate_conversation", "recipient": "alice", "bob_public_key": fake},
               src="carol")
    assert r["type"] == "error" and r["code"] == 22, r
    r = recv(n, "bob", "alice", forged)  # still refused after all that
    assert r["type"] == "error" and r["code"] == 22, r
    reply = send(n, "bob", "alice", "to the real alice")
    assert recv(n, "alice", "bob", reply)["plaintext"] == "to the real alice"
    n.close()
    mallory.close()


@test
def bad_signatures_and_substituted_prekeys():
    n = Node(BIN)
    b = n.call({"type": "get_bundle"}, src="bob")
    other = n.call({"type": "get_bundle"}, src="carol")
    sig = base64.b64decode(b["signed_pre_key_signature"])
    for i in range(0, 64, 7):
        bad = bytearray(sig)
        bad[i] ^= 0x04
        r = n.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key":
                    dict(b, signed_pre_key_signature=base64.b64encode(bytes(bad)).decode())},
                   src="alice")
        assert r["type"] == "error" and r["code"] == 22, r
    # A signed prekey swapped for another (validly signed by someone else).
    r = n.call({"type": "initiate_conversation", "recipient": "bob",
                "bob_public_key": dict(b, signed_pre_key=other["signed_pre_key"])}, src="alice")
    assert r["type"] == "error" and r["code"] == 22, r
    r = n.call({"type": "initiate_conversation", "recipient": "bob",
                "bob_public_key": dict(b, signed_pre_key_signature=other["signed_pre_key_signature"])},
               src="alice")
    assert r["code"] == 22, r
    # Keys that are not keys: error 12 naming the field.
    for field in ("identity_key", "signed_pre_key", "one_time_pre_key"):
        r = n.call({"type": "initiate_conversation", "recipient": "bob",
                    "bob_public_key": dict(b, **{field: "AAAA"})}, src="alice")
        assert r["code"] == 12 and field in r["text"], r
    r = n.call({"type": "initiate_conversation", "recipient": "bob",
                "bob_public_key": {k: v for k, v in b.items() if k != "signed_pre_key_signature"}},
               src="alice")
    assert r["code"] == 12 and "signed_pre_key_signature" in r["text"], r
    # 0xFFFFFFFF stands for "no one-time prekey" on the wire: as the id of
    # one, alice's first message would name none and bob could not open it.
    r = n.call({"type": "initiate_conversation", "recipient": "bob",
                "bob_public_key": dict(b, one_time_pre_key_id=0xFFFFFFFF)}, src="alice")
    assert r["code"] == 12 and "one_time_pre_key_id" in r["text"], r
    # The real bundle still works: nothing above changed state.
    r = n.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": b},
               src="alice")
    assert r["type"] == "conversation_initiated", r
    n.close()


@test
def one_time_prekeys_once():
    n = Node(BIN)
    # Handed out once each, refilled before they run out, never reused.
    ids = [n.call({"type": "get_bundle"}, src="bob").get("one_time_pre_key_id") for _ in range(350)]
    assert ids == list(range(1, 351)), ids
    n.close()
    # A second prekey message naming a used one-time prekey is refused.
    n = Node(BIN)
    b = n.call({"type": "get_bundle"}, src="bob")
    n.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": b}, src="alice")
    first = send(n, "alice", "bob", "one")
    assert recv(n, "bob", "alice", first)["plaintext"] == "one"
    n.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": b}, src="carol")
    r = recv(n, "bob", "carol", send(n, "carol", "bob", "reuse"))
    assert r["type"] == "decryption_failed" and "one-time prekey" in r["error"], r
    # A repeated prekey message of the existing session: decrypts on it once.
    second = send(n, "alice", "bob", "two")
    assert second["kind"] == "prekey"
    assert recv(n, "bob", "alice", second)["plaintext"] == "two"
    assert recv(n, "bob", "alice", second)["type"] == "decryption_failed"
    n.close()


@test
def errors_are_clear():
    n = Node(BIN)
    r = n.call({"type": "receive_message", "sender": "zed",
                "encrypted_message": {"ciphertext": base64.b64encode(b"\x33junk").decode(),
                                      "kind": "message"}}, src="bob")
    assert r["type"] == "decryption_failed", r
    em = send(n, "alice", "bob", "x")
    recv(n, "bob", "alice", em)
    em2 = send(n, "bob", "alice", "y")
    r = recv(n, "bob", "nobody", em2)
    assert r["type"] == "error" and r["code"] == 20, r
    for body, field in (({"type": "receive_message", "sender": "a"}, "encrypted_message"),
                        ({"type": "receive_message", "sender": "a",
                          "encrypted_message": {"ciphertext": "!!"}}, "ciphertext"),
                        ({"type": "send_message", "recipient": "bob"}, "plaintext"),
                        ({"type": "fingerprint"}, "peer"),
                        ({"type": "trust_identity", "peer": "x", "identity_key": "zz"}, "identity_key")):
        r = n.call(body, src="alice")
        assert r["type"] == "error" and r["code"] == 12 and field in r["text"], (body, r)
    r = n.call({"type": "fingerprint", "peer": "stranger"}, src="alice")
    assert r["code"] == 20
    n.close()


@test
def property_random_schedules():
    """Random schedules of sends, deliveries, drops, duplicates and reorders
    between three users: every delivered message decrypts exactly once, to
    its plaintext; every duplicate is refused; the node never fails and
    exits cleanly (under ASan that includes no leaks). A node serves 100
    schedules in turn, each with users of its own."""
    seed = int(os.environ.get("SECURITOR_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print("property seed: %d (set SECURITOR_SEED to repeat)" % seed)
    schedules = int(os.environ.get("SECURITOR_SCHEDULES", "1000"))
    n = None
    steps = 0
    for schedule in range(schedules):
        if schedule % 100 == 0:
            if n:
                _, err, code = n.close()
                assert code == 0, (seed, code, err[-2000:])
            n = Node(BIN)
        users = ["alice%d" % schedule, "bob%d" % schedule, "carol%d" % schedule]
        in_flight = []   # (to, frm, text, em)
        delivered = []   # already decrypted
        counter = 0
        for step in range(rng.randrange(10, 60)):
            steps += 1
            op = rng.random()
            if op < 0.45 or not in_flight:
                frm, to = rng.sample(users, 2)
                counter += 1
                text = "s%d.%d %s->%s" % (schedule, counter, frm, to)
                in_flight.append((to, frm, text, send(n, frm, to, text)))
            elif op < 0.85:
                i = rng.randrange(len(in_flight))
                to, frm, text, em = in_flight.pop(i)
                r = recv(n, to, frm, em)
                assert r["type"] == "message_decrypted" and r["plaintext"] == text, (seed, r, text)
                delivered.append((to, frm, em))
            elif op < 0.92 and delivered:
                to, frm, em = rng.choice(delivered)
                r = recv(n, to, frm, em)
                assert r["type"] == "decryption_failed", (seed, r)
            elif in_flight:
                in_flight.pop(rng.randrange(len(in_flight)))  # dropped
    _, err, code = n.close()
    assert code == 0, (seed, code, err[-2000:])
    print("property: %d schedules, %d steps" % (schedules, steps))


def bare(bundle):
    """A bundle reply as bob_public_key (without the reply's own fields)."""
    return {k: v for k, v in bundle.items() if k not in ("type", "msg_id", "in_reply_to")}


def fault_env(path):
    """Runs the node with the fault shim: RAND fails while `path` exists."""
    shim = os.environ.get("SECURITOR_FAULTS")
    if not shim:
        return None
    # The sanitizer runtimes want to come first among preloaded libraries.
    return {"LD_PRELOAD": shim, "SECURITOR_FAULT_RAND": path,
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}


@test
def rng_failure_is_error_13():
    """The RNG failing while the node makes a key is its own failure (error
    13), not something wrong with the peer's keys; nothing changes, and once
    the RNG works again so does the node."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        flag = os.path.join(d, "rand-fails")
        env = fault_env(flag)
        if not env:
            skip("SECURITOR_FAULTS (the fault shim) not set")
        n = Node(BIN, env=env)
        bob = bare(n.call({"type": "get_bundle"}, src="bob"))
        n.call({"type": "get_bundle"}, src="alice")
        open(flag, "w").close()
        for req in ({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": bob},
                    {"type": "initiate_conversation", "recipient": "bob"},
                    {"type": "send_message", "recipient": "bob", "plaintext": "x"},
                    {"type": "get_bundle", "user": "carol"}):
            r = n.call(req, src="alice")
            assert r["type"] == "error" and r["code"] == 13, (req["type"], r)
        os.remove(flag)
        em = send(n, "alice", "bob", "after the fault")
        assert recv(n, "bob", "alice", em)["plaintext"] == "after the fault"
        # bob's first one-time prekey went to the bundle above; the failed
        # requests took none: the next bundle names id 2... plus the one
        # initiate used: 3.
        assert n.call({"type": "get_bundle"}, src="bob")["one_time_pre_key_id"] == 3
        n.close()


@test
def failed_requests_change_nothing():
    """A request that fails leaves no trace: no one-time prekey handed out, no
    user made, no peer pinned."""
    n = Node(BIN, args=["--max-users", "3"])
    mallory = bare(n.call({"type": "get_bundle"}, src="mallory"))
    # alice pins a foreign key for carol (who has no keys here yet): an
    # initiation to carol must fail before carol's keys are even made.
    r = n.call({"type": "trust_identity", "peer": "carol", "identity_key": mallory["identity_key"]},
               src="alice")
    assert r["type"] == "identity_trusted", r
    r = n.call({"type": "initiate_conversation", "recipient": "carol"}, src="alice")
    assert r["type"] == "error" and r["code"] == 22 and "changed" in r["text"], r
    # The fingerprint of an unknown peer makes no user.
    for who in ("dave", "erin", "frank"):
        r = n.call({"type": "fingerprint", "peer": "nobody"}, src=who)
        assert r["type"] == "error" and r["code"] == 20, r
    # So carol is the third user (mallory, alice, carol), and her first
    # one-time prekey is still id 1.
    assert n.call({"type": "get_bundle"}, src="carol")["one_time_pre_key_id"] == 1
    r = n.call({"type": "get_bundle"}, src="dave")
    assert r["type"] == "error" and r["code"] == 22 and "user limit" in r["text"], r
    # A bad bundle for a new remote name leaves no peer behind: a later good
    # bundle for the same name is not refused as a changed identity.
    bad = dict(mallory, signed_pre_key_signature=base64.b64encode(b"\x00" * 64).decode())
    r = n.call({"type": "initiate_conversation", "recipient": "remote", "bob_public_key": bad},
               src="alice")
    assert r["code"] == 22, r
    n.close()


@test
def failing_first_requests_make_no_user():
    """A user's first request that fails makes no user (README): a prekey
    message to a user not made yet (nothing sent to it can authenticate),
    an initiation with a bad bundle, a send or an initiation to a remote
    peer without a session, a send to a new local user with room for one. (Each made the user, with 100 one-time prekeys, counted against
    --max-users and kept in the state.)"""
    other = Node(BIN)
    bob = bare(other.call({"type": "get_bundle"}, src="bob"))
    em = send(other, "alice", "bob", "for bob elsewhere")
    other.close()
    n = Node(BIN, args=["--max-users", "2"])
    r = n.call({"type": "receive_message", "sender": "alice", "encrypted_message": em},
               src="carol")
    assert r["type"] == "decryption_failed" and "no keys" in r["error"], r
    bad = dict(bob, signed_pre_key_signature=flip_b64(bob["signed_pre_key_signature"], 5))
    r = n.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": bad},
               src="q1")
    assert r["type"] == "error" and r["code"] == 22, r
    r = n.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": bob},
               src="alice")
    assert r["type"] == "conversation_initiated", r
    r = n.call({"type": "send_message", "recipient": "bob", "plaintext": "x"}, src="q2")
    assert r["type"] == "error" and r["code"] == 20, r
    r = n.call({"type": "initiate_conversation", "recipient": "bob"}, src="q3")
    assert r["type"] == "error" and r["code"] == 20, r
    # Room for one more user, and a new sender to a new local user needs two.
    r = n.call({"type": "send_message", "recipient": "zed", "plaintext": "x"}, src="q4")
    assert r["type"] == "error" and r["code"] == 22 and "user limit" in r["text"], r
    # alice alone was made: one more fits under --max-users 2, then no more.
    assert n.call({"type": "get_bundle"}, src="u2")["type"] == "bundle"
    r = n.call({"type": "get_bundle"}, src="u3")
    assert r["type"] == "error" and r["code"] == 22 and "user limit" in r["text"], r
    n.close()


@test
def replayed_prekey_message_is_refused_after_its_session_is_archived():
    """X3DH §4.2: alice's first message without a one-time prekey (the
    last-resort path) can be replayed. Once bob's session with it has been
    pushed out of his 40 archived states (here: by 45 initiations of his
    own), the replay must still be refused, not set up a session that
    alice does not have."""
    n = Node(BIN)
    bob = bare(n.call({"type": "get_bundle"}, src="bob"))
    for k in ("one_time_pre_key", "one_time_pre_key_id"):
        bob.pop(k)
    n.call({"type": "initiate_conversation", "recipient": "bob", "bob_public_key": bob},
           src="alice-remote")
    first = send(n, "alice-remote", "bob", "hello, no one-time prekey")
    assert recv(n, "bob", "alice-remote", first)["type"] == "message_decrypted"
    alice = bare(n.call({"type": "get_bundle"}, src="alice-remote"))
    for _ in range(45):
        r = n.call({"type": "initiate_conversation", "recipient": "alice-remote",
                    "bob_public_key": alice}, src="bob")
        assert r["type"] == "conversation_initiated", r
        alice = bare(n.call({"type": "get_bundle"}, src="alice-remote"))
    r = recv(n, "bob", "alice-remote", first)
    assert r["type"] == "decryption_failed" and "replay" in r["error"], r
    n.close()


@test
def forged_message_work_is_bounded_across_sessions():
    """A forged message far ahead on a new ratchet key costs each session it
    is tried on a full skip (4,000 chain steps). With 40 sessions that must
    not cost 40 times what it costs with one: the work is bounded per
    message."""
    import struct
    import time as _time

    def varint(v):
        out = b""
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def forged():
        body = (b"\x0a\x21\x05" + os.urandom(32) + b"\x10" + varint(1999) + b"\x18" +
                varint(1999) + b"\x22\x10" + os.urandom(16))
        return {"ciphertext": base64.b64encode(b"\x33" + body + os.urandom(8)).decode(),
                "kind": "message"}

    def cost(sessions):
        # Each session has received a message, so a new ratchet key on it
        # costs both skips and a DH step.
        n = Node(BIN)
        for _ in range(sessions):
            n.call({"type": "initiate_conversation", "recipient": "bob"}, src="alice")
            recv(n, "bob", "alice", send(n, "alice", "bob", "hi"))
        lines = [json.dumps({"src": "bob", "dest": "n1", "body": {
            "type": "receive_message", "msg_id": i, "sender": "alice",
            "encrypted_message": forged()}}) for i in range(50)]
        t0 = _time.monotonic()
        for l in lines:
            n.send_line(l)
        for _ in lines:
            assert n.recv()["body"]["type"] == "decryption_failed"
        spent = _time.monotonic() - t0
        n.close()
        return spent

    one, forty = cost(1), cost(40)
    print("forged messages: %.3fs with one session, %.3fs with 40" % (one, forty))
    assert forty < 3 * one + 0.05, (one, forty)


@test
def names_and_self_sends():
    n = Node(BIN)
    long_name = "n" * 257
    for req, src in (({"type": "get_bundle"}, long_name),
                     ({"type": "send_message", "recipient": long_name, "plaintext": "x"}, "a"),
                     ({"type": "fingerprint", "peer": ""}, "a"),
                     ({"type": "get_bundle", "user": long_name}, "a")):
        r = n.call(req, src=src)
        assert r["type"] == "error" and r["code"] == 12, (req, r)
    assert n.call({"type": "get_bundle"}, src="n" * 256)["type"] == "bundle"
    r = n.call({"type": "send_message", "recipient": "alice", "plaintext": "me"}, src="alice")
    assert r["type"] == "error" and r["code"] == 12 and "itself" in r["text"], r
    r = n.call({"type": "initiate_conversation", "recipient": "alice"}, src="alice")
    assert r["type"] == "error" and r["code"] == 12, r
    # A low-order identity key binds nothing: refused, as bundles are.
    zero = base64.b64encode(b"\x05" + b"\x00" * 32).decode()
    r = n.call({"type": "trust_identity", "peer": "bob", "identity_key": zero}, src="alice")
    assert r["type"] == "error" and r["code"] == 22, r
    _, err, code = n.close()
    assert code == 0 and "memory only" in err, err


@test
def damaged_requests_never_crash():
    """Requests from a real conversation (made by another node process, so
    keys and sessions do not match the fuzzed node's), damaged at random."""
    n = Node(BIN)
    bundle = n.call({"type": "get_bundle"}, src="bob")
    for k in ("type", "msg_id", "in_reply_to"):
        bundle.pop(k)
    first = send(n, "alice", "bob", "hello")
    recv(n, "bob", "alice", first)
    second = send(n, "bob", "alice", "hi " * 400)
    n.close()

    def line(src, body):
        return json.dumps({"src": src, "dest": "n1", "body": body})

    seeds = [line("bob", {"type": "get_bundle", "msg_id": 1}),
             line("carol", {"type": "initiate_conversation", "msg_id": 2, "recipient": "bob",
                            "bob_public_key": bundle}),
             line("bob", {"type": "receive_message", "msg_id": 3, "sender": "alice",
                          "encrypted_message": first}),
             line("alice", {"type": "receive_message", "msg_id": 4, "sender": "bob",
                            "encrypted_message": second}),
             line("alice", {"type": "send_message", "msg_id": 5, "recipient": "bob",
                            "plaintext": "x", "encoding": "utf-8"}),
             line("alice", {"type": "fingerprint", "msg_id": 6, "peer": "bob"}),
             line("alice", {"type": "trust_identity", "msg_id": 7, "peer": "bob"})]
    replies = check_fuzz(BIN, seeds, count=3000)
    assert replies > 1000, replies


@test
def replies_leave_while_requests_keep_coming():
    """Under steady input a reply is written a few milliseconds after it is
    made (output.c, OUT_HOLD_US), not once input runs dry or a megabyte of
    replies has gathered: a client that pipelines gets its first answers
    while the node is still busy with the later requests. Both loop modes;
    on two threads the node used to write only once its queue ran dry (every
    reply came with the last), on one it writes before each read anyway."""
    users = 240  # each a new user: its keys made, about 3.5 ms (~0.8 s in all)
    for env in ({}, {"SECURITOR_THREADS": "1"}):
        n = Node(BIN, env=env)
        t0 = time.monotonic()

        def writer():
            for i in range(0, users, 4):  # faster than the node answers
                for j in range(i, i + 4):
                    n.send({"type": "get_bundle"}, src="u%d" % j)
                time.sleep(0.002)
        w = threading.Thread(target=writer)
        w.start()
        arrivals = []
        for _ in range(users):
            assert n.recv()["body"]["type"] == "bundle"
            arrivals.append(time.monotonic() - t0)
        w.join()
        assert n.close()[2] == 0
        # Held to the end, the first reply would come with the last.
        assert arrivals[0] < 0.2 * arrivals[-1], (env, arrivals[0], arrivals[-1])
        assert arrivals[users // 2] < 0.8 * arrivals[-1], (env, arrivals[users // 2])


@test
def help_and_version():
    import subprocess
    p = subprocess.run([BIN, "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"usage: e2ee-node" in p.stdout
    p = subprocess.run([BIN, "--version"], capture_output=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith(b"e2ee-node ")


run_all()
