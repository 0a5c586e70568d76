/* salvage.c - src and msg_id from a line that cannot be parsed.
 *
 * PROTOCOL.md §1: a line that is not JSON still gets error 12 when its src
 * can be read. cJSON gives nothing back for a line it refuses (a lone
 * surrogate escape, nesting deeper than its limit, a line cut short, text
 * after the object), so this scanner walks the line on its own: the
 * top-level object's members in order, taking "src" and "dest" (strings)
 * and from "body" its "msg_id" (an integer JSON carries exactly) and whether
 * it has "in_reply_to", and skipping every other value. It never recurses (nesting is a counter) and stops at the
 * first thing it cannot read, keeping what it found before.
 */
#include "node_internal.h"

#include "securitor/codec.h"

struct cursor {
    const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
        c->p++;
}

static bool take(struct cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Reads the string token at c (just past its opening quote). With out, the
 * first cap decoded bytes go there, *out_len is the decoded length, and
 * *whole says whether they are all of it and a reply can name them: valid
 * UTF-8 without NUL, control characters or lone surrogates. Returns false
 * for a string that is cut short or badly escaped. */
static bool read_string(struct cursor *c, char *out, size_t cap, size_t *out_len, bool *whole)
{
    size_t n = 0;
    bool ok = true;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"') {
            if (out_len)
                *out_len = n;
            if (whole)
                *whole = ok && n <= cap && utf8_text_valid((const uint8_t *)out, n);
            return true;
        }
        if (ch < 0x20)
            ok = false;
        if (ch != '\\') {
            if (out && n < cap)
                out[n] = (char)ch;
            n++;
            continue;
        }
        if (c->p >= c->end)
            return false;
        char e = *c->p++;
        uint32_t cp;
        switch (e) {
        case '"': case '\\': case '/': cp = (uint32_t)e; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            int v = c->end - c->p >= 4 ? hex4(c->p) : -1;
            if (v < 0)
                return false;
            c->p += 4;
            cp = (uint32_t)v;
            if (cp >= 0xD800 && cp <= 0xDBFF && c->end - c->p >= 6 && c->p[0] == '\\' &&
                c->p[1] == 'u' && (v = hex4(c->p + 2)) >= 0xDC00 && v <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)v - 0xDC00);
                c->p += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                ok = false; /* a lone surrogate: no UTF-8 carries it */
            }
            break;
        }
        default:
            return false;
        }
        /* Encode cp as UTF-8. */
        char u[4];
        size_t k;
        if (cp < 0x80) {
            u[0] = (char)cp;
            k = 1;
        } else if (cp < 0x800) {
            u[0] = (char)(0xC0 | cp >> 6);
            u[1] = (char)(0x80 | (cp & 0x3F));
            k = 2;
        } else if (cp < 0x10000) {
            u[0] = (char)(0xE0 | cp >> 12);
            u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
            u[2] = (char)(0x80 | (cp & 0x3F));
            k = 3;
        } else {
            u[0] = (char)(0xF0 | cp >> 18);
            u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
            u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
            u[3] = (char)(0x80 | (cp & 0x3F));
            k = 4;
        }
        for (size_t i = 0; i < k; i++, n++)
            if (out && n < cap)
                out[n] = u[i];
    }
    return false;
}

/* Skips one value of any kind. Nested objects and arrays are skipped by
 * counting brackets (strings inside them read as strings), so depth costs
 * nothing. Returns false when the value is cut short or malformed. */
static bool skip_value(struct cursor *c)
{
    size_t depth = 0;
    skip_ws(c);
    do {
        if (c->p >= c->end)
            return false;
        char ch = *c->p;
        if (ch == '"') {
            c->p++;
            if (!read_string(c, NULL, 0, NULL, NULL))
                return false;
        } else if (ch == '{' || ch == '[') {
            c->p++;
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (!depth)
                return false;
            c->p++;
            depth--;
        } else if (ch == ',' || ch == ':' || ch == ' ' || ch == '\t' || ch == '\r' ||
                   ch == '\n') {
            if (!depth)
                return false;
            c->p++;
        } else { /* a number or a literal: up to the next delimiter */
            const char *start = c->p;
            while (c->p < c->end && !strchr(",:{}[]\" \t\r\n", *c->p))
                c->p++;
            if (c->p == start)
                return false;
        }
    } while (depth);
    return true;
}

/* An integer token that JSON carries exactly: -?digits, at most
 * NODE_MAX_SAFE_INT in magnitude. */
static bool read_int(struct cursor *c, long long *v)
{
    skip_ws(c);
    bool neg = c->p < c->end && *c->p == '-';
    if (neg)
        c->p++;
    unsigned long long x = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        x = x * 10 + (unsigned long long)(*c->p++ - '0');
        if (x > (unsigned long long)NODE_MAX_SAFE_INT)
            return false;
    }
    if (c->p == start || (c->p < c->end && strchr(".eE", *c->p)))
        return false;
    *v = neg ? -(long long)x : (long long)x;
    return true;
}

/* Reads a member's key (just past its quote) and the ':' after it; keeps its
 * first bytes in key for comparing with short names. */
#define KEY_KEEP 16 /* longer than every name we look for */

static bool read_key(struct cursor *c, char key[static KEY_KEEP], size_t *n)
{
    return read_string(c, key, KEY_KEEP, n, NULL) && take(c, ':');
}

static bool key_eq(const char *key, size_t n, const char *name)
{
    return n <= KEY_KEEP && n == strlen(name) && !memcmp(key, name, n);
}

/* Finds msg_id and in_reply_to in the body object at c (just past its '{'). */
static void scan_body(struct cursor *c, struct salvaged *out)
{
    char key[KEY_KEEP];
    size_t n;
    if (take(c, '}'))
        return;
    while (take(c, '"') && read_key(c, key, &n)) {
        if (key_eq(key, n, "msg_id") && !out->has_msg_id) {
            struct cursor at = *c;
            out->has_msg_id = read_int(&at, &out->msg_id);
        } else if (key_eq(key, n, "in_reply_to")) {
            out->is_reply = true;
        }
        if (!skip_value(c) || !take(c, ','))
            return;
    }
}

void salvage_line(const char *line, size_t len, struct salvaged *out, size_t src_cap)
{
    struct cursor c = {line, line + len};
    bool body_seen = false;
    char key[KEY_KEEP];
    size_t n;
    out->has_src = out->has_dest = out->has_msg_id = out->is_reply = false;
    out->src_len = 0;
    out->src[0] = out->dest[0] = '\0';
    if (!take(&c, '{'))
        return;
    while (take(&c, '"') && read_key(&c, key, &n)) {
        skip_ws(&c);
        /* A src or dest that is not a string is skipped like any value. */
        bool quoted = c.p < c.end && *c.p == '"';
        bool is_src = quoted && key_eq(key, n, "src") && !out->has_src;
        bool is_dest = quoted && key_eq(key, n, "dest") && !out->has_dest;
        if (is_src || is_dest) {
            char *to = is_src ? out->src : out->dest;
            size_t cap = is_src ? src_cap : sizeof(out->dest) - 1;
            bool whole;
            if (!take(&c, '"') || !read_string(&c, to, cap, &n, &whole))
                return;
            if (whole) {
                to[n] = '\0';
                if (is_src) {
                    out->src_len = n;
                    out->has_src = true;
                } else {
                    out->has_dest = true;
                }
            } else {
                to[0] = '\0';
            }
        } else if (key_eq(key, n, "body") && !body_seen && c.p < c.end && *c.p == '{') {
            struct cursor inner = {c.p + 1, c.end};
            scan_body(&inner, out);
            body_seen = true;
            if (!skip_value(&c))
                return;
        } else if (!skip_value(&c)) {
            return;
        }
        if (!take(&c, ','))
            return;
    }
}
