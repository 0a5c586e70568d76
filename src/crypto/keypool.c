/* keypool.c - X25519 key pairs made ahead (see keypool.h). */
#include "securitor/keypool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "securitor/rand.h"
#include "securitor/wipe.h"

/* The filler refills once the pool falls to half: one wake-up per
 * KEYPOOL_DEPTH / 2 pairs taken, not one per pair. */
#define REFILL_AT (KEYPOOL_DEPTH / 2)
#define RETRY_MS 1000 /* after the RNG or libcrypto failed */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    struct curve_keypair pairs[KEYPOOL_DEPTH]; /* [0, n) ready */
    size_t n;
    bool wanted;  /* keypool_start: the filler starts with the first take */
    bool running; /* a filler of this generation runs (its join is owed) */
    /* Each filler serves one generation and ends once it moves on
     * (keypool_stop), so a filler from before a stop never runs beside a
     * newer one. */
    uintptr_t generation;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* One pair, made as curve_generate makes it: RAND_priv_bytes, clamped, the
 * public key computed by libcrypto from an import of the private key (on
 * the filler's own context: curve.c's is the worker's). Not
 * EVP_PKEY_keygen and an export of the private key, which leave copies of
 * it on this thread's stack and in freed heap that nothing wipes. */
static int make_pair(EVP_PKEY_CTX *ctx, struct curve_keypair *kp)
{
    OSSL_PARAM params[2];
    EVP_PKEY *k = NULL;
    size_t pub_len = CURVE_KEY_LEN;
    int rc = -1;
    if (rand_secret(kp->priv, CURVE_KEY_LEN))
        goto out;
    kp->priv[0] &= 248; /* clamped, as curve_generate stores it */
    kp->priv[31] &= 127;
    kp->priv[31] |= 64;
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, kp->priv,
                                                  CURVE_KEY_LEN);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, params) != 1 ||
        EVP_PKEY_get_raw_public_key(k, kp->pub, &pub_len) != 1 || pub_len != CURVE_KEY_LEN)
        goto out;
    rc = 0;
out:
    EVP_PKEY_free(k); /* cleanses its copy of the private key */
    ERR_clear_error();
    if (rc)
        OPENSSL_cleanse(kp, sizeof(*kp));
    return rc;
}

static void *fill(void *arg)
{
    const uintptr_t mine = (uintptr_t)arg;
    /* For top -H and perf; a name that does not take changes nothing. */
    (void)pthread_setname_np(pthread_self(), "keypool");
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
    struct curve_keypair kp;
    bool filling = true; /* from half full (or less) up to full */
    pthread_mutex_lock(&pool.lock);
    while (ctx && pool.generation == mine) {
        if (pool.n == KEYPOOL_DEPTH)
            filling = false;
        else if (pool.n <= REFILL_AT)
            filling = true;
        if (!filling) {
            /* Whatever libcrypto's frames below this one left of the last
             * private key goes before a wait that may last as long as the
             * node runs (as the loop wipes after each batch, wipe.h). */
            pthread_mutex_unlock(&pool.lock);
            wipe_stack();
            pthread_mutex_lock(&pool.lock);
            if (pool.generation == mine && pool.n == KEYPOOL_DEPTH)
                pthread_cond_wait(&pool.wake, &pool.lock);
            continue;
        }
        pthread_mutex_unlock(&pool.lock);
        int rc = make_pair(ctx, &kp);
        pthread_mutex_lock(&pool.lock);
        if (rc) { /* meanwhile takers make their own; try again later */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += RETRY_MS / 1000;
            if (pool.generation == mine)
                pthread_cond_timedwait(&pool.wake, &pool.lock, &until);
            continue;
        }
        if (pool.generation == mine && pool.n < KEYPOOL_DEPTH)
            pool.pairs[pool.n++] = kp;
        OPENSSL_cleanse(&kp, sizeof(kp)); /* the pool's copy is the only one */
    }
    pthread_mutex_unlock(&pool.lock);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

int keypool_start(void)
{
    static bool at_exit;
    /* A process may end with exit() while the filler is inside libcrypto
     * (the worker's stop, batch.c): the filler must be stopped before
     * OpenSSL's own exit handler frees what it uses. Handlers run last
     * registered first, so OpenSSL's must be registered before this one:
     * its initialisation does that, and LOAD_CONFIG is what its first use
     * would ask for anyway (with no option it returns at once, having
     * done nothing). */
    if (!at_exit) {
        if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1 || atexit(keypool_stop))
            return -1;
        at_exit = true;
    }
    pthread_mutex_lock(&pool.lock);
    pool.wanted = true;
    pthread_mutex_unlock(&pool.lock);
    return 0;
}

void keypool_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    bool join = pool.running; /* whoever clears running joins */
    pthread_t thread = pool.thread;
    pool.running = pool.wanted = false;
    pool.generation++; /* the filler ends */
    pthread_cond_broadcast(&pool.wake);
    OPENSSL_cleanse(pool.pairs, sizeof(pool.pairs));
    pool.n = 0;
    pthread_mutex_unlock(&pool.lock);
    if (join)
        pthread_join(thread, NULL);
}

int keypool_take(struct curve_keypair *kp)
{
    uint8_t probe;
    int rc = 0;
    pthread_mutex_lock(&pool.lock);
    if (pool.wanted && !pool.running) { /* the first key this process makes */
        if (pthread_create(&pool.thread, NULL, fill, (void *)pool.generation) == 0)
            pool.running = true;
        else
            pool.wanted = false; /* every pair made on demand, as without a pool */
    }
    bool ready = pool.n != 0;
    pthread_mutex_unlock(&pool.lock);
    if (!ready)
        return 0;
    if (rand_secret(&probe, 1)) /* a failing RNG hands out nothing (keypool.h) */
        return -1;
    OPENSSL_cleanse(&probe, sizeof(probe));
    pthread_mutex_lock(&pool.lock);
    if (pool.n) {
        struct curve_keypair *top = &pool.pairs[--pool.n];
        *kp = *top;
        OPENSSL_cleanse(top, sizeof(*top));
        rc = 1;
        if (pool.n == REFILL_AT)
            pthread_cond_signal(&pool.wake);
    }
    pthread_mutex_unlock(&pool.lock);
    return rc;
}
