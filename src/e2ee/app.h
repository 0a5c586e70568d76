/* app.h - e2ee-node's state, shared by its handlers (main.c) and its
 * backend roles (directory.c, relay.c, device.c; PROTOCOL.md §5).
 *
 * A node is standalone (§3) unless --directory and --relay name the two
 * service nodes; then at init it takes the role its id gives it: the
 * directory, the relay, or a host of devices. Only the worker thread
 * touches any of this.
 */
#ifndef SECURITOR_E2EE_APP_H
#define SECURITOR_E2EE_APP_H

#include "securitor/buf.h"
#include "securitor/durable.h"
#include "store.h"

enum role { ROLE_STANDALONE, ROLE_DIRECTORY, ROLE_RELAY, ROLE_DEVICES };

struct directory;
struct relay;
struct devices;

struct app {
    struct store store;      /* local users: standalone users, or devices */
    size_t max_users;
    struct durable durable;  /* --state-dir: everything kept in a state */
    enum role role;
    const char *directory_id, *relay_id; /* --directory, --relay */
    struct node *node;       /* for calls and timers, once init has run */
    struct directory *dir;   /* ROLE_DIRECTORY */
    struct relay *relay;     /* ROLE_RELAY */
    struct devices *devs;    /* ROLE_DEVICES */
    struct buf wire;  /* encoded messages */
    struct buf bytes; /* decoded ciphertexts / plaintexts */
    struct buf plain; /* decrypted plaintext */
};

/* The state rows are kept in (NULL without --state-dir). */
static inline struct state *app_state(const struct app *app) { return app->durable.st; }

#endif
