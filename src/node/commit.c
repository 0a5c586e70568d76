/* commit.c - the committer: output commit beside the worker.
 *
 * A commit is mostly an fsync: milliseconds in which a worker that commits
 * by itself answers nothing, while requests queue up behind it. When the
 * program can seal its changes and write them on another thread (the
 * commit_flush hook), the worker only seals a flush's changes (the commit
 * hook), hands the lines queued behind them to the committer and goes on
 * with the next batch. The committer makes every transaction sealed so far
 * durable in one go (one fsync for all) and then writes the lines, in the
 * order they were queued.
 *
 * Output commit holds as before (PROTOCOL.md §4): a job's lines are written
 * after a flush that began after the job's transaction was sealed, so no
 * line leaves before the changes made before it are durable.
 *
 * A failed commit: the committer turns the lines of that flush, and of every
 * job after it, into error 13 replies (messages to nodes are dropped, as a
 * network may drop them) and commits nothing more, until the worker has
 * waited for it to run empty and rolled the program back to the last commit
 * (what the file holds). The worker looks before each batch and at each
 * flush; what it answered in between was answered on changes that are gone,
 * and those answers become errors too.
 */
#include "node_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "securitor/wipe.h"

/* Both threads write stdout (the worker its early lines and flushes that
 * wait for nothing, the committer the rest): one at a time. */
static void write_locked(struct node *n, struct iovec *iov, int cnt)
{
    pthread_mutex_lock(&n->committer.write_lock);
    output_write(n, iov, cnt);
    pthread_mutex_unlock(&n->committer.write_lock);
}

/* Writes the lines of the jobs from `from` up to (not including) `to`; with
 * `errors`, their error replies instead. Returns the lines turned into
 * errors. */
static size_t write_jobs(struct node *n, struct commit_job *from, const struct commit_job *to,
                         bool errors)
{
    struct iovec iov[COMMIT_JOBS];
    size_t lines = 0;
    int cnt = 0;
    for (struct commit_job *j = from; j != to; j = j->next) {
        if (errors) {
            lines += j->q.n_records;
            out_queue_to_errors(n, &j->q);
        }
        if (j->q.out.len)
            iov[cnt++] = (struct iovec){j->q.out.data, j->q.out.len};
    }
    if (cnt)
        write_locked(n, iov, cnt);
    return lines;
}

/* Runs on the committer. Jobs whose transactions are durable already go
 * out at once; the rest wait for one flush of everything sealed so far.
 * From the first job whose commit hook failed on, or when the flush fails,
 * lines become errors and the committer stays failed. */
static void commit_jobs(struct node *n, struct commit_job *jobs)
{
    struct committer *c = &n->committer;
    bool failed = atomic_load(&c->failed);
    struct commit_job *ready = jobs, *good = jobs;
    if (!failed) {
        while (ready && !ready->stage_failed && ready->needs <= atomic_load(&c->durable))
            ready = ready->next;
        good = ready;
        while (good && !good->stage_failed)
            good = good->next;
    }
    write_jobs(n, jobs, ready, false);
    if (ready != good) {
        uint64_t sealed = atomic_load(&c->sealed); /* all of these are on the state's list */
        if (n->prog->commit_flush(n->app) == 0) {
            atomic_store(&c->durable, sealed);
            write_jobs(n, ready, good, false);
            ready = good;
        }
    }
    if (!ready)
        return;
    /* Failed before the errors go out: a request sent after reading one is
     * answered only once the worker has rolled back. */
    atomic_store(&c->failed, true);
    size_t lines = write_jobs(n, ready, NULL, true);
    if (!failed)
        node_log("%s: the state could not be saved; %zu queued lines are replaced by error 13 "
                 "replies and the state goes back to its last commit", n->prog->name, lines);
}

/* Waits, with the lock held, for a job or the stop; after a commit, at
 * most NODE_COMMIT_IDLE_MS, then runs the program's commit_idle once. */
static void wait_for_jobs(struct node *n, bool *idle_due)
{
    struct committer *c = &n->committer;
    while (!c->head && !c->stop) {
        if (!*idle_due || !n->prog->commit_idle) {
            pthread_cond_wait(&c->work, &c->lock);
            continue;
        }
        struct timespec until;
        deadline_after_ms(&until, NODE_COMMIT_IDLE_MS);
        if (pthread_cond_timedwait(&c->work, &c->lock, &until) != ETIMEDOUT || c->head ||
            c->stop || atomic_load(&c->failed))
            continue;
        c->in_flight++; /* the store is busy: a roll_back waits for it */
        pthread_mutex_unlock(&c->lock);
        n->prog->commit_idle(n->app);
        pthread_mutex_lock(&c->lock);
        c->in_flight--;
        pthread_cond_broadcast(&c->done);
        *idle_due = false;
    }
}

static void *committer_main(void *arg)
{
    struct node *n = arg;
    struct committer *c = &n->committer;
    bool idle_due = false; /* a commit since the last commit_idle */
    /* For top -H and perf; a name that does not take changes nothing. */
    (void)pthread_setname_np(pthread_self(), "committer");
    pthread_mutex_lock(&c->lock);
    for (;;) {
        wait_for_jobs(n, &idle_due);
        struct commit_job *jobs = c->head;
        if (!jobs)
            break; /* stopped, and everything written */
        c->head = NULL;
        c->tail = &c->head;
        pthread_mutex_unlock(&c->lock);

        commit_jobs(n, jobs);
        idle_due = true;
        size_t count = 1;
        struct commit_job *last = jobs;
        out_queue_drop(&last->q);
        for (; last->next; count++) {
            last = last->next;
            out_queue_drop(&last->q);
        }

        pthread_mutex_lock(&c->lock);
        last->next = c->spare;
        c->spare = jobs;
        c->in_flight -= count;
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* The worker's own writes: the lines that wait for no commit. */
static void write_early(struct node *n)
{
    struct output *o = &n->output;
    struct iovec iov = {o->early.data, o->early.len};
    write_locked(n, &iov, 1);
    if (o->early_sensitive)
        wipe_bytes(o->early.data, o->early.len);
    o->early_sensitive = false;
    buf_reset(&o->early);
}

/* What committer_start made, once no thread uses it. */
static void release(struct committer *c)
{
    for (int i = 0; i < COMMIT_JOBS; i++)
        out_queue_free(&c->jobs[i].q);
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->write_lock);
    pthread_mutex_destroy(&c->lock);
}

int committer_start(struct node *n)
{
    struct committer *c = &n->committer;
    if (c->running)
        return 0;
    pthread_condattr_t attr;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->write_lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the idle wait's clock */
    pthread_cond_init(&c->work, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&c->done, NULL);
    c->head = c->spare = NULL;
    c->tail = &c->head;
    c->in_flight = 0;
    c->stop = false;
    atomic_store(&c->sealed, 0);
    atomic_store(&c->durable, 0);
    atomic_store(&c->msg_ids_durable, 0);
    atomic_store(&c->failed, false);
    for (int i = 0; i < COMMIT_JOBS; i++) {
        /* The worker's queue is swapped with a job's: each keeps the room
         * out_queue_init takes (pages are only used once written). */
        out_queue_init(&c->jobs[i].q);
        c->jobs[i].next = c->spare;
        c->spare = &c->jobs[i];
    }
    if (pthread_create(&c->thread, NULL, committer_main, n)) {
        node_log("%s: cannot start the committer thread; the worker commits", n->prog->name);
        release(c);
        return -1;
    }
    c->running = true;
    return 0;
}

void committer_stop(struct node *n)
{
    struct committer *c = &n->committer;
    if (!c->running)
        return;
    if (n->output.early.len)
        write_early(n);
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->running = false;
    release(c);
}

/* On the worker, after a failed commit: waits until the committer has
 * answered every job (with errors), then rolls the program back. */
static void roll_back(struct node *n)
{
    struct committer *c = &n->committer;
    pthread_mutex_lock(&c->lock);
    while (c->in_flight)
        pthread_cond_wait(&c->done, &c->lock);
    pthread_mutex_unlock(&c->lock);
    /* Lines queued since were made on the changes that are gone. */
    if (n->output.q.n_records)
        out_queue_to_errors(n, &n->output.q);
    /* The committer is idle: the worker alone touches the store now. */
    if (!n->prog->rollback || n->prog->rollback(n->app)) {
        node_log("%s: the state cannot be rolled back; stopping", n->prog->name);
        n->output.fatal = true;
        n->stop_status = 1;
        return;
    }
    atomic_store(&c->failed, false);
}

bool committer_idle(struct node *n)
{
    struct committer *c = &n->committer;
    pthread_mutex_lock(&c->lock);
    bool idle = !c->in_flight;
    pthread_mutex_unlock(&c->lock);
    return idle;
}

void committer_check(struct node *n)
{
    if (n->committer.running && atomic_load(&n->committer.failed))
        roll_back(n);
}

void committer_flush(struct node *n, bool batch_end)
{
    struct committer *c = &n->committer;
    struct output *o = &n->output;
    if (o->early.len)
        write_early(n);
    committer_check(n);
    n->staged = false;
    bool ok = !n->durable || n->prog->commit(n->app) == 0;
    /* At the end of a batch that changed nothing, the lines wait for the
     * next flush, as without a committer: fewer, larger writes. */
    if (ok && !n->staged && (batch_end || !o->q.out.len))
        return;

    pthread_mutex_lock(&c->lock);
    if (ok && !n->staged && !c->in_flight &&
        atomic_load(&c->sealed) <= atomic_load(&c->durable)) {
        /* Nothing new to commit, everything before it durable and written
         * (encrypt, decrypt, reads): the worker writes it, as without a
         * committer. Only the worker queues jobs, so none can come first. */
        pthread_mutex_unlock(&c->lock);
        struct iovec iov = {o->q.out.data, o->q.out.len};
        write_locked(n, &iov, 1);
        out_queue_drop(&o->q);
        return;
    }
    while (!c->spare) /* COMMIT_JOBS on their way: the disk sets the pace */
        pthread_cond_wait(&c->done, &c->lock);
    struct commit_job *j = c->spare;
    c->spare = j->next;
    pthread_mutex_unlock(&c->lock);

    /* The queued lines go with the job; its emptied queue becomes ours. */
    struct out_queue spare = j->q;
    j->q = o->q;
    o->q = spare;
    j->stage_failed = !ok;
    j->needs = atomic_load(&c->sealed);
    j->next = NULL;

    pthread_mutex_lock(&c->lock);
    *c->tail = j;
    c->tail = &j->next;
    c->in_flight++;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->lock);
    if (!ok)
        roll_back(n);
}
