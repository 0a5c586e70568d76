/* calls.c - calls to other nodes, deferred replies and timers (see node.h).
 *
 * A pending call and a timer are both a deadline: one min-heap orders them,
 * and two tables find them by msg_id (a reply's in_reply_to) or timer id.
 * The heap is lazy: cancelling only removes the table entry, and a popped
 * deadline whose entry is gone (or was re-armed) is skipped. Everything here
 * belongs to the worker thread.
 */
#include "node_internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "securitor/wipe.h"

struct pending_call {
    long long msg_id; /* the table's key */
    char *dest;       /* the reply must come from here */
    uint64_t deadline;
    node_call_fn fn;
    void *ctx;
};

struct node_timer_entry {
    uint64_t id; /* the table's key */
    uint64_t deadline, period;
    node_timer_fn fn;
    void *ctx;
    void (*free_ctx)(void *ctx);
};

struct node_deferred {
    long long in_reply_to;
    bool has_in_reply_to;
    char *self; /* the src the reply carries (the request's dest before init) */
    char dest[]; /* the client */
};

uint64_t node_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t node_now_ms(void) { return node_now_us() / 1000u; }

/* --- the deadline heap ------------------------------------------------------ */

static bool earlier(const struct deadline *a, const struct deadline *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int heap_push(struct schedule *s, uint64_t at, uint64_t id, bool timer)
{
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? 2 * s->cap_heap : 64;
        struct deadline *h = realloc(s->heap, cap * sizeof(*h));
        if (!h)
            return -1;
        s->heap = h;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    struct deadline d = {.at = at, .seq = s->next_seq++, .id = id, .timer = timer};
    while (i > 0 && earlier(&d, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = d;
    return 0;
}

static struct deadline heap_pop(struct schedule *s)
{
    struct deadline top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_heap)
            break;
        if (c + 1 < s->n_heap && earlier(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!earlier(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_heap)
        s->heap[i] = last;
    return top;
}

/* Whether a heap entry still stands for a live call or timer. */
static bool live(const struct schedule *s, const struct deadline *d)
{
    if (d->timer) {
        const struct node_timer_entry *t = map_get(&s->timers, &d->id, sizeof(d->id));
        return t && t->deadline == d->at;
    }
    long long msg_id = (long long)d->id;
    const struct pending_call *c = map_get(&s->calls, &msg_id, sizeof(msg_id));
    return c && c->deadline == d->at;
}

/* Drops dead entries from the top of the heap. */
static void heap_trim(struct schedule *s)
{
    while (s->n_heap && !live(s, &s->heap[0]))
        heap_pop(s);
}

long long schedule_wait_ms(const struct node *n)
{
    struct schedule *s = (struct schedule *)&n->schedule; /* trimming is not a change */
    heap_trim(s);
    if (!s->n_heap)
        return -1;
    uint64_t now = node_now_ms(), at = s->heap[0].at;
    return at <= now ? 0 : (long long)(at - now);
}

/* --- calls --------------------------------------------------------------------- */

struct reply *node_message(struct node *n, const char *type)
{
    reply_clear(&n->msg);
    reply_type(&n->msg, type);
    return &n->msg;
}

static void call_free(struct pending_call *c)
{
    free(c->dest);
    free(c);
}

long long node_call(struct node *n, const char *dest, long long timeout_ms, node_call_fn fn,
                    void *ctx)
{
    struct schedule *s = &n->schedule;
    struct pending_call *c = calloc(1, sizeof(*c));
    if (!c || !(c->dest = strdup(dest)) || n->closing) {
        if (c)
            call_free(c);
        reply_clear(&n->msg);
        return 0;
    }
    c->msg_id = n->next_msg_id;
    c->deadline = node_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    c->fn = fn;
    c->ctx = ctx;
    if (map_put(&s->calls, &c->msg_id, sizeof(c->msg_id), c)) {
        call_free(c);
        reply_clear(&n->msg);
        return 0;
    }
    if (heap_push(s, c->deadline, (uint64_t)c->msg_id, false)) {
        map_remove(&s->calls, &c->msg_id, sizeof(c->msg_id));
        call_free(c);
        reply_clear(&n->msg);
        return 0;
    }
    n->next_msg_id++;
    output_line(n, node_self(n), dest, &n->msg, c->msg_id, false, 0, false);
    reply_clear(&n->msg);
    return c->msg_id;
}

int node_send(struct node *n, const char *dest)
{
    output_line(n, node_self(n), dest, &n->msg, 0, false, 0, false);
    reply_clear(&n->msg);
    return 0;
}

/* Calls a call's callback once and frees it; body NULL unless a reply. */
static void call_finish(struct node *n, struct pending_call *c, enum node_call_status st,
                        const cJSON *body)
{
    struct schedule *s = &n->schedule;
    map_remove(&s->calls, &c->msg_id, sizeof(c->msg_id));
    node_call_fn fn = c->fn;
    void *ctx = c->ctx;
    call_free(c);
    program_enter(n);
    fn(n->app, n, ctx, st, body);
    program_leave(n);
    output_flush_full(n);
}

bool schedule_route_reply(struct node *n, long long in_reply_to, const char *src,
                          const cJSON *body)
{
    struct pending_call *c = map_get(&n->schedule.calls, &in_reply_to, sizeof(in_reply_to));
    if (!c || strcmp(c->dest, src)) /* a reply from anyone else is not the answer */
        return false;
    call_finish(n, c, NODE_CALL_REPLY, body);
    return true;
}

/* --- deferred replies ------------------------------------------------------------ */

struct node_deferred *node_defer(const struct request *req, struct reply *r)
{
    struct node *n = req->node;
    long long id = 0;
    /* The reply's src: as for an answer now (dispatch.c). */
    const char *self = n->id ? n->id : req->dest ? req->dest : "";
    size_t len = strlen(req->src);
    struct node_deferred *d = malloc(sizeof(*d) + len + 1);
    if (!d || !(d->self = strdup(self))) {
        free(d);
        node_error(r, ERR_CRASH, "out of memory");
        return NULL;
    }
    memcpy(d->dest, req->src, len + 1);
    d->has_in_reply_to = req->msg_id && json_exact_int(req->msg_id, &id);
    d->in_reply_to = id;
    r->deferred = true;
    return d;
}

void node_deferred_drop(struct node_deferred *d)
{
    if (!d)
        return;
    free(d->self);
    free(d);
}

const char *node_deferred_dest(const struct node_deferred *d) { return d->dest; }

void node_answer(struct node *n, struct node_deferred *d)
{
    output_line(n, n->id ? n->id : d->self, d->dest, &n->msg, n->next_msg_id++,
                d->has_in_reply_to, d->in_reply_to, true);
    reply_clear(&n->msg);
    node_deferred_drop(d);
}

void node_answer_error(struct node *n, struct node_deferred *d, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    node_error(node_message(n, "error"), code, "%s", text);
    node_answer(n, d);
}

/* --- timers --------------------------------------------------------------------- */

uint64_t node_timer(struct node *n, uint64_t delay_ms, uint64_t period_ms, node_timer_fn fn,
                    void *ctx, void (*free_ctx)(void *ctx))
{
    struct schedule *s = &n->schedule;
    struct node_timer_entry *t = n->closing ? NULL : calloc(1, sizeof(*t));
    if (!t)
        return 0;
    *t = (struct node_timer_entry){.id = ++s->next_timer_id,
                                   .deadline = node_now_ms() + delay_ms,
                                   .period = period_ms, .fn = fn, .ctx = ctx,
                                   .free_ctx = free_ctx};
    if (map_put(&s->timers, &t->id, sizeof(t->id), t)) {
        free(t);
        return 0;
    }
    if (heap_push(s, t->deadline, t->id, true)) {
        map_remove(&s->timers, &t->id, sizeof(t->id));
        free(t);
        return 0;
    }
    return t->id;
}

static void timer_free(struct node_timer_entry *t)
{
    if (t->free_ctx)
        t->free_ctx(t->ctx);
    free(t);
}

void node_timer_cancel(struct node *n, uint64_t id)
{
    struct node_timer_entry *t = map_remove(&n->schedule.timers, &id, sizeof(id));
    if (t)
        timer_free(t);
}

void schedule_run_due(struct node *n)
{
    struct schedule *s = &n->schedule;
    uint64_t now = node_now_ms();
    bool ran = false;
    /* Only what was due when we started: a callback that arms a timer for
     * now runs on the next pass, so this loop always ends. */
    while (s->n_heap && s->heap[0].at <= now && !n->stop_status) {
        struct deadline d = heap_pop(s);
        if (!live(s, &d))
            continue;
        if (!d.timer) {
            long long msg_id = (long long)d.id;
            call_finish(n, map_get(&s->calls, &msg_id, sizeof(msg_id)), NODE_CALL_TIMEOUT,
                        NULL);
        } else {
            struct node_timer_entry *t = map_get(&s->timers, &d.id, sizeof(d.id));
            if (t->period) { /* re-armed before it runs: it may cancel itself */
                t->deadline = now + t->period;
                if (heap_push(s, t->deadline, t->id, true)) {
                    node_log("%s: out of memory: a periodic timer stops", n->prog->name);
                    t->period = 0;
                }
            }
            bool once = !t->period;
            if (once)
                map_remove(&s->timers, &t->id, sizeof(t->id));
            program_enter(n);
            t->fn(n->app, n, t->ctx);
            program_leave(n);
            output_flush_full(n);
            if (once)
                timer_free(t);
        }
        arena_reset(&n->own, (size_t)1 << 20); /* what the callback built with cJSON */
        ran = true;
    }
    if (ran)
        wipe_stack();
}

void schedule_close(struct node *n)
{
    struct schedule *s = &n->schedule;
    n->closing = true;
    size_t pos = 0;
    struct pending_call *c;
    /* A callback may remove other calls: start the walk again after each. */
    while ((pos = 0, c = map_next(&s->calls, &pos)) != NULL)
        call_finish(n, c, NODE_CALL_CLOSED, NULL);
    struct node_timer_entry *t;
    while ((pos = 0, t = map_next(&s->timers, &pos)) != NULL) {
        map_remove(&s->timers, &t->id, sizeof(t->id));
        timer_free(t);
    }
    map_free(&s->calls);
    map_free(&s->timers);
    free(s->heap);
    *s = (struct schedule){0};
}

/* --- the node's identity -------------------------------------------------------- */

const char *node_id(const struct node *n) { return n->id ? n->id : n->first_dest; }

long long node_last_msg_id(const struct node *n) { return n->next_msg_id - 1; }

void node_set_durable(struct node *n, bool on)
{
    n->durable = on && n->prog->commit;
    /* With a worker thread and a program that can flush on another thread,
     * commits move off the worker (commit.c). */
    if (n->durable && n->threaded && n->prog->commit_flush && !n->output.capture)
        (void)committer_start(n); /* -1: the worker commits, as without one */
    else if (!n->durable)
        committer_stop(n);
}

bool node_commit_pipelined(const struct node *n) { return n->committer.running; }

void node_commit_staged(struct node *n)
{
    n->staged = true;
    atomic_fetch_add(&n->committer.sealed, 1);
}

uint64_t node_commit_next(const struct node *n) { return atomic_load(&n->committer.sealed) + 1; }

bool node_commit_durable(const struct node *n, uint64_t commit)
{
    return !n->committer.running || commit <= atomic_load(&n->committer.durable);
}

void node_msg_ids_durable(struct node *n, long long upto)
{
    atomic_store(&n->committer.msg_ids_durable, upto);
}

void node_set_next_msg_id(struct node *n, long long next)
{
    if (next > n->next_msg_id || n->msg_ids_from_clock)
        n->next_msg_id = next;
    n->msg_ids_from_clock = false;
}
