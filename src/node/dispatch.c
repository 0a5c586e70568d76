/* dispatch.c - the worker's half of a line: what it is, and who answers it.
 *
 * A message with in_reply_to is a reply to one of the node's own calls: it
 * goes to that call's callback and is never answered (PROTOCOL.md §1), so
 * two nodes wired together cannot ping-pong errors. Everything else is a
 * request: its envelope is checked, then the built-in table (init, echo) or
 * the binary's dispatch table answers it.
 */
#include "node_internal.h"

#include <stdlib.h>

#include "securitor/wipe.h"

#define OWN_ARENA_KEEP ((size_t)1 << 20) /* what the worker's arena keeps between requests */

static const cJSON *string_field(const cJSON *obj, const char *key)
{
    const cJSON *v = req_field(obj, key);
    return cJSON_IsString(v) && v->valuestring ? v : NULL;
}

/* A reply that matches no pending call: dropped, with one stderr line per
 * reply type. */
static void log_unmatched(struct node *n, const char *type, const char *src)
{
    const size_t cap = sizeof(n->logged_kinds) / sizeof(n->logged_kinds[0]);
    char kind[40];
    snprintf(kind, sizeof(kind), "%s", type);
    /* n_logged_kinds stops at cap + 1: cap kinds kept, then "full" said once. */
    for (size_t i = 0; i < n->n_logged_kinds && i < cap; i++)
        if (!strcmp(n->logged_kinds[i], kind))
            return;
    if (n->n_logged_kinds < cap) {
        memcpy(n->logged_kinds[n->n_logged_kinds++], kind, sizeof(kind));
        node_log("%s: dropped a \"%s\" reply from \"%.64s\" that matches no request of ours "
                 "(such replies are not logged again)", n->prog->name, kind, src);
    } else if (n->n_logged_kinds == cap) {
        n->n_logged_kinds++;
        node_log("%s: further unmatched replies of other types are not logged",
                 n->prog->name);
    }
}

/* A line cJSON could not take (or the reader had to drop): error 12 (13 when
 * memory ran out) when its src can be read, else a stderr line. */
static void refuse_unparsed(struct node *n, const struct parsed *p)
{
    const struct salvaged *s = p->salvaged;
    struct reply *r = &n->reply;
    const char *what = p->too_long ? "longer than --max-line" :
                       p->out_of_memory ? "too big for the memory left" : "not JSON";
    if (!s || !s->has_src) {
        node_log("%s: line %llu: %s, and its \"src\" cannot be read; no reply possible",
                 n->prog->name, p->line_no, what);
        return;
    }
    if (s->is_reply) {
        log_unmatched(n, "(unreadable)", s->src);
        return;
    }
    if (p->too_long)
        node_error(r, ERR_MALFORMED, "the line is longer than %zu bytes (--max-line); it was "
                                     "dropped", n->max_line);
    else if (p->out_of_memory)
        node_error(r, ERR_CRASH, "out of memory reading the line; it was dropped");
    else if (p->over_budget)
        node_error(r, ERR_MALFORMED, "the line holds too many JSON values (its parse would "
                                     "take more than %zu MiB beyond its length)",
                   NODE_PARSE_BUDGET >> 20);
    else if (!p->utf8_ok)
        node_error(r, ERR_MALFORMED, "the line is not valid UTF-8 (send binary data as "
                                     "base64 with \"encoding\": \"base64\")");
    else if (p->error_at != SIZE_MAX)
        node_error(r, ERR_MALFORMED, "not valid JSON at byte %zu (strings must be UTF-8 "
                                     "text without lone surrogates; nesting at most 1000 "
                                     "deep; one object per line)", p->error_at);
    else
        node_error(r, ERR_MALFORMED, "not valid JSON (strings must be UTF-8 text without "
                                     "lone surrogates; nesting at most 1000 deep; one object "
                                     "per line)");
    const char *self = n->id ? n->id : s->has_dest ? s->dest : "";
    output_line(n, self, s->src, r, n->next_msg_id++, s->has_msg_id, s->msg_id, true);
}

/* The checks of a request's envelope and line, in order; 0 when it may go
 * to its handler, else an error code with r filled. */
static int check_request(const struct parsed *p, const cJSON *body, const cJSON *type,
                         const cJSON *msg_id, bool bad_msg_id, struct reply *r)
{
    (void)msg_id;
    if (bad_msg_id)
        return node_error(r, ERR_MALFORMED, "body.msg_id: expected an integer from %lld to "
                                            "%lld", -NODE_MAX_SAFE_INT, NODE_MAX_SAFE_INT);
    if (!cJSON_IsObject(body))
        return node_error(r, ERR_MALFORMED, "body: missing; expected an object");
    if (!type)
        return node_error(r, ERR_MALFORMED, "body.type: missing; expected a string");
    if (p->trailing)
        return node_error(r, ERR_MALFORMED, "unexpected text after the JSON object; send one "
                                            "message per line");
    if (!p->utf8_ok)
        return node_error(r, ERR_MALFORMED, "the line is not valid UTF-8 (send binary data as "
                                            "base64 with \"encoding\": \"base64\")");
    if (p->raw_nul)
        return node_error(r, ERR_MALFORMED, "the line holds a raw NUL byte, which JSON does "
                                            "not allow; send binary data as base64 with "
                                            "\"encoding\": \"base64\"");
    if (p->raw_control)
        return node_error(r, ERR_MALFORMED, "a string holds a raw control character, which "
                                            "JSON does not allow; escape it (\\n, \\t, "
                                            "\\u001f)");
    if (p->control_between)
        return node_error(r, ERR_MALFORMED, "byte %zu is a control character (0x%02x) between "
                                            "JSON tokens, where only space, tab, CR and LF may "
                                            "stand", p->control_at,
                          (unsigned)(unsigned char)p->line[p->control_at]);
    if (p->escaped_nul)
        return node_error(r, ERR_MALFORMED, "a string holds \\u0000, which cannot be carried "
                                            "losslessly; send binary data as base64 with "
                                            "\"encoding\": \"base64\"");
    if (p->bad_u_escape)
        return node_error(r, ERR_MALFORMED, "the \\u escape at byte %zu is not followed by "
                                            "four hex digits (0-9, a-f, A-F), as JSON requires",
                          p->escape_at);
    return 0;
}

/* Finds the handler for t: the built-ins first, then the binary's table. */
static node_handler_fn find_handler(const struct node *n, const char *t, bool *public_request)
{
    node_handler_fn fn = builtin_find(t);
    *public_request = false;
    if (fn)
        return fn;
    const struct node_program *prog = n->prog;
    for (size_t i = 0; i < prog->n_handlers; i++) {
        if (name_eq(t, prog->handlers[i].type)) {
            *public_request = prog->handlers[i].public_request;
            return prog->handlers[i].fn;
        }
    }
    return NULL;
}

bool dispatch_line(struct node *n, const struct parsed *p)
{
    struct reply *r = &n->reply;
    const cJSON *root = p->root, *src, *dest, *body, *type = NULL, *msg_id = NULL;
    long long id = 0;
    bool public_request = false, bad_msg_id = false;

    reply_clear(r);
    if (!root) {
        refuse_unparsed(n, p);
        return false;
    }
    if (!cJSON_IsObject(root)) {
        node_log("%s: line %llu: not a JSON object; no reply possible", n->prog->name,
                 p->line_no);
        return false;
    }
    src = string_field(root, "src");
    if (!src) {
        node_log("%s: line %llu: no \"src\" string; no reply possible", n->prog->name,
                 p->line_no);
        return false;
    }
    bulk_use(p->slices, p->n_slices);
    dest = string_field(root, "dest");
    body = req_field(root, "body");
    if (cJSON_IsObject(body)) {
        const cJSON *irt = req_field(body, "in_reply_to");
        type = string_field(body, "type");
        if (irt && !cJSON_IsNull(irt)) { /* a reply: routed, never answered */
            long long to;
            if (!json_exact_int(irt, &to) ||
                !schedule_route_reply(n, to, src->valuestring, body))
                log_unmatched(n, type ? type->valuestring : "(no type)", src->valuestring);
            goto done;
        }
        msg_id = req_field(body, "msg_id");
        if (msg_id && !json_exact_int(msg_id, &id)) {
            msg_id = NULL;
            bad_msg_id = true;
        }
    }

    if (check_request(p, body, type, msg_id, bad_msg_id, r) == 0) {
        const char *t = type->valuestring;
        node_handler_fn fn = find_handler(n, t, &public_request);
        struct request req = {.node = n, .src = src->valuestring,
                              .dest = dest ? dest->valuestring : NULL, .body = body,
                              .msg_id = msg_id};
        if (!n->id && !dest) {
            node_error(r, ERR_MALFORMED, "dest: missing; before init the node's id is the dest "
                                         "of each request");
        } else if (!fn) {
            node_error(r, ERR_NOT_SUPPORTED, "unknown type \"%s\"", t);
        } else if (!n->id && !n->first_dest && !name_eq(t, "init")) {
            /* The first request before any init names the node (PROTOCOL.md §4). */
            if ((n->first_dest = strdup(dest->valuestring)) == NULL) {
                node_error(r, ERR_CRASH, "out of memory");
            } else if (node_call_on_init(n, dest->valuestring, NULL, r) == 0) {
                program_enter(n);
                fn(n->app, &req, r);
                program_leave(n);
            } else if (!n->stop_status && !n->durable) {
                /* Refused before any state was opened (r says why): the next
                 * one tries again. */
                free(n->first_dest);
                n->first_dest = NULL;
            }
        } else {
            program_enter(n);
            fn(n->app, &req, r);
            program_leave(n);
        }
    }
    if (n->stop_status) /* on_init could not open the node's state: say nothing */
        goto done;
    if (!r->deferred) {
        /* Before init, the node's id is the dest of the message it answers. */
        const char *self = n->id ? n->id : dest ? dest->valuestring : "";
        output_line(n, self, src->valuestring, r, n->next_msg_id++, msg_id != NULL, id, true);
    }
    output_flush_full(n); /* what the handler queued, its reply with it */
done:
    reply_clear(r);
    bulk_use(NULL, 0);
    arena_reset(&n->own, OWN_ARENA_KEEP); /* what the handler built with cJSON */
    return public_request;
}
