/* interop.c - e2ee-node and libsignal-protocol-c 2.3.3 talk to each other.
 *
 * usage: interop PATH/TO/e2ee-node
 *
 * A real e2ee-node process is driven over its JSON protocol (stdin/stdout,
 * as a user would), with libsignal on the other side:
 *   1. libsignal initiates from the node's bundle; out of order, replay,
 *      ratchet round trips, a late message from an older chain;
 *   2. the node initiates from a libsignal bundle; round trips;
 *   3. refusals both ways (bad signature, flipped MAC, flipped byte);
 *   4. safety numbers equal libsignal's displayable fingerprint.
 * Ends with "N passed, N failed".
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <fingerprint.h>
#include <protocol.h>
#include <session_builder.h>
#include <session_cipher.h>
#include <session_pre_key.h>

#include "interop.h"
#include "securitor/codec.h"

static int passed, failed;

static bool check(bool ok, int line, const char *fmt, ...)
{
    if (ok) {
        passed++;
        return true;
    }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "FAIL line %d: ", line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    return false;
}
#define CHECK(cond, ...) check((cond), __LINE__, __VA_ARGS__)

/* ---- the node, over pipes ------------------------------------------------------ */

struct node {
    pid_t pid;
    FILE *to, *from;
    int next_id;
    cJSON *last; /* the last reply, freed on the next call */
};

static int node_start(struct node *n, const char *path)
{
    int in[2], out[2];
    memset(n, 0, sizeof(*n));
    if (pipe(in) || pipe(out))
        return -1;
    n->pid = fork();
    if (n->pid < 0)
        return -1;
    if (n->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]), close(out[0]), close(in[0]), close(out[1]);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    n->to = fdopen(in[1], "w");
    n->from = fdopen(out[0], "r");
    return n->to && n->from ? 0 : -1;
}

static int node_stop(struct node *n)
{
    int status = -1;
    cJSON_Delete(n->last);
    fclose(n->to);
    waitpid(n->pid, &status, 0);
    fclose(n->from);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Sends body (taking ownership) as `src`; returns the reply body. */
static const cJSON *node_call(struct node *n, const char *src, cJSON *body)
{
    char *line = NULL;
    size_t cap = 0;
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "src", src);
    cJSON_AddStringToObject(msg, "dest", "e2ee");
    cJSON_AddNumberToObject(body, "msg_id", ++n->next_id);
    cJSON_AddItemToObject(msg, "body", body);
    char *text = cJSON_PrintUnformatted(msg);
    fprintf(n->to, "%s\n", text);
    fflush(n->to);
    free(text);
    cJSON_Delete(msg);
    cJSON_Delete(n->last);
    n->last = NULL;
    if (getline(&line, &cap, n->from) < 0) {
        free(line);
        fprintf(stderr, "interop: the node closed its output\n");
        exit(2);
    }
    n->last = cJSON_Parse(line);
    free(line);
    return cJSON_GetObjectItemCaseSensitive(n->last, "body");
}

static const char *field(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double number(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static cJSON *request(const char *type, const char *user)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", type);
    cJSON_AddStringToObject(b, "user", user);
    return b;
}

/* ---- encodings ---------------------------------------------------------------------- */

static char *b64(const uint8_t *p, size_t n)
{
    char *s = malloc(base64_encoded_len(n) + 1);
    base64_encode(s, p, n);
    s[base64_encoded_len(n)] = 0;
    return s;
}

static signal_buffer *unb64(const char *s)
{
    size_t len = strlen(s), n;
    uint8_t *raw = malloc(base64_decoded_max(len) + 1);
    signal_buffer *b = NULL;
    if (raw && !base64_decode(raw, &n, s, len))
        b = signal_buffer_create(raw, n);
    free(raw);
    return b;
}

static ec_public_key *key_from_b64(signal_context *ctx, const char *s)
{
    signal_buffer *b = unb64(s);
    ec_public_key *k = NULL;
    if (b && curve_decode_point(&k, signal_buffer_data(b), signal_buffer_len(b), ctx))
        k = NULL;
    signal_buffer_free(b);
    return k;
}

static char *key_b64(const ec_public_key *k)
{
    signal_buffer *b = NULL;
    ec_public_key_serialize(&b, k);
    char *s = b64(signal_buffer_data(b), signal_buffer_len(b));
    signal_buffer_free(b);
    return s;
}

/* ---- messages both ways ------------------------------------------------------------------- */

/* An encrypted message on its way: the wire bytes and the out-of-band type. */
struct wire {
    signal_buffer *bytes;
    bool prekey;
};

static struct wire lib_encrypt(session_cipher *c, const char *text)
{
    ciphertext_message *m = NULL;
    struct wire w = {0};
    if (session_cipher_encrypt(c, (const uint8_t *)text, strlen(text), &m) == 0) {
        w.bytes = signal_buffer_copy(ciphertext_message_get_serialized(m));
        w.prekey = ciphertext_message_get_type(m) == CIPHERTEXT_PREKEY_TYPE;
    }
    SIGNAL_UNREF(m);
    return w;
}

/* libsignal decrypts; returns 0 and the plaintext in out (NUL-terminated),
 * or libsignal's error code. */
static int lib_decrypt(signal_context *ctx, session_cipher *c, struct wire w, char *out, size_t cap)
{
    signal_buffer *pt = NULL;
    int rc;
    if (w.prekey) {
        pre_key_signal_message *m = NULL;
        rc = pre_key_signal_message_deserialize(&m, signal_buffer_data(w.bytes),
                                                signal_buffer_len(w.bytes), ctx);
        if (!rc)
            rc = session_cipher_decrypt_pre_key_signal_message(c, m, NULL, &pt);
        SIGNAL_UNREF(m);
    } else {
        signal_message *m = NULL;
        rc = signal_message_deserialize(&m, signal_buffer_data(w.bytes),
                                        signal_buffer_len(w.bytes), ctx);
        if (!rc)
            rc = session_cipher_decrypt_signal_message(c, m, NULL, &pt);
        SIGNAL_UNREF(m);
    }
    if (!rc) {
        size_t n = signal_buffer_len(pt) < cap - 1 ? signal_buffer_len(pt) : cap - 1;
        memcpy(out, signal_buffer_data(pt), n);
        out[n] = 0;
    }
    signal_buffer_free(pt);
    return rc;
}

/* The node sends; returns the wire bytes and its kind. */
static struct wire node_send(struct node *n, const char *user, const char *to, const char *text)
{
    cJSON *b = request("send_message", user);
    cJSON_AddStringToObject(b, "recipient", to);
    cJSON_AddStringToObject(b, "plaintext", text);
    const cJSON *r = node_call(n, user, b);
    const cJSON *em = cJSON_GetObjectItemCaseSensitive(r, "encrypted_message");
    struct wire w = {unb64(field(em, "ciphertext")), !strcmp(field(em, "kind"), "prekey")};
    /* auth_tag is the MAC8 inside the (inner) SignalMessage: its last 8 bytes. */
    signal_buffer *tag = NULL;
    if (w.bytes) {
        char hex[17] = {0};
        size_t len = signal_buffer_len(w.bytes);
        hex_encode(hex, signal_buffer_data(w.bytes) + len - 8, 8);
        CHECK(!strcmp(hex, field(em, "auth_tag")), "auth_tag %s is the message's MAC8 %s",
              field(em, "auth_tag"), hex);
    }
    signal_buffer_free(tag);
    return w;
}

/* The node receives; returns the reply body. */
static const cJSON *node_receive(struct node *n, const char *user, const char *from, struct wire w)
{
    cJSON *b = request("receive_message", user);
    cJSON_AddStringToObject(b, "sender", from);
    cJSON *em = cJSON_AddObjectToObject(b, "encrypted_message");
    char *s = b64(signal_buffer_data(w.bytes), signal_buffer_len(w.bytes));
    cJSON_AddStringToObject(em, "ciphertext", s);
    cJSON_AddStringToObject(em, "kind", w.prekey ? "prekey" : "message");
    free(s);
    return node_call(n, user, b);
}

static bool node_got(struct node *n, const char *user, const char *from, struct wire w,
                     const char *want)
{
    const cJSON *r = node_receive(n, user, from, w);
    return CHECK(!strcmp(field(r, "type"), "message_decrypted") &&
                 !strcmp(field(r, "plaintext"), want),
                 "node (%s) decrypts %s's \"%.40s\": got %s %.40s", user, from, want,
                 field(r, "type"), field(r, "error")[0] ? field(r, "error") : field(r, "plaintext"));
}

static bool lib_got(signal_context *ctx, session_cipher *c, struct wire w, const char *want)
{
    size_t cap = strlen(want) + 2; /* one more than want: a longer result shows */
    char *out = malloc(cap);
    int rc = out ? lib_decrypt(ctx, c, w, out, cap) : -1;
    bool ok = CHECK(rc == 0 && !strcmp(out, want),
                    "libsignal decrypts \"%.40s\": rc %d, got \"%.40s\"", want, rc, rc ? "" : out);
    free(out);
    return ok;
}

static void wire_free(struct wire *w)
{
    signal_buffer_free(w->bytes);
    w->bytes = NULL;
}

static struct wire wire_flipped(struct wire w, size_t i, uint8_t bit)
{
    struct wire f = {signal_buffer_copy(w.bytes), w.prekey};
    signal_buffer_data(f.bytes)[i] ^= bit;
    return f;
}

/* ============================================================================
 * 1. libsignal initiates (libsignal "alice" -> node user "bob")
 * ========================================================================== */

static void libsignal_initiates(signal_context *ctx, struct node *n)
{
    struct party alice;
    signal_protocol_address bob = {"bob", 3, 1};
    session_builder *builder = NULL;
    session_cipher *cipher = NULL;
    char text[64];
    CHECK(party_init(&alice, ctx, "alice") == 0, "libsignal alice set up");

    const cJSON *bundle = node_call(n, "bob", request("get_bundle", "bob"));
    ec_public_key *ik = key_from_b64(ctx, field(bundle, "identity_key"));
    ec_public_key *spk = key_from_b64(ctx, field(bundle, "signed_pre_key"));
    ec_public_key *opk = key_from_b64(ctx, field(bundle, "one_time_pre_key"));
    signal_buffer *sig = unb64(field(bundle, "signed_pre_key_signature"));
    session_pre_key_bundle *b = NULL;
    CHECK(ik && spk && opk && sig && signal_buffer_len(sig) == 64, "node bundle decodes");
    uint32_t node_registration = (uint32_t)number(bundle, "registration_id");
    CHECK(session_pre_key_bundle_create(&b, node_registration, (int)number(bundle, "device_id"),
                                        (uint32_t)number(bundle, "one_time_pre_key_id"), opk,
                                        (uint32_t)number(bundle, "signed_pre_key_id"), spk,
                                        signal_buffer_data(sig), signal_buffer_len(sig), ik) == 0,
          "libsignal takes the node's bundle");
    CHECK(session_builder_create(&builder, alice.store, &bob, ctx) == 0, "session builder");
    /* This verifies the node's signed-prekey signature with libsignal's verifier. */
    int rc = session_builder_process_pre_key_bundle(builder, b);
    CHECK(rc == 0, "libsignal accepts the node's bundle and signature (rc %d)", rc);
    CHECK(session_cipher_create(&cipher, alice.store, &bob, ctx) == 0, "session cipher");

    /* Five prekey messages: the first, then out of order, and a replay. */
    struct wire m[5];
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof(text), "alice %d", i);
        m[i] = lib_encrypt(cipher, text);
        CHECK(m[i].bytes && m[i].prekey, "libsignal message %d is a prekey message", i);
    }
    node_got(n, "bob", "alice", m[0], "alice 0");
    node_got(n, "bob", "alice", m[2], "alice 2");
    node_got(n, "bob", "alice", m[1], "alice 1");
    const cJSON *r = node_receive(n, "bob", "alice", m[1]);
    CHECK(!strcmp(field(r, "type"), "decryption_failed"), "the node refuses a replay: %s",
          field(r, "type"));
    node_got(n, "bob", "alice", m[4], "alice 4");
    node_got(n, "bob", "alice", m[3], "alice 3");
    for (int i = 0; i < 5; i++)
        wire_free(&m[i]);

    /* The node answers; libsignal decrypts; alice stops sending prekey messages. */
    struct wire w = node_send(n, "bob", "alice", "bob 0");
    CHECK(!w.prekey, "the responder sends plain SignalMessages");
    lib_got(ctx, cipher, w, "bob 0");
    wire_free(&w);

    /* Three ratchet round trips, two messages each way. */
    for (int round = 1; round <= 3; round++) {
        for (int k = 0; k < 2; k++) {
            snprintf(text, sizeof(text), "alice r%d.%d", round, k);
            w = lib_encrypt(cipher, text);
            CHECK(!w.prekey, "after bob's reply alice sends SignalMessages");
            node_got(n, "bob", "alice", w, text);
            wire_free(&w);
        }
        for (int k = 0; k < 2; k++) {
            snprintf(text, sizeof(text), "bob r%d.%d", round, k);
            w = node_send(n, "bob", "alice", text);
            lib_got(ctx, cipher, w, text);
            wire_free(&w);
        }
    }

    /* A late message from an older chain (the previousCounter+1 rule). */
    struct wire late = lib_encrypt(cipher, "late from the old chain");
    w = node_send(n, "bob", "alice", "bob makes alice ratchet");
    lib_got(ctx, cipher, w, "bob makes alice ratchet");
    wire_free(&w);
    w = lib_encrypt(cipher, "alice on a new chain");
    node_got(n, "bob", "alice", w, "alice on a new chain");
    wire_free(&w);
    node_got(n, "bob", "alice", late, "late from the old chain");
    wire_free(&late);

    /* 3. Refusals: a node message with a flipped MAC byte is refused by
     * libsignal; a libsignal message with a flipped byte by the node; both
     * sessions keep working. */
    w = node_send(n, "bob", "alice", "integrity");
    struct wire bad = wire_flipped(w, signal_buffer_len(w.bytes) - 1, 0x01);
    rc = lib_decrypt(ctx, cipher, bad, text, sizeof(text));
    /* libsignal 2.3.3 reports a MAC mismatch as SG_ERR_INVALID_MESSAGE ("No
     * valid sessions": no state verifies it); the untampered copy decrypting
     * right after shows the flip alone caused the refusal. */
    CHECK(rc == SG_ERR_INVALID_MESSAGE, "libsignal refuses the node's flipped MAC (rc %d)", rc);
    wire_free(&bad);
    lib_got(ctx, cipher, w, "integrity");
    wire_free(&w);
    w = lib_encrypt(cipher, "flip me");
    for (size_t i = 0; i < signal_buffer_len(w.bytes); i += 7) {
        bad = wire_flipped(w, i, 0x10);
        r = node_receive(n, "bob", "alice", bad);
        CHECK(!strcmp(field(r, "type"), "decryption_failed"),
              "the node refuses libsignal's message with byte %zu flipped: %s", i, field(r, "type"));
        wire_free(&bad);
    }
    node_got(n, "bob", "alice", w, "flip me");
    wire_free(&w);
    w = node_send(n, "bob", "alice", "still talking");
    lib_got(ctx, cipher, w, "still talking");
    wire_free(&w);

    /* Long messages both ways: 100,000 bytes of multi-byte text, which the
     * node's loop reads without cJSON's copy (src/node/bulk.c). */
    size_t long_len = 100000;
    char *long_text = malloc(long_len + 1);
    if (CHECK(long_text != NULL, "memory for a long message")) {
        for (size_t i = 0; i < long_len; i += 4)
            memcpy(long_text + i, i % 8 ? "\xc3\xa9" "ab" : "\xe2\x82\xac" "z", 4);
        long_text[long_len] = 0;
        w = lib_encrypt(cipher, long_text);
        node_got(n, "bob", "alice", w, long_text);
        wire_free(&w);
        w = node_send(n, "bob", "alice", long_text);
        lib_got(ctx, cipher, w, long_text);
        wire_free(&w);
        free(long_text);
    }

    /* 4. Safety numbers: the node's equals libsignal's displayable one. */
    fingerprint_generator *gen = NULL;
    fingerprint *fp = NULL;
    CHECK(fingerprint_generator_create(&gen, 5200, 1, ctx) == 0, "fingerprint generator");
    CHECK(fingerprint_generator_create_for(gen, "alice",
                                           ratchet_identity_key_pair_get_public(alice.identity),
                                           "bob", ik, &fp) == 0, "libsignal fingerprint");
    const char *lib_number = displayable_fingerprint_text(fingerprint_get_displayable(fp));
    cJSON *fq = request("fingerprint", "bob");
    cJSON_AddStringToObject(fq, "peer", "alice");
    r = node_call(n, "bob", fq);
    CHECK(!strcmp(field(r, "safety_number"), lib_number), "safety numbers: node %s, libsignal %s",
          field(r, "safety_number"), lib_number);
    uint32_t remote_id = 0;
    CHECK(session_cipher_get_remote_registration_id(cipher, &remote_id) == 0 &&
          remote_id == node_registration, "libsignal sees the node's registration id");

    SIGNAL_UNREF(fp);
    fingerprint_generator_free(gen);
    session_cipher_free(cipher);
    session_builder_free(builder);
    SIGNAL_UNREF(b);
    SIGNAL_UNREF(ik);
    SIGNAL_UNREF(spk);
    SIGNAL_UNREF(opk);
    signal_buffer_free(sig);
    party_free(&alice);
}

/* ============================================================================
 * 2. The node initiates (node user "dave" -> libsignal "carol")
 * ========================================================================== */

static cJSON *carol_bundle(struct party *carol, session_signed_pre_key *spk, session_pre_key *pk,
                           bool corrupt_signature)
{
    cJSON *b = cJSON_CreateObject();
    char *s;
    uint8_t sig[64];
    memcpy(sig, session_signed_pre_key_get_signature(spk), 64);
    if (corrupt_signature)
        sig[10] ^= 0x04;
    s = key_b64(ratchet_identity_key_pair_get_public(carol->identity));
    cJSON_AddStringToObject(b, "identity_key", s), free(s);
    s = key_b64(ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk)));
    cJSON_AddStringToObject(b, "signed_pre_key", s), free(s);
    cJSON_AddNumberToObject(b, "signed_pre_key_id", session_signed_pre_key_get_id(spk));
    s = b64(sig, sizeof(sig));
    cJSON_AddStringToObject(b, "signed_pre_key_signature", s), free(s);
    s = key_b64(ec_key_pair_get_public(session_pre_key_get_key_pair(pk)));
    cJSON_AddStringToObject(b, "one_time_pre_key", s), free(s);
    cJSON_AddNumberToObject(b, "one_time_pre_key_id", session_pre_key_get_id(pk));
    cJSON_AddNumberToObject(b, "registration_id", carol->registration_id);
    cJSON_AddNumberToObject(b, "device_id", 1);
    return b;
}

static void node_initiates(signal_context *ctx, struct node *n)
{
    struct party carol;
    signal_protocol_address dave = {"dave", 4, 1};
    session_signed_pre_key *spk = NULL;
    session_pre_key *pk = NULL;
    ec_key_pair *kp = NULL;
    signal_buffer *rec = NULL;
    session_cipher *cipher = NULL;
    char text[64];
    CHECK(party_init(&carol, ctx, "carol") == 0, "libsignal carol set up");
    CHECK(signal_protocol_key_helper_generate_signed_pre_key(&spk, carol.identity, 7,
                                                             (uint64_t)time(NULL) * 1000, ctx) == 0,
          "carol's signed prekey");
    CHECK(curve_generate_key_pair(ctx, &kp) == 0 && session_pre_key_create(&pk, 31, kp) == 0,
          "carol's one-time prekey");
    session_signed_pre_key_serialize(&rec, spk);
    signal_protocol_signed_pre_key_store_key(carol.store, spk);
    signal_protocol_pre_key_store_key(carol.store, pk);
    signal_buffer_free(rec);

    /* 3. A libsignal bundle with a corrupted signature is refused: error 22. */
    cJSON *req = request("initiate_conversation", "dave");
    cJSON_AddStringToObject(req, "recipient", "carol");
    cJSON_AddItemToObject(req, "bob_public_key", carol_bundle(&carol, spk, pk, true));
    const cJSON *r = node_call(n, "dave", req);
    CHECK(!strcmp(field(r, "type"), "error") && number(r, "code") == 22,
          "the node refuses a corrupted libsignal signature: %s %s", field(r, "type"),
          field(r, "text"));

    req = request("initiate_conversation", "dave");
    cJSON_AddStringToObject(req, "recipient", "carol");
    cJSON_AddItemToObject(req, "bob_public_key", carol_bundle(&carol, spk, pk, false));
    r = node_call(n, "dave", req);
    CHECK(!strcmp(field(r, "type"), "conversation_initiated"),
          "the node verifies libsignal's signature and runs X3DH: %s %s", field(r, "type"),
          field(r, "text"));

    CHECK(session_cipher_create(&cipher, carol.store, &dave, ctx) == 0, "carol's cipher");
    struct wire d0 = node_send(n, "dave", "carol", "dave 0");
    struct wire d1 = node_send(n, "dave", "carol", "dave 1");
    CHECK(d0.prekey && d1.prekey, "the initiator sends prekey messages until answered");
    lib_got(ctx, cipher, d0, "dave 0");
    CHECK(!signal_protocol_pre_key_contains_key(carol.store, 31),
          "libsignal deleted the one-time prekey the node used");
    lib_got(ctx, cipher, d1, "dave 1"); /* a repeated prekey message, same base key */
    wire_free(&d0), wire_free(&d1);

    struct wire w = lib_encrypt(cipher, "carol 0");
    CHECK(!w.prekey, "libsignal (responder) sends a SignalMessage");
    node_got(n, "dave", "carol", w, "carol 0");
    wire_free(&w);
    w = node_send(n, "dave", "carol", "dave 2");
    CHECK(!w.prekey, "after carol's answer the node sends SignalMessages");
    lib_got(ctx, cipher, w, "dave 2");
    wire_free(&w);

    for (int round = 1; round <= 3; round++) {
        for (int k = 0; k < 2; k++) {
            snprintf(text, sizeof(text), "carol r%d.%d", round, k);
            w = lib_encrypt(cipher, text);
            node_got(n, "dave", "carol", w, text);
            wire_free(&w);
            snprintf(text, sizeof(text), "dave r%d.%d", round, k);
            w = node_send(n, "dave", "carol", text);
            lib_got(ctx, cipher, w, text);
            wire_free(&w);
        }
    }
    /* Out of order from the node's side, as libsignal sees it. */
    struct wire a = node_send(n, "dave", "carol", "first sent");
    struct wire b = node_send(n, "dave", "carol", "second sent");
    lib_got(ctx, cipher, b, "second sent");
    lib_got(ctx, cipher, a, "first sent");
    int rc = lib_decrypt(ctx, cipher, a, text, sizeof(text));
    CHECK(rc == SG_ERR_DUPLICATE_MESSAGE, "libsignal refuses the node's message replayed (rc %d)", rc);
    wire_free(&a), wire_free(&b);

    uint32_t remote_id = 0;
    const cJSON *db = node_call(n, "dave", request("get_bundle", "dave"));
    CHECK(session_cipher_get_remote_registration_id(cipher, &remote_id) == 0 &&
          remote_id == (uint32_t)number(db, "registration_id"),
          "the prekey message carried dave's registration id (%u)", remote_id);

    session_cipher_free(cipher);
    SIGNAL_UNREF(spk);
    SIGNAL_UNREF(pk);
    SIGNAL_UNREF(kp);
    party_free(&carol);
}

int main(int argc, char **argv)
{
    signal_context *ctx = NULL;
    struct node n;
    if (argc != 2) {
        fprintf(stderr, "usage: interop PATH/TO/e2ee-node\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (signal_context_create(&ctx, NULL) || provider_install(ctx) || node_start(&n, argv[1])) {
        fprintf(stderr, "interop: set-up failed\n");
        return 2;
    }
    libsignal_initiates(ctx, &n);
    node_initiates(ctx, &n);
    CHECK(node_stop(&n) == 0, "the node exits 0 at end of input");
    signal_context_destroy(ctx);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
