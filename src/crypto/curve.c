/* curve.c - X25519, Ed25519 and the libsignal signature map (see curve.h). */
#include "securitor/curve.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "securitor/kdf.h"
#include "securitor/keypool.h"
#include "securitor/rand.h"
#include "securitor/wipe.h"

void curve_encode(uint8_t out[static CURVE_ENCODED_LEN], const uint8_t pub[static CURVE_KEY_LEN])
{
    out[0] = CURVE_DJB_TYPE;
    memcpy(out + 1, pub, CURVE_KEY_LEN);
}

int curve_decode(uint8_t pub[static CURVE_KEY_LEN], const uint8_t *in, size_t len)
{
    if (len == CURVE_ENCODED_LEN && in[0] == CURVE_DJB_TYPE) {
        memcpy(pub, in + 1, CURVE_KEY_LEN);
        return 0;
    }
    if (len == CURVE_KEY_LEN) {
        memcpy(pub, in, CURVE_KEY_LEN);
        return 0;
    }
    return -1;
}

static void clamp(uint8_t k[static CURVE_KEY_LEN])
{
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
}

enum key_alg { KEY_X25519, KEY_ED25519 };

/* Raw key bytes as an EVP_PKEY, through one cached context per algorithm:
 * EVP_PKEY_new_raw_*_key look the algorithm up in OpenSSL's name map on
 * every call, which costs about as much as the import itself.
 * priv, pub or both may be given. A private key alone makes OpenSSL compute
 * the public key, a scalar multiplication: pass both when both are known. */
static EVP_PKEY *import_key(enum key_alg alg, const uint8_t *priv, const uint8_t *pub)
{
    static EVP_PKEY_CTX *ctx[2];
    static const char *const names[2] = {"X25519", "ED25519"};
    OSSL_PARAM params[3], *p = params;
    EVP_PKEY *k = NULL;
    if (!ctx[alg] && !(ctx[alg] = EVP_PKEY_CTX_new_from_name(NULL, names[alg], NULL)))
        return NULL;
    /* OSSL_PARAM takes non-const pointers; fromdata only reads them. */
    if (priv)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY,
                                                 (void *)(uintptr_t)priv, 32);
    if (pub)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                 (void *)(uintptr_t)pub, 32);
    *p = OSSL_PARAM_construct_end();
    if (EVP_PKEY_fromdata_init(ctx[alg]) != 1 ||
        EVP_PKEY_fromdata(ctx[alg], &k, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                          params) != 1)
        return NULL;
    return k;
}

int curve_public(uint8_t pub[static CURVE_KEY_LEN], const uint8_t priv[static CURVE_KEY_LEN])
{
    size_t len = CURVE_KEY_LEN;
    EVP_PKEY *k = import_key(KEY_X25519, priv, NULL);
    int rc = k && EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == CURVE_KEY_LEN ? 0 : -1;
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

int curve_generate(struct curve_keypair *kp)
{
    int took = keypool_take(kp); /* made ahead on another core, when one is ready */
    if (took)
        return took > 0 ? 0 : -1;
    if (rand_secret(kp->priv, CURVE_KEY_LEN))
        return -1;
    clamp(kp->priv); /* OpenSSL clamps anyway; stored clamped so libsignal agrees */
    return curve_public(kp->pub, kp->priv);
}

/* The peer's public key for derives: one EVP_PKEY whose key is replaced
 * (EVP_PKEY_set1_encoded_public_key) for each DH, instead of a new object
 * per DH (EVP_PKEY_fromdata looks the type up in the provider's name map
 * every time). Public data only. */
static EVP_PKEY *peer_key(const uint8_t pub[static CURVE_KEY_LEN])
{
    static EVP_PKEY *peer;
    if (!peer)
        return peer = import_key(KEY_X25519, NULL, pub);
    return EVP_PKEY_set1_encoded_public_key(peer, pub, CURVE_KEY_LEN) == 1 ? peer : NULL;
}

/* X25519 of `me` with each of n public keys, on one derive context. On
 * failure (OpenSSL failed, or a result is all zero: a low-order public key)
 * every output is wiped and -1 returned. */
static int derive_each(EVP_PKEY *me, uint8_t *const out[], const uint8_t *const theirs[],
                       size_t n)
{
    static const uint8_t zero[CURVE_KEY_LEN];
    int rc = -1;
    size_t i = 0;
    EVP_PKEY_CTX *ctx = me ? EVP_PKEY_CTX_new(me, NULL) : NULL;
    if (!ctx || EVP_PKEY_derive_init(ctx) != 1)
        goto out;
    for (; i < n; i++) {
        size_t len = CURVE_KEY_LEN;
        EVP_PKEY *them = peer_key(theirs[i]);
        /* No validation of the peer: for X25519 OpenSSL's public-key check
         * only asks whether a public key is present (and costs a context). */
        if (!them || EVP_PKEY_derive_set_peer_ex(ctx, them, 0) != 1 ||
            EVP_PKEY_derive(ctx, out[i], &len) != 1 || len != CURVE_KEY_LEN)
            goto out;
        /* OpenSSL already refuses an all-zero result; check anyway, in
         * constant time, since using it would make the "shared" secret
         * public. */
        if (CRYPTO_memcmp(out[i], zero, CURVE_KEY_LEN) == 0)
            goto out;
    }
    rc = 0;
out:
    if (rc)
        for (size_t j = 0; j < n; j++)
            OPENSSL_cleanse(out[j], CURVE_KEY_LEN);
    EVP_PKEY_CTX_free(ctx); /* its peer reference goes too */
    ERR_clear_error();
    return rc;
}

int curve_dh(uint8_t out[static CURVE_KEY_LEN], const struct curve_keypair *mine,
             const uint8_t theirs[static CURVE_KEY_LEN])
{
    return curve_dh_each(&out, mine, &theirs, 1);
}

int curve_dh_each(uint8_t *const out[], const struct curve_keypair *mine,
                  const uint8_t *const theirs[], size_t n)
{
    EVP_PKEY *me = import_key(KEY_X25519, mine->priv, mine->pub);
    int rc = derive_each(me, out, theirs, n);
    EVP_PKEY_free(me); /* cleanses its copy of the private key */
    return rc;
}

int curve_generate_dh(struct curve_keypair *kp, uint8_t out[static CURVE_KEY_LEN],
                      const uint8_t theirs[static CURVE_KEY_LEN])
{
    size_t len = CURVE_KEY_LEN;
    EVP_PKEY *me = NULL;
    int rc = -1;
    int took = keypool_take(kp);
    if (took)
        return took > 0 ? curve_dh(out, kp, theirs) : -1;
    if (rand_secret(kp->priv, CURVE_KEY_LEN))
        goto out;
    clamp(kp->priv);
    if (!(me = import_key(KEY_X25519, kp->priv, NULL)) || /* computes the public key */
        EVP_PKEY_get_raw_public_key(me, kp->pub, &len) != 1 || len != CURVE_KEY_LEN)
        goto out;
    rc = derive_each(me, &out, &theirs, 1);
out:
    EVP_PKEY_free(me);
    ERR_clear_error();
    return rc;
}

int curve_public_usable(const uint8_t pub[static CURVE_KEY_LEN])
{
    /* X25519 with any clamped scalar (a multiple of 8) sends a point of
     * order 1, 2, 4 or 8 to zero, and only those. The scalar is public: it
     * only probes the key. */
    static struct curve_keypair probe = {.priv = {
        0x48, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
        0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
        0x5a, 0x5a, 0x5a, 0x5a}};
    static bool ready;
    uint8_t out[CURVE_KEY_LEN];
    if (!ready) {
        if (curve_public(probe.pub, probe.priv))
            return -1;
        ready = true;
    }
    int rc = curve_dh(out, &probe, pub) == 0;
    OPENSSL_cleanse(out, sizeof(out));
    return rc;
}

/* The Ed25519 public key of a seed. */
static int ed25519_public(uint8_t pub[static 32], const uint8_t seed[static 32])
{
    size_t len = 32;
    EVP_PKEY *k = import_key(KEY_ED25519, seed, NULL);
    int rc = k && EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == 32 ? 0 : -1;
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

int curve_identity_generate(struct curve_identity *id)
{
    uint8_t ed_pub[32], h[SHA512_LEN];
    int rc = -1;
    /* Redraw until the Edwards sign bit is 0 (about two tries): then the
     * signature is valid for libsignal's verifier and for XEdDSA verifiers,
     * which assume sign 0 (SIGNAL.md 2.5). */
    for (int tries = 0; tries < 256; tries++) {
        if (rand_secret(id->seed, sizeof(id->seed)) || ed25519_public(ed_pub, id->seed))
            goto out;
        if (!(ed_pub[31] & 0x80))
            break;
    }
    if (ed_pub[31] & 0x80)
        goto out;
    /* RFC 8032 §5.1.5: the Ed25519 scalar is the clamped first half of
     * SHA-512(seed); the same scalar is the X25519 private key. */
    struct bytes part = {id->seed, sizeof(id->seed)};
    if (sha512_secret(h, &part, 1))
        goto out;
    memcpy(id->x.priv, h, CURVE_KEY_LEN);
    clamp(id->x.priv);
    memcpy(id->ed_pub, ed_pub, sizeof(ed_pub));
    rc = curve_public(id->x.pub, id->x.priv);
out:
    WIPE_OBJ(h);
    return rc;
}

int curve_sign(uint8_t sig[static CURVE_SIG_LEN], const struct curve_identity *id,
               const uint8_t *msg, size_t len)
{
    int rc = -1;
    size_t sig_len = CURVE_SIG_LEN;
    EVP_MD_CTX *ctx = NULL;
    /* Given the seed alone, OpenSSL would compute the public key again, a
     * scalar multiplication as dear as the signature; given both halves it
     * takes them as they are, so ed_pub must be the seed's own
     * (curve_identity_generate and curve_identity_restore see to it). */
    EVP_PKEY *k = import_key(KEY_ED25519, id->seed, id->ed_pub);
    if (!k || !(ctx = EVP_MD_CTX_new()) || EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) != 1 ||
        EVP_DigestSign(ctx, sig, &sig_len, msg, len) != 1 || sig_len != CURVE_SIG_LEN)
        goto out;
    sig[63] |= id->ed_pub[31] & 0x80; /* libsignal carries the sign bit here (0) */
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k); /* frees (and cleanses) its copy of the seed */
    ERR_clear_error();
    return rc;
}

int ed25519_verify(const uint8_t pub[static 32], const uint8_t *msg, size_t len,
                   const uint8_t *sig, size_t sig_len)
{
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY *k = import_key(KEY_ED25519, NULL, pub);
    if (!k) { /* not a point: that is a failed verification, not an error */
        rc = 0;
        goto out;
    }
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) != 1)
        goto out;
    rc = EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1 ? 1 : 0;
out:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

/* The u-coordinates (little-endian, reduced) of the points of order 1, 2, 4
 * and 8 that have an Edwards image: 0, 1, and the two of order 8. */
static const uint8_t SMALL_ORDER_U[4][32] = {
    {0},
    {1},
    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
     0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
     0xb8, 0x00},
    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
     0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
     0x11, 0x57},
};

/* The Edwards y of a Montgomery u (SIGNAL.md 2.4): y = (u - 1) / (u + 1)
 * mod p, from u with bit 255 cleared (as libsignal's fe_frombytes). Returns
 * 1 with y, 0 when u has no usable image (small order, or -1), -1 on an
 * internal error. */
static int edwards_y(uint8_t y_bytes[static 32], const uint8_t u_in[static CURVE_KEY_LEN])
{
    int rc = -1;
    uint8_t u_bytes[32];
    BN_CTX *bn = BN_CTX_new();
    BIGNUM *p = BN_new(), *u = NULL, *num = NULL, *den = NULL, *y = NULL;
    if (bn)
        BN_CTX_start(bn); /* before any exit: out ends it */
    if (!bn || !p)
        goto out;
    u = BN_CTX_get(bn), num = BN_CTX_get(bn), den = BN_CTX_get(bn), y = BN_CTX_get(bn);
    if (!y || !BN_set_bit(p, 255) || !BN_sub_word(p, 19)) /* p = 2^255 - 19 */
        goto out;
    memcpy(u_bytes, u_in, 32);
    u_bytes[31] &= 0x7F;
    if (!BN_lebin2bn(u_bytes, 32, u) || !BN_nnmod(u, u, p, bn) ||
        BN_bn2lebinpad(u, u_bytes, 32) != 32)
        goto out;
    /* A key of small order (u = 0, 1, or one of the two points of order 8;
     * -1 is refused below) maps to an Edwards point that a forger needs no
     * secret for: with it, R = the point and S = 0 verify for a quarter or
     * an eighth of all messages (fuzz_signed found u = 1, the zero
     * signature). No real identity is one of them. */
    for (size_t i = 0; i < sizeof(SMALL_ORDER_U) / sizeof(SMALL_ORDER_U[0]); i++)
        if (!CRYPTO_memcmp(u_bytes, SMALL_ORDER_U[i], 32)) {
            rc = 0;
            goto out;
        }
    /* u = -1 has no image (SIGNAL.md 2.4). */
    if (!BN_mod_sub(num, u, BN_value_one(), p, bn) || !BN_mod_add(den, u, BN_value_one(), p, bn))
        goto out;
    if (BN_is_zero(den)) {
        rc = 0;
        goto out;
    }
    if (!BN_mod_inverse(den, den, p, bn) || !BN_mod_mul(y, num, den, p, bn) ||
        BN_bn2lebinpad(y, y_bytes, 32) != 32)
        goto out;
    rc = 1;
out:
    if (bn)
        BN_CTX_end(bn);
    BN_CTX_free(bn);
    BN_free(p);
    ERR_clear_error();
    return rc;
}

/* The images of the keys asked about lately (public data), so that a key
 * seen again (a device's signed fetches, the signers of device lists) costs
 * no modular inversion. Keyed by u as given, bit 255 cleared (edwards_y's
 * whole input); only images are kept, never a refusal; a u chosen to
 * collide only evicts. */
#define EDWARDS_KEYS 256

static struct edwards {
    uint8_t u[CURVE_KEY_LEN], y[32];
    bool used;
} edwards[EDWARDS_KEYS];

static int edwards_y_cached(uint8_t y[static 32], const uint8_t pub[static CURVE_KEY_LEN])
{
    uint8_t u[CURVE_KEY_LEN];
    memcpy(u, pub, CURVE_KEY_LEN);
    u[31] &= 0x7F;
    struct edwards *e = &edwards[(u[0] ^ (uint8_t)(u[1] + u[2])) % EDWARDS_KEYS];
    if (e->used && !memcmp(e->u, u, CURVE_KEY_LEN)) {
        memcpy(y, e->y, 32);
        return 1;
    }
    int rc = edwards_y(y, u);
    if (rc == 1) {
        memcpy(e->u, u, CURVE_KEY_LEN);
        memcpy(e->y, y, 32);
        e->used = true;
    }
    return rc;
}

/* curve_verify without the cache of verified signatures. */
static int verify(const uint8_t pub[static CURVE_KEY_LEN], const uint8_t *msg, size_t len,
                  const uint8_t sig[static CURVE_SIG_LEN])
{
    uint8_t ed_pub[32], ed_sig[CURVE_SIG_LEN];
    int rc = edwards_y_cached(ed_pub, pub);
    if (rc != 1)
        return rc;
    ed_pub[31] |= sig[63] & 0x80; /* y < 2^255, so bit 255 carries the sign */
    memcpy(ed_sig, sig, CURVE_SIG_LEN);
    ed_sig[63] &= 0x7F;
    return ed25519_verify(ed_pub, msg, len, ed_sig, CURVE_SIG_LEN);
}

int curve_identity_restore(struct curve_identity *id)
{
    uint8_t h[SHA512_LEN], priv[CURVE_KEY_LEN], y[32];
    struct bytes part = {id->seed, sizeof(id->seed)};
    int rc = -1;
    if (ed25519_public(id->ed_pub, id->seed) || sha512_secret(h, &part, 1))
        goto out;
    memcpy(priv, h, CURVE_KEY_LEN);
    clamp(priv);
    /* The seed's Edwards key has sign bit 0, its scalar is x.priv (clamped
     * as stored), and x.pub is that point's u, in its canonical form (bit
     * 255 clear), whose Edwards y is the key's. */
    if (!(id->ed_pub[31] & 0x80) && !CRYPTO_memcmp(priv, id->x.priv, CURVE_KEY_LEN) &&
        !(id->x.pub[31] & 0x80) && edwards_y_cached(y, id->x.pub) == 1 &&
        !CRYPTO_memcmp(y, id->ed_pub, 32))
        rc = 0;
out:
    WIPE_OBJ(h);
    WIPE_OBJ(priv);
    return rc;
}

/* ============================================================================
 * Verified signatures
 * ========================================================================== */

/* Signatures that verified, by content: (public key, SHA-256 of the
 * message, signature), so that a bundle or a device list seen again
 * (another session with the same peer; every send re-reads both users'
 * lists, PROTOCOL.md §5.2) costs a hash, not an Ed25519 verification.
 * Verification is a function of these bytes alone and SHA-256 is collision
 * resistant, so a hit answers what verifying again would. Only valid
 * signatures are kept; all of it is public. Bounded: VERIFIED_SETS sets of
 * VERIFIED_WAYS entries, the oldest of a set replaced first. */
#define VERIFIED_SETS 256
#define VERIFIED_WAYS 4

struct verified {
    uint8_t pub[CURVE_KEY_LEN], sig[CURVE_SIG_LEN], msg_hash[32];
    bool used;
};

static struct verified verified[VERIFIED_SETS][VERIFIED_WAYS];
static uint8_t verified_next[VERIFIED_SETS]; /* the set's next victim */

static size_t verified_set(const uint8_t pub[static CURVE_KEY_LEN],
                           const uint8_t sig[static CURVE_SIG_LEN])
{
    /* R (the signature's first half) is a hash output for honest signers;
     * a forger can only make entries evict each other. */
    return (size_t)(sig[0] ^ pub[0] ^ (uint8_t)(sig[1] + pub[1])) % VERIFIED_SETS;
}

static bool verified_find(const uint8_t pub[static CURVE_KEY_LEN],
                          const uint8_t msg_hash[static 32],
                          const uint8_t sig[static CURVE_SIG_LEN])
{
    const struct verified *set = verified[verified_set(pub, sig)];
    for (size_t i = 0; i < VERIFIED_WAYS; i++)
        if (set[i].used && !memcmp(set[i].sig, sig, CURVE_SIG_LEN) &&
            !memcmp(set[i].pub, pub, CURVE_KEY_LEN) && !memcmp(set[i].msg_hash, msg_hash, 32))
            return true;
    return false;
}

static void verified_add(const uint8_t pub[static CURVE_KEY_LEN],
                         const uint8_t msg_hash[static 32],
                         const uint8_t sig[static CURVE_SIG_LEN])
{
    size_t s = verified_set(pub, sig);
    struct verified *v = &verified[s][verified_next[s]];
    verified_next[s] = (uint8_t)((verified_next[s] + 1) % VERIFIED_WAYS);
    memcpy(v->pub, pub, CURVE_KEY_LEN);
    memcpy(v->sig, sig, CURVE_SIG_LEN);
    memcpy(v->msg_hash, msg_hash, 32);
    v->used = true;
}

int curve_verify(const uint8_t pub[static CURVE_KEY_LEN], const uint8_t *msg, size_t len,
                 const uint8_t sig[static CURVE_SIG_LEN])
{
    uint8_t msg_hash[32];
    bool hashed = sha256(msg_hash, msg, len) == 0; /* without it, no cache */
    if (hashed && verified_find(pub, msg_hash, sig))
        return 1;
    int rc = verify(pub, msg, len, sig);
    if (rc == 1 && hashed)
        verified_add(pub, msg_hash, sig);
    return rc;
}
