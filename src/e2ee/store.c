/* store.c - users, peers, sessions and one-time prekeys (see store.h). */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/rand.h"
#include "securitor/wipe.h"

/* ============================================================================
 * Changes (kept only while a state is open: store_track)
 *
 * Each mutation below records what it changed; the state's commit writes
 * those objects (persist.c). An object freed before the commit is listed as
 * gone, and store_changes_settle marks its records dead; its row's deletion
 * is recorded instead.
 * ========================================================================== */

void store_init(struct store *st, size_t max_users)
{
    *st = (struct store){.max_users = max_users};
}

void store_track(struct store *st) { st->tracking = true; }

static struct store_change *change_new(struct store *st, enum store_change_kind kind)
{
    if (!st->tracking)
        return NULL;
    if (st->n_changes == st->cap_changes) {
        size_t cap = st->cap_changes ? 2 * st->cap_changes : 256;
        struct store_change *c = realloc(st->changes, cap * sizeof(*c));
        if (!c) {
            st->changes_lost = true; /* the commit then fails, and the state is read back */
            return NULL;
        }
        st->changes = c;
        st->cap_changes = cap;
    }
    struct store_change *c = &st->changes[st->n_changes++];
    *c = (struct store_change){.kind = kind};
    return c;
}

static void note_user(struct user *u)
{
    struct store_change *c;
    if (!u->changed && (c = change_new(u->store, CHANGE_USER))) {
        c->u = u;
        u->changed = true;
    }
}

static void note_seen(struct user *u)
{
    struct store_change *c;
    if (!u->seen_changed && (c = change_new(u->store, CHANGE_SEEN))) {
        c->u = u;
        u->seen_changed = true;
    }
}

static void note_opk(struct user *u, uint32_t id)
{
    struct store_change *c = change_new(u->store, CHANGE_OPK);
    if (c) {
        c->u = u;
        c->opk_id = id;
    }
}

static void note_peer(struct user *u, struct peer *p)
{
    struct store_change *c = change_new(u->store, CHANGE_PEER);
    if (c) {
        c->u = u;
        c->p = p;
    }
}

void user_session_changed(struct store *st, struct user *u, struct peer *p, struct session *s)
{
    struct store_change *c = change_new(st, CHANGE_SESSION);
    if (c) {
        c->u = u;
        c->p = p;
        c->s = s;
    }
}

/* Records that a row must go (a copy of its key is kept). */
static void note_delete(struct store *st, const char *kind, const uint8_t *key, size_t len)
{
    struct store_change *c = change_new(st, CHANGE_DELETE);
    if (!c)
        return;
    c->row_kind = (char *)kind; /* a string literal */
    if (!(c->row_key = malloc(len ? len : 1))) {
        st->n_changes--;
        st->changes_lost = true;
        return;
    }
    memcpy(c->row_key, key, len);
    c->row_key_len = len;
}

static void note_remote(struct store *st, const char *name, bool marked)
{
    if (!marked) {
        note_delete(st, "remote", (const uint8_t *)name, strlen(name));
        return;
    }
    struct store_change *c = change_new(st, CHANGE_REMOTE);
    if (c && !(c->row_key = (uint8_t *)strdup(name))) {
        st->n_changes--;
        st->changes_lost = true;
    } else if (c) {
        c->row_key_len = strlen(name);
    }
}

/* Marks dead the records made before g->before that point at g->obj: a scan
 * of the changes, used only when there is no memory for the index below. */
static void mark_dead(struct store *st, const struct store_gone *g)
{
    for (size_t i = 0; i < g->before; i++) {
        struct store_change *c = &st->changes[i];
        if ((g->peer ? (const void *)c->p : (const void *)c->s) == g->obj)
            c->dead = true;
    }
}

/* A session (or, with s NULL, a whole peer) goes: its records are dead.
 * Listed in O(1); store_changes_settle marks them (a revocation deleting
 * 40,000 sessions scanned every record per session: 0.8 s). */
static void forget_changes(struct store *st, const struct peer *p, const struct session *s)
{
    struct store_gone g = {.obj = s ? (const void *)s : (const void *)p,
                           .before = st->n_changes, .peer = !s};
    if (st->n_gone == st->cap_gone) {
        size_t cap = st->cap_gone ? 2 * st->cap_gone : 64;
        struct store_gone *grown = realloc(st->gone, cap * sizeof(*grown));
        if (!grown) {
            mark_dead(st, &g); /* no room to defer: mark now, as settle would */
            return;
        }
        st->gone = grown;
        st->cap_gone = cap;
    }
    st->gone[st->n_gone++] = g;
}

void store_changes_settle(struct store *st)
{
    /* Freed addresses -> their latest store_gone. A reused address keeps the
     * latest entry: its `before` is the largest, and every record of an
     * earlier object there was made before the earlier free, so before it. */
    struct map sessions = {0}, peers = {0};
    size_t i;
    if (!st->n_gone)
        return; /* nothing freed: most commits */
    for (i = 0; i < st->n_gone; i++) {
        struct store_gone *g = &st->gone[i]; /* the key lives in the entry */
        if (map_put(g->peer ? &peers : &sessions, &g->obj, sizeof(g->obj), g))
            goto scan;
    }
    for (i = 0; i < st->n_changes; i++) {
        struct store_change *c = &st->changes[i];
        const void *s = c->s, *p = c->p; /* keys as stored: const void * */
        const struct store_gone *g;
        if (s && (g = map_get(&sessions, &s, sizeof(s))) && i < g->before)
            c->dead = true;
        if (p && (g = map_get(&peers, &p, sizeof(p))) && i < g->before)
            c->dead = true;
    }
    goto done;
scan: /* no memory for the index: one scan per object, as before */
    for (i = 0; i < st->n_gone; i++)
        mark_dead(st, &st->gone[i]);
done:
    map_free(&sessions);
    map_free(&peers);
    st->n_gone = 0;
}

void store_changes_clear(struct store *st)
{
    for (size_t i = 0; i < st->n_changes; i++) {
        struct store_change *c = &st->changes[i];
        if (c->u)
            c->u->changed = c->u->seen_changed = false;
        free(c->row_key);
    }
    st->n_changes = 0;
    st->n_gone = 0; /* their records went with the rest */
    st->changes_lost = false;
}

/* --- row keys ---------------------------------------------------------------- */

static size_t put_name(uint8_t *at, const char *name)
{
    size_t n = strlen(name);
    memcpy(at, name, n);
    return n;
}

size_t store_opk_key(uint8_t *key, const struct user *u, uint32_t id)
{
    size_t n = put_name(key, u->name);
    key[n++] = 0;
    for (int i = 3; i >= 0; i--)
        key[n++] = (uint8_t)(id >> (8 * i));
    return n;
}

size_t store_peer_key(uint8_t *key, const struct user *u, const struct peer *p)
{
    size_t n = put_name(key, u->name);
    key[n++] = 0;
    return n + put_name(key + n, p->name);
}

size_t store_session_key(uint8_t *key, const struct user *u, const struct peer *p,
                         const struct session *s)
{
    size_t n = store_peer_key(key, u, p);
    key[n++] = 0;
    memcpy(key + n, s->base_key, CURVE_KEY_LEN);
    return n + CURVE_KEY_LEN;
}

static void delete_session_row(struct user *u, struct peer *p, struct session *s)
{
    uint8_t key[STORE_ROW_KEY_MAX];
    if (!u->store->tracking)
        return;
    forget_changes(u->store, p, s);
    note_delete(u->store, "session", key, store_session_key(key, u, p, s));
}

/* ============================================================================
 * Users
 * ========================================================================== */

struct user *store_find_user(const struct store *st, const char *name)
{
    return map_get_str(&st->users, name);
}

bool store_is_remote(const struct store *st, const char *name)
{
    return map_get_str(&st->remote, name) != NULL;
}

int store_mark_remote(struct store *st, const char *name)
{
    if (store_is_remote(st, name))
        return 0;
    char *copy = strdup(name);
    if (!copy || map_put_str(&st->remote, copy, copy)) {
        free(copy);
        return -1;
    }
    note_remote(st, name, true);
    return 0;
}

void store_unmark_remote(struct store *st, const char *name)
{
    char *copy = map_remove_str(&st->remote, name);
    if (copy)
        note_remote(st, name, false);
    free(copy);
}

static void session_free(struct session *s)
{
    session_wipe(s);
    free(s);
}

static void peer_free(struct peer *p)
{
    for (size_t j = 0; j < p->n_sessions; j++)
        session_free(p->sessions[j]);
    free(p->name);
    WIPE_PTR(p);
    free(p);
}

static void user_free(struct user *u)
{
    if (!u)
        return;
    size_t pos = 0;
    struct peer *p;
    while ((p = map_next(&u->peers, &pos)) != NULL)
        peer_free(p);
    map_free(&u->peers);
    map_free(&u->session_bases);
    if (u->opks) {
        OPENSSL_cleanse(u->opks, u->cap_opks * sizeof(*u->opks));
        free(u->opks);
    }
    free(u->seen_bases);
    free(u->name);
    WIPE_PTR(u); /* identity seed, prekey privates */
    free(u);
}

/* Appends `count` fresh one-time prekeys with new ids. 0, or -1 (nothing
 * is added when the array cannot grow; keys made before a failing RNG call
 * are kept, which is fine: each is whole). */
static int opks_generate(struct user *u, size_t count)
{
    if (u->n_opks + count > u->cap_opks) {
        size_t cap = u->n_opks + count + STORE_OPK_TARGET;
        struct one_time_prekey *k = calloc(cap, sizeof(*k));
        if (!k)
            return -1;
        if (u->opks) { /* moved by copy: the old array is wiped, not left in freed heap */
            memcpy(k, u->opks, u->n_opks * sizeof(*k));
            OPENSSL_cleanse(u->opks, u->cap_opks * sizeof(*k));
            free(u->opks);
        }
        u->opks = k;
        u->cap_opks = cap;
    }
    for (size_t i = 0; i < count; i++) {
        if (u->next_opk_id >= STORE_LAST_RESORT_ID) /* 24-bit ids are used up: never reuse */
            return -1;
        struct one_time_prekey *k = &u->opks[u->n_opks];
        *k = (struct one_time_prekey){.id = u->next_opk_id};
        if (curve_generate(&k->kp)) {
            WIPE_PTR(k);
            return -1;
        }
        u->next_opk_id++;
        u->n_opks++;
        note_opk(u, k->id);
        note_user(u); /* its next prekey id */
    }
    return 0;
}

/* Fresh keys for a new local user: identity, signed prekey (id 1) signed
 * over its 33-byte encoding, and STORE_OPK_TARGET one-time prekeys. */
static enum store_result user_create(struct store *st, const char *name, struct user **out)
{
    struct user *u = calloc(1, sizeof(*u));
    uint8_t enc[CURVE_ENCODED_LEN], r[2];
    if (!u || !(u->name = strdup(name))) {
        free(u);
        return STORE_NO_MEMORY;
    }
    u->store = st;
    if (curve_identity_generate(&u->id) || curve_generate(&u->spk) || rand_public(r, 2))
        goto crypto;
    /* libsignal's registration ids are 14-bit, 1..16380. */
    u->registration_id = 1 + (uint32_t)((r[0] << 8 | r[1]) % 16380);
    u->spk_id = 1;
    u->next_opk_id = 1;
    curve_encode(enc, u->spk.pub);
    if (curve_sign(u->spk_sig, &u->id, enc, sizeof(enc)))
        goto crypto;
    *out = u;
    return STORE_OK;
crypto:
    user_free(u);
    return STORE_CRYPTO;
}

enum store_result store_user(struct store *st, const char *name, struct user **out)
{
    struct user *u = store_find_user(st, name);
    if (u) {
        *out = u;
        return STORE_OK;
    }
    if (store_is_remote(st, name))
        return STORE_REMOTE;
    if (st->n_users >= st->max_users)
        return STORE_FULL;
    enum store_result rc = user_create(st, name, &u);
    if (rc)
        return rc;
    if (map_put_str(&st->users, u->name, u)) {
        user_free(u);
        return STORE_NO_MEMORY;
    }
    /* Recorded from here on: the user is in the store, so a failure below
     * leaves it there (without one-time prekeys yet), never half-freed. */
    st->n_users++;
    note_user(u);
    if (opks_generate(u, STORE_OPK_TARGET)) {
        /* The user exists, its keys made; the prekeys come with the next
         * handout's refill. */
        fprintf(stderr, "e2ee-node: could not make one-time prekeys for \"%s\"\n", u->name);
    }
    *out = u;
    return STORE_OK;
}

void store_free(struct store *st)
{
    store_changes_clear(st);
    free(st->changes);
    free(st->gone);
    size_t pos = 0;
    struct user *u;
    char *name;
    while ((u = map_next(&st->users, &pos)) != NULL)
        user_free(u);
    map_free(&st->users);
    pos = 0;
    while ((name = map_next(&st->remote, &pos)) != NULL)
        free(name);
    map_free(&st->remote);
    *st = (struct store){0};
}

/* ============================================================================
 * Peers and sessions
 * ========================================================================== */

struct peer *user_find_peer(const struct user *u, const char *name)
{
    return map_get_str(&u->peers, name);
}

struct peer *user_add_peer(struct user *u, const char *name)
{
    struct peer *p = user_find_peer(u, name);
    if (p)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->name = strdup(name)) || map_put_str(&u->peers, p->name, p)) {
        if (p)
            free(p->name);
        free(p);
        return NULL;
    }
    p->next_rank = 1;
    note_peer(u, p);
    return p;
}

void user_pin_peer(struct user *u, struct peer *p, const uint8_t identity[static CURVE_KEY_LEN])
{
    memcpy(p->identity, identity, CURVE_KEY_LEN);
    p->pinned = true;
    note_peer(u, p);
}

static void forget_base(struct user *u, const struct session *s)
{
    map_remove(&u->session_bases, s->base_key, CURVE_KEY_LEN);
}

void user_remove_peer(struct user *u, struct peer *p)
{
    for (size_t i = 0; i < p->n_sessions; i++) {
        forget_base(u, p->sessions[i]);
        delete_session_row(u, p, p->sessions[i]);
    }
    if (u->store->tracking) {
        uint8_t key[STORE_ROW_KEY_MAX];
        forget_changes(u->store, p, NULL);
        note_delete(u->store, "peer", key, store_peer_key(key, u, p));
    }
    map_remove_str(&u->peers, p->name);
    peer_free(p);
}

void user_remove_peers(struct user *u)
{
    size_t pos = 0;
    struct peer *p;
    /* map_next allows removing the entry it just returned. */
    while ((p = map_next(&u->peers, &pos)) != NULL)
        user_remove_peer(u, p);
}

int user_install_session(struct user *u, struct peer *p, struct session *s)
{
    if (map_put(&u->session_bases, s->base_key, CURVE_KEY_LEN, p))
        return -1;
    if (p->n_sessions == STORE_SESSIONS_MAX) { /* the oldest archived state goes */
        struct session *old = p->sessions[STORE_SESSIONS_MAX - 1];
        forget_base(u, old);
        delete_session_row(u, p, old);
        session_free(old);
        p->n_sessions--;
    }
    memmove(p->sessions + 1, p->sessions, p->n_sessions * sizeof(p->sessions[0]));
    memmove(p->ranks + 1, p->ranks, p->n_sessions * sizeof(p->ranks[0]));
    p->sessions[0] = s;
    p->ranks[0] = p->next_rank++;
    p->n_sessions++;
    user_session_changed(u->store, u, p, s);
    return 0;
}

void user_promote_session(struct user *u, struct peer *p, size_t i)
{
    struct session *s = p->sessions[i];
    if (!i)
        return;
    memmove(p->sessions + 1, p->sessions, i * sizeof(p->sessions[0]));
    memmove(p->ranks + 1, p->ranks, i * sizeof(p->ranks[0]));
    p->sessions[0] = s;
    p->ranks[0] = p->next_rank++;
    user_session_changed(u->store, u, p, s);
}

void user_drop_sessions_except(struct user *u, struct peer *p,
                               const uint8_t identity[static CURVE_KEY_LEN])
{
    size_t j = 0;
    for (size_t i = 0; i < p->n_sessions; i++) {
        struct session *s = p->sessions[i];
        if (!memcmp(s->remote_identity, identity, CURVE_KEY_LEN)) {
            p->ranks[j] = p->ranks[i];
            p->sessions[j++] = s;
        } else {
            forget_base(u, s);
            delete_session_row(u, p, s);
            session_free(s);
        }
    }
    p->n_sessions = j;
}

struct peer *user_session_base_owner(const struct user *u,
                                     const uint8_t base_key[static CURVE_KEY_LEN])
{
    return map_get(&u->session_bases, base_key, CURVE_KEY_LEN);
}

bool user_base_key_seen(const struct user *u, const uint8_t base_key[static CURVE_KEY_LEN])
{
    for (size_t i = 0; i < u->n_seen_bases; i++)
        if (!memcmp(u->seen_bases[i], base_key, CURVE_KEY_LEN))
            return true;
    return false;
}

void user_remember_base_key(struct user *u, const uint8_t base_key[static CURVE_KEY_LEN])
{
    if (!u->seen_bases &&
        !(u->seen_bases = calloc(STORE_SEEN_BASE_KEYS, sizeof(*u->seen_bases))))
        return; /* best effort: the live sessions still catch a recent replay */
    memcpy(u->seen_bases[u->next_seen_base], base_key, CURVE_KEY_LEN);
    u->next_seen_base = (u->next_seen_base + 1) % STORE_SEEN_BASE_KEYS;
    if (u->n_seen_bases < STORE_SEEN_BASE_KEYS)
        u->n_seen_bases++;
    note_seen(u);
}

/* ============================================================================
 * One-time prekeys
 *
 * The array is in ascending id order, and keys are handed out in that
 * order, so the handed-out ones come first and the fresh ones follow.
 * ========================================================================== */

size_t user_fresh_opks(const struct user *u)
{
    size_t fresh = 0;
    for (size_t i = u->n_opks; i-- > 0 && !u->opks[i].handed_out;)
        fresh++;
    return fresh;
}

struct one_time_prekey *user_next_opk(struct user *u)
{
    for (size_t i = 0; i < u->n_opks; i++)
        if (!u->opks[i].handed_out)
            return &u->opks[i];
    return NULL;
}

static void opk_remove_at(struct user *u, size_t i)
{
    if (u->store->tracking) {
        uint8_t key[STORE_ROW_KEY_MAX];
        note_delete(u->store, "opk", key, store_opk_key(key, u, u->opks[i].id));
    }
    WIPE_OBJ(u->opks[i].kp); /* X3DH §3.4: the private key goes */
    memmove(&u->opks[i], &u->opks[i + 1], (u->n_opks - i - 1) * sizeof(u->opks[0]));
    u->n_opks--;
    WIPE_OBJ(u->opks[u->n_opks]);
}

int user_hand_out_opk(struct user *u, struct one_time_prekey *k)
{
    k->handed_out = true;
    note_opk(u, k->id);
    size_t fresh = user_fresh_opks(u);
    /* An unused handed-out key is kept for a first message that may still
     * come, but not forever: the oldest go first. */
    while (u->n_opks - fresh > STORE_OPK_HANDED_MAX)
        opk_remove_at(u, 0);
    if (fresh >= STORE_OPK_REFILL_BELOW)
        return 0;
    return opks_generate(u, STORE_OPK_TARGET - fresh);
}

struct one_time_prekey *user_find_opk(struct user *u, uint32_t id)
{
    size_t lo = 0, hi = u->n_opks;
    while (lo < hi) { /* ids ascend */
        size_t mid = lo + (hi - lo) / 2;
        if (u->opks[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < u->n_opks && u->opks[lo].id == id ? &u->opks[lo] : NULL;
}

void user_delete_opk(struct user *u, uint32_t id)
{
    struct one_time_prekey *k = user_find_opk(u, id);
    if (!k || id == STORE_LAST_RESORT_ID)
        return;
    opk_remove_at(u, (size_t)(k - u->opks));
}
