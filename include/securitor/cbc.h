/* cbc.h - AES-256-CBC with PKCS#7 padding, the cipher of Signal's message
 * keys (SIGNAL.md Part 0 item 3). Unauthenticated on its own: callers verify
 * the HMAC before decrypting.
 *
 * Threads: one cipher context in static storage, reused by every call: one
 * thread at a time (the loop's worker).
 */
#ifndef SECURITOR_CBC_H
#define SECURITOR_CBC_H

#include <stddef.h>
#include <stdint.h>

#define CBC_KEY_LEN 32
#define CBC_IV_LEN 16
#define CBC_BLOCK 16

/* Bytes of ciphertext for len bytes of plaintext (always padded). */
static inline size_t cbc_padded_len(size_t len) { return (len / CBC_BLOCK + 1) * CBC_BLOCK; }

/* Encrypts into out (cbc_padded_len(len) bytes). 0 or -1. */
__attribute__((warn_unused_result))
int cbc_encrypt(uint8_t *out, const uint8_t key[static CBC_KEY_LEN],
                const uint8_t iv[static CBC_IV_LEN], const uint8_t *in, size_t len);
/* Decrypts len bytes (a non-zero multiple of 16) into out, sets *out_len.
 * Returns -1 on bad length or padding (out is then wiped). */
__attribute__((warn_unused_result))
int cbc_decrypt(uint8_t *out, size_t *out_len, const uint8_t key[static CBC_KEY_LEN],
                const uint8_t iv[static CBC_IV_LEN], const uint8_t *in, size_t len);

/* Defers the reset of the shared cipher context (which cleanses the last
 * message key's schedule) to the matching cbc_release, as kdf_hold does for
 * HMAC: meanwhile each message re-keys the same context, without freeing and
 * allocating OpenSSL's cipher state. Holds nest; the outermost cbc_release
 * resets the context. */
void cbc_hold(void);
void cbc_release(void);

#endif
