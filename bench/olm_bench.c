/* olm_bench.c - libolm 3.2 on e2ee-node's three benchmark workloads, in-process.
 *
 * The peer that scripts/bench measures in the same run as e2ee-node, so that
 * the e2ee figures are ratios taken minutes (not days) apart. A bench tool
 * only: never linked into a node.
 *
 * usage: olm_bench [--workload NAME] [--count N | --seconds S] [--warmup N]
 *
 *   setups     Bob's one-time keys are published; Alice makes an outbound
 *              session from Bob's identity key and one of them and encrypts a
 *              first (pre-key) message; Bob makes the inbound session from it,
 *              removes the used one-time key and decrypts. Making the one-time
 *              keys (100 at a time, libolm's maximum) is not timed, as
 *              e2ee-node's 100 one-time prekeys are made before its timing.
 *   ping-pong  round trips on an established session, Alice to Bob and back:
 *              the sender alternates, so every message is a DH ratchet step.
 *   one-way    messages Alice to Bob on one chain (encrypt + decrypt), no
 *              ratchet step; Bob has answered once, so they are normal
 *              messages, not pre-key messages.
 *   keygen     not libolm: OpenSSL's X25519 key generation (EVP_PKEY_keygen)
 *              timed against its X25519 derive (EVP_PKEY_derive on a set-up
 *              context, as `openssl speed ecdhx25519` times it), in turns,
 *              per CPU second: what a key generation costs in X25519
 *              operations, for the setup bound (`openssl speed` in OpenSSL
 *              3.0 does not time key generation).
 *   all        setups, ping-pong and one-way (the default).
 *
 * Plaintexts are 14 bytes. Every decrypted message is checked. Random input
 * comes from OpenSSL's CSPRNG (RAND_bytes) in the sizes libolm asks for, and
 * is wiped after use. --count runs exactly N operations (keygen: at least
 * N/2 of each kind, in turns of 50); --seconds (default 1) runs until that
 * much time has been timed. --warmup (default 20) runs that many operations
 * untimed first.
 *
 * Prints one JSON line per workload:
 *   {"impl":"libolm 3.2.13","workload":"setups","unit":"setup","ops":N,
 *    "seconds":S,"rate":R,"cpu_seconds":C}
 * (ping-pong adds "messages"); cpu_seconds is the process's CPU time over the
 * same timed sections. Under `valgrind --tool=callgrind
 * --collect-atstart=no` only the timed operations are counted (the timed
 * sections toggle collection), so instructions per operation are
 * Collected / ops.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <olm/olm.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define COLLECT_TOGGLE() CALLGRIND_TOGGLE_COLLECT
#endif
#endif
#ifndef COLLECT_TOGGLE
#define COLLECT_TOGGLE() ((void)0)
#endif

static const char PLAINTEXT[] = "Secret message"; /* as scripts/bench_e2ee.py sends */
#define PT_LEN (sizeof(PLAINTEXT) - 1)
#define MSG_CAP 1024 /* a pre-key message with 14 bytes of plaintext is about 300 */
#define OTK_MAX 100  /* libolm 3.2's olm_account_max_number_of_one_time_keys */
#define KEY_CAP 64   /* a base64 Curve25519 key is 43 characters */

_Noreturn static void die(const char *what, const char *why)
{
    fprintf(stderr, "olm_bench: %s: %s\n", what, why);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        die("malloc", "out of memory");
    return p;
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

/* ============================================================================
 * Random input for libolm
 * ========================================================================== */

static uint8_t *rnd;
static size_t rnd_cap, rnd_used;

/* n fresh random bytes (NULL for n = 0), valid until rnd_wipe(). */
static void *rnd_get(size_t n)
{
    if (!n)
        return NULL;
    if (n > rnd_cap) {
        free(rnd);
        rnd = xmalloc(n);
        rnd_cap = n;
    }
    if (RAND_bytes(rnd, (int)n) != 1)
        die("RAND_bytes", "failed");
    rnd_used = n;
    return rnd;
}

/* libolm has copied what it needed: the bytes are key material. */
static void rnd_wipe(void)
{
    if (rnd_used)
        OPENSSL_cleanse(rnd, rnd_used);
    rnd_used = 0;
}

/* ============================================================================
 * Timing: a limit on operations or on timed seconds
 * ========================================================================== */

struct limit {
    long count;     /* > 0: exactly this many operations */
    double seconds; /* else: until this much time has been timed */
};

struct timer {
    double spent, start;         /* wall-clock */
    double cpu_spent, cpu_start; /* this process's CPU time */
    long ops;
    bool running;
};

/* Whether the timed sections toggle callgrind's collection: only in the
 * measured run, not in the warm-up. */
static bool collecting;

static void timer_start(struct timer *t)
{
    if (collecting)
        COLLECT_TOGGLE();
    t->cpu_start = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    t->start = now();
    t->running = true;
}

static void timer_stop(struct timer *t)
{
    t->spent += now() - t->start;
    t->cpu_spent += clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - t->cpu_start;
    t->running = false;
    if (collecting)
        COLLECT_TOGGLE();
}

/* Whether another operation is due. Counted runs never read the clock. */
static bool timer_more(const struct timer *t, const struct limit *l)
{
    if (l->count > 0)
        return t->ops < l->count;
    return t->spent + (t->running ? now() - t->start : 0) < l->seconds;
}

static const char *impl_name(void)
{
    static char name[32];
    uint8_t major, minor, patch;
    olm_get_library_version(&major, &minor, &patch);
    snprintf(name, sizeof(name), "libolm %u.%u.%u", major, minor, patch);
    return name;
}

static void report(const char *workload, const char *unit, const struct timer *t, int per_op)
{
    printf("{\"impl\":\"%s\",\"workload\":\"%s\",\"unit\":\"%s\",\"ops\":%ld,"
           "\"seconds\":%.6f,\"rate\":%.1f,\"cpu_seconds\":%.6f",
           impl_name(), workload, unit, t->ops, t->spent, t->spent > 0 ? t->ops / t->spent : 0.0,
           t->cpu_spent);
    if (per_op > 1)
        printf(",\"messages\":%ld", t->ops * per_op);
    printf("}\n");
    fflush(stdout);
}

/* ============================================================================
 * Accounts, sessions, messages
 * ========================================================================== */

struct account {
    OlmAccount *acc;
    char curve[KEY_CAP]; /* the Curve25519 identity key, base64 as libolm gives it */
    size_t curve_len;
};

/* The string value of "name" in libolm's flat JSON (keys never need escapes). */
static size_t json_string(char *out, size_t cap, const char *json, const char *name)
{
    char needle[32];
    snprintf(needle, sizeof(needle), "\"%s\":\"", name);
    const char *p = strstr(json, needle), *end;
    if (!p || !(end = strchr(p += strlen(needle), '"')) || (size_t)(end - p) >= cap)
        die("identity keys", "no Curve25519 key in libolm's JSON");
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return (size_t)(end - p);
}

static void account_new(struct account *a)
{
    a->acc = olm_account(xmalloc(olm_account_size()));
    size_t n = olm_create_account_random_length(a->acc);
    if (olm_create_account(a->acc, rnd_get(n), n) == olm_error())
        die("olm_create_account", olm_account_last_error(a->acc));
    rnd_wipe();
    size_t len = olm_account_identity_keys_length(a->acc);
    char *json = xmalloc(len + 1);
    if ((len = olm_account_identity_keys(a->acc, json, len)) == olm_error())
        die("olm_account_identity_keys", olm_account_last_error(a->acc));
    json[len] = '\0';
    a->curve_len = json_string(a->curve, sizeof(a->curve), json, "curve25519");
    free(json);
}

static void account_free(struct account *a)
{
    olm_clear_account(a->acc);
    free(a->acc);
}

/* One-time keys as Bob publishes them: generated, read back from libolm's
 * JSON ({"curve25519":{"AAAAAQ":"key",...}}), marked as published. */
struct otks {
    char key[OTK_MAX][KEY_CAP];
    size_t len[OTK_MAX];
    size_t n, next;
};

static void otks_publish(struct account *bob, struct otks *o, size_t want)
{
    size_t max = olm_account_max_number_of_one_time_keys(bob->acc);
    if (want > max)
        want = max;
    if (want > OTK_MAX)
        want = OTK_MAX;
    size_t n = olm_account_generate_one_time_keys_random_length(bob->acc, want);
    if (olm_account_generate_one_time_keys(bob->acc, want, rnd_get(n), n) == olm_error())
        die("olm_account_generate_one_time_keys", olm_account_last_error(bob->acc));
    rnd_wipe();
    size_t len = olm_account_one_time_keys_length(bob->acc);
    char *json = xmalloc(len + 1);
    if ((len = olm_account_one_time_keys(bob->acc, json, len)) == olm_error())
        die("olm_account_one_time_keys", olm_account_last_error(bob->acc));
    json[len] = '\0';
    const char *p = strstr(json, "\"curve25519\":{");
    if (!p)
        die("one-time keys", "unexpected JSON from libolm");
    p += strlen("\"curve25519\":{");
    o->n = o->next = 0;
    while (*p == '"' && o->n < OTK_MAX) {
        const char *k = strstr(p, "\":\""), *end;
        if (!k || !(end = strchr(k += 3, '"')) || (size_t)(end - k) >= KEY_CAP)
            die("one-time keys", "unexpected JSON from libolm");
        memcpy(o->key[o->n], k, (size_t)(end - k));
        o->len[o->n++] = (size_t)(end - k);
        p = end + 1;
        if (*p == ',')
            p++;
    }
    free(json);
    if (o->n != want)
        die("one-time keys", "fewer keys than generated");
    olm_account_mark_keys_as_published(bob->acc);
}

struct pair {
    struct account alice, bob;
    OlmSession *a, *b; /* Alice's session with Bob, Bob's with Alice */
    char msg[MSG_CAP], copy[MSG_CAP];
    uint8_t pt[MSG_CAP];
};

static void pair_new(struct pair *p)
{
    account_new(&p->alice);
    account_new(&p->bob);
    p->a = olm_session(xmalloc(olm_session_size()));
    p->b = olm_session(xmalloc(olm_session_size()));
}

static void pair_free(struct pair *p)
{
    olm_clear_session(p->a);
    olm_clear_session(p->b);
    free(p->a);
    free(p->b);
    account_free(&p->alice);
    account_free(&p->bob);
}

/* Encrypts the 14-byte plaintext on s into p->msg; returns its length. */
static size_t encrypt_msg(struct pair *p, OlmSession *s, size_t *type)
{
    *type = olm_encrypt_message_type(s);
    size_t len = olm_encrypt_message_length(s, PT_LEN);
    if (*type == olm_error() || len > sizeof(p->msg))
        die("olm_encrypt", "message type or length");
    size_t n = olm_encrypt_random_length(s);
    if (olm_encrypt(s, PLAINTEXT, PT_LEN, rnd_get(n), n, p->msg, len) == olm_error())
        die("olm_encrypt", olm_session_last_error(s));
    rnd_wipe();
    return len;
}

/* Decrypts p->msg (libolm decodes it in place) on s and checks the text. */
static void decrypt_msg(struct pair *p, OlmSession *s, size_t type, size_t len)
{
    size_t n = olm_decrypt(s, type, p->msg, len, p->pt, sizeof(p->pt));
    if (n == olm_error())
        die("olm_decrypt", olm_session_last_error(s));
    if (n != PT_LEN || memcmp(p->pt, PLAINTEXT, PT_LEN))
        die("olm_decrypt", "wrong plaintext");
    OPENSSL_cleanse(p->pt, n);
}

/* One message from one side to the other. */
static void message(struct pair *p, OlmSession *from, OlmSession *to)
{
    size_t type, len = encrypt_msg(p, from, &type);
    decrypt_msg(p, to, type, len);
}

/* X3DH's counterpart in Olm, and the first message decrypted. The sessions
 * are cleared afterwards (libolm re-initialises them for the next use). */
static void setup(struct pair *p, const char *otk, size_t otk_len)
{
    size_t n = olm_create_outbound_session_random_length(p->a);
    if (olm_create_outbound_session(p->a, p->alice.acc, p->bob.curve, p->bob.curve_len, otk,
                                    otk_len, rnd_get(n), n) == olm_error())
        die("olm_create_outbound_session", olm_session_last_error(p->a));
    rnd_wipe();
    size_t type, len = encrypt_msg(p, p->a, &type);
    if (type != OLM_MESSAGE_TYPE_PRE_KEY)
        die("setup", "the first message is not a pre-key message");
    memcpy(p->copy, p->msg, len); /* olm_create_inbound_session decodes in place */
    if (olm_create_inbound_session(p->b, p->bob.acc, p->copy, len) == olm_error())
        die("olm_create_inbound_session", olm_session_last_error(p->b));
    if (olm_remove_one_time_keys(p->bob.acc, p->b) == olm_error())
        die("olm_remove_one_time_keys", olm_account_last_error(p->bob.acc));
    decrypt_msg(p, p->b, type, len);
}

static void sessions_clear(struct pair *p)
{
    olm_clear_session(p->a);
    olm_clear_session(p->b);
}

/* ============================================================================
 * Workloads
 * ========================================================================== */

static struct timer run_setups(const struct limit *l)
{
    struct pair p;
    struct otks o;
    struct timer t = {0};
    pair_new(&p);
    for (;;) {
        /* Untimed: Bob makes and publishes a batch of one-time keys. */
        otks_publish(&p.bob, &o, OTK_MAX);
        timer_start(&t);
        while (o.next < o.n && timer_more(&t, l)) {
            setup(&p, o.key[o.next], o.len[o.next]);
            o.next++;
            sessions_clear(&p);
            t.ops++;
        }
        timer_stop(&t);
        if (o.next < o.n)
            break;
    }
    pair_free(&p);
    return t;
}

/* Untimed: a session both ways. Alice's pre-key message, Bob's answer. */
static void establish(struct pair *p)
{
    struct otks o;
    pair_new(p);
    otks_publish(&p->bob, &o, 1);
    setup(p, o.key[0], o.len[0]);
    message(p, p->b, p->a);
}

static struct timer run_ping_pong(const struct limit *l)
{
    struct pair p;
    struct timer t = {0};
    establish(&p); /* Alice has received: her next message is a ratchet step */
    timer_start(&t);
    while (timer_more(&t, l)) {
        message(&p, p.a, p.b);
        message(&p, p.b, p.a);
        t.ops++;
    }
    timer_stop(&t);
    pair_free(&p);
    return t;
}

static struct timer run_one_way(const struct limit *l)
{
    struct pair p;
    struct timer t = {0};
    establish(&p);
    message(&p, p.a, p.b); /* the ratchet step: the rest is on one chain */
    timer_start(&t);
    while (timer_more(&t, l)) {
        message(&p, p.a, p.b);
        t.ops++;
    }
    timer_stop(&t);
    pair_free(&p);
    return t;
}

/* OpenSSL X25519 key generation against derive, in turns of 50 each. */
static void run_keygen(const struct limit *l, bool print)
{
    EVP_PKEY_CTX *gen = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL), *dctx = NULL;
    EVP_PKEY *mine = NULL, *theirs = NULL;
    uint8_t secret[32];
    size_t len;
    struct timer tg = {0}, td = {0};
    if (!gen || EVP_PKEY_keygen_init(gen) != 1 || EVP_PKEY_keygen(gen, &mine) != 1 ||
        EVP_PKEY_keygen(gen, &theirs) != 1 || !(dctx = EVP_PKEY_CTX_new(mine, NULL)) ||
        EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, theirs) != 1)
        die("OpenSSL X25519", "set-up failed");
    struct limit half = *l;
    half.count = l->count > 0 ? l->count / 2 + 1 : 0;
    half.seconds = l->seconds / 2;
    while (timer_more(&tg, &half) || timer_more(&td, &half)) {
        timer_start(&tg);
        for (int i = 0; i < 50; i++) {
            EVP_PKEY *k = NULL;
            if (EVP_PKEY_keygen(gen, &k) != 1)
                die("EVP_PKEY_keygen", "failed");
            EVP_PKEY_free(k);
        }
        tg.ops += 50;
        timer_stop(&tg);
        timer_start(&td);
        for (int i = 0; i < 50; i++) {
            len = sizeof(secret);
            if (EVP_PKEY_derive(dctx, secret, &len) != 1 || len != sizeof(secret))
                die("EVP_PKEY_derive", "failed");
        }
        td.ops += 50;
        timer_stop(&td);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_CTX_free(gen);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(theirs);
    if (!print)
        return;
    /* Per CPU second, as openssl speed counts: a turn the VM's other work
     * interrupts then weighs no more than one it does not. */
    double kg = tg.ops / tg.cpu_spent, dr = td.ops / td.cpu_spent;
    printf("{\"impl\":\"%s\",\"workload\":\"keygen\",\"keygen_ops\":%ld,\"keygen_rate\":%.1f,"
           "\"derive_ops\":%ld,\"derive_rate\":%.1f,\"seconds\":%.6f,\"cpu_seconds\":%.6f,"
           "\"keygen_in_x25519\":%.4f}\n",
           OpenSSL_version(OPENSSL_VERSION), tg.ops, kg, td.ops, dr, tg.spent + td.spent,
           tg.cpu_spent + td.cpu_spent, dr / kg);
    fflush(stdout);
}

/* ============================================================================
 * Command line
 * ========================================================================== */

static void usage(FILE *f)
{
    fputs("usage: olm_bench [--workload setups|ping-pong|one-way|keygen|all]\n"
          "                 [--count N | --seconds S] [--warmup N]\n"
          "libolm on e2ee-node's benchmark workloads, in-process, 14-byte plaintexts;\n"
          "one JSON line per workload (rate in operations per second).\n",
          f);
}

static bool parse_num(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return s[0] && !*end && *out >= 0;
}

int main(int argc, char **argv)
{
    const char *workload = "all";
    struct limit lim = {0, 1.0};
    long warmup = 20;
    for (int i = 1; i < argc; i++) {
        double v;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!val) {
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--workload")) {
            workload = val;
        } else if (!strcmp(a, "--count") && parse_num(val, &v) && v >= 1) {
            lim.count = (long)v;
        } else if (!strcmp(a, "--seconds") && parse_num(val, &v) && v > 0) {
            lim.seconds = v;
            lim.count = 0;
        } else if (!strcmp(a, "--warmup") && parse_num(val, &v)) {
            warmup = (long)v;
        } else {
            fprintf(stderr, "olm_bench: bad argument %s %s\n", a, val);
            usage(stderr);
            return 2;
        }
    }
    bool all = !strcmp(workload, "all");
    bool known = all || !strcmp(workload, "setups") || !strcmp(workload, "ping-pong") ||
                 !strcmp(workload, "one-way") || !strcmp(workload, "keygen");
    if (!known) {
        fprintf(stderr, "olm_bench: unknown workload \"%s\"\n", workload);
        usage(stderr);
        return 2;
    }
    const struct limit warm = {warmup, 0};
    if (all || !strcmp(workload, "setups")) {
        if (warmup)
            run_setups(&warm);
        collecting = true;
        struct timer t = run_setups(&lim);
        collecting = false;
        report("setups", "setup", &t, 1);
    }
    if (all || !strcmp(workload, "ping-pong")) {
        if (warmup)
            run_ping_pong(&warm);
        collecting = true;
        struct timer t = run_ping_pong(&lim);
        collecting = false;
        report("ping-pong", "round trip", &t, 2);
    }
    if (all || !strcmp(workload, "one-way")) {
        if (warmup)
            run_one_way(&warm);
        collecting = true;
        struct timer t = run_one_way(&lim);
        collecting = false;
        report("one-way", "message", &t, 1);
    }
    if (!strcmp(workload, "keygen")) {
        if (warmup)
            run_keygen(&warm, false);
        collecting = true;
        run_keygen(&lim, true);
        collecting = false;
    }
    if (rnd) {
        OPENSSL_cleanse(rnd, rnd_cap);
        free(rnd);
    }
    return 0;
}
