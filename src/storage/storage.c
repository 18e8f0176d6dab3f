/* storage: choosing the backend behind the storage seam (storage.h). The
 * backends themselves live in store_<name>.c; this file is what picks one
 * from the configuration. */
#include "storage.h"

int party__backend_open(const party__backend_config *cfg, party__backend **out, char *why,
                        size_t why_len) {
    return party__store_sqlite_ops()->open(cfg, out, why, why_len);
}

void party__backend_close(party__backend *be) {
    if (be != NULL)
        be->ops->close(be);
}
