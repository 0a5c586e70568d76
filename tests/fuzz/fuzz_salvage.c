/* fuzz_salvage.c - salvage_line (src/node/salvage.c) on any line.
 *
 * Properties:
 *   1. It reads nothing outside the line (a heap block of exactly its size)
 *      and writes nothing outside struct salvaged and the src_cap + 1 bytes
 *      of src it was given (one heap block of exactly that size); it ends
 *      (libFuzzer's -timeout catches a loop that does not).
 *   2. What it reports is well formed: src is src_len bytes, NUL-terminated,
 *      at most src_cap, UTF-8 text without NUL; dest likewise within its
 *      array; msg_id within ±NODE_MAX_SAFE_INT.
 *   3. src_cap bounds src only: with a tiny cap, a line whose src fits it
 *      (or has none) gives the same src, dest, msg_id and in_reply_to, and
 *      no src longer than the cap is ever reported.
 *   4. Differential against cJSON: when cJSON parses the line as an object,
 *      salvage finds what the tree holds (see expect): the top-level "src"
 *      when it is a string of valid UTF-8 (with the same bytes), likewise
 *      "dest" (up to 255 bytes), and from the first "body" object its
 *      "msg_id" when that is a number holding an integer within
 *      ±(2^53 - 1), and whether it has "in_reply_to". (Repeated keys: the
 *      first usable src and dest, as salvage.c says.)
 *      The comparison is made only for lines that are JSON as RFC 8259
 *      defines it where salvage follows the RFC and cJSON does not (see
 *      rfc_comparable): no NUL (raw or \u0000, which cJSON's C strings cut
 *      short), no \u escape without its four hex digits (cJSON 1.7.15
 *      reads one as U+0000; salvage refuses it as JSON does), no control
 *      byte inside strings (salvage refuses such text),
 *      no control byte other than JSON's white space between tokens (cJSON
 *      skips every byte up to 0x20 there), and msg_id written as an integer
 *      (salvage reads -?digits; cJSON also takes 1.0, 1e2 and -.0).
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "node_internal.h"
#include "securitor/codec.h"

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The four characters after a \u in [p, end) are hex digits, not 0000. */
static bool u_escape_ok(const char *p, const char *end)
{
    if (end - p < 4 || !is_hex(p[0]) || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]))
        return false;
    return memcmp(p, "0000", 4) != 0;
}

/* Walks the tokens of [line, end) (a prefix cJSON parsed) and says whether
 * the comparison is fair: see the header. */
static bool rfc_comparable(const char *line, const char *end)
{
    bool in_string = false;
    for (const char *p = line; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (in_string) {
            if (c < 0x20)
                return false;
            if (c == '\\') {
                if (end - p >= 2 && p[1] == 'u' && !u_escape_ok(p + 2, end))
                    return false;
                p++;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c < 0x20 && c != '\t' && c != '\r' && c != '\n')
            return false;
        else if (c == '.' || ((c == 'e' || c == 'E') && p > line && p[-1] >= '0' && p[-1] <= '9'))
            return false; /* a number with a fraction or an exponent */
    }
    return true;
}

static bool exact_int(const cJSON *item, long long *v)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= -(double)NODE_MAX_SAFE_INT && d <= (double)NODE_MAX_SAFE_INT) ||
        d != (double)(long long)d)
        return false;
    *v = (long long)d;
    return true;
}

/* A string salvage can name in a reply: valid UTF-8 without NUL (a
 * \u0000 is excluded beforehand), at most max bytes. */
static bool usable(const cJSON *item, size_t max)
{
    size_t n = strlen(item->valuestring);
    return n <= max && utf8_text_valid((const uint8_t *)item->valuestring, n);
}

/* What salvage_line should find in a line cJSON parsed into root, read off
 * the tree (whose members keep the line's order, repeats included), by the
 * rules salvage.c states: the first usable string of each "src" and "dest"
 * key; the first "body" that is an object, and in it msg_id when its first
 * "msg_id" member is an exact integer (msg_id_known: whether the first one
 * says anything), and in_reply_to anywhere. */
struct expected {
    bool has_src, has_dest, has_msg_id, msg_id_known, is_reply;
    const char *src, *dest;
    long long msg_id;
};

static void expect(const cJSON *root, size_t cap, struct expected *e)
{
    bool body_seen = false;
    *e = (struct expected){0};
    for (const cJSON *it = root->child; it; it = it->next) {
        bool is_src = !strcmp(it->string, "src") && !e->has_src;
        bool is_dest = !strcmp(it->string, "dest") && !e->has_dest;
        if (is_src || is_dest) {
            /* One that is not a string is skipped (it stopped salvage
             * once: corpus/fuzz_salvage/regress-dest-not-string). */
            if (!cJSON_IsString(it))
                continue;
            if (is_src && usable(it, cap))
                e->has_src = true, e->src = it->valuestring;
            else if (is_dest && usable(it, 255))
                e->has_dest = true, e->dest = it->valuestring;
        } else if (!strcmp(it->string, "body") && !body_seen && cJSON_IsObject(it)) {
            body_seen = true;
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "msg_id");
            e->msg_id_known = !id || exact_int(id, &e->msg_id);
            e->has_msg_id = id && e->msg_id_known;
            e->is_reply = cJSON_GetObjectItemCaseSensitive(it, "in_reply_to") != NULL;
        }
    }
}

static struct salvaged *salvage(const char *line, size_t len, size_t cap)
{
    struct salvaged *s = fuzz_alloc(sizeof(*s) + cap + 1);
    salvage_line(line, len, s, cap);
    /* 2 */
    /* Without has_src (has_dest) the array may hold the first bytes of a
     * string that was cut short, unterminated: callers look at has_* only. */
    if (s->has_src) {
        FUZZ_CHECK(s->src_len <= cap && s->src[s->src_len] == '\0');
        FUZZ_CHECK(utf8_text_valid((const uint8_t *)s->src, s->src_len));
    } else {
        FUZZ_CHECK(s->src_len == 0);
    }
    if (s->has_dest) {
        FUZZ_CHECK(memchr(s->dest, '\0', sizeof(s->dest)) != NULL);
        FUZZ_CHECK(utf8_text_valid((const uint8_t *)s->dest, strlen(s->dest)));
    }
    if (s->has_msg_id)
        FUZZ_CHECK(s->msg_id >= -NODE_MAX_SAFE_INT && s->msg_id <= NODE_MAX_SAFE_INT);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    size_t cap = size < SALVAGE_SRC_MAX ? size : SALVAGE_SRC_MAX;
    struct salvaged *s = salvage(line, size, cap);

    /* 3: when src fits in the tiny cap too (or there is none), the cap
     * changes nothing. (When it does not fit, salvage goes on to a repeated
     * "src" key.) */
    enum { TINY = 3 };
    struct salvaged *t = salvage(line, size, TINY);
    if (!s->has_src || s->src_len <= TINY) {
        FUZZ_CHECK(t->has_src == s->has_src &&
                   (!s->has_src || (t->src_len == s->src_len && !strcmp(t->src, s->src))));
        FUZZ_CHECK(t->has_dest == s->has_dest && (!s->has_dest || !strcmp(t->dest, s->dest)));
        FUZZ_CHECK(t->has_msg_id == s->has_msg_id && (!s->has_msg_id || t->msg_id == s->msg_id));
        FUZZ_CHECK(t->is_reply == s->is_reply);
    } else {
        FUZZ_CHECK(!t->has_src || t->src_len <= TINY);
    }
    free(t);

    /* 4 */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, size, &end, false);
    if (cJSON_IsObject(root) && end && rfc_comparable(line, end) && !memchr(line, '\0', size)) {
        struct expected e;
        expect(root, cap, &e);
        FUZZ_CHECK(s->has_src == e.has_src);
        if (e.has_src)
            FUZZ_CHECK(s->src_len == strlen(e.src) && !strcmp(s->src, e.src));
        FUZZ_CHECK(s->has_dest == e.has_dest && (!e.has_dest || !strcmp(s->dest, e.dest)));
        if (e.msg_id_known)
            FUZZ_CHECK(s->has_msg_id == e.has_msg_id && (!e.has_msg_id || s->msg_id == e.msg_id));
        FUZZ_CHECK(s->is_reply == e.is_reply);
    }
    cJSON_Delete(root);
    free(s);
    return 0;
}
