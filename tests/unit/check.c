#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "securitor/codec.h"

unsigned long check_passed, check_failed;
static unsigned long vectors_loaded;

void check_report(bool ok, const char *file, int line, const char *expr)
{
    if (ok) {
        check_passed++;
        return;
    }
    check_failed++;
    if (check_failed <= 50)
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, expr);
}

static void print_hex(const char *label, const uint8_t *b, size_t n)
{
    fprintf(stderr, "  %s ", label);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%02x", b[i]);
    fputc('\n', stderr);
}

bool check_bytes_eq(const uint8_t *got, const uint8_t *want, size_t n, const char *file,
                    int line, const char *what)
{
    bool ok = memcmp(got, want, n) == 0;
    check_report(ok, file, line, what);
    if (!ok && check_failed <= 50) {
        print_hex("got: ", got, n);
        print_hex("want:", want, n);
    }
    return ok;
}

int check_finish_vectors(const char *suite)
{
    if (!vectors_loaded) {
        printf("%s: skipped: no vector file found (SECURITOR_VECTORS)\n", suite);
        return CHECK_SKIPPED;
    }
    return check_finish(suite);
}

int check_finish(const char *suite)
{
    printf("%s: %lu passed, %lu failed\n", suite, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

uint8_t *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    uint8_t *out = malloc(n / 2 + 1);
    if (!out || hex_decode(out, hex, n)) {
        fprintf(stderr, "test bug: bad hex literal \"%s\"\n", hex);
        abort();
    }
    if (len)
        *len = n / 2;
    return out;
}

cJSON *load_vectors(const char *rel)
{
    const char *dir = getenv("SECURITOR_VECTORS");
    char path[4096];
    if (!dir) {
        printf("note: SECURITOR_VECTORS is not set; skipping %s\n", rel);
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("note: %s not present; skipping\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot read %s\n", path);
        abort();
    }
    fclose(f);
    data[size] = 0;
    cJSON *root = cJSON_ParseWithLength(data, (size_t)size);
    free(data);
    if (root)
        vectors_loaded++;
    if (!root) {
        fprintf(stderr, "%s is not JSON\n", path);
        abort();
    }
    return root;
}

static uint64_t rng_state = 1;

uint64_t test_rand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

void test_seed(void)
{
    const char *s = getenv("SECURITOR_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
    if (!seed)
        seed = 1;
    rng_state = seed;
    printf("seed: %llu (set SECURITOR_SEED to repeat)\n", (unsigned long long)seed);
}
