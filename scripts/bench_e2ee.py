"""e2ee-node against libolm, measured in the same run (imported by bench.py).

This VM's speed moves by up to 45% within minutes, so e2ee-node is compared
with a peer measured minutes apart rather than with figures from other days:
libolm 3.2 (bench/olm_bench, in-process, no JSON) runs the same three
workloads, 14-byte plaintexts:
  session setups  bundle, X3DH (Olm's 3DH), the first (prekey) message
                  encrypted and decrypted;
  ping-pong       round trips on an established session, a -> b -> a: the
                  sender alternates, so every message is a DH ratchet step;
  one-way         a -> b on one chain (send + receive), no ratchet step.

The runs are interleaved: in each round every workload runs on the node and
then on libolm, for as long as the node's run took, so a change in the VM's
speed favours neither. A round's ratio is the node's rate over libolm's; the
"best-of" ratio is the node's best rate over libolm's best rate.

The node is driven through its stdin/stdout with JSON, pipelined. Setups and
ping-pong are sequential within one conversation (each request needs the
previous reply), so they run over 100 independent pairs: every message is
still a full X3DH or a DH ratchet step. Setups are streamed: each pair's next
request is written once its previous reply is read (in groups of
STREAM_WRITE), so the node always has requests waiting; under steady input it
writes its replies about 5 ms after making them (src/node/output.c). A batch
per step left it idle 7-14% of the time (a setup is four steps, two of them
cheap). Ping-pong and one-way run one pipelined batch per step (a writer
thread feeds requests while the replies are read). The node's clock runs
while requests are in flight, from the first written to the last reply read;
building the next batch in Python is left out (the node is idle then).
"Per node CPU second" uses the node's own CPU time (from /proc), all its threads.

Beside the rates: instructions per operation counted by callgrind (the node:
the difference between two runs that differ only by the measured operations,
all threads; libolm: its timed sections only), which do not move with the
VM's pace; and the setup bound, from `openssl speed` in the same run.
"""
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

CLK = os.sysconf("SC_CLK_TCK")
PLAINTEXT = "Secret message"  # 14 bytes, as olm_bench sends
ROUNDS = int(os.environ.get("SECURITOR_BENCH_ROUNDS", "5"))
K = 100            # pairs for setups and ping-pong
SETUP_ROUNDS = 10  # setups per pair per measurement (each pair has 100 one-time prekeys)
PING_ROUNDS = 20   # round trips per pair per measurement
ONE_WAY = 100_000  # messages per measurement

# What a node setup costs in X25519 operations (counted from src/e2ee, see
# README "e2ee-node"). In the measured setup (get_bundle, initiate_conversation
# with the bundle, send_message, receive_message; every user's keys are made
# before timing):
#   Alice: X3DH with a one-time prekey, 4 DH (x3dh_initiate); the ratchet
#          init, 1 DH (session_init_alice); 2 key generations (the base key in
#          initiate(), her first ratchet key in session_init_alice); the
#          signed-prekey signature, 1 Ed25519 verification (curve_verify) the
#          first time she sees that bundle: curve_verify remembers valid
#          signatures, and each pair sets up SETUP_ROUNDS sessions in a
#          process with the same bundle (its one-time prekey aside), so 1 in
#          SETUP_ROUNDS setups verifies.
#   Bob:   X3DH, 4 DH (x3dh_respond); the first receive's DH ratchet step,
#          1 DH (ratchet_decrypt); his next ratchet key waits for his first
#          send (Double Ratchet §6.5), so no key generation.
#   The first message itself (ratchet_encrypt on Alice's new sending chain)
#   needs no DH.
SETUP_DH, SETUP_KEYGEN, SETUP_VERIFY = 10, 2, 1 / SETUP_ROUNDS
TARGETS = {"setups": 2.5, "ping-pong": 3.0, "one-way": 2.0}  # node / libolm
BOUND_TARGET = 0.70  # node setups / the setup bound
STREAM_WRITE = 16  # streamed setups: new requests are written after every 16 replies read
WORKLOADS = (("setups", "session setups", "setup"),
             ("ping-pong", "ping-pong", "round trip"),
             ("one-way", "one-way messages", "message"))


class Driver:
    def __init__(self, argv, stderr=subprocess.DEVNULL, env=None):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=stderr, env=dict(os.environ, **env) if env else None)
        self.buf = b""
        self.mid = 0
        self.busy = 0.0  # seconds with requests in flight

    def line(self, src, body):
        self.mid += 1
        body["msg_id"] = self.mid
        return (json.dumps({"src": src, "dest": "n1", "body": body}) + "\n").encode()

    def read_lines(self, n):
        out = []
        fd = self.p.stdout.fileno()
        while len(out) < n:
            while b"\n" not in self.buf:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("e2ee-node exited early")
                self.buf += chunk
            parts = self.buf.split(b"\n")
            self.buf = parts.pop()
            out += parts
        return out

    def call(self, src, body):
        self.p.stdin.write(self.line(src, body))
        self.p.stdin.flush()
        return json.loads(self.read_lines(1)[0])["body"]

    def pipeline(self, lines):
        """Writes all lines (from a thread) while reading as many replies."""
        def writer():
            for i in range(0, len(lines), 512):
                self.p.stdin.write(b"".join(lines[i:i + 512]))
            self.p.stdin.flush()
        t0 = time.perf_counter()
        t = threading.Thread(target=writer)
        t.start()
        replies = self.read_lines(len(lines))
        t.join()
        self.busy += time.perf_counter() - t0
        return replies

    def stream(self, lines, on_reply):
        """Writes lines, and hands each reply read to on_reply, whose list of
        further lines is written at once, until every request is answered.
        One thread: the writes never block (select), so neither side waits
        on a full pipe while the other does. New requests are written every
        STREAM_WRITE replies, not only after all the replies of one read (the
        node would wait for those) nor after each (a wake-up of the node's
        reader per line)."""
        out = bytearray(b"".join(lines))
        outstanding = len(lines)
        wfd, rfd = self.p.stdin.fileno(), self.p.stdout.fileno()
        self.p.stdin.flush()
        os.set_blocking(wfd, False)
        t0 = time.perf_counter()
        try:
            while outstanding:
                readable, writable, _ = select.select([rfd], [wfd] if out else [], [])
                if writable:
                    self._write_some(wfd, out)
                if readable:
                    chunk = os.read(rfd, 1 << 20)
                    if not chunk:
                        raise RuntimeError("e2ee-node exited early")
                    parts = (self.buf + chunk).split(b"\n")
                    self.buf = parts.pop()
                    for i, reply in enumerate(parts):
                        more = on_reply(reply)
                        outstanding += len(more) - 1
                        out += b"".join(more)
                        if i % STREAM_WRITE == STREAM_WRITE - 1:
                            self._write_some(wfd, out)
        finally:
            os.set_blocking(wfd, True)
        self.busy += time.perf_counter() - t0

    @staticmethod
    def _write_some(fd, out):
        """Writes what the pipe takes of out now, and drops it from out."""
        try:
            del out[:os.write(fd, out)]
        except BlockingIOError:
            pass

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime

    def rss_kib(self, key="VmRSS"):
        with open("/proc/%d/status" % self.p.pid) as f:
            for l in f:
                if l.startswith(key + ":"):
                    return int(l.split()[1])
        return 0

    def close(self):
        self.p.stdin.close()
        return self.p.wait()


def em_of(reply_line):
    """The encrypted_message object of a message_encrypted reply, as text."""
    s = reply_line.decode()
    i = s.index('"encrypted_message":') + len('"encrypted_message":')
    return s[i:s.index("}", i) + 1]


def receive_line(d, to, frm, reply):
    d.mid += 1
    return ('{"src":"%s","dest":"n1","body":{"type":"receive_message","msg_id":%d,'
            '"sender":"%s","encrypted_message":%s}}\n' % (to, d.mid, frm, em_of(reply))).encode()


# ---- the node's workloads ------------------------------------------------------
# Each returns how many operations it did; the driver's busy time is theirs.

def prepare_pairs(d, k):
    """Untimed: the users of k pairs, with their keys (made on first use)."""
    d.pipeline([d.line(name % i, {"type": "get_bundle"})
                for i in range(k) for name in ("a%d", "b%d")])


def node_setups(d, k, rounds):
    """bundle -> X3DH -> first (prekey) message decrypted, rounds times on
    each of k pairs, streamed (see the module's comment)."""
    steps = {}  # msg_id -> (pair, what its reply answers)
    left = [rounds] * k

    def request(i, src, what, body):
        line = d.line(src, body)
        steps[d.mid] = (i, what)
        return line

    def bundle(i):
        return request(i, "b%d" % i, "bundle", {"type": "get_bundle"})

    def on_reply(line):
        body = json.loads(line)["body"]
        i, what = steps.pop(body["in_reply_to"])
        if what == "bundle":
            assert "one_time_pre_key" in body, "a bundle without a one-time prekey"
            for key in ("type", "msg_id", "in_reply_to"):
                body.pop(key)
            return [request(i, "a%d" % i, "initiate",
                            {"type": "initiate_conversation", "recipient": "b%d" % i,
                             "bob_public_key": body})]
        if what == "initiate":
            assert body["type"] == "conversation_initiated", body
            return [request(i, "a%d" % i, "send",
                            {"type": "send_message", "recipient": "b%d" % i,
                             "plaintext": PLAINTEXT})]
        if what == "send":
            assert body["type"] == "message_encrypted", body
            line = receive_line(d, "b%d" % i, "a%d" % i, line)
            steps[d.mid] = (i, "receive")
            return [line]
        assert body["type"] == "message_decrypted", body
        left[i] -= 1
        return [bundle(i)] if left[i] else []

    d.stream([bundle(i) for i in range(k)], on_reply)
    return k * rounds


def messages(d, k, frm, to):
    """One message from frm % i to to % i on each of k pairs (or from frm to
    to when they are plain names)."""
    def name(fmt, i):
        return fmt % i if "%" in fmt else fmt
    sent = d.pipeline([d.line(name(frm, i), {"type": "send_message", "recipient": name(to, i),
                                             "plaintext": PLAINTEXT}) for i in range(k)])
    got = d.pipeline([receive_line(d, name(to, i), name(frm, i), sent[i]) for i in range(k)])
    assert all(b'"message_decrypted"' in l for l in got), got[0]


def node_ping_pong(d, k, rounds):
    """Round trips a -> b -> a; after answer_all, every message is a DH ratchet step."""
    for _ in range(rounds):
        messages(d, k, "a%d", "b%d")
        messages(d, k, "b%d", "a%d")
    return k * rounds


def answer_all(d, k):
    """Untimed: b answers a on every pair, so a's next message is a ratchet step."""
    messages(d, k, "b%d", "a%d")


def prepare_one_way(d):
    """Untimed: alice's prekey message, bob's answer, and alice's ratchet step:
    the measured messages are normal messages on one chain."""
    messages(d, 1, "alice", "bob")
    messages(d, 1, "bob", "alice")
    messages(d, 1, "alice", "bob")


def node_one_way(d, n):
    """n sends from alice, pipelined, then the n receives by bob."""
    replies = d.pipeline([d.line("alice", {"type": "send_message", "recipient": "bob",
                                           "plaintext": PLAINTEXT}) for _ in range(n)])
    recvs = [receive_line(d, "bob", "alice", r) for r in replies]
    out = d.pipeline(recvs)
    assert all(b'"message_decrypted"' in l for l in out)
    return n


def timed(d, fn, *args):
    """(operations, seconds in flight, node CPU seconds) of fn(d, *args)."""
    b0, c0 = d.busy, d.cpu_seconds()
    n = fn(d, *args)
    return n, d.busy - b0, d.cpu_seconds() - c0


# ---- libolm and openssl speed ---------------------------------------------------

def olm_run(olm, workload, seconds=None, count=None):
    argv = [olm, "--workload", workload]
    argv += ["--seconds", "%.3f" % seconds] if seconds else ["--count", str(count)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def openssl_speed():
    """(X25519 derives/s, Ed25519 verifications/s) from `openssl speed`, or None."""
    try:
        sp = subprocess.run(["openssl", "speed", "-seconds", "1", "ecdhx25519", "ed25519"],
                            capture_output=True, text=True, timeout=120).stdout
        x = re.search(r"ecdh \(X25519\)\s+\S+s\s+([\d.]+)", sp)
        e = re.search(r"EdDSA \(Ed25519\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", sp)
        return float(x.group(1)), float(e.group(2))
    except Exception:  # noqa: BLE001 - informative only
        return None


# ---- instruction counts ---------------------------------------------------------

def callgrind_total(argv):
    """Instructions callgrind collects over a run of argv, or None when
    valgrind is missing."""
    if not shutil.which("valgrind"):
        return None
    with tempfile.TemporaryFile() as err:
        assert subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
                              + argv, stdout=subprocess.DEVNULL, stderr=err).returncode == 0
        err.seek(0)
        return int(re.search(rb"Collected : (\d+)", err.read()).group(1))


def node_instructions(binary):
    """Instructions per setup, per round trip and per one-way message, both
    threads. One run under callgrind: an echo request between the phases is
    a marker at which callgrind writes out what it counted since the last one
    (--dump-before on the echo handler), so the keys made beforehand (whose
    cost is random: identity keys are redrawn until their sign bit is 0),
    start-up and exit are left out. Setups are counted apart for a pair's
    first (its bundle's signature verified, its peers made) and the next
    ones (the signature remembered), and weighed as the timed workload mixes
    them: 1 first in SETUP_ROUNDS. Returns (counts, None) or (None, why)."""
    if not shutil.which("valgrind"):
        return None, "valgrind is missing"
    k, setup_rounds, ping_rounds, one_way = 4, 4, 5, 1000
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg")
        d = Driver(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                    "--dump-before=*echo*", binary])

        def mark():
            assert d.call("bench", {"type": "echo", "echo": "mark"})["type"] == "echo_ok"
        prepare_pairs(d, k)
        prepare_one_way(d)
        mark()                       # dump 1: everything before
        mark()                       # dump 2: an empty interval (the marker's own cost)
        node_setups(d, k, 1)         # each pair's first setup
        mark()                       # dump 3
        node_setups(d, k, setup_rounds)
        mark()                       # dump 4
        answer_all(d, k)
        mark()                       # dump 5
        node_ping_pong(d, k, ping_rounds)
        mark()                       # dump 6
        node_one_way(d, one_way)
        mark()                       # dump 7
        assert d.close() == 0
        totals = {}
        for i in range(2, 8):
            try:
                with open("%s.%d" % (out, i)) as f:
                    totals[i] = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
            except (OSError, AttributeError):
                return None, "no callgrind dump at the echo markers (is echo's handler renamed?)"
    empty = totals[2]
    if empty > 200_000:
        return None, "the echo marker costs %d instructions: not a marker" % empty
    first = (totals[3] - empty) / k
    again = (totals[4] - empty) / (k * setup_rounds)
    return {"setups": (first + (SETUP_ROUNDS - 1) * again) / SETUP_ROUNDS,
            "setups-first": first, "setups-again": again,
            "ping-pong": (totals[6] - empty) / (k * ping_rounds),
            "one-way": (totals[7] - empty) / one_way}, None


def olm_instructions(olm):
    """libolm's instructions per operation: olm_bench toggles collection
    around its timed sections, so the total is theirs alone."""
    out = {}
    for workload, count in (("setups", 30), ("ping-pong", 20), ("one-way", 1000)):
        total = callgrind_total(["--collect-atstart=no", olm, "--workload", workload,
                                 "--count", str(count), "--warmup", "2"])
        if total is None:
            return None
        out[workload] = total / count
    return out


# ---- the run ----------------------------------------------------------------------

def fmt_rate(x):
    return "{:,.0f}/s".format(x)


def fmt_int(x):
    return "-" if x is None else "{:,.0f}".format(x)


def run_all(build):
    binary = os.path.join(build, "e2ee-node")
    olm = os.path.join(build, "bench", "olm_bench")
    if not os.access(olm, os.X_OK):
        olm = None
        print("\n(bench/olm_bench is not built: libolm-dev is missing; node figures only)")

    node = {w: [] for w, _, _ in WORKLOADS}  # per round: (ops, seconds, CPU seconds)
    peer = {w: [] for w, _, _ in WORKLOADS}  # per round: libolm's rate
    peer_cpu = {w: [] for w, _, _ in WORKLOADS}  # per round: libolm's rate per CPU second
    speed, keygen = [], []                   # per round
    impl = ["libolm"]
    rss = {}

    def olm_after(workload, node_seconds):
        """libolm on the workload for as long as the node's run just took."""
        if olm:
            r = olm_run(olm, workload, max(node_seconds, 0.5))
            impl[0] = r["impl"]
            peer[workload].append(r["rate"])
            peer_cpu[workload].append(r["ops"] / max(r["cpu_seconds"], 1e-9))

    for _ in range(ROUNDS):
        d = Driver([binary])
        prepare_pairs(d, K)
        node["setups"].append(timed(d, node_setups, K, SETUP_ROUNDS))
        olm_after("setups", node["setups"][-1][1])
        speed.append(openssl_speed())
        keygen.append(olm_run(olm, "keygen", 1.0)["keygen_in_x25519"] if olm else None)
        answer_all(d, K)
        node["ping-pong"].append(timed(d, node_ping_pong, K, PING_ROUNDS))
        olm_after("ping-pong", node["ping-pong"][-1][1])
        rss["pairs"] = max(rss.get("pairs", 0), d.rss_kib("VmHWM"))
        assert d.close() == 0

        d = Driver([binary])
        prepare_one_way(d)
        node["one-way"].append(timed(d, node_one_way, ONE_WAY))
        olm_after("one-way", node["one-way"][-1][1])
        rss["one-way"] = max(rss.get("one-way", 0), d.rss_kib("VmHWM"))
        assert d.close() == 0

    # Bytes of state per idle session: RSS before and after 2 * N sessions
    # between N pairs of existing users (both ends hold a session).
    d = Driver([binary])
    pairs = 300
    for i in range(pairs):
        d.call("a%d" % i, {"type": "get_bundle"})
        d.call("b%d" % i, {"type": "get_bundle"})
    before = d.rss_kib()
    for i in range(pairs):
        em = d.call("a%d" % i, {"type": "send_message", "recipient": "b%d" % i,
                                "plaintext": "hi"})["encrypted_message"]
        d.call("b%d" % i, {"type": "receive_message", "sender": "a%d" % i,
                           "encrypted_message": em})
    per_session = (d.rss_kib() - before) * 1024 / (2 * pairs)
    d.close()

    node_ins, ins_why = node_instructions(binary)
    olm_ins = olm_instructions(olm) if olm else None

    rate = {w: [n / s for n, s, _ in node[w]] for w, _, _ in WORKLOADS}
    cpu_rate = {w: [n / max(c, 1e-9) for n, _, c in node[w]] for w, _, _ in WORKLOADS}

    print("\ne2ee-node against %s: %d round(s), interleaved (node, %s, node, ...);\n"
          "14-byte plaintexts; the node through its pipe with JSON, %s in-process without"
          % (impl[0], ROUNDS, "libolm", "libolm"))
    row = "  %-16s %-10s %10s %10s %6s %11s %13s %7s %10s %10s"
    print(row % ("", "", "best rate", "", "ratio", "ratio,", "target", "ratio", "instructions",
                 ""))
    print(row % ("workload", "per", "node", "libolm", "best", "rounds", "(ratio best)", "CPU s",
                 "node", "libolm"))
    for w, label, unit in WORKLOADS:
        best = max(rate[w])
        olm_cols = ("-",) * 5
        if olm:
            ratios = [a / b for a, b in zip(rate[w], peer[w])]
            ratio = best / max(peer[w])
            olm_cols = (fmt_rate(max(peer[w])), "%.2fx" % ratio,
                        "%.2f-%.2fx" % (min(ratios), max(ratios)),
                        ">= %.1fx %s" % (TARGETS[w], "PASS" if ratio >= TARGETS[w] else "FAIL"),
                        "%.2fx" % (max(cpu_rate[w]) / max(peer_cpu[w])))
        print(row % ((label, unit, fmt_rate(best)) + olm_cols +
                     (fmt_int(node_ins and node_ins[w]), fmt_int(olm_ins and olm_ins[w]))))
    print("  ratio best: the node's best rate over libolm's best (wall-clock; the node through\n"
          "  its pipe). rounds: the lowest and the highest of each round's node rate over the\n"
          "  libolm run right after it. ratio CPU s: the same per second of CPU time (the\n"
          "  node's threads, its key pool's included, against libolm's one), less moved by\n"
          "  other load on the VM.\n"
          "  instructions: per operation, counted by callgrind; unlike the rates they do not\n"
          "  move with the VM's pace. A round trip is two messages, each a DH ratchet step.\n"
          "  libolm's setups verify no signature (Olm's session API has none); the node's\n"
          "  verify the signed prekey's.")
    if ins_why:
        print("  (no instruction counts for the node: %s)" % ins_why)
    else:
        print("  The node's setups as timed: 1 in %d is a pair's first, %s instructions (its\n"
              "  bundle's signature verified, its peers made), the others %s each."
              % (SETUP_ROUNDS, fmt_int(node_ins["setups-first"]),
                 fmt_int(node_ins["setups-again"])))
    if olm:
        print("  each round, node / libolm (and the same per CPU second):")
        for r in range(ROUNDS):
            print("    %d  %s" % (r + 1, "  ".join(
                "%s %s/%s = %.2fx (%.2fx)" % (w, "{:,.0f}".format(rate[w][r]),
                                              "{:,.0f}".format(peer[w][r]),
                                              rate[w][r] / peer[w][r],
                                              cpu_rate[w][r] / peer_cpu[w][r])
                for w, _, _ in WORKLOADS)))
    print("  per second of CPU time, best: the node (all threads) %s setups, %s round\n"
          "  trips, %s one-way messages"
          % tuple(fmt_rate(max(cpu_rate[w])) for w, _, _ in WORKLOADS) +
          ("; libolm %s, %s, %s" % tuple(fmt_rate(max(peer_cpu[w])) for w, _, _ in WORKLOADS)
           if olm else ""))
    print("  the node's peak RSS: %.1f MiB (setups, ping-pong), %.1f MiB (one-way); idle\n"
          "  session state: about %.0f bytes per session"
          % (rss["pairs"] / 1024, rss["one-way"] / 1024, per_session))

    # The setup bound: X25519 derives/s over the X25519-equivalents of a setup.
    # openssl speed divides by CPU (user) time, so the like-for-like figure of
    # the node is its setups per CPU second; wall-clock is shown too.
    print("  setup bound, from openssl speed and olm_bench keygen in each round:")
    per_round = []
    kgs = [k for k in keygen if k is not None]
    kg = statistics.median(kgs) if kgs else None
    for r in range(ROUNDS):
        if not speed[r] or kg is None:
            continue
        x, v = speed[r]
        eq = SETUP_DH + SETUP_KEYGEN * kg + SETUP_VERIFY * x / v
        per_round.append((x / eq, x, v, eq, cpu_rate["setups"][r] * eq / x,
                          rate["setups"][r] * eq / x))
    if not per_round:
        print("    (unavailable: openssl speed or olm_bench is missing)")
        return
    bound, x, v, eq, _, _ = max(per_round)
    print("    X25519: %s derives; Ed25519: %s verifications (1 = %.2f X25519), per CPU\n"
          "    second; an X25519 key generation = %.2f X25519 (EVP_PKEY_keygen against\n"
          "    EVP_PKEY_derive per CPU second, the median of the rounds: %.2f-%.2f)"
          % (fmt_rate(x), fmt_rate(v), x / v, kg, min(kgs), max(kgs)))
    print("    a node setup: %d X25519 + %d key generations + %.1f Ed25519 verification (a\n"
          "      bundle is verified once per process, and each pair sets up %d sessions)\n"
          "      = %d + %d x %.2f + %.1f x %.2f = %.1f X25519-equivalents (%.1f-%.1f over the rounds)"
          % (SETUP_DH, SETUP_KEYGEN, SETUP_VERIFY, SETUP_ROUNDS, SETUP_DH, SETUP_KEYGEN, kg,
             SETUP_VERIFY, x / v, eq, min(p[3] for p in per_round), max(p[3] for p in per_round)))
    print("    bound: %s setups per CPU second (the highest of the rounds' bounds)"
          % fmt_rate(bound))
    for label, best, fracs in (
            ("per CPU second (all threads)", max(cpu_rate["setups"]), [p[4] for p in per_round]),
            ("wall-clock, through its pipe", max(rate["setups"]), [p[5] for p in per_round])):
        frac = best / bound
        print("    the node %-29s %8s = %3.0f%% of it (rounds %.0f-%.0f%%), >= %.0f%%: %s"
              % (label, fmt_rate(best), 100 * frac, 100 * min(fracs), 100 * max(fracs),
                 100 * BOUND_TARGET, "PASS" if frac >= BOUND_TARGET else "FAIL"))
    print("    (each round's fraction: its node rate over its own bound. openssl speed divides\n"
          "    by CPU time: the node's CPU rate is the like-for-like figure)")
