#!/usr/bin/env python3
"""net_check - reads a scripts/net run's journal and says whether PROTOCOL.md §5
held, with Maelstrom's figures; writes results.json and messages.svg.

    scripts/net_check.py RUN_DIR [--diagram-max N]     exit 0 when every property holds

The journal (RUN_DIR/journal.jsonl) is read once, as a stream: message
records are looked at and forgotten, except for what the properties need
(the relay's fetches, envelopes, acks and deliveries, who sent which msg_id)
and the first messages for the diagram. Devices are (user, node) pairs.

A send is *definite* when its reply is `sent` (acknowledged) or an error
other than 0 and 13 (refused: nothing delivered); a timeout, error 0 or 13 is
*indefinite* (Maelstrom's rule). A `sent` that reached the client after the
client gave up still counts as acknowledged. For each send S and each device
D of the recipient or of the sender (other than the sending device):
  - D must have S when D's activation was acknowledged (a `registered` with
    status active, a `device_approved`, or a `devices` reply listing it)
    before S was invoked, and no revocation of D was invoked before S's reply
    (for an indefinite S: ever);
  - D may have S when it is not a must but its activation was invoked before
    S's reply (ever, for an indefinite S) and its revocation was not
    acknowledged before S was invoked;
  - no other device may have S, and the sending device never shows its own.
Inboxes are the `read` results tagged "final" (after healing). Revoked
devices cannot be read (§5.2: error 22), so for them the checker uses the
relay's traffic instead: no relay_deliver envelope and no relay_envelopes
item for them, of a send invoked after the revocation was acknowledged, and
no relay_envelopes answer to a fetch of theirs sent after it.
"""
import base64
import binascii
import bisect
import json
import os
import re
import sys
from html import escape

TOKEN_RE = re.compile(rb"tk_[a-z2-7]{20}")
# runs searched for encoded secrets: base64 and base64url (padding cut off, it
# is put back), hex in either case; shorter runs cannot hold a 23-byte token
B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}")
HEX_RUN = re.compile(rb"[0-9a-fA-F]{32,}")
SPACE = re.compile(rb"\s+")
URL_SAFE = bytes.maketrans(b"-_", b"+/")
MAX_LAYERS = 4      # decodings (base64, hex, JSON) inside one another
INDEFINITE = (0, 13)
INF = float("inf")
MAX_EXAMPLES = 10


class Prop:
    """A property: pass unless a counterexample was added."""

    def __init__(self, name, what):
        self.name, self.what = name, what
        self.count, self.examples, self.checked, self.notes = 0, [], 0, []

    def fail(self, ex):
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(ex)

    def as_dict(self):
        d = {"pass": self.count == 0, "what": self.what, "checked": self.checked,
             "violations": self.count, "counterexamples": self.examples}
        if self.notes:
            d["notes"] = self.notes
        return d


def _is_id(x):
    return x is None or (isinstance(x, int) and not isinstance(x, bool))


def body_problem(body):
    """Why a message body is malformed (the harness and the checker key on
    msg_id and in_reply_to), or None."""
    if not isinstance(body, dict):
        return "body is not an object"
    if not isinstance(body.get("type"), str):
        return "no body.type (a string)"
    if not _is_id(body.get("msg_id")):
        return "msg_id is not an integer"
    if not _is_id(body.get("in_reply_to")):
        return "in_reply_to is not an integer"
    return None


def quantiles(xs):
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    xs = sorted(xs)

    def q(p):
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2)
    return {"n": len(xs), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(xs[-1], 2)}


# =========================================================================
# Secrets: tokens and key bytes, raw, hex and base64
# =========================================================================
class Needles:
    def __init__(self, keys_hex):
        self.keys = [bytes.fromhex(k) for k in keys_hex]
        self.forms = []    # (bytes, what) searched as substrings
        for k in self.keys:
            self.forms += [(k.hex().encode(), "hex"), (k.hex().upper().encode(), "HEX")]
            for pre in range(3):
                enc = base64.b64encode(b"\0" * pre + k)
                lo = -(-8 * pre // 6)
                hi = (8 * (pre + len(k)) - 6) // 6
                self.forms.append((enc[lo:hi + 1], "base64"))
        self.hit_re = re.compile(b"|".join([TOKEN_RE.pattern] + [re.escape(k) for k in self.keys]))
        self.clean = set() # short runs that decode to no hit (they repeat: keys, ids)

    def key_in(self, data):
        for k in self.keys:
            if k in data:
                return "raw key"
        if len(data) >= 40:
            for f, what in self.forms:
                if f in data:
                    return what + " key"
        return None

    def hit(self, data):
        """A token candidate or a raw key in data (the cheap test)."""
        return self.hit_re.search(data) is not None

    def may_hold(self, line):
        """False only when scan_value can find nothing in the journal line's
        message: its text searched as the strings' are, run by run. Lines with
        escapes or non-ASCII bytes (a string's bytes differ from the text's
        there; JSON inside a string needs escaped quotes) are left to scan_value."""
        if b"\\" in line or not line.isascii() or self.hit(line):
            return True
        line = line.rstrip(b"\n")
        texts = (line, line.replace(b" ", b"")) if b" " in line else (line,)
        clean = self.clean
        for t in texts:
            for run in set(B64_RUN.findall(t)).difference(clean):
                if any(self.hit(d) for _, d in _expand_run("base64", run, "", 0, [])):
                    return True
                if len(run) <= 256:
                    if len(clean) > 100000:
                        clean.clear()
                    clean.add(run)
            for run in HEX_RUN.findall(t):
                if any(self.hit(d) for _, d in _expand_run("hex", run, "", 0, [])):
                    return True
        return False


def _runs(data):
    """(kind, run) for every base64/base64url and hex run of data, and of
    text without whitespace (MIME breaks base64 into lines)."""
    texts = [data] if B64_RUN.search(data) else []   # hex runs are base64 runs too
    if data.isascii() and SPACE.search(data):
        texts.append(SPACE.sub(b"", data))
    return [(kind, m.group()) for t in texts
            for kind, regex in (("base64", B64_RUN), ("hex", HEX_RUN)) for m in regex.finditer(t)]


def _decode_run(kind, run):
    """A run's decodings at every alignment: it may start mid-string, after
    other base64, and its padding may be missing."""
    out = []
    if kind == "hex":
        for off in (0, 1):
            part = run[off:]
            out.append(binascii.unhexlify(part[:len(part) // 2 * 2]))
        return out
    if b"-" in run or b"_" in run:
        run = run.translate(URL_SAFE)
    for off in range(4):
        part = run[off:]
        n = len(part) % 4
        part = part[:-1] if n == 1 else part + b"=" * (-n % 4)
        out.append(binascii.a2b_base64(part))
    return out


def _expand_run(kind, run, how, depth, out):
    for d in _decode_run(kind, run):
        _expand(d, how + " " + kind, depth + 1, out)
    return out


def _encodings(s):
    """A JSON string's bytes: UTF-8, and Latin-1 too when that differs (key
    bytes written as \\u00XX)."""
    out = [s.encode("utf-8", "surrogatepass")]
    if not s.isascii():
        try:
            out.append(s.encode("latin-1"))
        except UnicodeEncodeError:
            pass
    return out


def _expand(data, how, depth, out):
    """Appends (how, bytes) for data and for all it decodes to: its base64,
    base64url and hex runs, a JSON text's strings, up to MAX_LAYERS deep."""
    out.append((how, data))
    if depth >= MAX_LAYERS:
        return out
    for kind, run in _runs(data):
        _expand_run(kind, run, how, depth, out)
    if data.lstrip()[:1] in (b"{", b"["):
        try:
            v = json.loads(data)
        except (ValueError, RecursionError):
            return out
        for s in _strings(v, []):
            for e in _encodings(s):
                _expand(e, how + " json", depth + 1, out)
    return out


def _strings(v, out):
    """Every string of a JSON value, dict keys too."""
    if isinstance(v, dict):
        for k, x in v.items():
            out.append(k)
            _strings(x, out)
    elif isinstance(v, list):
        for x in v:
            _strings(x, out)
    elif isinstance(v, str):
        out.append(v)
    return out


def _scan_str(s, needles, found, where):
    for e in _encodings(s):
        for how, data in _expand(e, "", 0, []):
            how = " (%s)" % how.strip() if how else ""
            for m in TOKEN_RE.findall(data):
                found.append(("token", where + how, m.decode()))
            k = needles.key_in(data)
            if k:
                found.append(("key", where + how, k))


def scan_value(v, needles, found, where):
    """Adds (what, where, detail) to found for every token candidate or key
    inside a JSON value: in its strings and dict keys, raw and decoded
    (base64, base64url and hex runs anywhere in a string, JSON texts, nested)."""
    if isinstance(v, dict):
        for k, x in v.items():
            _scan_str(k, needles, found, where + " key %r" % k[:40])
            scan_value(x, needles, found, where + "." + str(k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            scan_value(x, needles, found, where + "[%d]" % i)
    elif isinstance(v, str):
        _scan_str(v, needles, found, where)


def scan_bytes(data, needles):
    """Token candidates and keys in a file's bytes: raw, and inside every run
    of hex, base64 or base64url characters at every alignment, nested."""
    found = []
    for how, d in _expand(data, "", 0, []):
        how = how.strip() or "raw"
        found += [("token", how, t.decode()) for t in TOKEN_RE.findall(d)]
        k = needles.key_in(d)
        if k:
            found.append(("key", how, k))
    return found


# =========================================================================
# Reading the journal
# =========================================================================
class Journal:
    """What one pass over the journal keeps."""

    def __init__(self, path, diagram_max, window=None):
        self.meta, self.ops, self.events, self.attacks, self.bad = None, [], [], [], []
        self.diagram, self.total_msgs = [], 0
        self.client_replies = {}   # (client, in_reply_to) -> (body, t)
        self.node_sent = {}        # (node, msg_id) -> has in_reply_to
        self.dup_ids = []          # (node, msg_id) seen twice
        self.answered_replies = []
        self.wire = []
        self.n2n, self.n2n_types = 0, {}
        self.n2n_window, self.window = 0, window
        self.fetches = {}          # (node, msg_id) -> (user, device_id, ts, injected)
        self.items = {}            # (user, device_id, item id) -> message_id
        self.got_items = {}        # (user, device_id) -> [(message_id, ts, fetch ts)]
        self.fetch_answers = []    # (user, device_id, fetch ts, reply body, reply ts)
        self.acks = {}             # (user, device_id, message_id) -> first ack ts
        self.delivers = {}         # message_id -> [(ts, node, [(user, device_id)])]
        self.delivers_by_node = {} # node -> [ts]
        self.deliver_reqs = {}     # (node, msg_id) -> (from_user, message_id)
        self.accepted = {}         # message_id -> (node, from_user, ts) of its relay_delivered
        self.blind = []            # (what, where, detail, ts)
        self.scanned = 0           # messages to or from the directory or the relay
        self.bundle_reqs = {}      # (node, msg_id) -> (user, request_id)
        self.prekeys = {}          # (user, device_id, prekey id) -> {request ids}
        self.prekey_keys = {}      # one-time prekey (base64) -> {(user, device_id, request id)}
        self.fates = {}
        self._read(path, diagram_max)

    def _read(self, path, diagram_max):
        with open(path, "rb") as f:
            first = f.readline()
            self.meta = json.loads(first)
            m = self.meta
            nodes = set(m["nodes"])
            backend = {m["directory"], m["relay"]}
            relay = m["relay"]
            needles = Needles(m["keys"].values())
            self.needles = needles
            inject_base = m.get("inject_base", 1 << 62)
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    self.bad.append({"why": "journal line is not JSON (a node wrote a bad line?)",
                                     "line": line[:300].decode(errors="replace")})
                    continue
                k = rec.get("k")
                if k == "m":
                    try:
                        self._msg(rec, line, nodes, backend, relay, needles, inject_base, diagram_max)
                    except (TypeError, AttributeError) as e:
                        # a field of the wrong type: the run fails, the checker goes on
                        self.wire.append({"why": "a field of the wrong type (%s)" % e,
                                          "msg": rec.get("m")})
                elif k == "op":
                    self.ops.append(rec)
                elif k == "ev":
                    self.events.append(rec)
                elif k == "attack":
                    self.attacks.append(rec)
                elif k == "bad":
                    self.bad.append(rec)

    def _msg(self, rec, line, nodes, backend, relay, needles, inject_base, diagram_max):
        msg = rec["m"]
        fate = rec["f"]
        self.total_msgs += 1
        self.fates[fate] = self.fates.get(fate, 0) + 1
        if len(self.diagram) < diagram_max:
            self.diagram.append(rec)
        src, dest, body = msg.get("src"), msg.get("dest"), msg.get("body")
        ts = rec["ts"]
        from_node = src in nodes
        copy = fate.startswith("dup")
        original = not copy and fate != "inj"
        if not copy and (src in backend or dest in backend):
            self.scanned += 1
        if not copy and (src in backend or dest in backend) and needles.may_hold(line):
            found = []
            scan_value(body, needles, found, "body")
            if "o" in rec:
                scan_value((rec["o"] or {}).get("body"), needles, found, "original body")
            typ = body.get("type") if isinstance(body, dict) else None
            for what, where, detail in dict.fromkeys(found):
                self.blind.append((what, "%s->%s %s %s" % (src, dest, typ, where), detail, ts))
        why = body_problem(body)
        if why:
            if not copy:
                self.wire.append({"why": why, "msg": msg})
            return
        typ = body.get("type")
        if from_node and original:
            if set(msg) != {"src", "dest", "body"}:
                self.wire.append({"why": "keys other than src, dest, body", "msg": msg})
            mid = body.get("msg_id")
            if mid is not None:
                key = (src, mid)
                if key in self.node_sent:
                    self.dup_ids.append({"node": src, "msg_id": mid, "t": ts})
                self.node_sent[key] = "in_reply_to" in body
            irt = body.get("in_reply_to")
            if irt is not None and self.node_sent.get((dest, irt)):
                self.answered_replies.append({"reply": msg, "t": ts})
        if copy:
            return
        if from_node and dest in nodes and fate not in ("inj", "h"):
            # what the nodes sent each other (not the harness's replays, nor their answers)
            self.n2n += 1
            self.n2n_types[typ] = self.n2n_types.get(typ, 0) + 1
            if self.window and self.window[0] <= ts <= self.window[1]:
                self.n2n_window += 1
        if not from_node:
            return
        if dest not in nodes:
            irt = body.get("in_reply_to")
            if irt is not None:
                self.client_replies.setdefault((dest, irt), (body, rec["tr"]))
            return
        # the directory's one-time prekeys: each handed out once (§5)
        if typ == "dir_get_bundles" and src not in backend:
            self.bundle_reqs[(src, body.get("msg_id"))] = (body.get("user"), body.get("request_id"))
        elif typ == "dir_bundles" and src in backend:
            req = self.bundle_reqs.get((dest, body.get("in_reply_to")))
            given = rec["o"].get("body", body) if "o" in rec else body
            if req is not None:
                for b in given.get("bundles") or []:
                    if not isinstance(b, dict) or b.get("one_time_pre_key_id") is None:
                        continue
                    k = (req[0], b.get("device_id"), b.get("one_time_pre_key_id"))
                    self.prekeys.setdefault(k, set()).add(req[1])
                    if b.get("one_time_pre_key"):
                        self.prekey_keys.setdefault(b["one_time_pre_key"], set()).add(
                            (req[0], b.get("device_id"), req[1]))
        # the relay's traffic
        if dest == relay:
            if typ == "relay_fetch":
                self.fetches[(src, body.get("msg_id"))] = (
                    body.get("user"), body.get("device_id"), ts, fate == "inj")
            elif typ == "relay_ack":
                dev = (body.get("user"), body.get("device_id"))
                for iid in body.get("ids") or []:
                    mid = self.items.get(dev + (iid,))
                    if mid is not None:
                        k = dev + (mid,)
                        if k not in self.acks:
                            self.acks[k] = ts
            elif typ == "relay_deliver" and fate != "inj":
                envs = body.get("envelopes") or []
                addressed = [(e.get("user"), e.get("device_id")) for e in envs
                             if isinstance(e, dict)]
                self.delivers.setdefault(body.get("message_id"), []).append((ts, src, addressed))
                self.delivers_by_node.setdefault(src, []).append(ts)
                self.deliver_reqs[(src, body.get("msg_id"))] = (body.get("from_user"),
                                                                body.get("message_id"))
        elif src == relay and typ == "relay_delivered":
            req = self.deliver_reqs.get((dest, body.get("in_reply_to")))
            if req is not None and req[1] not in self.accepted:
                self.accepted[req[1]] = (dest, req[0], ts)
        elif src == relay and "in_reply_to" in body:
            f = self.fetches.get((dest, body.get("in_reply_to")))
            if f is not None:
                user, dev, fts, inj = f
                self.fetch_answers.append((user, dev, fts, body, ts, inj))
                if typ == "relay_envelopes":
                    for it in body.get("items") or []:
                        if isinstance(it, dict):
                            self.items[(user, dev, it.get("id"))] = it.get("message_id")
                            self.got_items.setdefault((user, dev), []).append(
                                (it.get("message_id"), ts, fts))


# =========================================================================
# The model: devices and sends
# =========================================================================
class Device:
    def __init__(self, user, node):
        self.user, self.node = user, node
        self.device_id = None
        self.act_inv = self.act_ack = None
        self.rev_inv = self.rev_ack = None
        self.final = None         # the final read's reply
        self.reads = []           # (t1, reply) of every ok read

    def key(self):
        return (self.user, self.node)

    def name(self):
        return "%s@%s" % (self.user, self.node)


def _min(a, b):
    return b if a is None else (a if b is None else min(a, b))


def build_devices(ops):
    devs = {}
    by_id = {}
    regs = sorted((o for o in ops if o["f"] == "register"), key=lambda o: o["t0"])
    for o in regs:
        user = o["req"].get("user")
        d = devs.setdefault((user, o["n"]), Device(user, o["n"]))
        rep = o.get("rep") or {}
        if rep.get("type") == "registered":
            d.device_id = rep.get("device_id")
            by_id[(user, d.device_id)] = d
            if rep.get("status") == "active":
                d.act_ack = _min(d.act_ack, o["t1"])
                first = min(x["t0"] for x in regs if x["req"].get("user") == user and x["n"] == o["n"])
                d.act_inv = _min(d.act_inv, first)
    for o in sorted(ops, key=lambda o: o["t0"]):
        f, req, rep = o["f"], o["req"], o.get("rep") or {}
        user = req.get("user")
        if f == "approve_device":
            d = by_id.get((user, req.get("device_id")))
            if d is None:
                continue
            if rep.get("type") == "device_approved" or not rep or rep.get("code") in INDEFINITE:
                d.act_inv = _min(d.act_inv, o["t0"])
            if rep.get("type") == "device_approved":
                d.act_ack = _min(d.act_ack, o["t1"])
        elif f == "revoke_device":
            d = by_id.get((user, req.get("device_id")))
            if d is None:
                continue
            if rep.get("type") == "device_revoked" or not rep or rep.get("code") in INDEFINITE:
                d.rev_inv = _min(d.rev_inv, o["t0"])
            if rep.get("type") == "device_revoked":
                d.rev_ack = _min(d.rev_ack, o["t1"])
        elif f == "devices" and rep.get("type") == "devices":
            listed = {x.get("device_id") for x in rep.get("devices") or [] if isinstance(x, dict)}
            for (u, i), d in by_id.items():
                if u != req.get("of"):
                    continue
                if i in listed and d.act_inv is not None:
                    d.act_ack = _min(d.act_ack, o["t1"])
                elif i not in listed and d.rev_inv is not None:
                    d.rev_ack = _min(d.rev_ack, o["t1"])
    return devs, by_id


class Send:
    def __init__(self, op, reply, t_reply):
        req = op["req"]
        self.op, self.user, self.node, self.to = op, req.get("user"), op["n"], req.get("to")
        self.text, self.t0 = req.get("text"), op["t0"]
        # When an open loop's send was due (net.py's paced phase): its
        # latency counts from then, so a harness that falls behind and
        # sends late shows in the figures. Invocation is still t0.
        due = op.get("due")
        self.due = due if isinstance(due, (int, float)) and due <= self.t0 else self.t0
        self.reply = reply
        self.message_id = None
        if reply and reply.get("type") == "sent":
            self.outcome, self.end = "ok", t_reply
            self.message_id = reply.get("message_id")
        elif reply and reply.get("type") == "error" and reply.get("code") not in INDEFINITE:
            self.outcome, self.end = "fail", t_reply
        else:
            self.outcome, self.end = "info", INF

    def tag(self):
        return self.op.get("tag")


def classify(s, d):
    """"must", "may" or "no": whether device d is to have send s."""
    if (d.user, d.node) == (s.user, s.node) or d.user not in (s.to, s.user):
        return "no"
    if d.act_ack is not None and d.act_ack < s.t0 and (d.rev_inv is None or d.rev_inv > s.end):
        return "must"
    if d.act_inv is not None and d.act_inv < s.end and not (d.rev_ack is not None and d.rev_ack < s.t0):
        return "may"
    return "no"


# =========================================================================
# The check
# =========================================================================
def check(run_dir, diagram_max=2000, bench=None, expect_all_ok=False):
    window = bench["window"] if bench else None
    j = Journal(os.path.join(run_dir, "journal.jsonl"), diagram_max, window)
    meta = j.meta
    P = {}

    def prop(name, what):
        P[name] = Prop(name, what)
        return P[name]

    ops = j.ops
    devs, by_id = build_devices(ops)
    # late replies count: a `sent` after the client gave up is still an acknowledgment
    sends = []
    for o in ops:
        if o["f"] != "send":
            continue
        rep, t = o.get("rep"), o["t1"]
        if rep is None:
            late = j.client_replies.get((o["c"], o["req"].get("msg_id")))
            if late:
                rep, t = late
                o["late"] = True
        sends.append(Send(o, rep, t))
    by_text = {}
    for s in sends:
        by_text.setdefault(s.text, []).append(s)

    # reads
    for o in ops:
        if o["f"] != "read":
            continue
        d = devs.get((o["req"].get("user"), o["n"]))
        rep = o.get("rep") or {}
        if d is None:
            continue
        if o.get("tag") == "final" and (rep.get("type") == "messages" or
                                        (rep and rep.get("code") not in INDEFINITE)):
            d.final = rep
        if rep.get("type") == "messages":
            d.reads.append((o["t1"], o["req"].get("after", 0), rep))

    inbox = {}   # device key -> {text: [entries]}
    p_meta = prop("inbox_entries", "every inbox entry is a message some client sent, with its "
                  "message_id, from and from_device; seq counts 1, 2, 3, ...")
    for d in devs.values():
        if d.final and d.final.get("type") == "messages":
            msgs = [m for m in d.final.get("messages") or []]
            p_meta.checked += len(msgs)
            by = {}
            for i, m in enumerate(msgs):
                if not isinstance(m, dict):
                    p_meta.fail({"device": d.name(), "why": "entry is not an object", "entry": m})
                    continue
                if m.get("seq") != i + 1:
                    p_meta.fail({"device": d.name(), "why": "seq %r at position %d" % (m.get("seq"), i + 1)})
                by.setdefault(m.get("text"), []).append(m)
                ss = by_text.get(m.get("text"))
                if not ss:
                    p_meta.fail({"device": d.name(), "why": "a message no client sent (altered?)",
                                 "entry": m})
                    continue
                s = ss[0]
                sender = devs.get((s.user, s.node))
                if m.get("from") != s.user or (sender and sender.device_id is not None
                                               and m.get("from_device") != sender.device_id):
                    p_meta.fail({"device": d.name(), "why": "from/from_device are not the sender's",
                                 "entry": m, "sender": "%s@%s" % (s.user, s.node)})
                if s.message_id is not None and m.get("message_id") != s.message_id:
                    p_meta.fail({"device": d.name(), "why": "message_id is not the one `sent` gave",
                                 "entry": m, "sent": s.message_id})
                if s.message_id is None and m.get("message_id"):
                    s.message_id = m.get("message_id")
            inbox[d.key()] = by

    # exactly once, all or none, refused sends
    p_once = prop("exactly_once", "every acknowledged send is in the inbox of every device that "
                  "was active for it exactly once, in no other, never in the sender's own")
    p_atomic = prop("all_or_none", "a send without a reply (timeout, error 0/13) is in all of its "
                    "devices' inboxes or in none")
    p_refused = prop("refused_sends", "a send refused with an error (other than 0/13) is in no inbox")
    readable = {k for k in inbox}
    for s in sends:
        counts = {}
        classes = {}
        for k in readable:
            d = devs[k]
            c = classify(s, d)
            classes[k] = c
            counts[k] = len(inbox[k].get(s.text, []))
        if s.outcome == "fail":
            p_refused.checked += 1
            got = sorted(devs[k].name() for k in readable if counts[k])
            if got:
                p_refused.fail({"send": send_desc(s), "in": got})
            continue
        prop_ = p_once if s.outcome == "ok" else p_atomic
        prop_.checked += 1
        have_any = any(counts[k] for k in readable)
        bad = []
        for k in readable:
            c, n = classes[k], counts[k]
            if n > 1:
                bad.append("%s has it %d times" % (devs[k].name(), n))
            elif c == "no" and n:
                bad.append("%s has it but was not active for it%s" % (
                    devs[k].name(), " (it is the sender)" if k == (s.user, s.node) else ""))
            elif c == "must" and n == 0 and (s.outcome == "ok" or have_any):
                bad.append("%s does not have it" % devs[k].name())
        if bad:
            prop_.fail({"send": send_desc(s), "problems": bad[:6]})

    # inboxes only grow: every earlier read is a prefix of the final inbox
    p_stable = prop("inbox_stable", "every read shows entries the final inbox has at the same seq "
                    "(nothing lost or rewritten after a crash), all after `after`")
    for d in devs.values():
        if not (d.final and d.final.get("type") == "messages"):
            continue
        final = {m.get("seq"): (m.get("message_id"), m.get("text"))
                 for m in d.final.get("messages") or [] if isinstance(m, dict)}
        for t1, after, rep in d.reads:
            for m in rep.get("messages") or []:
                if not isinstance(m, dict):
                    continue
                p_stable.checked += 1
                seq = m.get("seq")
                if not isinstance(seq, int) or seq <= (after or 0):
                    p_stable.fail({"device": d.name(), "why": "seq %r not after %r" % (seq, after)})
                elif final.get(seq) != (m.get("message_id"), m.get("text")):
                    p_stable.fail({"device": d.name(), "t": t1, "seq": seq,
                                   "read": [m.get("message_id"), m.get("text")],
                                   "final": final.get(seq)})

    # revocation
    p_rev = prop("revocation", "nothing of a send invoked after a revocation was acknowledged "
                 "reaches the revoked device (no envelope addressed to it, no item fetched by it); "
                 "its fetches sent after the acknowledgment get errors; it can no longer read")
    mid_to_send = {s.message_id: s for s in sends if isinstance(s.message_id, str)}
    for d in devs.values():
        if d.rev_ack is None or d.device_id is None:
            continue
        p_rev.checked += 1
        did = (d.user, d.device_id)
        for mid, lst in j.delivers.items():
            s = mid_to_send.get(mid)
            if s is None or s.t0 <= d.rev_ack:
                continue
            for ts, node, addressed in lst:
                if did in addressed:
                    p_rev.fail({"device": d.name(), "why": "an envelope for it in relay_deliver",
                                "send": send_desc(s), "revoked_at": d.rev_ack, "t": ts})
        for mid, ts, fts in j.got_items.get(did, []):
            s = mid_to_send.get(mid)
            if s is not None and s.t0 > d.rev_ack:
                p_rev.fail({"device": d.name(), "why": "fetched an item of a later send",
                            "send": send_desc(s), "revoked_at": d.rev_ack, "t": ts})
        for user, dev, fts, body, ts, inj in j.fetch_answers:
            if (user, dev) == did and fts > d.rev_ack and body.get("type") != "error":
                p_rev.fail({"device": d.name(), "why": "a fetch sent after the revocation was "
                            "answered with %s" % body.get("type"), "fetch_t": fts,
                            "revoked_at": d.rev_ack, "items": len(body.get("items") or [])})
        if d.final and d.final.get("type") == "messages":
            p_rev.fail({"device": d.name(), "why": "its final read was answered (a revoked "
                        "device gets error 22)"})
        for s in sends:
            if (s.user, s.node) == d.key() and s.t0 > d.rev_ack and s.outcome == "ok":
                p_rev.fail({"device": d.name(), "why": "it sent after its revocation was "
                            "acknowledged", "send": send_desc(s)})

    p_final = prop("final_reads", "after healing every device that was never revoked answers `read`")
    for d in devs.values():
        if d.device_id is None:
            continue
        p_final.checked += 1
        if d.rev_inv is None and not (d.final and d.final.get("type") == "messages"):
            p_final.fail({"device": d.name(), "reply": d.final})

    # a refused send has nothing at the relay, whenever its node delivers it
    p_acc = prop("accepted_not_refused", "every message the relay accepted (relay_delivered) "
                 "belongs to a send that was not refused: a send answered with an error (other "
                 "than 0/13) has no message at the relay, before or after its reply")
    by_dev = {}
    for s in sends:
        by_dev.setdefault((s.user, s.node), []).append(s)
    for mid, (node, user, ts) in j.accepted.items():
        p_acc.checked += 1
        s = mid_to_send.get(mid)
        if s is not None:
            if s.outcome == "fail":
                p_acc.fail({"message_id": mid, "why": "the relay accepted a refused send",
                            "send": send_desc(s), "t": ts})
            continue
        # its message_id is unknown: one of the device's sends whose message_id is unknown
        cands = [s for s in by_dev.get((user, node), []) if s.t0 <= ts and s.message_id is None]
        if not cands or all(s.outcome == "fail" for s in cands):
            p_acc.fail({"message_id": mid, "device": "%s@%s" % (user, node), "t": ts,
                        "why": "the relay accepted a message of no send, or of a refused one",
                        "sends": [send_desc(s) for s in cands[-3:]]})

    # blind backend: messages and state files
    sent_tokens = set(by_text)
    p_blind = prop("blind_backend", "no plaintext token and no node key in any message to or "
                   "from the directory or the relay (strings and dict keys searched raw, and "
                   "decoded: base64, base64url and hex runs anywhere in them, JSON texts, nested)")
    p_blind.checked = j.scanned
    for what, where, detail, ts in j.blind:
        if what == "key" or detail in sent_tokens:
            p_blind.fail({"found": what, "where": where, "detail": detail, "t": ts})
    p_state = prop("blind_state", "no plaintext token and no node key in the directory's and the "
                   "relay's state files, found under the state folder (raw, hex, base64 and "
                   "base64url at every alignment, nested); each of the two has one")
    sd = meta.get("state_dir")
    if sd:
        # every file under the folder whose name, or a folder's on its path, is the node's id
        # (n1, n1.db, n1-wal, n1/...); each of the two must have written one
        per_node = {meta["directory"]: 0, meta["relay"]: 0}
        for top, dirs, files in os.walk(sd):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                parts = os.path.relpath(path, sd).split(os.sep)
                owner = next((n for n in per_node for part in parts
                              if part == n or part.startswith((n + ".", n + "-"))), None)
                if owner is None or not os.path.isfile(path):
                    continue
                per_node[owner] += 1
                p_state.checked += 1
                with open(path, "rb") as f:
                    data = f.read()
                for what, how, detail in scan_bytes(data, j.needles):
                    if what == "key" or detail in sent_tokens:
                        p_state.fail({"file": os.path.relpath(path, sd), "found": what, "how": how,
                                      "detail": detail})
        for n, count in per_node.items():
            if not count:
                p_state.fail({"why": "no state file of %s in %s (nothing was searched)" % (n, sd)})
    else:
        p_state.notes.append("the run had no --state-dir")

    # one-time prekeys
    p_pk = prop("prekeys_once", "each one-time prekey is handed out once: no two dir_bundles "
                "answers (to different request_ids) carry the same prekey id of a device, or the "
                "same prekey")
    p_pk.checked = len(j.prekeys)
    for k, rids in j.prekeys.items():
        if len(rids) > 1:
            p_pk.fail({"user": k[0], "device_id": k[1], "one_time_pre_key_id": k[2],
                       "request_ids": sorted(map(str, rids))[:4]})
    for key, who in j.prekey_keys.items():
        if len({w[2] for w in who}) > 1:
            p_pk.fail({"one_time_pre_key": key, "handed_out": sorted(map(str, who))[:4]})

    # a send answers within 5 s (§5.2), unless its node was down meanwhile
    slack = 1.0
    opts = meta.get("options") or {}
    slack += 2 * ((opts.get("latency") or 0) + (opts.get("jitter") or 0)) / 1000.0
    down = {}
    for e in j.events:
        if e.get("e") in ("kill", "exit"):
            down.setdefault(e.get("node"), []).append([e.get("t"), INF])
        elif e.get("e") == "start" and down.get(e.get("node")):
            down[e["node"]][-1][1] = e.get("t")
    p_5s = prop("send_within_5s", "every send is answered within 5 s (sent, error 22 or error "
                "0) unless its node was down meanwhile")
    for s_ in sends:
        limit = s_.t0 + 5.0 + slack
        t_rep = s_.end if s_.outcome != "info" else (
            s_.op["t1"] if s_.op.get("rep") is not None else INF)
        if t_rep <= limit:
            p_5s.checked += 1
            continue
        if any(a <= limit and b >= s_.t0 for a, b in down.get(s_.node, [])):
            continue
        p_5s.checked += 1
        p_5s.fail({"send": send_desc(s_), "answered_after_s": None if t_rep == INF
                   else round(t_rep - s_.t0, 3)})

    # the wire
    p_wire = prop("wire", "every line a node wrote is one JSON object with exactly src, dest and "
                  "body (src its own id) and a body.type")
    for b in j.bad:
        p_wire.fail(b)
    for w in j.wire:
        p_wire.fail(w)
    p_wire.checked = j.total_msgs
    p_ids = prop("msg_ids_unique", "no node gives two of its messages the same msg_id, also "
                 "across restarts (PROTOCOL.md §4)")
    p_ids.checked = len(j.node_sent)
    for x in j.dup_ids:
        p_ids.fail(x)
    p_rep = prop("replies_not_answered", "no node answers a reply (§1: a message with "
                 "in_reply_to is never answered)")
    p_rep.checked = len(j.node_sent)
    for x in j.answered_replies:
        p_rep.fail(x)

    # processes
    p_proc = prop("nodes_clean", "no node exits by itself; at the end each exits 0 when its stdin "
                  "closes; no sanitizer report in any node's stderr")
    for e in j.events:
        if e.get("e") == "exit":
            p_proc.fail({"node": e.get("node"), "why": "exited by itself", "code": e.get("code"),
                         "t": e.get("t")})
        elif e.get("e") == "stop" and e.get("code") != 0:
            p_proc.fail({"node": e.get("node"), "why": "exit status at the end", "code": e.get("code")})
        elif e.get("e") == "torn-line":
            p_proc.notes.append("%s died in the middle of a line (%d bytes)" % (
                e.get("node"), e.get("bytes", 0)))
    logs = os.path.join(run_dir, "logs")
    if os.path.isdir(logs):
        for name in sorted(os.listdir(logs)):
            p_proc.checked += 1
            with open(os.path.join(logs, name), "rb") as f:
                text = f.read()
            for pat in (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:",
                        b"WARNING: ThreadSanitizer", b"Traceback (most recent call last)"):
                i = text.find(pat)
                if i >= 0:
                    p_proc.fail({"log": name, "found": text[i:i + 300].decode(errors="replace")})

    # progress: a run where nothing worked proves nothing
    p_prog = prop("progress", "the workload ran: every user's first device registered, some "
                  "sends were acknowledged and delivered")
    setup_fail = [o for o in ops if o["f"] == "register" and o.get("tag") == "setup"]
    users = {o["req"].get("user") for o in setup_fail}
    for u in sorted(users):
        if not any(d.user == u and d.act_ack is not None for d in devs.values()):
            p_prog.fail({"user": u, "why": "no active device"})
    delivered = sum(1 for s in sends if s.outcome == "ok" and any(
        inbox.get(k, {}).get(s.text) for k in readable))
    p_prog.checked = len(sends)
    if not any(s.outcome == "ok" for s in sends):
        p_prog.fail({"why": "no send was acknowledged", "sends": len(sends)})
    elif not delivered:
        p_prog.fail({"why": "no acknowledged send reached an inbox"})
    if expect_all_ok:
        p_ok = prop("all_ok", "without faults every request succeeds (but error 22 for a device "
                    "whose revocation was already invoked, or error 0 for its send whose "
                    "delivery had left)")
        for o in ops:
            p_ok.checked += 1
            rep = o.get("rep") or {}
            if rep and rep.get("type") != "error":
                continue
            acting = devs.get((o["req"].get("user"), o["n"]))
            # A device revoked while it acts is refused (22); a send of it
            # whose delivery had left when the relay refused it is
            # indefinite instead (0, PROTOCOL.md §5.2), as a copy of it may
            # have been accepted before.
            revoked = acting is not None and acting.rev_inv is not None \
                and acting.rev_inv < o["t1"]
            if revoked and rep.get("code") in ((0, 22) if o["f"] == "send" else (22,)):
                continue
            if str(o.get("tag", "")).startswith("attack:"):
                continue
            p_ok.fail({"op": o["f"], "req": o["req"], "rep": rep, "node": o["n"]})

    # attacks
    for a in j.attacks:
        check_attack(a, P, j, sends, devs, inbox)

    # a property the run should have exercised but that checked nothing says so
    attacks = set(str(opts.get("attacks") or "").split(","))
    expect = ["inbox_entries", "exactly_once", "inbox_stable", "final_reads", "prekeys_once",
              "send_within_5s", "accepted_not_refused"]
    if opts.get("churn") or "revoked-fetch" in attacks:
        expect.append("revocation")
    if attacks & {"ghost-device", "rollback", "swap-key"}:
        expect.append("refused_sends")
    for name in expect:
        if P[name].checked == 0 and not P[name].notes:
            P[name].notes.append("checked nothing: the run had no case for it")

    figures = make_figures(j, ops, sends, devs, inbox, window,
                           bench.get("paced_window") if bench else None,
                           bench.get("disk_probe_ms") if bench else None)
    res = {"run": run_dir, "seed": meta.get("seed"), "scenario": meta.get("scenario"),
           "options": meta.get("options"), "nodes": meta["nodes"],
           "properties": {k: v.as_dict() for k, v in P.items()},
           "figures": figures}
    res["ok"] = all(v.count == 0 for v in P.values())
    write_results(run_dir, res)
    write_svg(os.path.join(run_dir, "messages.svg"), j, meta)
    return res


def send_desc(s):
    return {"from": "%s@%s" % (s.user, s.node), "to": s.to, "text": s.text, "t0": s.t0,
            "outcome": s.outcome, "message_id": s.message_id, "reply": s.reply}


def check_attack(a, P, j, sends, devs, inbox):
    name = a["name"]
    p = P.setdefault("attack:" + name, Prop("attack:" + name, ATTACK_WHAT.get(name, name)))
    p.checked += 1
    if not a.get("fired"):
        p.fail({"why": "the attack never fired: %s" % a.get("why", "no matching message")})
        return
    by_tag = {}
    for s in sends:
        by_tag.setdefault(s.tag(), []).append(s)
    probes = by_tag.get("probe:" + name, [])
    bad_probes = [send_desc(s) for s in probes if s.outcome != "ok"]
    if not probes:
        p.fail({"why": "no probe send after the attack"})
    for b in bad_probes:
        p.fail({"why": "after the attack a probe send failed: the system stopped working",
                "send": b})
    attacked = [s for s in sends if s.text == a.get("token")]
    if name in ("ghost-device", "rollback", "swap-key"):
        for s in attacked:
            if s.outcome != "fail" or (s.reply or {}).get("code") != 22:
                p.fail({"why": "the send that got the forged directory answer was not refused "
                        "with error 22", "send": send_desc(s)})
            t_first, t_end = a.get("t_first") or s.t0, s.end if s.end != INF else s.t0 + 60
            n = [t for t in j.delivers_by_node.get(a.get("node"), []) if t_first <= t <= t_end]
            if n:
                p.fail({"why": "the device sent %d relay_deliver after the forged answer (it "
                        "encrypted to the forged list)" % len(n)})
        if name == "ghost-device":
            ghost = (a.get("user"), a.get("device_id"))
            for mid, lst in j.delivers.items():
                for ts, node, addressed in lst:
                    if ghost in addressed:
                        p.fail({"why": "an envelope for the ghost device", "t": ts})
    elif name in ("flip-byte", "replay-envelope", "misaddress"):
        # the inbox side is checked by exactly_once and inbox_entries; here the target device
        box = inbox.get((a.get("user"), a.get("node")))
        if box is None:
            p.fail({"why": "the target device's inbox could not be read"})
            return
        mid = a.get("message_id")
        for text, entries in box.items():
            for e in entries:
                if name == "misaddress" and e.get("message_id") == mid:
                    p.fail({"why": "the misaddressed envelope reached the inbox", "entry": e})
        if name == "replay-envelope":
            n = sum(1 for entries in box.values() for e in entries if e.get("message_id") == mid)
            if n > 1:
                p.fail({"why": "the replayed envelope is in the inbox %d times" % n})
        if name == "flip-byte":
            n = sum(1 for entries in box.values() for e in entries if e.get("message_id") == mid)
            if n != 1:
                p.fail({"why": "the message whose envelope was damaged once is in the inbox %d "
                        "times (it must come through once, undamaged, on a later fetch)" % n})
    elif name == "replay-fetch":
        r = a.get("reply")
        if not r or r.get("type") != "error" or r.get("code") != 22:
            p.fail({"why": "the replayed relay_fetch was not refused with error 22", "reply": r})
    elif name == "revoked-fetch":
        # the held-back fetch's counter is fresh: only the revocation can refuse it
        r = a.get("reply")
        if a.get("injected") and (not r or r.get("type") != "error" or r.get("code") != 22):
            p.fail({"why": "the revoked device's held-back fetch was not refused with error 22",
                    "reply": r})
        elif a.get("injected") and "counter" in str(r.get("text", "")):
            p.fail({"why": "the revoked device's held-back fetch was refused for its counter, "
                    "not for the revocation (the relay did not see it)", "reply": r})
        rd = a.get("read")
        if not rd or rd.get("type") != "error" or rd.get("code") != 22:
            p.fail({"why": "the revoked device's read was not refused with error 22", "reply": rd})
        n_own = 0
        for user, dev, fts, body, ts, inj in j.fetch_answers:
            if (user, dev) == (a.get("user"), a.get("device_id")) and fts > a["t_revoked"] and not inj:
                n_own += 1
                if body.get("type") != "error":
                    p.fail({"why": "a fetch of the revoked device was answered with %s"
                            % body.get("type"), "items": len(body.get("items") or [])})
        if n_own == 0 and not a.get("injected"):
            p.fail({"why": "no fetch of the revoked device after the revocation was tested: none "
                    "was held back (%s) and its node made none of its own" % a.get("held_why")})
        elif n_own == 0:
            p.notes.append("the revoked device's node made no fetch of its own after the "
                           "revocation (it may know it was revoked); only the held-back one "
                           "was tested")
        if not a.get("injected"):
            p.notes.append("no fetch of the device could be held back (%s); only its own "
                           "fetches were tested" % a.get("held_why"))


ATTACK_WHAT = {
    "ghost-device": "the directory adds a ghost device to bob's newest list: the send is refused "
                    "(22), nothing is encrypted to the ghost, the system keeps working",
    "rollback": "the directory answers with bob's list one version back: refused (22)",
    "swap-key": "the directory swaps a bundle's identity key: refused (22)",
    "flip-byte": "the relay flips a byte of an envelope once: the device refuses it, the message "
                 "arrives once, undamaged, on a later fetch",
    "replay-envelope": "the relay hands bob's device an envelope again: stored once",
    "misaddress": "the relay hands bob's device an envelope meant for alice's: never in bob's inbox",
    "replay-fetch": "a device's earlier relay_fetch is sent to the relay again: error 22",
    "revoked-fetch": "a revoked device's fetches get error 22 and nothing, one held back from "
                     "before the revocation (a fresh counter) too; it cannot read (22)",
}


def window_figures(j, sends, full, devs, window, probe=None):
    """The bench's figures over the sends started in window = [w0, w1]: how
    many, how many reached every device they had to, that rate (up to the
    last of those deliveries), envelopes, and the delivery latencies (send
    invoked -> the device's relay_ack). With the disk probe's figures (its
    stalls: [start, ms]), also the latencies of the deliveries that
    overlapped none: about what the system does while the disk keeps its
    pace. About: a stall may have begun up to one probe period before the
    call that saw it, and the queues it left take a while to drain, so each
    is widened by a period before and 50 ms after."""
    w0, w1 = window
    in_win = [(s, t) for s, t in full if w0 <= s.due <= w1]
    sends_win = [s for s in sends if w0 <= s.due <= w1]
    n_ok = sum(1 for s in sends_win if s.outcome == "ok")
    env_win = sum((s.reply or {}).get("devices", 0) or 0 for s in sends_win if s.outcome == "ok")
    end = max((t for _, t in in_win), default=w1)
    lat, clear = [], []
    spans = [(t - probe["every_s"], t + ms / 1000.0 + 0.05)
             for t, ms in probe["stalls"]] if probe else []
    for s, _ in in_win:
        for k, d in devs.items():
            if classify(s, d) == "must":
                t = j.acks.get((d.user, d.device_id, s.message_id))
                if t is not None:
                    lat.append((t - s.due) * 1000.0)
                    if not any(a < t and s.due < b for a, b in spans):
                        clear.append(lat[-1])
    return {"sends_in_window": len(sends_win), "delivered_in_window": len(in_win),
            "late_ms": quantiles([(s.t0 - s.due) * 1000.0 for s in sends_win]),
            "delivered_sends_per_s": round(len(in_win) / (end - w0), 1) if end > w0 else 0.0,
            "envelopes": env_win, "envelopes_per_send": round(env_win / max(1, n_ok), 2),
            "latency_ms": quantiles(lat),
            "latency_ms_clear": quantiles(clear) if probe else None}


def make_figures(j, ops, sends, devs, inbox, window, paced_window=None, probe=None):
    fig = {}
    by_f = {}
    for o in ops:
        rep = o.get("rep")
        if rep is None:
            kind = "info"
        elif rep.get("type") == "error":
            kind = "info" if rep.get("code") in INDEFINITE else "fail"
        else:
            kind = "ok"
        c = by_f.setdefault(o["f"], {"ok": 0, "fail": 0, "info": 0})
        c[kind] += 1
    total = sum(sum(c.values()) for c in by_f.values())
    ok = sum(c["ok"] for c in by_f.values())
    fig["requests"] = by_f
    fig["ok_fraction"] = round(ok / total, 4) if total else None
    n_ok = sum(1 for s in sends if s.outcome == "ok")
    answered = [(s.end - s.t0) * 1000.0 for s in sends if s.end != INF]
    fig["send_reply_ms"] = quantiles(answered)
    fig["sends"] = {"total": len(sends), "ok": n_ok,
                    "refused": sum(1 for s in sends if s.outcome == "fail"),
                    "indefinite": sum(1 for s in sends if s.outcome == "info"),
                    "late_ok": sum(1 for s in sends if s.op.get("late") and s.outcome == "ok")}
    # latency: send invoked -> the device's relay_ack of the envelope (it stored it), or else
    # the first read that showed it
    lat, how = [], {"ack": 0, "read": 0}
    full = []   # (send, time every must device had it)
    for s in sends:
        if s.outcome != "ok":
            continue
        last = s.t0
        complete = True
        for k, d in devs.items():
            if classify(s, d) != "must":
                continue
            t = j.acks.get((d.user, d.device_id, s.message_id))
            if t is not None:
                how["ack"] += 1
            else:
                t = next((t1 for t1, after, rep in sorted(d.reads, key=lambda x: x[0])
                          if any(isinstance(m, dict) and m.get("text") == s.text
                                 for m in rep.get("messages") or [])), None)
                if t is not None:
                    how["read"] += 1
            if t is None:
                complete = False
                continue
            lat.append((t - s.t0) * 1000.0)
            last = max(last, t)
        if complete:
            full.append((s, last))
    q = quantiles(lat)
    q["measured_by"] = how
    fig["delivery_latency_ms"] = q
    envelopes = sum((s.reply or {}).get("devices", 0) or 0 for s in sends
                    if s.outcome == "ok" and isinstance((s.reply or {}).get("devices"), int))
    fig["node_messages"] = {
        "total": j.n2n,
        "per_send": round(j.n2n / len(sends), 2) if sends else None,
        "per_envelope": round(j.n2n / envelopes, 2) if envelopes else None,
        "by_type": dict(sorted(j.n2n_types.items(), key=lambda kv: -kv[1])),
    }
    fig["network"] = {"messages": j.total_msgs, "fates": j.fates}
    counts = next((e for e in j.events if e.get("e") == "counts"), {})
    fig["faults"] = {k: counts.get(k) for k in ("lost", "dup", "partitioned", "down", "kills",
                                                 "restarts", "partitions", "tampered", "injected")}
    killed = [e.get("node") for e in j.events if e.get("e") == "kill"]
    if killed:
        fig["faults"]["killed"] = killed
    if window:
        b = window_figures(j, sends, full, devs, window, probe)
        env_win = b.pop("envelopes")
        n_win = b["sends_in_window"]
        b["node_msgs_per_send"] = round(j.n2n_window / n_win, 2) if n_win else None
        b["node_msgs_per_envelope"] = round(j.n2n_window / env_win, 2) if env_win else None
        if paced_window:
            b["paced"] = window_figures(j, sends, full, devs, paced_window, probe)
            b["paced"].pop("envelopes")
        fig["bench"] = b
        fig["delivery_latency_ms"] = dict(b["latency_ms"], measured_by=how)
    return fig


# =========================================================================
# Output
# =========================================================================
def write_results(run_dir, res):
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
        f.write("\n")


def print_summary(res):
    f = res["figures"]
    s = f["sends"]
    lat = f["delivery_latency_ms"]
    nm = f["node_messages"]
    print("requests: ok fraction %s; %s" % (f["ok_fraction"], ", ".join(
        "%s %d/%d" % (k, v["ok"], sum(v.values())) for k, v in sorted(f["requests"].items()))))
    print("sends: %d (%d acknowledged, %d refused, %d indefinite, %d acknowledged late)"
          % (s["total"], s["ok"], s["refused"], s["indefinite"], s["late_ok"]))
    print("delivery latency, ms: p50 %s  p95 %s  p99 %s  max %s  (%d deliveries; by ack %d, by read %d)"
          % (lat["p50"], lat["p95"], lat["p99"], lat["max"], lat["n"],
             lat["measured_by"]["ack"], lat["measured_by"]["read"]))
    r = f.get("send_reply_ms") or {}
    print("send answered in, ms: p50 %s  p99 %s  max %s" % (r.get("p50"), r.get("p99"), r.get("max")))
    print("node-to-node messages: %d, %s per send, %s per envelope"
          % (nm["total"], nm["per_send"], nm["per_envelope"]))
    fl = f["faults"]
    print("faults: " + ", ".join("%s %s" % (k, v) for k, v in fl.items() if v))
    for name, p in res["properties"].items():
        mark = "PASS" if p["pass"] else "FAIL"
        extra = "" if p["pass"] else "  %d violation(s), e.g. %s" % (
            p["violations"], json.dumps(p["counterexamples"][0], default=str)[:400])
        print("  %s  %-22s (%d checked)%s" % (mark, name, p["checked"], extra))
        for n in p.get("notes", []):
            print("        note: %s" % n)


COLORS = {"client": "#1f6fb4", "dir": "#2a9d3a", "relay": "#7b3fb0", "error": "#d62728",
          "init": "#888888", "other": "#444444"}


def _color(body):
    t = body.get("type", "") if isinstance(body, dict) else ""
    t = t if isinstance(t, str) else ""
    if t == "error":
        return COLORS["error"]
    if t.startswith("init"):
        return COLORS["init"]
    if t.startswith("dir_"):
        return COLORS["dir"]
    if t.startswith("relay_"):
        return COLORS["relay"]
    return COLORS["other"]


def write_svg(path, j, meta):
    """A Lamport diagram: one column per process, time downward (each event
    gets its own row, in time order), one arrow per message."""
    recs = j.diagram
    nodes = list(meta["nodes"])
    seen = {r["m"].get("src") for r in recs} | {r["m"].get("dest") for r in recs}
    clients = sorted(seen - set(nodes) - {None}, key=lambda c: (len(str(c)), str(c)))
    cols = nodes + clients
    x_of = {}
    colw = max(50, min(140, 1800 // max(1, len(cols))))
    for i, c in enumerate(cols):
        x_of[c] = 90 + i * colw
    times = sorted({r["ts"] for r in recs} | {r["tr"] for r in recs if r["tr"] is not None})
    rowh = 12

    def y(t):
        return 70 + bisect.bisect_left(times, t) * rowh

    height = 70 + len(times) * rowh + 40
    width = 90 + len(cols) * colw + 40
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="monospace" '
           'font-size="10">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<defs><marker id="a" markerWidth="8" markerHeight="6" refX="8" refY="3" orient="auto">'
           '<path d="M0,0 L8,3 L0,6 z" fill="context-stroke"/></marker></defs>']
    note = "%d messages" % j.total_msgs
    if j.total_msgs > len(recs):
        note = "the first %d of %d messages (capped: --diagram-max)" % (len(recs), j.total_msgs)
    out.append('<text x="10" y="16" font-size="12">%s - %s; time runs down, one row per event; '
               'dashed grey: lost, partitioned or to a dead node; hover for the body</text>'
               % (escape(os.path.basename(os.path.dirname(path))), escape(note)))
    for c in cols:
        x = x_of[c]
        role = {meta["directory"]: " (directory)", meta["relay"]: " (relay)"}.get(c, "")
        out.append('<text x="%d" y="44" text-anchor="middle" font-weight="bold">%s%s</text>'
                   % (x, escape(str(c)), role))
        out.append('<line x1="%d" y1="52" x2="%d" y2="%d" stroke="#ccc"/>' % (x, x, height - 20))
    for i in range(0, len(times), 25):
        out.append('<text x="4" y="%d" fill="#999">%.3fs</text>' % (70 + i * rowh + 3, times[i]))
    for r in recs:
        m = r["m"]
        src, dest = m.get("src"), m.get("dest")
        if src not in x_of or dest not in x_of:
            continue
        body = m.get("body") if isinstance(m.get("body"), dict) else {}
        x1, y1 = x_of[src], y(r["ts"])
        title = escape(json.dumps(m, default=str)[:400]) + " fate=" + r["f"]
        label = escape(str(body.get("type", "?")))
        if r["tr"] is None or r["f"] in ("lost", "part", "down", "dup-part", "dup-down", "none"):
            x2 = (x1 + x_of[dest]) / 2
            y2 = y1 + rowh
            out.append('<g><title>%s</title><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#aaa" '
                       'stroke-dasharray="3,3"/><text x="%d" y="%d" fill="#aaa">x %s</text></g>'
                       % (title, x1, y1, x2, y2, x2 + 2, y2, label))
            continue
        x2, y2 = x_of[dest], y(r["tr"])
        color = _color(body)
        dash = ' stroke-dasharray="6,2"' if r["f"] in ("dup", "tamp", "inj") else ""
        out.append('<g><title>%s</title><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"%s '
                   'marker-end="url(#a)"/><text x="%d" y="%d" fill="%s">%s%s</text></g>'
                   % (title, x1, y1, x2, y2, color, dash, (x1 + x2) / 2 + 3, (y1 + y2) / 2 - 2,
                      color, label, {"dup": " (dup)", "tamp": " (forged)",
                                     "inj": " (replayed)"}.get(r["f"], "")))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="check a scripts/net run again")
    ap.add_argument("run_dir")
    ap.add_argument("--diagram-max", type=int, default=2000)
    o = ap.parse_args(argv)
    res = check(o.run_dir, o.diagram_max)
    print_summary(res)
    print("net_check: %s" % ("PASS" if res["ok"] else "FAIL"))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
