/* kdf.c - HKDF, HMAC and SHA-2 wrappers (see kdf.h). */
#include "securitor/kdf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "securitor/wipe.h"

#define SHA256_BLOCK 64

/* Fetched once, kept for the process: per-call look-ups are slow in OpenSSL 3.
 *
 * Two HMAC contexts. zero_ctx is keyed with the all-zero key, which is
 * public, and kept freshly initialised between calls: an HKDF extract with
 * RFC 5869's default salt costs one HMAC and no key set-up. key_ctx takes
 * every other key; it is re-keyed with zeros after use (scrub_key_ctx), at
 * the end of each call or, under kdf_hold, at kdf_release. */
static EVP_MAC *mac;
static EVP_MAC_CTX *zero_ctx, *key_ctx;
static unsigned hold_depth; /* kdf_hold nesting */
static bool key_ctx_dirty;  /* key_ctx holds a key other than zeros */
static EVP_MD_CTX *md_ctx;
static EVP_MD *md_sha512, *md_sha256;

static const uint8_t ZERO_KEY[SHA256_BLOCK];

/* A fresh HMAC-SHA256 context keyed with zeros. HMAC's digest is set once:
 * naming it on every init makes OpenSSL fetch SHA-256 again each time. */
static EVP_MAC_CTX *zero_keyed_ctx(void)
{
    OSSL_PARAM digest[] = {
        OSSL_PARAM_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_END,
    };
    EVP_MAC_CTX *c = EVP_MAC_CTX_new(mac);
    if (c && EVP_MAC_CTX_set_params(c, digest) &&
        EVP_MAC_init(c, ZERO_KEY, HMAC_SHA256_LEN, NULL))
        return c;
    EVP_MAC_CTX_free(c);
    return NULL;
}

static int setup(void)
{
    if (key_ctx && zero_ctx && md_ctx && md_sha512 && md_sha256)
        return 0;
    if (!mac)
        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac && !key_ctx)
        key_ctx = zero_keyed_ctx();
    if (mac && !zero_ctx)
        zero_ctx = zero_keyed_ctx();
    if (!md_ctx)
        md_ctx = EVP_MD_CTX_new();
    if (!md_sha512)
        md_sha512 = EVP_MD_fetch(NULL, "SHA512", NULL);
    if (!md_sha256)
        md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (key_ctx && zero_ctx && md_ctx && md_sha512 && md_sha256)
        return 0;
    ERR_clear_error();
    return -1;
}

/* key_ctx keeps the pad states of its last key (a chain key, a PRK, a MAC
 * key), from which that key's outputs (a message key) could be recomputed:
 * re-key it with zeros, so that a used key is really gone. When that fails
 * the context is freed instead (which cleanses it) and made again on the
 * next call. */
static int scrub_key_ctx(void)
{
    if (!key_ctx_dirty)
        return 0;
    key_ctx_dirty = false;
    if (EVP_MAC_init(key_ctx, ZERO_KEY, HMAC_SHA256_LEN, NULL))
        return 0;
    EVP_MAC_CTX_free(key_ctx);
    key_ctx = NULL;
    ERR_clear_error();
    return -1;
}

/* Ends a call: scrubs key_ctx unless a hold defers it. Returns rc, or -1
 * when scrubbing failed. */
static int done(int rc)
{
    if (!hold_depth && scrub_key_ctx())
        rc = -1;
    if (rc)
        ERR_clear_error();
    return rc;
}

void kdf_hold(void)
{
    hold_depth++;
}

void kdf_release(void)
{
    if (hold_depth && --hold_depth)
        return;
    (void)scrub_key_ctx(); /* on failure the context is freed: the key is gone */
}

/* Keys key_ctx (an empty key is the zero block, as HMAC pads keys). */
static int set_key(const uint8_t *key, size_t key_len)
{
    key_ctx_dirty = true;
    return EVP_MAC_init(key_ctx, key_len ? key : ZERO_KEY, key_len, NULL) ? 0 : -1;
}

/* One HMAC over the parts on context c, which is initialised (keyed, or
 * re-initialised with its key) for it. */
static int mac_parts(EVP_MAC_CTX *c, uint8_t out[static HMAC_SHA256_LEN],
                     const struct bytes *parts, size_t n_parts)
{
    size_t out_len;
    for (size_t i = 0; i < n_parts; i++)
        if (parts[i].n && !EVP_MAC_update(c, parts[i].p, parts[i].n))
            return -1;
    return EVP_MAC_final(c, out, &out_len, HMAC_SHA256_LEN) && out_len == HMAC_SHA256_LEN
               ? 0
               : -1;
}

/* Re-initialises c with its current key (OpenSSL does so when given none);
 * this also frees the digest state the last final left, which holds that
 * HMAC's output. */
static int reinit(EVP_MAC_CTX *c)
{
    return EVP_MAC_init(c, NULL, 0, NULL) ? 0 : -1;
}

/* ============================================================================
 * HKDF (RFC 5869), composed from HMAC
 * ========================================================================== */

/* Whether an HMAC key acts as the all-zero key: HMAC pads keys up to the
 * block with zeros, so any all-zero key of at most a block (including the
 * empty salt RFC 5869 §2.2 turns into HashLen zeros) is the same key. The
 * comparison runs in constant time: a root key is a salt here. */
static bool zero_key(const uint8_t *key, size_t len)
{
    return len == 0 || (len <= SHA256_BLOCK && CRYPTO_memcmp(key, ZERO_KEY, len) == 0);
}

int hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                const uint8_t *ikm, size_t ikm_len, const char *info, size_t info_len)
{
    uint8_t prk[HMAC_SHA256_LEN], t[HMAC_SHA256_LEN];
    const struct bytes in = {ikm, ikm_len};
    int rc = -1;
    /* An empty output is refused, as OpenSSL's HKDF refuses it. */
    if (out_len == 0 || out_len > 255 * HMAC_SHA256_LEN || setup())
        goto out;
    /* Extract: PRK = HMAC(salt, IKM). */
    if (zero_key(salt, salt_len)) {
        if (mac_parts(zero_ctx, prk, &in, 1) || reinit(zero_ctx))
            goto out;
    } else if (set_key(salt, salt_len) || mac_parts(key_ctx, prk, &in, 1)) {
        goto out;
    }
    /* Expand: T(i) = HMAC(PRK, T(i-1) || info || i), T(0) empty. */
    if (set_key(prk, sizeof(prk)))
        goto out;
    for (size_t i = 1, done_len = 0; done_len < out_len; i++) {
        uint8_t counter = (uint8_t)i;
        const struct bytes parts[3] = {
            {t, i > 1 ? sizeof(t) : 0},
            {(const uint8_t *)info, info_len},
            {&counter, 1},
        };
        size_t n = out_len - done_len < sizeof(t) ? out_len - done_len : sizeof(t);
        if ((i > 1 && reinit(key_ctx)) || mac_parts(key_ctx, t, parts, 3))
            goto out;
        memcpy(out + done_len, t, n);
        done_len += n;
    }
    rc = 0;
out:
    WIPE_OBJ(prk);
    WIPE_OBJ(t);
    return done(rc);
}

/* ============================================================================
 * HMAC
 * ========================================================================== */

int hmac_sha256(uint8_t out[static HMAC_SHA256_LEN], const uint8_t *key, size_t key_len,
                const struct bytes *parts, size_t n_parts)
{
    if (setup())
        return -1;
    return done(set_key(key, key_len) || mac_parts(key_ctx, out, parts, n_parts) ? -1 : 0);
}

int hmac_sha256_each(uint8_t (*out)[HMAC_SHA256_LEN], const uint8_t *key, size_t key_len,
                     const struct bytes *msgs, size_t n)
{
    int rc;
    if (setup())
        return -1;
    /* The first message sets the key up; the others re-use it. */
    rc = set_key(key, key_len);
    for (size_t i = 0; i < n && !rc; i++)
        rc = (i && reinit(key_ctx)) || mac_parts(key_ctx, out[i], &msgs[i], 1) ? -1 : 0;
    return done(rc);
}

/* ============================================================================
 * Keyed HMAC contexts of their own (struct hmac_key)
 * ========================================================================== */

struct hmac_key {
    EVP_MAC_CTX *ctx;
};

struct hmac_key *hmac_key_new(const uint8_t *key, size_t key_len)
{
    struct hmac_key *k = NULL;
    OSSL_PARAM digest[] = {
        OSSL_PARAM_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_END,
    };
    if (setup() || !(k = calloc(1, sizeof(*k))) || !(k->ctx = EVP_MAC_CTX_new(mac)) ||
        !EVP_MAC_init(k->ctx, key_len ? key : ZERO_KEY, key_len, digest))
        goto fail;
    return k;
fail:
    ERR_clear_error();
    hmac_key_free(k);
    return NULL;
}

int hmac_key_mac(struct hmac_key *k, uint8_t out[static HMAC_SHA256_LEN], const uint8_t *msg,
                 size_t len)
{
    size_t out_len;
    /* A NULL key re-initialises the context with the key it holds. */
    if (!EVP_MAC_init(k->ctx, NULL, 0, NULL) || (len && !EVP_MAC_update(k->ctx, msg, len)) ||
        !EVP_MAC_final(k->ctx, out, &out_len, HMAC_SHA256_LEN) || out_len != HMAC_SHA256_LEN) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void hmac_key_free(struct hmac_key *k)
{
    if (!k)
        return;
    EVP_MAC_CTX_free(k->ctx); /* the HMAC provider clear-frees its copy of the key */
    free(k);
}

/* ============================================================================
 * SHA-2
 * ========================================================================== */

/* One digest on the shared context. The context keeps its last hash state
 * (and input block) until the next call, unless `scrub` resets it, which
 * frees the provider's state with OPENSSL_clear_free (and costs an
 * allocation on the next call: fingerprints hash 10,400 times). */
static int digest(const EVP_MD *md, uint8_t *out, const struct bytes *parts, size_t n_parts,
                  bool scrub)
{
    int rc = -1;
    if (!EVP_DigestInit_ex(md_ctx, md, NULL))
        goto out;
    for (size_t i = 0; i < n_parts; i++)
        if (parts[i].n && !EVP_DigestUpdate(md_ctx, parts[i].p, parts[i].n))
            goto out;
    if (EVP_DigestFinal_ex(md_ctx, out, NULL))
        rc = 0;
out:
    if (scrub || rc)
        EVP_MD_CTX_reset(md_ctx);
    if (rc)
        ERR_clear_error();
    return rc;
}

int sha512(uint8_t out[static SHA512_LEN], const struct bytes *parts, size_t n_parts)
{
    if (setup())
        return -1;
    return digest(md_sha512, out, parts, n_parts, false);
}

int sha512_secret(uint8_t out[static SHA512_LEN], const struct bytes *parts, size_t n_parts)
{
    if (setup())
        return -1;
    return digest(md_sha512, out, parts, n_parts, true);
}

int sha256(uint8_t out[static 32], const uint8_t *p, size_t n)
{
    struct bytes part = {p, n};
    if (setup())
        return -1;
    return digest(md_sha256, out, &part, 1, false);
}
