/* batch.c - the reader parses, the worker answers.
 *
 * cJSON's parse is about half the work of a small request and the answer the
 * other half, so the loop runs them on two threads, a batch of lines at a
 * time: the reader reads stdin, splits and checks lines and parses each into
 * its batch's arena; the worker answers the batches in order, runs timers,
 * writes the output and gives each batch back for reuse. Node state (keys,
 * sessions, msg_id, pending calls, the output) belongs to the worker alone;
 * the two share only the queue and the free list, under one lock. A batch
 * holds the lines completed by one read: its text is the buffer they were
 * read into, handed on whole, so no line is copied.
 *
 * A node with a state to commit has a third thread, the committer
 * (commit.c), which makes the worker's changes durable and writes the lines
 * behind them while the worker answers the next batch.
 *
 * With SECURITOR_THREADS=1 the reader answers each batch itself (the same
 * code), and waits for timers with poll() before it reads.
 */
#include "batch.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <time.h>

#include "securitor/cbc.h"
#include "securitor/kdf.h"
#include "securitor/wipe.h"

#define BATCH_ARENA_KEEP ((size_t)4 << 20) /* parse memory a batch keeps */
#define BATCH_TEXT_KEEP ((size_t)4 << 20)  /* line memory a batch keeps */
#define TRIM_AFTER ((size_t)16 << 20)      /* freed at once: hand it back to the system */

/* Answers a batch's lines in order, wipes them (public requests aside) and
 * their trees at once, and empties the batch but for its text. */
static void answer_batch(struct node *n, struct batch *b)
{
    /* The shared HMAC and AES-CBC contexts are scrubbed once, after the
     * batch, as the stack is (kdf_hold, cbc_hold): they hold the last keys a
     * handler used until then, at most the batch's lines later, instead of
     * being re-keyed with zeros (HMAC) or freed (AES) after every message. */
    kdf_hold();
    cbc_hold();
    committer_check(n); /* a failed commit is rolled back before anything more */
    for (size_t i = 0; i < b->n; i++) {
        struct parsed *p = &b->items[i];
        if (n->stop_status || !dispatch_line(n, p))
            wipe_bytes(p->line, p->len); /* the line may have held plaintext */
        output_flush_held(n); /* a batch can be long: its replies need not wait for it */
    }
    size_t freed = arena_reset(&b->arena, BATCH_ARENA_KEEP); /* the trees held the values */
    if (b->text.cap > BATCH_TEXT_KEEP) /* one huge line does not keep its memory */
        freed += b->text.cap;
    /* glibc keeps freed heap for reuse; after a huge request, give it back. */
    if (freed > TRIM_AFTER)
        n->trim_pending = true;
    b->n = 0;
    kdf_release(); /* re-keys the HMAC context with zeros */
    cbc_release(); /* resets the cipher context, which cleanses it */
    wipe_stack();  /* what the handlers' callees left on the stack */
}

/* The worker's last steps at end of input: the program's on_close, pending
 * calls cancelled (their callbacks may still answer clients), timers
 * dropped, everything written. Runs on the worker. */
static void finish(struct node *n)
{
    if (n->stop_status)
        return;
    if (n->prog->on_close) {
        program_enter(n);
        n->prog->on_close(n->app, n);
        program_leave(n);
    }
    schedule_close(n);
    if (!n->stop_status)
        output_flush(n);
    committer_stop(n); /* after writing what it holds */
}

/* Sleeps until a batch is queued, input ends, or wait_ms (if >= 0) passes.
 * Called and returns with the lock held. */
static void wait_for_work(struct node *n, long long wait_ms)
{
    struct timespec until;
    if (wait_ms >= 0)
        deadline_after_ms(&until, wait_ms);
    while (!n->queue && !n->input_done) {
        if (wait_ms < 0)
            pthread_cond_wait(&n->queued, &n->lock);
        else if (pthread_cond_timedwait(&n->queued, &n->lock, &until) == ETIMEDOUT)
            break;
    }
}

static void *worker_main(void *arg)
{
    struct node *n = arg;
    /* For top -H and perf; a name that does not take changes nothing. */
    (void)pthread_setname_np(pthread_self(), "worker");
    arena_now = &n->own;
    pthread_mutex_lock(&n->lock);
    for (;;) {
        struct batch *b = n->queue;
        if (!b) {
            if (n->input_done || n->stop_status)
                break;
            /* Nothing left to answer: run what is due and write what is
             * queued before waiting, as the reader may be waiting for input
             * (PROTOCOL.md §1). */
            pthread_mutex_unlock(&n->lock);
            schedule_run_due(n);
            if (!n->stop_status)
                output_flush(n);
            long long wait_ms = schedule_wait_ms(n);
            pthread_mutex_lock(&n->lock);
            if (!n->stop_status)
                wait_for_work(n, wait_ms);
            continue;
        }
        n->queue = b->next;
        pthread_mutex_unlock(&n->lock);
        answer_batch(n, b);
        schedule_run_due(n); /* timers do not starve under steady input */
        /* With a committer, a batch's changes and the lines behind them go
         * to it at once when it is idle, so the disk never waits for the
         * worker; while it is busy they gather into one larger commit
         * (flushed when the queue runs dry, as without one). */
        if (n->committer.running && committer_idle(n))
            committer_flush(n, true);
        buf_reset(&b->text);
        if (b->text.cap > BATCH_TEXT_KEEP)
            buf_free(&b->text);
        if (n->trim_pending) {
            malloc_trim(0);
            n->trim_pending = false;
        }
        pthread_mutex_lock(&n->lock);
        b->next = n->free_list;
        n->free_list = b;
        pthread_cond_signal(&n->freed);
    }
    pthread_mutex_unlock(&n->lock);
    /* A stop (on_init could not open the state; a failed commit could not be
     * rolled back) ends the process from here: the reader may be blocked
     * reading input that never comes. Nothing queued is written. */
    if (n->stop_status)
        exit(n->stop_status);
    finish(n);
    return NULL;
}

int batches_start(struct node *n)
{
    pthread_condattr_t attr;
    pthread_mutex_init(&n->lock, NULL);
    /* Timers use the monotonic clock, so the worker's waits do too. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&n->queued, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&n->freed, NULL);
    for (int i = 1; i < NODE_BATCHES; i++) {
        n->batches[i].next = n->free_list;
        n->free_list = &n->batches[i];
    }
    if (n->threaded && pthread_create(&n->worker, NULL, worker_main, n)) {
        node_log("%s: cannot start the worker thread; running on one", n->prog->name);
        n->threaded = false;
    }
    if (!n->threaded)
        arena_now = &n->own;
    return 0;
}

/* Keeps one parsed line in b (the items array grows as needed). Returns the
 * slot, or NULL when out of memory (the caller drops the line). */
static struct parsed *new_item(struct node *n, struct batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        struct parsed *items = realloc(b->items, cap * sizeof(*items));
        if (!items) {
            node_log("%s: out of memory at line %llu; dropped", n->prog->name,
                     n->reader.line_no);
            return NULL;
        }
        b->items = items;
        b->cap = cap;
    }
    return &b->items[b->n++];
}

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

void batch_take_line(struct node *n, struct batch *b, char *line, size_t len)
{
    n->reader.line_no++;
    if (len && line[len - 1] == '\r')
        len--;
    if (blank(line, len))
        return;
    struct parsed *p = new_item(n, b);
    if (!p) {
        wipe_bytes(line, len);
        return;
    }
    arena_now = &b->arena;
    parse_line(&n->reader, line, len, p);
    if (!n->threaded)
        arena_now = &n->own;
}

void batch_take_dropped(struct node *n, struct batch *b, const char *start, size_t len,
                        bool out_of_memory)
{
    size_t keep = len < SALVAGE_PREFIX ? len : SALVAGE_PREFIX;
    n->reader.line_no++;
    struct parsed *p = new_item(n, b);
    if (!p)
        return;
    arena_now = &b->arena;
    char *copy = arena_alloc(keep + 1);
    struct salvaged *s = arena_alloc(sizeof(*s) + keep + 1);
    if (!n->threaded)
        arena_now = &n->own;
    *p = (struct parsed){.line = copy, .len = copy ? keep : 0, .line_no = n->reader.line_no,
                         .too_long = !out_of_memory, .out_of_memory = out_of_memory,
                         .salvaged = s, .error_at = SIZE_MAX};
    if (copy)
        memcpy(copy, start, keep);
    if (s)
        salvage_line(start, keep, s, keep);
}

bool batch_hand_on(struct node *n, struct batch **b, size_t start)
{
    struct batch *full = *b;
    struct buf *text = &full->text;
    size_t rest = text->len - start;
    if (!n->threaded) {
        answer_batch(n, full);
        schedule_run_due(n);
        /* The partial line moves to the front; its old copy is wiped (it
         * may be plaintext). */
        memmove(text->data, text->data + start, rest);
        wipe_bytes(text->data + rest, start);
        text->len = rest;
        if (text->cap > BATCH_TEXT_KEEP && rest < BATCH_TEXT_KEEP / 2)
            buf_shrink(text);
        if (n->trim_pending) {
            malloc_trim(0);
            n->trim_pending = false;
        }
        return true;
    }
    pthread_mutex_lock(&n->lock);
    while (!n->free_list)
        pthread_cond_wait(&n->freed, &n->lock);
    struct batch *next = n->free_list;
    n->free_list = next->next;
    pthread_mutex_unlock(&n->lock);

    buf_append(&next->text, text->data + start, rest);
    bool kept = buf_ok(&next->text);
    if (!kept)
        buf_reset(&next->text);
    wipe_bytes(text->data + start, rest); /* moved, or dropped */
    text->len = start;

    pthread_mutex_lock(&n->lock);
    full->next = NULL;
    struct batch **tail = &n->queue;
    while (*tail)
        tail = &(*tail)->next;
    *tail = full;
    pthread_cond_signal(&n->queued);
    pthread_mutex_unlock(&n->lock);
    *b = next;
    return kept;
}

void batches_stop(struct node *n)
{
    if (n->threaded) {
        pthread_mutex_lock(&n->lock);
        n->input_done = true;
        pthread_cond_signal(&n->queued);
        pthread_mutex_unlock(&n->lock);
        pthread_join(n->worker, NULL);
    } else {
        finish(n);
    }
    for (int i = 0; i < NODE_BATCHES; i++) {
        buf_free(&n->batches[i].text);
        free(n->batches[i].items);
        arena_release(&n->batches[i].arena);
    }
    pthread_cond_destroy(&n->freed);
    pthread_cond_destroy(&n->queued);
    pthread_mutex_destroy(&n->lock);
}
