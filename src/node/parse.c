/* parse.c - the reader's half of a line: checks and parsing.
 *
 * Everything here runs on the reader thread, into the arena of the batch the
 * line belongs to. What the checks find is recorded in struct parsed for the
 * worker, which turns it into a reply (dispatch.c).
 *
 * cJSON is laxer than RFC 8259 in ways that change what a line says; those
 * are flagged here: \u0000 and a \u without four hex digits (both cut a
 * string short), control bytes in strings or between tokens. It also reads
 * numbers the RFC forbids (01, 1., -.5: strtod's forms), each as the value it
 * looks like; they are let through. Finding them takes a second tokenising
 * pass over every line: with memchr from string to string it cost 1,000
 * more instructions per 14-byte encrypt (+9%, callgrind), and even an SSE2
 * pass would cost about 1.5%, for no change in any value.
 */
#include "node_internal.h"

#include "securitor/codec.h"

enum escape_check { ESCAPES_OK, ESCAPED_NUL, BAD_U_ESCAPE };

static bool is_hex_digit(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* Looks at every \u escape of the raw line (a backslash-u that is not itself
 * escaped) for the two that cJSON 1.7.15 would silently misread:
 * \u0000 (its C strings stop at NUL) and a \u without four hex digits (it
 * decodes one as U+0000 too). Either would truncate the string, so the line
 * is refused instead (PROTOCOL.md §1); *at is where the escape starts. */
static enum escape_check check_escapes(const char *line, size_t len, size_t *at)
{
    const char *p = line, *end = line + len;
    /* memchr is much faster than memmem; backslashes are rare. */
    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        const char *run = p;
        while (p < end && *p == '\\')
            p++;
        /* An odd run of backslashes escapes what follows it. */
        if ((p - run) % 2 == 0 || p == end || *p != 'u')
            continue;
        *at = (size_t)(p - 1 - line);
        if (end - p < 5 || !is_hex_digit(p[1]) || !is_hex_digit(p[2]) ||
            !is_hex_digit(p[3]) || !is_hex_digit(p[4]))
            return BAD_U_ESCAPE;
        if (!memcmp(p, "u0000", 5))
            return ESCAPED_NUL;
    }
    return ESCAPES_OK;
}

/* Where the first byte below 0x20 that JSON forbids stands, or SIZE_MAX:
 * inside a string token none may (RFC 8259 §7), and between tokens only
 * tab, LF and CR are white space (§2), though cJSON would take them all.
 * *in_string says which. Only lines that hold such a byte get here. */
static size_t find_control(const char *line, size_t len, bool *in_string)
{
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (!in) {
            in = c == '"';
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                *in_string = false;
                return i;
            }
        } else if (c == '\\') {
            i++; /* the escaped character, whatever it is */
        } else if (c == '"') {
            in = false;
        } else if (c < 0x20) {
            *in_string = true;
            return i;
        }
    }
    return SIZE_MAX;
}

void parse_line(struct reader_state *rs, char *line, size_t len, struct parsed *p)
{
    struct bulk *b = &rs->bulk;
    struct arena *a = arena_now;
    *p = (struct parsed){.line = line, .len = len, .line_no = rs->line_no};
    /* Checked before parsing, which may change the line. Nearly every line
     * is printable UTF-8 (JSON encoders escape control characters), and one
     * pass says so. */
    bool clean = utf8_printable((const uint8_t *)line, len);
    p->utf8_ok = clean || utf8_valid((const uint8_t *)line, len);
    if (!clean && p->utf8_ok) {
        p->raw_nul = memchr(line, '\0', len) != NULL;
        bool in_string;
        size_t at = p->raw_nul ? SIZE_MAX : find_control(line, len, &in_string);
        if (at != SIZE_MAX) {
            p->raw_control = in_string;
            p->control_between = !in_string;
            p->control_at = at;
        }
    }
    const char *text = line, *end = NULL;
    size_t text_len = len;
    if (p->utf8_ok && !p->raw_nul && !p->raw_control && !p->control_between &&
        bulk_extract(b, line, len)) {
        text = b->skeleton.data;
        text_len = b->skeleton.len;
    }
    /* A line's tree may take NODE_PARSE_BUDGET beyond the line's length. */
    arena_limit(a, NODE_PARSE_BUDGET + len);
    p->root = cJSON_ParseWithLengthOpts(text, text_len, &end, false);
    p->over_budget = !p->root && a->over_budget;
    arena_limit(a, 0);
    if (!p->root) {
        p->error_at = text == line && end && end >= text ? (size_t)(end - text) : SIZE_MAX;
        size_t cap = len < SALVAGE_SRC_MAX ? len : SALVAGE_SRC_MAX;
        if ((p->salvaged = arena_alloc(sizeof(*p->salvaged) + cap + 1)) != NULL)
            salvage_line(line, len, p->salvaged, cap);
    }
    if (p->root && b->n) {
        bulk_resolve(b, p->root);
        /* Kept beside the tree: the next line reuses b. (Without them
         * bulk_string_len still answers, with strlen.) */
        struct bulk_slice *kept = arena_alloc(b->n * sizeof(*kept));
        if (kept) {
            memcpy(kept, b->slices, b->n * sizeof(*kept));
            p->slices = kept;
            p->n_slices = b->n;
        }
    }
    /* cJSON stops after the first value; anything but whitespace after it is
     * a second message or garbage, refused rather than ignored. */
    for (; p->root && end < text + text_len && !p->trailing; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
            p->trailing = true;
    /* Only a string with a backslash holds an escape, and the long-string
     * pass has already looked for backslashes. Parsing only replaced closing
     * quotes of strings without any, so the check below still holds. */
    if (p->root && (!b->n || b->escapes)) {
        enum escape_check e = check_escapes(line, len, &p->escape_at);
        p->escaped_nul = e == ESCAPED_NUL;
        p->bad_u_escape = e == BAD_U_ESCAPE;
    }
    bulk_reset(b);
}
