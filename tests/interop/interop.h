/* interop.h - shared by the interop test's provider/stores and scenarios. */
#ifndef SECURITOR_INTEROP_H
#define SECURITOR_INTEROP_H

#include <stddef.h>
#include <stdint.h>

#include <signal_protocol.h>
#include <key_helper.h>
#include <ratchet.h>
#include <curve.h>

#define KV_MAX 128

struct record {
    char name[64];
    int32_t device;
    uint32_t id;
    signal_buffer *data;
};

struct kv {
    struct record items[KV_MAX];
    size_t n;
};

/* One libsignal-side user: its identity and its four stores. */
struct party {
    const char *name;
    signal_context *ctx;
    ratchet_identity_key_pair *identity;
    uint32_t registration_id;
    signal_protocol_store_context *store;
    struct kv sessions, prekeys, signed_prekeys, identities;
};

int provider_install(signal_context *ctx);
int party_init(struct party *p, signal_context *ctx, const char *name);
void party_free(struct party *p);

#endif
