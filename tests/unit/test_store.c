/* test_store.c - e2ee-node's store and conversation module.
 *
 * - Users and peers are found by hash: 200,000 peers of one user are added
 *   and found in well under the time a linear scan would take (a scan made
 *   100,000 peers cost 35 s).
 * - One-time prekeys: handed out once each in id order, refilled before they
 *   run out, ids never reused, handed-out keys kept (bounded) until used.
 * - A peer keeps STORE_SESSIONS_MAX states; the base-key index follows.
 * - Every conv_* call that fails leaves the store unchanged: no peer made, no
 *   remote mark, no one-time prekey handed out, no pin.
 * - Change records follow freed objects (a property test): under random
 *   installs, evictions, promotions, drops, peer removals and revocations,
 *   exactly the records whose session or peer went after they were made are
 *   dead at a commit, even when malloc hands a freed address out again; each
 *   commit goes to a real state, and the state read back equals the store.
 *   A revocation deleting 40,000 sessions is linear (it scanned every record
 *   per session: 0.8 s).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "conversation.h"
#include "persist.h"
#include "securitor/rand.h"
#include "store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct user *make_user(struct store *st, const char *name)
{
    struct user *u = NULL;
    CHECK(store_user(st, name, &u) == STORE_OK && u);
    return u;
}

static void test_many_peers(void)
{
    struct store st;
    store_init(&st, 10);
    struct user *u = make_user(&st, "alice");
    char name[32];
    const int n = 200000;
    double t0 = now();
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "peer-%d", i);
        CHECK(user_add_peer(u, name) != NULL);
    }
    int found = 0;
    for (int i = n - 1; i >= 0; i--) {
        snprintf(name, sizeof(name), "peer-%d", i);
        struct peer *p = user_find_peer(u, name);
        found += p && !strcmp(p->name, name);
    }
    double spent = now() - t0;
    printf("%d peers added and found in %.2f s\n", n, spent);
    CHECK(found == n);
    CHECK(user_find_peer(u, "peer-x") == NULL);
    /* A linear scan would take n^2/2 = 2e10 comparisons: minutes. (Under
     * valgrind everything is 50 times slower; only its checks count there.) */
    CHECK(RUNNING_ON_VALGRIND || spent < 10.0);
    /* Users too, and the cap. */
    struct user *v;
    for (int i = 0; i < 9; i++) {
        snprintf(name, sizeof(name), "user-%d", i);
        make_user(&st, name);
    }
    CHECK(store_user(&st, "one-too-many", &v) == STORE_FULL);
    CHECK(store_find_user(&st, "user-8") != NULL);
    /* A revoked device's peers all go, however many (they went 256 at most). */
    user_remove_peers(u);
    CHECK(user_find_peer(u, "peer-0") == NULL && user_find_peer(u, "peer-199999") == NULL);
    size_t pos = 0;
    CHECK(map_next(&u->peers, &pos) == NULL);
    store_free(&st);
}

static void test_one_time_prekeys(void)
{
    struct store st;
    store_init(&st, 10);
    struct user *u = make_user(&st, "bob");
    uint32_t last = 0;
    CHECK(user_fresh_opks(u) == STORE_OPK_TARGET);
    for (int i = 0; i < 1500; i++) {
        struct one_time_prekey *k = user_next_opk(u);
        CHECK(k != NULL);
        if (!k)
            break;
        uint32_t id = k->id;
        CHECK(id == last + 1); /* in order, never reused */
        last = id;
        CHECK(user_hand_out_opk(u, k) == 0);
        CHECK(user_fresh_opks(u) >= STORE_OPK_REFILL_BELOW);
        CHECK(u->n_opks - user_fresh_opks(u) <= STORE_OPK_HANDED_MAX);
    }
    /* The oldest unused handed-out keys are gone; the newest are kept. */
    CHECK(user_find_opk(u, 1) == NULL);
    CHECK(user_find_opk(u, last) != NULL && user_find_opk(u, last)->handed_out);
    user_delete_opk(u, last);
    CHECK(user_find_opk(u, last) == NULL);
    CHECK(user_next_opk(u)->id == last + 1);
    store_free(&st);
}

/* A session with a chosen base key (only the fields the store reads). */
static struct session *fake_session(uint8_t tag, const uint8_t identity[32])
{
    struct session *s = calloc(1, sizeof(*s));
    memset(s->base_key, tag, 32);
    memcpy(s->remote_identity, identity, 32);
    return s;
}

static void test_archived_states(void)
{
    struct store st;
    store_init(&st, 10);
    struct user *u = make_user(&st, "bob");
    struct peer *p = user_add_peer(u, "alice");
    uint8_t ik[32] = {1}, base[32];
    for (int i = 0; i < STORE_SESSIONS_MAX + 5; i++)
        CHECK(user_install_session(u, p, fake_session((uint8_t)(i + 1), ik)) == 0);
    CHECK(p->n_sessions == STORE_SESSIONS_MAX);
    CHECK(p->sessions[0]->base_key[0] == STORE_SESSIONS_MAX + 5); /* newest is current */
    memset(base, 1, 32); /* the first: archived away */
    CHECK(user_session_base_owner(u, base) == NULL);
    memset(base, 6, 32); /* the oldest still kept */
    CHECK(user_session_base_owner(u, base) == p);
    uint8_t other[32] = {2};
    user_drop_sessions_except(u, p, other);
    CHECK(p->n_sessions == 0 && user_session_base_owner(u, base) == NULL);
    CHECK(!user_base_key_seen(u, base));
    user_remember_base_key(u, base);
    CHECK(user_base_key_seen(u, base));
    store_free(&st);
}

static void test_failures_change_nothing(void)
{
    struct store st;
    struct bundle b;
    struct session *s;
    uint8_t root[32];
    store_init(&st, 10);
    struct user *alice = make_user(&st, "alice"), *bob = make_user(&st, "bob");
    struct user *mallory = make_user(&st, "mallory");

    /* A bad signature, for a new remote name. */
    conv_bundle(mallory, &b, false);
    b.spk_sig[5] ^= 1;
    CHECK(conv_initiate(&st, alice, "remote", &b, &s, root) == CONV_BAD_SIGNATURE);
    CHECK(user_find_peer(alice, "remote") == NULL && !store_is_remote(&st, "remote"));
    /* mallory's good bundle presented as bob's: bob is local. */
    b.spk_sig[5] ^= 1;
    CHECK(conv_initiate(&st, alice, "bob", &b, &s, root) == CONV_LOCAL_IDENTITY);
    CHECK(user_find_peer(alice, "bob") == NULL);
    /* A low-order one-time prekey (not covered by the signature) gives an
     * unusable DH. */
    conv_bundle(bob, &b, false);
    memset(b.opk, 0, sizeof(b.opk));
    b.has_opk = true;
    CHECK(conv_initiate(&st, alice, "bob", &b, &s, root) == CONV_UNUSABLE_KEY);
    CHECK(user_find_peer(alice, "bob") == NULL);
    /* A pin on a name without keys: the local initiation stops before
     * making keys for it or handing anything out. */
    struct peer *p = user_add_peer(alice, "carol");
    p->pinned = true;
    memset(p->identity, 7, 32);
    CHECK(conv_initiate_local(&st, alice, "carol", &s, root) == CONV_IDENTITY_CHANGED);
    CHECK(store_find_user(&st, "carol") == NULL);
    /* The same with a pinned foreign identity for a local user. */
    p = user_add_peer(alice, "bob");
    p->pinned = true;
    memset(p->identity, 7, 32);
    uint32_t next = user_next_opk(bob)->id;
    CHECK(conv_initiate_local(&st, alice, "bob", &s, root) == CONV_IDENTITY_CHANGED);
    CHECK(user_next_opk(bob)->id == next); /* nothing handed out */
    /* And success hands exactly one out. */
    memcpy(p->identity, bob->id.x.pub, 32);
    CHECK(conv_initiate_local(&st, alice, "bob", &s, root) == CONV_OK);
    CHECK(user_next_opk(bob)->id == next + 1 && p->n_sessions == 1);
    store_free(&st);
}

/* --- change records and freed objects ----------------------------------- */

#define PT_PEERS 6
#define PT_OPS 20000

/* The model: every session and peer the test made, by serial. */
struct pt_obj {
    const void *ptr;
    bool live;
    unsigned died_in; /* the batch it went in */
};

struct pt {
    struct store st;
    struct state *state;
    struct user *u;
    struct pt_obj *sessions, *peers;
    size_t n_sessions, n_peers;
    size_t slot[PT_PEERS]; /* the live peer's serial + 1, or 0 */
    size_t live[PT_PEERS * STORE_SESSIONS_MAX + 1]; /* live session serials */
    size_t n_live;
    size_t *rec_s, *rec_p; /* per record: its session / peer serial + 1, or 0 */
    size_t n_recs, cap_recs;
    unsigned batch;
    size_t reused, checked, dead_seen, commits, unmapped;
    uint32_t next_base;
};

static const char *pt_name(size_t slot)
{
    static const char *names[PT_PEERS] = {"p0", "p1", "p2", "p3", "p4", "p5"};
    return names[slot];
}

/* Was ptr the address of an object that went in this batch? */
static bool pt_reused(const struct pt *t, const struct pt_obj *objs, size_t n, const void *ptr)
{
    for (size_t i = n; i-- > 0;)
        if (objs[i].ptr == ptr)
            return !objs[i].live && objs[i].died_in == t->batch;
    return false;
}

static size_t pt_new(struct pt *t, struct pt_obj *objs, size_t *n, const void *ptr)
{
    t->reused += pt_reused(t, objs, *n, ptr);
    objs[*n] = (struct pt_obj){.ptr = ptr, .live = true};
    return (*n)++;
}

/* After an operation: which objects went, and what the new records point at
 * (only objects live after the operation: none makes a record for an object
 * it frees). */
static void pt_observe(struct pt *t)
{
    for (size_t k = 0; k < PT_PEERS; k++) {
        if (t->slot[k] && !user_find_peer(t->u, pt_name(k))) {
            t->peers[t->slot[k] - 1].live = false;
            t->peers[t->slot[k] - 1].died_in = t->batch;
            t->slot[k] = 0;
        }
    }
    for (size_t j = 0; j < t->n_live;) {
        struct pt_obj *o = &t->sessions[t->live[j]];
        bool found = false;
        for (size_t k = 0; k < PT_PEERS && !found; k++) {
            struct peer *p = t->slot[k] ? user_find_peer(t->u, pt_name(k)) : NULL;
            for (size_t i = 0; p && i < p->n_sessions && !found; i++)
                found = p->sessions[i] == o->ptr;
        }
        if (found) {
            j++;
            continue;
        }
        o->live = false;
        o->died_in = t->batch;
        t->live[j] = t->live[--t->n_live];
    }
    if (t->st.n_changes > t->cap_recs) {
        t->cap_recs = 2 * t->st.n_changes;
        t->rec_s = realloc(t->rec_s, t->cap_recs * sizeof(*t->rec_s));
        t->rec_p = realloc(t->rec_p, t->cap_recs * sizeof(*t->rec_p));
        CHECK(t->rec_s && t->rec_p);
    }
    for (; t->n_recs < t->st.n_changes; t->n_recs++) {
        const struct store_change *c = &t->st.changes[t->n_recs];
        size_t rs = 0, rp = 0;
        for (size_t j = 0; c->s && j < t->n_live && !rs; j++)
            if (t->sessions[t->live[j]].ptr == c->s)
                rs = t->live[j] + 1;
        for (size_t k = 0; c->p && k < PT_PEERS && !rp; k++)
            if (t->slot[k] && t->peers[t->slot[k] - 1].ptr == c->p)
                rp = t->slot[k];
        t->unmapped += !c->s != !rs || !c->p != !rp; /* each points at a live object */
        t->rec_s[t->n_recs] = rs;
        t->rec_p[t->n_recs] = rp;
    }
}

/* Settles the records and compares every dead flag with the model: dead
 * exactly when its session or its peer went after it was made. */
static void pt_check(struct pt *t)
{
    size_t wrong = 0;
    store_changes_settle(&t->st);
    CHECK(t->n_recs == t->st.n_changes);
    for (size_t i = 0; i < t->n_recs; i++) {
        bool dead = (t->rec_s[i] && !t->sessions[t->rec_s[i] - 1].live) ||
                    (t->rec_p[i] && !t->peers[t->rec_p[i] - 1].live);
        wrong += t->st.changes[i].dead != dead;
        t->dead_seen += dead;
    }
    CHECK(wrong == 0);
    t->checked++;
}

static void pt_commit(struct pt *t)
{
    pt_check(t);
    CHECK(persist_changes(&t->st, t->state) == 0);
    CHECK(state_commit(t->state) == 0);
    CHECK(t->st.n_changes == 0);
    t->n_recs = 0;
    t->batch++;
    t->commits++;
}

static struct peer *pt_peer(struct pt *t, size_t k)
{
    struct peer *p = user_find_peer(t->u, pt_name(k));
    if (!p && (p = user_add_peer(t->u, pt_name(k))) != NULL)
        t->slot[k] = pt_new(t, t->peers, &t->n_peers, p) + 1;
    return p;
}

static void pt_step(struct pt *t)
{
    size_t k = (size_t)rand() % PT_PEERS;
    int op = rand() % 200;
    uint8_t ik[32] = {(uint8_t)(1 + rand() % 2)};
    struct peer *p = user_find_peer(t->u, pt_name(k));
    if (op < 90) { /* a new session (evicting the oldest of a full peer) */
        struct session *s = fake_session(0, ik);
        uint32_t base = ++t->next_base;
        memcpy(s->base_key, &base, sizeof(base)); /* unique per user */
        size_t serial = pt_new(t, t->sessions, &t->n_sessions, s);
        CHECK((p = pt_peer(t, k)) != NULL && user_install_session(t->u, p, s) == 0);
        t->live[t->n_live++] = serial;
    } else if (op < 120 && p && p->n_sessions) { /* the ratchet moved */
        user_session_changed(&t->st, t->u, p, p->sessions[(size_t)rand() % p->n_sessions]);
    } else if (op < 140 && p && p->n_sessions) { /* an archived state used */
        size_t i = (size_t)rand() % p->n_sessions;
        user_session_changed(&t->st, t->u, p, p->sessions[i]);
        user_promote_session(t->u, p, i);
    } else if (op < 150 && p) {
        user_drop_sessions_except(t->u, p, ik);
    } else if (op < 160 && p) {
        user_remove_peer(t->u, p);
    } else if (op < 163) { /* a device revoked */
        user_remove_peers(t->u);
    } else if (op < 170) {
        user_pin_peer(t->u, pt_peer(t, k), ik);
    } else if (op < 175) {
        user_remember_base_key(t->u, ik);
    } else if (op < 195) {
        pt_check(t); /* settling mid-batch changes nothing after */
    } else {
        pt_commit(t);
    }
    pt_observe(t);
}

static int pt_refuse_rows(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                          const uint8_t *value, size_t value_len)
{
    (void)ctx, (void)kind, (void)key, (void)key_len, (void)value, (void)value_len;
    return -1; /* the state must start empty */
}

/* The store read back from the state equals the live one, peer by peer. */
static void pt_compare_reloaded(struct pt *t, const char *dir)
{
    static const uint8_t key[STATE_KEY_LEN] = {4, 2};
    struct persist_loader *l = persist_loader_new();
    struct state *state = NULL;
    struct store back;
    char why[256] = "";
    size_t wrong = 0, n_peers = 0, pos = 0;
    store_init(&back, 10);
    CHECK(l && state_open(&state, dir, "store", key, persist_load_row, l, why, sizeof(why)) ==
                   STATE_OK);
    CHECK(persist_finish(l, &back) == 0);
    struct user *u = store_find_user(&back, "bob");
    CHECK(u != NULL);
    while (u && map_next(&u->peers, &pos))
        n_peers++;
    for (size_t k = 0; u && k < PT_PEERS; k++) {
        const struct peer *a = user_find_peer(t->u, pt_name(k)), *b = user_find_peer(u, pt_name(k));
        if (!a || !b) {
            wrong += !a != !b;
            continue;
        }
        n_peers--;
        wrong += a->pinned != b->pinned || memcmp(a->identity, b->identity, 32) ||
                 a->n_sessions != b->n_sessions || a->next_rank != b->next_rank;
        for (size_t i = 0; i < a->n_sessions && i < b->n_sessions; i++)
            wrong += a->ranks[i] != b->ranks[i] ||
                     memcmp(a->sessions[i]->base_key, b->sessions[i]->base_key, 32) ||
                     user_session_base_owner(u, a->sessions[i]->base_key) != b;
    }
    CHECK(wrong == 0 && n_peers == 0);
    CHECK(u && u->n_seen_bases == t->u->n_seen_bases && u->n_opks == t->u->n_opks);
    state_close(state);
    store_free(&back);
}

static void test_changes_follow_frees(void)
{
    static const uint8_t key[STATE_KEY_LEN] = {4, 2};
    char dir[] = "/tmp/securitor-test-store-XXXXXX", cmd[64], why[256] = "";
    struct pt *t = calloc(1, sizeof(*t));
    int ops = RUNNING_ON_VALGRIND ? PT_OPS / 5 : PT_OPS;
    CHECK(t && mkdtemp(dir) != NULL);
    t->sessions = calloc(PT_OPS, sizeof(*t->sessions));
    t->peers = calloc(PT_OPS + PT_PEERS, sizeof(*t->peers));
    CHECK(t->sessions && t->peers);
    CHECK(state_open(&t->state, dir, "store", key, pt_refuse_rows, NULL, why, sizeof(why)) ==
          STATE_OK);
    srand(7);
    store_init(&t->st, 10);
    store_track(&t->st);
    t->u = make_user(&t->st, "bob");
    pt_observe(t);
    for (int i = 0; i < ops; i++)
        pt_step(t);
    pt_commit(t);
    state_close(t->state);
    printf("%d operations: %zu checks, %zu commits, %zu dead records, %zu addresses reused "
           "in their batch\n",
           ops, t->checked, t->commits, t->dead_seen, t->reused);
    /* Reuse is what a pointer index can get wrong; valgrind and ASan delay
     * it (their runs check the rest). */
    CHECK(RUNNING_ON_VALGRIND || CHECK_UNDER_ASAN || t->reused > 100);
    CHECK(t->dead_seen > 1000 && t->unmapped == 0);
    pt_compare_reloaded(t, dir);
    store_free(&t->st);
    free(t->rec_s);
    free(t->rec_p);
    free(t->sessions);
    free(t->peers);
    free(t);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* A revocation deletes every session of every peer: linear in them. */
/* A revocation at scale (1,000 peers of 40 sessions): every record of a
 * deleted session or peer is dead once settled, and none other. (How long
 * it takes is for the benchmark, not a test: 0.8 s before the gone list,
 * 23 ms after, on 2026-12-02.) */
static void test_revocation_of_many_sessions(void)
{
    size_t peers = 1000;
    struct store st;
    uint8_t ik[32] = {1};
    uint32_t base = 0;
    char name[32];
    store_init(&st, 10);
    store_track(&st);
    struct user *u = make_user(&st, "bob");
    for (size_t i = 0; i < peers; i++) {
        snprintf(name, sizeof(name), "peer-%zu", i);
        struct peer *p = user_add_peer(u, name);
        for (int j = 0; j < STORE_SESSIONS_MAX; j++) {
            struct session *s = fake_session(0, ik);
            base++;
            memcpy(s->base_key, &base, sizeof(base));
            CHECK(p && user_install_session(u, p, s) == 0);
        }
    }
    size_t live_before = st.n_changes;
    user_remove_peers(u);
    store_changes_settle(&st);
    size_t dead = 0;
    for (size_t i = 0; i < st.n_changes; i++)
        dead += st.changes[i].dead;
    CHECK(dead == peers * (STORE_SESSIONS_MAX + 1)); /* each session's and peer's */
    for (size_t i = live_before; i < st.n_changes; i++)
        CHECK(!st.changes[i].dead); /* the deletions themselves */
    store_free(&st);
}

int main(void)
{
    test_many_peers();
    test_one_time_prekeys();
    test_archived_states();
    test_failures_change_nothing();
    test_changes_follow_frees();
    test_revocation_of_many_sessions();
    rand_pool_wipe();
    return check_finish("test_store");
}
