/* rand.h - random bytes from OpenSSL's DRBG.
 *
 * rand_public() hands out nonces from a pool refilled in 4 KiB batches: one
 * RAND_bytes call per message costs more than sealing a short message. Each
 * pool byte is handed out once. Only public values (IVs, ids) come from the
 * pool; secrets bypass it and come from RAND_priv_bytes, OpenSSL's separate
 * DRBG for private values, so no key material sits in a long-lived buffer.
 *
 * Threads: the pool is static storage: one thread at a time (the loop's
 * worker, or main before the loop starts).
 */
#ifndef SECURITOR_RAND_H
#define SECURITOR_RAND_H

#include <stddef.h>
#include <stdint.h>

/* Fills out with n public random bytes (nonces, ids). Returns 0 or -1 when
 * the DRBG fails; out is then unspecified. */
__attribute__((warn_unused_result))
int rand_public(uint8_t *out, size_t n);

/* Fills out with n secret random bytes (keys). Returns 0 or -1. */
__attribute__((warn_unused_result))
int rand_secret(uint8_t *out, size_t n);

/* Wipes what is left of the pool (at exit). */
void rand_pool_wipe(void);

#endif
