/* reply.c - building reply bodies as JSON text, without an intermediate tree.
 *
 * Replies (and the bodies of messages to other nodes) are formatted straight
 * into a reused buffer: building a cJSON tree and printing it costs more than
 * the cryptography for small messages.
 */
#include "node_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "securitor/codec.h"
#include "securitor/simd.h"
#include "securitor/wipe.h"

/* SAFE[c] is 1 for bytes copied into a JSON string as they are. */
static const uint8_t *safe_table(void)
{
    static uint8_t safe[256];
    static bool ready;
    if (!ready) {
        for (int c = 0x20; c < 0x80; c++)
            safe[c] = c != '"' && c != '\\';
        ready = true;
    }
    return safe;
}

/* Copies to o the longest prefix of s[0, n) that a JSON string carries as it
 * is (printable ASCII but '"' and '\\'); returns its length. o has room for
 * n bytes. */
static size_t copy_plain(char *o, const uint8_t *s, size_t n)
{
    size_t i = 0;
#if SECURITOR_SSE2
    /* 16 bytes a step, stored before they are judged (the store is within
     * room, and bytes past the prefix do not count). A signed compare with
     * 0x20 catches the controls and, as negatives, every byte >= 0x80. */
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
                  bslash = _mm_set1_epi8('\\');
    for (; n - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i stop = _mm_or_si128(_mm_cmplt_epi8(v, space),
                                    _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                 _mm_cmpeq_epi8(v, bslash)));
        _mm_storeu_si128((__m128i *)(o + i), v);
        unsigned mask = (unsigned)_mm_movemask_epi8(stop);
        if (mask)
            return i + (size_t)__builtin_ctz(mask);
    }
#endif
    const uint8_t *safe = safe_table();
    for (; i < n && safe[s[i]]; i++)
        o[i] = (char)s[i];
    return i;
}

/* Appends s as a quoted JSON string. Strict: refuses (returning false, with b
 * as it was) bytes that are not NUL-free UTF-8. Otherwise invalid bytes
 * become U+FFFD, so the output is always valid UTF-8. Running out of memory
 * returns true: the failure shows in buf_ok(b). */
static bool json_write_chars(struct buf *b, const uint8_t *s, size_t len, bool strict)
{
    size_t mark = b->len;
    if (!buf_reserve(b, len + 2))
        return true;
    b->data[b->len++] = '"';
    size_t i = 0;
    while (i < len) {
        /* Room for the rest unescaped (escapes only ever take more). */
        if (!buf_reserve(b, len - i + 1))
            return true;
        size_t run = copy_plain(b->data + b->len, s + i, len - i);
        b->len += run;
        i += run;
        if (i == len)
            break;
        uint8_t c = s[i];
        if (c >= 0x80) {
            size_t k = utf8_char_len(s + i, len - i);
            if (k) {
                buf_append(b, s + i, k);
                i += k;
                continue;
            }
        }
        if ((c >= 0x80 || !c) && strict) {
            wipe_bytes(b->data + mark, b->len - mark); /* it may have been plaintext */
            b->len = mark;
            return false;
        }
        char esc[8];
        switch (c) {
        case '"': buf_append_str(b, "\\\""); break;
        case '\\': buf_append_str(b, "\\\\"); break;
        case '\n': buf_append_str(b, "\\n"); break;
        case '\r': buf_append_str(b, "\\r"); break;
        case '\t': buf_append_str(b, "\\t"); break;
        default:
            if (c >= 0x80) {
                buf_append_str(b, "\\ufffd"); /* never emit invalid UTF-8 */
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                buf_append_str(b, esc);
            }
        }
        i++;
    }
    buf_append_char(b, '"');
    return true;
}

void json_write_string(struct buf *b, const char *str, size_t len)
{
    json_write_chars(b, (const uint8_t *)str, len, false);
}

static void write_key(struct reply *r, const char *key)
{
    if (!key) { /* an array element: only the comma */
        if (r->need_comma[r->depth])
            buf_append_char(&r->fields, ',');
        r->need_comma[r->depth] = true;
        return;
    }
    /* ,"key": in one step; keys are literals from our own code. */
    size_t n = strlen(key), comma = r->need_comma[r->depth];
    char *dst = buf_reserve(&r->fields, n + 4);
    if (!dst)
        return;
    dst[0] = ',';
    dst[comma] = '"';
    memcpy(dst + comma + 1, key, n);
    memcpy(dst + comma + 1 + n, "\":", 2);
    r->fields.len += comma + n + 3;
    r->need_comma[r->depth] = true;
}

void reply_type(struct reply *r, const char *type) { r->type = type; }

void reply_string(struct reply *r, const char *key, const char *s, size_t len)
{
    write_key(r, key);
    json_write_string(&r->fields, s, len);
}

void reply_cstring(struct reply *r, const char *key, const char *s)
{
    reply_string(r, key, s, strlen(s));
}

void reply_int(struct reply *r, const char *key, long long v)
{
    write_key(r, key);
    buf_append_ll(&r->fields, v);
}

char *reply_hex_digits(struct reply *r, const char *key, size_t n)
{
    write_key(r, key);
    char *dst = buf_reserve(&r->fields, 2 * n + 2);
    if (!dst)
        return NULL;
    dst[0] = '"';
    dst[2 * n + 1] = '"';
    r->fields.len += 2 * n + 2;
    return dst + 1;
}

void reply_hex(struct reply *r, const char *key, const uint8_t *bytes, size_t n)
{
    char *digits = reply_hex_digits(r, key, n);
    if (digits)
        hex_encode(digits, bytes, n);
}

/* Appends bytes as a quoted base64 string. */
static void base64_string(struct buf *o, const uint8_t *bytes, size_t n)
{
    size_t m = base64_encoded_len(n);
    char *dst = buf_reserve(o, m + 2);
    if (!dst)
        return;
    dst[0] = '"';
    base64_encode(dst + 1, bytes, n);
    dst[m + 1] = '"';
    o->len += m + 2;
}

void reply_base64(struct reply *r, const char *key, const uint8_t *bytes, size_t n)
{
    write_key(r, key);
    base64_string(&r->fields, bytes, n);
}

void reply_text_or_base64(struct reply *r, const char *key, const uint8_t *b, size_t n)
{
    write_key(r, key);
    /* One pass: written as text unless that finds invalid UTF-8 or a NUL. */
    if (json_write_chars(&r->fields, b, n, true))
        return;
    base64_string(&r->fields, b, n);
    reply_cstring(r, "encoding", "base64");
}

void reply_raw(struct reply *r, const char *key, const char *json, size_t len)
{
    write_key(r, key);
    buf_append(&r->fields, json, len);
}

void reply_bool(struct reply *r, const char *key, bool v)
{
    write_key(r, key);
    if (v)
        buf_append_lit(&r->fields, "true");
    else
        buf_append_lit(&r->fields, "false");
}

static void begin(struct reply *r, const char *key, char open)
{
    write_key(r, key);
    buf_append_char(&r->fields, open);
    if (r->depth + 1 < (int)(sizeof(r->need_comma) / sizeof(r->need_comma[0])))
        r->depth++;
    else
        r->fields.failed = true; /* deeper than we can track: the reply fails whole */
    r->need_comma[r->depth] = false;
}

static void end(struct reply *r, char close)
{
    buf_append_char(&r->fields, close);
    if (r->depth > 0)
        r->depth--;
}

void reply_begin_object(struct reply *r, const char *key) { begin(r, key, '{'); }
void reply_end_object(struct reply *r) { end(r, '}'); }
void reply_begin_array(struct reply *r, const char *key) { begin(r, key, '['); }
void reply_end_array(struct reply *r) { end(r, ']'); }

void reply_clear(struct reply *r)
{
    r->type = NULL;
    r->deferred = false;
    r->early = false;
    r->early_after = 0;
    /* Reply fields may hold plaintext: wipe what was written, keep the memory. */
    if (r->sensitive)
        wipe_bytes(r->fields.data, r->fields.len);
    r->sensitive = false;
    buf_reset(&r->fields);
    r->depth = 0;
    r->need_comma[0] = true; /* the loop writes type and msg_id first */
}

void reply_free(struct reply *r)
{
    reply_clear(r);
    buf_free(&r->fields);
}

int node_error(struct reply *r, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    bool sensitive = r->sensitive; /* fields written so far still need wiping */
    reply_clear(r);
    r->sensitive = sensitive;
    reply_type(r, "error");
    reply_int(r, "code", code);
    reply_cstring(r, "text", text);
    return code;
}
