#!/usr/bin/env python3
"""scripts/net checked against scripts/net_fake_node.py: the honest fake must
pass under every fault and attack, and each deliberately wrong fake (--bug)
must fail the property it breaks. This tests the harness and its checker,
not e2ee-node (whose roles run through scripts/net --scenario).

usage: test_net_harness.py [--full]
By default a quick set (about a minute): every fault at once, four attacks,
two bugs. --full (or SECURITOR_NET_FULL=1) runs every scenario and every bug
(several minutes). SECURITOR_ONLY=name runs the tests whose name contains it.
Run folders go to a temporary folder, kept (and named) when a test fails.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import run_all, test  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NET = os.path.join(ROOT, "scripts", "net.py")
FAKE = os.path.join(ROOT, "scripts", "net_fake_node.py")
FULL = "--full" in sys.argv or os.environ.get("SECURITOR_NET_FULL") == "1"
TMP = tempfile.mkdtemp(prefix="net-harness-")


def run(name, args, bug=None):
    """One harness run against the fake; returns (exit status, results, folder)."""
    out = os.path.join(TMP, name)
    cmd = "%s %s" % (sys.executable, FAKE) + (" --bug %s" % bug if bug else "")
    p = subprocess.run([sys.executable, NET, "--node-cmd", cmd, "--out", out] + args,
                       capture_output=True, text=True, timeout=600)
    try:
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
    except OSError:
        raise AssertionError("no results.json; stderr: %s" % p.stderr[-2000:])
    return p.returncode, res, out, p.stdout


def failed_props(res):
    return sorted(k for k, v in res["properties"].items() if not v["pass"])


def honest(name, args):
    code, res, out, stdout = run(name, args)
    bad = failed_props(res)
    assert code == 0 and not bad, "the honest fake failed %s (exit %d), kept in %s\n%s" % (
        bad, code, out, stdout[-3000:])
    sends = res["figures"]["sends"]
    assert sends["ok"] > 0, "no send was acknowledged"
    shutil.rmtree(out, ignore_errors=True)
    return res


def caught(name, bug, args, expected):
    """The fake with `bug` must fail every property in `expected`."""
    code, res, out, stdout = run(name, args, bug)
    bad = failed_props(res)
    missing = [e for e in expected if e not in bad]
    assert code == 1 and not missing, ("--bug %s: expected %s to fail, failed %s (exit %d), "
                                       "kept in %s" % (bug, expected, bad, code, out))
    shutil.rmtree(out, ignore_errors=True)


# --- the honest fake -------------------------------------------------------
@test
def honest_all_faults_at_once():
    res = honest("all", ["--scenario", "all", "--duration", "8"])
    f = res["figures"]["faults"]
    for k in ("lost", "dup", "kills", "partitions"):
        assert f.get(k), "the run had no %s: %r" % (k, f)


@test
def honest_attacks():
    attacks = [] if FULL else ["--attacks", "ghost-device,flip-byte,replay-fetch,revoked-fetch"]
    res = honest("attacks", ["--scenario", "attacks"] + attacks)
    played = [k for k in res["properties"] if k.startswith("attack:")]
    assert len(played) == (8 if FULL else 4), played


if FULL:
    for _sc in ("basic", "loss", "dup-reorder", "partition", "kill", "all"):
        def _t(sc=_sc):
            honest(sc, ["--scenario", sc])
        _t.__name__ = "honest_" + _sc.replace("-", "_")
        test(_t)


# --- deliberately wrong fakes ----------------------------------------------
@test
def bug_deliver_twice_breaks_exactly_once():
    caught("deliver-twice", "deliver-twice", ["--scenario", "basic", "--duration", "3"],
           ["exactly_once"])


@test
def bug_leak_plaintext_breaks_blind_backend():
    caught("leak-plaintext", "leak-plaintext", ["--scenario", "basic", "--duration", "3"],
           ["blind_backend", "blind_state"])


if FULL:
    BUGS = [
        ("drop-revoked", ["--scenario", "partition", "--churn", "1"], ["exactly_once"]),
        ("keep-revoked", ["--scenario", "basic"], ["revocation"]),
        ("partial-send", ["--scenario", "loss"], ["all_or_none"]),
        ("leak-key", ["--scenario", "basic", "--duration", "3"], ["blind_state"]),
        ("no-commit", ["--scenario", "kill", "--kill-every", "1", "--down-for", "0.5"],
         ["exactly_once"]),
        ("trust-directory", ["--scenario", "attacks", "--attacks", "ghost-device,rollback,swap-key"],
         ["attack:ghost-device", "attack:rollback", "attack:swap-key"]),
        ("trust-relay", ["--scenario", "attack-flip-byte"], ["attack:flip-byte"]),
        ("reuse-counter", ["--scenario", "attack-replay-fetch"], ["attack:replay-fetch"]),
        ("reuse-prekey", ["--scenario", "basic", "--duration", "3"], ["prekeys_once"]),
        ("reuse-msgid", ["--scenario", "kill", "--duration", "6"], ["msg_ids_unique"]),
        ("answer-replies", ["--scenario", "dup-reorder", "--duration", "4"],
         ["replies_not_answered"]),
    ]
    for _bug, _args, _exp in BUGS:
        def _t(bug=_bug, args=_args, exp=_exp):
            caught(bug, bug, args, exp)
        _t.__name__ = "bug_" + _bug.replace("-", "_")
        test(_t)


@test
def checker_alone_agrees():
    """net_check.py on a kept run folder gives the harness's verdict again."""
    code, res, out, _ = run("recheck", ["--scenario", "basic", "--duration", "2"], "deliver-twice")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "net_check.py"), out],
                       capture_output=True, text=True, timeout=300)
    with open(os.path.join(out, "results.json")) as f:
        again = json.load(f)
    assert p.returncode == code == 1, (p.returncode, code)
    assert failed_props(again) == failed_props(res)
    assert os.path.getsize(os.path.join(out, "messages.svg")) > 1000
    shutil.rmtree(out, ignore_errors=True)


# --- the checker on made-up journals (seconds) --------------------------------
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import net_check  # noqa: E402

TOKEN = "tk_abcdefghijklmnopqrst"
KEY = os.urandom(32)
KEYS = {"n0": KEY.hex(), "n1": os.urandom(32).hex(), "n2": os.urandom(32).hex()}


def b64(data, url=False):
    return (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()


def m(ts, src, dest, body, fate="d"):
    return {"k": "m", "ts": ts, "tr": ts + 0.001, "f": fate,
            "m": {"src": src, "dest": dest, "body": body}}


def send_op(t0, t1, text, rep, node="n2", user="alice"):
    return {"k": "op", "id": 1, "c": "c1", "n": node, "f": "send", "t0": t0, "t1": t1,
            "req": {"type": "send", "user": user, "to": "bob", "text": text, "msg_id": 1},
            "rep": rep}


def check_journal(name, records, state_dir=None, options=None, expect_all_ok=False):
    """net_check on a run folder holding meta + records (written as net.py does)."""
    out = os.path.join(TMP, name)
    os.makedirs(out, exist_ok=True)
    meta = {"k": "meta", "version": 1, "nodes": ["n0", "n1", "n2"], "directory": "n0",
            "relay": "n1", "device_nodes": ["n2"], "keys": KEYS, "state_dir": state_dir,
            "options": options or {}, "inject_base": 1 << 40}
    with open(os.path.join(out, "journal.jsonl"), "w") as f:
        for r in [meta] + records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    res = net_check.check(out, expect_all_ok=expect_all_ok)
    shutil.rmtree(out, ignore_errors=True)
    return res["properties"]


# each hides TOKEN (or the directory's key) in a string a node sends the relay
T = TOKEN.encode()
HIDDEN = {
    "raw": TOKEN,
    "base64": b64(T),
    "base64 without padding": b64(T).rstrip("="),
    "base64url without padding": b64(b"\xfb\xff" + T, url=True).rstrip("="),
    "base64 after a prefix": "v1:" + b64(T),
    "base64 of 2 bytes, then of the token": b64(b"ab") + b64(T),
    "0x hex": "0x" + T.hex(),
    "upper-case hex": T.hex().upper(),
    "JSON text with \\u escapes": '{"t": "\\u0074k_%s"}' % TOKEN[3:],
    "MIME base64, line-broken": base64.encodebytes(b"x" * 50 + T + b"y" * 60).decode(),
    "three layers of base64": b64(b64(b64(T).encode()).encode()),
    "hex inside base64": b64(T.hex().encode()),
    "key, base64url": b64(KEY, url=True).rstrip("="),
    "key, base64 at an offset": "zz" + b64(b"\0" + KEY),
}


@test
def checker_finds_encoded_secrets():
    needles = net_check.Needles(KEYS.values())
    cases = [(k, {"type": "x", "v": v}) for k, v in HIDDEN.items()]
    cases.append(("a dict key", {"type": "x", "d": {TOKEN: 1}}))
    for name, body in cases:
        found = []
        net_check.scan_value(body, needles, found, "body")
        assert any(d == TOKEN or w == "key" for w, _, d in found), "missed: %s" % name
        line = json.dumps(m(1.0, "n2", "n1", body), separators=(",", ":")).encode() + b"\n"
        assert needles.may_hold(line), "the pre-filter hides: %s" % name
    clean = {"type": "relay_fetch", "user": "alice", "signature": b64(os.urandom(64)),
             "ct": b64(os.urandom(300)), "message_id": "f1312cc2-aaf1-4233-96a0-0d895b3d81a6"}
    line = json.dumps(m(1.0, "n2", "n1", clean), separators=(",", ":")).encode() + b"\n"
    assert not needles.may_hold(line), "the pre-filter lets everything through"
    # through the journal: one violation per message
    recs = [send_op(0.5, 0.6, TOKEN, {"type": "sent", "message_id": "m1", "devices": 1})]
    recs += [m(1.0 + i, "n2", "n1", b) for i, (_, b) in enumerate(cases)]
    p = check_journal("blind", recs)["blind_backend"]
    assert not p["pass"] and p["violations"] >= len(cases), p


@test
def checker_searches_state_files():
    needles = net_check.Needles(KEYS.values())
    for data in (b64(T), b64(T).rstrip("="), b64(b"\xfb\xff" + T, url=True).rstrip("=")):
        found = net_check.scan_bytes(b"\x00\x01" + data.encode() + b"\x00", needles)
        assert any(d == TOKEN for _, _, d in found), "missed in a file: %r" % data
    recs = [send_op(0.5, 0.6, TOKEN, {"type": "sent", "message_id": "m1", "devices": 1})]
    sd = os.path.join(TMP, "state")
    os.makedirs(os.path.join(sd, "n0.d"))     # a folder named like the node: no crash
    os.makedirs(os.path.join(sd, "sub"))
    with open(os.path.join(sd, "n0.d", "rows"), "wb") as f:
        f.write(b"\x00" + b64(T).encode() + b"\x00")
    with open(os.path.join(sd, "sub", "n1.db"), "wb") as f:
        f.write(b"\x00clean\x00")
    p = check_journal("state-run", recs, sd)["blind_state"]
    assert not p["pass"] and p["checked"] == 2 and p["counterexamples"][0]["detail"] == TOKEN, p
    # a state folder without the relay's file (or without any) fails: nothing was searched
    os.remove(os.path.join(sd, "sub", "n1.db"))
    p = check_journal("state-run", recs, sd)["blind_state"]
    assert not p["pass"] and any("no state file of n1" in str(x) for x in p["counterexamples"]), p
    shutil.rmtree(sd)
    p = check_journal("state-run", recs, sd)["blind_state"]
    assert not p["pass"] and p["violations"] == 2, p


def _delivered(ts, mid, msg_id=7):
    return [m(ts, "n2", "n1", {"type": "relay_deliver", "msg_id": msg_id, "from_user": "alice",
                               "from_device": 1, "message_id": mid, "envelopes": []}),
            m(ts + 0.01, "n1", "n2", {"type": "relay_delivered", "msg_id": 900 + msg_id,
                                      "in_reply_to": msg_id, "message_id": mid})]


@test
def checker_refused_send_never_at_the_relay():
    refused = send_op(1.0, 1.2, "tk_aaaaaaaaaaaaaaaaaaaa", {"type": "error", "code": 22,
                                                           "text": "forged list"})
    # the device answers 22, then delivers the message long after its reply
    p = check_journal("refused", [refused] + _delivered(30.0, "m-late"))["accepted_not_refused"]
    assert not p["pass"], p
    ok = send_op(1.0, 1.2, "tk_aaaaaaaaaaaaaaaaaaaa", {"type": "sent", "message_id": "m-ok",
                                                      "devices": 1})
    p = check_journal("accepted", [ok] + _delivered(1.1, "m-ok"))["accepted_not_refused"]
    assert p["pass"] and p["checked"] == 1, p
    # with a send of unknown outcome beside the refused one, the message may be that one's
    lost = dict(send_op(2.0, 8.0, "tk_bbbbbbbbbbbbbbbbbbbb", None), id=2)
    p = check_journal("indefinite", [refused, lost] + _delivered(30.0, "m-x"))
    assert p["accepted_not_refused"]["pass"], p["accepted_not_refused"]


@test
def checker_all_ok_allows_what_a_revocation_makes_of_its_devices_requests():
    """Without faults every request must succeed, but a device whose
    revocation was invoked before its reply may be refused (22), and a send
    of it whose delivery had left when the relay refused it is indefinite
    (0, PROTOCOL.md §5.2). Any other error still fails all_ok. (A send that
    raced its own device's revocation failed net_basic once, in CI.)"""
    def op(f, i, t0, t1, req, rep, node="n2"):
        return {"k": "op", "id": i, "c": "c%d" % i, "n": node, "f": f, "t0": t0, "t1": t1,
                "req": dict(req, type=f, msg_id=i), "rep": rep}
    recs = [op("register", 1, 0.1, 0.2, {"user": "alice"},
               {"type": "registered", "user": "alice", "device_id": 2, "status": "active"}),
            op("revoke_device", 2, 2.0, 2.3, {"user": "alice", "device_id": 2},
               {"type": "device_revoked", "user": "alice", "devices": []}, node="n3")]

    def all_ok(*more):
        return check_journal("all-ok", recs + list(more), expect_all_ok=True)["all_ok"]
    zero = {"type": "error", "code": 0, "text": "revoked; a delivery may have been accepted"}
    p = all_ok(dict(send_op(1.9, 2.5, TOKEN, zero), id=3))
    assert p["pass"] and p["checked"] == 3, p
    p = all_ok(dict(send_op(1.9, 2.5, TOKEN, dict(zero, code=22)), id=3))
    assert p["pass"], p
    p = all_ok(dict(send_op(1.0, 1.5, TOKEN, zero), id=3))  # before the revocation
    assert not p["pass"] and p["violations"] == 1, p
    read = op("read", 3, 1.9, 2.5, {"user": "alice"}, zero)  # only a send may be indefinite
    p = all_ok(read)
    assert not p["pass"] and p["violations"] == 1, p


@test
def checker_revoked_fetch_needs_the_revocation():
    att = {"k": "attack", "name": "revoked-fetch", "fired": 1, "user": "alice", "device_id": 2,
           "node": "n2", "t_revoked": 5.0, "injected": [1 << 41], "read": {
               "type": "error", "code": 22, "text": "revoked"},
           "reply": {"type": "error", "code": 22, "text": "counter: not above the last one"}}
    p = check_journal("revoked", [att])["attack:revoked-fetch"]
    assert any("for its counter" in x.get("why", "") for x in p["counterexamples"]), p
    p = check_journal("revoked", [dict(att, injected=[], reply=None)])["attack:revoked-fetch"]
    assert any("was tested" in x.get("why", "") for x in p["counterexamples"]), p


BAD_BODIES = [{"type": "sent", "msg_id": 5, "in_reply_to": [1]},
              {"type": "sent", "msg_id": [5], "in_reply_to": 1},
              {"type": ["sent"], "msg_id": 6}, "a string", None]


@test
def checker_survives_malformed_messages():
    recs = [m(1.0 + i, "n2", "c1", b) for i, b in enumerate(BAD_BODIES)]
    recs += [m(9.0, "n2", "n1", {"type": "relay_fetch", "msg_id": 9, "user": ["alice"],
                                 "device_id": {}})]
    p = check_journal("malformed", recs)["wire"]
    assert not p["pass"] and p["violations"] >= len(BAD_BODIES), p


@test
def harness_survives_malformed_replies():
    import net as harness
    o = harness.parse_args(["--no-state", "--seed", "1", "--device-nodes", "1"])
    out = os.path.join(TMP, "malformed-net")
    os.makedirs(out)
    net = harness.Net(o, out, ["true"], {})
    net.jrec({"k": "meta", "version": 1, "nodes": net.node_ids, "directory": "n0",
              "relay": "n1", "device_nodes": net.device_nodes, "keys": net.keys,
              "state_dir": None, "options": {}})
    net.clients["c1"] = None
    net.watchers.append(lambda *a: None)   # the attacks' hooks look at node-to-node bodies
    for body in BAD_BODIES:
        raw = json.dumps({"src": "n2", "dest": "c1", "body": body}).encode()
        net._route(raw, "n2", "c1", 0.0)    # to a client (what stop() routes too)
        raw = json.dumps({"src": "n2", "dest": "n1", "body": body}).encode()
        net._route(raw, "n2", "n1", 0.0)    # to a node, under the hooks
    net.jf.close()
    res = net_check.check(out)
    p = res["properties"]["wire"]
    assert not p["pass"] and p["violations"] >= 2 * len(BAD_BODIES), p
    shutil.rmtree(out, ignore_errors=True)


@test
def bench_measures_latency_in_an_open_loop():
    """--bench's second phase offers sends at a set rate whatever the
    replies do: every send from a client of its own (a late reply holds no
    send back), as many as the rate makes, each delivered and timed."""
    rate, secs = 150.0, 2.0
    code, res, out, stdout = run("bench", ["--bench", "--duration", str(secs),
                                           "--paced-rate", str(rate)])
    assert code == 0 and not failed_props(res), (code, failed_props(res), out)
    paced = res["figures"]["bench"]["paced"]
    p0, p1 = res["figures"]["bench"]["paced_window"]
    n = paced["sends_in_window"]
    # Poisson arrivals: 300 expected, standard deviation about 17
    assert abs(n - rate * secs) < 6 * (rate * secs) ** 0.5, paced
    assert paced["delivered_in_window"] == n, paced
    assert paced["latency_ms"]["n"] == n * paced["envelopes_per_send"], paced
    assert paced["late_ms"]["n"] == n and paced["late_ms"]["p50"] >= 0, paced
    clients = []
    with open(os.path.join(out, "journal.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("k") == "op" and r.get("f") == "send" and p0 <= r.get("due", -1) <= p1:
                assert r["due"] <= r["t0"], r  # sent when due, or later: never before
                clients.append(r["c"])
    assert len(clients) == n and len(set(clients)) == n, (len(clients), len(set(clients)), n)
    assert "paced: 150 sends/s offered" in stdout, stdout[-2000:]
    # The disk's own pace, timed beside the nodes through both phases (a
    # write every 20 ms; at least half of them, whatever the machine's pace).
    probe = res["figures"]["bench"]["disk_probe_ms"]
    assert probe["n"] >= 2 * secs / 0.02 / 2 and 0 <= probe["p50"] <= probe["max"], probe
    assert 0 <= probe["over_50"] <= probe["n"] and "error" not in probe, probe
    assert "disk alone (64 KiB + fdatasync, 50/s)" in stdout, stdout[-2000:]
    # The CPU over the arrivals' span: how busy the cores were, the
    # harness's share, and each node thread's by role and name (the fake
    # has one thread, its main one: "reader").
    cpu = res["figures"]["bench"]["paced_cpu"]
    assert 0 < cpu["busy_share"] <= 1 and 0 <= cpu["steal_share"] < 1, cpu
    assert cpu["cores"] >= 1 and cpu["harness_s"] > 0, cpu
    assert set(cpu["nodes_s"]) == {"directory reader", "relay reader", "devices reader"}, cpu
    assert all(v >= 0 for v in cpu["nodes_s"].values()) and cpu["nodes_s"]["relay reader"] > 0, cpu
    assert "cores meanwhile" in stdout and "CPU per send by thread" in stdout, stdout[-2000:]
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    try:
        run_all()
    finally:
        if not os.listdir(TMP):
            os.rmdir(TMP)
