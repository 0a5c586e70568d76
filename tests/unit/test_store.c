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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "check.h"
#include "conversation.h"
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

int main(void)
{
    test_many_peers();
    test_one_time_prekeys();
    test_archived_states();
    test_failures_change_nothing();
    rand_pool_wipe();
    return check_finish("test_store");
}
