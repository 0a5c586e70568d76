/* fuzz_bulk.c - parse.c's parse_line, with its long-string path (bulk.c),
 * against cJSON alone.
 *
 * Each line goes through the real parse_line, as the reader runs it (its
 * checks, bulk_extract, cJSON on the skeleton, bulk_resolve; salvage_line
 * when cJSON refuses), and a copy through cJSON directly. Properties:
 *   1. Both refuse, or both give trees that print identically (every type,
 *      key, value and order; cJSON_Compare would match repeated keys to the
 *      first one).
 *   2. parse_line's `trailing` says whether text follows the value, and,
 *      for lines without such text, `escaped_nul` whether a string holds a
 *      \u0000 escape (parse_line skips that search when bulk saw no
 *      backslash), both as read here from the untouched copy.
 *   3. Every long string parse_line kept (p->slices) that the tree uses
 *      points into the line, all of them when nothing trails the value; and
 *      bulk_string_len gives every string of the tree its strlen.
 *   4. For lines without such text, `bad_u_escape` flags a \u escape
 *      without its four hex digits (RFC 8259 §7), which cJSON 1.7.15 decodes
 *      to U+0000, silently cutting its C string short: with escaped_nul, the
 *      flags name the first bad escape and are raised exactly when the line
 *      holds one (tests/fuzz/corpus/fuzz_bulk/regress-bad-u-escape).
 *   5. `raw_control` and `control_between` point at a byte below 0x20, and
 *      a line cJSON parses, with nothing after its value, holds none but
 *      tab, CR and LF when neither is set (RFC 8259 §2 white space; cJSON
 *      skips any byte up to 0x20). (A line that is not JSON may hide one
 *      behind a backslash outside any string, and so may one with a bad \u
 *      escape, whose six bytes cJSON skips, backslash after it included:
 *      regress-control-behind-bad-u; both are refused anyway. The escape
 *      check names only the first bad escape, so a \u0000 before the bad
 *      \u hides it: regress-control-behind-bad-u-after-nul, refused for
 *      the \u0000.)
 * Nothing is read or written outside the line (a heap block of exactly its
 * size); the trees use cJSON's default allocator (malloc), not the loop's
 * arena, so that AddressSanitizer sees each node and string on its own, and
 * cJSON_Delete of a resolved tree must free only what cJSON owns
 * (LeakSanitizer and AddressSanitizer check both).
 *
 * Long strings: bulk only acts on strings of BULK_MIN (1024) bytes or more,
 * which mutation seldom builds. So the input is a template: each byte 0x01
 * stands for BULK_MIN - 1 'a's and each 0x02 for 511 "é" (1022 bytes), at
 * most MAX_EXPANSIONS of them; "\x01b" is a string of exactly BULK_MIN bytes.
 * (A real line of that length in the corpus works as well.)
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "node_internal.h"

#define MAX_EXPANSIONS 16

static struct reader_state rs; /* reused from line to line, as the reader does */
static struct arena arena;     /* for what parse_line takes from arena_now */
static struct buf line_buf;

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The \u escapes inside the string tokens of [s, end) (text that cJSON
 * parsed, so tokens are where a JSON reader finds them): *nul when one is
 * \u0000, *bad when one lacks its four hex digits. */
static void scan_u_escapes(const char *s, const char *end, bool *nul, bool *bad)
{
    bool in_string = false;
    *nul = *bad = false;
    for (const char *p = s; p < end; p++) {
        if (!in_string) {
            in_string = *p == '"';
        } else if (*p == '"') {
            in_string = false;
        } else if (*p == '\\' && ++p < end && *p == 'u') {
            int digits = 0;
            while (digits < 4 && p + 1 + digits < end && is_hex(p[1 + digits]))
                digits++;
            if (digits < 4)
                *bad = true;
            else if (!memcmp(p + 1, "0000", 4))
                *nul = true;
        }
    }
}

static bool trailing_text(const char *end, const char *text_end)
{
    for (; end < text_end; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
            return true;
    return false;
}

static bool lengths_known(const cJSON *it)
{
    for (; it; it = it->next)
        if ((cJSON_IsString(it) && bulk_string_len(it) != strlen(it->valuestring)) ||
            !lengths_known(it->child))
            return false;
    return true;
}

/* Keys and strings of the tree that point into [lo, hi). */
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

/* The template expanded into line_buf; false when it holds too many
 * expansions. */
static bool expand(const uint8_t *data, size_t size)
{
    static const char E_ACUTE[] = "\xc3\xa9";
    int expansions = 0;
    buf_reset(&line_buf);
    for (size_t i = 0; i < size; i++) {
        if ((data[i] == 1 || data[i] == 2) && ++expansions > MAX_EXPANSIONS)
            return false;
        if (data[i] == 1) {
            for (size_t k = 0; k < BULK_MIN - 1; k++)
                buf_append_char(&line_buf, 'a');
        } else if (data[i] == 2) {
            for (size_t k = 0; k < (BULK_MIN - 2) / 2; k++)
                buf_append(&line_buf, E_ACUTE, 2);
        } else {
            buf_append_char(&line_buf, (char)data[i]);
        }
    }
    FUZZ_CHECK(buf_ok(&line_buf));
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!expand(data, size))
        return 0;
    size_t len = line_buf.len;
    char *direct = fuzz_dup(line_buf.data, len), *line = fuzz_dup(line_buf.data, len);
    const char *want_end = NULL;
    cJSON *want = cJSON_ParseWithLengthOpts(direct, len, &want_end, false);

    arena_now = &arena;
    struct parsed p;
    parse_line(&rs, line, len, &p);
    FUZZ_CHECK(p.line == line && p.len == len);
    FUZZ_CHECK(!p.root == (p.salvaged != NULL)); /* salvage runs when cJSON refuses */

    FUZZ_CHECK(!want == !p.root); /* 1 */
    /* 5: a control byte flagged is one; none flagged, none but tab and CR */
    FUZZ_CHECK(!(p.raw_control && p.control_between));
    if (p.raw_control || p.control_between)
        FUZZ_CHECK(p.control_at < len && (unsigned char)direct[p.control_at] < 0x20);
    else if (p.utf8_ok && !p.raw_nul && want && !trailing_text(want_end, direct + len) &&
             !p.bad_u_escape && !p.escaped_nul)
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK((unsigned char)direct[i] >= 0x20 || direct[i] == '\t' ||
                       direct[i] == '\r' || direct[i] == '\n');
    if (want && p.root) {
        char *pw = cJSON_PrintUnformatted(want), *pg = cJSON_PrintUnformatted(p.root);
        FUZZ_CHECK(pw && pg && !strcmp(pw, pg));
        cJSON_free(pw);
        cJSON_free(pg);

        bool trailing = trailing_text(want_end, direct + len), nul, bad;
        FUZZ_CHECK(p.trailing == trailing); /* 2 */
        scan_u_escapes(direct, want_end, &nul, &bad);
        if (!trailing) { /* 2, 4 */
            FUZZ_CHECK(!(p.escaped_nul && p.bad_u_escape));
            FUZZ_CHECK(p.escaped_nul ? nul : p.bad_u_escape ? bad : !nul && !bad);
            if (p.escaped_nul || p.bad_u_escape)
                FUZZ_CHECK(p.escape_at < len && direct[p.escape_at] == '\\' &&
                           direct[p.escape_at + 1] == 'u');
        }

        size_t used = in_line(p.root, line, line + len); /* 3 */
        FUZZ_CHECK(trailing ? used <= p.n_slices : used == p.n_slices);
        bulk_use(p.slices, p.n_slices);
        FUZZ_CHECK(lengths_known(p.root));
        bulk_use(NULL, 0);
    }
    cJSON_Delete(want);
    cJSON_Delete(p.root);
    arena_reset(&arena, 1 << 20);
    free(direct);
    free(line);
    return 0;
}
