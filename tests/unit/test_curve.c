/* test_curve.c - curve.h's batched and fused calls against the plain ones.
 *
 * curve_dh_each must give what curve_dh gives for each public key, whatever
 * came before (the peer key object is reused between DHs), and refuse the
 * whole batch, wiping every output, when one public key is of low order.
 * curve_generate_dh must give a key pair curve_public agrees with and the DH
 * curve_dh computes with it. curve_verify, which remembers valid signatures
 * (by a hash of the message) and the Edwards images of keys, must answer
 * the same for a signature seen before as for a new one, for every change of
 * key, message or signature, also after its caches have been filled over and
 * over, and for every byte of a remembered one flipped. The key pool's
 * pairs (keypool.h) are clamped, match their public keys, never repeat, and
 * serve curve_generate and curve_generate_dh as pairs made on demand do. The reused peer key object (no re-validation, its
 * key replaced per DH) must answer as OpenSSL does with fresh objects, for
 * random, non-canonical and low-order peers in any order. Random keys; the
 * seed is printed.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "check.h"
#include "securitor/curve.h"
#include "securitor/keypool.h"

static void random_pair(struct curve_keypair *kp)
{
    for (size_t i = 0; i < sizeof(kp->priv); i++)
        kp->priv[i] = (uint8_t)test_rand();
    kp->priv[0] &= 248;
    kp->priv[31] = (uint8_t)((kp->priv[31] & 127) | 64);
    CHECK(curve_public(kp->pub, kp->priv) == 0);
}

static void test_dh_each(void)
{
    static const uint8_t zero_pub[32]; /* order 1 */
    for (int round = 0; round < 50; round++) {
        struct curve_keypair me, peers[4];
        uint8_t got[4][32], want[4][32];
        uint8_t *const out[4] = {got[0], got[1], got[2], got[3]};
        const uint8_t *with[4];
        size_t n = 1 + (size_t)(test_rand() % 4);
        random_pair(&me);
        for (size_t i = 0; i < n; i++) {
            random_pair(&peers[i]);
            with[i] = peers[i].pub;
            CHECK(curve_dh(want[i], &me, with[i]) == 0);
            /* The other side agrees. */
            uint8_t back[32];
            CHECK(curve_dh(back, &peers[i], me.pub) == 0);
            CHECK_BYTES(back, want[i], 32);
        }
        CHECK(curve_dh_each(out, &me, with, n) == 0);
        CHECK_BYTES(got[0], want[0], 32 * n);
        /* One low-order key anywhere: refused, nothing left in any output. */
        size_t bad = (size_t)(test_rand() % n);
        static const uint8_t wiped[4][32];
        with[bad] = zero_pub;
        memset(got, 0xAA, sizeof(got));
        CHECK(curve_dh_each(out, &me, with, n) == -1);
        CHECK_BYTES(got[0], wiped[0], 32 * n);
        /* And the next DH is right again. */
        CHECK(curve_dh(got[0], &me, peers[0].pub) == 0);
        CHECK_BYTES(got[0], want[0], 32);
    }
}

static void test_generate_dh(void)
{
    for (int round = 0; round < 50; round++) {
        struct curve_keypair kp, peer;
        uint8_t pub[32], got[32], want[32], back[32];
        random_pair(&peer);
        CHECK(curve_generate_dh(&kp, got, peer.pub) == 0);
        CHECK(curve_public(pub, kp.priv) == 0);
        CHECK_BYTES(kp.pub, pub, 32);
        CHECK((kp.priv[0] & 7) == 0 && (kp.priv[31] & 0xC0) == 0x40); /* clamped */
        CHECK(curve_dh(want, &kp, peer.pub) == 0);
        CHECK_BYTES(got, want, 32);
        CHECK(curve_dh(back, &peer, kp.pub) == 0);
        CHECK_BYTES(back, got, 32);
    }
    static const uint8_t zero_pub[32];
    struct curve_keypair kp;
    uint8_t out[32];
    CHECK(curve_generate_dh(&kp, out, zero_pub) == -1);
}

/* Each valid (key, message, signature) twice, then each with one bit
 * flipped in one of them; n of them, so the cache is refilled many times. */
static void test_verify(size_t n)
{
    struct curve_identity ids[3];
    for (size_t i = 0; i < 3; i++)
        CHECK(curve_identity_generate(&ids[i]) == 0);
    for (size_t round = 0; round < n; round++) {
        const struct curve_identity *id = &ids[round % 3];
        uint8_t msg[100], sig[CURVE_SIG_LEN], pub[CURVE_KEY_LEN];
        /* Any length up to 99, and a signed prekey's 33. */
        size_t len = round % 4 ? 33 : (size_t)(test_rand() % sizeof(msg));
        for (size_t i = 0; i < len; i++)
            msg[i] = (uint8_t)test_rand();
        CHECK(curve_sign(sig, id, msg, len) == 0);
        CHECK(curve_verify(id->x.pub, msg, len, sig) == 1);
        CHECK(curve_verify(id->x.pub, msg, len, sig) == 1);
        size_t bit = (size_t)(test_rand() % (8 * (len + sizeof(sig) + sizeof(pub))));
        int want = 0;
        memcpy(pub, id->x.pub, sizeof(pub));
        if (bit < 8 * len) {
            msg[bit / 8] ^= (uint8_t)(1 << bit % 8);
        } else if ((bit -= 8 * len) < 8 * sizeof(sig)) {
            sig[bit / 8] ^= (uint8_t)(1 << bit % 8);
        } else {
            bit -= 8 * sizeof(sig);
            pub[bit / 8] ^= (uint8_t)(1 << bit % 8);
            want = bit == 255; /* bit 255 of an X25519 key is ignored, as libsignal does */
        }
        CHECK(curve_verify(pub, msg, len, sig) == want);
        CHECK(curve_verify(pub, msg, len, sig) == want);
        /* A shorter message, the rest the same. */
        if (len)
            CHECK(curve_verify(id->x.pub, msg, len - 1, sig) == 0);
    }
}

/* Every byte of a remembered (key, message, signature) flipped, one at a
 * time, each way (one bit, all bits): refused, asked twice (so a refusal is
 * not remembered either), with the original asked between flips (a cache
 * hit, accepted). Messages of 0, 1, 33, 64, 65 and 300 bytes (a device
 * list's signed bytes; the cache keeps a hash of the message, so length
 * does not matter). Only bit 255 of the key may change the answer to
 * valid: it is ignored, as libsignal ignores it. */
static void test_verify_each_byte(bool quick)
{
    static const size_t all_lens[] = {0, 1, 33, 64, 65, 300}, quick_lens[] = {33};
    const size_t *lens = quick ? quick_lens : all_lens;
    const size_t n_lens = quick ? 1 : sizeof(all_lens) / sizeof(all_lens[0]);
    static const uint8_t flips[] = {0x01, 0x80, 0xFF};
    struct curve_identity id;
    CHECK(curve_identity_generate(&id) == 0);
    for (size_t l = 0; l < n_lens; l++) {
        size_t len = lens[l];
        uint8_t msg[301], sig[CURVE_SIG_LEN], pub[CURVE_KEY_LEN];
        for (size_t i = 0; i < sizeof(msg); i++) /* all of it: len + 1 is asked below */
            msg[i] = (uint8_t)test_rand();
        CHECK(curve_sign(sig, &id, msg, len) == 0);
        memcpy(pub, id.x.pub, sizeof(pub));
        CHECK(curve_verify(pub, msg, len, sig) == 1); /* now remembered */
        uint8_t *const parts[3] = {msg, sig, pub};
        const size_t sizes[3] = {len, sizeof(sig), sizeof(pub)};
        for (size_t part = 0; part < 3; part++) {
            for (size_t i = 0; i < sizes[part]; i++) {
                for (size_t f = 0; f < sizeof(flips); f++) {
                    parts[part][i] ^= flips[f];
                    int want = part == 2 && i == 31 && flips[f] == 0x80;
                    CHECK(curve_verify(pub, msg, len, sig) == want);
                    CHECK(curve_verify(pub, msg, len, sig) == want);
                    parts[part][i] ^= flips[f];
                    CHECK(curve_verify(pub, msg, len, sig) == 1);
                }
            }
        }
        /* The message one byte longer or shorter, the same bytes otherwise. */
        if (len < sizeof(msg))
            CHECK(curve_verify(pub, msg, len + 1, sig) == 0);
        if (len)
            CHECK(curve_verify(pub, msg, len - 1, sig) == 0);
    }
}

/* More keys than curve_verify keeps Edwards images of (256), each signing a
 * new message in each round, so that images are replaced and made again:
 * every signature verifies under libsignal's map (curve_verify) and as plain
 * Ed25519 under the key OpenSSL derives from the seed afresh. */
static void test_many_signers(bool quick)
{
    enum { N = 300 };
    static struct curve_identity ids[N];
    const size_t n = quick ? 40 : N;
    for (size_t round = 0; round < 2; round++) {
        for (size_t i = 0; i < n; i++) {
            uint8_t sig[CURVE_SIG_LEN], ed_pub[32], msg[16] = {0};
            size_t len = sizeof(ed_pub);
            snprintf((char *)msg, sizeof(msg), "signer %zu/%zu", i, round);
            if (!round)
                CHECK(curve_identity_generate(&ids[i]) == 0);
            CHECK(curve_sign(sig, &ids[i], msg, sizeof(msg)) == 0);
            CHECK(curve_verify(ids[i].x.pub, msg, sizeof(msg), sig) == 1);
            EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, ids[i].seed, 32);
            CHECK(k && EVP_PKEY_get_raw_public_key(k, ed_pub, &len) == 1 && len == 32);
            EVP_PKEY_free(k);
            CHECK(!memcmp(ed_pub, ids[i].ed_pub, 32));
            sig[63] &= 0x7F; /* the sign bit libsignal carries there (0) */
            CHECK(ed25519_verify(ed_pub, msg, sizeof(msg), sig, sizeof(sig)) == 1);
        }
    }
    for (size_t i = 0; i < n; i++)
        OPENSSL_cleanse(&ids[i], sizeof(ids[i]));
}

/* An identity read back (seed and X25519 pair, as a state row holds them)
 * is completed by curve_identity_restore and signs exactly as the original;
 * one whose parts do not fit together is refused: another identity's X25519
 * pair or key, a flipped bit anywhere, a seed whose Edwards key has sign
 * bit 1. curve_sign trusts ed_pub, so a refusal here is what keeps a
 * mismatched identity from ever signing. */
static void test_identity_restore(void)
{
    struct curve_identity a, b, back;
    static const uint8_t msg[] = "restored";
    uint8_t sig_a[CURVE_SIG_LEN], sig_back[CURVE_SIG_LEN];
    CHECK(curve_identity_generate(&a) == 0 && curve_identity_generate(&b) == 0);
    memset(&back, 0xA5, sizeof(back));
    memcpy(back.seed, a.seed, sizeof(a.seed));
    back.x = a.x;
    CHECK(curve_identity_restore(&back) == 0);
    CHECK(!memcmp(back.ed_pub, a.ed_pub, 32));
    CHECK(curve_sign(sig_a, &a, msg, sizeof(msg)) == 0);
    CHECK(curve_sign(sig_back, &back, msg, sizeof(msg)) == 0);
    CHECK(!memcmp(sig_a, sig_back, sizeof(sig_a)));

    back.x = b.x; /* b's pair with a's seed */
    CHECK(curve_identity_restore(&back) == -1);
    back.x = a.x;
    memcpy(back.x.pub, b.x.pub, CURVE_KEY_LEN); /* a's private key, b's public */
    CHECK(curve_identity_restore(&back) == -1);
    uint8_t *const parts[3] = {back.seed, back.x.priv, back.x.pub};
    for (size_t part = 0; part < 3; part++)
        for (size_t bit = 0; bit < 256; bit++) { /* the clamped bits and bit 255 too */
            memcpy(back.seed, a.seed, sizeof(a.seed));
            back.x = a.x;
            parts[part][bit / 8] ^= (uint8_t)(1 << bit % 8);
            CHECK(curve_identity_restore(&back) == -1);
        }
    /* A seed whose Edwards key has sign bit 1, with its true X25519 pair. */
    for (int tries = 0; tries < 64; tries++) {
        uint8_t h[64];
        EVP_PKEY *k;
        size_t len = 32;
        CHECK(RAND_bytes(back.seed, 32) == 1);
        CHECK((k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, back.seed, 32)) != NULL);
        CHECK(EVP_PKEY_get_raw_public_key(k, back.ed_pub, &len) == 1);
        EVP_PKEY_free(k);
        if (!(back.ed_pub[31] & 0x80))
            continue;
        CHECK(EVP_Digest(back.seed, 32, h, NULL, EVP_sha512(), NULL) == 1);
        memcpy(back.x.priv, h, 32);
        back.x.priv[0] &= 248, back.x.priv[31] &= 127, back.x.priv[31] |= 64;
        CHECK(curve_public(back.x.pub, back.x.priv) == 0);
        CHECK(curve_identity_restore(&back) == -1);
        break;
    }
    OPENSSL_cleanse(&a, sizeof(a));
    OPENSSL_cleanse(&b, sizeof(b));
    OPENSSL_cleanse(&back, sizeof(back));
}

/* OpenSSL's X25519 with a fresh key object per call: the reference for
 * curve_dh, which reuses one peer key object and skips its validation. */
static int ref_dh(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32])
{
    EVP_PKEY *me = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    EVP_PKEY *them = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pub, 32);
    EVP_PKEY_CTX *ctx = me ? EVP_PKEY_CTX_new(me, NULL) : NULL;
    size_t len = 32;
    int rc = ctx && them && EVP_PKEY_derive_init(ctx) == 1 &&
                     EVP_PKEY_derive_set_peer(ctx, them) == 1 &&
                     EVP_PKEY_derive(ctx, out, &len) == 1 && len == 32
                 ? 0
                 : -1;
    static const uint8_t zero[32];
    if (rc == 0 && memcmp(out, zero, 32) == 0)
        rc = -1;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(me);
    EVP_PKEY_free(them);
    ERR_clear_error();
    return rc;
}

/* The peer key object replaced between DHs: random peers, peers with bit
 * 255 set, non-canonical u (p and above, which X25519 reduces), u = 0, 1
 * and p - 1 (low order, refused), in a random order, through curve_dh,
 * curve_dh_each, curve_generate_dh and curve_public_usable; every answer
 * as the reference's. */
static void test_peer_reuse(void)
{
    static const uint8_t p_le[32] = {0xED, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    struct curve_keypair me;
    random_pair(&me);
    for (int round = 0; round < 400; round++) {
        uint8_t pub[32], got[32], want[32];
        struct curve_keypair peer;
        random_pair(&peer);
        memcpy(pub, peer.pub, 32);
        switch (test_rand() % 8) {
        case 0: pub[31] |= 0x80; break;             /* bit 255: ignored */
        case 1:                                     /* p + k: reduced to k */
            memcpy(pub, p_le, 32);
            pub[0] = (uint8_t)(pub[0] + test_rand() % 18);
            break;
        case 2: memset(pub, 0, 32); pub[0] = (uint8_t)(test_rand() % 2); break; /* 0, 1 */
        case 3: memcpy(pub, p_le, 32); pub[0] -= 1; break; /* p - 1: order 2 */
        default: break;
        }
        int rc = ref_dh(want, me.priv, pub);
        memset(got, 0xAA, sizeof(got));
        CHECK(curve_dh(got, &me, pub) == rc);
        if (rc == 0)
            CHECK_BYTES(got, want, 32);
        else
            CHECK_BYTES(got, (const uint8_t[32]){0}, 32);
        CHECK(curve_public_usable(pub) == (rc == 0));
        /* A fresh pair against the same peer, on the same peer object. */
        struct curve_keypair kp;
        int grc = curve_generate_dh(&kp, got, pub);
        CHECK(grc == rc);
        if (grc == 0) {
            CHECK(ref_dh(want, kp.priv, pub) == 0);
            CHECK_BYTES(got, want, 32);
        }
    }
}

/* Takes a pooled pair, waiting up to 10 s for the filler to make one. */
static void take_pooled(struct curve_keypair *kp)
{
    for (int i = 0; i < 10000; i++) {
        int r = keypool_take(kp);
        CHECK(r >= 0);
        if (r == 1)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    CHECK(!"the key pool made no pair in 10 s");
}

static void check_pair(const struct curve_keypair *kp)
{
    uint8_t pub[32];
    CHECK((kp->priv[0] & 7) == 0 && (kp->priv[31] & 0xC0) == 0x40); /* clamped */
    CHECK(curve_public(pub, kp->priv) == 0);
    CHECK_BYTES(kp->pub, pub, 32);
}

static void test_keypool(void)
{
    enum { N = 3 * KEYPOOL_DEPTH };
    static struct curve_keypair seen[N];
    struct curve_keypair kp, peer;
    uint8_t got[32], want[32];
    CHECK(keypool_take(&kp) == 0); /* not started: the caller makes its own */
    CHECK(keypool_start() == 0);
    CHECK(keypool_start() == 0); /* a second start changes nothing */
    CHECK(keypool_take(&kp) == 0); /* the first take starts the filler: none ready yet */
    for (int i = 0; i < N; i++) { /* more than it holds: it refills */
        take_pooled(&seen[i]);
        check_pair(&seen[i]);
        for (int j = 0; j < i; j++)
            CHECK(memcmp(seen[i].priv, seen[j].priv, 32) != 0);
    }
    /* Whatever the pool holds, both callers hand out sound pairs. */
    random_pair(&peer);
    for (int i = 0; i < 2 * KEYPOOL_DEPTH; i++) {
        CHECK(curve_generate(&kp) == 0);
        check_pair(&kp);
        CHECK(curve_generate_dh(&kp, got, peer.pub) == 0);
        check_pair(&kp);
        CHECK(curve_dh(want, &peer, kp.pub) == 0);
        CHECK_BYTES(got, want, 32);
    }
    static const uint8_t zero_pub[32]; /* a low-order peer is refused, pooled pair or not */
    CHECK(curve_generate_dh(&kp, got, zero_pub) == -1);
    keypool_stop();
    CHECK(keypool_take(&kp) == 0); /* stopped: cleansed, nothing to take */
    keypool_stop();                /* twice is harmless */
    CHECK(keypool_start() == 0);   /* and it starts again */
    take_pooled(&kp);
    check_pair(&kp);
    keypool_stop();
    OPENSSL_cleanse(seen, sizeof(seen));
}

/* Copies of a private key anywhere in this process's writable memory
 * (/proc/self/mem: heap, every thread's stack, libraries' data). The key
 * is kept XORed, so the needle itself never matches. */
static uint8_t needle_x[32];

static int key_copies(void)
{
    static uint8_t buf[1 << 16];
    char line[512];
    int hits = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    int mem = open("/proc/self/mem", O_RDONLY);
    CHECK(maps && mem >= 0);
    while (maps && mem >= 0 && fgets(line, sizeof(line), maps)) {
        unsigned long from, to;
        char perm[5];
        if (sscanf(line, "%lx-%lx %4s", &from, &to, perm) != 3 || perm[0] != 'r' ||
            perm[1] != 'w')
            continue;
        for (unsigned long at = from; at < to; at += sizeof(buf) - 31) {
            size_t want = to - at < sizeof(buf) ? to - at : sizeof(buf);
            ssize_t got = pread(mem, buf, want, (off_t)at);
            if (got < 32)
                break;
            for (ssize_t i = 0; i + 32 <= got; i++) {
                int k = 0;
                while (k < 32 && (uint8_t)(buf[i + k] ^ 0xAA) == needle_x[k])
                    k++;
                hits += k == 32;
            }
            if ((size_t)got < want)
                break;
        }
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    if (maps)
        fclose(maps);
    if (mem >= 0)
        close(mem);
    return hits;
}

/* A pooled pair, once its taker has wiped it, is nowhere else in memory:
 * not on the filler's stack, not in its heap (a review found three copies
 * of the newest pair when the filler used EVP_PKEY_keygen and exported the
 * private key). The newest pair is the first one taken after a refill. */
static void test_keypool_leaves_no_copy(void)
{
    struct curve_keypair kp;
    if (RUNNING_ON_VALGRIND || CHECK_UNDER_ASAN) /* their own copies, their quarantine */
        return;
    CHECK(keypool_start() == 0);
    take_pooled(&kp); /* started; then let it fill up and wait */
    OPENSSL_cleanse(&kp, sizeof(kp));
    nanosleep(&(struct timespec){.tv_nsec = 300000000}, NULL);
    for (int i = 0; i < 3; i++) {
        take_pooled(&kp);
        for (int j = 0; j < 32; j++)
            needle_x[j] = kp.priv[j] ^ 0xAA;
        OPENSSL_cleanse(&kp, sizeof(kp));
        CHECK(key_copies() == 0);
    }
    keypool_stop();
}

int main(void)
{
    test_seed();
    test_dh_each();
    test_generate_dh();
    test_peer_reuse();
    /* SECURITOR_TEST_QUICK: fewer rounds, for the run under valgrind. */
    bool quick = getenv("SECURITOR_TEST_QUICK") != NULL;
    test_verify(quick ? 100 : 3000);
    test_verify_each_byte(quick);
    test_many_signers(quick);
    test_identity_restore();
    test_keypool();
    test_keypool_leaves_no_copy();
    return check_finish("curve");
}
