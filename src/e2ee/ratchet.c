/* ratchet.c - the Double Ratchet as Signal protocol v3 keeps it (see ratchet.h). */
#include "securitor/ratchet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <uuid/uuid.h>

#include "securitor/cbc.h"
#include "securitor/kdf.h"
#include "securitor/wipe.h"

static const uint8_t ZERO32[32];

/* ============================================================================
 * Key derivation
 * ========================================================================== */

int chain_step(uint8_t seed[static 32], uint8_t next[static 32], const uint8_t ck[static 32])
{
    static const uint8_t one = 0x01, two = 0x02; /* Double Ratchet §5.2 */
    const struct bytes msgs[2] = {{&one, 1}, {&two, 1}};
    uint8_t out[2][HMAC_SHA256_LEN];
    int rc = hmac_sha256_each(out, ck, 32, msgs, 2);
    if (!rc) {
        memcpy(seed, out[0], 32);
        memcpy(next, out[1], 32);
    }
    WIPE_OBJ(out);
    return rc;
}

int message_keys_derive(struct message_keys *mk, const uint8_t seed[static 32])
{
    uint8_t okm[80];
    int rc = hkdf_sha256(okm, sizeof(okm), ZERO32, 32, seed, 32, "WhisperMessageKeys", 18);
    if (!rc) {
        memcpy(mk->cipher, okm, 32);
        memcpy(mk->mac, okm + 32, 32);
        memcpy(mk->iv, okm + 64, 16);
    }
    WIPE_OBJ(okm);
    return rc;
}

int root_step(uint8_t rk_out[static 32], uint8_t ck_out[static 32], const uint8_t rk[static 32],
              const uint8_t dh[static 32])
{
    uint8_t okm[64];
    int rc = hkdf_sha256(okm, sizeof(okm), rk, 32, dh, 32, "WhisperRatchet", 14);
    if (!rc) {
        memcpy(rk_out, okm, 32);
        memcpy(ck_out, okm + 32, 32);
    }
    WIPE_OBJ(okm);
    return rc;
}

/* ============================================================================
 * Sessions
 * ========================================================================== */

int session_id_derive(char out[static 37], const uint8_t ik_a[static 32],
                      const uint8_t ik_b[static 32], const uint8_t ek_a[static 32])
{
    static const char label[] = "securitor session id v1";
    uint8_t transcript[sizeof(label) - 1 + 3 * CURVE_ENCODED_LEN], digest[32];
    memcpy(transcript, label, sizeof(label) - 1);
    curve_encode(transcript + sizeof(label) - 1, ik_a);
    curve_encode(transcript + sizeof(label) - 1 + 33, ik_b);
    curve_encode(transcript + sizeof(label) - 1 + 66, ek_a);
    if (sha256(digest, transcript, sizeof(transcript)))
        return -1;
    uuid_t u;
    memcpy(u, digest, 16);
    u[6] = (uint8_t)((u[6] & 0x0F) | 0x80); /* version 8: custom (RFC 9562 §5.8) */
    u[8] = (uint8_t)((u[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    uuid_unparse_lower(u, out);
    return 0;
}

static void session_common(struct session *s, const uint8_t local_identity[static 32],
                           const uint8_t remote_identity[static 32],
                           const uint8_t base_key[static 32])
{
    memcpy(s->local_identity, local_identity, 32);
    memcpy(s->remote_identity, remote_identity, 32);
    memcpy(s->base_key, base_key, 32);
    s->pending_pre_key_id = WIRE_NO_PREKEY;
}

int session_init_alice(struct session *s, const struct x3dh_result *x,
                       const uint8_t their_spk[static 32], const uint8_t local_identity[static 32],
                       const uint8_t remote_identity[static 32], const uint8_t base_key[static 32])
{
    uint8_t dh[32];
    struct ratchet_core *c = &s->core;
    int rc = -1;
    *s = (struct session){0};
    session_common(s, local_identity, remote_identity, base_key);
    memcpy(c->remote, their_spk, 32); /* Bob's first ratchet key is his SPK */
    if (curve_generate_dh(&c->self, dh, their_spk) ||
        root_step(c->root_key, c->send_ck, x->root_key, dh) ||
        session_id_derive(s->id, local_identity, remote_identity, base_key))
        goto out;
    c->has_send = true;
    rc = 0;
out:
    WIPE_OBJ(dh);
    if (rc)
        session_wipe(s);
    return rc;
}

int session_init_bob(struct session *s, const struct x3dh_result *x, const struct curve_keypair *spk,
                     const uint8_t local_identity[static 32], const uint8_t remote_identity[static 32],
                     const uint8_t base_key[static 32])
{
    *s = (struct session){0};
    session_common(s, local_identity, remote_identity, base_key);
    memcpy(s->core.root_key, x->root_key, 32);
    s->core.self = *spk;
    /* Bob has no chains yet: his first step is the DH ratchet on Alice's
     * first message (X3DH §4.3: Bob's key is randomised before he sends). */
    if (session_id_derive(s->id, remote_identity, local_identity, base_key)) {
        session_wipe(s);
        return -1;
    }
    return 0;
}

void session_wipe(struct session *s)
{
    if (s->skipped) {
        OPENSSL_cleanse(s->skipped, s->cap_skipped * sizeof(*s->skipped));
        free(s->skipped);
    }
    WIPE_PTR(s);
}

/* The MAC8 of a SignalMessage: HMAC-SHA256(mac key, Encode(IK_sender) ||
 * Encode(IK_receiver) || 0x33 || protobuf), first 8 bytes (SIGNAL.md 2.1). */
static int message_mac(uint8_t mac[static WIRE_MAC_LEN], const uint8_t key[static 32],
                       const uint8_t sender[static 32], const uint8_t receiver[static 32],
                       const uint8_t *body, size_t body_len)
{
    uint8_t ik_s[CURVE_ENCODED_LEN], ik_r[CURVE_ENCODED_LEN], full[HMAC_SHA256_LEN];
    curve_encode(ik_s, sender);
    curve_encode(ik_r, receiver);
    struct bytes parts[] = {{ik_s, sizeof(ik_s)}, {ik_r, sizeof(ik_r)}, {body, body_len}};
    int rc = hmac_sha256(full, key, 32, parts, 3);
    memcpy(mac, full, WIRE_MAC_LEN);
    WIPE_OBJ(full);
    return rc;
}

static int encrypt(struct session *s, const uint8_t *pt, size_t len, uint8_t *out, size_t *out_len)
{
    uint8_t seed[32], next[32], dh[32];
    struct message_keys mk;
    struct ratchet_core c = s->core; /* committed only on success */
    int rc = -1;
    size_t ct_len = cbc_padded_len(len);
    uint8_t *ct = malloc(ct_len);
    if (!ct)
        goto out;
    if (!c.has_send) { /* the deferred half of the last DH ratchet step */
        if (curve_generate_dh(&c.self, dh, c.remote) ||
            root_step(c.root_key, c.send_ck, c.root_key, dh))
            goto out;
        c.send_n = 0;
        c.has_send = true;
    }
    if (chain_step(seed, next, c.send_ck) || message_keys_derive(&mk, seed) ||
        cbc_encrypt(ct, mk.cipher, mk.iv, pt, len))
        goto out;
    memcpy(c.send_ck, next, 32);
    size_t body = signal_message_encode_body(out, c.self.pub, c.send_n, c.previous_counter, ct,
                                             ct_len);
    if (message_mac(out + body, mk.mac, s->local_identity, s->remote_identity, out, body))
        goto out;
    *out_len = body + WIRE_MAC_LEN;
    c.send_n++;
    s->core = c; /* commit: the chain moves on and this message key is gone */
    rc = 0;
out:
    WIPE_OBJ(c);
    WIPE_OBJ(seed);
    WIPE_OBJ(next);
    WIPE_OBJ(dh);
    WIPE_OBJ(mk);
    free(ct); /* ciphertext: not secret */
    return rc;
}

/* A message's HMACs and HKDFs (chain step, message keys, MAC; a root step
 * when the ratchet turns) run under one kdf_hold: the HMAC context is
 * re-keyed once per message instead of after each of them, and before the
 * message's function returns. */
int ratchet_encrypt(struct session *s, const uint8_t *pt, size_t len, uint8_t *out, size_t *out_len)
{
    kdf_hold();
    int rc = encrypt(s, pt, len, out, out_len);
    kdf_release();
    return rc;
}

/* Verifies the MAC with the keys from seed, then decrypts. */
static enum ratchet_result open_with_seed(const struct session *s, const uint8_t seed[static 32],
                                          const struct signal_message *m, uint8_t *pt,
                                          size_t *pt_len)
{
    struct message_keys mk;
    uint8_t mac[WIRE_MAC_LEN];
    enum ratchet_result r = RATCHET_INTERNAL;
    if (message_keys_derive(&mk, seed) ||
        message_mac(mac, mk.mac, s->remote_identity, s->local_identity, m->mac_input,
                    m->mac_input_len))
        goto out;
    if (CRYPTO_memcmp(mac, m->mac, WIRE_MAC_LEN) != 0) {
        r = RATCHET_BAD_MAC;
        goto out;
    }
    r = cbc_decrypt(pt, pt_len, mk.cipher, mk.iv, m->ciphertext, m->ciphertext_len)
            ? RATCHET_BAD_PADDING
            : RATCHET_OK;
out:
    WIPE_OBJ(mk);
    return r;
}

/* Keys skipped while decrypting, kept aside until the message verifies. */
struct skip_list {
    struct skipped_key *keys;
    size_t n, cap;
};

static void skip_list_wipe(struct skip_list *l)
{
    if (l->keys) {
        OPENSSL_cleanse(l->keys, l->cap * sizeof(*l->keys));
        free(l->keys);
    }
    *l = (struct skip_list){0};
}

/* Advances chain (ck, *n) to index `until`, recording each skipped seed. */
static int skip_to(struct skip_list *l, uint8_t ck[static 32], uint32_t *n, uint32_t until,
                   const uint8_t ratchet_key[static 32])
{
    if (until <= *n)
        return 0;
    size_t need = l->n + (until - *n);
    if (need > l->cap) {
        struct skipped_key *k = calloc(need, sizeof(*k));
        if (!k)
            return -1;
        if (l->keys) {
            memcpy(k, l->keys, l->n * sizeof(*k));
            OPENSSL_cleanse(l->keys, l->cap * sizeof(*k));
            free(l->keys);
        }
        l->keys = k;
        l->cap = need;
    }
    for (; *n < until; (*n)++) {
        struct skipped_key *k = &l->keys[l->n++];
        uint8_t next[32];
        memcpy(k->ratchet_key, ratchet_key, 32);
        k->counter = *n;
        if (chain_step(k->seed, next, ck)) {
            WIPE_OBJ(next);
            return -1;
        }
        memcpy(ck, next, 32);
        WIPE_OBJ(next);
    }
    return 0;
}

/* Appends the new skipped keys, dropping (and wiping) the oldest beyond
 * RATCHET_MAX_STORED. Allocates first, so failure changes nothing. */
static int store_skipped(struct session *s, const struct skip_list *l)
{
    size_t total = s->n_skipped + l->n;
    size_t keep = total > RATCHET_MAX_STORED ? RATCHET_MAX_STORED : total;
    if (!l->n)
        return 0;
    struct skipped_key *k = calloc(keep, sizeof(*k));
    if (!k)
        return -1;
    size_t drop = total - keep, j = 0;
    for (size_t i = drop; i < s->n_skipped; i++)
        k[j++] = s->skipped[i];
    for (size_t i = drop > s->n_skipped ? drop - s->n_skipped : 0; i < l->n; i++)
        k[j++] = l->keys[i];
    if (s->skipped) {
        OPENSSL_cleanse(s->skipped, s->cap_skipped * sizeof(*k));
        free(s->skipped);
    }
    s->skipped = k;
    s->n_skipped = s->cap_skipped = keep;
    return 0;
}

static enum ratchet_result decrypt(struct session *s, const struct signal_message *m,
                                   uint8_t *pt, size_t *pt_len)
{
    enum ratchet_result r = RATCHET_INTERNAL;
    struct ratchet_core c;
    struct skip_list skipped = {0};
    uint8_t dh[32], seed[32], next[32];

    /* 1. A key skipped earlier (Double Ratchet §3.5, TrySkippedMessageKeys). */
    for (size_t i = 0; i < s->n_skipped; i++) {
        struct skipped_key *k = &s->skipped[i];
        if (k->counter != m->counter || CRYPTO_memcmp(k->ratchet_key, m->ratchet_key, 32))
            continue;
        r = open_with_seed(s, k->seed, m, pt, pt_len);
        if (r == RATCHET_OK) { /* used once, then deleted */
            memmove(k, k + 1, (s->n_skipped - i - 1) * sizeof(*k));
            s->n_skipped--;
            /* The last slot was moved down (or is the used key itself): no
             * copy of a key may stay behind it. */
            OPENSSL_cleanse(&s->skipped[s->n_skipped], sizeof(*k));
        }
        return r;
    }

    /* 2. Everything else runs on a copy, committed only on success. */
    c = s->core;
    for (uint32_t i = 0; i < c.n_retired; i++) {
        if (!CRYPTO_memcmp(m->ratchet_key, c.retired[i], 32)) {
            r = RATCHET_DUPLICATE; /* an old chain: every live key was in the skipped set */
            goto out;
        }
    }
    if (!c.has_recv || CRYPTO_memcmp(m->ratchet_key, c.remote, 32)) {
        if (c.has_recv) {
            /* Keys left in the old chain: libsignal sends count - 1, so the
             * chain holds previousCounter + 1 messages (SIGNAL.md 2.2). */
            uint64_t until = (uint64_t)m->previous_counter + 1;
            if (until > c.recv_n && until - c.recv_n > RATCHET_MAX_SKIP) {
                r = RATCHET_TOO_FAR;
                goto out;
            }
            if (skip_to(&skipped, c.recv_ck, &c.recv_n, (uint32_t)until, c.remote))
                goto out;
        } else if (m->counter > RATCHET_MAX_SKIP) {
            r = RATCHET_TOO_FAR;
            goto out;
        }
        /* DH ratchet (Double Ratchet §3.5, DHRatchet). */
        if (c.has_recv) {
            memmove(c.retired[1], c.retired[0], (RATCHET_RETIRED - 1) * 32);
            memcpy(c.retired[0], c.remote, 32);
            if (c.n_retired < RATCHET_RETIRED)
                c.n_retired++;
        }
        c.previous_counter = c.send_n ? c.send_n - 1 : 0;
        memcpy(c.remote, m->ratchet_key, 32);
        if (curve_dh(dh, &c.self, c.remote) || root_step(c.root_key, c.recv_ck, c.root_key, dh))
            goto bad_key;
        c.recv_n = 0;
        c.has_recv = true;
        /* Our new ratchet key and sending chain wait for the next send
         * (Double Ratchet §6.5): a receiver pays for them only if it answers. */
        c.has_send = false;
        c.send_n = 0;
    }
    if (m->counter < c.recv_n) {
        r = RATCHET_DUPLICATE;
        goto out;
    }
    if (m->counter - c.recv_n > RATCHET_MAX_SKIP) {
        r = RATCHET_TOO_FAR;
        goto out;
    }
    if (skip_to(&skipped, c.recv_ck, &c.recv_n, m->counter, c.remote) ||
        chain_step(seed, next, c.recv_ck))
        goto out;
    memcpy(c.recv_ck, next, 32);
    c.recv_n++;
    r = open_with_seed(s, seed, m, pt, pt_len);
    if (r != RATCHET_OK)
        goto out;
    if (store_skipped(s, &skipped)) {
        wipe_bytes(pt, *pt_len);
        r = RATCHET_INTERNAL;
        goto out;
    }
    s->core = c; /* commit */
    goto out;
bad_key:
    /* Their ratchet key gave an unusable DH (a low-order point): forged. */
    r = RATCHET_BAD_MAC;
out:
    WIPE_OBJ(c);
    WIPE_OBJ(dh);
    WIPE_OBJ(seed);
    WIPE_OBJ(next);
    skip_list_wipe(&skipped);
    return r;
}

enum ratchet_result ratchet_decrypt(struct session *s, const struct signal_message *m,
                                    uint8_t *pt, size_t *pt_len)
{
    kdf_hold(); /* as in ratchet_encrypt */
    enum ratchet_result r = decrypt(s, m, pt, pt_len);
    kdf_release();
    return r;
}

uint32_t ratchet_decrypt_cost(const struct session *s, const struct signal_message *m)
{
    const struct ratchet_core *c = &s->core;
    for (size_t i = 0; i < s->n_skipped; i++) /* the same order as ratchet_decrypt */
        if (s->skipped[i].counter == m->counter &&
            !CRYPTO_memcmp(s->skipped[i].ratchet_key, m->ratchet_key, 32))
            return 1;
    for (uint32_t i = 0; i < c->n_retired; i++)
        if (!CRYPTO_memcmp(m->ratchet_key, c->retired[i], 32))
            return 0;
    uint64_t cost = 0, from = c->recv_n;
    if (!c->has_recv || CRYPTO_memcmp(m->ratchet_key, c->remote, 32)) {
        if (c->has_recv) {
            uint64_t until = (uint64_t)m->previous_counter + 1;
            if (until > c->recv_n && until - c->recv_n > RATCHET_MAX_SKIP)
                return 0;
            cost += until > c->recv_n ? until - c->recv_n : 0;
        }
        cost += RATCHET_DH_COST;
        from = 0;
    }
    if (m->counter < from || m->counter - from > RATCHET_MAX_SKIP)
        return (uint32_t)cost; /* refused after the DH step, if any */
    return (uint32_t)(cost + (m->counter - from) + 1);
}

const char *ratchet_result_text(enum ratchet_result r)
{
    switch (r) {
    case RATCHET_OK: return "ok";
    case RATCHET_BAD_MAC: return "MAC verification failed: the message was forged, corrupted, "
                                 "or is not for this session";
    case RATCHET_DUPLICATE: return "duplicate message: its key was already used or deleted "
                                   "(replay refused)";
    case RATCHET_TOO_FAR: return "message too far ahead: more than 2000 message keys would be "
                                 "skipped";
    case RATCHET_BAD_PADDING: return "bad padding after a valid MAC";
    case RATCHET_INTERNAL: break;
    }
    return "internal error while decrypting";
}
