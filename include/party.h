/* party.h — the public API of libparty: rooms reached over WebSocket and HTTP.
 *
 * A *party* is a kind of room, described by a party_def of callbacks. A *room*
 * is one named instance of a party; it runs one event at a time on one event
 * loop. A *conn* is one WebSocket connection to a room. Everything here is
 * called from the room's own loop thread unless a comment says otherwise.
 *
 * Conventions: functions returning int give 0 on success and a negative
 * PARTY_E* code on failure (party_strerror() gives text). Strings are
 * NUL-terminated UTF-8; binary data is (const void *, size_t).
 */
#ifndef PARTY_H
#define PARTY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PARTY_VERSION_MAJOR 0
#define PARTY_VERSION_MINOR 2
#define PARTY_VERSION_PATCH 0
#define PARTY_VERSION_STRING "0.2.0"

/* The layout of party_def and party_config, recorded in their first field,
 * abi. Fields are only ever appended to them and each append raises this
 * number, so a later runtime can still read a struct of an earlier ABI. A
 * runtime refuses a struct of an ABI it cannot read (a newer one has fields
 * it does not know), with a log line naming both ABIs. ABI 1 was party.h
 * 0.1, whose structs had no abi field; ABI 3 appended synced state and RPC
 * (party_def) and agents_prefix (party_config), and a struct of ABI 2 is
 * read up to them (they take the values that keep its behaviour); ABI 3
 * also appended outbound HTTP (party_def.fetch_allow, party_config's
 * fetch_* fields). ABI 4 appended what faces the internet: the PROXY
 * protocol, trusted proxies, rate limits and browser origins
 * (party_config), and a party's own limits and origins (party_def); a
 * struct of ABI 2 or 3 is read with their defaults. */
#define PARTY_ABI_VERSION 4

/* Marks what libparty exports. The library is built with hidden
 * visibility: what this header declares is all a program or a party can
 * link to. */
#if defined(__GNUC__) || defined(__clang__)
#define PARTY_EXTERN __attribute__((visibility("default")))
#else
#define PARTY_EXTERN
#endif

/* Lets the compiler check a printf-style format string and its arguments. */
/* Marks an old name kept until 1.0; the compiler names its replacement. */
#if defined(__GNUC__) || defined(__clang__)
#define PARTY__DEPRECATED(replacement) __attribute__((deprecated("use " replacement)))
#else
#define PARTY__DEPRECATED(replacement)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PARTY__PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define PARTY__PRINTF(fmt_index, first_arg)
#endif

/* Error codes. All negative; 0 is success. */
enum {
    PARTY_OK = 0,
    PARTY_EINVAL = -1,    /* an argument is out of its documented range */
    PARTY_ENOMEM = -2,    /* out of memory */
    PARTY_ECLOSED = -3,   /* the connection is closing or closed */
    PARTY_ETOOBIG = -4,   /* a size limit was exceeded */
    PARTY_ENOTFOUND = -5, /* no such party, room, connection or key */
    PARTY_ENONAME = -6,   /* the room has no name (created by id, never named) */
    PARTY_EEXIST = -7,    /* already set or registered, with a different value */
    PARTY_EIO = -8,       /* an I/O or storage failure */
    PARTY_ELIMIT = -9,    /* a count limit was reached (connections, tags, queue) */
    PARTY_ESTATE = -10,   /* not allowed in the current state */
    PARTY_EADDR = -11,    /* the listen address could not be bound */
    PARTY_EBUSY = -12,    /* held by another runtime or process (the data directory, a room in a
                             cluster): try again later */
    PARTY_EFENCED = -13,  /* the room is owned by another process now */
    /* Outbound HTTP (party_room_fetch_url) ends with one of these instead
     * of an answer (see party_response_get_error): */
    PARTY_ETIMEDOUT = -14, /* no whole answer within the request's time */
    PARTY_EPOLICY = -15,   /* refused by the fetch policy (--fetch-allow) */
    PARTY_EABORTED = -16,  /* in flight when its process stopped: never answered */
    PARTY_EDNS = -17,      /* the host name could not be resolved */
    PARTY_ECONNECT = -18,  /* no connection could be made to the server */
    PARTY_ETLS = -19,      /* the TLS handshake or the certificate check failed */
};

/* Text for a PARTY_E* code. Never NULL; static storage. */
PARTY_EXTERN const char *party_strerror(int err);

/* Hook results (before_connect / before_request). */
enum {
    PARTY_CONTINUE = 0, /* let the request through to the room */
    PARTY_RESPOND = 1,  /* the hook filled the response; send it, skip the room */
};

/* Limits shared with PartyServer / Durable Objects. */
#define PARTY_MAX_TAGS 10          /* tags per connection, the id included */
#define PARTY_MAX_TAG_LEN 256      /* bytes per tag (and per connection id) */
#define PARTY_MAX_CONN_STATE 16384 /* bytes of per-connection state */
#define PARTY_MAX_CLOSE_REASON 123 /* bytes of a close reason */
#define PARTY_ID_MAX 65            /* room id: 64 hex chars + NUL */
#define PARTY_ADDR_MAX 46          /* an IP address as text, with its NUL */

typedef struct party_runtime party_runtime;
typedef struct party_room party_room;
typedef struct party_conn party_conn;
typedef struct party_request party_request;
typedef struct party_response party_response;
typedef struct party_lobby party_lobby;

/* A party: the callbacks and options shared by all its rooms. The runtime
 * keeps the pointer, so the definition must outlive the runtime. Every
 * callback is optional. */
typedef struct party_def {
    /* PARTY_ABI_VERSION of the party.h the definition was compiled with:
     * set it with PARTY_DEF_INIT. 0 is read as the runtime's own ABI, which
     * is right when the definition is compiled with the runtime (built-in
     * parties, a program embedding libparty, party_test.h); a party loaded
     * from a shared object is checked through PARTY_MODULE instead. */
    unsigned abi;
    /* URL name: /<prefix>/<name>/<room>. Matched case-insensitively. */
    const char *name;
    /* Hibernate: when a room of this party has connections but nothing to
     * do for hibernate_after, its state (free_state) and database leave
     * memory while its connections stay open, with their id, uri, tags and
     * state. The next message, close, error, HTTP request or alarm wakes
     * it: on_start runs again, then the handler. Pings never wake it. */
    int hibernate;

    /* Runs once per room incarnation, before any other callback of it.
     * Non-zero: failed; the triggering WebSocket is closed with 1011 (after
     * a JSON error frame), an HTTP request gets 500, and the next event
     * retries. props: the latest given at routing time (see
     * party_request_set_props), else party_def.props, else NULL. */
    int (*on_start)(party_room *room, const char *props);
    /* A WebSocket connection was accepted. req is valid during the call. */
    void (*on_connect)(party_room *room, party_conn *conn, const party_request *req);
    /* A whole message. Text messages are valid UTF-8 and binary == 0; data is
     * valid during the call only. */
    void (*on_message)(party_room *room, party_conn *conn, const void *data, size_t len,
                       int binary);
    /* The connection is gone. Called exactly once per connection; after it
     * returns the conn pointer is invalid. code: the peer's close code, 1005
     * if its Close had none, 1006 if the transport dropped without a Close
     * (was_clean == 0). */
    void (*on_close)(party_room *room, party_conn *conn, int code, const char *reason,
                     int was_clean);
    /* A protocol or transport error on an open connection (on_close follows). */
    void (*on_error)(party_room *room, party_conn *conn, const char *what);
    /* An HTTP request for the room. Without it the runtime answers 404. */
    void (*on_request)(party_room *room, const party_request *req, party_response *res);
    /* The room's alarm came due (see party_alarm_set). Non-zero: failed,
     * retried with backoff. */
    int (*on_alarm)(party_room *room);
    /* A schedule came due (see party_schedule_*). Non-zero is logged; a
     * repeating schedule runs again at its next time regardless. */
    int (*on_schedule)(party_room *room, const char *name, const void *payload, size_t len);
    /* Tags for a new connection, written into tags[0..max). Return the count,
     * or a negative value to refuse the connection. The strings must stay
     * valid until the callback returns; the runtime copies them. The id is
     * always added as the first tag, so max is PARTY_MAX_TAGS - 1. */
    int (*connection_tags)(party_room *room, party_conn *conn, const party_request *req,
                           const char **tags, size_t max);
    /* Run before any room is involved, for WebSocket upgrades and HTTP
     * requests respectively. Return PARTY_CONTINUE (optionally after adding
     * request headers) or PARTY_RESPOND after filling res. */
    int (*before_connect)(const party_lobby *lobby, party_request *req, party_response *res);
    int (*before_request)(const party_lobby *lobby, party_request *req, party_response *res);
    /* Drops the user state set with party_room_set_state when the room
     * leaves memory (eviction, shutdown). */
    void (*free_state)(void *state);
    /* CORS for this party's HTTP requests: PARTY_CORS_DEFAULT follows the
     * runtime (party_config.cors), PARTY_CORS_ON / PARTY_CORS_OFF decide
     * here. When on, OPTIONS preflights are answered by the runtime and the
     * CORS headers are added to every HTTP response (never to a 101). */
    int cors;
    /* NULL: the default CORS headers (Access-Control-Allow-Origin: *,
     * -Methods: GET, POST, HEAD, OPTIONS, -Headers: *, -Max-Age: 86400).
     * Else name/value pairs ending with NULL, used instead. */
    const char *const *cors_headers;
    /* The answer to a party_room_fetch made by a room of this party: a new
     * event of that room, delivered like any other, never during the
     * party_room_fetch call (on_start runs first if the room left memory
     * while it waited). id: what party_room_fetch returned in id_out; tag:
     * the tag given to it ("" if none); res: the answer, read with
     * party_response_get_*. All three are valid during the call only. */
    void (*on_response)(party_room *room, const char *id, const char *tag,
                        const party_response *res);
    /* The props on_start receives when no hook set any (NULL: none), e.g.
     * JSON from partyd's config file ("parties": {NAME: {"props": ...}}).
     * Must outlive the runtime. */
    const char *props;

    /* ---- ABI 3: synced state and RPC (docs/state-and-rpc.md) ----
     * The rooms of a party that sets sync, or any field below, speak the
     * wire protocol of Cloudflare's Agents client: each new connection is
     * sent {"type":"cf_agent_identity",...} and the room's state; text
     * messages {"type":"cf_agent_state",...} and {"type":"rpc",...} are
     * handled by the runtime and never reach on_message. */
    int sync;
    /* A client proposed json (len bytes, valid JSON, NUL-terminated) as the
     * room's new state. Return 0 to accept it; non-zero rejects it, and the
     * sender gets {"type":"cf_agent_state_error","error":reason}: write a
     * reason into reason (reason_len bytes, "" preset; left empty: "State
     * update rejected"). NULL: every proposal is accepted. */
    int (*validate_state)(party_room *room, party_conn *from, const char *json, size_t len,
                          char *reason, size_t reason_len);
    /* The state changed (stored in the current event's transaction): from
     * is the connection that proposed it, NULL when the room set it with
     * party_state_set (a party_state_set inside this callback does not
     * call it again). json is valid during the call, until a
     * party_state_set. */
    void (*on_state_change)(party_room *room, party_conn *from, const char *json, size_t len);
    /* The RPC methods clients may call, an array ending with an entry whose
     * name is NULL (NULL: none). Must outlive the runtime. */
    const struct party_rpc_method *rpc_methods;

    /* ---- ABI 3: outbound HTTP (party_room_fetch_url) ----
     * NULL: this party's rooms follow the runtime's party_config.fetch_allow;
     * else this list (same syntax) is used instead of it. Must outlive the
     * runtime. */
    const char *fetch_allow;

    /* ---- ABI 4: a party's own limits (0: the runtime's) ----
     * Connections per room (party_config.max_room_conns). */
    size_t max_room_conns;
    /* WebSocket messages and message bytes a connection may send per
     * second (party_config.limit_conn_msgs, limit_conn_bytes). */
    double limit_conn_msgs;
    double limit_conn_bytes;
    /* Browser origins: NULL: this party follows the runtime's
     * party_config.allowed_origins; else this list (same syntax) is used
     * instead of it. Must outlive the runtime. */
    const char *allowed_origins;
} party_def;

/* The first member of every party_def initializer:
 *   static const party_def greeter = {PARTY_DEF_INIT, .name = "greeter", ...}; */
#define PARTY_DEF_INIT .abi = PARTY_ABI_VERSION

enum { PARTY_CORS_DEFAULT = 0, PARTY_CORS_ON = 1, PARTY_CORS_OFF = 2 };

/* A party in a shared object (partyd --party NAME=FILE.so) ends with
 *   PARTY_MODULE(def);
 * where def is its party_def (static storage). It defines the two symbols
 * partyd looks up: party_abi, the PARTY_ABI_VERSION the object was built
 * with, checked before anything else of the object is used, and
 * party_module(), which returns &def. A party that builds its definition
 * at load time writes PARTY_MODULE_ABI; and its own
 *   PARTY_EXTERN const party_def *party_module(void)
 * returning a definition valid for the life of the process. */
#ifdef __cplusplus
#define PARTY__MODULE_DECL extern "C"
#define PARTY__MODULE_DEF extern "C"
#else
#define PARTY__MODULE_DECL extern
#define PARTY__MODULE_DEF
#endif
#define PARTY_MODULE_ABI                                                                           \
    PARTY__MODULE_DECL PARTY_EXTERN const unsigned party_abi;                                      \
    PARTY__MODULE_DEF PARTY_EXTERN const unsigned party_abi = PARTY_ABI_VERSION
#define PARTY_MODULE(def)                                                                          \
    PARTY__MODULE_DECL PARTY_EXTERN const party_def *party_module(void);                           \
    PARTY__MODULE_DEF PARTY_EXTERN const party_def *party_module(void) {                           \
        return &(def);                                                                             \
    }                                                                                              \
    PARTY_MODULE_ABI

/* ---- rooms ---------------------------------------------------------------
 * A party_room pointer is valid during any callback of that room. */

/* The room's name, valid while the room is in memory. A room addressed by
 * name knows it in every callback, also after eviction, a restart or an
 * alarm: it is stored with the room before its first on_start. A room
 * addressed by id has no name until party_room_set_name(); reading it then
 * returns NULL, logs PARTY_ENONAME's message, and an on_request that did so
 * is answered 500 with that message. */
PARTY_EXTERN const char *party_room_name(party_room *room);
/* The name of the room's party (as registered). */
PARTY_EXTERN const char *party_room_party(party_room *room);
/* The room id: 64 lowercase hex digits. For a room addressed by name, the
 * SHA-256 of party name, a NUL byte and room name; else random (see
 * party_room_id_new). It names the room's storage. */
PARTY_EXTERN const char *party_room_id(party_room *room);
/* Names an unnamed room and stores the name with the room (in the current
 * event's transaction). Same name again: no-op (0). A different name:
 * PARTY_EEXIST. Empty, over PARTY_MAX_TAG_LEN bytes or not UTF-8:
 * PARTY_EINVAL. */
PARTY_EXTERN int party_room_set_name(party_room *room, const char *name);
/* A new random room id, for rooms addressed by id rather than by name. */
PARTY_EXTERN void party_room_id_new(char id_out[PARTY_ID_MAX]);
/* The id of the room called name in party (what the runtime computes).
 * 0, or PARTY_ENOMEM (hashing needs memory); id_out is then "". */
PARTY_EXTERN int party_room_id_from_name(const char *party, const char *name,
                                         char id_out[PARTY_ID_MAX]);
/* User state: any pointer; freed through party_def.free_state. */
PARTY_EXTERN void *party_room_state(party_room *room);
PARTY_EXTERN void party_room_set_state(party_room *room, void *state);
/* The first open connection with this id, or NULL. */
PARTY_EXTERN party_conn *party_room_conn(party_room *room, const char *conn_id);
/* Calls fn for each open connection carrying tag (NULL: all). fn returns
 * non-zero to stop; that value is returned. */
PARTY_EXTERN int party_room_foreach_conn(party_room *room, const char *tag,
                                         int (*fn)(party_conn *conn, void *arg), void *arg);
/* Number of open connections. */
PARTY_EXTERN size_t party_room_conn_count(party_room *room);
/* Sends one message to every open connection but those whose id is in
 * exclude_ids. The frame is encoded once and shared by all receivers.
 * *sent (sent may be NULL): the number of connections it was queued on.
 * 0, PARTY_EINVAL (NULL data with len > 0, or text that is not UTF-8),
 * PARTY_ENOMEM. A connection it could not be queued on (memory, send queue
 * limit) is dropped, as party_conn_send does. */
PARTY_EXTERN int party_room_broadcast(party_room *room, const void *data, size_t len, int binary,
                                      const char *const *exclude_ids, size_t n_exclude,
                                      size_t *sent);

/* ---- room-to-room requests -----------------------------------------------
 * A room asks another room (of any party, itself included) over HTTP and
 * gets the answer later, as an on_response event on its own loop. */

/* Sends method path to the room room_name of party, as if a client had
 * requested /<prefix>/<party>/<room_name><path>: the target sees an
 * ordinary on_request (it knows its name), without the party's
 * before_request hook and CORS, and with the header X-Partyd-From-Room:
 * the caller's room id (network clients cannot send that header: 400).
 * The answer comes back as on_response(room, id, tag, res). Failures are
 * answers too, with a text/plain body saying why:
 *   404  unknown party
 *   500  the target's on_start failed (it is retried on the next event)
 *   502  the answer was malformed, larger than max_body_bytes, or its head
 *        over max_header_bytes or max_headers; or no memory to read it
 *   503  the runtime could not open the internal connection (files, memory)
 *   504  no answer within party_config.fetch_timeout (30 s by default)
 * method: NULL for "GET", else an HTTP token. path: NULL, "" or a string
 * starting with '/' or '?' ("/items?id=3"), no spaces or control bytes
 * (percent-encode them). headers: name, value pairs ending with NULL (or
 * NULL). body: len bytes (NULL/0 for none; a Content-Length is sent when
 * method is not GET/HEAD or len > 0). tag: any string handed back to
 * on_response (NULL: ""). Everything is copied. id_out (may be NULL):
 * the request's id, 64 hex digits.
 * Output gate: a request made after the current event wrote leaves only
 * once that write is committed; if the commit fails, it is dropped (no
 * on_response: the room's state is reset anyway). The caller may leave
 * memory (eviction, hibernation) while it waits: the answer brings it
 * back. Requests in flight do not survive a restart of the process.
 * Inside the room's callbacks only (PARTY_ESTATE otherwise). 0,
 * PARTY_EINVAL (NULL party or room name; a room name empty, over
 * PARTY_MAX_TAG_LEN bytes or not UTF-8; a bad method, path or header, or a
 * header the runtime writes: Host, Connection, Content-Length,
 * Transfer-Encoding, Upgrade, X-Partyd-From-Room, X-Partyd-Room-Id),
 * PARTY_ETOOBIG (body over max_body_bytes, head over max_header_bytes),
 * PARTY_ELIMIT (PARTY_MAX_ROOM_FETCHES requests of this room, or
 * PARTY_MAX_FETCHES in the runtime, in flight),
 * PARTY_ENOMEM. */
PARTY_EXTERN int party_room_fetch(party_room *room, const char *party, const char *room_name,
                                  const char *method, const char *path, const char *const *headers,
                                  const void *body, size_t len, const char *tag,
                                  char id_out[PARTY_ID_MAX]);
#define PARTY_MAX_FETCHES 4096     /* room-to-room requests in flight per runtime */
#define PARTY_MAX_ROOM_FETCHES 256 /* ... and per calling room, so one cannot take all */

/* ---- outbound HTTP ---------------------------------------------------------
 * A room calls the outside world over HTTP(S) and gets the answer later, as
 * an on_response event, like a room-to-room answer. */

/* Starts method url (http:// or https://) with headers (name, value pairs
 * ending with NULL, or NULL) and body (len bytes; NULL/0 for none). The
 * answer comes back as on_response(room, id, tag, res) on a later event of
 * the room, never during this call: res has the server's status, headers
 * and body, and party_response_get_error(res) is 0. If no answer came,
 * party_response_get_error(res) says why — PARTY_ETIMEDOUT (no whole answer
 * within timeout), PARTY_EDNS, PARTY_ECONNECT, PARTY_ETLS, PARTY_ETOOBIG
 * (body over party_config.fetch_max_bytes, or head over max_header_bytes
 * or max_headers), PARTY_EPOLICY (the URL, a redirect's URL or an address
 * it resolves to is not allowed: see party_config.fetch_allow), PARTY_ELIMIT
 * (more than PARTY_FETCH_URL_MAX_REDIRECTS redirects), PARTY_EABORTED (the
 * process stopped while it was in flight), PARTY_EIO (anything else) — and
 * res has status 0 and a text/plain body saying more. So a timeout here is
 * never an upstream 504. Redirects are followed (each URL checked); a 303,
 * or a 301/302 after a POST, continues as GET; Authorization and Cookie
 * headers do not follow to another host. method: NULL for "GET", else an
 * HTTP token. timeout: seconds for the whole exchange, at most 1e7 (0:
 * party_config.fetch_timeout). tag: handed back (NULL: ""). Everything is
 * copied. id_out (may be NULL): the request's id, 64 hex digits.
 * Durability: the request is recorded with the room's records in the
 * current event's transaction and leaves only once that commit is durable;
 * if the commit fails it is never sent (no on_response). A request still in
 * flight when its process stops is answered PARTY_EABORTED by the room's
 * next incarnation, before that incarnation's other events (after
 * on_start). The room may leave memory while it waits: the answer brings
 * it back. Inside the room's callbacks only (PARTY_ESTATE otherwise). 0,
 * PARTY_EINVAL (NULL url, a URL that is not http(s), a timeout below 0,
 * over 1e7 or NaN, a bad method or
 * header, a header the runtime writes: Host, Content-Length,
 * Transfer-Encoding, Connection, Upgrade, Expect, TE), PARTY_ETOOBIG (body
 * over max_body_bytes), PARTY_ELIMIT (PARTY_MAX_ROOM_FETCH_URLS of this
 * room's or party_config.fetch_max_in_flight, PARTY_MAX_FETCH_URLS by
 * default, of the process's outbound requests in flight), PARTY_EIO (the
 * record could not be written), PARTY_ENOMEM. */
PARTY_EXTERN int party_room_fetch_url(party_room *room, const char *method, const char *url,
                                      const char *const *headers, const void *body, size_t len,
                                      double timeout, const char *tag, char id_out[PARTY_ID_MAX]);
#define PARTY_MAX_FETCH_URLS 1024       /* outbound requests in flight per process (default) */
#define PARTY_MAX_ROOM_FETCH_URLS 64    /* ... and per room */
#define PARTY_FETCH_URL_MAX_REDIRECTS 5 /* redirects followed per request */

/* Whether party_room_fetch_url would let url leave by the allow-list in
 * force for the room's party (party_def.fetch_allow, else
 * party_config.fetch_allow): 0, PARTY_EINVAL (not an http:// or https://
 * URL), PARTY_EPOLICY (why, if given, receives the reason, which says
 * when outbound requests are off altogether), PARTY_ESTATE (outside the
 * room's callbacks), PARTY_ENOMEM. The addresses a host resolves to are
 * checked only when the request connects (private addresses are refused
 * then). why may be NULL. */
PARTY_EXTERN int party_fetch_url_check(party_room *room, const char *url, char *why,
                                       size_t why_len);

/* In on_response: 0 if res is an HTTP answer (a server's, or a room's for
 * party_room_fetch), else the PARTY_E* code of why there is none (see
 * party_room_fetch_url; party_strerror gives text, the body more). */
PARTY_EXTERN int party_response_get_error(const party_response *res);

/* ---- connections ---------------------------------------------------------
 * A party_conn pointer stays valid until on_close for it returns. */

/* The connection id (_pk query parameter, else generated). */
PARTY_EXTERN const char *party_conn_id(party_conn *conn);
/* The original request target (path and query) the connection opened with. */
PARTY_EXTERN const char *party_conn_uri(party_conn *conn);
/* The tags, id first. *tags valid until on_close returns. */
PARTY_EXTERN size_t party_conn_tags(party_conn *conn, const char *const **tags);
/* Queues a message. PARTY_ECLOSED if the connection is closing; PARTY_ELIMIT
 * if its send queue is over its byte limit (the connection is then closed:
 * a reader that slow is dropped, not buffered for); PARTY_ENOMEM (the
 * connection is then dropped too: a reader never misses a message unseen). */
PARTY_EXTERN int party_conn_send(party_conn *conn, const void *data, size_t len, int binary);
PARTY_EXTERN int party_conn_send_text(party_conn *conn, const char *text);
/* Starts the close handshake: sends Close(code, reason). code must be 1000,
 * 1001-1003, 1007-1014 or 3000-4999; reason at most PARTY_MAX_CLOSE_REASON
 * bytes of UTF-8. Closing an already closing connection is a no-op (0).
 * on_close follows when the peer answers or the transport drops. */
PARTY_EXTERN int party_conn_close(party_conn *conn, int code, const char *reason);
/* Per-connection state, copied; at most PARTY_MAX_CONN_STATE bytes
 * (PARTY_ETOOBIG). len 0 clears it. */
PARTY_EXTERN int party_conn_set_state(party_conn *conn, const void *data, size_t len);
/* The state, or NULL if none; *len set when len != NULL. Valid until the
 * next party_conn_set_state or on_close returns. */
PARTY_EXTERN const void *party_conn_state(party_conn *conn, size_t *len);
/* The client's address as text ("203.0.113.7", "2001:db8::7") into out
 * (size bytes; PARTY_ADDR_MAX is enough): the socket's peer, or what a
 * PROXY header or a trusted proxy's Forwarded / X-Forwarded-For named
 * (party_config.proxy_protocol, trusted_proxies). Kept while the room
 * hibernates. 0; PARTY_ENOTFOUND when not known (connections of the
 * test harness; out is then ""); PARTY_ETOOBIG when out is too small. */
PARTY_EXTERN int party_conn_remote_addr(party_conn *conn, char *out, size_t size);

/* ---- storage -------------------------------------------------------------
 * Each room has its own database. Everything a room writes during one event
 * is one atomic transaction; consecutive queued events commit together.
 * Output (messages, HTTP answers, closes) produced after a write is held
 * until the write is durable, so no client sees an effect a crash could
 * undo. If the commit fails, the writes are rolled back, the held output is
 * dropped, the affected connections are closed with 1011 (HTTP: 500), and
 * the room's state is dropped (free_state; on_start runs again).
 * These calls work inside the room's callbacks only (PARTY_ESTATE
 * otherwise). */

/* Stores val under key (UTF-8). Key + value at most 2 MB (PARTY_ETOOBIG). */
PARTY_EXTERN int party_kv_put(party_room *room, const char *key, const void *val, size_t len);
/* *val: a malloc'd copy (NUL-terminated past *len), the caller frees it.
 * PARTY_ENOTFOUND when the key is absent. len may be NULL. */
PARTY_EXTERN int party_kv_get(party_room *room, const char *key, void **val, size_t *len);
/* PARTY_ENOTFOUND when the key is absent. */
PARTY_EXTERN int party_kv_delete(party_room *room, const char *key);
/* Calls fn for each key starting with prefix (NULL or "": all), in key
 * order; key and val are valid during the call. fn returns non-zero to
 * stop (that value is returned). fn must not write. */
PARTY_EXTERN int party_kv_list(party_room *room, const char *prefix,
                               int (*fn)(const char *key, const void *val, size_t len, void *arg),
                               void *arg);
/* The room's SQLite database, for its own tables, inside the current
 * event's transaction (do not BEGIN/COMMIT yourself). Tables whose names
 * start with _party_ are the runtime's. NULL outside callbacks. The
 * connection is valid until the batch ends: between batches it may be
 * closed (a bounded cache of open files), so keep no statement, hook or
 * function on it past the callback, and call this again in the next. */
PARTY_EXTERN struct sqlite3 *party_room_db(party_room *room);

/* The runtime's clock: Unix epoch milliseconds. Use it, not the system
 * clock, to compute alarm and schedule times: under party_test.h's virtual
 * clock it is the virtual time, so alarms set from it fire when the test
 * advances time. NULL room: the system's wall clock. */
PARTY_EXTERN int64_t party_now_ms(party_room *room);

/* ---- logging ------------------------------------------------------------- */

/* Log levels, as party_config.log_level counts them. */
enum { PARTY_LOG_ERROR = 0, PARTY_LOG_WARN = 1, PARTY_LOG_INFO = 2, PARTY_LOG_DEBUG = 3 };

/* Writes one line to the runtime's log (stderr) when level is within its
 * log_level, like the runtime's own lines about a room: the time, the
 * level, then "room <party>/<name>: " (the room id for a room without a
 * name) and the message formatted from fmt as printf does; one JSON object
 * with log_json. A message is cut at 1 KiB. A NULL room or a level outside
 * PARTY_LOG_ERROR..PARTY_LOG_DEBUG writes nothing. Lines are written whole,
 * even from several event-loop threads at once. */
PARTY_EXTERN void party_room_log(party_room *room, int level, const char *fmt, ...)
    PARTY__PRINTF(3, 4);

/* ---- alarms and schedules ------------------------------------------------
 * Times are Unix epoch milliseconds. A room's alarm and schedules wake it
 * even when it is not in memory and across restarts (at least once: an
 * alarm whose handler was running when the process died fires again).
 * Setting or deleting them is part of the current event's transaction.
 * Inside the room's callbacks only (PARTY_ESTATE otherwise). */

/* Sets the room's one alarm (replacing any). at_ms must be > 0. */
PARTY_EXTERN int party_alarm_set(party_room *room, int64_t at_ms);
/* The alarm's time, or 0 when none. Inside on_alarm: 0, unless the
 * handler set a new one. */
PARTY_EXTERN int64_t party_alarm_get(party_room *room);
/* Deletes the alarm (no-op without one). */
PARTY_EXTERN int party_alarm_delete(party_room *room);
/* Inside on_alarm: how many times this alarm failed before (0 on the first
 * run). A non-zero on_alarm is retried after 2, 4, 8, 16, 32 and 64 s (plus
 * up to 25 % jitter), then abandoned and logged — unless the handler set a
 * new alarm before failing: the new alarm is kept and no retry happens. */
PARTY_EXTERN int party_alarm_retry_count(party_room *room);

/* Schedules: many per room, each delivered to on_schedule(room, name,
 * payload, len), persisted, multiplexed with the alarm. id_out (may be
 * NULL) receives the schedule's id. name: 1..256 bytes; payload at most
 * 1 MB (PARTY_ETOOBIG). */
PARTY_EXTERN int party_schedule_at(party_room *room, int64_t at_ms, const char *name,
                                   const void *payload, size_t len, char id_out[PARTY_ID_MAX]);
PARTY_EXTERN int party_schedule_after(party_room *room, int64_t delay_ms, const char *name,
                                      const void *payload, size_t len, char id_out[PARTY_ID_MAX]);
/* Repeats every interval_ms (>= 1000), first run interval_ms from now.
 * Runs missed while partyd was down are not replayed one by one: the next
 * run after a restart is the first one due, then every interval_ms. */
PARTY_EXTERN int party_schedule_every(party_room *room, int64_t interval_ms, const char *name,
                                      const void *payload, size_t len, char id_out[PARTY_ID_MAX]);
/* Repeats by a 5-field cron expression in UTC ("*\/5 * * * *");
 * PARTY_EINVAL for a malformed one. */
PARTY_EXTERN int party_schedule_cron(party_room *room, const char *cron5, const char *name,
                                     const void *payload, size_t len, char id_out[PARTY_ID_MAX]);
/* PARTY_ENOTFOUND when no schedule has this id. */
PARTY_EXTERN int party_schedule_cancel(party_room *room, const char *id);
/* Calls fn for each schedule, soonest first; arguments valid during the
 * call. fn returns non-zero to stop. */
PARTY_EXTERN int party_schedule_list(party_room *room,
                                     int (*fn)(const char *id, const char *name, int64_t next_ms,
                                               const void *payload, size_t len, void *arg),
                                     void *arg);

/* ---- HTTP ----------------------------------------------------------------
 * A party_request is valid during the callback it is passed to. */

PARTY_EXTERN const char *party_request_method(const party_request *req);
/* Path and query as received (still percent-encoded). */
PARTY_EXTERN const char *party_request_url(const party_request *req);
/* The path part of the URL, without the query. */
PARTY_EXTERN const char *party_request_path(const party_request *req);
/* A header value by case-insensitive name (the first, if repeated), or
 * NULL. */
PARTY_EXTERN const char *party_request_header(const party_request *req, const char *name);
/* Calls fn for each header in the order received (with those a hook set);
 * fn returns non-zero to stop (that value is returned). */
PARTY_EXTERN int
party_request_foreach_header(const party_request *req,
                             int (*fn)(const char *name, const char *value, void *arg), void *arg);
/* Decoded value (%XX and '+' as space) of the first query parameter with
 * this name, "" for a name without '=', or NULL when absent or not
 * decodable. Valid as long as req. */
PARTY_EXTERN const char *party_request_query(const party_request *req, const char *name);
/* The body (Content-Length or de-chunked); NULL with *len 0 when none. */
PARTY_EXTERN const void *party_request_body(const party_request *req, size_t *len);
/* The address of the client that made the request, as party_conn_remote_addr. */
PARTY_EXTERN int party_request_remote_addr(const party_request *req, char *out, size_t size);
/* Adds or replaces a request header (in before_connect / before_request).
 * The values are copied. */
PARTY_EXTERN int party_request_set_header(party_request *req, const char *name, const char *value);
/* Sets the props (any string, e.g. JSON) given to the room's on_start, in
 * before_connect / before_request. Copied. A started room receives them
 * at its next start. */
PARTY_EXTERN int party_request_set_props(party_request *req, const char *props);

/* Response building. Defaults: 200, no headers, empty body. Strings and body
 * are copied. Errors (PARTY_ENOMEM) make the response a 500. */
/* status: 100..999; other values are ignored. */
PARTY_EXTERN void party_response_set_status(party_response *res, int status);
/* Sets a header, replacing one of the same (case-insensitive) name.
 * Content-Length, Transfer-Encoding and Connection are the runtime's and
 * ignored, as are names with ':', spaces or line breaks and values with
 * line breaks. */
PARTY_EXTERN void party_response_set_header(party_response *res, const char *name,
                                            const char *value);
/* Adds a header even if one of that name is set (Set-Cookie). Same rules. */
PARTY_EXTERN void party_response_add_header(party_response *res, const char *name,
                                            const char *value);
/* The body (replacing any). */
PARTY_EXTERN void party_response_set_body(party_response *res, const void *data, size_t len);
/* status, Content-Type: text/plain; charset=utf-8, and text as the body. */
PARTY_EXTERN void party_response_text(party_response *res, int status, const char *text);
/* status, Content-Type: application/json, and json_text as the body. The
 * text is sent as given (build it with any JSON library). */
PARTY_EXTERN void party_response_json(party_response *res, int status, const char *json_text);

/* Reading a response: what a hook or handler set so far, or the answer
 * on_response receives. */
PARTY_EXTERN int party_response_get_status(const party_response *res);
/* The first header called name (case-insensitive), or NULL. Valid as long
 * as res and until that header is set again. */
PARTY_EXTERN const char *party_response_get_header(const party_response *res, const char *name);
/* Calls fn for each header in order; fn returns non-zero to stop (that
 * value is returned). */
PARTY_EXTERN int
party_response_foreach_header(const party_response *res,
                              int (*fn)(const char *name, const char *value, void *arg), void *arg);
/* The body (NULL with *len 0 when empty); len may be NULL. An answer given
 * to on_response is NUL-terminated past *len, so text can be read as a
 * string. Valid as long as res. */
PARTY_EXTERN const void *party_response_get_body(const party_response *res, size_t *len);

/* ---- lobby: the routing result seen by hooks ---------------------------- */
PARTY_EXTERN const char *party_lobby_party(const party_lobby *lobby);
PARTY_EXTERN const char *party_lobby_room(const party_lobby *lobby);

/* ---- synced state, RPC, readonly connections -----------------------------
 * docs/state-and-rpc.md. A room's state is one JSON value the runtime
 * stores with the room's records and sends to its clients; RPC methods
 * are declared in party_def.rpc_methods. What these send passes the
 * output gate: it leaves once the event that produced it is committed. */

/* The largest state, in bytes of JSON text (PARTY_ETOOBIG). */
#define PARTY_MAX_STATE (1024 * 1024)

/* Sets the room's state to json (len bytes of UTF-8 JSON text, any JSON
 * value): stored in the current event's transaction, then sent to every
 * open connection as {"type":"cf_agent_state","state":json} (after the
 * commit), and given to on_state_change (from NULL). Inside the room's
 * callbacks only. 0, PARTY_EINVAL (not valid JSON or UTF-8),
 * PARTY_ETOOBIG (over PARTY_MAX_STATE), PARTY_ESTATE (outside a callback),
 * PARTY_EIO, PARTY_ENOMEM. */
PARTY_EXTERN int party_state_set(party_room *room, const char *json, size_t len);
/* The room's state: *json its JSON text (NUL-terminated, valid until the
 * state changes or the callback returns), *len its length (len may be
 * NULL). PARTY_ENOTFOUND when none was ever set; PARTY_ESTATE outside a
 * callback; PARTY_EIO, PARTY_ENOMEM. */
PARTY_EXTERN int party_state_get(party_room *room, const char **json, size_t *len);

/* A connection's readonly flag: a readonly connection's state proposals
 * are refused ({"type":"cf_agent_state_error","error":"Connection is
 * readonly"}), and so are its calls of methods flagged PARTY_RPC_WRITES.
 * Kept across hibernation. Set it in on_connect (or any time). */
PARTY_EXTERN void party_conn_set_readonly(party_conn *conn, int readonly);
PARTY_EXTERN int party_conn_readonly(party_conn *conn);

/* One RPC call in progress, answered exactly once with party_call_result
 * or party_call_error (after any number of party_call_chunk). The pointer
 * stays valid until then, also after the method's callback returned (keep
 * it and answer in a later event), or until the runtime stops (its client
 * is then answered with an error, and the room leaves memory); an open
 * call keeps its room in memory (no eviction, no hibernation), so answer
 * every call. */
typedef struct party_call party_call;

/* An RPC method: name as the client calls it, fn called with the call and
 * its arguments as JSON text (an array, e.g. ["milk"]; NUL-terminated,
 * valid during the call). */
typedef struct party_rpc_method {
    const char *name;
    void (*fn)(party_room *room, party_call *call, const char *args, size_t len);
    int flags; /* PARTY_RPC_* */
} party_rpc_method;

/* The method changes the room: readonly connections are refused. */
#define PARTY_RPC_WRITES 1

/* The calling connection, or NULL once it closed. */
PARTY_EXTERN party_conn *party_call_conn(party_call *call);
/* Answers with result (JSON text; NULL: no result) and ends the call
 * (call is invalid after). {"type":"rpc","id":...,"success":true,
 * "done":true,"result":...}. 0; PARTY_ECLOSED when the connection is
 * gone (the answer is dropped, the call ended all the same);
 * PARTY_EINVAL when result is not JSON (the call stays open);
 * PARTY_ENOMEM (ended; the connection is closed with 1011, so the client
 * learns its call failed). */
PARTY_EXTERN int party_call_result(party_call *call, const char *result);
/* Answers with an error (message: any text; NULL: "error") and ends the
 * call. {"type":"rpc","id":...,"success":false,"error":message}. Results
 * as party_call_result. */
PARTY_EXTERN int party_call_error(party_call *call, const char *message);
/* Sends one chunk of a streamed answer (JSON text), {"type":"rpc",
 * "id":...,"success":true,"done":false,"result":chunk}; the call stays
 * open until party_call_result. Results as party_call_result, except
 * that the call stays open whatever the result. */
PARTY_EXTERN int party_call_chunk(party_call *call, const char *chunk);

/* ---- runtime ------------------------------------------------------------- */

/* Durability of commits: FULL survives a power loss (fsync on every
 * commit); NORMAL survives a process crash, not a power loss. */
enum { PARTY_DURABILITY_FULL = 0, PARTY_DURABILITY_NORMAL = 1 };

typedef struct party_config {
    unsigned abi;             /* PARTY_ABI_VERSION (party_config_init sets it); 0 is read
                                 as the runtime's own */
    const char *host;         /* "127.0.0.1"; an IP address or a host name (the
                                 first address it resolves to is bound) */
    int port;                 /* 1999; 0 picks a free port (see party_runtime_port) */
    const char *prefix;       /* "parties": URLs are /<prefix>/<party>/<room> */
    size_t max_message_bytes; /* 32 MiB: larger received messages close with 1009 */
    size_t max_header_bytes;  /* 16 KiB: request line + headers */
    size_t max_headers;       /* 100 header fields */
    size_t max_body_bytes;    /* 32 MiB: HTTP request body */
    size_t send_queue_bytes;  /* 64 MiB: per-connection unsent bytes before it is dropped */
    size_t max_room_conns;    /* 32768 connections per room */
    size_t max_conns;         /* all connections; 0: the open-file limit less a
                                 reserve for room databases (see partyd --help) */
    const char *data_dir;     /* "./data" (created if missing, one level; one runtime at a
                                 time: see party_runtime_listen); NULL keeps rooms in
                                 memory only (nothing survives) */
    int durability;           /* PARTY_DURABILITY_FULL (default) or PARTY_DURABILITY_NORMAL */
    double idle_timeout;      /* 60 s: a room with no connections and no work leaves memory */
    double hibernate_after;   /* 10 s: a hibernating party's idle room hibernates */
    double header_timeout;    /* 10 s to receive a whole request head */
    double close_timeout;     /* 5 s to wait for the peer's Close reply */
    double ping_interval;     /* 30 s: WebSockets silent this long are pinged, and
                                 closed (1001) if still silent one interval later;
                                 0: off */
    double shutdown_timeout;  /* 10 s: on stop, clients that have not answered the
                                 1001 Close by then are dropped (events and
                                 commits in flight still finish) */
    int log_level;            /* PARTY_LOG_*: 0 error, 1 warn, 2 info (default), 3 debug */
    int log_json;             /* 1: one JSON object per log line */
    const char *ops_prefix;   /* "_partyd": /_partyd/health, /metrics, /rooms */
    const char *admin_token;  /* NULL: /_partyd/rooms is off; else the Bearer token it needs */
    const char *static_dir;   /* NULL: none; else files served for paths outside the prefix */
    int cors;                 /* 0: off; 1: CORS for parties that leave it PARTY_CORS_DEFAULT */
    const char *const *cors_headers; /* NULL: the defaults (see party_def.cors_headers);
                                        must outlive the runtime */
    const char *tls_cert;            /* NULL: plain http/ws; else a PEM certificate chain file:
                                        https and wss on the same port (tls_key needed too) */
    const char *tls_key;             /* the PEM private key of tls_cert */
    double fetch_timeout;            /* 30 s: a room-to-room request unanswered by then gets 504 */
    int threads;                     /* 1: event-loop threads; 0: one per core. With more than one,
                                        callbacks of different rooms run at the same time on
                                        different threads (one room's always on the same one):
                                        a party's code must not share mutable globals between
                                        rooms without locking */
    /* ---- ABI 3 ---- */
    const char *agents_prefix; /* "agents": rooms are also /<agents_prefix>/<party>/<room>, the
                                  URLs of Cloudflare's Agents clients; NULL or "": off */
    /* ---- ABI 3: outbound HTTP (party_room_fetch_url) ---- */
    const char *fetch_allow;   /* NULL or "": every outbound request is refused
                                  (PARTY_EPOLICY); else a comma-separated list of URL
                                  prefixes (https://api.example.com/v1/), host names,
                                  IP literals or CIDRs with an optional port
                                  (127.0.0.1:8080, 10.0.0.0/8, [::1]:443) and "*" (any
                                  host). Private and special addresses are refused unless
                                  an IP or CIDR entry covers them. See docs/api.md. */
    const char *fetch_ca_file; /* NULL: the system's CA certificates; else a PEM file of
                                  the CAs outbound HTTPS trusts */
    size_t fetch_max_bytes;    /* 8 MiB: a larger answer body is refused (PARTY_ETOOBIG) */
    /* PARTY_MAX_FETCH_URLS (1024): outbound requests unanswered in the process;
     * one more is refused at the call (PARTY_ELIMIT). 0: 1024. */
    size_t fetch_max_in_flight;
    /* ---- ABI 4: facing the internet (docs/operations.md, "Running on the internet") ---- */
    int proxy_protocol;          /* 1: every connection starts with a PROXY protocol header
                                    (v1 or v2, as HAProxy's send-proxy-v2 sends) naming the
                                    client; one without a valid header is closed */
    const char *trusted_proxies; /* NULL or "": none; else comma-separated addresses and
                                    CIDRs (10.0.0.0/8, ::1) whose Forwarded /
                                    X-Forwarded-For headers name the client */
    size_t limit_addr_conns;     /* 20000: open connections per client address (IPv6: per
                                    /64); one more is answered 429 */
    double limit_addr_rate;      /* 1000: new connections per second per client address
                                    (a burst of one second's worth); more get 429 */
    double limit_conn_msgs;      /* 1000: WebSocket messages per second per connection;
                                    over it reading pauses, and a client that keeps
                                    sending faster is closed with 1013 */
    double limit_conn_bytes;     /* 16 MiB: WebSocket message bytes per second per
                                    connection, as limit_conn_msgs */
    size_t limit_addr_table;     /* 65536: client addresses whose counts are kept at once;
                                    the least recently seen is forgotten first */
    const char *limit_exempt;    /* "127.0.0.1,::1": addresses and CIDRs (comma-separated)
                                    no limit above applies to: the host's own clients
                                    (a local proxy that names no other client, health
                                    checks, benchmarks). NULL or "": none */
    const char *allowed_origins; /* NULL: any origin; else the origins (comma-separated
                                    scheme://host[:port], a host may begin with "*." for
                                    its subdomains) whose pages may open WebSockets
                                    (another Origin: 403 before before_connect) and read
                                    CORS answers (the allowed Origin is named in
                                    Access-Control-Allow-Origin, another gets none). A
                                    request without Origin is not refused. */
} party_config;

/* Fills cfg with the defaults above. */
PARTY_EXTERN void party_config_init(party_config *cfg);

/* A runtime; cfg is copied (its strings too). NULL on failure (OOM). */
PARTY_EXTERN party_runtime *party_runtime_new(const party_config *cfg);
/* Registers a party, before party_runtime_run. PARTY_EEXIST if the name
 * (case-insensitive) is taken; PARTY_EINVAL if the name is empty, over 64
 * bytes or not [a-zA-Z0-9_-]; PARTY_ESTATE while several event loops run. */
PARTY_EXTERN int party_runtime_add(party_runtime *rt, const party_def *def);
/* Binds the listening socket (done by run if not called). Before it binds,
 * it opens the data directory: creates it if missing (one level, mode
 * 0755), takes an exclusive lock on <data_dir>/LOCK (flock; the file holds
 * the holder's pid) that the runtime keeps until party_runtime_free, and
 * opens the alarm index in it; then it loads the TLS certificate and key
 * when configured. A host name is resolved here (getaddrinfo, which may
 * block). PARTY_EBUSY when another runtime holds the data directory (in
 * another process or in this one); PARTY_EIO when the data directory
 * cannot be created or used; PARTY_EADDR (cannot resolve or bind);
 * PARTY_EINVAL when the certificate or key cannot be loaded; PARTY_ENOMEM.
 * Every failure is logged (the directory and the OS error, the holder's
 * pid) and leaves the port unbound. A NULL data_dir takes no lock. */
PARTY_EXTERN int party_runtime_listen(party_runtime *rt);
/* The bound port, after listen. */
PARTY_EXTERN int party_runtime_port(party_runtime *rt);
/* Runs until party_runtime_stop() or SIGINT/SIGTERM; on stop, connections
 * are closed with 1001 and rooms leave memory. Calls party_runtime_listen
 * first if it was not called (its errors); PARTY_ESTATE if running. */
PARTY_EXTERN int party_runtime_run(party_runtime *rt);
/* Asks a running runtime to stop. Safe from any thread and from a signal
 * handler context of the runtime's own thread. */
PARTY_EXTERN void party_runtime_stop(party_runtime *rt);
/* Frees a stopped runtime and releases its data directory's lock. NULL is
 * a no-op. */
PARTY_EXTERN void party_runtime_free(party_runtime *rt);

/* ---- old names, kept until 1.0 ------------------------------------------
 * Setters of a response are party_response_set_*, its getters
 * party_response_get_* (the bare names were setters before 0.2); a room's
 * broadcast is party_room_broadcast, which returns 0 or an error and gives
 * the count through an out-parameter. The old names still work and make
 * the compiler say what replaces them. */

/* party_response_set_status. */
PARTY__DEPRECATED("party_response_set_status")
PARTY_EXTERN void party_response_status(party_response *res, int status);
/* party_response_set_header. */
PARTY__DEPRECATED("party_response_set_header")
PARTY_EXTERN void party_response_header(party_response *res, const char *name, const char *value);
/* party_response_set_body. */
PARTY__DEPRECATED("party_response_set_body")
PARTY_EXTERN void party_response_body(party_response *res, const void *data, size_t len);
/* party_room_broadcast; returns the count, or a PARTY_E* code. */
PARTY__DEPRECATED("party_room_broadcast")
PARTY_EXTERN int party_broadcast(party_room *room, const void *data, size_t len, int binary,
                                 const char *const *exclude_ids, size_t n_exclude);

#ifdef __cplusplus
}
#endif
#endif /* PARTY_H */
