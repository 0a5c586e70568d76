/* node_internal.h - what the loop and the reply writer share. */
#ifndef SECURITOR_NODE_INTERNAL_H
#define SECURITOR_NODE_INTERNAL_H

#include "securitor/node.h"

/* Appends str (len bytes) as a quoted, escaped JSON string. */
void json_write_string(struct buf *b, const char *str, size_t len);
/* Empties a reply (wiping its fields) for the next request. */
void reply_clear(struct reply *r);

#endif
