/* directory.c - the directory role (see directory.h). */
#include "directory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/kdf.h"
#include "securitor/map.h"
#include "securitor/state.h"
#include "securitor/wipe.h"
#include "conversation.h"
#include "devlist.h"
#include "relay.h"
#include "fields.h"
#include "rows.h"
#include "signed.h"

enum dir_status { DEV_PENDING, DEV_ACTIVE, DEV_REVOKED };

struct dir_opk {
    uint32_t id;
    uint8_t key[CURVE_KEY_LEN];
};

struct dir_device {
    uint32_t id;
    uint8_t identity[CURVE_KEY_LEN];
    uint32_t registration_id;
    uint32_t spk_id;
    uint8_t spk[CURVE_KEY_LEN], spk_sig[CURVE_SIG_LEN];
    uint64_t counter; /* the last signed upload accepted */
    uint8_t status;
    struct dir_opk *opks; /* available, oldest first */
    size_t n_opks;
};

struct dir_answer {
    char *request_id;
    char *json; /* the bundles array, as first given */
};

struct dir_account {
    char *user;
    struct devlist *lists; /* the chain, oldest first */
    size_t n_lists, cap_lists;
    uint8_t head_hash[DEVLIST_HASH_LEN];
    struct dir_device *devs[DIR_DEVICES_MAX]; /* by id - 1 */
    size_t n_devs;
    struct dir_answer answers[DIR_ANSWERS_MAX]; /* a ring */
    uint32_t next_answer; /* the next answer's number; its slot: modulo DIR_ANSWERS_MAX */
};

/* A row read at open that waits for its account (see "Loading"). */
struct pending_row {
    int kind; /* 1 dev, 2 opk, 3 answer */
    uint8_t *key, *value;
    size_t key_len, value_len;
};

struct directory {
    struct map accounts; /* user -> struct dir_account */
    /* Rows read at open that wait for their accounts (see "Loading"). */
    struct pending_row *pending;
    size_t n_pending, cap_pending;
};

/* ============================================================================
 * Rows (PROTOCOL.md §4): dir_acct user; dir_dev user\0id; dir_opk
 * user\0id\0opk id; dir_ans user\0request id.
 * ========================================================================== */

static void put_account(struct app *app, const struct dir_account *a)
{
    struct state *st = app_state(app);
    struct buf b = {0};
    if (!st)
        return;
    row_u8(&b, ROW_VERSION);
    row_u32(&b, (uint32_t)a->n_lists);
    for (size_t i = 0; i < a->n_lists; i++) {
        const struct devlist *l = &a->lists[i];
        row_u32(&b, l->version);
        row_u32(&b, (uint32_t)l->n);
        for (size_t k = 0; k < l->n; k++) {
            row_u32(&b, l->devices[k].device_id);
            row_bytes(&b, l->devices[k].identity, CURVE_KEY_LEN);
            row_u32(&b, l->devices[k].registration_id);
        }
        row_u32(&b, l->signer);
        row_bytes(&b, l->signature, CURVE_SIG_LEN);
    }
    if (state_put_buf(st, "dir_acct", a->user, strlen(a->user), &b))
        node_log("e2ee-node: cannot record an account: the commit will fail");
    buf_free(&b);
}

static void put_device(struct app *app, const struct dir_account *a, const struct dir_device *d)
{
    struct state *st = app_state(app);
    uint8_t key[DEVLIST_USER_MAX + 8];
    struct buf b = {0};
    if (!st)
        return;
    row_u8(&b, ROW_VERSION);
    row_bytes(&b, d->identity, CURVE_KEY_LEN);
    row_u32(&b, d->registration_id);
    row_u32(&b, d->spk_id);
    row_bytes(&b, d->spk, CURVE_KEY_LEN);
    row_bytes(&b, d->spk_sig, CURVE_SIG_LEN);
    row_u64(&b, d->counter);
    row_u8(&b, d->status);
    if (state_put_buf(st, "dir_dev", key, row_key_user_id(key, a->user, d->id), &b))
        node_log("e2ee-node: cannot record a device: the commit will fail");
    buf_free(&b);
}

static size_t key_opk(uint8_t *k, const char *user, uint32_t dev, uint32_t opk)
{
    size_t n = row_key_user_id(k, user, dev);
    k[n++] = 0;
    for (int i = 3; i >= 0; i--)
        k[n++] = (uint8_t)(opk >> (8 * i));
    return n;
}

static void put_opk(struct app *app, const struct dir_account *a, uint32_t dev,
                    const struct dir_opk *k)
{
    struct state *st = app_state(app);
    uint8_t key[DEVLIST_USER_MAX + 16];
    if (st && state_put(st, "dir_opk", key, key_opk(key, a->user, dev, k->id), k->key,
                        CURVE_KEY_LEN))
        node_log("e2ee-node: cannot record a prekey: the commit will fail");
}

static void del_opk(struct app *app, const struct dir_account *a, uint32_t dev, uint32_t id)
{
    struct state *st = app_state(app);
    uint8_t key[DEVLIST_USER_MAX + 16];
    if (st && state_del(st, "dir_opk", key, key_opk(key, a->user, dev, id)))
        node_log("e2ee-node: cannot record a prekey's deletion: the commit will fail");
}

static size_t key_answer(uint8_t *k, const char *user, const char *request_id)
{
    size_t n = strlen(user), m = strlen(request_id);
    memcpy(k, user, n);
    k[n++] = 0;
    memcpy(k + n, request_id, m);
    return n + m;
}

/* The answer numbered `number` (its slot: number % DIR_ANSWERS_MAX). The row
 * keeps the number, not the slot, so that a restart knows which answer is
 * the oldest: the rows load in no particular order. */
static void put_answer(struct app *app, const struct dir_account *a, uint32_t number)
{
    struct state *st = app_state(app);
    uint8_t key[DEVLIST_USER_MAX + 160];
    struct buf b = {0};
    const struct dir_answer *ans = &a->answers[number % DIR_ANSWERS_MAX];
    if (!st)
        return;
    row_u8(&b, ROW_VERSION);
    row_u32(&b, number);
    row_bytes(&b, ans->json, strlen(ans->json));
    if (state_put_buf(st, "dir_ans", key, key_answer(key, a->user, ans->request_id), &b))
        node_log("e2ee-node: cannot record an answer: the commit will fail");
    buf_free(&b);
}

static void del_answer(struct app *app, const struct dir_account *a, const char *request_id)
{
    struct state *st = app_state(app);
    uint8_t key[DEVLIST_USER_MAX + 160];
    if (st && state_del(st, "dir_ans", key, key_answer(key, a->user, request_id)))
        node_log("e2ee-node: cannot record an answer's deletion: the commit will fail");
}

/* ============================================================================
 * Accounts
 * ========================================================================== */

static void device_free(struct dir_device *d)
{
    if (!d)
        return;
    free(d->opks);
    WIPE_PTR(d);
    free(d);
}

static void account_free(struct dir_account *a)
{
    for (size_t i = 0; i < a->n_devs; i++)
        device_free(a->devs[i]);
    for (size_t i = 0; i < DIR_ANSWERS_MAX; i++) {
        free(a->answers[i].request_id);
        free(a->answers[i].json);
    }
    free(a->lists);
    free(a->user);
    free(a);
}

int directory_new(struct app *app)
{
    app->dir = calloc(1, sizeof(*app->dir));
    return app->dir ? 0 : -1;
}

void directory_free(struct app *app)
{
    if (!app->dir)
        return;
    for (size_t i = 0; i < app->dir->n_pending; i++) {
        free(app->dir->pending[i].key);
        free(app->dir->pending[i].value);
    }
    free(app->dir->pending);
    size_t pos = 0;
    struct dir_account *a;
    while ((a = map_next(&app->dir->accounts, &pos)) != NULL)
        account_free(a);
    map_free(&app->dir->accounts);
    free(app->dir);
    app->dir = NULL;
}

static struct dir_account *account_new(struct directory *dir, const char *user)
{
    struct dir_account *a = calloc(1, sizeof(*a));
    if (!a || !(a->user = strdup(user)) || map_put_str(&dir->accounts, a->user, a)) {
        if (a)
            free(a->user);
        free(a);
        return NULL;
    }
    return a;
}

static int append_list(struct dir_account *a, const struct devlist *l)
{
    if (a->n_lists == a->cap_lists) {
        size_t cap = a->cap_lists ? 2 * a->cap_lists : 4;
        struct devlist *n = realloc(a->lists, cap * sizeof(*n));
        if (!n)
            return -1;
        a->lists = n;
        a->cap_lists = cap;
    }
    uint8_t prev[DEVLIST_HASH_LEN], next[DEVLIST_HASH_LEN];
    memcpy(prev, a->head_hash, sizeof(prev));
    if (!a->n_lists)
        memset(prev, 0, sizeof(prev));
    if (devlist_hash(next, a->user, l, prev))
        return -1;
    a->lists[a->n_lists++] = *l;
    memcpy(a->head_hash, next, sizeof(next));
    return 0;
}

static const struct devlist *head(const struct dir_account *a)
{
    return a->n_lists ? &a->lists[a->n_lists - 1] : NULL;
}

static struct dir_device *device_by_id(const struct dir_account *a, uint32_t id)
{
    return id >= 1 && id <= a->n_devs ? a->devs[id - 1] : NULL;
}

/* ============================================================================
 * Request fields
 * ========================================================================== */

static int user_field(struct reply *r, const cJSON *body, const char **user)
{
    size_t len;
    int rc = req_string(r, body, "user", false, user, &len);
    if (!rc && (!len || len > DEVLIST_USER_MAX))
        rc = node_error(r, ERR_MALFORMED, "user: expected a name of 1 to %d bytes",
                        DEVLIST_USER_MAX);
    return rc;
}

/* One-time prekeys [{id, key}], at most `room`, ids unique. */
static int opks_field(struct reply *r, const cJSON *body, size_t room, struct dir_opk *out,
                      size_t *n)
{
    const cJSON *arr = req_field(body, "one_time_pre_keys"), *it;
    *n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) > room)
        return node_error(r, ERR_MALFORMED, "one_time_pre_keys: expected an array of at most "
                                            "%zu {id, key}", room);
    cJSON_ArrayForEach(it, arr) {
        struct dir_opk *k = &out[*n];
        int rc;
        if ((rc = field_u32(r, it, "one_time_pre_keys[]", "id", false, &k->id)) ||
            (rc = field_key(r, it, "one_time_pre_keys[]", "key", false, k->key, NULL)))
            return rc;
        if (k->id == WIRE_NO_PREKEY) /* "no one-time prekey" in a prekey message */
            return node_error(r, ERR_MALFORMED, "one_time_pre_keys[]: id %u is reserved",
                              k->id);
        for (size_t i = 0; i < *n; i++)
            if (out[i].id == k->id)
                return node_error(r, ERR_MALFORMED, "one_time_pre_keys: id %u twice", k->id);
        (*n)++;
    }
    return 0;
}

/* The signed prekey {id, key, signature}, verified under identity; 1 when it
 * is optional and absent. */
static int spk_field(struct reply *r, const cJSON *body, const uint8_t identity[static 32],
                     struct dir_device *d, bool optional)
{
    const cJSON *spk = req_field(body, "signed_pre_key");
    uint8_t enc[CURVE_ENCODED_LEN];
    int rc;
    if (!spk || cJSON_IsNull(spk))
        return optional ? 1 : node_error(r, ERR_MALFORMED, "signed_pre_key: missing; expected "
                                                           "{id, key, signature}");
    if ((rc = field_u32(r, spk, "signed_pre_key", "id", false, &d->spk_id)) ||
        (rc = field_key(r, spk, "signed_pre_key", "key", false, d->spk, NULL)) ||
        (rc = field_sig(r, spk, "signed_pre_key", "signature", d->spk_sig)))
        return rc;
    curve_encode(enc, d->spk);
    int ok = curve_verify(identity, enc, sizeof(enc), d->spk_sig);
    if (ok < 0)
        return node_error(r, ERR_CRASH, "signature verification failed internally");
    if (!ok)
        return node_error(r, ERR_PRECONDITION, "signed_pre_key.signature: does not verify under "
                                               "identity_key");
    return 0;
}

static int add_opks(struct app *app, struct dir_account *a, struct dir_device *d,
                    const struct dir_opk *k, size_t n)
{
    if (!d->opks && !(d->opks = calloc(DIR_OPKS_MAX, sizeof(*d->opks))))
        return -1;
    for (size_t i = 0; i < n && d->n_opks < DIR_OPKS_MAX; i++) {
        bool have = false;
        for (size_t j = 0; j < d->n_opks && !have; j++)
            have = d->opks[j].id == k[i].id;
        if (have)
            continue;
        d->opks[d->n_opks++] = k[i];
        put_opk(app, a, d->id, &k[i]);
    }
    return 0;
}

static void reply_status(struct reply *r, const char *user, const struct dir_device *d)
{
    reply_type(r, "dir_published");
    reply_cstring(r, "user", user);
    reply_int(r, "device_id", d->id);
    reply_cstring(r, "status", d->status == DEV_ACTIVE    ? "active"
                               : d->status == DEV_PENDING ? "pending"
                                                          : "revoked");
}

/* ============================================================================
 * Handlers
 * ========================================================================== */

int h_dir_publish(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *body = req->body, *list_json = req_field(body, "list");
    const char *user;
    struct dir_device d = {0};
    struct dir_opk opks[DIR_OPKS_MAX];
    size_t n_opks;
    int rc;
    if ((rc = user_field(r, body, &user)) ||
        (rc = field_u32(r, body, "", "registration_id", false, &d.registration_id)) ||
        (rc = field_key(r, body, "", "identity_key", false, d.identity, NULL)) ||
        (rc = spk_field(r, body, d.identity, &d, false)) ||
        (rc = opks_field(r, body, DIR_OPKS_MAX, opks, &n_opks)))
        return rc;
    struct dir_account *a = map_get_str(&app->dir->accounts, user);
    struct dir_device *nd = NULL;
    if (a) {
        for (size_t i = 0; i < a->n_devs; i++) /* publishing again is a no-op */
            if (!memcmp(a->devs[i]->identity, d.identity, CURVE_KEY_LEN)) {
                reply_status(r, user, a->devs[i]);
                return 0;
            }
        if (a->n_devs == DIR_DEVICES_MAX)
            return node_error(r, ERR_PRECONDITION, "user: \"%s\" has %d devices, the most an "
                                                   "account may have", user, DIR_DEVICES_MAX);
        d.id = (uint32_t)a->n_devs + 1;
        d.status = DEV_PENDING;
    } else {
        /* A new account: the first device's self-signed version 1. */
        struct devlist l;
        struct devlist_pin pin;
        if (!list_json || cJSON_IsNull(list_json))
            return node_error(r, ERR_MALFORMED, "list: missing; a new account starts with the "
                                                "first device's self-signed version 1");
        if ((rc = field_devlist(r, list_json, "list", &l)))
            return rc;
        enum devlist_result v = devlist_verify_chain(user, &l, 1, NULL, &pin);
        if (v != DEVLIST_OK)
            return node_error(r, ERR_PRECONDITION, "list: %s", devlist_result_text(v));
        if (memcmp(l.devices[0].identity, d.identity, CURVE_KEY_LEN) ||
            l.devices[0].registration_id != d.registration_id)
            return node_error(r, ERR_PRECONDITION, "list: version 1 must list this device");
        /* The device first: an account is never recorded without it. */
        if (!(nd = malloc(sizeof(*nd))) || !(a = account_new(app->dir, user))) {
            free(nd);
            return node_error(r, ERR_CRASH, "out of memory");
        }
        if (append_list(a, &l)) {
            map_remove_str(&app->dir->accounts, user);
            account_free(a);
            free(nd);
            return node_error(r, ERR_CRASH, "out of memory");
        }
        put_account(app, a);
        d.id = 1;
        d.status = DEV_ACTIVE;
    }
    if (!nd && !(nd = malloc(sizeof(*nd))))
        return node_error(r, ERR_CRASH, "out of memory");
    *nd = d;
    a->devs[a->n_devs++] = nd;
    if (add_opks(app, a, nd, opks, n_opks))
        node_log("e2ee-node: out of memory for prekeys");
    put_device(app, a, nd);
    reply_status(r, user, nd);
    return 0;
}

int h_dir_get_devices(struct app *app, const struct request *req, struct reply *r)
{
    const char *user;
    int rc = user_field(r, req->body, &user);
    if (rc)
        return rc;
    struct dir_account *a = map_get_str(&app->dir->accounts, user);
    if (!a)
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "user: no account \"%s\"", user);
    reply_type(r, "dir_devices");
    reply_cstring(r, "user", user);
    reply_begin_array(r, "lists");
    for (size_t i = 0; i < a->n_lists; i++)
        reply_devlist(r, NULL, &a->lists[i]);
    reply_end_array(r);
    reply_begin_array(r, "pending");
    for (size_t i = 0; i < a->n_devs; i++) {
        const struct dir_device *d = a->devs[i];
        if (d->status != DEV_PENDING)
            continue;
        reply_begin_object(r, NULL);
        reply_int(r, "device_id", d->id);
        reply_key(r, "identity_key", d->identity);
        reply_int(r, "registration_id", d->registration_id);
        reply_end_object(r);
    }
    reply_end_array(r);
    return 0;
}

/* A list change is answered only once the relay has dropped its copy of
 * the user's list (relay_list_noted), or once any copy it took before the
 * change is past its lease (RELAY_LEASE_MS): from the answer on, the relay
 * checks deliveries and fetches against the new version (PROTOCOL.md §5.2,
 * "Who is active for a send"). */
struct announce {
    struct node_deferred *to;
    char *user;
    uint32_t version;
    uint8_t signature[CURVE_SIG_LEN]; /* that version's: it covers the list and its past */
    uint64_t due_ms; /* when every copy from before the change has expired */
};

static void announce_answer(struct app *app, struct node *n, void *ctx)
{
    struct announce *a = ctx;
    const struct dir_account *acc = map_get_str(&app->dir->accounts, a->user);
    /* A commit that failed meanwhile rolled the change back: it must not be
     * answered as made (PROTOCOL.md §5.2, answered once held durably). Later
     * versions may have come on top of it; it must still be in the chain. */
    if (!acc || acc->n_lists < a->version ||
        memcmp(acc->lists[a->version - 1].signature, a->signature, CURVE_SIG_LEN)) {
        node_answer_error(n, a->to, ERR_CRASH, "list: the directory could not keep version %u "
                                               "(its commit failed); nothing changed: try again",
                          a->version);
        a->to = NULL;
        return;
    }
    struct reply *m = node_message(n, "dir_devices_updated");
    reply_cstring(m, "user", a->user);
    reply_int(m, "version", a->version);
    node_answer(n, a->to);
    a->to = NULL;
}

static void announce_free(void *ctx)
{
    struct announce *a = ctx;
    node_deferred_drop(a->to);
    free(a->user);
    free(a);
}

static void announce_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                          const cJSON *body)
{
    struct announce *a = ctx;
    const cJSON *type = body ? req_field(body, "type") : NULL;
    uint64_t now = node_now_ms();
    bool noted = st == NODE_CALL_REPLY && cJSON_IsString(type) &&
                 !strcmp(type->valuestring, "relay_list_noted");
    if (noted || now >= a->due_ms || st == NODE_CALL_CLOSED) {
        announce_answer(app, n, a);
        announce_free(a);
    } else if (!node_timer(n, a->due_ms - now, 0, announce_answer, a, announce_free)) {
        announce_answer(app, n, a); /* out of memory: the lease is nearly over anyway */
        announce_free(a);
    }
}

/* Defers the reply to a stored change until the relay knows of it. */
static int announce_change(struct app *app, const struct request *req, struct reply *r,
                           const char *user, uint32_t version)
{
    struct announce *a = calloc(1, sizeof(*a));
    if (!a || !(a->user = strdup(user))) {
        free(a);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    const struct dir_account *acc = map_get_str(&app->dir->accounts, user);
    if (!acc || !version || version > acc->n_lists) { /* callers hold it: cannot happen */
        announce_free(a);
        return node_error(r, ERR_CRASH, "user: account \"%s\" has no version %u", user,
                          version);
    }
    a->version = version;
    memcpy(a->signature, acc->lists[version - 1].signature, CURVE_SIG_LEN);
    a->due_ms = node_now_ms() + RELAY_LEASE_MS + 1;
    if (!(a->to = node_defer(req, r))) {
        announce_free(a);
        return ERR_CRASH;
    }
    struct reply *m = node_message(app->node, "dir_list_changed");
    reply_cstring(m, "user", user);
    reply_int(m, "version", version);
    if (!node_call(app->node, app->relay_id, RELAY_LEASE_MS + 1, announce_done, a))
        announce_done(app, app->node, a, NODE_CALL_TIMEOUT, NULL);
    return 0;
}

int h_dir_update_devices(struct app *app, const struct request *req, struct reply *r)
{
    const char *user;
    struct devlist l;
    int rc;
    if ((rc = user_field(r, req->body, &user)) ||
        (rc = field_devlist(r, req_field(req->body, "list"), "list", &l)))
        return rc;
    struct dir_account *a = map_get_str(&app->dir->accounts, user);
    if (!a)
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "user: no account \"%s\"", user);
    const struct devlist *cur = head(a);
    if (!cur) /* an account is created with its first list; never without one */
        return node_error(r, ERR_CRASH, "user: account \"%s\" has no device list", user);
    if (l.version == cur->version && !memcmp(l.signature, cur->signature, CURVE_SIG_LEN))
        return announce_change(app, req, r, user, l.version); /* the same again: done */
    uint32_t highest = 0; /* ids only grow: a device approved after a later one cannot be */
    for (size_t i = 0; i < a->n_lists; i++)
        if (devlist_max_id(&a->lists[i]) > highest)
            highest = devlist_max_id(&a->lists[i]);
    enum devlist_result v = devlist_verify_next(user, cur, a->head_hash, highest, &l);
    if (v != DEVLIST_OK)
        return node_error(r, ERR_PRECONDITION, "list: %s (it must extend version %u by one, "
                                               "signed by a device of it, a new device's id "
                                               "above %u)",
                          devlist_result_text(v), cur->version, highest);
    /* A device new to the list must be one of the account's pending devices,
     * as it registered. */
    for (size_t i = 0; i < l.n; i++) {
        const struct devlist_device *x = &l.devices[i];
        struct dir_device *d = device_by_id(a, x->device_id);
        if (devlist_find(cur, x->device_id))
            continue;
        if (!d || d->status != DEV_PENDING || memcmp(d->identity, x->identity, CURVE_KEY_LEN) ||
            d->registration_id != x->registration_id)
            return node_error(r, ERR_PRECONDITION, "list: device %u is not a pending device of "
                                                   "\"%s\" with that key", x->device_id, user);
    }
    if (append_list(a, &l))
        return node_error(r, ERR_CRASH, "out of memory");
    for (size_t i = 0; i < a->n_devs; i++) {
        struct dir_device *d = a->devs[i];
        uint8_t was = d->status;
        if (devlist_find(&l, d->id))
            d->status = DEV_ACTIVE;
        else if (d->status == DEV_ACTIVE)
            d->status = DEV_REVOKED;
        if (d->status == DEV_REVOKED && was != DEV_REVOKED) { /* its prekeys go */
            for (size_t k = 0; k < d->n_opks; k++)
                del_opk(app, a, d->id, d->opks[k].id);
            d->n_opks = 0;
        }
        if (d->status != was)
            put_device(app, a, d);
    }
    put_account(app, a);
    return announce_change(app, req, r, user, l.version);
}

int h_dir_get_bundles(struct app *app, const struct request *req, struct reply *r)
{
    const char *user, *request_id;
    size_t id_len;
    int rc;
    if ((rc = user_field(r, req->body, &user)) ||
        (rc = req_string(r, req->body, "request_id", false, &request_id, &id_len)))
        return rc;
    if (!id_len || id_len > 128)
        return node_error(r, ERR_MALFORMED, "request_id: expected 1 to 128 bytes");
    struct dir_account *a = map_get_str(&app->dir->accounts, user);
    if (!a)
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "user: no account \"%s\"", user);
    for (size_t i = 0; i < DIR_ANSWERS_MAX; i++) { /* a retry gets the same answer */
        const struct dir_answer *ans = &a->answers[i];
        if (ans->request_id && !strcmp(ans->request_id, request_id)) {
            reply_type(r, "dir_bundles");
            reply_cstring(r, "user", user);
            reply_raw(r, "bundles", ans->json, strlen(ans->json));
            return 0;
        }
    }
    /* One bundle per active device, each taking its oldest one-time prekey
     * (or none: the last-resort path). The answer is built aside, kept,
     * and given. */
    const struct devlist *cur = head(a);
    if (!cur)
        return node_error(r, ERR_CRASH, "user: account \"%s\" has no device list", user);
    struct reply tmp = {0};
    tmp.need_comma[0] = false;
    reply_begin_array(&tmp, "b");
    uint32_t taken[DEVLIST_MAX_DEVICES];
    size_t n_taken = 0;
    for (size_t i = 0; i < cur->n; i++) {
        struct dir_device *d = device_by_id(a, cur->devices[i].device_id);
        struct bundle b = {0};
        if (!d)
            continue;
        b.device_id = d->id;
        b.registration_id = d->registration_id;
        memcpy(b.identity, d->identity, CURVE_KEY_LEN);
        memcpy(b.spk, d->spk, CURVE_KEY_LEN);
        b.spk_id = d->spk_id;
        memcpy(b.spk_sig, d->spk_sig, CURVE_SIG_LEN);
        if (d->n_opks) {
            b.has_opk = true;
            b.opk_id = d->opks[0].id;
            memcpy(b.opk, d->opks[0].key, CURVE_KEY_LEN);
            taken[n_taken++] = d->id;
        }
        reply_begin_object(&tmp, NULL);
        reply_bundle_fields(&tmp, &b);
        reply_end_object(&tmp);
    }
    reply_end_array(&tmp);
    /* tmp holds "b":[...]: keep the array. */
    const char *json = buf_ok(&tmp.fields) ? strchr(tmp.fields.data, '[') : NULL;
    uint32_t number = a->next_answer;
    size_t slot = number % DIR_ANSWERS_MAX; /* the oldest answer's, once all are used */
    char *copy_id = strdup(request_id), *copy_json = json ? strndup(json, tmp.fields.data +
                                                                      tmp.fields.len - json)
                                                          : NULL;
    reply_free(&tmp);
    if (!copy_id || !copy_json) {
        free(copy_id);
        free(copy_json);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    for (size_t i = 0; i < n_taken; i++) { /* handed out: never again */
        struct dir_device *d = device_by_id(a, taken[i]);
        if (!d || !d->n_opks)
            continue; /* cannot happen: taken[] was filled from a's devices above */
        del_opk(app, a, d->id, d->opks[0].id);
        memmove(d->opks, d->opks + 1, (d->n_opks - 1) * sizeof(d->opks[0]));
        d->n_opks--;
    }
    struct dir_answer *old = &a->answers[slot];
    if (old->request_id)
        del_answer(app, a, old->request_id);
    free(old->request_id);
    free(old->json);
    *old = (struct dir_answer){copy_id, copy_json};
    /* 2^32 is a multiple of DIR_ANSWERS_MAX, so slots wrap in step; which
     * answer is the oldest is lost on a restart only past 2^32 answers. */
    a->next_answer = number + 1;
    put_answer(app, a, number);
    reply_type(r, "dir_bundles");
    reply_cstring(r, "user", user);
    reply_raw(r, "bundles", copy_json, strlen(copy_json));
    return 0;
}

/* SHA-256 over an upload's keys, as the device signed them (signed.h). */
static int upload_digest(uint8_t out[static 32], const struct dir_opk *k, size_t n,
                         const struct dir_device *spk)
{
    struct buf b = {0};
    for (size_t i = 0; i < n; i++) {
        row_u32(&b, k[i].id);
        row_bytes(&b, k[i].key, CURVE_KEY_LEN);
    }
    row_u8(&b, spk != NULL);
    if (spk) {
        row_u32(&b, spk->spk_id);
        row_bytes(&b, spk->spk, CURVE_KEY_LEN);
        row_bytes(&b, spk->spk_sig, CURVE_SIG_LEN);
    }
    int rc = buf_ok(&b) ? sha256(out, (const uint8_t *)b.data, b.len) : -1;
    buf_free(&b);
    return rc;
}

int h_dir_upload_prekeys(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *body = req->body;
    const char *user;
    uint32_t device_id;
    long long counter;
    uint8_t sig[CURVE_SIG_LEN], digest[32];
    struct dir_opk opks[DIR_OPKS_MAX];
    size_t n;
    struct dir_device spk = {0};
    int rc;
    if ((rc = user_field(r, body, &user)) ||
        (rc = field_u32(r, body, "", "device_id", false, &device_id)) ||
        (rc = req_int(r, body, "counter", false, 1, NODE_MAX_SAFE_INT, &counter, NULL)) ||
        (rc = field_sig(r, body, "", "signature", sig)) ||
        (rc = opks_field(r, body, DIR_OPKS_MAX, opks, &n)))
        return rc;
    struct dir_account *a = map_get_str(&app->dir->accounts, user);
    struct dir_device *d = a ? device_by_id(a, device_id) : NULL;
    if (!d)
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "no device %u of \"%s\"", device_id, user);
    if (d->status == DEV_REVOKED)
        return node_error(r, ERR_PRECONDITION, "device %u of \"%s\" is revoked", device_id, user);
    rc = spk_field(r, body, d->identity, &spk, true);
    if (rc != 0 && rc != 1) /* 1: no signed prekey in this upload */
        return rc;
    bool has_spk = rc == 0;
    if (upload_digest(digest, opks, n, has_spk ? &spk : NULL))
        return node_error(r, ERR_CRASH, "hash failed internally");
    struct signed_request sr = {.type = "dir_upload_prekeys", .user = user,
                                .device_id = device_id, .counter = (uint64_t)counter,
                                .digest = digest};
    int ok = signed_request_verify(d->identity, sig, &sr);
    if (ok < 0)
        return node_error(r, ERR_CRASH, "signature verification failed internally");
    if (!ok)
        return node_error(r, ERR_PRECONDITION, "signature: does not verify under device %u's "
                                               "identity key", device_id);
    if ((uint64_t)counter <= d->counter)
        return node_error(r, ERR_PRECONDITION, "counter: %lld is not above %llu (a replayed or "
                                               "out-of-date request)",
                          counter, (unsigned long long)d->counter);
    d->counter = (uint64_t)counter;
    if (has_spk) {
        d->spk_id = spk.spk_id;
        memcpy(d->spk, spk.spk, CURVE_KEY_LEN);
        memcpy(d->spk_sig, spk.spk_sig, CURVE_SIG_LEN);
    }
    if (add_opks(app, a, d, opks, n))
        return node_error(r, ERR_CRASH, "out of memory");
    put_device(app, a, d);
    reply_type(r, "dir_prekeys_uploaded");
    reply_cstring(r, "user", user);
    reply_int(r, "device_id", device_id);
    reply_int(r, "count", (long long)d->n_opks);
    return 0;
}

/* ============================================================================
 * Loading
 *
 * Rows come in any order: accounts are made as their rows come, devices,
 * prekeys and answers wait in a list until directory_loaded.
 * ========================================================================== */

static bool split_user(const uint8_t *key, size_t len, char *user, const uint8_t **rest,
                       size_t *rest_len)
{
    size_t n = strnlen((const char *)key, len);
    if (!n || n > DEVLIST_USER_MAX || n == len)
        return false;
    memcpy(user, key, n);
    user[n] = 0;
    *rest = key + n + 1;
    *rest_len = len - n - 1;
    return true;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int directory_load_row(struct app *app, const char *kind, const uint8_t *key, size_t key_len,
                       const uint8_t *value, size_t value_len)
{
    if (!app->dir && directory_new(app))
        return -1;
    if (!strcmp(kind, "dir_acct")) {
        char user[DEVLIST_USER_MAX + 1];
        struct row_reader rd = row_reader(value, value_len);
        if (!key_len || key_len > DEVLIST_USER_MAX || memchr(key, 0, key_len))
            return -1;
        memcpy(user, key, key_len);
        user[key_len] = 0;
        struct dir_account *a = account_new(app->dir, user);
        if (!a || row_get_u8(&rd) != ROW_VERSION)
            return -1;
        uint32_t n = row_get_u32(&rd);
        for (uint32_t i = 0; i < n && !rd.bad; i++) {
            struct devlist l = {0};
            l.version = row_get_u32(&rd);
            l.n = row_get_u32(&rd);
            if (l.n > DEVLIST_MAX_DEVICES)
                return -1;
            for (size_t k = 0; k < l.n; k++) {
                l.devices[k].device_id = row_get_u32(&rd);
                row_get_bytes(&rd, l.devices[k].identity, CURVE_KEY_LEN);
                l.devices[k].registration_id = row_get_u32(&rd);
            }
            l.signer = row_get_u32(&rd);
            row_get_bytes(&rd, l.signature, CURVE_SIG_LEN);
            if (rd.bad || append_list(a, &l))
                return -1;
        }
        /* What the directory stored, it verified; check it again anyway. */
        if (!row_done(&rd) || !a->n_lists ||
            devlist_verify_chain(user, a->lists, a->n_lists, NULL, NULL) != DEVLIST_OK)
            return -1;
        return 0;
    }
    int k = !strcmp(kind, "dir_dev") ? 1 : !strcmp(kind, "dir_opk") ? 2
                                          : !strcmp(kind, "dir_ans") ? 3 : 0;
    if (!k)
        return -1;
    struct directory *dir = app->dir;
    if (dir->n_pending == dir->cap_pending) {
        size_t cap = dir->cap_pending ? 2 * dir->cap_pending : 256;
        struct pending_row *p = realloc(dir->pending, cap * sizeof(*p));
        if (!p)
            return -1;
        dir->pending = p;
        dir->cap_pending = cap;
    }
    struct pending_row *p = &dir->pending[dir->n_pending];
    p->key = malloc(key_len + 1);
    p->value = malloc(value_len + 1);
    if (!p->key || !p->value) {
        free(p->key);
        free(p->value);
        return -1;
    }
    memcpy(p->key, key, key_len);
    memcpy(p->value, value, value_len);
    p->kind = k;
    p->key_len = key_len;
    p->value_len = value_len;
    dir->n_pending++;
    return 0;
}

static int load_pending(struct app *app, int kind, const struct pending_row *p)
{
    char user[DEVLIST_USER_MAX + 1];
    const uint8_t *rest;
    size_t rest_len;
    if (!split_user(p->key, p->key_len, user, &rest, &rest_len))
        return -1;
    struct dir_account *a = map_get_str(&app->dir->accounts, user);
    if (!a)
        return -1;
    if (kind == 1) {
        struct row_reader rd = row_reader(p->value, p->value_len);
        struct dir_device *d = calloc(1, sizeof(*d));
        if (!d || rest_len != 4) {
            free(d);
            return -1;
        }
        d->id = be32(rest);
        if (row_get_u8(&rd) != ROW_VERSION || d->id < 1 || d->id > DIR_DEVICES_MAX ||
            a->devs[d->id - 1]) {
            free(d);
            return -1;
        }
        row_get_bytes(&rd, d->identity, CURVE_KEY_LEN);
        d->registration_id = row_get_u32(&rd);
        d->spk_id = row_get_u32(&rd);
        row_get_bytes(&rd, d->spk, CURVE_KEY_LEN);
        row_get_bytes(&rd, d->spk_sig, CURVE_SIG_LEN);
        d->counter = row_get_u64(&rd);
        d->status = row_get_u8(&rd);
        if (!row_done(&rd) || d->status > DEV_REVOKED) {
            free(d);
            return -1;
        }
        a->devs[d->id - 1] = d;
        if (d->id > a->n_devs)
            a->n_devs = d->id;
        return 0;
    }
    if (kind == 2) {
        if (rest_len != 9 || rest[4] || p->value_len != CURVE_KEY_LEN)
            return -1;
        struct dir_device *d = device_by_id(a, be32(rest));
        if (!d || (!d->opks && !(d->opks = calloc(DIR_OPKS_MAX, sizeof(*d->opks)))) ||
            d->n_opks == DIR_OPKS_MAX)
            return -1;
        struct dir_opk *k = &d->opks[d->n_opks++];
        k->id = be32(rest + 5);
        memcpy(k->key, p->value, CURVE_KEY_LEN);
        return 0;
    }
    struct row_reader rd = row_reader(p->value, p->value_len);
    if (row_get_u8(&rd) != ROW_VERSION)
        return -1;
    /* Rows written before numbers were kept hold the slot, a number below
     * DIR_ANSWERS_MAX: the same slot, their order lost as it was then. */
    uint32_t number = row_get_u32(&rd);
    size_t slot = number % DIR_ANSWERS_MAX;
    if (rd.bad || a->answers[slot].request_id || !rest_len ||
        rest_len > 128 || memchr(rest, 0, rest_len))
        return -1;
    struct dir_answer *ans = &a->answers[slot];
    ans->request_id = strndup((const char *)rest, rest_len);
    ans->json = strndup((const char *)rd.p, (size_t)(rd.end - rd.p));
    if (!ans->request_id || !ans->json)
        return -1;
    if (number >= a->next_answer) /* the next goes after the newest */
        a->next_answer = number + 1;
    return 0;
}

static int by_opk_id(const void *x, const void *y)
{
    uint32_t a = ((const struct dir_opk *)x)->id, b = ((const struct dir_opk *)y)->id;
    return a < b ? -1 : a > b;
}

int directory_loaded(struct app *app)
{
    int rc = 0;
    if (!app->dir && directory_new(app))
        return -1;
    struct directory *dir = app->dir;
    for (int kind = 1; kind <= 3; kind++)
        for (size_t i = 0; i < dir->n_pending && !rc; i++)
            if (dir->pending[i].kind == kind)
                rc = load_pending(app, kind, &dir->pending[i]);
    for (size_t i = 0; i < dir->n_pending; i++) {
        free(dir->pending[i].key);
        free(dir->pending[i].value);
    }
    free(dir->pending);
    dir->pending = NULL;
    dir->n_pending = dir->cap_pending = 0;
    size_t pos = 0;
    struct dir_account *a;
    while (!rc && (a = map_next(&app->dir->accounts, &pos)) != NULL) {
        for (size_t i = 0; i < a->n_devs && !rc; i++) {
            if (!a->devs[i])
                rc = -1; /* ids are given in order: none may be missing */
            else if (a->devs[i]->n_opks > 1) /* never qsort(NULL, 0) */
                qsort(a->devs[i]->opks, a->devs[i]->n_opks, sizeof(struct dir_opk), by_opk_id);
        }
    }
    return rc;
}
