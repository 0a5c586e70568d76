/* store.h - e2ee-node's state: local users with their keys, and per user the
 * peers they talk to (pinned identity, sessions).
 *
 * A standalone node is a small network of devices: every local user name
 * gets an identity key, a signed prekey and one-time prekeys on first use.
 * Names whose keys came from elsewhere (a bundle, a prekey message) are
 * remote: the node never invents keys for them.
 *
 * Limits, all named here: at most max_users local users (--max-users); names
 * of at most STORE_NAME_MAX bytes (the handlers refuse longer ones); per
 * peer STORE_SESSIONS_MAX session states (the current one and the archived
 * ones, as libsignal keeps); per user STORE_OPK_TARGET fresh one-time
 * prekeys, refilled with new ids when fewer than STORE_OPK_REFILL_BELOW are
 * left, and at most STORE_OPK_HANDED_MAX handed out but not yet used.
 *
 * Ownership: the store owns every user, peer and session; pointers it hands
 * out stay valid until the object is removed (or the store freed). Not
 * thread-safe: the loop's worker only.
 */
#ifndef SECURITOR_E2EE_STORE_H
#define SECURITOR_E2EE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/curve.h"
#include "securitor/map.h"
#include "securitor/ratchet.h"

#define STORE_NAME_MAX 256
#define STORE_MAX_USERS_DEFAULT 10000
#define STORE_OPK_TARGET 100
#define STORE_OPK_REFILL_BELOW 10
#define STORE_OPK_HANDED_MAX 1000
#define STORE_SESSIONS_MAX 40
/* Base keys of prekey messages that used no one-time prekey, remembered so
 * that a replay of one is refused after its session has been archived away
 * (X3DH §4.2). */
#define STORE_SEEN_BASE_KEYS 2000
#define STORE_LAST_RESORT_ID 0xFFFFFF /* never deleted (SIGNAL.md 2.1) */

struct one_time_prekey {
    uint32_t id;
    bool handed_out; /* given out in a bundle: never again */
    struct curve_keypair kp;
};

struct peer {
    char *name;
    bool pinned; /* identity pinned on first use */
    uint8_t identity[CURVE_KEY_LEN];
    struct session *sessions[STORE_SESSIONS_MAX]; /* [0] is current */
    /* Each session's place in recency: a state keeps the order through it
     * (the current session has the highest). */
    uint64_t ranks[STORE_SESSIONS_MAX];
    uint64_t next_rank;
    size_t n_sessions;
};

struct user {
    struct store *store; /* its store, where changes are recorded */
    char *name;
    struct curve_identity id;
    uint32_t registration_id;
    uint32_t spk_id;
    struct curve_keypair spk;
    uint8_t spk_sig[CURVE_SIG_LEN];
    struct one_time_prekey *opks; /* fresh and handed out, by ascending id */
    size_t n_opks, cap_opks;
    uint32_t next_opk_id;        /* ids are never reused */
    struct map peers;            /* name -> struct peer */
    struct map session_bases;    /* a live session's base key -> its struct peer */
    uint8_t (*seen_bases)[CURVE_KEY_LEN]; /* ring of STORE_SEEN_BASE_KEYS */
    size_t n_seen_bases, next_seen_base;
    bool changed, seen_changed; /* recorded in the store's changes */
};

/* What changed since the last commit, when a state is kept (see
 * store_track): the objects to write, and the rows to delete. */
enum store_change_kind {
    CHANGE_USER,    /* the user's own keys (and next prekey id) */
    CHANGE_SEEN,    /* the user's remembered base keys */
    CHANGE_OPK,     /* one one-time prekey (by id: the array moves) */
    CHANGE_PEER,    /* a peer's pin */
    CHANGE_SESSION, /* one session of a peer */
    CHANGE_REMOTE,  /* a name marked remote */
    CHANGE_DELETE,  /* a row that must go */
};

struct store_change {
    enum store_change_kind kind;
    struct user *u;
    struct peer *p;
    struct session *s;
    uint32_t opk_id;
    char *row_kind;   /* CHANGE_DELETE */
    uint8_t *row_key; /* CHANGE_DELETE, CHANGE_REMOTE: a copy */
    size_t row_key_len;
    bool dead;        /* the object went before the commit: skip (set by
                       * store_changes_settle) */
};

/* An object freed while changes are recorded: the records made before
 * `before` that point at its address are dead. Only the address is kept,
 * never followed (it may be reused by a later object, whose records all
 * come after `before`). */
struct store_gone {
    const void *obj; /* a session, or a peer (its sessions' records too) */
    size_t before;   /* n_changes when it went */
    bool peer;
};

struct store {
    struct map users;  /* name -> struct user */
    struct map remote; /* name -> the name (a malloc'd copy) */
    size_t n_users, max_users;
    bool tracking;     /* a state is kept: record changes */
    struct store_change *changes;
    size_t n_changes, cap_changes;
    bool changes_lost; /* a change could not be recorded (no memory) */
    /* Objects freed since the last settle, oldest first: marking their
     * records dead one object at a time would scan the list per object. */
    struct store_gone *gone;
    size_t n_gone, cap_gone;
};

enum store_result {
    STORE_OK = 0,
    STORE_REMOTE,    /* the name is a remote peer: no keys are made for it */
    STORE_FULL,      /* max_users reached */
    STORE_NO_MEMORY,
    STORE_CRYPTO,    /* key generation failed (RNG or OpenSSL) */
};

void store_init(struct store *st, size_t max_users);
/* Starts recording changes (a state is kept). */
void store_track(struct store *st);
/* Forgets the recorded changes (after they were written, or dropped). */
void store_changes_clear(struct store *st);
/* Sets `dead` on every record whose object was freed after it was made: one
 * pass over the changes, O(changes + objects freed). Call before reading
 * `dead` (persist_changes does); calling it again later is fine. */
void store_changes_settle(struct store *st);
/* The row keys of a state: user "name"; opk "name\0id"; peer
 * "user\0peer"; session "user\0peer\0base key"; remote "name"; seen
 * "user". Write into key (room for STORE_ROW_KEY_MAX bytes); return the
 * length. */
#define STORE_ROW_KEY_MAX (2 * STORE_NAME_MAX + 2 + CURVE_KEY_LEN)
size_t store_opk_key(uint8_t *key, const struct user *u, uint32_t id);
size_t store_peer_key(uint8_t *key, const struct user *u, const struct peer *p);
size_t store_session_key(uint8_t *key, const struct user *u, const struct peer *p,
                         const struct session *s);
/* Records that s (a session of p) changed: the ratchet moved. */
void user_session_changed(struct store *st, struct user *u, struct peer *p, struct session *s);
/* The local user `name`, made (with fresh keys) on first use unless the name
 * is remote or the store is full. */
enum store_result store_user(struct store *st, const char *name, struct user **out);
struct user *store_find_user(const struct store *st, const char *name);
bool store_is_remote(const struct store *st, const char *name);
/* 0 or -1 (out of memory). */
int store_mark_remote(struct store *st, const char *name);
void store_unmark_remote(struct store *st, const char *name);
void store_free(struct store *st);

struct peer *user_find_peer(const struct user *u, const char *name);
/* The peer record of u for name, made empty when absent (NULL: no memory). */
struct peer *user_add_peer(struct user *u, const char *name);
/* Removes and frees a peer record (with its sessions). */
void user_remove_peer(struct user *u, struct peer *p);
/* Removes and frees every peer record of u (a revoked device's keys go). */
void user_remove_peers(struct user *u);
/* Makes s the current session of p (archiving the others, wiping the oldest
 * beyond STORE_SESSIONS_MAX). Takes ownership of s. 0, or -1 when out of
 * memory (then nothing changed and the caller still owns s). */
int user_install_session(struct user *u, struct peer *p, struct session *s);
/* Moves sessions[i] to the front. */
void user_promote_session(struct user *u, struct peer *p, size_t i);
/* Pins identity for p (on first use, or trust_identity). */
void user_pin_peer(struct user *u, struct peer *p, const uint8_t identity[static CURVE_KEY_LEN]);
/* Wipes and frees p's sessions whose remote identity is not `identity`. */
void user_drop_sessions_except(struct user *u, struct peer *p,
                               const uint8_t identity[static CURVE_KEY_LEN]);
/* The peer one of u's live sessions with this base key belongs to, or NULL. */
struct peer *user_session_base_owner(const struct user *u,
                                     const uint8_t base_key[static CURVE_KEY_LEN]);
/* Whether a prekey message with this base key (and no one-time prekey) was
 * accepted before; remembering it is best effort. */
bool user_base_key_seen(const struct user *u, const uint8_t base_key[static CURVE_KEY_LEN]);
void user_remember_base_key(struct user *u, const uint8_t base_key[static CURVE_KEY_LEN]);

/* The one-time prekey the next bundle would hand out, or NULL when none is
 * left (the bundle then carries only the signed prekey: the last-resort
 * path). Nothing changes. */
struct one_time_prekey *user_next_opk(struct user *u);
/* Marks k handed out; then refills to STORE_OPK_TARGET when fewer than
 * STORE_OPK_REFILL_BELOW fresh ones are left, and drops the oldest handed-out
 * keys beyond STORE_OPK_HANDED_MAX. Returns 0, or -1 when the refill failed
 * (k is handed out all the same; the next handout tries again). k is invalid
 * afterwards (the array may move). */
int user_hand_out_opk(struct user *u, struct one_time_prekey *k);
/* A one-time prekey still held (fresh or handed out), or NULL. */
struct one_time_prekey *user_find_opk(struct user *u, uint32_t id);
/* Deletes (wipes) a used one-time prekey, unless it is the last resort. */
void user_delete_opk(struct user *u, uint32_t id);
/* Fresh (never handed out) one-time prekeys left. */
size_t user_fresh_opks(const struct user *u);

#endif
