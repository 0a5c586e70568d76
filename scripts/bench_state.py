"""Durable state (PROTOCOL.md §4) against memory, in the same run (imported
by bench.py; `scripts/bench state`, also part of `all`).

Each workload runs on a node in memory and on a node with --state-dir, in
turns (memory, state, memory, state, ...), three times each: the VM's pace
moves by up to 45% within minutes, so the figures that count are the ratios
between runs minutes apart, and the best of three of each side.

Pipelined (a batch of requests in flight, as a harness sends them; group
commit: one transaction per batch the node answers):
  e2ee one-way      send + receive on one chain (bench_e2ee's workload)
  e2ee setups       bundle, X3DH, the first (prekey) message, on 100 pairs
  symmetric rotate  rotate_key, a trim of the 1,000 versions every 1,000
                    (the ring holds at most 1,024)
  symmetric encrypt / decrypt, 14 bytes (they change no state: no row)
One request at a time (the next is sent once the reply is read: every
request that changes something pays its own fsync):
  symmetric rotate_key, symmetric encrypt, e2ee one-way message.

The e2ee users and sessions are made in a first process (untimed); with
state, the measured process opens that state (an echo request first, so
the opening is not timed) and the counts below are its own. The states live
on the disk the machine has (not /dev/shm: its fsync is free).

commits and rows: what the measured process wrote, from its own counters
(SECURITOR_STATE_STATS=1 makes a node print "state: C commits, R rows, T ms
committing" on stderr at exit; durable.h). The opening echo's msg_id reservation is one of
the commits. commits/s is commits over the measured seconds.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import bench_e2ee
from bench_e2ee import Driver

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
RUNS = 3
ONE_WAY = 20_000
PAIRS, SETUP_ROUNDS = 100, 5
ROTATE_BLOCKS, ROTATE_BLOCK = 10, 1000
SMALL = 300_000
SEQUENTIAL = 1000
E2EE_TARGET = 0.60


def node_env(state):
    env = {"SECURITOR_KEY": KEY}
    if state:
        env["SECURITOR_STATE_STATS"] = "1"
    return env


def counters(err):
    m = re.search(r"state: (\d+) commits, (\d+) rows", err)
    assert m, "no state counters on stderr: %r" % err[-500:]
    return int(m.group(1)), int(m.group(2))


class Run:
    """One measured run: seconds, operations, and (with state) what the
    process committed."""

    def __init__(self, ops, seconds, err=None):
        self.ops, self.seconds = ops, seconds
        self.rate = ops / seconds
        self.commits = self.rows = None
        if err is not None:
            self.commits, self.rows = counters(err)


# ---- e2ee-node -------------------------------------------------------------------

def e2ee_driver(binary, state):
    argv = [binary] + (["--state-dir", state] if state else [])
    return Driver(argv, stderr=subprocess.PIPE if state else subprocess.DEVNULL,
                  env=node_env(state))


def e2ee_close(d):
    d.p.stdin.close()
    err = d.p.stderr.read().decode(errors="replace") if d.p.stderr else ""
    assert d.p.wait() == 0, err[-2000:]
    return err


def e2ee_prepared(binary, state, prepare):
    """A driver whose users (and sessions) prepare() made; with state, made
    in a first process and opened (untimed) by this one."""
    d = e2ee_driver(binary, state)
    prepare(d)
    if not state:
        return d
    e2ee_close(d)
    d = e2ee_driver(binary, state)
    assert d.call("bench", {"type": "echo", "echo": "open"})["type"] == "echo_ok"
    return d


def e2ee_one_way(binary, state):
    d = e2ee_prepared(binary, state, bench_e2ee.prepare_one_way)
    n, secs, _ = bench_e2ee.timed(d, bench_e2ee.node_one_way, ONE_WAY)
    return Run(n, secs, e2ee_close(d) if state else None)


def e2ee_setups(binary, state):
    d = e2ee_prepared(binary, state, lambda d: bench_e2ee.prepare_pairs(d, PAIRS))
    n, secs, _ = bench_e2ee.timed(d, bench_e2ee.node_setups, PAIRS, SETUP_ROUNDS)
    return Run(n, secs, e2ee_close(d) if state else None)


def e2ee_sequential(binary, state):
    """One message at a time: alice sends, bob receives, each request
    waiting for the reply before it (so each pays its own commit)."""
    d = e2ee_prepared(binary, state, bench_e2ee.prepare_one_way)
    t0 = time.perf_counter()
    for _ in range(SEQUENTIAL // 2):
        sent = d.call("alice", {"type": "send_message", "recipient": "bob",
                                "plaintext": bench_e2ee.PLAINTEXT})
        got = d.call("bob", {"type": "receive_message", "sender": "alice",
                             "encrypted_message": sent["encrypted_message"]})
        assert got["type"] == "message_decrypted", got
    secs = time.perf_counter() - t0
    return Run(SEQUENTIAL, secs, e2ee_close(d) if state else None)


# ---- symmetric-node ----------------------------------------------------------------

def line(body):
    return json.dumps({"src": "c", "dest": "n1", "body": body}, separators=(",", ":"))


def sym_pipelined(binary, path, n, replies, state):
    """cat FILE | node | wc -l, as bench.py drives it; every reply must come."""
    argv = [binary] + (["--state-dir", state] if state else [])
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        feed = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
        p = subprocess.Popen(argv, stdin=feed.stdout, stdout=subprocess.PIPE, stderr=err,
                             env=dict(os.environ, **node_env(state)))
        count = subprocess.Popen(["wc", "-l"], stdin=p.stdout, stdout=subprocess.PIPE)
        feed.stdout.close(), p.stdout.close()
        got = int(count.communicate()[0])
        status = p.wait()
        secs = time.perf_counter() - t0
        err.seek(0)
        text = err.read().decode(errors="replace")
    assert status == 0 and feed.wait() == 0, text[-2000:]
    assert got == replies, "%d replies of %d" % (got, replies)
    return Run(n, secs, text if state else None)


def sym_sequential(binary, body, state):
    argv = [binary] + (["--state-dir", state] if state else [])
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE if state else subprocess.DEVNULL,
                         env=dict(os.environ, **node_env(state)))

    def call(b):
        p.stdin.write((line(b) + "\n").encode())
        p.stdin.flush()
        return json.loads(p.stdout.readline())["body"]

    assert call({"type": "init", "msg_id": 0, "node_id": "n1", "node_ids": ["n1"]})["type"] \
        == "init_ok"
    t0 = time.perf_counter()
    for i in range(SEQUENTIAL):
        r = call(dict(body, msg_id=i + 1))
        assert r["type"] != "error", r
    secs = time.perf_counter() - t0
    p.stdin.close()
    err = p.stderr.read().decode(errors="replace") if state else None
    assert p.wait() == 0, err
    return Run(SEQUENTIAL, secs, err)


def sym_inputs(binary, tmp):
    """The input files: rotations with trims, encrypts, and decrypts of
    those encrypts (key 1 is the given key, with or without state)."""
    init = line({"type": "init", "msg_id": 0, "node_id": "n1", "node_ids": ["n1"]})
    rot = os.path.join(tmp, "rotate")
    with open(rot, "w") as f:
        f.write(init + "\n")
        mid = 1
        for b in range(ROTATE_BLOCKS):
            for _ in range(ROTATE_BLOCK):
                f.write(line({"type": "rotate_key", "msg_id": mid}) + "\n")
                mid += 1
            top = 1 + (b + 1) * ROTATE_BLOCK
            f.write(line({"type": "set_min_decryption_version", "msg_id": mid, "key_id": top})
                    + "\n")
            f.write(line({"type": "trim_keys", "msg_id": mid + 1}) + "\n")
            mid += 2
    enc = os.path.join(tmp, "encrypt")
    with open(enc, "w") as f:
        f.write(init + "\n")
        for i in range(SMALL):
            f.write(line({"type": "encrypt", "msg_id": i + 1, "plaintext": "Secret message"})
                    + "\n")
    dec = os.path.join(tmp, "decrypt")
    with open(enc, "rb") as fin, open(dec, "w") as f:
        out = subprocess.run([binary], stdin=fin, capture_output=True, check=True,
                             env=dict(os.environ, SECURITOR_KEY=KEY)).stdout
        f.write(init + "\n")
        for i, l in enumerate(out.splitlines()[1:]):
            b = json.loads(l)["body"]
            f.write(line({"type": "decrypt", "msg_id": i + 1, "iv": b["iv"],
                          "encryptedData": b["encryptedData"], "authTag": b["authTag"],
                          "key_id": 1}) + "\n")
    return rot, enc, dec


# ---- instructions (callgrind), which do not move with the VM's pace ----------------

def callgrind(argv, stdin_path, env):
    with open(stdin_path, "rb") as fin:
        err = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
                             + argv, stdin=fin, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=dict(os.environ, **env)).stderr
    return int(re.search(rb"Collected : (\d+)", err).group(1))


def sym_instructions(binary, path, k, disk):
    """Instructions per request over the first k requests of path, in
    memory and with a new state: a run of init alone is subtracted (start-up,
    the state's creation, exit)."""
    head, init = path + ".head", path + ".init"
    with open(path, "rb") as f, open(head, "wb") as g, open(init, "wb") as h:
        first = f.readline()
        g.write(first), h.write(first)
        for _ in range(k):
            g.write(f.readline())
    out = []
    for state in (False, True):
        counts = []
        for p in (init, head):
            d = tempfile.mkdtemp(dir=disk) if state else None
            counts.append(callgrind([binary] + (["--state-dir", d] if d else []), p,
                                    node_env(d)))
            if d:
                shutil.rmtree(d)
        out.append((counts[1] - counts[0]) / k)
    os.unlink(head), os.unlink(init)
    return out


def e2ee_instructions(binary, disk, k_pairs=10, rounds=3, one_way=2000):
    """Instructions per setup and per one-way message, in memory and with
    state, both threads: the users and sessions are made first (with state,
    in a process of their own), then echo markers around each phase make
    callgrind dump what it counted in between (--dump-before on the echo
    handler, as bench_e2ee does)."""
    out = {}
    for state in (False, True):
        d = tempfile.mkdtemp(dir=disk) if state else None
        argv = [binary] + (["--state-dir", d] if d else [])
        cg = os.path.join(disk, "cg.out")

        def prepare(drv):
            bench_e2ee.prepare_pairs(drv, k_pairs)
            bench_e2ee.prepare_one_way(drv)
        if state:
            first = Driver(argv, env=node_env(d))
            prepare(first)
            first.close()
        drv = Driver(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + cg,
                      "--dump-before=*echo*"] + argv, env={"SECURITOR_KEY": KEY})
        if not state:
            prepare(drv)

        def mark():
            assert drv.call("bench", {"type": "echo", "echo": "mark"})["type"] == "echo_ok"
        mark()  # dump 1: everything before (with state: its opening)
        mark()  # dump 2: the marker's own cost
        bench_e2ee.node_setups(drv, k_pairs, rounds)
        mark()  # dump 3
        bench_e2ee.node_one_way(drv, one_way)
        mark()  # dump 4
        assert drv.close() == 0
        totals = {}
        for i in (2, 3, 4):
            with open("%s.%d" % (cg, i)) as f:
                totals[i] = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
        for name in os.listdir(disk):
            if name.startswith("cg.out"):
                os.unlink(os.path.join(disk, name))
        if d:
            shutil.rmtree(d)
        out[state] = {"e2ee session setups": (totals[3] - totals[2]) / (k_pairs * rounds),
                      "e2ee one-way messages": (totals[4] - totals[2]) / one_way}
    return {label: (out[False][label], out[True][label]) for label in out[False]}


# ---- the run ------------------------------------------------------------------------

def run_all(build):
    e2ee = os.path.join(build, "e2ee-node")
    sym = os.path.join(build, "symmetric-node")
    # States on the real disk, beside the build (fsync must cost what it costs).
    disk = tempfile.mkdtemp(prefix="bench-state-", dir=build)
    shm = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        rot, enc, dec = sym_inputs(sym, shm)
        rotations = ROTATE_BLOCKS * ROTATE_BLOCK
        workloads = [
            ("pipelined", "e2ee one-way messages", "message", lambda s: e2ee_one_way(e2ee, s)),
            ("pipelined", "e2ee session setups", "setup", lambda s: e2ee_setups(e2ee, s)),
            ("pipelined", "symmetric rotate_key", "rotation",
             lambda s: sym_pipelined(sym, rot, rotations, rotations + 2 * ROTATE_BLOCKS + 1, s)),
            ("pipelined", "symmetric encrypt 14 B", "message",
             lambda s: sym_pipelined(sym, enc, SMALL, SMALL + 1, s)),
            ("pipelined", "symmetric decrypt 14 B", "message",
             lambda s: sym_pipelined(sym, dec, SMALL, SMALL + 1, s)),
            ("one at a time", "symmetric rotate_key", "rotation",
             lambda s: sym_sequential(sym, {"type": "rotate_key"}, s)),
            ("one at a time", "symmetric encrypt 14 B", "message",
             lambda s: sym_sequential(sym, {"type": "encrypt", "plaintext": "Secret message"}, s)),
            ("one at a time", "e2ee one-way messages", "request",
             lambda s: e2ee_sequential(e2ee, s)),
        ]
        results = {}
        for _, label, _, fn in workloads:
            mem, st = [], []
            for _ in range(RUNS):
                mem.append(fn(None))
                d = tempfile.mkdtemp(dir=disk)
                st.append(fn(d))
                shutil.rmtree(d)
            results[label, fn] = (mem, st)
        instructions = {}
        if shutil.which("valgrind"):
            instructions = e2ee_instructions(e2ee, disk)
            instructions["symmetric encrypt 14 B"] = sym_instructions(sym, enc, 20_000, disk)
            instructions["symmetric decrypt 14 B"] = sym_instructions(sym, dec, 20_000, disk)
            instructions["symmetric rotate_key"] = sym_instructions(sym, rot, 5_000, disk)
        report(workloads, results, instructions)
    finally:
        shutil.rmtree(disk, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


def report(workloads, results, instructions):
    print("\ndurable state (--state-dir, on disk) against memory, the same workloads in turns,\n"
          "best of %d each; ratio = state's best / memory's best; the spread is memory's own\n"
          "(its slowest run against its best: the noise of this run)" % RUNS)
    row = "  %-14s %-23s %-9s %11s %11s %6s %7s %10s %11s"
    print(row % ("", "workload", "per", "memory", "state", "ratio", "spread", "commits/s",
                 "rows/commit"))
    verdicts = []
    for group, label, unit, fn in workloads:
        mem, st = results[label, fn]
        bm = max(mem, key=lambda r: r.rate)
        bs = max(st, key=lambda r: r.rate)
        ratio = bs.rate / bm.rate
        spread = 1 - min(r.rate for r in mem) / bm.rate
        print(row % (group, label, unit, "{:,.0f}/s".format(bm.rate), "{:,.0f}/s".format(bs.rate),
                     "%.2f" % ratio, "%.0f%%" % (100 * spread),
                     "{:,.0f}".format(bs.commits / bs.seconds),
                     "%.1f" % (bs.rows / max(bs.commits, 1))))
        if group == "pipelined" and label.startswith("e2ee"):
            verdicts.append("%s with state >= %.0f%% of memory: %.0f%% (%s)" % (
                label, 100 * E2EE_TARGET, 100 * ratio, "met" if ratio >= E2EE_TARGET else
                "not met"))
        if group == "pipelined" and label in ("symmetric encrypt 14 B", "symmetric decrypt 14 B"):
            # Unchanged within noise: no further below memory's best than
            # memory's own runs fell (and at least 5%).
            ok = ratio >= 1 - max(spread, 0.05)
            verdicts.append("%s unchanged within noise: %.2f, noise %.0f%% (%s)" % (
                label, ratio, 100 * max(spread, 0.05), "met" if ok else "not met"))
    print("  state's runs, each: " + "; ".join(
        "%s %s" % (label.replace("symmetric ", "sym ").replace(" messages", ""),
                   "/".join("{:,.0f}".format(r.rate) for r in results[label, fn][1]))
        for group, label, _, fn in workloads if group == "pipelined"))
    print("  targets (issue 10):")
    for v in verdicts:
        print("    " + v)
    print("  commits and rows are the measured process's own (SECURITOR_STATE_STATS=1), the\n"
          "  opening echo's msg_id reservation included; encrypt and decrypt change no state:\n"
          "  their commits are the msg_id reservations (one per 524,288 replies) and, for the\n"
          "  symmetric rows, the new state's first (key 1 and the ring).")
    if not instructions:
        print("  (no instruction counts: valgrind is missing)")
        return
    print("  instructions per operation (callgrind; the node's own, both threads; the kernel's\n"
          "  work for write and fsync is not counted), pipelined:")
    for label, (mem, st) in instructions.items():
        print("    %-24s memory %11s  state %11s  %+.1f%%" % (
            label, "{:,.0f}".format(mem), "{:,.0f}".format(st), 100 * (st / mem - 1)))
