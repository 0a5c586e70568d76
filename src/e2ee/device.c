/* device.c - the device role (see device.h).
 *
 * Everything here runs on the loop's worker. Work that waits for the
 * directory or the relay (a call with a deadline) keeps what it needs in
 * its own context and finds its device again by user name when the answer
 * comes: after a failed commit the devices are read back from the state,
 * and a device that is gone means the work stops.
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

static void fail_row(void) { node_log("e2ee-node: cannot record a device row: the commit will fail"); }

/* ============================================================================
 * Rows: dev_dev user; dev_known user\0of; dev_msg user\0seq; dev_out
 * user\0message_id. Inbox and outbox rows hold text: sealed like every
 * row, and their buffers wiped.
 * ========================================================================== */

size_t key_pair(uint8_t *k, const char *user, const void *rest, size_t rest_len)
{
    size_t n = strlen(user);
    memcpy(k, user, n);
    k[n] = 0;
    memcpy(k + n + 1, rest, rest_len);
    return n + 1 + rest_len;
}

static void put_row(struct app *app, const char *kind, const uint8_t *k, size_t k_len,
                    struct buf *b)
{
    struct state *st = app_state(app);
    if (st && state_put_buf(st, kind, k, k_len, b))
        fail_row();
    if (b->data)
        wipe_bytes(b->data, b->len);
    buf_free(b);
}

void del_row(struct app *app, const char *kind, const uint8_t *k, size_t k_len)
{
    struct state *st = app_state(app);
    if (st && state_del(st, kind, k, k_len))
        fail_row();
}

void put_device(struct app *app, const struct device *d)
{
    struct buf b = {0};
    if (!app_state(app))
        return;
    row_u8(&b, ROW_VERSION);
    row_u32(&b, d->device_id);
    row_u8(&b, (uint8_t)d->status);
    row_u64(&b, d->reserved);
    row_u32(&b, d->dir_opks);
    put_row(app, "dev_dev", (const uint8_t *)d->user, strlen(d->user), &b);
}

static void row_devices(struct buf *b, const struct devlist_device *x, size_t n)
{
    row_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        row_u32(b, x[i].device_id);
        row_bytes(b, x[i].identity, CURVE_KEY_LEN);
        row_u32(b, x[i].registration_id);
    }
}

static void put_known(struct app *app, const struct device *d, const struct known *k)
{
    struct buf b = {0};
    uint8_t key[2 * DEVICE_USER_MAX + 2];
    if (!app_state(app))
        return;
    row_u8(&b, ROW_VERSION);
    row_u32(&b, k->pin.version);
    row_bytes(&b, k->pin.hash, DEVLIST_HASH_LEN);
    row_u32(&b, k->newest.version);
    row_u32(&b, k->newest.signer);
    row_bytes(&b, k->newest.signature, CURVE_SIG_LEN);
    row_devices(&b, k->newest.devices, k->newest.n);
    row_devices(&b, k->seen, k->n_seen);
    put_row(app, "dev_known", key, key_pair(key, d->user, k->of, strlen(k->of)), &b);
}

static void seq_bytes(uint8_t out[static 8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

void put_message(struct app *app, const struct device *d, const struct message *m)
{
    struct buf b = {0};
    uint8_t key[DEVICE_USER_MAX + 9], seq[8];
    if (!app_state(app))
        return;
    row_u8(&b, ROW_VERSION);
    row_str(&b, m->message_id, strlen(m->message_id));
    row_str(&b, m->from, strlen(m->from));
    row_u32(&b, m->from_device);
    row_bytes(&b, m->text, m->len);
    seq_bytes(seq, m->seq);
    put_row(app, "dev_msg", key, key_pair(key, d->user, seq, 8), &b);
}

void del_outgoing(struct app *app, const struct device *d, struct outgoing *o)
{
    uint8_t key[DEVICE_USER_MAX + MESSAGE_ID_LEN + 1];
    if (o->stored)
        del_row(app, "dev_out", key, key_pair(key, d->user, o->message_id, MESSAGE_ID_LEN));
    o->stored = false;
}

void outgoing_done(struct app *app, const struct device *d, struct outgoing *o)
{
    struct devices *ds = app->devs;
    if (!o->stored)
        return;
    if (ds->n_done == ds->cap_done) {
        size_t cap = ds->cap_done ? 2 * ds->cap_done : 64;
        struct done_row *p = realloc(ds->done, cap * sizeof(*p));
        if (!p)
            return del_outgoing(app, d, o); /* no room to wait: now */
        ds->done = p;
        ds->cap_done = cap;
    }
    struct done_row *x = &ds->done[ds->n_done];
    if (!(x->user = strdup(d->user)))
        return del_outgoing(app, d, o);
    memcpy(x->message_id, o->message_id, sizeof(x->message_id));
    ds->n_done++;
    o->stored = false;
}

/* The rows of delivered messages, queued by outgoing_done. */
static void delete_done_rows(struct app *app)
{
    struct devices *ds = app->devs;
    uint8_t key[DEVICE_USER_MAX + MESSAGE_ID_LEN + 1];
    for (size_t i = 0; i < ds->n_done; i++) {
        del_row(app, "dev_out", key,
                key_pair(key, ds->done[i].user, ds->done[i].message_id, MESSAGE_ID_LEN));
        free(ds->done[i].user);
    }
    ds->n_done = 0;
}

void put_outgoing(struct app *app, const struct device *d, struct outgoing *o)
{
    struct buf b = {0};
    uint8_t key[DEVICE_USER_MAX + MESSAGE_ID_LEN + 1];
    if (!app_state(app))
        return;
    o->stored = true;
    row_u8(&b, ROW_VERSION);
    row_str(&b, o->to, strlen(o->to));
    row_u32(&b, (uint32_t)o->len);
    row_bytes(&b, o->text, o->len);
    row_u8(&b, o->ready);
    row_u32(&b, (uint32_t)o->n_envs);
    for (size_t i = 0; i < o->n_envs; i++) {
        const struct sealed *e = &o->envs[i];
        size_t n = strlen(e->ciphertext);
        row_str(&b, e->user, strlen(e->user));
        row_u32(&b, e->device_id);
        row_u32(&b, e->registration_id);
        row_u8(&b, e->prekey);
        row_u32(&b, (uint32_t)n);
        row_bytes(&b, e->ciphertext, n);
    }
    put_row(app, "dev_out", key, key_pair(key, d->user, o->message_id, MESSAGE_ID_LEN), &b);
}

/* ============================================================================
 * Devices
 * ========================================================================== */

void sealed_free(struct sealed *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].user);
        free(e[i].ciphertext);
    }
    free(e);
}

void outgoing_free(struct outgoing *o)
{
    if (!o)
        return;
    sealed_free(o->envs, o->n_envs);
    if (o->text)
        wipe_bytes(o->text, o->len);
    free(o->text);
    free(o->to);
    free(o);
}

static void device_free(struct device *d)
{
    size_t pos = 0;
    void *v;
    while ((v = map_next(&d->known, &pos)) != NULL) {
        free(((struct known *)v)->of);
        free(v);
    }
    map_free(&d->known);
    pos = 0;
    while ((v = map_next(&d->outbox, &pos)) != NULL)
        outgoing_free(v);
    map_free(&d->outbox);
    for (size_t i = 0; i < d->n_inbox; i++) {
        struct message *m = &d->inbox[i];
        if (m->text)
            wipe_bytes(m->text, m->len);
        free(m->text);
        free(m->message_id);
        free(m->from);
    }
    free(d->inbox);
    map_free(&d->inbox_ids);
    free(d->user);
    free(d);
}

struct device *device_find(struct app *app, const char *user)
{
    return app->devs ? map_get_str(&app->devs->by_user, user) : NULL;
}

static struct device *device_get(struct app *app, const char *user)
{
    struct device *d = device_find(app, user);
    if (d)
        return d;
    if (!(d = calloc(1, sizeof(*d))) || !(d->user = strdup(user)) ||
        map_put_str(&app->devs->by_user, d->user, d)) {
        if (d)
            free(d->user);
        free(d);
        return NULL;
    }
    return d;
}

int peer_name(char out[static PEER_NAME_MAX + 1], const char *user, uint32_t id)
{
    int n = snprintf(out, PEER_NAME_MAX + 1, "%s/%u", user, id);
    return n > 0 && n <= PEER_NAME_MAX ? 0 : -1;
}

/* The 12 digits a person compares on both devices before approving one. */
static int device_code(char out[static 13], const uint8_t identity[static CURVE_KEY_LEN])
{
    uint8_t in[sizeof(CODE_DOMAIN) - 1 + CURVE_ENCODED_LEN], h[32];
    uint64_t v = 0;
    memcpy(in, CODE_DOMAIN, sizeof(CODE_DOMAIN) - 1);
    curve_encode(in + sizeof(CODE_DOMAIN) - 1, identity);
    if (sha256(h, in, sizeof(in)))
        return -1;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    snprintf(out, 13, "%012llu", (unsigned long long)(v % 1000000000000ULL));
    return 0;
}

/* A name field of a device request: 1 to DEVICE_USER_MAX bytes, no '/'
 * (peer devices are "user/id" in the store). */
int device_name_field(struct reply *r, const cJSON *body, const char *field,
                      bool optional, const char *fallback, const char **out)
{
    int rc = req_string(r, body, field, optional, out, NULL);
    if (rc)
        return rc;
    if (!*out)
        *out = fallback;
    size_t len = strlen(*out);
    if (!len || len > DEVICE_USER_MAX || strchr(*out, '/'))
        return node_error(r, ERR_MALFORMED, "%s: expected a name of 1 to %d bytes without '/'",
                          field, DEVICE_USER_MAX);
    return 0;
}

bool valid_remote_name(const char *s)
{
    size_t len = strlen(s);
    return len && len <= DEVICE_USER_MAX && !strchr(s, '/');
}

/* The acting device, which must have registered; a revoked one gets error
 * 22, and so does a pending one when `active` is asked for. */
int acting_device(struct app *app, const struct request *req, struct reply *r,
                  bool active, struct device **out, struct user **u)
{
    const char *name;
    int rc = device_name_field(r, req->body, "user", true, req->src, &name);
    if (rc)
        return rc;
    struct device *d = device_find(app, name);
    *u = store_find_user(&app->store, name);
    if (!d || d->status == DEV_NEW || !*u)
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "user: \"%s\" has no device on this node: "
                                                     "register first", name);
    if (d->status == DEV_REVOKED)
        return node_error(r, ERR_PRECONDITION, "device %u of \"%s\" is revoked", d->device_id,
                          name);
    if (active && d->status != DEV_ACTIVE)
        return node_error(r, ERR_PRECONDITION, "device %u of \"%s\" is pending: an active "
                                               "device of the user must approve it first",
                          d->device_id, name);
    *out = d;
    return 0;
}

/* Pins a peer device's identity from a verified chain, and marks its name
 * remote (the node never makes keys for it). */
struct peer *pin_device(struct app *app, struct user *u, const char *of,
                        const struct devlist_device *x)
{
    char name[PEER_NAME_MAX + 1];
    if (peer_name(name, of, x->device_id))
        return NULL;
    struct peer *p = user_find_peer(u, name);
    if (!p && !(p = user_add_peer(u, name)))
        return NULL;
    if (!store_is_remote(&app->store, name) && store_mark_remote(&app->store, name))
        return NULL;
    if (!p->pinned)
        user_pin_peer(u, p, x->identity);
    else if (memcmp(p->identity, x->identity, CURVE_KEY_LEN))
        return NULL; /* cannot happen with a verified chain: ids are never reused */
    return p;
}

const struct devlist_device *known_device(const struct known *k, uint32_t id)
{
    for (size_t i = 0; k && i < k->n_seen; i++)
        if (k->seen[i].device_id == id)
            return &k->seen[i];
    return NULL;
}

/* ============================================================================
 * Device lists from the directory (dir_devices), verified against the pin
 * ========================================================================== */


void chain_free(struct chain *c)
{
    free(c->lists);
    memset(c, 0, sizeof(*c));
}

void chain_read(struct chain *c, enum node_call_status st, const cJSON *body)
{
    struct reply scratch = {0};
    const cJSON *type = body ? req_field(body, "type") : NULL, *lists, *pending, *it;
    chain_free(c);
    c->status = -1;
    if (st != NODE_CALL_REPLY || !cJSON_IsString(type))
        return;
    if (!strcmp(type->valuestring, "error")) {
        const cJSON *code = req_field(body, "code");
        if (cJSON_IsNumber(code) && code->valuedouble == ERR_KEY_DOES_NOT_EXIST)
            c->status = 1;
        return;
    }
    lists = req_field(body, "lists");
    pending = req_field(body, "pending");
    int n = cJSON_IsArray(lists) ? cJSON_GetArraySize(lists) : 0;
    if (!n || n > DEVICE_CHAIN_MAX || !(c->lists = calloc((size_t)n, sizeof(*c->lists))))
        return;
    cJSON_ArrayForEach(it, lists) {
        if (field_devlist(&scratch, it, "list", &c->lists[c->n]))
            goto bad;
        c->n++;
    }
    if (!cJSON_IsArray(pending))
        pending = NULL;
    cJSON_ArrayForEach(it, pending) {
        struct devlist_device *x = &c->pending[c->n_pending];
        if (c->n_pending == DIR_DEVICES_MAX ||
            field_u32(&scratch, it, "pending[]", "device_id", false, &x->device_id) ||
            field_key(&scratch, it, "pending[]", "identity_key", false, x->identity, NULL) ||
            field_u32(&scratch, it, "pending[]", "registration_id", false, &x->registration_id))
            goto bad;
        c->n_pending++;
    }
    reply_free(&scratch);
    c->status = 0;
    return;
bad:
    reply_free(&scratch);
    chain_free(c);
    c->status = -1;
}

static void known_add_seen(struct known *k, const struct devlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (!known_device(k, l->devices[i].device_id) && k->n_seen < KNOWN_MAX)
            k->seen[k->n_seen++] = l->devices[i];
}

uint32_t pinned_version(const struct device *d, const char *of)
{
    const struct known *k = map_get_str(&d->known, of);
    return k ? k->pin.version : 0;
}

/* Verifies c as `of`'s chain from version 1 and against d's pin, and moves
 * the pin to its newest version (an overtaken answer: device_internal.h). */
enum devlist_result chain_take(struct app *app, struct device *d, const char *of,
                               const struct chain *c, uint32_t asked, struct known **out)
{
    struct known *k = map_get_str(&d->known, of);
    struct devlist_pin newest;
    enum devlist_result v = devlist_verify_chain(of, c->lists, c->n, k ? &k->pin : NULL,
                                                 &newest);
    if (v == DEVLIST_ROLLBACK && k && c->n && asked != CHAIN_PIN_NOW &&
        c->lists[c->n - 1].version >= asked) {
        *out = k; /* overtaken, not rolled back: see device_internal.h */
        return DEVLIST_OK;
    }
    if (v != DEVLIST_OK)
        return v;
    if (!k) {
        if (!(k = calloc(1, sizeof(*k))) || !(k->of = strdup(of)) ||
            map_put_str(&d->known, k->of, k)) {
            if (k)
                free(k->of);
            free(k);
            return DEVLIST_INTERNAL;
        }
    }
    bool moved = k->pin.version != newest.version;
    k->pin = newest;
    k->newest = c->lists[c->n - 1];
    for (size_t i = 0; i < c->n; i++)
        known_add_seen(k, &c->lists[i]);
    if (moved)
        put_known(app, d, k);
    *out = k;
    return DEVLIST_OK;
}

/* A version this device made and the directory took: the pin moves to it. */
static int known_extend(struct app *app, struct device *d, struct known *k,
                        const struct devlist *next)
{
    uint8_t hash[DEVLIST_HASH_LEN];
    if (k->pin.version + 1 != next->version || devlist_hash(hash, d->user, next, k->pin.hash))
        return -1;
    k->pin.version = next->version;
    memcpy(k->pin.hash, hash, DEVLIST_HASH_LEN);
    k->newest = *next;
    known_add_seen(k, next);
    put_known(app, d, k);
    return 0;
}

int ask_devices(struct app *app, const char *of, node_call_fn fn, void *ctx)
{
    struct reply *m = node_message(app->node, "dir_get_devices");
    reply_cstring(m, "user", of);
    reply_early(m, 0); /* a read that carries nothing of this node's state */
    return node_call(app->node, app->directory_id, DEVICE_CALL_MS, fn, ctx) ? 0 : -1;
}

static void reply_active(struct reply *r, const char *key, const struct devlist *l)
{
    reply_begin_array(r, key);
    for (size_t i = 0; i < l->n; i++) {
        reply_begin_object(r, NULL);
        reply_int(r, "device_id", l->devices[i].device_id);
        reply_key(r, "identity_key", l->devices[i].identity);
        reply_int(r, "registration_id", l->devices[i].registration_id);
        reply_cstring(r, "status", "active");
        reply_end_object(r);
    }
    reply_end_array(r);
}

/* An error reply from a backend node, passed on: its code and text. */
static void answer_backend_error(struct node *n, struct node_deferred *to, const cJSON *body,
                                 const char *who)
{
    const cJSON *code = req_field(body, "code"), *text = req_field(body, "text");
    long long c = ERR_CRASH;
    if (!json_exact_int(code, &c) || c < 0 || c > 1000)
        c = ERR_CRASH;
    node_answer_error(n, to, (int)c, "the %s refused: %s", who,
                      cJSON_IsString(text) ? text->valuestring : "(no text)");
}

bool is_type(const cJSON *body, const char *type)
{
    const cJSON *t = body ? req_field(body, "type") : NULL;
    return cJSON_IsString(t) && !strcmp(t->valuestring, type);
}

/* ============================================================================
 * register
 * ========================================================================== */

struct register_op {
    char *user;
    struct node_deferred *client;
};

static void reply_registered(struct reply *m, const struct device *d, const struct user *u)
{
    char code[13];
    if (device_code(code, u->id.x.pub)) {
        node_error(m, ERR_CRASH, "hash failed internally");
        return;
    }
    reply_type(m, "registered");
    reply_cstring(m, "user", d->user);
    reply_int(m, "device_id", d->device_id);
    reply_cstring(m, "status", d->status == DEV_ACTIVE ? "active" : "pending");
    reply_cstring(m, "code", code);
}

static void register_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                          const cJSON *body)
{
    struct register_op *op = ctx;
    struct device *d = device_find(app, op->user);
    struct user *u = store_find_user(&app->store, op->user);
    const cJSON *status = body ? req_field(body, "status") : NULL;
    uint32_t id = 0;
    struct reply scratch = {0};
    if (!d || !u) {
        node_answer_error(n, op->client, ERR_CRASH, "the device was lost (a failed commit)");
    } else if (st != NODE_CALL_REPLY) {
        node_answer_error(n, op->client, ERR_TIMEOUT, "the directory did not answer in time; "
                                                      "register again (it is idempotent)");
    } else if (!is_type(body, "dir_published")) {
        answer_backend_error(n, op->client, body, "directory");
    } else if (field_u32(&scratch, body, "", "device_id", false, &id) || !id ||
               !cJSON_IsString(status) || (strcmp(status->valuestring, "active") &&
                                           strcmp(status->valuestring, "pending"))) {
        node_answer_error(n, op->client, ERR_CRASH, "the directory's answer is malformed");
    } else {
        if (d->status == DEV_NEW) { /* else a concurrent register got here first */
            d->device_id = id;
            d->status = strcmp(status->valuestring, "active") ? DEV_PENDING : DEV_ACTIVE;
            d->next_topup_ms = node_now_ms() + DEVICE_TOPUP_MS;
            put_device(app, d);
        }
        reply_registered(node_message(n, "registered"), d, u);
        node_answer(n, op->client);
    }
    reply_free(&scratch);
    free(op->user);
    free(op);
}

/* The fresh one-time prekeys of u (not the last resort), at most max. */
static size_t fresh_opk_ids(const struct user *u, uint32_t *ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < u->n_opks && n < max; i++)
        if (!u->opks[i].handed_out && u->opks[i].id != STORE_LAST_RESORT_ID)
            ids[n++] = u->opks[i].id;
    return n;
}

/* Writes the keys into m and marks them handed out: they leave the device
 * in this commit, so a lost answer never makes one go out twice. */
static void add_opks(struct reply *m, struct user *u, const uint32_t *ids, size_t n)
{
    reply_begin_array(m, "one_time_pre_keys");
    for (size_t i = 0; i < n; i++) {
        struct one_time_prekey *k = user_find_opk(u, ids[i]);
        if (!k)
            continue;
        reply_begin_object(m, NULL);
        reply_int(m, "id", k->id);
        reply_key(m, "key", k->kp.pub);
        reply_end_object(m);
    }
    reply_end_array(m);
    for (size_t i = 0; i < n; i++) {
        struct one_time_prekey *k = user_find_opk(u, ids[i]);
        if (k && !k->handed_out && user_hand_out_opk(u, k))
            node_log("e2ee-node: could not refill one-time prekeys (RNG): will try again");
    }
}

int h_register(struct app *app, const struct request *req, struct reply *r)
{
    const char *name;
    struct user *u;
    int rc = device_name_field(r, req->body, "user", true, req->src, &name);
    if (rc)
        return rc;
    switch (store_user(&app->store, name, &u)) {
    case STORE_OK: break;
    case STORE_FULL:
        return node_error(r, ERR_PRECONDITION, "user limit reached: this node holds at most %zu "
                                               "devices (--max-users)", app->store.max_users);
    case STORE_NO_MEMORY: return node_error(r, ERR_CRASH, "out of memory");
    default: return node_error(r, ERR_CRASH, "key generation failed (RNG or OpenSSL)");
    }
    struct device *d = device_get(app, name);
    if (!d)
        return node_error(r, ERR_CRASH, "out of memory");
    if (d->status == DEV_REVOKED)
        return node_error(r, ERR_PRECONDITION, "device %u of \"%s\" is revoked", d->device_id,
                          name);
    if (d->status != DEV_NEW) { /* registering again is a no-op */
        reply_registered(r, d, u);
        return 0;
    }
    struct register_op *op = calloc(1, sizeof(*op));
    uint32_t ids[STORE_OPK_TARGET];
    struct devlist first = {.version = 1, .n = 1, .signer = 1};
    first.devices[0] = (struct devlist_device){1, {0}, u->registration_id};
    memcpy(first.devices[0].identity, u->id.x.pub, CURVE_KEY_LEN);
    if (!op || !(op->user = strdup(name))) {
        free(op);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    /* Version 1 of the list, for when the account is new (then this is
     * device 1); the directory ignores it for a later device. */
    if (devlist_sign(&first, name, NULL, &u->id)) {
        free(op->user);
        free(op);
        return node_error(r, ERR_CRASH, "signing failed (OpenSSL)");
    }
    if (!(op->client = node_defer(req, r))) {
        free(op->user);
        free(op);
        return ERR_CRASH;
    }
    struct reply *m = node_message(app->node, "dir_publish");
    reply_cstring(m, "user", name);
    reply_int(m, "registration_id", u->registration_id);
    reply_key(m, "identity_key", u->id.x.pub);
    reply_begin_object(m, "signed_pre_key");
    reply_int(m, "id", u->spk_id);
    reply_key(m, "key", u->spk.pub);
    reply_base64(m, "signature", u->spk_sig, CURVE_SIG_LEN);
    reply_end_object(m);
    add_opks(m, u, ids, fresh_opk_ids(u, ids, STORE_OPK_TARGET));
    reply_devlist(m, "list", &first);
    if (!node_call(app->node, app->directory_id, DEVICE_CALL_MS, register_done, op)) {
        node_answer_error(app->node, op->client, ERR_CRASH, "out of memory");
        free(op->user);
        free(op);
    }
    return 0;
}

/* ============================================================================
 * approve_device, revoke_device: the acting device signs the next version
 * ========================================================================== */

struct change_op {
    char *user;
    struct node_deferred *client;
    uint32_t asked; /* the pin when the list was asked for (chain_take) */
    bool approve;
    uint32_t target;
    char code[13];
    int attempts;
    struct devlist next;
};

static void change_free(struct change_op *op)
{
    node_deferred_drop(op->client);
    free(op->user);
    free(op);
}

static void change_start(struct app *app, struct change_op *op);

static void change_answer(struct app *app, struct change_op *op, const struct devlist *l)
{
    struct reply *m = node_message(app->node, op->approve ? "device_approved" : "device_revoked");
    reply_cstring(m, "user", op->user);
    reply_active(m, "devices", l);
    node_answer(app->node, op->client);
    op->client = NULL;
    change_free(op);
}

static void change_fail(struct app *app, struct change_op *op, int code, const char *text)
{
    node_answer_error(app->node, op->client, code, "%s", text);
    op->client = NULL;
    change_free(op);
}

static void change_updated(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                           const cJSON *body)
{
    (void)n;
    struct change_op *op = ctx;
    struct device *d = device_find(app, op->user);
    struct user *u = store_find_user(&app->store, op->user);
    struct known *k = d ? map_get_str(&d->known, op->user) : NULL;
    if (!d || !u || !k)
        return change_fail(app, op, ERR_CRASH, "the device was lost (a failed commit)");
    if (st != NODE_CALL_REPLY)
        return change_fail(app, op, ERR_TIMEOUT, "the directory did not answer in time: the "
                                                 "change may or may not have been made");
    if (!is_type(body, "dir_devices_updated")) {
        const cJSON *code = req_field(body, "code");
        if (cJSON_IsNumber(code) && code->valuedouble == ERR_PRECONDITION && ++op->attempts < 3)
            return change_start(app, op); /* another change came first: again */
        answer_backend_error(app->node, op->client, body, "directory");
        op->client = NULL;
        return change_free(op);
    }
    if (known_extend(app, d, k, &op->next)) /* the pin moved meanwhile: read it afresh */
        node_log("e2ee-node: device list of \"%s\" moved during a change", op->user);
    if (!op->approve && op->target == d->device_id) { /* it revoked itself */
        d->status = DEV_REVOKED;
        user_remove_peers(u);
        put_device(app, d);
    }
    change_answer(app, op, &op->next);
}

static void change_got_list(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                            const cJSON *body)
{
    struct change_op *op = ctx;
    struct device *d = device_find(app, op->user);
    struct user *u = store_find_user(&app->store, op->user);
    struct chain c = {0};
    struct known *k;
    char text[200];
    if (!d || !u || d->status == DEV_REVOKED)
        return change_fail(app, op, ERR_PRECONDITION, "the acting device is revoked");
    chain_read(&c, st, body);
    if (c.status) {
        chain_free(&c);
        return change_fail(app, op, c.status > 0 ? ERR_KEY_DOES_NOT_EXIST : ERR_TIMEOUT,
                           c.status > 0 ? "the directory has no account for this user"
                                        : "the directory did not answer in time");
    }
    enum devlist_result v = chain_take(app, d, op->user, &c, op->asked, &k);
    if (v != DEVLIST_OK) {
        chain_free(&c);
        snprintf(text, sizeof(text), "the directory's device list does not verify: %s",
                 devlist_result_text(v));
        return change_fail(app, op, v == DEVLIST_INTERNAL ? ERR_CRASH : ERR_PRECONDITION, text);
    }
    const struct devlist *cur = &k->newest;
    if (device_note_own_list(app, d, u, k) != DEV_ACTIVE) {
        chain_free(&c);
        return change_fail(app, op, ERR_PRECONDITION, d->status == DEV_PENDING
                                                          ? "the acting device is pending: an "
                                                            "active device must approve it first"
                                                          : "the acting device is revoked");
    }
    struct devlist next = *cur;
    if (op->approve) {
        const struct devlist_device *p = NULL;
        char code[13];
        for (size_t i = 0; i < c.n_pending && !p; i++)
            if (c.pending[i].device_id == op->target)
                p = &c.pending[i];
        if (devlist_find(cur, op->target)) { /* approved already */
            op->next = *cur;
            chain_free(&c);
            return change_answer(app, op, cur);
        }
        if (!p) {
            chain_free(&c);
            return change_fail(app, op, ERR_KEY_DOES_NOT_EXIST,
                               "device_id: no pending device with that id");
        }
        if (device_code(code, p->identity)) {
            chain_free(&c);
            return change_fail(app, op, ERR_CRASH, "hash failed internally");
        }
        /* The code binds the approval to the key the new device showed its
         * person: a directory that swapped the key is caught here. */
        if (CRYPTO_memcmp(code, op->code, 12)) {
            chain_free(&c);
            return change_fail(app, op, ERR_PRECONDITION, "code: does not match the pending "
                                                          "device's identity key");
        }
        if (next.n == DEVLIST_MAX_DEVICES) {
            chain_free(&c);
            return change_fail(app, op, ERR_PRECONDITION, "the user has the most active "
                                                          "devices a list holds");
        }
        for (size_t i = 0; i < k->n_seen; i++)
            if (k->seen[i].device_id > op->target) { /* ids only grow (devlist_verify_next) */
                chain_free(&c);
                snprintf(text, sizeof(text), "device_id: %u registered before device %u, "
                                             "which a list has carried since; ids only grow, so "
                                             "it cannot be approved now", op->target,
                         k->seen[i].device_id);
                return change_fail(app, op, ERR_PRECONDITION, text);
            }
        next.devices[next.n++] = *p;
    } else {
        size_t j = 0;
        if (!devlist_find(cur, op->target)) {
            bool was = known_device(k, op->target) != NULL;
            chain_free(&c);
            if (was) { /* revoked already */
                op->next = *cur;
                return change_answer(app, op, cur);
            }
            return change_fail(app, op, ERR_KEY_DOES_NOT_EXIST,
                               "device_id: no such device of the user");
        }
        if (cur->n == 1) {
            chain_free(&c);
            return change_fail(app, op, ERR_PRECONDITION, "the last device of a user cannot be "
                                                          "revoked");
        }
        for (size_t i = 0; i < cur->n; i++)
            if (cur->devices[i].device_id != op->target)
                next.devices[j++] = cur->devices[i];
        next.n = j;
    }
    chain_free(&c);
    next.version = cur->version + 1;
    next.signer = d->device_id;
    if (devlist_sign(&next, op->user, k->pin.hash, &u->id))
        return change_fail(app, op, ERR_CRASH, "signing failed (OpenSSL)");
    op->next = next;
    struct reply *m = node_message(n, "dir_update_devices");
    reply_cstring(m, "user", op->user);
    reply_devlist(m, "list", &next);
    if (!node_call(n, app->directory_id, DEVICE_CHANGE_MS, change_updated, op))
        change_fail(app, op, ERR_CRASH, "out of memory");
}

static void change_start(struct app *app, struct change_op *op)
{
    const struct device *d = device_find(app, op->user);
    op->asked = d ? pinned_version(d, op->user) : 0;
    if (ask_devices(app, op->user, change_got_list, op))
        change_fail(app, op, ERR_CRASH, "out of memory");
}

static int change_request(struct app *app, const struct request *req, struct reply *r,
                          bool approve)
{
    struct device *d;
    struct user *u;
    uint32_t target;
    const char *code = NULL;
    size_t code_len = 0;
    int rc;
    if ((rc = field_u32(r, req->body, "", "device_id", false, &target)) ||
        (approve && (rc = req_string(r, req->body, "code", false, &code, &code_len))))
        return rc;
    if (approve && code_len != 12)
        return node_error(r, ERR_MALFORMED, "code: expected the 12 digits the new device "
                                            "showed");
    /* A pending device may have been approved a moment ago: its list says. */
    if ((rc = acting_device(app, req, r, false, &d, &u)))
        return rc;
    struct change_op *op = calloc(1, sizeof(*op));
    if (!op || !(op->user = strdup(d->user))) {
        free(op);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    op->approve = approve;
    op->target = target;
    if (code)
        memcpy(op->code, code, 12);
    if (!(op->client = node_defer(req, r))) {
        change_free(op);
        return ERR_CRASH;
    }
    change_start(app, op);
    return 0;
}

int h_approve_device(struct app *app, const struct request *req, struct reply *r)
{
    return change_request(app, req, r, true);
}

int h_revoke_device(struct app *app, const struct request *req, struct reply *r)
{
    return change_request(app, req, r, false);
}

/* ============================================================================
 * devices, fingerprint: a list read afresh and verified
 * ========================================================================== */

struct view_op {
    char *user, *of;
    struct node_deferred *client;
    /* [0] of's list, [1] the acting user's own (PROTOCOL.md §5.2: both,
     * every time), unless of is the user; the answers come by view_ref */
    struct chain chains[2];
    uint32_t asked[2]; /* the pins when the lists were asked for (chain_take) */
    int outstanding;   /* answers to wait for, and one while asking */
    bool out_of_memory; /* a list could not be asked for */
    bool fingerprint;
    uint32_t device_id; /* fingerprint: 0 for the lowest in the newest list */
};

struct view_ref {
    struct view_op *op;
    int side;
};

static void view_free(struct view_op *op)
{
    chain_free(&op->chains[0]);
    chain_free(&op->chains[1]);
    node_deferred_drop(op->client);
    free(op->user);
    free(op->of);
    free(op);
}

/* The safety number of the acting device and one device of `of`. */
static int fingerprint_reply(struct reply *m, const struct user *u, const struct known *k,
                             const char *of, uint32_t device_id)
{
    const struct devlist_device *x = NULL;
    char number[61];
    if (device_id)
        x = known_device(k, device_id);
    else if (k && k->newest.n)
        x = &k->newest.devices[0];
    if (!x)
        return node_error(m, ERR_KEY_DOES_NOT_EXIST, "device_id: \"%s\" has no such device", of);
    if (safety_number(number, u->id.x.pub, u->name, strlen(u->name), x->identity, of,
                      strlen(of)))
        return node_error(m, ERR_CRASH, "fingerprint computation failed internally");
    reply_type(m, "fingerprint");
    reply_cstring(m, "safety_number", number);
    reply_int(m, "device_id", x->device_id);
    return 0;
}

/* Once every list asked for is in (or could not be asked for): the reply.
 * The acting device's own list goes first, so that a device revoked by
 * another one learns it here and answers error 22 (PROTOCOL.md §5.2), as it
 * would acting in any other way. */
static void view_step(struct app *app, struct node *n, struct view_op *op)
{
    if (--op->outstanding)
        return;
    struct device *d = device_find(app, op->user);
    struct user *u = store_find_user(&app->store, op->user);
    bool self = !strcmp(op->of, op->user);
    struct known *k[2] = {NULL, NULL};
    if (!d || !u || op->out_of_memory) {
        node_answer_error(n, op->client, ERR_CRASH, op->out_of_memory
                                                        ? "out of memory"
                                                        : "the device was lost (a failed commit)");
        goto out;
    }
    for (int side = 1 - self; side >= 0; side--) { /* the own list first */
        const char *of = side ? op->user : op->of;
        struct chain *c = &op->chains[side];
        if (c->status) {
            node_answer_error(n, op->client, c->status > 0 ? ERR_KEY_DOES_NOT_EXIST
                                                           : ERR_TIMEOUT,
                              c->status > 0 ? "\"%s\" has no account"
                                            : "the directory did not answer about \"%s\" in time",
                              of);
            goto out;
        }
        enum devlist_result v = chain_take(app, d, of, c, op->asked[side], &k[side]);
        if (v != DEVLIST_OK) {
            node_answer_error(n, op->client, v == DEVLIST_INTERNAL ? ERR_CRASH : ERR_PRECONDITION,
                              "the directory's device list of \"%s\" does not verify: %s", of,
                              devlist_result_text(v));
            goto out;
        }
        /* The own list, once verified, is noted whatever of's brings. */
        if ((side == 1 || self) && device_note_own_list(app, d, u, k[side]) == DEV_REVOKED) {
            node_answer_error(n, op->client, ERR_PRECONDITION, "device %u of \"%s\" is revoked",
                              d->device_id, d->user);
            goto out;
        }
    }
    if (op->fingerprint) {
        struct reply *m = node_message(n, "fingerprint");
        fingerprint_reply(m, u, k[0], op->of, op->device_id);
        node_answer(n, op->client);
    } else {
        struct reply *m = node_message(n, "devices");
        reply_cstring(m, "of", op->of);
        reply_int(m, "version", k[0]->newest.version);
        reply_active(m, "devices", &k[0]->newest);
        node_answer(n, op->client);
    }
out:
    op->client = NULL;
    view_free(op);
}

static void view_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                      const cJSON *body)
{
    struct view_ref *ref = ctx;
    struct view_op *op = ref->op;
    chain_read(&op->chains[ref->side], st, body);
    free(ref);
    view_step(app, n, op);
}

/* Asks the directory for op's list on side (see view_op). */
static void view_ask(struct app *app, struct view_op *op, int side)
{
    struct view_ref *ref = malloc(sizeof(*ref));
    if (ref)
        *ref = (struct view_ref){op, side};
    if (!ref || ask_devices(app, side ? op->user : op->of, view_done, ref)) {
        free(ref);
        op->out_of_memory = true;
        return;
    }
    op->outstanding++;
}

static int view_request(struct app *app, const struct request *req, struct reply *r,
                        const char *of_field, bool fingerprint)
{
    struct device *d;
    struct user *u;
    const char *of;
    uint32_t device_id = 0;
    int rc;
    if ((rc = device_name_field(r, req->body, of_field, false, NULL, &of)) ||
        (fingerprint && (rc = field_u32(r, req->body, "", "device_id", true, &device_id))) ||
        (rc = acting_device(app, req, r, false, &d, &u)))
        return rc;
    struct known *k = map_get_str(&d->known, of);
    if (fingerprint && (device_id ? known_device(k, device_id) != NULL : k != NULL))
        return fingerprint_reply(r, u, k, of, device_id); /* pinned: no need to ask */
    struct view_op *op = calloc(1, sizeof(*op));
    if (!op || !(op->user = strdup(d->user)) || !(op->of = strdup(of))) {
        if (op)
            free(op->user);
        free(op);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    op->fingerprint = fingerprint;
    op->device_id = device_id;
    if (!(op->client = node_defer(req, r))) {
        view_free(op);
        return ERR_CRASH;
    }
    op->asked[0] = pinned_version(d, of);
    op->asked[1] = pinned_version(d, d->user);
    op->outstanding = 1; /* while asking: no answer ends the op before both are asked */
    view_ask(app, op, 0);
    if (strcmp(of, d->user))
        view_ask(app, op, 1);
    view_step(app, app->node, op);
    return 0;
}

int h_devices(struct app *app, const struct request *req, struct reply *r)
{
    return view_request(app, req, r, "of", false);
}

int h_device_fingerprint(struct app *app, const struct request *req, struct reply *r)
{
    return view_request(app, req, r, "peer", true);
}

/* ============================================================================
 * read
 * ========================================================================== */

static void reply_inbox(struct reply *r, const struct device *d, long long after)
{
    reply_type(r, "messages");
    reply_sensitive(r);
    reply_begin_array(r, "messages");
    for (size_t i = (size_t)after < d->n_inbox ? (size_t)after : d->n_inbox; i < d->n_inbox;
         i++) {
        const struct message *m = &d->inbox[i];
        reply_begin_object(r, NULL);
        reply_cstring(r, "message_id", m->message_id);
        reply_cstring(r, "from", m->from);
        reply_int(r, "from_device", m->from_device);
        reply_text_or_base64(r, "text", m->text, m->len);
        reply_int(r, "seq", (long long)m->seq);
        reply_end_object(r);
    }
    reply_end_array(r);
}

struct read_op {
    char *user;
    long long after;
    struct node_deferred *client;
};

/* The device's own list, read afresh: a device revoked a moment ago (the
 * revocation is answered once the directory holds it) gets error 22, not
 * its inbox. Without an answer in time the inbox is given: the device
 * cannot tell. */
static void read_checked(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                         const cJSON *body)
{
    struct read_op *op = ctx;
    struct device *d = device_find(app, op->user);
    struct user *u = store_find_user(&app->store, op->user);
    struct chain c = {0};
    struct known *k;
    chain_read(&c, st, body);
    if (d && u && !c.status && chain_take(app, d, d->user, &c, CHAIN_PIN_NOW, &k) == DEVLIST_OK)
        device_note_own_list(app, d, u, k);
    chain_free(&c);
    if (!d)
        node_answer_error(n, op->client, ERR_CRASH, "the device was lost (a failed commit)");
    else if (d->status == DEV_REVOKED)
        node_answer_error(n, op->client, ERR_PRECONDITION, "device %u of \"%s\" is revoked",
                          d->device_id, d->user);
    else {
        reply_inbox(node_message(n, "messages"), d, op->after);
        node_answer(n, op->client);
    }
    free(op->user);
    free(op);
}

int h_read(struct app *app, const struct request *req, struct reply *r)
{
    struct device *d;
    struct user *u;
    long long after = 0;
    int rc;
    if ((rc = req_int(r, req->body, "after", true, 0, NODE_MAX_SAFE_INT, &after, NULL)) ||
        (rc = acting_device(app, req, r, false, &d, &u)))
        return rc;

    struct read_op *op = calloc(1, sizeof(*op));
    if (!op || !(op->user = strdup(d->user))) {
        free(op);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    op->after = after;
    if (!(op->client = node_defer(req, r))) {
        free(op->user);
        free(op);
        return ERR_CRASH;
    }
    if (ask_devices(app, d->user, read_checked, op))
        read_checked(app, app->node, op, NODE_CALL_TIMEOUT, NULL);
    return 0;
}

/* ============================================================================
 * Pending and revoked: the device's own list; prekey top-ups
 * ========================================================================== */

enum dev_status device_note_own_list(struct app *app, struct device *d, struct user *u,
                                     const struct known *own)
{
    const struct devlist_device *me = devlist_find(&own->newest, d->device_id);
    bool listed = me && !memcmp(me->identity, u->id.x.pub, CURVE_KEY_LEN);
    if (listed && d->status == DEV_PENDING) { /* approved: to work at once */
        d->status = DEV_ACTIVE;
        d->next_topup_ms = 0;
        d->last_fetch_ms = 0;
        put_device(app, d);
        if (!app->devs->closing)
            fetch_start(app, d);
    } else if (!listed && known_device(own, d->device_id) && d->status != DEV_REVOKED) {
        d->status = DEV_REVOKED; /* listed once, not now: its keys go */
        user_remove_peers(u);
        put_device(app, d);
    }
    return d->status;
}

static void self_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                      const cJSON *body)
{
    (void)n;
    char *user = ctx;
    struct device *d = device_find(app, user);
    struct user *u = store_find_user(&app->store, user);
    struct chain c = {0};
    struct known *k;
    free(user);
    chain_read(&c, st, body);
    if (d && u && !c.status && chain_take(app, d, d->user, &c, CHAIN_PIN_NOW, &k) == DEVLIST_OK) {
        device_note_own_list(app, d, u, k);
        d->check_self = false;
    }
    chain_free(&c);
    if (d)
        d->polling = false;
}

static void check_self(struct app *app, struct device *d)
{
    char *ctx = strdup(d->user);
    d->polling = true;
    if (!ctx || ask_devices(app, d->user, self_done, ctx)) {
        free(ctx);
        d->polling = false;
    }
}

struct topup_op {
    char *user;
};

static void topup_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                       const cJSON *body)
{
    (void)n;
    struct topup_op *op = ctx;
    struct device *d = device_find(app, op->user);
    struct reply scratch = {0};
    uint32_t count;
    free(op->user);
    free(op);
    if (!d)
        return;
    d->topping_up = false;
    d->next_topup_ms = node_now_ms() + DEVICE_TOPUP_MS;
    if (st == NODE_CALL_REPLY && is_type(body, "dir_prekeys_uploaded") &&
        !field_u32(&scratch, body, "", "count", false, &count) && count != d->dir_opks) {
        d->dir_opks = count;
        put_device(app, d);
    }
    reply_free(&scratch);
}

/* Asks the directory how many one-time prekeys it holds for d, sending more
 * when it held fewer than DEVICE_TOPUP_BELOW last time. */
static void topup_start(struct app *app, struct device *d)
{
    struct user *u = store_find_user(&app->store, d->user);
    uint32_t ids[STORE_OPK_TARGET];
    size_t n = 0;
    uint8_t digest[32], sig[CURVE_SIG_LEN];
    struct buf b = {0};
    struct topup_op *op = u ? calloc(1, sizeof(*op)) : NULL;
    if (!op || !(op->user = strdup(d->user)))
        goto fail;
    if (d->dir_opks < DEVICE_TOPUP_BELOW)
        n = fresh_opk_ids(u, ids, STORE_OPK_TARGET);
    /* The digest the directory recomputes (signed.h): each key, then no
     * signed prekey. */
    for (size_t i = 0; i < n; i++) {
        const struct one_time_prekey *k = user_find_opk(u, ids[i]);
        row_u32(&b, ids[i]);
        row_bytes(&b, k->kp.pub, CURVE_KEY_LEN);
    }
    row_u8(&b, 0);
    if (!buf_ok(&b) || sha256(digest, (const uint8_t *)b.data, b.len) ||
        sign_next(app, d, u, "dir_upload_prekeys", NULL, 0, digest, sig))
        goto fail;
    struct reply *m = node_message(app->node, "dir_upload_prekeys");
    reply_cstring(m, "user", d->user);
    reply_int(m, "device_id", d->device_id);
    add_opks(m, u, ids, n);
    reply_int(m, "counter", (long long)d->counter);
    reply_base64(m, "signature", sig, CURVE_SIG_LEN);
    if (!node_call(app->node, app->directory_id, DEVICE_CALL_MS, topup_done, op))
        goto fail;
    d->topping_up = true;
    if (n)
        d->dir_opks += (uint32_t)n; /* until the answer says */
    buf_free(&b);
    return;
fail:
    buf_free(&b);
    if (op)
        free(op->user);
    free(op);
    d->next_topup_ms = node_now_ms() + DEVICE_TOPUP_MS;
}

/* ============================================================================
 * The tick
 * ========================================================================== */

static void tick(struct app *app, struct node *n, void *ctx)
{
    (void)n;
    (void)ctx;
    struct devices *ds = app->devs;
    uint64_t now = node_now_ms();
    size_t pos = 0;
    struct device *d;
    if (ds->closing)
        return;
    delete_done_rows(app);
    bool scan = ds->orphans;
    ds->orphans = false; /* set again below, or by an op that cannot start */
    while ((d = map_next(&ds->by_user, &pos)) != NULL) {
        if (d->status == DEV_ACTIVE) {
            if (!d->fetching && now - d->last_fetch_ms >= DEVICE_POLL_MS)
                fetch_start(app, d);
            if (!d->topping_up && now >= d->next_topup_ms)
                topup_start(app, d);
        }
        if ((d->status == DEV_PENDING || d->check_self) && !d->polling)
            check_self(app, d);
        /* Outbox messages with no op: after a restart or a failed commit.
         * Ids first: starting one may finish it, which changes the map. */
        char ids[16][MESSAGE_ID_LEN + 1];
        size_t n_ids = 0, opos = 0;
        struct outgoing *o;
        while (scan && (o = map_next(&d->outbox, &opos)) != NULL && n_ids < 16)
            if (!map_get_str(&ds->ops, o->message_id))
                memcpy(ids[n_ids++], o->message_id, MESSAGE_ID_LEN + 1);
        /* More than one tick's worth, or a device that cannot send yet:
         * look again next tick. */
        if (n_ids == 16 || (n_ids && d->status != DEV_ACTIVE && d->status != DEV_REVOKED))
            ds->orphans = true;
        for (size_t i = 0; i < n_ids; i++) {
            if (!(o = map_get_str(&d->outbox, ids[i])))
                continue;
            if (d->status == DEV_ACTIVE) {
                send_start(app, d, o, NULL);
            } else if (d->status == DEV_REVOKED) { /* it can send nothing now */
                node_log("e2ee-node: message %s of revoked device \"%s\" given up", ids[i],
                         d->user);
                del_outgoing(app, d, o);
                map_remove_str(&d->outbox, ids[i]);
                outgoing_free(o);
            }
        }
    }
}

int devices_start(struct app *app)
{
    if (devices_new(app))
        return -1;
    if (!app->devs->tick)
        app->devs->tick = node_timer(app->node, 0, DEVICE_TICK_MS, tick, NULL, NULL);
    return app->devs->tick ? 0 : -1;
}

void devices_close(struct app *app)
{
    if (app->devs)
        app->devs->closing = true;
}

/* ============================================================================
 * Lifetime and loading
 * ========================================================================== */

int devices_new(struct app *app)
{
    if (!app->devs && !(app->devs = calloc(1, sizeof(*app->devs))))
        return -1;
    return 0;
}

void devices_forget(struct app *app)
{
    struct devices *ds = app->devs;
    size_t pos = 0;
    struct device *d;
    if (!ds)
        return;
    while ((d = map_next(&ds->by_user, &pos)) != NULL)
        device_free(d);
    map_free(&ds->by_user);
    memset(&ds->by_user, 0, sizeof(ds->by_user));
}

void devices_free(struct app *app)
{
    struct devices *ds = app->devs;
    size_t pos = 0;
    struct send_op *op;
    if (!ds)
        return;
    devices_forget(app);
    while ((op = map_next(&ds->ops, &pos)) != NULL)
        send_op_free(op);
    for (size_t i = 0; i < ds->n_done; i++)
        free(ds->done[i].user);
    free(ds->done);
    map_free(&ds->ops);
    free(ds);
    app->devs = NULL;
}

static bool split_key(const uint8_t *key, size_t len, char *user, const uint8_t **rest,
                      size_t *rest_len)
{
    size_t n = strnlen((const char *)key, len);
    if (!n || n > DEVICE_USER_MAX || n == len)
        return false;
    memcpy(user, key, n);
    user[n] = 0;
    *rest = key + n + 1;
    *rest_len = len - n - 1;
    return true;
}

static void row_get_devices(struct row_reader *rd, struct devlist_device *x, size_t max,
                            size_t *n)
{
    uint32_t count = row_get_u32(rd);
    if (count > max) {
        rd->bad = true;
        return;
    }
    for (*n = 0; *n < count; (*n)++) {
        x[*n].device_id = row_get_u32(rd);
        row_get_bytes(rd, x[*n].identity, CURVE_KEY_LEN);
        x[*n].registration_id = row_get_u32(rd);
    }
}

int devices_load_row(struct app *app, const char *kind, const uint8_t *key, size_t key_len,
                     const uint8_t *value, size_t value_len)
{
    struct row_reader rd = row_reader(value, value_len);
    char user[DEVICE_USER_MAX + 1];
    const uint8_t *rest;
    size_t rest_len;
    struct device *d;
    if (devices_new(app) || row_get_u8(&rd) != ROW_VERSION)
        return -1;
    if (!strcmp(kind, "dev_dev")) {
        if (!key_len || key_len > DEVICE_USER_MAX || memchr(key, 0, key_len))
            return -1;
        memcpy(user, key, key_len);
        user[key_len] = 0;
        if (!(d = device_get(app, user)))
            return -1;
        d->device_id = row_get_u32(&rd);
        d->status = row_get_u8(&rd);
        d->counter = d->reserved = row_get_u64(&rd); /* past every counter used */
        d->reserved_before = d->reserved;
        d->reserve_commit = 0;
        d->dir_opks = row_get_u32(&rd);
        return row_done(&rd) && d->status <= DEV_REVOKED ? 0 : -1;
    }
    if (!split_key(key, key_len, user, &rest, &rest_len) || !(d = device_get(app, user)))
        return -1;
    if (!strcmp(kind, "dev_known")) {
        struct known *k = calloc(1, sizeof(*k));
        if (!k || !rest_len || rest_len > DEVICE_USER_MAX || memchr(rest, 0, rest_len) ||
            !(k->of = strndup((const char *)rest, rest_len)))
            goto bad_known;
        k->pin.version = row_get_u32(&rd);
        row_get_bytes(&rd, k->pin.hash, DEVLIST_HASH_LEN);
        k->newest.version = row_get_u32(&rd);
        k->newest.signer = row_get_u32(&rd);
        row_get_bytes(&rd, k->newest.signature, CURVE_SIG_LEN);
        row_get_devices(&rd, k->newest.devices, DEVLIST_MAX_DEVICES, &k->newest.n);
        row_get_devices(&rd, k->seen, KNOWN_MAX, &k->n_seen);
        if (!row_done(&rd) || map_get_str(&d->known, k->of) || map_put_str(&d->known, k->of, k))
            goto bad_known;
        return 0;
    bad_known:
        if (k)
            free(k->of);
        free(k);
        return -1;
    }
    if (!strcmp(kind, "dev_msg")) {
        char mid[MESSAGE_ID_LEN + 2], from[DEVICE_USER_MAX + 1];
        uint64_t seq = 0;
        if (rest_len != 8)
            return -1;
        for (int i = 0; i < 8; i++)
            seq = seq << 8 | rest[i];
        row_get_str(&rd, mid, sizeof(mid));
        row_get_str(&rd, from, sizeof(from));
        uint32_t from_device = row_get_u32(&rd);
        if (rd.bad || !seq || seq > DEVICE_INBOX_MAX)
            return -1;
        struct item it = {.from_user = from, .message_id = mid, .from_device = from_device};
        size_t at = d->n_inbox;
        if (inbox_add(d, &it, rd.p, (size_t)(rd.end - rd.p)))
            return -1;
        d->inbox[at].seq = seq; /* put in order by devices_loaded */
        return 0;
    }
    if (!strcmp(kind, "dev_out")) {
        char to[DEVICE_USER_MAX + 1];
        struct outgoing *o = calloc(1, sizeof(*o));
        row_get_str(&rd, to, sizeof(to));
        size_t len = row_get_u32(&rd);
        const uint8_t *text = len <= DEVICE_TEXT_MAX ? row_take(&rd, len) : NULL;
        if (!o || !text || rest_len != MESSAGE_ID_LEN || memchr(rest, 0, rest_len) ||
            !(o->to = strdup(to)) || !(o->text = malloc(len ? len : 1)))
            goto bad_out;
        memcpy(o->message_id, rest, MESSAGE_ID_LEN);
        memcpy(o->text, text, len);
        o->len = len;
        o->stored = true;
        o->ready = row_get_bool(&rd);
        uint32_t n_envs = row_get_u32(&rd);
        if (rd.bad || n_envs > 2 * DEVLIST_MAX_DEVICES ||
            !(o->envs = calloc(n_envs ? n_envs : 1, sizeof(*o->envs))))
            goto bad_out;
        for (; o->n_envs < n_envs; o->n_envs++) {
            struct sealed *e = &o->envs[o->n_envs];
            char to_user[DEVICE_USER_MAX + 1];
            row_get_str(&rd, to_user, sizeof(to_user));
            e->device_id = row_get_u32(&rd);
            e->registration_id = row_get_u32(&rd);
            e->prekey = row_get_bool(&rd);
            size_t n = row_get_u32(&rd);
            const uint8_t *ct = n <= ((size_t)1 << 22) ? row_take(&rd, n) : NULL;
            if (!ct || !(e->user = strdup(to_user)) ||
                !(e->ciphertext = strndup((const char *)ct, n)) || strlen(e->ciphertext) != n) {
                o->n_envs++; /* freed with the others */
                goto bad_out;
            }
        }
        if (!row_done(&rd))
            goto bad_out;
        if (map_get_str(&d->outbox, o->message_id) ||
            map_put_str(&d->outbox, o->message_id, o))
            goto bad_out;
        return 0;
    bad_out:
        outgoing_free(o);
        return -1;
    }
    return -1;
}

static int by_seq(const void *x, const void *y)
{
    uint64_t a = ((const struct message *)x)->seq, b = ((const struct message *)y)->seq;
    return a < b ? -1 : a > b;
}

int devices_loaded(struct app *app)
{
    size_t pos = 0;
    struct device *d;
    if (devices_new(app))
        return -1;
    while ((d = map_next(&app->devs->by_user, &pos)) != NULL) {
        /* Inbox rows came in any order: sort, check seq runs 1, 2, 3, ...,
         * and index again. */
        if (d->n_inbox > 1) /* qsort must not be given NULL, even for none */
            qsort(d->inbox, d->n_inbox, sizeof(d->inbox[0]), by_seq);
        map_free(&d->inbox_ids);
        memset(&d->inbox_ids, 0, sizeof(d->inbox_ids));
        for (size_t i = 0; i < d->n_inbox; i++)
            if (d->inbox[i].seq != i + 1 ||
                map_put_str(&d->inbox_ids, d->inbox[i].message_id, (void *)(uintptr_t)(i + 1)))
                return -1;
        if (!store_find_user(&app->store, d->user))
            return -1; /* a device without its keys */
    }
    app->devs->orphans = true; /* no outbox message has its op yet */
    return 0;
}
