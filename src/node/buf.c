/* buf.c - growable byte buffer (see buf.h). */
#include "securitor/buf.h"

#include <stdlib.h>
#include <string.h>

#include "securitor/wipe.h"

char *buf_reserve_slow(struct buf *b, size_t extra)
{
    if (b->failed)
        return NULL;
    if (extra > SIZE_MAX - b->len) {
        b->failed = true;
        return NULL;
    }
    size_t need = b->len + extra;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *p = malloc(cap);
        if (!p) {
            b->failed = true;
            return NULL;
        }
        if (b->data) { /* not realloc: the old block is wiped before it is freed */
            memcpy(p, b->data, b->len);
            wipe_bytes(b->data, b->cap);
            free(b->data);
        }
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

void buf_append_ll(struct buf *b, long long v)
{
    /* Two digits a step from a table of pairs: a division per pair. */
    static const char PAIRS[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    char tmp[24], *p = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) {
        p -= 2;
        memcpy(p, PAIRS + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, PAIRS + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0)
        *--p = '-';
    buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    b->failed = false;
}

void buf_free(struct buf *b)
{
    if (b->data)
        wipe_bytes(b->data, b->cap);
    free(b->data);
    *b = (struct buf){0};
}

void buf_shrink(struct buf *b)
{
    size_t cap = b->len > 256 ? b->len : 256;
    if (cap >= b->cap)
        return;
    char *p = malloc(cap);
    if (!p)
        return;
    memcpy(p, b->data, b->len);
    wipe_bytes(b->data, b->cap);
    free(b->data);
    b->data = p;
    b->cap = cap;
}
