/* test_cbc.c - cbc.h against OpenSSL's AES-256-CBC on a fresh context per
 * call, with and without cbc_hold (under which the shared context is re-keyed
 * for each message instead of reset): random keys, IVs and lengths (0 to 70
 * bytes), encryptions and decryptions interleaved, a bad padding or length
 * in the middle of a held run. The seed is printed.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "check.h"
#include "securitor/cbc.h"

static void random_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)test_rand();
}

static size_t ref_encrypt(uint8_t *out, const uint8_t *key, const uint8_t *iv, const uint8_t *in,
                          size_t len)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0;
    CHECK(c && EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, key, iv) == 1 &&
          EVP_EncryptUpdate(c, out, &n1, in, (int)len) == 1 &&
          EVP_EncryptFinal_ex(c, out + n1, &n2) == 1);
    EVP_CIPHER_CTX_free(c);
    return (size_t)(n1 + n2);
}

static void run(int rounds, bool hold)
{
    uint8_t key[32], iv[16], pt[70], ct[96], want[96], back[96];
    if (hold)
        cbc_hold();
    for (int r = 0; r < rounds; r++) {
        size_t len = test_rand() % sizeof(pt), n = 0;
        random_bytes(key, sizeof(key));
        random_bytes(iv, sizeof(iv));
        random_bytes(pt, len);
        size_t want_len = ref_encrypt(want, key, iv, pt, len);
        CHECK(want_len == cbc_padded_len(len));
        CHECK(cbc_encrypt(ct, key, iv, pt, len) == 0);
        CHECK_BYTES(ct, want, want_len);
        switch (test_rand() % 4) {
        case 0: /* a wrong key: refused (bad padding) or garbage, never the text */
            key[0] ^= 1;
            if (cbc_decrypt(back, &n, key, iv, ct, want_len) == 0)
                CHECK(n != len || memcmp(back, pt, len) != 0);
            key[0] ^= 1;
            break;
        case 1: /* a length that is not a multiple of the block */
            CHECK(cbc_decrypt(back, &n, key, iv, ct, want_len - 1) == -1);
            break;
        default: break;
        }
        CHECK(cbc_decrypt(back, &n, key, iv, ct, want_len) == 0);
        CHECK(n == len);
        CHECK_BYTES(back, pt, len);
    }
    if (hold)
        cbc_release();
}

int main(void)
{
    test_seed();
    run(2000, false);
    run(2000, true);
    cbc_hold();
    cbc_hold(); /* nested */
    run(200, false);
    cbc_release();
    run(200, false);
    cbc_release();
    cbc_release(); /* unbalanced: harmless */
    run(200, false);
    return check_finish("cbc");
}
