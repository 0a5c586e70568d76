/* batch.h - the reader and worker threads and the batches between them
 * (see batch.c). */
#ifndef SECURITOR_NODE_BATCH_H
#define SECURITOR_NODE_BATCH_H

#include "node_internal.h"

/* Sets up the queue and starts the worker (unless !n->threaded). */
int batches_start(struct node *n);
/* Parses a complete line into b (blank lines are skipped). */
void batch_take_line(struct node *n, struct batch *b, char *line, size_t len);
/* Records a line the reader had to drop (longer than --max-line, or no
 * memory), keeping its first bytes so that its src can still be answered. */
void batch_take_dropped(struct node *n, struct batch *b, const char *start, size_t len,
                        bool out_of_memory);
/* Hands the lines of *b on and makes *b a batch to read into next, whose
 * text starts with the partial line found from `start` on. Without the
 * worker thread, answers them here. Returns false when the partial line
 * could not be kept (out of memory: the caller drops it). */
bool batch_hand_on(struct node *n, struct batch **b, size_t start);
/* End of input: lets the worker finish (on_close, pending calls cancelled,
 * output written) and frees the batches. */
void batches_stop(struct node *n);

#endif
