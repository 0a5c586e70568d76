/* node.h - the Maelstrom-style message loop shared by every node binary.
 *
 * Contract (../shared/PROTOCOL.md §1): one JSON object per input line; each
 * reply is one line {"src","dest","body"} on stdout, in request order, flushed
 * before the node blocks on input. Logs go to stderr. The loop answers init
 * and echo itself; everything else goes through the binary's own dispatch
 * table. It never exits on bad input and returns 0 at end of input.
 *
 * Handlers run one at a time, in request order, always on the same thread
 * (the loop's worker; its reader thread only parses), so the binary's state
 * needs no locks. A handler is a function of (the binary's state, the request) that
 * fills a reply. It never touches stdout: it names the reply type, adds
 * fields, and returns 0, or returns node_error(...) which discards whatever
 * fields it had added and turns the reply into {"type":"error",...}.
 */
#ifndef SECURITOR_NODE_H
#define SECURITOR_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "securitor/buf.h"

/* Maelstrom's error codes (PROTOCOL.md §1). */
enum node_error_code {
    ERR_NOT_SUPPORTED = 10,      /* unknown type */
    ERR_MALFORMED = 12,          /* not JSON, missing/mistyped field, bad encoding/size */
    ERR_CRASH = 13,              /* internal failure: RNG, out of memory */
    ERR_KEY_DOES_NOT_EXIST = 20, /* unknown user, peer, session or key id */
    ERR_PRECONDITION = 22,       /* signature does not verify, identity changed */
};

/* Each binary defines its own `struct app` (its keys, sessions); the loop
 * only passes the pointer to the handlers. */
struct app;

/* The reply a handler fills. Fields are serialised as they are added. */
struct reply {
    const char *type;  /* reply type: a string literal owned by the handler */
    struct buf fields; /* ,"key":value,... */
    int depth;         /* nesting of reply_begin_object */
    bool need_comma[8];
    bool sensitive;    /* carries plaintext or secrets: wipe once written */
};

/* One request: the envelope's src and its body (owned by the loop; valid
 * only while the handler runs). */
struct request {
    const char *src;
    const cJSON *body;
};

typedef int (*node_handler_fn)(struct app *app, const struct request *req, struct reply *r);

struct node_handler {
    const char *type;
    node_handler_fn fn;
    /* The request carries nothing secret (a decrypt request: ciphertext, IV,
     * tag, AAD), so its input line is not wiped afterwards. Lines are wiped
     * by default: an encrypt request holds plaintext. */
    bool public_request;
};

struct node_program {
    const char *name;        /* binary name for --help/--version and logs */
    const char *summary;     /* one line for --help */
    const char *extra_usage; /* the binary's own options in the usage line, or NULL */
    const char *extra_help;  /* more --help text, or NULL */
    const struct node_handler *handlers;
    size_t n_handlers;
};

/* Handles --help and --version anywhere in argv: prints and returns 1 with
 * *exit_code set; returns 0 when neither is present. */
int node_main_options(const struct node_program *prog, int argc, char **argv,
                      int *exit_code);

/* Runs the loop over stdin/stdout until end of input. Returns the process
 * exit status: 0 at end of input, 1 when stdout cannot be written. */
int node_run(const struct node_program *prog, struct app *app);

/* --- building replies (for handlers) ------------------------------------ */

void reply_type(struct reply *r, const char *type);
/* Marks the reply as carrying plaintext or secret values (a decrypted
 * message, a root key), so its buffers are wiped once it is written. Input
 * lines are wiped unless the handler's request is public; ciphertext
 * replies need not be. */
static inline void reply_sensitive(struct reply *r) { r->sensitive = true; }
/* s is len bytes of UTF-8; it is JSON-escaped (invalid sequences become
 * U+FFFD, so the output line is always valid JSON). */
void reply_string(struct reply *r, const char *key, const char *s, size_t len);
void reply_cstring(struct reply *r, const char *key, const char *s);
void reply_int(struct reply *r, const char *key, long long v);
void reply_hex(struct reply *r, const char *key, const uint8_t *b, size_t n);
/* Adds `key` with room for the hex of n bytes, for the caller to fill with
 * hex_encode before any other reply_* call; NULL when out of memory (the
 * reply then fails as a whole). */
char *reply_hex_digits(struct reply *r, const char *key, size_t n);
void reply_base64(struct reply *r, const char *key, const uint8_t *b, size_t n);
/* Bytes as the text value of `key` when JSON can carry them losslessly
 * (valid UTF-8, no NUL), else as base64 with "encoding": "base64" beside. */
void reply_text_or_base64(struct reply *r, const char *key, const uint8_t *b, size_t n);
/* json must be a complete serialised JSON value. */
void reply_raw(struct reply *r, const char *key, const char *json, size_t len);
void reply_begin_object(struct reply *r, const char *key);
void reply_end_object(struct reply *r);

/* Turns the reply into an error and returns `code`, so handlers can write
 * `return node_error(r, ERR_MALFORMED, "plaintext: expected a string");`.
 * The text should name the field and what was expected. */
__attribute__((format(printf, 3, 4)))
int node_error(struct reply *r, int code, const char *fmt, ...);

/* --- reading requests (for handlers) ------------------------------------ */

/* The member of obj named key (case-sensitive; the first one if repeated),
 * or NULL. Like cJSON_GetObjectItemCaseSensitive, faster on the short keys
 * of requests. */
const cJSON *req_field(const cJSON *obj, const char *key);

/* A string field. Returns 0 and sets *s (owned by body) and *len, or fills an
 * error 12 naming the field and returns ERR_MALFORMED. With `optional`, a
 * missing field returns 0 with *s = NULL. */
int req_string(struct reply *r, const cJSON *body, const char *key, bool optional,
               const char **s, size_t *len);
/* An integer field in [min, max]; same conventions (*present tells whether
 * an optional field was there; may be NULL for required fields). */
int req_int(struct reply *r, const cJSON *body, const char *key, bool optional,
            long long min, long long max, long long *v, bool *present);

/* A field that is UTF-8 text, or base64 of raw bytes when the field named
 * `encoding_key` is "base64" (JSON text cannot carry arbitrary bytes).
 * "utf-8"/"utf8" or no encoding mean text. Decoded bytes go into scratch
 * (whose contents the caller wipes when done). Sets *bytes and *len, or
 * fills an error 12 naming the field; with `optional`, a missing field gives
 * *bytes = NULL. Returns 0 or the error code. */
int req_text_or_base64(struct reply *r, const cJSON *body, const char *key,
                       const char *encoding_key, bool optional, struct buf *scratch,
                       const uint8_t **bytes, size_t *len);

/* Writes a diagnostic line "<name>: ..." to stderr. */
__attribute__((format(printf, 1, 2)))
void node_log(const char *fmt, ...);

#endif
