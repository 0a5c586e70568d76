/* fuzz_node.c - whole request lines through a node's dispatch table, the
 * node's state carried from input to input. Built twice:
 *   fuzz_symmetric  symmetric-node (src/symmetric/main.c), random key, no
 *                   state dir;
 *   fuzz_e2ee       e2ee-node (src/e2ee/main.c), no state dir, in one of
 *                   four roles picked by the input's first byte (mod 4):
 *                   standalone, the directory, the relay, a host of devices
 *                   (with --directory dir --relay relay).
 * The binary's main.c is compiled in (its main renamed), so the real
 * handlers, hooks and table run, through the loop's own reader and worker
 * code on one thread (node_embed_*: parse_line, dispatch_line, the reply
 * writer, output commit, timers that are due).
 *
 * An input is any number of lines. Each is answered by the same node and
 * app as the inputs before it: sessions, users, keys, rotations, device
 * lists and mailboxes carry over. A fresh app and node are made at the
 * start, when the role changes, and every RESET_EVERY inputs (so that the
 * state stays small and a crash found after many inputs has few to
 * replay: libFuzzer's -runs over the last inputs reproduces it).
 * Properties:
 *   1. Nothing crashes, leaks (at the reset and at exit, LeakSanitizer),
 *      reads out of bounds or hangs.
 *   2. Every line the node writes is one RFC 8259 object (json_strict.h,
 *      not cJSON, which is laxer) and a Maelstrom envelope: src and dest
 *      strings, body an object with a string type.
 *   3. The node never stops itself (it has no state to fail on).
 */
#include "fuzz.h"

#define main node_program_main
int node_program_main(int argc, char **argv);
#if defined(FUZZ_SYMMETRIC)
#include "../../src/symmetric/main.c"
#define ROLES 1
#elif defined(FUZZ_E2EE)
#include "../../src/e2ee/main.c"
#define ROLES 4
#else
#error "define FUZZ_SYMMETRIC or FUZZ_E2EE"
#endif
#undef main

#include "json_strict.h"

#define RESET_EVERY 2000

static struct app app;
static struct node *node;
static struct buf out;
static int role = -1;
static unsigned long inputs;

#if defined(FUZZ_SYMMETRIC)
static void app_make(int r)
{
    uint8_t key[KEYSOURCE_KEY_LEN];
    (void)r;
    memset(&app, 0, sizeof(app));
    FUZZ_CHECK(rand_secret(key, sizeof(key)) == 0);
    FUZZ_CHECK(ring_from_key(&app.keys, key) == 0 && blind_index_init(&app.index, key) == 0);
    WIPE_OBJ(key);
}

static void app_free(void)
{
    durable_close(&app.durable);
    keyring_free(&app.keys);
    blind_index_free(&app.index);
    buf_free(&app.in);
    buf_free(&app.out);
    buf_free(&app.aad);
}

static const char *node_name(int r)
{
    (void)r;
    return "n1";
}
#else
static const char *node_name(int r)
{
    static const char *const NAMES[] = {"n1", "dir", "relay", "n2"};
    return NAMES[r];
}

static void app_make(int r)
{
    memset(&app, 0, sizeof(app));
    app.max_users = 32; /* keeps the state small; past it error 22 */
    if (r) {
        app.directory_id = "dir";
        app.relay_id = "relay";
    }
    store_init(&app.store, app.max_users);
}

static void app_free(void)
{
    devices_free(&app);
    relay_free(&app);
    directory_free(&app);
    store_free(&app.store);
    durable_close(&app.durable);
    buf_free(&app.wire);
    buf_free(&app.bytes);
    buf_free(&app.plain);
}
#endif

/* Checks every complete line in out, then empties it. */
static void check_output(void)
{
    size_t start = 0;
    while (start < out.len) {
        char *nl = memchr(out.data + start, '\n', out.len - start);
        FUZZ_CHECK(nl != NULL); /* every line the node writes ends in '\n' */
        size_t len = (size_t)(nl - (out.data + start));
        bool envelope = false;
        bool ok = json_strict_object(out.data + start, len, &envelope);
        if (!ok || !envelope)
            fprintf(stderr, "output line: %.*s\n", (int)(len < 2000 ? len : 2000),
                    out.data + start);
        FUZZ_CHECK(ok);
        FUZZ_CHECK(envelope);
        start += len + 1;
    }
    buf_reset(&out);
}

static void close_node(void)
{
    if (!node)
        return;
    FUZZ_CHECK(node_embed_close(node) == 0);
    node = NULL;
    check_output();
    app_free();
    role = -1;
}

static void at_exit(void)
{
    close_node();
    buf_free(&out);
}

static void open_node(int r)
{
    char init[256];
    app_make(r);
    node = node_embed_open(&PROGRAM, &app, &out);
    FUZZ_CHECK(node != NULL);
    role = r;
    int n = snprintf(init, sizeof(init),
                     "{\"src\":\"c0\",\"dest\":\"%s\",\"body\":{\"type\":\"init\",\"msg_id\":1,"
                     "\"node_id\":\"%s\",\"node_ids\":[\"n1\",\"n2\",\"dir\",\"relay\"]}}",
                     node_name(r), node_name(r));
    FUZZ_CHECK(node_embed_lines(node, init, (size_t)n) == 0);
    check_output();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool registered;
    if (!registered) {
        registered = true;
        atexit(at_exit);
    }
    int r = 0;
    if (ROLES > 1) {
        if (!size)
            return 0;
        r = data[0] % ROLES;
        data++;
        size--;
    }
    if (role != r || ++inputs % RESET_EVERY == 0)
        close_node();
    if (!node)
        open_node(r);
    char *copy = fuzz_dup(data, size);
    FUZZ_CHECK(node_embed_lines(node, copy, size) == 0);
    free(copy);
    check_output();
    return 0;
}
