#!/usr/bin/env python3
"""Runs a node under valgrind memcheck with the given input files (stdin
closed at the end) and fails on any memory error or definite/indirect leak.

usage: valgrind_check.py VALGRIND BINARY INPUT.jsonl... [-- BINARY ARGS]
The key for symmetric-node comes from a fixed SECURITOR_KEY, so decryptions of
known answers in the input succeed.
"""
import os
import subprocess
import sys

valgrind, binary, *inputs = sys.argv[1:]
data = b"".join(open(p, "rb").read() for p in inputs)
# Lines that take the loop's long-string path (src/node/bulk.c): long keys and
# values, escaped and plain, a truncated one, and raw NUL bytes.
long = b"L" * 5000
data += (b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":900,"echo":{"%s":["%s",'
         b'"%s\\n",1,{"k":"%s"}]}}}\n' % (long, long, long, long))
data += b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":901,"echo":"%s' % long + b"\n"
data += (b'{"src":"c","dest":"n1","body":{"type":"echo","msg_id":902,"echo":"%s\x00"}}\n'
         % long)
env = dict(os.environ,
           SECURITOR_KEY="feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
p = subprocess.run([valgrind, "-q", "--error-exitcode=99", "--leak-check=full",
                    "--errors-for-leak-kinds=definite,indirect", binary],
                   input=data, capture_output=True, env=env, timeout=600)
replies = p.stdout.count(b"\n")
ok = p.returncode == 0 and b"==" not in p.stderr and replies > 0
if not ok:
    sys.stdout.write(p.stderr.decode(errors="replace")[-4000:])
print("valgrind %s: %d replies, exit %d" % (os.path.basename(binary), replies, p.returncode))
print("%d passed, %d failed" % (ok, not ok))
sys.exit(0 if ok else 1)
