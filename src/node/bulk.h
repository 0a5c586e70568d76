/* bulk.h - long JSON strings without cJSON's byte-at-a-time copy (see bulk.c).
 *
 * Before cJSON parses a long line, the unescaped strings of BULK_MIN bytes or
 * more are replaced by markers in a skeleton of the line; after parsing, each
 * marked string points back at its bytes in the line itself.
 */
#ifndef SECURITOR_NODE_BULK_H
#define SECURITOR_NODE_BULK_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "securitor/buf.h"

#define BULK_MIN ((size_t)1024) /* shorter strings are left to cJSON */

struct bulk_slice {
    char *s; /* the string's bytes inside the line, NUL-terminated */
    size_t len;
};

struct bulk {
    struct buf skeleton; /* the line with each bulk string replaced by a marker */
    struct bulk_slice *slices;
    size_t n, cap;
    bool escapes; /* false: no string in the line holds a backslash */
};

/* Looks for unescaped strings of BULK_MIN bytes or more in line, which must
 * be valid UTF-8 without control bytes. When it finds some, it builds the
 * skeleton for cJSON to parse, writes a NUL over each one's closing quote,
 * sets b->escapes, and returns true; otherwise the line is untouched and
 * cJSON parses it. */
bool bulk_extract(struct bulk *b, char *line, size_t len);
/* Points every marked key and string in the parsed skeleton (item and its
 * siblings and children) at its slice of the line. */
void bulk_resolve(const struct bulk *b, cJSON *item);
/* Names the long strings (slices) of the request this thread is answering,
 * for bulk_string_len; (NULL, 0) when done. */
void bulk_use(const struct bulk_slice *slices, size_t n);
/* strlen(item->valuestring), without the pass over a long string of the
 * request in use: its length is known. */
size_t bulk_string_len(const cJSON *item);
/* Wipes the skeleton and forgets the slices, keeping the memory. */
void bulk_reset(struct bulk *b);
void bulk_free(struct bulk *b);

#endif
