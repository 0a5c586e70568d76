/* fuzz_signed.c - the signed requests of the backend (signed.c).
 *
 * The input describes two requests, A and B (type, user, device id,
 * counter, ids, digest), then 96 bytes of a key and a signature:
 *   byte      flags: bit 0 A has a digest, bit 1 B has one, bit 2 A's type
 *             is 65,536 bytes long (past the u16 its length is sent in),
 *             bit 3 B takes A's fields as they are (B differs only where
 *             the bytes after it say)
 *   per request: type and user (a length byte, then bytes; a NUL ends the
 *             C string early), device id (4), counter (8), a count byte
 *             (up to 16) and that many 8-byte ids, 32 digest bytes (when
 *             flagged)
 * Properties:
 *   1. A signed with this process's identity verifies under it; A with a
 *      type or user too long for its u16 is refused by sign and verify
 *      (-1), never cut short;
 *   2. the signed bytes are injective: A's signature verifies for B exactly
 *      when B is the same request (a missing digest is 32 zero bytes);
 *   3. A with any 32-byte key and 64-byte signature from the input never
 *      crashes the verifier, and verifies only under our key with our
 *      signature.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "signed.h"

struct req {
    char type[256], user[256];
    uint32_t device_id;
    uint64_t counter;
    uint64_t ids[16];
    size_t n_ids;
    uint8_t digest[32];
    bool has_digest;
};

struct reader {
    const uint8_t *p;
    size_t left;
};

static uint8_t take(struct reader *r)
{
    if (!r->left)
        return 0;
    r->left--;
    return *r->p++;
}

static uint64_t take_n(struct reader *r, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | take(r);
    return v;
}

static void take_string(struct reader *r, char out[256])
{
    size_t n = take(r);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)take(r);
    out[n] = 0;
}

static void take_req(struct reader *r, struct req *q, bool digest)
{
    take_string(r, q->type);
    take_string(r, q->user);
    q->device_id = (uint32_t)take_n(r, 4);
    q->counter = take_n(r, 8);
    q->n_ids = take(r) % 17;
    for (size_t i = 0; i < q->n_ids; i++)
        q->ids[i] = take_n(r, 8);
    q->has_digest = digest;
    memset(q->digest, 0, 32);
    if (digest)
        for (int i = 0; i < 32; i++)
            q->digest[i] = take(r);
}

static struct signed_request view(const struct req *q, const char *type)
{
    return (struct signed_request){.type = type ? type : q->type, .user = q->user,
                                   .device_id = q->device_id, .counter = q->counter,
                                   .ids = q->ids, .n_ids = q->n_ids,
                                   .digest = q->has_digest ? q->digest : NULL};
}

static const uint8_t *digest_of(const struct req *q)
{
    static const uint8_t zero[32];
    return q->has_digest ? q->digest : zero; /* no digest: zeros, as signed */
}

static bool same(const struct req *a, const struct req *b)
{
    return !strcmp(a->type, b->type) && !strcmp(a->user, b->user) &&
           a->device_id == b->device_id && a->counter == b->counter && a->n_ids == b->n_ids &&
           !memcmp(a->ids, b->ids, a->n_ids * sizeof(a->ids[0])) &&
           !memcmp(digest_of(a), digest_of(b), 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct curve_identity me;
    static bool have_me;
    if (!have_me) {
        FUZZ_CHECK(curve_identity_generate(&me) == 0);
        have_me = true;
    }
    struct reader r = {data, size};
    struct req a, b;
    uint8_t flags = take(&r);
    take_req(&r, &a, flags & 1);
    if (flags & 8) {
        b = a;
        /* B differs from A in one field, named by the next byte */
        uint8_t what = take(&r), v = take(&r);
        switch (what % 6) {
        case 0: b.device_id ^= v; break;
        case 1: b.counter ^= v; break;
        case 2: if (b.n_ids) b.ids[v % b.n_ids] ^= 1; else b.n_ids = 1, b.ids[0] = v; break;
        case 3: b.digest[v % 32] ^= 1, b.has_digest = true; break;
        case 4: if (strlen(b.type) < 255) strcat(b.type, (char[]){(char)(v | 1), 0}); break;
        default: b.has_digest = !b.has_digest; break; /* zeros and no digest: the same */
        }
    } else {
        take_req(&r, &b, flags & 2);
    }
    uint8_t sig[CURVE_SIG_LEN];

    if (flags & 4) { /* a type longer than its u16 length field */
        char *huge = fuzz_alloc(65537);
        memset(huge, 'x', 65536);
        huge[65536] = 0;
        struct signed_request va = view(&a, huge);
        FUZZ_CHECK(signed_request_sign(sig, &me, &va) == -1);
        memset(sig, 0, sizeof(sig));
        FUZZ_CHECK(signed_request_verify(me.x.pub, sig, &va) == -1);
        free(huge);
        return 0;
    }
    struct signed_request va = view(&a, NULL), vb = view(&b, NULL);
    FUZZ_CHECK(signed_request_sign(sig, &me, &va) == 0);
    FUZZ_CHECK(signed_request_verify(me.x.pub, sig, &va) == 1);
    int vb_ok = signed_request_verify(me.x.pub, sig, &vb);
    if (vb_ok != (same(&a, &b) ? 1 : 0))
        fprintf(stderr, "verify(B) = %d, same = %d\n", vb_ok, same(&a, &b));
    FUZZ_CHECK(vb_ok == (same(&a, &b) ? 1 : 0));

    /* a key and signature from the input */
    uint8_t key[CURVE_KEY_LEN], fsig[CURVE_SIG_LEN];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = take(&r);
    for (size_t i = 0; i < sizeof(fsig); i++)
        fsig[i] = take(&r);
    int v = signed_request_verify(key, fsig, &va);
    FUZZ_CHECK(v >= -1 && v <= 1);
    if (v == 1)
        FUZZ_CHECK(!memcmp(key, me.x.pub, CURVE_KEY_LEN) && !memcmp(fsig, sig, CURVE_SIG_LEN));
    return 0;
}
