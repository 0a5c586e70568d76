/* signed.c - requests a device signs (see signed.h). */
#include "signed.h"

#include <string.h>

#include "securitor/buf.h"

#define LABEL "securitor signed request v1"

static void put_u16(struct buf *b, size_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    buf_append(b, x, 2);
}

static void put_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_append(b, x, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b, (uint32_t)v);
}

static int signed_bytes(struct buf *b, const struct signed_request *r)
{
    static const uint8_t zero[32];
    size_t tl = strlen(r->type), ul = strlen(r->user);
    if (tl > 0xFFFF || ul > 0xFFFF || r->n_ids > 0xFFFFFFFFu)
        return -1;
    buf_append_lit(b, LABEL);
    put_u16(b, tl);
    buf_append(b, r->type, tl);
    put_u16(b, ul);
    buf_append(b, r->user, ul);
    put_u32(b, r->device_id);
    put_u64(b, r->counter);
    put_u32(b, (uint32_t)r->n_ids);
    for (size_t i = 0; i < r->n_ids; i++)
        put_u64(b, r->ids[i]);
    buf_append(b, r->digest ? r->digest : zero, 32);
    return buf_ok(b) ? 0 : -1;
}

int signed_request_sign(uint8_t sig[static CURVE_SIG_LEN], const struct curve_identity *me,
                        const struct signed_request *req)
{
    struct buf b = {0};
    int rc = signed_bytes(&b, req) ? -1
                                   : curve_sign(sig, me, (const uint8_t *)b.data, b.len);
    buf_free(&b);
    return rc;
}

int signed_request_verify(const uint8_t identity[static CURVE_KEY_LEN],
                          const uint8_t sig[static CURVE_SIG_LEN],
                          const struct signed_request *req)
{
    struct buf b = {0};
    int rc = signed_bytes(&b, req) ? -1
                                   : curve_verify(identity, (const uint8_t *)b.data, b.len, sig);
    buf_free(&b);
    return rc;
}
