/* builtin.c - the requests every node answers itself: init and echo
 * (PROTOCOL.md §1, Maelstrom's init and echo workload). */
#include "node_internal.h"

#include <stdlib.h>

int node_set_id(struct node *n, const char *id)
{
    /* Every reply from now on starts the same way: format it once. Both are
     * made before either replaces the old, so a failure changes nothing. */
    struct buf head = {0};
    buf_append_lit(&head, "{\"src\":");
    json_write_string(&head, id, strlen(id));
    buf_append_lit(&head, ",\"dest\":");
    char *copy = strdup(id);
    if (!copy || !buf_ok(&head)) {
        free(copy);
        buf_free(&head);
        return -1;
    }
    free(n->id);
    n->id = copy;
    buf_free(&n->head);
    n->head = head;
    return 0;
}

int node_call_on_init(struct node *n, const char *id, const cJSON *node_ids, struct reply *r)
{
    if (!n->prog->on_init)
        return 0;
    program_enter(n);
    int rc = n->prog->on_init(n->app, n, id, node_ids, r);
    program_leave(n);
    if (rc == NODE_FATAL)
        n->stop_status = 2;
    return rc;
}

static int h_init(struct app *app, const struct request *req, struct reply *r)
{
    (void)app;
    struct node *n = req->node;
    const char *id;
    size_t len;
    int rc = req_string(r, req->body, "node_id", false, &id, &len);
    if (rc)
        return rc;
    if (!len || memchr(id, '\0', len))
        return node_error(r, ERR_MALFORMED, "node_id: expected a non-empty string");
    const cJSON *ids = req_field(req->body, "node_ids"), *it;
    if (ids && cJSON_IsNull(ids))
        ids = NULL;
    if (ids && !cJSON_IsArray(ids))
        return node_error(r, ERR_MALFORMED, "node_ids: expected an array of strings");
    cJSON_ArrayForEach(it, ids) {
        if (!cJSON_IsString(it))
            return node_error(r, ERR_MALFORMED, "node_ids: expected an array of strings");
    }
    if ((rc = node_call_on_init(n, id, ids, r)))
        return rc;
    if (node_set_id(n, id))
        return node_error(r, ERR_CRASH, "out of memory");
    reply_type(r, "init_ok");
    return 0;
}

static int h_echo(struct app *app, const struct request *req, struct reply *r)
{
    (void)app;
    const cJSON *echo = req_field(req->body, "echo");
    if (!echo)
        return node_error(r, ERR_MALFORMED, "echo: missing; expected any JSON value");
    char *json = cJSON_PrintUnformatted(echo);
    if (!json)
        return node_error(r, ERR_CRASH, "out of memory");
    reply_type(r, "echo_ok");
    reply_raw(r, "echo", json, strlen(json));
    cJSON_free(json);
    return 0;
}

static const struct node_handler BUILTINS[] = {
    {.type = "init", .fn = h_init},
    {.type = "echo", .fn = h_echo},
};

node_handler_fn builtin_find(const char *t)
{
    for (size_t i = 0; i < sizeof(BUILTINS) / sizeof(BUILTINS[0]); i++)
        if (name_eq(t, BUILTINS[i].type))
            return BUILTINS[i].fn;
    return NULL;
}
