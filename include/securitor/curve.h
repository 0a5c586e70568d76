/* curve.h - X25519 and Ed25519 over OpenSSL, with libsignal's signature
 * convention (SIGNAL.md §2.3-2.5).
 *
 * Keys are raw 32-byte little-endian values; the 33-byte wire form
 * (0x05 || u) is handled by curve_encode/curve_decode. Private keys are
 * secrets: callers keep them in fixed arrays and wipe them.
 *
 * Threads: key imports go through cached contexts in static storage, and
 * curve_verify keeps caches there (and hashes with kdf.h's shared digest
 * context): one thread at a time (the loop's worker, or main before the
 * loop starts).
 */
#ifndef SECURITOR_CURVE_H
#define SECURITOR_CURVE_H

#include <stddef.h>
#include <stdint.h>

#define CURVE_KEY_LEN 32
#define CURVE_ENCODED_LEN 33 /* 0x05 || u */
#define CURVE_SIG_LEN 64
#define CURVE_DJB_TYPE 0x05

struct curve_keypair {
    uint8_t priv[CURVE_KEY_LEN]; /* clamped */
    uint8_t pub[CURVE_KEY_LEN];
};

/* An identity key: an Ed25519 seed whose Edwards public key has sign bit 0,
 * and the X25519 pair derived from it (SIGNAL.md Part 0 item 1). Made by
 * curve_identity_generate; one read back from storage (seed and x) is
 * checked and completed by curve_identity_restore before any other use. */
struct curve_identity {
    uint8_t seed[CURVE_KEY_LEN];
    struct curve_keypair x;
    uint8_t ed_pub[32]; /* the seed's Ed25519 public key: kept, not stored */
};

void curve_encode(uint8_t out[static CURVE_ENCODED_LEN], const uint8_t pub[static CURVE_KEY_LEN]);
/* Accepts 33 bytes 0x05 || u, or 32 raw bytes. Returns 0 or -1. */
__attribute__((warn_unused_result))
int curve_decode(uint8_t pub[static CURVE_KEY_LEN], const uint8_t *in, size_t len);

/* X25519 public key of a (clamped) private key. 0 or -1. */
__attribute__((warn_unused_result))
int curve_public(uint8_t pub[static CURVE_KEY_LEN], const uint8_t priv[static CURVE_KEY_LEN]);
/* A fresh key pair from RAND_priv_bytes. 0 or -1. */
__attribute__((warn_unused_result))
int curve_generate(struct curve_keypair *kp);
/* X25519(mine, theirs). Takes the whole key pair: given the public half,
 * OpenSSL skips recomputing it, which halves the cost of a DH. Returns -1
 * when OpenSSL fails or the result is all zero (a low-order public key):
 * such output must never be used. */
__attribute__((warn_unused_result))
int curve_dh(uint8_t out[static CURVE_KEY_LEN], const struct curve_keypair *mine,
             const uint8_t theirs[static CURVE_KEY_LEN]);
/* X25519 of one key pair with each of n public keys: out[i] = DH(mine,
 * theirs[i]), 32 bytes each, with the private key imported into OpenSSL
 * and its derive context made once for all of them. Returns -1, with every
 * output wiped, when any of them fails as curve_dh does. */
__attribute__((warn_unused_result))
int curve_dh_each(uint8_t *const out[], const struct curve_keypair *mine,
                  const uint8_t *const theirs[], size_t n);
/* curve_generate, then curve_dh with the new pair, on one import of it (the
 * DH ratchet's new key pair and its first DH). 0 or -1; on failure kp and
 * out are unspecified and must not be used. */
__attribute__((warn_unused_result))
int curve_generate_dh(struct curve_keypair *kp, uint8_t out[static CURVE_KEY_LEN],
                      const uint8_t theirs[static CURVE_KEY_LEN]);

/* Whether a public key is usable for DH: 1 yes, 0 when it is of low order
 * (every DH with it gives all zeros, so it binds nothing), -1 when OpenSSL
 * failed. */
__attribute__((warn_unused_result))
int curve_public_usable(const uint8_t pub[static CURVE_KEY_LEN]);

/* A fresh identity (seeds redrawn until the sign bit is 0). 0 or -1. */
__attribute__((warn_unused_result))
int curve_identity_generate(struct curve_identity *id);
/* An identity read back from storage: fills ed_pub from the seed and
 * checks that the seed's key has sign bit 0 and that x is its X25519 form.
 * 0, or -1 when they do not fit together (or on an internal error). */
__attribute__((warn_unused_result))
int curve_identity_restore(struct curve_identity *id);
/* Signs msg with the identity: Ed25519 under id->ed_pub (which must be the
 * seed's: see struct curve_identity), then the Edwards sign bit (0) in bit 7
 * of byte 63, as libsignal's verifier expects. 0 or -1. */
__attribute__((warn_unused_result))
int curve_sign(uint8_t sig[static CURVE_SIG_LEN], const struct curve_identity *id,
               const uint8_t *msg, size_t len);
/* Verifies a libsignal/XEdDSA-style signature under an X25519 public key:
 * u is mapped to the Edwards y = (u-1)/(u+1), the sign bit taken from
 * sig[63] bit 7, and the rest checked by OpenSSL's Ed25519 (SIGNAL.md 2.4).
 * Returns 1 valid, 0 invalid, -1 internal error. Valid signatures are
 * remembered by (key, SHA-256 of the message, signature) in a bounded cache
 * (1,024 entries, public data), so the same signature on the same message
 * under the same key is verified once (signed prekeys, device lists read
 * again); the Edwards images of 256 recent keys are kept too. */
__attribute__((warn_unused_result))
int curve_verify(const uint8_t pub[static CURVE_KEY_LEN], const uint8_t *msg, size_t len,
                 const uint8_t sig[static CURVE_SIG_LEN]);
/* Plain Ed25519 verification under a raw Edwards key (for Wycheproof).
 * 1 valid, 0 invalid, -1 internal error. */
__attribute__((warn_unused_result))
int ed25519_verify(const uint8_t pub[static 32], const uint8_t *msg, size_t len,
                   const uint8_t *sig, size_t sig_len);

#endif
