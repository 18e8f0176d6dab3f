/* runtime_store: which storage backend the runtime opens (embedded SQLite
 * by default, PostgreSQL for a cluster node), chosen before its data is
 * opened. Kept apart from runtime.c: the daemon's --store and --node. */
#include "runtime.h"

#include "alloc.h"
#include "storage.h"

int party__runtime_set_store(party_runtime *rt, const char *store, const char *node) {
    char *store_copy = NULL, *node_copy = NULL;

    if (rt->backend != NULL)
        return PARTY_ESTATE;
    if (store != NULL && store[0] != '\0' && !party__store_is_pg(store))
        return PARTY_EINVAL;
    if ((store != NULL && store[0] != '\0' && (store_copy = party__strdup(store)) == NULL) ||
        (node != NULL && (node_copy = party__strdup(node)) == NULL)) {
        party__free(store_copy);
        return PARTY_ENOMEM;
    }
    party__free(rt->store);
    party__free(rt->node);
    rt->store = store_copy;
    rt->node = node_copy;
    return 0;
}

void party__runtime_set_no_self_fence(party_runtime *rt) {
    rt->no_self_fence = 1;
}

void party__runtime_set_handoff_hold(party_runtime *rt, unsigned ms) {
    rt->handoff_hold_ms = ms;
}

void party__runtime_set_store_connections(party_runtime *rt, unsigned n) {
    rt->store_connections = n;
}

int party__runtime_set_cluster(party_runtime *rt, const char *secret, const char *addr) {
    char *secret_copy = NULL, *addr_copy = NULL;
    if ((secret != NULL && (secret_copy = party__strdup(secret)) == NULL) ||
        (addr != NULL && (addr_copy = party__strdup(addr)) == NULL)) {
        party__free(secret_copy);
        return PARTY_ENOMEM;
    }
    party__free(rt->cluster_secret);
    party__free(rt->cluster_addr);
    rt->cluster_secret = secret_copy;
    rt->cluster_addr = addr_copy;
    return 0;
}
