/* arena.h - the request arena behind cJSON's allocator.
 *
 * cJSON allocates every node and string separately; for a small request that
 * is a dozen malloc/free pairs, more than the encryption costs. The loop
 * gives cJSON a bump allocator instead, emptied once the lines parsed into it
 * are answered. Emptying it also wipes everything the requests held
 * (plaintexts, keys) in one pass, and the memory is reused, so big messages
 * do not pay first-touch page faults again.
 *
 * cJSON's hooks take no context pointer, so each thread names the arena it
 * allocates from in arena_now: the reader the batch it parses into, the
 * worker its own (for what handlers build with cJSON). Nothing parsed from a
 * request may be kept after its handler returns.
 */
#ifndef SECURITOR_NODE_ARENA_H
#define SECURITOR_NODE_ARENA_H

#include <stdbool.h>
#include <stddef.h>

struct arena_chunk;
struct arena {
    struct arena_chunk *head, *cur;
    /* The budget is checked only when an allocation needs the next chunk,
     * so the common path stays a bump of a pointer: `reached` is the
     * capacity of the chunks up to cur, and may pass `limit` by at most one
     * chunk. */
    size_t reached;
    size_t limit;      /* reached may not pass it (0: no limit) */
    bool over_budget;  /* an allocation was refused for the limit */
};

extern _Thread_local struct arena *arena_now;

/* n bytes from arena_now (max_align_t-aligned), or NULL. */
void *arena_alloc(size_t n);
/* From now on at most `bytes` more (to within one chunk); 0: no limit. */
void arena_limit(struct arena *a, size_t bytes);
/* Installs arena_alloc as cJSON's allocator (for both threads). */
void arena_hooks_install(void);
void arena_hooks_remove(void);
/* Wipes and empties the arena. Chunks beyond `keep` bytes in all are freed,
 * so that one huge request does not keep its memory. Returns the bytes freed. */
size_t arena_reset(struct arena *a, size_t keep);
/* Wipes and frees everything. */
void arena_release(struct arena *a);

#endif
