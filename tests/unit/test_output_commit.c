/* test_output_commit.c - a failed commit never happens under a handler.
 *
 * A handler may send messages to other nodes (node_send) before it fills
 * its reply. The loop used to write a large message at once (a body of 64
 * KiB or more, or a queue past 1 MiB), committing what was queued first; a
 * commit that failed then rolled the state back under the running handler,
 * and the reply it made next went out as a success for a change that was
 * lost. Now program code only queues (program_enter in node_internal.h):
 * the commit comes after the handler, and its failure turns the whole
 * batch's lines, this reply included, into error 13.
 *
 * The program under test keeps one number; its commit fails when told to,
 * as a disk would (EIO), and rollback puts back the last committed number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "node_internal.h"

struct app {
    long long value, committed;
    bool fail_next; /* the next commit fails */
    int rollbacks;
};

/* set {value, pad}: value changes, a note of pad bytes goes to n2, and the
 * reply says what the value is once the note was sent. */
static int h_set(struct app *app, const struct request *req, struct reply *r)
{
    long long v, pad;
    int rc;
    if ((rc = req_int(r, req->body, "value", false, -1000, 1000, &v, NULL)) ||
        (rc = req_int(r, req->body, "pad", false, 0, 4 << 20, &pad, NULL)))
        return rc;
    app->value = v;
    char *text = malloc((size_t)pad + 1);
    if (!text)
        return node_error(r, ERR_CRASH, "out of memory");
    memset(text, 'a', (size_t)pad);
    text[pad] = 0;
    struct reply *m = node_message(req->node, "note");
    reply_cstring(m, "pad", text);
    free(text);
    node_send(req->node, "n2");
    reply_type(r, "set_ok");
    reply_int(r, "value_now", app->value);
    return 0;
}

static int h_get(struct app *app, const struct request *req, struct reply *r)
{
    (void)req;
    reply_type(r, "got");
    reply_int(r, "value", app->value);
    return 0;
}

static int on_init(struct app *app, struct node *n, const char *id, const cJSON *ids,
                   struct reply *r)
{
    (void)app, (void)id, (void)ids, (void)r;
    node_set_durable(n, true);
    return 0;
}

static int commit(struct app *app)
{
    if (app->fail_next) {
        app->fail_next = false;
        return -1;
    }
    app->committed = app->value;
    return 0;
}

static int rollback(struct app *app)
{
    app->value = app->committed;
    app->rollbacks++;
    return 0;
}

static const struct node_handler HANDLERS[] = {{.type = "set", .fn = h_set},
                                               {.type = "get", .fn = h_get}};
static const struct node_program PROGRAM = {
    .name = "test-node", .summary = "a number that commits", .handlers = HANDLERS,
    .n_handlers = 2, .on_init = on_init, .commit = commit, .rollback = rollback};

/* The line answering msg_id (in_reply_to), copied into line[] (empty when
 * there is none), and how many lines from `from` on went to n2. Plain
 * string search: the node's cJSON hooks allocate from its own arena. */
static void answer_to(const struct buf *out, size_t from, long long msg_id, char *line,
                      size_t cap, int *notes)
{
    char key[40];
    snprintf(key, sizeof(key), "\"in_reply_to\":%lld,", msg_id);
    *notes = 0;
    line[0] = 0;
    for (size_t at = from; at < out->len;) {
        const char *nl = memchr(out->data + at, '\n', out->len - at);
        size_t end = nl ? (size_t)(nl - out->data) : out->len;
        size_t len = end - at;
        static const char to_n2[] = "{\"src\":\"n1\",\"dest\":\"n2\"";
        if (len >= sizeof(to_n2) - 1 && !memcmp(out->data + at, to_n2, sizeof(to_n2) - 1))
            ++*notes;
        if (!line[0] && len < cap && memmem(out->data + at, len, key, strlen(key))) {
            memcpy(line, out->data + at, len);
            line[len] = 0;
        }
        at = end + 1;
    }
}

static void feed(struct node *n, const char *line)
{
    CHECK(node_embed_lines(n, line, strlen(line)) == 0);
}

/* One run: value 1 committed, then a set of 5 whose note has `pad` bytes
 * while the disk fails (or not). */
static void run(long long pad, bool fail)
{
    struct app app = {0};
    struct buf out = {0};
    char line[200];
    int notes;
    struct node *n = node_embed_open(&PROGRAM, &app, &out);
    CHECK(n != NULL);
    if (!n)
        return;
    feed(n, "{\"src\":\"c\",\"dest\":\"n1\",\"body\":{\"type\":\"init\",\"msg_id\":1,"
            "\"node_id\":\"n1\",\"node_ids\":[\"n1\",\"n2\"]}}\n");
    feed(n, "{\"src\":\"c\",\"dest\":\"n1\",\"body\":{\"type\":\"set\",\"msg_id\":2,"
            "\"value\":1,\"pad\":0}}\n");
    CHECK(app.committed == 1);
    size_t from = out.len;
    app.fail_next = fail;
    snprintf(line, sizeof(line),
             "{\"src\":\"c\",\"dest\":\"n1\",\"body\":{\"type\":\"set\",\"msg_id\":3,"
             "\"value\":5,\"pad\":%lld}}\n", pad);
    feed(n, line);
    char set[512], got[512];
    answer_to(&out, from, 3, set, sizeof(set), &notes);
    from = out.len;
    feed(n, "{\"src\":\"c\",\"dest\":\"n1\",\"body\":{\"type\":\"get\",\"msg_id\":4}}\n");
    int none;
    answer_to(&out, from, 4, got, sizeof(got), &none);
    if (fail) {
        /* All of it lost: an error, no note, the value as committed. */
        CHECK(strstr(set, "\"type\":\"error\"") && strstr(set, "\"code\":13"));
        CHECK(notes == 0);
        CHECK(app.rollbacks == 1);
        CHECK(strstr(got, "\"value\":1}") != NULL);
    } else {
        CHECK(strstr(set, "\"type\":\"set_ok\"") && strstr(set, "\"value_now\":5}"));
        CHECK(notes == 1);
        CHECK(app.rollbacks == 0);
        CHECK(strstr(got, "\"value\":5}") != NULL);
    }
    CHECK(node_embed_close(n) == 0);
    buf_free(&out);
}

int main(void)
{
    /* 70 KiB: the note is a large body (written from where it was built);
     * 1.1 MiB: the queue passes its limit under the handler. */
    static const long long pads[] = {0, 70 * 1024, 1100 * 1024};
    for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
        run(pads[i], true);
        run(pads[i], false);
    }
    return check_finish("output_commit");
}
