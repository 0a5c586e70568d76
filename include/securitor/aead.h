/* aead.h - AES-256-GCM over OpenSSL, with the cipher fetched once and the
 * key schedule kept in reusable contexts.
 *
 * MISUSE WARNING: a (key, IV) pair must never seal two messages. GCM fails
 * catastrophically under nonce reuse (the authentication key leaks). Draw
 * every IV with rand_public(); with 96-bit random IVs, stay well below 2^32
 * messages per key (NIST SP 800-38D §8.3), i.e. rotate keys.
 *
 * Threads: the cipher is fetched once into static storage, and a key's
 * contexts are reused by every call: one thread at a time per key, and the
 * first call from one thread only. In the nodes that is the loop's worker
 * (or main, before the loop starts).
 */
#ifndef SECURITOR_AEAD_H
#define SECURITOR_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_LEN 32
#define AEAD_IV_LEN 12
#define AEAD_TAG_LEN 16

enum aead_result {
    AEAD_OK = 0,
    AEAD_AUTH_FAILED = 1, /* wrong key, iv, aad, ciphertext or tag */
    AEAD_BAD_SIZE = 2,    /* iv is not 12 bytes or tag is not 16 bytes */
    AEAD_INTERNAL = 3,    /* OpenSSL failed (out of memory, ...) */
};

/* Opaque: holds one encryption and one decryption context keyed once. */
struct aead_key;

/* Makes a key object from 32 key bytes (which the caller may then wipe).
 * Returns NULL when OpenSSL fails. Free with aead_key_free(). */
__attribute__((warn_unused_result))
struct aead_key *aead_key_new(const uint8_t key[static AEAD_KEY_LEN]);
/* Wipes the key schedule and frees. NULL is fine. */
void aead_key_free(struct aead_key *k);

/* Seals len bytes of pt into ct (same length; may not overlap) and writes
 * a 16-byte tag. Returns AEAD_OK or AEAD_INTERNAL. */
__attribute__((warn_unused_result))
enum aead_result aead_seal(struct aead_key *k, const uint8_t iv[static AEAD_IV_LEN],
                           const uint8_t *aad, size_t aad_len,
                           const uint8_t *pt, size_t len,
                           uint8_t *ct, uint8_t tag[static AEAD_TAG_LEN]);

/* Sealing in pieces, for callers that use each piece of ciphertext while it
 * is still in cache: aead_seal_begin, then aead_seal_next for each piece of
 * the plaintext in order (pt and ct may not overlap), then aead_seal_end for
 * the tag. aead_seal is these three over one piece. Each returns AEAD_OK or
 * AEAD_INTERNAL; after a failure, begin again. */
__attribute__((warn_unused_result))
enum aead_result aead_seal_begin(struct aead_key *k, const uint8_t iv[static AEAD_IV_LEN],
                                 const uint8_t *aad, size_t aad_len);
__attribute__((warn_unused_result))
enum aead_result aead_seal_next(struct aead_key *k, const uint8_t *pt, size_t len,
                                uint8_t *ct);
__attribute__((warn_unused_result))
enum aead_result aead_seal_end(struct aead_key *k, uint8_t tag[static AEAD_TAG_LEN]);

/* Opens len bytes of ct into pt. pt is scratch until AEAD_OK comes back: on
 * any other result its len bytes are wiped, so no unauthenticated plaintext
 * is ever left behind. Sizes other than a 12-byte IV and a 16-byte tag get
 * AEAD_BAD_SIZE; a short tag is never verified as a prefix. */
__attribute__((warn_unused_result))
enum aead_result aead_open(struct aead_key *k, const uint8_t *iv, size_t iv_len,
                           const uint8_t *aad, size_t aad_len,
                           const uint8_t *ct, size_t len,
                           const uint8_t *tag, size_t tag_len, uint8_t *pt);

/* Opening in pieces, the same way: aead_open_begin, aead_open_next for each
 * piece of ciphertext in order, then aead_open_end, which checks the tag and
 * answers AEAD_OK, AEAD_AUTH_FAILED or AEAD_INTERNAL. Everything written to
 * pt is scratch until aead_open_end says AEAD_OK: on any other result the
 * caller wipes it (aead_open does this itself). */
__attribute__((warn_unused_result))
enum aead_result aead_open_begin(struct aead_key *k, const uint8_t iv[static AEAD_IV_LEN],
                                 const uint8_t *aad, size_t aad_len);
__attribute__((warn_unused_result))
enum aead_result aead_open_next(struct aead_key *k, const uint8_t *ct, size_t len,
                                uint8_t *pt);
__attribute__((warn_unused_result))
enum aead_result aead_open_end(struct aead_key *k, const uint8_t tag[static AEAD_TAG_LEN]);

#endif
