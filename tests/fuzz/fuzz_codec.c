/* fuzz_codec.c - hex, base64 and the UTF-8 checks against byte-at-a-time
 * references, on the SSE2 build and the portable build of codec.c at once.
 *
 * Property: for every input, on both builds (the portable one is linked
 * under portable_* names, see codec_portable.h),
 *   - hex_encode and base64_encode of the input write exactly what the
 *     references write, and no more than they promise;
 *   - hex_decode and base64_decode of the input read as text refuse exactly
 *     what the references refuse; what they accept decodes to the
 *     references' bytes and encodes back to the input (hex: up to case);
 *   - decode(encode(input)) gives the input back;
 *   - utf8_valid, utf8_text_valid and utf8_printable agree with a
 *     validator written from the Unicode standard's table of well-formed
 *     byte sequences (Table 3-7), and utf8_char_len agrees with it at every
 *     offset of the input.
 * Output buffers are heap blocks of exactly the promised size, so a write
 * past them stops the run (AddressSanitizer).
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "securitor/codec.h"
#define CODEC_PORTABLE_DECLARE
#include "codec_portable.h"

/* --- references: one byte at a time, written for clarity ------------------ */

static const char HEX_DIGITS[] = "0123456789abcdef";
static const char B64_DIGITS[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int ref_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void ref_hex_encode(char *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX_DIGITS[in[i] >> 4];
        out[2 * i + 1] = HEX_DIGITS[in[i] & 15];
    }
}

static int ref_hex_decode(uint8_t *out, const char *in, size_t len)
{
    if (len % 2)
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int h = ref_hex_value(in[i]), l = ref_hex_value(in[i + 1]);
        if (h < 0 || l < 0)
            return -1;
        out[i / 2] = (uint8_t)(h << 4 | l);
    }
    return 0;
}

static int ref_b64_value(char c)
{
    const char *p = c ? strchr(B64_DIGITS, c) : NULL;
    return p ? (int)(p - B64_DIGITS) : -1;
}

static void ref_base64_encode(char *out, const uint8_t *in, size_t n)
{
    /* Six bits at a time from a bit accumulator, then '=' to a multiple of 4. */
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = B64_DIGITS[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = B64_DIGITS[(acc << (6 - bits)) & 63];
    while (o % 4)
        out[o++] = '=';
}

/* RFC 4648 §4 with §3.3 and §3.5: the length is a multiple of 4, '=' only as
 * the last one or two characters, everything else in the alphabet, and the
 * bits the padding leaves over are zero. */
static int ref_base64_decode(uint8_t *out, size_t *out_len, const char *in, size_t len)
{
    if (len % 4)
        return -1;
    size_t pad = 0;
    while (pad < 2 && pad < len && in[len - 1 - pad] == '=')
        pad++;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len - pad; i++) {
        int v = ref_b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return -1; /* non-zero pad bits */
    /* A last group of 4 - pad characters holds 3 - pad bytes, so the number
     * of leftover bits says whether the padding fits: 0 for no padding, 4
     * for "==", 2 for "=". */
    if ((pad == 0 && bits) || (pad == 1 && bits != 2) || (pad == 2 && bits != 4))
        return -1;
    *out_len = o;
    return 0;
}

/* The length of the well-formed UTF-8 sequence at s (n > 0 bytes), or 0:
 * Unicode 15, Table 3-7, row by row. */
static size_t ref_utf8_char_len(const uint8_t *s, size_t n)
{
    static const struct {
        uint8_t lo0, hi0, lo1, hi1;
        size_t len;
    } rows[] = {
        {0x00, 0x7F, 0, 0, 1},       {0xC2, 0xDF, 0x80, 0xBF, 2}, {0xE0, 0xE0, 0xA0, 0xBF, 3},
        {0xE1, 0xEC, 0x80, 0xBF, 3}, {0xED, 0xED, 0x80, 0x9F, 3}, {0xEE, 0xEF, 0x80, 0xBF, 3},
        {0xF0, 0xF0, 0x90, 0xBF, 4}, {0xF1, 0xF3, 0x80, 0xBF, 4}, {0xF4, 0xF4, 0x80, 0x8F, 4},
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        if (s[0] < rows[r].lo0 || s[0] > rows[r].hi0)
            continue;
        size_t len = rows[r].len;
        if (len == 1)
            return 1;
        if (n < len || s[1] < rows[r].lo1 || s[1] > rows[r].hi1)
            return 0;
        for (size_t k = 2; k < len; k++)
            if (s[k] < 0x80 || s[k] > 0xBF)
                return 0;
        return len;
    }
    return 0;
}

/* Well-formed, and no byte below lo. */
static bool ref_utf8(const uint8_t *s, size_t n, uint8_t lo)
{
    for (size_t i = 0; i < n;) {
        if (s[i] < lo)
            return false;
        size_t k = ref_utf8_char_len(s + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

/* --- the two builds --------------------------------------------------------- */

struct codec {
    const char *name;
    void (*hex_encode)(char *, const uint8_t *, size_t);
    int (*hex_decode)(uint8_t *, const char *, size_t);
    void (*base64_encode)(char *, const uint8_t *, size_t);
    int (*base64_decode)(uint8_t *, size_t *, const char *, size_t);
    bool (*utf8_valid)(const uint8_t *, size_t);
    bool (*utf8_text_valid)(const uint8_t *, size_t);
    bool (*utf8_printable)(const uint8_t *, size_t);
    size_t (*utf8_char_len)(const uint8_t *, size_t);
};

static const struct codec CODECS[] = {
    {"sse2", hex_encode, hex_decode, base64_encode, base64_decode, utf8_valid, utf8_text_valid,
     utf8_printable, utf8_char_len},
    {"portable", portable_hex_encode, portable_hex_decode, portable_base64_encode,
     portable_base64_decode, portable_utf8_valid, portable_utf8_text_valid,
     portable_utf8_printable, portable_utf8_char_len},
};

static bool same_ignoring_case(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'F')
            x = (char)(x - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

static void check_hex(const struct codec *c, const uint8_t *data, size_t size,
                      const char *want_enc)
{
    /* Encoding: exactly 2 * size characters. */
    char *enc = fuzz_alloc(2 * size);
    c->hex_encode(enc, data, size);
    FUZZ_CHECK(!memcmp(enc, want_enc, 2 * size));
    uint8_t *back = fuzz_alloc(size);
    FUZZ_CHECK(c->hex_decode(back, enc, 2 * size) == 0);
    FUZZ_CHECK(!memcmp(back, data, size));
    free(back);
    free(enc);

    /* Decoding the input as text: into exactly size / 2 bytes. */
    const char *text = (const char *)data;
    uint8_t *got = fuzz_alloc(size / 2), *want = fuzz_alloc(size / 2);
    int rc = c->hex_decode(got, text, size);
    int want_rc = ref_hex_decode(want, text, size);
    FUZZ_CHECK(rc == want_rc);
    if (rc == 0) {
        FUZZ_CHECK(!memcmp(got, want, size / 2));
        char *again = fuzz_alloc(size);
        c->hex_encode(again, got, size / 2);
        FUZZ_CHECK(same_ignoring_case(text, again, size));
        free(again);
    }
    free(got);
    free(want);
}

static void check_base64(const struct codec *c, const uint8_t *data, size_t size,
                         const char *want_enc)
{
    size_t enc_len = base64_encoded_len(size);
    char *enc = fuzz_alloc(enc_len);
    c->base64_encode(enc, data, size);
    FUZZ_CHECK(!memcmp(enc, want_enc, enc_len));
    uint8_t *back = fuzz_alloc(base64_decoded_max(enc_len));
    size_t back_len = SIZE_MAX;
    FUZZ_CHECK(c->base64_decode(back, &back_len, enc, enc_len) == 0);
    FUZZ_CHECK(back_len == size && !memcmp(back, data, size));
    free(back);
    free(enc);

    const char *text = (const char *)data;
    size_t max = base64_decoded_max(size);
    uint8_t *got = fuzz_alloc(max), *want = fuzz_alloc(max);
    size_t got_len = SIZE_MAX, want_len = SIZE_MAX;
    int rc = c->base64_decode(got, &got_len, text, size);
    int want_rc = ref_base64_decode(want, &want_len, text, size);
    FUZZ_CHECK(rc == want_rc);
    if (rc == 0) {
        FUZZ_CHECK(got_len == want_len && got_len <= max && !memcmp(got, want, got_len));
        /* One encoding per value: what is accepted is what encode writes. */
        FUZZ_CHECK(base64_encoded_len(got_len) == size);
        char *again = fuzz_alloc(size);
        c->base64_encode(again, got, got_len);
        FUZZ_CHECK(!memcmp(again, text, size));
        free(again);
    }
    free(got);
    free(want);
}

static void check_utf8(const struct codec *c, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(c->utf8_valid(data, size) == ref_utf8(data, size, 0));
    FUZZ_CHECK(c->utf8_text_valid(data, size) == ref_utf8(data, size, 1));
    FUZZ_CHECK(c->utf8_printable(data, size) == ref_utf8(data, size, 0x20));
    for (size_t i = 0; i < size; i++)
        FUZZ_CHECK(c->utf8_char_len(data + i, size - i) == ref_utf8_char_len(data + i, size - i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *hex = fuzz_alloc(2 * size), *b64 = fuzz_alloc(base64_encoded_len(size));
    ref_hex_encode(hex, data, size);
    ref_base64_encode(b64, data, size);
    for (size_t k = 0; k < sizeof(CODECS) / sizeof(CODECS[0]); k++) {
        check_hex(&CODECS[k], data, size, hex);
        check_base64(&CODECS[k], data, size, b64);
        check_utf8(&CODECS[k], data, size);
    }
    free(hex);
    free(b64);
    return 0;
}
