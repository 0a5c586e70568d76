/* json_strict.h - an RFC 8259 checker for the lines the nodes write, for the
 * fuzz targets that drive a whole node (fuzz_node.c).
 *
 * Independent of cJSON (which is laxer: see parse.c) and of the node's own
 * writer. A line passes when it is one JSON object per RFC 8259 with
 * nothing else around it: UTF-8 per Unicode's Table 3-7, no control byte in
 * a string, only the escapes of §7 with \u surrogates in pairs, numbers per
 * §6, white space only space, tab, CR and LF, nesting at most 64 deep; and
 * when it is a Maelstrom envelope (PROTOCOL.md §1): "src" and "dest"
 * strings and a "body" object whose "type" is a string.
 */
#ifndef SECURITOR_FUZZ_JSON_STRICT_H
#define SECURITOR_FUZZ_JSON_STRICT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct jcheck {
    const unsigned char *p, *end;
    int depth;
    /* What the envelope holds: set while the top level and body are read. */
    bool src, dest, body, type;
};

static void jc_ws(struct jcheck *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
        c->p++;
}

static int jc_hex4(struct jcheck *c)
{
    int v = 0;
    if (c->end - c->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char h = *c->p++;
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= h - '0';
        else if (h >= 'a' && h <= 'f')
            v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F')
            v |= h - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* One UTF-8 sequence (Table 3-7) at c->p, the lead byte >= 0x80. */
static bool jc_utf8(struct jcheck *c)
{
    unsigned char b = *c->p;
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        n = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        n = 2;
        if (b == 0xE0)
            lo = 0xA0;
        if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 3;
        if (b == 0xF0)
            lo = 0x90;
        if (b == 0xF4)
            hi = 0x8F;
    } else
        return false;
    if (c->end - c->p < n + 1)
        return false;
    if (c->p[1] < lo || c->p[1] > hi)
        return false;
    for (int i = 2; i <= n; i++)
        if (c->p[i] < 0x80 || c->p[i] > 0xBF)
            return false;
    c->p += n + 1;
    return true;
}

/* A string token; text and len (when given) get its raw bytes, between the
 * quotes. */
static bool jc_string(struct jcheck *c, const unsigned char **text, size_t *len)
{
    if (c->p >= c->end || *c->p != '"')
        return false;
    const unsigned char *start = ++c->p;
    while (c->p < c->end && *c->p != '"') {
        unsigned char b = *c->p;
        if (b < 0x20)
            return false;
        if (b == '\\') {
            if (++c->p >= c->end)
                return false;
            b = *c->p++;
            if (b == 'u') {
                int v = jc_hex4(c);
                if (v < 0 || (v >= 0xDC00 && v <= 0xDFFF))
                    return false;
                if (v >= 0xD800 && v <= 0xDBFF) { /* a high surrogate needs its low one */
                    if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
                        return false;
                    c->p += 2;
                    int w = jc_hex4(c);
                    if (w < 0xDC00 || w > 0xDFFF)
                        return false;
                }
            } else if (!strchr("\"\\/bfnrt", b) || !b) {
                return false;
            }
        } else if (b >= 0x80) {
            if (!jc_utf8(c))
                return false;
        } else {
            c->p++;
        }
    }
    if (c->p >= c->end)
        return false;
    if (text) {
        *text = start;
        *len = (size_t)(c->p - start);
    }
    c->p++;
    return true;
}

static bool jc_digits(struct jcheck *c)
{
    const unsigned char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s;
}

static bool jc_number(struct jcheck *c)
{
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (!(c->p < c->end && *c->p >= '1' && *c->p <= '9') || !jc_digits(c))
        return false;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!jc_digits(c))
            return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!jc_digits(c))
            return false;
    }
    return true;
}

static bool jc_literal(struct jcheck *c, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n))
        return false;
    c->p += n;
    return true;
}

/* role: 0 any value, 1 the top level, 2 the envelope's body. */
static bool jc_value(struct jcheck *c, int role);

static bool jc_key_is(const unsigned char *k, size_t len, const char *name)
{
    return len == strlen(name) && !memcmp(k, name, len);
}

static bool jc_object(struct jcheck *c, int role)
{
    c->p++; /* '{' */
    jc_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return true;
    }
    for (;;) {
        const unsigned char *k;
        size_t klen;
        jc_ws(c);
        if (!jc_string(c, &k, &klen))
            return false;
        jc_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return false;
        c->p++;
        jc_ws(c);
        unsigned char first = c->p < c->end ? *c->p : 0;
        int sub = role == 1 && jc_key_is(k, klen, "body") ? 2 : 0;
        if (role == 1 && jc_key_is(k, klen, "src"))
            c->src |= first == '"';
        if (role == 1 && jc_key_is(k, klen, "dest"))
            c->dest |= first == '"';
        if (role == 1 && sub == 2)
            c->body |= first == '{';
        if (role == 2 && jc_key_is(k, klen, "type"))
            c->type |= first == '"';
        if (!jc_value(c, sub))
            return false;
        jc_ws(c);
        if (c->p >= c->end)
            return false;
        if (*c->p == '}') {
            c->p++;
            return true;
        }
        if (*c->p++ != ',')
            return false;
    }
}

static bool jc_array(struct jcheck *c)
{
    c->p++; /* '[' */
    jc_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return true;
    }
    for (;;) {
        jc_ws(c);
        if (!jc_value(c, 0))
            return false;
        jc_ws(c);
        if (c->p >= c->end)
            return false;
        if (*c->p == ']') {
            c->p++;
            return true;
        }
        if (*c->p++ != ',')
            return false;
    }
}

static bool jc_value(struct jcheck *c, int role)
{
    bool ok;
    if (c->p >= c->end)
        return false;
    switch (*c->p) {
    case '{':
    case '[':
        if (++c->depth > 64)
            return false;
        ok = *c->p == '{' ? jc_object(c, role) : jc_array(c);
        c->depth--;
        return ok;
    case '"': return jc_string(c, NULL, NULL);
    case 't': return jc_literal(c, "true");
    case 'f': return jc_literal(c, "false");
    case 'n': return jc_literal(c, "null");
    default: return jc_number(c);
    }
}

/* Whether [s, s + len) is one RFC 8259 object, and an envelope (*envelope:
 * src and dest strings, body an object with a string type). */
static bool json_strict_object(const char *s, size_t len, bool *envelope)
{
    struct jcheck c = {(const unsigned char *)s, (const unsigned char *)s + len, 0,
                       false, false, false, false};
    jc_ws(&c);
    if (c.p >= c.end || *c.p != '{' || !jc_value(&c, 1))
        return false;
    jc_ws(&c);
    *envelope = c.src && c.dest && c.body && c.type;
    return c.p == c.end;
}

#endif
