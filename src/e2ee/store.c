/* store.c - users, peers and sessions (see store.h). */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "securitor/rand.h"
#include "securitor/wipe.h"

/* Room for one more element after n: returns arr, or arr reallocated (with
 * *cap updated), or NULL when memory runs out (arr is then untouched). */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(arr, c * elem);
    if (p)
        *cap = c;
    return p;
}

struct user *store_find_user(struct store *st, const char *name)
{
    for (size_t i = 0; i < st->n_users; i++)
        if (!strcmp(st->users[i]->name, name))
            return st->users[i];
    return NULL;
}

bool store_is_remote(const struct store *st, const char *name)
{
    for (size_t i = 0; i < st->n_remote; i++)
        if (!strcmp(st->remote[i], name))
            return true;
    return false;
}

int store_mark_remote(struct store *st, const char *name)
{
    if (store_is_remote(st, name))
        return 0;
    char *copy = strdup(name);
    char **remote = copy ? grow(st->remote, &st->cap_remote, st->n_remote, sizeof(*remote)) : NULL;
    if (!remote) {
        free(copy);
        return -1;
    }
    st->remote = remote;
    st->remote[st->n_remote++] = copy;
    return 0;
}

static void user_free(struct user *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n_peers; i++) {
        struct peer *p = u->peers[i];
        for (size_t j = 0; j < p->n_sessions; j++) {
            session_wipe(p->sessions[j]);
            free(p->sessions[j]);
        }
        free(p->name);
        WIPE_PTR(p);
        free(p);
    }
    free(u->peers);
    free(u->name);
    WIPE_PTR(u); /* identity seed, prekey privates */
    free(u);
}

/* Fresh keys for a new local user: identity, signed prekey (id 1) signed
 * over its 33-byte encoding, and STORE_OPK_COUNT one-time prekeys. */
static enum store_result user_create(const char *name, struct user **out)
{
    struct user *u = calloc(1, sizeof(*u));
    uint8_t enc[CURVE_ENCODED_LEN], r[2];
    if (!u || !(u->name = strdup(name))) {
        free(u);
        return STORE_NO_MEMORY;
    }
    if (curve_identity_generate(&u->id) || curve_generate(&u->spk) || rand_public(r, 2))
        goto crypto;
    /* libsignal's registration ids are 14-bit, 1..16380. */
    u->registration_id = 1 + (uint32_t)((r[0] << 8 | r[1]) % 16380);
    u->spk_id = 1;
    curve_encode(enc, u->spk.pub);
    if (curve_sign(u->spk_sig, &u->id, enc, sizeof(enc)))
        goto crypto;
    for (size_t i = 0; i < STORE_OPK_COUNT; i++) {
        u->opks[i].id = (uint32_t)i + 1;
        if (curve_generate(&u->opks[i].kp))
            goto crypto;
    }
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
    struct user **users = grow(st->users, &st->cap_users, st->n_users, sizeof(*users));
    if (!users)
        return STORE_NO_MEMORY;
    st->users = users;
    enum store_result rc = user_create(name, &u);
    if (rc)
        return rc;
    st->users[st->n_users++] = u;
    *out = u;
    return STORE_OK;
}

struct peer *user_find_peer(const struct user *u, const char *name)
{
    for (size_t i = 0; i < u->n_peers; i++)
        if (!strcmp(u->peers[i]->name, name))
            return u->peers[i];
    return NULL;
}

struct peer *user_peer(struct user *u, const char *name)
{
    struct peer *p = user_find_peer(u, name);
    if (p)
        return p;
    struct peer **peers = grow(u->peers, &u->cap_peers, u->n_peers, sizeof(*peers));
    if (!peers)
        return NULL;
    u->peers = peers;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->name = strdup(name))) {
        free(p);
        return NULL;
    }
    u->peers[u->n_peers++] = p;
    return p;
}

void peer_install_session(struct peer *p, struct session *s)
{
    if (p->n_sessions == STORE_SESSIONS_MAX) { /* the oldest archived state goes */
        session_wipe(p->sessions[STORE_SESSIONS_MAX - 1]);
        free(p->sessions[STORE_SESSIONS_MAX - 1]);
        p->n_sessions--;
    }
    memmove(p->sessions + 1, p->sessions, p->n_sessions * sizeof(p->sessions[0]));
    p->sessions[0] = s;
    p->n_sessions++;
}

void peer_promote_session(struct peer *p, size_t i)
{
    struct session *s = p->sessions[i];
    memmove(p->sessions + 1, p->sessions, i * sizeof(p->sessions[0]));
    p->sessions[0] = s;
}

void peer_drop_sessions_except(struct peer *p, const uint8_t identity[static CURVE_KEY_LEN])
{
    size_t j = 0;
    for (size_t i = 0; i < p->n_sessions; i++) {
        if (!memcmp(p->sessions[i]->remote_identity, identity, CURVE_KEY_LEN)) {
            p->sessions[j++] = p->sessions[i];
        } else {
            session_wipe(p->sessions[i]);
            free(p->sessions[i]);
        }
    }
    p->n_sessions = j;
}

struct one_time_prekey *user_take_opk(struct user *u)
{
    while (u->next_opk < STORE_OPK_COUNT) {
        struct one_time_prekey *k = &u->opks[u->next_opk++];
        if (!k->handed_out && !k->deleted) {
            k->handed_out = true;
            return k;
        }
    }
    return NULL;
}

struct one_time_prekey *user_find_opk(struct user *u, uint32_t id)
{
    for (size_t i = 0; i < STORE_OPK_COUNT; i++)
        if (u->opks[i].id == id && !u->opks[i].deleted)
            return &u->opks[i];
    return NULL;
}

void user_delete_opk(struct one_time_prekey *k)
{
    if (k->id == STORE_LAST_RESORT_ID)
        return;
    WIPE_OBJ(k->kp.priv); /* X3DH §3.4: forward secrecy for this message */
    k->deleted = true;
}

void store_free(struct store *st)
{
    for (size_t i = 0; i < st->n_users; i++)
        user_free(st->users[i]);
    free(st->users);
    for (size_t i = 0; i < st->n_remote; i++)
        free(st->remote[i]);
    free(st->remote);
    *st = (struct store){0};
}
