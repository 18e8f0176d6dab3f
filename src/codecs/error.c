/* error: the text of the PARTY_E* codes (party_strerror). A codec-level
 * module so every layer can name an error without reaching the runtime. */
#include "party.h"

const char *party_strerror(int err) {
    switch (err) {
    case PARTY_OK:
        return "success";
    case PARTY_EINVAL:
        return "invalid argument";
    case PARTY_ENOMEM:
        return "out of memory";
    case PARTY_ECLOSED:
        return "connection is closing or closed";
    case PARTY_ETOOBIG:
        return "size limit exceeded";
    case PARTY_ENOTFOUND:
        return "not found";
    case PARTY_ENONAME:
        return "room has no name: address it by name, or call party_room_set_name() first";
    case PARTY_EEXIST:
        return "already set to a different value";
    case PARTY_EIO:
        return "I/O or storage failure";
    case PARTY_ELIMIT:
        return "limit reached";
    case PARTY_ESTATE:
        return "not allowed in the current state";
    case PARTY_EADDR:
        return "cannot listen on the address";
    case PARTY_EBUSY:
        return "in use by another runtime or process";
    case PARTY_EFENCED:
        return "the room is owned by another process now (fenced)";
    case PARTY_ETIMEDOUT:
        return "timed out";
    case PARTY_EPOLICY:
        return "refused by the fetch policy (--fetch-allow)";
    case PARTY_EABORTED:
        return "aborted: the request was in flight when its process stopped";
    case PARTY_EDNS:
        return "the host name could not be resolved";
    case PARTY_ECONNECT:
        return "cannot connect to the server";
    case PARTY_ETLS:
        return "TLS handshake or certificate check failed";
    default:
        return "unknown error";
    }
}
