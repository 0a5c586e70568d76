/* blindindex.h - searchable tokens for encrypted fields (PROTOCOL.md §2
 * `blind_index`, after CipherSweet's blind indexes).
 *
 *   root    = HKDF-SHA256(ikm = the key given at start, no salt,
 *                         info = "securitor blind index root v1")
 *   K_index = HKDF-SHA256(ikm = root, no salt,
 *                         info = "securitor blind index key v1" || index name)
 *   token   = the first bits/8 bytes of HMAC-SHA256(K_index, value)
 *
 * The root comes from the given key, not from the keyring, so it never
 * rotates: rotate_key and trim_keys change no token, and the same key gives
 * the same tokens in every process. Different indexes have unrelated keys,
 * so equal values give unrelated tokens across indexes. Values are bytes,
 * compared exactly (no case or Unicode folding).
 *
 * Each index key is derived once and kept in a bounded cache as a keyed
 * HMAC context: a token then costs one HMAC and no allocation. Evicted
 * entries are cleansed. Not thread-safe: the loop's worker owns it.
 */
#ifndef SECURITOR_SYMMETRIC_BLINDINDEX_H
#define SECURITOR_SYMMETRIC_BLINDINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "securitor/kdf.h"
#include "securitor/map.h"

#define BLIND_INDEX_ROOT_LABEL "securitor blind index root v1"
#define BLIND_INDEX_KEY_LABEL "securitor blind index key v1"
#define BLIND_INDEX_ROOT_LEN 32
#define BLIND_INDEX_TOKEN_MAX HMAC_SHA256_LEN
/* Index names are 1 to 256 bytes: each cached key keeps its name. */
#define BLIND_INDEX_MAX_NAME 256
/* Index keys kept at most. Past it, the oldest entry is evicted (first in,
 * first out): one more derivation when it is used again. */
#define BLIND_INDEX_CACHE 1024

struct blind_index_entry;

struct blind_index {
    uint8_t root[BLIND_INDEX_ROOT_LEN];
    struct map names;                                  /* index name -> entry */
    struct blind_index_entry *slots[BLIND_INDEX_CACHE]; /* allocated as first needed */
    size_t n_slots; /* slots allocated */
    size_t hand;    /* once all are, the next one to evict */
    /* The entry used last: a run of requests usually names one index, and
     * comparing its name is cheaper than hashing it. */
    struct blind_index_entry *last;
};

/* Derives the root from the given key (which the caller may then wipe).
 * Returns 0, or -1 when OpenSSL fails (bi is then empty and may be freed). */
__attribute__((warn_unused_result))
int blind_index_init(struct blind_index *bi, const uint8_t key[static 32]);

/* Wipes the root and every cached index key; frees the cache. */
void blind_index_free(struct blind_index *bi);

/* out = HMAC-SHA256(K_index, value) for the index named by name_len bytes
 * (1..BLIND_INDEX_MAX_NAME); the caller truncates. Returns 0, or -1 when
 * OpenSSL fails or memory runs out (tokens already given stay valid: the
 * cache changes nothing but speed). */
__attribute__((warn_unused_result))
int blind_index_token(struct blind_index *bi, const char *name, size_t name_len,
                      const uint8_t *value, size_t value_len,
                      uint8_t out[static BLIND_INDEX_TOKEN_MAX]);

#endif
