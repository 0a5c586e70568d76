#!/usr/bin/env python3
"""net_fake_node - a stand-in for e2ee-node's blind-backend roles (PROTOCOL.md §5),
for developing and testing scripts/net before the C roles exist.

    net_fake_node.py --directory n0 --relay n1 [--state-dir DIR --key-file F]
                     [--bug NAME] [--fsync]

It speaks the same wire as e2ee-node: one JSON object per line, §1's rules
(msg_id, in_reply_to, replies never answered), and §5.1's messages between
devices, the directory and the relay, with the same types, fields and
errors. At init a node whose id is the --directory or --relay id serves that
role; every other node hosts devices, one per user name it meets.

What it is not: cryptography. Its "keys" are random bytes, its "signatures" a
SHA-256 of the signer's *public* key and the bytes (anyone could make one:
the harness does not know the scheme, so what it rewrites in flight fails to
verify, which is all a test needs), and its envelopes are XOR with a SHA-256
keystream under a key derived from both devices' public keys, with a tag.
What it is: honest about the protocol. Device lists are chains of versions
that devices verify and pin; bundles are checked against the chain; the
relay delivers all or nothing against the directory's current list, checks
fetch/ack counters and revocations, and notifies; devices decrypt, store,
commit, then acknowledge, and drop duplicates; sends go through a durable
outbox. With --state-dir every change is written (an append-only log,
DIR/<node id>.db) before any line that depends on it leaves the process, so
it survives kill -9 like the real node should.

--bug NAME makes it wrong on purpose, so that the harness's checker can be
shown to catch each violation:
  deliver-twice    a device stores every message twice
  drop-revoked     when the relay notices a revocation it empties every
                   mailbox of that user, not only the revoked device's
  keep-revoked     senders use their pinned lists instead of fresh ones and
                   the relay serves and accepts revoked devices
  partial-send     one relay_deliver per envelope, no outbox, and the relay
                   takes each alone: a lost one leaves the message on some
                   devices only
  leak-plaintext   envelopes carry the plaintext (base64) beside the ciphertext
  leak-key         the relay writes its node key into its state
  no-commit        inbox changes are written 2 s late (acks leave first)
  trust-directory  device lists and bundles are taken without verification
  trust-relay      envelopes are decrypted without checking tag or address
  reuse-counter    the relay does not check fetch/ack counters
  reuse-prekey     the directory hands out a device's first one-time prekey
                   again and again
  reuse-msgid      msg_ids start at 1 again after a restart
  answer-replies   a reply that matches no request gets an error back
                   (replies that are errors themselves excepted, so two such
                   nodes do not ping-pong for ever)
"""
import argparse
import base64
import hashlib
import heapq
import itertools
import json
import os
import selectors
import sys
import time
import uuid

BUGS = ("deliver-twice", "drop-revoked", "keep-revoked", "partial-send", "leak-plaintext",
        "leak-key", "no-commit", "trust-directory", "trust-relay", "reuse-counter",
        "reuse-prekey", "reuse-msgid", "answer-replies")

ERR_TIMEOUT, ERR_NOT_SUPPORTED, ERR_MALFORMED = 0, 10, 12
ERR_NO_KEY, ERR_PRECONDITION = 20, 22


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s):
    return base64.b64decode(s, validate=True)


def H(*parts):
    """SHA-256 over length-prefixed parts (str or bytes)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return h.digest()


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def pub_of(priv):
    return b64(b"\x05" + H("pub", priv))


def sign(pub, data):
    """Naive: a digest of the public key and the data (see the docstring)."""
    return b64(H("sig", pub, data) * 2)


def verify(pub, data, sig):
    return isinstance(sig, str) and sign(pub, data) == sig


def code_of(identity_key):
    """12 decimal digits from an identity key (the `code` of register)."""
    return "%012d" % (int.from_bytes(H("code", identity_key)[:8], "big") % 10 ** 12)


def list_bytes(lst):
    return canon({"version": lst.get("version"), "devices": lst.get("devices"),
                  "prev": lst.get("prev", "")})


def list_hash(lst):
    return b64(H("list", list_bytes(lst), str(lst.get("signer")), str(lst.get("signature"))))


def verify_chain(lists):
    """None when `lists` (oldest first) is a valid chain, else why not."""
    if not isinstance(lists, list) or not lists:
        return "no device list"
    prev = None
    for i, lst in enumerate(lists):
        if not isinstance(lst, dict) or lst.get("version") != i + 1:
            return "version %d out of order" % (i + 1)
        devs = lst.get("devices")
        if not isinstance(devs, list) or not all(isinstance(d, dict) for d in devs):
            return "bad devices in version %d" % (i + 1)
        signers = prev["devices"] if prev else devs
        signer = next((d for d in signers if d.get("device_id") == lst.get("signer")), None)
        if signer is None:
            return "version %d signed by a device not in the previous version" % (i + 1)
        if lst.get("prev", "") != (list_hash(prev) if prev else ""):
            return "version %d does not cover version %d" % (i + 1, i)
        if not verify(signer.get("identity_key", ""), list_bytes(lst), lst.get("signature")):
            return "version %d: bad signature" % (i + 1)
        prev = lst
    return None


class Store:
    """Rows (key -> JSON value) in memory, and with a path in an append-only
    log that commit() writes before the node's output (output commit)."""

    def __init__(self, path, fsync=False):
        self.rows, self.buf, self.path, self.fsync = {}, [], path, fsync
        self.fd = None
        if not path:
            return
        if os.path.exists(path):
            with open(path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break  # a torn last write: never committed
                    if "d" in rec:
                        self.rows.pop(rec["d"], None)
                    else:
                        self.rows[rec["p"]] = rec["v"]
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self.fd).st_size

    def get(self, k, default=None):
        return self.rows.get(k, default)

    def put(self, k, v):
        self.rows[k] = v
        if self.fd is not None:
            self.buf.append(json.dumps({"p": k, "v": v}, separators=(",", ":")) + "\n")

    def delete(self, k):
        if self.rows.pop(k, None) is not None and self.fd is not None:
            self.buf.append(json.dumps({"d": k}) + "\n")

    def prefix(self, p):
        return [(k, v) for k, v in self.rows.items() if k.startswith(p)]

    def commit(self):
        if not self.buf:
            return
        data = "".join(self.buf).encode()
        self.buf = []
        os.write(self.fd, data)
        if self.fsync:
            os.fsync(self.fd)
        self.size += len(data)
        if self.size > (8 << 20) and self.size > 8 * len(json.dumps(self.rows)):
            self._compact()

    def _compact(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            for k, v in self.rows.items():
                f.write(json.dumps({"p": k, "v": v}, separators=(",", ":")) + "\n")
        os.replace(tmp, self.path)
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = os.fstat(self.fd).st_size


class Node:
    """The transport: msg_ids, replies, calls with timeouts, timers, output commit."""

    def __init__(self, opts):
        self.o = opts
        self.bug = opts.bug or ""
        self.id = None
        self.store = None
        self.out = []
        self.calls = {}           # msg_id -> (callback, timer key)
        self.timers = []          # (due, seq, fn)
        self.seq = itertools.count()
        self.next_id = 1
        self.reserved = 0
        self.role = None
        self.late_puts = []       # --bug no-commit: (due, key, value)

    # --- output ----------------------------------------------------------
    def _msg_id(self):
        if self.next_id > self.reserved:
            self.reserved = self.next_id + 1000
            if self.store:
                self.store.put("msgid", self.reserved)
        mid = self.next_id
        self.next_id += 1
        return mid

    def send(self, dest, body):
        body = dict(body)
        body["msg_id"] = self._msg_id()
        self.out.append(json.dumps({"src": self.id, "dest": dest, "body": body},
                                   separators=(",", ":")))
        return body["msg_id"]

    def notify(self, dest, body):
        """A one-way message: no msg_id, no reply expected."""
        self.out.append(json.dumps({"src": self.id, "dest": dest, "body": body},
                                   separators=(",", ":")))

    def reply(self, req, body):
        body = dict(body)
        body["msg_id"] = self._msg_id()
        if "msg_id" in req["body"]:
            body["in_reply_to"] = req["body"]["msg_id"]
        self.out.append(json.dumps({"src": self.id, "dest": req["src"], "body": body},
                                   separators=(",", ":")))

    def error(self, req, code, text, **extra):
        self.reply(req, dict({"type": "error", "code": code, "text": text}, **extra))

    def flush(self):
        if self.store:
            self.store.commit()
        if self.out:
            data = ("\n".join(self.out) + "\n").encode()
            self.out = []
            while data:
                n = os.write(1, data)
                data = data[n:]

    # --- calls and timers ------------------------------------------------
    def after(self, seconds, fn):
        key = next(self.seq)
        heapq.heappush(self.timers, (time.monotonic() + seconds, key, fn))
        return key

    def call(self, dest, body, cb, timeout=1.0):
        """Sends body; cb(reply body) on the reply, cb(None) on a timeout."""
        mid = self.send(dest, body)
        state = {"done": False}

        def on_timeout():
            if not state["done"] and self.calls.pop(mid, None):
                state["done"] = True
                cb(None)

        self.calls[mid] = (lambda b: (state.__setitem__("done", True), cb(b)), None)
        self.after(timeout, on_timeout)

    def call_retry(self, dest, make_body, cb, timeout=0.5, tries=8):
        """call() again on a timeout (a fresh body from make_body()), up to tries."""
        def attempt(n):
            def got(b):
                if b is None and n + 1 < tries:
                    attempt(n + 1)
                else:
                    cb(b)
            self.call(dest, make_body(), got, timeout)
        attempt(0)

    # --- input -----------------------------------------------------------
    def handle_line(self, line):
        try:
            msg = json.loads(line)
            body = msg["body"]
            typ = body["type"]
            assert isinstance(typ, str)
        except Exception:  # noqa: BLE001 - the protocol's error 12
            try:
                src = json.loads(line).get("src")
            except Exception:  # noqa: BLE001
                src = None
            if src:
                self.out.append(json.dumps({"src": self.id or "?", "dest": src, "body": {
                    "type": "error", "code": ERR_MALFORMED, "text": "not a message"}}))
            else:
                sys.stderr.write("fake: unreadable line\n")
            return
        if self.id is None:
            self._set_id(msg.get("dest"))
        if "in_reply_to" in body:
            entry = self.calls.pop(body["in_reply_to"], None)
            if entry:
                entry[0](body)
            elif "answer-replies" in self.bug and typ != "error":
                self.error(msg, ERR_PRECONDITION, "a reply to nothing")
            return
        if typ == "init":
            if body.get("node_id") != self.id and self.role is not None:
                return self.error(msg, ERR_PRECONDITION, "init names another node id")
            self._set_id(body.get("node_id"))
            return self.reply(msg, {"type": "init_ok"})
        if typ == "echo":
            return self.reply(msg, {"type": "echo_ok", "echo": body.get("echo")})
        handler = getattr(self.role, "h_" + typ, None) if self.role else None
        if handler is None:
            return self.error(msg, ERR_NOT_SUPPORTED, "unknown type %s" % typ)
        try:
            handler(msg, body)
        except (KeyError, TypeError, ValueError) as e:
            self.error(msg, ERR_MALFORMED, "bad request: %r" % (e,))

    def _set_id(self, nid):
        if self.role is not None or not nid:
            return
        self.id = nid
        path = os.path.join(self.o.state_dir, nid + ".db") if self.o.state_dir else None
        if path:
            os.makedirs(self.o.state_dir, exist_ok=True)
        self.store = Store(path, self.o.fsync)
        self.reserved = 0 if "reuse-msgid" in self.bug else self.store.get("msgid", 0)
        self.next_id = self.reserved + 1
        if nid == self.o.directory:
            self.role = Directory(self)
        elif nid == self.o.relay:
            self.role = Relay(self)
        else:
            self.role = Devices(self)

    def run(self):
        sel = selectors.DefaultSelector()
        os.set_blocking(0, False)
        sel.register(0, selectors.EVENT_READ)
        buf = b""
        while True:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            if self.late_puts:
                t = max(0.0, self.late_puts[0][0] - time.monotonic())
                timeout = t if timeout is None else min(timeout, t)
            if sel.select(timeout):
                try:
                    chunk = os.read(0, 1 << 20)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    if buf.strip():
                        self.handle_line(buf)
                    self.flush()
                    return 0
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self.handle_line(line)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                fn()
            while self.late_puts and self.late_puts[0][0] <= now:
                _, _, k, v = heapq.heappop(self.late_puts)
                self.store.put(k, v)
            self.flush()


# =========================================================================
# The directory
# =========================================================================
class Directory:
    def __init__(self, node):
        self.n, self.s = node, node.store

    def acct(self, user):
        return self.s.get("acct/" + user)

    def status(self, a, dev_id):
        newest = a["lists"][-1]["devices"]
        if any(d["device_id"] == dev_id for d in newest):
            return "active"
        if str(dev_id) in a["pending"]:
            return "pending"
        return "revoked"

    def h_dir_publish(self, msg, b):
        user, ik = b["user"], b["identity_key"]
        entry = {"registration_id": b["registration_id"], "identity_key": ik,
                 "signed_pre_key": b["signed_pre_key"],
                 "one_time_pre_keys": list(b.get("one_time_pre_keys") or [])}
        a = self.acct(user)
        if a is None:
            lst = b.get("list")
            if not lst:
                return self.n.error(msg, ERR_PRECONDITION, "a new account needs its list (version 1)")
            devs = lst.get("devices") or []
            if (verify_chain([lst]) or len(devs) != 1 or devs[0].get("device_id") != 1
                    or devs[0].get("identity_key") != ik):
                return self.n.error(msg, ERR_PRECONDITION, "list: not a valid version 1 for this device")
            a = {"lists": [lst], "pending": {}, "devices": {"1": entry}, "next": 2}
            self.s.put("acct/" + user, a)
            return self.n.reply(msg, {"type": "dir_published", "user": user, "device_id": 1,
                                      "status": "active"})
        for dev_id, d in a["devices"].items():
            if d["identity_key"] == ik:
                return self.n.reply(msg, {"type": "dir_published", "user": user,
                                          "device_id": int(dev_id),
                                          "status": self.status(a, int(dev_id))})
        dev_id = a["next"]
        a["next"] += 1
        a["devices"][str(dev_id)] = entry
        a["pending"][str(dev_id)] = {"device_id": dev_id, "identity_key": ik,
                                     "registration_id": b["registration_id"]}
        self.s.put("acct/" + user, a)
        self.n.reply(msg, {"type": "dir_published", "user": user, "device_id": dev_id,
                           "status": "pending"})

    def h_dir_get_devices(self, msg, b):
        a = self.acct(b["user"])
        if a is None:
            return self.n.error(msg, ERR_NO_KEY, "no such user")
        self.n.reply(msg, {"type": "dir_devices", "user": b["user"], "lists": a["lists"],
                           "pending": list(a["pending"].values())})

    def h_dir_update_devices(self, msg, b):
        user, lst = b["user"], b["list"]
        a = self.acct(user)
        if a is None:
            return self.n.error(msg, ERR_NO_KEY, "no such user")
        cur = a["lists"][-1]
        if lst == cur:
            return self.n.reply(msg, {"type": "dir_devices_updated", "user": user,
                                      "version": cur["version"]})
        why = verify_chain(a["lists"] + [lst])
        if why:
            return self.n.error(msg, ERR_PRECONDITION, "list: " + why)
        a["lists"].append(lst)
        for d in lst["devices"]:
            a["pending"].pop(str(d["device_id"]), None)
        self.s.put("acct/" + user, a)
        self.n.reply(msg, {"type": "dir_devices_updated", "user": user, "version": lst["version"]})

    def h_dir_get_bundles(self, msg, b):
        user, rid = b["user"], b["request_id"]
        a = self.acct(user)
        if a is None:
            return self.n.error(msg, ERR_NO_KEY, "no such user")
        key = "req/%s/%s" % (user, rid)
        cached = self.s.get(key)
        if cached is None:
            bundles = []
            for d in a["lists"][-1]["devices"]:
                e = a["devices"].get(str(d["device_id"]))
                if e is None:
                    continue
                spk = e["signed_pre_key"]
                bundle = {"device_id": d["device_id"], "registration_id": e["registration_id"],
                          "identity_key": e["identity_key"], "signed_pre_key": spk["key"],
                          "signed_pre_key_id": spk["id"],
                          "signed_pre_key_signature": spk["signature"]}
                if e["one_time_pre_keys"]:
                    otpk = (e["one_time_pre_keys"][0] if "reuse-prekey" in self.n.bug
                            else e["one_time_pre_keys"].pop(0))
                    bundle["one_time_pre_key"] = otpk["key"]
                    bundle["one_time_pre_key_id"] = otpk["id"]
                bundles.append(bundle)
            cached = bundles
            self.s.put(key, cached)
            self.s.put("acct/" + user, a)
        self.n.reply(msg, {"type": "dir_bundles", "user": user, "bundles": cached})

    def h_dir_upload_prekeys(self, msg, b):
        user, dev_id = b["user"], b["device_id"]
        a = self.acct(user)
        e = a and a["devices"].get(str(dev_id))
        if e is None:
            return self.n.error(msg, ERR_NO_KEY, "no such device")
        data = canon(["dir_upload_prekeys", user, dev_id, b["counter"], b["one_time_pre_keys"]])
        if not verify(e["identity_key"], data, b.get("signature")) or b["counter"] <= e.get("ctr", 0):
            return self.n.error(msg, ERR_PRECONDITION, "bad signature or counter")
        e["ctr"] = b["counter"]
        e["one_time_pre_keys"].extend(b["one_time_pre_keys"])
        self.s.put("acct/" + user, a)
        self.n.reply(msg, {"type": "dir_prekeys_uploaded", "user": user, "device_id": dev_id,
                           "count": len(e["one_time_pre_keys"])})


# =========================================================================
# The relay
# =========================================================================
class Relay:
    def __init__(self, node):
        self.n, self.s = node, node.store
        self.boxes = {}   # (user, device_id) -> {id: item}
        self.busy = {}    # message_id -> delivers waiting for the one being checked
        for k, v in self.s.prefix("mb/"):
            _, user, dev, iid = k.split("/", 3)
            self.boxes.setdefault((user, int(dev)), {})[int(iid)] = v
        self.next_item = self.s.get("next_item", 1)
        if "leak-key" in node.bug and node.o.key_file:
            with open(node.o.key_file, "rb") as f:
                self.s.put("leak", f.read().hex())

    def lists(self, users, cb):
        """cb({user: dir_devices body or None}) once the directory answered for all."""
        users = sorted(set(users))
        got = {}
        if not users:
            return cb(got)

        def one(u):
            def done(b):
                got[u] = b if b and b.get("type") == "dir_devices" else None
                if len(got) == len(users):
                    cb(got)
            self.n.call_retry(self.n.o.directory, lambda: {"type": "dir_get_devices", "user": u},
                              done, timeout=0.5, tries=6)
        for u in users:
            one(u)

    def forget(self, user, dev_id):
        targets = [(user, dev_id)]
        if "drop-revoked" in self.n.bug:
            targets = [k for k in self.boxes if k[0] == user]
        for key in targets:
            for iid in list(self.boxes.get(key, {})):
                self.s.delete("mb/%s/%d/%d" % (key[0], key[1], iid))
            self.boxes.pop(key, None)

    def notice(self, user, v):
        """Forgets the mailboxes of devices the directory no longer lists."""
        newest = {d["device_id"] for d in v["lists"][-1]["devices"]}
        for lst in v["lists"]:
            for d in lst["devices"]:
                if d["device_id"] not in newest and (user, d["device_id"]) in self.boxes \
                        and "keep-revoked" not in self.n.bug:
                    self.forget(user, d["device_id"])

    def h_relay_deliver(self, msg, b):
        """Attempts of one message_id are checked one after the other: were
        two checked at once, an older attempt whose lists were fetched before
        a revocation could be accepted after a newer one was refused, and the
        sender would have called a delivered message refused."""
        mid = b["message_id"]
        if mid in self.busy:
            self.busy[mid].append((msg, b))
            return
        self.busy[mid] = []
        self._deliver(msg, b)

    def _next(self, mid):
        waiting = self.busy.get(mid)
        if waiting:
            self._deliver(*waiting.pop(0))
        else:
            self.busy.pop(mid, None)

    def _deliver(self, msg, b):
        mid, from_user, from_dev = b["message_id"], b["from_user"], b["from_device"]
        envs = b["envelopes"]
        done_key = "msg/" + mid + ("/" + b["part"] if "partial-send" in self.n.bug and
                                   b.get("part") else "")
        if self.s.get(done_key):
            self.n.reply(msg, {"type": "relay_delivered", "message_id": mid})
            return self._next(mid)

        def checked(lists):
            try:
                check(lists)
            finally:
                self._next(mid)

        def check(lists):
            if self.s.get(done_key):
                return self.n.reply(msg, {"type": "relay_delivered", "message_id": mid})
            if any(v is None for v in lists.values()):
                return  # the directory did not answer: the sender retries
            for u, v in lists.items():
                self.notice(u, v)
            keep_revoked = "keep-revoked" in self.n.bug or (
                "partial-send" in self.n.bug and b.get("part"))
            newest = {u: {d["device_id"]: d for d in v["lists"][-1]["devices"]}
                      for u, v in lists.items()}
            if from_dev not in newest[from_user] and not keep_revoked:
                return self.n.error(msg, ERR_PRECONDITION, "the sending device is not active")
            expected = {(u, i) for u, devs in newest.items() for i in devs} - {(from_user, from_dev)}
            given = {(e["user"], e["device_id"]): e for e in envs}
            missing = sorted(expected - set(given))
            extra = sorted(set(given) - expected)
            stale = sorted(k for k in set(given) & expected
                           if newest[k[0]][k[1]]["registration_id"] != given[k]["registration_id"])
            if keep_revoked:
                extra = missing = []
            if missing or extra or stale:
                def obj(ks):
                    return [{"user": u, "device_id": i} for u, i in ks]
                return self.n.error(msg, ERR_PRECONDITION, "device set does not match the list",
                                    missing=obj(missing), extra=obj(extra), stale=obj(stale))
            for (u, i), e in given.items():
                iid = self.next_item
                self.next_item += 1
                item = {"id": iid, "from_user": from_user, "from_device": from_dev,
                        "message_id": mid, "ciphertext": e["ciphertext"], "kind": e["kind"]}
                if "plaintext" in e:
                    item["plaintext"] = e["plaintext"]
                self.boxes.setdefault((u, i), {})[iid] = item
                self.s.put("mb/%s/%d/%d" % (u, i, iid), item)
            self.s.put("next_item", self.next_item)
            self.s.put(done_key, 1)
            self.n.reply(msg, {"type": "relay_delivered", "message_id": mid})
            for (u, i) in given:
                target = self.s.get("nt/%s/%d" % (u, i))
                if target:
                    self.n.notify(target, {"type": "relay_notify", "user": u, "device_id": i})

        self.lists([from_user] + [e["user"] for e in envs], checked)

    def _authorized(self, msg, b, what, cb):
        """Checks a signed fetch/ack; cb(list entry or "pending") when it may go on."""
        user, dev = b["user"], b["device_id"]

        def got(lists):
            v = lists.get(user)
            if v is None:
                return
            self.notice(user, v)
            newest = {d["device_id"]: d for d in v["lists"][-1]["devices"]}
            ever = {d["device_id"]: d for lst in v["lists"] for d in lst["devices"]}
            pending = {d["device_id"]: d for d in v.get("pending", [])}
            entry = newest.get(dev)
            state = "active"
            if entry is None and dev in ever and "keep-revoked" in self.n.bug:
                entry = ever[dev]
            if entry is None and dev in pending:
                entry, state = pending[dev], "pending"
            if entry is None:
                if dev in ever:
                    self.forget(user, dev)
                    return self.n.error(msg, ERR_PRECONDITION, "device revoked")
                return self.n.error(msg, ERR_PRECONDITION, "no such device")
            data = canon([what, user, dev, b["counter"], b.get("ids")])
            if not verify(entry["identity_key"], data, b.get("signature")):
                return self.n.error(msg, ERR_PRECONDITION, "bad signature")
            ckey = "ctr/%s/%d" % (user, dev)
            if b["counter"] <= self.s.get(ckey, 0) and "reuse-counter" not in self.n.bug:
                return self.n.error(msg, ERR_PRECONDITION, "counter %d already used" % b["counter"])
            self.s.put(ckey, max(b["counter"], self.s.get(ckey, 0)))
            cb(state)

        self.lists([user], got)

    def h_relay_fetch(self, msg, b):
        def ok(state):
            key = (b["user"], b["device_id"])
            self.s.put("nt/%s/%d" % key, msg["src"])
            items = [] if state == "pending" else sorted(self.boxes.get(key, {}).values(),
                                                         key=lambda it: it["id"])[:100]
            self.n.reply(msg, {"type": "relay_envelopes", "items": items})
        self._authorized(msg, b, "relay_fetch", ok)

    def h_relay_ack(self, msg, b):
        def ok(state):
            key = (b["user"], b["device_id"])
            box = self.boxes.get(key, {})
            for iid in b["ids"]:
                if box.pop(iid, None) is not None:
                    self.s.delete("mb/%s/%d/%d" % (key[0], key[1], iid))
            self.n.reply(msg, {"type": "relay_acked"})
        self._authorized(msg, b, "relay_ack", ok)


# =========================================================================
# Devices
# =========================================================================
class Devices:
    """Every user name this node meets gets a device here (user, node)."""

    def __init__(self, node):
        self.n, self.s = node, node.store
        self.fetching = set()       # users with a fetch in flight
        self.again = set()          # users notified while fetching
        self.failures = {}          # (user, item id) -> failed attempts
        self.ctr_next = {}          # user -> next counter (reserved in blocks)
        for k, v in self.s.prefix("out/"):
            self.n.after(0.05, lambda v=v: self.push_outbox(v["message_id"], v["from_user"], None))
        self.n.after(0.2, self.tick)

    # --- local state -----------------------------------------------------
    def dev(self, user):
        return self.s.get("dev/" + user)

    def save(self, user, d):
        self.s.put("dev/" + user, d)

    def counter(self, user):
        """A counter that never repeats, also across restarts."""
        d = self.dev(user)
        nxt = self.ctr_next.get(user, d.get("ctr_reserved", 0) + 1)
        if nxt > d.get("ctr_reserved", 0):
            d["ctr_reserved"] = nxt + 100
            self.save(user, d)
        self.ctr_next[user] = nxt + 1
        return nxt

    def signed(self, user, typ, ids=None):
        d = self.dev(user)
        c = self.counter(user)
        body = {"type": typ, "user": user, "device_id": d["device_id"], "counter": c}
        if ids is not None:
            body["ids"] = ids
        body["signature"] = sign(d["identity_key"], canon([typ, user, d["device_id"], c, ids]))
        return body

    # --- the directory, verified -----------------------------------------
    def get_lists(self, users, cb):
        """cb(result) with result {user: lists} or ("error", code, text) when a
        list cannot be had or verified (pins are updated on success). An answer
        older than the pinned chain but agreeing with it is asked for again
        (twice) before it is refused: two answers in flight at once may arrive
        in either order; a directory that rolls back answers so every time."""
        users = sorted(set(users))
        got = {}
        failed = []

        def one(u, again=2):
            def done(b):
                if b is not None and b.get("type") == "dir_devices" and again and \
                        "trust-directory" not in self.n.bug and self.stale(u, b["lists"]):
                    return one(u, again - 1)
                if b is None:
                    failed.append((ERR_TIMEOUT, "the directory did not answer"))
                elif b.get("type") == "error":
                    failed.append((b.get("code", ERR_NO_KEY), "%s: %s" % (u, b.get("text"))))
                else:
                    why = None if "trust-directory" in self.n.bug else self.check_pin(u, b["lists"])
                    if why:
                        failed.append((ERR_PRECONDITION, "%s's device list: %s" % (u, why)))
                    else:
                        got[u] = b
                if len(got) + len(failed) == len(users):
                    if failed:
                        cb(("error",) + failed[0])
                    else:
                        for u2, b2 in got.items():
                            self.s.put("pin/" + u2, [list_hash(lst) for lst in b2["lists"]])
                            self.s.put("keys/" + u2, {str(d["device_id"]): d["identity_key"]
                                                      for lst in b2["lists"] for d in lst["devices"]})
                        cb(got)
            self.n.call_retry(self.n.o.directory, lambda: {"type": "dir_get_devices", "user": u},
                              done, timeout=0.4, tries=5)
        for u in users:
            one(u)

    def stale(self, user, lists):
        """Whether lists is a valid chain that is a strict prefix of the pin."""
        pin = self.s.get("pin/" + user) or []
        hashes = [list_hash(lst) for lst in lists]
        return verify_chain(lists) is None and len(hashes) < len(pin) and \
            hashes == pin[:len(hashes)]

    def check_pin(self, user, lists):
        why = verify_chain(lists)
        if why:
            return why
        pin = self.s.get("pin/" + user) or []
        hashes = [list_hash(lst) for lst in lists]
        if len(hashes) < len(pin):
            return "version %d is older than the pinned version %d" % (len(hashes), len(pin))
        if hashes[:len(pin)] != pin:
            return "differs from the pinned chain"
        return None

    def my_state(self, user, lists_body):
        """active / pending / revoked, from a verified dir_devices body."""
        d = self.dev(user)
        newest = lists_body["lists"][-1]["devices"]
        ever = {x["device_id"] for lst in lists_body["lists"] for x in lst["devices"]}
        if any(x["device_id"] == d["device_id"] for x in newest):
            return "active"
        if d["device_id"] in ever:
            return "revoked"
        return "pending"

    def refresh_status(self, user, cb):
        """Asks the directory for this device's status; cb(status) (the
        stored one when the directory cannot say)."""
        def got(r):
            d = self.dev(user)
            if isinstance(r, dict):
                st = self.my_state(user, r[user])
                if st != d["status"] and d["status"] != "revoked":
                    d["status"] = st
                    self.save(user, d)
            cb(self.dev(user)["status"])
        self.get_lists([user], got)

    # --- client requests -------------------------------------------------
    def h_register(self, msg, b):
        user = b["user"]
        d = self.dev(user)
        if d is None:
            priv = os.urandom(32)
            ik = pub_of(priv)
            spk_priv = os.urandom(32)
            d = {"user": user, "priv": priv.hex(), "identity_key": ik,
                 "registration_id": int.from_bytes(os.urandom(2), "big") % 16380 + 1,
                 "spk": {"id": 1, "key": pub_of(spk_priv), "signature": sign(ik, pub_of(spk_priv))},
                 "otpks": [{"id": i, "key": pub_of(os.urandom(32))} for i in range(1, 21)],
                 "device_id": None, "status": None, "inbox": 0}
            self.save(user, d)
        if d["device_id"] is not None:
            return self.registered(msg, user)

        def published(r):
            if r is None:
                return  # the client times out and registers again
            if r.get("type") == "error":
                return self.n.error(msg, r.get("code", ERR_PRECONDITION), r.get("text", ""))
            d2 = self.dev(user)
            d2["device_id"], d2["status"] = r["device_id"], r["status"]
            self.save(user, d2)
            self.registered(msg, user)

        def publish(new_account):
            body = {"type": "dir_publish", "user": user, "registration_id": d["registration_id"],
                    "identity_key": d["identity_key"], "signed_pre_key": d["spk"],
                    "one_time_pre_keys": d["otpks"]}
            if new_account:
                lst = {"version": 1, "devices": [{"device_id": 1, "identity_key": d["identity_key"],
                                                  "registration_id": d["registration_id"]}],
                       "prev": "", "signer": 1}
                lst["signature"] = sign(d["identity_key"], list_bytes(lst))
                body["list"] = lst
            self.n.call_retry(self.n.o.directory, lambda: body, published, timeout=0.5, tries=6)

        def looked(r):
            if isinstance(r, dict):
                publish(False)
            elif r[1] == ERR_NO_KEY:
                publish(True)
            elif r[1] == ERR_PRECONDITION:
                self.n.error(msg, ERR_PRECONDITION, r[2])
            # a timeout: no reply, the client tries again
        self.get_lists([user], looked)

    def registered(self, msg, user):
        d = self.dev(user)
        self.n.reply(msg, {"type": "registered", "user": user, "device_id": d["device_id"],
                           "status": d["status"], "code": code_of(d["identity_key"])})

    def change_list(self, msg, user, change, done, tries=3):
        """Builds and publishes the next list version: change(newest devices,
        dir_devices body) returns the new devices, or an (code, text) error,
        or "same" when nothing needs to change."""
        d = self.dev(user)
        if d is None or d["device_id"] is None:
            return self.n.error(msg, ERR_NO_KEY, "no device of %s here" % user)

        def got(r):
            if not isinstance(r, dict):
                if r[1] != ERR_TIMEOUT:
                    self.n.error(msg, r[1], r[2])
                return
            body = r[user]
            if self.my_state(user, body) != "active":
                return self.n.error(msg, ERR_PRECONDITION, "this device is not active")
            cur = body["lists"][-1]
            new = change(cur["devices"], body)
            if new == "same":
                return done(cur["devices"])
            if isinstance(new, tuple):
                return self.n.error(msg, *new)
            lst = {"version": cur["version"] + 1, "devices": new, "prev": list_hash(cur),
                   "signer": d["device_id"]}
            lst["signature"] = sign(d["identity_key"], list_bytes(lst))

            def updated(u):
                if u is None:
                    return
                if u.get("type") == "error":
                    if u.get("code") == ERR_PRECONDITION and tries > 1:
                        return self.change_list(msg, user, change, done, tries - 1)
                    return self.n.error(msg, u.get("code", ERR_PRECONDITION), u.get("text", ""))
                self.s.put("pin/" + user, [list_hash(x) for x in body["lists"]] + [list_hash(lst)])
                done(new)
            self.n.call_retry(self.n.o.directory,
                              lambda: {"type": "dir_update_devices", "user": user, "list": lst},
                              updated, timeout=0.5, tries=6)
        self.get_lists([user], got)

    @staticmethod
    def shown(devs):
        return [dict(x, status="active") for x in devs]

    def h_approve_device(self, msg, b):
        user, dev_id, code = b["user"], b["device_id"], b["code"]

        def change(devs, body):
            if any(x["device_id"] == dev_id for x in devs):
                return "same"
            p = next((x for x in body["pending"] if x["device_id"] == dev_id), None)
            if p is None:
                return (ERR_NO_KEY, "no pending device %s" % dev_id)
            if code_of(p["identity_key"]) != code:
                return (ERR_PRECONDITION, "the code does not match the pending device's")
            return devs + [{"device_id": dev_id, "identity_key": p["identity_key"],
                            "registration_id": p["registration_id"]}]
        self.change_list(msg, user, change, lambda devs: self.n.reply(
            msg, {"type": "device_approved", "user": user, "devices": self.shown(devs)}))

    def h_revoke_device(self, msg, b):
        user, dev_id = b["user"], b["device_id"]

        def change(devs, body):
            ever = {x["device_id"] for lst in body["lists"] for x in lst["devices"]}
            if not any(x["device_id"] == dev_id for x in devs):
                return "same" if dev_id in ever else (ERR_NO_KEY, "no device %s" % dev_id)
            left = [x for x in devs if x["device_id"] != dev_id]
            if not left:
                return (ERR_PRECONDITION, "cannot revoke the last device")
            return left

        def done(devs):
            if dev_id == self.dev(user)["device_id"]:
                d = self.dev(user)
                d["status"] = "revoked"
                self.save(user, d)
            self.n.reply(msg, {"type": "device_revoked", "user": user, "devices": self.shown(devs)})
        self.change_list(msg, user, change, done)

    def h_devices(self, msg, b):
        of = b["of"]

        def got(r):
            if not isinstance(r, dict):
                if r[1] != ERR_TIMEOUT:
                    self.n.error(msg, r[1], r[2])
                return
            cur = r[of]["lists"][-1]
            self.n.reply(msg, {"type": "devices", "of": of, "version": cur["version"],
                               "devices": self.shown(cur["devices"])})
        self.get_lists([of], got)

    def h_fingerprint(self, msg, b):
        user, peer = b["user"], b["peer"]
        keys = self.s.get("keys/" + peer) or {}
        d = self.dev(user)
        pk = keys.get(str(b.get("device_id", 1)))
        if d is None or pk is None:
            return self.n.error(msg, ERR_NO_KEY, "unknown device")
        digits = "".join("%05d" % (int.from_bytes(H(*sorted([d["identity_key"], pk]), str(i))[:5],
                                                  "big") % 100000) for i in range(12))
        self.n.reply(msg, {"type": "fingerprint", "safety_number": digits})

    def h_read(self, msg, b):
        user, after = b["user"], b.get("after", 0)
        d = self.dev(user)
        if d is None or d["device_id"] is None:
            return self.n.error(msg, ERR_NO_KEY, "no device of %s here" % user)

        def answer(status):
            if status == "revoked":
                return self.n.error(msg, ERR_PRECONDITION, "this device was revoked")
            n = self.dev(user)["inbox"]
            out = [self.s.get("in/%s/%d" % (user, i)) for i in range(after + 1, n + 1)]
            self.n.reply(msg, {"type": "messages", "messages": [m for m in out if m]})
        if d["status"] == "revoked":
            return answer("revoked")
        self.refresh_status(user, answer)

    def h_send(self, msg, b):
        user, to, text = b["user"], b["to"], b["text"]
        d = self.dev(user)
        if d is None or d["device_id"] is None:
            return self.n.error(msg, ERR_NO_KEY, "no device of %s here" % user)
        if d["status"] == "revoked":
            return self.n.error(msg, ERR_PRECONDITION, "this device was revoked")
        if to == user:
            return self.n.error(msg, ERR_MALFORMED, "to: send to another user")
        mid = str(uuid.uuid4())
        state = {"answered": False}

        def answer(body):
            if not state["answered"]:
                state["answered"] = True
                self.n.reply(msg, body)

        self.n.after(5.0, lambda: answer({"type": "error", "code": ERR_TIMEOUT,
                                          "text": "not delivered yet: still trying"}))
        self.build(mid, user, to, text, answer, 3)

    # --- sending ---------------------------------------------------------
    def build(self, mid, user, to, text, answer, tries):
        """Lists, bundles, encryption, outbox, then push_outbox."""
        d = self.dev(user)

        def fail(code, text_):
            if answer:
                answer({"type": "error", "code": code, "text": text_})

        def with_lists(r):
            if not isinstance(r, dict):
                return fail(r[1], r[2])
            if self.my_state(user, r[user]) != "active":
                d2 = self.dev(user)
                if self.my_state(user, r[user]) == "revoked":
                    d2["status"] = "revoked"
                    self.save(user, d2)
                return fail(ERR_PRECONDITION, "this device is not active")
            if "keep-revoked" in self.n.bug:
                for u in (user, to):   # every device ever listed, from the pins' view
                    lists = r[u]["lists"]
                    seen = {}
                    for lst in lists:
                        for x in lst["devices"]:
                            seen[x["device_id"]] = x
                    r[u] = {"lists": lists[:-1] + [dict(lists[-1], devices=list(seen.values()))]}
            targets = [(to, x) for x in r[to]["lists"][-1]["devices"]]
            targets += [(user, x) for x in r[user]["lists"][-1]["devices"]
                        if x["device_id"] != d["device_id"]]
            need = sorted({u for u, x in targets
                           if self.s.get("sess/%s/%s/%d" % (user, u, x["device_id"]))
                           != x["identity_key"]})
            bundles = {}

            def got_bundles(u, bb):
                if bb is None or bb.get("type") == "error":
                    bundles[u] = bb or {"code": ERR_TIMEOUT, "text": "the directory did not answer"}
                else:
                    bundles[u] = bb
                if len(bundles) < len(need):
                    return
                for u2, bb2 in bundles.items():
                    if bb2.get("type") != "dir_bundles":
                        return fail(bb2.get("code", ERR_TIMEOUT), bb2.get("text", ""))
                    listed = {x["device_id"]: x for x in r[u2]["lists"][-1]["devices"]}
                    for bun in bb2["bundles"]:
                        entry = listed.get(bun["device_id"])
                        if entry is None:
                            continue
                        if "trust-directory" not in self.n.bug and (
                                bun["identity_key"] != entry["identity_key"]
                                or not verify(bun["identity_key"], bun["signed_pre_key"],
                                              bun["signed_pre_key_signature"])):
                            return fail(ERR_PRECONDITION, "%s's device %d: the bundle's identity "
                                        "key is not the listed one" % (u2, bun["device_id"]))
                        self.s.put("sess/%s/%s/%d" % (user, u2, bun["device_id"]),
                                   entry["identity_key"])
                encrypt()

            def encrypt():
                envs = []
                for u, x in targets:
                    ik = x["identity_key"]
                    if "trust-directory" not in self.n.bug and \
                            self.s.get("sess/%s/%s/%d" % (user, u, x["device_id"])) != ik:
                        return fail(ERR_PRECONDITION, "no verified session with %s's device %d"
                                    % (u, x["device_id"]))
                    envs.append(self.seal(d, mid, text, u, x))
                out = {"message_id": mid, "from_user": user, "to": to, "text": text,
                       "envelopes": envs, "tries": tries}
                if "partial-send" in self.n.bug:
                    return self.push_partial(out, answer)
                self.s.put("out/" + mid, out)
                self.push_outbox(mid, user, answer)

            if not need:
                return encrypt()
            for u in need:
                rid = str(uuid.uuid4())
                self.n.call_retry(self.n.o.directory,
                                  lambda u=u, rid=rid: {"type": "dir_get_bundles", "user": u,
                                                        "request_id": rid},
                                  lambda bb, u=u: got_bundles(u, bb), timeout=0.5, tries=4)

        self.get_lists([user, to], with_lists)

    def seal(self, d, mid, text, u, x):
        """One envelope for device x of user u."""
        key = H("pair", *sorted([d["identity_key"], x["identity_key"]]))
        payload = canon({"message_id": mid, "from_user": d["user"], "from_device": d["device_id"],
                         "to_user": u, "to_device": x["device_id"], "text": text}).encode()
        nonce = os.urandom(16)
        stream = b""
        i = 0
        while len(stream) < len(payload):
            stream += H("ks", key, nonce, str(i))
            i += 1
        ct = bytes(a ^ s for a, s in zip(payload, stream))
        tag = H("tag", key, nonce, ct, u, str(x["device_id"]))[:16]
        env = {"user": u, "device_id": x["device_id"], "registration_id": x["registration_id"],
               "ciphertext": b64(nonce + ct + tag), "kind": 1}
        if "leak-plaintext" in self.n.bug:
            env["plaintext"] = b64(payload)
        return env

    def open_envelope(self, user, item):
        """The payload of an item for this device, or None when it does not
        authenticate or is not addressed to it."""
        d = self.dev(user)
        keys = self.s.get("keys/" + item["from_user"]) or {}
        sender = keys.get(str(item["from_device"]))
        if sender is None:
            return "unknown"
        key = H("pair", *sorted([d["identity_key"], sender]))
        try:
            raw = unb64(item["ciphertext"])
        except ValueError:
            return None
        nonce, ct, tag = raw[:16], raw[16:-16], raw[-16:]
        trust = "trust-relay" in self.n.bug
        if not trust and H("tag", key, nonce, ct, user, str(d["device_id"]))[:16] != tag:
            return None
        stream = b""
        i = 0
        while len(stream) < len(ct):
            stream += H("ks", key, nonce, str(i))
            i += 1
        try:
            p = json.loads(bytes(a ^ s for a, s in zip(ct, stream)))
        except ValueError:
            return None
        if not trust and (p.get("to_user") != user or p.get("to_device") != d["device_id"]
                          or p.get("from_user") != item["from_user"]
                          or p.get("from_device") != item["from_device"]
                          or p.get("message_id") != item["message_id"]):
            return None
        return p

    def push_outbox(self, mid, user, answer, delay=0.0):
        """Sends an outbox entry to the relay (byte for byte) until it is
        delivered or refused."""
        out = self.s.get("out/" + mid)
        if out is None:
            return
        body = {"type": "relay_deliver", "from_user": out["from_user"],
                "from_device": self.dev(out["from_user"])["device_id"], "message_id": mid,
                "envelopes": out["envelopes"]}

        def got(r):
            if self.s.get("out/" + mid) is None:
                return
            if r is None or (r.get("type") == "error" and r.get("code") != ERR_PRECONDITION):
                return self.n.after(0.3, lambda: self.push_outbox(mid, user, answer))
            if r.get("type") == "relay_delivered":
                self.s.delete("out/" + mid)
                if answer:
                    answer({"type": "sent", "message_id": mid, "devices": len(out["envelopes"])})
                return
            # refused: the lists changed; build again (same message id) a few times
            self.s.delete("out/" + mid)
            if out["tries"] > 1:
                self.build(mid, out["from_user"], out["to"], out["text"], answer, out["tries"] - 1)
            elif answer:
                answer({"type": "error", "code": ERR_PRECONDITION, "text": r.get("text", "refused")})
        self.n.call(self.n.o.relay, body, got, timeout=0.6)

    def push_partial(self, out, answer):
        """--bug partial-send: one deliver per envelope, no outbox, no retry."""
        left = {"n": len(out["envelopes"]), "ok": 0}

        def got(r):
            left["n"] -= 1
            left["ok"] += bool(r and r.get("type") == "relay_delivered")
            if left["n"] == 0 and answer:
                if left["ok"] == len(out["envelopes"]):
                    answer({"type": "sent", "message_id": out["message_id"],
                            "devices": len(out["envelopes"])})
                else:
                    answer({"type": "error", "code": ERR_TIMEOUT, "text": "partly delivered"})
        for e in out["envelopes"]:
            self.n.call(self.n.o.relay, {"type": "relay_deliver", "from_user": out["from_user"],
                                         "from_device": self.dev(out["from_user"])["device_id"],
                                         "message_id": out["message_id"],
                                         "part": "%s/%d" % (e["user"], e["device_id"]),
                                         "envelopes": [e]}, got, timeout=0.6)

    # --- receiving -------------------------------------------------------
    def tick(self):
        for k, d in self.s.prefix("dev/"):
            if d.get("device_id") is not None and d.get("status") != "revoked":
                self.fetch(d["user"])
        self.n.after(1.0, self.tick)

    def h_relay_notify(self, msg, b):
        user = b["user"]
        d = self.dev(user)
        if d and d.get("device_id") == b["device_id"]:
            self.fetch(user)

    def fetch(self, user):
        if user in self.fetching:
            self.again.add(user)
            return
        self.fetching.add(user)

        def got(r):
            self.fetching.discard(user)
            again = user in self.again
            self.again.discard(user)
            if r is None:
                return
            if r.get("type") == "error":
                if r.get("code") == ERR_PRECONDITION:
                    self.refresh_status(user, lambda st: None)
                return
            self.receive(user, r.get("items") or [], again)
        self.n.call(self.n.o.relay, self.signed(user, "relay_fetch"), got, timeout=1.0)

    def receive(self, user, items, again, refreshed=False):
        unknown = {it["from_user"] for it in items if self.open_envelope(user, it) == "unknown"}
        if unknown and not refreshed:
            return self.get_lists(sorted(unknown),
                                  lambda r: self.receive(user, items, again, True))
        d = self.dev(user)
        acks, retry = [], False
        for it in items:
            p = self.open_envelope(user, it)
            if not isinstance(p, dict):
                k = (user, it["id"])
                self.failures[k] = self.failures.get(k, 0) + 1
                if self.failures[k] >= 3:
                    sys.stderr.write("fake %s: dropping envelope %s for %s: it does not "
                                     "authenticate\n" % (self.n.id, it["id"], user))
                    acks.append(it["id"])
                else:
                    retry = True
                continue
            seen = "seen/%s/%s" % (user, p["message_id"])
            if self.s.get(seen) and "deliver-twice" not in self.n.bug:
                acks.append(it["id"])
                continue
            copies = 2 if "deliver-twice" in self.n.bug else 1
            for _ in range(copies):
                d["inbox"] += 1
                entry = {"message_id": p["message_id"], "from": p["from_user"],
                         "from_device": p["from_device"], "text": p["text"], "seq": d["inbox"]}
                self.put_inbox("in/%s/%d" % (user, d["inbox"]), entry)
            self.put_inbox(seen, 1)
            acks.append(it["id"])
        self.put_inbox("dev/" + user, d)
        if acks:
            self.n.call(self.n.o.relay, self.signed(user, "relay_ack", acks), lambda r: None,
                        timeout=1.0)
        if again or len(items) >= 100:
            self.fetch(user)
        elif retry:
            self.n.after(0.2, lambda: self.fetch(user))

    def put_inbox(self, k, v):
        if "no-commit" in self.n.bug and self.s.fd is not None:
            self.s.rows[k] = v   # visible now, written 2 s later (after the ack left)
            heapq.heappush(self.n.late_puts, (time.monotonic() + 2.0, next(self.n.seq), k, v))
        else:
            self.s.put(k, v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--directory", default=os.environ.get("SECURITOR_DIRECTORY"))
    ap.add_argument("--relay", default=os.environ.get("SECURITOR_RELAY"))
    ap.add_argument("--state-dir", default=os.environ.get("SECURITOR_STATE_DIR"))
    ap.add_argument("--key-file")
    ap.add_argument("--fsync", action="store_true", help="fsync every commit")
    ap.add_argument("--bug", action="append", choices=BUGS, default=[],
                    help="be wrong on purpose (may be repeated)")
    o = ap.parse_args()
    o.bug = " ".join(o.bug)
    if not o.directory or not o.relay:
        sys.stderr.write("net_fake_node: --directory and --relay are required\n")
        return 2
    if o.state_dir and not (o.key_file or os.environ.get("SECURITOR_KEY")):
        sys.stderr.write("net_fake_node: --state-dir needs --key-file or SECURITOR_KEY\n")
        return 2
    return Node(o).run()


if __name__ == "__main__":
    sys.exit(main())
