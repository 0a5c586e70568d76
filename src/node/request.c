/* request.c - reading request fields (see node.h). */
#include "node_internal.h"

#include <stdio.h>
#include <string.h>

#include "securitor/codec.h"
#include "securitor/wipe.h"

const cJSON *req_field(const cJSON *obj, const char *key)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next)
        if (c->string && name_eq(c->string, key))
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
        *len = bulk_string_len(item);
    return 0;
}

bool json_exact_int(const cJSON *item, long long *v)
{
    if (!cJSON_IsNumber(item))
        return false;
    /* cJSON keeps a double. Every integer up to 2^53 - 1 is one exactly, and
     * every literal at or past 2^53 rounds to 2^53 or more, so the range
     * check also refuses integers that rounding changed (2^53 + 1 reads as
     * 2^53). Range first: converting an out-of-range double is UB. */
    double d = item->valuedouble;
    if (!(d >= -(double)NODE_MAX_SAFE_INT && d <= (double)NODE_MAX_SAFE_INT) ||
        d != (double)(long long)d)
        return false;
    *v = (long long)d;
    return true;
}

int req_int(struct reply *r, const cJSON *body, const char *key, bool optional,
            long long min, long long max, long long *v, bool *present)
{
    const cJSON *item = req_field(body, key);
    long long x;
    if (present)
        *present = false;
    if (!item || cJSON_IsNull(item)) {
        if (optional)
            return 0;
        return node_error(r, ERR_MALFORMED, "%s: missing; expected an integer", key);
    }
    if (!json_exact_int(item, &x) || x < min || x > max)
        return node_error(r, ERR_MALFORMED, "%s: expected an integer from %lld to %lld",
                          key, min, max);
    *v = x;
    if (present)
        *present = true;
    return 0;
}

int req_bool(struct reply *r, const cJSON *body, const char *key, bool optional, bool *v,
             bool *present)
{
    const cJSON *item = req_field(body, key);
    if (present)
        *present = false;
    if (!item) {
        if (optional)
            return 0;
        return node_error(r, ERR_MALFORMED, "%s: missing; expected true or false", key);
    }
    /* null is not a boolean (PROTOCOL.md §2): datakey's plaintext: null would
     * otherwise read as absent, and hand out the key in the clear. */
    if (!cJSON_IsBool(item))
        return node_error(r, ERR_MALFORMED, "%s: expected true or false", key);
    *v = cJSON_IsTrue(item);
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
    if ((rc = req_string(r, body, key, optional, &text, &text_len)) || !text ||
        (rc = req_string(r, body, encoding_key, true, &encoding, NULL)))
        return rc;
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
    if (base64_decode(raw, len, text, text_len)) {
        /* What decoded before the bad character may be plaintext. */
        wipe_bytes(raw, base64_decoded_max(text_len) + 1);
        *len = 0;
        return node_error(r, ERR_MALFORMED, "%s: expected padded base64 (%s is \"base64\")", key,
                          encoding_key);
    }
    *bytes = raw;
    return 0;
}
