/* rows.h - writing and reading the fixed layouts of state rows: integers
 * big-endian, byte strings as they are, a string as u16 length and bytes.
 * Readers never run past the end: a short value sets `bad` and reads zeros.
 */
#ifndef SECURITOR_E2EE_ROWS_H
#define SECURITOR_E2EE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "securitor/buf.h"

#define ROW_VERSION 1

static inline void row_u8(struct buf *b, uint8_t v) { buf_append(b, &v, 1); }

static inline void row_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_append(b, x, 4);
}

static inline void row_u64(struct buf *b, uint64_t v)
{
    row_u32(b, (uint32_t)(v >> 32));
    row_u32(b, (uint32_t)v);
}

static inline void row_bytes(struct buf *b, const void *p, size_t n) { buf_append(b, p, n); }

static inline void row_str(struct buf *b, const char *s, size_t n)
{
    uint8_t x[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    buf_append(b, x, 2);
    buf_append(b, s, n);
}

/* A state row key: user, a NUL, a big-endian u32 (a device or prekey id).
 * k holds strlen(user) + 5 bytes; returns the length. */
static inline size_t row_key_user_id(uint8_t *k, const char *user, uint32_t id)
{
    size_t n = strlen(user);
    memcpy(k, user, n);
    k[n++] = 0;
    for (int i = 3; i >= 0; i--)
        k[n++] = (uint8_t)(id >> (8 * i));
    return n;
}

struct row_reader {
    const uint8_t *p, *end;
    bool bad; /* ran past the end, or a value out of range */
};

static inline struct row_reader row_reader(const uint8_t *p, size_t n)
{
    return (struct row_reader){p, p + n, false};
}

static inline const uint8_t *row_take(struct row_reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

static inline uint8_t row_get_u8(struct row_reader *r)
{
    const uint8_t *p = row_take(r, 1);
    return p ? p[0] : 0;
}

static inline uint32_t row_get_u32(struct row_reader *r)
{
    const uint8_t *p = row_take(r, 4);
    return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}

static inline uint64_t row_get_u64(struct row_reader *r)
{
    uint64_t hi = row_get_u32(r);
    return hi << 32 | row_get_u32(r);
}

static inline void row_get_bytes(struct row_reader *r, void *out, size_t n)
{
    const uint8_t *p = row_take(r, n);
    if (p)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}

static inline bool row_get_bool(struct row_reader *r)
{
    uint8_t v = row_get_u8(r);
    if (v > 1)
        r->bad = true;
    return v == 1;
}

/* A string into out (room for cap bytes and a NUL). */
static inline void row_get_str(struct row_reader *r, char *out, size_t cap)
{
    const uint8_t *l = row_take(r, 2);
    size_t n = l ? (size_t)l[0] << 8 | l[1] : 0;
    const uint8_t *p = n < cap ? row_take(r, n) : NULL;
    if (!p) {
        r->bad = true;
        out[0] = 0;
        return;
    }
    memcpy(out, p, n);
    out[n] = 0;
    if (memchr(out, 0, n))
        r->bad = true;
}

/* The whole value was read, exactly. */
static inline bool row_done(const struct row_reader *r) { return !r->bad && r->p == r->end; }

#endif
