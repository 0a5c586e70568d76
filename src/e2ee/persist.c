/* persist.c - e2ee-node's store as rows of a state (see persist.h).
 *
 * Values are written field by field in a fixed order (integers big-endian),
 * never as raw structs, so the layout does not depend on the compiler. Each
 * starts with a version byte. Buffers that held keys are wiped.
 */
#include "persist.h"

#include <stdlib.h>
#include <string.h>

#include "securitor/buf.h"
#include "securitor/wipe.h"
#include "rows.h"

/* ============================================================================
 * Objects to values
 * ========================================================================== */

static void write_user(struct buf *b, const struct user *u)
{
    row_u8(b, ROW_VERSION);
    row_bytes(b, u->id.seed, sizeof(u->id.seed));
    row_bytes(b, u->id.x.priv, CURVE_KEY_LEN);
    row_bytes(b, u->id.x.pub, CURVE_KEY_LEN);
    row_u32(b, u->registration_id);
    row_u32(b, u->spk_id);
    row_bytes(b, u->spk.priv, CURVE_KEY_LEN);
    row_bytes(b, u->spk.pub, CURVE_KEY_LEN);
    row_bytes(b, u->spk_sig, CURVE_SIG_LEN);
    row_u32(b, u->next_opk_id);
}

static bool read_user(struct row_reader *r, struct user *u)
{
    if (row_get_u8(r) != ROW_VERSION)
        return false;
    row_get_bytes(r, u->id.seed, sizeof(u->id.seed));
    row_get_bytes(r, u->id.x.priv, CURVE_KEY_LEN);
    row_get_bytes(r, u->id.x.pub, CURVE_KEY_LEN);
    u->registration_id = row_get_u32(r);
    u->spk_id = row_get_u32(r);
    row_get_bytes(r, u->spk.priv, CURVE_KEY_LEN);
    row_get_bytes(r, u->spk.pub, CURVE_KEY_LEN);
    row_get_bytes(r, u->spk_sig, CURVE_SIG_LEN);
    u->next_opk_id = row_get_u32(r);
    /* ed_pub is not stored: made again from the seed, which must fit x. */
    return row_done(r) && curve_identity_restore(&u->id) == 0;
}

static void write_opk(struct buf *b, const struct one_time_prekey *k)
{
    row_u8(b, ROW_VERSION);
    row_u8(b, k->handed_out);
    row_bytes(b, k->kp.priv, CURVE_KEY_LEN);
    row_bytes(b, k->kp.pub, CURVE_KEY_LEN);
}

static bool read_opk(struct row_reader *r, struct one_time_prekey *k)
{
    if (row_get_u8(r) != ROW_VERSION)
        return false;
    k->handed_out = row_get_bool(r);
    row_get_bytes(r, k->kp.priv, CURVE_KEY_LEN);
    row_get_bytes(r, k->kp.pub, CURVE_KEY_LEN);
    return row_done(r);
}

static void write_peer(struct buf *b, const struct peer *p)
{
    row_u8(b, ROW_VERSION);
    row_u8(b, p->pinned);
    row_bytes(b, p->identity, CURVE_KEY_LEN);
}

static bool read_peer(struct row_reader *r, struct peer *p)
{
    if (row_get_u8(r) != ROW_VERSION)
        return false;
    p->pinned = row_get_bool(r);
    row_get_bytes(r, p->identity, CURVE_KEY_LEN);
    return row_done(r);
}

static void write_session(struct buf *b, const struct session *s, uint64_t rank)
{
    const struct ratchet_core *c = &s->core;
    row_u8(b, ROW_VERSION);
    row_u64(b, rank);
    row_bytes(b, c->root_key, 32);
    row_bytes(b, c->self.priv, CURVE_KEY_LEN);
    row_bytes(b, c->self.pub, CURVE_KEY_LEN);
    row_bytes(b, c->remote, 32);
    row_u8(b, c->has_recv);
    row_u8(b, c->has_send);
    row_bytes(b, c->send_ck, 32);
    row_bytes(b, c->recv_ck, 32);
    row_u32(b, c->send_n);
    row_u32(b, c->recv_n);
    row_u32(b, c->previous_counter);
    row_u32(b, c->n_retired);
    row_bytes(b, c->retired, sizeof(c->retired));
    row_bytes(b, s->local_identity, 32);
    row_bytes(b, s->remote_identity, 32);
    row_bytes(b, s->base_key, 32);
    row_bytes(b, s->id, 36);
    row_u32(b, s->remote_registration_id);
    row_u8(b, s->pending_prekey);
    row_u32(b, s->pending_pre_key_id);
    row_u32(b, s->pending_signed_pre_key_id);
    row_u32(b, (uint32_t)s->n_skipped);
    for (size_t i = 0; i < s->n_skipped; i++) {
        row_bytes(b, s->skipped[i].ratchet_key, 32);
        row_u32(b, s->skipped[i].counter);
        row_bytes(b, s->skipped[i].seed, 32);
    }
}

/* Reads a session into s (zeroed); its skipped keys are allocated. */
static bool read_session(struct row_reader *r, struct session *s, uint64_t *rank)
{
    struct ratchet_core *c = &s->core;
    if (row_get_u8(r) != ROW_VERSION)
        return false;
    *rank = row_get_u64(r);
    row_get_bytes(r, c->root_key, 32);
    row_get_bytes(r, c->self.priv, CURVE_KEY_LEN);
    row_get_bytes(r, c->self.pub, CURVE_KEY_LEN);
    row_get_bytes(r, c->remote, 32);
    c->has_recv = row_get_bool(r);
    c->has_send = row_get_bool(r);
    row_get_bytes(r, c->send_ck, 32);
    row_get_bytes(r, c->recv_ck, 32);
    c->send_n = row_get_u32(r);
    c->recv_n = row_get_u32(r);
    c->previous_counter = row_get_u32(r);
    c->n_retired = row_get_u32(r);
    row_get_bytes(r, c->retired, sizeof(c->retired));
    row_get_bytes(r, s->local_identity, 32);
    row_get_bytes(r, s->remote_identity, 32);
    row_get_bytes(r, s->base_key, 32);
    row_get_bytes(r, s->id, 36);
    s->id[36] = 0;
    s->remote_registration_id = row_get_u32(r);
    s->pending_prekey = row_get_bool(r);
    s->pending_pre_key_id = row_get_u32(r);
    s->pending_signed_pre_key_id = row_get_u32(r);
    uint32_t n = row_get_u32(r);
    if (r->bad || c->n_retired > RATCHET_RETIRED || n > RATCHET_MAX_STORED ||
        (size_t)(r->end - r->p) != (size_t)n * 68)
        return false;
    if (n && !(s->skipped = calloc(n, sizeof(*s->skipped))))
        return false;
    s->n_skipped = s->cap_skipped = n;
    for (uint32_t i = 0; i < n; i++) {
        row_get_bytes(r, s->skipped[i].ratchet_key, 32);
        s->skipped[i].counter = row_get_u32(r);
        row_get_bytes(r, s->skipped[i].seed, 32);
    }
    return row_done(r);
}

static void write_seen(struct buf *b, const struct user *u)
{
    row_u8(b, ROW_VERSION);
    row_u32(b, (uint32_t)u->n_seen_bases);
    row_u32(b, (uint32_t)u->next_seen_base);
    row_bytes(b, u->seen_bases, u->n_seen_bases * CURVE_KEY_LEN);
}

/* ============================================================================
 * Changes to rows
 * ========================================================================== */

int persist_changes(struct store *st, struct state *state)
{
    struct buf b = {0};
    struct map done_sessions = {0}, done_peers = {0};
    uint8_t key[STORE_ROW_KEY_MAX];
    int rc = st->changes_lost ? -1 : 0;
    store_changes_settle(st); /* the records of freed objects are dead */
    for (size_t i = 0; i < st->n_changes && !rc; i++) {
        struct store_change *c = &st->changes[i];
        struct user *u = c->u;
        size_t n;
        if (c->dead)
            continue;
        buf_reset(&b);
        switch (c->kind) {
        case CHANGE_USER:
            write_user(&b, u);
            rc = state_put_buf(state, "user", u->name, strlen(u->name), &b);
            break;
        case CHANGE_SEEN:
            write_seen(&b, u);
            rc = state_put_buf(state, "seen", u->name, strlen(u->name), &b);
            break;
        case CHANGE_OPK: {
            const struct one_time_prekey *k = user_find_opk(u, c->opk_id);
            if (!k) /* used or dropped since: its deletion is recorded after */
                break;
            write_opk(&b, k);
            n = store_opk_key(key, u, c->opk_id);
            rc = state_put_buf(state, "opk", key, n, &b);
            break;
        }
        case CHANGE_PEER:
            if (map_get(&done_peers, &c->p, sizeof(c->p)))
                break;
            write_peer(&b, c->p);
            n = store_peer_key(key, u, c->p);
            rc = state_put_buf(state, "peer", key, n, &b) ||
                 map_put(&done_peers, &c->p, sizeof(c->p), c);
            break;
        case CHANGE_SESSION: {
            if (map_get(&done_sessions, &c->s, sizeof(c->s)))
                break;
            size_t at = 0;
            while (at < c->p->n_sessions && c->p->sessions[at] != c->s)
                at++;
            if (at == c->p->n_sessions) { /* gone without a record: a bug */
                rc = -1;
                break;
            }
            write_session(&b, c->s, c->p->ranks[at]);
            n = store_session_key(key, u, c->p, c->s);
            rc = state_put_buf(state, "session", key, n, &b) ||
                 map_put(&done_sessions, &c->s, sizeof(c->s), c);
            break;
        }
        case CHANGE_REMOTE:
            rc = state_put(state, "remote", c->row_key, c->row_key_len, "", 0);
            break;
        case CHANGE_DELETE:
            rc = state_del(state, c->row_kind, c->row_key, c->row_key_len);
            break;
        }
    }
    buf_free(&b); /* wipes what it held: keys */
    map_free(&done_sessions);
    map_free(&done_peers);
    store_changes_clear(st);
    return rc ? -1 : 0;
}

/* ============================================================================
 * Rows to a store
 * ========================================================================== */

enum row_kind { ROW_USER, ROW_OPK, ROW_PEER, ROW_SESSION, ROW_REMOTE, ROW_SEEN, ROW_KINDS };

static const char *const KIND_NAMES[ROW_KINDS] = {"user", "opk", "peer", "session", "remote",
                                                  "seen"};

struct row {
    uint8_t *key, *value;
    size_t key_len, value_len;
};

struct persist_loader {
    struct row *rows[ROW_KINDS];
    size_t n[ROW_KINDS], cap[ROW_KINDS];
};

struct persist_loader *persist_loader_new(void) { return calloc(1, sizeof(struct persist_loader)); }

void persist_loader_free(struct persist_loader *l)
{
    if (!l)
        return;
    for (int k = 0; k < ROW_KINDS; k++) {
        for (size_t i = 0; i < l->n[k]; i++) {
            wipe_bytes(l->rows[k][i].value, l->rows[k][i].value_len);
            free(l->rows[k][i].value);
            free(l->rows[k][i].key);
        }
        free(l->rows[k]);
    }
    free(l);
}

int persist_load_row(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                     const uint8_t *value, size_t value_len)
{
    struct persist_loader *l = ctx;
    int k = 0;
    while (k < ROW_KINDS && strcmp(kind, KIND_NAMES[k]))
        k++;
    if (k == ROW_KINDS)
        return -1; /* a row of a kind this node does not keep */
    if (l->n[k] == l->cap[k]) {
        size_t cap = l->cap[k] ? 2 * l->cap[k] : 64;
        struct row *r = realloc(l->rows[k], cap * sizeof(*r));
        if (!r)
            return -1;
        l->rows[k] = r;
        l->cap[k] = cap;
    }
    struct row *r = &l->rows[k][l->n[k]];
    r->key = malloc(key_len + 1);
    r->value = malloc(value_len ? value_len : 1);
    if (!r->key || !r->value) {
        free(r->key);
        free(r->value);
        return -1;
    }
    memcpy(r->key, key, key_len);
    r->key[key_len] = 0;
    if (value_len)
        memcpy(r->value, value, value_len);
    r->key_len = key_len;
    r->value_len = value_len;
    l->n[k]++;
    return 0;
}

/* Splits a row key "a\0b[\0c]" into its parts; the names must be names. */
static bool split_key(const struct row *r, const char **a, const char **b, const uint8_t **rest,
                      size_t rest_len)
{
    const char *k = (const char *)r->key;
    size_t la = strnlen(k, r->key_len);
    *a = k;
    if (!la || la > STORE_NAME_MAX)
        return false;
    if (!b)
        return la == r->key_len;
    if (la == r->key_len)
        return false;
    const char *kb = k + la + 1;
    size_t room = r->key_len - la - 1;
    if (rest) { /* b then \0 then exactly rest_len bytes */
        if (room < rest_len + 2)
            return false;
        size_t lb = room - rest_len - 1;
        if (kb[lb] || strnlen(kb, lb) != lb)
            return false;
        *rest = (const uint8_t *)kb + lb + 1;
    } else if (strnlen(kb, room) != room) {
        return false;
    }
    *b = kb;
    return **b != 0;
}

struct loaded_session {
    struct session *s;
    uint64_t rank;
};

static int by_id(const void *a, const void *b)
{
    uint32_t x = ((const struct one_time_prekey *)a)->id, y = ((const struct one_time_prekey *)b)->id;
    return x < y ? -1 : x > y;
}

static int by_rank_desc(const void *a, const void *b)
{
    uint64_t x = ((const struct loaded_session *)a)->rank;
    uint64_t y = ((const struct loaded_session *)b)->rank;
    return x > y ? -1 : x < y;
}

int persist_finish(struct persist_loader *l, struct store *st)
{
    int rc = -1;
    if (!l)
        return -1;
    /* Users first: every other row belongs to one. */
    for (size_t i = 0; i < l->n[ROW_USER]; i++) {
        struct row *r = &l->rows[ROW_USER][i];
        const char *name;
        struct user *u = calloc(1, sizeof(*u));
        struct row_reader rd = row_reader(r->value, r->value_len);
        if (!u)
            goto out;
        u->store = st;
        if (!split_key(r, &name, NULL, NULL, 0) || !(u->name = strdup(name)) ||
            !read_user(&rd, u) || store_find_user(st, name) ||
            map_put_str(&st->users, u->name, u)) {
            free(u->name);
            WIPE_PTR(u);
            free(u);
            goto out;
        }
        st->n_users++;
    }
    for (size_t i = 0; i < l->n[ROW_OPK]; i++) {
        struct row *r = &l->rows[ROW_OPK][i];
        size_t la = strnlen((const char *)r->key, r->key_len); /* "name\0" and a 4-byte id */
        if (!la || la > STORE_NAME_MAX || la + 5 != r->key_len)
            goto out;
        const uint8_t *id_bytes = r->key + la + 1;
        struct user *u = store_find_user(st, (const char *)r->key);
        if (!u)
            goto out;
        if (u->n_opks == u->cap_opks) {
            size_t cap = u->cap_opks ? 2 * u->cap_opks : 128;
            struct one_time_prekey *k = calloc(cap, sizeof(*k));
            if (!k)
                goto out;
            if (u->opks) {
                memcpy(k, u->opks, u->n_opks * sizeof(*k));
                OPENSSL_cleanse(u->opks, u->cap_opks * sizeof(*k));
                free(u->opks);
            }
            u->opks = k;
            u->cap_opks = cap;
        }
        struct one_time_prekey *k = &u->opks[u->n_opks];
        struct row_reader rd = row_reader(r->value, r->value_len);
        k->id = (uint32_t)id_bytes[0] << 24 | (uint32_t)id_bytes[1] << 16 |
                (uint32_t)id_bytes[2] << 8 | id_bytes[3];
        if (!read_opk(&rd, k) || k->id >= u->next_opk_id)
            goto out;
        u->n_opks++;
    }
    size_t pos = 0;
    struct user *u;
    while ((u = map_next(&st->users, &pos)) != NULL) {
        if (u->n_opks) /* qsort's base may not be NULL, even for no items */
            qsort(u->opks, u->n_opks, sizeof(*u->opks), by_id);
        for (size_t i = 1; i < u->n_opks; i++) /* handed out ones come first */
            if (u->opks[i].id == u->opks[i - 1].id ||
                (u->opks[i].handed_out && !u->opks[i - 1].handed_out))
                goto out;
    }
    for (size_t i = 0; i < l->n[ROW_REMOTE]; i++) {
        const char *name;
        if (!split_key(&l->rows[ROW_REMOTE][i], &name, NULL, NULL, 0) ||
            l->rows[ROW_REMOTE][i].value_len || store_mark_remote(st, name))
            goto out;
    }
    for (size_t i = 0; i < l->n[ROW_PEER]; i++) {
        struct row *r = &l->rows[ROW_PEER][i];
        const char *name, *peer;
        struct row_reader rd = row_reader(r->value, r->value_len);
        if (!split_key(r, &name, &peer, NULL, 0) || strlen(peer) > STORE_NAME_MAX ||
            !(u = store_find_user(st, name)) || user_find_peer(u, peer))
            goto out;
        struct peer *p = user_add_peer(u, peer);
        if (!p || !read_peer(&rd, p))
            goto out;
    }
    /* Sessions: attached to their peers in rank order, newest first. */
    for (size_t i = 0; i < l->n[ROW_SESSION]; i++) {
        struct row *r = &l->rows[ROW_SESSION][i];
        const char *name, *peer;
        const uint8_t *base;
        struct session *s = calloc(1, sizeof(*s));
        struct row_reader rd = row_reader(r->value, r->value_len);
        uint64_t rank;
        struct peer *p;
        if (!s)
            goto out;
        if (!split_key(r, &name, &peer, &base, CURVE_KEY_LEN) ||
            !(u = store_find_user(st, name)) || !(p = user_find_peer(u, peer)) ||
            !read_session(&rd, s, &rank) || memcmp(base, s->base_key, CURVE_KEY_LEN) ||
            p->n_sessions == STORE_SESSIONS_MAX ||
            map_put(&u->session_bases, s->base_key, CURVE_KEY_LEN, p)) {
            session_wipe(s);
            free(s);
            goto out;
        }
        p->sessions[p->n_sessions] = s;
        p->ranks[p->n_sessions++] = rank;
    }
    pos = 0;
    while ((u = map_next(&st->users, &pos)) != NULL) {
        size_t ppos = 0;
        struct peer *p;
        while ((p = map_next(&u->peers, &ppos)) != NULL) {
            struct loaded_session tmp[STORE_SESSIONS_MAX];
            for (size_t i = 0; i < p->n_sessions; i++)
                tmp[i] = (struct loaded_session){p->sessions[i], p->ranks[i]};
            qsort(tmp, p->n_sessions, sizeof(tmp[0]), by_rank_desc);
            p->next_rank = 1;
            for (size_t i = 0; i < p->n_sessions; i++) {
                p->sessions[i] = tmp[i].s;
                p->ranks[i] = tmp[i].rank;
                if (tmp[i].rank >= p->next_rank)
                    p->next_rank = tmp[i].rank + 1;
            }
        }
    }
    for (size_t i = 0; i < l->n[ROW_SEEN]; i++) {
        struct row *r = &l->rows[ROW_SEEN][i];
        const char *name;
        struct row_reader rd = row_reader(r->value, r->value_len);
        if (!split_key(r, &name, NULL, NULL, 0) || !(u = store_find_user(st, name)) ||
            row_get_u8(&rd) != ROW_VERSION)
            goto out;
        uint32_t n = row_get_u32(&rd), next = row_get_u32(&rd);
        if (rd.bad || n > STORE_SEEN_BASE_KEYS || next >= STORE_SEEN_BASE_KEYS ||
            (size_t)(rd.end - rd.p) != (size_t)n * CURVE_KEY_LEN ||
            !(u->seen_bases = calloc(STORE_SEEN_BASE_KEYS, sizeof(*u->seen_bases))))
            goto out;
        row_get_bytes(&rd, u->seen_bases, (size_t)n * CURVE_KEY_LEN);
        u->n_seen_bases = n;
        u->next_seen_base = next;
    }
    rc = 0;
out:
    store_changes_clear(st); /* loading records nothing to write back */
    persist_loader_free(l);
    return rc;
}
