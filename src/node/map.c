/* map.c - hash table keyed by SipHash (see map.h). */
#include "securitor/map.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

struct map_slot {
    uint64_t hash;
    const void *key; /* NULL: empty; TOMBSTONE: deleted */
    size_t len;
    void *value;
};

static const char TOMBSTONE_MARK;
#define TOMBSTONE ((const void *)&TOMBSTONE_MARK)

/* SipHash-2-4 with 64-bit output under a random key, set up on first use. */
static int hash_key(const void *key, size_t len, uint64_t *out)
{
    static EVP_MAC_CTX *ctx;
    uint8_t digest[8];
    size_t got = 0;
    if (!ctx) {
        uint8_t k[16];
        size_t size = sizeof(digest);
        OSSL_PARAM params[] = {
            OSSL_PARAM_size_t(OSSL_MAC_PARAM_SIZE, &size),
            OSSL_PARAM_END,
        };
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
        EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
        EVP_MAC_free(mac);
        if (!c || RAND_bytes(k, sizeof(k)) != 1 || !EVP_MAC_init(c, k, sizeof(k), params)) {
            EVP_MAC_CTX_free(c);
            ERR_clear_error();
            return -1;
        }
        ctx = c;
    }
    /* A NULL key re-initialises with the key already set. */
    if (!EVP_MAC_init(ctx, NULL, 0, NULL) || !EVP_MAC_update(ctx, key, len) ||
        !EVP_MAC_final(ctx, digest, &got, sizeof(digest)) || got != sizeof(digest)) {
        ERR_clear_error();
        return -1;
    }
    memcpy(out, digest, sizeof(*out));
    return 0;
}

/* The slot holding key, or the empty slot where it would go. */
static struct map_slot *find(const struct map *m, const void *key, size_t len, uint64_t hash,
                             struct map_slot **free_slot)
{
    size_t mask = m->cap - 1;
    *free_slot = NULL;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        struct map_slot *s = &m->slots[i];
        if (!s->key) {
            if (!*free_slot)
                *free_slot = s;
            return NULL;
        }
        if (s->key == TOMBSTONE) {
            if (!*free_slot)
                *free_slot = s;
        } else if (s->hash == hash && s->len == len && !memcmp(s->key, key, len)) {
            return s;
        }
    }
}

void *map_get(const struct map *m, const void *key, size_t len)
{
    uint64_t h;
    struct map_slot *free_slot, *s;
    if (!m->n)
        return NULL;
    /* The last hit again: no SipHash (an EVP_MAC call) for it. The hint is
     * not part of the table's value, hence the cast; one thread per table. */
    s = m->hint < m->cap ? &m->slots[m->hint] : NULL;
    if (s && s->key && s->key != TOMBSTONE && s->len == len && !memcmp(s->key, key, len))
        return s->value;
    if (hash_key(key, len, &h))
        return NULL;
    s = find(m, key, len, h, &free_slot);
    if (!s)
        return NULL;
    ((struct map *)m)->hint = (size_t)(s - m->slots);
    return s->value;
}

/* Rehashes into a table of cap slots (dropping tombstones). */
static int resize(struct map *m, size_t cap)
{
    struct map_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct map_slot *s = &m->slots[i];
        if (!s->key || s->key == TOMBSTONE)
            continue;
        size_t j = (size_t)s->hash & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->n;
    return 0;
}

int map_put(struct map *m, const void *key, size_t len, void *value)
{
    uint64_t h;
    struct map_slot *free_slot, *s;
    if (hash_key(key, len, &h))
        return -1;
    /* At most 3/4 full, counting tombstones, so probes stay short and
     * always end at an empty slot. */
    if (4 * (m->used + 1) > 3 * m->cap) {
        size_t cap = 16; /* at most half full after the rehash */
        while (2 * (m->n + 1) > cap)
            cap *= 2;
        if (resize(m, cap))
            return -1;
    }
    s = find(m, key, len, h, &free_slot);
    if (s) {
        s->key = key; /* the caller's current copy of the same bytes */
        s->value = value;
        return 0;
    }
    if (!free_slot->key)
        m->used++;
    *free_slot = (struct map_slot){.hash = h, .key = key, .len = len, .value = value};
    m->n++;
    return 0;
}

void *map_remove(struct map *m, const void *key, size_t len)
{
    uint64_t h;
    struct map_slot *free_slot, *s;
    if (!m->n || hash_key(key, len, &h))
        return NULL;
    s = find(m, key, len, h, &free_slot);
    if (!s)
        return NULL;
    void *value = s->value;
    *s = (struct map_slot){.key = TOMBSTONE};
    m->n--;
    return value;
}

void *map_next(const struct map *m, size_t *pos)
{
    while (*pos < m->cap) {
        struct map_slot *s = &m->slots[(*pos)++];
        if (s->key && s->key != TOMBSTONE)
            return s->value;
    }
    return NULL;
}

void map_free(struct map *m)
{
    free(m->slots);
    *m = (struct map){0};
}
