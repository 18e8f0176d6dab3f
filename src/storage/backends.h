/* backends: picks a backend from the configuration. The one place that
 * knows every backend by name; the backends themselves know only the seam
 * (storage.h), so nothing in them reaches back here. */
#ifndef PARTY_BACKENDS_H
#define PARTY_BACKENDS_H

#include <stddef.h>

#include "storage.h"

/* 1 if store names the PostgreSQL backend (a postgres:// or
 * postgresql:// URI). */
int party__store_is_pg(const char *store);

/* Opens the backend the configuration names: PostgreSQL when cfg->store
 * is a postgres URI, else SQLite. 0 with *out set, or a negative PARTY_E*
 * code with why. party__backend_close (storage.h) closes it. */
int party__backend_open(const party__backend_config *cfg, party__backend **out, char *why,
                        size_t why_len);

#endif
