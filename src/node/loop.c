/* loop.c - node_run: reading stdin and splitting it into lines.
 *
 * Input is read in blocks and split into lines here, so that lines of any
 * length work. A line longer than --max-line is dropped as it streams in
 * (only its first bytes are kept, to answer its src with error 12); so is a
 * line the node has no memory for (error 13). Either way the node goes on
 * with the next line.
 */
#include "batch.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "securitor/wipe.h"

#define READ_CHUNK ((size_t)1 << 16) /* free space ensured before a read */
#define READ_MAX ((size_t)1 << 16)   /* most bytes taken by one read */

size_t node_opt_max_line = NODE_MAX_LINE_DEFAULT;
static bool msg_ids_from_clock; /* node_msg_ids_from_clock */

void node_msg_ids_from_clock(void) { msg_ids_from_clock = true; }

/* Single-threaded, before blocking on input: what is due runs, what is
 * queued is written, and the read waits only until the next deadline.
 * Returns false when a deadline came first (nothing to read yet). */
static bool wait_for_input(struct node *n)
{
    for (;;) {
        schedule_run_due(n);
        if (n->stop_status)
            return false;
        output_flush(n);
        long long wait_ms = schedule_wait_ms(n);
        if (wait_ms < 0)
            return true;
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&pfd, 1, wait_ms > 60000 ? 60000 : (int)wait_ms);
        if (r > 0 || (r < 0 && errno != EINTR))
            return true; /* readable, or let read() report the error */
    }
}

/* Drops the bytes of the partial line from `start` on (wiped: they may be
 * plaintext), keeping the buffer's memory for the rest of the line. */
static void discard_partial(struct buf *in, size_t start)
{
    wipe_bytes(in->data + start, in->len - start);
    in->len = start;
}

bool node_one_thread(void)
{
    const char *threads = getenv("SECURITOR_THREADS");
    return threads && !strcmp(threads, "1");
}

static struct node *node_new(const struct node_program *prog, struct app *app)
{
    struct node *n = calloc(1, sizeof(*n));
    if (!n) {
        node_log("%s: out of memory at start", prog->name);
        return NULL;
    }
    n->prog = prog;
    n->app = app;
    n->max_line = node_opt_max_line;
    n->next_msg_id = 1;
    if (msg_ids_from_clock) {
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec > 0 &&
            ts.tv_sec < NODE_MAX_SAFE_INT / 2000000) { /* room for as many ids again */
            n->next_msg_id = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
            n->msg_ids_from_clock = true;
        }
    }
    output_init(&n->output);
    return n;
}

/* After batches_stop: the status, and everything freed. */
static int node_delete(struct node *n)
{
    int status = n->stop_status ? n->stop_status : n->output.broken ? 1 : 0;
    arena_release(&n->own);
    output_free(&n->output);
    buf_free(&n->head);
    reply_free(&n->reply);
    reply_free(&n->msg);
    bulk_free(&n->reader.bulk);
    free(n->id);
    free(n->first_dest);
    arena_hooks_remove();
    free(n);
    return status;
}

int node_run(const struct node_program *prog, struct app *app)
{
    struct node *n = node_new(prog, app);
    if (!n)
        return 1;
    size_t start = 0, scan = 0; /* unparsed data begins at start; no '\n' before scan */
    bool dropping = false;      /* skipping the rest of a line we could not keep */

    signal(SIGPIPE, SIG_IGN); /* a closed stdout becomes EPIPE, reported once */
    output_grow_pipe(STDIN_FILENO);
    output_grow_pipe(STDOUT_FILENO);
    arena_hooks_install();
    n->threaded = !node_one_thread(); /* the same code either way */
    batches_start(n);
    struct batch *cur = &n->batches[0]; /* the batch being read into */

    while (!n->stop_status) {
        struct buf *in = &cur->text;
        char *nl = in->len > scan ? memchr(in->data + scan, '\n', in->len - scan) : NULL;
        if (nl) {
            size_t end = (size_t)(nl - in->data);
            if (!dropping)
                batch_take_line(n, cur, in->data + start, end - start);
            dropping = false;
            start = scan = end + 1;
            continue;
        }
        scan = in->len;
        if (!dropping && in->len - start > n->max_line) {
            batch_take_dropped(n, cur, in->data + start, in->len - start, false);
            dropping = true;
        }
        if (dropping) { /* the rest of a dropped line is not kept */
            discard_partial(in, start);
            scan = start;
        }
        /* The buffer is about to grow or move: hand the parsed lines on
         * first, and keep only the partial line after them. */
        if (cur->n || start) {
            if (!batch_hand_on(n, &cur, start) && !dropping && !n->stop_status) {
                node_log("%s: out of memory reading line %llu; dropped", prog->name,
                         n->reader.line_no + 1);
                dropping = true;
            }
            in = &cur->text;
            start = 0;
            scan = in->len;
            continue; /* the lines just answered may have stopped the node */
        }
        if (n->threaded)
            wipe_stack(); /* the reader's: cJSON's parse of the lines just handed on */
        else if (!wait_for_input(n))
            continue;
        if (!buf_reserve(in, READ_CHUNK)) {
            /* No memory to grow the line: it is dropped (error 13 to its src
             * when that can be read), and its room is reused for the rest. */
            in->failed = false;
            if (!dropping)
                batch_take_dropped(n, cur, in->data + start, in->len - start, true);
            dropping = true;
            discard_partial(in, start);
            scan = start;
            if (in->cap - in->len == 0) {
                node_log("%s: out of memory: cannot read stdin; stopping", prog->name);
                break;
            }
        }
        /* Reads are bounded so that a batch stays small and the partial
         * line left after the last complete one, which moves on, stays
         * short. */
        size_t room = in->cap - in->len;
        ssize_t got = read(STDIN_FILENO, in->data + in->len, room < READ_MAX ? room : READ_MAX);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            node_log("%s: cannot read stdin: %s", prog->name, strerror(errno));
            break;
        }
        if (got == 0) { /* end of input: a last line without '\n' still counts */
            if (in->len > start && !dropping)
                batch_take_line(n, cur, in->data + start, in->len - start);
            break;
        }
        in->len += (size_t)got;
    }
    if (cur->n && !n->stop_status)
        batch_hand_on(n, &cur, cur->text.len);
    batches_stop(n);
    return node_delete(n);
}

struct node *node_embed_open(const struct node_program *prog, struct app *app, struct buf *out)
{
    struct node *n = node_new(prog, app);
    if (!n)
        return NULL;
    n->output.capture = out;
    arena_hooks_install();
    n->threaded = false;
    batches_start(n);
    return n;
}

int node_embed_lines(struct node *n, const char *data, size_t len)
{
    struct batch *cur = &n->batches[0];
    struct buf *in = &cur->text;
    if (n->stop_status)
        return n->stop_status;
    buf_reset(in);
    buf_append(in, data, len);
    if (!buf_ok(in)) {
        buf_free(in);
        return 0; /* as a line the node had no memory for: dropped */
    }
    for (size_t start = 0; start < in->len;) {
        char *nl = memchr(in->data + start, '\n', in->len - start);
        size_t end = nl ? (size_t)(nl - in->data) : in->len;
        batch_take_line(n, cur, in->data + start, end - start);
        start = end + 1;
    }
    batch_hand_on(n, &cur, in->len); /* answers them all, on this thread */
    schedule_run_due(n);
    if (!n->stop_status)
        output_flush(n);
    return n->stop_status;
}

int node_embed_close(struct node *n)
{
    batches_stop(n);
    return node_delete(n);
}
