/* safety.h - safety numbers (SIGNAL.md Part 0 item 7). */
#ifndef SECURITOR_SAFETY_H
#define SECURITOR_SAFETY_H

#include <stddef.h>
#include <stdint.h>

/* 60 digits and a NUL: the two 30-digit halves, smaller first, of Signal's
 * numeric fingerprint (version 0, 5200 iterations). 0 or -1. */
__attribute__((warn_unused_result))
int safety_number(char out[static 61], const uint8_t local_identity[static 32],
                  const char *local_id, size_t local_id_len,
                  const uint8_t remote_identity[static 32], const char *remote_id,
                  size_t remote_id_len);

#endif
