/* fuzz_devlist.c - device-list chains (devlist.c) and their JSON form
 * (fields.c: field_devlist, reply_devlist).
 *
 * The first byte picks the mode (even: JSON, odd: a chain built here).
 *
 * JSON: the rest is a JSON text, one device list or an array of them (the
 * chain, oldest first), read as the directory and devices read them:
 *   1. field_devlist never crashes or reads out of bounds, on any value;
 *   2. a list it accepts re-encodes (reply_devlist) into JSON that
 *      field_devlist reads back into the same list, and that encoding is
 *      canonical: encoding the list read back gives the same bytes;
 *   3. devlist_verify_chain over the accepted lists (with no pin, and
 *      pinned at its own end) never crashes; a chain it accepts is
 *      accepted again from its re-encoded lists, with the same end.
 *
 * Chain: the rest describes a chain of up to 8 lists over 8 devices whose
 * identity keys this process drew at start; each list is signed here by
 * the identity of the device it names as signer (a real signature, so the
 * fuzzer reaches every rule, not just the signature check):
 *   byte 0    version delta (bits 0-1: 0 means +1, else +0, +2 or 255) and
 *             bits 2-4: a device whose registration id changes in it
 *             (bit 5 set)
 *   byte 1    the devices it lists (a bit per device id 1-8; none is kept
 *             as none)
 *   byte 2    its signer (bits 0-3: device id 0-15)
 *   4. devlist_verify_chain agrees with a reference written from
 *      devlist.h's rules (versions 1, 2, 3...; version 1 is device 1 alone
 *      signed by itself; each next list signed by a device of the one
 *      before; a device keeps its key and registration id; a new id is above
 *      every id before; 1 to 32 devices), on the whole chain and on every
 *      prefix as a pin (a shorter chain: DEVLIST_ROLLBACK);
 *   5. the chain through JSON (2.) verifies the same.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "fields.h"

#define USER "alice"
#define MAX_LISTS 8

static struct curve_identity ids[9]; /* devices 1-8 (0 unused) */

static void init_ids(void)
{
    static bool done;
    if (done)
        return;
    for (int i = 0; i < 9; i++)
        FUZZ_CHECK(curve_identity_generate(&ids[i]) == 0);
    done = true;
}

static bool same_list(const struct devlist *a, const struct devlist *b)
{
    if (a->version != b->version || a->n != b->n || a->signer != b->signer ||
        memcmp(a->signature, b->signature, CURVE_SIG_LEN))
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->devices[i].device_id != b->devices[i].device_id ||
            a->devices[i].registration_id != b->devices[i].registration_id ||
            memcmp(a->devices[i].identity, b->devices[i].identity, CURVE_KEY_LEN))
            return false;
    return true;
}

/* The list as {"l":{...}} JSON, NUL-terminated, in a fresh reply. */
static void encode(struct reply *r, const struct devlist *l)
{
    reply_clear(r);
    reply_type(r, "x");
    reply_devlist(r, "l", l);
    FUZZ_CHECK(buf_ok(&r->fields));
    FUZZ_CHECK(r->fields.len > 1 && r->fields.data[0] == ',');
    r->fields.data[0] = '{';
    buf_append_lit(&r->fields, "}");
    buf_append(&r->fields, "", 1);
    FUZZ_CHECK(buf_ok(&r->fields));
}

/* Property 2 for one accepted list: returns the list read back. */
static void round_trip(const struct devlist *l, struct devlist *back)
{
    struct reply r1 = {0}, r2 = {0}, err = {0};
    encode(&r1, l);
    cJSON *root = cJSON_Parse(r1.fields.data);
    FUZZ_CHECK(root != NULL);
    FUZZ_CHECK(field_devlist(&err, cJSON_GetObjectItemCaseSensitive(root, "l"), "l", back) == 0);
    FUZZ_CHECK(same_list(l, back));
    encode(&r2, back);
    FUZZ_CHECK(r1.fields.len == r2.fields.len &&
               !memcmp(r1.fields.data, r2.fields.data, r1.fields.len));
    cJSON_Delete(root);
    reply_free(&r1);
    reply_free(&r2);
    reply_free(&err);
}

/* Property 3/5: the chain verifies alike before and after the trip (when
 * every list has the 1 to 32 devices JSON must carry). */
static enum devlist_result verify_both(const struct devlist *lists, size_t n)
{
    struct devlist back[MAX_LISTS];
    struct devlist_pin a = {0}, b = {0};
    bool trip = true;
    for (size_t i = 0; i < n; i++)
        trip &= lists[i].n >= 1 && lists[i].n <= DEVLIST_MAX_DEVICES;
    for (size_t i = 0; trip && i < n; i++)
        round_trip(&lists[i], &back[i]);
    enum devlist_result ra = devlist_verify_chain(USER, lists, n, NULL, &a);
    enum devlist_result rb = trip ? devlist_verify_chain(USER, back, n, NULL, &b) : ra;
    if (!trip)
        b = a;
    FUZZ_CHECK(ra == rb);
    if (ra == DEVLIST_OK) {
        FUZZ_CHECK(a.version == b.version && !memcmp(a.hash, b.hash, DEVLIST_HASH_LEN));
        FUZZ_CHECK(a.version == lists[n - 1].version);
        /* pinned at its own end: still fine */
        FUZZ_CHECK(devlist_verify_chain(USER, lists, n, &a, NULL) == DEVLIST_OK);
    }
    return ra;
}

static void json_mode(const uint8_t *data, size_t size)
{
    char *text = fuzz_alloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    cJSON *root = cJSON_ParseWithLength(text, size);
    struct devlist lists[MAX_LISTS];
    size_t n = 0;
    if (root) {
        const cJSON *item = cJSON_IsArray(root) ? root->child : root;
        for (; item && n < MAX_LISTS; item = cJSON_IsArray(root) ? item->next : NULL) {
            struct reply r = {0};
            if (field_devlist(&r, item, "list", &lists[n]) == 0)
                n++;
            else
                FUZZ_CHECK(r.type && !strcmp(r.type, "error"));
            reply_free(&r);
        }
        if (n)
            verify_both(lists, n);
        cJSON_Delete(root);
    }
    free(text);
}

/* The reference: devlist.h's rules, written again. */
static enum devlist_result reference(const struct devlist *l, size_t n)
{
    uint32_t highest = 0;
    for (size_t i = 0; i < n; i++) {
        const struct devlist *c = &l[i];
        if (!c->n || c->n > DEVLIST_MAX_DEVICES)
            return DEVLIST_BAD_FORM;
        if (i == 0) {
            if (c->version != 1 || c->n != 1 || c->devices[0].device_id != 1 || c->signer != 1)
                return DEVLIST_BAD_FORM;
        } else {
            const struct devlist *p = &l[i - 1];
            if (c->version != p->version + 1)
                return DEVLIST_BAD_FORM;
            if (!devlist_find(p, c->signer))
                return DEVLIST_BAD_SIGNATURE;
            for (size_t k = 0; k < c->n; k++) {
                const struct devlist_device *was = devlist_find(p, c->devices[k].device_id);
                if (was && (was->registration_id != c->devices[k].registration_id ||
                            memcmp(was->identity, c->devices[k].identity, CURVE_KEY_LEN)))
                    return DEVLIST_CHANGED_DEVICE;
            }
            for (size_t k = 0; k < c->n; k++)
                if (!devlist_find(p, c->devices[k].device_id) &&
                    c->devices[k].device_id <= highest)
                    return DEVLIST_REUSED_ID;
        }
        for (size_t k = 0; k < c->n; k++)
            if (c->devices[k].device_id > highest)
                highest = c->devices[k].device_id;
    }
    return DEVLIST_OK;
}

static void chain_mode(const uint8_t *data, size_t size)
{
    struct devlist lists[MAX_LISTS];
    uint8_t hash[DEVLIST_HASH_LEN] = {0};
    struct devlist_pin pins[MAX_LISTS];
    size_t n = 0;
    uint32_t version = 0;
    init_ids();
    for (; size >= 3 && n < MAX_LISTS; data += 3, size -= 3) {
        struct devlist *l = &lists[n];
        memset(l, 0, sizeof(*l));
        static const uint32_t DELTA[4] = {1, 0, 2, 255};
        version += DELTA[data[0] & 3];
        l->version = version;
        for (uint32_t d = 1; d <= 8; d++) {
            if (!(data[1] & (1u << (d - 1))))
                continue;
            struct devlist_device *x = &l->devices[l->n++];
            x->device_id = d;
            memcpy(x->identity, ids[d].x.pub, CURVE_KEY_LEN);
            x->registration_id = 1000 + d;
            if ((data[0] & 0x20) && ((data[0] >> 2) & 7) + 1 == d)
                x->registration_id++;
        }
        l->signer = data[2] & 15;
        const struct curve_identity *signer = &ids[l->signer <= 8 ? l->signer : 0];
        FUZZ_CHECK(devlist_sign(l, USER, n ? hash : NULL, signer) == 0);
        FUZZ_CHECK(devlist_hash(hash, USER, l, hash) == 0);
        pins[n].version = l->version;
        memcpy(pins[n].hash, hash, DEVLIST_HASH_LEN);
        n++;
    }
    if (!n)
        return;
    enum devlist_result want = reference(lists, n);
    enum devlist_result got = verify_both(lists, n);
    /* Signatures by a device the rules allow are real, so the verdicts agree
     * exactly; a signer outside the list before is BAD_SIGNATURE both ways.
     * Version 1 signed by device 1 yet without device 1 (no devices) is
     * BAD_FORM both ways. */
    if (got != want)
        fprintf(stderr, "devlist_verify_chain: %d, reference: %d (%zu lists)\n", got, want, n);
    FUZZ_CHECK(got == want);
    if (got == DEVLIST_OK) {
        for (size_t i = 0; i < n; i++) { /* pinned at any earlier point: fine */
            FUZZ_CHECK(devlist_verify_chain(USER, lists, n, &pins[i], NULL) == DEVLIST_OK);
            /* a chain that stops short of the pin is a rollback */
            if (i + 1 < n)
                FUZZ_CHECK(devlist_verify_chain(USER, lists, i + 1, &pins[n - 1], NULL) ==
                           DEVLIST_ROLLBACK);
        }
        /* a pin of the same version but another history is a fork */
        struct devlist_pin other = pins[n - 1];
        other.hash[0] ^= 1;
        FUZZ_CHECK(devlist_verify_chain(USER, lists, n, &other, NULL) == DEVLIST_FORK);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    if (data[0] & 1)
        chain_mode(data + 1, size - 1);
    else
        json_mode(data + 1, size - 1);
    return 0;
}
