/* test_kdf.c - kdf.h's HKDF and HMAC against OpenSSL's own.
 *
 * hkdf_sha256 is composed from OpenSSL's HMAC; OpenSSL's EVP_KDF "HKDF" (a
 * fresh context per call) is the reference it must match byte for byte on
 * random inputs: salts empty, all-zero (which take the pre-keyed context)
 * and random, of every length around the 64-byte block; empty and long
 * info; outputs from 1 byte to 255 * 32. hmac_sha256 and hmac_sha256_each
 * are checked against EVP_Q_mac the same way, and everything again under
 * kdf_hold; hmac_key too. RFC 5869's three SHA-256 cases pin the results down. Wycheproof's
 * cases run in test_wycheproof_primitives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "check.h"
#include "securitor/kdf.h"

#define MAX_OUT (255 * 32)

/* OpenSSL's HKDF, as kdf.c used it before: the reference. -1 on refusal. */
static int ref_hkdf(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                    const uint8_t *ikm, size_t ikm_len, const uint8_t *info, size_t info_len)
{
    static const uint8_t none[1];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)(ikm_len ? ikm : none),
                                ikm_len),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT,
                                (void *)(uintptr_t)(salt_len ? salt : none), salt_len),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_INFO,
                                (void *)(uintptr_t)(info_len ? info : none), info_len),
        OSSL_PARAM_END,
    };
    int rc = ctx && EVP_KDF_derive(ctx, out, out_len, params) == 1 ? 0 : -1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

static void ref_hmac(uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *msg,
                     size_t msg_len)
{
    static const uint8_t none[1];
    size_t n = 0;
    CHECK(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key_len ? key : none, key_len, msg,
                    msg_len, out, 32, &n) != NULL &&
          n == 32);
}

static void random_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)test_rand();
}

/* A salt of a random kind: empty, all zero (every length up to a block and
 * just past it), or random. */
static size_t random_salt(uint8_t *salt)
{
    size_t len;
    switch (test_rand() % 4) {
    case 0: return 0;
    case 1:
        len = 1 + test_rand() % 66; /* 65 and 66: zero, but longer than a block */
        memset(salt, 0, len);
        return len;
    default:
        len = 1 + test_rand() % 100;
        random_bytes(salt, len);
        return len;
    }
}

static size_t random_out_len(void)
{
    switch (test_rand() % 8) {
    case 0: return MAX_OUT - test_rand() % 40;
    case 1: return 1 + test_rand() % 32;
    default: return 1 + test_rand() % 200;
    }
}

/* RFC 5869 Appendix A, the SHA-256 cases (A.3: no salt, no info). */
static void test_rfc5869(void)
{
    static const struct {
        const char *ikm, *salt, *info, *okm;
    } cases[] = {
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
         "f0f1f2f3f4f5f6f7f8f9",
         "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
        {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
         "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
         "404142434445464748494a4b4c4d4e4f",
         "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
         "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
         "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
         "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
         "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
         "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
         "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
         "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
         "cc30c58179ec3e87c14c01d5c1f3434f1d87"},
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
         "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t il, sl, nl, ol;
        uint8_t *ikm = unhex(cases[i].ikm, &il), *salt = unhex(cases[i].salt, &sl);
        uint8_t *info = unhex(cases[i].info, &nl), *okm = unhex(cases[i].okm, &ol);
        uint8_t out[82];
        CHECK(hkdf_sha256(out, ol, sl ? salt : NULL, sl, ikm, il, (const char *)info, nl) == 0);
        CHECK_BYTES(out, okm, ol);
        /* The default salt spelled out: HashLen zeros. */
        static const uint8_t zeros[32];
        CHECK(hkdf_sha256(out, ol, zeros, sizeof(zeros), ikm, il, (const char *)info, nl) == 0);
        if (!sl)
            CHECK_BYTES(out, okm, ol);
        free(ikm), free(salt), free(info), free(okm);
    }
}

/* What the reference refuses, hkdf_sha256 refuses; an empty IKM works. */
static void test_refusals(void)
{
    uint8_t out[MAX_OUT + 1], ikm[32] = {1};
    CHECK(ref_hkdf(out, 0, NULL, 0, ikm, 32, NULL, 0) == -1);
    CHECK(hkdf_sha256(out, 0, NULL, 0, ikm, 32, NULL, 0) == -1);
    CHECK(ref_hkdf(out, MAX_OUT + 1, NULL, 0, ikm, 32, NULL, 0) == -1);
    CHECK(hkdf_sha256(out, MAX_OUT + 1, NULL, 0, ikm, 32, NULL, 0) == -1);
    /* And works again after each refusal. */
    CHECK(hkdf_sha256(out, MAX_OUT, NULL, 0, ikm, 32, NULL, 0) == 0);
    /* An empty IKM is an IKM (OpenSSL refuses only a NULL one). */
    uint8_t want[32];
    CHECK(ref_hkdf(want, 32, NULL, 0, ikm, 0, NULL, 0) == 0);
    CHECK(hkdf_sha256(out, 32, NULL, 0, NULL, 0, NULL, 0) == 0);
    CHECK_BYTES(out, want, 32);
}

static void test_hkdf_random(int rounds, bool hold)
{
    static uint8_t got[MAX_OUT], want[MAX_OUT];
    uint8_t salt[100], ikm[200], info[100];
    for (int r = 0; r < rounds; r++) {
        size_t sl = random_salt(salt), il = test_rand() % sizeof(ikm);
        size_t nl = test_rand() % 3 ? test_rand() % sizeof(info) : 0, ol = random_out_len();
        random_bytes(ikm, il);
        random_bytes(info, nl);
        CHECK(ref_hkdf(want, ol, salt, sl, ikm, il, info, nl) == 0);
        if (hold)
            kdf_hold();
        CHECK(hkdf_sha256(got, ol, sl ? salt : NULL, sl, ikm, il, (const char *)info, nl) == 0);
        if (hold)
            kdf_release();
        if (!CHECK_BYTES(got, want, ol))
            printf("  salt %zu, ikm %zu, info %zu, out %zu bytes\n", sl, il, nl, ol);
    }
}

static void test_hmac_random(int rounds, bool hold)
{
    uint8_t key[150], msgs[3][200], got[3][32], want[3][32];
    for (int r = 0; r < rounds; r++) {
        size_t kl = test_rand() % 4 ? test_rand() % 70 : test_rand() % sizeof(key);
        struct bytes m[3];
        random_bytes(key, kl);
        for (int i = 0; i < 3; i++) {
            m[i] = (struct bytes){msgs[i], test_rand() % sizeof(msgs[i])};
            random_bytes(msgs[i], m[i].n);
            ref_hmac(want[i], key, kl, msgs[i], m[i].n);
        }
        if (hold)
            kdf_hold();
        CHECK(hmac_sha256_each(got, kl ? key : NULL, kl, m, 3) == 0);
        CHECK_BYTES(got[0], want[0], 32 * 3);
        /* One message in parts: the same as the whole. */
        size_t cut = m[1].n ? test_rand() % m[1].n : 0;
        struct bytes parts[3] = {{msgs[1], cut}, {NULL, 0}, {msgs[1] + cut, m[1].n - cut}};
        CHECK(hmac_sha256(got[1], kl ? key : NULL, kl, parts, 3) == 0);
        CHECK_BYTES(got[1], want[1], 32);
        if (hold)
            kdf_release();
    }
}

/* A run under nested holds, HKDF between HMACs under other keys (as the
 * ratchet does): the same bytes as the calls one by one. */
static void test_hold_mix(void)
{
    static const uint8_t zeros[32], one = 1, two = 2;
    uint8_t ck[32], rk[32], a[2][32], b[2][32], ka[80], kb[80], ra[64], rb[64];
    const struct bytes msgs[2] = {{&one, 1}, {&two, 1}};
    random_bytes(ck, sizeof(ck));
    random_bytes(rk, sizeof(rk));
    CHECK(hmac_sha256_each(a, ck, 32, msgs, 2) == 0);
    CHECK(hkdf_sha256(ka, 80, zeros, 32, a[0], 32, "WhisperMessageKeys", 18) == 0);
    CHECK(hkdf_sha256(ra, 64, rk, 32, a[1], 32, "WhisperRatchet", 14) == 0);
    kdf_hold();
    kdf_hold();
    CHECK(hmac_sha256_each(b, ck, 32, msgs, 2) == 0);
    CHECK(hkdf_sha256(kb, 80, zeros, 32, b[0], 32, "WhisperMessageKeys", 18) == 0);
    kdf_release();
    CHECK(hkdf_sha256(rb, 64, rk, 32, b[1], 32, "WhisperRatchet", 14) == 0);
    kdf_release();
    kdf_release(); /* unbalanced: harmless */
    CHECK_BYTES(b[0], a[0], 64);
    CHECK_BYTES(kb, ka, 80);
    CHECK_BYTES(rb, ra, 64);
}

/* hmac_key (a context of its own, keyed once) between calls on the shared
 * contexts, against the reference. */
static void test_hmac_key(int rounds)
{
    uint8_t key[150], msg[200], got[32], want[32], other[32];
    for (int r = 0; r < rounds; r++) {
        size_t kl = test_rand() % 4 ? test_rand() % 70 : test_rand() % sizeof(key);
        random_bytes(key, kl);
        struct hmac_key *k = hmac_key_new(kl ? key : NULL, kl);
        CHECK(k != NULL);
        if (!k)
            return;
        for (int i = 0; i < 3; i++) {
            size_t ml = test_rand() % sizeof(msg);
            random_bytes(msg, ml);
            ref_hmac(want, key, kl, msg, ml);
            CHECK(hmac_key_mac(k, got, msg, ml) == 0);
            CHECK_BYTES(got, want, 32);
            const struct bytes m = {msg, ml};
            CHECK(hmac_sha256(other, msg, ml, &m, 1) == 0); /* another key, shared context */
        }
        hmac_key_free(k);
    }
    hmac_key_free(NULL);
}

int main(void)
{
    test_seed();
    test_rfc5869();
    test_refusals();
    test_hkdf_random(1500, false);
    test_hkdf_random(300, true);
    test_hmac_random(1000, false);
    test_hmac_random(200, true);
    test_hold_mix();
    test_hmac_key(200);
    return check_finish("kdf");
}
