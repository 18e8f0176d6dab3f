/* http_client: outbound HTTP(S) on an event loop, through libcurl's multi
 * interface. Its sockets are watched with uv_poll and its timeouts with
 * one uv_timer of the loop, so nothing blocks the loop and no thread of
 * ours runs a transfer (Debian's libcurl resolves host names on a short
 * thread of its own). Connections are kept and reused; HTTP/2 is used
 * where libcurl and the server have it. Knows nothing of rooms: a finished
 * transfer is reported through the callback it was started with. Policy
 * (fetch_allow.h) is checked for every URL, redirects included (they are
 * followed here, not by libcurl), and for every address a connection
 * opens. */
#ifndef PARTY_HTTP_CLIENT_H
#define PARTY_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "party.h"
#include "fetch_allow.h"
#include "request.h"

typedef struct party__http_client party__http_client;
typedef struct party__http_transfer party__http_transfer;

/* Upper bounds (s) of the latency histogram's buckets; the last is +Inf. */
#define PARTY__HTTP_BUCKETS 11
extern const double party__http_bucket_seconds[PARTY__HTTP_BUCKETS];

/* Counters for metrics (a loop's clients add to one). */
typedef struct party__http_stats {
    uint64_t requests;    /* transfers started */
    uint64_t answered;    /* ended with an HTTP answer */
    uint64_t errors[8];   /* ended with an error, by party__http_error_index */
    uint64_t redirects;   /* redirects followed */
    double seconds_total; /* of every transfer that ended */
    uint64_t seconds_hist[PARTY__HTTP_BUCKETS]; /* by party__http_bucket_seconds upper bounds */
    uint64_t in_flight;
} party__http_stats;
/* The metrics label of errors[i] and the index of an error code. */
typedef struct party__http_client_config {
    const char *ca_file;       /* NULL: the system's CA certificates; copied */
    size_t max_response_bytes; /* a larger body is refused (PARTY_ETOOBIG) */
    size_t max_header_bytes;   /* the answer's head */
    size_t max_headers;
    long max_redirects; /* followed per request */
    /* The policy of every transfer of this client; must outlive it. NULL
     * refuses everything. A client per policy: libcurl reuses a connection
     * within a client without opening (and checking) it again. */
    const party__allow *allow;
    const char *allow_source; /* where the list comes from, for refusals ("--fetch-allow") */
    party__http_stats *stats; /* counted here (must outlive the client); NULL: not counted */
} party__http_client_config;

/* What a transfer ended with. error 0: res is the server's answer; else a
 * PARTY_E* code, res.status 0 and why says what happened. The callback may
 * take res (move it out and party__response_init it). */
typedef struct party__http_answer {
    int error;
    char why[320];
    party_response res;
    double seconds; /* from start to end, redirects included */
} party__http_answer;

/* Called once per transfer started, from the loop (never from inside
 * party__http_client_start); the transfer is freed when it returns. */
typedef void (*party__http_done_cb)(party__http_answer *answer, void *arg);

typedef struct party__http_out {
    const char *method;         /* an HTTP token */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* name, value pairs ending with NULL; NULL: none */
    const void *body;
    size_t len;
    uint64_t timeout_ms; /* the whole transfer, redirects included; > 0 */
} party__http_out;

/* A client on loop; cfg is copied. NULL on failure (memory, libcurl). */
party__http_client *party__http_client_new(uv_loop_t *loop, const party__http_client_config *cfg);
/* Cancels every transfer (their callbacks are not called) and closes the
 * client; its handles finish closing on the loop's next turns. NULL is a
 * no-op. */
void party__http_client_free(party__http_client *client);

/* Checks what a request can be checked for before it leaves: method,
 * headers, a URL libcurl parses with scheme http or https. 0 or
 * PARTY_EINVAL with why (no client needed). */
int party__http_check(const party__http_out *out, char *why, size_t why_len);

/* Whether a URL passes a policy (allow; source names it in refusals):
 * 0, PARTY_EINVAL (not an http(s) URL libcurl parses), PARTY_EPOLICY,
 * PARTY_ENOMEM; why says which. Addresses are checked only when a
 * connection opens. */
int party__http_url_allowed(const party__allow *allow, const char *source, const char *url,
                            char *why, size_t why_len);

/* Makes a transfer ready to start: everything in out is copied, all the
 * memory it needs is taken, so that starting it cannot fail unanswered.
 * 0 with *transfer set, or PARTY_ENOMEM. */
int party__http_prepare(party__http_client *client, const party__http_out *out,
                        party__http_transfer **transfer);
/* Starts a prepared transfer; its time counts from now. done(answer, arg)
 * follows on a later loop turn, whatever happens (a refusal by the policy
 * and running out of memory included). done is the caller's upward
 * callback (the engine knows no rooms): docs/architecture.md lists it. */
void party__http_go(party__http_transfer *transfer, party__http_done_cb done, void *arg);
/* Stops a transfer, prepared or started, before done ran; done is not
 * called. */
void party__http_cancel(party__http_transfer *transfer);

const char *party__http_error_label(int index);
int party__http_error_index(int error);

#endif
