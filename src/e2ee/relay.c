/* relay.c - the relay role (see relay.h).
 *
 * Every request that depends on the device lists asks the directory first
 * (dir_get_devices, a call with a deadline) and answers from its callback:
 * deliveries are checked against the lists as they are now, and a fetch or
 * an acknowledgment against the device's key as the directory lists it now,
 * so a device revoked a moment ago can no longer read its mailbox. What a
 * callback needs is copied out of the request, and found again by name
 * (the relay's own data may have been read back after a failed commit).
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/codec.h"
#include "securitor/map.h"
#include "securitor/state.h"
#include "devlist.h"
#include "fields.h"
#include "rows.h"
#include "signed.h"

#define CIPHERTEXT_MAX ((size_t)1 << 20) /* base64 characters in one envelope */

struct envelope {
    uint64_t id;
    char *user; /* the mailbox's */
    uint32_t device_id;
    char *from_user;
    uint32_t from_device;
    char *message_id;
    char *ciphertext; /* base64, as it came */
    size_t ct_len;    /* its length: the mailbox's and a page's bytes */
    char kind[8];
    uint64_t commit;  /* the commit that stores it (node_commit_next); 0: loaded */
};

struct mailbox {
    uint8_t key[DEVLIST_USER_MAX + 5]; /* user \0 device id: the table's key */
    size_t key_len;
    char *user;
    uint32_t device_id;
    struct envelope **items; /* oldest first */
    size_t n, cap;
    size_t bytes;            /* of their ciphertext (RELAY_MAILBOX_BYTES) */
    uint64_t counter; /* the last signed request accepted (or the floor, see relay_loaded) */
    /* What a restart could find of counter: durable is a value in the
     * state; put_counter went into commit put_commit, not durable yet (0:
     * none pending). See counter_durable. */
    uint64_t durable, put_counter, put_commit;
    bool row_durable; /* its relay_box row is in the state (loaded, or its put is durable) */
    char *node;       /* where it last fetched from: notifications go there */
    bool notified;    /* told of mail since its last fetch: once is enough */
    bool dirty;       /* counter or node changed since its row was written */
    bool listed;      /* in the relay's dirty list, at dirty_at */
    size_t dirty_at;
    struct mailbox *next_of_user; /* the user's next (struct user_boxes) */
};

/* A user's mailboxes, linked, so that what concerns one user (a delivery
 * dropping revoked devices' boxes) never walks every mailbox the relay
 * holds. */
struct user_boxes {
    char *user;
    struct mailbox *first;
};

struct relay {
    struct map boxes;     /* key -> struct mailbox */
    struct map by_user;   /* user -> struct user_boxes: the same boxes, by user */
    char *seen[RELAY_SEEN_MAX]; /* message_ids delivered: a ring */
    uint64_t n_seen;            /* ever remembered: the next goes to n_seen % MAX */
    struct map seen_index; /* message_id -> 1 + slot */
    struct map inflight;   /* message_id -> struct delivery being checked */
    uint64_t next_id;
    /* Envelope ids below it may have been handed out: its row (relay_ids) is
     * written in the commit of the first envelope at or above the old
     * value, so ids never repeat across restarts, even once every mailbox
     * is empty (a device counts an envelope's failures by its id). */
    uint64_t ids_reserved;
    /* Written by the tick, not before the answer (see relay_flush). */
    uint64_t *gone;        /* acknowledged envelopes whose rows remain */
    size_t n_gone, cap_gone;
    /* Boxes marked dirty since the last tick, so that the tick writes them
     * without walking every mailbox; a forgotten box leaves a NULL. */
    struct mailbox **dirty;
    size_t n_dirty, cap_dirty;
    uint64_t tick;
    bool closing;
    struct map lists;      /* user -> struct cached: the directory's answers, leased */
};

/* Bumped each time the relay's memory is made afresh (relay_new: at start,
 * and after a failed commit's rollback, which forgets every generation), so
 * that a generation from before can never equal one from after. */
static uint64_t relay_epoch;

/* A device list as the directory gave it, trusted until RELAY_LEASE_MS after
 * it was asked for. The directory tells the relay of every change
 * (dir_list_changed) and answers the change only once the relay has dropped
 * its copy, or once the lease of any copy taken before the change has run
 * out; so a copy the relay uses is never older than a change the directory
 * has answered. */
struct cached {
    char *user;
    struct devlist list;
    uint64_t asked_ms;
    uint64_t gen; /* the user's generation when it was asked for */
    uint32_t newest; /* the highest version any answer about the user carried */
};

/* ============================================================================
 * Rows: relay_env id; relay_box user\0device id; relay_seen message_id.
 * ========================================================================== */

static void id_key(uint8_t k[static 8], uint64_t id)
{
    for (int i = 0; i < 8; i++)
        k[i] = (uint8_t)(id >> (56 - 8 * i));
}

static void fail_row(void) { node_log("e2ee-node: cannot record a relay row: the commit will fail"); }

static void put_envelope(struct app *app, const struct envelope *e)
{
    struct state *st = app_state(app);
    struct buf b = {0};
    uint8_t k[8];
    if (!st)
        return;
    row_u8(&b, ROW_VERSION);
    row_str(&b, e->user, strlen(e->user));
    row_u32(&b, e->device_id);
    row_str(&b, e->from_user, strlen(e->from_user));
    row_u32(&b, e->from_device);
    row_str(&b, e->message_id, strlen(e->message_id));
    row_str(&b, e->kind, strlen(e->kind));
    row_bytes(&b, e->ciphertext, e->ct_len);
    id_key(k, e->id);
    if (state_put_buf(st, "relay_env", k, 8, &b))
        fail_row();
    buf_free(&b);
}

static void del_envelope(struct app *app, uint64_t id)
{
    struct state *st = app_state(app);
    uint8_t k[8];
    id_key(k, id);
    if (st && state_del(st, "relay_env", k, 8))
        fail_row();
}

static void put_box(struct app *app, struct mailbox *m)
{
    struct state *st = app_state(app);
    struct buf b = {0};
    if (!st)
        return;
    m->put_counter = m->counter;
    m->put_commit = node_commit_next(app->node);
    row_u8(&b, ROW_VERSION);
    row_u64(&b, m->counter);
    row_str(&b, m->node ? m->node : "", m->node ? strlen(m->node) : 0);
    if (state_put_buf(st, "relay_box", m->key, m->key_len, &b))
        fail_row();
    buf_free(&b);
}

#define RELAY_ID_BLOCK ((uint64_t)1 << 16) /* envelope ids reserved per relay_ids row */

/* Makes ids next_id .. next_id + n - 1 durable-safe to hand out (see
 * ids_reserved), reserving a block ahead in the commit they go out in. */
static void reserve_ids(struct app *app, size_t n)
{
    struct relay *rl = app->relay;
    struct state *st = app_state(app);
    struct buf b = {0};
    if (rl->next_id + n <= rl->ids_reserved)
        return;
    rl->ids_reserved = rl->next_id + n + RELAY_ID_BLOCK;
    if (!st)
        return;
    row_u8(&b, ROW_VERSION);
    row_u64(&b, rl->ids_reserved);
    if (state_put_buf(st, "relay_ids", "next", 4, &b))
        fail_row();
    buf_free(&b);
}

/* The row holds the sequence number, so that a reload knows which is oldest. */
static void put_seen(struct app *app, uint64_t seq)
{
    struct state *st = app_state(app);
    struct buf b = {0};
    const char *id = app->relay->seen[seq % RELAY_SEEN_MAX];
    if (!st)
        return;
    row_u8(&b, ROW_VERSION);
    row_u64(&b, seq);
    if (state_put_buf(st, "relay_seen", id, strlen(id), &b))
        fail_row();
    buf_free(&b);
}

/* ============================================================================
 * Mailboxes
 * ========================================================================== */

static void envelope_free(struct envelope *e)
{
    if (!e)
        return;
    free(e->user);
    free(e->from_user);
    free(e->message_id);
    free(e->ciphertext);
    free(e);
}

static void box_free(struct mailbox *m)
{
    for (size_t i = 0; i < m->n; i++)
        envelope_free(m->items[i]);
    free(m->items);
    free(m->user);
    free(m->node);
    free(m);
}

/* Queues an acknowledged envelope's row for the tick. 0 or -1. */
static int gone_add(struct relay *rl, uint64_t id)
{
    if (rl->n_gone == rl->cap_gone) {
        size_t cap = rl->cap_gone ? 2 * rl->cap_gone : 256;
        uint64_t *p = realloc(rl->gone, cap * sizeof(*p));
        if (!p)
            return -1;
        rl->gone = p;
        rl->cap_gone = cap;
    }
    rl->gone[rl->n_gone++] = id;
    return 0;
}

/* Writes what fetches and acknowledgments changed: mailbox counters and
 * where notifications go, and the deletion of acknowledged envelopes. They
 * wait for the tick (every RELAY_FLUSH_MS) rather than hold up the answer,
 * so that only deliveries wait for a commit. A crash before loses little:
 * acknowledged envelopes come back and the device drops them as
 * duplicates. A counter falls back to one written before, which is why a
 * restart raises every counter by RELAY_COUNTER_SLACK (relay_loaded) and an
 * answer never leaves with a counter further than that above a durable one
 * (signed_decide): a request replayed after a crash is refused, as before. */
static void relay_flush(struct app *app)
{
    struct relay *rl = app->relay;
    for (size_t i = 0; i < rl->n_gone; i++)
        del_envelope(app, rl->gone[i]);
    rl->n_gone = 0;
    for (size_t i = 0; i < rl->n_dirty; i++) {
        struct mailbox *m = rl->dirty[i];
        if (!m)
            continue; /* forgotten since */
        m->listed = false;
        if (m->dirty) /* it may have been written since (signed_decide) */
            put_box(app, m);
        m->dirty = false;
    }
    rl->n_dirty = 0;
}

/* Marks m's counter or node as changed, for the tick to write. When the
 * list cannot grow, the row is written now instead. */
static void mark_dirty(struct app *app, struct mailbox *m)
{
    struct relay *rl = app->relay;
    m->dirty = true;
    if (m->listed)
        return;
    if (rl->n_dirty == rl->cap_dirty) {
        size_t cap = rl->cap_dirty ? 2 * rl->cap_dirty : 64;
        struct mailbox **p = realloc(rl->dirty, cap * sizeof(*p));
        if (!p) {
            put_box(app, m);
            m->dirty = false;
            return;
        }
        rl->dirty = p;
        rl->cap_dirty = cap;
    }
    m->listed = true;
    m->dirty_at = rl->n_dirty;
    rl->dirty[rl->n_dirty++] = m;
}

static void relay_tick(struct app *app, struct node *n, void *ctx)
{
    (void)n;
    (void)ctx;
    if (app->relay)
        relay_flush(app);
}

int relay_start(struct app *app)
{
    if (relay_new(app))
        return -1;
    if (!app->relay->tick)
        app->relay->tick = node_timer(app->node, RELAY_FLUSH_MS, RELAY_FLUSH_MS, relay_tick,
                                      NULL, NULL);
    return app->relay->tick ? 0 : -1;
}

void relay_close(struct app *app)
{
    if (app->relay)
        relay_flush(app); /* a clean exit keeps everything */
}

static void user_boxes_free(struct user_boxes *ub)
{
    if (ub)
        free(ub->user);
    free(ub);
}

/* Takes a user's entry, its last box gone, out of the index and frees it. */
static void user_boxes_drop(struct relay *rl, struct user_boxes *ub)
{
    map_remove_str(&rl->by_user, ub->user);
    user_boxes_free(ub);
}

static struct mailbox *box_find(struct relay *rl, const char *user, uint32_t id)
{
    uint8_t k[DEVLIST_USER_MAX + 5];
    return map_get(&rl->boxes, k, row_key_user_id(k, user, id));
}

static struct mailbox *box_get(struct relay *rl, const char *user, uint32_t id)
{
    struct mailbox *m = box_find(rl, user, id);
    if (m)
        return m;
    if (!(m = calloc(1, sizeof(*m))) || !(m->user = strdup(user))) {
        free(m);
        return NULL;
    }
    m->device_id = id;
    m->key_len = row_key_user_id(m->key, user, id);
    struct user_boxes *ub = map_get_str(&rl->by_user, user);
    if (!ub) {
        if (!(ub = calloc(1, sizeof(*ub))) || !(ub->user = strdup(user)) ||
            map_put_str(&rl->by_user, ub->user, ub)) {
            user_boxes_free(ub);
            box_free(m);
            return NULL;
        }
    }
    if (map_put(&rl->boxes, m->key, m->key_len, m)) {
        if (!ub->first) /* made just now, for this box */
            user_boxes_drop(rl, ub);
        box_free(m);
        return NULL;
    }
    m->next_of_user = ub->first;
    ub->first = m;
    return m;
}

/* Room for at least `room` envelopes in m. */
static int box_reserve(struct mailbox *m, size_t room)
{
    if (room <= m->cap)
        return 0;
    size_t cap = m->cap ? 2 * m->cap : 16;
    if (cap < room)
        cap = room;
    struct envelope **p = realloc(m->items, cap * sizeof(*p));
    if (!p)
        return -1;
    m->items = p;
    m->cap = cap;
    return 0;
}

static int box_append(struct mailbox *m, struct envelope *e)
{
    if (box_reserve(m, m->n + 1))
        return -1;
    m->items[m->n++] = e;
    return 0;
}

/* Forgets a revoked device's mailbox, in memory and in the state. */
static void box_forget(struct app *app, struct mailbox *m)
{
    struct state *st = app_state(app);
    node_log("e2ee-node: device %u of \"%s\" is no longer listed: its mailbox goes (%zu "
             "envelopes)", m->device_id, m->user, m->n);
    for (size_t i = 0; i < m->n; i++)
        del_envelope(app, m->items[i]->id);
    if (st && state_del(st, "relay_box", m->key, m->key_len))
        fail_row();
    struct relay *rl = app->relay;
    if (m->listed)
        rl->dirty[m->dirty_at] = NULL;
    struct user_boxes *ub = map_get_str(&rl->by_user, m->user);
    for (struct mailbox **p = ub ? &ub->first : NULL; p && *p; p = &(*p)->next_of_user)
        if (*p == m) {
            *p = m->next_of_user;
            break;
        }
    if (ub && !ub->first)
        user_boxes_drop(rl, ub);
    map_remove(&rl->boxes, m->key, m->key_len);
    box_free(m);
}

int relay_new(struct app *app)
{
    if (!app->relay && !(app->relay = calloc(1, sizeof(*app->relay))))
        return -1;
    relay_epoch++;
    app->relay->next_id = app->relay->next_id ? app->relay->next_id : 1;
    return 0;
}

void relay_free(struct app *app)
{
    struct relay *rl = app->relay;
    if (!rl)
        return;
    size_t pos = 0;
    struct mailbox *m;
    while ((m = map_next(&rl->boxes, &pos)) != NULL)
        box_free(m);
    map_free(&rl->boxes);
    pos = 0;
    struct user_boxes *ub;
    while ((ub = map_next(&rl->by_user, &pos)) != NULL)
        user_boxes_free(ub);
    map_free(&rl->by_user);
    for (size_t i = 0; i < RELAY_SEEN_MAX; i++)
        free(rl->seen[i]);
    map_free(&rl->seen_index);
    map_free(&rl->inflight); /* deliveries own themselves; see finish_delivery */
    free(rl->gone);
    free(rl->dirty);
    pos = 0;
    struct cached *cl;
    while ((cl = map_next(&rl->lists, &pos)) != NULL) {
        free(cl->user);
        free(cl);
    }
    map_free(&rl->lists);
    free(rl);
    app->relay = NULL;
}

static bool seen(struct relay *rl, const char *message_id)
{
    return map_get_str(&rl->seen_index, message_id) != NULL;
}

static void remember(struct app *app, const char *message_id)
{
    struct relay *rl = app->relay;
    uint64_t seq = rl->n_seen;
    size_t slot = (size_t)(seq % RELAY_SEEN_MAX);
    char *copy = strdup(message_id);
    if (!copy)
        return; /* best effort: the mailbox rows still hold it */
    if (rl->seen[slot]) { /* the oldest goes */
        struct state *st = app_state(app);
        map_remove_str(&rl->seen_index, rl->seen[slot]);
        if (st && state_del(st, "relay_seen", rl->seen[slot], strlen(rl->seen[slot])))
            fail_row();
        free(rl->seen[slot]);
    }
    rl->seen[slot] = copy;
    if (map_put_str(&rl->seen_index, copy, (void *)(uintptr_t)(slot + 1)))
        node_log("e2ee-node: out of memory remembering a delivery");
    rl->n_seen = seq + 1;
    put_seen(app, seq);
}

/* ============================================================================
 * The directory's answer
 * ========================================================================== */

/* The newest list in a dir_devices reply, or an error: 1 unknown user (error
 * 20), -1 no answer or a malformed one. */
static int newest_list(const cJSON *body, struct devlist *out)
{
    const cJSON *type = body ? req_field(body, "type") : NULL;
    if (!cJSON_IsString(type))
        return -1;
    if (!strcmp(type->valuestring, "error")) {
        const cJSON *code = req_field(body, "code");
        return cJSON_IsNumber(code) && code->valuedouble == ERR_KEY_DOES_NOT_EXIST ? 1 : -1;
    }
    const cJSON *lists = req_field(body, "lists");
    int n = cJSON_IsArray(lists) ? cJSON_GetArraySize(lists) : 0;
    struct reply scratch = {0};
    int rc = n ? field_devlist(&scratch, cJSON_GetArrayItem(lists, n - 1), "list", out) : -1;
    reply_free(&scratch);
    return rc ? -1 : 0;
}

static int ask_directory(struct app *app, const char *user, node_call_fn fn, void *ctx)
{
    struct reply *m = node_message(app->node, "dir_get_devices");
    reply_cstring(m, "user", user);
    return node_call(app->node, app->directory_id, RELAY_CALL_MS, fn, ctx) ? 0 : -1;
}

/* The user's cache entry, made empty (gen 0, asked never) when absent. */
static struct cached *cache_slot(struct relay *rl, const char *user)
{
    struct cached *cl = map_get_str(&rl->lists, user);
    if (cl)
        return cl;
    if (!(cl = calloc(1, sizeof(*cl))) || !(cl->user = strdup(user)) ||
        map_put_str(&rl->lists, cl->user, cl)) {
        if (cl)
            free(cl->user);
        free(cl);
        return NULL;
    }
    return cl;
}

/* The cached list of user while its lease runs, else NULL. */
static const struct devlist *cache_get(struct relay *rl, const char *user)
{
    const struct cached *cl = map_get_str(&rl->lists, user);
    if (!cl || !cl->asked_ms || node_now_ms() >= cl->asked_ms + RELAY_LEASE_MS)
        return NULL;
    return &cl->list;
}

/* The generation of user now: a lookup remembers it, and its answer is kept
 * only when no change was announced meanwhile. */
static uint64_t cache_gen(struct relay *rl, const char *user)
{
    const struct cached *cl = map_get_str(&rl->lists, user);
    return relay_epoch << 32 | (cl ? cl->gen & 0xFFFFFFFFu : 0);
}

/* Whether a list of user taken at generation gen is still the newest the
 * relay can know of: no change was announced since (dir_list_changed). Only
 * such a list may make a mailbox go; an older one may lack a device
 * approved meanwhile. */
static bool list_current(struct relay *rl, const char *user, uint64_t gen)
{
    return cache_gen(rl, user) == gen;
}

/* Notes the version of an answer about user, as it arrives. */
static void note_version(struct relay *rl, const char *user, const struct devlist *l)
{
    struct cached *cl = cache_slot(rl, user);
    if (cl && l->version > cl->newest)
        cl->newest = l->version;
}

/* Whether a mailbox of user may go for being absent from l (PROTOCOL.md
 * §5.2: a revoked device's): l is current (list_current) and no newer
 * version came in another answer meanwhile. The announcement of a change
 * (dir_list_changed) can be lost or come late; the newer answer then
 * stands for it, so a slow answer that predates an approval never drops
 * the new device's mail. */
static bool may_forget(struct relay *rl, const char *user, uint64_t gen,
                       const struct devlist *l)
{
    const struct cached *cl = map_get_str(&rl->lists, user);
    return list_current(rl, user, gen) && (!cl || l->version >= cl->newest);
}

static void cache_put(struct relay *rl, const char *user, const struct devlist *l,
                      uint64_t asked_ms, uint64_t gen)
{
    struct cached *cl = cache_slot(rl, user);
    if (!cl || !list_current(rl, user, gen) || asked_ms < cl->asked_ms)
        return; /* a change came since it was asked for, or a newer answer is here */
    cl->list = *l;
    cl->asked_ms = asked_ms;
}

/* Revoked devices' mailboxes go (PROTOCOL.md §5.1), on a list of user taken
 * at generation gen, if no change was announced after: an answer that was
 * slow to come may predate an approval whose device already has mail
 * (may_forget). */
static void forget_revoked(struct app *app, const char *user, uint64_t gen,
                           const struct devlist *l)
{
    struct relay *rl = app->relay;
    if (!may_forget(rl, user, gen, l))
        return;
    const struct user_boxes *ub = map_get_str(&rl->by_user, user);
    struct mailbox *drop[64]; /* an account's device ids run to 64 (DIR_DEVICES_MAX) */
    size_t n_drop = 0;
    for (struct mailbox *m = ub ? ub->first : NULL; m && n_drop < sizeof(drop) / sizeof(*drop);
         m = m->next_of_user)
        if (!devlist_find(l, m->device_id))
            drop[n_drop++] = m;
    for (size_t i = 0; i < n_drop; i++)
        box_forget(app, drop[i]);
}

struct changed_call {
    uint64_t asked_ms, gen;
    char user[DEVLIST_USER_MAX + 1];
};

static void list_changed_done(struct app *app, struct node *n, void *ctx,
                              enum node_call_status st, const cJSON *body)
{
    (void)n;
    struct changed_call *c = ctx;
    struct devlist list;
    if (st == NODE_CALL_REPLY && newest_list(body, &list) == 0) {
        note_version(app->relay, c->user, &list);
        cache_put(app->relay, c->user, &list, c->asked_ms, c->gen);
        forget_revoked(app, c->user, c->gen, &list);
    }
    free(c);
}

/* The directory says user's list changed: the cached one is dropped, and
 * when user has mailboxes the new list is asked for, so that a revoked
 * device's mailbox goes now, not at the next delivery that names user. */
int h_dir_list_changed(struct app *app, const struct request *req, struct reply *r)
{
    const char *user;
    size_t len;
    int rc = req_string(r, req->body, "user", false, &user, &len);
    if (rc)
        return rc;
    if (!req->src || strcmp(req->src, app->directory_id))
        return node_error(r, ERR_PRECONDITION, "dir_list_changed: only the directory says so");
    struct cached *cl = len && len <= DEVLIST_USER_MAX ? cache_slot(app->relay, user) : NULL;
    if (!cl)
        return node_error(r, ERR_MALFORMED, "user: expected a name of 1 to %d bytes",
                          DEVLIST_USER_MAX);
    cl->gen++;
    cl->asked_ms = 0; /* dropped */
    struct changed_call *c = map_get_str(&app->relay->by_user, user) ? calloc(1, sizeof(*c))
                                                                     : NULL;
    if (c) {
        memcpy(c->user, user, len + 1);
        c->asked_ms = node_now_ms();
        c->gen = cache_gen(app->relay, user);
        if (ask_directory(app, user, list_changed_done, c))
            free(c); /* the next delivery or fetch of user's devices does it */
    }
    reply_type(r, "relay_list_noted");
    reply_cstring(r, "user", user);
    return 0;
}

/* ============================================================================
 * relay_deliver
 * ========================================================================== */

struct out_env {
    char *user;
    uint32_t device_id, registration_id;
    char *ciphertext;
    size_t ct_len; /* as parsed: the mailbox's bytes, then the envelope's */
    char kind[8];
};

struct lookup {
    char *user;
    int status; /* 0 known, 1 unknown, -1 no answer */
    struct devlist list;
    uint64_t asked_ms, gen; /* for the cache */
};

struct delivery {
    char *from_user, *message_id;
    uint32_t from_device;
    struct out_env *envs;
    size_t n_envs;
    struct lookup *users;
    size_t n_users, outstanding;
    struct node_deferred **waiting; /* the request, and any duplicates meanwhile */
    size_t n_waiting;
};

struct lookup_ctx {
    struct delivery *d;
    size_t index;
};

static void delivery_free(struct delivery *d)
{
    for (size_t i = 0; i < d->n_envs; i++) {
        free(d->envs[i].user);
        free(d->envs[i].ciphertext);
    }
    for (size_t i = 0; i < d->n_users; i++)
        free(d->users[i].user);
    for (size_t i = 0; i < d->n_waiting; i++)
        node_deferred_drop(d->waiting[i]);
    free(d->envs);
    free(d->users);
    free(d->waiting);
    free(d->from_user);
    free(d->message_id);
    free(d);
}

/* Answers every request waiting for d with the message node_message built
 * last (rebuilt for each, as node_answer consumes it). */
typedef void (*answer_fn)(struct app *app, struct delivery *d);

static void answer_all(struct app *app, struct delivery *d, answer_fn build)
{
    for (size_t i = 0; i < d->n_waiting; i++) {
        build(app, d);
        node_answer(app->node, d->waiting[i]);
        d->waiting[i] = NULL;
    }
    d->n_waiting = 0;
}

static void build_delivered(struct app *app, struct delivery *d)
{
    struct reply *m = node_message(app->node, "relay_delivered");
    reply_cstring(m, "message_id", d->message_id);
}

static const struct lookup *lookup_of(const struct delivery *d, const char *user)
{
    for (size_t i = 0; i < d->n_users; i++)
        if (!strcmp(d->users[i].user, user))
            return &d->users[i];
    return NULL;
}

/* The mismatch between the envelopes and the lists, as error 22's arrays;
 * true when there is one. */
static bool mismatch(struct app *app, struct delivery *d, struct reply *m)
{
    bool any = false;
    const char *names[3] = {"missing", "extra", "stale"};
    for (int pass = 0; pass < 3; pass++) {
        if (m)
            reply_begin_array(m, names[pass]);
        for (size_t u = 0; u < d->n_users; u++) {
            const struct lookup *l = &d->users[u];
            if (pass == 0 && l->status == 0) /* listed, no envelope */
                for (size_t k = 0; k < l->list.n; k++) {
                    const struct devlist_device *x = &l->list.devices[k];
                    bool sender = !strcmp(l->user, d->from_user) && x->device_id == d->from_device;
                    bool have = false;
                    for (size_t e = 0; e < d->n_envs && !have; e++)
                        have = !strcmp(d->envs[e].user, l->user) &&
                               d->envs[e].device_id == x->device_id;
                    if (!sender && !have) {
                        any = true;
                        if (m) {
                            reply_begin_object(m, NULL);
                            reply_cstring(m, "user", l->user);
                            reply_int(m, "device_id", x->device_id);
                            reply_end_object(m);
                        }
                    }
                }
        }
        for (size_t e = 0; pass && e < d->n_envs; e++) {
            const struct out_env *v = &d->envs[e];
            const struct lookup *l = lookup_of(d, v->user);
            const struct devlist_device *x = l && l->status == 0 ? devlist_find(&l->list,
                                                                               v->device_id)
                                                                 : NULL;
            bool sender = !strcmp(v->user, d->from_user) && v->device_id == d->from_device;
            bool hit = pass == 1 ? (!x || sender) : (x && !sender &&
                                                     x->registration_id != v->registration_id);
            if (hit) {
                any = true;
                if (m) {
                    reply_begin_object(m, NULL);
                    reply_cstring(m, "user", v->user);
                    reply_int(m, "device_id", v->device_id);
                    reply_end_object(m);
                }
            }
        }
        if (m)
            reply_end_array(m);
    }
    (void)app;
    return any;
}

/* Answers every request waiting for d with error `code` (nothing was
 * stored) and frees d. */
static void fail_delivery(struct app *app, struct delivery *d, int code, const char *text)
{
    for (size_t k = 0; k < d->n_waiting; k++) {
        node_answer_error(app->node, d->waiting[k], code, "%s", text);
        d->waiting[k] = NULL;
    }
    d->n_waiting = 0;
    delivery_free(d);
}

/* The envelopes of d into made[], each with room in its mailbox (boxes[]),
 * made before any is stored so that a delivery is stored whole or not at
 * all. 0, or -1 when memory ran out: then nothing was stored (a mailbox made
 * on the way stays, empty). */
static int make_envelopes(struct relay *rl, const struct delivery *d,
                          struct envelope *made[static RELAY_DELIVER_MAX],
                          struct mailbox *boxes[static RELAY_DELIVER_MAX])
{
    bool ok = true;
    size_t e = 0;
    for (; ok && e < d->n_envs; e++) {
        const struct out_env *v = &d->envs[e];
        struct mailbox *m = boxes[e] = box_get(rl, v->user, v->device_id);
        struct envelope *x = made[e] = calloc(1, sizeof(*x));
        /* One envelope per device (h_relay_deliver refuses two): one slot. */
        ok = m && x && (x->user = strdup(v->user)) && (x->from_user = strdup(d->from_user)) &&
             (x->message_id = strdup(d->message_id)) && box_reserve(m, m->n + 1) == 0;
    }
    if (ok)
        return 0;
    while (e--)
        envelope_free(made[e]);
    return -1;
}

static void finish_delivery(struct app *app, struct delivery *d)
{
    struct relay *rl = app->relay;
    map_remove_str(&rl->inflight, d->message_id);
    const struct lookup *sender = lookup_of(d, d->from_user);
    for (size_t i = 0; i < d->n_users; i++) {
        if (d->users[i].status < 0) /* the directory did not answer: indefinite */
            return fail_delivery(app, d, ERR_TIMEOUT,
                                 "the directory did not answer in time; send again");
    }
    const char *refusal = NULL;
    const struct mailbox *full = NULL;
    if (!sender || sender->status != 0 || !devlist_find(&sender->list, d->from_device))
        refusal = "the sending device is not an active device of from_user";
    for (size_t e = 0; !refusal && e < d->n_envs; e++) {
        struct mailbox *m = box_find(rl, d->envs[e].user, d->envs[e].device_id);
        const struct lookup *l = lookup_of(d, d->envs[e].user);
        /* Only a listed device's: a revoked one's (nobody fetches it, so it
         * fills) is an extra device, which the list check below names. */
        if (m && l && l->status == 0 && devlist_find(&l->list, d->envs[e].device_id) &&
            (m->n >= RELAY_MAILBOX_MAX ||
                  m->bytes + d->envs[e].ct_len > RELAY_MAILBOX_BYTES)) {
            refusal = "a recipient's mailbox is full";
            full = m;
        }
    }
    if (refusal || mismatch(app, d, NULL)) {
        for (size_t k = 0; k < d->n_waiting; k++) {
            struct reply *m = node_message(app->node, "error");
            reply_int(m, "code", ERR_PRECONDITION);
            reply_cstring(m, "text", refusal ? refusal
                                             : "the envelopes do not match the current device "
                                               "lists: fetch them again");
            if (!refusal)
                mismatch(app, d, m);
            if (full) { /* not the lists: the sender need not read them again */
                reply_begin_array(m, "full");
                reply_begin_object(m, NULL);
                reply_cstring(m, "user", full->user);
                reply_int(m, "device_id", full->device_id);
                reply_end_object(m);
                reply_end_array(m);
            }
            node_answer(app->node, d->waiting[k]);
            d->waiting[k] = NULL;
        }
        d->n_waiting = 0;
        delivery_free(d);
        return;
    }
    for (size_t u = 0; u < d->n_users; u++)
        forget_revoked(app, d->users[u].user, d->users[u].gen, &d->users[u].list);
    if (!seen(rl, d->message_id)) { /* all of them, or none */
        struct envelope *made[RELAY_DELIVER_MAX];
        struct mailbox *boxes[RELAY_DELIVER_MAX];
        if (make_envelopes(rl, d, made, boxes)) {
            node_log("e2ee-node: out of memory storing a delivery; nothing stored");
            return fail_delivery(app, d, ERR_CRASH, "out of memory: nothing was stored; send "
                                                    "again");
        }
        reserve_ids(app, d->n_envs);
        for (size_t e = 0; e < d->n_envs; e++) {
            struct out_env *v = &d->envs[e];
            struct envelope *x = made[e];
            struct mailbox *m = boxes[e];
            x->id = rl->next_id++;
            x->commit = node_commit_next(app->node);
            x->device_id = v->device_id;
            x->from_device = d->from_device;
            x->ciphertext = v->ciphertext;
            x->ct_len = v->ct_len;
            v->ciphertext = NULL;
            m->items[m->n++] = x; /* room made by make_envelopes */
            m->bytes += x->ct_len;
            memcpy(x->kind, v->kind, sizeof(x->kind));
            put_envelope(app, x);
        }
        remember(app, d->message_id);
        /* Tell each device's node (once per node). */
        for (size_t e = 0; e < d->n_envs; e++) {
            struct mailbox *m = box_find(rl, d->envs[e].user, d->envs[e].device_id);
            if (!m || !m->node || m->notified)
                continue;
            m->notified = true;
            struct reply *msg = node_message(app->node, "relay_notify");
            reply_cstring(msg, "user", m->user);
            reply_int(msg, "device_id", m->device_id);
            node_send(app->node, m->node);
        }
    }
    answer_all(app, d, build_delivered);
    delivery_free(d);
}

static void delivery_lookup_done(struct app *app, struct node *n, void *ctx,
                                 enum node_call_status st, const cJSON *body)
{
    (void)n;
    struct lookup_ctx *c = ctx;
    struct delivery *d = c->d;
    struct lookup *l = &d->users[c->index];
    free(c);
    l->status = st == NODE_CALL_REPLY ? newest_list(body, &l->list) : -1;
    if (l->status == 0) {
        note_version(app->relay, l->user, &l->list);
        cache_put(app->relay, l->user, &l->list, l->asked_ms, l->gen);
    }
    if (--d->outstanding == 0)
        finish_delivery(app, d);
}

static int add_user(struct delivery *d, const char *user)
{
    if (lookup_of(d, user))
        return 0;
    struct lookup *l = &d->users[d->n_users];
    if (!(l->user = strdup(user)))
        return -1;
    d->n_users++;
    return 0;
}

int h_relay_deliver(struct app *app, const struct request *req, struct reply *r)
{
    struct relay *rl = app->relay;
    const cJSON *body = req->body, *envs = req_field(body, "envelopes"), *it;
    const char *from_user, *message_id;
    uint32_t from_device;
    size_t len;
    int rc;
    if ((rc = req_string(r, body, "from_user", false, &from_user, &len)))
        return rc;
    if (!len || len > DEVLIST_USER_MAX)
        return node_error(r, ERR_MALFORMED, "from_user: expected a name of 1 to %d bytes",
                          DEVLIST_USER_MAX);
    if ((rc = field_u32(r, body, "", "from_device", false, &from_device)) ||
        (rc = req_string(r, body, "message_id", false, &message_id, &len)))
        return rc;
    if (!len || len > 128)
        return node_error(r, ERR_MALFORMED, "message_id: expected 1 to 128 bytes");
    if (!cJSON_IsArray(envs) || cJSON_GetArraySize(envs) > RELAY_DELIVER_MAX)
        return node_error(r, ERR_MALFORMED, "envelopes: expected an array of at most %d "
                                            "{user, device_id, registration_id, ciphertext, "
                                            "kind}", RELAY_DELIVER_MAX);
    if (seen(rl, message_id)) { /* delivered already: a no-op */
        reply_type(r, "relay_delivered");
        reply_cstring(r, "message_id", message_id);
        return 0;
    }
    struct delivery *inflight = map_get_str(&rl->inflight, message_id);
    if (inflight) { /* the same delivery is being checked: answer both at once */
        struct node_deferred **w = realloc(inflight->waiting,
                                           (inflight->n_waiting + 1) * sizeof(*w));
        if (!w)
            return node_error(r, ERR_CRASH, "out of memory");
        inflight->waiting = w;
        if (!(w[inflight->n_waiting] = node_defer(req, r)))
            return ERR_CRASH;
        inflight->n_waiting++;
        return 0;
    }
    size_t n = (size_t)cJSON_GetArraySize(envs);
    struct delivery *d = calloc(1, sizeof(*d));
    if (!d || !(d->envs = calloc(n ? n : 1, sizeof(*d->envs))) ||
        !(d->users = calloc(n + 1, sizeof(*d->users))) || !(d->from_user = strdup(from_user)) ||
        !(d->message_id = strdup(message_id)) || !(d->waiting = calloc(1, sizeof(*d->waiting)))) {
        if (d)
            delivery_free(d);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    d->from_device = from_device;
    rc = add_user(d, from_user) ? node_error(r, ERR_CRASH, "out of memory") : 0;
    cJSON_ArrayForEach(it, envs) {
        struct out_env *v = &d->envs[d->n_envs];
        const char *user, *ct, *kind;
        size_t ulen, ctlen;
        if (rc || (rc = req_string(r, it, "user", false, &user, &ulen)) ||
            (rc = field_u32(r, it, "envelopes[]", "device_id", false, &v->device_id)) ||
            (rc = field_u32(r, it, "envelopes[]", "registration_id", false,
                            &v->registration_id)) ||
            (rc = req_string(r, it, "ciphertext", false, &ct, &ctlen)) ||
            (rc = req_string(r, it, "kind", false, &kind, NULL)))
            break;
        if (!ulen || ulen > DEVLIST_USER_MAX || !ctlen || ctlen > CIPHERTEXT_MAX ||
            (strcmp(kind, "prekey") && strcmp(kind, "message"))) {
            rc = node_error(r, ERR_MALFORMED, "envelopes[]: expected a user of 1 to %d bytes, "
                                              "base64 ciphertext of at most %zu characters, "
                                              "kind \"prekey\" or \"message\"",
                            DEVLIST_USER_MAX, CIPHERTEXT_MAX);
            break;
        }
        for (size_t e = 0; e < d->n_envs; e++)
            if (!strcmp(d->envs[e].user, user) && d->envs[e].device_id == v->device_id)
                rc = node_error(r, ERR_MALFORMED, "envelopes: two for device %u of \"%s\"",
                                v->device_id, user);
        v->ct_len = ctlen;
        if (rc || !(v->user = strdup(user)) || !(v->ciphertext = strdup(ct)) || add_user(d, user)) {
            rc = rc ? rc : node_error(r, ERR_CRASH, "out of memory");
            free(v->user); /* not counted in n_envs: delivery_free would miss them */
            free(v->ciphertext);
            break;
        }
        snprintf(v->kind, sizeof(v->kind), "%s", kind);
        d->n_envs++;
    }
    if (rc || map_put_str(&rl->inflight, d->message_id, d) ||
        !(d->waiting[0] = node_defer(req, r))) {
        map_remove_str(&rl->inflight, d->message_id);
        delivery_free(d);
        return rc ? rc : node_error(r, ERR_CRASH, "out of memory");
    }
    d->n_waiting = 1;
    /* One lookup per user named that the cache does not hold; the answer
     * comes when all are back (at once when none had to be asked for). */
    d->outstanding = d->n_users + 1;
    for (size_t i = 0; i < d->n_users; i++) {
        const struct devlist *cl = cache_get(rl, d->users[i].user);
        if (cl) {
            d->users[i].status = 0;
            d->users[i].list = *cl;
            d->users[i].gen = cache_gen(rl, d->users[i].user);
            d->outstanding--;
            continue;
        }
        d->users[i].asked_ms = node_now_ms();
        d->users[i].gen = cache_gen(rl, d->users[i].user);
        struct lookup_ctx *c = malloc(sizeof(*c));
        if (c)
            *c = (struct lookup_ctx){d, i};
        if (!c || ask_directory(app, d->users[i].user, delivery_lookup_done, c)) {
            free(c);
            d->users[i].status = -1;
            d->outstanding--; /* the guard keeps it above 0 */
        }
    }
    if (--d->outstanding == 0) /* the loop's guard */
        finish_delivery(app, d);
    return 0;
}

/* ============================================================================
 * relay_fetch, relay_ack
 * ========================================================================== */

struct signed_call {
    struct node_deferred *to;
    bool ack;
    uint64_t asked_ms, gen; /* for the cache */
    char user[DEVLIST_USER_MAX + 1];
    uint32_t device_id;
    uint64_t counter;
    uint8_t sig[CURVE_SIG_LEN];
    uint64_t *ids;
    size_t n_ids;
};

static void signed_call_free(struct signed_call *c)
{
    node_deferred_drop(c->to);
    free(c->ids);
    free(c);
}

static void answer_fetch(struct app *app, struct mailbox *m, struct node_deferred *to,
                         uint64_t after)
{
    /* Only envelopes already durable are handed out, so the answer waits
     * for no commit but the counter's, if any (reply_early). Later ones (a
     * suffix: commits only grow) have their own notification on its way,
     * sent after their commit. */
    bool later = false;
    size_t bytes = 0;
    struct reply *msg = node_message(app->node, "relay_envelopes");
    reply_early(msg, after);
    reply_begin_array(msg, "items");
    for (size_t i = 0; m && i < m->n && i < RELAY_FETCH_MAX; i++) {
        const struct envelope *e = m->items[i];
        if ((later = !node_commit_durable(app->node, e->commit)))
            break;
        /* A page of 256 envelopes of 1 MiB each would pass a device's
         * --max-line and never be read: the device stalled behind it for
         * good. Past RELAY_PAGE_BYTES the rest waits for the next fetch,
         * which the notification below asks for. */
        if (i && bytes >= RELAY_PAGE_BYTES) {
            later = true;
            break;
        }
        bytes += e->ct_len;
        reply_begin_object(msg, NULL);
        reply_int(msg, "id", (long long)e->id);
        reply_cstring(msg, "from_user", e->from_user);
        reply_int(msg, "from_device", e->from_device);
        reply_cstring(msg, "message_id", e->message_id);
        reply_cstring(msg, "ciphertext", e->ciphertext);
        reply_cstring(msg, "kind", e->kind);
        reply_end_object(msg);
    }
    reply_end_array(msg);
    node_answer(app->node, to);
    if (later && m->node) {
        /* Their own notification may have been held back by this fetch's
         * (once is enough until the next fetch): one more, which leaves
         * after their commit. */
        m->notified = true;
        struct reply *note = node_message(app->node, "relay_notify");
        reply_cstring(note, "user", m->user);
        reply_int(note, "device_id", m->device_id);
        node_send(app->node, m->node);
    }
}

/* Whether a restart is sure to find m's row, and then the highest counter
 * of m it is sure to find, in *durable. */
static bool row_durable(struct app *app, struct mailbox *m, uint64_t *durable)
{
    if (m->put_commit && node_commit_durable(app->node, m->put_commit)) {
        m->durable = m->put_counter;
        m->put_commit = 0;
        m->row_durable = true;
    }
    *durable = m->durable;
    return m->row_durable;
}

static int by_id(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* The position of m's first envelope whose id is at least id (its ids
 * ascend). */
static size_t first_at_or_after(const struct mailbox *m, uint64_t id)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->items[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Decides a signed request once the user's list is known (known: 0 listed,
 * 1 no such account, -1 no answer). */
static void signed_decide(struct app *app, struct node *n, struct signed_call *c, int known,
                          const struct devlist *l)
{
    struct relay *rl = app->relay;
    struct devlist list;
    if (known == 0)
        list = *l;
    const struct devlist_device *dev = known == 0 ? devlist_find(&list, c->device_id) : NULL;
    struct mailbox *m = box_find(rl, c->user, c->device_id);
    if (known < 0) {
        node_answer_error(n, c->to, ERR_TIMEOUT, "the directory did not answer in time");
        c->to = NULL;
        signed_call_free(c);
        return;
    }
    if (!dev) { /* unknown, pending or revoked: a revoked device's mailbox goes */
        if (m && known == 0 && may_forget(rl, c->user, c->gen, &list))
            box_forget(app, m);
        node_answer_error(n, c->to, ERR_PRECONDITION, "device %u of \"%s\" is not an active "
                                                      "device", c->device_id, c->user);
        c->to = NULL;
        signed_call_free(c);
        return;
    }
    struct signed_request sr = {.type = c->ack ? "relay_ack" : "relay_fetch", .user = c->user,
                                .device_id = c->device_id, .counter = c->counter,
                                .ids = c->ids, .n_ids = c->n_ids};
    int ok = signed_request_verify(dev->identity, c->sig, &sr);
    uint64_t last = m ? m->counter : 0;
    if (ok <= 0 || c->counter <= last) {
        node_answer_error(n, c->to, ok < 0 ? ERR_CRASH : ERR_PRECONDITION,
                          ok < 0    ? "signature verification failed internally"
                          : ok == 0 ? "signature: does not verify under the device's identity key"
                                    : "counter: not above the last one (a replayed or out-of-date "
                                      "request)");
        c->to = NULL;
        signed_call_free(c);
        return;
    }
    if (!m && !(m = box_get(rl, c->user, c->device_id))) {
        node_answer_error(n, c->to, ERR_CRASH, "out of memory");
        c->to = NULL;
        signed_call_free(c);
        return;
    }
    m->counter = c->counter;
    mark_dirty(app, m); /* written by the tick: see relay_flush */
    if (!c->ack) { /* notifications go where it fetches from */
        m->notified = false;
        const char *src = node_deferred_dest(c->to);
        if (!m->node || strcmp(m->node, src)) {
            char *copy = strdup(src);
            if (copy) {
                free(m->node);
                m->node = copy;
            }
        }
    }
    /* A restart raises the counter of every box it finds by
     * RELAY_COUNTER_SLACK (relay_loaded), so an answer may leave before its
     * counter is written only while the counter is within that of a durable
     * one, and only for a box whose row is durable (a restart without it
     * would start from 0). Otherwise the box is written now and the answer
     * waits for that commit: a device's first request, or one after its
     * counter jumped (its restart, or an error 22 from us). */
    uint64_t after = 0, durable;
    if (app_state(app) &&
        (!row_durable(app, m, &durable) || c->counter > durable + RELAY_COUNTER_SLACK)) {
        put_box(app, m);
        m->dirty = false;
        after = m->put_commit;
    }
    if (c->ack) {
        /* A mailbox's ids ascend (ids only grow, and a restart sorts them),
         * so the acknowledged ids, sorted (the signature is checked), are
         * found in one pass from the first of them, and the rest moves down
         * at once: not every envelope against every id. */
        qsort(c->ids, c->n_ids, sizeof(*c->ids), by_id);
        size_t i = c->n_ids ? first_at_or_after(m, c->ids[0]) : m->n, j = i, k = 0;
        for (; i < m->n && k < c->n_ids; i++) {
            while (k < c->n_ids && c->ids[k] < m->items[i]->id)
                k++;
            if (k < c->n_ids && c->ids[k] == m->items[i]->id) {
                if (gone_add(rl, m->items[i]->id))
                    del_envelope(app, m->items[i]->id); /* no room to wait: now */
                m->bytes -= m->items[i]->ct_len;
                envelope_free(m->items[i]);
            } else {
                m->items[j++] = m->items[i];
            }
        }
        if (j < i)
            memmove(m->items + j, m->items + i, (m->n - i) * sizeof(*m->items));
        m->n = j + (m->n - i);
        /* The deletions wait for the tick (relay_flush): nothing to wait for. */
        reply_early(node_message(n, "relay_acked"), after);
        node_answer(n, c->to);
    } else {
        answer_fetch(app, m, c->to, after);
    }
    c->to = NULL;
    signed_call_free(c);
}

static void signed_lookup_done(struct app *app, struct node *n, void *ctx,
                               enum node_call_status st, const cJSON *body)
{
    struct signed_call *c = ctx;
    struct devlist list;
    int known = st == NODE_CALL_REPLY ? newest_list(body, &list) : -1;
    if (known == 0) {
        note_version(app->relay, c->user, &list);
        cache_put(app->relay, c->user, &list, c->asked_ms, c->gen);
    }
    signed_decide(app, n, c, known, &list);
}

static int signed_request(struct app *app, const struct request *req, struct reply *r, bool ack)
{
    const cJSON *body = req->body;
    const char *user;
    size_t len;
    long long counter;
    int rc;
    struct signed_call *c = calloc(1, sizeof(*c));
    if (!c)
        return node_error(r, ERR_CRASH, "out of memory");
    c->ack = ack;
    if ((rc = req_string(r, body, "user", false, &user, &len)) ||
        (rc = field_u32(r, body, "", "device_id", false, &c->device_id)) ||
        (rc = req_int(r, body, "counter", false, 1, NODE_MAX_SAFE_INT, &counter, NULL)) ||
        (rc = field_sig(r, body, "", "signature", c->sig)))
        goto fail;
    if (!len || len > DEVLIST_USER_MAX) {
        rc = node_error(r, ERR_MALFORMED, "user: expected a name of 1 to %d bytes",
                        DEVLIST_USER_MAX);
        goto fail;
    }
    if (!ack && (!req->src || strlen(req->src) > RELAY_NODE_MAX)) {
        /* Notifications go where it fetches from, and the relay keeps that
         * id in its state: a bounded one, so the row always loads again. */
        rc = node_error(r, ERR_MALFORMED, "src: a fetch comes from a node id of at most %d "
                                          "bytes", RELAY_NODE_MAX);
        goto fail;
    }
    memcpy(c->user, user, len + 1);
    c->counter = (uint64_t)counter;
    if (ack) {
        const cJSON *ids = req_field(body, "ids"), *it;
        int n = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : -1;
        if (n < 0 || n > RELAY_FETCH_MAX ||
            !(c->ids = calloc((size_t)n + 1, sizeof(*c->ids)))) {
            rc = node_error(r, ERR_MALFORMED, "ids: expected an array of at most %d envelope "
                                              "ids", RELAY_FETCH_MAX);
            goto fail;
        }
        cJSON_ArrayForEach(it, ids) {
            long long v;
            if (!json_exact_int(it, &v) || v < 1) {
                rc = node_error(r, ERR_MALFORMED, "ids: expected positive integers");
                goto fail;
            }
            c->ids[c->n_ids++] = (uint64_t)v;
        }
    }
    if (!(c->to = node_defer(req, r))) {
        rc = ERR_CRASH;
        goto fail;
    }
    const struct devlist *cl = cache_get(app->relay, c->user);
    if (cl) {
        c->gen = cache_gen(app->relay, c->user);
        signed_decide(app, app->node, c, 0, cl);
        return 0;
    }
    c->asked_ms = node_now_ms();
    c->gen = cache_gen(app->relay, c->user);
    if (ask_directory(app, c->user, signed_lookup_done, c)) {
        node_answer_error(app->node, c->to, ERR_CRASH, "could not ask the directory");
        c->to = NULL;
        signed_call_free(c);
    }
    return 0;
fail:
    signed_call_free(c);
    return rc;
}

int h_relay_fetch(struct app *app, const struct request *req, struct reply *r)
{
    return signed_request(app, req, r, false);
}

int h_relay_ack(struct app *app, const struct request *req, struct reply *r)
{
    return signed_request(app, req, r, true);
}

/* ============================================================================
 * Loading
 * ========================================================================== */

static int by_envelope_id(const void *x, const void *y)
{
    uint64_t a = (*(struct envelope *const *)x)->id, b = (*(struct envelope *const *)y)->id;
    return a < b ? -1 : a > b;
}

int relay_load_row(struct app *app, const char *kind, const uint8_t *key, size_t key_len,
                   const uint8_t *value, size_t value_len)
{
    struct row_reader rd = row_reader(value, value_len);
    if (relay_new(app) || row_get_u8(&rd) != ROW_VERSION)
        return -1;
    struct relay *rl = app->relay;
    if (!strcmp(kind, "relay_env")) {
        char user[DEVLIST_USER_MAX + 1], from[DEVLIST_USER_MAX + 1], mid[129], k[8];
        struct envelope *e = calloc(1, sizeof(*e));
        if (!e || key_len != 8)
            goto bad_env;
        for (int i = 0; i < 8; i++)
            e->id = e->id << 8 | key[i];
        row_get_str(&rd, user, sizeof(user));
        e->device_id = row_get_u32(&rd);
        row_get_str(&rd, from, sizeof(from));
        e->from_device = row_get_u32(&rd);
        row_get_str(&rd, mid, sizeof(mid));
        row_get_str(&rd, k, sizeof(k));
        if (rd.bad || !(e->ciphertext = strndup((const char *)rd.p, (size_t)(rd.end - rd.p))) ||
            !(e->user = strdup(user)) || !(e->from_user = strdup(from)) ||
            !(e->message_id = strdup(mid)))
            goto bad_env;
        memcpy(e->kind, k, sizeof(e->kind));
        struct mailbox *m = box_get(rl, user, e->device_id);
        if (!m || box_append(m, e))
            goto bad_env;
        e->ct_len = strlen(e->ciphertext);
        m->bytes += e->ct_len;
        if (e->id >= rl->next_id)
            rl->next_id = e->id + 1;
        return 0;
    bad_env:
        envelope_free(e);
        return -1;
    }
    if (!strcmp(kind, "relay_box")) {
        char node[RELAY_NODE_MAX + 1];
        size_t n = strnlen((const char *)key, key_len);
        if (!n || n > DEVLIST_USER_MAX || n + 5 != key_len)
            return -1;
        char user[DEVLIST_USER_MAX + 1];
        memcpy(user, key, n);
        user[n] = 0;
        uint32_t id = (uint32_t)key[n + 1] << 24 | (uint32_t)key[n + 2] << 16 |
                      (uint32_t)key[n + 3] << 8 | key[n + 4];
        struct mailbox *m = box_get(rl, user, id);
        if (!m)
            return -1;
        m->counter = row_get_u64(&rd);
        m->row_durable = true;
        row_get_str(&rd, node, sizeof(node));
        if (!row_done(&rd) || (*node && !(m->node = strdup(node))))
            return -1;
        return 0;
    }
    if (!strcmp(kind, "relay_ids")) {
        uint64_t next = row_get_u64(&rd);
        if (!row_done(&rd) || key_len != 4 || memcmp(key, "next", 4) || !next)
            return -1;
        rl->ids_reserved = next;
        if (next > rl->next_id)
            rl->next_id = next; /* what was handed out before is below it */
        return 0;
    }
    if (!strcmp(kind, "relay_seen")) {
        uint64_t seq = row_get_u64(&rd);
        size_t slot = (size_t)(seq % RELAY_SEEN_MAX);
        if (!row_done(&rd) || rl->seen[slot] || !key_len ||
            key_len > 128 || memchr(key, 0, key_len) ||
            !(rl->seen[slot] = strndup((const char *)key, key_len)) ||
            map_put_str(&rl->seen_index, rl->seen[slot], (void *)(uintptr_t)(slot + 1)))
            return -1;
        if (seq >= rl->n_seen)
            rl->n_seen = seq + 1;
        return 0;
    }
    return -1;
}

int relay_loaded(struct app *app)
{
    if (relay_new(app))
        return -1;
    size_t pos = 0;
    struct mailbox *m;
    while ((m = map_next(&app->relay->boxes, &pos)) != NULL) {
        if (m->n > 1) /* qsort must not be given NULL, even for none */
            qsort(m->items, m->n, sizeof(m->items[0]), by_envelope_id);
        /* The lifetime before may have answered requests with counters up
         * to RELAY_COUNTER_SLACK above what it wrote (signed_decide): none
         * of them is taken again. A box without a row (its envelopes alone)
         * answered none before its row was durable: it counts from 0. */
        m->durable = m->counter;
        if (m->row_durable)
            m->counter += RELAY_COUNTER_SLACK;
    }
    return 0;
}
