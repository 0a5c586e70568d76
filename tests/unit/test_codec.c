/* test_codec.c - hex, base64 (RFC 4648 §10 vectors) and UTF-8 edge cases. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "securitor/codec.h"

static void test_hex(void)
{
    const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[13] = {0};
    hex_encode(out, bytes, sizeof(bytes));
    CHECK(!strcmp(out, "00017f80abff"));

    uint8_t back[6];
    CHECK(hex_decode(back, "00017F80ABff", 12) == 0);
    CHECK_BYTES(back, bytes, 6);
    CHECK(hex_decode(back, "", 0) == 0);
    CHECK(hex_decode(back, "abc", 3) == -1);     /* odd length */
    CHECK(hex_decode(back, "0g", 2) == -1);      /* not a digit */
    CHECK(hex_decode(back, "xyz789", 6) == -1);  /* the seed case's "encryptedData" */
    CHECK(hex_decode(back, " 0", 2) == -1);
    CHECK(hex_decode(back, "0\x80", 2) == -1);   /* high byte */

    /* Both encoders (pair table below 64 bytes, arithmetic above) against
     * printf, for every length around the switch and every byte value. */
    uint8_t all[300];
    char enc[601], want[601];
    uint8_t dec[300];
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (uint8_t)(255 - i * 7);
    for (size_t n = 0; n <= sizeof(all); n++) {
        for (size_t i = 0; i < n; i++)
            snprintf(want + 2 * i, 3, "%02x", all[i]);
        want[2 * n] = '\0';
        hex_encode(enc, all, n);
        enc[2 * n] = '\0';
        CHECK(!strcmp(enc, want));
        CHECK(hex_decode(dec, enc, 2 * n) == 0 && !memcmp(dec, all, n));
    }

    /* The decoder takes 32 digits a step: a bad digit, or a digit in upper
     * case, at every position of a block, of the next one and of the tail. */
    static const char bad_digits[] = {'/', ':', '@', 'G', '`', 'g', ' ', '\0', '\x80', '\xc6'};
    char digits[2 * 45];
    uint8_t want_bytes[45];
    for (size_t i = 0; i < sizeof(want_bytes); i++)
        want_bytes[i] = (uint8_t)(i * 37 + 11);
    hex_encode(digits, want_bytes, sizeof(want_bytes));
    for (size_t at = 0; at < sizeof(digits); at++) {
        char saved = digits[at];
        for (size_t k = 0; k < sizeof(bad_digits); k++) {
            digits[at] = bad_digits[k];
            CHECK(hex_decode(dec, digits, sizeof(digits)) == -1);
        }
        digits[at] = (char)(saved >= 'a' ? saved - 'a' + 'A' : saved);
        CHECK(hex_decode(dec, digits, sizeof(digits)) == 0 &&
              !memcmp(dec, want_bytes, sizeof(want_bytes)));
        digits[at] = saved;
    }
}

static void test_base64(void)
{
    /* RFC 4648 §10. */
    static const struct { const char *raw, *enc; } v[] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},     {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char enc[16] = {0};
        size_t n = strlen(v[i].raw);
        base64_encode(enc, (const uint8_t *)v[i].raw, n);
        CHECK(base64_encoded_len(n) == strlen(v[i].enc));
        CHECK(!strcmp(enc, v[i].enc));
        uint8_t dec[16];
        size_t dec_len = 99;
        CHECK(base64_decode(dec, &dec_len, v[i].enc, strlen(v[i].enc)) == 0);
        CHECK(dec_len == n);
        CHECK(!memcmp(dec, v[i].raw, n));
    }
    uint8_t dec[16];
    size_t len;
    CHECK(base64_decode(dec, &len, "Zg=", 3) == -1);    /* length not a multiple of 4 */
    CHECK(base64_decode(dec, &len, "Zh==", 4) == -1);   /* non-zero pad bits */
    CHECK(base64_decode(dec, &len, "Zm9=", 4) == -1);   /* non-zero pad bits */
    CHECK(base64_decode(dec, &len, "Z===", 4) == -1);
    CHECK(base64_decode(dec, &len, "====", 4) == -1);
    CHECK(base64_decode(dec, &len, "Zg==Zg==", 8) == -1); /* padding in the middle */
    CHECK(base64_decode(dec, &len, "Zm-v", 4) == -1);   /* URL alphabet is not accepted */
    CHECK(base64_decode(dec, &len, "Zm9v\n", 5) == -1);
    CHECK(base64_decode(dec, &len, "IK", 2) == -1);     /* the seed case's "identity_key" */

    /* Every byte value survives a round trip. */
    uint8_t all[256], back[256];
    char enc[400];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t n = 0; n <= 256; n++) {
        base64_encode(enc, all, n);
        CHECK(base64_decode(back, &len, enc, base64_encoded_len(n)) == 0 && len == n &&
              !memcmp(back, all, n));
    }
}

static void test_utf8(void)
{
#define U(s) utf8_valid((const uint8_t *)(s), sizeof(s) - 1)
    CHECK(U(""));
    CHECK(U("plain ASCII text, longer than eight bytes"));
    CHECK(U("caf\xc3\xa9"));               /* é */
    CHECK(U("\xe2\x82\xac"));              /* € */
    CHECK(U("\xf0\x9f\x94\x90"));          /* 🔐 */
    CHECK(U("\xf4\x8f\xbf\xbf"));          /* U+10FFFF */
    CHECK(U("a\0b"));                      /* NUL is valid UTF-8 */
    CHECK(!U("\xc3"));                     /* truncated */
    CHECK(!U("\xc0\xaf"));                 /* overlong '/' */
    CHECK(!U("\xe0\x80\xaf"));             /* overlong */
    CHECK(!U("\xed\xa0\x80"));             /* surrogate U+D800 */
    CHECK(!U("\xf4\x90\x80\x80"));         /* above U+10FFFF */
    CHECK(!U("\x80"));                     /* lone continuation */
    CHECK(!U("abcdefgh\xff"));             /* after the ASCII fast path */
    CHECK(!U("\xe2\x82"));
#undef U
}

/* The scanners read 64 bytes at a time (SSE2), then 32 and 8: put each
 * interesting sequence at every offset of a buffer longer than two blocks, so
 * it lands inside a block, across a block edge and in each kind of tail. */
static void test_utf8_positions(void)
{
    static const struct {
        const char *seq;
        size_t len;
        bool valid, text;
    } cases[] = {
        {"\xc3\xa9", 2, true, true},
        {"\xf0\x9f\x94\x90", 4, true, true},
        {"\0", 1, true, false},   /* valid UTF-8, not carried by JSON text */
        {"\xc3", 1, false, false}, /* truncated */
        {"\xed\xa0\x80", 3, false, false},
        {"\xff", 1, false, false},
    };
    uint8_t b[64 * 2 + 32 + 8 + 5];
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (size_t at = 0; at + cases[c].len <= sizeof(b); at++) {
            memset(b, 'a', sizeof(b));
            memcpy(b + at, cases[c].seq, cases[c].len);
            CHECK(utf8_valid(b, sizeof(b)) == cases[c].valid);
            CHECK(utf8_text_valid(b, sizeof(b)) == cases[c].text);
            /* The same sequence as the last bytes of a shorter input. */
            CHECK(utf8_valid(b, at + cases[c].len) == cases[c].valid);
            CHECK(utf8_text_valid(b, at + cases[c].len) == cases[c].text);
        }
    }
    /* Multi-byte text throughout, and a NUL after it. */
    uint8_t euro[3 * 30];
    for (size_t i = 0; i < sizeof(euro); i += 3)
        memcpy(euro + i, "\xe2\x82\xac", 3);
    CHECK(utf8_text_valid(euro, sizeof(euro)));
    euro[sizeof(euro) - 3] = 0;
    CHECK(!utf8_valid(euro, sizeof(euro)) && !utf8_text_valid(euro, sizeof(euro)));
}

int main(void)
{
    test_hex();
    test_base64();
    test_utf8();
    test_utf8_positions();
    return check_finish("test_codec");
}
