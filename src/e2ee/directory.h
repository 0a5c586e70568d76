/* directory.h - the directory role (PROTOCOL.md §5, §5.1): accounts, their
 * device lists as signed chains, pending devices, and prekey bundles.
 *
 * The directory is not trusted with device lists: it stores only updates
 * that extend the chain by one version, signed by a device of the version
 * before (devlist.h); devices verify the whole chain themselves. It hands
 * out each one-time prekey exactly once, also across retries (the same
 * request_id gets the same answer) and crashes (a prekey leaves the state in
 * the same commit as the answer that carries it), and a bundle without one
 * when none is left. Prekey uploads are signed by the device with a growing
 * counter (signed.h).
 *
 * Requests: dir_publish, dir_get_devices, dir_update_devices,
 * dir_get_bundles, dir_upload_prekeys (handlers below, for main.c's table).
 */
#ifndef SECURITOR_E2EE_DIRECTORY_H
#define SECURITOR_E2EE_DIRECTORY_H

#include <stdint.h>

#include "securitor/node.h"
#include "app.h"

/* Bounds: devices per account (ids given), available one-time prekeys per
 * device, and remembered bundle answers per account (oldest go first). */
#define DIR_DEVICES_MAX 64
#define DIR_OPKS_MAX 1000
#define DIR_ANSWERS_MAX 256

int directory_new(struct app *app);
void directory_free(struct app *app);
/* A state row of kind "dir_*" (read at open). 0 or -1. */
int directory_load_row(struct app *app, const char *kind, const uint8_t *key, size_t key_len,
                       const uint8_t *value, size_t value_len);
/* After every row is read: checks they fit together. 0 or -1. */
int directory_loaded(struct app *app);

int h_dir_publish(struct app *app, const struct request *req, struct reply *r);
int h_dir_get_devices(struct app *app, const struct request *req, struct reply *r);
int h_dir_update_devices(struct app *app, const struct request *req, struct reply *r);
int h_dir_get_bundles(struct app *app, const struct request *req, struct reply *r);
int h_dir_upload_prekeys(struct app *app, const struct request *req, struct reply *r);

#endif
