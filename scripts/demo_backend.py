#!/usr/bin/env python3
"""The demo of the blind backend (PROTOCOL.md §5): five e2ee-node processes,
the directory n0, the relay n1, alice's phone n2 and laptop n3, and bob n4,
wired together by a small router (as Maelstrom would): a conversation, a
device approved with its code, a device revoked, and a count of what the
directory and the relay saw."""
import json
import os
import selectors
import subprocess
import sys
import time

BUILD = sys.argv[1]
NODES = ["n0", "n1", "n2", "n3", "n4"]
WHERE = {"n2": "alice's phone", "n3": "alice's laptop", "n4": "bob's phone"}


class Net:
    def __init__(self):
        args = [os.path.join(BUILD, "e2ee-node"), "--directory", "n0", "--relay", "n1"]
        self.procs = {n: subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL) for n in NODES}
        self.sel = selectors.DefaultSelector()
        for n, p in self.procs.items():
            self.sel.register(p.stdout, selectors.EVENT_READ, n)
        self.bufs = {n: b"" for n in NODES}
        self.replies = {}
        self.backend_lines = []  # every message to or from n0 and n1
        self.mid = 0
        for n in NODES:
            self.request(n, {"type": "init", "node_id": n, "node_ids": NODES}, quiet=True)

    def _write(self, dest, msg):
        self.procs[dest].stdin.write((json.dumps(msg) + "\n").encode())
        self.procs[dest].stdin.flush()

    def _route(self, timeout):
        for key, _ in self.sel.select(timeout):
            n = key.data
            self.bufs[n] += os.read(key.fileobj.fileno(), 1 << 20)
            *lines, self.bufs[n] = self.bufs[n].split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if "n0" in (msg["src"], msg["dest"]) or "n1" in (msg["src"], msg["dest"]):
                    self.backend_lines.append(line.decode())
                if msg["dest"] in self.procs:
                    self._write(msg["dest"], msg)
                else:
                    self.replies[msg["body"].get("in_reply_to")] = msg["body"]

    def request(self, node, body, quiet=False):
        self.mid += 1
        self._write(node, {"src": "client", "dest": node, "body": dict(body, msg_id=self.mid)})
        if not quiet:
            print("  \033[2m>> %s (%s): %s\033[0m" % (node, WHERE.get(node, node),
                                                     json.dumps(body)))
        deadline = time.monotonic() + 10
        while self.mid not in self.replies:
            if time.monotonic() > deadline:
                sys.exit("no reply from %s" % node)
            self._route(0.05)
        reply = self.replies.pop(self.mid)
        if not quiet:
            shown = {k: v for k, v in reply.items() if k not in ("msg_id", "in_reply_to")}
            print("  << %s" % json.dumps(shown))
        return reply

    def settle(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._route(0.05)

    def close(self):
        for p in self.procs.values():
            p.stdin.close()
        for p in self.procs.values():
            p.wait()


def texts(net, node, user):
    return [m["text"] for m in net.request(node, {"type": "read", "user": user})["messages"]]


print("\n\033[1mThe blind backend: a directory (n0), a relay (n1), alice on two devices, bob on "
      "one\033[0m")
net = Net()
net.request("n2", {"type": "register", "user": "alice"})
net.request("n4", {"type": "register", "user": "bob"})

print("\n\033[1m  alice adds her laptop: it shows a code, her phone approves it with that "
      "code\033[0m")
laptop = net.request("n3", {"type": "register", "user": "alice"})
print("  -> the laptop shows %s; alice types it on her phone" % laptop["code"])
net.request("n2", {"type": "approve_device", "user": "alice", "device_id": laptop["device_id"],
                   "code": laptop["code"]})

print("\n\033[1m  a conversation: every device of both users gets its own envelope\033[0m")
said = ["Hi Bob, it's Alice", "Hi Alice! Got it on my phone", "Lunch at noon?"]
net.request("n2", {"type": "send", "user": "alice", "to": "bob", "text": said[0]})
net.settle(0.3)
print("  -> bob reads: %s" % texts(net, "n4", "bob"))
print("  -> alice's laptop has her own message too: %s" % texts(net, "n3", "alice"))
net.request("n4", {"type": "send", "user": "bob", "to": "alice", "text": said[1]})
net.settle(0.3)
print("  -> alice's phone: %s; her laptop: %s" % (texts(net, "n2", "alice"),
                                                 texts(net, "n3", "alice")))
a = net.request("n2", {"type": "fingerprint", "user": "alice", "peer": "bob"})["safety_number"]
b = net.request("n4", {"type": "fingerprint", "user": "bob", "peer": "alice",
                       "device_id": 1})["safety_number"]
print("  -> safety numbers match on both phones: %s" % (a == b))

print("\n\033[1m  alice loses her laptop and revokes it from her phone\033[0m")
net.request("n2", {"type": "revoke_device", "user": "alice", "device_id": laptop["device_id"]})
sent = net.request("n4", {"type": "send", "user": "bob", "to": "alice", "text": said[2]})
print("  -> bob's next message goes to %d device: alice's phone" % sent["devices"])
net.settle(0.3)
print("  -> alice's phone: %s" % texts(net, "n2", "alice"))
gone = net.request("n3", {"type": "read", "user": "alice"})
print("  -> the laptop: error %d (%s)" % (gone["code"], gone["text"]))

seen = [line for line in net.backend_lines for t in said if t in line]
print("\n\033[1m  what the backend saw\033[0m")
print("  -> %d messages went to or from the directory and the relay; %d of them contain any "
      "text that was sent (the relay holds only Signal ciphertext)"
      % (len(net.backend_lines), len(seen)))
net.close()
if seen:
    sys.exit("a plaintext reached the backend")
