/* storage: choosing the backend behind the storage seam (storage.h). The
 * backends themselves live in store_<name>.c; this file is what picks one
 * from the configuration. */
#include "storage.h"

#include <stdio.h>
#include <string.h>

int party__store_is_pg(const char *store) {
    return store != NULL &&
           (strncmp(store, "postgres://", 11) == 0 || strncmp(store, "postgresql://", 13) == 0);
}

int party__backend_open(const party__backend_config *cfg, party__backend **out, char *why,
                        size_t why_len) {
    if (cfg->store != NULL && cfg->store[0] != '\0') {
        if (party__store_is_pg(cfg->store))
            return party__store_pg_ops()->open(cfg, out, why, why_len);
        *out = NULL;
        snprintf(why, why_len, "--store %s: not a postgres:// or postgresql:// URI", cfg->store);
        return PARTY_EINVAL;
    }
    return party__store_sqlite_ops()->open(cfg, out, why, why_len);
}

int party__backend_check(party__backend *be, char *why, size_t why_len) {
    if (be != NULL && be->ops == party__store_pg_ops())
        return party__store_pg_check(be, why, why_len);
    return 0;
}

int party__backend_owner_addr(party__backend *be, const char *room_id, char *addr, size_t cap) {
    if (be != NULL && be->ops == party__store_pg_ops())
        return party__store_pg_owner_addr(be, room_id, addr, cap);
    return 0;
}

void party__backend_set_addr(party__backend *be, const char *addr) {
    if (be != NULL && be->ops == party__store_pg_ops())
        party__store_pg_set_addr(be, addr);
}

void party__backend_close(party__backend *be) {
    if (be != NULL)
        be->ops->close(be);
}
