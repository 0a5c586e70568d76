/* output.c - what leaves the process: protocol lines on stdout, logs on stderr.
 *
 * Lines are formatted into one buffer and written when the worker has
 * nothing left to do (before it blocks), when the buffer is large, or around
 * a large reply body, which goes out from where its handler wrote it. Every
 * write first calls the program's commit hook: no line leaves before the
 * state changes behind it are durable (output commit, PROTOCOL.md §4). When
 * the commit fails, the queued replies become error 13 and messages to other
 * nodes are dropped (as a network may drop them), and the program rolls its
 * state back to the last commit. When the program can commit on another
 * thread, the queue goes to the committer instead (commit.c), which writes
 * it once the changes behind it are durable.
 */
#include "node_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "securitor/wipe.h"

#define OUT_FLUSH ((size_t)1 << 20)  /* write out once this much is queued */
#define OUT_DIRECT ((size_t)1 << 16) /* larger reply bodies skip the copy */
#define OUT_KEEP ((size_t)4 << 20)   /* buffers larger than this are freed after use */
#define OUT_HOLD_US 5000              /* longest a line waits for later ones (no state) */

void node_log(const char *fmt, ...)
{
    /* One write per line: both threads log. */
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
    line[len] = '\n';
    fwrite(line, 1, len + 1, stderr);
}

void output_grow_pipe(int fd)
{
    /* A node moving megabytes through a 64 KiB pipe sleeps and wakes for
     * every 64 KiB. 1 MiB is the most an unprivileged process may ask for by
     * default; files and terminals are left alone. */
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
        (void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

/* Every byte of the iovecs (retrying short writes and EINTR). */
void output_write(struct node *n, struct iovec *iov, int cnt)
{
    struct output *o = &n->output;
    if (o->capture) { /* node_embed_open */
        for (int i = 0; i < cnt; i++)
            buf_append(o->capture, iov[i].iov_base, iov[i].iov_len);
        return;
    }
    while (cnt > 0 && !o->broken) {
        ssize_t w = writev(STDOUT_FILENO, iov, cnt);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            node_log("%s: cannot write to stdout: %s", n->prog->name, strerror(errno));
            o->broken = true;
            break;
        }
        size_t done = (size_t)w;
        while (cnt > 0 && done >= iov->iov_len) { /* skip what went out whole */
            done -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) { /* and resume inside the one cut short */
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
}

void out_queue_drop(struct out_queue *q)
{
    if (q->out.len > q->high)
        q->high = q->out.len;
    if (q->sensitive)
        wipe_bytes(q->out.data, q->out.len);
    q->sensitive = false;
    buf_reset(&q->out);
    q->n_records = 0;
    buf_reset(&q->dests);
    if (q->out.cap > OUT_KEEP) { /* one huge reply does not keep its memory */
        buf_free(&q->out);
        q->high = 0;
        out_queue_init(q);
    }
}

/* Writes the header of a line: {"src":self,"dest":dest,"body":{"type":T
 * [,"msg_id":M][,"in_reply_to":I] */
static inline __attribute__((always_inline)) void
write_head(struct buf *b, const struct buf *head, const char *self, const char *dest,
           const char *type, long long msg_id, bool has_in_reply_to, long long in_reply_to)
{
    if (head) { /* {"src":self,"dest": formatted once at init */
        buf_append(b, head->data, head->len);
    } else {
        buf_append_lit(b, "{\"src\":");
        json_write_string(b, self, strlen(self));
        buf_append_lit(b, ",\"dest\":");
    }
    json_write_string(b, dest, strlen(dest));
    buf_append_lit(b, ",\"body\":{\"type\":");
    json_write_string(b, type, strlen(type));
    if (msg_id) {
        buf_append_lit(b, ",\"msg_id\":");
        buf_append_ll(b, msg_id);
    }
    if (has_in_reply_to) {
        buf_append_lit(b, ",\"in_reply_to\":");
        buf_append_ll(b, in_reply_to);
    }
}

/* After a failed commit: every queued reply becomes error 13, every message
 * to another node is dropped. The replies keep their msg_id, and their
 * records, so that a queue turned into errors twice (the committer fails
 * again before it is written) says the same. Touches nothing of the node's
 * but its name: the committer calls it too. */
void out_queue_to_errors(struct node *n, struct out_queue *q)
{
    struct buf fresh = {0};
    size_t kept = 0;
    for (size_t i = 0; i < q->n_records; i++) {
        const struct out_record rec = q->records[i];
        if (!rec.is_reply)
            continue;
        const char *dest = q->dests.data + rec.dest_at;
        const char *self = dest + strlen(dest) + 1;
        write_head(&fresh, NULL, self, dest, "error", rec.msg_id, rec.has_in_reply_to,
                   rec.in_reply_to);
        buf_append_lit(&fresh, ",\"code\":13,\"text\":\"the node could not save its state, "
                               "so nothing of this request was kept; try again\"}}\n");
        q->records[kept++] = rec;
    }
    if (!buf_ok(&fresh)) {
        node_log("%s: out of memory while reporting a failed commit", n->prog->name);
        buf_free(&fresh);
        out_queue_drop(q);
        return;
    }
    if (q->sensitive) /* the lines replaced may have held plaintext */
        wipe_bytes(q->out.data, q->out.len);
    q->sensitive = false;
    buf_free(&q->out);
    q->out = fresh;
    q->high = 0;
    q->n_records = kept;
}

/* Commits the program's state before anything queued is written. Returns
 * false when the commit failed (the queue then holds the error replies). */
static bool commit_queued(struct node *n)
{
    struct output *o = &n->output;
    const struct node_program *prog = n->prog;
    if (!n->durable || !prog->commit || prog->commit(n->app) == 0)
        return true;
    node_log("%s: the state could not be saved; %zu queued lines are replaced by error 13 "
             "replies and the state goes back to its last commit", prog->name, o->q.n_records);
    out_queue_to_errors(n, &o->q);
    if (!prog->rollback || prog->rollback(n->app)) {
        node_log("%s: the state cannot be rolled back; stopping", prog->name);
        o->fatal = true;
        n->stop_status = 1;
    }
    return false;
}

void output_flush(struct node *n)
{
    struct output *o = &n->output;
    if (n->committer.running) {
        committer_flush(n, false);
        return;
    }
    if (!o->q.out.len) {
        /* Nothing to let out, but changes made without output (a timer's,
         * a callback's) become durable too, soon. */
        if (n->durable && !commit_queued(n))
            out_queue_drop(&o->q);
        if (!o->q.out.len)
            return;
    }
    commit_queued(n);
    struct iovec iov = {o->q.out.data, o->q.out.len};
    if (o->q.out.len)
        output_write(n, &iov, 1);
    out_queue_drop(&o->q);
}

void program_enter(struct node *n) { n->in_program++; }
void program_leave(struct node *n) { n->in_program--; }

void output_flush_full(struct node *n)
{
    const struct output *o = &n->output;
    if (!n->in_program && !n->stop_status &&
        (o->q.out.len >= OUT_FLUSH || o->early.len >= OUT_FLUSH))
        output_flush(n);
}

void output_flush_held(struct node *n)
{
    const struct output *o = &n->output;
    /* Not once stopping: a node that stops writes nothing more (on_init's
     * NODE_FATAL exits 2 before any output). */
    if (!n->durable && !n->stop_status && o->q.out.len &&
        node_now_us() - o->queued_us >= OUT_HOLD_US)
        output_flush(n);
}

/* Remembers what a queued line is, for out_queue_to_errors. Only kept when
 * the program commits state; without memory the record is skipped (and a
 * failed commit then drops the line instead). */
static void record_line(struct node *n, const char *self, const char *dest, long long msg_id,
                        bool has_in_reply_to, long long in_reply_to, bool is_reply)
{
    struct out_queue *o = &n->output.q;
    if (o->n_records == o->cap_records) {
        size_t cap = o->cap_records ? 2 * o->cap_records : 64;
        struct out_record *r = realloc(o->records, cap * sizeof(*r));
        if (!r)
            return;
        o->records = r;
        o->cap_records = cap;
    }
    size_t at = o->dests.len;
    buf_append(&o->dests, dest, strlen(dest) + 1);
    buf_append(&o->dests, self, strlen(self) + 1);
    if (!buf_ok(&o->dests)) {
        o->dests.failed = false;
        o->dests.len = at;
        return;
    }
    o->records[o->n_records++] = (struct out_record){
        .dest_at = at, .msg_id = msg_id, .in_reply_to = in_reply_to,
        .is_reply = is_reply, .has_in_reply_to = has_in_reply_to};
}

void output_line(struct node *n, const char *self, const char *dest, struct reply *r,
                 long long msg_id, bool has_in_reply_to, long long in_reply_to,
                 bool is_reply)
{
    struct output *o = &n->output;
    /* A line that depends on nothing uncommitted skips the committer's
     * queue (commit.c writes it at the end of the batch); its msg_id must
     * be reserved durably already, as every line's is when it leaves. */
    const struct committer *c = &n->committer;
    bool early = r->early && c->running && r->early_after <= atomic_load(&c->durable) &&
                 msg_id <= atomic_load(&c->msg_ids_durable);
    struct buf *b = early ? &o->early : &o->q.out;
    /* Inside program code, a node with a state only queues (program_enter). */
    bool hold = n->in_program && n->durable;
    size_t mark = b->len;
    const struct buf *head = self == n->id && n->head.len ? &n->head : NULL;

    if (!r->type) /* a handler that filled nothing is a bug: say so */
        node_error(r, ERR_CRASH, "internal error: handler produced no reply");
    for (int attempt = 0; attempt < 2; attempt++) {
        if (n->durable && !early) /* an early line never turns into an error */
            record_line(n, self, dest, msg_id, has_in_reply_to, in_reply_to, is_reply);
        write_head(b, head, self, dest, r->type, msg_id, has_in_reply_to, in_reply_to);
        if (r->fields.len >= OUT_DIRECT && buf_ok(b) && buf_ok(&r->fields) &&
            !n->committer.running && !hold) {
            /* A large body goes out from where it was written: queued lines,
             * this header, the body and the trailer in one writev. (With a
             * committer it is copied: the committer writes it later.) */
            if (!commit_queued(n)) /* the queue now holds its error instead */
                break;
            struct iovec iov[3] = {{b->data, b->len}, {r->fields.data, r->fields.len},
                                   {(char *)"}}\n", 3}};
            output_write(n, iov, 3);
            out_queue_drop(&o->q); /* the body is wiped with the reply */
            break;
        }
        buf_append(b, r->fields.data, r->fields.len);
        buf_append_lit(b, "}}\n");
        if (early)
            o->early_sensitive |= r->sensitive;
        else
            o->q.sensitive |= r->sensitive;
        if (buf_ok(b) && buf_ok(&r->fields))
            break;
        /* Out of memory while formatting: drop the partial line (wiped: it
         * may be plaintext, and no drop wipes past len) and send a short
         * error instead, which needs little memory. */
        b->failed = false;
        if (b->len > mark)
            wipe_bytes(b->data + mark, b->len - mark);
        b->len = mark;
        if (!hold)
            output_flush(n);
        mark = b->len;
        node_error(r, ERR_CRASH, "out of memory while building the message");
    }
    if (b == &o->q.out && !mark && b->len && !n->durable)
        o->queued_us = node_now_us(); /* the first line since the last write */
    if (b->len >= OUT_FLUSH && !hold)
        output_flush(n);
}

void out_queue_init(struct out_queue *q)
{
    /* The queue fills to OUT_FLUSH under load: take the room once, rather
     * than grow through a dozen sizes, each copied and wiped. Untouched
     * pages cost nothing; without the memory, buffers grow as they need. */
    if (!buf_reserve(&q->out, OUT_FLUSH + OUT_DIRECT))
        buf_reset(&q->out);
}

void out_queue_free(struct out_queue *q)
{
    out_queue_drop(q);
    /* Only the bytes ever written, not the whole reservation (buf_free
     * would touch every page of it). */
    if (q->out.data)
        wipe_bytes(q->out.data, q->high);
    free(q->out.data);
    buf_free(&q->dests);
    free(q->records);
    *q = (struct out_queue){0};
}

void output_init(struct output *o) { out_queue_init(&o->q); }

void output_free(struct output *o)
{
    out_queue_free(&o->q);
    if (o->early_sensitive)
        wipe_bytes(o->early.data, o->early.len);
    buf_free(&o->early);
    *o = (struct output){0};
}
