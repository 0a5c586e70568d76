/* test_reply.c - the JSON string writer of src/node/reply.c.
 *
 * Every reply string goes through json_write_string, and decrypted
 * plaintexts through reply_text_or_base64, which decides text or base64 in
 * the same pass. The writer copies 16 bytes a step where it can (SSE2), so
 * the tests compare it with a plain byte-at-a-time writer kept here, over
 * random strings of every kind of byte at lengths around the block size, and
 * parse the output back with cJSON. Integers are checked against printf.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "node_internal.h"
#include "securitor/codec.h"

/* The rules of PROTOCOL.md §1 written out one byte at a time: printable
 * ASCII as it is but '"' and '\\'; short escapes for those and \n \r \t;
 * \u00XX for other controls; well-formed UTF-8 as it is; any other byte
 * as U+FFFD. */
static void reference_write(struct buf *b, const uint8_t *s, size_t n)
{
    buf_append_char(b, '"');
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k = c >= 0x80 ? utf8_char_len(s + i, n - i) : 0;
        char esc[8];
        if (k) {
            buf_append(b, s + i, k);
            i += k;
            continue;
        }
        if (c >= 0x80)
            buf_append_str(b, "\\ufffd");
        else if (c == '"' || c == '\\')
            buf_append(b, (const char[]){'\\', (char)c}, 2);
        else if (c == '\n')
            buf_append_str(b, "\\n");
        else if (c == '\r')
            buf_append_str(b, "\\r");
        else if (c == '\t')
            buf_append_str(b, "\\t");
        else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            buf_append_str(b, esc);
        } else
            buf_append_char(b, (char)c);
        i++;
    }
    buf_append_char(b, '"');
}

/* Random bytes drawn mostly from one of a few kinds, so that long plain runs,
 * escapes, multi-byte characters and broken sequences all occur. */
static void random_bytes(uint8_t *s, size_t n)
{
    static const char *const pieces[] = {"\"", "\\", "\n", "\t", "\x01", "\x1f", "\x7f",
                                         "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x90",
                                         "\xc3", "\xed\xa0\x80", "\xff", "\0"};
    uint64_t mode = test_rand() % 4;
    for (size_t i = 0; i < n;) {
        if (mode == 0 || test_rand() % (mode == 1 ? 40 : 4)) {
            s[i++] = (uint8_t)('a' + test_rand() % 26);
            continue;
        }
        const char *p = pieces[test_rand() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t k = *p ? strlen(p) : 1;
        for (size_t j = 0; j < k && i < n; j++)
            s[i++] = (uint8_t)p[j];
    }
}

static void test_against_reference(void)
{
    uint8_t s[300];
    struct buf got = {0}, want = {0};
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(test_rand() % sizeof(s));
        random_bytes(s, n);
        buf_reset(&got);
        buf_reset(&want);
        json_write_string(&got, (const char *)s, n);
        reference_write(&want, s, n);
        CHECK(got.len == want.len && !memcmp(got.data, want.data, got.len));

        /* Text or base64: text exactly when the bytes are NUL-free UTF-8,
         * and then the same string; base64 otherwise, and the fields still
         * parse (the abandoned text is gone). */
        struct reply r = {0};
        reply_text_or_base64(&r, "v", s, n);
        buf_append_char(&r.fields, '}');
        struct buf doc = {0};
        buf_append_char(&doc, '{');
        buf_append(&doc, r.fields.data, r.fields.len);
        buf_append_char(&doc, '\0');
        cJSON *o = cJSON_Parse(doc.data);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "v");
        const cJSON *enc = cJSON_GetObjectItemCaseSensitive(o, "encoding");
        CHECK(cJSON_IsString(v));
        if (utf8_text_valid(s, n)) {
            CHECK(!enc && v && strlen(v->valuestring) == n && !memcmp(v->valuestring, s, n));
        } else {
            uint8_t back[sizeof(s)];
            size_t back_len = 0;
            CHECK(cJSON_IsString(enc) && !strcmp(enc->valuestring, "base64"));
            CHECK(v && !base64_decode(back, &back_len, v->valuestring, strlen(v->valuestring)) &&
                  back_len == n && !memcmp(back, s, n));
        }
        cJSON_Delete(o);
        buf_free(&doc);
        buf_free(&r.fields);
    }
    buf_free(&got);
    buf_free(&want);
}

/* A byte that stops the 16-byte copy, at every offset of two blocks and the
 * tail, written after a long plain run. */
static void test_positions(void)
{
    static const char *const stops[] = {"\"", "\\", "\x1f", "\x7f", "\xc3\xa9", "\xff", "\0"};
    uint8_t s[16 * 3 + 7];
    struct buf got = {0}, want = {0};
    for (size_t k = 0; k < sizeof(stops) / sizeof(stops[0]); k++) {
        size_t len = *stops[k] ? strlen(stops[k]) : 1;
        for (size_t at = 0; at + len <= sizeof(s); at++) {
            memset(s, 'x', sizeof(s));
            memcpy(s + at, stops[k], len);
            buf_reset(&got);
            buf_reset(&want);
            json_write_string(&got, (const char *)s, sizeof(s));
            reference_write(&want, s, sizeof(s));
            CHECK(got.len == want.len && !memcmp(got.data, want.data, got.len));
        }
    }
    buf_free(&got);
    buf_free(&want);
}

/* Integers (msg_id, in_reply_to, key_id) against printf, around every
 * power of ten and at the ends of the range. */
static void test_integers(void)
{
    struct buf got = {0};
    char want[32];
    long long v = 1; /* 10^k, up to 10^18 */
    for (int k = 0; k < 19; k++) {
        const long long around[] = {v - 1, v, v + 1, -v, -v + 1, 3 * v};
        for (size_t i = 0; i < sizeof(around) / sizeof(around[0]); i++) {
            buf_reset(&got);
            buf_append_ll(&got, around[i]);
            snprintf(want, sizeof(want), "%lld", around[i]);
            CHECK(got.len == strlen(want) && !memcmp(got.data, want, got.len));
        }
        if (k < 18)
            v *= 10;
    }
    const long long ends[] = {0, LLONG_MAX, LLONG_MIN, LLONG_MIN + 1};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        buf_reset(&got);
        buf_append_ll(&got, ends[i]);
        snprintf(want, sizeof(want), "%lld", ends[i]);
        CHECK(got.len == strlen(want) && !memcmp(got.data, want, got.len));
    }
    buf_free(&got);
}

int main(void)
{
    test_seed();
    test_against_reference();
    test_positions();
    test_integers();
    return check_finish("test_reply");
}
