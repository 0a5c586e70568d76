/* arena.c - the request arena (see arena.h). */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "securitor/wipe.h"

struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    max_align_t data[]; /* cap bytes */
};

_Thread_local struct arena *arena_now;

#define ARENA_CHUNK ((size_t)64 << 10)

/* Takes n more bytes from the chunks after the current one, or a new chunk,
 * within the arena's limit. */
static void *arena_alloc_slow(struct arena *a, size_t n)
{
    for (struct arena_chunk *c = a->cur ? a->cur->next : a->head; c; c = c->next) {
        if (a->limit && a->reached + c->cap > a->limit)
            goto over;
        a->reached += c->cap;
        a->cur = c;
        if (c->cap - c->used >= n) {
            void *p = (char *)c->data + c->used;
            c->used += n;
            return p;
        }
    }
    size_t cap = n > ARENA_CHUNK / 2 ? n : ARENA_CHUNK;
    if (a->limit && a->reached + cap > a->limit)
        goto over;
    struct arena_chunk *c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    *c = (struct arena_chunk){.cap = cap, .used = n};
    if (!a->head) {
        a->head = c;
    } else { /* append, so chunks are tried in order after a reset */
        struct arena_chunk *t = a->cur ? a->cur : a->head;
        while (t->next)
            t = t->next;
        t->next = c;
    }
    a->cur = c;
    a->reached += cap;
    return c->data;
over:
    a->over_budget = true;
    return NULL;
}

void *arena_alloc(size_t n)
{
    struct arena *a = arena_now;
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct arena_chunk *c = a->cur;
    if (c && c->cap - c->used >= n) { /* nearly always */
        void *p = (char *)c->data + c->used;
        c->used += n;
        return p;
    }
    return arena_alloc_slow(a, n);
}

void arena_limit(struct arena *a, size_t bytes)
{
    a->limit = bytes ? a->reached + bytes : 0;
    a->over_budget = false;
}

static void arena_free_noop(void *p) { (void)p; }

void arena_hooks_install(void)
{
    cJSON_Hooks hooks = {.malloc_fn = arena_alloc, .free_fn = arena_free_noop};
    cJSON_InitHooks(&hooks);
}

void arena_hooks_remove(void) { cJSON_InitHooks(NULL); }

size_t arena_reset(struct arena *a, size_t keep)
{
    size_t kept = 0, freed = 0;
    struct arena_chunk **link = &a->head;
    while (*link) {
        struct arena_chunk *c = *link;
        wipe_bytes(c->data, c->used);
        c->used = 0;
        if (kept + c->cap > keep && kept) { /* the first chunk always stays */
            *link = c->next;
            freed += c->cap;
            free(c);
            continue;
        }
        kept += c->cap;
        link = &c->next;
    }
    a->cur = a->head;
    a->reached = a->head ? a->head->cap : 0;
    a->limit = 0;
    a->over_budget = false;
    return freed;
}

void arena_release(struct arena *a)
{
    arena_reset(a, 0);
    free(a->head);
    *a = (struct arena){0};
}
