/* inbox.c - the device role's receive path (device.h): relay_fetch,
 * decryption into the inbox, relay_ack, and relay_notify.
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
 * The receive path: relay_fetch, decrypt into the inbox, relay_ack
 * ========================================================================== */


struct fetch_op {
    char *user;
    struct item *items;
    size_t n, outstanding;
    bool full; /* a whole page: more may wait */
    /* Senders the directory answered for (a chain, or no such account).
     * An envelope from an unlisted device counts as a failure only then:
     * a lookup that timed out says nothing about the sender. */
    char *answered[LOOKUPS_MAX];
    size_t n_answered;
};

static void fetch_free(struct fetch_op *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->items[i].from_user);
        free(f->items[i].message_id);
        free(f->items[i].ciphertext);
    }
    free(f->items);
    for (size_t i = 0; i < f->n_answered; i++)
        free(f->answered[i]);
    free(f->user);
    free(f);
}

static bool sender_answered(const struct fetch_op *f, const char *from_user)
{
    if (!valid_remote_name(from_user))
        return true; /* never asked: no answer can make it a sender */
    for (size_t i = 0; i < f->n_answered; i++)
        if (!strcmp(f->answered[i], from_user))
            return true;
    return false;
}

/* The fetch is over: go again at once when told of more meanwhile. */
static void fetch_end(struct app *app, struct device *d, bool more)
{
    d->fetching = false;
    if ((more || d->fetch_again) && !app->devs->closing)
        fetch_start(app, d);
}

/* Signs a request for the relay or the directory with the next counter.
 * Counters are reserved in the state a block at a time (the reservation is
 * in a commit before the request leaves), so that none repeats after a
 * restart. The next block is reserved when half of this one is used, so
 * that it is durable long before its first counter is, and a request with
 * nothing else new in it waits for no commit (counter_commit). */
int sign_next(struct app *app, struct device *d, struct user *u, const char *type,
              const uint64_t *ids, size_t n_ids, const uint8_t *digest,
              uint8_t sig[static CURVE_SIG_LEN])
{
    struct signed_request sr = {.type = type, .user = d->user, .device_id = d->device_id,
                                .counter = ++d->counter, .ids = ids, .n_ids = n_ids,
                                .digest = digest};
    if (d->counter + DEVICE_COUNTER_BLOCK / 2 > d->reserved) {
        if (node_commit_durable(app->node, d->reserve_commit))
            d->reserved_before = d->reserved;
        d->reserved = d->counter + DEVICE_COUNTER_BLOCK;
        d->reserve_commit = node_commit_next(app->node);
        put_device(app, d);
    }
    return signed_request_sign(sig, &u->id, &sr);
}

uint64_t counter_commit(const struct device *d)
{
    return d->counter <= d->reserved_before ? 0 : d->reserve_commit;
}

/* Whether the relay answered a signed request with error 22. Then the
 * device may be revoked (the directory will say), or its counter may be
 * below the floor a restart of the relay set (RELAY_COUNTER_SLACK): it moves
 * ahead of that, in the reservation of the next request. */
static bool refused(struct device *d, const cJSON *body)
{
    const cJSON *code = body ? req_field(body, "code") : NULL;
    if (!is_type(body, "error") || !cJSON_IsNumber(code) || code->valuedouble != ERR_PRECONDITION)
        return false;
    d->check_self = true;
    d->counter += 2 * RELAY_COUNTER_SLACK;
    return true;
}

static void ack_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                     const cJSON *body)
{
    (void)n;
    struct fetch_op *f = ctx;
    struct device *d = device_find(app, f->user);
    bool full = f->full;
    fetch_free(f);
    if (!d)
        return;
    if (st == NODE_CALL_REPLY && refused(d, body)) /* what it acked comes back; acked again */
        return fetch_end(app, d, !d->fetch_refused);
    fetch_end(app, d, full && st == NODE_CALL_REPLY && is_type(body, "relay_acked"));
}

/* The failures counted for envelope id, or NULL (an id has one slot). */
static struct failure *failure_find(struct device *d, uint64_t id)
{
    for (size_t i = 0; i < FAILURES_KEPT; i++)
        if (d->failures[i].n && d->failures[i].id == id)
            return &d->failures[i];
    return NULL;
}

/* Counts a failure of envelope id; true when it has failed often enough to
 * be dropped (PROTOCOL.md §5.2). */
static bool failed_enough(struct device *d, uint64_t id)
{
    struct failure *f = failure_find(d, id);
    if (f)
        return ++f->n >= DEVICE_FAILURES_MAX;
    d->failures[d->next_failure] = (struct failure){id, 1};
    d->next_failure = (d->next_failure + 1) % FAILURES_KEPT;
    return DEVICE_FAILURES_MAX <= 1;
}

/* An envelope acknowledged (stored, refused or dropped) has no failures to
 * count any more: an id seen again starts afresh. */
static void failures_forget(struct device *d, uint64_t id)
{
    struct failure *f = failure_find(d, id);
    if (f)
        *f = (struct failure){0};
}

/* Reads and checks an inner message against the envelope and this device;
 * on success *text and *len point into it. */
static const char *inner_check(const uint8_t *p, size_t n, const struct item *it,
                               const struct device *d, const uint8_t **text, size_t *len)
{
    struct row_reader rd = row_reader(p, n);
    char mid[MESSAGE_ID_LEN + 2], from[DEVICE_USER_MAX + 1], to[DEVICE_USER_MAX + 1];
    const uint8_t *domain = row_take(&rd, sizeof(INNER_DOMAIN) - 1);
    if (!domain || memcmp(domain, INNER_DOMAIN, sizeof(INNER_DOMAIN) - 1))
        return "not a securitor message";
    row_get_str(&rd, mid, sizeof(mid));
    row_get_str(&rd, from, sizeof(from));
    uint32_t from_device = row_get_u32(&rd);
    row_get_str(&rd, to, sizeof(to));
    uint32_t to_device = row_get_u32(&rd);
    if (rd.bad)
        return "a malformed inner message";
    if (strcmp(mid, it->message_id))
        return "its message_id is not the envelope's";
    if (strcmp(from, it->from_user) || from_device != it->from_device)
        return "its sender is not the envelope's";
    if (strcmp(to, d->user) || to_device != d->device_id)
        return "it was sent to another device (misaddressed)";
    *text = rd.p;
    *len = (size_t)(rd.end - rd.p);
    return NULL;
}

/* Appends to the inbox in memory (the caller writes the row). */
int inbox_add(struct device *d, const struct item *it, const uint8_t *text, size_t len)
{
    if (d->n_inbox == d->cap_inbox) {
        size_t cap = d->cap_inbox ? 2 * d->cap_inbox : 16;
        struct message *p = realloc(d->inbox, cap * sizeof(*p));
        if (!p)
            return -1;
        d->inbox = p;
        d->cap_inbox = cap;
    }
    struct message *m = &d->inbox[d->n_inbox];
    *m = (struct message){.seq = d->n_inbox + 1, .from_device = it->from_device, .len = len};
    if (!(m->message_id = strdup(it->message_id)) || !(m->from = strdup(it->from_user)) ||
        !(m->text = malloc(len ? len : 1)) ||
        map_put_str(&d->inbox_ids, m->message_id, (void *)(uintptr_t)(d->n_inbox + 1))) {
        free(m->message_id);
        free(m->from);
        free(m->text);
        return -1;
    }
    memcpy(m->text, text, len);
    d->n_inbox++;
    return 0;
}

/* Decides one envelope: true to acknowledge it (stored, a duplicate, or
 * failed too often), false to leave it for the next fetch. answered: the
 * directory answered this fetch's lookup of the sender (see fetch_op). */
static bool receive_one(struct app *app, struct device *d, struct user *u, const struct item *it,
                        bool answered)
{
    char name[PEER_NAME_MAX + 1], detail[CONV_DETAIL_LEN];
    const char *why = NULL;
    struct known *k;
    const struct devlist_device *x;
    if (map_get_str(&d->inbox_ids, it->message_id))
        return true; /* a duplicate: stored already */
    if (d->n_inbox >= DEVICE_INBOX_MAX) {
        node_log("e2ee-node: the inbox of \"%s\" is full: mail stays at the relay", d->user);
        return false;
    }
    k = valid_remote_name(it->from_user) ? map_get_str(&d->known, it->from_user) : NULL;
    x = known_device(k, it->from_device);
    size_t b64 = strlen(it->ciphertext), n = 0;
    uint8_t *bytes = NULL, *pt = NULL;
    struct session *used;
    if (!x && !answered) {
        return false; /* the directory did not say: ask again at the next fetch */
    } else if (!x) {
        why = "its sender is not a device of a verified list";
    } else if (!(bytes = malloc(base64_decoded_max(b64) + 1)) ||
               !(pt = malloc(base64_decoded_max(b64) + 1))) {
        free(bytes);
        return false; /* out of memory: try again later */
    } else if (base64_decode(bytes, &n, it->ciphertext, b64)) {
        why = "its ciphertext is not base64";
    } else if (peer_name(name, it->from_user, it->from_device) || !pin_device(app, u,
                                                                              it->from_user, x)) {
        free(bytes);
        free(pt);
        return false;
    } else {
        size_t len = 0;
        const uint8_t *text;
        size_t text_len;
        enum conv_result res = conv_decrypt(&app->store, u, name, bytes, n, CONV_KIND_GUESS,
                                            NULL, pt, &len, &used, detail);
        if (res == CONV_NO_MEMORY || res == CONV_CRYPTO) {
            free(bytes);
            free(pt);
            return false;
        }
        if (res != CONV_OK) {
            why = res == CONV_REJECTED ? detail : "its sender's identity is not the pinned one";
        } else if ((why = inner_check(pt, len, it, d, &text, &text_len)) != NULL) {
            /* It decrypted, so its keys are spent: it can never be read. */
            node_log("e2ee-node: device %u of \"%s\": envelope %llu from %s refused: %s",
                     d->device_id, d->user, (unsigned long long)it->id, name, why);
            wipe_bytes(pt, len);
            free(bytes);
            free(pt);
            return true;
        } else {
            int rc = inbox_add(d, it, text, text_len);
            if (!rc)
                put_message(app, d, &d->inbox[d->n_inbox - 1]);
            wipe_bytes(pt, len);
            free(bytes);
            free(pt);
            if (rc) {
                /* Decrypted, not stored: with a state, its ratchet step
                 * must not stay either. The commit fails and the device
                 * goes back to the last one; the envelope, unacknowledged,
                 * comes again. Without one, the step stays and the
                 * envelope fails from now on. */
                struct state *st = app_state(app);
                node_log("e2ee-node: out of memory storing a message of \"%s\"%s", d->user,
                         st ? "; going back to the last commit" : "");
                if (st)
                    state_fail(st);
            }
            return !rc;
        }
    }
    free(bytes);
    if (pt)
        wipe_bytes(pt, base64_decoded_max(b64) + 1);
    free(pt);
    if (failed_enough(d, it->id)) {
        node_log("e2ee-node: device %u of \"%s\": envelope %llu from %s/%u failed %d times, "
                 "dropped: %s", d->device_id, d->user, (unsigned long long)it->id,
                 valid_remote_name(it->from_user) ? it->from_user : "?", it->from_device,
                 DEVICE_FAILURES_MAX, why);
        return true;
    }
    return false;
}

static void fetch_process(struct app *app, struct fetch_op *f)
{
    struct device *d = device_find(app, f->user);
    struct user *u = store_find_user(&app->store, f->user);
    uint64_t *ids = NULL;
    size_t n_ids = 0;
    uint8_t sig[CURVE_SIG_LEN];
    if (!d || !u || d->status != DEV_ACTIVE) {
        fetch_free(f);
        if (d)
            d->fetching = false;
        return;
    }
    if (f->n && !(ids = calloc(f->n, sizeof(*ids)))) {
        fetch_free(f);
        return fetch_end(app, d, false);
    }
    for (size_t i = 0; i < f->n; i++)
        if (receive_one(app, d, u, &f->items[i], sender_answered(f, f->items[i].from_user))) {
            ids[n_ids++] = f->items[i].id;
            failures_forget(d, f->items[i].id);
        }
    if (!n_ids || app->devs->closing) {
        /* A page of which nothing could be taken (a full inbox, envelopes
         * that fail) comes back whole at the next fetch: that waits for the
         * poll (DEVICE_POLL_MS), not for a notification that arrived
         * meanwhile, which would fetch it again at once, and again. */
        if (f->n)
            d->fetch_again = false;
        free(ids);
        fetch_free(f);
        return fetch_end(app, d, false);
    }
    if (sign_next(app, d, u, "relay_ack", ids, n_ids, NULL, sig)) {
        free(ids);
        fetch_free(f);
        node_log("e2ee-node: signing failed (OpenSSL)");
        return fetch_end(app, d, false);
    }
    struct reply *m = node_message(app->node, "relay_ack");
    reply_cstring(m, "user", d->user);
    reply_int(m, "device_id", d->device_id);
    reply_begin_array(m, "ids");
    for (size_t i = 0; i < n_ids; i++)
        reply_int(m, NULL, (long long)ids[i]);
    reply_end_array(m);
    reply_int(m, "counter", (long long)d->counter);
    reply_base64(m, "signature", sig, CURVE_SIG_LEN);
    free(ids);
    if (!node_call(app->node, app->relay_id, DEVICE_CALL_MS, ack_done, f)) {
        fetch_free(f);
        fetch_end(app, d, false);
    }
}

struct lookup_ref {
    struct fetch_op *f;
    char *of;
    uint32_t asked; /* the pin when the list was asked for (chain_take) */
};

static void fetch_lookup_done(struct app *app, struct node *n, void *ctx,
                              enum node_call_status st, const cJSON *body)
{
    (void)n;
    struct lookup_ref *ref = ctx;
    struct fetch_op *f = ref->f;
    struct device *d = device_find(app, f->user);
    struct chain c = {0};
    struct known *k;
    chain_read(&c, st, body);
    if (d && !c.status) {
        enum devlist_result v = chain_take(app, d, ref->of, &c, ref->asked, &k);
        if (v != DEVLIST_OK)
            node_log("e2ee-node: device list of \"%s\" does not verify: %s", ref->of,
                     devlist_result_text(v));
    }
    if (c.status >= 0 && f->n_answered < LOOKUPS_MAX)
        f->answered[f->n_answered++] = ref->of; /* f owns it now */
    else
        free(ref->of);
    chain_free(&c);
    free(ref);
    if (--f->outstanding == 0)
        fetch_process(app, f);
}

static void fetch_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                       const cJSON *body)
{
    (void)n;
    char *user = ctx;
    struct device *d = device_find(app, user);
    const cJSON *items = body ? req_field(body, "items") : NULL, *it;
    struct fetch_op *f = NULL;
    struct reply scratch = {0};
    free(user);
    if (!d)
        return;
    if (st != NODE_CALL_REPLY || !is_type(body, "relay_envelopes") || !cJSON_IsArray(items)) {
        bool again = false;
        if (refused(d, body)) {
            again = !d->fetch_refused; /* once: a revoked device is refused every time */
            d->fetch_refused = true;
        }
        return fetch_end(app, d, again);
    }
    d->fetch_refused = false;
    size_t n_items = (size_t)cJSON_GetArraySize(items);
    if (!(f = calloc(1, sizeof(*f))) || !(f->user = strdup(d->user)) ||
        !(f->items = calloc(n_items ? n_items : 1, sizeof(*f->items)))) {
        if (f)
            fetch_free(f);
        d->fetching = false;
        return;
    }
    f->full = n_items >= RELAY_FETCH_MAX; /* a whole page: more may wait */
    cJSON_ArrayForEach(it, items) {
        struct item *x = &f->items[f->n];
        const char *from, *mid, *ct;
        long long id;
        if (!json_exact_int(req_field(it, "id"), &id) || id < 1 ||
            req_string(&scratch, it, "from_user", false, &from, NULL) ||
            field_u32(&scratch, it, "", "from_device", false, &x->from_device) ||
            req_string(&scratch, it, "message_id", false, &mid, NULL) ||
            req_string(&scratch, it, "ciphertext", false, &ct, NULL))
            continue; /* malformed: it cannot be acknowledged by id either */
        x->id = (uint64_t)id;
        if (!(x->from_user = strdup(from)) || !(x->message_id = strdup(mid)) ||
            !(x->ciphertext = strdup(ct))) {
            free(x->from_user);
            free(x->message_id);
            free(x->ciphertext);
            continue;
        }
        f->n++;
    }
    reply_free(&scratch);
    /* Senders this device has not seen in a verified list: ask first. */
    const char *ask[LOOKUPS_MAX];
    size_t n_ask = 0;
    for (size_t i = 0; i < f->n; i++) {
        const struct item *x = &f->items[i];
        bool dup = false;
        if (!valid_remote_name(x->from_user) ||
            known_device(map_get_str(&d->known, x->from_user), x->from_device))
            continue;
        for (size_t j = 0; j < n_ask && !dup; j++)
            dup = !strcmp(ask[j], x->from_user);
        if (!dup && n_ask < LOOKUPS_MAX)
            ask[n_ask++] = x->from_user;
    }
    f->outstanding = n_ask + 1;
    for (size_t i = 0; i < n_ask; i++) {
        struct lookup_ref *ref = malloc(sizeof(*ref));
        if (ref)
            *ref = (struct lookup_ref){f, strdup(ask[i]), pinned_version(d, ask[i])};
        if (!ref || !ref->of || ask_devices(app, ask[i], fetch_lookup_done, ref)) {
            if (ref)
                free(ref->of);
            free(ref);
            f->outstanding--;
        }
    }
    if (--f->outstanding == 0)
        fetch_process(app, f);
}

void fetch_start(struct app *app, struct device *d)
{
    struct user *u = store_find_user(&app->store, d->user);
    uint8_t sig[CURVE_SIG_LEN];
    char *ctx = strdup(d->user);
    if (!u || !ctx || d->fetching || d->status != DEV_ACTIVE) {
        free(ctx);
        return;
    }
    if (sign_next(app, d, u, "relay_fetch", NULL, 0, NULL, sig)) {
        free(ctx);
        node_log("e2ee-node: signing failed (OpenSSL)");
        return;
    }
    d->fetching = true;
    d->fetch_again = false;
    d->last_fetch_ms = node_now_ms();
    struct reply *m = node_message(app->node, "relay_fetch");
    reply_cstring(m, "user", d->user);
    reply_int(m, "device_id", d->device_id);
    reply_int(m, "counter", (long long)d->counter);
    reply_base64(m, "signature", sig, CURVE_SIG_LEN);
    reply_early(m, counter_commit(d)); /* nothing else in it is new */
    if (!node_call(app->node, app->relay_id, DEVICE_CALL_MS, fetch_done, ctx)) {
        free(ctx);
        d->fetching = false;
    }
}

int h_relay_notify(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *user = req_field(req->body, "user");
    struct device *d = cJSON_IsString(user) ? device_find(app, user->valuestring) : NULL;
    struct reply scratch = {0};
    uint32_t id = 0;
    int bad = d ? field_u32(&scratch, req->body, "", "device_id", false, &id) : 0;
    reply_free(&scratch);
    reply_none(r); /* one-way: never answered */
    /* Only a hint to fetch now: from anyone else, or for another device, nothing. */
    if (!d || bad || id != d->device_id || !req->src || strcmp(req->src, app->relay_id))
        return 0;
    if (d->fetching)
        d->fetch_again = true;
    else
        fetch_start(app, d);
    return 0;
}

