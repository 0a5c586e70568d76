/* test_devlist.c - device-list chains (src/e2ee/devlist.c, PROTOCOL.md §5.1).
 *
 * A valid chain (first device, an approval, an approval signed by the new
 * device, a revocation signed by the revoked device itself) verifies and
 * pins. Every kind of broken chain is refused with its own reason: version 1
 * not the first device alone or not self-signed, a flipped signature, a
 * signer not in the version before, a ghost device signed by someone else,
 * a version gap, a swapped identity, a reused device id, duplicate or
 * unordered ids, a rollback below the pin and a fork at it. Signed requests
 * verify as signed and not with any field changed.
 */
#include <string.h>

#include "check.h"
#include "devlist.h"
#include "signed.h"
#include "securitor/rand.h"

#define USER "alice"

static struct curve_identity ids[6];

static struct devlist list(uint32_t version, const uint32_t *devs, size_t n, uint32_t signer)
{
    struct devlist l = {.version = version, .n = n, .signer = signer};
    for (size_t i = 0; i < n; i++) {
        l.devices[i].device_id = devs[i];
        memcpy(l.devices[i].identity, ids[devs[i]].x.pub, CURVE_KEY_LEN);
        l.devices[i].registration_id = 1000 + devs[i];
    }
    return l;
}

/* Signs chain[k] after chain[k-1] (with the hashes of the chain so far). */
static void sign_at(struct devlist *chain, size_t k, uint32_t signer_key)
{
    uint8_t hash[DEVLIST_HASH_LEN] = {0}, next[DEVLIST_HASH_LEN];
    for (size_t i = 0; i < k; i++) {
        CHECK(devlist_hash(next, USER, &chain[i], hash) == 0);
        memcpy(hash, next, sizeof(hash));
    }
    CHECK(devlist_sign(&chain[k], USER, k ? hash : NULL, &ids[signer_key]) == 0);
}

/* The valid chain: v1 {1}, v2 {1,2} by 1, v3 {1,2,3} by 2, v4 {2,3} by 1. */
static void valid_chain(struct devlist c[4])
{
    c[0] = list(1, (uint32_t[]){1}, 1, 1);
    c[1] = list(2, (uint32_t[]){1, 2}, 2, 1);
    c[2] = list(3, (uint32_t[]){1, 2, 3}, 3, 2);
    c[3] = list(4, (uint32_t[]){2, 3}, 2, 1);
    for (size_t k = 0; k < 4; k++)
        sign_at(c, k, c[k].signer);
}

static void test_valid(void)
{
    struct devlist c[4];
    struct devlist_pin pin = {0}, later;
    valid_chain(c);
    CHECK(devlist_verify_chain(USER, c, 1, NULL, &pin) == DEVLIST_OK && pin.version == 1);
    CHECK(devlist_verify_chain(USER, c, 4, &pin, &later) == DEVLIST_OK && later.version == 4);
    CHECK(devlist_verify_chain(USER, c, 4, &later, &pin) == DEVLIST_OK && pin.version == 4);
    CHECK(devlist_verify_chain("bob", c, 4, NULL, NULL) == DEVLIST_BAD_SIGNATURE);
    CHECK(devlist_find(&c[3], 1) == NULL && devlist_find(&c[3], 3) != NULL);
}

static void test_broken(void)
{
    struct devlist c[4], b[4];
    struct devlist_pin pin;
    valid_chain(c);
    CHECK(devlist_verify_chain(USER, c, 4, NULL, &pin) == DEVLIST_OK);

    /* Version 1 must be device 1 alone, signed by itself. */
    memcpy(b, c, sizeof(b));
    b[0] = list(1, (uint32_t[]){1, 2}, 2, 1);
    sign_at(b, 0, 1);
    CHECK(devlist_verify_chain(USER, b, 1, NULL, NULL) == DEVLIST_BAD_FORM);
    b[0] = list(1, (uint32_t[]){1}, 1, 1);
    sign_at(b, 0, 4); /* signed with another key */
    CHECK(devlist_verify_chain(USER, b, 1, NULL, NULL) == DEVLIST_BAD_SIGNATURE);

    /* A flipped signature. */
    memcpy(b, c, sizeof(b));
    b[2].signature[10] ^= 1;
    CHECK(devlist_verify_chain(USER, b, 4, NULL, NULL) == DEVLIST_BAD_SIGNATURE);

    /* A version signed by a device not in the version before (3 in v2). */
    memcpy(b, c, sizeof(b));
    b[1].signer = 3;
    sign_at(b, 1, 3);
    CHECK(devlist_verify_chain(USER, b, 2, NULL, NULL) == DEVLIST_BAD_SIGNATURE);

    /* A ghost device added by the directory, "signed" by device 2's id with
     * the directory's own key. */
    memcpy(b, c, sizeof(b));
    b[3] = list(4, (uint32_t[]){1, 2, 3, 5}, 4, 2);
    sign_at(b, 3, 5);
    CHECK(devlist_verify_chain(USER, b, 4, NULL, NULL) == DEVLIST_BAD_SIGNATURE);

    /* A version gap. */
    memcpy(b, c, sizeof(b));
    b[3].version = 5;
    sign_at(b, 3, 1);
    CHECK(devlist_verify_chain(USER, b, 4, NULL, NULL) == DEVLIST_BAD_FORM);

    /* Device 2's identity swapped in v3 (properly signed by device 1). */
    memcpy(b, c, sizeof(b));
    b[2].signer = 1;
    memcpy(b[2].devices[1].identity, ids[4].x.pub, CURVE_KEY_LEN);
    sign_at(b, 2, 1);
    CHECK(devlist_verify_chain(USER, b, 3, NULL, NULL) == DEVLIST_CHANGED_DEVICE);

    /* Device 1, revoked in v4, back as id 1 in v5. */
    struct devlist five[5];
    memcpy(five, c, sizeof(c));
    five[4] = list(5, (uint32_t[]){1, 2, 3}, 3, 2);
    sign_at(five, 4, 2);
    CHECK(devlist_verify_chain(USER, five, 5, NULL, NULL) == DEVLIST_REUSED_ID);

    /* Duplicate and unordered ids. */
    memcpy(b, c, sizeof(b));
    b[1] = list(2, (uint32_t[]){1, 1}, 2, 1);
    CHECK(devlist_verify_chain(USER, b, 2, NULL, NULL) == DEVLIST_BAD_FORM);
    b[1] = list(2, (uint32_t[]){2, 1}, 2, 1);
    CHECK(devlist_verify_chain(USER, b, 2, NULL, NULL) == DEVLIST_BAD_FORM);

    /* Rolled back below the pin; a fork at it (a different, validly signed
     * v4); a fork below it (a different v2, hence a different v4 hash). */
    CHECK(devlist_verify_chain(USER, c, 3, &pin, NULL) == DEVLIST_ROLLBACK);
    memcpy(b, c, sizeof(b));
    b[3] = list(4, (uint32_t[]){1, 3}, 2, 2);
    sign_at(b, 3, 2);
    CHECK(devlist_verify_chain(USER, b, 4, NULL, NULL) == DEVLIST_OK);
    CHECK(devlist_verify_chain(USER, b, 4, &pin, NULL) == DEVLIST_FORK);
    memcpy(b, c, sizeof(b)); /* another history: device 2 had another key from v2 on */
    memcpy(b[1].devices[1].identity, ids[5].x.pub, CURVE_KEY_LEN);
    memcpy(b[2].devices[1].identity, ids[5].x.pub, CURVE_KEY_LEN);
    memcpy(b[3].devices[0].identity, ids[5].x.pub, CURVE_KEY_LEN);
    sign_at(b, 1, 1);
    sign_at(b, 2, 5); /* v3's signer is device 2, whose key is now ids[5] */
    sign_at(b, 3, 1);
    CHECK(devlist_verify_chain(USER, b, 4, NULL, NULL) == DEVLIST_OK);
    struct devlist_pin pin2;
    CHECK(devlist_verify_chain(USER, c, 2, NULL, &pin2) == DEVLIST_OK);
    CHECK(devlist_verify_chain(USER, b, 4, &pin2, NULL) == DEVLIST_FORK);

    /* The directory's check of one update. */
    uint8_t h[DEVLIST_HASH_LEN] = {0}, h2[DEVLIST_HASH_LEN];
    CHECK(devlist_hash(h2, USER, &c[0], h) == 0);
    CHECK(devlist_verify_next(USER, &c[0], h2, 1, &c[1]) == DEVLIST_OK);
    CHECK(devlist_verify_next(USER, &c[0], h, 1, &c[1]) == DEVLIST_BAD_SIGNATURE); /* wrong hash */
    CHECK(devlist_verify_next(USER, &c[0], h2, 1, &c[2]) == DEVLIST_BAD_FORM);     /* a gap */
    /* A device new to v2 whose id is not above one an earlier version listed
     * (pending devices approved out of order): refused, as the chain would be. */
    CHECK(devlist_verify_next(USER, &c[0], h2, 2, &c[1]) == DEVLIST_REUSED_ID);
}

/* Signed requests: valid as signed; any field changed, not. */
static void test_signed_requests(void)
{
    uint64_t idv[3] = {7, 8, 9}, other[3] = {7, 8, 10};
    uint8_t digest[32] = {1}, sig[CURVE_SIG_LEN];
    struct signed_request r = {.type = "relay_ack", .user = USER, .device_id = 2,
                               .counter = 41, .ids = idv, .n_ids = 3, .digest = digest};
    CHECK(signed_request_sign(sig, &ids[2], &r) == 0);
    CHECK(signed_request_verify(ids[2].x.pub, sig, &r) == 1);
    CHECK(signed_request_verify(ids[3].x.pub, sig, &r) == 0); /* another device's key */
    struct signed_request t = r;
    t.type = "relay_fetch";
    CHECK(signed_request_verify(ids[2].x.pub, sig, &t) == 0);
    t = r, t.user = "bob";
    CHECK(signed_request_verify(ids[2].x.pub, sig, &t) == 0);
    t = r, t.device_id = 3;
    CHECK(signed_request_verify(ids[2].x.pub, sig, &t) == 0);
    t = r, t.counter = 42;
    CHECK(signed_request_verify(ids[2].x.pub, sig, &t) == 0);
    t = r, t.ids = other;
    CHECK(signed_request_verify(ids[2].x.pub, sig, &t) == 0);
    t = r, t.n_ids = 2;
    CHECK(signed_request_verify(ids[2].x.pub, sig, &t) == 0);
    t = r, t.digest = NULL;
    CHECK(signed_request_verify(ids[2].x.pub, sig, &t) == 0);
    sig[5] ^= 1;
    CHECK(signed_request_verify(ids[2].x.pub, sig, &r) == 0);
}

int main(void)
{
    for (size_t i = 1; i < 6; i++)
        CHECK(curve_identity_generate(&ids[i]) == 0);
    test_valid();
    test_broken();
    test_signed_requests();
    rand_pool_wipe();
    return check_finish("test_devlist");
}
