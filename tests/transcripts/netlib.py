"""netlib - several node processes wired together through a small router.

Standard library only. Each node's stdout is read line by line (select), and
every line is routed by its dest: to that node's stdin, or, when dest is not
a node, to the test as a client message. Rules can drop, duplicate, delay or
change messages in flight, as a network (or a hostile server) would, and a
node can be killed (SIGKILL) and started again.
"""
import json
import os
import select
import signal
import subprocess
import time


class Net:
    def __init__(self, nodes, env=None, wrapper=()):
        """nodes: {node_id: argv}. wrapper: a command put before each argv
        (valgrind, say)."""
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.argv = {nid: [*wrapper, *argv] for nid, argv in nodes.items()}
        self.procs = {}
        self.bufs = {}
        self.stderr = {nid: b"" for nid in nodes}  # of processes killed before
        for nid in nodes:
            self.start(nid)
        self.client_inbox = []   # messages to clients, in arrival order
        self.journal = []        # (time, msg, fate) for every routed message
        # fn(msg) -> None | "drop" | "dup" | seconds of delay; a rule may
        # also change msg in place (a hostile server).
        self.rules = []
        self.delayed = []        # (due, msg)
        self.next_id = 1
        self.closed = set()  # stdin closed: nothing more is written to it
        self.dead = set()    # killed, and not started again

    def start(self, nid):
        """Starts node nid (again, after kill)."""
        self.procs[nid] = subprocess.Popen(self.argv[nid], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           env=self.env)
        self.bufs[nid] = b""
        if hasattr(self, "closed"):
            self.closed.discard(nid)
            self.dead.discard(nid)

    def kill(self, nid):
        """SIGKILL: whatever the node had not written is lost, as in a crash."""
        p = self.procs[nid]
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.stderr[nid] += p.stderr.read()
        for f in (p.stdin, p.stdout, p.stderr):
            try:
                f.close()
            except BrokenPipeError:
                pass
        self.closed.add(nid)
        self.dead.add(nid)

    # --- sending -------------------------------------------------------------
    def write(self, dest, line):
        if isinstance(line, str):
            line = line.encode()
        p = self.procs[dest]
        p.stdin.write(line + b"\n")
        p.stdin.flush()

    def send(self, dest, body, src="c"):
        body = dict(body)
        if "msg_id" not in body:
            body["msg_id"] = self.next_id
            self.next_id += 1
        self.write(dest, json.dumps({"src": src, "dest": dest, "body": body}))
        return body["msg_id"]

    def init_all(self, timeout=10.0):
        ids = sorted(self.procs)
        for nid in ids:
            self.send(nid, {"type": "init", "node_id": nid, "node_ids": ids})
        for nid in ids:
            self.wait_client(lambda m, nid=nid: m["src"] == nid and m["body"]["type"] == "init_ok",
                             timeout)

    # --- routing -------------------------------------------------------------
    def _route(self, msg):
        for rule in self.rules:
            fate = rule(msg)
            if fate == "drop":
                self.journal.append((time.monotonic(), msg, "dropped"))
                return
            if fate == "dup":
                self._deliver(msg)
                self._deliver(json.loads(json.dumps(msg)))
                return
            if isinstance(fate, (int, float)) and fate > 0:
                self.delayed.append((time.monotonic() + fate, msg))
                self.journal.append((time.monotonic(), msg, "delayed"))
                return
        self._deliver(msg)

    def _deliver(self, msg):
        self.journal.append((time.monotonic(), msg, "delivered"))
        if msg["dest"] in self.procs and msg["dest"] not in self.closed:
            try:
                self.write(msg["dest"], json.dumps(msg))
            except BrokenPipeError:
                pass  # it died: the message is lost
        elif msg["dest"] not in self.procs:
            self.client_inbox.append(msg)

    def step(self, timeout=0.05):
        """Routes what the nodes have written within `timeout` seconds."""
        now = time.monotonic()
        due = [m for t, m in self.delayed if t <= now]
        self.delayed = [(t, m) for t, m in self.delayed if t > now]
        for m in due:
            self._deliver(m)
        live = {nid: p for nid, p in self.procs.items() if nid not in self.dead}
        fds = {p.stdout.fileno(): nid for nid, p in live.items()}
        errs = {p.stderr.fileno(): nid for nid, p in live.items()}
        if self.delayed:
            timeout = min(timeout, max(0.0, min(t for t, _ in self.delayed) - now))
        ready, _, _ = select.select(list(fds) + list(errs), [], [], timeout)
        for fd in ready:
            if fd in errs:  # drained as it comes, so a node never blocks on it
                self.stderr[errs[fd]] += os.read(fd, 1 << 20)
                continue
            nid = fds[fd]
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                continue
            self.bufs[nid] += chunk
            *lines, self.bufs[nid] = self.bufs[nid].split(b"\n")
            for line in lines:
                msg = json.loads(line)
                assert set(msg) == {"src", "dest", "body"}, msg
                assert msg["src"] == nid, (nid, msg)
                self._route(msg)

    def wait_client(self, pred, timeout=10.0):
        """The first client message matching pred (removed from the inbox)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.client_inbox):
                if pred(m):
                    return self.client_inbox.pop(i)
            if time.monotonic() > deadline:
                raise AssertionError("no matching client message within %.1fs; inbox: %r"
                                     % (timeout, self.client_inbox))
            self.step()

    def reply_to(self, msg_id, timeout=10.0):
        return self.wait_client(lambda m: m["body"].get("in_reply_to") == msg_id, timeout)["body"]

    def call(self, dest, body, timeout=10.0):
        return self.reply_to(self.send(dest, body), timeout)

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(min(0.05, max(0.0, end - time.monotonic())))

    def output_of(self, nid):
        """Every message node nid has written so far (routed or not)."""
        return [m for _, m, _ in self.journal if m["src"] == nid]

    def close(self, timeout=60):
        """Closes every stdin and routes until all nodes exit; returns
        {node_id: (exit code, stderr text)}."""
        for nid, p in self.procs.items():
            if nid not in self.dead:
                self.closed.add(nid)
                p.stdin.close()
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for nid, p in self.procs.items() if nid not in self.dead):
            assert time.monotonic() < deadline, "nodes did not exit"
            self.step(0.05)
        self.step(0)
        out = {}
        for nid, p in self.procs.items():
            if nid in self.dead:
                out[nid] = (-9, self.stderr[nid].decode(errors="replace"))
                continue
            rest = p.stdout.read()
            for line in (self.bufs[nid] + rest).split(b"\n"):
                if line:
                    self._route(json.loads(line))
            self.stderr[nid] += p.stderr.read()
            out[nid] = (p.returncode, self.stderr[nid].decode(errors="replace"))
        return out
