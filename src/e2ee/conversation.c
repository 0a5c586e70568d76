/* conversation.c - X3DH session building and the messages on sessions
 * (see conversation.h).
 *
 * Every function checks everything first and changes the store last, in
 * steps that can only fail for memory, each undone when a later one fails.
 */
#include "conversation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "securitor/cbc.h"
#include "securitor/ratchet.h"
#include "securitor/wipe.h"
#include "securitor/x3dh.h"

void conv_bundle(struct user *u, struct bundle *b, bool hand_out)
{
    memset(b, 0, sizeof(*b));
    b->registration_id = u->registration_id;
    b->device_id = 1;
    memcpy(b->identity, u->id.x.pub, CURVE_KEY_LEN);
    memcpy(b->spk, u->spk.pub, CURVE_KEY_LEN);
    b->spk_id = u->spk_id;
    memcpy(b->spk_sig, u->spk_sig, CURVE_SIG_LEN);
    struct one_time_prekey *k = user_next_opk(u);
    if (!k)
        return;
    b->has_opk = true;
    memcpy(b->opk, k->kp.pub, CURVE_KEY_LEN);
    b->opk_id = k->id;
    /* A failed refill leaves fewer keys; the next handout tries again, and
     * without any a bundle still works (the last-resort path). */
    if (hand_out && user_hand_out_opk(u, k))
        fprintf(stderr, "e2ee-node: could not make new one-time prekeys for \"%s\"\n", u->name);
}

/* The identity the store knows for a local user's name, or NULL. */
static const uint8_t *local_identity(const struct store *st, const char *name)
{
    const struct user *local = store_find_user(st, name);
    return local ? local->id.x.pub : NULL;
}

/* ============================================================================
 * X3DH as Alice
 * ========================================================================== */

/* Commits a new session for u with peer `name` (made if absent), pinning
 * `identity` on first use and marking a non-local name remote. Returns
 * CONV_OK (the store owns s) or CONV_NO_MEMORY (nothing changed). */
static enum conv_result install(struct store *st, struct user *u, const char *name,
                                const uint8_t identity[static CURVE_KEY_LEN], struct session *s)
{
    struct peer *p = user_find_peer(u, name);
    bool new_peer = !p, new_remote = false;
    if (!p && !(p = user_add_peer(u, name)))
        return CONV_NO_MEMORY;
    if (!store_find_user(st, name) && !store_is_remote(st, name)) {
        if (store_mark_remote(st, name))
            goto undo;
        new_remote = true;
    }
    if (user_install_session(u, p, s))
        goto undo;
    if (!p->pinned) /* pinned on first use */
        user_pin_peer(u, p, identity);
    return CONV_OK;
undo:
    if (new_remote)
        store_unmark_remote(st, name);
    if (new_peer)
        user_remove_peer(u, p);
    return CONV_NO_MEMORY;
}

enum conv_result conv_bundle_check(const struct store *st, const char *peer,
                                   const struct bundle *b)
{
    uint8_t enc[CURVE_ENCODED_LEN];
    /* X3DH §3.3: verify the signed prekey before any DH. */
    curve_encode(enc, b->spk);
    int ok = curve_verify(b->identity, enc, sizeof(enc), b->spk_sig);
    if (ok < 0)
        return CONV_CRYPTO;
    if (ok == 0)
        return CONV_BAD_SIGNATURE;
    const uint8_t *local = local_identity(st, peer);
    if (local && memcmp(local, b->identity, CURVE_KEY_LEN))
        return CONV_LOCAL_IDENTITY;
    return CONV_OK;
}

enum conv_result conv_initiate(struct store *st, struct user *u, const char *peer,
                               const struct bundle *b, struct session **out,
                               uint8_t root_key[static 32])
{
    struct curve_keypair ek;
    struct x3dh_result x;
    struct session *s = NULL;
    enum conv_result rc;

    if ((rc = conv_bundle_check(st, peer, b)) != CONV_OK)
        return rc;
    const struct peer *p = user_find_peer(u, peer);
    if (p && p->pinned && memcmp(p->identity, b->identity, CURVE_KEY_LEN))
        return CONV_IDENTITY_CHANGED;

    if (!(s = calloc(1, sizeof(*s))))
        return CONV_NO_MEMORY;
    if (curve_generate(&ek)) { /* the RNG failed: our fault, not the bundle's */
        rc = CONV_CRYPTO;
        goto out;
    }
    if (x3dh_initiate(&x, &u->id.x, &ek, b->identity, b->spk, b->has_opk ? b->opk : NULL)) {
        rc = CONV_UNUSABLE_KEY;
        goto out;
    }
    if (session_init_alice(s, &x, b->spk, u->id.x.pub, b->identity, ek.pub)) {
        rc = CONV_CRYPTO;
        goto out;
    }
    s->remote_registration_id = b->registration_id;
    s->pending_prekey = true; /* Double Ratchet §5.1: X3DH data until Bob answers */
    s->pending_pre_key_id = b->has_opk ? b->opk_id : WIRE_NO_PREKEY;
    s->pending_signed_pre_key_id = b->spk_id;
    if ((rc = install(st, u, peer, b->identity, s)) != CONV_OK)
        goto out;
    memcpy(root_key, x.root_key, 32);
    *out = s;
    s = NULL;
out:
    if (s) {
        session_wipe(s);
        free(s);
    }
    WIPE_OBJ(ek);
    WIPE_OBJ(x);
    return rc;
}

enum conv_result conv_initiate_local(struct store *st, struct user *u, const char *peer,
                                     struct session **out, uint8_t root_key[static 32])
{
    struct user *bob = store_find_user(st, peer);
    struct bundle b;
    if (!bob) {
        if (store_is_remote(st, peer))
            return CONV_REMOTE_NO_SESSION;
        /* A pin on a name that has no keys yet can only be a foreign
         * identity: refuse before making keys that would not match it. */
        const struct peer *p = user_find_peer(u, peer);
        if (p && p->pinned)
            return CONV_IDENTITY_CHANGED;
        switch (store_user(st, peer, &bob)) {
        case STORE_OK: break;
        case STORE_FULL: return CONV_USER_LIMIT;
        case STORE_NO_MEMORY: return CONV_NO_MEMORY;
        default: return CONV_CRYPTO;
        }
    }
    /* Peek, initiate, and hand the one-time prekey out only on success. */
    conv_bundle(bob, &b, false);
    enum conv_result rc = conv_initiate(st, u, peer, &b, out, root_key);
    struct one_time_prekey *k = b.has_opk ? user_find_opk(bob, b.opk_id) : NULL;
    if (rc == CONV_OK && k && user_hand_out_opk(bob, k))
        fprintf(stderr, "e2ee-node: could not make new one-time prekeys for \"%s\"\n", peer);
    WIPE_OBJ(b);
    return rc;
}

/* ============================================================================
 * Messages
 * ========================================================================== */

enum conv_result conv_encrypt(struct store *st, struct user *u, const char *peer,
                              const uint8_t *pt, size_t len, struct buf *wire,
                              struct conv_sent *sent)
{
    uint8_t root_key[32];
    struct peer *p = user_find_peer(u, peer);
    struct session *s = p && p->n_sessions ? p->sessions[0] : NULL;
    if (!s) { /* no session yet: initiate one first (PROTOCOL.md §3) */
        enum conv_result rc = conv_initiate_local(st, u, peer, &s, root_key);
        WIPE_OBJ(root_key);
        if (rc)
            return rc;
    }
    size_t max = signal_message_max_len(cbc_padded_len(len));
    wire->len = 0;
    uint8_t *out = (uint8_t *)buf_reserve(wire, max + prekey_message_max_len(max));
    size_t msg_len, total;
    if (!out)
        return CONV_NO_MEMORY;
    if (ratchet_encrypt(s, pt, len, out, &msg_len))
        return CONV_CRYPTO;
    if (!p)
        p = user_find_peer(u, peer); /* made by the initiation above */
    user_session_changed(st, u, p, s);
    sent->mac = out + msg_len - WIRE_MAC_LEN;
    sent->wire = out;
    total = msg_len;
    if (s->pending_prekey) { /* Double Ratchet §5.1: resend X3DH data until Bob answers */
        uint8_t *pk = out + msg_len;
        total = prekey_message_encode(pk, u->registration_id, s->pending_pre_key_id,
                                      s->pending_signed_pre_key_id, s->base_key, u->id.x.pub,
                                      out, msg_len);
        sent->wire = pk;
    }
    sent->len = total;
    sent->prekey = s->pending_prekey;
    sent->session = s;
    return CONV_OK;
}

/* Tries each session of p on m, current first, and promotes the one that
 * works. The work is bounded across sessions (RATCHET_MAX_WORK): a forged
 * message cannot cost a full skip on each of them. */
static enum ratchet_result decrypt_on_peer(struct user *u, struct peer *p,
                                           const struct signal_message *m, uint8_t *pt,
                                           size_t *pt_len, struct session **used)
{
    enum ratchet_result first = RATCHET_BAD_MAC;
    uint32_t budget = RATCHET_MAX_WORK;
    for (size_t i = 0; i < p->n_sessions; i++) {
        uint32_t cost = ratchet_decrypt_cost(p->sessions[i], m);
        if (cost > budget)
            continue;
        budget -= cost;
        enum ratchet_result res = ratchet_decrypt(p->sessions[i], m, pt, pt_len);
        if (res == RATCHET_OK) {
            *used = p->sessions[i];
            user_session_changed(u->store, u, p, *used);
            user_promote_session(u, p, i);
            return RATCHET_OK;
        }
        if (res == RATCHET_INTERNAL)
            return res;
        /* The current session's verdict stands, unless another session
         * knows the message as a duplicate. */
        if (i == 0 || res == RATCHET_DUPLICATE)
            first = i == 0 || first != RATCHET_DUPLICATE ? res : first;
    }
    return first;
}

static enum conv_result ratchet_verdict(enum ratchet_result res, char *detail)
{
    if (res == RATCHET_INTERNAL)
        return CONV_CRYPTO;
    snprintf(detail, CONV_DETAIL_LEN, "%s", ratchet_result_text(res));
    return CONV_REJECTED;
}

/* X3DH as Bob, then the inner message. The session, the one-time prekey's
 * deletion and the pin are committed only when the message authenticates. */
static enum conv_result receive_prekey(struct store *st, struct user *u, const char *sender,
                                       const struct prekey_message *pm, uint8_t *pt,
                                       size_t *pt_len, struct session **used, char *detail)
{
    const uint8_t *local = local_identity(st, sender);
    if (local && memcmp(local, pm->identity_key, CURVE_KEY_LEN))
        return CONV_LOCAL_IDENTITY;
    struct peer *p = user_find_peer(u, sender);
    if (p && p->pinned && memcmp(p->identity, pm->identity_key, CURVE_KEY_LEN))
        return CONV_IDENTITY_CHANGED;
    /* Alice resends the X3DH data until she hears back: such a message
     * belongs to the session with its base key (SIGNAL.md 2.1). */
    for (size_t i = 0; p && i < p->n_sessions; i++) {
        if (memcmp(p->sessions[i]->base_key, pm->base_key, CURVE_KEY_LEN))
            continue;
        enum ratchet_result res = ratchet_decrypt(p->sessions[i], &pm->message, pt, pt_len);
        if (res != RATCHET_OK)
            return ratchet_verdict(res, detail);
        *used = p->sessions[i];
        user_session_changed(u->store, u, p, *used);
        user_promote_session(u, p, i);
        return CONV_OK;
    }
    /* A base key that set up a session before, with anyone: a replay. The
     * one-time prekey it used is gone, but one without could otherwise set
     * up a second session from the same X3DH (X3DH §4.2). */
    if (user_session_base_owner(u, pm->base_key) || user_base_key_seen(u, pm->base_key)) {
        snprintf(detail, CONV_DETAIL_LEN, "replayed prekey message: its base key set up a "
                                          "session before");
        return CONV_REJECTED;
    }
    if (pm->signed_pre_key_id != u->spk_id) {
        snprintf(detail, CONV_DETAIL_LEN, "unknown signed prekey id");
        return CONV_REJECTED;
    }
    struct one_time_prekey *opk = NULL;
    if (pm->pre_key_id != WIRE_NO_PREKEY && !(opk = user_find_opk(u, pm->pre_key_id))) {
        snprintf(detail, CONV_DETAIL_LEN, "one-time prekey already used or unknown (its "
                                          "private key is deleted once used)");
        return CONV_REJECTED;
    }
    struct x3dh_result x;
    struct session *s = calloc(1, sizeof(*s));
    enum conv_result rc;
    if (!s)
        return CONV_NO_MEMORY;
    if (x3dh_respond(&x, &u->id.x, &u->spk, opk ? &opk->kp : NULL, pm->identity_key,
                     pm->base_key) ||
        session_init_bob(s, &x, &u->spk, u->id.x.pub, pm->identity_key, pm->base_key)) {
        snprintf(detail, CONV_DETAIL_LEN, "X3DH failed: the message's keys give an unusable "
                                          "shared secret");
        rc = CONV_REJECTED;
        goto out;
    }
    enum ratchet_result res = ratchet_decrypt(s, &pm->message, pt, pt_len);
    if (res != RATCHET_OK) {
        rc = ratchet_verdict(res, detail);
        goto out;
    }
    s->remote_registration_id = pm->registration_id;
    if ((rc = install(st, u, sender, pm->identity_key, s)) != CONV_OK) {
        wipe_bytes(pt, *pt_len);
        goto out;
    }
    if (opk)
        user_delete_opk(u, pm->pre_key_id); /* X3DH §3.4 */
    else
        user_remember_base_key(u, pm->base_key);
    *used = s;
    s = NULL;
out:
    if (s) {
        session_wipe(s);
        free(s);
    }
    WIPE_OBJ(x);
    return rc;
}

enum conv_result conv_decrypt(struct store *st, struct user *u, const char *sender,
                              const uint8_t *bytes, size_t len, enum conv_kind kind,
                              const uint8_t *auth_tag, uint8_t *pt, size_t *pt_len,
                              struct session **used, char detail[static CONV_DETAIL_LEN])
{
    struct prekey_message pm;
    struct signal_message sm;
    const char *err;
    bool prekey = kind == CONV_KIND_PREKEY ||
                  (kind == CONV_KIND_GUESS && prekey_message_parse(&pm, bytes, len) == NULL);
    err = prekey ? prekey_message_parse(&pm, bytes, len) : signal_message_parse(&sm, bytes, len);
    if (err) {
        snprintf(detail, CONV_DETAIL_LEN, "invalid %s message: %s", prekey ? "prekey" : "signal",
                 err);
        return CONV_REJECTED;
    }
    const struct signal_message *m = prekey ? &pm.message : &sm;
    if (auth_tag && CRYPTO_memcmp(auth_tag, m->mac, WIRE_MAC_LEN)) {
        snprintf(detail, CONV_DETAIL_LEN, "auth_tag does not match the MAC inside the message");
        return CONV_REJECTED;
    }
    enum conv_result rc;
    *used = NULL;
    if (prekey) {
        rc = receive_prekey(st, u, sender, &pm, pt, pt_len, used, detail);
    } else {
        struct peer *p = user_find_peer(u, sender);
        if (!p || !p->n_sessions)
            return CONV_NO_SESSION;
        enum ratchet_result res = decrypt_on_peer(u, p, m, pt, pt_len, used);
        rc = res == RATCHET_OK ? CONV_OK : ratchet_verdict(res, detail);
    }
    if (rc == CONV_OK)
        (*used)->pending_prekey = false; /* Bob answered: stop resending X3DH data */
    return rc;
}
