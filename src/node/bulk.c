/* bulk.c - large JSON strings without cJSON's byte-at-a-time copy.
 *
 * cJSON copies every string one byte at a time, twice over (a scan for the
 * end, then the copy). For a 1 MiB plaintext or a 2 MiB hex ciphertext that
 * is more than half of all the work the node does. The payloads that big are
 * nearly always plain runs without escapes, which need no decoding at all:
 * their bytes in the line are already the string's value.
 *
 * So before cJSON sees a long line, the loop looks for such strings (at least
 * BULK_MIN bytes, no backslash) and hands cJSON a skeleton of the line in which
 * each of them is replaced by a short marker: 0xFF followed by its index. A
 * valid UTF-8 line cannot hold the byte 0xFF, so no marker can be confused
 * with real text; the loop only takes this path for valid UTF-8 lines without
 * raw NUL bytes. After parsing, bulk_resolve points each marked string at its
 * bytes in the line itself, NUL-terminated where its closing quote was.
 *
 * The skeleton differs from the line only inside string tokens that are
 * replaced by other string tokens, so cJSON accepts the skeleton exactly when
 * it accepts the line, and builds the same tree.
 */
#include "bulk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/simd.h"
#include "securitor/wipe.h"

#define BULK_MARK '\xFF'

/* The long strings of the request being answered on this thread, for
 * bulk_string_len (see bulk_use). */
static _Thread_local const struct bulk_slice *in_use;
static _Thread_local size_t n_in_use;

/* The first '"' or '\\' in [s, end), or NULL. */
static const char *next_quote_or_backslash(const char *s, const char *end)
{
#if SECURITOR_SSE2
    /* 64 bytes a step while there is neither, then 16 to find which. */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
#define SPECIAL(v) _mm_or_si128(_mm_cmpeq_epi8((v), quote), _mm_cmpeq_epi8((v), bslash))
    for (; end - s >= 64; s += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(s + 48));
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(SPECIAL(a), SPECIAL(b)),
                                           _mm_or_si128(SPECIAL(c), SPECIAL(d)))))
            break;
    }
    for (; end - s >= 16; s += 16) {
        unsigned mask = (unsigned)_mm_movemask_epi8(
            SPECIAL(_mm_loadu_si128((const __m128i *)s)));
        if (mask)
            return s + __builtin_ctz(mask);
    }
#undef SPECIAL
#endif
    for (; s < end; s++)
        if (*s == '"' || *s == '\\')
            return s;
    return NULL;
}

/* Finds the end of the string token whose contents start at s: sets *close to
 * its closing quote and *escaped when it holds a backslash. Returns false for
 * a string that is not terminated before end. One pass, however many escapes
 * it holds. */
static bool string_end(const char *s, const char *end, const char **close, bool *escaped)
{
    *escaped = false;
    for (;;) {
        const char *p = next_quote_or_backslash(s, end);
        if (!p)
            return false;
        if (*p == '"') {
            *close = p;
            return true;
        }
        *escaped = true;
        s = p + 2; /* skip the escaped character (it may be a quote) */
        if (s > end)
            return false;
    }
}

static bool slices_push(struct bulk *b, char *s, size_t len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 8;
        struct bulk_slice *p = realloc(b->slices, cap * sizeof(*p));
        if (!p)
            return false;
        b->slices = p;
        b->cap = cap;
    }
    b->slices[b->n++] = (struct bulk_slice){s, len};
    return true;
}

bool bulk_extract(struct bulk *b, char *line, size_t len)
{
    const char *end = line + len, *copied = line;
    char *p = line;

    b->n = 0;
    b->escapes = true; /* until the whole line is seen */
    if (len < BULK_MIN)
        return false;
    buf_reset(&b->skeleton);
    bool escapes = false;
    for (;;) {
        char *open = memchr(p, '"', (size_t)(end - p)); /* outside strings here */
        const char *close;
        bool escaped;
        if (!open) {
            b->escapes = escapes;
            break;
        }
        if (!string_end(open + 1, end, &close, &escaped))
            break; /* the rest goes into the skeleton as it is */
        escapes |= escaped;
        size_t n = (size_t)(close - (open + 1));
        if (!escaped && n >= BULK_MIN) {
            char mark[24];
            int m = snprintf(mark, sizeof(mark), "%c%zu", BULK_MARK, b->n);
            if (!slices_push(b, open + 1, n))
                break;
            buf_append(&b->skeleton, copied, (size_t)(open + 1 - copied));
            buf_append(&b->skeleton, mark, (size_t)m);
            copied = close; /* the closing quote is copied with what follows */
        }
        p = (char *)close + 1;
    }
    if (!b->n)
        return false;
    buf_append(&b->skeleton, copied, (size_t)(end - copied));
    if (!buf_ok(&b->skeleton)) { /* out of memory: cJSON parses the line itself */
        bulk_reset(b);
        return false;
    }
    /* Only now that the skeleton is complete may the line change. */
    for (size_t i = 0; i < b->n; i++)
        b->slices[i].s[b->slices[i].len] = '\0';
    return true;
}

/* The slice a marked string stands for, or NULL when s is not a marker. */
static char *marked(const struct bulk *b, const char *s)
{
    if (!s || s[0] != BULK_MARK || s[1] < '0' || s[1] > '9')
        return NULL;
    char *endp;
    unsigned long i = strtoul(s + 1, &endp, 10);
    return *endp == '\0' && i < b->n ? b->slices[i].s : NULL;
}

void bulk_resolve(const struct bulk *b, cJSON *item)
{
    for (; item; item = item->next) {
        char *s;
        /* The flags tell cJSON_Delete that these strings are not its own to
         * free, so the tree stays sound whatever allocator cJSON uses. */
        if ((s = marked(b, item->string)) != NULL) {
            cJSON_free(item->string);
            item->string = s;
            item->type |= cJSON_StringIsConst;
        }
        if (cJSON_IsString(item) && (s = marked(b, item->valuestring)) != NULL) {
            cJSON_free(item->valuestring);
            item->valuestring = s;
            item->type |= cJSON_IsReference;
        }
        if (item->child)
            bulk_resolve(b, item->child);
    }
}

void bulk_use(const struct bulk_slice *slices, size_t n)
{
    in_use = slices;
    n_in_use = n;
}

size_t bulk_string_len(const cJSON *item)
{
    /* Only resolved strings carry cJSON_IsReference (see bulk_resolve). */
    if (item->type & cJSON_IsReference)
        for (size_t i = 0; i < n_in_use; i++)
            if (in_use[i].s == item->valuestring)
                return in_use[i].len;
    return strlen(item->valuestring);
}

void bulk_reset(struct bulk *b)
{
    wipe_bytes(b->skeleton.data, b->skeleton.len); /* short strings may be secrets */
    buf_reset(&b->skeleton);
    b->n = 0;
}

void bulk_free(struct bulk *b)
{
    bulk_reset(b);
    buf_free(&b->skeleton);
    free(b->slices);
    *b = (struct bulk){0};
}
