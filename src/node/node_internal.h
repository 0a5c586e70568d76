/* node_internal.h - what the files of the loop share.
 *
 *   arena.c     the request arena behind cJSON's allocator
 *   bulk.c      long strings without cJSON's copy (bulk.h)
 *   parse.c     the reader's half of a line: checks and parsing
 *   salvage.c   src and msg_id from a line that cannot be parsed
 *   dispatch.c  the worker's half: envelope checks, replies to our calls,
 *               built-ins and the binary's handlers
 *   builtin.c   init and echo
 *   calls.c     calls to other nodes, deferred replies, timers
 *   output.c    lines out: formatting, output commit, writing
 *   commit.c    the committer thread: output commit beside the worker
 *   batch.c     the reader and worker threads and the batches between them
 *   loop.c      node_run: reading stdin
 *   cli.c       options, --help, --version
 *   reply.c, request.c   building replies, reading requests (node.h)
 */
#ifndef SECURITOR_NODE_INTERNAL_H
#define SECURITOR_NODE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>
#include <string.h>

#include "securitor/map.h"
#include "securitor/node.h"
#include "arena.h"
#include "bulk.h"

/* Whether two names (types, keys) are equal. The first bytes are compared
 * inline: most names differ there, and that saves a call. */
static inline bool name_eq(const char *a, const char *b)
{
    return a[0] == b[0] && !strcmp(a, b);
}

/* The CLOCK_MONOTONIC instant ms milliseconds from now, for
 * pthread_cond_timedwait on a condition set to that clock. */
static inline void deadline_after_ms(struct timespec *t, long long ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* Appends str (len bytes) as a quoted, escaped JSON string. */
void json_write_string(struct buf *b, const char *str, size_t len);

/* --- options (cli.c) ------------------------------------------------------ */

#define NODE_MAX_LINE_DEFAULT ((size_t)256 << 20)
/* Set by node_main_options; read by node_run. */
extern size_t node_opt_max_line;

/* --- one line, as the reader leaves it for the worker (parse.c) ----------- */

/* What could be read of a line that cannot be parsed (salvage.c): its
 * top-level src, decoded and NUL-terminated, and body.msg_id. */
struct salvaged {
    bool has_src, has_dest, has_msg_id;
    bool is_reply; /* body has in_reply_to: never answered */
    long long msg_id;
    char dest[256];
    size_t src_len;
    char src[]; /* room for src_cap + 1 bytes, given by the caller */
};
#define SALVAGE_SRC_MAX ((size_t)64 << 10) /* longer src values are not read */
/* Reads from at most len bytes of line; out has room for src_cap + 1 bytes
 * of src. Never fails: what cannot be read is left out. */
void salvage_line(const char *line, size_t len, struct salvaged *out, size_t src_cap);


struct parsed {
    char *line; /* inside its batch's text */
    size_t len;
    unsigned long long line_no;
    cJSON *root;                     /* NULL: not JSON (see error) */
    const struct bulk_slice *slices; /* its long strings, for bulk_string_len */
    size_t n_slices;
    bool utf8_ok, raw_nul, raw_control, trailing, escaped_nul;
    /* JSON that cJSON reads but RFC 8259 forbids: */
    bool bad_u_escape;    /* a \u without four hex digits, which cJSON reads as NUL */
    bool control_between; /* a byte below 0x20 other than tab, LF, CR between tokens */
    size_t escape_at;     /* escaped_nul, bad_u_escape: the escape's offset in the line */
    size_t control_at;    /* raw_control, control_between: the byte's offset */
    bool too_long;        /* longer than --max-line: only its start was kept */
    bool over_budget;     /* its tree would take more memory than allowed */
    bool out_of_memory;   /* the reader ran out of memory with it */
    size_t error_at;      /* where parsing failed (root NULL; SIZE_MAX: unknown) */
    struct salvaged *salvaged; /* root NULL: what could be read of the line */
};

/* The most parse memory one line may take beyond its own length: bounds
 * what a line of many small values costs ([1,1,1,...] is 32 bytes of tree
 * per 2 bytes of text). About a million values. */
#define NODE_PARSE_BUDGET ((size_t)64 << 20)

struct reader_state {
    struct bulk bulk; /* large strings of the line being parsed */
    unsigned long long line_no;
};

/* Parses one line into arena_now. Valid UTF-8 lines with long strings are
 * parsed from a skeleton (see bulk.c); the line itself may then change. */
void parse_line(struct reader_state *rs, char *line, size_t len, struct parsed *p);

/* --- the pending calls, deferred replies and timers (calls.c) ------------- */

struct deadline {
    uint64_t at;  /* node_now_ms() */
    uint64_t seq; /* ties go in order of arming */
    uint64_t id;  /* a call's msg_id or a timer's id */
    bool timer;
};

struct schedule {
    struct map calls;  /* msg_id (8 bytes) -> struct pending_call */
    struct map timers; /* id (8 bytes) -> struct node_timer_entry */
    struct deadline *heap;
    size_t n_heap, cap_heap;
    uint64_t next_seq, next_timer_id;
};

/* Milliseconds until the next deadline (0 when one is due), or -1 when
 * nothing is scheduled. */
long long schedule_wait_ms(const struct node *n);
/* Runs every callback whose deadline has passed. */
void schedule_run_due(struct node *n);
/* Routes a reply to its pending call; false when it matches none. */
bool schedule_route_reply(struct node *n, long long in_reply_to, const char *src,
                          const cJSON *body);
/* End of input: every pending call gets NODE_CALL_CLOSED, timers are
 * dropped. */
void schedule_close(struct node *n);

/* --- output (output.c) ------------------------------------------------------ */

/* What a queued line is, so that a failed commit can replace it. */
struct out_record {
    size_t dest_at;   /* offset of the dest (NUL-terminated) in out_dests */
    long long msg_id;
    long long in_reply_to;
    bool is_reply;    /* a reply to a client (else a message to a node) */
    bool has_in_reply_to;
};

/* Lines that leave together, and what a failed commit needs to turn them
 * into errors. */
struct out_queue {
    struct buf out;      /* the lines */
    size_t high;         /* the most out ever held: what out_queue_free wipes */
    bool sensitive;      /* out holds a sensitive line: wipe after writing */
    /* For the program's rollback (only kept when it has a commit hook). */
    struct out_record *records;
    size_t n_records, cap_records;
    struct buf dests;
};

struct output {
    struct out_queue q;  /* queued lines, not yet committed */
    struct buf early;    /* lines that wait for no commit (reply_early) */
    bool early_sensitive;
    bool broken;         /* stdout failed: nothing more is written */
    bool fatal;          /* a failed commit could not be rolled back */
    struct buf *capture; /* node_embed: lines go here instead of stdout */
    uint64_t queued_us;  /* when q.out's first line was queued (no state) */
};

/* Queues one line {"src":self,"dest":dest,"body":{"type":...,"msg_id":...,
 * ["in_reply_to":...,] fields}} built from r. msg_id 0 leaves msg_id out
 * (one-way messages). */
void output_line(struct node *n, const char *self, const char *dest, struct reply *r,
                 long long msg_id, bool has_in_reply_to, long long in_reply_to,
                 bool is_reply);
/* Commits (the program's hook) and writes everything queued; with a
 * committer, hands it to the committer instead. */
void output_flush(struct node *n);
/* After each line, in a node without a state: writes the queued lines once
 * the first has waited OUT_HOLD_US (plus the line in progress: a long
 * request adds its own time). Lines are otherwise written when the queue is
 * full or input runs dry (on one thread, before each read), so under steady
 * input a client that pipelines would wait for replies made long ago, and
 * the node would then idle while the client turns them into requests.
 * (With a state, lines wait for their commit, and commits gather: see
 * commit.c.) */
void output_flush_held(struct node *n);
/* Around program code: handlers, on_init, on_close, call callbacks and
 * timers. While it runs, a node with a state neither commits nor rolls back
 * (output_line only queues): a rollback would swap the state from under a
 * handler half way through, and the reply it then made would leave as a
 * success for changes lost; and a commit would seal half a request's
 * changes. After it, output_flush_full writes a queue that grew past its
 * limit meanwhile (outside all program code only). */
void program_enter(struct node *n);
void program_leave(struct node *n);
void output_flush_full(struct node *n);
/* CLOCK_MONOTONIC in microseconds (node_now_ms is it in milliseconds). */
uint64_t node_now_us(void);
void output_init(struct output *o);
void output_free(struct output *o);
/* For the committer: writes iovecs to stdout (or the capture buffer), every
 * byte; turns a queue's replies into error 13 and drops its messages to
 * nodes (after a failed commit); empties a queue (wiping it when it held
 * secrets). */
void output_write(struct node *n, struct iovec *iov, int cnt);
void out_queue_to_errors(struct node *n, struct out_queue *q);
void out_queue_drop(struct out_queue *q);
void out_queue_init(struct out_queue *q);
void out_queue_free(struct out_queue *q);

/* --- the committer (commit.c) --------------------------------------------- */

#define COMMIT_JOBS 8 /* queues on their way out at most; then the worker waits */

/* One flush's lines on their way out, behind the transactions sealed
 * before them. */
struct commit_job {
    struct out_queue q;
    uint64_t needs;           /* the transactions sealed before it (a count) */
    bool stage_failed;        /* the commit hook failed: these become errors */
    struct commit_job *next;
};

/* Shared between the worker and the committer, under lock. */
struct committer {
    bool running;             /* the worker's: set and cleared by it */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    struct commit_job *head, **tail, *spare;
    size_t in_flight;         /* jobs queued or being written */
    bool stop;
    /* Transactions sealed so far (the worker counts them, node_commit_staged)
     * and how many of those are durable (the committer's). */
    _Atomic uint64_t sealed;
    _Atomic uint64_t durable;
    _Atomic long long msg_ids_durable; /* node_msg_ids_durable */
    /* Both threads write stdout: the worker its early lines, the
     * committer the rest. */
    pthread_mutex_t write_lock;
    /* A commit failed: every job is answered with errors, without a
     * commit, until the worker has rolled back (and cleared it). */
    _Atomic bool failed;
    struct commit_job jobs[COMMIT_JOBS];
};

/* Starts the committer thread; -1 when it cannot (output commit then stays
 * on the worker). */
int committer_start(struct node *n);
/* Writes what is queued, then ends the thread. */
void committer_stop(struct node *n);
/* output_flush with a committer: seals through the commit hook and hands
 * the queued lines on; rolls back first when a commit has failed. At the
 * end of a batch (batch_end), only when the batch sealed something. */
void committer_flush(struct node *n, bool batch_end);
/* Before the worker answers anything: rolls back when a commit failed. */
void committer_check(struct node *n);
/* Whether the committer has nothing to do (no job queued or being written). */
bool committer_idle(struct node *n);
/* Pipes hold 64 KiB by default; asks for 1 MiB (best effort). */
void output_grow_pipe(int fd);

/* --- the node -------------------------------------------------------------- */

/* The lines completed by one read, on their way from the reader to the
 * worker (batch.c). */
struct batch {
    struct buf text;      /* the bytes the lines live in */
    struct parsed *items; /* the lines, parsed */
    size_t n, cap;
    struct arena arena;   /* their cJSON trees */
    struct batch *next;   /* in the queue or the free list */
};

#define NODE_BATCHES 3 /* one being read, one queued, one being answered */
#define SALVAGE_PREFIX ((size_t)4 << 10) /* what is kept of a dropped line */

struct node {
    const struct node_program *prog;
    struct app *app;
    size_t max_line;

    /* The worker's (the loop's only thread when !threaded). */
    char *id;            /* set by init */
    char *first_dest;    /* the dest of the first request, when it came before init */
    struct buf head;     /* {"src":<id>,"dest": for replies, once id is set */
    long long next_msg_id;
    struct output output;
    struct reply reply;  /* the reply to the request being answered */
    struct reply msg;    /* node_message's builder */
    struct arena own;    /* what handlers build with cJSON */
    struct schedule schedule;
    char logged_kinds[16][40]; /* reply types already logged as unmatched */
    size_t n_logged_kinds;     /* at most 17: 16 kept, then one "not logged" line */
    bool closing;        /* input ended: no new calls or timers */
    bool trim_pending;   /* much memory was freed: malloc_trim after the batch */
    bool durable;        /* node_set_durable: the commit hooks run */
    bool staged;         /* the commit hook sealed a transaction (node_commit_staged) */
    unsigned in_program; /* depth of program code running (program_enter) */
    bool msg_ids_from_clock; /* next_msg_id counts from the clock (node_msg_ids_from_clock) */
    _Atomic int stop_status; /* non-zero: stop now and exit with it (nothing more is written) */

    /* The reader's, on cache lines of their own: the two threads write their
     * fields for every line, and sharing a line would cost a transfer each. */
    _Alignas(64) struct reader_state reader;

    /* Shared: threaded is set before the worker starts; stop_status is
     * atomic; the rest is under lock. */
    _Alignas(64) bool threaded;
    pthread_t worker;
    pthread_mutex_t lock;
    pthread_cond_t queued, freed;
    struct batch *queue, *free_list;
    bool input_done;
    struct batch batches[NODE_BATCHES];

    _Alignas(64) struct committer committer;
};

/* Answers one parsed line (dispatch.c). Returns true when the request was
 * one its handler calls public, so the line need not be wiped. */
bool dispatch_line(struct node *n, const struct parsed *p);
/* The built-in requests (builtin.c): init and echo. NULL when t is neither. */
node_handler_fn builtin_find(const char *t);
/* Sets the node's id (and the reply head); 0 or -1 (out of memory). */
int node_set_id(struct node *n, const char *id);
/* Calls the program's on_init, when it has one. */
int node_call_on_init(struct node *n, const char *id, const cJSON *node_ids, struct reply *r);

/* The id the node's own messages carry as src: its id, else the dest of
 * the first request, else "". */
static inline const char *node_self(const struct node *n)
{
    return n->id ? n->id : n->first_dest ? n->first_dest : "";
}

#endif
