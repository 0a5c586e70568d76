/* kdf.h - HKDF-SHA256 (RFC 5869), HMAC-SHA256 and SHA-512 over OpenSSL.
 *
 * Algorithms are fetched once and contexts reused: these run several times
 * per ratchet message. HKDF is composed from OpenSSL's HMAC (an extract
 * HMAC, then the expand HMACs), which OpenSSL's own HKDF re-fetches and
 * re-allocates on every call. All return 0 or -1 (OpenSSL failed); outputs
 * are unspecified on failure and callers must not use them.
 *
 * Keyed HMAC state does not outlive a call: the shared HMAC context is
 * re-keyed with zeros before each call returns, unless kdf_hold defers that
 * to kdf_release.
 *
 * Threads: the contexts live in static storage and every call reuses them:
 * one thread at a time (the loop's worker, or main before the loop starts).
 */
#ifndef SECURITOR_KDF_H
#define SECURITOR_KDF_H

#include <stddef.h>
#include <stdint.h>

#define HMAC_SHA256_LEN 32
#define SHA512_LEN 64

/* A byte string for the multi-part calls. */
struct bytes {
    const uint8_t *p;
    size_t n;
};

/* HKDF-SHA256: out_len bytes, 1 to 255 * 32 (else -1). An empty or absent
 * salt is RFC 5869's default (32 zero bytes); salt, ikm and info may be NULL
 * when their length is 0. */
__attribute__((warn_unused_result))
int hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                const uint8_t *ikm, size_t ikm_len, const char *info, size_t info_len);

/* HMAC-SHA256 over the concatenation of n_parts parts. */
__attribute__((warn_unused_result))
int hmac_sha256(uint8_t out[static HMAC_SHA256_LEN], const uint8_t *key, size_t key_len,
                const struct bytes *parts, size_t n_parts);

/* HMAC-SHA256 of each of n messages under one key: out[i] = HMAC(key,
 * msgs[i]). The key is set up once (OpenSSL re-initialises a MAC context
 * with its previous key when given none), which saves a key schedule per
 * extra message; the KDF chain step of the Double Ratchet is two of them. */
__attribute__((warn_unused_result))
int hmac_sha256_each(uint8_t (*out)[HMAC_SHA256_LEN], const uint8_t *key, size_t key_len,
                     const struct bytes *msgs, size_t n);

/* Defers the scrub of the shared HMAC context to the matching kdf_release:
 * for a run of calls on one message (the ratchet's chain step, message keys
 * and MAC), which then re-key it once instead of after every call. The
 * context holds the last key of the run until kdf_release, so the run must
 * end before the caller returns. Holds nest; the outermost kdf_release
 * re-keys the context, or frees it (which cleanses it) when re-keying fails,
 * so the key is gone either way. */
void kdf_hold(void);
void kdf_release(void);

/* An HMAC-SHA256 context keyed once, for many messages under one key (a
 * blind index's key, PROTOCOL.md §2): each MAC re-initialises the context
 * with the key it holds, so the key is never set up again and nothing is
 * allocated by the caller per message. The key lives inside OpenSSL's
 * context, which hmac_key_free cleanses. One thread at a time per key. */
struct hmac_key;

/* Returns the keyed context (the caller may then wipe its copy of the key),
 * or NULL when OpenSSL fails. */
__attribute__((warn_unused_result))
struct hmac_key *hmac_key_new(const uint8_t *key, size_t key_len);
/* out = HMAC-SHA256(key, msg). Returns 0 or -1; on -1 out is unspecified. */
__attribute__((warn_unused_result))
int hmac_key_mac(struct hmac_key *k, uint8_t out[static HMAC_SHA256_LEN], const uint8_t *msg,
                 size_t len);
/* Cleanses the key and frees. NULL is fine. */
void hmac_key_free(struct hmac_key *k);

/* SHA-512 over the concatenation of n_parts parts, for public data
 * (fingerprints): the shared context keeps its state until the next call. */
__attribute__((warn_unused_result))
int sha512(uint8_t out[static SHA512_LEN], const struct bytes *parts, size_t n_parts);
/* The same for secret input (an identity seed): the context is wiped after. */
__attribute__((warn_unused_result))
int sha512_secret(uint8_t out[static SHA512_LEN], const struct bytes *parts, size_t n_parts);

/* SHA-256 of one buffer (ids, not secrets). */
__attribute__((warn_unused_result))
int sha256(uint8_t out[static 32], const uint8_t *p, size_t n);

#endif
