/* rand.c - batched public randomness and direct secret randomness. */
#include "securitor/rand.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define POOL_LEN 4096

static uint8_t pool[POOL_LEN];
static size_t pool_pos = POOL_LEN; /* bytes before pool_pos are handed out */

int rand_public(uint8_t *out, size_t n)
{
    if (n > POOL_LEN / 4) /* large requests skip the pool */
        return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
    if (POOL_LEN - pool_pos < n) {
        if (RAND_bytes(pool, POOL_LEN) != 1)
            return -1;
        pool_pos = 0;
    }
    memcpy(out, pool + pool_pos, n);
    pool_pos += n;
    return 0;
}

int rand_secret(uint8_t *out, size_t n)
{
    while (n) {
        int chunk = n > 1 << 20 ? 1 << 20 : (int)n;
        if (RAND_priv_bytes(out, chunk) != 1)
            return -1;
        out += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

void rand_pool_wipe(void)
{
    OPENSSL_cleanse(pool, sizeof(pool));
    pool_pos = POOL_LEN;
}
