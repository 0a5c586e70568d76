/* keyring.h - symmetric-node's key versions (PROTOCOL.md §2).
 *
 * Versions have ids 1, 2, 3, ... in the order they were made; an id is never
 * given twice, also after versions were trimmed. The live versions are always
 * one run of consecutive ids, [trimmed_below, next_id - 1]: rotation adds at
 * the top, trimming deletes from the bottom. The newest is the primary, the
 * one that encrypts.
 *
 * Each version keeps its 32 raw key bytes next to the AES-GCM contexts keyed
 * with them, so that a durable state (PROTOCOL.md §4) can store the ring
 * sealed; the bytes are wiped when the version is trimmed or the ring freed.
 * The version table is allocated once at its largest size and never moved,
 * so no copy of a key is left behind in freed memory by a realloc.
 *
 * Every function that can fail leaves the ring exactly as it was on failure.
 * Not thread-safe: the loop's worker owns the ring.
 */
#ifndef SECURITOR_SYMMETRIC_KEYRING_H
#define SECURITOR_SYMMETRIC_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/aead.h"

/* Live versions at most. Each costs about 2.4 KiB (two keyed AES-GCM
 * contexts); without a bound, 100,000 rotations held 236 MB. Past it,
 * rotation is refused until old versions are trimmed. */
#define KEYRING_MAX_VERSIONS 1024

/* The largest id: JSON numbers carry integers exactly up to 2^53 - 1. */
#define KEYRING_MAX_ID 9007199254740991LL

struct keyring_version {
    long long id;
    struct aead_key *aead;     /* encryption and decryption contexts keyed with `key` */
    uint8_t key[AEAD_KEY_LEN]; /* the raw key, for a sealed state (§4) */
};

struct keyring {
    struct keyring_version *v; /* v[0..n): ids ascending, consecutive; v[n-1] is the primary */
    size_t n;
    long long next_id;         /* the id the next version gets */
    long long trimmed_below;   /* every id below it was deleted for good */
    long long min_decryption_version; /* versions below it refuse to decrypt */
};

enum keyring_status {
    KEYRING_OK = 0,
    KEYRING_UNKNOWN,      /* no such version: never made, or trimmed (error 20) */
    KEYRING_BELOW_MIN,    /* the version is below min_decryption_version (error 22) */
    KEYRING_FULL,         /* KEYRING_MAX_VERSIONS live versions, or ids ran out (22) */
    KEYRING_PAST_PRIMARY, /* a minimum above the primary (22) */
    KEYRING_TRIMMED,      /* a minimum that names a trimmed version (22) */
    KEYRING_INTERNAL,     /* out of memory, the RNG or OpenSSL failed (13) */
};

/* Makes an empty ring whose first version will get id first_id (1 for a new
 * node; a state that is restored passes its lowest live id, so the versions
 * below it stay trimmed) and whose min_decryption_version is first_id.
 * Returns KEYRING_OK or KEYRING_INTERNAL (out of memory). */
__attribute__((warn_unused_result))
enum keyring_status keyring_init(struct keyring *kr, long long first_id);

/* Wipes every key, frees the contexts and the table. The ring is then empty
 * and may be freed again. */
void keyring_free(struct keyring *kr);

/* Adds `key` as the new primary with id next_id (the caller may then wipe
 * its copy) and sets *id to it. Returns KEYRING_OK, KEYRING_FULL or
 * KEYRING_INTERNAL (OpenSSL could not key the contexts). */
__attribute__((warn_unused_result))
enum keyring_status keyring_add(struct keyring *kr, const uint8_t key[static AEAD_KEY_LEN],
                                long long *id);

/* keyring_add with a fresh random key (rand_secret). */
__attribute__((warn_unused_result))
enum keyring_status keyring_rotate(struct keyring *kr, long long *id);

/* The primary (newest) version, or NULL when the ring is empty. */
struct keyring_version *keyring_primary(const struct keyring *kr);

/* The version with this id, for decryption: KEYRING_OK with *out set,
 * KEYRING_UNKNOWN, or KEYRING_BELOW_MIN (then *out is still set, so the
 * caller may say which version it was). */
__attribute__((warn_unused_result))
enum keyring_status keyring_get(const struct keyring *kr, long long id,
                                struct keyring_version **out);

/* The versions a decryption without key_id tries, in the order to try
 * them (PROTOCOL.md §2): the newest first, every one at or above
 * min_decryption_version, at most `max`. Returns how many were written to
 * out. */
size_t keyring_candidates(const struct keyring *kr, struct keyring_version **out, size_t max);

/* Sets min_decryption_version to id, higher or lower than before (Vault
 * transit's min_decryption_version). Returns KEYRING_OK,
 * KEYRING_PAST_PRIMARY (id is above the primary: the primary must always
 * decrypt what it encrypts), or KEYRING_TRIMMED (id is below trimmed_below:
 * those versions are gone). */
__attribute__((warn_unused_result))
enum keyring_status keyring_set_min(struct keyring *kr, long long id);

/* Deletes every version below min_decryption_version for good: its key
 * bytes wiped, its AES-GCM contexts freed (which cleanses the key schedule).
 * trimmed_below becomes min_decryption_version, so those ids are never
 * found or given again. Returns how many versions were deleted. Cannot
 * fail; the primary is never deleted (the minimum cannot pass it). */
size_t keyring_trim(struct keyring *kr);

#endif
