/* conversation.h - sessions built with X3DH, and messages run through them.
 *
 * This is what e2ee-node's handlers do, without JSON: each function takes
 * the store, the acting user and the peer's name, and returns a result that
 * the handler maps to a reply. On any result but CONV_OK, nothing in the
 * store changed: no peer is made, no one-time prekey handed out or deleted,
 * no identity pinned, no session installed or advanced.
 *
 * Key exchange is not authentication: a bundle's signed prekey is verified
 * before any DH (X3DH §3.3); identities are pinned on first use; a local
 * user's identity is known and never taken from a message; a prekey message
 * whose base key set up a session before is a replay (X3DH §4.2).
 */
#ifndef SECURITOR_E2EE_CONVERSATION_H
#define SECURITOR_E2EE_CONVERSATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/buf.h"
#include "securitor/curve.h"
#include "securitor/wire.h"
#include "store.h"

/* A user's published keys, as get_bundle gives them. */
struct bundle {
    uint32_t registration_id, device_id;
    uint8_t identity[CURVE_KEY_LEN], spk[CURVE_KEY_LEN], opk[CURVE_KEY_LEN];
    uint32_t spk_id, opk_id;
    bool has_opk;
    uint8_t spk_sig[CURVE_SIG_LEN];
};

enum conv_result {
    CONV_OK = 0,
    CONV_NO_MEMORY,         /* error 13 */
    CONV_CRYPTO,            /* error 13: the RNG or OpenSSL failed */
    CONV_USER_LIMIT,        /* error 22: a new local user would pass --max-users */
    CONV_BAD_SIGNATURE,     /* error 22: the signed prekey's signature does not verify */
    CONV_IDENTITY_CHANGED,  /* error 22: not the pinned identity */
    CONV_LOCAL_IDENTITY,    /* error 22: a local user's name with a foreign identity */
    CONV_UNUSABLE_KEY,      /* error 22: a key in the bundle gives an all-zero DH */
    CONV_REMOTE_NO_SESSION, /* error 20: a remote peer, no session, no bundle */
    CONV_NO_SESSION,        /* error 20: a normal message, and no session */
    CONV_REJECTED,          /* decryption_failed: the detail says why */
};

/* u's bundle; with hand_out, its next one-time prekey is handed out (never
 * again) and the supply refilled. Without one left, the bundle has only the
 * signed prekey (the last-resort path). */
void conv_bundle(struct user *u, struct bundle *b, bool hand_out);

/* Alice with Bob's bundle: verifies it, checks the pins, runs X3DH and makes
 * the new session current for `peer`. The root key is for the reply. */
/* The checks of a bundle from elsewhere that need no local user: its signed
 * prekey's signature (X3DH §3.3), and that a local user's name comes with
 * that user's identity. conv_initiate makes them too (the signature check is
 * then a cache hit, curve_verify); a handler makes them first so that a
 * refused bundle makes no user. */
enum conv_result conv_bundle_check(const struct store *st, const char *peer,
                                   const struct bundle *b);
enum conv_result conv_initiate(struct store *st, struct user *u, const char *peer,
                               const struct bundle *b, struct session **out,
                               uint8_t root_key[static 32]);
/* The same with the bundle of the local user `peer` (made on first use). */
enum conv_result conv_initiate_local(struct store *st, struct user *u, const char *peer,
                                     struct session **out, uint8_t root_key[static 32]);

/* What conv_encrypt made: the wire bytes (inside the caller's buffer). */
struct conv_sent {
    const uint8_t *wire;
    size_t len;
    const uint8_t *mac; /* the MAC8 of the (inner) SignalMessage */
    bool prekey;        /* a PreKeySignalMessage: Bob has not answered yet */
    const struct session *session;
};

/* Encrypts pt on the current session with `peer`, first initiating one from
 * the local bundle when there is none (PROTOCOL.md §3). */
enum conv_result conv_encrypt(struct store *st, struct user *u, const char *peer,
                              const uint8_t *pt, size_t len, struct buf *wire,
                              struct conv_sent *sent);

enum conv_kind { CONV_KIND_GUESS, CONV_KIND_PREKEY, CONV_KIND_MESSAGE };

#define CONV_DETAIL_LEN 160

/* Decrypts wire bytes from `sender` into pt (room for len bytes). kind GUESS
 * means: prekey when the bytes parse as one (SIGNAL.md Part 0 item 5).
 * auth_tag (may be NULL) must equal the MAC inside the bytes. On
 * CONV_REJECTED, detail says why. On CONV_OK, *used is the session. */
enum conv_result conv_decrypt(struct store *st, struct user *u, const char *sender,
                              const uint8_t *bytes, size_t len, enum conv_kind kind,
                              const uint8_t *auth_tag, uint8_t *pt, size_t *pt_len,
                              struct session **used, char detail[static CONV_DETAIL_LEN]);

#endif
