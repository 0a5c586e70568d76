/* test_map.c - map.h against a plain array, through random puts, gets and
 * removes on short keys that often share a length and a prefix, so that
 * map_get's hint (the slot of its last hit) is tried on the wrong entry, a
 * removed one and a table that has grown since: it must never answer for
 * another key. The seed is printed.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "securitor/map.h"

#define KEYS 64

struct entry {
    char key[4];
    size_t len;
    int value;
    bool in;
};

int main(void)
{
    test_seed();
    static struct entry e[KEYS];
    struct map m = {0};
    for (int i = 0; i < KEYS; i++) {
        /* Distinct keys: most of 3 bytes with a shared first byte, the
         * rest of 2 bytes, prefixes of some of them. */
        e[i].len = i < 48 ? 3 : 2;
        e[i].key[0] = 'a';
        e[i].key[1] = (char)('a' + (i < 48 ? i / 16 : i - 48));
        e[i].key[2] = (char)('a' + i % 16);
        e[i].value = i;
    }
    for (int step = 0; step < 200000; step++) {
        struct entry *x = &e[test_rand() % KEYS];
        switch (test_rand() % 8) {
        case 0:
        case 1: /* put (or replace) */
            CHECK(map_put(&m, x->key, x->len, &x->value) == 0);
            x->in = true;
            break;
        case 2: { /* remove */
            void *v = map_remove(&m, x->key, x->len);
            CHECK(v == (x->in ? &x->value : NULL));
            x->in = false;
            break;
        }
        default: { /* get, often the same key twice */
            int reps = 1 + (int)(test_rand() % 3);
            for (int r = 0; r < reps; r++) {
                int *v = map_get(&m, x->key, x->len);
                if (x->in) {
                    CHECK(v == &x->value);
                    if (v != &x->value)
                        printf("  key %.*s: got %d\n", (int)x->len, x->key, v ? *v : -1);
                } else {
                    CHECK(v == NULL);
                }
            }
        }
        }
    }
    /* Everything still answers as the array says. */
    size_t n = 0;
    for (int i = 0; i < KEYS; i++) {
        CHECK(map_get(&m, e[i].key, e[i].len) == (e[i].in ? &e[i].value : NULL));
        n += e[i].in;
    }
    CHECK(m.n == n);
    map_free(&m);
    CHECK(map_get(&m, e[0].key, e[0].len) == NULL);
    return check_finish("map");
}
