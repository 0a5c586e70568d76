/* keypool.c - X25519 key pairs made ahead (see keypool.h). */
#include "securitor/keypool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "securitor/rand.h"

/* The filler refills once the pool falls to half: one wake-up per
 * KEYPOOL_DEPTH / 2 pairs taken, not one per pair. */
#define REFILL_AT (KEYPOOL_DEPTH / 2)

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    struct curve_keypair pairs[KEYPOOL_DEPTH]; /* [0, n) ready */
    size_t n;
    bool wanted;  /* keypool_start: the filler starts with the first take */
    bool running, stop, failed;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* One pair by libcrypto's X25519 key generation on the filler's own
 * context (RAND_priv_bytes, clamped; the public key computed from it). */
static int make_pair(EVP_PKEY_CTX *ctx, struct curve_keypair *kp)
{
    EVP_PKEY *k = NULL;
    size_t priv_len = CURVE_KEY_LEN, pub_len = CURVE_KEY_LEN;
    int rc = EVP_PKEY_keygen(ctx, &k) == 1 &&
                     EVP_PKEY_get_raw_private_key(k, kp->priv, &priv_len) == 1 &&
                     EVP_PKEY_get_raw_public_key(k, kp->pub, &pub_len) == 1 &&
                     priv_len == CURVE_KEY_LEN && pub_len == CURVE_KEY_LEN
                 ? 0
                 : -1;
    EVP_PKEY_free(k); /* cleanses its copy of the private key */
    ERR_clear_error();
    return rc;
}

static void *fill(void *arg)
{
    (void)arg;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
    bool usable = ctx && EVP_PKEY_keygen_init(ctx) == 1;
    struct curve_keypair kp;
    pthread_mutex_lock(&pool.lock);
    while (usable && !pool.stop) {
        if (pool.n > REFILL_AT) {
            pthread_cond_wait(&pool.wake, &pool.lock);
            continue;
        }
        while (pool.n < KEYPOOL_DEPTH && !pool.stop) {
            pthread_mutex_unlock(&pool.lock);
            int rc = make_pair(ctx, &kp);
            pthread_mutex_lock(&pool.lock);
            if (rc) { /* the RNG or libcrypto failed: takers make their own */
                usable = false;
                break;
            }
            pool.pairs[pool.n++] = kp;
        }
    }
    pool.failed = !usable;
    pthread_mutex_unlock(&pool.lock);
    OPENSSL_cleanse(&kp, sizeof(kp));
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
    pool.running = pool.wanted = false;
    pool.stop = true;
    pthread_cond_signal(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    if (join)
        pthread_join(pool.thread, NULL);
    pthread_mutex_lock(&pool.lock);
    OPENSSL_cleanse(pool.pairs, sizeof(pool.pairs));
    pool.n = 0;
    pthread_mutex_unlock(&pool.lock);
}

int keypool_take(struct curve_keypair *kp)
{
    uint8_t probe;
    int rc = 0;
    pthread_mutex_lock(&pool.lock);
    if (pool.wanted && !pool.running) { /* the first key this process makes */
        pool.stop = pool.failed = false;
        if (pthread_create(&pool.thread, NULL, fill, NULL) == 0)
            pool.running = true;
        else
            pool.wanted = false; /* every pair made on demand, as without a pool */
    }
    bool ready = pool.running && pool.n;
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
        if (pool.n == REFILL_AT && !pool.failed)
            pthread_cond_signal(&pool.wake);
    }
    pthread_mutex_unlock(&pool.lock);
    return rc;
}
