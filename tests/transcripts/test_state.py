#!/usr/bin/env python3
"""Durable state (PROTOCOL.md §4) through the real binaries: restarts, files
that must be refused, disk faults below SQLite, and what the files hold.

usage: test_state.py PATH/TO/e2ee-node PATH/TO/symmetric-node
Environment: SECURITOR_FAULTS (the fault shim; the disk tests skip without it).
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import Node, run_all, skip, test  # noqa: E402

E2EE, SYM = sys.argv[1], sys.argv[2]
KEY = "5e" * 32
KEY_ENV = {"SECURITOR_KEY": KEY}


def state_dir():
    return tempfile.mkdtemp(prefix="securitor-state-")


def send(n, frm, to, text):
    r = n.call({"type": "send_message", "recipient": to, "plaintext": text}, src=frm)
    assert r["type"] == "message_encrypted", r
    return r["encrypted_message"]


def recv(n, me, frm, em):
    return n.call({"type": "receive_message", "sender": frm, "encrypted_message": em}, src=me)


def kill(n):
    n.proc.send_signal(signal.SIGKILL)
    n.proc.wait()


def files_hash(d):
    """SHA-256 of every file in d (names and bytes)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        h.update(name.encode() + b"\0")
        with open(os.path.join(d, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def start_fails(binary, d, env, node_id="n1", extra=()):
    """Starts the node on state d; it must exit 2 before answering anything,
    saying why, and leave every file as it was. Returns stderr."""
    before = files_hash(d)
    line = json.dumps({"src": "c", "dest": node_id, "body": {"type": "init", "msg_id": 1,
                                                              "node_id": node_id,
                                                              "node_ids": [node_id]}})
    full_env = dict(os.environ, **env)
    for k, v in env.items():  # None: the variable is not set at all
        if v is None:
            del full_env[k]
    p = subprocess.run([binary, "--state-dir", d, *extra], input=(line + "\n").encode(),
                       capture_output=True, timeout=60, env=full_env)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == b"", p.stdout
    assert files_hash(d) == before, "the state's files changed"
    return p.stderr.decode()


def e2ee_node(d, env=None):
    return Node(E2EE, args=["--state-dir", d], env=dict(KEY_ENV, **(env or {})))


@test
def e2ee_conversation_survives_restarts():
    d = state_dir()
    n = e2ee_node(d)
    r = n.call({"type": "init", "node_id": "n1", "node_ids": ["n1"]})
    assert r["type"] == "init_ok"
    em1 = send(n, "alice", "bob", "one")
    assert recv(n, "bob", "alice", em1)["plaintext"] == "one"
    em2 = send(n, "bob", "alice", "two")
    fp = n.call({"type": "fingerprint", "peer": "bob"}, src="alice")["safety_number"]
    ids = [n.call({"type": "get_bundle"}, src="carol")["one_time_pre_key_id"] for _ in range(3)]
    kill(n)
    n = e2ee_node(d)
    n.call({"type": "init", "node_id": "n1", "node_ids": ["n1"]})
    assert recv(n, "alice", "bob", em2)["plaintext"] == "two"
    assert recv(n, "bob", "alice", em1)["type"] == "decryption_failed"  # a duplicate still
    assert n.call({"type": "fingerprint", "peer": "bob"}, src="alice")["safety_number"] == fp
    assert n.call({"type": "get_bundle"}, src="carol")["one_time_pre_key_id"] == ids[-1] + 1
    assert recv(n, "bob", "alice", send(n, "alice", "bob", "three"))["plaintext"] == "three"
    # A later init naming another node is refused: the file is fixed.
    r = n.call({"type": "init", "node_id": "n2", "node_ids": ["n2"]})
    assert r["type"] == "error" and r["code"] == 22, r
    _, err, code = n.close()
    assert code == 0, err
    # A clean exit checkpoints: no WAL is left behind.
    assert not os.path.exists(os.path.join(d, "n1.db-wal")) or \
        os.path.getsize(os.path.join(d, "n1.db-wal")) == 0
    with sqlite3.connect(os.path.join(d, "n1.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    shutil.rmtree(d)


@test
def a_state_killed_while_it_was_made_starts_afresh():
    """A new state is built in a file beside its place and renamed into it:
    a kill half way leaves that file (here: garbage in it), never a state
    that is neither whole nor absent. The next start makes a whole one."""
    d = state_dir()
    with open(os.path.join(d, ".n1.db.creating"), "wb") as f:
        f.write(b"SQLite format 3\0" + os.urandom(100))
    n = e2ee_node(d)
    assert n.call({"type": "init", "node_id": "n1", "node_ids": ["n1"]})["type"] == "init_ok"
    assert n.call({"type": "get_bundle"}, src="alice")["type"] == "bundle"
    n.close()
    assert sorted(os.listdir(d)) == ["n1.db"], os.listdir(d)
    shutil.rmtree(d)


@test
def msg_ids_never_repeat_across_restarts():
    d = state_dir()
    seen = set()
    for _ in range(4):
        n = e2ee_node(d)
        for _ in range(5):
            n.send({"type": "get_bundle"}, src="alice")
            m = n.recv()["body"]["msg_id"]
            assert m not in seen, m
            seen.add(m)
        kill(n)
    shutil.rmtree(d)


@test
def bad_states_exit_2_untouched():
    d = state_dir()
    n = e2ee_node(d)
    n.call({"type": "init", "node_id": "n1", "node_ids": ["n1"]})
    n.call({"type": "get_bundle"}, src="alice")
    n.call({"type": "get_bundle"}, src="carla")  # a name as long as alice's: rows alike in size
    n.close()
    db = os.path.join(d, "n1.db")
    # A wrong key.
    err = start_fails(E2EE, d, {"SECURITOR_KEY": "11" * 32})
    assert "another key" in err, err
    # No key at all: both ways to give one are named.
    err = start_fails(E2EE, d, {"SECURITOR_KEY": None})
    assert "--key-file" in err and "SECURITOR_KEY" in err, err
    # Another node's state under this node's name.
    shutil.copy(db, os.path.join(d, "n2.db"))
    err = start_fails(E2EE, d, KEY_ENV, node_id="n2")
    assert "n1" in err, err
    os.remove(os.path.join(d, "n2.db"))
    # A second process while the first holds it.
    first = e2ee_node(d)
    first.call({"type": "init", "node_id": "n1", "node_ids": ["n1"]})
    err = start_fails(E2EE, d, KEY_ENV)
    assert "in use" in err, err
    first.close()
    # Damaged copies, one at a time.
    clean = d + ".clean"
    shutil.copytree(d, clean)

    def damaged(change, want):
        shutil.rmtree(d)
        shutil.copytree(clean, d)
        change(db)
        err = start_fails(E2EE, d, KEY_ENV)
        assert want in err, (want, err)

    def truncate(path):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)

    def flip_row(path):
        with sqlite3.connect(path) as c:
            rid, val = c.execute("SELECT id, value FROM rows LIMIT 1").fetchone()
            val = bytearray(val)
            val[len(val) // 2] ^= 1
            c.execute("UPDATE rows SET value = ? WHERE id = ?", (bytes(val), rid))

    def swap_users(path):
        # alice's and carla's own rows are the only two of their size.
        with sqlite3.connect(path) as c:
            rows = c.execute("SELECT id, value FROM rows").fetchall()
            by_len = {}
            for rid, val in rows:
                by_len.setdefault(len(val), []).append((rid, val))
            pair = next(v for v in by_len.values() if len(v) == 2)
            (a, va), (b, vb) = pair
            c.execute("UPDATE rows SET value = ? WHERE id = ?", (vb, a))
            c.execute("UPDATE rows SET value = ? WHERE id = ?", (va, b))

    def garbage(path):
        with open(path, "wb") as f:
            f.write(os.urandom(8192))

    damaged(truncate, "damaged")
    damaged(flip_row, "does not authenticate")
    damaged(swap_users, "does not authenticate")
    damaged(garbage, "not a securitor state")
    shutil.rmtree(d)
    shutil.rmtree(clean)


def disk_env(flag):
    shim = os.environ.get("SECURITOR_FAULTS")
    if not shim:
        skip("SECURITOR_FAULTS (the fault shim) not set")
    return {"LD_PRELOAD": shim, "SECURITOR_FAULT_DISK": flag,
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}


@test
def a_failed_commit_answers_from_nothing_unsaved():
    """Writes and syncs failing below SQLite (EIO, then a full disk): the
    requests of that batch get error 13, the node keeps nothing they did
    (no prekey handed out, no user made, no chain moved), and once the disk
    works again it goes on, also after a restart."""
    d = state_dir()
    flag = os.path.join(d, "..", os.path.basename(d) + ".fault")
    env = disk_env(flag)
    n = e2ee_node(d, env)
    n.call({"type": "init", "node_id": "n1", "node_ids": ["n1"]})
    em = send(n, "alice", "bob", "before")  # takes bob's first one-time prekey
    first = n.call({"type": "get_bundle"}, src="bob")["one_time_pre_key_id"]
    for mode in ("eio", "enospc"):
        with open(flag, "w") as f:
            f.write(mode)
        for req, src in (({"type": "get_bundle"}, "bob"), ({"type": "get_bundle"}, "newcomer"),
                         ({"type": "send_message", "recipient": "bob", "plaintext": "lost"},
                          "alice")):
            r = n.call(req, src=src)
            assert r["type"] == "error" and r["code"] == 13, (mode, req, r)
        os.remove(flag)
        # Nothing of it was kept: the same prekey comes next, and a message
        # sent now takes the position the lost one had.
        got = n.call({"type": "get_bundle"}, src="bob")["one_time_pre_key_id"]
        assert got == first + 1, (mode, got, first)
        first += 1
    after = send(n, "alice", "bob", "after")
    assert recv(n, "bob", "alice", em)["plaintext"] == "before"
    assert recv(n, "bob", "alice", after)["plaintext"] == "after"
    kill(n)
    n = e2ee_node(d, env)
    assert n.call({"type": "get_bundle"}, src="bob")["one_time_pre_key_id"] == first + 1
    assert recv(n, "bob", "alice", after)["type"] == "decryption_failed"  # delivered already
    _, err, code = n.close()
    assert code == 0, err
    shutil.rmtree(d)


def forms(b):
    """A secret as it could appear: raw, hex (both cases), base64."""
    return [b, b.hex().encode(), b.hex().upper().encode(), base64.b64encode(b)]


def state_bytes(d):
    out = b""
    for name in os.listdir(d):
        with open(os.path.join(d, name), "rb") as f:
            out += f.read()
    return out


@test
def nothing_secret_at_rest():
    """After a conversation with known plaintexts, root keys and the node's
    key, none of them appears in the database, WAL or shm files, raw, hex or
    base64, while the node runs and after it exits. Neither do user names."""
    d = state_dir()
    n = e2ee_node(d)
    secrets = [bytes.fromhex(KEY)]
    names = [b"alice-at-rest", b"bob-at-rest"]
    for k in range(20):
        text = "plaintext-%d-%s" % (k, os.urandom(8).hex())
        secrets.append(text.encode())
        assert recv(n, "bob-at-rest", "alice-at-rest",
                    send(n, "alice-at-rest", "bob-at-rest", text))["plaintext"] == text
    r = n.call({"type": "initiate_conversation", "recipient": "bob-at-rest"}, src="carol")
    secrets.append(base64.b64decode(r["root_key"]))
    live = state_bytes(d)
    n.close()
    for when, data in (("running", live), ("after exit", state_bytes(d))):
        for s in secrets:
            for f in forms(s):
                assert f not in data, (when, s)
        for name in names:
            assert name not in data, (when, name)
    shutil.rmtree(d)


run_all()
