/* node_internal.h - what the loop and the reply writer share. */
#ifndef SECURITOR_NODE_INTERNAL_H
#define SECURITOR_NODE_INTERNAL_H

#include <string.h>

#include "securitor/node.h"

/* Whether two names (types, keys) are equal. The first bytes are compared
 * inline: most names differ there, and that saves a call. */
static inline bool name_eq(const char *a, const char *b)
{
    return a[0] == b[0] && !strcmp(a, b);
}

/* Appends str (len bytes) as a quoted, escaped JSON string. */
void json_write_string(struct buf *b, const char *str, size_t len);
/* Empties a reply (wiping its fields) for the next request. */
void reply_clear(struct reply *r);

/* Large strings bypass cJSON's byte-by-byte copy (see bulk.c). */
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
 * be valid UTF-8 without NUL bytes. When it finds some, it builds the
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
