/* test_aead.c - AES-256-GCM wrapper: known answers and tamper loops.
 *
 * Known answers: "The Galois/Counter Mode of Operation (GCM)", McGrew and
 * Viega (2005), Appendix B, test cases 13-16 (the AES-256 cases with a 96-bit
 * IV), the vectors NIST's GCM validation started from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "securitor/aead.h"

struct kat {
    const char *name, *key, *iv, *aad, *pt, *ct, *tag;
};

static const char K15[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
static const char P15[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
static const char C15[] =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

static const struct kat KATS[] = {
    {"GCM spec test case 13", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"GCM spec test case 14", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "00000000000000000000000000000000",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"GCM spec test case 15", K15, "cafebabefacedbaddecaf888", "", P15, C15,
     "b094dac5d93471bdec1a502270e3cc6c"},
    /* Case 16: 60-byte plaintext (partial last block) and 20 bytes of AAD. */
    {"GCM spec test case 16", K15, "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void test_kats(void)
{
    for (size_t i = 0; i < sizeof(KATS) / sizeof(KATS[0]); i++) {
        const struct kat *v = &KATS[i];
        size_t kl, il, al, pl, cl, tl;
        uint8_t *key = unhex(v->key, &kl), *iv = unhex(v->iv, &il), *aad = unhex(v->aad, &al);
        uint8_t *pt = unhex(v->pt, &pl), *ct = unhex(v->ct, &cl), *tag = unhex(v->tag, &tl);
        uint8_t out[64], out_tag[16], back[64];
        struct aead_key *k = aead_key_new(key);
        CHECK(k != NULL);
        CHECK(aead_seal(k, iv, aad, al, pt, pl, out, out_tag) == AEAD_OK);
        CHECK_BYTES(out, ct, cl);
        CHECK_BYTES(out_tag, tag, 16);
        CHECK(aead_open(k, iv, il, aad, al, ct, cl, tag, tl, back) == AEAD_OK);
        CHECK_BYTES(back, pt, pl);
        /* The same context seals again with the same result (key reuse). */
        CHECK(aead_seal(k, iv, aad, al, pt, pl, out, out_tag) == AEAD_OK);
        CHECK_BYTES(out_tag, tag, 16);
        /* Sealed in pieces of every size (odd ones cut GCM's 16-byte
         * blocks), the same ciphertext and tag. */
        for (size_t step = 1; step <= pl + 1; step++) {
            memset(out, 0, sizeof(out));
            memset(out_tag, 0, sizeof(out_tag));
            CHECK(aead_seal_begin(k, iv, aad, al) == AEAD_OK);
            for (size_t off = 0; off < pl; off += step)
                CHECK(aead_seal_next(k, pt + off, pl - off < step ? pl - off : step,
                                     out + off) == AEAD_OK);
            CHECK(aead_seal_end(k, out_tag) == AEAD_OK);
            CHECK_BYTES(out, ct, cl);
            CHECK_BYTES(out_tag, tag, 16);
            /* Opened in pieces: the plaintext, and a wrong tag refused. */
            for (int bad = 0; bad < 2; bad++) {
                memset(back, 0, sizeof(back));
                CHECK(aead_open_begin(k, iv, aad, al) == AEAD_OK);
                for (size_t off = 0; off < pl; off += step)
                    CHECK(aead_open_next(k, ct + off, pl - off < step ? pl - off : step,
                                         back + off) == AEAD_OK);
                out_tag[15] ^= (uint8_t)bad;
                CHECK(aead_open_end(k, out_tag) == (bad ? AEAD_AUTH_FAILED : AEAD_OK));
                out_tag[15] ^= (uint8_t)bad;
                if (!bad)
                    CHECK_BYTES(back, pt, pl);
            }
        }
        aead_key_free(k);
        free(key), free(iv), free(aad), free(pt), free(ct), free(tag);
    }
}

/* Flip every bit of iv, aad, ciphertext and tag in turn: each must fail,
 * and leave the output buffer wiped. */
static void test_tamper(void)
{
    uint8_t key[32], iv[12], aad[9] = "metadata";
    uint8_t pt[40], ct[40], tag[16], out[40];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < 12; i++)
        iv[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 40; i++)
        pt[i] = (uint8_t)('A' + i % 26);
    struct aead_key *k = aead_key_new(key);
    CHECK(k != NULL);
    CHECK(aead_seal(k, iv, aad, sizeof(aad), pt, sizeof(pt), ct, tag) == AEAD_OK);

    uint8_t *parts[] = {iv, aad, ct, tag};
    size_t sizes[] = {sizeof(iv), sizeof(aad), sizeof(ct), sizeof(tag)};
    unsigned long refused = 0, total = 0;
    for (int p = 0; p < 4; p++) {
        for (size_t bit = 0; bit < sizes[p] * 8; bit++) {
            parts[p][bit / 8] ^= (uint8_t)(1u << (bit % 8));
            memset(out, 0x55, sizeof(out));
            enum aead_result rc =
                aead_open(k, iv, sizeof(iv), aad, sizeof(aad), ct, sizeof(ct), tag, 16, out);
            bool wiped = true;
            for (size_t j = 0; j < sizeof(out); j++)
                wiped &= out[j] == 0;
            refused += rc == AEAD_AUTH_FAILED && wiped;
            total++;
            parts[p][bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
    }
    CHECK(refused == total);
    /* Untampered, it still opens. */
    CHECK(aead_open(k, iv, sizeof(iv), aad, sizeof(aad), ct, sizeof(ct), tag, 16, out) ==
          AEAD_OK);
    CHECK_BYTES(out, pt, sizeof(pt));
    /* Wrong AAD length (a prefix of the real AAD) fails too. */
    CHECK(aead_open(k, iv, sizeof(iv), aad, sizeof(aad) - 1, ct, sizeof(ct), tag, 16, out) ==
          AEAD_AUTH_FAILED);
    /* Truncated tags and other IV sizes are refused, never checked as a prefix. */
    for (size_t tl = 0; tl < 16; tl++)
        CHECK(aead_open(k, iv, sizeof(iv), aad, sizeof(aad), ct, sizeof(ct), tag, tl, out) ==
              AEAD_BAD_SIZE);
    CHECK(aead_open(k, iv, 8, aad, sizeof(aad), ct, sizeof(ct), tag, 16, out) == AEAD_BAD_SIZE);
    CHECK(aead_open(k, iv, 16, aad, sizeof(aad), ct, sizeof(ct), tag, 16, out) == AEAD_BAD_SIZE);
    /* A different key fails. */
    key[0] ^= 1;
    struct aead_key *k2 = aead_key_new(key);
    CHECK(aead_open(k2, iv, sizeof(iv), aad, sizeof(aad), ct, sizeof(ct), tag, 16, out) ==
          AEAD_AUTH_FAILED);
    aead_key_free(k2);
    aead_key_free(k);
}

/* Large buffers round-trip (exercises the chunking path's arithmetic). */
static void test_large(void)
{
    size_t n = (size_t)3 << 20;
    uint8_t key[32] = {1}, iv[12] = {2}, tag[16];
    uint8_t *pt = malloc(n), *ct = malloc(n), *back = malloc(n);
    CHECK(pt && ct && back);
    for (size_t i = 0; i < n; i++)
        pt[i] = (uint8_t)(i * 31);
    struct aead_key *k = aead_key_new(key);
    CHECK(aead_seal(k, iv, NULL, 0, pt, n, ct, tag) == AEAD_OK);
    CHECK(aead_open(k, iv, 12, NULL, 0, ct, n, tag, 16, back) == AEAD_OK);
    CHECK(memcmp(pt, back, n) == 0);
    ct[n - 1] ^= 0x80;
    CHECK(aead_open(k, iv, 12, NULL, 0, ct, n, tag, 16, back) == AEAD_AUTH_FAILED);
    aead_key_free(k);
    free(pt), free(ct), free(back);
}

int main(void)
{
    test_kats();
    test_tamper();
    test_large();
    return check_finish("test_aead");
}
