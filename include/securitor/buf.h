/* buf.h - a growable byte buffer, reused across messages.
 *
 * First-touch memory is expensive on these machines, so buffers are kept and
 * reset (len = 0) rather than freed between messages. Growth failures are
 * sticky: after one, buf_ok() is false and later appends are dropped, so a
 * writer can append freely and check once at the end.
 *
 * Buffers carry plaintext lines, so memory they give up is wiped first: a
 * buffer grows into a new allocation, and the old one is wiped before it is
 * freed (realloc would leave it in freed heap as it was).
 */
#ifndef SECURITOR_BUF_H
#define SECURITOR_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed since the last buf_reset */
};

/* Make room for `extra` more bytes; returns a pointer to data + len, or NULL
 * (and sets failed) when memory runs out. Does not change len. */
char *buf_reserve_slow(struct buf *b, size_t extra);
static inline char *buf_reserve(struct buf *b, size_t extra)
{
    if (!b->failed && extra <= b->cap - b->len)
        return b->data + b->len;
    return buf_reserve_slow(b, extra);
}
static inline void buf_append(struct buf *b, const void *p, size_t n)
{
    char *dst = buf_reserve(b, n);
    if (!dst)
        return;
    if (n)
        memcpy(dst, p, n);
    b->len += n;
}
static inline void buf_append_str(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }
/* A string literal, its length known at compile time ("" makes anything
 * else a compile error). */
#define buf_append_lit(b, lit) buf_append((b), "" lit, sizeof(lit) - 1)
static inline void buf_append_char(struct buf *b, char c) { buf_append(b, &c, 1); }
/* Appends the decimal form of v. */
void buf_append_ll(struct buf *b, long long v);
/* Empties the buffer and clears `failed`; keeps the allocation. */
void buf_reset(struct buf *b);
/* Wipes the used bytes (for buffers that held secrets) and frees. */
void buf_free(struct buf *b);
/* Moves the contents into an allocation just big enough for them (the old
 * one wiped and freed), so that a buffer that grew for one huge message
 * gives the memory back. Keeps the old allocation when out of memory. */
void buf_shrink(struct buf *b);
static inline bool buf_ok(const struct buf *b) { return !b->failed; }

#endif
