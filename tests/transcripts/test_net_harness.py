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


if __name__ == "__main__":
    try:
        run_all()
    finally:
        if not os.listdir(TMP):
            os.rmdir(TMP)
