/* backends: picks a backend from the configuration (backends.h). The
 * backends live in store_<name>.c behind the ops table of storage.h; this
 * file is the only one that names them, and none of them calls it. */
#include "backends.h"

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
