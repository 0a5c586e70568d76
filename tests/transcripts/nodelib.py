"""nodelib - drive a node binary over its JSON protocol, as a user would.

Standard library only. A test is a function registered with @test; run_all()
runs them, prints one line per failure and ends with "N passed, N failed".
"""
import json
import os
import random
import re
import select
import subprocess
import sys
import time
import traceback

_TESTS = []


class Skipped(Exception):
    """Raised by skip(): the test could not run here; counted, not passed."""


def skip(reason):
    raise Skipped(reason)


def test(fn):
    _TESTS.append(fn)
    return fn


class Node:
    """A running node process; send() a body, recv() a reply."""

    def __init__(self, binary, args=(), env=None, src="client", dest="n1"):
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([binary, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env)
        self.src, self.dest = src, dest
        self.next_id = 1
        self._buf = b""

    def send_line(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def send(self, body, src=None, dest=None):
        body = dict(body)
        if "msg_id" not in body:
            body["msg_id"] = self.next_id
            self.next_id += 1
        self.send_line(json.dumps({"src": src or self.src, "dest": dest or self.dest,
                                   "body": body}))
        return body["msg_id"]

    def recv(self, timeout=30.0):
        """One reply line, parsed; fails the test on a timeout."""
        fd = self.proc.stdout.fileno()
        parts = [self._buf]
        while b"\n" not in parts[-1]:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise AssertionError("no reply within %.1fs" % timeout)
            chunk = os.read(fd, 1 << 22)
            if not chunk:
                raise AssertionError("node closed stdout; stderr: %r" % self.stderr_text())
            parts.append(chunk)
        line, self._buf = b"".join(parts).split(b"\n", 1)
        msg = json.loads(line)
        assert set(msg) == {"src", "dest", "body"}, "reply keys: %r" % sorted(msg)
        return msg

    def call(self, body, src=None, dest=None):
        """send + recv; checks in_reply_to and returns the reply body."""
        mid = self.send(body, src, dest)
        msg = self.recv()
        assert msg["body"].get("in_reply_to") == mid, msg
        return msg["body"]

    def close(self, timeout=60):
        """Closes stdin; returns (remaining stdout lines, stderr text, exit code)."""
        out, err = self.proc.communicate(timeout=timeout)
        data = self._buf + out
        lines = [json.loads(l) for l in data.split(b"\n") if l]
        return lines, err.decode(errors="replace"), self.proc.returncode

    def stderr_text(self):
        try:
            return self.proc.stderr.read1(65536).decode(errors="replace")
        except Exception:  # noqa: BLE001 - diagnostics only
            return ""


# Writable mappings larger than this are address space a sanitizer reserved
# (ASan's and TSan's shadow: terabytes), never the program's data; even
# their page tables take too long to read.
_SCAN_MAX = 1 << 36
_PAGE = os.sysconf("SC_PAGE_SIZE")
# A pagemap entry's top byte: bit 7 "present", bit 6 "swapped".
_IN_USE = bytes(1 if b & 0xC0 else 0 for b in range(256))


def _used_runs(pagemap, lo, hi):
    """The (start, end) address ranges in [lo, hi) whose pages are in memory
    or swap. Pages never touched are left alone: reading them through
    /proc/pid/mem would fault them in, and a sanitizer's shadow would grow
    the node to all of the machine's memory."""
    first, n = lo // _PAGE, (hi - lo) // _PAGE
    step = 1 << 16  # pages per pagemap read (512 KiB of entries)
    for off in range(0, n, step):
        k = min(step, n - off)
        pagemap.seek((first + off) * 8)
        entries = pagemap.read(k * 8)
        used = entries[7::8].translate(_IN_USE)
        i = 0
        while True:
            s = used.find(b"\x01", i)
            if s < 0:
                break
            e = used.find(b"\x00", s)
            e = len(used) if e < 0 else e
            yield lo + (off + s) * _PAGE, lo + (off + e) * _PAGE
            i = e


def memory_holds(pid, needles):
    """Which of the byte strings in `needles` occur anywhere in the writable
    memory of process pid (heap, anonymous mappings, thread stacks), read
    through /proc/pid/mem. Freed heap keeps what was last written there, so
    this finds secrets that were freed without being wiped."""
    found = set()
    longest = max(len(n) for n in needles)
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem, \
            open("/proc/%d/pagemap" % pid, "rb", 0) as pagemap:
        for line in maps:
            parts = line.split()
            if "w" not in parts[1] or (len(parts) > 5 and parts[5].startswith("/")):
                continue  # read-only, or a file's own data (code, libraries)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if hi - lo > _SCAN_MAX:
                continue
            for start, end in _used_runs(pagemap, lo, hi):
                at, tail = start, b""
                while at < end:
                    try:
                        mem.seek(at)
                        chunk = mem.read(min(1 << 22, end - at))
                    except OSError:
                        break  # guard pages and the like
                    if not chunk:
                        raise AssertionError("process %d is gone (its memory reads empty)"
                                             % pid)
                    data = tail + chunk
                    for n in needles:
                        if n in data:
                            found.add(n)
                    tail = data[-(longest - 1):] if longest > 1 else b""
                    at += len(chunk)
    return found


def can_read_memory():
    """Whether this process may read a child's memory (not under every
    sandbox)."""
    p = subprocess.Popen(["sleep", "5"])
    try:
        with open("/proc/%d/mem" % p.pid, "rb", 0) as mem, open("/proc/%d/maps" % p.pid) as m:
            lo = int(m.readline().split("-")[0], 16)
            mem.seek(lo)
            mem.read(1)
        return True
    except OSError:
        return False
    finally:
        p.kill()
        p.wait()


def run_lines(binary, lines, args=(), env=None, timeout=120):
    """Feeds whole lines with stdin closed; returns (replies, stderr, exit code)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    data = b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines)
    p = subprocess.run([binary, *args], input=data, capture_output=True, env=full_env,
                       timeout=timeout)
    replies = [json.loads(l) for l in p.stdout.split(b"\n") if l]
    for r in replies:
        assert set(r) == {"src", "dest", "body"}, r
    return replies, p.stderr.decode(errors="replace"), p.returncode


_FUZZ_BYTES = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"\x00", b"\xff", b"\xc3",
               b"u", b"0", b" ", b"\\u0000", b"\\ud800", b"-", b"1e999", b"null"]


def _damage_value(v, rng):
    """A damaged copy of one JSON leaf value."""
    if isinstance(v, str):
        op = rng.randrange(6)
        if op == 0 and v:  # one character changed (a flipped base64 or hex digit)
            i = rng.randrange(len(v))
            return v[:i] + rng.choice("AZaz09+/=\"\\\u00e9\u0000") + v[i + 1:]
        if op == 1:
            return v[:rng.randrange(len(v) + 1)]
        if op == 2:
            return v + v
        if op == 3:
            return rng.choice(["", "x" * 3000, "\ud83d\udd10", "null"])
        return rng.choice([None, 0, -1, 2 ** 70, 1.5, [], {}, True])
    return rng.choice(["", "1", None, -1, 2 ** 63, 1e308, [v], {"v": v}])


def _damage_tree(obj, rng):
    """Damages one leaf (or drops one member) somewhere inside obj, in place."""
    path = []
    node = obj
    while isinstance(node, (dict, list)) and node:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
        if rng.random() < 0.3:
            break
    if not path:
        return
    parent, key = path[-1]
    if isinstance(parent, dict) and rng.random() < 0.15:
        del parent[key]
    else:
        parent[key] = _damage_value(parent[key], rng)


def fuzz_lines(seeds, count, rng):
    """`count` lines made from the valid request lines `seeds` by random
    damage: half of them with one JSON value changed or dropped (so most
    reach the handlers), half at the byte level: bytes replaced or inserted,
    truncation, a long run of text (which takes the loop's long-string path),
    lines glued together."""
    out = []
    for _ in range(count):
        if rng.random() < 0.5:
            obj = json.loads(rng.choice(seeds))
            for _ in range(rng.randrange(1, 3)):
                body = obj.get("body")
                _damage_tree(body if isinstance(body, dict) and rng.random() < 0.8 else obj, rng)
            out.append(json.dumps(obj).encode())
            continue
        line = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            op = rng.random()
            at = rng.randrange(len(line) + 1)
            if op < 0.35 and line:
                line[min(at, len(line) - 1)] = rng.randrange(1, 256) if rng.random() < 0.3 \
                    else rng.choice(_FUZZ_BYTES)[0]
            elif op < 0.6:
                line[at:at] = rng.choice(_FUZZ_BYTES)
            elif op < 0.7:
                del line[at:]
            elif op < 0.85:
                line[at:at] = b"a" * rng.choice((1023, 1024, 3000))
            else:
                line += rng.choice(seeds)
        out.append(bytes(line).replace(b"\n", b" "))
    return out


def check_fuzz(binary, seeds, env=None, count=3000):
    """Damaged requests never crash or hang the node: it exits 0 with nothing
    on stderr from the sanitizers, and every line it writes is a reply
    {src, dest, body} to one of the requests, in order."""
    seed = int(os.environ.get("SECURITOR_SEED", time.time_ns() % (1 << 30)))
    rng = random.Random(seed)
    seeds = [s.encode() if isinstance(s, str) else s for s in seeds]
    lines = fuzz_lines(seeds, count, rng)
    replies, err, code = run_lines(binary, lines, env=env, timeout=600)
    assert code == 0, (seed, code, err[-2000:])
    assert "runtime error" not in err and "Sanitizer" not in err, (seed, err[-2000:])
    assert 0 < len(replies) <= len(lines), (seed, len(replies))
    assert [r["body"]["msg_id"] for r in replies] == list(range(1, len(replies) + 1)), seed
    assert all(r["body"].get("type") for r in replies), seed
    return len(replies)


def matches(expected, actual, path="body"):
    """The seed-case rule: a string in `expected` is a regex that must match the
    whole actual value; other values must be equal; nested objects recurse;
    keys `expected` does not name are free. Returns a list of mismatches."""
    problems = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return ["%s: expected an object, got %r" % (path, actual)]
        for k, v in expected.items():
            if k not in actual:
                problems.append("%s.%s: missing" % (path, k))
            else:
                problems += matches(v, actual[k], "%s.%s" % (path, k))
    elif isinstance(expected, str):
        if not isinstance(actual, str) or not re.fullmatch(expected, actual, re.S):
            problems.append("%s: %r does not match /%s/" % (path, actual, expected))
    elif expected != actual:
        problems.append("%s: expected %r, got %r" % (path, expected, actual))
    return problems


def check_golden(binary, stem, args=(), env=None):
    """Pipes STEM.in.jsonl through the binary and compares with STEM.out.jsonl
    line by line (matches() rules apply to the whole message)."""
    with open(stem + ".in.jsonl", "rb") as f:
        lines = [l.rstrip(b"\n") for l in f]
    with open(stem + ".out.jsonl") as f:
        want = [json.loads(l) for l in f if l.strip()]
    got, err, code = run_lines(binary, lines, args, env)
    assert code == 0, "exit %d: %s" % (code, err)
    assert len(got) == len(want), "%d replies, expected %d:\n%s" % (
        len(got), len(want), "\n".join(json.dumps(g) for g in got))
    for i, (w, g) in enumerate(zip(want, got)):
        problems = matches(w, g, "reply %d" % (i + 1))
        assert not problems, "\n".join(problems) + "\n got: " + json.dumps(g)


def run_all():
    only = os.environ.get("SECURITOR_ONLY")
    passed = failed = skipped = 0
    for fn in _TESTS:
        if only and only not in fn.__name__:
            continue
        try:
            t0 = time.monotonic()
            fn()
            passed += 1
            if os.environ.get("SECURITOR_TIMING"):
                print("  %-40s %.2fs" % (fn.__name__, time.monotonic() - t0))
        except Skipped as why:
            skipped += 1
            print("SKIP %s: %s" % (fn.__name__, why))
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print("FAIL %s" % fn.__name__)
            traceback.print_exc(limit=3, file=sys.stdout)
    print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""))
    sys.exit(1 if failed else 0)
