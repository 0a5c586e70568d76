/* runtime_node.c - a node for testing the runtime itself (tests only).
 *
 * Requests:
 *   ping {}                          -> pong {}
 *   call {peer, timeout_ms, type?}   -> call_ok {reply}   after peer answers
 *                                       error 0            when the deadline passes
 *                                       error 14           when input ends first
 *   notify {peer}                    -> notified {}       (sends a one-way "note")
 *   note {}                          one-way: counted, never answered
 *   after {ms, tag}                  -> after_ok {tag}    from a timer, ms later
 *   tick {ms, count}                 -> ticked {count}    after `count` periodic ticks
 *   set {value}                      -> set_ok {value, previous}: the state a commit saves
 *   get {}                           -> got {value, notes, committed}
 *
 * The "state" is one integer. Its commit hook fails while the file named by
 * RUNTIME_FAIL_COMMIT exists, and rollback restores the last committed
 * value; with RUNTIME_FAIL_INIT set, on_init is fatal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "securitor/node.h"

struct app {
    long long value, committed;
    long long notes;
    long long commits;
};

struct call_ctx {
    struct node_deferred *d;
};

static void call_done(struct app *app, struct node *n, void *ctx, enum node_call_status st,
                      const cJSON *body)
{
    (void)app;
    struct call_ctx *c = ctx;
    if (st == NODE_CALL_TIMEOUT) {
        node_answer_error(n, c->d, ERR_TIMEOUT, "the peer did not answer in time");
    } else if (st == NODE_CALL_CLOSED) {
        node_answer_error(n, c->d, 14, "input ended before the peer answered");
    } else {
        char *json = cJSON_PrintUnformatted(body);
        struct reply *m = node_message(n, "call_ok");
        if (json)
            reply_raw(m, "reply", json, strlen(json));
        cJSON_free(json);
        node_answer(n, c->d);
    }
    free(c);
}

static int h_ping(struct app *app, const struct request *req, struct reply *r)
{
    (void)app, (void)req;
    reply_type(r, "pong");
    return 0;
}

static int h_call(struct app *app, const struct request *req, struct reply *r)
{
    (void)app;
    const char *peer, *type;
    long long timeout;
    int rc;
    if ((rc = req_string(r, req->body, "peer", false, &peer, NULL)) ||
        (rc = req_string(r, req->body, "type_to_send", true, &type, NULL)) ||
        (rc = req_int(r, req->body, "timeout_ms", false, 0, 60000, &timeout, NULL)))
        return rc;
    struct call_ctx *c = malloc(sizeof(*c));
    if (!c)
        return node_error(r, ERR_CRASH, "out of memory");
    if (!(c->d = node_defer(req, r))) {
        free(c);
        return ERR_CRASH;
    }
    node_message(req->node, type ? type : "ping");
    if (!node_call(req->node, peer, timeout, call_done, c)) {
        node_answer_error(req->node, c->d, ERR_CRASH, "could not send the call");
        free(c);
    }
    return 0;
}

static int h_notify(struct app *app, const struct request *req, struct reply *r)
{
    (void)app;
    const char *peer;
    int rc = req_string(r, req->body, "peer", false, &peer, NULL);
    if (rc)
        return rc;
    node_message(req->node, "note");
    node_send(req->node, peer);
    reply_type(r, "notified");
    return 0;
}

static int h_note(struct app *app, const struct request *req, struct reply *r)
{
    (void)req;
    app->notes++;
    reply_none(r); /* one-way: nothing goes back */
    return 0;
}

struct after_ctx {
    struct node_deferred *d;
    char tag[64];
    long long left;
    uint64_t timer;
};

static void after_fire(struct app *app, struct node *n, void *ctx)
{
    (void)app;
    struct after_ctx *a = ctx;
    struct reply *m = node_message(n, "after_ok");
    reply_cstring(m, "tag", a->tag);
    node_answer(n, a->d);
    a->d = NULL;
}

static void after_free(void *ctx)
{
    struct after_ctx *a = ctx;
    node_deferred_drop(a->d); /* only when input ended first: never answered */
    free(a);
}

static int h_after(struct app *app, const struct request *req, struct reply *r)
{
    (void)app;
    long long ms;
    const char *tag;
    int rc;
    if ((rc = req_int(r, req->body, "ms", false, 0, 60000, &ms, NULL)) ||
        (rc = req_string(r, req->body, "tag", false, &tag, NULL)))
        return rc;
    struct after_ctx *a = calloc(1, sizeof(*a));
    if (!a)
        return node_error(r, ERR_CRASH, "out of memory");
    snprintf(a->tag, sizeof(a->tag), "%s", tag);
    if (!(a->d = node_defer(req, r))) {
        free(a);
        return ERR_CRASH;
    }
    if (!node_timer(req->node, (uint64_t)ms, 0, after_fire, a, after_free)) {
        node_answer_error(req->node, a->d, ERR_CRASH, "could not arm the timer");
        free(a);
    }
    return 0;
}

static void tick_fire(struct app *app, struct node *n, void *ctx)
{
    (void)app;
    struct after_ctx *a = ctx;
    if (--a->left > 0)
        return;
    struct reply *m = node_message(n, "ticked");
    reply_cstring(m, "tag", a->tag);
    node_answer(n, a->d);
    a->d = NULL;
    node_timer_cancel(n, a->timer); /* frees a */
}

static int h_tick(struct app *app, const struct request *req, struct reply *r)
{
    (void)app;
    long long ms, count;
    int rc;
    if ((rc = req_int(r, req->body, "ms", false, 1, 60000, &ms, NULL)) ||
        (rc = req_int(r, req->body, "count", false, 1, 1000, &count, NULL)))
        return rc;
    struct after_ctx *a = calloc(1, sizeof(*a));
    if (!a)
        return node_error(r, ERR_CRASH, "out of memory");
    snprintf(a->tag, sizeof(a->tag), "%lld ticks", count);
    a->left = count;
    if (!(a->d = node_defer(req, r))) {
        free(a);
        return ERR_CRASH;
    }
    if (!(a->timer = node_timer(req->node, (uint64_t)ms, (uint64_t)ms, tick_fire, a,
                                after_free))) {
        node_answer_error(req->node, a->d, ERR_CRASH, "could not arm the timer");
        free(a);
    }
    return 0;
}

static int h_set(struct app *app, const struct request *req, struct reply *r)
{
    long long v;
    int rc = req_int(r, req->body, "value", false, -NODE_MAX_SAFE_INT, NODE_MAX_SAFE_INT, &v,
                     NULL);
    if (rc)
        return rc;
    reply_type(r, "set_ok");
    reply_int(r, "value", v);
    reply_int(r, "previous", app->value);
    app->value = v;
    return 0;
}

static int h_get(struct app *app, const struct request *req, struct reply *r)
{
    (void)req;
    reply_type(r, "got");
    reply_int(r, "value", app->value);
    reply_int(r, "notes", app->notes);
    reply_int(r, "committed", app->committed);
    return 0;
}

static int on_init(struct app *app, struct node *n, const char *node_id,
                   const cJSON *node_ids, struct reply *r)
{
    (void)app, (void)node_ids, (void)r;
    if (getenv("RUNTIME_FAIL_INIT")) {
        node_log("runtime-node: refusing to start as %s (RUNTIME_FAIL_INIT)", node_id);
        return NODE_FATAL;
    }
    node_set_durable(n, true); /* its one-integer "state" is committed */
    return 0;
}

static int commit(struct app *app)
{
    const char *fail = getenv("RUNTIME_FAIL_COMMIT");
    app->commits++;
    if (fail && access(fail, F_OK) == 0)
        return -1;
    app->committed = app->value;
    return 0;
}

static int rollback(struct app *app)
{
    app->value = app->committed;
    return 0;
}

static const struct node_handler HANDLERS[] = {
    {.type = "ping", .fn = h_ping},     {.type = "call", .fn = h_call},
    {.type = "notify", .fn = h_notify}, {.type = "note", .fn = h_note},
    {.type = "after", .fn = h_after},   {.type = "tick", .fn = h_tick},
    {.type = "set", .fn = h_set},       {.type = "get", .fn = h_get},
};

static const struct node_program PROGRAM = {
    .name = "runtime-node",
    .summary = "A node for testing the runtime: calls, timers, deferred replies, commits.",
    .handlers = HANDLERS,
    .n_handlers = sizeof(HANDLERS) / sizeof(HANDLERS[0]),
    .on_init = on_init,
    .commit = commit,
    .rollback = rollback,
};

int main(int argc, char **argv)
{
    int status;
    if (node_main_options(&PROGRAM, &argc, argv, &status))
        return status;
    struct app app = {0};
    return node_run(&PROGRAM, &app);
}
