/* device_internal.h - what the device role's files share (device.c: devices,
 * lists, registration and changes, the tick, rows; outbox.c: send; inbox.c:
 * fetch, decrypt, acknowledge). Not a public interface: see device.h.
 */
#ifndef SECURITOR_E2EE_DEVICE_INTERNAL_H
#define SECURITOR_E2EE_DEVICE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "securitor/map.h"
#include "securitor/node.h"
#include "device.h"
#include "devlist.h"
#include "directory.h"
#include "relay.h"
#include "store.h"

#define KNOWN_MAX DIR_DEVICES_MAX   /* devices a user's chain can ever list */
/* Envelopes whose failures are counted: more than a fetch can bring
 * (RELAY_FETCH_MAX), so that a page of envelopes that all fail still has
 * each counted up to DEVICE_FAILURES_MAX, and dropped. */
#define FAILURES_KEPT (2 * RELAY_FETCH_MAX)
#define LOOKUPS_MAX 16              /* senders looked up after one fetch */
#define OUTBOX_MAX 1000             /* messages waiting per device */
#define PEER_NAME_MAX (DEVICE_USER_MAX + 12)
#define MESSAGE_ID_LEN 36
#define INNER_DOMAIN "securitor message v1"
#define CODE_DOMAIN "securitor device code v1"

enum dev_status { DEV_NEW, DEV_PENDING, DEV_ACTIVE, DEV_REVOKED };

/* A user's device list as this device verified it. */
struct known {
    char *of;
    struct devlist_pin pin;   /* where the verified chain got to */
    struct devlist newest;    /* that version */
    struct devlist_device seen[KNOWN_MAX]; /* every device any version listed */
    size_t n_seen;
};

struct message {
    uint64_t seq;
    char *message_id, *from;
    uint32_t from_device;
    uint8_t *text;
    size_t len;
};

/* One envelope of an outbox message as it was encrypted. It is kept until
 * the relay accepts the delivery, so that a retry (after a timeout or a
 * crash) sends these very bytes again: a message is never encrypted twice
 * for one device. */
struct sealed {
    char *user;
    uint32_t device_id, registration_id;
    char *ciphertext; /* base64 */
    bool prekey;
};

struct outgoing {
    char message_id[MESSAGE_ID_LEN + 1];
    char *to;
    uint8_t *text;
    size_t len;
    struct sealed *envs; /* one per device it is for, once encrypted */
    size_t n_envs;
    bool ready;          /* envs are the set to deliver (false after a refusal) */
    bool stored;         /* it has a row (written with its first envelopes) */
};

struct failure {
    uint64_t id;
    unsigned n;
};

struct device {
    char *user;
    uint32_t device_id;     /* 0 until the directory gave one */
    enum dev_status status;
    uint64_t counter;       /* the last signed request's (never repeats) */
    uint64_t reserved;      /* counters up to here are reserved in the state */
    /* The commit that writes that reservation (node_commit_next; 0: loaded),
     * and the reservation before it, durable once that one was written. */
    uint64_t reserve_commit, reserved_before;
    uint32_t dir_opks;      /* one-time prekeys the directory holds, as last told */
    struct map known;       /* user -> struct known */
    struct message *inbox;  /* inbox[i].seq == i + 1 */
    size_t n_inbox, cap_inbox;
    struct map inbox_ids;   /* message_id -> 1 + index */
    struct map outbox;      /* message_id -> struct outgoing */
    /* Work in flight; not kept in the state. */
    bool fetching, fetch_again, polling, check_self, topping_up;
    bool fetch_refused; /* the last fetch got error 22: no second retry at once */
    uint64_t last_fetch_ms, next_topup_ms;
    struct failure failures[FAILURES_KEPT];
    size_t next_failure;
};

struct send_op;

/* An outbox row whose message was delivered: deleted by the next tick, so
 * that no commit waits for it (a crash first only sends it again, which the
 * relay takes as the no-op it is). */
struct done_row {
    char *user;
    char message_id[MESSAGE_ID_LEN + 1];
};

struct devices {
    struct map by_user; /* user -> struct device */
    struct map ops;     /* message_id -> struct send_op */
    struct done_row *done;
    size_t n_done, cap_done;
    uint64_t tick;
    bool closing;
    /* Outbox messages may have no op (after a load, or an op that could not
     * start): the tick looks for them while this is set, not every tick. */
    bool orphans;
};

struct chain {
    int status; /* 0 lists, 1 no such account (error 20), -1 no usable answer */
    struct devlist *lists;
    size_t n;
    struct devlist_device pending[DIR_DEVICES_MAX];
    size_t n_pending;
};

struct item {
    uint64_t id;
    char *from_user, *message_id, *ciphertext;
    uint32_t from_device;
};

/* Rows (device.c) */
size_t key_pair(uint8_t *k, const char *user, const void *rest, size_t rest_len);
void del_row(struct app *app, const char *kind, const uint8_t *k, size_t k_len);
void put_device(struct app *app, const struct device *d);
void put_message(struct app *app, const struct device *d, const struct message *m);
void put_outgoing(struct app *app, const struct device *d, struct outgoing *o);
void del_outgoing(struct app *app, const struct device *d, struct outgoing *o);
/* Queues the row of a delivered message for the next tick. */
void outgoing_done(struct app *app, const struct device *d, struct outgoing *o);

/* Devices (device.c) */
void sealed_free(struct sealed *e, size_t n);
void outgoing_free(struct outgoing *o);
struct device *device_find(struct app *app, const char *user);
int peer_name(char out[static PEER_NAME_MAX + 1], const char *user, uint32_t id);
int device_name_field(struct reply *r, const cJSON *body, const char *field,
                      bool optional, const char *fallback, const char **out);
bool valid_remote_name(const char *s);
int acting_device(struct app *app, const struct request *req, struct reply *r,
                  bool active, struct device **out, struct user **u);
struct peer *pin_device(struct app *app, struct user *u, const char *of,
                               const struct devlist_device *x);
const struct devlist_device *known_device(const struct known *k, uint32_t id);
/* What the device's own verified list says of it: a pending device that is
 * listed becomes active (and fetches); one listed before and not now is
 * revoked. Returns the status after. */
enum dev_status device_note_own_list(struct app *app, struct device *d, struct user *u,
                                     const struct known *own);

/* Device lists (device.c) */
void chain_free(struct chain *c);
void chain_read(struct chain *c, enum node_call_status st, const cJSON *body);
/* Takes a directory's answer about `of` into d's pins. `asked` is the
 * version d had pinned when the request left (pinned_version), or
 * CHAIN_PIN_NOW for the pin as it is now: an answer older than that is a
 * rollback (error 22). One older than the pin now but not than `asked` was
 * overtaken by a newer one (the network reorders; d's own update was
 * acknowledged meanwhile): old news, not an attack. The pin then stands,
 * and the result is DEVLIST_OK with *out the pinned entry, its newest list
 * unchanged. */
#define CHAIN_PIN_NOW UINT32_MAX
enum devlist_result chain_take(struct app *app, struct device *d, const char *of,
                               const struct chain *c, uint32_t asked, struct known **out);
/* The version of `of`'s list that d has pinned (0: none). */
uint32_t pinned_version(const struct device *d, const char *of);
int ask_devices(struct app *app, const char *of, node_call_fn fn, void *ctx);
bool is_type(const cJSON *body, const char *type);

/* outbox.c */
struct send_op *send_start(struct app *app, struct device *d, const struct outgoing *o,
                                  struct node_deferred *client);
void send_op_free(struct send_op *op);

/* inbox.c */
int sign_next(struct app *app, struct device *d, struct user *u, const char *type,
              const uint64_t *ids, size_t n_ids, const uint8_t *digest,
              uint8_t sig[static CURVE_SIG_LEN]);
/* The commit after which the counter sign_next used last is durably
 * reserved (0: it already is), for reply_early. */
uint64_t counter_commit(const struct device *d);
void fetch_start(struct app *app, struct device *d);
int inbox_add(struct device *d, const struct item *it, const uint8_t *text, size_t len);

#endif
