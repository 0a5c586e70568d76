/* store.h - e2ee-node's in-memory state: local users with their keys, and
 * per user the peers they talk to (pinned identity, sessions).
 *
 * A standalone node is a small network of devices: every local user name
 * gets an identity key, a signed prekey and 100 one-time prekeys on first
 * use. Names whose keys came from elsewhere (a bundle, a prekey message) are
 * remote: the node never invents keys for them.
 */
#ifndef SECURITOR_E2EE_STORE_H
#define SECURITOR_E2EE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/curve.h"
#include "securitor/ratchet.h"

#define STORE_OPK_COUNT 100
#define STORE_SESSIONS_MAX 8   /* current + archived states per peer */
#define STORE_LAST_RESORT_ID 0xFFFFFF /* never deleted (SIGNAL.md 2.1) */

struct one_time_prekey {
    uint32_t id;
    struct curve_keypair kp;
    bool handed_out; /* given out in a bundle: never again */
    bool deleted;    /* used by an authenticated message: private key wiped */
};

struct peer {
    char *name;
    bool pinned;                   /* identity pinned on first use */
    uint8_t identity[CURVE_KEY_LEN];
    struct session *sessions[STORE_SESSIONS_MAX]; /* [0] is current */
    size_t n_sessions;
};

struct user {
    char *name;
    struct curve_identity id;
    uint32_t registration_id;
    uint32_t spk_id;
    struct curve_keypair spk;
    uint8_t spk_sig[CURVE_SIG_LEN];
    struct one_time_prekey opks[STORE_OPK_COUNT];
    size_t next_opk;               /* next one to hand out */
    struct peer **peers;
    size_t n_peers, cap_peers;
};

struct store {
    struct user **users;
    size_t n_users, cap_users;
    char **remote;                 /* names known to be remote */
    size_t n_remote, cap_remote;
};

enum store_result { STORE_OK = 0, STORE_REMOTE = 1, STORE_NO_MEMORY = 2, STORE_CRYPTO = 3 };

/* The local user `name`, made (with fresh keys) on first use unless the name
 * is remote. *out is owned by the store. */
enum store_result store_user(struct store *st, const char *name, struct user **out);
struct user *store_find_user(struct store *st, const char *name);
bool store_is_remote(const struct store *st, const char *name);
int store_mark_remote(struct store *st, const char *name);

/* The peer record of u for name, made empty when absent (NULL: no memory). */
struct peer *user_peer(struct user *u, const char *name);
struct peer *user_find_peer(const struct user *u, const char *name);
/* Makes s the current session of p (archiving the others, wiping the oldest
 * beyond STORE_SESSIONS_MAX). Takes ownership of s. */
void peer_install_session(struct peer *p, struct session *s);
/* Moves sessions[i] to the front. */
void peer_promote_session(struct peer *p, size_t i);
/* Wipes and frees sessions whose remote identity is not `identity`. */
void peer_drop_sessions_except(struct peer *p, const uint8_t identity[static CURVE_KEY_LEN]);

/* The next one-time prekey to hand out, marked handed out; NULL when none. */
struct one_time_prekey *user_take_opk(struct user *u);
struct one_time_prekey *user_find_opk(struct user *u, uint32_t id);
/* Deletes the private key of a used one-time prekey (not the last resort). */
void user_delete_opk(struct one_time_prekey *k);

void store_free(struct store *st);

#endif
