/* request: the public party_request / party_response / party_lobby objects.
 * A party_request is built from a parsed HTTP request: NUL-terminated copies
 * of its strings in one allocation, the body left in the read buffer. */
#ifndef PARTY_REQUEST_H
#define PARTY_REQUEST_H

#include "party.h"
#include "addr.h"
#include "buf.h"
#include "http.h"

typedef struct party__header {
    char *name;
    char *value;
} party__header;

struct party_request {
    const char *method;
    const char *url;  /* path + query, as received */
    const char *path; /* up to '?' */
    party__slice query;
    party__slice body; /* points into the connection's read buffer */
    party__header *headers;
    size_t n_headers, cap_headers;
    char *arena;   /* the strings above, in one block */
    char *decoded; /* query.len + 1 bytes in the arena: each decoded query value
                      at its raw value's offset (party_request_query) */
    char **extra;  /* strings allocated later (set_header, set_props) */
    size_t n_extra;
    const char *props;  /* set by a hook for the room's on_start; kept in extra */
    party__addr remote; /* the client (set by the router; none for internal requests) */
};

struct party_response {
    int status;
    party__header *headers;
    size_t n_headers;
    char *body;
    size_t body_len;
    int failed; /* an allocation failed: the response becomes a 500 */
    int error;  /* an outbound request's answer: 0, or why there is none (PARTY_E*) */
};

struct party_lobby {
    const char *party;
    const char *room;
};

/* Fills req from a parsed request. Strings are copied; the body is not (it
 * stays valid as long as the parsed request's buffer). PARTY_ENOMEM. */
int party__request_init(party_request *req, const party__http_request *http);
void party__request_free(party_request *req);

void party__response_init(party_response *res);
void party__response_free(party_response *res);
/* Sets status and a text/plain body in one call (runtime-made answers). */
void party__response_text(party_response *res, int status, const char *text);
/* Appends a header as given (no checks, duplicates kept). PARTY_ENOMEM. */
int party__response_append_header(party_response *res, const char *name, size_t name_len,
                                  const char *value, size_t value_len);
/* The header value set on the response, or NULL. */
const char *party__response_header_get(const party_response *res, const char *name);

/* Serialises res as an HTTP/1.1 response into a new buffer. head_only: HEAD
 * request (no body bytes, same Content-Length). keep_alive decides the
 * Connection header. date: the Date field for a final answer unless res
 * has one (RFC 9110 6.6.1; NULL: none). NULL on OOM. */
party__buf *party__response_serialize(const party_response *res, int head_only, int keep_alive,
                                      const char *date);

#endif
