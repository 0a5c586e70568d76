/* ringstate.c - the keyring as rows of a state (see ringstate.h). */
#include "ringstate.h"

#include <stdlib.h>
#include <string.h>

#include "securitor/wipe.h"

#define KIND_KEY "sym_key"
#define KIND_RING "sym_ring"
#define ROW_FORMAT 1
#define KEY_VALUE_LEN (1 + AEAD_KEY_LEN)
#define RING_VALUE_LEN (1 + 3 * 8)

struct ring_entry {
    long long id;
    uint8_t key[AEAD_KEY_LEN];
};

struct ring_loader {
    bool has_ring;
    long long next_id, trimmed_below, min_decryption_version;
    size_t n;
    struct ring_entry e[KEYRING_MAX_VERSIONS]; /* in the order the rows came */
};

static void put_u64(uint8_t out[static 8], long long v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)((unsigned long long)v >> (56 - 8 * i));
}

/* A big-endian id in [1, KEYRING_MAX_ID], or 0 when it is not one. */
static long long get_id(const uint8_t in[static 8])
{
    unsigned long long v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v >= 1 && v <= (unsigned long long)KEYRING_MAX_ID ? (long long)v : 0;
}

/* ============================================================================
 * Reading
 * ========================================================================== */

struct ring_loader *ringstate_loader_new(void) { return calloc(1, sizeof(struct ring_loader)); }

void ringstate_loader_free(struct ring_loader *l)
{
    if (!l)
        return;
    WIPE_PTR(l);
    free(l);
}

int ringstate_load_row(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                       const uint8_t *value, size_t value_len)
{
    struct ring_loader *l = ctx;
    if (!strcmp(kind, KIND_KEY)) {
        long long id = key_len == 8 ? get_id(key) : 0;
        if (!id || value_len != KEY_VALUE_LEN || value[0] != ROW_FORMAT ||
            l->n == KEYRING_MAX_VERSIONS)
            return -1;
        l->e[l->n].id = id;
        memcpy(l->e[l->n].key, value + 1, AEAD_KEY_LEN);
        l->n++;
        return 0;
    }
    if (!strcmp(kind, KIND_RING)) {
        if (key_len || value_len != RING_VALUE_LEN || value[0] != ROW_FORMAT || l->has_ring)
            return -1;
        l->next_id = get_id(value + 1);
        l->trimmed_below = get_id(value + 9);
        l->min_decryption_version = get_id(value + 17);
        l->has_ring = true;
        return l->next_id && l->trimmed_below && l->min_decryption_version ? 0 : -1;
    }
    return -1; /* not a row of symmetric-node: another program's state */
}

bool ringstate_empty(const struct ring_loader *l) { return !l->has_ring && !l->n; }

int ringstate_check(const struct ring_loader *l)
{
    bool seen[KEYRING_MAX_VERSIONS] = {false};
    if (ringstate_empty(l))
        return 0;
    /* The live versions are exactly [trimmed_below, next_id - 1], the
     * minimum among them (keyring.h): any other shape is a row lost, added
     * or put back from an older state. */
    long long tb = l->trimmed_below, next = l->next_id, min = l->min_decryption_version;
    if (!l->has_ring || next <= tb || min < tb || min >= next ||
        next - tb != (long long)l->n)
        return -1;
    for (size_t i = 0; i < l->n; i++) {
        long long at = l->e[i].id - tb;
        if (at < 0 || at >= (long long)l->n || seen[at])
            return -1;
        seen[at] = true;
    }
    return 0;
}

int ringstate_build(const struct ring_loader *l, struct keyring *kr, struct ring_saved *saved)
{
    size_t at[KEYRING_MAX_VERSIONS]; /* offset from trimmed_below -> entry */
    long long id;
    if (ringstate_check(l) || ringstate_empty(l) || keyring_init(kr, l->trimmed_below))
        goto fail;
    for (size_t i = 0; i < l->n; i++)
        at[l->e[i].id - l->trimmed_below] = i;
    /* keyring_add gives ids in order from trimmed_below: each version gets
     * its own id back. */
    for (size_t k = 0; k < l->n; k++)
        if (keyring_add(kr, l->e[at[k]].key, &id) != KEYRING_OK ||
            id != l->trimmed_below + (long long)k)
            goto fail;
    if (keyring_set_min(kr, l->min_decryption_version) != KEYRING_OK)
        goto fail;
    *saved = ringstate_saved(kr);
    return 0;
fail:
    keyring_free(kr);
    return -1;
}

/* ============================================================================
 * Writing
 * ========================================================================== */

struct ring_saved ringstate_saved(const struct keyring *kr)
{
    return (struct ring_saved){.next_id = kr->next_id, .trimmed_below = kr->trimmed_below,
                               .min_decryption_version = kr->min_decryption_version,
                               .written = true};
}

bool ringstate_changed(const struct keyring *kr, const struct ring_saved *saved)
{
    return !saved->written || saved->next_id != kr->next_id ||
           saved->trimmed_below != kr->trimmed_below ||
           saved->min_decryption_version != kr->min_decryption_version;
}

static long long min_ll(long long a, long long b) { return a < b ? a : b; }
static long long max_ll(long long a, long long b) { return a > b ? a : b; }

int ringstate_write(const struct keyring *kr, const struct ring_saved *saved, struct state *st)
{
    uint8_t id_be[8], value[KEY_VALUE_LEN], ring[RING_VALUE_LEN];
    int rc = -1;
    if (!kr->n)
        return -1;
    /* A new state holds no version yet: nothing to delete, all to write. */
    long long s_next = saved->written ? saved->next_id : kr->trimmed_below;
    long long s_below = saved->written ? saved->trimmed_below : kr->trimmed_below;
    /* Trimmed since the last commit: versions the state holds, now gone. */
    for (long long id = s_below; id < min_ll(kr->trimmed_below, s_next); id++) {
        put_u64(id_be, id);
        if (state_del(st, KIND_KEY, id_be, sizeof(id_be)))
            goto out;
    }
    /* Made since: versions the state lacks and that still live (one made
     * and trimmed between two commits never reaches the file). */
    for (long long id = max_ll(s_next, kr->trimmed_below); id < kr->next_id; id++) {
        put_u64(id_be, id);
        value[0] = ROW_FORMAT;
        memcpy(value + 1, kr->v[id - kr->v[0].id].key, AEAD_KEY_LEN);
        if (state_put(st, KIND_KEY, id_be, sizeof(id_be), value, sizeof(value)))
            goto out;
    }
    ring[0] = ROW_FORMAT;
    put_u64(ring + 1, kr->next_id);
    put_u64(ring + 9, kr->trimmed_below);
    put_u64(ring + 17, kr->min_decryption_version);
    if (state_put(st, KIND_RING, "", 0, ring, sizeof(ring)))
        goto out;
    rc = 0;
out:
    WIPE_OBJ(value);
    return rc;
}
