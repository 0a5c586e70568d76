#!/usr/bin/env python3
"""The runtime through a router: two nodes that call each other, lost and
late replies, replies that must never be answered, timers, deferred replies,
one-way messages, output commit and rollback.

usage: test_runtime.py PATH/TO/runtime-node
Environment: RUNTIME_VALGRIND=path runs every node under valgrind (leaks and
errors fail the test through the exit code).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlib import Net  # noqa: E402
from nodelib import run_all, run_lines, test  # noqa: E402

BIN = sys.argv[1]
VALGRIND = os.environ.get("RUNTIME_VALGRIND")
WRAP = ((VALGRIND, "-q", "--error-exitcode=99", "--leak-check=full",
         "--errors-for-leak-kinds=definite,indirect") if VALGRIND else ())
SLOW = 10 if VALGRIND else 1  # valgrind runs the nodes about 10-50x slower


def net(env=None, names=("n1", "n2")):
    n = Net({nid: [BIN] for nid in names}, env=env, wrapper=WRAP)
    n.init_all()
    return n


def closed_cleanly(n):
    for nid, (code, err) in n.close().items():
        assert code == 0, (nid, code, err[-3000:])
        assert "ERROR SUMMARY" not in err and "Sanitizer" not in err, err[-3000:]


@test
def two_nodes_call_each_other():
    n = net()
    a = n.send("n1", {"type": "call", "peer": "n2", "timeout_ms": 5000 * SLOW})
    b = n.send("n2", {"type": "call", "peer": "n1", "timeout_ms": 5000 * SLOW})
    ra, rb = n.reply_to(a), n.reply_to(b)
    assert ra["type"] == "call_ok" and ra["reply"]["type"] == "pong", ra
    assert rb["type"] == "call_ok" and rb["reply"]["type"] == "pong", rb
    # The calls carried msg_ids of the callers, and the replies named them.
    calls = [m for _, m, _ in n.journal if m["body"]["type"] == "ping"]
    pongs = [m for _, m, _ in n.journal if m["body"]["type"] == "pong"]
    assert len(calls) == 2 and len(pongs) == 2
    for c in calls:
        assert any(p["dest"] == c["src"] and p["body"]["in_reply_to"] == c["body"]["msg_id"]
                   for p in pongs), (c, pongs)
    # Every message a node wrote has a msg_id of its own, never repeated.
    for nid in ("n1", "n2"):
        ids = [m["body"]["msg_id"] for m in n.output_of(nid)]
        assert ids == sorted(set(ids)), ids
    closed_cleanly(n)


@test
def dropped_reply_times_out_and_is_freed():
    n = net()
    n.rules.append(lambda m: "drop" if m["body"]["type"] == "pong" else None)
    t0 = time.monotonic()
    r = n.call("n1", {"type": "call", "peer": "n2", "timeout_ms": 300})
    waited = time.monotonic() - t0
    assert r["type"] == "error" and r["code"] == 0, r
    assert 0.25 <= waited < 5 * SLOW, waited
    # Many more, all timing out: nothing piles up (valgrind checks the frees).
    ids = [n.send("n1", {"type": "call", "peer": "n2", "timeout_ms": 50}) for _ in range(50)]
    for i in ids:
        assert n.reply_to(i)["code"] == 0
    closed_cleanly(n)


@test
def reply_after_its_deadline_is_dropped():
    n = net()
    n.rules.append(lambda m: 0.6 * SLOW if m["body"]["type"] == "pong" else None)
    r = n.call("n1", {"type": "call", "peer": "n2", "timeout_ms": 100})
    assert r["type"] == "error" and r["code"] == 0, r
    before = len(n.output_of("n1"))
    n.run_for(1.2 * SLOW)  # the late pong reaches n1 in here
    delivered = [m for _, m, fate in n.journal if m["body"]["type"] == "pong" and
                 fate == "delivered"]
    assert len(delivered) == 1, n.journal
    assert len(n.output_of("n1")) == before, "n1 answered a late reply: %r" % n.output_of("n1")
    out = n.close()
    assert out["n1"][1].count("matches no request") == 1, out["n1"][1]


@test
def replies_are_never_answered():
    """Errors, init_ok and reply types from anyone, matching nothing: no
    output at all, and one stderr line per kind."""
    lines = []
    for i in range(30):
        for body in ({"type": "error", "code": 13, "text": "boom", "in_reply_to": i},
                     {"type": "init_ok", "in_reply_to": i},
                     {"type": "pong", "msg_id": 1000 + i, "in_reply_to": i},
                     {"type": "error", "code": 10, "in_reply_to": 5.5},
                     {"in_reply_to": i}):
            lines.append(json.dumps({"src": "n9", "dest": "n1", "body": body}))
    lines.append('{"src":"n9","dest":"n1","body":{"type":"error","in_reply_to":1,"text":"\\ud800"}}')
    replies, err, code = run_lines(BIN, lines)
    assert code == 0 and replies == [], replies
    assert err.count("matches no request") <= 5, err


@test
def unmatched_replies_of_many_types():
    """Thousands of reply types matching nothing: 16 are logged, then one
    line says the rest are not, and the node still answers. (The count of
    logged types once ran on past its 16 slots: a read past the array, and
    a crash after enough types.)"""
    lines = [json.dumps({"src": "n9", "dest": "n1", "body": {"type": "t%d" % i,
                                                             "in_reply_to": 5}})
             for i in range(3000)]
    lines.append(json.dumps({"src": "c1", "dest": "n1",
                             "body": {"type": "echo", "msg_id": 1, "echo": "still here"}}))
    replies, err, code = run_lines(BIN, lines)
    assert code == 0, (code, err[-400:])
    assert [r["body"].get("echo") for r in replies] == ["still here"], replies
    assert err.count("matches no request") == 16, err[-400:]
    assert err.count("further unmatched replies") == 1, err[-400:]


@test
def two_nodes_never_ping_pong_errors():
    """An error sent to a node that sent nothing: wired to another node, the
    exchange stops at once."""
    n = net()
    n.write("n1", json.dumps({"src": "n2", "dest": "n1",
                              "body": {"type": "error", "code": 10, "in_reply_to": 77}}))
    n.write("n1", json.dumps({"src": "n2", "dest": "n1",
                              "body": {"type": "bogus", "msg_id": 5}}))  # n1 answers error 10
    n.run_for(0.5 * SLOW)
    between = [m for _, m, _ in n.journal if m["src"] in ("n1", "n2") and
               m["dest"] in ("n1", "n2")]
    assert len(between) == 1 and between[0]["body"]["code"] == 10, between
    closed_cleanly(n)


@test
def timers_fire_while_no_input_arrives():
    n = net(names=("n1",))
    t0 = time.monotonic()
    # The early timer must be armed before the late one fires: on a loaded
    # machine (under valgrind above all) the second line can reach the node
    # 400 ms after the first.
    late_ms = 4000 if VALGRIND else 1000
    a = n.send("n1", {"type": "after", "ms": late_ms, "tag": "late"})
    b = n.send("n1", {"type": "after", "ms": 50, "tag": "early"})
    c = n.send("n1", {"type": "tick", "ms": 30, "count": 5})
    first = n.wait_client(lambda m: m["body"]["type"] in ("after_ok", "ticked"))
    assert first["body"]["in_reply_to"] == b and first["body"]["tag"] == "early", first
    tick = n.reply_to(c)
    assert tick["type"] == "ticked" and tick["tag"] == "5 ticks"
    late = n.reply_to(a)
    assert late["tag"] == "late" and time.monotonic() - t0 >= late_ms / 1000 - 0.01
    closed_cleanly(n)


@test
def one_way_messages_get_no_reply():
    n = net()
    assert n.call("n1", {"type": "notify", "peer": "n2"})["type"] == "notified"
    n.run_for(0.2 * SLOW)
    notes = [m for _, m, _ in n.journal if m["body"]["type"] == "note"]
    assert len(notes) == 1 and "msg_id" not in notes[0]["body"], notes
    assert n.call("n2", {"type": "get"})["notes"] == 1
    assert not [m for m in n.output_of("n2") if m["dest"] == "n1"], "n2 answered a note"
    closed_cleanly(n)


@test
def end_of_input_cancels_pending_calls():
    """A call whose peer never answers: at end of input its callback still
    runs (here: an error 14 to the client), and the node exits 0 at once."""
    n = net()
    n.rules.append(lambda m: "drop" if m["body"]["type"] == "ping" else None)
    mid = n.send("n1", {"type": "call", "peer": "n2", "timeout_ms": 60000})
    n.send("n1", {"type": "after", "ms": 60000, "tag": "never"})
    n.run_for(0.3 * SLOW)
    t0 = time.monotonic()
    out = n.close()
    assert time.monotonic() - t0 < 10 * SLOW
    assert out["n1"][0] == 0, out["n1"]
    r = [m for m in n.client_inbox if m["body"].get("in_reply_to") == mid]
    assert len(r) == 1 and r[0]["body"]["code"] == 14, n.client_inbox
    assert not [m for m in n.client_inbox if m["body"].get("tag") == "never"]


@test
def failed_commit_turns_replies_into_error_13_and_rolls_back():
    with tempfile.TemporaryDirectory() as d:
        fail = os.path.join(d, "fail")
        n = net(env={"RUNTIME_FAIL_COMMIT": fail}, names=("n1",))
        assert n.call("n1", {"type": "set", "value": 1})["type"] == "set_ok"
        open(fail, "w").close()
        r = n.call("n1", {"type": "set", "value": 2})
        assert r["type"] == "error" and r["code"] == 13, r
        os.remove(fail)
        got = n.call("n1", {"type": "get"})
        assert got["value"] == 1 and got["committed"] == 1, got
        assert n.call("n1", {"type": "set", "value": 3})["previous"] == 1
        assert n.call("n1", {"type": "get"})["committed"] == 3
        closed_cleanly(n)


@test
def fatal_init_exits_2_and_says_nothing():
    for first in ({"type": "init", "node_id": "n1", "node_ids": ["n1"]},
                  {"type": "ping"}):
        line = json.dumps({"src": "c", "dest": "n1", "body": dict(first, msg_id=1)})
        p = subprocess.run([*WRAP, BIN], input=(line + "\n" + line + "\n").encode(),
                           capture_output=True, timeout=60 * SLOW,
                           env=dict(os.environ, RUNTIME_FAIL_INIT="1"))
        assert p.returncode == 2 and p.stdout == b"", (p.returncode, p.stdout)
        assert b"refusing to start" in p.stderr


@test
def first_request_names_the_node_and_init_may_follow():
    lines = [json.dumps({"src": "c", "dest": "n7", "body": {"type": "ping", "msg_id": 1}}),
             json.dumps({"src": "c", "dest": "n7", "body": {"type": "init", "msg_id": 2,
                                                              "node_id": "n7",
                                                              "node_ids": ["n7"]}}),
             json.dumps({"src": "c", "body": {"type": "ping", "msg_id": 3}})]
    replies, err, code = run_lines(BIN, lines)
    assert code == 0 and [r["body"]["type"] for r in replies] == ["pong", "init_ok", "pong"]
    assert all(r["src"] == "n7" for r in replies), replies
    # Before init, a request without dest cannot say who answers: error 12.
    replies, _, _ = run_lines(BIN, [json.dumps({"src": "c", "body": {"type": "ping",
                                                                      "msg_id": 1}})])
    assert replies[0]["body"]["code"] == 12 and "dest" in replies[0]["body"]["text"]


run_all()
