/* ops: operational endpoints. Not served yet: every path falls through to
 * the router. */
#include "ops.h"

int party__ops_handle(struct party_conn *conn) {
    (void)conn;
    return 0;
}
