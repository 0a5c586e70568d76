#!/usr/bin/env python3
"""net - a small Maelstrom for the blind backend (PROTOCOL.md §5).

It starts node processes n0 (the directory), n1 (the relay) and n2... (device
hosts), all the same binary with --directory n0 --relay n1 --state-dir DIR
--key-file F, sends each `init` as Maelstrom does, and routes every line a
node writes by its `dest`: to that node's stdin, or to one of the harness's
clients (c1, c2, ...). One thread routes, in one poll loop (selectors; --bench
adds a thread that times the disk): node stdouts are read as they become
readable, stdins are written without blocking, and every message in flight
waits in a heap of due times (latency, jitter, reordering, duplicates).
Clients are coroutines, like Maelstrom's: each has one request outstanding
and waits for its reply or a timeout.

Everything routed is journaled (RUN/journal.jsonl): each message with the time
it was written, the time it was delivered and its fate; each client operation
with its request, reply and times; each fault and attack. net_check.py reads
the journal and writes results.json and messages.svg.

Faults, on their own or together: loss, duplication, reordering, partitions
that heal, kill -9 of any node restarted on its state after a delay. Faults
touch node-to-node messages only; client messages get latency but are never
lost or duplicated (a client's lost request would only look like a timeout,
and a duplicated `send` would be a second send). A restarted process gets
`init` again (Maelstrom never restarts a node; a real restart needs its id).

    scripts/net [options]                 a run (see --help)
    scripts/net --scenario NAME           a short seeded scenario (--list)
    scripts/net --bench                   the benchmark
    scripts/net_check.py RUN_DIR          check a run's journal again
"""
import argparse
import base64
import gc
import heapq
import itertools
import json
import os
import random
import re
import resource
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time

import net_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRECTORY, RELAY = "n0", "n1"
HARNESS = "c0"              # the id init comes from
INDEFINITE = (0, 13)        # Maelstrom: timeout and crash may or may not have happened
ATTACKS = ("ghost-device", "rollback", "swap-key", "flip-byte", "replay-envelope",
           "misaddress", "replay-fetch", "revoked-fetch")
INJECT_BASE = 9_000_000_000_000   # msg_ids of injected messages: far above any node's own

# Each scenario is a set of option defaults (flags given still win); all are
# seeded and take well under a minute with the real node.
COMMON = dict(seed=7, device_nodes=3, users=4, devices_per_user=2, clients=6, latency=1.0,
              jitter=2.0, duration=8.0, churn=2.5)
SCENARIOS = {
    "basic": dict(COMMON, expect_all_ok=True),
    "loss": dict(COMMON, loss=0.15),
    "dup-reorder": dict(COMMON, dup=0.2, reorder=0.3, reorder_ms=60.0),
    "partition": dict(COMMON, partition=True, duration=10.0, partition_every=2.0,
                      partition_for=1.5),
    "kill": dict(COMMON, kill=True, duration=12.0, kill_every=2.5, down_for=1.0),
    # kill -9 a device host right after it answers `sent`: a reply that left
    # before its batch's commit must still hold (exactly once, all or none)
    "kill-on-sent": dict(COMMON, kill=True, kill_on="sent", duration=10.0, kill_every=1.5,
                         down_for=1.0),
    "all": dict(COMMON, loss=0.08, dup=0.1, reorder=0.2, reorder_ms=60.0, partition=True,
                kill=True, duration=14.0, kill_every=3.0, down_for=1.0),
    "attacks": dict(seed=7, device_nodes=3, latency=1.0, jitter=1.0, attacks=",".join(ATTACKS)),
}
for _a in ATTACKS:
    SCENARIOS["attack-" + _a] = dict(SCENARIOS["attacks"], attacks=_a)
DEFAULTS = dict(seed=None, device_nodes=3, users=4, devices_per_user=2, clients=6, latency=0.0,
                jitter=0.0, duration=10.0, churn=0.0, loss=0.0, dup=0.0, reorder=0.0,
                reorder_ms=50.0, partition=False, partition_every=3.0, partition_for=1.5,
                kill=False, kill_on="", kill_every=3.0, down_for=1.0, max_down=1, timeout=6.0,
                settle=3.0, settle_max=25.0, rate=0.0, read_fraction=0.2, attacks="",
                expect_all_ok=False, diagram_max=2000, state=True, paced_rate=0.0)


def now_wall():
    return time.strftime("%Y%m%d-%H%M%S")


# =========================================================================
# Processes and routing
# =========================================================================
class Proc:
    """One node id: its current process (if any) and its pipes."""
    __slots__ = ("nid", "popen", "fd_in", "fd_out", "rbuf", "wbuf", "wreg", "alive",
                 "incarnation", "killed")

    def __init__(self, nid):
        self.nid, self.popen, self.fd_in, self.fd_out = nid, None, -1, -1
        self.rbuf, self.wbuf, self.wreg, self.alive = [], [], False, False
        self.incarnation, self.killed = 0, False


class Op:
    __slots__ = ("id", "cid", "node", "mid", "body", "t0", "t1", "rep", "tag", "due")


class Client:
    __slots__ = ("cid", "gen", "next_id", "done", "result")

    def __init__(self, cid, gen):
        self.cid, self.gen, self.next_id, self.done, self.result = cid, gen, 1, False, None


def call(node, body, tag=None, timeout=None, due=None):
    """Yielded by a client: sends body to node; the yield returns the reply
    body, or None when none came within the timeout. due: when an open
    loop meant to send it (journaled; its latency counts from then)."""
    return ("call", node, body, tag, timeout, due)


def sleep(seconds):
    return ("sleep", seconds)


def _fast_head(line):
    """(src, dest) of a line shaped {"src":"..","dest":"..",...}, else None
    (then the line is parsed in full)."""
    if not line.startswith(b'{"src":"'):
        return None
    i = line.find(b'"', 8)
    if i < 0 or not line.startswith(b',"dest":"', i + 1):
        return None
    j = i + 10
    k = line.find(b'"', j)
    if k < 0:
        return None
    src, dest = line[8:i], line[j:k]
    if b"\\" in src or b"\\" in dest:
        return None
    return src.decode(), dest.decode()


class Net:
    """The network: processes, routing, faults, clients, the journal."""

    def __init__(self, o, run_dir, argv, env):
        self.o = o
        self.run_dir = run_dir
        self.argv, self.env = argv, env
        self.rng = random.Random(o.seed)
        self.sel = selectors.DefaultSelector()
        self.heap = []
        self.seq = itertools.count()
        self.t0 = time.monotonic()
        self.node_ids = [DIRECTORY, RELAY] + ["n%d" % i for i in range(2, 2 + o.device_nodes)]
        self.device_nodes = self.node_ids[2:]
        self.backend = {DIRECTORY, RELAY}
        self.procs = {nid: Proc(nid) for nid in self.node_ids}
        self.clients = {}
        self.next_client = 1
        self.pending = {}             # (cid, msg_id) -> Op
        self.next_op = 1
        self.dirty = set()
        self.faults_on = False
        self.groups = None            # nid -> partition group, while partitioned
        self.tampers = []             # fn(src, dest, body) -> new body or None
        self.watchers = []            # fn(src, dest, raw, ts) on every node-to-node message
        self.holds = []               # fn(src, dest, raw) -> True: dropped in flight ("held")
        self.injected = {}            # (node, msg_id) -> fn(reply body)
        self.next_inject = INJECT_BASE
        self.stopping = False
        self.kill_trigger = None  # (node, b'"type":"T"', fn(nid)): nemesis's --kill-on
        self.stop_codes = {}
        self.started = False          # after every node's first init_ok
        self.early_exit = set()
        self.counts = {"lost": 0, "dup": 0, "partitioned": 0, "down": 0, "kills": 0,
                       "restarts": 0, "partitions": 0, "tampered": 0, "injected": 0}
        self.jf = open(os.path.join(run_dir, "journal.jsonl"), "wb", buffering=1 << 20)
        self.init_ok = set()
        self.keys = {}
        os.makedirs(os.path.join(run_dir, "keys"), exist_ok=True)
        os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
        for nid in self.node_ids:
            key = os.urandom(32)
            self.keys[nid] = key.hex()
            path = os.path.join(run_dir, "keys", nid + ".key")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, key.hex().encode() + b"\n")
            os.close(fd)

    def now(self):
        return time.monotonic() - self.t0

    # --- journal ---------------------------------------------------------
    def jrec(self, rec):
        rec.setdefault("t", round(self.now(), 6))
        self.jf.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")

    def event(self, e, **kw):
        self.jrec(dict({"k": "ev", "e": e}, **kw))

    def _jmsg(self, ts, tr, fate, raw, orig=None):
        if orig is None:
            self.jf.write(b'{"k":"m","ts":%.6f,"tr":%s,"f":"%s","m":%s}\n'
                          % (ts, b"%.6f" % tr if tr is not None else b"null", fate, raw))
        else:
            self.jf.write(b'{"k":"m","ts":%.6f,"tr":%s,"f":"%s","o":%s,"m":%s}\n'
                          % (ts, b"%.6f" % tr if tr is not None else b"null", fate, orig, raw))

    # --- processes -------------------------------------------------------
    def cmd_for(self, nid):
        argv = list(self.argv) + ["--directory", DIRECTORY, "--relay", RELAY]
        if self.o.state:
            argv += ["--state-dir", os.path.join(self.run_dir, "state"),
                     "--key-file", os.path.join(self.run_dir, "keys", nid + ".key")]
        return argv

    def start(self, nid):
        p = self.procs[nid]
        p.incarnation += 1
        log = open(os.path.join(self.run_dir, "logs", "%s.%d.stderr" % (nid, p.incarnation)), "wb")
        p.popen = subprocess.Popen(self.cmd_for(nid), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, env=self.env)
        log.close()
        p.fd_in, p.fd_out = p.popen.stdin.fileno(), p.popen.stdout.fileno()
        os.set_blocking(p.fd_in, False)
        os.set_blocking(p.fd_out, False)
        p.rbuf, p.wbuf, p.wreg, p.alive, p.killed = [], [], False, True, False
        self.sel.register(p.fd_out, selectors.EVENT_READ, ("r", p))
        self.event("start", node=nid, pid=p.popen.pid, inc=p.incarnation)
        body = {"type": "init", "msg_id": self.next_inject, "node_id": nid,
                "node_ids": list(self.node_ids)}
        self.next_inject += 1
        raw = json.dumps({"src": HARNESS, "dest": nid, "body": body},
                         separators=(",", ":")).encode()
        self._route(raw, HARNESS, nid, self.now())

    def _close(self, p):
        if p.wreg:
            self.sel.unregister(p.fd_in)
            p.wreg = False
        try:
            self.sel.unregister(p.fd_out)
        except (KeyError, ValueError):
            pass
        for f in (p.popen.stdin, p.popen.stdout):
            try:
                f.close()
            except OSError:
                pass
        p.alive, p.wbuf, p.fd_in = False, [], -1

    def _drain(self, p):
        """Routes what a dead process wrote before it died (it was sent)."""
        while True:
            try:
                data = os.read(p.fd_out, 1 << 18)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self._lines(p, data)
        if p.rbuf:
            self.event("torn-line", node=p.nid, bytes=sum(map(len, p.rbuf)))
            p.rbuf = []

    def kill(self, nid):
        p = self.procs[nid]
        if not p.alive:
            return
        p.killed = True
        os.kill(p.popen.pid, signal.SIGKILL)
        p.popen.wait()
        self.event("kill", node=nid, inc=p.incarnation)
        self.counts["kills"] += 1
        self._drain(p)
        self._close(p)

    def restart(self, nid):
        if self.procs[nid].alive or self.stopping:
            return
        self.counts["restarts"] += 1
        self.event("restart", node=nid)
        self.start(nid)

    def _eof(self, p):
        """A node closed its stdout on its own: it exited (or crashed)."""
        self._drain(p)
        try:
            code = p.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            code = p.popen.wait()
        self._close(p)
        if self.stopping:
            self.stop_codes[p.nid] = code
            self.event("stop", node=p.nid, inc=p.incarnation, code=code)
        else:
            self.event("exit", node=p.nid, inc=p.incarnation, code=code)
            sys.stderr.write("net: node %s exited by itself with status %s (see logs/%s.%d.stderr)\n"
                             % (p.nid, code, p.nid, p.incarnation))
            if self.started:
                self.after(self.o.down_for, self.restart, p.nid)
            else:
                self.early_exit.add(p.nid)

    # --- the loop --------------------------------------------------------
    def after(self, seconds, fn, *args):
        heapq.heappush(self.heap, (time.monotonic() + seconds, next(self.seq), fn, args))

    def poll(self, max_wait):
        heap = self.heap
        t = time.monotonic()
        while heap and heap[0][0] <= t:
            _, _, fn, args = heapq.heappop(heap)
            fn(*args)
        self._flush()
        wait = max_wait
        if heap:
            wait = min(wait, max(0.0, heap[0][0] - time.monotonic()))
        for key, _ in self.sel.select(wait):
            kind, p = key.data
            if kind == "r":
                self._read(p)
            else:
                self.dirty.add(p)
        self._flush()

    def run_until(self, cond, timeout):
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(min(left, 0.1))
        return True

    def run_for(self, seconds):
        self.run_until(lambda: False, seconds)

    def _read(self, p):
        try:
            data = os.read(p.fd_out, 1 << 18)
        except BlockingIOError:
            return
        if not data:
            return self._eof(p)
        self._lines(p, data)

    def _lines(self, p, data):
        if b"\n" not in data:
            p.rbuf.append(data)     # a long line: joined once, when it ends
            return
        if p.rbuf:
            data = b"".join(p.rbuf) + data
        lines = data.split(b"\n")
        tail = lines.pop()
        p.rbuf = [tail] if tail else []
        ts = self.now()
        nid = p.nid
        for line in lines:
            if not line:
                continue
            head = _fast_head(line)
            if head is None:
                try:
                    msg = json.loads(line)
                    head = (msg["src"], msg["dest"])
                    if not (isinstance(head[0], str) and isinstance(head[1], str)):
                        raise TypeError
                    line = json.dumps(msg, separators=(",", ":")).encode()
                except (ValueError, KeyError, TypeError):
                    self.jrec({"k": "bad", "node": nid, "line": line[:2000].decode(errors="replace")})
                    continue
            if head[0] != nid:
                self.jrec({"k": "bad", "node": nid, "why": "src is not the node's id",
                           "line": line[:2000].decode(errors="replace")})
            self._route(line, head[0], head[1], ts)
            if self.kill_trigger and self.kill_trigger[0] == nid and self.kill_trigger[1] in line:
                fire, self.kill_trigger = self.kill_trigger[2], None
                self.after(0, fire, nid)  # once its other lines are routed

    def _flush(self):
        if not self.dirty:
            return
        for p in self.dirty:
            if not p.wbuf:
                continue
            if not p.alive or p.fd_in < 0:
                p.wbuf = []
                continue
            data = b"".join(p.wbuf) if len(p.wbuf) > 1 else p.wbuf[0]
            try:
                n = os.write(p.fd_in, data)
            except BlockingIOError:
                n = 0
            except OSError:
                n = len(data)   # the node is gone: its stdout's end says so
            if n < len(data):
                p.wbuf = [data[n:]]
                if not p.wreg:
                    self.sel.register(p.fd_in, selectors.EVENT_WRITE, ("w", p))
                    p.wreg = True
            else:
                p.wbuf = []
                if p.wreg:
                    self.sel.unregister(p.fd_in)
                    p.wreg = False
        self.dirty.clear()

    # --- routing ---------------------------------------------------------
    def _delay(self):
        o = self.o
        d = o.latency
        if o.jitter:
            d += self.rng.random() * o.jitter
        return d / 1000.0

    def _route(self, raw, src, dest, ts):
        procs = self.procs
        if dest in procs:
            orig = None
            if src in procs:
                if (self.watchers or self.holds or self.injected or self.tampers) \
                        and self._body(src, raw) is None:
                    pass    # journaled as bad; the attacks' code never sees it
                else:
                    for w in self.watchers:
                        w(src, dest, raw, ts)
                    if self.holds and any(h(src, dest, raw) for h in self.holds):
                        self._jmsg(ts, None, b"held", raw)
                        return
                    if self.injected and src in self.backend:
                        body = json.loads(raw)["body"]
                        fn = self.injected.pop((dest, body.get("in_reply_to")), None)
                        if fn is not None:
                            self._jmsg(ts, ts, b"h", raw)
                            fn(body)
                            return
                    if self.tampers and src in self.backend and dest not in self.backend:
                        raw, orig = self._tamper(raw, src, dest)
                if self.faults_on:
                    o, rng = self.o, self.rng
                    if o.loss and rng.random() < o.loss:
                        self.counts["lost"] += 1
                        self._jmsg(ts, None, b"lost", raw, orig)
                        return
                    delay = self._delay()
                    if o.reorder and rng.random() < o.reorder:
                        delay += rng.random() * o.reorder_ms / 1000.0
                    if o.dup and rng.random() < o.dup:
                        self.counts["dup"] += 1
                        extra = delay + rng.random() * max(o.reorder_ms, 20.0) / 1000.0
                        self.after(extra, self._arrive, raw, src, dest, ts, b"dup", orig)
                    self.after(delay, self._arrive, raw, src, dest, ts, b"tamp" if orig else b"d",
                               orig)
                    return
            delay = self._delay()
            fate = b"tamp" if orig else b"d"
            if delay > 0:
                self.after(delay, self._arrive, raw, src, dest, ts, fate, orig)
            else:
                self._arrive(raw, src, dest, ts, fate, orig)
        else:
            delay = self._delay()
            if delay > 0:
                self.after(delay, self._to_client, raw, src, dest, ts)
            else:
                self._to_client(raw, src, dest, ts)

    def _arrive(self, raw, src, dest, ts, fate, orig):
        p = self.procs[dest]
        if self.groups is not None and src in self.procs and \
                self.groups.get(src) != self.groups.get(dest):
            self.counts["partitioned"] += 1
            fate = b"dup-part" if fate == b"dup" else b"part"
        elif not p.alive:
            self.counts["down"] += 1
            fate = b"dup-down" if fate == b"dup" else b"down"
        else:
            p.wbuf.append(raw + b"\n")
            self.dirty.add(p)
        self._jmsg(ts, self.now(), fate, raw, orig)

    def _to_client(self, raw, src, dest, ts):
        known = dest in self.clients or dest == HARNESS
        self._jmsg(ts, self.now(), b"d" if known else b"none", raw)
        if not known:
            return      # a dest that is neither a node nor a client
        body = self._body(src, raw)
        if body is None:
            return      # no client gets it: its request times out
        if dest == HARNESS:
            if body.get("type") == "init_ok":
                self.init_ok.add(src)
            return
        irt = body.get("in_reply_to")
        op = self.pending.pop((dest, irt), None)
        if op is not None:
            self._complete(op, body)

    def _body(self, src, raw):
        """A node's message's body, or None when the harness cannot key on it
        (not an object, msg_id or in_reply_to not an integer): then it is
        journaled as bad, which fails the run (wire), instead of crashing."""
        try:
            body = json.loads(raw).get("body")
            why = net_check.body_problem(body)
        except ValueError:
            why = "not JSON"    # its head was read fast, the rest was not
        if why is None:
            return body
        self.jrec({"k": "bad", "node": src, "why": why, "line": raw[:2000].decode(errors="replace")})
        return None

    def _tamper(self, raw, src, dest):
        body = None
        for fn in list(self.tampers):
            if body is None:
                body = json.loads(raw)["body"]
            new = fn(src, dest, body)
            if new is not None:
                self.counts["tampered"] += 1
                out = json.dumps({"src": src, "dest": dest, "body": new},
                                 separators=(",", ":")).encode()
                return out, raw
        return raw, None

    def inject(self, src, dest, body, on_reply):
        """Delivers body to dest as if src had sent it (a replay); the reply
        goes to on_reply instead of src. Returns the msg_id used."""
        body = dict(body, msg_id=self.next_inject)
        self.next_inject += 1
        self.injected[(src, body["msg_id"])] = on_reply
        raw = json.dumps({"src": src, "dest": dest, "body": body}, separators=(",", ":")).encode()
        self.counts["injected"] += 1
        p = self.procs[dest]
        if p.alive:
            p.wbuf.append(raw + b"\n")
            self.dirty.add(p)
        self._jmsg(self.now(), self.now(), b"inj", raw)
        return body["msg_id"]

    # --- clients ---------------------------------------------------------
    def spawn(self, gen):
        cid = "c%d" % self.next_client
        self.next_client += 1
        c = Client(cid, gen)
        self.clients[cid] = c
        self._resume(c, None)
        return c

    def _resume(self, c, value):
        try:
            cmd = c.gen.send(value)
        except StopIteration as e:
            c.done, c.result = True, e.value
            return
        if cmd[0] == "sleep":
            self.after(cmd[1], self._resume, c, None)
            return
        _, node, body, tag, timeout, due = cmd
        op = Op()
        op.id, op.cid, op.node, op.tag, op.due = self.next_op, c.cid, node, tag, due
        self.next_op += 1
        op.mid = c.next_id
        c.next_id += 1
        op.body = dict(body, msg_id=op.mid)
        op.t0, op.rep, op.t1 = self.now(), None, None
        self.pending[(c.cid, op.mid)] = op
        raw = json.dumps({"src": c.cid, "dest": node, "body": op.body},
                         separators=(",", ":")).encode()
        self.after(timeout or self.o.timeout, self._timeout, op)
        self._route(raw, c.cid, node, op.t0)

    def _timeout(self, op):
        if self.pending.pop((op.cid, op.mid), None) is not None:
            self._complete(op, None)

    def _complete(self, op, rep):
        op.t1, op.rep = self.now(), rep
        rec = {"k": "op", "id": op.id, "c": op.cid, "n": op.node, "f": op.body.get("type"),
               "t0": round(op.t0, 6), "t1": round(op.t1, 6), "req": op.body, "rep": rep}
        if op.tag:
            rec["tag"] = op.tag
        if op.due is not None:
            rec["due"] = round(op.due, 6)
        self.jrec(rec)
        c = self.clients[op.cid]
        self._resume(c, rep)

    # --- faults ----------------------------------------------------------
    def partition(self):
        nodes = list(self.node_ids)
        rng = self.rng
        if rng.random() < 0.4:
            lone = rng.choice(nodes)
            self.groups = {n: int(n == lone) for n in nodes}
        else:
            rng.shuffle(nodes)
            cut = rng.randint(1, len(nodes) - 1)
            self.groups = {n: int(i < cut) for i, n in enumerate(nodes)}
        self.counts["partitions"] += 1
        groups = [sorted(n for n in nodes if self.groups[n] == g) for g in (0, 1)]
        self.event("partition", groups=groups)

    def heal(self):
        if self.groups is not None:
            self.groups = None
            self.event("heal")

    def alive(self, nid):
        return self.procs[nid].alive

    # --- the end ---------------------------------------------------------
    def stop(self, timeout=30.0):
        """Closes every node's stdin and waits for it to exit; returns
        {node: exit code}."""
        self.stopping = True
        codes = self.stop_codes
        # what is still queued for a node goes first (for at most 2 s: a node
        # that reads nothing more must not hang the harness)
        until = time.monotonic() + 2.0
        while any(p.alive and p.wbuf for p in self.procs.values()) and time.monotonic() < until:
            self.poll(0.05)
        for p in self.procs.values():
            if p.alive:
                p.wbuf = []
                if p.wreg:
                    self.sel.unregister(p.fd_in)
                    p.wreg = False
                try:
                    p.popen.stdin.close()
                except OSError:
                    pass
                p.fd_in = -1    # its number may be reused: never write to it again
        deadline = time.monotonic() + timeout
        while any(p.alive and p.popen.poll() is None for p in self.procs.values()):
            if time.monotonic() > deadline:
                break
            self.poll(0.05)
        for p in self.procs.values():
            if not p.alive:
                continue
            try:
                code = p.popen.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                code = "did not exit within %ds" % timeout
                p.popen.wait()
            self._drain(p)
            self._close(p)
            codes[p.nid] = code
            self.event("stop", node=p.nid, inc=p.incarnation, code=code)
        self.jf.flush()
        return codes

    def cpu_of_threads(self):
        """{(node, thread id, thread name): CPU seconds} of the current
        processes' threads (/proc/PID/task): "worker", "committer", "keypool"
        as the nodes name them, and "reader" for the main thread, which reads
        stdin. A thread that has ended is not there any more."""
        out = {}
        for nid, p in self.procs.items():
            if not p.alive:
                continue
            base = "/proc/%d/task" % p.popen.pid
            try:
                tids = os.listdir(base)
            except OSError:
                continue
            for tid in tids:
                got = proc_stat_cpu("%s/%s/stat" % (base, tid))
                if got is not None:     # else a thread that ended meanwhile
                    name = "reader" if int(tid) == p.popen.pid else got[0]
                    out[(nid, int(tid), name)] = got[1]
        return out

    def cpu_of_nodes(self):
        """{node: CPU seconds} of the current processes, ended threads
        included (from /proc)."""
        out = {}
        for nid, p in self.procs.items():
            got = proc_stat_cpu("/proc/%d/stat" % p.popen.pid) if p.alive else None
            if got is not None:
                out[nid] = got[1]
        return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat_cpu(path):
    """(name, CPU seconds: user + system) from a /proc stat file, or None
    when it cannot be read. The name, in parentheses, may hold anything,
    ')' too: the fields come after the last one."""
    try:
        with open(path) as f:
            head, rest = f.read().rsplit(")", 1)
        fields = rest.split()
        return head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


# =========================================================================
# The workload
# =========================================================================
class Dev:
    __slots__ = ("user", "node", "device_id", "code", "status", "busy", "active_at", "revoke_at")

    def __init__(self, user, node):
        self.user, self.node, self.device_id, self.code = user, node, None, None
        self.status, self.busy, self.active_at, self.revoke_at = "new", False, None, None


class Workload:
    """Users, their devices and the clients that act for them. The harness's
    own belief of who is active only steers the choice of requests; the
    checker decides from the journal alone."""

    def __init__(self, net, users, rng):
        self.net, self.rng = net, rng
        self.users = list(users)
        self.devs = {}              # (user, node) -> Dev
        self.tokens = set()
        self.acked = []             # (token, (user, node), to, t0)
        self.last_seq = {}          # (user, node) -> highest seq read

    def token(self):
        while True:
            t = "tk_" + "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(20))
            if t not in self.tokens:
                self.tokens.add(t)
                return t

    def active(self, user=None, exclude=None, alive=True):
        out = [d for d in self.devs.values() if d.status == "active" and not d.busy
               and (user is None or d.user == user) and d is not exclude
               and (not alive or self.net.alive(d.node))]
        return out

    # --- membership ------------------------------------------------------
    def register(self, user, node, tries=40):
        d = self.devs.setdefault((user, node), Dev(user, node))
        for _ in range(tries):
            rep = yield call(node, {"type": "register", "user": user}, tag="setup")
            if rep and rep.get("type") == "registered":
                d.device_id, d.code = rep.get("device_id"), rep.get("code")
                if rep.get("status") == "active":
                    if d.status != "active":
                        d.active_at = self.net.now()
                    d.status = "active"
                elif d.status == "new":
                    d.status = "pending"
                return d
            yield sleep(0.3 + self.rng.random() * 0.4)
        return d

    def confirm(self, via, user, device_id, want_listed):
        """Asks a device of user whether device_id is listed now."""
        rep = yield call(via.node, {"type": "devices", "user": user, "of": user}, tag="membership")
        if rep and rep.get("type") == "devices":
            listed = any(x.get("device_id") == device_id for x in rep.get("devices") or [])
            return listed == want_listed
        return None

    def approve(self, d, tries=30):
        """Approves pending device d from another active device of its user."""
        d.busy = True
        try:
            for _ in range(tries):
                via = self.rng.choice(self.active(d.user, exclude=d) or [None])
                if via is None:
                    yield sleep(0.5)
                    continue
                rep = yield call(via.node, {"type": "approve_device", "user": d.user,
                                            "device_id": d.device_id, "code": d.code},
                                 tag="membership")
                if rep and rep.get("type") == "device_approved":
                    d.status, d.active_at = "active", self.net.now()
                    return True
                if rep is None or rep.get("code") in INDEFINITE:
                    ok = yield from self.confirm(via, d.user, d.device_id, True)
                    if ok:
                        d.status, d.active_at = "active", self.net.now()
                        return True
                yield sleep(0.3 + self.rng.random() * 0.5)
            return False
        finally:
            d.busy = False

    def revoke(self, d, tries=30):
        d.busy = True
        try:
            for _ in range(tries):
                vias = self.active(d.user, exclude=d)
                if not vias:
                    return False
                via = d if self.rng.random() < 0.2 and self.net.alive(d.node) else self.rng.choice(vias)
                rep = yield call(via.node, {"type": "revoke_device", "user": d.user,
                                            "device_id": d.device_id}, tag="membership")
                if rep and rep.get("type") == "device_revoked":
                    d.status, d.revoke_at = "revoked", self.net.now()
                    return True
                d.status = "revoking"   # it may have happened: no sends from it any more
                if rep is None or rep.get("code") in INDEFINITE:
                    checker = via if via is not d else self.rng.choice(vias)
                    ok = yield from self.confirm(checker, d.user, d.device_id, False)
                    if ok:
                        d.status, d.revoke_at = "revoked", self.net.now()
                        return True
                yield sleep(0.3 + self.rng.random() * 0.5)
            return False
        finally:
            d.busy = False

    def add_device(self, user, node):
        d = yield from self.register(user, node)
        if d.status == "pending":
            yield from self.approve(d)
        return d

    def setup_user(self, user, nodes):
        first = yield from self.register(user, nodes[0])
        if first.status != "active":
            return False
        for node in nodes[1:]:
            yield from self.add_device(user, node)
        return True

    # --- requests --------------------------------------------------------
    def send_one(self, d, to, tag=None, due=None):
        tok = self.token()
        t0 = self.net.now()
        rep = yield call(d.node, {"type": "send", "user": d.user, "to": to, "text": tok}, tag=tag,
                         due=due)
        if rep and rep.get("type") == "sent":
            self.acked.append((tok, (d.user, d.node), to, t0))
        return rep, tok

    def read_one(self, d, after=0, tag=None):
        rep = yield call(d.node, {"type": "read", "user": d.user, "after": after}, tag=tag)
        if rep and rep.get("type") == "messages":
            for m in rep.get("messages") or []:
                if isinstance(m, dict) and isinstance(m.get("seq"), int):
                    key = (d.user, d.node)
                    self.last_seq[key] = max(self.last_seq.get(key, 0), m["seq"])
        return rep

    def pick_send(self):
        """A random active device and another user with an active device to
        send to, or (None, None)."""
        senders = self.active()
        if not senders:
            return None, None
        d = self.rng.choice(senders)
        # Users with an active device, alive or not: one pass, not one per user.
        reachable = {x.user for x in self.devs.values() if x.status == "active" and not x.busy}
        others = [u for u in self.users if u != d.user and u in reachable]
        return (d, self.rng.choice(others)) if others else (None, None)

    def worker(self, until, pause):
        rng = self.rng
        while self.net.now() < until:
            if rng.random() < self.net.o.read_fraction:
                devs = [d for d in self.devs.values() if d.status in ("active", "pending")
                        and d.device_id is not None and self.net.alive(d.node)]
                if devs:
                    d = rng.choice(devs)
                    after = rng.choice([0, self.last_seq.get((d.user, d.node), 0)])
                    yield from self.read_one(d, after)
            else:
                d, to = self.pick_send()
                if d:
                    yield from self.send_one(d, to)
            if pause:
                yield sleep(rng.expovariate(1.0 / pause))
            elif not self.active():
                yield sleep(0.05)

    def paced(self, until, rate):
        """An open loop: sends arrive at `rate` per second on average
        (exponential gaps, as independent users make them), each from a
        client of its own, whether or not earlier ones were answered; so a
        slow reply delays no later send and every latency counts from when
        its send was due. Returns the clients."""
        rng, spawned = self.rng, []
        due = self.net.now()
        while True:
            due += rng.expovariate(rate)
            if due >= until:
                return spawned
            if due > self.net.now():
                yield sleep(due - self.net.now())
            d, to = self.pick_send()
            if d:
                spawned.append(self.net.spawn(self.send_one(d, to, due=due)))

    def churn(self, until, every):
        """Membership changes: a new device approved, or one revoked."""
        rng = self.rng
        while self.net.now() < until:
            yield sleep(rng.expovariate(1.0 / every))
            if self.net.now() >= until:
                break
            user = rng.choice(self.users)
            mine = [d for d in self.devs.values() if d.user == user]
            free = [n for n in self.net.device_nodes if (user, n) not in self.devs]
            actives = [d for d in mine if d.status == "active" and not d.busy]
            if free and (len(actives) < 2 or rng.random() < 0.5):
                yield from self.add_device(user, rng.choice(free))
            elif len(actives) >= 2:
                yield from self.revoke(rng.choice(actives))

    def final_reads(self, tries=20):
        """Every device's whole inbox (tag "final"); returns {(user, node): reply}."""
        out = {}

        def one(d):
            for _ in range(tries):
                rep = yield call(d.node, {"type": "read", "user": d.user, "after": 0}, tag="final")
                if rep and (rep.get("type") == "messages" or rep.get("code") not in INDEFINITE):
                    out[(d.user, d.node)] = rep
                    return
                yield sleep(0.5)
        clients = [self.net.spawn(one(d)) for d in self.devs.values() if d.device_id is not None]
        self.net.run_until(lambda: all(c.done for c in clients), tries * (self.net.o.timeout + 1))
        return out

    def missing(self, inboxes):
        """How many (acked send, device) pairs the harness expects but the
        inboxes do not show yet (a rough version of the checker's rule, to
        know when to stop waiting)."""
        have = {}
        for key, rep in inboxes.items():
            if rep.get("type") == "messages":
                have[key] = {m.get("text") for m in rep.get("messages") or [] if isinstance(m, dict)}
        n = 0
        for tok, sender, to, t0 in self.acked:
            for key, d in self.devs.items():
                if key == sender or d.user not in (to, sender[0]) or key not in have:
                    continue
                if d.status == "active" and d.active_at is not None and d.active_at < t0 \
                        and tok not in have[key]:
                    n += 1
        return n


# =========================================================================
# Attacks: the harness as a malicious directory or relay
# =========================================================================
def rand_key():
    return base64.b64encode(b"\x05" + os.urandom(32)).decode()


class Attacks:
    """Plays the attacks one after another, each followed by probes (sends
    that must succeed). What the checker needs is journaled as "attack"
    records."""

    def __init__(self, net, w):
        self.net, self.w = net, w
        self.fetches = {}      # (node, msg_id) -> fetch body
        self.fetch_ts = {}     # (node, msg_id) -> when it was sent
        self.items = {}        # (user, node) -> [(item, ts)]
        self.answered = []     # (node, fetch body) that got relay_envelopes
        net.watchers.append(self._watch)

    def _watch(self, src, dest, raw, ts):
        if dest == RELAY and b'"relay_fetch"' in raw:
            body = json.loads(raw)["body"]
            if body.get("type") == "relay_fetch":
                self.fetches[(src, body.get("msg_id"))] = body
                self.fetch_ts[(src, body.get("msg_id"))] = ts
        elif src == RELAY and b'"relay_envelopes"' in raw:
            body = json.loads(raw)["body"]
            f = self.fetches.get((dest, body.get("in_reply_to")))
            if f is not None and body.get("type") == "relay_envelopes":
                self.answered.append((dest, f, ts))
                items = body.get("items")
                for it in items if isinstance(items, list) else []:
                    if isinstance(it, dict):
                        self.items.setdefault((f.get("user"), dest), []).append((it, ts))

    def dev(self, user, node):
        return self.w.devs[(user, node)]

    def record(self, name, **kw):
        self.net.jrec(dict({"k": "attack", "name": name}, **kw))

    def tamper_while(self, fn, gen):
        """Runs client steps gen with tamper fn armed; returns gen's value."""
        self.net.tampers.append(fn)
        try:
            return (yield from gen)
        finally:
            self.net.tampers.remove(fn)

    def probe(self, name):
        w = self.w
        pairs = [("alice", "bob"), ("bob", "alice"), ("carol", "alice"), ("alice", "carol")]
        for u, to in pairs:
            senders = w.active(u)
            if senders and w.active(to, alive=False):
                yield from w.send_one(senders[0], to, tag="probe:" + name)
        yield sleep(1.5)

    def play(self, names):
        w, net = self.w, self.net
        n2, n3, n4 = net.device_nodes[:3]
        self.n2, self.n3, self.n4 = n2, n3, n4
        # alice on n2 and n3, bob on n3 and n4, carol on n4
        ok = yield from w.setup_user("alice", [n2, n3])
        ok = (yield from w.setup_user("bob", [n3, n4])) and ok
        ok = (yield from w.setup_user("carol", [n4])) and ok
        if not ok:
            self.record("setup", ok=False)
            return
        for u, node, to in [("alice", n2, "bob"), ("bob", n3, "alice"), ("carol", n4, "alice"),
                            ("alice", n3, "carol"), ("bob", n4, "carol")]:
            yield from w.send_one(self.dev(u, node), to, tag="warmup")
        yield sleep(2.0)
        for name in names:
            net.event("attack", name=name)
            yield from getattr(self, "a_" + name.replace("-", "_"))()
            yield from self.probe(name)

    # directory attacks: the reply for bob's (or dave's) list or bundles is rewritten
    def _dir_attack(self, name, typ, user, rewrite, sender, to):
        fired = []
        node = sender.node

        def fn(src, dest, body):
            if src == DIRECTORY and dest == node and body.get("type") == typ \
                    and body.get("user") == user:
                new = rewrite(json.loads(json.dumps(body)))
                if new is not None:
                    fired.append(self.net.now())
                return new
            return None
        t0 = self.net.now()
        rep, tok = yield from self.tamper_while(fn, self.w.send_one(sender, to, tag="attack:" + name))
        return fired, t0, rep, tok

    def a_ghost_device(self):
        ghost = {"device_id": 1000 + self.net.rng.randrange(1000), "identity_key": rand_key(),
                 "registration_id": self.net.rng.randrange(1, 16380)}

        def rewrite(b):
            if b.get("lists"):
                b["lists"][-1].setdefault("devices", []).append(dict(ghost))
                return b
            return None
        fired, t0, rep, tok = yield from self._dir_attack(
            "ghost-device", "dir_devices", "bob", rewrite, self.dev("alice", self.n2), "bob")
        self.record("ghost-device", tag="attack:ghost-device", node=self.n2, fired=len(fired),
                    t_first=fired[0] if fired else None, user="bob",
                    device_id=ghost["device_id"], token=tok)

    def a_rollback(self):
        def rewrite(b):
            if len(b.get("lists") or []) >= 2:
                b["lists"] = b["lists"][:-1]
                return b
            return None
        fired, t0, rep, tok = yield from self._dir_attack(
            "rollback", "dir_devices", "bob", rewrite, self.dev("alice", self.n2), "bob")
        self.record("rollback", tag="attack:rollback", node=self.n2, fired=len(fired),
                    t_first=fired[0] if fired else None, user="bob", token=tok)

    def a_swap_key(self):
        # a user nobody has written to: the sender must fetch bundles
        w = self.w
        dave = yield from w.register("dave", self.n4)
        if dave.status != "active":
            self.record("swap-key", tag="attack:swap-key", fired=0, why="dave not registered")
            return
        if "dave" not in w.users:
            w.users.append("dave")

        def rewrite(b):
            if b.get("bundles"):
                b["bundles"][0]["identity_key"] = rand_key()
                return b
            return None
        fired, t0, rep, tok = yield from self._dir_attack(
            "swap-key", "dir_bundles", "dave", rewrite, self.dev("alice", self.n2), "dave")
        self.record("swap-key", tag="attack:swap-key", node=self.n2, fired=len(fired),
                    t_first=fired[0] if fired else None, user="dave", token=tok)
        # the probe: the same pair again, untouched, must work
        yield from w.send_one(self.dev("alice", self.n2), "dave", tag="probe:swap-key")

    # relay attacks: relay_envelopes to bob's device on n4 rewritten
    def _bob_fetch_ids(self):
        return {mid for (node, mid), f in self.fetches.items()
                if node == self.n4 and f.get("user") == "bob"}

    def _relay_attack(self, name, rewrite, trigger=True):
        fired = []
        n4 = self.n4

        def fn(src, dest, body):
            if fired or src != RELAY or dest != n4 or body.get("type") != "relay_envelopes":
                return None
            if body.get("in_reply_to") not in self._bob_fetch_ids():
                return None
            new = rewrite(json.loads(json.dumps(body)))
            if new is not None:
                fired.append(self.net.now())
            return new
        self.net.tampers.append(fn)
        tok = None
        try:
            if trigger:
                _, tok = yield from self.w.send_one(self.dev("alice", self.n2), "bob",
                                                    tag="attack:" + name)
            for _ in range(40):
                if fired:
                    break
                yield sleep(0.1)
            yield sleep(1.5)
        finally:
            self.net.tampers.remove(fn)
        return fired, tok

    def a_flip_byte(self):
        where = {}

        def rewrite(b):
            for it in b.get("items") or []:
                try:
                    ct = bytearray(base64.b64decode(it["ciphertext"], validate=True))
                except (KeyError, ValueError, TypeError):
                    continue
                if not ct:
                    continue
                i = len(ct) // 2
                ct[i] ^= 0x01
                it["ciphertext"] = base64.b64encode(bytes(ct)).decode()
                where.update(message_id=it.get("message_id"), item=it.get("id"), byte=i)
                return b
            return None
        fired, tok = yield from self._relay_attack("flip-byte", rewrite)
        self.record("flip-byte", tag="attack:flip-byte", node=self.n4, user="bob",
                    fired=len(fired), token=tok, **where)

    def a_replay_envelope(self):
        old = [it for it, _ in self.items.get(("bob", self.n4), [])]
        if not old:
            self.record("replay-envelope", fired=0, why="bob's device on %s got nothing yet" % self.n4)
            return
        item = old[0]

        def rewrite(b):
            b["items"] = list(b.get("items") or []) + [item]
            return b
        fired, tok = yield from self._relay_attack("replay-envelope", rewrite)
        self.record("replay-envelope", tag="attack:replay-envelope", node=self.n4, user="bob",
                    fired=len(fired), message_id=item.get("message_id"), item=item.get("id"),
                    token=tok)

    def a_misaddress(self):
        # an envelope fetched by alice's device on n3, for a message bob is no party to
        cands = [it for it, _ in self.items.get(("alice", self.n3), [])
                 if it.get("from_user") not in ("bob", "alice")]
        if not cands:
            self.record("misaddress", fired=0, why="alice's device on %s got nothing from carol"
                        % self.n3)
            return
        item = cands[0]

        def rewrite(b):
            b["items"] = list(b.get("items") or []) + [item]
            return b
        fired, tok = yield from self._relay_attack("misaddress", rewrite)
        self.record("misaddress", tag="attack:misaddress", node=self.n4, user="bob",
                    fired=len(fired), message_id=item.get("message_id"), item=item.get("id"),
                    from_user=item.get("from_user"), token=tok)

    def a_replay_fetch(self):
        done = [d for d in self.answered if d[0] == self.n4 and d[1].get("user") == "bob"]
        if not done:
            self.record("replay-fetch", fired=0, why="no answered fetch of bob's device seen")
            return
        node, body, _ = done[-1]
        replies = []
        mid = self.net.inject(node, RELAY, {k: v for k, v in body.items() if k != "msg_id"},
                              replies.append)
        for _ in range(50):
            if replies:
                break
            yield sleep(0.1)
        self.record("replay-fetch", node=node, fired=1, injected=[mid], user="bob",
                    reply=replies[0] if replies else None)

    def a_revoked_fetch(self):
        w, net = self.w, self.net
        target = self.dev("alice", self.n3)
        # one signed fetch of the device's, held back from before the revocation; its later
        # fetches and acks are held too until the revocation is acknowledged, so its counter
        # stays fresh and only the revocation can make the relay refuse it
        held = []

        def hold(src, dest, raw):
            if src != self.n3 or dest != RELAY or not (b'"relay_fetch"' in raw
                                                       or b'"relay_ack"' in raw):
                return False
            body = json.loads(raw)["body"]
            if body.get("user") != "alice" or body.get("device_id") != target.device_id:
                return False
            if not held and body.get("type") == "relay_fetch":
                held.append(body)
            return bool(held)
        net.holds.append(hold)
        try:
            for _ in range(50):     # the device node polls on its own (§5.2: every second)
                if held:
                    break
                yield sleep(0.1)
            ok = yield from w.revoke(target)
        finally:
            net.holds.remove(hold)
        if not ok:
            self.record("revoked-fetch", fired=0, why="the revocation was not acknowledged")
            return
        t_rev = net.now()
        injected, replies = [], []
        if held:
            injected.append(net.inject(self.n3, RELAY, {k: v for k, v in held[0].items()
                                                        if k != "msg_id"}, replies.append))
            for _ in range(50):
                if replies:
                    break
                yield sleep(0.1)
        yield sleep(2.5)    # the device node polls on its own (§5.2: every second)
        own = [f for (node, mid), f in list(self.fetches.items())
               if node == self.n3 and f.get("user") == "alice" and mid < INJECT_BASE
               and self.fetch_ts[(node, mid)] > t_rev]
        # mail for alice sent after the revocation must not reach the revoked device
        yield from w.send_one(self.dev("carol", self.n4), "alice", tag="attack:revoked-fetch")
        rep = yield call(self.n3, {"type": "read", "user": "alice", "after": 0},
                         tag="attack:revoked-read")
        yield sleep(1.0)
        self.record("revoked-fetch", node=self.n3, user="alice", device_id=target.device_id,
                    t_revoked=t_rev, fired=1, own_fetches=len(own), injected=injected,
                    held=len(held), held_why=None if held else "no fetch of it within 5 s",
                    reply=replies[0] if replies else None, read=rep)


# =========================================================================
# Runs
# =========================================================================
def nemesis(net, o, until):
    """Schedules partitions and kills until `until` (harness time)."""
    rng = net.rng
    down = set()

    def part_start():
        if net.now() >= until:
            return
        net.partition()
        net.after(o.partition_for, part_end)

    def part_end():
        net.heal()
        if net.now() < until:
            net.after(rng.expovariate(1.0 / o.partition_every), part_start)

    # every node once before any twice; the directory, the relay and a device
    # host first, so that even a short run kills every role
    first = [DIRECTORY, RELAY, rng.choice(net.device_nodes)]
    rng.shuffle(first)
    rest = [n for n in net.node_ids if n not in first]
    rng.shuffle(rest)
    order = first + rest

    def kill_one():
        if net.now() >= until:
            return
        if o.kill_on:  # arm: a device host goes when it next writes that type
            net.kill_trigger = (rng.choice(net.device_nodes), b'"type":"%s"' % o.kill_on.encode(),
                                kill_now)
        elif len(down) < o.max_down:
            if not order:
                order.extend(net.node_ids)
                rng.shuffle(order)
            nid = next((n for n in order if net.alive(n)), None)
            if nid is None:
                net.after(0.2, kill_one)
                return
            order.remove(nid)
            kill_now(nid)
        net.after(rng.expovariate(1.0 / o.kill_every), kill_one)

    def kill_now(nid):
        if net.alive(nid) and len(down) < o.max_down:
            net.kill(nid)
            down.add(nid)
            net.after(o.down_for, back, nid)

    def back(nid):
        down.discard(nid)
        net.restart(nid)

    # the first of each comes at half its mean interval, so a short run has one
    if o.partition:
        net.after(o.partition_every / 2, part_start)
    if o.kill:
        net.after(o.kill_every / 2, kill_one)


def make_run_dir(o):
    if o.out:
        path = o.out
        if os.path.isdir(path) and os.listdir(path):
            # only an earlier run's folder may be reused: its state would be read again
            if not os.path.exists(os.path.join(path, "journal.jsonl")):
                sys.exit("net: %s is not empty and not a run folder" % path)
            import shutil
            for name in os.listdir(path):
                full = os.path.join(path, name)
                shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
    else:
        name = o.scenario or ("bench" if o.bench else "run")
        path = os.path.join(ROOT, "run", "net", "%s-%s-%d" % (name, now_wall(), os.getpid()))
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)


def node_command(o):
    env = dict(os.environ)
    # the harness names every node's key, state and roles itself
    for k in ("SECURITOR_KEY", "SECURITOR_STATE_DIR", "SECURITOR_DIRECTORY", "SECURITOR_RELAY"):
        env.pop(k, None)
    if o.node_cmd:
        return shlex.split(o.node_cmd), env
    binary = o.bin
    if o.asan:
        binary = os.path.join(o.asan, "e2ee-node")
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    binary = binary or os.path.join(ROOT, "build", "e2ee-node")
    if not os.access(binary, os.X_OK):
        sys.exit("net: no node binary at %s (build it, or give --bin / --node-cmd)" % binary)
    return [os.path.abspath(binary)], env


def start_nodes(net):
    for nid in net.node_ids:
        net.start(nid)
    ok = net.run_until(lambda: len(net.init_ok) == len(net.node_ids) or net.early_exit, 15.0)
    net.started = True
    if not ok or net.early_exit:
        missing = sorted((set(net.node_ids) - net.init_ok) | net.early_exit)
        logs = []
        for nid in missing:
            p = net.procs[nid]
            path = os.path.join(net.run_dir, "logs", "%s.%d.stderr" % (nid, p.incarnation))
            try:
                with open(path, errors="replace") as f:
                    logs.append("%s: %s" % (nid, f.read()[-600:].strip()))
            except OSError:
                pass
        net.stop(5)
        sys.exit("net: no init_ok from %s within 15 s (or it exited)\n%s"
                 % (", ".join(missing), "\n".join(logs)))


def place_users(o, net, rng):
    users = ["u%d" % i for i in range(1, o.users + 1)]
    k = max(1, min(o.devices_per_user, len(net.device_nodes)))
    placement = {}
    for i, u in enumerate(users):
        # spread the primaries, then random other nodes
        first = net.device_nodes[i % len(net.device_nodes)]
        others = [n for n in net.device_nodes if n != first]
        rng.shuffle(others)
        placement[u] = [first] + others[:k - 1]
    return users, placement


def run_workload(net, o):
    rng = net.rng
    users, placement = place_users(o, net, rng)
    w = Workload(net, users, rng)
    net.event("phase", phase="setup")
    setups = [net.spawn(w.setup_user(u, placement[u])) for u in users]
    net.run_until(lambda: all(c.done for c in setups), 120.0)
    net.event("phase", phase="workload")
    t_end = net.now() + o.duration
    if o.loss or o.dup or o.reorder:
        net.faults_on = True
    nemesis(net, o, t_end)
    pause = o.clients / o.rate if o.rate else 0.0
    workers = [net.spawn(w.worker(t_end, pause)) for _ in range(o.clients)]
    if o.churn:
        workers.append(net.spawn(w.churn(t_end, o.churn)))
    net.run_until(lambda: net.now() >= t_end, o.duration + 5)
    finish(net, w, o, workers)
    return w


def finish(net, w, o, clients):
    """Heals everything, lets clients finish, waits, reads every inbox."""
    net.event("phase", phase="heal")
    net.faults_on = False
    net.heal()
    net.tampers.clear()
    for nid in net.node_ids:
        if not net.alive(nid):
            net.restart(nid)
    net.run_until(lambda: all(c.done for c in clients), o.timeout * 3 + 30)
    net.run_for(o.settle)
    net.event("phase", phase="final")
    deadline = net.now() + o.settle_max
    while True:
        inboxes = w.final_reads()
        left = w.missing(inboxes)
        if left == 0 or net.now() >= deadline:
            if left:
                net.event("settle-timeout", missing=left)
            break
        net.run_for(1.0)


def run_attacks(net, o):
    w = Workload(net, ["alice", "bob", "carol"], net.rng)
    names = [a for a in o.attacks.split(",") if a]
    for a in names:
        if a not in ATTACKS:
            sys.exit("net: unknown attack %s (known: %s)" % (a, ", ".join(ATTACKS)))
    if len(net.device_nodes) < 3:
        sys.exit("net: the attacks need at least 3 device nodes")
    net.event("phase", phase="attacks")
    att = Attacks(net, w)
    c = net.spawn(att.play(names))
    net.run_until(lambda: c.done, 60.0 + 30.0 * len(names))
    finish(net, w, o, [c])
    return w


def run_bench(net, o):
    rng = net.rng
    users, placement = place_users(o, net, rng)
    w = Workload(net, users, rng)
    net.event("phase", phase="setup")
    setups = [net.spawn(w.setup_user(u, placement[u])) for u in users]
    net.run_until(lambda: all(c.done for c in setups), 120.0)
    # warm up: every pair of users once (sessions set up), then measure
    net.event("phase", phase="warmup")
    def warm(u):
        for to in users:
            if to != u and w.active(u):
                yield from w.send_one(w.active(u)[0], to, tag="warmup")
    warmers = [net.spawn(warm(u)) for u in users]
    net.run_until(lambda: all(c.done for c in warmers), 120.0)
    net.run_for(1.0)
    net.event("phase", phase="measure")
    # From here to the end of the last phase.
    probe = (DiskProbe(os.path.join(net.run_dir, "disk-probe"), net.now)
             if o.state and o.disk_probe else None)
    if probe:
        probe.start()
    try:
        return measure(net, o, w, probe)
    finally:
        if probe and probe.is_alive():  # the run failed: stop it all the same
            probe.finish()


def measure(net, o, w, probe):
    """run_bench's two phases: the closed loop, then the open one."""
    # The routing thread's own CPU (the disk probe's thread is not the
    # harness's cost).
    ru0, wall0 = resource.getrusage(resource.RUSAGE_THREAD), time.monotonic()
    nodes0 = net.cpu_of_nodes()
    t_start = net.now()
    t_end = t_start + o.duration
    workers = [net.spawn(w.worker(t_end, 0.0)) for _ in range(o.clients)]
    net.run_until(lambda: net.now() >= t_end, o.duration + 5)
    net.run_until(lambda: all(c.done for c in workers), o.timeout + 5)
    net.run_for(1.0)
    ru1, wall1 = resource.getrusage(resource.RUSAGE_THREAD), time.monotonic()
    nodes1 = net.cpu_of_nodes()
    net.event("phase", phase="measured", t_start=t_start, t_end=t_end)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    bench = {"window": [t_start, t_end], "harness_cpu_s": round(cpu, 3),
             "wall_s": round(wall1 - wall0, 3),
             "harness_cpu_share": round(cpu / (wall1 - wall0), 3),
             "node_cpu_s": {n: round(nodes1.get(n, 0) - nodes0.get(n, 0), 3) for n in nodes1},
             "clients": o.clients}
    if o.paced_rate:
        # The closed loop above measures the most the system delivers, and
        # its latencies are those of a queue kept full by o.clients (more
        # clients, longer waits, the same rate). Latency is measured at a
        # given load: o.paced_rate sends/s offered in an open loop.
        net.event("phase", phase="paced", rate=o.paced_rate)
        p0 = net.now()
        # The CPU over the arrivals' span (not the drain after it): how near
        # the two cores the offered rate runs, and where the CPU goes.
        paced_cpu = [cpu_sample(net)]
        net.after(p0 + o.duration - net.now(), lambda: paced_cpu.append(cpu_sample(net)))
        pacer = net.spawn(w.paced(p0 + o.duration, o.paced_rate))
        net.run_until(lambda: pacer.done, o.duration + 5)
        net.run_until(lambda: all(c.done for c in pacer.result or []), o.timeout + 5)
        net.run_until(lambda: len(paced_cpu) == 2, 1.0)
        net.run_for(1.0)
        bench["paced_window"] = [p0, p0 + o.duration]
        if len(paced_cpu) == 2:
            bench["paced_cpu"] = cpu_between(*paced_cpu)
        bench["paced_rate"] = o.paced_rate
        net.event("phase", phase="paced-done")
    if probe:
        bench["disk_probe_ms"] = probe.finish()
    finish(net, w, o, workers)
    return w, bench


def cpu_machine_ticks():
    """(busy, steal, total) clock ticks of all the machine's CPUs since boot
    (/proc/stat): busy is user, nice, system, irq and softirq time; steal
    what the hypervisor gave to others while this VM wanted to run; the
    total adds idle and iowait."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = \
            [int(x) for x in f.readline().split()[1:9]]
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + steal + idle + iowait


def cpu_sample(net):
    """What the CPU did so far: the machine's ticks, each node thread's CPU
    and the routing thread's (the caller's)."""
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return cpu_machine_ticks(), net.cpu_of_threads(), ru.ru_utime + ru.ru_stime


def cpu_between(a, b):
    """The figures of two cpu_samples: how busy the cores were, and the CPU
    the harness and the node threads took in between, by role and name (a
    thread new since the first sample, as after a restart, counts whole)."""
    (busy0, steal0, total0), threads0, harness0 = a
    (busy1, steal1, total1), threads1, harness1 = b
    role = {DIRECTORY: "directory", RELAY: "relay"}
    nodes = {}
    for (nid, tid, name), cpu in threads1.items():
        key = "%s %s" % (role.get(nid, "devices"), name)
        nodes[key] = nodes.get(key, 0.0) + cpu - threads0.get((nid, tid, name), 0.0)
    span = total1 - total0
    return {"cores": os.cpu_count(),
            "busy_share": round((busy1 - busy0) / span, 3) if span > 0 else None,
            "steal_share": round((steal1 - steal0) / span, 3) if span > 0 else None,
            "harness_s": round(harness1 - harness0, 3),
            "nodes_s": {k: round(v, 3) for k, v in sorted(nodes.items())}}


class DiskProbe(threading.Thread):
    """The disk's own pace while the nodes run: a 64 KiB write and an
    fdatasync every 20 ms to a file beside the states, the size of a large
    commit. The nodes' commits wait for the same disk; this shows which of
    their slow commits the disk alone would have had (a commit over 50 ms
    is a p99 over 50 ms for every delivery waiting on it)."""

    SIZE, EVERY, SPAN = 64 << 10, 0.02, 4 << 20  # rewritten in place, as a WAL is
    STALL_MS = 50.0  # as the nodes' STATE_SLOW_COMMIT_MS

    def __init__(self, path, clock):
        super().__init__(daemon=True)
        self.path, self.clock, self.stop = path, clock, threading.Event()
        self.lat, self.stalls = [], []  # stalls: [start (harness time), ms] over 50 ms
        self.error = None

    def run(self):
        try:
            self._probe()
        except OSError as e:  # the figures say so; the run goes on
            self.error = str(e)

    def _probe(self):
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            buf, off = os.urandom(self.SIZE), 0
            # The file is made whole first, so that no timed call grows it.
            for o in range(0, self.SPAN, self.SIZE):
                os.pwrite(fd, buf, o)
            os.fsync(fd)
            due = time.monotonic()
            while not self.stop.is_set():
                t, at = time.monotonic(), self.clock()
                os.pwrite(fd, buf, off)
                os.fdatasync(fd)
                self.lat.append((time.monotonic() - t) * 1000.0)
                if self.lat[-1] > self.STALL_MS:
                    self.stalls.append([round(at, 4), round(self.lat[-1], 1)])
                off = (off + self.SIZE) % self.SPAN
                due = max(due + self.EVERY, time.monotonic())
                self.stop.wait(due - time.monotonic())
        finally:
            os.close(fd)
            os.unlink(self.path)

    def finish(self):
        """Stops it (waiting at most 5 s for a call in flight) and returns
        its figures."""
        self.stop.set()
        self.join(5.0)
        q = net_check.quantiles(self.lat)
        q["over_50"], q["stalls"] = len(self.stalls), list(self.stalls)
        q["every_s"] = self.EVERY  # how late a stall may be seen (net_check widens it)
        if self.error or self.is_alive():
            q["error"] = self.error or "a call did not return within 5 s"
        return q


class _Echo(Net):
    """Two `sed` processes that swap src and dest: every line comes back at
    once, so the harness is what limits the rate."""

    def cmd_for(self, nid):
        other = RELAY if nid == DIRECTORY else DIRECTORY
        return ["stdbuf", "-oL", "sed", '/"type":"init"/d; s/"src":"%s","dest":"%s"/"src":"%s",'
                '"dest":"%s"/' % (other, nid, nid, other)]


def route_bench(o, seconds):
    """The harness's own routing cost: 200 messages bouncing between two
    sed processes for `seconds`, journaled as always."""
    import tempfile
    o.device_nodes, o.state = 0, False
    run_dir = tempfile.mkdtemp(prefix="net-route-")
    net = _Echo(o, run_dir, [], dict(os.environ))
    net.jrec({"k": "meta"})
    for nid in net.node_ids:
        net.start(nid)      # sed drops the init
    net.run_for(0.2)
    for i in range(200):
        raw = json.dumps({"src": RELAY, "dest": DIRECTORY, "body": {
            "type": "ping", "msg_id": i, "pad": "x" * 200}}, separators=(",", ":")).encode()
        net._route(raw, RELAY, DIRECTORY, net.now())
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    net.run_for(seconds)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    net.jf.flush()
    with open(os.path.join(run_dir, "journal.jsonl"), "rb") as f:
        routed = sum(1 for line in f if line.startswith(b'{"k":"m"') and b'"ts":' in line
                     and b'"type":"ping"' in line)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    net.stop(5)
    import shutil
    shutil.rmtree(run_dir, ignore_errors=True)
    print("routed %d messages in %.1f s: %.0f messages/s; harness CPU %.2f s (%.0f%% of a "
          "core), %.1f us per message; latency %s ms, jitter %s ms"
          % (routed, t1 - t0, routed / (t1 - t0), cpu, 100 * cpu / (t1 - t0),
             1e6 * cpu / max(1, routed), o.latency, o.jitter))
    return 0


def resolve(o):
    """Scenario defaults under explicit flags, global defaults under both."""
    chosen = {}
    if o.scenario:
        if o.scenario not in SCENARIOS:
            sys.exit("net: unknown scenario %s (--list shows them)" % o.scenario)
        chosen = SCENARIOS[o.scenario]
    if o.bench:
        chosen = dict(device_nodes=5, users=10, devices_per_user=2, clients=24, duration=10.0,
                      latency=0.0, jitter=0.0, read_fraction=0.0, seed=1, paced_rate=1000.0)
    for k, v in DEFAULTS.items():
        if getattr(o, k, None) is None:
            setattr(o, k, chosen.get(k, v))
    if o.seed is None:
        o.seed = random.randrange(1 << 30)
    return o


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="scripts/net", description="A small Maelstrom for the blind backend (PROTOCOL.md §5).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Scenarios: " + ", ".join(SCENARIOS) + "\nAttacks: " + ", ".join(ATTACKS))
    g = ap.add_argument_group("what to run")
    g.add_argument("--scenario", help="a short seeded scenario (its options are defaults)")
    g.add_argument("--list", action="store_true", help="list the scenarios and exit")
    g.add_argument("--bench", action="store_true", help="the benchmark (5 device nodes, 10 users)")
    g.add_argument("--paced-rate", type=float, metavar="SENDS_PER_S",
                   help="--bench's second phase: sends offered at this rate, Poisson arrivals, "
                        "whatever the replies do (1000; 0: no such phase)")
    g.add_argument("--route-bench", type=float, metavar="SECONDS",
                   help="the harness alone: messages bounced between two sed processes")
    g.add_argument("--bin", help="the node binary (default build/e2ee-node)")
    g.add_argument("--asan", metavar="BUILD_DIR", help="run BUILD_DIR/e2ee-node (an ASan build)")
    g.add_argument("--node-cmd", help="any command that speaks the protocol (shell words), e.g. "
                   "'python3 scripts/net_fake_node.py'; the harness adds the role flags")
    g.add_argument("--no-state", dest="state", action="store_false", default=None,
                   help="no --state-dir (nodes keep everything in memory; no kills then)")
    g.add_argument("--no-disk-probe", dest="disk_probe", action="store_false",
                   help="--bench with state: do not time the disk beside the nodes (the probe "
                        "adds 50 fdatasyncs a second of its own)")
    g.add_argument("--out", help="the run folder (default run/net/NAME-TIME-PID)")
    g.add_argument("--seed", type=int)
    g = ap.add_argument_group("the system and the workload")
    g.add_argument("--device-nodes", type=int, help="device hosts besides n0 and n1 (3)")
    g.add_argument("--users", type=int, help="users (4)")
    g.add_argument("--devices-per-user", type=int, help="devices each user starts with (2)")
    g.add_argument("--clients", type=int, help="clients sending and reading in parallel (6)")
    g.add_argument("--duration", type=float, help="seconds of workload (10)")
    g.add_argument("--rate", type=float, help="requests/s over all clients (0: as fast as replies come)")
    g.add_argument("--read-fraction", type=float, help="share of reads among requests (0.2)")
    g.add_argument("--churn", type=float, help="a device added or revoked every S seconds (0: none)")
    g.add_argument("--timeout", type=float, help="a client's wait for a reply, seconds (6)")
    g.add_argument("--settle", type=float, help="seconds healed before the final reads (3)")
    g.add_argument("--settle-max", type=float, help="longest wait for everything to arrive (25)")
    g = ap.add_argument_group("the network and its faults")
    g.add_argument("--latency", type=float, help="fixed delay per message, ms (0)")
    g.add_argument("--jitter", type=float, help="plus a uniform random delay up to this, ms (0)")
    g.add_argument("--loss", type=float, help="probability a node-to-node message is lost")
    g.add_argument("--dup", type=float, help="probability it is delivered twice")
    g.add_argument("--reorder", type=float, help="probability it is held back (reordering)")
    g.add_argument("--reorder-ms", type=float, help="longest hold-back, ms (50)")
    g.add_argument("--partition", action="store_true", default=None, help="partitions that heal")
    g.add_argument("--partition-every", type=float, help="mean seconds between partitions (3)")
    g.add_argument("--partition-for", type=float, help="seconds a partition lasts (1.5)")
    g.add_argument("--kill", action="store_true", default=None,
                   help="kill -9 random nodes (any role), restarted on their state")
    g.add_argument("--kill-every", type=float, help="mean seconds between kills (3)")
    g.add_argument("--kill-on", metavar="TYPE",
                   help="with --kill: each kill picks a device host and waits until it "
                        "writes a line of this type (e.g. sent), then kills it at once")
    g.add_argument("--down-for", type=float, help="seconds a killed node stays down (1)")
    g.add_argument("--max-down", type=int, help="nodes down at once at most (1)")
    g.add_argument("--attacks", help="comma-separated attacks to play (instead of the workload)")
    g.add_argument("--diagram-max", type=int, help="arrows drawn in messages.svg (2000)")
    o = ap.parse_args(argv)
    o.expect_all_ok = None
    if o.list:
        for name, sc in SCENARIOS.items():
            shown = {k: v for k, v in sc.items() if DEFAULTS.get(k) != v}
            print("%-24s %s" % (name, " ".join("%s=%s" % kv for kv in sorted(shown.items()))))
        sys.exit(0)
    resolve(o)
    if o.kill and not o.state:
        sys.exit("net: --kill needs state (without --state-dir a killed node forgets everything)")
    return o


def commit_stats(run_dir):
    """{node: [commits, ms spent committing, slowest ms, commits over 50 ms]}
    over the whole run, from the line each node prints on stderr at a clean
    exit (SECURITOR_STATE_STATS)."""
    out = {}
    logs = os.path.join(run_dir, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        with open(os.path.join(logs, name), errors="replace") as f:
            m = re.search(r"state: (\d+) commits, \d+ rows, ([\d.]+) ms committing"
                          r"(?:, the slowest ([\d.]+) ms, (\d+) over \d+ ms)?", f.read())
        if m:
            nid = name.split(".")[0]
            c, ms, slowest, slow = out.get(nid, [0, 0.0, 0.0, 0])
            out[nid] = [c + int(m.group(1)), round(ms + float(m.group(2)), 1),
                        max(slowest, float(m.group(3) or 0)), slow + int(m.group(4) or 0)]
    return out


def print_bench(res, bench):
    f = res["figures"]
    b = f.get("bench", {})
    rate = b.get("delivered_sends_per_s", 0)
    lat = f["delivery_latency_ms"]
    per_env = b.get("node_msgs_per_envelope")

    def quants(q):
        return "%s / %s / %s / %s" % (q.get("p50"), q.get("p95"), q.get("p99"), q.get("max"))
    rows = [
        ("delivered sends/s (end to end)", "%.0f" % rate, ">= 1000", rate >= 1000),
        ("  its delivery p50/p95/p99/max, ms", quants(lat), "", None),
    ]
    paced = b.get("paced")
    if paced:
        # The p99 target holds at the target rate: the harness must have
        # offered it (arrivals are random: 10 s at 1,000/s vary by about 1%)
        # and every send must have arrived.
        offered = bench["paced_rate"]
        span = bench["paced_window"][1] - bench["paced_window"][0]
        made = paced["sends_in_window"] / span if span > 0 else 0.0
        kept_up = (made >= 0.95 * offered and
                   paced["delivered_in_window"] == paced["sends_in_window"])
        pl = paced["latency_ms"]
        late = paced.get("late_ms") or {}
        rows += [
            ("paced: %.0f sends/s offered, open loop" % offered,
             "%.0f/s made, %d of %d delivered" % (made, paced["delivered_in_window"],
                                                 paced["sends_in_window"]),
             "all", kept_up),
            ("  sent after due (harness), p99/max ms", "%s / %s" % (late.get("p99"), late.get("max")),
             "", None),
            ("  its delivery p50/p95/p99/max, ms", quants(pl), "p99 < 50",
             kept_up and pl.get("p99") is not None and pl["p99"] < 50),
        ]
        clear = paced.get("latency_ms_clear")
        if clear is not None:  # state on: the disk probe ran
            rows.append(("  the same, clear of disk stalls", "%s (%d of %d deliveries)" % (
                quants(clear), clear["n"], pl["n"]), "", None))
        pc = bench.get("paced_cpu")
        if pc and pc["busy_share"] is not None and paced["sends_in_window"]:
            # The machine's own limit in the same run: how busy the cores
            # were at the offered rate, and the CPU each send cost.
            per = 1e6 / paced["sends_in_window"]
            rows += [
                ("  the %d cores meanwhile" % pc["cores"],
                 "%.0f%% busy (%.0f%% stolen); CPU per send: nodes %.0f us, harness %.0f us" % (
                     100 * pc["busy_share"], 100 * pc["steal_share"],
                     per * sum(pc["nodes_s"].values()), per * pc["harness_s"]), "", None),
                ("  node CPU per send by thread, us", " ".join(
                    "%s=%.0f" % (k.replace(" ", "/"), per * v)
                    for k, v in pc["nodes_s"].items() if per * v >= 0.5), "", None),
            ]
    rows += [
        ("node-to-node messages per envelope", "%s" % per_env, "<= 4",
         per_env is not None and per_env <= 4),
        ("node-to-node messages per send", "%s" % b.get("node_msgs_per_send"), "", None),
        ("envelopes per send", "%s" % b.get("envelopes_per_send"), "", None),
        ("harness CPU / wall", "%.2f s / %.2f s (%.0f%% of one core)" % (
            bench["harness_cpu_s"], bench["wall_s"], 100 * bench["harness_cpu_share"]), "", None),
        ("node CPU, seconds", " ".join("%s=%s" % kv for kv in sorted(bench["node_cpu_s"].items())),
         "", None),
    ]
    commits = bench.get("node_commits") or {}
    if commits:  # the whole run's, setup included: what each commit (its fsync) takes
        rows.append(("commits x mean ms (whole run)", " ".join(
            "%s=%dx%.1f" % (n, c, ms / c) for n, (c, ms, _, _) in sorted(commits.items()) if c),
            "", None))
        rows.append(("commits over 50 ms, the slowest ms", " ".join(
            "%s=%d/%.0f" % (n, slow, slowest)
            for n, (c, _, slowest, slow) in sorted(commits.items()) if c), "", None))
    disk = b.get("disk_probe_ms")
    if disk and disk.get("n"):  # the machine's own limit, measured in the same run
        rows.append(("disk alone (64 KiB + fdatasync, 50/s)",
                     "p50/p99/max %s / %s / %s ms, %d of %d over 50" % (
                         disk["p50"], disk["p99"], disk["max"], disk["over_50"], disk["n"]),
                     "", None))
        if disk["stalls"]:
            rows.append(("  its first stalls (at s: ms)", " ".join(
                "%.1f:%.0f" % (t, ms) for t, ms in disk["stalls"][:8]), "", None))
        if disk.get("error"):
            rows.append(("  the probe stopped", disk["error"], "", None))
    print("\nbench: %d device nodes, %d users x %d devices, state %s; a closed loop of %d "
          "clients for %.0f s (the most it delivers), then an open loop at the target rate"
          % (res["options"]["device_nodes"], res["options"]["users"],
             res["options"]["devices_per_user"], "on" if res["options"]["state"] else "off",
             bench["clients"], bench["window"][1] - bench["window"][0]))
    for name, val, target, ok in rows:
        mark = "" if ok is None else ("PASS" if ok else "FAIL")
        print("  %-38s %-34s %-10s %s" % (name, val, target, mark))


def main(argv):
    o = parse_args(argv)
    if o.route_bench:
        return route_bench(o, o.route_bench)
    node_argv, env = node_command(o)
    if o.bench:
        env["SECURITOR_STATE_STATS"] = "1"  # each node's commits, printed at exit
    run_dir = make_run_dir(o)
    net = Net(o, run_dir, node_argv, env)
    meta = {"k": "meta", "version": 1, "nodes": net.node_ids, "directory": DIRECTORY,
            "relay": RELAY, "device_nodes": net.device_nodes, "keys": net.keys,
            "state_dir": os.path.join(run_dir, "state") if o.state else None,
            "cmd": net.cmd_for("nX"), "seed": o.seed, "scenario": o.scenario, "bench": o.bench,
            "options": {k: getattr(o, k) for k in DEFAULTS}, "harness": HARNESS,
            "inject_base": INJECT_BASE}
    net.jrec(meta)
    sys.stderr.write("net: seed %d, run folder %s\n" % (o.seed, run_dir))
    # Python's cyclic collector stopped the harness about 220 times in a
    # bench run (116 ms in all, up to 27 ms at once): every message in
    # flight waits meanwhile, a latency of the harness's own. What a run
    # makes is freed by reference counts; the few cycles wait for the
    # checker (whose full collections take up to 300 ms).
    gc.disable()
    start_nodes(net)
    bench = None
    try:
        if o.bench:
            w, bench = run_bench(net, o)
        elif o.attacks:
            run_attacks(net, o)
        else:
            run_workload(net, o)
    finally:
        net.event("counts", **net.counts)
        net.stop()
        net.jf.close()
        gc.enable()
    res = net_check.check(run_dir, diagram_max=o.diagram_max, bench=bench,
                          expect_all_ok=o.expect_all_ok)
    if bench:
        bench["node_commits"] = commit_stats(run_dir)
        res["figures"]["bench"].update({k: v for k, v in bench.items() if k != "window"})
        net_check.write_results(run_dir, res)
    net_check.print_summary(res)
    if bench:
        print_bench(res, bench)
    print("net: %s  (journal, results.json, messages.svg in %s)"
          % ("PASS" if res["ok"] else "FAIL", run_dir))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
