/* devlist.c - device lists as signed chains (see devlist.h). */
#include "devlist.h"

#include <stdlib.h>
#include <string.h>

#include "securitor/kdf.h"
#include "securitor/wipe.h"

#define LABEL "securitor device list v1"

static const uint8_t ZERO_HASH[DEVLIST_HASH_LEN];

const char *devlist_result_text(enum devlist_result r)
{
    switch (r) {
    case DEVLIST_OK: return "ok";
    case DEVLIST_BAD_FORM: return "malformed: versions out of order, duplicate or no devices";
    case DEVLIST_BAD_SIGNATURE: return "a version is not signed by a device of the version "
                                       "before it";
    case DEVLIST_CHANGED_DEVICE: return "a device's identity key or registration id changed";
    case DEVLIST_REUSED_ID: return "a device id was reused";
    case DEVLIST_ROLLBACK: return "older than the list already verified (rolled back)";
    case DEVLIST_FORK: return "not the history already verified (a different list)";
    case DEVLIST_INTERNAL: return "internal error";
    }
    return "unknown";
}

static int by_id(const void *a, const void *b)
{
    uint32_t x = ((const struct devlist_device *)a)->device_id;
    uint32_t y = ((const struct devlist_device *)b)->device_id;
    return x < y ? -1 : x > y;
}

void devlist_sort(struct devlist *l)
{
    qsort(l->devices, l->n, sizeof(l->devices[0]), by_id);
}

const struct devlist_device *devlist_find(const struct devlist *l, uint32_t device_id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->devices[i].device_id == device_id)
            return &l->devices[i];
    return NULL;
}

static void put_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_append(b, x, 4);
}

/* The signed bytes of l (see devlist.h). */
static int signed_bytes(struct buf *b, const char *user, const struct devlist *l,
                        const uint8_t prev_hash[static DEVLIST_HASH_LEN])
{
    size_t ulen = strlen(user);
    uint8_t enc[CURVE_ENCODED_LEN];
    if (ulen > DEVLIST_USER_MAX || l->n > DEVLIST_MAX_DEVICES)
        return -1;
    buf_append_lit(b, LABEL);
    uint8_t len16[2] = {(uint8_t)(ulen >> 8), (uint8_t)ulen};
    buf_append(b, len16, 2);
    buf_append(b, user, ulen);
    put_u32(b, l->version);
    buf_append(b, prev_hash, DEVLIST_HASH_LEN);
    put_u32(b, (uint32_t)l->n);
    for (size_t i = 0; i < l->n; i++) {
        put_u32(b, l->devices[i].device_id);
        curve_encode(enc, l->devices[i].identity);
        buf_append(b, enc, sizeof(enc));
        put_u32(b, l->devices[i].registration_id);
    }
    put_u32(b, l->signer);
    return buf_ok(b) ? 0 : -1;
}

int devlist_hash(uint8_t out[static DEVLIST_HASH_LEN], const char *user, const struct devlist *l,
                 const uint8_t prev_hash[static DEVLIST_HASH_LEN])
{
    struct buf b = {0};
    int rc = signed_bytes(&b, user, l, prev_hash);
    buf_append(&b, l->signature, CURVE_SIG_LEN);
    if (!rc && buf_ok(&b))
        rc = sha256(out, (const uint8_t *)b.data, b.len);
    else
        rc = -1;
    buf_free(&b);
    return rc;
}

int devlist_sign(struct devlist *l, const char *user, const uint8_t *prev_hash,
                 const struct curve_identity *me)
{
    struct buf b = {0};
    int rc = -1;
    devlist_sort(l);
    if (!signed_bytes(&b, user, l, prev_hash ? prev_hash : ZERO_HASH))
        rc = curve_sign(l->signature, me, (const uint8_t *)b.data, b.len);
    buf_free(&b);
    return rc;
}

/* The shape of one list: a version, 1 to DEVLIST_MAX_DEVICES devices with
 * ids strictly ascending (hence unique, and canonical), the signer among
 * them or (for a later version) checked against the one before. */
static bool well_formed(const struct devlist *l)
{
    if (!l->version || !l->n || l->n > DEVLIST_MAX_DEVICES)
        return false;
    for (size_t i = 1; i < l->n; i++)
        if (l->devices[i].device_id <= l->devices[i - 1].device_id)
            return false;
    return true;
}

/* Whether sig verifies over l's signed bytes under the signer's key. */
static enum devlist_result check_signature(const char *user, const struct devlist *l,
                                           const uint8_t prev_hash[static DEVLIST_HASH_LEN],
                                           const uint8_t signer_key[static CURVE_KEY_LEN])
{
    struct buf b = {0};
    enum devlist_result r = DEVLIST_INTERNAL;
    if (!signed_bytes(&b, user, l, prev_hash)) {
        int ok = curve_verify(signer_key, (const uint8_t *)b.data, b.len, l->signature);
        r = ok > 0 ? DEVLIST_OK : ok == 0 ? DEVLIST_BAD_SIGNATURE : DEVLIST_INTERNAL;
    }
    buf_free(&b);
    return r;
}

uint32_t devlist_max_id(const struct devlist *l)
{
    return l->n ? l->devices[l->n - 1].device_id : 0;
}

enum devlist_result devlist_verify_next(const char *user, const struct devlist *prev,
                                        const uint8_t prev_hash[static DEVLIST_HASH_LEN],
                                        uint32_t highest, const struct devlist *next)
{
    if (!well_formed(next) || next->version != prev->version + 1)
        return DEVLIST_BAD_FORM;
    const struct devlist_device *signer = devlist_find(prev, next->signer);
    if (!signer) /* only a device of the version before may sign the next */
        return DEVLIST_BAD_SIGNATURE;
    for (size_t i = 0; i < next->n; i++) {
        const struct devlist_device *d = &next->devices[i];
        const struct devlist_device *was = devlist_find(prev, d->device_id);
        if (was && (memcmp(was->identity, d->identity, CURVE_KEY_LEN) ||
                    was->registration_id != d->registration_id))
            return DEVLIST_CHANGED_DEVICE;
    }
    enum devlist_result r = check_signature(user, next, prev_hash, signer->identity);
    if (r != DEVLIST_OK)
        return r;
    for (size_t i = 0; i < next->n; i++) /* a new device has a new, larger id */
        if (!devlist_find(prev, next->devices[i].device_id) &&
            next->devices[i].device_id <= highest)
            return DEVLIST_REUSED_ID;
    return DEVLIST_OK;
}

enum devlist_result devlist_verify_chain(const char *user, const struct devlist *lists, size_t n,
                                         const struct devlist_pin *pin,
                                         struct devlist_pin *newest)
{
    uint8_t hash[DEVLIST_HASH_LEN], next_hash[DEVLIST_HASH_LEN];
    uint32_t highest = 0; /* the largest device id the chain has used */
    enum devlist_result r;
    if (!n)
        return pin && pin->version ? DEVLIST_ROLLBACK : DEVLIST_BAD_FORM;
    /* Version 1: the first device alone, signed by itself. */
    const struct devlist *first = &lists[0];
    if (!well_formed(first) || first->version != 1 || first->n != 1 ||
        first->devices[0].device_id != 1 || first->signer != 1)
        return DEVLIST_BAD_FORM;
    if ((r = check_signature(user, first, ZERO_HASH, first->devices[0].identity)) != DEVLIST_OK)
        return r;
    if (devlist_hash(hash, user, first, ZERO_HASH))
        return DEVLIST_INTERNAL;
    highest = 1;
    for (size_t i = 1; i < n; i++) {
        if (pin && pin->version == lists[i - 1].version && memcmp(pin->hash, hash, DEVLIST_HASH_LEN))
            return DEVLIST_FORK;
        if ((r = devlist_verify_next(user, &lists[i - 1], hash, highest, &lists[i])) !=
            DEVLIST_OK)
            return r;
        if (devlist_max_id(&lists[i]) > highest)
            highest = devlist_max_id(&lists[i]);
        if (devlist_hash(next_hash, user, &lists[i], hash))
            return DEVLIST_INTERNAL;
        memcpy(hash, next_hash, DEVLIST_HASH_LEN);
    }
    const struct devlist *last = &lists[n - 1];
    if (pin && pin->version) {
        if (last->version < pin->version)
            return DEVLIST_ROLLBACK;
        if (last->version == pin->version && memcmp(pin->hash, hash, DEVLIST_HASH_LEN))
            return DEVLIST_FORK;
    }
    if (newest) {
        newest->version = last->version;
        memcpy(newest->hash, hash, DEVLIST_HASH_LEN);
    }
    return DEVLIST_OK;
}
