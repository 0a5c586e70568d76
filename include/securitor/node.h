/* node.h - the Maelstrom-style runtime shared by every node binary.
 *
 * Contract (../shared/PROTOCOL.md §1): one JSON object per input line; every
 * line out is {"src","dest","body"} on stdout, written before the node blocks
 * on input or waits for a timer. Logs go to stderr. The loop answers init and
 * echo itself (a built-in table); every other request goes through the
 * binary's own dispatch table. A message that carries in_reply_to is a reply
 * to one of the node's own calls and is never answered. The node never exits
 * on bad input and returns 0 at end of input.
 *
 * Threads: the loop reads and parses on one thread and answers on another
 * (its worker). Handlers, call callbacks, timers and the program's hooks all
 * run on the worker, one at a time, so the binary's state needs no locks;
 * but for commit_flush, which a third thread (the committer) runs while the
 * worker answers the next requests, when the program has a state to commit.
 * SECURITOR_THREADS=1 runs everything on one thread.
 *
 * A handler is a function of (the binary's state, the request) that fills a
 * reply. It never touches stdout: it names the reply type, adds fields, and
 * returns 0, or returns node_error(...), which discards the fields it had
 * added and turns the reply into {"type":"error",...}. A handler that needs
 * another node's answer first defers its reply (node_defer) and answers later
 * from a callback (node_answer).
 *
 * The path of one request:
 *
 *   stdin -> reader: split lines, check UTF-8, parse into the batch's arena
 *         -> worker: a reply (in_reply_to)?  -> its pending call's callback
 *                    else built-in or handler -> reply queued in `out`
 *         -> before `out` is written: the program's commit hook (output commit)
 *         -> stdout
 *
 * With a committer, the commit hook only seals the batch's changes and the
 * lines queued behind them go to the committer, which makes every sealed
 * transaction durable at once (commit_flush: one fsync for all) and then
 * writes the lines, in order: the worker does not wait for the disk.
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
    ERR_TIMEOUT = 0,             /* indefinite: the work may or may not happen */
    ERR_NOT_SUPPORTED = 10,      /* unknown type */
    ERR_MALFORMED = 12,          /* not JSON, missing/mistyped field, bad encoding/size */
    ERR_CRASH = 13,              /* internal failure: RNG, out of memory, disk */
    ERR_KEY_DOES_NOT_EXIST = 20, /* unknown user, peer, session or key id */
    ERR_PRECONDITION = 22,       /* signature does not verify, identity changed */
};

/* The largest integer JSON numbers carry exactly (2^53 - 1): msg_id, key_id
 * and every other integer field must lie within it. */
#define NODE_MAX_SAFE_INT 9007199254740991LL

/* How long the committer waits after its last commit before commit_idle. */
#define NODE_COMMIT_IDLE_MS 1000

/* Each binary defines its own `struct app` (its keys, sessions); the loop
 * only passes the pointer around. */
struct app;
/* The loop (opaque). One per process, made by node_run. */
struct node;

/* A reply body, or the body of a message to another node. Fields are
 * serialised as they are added. */
struct reply {
    const char *type;  /* a string literal owned by the caller */
    struct buf fields; /* ,"key":value,... */
    int depth;         /* nesting of reply_begin_object/array */
    bool need_comma[8];
    bool sensitive;    /* carries plaintext or secrets: wipe once written */
    bool deferred;     /* node_defer was called: the loop writes nothing now */
    bool early;        /* reply_early: need not wait for its batch's commit */
    uint64_t early_after;
};

/* One request (owned by the loop; valid only while the handler runs). */
struct request {
    struct node *node;
    const char *src;
    const char *dest;    /* the envelope's dest, or NULL */
    const cJSON *body;
    const cJSON *msg_id; /* the request's msg_id, or NULL */
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

/* What on_init may return besides 0 and an error code: the node cannot go
 * on (a state that does not open); the loop exits with status 2 before
 * writing anything. The hook has said why on stderr. */
#define NODE_FATAL (-1)

struct node_program {
    const char *name;        /* binary name for --help/--version and logs */
    const char *summary;     /* one line for --help */
    const char *extra_usage; /* the binary's own options in the usage line, or NULL */
    const char *extra_help;  /* more --help text, or NULL */
    const struct node_handler *handlers;
    size_t n_handlers;

    /* Hooks; each may be NULL. */

    /* The node learns its id: from init (node_ids is its array), or from the
     * dest of the first request when no init came first (node_ids NULL). A
     * later init calls it again. Returns 0; or fills r with node_error and
     * returns the code (the init is refused, the id stays); or NODE_FATAL. */
    int (*on_init)(struct app *app, struct node *n, const char *node_id,
                   const cJSON *node_ids, struct reply *r);
    /* Makes every state change since the last call durable. The loop calls
     * it before any line leaves the process (output commit, PROTOCOL.md §4),
     * so that one transaction covers a whole batch. Returns 0 or -1. */
    int (*commit)(struct app *app);
    /* With it, the loop commits on its committer thread: the commit hook
     * then only seals what changed (node_commit_pipelined says so), and this
     * hook, on the committer, makes everything sealed so far durable, while
     * the worker goes on. It touches nothing but the store. 0 or -1 (then
     * the lines behind it become errors and rollback runs on the worker). */
    int (*commit_flush)(struct app *app);
    /* May be NULL. On the committer, once NODE_COMMIT_IDLE_MS passed
     * without a commit after one: housekeeping of the store (cutting its
     * log back). */
    void (*commit_idle)(struct app *app);
    /* After a failed commit: puts the state back as the last commit left it.
     * Returns 0, or -1 when it cannot (the loop then stops, status 1). The
     * requests whose replies were waiting get error 13 instead. */
    int (*rollback)(struct app *app);
    /* Input has ended; called once, before pending calls are cancelled and
     * timers dropped. */
    void (*on_close)(struct app *app, struct node *n);
};

/* Handles the loop's own options anywhere in argv (--help, --version,
 * --max-line N) and removes the ones it took, so the binary sees only its
 * own. Returns 1 with *exit_code set when the process should stop now
 * (help, version, a bad option); 0 to go on. */
int node_main_options(const struct node_program *prog, int *argc, char **argv,
                      int *exit_code);

/* Whether SECURITOR_THREADS=1 asks for one thread: the loop's reader then
 * answers each batch itself, and a program starts no threads of its own. */
bool node_one_thread(void);

/* Runs the loop over stdin/stdout until end of input. Returns the process
 * exit status: 0 at end of input, 1 when stdout cannot be written or a
 * failed commit cannot be rolled back, 2 when on_init was fatal. */
int node_run(const struct node_program *prog, struct app *app);

/* The same loop without stdin and stdout, for tests and fuzz targets: one
 * thread, lines given as bytes, every line the node writes appended to
 * `out` (owned by the caller). node_embed_lines takes any number of lines
 * (the last one need not end in '\n'), answers them, runs the timers that
 * are due and writes what is queued; it returns 0, or the status the node
 * stopped with (then only node_embed_close may follow). node_embed_close is
 * end of input (on_close, pending calls cancelled, the rest written) and
 * returns what node_run would. The program's state lives in `app` and
 * outlives the node. Lines longer than --max-line are not dropped here. */
struct node *node_embed_open(const struct node_program *prog, struct app *app, struct buf *out);
int node_embed_lines(struct node *n, const char *data, size_t len);
int node_embed_close(struct node *n);

/* ==========================================================================
 * Building replies and messages
 * ========================================================================== */

void reply_type(struct reply *r, const char *type);
/* Marks the reply as carrying plaintext or secret values (a decrypted
 * message, a root key), so its buffers are wiped once it is written. Input
 * lines are wiped unless the handler's request is public; ciphertext
 * replies need not be. */
static inline void reply_sensitive(struct reply *r) { r->sensitive = true; }
/* The line depends on no change that is not durable yet but those of
 * commit `after` and before (a number from node_commit_next; 0: none), so
 * it may leave before the changes of its own batch are committed. With a
 * committer it then goes out as soon as that commit is durable (and its
 * msg_id is reserved durably), not behind the next fsync; without one, it
 * waits as every line does. For reads of what is durable and for requests
 * that carry nothing new. */
static inline void reply_early(struct reply *r, uint64_t after)
{
    r->early = true;
    r->early_after = after;
}
/* s is len bytes of UTF-8; it is JSON-escaped (invalid sequences become
 * U+FFFD, so the output line is always valid JSON). */
void reply_string(struct reply *r, const char *key, const char *s, size_t len);
void reply_cstring(struct reply *r, const char *key, const char *s);
void reply_int(struct reply *r, const char *key, long long v);
void reply_bool(struct reply *r, const char *key, bool v);
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
/* Objects and arrays nest up to 7 deep. Inside an array, pass key NULL. */
void reply_begin_object(struct reply *r, const char *key);
void reply_end_object(struct reply *r);
void reply_begin_array(struct reply *r, const char *key);
void reply_end_array(struct reply *r);
/* Empties a reply (wiping its fields if sensitive), keeping its memory. */
void reply_clear(struct reply *r);
/* Wipes and frees a reply's memory. */
void reply_free(struct reply *r);

/* For one-way messages (no reply expected, e.g. a notification): the loop
 * writes nothing for this request. */
static inline void reply_none(struct reply *r) { r->deferred = true; }

/* Turns the reply into an error and returns `code`, so handlers can write
 * `return node_error(r, ERR_MALFORMED, "plaintext: expected a string");`.
 * The text should name the field and what was expected. */
__attribute__((format(printf, 3, 4)))
int node_error(struct reply *r, int code, const char *fmt, ...);

/* ==========================================================================
 * Reading requests
 * ========================================================================== */

/* The member of obj named key (case-sensitive; the first one if repeated),
 * or NULL. Like cJSON_GetObjectItemCaseSensitive, faster on the short keys
 * of requests. */
const cJSON *req_field(const cJSON *obj, const char *key);

/* A string field. Returns 0 and sets *s (owned by body) and *len, or fills an
 * error 12 naming the field and returns ERR_MALFORMED. With `optional`, a
 * missing field returns 0 with *s = NULL. */
int req_string(struct reply *r, const cJSON *body, const char *key, bool optional,
               const char **s, size_t *len);
/* An integer field in [min, max] (within ±NODE_MAX_SAFE_INT); same
 * conventions (*present tells whether an optional field was there; may be
 * NULL for required fields). */
int req_int(struct reply *r, const cJSON *body, const char *key, bool optional,
            long long min, long long max, long long *v, bool *present);
/* A boolean field; same conventions, but null is refused: it is no boolean,
 * and an optional flag read as absent could choose the less safe default. */
int req_bool(struct reply *r, const cJSON *body, const char *key, bool optional, bool *v,
             bool *present);
/* The exact integer value of a cJSON number, when it is one that JSON
 * carries exactly (|v| <= NODE_MAX_SAFE_INT). */
bool json_exact_int(const cJSON *item, long long *v);

/* A field that is UTF-8 text, or base64 of raw bytes when the field named
 * `encoding_key` is "base64" (JSON text cannot carry arbitrary bytes).
 * "utf-8"/"utf8" or no encoding mean text. Decoded bytes go into scratch,
 * which the caller wipes when done; on error nothing decoded is left there.
 * Sets *bytes and *len, or fills an error 12 naming the field; with
 * `optional`, a missing field gives *bytes = NULL. Returns 0 or the code. */
int req_text_or_base64(struct reply *r, const cJSON *body, const char *key,
                       const char *encoding_key, bool optional, struct buf *scratch,
                       const uint8_t **bytes, size_t *len);

/* ==========================================================================
 * Talking to other nodes, deferred replies, timers
 *
 * All of these run on the worker and may be called from handlers, call
 * callbacks, timers and hooks. Lines they produce are queued with the
 * replies and leave under the same output commit.
 * ========================================================================== */

/* The body builder for a message to another node or a deferred reply:
 * cleared, with its type set. It is consumed by the next node_call,
 * node_send or node_answer; build one message at a time. */
struct reply *node_message(struct node *n, const char *type);

enum node_call_status {
    NODE_CALL_REPLY,   /* body is the reply (of any type, "error" included) */
    NODE_CALL_TIMEOUT, /* the deadline passed first; body is NULL */
    NODE_CALL_CLOSED,  /* input ended before a reply; body is NULL */
};

/* Called exactly once per call. body is valid only during the call. The
 * callback owns ctx from then on. */
typedef void (*node_call_fn)(struct app *app, struct node *n, void *ctx,
                             enum node_call_status status, const cJSON *body);

/* Sends the message built with node_message to `dest` with a fresh msg_id
 * and waits (without blocking the loop) for the reply whose in_reply_to is
 * that msg_id and whose src is dest. Retries are the caller's choice: only
 * for idempotent requests, or ones that carry their own request id.
 * Returns the msg_id, or 0 when out of memory (then fn is not called and
 * the caller still owns ctx). */
long long node_call(struct node *n, const char *dest, long long timeout_ms, node_call_fn fn,
                    void *ctx);
/* Sends the message built with node_message to `dest` without msg_id: no
 * reply is expected. Returns 0 or -1 (out of memory). */
int node_send(struct node *n, const char *dest);

/* Where a deferred reply goes: the client and its request's msg_id, copied
 * out of the request (whose memory the loop reuses). */
struct node_deferred;

/* Marks r as deferred: the loop writes no reply now, and the handler
 * returns 0. Returns the handle to answer with, or NULL when out of memory
 * (r is then an error 13 and the handler returns its code). */
struct node_deferred *node_defer(const struct request *req, struct reply *r);
/* Sends the reply built with node_message to where d says, with its
 * in_reply_to, and frees d. Replies to one client may go out of order. */
void node_answer(struct node *n, struct node_deferred *d);
/* The node the deferred reply goes to (valid while d is). */
const char *node_deferred_dest(const struct node_deferred *d);
/* Frees d without answering (the client never hears back): only for work
 * that is abandoned at end of input. */
void node_deferred_drop(struct node_deferred *d);
/* The same with an error reply. */
__attribute__((format(printf, 4, 5)))
void node_answer_error(struct node *n, struct node_deferred *d, int code, const char *fmt, ...);

/* Milliseconds on the monotonic clock. */
uint64_t node_now_ms(void);

typedef void (*node_timer_fn)(struct app *app, struct node *n, void *ctx);
/* Calls fn(ctx) after delay_ms, then every period_ms (0: once), also while
 * no input arrives. free_ctx (may be NULL) is called once the timer is done:
 * after a one-shot fired, when cancelled, or when input ends. Returns the
 * timer's id (> 0), or 0 when out of memory (free_ctx is not called). */
uint64_t node_timer(struct node *n, uint64_t delay_ms, uint64_t period_ms, node_timer_fn fn,
                    void *ctx, void (*free_ctx)(void *ctx));
/* Stops a timer (an unknown or finished id is ignored). */
void node_timer_cancel(struct node *n, uint64_t id);

/* Turns output commit on or off: with it on, the program's commit hook runs
 * before any line leaves (and rollback after a failed commit). A program
 * turns it on once it has opened a state; without one, the hooks are not
 * called and cost nothing. */
void node_set_durable(struct node *n, bool on);

/* For a commit hook: whether the loop writes transactions on its committer
 * thread (the program's commit_flush), so that the hook only seals them.
 * The hook calls node_commit_staged after it sealed one, so that the loop
 * flushes it even when no line waits for it. */
bool node_commit_pipelined(const struct node *n);
void node_commit_staged(struct node *n);
/* The number of the commit that changes made now go into (commits are
 * counted from 1), and whether a commit is durable yet (always true without
 * a committer: every line waits for the commit before it anyway). For
 * reply_early and for programs that answer only from what is durable. */
uint64_t node_commit_next(const struct node *n);
bool node_commit_durable(const struct node *n, uint64_t commit);
/* For the state layer: msg_ids up to `upto` are reserved durably, so that
 * early lines may carry them. Any thread. */
void node_msg_ids_durable(struct node *n, long long upto);

/* The node's id once init (or the first request) has named it, else NULL. */
const char *node_id(const struct node *n);
/* The highest msg_id the node has given its own messages so far, and where
 * to go on from (for a state that must never repeat one across restarts,
 * PROTOCOL.md §4): call node_set_next_msg_id before anything is sent. */
long long node_last_msg_id(const struct node *n);
void node_set_next_msg_id(struct node *n, long long next);
/* For a program whose state will reserve msg_ids (durable.h), called before
 * node_run: until node_set_next_msg_id, msg_ids count on from the wall
 * clock in microseconds (about 1.8e15 in 2026, far past any state's
 * numbering), so that the replies made before the state is open (to a line
 * that names no usable node before init) do not repeat across restarts
 * either: a process gives fewer than one msg_id per microsecond, so the
 * next one starts above every id the last one gave. node_set_next_msg_id
 * then sets where the state's numbering goes on, below. */
void node_msg_ids_from_clock(void);

/* Writes a diagnostic line "<text>" to stderr (one write: both threads log). */
__attribute__((format(printf, 1, 2)))
void node_log(const char *fmt, ...);

#endif
