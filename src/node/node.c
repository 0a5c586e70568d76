/* node.c - the message loop (see node.h and PROTOCOL.md §1).
 *
 * Input is read in blocks and split into lines here, so that lines of any
 * length work. Two threads share the work (see "batches" below): the reader
 * reads, checks and parses lines; the worker answers them in order and
 * writes the replies, collected in one buffer and written whenever it has
 * nothing left to answer (or the buffer is large), which is "flushed before
 * the node blocks on reading". SECURITOR_THREADS=1 runs both on one thread.
 */
#include "node_internal.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "securitor/codec.h"
#include "securitor/version.h"
#include "securitor/wipe.h"

/* Longest accepted line. Longer lines are dropped with a stderr note: the
 * limit keeps one runaway line from exhausting memory. */
#define NODE_MAX_LINE ((size_t)1 << 30)
#define NODE_READ_CHUNK ((size_t)1 << 16)  /* free space ensured before a read */
#define NODE_READ_MAX ((size_t)1 << 16)    /* most bytes taken by one read */
#define NODE_OUT_FLUSH ((size_t)1 << 20) /* write out once this much is queued */
#define NODE_OUT_DIRECT ((size_t)1 << 16) /* larger reply bodies skip the copy */

struct arena_chunk;
struct arena {
    struct arena_chunk *head, *cur;
};

struct parsed;
/* The lines completed by one read, on their way from the reader to the
 * worker (see "batches" below). */
struct batch {
    struct buf text;       /* the bytes the lines live in */
    struct parsed *items;  /* the lines, parsed */
    size_t n, cap;
    struct arena arena;    /* their cJSON trees */
    struct batch *next;    /* in the queue or the free list */
};

#define NODE_BATCHES 3 /* one being read, one queued, one being answered */

struct node {
    const struct node_program *prog;
    struct app *app;
    /* The worker's (the loop's only thread when !threaded). */
    char *id;             /* set by init; NULL before */
    struct buf head;      /* {"src":<id>,"dest": once init has named the node */
    long long next_msg_id;
    struct buf out;       /* queued reply lines */
    struct reply reply;
    struct arena own;     /* what handlers build with cJSON */
    bool out_broken;
    bool out_sensitive; /* out holds a sensitive reply: wipe after writing */
    /* The reader's, on cache lines of their own: the two threads write their
     * fields for every line, and sharing a line would cost a transfer each. */
    _Alignas(64) struct bulk bulk; /* large strings of the line being parsed */
    unsigned long long line_no;
    /* Shared: threaded is set before the worker starts; the rest is under lock. */
    _Alignas(64) bool threaded;
    pthread_mutex_t lock;
    pthread_cond_t queued, freed;
    struct batch *queue, *free_list;
    bool input_done;
    struct batch batches[NODE_BATCHES];
};

/* --- the request arena ------------------------------------------------------
 *
 * cJSON allocates every node and string separately; for a small request that
 * is a dozen malloc/free pairs, more than the encryption costs. The loop
 * gives cJSON a bump allocator instead, emptied once the lines parsed into it
 * are answered. Emptying it also wipes everything the requests held
 * (plaintexts, keys) in one pass, and the memory is reused, so big messages do
 * not pay first-touch page faults again. cJSON's hooks take no context
 * pointer, so each thread names the arena it allocates from in arena_now: the
 * reader the batch it parses into, the worker its own (for what handlers
 * build with cJSON). Nothing parsed from a request may be kept after its
 * handler returns.
 */
struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    max_align_t data[]; /* cap bytes */
};

static _Thread_local struct arena *arena_now;

/* Takes n more bytes from the chunks after the current one, or a new chunk. */
static void *arena_alloc_slow(struct arena *a, size_t n)
{
    for (struct arena_chunk *c = a->cur ? a->cur->next : NULL; c; c = c->next) {
        if (c->cap - c->used >= n) {
            void *p = (char *)c->data + c->used;
            c->used += n;
            a->cur = c;
            return p;
        }
    }
    size_t cap = n > (32u << 10) ? n : (64u << 10);
    struct arena_chunk *c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    *c = (struct arena_chunk){.cap = cap, .used = n};
    if (!a->head) {
        a->head = c;
    } else { /* append, so chunks are tried in order after a reset */
        struct arena_chunk *t = a->cur ? a->cur : a->head;
        while (t->next)
            t = t->next;
        t->next = c;
    }
    a->cur = c;
    return c->data;
}

static void *arena_alloc(size_t n)
{
    struct arena *a = arena_now;
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct arena_chunk *c = a->cur;
    if (c && c->cap - c->used >= n) { /* nearly always */
        void *p = (char *)c->data + c->used;
        c->used += n;
        return p;
    }
    return arena_alloc_slow(a, n);
}

static void arena_free_noop(void *p) { (void)p; }

/* Wipes and empties the arena, keeping its memory. */
static void arena_reset(struct arena *a)
{
    for (struct arena_chunk *c = a->head; c; c = c->next) {
        wipe_bytes(c->data, c->used);
        c->used = 0;
    }
    a->cur = a->head;
}

static void arena_release(struct arena *a)
{
    arena_reset(a);
    while (a->head) {
        struct arena_chunk *next = a->head->next;
        free(a->head);
        a->head = next;
    }
    a->cur = NULL;
}

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

/* --- output --------------------------------------------------------------- */

/* Writes every byte of the iovecs (retrying short writes and EINTR). */
static void write_all(struct node *n, struct iovec *iov, int cnt)
{
    while (cnt > 0 && !n->out_broken) {
        ssize_t w = writev(STDOUT_FILENO, iov, cnt);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            node_log("%s: cannot write to stdout: %s", n->prog->name, strerror(errno));
            n->out_broken = true;
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

static void flush_out(struct node *n)
{
    struct iovec iov = {n->out.data, n->out.len};
    if (n->out.len)
        write_all(n, &iov, 1);
    if (n->out_sensitive)
        wipe_bytes(n->out.data, n->out.len);
    n->out_sensitive = false;
    buf_reset(&n->out);
}

/* Writes the reply line for one request. `msg_id` is the request's msg_id
 * (NULL when it had none). */
static void emit_reply(struct node *n, const char *self, const char *dest,
                       const cJSON *msg_id)
{
    struct buf *o = &n->out;
    struct reply *r = &n->reply;
    size_t mark = o->len;

    if (!r->type) /* a handler that filled nothing is a bug: say so */
        node_error(r, ERR_CRASH, "internal error: handler produced no reply");
    for (int attempt = 0; attempt < 2; attempt++) {
        if (n->id) {
            buf_append(o, n->head.data, n->head.len);
        } else {
            buf_append_lit(o, "{\"src\":");
            json_write_string(o, self, strlen(self));
            buf_append_lit(o, ",\"dest\":");
        }
        json_write_string(o, dest, strlen(dest));
        buf_append_lit(o, ",\"body\":{\"type\":");
        json_write_string(o, r->type, strlen(r->type));
        buf_append_lit(o, ",\"msg_id\":");
        buf_append_ll(o, n->next_msg_id);
        if (msg_id) {
            buf_append_lit(o, ",\"in_reply_to\":");
            buf_append_ll(o, (long long)msg_id->valuedouble);
        }
        if (r->fields.len >= NODE_OUT_DIRECT && buf_ok(o) && buf_ok(&r->fields)) {
            /* A large body goes out from where the handler wrote it: queued
             * replies, this header, the body and the trailer in one writev. */
            struct iovec iov[3] = {{o->data, o->len}, {r->fields.data, r->fields.len},
                                   {(char *)"}}\n", 3}};
            write_all(n, iov, 3);
            if (n->out_sensitive) /* earlier queued replies; the body is wiped with the reply */
                wipe_bytes(o->data, o->len);
            n->out_sensitive = false;
            buf_reset(o);
            break;
        }
        buf_append(o, r->fields.data, r->fields.len);
        buf_append_lit(o, "}}\n");
        n->out_sensitive |= r->sensitive;
        if (buf_ok(o) && buf_ok(&r->fields))
            break;
        /* Out of memory while formatting: drop the partial line and send a
         * short error instead, which needs little memory. */
        o->failed = false;
        o->len = mark;
        flush_out(n);
        node_error(r, ERR_CRASH, "out of memory while building the reply");
    }
    n->next_msg_id++;
    if (o->len >= NODE_OUT_FLUSH)
        flush_out(n);
}

/* Pipes hold 64 KiB by default: a node moving megabytes then sleeps and
 * wakes for every 64 KiB. Asking for 1 MiB (the default most an unprivileged
 * process may set) is best-effort; files and terminals are left alone. */
static void grow_pipe(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
        (void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

/* --- the built-in handlers: init and echo ---------------------------------- */

static int h_init(struct node *n, const cJSON *body, struct reply *r)
{
    const char *id;
    int rc = req_string(r, body, "node_id", false, &id, NULL);
    if (rc)
        return rc;
    const cJSON *ids = req_field(body, "node_ids");
    if (ids && !cJSON_IsArray(ids))
        return node_error(r, ERR_MALFORMED, "node_ids: expected an array of strings");
    const cJSON *it;
    cJSON_ArrayForEach(it, ids) {
        if (!cJSON_IsString(it))
            return node_error(r, ERR_MALFORMED, "node_ids: expected an array of strings");
    }
    /* Every reply from now on starts the same way: format it once. Both
     * are made before either replaces the old, so a failure changes nothing. */
    struct buf head = {0};
    buf_append_lit(&head, "{\"src\":");
    json_write_string(&head, id, strlen(id));
    buf_append_lit(&head, ",\"dest\":");
    char *copy = strdup(id);
    if (!copy || !buf_ok(&head)) {
        free(copy);
        buf_free(&head);
        return node_error(r, ERR_CRASH, "out of memory");
    }
    free(n->id);
    n->id = copy;
    buf_free(&n->head);
    n->head = head;
    reply_type(r, "init_ok");
    return 0;
}

static int h_echo(struct node *n, const cJSON *body, struct reply *r)
{
    (void)n;
    const cJSON *echo = req_field(body, "echo");
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

/* --- one request ------------------------------------------------------------ */

/* True when the raw line holds a \u0000 escape (a backslash-u that is not
 * itself escaped). cJSON's C strings stop at NUL, so such a string would be
 * silently truncated: it is refused instead (PROTOCOL.md §1). */
static bool has_escaped_nul(const char *line, size_t len)
{
    const char *p = line, *end = line + len;
    /* memchr is much faster than memmem; backslashes are rare. */
    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        const char *run = p;
        while (p < end && *p == '\\')
            p++;
        /* An odd run of backslashes escapes what follows it. */
        if ((p - run) % 2 == 1 && end - p >= 5 && !memcmp(p, "u0000", 5))
            return true;
    }
    return false;
}

static const cJSON *string_field(const cJSON *obj, const char *key)
{
    const cJSON *v = req_field(obj, key);
    return cJSON_IsString(v) && v->valuestring ? v : NULL;
}

/* --- one request: parsed by the reader, answered by the worker ------------- */

/* A line as the reader leaves it for the worker: parsed, with what the
 * checks around parsing found. */
struct parsed {
    char *line; /* inside its batch's text */
    size_t len;
    unsigned long long line_no;
    cJSON *root;                     /* NULL: not JSON */
    const struct bulk_slice *slices; /* its long strings, for bulk_string_len */
    size_t n_slices;
    bool utf8_ok, raw_nul, trailing, escaped_nul;
};

/* Parses one line into arena_now. Valid UTF-8 lines with long strings are
 * parsed from a skeleton (see bulk.c); the line itself may then change. */
static void parse_request(struct node *n, char *line, size_t len, struct parsed *p)
{
    struct bulk *b = &n->bulk;
    *p = (struct parsed){.line = line, .len = len, .line_no = n->line_no};
    /* Checked before parsing, which may change the line. A raw NUL byte is
     * refused like \u0000: cJSON would silently cut the string there. */
    bool clean = utf8_text_valid((const uint8_t *)line, len);
    p->utf8_ok = clean || utf8_valid((const uint8_t *)line, len);
    p->raw_nul = p->utf8_ok && !clean;
    const char *text = line, *end = NULL;
    size_t text_len = len;
    if (clean && bulk_extract(b, line, len)) {
        text = b->skeleton.data;
        text_len = b->skeleton.len;
    }
    p->root = cJSON_ParseWithLengthOpts(text, text_len, &end, false);
    if (p->root && b->n) {
        bulk_resolve(b, p->root);
        /* Kept beside the tree: the next line reuses b. (Without them
         * bulk_string_len still answers, with strlen.) */
        struct bulk_slice *kept = arena_alloc(b->n * sizeof(*kept));
        if (kept) {
            memcpy(kept, b->slices, b->n * sizeof(*kept));
            p->slices = kept;
            p->n_slices = b->n;
        }
    }
    /* cJSON stops after the first value; anything but whitespace after it is
     * a second message or garbage, refused rather than ignored. */
    for (; p->root && end < text + text_len && !p->trailing; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
            p->trailing = true;
    /* Only a string with a backslash can hold \u0000, and the long-string
     * pass has already looked for backslashes. Parsing only replaced closing
     * quotes of strings without any, so the check below still holds. */
    p->escaped_nul = (!b->n || b->escapes) && has_escaped_nul(line, len);
    bulk_reset(b);
}

/* Answers one parsed line. Returns true when the request was one its handler
 * calls public (see struct node_handler), so the line need not be wiped. */
static bool answer(struct node *n, const struct parsed *p)
{
    bool public_request = false;
    struct reply *r = &n->reply;
    const cJSON *root = p->root;
    const cJSON *src = NULL, *dest = NULL, *body = NULL, *type = NULL, *msg_id = NULL;

    if (!root || !cJSON_IsObject(root)) {
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
    reply_clear(r);
    body = req_field(root, "body");
    if (cJSON_IsObject(body)) {
        msg_id = req_field(body, "msg_id");
        type = string_field(body, "type");
    }
    if (msg_id && !(cJSON_IsNumber(msg_id) && msg_id->valuedouble >= -9007199254740992.0 &&
                    msg_id->valuedouble <= 9007199254740992.0 &&
                    msg_id->valuedouble == (double)(long long)msg_id->valuedouble)) {
        msg_id = NULL;
        node_error(r, ERR_MALFORMED, "body.msg_id: expected an integer");
    } else if (!cJSON_IsObject(body)) {
        node_error(r, ERR_MALFORMED, "body: missing; expected an object");
    } else if (!type) {
        node_error(r, ERR_MALFORMED, "body.type: missing; expected a string");
    } else if (p->trailing) {
        node_error(r, ERR_MALFORMED, "unexpected text after the JSON object; send one "
                                     "message per line");
    } else if (!p->utf8_ok) {
        node_error(r, ERR_MALFORMED, "the line is not valid UTF-8 (send binary data as "
                                     "base64 with \"encoding\": \"base64\")");
    } else if (p->raw_nul) {
        node_error(r, ERR_MALFORMED, "the line holds a raw NUL byte, which JSON does not "
                                     "allow; send binary data as base64 with "
                                     "\"encoding\": \"base64\"");
    } else if (p->escaped_nul) {
        node_error(r, ERR_MALFORMED, "a string holds \\u0000, which cannot be carried "
                                     "losslessly; send binary data as base64 with "
                                     "\"encoding\": \"base64\"");
    } else {
        const char *t = type->valuestring;
        const struct node_program *prog = n->prog;
        size_t i;
        if (name_eq(t, "init")) {
            h_init(n, body, r);
        } else if (name_eq(t, "echo")) {
            h_echo(n, body, r);
        } else {
            for (i = 0; i < prog->n_handlers; i++)
                if (name_eq(t, prog->handlers[i].type))
                    break;
            struct request req = {.src = src->valuestring, .body = body};
            if (i < prog->n_handlers) {
                prog->handlers[i].fn(n->app, &req, r);
                public_request = prog->handlers[i].public_request;
            } else {
                node_error(r, ERR_NOT_SUPPORTED, "unknown type \"%s\"", t);
            }
        }
    }
    /* Before init, the node's id is the dest of the message it answers. */
    const char *self = n->id ? n->id : dest ? dest->valuestring : "";
    emit_reply(n, self, src->valuestring, msg_id);
    reply_clear(r);
    bulk_use(NULL, 0);
    arena_reset(&n->own); /* what the handler built with cJSON */
    return public_request;
}

/* --- batches: the reader parses, the worker answers ---------------------------
 *
 * cJSON's parse is about half the work of a small request and the answer the
 * other half, so the loop runs them on two threads, a batch of lines at a
 * time: the reader reads stdin, splits and checks lines and parses each into
 * its batch's arena; the worker answers the batches in order, writes the
 * replies and gives each batch back for reuse. Node state (keys, sessions,
 * msg_id, the reply buffers) belongs to the worker alone; the two share only
 * the queue and the free list, under one lock. A batch holds the lines
 * completed by one read: its text is the buffer they were read into, handed
 * on whole, so no line is copied.
 */

/* Answers a batch's lines in order, wipes them (public requests aside) and
 * their trees at once, and empties the batch but for its text. */
static void answer_batch(struct node *n, struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct parsed *p = &b->items[i];
        if (!answer(n, p))
            wipe_bytes(p->line, p->len); /* the line may have held plaintext */
    }
    arena_reset(&b->arena); /* the trees held the requests' values */
    b->n = 0;
}

static void *worker_main(void *arg)
{
    struct node *n = arg;
    arena_now = &n->own;
    pthread_mutex_lock(&n->lock);
    for (;;) {
        struct batch *b = n->queue;
        if (!b) {
            if (n->input_done)
                break;
            /* Nothing left to answer: write what is queued before waiting,
             * as the reader may be waiting for input (PROTOCOL.md §1). */
            pthread_mutex_unlock(&n->lock);
            flush_out(n);
            pthread_mutex_lock(&n->lock);
            while (!n->queue && !n->input_done)
                pthread_cond_wait(&n->queued, &n->lock);
            continue;
        }
        n->queue = b->next;
        pthread_mutex_unlock(&n->lock);
        answer_batch(n, b);
        buf_reset(&b->text);
        pthread_mutex_lock(&n->lock);
        b->next = n->free_list;
        n->free_list = b;
        pthread_cond_signal(&n->freed);
    }
    pthread_mutex_unlock(&n->lock);
    flush_out(n);
    return NULL;
}

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Parses a complete line into the batch (blank lines are skipped). */
static void take_line(struct node *n, struct batch *b, char *line, size_t len)
{
    n->line_no++;
    if (len && line[len - 1] == '\r')
        len--;
    if (blank(line, len))
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        struct parsed *items = realloc(b->items, cap * sizeof(*items));
        if (!items) {
            node_log("%s: out of memory at line %llu; dropped", n->prog->name, n->line_no);
            wipe_bytes(line, len);
            return;
        }
        b->items = items;
        b->cap = cap;
    }
    arena_now = &b->arena;
    parse_request(n, line, len, &b->items[b->n++]);
}

/* Hands the lines of *b on and makes *b a batch to read into next, whose
 * text starts with the partial line found from `start` on. Without the
 * worker thread, answers them here. Returns false when the partial line
 * could not be kept (out of memory): the caller drops it. */
static bool hand_on(struct node *n, struct batch **b, size_t start)
{
    struct batch *full = *b;
    struct buf *text = &full->text;
    if (!n->threaded) {
        answer_batch(n, full);
        memmove(text->data, text->data + start, text->len - start);
        text->len -= start;
        return true;
    }
    pthread_mutex_lock(&n->lock);
    while (!n->free_list)
        pthread_cond_wait(&n->freed, &n->lock);
    struct batch *next = n->free_list;
    n->free_list = next->next;
    pthread_mutex_unlock(&n->lock);

    buf_append(&next->text, text->data + start, text->len - start);
    bool kept = buf_ok(&next->text);
    if (!kept)
        buf_reset(&next->text);
    wipe_bytes(text->data + start, text->len - start); /* moved, or dropped */
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

/* --- the loop ------------------------------------------------------------------ */

static void usage(const struct node_program *p, FILE *f)
{
    fprintf(f,
            "usage: %s [--help] [--version]%s\n"
            "%s\n"
            "Reads one JSON message per line on stdin and writes replies on stdout\n"
            "(Maelstrom's protocol; see PROTOCOL.md). Diagnostics go to stderr.\n"
            "It parses on one thread and answers on another; SECURITOR_THREADS=1 keeps\n"
            "it on one.\n",
            p->name, p->extra_usage ? p->extra_usage : "", p->summary);
    if (p->extra_help)
        fputs(p->extra_help, f);
}

int node_main_options(const struct node_program *prog, int argc, char **argv, int *exit_code)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(prog, stdout);
            *exit_code = 0;
            return 1;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("%s %s\n", prog->name, SECURITOR_VERSION);
            *exit_code = 0;
            return 1;
        }
    }
    return 0;
}

int node_run(const struct node_program *prog, struct app *app)
{
    struct node n = {.prog = prog, .app = app, .next_msg_id = 1};
    size_t start = 0, scan = 0; /* unparsed data begins at start; no '\n' before scan */
    bool dropping = false;      /* skipping the rest of an over-long line */
    pthread_t worker;

    signal(SIGPIPE, SIG_IGN); /* a closed stdout becomes EPIPE, reported once */
    grow_pipe(STDIN_FILENO);
    grow_pipe(STDOUT_FILENO);
    cJSON_Hooks hooks = {.malloc_fn = arena_alloc, .free_fn = arena_free_noop};
    cJSON_InitHooks(&hooks);
    pthread_mutex_init(&n.lock, NULL);
    pthread_cond_init(&n.queued, NULL);
    pthread_cond_init(&n.freed, NULL);
    for (int i = 1; i < NODE_BATCHES; i++) {
        n.batches[i].next = n.free_list;
        n.free_list = &n.batches[i];
    }
    struct batch *cur = &n.batches[0]; /* the batch being read into */
    /* SECURITOR_THREADS=1 keeps the node on one thread (the same code, with
     * the reader answering each batch itself). */
    const char *threads = getenv("SECURITOR_THREADS");
    n.threaded = !(threads && !strcmp(threads, "1"));
    if (n.threaded && pthread_create(&worker, NULL, worker_main, &n)) {
        node_log("%s: cannot start the worker thread; running on one", prog->name);
        n.threaded = false;
    }
    if (!n.threaded)
        arena_now = &n.own;

    for (;;) {
        struct buf *in = &cur->text;
        char *nl = in->len > scan ? memchr(in->data + scan, '\n', in->len - scan) : NULL;
        if (nl) {
            size_t end = (size_t)(nl - in->data);
            if (!dropping)
                take_line(&n, cur, in->data + start, end - start);
            dropping = false;
            start = scan = end + 1;
            continue;
        }
        scan = in->len;
        if (dropping || in->len - start > NODE_MAX_LINE) {
            if (!dropping)
                node_log("%s: line %llu is longer than %zu bytes; dropped", prog->name,
                         n.line_no + 1, NODE_MAX_LINE);
            dropping = true;
            wipe_bytes(in->data + start, in->len - start);
            start = scan = in->len;
        }
        /* The buffer is about to grow or move: hand the parsed lines on
         * first, and keep only the partial line after them. */
        if (cur->n || start) {
            if (!hand_on(&n, &cur, start) && !dropping) {
                node_log("%s: out of memory reading line %llu; dropped", prog->name,
                         n.line_no + 1);
                dropping = true;
            }
            in = &cur->text;
            start = 0;
            scan = in->len;
        }
        if (!n.threaded)
            flush_out(&n); /* about to block on input */
        if (!buf_reserve(in, NODE_READ_CHUNK)) {
            node_log("%s: out of memory reading line %llu; dropped", prog->name,
                     n.line_no + 1);
            in->failed = false;
            dropping = true;
            wipe_bytes(in->data, in->len);
            start = scan = in->len;
            continue;
        }
        /* Reads are bounded so that a batch stays small and the partial
         * line left after the last complete one, which moves on, stays
         * short. */
        size_t room = in->cap - in->len;
        ssize_t got = read(STDIN_FILENO, in->data + in->len,
                           room < NODE_READ_MAX ? room : NODE_READ_MAX);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            node_log("%s: cannot read stdin: %s", prog->name, strerror(errno));
            break;
        }
        if (got == 0) { /* end of input: a last line without '\n' still counts */
            if (in->len > start && !dropping)
                take_line(&n, cur, in->data + start, in->len - start);
            break;
        }
        in->len += (size_t)got;
    }
    if (cur->n)
        hand_on(&n, &cur, cur->text.len);
    if (n.threaded) {
        pthread_mutex_lock(&n.lock);
        n.input_done = true;
        pthread_cond_signal(&n.queued);
        pthread_mutex_unlock(&n.lock);
        pthread_join(worker, NULL);
    }
    flush_out(&n);

    for (int i = 0; i < NODE_BATCHES; i++) {
        buf_free(&n.batches[i].text);
        free(n.batches[i].items);
        arena_release(&n.batches[i].arena);
    }
    arena_release(&n.own);
    buf_free(&n.out);
    buf_free(&n.head);
    buf_free(&n.reply.fields);
    bulk_free(&n.bulk);
    free(n.id);
    cJSON_InitHooks(NULL);
    pthread_cond_destroy(&n.freed);
    pthread_cond_destroy(&n.queued);
    pthread_mutex_destroy(&n.lock);
    return n.out_broken ? 1 : 0;
}
