/* cbc.c - AES-256-CBC with PKCS#7 (see cbc.h). */
#include "securitor/cbc.h"

#include <limits.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "securitor/wipe.h"

/* Reused (one message at a time) and reset after each use, or under
 * cbc_hold at cbc_release: a message key's schedule must not outlive the
 * message, or the held run of them. */
static EVP_CIPHER_CTX *shared_ctx;
static unsigned hold_depth; /* cbc_hold nesting */

static EVP_CIPHER_CTX *cbc_ctx(EVP_CIPHER **cipher)
{
    static EVP_CIPHER *c;
    if (!c)
        c = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (!shared_ctx)
        shared_ctx = EVP_CIPHER_CTX_new();
    /* A context still set up for the cipher (under a hold) is re-keyed as
     * it is: naming the cipher again would make OpenSSL free its state and
     * allocate it anew. */
    *cipher = shared_ctx && EVP_CIPHER_CTX_get0_cipher(shared_ctx) == c ? NULL : c;
    return c ? shared_ctx : NULL;
}

/* Ends a call: resets the context unless a hold defers it. */
static void done(void)
{
    if (!hold_depth)
        EVP_CIPHER_CTX_reset(shared_ctx); /* cleanses the message key's schedule */
}

void cbc_hold(void)
{
    hold_depth++;
}

void cbc_release(void)
{
    if (hold_depth && --hold_depth)
        return;
    if (shared_ctx)
        EVP_CIPHER_CTX_reset(shared_ctx);
}

int cbc_encrypt(uint8_t *out, const uint8_t key[static CBC_KEY_LEN],
                const uint8_t iv[static CBC_IV_LEN], const uint8_t *in, size_t len)
{
    EVP_CIPHER *c;
    EVP_CIPHER_CTX *ctx = cbc_ctx(&c);
    int n1, n2;
    if (!ctx || len > INT_MAX - CBC_BLOCK || !EVP_EncryptInit_ex2(ctx, c, key, iv, NULL) ||
        !EVP_EncryptUpdate(ctx, out, &n1, in, (int)len) ||
        !EVP_EncryptFinal_ex(ctx, out + n1, &n2) || (size_t)(n1 + n2) != cbc_padded_len(len)) {
        EVP_CIPHER_CTX_reset(ctx);
        ERR_clear_error();
        return -1;
    }
    done();
    return 0;
}

int cbc_decrypt(uint8_t *out, size_t *out_len, const uint8_t key[static CBC_KEY_LEN],
                const uint8_t iv[static CBC_IV_LEN], const uint8_t *in, size_t len)
{
    EVP_CIPHER *c;
    EVP_CIPHER_CTX *ctx = cbc_ctx(&c);
    int n1, n2;
    if (!ctx || !len || len % CBC_BLOCK || len > INT_MAX ||
        !EVP_DecryptInit_ex2(ctx, c, key, iv, NULL) ||
        !EVP_DecryptUpdate(ctx, out, &n1, in, (int)len) ||
        !EVP_DecryptFinal_ex(ctx, out + n1, &n2)) {
        if (ctx)
            EVP_CIPHER_CTX_reset(ctx);
        wipe_bytes(out, len);
        ERR_clear_error();
        return -1;
    }
    done();
    *out_len = (size_t)(n1 + n2);
    return 0;
}
