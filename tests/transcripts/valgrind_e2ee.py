#!/usr/bin/env python3
"""e2ee-node under valgrind memcheck: a conversation with ratchet steps,
out-of-order delivery, a replay, a forgery, pinning and fingerprints.
usage: valgrind_e2ee.py VALGRIND E2EE_NODE"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nodelib import Node  # noqa: E402

valgrind, binary = sys.argv[1:]
n = Node(valgrind, args=["-q", "--error-exitcode=99", "--leak-check=full",
                         "--errors-for-leak-kinds=definite,indirect", binary])


def call(body, src):
    return n.call(body, src=src)


ok = True
held = []
for rnd in range(3):
    for k in range(3):
        em = call({"type": "send_message", "recipient": "bob", "plaintext": "m%d%d" % (rnd, k)},
                  "alice")["encrypted_message"]
        if k == 0:
            held.append(em)
        else:
            ok &= call({"type": "receive_message", "sender": "alice", "encrypted_message": em},
                       "bob")["type"] == "message_decrypted"
    em = call({"type": "send_message", "recipient": "alice", "plaintext": "ack"}, "bob")
    if rnd == 0:  # bob can only answer once he has a session: deliver the first
        pass
for em in held:
    ok &= call({"type": "receive_message", "sender": "alice", "encrypted_message": em},
               "bob")["type"] == "message_decrypted"
ok &= call({"type": "receive_message", "sender": "alice", "encrypted_message": held[0]},
           "bob")["type"] == "decryption_failed"
ok &= call({"type": "fingerprint", "peer": "bob"}, "alice")["type"] == "fingerprint"
bundle = call({"type": "get_bundle"}, "carol")
ok &= call({"type": "initiate_conversation", "recipient": "carol", "bob_public_key": bundle},
           "alice")["type"] == "conversation_initiated"
ok &= call({"type": "initiate_conversation", "recipient": "x",
            "bob_public_key": {"identity_key": "IK", "signed_pre_key": "SPK"}}, "alice")["code"] == 12
lines, err, code = n.close(timeout=300)
ok &= code == 0 and "==" not in err
if not ok:
    print(err[-4000:])
print("valgrind e2ee-node: exit %d" % code)
print("%d passed, %d failed" % (ok, not ok))
sys.exit(0 if ok else 1)
