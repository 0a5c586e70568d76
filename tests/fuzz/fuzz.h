/* fuzz.h - what the libFuzzer targets share.
 *
 * A target is LLVMFuzzerTestOneInput over one input; a property that fails
 * calls FUZZ_CHECK's abort(), which libFuzzer reports as a crash and saves
 * the input for (see scripts/fuzz). The code under test is built with
 * AddressSanitizer and UndefinedBehaviorSanitizer as well, so a read past
 * the input (which libFuzzer hands over in a buffer of exactly its size) or
 * undefined behaviour stops the run too.
 */
#ifndef SECURITOR_FUZZ_H
#define SECURITOR_FUZZ_H

#undef NDEBUG
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the run, naming the property that failed. */
#define FUZZ_CHECK(expr)                                                              \
    do {                                                                              \
        if (!(expr)) {                                                                \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #expr); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* A copy of n bytes in a heap block of exactly n bytes (at least 1), so that
 * AddressSanitizer sees any read past them; aborts when out of memory. */
static inline void *fuzz_dup(const void *p, size_t n)
{
    unsigned char *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

/* n uninitialised bytes in a heap block of exactly n bytes (at least 1). */
static inline void *fuzz_alloc(size_t n)
{
    void *q = malloc(n ? n : 1);
    if (!q)
        abort();
    return q;
}

#endif
