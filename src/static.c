/* static: files from a directory. Not served yet: every path falls through
 * to the router's 404. */
#include "static.h"

int party__static_handle(struct party_conn *conn) {
    (void)conn;
    return 0;
}
