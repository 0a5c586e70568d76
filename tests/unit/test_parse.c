/* test_parse.c - parse_line's checks (src/node/parse.c) on JSON that cJSON
 * reads but that would not mean what it says.
 *
 * Each case runs twice: as a short line (cJSON on the line) and with a
 * 2000-byte string in front (the long-string path, bulk.c), so that both
 * ways through parse_line flag it the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "node_internal.h"

enum want { OK, NOT_JSON, TRAILING, RAW_CONTROL, CONTROL_BETWEEN, ESCAPED_NUL, BAD_U };

static const char *const WANT_NAME[] = {"ok",          "not JSON",    "trailing",
                                        "raw control", "control between tokens",
                                        "escaped NUL", "bad \\u"};

/* What parse_line made of the line, as one of enum want. */
static enum want outcome(const struct parsed *p)
{
    if (!p->root)
        return NOT_JSON;
    if (p->trailing)
        return TRAILING;
    if (p->raw_control)
        return RAW_CONTROL;
    if (p->control_between)
        return CONTROL_BETWEEN;
    if (p->escaped_nul)
        return ESCAPED_NUL;
    if (p->bad_u_escape)
        return BAD_U;
    return OK;
}

static struct reader_state rs;
static struct arena arena;

/* Parses {"k":VALUE} (with a long string member first when `lng`) and
 * checks the outcome, and that the offsets point at the escape's backslash
 * or the control byte. */
static void check_value(const char *value, enum want want, bool lng)
{
    char *line = NULL;
    static char pad[2001];
    memset(pad, 'p', 2000);
    int n = asprintf(&line, "{%s%s%s\"k\":%s}", lng ? "\"long\":\"" : "", lng ? pad : "",
                     lng ? "\"," : "", value);
    CHECK(n > 0);
    if (n <= 0)
        return;
    char *copy = strdup(line);
    struct parsed p;
    arena_now = &arena;
    parse_line(&rs, line, (size_t)n, &p);
    enum want got = outcome(&p);
    if (got != want)
        printf("  %s (%s): got %s, want %s\n", value, lng ? "long" : "short", WANT_NAME[got],
               WANT_NAME[want]);
    CHECK(got == want);
    if (got == want && (want == BAD_U || want == ESCAPED_NUL)) {
        CHECK(p.escape_at < (size_t)n && copy[p.escape_at] == '\\' &&
              copy[p.escape_at + 1] == 'u');
        CHECK(p.escape_at >= (lng ? 2000u : 0u));
    }
    if (got == want && (want == RAW_CONTROL || want == CONTROL_BETWEEN))
        CHECK(p.control_at < (size_t)n && (unsigned char)copy[p.control_at] < 0x20);
    /* A long line that parses must really have taken the long-string path
     * (lines with control bytes do not). */
    CHECK(!lng || !p.root || p.raw_control || p.control_between || p.n_slices == 1);
    cJSON_Delete(p.root);
    arena_reset(&arena, 1 << 20);
    free(line);
    free(copy);
}

static void check_both(const char *value, enum want want)
{
    check_value(value, want, false);
    check_value(value, want, true);
}

static void test_u_escapes(void)
{
    /* The report: cJSON would cut this plaintext after "dawn". */
    check_both("\"attack at dawn\\u00zz, not dusk\"", BAD_U);
    check_both("\"\\u12 a\"", BAD_U);
    check_both("\"\\u0G00\"", BAD_U);
    check_both("\"\\uzzzz\"", BAD_U);
    check_both("\"\\u\\\"ab\"", BAD_U);      /* the four include an escaped quote */
    check_both("\"\\\\\\u00z0\"", BAD_U);    /* \\ then a real \u */
    check_both("[\"ok\",\"x\\u00e9y\\uD83D\\uDD10\\u00-1\"]", BAD_U);
    check_both("\"\\u0000\"", ESCAPED_NUL);
    check_both("\"a\\u0000b\"", ESCAPED_NUL);
    /* Not escapes: an escaped backslash followed by text. */
    check_both("\"\\\\u00zz\"", OK);
    check_both("\"\\\\\\\\u0000\"", OK);
    /* Good escapes, every kind of hex digit. */
    check_both("\"\\u00e9\\u00E9\\uD83D\\uDD10\\u0001\\uABCD\\uabcd\\u1234\"", OK);
    check_both("\"\\n\\t\\\"\\\\\\/\\b\\f\\r\"", OK);
    /* Shorter than four before the closing quote: cJSON itself refuses. */
    check_both("\"\\u12\"", NOT_JSON);
    check_both("\"\\u\"", NOT_JSON);
}

/* RFC 8259 §2: white space is space, tab, LF and CR; cJSON skips every
 * byte up to 0x20 between tokens. */
static void test_control_bytes(void)
{
    check_both("\x01 1", CONTROL_BETWEEN);
    check_both("1\x1f", CONTROL_BETWEEN);
    check_both("[1,\x0b" "2]", CONTROL_BETWEEN);
    check_both("{\x0c\"a\":1}", CONTROL_BETWEEN);
    check_both("[\"a\x1a\"]", RAW_CONTROL);
    check_both("\"a\tb\"", RAW_CONTROL);
    /* The first one decides. */
    check_both("[\x1a\"a\x01\"]", CONTROL_BETWEEN);
    check_both("[\"a\x01\",\x1a" "1]", RAW_CONTROL);
    /* JSON's own white space. */
    check_both("\t[\r1 ,\t2\r]\t", OK);
    check_both("\"\\\"\\u00e9\"\t", OK);
    /* After the value it is trailing text. */
    char line[] = "{\"k\":1}\x1a";
    struct parsed p;
    arena_now = &arena;
    parse_line(&rs, line, sizeof(line) - 1, &p);
    CHECK(p.root && p.trailing && p.control_between && p.control_at == 7);
    cJSON_Delete(p.root);
    arena_reset(&arena, 1 << 20);
}

/* Numbers: every form RFC 8259 §6 allows passes. (cJSON also reads 01, 1.
 * and -.5, which parse.c lets through: see its header.) */
static void test_numbers(void)
{
    check_both("[0,-0,1E+2,1e-2,1E2,0.5,-0.0e-0,123456789,1.5e+308,9007199254740991]", OK);
    check_both("[+1]", NOT_JSON);
    check_both("[.5]", NOT_JSON);
    check_both("[1e]", NOT_JSON);
    check_both("[0x10]", NOT_JSON);
}

int main(void)
{
    test_u_escapes();
    test_control_bytes();
    test_numbers();
    arena_release(&arena);
    bulk_free(&rs.bulk);
    return check_finish("test_parse");
}
