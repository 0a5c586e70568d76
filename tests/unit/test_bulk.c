/* test_bulk.c - the loop's large-string path builds the same tree as cJSON.
 *
 * src/node/bulk.c hands cJSON a skeleton of a long line and points the long
 * strings back into the line. The claim is that this never changes what a
 * request means. The property test generates random JSON documents with
 * strings around the size threshold (plain and escaped, as values and as
 * keys), then truncated and mutated versions of them, and checks that both
 * ways of parsing agree: both refuse, or both give trees that print
 * identically.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "node_internal.h"

static unsigned long bulk_lines, bulk_strings;

static size_t pick_len(void)
{
    static const size_t lens[] = {0, 1, 7, 100, BULK_MIN - 1, BULK_MIN, BULK_MIN + 1, 5000};
    return lens[test_rand() % (sizeof(lens) / sizeof(lens[0]))];
}

/* A JSON string token about `len` characters long. */
static void gen_string(struct buf *o)
{
    size_t len = pick_len();
    int style = (int)(test_rand() % 4); /* 0-1 plain, 2 escapes, 3 multi-byte */
    buf_append_char(o, '"');
    for (size_t i = 0; i < len; i++) {
        uint64_t r = test_rand();
        if (style == 2 && r % 50 == 0) {
            static const char *const esc[] = {"\\n", "\\\"", "\\\\", "\\/", "\\u00e9",
                                              "\\ud83d\\udd10"};
            buf_append_str(o, esc[(r >> 8) % 6]);
        } else if (style == 3 && r % 20 == 0) {
            buf_append_str(o, (r >> 8) % 2 ? "\xc3\xa9" : "\xf0\x9f\x94\x90");
        } else {
            char c = (char)(' ' + (r >> 16) % 95);
            buf_append_char(o, c == '"' || c == '\\' ? 'x' : c);
        }
    }
    buf_append_char(o, '"');
}

static void gen_value(struct buf *o, int depth)
{
    int kind = (int)(test_rand() % (depth < 3 ? 6 : 4));
    switch (kind) {
    case 0:
        gen_string(o);
        break;
    case 1:
        buf_append_ll(o, (long long)(test_rand() % 2000000) - 1000000);
        break;
    case 2:
        buf_append_str(o, test_rand() % 2 ? "true" : "null");
        break;
    case 3:
        gen_string(o);
        break;
    case 4: { /* object */
        int n = (int)(test_rand() % 4);
        buf_append_str(o, "{ ");
        for (int i = 0; i < n; i++) {
            if (i)
                buf_append_str(o, " ,");
            gen_string(o);
            buf_append_str(o, " : ");
            gen_value(o, depth + 1);
        }
        buf_append_char(o, '}');
        break;
    }
    default: { /* array */
        int n = (int)(test_rand() % 4);
        buf_append_char(o, '[');
        for (int i = 0; i < n; i++) {
            if (i)
                buf_append_char(o, ',');
            gen_value(o, depth + 1);
        }
        buf_append_char(o, ']');
        break;
    }
    }
}

/* Parses text as the loop does, through a mutable copy. *marks is the
 * number of bulk markers inside the value cJSON parsed (the rest, in text
 * after it, stand for nothing in the tree). */
static cJSON *parse_bulk(struct bulk *b, const char *text, size_t len, struct buf *copy,
                         bool *used, size_t *marks)
{
    buf_reset(copy);
    buf_append(copy, text, len);
    *marks = 0;
    *used = bulk_extract(b, copy->data, len);
    if (!*used)
        return cJSON_ParseWithLength(copy->data, len);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(b->skeleton.data, b->skeleton.len, &end, false);
    for (const char *p = b->skeleton.data; root && p < end; p++)
        *marks += *p == '\xFF';
    bulk_resolve(b, root);
    return root;
}

/* Whether bulk_string_len gives every string of the tree its strlen. */
static bool lengths_known(const cJSON *it)
{
    for (; it; it = it->next)
        if ((cJSON_IsString(it) && bulk_string_len(it) != strlen(it->valuestring)) ||
            !lengths_known(it->child))
            return false;
    return true;
}

/* How many keys and strings of the tree point into [lo, hi): bulk strings
 * are used where they lie in the line, not copied. */
static size_t in_line(const cJSON *it, const char *lo, const char *hi)
{
    size_t n = 0;
    for (; it; it = it->next) {
        n += it->string && it->string >= lo && it->string < hi;
        n += cJSON_IsString(it) && it->valuestring >= lo && it->valuestring < hi;
        n += in_line(it->child, lo, hi);
    }
    return n;
}

static void check_same(struct bulk *b, const char *text, size_t len, struct buf *copy)
{
    bool used;
    size_t marks;
    cJSON *want = cJSON_ParseWithLength(text, len);
    cJSON *got = parse_bulk(b, text, len, copy, &used, &marks);
    CHECK(!want == !got);
    if (want && got) {
        /* Printing shows every type, key, value and order. (cJSON_Compare
         * cannot serve: it matches duplicate keys to the first one.) */
        char *pw = cJSON_PrintUnformatted(want), *pg = cJSON_PrintUnformatted(got);
        CHECK(pw && pg && !strcmp(pw, pg));
        cJSON_free(pw);
        cJSON_free(pg);
        bulk_use(b->slices, b->n);
        CHECK(lengths_known(got));
        bulk_use(NULL, 0);
        if (used) {
            CHECK(in_line(got, copy->data, copy->data + len) == marks);
            /* No backslash may hide behind escapes == false (true is allowed
             * when the scan stopped early, e.g. in ignored trailing text). */
            CHECK(b->escapes || !memchr(text, '\\', len));
            bulk_lines++;
            bulk_strings += b->n;
        }
    }
    cJSON_Delete(want);
    cJSON_Delete(got); /* resolved strings are flagged as not cJSON's own */
    bulk_reset(b);
}

static void test_property(void)
{
    struct bulk b = {0};
    struct buf doc = {0}, copy = {0}, cut = {0};
    for (int round = 0; round < 3000; round++) {
        buf_reset(&doc);
        gen_value(&doc, 0);
        CHECK(buf_ok(&doc));
        check_same(&b, doc.data, doc.len, &copy);
        /* A truncation anywhere, and a byte turned into a quote or a
         * backslash (ASCII, so the line stays valid UTF-8). */
        check_same(&b, doc.data, (size_t)(test_rand() % (doc.len + 1)), &copy);
        buf_reset(&cut);
        buf_append(&cut, doc.data, doc.len);
        if (cut.len) {
            size_t at = (size_t)(test_rand() % cut.len);
            if (!(cut.data[at] & 0x80))
                cut.data[at] = test_rand() % 2 ? '"' : '\\';
            check_same(&b, cut.data, cut.len, &copy);
        }
    }
    /* The test is only worth something if the bulk path ran often. */
    CHECK(bulk_lines > 500 && bulk_strings > bulk_lines);
    printf("bulk path taken on %lu parsed lines (%lu long strings)\n", bulk_lines,
           bulk_strings);
    bulk_free(&b);
    buf_free(&doc);
    buf_free(&copy);
    buf_free(&cut);
}

/* Fixed cases: a long key, a long string holding an escaped quote right at
 * the threshold, and text outside strings that looks like a string. */
static void test_cases(void)
{
    struct bulk b = {0};
    struct buf doc = {0}, copy = {0};
    char *big = malloc(3000);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, 'k', 2999);
    big[2999] = '\0';

    buf_append_str(&doc, "{\"");
    buf_append_str(&doc, big);
    buf_append_str(&doc, "\":\"");
    buf_append_str(&doc, big);
    buf_append_str(&doc, "\",\"e\":\"");
    buf_append_str(&doc, big + 2000); /* 999 bytes, then an escape: 1001 in the line */
    buf_append_str(&doc, "\\\"x\"}");
    check_same(&b, doc.data, doc.len, &copy);

    bool used;
    size_t marks;
    cJSON *root = parse_bulk(&b, doc.data, doc.len, &copy, &used, &marks);
    CHECK(used && b.n == 2 && marks == 2);
    CHECK(root && root->child && !strcmp(root->child->string, big) &&
          !strcmp(root->child->valuestring, big));
    cJSON_Delete(root);
    bulk_reset(&b);

    /* A long string after the object (text cJSON ignores, which the loop
     * refuses): extracted, but nothing in the tree points at it. */
    buf_reset(&doc);
    buf_append_str(&doc, "{\"k\":1} \"");
    buf_append_str(&doc, big);
    buf_append_str(&doc, "\"");
    check_same(&b, doc.data, doc.len, &copy);
    root = parse_bulk(&b, doc.data, doc.len, &copy, &used, &marks);
    CHECK(used && b.n == 1 && marks == 0);
    cJSON_Delete(root);
    bulk_reset(&b);

    /* Not JSON at all, but long: both refuse. */
    buf_reset(&doc);
    buf_append_str(&doc, "nope \"");
    buf_append_str(&doc, big);
    buf_append_str(&doc, "\"");
    check_same(&b, doc.data, doc.len, &copy);
    /* An unterminated long string. */
    check_same(&b, doc.data, doc.len - 1, &copy);

    free(big);
    bulk_free(&b);
    buf_free(&doc);
    buf_free(&copy);
}

int main(void)
{
    test_seed();
    test_cases();
    test_property();
    return check_finish("test_bulk");
}
