/* outbox.c - the device role's send path (device.h): a message waits in the
 * outbox (a state row) until the relay has accepted one envelope for every
 * device it is for; see send_op below.
 */
#include "device_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <uuid/uuid.h>

#include "securitor/codec.h"
#include "securitor/kdf.h"
#include "securitor/safety.h"
#include "securitor/state.h"
#include "securitor/wipe.h"
#include "conversation.h"
#include "fields.h"
#include "relay.h"
#include "rows.h"
#include "signed.h"

/* ============================================================================
 * send: the outbox
 *
 * One send_op per message in flight, found by message_id. Each step bumps
 * the op's epoch; a callback or timer whose epoch is old does nothing, so a
 * late answer never drives a step that has moved on.
 * ========================================================================== */

enum send_phase { SEND_LISTS, SEND_BUNDLES, SEND_DELIVER };

struct target {
    int side;        /* 0: the recipient user, 1: the sender's own user */
    struct devlist_device dev;
};

struct send_op {
    char message_id[MESSAGE_ID_LEN + 1];
    char *user, *to;
    struct node_deferred *client; /* NULL once answered, or after a restart */
    uint64_t epoch;
    enum send_phase phase;
    size_t outstanding;
    struct chain chains[2];        /* to, user */
    uint32_t asked[2];             /* the pins when they were asked for (chain_take) */
    struct target targets[2 * DEVLIST_MAX_DEVICES];
    size_t n_targets;
    char request_id[MESSAGE_ID_LEN + 1];
    size_t n_envs;                 /* delivered: for the reply */
    int refusals;
    unsigned delay_ms;
    unsigned full_ms;              /* the wait after the last "full" refusal, 0 before one */
    bool failed;                   /* a definite failure was met this step */
    bool tried;                    /* a relay_deliver of it may have left */
};

struct op_ref {
    char message_id[MESSAGE_ID_LEN + 1];
    uint64_t epoch;
    int slot;
};

void send_op_free(struct send_op *op)
{
    node_deferred_drop(op->client);
    chain_free(&op->chains[0]);
    chain_free(&op->chains[1]);
    free(op->user);
    free(op->to);
    free(op);
}

static struct op_ref *op_ref(struct send_op *op, int slot)
{
    struct op_ref *ref = malloc(sizeof(*ref));
    if (ref) {
        memcpy(ref->message_id, op->message_id, sizeof(ref->message_id));
        ref->epoch = op->epoch;
        ref->slot = slot;
    }
    return ref;
}

static struct send_op *op_of(struct app *app, const struct op_ref *ref)
{
    struct send_op *op = app->devs ? map_get_str(&app->devs->ops, ref->message_id) : NULL;
    return op && op->epoch == ref->epoch ? op : NULL;
}

/* The op is done: success (code < 0) or a definite failure, after which
 * nothing was delivered, so the outbox lets the message go either way. */
static void send_finish(struct app *app, struct send_op *op, int code, const char *text)
{
    struct device *d = device_find(app, op->user);
    struct outgoing *o = d ? map_get_str(&d->outbox, op->message_id) : NULL;
    char unknown[320];
    /* A definite refusal says nothing was delivered (PROTOCOL.md §5.2). Once
     * a delivery has left, it may have been accepted (its answer lost, or a
     * duplicate of it accepted after a refusal, the relay's view having
     * moved on): then the outcome is not known here, and the reply says so
     * (error 0: all its devices or none). */
    if (op->tried && code > 0 && code != ERR_CRASH) {
        snprintf(unknown, sizeof(unknown), "%s; a delivery of this message may have been "
                                           "accepted before: it reached all its devices or "
                                           "none", text);
        code = ERR_TIMEOUT;
        text = unknown;
    }
    if (o) {
        op->n_envs = o->n_envs;
        /* Delivered: the row may go later. Not delivered: it must go in this
         * commit, or a restart would deliver what was refused. */
        if (code < 0)
            outgoing_done(app, d, o);
        else
            del_outgoing(app, d, o);
        map_remove_str(&d->outbox, op->message_id);
        outgoing_free(o);
    }
    if (op->client && code < 0) {
        struct reply *m = node_message(app->node, "sent");
        reply_cstring(m, "message_id", op->message_id);
        reply_int(m, "devices", (long long)op->n_envs);
        /* What it says is durable at the relay, and nothing of this node's
         * needs a commit first: the outbox row and the sessions were
         * durable before the delivery left, and a row that outlives a crash
         * only sends the same envelopes again, which the relay ignores. */
        reply_early(m, 0);
        node_answer(app->node, op->client);
    } else if (op->client) {
        node_answer_error(app->node, op->client, code, "%s", text);
    } else if (code >= 0) {
        node_log("e2ee-node: message %s of \"%s\" given up: %s", op->message_id, op->user, text);
    }
    op->client = NULL;
    map_remove_str(&app->devs->ops, op->message_id);
    send_op_free(op);
}

static void send_lists(struct app *app, struct send_op *op);
static void send_deliver(struct app *app, struct send_op *op);

static void send_retry_fire(struct app *app, struct node *n, void *ctx)
{
    (void)n;
    struct send_op *op = op_of(app, ctx);
    struct device *d = op ? device_find(app, op->user) : NULL;
    struct outgoing *o = d ? map_get_str(&d->outbox, op->message_id) : NULL;
    if (!op || app->devs->closing)
        return;
    if (o && o->ready)
        send_deliver(app, op);
    else
        send_lists(app, op);
}

/* Doubles a retry's wait, from `first` up to `most`. */
static unsigned backoff(unsigned ms, unsigned first, unsigned most)
{
    return !ms ? first : ms > most / 2 ? most : ms * 2;
}

/* Tries the step again in ms. */
static void send_later_ms(struct app *app, struct send_op *op, unsigned ms)
{
    op->epoch++;
    struct op_ref *ref = op_ref(op, 0);
    if (app->devs->closing || !ref || !node_timer(app->node, ms, 0, send_retry_fire, ref, free)) {
        free(ref);
        if (!app->devs->closing) /* out of memory: given up (error 13, indefinite) */
            send_finish(app, op, ERR_CRASH, "out of memory");
    }
}

/* Tries the step again later: 100 ms, doubling to 2 s. */
static void send_later(struct app *app, struct send_op *op)
{
    op->delay_ms = backoff(op->delay_ms, 100, 2000);
    send_later_ms(app, op, op->delay_ms);
}

/* The inner message (device.h) for one target. */
static int inner_message(struct buf *b, const struct send_op *op, uint32_t from_device,
                         const char *to_user, uint32_t to_device, const struct outgoing *o)
{
    b->len = 0;
    row_bytes(b, INNER_DOMAIN, sizeof(INNER_DOMAIN) - 1);
    row_str(b, op->message_id, MESSAGE_ID_LEN);
    row_str(b, op->user, strlen(op->user));
    row_u32(b, from_device);
    row_str(b, to_user, strlen(to_user));
    row_u32(b, to_device);
    row_bytes(b, o->text, o->len);
    return buf_ok(b) ? 0 : -1;
}

/* The sealed envelope o already holds for a device, or NULL. */
static struct sealed *sealed_for(const struct outgoing *o, const char *user,
                                 const struct devlist_device *x)
{
    for (size_t i = 0; i < o->n_envs; i++)
        if (o->envs[i].device_id == x->device_id &&
            o->envs[i].registration_id == x->registration_id && !strcmp(o->envs[i].user, user))
            return &o->envs[i];
    return NULL;
}

/* One envelope per target: the one already sealed for it when there is one
 * (never a second encryption for a device), else a new encryption. Envelopes
 * for devices no longer targets go. The set is written into the outbox row
 * in the commit that lets the delivery out. */
static void send_encrypt(struct app *app, struct send_op *op, struct device *d, struct user *u,
                         struct outgoing *o)
{
    struct buf inner = {0};
    char name[PEER_NAME_MAX + 1];
    struct sealed *next = calloc(op->n_targets ? op->n_targets : 1, sizeof(*next));
    size_t n = 0;
    const char *fail = "out of memory";
    if (!next)
        goto fail;
    for (size_t i = 0; i < op->n_targets; i++, n++) {
        const struct target *t = &op->targets[i];
        const char *to = t->side ? op->user : op->to;
        struct sealed *old = sealed_for(o, to, &t->dev);
        struct conv_sent sent;
        if (old) { /* moved over: the old array keeps no pointer to it */
            next[n] = *old;
            *old = (struct sealed){0};
            continue;
        }
        next[n] = (struct sealed){.device_id = t->dev.device_id,
                                  .registration_id = t->dev.registration_id};
        if (!(next[n].user = strdup(to)) || peer_name(name, to, t->dev.device_id) ||
            inner_message(&inner, op, d->device_id, to, t->dev.device_id, o))
            goto fail;
        enum conv_result res = conv_encrypt(&app->store, u, name, (const uint8_t *)inner.data,
                                            inner.len, &app->wire, &sent);
        wipe_bytes(inner.data, inner.len);
        if (res != CONV_OK) {
            fail = res == CONV_NO_MEMORY ? "out of memory" : "encryption failed";
            goto fail;
        }
        if (!(next[n].ciphertext = malloc(base64_encoded_len(sent.len) + 1)))
            goto fail;
        base64_encode(next[n].ciphertext, sent.wire, sent.len);
        next[n].ciphertext[base64_encoded_len(sent.len)] = '\0'; /* it writes none */
        next[n].prekey = sent.prekey;
    }
    buf_free(&inner);
    sealed_free(o->envs, o->n_envs);
    o->envs = next;
    o->n_envs = n;
    o->ready = true;
    put_outgoing(app, d, o);
    op->delay_ms = 0;
    send_deliver(app, op);
    return;
fail:
    if (inner.data)
        wipe_bytes(inner.data, inner.len);
    buf_free(&inner);
    sealed_free(next, next ? n + 1 : 0);
    send_finish(app, op, ERR_CRASH, fail);
}

static bool has_session(struct user *u, const char *of, uint32_t id)
{
    char name[PEER_NAME_MAX + 1];
    const struct peer *p = peer_name(name, of, id) ? NULL : user_find_peer(u, name);
    return p && p->n_sessions;
}

static void send_bundles_done(struct app *app, struct node *n, void *ctx,
                              enum node_call_status st, const cJSON *body);

/* Sessions for every target: bundles for the users that lack one, then
 * encryption. */
static void send_sessions(struct app *app, struct send_op *op, struct device *d, struct user *u)
{
    bool need[2] = {false, false};
    const char *of[2] = {op->to, op->user};
    struct outgoing *o = map_get_str(&d->outbox, op->message_id);
    if (!o)
        return send_finish(app, op, ERR_CRASH, "the message was lost (a failed commit)");
    for (size_t i = 0; i < op->n_targets; i++) {
        const struct target *t = &op->targets[i];
        if (!sealed_for(o, of[t->side], &t->dev) && !has_session(u, of[t->side], t->dev.device_id))
            need[t->side] = true;
    }
    if (!need[0] && !need[1])
        return send_encrypt(app, op, d, u, map_get_str(&d->outbox, op->message_id));
    uuid_t raw;
    uuid_generate_random(raw);
    uuid_unparse_lower(raw, op->request_id);
    op->epoch++;
    op->phase = SEND_BUNDLES;
    op->outstanding = need[0] + need[1];
    for (int side = 0; side < 2; side++) {
        if (!need[side])
            continue;
        struct op_ref *ref = op_ref(op, side);
        struct reply *m = node_message(app->node, "dir_get_bundles");
        reply_cstring(m, "user", of[side]);
        reply_cstring(m, "request_id", op->request_id);
        if (!ref || !node_call(app->node, app->directory_id, DEVICE_CALL_MS, send_bundles_done,
                               ref)) {
            free(ref);
            return send_later(app, op);
        }
    }
}

static void send_bundles_done(struct app *app, struct node *n, void *ctx,
                              enum node_call_status st, const cJSON *body)
{
    (void)n;
    struct op_ref *ref = ctx;
    struct send_op *op = op_of(app, ref);
    int side = ref->slot;
    free(ref);
    if (!op)
        return;
    struct device *d = device_find(app, op->user);
    struct user *u = store_find_user(&app->store, op->user);
    const char *of = side ? op->user : op->to;
    const cJSON *bundles = body ? req_field(body, "bundles") : NULL, *it;
    struct known *k = d ? map_get_str(&d->known, of) : NULL;
    struct reply scratch = {0};
    char text[240];
    if (!d || !u || !k)
        return send_finish(app, op, ERR_CRASH, "the device was lost (a failed commit)");
    if (op->failed) {
        /* Already failing: this answer only completes the step. */
    } else if (st != NODE_CALL_REPLY || !is_type(body, "dir_bundles") || !cJSON_IsArray(bundles)) {
        op->failed = true; /* try the step again (a new request_id) */
    } else {
        cJSON_ArrayForEach(it, bundles) {
            struct bundle b;
            char name[PEER_NAME_MAX + 1];
            struct session *s;
            uint8_t root_key[32];
            const struct devlist_device *x;
            if (field_bundle(&scratch, it, "bundles[]", &b))
                continue;
            x = devlist_find(&k->newest, b.device_id);
            /* The directory hands out a bundle of every device of `of`, this
             * one too when `of` is its own user: no session with itself. */
            if (!x || (side && b.device_id == d->device_id) ||
                has_session(u, of, b.device_id) || peer_name(name, of, b.device_id))
                continue;
            /* The bundle's identity must be the one the verified chain
             * carries (the pin would make conv_initiate refuse any other,
             * after its signature check; this says so first). */
            if (!pin_device(app, u, of, x)) {
                reply_free(&scratch);
                return send_finish(app, op, ERR_CRASH, "out of memory");
            }
            enum conv_result res = memcmp(b.identity, x->identity, CURVE_KEY_LEN)
                                       ? CONV_IDENTITY_CHANGED
                                       : conv_initiate(&app->store, u, name, &b, &s, root_key);
            wipe_bytes(root_key, sizeof(root_key));
            if (res == CONV_OK)
                continue;
            reply_free(&scratch);
            snprintf(text, sizeof(text), "the directory's bundle for device %u of \"%s\" is "
                                         "refused: %s", b.device_id, of,
                     res == CONV_IDENTITY_CHANGED ? "not the identity key its device list "
                                                    "carries"
                     : res == CONV_BAD_SIGNATURE ? "its signed prekey's signature does not "
                                                   "verify"
                                                 : "it does not give a usable key agreement");
            return send_finish(app, op, res == CONV_NO_MEMORY || res == CONV_CRYPTO ? ERR_CRASH
                                                                                  : ERR_PRECONDITION,
                               text);
        }
    }
    reply_free(&scratch);
    if (--op->outstanding)
        return;
    bool missing = false;
    for (size_t i = 0; i < op->n_targets; i++)
        if (!has_session(u, op->targets[i].side ? op->user : op->to,
                         op->targets[i].dev.device_id))
            missing = true;
    op->failed = false;
    if (missing) /* a device without a bundle: its list moved; start again */
        return send_later(app, op);
    send_encrypt(app, op, d, u, map_get_str(&d->outbox, op->message_id));
}

static void send_lists_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                            const cJSON *body)
{
    (void)n;
    struct op_ref *ref = ctx;
    struct send_op *op = op_of(app, ref);
    int slot = ref->slot;
    free(ref);
    if (!op)
        return;
    chain_read(&op->chains[slot], st, body);
    if (--op->outstanding)
        return;
    struct device *d = device_find(app, op->user);
    struct user *u = store_find_user(&app->store, op->user);
    struct outgoing *o = d ? map_get_str(&d->outbox, op->message_id) : NULL;
    bool self = !strcmp(op->to, op->user);
    struct known *k[2] = {NULL, NULL};
    char text[240];
    if (!d || !u || !o)
        return send_finish(app, op, ERR_CRASH, "the message was lost (a failed commit)");
    for (int side = 0; side < 2 - self; side++) {
        const char *of = side ? op->user : op->to;
        struct chain *c = &op->chains[side];
        if (c->status < 0)
            return send_later(app, op); /* no answer: ask again */
        if (c->status > 0) {
            snprintf(text, sizeof(text), "to: \"%s\" has no account", of);
            return send_finish(app, op, ERR_KEY_DOES_NOT_EXIST, text);
        }
        enum devlist_result v = chain_take(app, d, of, c, op->asked[side], &k[side]);
        if (v != DEVLIST_OK) {
            snprintf(text, sizeof(text), "the directory's device list of \"%s\" does not "
                                         "verify: %s", of, devlist_result_text(v));
            return send_finish(app, op, v == DEVLIST_INTERNAL ? ERR_CRASH : ERR_PRECONDITION,
                               text);
        }
    }
    if (self)
        k[1] = k[0];
    chain_free(&op->chains[0]);
    chain_free(&op->chains[1]);
    if (device_note_own_list(app, d, u, k[1]) != DEV_ACTIVE)
        return send_finish(app, op, ERR_PRECONDITION,
                           d->status == DEV_PENDING ? "the sending device is pending: an active "
                                                      "device of the user must approve it first"
                                                    : "the sending device is not in its user's "
                                                      "device list (revoked)");
    op->n_targets = 0;
    for (int side = 0; side < 2 - self; side++)
        for (size_t i = 0; i < k[side]->newest.n; i++) {
            const struct devlist_device *x = &k[side]->newest.devices[i];
            if ((side == 1 || self) && x->device_id == d->device_id)
                continue; /* not to itself */
            if (!pin_device(app, u, side ? op->user : op->to, x))
                return send_finish(app, op, ERR_CRASH, "out of memory");
            op->targets[op->n_targets++] = (struct target){self ? 1 : side, *x};
        }
    if (self) /* one list: its targets are on the sender's side */
        for (size_t i = 0; i < op->n_targets; i++)
            op->targets[i].side = 1;
    send_sessions(app, op, d, u);
}

static void send_lists(struct app *app, struct send_op *op)
{
    bool self = !strcmp(op->to, op->user);
    op->epoch++;
    op->phase = SEND_LISTS;
    op->outstanding = self ? 1 : 2;
    op->failed = false;
    const struct device *d = device_find(app, op->user);
    for (int side = 0; side < 2 - self; side++) {
        struct op_ref *ref = op_ref(op, side);
        op->asked[side] = d ? pinned_version(d, side ? op->user : op->to) : 0;
        if (!ref || ask_devices(app, side ? op->user : op->to, send_lists_done, ref)) {
            free(ref);
            return send_later(app, op);
        }
    }
}

static void send_delivered(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                           const cJSON *body)
{
    (void)n;
    struct op_ref *ref = ctx;
    struct send_op *op = op_of(app, ref);
    free(ref);
    if (!op)
        return;
    if (st == NODE_CALL_REPLY && is_type(body, "relay_delivered"))
        return send_finish(app, op, -1, NULL);
    const cJSON *code = body ? req_field(body, "code") : NULL;
    bool refused = st == NODE_CALL_REPLY && cJSON_IsNumber(code) &&
                   code->valuedouble == ERR_PRECONDITION;
    if (!refused) /* no answer: the same envelopes again (the relay dedupes) */
        return send_later(app, op);
    /* A full mailbox stays full until its device fetches or leaves the
     * list, which may take long (a laptop that is off). Nothing was taken,
     * but a copy of this delivery may still be on its way: the outcome is
     * open, the client hears so at once (error 0), and the outbox keeps
     * trying the same envelopes (PROTOCOL.md §5.2), backing off to a few
     * tries a minute, since it may hold many messages for that device.
     * Reading the lists again would only be refused 30 times more. */
    const cJSON *full = req_field(body, "full");
    if (cJSON_IsArray(full) && cJSON_GetArraySize(full) > 0) {
        if (!op->full_ms)
            node_log("e2ee-node: message %s of \"%s\": a recipient device's mailbox at the "
                     "relay is full; the outbox tries again", op->message_id, op->user);
        if (op->client) {
            node_answer_error(app->node, op->client, ERR_TIMEOUT,
                              "not delivered yet: a recipient device's mailbox at the relay is "
                              "full (%d envelopes or %zu MiB it has not fetched); the outbox "
                              "keeps trying, and the message reaches all its devices or none",
                              RELAY_MAILBOX_MAX, RELAY_MAILBOX_BYTES >> 20);
            op->client = NULL;
        }
        op->full_ms = backoff(op->full_ms, DEVICE_FULL_RETRY_MS, DEVICE_FULL_RETRY_MAX_MS);
        return send_later_ms(app, op, op->full_ms);
    }
    /* The lists moved (missing, extra, stale): nothing was delivered. The
     * lists are read again; envelopes of devices still listed are kept. */
    if (++op->refusals >= DEVICE_SEND_REFUSALS_MAX)
        return send_finish(app, op, ERR_PRECONDITION, "the relay kept refusing the delivery "
                                                      "(device lists out of step)");
    struct device *d = device_find(app, op->user);
    struct outgoing *o = d ? map_get_str(&d->outbox, op->message_id) : NULL;
    if (o)
        o->ready = false;
    send_later(app, op);
}

static void send_deliver(struct app *app, struct send_op *op)
{
    struct device *d = device_find(app, op->user);
    struct outgoing *o = d ? map_get_str(&d->outbox, op->message_id) : NULL;
    if (!o)
        return send_finish(app, op, ERR_CRASH, "the message was lost (a failed commit)");
    op->phase = SEND_DELIVER;
    op->epoch++;
    struct op_ref *ref = op_ref(op, 0);
    struct reply *m = node_message(app->node, "relay_deliver");
    reply_cstring(m, "from_user", op->user);
    reply_int(m, "from_device", d->device_id);
    reply_cstring(m, "message_id", op->message_id);
    reply_begin_array(m, "envelopes");
    for (size_t i = 0; i < o->n_envs; i++) {
        const struct sealed *e = &o->envs[i];
        reply_begin_object(m, NULL);
        reply_cstring(m, "user", e->user);
        reply_int(m, "device_id", e->device_id);
        reply_int(m, "registration_id", e->registration_id);
        reply_cstring(m, "ciphertext", e->ciphertext);
        reply_cstring(m, "kind", e->prekey ? "prekey" : "message");
        reply_end_object(m);
    }
    reply_end_array(m);
    if (!ref || !node_call(app->node, app->relay_id, DEVICE_CALL_MS, send_delivered, ref)) {
        free(ref);
        send_later(app, op);
        return;
    }
    op->tried = true;
}

static void send_deadline(struct app *app, struct node *n, void *ctx)
{
    struct send_op *op = app->devs ? map_get_str(&app->devs->ops, ctx) : NULL;
    if (op && op->client) {
        node_answer_error(n, op->client, ERR_TIMEOUT, "not delivered yet: the outbox keeps "
                                                      "trying, and the message reaches all its "
                                                      "devices or none");
        op->client = NULL;
    }
}

/* Starts the op of an outbox message. A resumed one (after a restart) whose
 * envelopes were sealed goes straight to the relay with the same bytes: if
 * they were delivered before, the relay takes them as the no-op they are. */
struct send_op *send_start(struct app *app, struct device *d, const struct outgoing *o,
                           struct node_deferred *client)
{
    struct send_op *op = calloc(1, sizeof(*op));
    if (op) /* the map borrows the key: it is in place before map_put */
        memcpy(op->message_id, o->message_id, sizeof(op->message_id));
    if (!op || !(op->user = strdup(d->user)) || !(op->to = strdup(o->to)) ||
        map_put_str(&app->devs->ops, op->message_id, op)) {
        if (op)
            send_op_free(op);
        app->devs->orphans = true; /* the tick starts it later */
        return NULL;
    }
    op->client = client;
    if (o->ready)
        send_deliver(app, op);
    else
        send_lists(app, op);
    return op;
}

int h_send(struct app *app, const struct request *req, struct reply *r)
{
    struct device *d;
    struct user *u;
    const char *to, *text;
    size_t len;
    int rc;
    if ((rc = device_name_field(r, req->body, "to", false, NULL, &to)) ||
        (rc = req_string(r, req->body, "text", false, &text, &len)))
        return rc;
    if (len > DEVICE_TEXT_MAX)
        return node_error(r, ERR_MALFORMED, "text: at most %d bytes", DEVICE_TEXT_MAX);
    /* A pending device may have been approved a moment ago: the lists say. */
    if ((rc = acting_device(app, req, r, false, &d, &u)))
        return rc;
    if (d->outbox.n >= OUTBOX_MAX)
        return node_error(r, ERR_PRECONDITION, "the outbox of \"%s\" is full (%d messages "
                                               "waiting for the relay)", d->user, OUTBOX_MAX);
    struct outgoing *o = calloc(1, sizeof(*o));
    uuid_t raw;
    if (!o || !(o->to = strdup(to)) || !(o->text = malloc(len ? len : 1))) {
        outgoing_free(o);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    memcpy(o->text, text, len);
    o->len = len;
    uuid_generate_random(raw);
    uuid_unparse_lower(raw, o->message_id);
    if (map_put_str(&d->outbox, o->message_id, o)) {
        outgoing_free(o);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    /* No row yet: it is written with the sealed envelopes, in the commit that
     * lets the delivery out (a crash before loses a message nobody was told
     * of). The lookups that go out first then wait for no commit. */
    struct node_deferred *client = node_defer(req, r);
    char *id = strdup(o->message_id);
    struct send_op *op = client ? send_start(app, d, o, client) : NULL;
    if (!op) {
        map_remove_str(&d->outbox, o->message_id);
        outgoing_free(o);
        free(id);
        if (client)
            node_answer_error(app->node, client, ERR_CRASH, "out of memory");
        return client ? 0 : ERR_CRASH;
    }
    if (!id || !node_timer(app->node, DEVICE_ANSWER_MS, 0, send_deadline, id, free))
        free(id); /* without the deadline the reply may come later than 5 s */
    return 0;
}

