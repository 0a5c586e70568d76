#!/usr/bin/env python3
"""The demo: a round trip through symmetric-node and a short alice<->bob
conversation through e2ee-node, printed readably."""
import json
import os
import subprocess
import sys

BUILD = sys.argv[1]


class Node:
    def __init__(self, name, env=None):
        self.p = subprocess.Popen([os.path.join(BUILD, name)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, **(env or {})), text=True)
        self.mid = 0

    def call(self, src, body):
        self.mid += 1
        line = json.dumps({"src": src, "dest": "n1", "body": dict(body, msg_id=self.mid)})
        print("  \033[2m>> %s\033[0m" % line)
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = json.loads(self.p.stdout.readline())
        print("  << %s" % json.dumps(reply))
        return reply["body"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


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
print()
