/* check.h - a small assertion kit for the unit tests.
 *
 * CHECK records a failure (file:line and the expression) and goes on, so one
 * run shows every broken case; check_finish() prints "N passed, N failed" and
 * gives the exit status.
 */
#ifndef SECURITOR_TEST_CHECK_H
#define SECURITOR_TEST_CHECK_H

#undef NDEBUG
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

extern unsigned long check_passed, check_failed;

void check_report(bool ok, const char *file, int line, const char *expr);
#define CHECK(expr) check_report((expr), __FILE__, __LINE__, #expr)
/* Compares n bytes; on mismatch prints both in hex. */
bool check_bytes_eq(const uint8_t *got, const uint8_t *want, size_t n, const char *file,
                    int line, const char *what);
#define CHECK_BYTES(got, want, n) check_bytes_eq((got), (want), (n), __FILE__, __LINE__, #got)

/* RUNNING_ON_VALGRIND (valgrind's header, or 0 without it), and
 * CHECK_UNDER_ASAN: 1 in an AddressSanitizer build. Both hold freed memory
 * back and keep copies of their own, which a few checks about addresses
 * and memory contents must allow for. */
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CHECK_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHECK_UNDER_ASAN 1
#endif
#endif
#ifndef CHECK_UNDER_ASAN
#define CHECK_UNDER_ASAN 0
#endif

int check_finish(const char *suite);
/* The exit status ctest reads as "skipped" (SKIP_RETURN_CODE). */
#define CHECK_SKIPPED 77
/* For suites that only check vectors: check_finish, or CHECK_SKIPPED (with a
 * line saying so) when no vector file could be loaded. */
int check_finish_vectors(const char *suite);

/* Decodes a hex literal into a fresh buffer (never NULL: aborts on bad hex
 * or no memory, since that is a broken test, not a failed check). */
uint8_t *unhex(const char *hex, size_t *len);

/* Loads a JSON file from $SECURITOR_VECTORS/<rel>; NULL (with a note) when
 * the vectors folder or file is absent. Counts the files it loaded. */
cJSON *load_vectors(const char *rel);

/* A reproducible PRNG for property tests (xorshift64*); not for keys. */
uint64_t test_rand(void);
/* Seeds it from $SECURITOR_SEED or the clock, and prints the seed. */
void test_seed(void);

#endif
