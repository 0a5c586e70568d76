/* aead.c - AES-256-GCM seal/open (see aead.h).
 *
 * The cipher is fetched once: per-call algorithm look-ups are a known
 * OpenSSL 3 slowdown. Each key keeps one encryption and one decryption
 * context; a message only re-initialises the IV, so the key schedule is
 * computed once per key.
 */
#include "securitor/aead.h"
#include "securitor/wipe.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct aead_key {
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
};

static EVP_CIPHER *gcm_cipher(void)
{
    static EVP_CIPHER *cipher; /* fetched once, kept for the process */
    if (!cipher)
        cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    return cipher;
}

struct aead_key *aead_key_new(const uint8_t key[static AEAD_KEY_LEN])
{
    EVP_CIPHER *cipher = gcm_cipher();
    struct aead_key *k = calloc(1, sizeof(*k));
    if (!cipher || !k)
        goto fail;
    k->enc = EVP_CIPHER_CTX_new();
    k->dec = EVP_CIPHER_CTX_new();
    if (!k->enc || !k->dec)
        goto fail;
    /* The default GCM IV length is 12 bytes, the only one we accept. */
    if (!EVP_EncryptInit_ex2(k->enc, cipher, key, NULL, NULL) ||
        !EVP_DecryptInit_ex2(k->dec, cipher, key, NULL, NULL))
        goto fail;
    return k;
fail:
    ERR_clear_error();
    aead_key_free(k);
    return NULL;
}

void aead_key_free(struct aead_key *k)
{
    if (!k)
        return;
    EVP_CIPHER_CTX_free(k->enc); /* cleanses the key schedule */
    EVP_CIPHER_CTX_free(k->dec);
    free(k);
}

/* EVP_*Update take an int length: feed large buffers in chunks. The tests
 * build this file again with a tiny AEAD_CHUNK so the loops really loop. */
#ifndef AEAD_CHUNK
#define AEAD_CHUNK (1 << 30)
#endif
#define CHUNK AEAD_CHUNK

/* Both directions share these: each context knows which way it runs. */
static enum aead_result cipher_begin(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *iv,
                                     const uint8_t *aad, size_t aad_len)
{
    int outl;
    if (!EVP_CipherInit_ex2(ctx, NULL, NULL, iv, enc, NULL))
        goto fail;
    for (size_t off = 0; off < aad_len; off += CHUNK) {
        int n = aad_len - off > CHUNK ? CHUNK : (int)(aad_len - off);
        if (!EVP_CipherUpdate(ctx, NULL, &outl, aad + off, n))
            goto fail;
    }
    return AEAD_OK;
fail:
    ERR_clear_error();
    return AEAD_INTERNAL;
}

static enum aead_result cipher_next(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len,
                                    uint8_t *out)
{
    int outl;
    for (size_t off = 0; off < len; off += CHUNK) {
        int n = len - off > CHUNK ? CHUNK : (int)(len - off);
        /* GCM is a stream mode: every byte in gives a byte out at once. */
        if (!EVP_CipherUpdate(ctx, out + off, &outl, in + off, n) || outl != n) {
            ERR_clear_error();
            return AEAD_INTERNAL;
        }
    }
    return AEAD_OK;
}

enum aead_result aead_seal_begin(struct aead_key *k, const uint8_t iv[static AEAD_IV_LEN],
                                 const uint8_t *aad, size_t aad_len)
{
    return cipher_begin(k->enc, 1, iv, aad, aad_len);
}

enum aead_result aead_seal_next(struct aead_key *k, const uint8_t *pt, size_t len, uint8_t *ct)
{
    return cipher_next(k->enc, pt, len, ct);
}

enum aead_result aead_seal_end(struct aead_key *k, uint8_t tag[static AEAD_TAG_LEN])
{
    int outl;
    uint8_t none[1]; /* GCM's final writes nothing */
    /* Tag through OSSL_PARAM directly: the legacy ctrl call is translated
     * into the same params at a measurable cost per message. */
    OSSL_PARAM params[] = {
        OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, AEAD_TAG_LEN),
        OSSL_PARAM_END,
    };
    if (!EVP_EncryptFinal_ex(k->enc, none, &outl) || outl != 0 ||
        !EVP_CIPHER_CTX_get_params(k->enc, params)) {
        ERR_clear_error();
        return AEAD_INTERNAL;
    }
    return AEAD_OK;
}

enum aead_result aead_seal(struct aead_key *k, const uint8_t iv[static AEAD_IV_LEN],
                           const uint8_t *aad, size_t aad_len,
                           const uint8_t *pt, size_t len,
                           uint8_t *ct, uint8_t tag[static AEAD_TAG_LEN])
{
    enum aead_result rc = aead_seal_begin(k, iv, aad, aad_len);
    if (rc == AEAD_OK)
        rc = aead_seal_next(k, pt, len, ct);
    if (rc == AEAD_OK)
        rc = aead_seal_end(k, tag);
    return rc;
}

enum aead_result aead_open_begin(struct aead_key *k, const uint8_t iv[static AEAD_IV_LEN],
                                 const uint8_t *aad, size_t aad_len)
{
    return cipher_begin(k->dec, 0, iv, aad, aad_len);
}

enum aead_result aead_open_next(struct aead_key *k, const uint8_t *ct, size_t len, uint8_t *pt)
{
    return cipher_next(k->dec, ct, len, pt);
}

enum aead_result aead_open_end(struct aead_key *k, const uint8_t tag[static AEAD_TAG_LEN])
{
    uint8_t tag_copy[AEAD_TAG_LEN]; /* OSSL_PARAM takes a non-const pointer */
    uint8_t none[1];                /* GCM's final writes nothing */
    int outl;
    OSSL_PARAM params[] = {
        OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag_copy, AEAD_TAG_LEN),
        OSSL_PARAM_END,
    };
    memcpy(tag_copy, tag, AEAD_TAG_LEN);
    if (!EVP_CIPHER_CTX_set_params(k->dec, params)) {
        ERR_clear_error();
        return AEAD_INTERNAL;
    }
    /* Final is where the tag is checked. */
    if (EVP_DecryptFinal_ex(k->dec, none, &outl) > 0)
        return AEAD_OK;
    ERR_clear_error();
    return AEAD_AUTH_FAILED;
}

enum aead_result aead_open(struct aead_key *k, const uint8_t *iv, size_t iv_len,
                           const uint8_t *aad, size_t aad_len,
                           const uint8_t *ct, size_t len,
                           const uint8_t *tag, size_t tag_len, uint8_t *pt)
{
    /* Only 96-bit IVs and full 128-bit tags: a short tag would be checked as
     * a prefix, which lowers the forgery bound (SP 800-38D Appendix C). */
    if (iv_len != AEAD_IV_LEN || tag_len != AEAD_TAG_LEN)
        return AEAD_BAD_SIZE;
    enum aead_result rc = aead_open_begin(k, iv, aad, aad_len);
    if (rc == AEAD_OK)
        rc = aead_open_next(k, ct, len, pt);
    if (rc == AEAD_OK)
        rc = aead_open_end(k, tag);
    if (rc != AEAD_OK)
        wipe_bytes(pt, len);
    return rc;
}
