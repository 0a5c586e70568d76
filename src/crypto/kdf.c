/* kdf.c - HKDF, HMAC and SHA-2 wrappers (see kdf.h). */
#include "securitor/kdf.h"

#include <stdbool.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

/* Fetched once, kept for the process: per-call look-ups are slow in OpenSSL 3. */
static EVP_KDF_CTX *hkdf_ctx;
static EVP_MAC_CTX *hmac_ctx;
static EVP_MD_CTX *md_ctx;
static EVP_MD *md_sha512, *md_sha256;
static EVP_MAC *mac_hmac; /* for contexts of their own (struct hmac_key) */

static int setup(void)
{
    if (hkdf_ctx && hmac_ctx && md_ctx && md_sha512 && md_sha256 && mac_hmac)
        return 0;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_MAC *mac = mac_hmac ? mac_hmac : EVP_MAC_fetch(NULL, "HMAC", NULL);
    /* HMAC's digest is set once: naming it on every init makes OpenSSL fetch
     * SHA-256 again each time. */
    OSSL_PARAM digest[] = {
        OSSL_PARAM_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_END,
    };
    if (!hkdf_ctx && kdf)
        hkdf_ctx = EVP_KDF_CTX_new(kdf);
    if (!hmac_ctx && mac && (hmac_ctx = EVP_MAC_CTX_new(mac)) &&
        !EVP_MAC_CTX_set_params(hmac_ctx, digest)) {
        EVP_MAC_CTX_free(hmac_ctx);
        hmac_ctx = NULL;
    }
    EVP_KDF_free(kdf); /* the contexts hold their own references */
    mac_hmac = mac;    /* kept for hmac_key_new */
    if (!md_ctx)
        md_ctx = EVP_MD_CTX_new();
    if (!md_sha512)
        md_sha512 = EVP_MD_fetch(NULL, "SHA512", NULL);
    if (!md_sha256)
        md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    return hkdf_ctx && hmac_ctx && md_ctx && md_sha512 && md_sha256 && mac_hmac ? 0 : -1;
}

int hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                const uint8_t *ikm, size_t ikm_len, const char *info, size_t info_len)
{
    static const uint8_t no_salt[1];
    int rc = -1;
    if (setup())
        goto out;
    /* The digest is named on every call and the context reset after each
     * derive: OpenSSL 3.0's HKDF mishandles an empty info on a reused
     * context, and the reset also clear-frees the copied key. OSSL_PARAM
     * wants non-const pointers; HKDF does not write through them. */
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)ikm, ikm_len),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT,
                                (void *)(uintptr_t)(salt_len ? salt : no_salt), salt_len),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info, info_len),
        OSSL_PARAM_END,
    };
    rc = EVP_KDF_derive(hkdf_ctx, out, out_len, params) == 1 ? 0 : -1;
    EVP_KDF_CTX_reset(hkdf_ctx);
out:
    ERR_clear_error();
    return rc;
}

/* The reused HMAC context keeps the pad state of its last key, from which
 * that key's outputs (a message key seed) could be recomputed: re-key it
 * with zeros after every use, so a used key is really gone. */
static int scrub_hmac(void)
{
    static const uint8_t zero[HMAC_SHA256_LEN];
    if (!EVP_MAC_init(hmac_ctx, zero, sizeof(zero), NULL)) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static const uint8_t NO_KEY[1]; /* stands for an empty key (length 0) */

/* One HMAC over the parts on the shared context; a NULL key re-uses the
 * context's current key (OpenSSL re-initialises with it). No scrub. */
static int mac_parts(uint8_t out[static HMAC_SHA256_LEN], const uint8_t *key, size_t key_len,
                     const struct bytes *parts, size_t n_parts)
{
    size_t out_len;
    if (!EVP_MAC_init(hmac_ctx, key, key_len, NULL))
        return -1;
    for (size_t i = 0; i < n_parts; i++)
        if (parts[i].n && !EVP_MAC_update(hmac_ctx, parts[i].p, parts[i].n))
            return -1;
    return EVP_MAC_final(hmac_ctx, out, &out_len, HMAC_SHA256_LEN) &&
                   out_len == HMAC_SHA256_LEN
               ? 0
               : -1;
}

/* Scrubs the context after use; returns rc, or -1 when scrubbing failed. */
static int mac_done(int rc)
{
    if (scrub_hmac())
        rc = -1;
    ERR_clear_error();
    return rc;
}

int hmac_sha256(uint8_t out[static HMAC_SHA256_LEN], const uint8_t *key, size_t key_len,
                const struct bytes *parts, size_t n_parts)
{
    if (setup()) {
        ERR_clear_error();
        return -1;
    }
    /* An empty key must not reach mac_parts as NULL, which means "re-use". */
    return mac_done(mac_parts(out, key ? key : NO_KEY, key_len, parts, n_parts));
}

int hmac_sha256_each(uint8_t (*out)[HMAC_SHA256_LEN], const uint8_t *key, size_t key_len,
                     const struct bytes *msgs, size_t n)
{
    int rc = 0;
    if (setup()) {
        ERR_clear_error();
        return -1;
    }
    /* The first message sets the key up; the others re-use it. */
    for (size_t i = 0; i < n && !rc; i++)
        rc = mac_parts(out[i], i ? NULL : key ? key : NO_KEY, i ? 0 : key_len, &msgs[i], 1);
    return mac_done(rc);
}

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
    if (setup() || !(k = calloc(1, sizeof(*k))) || !(k->ctx = EVP_MAC_CTX_new(mac_hmac)) ||
        !EVP_MAC_init(k->ctx, key ? key : NO_KEY, key_len, digest))
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
