#!/usr/bin/env python3
"""The demo: a round trip through symmetric-node and a short alice<->bob
conversation through e2ee-node, printed readably; then both again with
--state-dir, killed (kill -9) and restarted: the keyring and the
conversation go on where they were."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

BUILD = sys.argv[1]


class Node:
    def __init__(self, name, env=None, args=(), dest="n1", width=None):
        self.p = subprocess.Popen([os.path.join(BUILD, name), *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, **(env or {})), text=True)
        self.mid = 0
        self.dest = dest
        self.width = width  # lines printed longer than this are cut (bundles are long)

    def show(self, text):
        if self.width and len(text) > self.width:
            text = text[:self.width - 1] + "\u2026"
        return text

    def call(self, src, body):
        self.mid += 1
        line = json.dumps({"src": src, "dest": self.dest, "body": dict(body, msg_id=self.mid)})
        print("  \033[2m>> %s\033[0m" % self.show(line))
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = json.loads(self.p.stdout.readline())
        print("  << %s" % self.show(json.dumps(reply)))
        return reply["body"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()

    def kill(self):
        """kill -9: no clean exit, whatever was in flight is lost."""
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        print("  \033[1m-- kill -9 %s (pid %d)\033[0m" % (self.dest, self.p.pid))


print("\n\033[1msymmetric-node: AES-256-GCM\033[0m")
n = Node("symmetric-node", {"SECURITOR_KEY": os.urandom(32).hex()})
enc = n.call("client", {"type": "encrypt", "plaintext": "Secret message", "aad": "invoice-42"})
dec = n.call("client", {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                        "authTag": enc["authTag"], "aad": "invoice-42"})
print("  -> round trip: %r" % dec["plaintext"])
flipped = "%02x" % (int(enc["encryptedData"][:2], 16) ^ 0x01)  # always a change
bad = dict(iv=enc["iv"], encryptedData=flipped + enc["encryptedData"][2:], authTag=enc["authTag"],
           aad="invoice-42")
print("  -> one flipped bit: %s" % n.call("client", dict(type="decrypt", **bad))["type"])

print("\n\033[1m  key rotation, rewrap, and a blind-index lookup\033[0m")
n.call("client", {"type": "rotate_key"})
rw = n.call("client", {"type": "rewrap", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                       "authTag": enc["authTag"], "aad": "invoice-42"})
print("  -> rewrapped from key %d to key %d inside the node; the plaintext never left it"
      % (enc["key_id"], rw["key_id"]))
n.call("client", {"type": "set_min_decryption_version", "key_id": 2})
keys = n.call("client", {"type": "trim_keys"})
print("  -> key 1 trimmed: the keyring is now %s" % keys["versions"])
rows = {"alice@example.com": "row 1", "bob@example.com": "row 2"}
index = {n.call("client", {"type": "blind_index", "index": "email", "value": v})["token"]: row
         for v, row in rows.items()}
t = n.call("client", {"type": "blind_index", "index": "email", "value": "bob@example.com"})["token"]
print("  -> searching the encrypted table for bob@example.com by its token %s finds %s" % (t, index[t]))
n.close()

print("\n\033[1me2ee-node: X3DH + Double Ratchet (Signal protocol v3)\033[0m")
e = Node("e2ee-node")
conv = [("alice", "bob", "Hi Bob! Lunch?"), ("bob", "alice", "Sure, noon?"),
        ("alice", "bob", "See you there.")]
for frm, to, text in conv:
    em = e.call(frm, {"type": "send_message", "recipient": to, "plaintext": text})["encrypted_message"]
    got = e.call(to, {"type": "receive_message", "sender": frm, "encrypted_message": em})
    print("  -> %s read %r (kind: %s; a fresh key for every message)" % (to, got["plaintext"], em["kind"]))
replay = e.call("bob", {"type": "receive_message", "sender": "alice", "encrypted_message": em})
print("  -> the same message again: %s (%s)" % (replay["type"], replay["error"]))
fa = e.call("alice", {"type": "fingerprint", "peer": "bob"})["safety_number"]
fb = e.call("bob", {"type": "fingerprint", "peer": "alice"})["safety_number"]
print("  -> safety numbers match: %s (%s)" % (fa == fb, " ".join(fa[i:i + 5] for i in range(0, 60, 5))))
e.close()

print("\n\033[1mDurable state: --state-dir, kill -9, restart\033[0m")
state = tempfile.mkdtemp(prefix="securitor-demo-")
print("  (states in %s, one file per node id, sealed under each node's SECURITOR_KEY)" % state)
key = os.urandom(32).hex()
sym_args = {"env": {"SECURITOR_KEY": key}, "args": ["--state-dir", state]}
INIT = {"type": "init", "node_id": "n1", "node_ids": ["n1"]}
n = Node("symmetric-node", **sym_args)
n.call("client", INIT)
rot = n.call("client", {"type": "rotate_key"})
enc = n.call("client", {"type": "encrypt", "plaintext": "Survives a crash", "aad": "invoice-43"})
print("  -> key %d made and used; the reply left only once it was on disk" % rot["key_id"])
n.kill()
n = Node("symmetric-node", **sym_args)
n.call("client", INIT)
keys = n.call("client", {"type": "keys"})
dec = n.call("client", {"type": "decrypt", "iv": enc["iv"], "encryptedData": enc["encryptedData"],
                        "authTag": enc["authTag"], "aad": "invoice-43", "key_id": enc["key_id"]})
print("  -> after the restart the keyring is %s (primary %d) and the ciphertext under key %d "
      "decrypts: %r" % (keys["versions"], keys["primary"], enc["key_id"], dec["plaintext"]))
print("  -> the next rotation gets a new id, never a used one: key %d"
      % n.call("client", {"type": "rotate_key"})["key_id"])
print("  -> the node's own msg_ids jump past a reservation kept in the state, so none repeats "
      "across restarts")
n.close()

print("\n\033[1m  an e2ee conversation across two nodes that both restart\033[0m")
keys = {"n2": os.urandom(32).hex(), "n3": os.urandom(32).hex()}


def e2ee_node(node_id):
    node = Node("e2ee-node", env={"SECURITOR_KEY": keys[node_id]}, args=["--state-dir", state],
                dest=node_id, width=150)
    node.call("client", {"type": "init", "node_id": node_id, "node_ids": ["n2", "n3"]})
    return node


a, b = e2ee_node("n2"), e2ee_node("n3")  # alice lives on n2, bob on n3
bundle = b.call("bob", {"type": "get_bundle"})
for k in ("type", "msg_id", "in_reply_to"):
    bundle.pop(k)
a.call("alice", {"type": "initiate_conversation", "recipient": "bob", "bob_public_key": bundle})


def say(frm_node, frm, to_node, to, text):
    em = frm_node.call(frm, {"type": "send_message", "recipient": to,
                             "plaintext": text})["encrypted_message"]
    got = to_node.call(to, {"type": "receive_message", "sender": frm, "encrypted_message": em})
    print("  -> %s read %r (kind: %s)" % (to, got["plaintext"], em["kind"]))


say(a, "alice", b, "bob", "Hi Bob, from n2")
say(b, "bob", a, "alice", "Hi Alice, from n3")
before = a.call("alice", {"type": "fingerprint", "peer": "bob"})["safety_number"]
a.kill()
b.kill()
a, b = e2ee_node("n2"), e2ee_node("n3")
say(a, "alice", b, "bob", "Still here after the crash?")
say(b, "bob", a, "alice", "Yes: same keys, same sessions.")
after = a.call("alice", {"type": "fingerprint", "peer": "bob"})["safety_number"]
print("  -> the sessions went on where they were (no new prekey message) and the safety number "
      "is the same: %s" % (before == after))
a.close()
b.close()
print("  -> files: %s" % ", ".join(sorted(os.listdir(state))))
shutil.rmtree(state)
print()
