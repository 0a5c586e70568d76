/* reply.c - building reply bodies as JSON text, without an intermediate tree.
 *
 * Replies are formatted straight into a reused buffer: building a cJSON tree
 * and printing it costs more than the cryptography for small messages.
 */
#include "node_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "securitor/codec.h"
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

void json_write_string(struct buf *b, const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    const uint8_t *safe = safe_table();
    if (!buf_reserve(b, len + 2))
        return;
    b->data[b->len++] = '"';
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        /* Eight bytes at a time while none needs attention: no control
         * character (< 0x20), no '"' or '\\', nothing >= 0x80. Each test sets
         * a byte's high bit when that byte matches (classic SWAR). */
        while (len - run >= 8) {
            uint64_t w;
            memcpy(&w, s + run, 8);
            const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
            uint64_t ctl = (w - ones * 0x20) & ~w;
            uint64_t quote = ((w ^ (ones * '"')) - ones) & ~(w ^ (ones * '"'));
            uint64_t bslash = ((w ^ (ones * '\\')) - ones) & ~(w ^ (ones * '\\'));
            if ((ctl | quote | bslash | w) & high)
                break;
            run += 8;
        }
        while (run < len && safe[s[run]])
            run++;
        if (run > i) {
            buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        uint8_t c = s[i];
        if (c >= 0x80) {
            size_t k = utf8_char_len(s + i, len - i);
            if (k) {
                buf_append(b, s + i, k);
                i += k;
            } else {
                buf_append_str(b, "\\ufffd"); /* never emit invalid UTF-8 */
                i++;
            }
            continue;
        }
        char esc[8];
        switch (c) {
        case '"': buf_append_str(b, "\\\""); break;
        case '\\': buf_append_str(b, "\\\\"); break;
        case '\n': buf_append_str(b, "\\n"); break;
        case '\r': buf_append_str(b, "\\r"); break;
        case '\t': buf_append_str(b, "\\t"); break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            buf_append_str(b, esc);
        }
        i++;
    }
    buf_append_char(b, '"');
}

static void write_key(struct reply *r, const char *key)
{
    if (r->need_comma[r->depth])
        buf_append_char(&r->fields, ',');
    r->need_comma[r->depth] = true;
    buf_append_char(&r->fields, '"');
    buf_append_str(&r->fields, key); /* keys are literals from our own code */
    buf_append(&r->fields, "\":", 2);
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

void reply_hex(struct reply *r, const char *key, const uint8_t *bytes, size_t n)
{
    write_key(r, key);
    char *dst = buf_reserve(&r->fields, 2 * n + 2);
    if (!dst)
        return;
    dst[0] = '"';
    hex_encode(dst + 1, bytes, n);
    dst[2 * n + 1] = '"';
    r->fields.len += 2 * n + 2;
}

void reply_base64(struct reply *r, const char *key, const uint8_t *bytes, size_t n)
{
    write_key(r, key);
    size_t m = base64_encoded_len(n);
    char *dst = buf_reserve(&r->fields, m + 2);
    if (!dst)
        return;
    dst[0] = '"';
    base64_encode(dst + 1, bytes, n);
    dst[m + 1] = '"';
    r->fields.len += m + 2;
}

void reply_text_or_base64(struct reply *r, const char *key, const uint8_t *b, size_t n)
{
    if (utf8_text_valid(b, n)) {
        reply_string(r, key, (const char *)b, n);
    } else {
        reply_base64(r, key, b, n);
        reply_cstring(r, "encoding", "base64");
    }
}

void reply_raw(struct reply *r, const char *key, const char *json, size_t len)
{
    write_key(r, key);
    buf_append(&r->fields, json, len);
}

void reply_begin_object(struct reply *r, const char *key)
{
    write_key(r, key);
    buf_append_char(&r->fields, '{');
    if (r->depth + 1 < (int)(sizeof(r->need_comma) / sizeof(r->need_comma[0])))
        r->depth++;
    r->need_comma[r->depth] = false;
}

void reply_end_object(struct reply *r)
{
    buf_append_char(&r->fields, '}');
    if (r->depth > 0)
        r->depth--;
}

void reply_clear(struct reply *r)
{
    r->type = NULL;
    /* Reply fields may hold plaintext: wipe what was written, keep the memory. */
    if (r->sensitive)
        wipe_bytes(r->fields.data, r->fields.len);
    r->sensitive = false;
    buf_reset(&r->fields);
    r->depth = 0;
    r->need_comma[0] = true; /* the loop writes type and msg_id first */
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

/* --- reading request fields -------------------------------------------- */

const cJSON *req_field(const cJSON *obj, const char *key)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next)
        /* First bytes first: most keys differ there, and that saves a call. */
        if (c->string && c->string[0] == key[0] && !strcmp(c->string, key))
            return c;
    return NULL;
}

int req_string(struct reply *r, const cJSON *body, const char *key, bool optional,
               const char **s, size_t *len)
{
    const cJSON *item = req_field(body, key);
    *s = NULL;
    if (len)
        *len = 0;
    if (!item || cJSON_IsNull(item)) {
        if (optional)
            return 0;
        return node_error(r, ERR_MALFORMED, "%s: missing; expected a string", key);
    }
    if (!cJSON_IsString(item) || !item->valuestring)
        return node_error(r, ERR_MALFORMED, "%s: expected a string", key);
    *s = item->valuestring;
    if (len)
        *len = strlen(item->valuestring);
    return 0;
}

int req_int(struct reply *r, const cJSON *body, const char *key, bool optional,
            long long min, long long max, long long *v, bool *present)
{
    const cJSON *item = req_field(body, key);
    if (present)
        *present = false;
    if (!item || cJSON_IsNull(item)) {
        if (optional)
            return 0;
        return node_error(r, ERR_MALFORMED, "%s: missing; expected an integer", key);
    }
    double d = cJSON_IsNumber(item) ? item->valuedouble : 0.5;
    /* Range first: converting an out-of-range double to an integer is UB. */
    if (!cJSON_IsNumber(item) || !(d >= (double)min && d <= (double)max) ||
        d != (double)(long long)d)
        return node_error(r, ERR_MALFORMED, "%s: expected an integer from %lld to %lld",
                          key, min, max);
    *v = (long long)d;
    if (present)
        *present = true;
    return 0;
}

int req_text_or_base64(struct reply *r, const cJSON *body, const char *key,
                       const char *encoding_key, bool optional, struct buf *scratch,
                       const uint8_t **bytes, size_t *len)
{
    const char *text, *encoding;
    size_t text_len;
    int rc;
    *bytes = NULL;
    *len = 0;
    if ((rc = req_string(r, body, key, optional, &text, &text_len)) ||
        (rc = req_string(r, body, encoding_key, true, &encoding, NULL)))
        return rc;
    if (!text)
        return 0;
    if (!encoding || !strcmp(encoding, "utf-8") || !strcmp(encoding, "utf8")) {
        *bytes = (const uint8_t *)text;
        *len = text_len;
        return 0;
    }
    if (strcmp(encoding, "base64"))
        return node_error(r, ERR_MALFORMED, "%s: expected \"base64\" or \"utf-8\", got \"%s\"",
                          encoding_key, encoding);
    scratch->len = 0;
    uint8_t *raw = (uint8_t *)buf_reserve(scratch, base64_decoded_max(text_len) + 1);
    if (!raw)
        return node_error(r, ERR_CRASH, "out of memory");
    if (base64_decode(raw, len, text, text_len))
        return node_error(r, ERR_MALFORMED, "%s: expected padded base64 (%s is \"base64\")", key,
                          encoding_key);
    *bytes = raw;
    return 0;
}
