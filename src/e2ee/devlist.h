/* devlist.h - a user's device list as a signed chain (PROTOCOL.md §5.1).
 *
 * Version 1 lists the account's first device (device 1) and is signed by
 * it; version n+1 is signed by a device of version n and covers the hash of
 * version n. A device that verifies the whole chain and pins where it got
 * to cannot be shown a list the user's own devices did not sign: not a
 * ghost device added by the directory, not a device removed or swapped, not
 * an older version (rollback), not another history (fork).
 *
 * The signed bytes of version n (all integers big-endian):
 *
 *   "securitor device list v1"      24 bytes
 *   user                            u16 length, then its bytes
 *   version                         u32
 *   previous hash                   32 bytes: SHA-256 of version n-1's signed
 *                                   bytes and signature; zeros for version 1
 *   device count                    u32
 *   each device, by ascending id    u32 device id, 33-byte identity key
 *                                   (0x05 || u), u32 registration id
 *   signer                          u32 device id
 *
 * The signature is the signer's identity key's (curve_sign: Ed25519 with the
 * libsignal sign-bit convention, verified through the birational map).
 * Rules a chain must keep, beyond the signatures: versions 1, 2, 3, ... with
 * no gap; device ids unique within a list; a device keeps its identity key
 * and registration id from version to version; a device id that appears
 * for the first time is larger than every id before it (ids are never
 * reused, so a revoked device cannot come back as itself); at least one
 * device in every list.
 */
#ifndef SECURITOR_E2EE_DEVLIST_H
#define SECURITOR_E2EE_DEVLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/buf.h"
#include "securitor/curve.h"

#define DEVLIST_MAX_DEVICES 32
#define DEVLIST_HASH_LEN 32
#define DEVLIST_USER_MAX 256

struct devlist_device {
    uint32_t device_id;
    uint8_t identity[CURVE_KEY_LEN];
    uint32_t registration_id;
};

struct devlist {
    uint32_t version;
    struct devlist_device devices[DEVLIST_MAX_DEVICES]; /* by ascending id */
    size_t n;
    uint32_t signer;
    uint8_t signature[CURVE_SIG_LEN];
};

/* Where a device got to in a user's chain: the newest version it has
 * verified, and that version's hash. */
struct devlist_pin {
    uint32_t version; /* 0: nothing pinned yet */
    uint8_t hash[DEVLIST_HASH_LEN];
};

enum devlist_result {
    DEVLIST_OK = 0,
    DEVLIST_BAD_FORM,      /* versions out of order, duplicate ids, too many, none */
    DEVLIST_BAD_SIGNATURE, /* a signature does not verify, or its signer is not allowed */
    DEVLIST_CHANGED_DEVICE,/* a device's identity or registration id changed */
    DEVLIST_REUSED_ID,     /* a new device with an id not above every earlier one */
    DEVLIST_ROLLBACK,      /* shorter than the pinned chain */
    DEVLIST_FORK,          /* the pinned version is not part of it */
    DEVLIST_INTERNAL,      /* OpenSSL failed */
};

const char *devlist_result_text(enum devlist_result r);

/* Sorts the devices by id (the canonical order). */
void devlist_sort(struct devlist *l);
/* The device with that id, or NULL. */
const struct devlist_device *devlist_find(const struct devlist *l, uint32_t device_id);

/* Signs l (its version, devices and signer set) with the identity `me` of
 * its signer, after the version whose hash is prev_hash (NULL for version
 * 1). Sorts the devices first. 0 or -1. */
__attribute__((warn_unused_result))
int devlist_sign(struct devlist *l, const char *user, const uint8_t *prev_hash,
                 const struct curve_identity *me);

/* Verifies the chain lists[0..n) (oldest first) of `user` from version 1,
 * and that it extends the pin (NULL: no pin yet). On DEVLIST_OK, *newest
 * (if not NULL) is set to where the chain ends. */
enum devlist_result devlist_verify_chain(const char *user, const struct devlist *lists, size_t n,
                                         const struct devlist_pin *pin,
                                         struct devlist_pin *newest);
/* Verifies one new version `next` on top of `prev` (whose hash is given):
 * what a directory checks before it stores an update. `highest` is the
 * largest device id any version up to prev listed: a device new to `next`
 * must have a larger one (ids are never reused). */
enum devlist_result devlist_verify_next(const char *user, const struct devlist *prev,
                                        const uint8_t prev_hash[static DEVLIST_HASH_LEN],
                                        uint32_t highest, const struct devlist *next);
/* The largest device id l lists (0 for none). */
uint32_t devlist_max_id(const struct devlist *l);
/* The hash of a list (its signed bytes and signature), given the hash of
 * the version before (zeros for version 1). 0 or -1. */
__attribute__((warn_unused_result))
int devlist_hash(uint8_t out[static DEVLIST_HASH_LEN], const char *user, const struct devlist *l,
                 const uint8_t prev_hash[static DEVLIST_HASH_LEN]);

#endif
