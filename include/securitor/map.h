/* map.h - a hash table from byte strings to pointers.
 *
 * Names come from the network (user names, peer names), so the table hashes
 * with SipHash-2-4 under a key drawn at start (OpenSSL's EVP_MAC "SIPHASH"):
 * nobody who does not know the key can make names collide on purpose and
 * turn lookups linear. Open addressing with linear probing; deleted slots
 * are tombstones, swept when the table grows.
 *
 * The table does not own keys or values: a key must stay valid and unchanged
 * while its entry is in the table (it usually lives inside the value, e.g. a
 * user's name). Not thread-safe: one thread per table (the loop's worker).
 */
#ifndef SECURITOR_MAP_H
#define SECURITOR_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map_slot;

struct map {
    struct map_slot *slots;
    size_t cap;  /* a power of two, or 0 */
    size_t n;    /* live entries */
    size_t used; /* live entries and tombstones */
    /* The slot map_get found last, tried first by the next map_get (runs of
     * requests name the same user and peer): a hint only, its key compared
     * like any other, so a moved or removed entry just misses. */
    size_t hint;
};

/* The value stored under key (len bytes), or NULL. */
void *map_get(const struct map *m, const void *key, size_t len);
/* Stores value (not NULL) under key, replacing any value there. Returns 0,
 * or -1 when out of memory or the hash failed (the table is unchanged). */
__attribute__((warn_unused_result))
int map_put(struct map *m, const void *key, size_t len, void *value);
/* Removes key; returns its value, or NULL when absent. */
void *map_remove(struct map *m, const void *key, size_t len);
/* Iteration: start with *pos = 0; returns each value once, then NULL. The
 * table must not change during the walk except by map_remove of the entry
 * just returned. */
void *map_next(const struct map *m, size_t *pos);
/* Frees the table (not the keys or values). */
void map_free(struct map *m);

/* The same with NUL-terminated string keys. */
#include <string.h>
static inline void *map_get_str(const struct map *m, const char *key)
{
    return map_get(m, key, strlen(key));
}
__attribute__((warn_unused_result))
static inline int map_put_str(struct map *m, const char *key, void *value)
{
    return map_put(m, key, strlen(key), value);
}
static inline void *map_remove_str(struct map *m, const char *key)
{
    return map_remove(m, key, strlen(key));
}

#endif
